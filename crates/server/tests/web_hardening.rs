//! Findings of the penetration test (issue 20), each shown fixed end to end: the login limits
//! count per client address (the TCP peer, or a trusted proxy's X-Forwarded-For), password
//! checks are bounded, an account cannot be locked out by others.

mod web_common;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::net::IpAddr;
use web_common::*;

/// A login attempt sent from source address `from` (any 127.0.0.0/8 address), with extra
/// headers.
async fn login_from(
    w: &Web,
    from: &str,
    email: &str,
    password: &str,
    headers: &[(&str, &str)],
) -> Answer {
    let mut conn = HttpConnector::new();
    conn.set_local_address(Some(from.parse::<IpAddr>().unwrap()));
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(conn);
    let body = format!(
        "email={}&password={}",
        email.replace('@', "%40"),
        password.replace(' ', "+")
    );
    let mut b = Request::builder()
        .method(Method::POST)
        .uri(format!("http://{}/login", w.addr))
        .header("host", w.addr.to_string())
        .header("content-type", "application/x-www-form-urlencoded");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let r = client
        .request(b.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .unwrap();
    let status = r.status();
    let headers = r.headers().clone();
    let body = r.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// The pentest's reproduction: 25 attempts with different e-mails from one address. Before the
/// server knew peer addresses, all 25 were checked (25 × 401); now the address's allowance (20)
/// runs out and the rest are refused before any password check.
#[tokio::test]
async fn login_limit_counts_per_client_address() {
    let w = start().await;
    let mut codes = Vec::new();
    for n in 0..25 {
        let r = login_from(&w, "127.0.0.7", &format!("n{n}@x.yz"), "x", &[]).await;
        codes.push(r.status);
    }
    assert!(
        codes[..20].iter().all(|c| *c == StatusCode::UNAUTHORIZED),
        "{codes:?}"
    );
    assert!(
        codes[20..]
            .iter()
            .all(|c| *c == StatusCode::TOO_MANY_REQUESTS),
        "{codes:?}"
    );
    // Another address is not affected.
    let r = login_from(&w, "127.0.0.8", "alice@example.com", PASSWORD, &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
}

/// X-Forwarded-For is believed only from a trusted proxy: from anyone else it is the client's
/// own claim and cannot buy a fresh allowance.
#[tokio::test]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    // Untrusted: a changing X-Forwarded-For does not help the flooder.
    let w = start().await;
    let mut limited = 0;
    for n in 0..25 {
        let xff = format!("198.51.100.{n}");
        let r = login_from(
            &w,
            "127.0.0.9",
            &format!("n{n}@x.yz"),
            "x",
            &[("x-forwarded-for", &xff)],
        )
        .await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            limited += 1;
        }
    }
    assert_eq!(limited, 5);
    // Behind a trusted proxy (127.0.0.9), each forwarded client has its own allowance, and the
    // proxy itself is not limited as one client.
    let w = start_with(tek_server::web::WebOptions {
        trusted_proxies: vec!["127.0.0.9".parse().unwrap()],
        ..Default::default()
    })
    .await;
    for n in 0..25 {
        let xff = format!("6.6.6.6, 198.51.100.{n}");
        let r = login_from(
            &w,
            "127.0.0.9",
            &format!("n{n}@x.yz"),
            "x",
            &[("x-forwarded-for", &xff)],
        )
        .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "attempt {n}");
    }
    // One forwarded client is still limited.
    let mut codes = Vec::new();
    for n in 0..21 {
        let r = login_from(
            &w,
            "127.0.0.9",
            &format!("m{n}@x.yz"),
            "x",
            &[("x-forwarded-for", "203.0.113.5")],
        )
        .await;
        codes.push(r.status);
    }
    assert_eq!(codes[20], StatusCode::TOO_MANY_REQUESTS, "{codes:?}");
}

/// Password checks beyond `login_hashes` are answered 503 at once instead of queueing (each
/// check holds 19 MiB and a core). The flooding address has used its fresh allowance, so it
/// does not get the permit kept for fresh addresses either.
#[tokio::test]
async fn password_checks_are_bounded() {
    let w = start_with(tek_server::web::WebOptions {
        login_hashes: 1,
        ..Default::default()
    })
    .await;
    for n in 0..4 {
        let r = login_from(&w, "127.0.0.10", &format!("warm{n}@x.yz"), "x", &[]).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let w = std::sync::Arc::new(w);
    let mut tasks = Vec::new();
    for n in 0..12 {
        let w = w.clone();
        tasks.push(tokio::spawn(async move {
            let t = std::time::Instant::now();
            let r = login_from(&w, "127.0.0.10", &format!("c{n}@x.yz"), "x", &[]).await;
            (r.status, r.header("retry-after").to_owned(), t.elapsed())
        }));
    }
    let mut busy = 0;
    for t in tasks {
        let (status, retry, _) = t.await.unwrap();
        match status {
            StatusCode::SERVICE_UNAVAILABLE => {
                busy += 1;
                assert_eq!(retry, "1");
            }
            StatusCode::UNAUTHORIZED => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert!(busy > 0, "12 checks at once all ran");
    // A user from an address that is not flooding still gets in.
    let r = login_from(&w, "127.0.0.11", "alice@example.com", PASSWORD, &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
}

/// Lockout by anyone: wrong attempts from another address no longer lock the owner out; they
/// lock out only the address that made them.
#[tokio::test]
async fn wrong_attempts_from_elsewhere_do_not_lock_the_owner_out() {
    let w = start().await;
    // The owner has signed in before from 127.0.0.20.
    let r = login_from(&w, "127.0.0.20", "alice@example.com", PASSWORD, &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    // An attacker spends the account's allowance from one address ...
    let mut last = StatusCode::OK;
    for _ in 0..8 {
        last = login_from(&w, "127.0.0.21", "alice@example.com", "wrong", &[])
            .await
            .status;
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
    // ... and from many (one attempt each, as the pentest's one every 12 s from anywhere).
    for n in 0..30 {
        login_from(
            &w,
            &format!("127.0.1.{n}"),
            "alice@example.com",
            "wrong",
            &[],
        )
        .await;
    }
    // The owner still gets in from their address.
    let r = login_from(&w, "127.0.0.20", "alice@example.com", PASSWORD, &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    // A fresh address that never signed in to the account counts against the account's bound
    // on distributed guessing.
    let r = login_from(&w, "127.0.0.22", "alice@example.com", PASSWORD, &[]).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
}

/// `web.public_url`: https gives `__Host-` + `Secure` cookies and HSTS, whatever the listener;
/// http gives plain cookies and no HSTS even on a public listener.
#[tokio::test]
async fn public_url_decides_cookies_and_hsts() {
    let mut cfg = tek_server::Config::default();
    cfg.web.public_url = Some("https://ems.example.com".into());
    let opts = tek_server::web::WebOptions::from_config(&cfg);
    assert!(opts.secure_cookies && opts.hsts);
    let w = start_with(opts).await;
    let r = w.try_login("alice@example.com", PASSWORD).await;
    let c = r.header("set-cookie");
    assert!(
        c.starts_with("__Host-tek_session=") && c.contains("; Secure"),
        "{c}"
    );
    assert_eq!(r.header("strict-transport-security"), "max-age=31536000");
    assert_eq!(
        w.get("/", None).await.header("strict-transport-security"),
        "max-age=31536000"
    );
    let mut cfg = tek_server::Config {
        http: "0.0.0.0:8080".parse().unwrap(),
        ..Default::default()
    };
    cfg.web.public_url = Some("http://ems.lan".into());
    let opts = tek_server::web::WebOptions::from_config(&cfg);
    assert!(!opts.secure_cookies && !opts.hsts);
    let w = start_with(opts).await;
    let r = w.try_login("alice@example.com", PASSWORD).await;
    assert!(r.header("set-cookie").starts_with("tek_session="));
    assert_eq!(r.header("strict-transport-security"), "");
    // Unset: as before, Secure unless the listener is loopback; no HSTS.
    let opts = tek_server::web::WebOptions::from_config(&tek_server::Config::default());
    assert!(!opts.secure_cookies && !opts.hsts);
    // A public_url that is not a URL is refused at start.
    assert!(tek_server::Config::from_toml(
        "[web]\npublic_url = \"ems.example.com\"\n",
        "x".as_ref()
    )
    .is_err());
}
