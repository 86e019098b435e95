//! Issue 19 on the server side: saving an untouched form makes no configuration version (the
//! page says nothing changed), and a rolled-back version is described without claiming a
//! version the controller does not run.

mod web_common;

use hyper::StatusCode;
use web_common::*;

#[tokio::test]
async fn an_unchanged_form_makes_no_version() {
    let w = start().await;
    let alice = w.login("alice@example.com").await;
    let form = "log_interval=30&eth_ip=&gsm_apn=internet&servers=a.example";
    let r = w.post_form("/devices/1/configure", &alice, form).await;
    assert_eq!(r.header("location"), "/devices/1/configure?saved=1");
    // The same form again (what a user does who only presses Save): nothing new.
    let r = w.post_form("/devices/1/configure", &alice, form).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.header("location"), "/devices/1/configure?unchanged=1");
    assert_eq!(
        w.server
            .api()
            .latest_config(1)
            .await
            .unwrap()
            .unwrap()
            .version,
        1
    );
    let page = w
        .get("/devices/1/configure?unchanged=1", Some(&alice))
        .await;
    assert!(page.body.contains("Nothing changed"), "{}", page.body);
    // The setpoint form likewise: a change makes v2, the same values again nothing.
    let sp = "setpoint=29.5&hysteresis=0.5";
    let r = w.post_form("/devices/1/setpoint", &alice, sp).await;
    assert_eq!(r.header("location"), "/devices/1?saved=2");
    let r = w.post_form("/devices/1/setpoint", &alice, sp).await;
    assert_eq!(r.header("location"), "/devices/1?unchanged=2");
    let page = w.get("/devices/1?unchanged=2", Some(&alice)).await;
    assert!(page.body.contains("no new version was made"));
    // Only the two real changes are in the audit log.
    let admin = w.login("admin@example.com").await;
    let audit = w.get("/audit?device=1", Some(&admin)).await;
    assert_eq!(
        audit.body.matches("config.save").count(),
        2,
        "{}",
        audit.body
    );
}

/// Issue 19 point 9: the overview's "Recent" does not repeat the open alarms, names the
/// controller, and acknowledging there stays on the overview; the device page says when no
/// destination list exists.
#[tokio::test]
async fn the_alarm_overview_shows_each_alarm_once_and_stays_put() {
    use tek_server::alarms::rules::Severity;
    use tek_server::storage::{AlarmStore, NewAlarm};
    let w = start().await;
    let alice = w.login("alice@example.com").await;
    for t in ["freeze_risk", "offline"] {
        let r = w
            .post_form(
                "/devices/1/alarms/rules",
                &alice,
                &format!("kind=template&template={t}"),
            )
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    }
    let db = tek_server::storage::sqlite::Sqlite::open_dir(w._dir.path()).unwrap();
    let rules = db.device_rules(1).unwrap();
    assert_eq!(rules.len(), 2);
    let now = 1_790_000_000;
    let raise = |rule: usize, at: i64| NewAlarm {
        rule_id: rules[rule].id,
        device_id: 1,
        rule_name: rules[rule].spec.name.clone(),
        severity: Severity::Warning,
        message: format!("seen at {at}"),
        raised_at: at,
    };
    db.raise_alarm(&raise(0, now)).unwrap();
    db.clear_alarm(rules[0].id, now + 60).unwrap();
    let (open_id, _) = db.raise_alarm(&raise(1, now + 120)).unwrap();
    let page = w.get("/alarms", Some(&alice)).await;
    let (open, recent) = page.body.split_once("<h2>Recent</h2>").unwrap();
    assert!(open.contains(&format!("seen at {}", now + 120)));
    assert!(
        !recent.contains(&format!("seen at {}", now + 120)),
        "the open alarm is not repeated"
    );
    assert!(recent.contains(&format!("seen at {now}")));
    assert!(open.contains("Pool 1 #1"), "the controller by name");
    // Acknowledging from the overview comes back to the overview.
    let r = w
        .post_form(&format!("/alarms/{open_id}/ack"), &alice, "back=overview")
        .await;
    assert_eq!(
        r.header("location"),
        format!("/alarms?ok=alarm+{open_id}+acknowledged")
    );
    let r = w
        .post_form(&format!("/alarms/{open_id}/ack"), &alice, "")
        .await;
    assert!(r.header("location").starts_with("/devices/1/alarms"));
    // No destination list yet: the device page says nobody is notified.
    let dev = w.get("/devices/1/alarms", Some(&alice)).await;
    assert!(dev.body.contains("id=\"no-lists\""), "{}", dev.body);
}

/// Issue 19 point 2: the charts' endpoint reduces any range to about `points` buckets and keeps
/// each bucket's lowest and highest value, so a one-minute peak survives a 2-bucket hour.
/// Hand-computed: 60 records a minute apart at 1000 W but one at 9000 W in the first half hour
/// (bucket 1: mean (29 × 1000 + 9000) / 30 = 1266.67, range 1000..9000), pump on in 10 of the
/// second half hour's 30 records (1/3), heater never.
#[tokio::test]
async fn chart_buckets_keep_peaks_and_relay_shares() {
    use tek_server::storage::{TelemetryRow, TelemetryStore};
    let w = start().await;
    let alice = w.login("alice@example.com").await;
    let t0: i64 = 1_780_308_000; // a whole hour
    let rows: Vec<TelemetryRow> = (0..60u32)
        .map(|k| TelemetryRow {
            device_id: 1,
            boot: 1,
            seq: k,
            time: t0 + i64::from(k) * 60,
            channels: 0b1_0001,
            values: [
                if k == 7 { 9000 } else { 1000 },
                0,
                0,
                0,
                i32::from((30..40).contains(&k)),
                0,
                0,
                0,
            ],
        })
        .collect();
    let db = tek_server::storage::sqlite::Sqlite::open_dir(w._dir.path()).unwrap();
    db.insert_telemetry(&rows).unwrap();
    // Out of this handle's inbox journal into the tables the server reads.
    db.fold_inbox().unwrap();
    let r = w
        .api(
            hyper::Method::GET,
            &format!(
                "/api/devices/1/telemetry?from={t0}&to={}&points=2",
                t0 + 3600
            ),
            &alice,
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["step"], 1800);
    let b = v["buckets"].as_array().unwrap();
    assert_eq!(b.len(), 2);
    assert!((b[0]["power_w"].as_f64().unwrap() - 38_000.0 / 30.0).abs() < 1e-6);
    assert_eq!(
        (b[0]["power_min"].as_f64(), b[0]["power_max"].as_f64()),
        (Some(1000.0), Some(9000.0))
    );
    assert_eq!(b[0]["pump_on"].as_f64(), Some(0.0));
    assert!((b[1]["pump_on"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-9);
    assert_eq!(b[1]["heater_on"].as_f64(), Some(0.0));
    assert_eq!(b[1]["power_max"].as_f64(), Some(1000.0));
    for bad in ["points=0", "points=2001", "points=5&step=60"] {
        let r = w
            .api(
                hyper::Method::GET,
                &format!("/api/devices/1/telemetry?from={t0}&to={}&{bad}", t0 + 3600),
                &alice,
                "",
            )
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
}

/// Issue 19 point 10: renaming a controller through its Configure page and the API, audited;
/// a bad name is refused; someone outside its site cannot.
#[tokio::test]
async fn controllers_are_renamed_from_the_page_and_the_api() {
    let w = start().await;
    let alice = w.login("alice@example.com").await;
    let bob = w.login("bob@example.com").await;
    let r = w
        .post_form("/devices/1/rename", &alice, "name=+Lap+pool+")
        .await;
    assert_eq!(r.header("location"), "/devices/1/configure?renamed=1");
    let page = w.get("/devices/1/configure?renamed=1", Some(&alice)).await;
    assert!(page.body.contains("Renamed.") && page.body.contains("value=\"Lap pool\""));
    let r = w
        .api(
            hyper::Method::PATCH,
            "/api/devices/1",
            &alice,
            r#"{"name":"Kids' pool"}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("Kids' pool"));
    let dash = w.get("/dashboard", Some(&alice)).await;
    assert!(dash.body.contains("1 Kids&#39; pool") || dash.body.contains("1 Kids' pool"));
    for bad in [r#"{"name":""}"#, r#"{"name":"   "}"#, r#"{"nom":"x"}"#] {
        let r = w
            .api(hyper::Method::PATCH, "/api/devices/1", &alice, bad)
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {}",
            r.body
        );
    }
    let long = format!(r#"{{"name":"{}"}}"#, "x".repeat(65));
    let r = w
        .api(hyper::Method::PATCH, "/api/devices/1", &alice, &long)
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    // Bob's site does not have device 1.
    let r = w
        .api(
            hyper::Method::PATCH,
            "/api/devices/1",
            &bob,
            r#"{"name":"mine"}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let admin = w.login("admin@example.com").await;
    let audit = w.get("/audit?device=1", Some(&admin)).await;
    assert_eq!(
        audit.body.matches("device.rename").count(),
        2,
        "{}",
        audit.body
    );
}

/// Issue 19 point 9: disabling a rule clears its open alarm (as deleting does).
#[tokio::test]
async fn disabling_a_rule_clears_its_alarm() {
    use tek_server::alarms::rules::Severity;
    use tek_server::storage::{AlarmFilter, AlarmStore, NewAlarm};
    let w = start().await;
    let alice = w.login("alice@example.com").await;
    let r = w
        .post_form(
            "/devices/1/alarms/rules",
            &alice,
            "kind=template&template=freeze_risk",
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let db = tek_server::storage::sqlite::Sqlite::open_dir(w._dir.path()).unwrap();
    let rule = db.device_rules(1).unwrap().remove(0);
    db.raise_alarm(&NewAlarm {
        rule_id: rule.id,
        device_id: 1,
        rule_name: rule.spec.name.clone(),
        severity: Severity::Warning,
        message: "cold".into(),
        raised_at: 1_790_000_000,
    })
    .unwrap();
    let open = |db: &tek_server::storage::sqlite::Sqlite| {
        db.alarms(&AlarmFilter {
            devices: Some(vec![1]),
            open_only: true,
            limit: 10,
        })
        .unwrap()
        .len()
    };
    assert_eq!(open(&db), 1);
    let r = w
        .post_form(
            &format!("/devices/1/alarms/rules/{}/enabled", rule.id),
            &alice,
            "enabled=off",
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(open(&db), 0, "the disabled rule's alarm is cleared");
}

/// Issue 19 point 10: a configuration change applied to the controllers selected on the
/// dashboard; each gets its own version; none is saved when one selected controller is not the
/// user's.
#[tokio::test]
async fn bulk_change_of_selected_controllers() {
    let w = start().await;
    let alice = w.login("alice@example.com").await;
    let dash = w.get("/dashboard", Some(&alice)).await;
    assert!(dash.body.contains("name=\"sel_1\"") && dash.body.contains("action=\"/devices/bulk\""));
    // Device 3 is Bob's: refused (404 as for any device not visible), nothing saved.
    let r = w
        .post_form("/devices/bulk", &alice, "sel_1=on&sel_3=on&setpoint=30")
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(w.server.api().latest_config(1).await.unwrap().is_none());
    let r = w
        .post_form(
            "/devices/bulk",
            &alice,
            "sel_1=on&sel_2=on&setpoint=30&log_interval=",
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    for id in [1, 2] {
        let c = w.server.api().latest_config(id).await.unwrap().unwrap();
        assert_eq!((c.version, c.config.thermostat.setpoint_cc), (1, 3000));
    }
    let page = w.get(r.header("location"), Some(&alice)).await;
    assert!(
        page.body
            .contains("applied to 2 controller(s); 0 already had it"),
        "{}",
        page.body
    );
    // Again: nothing new.
    let r = w
        .post_form("/devices/bulk", &alice, "sel_1=on&sel_2=on&setpoint=30")
        .await;
    let page = w.get(r.header("location"), Some(&alice)).await;
    assert!(page
        .body
        .contains("applied to 0 controller(s); 2 already had it"));
    // Bad input: nothing selected, or an invalid value.
    for bad in ["setpoint=30", "sel_1=on&log_interval=5", "sel_1=on"] {
        let r = w.post_form("/devices/bulk", &alice, bad).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
}

/// Issue 19 point 7: after the controller rolled v2 back and reports running v1, the Configure
/// page says so and offers to reset the form to v1; the reset form shows v1's values, and saving
/// it makes v3 with them.
#[tokio::test]
async fn after_a_rollback_the_form_resets_to_what_runs() {
    use tek_proto::message::status::{Radio, Traffic, Transport};
    use tek_proto::message::{ConfigResult, Status};
    use tek_server::storage::{ConfigStore, StatusStore};
    let w = start().await;
    let alice = w.login("alice@example.com").await;
    for li in [30, 40] {
        let r = w
            .post_form(
                "/devices/1/configure",
                &alice,
                &format!("log_interval={li}&eth_ip=&gsm_apn=internet&servers=a.example"),
            )
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    }
    let db = tek_server::storage::sqlite::Sqlite::open_dir(w._dir.path()).unwrap();
    db.config_acked(1, 1, ConfigResult::Applied, 100).unwrap();
    db.config_acked(1, 2, ConfigResult::RolledBack, 200)
        .unwrap();
    let status = Status {
        transport: Transport::Ethernet,
        flags: 0,
        ip: [192, 168, 1, 20],
        netmask: [255, 255, 255, 0],
        gateway: [192, 168, 1, 1],
        dns: [192, 168, 1, 1],
        uptime_s: 100,
        firmware: [1, 0, 0],
        config_version: 1,
        log_drops: 0,
        log_backlog: 0,
        traffic: Traffic {
            eth_tx: 0,
            eth_rx: 0,
            gsm_tx: 0,
            gsm_rx: 0,
        },
        gsm_signal: 99,
        radio: Radio::Off,
        relays: 0,
        server_index: 0,
    };
    db.store_status(1, &status, 210).unwrap();
    let page = w.get("/devices/1/configure", Some(&alice)).await;
    assert!(page.body.contains("runs v1 again"), "{}", page.body);
    assert!(page
        .body
        .contains("href=\"/devices/1/configure?from_version=1\""));
    let reset = w
        .get("/devices/1/configure?from_version=1", Some(&alice))
        .await;
    assert!(reset.body.contains("The form shows v1"));
    assert!(
        reset.body.contains("name=\"log_interval\" value=\"30\""),
        "{}",
        reset.body
    );
    let r = w
        .post_form(
            "/devices/1/configure",
            &alice,
            "log_interval=30&eth_ip=&gsm_apn=internet&servers=a.example",
        )
        .await;
    assert_eq!(r.header("location"), "/devices/1/configure?saved=3");
    let c = w.server.api().latest_config(1).await.unwrap().unwrap();
    assert_eq!((c.version, c.config.log_interval_s), (3, 30));
}

/// Issue 19 point 5: the Configure page marks each wrong field and shows its message under it,
/// with what was typed kept (the list at the top stays as a summary).
#[tokio::test]
async fn configure_errors_sit_next_to_their_fields() {
    let w = start().await;
    let alice = w.login("alice@example.com").await;
    let r = w
        .post_form(
            "/devices/1/configure",
            &alice,
            "log_interval=5&eth_ip=10.0.0&eth_netmask=255.255.255.0&eth_gateway=&gsm_apn=internet&servers=bad%20host",
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let b = &r.body;
    assert!(b.contains("id=\"errors\""), "the summary stays");
    for (field, words) in [
        ("log_interval", "Logging interval must be"),
        ("eth_ip", "is not an IPv4 address"),
        ("eth_gateway", "Gateway is required"),
        ("servers", "is not a host name"),
    ] {
        let input = b
            .split(&format!("id=\"{field}\""))
            .nth(1)
            .unwrap_or_else(|| panic!("{field} missing"));
        let tag = &input[..input.find('>').unwrap()];
        assert!(tag.contains("aria-invalid=\"true\""), "{field}: {tag}");
        assert!(tag.contains(&format!("aria-describedby=\"{field}-error\"")));
        let note = b
            .split(&format!("id=\"{field}-error\">"))
            .nth(1)
            .unwrap_or_else(|| panic!("{field}: no note"));
        let note = &note[..note.find("</span>").unwrap()];
        assert!(note.contains(words), "{field}: {note}");
    }
    assert!(
        b.contains("value=\"5\"") && b.contains("value=\"10.0.0\""),
        "typed input kept"
    );
    assert!(
        !b.contains("id=\"eth_netmask-error\""),
        "a right field is not marked"
    );
}

/// Issue 19 point 5 on Configure → Schedules: the wrong day and setpoint are marked with their
/// messages, the typed input kept.
#[tokio::test]
async fn schedule_errors_sit_next_to_their_fields() {
    let w = start().await;
    let alice = w.login("alice@example.com").await;
    let r = w
        .post_form(
            "/devices/1/schedules",
            &alice,
            "enabled=on&time_zone=UTC&occupied=99&unoccupied=20&freeze_limit=3&freeze_hysteresis=1&pump_tue=25%3A00-26%3A00&holidays=",
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    for field in ["occupied", "pump_tue"] {
        let input = r.body.split(&format!("id=\"{field}\"")).nth(1).unwrap();
        let tag = &input[..input.find('>').unwrap()];
        assert!(tag.contains("aria-invalid=\"true\""), "{field}: {tag}");
        assert!(r.body.contains(&format!("id=\"{field}-error\"")), "{field}");
    }
    assert!(r.body.contains("value=\"25:00-26:00\""), "typed input kept");
    assert!(!r.body.contains("id=\"unoccupied-error\""));
}

/// Issue 19 point 2: the device page offers ranges from an hour to three years, and the
/// interactive chart's endpoint answers any of them in about 600 buckets.
#[tokio::test]
async fn ranges_from_an_hour_to_years() {
    let w = start().await;
    let alice = w.login("alice@example.com").await;
    let page = w.get("/devices/1?range=3y", Some(&alice)).await;
    assert_eq!(page.status, StatusCode::OK);
    for r in ["1h", "24h", "7d", "30d", "1y", "3y"] {
        assert!(page.body.contains(&format!("?range={r}\"")), "{r}");
    }
    let attr = |name: &str| -> i64 {
        let rest = page.body.split(&format!("{name}=\"")).nth(1).unwrap();
        rest[..rest.find('"').unwrap()].parse().unwrap()
    };
    let (from, to) = (attr("data-from"), attr("data-to"));
    assert_eq!(to - from, 3 * 365 * 86_400);
    let r = w
        .api(
            hyper::Method::GET,
            &format!("/api/devices/1/telemetry?from={from}&to={to}&points=600"),
            &alice,
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    // 3 years / 600 = 43.8 h, rounded up to whole days (the daily rollups): 2 days.
    assert_eq!(v["step"], 2 * 86_400);
}
