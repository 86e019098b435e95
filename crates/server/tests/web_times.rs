//! Issue 19 point 3: every time a page or CSV file shows is in the site's zone, and the zone is
//! named. Site A is put in Asia/Tokyo (UTC+9 all year, "JST"), so a local time is never the
//! UTC one by accident.

mod web_common;

use hyper::{Method, StatusCode};
use tek_server::storage::{TelemetryRow, TelemetryStore};
use web_common::*;

/// 2026-06-01T10:00:00Z = 19:00 in Tokyo.
const T: i64 = 1_780_308_000;

#[tokio::test]
async fn pages_and_csv_use_the_sites_zone_and_name_it() {
    let w = start().await;
    let admin = w.login("admin@example.com").await;
    let alice = w.login("alice@example.com").await;
    let site = w.site_a;
    let r = w
        .api(
            Method::PUT,
            &format!("/api/sites/{site}/time_zone"),
            &admin,
            r#"{"time_zone":"Asia/Tokyo"}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let db = tek_server::storage::sqlite::Sqlite::open_dir(w._dir.path()).unwrap();
    db.insert_telemetry(&[TelemetryRow {
        device_id: 1,
        boot: 1,
        seq: 1,
        time: T,
        channels: 0b11,
        values: [500, 1000, 0, 0, 0, 0, 0, 0],
    }])
    .unwrap();
    // Out of this handle's inbox journal into the tables the server reads.
    db.fold_inbox().unwrap();

    // The device page: the latest reading's time local, the zone named, the export form local.
    let page = w.get("/devices/1", Some(&alice)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page
        .body
        .contains("Times in <strong data-zone=\"Asia/Tokyo\">Asia/Tokyo</strong>"));
    assert!(
        page.body.contains("data-tz=\"Asia/Tokyo\"") && page.body.contains(">2026-06-01 19:00:00<"),
        "{}",
        page.body
    );
    assert!(page.body.contains("From (Asia/Tokyo)"));
    assert!(!page.body.contains("2026-06-01 10:00:00"), "no UTC time");

    // The page's CSV: the form's times are local (19:00-19:01 Tokyo holds the record), the
    // file's are ISO 8601 with the offset.
    let csv = w
        .get(
            "/devices/1/export.csv?from=2026-06-01T19:00&to=2026-06-01T19:01",
            Some(&alice),
        )
        .await;
    assert_eq!(csv.status, StatusCode::OK, "{}", csv.body);
    assert_eq!(
        csv.body,
        format!("time,unix_s,power_w,energy_wh,water_c,air_c,relays\r\n2026-06-01T19:00:00+09:00,{T},500,1000,,,\r\n")
    );
    // The API's range stays UTC (10:00Z), its file in the same local form.
    let api = w
        .api(
            Method::GET,
            "/api/devices/1/telemetry.csv?from=2026-06-01T10:00&to=2026-06-01T10:01",
            &alice,
            "",
        )
        .await;
    assert_eq!(api.body, csv.body);

    // The audit log: the time-zone change of site A in its zone's abbreviation, named on hover.
    let audit = w.get("/audit", Some(&admin)).await;
    assert!(audit.body.contains(" JST</time>"), "{}", audit.body);
    assert!(audit.body.contains("title=\"Asia/Tokyo\""));
    assert!(!audit.body.contains("When (UTC)"));

    // The device's alarm page names the zone, and shows the device's tabs.
    let alarms = w.get("/devices/1/alarms", Some(&alice)).await;
    assert!(alarms.body.contains("data-zone=\"Asia/Tokyo\""));
    assert!(alarms.body.contains("href=\"/devices/1/configure\""));
}
