//! The server's configuration: one serde tree with a default for every field.
//!
//! Sources, lowest priority first: the built-in defaults, an optional TOML file (`--config FILE`),
//! then command-line flags. Unknown keys in the file are an error, so a typo never silently falls
//! back to a default.
//!
//! ```toml
//! udp = "0.0.0.0:8844"        # where controllers send their datagrams
//! http = "127.0.0.1:8080"     # /healthz, /metrics (and later the web UI)
//! data = "./tek-data"         # directory holding tek.db (SQLite, WAL mode)
//! # db = "postgres://tek:secret@db.example:5432/tek"  # PostgreSQL shared by many servers
//! #                           # instead of SQLite in `data` (see docs/ARCHITECTURE.md)
//! # master_key = "/etc/tek/master.key"  # PostgreSQL: the file sealing device keys at rest,
//! #                           # the same for every server of the cluster [data/master.key]
//! retention_days = 0          # raw telemetry older than this many days is deleted at the
//!                             # hourly upkeep, both backends (0 = keep all; the rollups stay;
//!                             # also read as raw_retention_days)
//! quarter_retention_days = 0  # drop 15-minute rollups (energy, charts) older than this;
//!                             # daily rollups are kept (0 = keep all)
//! udp_buffer_bytes = 4194304  # kernel UDP buffers (capped by net.core.rmem_max/wmem_max)
//!
//! [ingest]
//! flush_interval_ms = 0       # a telemetry batch waits at most this long before its commit
//!                             # (0: group commit — whatever queued during the last commit)
//! batch_records = 500         # ... or until this many records are queued
//! queue_capacity = 10000      # write jobs waiting for the writer before new ones are dropped
//!
//! [sessions]
//! max = 100000                # sessions held in memory; Hellos beyond are dropped
//! idle_timeout_s = 600        # a session idle this long (or 3 keepalives, if longer) is removed
//! shards = 16                 # lock shards of the session table
//!
//! [push]
//! retry_initial_ms = 5000     # first re-send of an unconfirmed config/command
//! retry_max_ms = 30000        # re-send interval doubles up to this
//! tick_ms = 100               # how often due re-sends are looked for
//! poll_interval_ms = 1000     # how often the database is polled for changes saved elsewhere
//!
//! [limits]
//! hello_device_burst = 4      # Hellos a device may send at once ...
//! hello_device_interval_ms = 2000 # ... then one per this interval
//! hello_ip_burst = 40         # Hellos one source address may send at once ...
//! hello_ip_per_s = 20         # ... then this many per second
//!
//! [alarms]                    # flood suppression, delivery, SMTP relay: see alarms::config
//! [http_connections]
//! max = 1024                  # HTTP connections at once; one more is answered 503, closed
//! idle_timeout_s = 60         # a connection silent both ways this long is closed
//! request_timeout_s = 60      # a request not answered this long after its first byte: closed
//!
//! [mqtt]                      # off unless url is set; see docs/MQTT.md and crate::mqtt
//! # url = "mqtts://broker.example:8883"  # or mqtt://HOST:PORT
//! # username = "tek"           # password = "..."; ca_file = "/etc/tek/broker-ca.pem"
//! # commands = false           # accept commands on {prefix}/{site}/{device}/set
//! [web]                       # public_url, trusted_proxies, login_hashes, streams_per_user,
//!                             # metrics_token: see web::settings
//! ```

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not match the schema.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's one-line explanation.
        message: String,
    },
    /// A value is syntactically fine but unusable.
    #[error("config: {0}")]
    Invalid(String),
}

/// The whole server configuration.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// UDP address controllers send to.
    pub udp: SocketAddr,
    /// HTTP address of /healthz, /metrics and the web UI.
    pub http: SocketAddr,
    /// Data directory; the SQLite database is `tek.db` inside.
    pub data: PathBuf,
    /// PostgreSQL connection URL (`postgres://user:password@host:port/db`); when set, the
    /// database is shared with every other server using it, and `data` holds no database.
    pub db: Option<crate::storage::postgres::DbUrl>,
    /// PostgreSQL: the master key file that seals the device keys at rest (created, 0600, if
    /// missing); every server of a cluster must use the same file (a copy of it). Default
    /// `data/master.key`. SQLite keeps its master key beside the database, in `data`.
    pub master_key: Option<PathBuf>,
    /// Raw telemetry records older than this many days are deleted by the hourly upkeep
    /// (`Storage::maintain`), on both backends: PostgreSQL drops whole daily partitions and
    /// deletes the sealed chunks of those days, SQLite deletes the rows and chunks (0 = keep
    /// everything). The 15-minute and daily rollups are kept, so charts and energy over those
    /// days still answer. `raw_retention_days` is read as the same setting.
    #[serde(alias = "raw_retention_days")]
    pub retention_days: u32,
    /// The 15-minute rollups (energy and tariff figures, charts of quarter-hour steps) of days
    /// older than this are deleted at the hourly upkeep, both backends; the daily rollups stay,
    /// so long charts by day still work (0 = keep everything).
    pub quarter_retention_days: u32,
    /// Size asked for the UDP socket's kernel receive and send buffers, bytes.
    pub udp_buffer_bytes: usize,
    /// Telemetry writer.
    pub ingest: Ingest,
    /// Session table.
    pub sessions: Sessions,
    /// Configuration and command delivery.
    pub push: Push,
    /// Handshake rate limits.
    pub limits: Limits,
    /// Alarm evaluation and notification delivery (SMTP relay, flood suppression, retries).
    pub alarms: crate::alarms::AlarmsConfig,
    /// Bounds on the HTTP connections.
    pub http_connections: HttpConnections,
    /// Publishing to an MQTT broker, Home Assistant discovery, commands in (src/mqtt/).
    pub mqtt: crate::mqtt::MqttConfig,
    /// The web UI: public URL, trusted proxies, login and stream bounds, /metrics token.
    pub web: crate::http::settings::WebConfig,
}

/// Bounds on the HTTP connections (docs/SECURITY.md, resource bounds).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConnections {
    /// Connections held at once; one more is answered 503 and closed.
    pub max: usize,
    /// A connection with no byte read or written for this long is closed, seconds.
    pub idle_timeout_s: u64,
    /// A request whose answer has not begun this long after its first byte closes its
    /// connection, seconds (headers or a body trickled a byte at a time).
    pub request_timeout_s: u64,
}

impl Default for HttpConnections {
    fn default() -> Self {
        HttpConnections {
            max: 1024,
            idle_timeout_s: 60,
            request_timeout_s: 60,
        }
    }
}

/// Telemetry writer settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Ingest {
    /// Longest time a write waits for its batch to be committed, milliseconds.
    pub flush_interval_ms: u64,
    /// A batch is committed as soon as it holds this many telemetry records.
    pub batch_records: usize,
    /// Write jobs queued for the writer; when full, new telemetry is dropped (the device
    /// retransmits because it gets no Ack).
    pub queue_capacity: usize,
}

/// Session table settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Sessions {
    /// Most sessions held at once.
    pub max: usize,
    /// Seconds without an authenticated datagram before a session is removed (at least
    /// 3 keepalive intervals of the device).
    pub idle_timeout_s: u64,
    /// Number of lock shards.
    pub shards: usize,
}

/// Delivery of configurations and commands.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Push {
    /// First re-send interval, milliseconds.
    pub retry_initial_ms: u64,
    /// Largest re-send interval, milliseconds.
    pub retry_max_ms: u64,
    /// Period of the re-send timer, milliseconds.
    pub tick_ms: u64,
    /// Period of the database poll for changes saved by other processes, milliseconds.
    pub poll_interval_ms: u64,
}

/// Handshake rate limits (token buckets), applied before any cryptography.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Burst of Hellos per device.
    pub hello_device_burst: u32,
    /// One more Hello per device per this many milliseconds.
    pub hello_device_interval_ms: u64,
    /// Burst of Hellos per source address.
    pub hello_ip_burst: u32,
    /// Sustained Hellos per second per source address.
    pub hello_ip_per_s: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            udp: SocketAddr::from(([0, 0, 0, 0], tek_proto::SERVER_PORT)),
            http: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data: PathBuf::from("tek-data"),
            db: None,
            master_key: None,
            retention_days: 0,
            quarter_retention_days: 0,
            udp_buffer_bytes: 4 << 20,
            ingest: Ingest::default(),
            sessions: Sessions::default(),
            push: Push::default(),
            limits: Limits::default(),
            alarms: crate::alarms::AlarmsConfig::default(),
            http_connections: HttpConnections::default(),
            mqtt: crate::mqtt::MqttConfig::default(),
            web: crate::http::settings::WebConfig::default(),
        }
    }
}

impl Default for Ingest {
    fn default() -> Self {
        Ingest {
            // Group commit: the writer commits whatever is queued as soon as the previous commit
            // returned; under load the queue fills during each commit, so batches grow by
            // themselves without an artificial wait (`tek bench ingest`: a 20 ms linger capped
            // throughput at window / 20 ms and added 20 ms to every Ack).
            flush_interval_ms: 0,
            batch_records: 500,
            queue_capacity: 10_000,
        }
    }
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions {
            max: 100_000,
            idle_timeout_s: 600,
            shards: 16,
        }
    }
}

impl Default for Push {
    fn default() -> Self {
        Push {
            retry_initial_ms: 5_000,
            retry_max_ms: 30_000,
            tick_ms: 100,
            poll_interval_ms: 1_000,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            hello_device_burst: 4,
            hello_device_interval_ms: 2_000,
            hello_ip_burst: 40,
            hello_ip_per_s: 20,
        }
    }
}

impl Config {
    /// Parses a TOML document (missing fields take their defaults) and validates it.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, Error> {
        let cfg: Config = toml::from_str(text).map_err(|e| Error::Parse {
            path: path.to_owned(),
            // toml's messages span several lines with a source excerpt; keep the first.
            message: e.message().lines().next().unwrap_or("invalid").to_owned(),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads and parses a TOML file.
    pub fn load(path: &Path) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_toml(&text, path)
    }

    /// Checks values that parse but cannot work.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |m: &str| Err(Error::Invalid(m.to_owned()));
        self.alarms.validate().map_err(Error::Invalid)?;
        self.mqtt.validate().map_err(Error::Invalid)?;
        self.web.validate().map_err(Error::Invalid)?;
        if self.ingest.batch_records == 0 {
            return bad("ingest.batch_records must be at least 1");
        }
        if self.ingest.queue_capacity == 0 {
            return bad("ingest.queue_capacity must be at least 1");
        }
        if self.sessions.max == 0 {
            return bad("sessions.max must be at least 1");
        }
        if self.sessions.shards == 0 || self.sessions.shards > 4096 {
            return bad("sessions.shards must be within 1..=4096");
        }
        if self.push.retry_initial_ms == 0 || self.push.retry_max_ms < self.push.retry_initial_ms {
            return bad("push.retry_initial_ms must be > 0 and <= push.retry_max_ms");
        }
        if self.push.tick_ms == 0 || self.push.poll_interval_ms == 0 {
            return bad("push.tick_ms and push.poll_interval_ms must be > 0");
        }
        if self.limits.hello_device_burst == 0 || self.limits.hello_ip_burst == 0 {
            return bad("limits: bursts must be at least 1");
        }
        if self.limits.hello_device_interval_ms == 0 || self.limits.hello_ip_per_s == 0 {
            return bad("limits: rates must be > 0");
        }
        let h = &self.http_connections;
        if h.max == 0 || h.idle_timeout_s == 0 || h.request_timeout_s == 0 {
            return bad(
                "http_connections: max, idle_timeout_s and request_timeout_s must be at least 1",
            );
        }
        if self.db.is_none()
            && self
                .master_key
                .as_ref()
                .is_some_and(|k| *k != crate::vault::path_in(&self.data))
        {
            return bad("master_key is for PostgreSQL (`db`); with SQLite the master key is always master.key in `data`");
        }
        Ok(())
    }

    /// Path of the SQLite database inside the data directory.
    pub fn database_path(&self) -> PathBuf {
        self.data.join(crate::storage::sqlite::FILE_NAME)
    }

    /// A configuration for tests and embedding: both listeners on 127.0.0.1 with ports chosen by
    /// the system, data in `data`, short timers.
    pub fn for_tests(data: &Path) -> Config {
        Config {
            udp: SocketAddr::from(([127, 0, 0, 1], 0)),
            http: SocketAddr::from(([127, 0, 0, 1], 0)),
            data: data.to_owned(),
            push: Push {
                retry_initial_ms: 200,
                retry_max_ms: 800,
                tick_ms: 20,
                poll_interval_ms: 100,
            },
            limits: Limits {
                hello_device_burst: 20,
                hello_device_interval_ms: 100,
                hello_ip_burst: 1000,
                hello_ip_per_s: 1000,
            },
            ..Config::default()
        }
    }

    pub(crate) fn flush_interval(&self) -> Duration {
        Duration::from_millis(self.ingest.flush_interval_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_all_defaults() {
        let c = Config::from_toml("", Path::new("x.toml")).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.udp.port(), 8844);
        assert_eq!(c.http, "127.0.0.1:8080".parse().unwrap());
    }

    #[test]
    fn partial_file_overrides_only_its_fields() {
        let c = Config::from_toml(
            "udp = \"127.0.0.1:9000\"\n[ingest]\nbatch_records = 7\n",
            Path::new("x.toml"),
        )
        .unwrap();
        assert_eq!(c.udp, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(c.ingest.batch_records, 7);
        assert_eq!(c.ingest.flush_interval_ms, 0);
        assert_eq!(c.sessions, Sessions::default());
    }

    #[test]
    fn errors_are_one_line() {
        for text in [
            "udp = \"not an address\"",
            "bogus = 1",
            "[ingest]\nbatch_records = -1",
            "[ingest]\nbatch_records = 0",
            "[push]\nretry_initial_ms = 10\nretry_max_ms = 5",
            "udp = ",
        ] {
            let err = Config::from_toml(text, Path::new("c.toml")).unwrap_err();
            let shown = err.to_string();
            assert!(!shown.contains('\n'), "{text:?} -> {shown}");
        }
    }

    #[test]
    fn missing_file_is_an_error() {
        let err = Config::load(Path::new("/nonexistent/tek.toml")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/tek.toml"));
    }

    /// The defaults of the Hello limits are the ones docs/PROTOCOL.md states (8.1, 11.1, 12), so
    /// an implementation built from the document meets this server's limits exactly.
    #[test]
    fn the_protocol_states_the_default_hello_limits() {
        let doc = include_str!("../../../docs/PROTOCOL.md").replace('\n', " ");
        let l = Limits::default();
        let per_address = format!(
            "per source IPv4 address, a token bucket of {} Hellos refilled at {} per second",
            l.hello_ip_burst, l.hello_ip_per_s
        );
        let per_device = format!(
            "token bucket of {} with one token every {} s",
            l.hello_device_burst,
            l.hello_device_interval_ms / 1000
        );
        let timers = format!(
            "{} burst + {}/s per address; {} burst + 1 per {} s per device",
            l.hello_ip_burst,
            l.hello_ip_per_s,
            l.hello_device_burst,
            l.hello_device_interval_ms / 1000
        );
        for s in [per_address, per_device, timers] {
            assert!(doc.contains(&s), "PROTOCOL.md does not say {s:?}");
        }
    }
}
