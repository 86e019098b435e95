//! Session datagrams: look up the session in memory, open, and act on the message.

use super::sessions::Link;
use super::{unix_now, Ingest};
use crate::metrics::DropReason;
use crate::storage::{ConfigState, TelemetryRow, WideRow, WideValues};
use crate::write_job::{Acknowledge, WriteJob};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tek_proto::backlog::{self, Backlog};
use tek_proto::channel::wide::WideTelemetry;
use tek_proto::channel::ChannelMessage;
use tek_proto::message::{ConfigResult, Message, Telemetry};
use tek_proto::session::ReceiveError;
use tek_proto::wire::data::DataPacket;

/// A message of an extension of version 1 (PROTOCOL.md 17, 18): a type version 1 calls unknown.
enum Extension<'a> {
    Channel(ChannelMessage<'a>),
    Backlog(Backlog<'a>),
}

impl<'a> Extension<'a> {
    /// Decodes the message `bytes` (type byte first) that version 1 parsed as unknown.
    fn parse(bytes: &'a [u8]) -> Result<Self, DropReason> {
        let bad = |e| super::receive_reason(ReceiveError::Message(e));
        if let Some(m) = ChannelMessage::parse(bytes).map_err(bad)? {
            return Ok(Extension::Channel(m));
        }
        match bytes.split_first() {
            // Accepts and BacklogAck are of the other direction, like any unknown type.
            Some((&backlog::code::BACKLOG, body)) => {
                Ok(Extension::Backlog(Backlog::parse(body).map_err(bad)?))
            }
            _ => Err(DropReason::UnknownMessage),
        }
    }
}

/// The rows of a telemetry batch of device `id` logged in `boot`, stamped `at - age` (PROTOCOL.md
/// 7.3): a Telemetry's (the session's boot) or a Backlog's (its boot, 18.4).
pub(super) fn telemetry_rows(id: u32, boot: u32, t: &Telemetry<'_>, at: i64) -> Vec<TelemetryRow> {
    t.records()
        .map(|r| TelemetryRow {
            device_id: id,
            boot,
            seq: r.seq,
            time: at - i64::from(r.age_s),
            channels: t.channels(),
            values: r.values,
        })
        .collect()
}

/// The rows of a wide telemetry batch of device `id` logged in `boot`, stamped `at - age` like
/// [`telemetry_rows`]; `config_version` is the version the device reported running in this
/// session (its channel map says what the channel numbers mean). A channel without a value in a
/// record gets none in its row (a gap, PROTOCOL.md 17.5).
pub(super) fn wide_rows(
    id: u32,
    boot: u32,
    config_version: Option<u32>,
    t: &WideTelemetry<'_>,
    at: i64,
) -> Vec<WideRow> {
    t.records()
        .map(|r| WideRow {
            device_id: id,
            boot,
            seq: r.seq,
            time: at - i64::from(r.age_s),
            config_version,
            values: WideValues::from_fn(r.has_value, |ch| r.get(ch)),
        })
        .collect()
}

impl Ingest {
    pub(super) fn on_data(self: &Arc<Self>, datagram: &mut [u8], src: SocketAddr) {
        let id = match DataPacket::new_checked(&datagram[..]) {
            Ok(p) => p.device_id(),
            Err(e) => return self.drop_datagram(super::wire_reason(e)),
        };
        let now = Instant::now();
        let mut jobs = Vec::new();
        let result = self.links.with(id, |link| {
            let link = link.ok_or(DropReason::StaleSession)?;
            let live = link.live.as_mut().ok_or(DropReason::StaleSession)?;
            let bytes = live
                .session
                .open(datagram)
                .map_err(|e| super::receive_reason(ReceiveError::Open(e)))?;
            let msg = Message::parse(bytes)
                .map_err(|e| super::receive_reason(ReceiveError::Message(e)))?;
            let extension = match msg {
                Message::Telemetry(_)
                | Message::Status(_)
                | Message::ConfigAck { .. }
                | Message::CommandAck { .. }
                | Message::Keepalive { .. } => None,
                // The extensions' codes (PROTOCOL.md 17, 18), unknown to version 1.
                Message::Unknown(_) => Some(Extension::parse(bytes)?),
                // Server-to-device messages: authentic, but nothing to do.
                _ => return Err(DropReason::UnknownMessage),
            };
            if live.endpoint != src {
                // The device's address changed (a NAT forgot its mapping, a failover): what was
                // sent since its last datagram went to the old address, so re-send now rather
                // than after the back-off (PROTOCOL.md 2: replies go to the source).
                if let Some(r) = link.config_retry.as_mut() {
                    r.next_at = now;
                }
                for c in &mut link.commands {
                    if let Some(r) = c.retry.as_mut() {
                        r.next_at = now;
                    }
                }
            }
            live.endpoint = src;
            live.last_auth = now;
            match extension {
                Some(Extension::Channel(m)) => {
                    self.on_channel_message(id, link, m, unix_now(), &mut jobs)?
                }
                Some(Extension::Backlog(b)) => {
                    self.on_backlog(id, link, b, unix_now(), &mut jobs)?
                }
                None => self.dispatch(id, link, msg, now, &mut jobs),
            }
            Ok(())
        });
        if let Err(reason) = result {
            return self.drop_datagram(reason);
        }
        for job in jobs {
            if self.writer.try_send(job).is_err() {
                self.drop_datagram(DropReason::Overload);
            }
        }
    }

    fn dispatch(
        &self,
        id: u32,
        link: &mut Link,
        msg: Message<'_>,
        now: Instant,
        jobs: &mut Vec<WriteJob>,
    ) {
        let at = unix_now();
        match msg {
            Message::Telemetry(t) => {
                let Some(live) = link.live.as_ref() else {
                    return;
                };
                jobs.push(WriteJob::Telemetry {
                    device_id: id,
                    session_id: live.session.session_id(),
                    through_seq: t.last_seq(),
                    ack: Acknowledge::Ack,
                    rows: telemetry_rows(id, live.boot, &t, at),
                });
            }
            Message::Status(status) => {
                jobs.push(WriteJob::Status {
                    device_id: id,
                    status,
                    at,
                });
                link.reported_version = Some(status.config_version);
                self.config_on_contact(id, link, now, jobs);
            }
            Message::Keepalive {
                reply_wanted,
                config_version,
            } => {
                if reply_wanted {
                    self.send(
                        link,
                        &Message::Pong {
                            server_time: super::server_time(),
                        },
                    );
                }
                link.reported_version = Some(config_version);
                self.config_on_contact(id, link, now, jobs);
                if self.alarms.active() {
                    self.alarms
                        .offer(crate::alarms::task::Event::Contact { device_id: id, at });
                }
            }
            Message::ConfigAck { version, result } => {
                if let Some(d) = link.desired.as_mut() {
                    if d.version() == version {
                        d.set_state(ConfigState::from_result(result));
                        link.config_retry = None;
                    }
                }
                if result != ConfigResult::RolledBack {
                    link.reported_version = Some(version);
                }
                jobs.push(WriteJob::ConfigAck {
                    device_id: id,
                    version,
                    result,
                    at,
                });
            }
            Message::CommandAck { id: cmd, result } => {
                link.commands.retain(|c| c.id != cmd);
                link.remember_done(cmd);
                jobs.push(WriteJob::CommandAck {
                    device_id: id,
                    id: cmd,
                    result,
                    at,
                });
            }
            _ => {}
        }
    }

    /// The device told us which configuration it runs: mark the newest one synced if it runs it
    /// (its ConfigAck was lost), else send it — whenever the versions differ, even if the device
    /// reports a higher one (a database restored from a backup), as PROTOCOL.md 11.3 says.
    fn config_on_contact(&self, id: u32, link: &mut Link, now: Instant, jobs: &mut Vec<WriteJob>) {
        let (Some(d), Some(running)) = (link.desired.as_mut(), link.reported_version) else {
            return;
        };
        if d.state() == ConfigState::RolledBack {
            return; // never sent again (PROTOCOL.md 11.3)
        }
        if d.state() != ConfigState::Pending {
            // Synced before, but the device now runs another version (it lost its flash, or
            // was replaced): send the newest one again.
            if running != d.version() && link.config_retry.is_none() {
                self.push_config_now(link, now);
            }
            return;
        }
        if running == d.version() {
            d.set_state(ConfigState::Applied);
            link.config_retry = None;
            jobs.push(WriteJob::ConfigRunning {
                device_id: id,
                version: d.version(),
                at: unix_now(),
            });
        } else if link.config_retry.is_none() {
            self.push_config_now(link, now);
        }
    }
}
