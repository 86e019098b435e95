//! A device's own channels (issue 18 point 4) on the device page, in the device JSON and the
//! live stream's view, in the channel API and in the device CSV; a pool controller shows
//! exactly what it did before.

mod web_common;

use hyper::{Method, StatusCode};
use serde_json::Value;
use tek_proto::channel::faults::{Fault, FaultEntry};
use tek_proto::message::{Config, ConfigResult};
use tek_server::storage::channels::builtin;
use tek_server::storage::{ChannelSet, WideRow, WideValues};
use web_common::*;

/// 2026-11-25 09:46:40 UTC.
const FIRST: i64 = 1_795_600_000;

/// The single-phase meter's values: voltage 231.4 V, current 5.120 A, power 1182 W, no
/// frequency, import energy 123456 Wh, export 0 Wh, total 123456 Wh.
fn meter_values(seq: u32) -> Vec<Option<i32>> {
    let s = seq as i32;
    vec![
        Some(2_314),
        Some(5_120),
        Some(1_182 + s),
        None,
        Some(123_456),
        Some(0),
        Some(123_456),
    ]
}

/// Device 1 runs the single-phase meter template from version 1 (confirmed), has ten records
/// a minute apart, the first five of an earlier map, and a fault report for the frequency.
fn make_meter(db: &dyn tek_server::storage::Storage) {
    let version = db.save_config(1, &Config::default(), FIRST - 100).unwrap();
    let t = builtin::sdm120();
    let set = ChannelSet {
        map: t.map(),
        roles: t.roles_value(),
        channels: t.labels(),
    };
    db.save_device_channels(1, version, None, &set, FIRST - 100)
        .unwrap();
    db.config_acked(1, version, ConfigResult::Applied, FIRST - 90)
        .unwrap();
    let rows: Vec<WideRow> = (0..10u32)
        .map(|seq| WideRow {
            device_id: 1,
            boot: 1,
            seq,
            // A gap of five minutes after the fourth record.
            time: FIRST + 60 * i64::from(seq) + if seq >= 4 { 300 } else { 0 },
            config_version: Some(version),
            values: WideValues::from_options(&meter_values(seq)),
        })
        .collect();
    db.insert_wide(&rows).unwrap();
    db.store_channel_faults(
        1,
        &[FaultEntry {
            channel: 3,
            errors: 12,
            last: Fault::Timeout,
        }],
        FIRST + 900,
    )
    .unwrap();
}

#[tokio::test]
async fn a_devices_own_channels_everywhere() {
    let w = start().await;
    let db = w.server.api().storage_handle();
    let alice = w.login("alice@example.com").await;
    let bob = w.login("bob@example.com").await;

    // A pool controller: no channels in its JSON, an empty channel list, today's page.
    let a = w.api(Method::GET, "/api/devices/1", &alice, "").await;
    let v: Value = serde_json::from_str(&a.body).unwrap();
    assert!(v.get("channels").is_none(), "{v}");
    let a = w
        .api(Method::GET, "/api/devices/1/channels", &alice, "")
        .await;
    assert_eq!(a.status, StatusCode::OK);
    let v: Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(v["channels"], serde_json::json!([]));
    assert!(v["version"].is_null());
    let page = w.get("/devices/1", Some(&alice)).await;
    assert!(!page.body.contains("channel-values"));
    assert!(page.body.contains("id=\"chart-power\""));
    let a = w
        .api(Method::GET, "/api/devices/1/channels/0/series", &alice, "")
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.body);

    make_meter(&*db);

    // The channel list: names, values in the unit, no value, errors.
    let a = w
        .api(Method::GET, "/api/devices/1/channels", &alice, "")
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let v: Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(v["version"], 1);
    assert_eq!(v["time"], FIRST + 60 * 9 + 300);
    let ch = v["channels"].as_array().unwrap();
    let names: Vec<&str> = ch.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "Voltage",
            "Current",
            "Power",
            "Frequency",
            "Import energy",
            "Export energy",
            "Total energy"
        ]
    );
    assert_eq!(ch[0]["text"], "231.4 V");
    assert_eq!(ch[0]["unit"], "V");
    assert_eq!(ch[1]["text"], "5.12 A");
    assert_eq!(ch[2]["text"], "1191 W");
    assert_eq!(ch[2]["kind"], "power");
    assert!(ch[3]["value"].is_null(), "no value, never 0");
    assert_eq!(ch[3]["text"], "no value");
    assert_eq!(ch[3]["error"]["text"], "Modbus timeout (12 failed samples)");
    assert_eq!(ch[3]["error"]["last"], "Modbus timeout");
    assert_eq!(ch[3]["error"]["errors"], 12);
    assert!(ch[0]["error"].is_null());
    assert_eq!(ch[5]["text"], "0 Wh", "a real 0 stays 0");
    // The meter's roles name its power channel: the dashboard's power.
    assert_eq!(v["power_w"], 1191.0);
    assert!(v["water_c"].is_null());
    let dash = w.get("/dashboard", Some(&alice)).await;
    let row = dash
        .body
        .split("<tr data-device=\"1\"")
        .nth(1)
        .and_then(|r| r.split("</tr>").next())
        .unwrap()
        .to_owned();
    assert!(row.contains(">1191 W<"), "{row}");

    // The device JSON (what the live stream sends) carries the same.
    let a = w.api(Method::GET, "/api/devices/1", &alice, "").await;
    let d: Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(d["channels"]["channels"], v["channels"]);

    // A channel's series: buckets that skip the gap, and records.
    let q = format!("from={FIRST}&to={}", FIRST + 1200);
    let a = w
        .api(
            Method::GET,
            &format!("/api/devices/1/channels/2/series?{q}&step=120"),
            &alice,
            "",
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let s: Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(
        (s["name"].as_str(), s["unit"].as_str()),
        (Some("Power"), Some("W"))
    );
    let buckets = s["buckets"].as_array().unwrap();
    let starts: Vec<i64> = buckets
        .iter()
        .map(|b| b["start"].as_i64().unwrap())
        .collect();
    // Records at +0..+180 and +540..+840; FIRST is a multiple of 40 s, buckets of 120 s
    // from the epoch: the gap leaves whole buckets out.
    assert!(starts.windows(2).any(|p| p[1] - p[0] > 120), "{starts:?}");
    let counts: u64 = buckets.iter().map(|b| b["count"].as_u64().unwrap()).sum();
    assert_eq!(counts, 10);
    assert!(buckets.iter().all(
        |b| b["min"].as_f64() <= b["mean"].as_f64() && b["mean"].as_f64() <= b["max"].as_f64()
    ));
    let a = w
        .api(
            Method::GET,
            &format!("/api/devices/1/channels/3/series?{q}&points=100"),
            &alice,
            "",
        )
        .await;
    let s: Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(s["buckets"], serde_json::json!([]), "no value is no point");
    let a = w
        .api(
            Method::GET,
            &format!("/api/devices/1/channels/0/series?{q}"),
            &alice,
            "",
        )
        .await;
    let s: Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(s["points"].as_array().unwrap().len(), 10);
    assert_eq!(s["points"][0]["value"], 231.4);
    assert_eq!(s["truncated"], false);
    // Unknown channel, someone else's device, bad ranges.
    for (path, who, status) in [
        (
            "/api/devices/1/channels/7/series",
            &alice,
            StatusCode::NOT_FOUND,
        ),
        (
            "/api/devices/1/channels/0/series",
            &bob,
            StatusCode::NOT_FOUND,
        ),
        ("/api/devices/1/channels", &bob, StatusCode::NOT_FOUND),
    ] {
        let a = w.api(Method::GET, path, who, "").await;
        assert_eq!(a.status, status, "{path}: {}", a.body);
    }
    let a = w
        .api(
            Method::GET,
            &format!("/api/devices/1/channels/0/series?{q}&points=0"),
            &alice,
            "",
        )
        .await;
    assert!(a.status.is_client_error(), "{}", a.body);
    assert!(a.body.contains("points must be 1 to 2000"), "{}", a.body);

    // The page: each channel with its value or "no value" and its error, a chart each.
    let page = w.get("/devices/1", Some(&alice)).await;
    assert_eq!(page.status, StatusCode::OK);
    let b = &page.body;
    assert!(b.contains("id=\"channel-values\""), "{b}");
    for text in [
        "<dt>Voltage</dt>",
        ">231.4 V<",
        ">no value<",
        ">Modbus timeout (12 failed samples)<",
        ">no errors reported<",
        "id=\"chart-channel-0\"",
        "id=\"chart-channel-6\"",
        "data-kind=\"channel\"",
    ] {
        assert!(b.contains(text), "{text} in {b}");
    }
    assert!(!b.contains("id=\"chart-power\""));

    // The CSV: a column per channel, empty cells for no value.
    let a = w
        .api(
            Method::GET,
            &format!("/api/devices/1/telemetry.csv?{q}"),
            &alice,
            "",
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    let lines: Vec<&str> = a.body.split("\r\n").collect();
    assert_eq!(
        lines[0],
        "time,unix_s,Voltage (V),Current (A),Power (W),Frequency (Hz),Import energy (Wh),Export energy (Wh),Total energy (Wh)"
    );
    assert_eq!(
        lines[1],
        format!("2026-11-25T09:46:40+00:00,{FIRST},231.4,5.12,1182,,123456,0,123456")
    );
    assert_eq!(lines.len(), 12, "{}", a.body);

    // The alarm page's threshold form offers the device's own channels, limits in their unit.
    let page = w.get("/devices/1/alarms", Some(&alice)).await;
    assert!(
        page.body
            .contains("<option value=\"ch:0\">Voltage (V)</option>"),
        "{}",
        page.body
    );
    let r = w
        .post_form(
            "/devices/1/alarms/rules",
            &alice,
            "kind=threshold&name=Voltage+high&channel=ch%3A0&op=above&limit=253&restore=250&severity=warning",
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let rules = db.device_rules(1).unwrap();
    assert_eq!(
        rules[0].spec.condition,
        tek_server::alarms::rules::Condition::ChannelAbove {
            index: 0,
            limit: 2_530,
            restore: 2_500
        }
    );
    let page = w.get("/devices/1/alarms", Some(&alice)).await;
    assert!(
        page.body
            .contains("Voltage above 253.0 V (restore at 250.0 V)"),
        "{}",
        page.body
    );

    // Device 2 is still a pool controller.
    let page = w.get("/devices/2", Some(&alice)).await;
    assert!(!page.body.contains("channel-values"));
    let a = w
        .api(
            Method::GET,
            &format!("/api/devices/2/telemetry.csv?{q}"),
            &alice,
            "",
        )
        .await;
    assert!(a
        .body
        .starts_with("time,unix_s,power_w,energy_wh,water_c,air_c,relays\r\n"));
    w.server.shutdown().await;
}
