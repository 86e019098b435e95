//! Configure → Schedules and `/api/devices/{id}/schedule` over real HTTP on 127.0.0.1: a saved
//! schedule becomes a new configuration version (pending, with the spinner) carrying the POSIX
//! TZ rule of the chosen zone; invalid input is refused with a message and nothing is saved;
//! the API reads back what the page saved and changes it the same way. (Authorization of both
//! routes is covered with every other route in `web.rs`.)

mod web_common;

use hyper::{Method, StatusCode};
use web_common::*;

fn have_tzdata() -> bool {
    let ok = std::path::Path::new("/usr/share/zoneinfo/Europe/Paris").is_file();
    if !ok {
        eprintln!("skipped: no tzdata installed");
    }
    ok
}

const FORM: &str = "enabled=on&time_zone=Europe%2FParis&occupied=28&unoccupied=24.5\
    &pump_mon=06%3A00-22%3A00&occ_mon=07%3A00-21%3A00&pump_holiday=10%3A00-18%3A00\
    &holidays=2026-12-25%0D%0A2027-01-01&freeze_limit=2&freeze_hysteresis=1.5";

#[tokio::test]
async fn schedule_page_saves_a_configuration_version() {
    if !have_tzdata() {
        return;
    }
    let w = start().await;
    let alice = w.login("alice@example.com").await;
    let page = w.get("/devices/1/schedules", Some(&alice)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Configure → Schedules") && page.body.contains("pump_holiday"));

    let r = w.post_form("/devices/1/schedules", &alice, FORM).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.header("location"), "/devices/1/schedules?saved=1");
    let c = w.server.api().latest_config(1).await.unwrap().unwrap();
    assert_eq!(c.version, 1);
    let cfg = &c.config;
    assert_eq!(cfg.time_zone.as_str(), "CET-1CEST,M3.5.0,M10.5.0/3");
    assert_eq!(cfg.thermostat.setpoint_cc, 2800);
    let s = cfg.schedule.as_ref().unwrap();
    assert_eq!(s.unoccupied_cc, 2450);
    assert_eq!(s.points.len(), 6);
    assert_eq!(cfg.holidays.as_slice(), [20_812, 20_819]);
    assert_eq!(cfg.freeze.limit_cc, 200);
    cfg.validate().unwrap();

    // The page shows it back, with the spinner until the controller confirms.
    let page = w.get("/devices/1/schedules?saved=1", Some(&alice)).await;
    assert!(
        page.body.contains("dot pending"),
        "spinner while unconfirmed"
    );
    assert!(page.body.contains("Saved as configuration v1"));
    assert!(page.body.contains("value=\"Europe/Paris\""));
    assert!(page.body.contains("value=\"06:00-22:00\""));
    assert!(page.body.contains("2027-01-01"));
    let audit = w.get("/audit", Some(&alice)).await;
    assert!(audit.body.contains("schedule: 6 switching points"));

    // The API reads the same and changes one day.
    let r = w
        .api(Method::GET, "/api/devices/1/schedule", &alice, "")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["version"], 1);
    assert_eq!(v["state"], "pending");
    let s = &v["schedule"];
    assert_eq!(s["time_zone"], "Europe/Paris");
    assert_eq!(s["posix_tz"], "CET-1CEST,M3.5.0,M10.5.0/3");
    assert_eq!(s["days"]["mon"]["pump"][0], "06:00-22:00");
    assert_eq!(s["days"]["holiday"]["occupied"], serde_json::json!([]));
    assert_eq!(s["holidays"][1], "2027-01-01");
    assert_eq!(s["unoccupied_setpoint_c"], 24.5);
    let r = w
        .api(
            Method::PUT,
            "/api/devices/1/schedule",
            &alice,
            r#"{"time_zone": "America/New_York", "days": {"sat": {"pump": ["08:00-20:00"], "occupied": ["09:00-19:00"]}}}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let c = w.server.api().latest_config(1).await.unwrap().unwrap();
    assert_eq!(c.version, 2);
    assert_eq!(c.config.time_zone.as_str(), "EST5EDT,M3.2.0,M11.1.0");
    assert_eq!(c.config.schedule.as_ref().unwrap().points.len(), 10);
    let r = w
        .api(Method::GET, "/api/devices/1/schedule", &alice, "")
        .await;
    assert!(r.body.contains("America/New_York") && r.body.contains("09:00-19:00"));
}

#[tokio::test]
async fn invalid_schedules_are_refused_with_a_message() {
    if !have_tzdata() {
        return;
    }
    let w = start().await;
    let alice = w.login("alice@example.com").await;
    let base = "occupied=27&unoccupied=24&freeze_limit=3&freeze_hysteresis=1&enabled=on";
    let cases = [
        ("time_zone=Mars%2FOlympus", "unknown time zone"),
        ("time_zone=..%2F..%2Fetc%2Fpasswd", "not a time zone name"),
        ("pump_tue=22%3A00-06%3A00", "Tuesday, pump"),
        ("holidays=2026-02-30", "not a date"),
        ("unoccupied=99", "Unoccupied setpoint"),
        (
            "pump_mon=01%3A00-02%3A00,03%3A00-04%3A00,05%3A00-06%3A00,07%3A00-08%3A00,09%3A00-10%3A00,11%3A00-12%3A00&pump_tue=01%3A00-02%3A00,03%3A00-04%3A00,05%3A00-06%3A00,07%3A00-08%3A00,09%3A00-10%3A00,11%3A00-12%3A00&pump_wed=01%3A00-02%3A00,03%3A00-04%3A00,05%3A00-06%3A00,07%3A00-08%3A00,09%3A00-10%3A00,11%3A00-12%3A00&pump_thu=01%3A00-02%3A00,03%3A00-04%3A00,05%3A00-06%3A00,07%3A00-08%3A00,09%3A00-10%3A00",
            "a controller holds at most 40",
        ),
    ];
    for (extra, msg) in cases {
        // The case's fields replace those of the base.
        let keys: Vec<&str> = extra
            .split('&')
            .filter_map(|kv| kv.split('=').next())
            .collect();
        let kept: Vec<&str> = base
            .split('&')
            .filter(|kv| !keys.contains(&kv.split('=').next().unwrap()))
            .collect();
        let form = format!("{}&{extra}", kept.join("&"));
        let r = w.post_form("/devices/1/schedules", &alice, &form).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{form}");
        assert!(
            r.body.contains("Nothing was saved") && r.body.contains(msg),
            "{form}: {}",
            r.body
        );
    }
    for json in [
        r#"{"time_zone": "Nowhere/Atlantis"}"#,
        r#"{"days": {"funday": {"pump": ["01:00-02:00"]}}}"#,
        r#"{"days": {"mon": {"pump": ["25:00-26:00"]}}}"#,
        r#"{"freeze": {"limit_c": 40}}"#,
        r#"{"colour": "red"}"#,
        "not json",
    ] {
        let r = w
            .api(Method::PUT, "/api/devices/1/schedule", &alice, json)
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{json}: {}",
            r.body
        );
        assert!(r.body.contains("\"error\""), "{}", r.body);
    }
    assert!(
        w.server.api().latest_config(1).await.unwrap().is_none(),
        "nothing saved"
    );
}

/// A schedule with no zone of its own takes its site's time zone: shown on the page and in the
/// API, and turned into the controller's rule when saved with the zone left blank.
#[tokio::test]
async fn a_schedule_defaults_to_its_sites_time_zone() {
    if !have_tzdata() {
        return;
    }
    let w = start().await;
    let admin = w.login("admin@example.com").await;
    let alice = w.login("alice@example.com").await;
    let r = w
        .api(
            Method::PUT,
            &format!("/api/sites/{}/time_zone", w.site_a),
            &admin,
            r#"{"time_zone":"Europe/Berlin"}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    let page = w.get("/devices/1/schedules", Some(&alice)).await;
    assert!(
        page.body.contains("value=\"Europe/Berlin\""),
        "{}",
        page.body
    );
    let r = w
        .api(Method::GET, "/api/devices/1/schedule", &alice, "")
        .await;
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["schedule"]["time_zone"], "Europe/Berlin", "{}", r.body);
    // Device 4 has no site: UTC.
    let r = w
        .api(Method::GET, "/api/devices/4/schedule", &admin, "")
        .await;
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["schedule"]["time_zone"], "UTC", "{}", r.body);

    let blank_zone = FORM.replace("time_zone=Europe%2FParis", "time_zone=");
    let r = w
        .post_form("/devices/1/schedules", &alice, &blank_zone)
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let c = w.server.api().latest_config(1).await.unwrap().unwrap();
    assert_eq!(c.config.time_zone.as_str(), "CET-1CEST,M3.5.0,M10.5.0/3");
}
