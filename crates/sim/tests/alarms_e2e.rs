//! The alarm lifecycle end to end on loopback: a simulated controller (tek-sim) sends telemetry
//! to an in-process `tek serve` (SQLite, web UI and JSON API); a rule on its water temperature
//! raises an alarm; the notification arrives by e-mail at a local SMTP responder written here
//! and by webhook at a local HTTP listener that checks the HMAC-SHA256 signature (and fails the
//! first delivery, so the retry is exercised); the alarm is acknowledged through the API; the
//! rule is changed so the restore condition holds, and the alarm clears with a second round of
//! notifications. The notification log shows every delivery.

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use serde_json::{json, Value};
use sha2::Sha256;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tek_server::storage::{DeviceStore, NewDevice, UserStore, WebSessionStore};
use tek_sim::fleet::Device;
use tek_sim::{Fleet, Options};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

const SECRET: &str = "webhook-secret-0123456789";
const TOKEN: &str = "ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12cd34ef56ab12";

/// A mail received by the test SMTP responder.
#[derive(Debug, Clone)]
struct Mail {
    from: String,
    to: Vec<String>,
    data: String,
}

/// A minimal SMTP responder on 127.0.0.1:0 that accepts every message and records it.
async fn smtp_server() -> (SocketAddr, Arc<Mutex<Vec<Mail>>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let mails = Arc::new(Mutex::new(Vec::new()));
    let store = mails.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = l.accept().await {
            let store = store.clone();
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let mut r = BufReader::new(r);
                w.write_all(b"220 test ESMTP\r\n").await.unwrap();
                let (mut from, mut to) = (String::new(), Vec::new());
                let mut line = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let cmd = line.trim_end().to_owned();
                    let upper = cmd.to_ascii_uppercase();
                    let reply: &[u8] = if upper.starts_with("EHLO") {
                        b"250-test\r\n250 8BITMIME\r\n"
                    } else if upper.starts_with("MAIL FROM:") {
                        from = cmd[10..].to_owned();
                        b"250 ok\r\n"
                    } else if upper.starts_with("RCPT TO:") {
                        to.push(cmd[8..].to_owned());
                        b"250 ok\r\n"
                    } else if upper == "DATA" {
                        w.write_all(b"354 go ahead\r\n").await.unwrap();
                        let mut data = String::new();
                        loop {
                            line.clear();
                            if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                                return;
                            }
                            if line == ".\r\n" {
                                break;
                            }
                            data.push_str(&line);
                        }
                        store.lock().unwrap().push(Mail {
                            from: std::mem::take(&mut from),
                            to: std::mem::take(&mut to),
                            data,
                        });
                        b"250 queued\r\n"
                    } else if upper == "QUIT" {
                        let _ = w.write_all(b"221 bye\r\n").await;
                        return;
                    } else if upper == "RSET" || upper == "NOOP" {
                        b"250 ok\r\n"
                    } else {
                        b"502 not implemented\r\n"
                    };
                    w.write_all(reply).await.unwrap();
                }
            });
        }
    });
    (addr, mails)
}

/// A webhook receiver on 127.0.0.1:0: verifies the signature of every POST and records the
/// bodies whose signature is right; answers 503 to the very first request (to see a retry).
async fn webhook_server() -> (SocketAddr, Arc<Mutex<Vec<Value>>>, Arc<Mutex<u32>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let bad = Arc::new(Mutex::new(0u32));
    let (store, bad_sigs) = (got.clone(), bad.clone());
    let first = Arc::new(Mutex::new(true));
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = l.accept().await {
            let (store, bad_sigs, first) = (store.clone(), bad_sigs.clone(), first.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Headers, then Content-Length bytes of body.
                let (head, body_start) = loop {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break (String::from_utf8_lossy(&buf[..i]).into_owned(), i + 4);
                    }
                };
                let header = |name: &str| {
                    head.lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.trim()
                                .eq_ignore_ascii_case(name)
                                .then(|| v.trim().to_owned())
                        })
                        .unwrap_or_default()
                };
                let len: usize = header("content-length").parse().unwrap_or(0);
                while buf.len() < body_start + len {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let body = &buf[body_start..body_start + len];
                let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
                mac.update(body);
                let want: String = mac
                    .finalize()
                    .into_bytes()
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                let ok_sig = head.starts_with("POST /hook ")
                    && header("x-tek-signature") == format!("sha256={want}")
                    && header("content-type") == "application/json";
                let fail_first = std::mem::replace(&mut *first.lock().unwrap(), false);
                let status = if !ok_sig {
                    *bad_sigs.lock().unwrap() += 1;
                    "401 Unauthorized"
                } else if fail_first {
                    "503 Service Unavailable"
                } else {
                    store
                        .lock()
                        .unwrap()
                        .push(serde_json::from_slice(body).unwrap());
                    "200 OK"
                };
                let _ = sock
                    .write_all(
                        format!(
                            "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        )
                        .as_bytes(),
                    )
                    .await;
            });
        }
    });
    (addr, got, bad)
}

struct Http {
    addr: SocketAddr,
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
}

impl Http {
    async fn call(&self, method: Method, path: &str, body: Value) -> (StatusCode, Value) {
        let body = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        let req = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr))
            .header("host", self.addr.to_string())
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let r = self.client.request(req).await.unwrap();
        let status = r.status();
        let bytes = r.into_body().collect().await.unwrap().to_bytes();
        let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, v)
    }
}

async fn wait_until<T>(what: &str, limit: Duration, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let t = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarm_raised_notified_acknowledged_and_cleared() {
    let dir = std::env::temp_dir().join(format!("tek-alarms-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let key = [0x42u8; 16];
    {
        let db = tek_server::storage::sqlite::Sqlite::open_dir(&dir).unwrap();
        db.add_devices(
            &[NewDevice {
                id: 1,
                name: "Pool 1".into(),
                key: tek_proto::crypto::Key(key),
            }],
            0,
        )
        .unwrap();
        let hash = tek_server::http::auth::hash_password("correct horse battery").unwrap();
        let admin = db.create_user("ops@example.com", &hash, true, 0).unwrap();
        db.create_token(admin, "e2e", &tek_server::http::auth::secret_hash(TOKEN), 0)
            .unwrap();
    }
    let (smtp, mails) = smtp_server().await;
    let (hook, hooks, bad_sigs) = webhook_server().await;

    let mut cfg = tek_server::Config::for_tests(&dir);
    cfg.alarms.smtp.host = smtp.ip().to_string();
    cfg.alarms.smtp.port = Some(smtp.port());
    // The responder above is a plain SMTP relay on this machine (TLS: tek-server's
    // alarms::tls_tests).
    cfg.alarms.smtp.tls = tek_server::alarms::config::SmtpTls::None;
    cfg.alarms.smtp.from = "tek@pool.example".into();
    cfg.alarms.retry_initial_ms = 100;
    let server = tek_server::Server::start_with(cfg, None, |api| {
        tek_server::router::router(api, tek_server::http::WebOptions::default())
    })
    .await
    .unwrap();
    let http = Http {
        addr: server.http_addr(),
        client: hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http(),
    };

    // Destinations, a list, and a rule: water warmer than 10 °C (every pool is).
    let (s, v) = http
        .call(
            Method::POST,
            "/api/alarm-destinations",
            json!({"name": "ops mail", "kind": "email", "target": "ops@example.com"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let mail_id = v["id"].as_i64().unwrap();
    let (s, v) = http
        .call(
            Method::POST,
            "/api/alarm-destinations",
            json!({"name": "ops hook", "kind": "webhook",
                   "target": format!("http://{hook}/hook"), "secret": SECRET}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let hook_id = v["id"].as_i64().unwrap();
    let (s, v) = http
        .call(
            Method::POST,
            "/api/alarm-lists",
            json!({"name": "on call", "members": [mail_id, hook_id]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let list = v["id"].as_i64().unwrap();
    let mut rule = json!({
        "name": "Water warm",
        "severity": "critical",
        "condition": {"kind": "above", "channel": "water_temp_cc", "limit": 1000, "restore": 900},
        "lists": [list],
    });
    let (s, v) = http
        .call(Method::POST, "/api/devices/1/alarm-rules", rule.clone())
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let rule_id = v["id"].as_i64().unwrap();
    // The secret is never shown again.
    let (_, v) = http
        .call(Method::GET, "/api/alarm-destinations", Value::Null)
        .await;
    assert!(
        !v.to_string().contains(SECRET) && v[1]["has_secret"] == true,
        "{v}"
    );

    // The controller.
    let mut opts = Options::new(
        vec![Device {
            id: 1,
            key,
            name: None,
        }],
        vec![server.udp_addr().to_string()],
    );
    opts.speed = 20.0;
    let fleet = Fleet::start(opts).await.unwrap();

    // Raised: an e-mail and (after one refused attempt) a signed webhook.
    let limit = Duration::from_secs(60);
    let mail = wait_until("the e-mail", limit, async || {
        mails.lock().unwrap().first().cloned()
    })
    .await;
    assert!(mail.from.contains("tek@pool.example"), "{mail:?}");
    assert!(mail.to[0].contains("ops@example.com"), "{mail:?}");
    assert!(
        mail.data.contains("CRITICAL raised") && mail.data.contains("Water warm"),
        "{}",
        mail.data
    );
    let raised = wait_until("the webhook", limit, async || {
        hooks.lock().unwrap().first().cloned()
    })
    .await;
    assert_eq!(raised["event"], "raised");
    assert_eq!(raised["device_id"], 1);
    assert_eq!(raised["rule_id"], rule_id);
    assert_eq!(raised["severity"], "critical");
    assert!(raised["text"].as_str().unwrap().contains("°C"), "{raised}");
    let alarm_id = raised["alarm_id"].as_i64().unwrap();

    let (s, v) = http
        .call(Method::GET, "/api/alarms?open=true", Value::Null)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
    assert_eq!(
        (v[0]["id"].as_i64(), v[0]["state"].as_str()),
        (Some(alarm_id), Some("active"))
    );

    // Acknowledged through the API.
    let (s, v) = http
        .call(
            Method::POST,
            &format!("/api/alarms/{alarm_id}/ack"),
            Value::Null,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "acknowledged");
    assert_eq!(v["acked_by"], "ops@example.com");

    // The rule changes to "above 90 °C, restore at 80 °C": the next record restores it.
    rule["condition"] =
        json!({"kind": "above", "channel": "water_temp_cc", "limit": 9000, "restore": 8000});
    let (s, v) = http
        .call(
            Method::PUT,
            &format!("/api/devices/1/alarm-rules/{rule_id}"),
            rule,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let cleared = wait_until("the cleared webhook", limit, async || {
        hooks.lock().unwrap().get(1).cloned()
    })
    .await;
    assert_eq!(cleared["event"], "cleared");
    assert_eq!(cleared["alarm_id"], alarm_id);
    wait_until("the cleared e-mail", limit, async || {
        (mails.lock().unwrap().len() >= 2).then_some(())
    })
    .await;
    assert!(mails.lock().unwrap()[1].data.contains("cleared"));
    let (_, v) = http
        .call(Method::GET, "/api/devices/1/alarms", Value::Null)
        .await;
    assert_eq!(v[0]["state"], "cleared", "{v}");
    assert!(v[0]["cleared_at"].as_i64().unwrap() >= v[0]["acked_at"].as_i64().unwrap());

    // The log: four deliveries, all sent; the webhook's first one took two attempts.
    let log = wait_until("every delivery logged", limit, async || {
        let (_, v) = http
            .call(Method::GET, "/api/devices/1/notifications", Value::Null)
            .await;
        let all = v.as_array()?.clone();
        (all.len() == 4 && all.iter().all(|n| n["state"] == "sent")).then_some(all)
    })
    .await;
    let hook_raised = log
        .iter()
        .find(|n| n["destination"] == "ops hook" && n["event"] == "raised")
        .unwrap();
    assert_eq!(hook_raised["attempts"], 2, "{log:?}");
    assert_eq!(*bad_sigs.lock().unwrap(), 0);
    let (_, v) = http
        .call(
            Method::GET,
            &format!("/api/alarms/{alarm_id}/notifications"),
            Value::Null,
        )
        .await;
    assert_eq!(v.as_array().unwrap().len(), 4);
    let metrics = server.api().metrics_text().await;
    for line in [
        "tek_alarms_raised_total 1",
        "tek_alarm_notifications_sent_total 4",
        "tek_alarm_notifications_failed_total 0",
        "tek_alarm_events_dropped_total 0",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }

    fleet.stop().await;
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
