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
