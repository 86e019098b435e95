//! Counters of the server, rendered in the Prometheus text format at `GET /metrics`.
//!
//! Counters are lock-free atomics bumped on the hot path; gauges (devices online, configurations
//! pending) are computed when the page is rendered, so they cost nothing per datagram.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a received datagram was dropped silently (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Length outside 24..=1024, or not the exact length of its kind.
    Length,
    /// Unknown protocol version.
    Version,
    /// Unknown datagram kind (or a kind a server never receives, such as Welcome).
    Kind,
    /// A Hello from a device id the registry does not know.
    UnknownDevice,
    /// A tag that does not verify (Hello CMAC or session AEAD).
    Auth,
    /// A session counter already seen, or a Hello counter not above the last accepted one.
    Replay,
    /// A session datagram for a session this server does not hold.
    StaleSession,
    /// An authentic message that does not parse (truncated, trailing bytes).
    Malformed,
    /// An authentic message with a value outside its range.
    Range,
    /// A Hello over a rate limit (per device, per source address, or the session table is full).
    RateLimit,
    /// An authentic message with a type this server does not accept.
    UnknownMessage,
    /// Authentic telemetry that could not be queued because the writer is saturated.
    Overload,
}

impl DropReason {
    /// Every reason, in label order.
    pub const ALL: [DropReason; 12] = [
        DropReason::Length,
        DropReason::Version,
        DropReason::Kind,
        DropReason::UnknownDevice,
        DropReason::Auth,
        DropReason::Replay,
        DropReason::StaleSession,
        DropReason::Malformed,
        DropReason::Range,
        DropReason::RateLimit,
        DropReason::UnknownMessage,
        DropReason::Overload,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            DropReason::Length => "length",
            DropReason::Version => "version",
            DropReason::Kind => "kind",
            DropReason::UnknownDevice => "unknown_device",
            DropReason::Auth => "auth",
            DropReason::Replay => "replay",
            DropReason::StaleSession => "stale_session",
            DropReason::Malformed => "malformed",
            DropReason::Range => "range",
            DropReason::RateLimit => "rate_limit",
            DropReason::UnknownMessage => "unknown_message",
            DropReason::Overload => "overload",
        }
    }

    fn index(self) -> usize {
        DropReason::ALL
            .iter()
            .position(|r| *r == self)
            .unwrap_or_default()
    }
}

/// The ChunkAck states as the metrics name them (PROTOCOL.md 17.4; other codes: `unknown`).
pub const CHUNK_STATES: [&str; 6] = [
    "receiving",
    "accepted",
    "digest_mismatch",
    "invalid",
    "too_large",
    "unknown",
];

/// The server's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    received: AtomicU64,
    sent: AtomicU64,
    dropped: [AtomicU64; DropReason::ALL.len()],
    records_stored: AtomicU64,
    sessions_established: AtomicU64,
    acks_sent: AtomicU64,
    configs_sent: AtomicU64,
    config_synced: AtomicU64,
    config_rolled_back: AtomicU64,
    commands_sent: AtomicU64,
    write_batches: AtomicU64,
    storage_errors: AtomicU64,
    http_refused: AtomicU64,
    /// The channel extension (PROTOCOL.md 17, `udp/channels.rs`).
    channel_capabilities: AtomicU64,
    wide_batches: AtomicU64,
    wide_records: AtomicU64,
    wide_records_stored: AtomicU64,
    fault_reports: AtomicU64,
    fault_entries: AtomicU64,
    chunk_acks: AtomicU64,
    /// ChunkAcks by state (`CHUNK_STATES` order), split configurations sent (`udp/split.rs`).
    chunk_ack_states: [AtomicU64; 6],
    chunks_sent: AtomicU64,
    chunks_resent: AtomicU64,
    split_withheld: AtomicU64,
    /// Records of earlier boots (PROTOCOL.md 18, `udp/backlog.rs`).
    accepts_sent: AtomicU64,
    backlog_batches: AtomicU64,
    backlog_records: AtomicU64,
    backlog_wide_batches: AtomicU64,
    backlog_acks: AtomicU64,
}

/// Gauges computed at render time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    /// Devices with an authenticated datagram within 3 keepalive intervals.
    pub devices_online: u64,
    /// Sessions held in memory.
    pub sessions: u64,
    /// Devices whose newest configuration is neither confirmed nor rolled back.
    pub config_pending: u64,
    /// Whether the database answered this scrape's ping.
    pub db_up: bool,
    /// Times the database connection was lost and restored.
    pub db_reconnects: u64,
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Metrics {
    /// A datagram arrived.
    pub fn received(&self) {
        inc(&self.received);
    }
    /// A datagram was sent.
    pub fn sent(&self) {
        inc(&self.sent);
    }
    /// A datagram was dropped.
    pub fn dropped(&self, reason: DropReason) {
        inc(&self.dropped[reason.index()]);
    }
    /// Drops so far for `reason`.
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.dropped[reason.index()].load(Ordering::Relaxed)
    }
    /// Datagrams received so far.
    pub fn received_total(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
    /// `n` telemetry records were newly committed.
    pub fn records_stored(&self, n: u64) {
        self.records_stored.fetch_add(n, Ordering::Relaxed);
    }
    /// Records committed so far.
    pub fn records_stored_total(&self) -> u64 {
        self.records_stored.load(Ordering::Relaxed)
    }
    /// A handshake completed.
    pub fn session_established(&self) {
        inc(&self.sessions_established);
    }
    /// `n` Acks went out together (the writer's answerer): `n` datagrams sent, `n` Acks.
    pub fn acks_sent(&self, n: u64) {
        self.sent.fetch_add(n, Ordering::Relaxed);
        self.acks_sent.fetch_add(n, Ordering::Relaxed);
    }
    /// A Config was sent.
    pub fn config_sent(&self) {
        inc(&self.configs_sent);
    }
    /// A configuration version was confirmed by its device.
    pub fn config_synced(&self) {
        inc(&self.config_synced);
    }
    /// Configurations confirmed so far.
    pub fn config_synced_total(&self) -> u64 {
        self.config_synced.load(Ordering::Relaxed)
    }
    /// A device rolled a configuration back.
    pub fn config_rolled_back(&self) {
        inc(&self.config_rolled_back);
    }
    /// A Command was sent.
    pub fn command_sent(&self) {
        inc(&self.commands_sent);
    }
    /// The writer committed a batch.
    pub fn write_batch(&self) {
        inc(&self.write_batches);
    }
    /// A storage operation failed.
    pub fn storage_error(&self) {
        inc(&self.storage_errors);
    }
    /// An HTTP connection was refused: the connection bound was reached.
    pub fn http_refused(&self) {
        inc(&self.http_refused);
    }

    /// A device stated its Capabilities.
    pub fn channel_capabilities(&self) {
        inc(&self.channel_capabilities);
    }

    /// Capabilities messages received.
    pub fn channel_capabilities_total(&self) -> u64 {
        self.channel_capabilities.load(Ordering::Relaxed)
    }

    /// A WideTelemetry batch of `records` records arrived (to be stored).
    pub fn wide_telemetry(&self, records: u64) {
        inc(&self.wide_batches);
        self.wide_records.fetch_add(records, Ordering::Relaxed);
    }

    /// `n` wide records were newly stored (retransmissions of stored ones not counted).
    pub fn wide_records_stored(&self, n: u64) {
        self.wide_records_stored.fetch_add(n, Ordering::Relaxed);
    }

    /// A ChannelFaults report of `entries` channels arrived.
    pub fn channel_faults(&self, entries: u64) {
        inc(&self.fault_reports);
        self.fault_entries.fetch_add(entries, Ordering::Relaxed);
    }

    /// A ChunkAck arrived.
    pub fn chunk_ack(&self) {
        inc(&self.chunk_acks);
    }

    /// A ChunkAck in `state` arrived (PROTOCOL.md 17.4).
    pub fn chunk_ack_state(&self, state: tek_proto::channel::split::ChunkState) {
        use tek_proto::channel::split::ChunkState as S;
        let i = match state {
            S::Receiving => 0,
            S::Accepted => 1,
            S::DigestMismatch => 2,
            S::Invalid => 3,
            S::TooLarge => 4,
            S::Unknown(_) => 5,
        };
        inc(&self.chunk_ack_states[i]);
    }

    /// ChunkAcks received in state `label` (one of [`CHUNK_STATES`]).
    pub fn chunk_acks_in(&self, label: &str) -> u64 {
        CHUNK_STATES
            .iter()
            .position(|s| *s == label)
            .map_or(0, |i| self.chunk_ack_states[i].load(Ordering::Relaxed))
    }

    /// A ConfigChunk was sent; `again`: that chunk of this transfer was sent before.
    pub fn chunk_sent(&self, again: bool) {
        inc(if again {
            &self.chunks_resent
        } else {
            &self.chunks_sent
        });
    }

    /// ConfigChunks sent for the first time in a transfer.
    pub fn chunks_sent_total(&self) -> u64 {
        self.chunks_sent.load(Ordering::Relaxed)
    }

    /// ConfigChunks sent again.
    pub fn chunks_resent_total(&self) -> u64 {
        self.chunks_resent.load(Ordering::Relaxed)
    }

    /// A configuration with a channel map was due but not sent: the session's Capabilities do
    /// not allow it (`udp/split.rs`).
    pub fn split_withheld(&self) {
        inc(&self.split_withheld);
    }

    /// Times a configuration with a channel map was withheld.
    pub fn split_withheld_total(&self) -> u64 {
        self.split_withheld.load(Ordering::Relaxed)
    }

    /// An Accepts was sent (PROTOCOL.md 18.1).
    pub fn accepts_sent(&self) {
        inc(&self.accepts_sent);
    }

    /// A Backlog of `records` records in Telemetry's layout arrived (to be stored).
    pub fn backlog(&self, records: u64) {
        inc(&self.backlog_batches);
        self.backlog_records.fetch_add(records, Ordering::Relaxed);
    }

    /// A Backlog of `records` records in WideTelemetry's layout arrived (to be stored).
    pub fn backlog_wide(&self, records: u64) {
        inc(&self.backlog_wide_batches);
        self.backlog_records.fetch_add(records, Ordering::Relaxed);
    }

    /// A BacklogAck was sent.
    pub fn backlog_ack_sent(&self) {
        inc(&self.backlog_acks);
    }

    /// Renders every metric in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self, g: Gauges) -> String {
        let mut out = String::with_capacity(4096);
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        counter(
            "tek_http_connections_refused_total",
            "HTTP connections answered 503 and closed at once: the connection bound was reached.",
            load(&self.http_refused),
        );
        counter(
            "tek_datagrams_received_total",
            "UDP datagrams received.",
            load(&self.received),
        );
        counter(
            "tek_datagrams_sent_total",
            "UDP datagrams sent.",
            load(&self.sent),
        );
        counter(
            "tek_telemetry_records_stored_total",
            "Telemetry records newly committed to the database.",
            load(&self.records_stored),
        );
        counter(
            "tek_sessions_established_total",
            "Handshakes completed.",
            load(&self.sessions_established),
        );
        counter(
            "tek_acks_sent_total",
            "Telemetry Acks sent.",
            load(&self.acks_sent),
        );
        counter(
            "tek_configs_sent_total",
            "Config messages sent (first sends and re-sends).",
            load(&self.configs_sent),
        );
        counter(
            "tek_config_synced_total",
            "Configuration versions confirmed by their device.",
            load(&self.config_synced),
        );
        counter(
            "tek_config_rolled_back_total",
            "Configuration versions rolled back by their device.",
            load(&self.config_rolled_back),
        );
        counter(
            "tek_commands_sent_total",
            "Command messages sent (first sends and re-sends).",
            load(&self.commands_sent),
        );
        counter(
            "tek_write_batches_total",
            "Write transactions committed by the writer.",
            load(&self.write_batches),
        );
        counter(
            "tek_storage_errors_total",
            "Failed storage operations.",
            load(&self.storage_errors),
        );
        counter(
            "tek_channel_capabilities_total",
            "Capabilities messages received (PROTOCOL.md 17.1).",
            load(&self.channel_capabilities),
        );
        counter(
            "tek_wide_telemetry_batches_total",
            "WideTelemetry batches received (PROTOCOL.md 17.5), stored and acknowledged.",
            load(&self.wide_batches),
        );
        counter(
            "tek_wide_telemetry_records_total",
            "Records in the WideTelemetry batches received.",
            load(&self.wide_records),
        );
        counter(
            "tek_wide_telemetry_records_stored_total",
            "Wide records newly stored, of WideTelemetry and of Backlogs in its layout (a retransmission counts once).",
            load(&self.wide_records_stored),
        );
        counter(
            "tek_channel_fault_reports_total",
            "ChannelFaults messages received (PROTOCOL.md 17.8).",
            load(&self.fault_reports),
        );
        counter(
            "tek_channel_fault_entries_total",
            "Channel entries in the ChannelFaults messages received.",
            load(&self.fault_entries),
        );
        counter(
            "tek_chunk_acks_total",
            "ChunkAck messages received (PROTOCOL.md 17.4).",
            load(&self.chunk_acks),
        );
        counter(
            "tek_config_chunks_sent_total",
            "ConfigChunks sent for the first time in a transfer (PROTOCOL.md 17.4).",
            load(&self.chunks_sent),
        );
        counter(
            "tek_config_chunks_resent_total",
            "ConfigChunks sent again: missing from the latest ChunkAck, or after a digest mismatch.",
            load(&self.chunks_resent),
        );
        counter(
            "tek_config_split_withheld_total",
            "Times a configuration with a channel map was due but withheld: the session's Capabilities do not allow it.",
            load(&self.split_withheld),
        );
        counter(
            "tek_accepts_sent_total",
            "Accepts sent in answer to Capabilities with the backlog bit (PROTOCOL.md 18.1).",
            load(&self.accepts_sent),
        );
        counter(
            "tek_backlog_batches_total",
            "Backlog batches received in Telemetry's layout: records of earlier boots (PROTOCOL.md 18.2).",
            load(&self.backlog_batches),
        );
        counter(
            "tek_backlog_wide_batches_total",
            "Backlog batches received in WideTelemetry's layout: records of earlier boots (PROTOCOL.md 18.2).",
            load(&self.backlog_wide_batches),
        );
        counter(
            "tek_backlog_records_total",
            "Records in the Backlog batches received, of either layout.",
            load(&self.backlog_records),
        );
        counter(
            "tek_backlog_acks_sent_total",
            "BacklogAcks sent after the records of a Backlog were committed (PROTOCOL.md 18.4).",
            load(&self.backlog_acks),
        );
        counter(
            "tek_db_reconnects_total",
            "Times the database connection was lost and restored.",
            g.db_reconnects,
        );
        let _ = writeln!(
            out,
            "# HELP tek_datagrams_dropped_total Datagrams dropped silently, by reason.\n\
             # TYPE tek_datagrams_dropped_total counter"
        );
        for r in DropReason::ALL {
            let _ = writeln!(
                out,
                "tek_datagrams_dropped_total{{reason=\"{}\"}} {}",
                r.label(),
                self.drops(r)
            );
        }
        let _ = writeln!(
            out,
            "# HELP tek_chunk_acks_by_state_total ChunkAck messages received, by state (PROTOCOL.md 17.4).\n\
             # TYPE tek_chunk_acks_by_state_total counter"
        );
        for (i, s) in CHUNK_STATES.iter().enumerate() {
            let _ = writeln!(
                out,
                "tek_chunk_acks_by_state_total{{state=\"{s}\"}} {}",
                load(&self.chunk_ack_states[i])
            );
        }
        let mut gauge = |name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        gauge(
            "tek_devices_online",
            "Devices heard from within 3 keepalive intervals (this server).",
            g.devices_online,
        );
        gauge(
            "tek_sessions",
            "Sessions held in memory by this server.",
            g.sessions,
        );
        gauge(
            "tek_config_pending",
            "Devices whose newest configuration is not yet confirmed.",
            g.config_pending,
        );
        gauge(
            "tek_db_up",
            "1 when the database answers, 0 while it is unreachable (nothing is acknowledged).",
            u64::from(g.db_up),
        );
        out
    }
}

/// Reads one sample from a Prometheus text page: `name` with an optional `{labels}` part given
/// exactly as rendered. For tests and tools.
pub fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every reason the server counts is in the server's drop table of docs/PROTOCOL.md (8.1),
    /// so an implementer reading the metric knows what it means (`overload` once was not).
    #[test]
    fn every_reason_is_in_the_protocol_drop_table() {
        let doc = include_str!("../../../docs/PROTOCOL.md");
        let section = doc
            .split("### 8.1 On the server")
            .nth(1)
            .and_then(|s| s.split("### 8.2").next())
            .expect("section 8.1");
        // The last cell of each table row is the reason.
        let reasons: Vec<&str> = section
            .lines()
            .filter(|l| l.starts_with('|'))
            .filter_map(|l| l.trim_end().trim_end_matches('|').rsplit('|').next())
            .map(str::trim)
            .collect();
        for r in DropReason::ALL {
            let cell = format!("`{}`", r.label());
            assert!(
                reasons.contains(&cell.as_str()),
                "reason {cell} is not in the table of PROTOCOL.md 8.1"
            );
        }
    }

    #[test]
    fn renders_every_reason_and_gauge() {
        let m = Metrics::default();
        m.received();
        m.received();
        m.dropped(DropReason::Replay);
        m.dropped(DropReason::StaleSession);
        m.dropped(DropReason::StaleSession);
        m.records_stored(12);
        let page = m.render(Gauges {
            devices_online: 3,
            sessions: 4,
            config_pending: 1,
            ..Gauges::default()
        });
        assert_eq!(sample(&page, "tek_datagrams_received_total"), Some(2.0));
        assert_eq!(
            sample(
                &page,
                "tek_datagrams_dropped_total{reason=\"stale_session\"}"
            ),
            Some(2.0)
        );
        assert_eq!(
            sample(&page, "tek_datagrams_dropped_total{reason=\"replay\"}"),
            Some(1.0)
        );
        assert_eq!(
            sample(&page, "tek_datagrams_dropped_total{reason=\"auth\"}"),
            Some(0.0)
        );
        assert_eq!(
            sample(&page, "tek_telemetry_records_stored_total"),
            Some(12.0)
        );
        assert_eq!(sample(&page, "tek_devices_online"), Some(3.0));
        assert_eq!(sample(&page, "tek_config_pending"), Some(1.0));
        assert_eq!(sample(&page, "tek_config_synced_total"), Some(0.0));
        assert_eq!(sample(&page, "tek_db_up"), Some(0.0));
        assert_eq!(sample(&page, "tek_db_reconnects_total"), Some(0.0));
        for r in DropReason::ALL {
            assert!(page.contains(&format!("reason=\"{}\"", r.label())));
        }
        // Every sample line is `name[{labels}] value`.
        for line in page.lines().filter(|l| !l.starts_with('#')) {
            assert_eq!(line.split(' ').count(), 2, "{line}");
        }
    }
}
