//! What a received datagram does: the length and version checks, a Welcome that completes a
//! handshake, a sealed message opened and dispatched (configurations, split-configuration
//! chunks, commands, acks, the server's clock), and what a new configuration changes. Anything
//! failing a check is dropped silently and counted in [`crate::Stats::ignored`].

use super::Controller;
use crate::channel_part::{ChannelSupport, Chunked};
use crate::connect::Conn;
use crate::record_log::RecordLog;
use crate::session::BacklogGate;
use crate::transport::{self, Probe};
use crate::{Endpoint, Iface};
use tek_proto::backlog::{self, accepts, BacklogMessage};
use tek_proto::channel::split::{ChunkAck, ChunkState};
use tek_proto::message::config::Config;
use tek_proto::message::{Command, CommandResult, ConfigItems, Message};
use tek_proto::session::Session;
use tek_proto::wire::Kind;

/// Checks and decrypts a session datagram in place and decodes its message; returns the
/// message's bytes (type and body) with it (a message of the channel extension decodes as
/// `Message::Unknown`). `None`: it fails authentication, or it is authentic but malformed. Out of
/// line: the cipher's and the decoder's working state is on the stack only while this runs,
/// not while the message is handled (a configuration decoded then would add to it; a device's
/// stack is the budget).
#[inline(never)]
fn open<'d>(
    session: &mut Session,
    datagram: &'d mut [u8],
) -> Option<(&'d [u8], Option<Message<'d>>)> {
    let bytes: &'d [u8] = session.open(datagram).ok()?;
    Some((bytes, Message::parse(bytes).ok()))
}

impl<L: RecordLog, X: ChannelSupport> Controller<L, X> {
    /// A datagram arrived on `iface`, from `from`, to local port `local_port`. The buffer is
    /// decrypted in place. Anything unexpected or failing a check is dropped silently.
    pub fn receive(
        &mut self,
        now: u64,
        iface: Iface,
        from: Endpoint,
        local_port: u16,
        datagram: &mut [u8],
    ) {
        transport::count(&mut self.transport.traffic, iface, false, datagram.len());
        if !tek_proto::length_ok(datagram.len()) || datagram[0] != tek_proto::VERSION {
            self.stats.ignored += 1;
            return;
        }
        let handled = match Kind::from(datagram[1]) {
            Kind::Welcome => self.on_welcome(now, iface, from, local_port, datagram),
            Kind::Data => self.on_data(now, iface, from, local_port, datagram),
            _ => false,
        };
        if !handled {
            self.stats.ignored += 1;
        }
    }

    /// Out of line, like [`open`]: a handshake's working state (an attempt's copy, the new
    /// session) is on the stack only while a Welcome is checked, not under every datagram.
    #[inline(never)]
    fn on_welcome(
        &mut self,
        now: u64,
        iface: Iface,
        from: Endpoint,
        port: u16,
        datagram: &[u8],
    ) -> bool {
        let matches =
            |a: &crate::attempt::Attempt| a.iface == iface && a.port == port && a.to == from;
        let keys = &self.hellos.keys;
        match &mut self.link.conn {
            Conn::Hello(a) if matches(a) => {
                if let Some((session, time, counter)) = a.finish(keys, datagram, 0) {
                    // Moved out, not cloned: the session replaces it.
                    let conn = core::mem::replace(&mut self.link.conn, Conn::Offline);
                    if let Conn::Hello(a) = conn {
                        self.established(now, a, session, time, counter);
                    }
                    return true;
                }
            }
            Conn::Up(up) if matches(&up.attempt) => {
                // A Welcome to a later Hello of the same attempt: the server replaced the
                // session we took with this one.
                if let Some((session, time, counter)) =
                    up.attempt.finish(keys, datagram, up.counter)
                {
                    up.session = session;
                    up.counter = counter;
                    up.heard(now);
                    if let Some(b) = &mut up.batch {
                        b.next_at = now;
                    }
                    self.sync_time(now, time);
                    return true;
                }
            }
            _ => {}
        }
        // The Ethernet probe reached a server: the way back from GSM.
        if let Probe::Hello(a) = &self.transport.probe {
            if matches(a) {
                if let Some((session, time, counter)) = a.finish(keys, datagram, 0) {
                    let probe = core::mem::replace(&mut self.transport.probe, Probe::Off);
                    if let Probe::Hello(a) = probe {
                        self.transport
                            .return_to_ethernet(now, &mut self.effects, &mut self.stats);
                        self.established(now, a, session, time, counter);
                    }
                    return true;
                }
            }
        }
        false
    }

    fn on_data(
        &mut self,
        now: u64,
        iface: Iface,
        from: Endpoint,
        port: u16,
        datagram: &mut [u8],
    ) -> bool {
        let Some(up) = self.link.up() else {
            return false;
        };
        if up.iface != iface || up.port != port || up.to != from {
            return false;
        }
        let Some((bytes, msg)) = open(&mut up.session, datagram) else {
            return false;
        };
        up.heard(now);
        self.transport.heard(now, iface);
        match msg {
            Some(Message::Unknown(tek_proto::channel::code::CONFIG_CHUNK)) => {
                self.config_chunk(now, bytes)
            }
            Some(Message::Unknown(backlog::code::ACCEPTS | backlog::code::BACKLOG_ACK)) => {
                self.backlog_answer(bytes)
            }
            Some(msg) => self.handle(now, msg),
            // Authentic but malformed: nothing to do (the session was still heard).
            None => {}
        }
        true
    }

    /// A chunk of a split configuration (PROTOCOL.md 17.4). A version 1 controller (no channel
    /// part) drops it unread, as an unknown message. Out of line, like `config_message`.
    #[inline(never)]
    fn config_chunk(&mut self, now: u64, message: &[u8]) {
        let running = self.cfg.version;
        let Some(part) = self.channels.runtime() else {
            return;
        };
        let (version, received) = match part.chunk(message, running) {
            // Malformed or out of range: dropped (PROTOCOL.md 17.4).
            None => return,
            Some(Chunked::Ack(ack)) => {
                self.outbox.chunk_ack = Some(ack);
                return;
            }
            Some(Chunked::Ready { version, received }) => (version, received),
        };
        let ack = |state| ChunkAck {
            version,
            state,
            received,
        };
        let Some(mut new) = part.ready_config() else {
            self.outbox.chunk_ack = Some(ack(ChunkState::Invalid));
            return;
        };
        let log_s = self.cfg.running.log_interval_s;
        let Some(a) = self.cfg.apply(version, &mut new, now) else {
            part.discard_ready();
            self.outbox.chunk_ack = Some(ack(ChunkState::Invalid));
            return;
        };
        self.outbox.chunk_ack = Some(ack(ChunkState::Accepted));
        if a.changed {
            part.commit_ready(version, now);
            // The old map's wide records go (the part drops those it keeps itself).
            self.logging.log.abandon_wide();
        } else {
            part.discard_ready();
        }
        self.applied(now, version, a, log_s);
    }

    fn handle(&mut self, now: u64, msg: Message<'_>) {
        match msg {
            Message::Ack {
                through_seq,
                server_time,
            } => {
                self.sync_time(now, server_time);
                // The log of the batch in flight (or, with none, of the mode running).
                let wide = match self.link.up().and_then(|up| up.batch) {
                    Some(b) => b.wide,
                    None => self.split(),
                };
                // Wide records kept by the telemetry log are acknowledged there.
                let in_part = wide && !self.logging.log.holds_wide();
                let acked = match (in_part, self.channels.runtime()) {
                    (true, Some(part)) => Some(part.wide_ack(through_seq)).filter(|&n| n > 0),
                    _ => self.logging.log.ack(None, through_seq),
                };
                if let Some(n) = acked {
                    self.stats.records_acked += n as u32;
                    if let Some(up) = self.link.up() {
                        up.acked(None, through_seq);
                    }
                }
            }
            Message::Pong { server_time } => self.sync_time(now, server_time),
            Message::Config { version, config } => self.config_message(now, version, config),
            Message::Command { id, command } => self.command(now, id, command),
            // Device -> server messages and unknown codes: authentic, but nothing to do.
            _ => {}
        }
    }

    /// Out of line: the decoded configuration (~800 bytes) then lives in a frame of its own, on
    /// the stack only after the datagram's decryption has returned, instead of in the frame of
    /// `receive`, where it would add to the decryption's (a device's stack is the budget).
    #[inline(never)]
    fn config_message(&mut self, now: u64, version: u32, items: ConfigItems<'_>) {
        let mut new = items.to_config();
        self.apply_config(now, version, &mut new);
    }

    pub(super) fn sync_time(&mut self, now: u64, server_time: u32) {
        self.plant.sync_time(now, server_time);
        // The boot's anchor, for its records read after a restart (PROTOCOL.md 18.3).
        self.logging
            .log
            .set_anchor(server_time.wrapping_sub((now / 1000) as u32));
    }

    /// Accepts or BacklogAck (PROTOCOL.md 18): the server takes earlier boots' records, or
    /// stored some. Dropped, like any unknown message, by a log that holds none.
    fn backlog_answer(&mut self, message: &[u8]) {
        match BacklogMessage::parse(message) {
            Ok(Some(BacklogMessage::Accepts(features))) if features & accepts::BACKLOG != 0 => {
                if let Some(up) = self.link.up() {
                    up.backlog_gate = BacklogGate::Open;
                }
            }
            Ok(Some(BacklogMessage::BacklogAck { boot, through_seq })) => {
                let in_flight = self
                    .link
                    .up()
                    .and_then(|up| up.batch)
                    .is_some_and(|b| b.boot == Some(boot));
                if !in_flight {
                    return;
                }
                if let Some(n) = self.logging.log.ack(Some(boot), through_seq) {
                    self.stats.records_acked += n as u32;
                }
                if let Some(up) = self.link.up() {
                    up.acked(Some(boot), through_seq);
                }
            }
            _ => {}
        }
    }

    /// Re-evaluates the relays with the latest reading, if it is fresh.
    fn update_relays_fresh(&mut self, now: u64) {
        let fresh = self.logging.fresh(now);
        self.plant.update_with(now, &self.cfg.running, fresh);
    }

    /// A configuration from the server: applied ([`ConfigState::apply`]) and acknowledged —
    /// after it is queued for flash, so the ConfigAck goes out once it is committed.
    fn apply_config(&mut self, now: u64, version: u32, new: &mut Config) {
        let log_s = self.cfg.running.log_interval_s;
        let Some(a) = self.cfg.apply(version, new, now) else {
            return;
        };
        self.applied(now, version, a, log_s);
    }

    /// After [`ConfigState::apply`] (of a Config or an assembled split configuration): the
    /// ConfigAck, and for a change, what follows from it. `log_s`: the logging interval before.
    fn applied(&mut self, now: u64, version: u32, a: crate::config::Applied, log_s: u16) {
        self.outbox.config_ack = Some((version, a.result));
        if !a.changed {
            return;
        }
        self.stats.configs_applied += 1;
        self.sync_channels(now);
        if self.channels.runtime_ref().is_some() {
            // A new map, or none: the channel part's record follows the configuration's.
            self.effects.persist_channels();
        }
        self.log_interval_changed(log_s, now);
        self.effects.persist();
        self.outbox.status_due = true;
        self.update_relays_fresh(now);
        if a.gsm_changed && self.transport.modem_on {
            self.redial();
        }
        if a.servers_changed {
            // After the ConfigAck went out on the old session.
            self.link.restart_pending = true;
        }
    }

    pub(super) fn redial(&mut self) {
        if self.transport.redial(&mut self.effects) {
            self.link.conn = Conn::Offline;
        }
    }

    fn command(&mut self, now: u64, id: u32, command: Command) {
        let result = match self.outbox.repeated(id) {
            Some(result) => result,
            None => {
                let result = match command {
                    Command::SetRelay { relay, mode } => {
                        if self.plant.relays.set_mode(relay, mode) {
                            self.update_relays_fresh(now);
                            CommandResult::Done
                        } else {
                            CommandResult::Refused
                        }
                    }
                    Command::Reboot => {
                        self.reset_pending = true;
                        CommandResult::Done
                    }
                    Command::SendStatus => {
                        self.outbox.status_due = true;
                        CommandResult::Done
                    }
                };
                self.stats.commands += 1;
                self.outbox.last_command = Some((id, result));
                result
            }
        };
        self.outbox.command_done(id, result);
    }

    /// The running configuration changed from one logging every `old_s`.
    pub(super) fn log_interval_changed(&mut self, old_s: u16, now: u64) {
        let new_s = self.cfg.running.log_interval_s;
        self.logging.interval_changed(old_s, new_s, now);
        if let Some(part) = self.channels.runtime() {
            part.set_log_interval(u32::from(new_s));
        }
    }

    /// Whether a split configuration runs (records are wide).
    pub(super) fn split(&self) -> bool {
        self.channels
            .runtime_ref()
            .is_some_and(|p| p.split_version().is_some())
    }

    /// The channel part follows the configuration state (a change, a rollback); its record is
    /// written when that changed it.
    pub(super) fn sync_channels(&mut self, now: u64) {
        let version = self.cfg.version;
        if let Some(part) = self.channels.runtime() {
            if part.sync(version, now) {
                // The mode or the map changed: the wide records logged with the one left
                // behind go (the part drops those it keeps itself).
                self.logging.log.abandon_wide();
                self.effects.persist_channels();
            }
        }
    }
}
