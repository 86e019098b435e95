//! Boots whose records arrived with estimated times (PROTOCOL.md 18.3, 18.4) on the device page
//! and in the device JSON of the API.

mod web_common;

use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use tek_server::storage::TelemetryRow;
use web_common::*;

/// 2026-11-25 09:46:40 UTC (site A's zone is UTC).
const FIRST: i64 = 1_795_600_000;

#[tokio::test]
async fn the_device_page_and_json_show_boots_with_estimated_times() {
    let w = start().await;
    let db = w.server.api().storage_handle();
    let alice = w.login("alice@example.com").await;

    // None yet: no line on the page, an empty list in the JSON.
    let page = w.get("/devices/1", Some(&alice)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.body.contains("estimated-boots"), "{}", page.body);
    let a = w.api(Method::GET, "/api/devices/1", &alice, "").await;
    let v: Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(v["estimated_boots"], json!([]));

    // Boot 2's three records, delivered later with estimated times.
    let rows: Vec<TelemetryRow> = (0..3)
        .map(|seq| TelemetryRow {
            device_id: 1,
            boot: 2,
            seq,
            time: FIRST + 60 * i64::from(seq),
            channels: 0b1_0001,
            values: [900, 0, 0, 0, 1, 0, 0, 0],
        })
        .collect();
    db.insert_telemetry(&rows).unwrap();
    db.note_estimated_boots(&[(1, 2)]).unwrap();

    let page = w.get("/devices/1", Some(&alice)).await;
    let text = page.body.replace('\n', " ");
    assert!(text.contains("id=\"estimated-boots\""), "{text}");
    assert!(
        text.contains("Records logged before a restart, boot 2: <strong>3 records</strong>, times estimated (latest possible), from "),
        "{text}"
    );
    assert!(text.contains(">2026-11-25 09:46:40</time> to "), "{text}");
    assert!(text.contains(">2026-11-25 09:48:40</time>."), "{text}");

    let a = w.api(Method::GET, "/api/devices/1", &alice, "").await;
    let v: Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(
        v["estimated_boots"],
        json!([{"boot": 2, "records": 3, "first": FIRST, "last": FIRST + 120}])
    );
    // The list has it too; another device has none.
    let a = w.api(Method::GET, "/api/devices", &alice, "").await;
    let list: Value = serde_json::from_str(&a.body).unwrap();
    let by_id = |id: u64| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|d| d["id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(by_id(1)["estimated_boots"][0]["boot"], 2);
    assert_eq!(by_id(2)["estimated_boots"], json!([]));
    let page = w.get("/devices/2", Some(&alice)).await;
    assert!(!page.body.contains("estimated-boots"));
    w.server.shutdown().await;
}
