//! The OpenAPI document against a running server: it is served at `/api/openapi.json`, and
//! every operation it documents is routed (answered by its handler, not by the router's
//! "no such route" 404 or a 405). The converse — every declared route documented — is checked
//! against the router's source in `tek_server::api::openapi`'s unit tests.

mod web_common;

use hyper::{Method, StatusCode};
use serde_json::Value;

#[tokio::test]
async fn document_served_and_every_documented_operation_routed() {
    let w = web_common::start().await;
    let a = w.send(Method::GET, "/api/openapi.json", &[], "").await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.header("content-type").starts_with("application/json"));
    assert_eq!(a.body, tek_server::api::openapi::DOCUMENT);
    let doc: Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");

    // Without credentials: a routed /api/ operation answers 401 (its authentication runs
    // first), the public ones 200. An unrouted path would be the fallback's 404, a wrong method
    // 405.
    let fallback = w.send(Method::GET, "/api/no-such-route", &[], "").await;
    assert_eq!(fallback.status, StatusCode::NOT_FOUND);
    let mut checked = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        let concrete = path
            .split('/')
            .map(|s| if s.starts_with('{') { "1" } else { s })
            .collect::<Vec<_>>()
            .join("/");
        for (method, op) in ops.as_object().unwrap() {
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let a = w.send(m, &concrete, &[], "").await;
            let public = op["security"].as_array().is_some_and(|s| s.is_empty());
            let expected = if public {
                StatusCode::OK
            } else {
                StatusCode::UNAUTHORIZED
            };
            assert_eq!(a.status, expected, "{method} {path}: {}", a.body);
            checked += 1;
        }
    }
    assert!(checked > 40, "{checked}");
}
