//! The OpenAPI document against a running server: it is served at `/api/openapi.json`, and
//! every operation it documents is routed (answered by its handler, not by the router's
//! "no such route" 404 or a 405). The converse — every declared route documented — is checked
//! against the router's source in `tek_server::api::openapi`'s unit tests.

mod web_common;

use hyper::{Method, StatusCode};
use serde_json::Value;
use tek_server::api::me::NO_SUCH_ROUTE;

/// `path` with every `{parameter}` replaced by `id`.
fn concrete(path: &str, id: &str) -> String {
    path.split('/')
        .map(|s| if s.starts_with('{') { id } else { s })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn document_served_and_every_documented_operation_routed() {
    let w = web_common::start().await;
    let a = w.send(Method::GET, "/api/openapi.json", &[], "").await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.header("content-type").starts_with("application/json"));
    assert_eq!(a.body, tek_server::api::openapi::DOCUMENT);
    let doc: Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");

    // Without credentials every /api/ path answers 401, routed or not (a stranger cannot tell
    // which exist; issue 20 point 9) — except the public operations, which answer 200.
    let fallback = w.send(Method::GET, "/api/no-such-route", &[], "").await;
    assert_eq!(fallback.status, StatusCode::UNAUTHORIZED);
    // With a token of a site user (bob: site B, device 3), an unknown path is the fallback's 404
    // with its own text; every documented operation must instead reach its handler: never 405,
    // never the fallback. Ids that exist nowhere keep the calls from changing anything.
    let bob = w.login("bob@example.com").await;
    let t = w
        .api(Method::POST, "/api/tokens", &bob, r#"{"name":"openapi"}"#)
        .await;
    assert_eq!(t.status, StatusCode::CREATED, "{}", t.body);
    let token: Value = serde_json::from_str(&t.body).unwrap();
    let bearer = format!("Bearer {}", token["token"].as_str().unwrap());
    let auth = [
        ("authorization", bearer.as_str()),
        ("content-type", "application/json"),
    ];
    let fallback = w.send(Method::GET, "/api/no-such-route", &auth, "").await;
    assert_eq!(fallback.status, StatusCode::NOT_FOUND);
    assert!(fallback.body.contains(NO_SUCH_ROUTE), "{}", fallback.body);
    let mut checked = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let public = op["security"].as_array().is_some_and(|s| s.is_empty());
            let a = w.send(m.clone(), &concrete(path, "1"), &[], "").await;
            let expected = if public {
                StatusCode::OK
            } else {
                StatusCode::UNAUTHORIZED
            };
            assert_eq!(a.status, expected, "{method} {path}: {}", a.body);
            let a = w.send(m, &concrete(path, "987654"), &auth, "{}").await;
            assert_ne!(a.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert!(
                !a.body.contains(NO_SUCH_ROUTE),
                "{method} {path} is documented but not routed: {}",
                a.body
            );
            checked += 1;
        }
    }
    assert!(checked > 40, "{checked}");
}
