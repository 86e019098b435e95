//! Issue 19 point 9: "send a test notification" to an alarm destination — from the API
//! (`POST /api/alarm-destinations/{id}/test`) and from the button on `/admin/alarms` — goes
//! through the delivery queue, its retries and the notification log like an alarm notification.
//! Receivers on 127.0.0.1: a webhook that refuses its first request (so the retry shows), a
//! plain SMTP responder, and a port where nothing listens (the failure and its reason show).

mod web_common;

use hyper::{Method, StatusCode};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tek_server::http::WebOptions;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use web_common::*;

const SECRET: &str = "test-notification-secret";

/// A webhook receiver: records `(signature header, body)` of every POST; answers 503 to the
/// first one and 200 to the others.
async fn webhook() -> (SocketAddr, Arc<Mutex<Vec<(String, Vec<u8>)>>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let store = got.clone();
    let first = Arc::new(Mutex::new(true));
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = l.accept().await {
            let (store, first) = (store.clone(), first.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head, start) = loop {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break (
                            String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase(),
                            i + 4,
                        );
                    }
                };
                let header = |name: &str| {
                    head.lines()
                        .find_map(|l| l.strip_prefix(&format!("{name}:")))
                        .map(|v| v.trim().to_owned())
                        .unwrap_or_default()
                };
                let len: usize = header("content-length").parse().unwrap_or(0);
                while buf.len() < start + len {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let status = if std::mem::replace(&mut *first.lock().unwrap(), false) {
                    "503 Service Unavailable"
                } else {
                    store
                        .lock()
                        .unwrap()
                        .push((header("x-tek-signature"), buf[start..start + len].to_vec()));
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
    (addr, got)
}

/// A plain SMTP responder that accepts every message and keeps its data.
async fn smtp() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
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
                let _ = w.write_all(b"220 test ESMTP\r\n").await;
                let mut line = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let cmd = line.trim_end().to_ascii_uppercase();
                    let reply: &[u8] = if cmd.starts_with("EHLO") {
                        b"250-test\r\n250 8BITMIME\r\n"
                    } else if cmd == "DATA" {
                        let _ = w.write_all(b"354 go ahead\r\n").await;
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
                        store.lock().unwrap().push(data);
                        b"250 ok\r\n"
                    } else if cmd == "QUIT" {
                        let _ = w.write_all(b"221 bye\r\n").await;
                        return;
                    } else {
                        b"250 ok\r\n"
                    };
                    if w.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, mails)
}

async fn wait_until<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let t = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn json(a: &Answer) -> Value {
    serde_json::from_str(&a.body).unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_notifications_are_delivered_retried_and_logged() {
    let (hook, hooks) = webhook().await;
    let (mail, mails) = smtp().await;
    // Nothing listens here once the listener is dropped.
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let w = start_configured(WebOptions::default(), |cfg| {
        cfg.alarms.retries = 2;
        cfg.alarms.retry_initial_ms = 100;
        cfg.alarms.timeout_ms = 3000;
        cfg.alarms.smtp.host = mail.ip().to_string();
        cfg.alarms.smtp.port = Some(mail.port());
        cfg.alarms.smtp.tls = tek_server::alarms::config::SmtpTls::None;
    })
    .await;
    let admin = w.login("admin@example.com").await;
    let mut ids = Vec::new();
    for body in [
        format!(
            r#"{{"name": "ops hook", "kind": "webhook", "target": "http://{hook}/hook", "secret": "{SECRET}"}}"#
        ),
        r#"{"name": "ops mail", "kind": "email", "target": "ops@example.com"}"#.to_owned(),
        format!(
            r#"{{"name": "dead hook", "kind": "webhook", "target": "http://{closed}/x", "secret": "{SECRET}"}}"#
        ),
    ] {
        let r = w
            .api(Method::POST, "/api/alarm-destinations", &admin, &body)
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        ids.push(json(&r)["id"].as_i64().unwrap());
    }
    let (hook_id, mail_id, dead_id) = (ids[0], ids[1], ids[2]);

    // The API: 202 with the logged notification, queued.
    let r = w
        .api(
            Method::POST,
            &format!("/api/alarm-destinations/{hook_id}/test"),
            &admin,
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let note = json(&r);
    assert_eq!(note["event"], "test", "{note}");
    assert_eq!(note["destination"], "ops hook");
    assert_eq!(note["destination_id"], hook_id);
    assert_eq!(note["device_id"], Value::Null);
    assert_eq!(note["list_id"], Value::Null);
    assert!(
        ["queued", "sent"].contains(&note["state"].as_str().unwrap()),
        "{note}"
    );
    let note_id = note["id"].as_i64().unwrap();
    // Delivered on the second attempt (the receiver refused the first), and logged so.
    let log = wait_until("the webhook test logged as sent", async || {
        let v = json(
            &w.api(
                Method::GET,
                &format!("/api/alarm-destinations/{hook_id}/test"),
                &admin,
                "",
            )
            .await,
        );
        (v[0]["state"] == "sent").then_some(v)
    })
    .await;
    assert_eq!(log.as_array().unwrap().len(), 1, "{log}");
    assert_eq!(log[0]["id"], note_id);
    assert_eq!(log[0]["attempts"], 2, "{log}");
    assert!(log[0]["done_at"].as_i64().is_some());
    let (sig, body) = hooks.lock().unwrap()[0].clone();
    assert_eq!(
        sig,
        tek_server::alarms::deliver::signature(SECRET.as_bytes(), &body)
    );
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["event"], "test", "{body}");
    assert_eq!(body["device_id"], Value::Null);
    assert!(
        body["text"].as_str().unwrap().contains("admin@example.com"),
        "{body}"
    );

    // E-mail, through the SMTP relay.
    let r = w
        .api(
            Method::POST,
            &format!("/api/alarm-destinations/{mail_id}/test"),
            &admin,
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let data = wait_until("the test e-mail", async || {
        mails.lock().unwrap().first().cloned()
    })
    .await;
    assert!(data.contains("Test notification to ops mail"), "{data}");
    wait_until("the e-mail test logged as sent", async || {
        let v = json(
            &w.api(
                Method::GET,
                &format!("/api/alarm-destinations/{mail_id}/test"),
                &admin,
                "",
            )
            .await,
        );
        (v[0]["state"] == "sent" && v[0]["attempts"] == 1).then_some(())
    })
    .await;

    // From the page: the button on the destinations list; the page's log shows the failure
    // and why, after every retry.
    let page = w.get("/admin/alarms", Some(&admin)).await;
    assert!(
        page.body.contains(&format!(
            "action=\"/admin/alarms/destinations/{dead_id}/test\""
        )),
        "{}",
        page.body
    );
    let r = w
        .post_form(
            &format!("/admin/alarms/destinations/{dead_id}/test"),
            &admin,
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(
        r.header("location")
            .starts_with("/admin/alarms?ok=test+notification+"),
        "{}",
        r.header("location")
    );
    let failed = wait_until("the failed test logged", async || {
        let v = json(
            &w.api(
                Method::GET,
                &format!("/api/alarm-destinations/{dead_id}/test"),
                &admin,
                "",
            )
            .await,
        );
        (v[0]["state"] == "failed").then_some(v[0].clone())
    })
    .await;
    assert_eq!(failed["attempts"], 3, "{failed}");
    assert!(
        !failed["error"].as_str().unwrap_or("").is_empty(),
        "{failed}"
    );
    let page = w.get(r.header("location"), Some(&admin)).await;
    assert!(page.body.contains("Test notifications"), "{}", page.body);
    for text in [
        "Test notification to ops hook",
        "Test notification to ops mail",
        "Test notification to dead hook",
        "failed",
    ] {
        assert!(page.body.contains(text), "{text} in {}", page.body);
    }

    // Administrators only; an unknown destination is not found; tests stay out of device logs.
    let alice = w.login("alice@example.com").await;
    let r = w
        .api(
            Method::POST,
            &format!("/api/alarm-destinations/{hook_id}/test"),
            &alice,
            "",
        )
        .await;
    assert!(r.status.is_client_error(), "{:?}", r.status);
    let r = w
        .post_form(
            &format!("/admin/alarms/destinations/{hook_id}/test"),
            &alice,
            "",
        )
        .await;
    assert!(r.status.is_client_error(), "{:?}", r.status);
    for m in [Method::POST, Method::GET] {
        let r = w
            .api(m, "/api/alarm-destinations/999/test", &admin, "")
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    }
    let r = w
        .api(Method::GET, "/api/devices/1/notifications", &admin, "")
        .await;
    assert_eq!(json(&r), serde_json::json!([]));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(hooks.lock().unwrap().len(), 1, "only the admin's test");
    // Audited.
    let audit = w.get("/audit", Some(&admin)).await;
    assert!(
        audit.body.contains("alarm.destination.test"),
        "{}",
        audit.body
    );
    let metrics = w.server.api().metrics_text().await;
    for line in [
        "tek_alarm_notifications_sent_total 2",
        "tek_alarm_notifications_failed_total 1",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
}
