//! Applying a channel-map template over the JSON API (`POST /api/templates/{id}/apply`,
//! docs/API.md "Channel templates"): each device gets a new pending configuration version with
//! the template's map as its registry entry, audited; a device the caller may not change makes
//! the whole request a 404 and nothing is applied; the CSRF rule of every POST holds.

mod web_common;

use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use tek_server::storage::channels::builtin;
use tek_server::storage::ConfigState;
use web_common::*;

/// Id of the built-in "temperature transmitter" template (the fourth, PROTOCOL.md 17.2).
const TRANSMITTER: i64 = 4;

#[tokio::test]
async fn a_template_is_applied_as_a_new_version_per_device() {
    let w = start().await;
    let db = w.server.api().storage_handle();
    let alice = w.login("alice@example.com").await;
    let path = format!("/api/templates/{TRANSMITTER}/apply");

    // Alice's site has devices 1 and 2; device 3 is Bob's site's: nothing is applied at all.
    let r = w
        .api(Method::POST, &path, &alice, r#"{"devices":[1,3]}"#)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    for d in [1, 2, 3] {
        assert!(db.latest_config(d).unwrap().is_none(), "device {d}");
    }
    // Empty lists and unknown templates.
    let r = w
        .api(Method::POST, &path, &alice, r#"{"devices":[]}"#)
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    let r = w
        .api(
            Method::POST,
            "/api/templates/999/apply",
            &alice,
            r#"{"devices":[1]}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    // A cookie without its CSRF token changes nothing.
    let r = w
        .send(
            Method::POST,
            &path,
            &[
                ("cookie", alice.cookie.as_str()),
                ("content-type", "application/json"),
            ],
            r#"{"devices":[1]}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(db.latest_config(1).unwrap().is_none());

    let r = w
        .api(Method::POST, &path, &alice, r#"{"devices":[2,1,2]}"#)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        serde_json::from_str::<Value>(&r.body).unwrap(),
        json!({"template": TRANSMITTER, "devices": [
            {"device": 1, "version": 1}, {"device": 2, "version": 1}]})
    );
    let tpl = builtin::tb260();
    for d in [1, 2] {
        let c = db.latest_config(d).unwrap().unwrap();
        assert_eq!((c.version, c.state), (1, ConfigState::Pending));
        let entry = db.device_channels(d, Some(1)).unwrap().unwrap();
        assert_eq!(entry.version, 1);
        assert_eq!(entry.template_id, Some(TRANSMITTER));
        assert_eq!(entry.map, tpl.map());
        assert_eq!(entry.roles, tpl.roles_value());
        let names: Vec<&str> = entry.channels.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["Temperature", "Sensor state"]);
        // Version 0 keeps the factory map.
        let factory = db.device_channels(d, Some(0)).unwrap().unwrap();
        assert_eq!(factory.map, builtin::pool().map());
    }
    // The template now shows the devices that use it; the saves were audited.
    let r = w
        .api(
            Method::GET,
            &format!("/api/templates/{TRANSMITTER}"),
            &alice,
            "",
        )
        .await;
    assert_eq!(
        serde_json::from_str::<Value>(&r.body).unwrap()["devices"],
        json!([1, 2])
    );
    // Refused by the controller (a ChunkAck *too large* is recorded as a rollback): the
    // Configure page says the map was refused.
    let page = w.get("/devices/1/configure", Some(&alice)).await;
    assert!(!page.body.contains("channel-map-note"), "{}", page.body);
    db.config_acked(1, 1, tek_proto::message::ConfigResult::RolledBack, 5)
        .unwrap();
    let page = w.get("/devices/1/configure", Some(&alice)).await;
    assert!(
        page.body.contains("channel-map-note") && page.body.contains("carries a channel map"),
        "{}",
        page.body
    );
    let audit = w.api(Method::GET, "/api/audit", &alice, "").await;
    assert!(
        audit.body.contains("config.save") && audit.body.contains("temperature transmitter"),
        "{}",
        audit.body
    );
}
