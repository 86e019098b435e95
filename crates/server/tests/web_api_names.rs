//! The JSON API speaks one language in both directions (issue 14, docs/API.md): the command list
//! shows the names one POSTs, and a server list is saved as sent or refused, never reinterpreted.

mod web_common;

use hyper::{Method, StatusCode};
use web_common::*;

#[tokio::test]
async fn the_command_list_shows_the_names_one_posts() {
    let w = start().await;
    let alice = w.login("alice@example.com").await;
    let names = [
        "pump_on",
        "pump_off",
        "pump_auto",
        "heater_on",
        "heater_off",
        "heater_auto",
        "status",
        "reboot",
        "relay2_on",
        "relay7_auto",
    ];
    for name in names {
        let body = format!(r#"{{"command":"{name}"}}"#);
        let r = w
            .api(Method::POST, "/api/devices/1/commands", &alice, &body)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{name}: {}", r.body);
    }
    let r = w
        .api(Method::GET, "/api/devices/1/commands", &alice, "")
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let list: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let mut listed: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["command"].as_str().unwrap())
        .collect();
    listed.reverse(); // newest first
    assert_eq!(listed, names);
}

#[tokio::test]
async fn a_server_list_is_saved_as_sent_or_refused() {
    let w = start().await;
    let alice = w.login("alice@example.com").await;
    let put = async |json: &str| {
        w.api(Method::PUT, "/api/devices/1/config", &alice, json)
            .await
    };
    let r = put(r#"{"servers": ["a.example:8844", "b.example"]}"#).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    for bad in [
        r#"{"servers": [""]}"#,
        r#"{"servers": ["a.example", " "]}"#,
        r#"{"servers": ["a.example,b.example"]}"#,
        r#"{"servers": ["a.example\nb.example"]}"#,
    ] {
        let r = put(bad).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {}",
            r.body
        );
        assert!(
            r.body.contains("servers[") && r.body.contains("factory list"),
            "{bad}: {}",
            r.body
        );
    }
    // Nothing was saved: still version 1 with the two servers.
    let r = w
        .api(Method::GET, "/api/devices/1/config", &alice, "")
        .await;
    let got: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(got["version"], 1);
    assert_eq!(
        got["config"]["servers"],
        serde_json::json!(["a.example:8844", "b.example"])
    );
    // `[]` is the way to ask for the factory list.
    let r = put(r#"{"servers": []}"#).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = w
        .api(Method::GET, "/api/devices/1/config", &alice, "")
        .await;
    let got: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(
        (got["version"].clone(), got["config"]["servers"].clone()),
        (serde_json::json!(2), serde_json::json!([]))
    );
}
