//! End-to-end tests over real UDP on 127.0.0.1: a test controller built on tek-proto talks to an
//! in-process server.

mod common;

use common::*;
use std::time::Duration;
use tek_proto::message::{Command, CommandResult, Config, ConfigResult, Message, RelayMode};
use tek_server::storage::{CommandState, ConfigState, TelemetryQuery};

#[tokio::test]
async fn session_setup_keepalive_and_endpoint() {
    let h = start(|_| {}).await;
    let mut d = h.device(1).await;
    let time = d.handshake().await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32;
    assert!(time.abs_diff(now) <= 2, "server time {time} vs {now}");

    d.send(&Message::Keepalive {
        reply_wanted: true,
        config_version: 0,
    })
    .await;
    assert_eq!(d.recv(WAIT).await, Some(Got::Pong));
    d.send(&Message::Keepalive {
        reply_wanted: false,
        config_version: 0,
    })
    .await;
    assert_eq!(d.recv(QUIET).await, None, "no reply unless wanted");

    let st = h.server.api().device_state(1).await.unwrap();
    assert!(st.online);
    assert_eq!(st.endpoint, Some(d.local_addr()));
    assert_eq!(st.boot, Some(1));

    // The endpoint follows the source of the last authenticated datagram (NAT, new port).
    let old = d.local_addr();
    d.new_port().await;
    d.send(&Message::Keepalive {
        reply_wanted: true,
        config_version: 0,
    })
    .await;
    assert_eq!(
        d.recv(WAIT).await,
        Some(Got::Pong),
        "Pong goes to the new port"
    );
    let st = h.server.api().device_state(1).await.unwrap();
    assert_eq!(st.endpoint, Some(d.local_addr()));
    assert_ne!(st.endpoint, Some(old));

    // A status is stored and shown.
    d.send(&Message::Status(common::TestDevice::status(0, 50)))
        .await;
    assert!(
        eventually(WAIT, async || h
            .server
            .api()
            .device_state(1)
            .await
            .unwrap()
            .status
            .is_some())
        .await
    );
    let traffic = h.server.api().traffic(1).await.unwrap();
    assert_eq!(traffic[0].eth_tx, 1000);
    assert_eq!(h.metric("tek_devices_online").await, 1.0);
    assert_eq!(h.metric("tek_sessions_established_total").await, 1.0);
    let (code, body) = http_get(h.server.http_addr(), "/healthz").await;
    assert_eq!((code, body.trim()), (200, "ok"));
    h.server.shutdown().await;
}

#[tokio::test]
async fn telemetry_is_acked_after_commit_and_stored_once() {
    let h = start(|_| {}).await;
    let mut d = h.device(2).await;
    d.handshake().await;
    let storage = h.storage();

    let first = d.send_telemetry(0, 5).await;
    assert_eq!(d.recv(WAIT).await, Some(Got::Ack { through_seq: 4 }));
    // The Ack came after the commit: the records are readable through another connection.
    assert_eq!(storage.telemetry_count(2).unwrap(), 5);

    // A retransmission (new counter, same records) is acked again and stored once.
    d.send_telemetry(0, 5).await;
    assert_eq!(d.recv(WAIT).await, Some(Got::Ack { through_seq: 4 }));
    // An overlapping batch stores only the new records.
    d.send_telemetry(3, 5).await;
    assert_eq!(d.recv(WAIT).await, Some(Got::Ack { through_seq: 7 }));
    assert_eq!(storage.telemetry_count(2).unwrap(), 8);
    assert_eq!(h.metric("tek_telemetry_records_stored_total").await, 8.0);

    // The very same datagram again is a replay: no Ack, nothing stored.
    d.send_raw(&first).await;
    assert_eq!(d.recv(QUIET).await, None);
    assert_eq!(h.drops("replay").await, 1.0);

    // Record times are arrival minus age; values round-trip.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let rows = h
        .server
        .api()
        .telemetry(TelemetryQuery {
            device_id: 2,
            from: 0,
            to: i64::MAX,
            limit: 100,
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), 8);
    assert_eq!(rows[0].seq, 0);
    assert_eq!(rows[0].boot, 1);
    assert_eq!(rows[0].values[0], 1000);
    let r4 = rows.iter().find(|r| r.seq == 4).unwrap();
    assert_eq!(r4.get(1), Some(5004));
    // In batch (0..5) record 4 was 10 s old and record 0 250 s old.
    assert!(
        (rows[0].time - (now - 250)).abs() <= 3,
        "{} vs {}",
        rows[0].time,
        now - 250
    );
    h.server.shutdown().await;
}

#[tokio::test]
async fn no_ack_when_the_commit_fails() {
    let h = start(|_| {}).await;
    let mut d = h.device(3).await;
    d.handshake().await;
    // Another connection takes the telemetry table away (as a damaged database would): the
    // ingest commit's check for records already stored fails before anything is appended to the
    // inbox's journal (storage/sqlite/inbox.rs), so nothing is durable and nothing is acked.
    let db = rusqlite::Connection::open(h.dir.path().join("tek.db")).unwrap();
    db.execute_batch("ALTER TABLE telemetry RENAME TO telemetry_away")
        .unwrap();
    d.send_telemetry(0, 3).await;
    assert_eq!(
        d.recv(QUIET).await,
        None,
        "nothing may be acked that was not stored"
    );
    assert!(h.metric("tek_storage_errors_total").await >= 1.0);
    // The device retransmits once storage works again, and then gets its Ack.
    db.execute_batch("ALTER TABLE telemetry_away RENAME TO telemetry")
        .unwrap();
    assert_eq!(h.storage().telemetry_count(3).unwrap(), 0);
    d.send_telemetry(0, 3).await;
    assert_eq!(d.recv(WAIT).await, Some(Got::Ack { through_seq: 2 }));
    assert_eq!(h.storage().telemetry_count(3).unwrap(), 3);
    h.server.shutdown().await;
}

/// The writer answers one batch while the next commits (writer.rs); an Ack must still leave only
/// once its own batch is committed. A's batch and B's after it meet a storage that fails (another
/// connection took the telemetry table away; a commit appends to the inbox's journal without any
/// SQLite lock another process could hold, so a storage that blocks cannot be made from outside
/// any more): no Ack for either, and every Ack that arrives once storage works finds its own
/// records already readable.
#[tokio::test]
async fn acks_leave_only_after_their_own_commit() {
    let h = start(|_| {}).await;
    let mut a = h.device(20).await;
    a.handshake().await;
    let mut b = h.device(21).await;
    b.handshake().await;
    let storage = h.storage();
    let db = rusqlite::Connection::open(h.dir.path().join("tek.db")).unwrap();
    db.execute_batch("ALTER TABLE telemetry RENAME TO telemetry_away")
        .unwrap();
    a.send_telemetry(0, 4).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    b.send_telemetry(0, 6).await;
    assert_eq!(a.recv(QUIET).await, None, "no Ack while its commit fails");
    assert_eq!(b.recv(QUIET).await, None, "no Ack before its commit");
    db.execute_batch("ALTER TABLE telemetry_away RENAME TO telemetry")
        .unwrap();
    assert_eq!(storage.telemetry_count(20).unwrap(), 0);
    assert_eq!(storage.telemetry_count(21).unwrap(), 0);
    // The devices retransmit.
    a.send_telemetry(0, 4).await;
    b.send_telemetry(0, 6).await;
    assert_eq!(a.recv(WAIT).await, Some(Got::Ack { through_seq: 3 }));
    assert_eq!(storage.telemetry_count(20).unwrap(), 4);
    assert_eq!(b.recv(WAIT).await, Some(Got::Ack { through_seq: 5 }));
    assert_eq!(storage.telemetry_count(21).unwrap(), 6);
    assert_eq!(h.metric("tek_acks_sent_total").await, 2.0);
    h.server.shutdown().await;
}

#[tokio::test]
async fn config_pushed_confirmed_and_synced() {
    let h = start(|_| {}).await;
    let api = h.server.api().clone();
    let mut d = h.device(4).await;
    d.handshake().await;
    d.send(&Message::Status(common::TestDevice::status(0, 10)))
        .await;

    let mut cfg = Config {
        log_interval_s: 30,
        ..Config::default()
    };
    let v = api.save_config(4, cfg.clone()).await.unwrap();
    assert_eq!(v, 1);
    // Pushed at once (well before the first re-send at 200 ms).
    let got = d.recv(Duration::from_millis(150)).await;
    assert_eq!(
        got,
        Some(Got::Config {
            version: 1,
            config: Box::new(cfg.clone())
        })
    );
    assert!(api.device_state(4).await.unwrap().config_pending());
    assert_eq!(h.metric("tek_config_pending").await, 1.0);
    // Re-sent until confirmed.
    assert!(matches!(
        d.recv(WAIT).await,
        Some(Got::Config { version: 1, .. })
    ));
    d.send(&Message::ConfigAck {
        version: 1,
        result: ConfigResult::Applied,
    })
    .await;
    assert!(
        eventually(WAIT, async || !api
            .device_state(4)
            .await
            .unwrap()
            .config_pending())
        .await
    );
    let st = api.device_state(4).await.unwrap();
    assert_eq!((st.device.config_desired, st.device.config_applied), (1, 1));
    assert_eq!(h.metric("tek_config_synced_total").await, 1.0);
    assert_eq!(h.metric("tek_config_pending").await, 0.0);
    // Re-sends stop (one may have been in flight).
    let _ = d.recv(Duration::from_millis(100)).await;
    assert_eq!(d.recv(Duration::from_millis(900)).await, None);

    // Invalid configurations are refused and not saved.
    let bad = Config {
        keepalive_s: 5,
        ..Config::default()
    };
    assert!(api.save_config(4, bad).await.is_err());
    assert_eq!(api.latest_config(4).await.unwrap().unwrap().version, 1);

    // A rolled-back version is not pushed again.
    cfg.log_interval_s = 40;
    assert_eq!(api.save_config(4, cfg).await.unwrap(), 2);
    assert!(matches!(
        d.recv(WAIT).await,
        Some(Got::Config { version: 2, .. })
    ));
    d.send(&Message::ConfigAck {
        version: 2,
        result: ConfigResult::RolledBack,
    })
    .await;
    assert!(
        eventually(WAIT, async || api
            .latest_config(4)
            .await
            .unwrap()
            .unwrap()
            .state
            == ConfigState::RolledBack)
        .await
    );
    let _ = d.recv(Duration::from_millis(100)).await;
    d.send(&Message::Keepalive {
        reply_wanted: false,
        config_version: 1,
    })
    .await;
    assert_eq!(
        d.recv(Duration::from_millis(900)).await,
        None,
        "rolled back: no push"
    );
    assert_eq!(
        api.device_state(4).await.unwrap().device.config_rolled_back,
        Some(2)
    );
    h.server.shutdown().await;
}

#[tokio::test]
async fn config_resends_stop_after_ten_per_session_and_resume_in_the_next() {
    let h = start(|c| {
        c.push.retry_initial_ms = 20;
        c.push.retry_max_ms = 20;
        c.push.tick_ms = 5;
    })
    .await;
    let api = h.server.api().clone();
    let mut d = h.device(6).await;
    d.handshake().await;
    d.send(&Message::Status(common::TestDevice::status(0, 10)))
        .await;
    api.save_config(6, Config::default()).await.unwrap();
    let mut configs = 0;
    while let Some(got) = d.recv(Duration::from_millis(500)).await {
        if matches!(got, Got::Config { version: 1, .. }) {
            configs += 1;
        }
    }
    assert_eq!(
        configs, 10,
        "a silent device costs at most 10 sends per session"
    );
    // A device reporting a *higher* version than the server's still gets the server's one.
    d.handshake().await;
    d.send(&Message::Keepalive {
        reply_wanted: false,
        config_version: 7,
    })
    .await;
    assert!(matches!(
        d.recv(WAIT).await,
        Some(Got::Config { version: 1, .. })
    ));
    h.server.shutdown().await;
}

#[tokio::test]
async fn synced_config_is_sent_again_to_a_device_that_lost_it() {
    let h = start(|_| {}).await;
    let api = h.server.api().clone();
    let mut d = h.device(12).await;
    d.handshake().await;
    d.send(&Message::Status(common::TestDevice::status(0, 10)))
        .await;
    api.save_config(12, Config::default()).await.unwrap();
    assert!(matches!(
        d.recv(WAIT).await,
        Some(Got::Config { version: 1, .. })
    ));
    d.send(&Message::ConfigAck {
        version: 1,
        result: ConfigResult::Applied,
    })
    .await;
    assert!(
        eventually(WAIT, async || !api
            .device_state(12)
            .await
            .unwrap()
            .config_pending())
        .await
    );
    let _ = d.recv(Duration::from_millis(100)).await;
    // Its flash was wiped: after a reboot it runs the factory configuration (version 0).
    d.handshake().await;
    d.send(&Message::Keepalive {
        reply_wanted: false,
        config_version: 0,
    })
    .await;
    assert!(matches!(
        d.recv(WAIT).await,
        Some(Got::Config { version: 1, .. })
    ));
    h.server.shutdown().await;
}

#[tokio::test]
async fn a_confirmation_that_cannot_be_stored_is_written_again_on_next_contact() {
    let h = start(|_| {}).await;
    let api = h.server.api().clone();
    let mut d = h.device(13).await;
    d.handshake().await;
    d.send(&Message::Status(common::TestDevice::status(0, 10)))
        .await;
    api.save_config(13, Config::default()).await.unwrap();
    assert!(matches!(
        d.recv(WAIT).await,
        Some(Got::Config { version: 1, .. })
    ));
    // The confirmation's write fails (as a full disk would).
    let db = rusqlite::Connection::open(h.dir.path().join("tek.db")).unwrap();
    db.execute_batch(
        "CREATE TRIGGER fail BEFORE UPDATE ON configs BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
    )
    .unwrap();
    d.send(&Message::ConfigAck {
        version: 1,
        result: ConfigResult::Applied,
    })
    .await;
    assert!(
        eventually(WAIT, async || h.metric("tek_storage_errors_total").await
            >= 1.0)
        .await
    );
    assert!(api.device_state(13).await.unwrap().config_pending());
    // Storage works again; the device's next keepalive reports version 1 and it is recorded.
    db.execute_batch("DROP TRIGGER fail").unwrap();
    d.send(&Message::Keepalive {
        reply_wanted: false,
        config_version: 1,
    })
    .await;
    assert!(
        eventually(WAIT, async || !api
            .device_state(13)
            .await
            .unwrap()
            .config_pending())
        .await
    );
    assert_eq!(
        api.latest_config(13).await.unwrap().unwrap().state,
        ConfigState::Applied
    );
    h.server.shutdown().await;
}

#[tokio::test]
async fn config_saved_while_offline_or_by_another_process_is_delivered() {
    let h = start(|_| {}).await;
    let api = h.server.api().clone();
    let mut d = h.device(5).await;
    d.handshake().await;
    d.send(&Message::Keepalive {
        reply_wanted: true,
        config_version: 0,
    })
    .await;
    assert_eq!(d.recv(WAIT).await, Some(Got::Pong));

    // Another process (the CLI) saves a version through its own connection: the server's
    // change-feed poll picks it up and pushes it.
    let other = tek_server::storage::sqlite::Sqlite::open_dir(h.dir.path()).unwrap();
    let mut cfg = Config {
        batch_s: 120,
        ..Config::default()
    };
    let v = tek_server::storage::ConfigStore::save_config(&other, 5, &cfg, 0).unwrap();
    assert_eq!(v, 1);
    assert!(matches!(
        d.recv(WAIT).await,
        Some(Got::Config { version: 1, .. })
    ));
    d.send(&Message::ConfigAck {
        version: 1,
        result: ConfigResult::Applied,
    })
    .await;
    assert!(
        eventually(WAIT, async || !api
            .device_state(5)
            .await
            .unwrap()
            .config_pending())
        .await
    );

    // The device goes away (no more datagrams); a version saved now waits for it.
    cfg.batch_s = 180;
    d.session = None;
    assert_eq!(api.save_config(5, cfg.clone()).await.unwrap(), 2);
    // Next contact: a new attempt from a new port, a new session, a keepalive showing v1.
    d.new_port().await;
    d.handshake().await;
    d.send(&Message::Keepalive {
        reply_wanted: false,
        config_version: 1,
    })
    .await;
    assert_eq!(
        d.recv_until(WAIT, |g| matches!(g, Got::Config { .. }))
            .await,
        Some(Got::Config {
            version: 2,
            config: Box::new(cfg)
        })
    );
    d.send(&Message::ConfigAck {
        version: 2,
        result: ConfigResult::AppliedAtReset,
    })
    .await;
    assert!(
        eventually(WAIT, async || api
            .device_state(5)
            .await
            .unwrap()
            .device
            .config_applied
            == 2)
        .await
    );
    h.server.shutdown().await;
}

#[tokio::test]
async fn commands_are_sent_until_acknowledged() {
    let h = start(|_| {}).await;
    let api = h.server.api().clone();
    let mut d = h.device(6).await;
    d.handshake().await;
    let relay = Command::SetRelay {
        relay: 1,
        mode: RelayMode::On,
    };
    let id = api.queue_command(6, relay).await.unwrap();
    assert_eq!(
        d.recv(WAIT).await,
        Some(Got::Command { id, command: relay })
    );
    assert_eq!(
        d.recv(WAIT).await,
        Some(Got::Command { id, command: relay }),
        "re-sent"
    );
    d.send(&Message::CommandAck {
        id,
        result: CommandResult::Done,
    })
    .await;
    assert!(
        eventually(WAIT, async || api.commands(6, 10).await.unwrap()[0].state
            == CommandState::Done)
        .await
    );
    let _ = d.recv(Duration::from_millis(100)).await;
    assert_eq!(d.recv(Duration::from_millis(700)).await, None);

    // Queued while offline: sent after the next handshake.
    d.session = None;
    let id2 = api.queue_command(6, Command::SendStatus).await.unwrap();
    d.new_port().await;
    d.handshake().await;
    assert_eq!(
        d.recv_until(WAIT, |g| matches!(g, Got::Command { .. }))
            .await,
        Some(Got::Command {
            id: id2,
            command: Command::SendStatus
        })
    );
    h.server.shutdown().await;
}

#[tokio::test]
async fn every_bad_datagram_is_dropped_silently_and_counted() {
    let h = start(|_| {}).await;
    let mut d = h.device(7).await;
    d.handshake().await;
    let (_, spare_hello) = d.hello();

    async fn expect_drop(h: &Harness, d: &mut TestDevice, bytes: &[u8], reason: &str) {
        let before = h.drops(reason).await;
        d.send_raw(bytes).await;
        assert_eq!(d.recv_raw(QUIET).await, None, "{reason}: got a reply");
        assert_eq!(h.drops(reason).await, before + 1.0, "{reason} not counted");
    }

    let ka = Message::Keepalive {
        reply_wanted: true,
        config_version: 0,
    };
    let good = d.seal(&ka);
    expect_drop(&h, &mut d, &good[..10], "length").await;
    expect_drop(&h, &mut d, &[1u8; 1100], "length").await;
    let mut short_hello = spare_hello.clone();
    short_hello.push(0);
    expect_drop(&h, &mut d, &short_hello, "length").await;
    let mut v = good.clone();
    v[0] = 2;
    expect_drop(&h, &mut d, &v, "version").await;
    let mut k = good.clone();
    k[1] = 9;
    expect_drop(&h, &mut d, &k, "kind").await;
    let mut w = spare_hello.clone();
    w[1] = 2; // a Welcome sent to the server
    expect_drop(&h, &mut d, &w, "kind").await;

    // Hello from a device the registry does not know (well-formed, tagged with some key).
    let mut stranger =
        TestDevice::new(999, tek_proto::crypto::Key([5; 16]), h.server.udp_addr()).await;
    let (_, hello) = stranger.hello();
    expect_drop(&h, &mut d, &hello, "unknown_device").await;

    // Bad tags.
    let mut bad = spare_hello.clone();
    bad[45] ^= 1;
    expect_drop(&h, &mut d, &bad, "auth").await;
    let mut bad = good.clone();
    let n = bad.len();
    bad[n - 1] ^= 1;
    expect_drop(&h, &mut d, &bad, "auth").await;

    // A session datagram accepted once, then replayed.
    d.send_raw(&good).await;
    assert_eq!(d.recv(WAIT).await, Some(Got::Pong));
    expect_drop(&h, &mut d, &good, "replay").await;

    // A replayed Hello (the one that opened this session).
    let (_, h2) = d.hello();
    d.send_raw(&h2).await;
    let welcome = d.recv_raw(WAIT).await.expect("second handshake answered");
    assert_eq!(welcome.len(), 46);
    expect_drop(&h, &mut d, &h2, "replay").await;
    // That Hello replaced the session: datagrams of the old one are stale.
    let old_session = d.seal(&ka);
    expect_drop(&h, &mut d, &old_session, "stale_session").await;
    let mut other = good.clone();
    other[9] ^= 0x55;
    expect_drop(&h, &mut d, &other, "stale_session").await;

    // Authentic but malformed / out of range / unknown type (new session first).
    d.handshake().await;
    let malformed = d.seal_bytes(&[0x05, 1, 0, 0, 0, 0, 0xAA]); // keepalive + a trailing byte
    expect_drop(&h, &mut d, &malformed, "malformed").await;
    let range = d.seal_bytes(&[0x03, 0, 0, 0, 1, 9]); // ConfigAck result 9
    expect_drop(&h, &mut d, &range, "range").await;
    let unknown = d.seal_bytes(&[0x7F, 0]);
    expect_drop(&h, &mut d, &unknown, "unknown_message").await;
    let wrong_way = d.seal(&Message::Pong { server_time: 0 });
    expect_drop(&h, &mut d, &wrong_way, "unknown_message").await;
    // ... and replaying the malformed one is a replay, not a second malformed.
    expect_drop(&h, &mut d, &malformed, "replay").await;

    // The session survived all of it.
    d.send(&ka).await;
    assert_eq!(d.recv(WAIT).await, Some(Got::Pong));
    h.server.shutdown().await;
}

#[tokio::test]
async fn idle_sessions_are_removed() {
    let h = start(|_| {}).await;
    let api = h.server.api().clone();
    let mut d = h.device(11).await;
    d.handshake().await;
    assert!(api.device_state(11).await.unwrap().online);
    api.run_timers_ahead(Duration::from_secs(200));
    assert_eq!(
        h.metric("tek_sessions").await,
        1.0,
        "session kept until idle timeout"
    );
    api.run_timers_ahead(Duration::from_secs(601));
    assert_eq!(h.metric("tek_sessions").await, 0.0);
    assert_eq!(api.device_state(11).await.unwrap().endpoint, None);
    let before = h.drops("stale_session").await;
    d.send(&Message::Keepalive {
        reply_wanted: true,
        config_version: 0,
    })
    .await;
    assert_eq!(d.recv(QUIET).await, None);
    assert_eq!(h.drops("stale_session").await, before + 1.0);
    // The device notices and starts again.
    d.handshake().await;
    assert!(api.device_state(11).await.unwrap().online);
    h.server.shutdown().await;
}

#[tokio::test]
async fn hello_rate_limit_per_device() {
    let h = start(|c| {
        c.limits.hello_device_burst = 2;
        c.limits.hello_device_interval_ms = 60_000;
    })
    .await;
    let mut d = h.device(8).await;
    d.handshake().await;
    d.handshake().await;
    let (_, hello) = d.hello();
    d.send_raw(&hello).await;
    assert_eq!(d.recv_raw(QUIET).await, None);
    assert_eq!(h.drops("rate_limit").await, 1.0);
    h.server.shutdown().await;
}

#[tokio::test]
async fn forged_hellos_do_not_use_up_a_devices_allowance() {
    let h = start(|c| {
        c.limits.hello_device_burst = 2;
        c.limits.hello_device_interval_ms = 60_000;
    })
    .await;
    let mut d = h.device(8).await;
    for _ in 0..5 {
        let (_, mut hello) = d.hello();
        hello[45] ^= 1; // a spoofer knows the device id, not the key
        d.send_raw(&hello).await;
        assert_eq!(d.recv_raw(QUIET).await, None);
    }
    assert_eq!(h.drops("auth").await, 5.0);
    assert_eq!(h.drops("rate_limit").await, 0.0);
    // The genuine device still gets its full allowance.
    d.handshake().await;
    d.handshake().await;
    h.server.shutdown().await;
}

#[tokio::test]
async fn restart_loses_no_acknowledged_record_and_keeps_hello_counters() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tek_server::Config::for_tests(dir.path());
    let server = tek_server::Server::start(cfg.clone()).await.unwrap();
    let key = provision(&*server.api().storage_handle(), 9);
    let mut d = TestDevice::new(9, key.clone(), server.udp_addr()).await;
    d.handshake().await;
    let (_, old_hello) = d.hello(); // never sent: a higher counter comes later
    let mut acked = 0;
    for b in 0..10 {
        d.send_telemetry(b * 20, 20).await;
        if let Some(Got::Ack { through_seq }) = d.recv(WAIT).await {
            acked = through_seq + 1;
        }
    }
    assert_eq!(acked, 200);
    let (_, newer) = d.hello();
    d.send_raw(&newer).await;
    assert!(d.recv_raw(WAIT).await.is_some());
    server.shutdown().await;

    let server = tek_server::Server::start(cfg).await.unwrap();
    let storage = server.api().storage_handle();
    assert_eq!(storage.telemetry_count(9).unwrap(), 200);
    // The hello counter survived: an older Hello is a replay for the new process too.
    let mut d2 = TestDevice::new(9, key, server.udp_addr()).await;
    d2.send_raw(&old_hello).await;
    assert_eq!(d2.recv_raw(QUIET).await, None);
    assert_eq!(
        server
            .api()
            .metrics()
            .drops(tek_server::metrics::DropReason::Replay),
        1
    );
    // ... and the device carries on with a higher counter.
    d2.boot = 2;
    d2.handshake().await;
    server.shutdown().await;
}

#[tokio::test]
async fn graceful_shutdown_flushes_pending_writes() {
    let h = start(|c| {
        c.ingest.flush_interval_ms = 60_000;
        c.ingest.batch_records = 100_000;
    })
    .await;
    let mut d = h.device(10).await;
    d.handshake().await;
    d.send_telemetry(0, 7).await;
    // Batching: nothing committed or acked yet.
    assert_eq!(d.recv(QUIET).await, None);
    let storage = h.storage();
    assert_eq!(storage.telemetry_count(10).unwrap(), 0);
    let started = std::time::Instant::now();
    h.server.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(storage.telemetry_count(10).unwrap(), 7);
    // The flush acknowledged what it committed.
    assert_eq!(d.recv(WAIT).await, Some(Got::Ack { through_seq: 6 }));
}

#[tokio::test]
async fn many_devices_batch_into_few_transactions() {
    let h = start(|_| {}).await;
    let mut devices = Vec::new();
    for id in 100..140 {
        let mut d = h.device(id).await;
        d.handshake().await;
        devices.push(d);
    }
    let t = std::time::Instant::now();
    for d in devices.iter_mut() {
        d.send_telemetry(0, 10).await;
    }
    for d in devices.iter_mut() {
        assert_eq!(d.recv(WAIT).await, Some(Got::Ack { through_seq: 9 }));
    }
    let elapsed = t.elapsed();
    let batches = h.metric("tek_write_batches_total").await;
    assert_eq!(h.metric("tek_telemetry_records_stored_total").await, 400.0);
    assert!(batches < 40.0, "{batches} transactions for 40 datagrams");
    eprintln!("40 batches of 10 records acked in {elapsed:?} using {batches} transactions");
    h.server.shutdown().await;
}

/// A measurement, not a check: `cargo test --release -p tek-server --test udp -- --ignored
/// --nocapture throughput`. 200 devices each send 20 batches of 50 records, one batch in flight
/// per device (stop-and-wait, as the protocol does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn throughput() {
    let h = start(|_| {}).await;
    let mut devices = Vec::new();
    for id in 1000..1200 {
        let mut d = h.device(id).await;
        d.handshake().await;
        devices.push(d);
    }
    let t = std::time::Instant::now();
    let mut tasks = Vec::new();
    for mut d in devices {
        tasks.push(tokio::spawn(async move {
            let mut rtts = Vec::new();
            for b in 0..20 {
                let s = std::time::Instant::now();
                d.send_telemetry(b * 50, 50).await;
                let got = d.recv(WAIT).await;
                assert_eq!(
                    got,
                    Some(Got::Ack {
                        through_seq: b * 50 + 49
                    })
                );
                rtts.push(s.elapsed());
            }
            rtts
        }));
    }
    let mut rtts = Vec::new();
    for t in tasks {
        rtts.extend(t.await.unwrap());
    }
    let elapsed = t.elapsed();
    rtts.sort();
    let records = h.metric("tek_telemetry_records_stored_total").await;
    let batches = h.metric("tek_write_batches_total").await;
    eprintln!(
        "{records} records in {elapsed:?}: {:.0} records/s, {:.0} datagrams/s, {batches} transactions; \
         ack latency p50 {:?} p99 {:?}",
        records / elapsed.as_secs_f64(),
        4000.0 / elapsed.as_secs_f64(),
        rtts[rtts.len() / 2],
        rtts[rtts.len() * 99 / 100]
    );
    assert_eq!(records, 200_000.0);
    h.server.shutdown().await;
}
