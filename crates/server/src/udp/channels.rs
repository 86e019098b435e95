//! The channel extension (PROTOCOL.md 17) as this server speaks it: what arrives, and the rule
//! for what may be sent.
//!
//! * **Capabilities (0x06)** are recorded in the live session ([`Live::capabilities`]); a new
//!   session starts without them until the device states them again (a device that implements
//!   17.1 does so in every session, before its first Status). [`may_send_split`] is the one rule
//!   for sending a split configuration (ConfigChunk 0x85): only to a session whose Capabilities
//!   say it can run that configuration. The sender is `udp/split.rs`: a configuration version
//!   whose channel registry entry is not the factory pool map goes out only as ConfigChunks and
//!   only where this rule allows; every other version — and every version to a device without
//!   Capabilities — goes out as Config 0x82 exactly as to a version 1 device, or, if it carries
//!   a map, waits (pending, with a reason the Configure page shows).
//! * **WideTelemetry (0x07)** is decoded (a malformed batch is dropped and counted like any
//!   malformed message), counted (`tek_wide_telemetry_*` metrics) and **stored and
//!   acknowledged** exactly like Telemetry (PROTOCOL.md 17.5, 10.4): its records become a
//!   [`WriteJob::WideTelemetry`] ([`super::dispatch::wide_rows`]: stamped `arrival - age`, under
//!   the session's boot, with the configuration version the device reported in this session, a
//!   channel without a value left without one), the writer stores them idempotently on (device,
//!   boot, seq) ([`crate::storage::WideStore`]), and Ack (0x81) follows the commit
//!   (`writer.rs`). A conforming device sends it only while running a configuration that
//!   arrived as ConfigChunks (17.1).
//! * **ChunkAck (0x08)** goes to the transfer of the device's desired version
//!   (`udp/split.rs` `Ingest::on_chunk_ack`); **ChannelFaults (0x09)** are decoded, counted
//!   and stored (a [`WriteJob::ChannelFaults`]: the report replaces the device's previous one,
//!   [`crate::storage::FaultStore`]), what the device page shows as each channel's last error.
//! * A Capabilities with feature bit 4 (`backlog`, PROTOCOL.md 18) is answered with Accepts
//!   (`udp/backlog.rs`).
//! * **ConfigChunk (0x85)** is of the other direction: dropped as `unknown_message`.

use super::sessions::{Link, Live};
use super::Ingest;
use crate::metrics::DropReason;
use crate::write_job::{Acknowledge, WriteJob};
use tek_proto::channel::split::{feature, Assembled, Capabilities};
use tek_proto::channel::ChannelMessage;

/// Whether a session whose device stated `caps` (or nothing) may be sent the assembled
/// configuration `assembled` as ConfigChunks (PROTOCOL.md 17.1): only with Capabilities, bit 0
/// set, and a configuration within every limit they state. Bytes that are not a valid assembled
/// configuration are never sent.
pub fn may_send_split(caps: Option<&Capabilities>, assembled: &[u8]) -> bool {
    let Some(caps) = caps else {
        return false;
    };
    if caps.features & feature::SPLIT_CONFIG == 0 {
        return false;
    }
    match Assembled::parse(assembled) {
        Ok(a) => caps.can_run(&a),
        Err(_) => false,
    }
}

impl Live {
    /// Whether this session may be sent `assembled` as ConfigChunks ([`may_send_split`]).
    pub fn may_send_split(&self, assembled: &[u8]) -> bool {
        may_send_split(self.capabilities.as_ref(), assembled)
    }
}

impl Ingest {
    /// A message of the channel extension in an open session of device `id`'s `link`, arrived
    /// at `at`; what is to be stored becomes a write job.
    pub(super) fn on_channel_message(
        &self,
        id: u32,
        link: &mut Link,
        msg: ChannelMessage<'_>,
        at: i64,
        jobs: &mut Vec<WriteJob>,
    ) -> Result<(), DropReason> {
        match msg {
            ChannelMessage::Capabilities(c) => {
                if let Some(live) = link.live.as_mut() {
                    live.capabilities = Some(c);
                }
                self.metrics.channel_capabilities();
                // Every Capabilities with the backlog bit, also a repeated one: the device
                // sends it again until an Accepts arrives (PROTOCOL.md 18.1).
                if c.features & feature::BACKLOG != 0 {
                    self.send_accepts(link);
                }
            }
            ChannelMessage::WideTelemetry(t) => {
                let live = link.live.as_ref().ok_or(DropReason::StaleSession)?;
                self.metrics.wide_telemetry(u64::from(t.count()));
                jobs.push(WriteJob::WideTelemetry {
                    device_id: id,
                    session_id: live.session.session_id(),
                    through_seq: t.last_seq(),
                    ack: Acknowledge::Ack,
                    rows: super::dispatch::wide_rows(id, live.boot, link.reported_version, &t, at),
                });
            }
            ChannelMessage::ChannelFaults(f) => {
                self.metrics.channel_faults(f.entries().count() as u64);
                jobs.push(WriteJob::ChannelFaults {
                    device_id: id,
                    faults: f.entries().collect(),
                    at,
                });
            }
            ChannelMessage::ChunkAck(a) => self.on_chunk_ack(id, link, &a, at, jobs),
            ChannelMessage::ConfigChunk(_) => return Err(DropReason::UnknownMessage),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tek_proto::channel::split::feature;

    fn assembled(channels: u8) -> Vec<u8> {
        // Items: log interval 120 s; a map of `channels` board channels.
        let mut a = vec![0, 4, 1, 2, 0, 120, 1, 0, channels];
        for i in 0..channels {
            a.extend_from_slice(&[2, 1, i % 32, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0]);
        }
        a
    }

    #[test]
    fn split_configurations_only_to_devices_that_can_run_them() {
        let caps = Capabilities {
            features: feature::SPLIT_CONFIG | feature::WIDE_TELEMETRY,
            max_channels: 16,
            max_buses: 0,
            max_config: 1024,
            max_program: 0,
        };
        assert!(may_send_split(Some(&caps), &assembled(16)));
        // No Capabilities (every device of today): never.
        assert!(!may_send_split(None, &assembled(16)));
        // Capabilities without split configurations, or a map beyond the stated limits.
        let no_split = Capabilities {
            features: feature::WIDE_TELEMETRY,
            ..caps
        };
        assert!(!may_send_split(Some(&no_split), &assembled(16)));
        assert!(!may_send_split(Some(&caps), &assembled(17)));
        let small = Capabilities {
            max_config: 64,
            ..caps
        };
        assert!(!may_send_split(Some(&small), &assembled(16)));
        // Bytes that are no valid configuration.
        assert!(!may_send_split(Some(&caps), &[0, 9, 1]));
    }
}
