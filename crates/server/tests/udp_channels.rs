//! The channel extension (PROTOCOL.md 17) at the server, over real UDP on 127.0.0.1: a device
//! states its Capabilities and the server records them; wide telemetry is stored (once, whatever
//! the retransmissions, a missing value kept as no value) and acknowledged with Ack; channel
//! faults are counted without costing the session; a device of today (no Capabilities) is never
//! cleared for a split configuration and keeps working as before.

mod common;

use common::*;
use tek_proto::channel::faults::{ChannelFaults, Fault, FaultEntry};
use tek_proto::channel::split::{feature, Capabilities, ConfigChunk};
use tek_proto::channel::wide::{ChannelSet, WideWriter};
use tek_proto::channel::{code, ChannelMessage};
use tek_proto::crypto::Key;
use tek_proto::message::Message;
use tek_server::storage::TelemetryQuery;

const CAPS: Capabilities = Capabilities {
    features: feature::SPLIT_CONFIG | feature::WIDE_TELEMETRY | feature::EXPRESSIONS,
    max_channels: 16,
    max_buses: 0,
    max_config: 2048,
    max_program: 64,
};

/// An assembled configuration: log interval 120 s and a map of `channels` board channels.
fn assembled(channels: u8) -> Vec<u8> {
    let mut a = vec![0, 4, 1, 2, 0, 120, 1, 0, channels];
    for i in 0..channels {
        a.extend_from_slice(&[2, 1, i % 32, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0]);
    }
    a
}

fn caps_message() -> Vec<u8> {
    let m = ChannelMessage::Capabilities(CAPS);
    let mut buf = vec![0u8; m.buffer_len()];
    m.emit(&mut buf).unwrap();
    buf
}

fn wide_message(first_seq: u32) -> Vec<u8> {
    let set = (0..16).fold(ChannelSet(0), |s, c| s.with(c));
    let mut buf = vec![0u8; 512];
    buf[0] = code::WIDE_TELEMETRY;
    let mut w = WideWriter::new(&mut buf[1..], first_seq, set, 1000).unwrap();
    let mut values = [Some(2650); 16];
    assert!(w.push(880, &values));
    values[11] = None; // a probe without value
    assert!(w.push(940, &values));
    let n = 1 + w.len();
    buf.truncate(n);
    buf
}

#[tokio::test]
async fn capabilities_are_recorded_per_session_and_gate_split_configurations() {
    let h = start(|_| {}).await;
    let api = h.server.api();
    let mut d = h.device(1).await;
    d.handshake().await;
    // A device of today: no Capabilities, never a split configuration.
    assert_eq!(api.capabilities(1), None);
    assert!(!api.may_send_split(1, &assembled(8)));

    let bytes = d.seal_bytes(&caps_message());
    d.send_raw(&bytes).await;
    assert!(eventually(WAIT, async || api.capabilities(1) == Some(CAPS)).await);
    assert_eq!(h.metric("tek_channel_capabilities_total").await, 1.0);
    assert_eq!(h.drops("unknown_message").await, 0.0);
    assert!(api.may_send_split(1, &assembled(8)));
    assert!(
        !api.may_send_split(1, &assembled(17)),
        "more channels than stated"
    );
    // The session goes on as before: telemetry is stored and acknowledged.
    d.send_telemetry(0, 2).await;
    assert_eq!(d.recv(WAIT).await, Some(Got::Ack { through_seq: 1 }));

    // A new session starts without them, until the device states them again.
    d.handshake().await;
    assert_eq!(api.capabilities(1), None);
    assert!(!api.may_send_split(1, &assembled(8)));
    h.server.shutdown().await;
}

/// A WideTelemetry batch of records `first..first + n` of the channels `set`, 60 s apart, the
/// newest 60 s old; channel `ch` of record `seq` has the value `seq * 1000 + ch`, except
/// channel 11 of odd records, which has none.
fn wide_batch(first_seq: u32, n: u32, set: ChannelSet) -> Vec<u8> {
    let mut buf = vec![0u8; 1002];
    buf[0] = code::WIDE_TELEMETRY;
    let now = 100_000;
    let mut w = WideWriter::new(&mut buf[1..], first_seq, set, now).unwrap();
    for i in 0..n {
        let seq = first_seq + i;
        let values: Vec<Option<i32>> = (0..128)
            .map(|ch| (ch != 11 || seq % 2 == 0).then_some(seq as i32 * 1000 + ch))
            .collect();
        assert!(w.push(now - 60 * (n - i), &values));
    }
    let n = 1 + w.len();
    buf.truncate(n);
    buf
}

async fn wide_telemetry_is_stored_once_and_acknowledged(h: Harness) {
    let db = h.storage();
    let mut d = h.device(3).await;
    d.boot = 4;
    d.handshake().await;
    // The device says which configuration it runs: kept with each record.
    d.send(&Message::Keepalive {
        reply_wanted: true,
        config_version: 6,
    })
    .await;
    assert_eq!(d.recv(WAIT).await, Some(Got::Pong));

    let sixteen = (0..16).fold(ChannelSet(0), |s, c| s.with(c));
    let before = tek_server::clock::unix_now();
    let bytes = d.seal_bytes(&wide_batch(0, 3, sixteen));
    d.send_raw(&bytes).await;
    assert_eq!(d.recv(WAIT).await, Some(Got::Ack { through_seq: 2 }));
    let after = tek_server::clock::unix_now();
    // Acknowledged means stored: under the session's boot, stamped arrival - age.
    let rows = wide_records(&*db, 3);
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(rows
        .iter()
        .all(|r| r.boot == 4 && r.config_version == Some(6)));
    assert_eq!(rows.iter().map(|r| r.seq).collect::<Vec<_>>(), [0, 1, 2]);
    assert!(
        (before - 60..=after - 60).contains(&rows[2].time),
        "{rows:?}"
    );
    assert_eq!(rows[1].time, rows[2].time - 60);
    // The missing value is no value, never 0; the others are all there.
    assert_eq!(rows[1].values.get(11), None);
    assert_eq!(rows[1].values.channels().len(), 15);
    assert_eq!(rows[2].values.get(11), Some(2011));
    assert_eq!(rows[0].values.get(15), Some(15));
    let q = TelemetryQuery {
        device_id: 3,
        from: 0,
        to: i64::MAX,
        limit: 100,
    };
    let eleven: Vec<i32> = db
        .wide_series(&q, 11)
        .unwrap()
        .iter()
        .map(|p| p.1)
        .collect();
    assert_eq!(eleven, [11, 2011]);

    // Sent again (its Ack was lost): stored once, acknowledged again.
    let bytes = d.seal_bytes(&wide_batch(0, 3, sixteen));
    d.send_raw(&bytes).await;
    assert_eq!(d.recv(WAIT).await, Some(Got::Ack { through_seq: 2 }));
    assert_eq!(db.wide_count(3).unwrap(), 3);
    assert_eq!(
        h.metric("tek_wide_telemetry_records_stored_total").await,
        3.0
    );
    assert_eq!(h.metric("tek_wide_telemetry_batches_total").await, 2.0);
    assert_eq!(h.metric("tek_acks_sent_total").await, 2.0);

    // The next batch, of another channel set (a sparse one, up to channel 127).
    let sparse = ChannelSet(0).with(0).with(11).with(64).with(127);
    let bytes = d.seal_bytes(&wide_batch(3, 2, sparse));
    d.send_raw(&bytes).await;
    assert_eq!(d.recv(WAIT).await, Some(Got::Ack { through_seq: 4 }));
    // (Read in time order, where the new batch's older record lies among the first batch's.)
    let mut rows = wide_records(&*db, 3);
    rows.sort_by_key(|r| r.seq);
    assert_eq!(rows.len(), 5);
    assert_eq!(
        rows[3].values.channels(),
        ChannelSet(0).with(0).with(64).with(127)
    );
    assert_eq!(rows[4].values.get(127), Some(4127));
    assert_eq!(rows[4].values.get(1), None);
    assert_eq!(
        db.telemetry_count(3).unwrap(),
        0,
        "nothing in the narrow table"
    );
    h.server.shutdown().await;
}

#[tokio::test]
async fn wide_telemetry_and_faults_are_taken_and_the_session_stays() {
    let h = start(|_| {}).await;
    let mut d = h.device(2).await;
    d.handshake().await;
    let bytes = d.seal_bytes(&caps_message());
    d.send_raw(&bytes).await;

    let bytes = d.seal_bytes(&wide_message(0));
    d.send_raw(&bytes).await;
    // Stored, then acknowledged.
    assert_eq!(d.recv(WAIT).await, Some(Got::Ack { through_seq: 1 }));
    assert_eq!(h.metric("tek_wide_telemetry_batches_total").await, 1.0);
    assert_eq!(h.metric("tek_wide_telemetry_records_total").await, 2.0);

    let entries = [
        FaultEntry {
            channel: 3,
            errors: 2,
            last: Fault::Timeout,
        },
        FaultEntry {
            channel: 11,
            errors: 1,
            last: Fault::Exception(2),
        },
    ];
    let mut body = vec![code::CHANNEL_FAULTS; 1 + ChannelFaults::buffer_len(2)];
    ChannelFaults::emit(&entries, &mut body[1..]).unwrap();
    let bytes = d.seal_bytes(&body);
    d.send_raw(&bytes).await;
    assert!(
        eventually(WAIT, async || h
            .metric("tek_channel_fault_reports_total")
            .await
            == 1.0)
        .await
    );
    assert_eq!(h.metric("tek_channel_fault_entries_total").await, 2.0);
    // Stored as the device's latest report (what the device page shows as each channel's last
    // error); the next report replaces it.
    let faults = h.storage();
    assert!(eventually(WAIT, async || faults.channel_faults(2).unwrap().len() == 2).await);
    let stored = faults.channel_faults(2).unwrap();
    assert_eq!(
        stored
            .iter()
            .map(|f| (f.channel, f.errors, f.last))
            .collect::<Vec<_>>(),
        [(3, 2, Fault::Timeout), (11, 1, Fault::Exception(2))]
    );
    let mut body = vec![code::CHANNEL_FAULTS; 1 + ChannelFaults::buffer_len(1)];
    ChannelFaults::emit(&entries[1..], &mut body[1..]).unwrap();
    let bytes = d.seal_bytes(&body);
    d.send_raw(&bytes).await;
    assert!(eventually(WAIT, async || faults.channel_faults(2).unwrap().len() == 1).await);
    assert_eq!(faults.channel_faults(2).unwrap()[0].channel, 11);

    // A malformed wide batch is dropped and counted like any malformed message.
    let mut bad = wide_message(5);
    bad.push(0);
    let bytes = d.seal_bytes(&bad);
    d.send_raw(&bytes).await;
    assert!(eventually(WAIT, async || h.drops("malformed").await == 1.0).await);
    // A chunk of the other direction is an unknown message.
    let cfg = assembled(4);
    let chunk = ConfigChunk::split(&Key([1; 16]), 3, &cfg, 0).unwrap();
    let m = ChannelMessage::ConfigChunk(chunk);
    let mut chunk = vec![0u8; m.buffer_len()];
    m.emit(&mut chunk).unwrap();
    let bytes = d.seal_bytes(&chunk);
    d.send_raw(&bytes).await;
    assert!(eventually(WAIT, async || h.drops("unknown_message").await == 1.0).await);

    // Still the same session: a Keepalive is answered, telemetry acknowledged.
    d.send(&Message::Keepalive {
        reply_wanted: true,
        config_version: 0,
    })
    .await;
    assert_eq!(d.recv(WAIT).await, Some(Got::Pong));
    d.send_telemetry(0, 1).await;
    assert_eq!(d.recv(WAIT).await, Some(Got::Ack { through_seq: 0 }));
    assert_eq!(h.metric("tek_sessions_established_total").await, 1.0);
    h.server.shutdown().await;
}

on_both_backends!(wide_telemetry_is_stored_once_and_acknowledged);
