//! What an independent implementation of docs/PROTOCOL.md found (issue 14), checked over real
//! UDP on 127.0.0.1 against an in-process server: the reboot rule of 11.3 (on both storage
//! backends), the unusable counters of 6.3, the per-address Hello bucket of 8.1, the Ack after a
//! gap of 7.1, and when a pending configuration is sent (11.3).

mod common;

use common::*;
use std::time::{Duration, Instant};
use tek_proto::message::{Command, Config, Message};
use tek_server::storage::postgres::testing;
use tek_server::storage::{CommandState, TelemetryQuery};

/// A reboot is sent; the device carries it out and its CommandAck is lost. A new session of the
/// same boot gets the reboot again (it may not have arrived); a Hello with a higher boot marks it
/// done, and it is never sent into the new boot (PROTOCOL.md 11.3, 10.10).
async fn reboot_is_done_when_a_higher_boot_says_hello(h: Harness) {
    let api = h.server.api().clone();
    let mut d = h.device(21).await;
    d.handshake().await;
    let id = api.queue_command(21, Command::Reboot).await.unwrap();
    let reboot = Some(Got::Command {
        id,
        command: Command::Reboot,
    });
    let is_command = |g: &Got| matches!(g, Got::Command { .. });
    assert_eq!(d.recv_until(WAIT, is_command).await, reboot);

    // A new attempt in the same boot (the Command may have been lost): sent again.
    d.new_port().await;
    d.handshake().await;
    assert_eq!(
        d.recv_until(WAIT, is_command).await,
        reboot,
        "same boot: re-sent"
    );
    assert_eq!(
        api.commands(21, 10).await.unwrap()[0].state,
        CommandState::Queued
    );

    // The device rebooted (acknowledging first, but that Ack was lost): boot 2 says Hello.
    d.boot += 1;
    d.attempt = 0;
    d.new_port().await;
    d.handshake().await;
    d.send(&Message::Status(TestDevice::status(0, 5))).await;
    assert_eq!(
        d.recv_until(Duration::from_millis(1500), is_command).await,
        None,
        "the reboot was sent again into the new boot: the device would reboot twice"
    );
    assert!(
        eventually(WAIT, async || api.commands(21, 10).await.unwrap()[0].state
            == CommandState::Done)
        .await,
        "the reboot is not marked done"
    );
    // Other commands still flow in the new boot.
    let status = api.queue_command(21, Command::SendStatus).await.unwrap();
    assert_eq!(
        d.recv_until(WAIT, is_command).await,
        Some(Got::Command {
            id: status,
            command: Command::SendStatus
        })
    );
    h.server.shutdown().await;
}

/// The reboot rule holds when the server that sees the new boot is not the one that sent the
/// reboot (another server of a fleet, or the same one restarted): the send is recorded in the
/// database. First half: `api`'s server sends the reboot to `d` (twice, so the first send's
/// record has long been committed); returns its id.
async fn reboot_sent_by(api: &tek_server::Api, d: &mut TestDevice) -> u32 {
    d.new_port().await;
    d.handshake().await;
    let id = api.queue_command(d.id, Command::Reboot).await.unwrap();
    let reboot = Some(Got::Command {
        id,
        command: Command::Reboot,
    });
    for _ in 0..2 {
        let got = d
            .recv_until(WAIT, |g| matches!(g, Got::Command { .. }))
            .await;
        assert_eq!(got, reboot);
    }
    id
}

/// Second half: the rebooted device says Hello to the server at `to` (whose API is `api`),
/// which must not send the reboot again, and shows it done.
async fn rebooted_device_is_not_rebooted_again(
    api: &tek_server::Api,
    to: std::net::SocketAddr,
    d: &mut TestDevice,
    id: u32,
) {
    d.boot += 1;
    d.attempt = 0;
    d.server = to;
    d.new_port().await;
    d.handshake().await;
    d.send(&Message::Status(TestDevice::status(0, 5))).await;
    assert_eq!(
        d.recv_until(Duration::from_millis(1500), |g| matches!(
            g,
            Got::Command { .. }
        ))
        .await,
        None,
        "a server that did not send the reboot sent it again into the new boot"
    );
    let done = async || {
        let c = api.commands(d.id, 10).await.unwrap();
        c.iter()
            .any(|c| c.id == id && c.state == CommandState::Done)
    };
    assert!(eventually(WAIT, done).await, "reboot {id} not done");
}

#[tokio::test]
async fn reboot_sent_before_a_restart_is_not_sent_again_sqlite() {
    let h = start(|_| {}).await;
    let mut d = h.device(26).await;
    let id = reboot_sent_by(h.server.api(), &mut d).await;
    h.server.shutdown().await;
    // The same database, a new process: nothing about the send is in its memory.
    let cfg = tek_server::Config::for_tests(h.dir.path());
    let server = tek_server::Server::start(cfg).await.unwrap();
    rebooted_device_is_not_rebooted_again(server.api(), server.udp_addr(), &mut d, id).await;
    server.shutdown().await;
}

/// Two servers on one PostgreSQL. The device was on B (which keeps its link, with no session
/// after the idle expiry), moves to A, which sends the reboot; B learns of the queued reboot
/// through the change feed but never sent it. The rebooted device says Hello to B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reboot_sent_by_another_server_is_not_sent_again_postgres() {
    let Some(db) = testing::database() else {
        return;
    };
    let connect = || {
        tek_server::storage::postgres::Postgres::connect_sealed(&db.url, &db.master_key)
            .unwrap()
            .into_arc()
    };
    let a = start_with_storage(|_| {}, connect()).await;
    let b = start_with_storage(|_| {}, connect()).await;
    let mut d = b.device(27).await;
    d.handshake().await;
    b.server.api().run_timers_ahead(Duration::from_secs(601));
    d.server = a.server.udp_addr();
    let id = reboot_sent_by(a.server.api(), &mut d).await;
    // B has the reboot queued in memory by now (the feed is polled every 100 ms).
    tokio::time::sleep(Duration::from_millis(300)).await;
    rebooted_device_is_not_rebooted_again(b.server.api(), b.server.udp_addr(), &mut d, id).await;
    a.server.shutdown().await;
    b.server.shutdown().await;
}

/// Counters 2^32 - 2 and 2^32 - 1 are never used by a sender; an authentic datagram carrying one
/// is dropped as `replay` and the session goes on (PROTOCOL.md 6.3, 6.4).
#[tokio::test]
async fn unusable_counters_are_dropped_as_replays() {
    let h = start(|_| {}).await;
    let mut d = h.device(22).await;
    d.handshake().await;
    let ka = Message::Keepalive {
        reply_wanted: true,
        config_version: 0,
    };
    for counter in [u32::MAX - 1, u32::MAX] {
        let before = h.drops("replay").await;
        d.send_raw(&d.seal_with_counter(&ka, counter)).await;
        assert_eq!(d.recv(QUIET).await, None, "counter {counter} answered");
        assert_eq!(h.drops("replay").await, before + 1.0, "counter {counter}");
    }
    // The highest usable counter is accepted...
    d.send_raw(&d.seal_with_counter(&ka, u32::MAX - 2)).await;
    assert_eq!(d.recv(WAIT).await, Some(Got::Pong));
    // ... and the check did not cost the session: a fresh one still works from counter 0.
    d.handshake().await;
    d.send_raw(&d.seal_with_counter(&ka, u32::MAX)).await;
    assert_eq!(d.recv(QUIET).await, None);
    d.send(&ka).await;
    assert_eq!(
        d.recv(WAIT).await,
        Some(Got::Pong),
        "session dead after 2^32 - 1"
    );
    h.server.shutdown().await;
}

/// The default per-address Hello bucket (PROTOCOL.md 8.1: 40 tokens, 20 per second): of 100
/// Hellos from one address at once, 40 reach the CMAC check (here they fail it: forged tags), the
/// rest are `rate_limit`.
#[tokio::test]
async fn a_burst_of_hellos_from_one_address_is_cut_at_40() {
    let h = start(|c| c.limits = tek_server::config::Limits::default()).await;
    let mut d = h.device(23).await;
    // Another loopback address: its bucket is untouched by anything else the test sent.
    d.sock = tokio::net::UdpSocket::bind("127.0.0.2:0").await.unwrap();
    let mut hellos = Vec::new();
    for _ in 0..100 {
        let (_, mut hello) = d.hello();
        hello[45] ^= 1;
        hellos.push(hello);
    }
    let t0 = Instant::now();
    for hello in &hellos {
        d.send_raw(hello).await;
    }
    assert!(
        eventually(WAIT, async || h.drops("auth").await
            + h.drops("rate_limit").await
            >= 100.0)
        .await,
        "not all 100 Hellos were counted"
    );
    let elapsed = t0.elapsed().as_secs_f64();
    let (auth, limited) = (h.drops("auth").await, h.drops("rate_limit").await);
    assert_eq!(auth + limited, 100.0);
    // The bucket refills at 20/s while the burst is under way: allow for what the clock gave.
    let refilled = (20.0 * elapsed).ceil();
    assert!(
        (40.0..=40.0 + refilled).contains(&auth),
        "{auth} Hellos passed the address limit in {elapsed:.3} s (40 + {refilled} allowed)"
    );
    h.server.shutdown().await;
}

/// A device whose log overflowed sends its oldest remaining records: the batch after a gap is
/// acknowledged through its last record, which releases the gap as lost; nothing is stored for
/// the gap (PROTOCOL.md 7.1, 11.2).
#[tokio::test]
async fn an_ack_after_a_gap_claims_only_the_batch() {
    let h = start(|_| {}).await;
    let mut d = h.device(24).await;
    d.handshake().await;
    d.send_telemetry(0, 5).await;
    assert_eq!(d.recv(WAIT).await, Some(Got::Ack { through_seq: 4 }));
    // Records 5..=9 were dropped by the device (its ring was full): the next batch starts at 10.
    d.send_telemetry(10, 5).await;
    assert_eq!(d.recv(WAIT).await, Some(Got::Ack { through_seq: 14 }));
    let rows = h
        .server
        .api()
        .telemetry(TelemetryQuery {
            device_id: 24,
            from: 0,
            to: i64::MAX,
            limit: 100,
        })
        .await
        .unwrap();
    let mut seqs: Vec<u32> = rows.iter().map(|r| r.seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, [0, 1, 2, 3, 4, 10, 11, 12, 13, 14]);
    h.server.shutdown().await;
}

/// A configuration saved while a session is open but before the device has reported which
/// version it runs waits for that report (PROTOCOL.md 11.3); once the device has reported, a
/// new save is sent at once.
#[tokio::test]
async fn a_config_waits_for_the_first_report_of_a_session() {
    let h = start(|_| {}).await;
    let api = h.server.api().clone();
    let mut d = h.device(25).await;
    d.handshake().await;
    let cfg = Config {
        log_interval_s: 30,
        ..Config::default()
    };
    assert_eq!(api.save_config(25, cfg.clone()).await.unwrap(), 1);
    assert_eq!(
        d.recv(Duration::from_millis(600)).await,
        None,
        "sent before the device reported its version"
    );
    d.send(&Message::Status(TestDevice::status(0, 5))).await;
    assert_eq!(
        d.recv(WAIT).await,
        Some(Got::Config {
            version: 1,
            config: Box::new(cfg.clone())
        })
    );
    // Reported in this session: the next save goes out at once (before the 200 ms re-send).
    let cfg2 = Config {
        log_interval_s: 40,
        ..cfg
    };
    assert_eq!(api.save_config(25, cfg2).await.unwrap(), 2);
    assert!(matches!(
        d.recv_until(Duration::from_millis(150), |g| matches!(
            g,
            Got::Config { version: 2, .. }
        ))
        .await,
        Some(Got::Config { version: 2, .. })
    ));
    h.server.shutdown().await;
}

on_both_backends!(reboot_is_done_when_a_higher_boot_says_hello);
