//! Sending configurations with a channel map as ConfigChunks (PROTOCOL.md 17.4).
//!
//! A configuration version whose channel registry entry (`storage::channels`) is not the
//! factory pool map — another map, or the pool map with other roles — is an **assembled
//! configuration**: `items length | items | channel map`, the items being the version's own
//! plus item 16 (the roles) when the entry has them ([`assembled`]). It is loaded with the
//! version ([`load`]) into the link's [`Desired`](super::sessions::Desired) and goes out only as
//! ConfigChunks, only in a session whose Capabilities allow it ([`super::channels::may_send_split`]).
//! A version with the factory map has no assembled form and keeps going out as Config 0x82.
//!
//! * **Sending** ([`Ingest::send_split`]): the chunks the latest ChunkAck of this transfer lacks,
//!   in order — all of them at first; when the device holds every chunk (it answered *accepted*
//!   and its ConfigAck is still missing) the last chunk alone, which a device already running the
//!   version answers *accepted* again. The re-send schedule and its bound are Config's
//!   (`udp/push.rs`: 5, 10, 20, then every 30 s, at most 10 sends per session).
//! * **ChunkAck** ([`Ingest::on_chunk_ack`], [`on_ack`]): *receiving* records what the device
//!   holds; *accepted* means every chunk is held — the ConfigAck then settles the version
//!   exactly as for Config (`udp/dispatch.rs`); *digest mismatch* forgets what was held, so the
//!   next send carries every chunk (on the schedule, never at once: a device with a wrong key
//!   must not make the server loop); *invalid*, *too large* and unknown states refuse the
//!   version: it is recorded as *rolled back* (never sent again) and the reason is logged.
//! * **No Capabilities** (or a map beyond them): the version is withheld — nothing is sent, the
//!   version stays *pending*, `tek_config_split_withheld_total` counts it, and the device pages
//!   say why ([`withheld_reason`], `service::states`).

use super::sessions::Link;
use super::Ingest;
use crate::storage::channels::{builtin, DeviceChannels};
use crate::storage::{ConfigRecord, ConfigState, Result, Storage};
use crate::write_job::WriteJob;
use std::sync::OnceLock;
use tek_proto::channel::roles;
use tek_proto::channel::split::{
    chunk_count, digest_key, Capabilities, ChunkAck, ChunkState, ConfigChunk,
};
use tek_proto::channel::ChannelMessage;
use tek_proto::message::{Config, ConfigResult};

/// Whether a registry entry is the factory map: the built-in pool map with the pool's roles (or
/// none, which the device reads as the pool's).
pub fn is_factory(entry: &DeviceChannels) -> bool {
    is_factory_map(&entry.map, entry.roles.as_deref())
}

/// [`is_factory`] of an entry's map and roles alone, what storage can judge before it reads the
/// entry's channels ([`crate::storage::ChannelStore::device_channels_kept_of`]).
pub fn is_factory_map(map: &[u8], roles: Option<&[u8]>) -> bool {
    // Encoded once per process: the pool definition is fixed, and `/api/devices` asks this of
    // every device of a page.
    static FACTORY: OnceLock<(Vec<u8>, Option<Vec<u8>>)> = OnceLock::new();
    let (factory_map, factory_roles) = FACTORY.get_or_init(|| {
        let pool = builtin::pool();
        (pool.map(), pool.roles_value())
    });
    map == factory_map.as_slice() && (roles.is_none() || roles == factory_roles.as_deref())
}

/// The assembled configuration of `config` under registry entry `entry` (PROTOCOL.md 17.4), or
/// `None` when it goes out as Config 0x82: no entry, or the factory map. `None` as well for a
/// configuration that cannot be encoded (saved ones were validated, so that is a bug, logged).
pub fn assembled(config: &Config, entry: Option<&DeviceChannels>) -> Option<Vec<u8>> {
    let entry = entry.filter(|e| !is_factory(e))?;
    let mut items = vec![0u8; config.items_len()];
    config.emit_items(&mut items)?;
    if let Some(r) = &entry.roles {
        items.push(roles::TAG);
        items.push(u8::try_from(r.len()).ok()?);
        items.extend_from_slice(r);
    }
    let Ok(len) = u16::try_from(items.len()) else {
        tracing::error!(
            device = entry.device_id,
            "configuration items too long to assemble"
        );
        return None;
    };
    let mut out = Vec::with_capacity(2 + items.len() + entry.map.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&items);
    out.extend_from_slice(&entry.map);
    Some(out)
}

/// Reads the registry entry in effect at `rec`'s version and assembles it (blocking: call from
/// a blocking task).
pub fn load(storage: &dyn Storage, rec: &ConfigRecord) -> Result<Option<Vec<u8>>> {
    let entry = storage.device_channels(rec.device_id, Some(rec.version))?;
    Ok(assembled(&rec.config, entry.as_ref()))
}

/// Why a version with a channel map is not being sent to a device that stated `caps` in its
/// session (`None`: it stated none), or `None` if it may be sent.
pub fn withheld_reason(caps: Option<&Capabilities>, assembled: &[u8]) -> Option<&'static str> {
    match caps {
        _ if super::channels::may_send_split(caps, assembled) => None,
        None => Some(
            "this controller has not stated that it runs channel maps (no Capabilities in its \
             session): the configuration waits until it does",
        ),
        Some(_) => Some(
            "this controller cannot run this channel map (too many channels or buses, too large, \
             or a source it does not support): the configuration waits",
        ),
    }
}

/// Bits of every chunk of a configuration of `total` bytes.
pub fn all_chunks(total: usize) -> u32 {
    match chunk_count(total) {
        0 => 0,
        32.. => u32::MAX,
        n => (1u32 << n) - 1,
    }
}

/// The chunks to send to a device that holds `held` (bit i: chunk i) of a configuration of
/// `total` bytes: those it lacks, in order; if it holds them all, the last one (see the module
/// docs).
pub fn to_send(total: usize, held: u32) -> Vec<usize> {
    let count = chunk_count(total);
    let missing: Vec<usize> = (0..count).filter(|i| held & (1 << i) == 0).collect();
    if missing.is_empty() && count > 0 {
        vec![count - 1]
    } else {
        missing
    }
}

/// What a ChunkAck for the version being sent does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckOutcome {
    /// The device holds these chunks now.
    Holds(u32),
    /// Refused: recorded as rolled back, never sent again; the reason.
    Refused(&'static str),
}

/// The rule of PROTOCOL.md 17.4 for a ChunkAck of the version being sent (`total` bytes).
pub fn on_ack(total: usize, ack: &ChunkAck) -> AckOutcome {
    match ack.state {
        ChunkState::Receiving => AckOutcome::Holds(ack.received & all_chunks(total)),
        ChunkState::Accepted => AckOutcome::Holds(all_chunks(total)),
        ChunkState::DigestMismatch => AckOutcome::Holds(0),
        ChunkState::Invalid => {
            AckOutcome::Refused("the controller found the configuration with its channel map invalid")
        }
        ChunkState::TooLarge => {
            AckOutcome::Refused("the configuration with its channel map is larger than the controller holds")
        }
        ChunkState::Unknown(_) => AckOutcome::Refused(
            "the controller refused the configuration with its channel map (unknown ChunkAck state)",
        ),
    }
}

impl Ingest {
    /// Sends the link's desired assembled configuration as the ConfigChunks the device lacks.
    /// Returns whether anything was sent; nothing is sent to a session whose Capabilities do
    /// not allow it (counted as withheld).
    pub(crate) fn send_split(&self, link: &mut Link) -> bool {
        let Some(d) = link.desired.as_ref() else {
            return false;
        };
        // Copied out: sending borrows the link mutably (its session's counter).
        let Some(assembled) = d.assembled().map(<[u8]>::to_vec) else {
            return false;
        };
        let (version, held, sent_before) = (d.version(), d.chunks_held(), d.chunks_sent());
        let Some(live) = link.live.as_ref() else {
            return false;
        };
        if !live.may_send_split(&assembled) {
            self.metrics.split_withheld();
            return false;
        }
        let k_cfg = digest_key(link.keys.master());
        let mut any = false;
        for i in to_send(assembled.len(), held) {
            let Some(chunk) = ConfigChunk::split(&k_cfg, version, &assembled, i) else {
                continue;
            };
            if self.send_channel_message(link, &ChannelMessage::ConfigChunk(chunk)) {
                self.metrics.chunk_sent(sent_before & (1 << i) != 0);
                if let Some(d) = link.desired.as_mut() {
                    d.set_chunks_sent(d.chunks_sent() | 1 << i);
                }
                any = true;
            }
        }
        any
    }

    /// Seals a message of the channel extension in the link's session and sends it.
    fn send_channel_message(&self, link: &mut Link, msg: &ChannelMessage<'_>) -> bool {
        let emit = |body: &mut [u8]| msg.emit(body).is_ok();
        self.send_extension(link, msg.buffer_len(), emit, msg)
    }

    /// A ChunkAck from device `id`: applied to the transfer of its desired version (others are
    /// only counted).
    pub(super) fn on_chunk_ack(
        &self,
        id: u32,
        link: &mut Link,
        ack: &ChunkAck,
        at: i64,
        jobs: &mut Vec<WriteJob>,
    ) {
        self.metrics.chunk_ack();
        self.metrics.chunk_ack_state(ack.state);
        let Some(d) = link.desired.as_mut() else {
            return;
        };
        let Some(total) = d.assembled().map(<[u8]>::len) else {
            return;
        };
        if d.version() != ack.version || d.state() != ConfigState::Pending {
            return;
        }
        match on_ack(total, ack) {
            AckOutcome::Holds(bits) => d.set_chunks_held(bits),
            AckOutcome::Refused(reason) => {
                tracing::warn!(
                    device = id,
                    version = d.version(),
                    reason,
                    "configuration refused"
                );
                d.set_state(ConfigState::RolledBack);
                link.config_retry = None;
                jobs.push(WriteJob::ConfigAck {
                    device_id: id,
                    version: ack.version,
                    result: ConfigResult::RolledBack,
                    at,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::channels::builtin;
    use tek_proto::channel::split::{Assembled, CHUNK_DATA};

    fn entry(b: &builtin::Builtin) -> DeviceChannels {
        DeviceChannels {
            device_id: 7,
            version: 3,
            template_id: None,
            map: b.map(),
            roles: b.roles_value(),
            saved_at: 0,
            channels: Vec::new(),
        }
    }

    #[test]
    fn the_factory_map_goes_out_as_config_others_assembled() {
        let c = Config::default();
        assert_eq!(assembled(&c, None), None);
        let mut pool = entry(&builtin::pool());
        assert_eq!(assembled(&c, Some(&pool)), None);
        pool.roles = None;
        assert_eq!(assembled(&c, Some(&pool)), None);
        // The pool map with other roles is not the factory configuration.
        pool.roles = builtin::tb260().roles_value();
        assert!(assembled(&c, Some(&pool)).is_some());
        let meter = entry(&builtin::sdm630());
        let a = assembled(&c, Some(&meter)).unwrap();
        let parsed = Assembled::parse(&a).unwrap();
        assert_eq!(parsed.map.as_bytes(), meter.map.as_slice());
        assert_eq!(Config::parse_items(parsed.items).unwrap(), c);
        let r = roles::Roles::from_items(parsed.items, parsed.map.channel_count()).unwrap();
        assert_eq!(Some(r), builtin::sdm630().roles);
    }

    #[test]
    fn chunks_to_send_follow_the_latest_chunk_ack() {
        let total = 2 * CHUNK_DATA + 10; // three chunks
        assert_eq!(all_chunks(total), 0b111);
        assert_eq!(to_send(total, 0), vec![0, 1, 2]);
        assert_eq!(to_send(total, 0b101), vec![1]);
        // Everything held but no ConfigAck yet: the last chunk alone, as a probe.
        assert_eq!(to_send(total, 0b111), vec![2]);
        assert_eq!(to_send(10, 0), vec![0]);
        assert!(to_send(0, 0).is_empty());
        assert_eq!(all_chunks(32 * CHUNK_DATA), u32::MAX);
    }

    #[test]
    fn chunk_ack_states_decide_the_next_step() {
        let total = 2 * CHUNK_DATA; // two chunks
        let ack = |state, received| ChunkAck {
            version: 4,
            state,
            received,
        };
        assert_eq!(
            on_ack(total, &ack(ChunkState::Receiving, 0b1)),
            AckOutcome::Holds(0b1)
        );
        // Bits beyond the configuration's chunks are ignored.
        assert_eq!(
            on_ack(total, &ack(ChunkState::Receiving, 0xF0)),
            AckOutcome::Holds(0)
        );
        assert_eq!(
            on_ack(total, &ack(ChunkState::Accepted, 0)),
            AckOutcome::Holds(0b11)
        );
        // Digest mismatch: everything again.
        assert_eq!(
            on_ack(total, &ack(ChunkState::DigestMismatch, 0b11)),
            AckOutcome::Holds(0)
        );
        for s in [
            ChunkState::Invalid,
            ChunkState::TooLarge,
            ChunkState::Unknown(9),
        ] {
            assert!(matches!(
                on_ack(total, &ack(s, 0b11)),
                AckOutcome::Refused(_)
            ));
        }
    }

    #[test]
    fn withheld_without_capabilities_or_beyond_them() {
        let a = assembled(&Config::default(), Some(&entry(&builtin::tb260()))).unwrap();
        assert!(withheld_reason(None, &a).is_some());
        let caps = Capabilities {
            features: tek_proto::channel::split::feature::SPLIT_CONFIG
                | tek_proto::channel::split::feature::MODBUS,
            max_channels: 16,
            max_buses: 1,
            max_config: 2048,
            max_program: 0,
        };
        assert_eq!(withheld_reason(Some(&caps), &a), None);
        let one = Capabilities {
            max_channels: 1,
            ..caps
        };
        assert!(withheld_reason(Some(&one), &a)
            .unwrap()
            .contains("cannot run"));
    }
}
