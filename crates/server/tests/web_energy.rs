//! Energy and cost over HTTP: a site in Europe/Berlin with a time-of-use tariff (a night rate
//! spanning midnight, a demand charge, a fixed charge), telemetry on the 25-hour fall-back day
//! 2026-10-25 with a meter reset, and the figures the API, the CSV export and the site page show,
//! checked against values computed by hand. Also the time zone and tariff rules (bad input
//! refused with a message, nothing saved; only admins change them).

mod web_common;

use hyper::{Method, StatusCode};
use serde_json::Value;
use tek_server::storage::{TelemetryRow, TelemetryStore};
use web_common::*;

/// Local midnight starting 2026-10-25 in Europe/Berlin: 2026-10-24T22:00:00Z (CEST, UTC+2).
/// The day ends 25 hours later, at 2026-10-25T23:00:00Z (CET, UTC+1).
const S: i64 = 1_792_879_200;

fn row(device_id: u32, seq: u32, time: i64, power: i32, energy: i32) -> TelemetryRow {
    TelemetryRow {
        device_id,
        boot: 1,
        seq,
        time,
        channels: 0b11,
        values: [power, energy, 0, 0, 0, 0, 0, 0],
    }
}

/// Device 1: 1 kW all day, a reading 60 s into every 15-minute interval with 250 Wh more each
/// time, from the interval before the day to the first interval after it (102 readings): 250 Wh
/// in each of the day's 100 intervals and in the next day's first.
/// Device 2: 2 kW from 13 real hours after midnight (12:00 CET): readings at 13 h + 60 s + j ×
/// 15 min (j = 0..8), meter 1000, 1500, 2000, 2500, 3000, then reset to 100, then 600, 1100,
/// 1600: 4 × 500 Wh, a reset step counting 0, 3 × 500 Wh = 3.5 kWh.
fn seed(w: &Web) {
    let db = tek_server::storage::sqlite::Sqlite::open_dir(w._dir.path()).unwrap();
    let mut rows = Vec::new();
    for k in -1..=100i64 {
        rows.push(row(
            1,
            (k + 1) as u32,
            S + k * 900 + 60,
            1000,
            10_000 + 250 * (k as i32 + 1),
        ));
    }
    let meter = [1000, 1500, 2000, 2500, 3000, 100, 600, 1100, 1600];
    for (j, e) in meter.iter().enumerate() {
        rows.push(row(
            2,
            j as u32,
            S + 13 * 3600 + j as i64 * 900 + 60,
            2000,
            *e,
        ));
    }
    db.insert_telemetry(&rows).unwrap();
}

fn close(v: &Value, expected: f64) -> bool {
    v.as_f64().is_some_and(|x| (x - expected).abs() < 1e-6)
}

#[tokio::test]
async fn figures_match_hand_computed_values_across_fall_back() {
    let w = start().await;
    seed(&w);
    let admin = w.login("admin@example.com").await;
    let alice = w.login("alice@example.com").await;
    let site = w.site_a;

    // The admin sets the zone (any case; stored canonical) and the tariff.
    let r = w
        .api(
            Method::PUT,
            &format!("/api/sites/{site}/time_zone"),
            &admin,
            r#"{"time_zone":"europe/berlin"}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("\"Europe/Berlin\""));
    let tariff = r#"{"currency":"EUR","energy_price":0.30,
        "periods":[{"name":"night","days":"all","start":"22:00","end":"06:00","price":0.10}],
        "demand_price":10,"monthly_fixed":5}"#;
    let r = w
        .api(
            Method::PUT,
            &format!("/api/sites/{site}/tariff"),
            &admin,
            tariff,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let got = w
        .api(
            Method::GET,
            &format!("/api/sites/{site}/tariff"),
            &alice,
            "",
        )
        .await;
    assert!(got.body.contains("\"night\""), "{}", got.body);

    // Per day. 2026-10-25 (25 hours): device 1 has 100 × 250 Wh = 25 kWh, device 2 3.5 kWh.
    // Night (22:00-06:00 local) on that day is 00:00-06:00 (7 real hours, 02:00-03:00 twice)
    // and 22:00-24:00: 36 intervals = 9 kWh at 0.10 = 0.90; device 1's other 64 intervals =
    // 16 kWh at 0.30 = 4.80; device 2 (12:00-14:15) 3.5 kWh at 0.30 = 1.05. Total 6.75.
    // Peak: 1 kW + 2 kW at 13 h after midnight = 2026-10-25T11:00Z.
    // 2026-10-26: device 1's last 250 Wh at 00:00-00:15 (night): 0.025.
    let r = w
        .api(
            Method::GET,
            &format!("/api/sites/{site}/energy?by=day&from=2026-10-25&to=2026-10-27"),
            &alice,
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["time_zone"], "Europe/Berlin");
    assert_eq!(v["currency"], "EUR");
    let d = &v["periods"][0];
    assert_eq!(d["period"], "2026-10-25");
    assert_eq!(d["start"], S);
    assert_eq!(d["end"], S + 25 * 3600);
    assert!(close(&d["kwh"], 28.5), "{d}");
    assert!(close(&d["peak_kw"], 3.0), "{d}");
    assert_eq!(d["peak_at"], S + 13 * 3600);
    assert!(close(&d["cost"]["total"], 6.75), "{d}");
    assert!(
        close(&d["cost"]["demand"], 0.0),
        "demand is charged per month"
    );
    let d2 = &v["periods"][1];
    assert!(
        close(&d2["kwh"], 0.25) && close(&d2["cost"]["total"], 0.025),
        "{d2}"
    );
    assert!(close(&d2["peak_kw"], 1.0), "{d2}");
    // Per device: device 2's reset step counted nothing.
    let devs = v["devices"].as_array().unwrap();
    assert_eq!(devs.len(), 2);
    assert_eq!(devs[1]["id"], 2);
    assert!(close(&devs[0]["periods"][0]["kwh"], 25.0));
    assert!(close(&devs[0]["periods"][0]["cost"]["total"], 5.70));
    assert!(close(&devs[1]["periods"][0]["kwh"], 3.5));
    assert!(close(&devs[1]["periods"][0]["peak_kw"], 2.0));
    assert!(close(&v["total"]["kwh"], 28.75));

    // Per month: October 28.75 kWh, energy 6.775, demand 10 × 3 kW = 30, fixed 5: 41.775.
    let r = w
        .api(
            Method::GET,
            &format!("/api/sites/{site}/energy?by=month&from=2026-10&to=2026-12"),
            &alice,
            "",
        )
        .await;
    let v: Value = serde_json::from_str(&r.body).unwrap();
    let m = &v["periods"][0];
    assert_eq!(m["period"], "2026-10");
    assert!(close(&m["kwh"], 28.75), "{m}");
    assert!(close(&m["cost"]["energy"], 6.775), "{m}");
    assert!(close(&m["cost"]["demand"], 30.0), "{m}");
    assert!(close(&m["cost"]["total"], 41.775), "{m}");
    let nov = &v["periods"][1];
    assert!(close(&nov["kwh"], 0.0) && nov["peak_at"].is_null());
    assert!(
        close(&nov["cost"]["total"], 5.0),
        "only the fixed charge: {nov}"
    );
    // Each device's month is its energy alone, at the site's prices: device 1 has 25.25 kWh,
    // 5.70 on the 25th + 0.025 on the 26th = 5.725; device 2 3.5 kWh at 0.30 = 1.05 (together
    // the site's 6.775). The site's demand (30) and fixed (5) charges are not put on each
    // device: before, device 1 showed 5.725 + 10 × 1 kW + 5 = 20.725.
    let devs = v["devices"].as_array().unwrap();
    let oct = |i: usize| &devs[i]["periods"][0]["cost"];
    assert!(close(&oct(0)["total"], 5.725), "{}", oct(0));
    assert!(close(&oct(0)["fixed"], 0.0) && close(&oct(0)["demand"], 0.0));
    assert!(close(&oct(1)["total"], 1.05), "{}", oct(1));
    // September, before the site's first record: no fixed charge, nothing to pay.
    let r = w
        .api(
            Method::GET,
            &format!("/api/sites/{site}/energy?by=month&from=2026-09&to=2026-11"),
            &alice,
            "",
        )
        .await;
    let v: Value = serde_json::from_str(&r.body).unwrap();
    let (sep, oct) = (&v["periods"][0], &v["periods"][1]);
    assert_eq!(sep["period"], "2026-09");
    assert!(close(&sep["cost"]["fixed"], 0.0), "{sep}");
    assert!(close(&sep["cost"]["total"], 0.0), "{sep}");
    assert!(close(&oct["cost"]["total"], 41.775), "{oct}");
    assert!(close(&v["total"]["cost"], 41.775), "{v}");

    // The CSV: the site's lines, then each device's.
    let csv = w
        .get(
            &format!("/sites/{site}/energy.csv?by=day&from=2026-10-25&to=2026-10-27"),
            Some(&alice),
        )
        .await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(csv.header("content-type").starts_with("text/csv"));
    let lines: Vec<&str> = csv.body.lines().collect();
    assert_eq!(lines.len(), 1 + 2 + 2 * 2, "{}", csv.body);
    assert_eq!(
        lines[1],
        "2026-10-25,2026-10-25T00:00:00+02:00,2026-10-26T00:00:00+01:00,,28.500,3.000,\
         2026-10-25T12:00:00+01:00,6.7500,0.0000,0.0000,6.7500,EUR"
    );
    assert!(lines[5].starts_with("2026-10-25,") && lines[5].contains(",2,3.500,2.000,"));
    let api_csv = w
        .api(
            Method::GET,
            &format!("/api/sites/{site}/energy.csv?by=day&from=2026-10-25&to=2026-10-27"),
            &alice,
            "",
        )
        .await;
    assert_eq!(api_csv.body, csv.body);

    // The site page: zone, tariff, controllers, three charts; no admin forms for a member.
    let page = w.get(&format!("/sites/{site}"), Some(&alice)).await;
    assert_eq!(page.status, StatusCode::OK);
    for s in [
        "Europe/Berlin",
        "night all 22:00–06:00",
        "Pool 1",
        "Pool 2",
        "energy.csv",
    ] {
        assert!(page.body.contains(s), "{s} missing");
    }
    assert_eq!(page.body.matches("<svg").count(), 3);
    // This month (after the October data): each controller's cost is its energy only (none
    // yet: 0.00 EUR), the site total row carries the month's fixed charge (5.00 EUR).
    assert!(
        page.body.contains("data-field=\"site-cost\">5.00 EUR"),
        "{}",
        page.body
    );
    let devices = page.body.split("id=\"site-devices\"").nth(1).unwrap();
    let devices = devices.split("</table>").next().unwrap();
    assert_eq!(
        devices.matches("<td class=\"num\">0.00 EUR</td>").count(),
        2,
        "one per controller: {devices}"
    );
    assert!(page.body.contains("id=\"energy-view\""));
    assert!(!page.body.contains("Save tariff"));
    let page = w.get(&format!("/sites/{site}"), Some(&admin)).await;
    assert!(page.body.contains("Save tariff") && page.body.contains("night all 22:00-06:00 0.1"));
    // The dashboard links to it.
    let dash = w.get("/dashboard", Some(&alice)).await;
    assert!(dash.body.contains(&format!("href=\"/sites/{site}\"")));
}

#[tokio::test]
async fn bad_time_zones_and_tariffs_are_refused_and_nothing_is_saved() {
    let w = start().await;
    let admin = w.login("admin@example.com").await;
    let alice = w.login("alice@example.com").await;
    let site = w.site_a;
    // The device page's energy per day uses the same computation: 500 Wh in the last minutes.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let db = tek_server::storage::sqlite::Sqlite::open_dir(w._dir.path()).unwrap();
    db.insert_telemetry(&[
        row(1, 0, now - 660, 100, 1000),
        row(1, 1, now - 60, 100, 1500),
    ])
    .unwrap();
    // Out of this handle's inbox journal into the tables the server reads.
    db.fold_inbox().unwrap();
    let page = w.get("/devices/1", Some(&alice)).await;
    assert!(page.body.contains(": 500 Wh"), "{}", page.body);
    for (what, body, word) in [
        (
            "time_zone",
            r#"{"time_zone":"Europe/Atlantis"}"#,
            "unknown time zone",
        ),
        ("time_zone", r#"{"time_zone":"/etc/localtime"}"#, "IANA"),
        ("time_zone", r#"{"zone":"UTC"}"#, "bad request body"),
        ("tariff", r#"{"energy_price":-0.1}"#, "energy_price"),
        (
            "tariff",
            r#"{"currency":"euro","energy_price":0.1}"#,
            "currency",
        ),
        (
            "tariff",
            r#"{"energy_price":0.1,"periods":[{"name":"p","days":"mon-fri","start":"08:10","end":"20:00","price":1}]}"#,
            "quarter hour",
        ),
        (
            "tariff",
            r#"{"energy_price":0.1,"kwh":1}"#,
            "bad request body",
        ),
    ] {
        let r = w
            .api(
                Method::PUT,
                &format!("/api/sites/{site}/{what}"),
                &admin,
                body,
            )
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(r.body.contains(word), "{body}: {}", r.body);
    }
    // The page forms say what is wrong, too.
    let r = w
        .post_form(
            &format!("/sites/{site}/tariff"),
            &admin,
            "currency=EUR&energy_price=0.3&periods=peak+mon-fri+08%3A00+0.4",
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("name days HH:MM-HH:MM price"), "{}", r.body);
    let r = w
        .post_form(
            &format!("/sites/{site}/time_zone"),
            &admin,
            "time_zone=Nowhere",
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    // A blank flat price (also what a browser sends for a number field it cannot read) or
    // one that is not a number is refused, not saved as 0.
    for price in ["", "+", "0%2C3", "abc"] {
        let r = w
            .post_form(
                &format!("/sites/{site}/tariff"),
                &admin,
                &format!("currency=EUR&energy_price={price}&periods=&demand_price=&monthly_fixed="),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{price:?}");
        assert!(r.body.contains("Price per kWh"), "{}", r.body);
        assert!(!r.body.contains("Saved"), "{}", r.body);
    }
    // Nothing was saved.
    let t = w
        .api(
            Method::GET,
            &format!("/api/sites/{site}/tariff"),
            &alice,
            "",
        )
        .await;
    assert_eq!(t.body, "null");
    let s = w.api(Method::GET, "/api/sites", &alice, "").await;
    assert!(s.body.contains("\"time_zone\":\"UTC\""), "{}", s.body);
    // Good input through the forms works and is audited; a member cannot change it.
    let r = w
        .post_form(
            &format!("/sites/{site}/tariff"),
            &admin,
            "currency=usd&energy_price=0.2&periods=peak+mon-fri+08%3A00-20%3A00+0.4&demand_price=&monthly_fixed=3",
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let r = w
        .post_form(
            &format!("/sites/{site}/time_zone"),
            &admin,
            "time_zone=Asia%2FKolkata",
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let t = w
        .api(
            Method::GET,
            &format!("/api/sites/{site}/tariff"),
            &alice,
            "",
        )
        .await;
    let v: Value = serde_json::from_str(&t.body).unwrap();
    assert_eq!(
        (v["currency"].as_str(), v["monthly_fixed"].as_f64()),
        (Some("USD"), Some(3.0))
    );
    let r = w
        .api(
            Method::PUT,
            &format!("/api/sites/{site}/tariff"),
            &alice,
            r#"{"energy_price":0}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let audit = w.api(Method::GET, "/api/audit", &admin, "").await;
    assert!(audit.body.contains("site.tariff") && audit.body.contains("Asia/Kolkata"));
    // A new site with a zone, and one with a bad zone (refused, not created).
    let r = w
        .api(
            Method::POST,
            "/api/sites",
            &admin,
            r#"{"name":"Tokyo","time_zone":"Asia/Tokyo"}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = w
        .api(
            Method::POST,
            "/api/sites",
            &admin,
            r#"{"name":"Nowhere","time_zone":"Nowhere"}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let s = w.api(Method::GET, "/api/sites", &admin, "").await;
    assert!(
        s.body.contains("Asia/Tokyo") && !s.body.contains("Nowhere"),
        "{}",
        s.body
    );
    // Ranges are checked.
    for q in [
        "by=week",
        "from=2026-13-01",
        "from=2020-01-01&to=2026-01-01",
        "by=month&from=2026-03&to=2026-03",
    ] {
        let r = w
            .api(
                Method::GET,
                &format!("/api/sites/{site}/energy?{q}"),
                &alice,
                "",
            )
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{q}");
    }
}
