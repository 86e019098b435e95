//! Configurations with a channel map go out as ConfigChunks (PROTOCOL.md 17.4, `udp/split.rs`),
//! over real UDP on 127.0.0.1, on both backends. The device side is the controller crate's own
//! channel part (`tek_controller::channel_part::ChannelPart`) reading a `tek meter` temperature
//! transmitter over a Modbus bus emulated in process: the temperature-transmitter template is
//! applied (a new version with the template's registry entry) -> the chunks arrive -> ChunkAck
//! accepted -> ConfigAck -> the version is applied -> the device's WideTelemetry, sampled
//! through the template's map, is stored with the template's channels. A device that never
//! states Capabilities, or states ones the map exceeds, is never sent a chunk and the version
//! stays pending with a reason; a device that refuses the map gets it marked rolled back.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tek_controller::channel_part::{ChannelPart, ChannelRuntime, Chunked};
use tek_controller::channels::ChannelBus;
use tek_proto::channel::map::Bus;
use tek_proto::channel::split::{feature, Capabilities, ChunkAck, ChunkState};
use tek_proto::channel::{code, ChannelMessage};
use tek_proto::message::{Config, ConfigResult, Message};
use tek_server::storage::channels::{builtin, ChannelSet};
use tek_server::storage::postgres::testing;
use tek_server::storage::{ConfigState, Storage, TelemetryQuery};

const CAPS: Capabilities = Capabilities {
    features: feature::SPLIT_CONFIG | feature::WIDE_TELEMETRY | feature::MODBUS,
    max_channels: 16,
    max_buses: 1,
    max_config: 4096,
    max_program: 64,
};

type Part = ChannelPart<2048, 16, 64, 4096>;

/// A Modbus bus with a `tek meter` TB260 temperature transmitter at address 1.
struct MeterBus {
    bus: tek_meter::bus::Bus,
    pending: Vec<u8>,
    now: Duration,
}

impl MeterBus {
    fn new() -> MeterBus {
        let slaves = BTreeMap::from([(1u8, tek_meter::device::Model::Tb260)]);
        MeterBus {
            bus: tek_meter::bus::Bus::new(&slaves, &[]),
            pending: Vec::new(),
            now: Duration::ZERO,
        }
    }
}

impl ChannelBus for MeterBus {
    fn board_input(&mut self, _input: u8) -> Option<i32> {
        None
    }
    fn serial_send(&mut self, _bus: u8, _settings: &Bus, frame: &[u8]) {
        // The whole RTU frame, CRC included, as the meter reads it off the wire.
        self.pending = self.bus.answer(frame, self.now).unwrap_or_default();
    }
    fn serial_receive(&mut self, _bus: u8, buf: &mut [u8]) -> usize {
        let n = self.pending.len().min(buf.len());
        buf[..n].copy_from_slice(&self.pending[..n]);
        self.pending.drain(..n);
        n
    }
}

fn channel_message(m: &ChannelMessage<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; m.buffer_len()];
    m.emit(&mut buf).unwrap();
    buf
}

/// Seals message bytes (type byte first) in the session and sends them.
async fn send_bytes(d: &mut TestDevice, m: &[u8]) {
    let b = d.seal_bytes(m);
    d.send_raw(&b).await;
}

/// Opens one datagram of the session: its message bytes (type byte first).
async fn recv_message(d: &mut TestDevice, timeout: Duration) -> Option<Vec<u8>> {
    let mut bytes = d.recv_raw(timeout).await?;
    let body = d.session.as_mut()?.open(&mut bytes).ok()?;
    Some(body.to_vec())
}

/// Receives until a ConfigChunk arrives (other messages are skipped).
async fn recv_chunk(d: &mut TestDevice, timeout: Duration) -> Option<Vec<u8>> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let m = recv_message(d, left).await?;
        if m.first() == Some(&code::CONFIG_CHUNK) {
            return Some(m);
        }
    }
}

/// Applies `template` to device `id` as the service does: the registry entry of the next
/// version, then the version itself (same items) through the API's save.
async fn apply(h: &Harness, id: u32, template: &builtin::Builtin) -> u32 {
    let db = h.storage();
    let latest = db.latest_config(id).unwrap();
    let next = latest.as_ref().map_or(1, |r| r.version + 1);
    let set = ChannelSet {
        map: template.map(),
        roles: template.roles_value(),
        channels: template.labels(),
    };
    db.save_device_channels(id, next, None, &set, 1).unwrap();
    let config = latest.map_or_else(Config::default, |r| r.config);
    let v = h.server.api().save_config(id, config).await.unwrap();
    assert_eq!(v, next);
    v
}

async fn state_of(db: &Arc<dyn Storage>, id: u32, version: u32) -> ConfigState {
    db.config_version(id, version).unwrap().unwrap().state
}

async fn a_template_goes_out_as_chunks_and_its_telemetry_is_stored(h: Harness) {
    let db = h.storage();
    let mut d = h.device(71).await;
    let mut part = Part::new(CAPS);
    part.start(0, &d.keys.master().0);
    d.handshake().await;
    send_bytes(
        &mut d,
        &channel_message(&ChannelMessage::Capabilities(CAPS)),
    )
    .await;
    d.send(&Message::Status(TestDevice::status(0, 5))).await;
    // The factory configuration: nothing to send yet.
    assert!(recv_chunk(&mut d, QUIET).await.is_none());

    let tpl = builtin::tb260();
    let version = apply(&h, 71, &tpl).await;
    assert_eq!(state_of(&db, 71, version).await, ConfigState::Pending);

    // Every chunk reaches the controller's channel part, which answers; the configuration is
    // assembled, authenticated and validated there.
    let mut ready = None;
    for _ in 0..8 {
        let chunk = recv_chunk(&mut d, WAIT).await.expect("a ConfigChunk");
        match part.chunk(&chunk, 0).expect("a well-formed chunk") {
            Chunked::Ack(a) => {
                let m = channel_message(&ChannelMessage::ChunkAck(a));
                send_bytes(&mut d, &m).await;
            }
            Chunked::Ready { version, received } => {
                ready = Some((version, received));
                break;
            }
        }
    }
    let (v, received) = ready.expect("the whole configuration");
    assert_eq!(v, version);
    let config = part
        .ready_config()
        .expect("a valid configuration with its map");
    assert_eq!(config, Config::default());
    part.commit_ready(v, 1000);
    assert_eq!(part.split_version(), Some(v));
    assert_eq!(part.channel_count(), tpl.channels.len());
    let accepted = ChunkAck {
        version: v,
        state: ChunkState::Accepted,
        received,
    };
    send_bytes(
        &mut d,
        &channel_message(&ChannelMessage::ChunkAck(accepted)),
    )
    .await;
    // Accepted: the server waits for ConfigAck, as for Config (still pending).
    assert!(
        eventually(WAIT, async || h
            .metric("tek_chunk_acks_by_state_total{state=\"accepted\"}")
            .await
            >= 1.0)
        .await
    );
    assert_eq!(state_of(&db, 71, v).await, ConfigState::Pending);
    d.send(&Message::ConfigAck {
        version: v,
        result: ConfigResult::Applied,
    })
    .await;
    assert!(
        eventually(WAIT, async || state_of(&db, 71, v).await
            == ConfigState::Applied)
        .await,
        "applied"
    );
    assert!(h.metric("tek_config_chunks_sent_total").await >= 1.0);
    d.send(&Message::Status(TestDevice::status(v, 6))).await;

    // The map runs: samples through the emulated transmitter, logged as wide records.
    let mut bus = MeterBus::new();
    let mut now = 1000u64;
    for _ in 0..10_000 {
        bus.now = Duration::from_millis(now);
        part.sample(now, &mut bus);
        if (0..part.channel_count()).all(|c| part.value(c).is_some()) {
            break;
        }
        now = part.sample_at().max(now + 1);
    }
    assert!(part.value(0).is_some(), "the temperature was read");
    assert!(part.log_record(60));
    assert!(part.log_record(120));
    let log = part.wide_log();
    assert!(log.wide());
    let first = log.oldest();
    let mut out = [0u8; 900];
    let (n, _, last) = log
        .write(None, first, first + 1, 130, &mut out)
        .expect("a WideTelemetry message");
    assert_eq!(out[0], code::WIDE_TELEMETRY);
    send_bytes(&mut d, &out[..n]).await;
    let acked = d
        .recv_until(
            WAIT,
            |g| matches!(g, Got::Ack { through_seq } if *through_seq == last),
        )
        .await;
    assert!(acked.is_some(), "the wide records are acknowledged");
    let rows = db
        .wide_records(&TelemetryQuery {
            device_id: 71,
            from: 0,
            to: i64::MAX,
            limit: 100,
        })
        .unwrap();
    assert_eq!(rows.len(), 2);
    let entry = db.device_channels(71, Some(v)).unwrap().unwrap();
    assert_eq!(entry.map, tpl.map());
    for r in &rows {
        assert_eq!(r.config_version, Some(v));
        // Every channel of the template has a value: the transmitter answered.
        let channels: Vec<usize> = r.values.iter().map(|(c, _)| c).collect();
        assert_eq!(channels, (0..tpl.channels.len()).collect::<Vec<_>>());
    }
    h.server.shutdown().await;
}

async fn no_chunks_without_capabilities_or_beyond_them(h: Harness) {
    let db = h.storage();
    // A device of today: no Capabilities.
    let mut d = h.device(72).await;
    d.handshake().await;
    d.send(&Message::Status(TestDevice::status(0, 5))).await;
    let v = apply(&h, 72, &builtin::sdm630()).await;
    d.send(&Message::Keepalive {
        reply_wanted: false,
        config_version: 0,
    })
    .await;
    assert!(recv_chunk(&mut d, QUIET).await.is_none(), "no chunk, ever");
    assert_eq!(state_of(&db, 72, v).await, ConfigState::Pending);
    assert!(h.metric("tek_config_split_withheld_total").await >= 1.0);
    assert!(h
        .server
        .api()
        .split_wait_reason(72)
        .is_some_and(|r| r.contains("not stated")));

    // A device whose Capabilities the map exceeds (14 channels, it runs 4).
    let mut e = h.device(73).await;
    e.handshake().await;
    let small = Capabilities {
        max_channels: 4,
        ..CAPS
    };
    send_bytes(
        &mut e,
        &channel_message(&ChannelMessage::Capabilities(small)),
    )
    .await;
    e.send(&Message::Status(TestDevice::status(0, 5))).await;
    let v = apply(&h, 73, &builtin::sdm630()).await;
    assert!(recv_chunk(&mut e, QUIET).await.is_none(), "no chunk");
    assert_eq!(state_of(&db, 73, v).await, ConfigState::Pending);
    assert!(h
        .server
        .api()
        .split_wait_reason(73)
        .is_some_and(|r| r.contains("cannot run")));
    // A factory configuration still goes out as Config 0x82.
    let v2 = h.server.api().save_config(73, Config::default()).await;
    assert!(v2.is_ok());
    h.server.shutdown().await;
}

async fn a_refused_map_is_rolled_back_and_not_sent_again(h: Harness) {
    let db = h.storage();
    let mut d = h.device(74).await;
    d.handshake().await;
    send_bytes(
        &mut d,
        &channel_message(&ChannelMessage::Capabilities(CAPS)),
    )
    .await;
    d.send(&Message::Status(TestDevice::status(0, 5))).await;
    let v = apply(&h, 74, &builtin::sdm630()).await;
    assert!(recv_chunk(&mut d, WAIT).await.is_some());
    // The device finds it too large (its real room is smaller than it stated).
    let nack = ChunkAck {
        version: v,
        state: ChunkState::TooLarge,
        received: 0,
    };
    send_bytes(&mut d, &channel_message(&ChannelMessage::ChunkAck(nack))).await;
    assert!(
        eventually(WAIT, async || state_of(&db, 74, v).await
            == ConfigState::RolledBack)
        .await,
        "refused"
    );
    // Never sent again, not even at the next contact.
    while recv_chunk(&mut d, QUIET).await.is_some() {}
    d.send(&Message::Status(TestDevice::status(0, 7))).await;
    assert!(recv_chunk(&mut d, Duration::from_millis(6000))
        .await
        .is_none());
    h.server.shutdown().await;
}

#[tokio::test]
async fn unanswered_chunks_are_sent_again_sqlite() {
    resent(start(fast_retries).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_chunks_are_sent_again_postgres() {
    let Some(db) = testing::database() else {
        return;
    };
    resent(start_with_storage(fast_retries, db.db.into_arc()).await).await;
}

fn fast_retries(c: &mut tek_server::Config) {
    c.push.retry_initial_ms = 200;
    c.push.retry_max_ms = 400;
    c.push.tick_ms = 20;
}

/// Re-sends follow Config's schedule and the latest ChunkAck: a version applied while the
/// device was away is loaded with its map at the Hello; unanswered, the chunk goes out again;
/// after a digest mismatch too; a ChunkAck of another version changes nothing; accepted and
/// confirmed, nothing more is sent.
async fn resent(h: Harness) {
    let db = h.storage();
    let mut d = h.device(75).await;
    let v = apply(&h, 75, &builtin::tb260()).await;
    d.handshake().await;
    send_bytes(
        &mut d,
        &channel_message(&ChannelMessage::Capabilities(CAPS)),
    )
    .await;
    d.send(&Message::Status(TestDevice::status(0, 5))).await;
    let first = recv_chunk(&mut d, WAIT).await.expect("the chunk");
    let again = recv_chunk(&mut d, WAIT).await.expect("sent again");
    assert_eq!(first, again, "the same chunk");
    assert!(h.metric("tek_config_chunks_resent_total").await >= 1.0);
    let ack = |version, state| {
        channel_message(&ChannelMessage::ChunkAck(ChunkAck {
            version,
            state,
            received: 0,
        }))
    };
    // Another version's refusal is not this transfer's.
    send_bytes(&mut d, &ack(v + 7, ChunkState::Invalid)).await;
    send_bytes(&mut d, &ack(v, ChunkState::DigestMismatch)).await;
    assert!(recv_chunk(&mut d, WAIT).await.is_some(), "all again");
    assert_eq!(state_of(&db, 75, v).await, ConfigState::Pending);
    assert_eq!(
        h.metric("tek_chunk_acks_by_state_total{state=\"digest_mismatch\"}")
            .await,
        1.0
    );
    send_bytes(&mut d, &ack(v, ChunkState::Accepted)).await;
    d.send(&Message::ConfigAck {
        version: v,
        result: ConfigResult::Applied,
    })
    .await;
    assert!(
        eventually(WAIT, async || state_of(&db, 75, v).await
            == ConfigState::Applied)
        .await,
        "applied"
    );
    while recv_chunk(&mut d, QUIET).await.is_some() {}
    assert!(recv_chunk(&mut d, Duration::from_millis(1500))
        .await
        .is_none());
    h.server.shutdown().await;
}

on_both_backends!(
    a_template_goes_out_as_chunks_and_its_telemetry_is_stored,
    no_chunks_without_capabilities_or_beyond_them,
    a_refused_map_is_rolled_back_and_not_sent_again,
);
