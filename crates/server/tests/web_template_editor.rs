//! The channel editor (`/templates/new`, `/templates/{id}/edit`, `/templates/check`,
//! `/templates/{id}/delete`; web/template_editor.rs): a bad field comes back next to its channel
//! row and field with the input kept and nothing saved; a good form is saved and redirects; an
//! edit offers the apply form with the controllers that use the template ticked; only the users
//! the service allows see the forms.

mod web_common;

use hyper::{Method, StatusCode};
use serde_json::Value;
use web_common::*;

const L1: &str = "three-phase energy meter (SDM630)/Power L1";

fn enc(s: &str) -> String {
    serde_urlencoded::to_string([("v", s)]).unwrap()[2..].to_owned()
}

/// A form of two channels: `Pump power` (the SDM630's L1 power at address 2) and `Double`
/// computed by `expression`.
fn form(name: &str, slave: &str, expression: &str, action: &str) -> String {
    [
        ("action", action),
        ("name", name),
        ("site", "1"),
        ("bus_baud", "9600"),
        ("bus_parity", "none"),
        ("bus_timeout", "500"),
        ("rows", "2"),
        ("c0_name", "Pump power"),
        ("c0_kind", "power"),
        ("c0_decimals", "0"),
        ("c0_source", "preset"),
        ("c0_preset", L1),
        ("c0_slave", slave),
        ("c1_name", "Double"),
        ("c1_kind", "power"),
        ("c1_decimals", "1"),
        ("c1_source", "expression"),
        ("c1_expression", expression),
        ("c1_unit", "W"),
        ("c1_exponent", "0"),
        ("c1_mul", "1"),
        ("c1_div", "1"),
        ("c1_offset", "0"),
    ]
    .iter()
    .map(|(k, v)| format!("{k}={}", enc(v)))
    .collect::<Vec<_>>()
    .join("&")
}

async fn names(w: &Web, s: &Session) -> Vec<String> {
    let r = w.api(Method::GET, "/api/templates", s, "").await;
    let v: Value = serde_json::from_str(&r.body).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn bad_input_is_shown_per_channel_and_field_and_nothing_is_saved() {
    let w = start().await;
    let alice = w.login("alice@example.com").await;
    let before = names(&w, &alice).await;
    let page = w.get("/templates", Some(&alice)).await;
    assert!(
        page.body.contains("href=\"/templates/new\""),
        "{}",
        page.body
    );
    let page = w.get("/templates/new", Some(&alice)).await;
    assert_eq!(page.status, StatusCode::OK);
    // A site member gives their site, never "every site" (the administrators').
    assert!(page.body.contains("Site A") && !page.body.contains("every site"));
    assert!(page.body.contains(L1), "the meter quantities are offered");

    // A bad expression: its error under channel 1's expression, the input kept.
    let r = w
        .post_form(
            "/templates/new",
            &alice,
            &form("Pump meter", "2", "\"Pump power\" * (2", "save"),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(r.body.contains("id=\"c1_expression-error\""), "{}", r.body);
    assert!(
        r.body.contains("expected &#39;)&#39;") || r.body.contains("expected ')'"),
        "{}",
        r.body
    );
    assert!(
        r.body.contains("value=\"&quot;Pump power&quot; * (2\""),
        "input kept: {}",
        r.body
    );
    assert!(r.body.contains("Nothing was saved"));
    // A meter address out of range: under channel 0's address.
    let r = w
        .post_form(
            "/templates/new",
            &alice,
            &form("Pump meter", "0", "\"Pump power\" * 2", "save"),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        r.body.contains("id=\"c0_slave-error\">0 outside 1..=247<"),
        "{}",
        r.body
    );
    // Several problems at once: each is shown next to its own row and field.
    let r = w
        .post_form(
            "/templates/new",
            &alice,
            &form("", "0", "\"Pump power\" * (2", "save"),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    for id in ["name-error", "c0_slave-error", "c1_expression-error"] {
        assert!(r.body.contains(&format!("id=\"{id}\"")), "{id}: {}", r.body);
    }
    assert!(r.body.contains("3 problem(s)"), "{}", r.body);
    let r = w
        .post_form(
            "/templates/new",
            &alice,
            &form("Pump meter", "two", "(", "save"),
        )
        .await;
    assert!(
        r.body.contains("id=\"c0_slave-error\"") && r.body.contains("id=\"c1_expression-error\"")
    );
    // Not a number at all.
    let r = w
        .post_form(
            "/templates/new",
            &alice,
            &form("Pump meter", "two", "\"Pump power\" * 2", "save"),
        )
        .await;
    assert!(
        r.body
            .contains("id=\"c0_slave-error\">&quot;two&quot; is not a whole number<"),
        "{}",
        r.body
    );
    // A channel referring to one that does not exist.
    let r = w
        .post_form(
            "/templates/new",
            &alice,
            &form("Pump meter", "2", "\"Nope\" + 1", "save"),
        )
        .await;
    assert!(r.body.contains("id=\"c1_expression-error\""), "{}", r.body);
    // The name of a built-in template.
    let r = w
        .post_form(
            "/templates/new",
            &alice,
            &form("pool controller", "2", "#0 * 2", "save"),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(r.body.contains("id=\"name-error\""), "{}", r.body);
    assert_eq!(names(&w, &alice).await, before, "nothing was saved");

    // The check endpoint answers the same errors by field, saving nothing.
    let r = w
        .post_form(
            "/templates/check",
            &alice,
            &form("Pump meter", "2", "#1 + 1", "check"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["errors"][0]["field"], "c1_expression", "{v}");
    let r = w
        .post_form(
            "/templates/check",
            &alice,
            &form("Pump meter", "2", "#0 + 1", "check"),
        )
        .await;
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["errors"], serde_json::json!([]));
    // Without the CSRF token, refused.
    let r = w
        .send(
            Method::POST,
            "/templates/check",
            &[
                ("cookie", alice.cookie.as_str()),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            &form("x", "2", "#0", "check"),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(names(&w, &alice).await, before);
}

#[tokio::test]
async fn rows_are_added_removed_and_moved_without_saving() {
    let w = start().await;
    let alice = w.login("alice@example.com").await;
    let r = w
        .post_form(
            "/templates/new",
            &alice,
            &form("Rows", "2", "#0 * 2", "add"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("name=\"rows\" value=\"3\""), "{}", r.body);
    assert!(r.body.contains("name=\"c2_name\""));
    let r = w
        .post_form(
            "/templates/new",
            &alice,
            &form("Rows", "2", "#0 * 2", "down-0"),
        )
        .await;
    let first = r.body.find("value=\"Double\"").unwrap();
    let second = r.body.find("value=\"Pump power\"").unwrap();
    assert!(first < second, "Double moved up");
    let r = w
        .post_form(
            "/templates/new",
            &alice,
            &form("Rows", "2", "#0 * 2", "remove-0"),
        )
        .await;
    assert!(
        r.body.contains("name=\"rows\" value=\"1\"") && !r.body.contains("value=\"Pump power\"")
    );
    // A button the form does not have saves nothing.
    let r = w
        .post_form(
            "/templates/new",
            &alice,
            &form("Rows", "2", "#0 * 2", "remove-x"),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(!names(&w, &alice).await.contains(&"Rows".to_owned()));
}

#[tokio::test]
async fn a_template_is_created_edited_pushed_and_deleted() {
    let w = start().await;
    let alice = w.login("alice@example.com").await;
    let bob = w.login("bob@example.com").await;
    let r = w
        .post_form(
            "/templates/new",
            &alice,
            &form("Pump meter", "2", "\"Pump power\" * 2", "save"),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let to = r.header("location").to_owned();
    assert!(
        to.starts_with("/templates/") && to.contains("ok=Created"),
        "{to}"
    );
    let id: i64 = to["/templates/".len()..]
        .split('?')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let t = w
        .api(Method::GET, &format!("/api/templates/{id}"), &alice, "")
        .await;
    let t: Value = serde_json::from_str(&t.body).unwrap();
    assert_eq!(t["site_id"], w.site_a);
    assert_eq!(t["channels"][0]["source"]["modbus"]["slave"], 2);
    assert_eq!(t["channels"][0]["source"]["modbus"]["register"], 12);
    assert_eq!(t["channels"][0]["unit"], "W");
    assert_eq!(
        t["channels"][1]["source"]["expression"],
        "\"Pump power\" * 2"
    );
    assert_eq!(t["buses"][0]["baud"], 9600);

    // Its page offers Edit and Delete; the edit form shows the meter quantity again.
    let page = w.get(&to, Some(&alice)).await;
    assert!(page.body.contains("id=\"edit-template\""), "{}", page.body);
    let edit = w.get(&format!("/templates/{id}/edit"), Some(&alice)).await;
    assert_eq!(edit.status, StatusCode::OK);
    assert!(
        edit.body.contains(&format!("value=\"{L1}\" selected")),
        "{}",
        edit.body
    );
    // Bob (another site) does not see it; nobody edits a built-in one.
    let r = w.get(&format!("/templates/{id}/edit"), Some(&bob)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = w
        .post_form(
            &format!("/templates/{id}/edit"),
            &bob,
            &form("Mine", "2", "#0", "save"),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = w.get("/templates/1/edit", Some(&alice)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(!w
        .get("/templates/1", Some(&alice))
        .await
        .body
        .contains("id=\"edit-template\""));

    // Device 1 runs it; after an edit its page ticks device 1 (and not 2) to push to.
    let r = w
        .api(
            Method::POST,
            &format!("/api/templates/{id}/apply"),
            &alice,
            r#"{"devices":[1]}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = w
        .post_form(
            &format!("/templates/{id}/edit"),
            &alice,
            &form("Pump meter 2", "3", "\"Pump power\" * 3", "save"),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let to = r.header("location").to_owned();
    assert!(to.contains("push=1"), "{to}");
    let page = w.get(&to, Some(&alice)).await;
    assert!(page.body.contains("Saved Pump meter 2"), "{}", page.body);
    assert!(
        page.body.contains("name=\"sel_1\" checked"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("name=\"sel_2\" checked"));
    let t = w
        .api(Method::GET, &format!("/api/templates/{id}"), &alice, "")
        .await;
    let t: Value = serde_json::from_str(&t.body).unwrap();
    assert_eq!(t["channels"][0]["source"]["modbus"]["slave"], 3);
    // A bad edit keeps the stored one.
    let r = w
        .post_form(
            &format!("/templates/{id}/edit"),
            &alice,
            &form("Pump meter 2", "3", "(", "save"),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let again = w
        .api(Method::GET, &format!("/api/templates/{id}"), &alice, "")
        .await;
    assert_eq!(serde_json::from_str::<Value>(&again.body).unwrap(), t);

    // A template made through the API with two buses is not shown in the one-bus form (a save
    // would drop the second bus and its channels).
    let bus = r#"{"baud":9600,"parity":"none","timeout_ms":500}"#;
    let two = format!(
        r#"{{"name":"Two buses","site_id":{},"buses":[{bus},{bus}],"channels":[{{"name":"a",
        "kind":"power","unit":"W","source":{{"modbus":{{"bus":1,"slave":1,"function":4,
        "register":0,"type":"u16"}}}}}}]}}"#,
        w.site_a
    );
    let r = w.api(Method::POST, "/api/templates", &alice, &two).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let two_id = serde_json::from_str::<Value>(&r.body).unwrap()["id"]
        .as_i64()
        .unwrap();
    let r = w
        .get(&format!("/templates/{two_id}/edit"), Some(&alice))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(r.body.contains("has 2 serial buses"), "{}", r.body);
    let r = w
        .post_form(
            &format!("/templates/{two_id}/edit"),
            &alice,
            &form("Two buses", "1", "#0", "save"),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);

    // Delete asks first, then deletes.
    let ask = w
        .get(&format!("/templates/{id}/delete"), Some(&alice))
        .await;
    assert!(
        ask.body.contains("1 of your controllers use it"),
        "{}",
        ask.body
    );
    let r = w
        .post_form(&format!("/templates/{id}/delete"), &bob, "")
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = w
        .post_form(&format!("/templates/{id}/delete"), &alice, "")
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(r.header("location").starts_with("/templates?ok=Deleted"));
    assert!(!names(&w, &alice).await.contains(&"Pump meter 2".to_owned()));
}
