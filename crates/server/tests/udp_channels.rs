//! The channel extension (PROTOCOL.md 17) at the server, over real UDP on 127.0.0.1: a device
//! states its Capabilities and the server records them; wide telemetry and channel faults are
//! accepted and counted without costing the session; a device of today (no Capabilities) is
//! never cleared for a split configuration and keeps working as before.

mod common;

use common::*;
use tek_proto::channel::faults::{ChannelFaults, Fault, FaultEntry};
use tek_proto::channel::split::{feature, Capabilities, ConfigChunk};
use tek_proto::channel::wide::{ChannelSet, WideWriter};
use tek_proto::channel::{code, ChannelMessage};
use tek_proto::crypto::Key;
use tek_proto::message::Message;

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

#[tokio::test]
async fn wide_telemetry_and_faults_are_counted_and_the_session_stays() {
    let h = start(|_| {}).await;
    let mut d = h.device(2).await;
    d.handshake().await;
    let bytes = d.seal_bytes(&caps_message());
    d.send_raw(&bytes).await;

    let bytes = d.seal_bytes(&wide_message(0));
    d.send_raw(&bytes).await;
    // Counted, not acknowledged: nothing is stored, and an Ack would say it was (7.1).
    assert_eq!(d.recv(QUIET).await, None);
    assert!(
        eventually(WAIT, async || h
            .metric("tek_wide_telemetry_batches_total")
            .await
            == 1.0)
        .await
    );
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
