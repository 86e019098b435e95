//! `GET /api/openapi.json`: the OpenAPI 3.1 document of the JSON API (`openapi.json` beside this
//! file, served as it is; no credentials needed — it holds no data).
//!
//! The tests below keep it true: every route the router declares (`crate::router::router`'s `/api`
//! routes and `crate::api::router`'s) is documented with the same methods, and every documented
//! operation is a declared route; `tests/openapi.rs` asks a running server for each documented
//! operation and checks that it is routed.

use axum::http::header;
use axum::response::IntoResponse;

/// The document.
pub const DOCUMENT: &str = include_str!("openapi.json");

/// `GET /api/openapi.json`.
pub async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}

/// `(method, path)` of every route declared in a router's source between `start` and `end`,
/// each path prefixed with `prefix` (`.route("/x/{id}", get(h).post(h2))` gives
/// `("get", "/x/{id}")` and `("post", "/x/{id}")`).
#[cfg(test)]
fn declared(source: &str, start: &str, end: &str, prefix: &str) -> Vec<(String, String)> {
    let from = source.find(start).expect("router start");
    let len = source[from..].find(end).expect("router end");
    let flat: String = source[from..from + len]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let mut out = Vec::new();
    for chunk in flat.split(".route(").skip(1) {
        let rest = chunk.strip_prefix('"').expect("a literal path");
        let (path, methods) = rest.split_once('"').expect("closing quote");
        for m in ["get", "post", "put", "delete", "patch"] {
            let needle = format!("{m}(");
            let mut at = 0;
            while let Some(i) = methods[at..].find(&needle) {
                let i = at + i;
                // A method router call starts the argument list or follows a `.`.
                if i == 0 || matches!(methods.as_bytes()[i - 1], b',' | b'.') {
                    out.push((m.to_owned(), format!("{prefix}{path}")));
                }
                at = i + needle.len();
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn documented() -> BTreeSet<(String, String)> {
        let doc: serde_json::Value = serde_json::from_str(DOCUMENT).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let mut out = BTreeSet::new();
        let mut ids = BTreeSet::new();
        for (path, ops) in doc["paths"].as_object().unwrap() {
            for (method, op) in ops.as_object().unwrap() {
                assert!(
                    op["summary"].as_str().is_some_and(|s| !s.is_empty()),
                    "{method} {path}"
                );
                assert!(op["responses"].is_object(), "{method} {path}");
                assert!(ids.insert(op["operationId"].as_str().unwrap().to_owned()));
                // Every path parameter is declared.
                for name in path.split('{').skip(1).filter_map(|s| s.split_once('}')) {
                    let params = op["parameters"].as_array().unwrap();
                    assert!(
                        params
                            .iter()
                            .any(|p| p["name"] == name.0 && p["in"] == "path"),
                        "{method} {path}: parameter {}",
                        name.0
                    );
                }
                out.insert((method.clone(), path.clone()));
            }
        }
        out
    }

    fn routes() -> BTreeSet<(String, String)> {
        let web = include_str!("../router.rs");
        let api = include_str!("mod.rs");
        let mut all = declared(web, "fn alarm_api_routes()", "\n}\n", "/api");
        all.extend(declared(
            web,
            "let api_routes = Router::new()",
            ".fallback(",
            "/api",
        ));
        all.extend(declared(api, "pub fn router(", "\n}\n", ""));
        let set: BTreeSet<_> = all.iter().cloned().collect();
        assert_eq!(set.len(), all.len(), "a route declared twice");
        set
    }

    #[test]
    fn every_route_documented_and_every_documented_route_declared() {
        let (doc, routes) = (documented(), routes());
        assert!(routes.len() > 40, "the route parser found only {routes:?}");
        let undocumented: Vec<_> = routes.difference(&doc).collect();
        let missing: Vec<_> = doc.difference(&routes).collect();
        assert!(
            undocumented.is_empty(),
            "routes not in openapi.json: {undocumented:?}"
        );
        assert!(missing.is_empty(), "documented but not routed: {missing:?}");
    }

    #[test]
    fn route_parser() {
        let src = "let r = Router::new()\n .route(\"/a/{id}\", get(x::get).put(x::put))\n .route(\n \"/b\",\n delete(y::budget),\n )\n .fallback(z)";
        let got = declared(src, "let r", ".fallback(", "/api");
        assert_eq!(
            got,
            [
                ("get".to_owned(), "/api/a/{id}".to_owned()),
                ("put".to_owned(), "/api/a/{id}".to_owned()),
                ("delete".to_owned(), "/api/b".to_owned()),
            ]
        );
    }
}
