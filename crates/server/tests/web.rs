//! The web UI and JSON API over real HTTP on 127.0.0.1: authorization on every route (a user
//! without access gets 404/403 and no data), authentication (401 / redirect), CSRF, cookie flags,
//! login rate limiting, security headers, body size limit, no secrets in any answer, and the
//! configuration rules (invalid input refused with a message, nothing saved).

mod web_common;

use hyper::{Method, StatusCode};
use web_common::*;

/// Every device route, as (method, path template, form or JSON body). `{id}` is replaced.
const DEVICE_PAGES: &[(&str, &str, &str)] = &[
    ("GET", "/devices/{id}", ""),
    ("GET", "/devices/{id}?range=30d", ""),
    ("GET", "/devices/{id}/configure", ""),
    ("GET", "/devices/{id}/schedules", ""),
    ("GET", "/devices/{id}/events", ""),
    (
        "GET",
        "/devices/{id}/export.csv?from=2020-01-01&to=2030-01-01",
        "",
    ),
    ("GET", "/audit?device={id}", ""),
    (
        "POST",
        "/devices/{id}/setpoint",
        "setpoint=30&hysteresis=0.5",
    ),
    ("POST", "/devices/{id}/command", "action=pump_on"),
    ("POST", "/devices/{id}/rename", "name=Renamed+pool"),
    (
        "POST",
        "/devices/{id}/configure",
        "log_interval=30&servers=",
    ),
    // Alarms. For the member run (device 1) this creates rule 1, shelves and deletes it; the
    // API routes below then create, change and delete rule 2.
    ("GET", "/devices/{id}/alarms", ""),
    (
        "POST",
        "/devices/{id}/alarms/rules",
        "kind=template&template=freeze_risk",
    ),
    ("POST", "/devices/{id}/alarms/rules/1/shelve", "minutes=30"),
    (
        "POST",
        "/devices/{id}/alarms/rules/1/enabled",
        "enabled=off",
    ),
    (
        "POST",
        "/devices/{id}/alarms/rules/1/edit",
        "json=%7B%22name%22%3A%22x%22%2C%22severity%22%3A%22info%22%2C%22condition%22%3A%7B%22kind%22%3A%22on_gsm%22%7D%7D",
    ),
    ("POST", "/devices/{id}/alarms/rules/1/delete", ""),
    (
        "POST",
        "/devices/{id}/schedules",
        "enabled=on&time_zone=UTC&occupied=27&unoccupied=24&freeze_limit=3&freeze_hysteresis=1",
    ),
];

const DEVICE_API: &[(&str, &str, &str)] = &[
    ("GET", "/api/devices/{id}", ""),
    ("GET", "/api/devices/{id}/telemetry", ""),
    ("GET", "/api/devices/{id}/telemetry?step=60", ""),
    ("GET", "/api/devices/{id}/telemetry.csv", ""),
    ("GET", "/api/devices/{id}/config", ""),
    (
        "PUT",
        "/api/devices/{id}/config",
        r#"{"log_interval_s": 30}"#,
    ),
    ("GET", "/api/devices/{id}/schedule", ""),
    ("PUT", "/api/devices/{id}/schedule", r#"{"enabled": true}"#),
    ("GET", "/api/devices/{id}/commands", ""),
    (
        "POST",
        "/api/devices/{id}/commands",
        r#"{"command": "reboot"}"#,
    ),
    ("GET", "/api/devices/{id}/usage", ""),
    ("GET", "/api/audit?device={id}", ""),
    ("GET", "/api/devices/{id}/alarm-rules", ""),
    ("POST", "/api/devices/{id}/alarm-rules", ALARM_RULE),
    ("PUT", "/api/devices/{id}/alarm-rules/2", ALARM_RULE),
    (
        "POST",
        "/api/devices/{id}/alarm-rules/2/shelve",
        r#"{"minutes": 10}"#,
    ),
    ("DELETE", "/api/devices/{id}/alarm-rules/2", ""),
    ("GET", "/api/devices/{id}/alarms", ""),
    ("GET", "/api/devices/{id}/alarms?open=true", ""),
    ("GET", "/api/devices/{id}/notifications", ""),
];

const ALARM_RULE: &str = r#"{"name": "Hot", "severity": "warning",
    "condition": {"kind": "above", "channel": "water_temp_cc", "limit": 3200, "restore": 3100}}"#;
/// Every route of one site that its members may use, as (method, path template, body);
/// `{site}` is replaced.
const SITE_ROUTES: &[(&str, &str, &str)] = &[
    ("GET", "/sites/{site}", ""),
    ("GET", "/sites/{site}/energy.csv?by=month", ""),
    ("GET", "/api/sites/{site}/energy", ""),
    (
        "GET",
        "/api/sites/{site}/energy?by=month&from=2026-01&to=2026-03",
        "",
    ),
    ("GET", "/api/sites/{site}/energy.csv", ""),
    ("GET", "/api/sites/{site}/tariff", ""),
];

/// Admin-only routes (the ids exist).
const ADMIN_PAGES: &[(&str, &str, &str)] = &[
    ("GET", "/admin", ""),
    (
        "POST",
        "/admin/users",
        "email=x%40example.com&password=long+enough+pw",
    ),
    ("POST", "/admin/users/1/delete", ""),
    ("POST", "/admin/sites", "name=Evil"),
    ("POST", "/admin/sites/1/delete", ""),
    ("POST", "/admin/members", "user=3&site=1&op=grant"),
    ("POST", "/admin/assign", "devices=1-4&site=2"),
    ("GET", "/admin/alarms", ""),
    (
        "POST",
        "/admin/alarms/destinations",
        "name=Evil&kind=email&target=x%40example.com",
    ),
    ("POST", "/admin/alarms/destinations/1/delete", ""),
    ("POST", "/admin/alarms/lists", "name=Evil&member=1"),
    ("POST", "/admin/alarms/lists/1/members", "member=1"),
    ("POST", "/admin/alarms/lists/1/delete", ""),
    ("POST", "/sites/1/time_zone", "time_zone=Asia%2FTokyo"),
    ("POST", "/sites/1/tariff", "currency=EUR&energy_price=9"),
    ("POST", "/sites/1/tariff/delete", ""),
];

const ADMIN_API: &[(&str, &str, &str)] = &[
    ("GET", "/api/users", ""),
    (
        "POST",
        "/api/users",
        r#"{"email":"x@example.com","password":"long enough pw"}"#,
    ),
    ("DELETE", "/api/users/1", ""),
    ("POST", "/api/sites", r#"{"name":"Evil"}"#),
    ("DELETE", "/api/sites/1", ""),
    ("PUT", "/api/sites/1/members/3", ""),
    ("DELETE", "/api/sites/2/members/3", ""),
    ("PUT", "/api/sites/2/devices", r#"{"devices":[1,2]}"#),
    ("GET", "/api/alarm-destinations", ""),
    (
        "POST",
        "/api/alarm-destinations",
        r#"{"name":"Evil","kind":"email","target":"x@example.com"}"#,
    ),
    ("DELETE", "/api/alarm-destinations/1", ""),
    ("POST", "/api/alarm-lists", r#"{"name":"Evil"}"#),
    ("PUT", "/api/alarm-lists/1", r#"{"members":[]}"#),
    ("DELETE", "/api/alarm-lists/1", ""),
    ("PUT", "/api/sites/1/tariff", r#"{"energy_price":9}"#),
    ("DELETE", "/api/sites/1/tariff", ""),
    (
        "PUT",
        "/api/sites/1/time_zone",
        r#"{"time_zone":"Asia/Tokyo"}"#,
    ),
];

fn method(m: &str) -> Method {
    m.parse().unwrap()
}

async fn call(w: &Web, s: &Session, m: &str, path: &str, body: &str) -> Answer {
    if path.starts_with("/api/") {
        w.api(method(m), path, s, body).await
    } else if m == "GET" {
        w.get(path, Some(s)).await
    } else {
        w.post_form(path, s, body).await
    }
}

#[tokio::test]
async fn every_route_refuses_a_user_without_access() {
    let w = start().await;
    let bob = w.login("bob@example.com").await;
    // A secret-looking name on the devices bob must not see, to check no data leaks.
    for id in [1u32, 2, 4, 999] {
        for (m, p, body) in DEVICE_PAGES.iter().chain(DEVICE_API) {
            let path = p.replace("{id}", &id.to_string());
            let r = call(&w, &bob, m, &path, body).await;
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{m} {path}: {}", r.body);
            assert!(
                !r.body.contains(&format!("Pool {id}")),
                "{m} {path} leaked the name"
            );
        }
    }
    for (m, p, body) in ADMIN_PAGES.iter().chain(ADMIN_API) {
        let r = call(&w, &bob, m, p, body).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{m} {p}: {}", r.body);
        assert!(!r.body.contains("alice@example.com"), "{m} {p}");
    }
    // Sites bob is no member of (or that do not exist) answer 404 and show nothing.
    for site in [w.site_a, 999] {
        for (m, p, body) in SITE_ROUTES {
            let path = p.replace("{site}", &site.to_string());
            let r = call(&w, &bob, m, &path, body).await;
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{m} {path}: {}", r.body);
            assert!(!r.body.contains("Site A"), "{m} {path} leaked the name");
        }
    }
    // Nothing changed: no config saved, no command queued, no user or site created.
    let api = w.server.api();
    for id in [1, 2, 4] {
        assert!(api.latest_config(id).await.unwrap().is_none());
        assert!(api.commands(id, 10).await.unwrap().is_empty());
    }
    let admin = w.login("admin@example.com").await;
    let users = w.api(Method::GET, "/api/users", &admin, "").await;
    assert_eq!(users.body.matches("\"email\"").count(), 3, "{}", users.body);
    let sites = w.api(Method::GET, "/api/sites", &admin, "").await;
    assert!(!sites.body.contains("Evil"));

    // Lists only show what is visible.
    let list = w.api(Method::GET, "/api/devices", &bob, "").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(
        list.body.contains("Pool 3") && !list.body.contains("Pool 1"),
        "{}",
        list.body
    );
    let dash = w.get("/dashboard", Some(&bob)).await;
    assert!(dash.body.contains("Pool 3") && !dash.body.contains("Pool 2"));
    let sites = w.api(Method::GET, "/api/sites", &bob, "").await;
    assert!(
        sites.body.contains("Site B") && !sites.body.contains("Site A"),
        "{}",
        sites.body
    );
    let site_a = w
        .api(Method::GET, &format!("/api/sites/{}", w.site_a), &bob, "")
        .await;
    assert_eq!(site_a.status, StatusCode::NOT_FOUND);

    // The same routes work for a member (so the 404s above are about access, not the routes).
    let alice = w.login("alice@example.com").await;
    for (m, p, body) in DEVICE_PAGES.iter().chain(DEVICE_API) {
        if p.ends_with("/events") {
            continue; // a stream: never ends by itself
        }
        let path = p.replace("{id}", "1");
        let r = call(&w, &alice, m, &path, body).await;
        assert!(
            r.status.is_success() || r.status.is_redirection(),
            "{m} {path}: {} {}",
            r.status,
            r.body
        );
    }
    for (m, p, body) in SITE_ROUTES {
        let path = p.replace("{site}", &w.site_a.to_string());
        let r = call(&w, &alice, m, &path, body).await;
        assert!(r.status.is_success(), "{m} {path}: {} {}", r.status, r.body);
    }
    // The site admin routes bob tried changed nothing.
    let a = w
        .api(Method::GET, &format!("/api/sites/{}", w.site_a), &alice, "")
        .await;
    assert!(a.body.contains("\"time_zone\":\"UTC\""), "{}", a.body);
    let t = w
        .api(
            Method::GET,
            &format!("/api/sites/{}/tariff", w.site_a),
            &alice,
            "",
        )
        .await;
    assert_eq!(t.body, "null");
    // Bob's audit log does not show alice's changes.
    let audit = w.api(Method::GET, "/api/audit", &bob, "").await;
    assert_eq!(audit.body, "[]");
    let audit = w.api(Method::GET, "/api/audit", &alice, "").await;
    assert!(audit.body.contains("config.save") && audit.body.contains("command.queue"));
}

#[tokio::test]
async fn credentials_are_required() {
    let w = start().await;
    for (m, p, body) in DEVICE_API.iter().chain(ADMIN_API) {
        let path = p.replace("{id}", "1");
        let r = w
            .send(
                method(m),
                &path,
                &[("content-type", "application/json")],
                body,
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{m} {path}");
        assert!(r.header("www-authenticate").starts_with("Bearer"));
    }
    for (m, p, _) in SITE_ROUTES {
        let path = p.replace("{site}", "1");
        let r = w.send(method(m), &path, &[], "").await;
        if path.starts_with("/api/") {
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{m} {path}");
        } else {
            assert_eq!(r.status, StatusCode::SEE_OTHER, "{m} {path}");
        }
    }
    for p in ["/api/devices", "/api/me", "/api/tokens"] {
        assert_eq!(w.get(p, None).await.status, StatusCode::UNAUTHORIZED, "{p}");
    }
    let bad = w
        .send(
            Method::GET,
            "/api/devices",
            &[("authorization", "Bearer 00")],
            "",
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    let bad = w
        .send(
            Method::GET,
            "/api/devices",
            &[("authorization", &format!("Bearer {}", "ab".repeat(32)))],
            "",
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    for (m, p, _) in DEVICE_PAGES.iter().chain(ADMIN_PAGES) {
        let path = p.replace("{id}", "1");
        let r = w
            .send(
                method(m),
                &path,
                &[("content-type", "application/x-www-form-urlencoded")],
                "csrf=x",
            )
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{m} {path}");
        assert_eq!(r.header("location"), "/");
    }
    // A stranger gets the login form.
    let root = w.get("/", None).await;
    assert_eq!(root.status, StatusCode::OK);
    assert!(root.body.contains("name=\"password\""));
    // A forged cookie is no session.
    let forged = Session {
        cookie: format!("tek_session={}", "cd".repeat(32)),
        csrf: String::new(),
    };
    assert_eq!(
        w.get("/dashboard", Some(&forged)).await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn tokens_authenticate_scripts_and_need_no_csrf() {
    let w = start().await;
    let alice = w.login("alice@example.com").await;
    let r = w
        .api(Method::POST, "/api/tokens", &alice, r#"{"name":"report"}"#)
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let token = r.body.split("\"token\":\"").nth(1).unwrap()[..64].to_owned();
    let auth = format!("Bearer {token}");
    let h = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    let list = w.send(Method::GET, "/api/devices", &h, "").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.body.contains("Pool 1") && !list.body.contains("Pool 3"));
    let put = w
        .send(
            Method::PUT,
            "/api/devices/2/config",
            &h,
            r#"{"setpoint_c": 29.5}"#,
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    assert!(put.body.contains("\"version\":1"));
    let put = w
        .send(
            Method::PUT,
            "/api/devices/3/config",
            &h,
            r#"{"setpoint_c": 29.5}"#,
        )
        .await;
    assert_eq!(put.status, StatusCode::NOT_FOUND);
    // The token list never shows tokens; deleting one ends it.
    let tokens = w.send(Method::GET, "/api/tokens", &h, "").await;
    assert!(!tokens.body.contains(&token));
    let tokens: serde_json::Value = serde_json::from_str(&tokens.body).unwrap();
    let id = tokens[0]["id"].as_i64().unwrap();
    // Another user can neither list nor delete it.
    let bob = w.login("bob@example.com").await;
    assert_eq!(w.api(Method::GET, "/api/tokens", &bob, "").await.body, "[]");
    let r = w
        .api(Method::DELETE, &format!("/api/tokens/{id}"), &bob, "")
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = w
        .post_form(&format!("/account/tokens/{id}/delete"), &bob, "")
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        w.send(Method::GET, "/api/devices", &h, "").await.status,
        StatusCode::OK
    );
    let del = w
        .send(Method::DELETE, &format!("/api/tokens/{id}"), &h, "")
        .await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    assert_eq!(
        w.send(Method::GET, "/api/devices", &h, "").await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn csrf_is_required_for_cookie_changes() {
    let w = start().await;
    let alice = w.login("alice@example.com").await;
    let cookie = [
        ("cookie", alice.cookie.as_str()),
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    // Form posts: missing, wrong, another session's token.
    let other = w.login("alice@example.com").await;
    for body in [
        "setpoint=30&hysteresis=0.5".to_owned(),
        "csrf=00&setpoint=30&hysteresis=0.5".to_owned(),
        format!("csrf={}&setpoint=30&hysteresis=0.5", other.csrf),
    ] {
        let r = w
            .send(Method::POST, "/devices/1/setpoint", &cookie, &body)
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{body}");
    }
    let r = w.send(Method::POST, "/logout", &cookie, "").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // API with the cookie: the header is required.
    let json = [
        ("cookie", alice.cookie.as_str()),
        ("content-type", "application/json"),
    ];
    let r = w
        .send(
            Method::PUT,
            "/api/devices/1/config",
            &json,
            r#"{"log_interval_s":30}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = w
        .send(
            Method::POST,
            "/api/devices/1/commands",
            &json,
            r#"{"command":"reboot"}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Right token but another origin.
    let r = w
        .send(
            Method::POST,
            "/devices/1/setpoint",
            &[cookie[0], cookie[1], ("origin", "http://evil.example")],
            &format!("csrf={}&setpoint=30&hysteresis=0.5", alice.csrf),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = w
        .send(
            Method::POST,
            "/login",
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("origin", "http://evil.example"),
            ],
            "email=alice%40example.com&password=correct+horse+battery",
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(
        w.server.api().latest_config(1).await.unwrap().is_none(),
        "nothing saved"
    );
    assert!(w.server.api().commands(1, 10).await.unwrap().is_empty());
    // With the token (and a same-origin Origin) it works.
    let origin = format!("http://{}", w.addr);
    let r = w
        .send(
            Method::POST,
            "/devices/1/setpoint",
            &[cookie[0], cookie[1], ("origin", &origin)],
            &format!("csrf={}&setpoint=30&hysteresis=0.5", alice.csrf),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    // Logout ends the session on the server, not just in the browser.
    let r = w.post_form("/logout", &alice, "").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(
        w.get("/dashboard", Some(&alice)).await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        w.get("/api/devices", Some(&alice)).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn session_cookie_flags() {
    let w = start().await;
    let r = w.try_login("alice@example.com", PASSWORD).await;
    let c = r.header("set-cookie");
    assert!(c.starts_with("tek_session="), "{c}");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(c.contains(flag), "{flag} missing: {c}");
    }
    // Behind HTTPS: Secure, and the __Host- prefix that browsers enforce.
    let w = start_with(tek_server::http::WebOptions {
        secure_cookies: true,
        ..Default::default()
    })
    .await;
    let r = w.try_login("alice@example.com", PASSWORD).await;
    let c = r.header("set-cookie");
    assert!(
        c.starts_with("__Host-tek_session=") && c.contains("; Secure"),
        "{c}"
    );
    assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict"));
    let s = Session {
        cookie: c.split(';').next().unwrap().to_owned(),
        csrf: String::new(),
    };
    assert_eq!(w.get("/dashboard", Some(&s)).await.status, StatusCode::OK);
    // Only a loopback listener gets non-Secure cookies by default.
    assert!(
        !tek_server::http::WebOptions::for_listener("127.0.0.1:8080".parse().unwrap())
            .secure_cookies
    );
    assert!(
        tek_server::http::WebOptions::for_listener("0.0.0.0:8080".parse().unwrap()).secure_cookies
    );
}

#[tokio::test]
async fn login_is_rate_limited() {
    let w = start().await;
    let wrong = w.try_login("alice@example.com", "wrong password").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.body.contains("Wrong e-mail or password"));
    assert!(wrong.header("set-cookie").is_empty());
    // An unknown address answers the same.
    let unknown = w.try_login("nobody@example.com", "wrong password").await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert!(unknown.body.contains("Wrong e-mail or password"));
    for _ in 0..4 {
        w.try_login("alice@example.com", "wrong password").await;
    }
    // The sixth attempt on this address is refused before the password is checked, even the
    // right one.
    let limited = w.try_login("Alice@Example.com", PASSWORD).await;
    assert_eq!(
        limited.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        limited.body
    );
    assert!(limited.header("retry-after").parse::<u64>().unwrap() > 0);
    assert!(limited.header("set-cookie").is_empty());
    // Other accounts are not locked out.
    w.login("bob@example.com").await;
}

#[tokio::test]
async fn security_headers_everywhere() {
    let w = start().await;
    let alice = w.login("alice@example.com").await;
    let mut answers = vec![
        w.get("/", None).await,
        w.get("/static/app.js", None).await,
        w.get("/static/app.css", None).await,
        w.get("/static/nope", None).await,
        w.get("/api/devices", None).await,
        w.get("/api/nope", Some(&alice)).await,
        w.get("/dashboard", Some(&alice)).await,
        w.get("/devices/1", Some(&alice)).await,
        w.get("/devices/3", Some(&alice)).await,
        w.get("/api/devices", Some(&alice)).await,
        w.get("/devices/1/export.csv", Some(&alice)).await,
    ];
    answers.push(w.try_login("alice@example.com", "wrong").await);
    for a in &answers {
        let csp = a.header("content-security-policy");
        assert!(
            csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"),
            "{csp}"
        );
        assert!(!csp.contains("unsafe-inline"));
        assert_eq!(a.header("x-content-type-options"), "nosniff");
        assert_eq!(a.header("x-frame-options"), "DENY");
        assert_eq!(a.header("referrer-policy"), "same-origin");
    }
    assert_eq!(
        answers[1].header("content-type"),
        "text/javascript; charset=utf-8"
    );
    assert!(answers[6].header("cache-control").contains("no-store"));
    // Pages carry no inline script or style (the CSP would block them).
    for a in &answers[6..8] {
        assert!(
            !a.body.contains("<script>") && !a.body.contains("style="),
            "inline code"
        );
    }
}

#[tokio::test]
async fn big_bodies_are_refused() {
    let w = start().await;
    let alice = w.login("alice@example.com").await;
    let big = format!("{{\"gsm_apn\": \"{}\"}}", "a".repeat(100_000));
    let r = w
        .api(Method::PUT, "/api/devices/1/config", &alice, &big)
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    let r = w
        .post_form(
            "/devices/1/configure",
            &alice,
            &format!("servers={}", "a".repeat(100_000)),
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    let r = w
        .send(
            Method::POST,
            "/login",
            &[("content-type", "application/x-www-form-urlencoded")],
            &format!("email=a&password={}", "a".repeat(100_000)),
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(w.server.api().latest_config(1).await.unwrap().is_none());
}

#[tokio::test]
async fn invalid_configuration_is_refused_with_a_message() {
    let w = start().await;
    let alice = w.login("alice@example.com").await;
    let cases = [
        ("log_interval=5&servers=", "Logging interval must be"),
        ("log_interval=60&eth_ip=10.0.0.5&eth_netmask=255.0.255.0&eth_gateway=10.0.0.1&eth_dns=10.0.0.1", "Netmask 255.0.255.0 is not valid"),
        ("log_interval=60&eth_ip=10.0.0.5&eth_netmask=255.255.255.0&eth_gateway=10.0.9.1&eth_dns=10.0.0.1", "not in the subnet"),
        ("log_interval=60&eth_ip=999.1.1.1&eth_netmask=255.255.255.0&eth_gateway=10.0.9.1&eth_dns=10.0.0.1", "not an IPv4 address"),
        ("log_interval=60&servers=bad+host%21", "is not a host name"),
    ];
    for (form, msg) in cases {
        let r = w.post_form("/devices/1/configure", &alice, form).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{form}");
        assert!(
            r.body.contains("Nothing was saved") && r.body.contains(msg),
            "{form}: {}",
            r.body
        );
    }
    for json in [
        r#"{"log_interval_s": 3601}"#,
        r#"{"ethernet": {"ip":"10.0.0.0","netmask":"255.255.255.0","gateway":"10.0.0.1","dns":"1.1.1.1"}}"#,
        r#"{"setpoint_c": 80}"#,
        r#"{"colour": "red"}"#,
        "not json",
    ] {
        let r = w
            .api(Method::PUT, "/api/devices/1/config", &alice, json)
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{json}: {}",
            r.body
        );
        assert!(r.body.contains("\"error\""));
    }
    assert!(
        w.server.api().latest_config(1).await.unwrap().is_none(),
        "nothing saved"
    );
    // Valid: saved as v1, pending; blank IP = DHCP in v2.
    let ok = "log_interval=30&eth_ip=192.168.1.20&eth_netmask=255.255.255.0&eth_gateway=192.168.1.1&eth_dns=192.168.1.1&gsm_apn=internet&gsm_password=Pa55word&servers=a.example%0D%0Ab.example%3A9000";
    let r = w.post_form("/devices/1/configure", &alice, ok).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.header("location"), "/devices/1/configure?saved=1");
    let c = w.server.api().latest_config(1).await.unwrap().unwrap();
    assert_eq!(c.config.log_interval_s, 30);
    assert_eq!(c.config.servers.len(), 2);
    assert!(c.config.ethernet.is_some());
    let page = w.get("/devices/1/configure?saved=1", Some(&alice)).await;
    assert!(
        page.body.contains("dot pending"),
        "spinner while unconfirmed"
    );
    assert!(
        !page.body.contains("Pa55word"),
        "the GSM password is never echoed"
    );
    let r = w
        .post_form(
            "/devices/1/configure",
            &alice,
            "log_interval=30&eth_ip=&gsm_apn=internet&servers=a.example",
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let c = w.server.api().latest_config(1).await.unwrap().unwrap();
    assert_eq!(c.version, 2);
    assert!(c.config.ethernet.is_none(), "blank IP restores DHCP");
    assert_eq!(
        c.config.gsm.password.as_str(),
        "Pa55word",
        "blank password keeps it"
    );
    let audit = w.get("/audit", Some(&alice)).await;
    assert!(audit.body.contains("fixed IP 192.168.1.20") && audit.body.contains("Ethernet: DHCP"));
    assert!(audit.body.contains("GSM password changed") && !audit.body.contains("Pa55word"));
}

#[tokio::test]
async fn no_secret_in_any_answer() {
    let w = start().await;
    let admin = w.login("admin@example.com").await;
    let r = w
        .api(
            Method::PUT,
            "/api/devices/1/config",
            &admin,
            r#"{"gsm_password": "TopSecret99", "gsm_apn": "apn"}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let key_hex = "a5".repeat(16);
    let mut bodies = Vec::new();
    for p in [
        "/dashboard",
        "/devices/1",
        "/devices/1/configure",
        "/audit",
        "/templates",
        "/templates/1",
        "/admin",
        "/account",
        "/api/devices",
        "/api/devices/1",
        "/api/devices/1/config",
        "/api/users",
        "/api/audit",
        "/api/me",
        "/api/sites",
        "/api/tokens",
    ] {
        let r = w.get(p, Some(&admin)).await;
        assert_eq!(r.status, StatusCode::OK, "{p}");
        bodies.push((p, r.body));
    }
    for (p, b) in &bodies {
        assert!(!b.contains("TopSecret99"), "{p} shows the GSM password");
        assert!(!b.contains("$argon2"), "{p} shows a password hash");
        assert!(
            !b.to_lowercase().contains(&key_hex),
            "{p} shows a device key"
        );
    }
    assert!(bodies
        .iter()
        .any(|(p, b)| *p == "/api/devices/1/config" && b.contains("\"password_set\":true")));
}

#[tokio::test]
async fn api_and_pages_work_for_a_member() {
    let w = start().await;
    let alice = w.login("alice@example.com").await;
    let me = w.api(Method::GET, "/api/me", &alice, "").await;
    assert!(me.body.contains("alice@example.com") && me.body.contains(&alice.csrf));
    let r = w
        .api(
            Method::POST,
            "/api/devices/2/commands",
            &alice,
            r#"{"command":"heater_off"}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = w
        .api(
            Method::POST,
            "/api/devices/2/commands",
            &alice,
            r#"{"command":"dance"}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let cmds = w
        .api(Method::GET, "/api/devices/2/commands", &alice, "")
        .await;
    assert!(cmds.body.contains("queued"), "{}", cmds.body);
    let usage = w.api(Method::GET, "/api/devices/2/usage", &alice, "").await;
    assert!(usage.body.contains("\"gsm_bytes\":0"), "{}", usage.body);
    let t = w
        .api(
            Method::GET,
            "/api/devices/2/telemetry?from=0&to=100&step=0",
            &alice,
            "",
        )
        .await;
    assert_eq!(t.status, StatusCode::UNPROCESSABLE_ENTITY);
    let t = w
        .api(
            Method::GET,
            "/api/devices/2/telemetry?from=tomorrow",
            &alice,
            "",
        )
        .await;
    assert_eq!(t.status, StatusCode::UNPROCESSABLE_ENTITY);
    let csv = w
        .get(
            "/devices/2/export.csv?from=2020-01-01T00:00&to=2030-01-01T00:00",
            Some(&alice),
        )
        .await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(csv.body.starts_with("time,unix_s,power_w"));
    assert!(csv
        .header("content-disposition")
        .contains("device-2-2020-01-01-2030-01-01.csv"));
    // Admin: create a user, grant a site, assign a device; the new user sees it.
    let admin = w.login("admin@example.com").await;
    let r = w
        .post_form(
            "/admin/users",
            &admin,
            "email=carol%40example.com&password=carol+password+1",
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let dup = w
        .post_form(
            "/admin/users",
            &admin,
            "email=carol%40example.com&password=carol+password+1",
        )
        .await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    assert!(dup.body.contains("already exists"));
    let users = w.api(Method::GET, "/api/users", &admin, "").await;
    let users: serde_json::Value = serde_json::from_str(&users.body).unwrap();
    let carol = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == "carol@example.com")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let r = w
        .api(
            Method::PUT,
            &format!("/api/sites/{}/members/{carol}", w.site_b),
            &admin,
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = w
        .post_form(
            "/admin/assign",
            &admin,
            &format!("devices=4&site={}", w.site_b),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let r = w.try_login("carol@example.com", "carol password 1").await;
    let carol_s = Session {
        cookie: r.header("set-cookie").split(';').next().unwrap().to_owned(),
        csrf: String::new(),
    };
    let list = w.get("/api/devices", Some(&carol_s)).await;
    assert!(
        list.body.contains("Pool 3")
            && list.body.contains("Pool 4")
            && !list.body.contains("Pool 1"),
        "{}",
        list.body
    );
    let audit = w.api(Method::GET, "/api/audit", &admin, "").await;
    for action in [
        "user.create",
        "site.grant",
        "device.assign",
        "command.queue",
    ] {
        assert!(audit.body.contains(action), "{action}");
    }
}

#[tokio::test]
async fn password_change_ends_other_sessions() {
    let w = start().await;
    let a = w.login("alice@example.com").await;
    let b = w.login("alice@example.com").await;
    let wrong = w
        .post_form(
            "/account/password",
            &a,
            "current=nope+nope+nope&new=a+brand+new+password",
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(wrong.body.contains("current password is wrong"));
    let short = w
        .post_form(
            "/account/password",
            &a,
            "current=correct+horse+battery&new=short",
        )
        .await;
    assert_eq!(short.status, StatusCode::UNPROCESSABLE_ENTITY);
    let ok = w
        .post_form(
            "/account/password",
            &a,
            "current=correct+horse+battery&new=a+brand+new+password",
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(
        w.get("/dashboard", Some(&a)).await.status,
        StatusCode::OK,
        "this session stays"
    );
    assert_eq!(
        w.get("/dashboard", Some(&b)).await.status,
        StatusCode::SEE_OTHER,
        "the other ends"
    );
    assert_eq!(
        w.try_login("alice@example.com", PASSWORD).await.status,
        StatusCode::UNAUTHORIZED
    );
    let r = w
        .try_login("alice@example.com", "a brand new password")
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let audit = w.get("/audit", Some(&a)).await;
    assert!(!audit.body.contains("brand new"));
}

#[tokio::test]
async fn alarms_are_seen_and_acknowledged_only_with_access() {
    use tek_server::alarms::rules::templates;
    use tek_server::storage::NewAlarm;
    let w = start().await;
    let db = w.server.api().storage_handle();
    let spec = templates()[2].2.clone();
    let rule = db.create_rule(1, &spec, 1).unwrap();
    let alarm = db
        .raise_alarm(&NewAlarm {
            rule_id: rule,
            device_id: 1,
            rule_name: "Secret rule of Pool 1".into(),
            severity: spec.severity,
            message: "water 40.00 °C".into(),
            raised_at: 2,
        })
        .unwrap()
        .0;
    let bob = w.login("bob@example.com").await;
    for (m, p) in [
        ("POST", format!("/api/alarms/{alarm}/ack")),
        ("GET", format!("/api/alarms/{alarm}/notifications")),
        ("POST", format!("/alarms/{alarm}/ack")),
        // A rule of device 1 through bob's own device 3.
        ("DELETE", format!("/api/devices/3/alarm-rules/{rule}")),
        ("POST", format!("/devices/3/alarms/rules/{rule}/delete")),
    ] {
        let r = call(&w, &bob, m, &p, "").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{m} {p}: {}", r.body);
        assert!(!r.body.contains("Secret rule"), "{m} {p}");
    }
    let r = w
        .api(
            Method::PUT,
            &format!("/api/devices/3/alarm-rules/{rule}"),
            &bob,
            ALARM_RULE,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    for p in ["/api/alarms", "/api/alarms?open=true", "/alarms"] {
        let r = call(&w, &bob, "GET", p, "").await;
        assert_eq!(r.status, StatusCode::OK, "{p}");
        assert!(!r.body.contains("Secret rule"), "{p}: {}", r.body);
    }
    assert!(db.alarm(alarm).unwrap().unwrap().acked_at.is_none());
    // Bob may read the list names (to pick them), not the destinations.
    let r = call(&w, &bob, "GET", "/api/alarm-lists", "").await;
    assert_eq!(r.status, StatusCode::OK);
    let r = call(&w, &bob, "GET", "/api/alarm-templates", "").await;
    assert!(r.body.contains("freeze_risk"));

    // Alice, a member of device 1's site, sees and acknowledges it.
    let alice = w.login("alice@example.com").await;
    let r = call(&w, &alice, "GET", "/alarms", "").await;
    assert!(r.body.contains("Secret rule of Pool 1"), "{}", r.body);
    let r = call(&w, &alice, "GET", "/devices/1/alarms", "").await;
    assert!(r.body.contains("Acknowledge") && r.body.contains("Water temperature out of range"));
    let r = call(&w, &alice, "POST", &format!("/api/alarms/{alarm}/ack"), "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(
        r.body.contains(r#""acked_by":"alice@example.com""#),
        "{}",
        r.body
    );
    // A second acknowledgement keeps the first.
    let admin = w.login("admin@example.com").await;
    let r = call(&w, &admin, "POST", &format!("/alarms/{alarm}/ack"), "").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let a = db.alarm(alarm).unwrap().unwrap();
    assert_eq!(a.acked_by.as_deref(), Some("alice@example.com"));
    let audit = w.api(Method::GET, "/api/audit", &alice, "").await;
    assert!(audit.body.contains("alarm.ack"), "{}", audit.body);
    // Disable and enable again from the page.
    let path = format!("/devices/1/alarms/rules/{rule}/enabled");
    let r = w.post_form(&path, &alice, "enabled=off").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(!db.rule(rule).unwrap().unwrap().spec.enabled);
    let r = w.post_form(&path, &alice, "enabled=maybe").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    w.post_form(&path, &alice, "enabled=on").await;
    assert!(db.rule(rule).unwrap().unwrap().spec.enabled);

    // Bad rules are refused with a message, nothing saved.
    for body in [
        r#"{"name":"x","severity":"warning","condition":{"kind":"above","channel":"water_temp_cc","limit":10,"restore":20}}"#,
        r#"{"name":"x","severity":"loud","condition":{"kind":"on_gsm"}}"#,
        r#"{"name":"x","severity":"info","condition":{"kind":"on_gsm"},"lists":[999]}"#,
    ] {
        let r = w
            .api(Method::POST, "/api/devices/1/alarm-rules", &alice, body)
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            r.body
        );
    }
    assert_eq!(db.device_rules(1).unwrap().len(), 1);
    // Admin: a webhook needs an https:// (or http://) URL and a secret, which is never shown
    // again.
    let r = w
        .api(
            Method::POST,
            "/api/alarm-destinations",
            &admin,
            r#"{"name":"h","kind":"webhook","target":"ftp://x.example/h","secret":"0123456789abcdef"}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    let r = w
        .post_form(
            "/admin/alarms/destinations",
            &admin,
            "name=h&kind=webhook&target=http%3A%2F%2F127.0.0.1%3A9%2Fh&secret=0123456789abcdef-secret",
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let r = w
        .post_form("/admin/alarms/lists", &admin, "name=Night&member=1")
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let page = w.get("/admin/alarms", Some(&admin)).await;
    assert!(page.body.contains("Night") && !page.body.contains("0123456789abcdef-secret"));
    let r = w.api(Method::GET, "/api/alarm-lists", &admin, "").await;
    assert!(r.body.contains(r#""members":[1]"#), "{}", r.body);
}
