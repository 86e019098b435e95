//! Channel-map templates over the JSON API (issue 18, docs/API.md "Channel templates"):
//! `GET /api/templates` lists the built-in templates and the caller's own, each with its
//! channels; `GET /api/templates/{id}` shows one with the caller's devices that use it;
//! `POST /api/templates` creates one (from a hex map or from structured channel sources with
//! expressions as text), and refuses a bad one naming the channel and the field, saving
//! nothing; `PUT` and `DELETE /api/templates/{id}` change and delete user templates.

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
               "unit": "°C", "exponent": -2, "decimals": 2, "source": {"input": 2},
               "mul": 1, "div": 1, "offset": 0})
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

/// A structured template: two Modbus power channels on one bus, their sum as an expression by
/// name, and an energy counter's rate.
fn structured(name: &str, site: Value, sum: &str) -> Value {
    let modbus = |register: i64| {
        json!({"modbus": {"bus": 0, "slave": 1, "function": 4, "register": register,
                          "type": "f32", "word_order": "high_first"}})
    };
    json!({
        "name": name,
        "site_id": site,
        "buses": [{"baud": 9600, "parity": "none", "timeout_ms": 500}],
        "channels": [
            {"name": "Power L1", "kind": "power", "unit": "W", "source": modbus(12)},
            {"name": "Power L2", "kind": "power", "unit": "W", "source": modbus(14)},
            {"name": "Energy", "kind": "energy", "unit": "Wh", "source": modbus(342),
             "mul": 1000, "div": 1},
            {"name": "Power", "kind": "power", "unit": "W", "decimals": 0, "exponent": 0,
             "source": {"expression": sum}, "mul": 1, "div": 1, "offset": 0},
            {"name": "Hourly", "kind": "other", "unit": "Wh",
             "source": {"expression": "rate(ch2)"}}
        ],
        "roles": {"water": null, "air": null, "power": "Power", "energy": "Energy",
                  "pump": 0, "heater": 1}
    })
}

#[tokio::test]
async fn structured_templates_are_built_checked_changed_and_deleted() {
    let w = start().await;
    let alice = w.login("alice@example.com").await;
    let site_a = json!(w.site_a);
    let body = structured("Two phases", site_a.clone(), "\"Power L1\" + #1");
    let r = w
        .api(Method::POST, "/api/templates", &alice, &body.to_string())
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let made: Value = serde_json::from_str(&r.body).unwrap();
    // The map is built per PROTOCOL.md 17.2: format 1, one bus, five channels; bus 9600 8N2.
    assert!(
        made["map"].as_str().unwrap().starts_with("0101050000"),
        "{made}"
    );
    assert_eq!(
        made["buses"],
        json!([{"baud": 9600, "parity": "none", "timeout_ms": 500}])
    );
    assert_eq!(made["channels"][0]["source"], body["channels"][0]["source"]);
    assert_eq!(made["channels"][2]["mul"], 1000);
    // Expressions come back as decompiled text, channels by name.
    assert_eq!(
        made["channels"][3]["source"],
        json!({"expression": "\"Power L1\" + \"Power L2\""})
    );
    assert_eq!(
        made["channels"][4]["source"],
        json!({"expression": "rate(\"Energy\")"})
    );
    assert_eq!(made["roles"]["power"], 3);
    assert_eq!(made["roles"]["energy"], 2);
    let id = made["id"].as_i64().unwrap();
    let one = format!("/api/templates/{id}");
    let r = w.api(Method::GET, &one, &alice, "").await;
    let got: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(got["channels"], made["channels"]);
    // The hex form of the same map makes the same template.
    let hex = json!({"name": "Two phases (hex)", "site_id": site_a, "map": made["map"],
                     "channels": [{"name": "Power L1", "kind": "power"},
                                  {"name": "Power L2", "kind": "power"},
                                  {"name": "Energy", "kind": "energy"},
                                  {"name": "Power", "kind": "power"},
                                  {"name": "Hourly", "kind": "other"}]});
    let r = w
        .api(Method::POST, "/api/templates", &alice, &hex.to_string())
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let twin: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(twin["channels"], made["channels"]);
    let count = templates(&w, &alice).await.len();

    // Refused, nothing saved: every error names the channel (index and name) and the field.
    let with = |f: &dyn Fn(&mut Value)| {
        let mut b = structured("Bad", site_a.clone(), "#0 + #1");
        f(&mut b);
        b.to_string()
    };
    let refusals = [
        (
            with(&|b| b["channels"][3]["source"] = json!({"expression": "min(#0, #1"})),
            "channel 3 (\\\"Power\\\"): source.expression: expected ')', found the end at 10",
        ),
        (
            with(&|b| b["channels"][3]["source"] = json!({"expression": "\"Power L3\" * 2"})),
            "channel 3 (\\\"Power\\\"): source.expression: no channel is named \\\"Power L3\\\" at 0",
        ),
        (
            with(&|b| b["channels"][3]["source"] = json!({"expression": "#0 + #3"})),
            "channel 3 (\\\"Power\\\"): source.expression: #3 (channel 3) is this channel itself at 5",
        ),
        (
            with(&|b| b["channels"][3]["source"] = json!({"expression": "#0 + #4"})),
            "source.expression: #4 (channel 4) is a computed channel after this one",
        ),
        (
            with(&|b| b["channels"][1]["source"]["modbus"]["slave"] = json!(0)),
            "channel 1 (\\\"Power L2\\\"): source.modbus.slave: 0 outside 1..=247",
        ),
        (
            with(&|b| b["channels"][1]["source"]["modbus"]["register"] = json!(65535)),
            "channel 1 (\\\"Power L2\\\"): source.modbus.register: 65535 and the next register of f32 pass 65535",
        ),
        (
            with(&|b| b["channels"][2]["div"] = json!(0)),
            "channel 2 (\\\"Energy\\\"): div: 0 outside 1..=65535",
        ),
        (
            with(&|b| b["channels"][0]["unit"] = json!("kW")),
            "channel 0 (\\\"Power L1\\\"): unit: \\\"kW\\\" is none of",
        ),
        (
            with(&|b| b["roles"]["power"] = json!("Power L9")),
            "roles: power: no channel is named \\\"Power L9\\\"",
        ),
        (
            with(&|b| b["channels"][0]["source"] = Value::Null),
            "channel 0 (\\\"Power L1\\\"): source: required",
        ),
        (
            with(&|b| b["buses"][0]["timeout_ms"] = json!(10)),
            "bus 0: timeout_ms: 10 outside 50..=2000",
        ),
    ];
    for (b, message) in refusals {
        let r = w.api(Method::POST, "/api/templates", &alice, &b).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{b}: {}",
            r.body
        );
        assert!(r.body.contains(message), "{b}: {}", r.body);
    }
    assert_eq!(templates(&w, &alice).await.len(), count);

    // The check an editor calls before saving: the same answers, nothing saved.
    let draft = structured("Draft", site_a.clone(), "#0 * 2");
    let r = w
        .api(
            Method::POST,
            "/api/templates/check",
            &alice,
            &draft.to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let checked: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(
        checked["channels"][3]["source"],
        json!({"expression": "\"Power L1\" * 2"})
    );
    assert!(checked["map"].as_str().unwrap().starts_with("010105"));
    let bad = with(&|b| b["channels"][3]["source"] = json!({"expression": "#0 * (2"}));
    let r = w
        .api(Method::POST, "/api/templates/check", &alice, &bad)
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(
        r.body
            .contains("source.expression: expected ')', found the end at 7"),
        "{}",
        r.body
    );
    assert_eq!(templates(&w, &alice).await.len(), count);

    // PUT replaces it (bad input changes nothing); the built-in ones are refused.
    let r = w
        .api(Method::PUT, &one, &alice, &with(&|b| b["div"] = json!(1)))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    let changed = structured("Two phases", site_a.clone(), "max(#0, #1) * 2");
    let r = w.api(Method::PUT, &one, &alice, &changed.to_string()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let put: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(
        put["channels"][3]["source"],
        json!({"expression": "max(\"Power L1\", \"Power L2\") * 2"})
    );
    let bad = with(&|b| b["channels"][3]["source"] = json!({"expression": "#0 +"}));
    let r = w.api(Method::PUT, &one, &alice, &bad).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    let r = w.api(Method::GET, &one, &alice, "").await;
    let got: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(got["channels"], put["channels"]);
    let all = templates(&w, &alice).await;
    let pool = format!("/api/templates/{}", named(&all, "pool controller")["id"]);
    let admin = w.login("admin@example.com").await;
    let r = w
        .api(Method::PUT, &pool, &admin, &changed.to_string())
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(
        w.api(Method::DELETE, &pool, &admin, "").await.status,
        StatusCode::FORBIDDEN
    );
    // Bob (site B) cannot see, change or delete site A's template.
    let bob = w.login("bob@example.com").await;
    assert_eq!(
        w.api(Method::PUT, &one, &bob, &changed.to_string())
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        w.api(Method::DELETE, &one, &bob, "").await.status,
        StatusCode::NOT_FOUND
    );

    // DELETE removes it; both changes were audited.
    let r = w.api(Method::DELETE, &one, &alice, "").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert_eq!(
        w.api(Method::GET, &one, &alice, "").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(templates(&w, &alice).await.len(), count - 1);
    let audit = w.api(Method::GET, "/api/audit", &alice, "").await;
    assert!(
        audit.body.contains("template.update") && audit.body.contains("template.delete"),
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
