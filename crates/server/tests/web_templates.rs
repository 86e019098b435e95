//! Channel-map templates over the JSON API (issue 18, docs/API.md "Channel templates"):
//! `GET /api/templates` lists the built-in templates and the caller's own, each with its
//! channels; `GET /api/templates/{id}` shows one with the caller's devices that use it;
//! `POST /api/templates` creates one, and refuses a bad one naming the channel and
//! the field, saving nothing.

mod web_common;

use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use web_common::*;

async fn templates(w: &Web, s: &Session) -> Vec<Value> {
    let r = w.api(Method::GET, "/api/templates", s, "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    serde_json::from_str::<Vec<Value>>(&r.body).unwrap()
}

fn named<'a>(all: &'a [Value], name: &str) -> &'a Value {
    all.iter().find(|t| t["name"] == name).unwrap()
}

#[tokio::test]
async fn templates_are_listed_with_their_channels_and_created() {
    let w = start().await;
    let r = w.send(Method::GET, "/api/templates", &[], "").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    let alice = w.login("alice@example.com").await;
    let all = templates(&w, &alice).await;
    let names: Vec<&str> = all.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "pool controller",
            "three-phase energy meter (SDM630)",
            "single-phase meter",
            "temperature transmitter"
        ]
    );
    let pool = named(&all, "pool controller");
    assert_eq!(pool["builtin"], true);
    assert_eq!(pool["site_id"], Value::Null);
    // PROTOCOL.md 17.2's factory map.
    assert!(pool["map"].as_str().unwrap().starts_with("010005020100"));
    assert_eq!(
        pool["roles"],
        json!({"water": 2, "air": 3, "power": 0, "energy": 1, "pump": 0, "heater": 1})
    );
    assert_eq!(
        pool["channels"][2],
        json!({"index": 2, "name": "Water temperature", "kind": "temperature", "unit_code": 3,
               "unit": "°C", "exponent": -2, "decimals": 2})
    );
    let kinds: Vec<&str> = pool["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["power", "energy", "temperature", "temperature", "state"]
    );
    let sdm630 = named(&all, "three-phase energy meter (SDM630)");
    assert_eq!(sdm630["channels"].as_array().unwrap().len(), 14);
    assert_eq!(sdm630["channels"][11]["unit"], "Wh");

    // Alice makes one for her site from the single-phase meter's map.
    let meter = named(&all, "single-phase meter");
    let map = meter["map"].as_str().unwrap().to_owned();
    let channels = |kind: &str| {
        json!([
            {"name": "Voltage", "kind": "other", "decimals": 1},
            {"name": "Current", "kind": "other", "decimals": 2},
            {"name": "Heat pump", "kind": kind},
            {"name": "Frequency", "kind": "other", "decimals": 2},
            {"name": "Import", "kind": "energy"},
            {"name": "Export", "kind": "energy"},
            {"name": "Total", "kind": "energy"}
        ])
    };
    let body = |name: &str, map: &str, kind: &str, site: Value| {
        json!({"name": name, "site_id": site, "map": map, "channels": channels(kind),
               "roles": {"water": null, "air": null, "power": 2, "energy": 4, "pump": 0,
                         "heater": 1}})
        .to_string()
    };
    let site_a = json!(w.site_a);
    let r = w
        .api(
            Method::POST,
            "/api/templates",
            &alice,
            &body("Heat pump meter", &map, "power", site_a.clone()),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let made: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(made["builtin"], false);
    assert_eq!(made["site_id"], site_a);
    assert_eq!(made["channels"][2]["name"], "Heat pump");
    assert_eq!(made["channels"][2]["unit"], "W");
    assert_eq!(made["roles"]["energy"], 4);
    let all = templates(&w, &alice).await;
    assert_eq!(all.len(), 5);
    assert_eq!(named(&all, "Heat pump meter"), &made);
    // Bob (site B) does not see site A's template; the admin does.
    assert_eq!(
        templates(&w, &w.login("bob@example.com").await).await.len(),
        4
    );
    assert_eq!(
        templates(&w, &w.login("admin@example.com").await)
            .await
            .len(),
        5
    );

    // Refused, nothing saved: each error names the channel and the field.
    let mut bad_map = map.clone();
    bad_map.replace_range(20..22, "00"); // channel 0's slave
    let refusals = [
        (
            body("Bad", &bad_map, "power", site_a.clone()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "channel 0: slave 0 outside 1..=247 (channel \\\"Voltage\\\")",
        ),
        (
            body("Bad", &map, "heat", site_a.clone()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "channel 2 (\\\"Heat pump\\\"): kind: \\\"heat\\\" is none of",
        ),
        (
            body("Bad", &map[..map.len() - 2], "power", site_a.clone()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "channel map: truncated",
        ),
        (
            body("Bad", "0g", "power", site_a.clone()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "map: byte 0 is not hex",
        ),
        (
            body("Heat pump meter", &map, "power", site_a.clone()),
            StatusCode::CONFLICT,
            "template Heat pump meter already exists",
        ),
        // Templates for every site are the administrators'.
        (
            body("Bad", &map, "power", Value::Null),
            StatusCode::FORBIDDEN,
            "",
        ),
        (
            body("Bad", &map, "power", json!(w.site_b)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "does not exist",
        ),
        (
            r#"{"name": "Bad"}"#.to_owned(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "",
        ),
    ];
    for (b, status, message) in refusals {
        let r = w.api(Method::POST, "/api/templates", &alice, &b).await;
        assert_eq!(r.status, status, "{b}: {}", r.body);
        assert!(r.body.contains(message), "{b}: {}", r.body);
    }
    assert_eq!(templates(&w, &alice).await.len(), 5);

    // One template with the caller's devices that use it: every device starts with the pool
    // controller's map; Alice sees her site's (1, 2), the admin all four.
    let pool_id = pool["id"].as_i64().unwrap();
    let r = w
        .api(
            Method::GET,
            &format!("/api/templates/{pool_id}"),
            &alice,
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let detail: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(detail["devices"], json!([1, 2]));
    assert_eq!(detail["name"], "pool controller");
    assert_eq!(detail["channels"], pool["channels"]);
    let admin = w.login("admin@example.com").await;
    let r = w
        .api(
            Method::GET,
            &format!("/api/templates/{pool_id}"),
            &admin,
            "",
        )
        .await;
    assert_eq!(
        serde_json::from_str::<Value>(&r.body).unwrap()["devices"],
        json!([1, 2, 3, 4])
    );
    let mine = format!("/api/templates/{}", made["id"]);
    let r = w.api(Method::GET, &mine, &alice, "").await;
    assert_eq!(
        serde_json::from_str::<Value>(&r.body).unwrap()["devices"],
        json!([])
    );
    // Another site's template is not found, like one that does not exist.
    let bob = w.login("bob@example.com").await;
    assert_eq!(
        w.api(Method::GET, &mine, &bob, "").await.status,
        StatusCode::NOT_FOUND
    );
    let r = w.api(Method::GET, "/api/templates/999", &alice, "").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // A cookie without its CSRF token changes nothing; the creation was audited.
    let r = w
        .send(
            Method::POST,
            "/api/templates",
            &[
                ("cookie", alice.cookie.as_str()),
                ("content-type", "application/json"),
            ],
            &body("No CSRF", &map, "power", site_a.clone()),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(templates(&w, &alice).await.len(), 5);
    let audit = w.api(Method::GET, "/api/audit", &alice, "").await;
    assert!(
        audit.body.contains("template.create") && audit.body.contains("Heat pump meter"),
        "{}",
        audit.body
    );
}

/// The template pages (issue 18 point 3, viewing): `/templates` lists what the API lists with
/// owner, kinds and the user's controllers; `/templates/{id}` shows each channel's source in
/// words, the roles and the user's controllers; another site's template and an unknown id are
/// the UI's 404 page.
#[tokio::test]
async fn template_pages_list_and_show_templates() {
    let w = start().await;
    let r = w.get("/templates", None).await;
    assert_eq!(
        r.status,
        StatusCode::SEE_OTHER,
        "signed out: to the login form"
    );
    let alice = w.login("alice@example.com").await;
    let meter_map = named(&templates(&w, &alice).await, "single-phase meter")["map"]
        .as_str()
        .unwrap()
        .to_owned();
    let mine = json!({"name": "Alice <meter>", "site_id": w.site_a, "map": meter_map,
        "channels": [
            {"name": "Voltage", "kind": "other"}, {"name": "Current", "kind": "other"},
            {"name": "Power", "kind": "power"}, {"name": "Frequency", "kind": "other"},
            {"name": "Import", "kind": "energy"}, {"name": "Export", "kind": "energy"},
            {"name": "Total", "kind": "energy"}]});
    let r = w
        .api(Method::POST, "/api/templates", &alice, &mine.to_string())
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let mine_id = serde_json::from_str::<Value>(&r.body).unwrap()["id"]
        .as_i64()
        .unwrap();

    let list = w.get("/templates", Some(&alice)).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    let b = &list.body;
    assert!(
        b.contains("href=\"/templates\" class=\"active\""),
        "in the navigation"
    );
    let row = |id: i64| {
        let r = b
            .split(&format!("data-template=\"{id}\""))
            .nth(1)
            .unwrap_or_else(|| panic!("template {id} missing: {b}"));
        r[..r.find("</tr>").unwrap()].to_owned()
    };
    // The pool controller (id 1): built in, 5 channels, Alice's two controllers use it.
    let pool = row(1);
    assert!(pool.contains("built in") && pool.contains(">5<"), "{pool}");
    assert!(
        pool.contains("1 power, 1 energy, 2 temperature, 1 state"),
        "{pool}"
    );
    assert!(pool.contains("data-field=\"devices\">2<"), "{pool}");
    assert!(row(2).contains("4 power, 3 energy, 7 other"), "{}", row(2));
    let own = row(mine_id);
    assert!(
        own.contains("Alice &lt;meter&gt;") && own.contains("Site A"),
        "escaped, with its site: {own}"
    );
    assert!(own.contains("data-field=\"devices\">0<"), "{own}");

    // A meter: every channel's source in words, its bus, its roles.
    let meter = w.get("/templates/2", Some(&alice)).await;
    assert_eq!(meter.status, StatusCode::OK, "{}", meter.body);
    let m = &meter.body;
    assert!(m.contains("three-phase energy meter (SDM630)"));
    assert!(
        m.contains(
            "Modbus: bus 0 (9600 8N2, 500 ms), slave 1, input register 52, f32 high word first"
        ),
        "{m}"
    );
    assert!(m.contains("input register 72, f32 high word first, × 1000"));
    assert!(m.contains("bus 0: 9600 8N2, 500 ms"));
    assert!(m.contains("channel 9 (Power)") && m.contains("channel 11 (Import energy)"));
    assert!(
        m.contains("id=\"no-devices\""),
        "Alice's controllers run the pool map"
    );
    // The pool controller: board inputs, and Alice's controllers linked (not Bob's).
    let p = w.get("/templates/1", Some(&alice)).await.body;
    assert!(p.contains("board input 2") && p.contains("channel 2 (Water temperature)"));
    assert!(p.contains("href=\"/devices/1\"") && p.contains("href=\"/devices/2\""));
    assert!(!p.contains("href=\"/devices/3\""), "{p}");

    // Bob: Alice's template is not found, as an id that does not exist; both are the UI's page.
    let bob = w.login("bob@example.com").await;
    for (path, s) in [
        (format!("/templates/{mine_id}"), &bob),
        ("/templates/999".to_owned(), &alice),
    ] {
        let r = w.get(&path, Some(s)).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert!(r.body.contains("<h1>Not found</h1>"), "{path}: {}", r.body);
    }
    assert!(!w
        .get("/templates", Some(&bob))
        .await
        .body
        .contains(&format!("data-template=\"{mine_id}\"")));
    let admin = w.login("admin@example.com").await;
    let r = w.get(&format!("/templates/{mine_id}"), Some(&admin)).await;
    assert_eq!(r.status, StatusCode::OK);
}
