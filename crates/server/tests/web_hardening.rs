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

/// Sends wrong-password attempts (e-mails `{tag}0@x.yz`, `{tag}1@x.yz`, …) from `from`, attempt
/// `n` with X-Forwarded-For `xff(n)` if that is `Some`, until one is refused with 429, at most
/// 60. Returns how many were checked (401) before it. Every other answer fails the test.
async fn attempts_until_limited(
    w: &Web,
    from: &str,
    xff: impl Fn(usize) -> Option<String>,
    tag: &str,
) -> usize {
    let started = std::time::Instant::now();
    for n in 0..60 {
        let forwarded = xff(n);
        let headers: Vec<(&str, &str)> = forwarded
            .as_deref()
            .map(|x| ("x-forwarded-for", x))
            .into_iter()
            .collect();
        let r = login_from(w, from, &format!("{tag}{n}@x.yz"), "x", &headers).await;
        match r.status {
            StatusCode::UNAUTHORIZED => continue,
            StatusCode::TOO_MANY_REQUESTS => {
                assert_allowance(n, started.elapsed());
                return n;
            }
            other => panic!("attempt {n}: {other}"),
        }
    }
    panic!("60 attempts from {from} and never limited");
}

/// An address's allowance is a burst of 20, then 1 per 3 s (`ratelimit.rs`): `checked` attempts
/// went through before the first refusal, `elapsed` after the first. Each password check takes
/// a while (argon2id), more on a loaded machine, so the bucket refills meanwhile; the bound
/// allows exactly those refills and no more.
fn assert_allowance(checked: usize, elapsed: std::time::Duration) {
    let refills = (elapsed.as_secs_f64() / 3.0).floor() as usize;
    assert!(
        (20..=20 + refills).contains(&checked),
        "{checked} attempts checked before the first 429 in {elapsed:?} (allowance 20 + {refills})"
    );
}

/// The pentest's reproduction: 25 attempts with different e-mails from one address. Before the
/// server knew peer addresses, all 25 were checked (25 × 401); now the address's allowance (20)
/// runs out and the rest are refused before any password check.
#[tokio::test]
async fn login_limit_counts_per_client_address() {
    let w = start().await;
    attempts_until_limited(&w, "127.0.0.7", |_| None, "n").await;
    // Once limited, the address stays limited while it keeps trying.
    for n in 0..4 {
        let r = login_from(&w, "127.0.0.7", &format!("after{n}@x.yz"), "x", &[]).await;
        assert_eq!(
            r.status,
            StatusCode::TOO_MANY_REQUESTS,
            "attempt {n} after the limit"
        );
    }
    // An address of another network is not affected. (One of the same /24 shares the network's
    // allowance, 20 then 1 per second, which those 20 checks spent for a moment:
    // `ratelimit.rs::tests::many_addresses_of_one_network_share_its_allowance`.)
    let r = login_from(&w, "127.0.5.8", "alice@example.com", PASSWORD, &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
}

/// X-Forwarded-For is believed only from a trusted proxy: from anyone else it is the client's
/// own claim and cannot buy a fresh allowance.
#[tokio::test]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    // Untrusted: a changing X-Forwarded-For does not help the flooder.
    let w = start().await;
    let forged = |n: usize| Some(format!("198.51.100.{n}"));
    attempts_until_limited(&w, "127.0.0.9", forged, "n").await;
    // Behind a trusted proxy (127.0.0.9), each forwarded client has its own allowance, and the
    // proxy itself is not limited as one client.
    let w = start_with(tek_server::http::WebOptions {
        trusted_proxies: vec!["127.0.0.9".parse().unwrap()],
        ..Default::default()
    })
    .await;
    // (Each in a network of its own: clients of one network also share its allowance.)
    for n in 0..25 {
        let xff = format!("6.6.6.6, 198.51.{n}.1");
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
    let client = |_| Some("203.0.113.5".to_string());
    attempts_until_limited(&w, "127.0.0.9", client, "m").await;
}

/// Password checks beyond `login_hashes` are answered 503 at once instead of queueing (each
/// check holds 19 MiB and a core). The flooding address is not fresh (it tried within the last
/// seconds), so it does not get the permit kept for fresh addresses either.
#[tokio::test]
async fn password_checks_are_bounded() {
    let w = start_with(tek_server::http::WebOptions {
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
    // ... and from many, each in a network of its own (one attempt each, as the pentest's one
    // every 12 s from anywhere).
    for n in 0..30 {
        login_from(
            &w,
            &format!("127.1.{n}.1"),
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
    let opts = tek_server::http::WebOptions::from_config(&cfg);
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
    let opts = tek_server::http::WebOptions::from_config(&cfg);
    assert!(!opts.secure_cookies && !opts.hsts);
    let w = start_with(opts).await;
    let r = w.try_login("alice@example.com", PASSWORD).await;
    assert!(r.header("set-cookie").starts_with("tek_session="));
    assert_eq!(r.header("strict-transport-security"), "");
    // Unset: as before, Secure unless the listener is loopback; no HSTS.
    let opts = tek_server::http::WebOptions::from_config(&tek_server::Config::default());
    assert!(!opts.secure_cookies && !opts.hsts);
    // A public_url that is not a URL is refused at start.
    assert!(tek_server::Config::from_toml(
        "[web]\npublic_url = \"ems.example.com\"\n",
        "x".as_ref()
    )
    .is_err());
}

/// An open event stream: the response body, read frame by frame.
struct Stream(hyper::body::Incoming);

impl Stream {
    async fn open(w: &Web, device: u32, s: &Session) -> Result<Stream, StatusCode> {
        let req = Request::builder()
            .method(Method::GET)
            .uri(format!("http://{}/devices/{device}/events", w.addr))
            .header("host", w.addr.to_string())
            .header("cookie", &s.cookie)
            .body(Full::new(Bytes::new()))
            .unwrap();
        let r = w.client.request(req).await.unwrap();
        if r.status() != StatusCode::OK {
            return Err(r.status());
        }
        let mut st = Stream(r.into_body());
        let first = st.next(std::time::Duration::from_secs(5)).await;
        assert!(
            first
                .as_deref()
                .is_some_and(|t| t.contains("event: device")),
            "{first:?}"
        );
        Ok(st)
    }

    /// The next data frame as text; `None` when the stream ended (or nothing came in `wait`).
    async fn next(&mut self, wait: std::time::Duration) -> Option<String> {
        loop {
            match tokio::time::timeout(wait, self.0.frame()).await {
                Ok(Some(Ok(f))) => {
                    if let Ok(d) = f.into_data() {
                        return Some(String::from_utf8_lossy(&d).into_owned());
                    }
                }
                _ => return None,
            }
        }
    }

    /// Whether the stream ends within `wait` (no frame but its end).
    async fn ends_within(&mut self, wait: std::time::Duration) -> bool {
        let until = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(until, self.0.frame()).await {
                Ok(None) | Ok(Some(Err(_))) => return true,
                Ok(Some(Ok(_))) => continue,
                Err(_) => return false,
            }
        }
    }
}

fn fast_streams() -> tek_server::http::WebOptions {
    tek_server::http::WebOptions {
        event_interval_ms: 100,
        streams_per_user: 2,
        ..Default::default()
    }
}

/// Live streams end with their session: on logout, when the user is deleted, and (for the
/// other sessions) when the password is changed.
#[tokio::test]
async fn event_streams_end_with_their_session() {
    let w = start_with(fast_streams()).await;
    let long = std::time::Duration::from_secs(3);
    // Logout.
    let alice = w.login("alice@example.com").await;
    let mut s = Stream::open(&w, 1, &alice).await.unwrap();
    assert!(!s.ends_within(std::time::Duration::from_millis(400)).await);
    assert_eq!(
        w.post_form("/logout", &alice, "").await.status,
        StatusCode::SEE_OTHER
    );
    assert!(s.ends_within(long).await, "stream outlived its logout");
    // Password change: the other session's stream ends, and so does the session.
    let a1 = w.login("alice@example.com").await;
    let a2 = w.login("alice@example.com").await;
    let mut s2 = Stream::open(&w, 1, &a2).await.unwrap();
    let r = w
        .post_form(
            "/account/password",
            &a1,
            &format!(
                "current={}&new=a+new+long+password",
                PASSWORD.replace(' ', "+")
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(
        s2.ends_within(long).await,
        "stream outlived the password change"
    );
    // Deletion of the user: an administrator (who sees every device without a membership,
    // so only the session check can end the stream).
    let admin2 = {
        use tek_server::storage::UserStore;
        let db = tek_server::storage::sqlite::Sqlite::open_dir(w._dir.path()).unwrap();
        let hash = tek_server::http::auth::hash_password(PASSWORD).unwrap();
        db.create_user("admin2@example.com", &hash, true, 0)
            .unwrap()
    };
    let admin = w.login("admin@example.com").await;
    let other = w.login("admin2@example.com").await;
    let mut sb = Stream::open(&w, 3, &other).await.unwrap();
    let r = w
        .post_form(&format!("/admin/users/{admin2}/delete"), &admin, "")
        .await;
    assert!(
        r.status.is_redirection() || r.status.is_success(),
        "{}",
        r.status
    );
    assert!(
        sb.ends_within(long).await,
        "a deleted user's stream went on"
    );
}

/// One user holds at most `streams_per_user` streams; others are not affected, and a stream
/// that ended gives its place back.
#[tokio::test]
async fn event_streams_per_user_are_capped() {
    let w = start_with(fast_streams()).await;
    let a1 = w.login("alice@example.com").await;
    let a2 = w.login("alice@example.com").await;
    let _x = Stream::open(&w, 1, &a1).await.unwrap();
    let mut y = Stream::open(&w, 2, &a2).await.unwrap();
    assert_eq!(
        Stream::open(&w, 1, &a1).await.err(),
        Some(StatusCode::SERVICE_UNAVAILABLE)
    );
    let bob = w.login("bob@example.com").await;
    let _b = Stream::open(&w, 3, &bob).await.unwrap();
    // a2 signs out: its stream ends and alice may open another.
    w.post_form("/logout", &a2, "").await;
    assert!(y.ends_within(std::time::Duration::from_secs(3)).await);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let _z = Stream::open(&w, 1, &a1).await.unwrap();
}

/// A password change revokes the user's API tokens (as `tek user passwd` says: signed out
/// everywhere); one token can also be revoked alone.
#[tokio::test]
async fn password_change_revokes_api_tokens() {
    let w = start().await;
    let alice = w.login("alice@example.com").await;
    let mut tokens = Vec::new();
    for name in ["one", "two"] {
        let r = w
            .api(
                Method::POST,
                "/api/tokens",
                &alice,
                &format!("{{\"name\":\"{name}\"}}"),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        tokens.push((
            v["id"].as_i64().unwrap(),
            v["token"].as_str().unwrap().to_owned(),
        ));
    }
    let use_token = |t: String| {
        let w = &w;
        async move {
            w.send(
                Method::GET,
                "/api/me",
                &[("authorization", &format!("Bearer {t}"))],
                "",
            )
            .await
            .status
        }
    };
    assert_eq!(use_token(tokens[0].1.clone()).await, StatusCode::OK);
    // Revoking one leaves the other.
    let r = w
        .api(
            Method::DELETE,
            &format!("/api/tokens/{}", tokens[0].0),
            &alice,
            "",
        )
        .await;
    assert!(r.status.is_success(), "{}", r.status);
    assert_eq!(
        use_token(tokens[0].1.clone()).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(use_token(tokens[1].1.clone()).await, StatusCode::OK);
    // A password change revokes the rest.
    let r = w
        .post_form(
            "/account/password",
            &alice,
            &format!(
                "current={}&new=a+new+long+password",
                PASSWORD.replace(' ', "+")
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        use_token(tokens[1].1.clone()).await,
        StatusCode::UNAUTHORIZED
    );
    // The session that made the change stays signed in.
    assert_eq!(
        w.get("/dashboard", Some(&alice)).await.status,
        StatusCode::OK
    );
}

/// A site user's rule may name only the destination lists given to the device's site: not an
/// administrators' list, not another site's (they answer as lists that do not exist), and the
/// user sees only those lists.
#[tokio::test]
async fn site_users_pick_only_their_sites_lists() {
    let w = start().await;
    let admin = w.login("admin@example.com").await;
    let alice = w.login("alice@example.com").await;
    let mut ids = Vec::new();
    for body in [
        r#"{"name":"Admins only"}"#.to_owned(),
        format!(r#"{{"name":"Site A on call","site_id":{}}}"#, w.site_a),
        format!(r#"{{"name":"Site B on call","site_id":{}}}"#, w.site_b),
    ] {
        let r = w.api(Method::POST, "/api/alarm-lists", &admin, &body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        ids.push(v["id"].as_i64().unwrap());
    }
    let rule = |list: i64| {
        format!(
            r#"{{"name": "Hot", "severity": "warning", "lists": [{list}],
            "condition": {{"kind": "above", "channel": "water_temp_cc", "limit": 3200,
            "restore": 3100}}}}"#
        )
    };
    for refused in [ids[0], ids[2]] {
        let r = w
            .api(
                Method::POST,
                "/api/devices/1/alarm-rules",
                &alice,
                &rule(refused),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
        assert!(r.body.contains("does not exist"), "{}", r.body);
    }
    let r = w
        .api(
            Method::POST,
            "/api/devices/1/alarm-rules",
            &alice,
            &rule(ids[1]),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    // Administrators may use any list.
    let r = w
        .api(
            Method::POST,
            "/api/devices/1/alarm-rules",
            &admin,
            &rule(ids[0]),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    // What alice sees: her site's list only, in the API and on the rule form.
    let r = w.api(Method::GET, "/api/alarm-lists", &alice, "").await;
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Site A on call"]);
    let page = w.get("/devices/1/alarms", Some(&alice)).await;
    assert!(page.body.contains("Site A on call"));
    assert!(!page.body.contains("Site B on call"));
    // (The administrator's rule on this device still names its list; only the choice is
    // restricted.)
    assert!(!page
        .body
        .contains(&format!("<option value=\"{}\">Admins only<", ids[0])));
    assert!(page
        .body
        .contains(&format!("<option value=\"{}\">Site A on call<", ids[1])));
}

/// Unknown `/api/` routes answer 401 without credentials, like every API route (docs/API.md),
/// and 404 with them.
#[tokio::test]
async fn unknown_api_routes_need_credentials() {
    let w = start().await;
    let r = w.get("/api/nope", None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let alice = w.login("alice@example.com").await;
    assert_eq!(
        w.get("/api/nope", Some(&alice)).await.status,
        StatusCode::NOT_FOUND
    );
}

/// `/metrics` is open by default; with `web.metrics_token` it needs that bearer token.
#[tokio::test]
async fn metrics_token_is_required_when_set() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = tek_server::Config::for_tests(dir.path());
    let h = tek_server::Server::start(cfg.clone()).await.unwrap();
    let open = get_metrics(h.http_addr(), None).await;
    assert_eq!(open.0, StatusCode::OK);
    h.shutdown().await;
    cfg.web.metrics_token = Some("0123456789abcdef-metrics".into());
    let h = tek_server::Server::start(cfg).await.unwrap();
    assert_eq!(
        get_metrics(h.http_addr(), None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get_metrics(h.http_addr(), Some("wrong-token-0000000"))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    let (status, body) = get_metrics(h.http_addr(), Some("0123456789abcdef-metrics")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("tek_"), "{body}");
    h.shutdown().await;
}

async fn get_metrics(addr: std::net::SocketAddr, token: Option<&str>) -> (StatusCode, String) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut b = Request::builder()
        .uri(format!("http://{addr}/metrics"))
        .header("host", addr.to_string());
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    let r = client
        .request(b.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let status = r.status();
    let body = r.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}
