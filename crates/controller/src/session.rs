//! Traffic in an established session.
//!
//! * Telemetry: every `batch_s` (or at once when a full datagram's worth is waiting, or at
//!   session start with a backlog) one batch of the oldest unacknowledged records. Stop-and-wait:
//!   one batch in flight, retransmitted after 3, 6 and 12 s (a new datagram each time, same
//!   records, ages recomputed); 24 s after the fourth try the server is dead. An Ack frees every
//!   record up to its `through_seq`.
//! * Keepalive every `keepalive_s` when nothing else was sent in that time, to hold the NAT
//!   mapping open. It asks for a reply only when nothing came from the server for more than
//!   2 × `keepalive_s`; such a keepalive is retried like a batch before the server is declared
//!   dead.
//! * Status at session start, whenever something in it changes, and every hour.
//! * Rekey: after 24 h in one session, or past 2^31 datagrams sent, a new attempt with the same
//!   server.
//! * Acknowledgements first: a configuration's ConfigAck (sent after the configuration was
//!   applied and queued for flash), a rollback report, the CommandAcks; then status, telemetry,
//!   keepalives ([`Up::send`]).
//!
//! [`Up`] is the session and its small poll; [`Outbox`] holds what waits to be said in it.

use crate::attempt::Attempt;
use crate::channel_part::Backlog;
use crate::log::{Log, LogRecord};
use crate::Stats;
use crate::{Endpoint, Iface};
use heapless::Deque;
use tek_proto::channel::split::{Capabilities, ChunkAck};
use tek_proto::channel::ChannelMessage;
use tek_proto::message::config::Config;
use tek_proto::message::status::Status;
use tek_proto::message::{CommandResult, ConfigResult, Message, TelemetryWriter};
use tek_proto::session::Session;
use tek_proto::wire::data::{HEADER_LEN, MAX_MESSAGE};

/// Tries of a batch or reply-wanted keepalive before the server is dead.
pub const TRIES: u8 = 4;
/// First retransmission timeout; doubles with each try.
pub const RETRY_BASE_MS: u64 = 3_000;
/// Status is re-sent this often (traffic counters).
pub const STATUS_EVERY_MS: u64 = 3_600_000;
/// A session is renewed after this long.
pub const REKEY_AFTER_MS: u64 = 24 * 3_600_000;
/// A session is renewed once this many datagrams were sent in it.
pub const REKEY_AFTER_DATAGRAMS: u32 = 1 << 31;
/// Unsent records that make a batch due at once (about one datagram's worth: a one-minute record
/// takes 7 to 10 bytes in a batch, a batch holds up to 1001 bytes).
pub const FULL_BATCH: usize = 100;
/// Most records one batch carries (the count field is a byte).
pub const MAX_BATCH: usize = 255;

/// Timeout after try number `tries` (1-based): 3, 6, 12, 24 s.
pub fn retry_timeout(tries: u8) -> u64 {
    RETRY_BASE_MS << u32::from(tries.saturating_sub(1).min(8))
}

/// Silence after which a keepalive asks for a Pong: `max(2 x keepalive, batch + keepalive)`
/// (PROTOCOL.md 10.6). While batches are acked on time no keepalive needs an answer, which keeps
/// Pongs out of the monthly budget; a server that stops answering is still found within a batch
/// interval plus a keepalive.
pub fn reply_after_ms(keepalive_ms: u64, batch_ms: u64) -> u64 {
    (2 * keepalive_ms).max(batch_ms + keepalive_ms)
}

/// The telemetry batch in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InFlight {
    /// First record sequence number.
    pub first: u32,
    /// Last record sequence number.
    pub last: u32,
    /// Tries so far.
    pub tries: u8,
    /// When to retransmit (or declare the server dead).
    pub next_at: u64,
    /// Wide records (WideTelemetry), not the five-channel log.
    pub wide: bool,
    /// An earlier boot's records (a Backlog), not the current boot's.
    pub boot: Option<u32>,
}

/// Whether this session's server takes earlier boots' records (PROTOCOL.md 18.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BacklogGate {
    /// Capabilities sent `tries` times, no Accepts yet; the next send (or the verdict) at
    /// `next_at`.
    Asking {
        /// Capabilities sent so far.
        tries: u8,
        /// When to send again, or give up.
        next_at: u64,
    },
    /// Accepts arrived: Backlog may go.
    Open,
    /// No Accepts after every try: earlier boots' records are dropped.
    Refused,
}

/// A reply-wanted keepalive waiting for any answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probing {
    /// Tries so far.
    pub tries: u8,
    /// When to retry (or declare the server dead).
    pub next_at: u64,
}

/// An established session.
#[derive(Debug, Clone)]
pub struct Up {
    /// Interface in use.
    pub iface: Iface,
    /// Index of the server in the list.
    pub server: u8,
    /// The server's address.
    pub to: Endpoint,
    /// Our source port.
    pub port: u16,
    /// The crypto session.
    pub session: Session,
    /// The attempt that made it (a later Welcome of the same attempt replaces the session).
    pub attempt: Attempt,
    /// Hello counter the session was made with.
    pub counter: u64,
    /// When the session started.
    pub started: u64,
    /// Last authenticated datagram from the server.
    pub last_rx: u64,
    /// Last datagram sent.
    pub last_tx: u64,
    /// Batch in flight.
    pub batch: Option<InFlight>,
    /// When the next batch is due.
    pub next_batch_at: u64,
    /// Keepalive waiting for a reply.
    pub probing: Option<Probing>,
    /// A Status went out in this session (ChannelFaults follow the first one if any counter
    /// is above 0).
    pub status_sent: bool,
    /// Whether the server takes earlier boots' records.
    pub backlog_gate: BacklogGate,
}

impl Up {
    /// A new session from an attempt's Welcome.
    pub fn new(attempt: Attempt, session: Session, counter: u64, now: u64) -> Up {
        Up {
            iface: attempt.iface,
            server: attempt.server,
            to: attempt.to,
            port: attempt.port,
            session,
            attempt,
            counter,
            started: now,
            last_rx: now,
            last_tx: now,
            batch: None,
            // A backlog from before the session goes out at once.
            next_batch_at: now,
            probing: None,
            status_sent: false,
            backlog_gate: BacklogGate::Asking {
                tries: 0,
                next_at: now,
            },
        }
    }

    /// Whether the server stopped answering.
    pub fn dead(&self, now: u64) -> bool {
        let over = |tries: u8, next_at: u64| tries >= TRIES && now >= next_at;
        self.batch.is_some_and(|b| over(b.tries, b.next_at))
            || self.probing.is_some_and(|p| over(p.tries, p.next_at))
    }

    /// Whether the session should be renewed.
    pub fn rekey_due(&self, now: u64) -> bool {
        now.saturating_sub(self.started) >= REKEY_AFTER_MS
            || self.session.send_counter() >= REKEY_AFTER_DATAGRAMS
    }

    /// Any authenticated datagram from the server: it is alive.
    pub fn heard(&mut self, now: u64) {
        self.last_rx = now;
        self.probing = None;
    }
}

/// What waits to be said to the server, kept across sessions: acknowledgements and status.
#[derive(Debug)]
pub struct Outbox {
    /// The answer to the last configuration received.
    pub config_ack: Option<(u32, ConfigResult)>,
    /// A version rolled back, to report.
    pub rollback_report: Option<u32>,
    /// Answers to commands.
    pub command_acks: Deque<(u32, CommandResult), 4>,
    /// The last command carried out and its result (a repeated id is answered, not redone).
    pub last_command: Option<(u32, CommandResult)>,
    /// Status changed (or was asked for): send it.
    pub status_due: bool,
    /// When status is sent again anyway.
    pub next_status_at: u64,
    /// What the device states it can run (PROTOCOL.md 17.1); `None`: it states nothing, as a
    /// version 1 device.
    pub capabilities: Option<Capabilities>,
    /// A session began: state the capabilities before its first Status.
    pub capabilities_due: bool,
    /// The answer to the last configuration chunk.
    pub chunk_ack: Option<ChunkAck>,
    /// ChannelFaults follow the Status just sent (PROTOCOL.md 17.8).
    pub faults_due: bool,
}

impl Outbox {
    /// The all-zero placeholder of `Controller::blank` (`Some`: `None` is a non-zero niche).
    pub const BLANK: Outbox = Outbox {
        config_ack: Some((0, ConfigResult::Applied)),
        rollback_report: None,
        command_acks: Deque::new(),
        last_command: Some((0, CommandResult::Done)),
        status_due: false,
        next_status_at: 0,
        // `Capabilities` has no niche, so `None` is the all-zero tag.
        capabilities: None,
        capabilities_due: false,
        // `Some`: `ChunkAck`'s state has a niche, so `None` is a non-zero tag.
        chunk_ack: Some(ChunkAck {
            version: 0,
            state: tek_proto::channel::split::ChunkState::Receiving,
            received: 0,
        }),
        faults_due: false,
    };

    /// Power-up: nothing to say but status.
    pub fn start(&mut self, now: u64) {
        let Outbox {
            config_ack,
            rollback_report,
            command_acks,
            last_command,
            status_due,
            next_status_at,
            capabilities,
            capabilities_due,
            chunk_ack,
            faults_due,
        } = self;
        *config_ack = None;
        *rollback_report = None;
        command_acks.clear();
        *last_command = None;
        *status_due = true;
        *next_status_at = now;
        *capabilities = None;
        *capabilities_due = false;
        *chunk_ack = None;
        *faults_due = false;
    }

    /// Whether an acknowledgement or status is waiting.
    pub fn pending(&self) -> bool {
        self.config_ack.is_some()
            || self.capabilities_due
            || self.chunk_ack.is_some()
            || self.faults_due
            || self.rollback_report.is_some()
            || !self.command_acks.is_empty()
            || self.status_due
    }

    /// Command `id`'s result, if it was the last one carried out (a repeat).
    pub fn repeated(&self, id: u32) -> Option<CommandResult> {
        match self.last_command {
            Some((last, result)) if last == id => Some(result),
            _ => None,
        }
    }

    /// Queues command `id`'s acknowledgement (the oldest one waiting makes room).
    pub fn command_done(&mut self, id: u32, result: CommandResult) {
        if self.command_acks.is_full() {
            self.command_acks.pop_front();
        }
        let _ = self.command_acks.push_back((id, result));
    }

    /// The next message to send, acknowledgements first, then `status` (the report, if due).
    fn next(&mut self, now: u64, status: Option<Status>) -> Option<Message<'static>> {
        if let Some((version, result)) = self.config_ack.take() {
            return Some(Message::ConfigAck { version, result });
        }
        if let Some(version) = self.rollback_report.take() {
            return Some(Message::ConfigAck {
                version,
                result: ConfigResult::RolledBack,
            });
        }
        if let Some((id, result)) = self.command_acks.pop_front() {
            return Some(Message::CommandAck { id, result });
        }
        let s = status?;
        self.status_due = false;
        self.next_status_at = now + STATUS_EVERY_MS;
        Some(Message::Status(s))
    }
}

/// What the session's poll needs from the rest of the controller.
pub struct Context<'a> {
    /// The records to send: the telemetry log, or the channel part's wide log.
    pub log: &'a dyn Backlog,
    /// The running configuration's version (in keepalives).
    pub config_version: u32,
    /// Keepalive interval.
    pub keepalive_ms: u64,
    /// Batch interval.
    pub batch_ms: u64,
}

impl<'a> Context<'a> {
    /// The context of configuration `version`, `running`.
    pub fn new(log: &'a dyn Backlog, config_version: u32, running: &Config) -> Self {
        Context {
            log,
            config_version,
            keepalive_ms: u64::from(running.keepalive_s) * 1000,
            batch_ms: u64::from(running.batch_s) * 1000,
        }
    }
}

fn seal(session: &mut Session, msg: &Message<'_>, tx: &mut [u8]) -> Option<usize> {
    session.seal_message(msg, tx).ok()
}

impl Up {
    /// The next datagram of the session, if one is due, into `tx`: an acknowledgement or
    /// status from `outbox` (`status`: the report, if it is due), else a telemetry batch, else a
    /// keepalive. Returns (interface, source port, destination, length).
    /// `faults`: while a split configuration runs, whether a channel's fault counter changed
    /// since the last ChannelFaults and whether any is above 0 (the ChannelFaults that follow a
    /// Status are then due: [`Outbox::faults_due`]; the controller writes them).
    #[allow(clippy::too_many_arguments)]
    pub fn send(
        &mut self,
        now: u64,
        outbox: &mut Outbox,
        status: Option<Status>,
        cx: &Context<'_>,
        faults: Option<(bool, bool)>,
        stats: &mut Stats,
        tx: &mut [u8],
    ) -> Option<(Iface, u16, Endpoint, usize)> {
        // Earlier boots' records wait for the server's Accepts (PROTOCOL.md 18.1): the
        // Capabilities are stated again until it comes, or the server is taken not to have it.
        let earlier = cx.log.earlier_boot().is_some();
        let mut ask = false;
        if let (true, BacklogGate::Asking { tries, next_at }) = (earlier, self.backlog_gate) {
            if tries >= TRIES && now >= next_at {
                self.backlog_gate = BacklogGate::Refused;
            } else {
                ask = now >= next_at && tries < TRIES;
            }
        }
        let caps = (outbox.capabilities_due || ask)
            .then_some(outbox.capabilities)
            .flatten();
        outbox.capabilities_due = false;
        if let (true, Some(_), BacklogGate::Asking { tries, .. }) =
            (earlier, caps, self.backlog_gate)
        {
            self.backlog_gate = BacklogGate::Asking {
                tries: tries + 1,
                next_at: now + retry_timeout(tries + 1),
            };
        }
        let n = if let Some(caps) = caps {
            // Right after the handshake, before the first Status (PROTOCOL.md 17.1).
            let body = tx.get_mut(HEADER_LEN..HEADER_LEN + MAX_MESSAGE)?;
            let len = ChannelMessage::Capabilities(caps).emit(body).ok()?;
            self.session.seal_in_place(tx, len).ok()
        } else if let Some(ack) = outbox.chunk_ack.take() {
            // Written directly, not through `ChannelMessage::emit`: a device without a channel
            // part then carries no encoder of the other extension messages.
            let body = tx.get_mut(HEADER_LEN..HEADER_LEN + MAX_MESSAGE)?;
            let (head, rest) = body.split_first_mut()?;
            *head = tek_proto::channel::code::CHUNK_ACK;
            let len = 1 + ack.emit(rest)?;
            self.session.seal_in_place(tx, len).ok()
        } else if let Some(msg) = outbox.next(now, status) {
            if matches!(msg, Message::Status(_)) {
                // ChannelFaults follow the Status when a counter changed since the last ones,
                // or with the session's first Status when any is above 0 (17.8), and only
                // while a split configuration runs (17.1).
                if let Some((changed, any)) = faults {
                    outbox.faults_due = changed || (any && !self.status_sent);
                }
                self.status_sent = true;
            }
            seal(&mut self.session, &msg, tx)
        } else {
            self.batch(now, cx, stats, tx)
                .or_else(|| self.keepalive(now, cx, tx))
        }?;
        self.last_tx = now;
        Some((self.iface, self.port, self.to, n))
    }

    /// Seals the message of `len` bytes written after the header of `tx` (one the controller
    /// wrote itself, e.g. ChannelFaults).
    pub fn send_written(
        &mut self,
        now: u64,
        tx: &mut [u8],
        len: usize,
    ) -> Option<(Iface, u16, Endpoint, usize)> {
        let n = self.session.seal_in_place(tx, len).ok()?;
        self.last_tx = now;
        Some((self.iface, self.port, self.to, n))
    }

    /// A telemetry batch: the one in flight again when its retry is due, or a new one.
    fn batch(
        &mut self,
        now: u64,
        cx: &Context<'_>,
        stats: &mut Stats,
        tx: &mut [u8],
    ) -> Option<usize> {
        let log = cx.log;
        let now_s = (now / 1000) as u32;
        let body = tx.get_mut(HEADER_LEN..HEADER_LEN + MAX_MESSAGE)?;
        if self.batch.is_some_and(|b| b.wide != log.wide()) {
            // The controller changed mode (a split configuration came or went): the records of
            // that batch are gone with the mode (counted as drops); start with this log.
            self.batch = None;
        }
        match self.batch {
            Some(b) if now >= b.next_at && b.tries < TRIES => {
                match log.write(b.boot, b.first, b.last, now_s, body) {
                    Some((len, first, _)) => {
                        stats.batch_retries += 1;
                        self.batch = Some(InFlight {
                            first,
                            last: b.last,
                            tries: b.tries + 1,
                            next_at: now + retry_timeout(b.tries + 1),
                            wide: b.wide,
                            boot: b.boot,
                        });
                        self.session.seal_in_place(tx, len).ok()
                    }
                    None => {
                        // Every record of the batch was dropped from a full log meanwhile.
                        self.batch = None;
                        None
                    }
                }
            }
            None if !log.is_empty() && (now >= self.next_batch_at || backlog_ready(log)) => {
                let boot = log.earlier_boot();
                if boot.is_some() && self.backlog_gate != BacklogGate::Open {
                    return None;
                }
                let (len, first, last) = log.write(boot, log.oldest(), u32::MAX, now_s, body)?;
                stats.batches += 1;
                stats.records_sent += last.wrapping_sub(first) + 1;
                self.batch = Some(InFlight {
                    first,
                    last,
                    tries: 1,
                    next_at: now + retry_timeout(1),
                    wide: log.wide(),
                    boot,
                });
                self.next_batch_at = now + cx.batch_ms;
                self.session.seal_in_place(tx, len).ok()
            }
            _ => None,
        }
    }

    /// A keepalive: the retry of one that wants a reply, or a new one when nothing was sent for
    /// a keepalive interval (wanting a reply after a long silence from the server).
    fn keepalive(&mut self, now: u64, cx: &Context<'_>, tx: &mut [u8]) -> Option<usize> {
        let reply_wanted =
            if let Some(p) = self.probing.filter(|p| now >= p.next_at && p.tries < TRIES) {
                self.probing = Some(Probing {
                    tries: p.tries + 1,
                    next_at: now + retry_timeout(p.tries + 1),
                });
                true
            } else if self.probing.is_none() && now >= self.last_tx + cx.keepalive_ms {
                let reply_wanted =
                    now.saturating_sub(self.last_rx) > reply_after_ms(cx.keepalive_ms, cx.batch_ms);
                if reply_wanted {
                    self.probing = Some(Probing {
                        tries: 1,
                        next_at: now + retry_timeout(1),
                    });
                }
                reply_wanted
            } else {
                return None;
            };
        seal(
            &mut self.session,
            &Message::Keepalive {
                reply_wanted,
                config_version: cx.config_version,
            },
            tx,
        )
    }

    /// An Ack (`boot` `None`) or a BacklogAck (`Some`) for records through `through_seq`: the
    /// batch in flight is done if it is of that boot and the ack covers it.
    pub fn acked(&mut self, boot: Option<u32>, through_seq: u32) {
        if let Some(b) = self.batch {
            if b.boot == boot && (through_seq.wrapping_sub(b.last) as i32) >= 0 {
                self.batch = None;
            }
        }
    }

    /// When [`send`](Self::send) has something to do (0: now, with `outbox_pending`: an
    /// acknowledgement or status waits).
    pub fn poll_at(&self, outbox_pending: bool, cx: &Context<'_>) -> u64 {
        if outbox_pending {
            return 0;
        }
        let mut at = (self.started + REKEY_AFTER_MS).min(self.last_tx + cx.keepalive_ms);
        let earlier = cx.log.earlier_boot().is_some();
        if let (true, BacklogGate::Asking { next_at, .. }) = (earlier, self.backlog_gate) {
            at = at.min(next_at);
        }
        // No batch before the verdict (or, after a refusal, until the records are dropped).
        let gated = earlier && self.backlog_gate != BacklogGate::Open;
        match self.batch {
            Some(b) => at = at.min(b.next_at),
            None if gated => {}
            None if backlog_ready(cx.log) => return 0,
            None if !cx.log.is_empty() => at = at.min(self.next_batch_at),
            None => {}
        }
        if let Some(p) = self.probing {
            at = at.min(p.next_at);
        }
        at
    }
}

/// Whether the log's records go out without waiting for the batch interval: a full batch, or
/// records of an earlier boot (PROTOCOL.md 18). The interval gathers new records into one
/// message; an earlier boot's are all logged already and go one Backlog per boot, so each is
/// sent as soon as the one before is acknowledged — a device back after many restarts drains
/// them in as many round trips, not as many batch intervals, in the same messages.
fn backlog_ready(log: &dyn Backlog) -> bool {
    log.len() >= FULL_BATCH || log.earlier_boot().is_some()
}

/// Writes a Telemetry message (type byte and body) with the records from `first` (or the oldest
/// still held, if that was dropped) up to `last` into `out`. Returns the message length and the
/// sequence numbers actually included.
pub fn write_batch<const N: usize>(
    log: &Log<N>,
    first: u32,
    last: u32,
    now_s: u32,
    out: &mut [u8],
) -> Option<(usize, u32, u32)> {
    let start = if log.get(first).is_some() {
        first
    } else {
        log.first_seq()
    };
    let (head, body) = out.split_first_mut()?;
    *head = tek_proto::message::code::TELEMETRY;
    let mut w = TelemetryWriter::new(body, start, LogRecord::CHANNELS, now_s)?;
    let mut seq = start;
    let mut included = None;
    while usize::from(w.count()) < MAX_BATCH && seq.wrapping_sub(start) <= last.wrapping_sub(start)
    {
        let Some(rec) = log.get(seq) else { break };
        if !w.push(rec.time_s.min(now_s), &rec.values()) {
            break;
        }
        included = Some(seq);
        seq = seq.wrapping_add(1);
    }
    let through = included?;
    Some((1 + w.len(), start, through))
}

/// The five-channel log sends Telemetry (0x01) batches.
impl<const N: usize> Backlog for Log<N> {
    fn wide(&self) -> bool {
        false
    }
    fn len(&self) -> usize {
        Log::len(self)
    }
    fn oldest(&self) -> u32 {
        self.first_seq()
    }
    fn write(
        &self,
        _boot: Option<u32>,
        first: u32,
        last: u32,
        now_s: u32,
        out: &mut [u8],
    ) -> Option<(usize, u32, u32)> {
        write_batch(self, first, last, now_s, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tek_proto::message::Message;

    #[test]
    fn reply_threshold_follows_the_longer_of_the_two_rules() {
        assert_eq!(reply_after_ms(60_000, 300_000), 360_000);
        assert_eq!(reply_after_ms(60_000, 30_000), 120_000);
    }

    #[test]
    fn retry_schedule() {
        assert_eq!(
            [1, 2, 3, 4].map(retry_timeout),
            [3_000, 6_000, 12_000, 24_000]
        );
    }

    #[test]
    fn batch_fills_one_datagram() {
        let mut log = Log::<400>::new();
        for i in 0..400u32 {
            log.push(LogRecord {
                time_s: i * 60,
                energy_wh: 100_000 + i * 25,
                power_w: 1500 + (i % 7) as u16,
                water_cc: 2650 + (i % 5) as i16,
                air_cc: 1800 - (i % 11) as i16,
                relays: (i % 3) as u8,
            });
        }
        let mut out = [0u8; tek_proto::wire::data::MAX_MESSAGE];
        let (n, first, last) = write_batch(&log, 0, u32::MAX, 400 * 60, &mut out).unwrap();
        assert_eq!(first, 0);
        assert!(last as usize + 1 >= FULL_BATCH, "{last}");
        let Message::Telemetry(t) = Message::parse(&out[..n]).unwrap() else {
            panic!()
        };
        assert_eq!(t.last_seq(), last);
        let r: std::vec::Vec<_> = t.records().collect();
        assert_eq!(r[3].values[1], 100_075);
        assert_eq!(r[3].age_s, 400 * 60 - 180);
        // A limit on the last record is honoured; a dropped first record is skipped.
        let (_, f, l) = write_batch(&log, 5, 9, 400 * 60, &mut out).unwrap();
        assert_eq!((f, l), (5, 9));
        log.ack_through(20).unwrap();
        let (_, f, _) = write_batch(&log, 5, 30, 400 * 60, &mut out).unwrap();
        assert_eq!(f, 21);
        log.ack_through(399).unwrap();
        assert!(write_batch(&log, 0, 500, 400 * 60, &mut out).is_none());
    }
}
