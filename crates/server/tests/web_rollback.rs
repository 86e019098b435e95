//! Issue 19 point 7, the reason: after a rollback the Configure page says why — the protocol's
//! one cause of a rollback (docs/PROTOCOL.md 10.8: the version's network settings reached no
//! server within its rollback delay; the ConfigAck itself carries no reason code) with the
//! network settings the rolled-back version changed against the running one — and keeps the
//! button that resets the form to the running values.

mod web_common;

use hyper::StatusCode;
use tek_proto::message::status::{Radio, Traffic, Transport};
use tek_proto::message::{ConfigResult, Status};
use tek_server::storage::{ConfigStore, StatusStore};
use web_common::*;

fn running(version: u32) -> Status {
    Status {
        transport: Transport::Ethernet,
        flags: 0,
        ip: [192, 168, 1, 20],
        netmask: [255, 255, 255, 0],
        gateway: [192, 168, 1, 1],
        dns: [192, 168, 1, 1],
        uptime_s: 100,
        firmware: [1, 0, 0],
        config_version: version,
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
    }
}

#[tokio::test]
async fn a_rollback_says_why_and_offers_the_running_values() {
    let w = start().await;
    let alice = w.login("alice@example.com").await;
    for form in [
        "log_interval=30&eth_ip=&gsm_apn=internet&servers=a.example",
        // v2: a fixed address and another server.
        "log_interval=30&eth_ip=10.9.8.7&eth_netmask=255.255.255.0&eth_gateway=10.9.8.1&eth_dns=10.9.8.1&gsm_apn=internet&servers=b.example",
    ] {
        let r = w.post_form("/devices/1/configure", &alice, form).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    }
    let db = tek_server::storage::sqlite::Sqlite::open_dir(w._dir.path()).unwrap();
    db.config_acked(1, 1, ConfigResult::Applied, 100).unwrap();
    // Before the rollback: nothing to explain.
    let page = w.get("/devices/1/configure", Some(&alice)).await;
    assert!(!page.body.contains("id=\"rollback-why\""));
    db.config_acked(1, 2, ConfigResult::RolledBack, 200)
        .unwrap();
    db.store_status(1, &running(1), 210).unwrap();
    let page = w.get("/devices/1/configure", Some(&alice)).await;
    let b = &page.body;
    assert!(b.contains("id=\"rollback-why\""), "{b}");
    assert!(
        b.contains("no server accepted a session with it within 900 s"),
        "{b}"
    );
    for line in [
        "Ethernet: fixed 10.9.8.7 netmask 255.255.255.0 gateway 10.9.8.1 DNS 10.9.8.1 (runs: DHCP)",
        "servers: b.example (runs: a.example)",
    ] {
        assert!(b.contains(line), "{line} in {b}");
    }
    // Unchanged settings are not blamed.
    assert!(!b.contains("GSM APN:"), "{b}");
    // The reset button, and what it gives.
    assert!(
        b.contains("href=\"/devices/1/configure?from_version=1\""),
        "{b}"
    );
    let reset = w
        .get("/devices/1/configure?from_version=1", Some(&alice))
        .await;
    assert!(reset.body.contains("The form shows v1"));
    assert!(
        reset.body.contains("name=\"servers\"") && reset.body.contains("a.example"),
        "{}",
        reset.body
    );
    assert!(!reset.body.contains("10.9.8.7"), "{}", reset.body);
}
