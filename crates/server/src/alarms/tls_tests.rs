//! Alarm delivery over TLS, end to end through the delivery queue ([`super::deliver::start`],
//! as the alarm task uses it) against servers written here on 127.0.0.1: an SMTP server that
//! speaks STARTTLS or implicit TLS and wants AUTH PLAIN, and an HTTPS webhook receiver. Their
//! certificates come from a throwaway CA made by each test (rcgen) and trusted through
//! `alarms.ca_file`; certificates from another CA, or for another name, must fail the delivery
//! with the reason in the notification log.

use super::config::SmtpTls;
use super::deliver::{self, Job};
use super::AlarmsConfig;
use crate::storage::sqlite::Sqlite;
use crate::storage::{
    DeliveryState, Destination, DestinationKind, NewNotification, NotificationRecord, Storage,
};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// A certificate authority for one test.
pub(super) struct Ca {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    cert: rcgen::Certificate,
}

impl Ca {
    /// A new self-signed CA.
    pub(super) fn new(name: &str) -> Ca {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(rcgen::DnType::CommonName, name.to_owned());
        p.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        Ca {
            issuer: rcgen::Issuer::new(p, key),
            cert,
        }
    }

    /// The CA certificate, PEM (what `alarms.ca_file` holds).
    pub(super) fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A TLS server configuration with a certificate for `names` signed by this CA.
    fn server(&self, names: &[&str]) -> TlsAcceptor {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let p = rcgen::CertificateParams::new(names).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        let chain = vec![cert.der().clone(), self.cert.der().clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let cfg = rustls::ServerConfig::builder_with_provider(super::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        TlsAcceptor::from(Arc::new(cfg))
    }

    /// A server certificate for 127.0.0.1 and localhost.
    fn localhost(&self) -> TlsAcceptor {
        self.server(&["127.0.0.1", "localhost"])
    }
}

/// `AUTH PLAIN` of user `tek`, password `relay-pass-1`: base64 of "\0tek\0relay-pass-1".
const AUTH_PLAIN: &str = "AHRlawByZWxheS1wYXNzLTE=";

/// A mail as the test SMTP server saw it.
#[derive(Debug, Clone)]
struct Mail {
    /// Whether the message came over TLS.
    tls: bool,
    /// Whether the client had authenticated.
    authed: bool,
    to: String,
    data: String,
}

/// An SMTP server on 127.0.0.1:0: `implicit` TLS from the first byte, else plain with
/// STARTTLS offered. It offers AUTH only over TLS and, when `need_auth`, refuses mail before it.
async fn smtp_server(
    acceptor: TlsAcceptor,
    implicit: bool,
    need_auth: bool,
) -> (SocketAddr, Arc<Mutex<Vec<Mail>>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let mails = Arc::new(Mutex::new(Vec::new()));
    let store = mails.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = l.accept().await {
            let (acceptor, store) = (acceptor.clone(), store.clone());
            tokio::spawn(async move {
                if implicit {
                    let Ok(tls) = acceptor.accept(sock).await else {
                        return;
                    };
                    let mut s = BufReader::new(tls);
                    let _ = s.write_all(b"220 test ESMTP\r\n").await;
                    smtp_session(&mut s, true, need_auth, &store).await;
                } else {
                    let mut s = BufReader::new(sock);
                    let _ = s.write_all(b"220 test ESMTP\r\n").await;
                    if smtp_session(&mut s, false, need_auth, &store).await {
                        // STARTTLS answered with 220: the client's handshake comes next.
                        let Ok(tls) = acceptor.accept(s.into_inner()).await else {
                            return;
                        };
                        let mut s = BufReader::new(tls);
                        smtp_session(&mut s, true, need_auth, &store).await;
                    }
                }
            });
        }
    });
    (addr, mails)
}

/// One SMTP conversation; returns true when the client asked for STARTTLS (and got 220).
async fn smtp_session<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut BufReader<S>,
    tls: bool,
    need_auth: bool,
    store: &Mutex<Vec<Mail>>,
) -> bool {
    let (mut authed, mut to) = (false, String::new());
    let mut line = String::new();
    loop {
        line.clear();
        if s.read_line(&mut line).await.unwrap_or(0) == 0 {
            return false;
        }
        let cmd = line.trim_end().to_owned();
        let upper = cmd.to_ascii_uppercase();
        let reply: String = if upper.starts_with("EHLO") {
            let mut r = String::from("250-test\r\n");
            if !tls {
                r.push_str("250-STARTTLS\r\n");
            } else {
                r.push_str("250-AUTH PLAIN LOGIN\r\n");
            }
            r + "250 8BITMIME\r\n"
        } else if upper == "STARTTLS" && !tls {
            let _ = s.write_all(b"220 ready to start TLS\r\n").await;
            return true;
        } else if let Some(arg) = upper.strip_prefix("AUTH PLAIN ") {
            // Compare the original (case-sensitive) base64.
            let arg = &cmd[cmd.len() - arg.len()..];
            if tls && arg == AUTH_PLAIN {
                authed = true;
                "235 authenticated\r\n".into()
            } else {
                "535 bad credentials\r\n".into()
            }
        } else if upper.starts_with("MAIL FROM:") {
            if need_auth && !authed {
                "530 authentication required\r\n".into()
            } else {
                "250 ok\r\n".into()
            }
        } else if upper.starts_with("RCPT TO:") {
            to = cmd[8..].to_owned();
            "250 ok\r\n".into()
        } else if upper == "DATA" {
            let _ = s.write_all(b"354 go ahead\r\n").await;
            let mut data = String::new();
            loop {
                line.clear();
                if s.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return false;
                }
                if line == ".\r\n" {
                    break;
                }
                data.push_str(&line);
            }
            store.lock().unwrap().push(Mail {
                tls,
                authed,
                to: std::mem::take(&mut to),
                data,
            });
            "250 queued\r\n".into()
        } else if upper == "QUIT" {
            let _ = s.write_all(b"221 bye\r\n").await;
            let _ = s.shutdown().await;
            return false;
        } else if upper == "RSET" || upper == "NOOP" {
            "250 ok\r\n".into()
        } else {
            "502 not implemented\r\n".into()
        };
        if s.write_all(reply.as_bytes()).await.is_err() {
            return false;
        }
    }
}

/// A received webhook: path, signature header, body.
type Hook = (String, String, String);

/// An HTTPS receiver on 127.0.0.1:0: records each POST and answers 200.
async fn https_receiver(acceptor: TlsAcceptor) -> (SocketAddr, Arc<Mutex<Vec<Hook>>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let store = got.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = l.accept().await {
            let (acceptor, store) = (acceptor.clone(), store.clone());
            tokio::spawn(async move {
                let Ok(mut s) = acceptor.accept(sock).await else {
                    return;
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = s.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                    let header = |name: &str| {
                        head.lines()
                            .find_map(|l| l.strip_prefix(name))
                            .map(|v| v.trim().to_owned())
                            .unwrap_or_default()
                    };
                    let len: usize = header("content-length:").parse().unwrap_or(0);
                    if buf.len() < i + 4 + len {
                        continue;
                    }
                    let path = head.split(' ').nth(1).unwrap_or("").to_owned();
                    let body = String::from_utf8_lossy(&buf[i + 4..i + 4 + len]).into_owned();
                    store
                        .lock()
                        .unwrap()
                        .push((path, header("x-tek-signature:"), body));
                    let _ = s
                        .write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        )
                        .await;
                    let _ = s.shutdown().await;
                    return;
                }
            });
        }
    });
    (addr, got)
}

/// Settings for a test: no retries, short timeouts, `ca` trusted through `alarms.ca_file`.
fn config(dir: &std::path::Path, ca: Option<&Ca>) -> AlarmsConfig {
    let mut cfg = AlarmsConfig {
        retries: 0,
        retry_initial_ms: 10,
        timeout_ms: 10_000,
        ..AlarmsConfig::default()
    };
    if let Some(ca) = ca {
        let path = dir.join("ca.pem");
        std::fs::write(&path, ca.pem()).unwrap();
        cfg.ca_file = Some(path);
    }
    cfg.smtp.from = "tek@pool.example".into();
    cfg
}

/// Sends one notification to `destination` through the delivery queue and returns its log row
/// once delivered or failed.
async fn deliver_one(
    dir: &std::path::Path,
    cfg: AlarmsConfig,
    destination: Destination,
) -> NotificationRecord {
    cfg.validate().unwrap();
    let db: Arc<dyn Storage> = Arc::new(Sqlite::open_dir(dir).unwrap());
    let note_id = db
        .log_notification(
            &NewNotification {
                alarm_id: None,
                device_id: 7,
                list_id: 1,
                destination_id: destination.id,
                destination: destination.name.clone(),
                event: "raised".into(),
                subject: "pool 7: water too hot".into(),
            },
            0,
        )
        .unwrap();
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    let counters = Arc::new(super::counters::Counters::default());
    let queue = deliver::start(db.clone(), cfg, counters, stop);
    queue.push(Job {
        note_id,
        destination,
        subject: "pool 7: water too hot".into(),
        text: "Water above 30.0 °C".into(),
        body: r#"{"event":"raised","device_id":7}"#.into(),
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let n = db.notifications(None, None, 10).unwrap();
        let row = n.into_iter().find(|r| r.id == note_id).unwrap();
        if row.state != DeliveryState::Queued {
            return row;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no delivery result: {row:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn email() -> Destination {
    Destination {
        id: 1,
        name: "ops mail".into(),
        kind: DestinationKind::Email,
        target: "ops@pool.example".into(),
        secret: None,
        created_at: 0,
    }
}

const SECRET: &str = "webhook-secret-0123456789";

fn webhook(url: String) -> Destination {
    Destination {
        id: 2,
        name: "ops hook".into(),
        kind: DestinationKind::Webhook,
        target: url,
        secret: Some(SECRET.into()),
        created_at: 0,
    }
}

fn smtp_to(cfg: &mut AlarmsConfig, addr: SocketAddr, tls: SmtpTls) {
    cfg.smtp.host = addr.ip().to_string();
    cfg.smtp.port = Some(addr.port());
    cfg.smtp.tls = tls;
}

fn with_auth(cfg: &mut AlarmsConfig) {
    cfg.smtp.username = Some("tek".into());
    cfg.smtp.password = Some("relay-pass-1".into());
}

#[tokio::test]
async fn email_over_starttls_with_auth() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("tek test CA");
    let (addr, mails) = smtp_server(ca.localhost(), false, true).await;
    let mut cfg = config(dir.path(), Some(&ca));
    smtp_to(&mut cfg, addr, SmtpTls::Starttls);
    with_auth(&mut cfg);
    let row = deliver_one(dir.path(), cfg, email()).await;
    assert_eq!(row.state, DeliveryState::Sent, "{row:?}");
    assert_eq!((row.attempts, row.error), (1, None));
    let mails = mails.lock().unwrap().clone();
    assert_eq!(mails.len(), 1);
    assert!(mails[0].tls && mails[0].authed, "{mails:?}");
    assert!(mails[0].to.contains("ops@pool.example"), "{mails:?}");
    assert!(mails[0].data.contains("pool 7: water too hot"), "{mails:?}");
}

#[tokio::test]
async fn email_over_implicit_tls_with_auth() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("tek test CA");
    let (addr, mails) = smtp_server(ca.localhost(), true, true).await;
    let mut cfg = config(dir.path(), Some(&ca));
    smtp_to(&mut cfg, addr, SmtpTls::Tls);
    with_auth(&mut cfg);
    let row = deliver_one(dir.path(), cfg, email()).await;
    assert_eq!(row.state, DeliveryState::Sent, "{row:?}");
    let mails = mails.lock().unwrap().clone();
    assert_eq!(mails.len(), 1);
    assert!(mails[0].tls && mails[0].authed, "{mails:?}");
}

#[tokio::test]
async fn email_with_a_wrong_password_fails_with_the_relays_answer() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("tek test CA");
    let (addr, mails) = smtp_server(ca.localhost(), true, true).await;
    let mut cfg = config(dir.path(), Some(&ca));
    smtp_to(&mut cfg, addr, SmtpTls::Tls);
    with_auth(&mut cfg);
    cfg.smtp.password = Some("wrong".into());
    let row = deliver_one(dir.path(), cfg, email()).await;
    assert_eq!(row.state, DeliveryState::Failed, "{row:?}");
    let error = row.error.unwrap_or_default();
    assert!(error.contains("535"), "{error}");
    assert!(mails.lock().unwrap().is_empty());
}

#[tokio::test]
async fn starttls_is_required_never_skipped() {
    // A relay that does not offer STARTTLS (the plain test server of the e2e tests does not):
    // the mail is not sent in clear, the delivery fails and says why.
    let dir = tempfile::tempdir().unwrap();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((sock, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut s = BufReader::new(sock);
                let _ = s.write_all(b"220 plain ESMTP\r\n").await;
                let mut line = String::new();
                while s.read_line(&mut line).await.unwrap_or(0) > 0 {
                    let reply: &[u8] = if line.to_ascii_uppercase().starts_with("EHLO") {
                        b"250-plain\r\n250 8BITMIME\r\n"
                    } else {
                        b"250 ok\r\n"
                    };
                    line.clear();
                    if s.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let mut cfg = config(dir.path(), None);
    smtp_to(&mut cfg, addr, SmtpTls::Starttls);
    let row = deliver_one(dir.path(), cfg, email()).await;
    assert_eq!(row.state, DeliveryState::Failed, "{row:?}");
    let error = row.error.unwrap_or_default();
    assert!(error.contains("STARTTLS"), "{error}");
}

#[tokio::test]
async fn email_to_an_untrusted_relay_fails_with_the_certificate_error() {
    let dir = tempfile::tempdir().unwrap();
    let trusted = Ca::new("tek test CA");
    let other = Ca::new("someone else");
    for implicit in [false, true] {
        let (addr, mails) = smtp_server(other.localhost(), implicit, false).await;
        let mut cfg = config(dir.path(), Some(&trusted));
        let mode = if implicit {
            SmtpTls::Tls
        } else {
            SmtpTls::Starttls
        };
        smtp_to(&mut cfg, addr, mode);
        let row = deliver_one(dir.path(), cfg, email()).await;
        assert_eq!(row.state, DeliveryState::Failed, "{mode:?}: {row:?}");
        let error = row.error.unwrap_or_default();
        assert!(
            error.contains("invalid peer certificate") && error.contains("UnknownIssuer"),
            "{mode:?}: {error}"
        );
        assert!(mails.lock().unwrap().is_empty());
    }
}

#[tokio::test]
async fn email_to_a_relay_with_a_certificate_for_another_name_fails() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("tek test CA");
    let (addr, mails) = smtp_server(ca.server(&["mail.example"]), true, false).await;
    let mut cfg = config(dir.path(), Some(&ca));
    smtp_to(&mut cfg, addr, SmtpTls::Tls);
    let row = deliver_one(dir.path(), cfg, email()).await;
    assert_eq!(row.state, DeliveryState::Failed, "{row:?}");
    let error = row.error.unwrap_or_default();
    assert!(error.contains("not valid for name"), "{error}");
    assert!(mails.lock().unwrap().is_empty());
}

#[tokio::test]
async fn webhook_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("tek test CA");
    let (addr, got) = https_receiver(ca.localhost()).await;
    let cfg = config(dir.path(), Some(&ca));
    let row = deliver_one(dir.path(), cfg, webhook(format!("https://{addr}/hook"))).await;
    assert_eq!(row.state, DeliveryState::Sent, "{row:?}");
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let (path, sig, body) = &got[0];
    assert_eq!(path, "/hook");
    assert_eq!(body, r#"{"event":"raised","device_id":7}"#);
    assert_eq!(*sig, deliver::signature(SECRET.as_bytes(), body.as_bytes()));
}

#[tokio::test]
async fn webhook_to_an_untrusted_receiver_fails_with_the_certificate_error() {
    let dir = tempfile::tempdir().unwrap();
    let trusted = Ca::new("tek test CA");
    let other = Ca::new("someone else");
    let (addr, got) = https_receiver(other.localhost()).await;
    let mut cfg = config(dir.path(), Some(&trusted));
    cfg.retries = 1;
    let row = deliver_one(dir.path(), cfg, webhook(format!("https://{addr}/hook"))).await;
    assert_eq!(row.state, DeliveryState::Failed, "{row:?}");
    assert_eq!(row.attempts, 2, "retried like any failed attempt");
    let error = row.error.unwrap_or_default();
    assert!(
        error.contains("invalid peer certificate") && error.contains("UnknownIssuer"),
        "{error}"
    );
    assert!(got.lock().unwrap().is_empty());
}

#[tokio::test]
async fn without_the_ca_file_the_test_ca_is_not_trusted() {
    // The system roots alone do not vouch for the throwaway CA: the CA file is what made the
    // successful tests above succeed.
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("tek test CA");
    let (addr, got) = https_receiver(ca.localhost()).await;
    let cfg = config(dir.path(), None);
    let row = deliver_one(dir.path(), cfg, webhook(format!("https://{addr}/hook"))).await;
    assert_eq!(row.state, DeliveryState::Failed, "{row:?}");
    assert!(
        row.error.unwrap_or_default().contains("UnknownIssuer"),
        "certificate error expected"
    );
    assert!(got.lock().unwrap().is_empty());
}

/// Plain `http://` webhooks still work (the e2e tests use them).
#[tokio::test]
async fn webhook_over_plain_http_still_works() {
    let dir = tempfile::tempdir().unwrap();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _): (TcpStream, _) = l.accept().await.unwrap();
        let mut buf = vec![0u8; 8192];
        let mut n = 0;
        while !String::from_utf8_lossy(&buf[..n]).contains("device_id") {
            let m = s.read(&mut buf[n..]).await.unwrap();
            if m == 0 {
                return;
            }
            n += m;
        }
        let _ = s
            .write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
            .await;
    });
    let cfg = config(dir.path(), None);
    let row = deliver_one(dir.path(), cfg, webhook(format!("http://{addr}/hook"))).await;
    assert_eq!(row.state, DeliveryState::Sent, "{row:?}");
}
