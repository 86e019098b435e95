//! No secret in any log line: with every log event of every crate captured at TRACE level, a
//! login, a configuration carrying a GSM password, an API token's creation and use, and a
//! failed login leave no password, password hash, session cookie, token, GSM password or device
//! key in the log.

mod web_common;

use hyper::{Method, StatusCode};
use std::io::Write;
use std::sync::{Arc, Mutex};
use web_common::*;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_any_log_line() {
    let cap = Capture::default();
    let writer = cap.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let w = start().await;
    let s = w.login("alice@example.com").await;
    let wrong = w.try_login("bob@example.com", "not bobs password").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let r = w
        .api(
            Method::PUT,
            "/api/devices/1/config",
            &s,
            r#"{"gsm_password": "GsmSecret77", "gsm_apn": "internet"}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = w
        .api(Method::POST, "/api/tokens", &s, r#"{"name":"t"}"#)
        .await;
    let token = r.body.split("\"token\":\"").nth(1).unwrap()[..64].to_owned();
    let auth = format!("Bearer {token}");
    let r = w
        .send(Method::GET, "/api/devices", &[("authorization", &auth)], "")
        .await;
    assert_eq!(r.status, StatusCode::OK);
    w.server.api().latest_config(1).await.unwrap();

    let log = String::from_utf8(cap.0.lock().unwrap().clone()).unwrap();
    assert!(
        log.contains("signed in"),
        "the capture works: {}",
        &log[..log.len().min(500)]
    );
    let cookie_secret = s.cookie.split('=').nth(1).unwrap();
    for (what, secret) in [
        ("password", PASSWORD),
        ("wrong password", "not bobs password"),
        ("GSM password", "GsmSecret77"),
        ("API token", token.as_str()),
        ("session cookie", cookie_secret),
        ("password hash", "$argon2id$"),
        ("device key", &"a5".repeat(16)),
        ("device key bytes", "165, 165, 165"),
    ] {
        assert!(!log.contains(secret), "the log shows the {what}");
    }
}
