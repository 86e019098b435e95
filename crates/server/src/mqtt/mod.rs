//! MQTT: every committed record, device status change and alarm event published to a broker;
//! Home Assistant discovery; optionally, commands in (docs/MQTT.md has the topic tree and the
//! payloads).
//!
//! Layers: the producers (the writer after each commit, the API after a configuration is saved,
//! an alarm acknowledged or a device renamed, the alarm task after it recorded a raise or clear, the availability
//! watcher here) call [`Publisher::offer`], which never blocks: a bounded queue in front of the
//! connection task, and what does not fit is dropped and counted (`tek_mqtt_dropped_total`). The
//! connection task ([`client`]) turns events into topics and JSON ([`payload`]), keeps the
//! connection to the broker (reconnecting with back-off), publishes the discovery documents
//! ([`discovery`]) at every connect, and hands command messages to [`commands`].
//!
//! Guarantees: a record is published only after its commit returned, and only by the server
//! whose commit stored it (a retransmission that another server had already stored is not new
//! there, so it is not published twice across a fleet). A broker that is slow or away never slows
//! ingest; what is published is at least once (QoS 1) while the broker is reachable.

pub mod client;
pub mod commands;
pub mod discovery;
pub mod link;
pub mod payload;

pub use link::Protocol;

use crate::storage::{TelemetryRow, WideRow};
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tek_proto::message::Status;
use tokio::sync::mpsc;

/// The `[mqtt]` section of the configuration. Without `url`, nothing is published.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    /// `mqtt://HOST:PORT` (TCP, default port 1883) or `mqtts://HOST:PORT` (TLS, default 8883).
    pub url: Option<String>,
    /// `"3.1.1"` (default) or `"5"`.
    pub protocol: Protocol,
    /// User name for the broker.
    pub username: Option<String>,
    /// Password for the broker.
    pub password: Option<String>,
    /// PEM file of the CA certificates that sign the broker's certificate (`mqtts://`); default:
    /// the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Client identifier; default `tek-` and 8 random hex digits (unique per server of a fleet).
    pub client_id: Option<String>,
    /// First segment of every topic.
    pub prefix: String,
    /// Events waiting for the connection task; when full, new ones are dropped and counted.
    pub queue_capacity: usize,
    /// MQTT keep-alive interval, seconds.
    pub keepalive_s: u64,
    /// First wait before reconnecting, milliseconds (doubles up to `retry_max_ms`).
    pub retry_initial_ms: u64,
    /// Longest wait between reconnection attempts, milliseconds.
    pub retry_max_ms: u64,
    /// Publish Home Assistant discovery documents.
    pub discovery: bool,
    /// Topic prefix Home Assistant listens on for discovery.
    pub discovery_prefix: String,
    /// Accept commands on `{prefix}/{site}/{device}/set` (each must carry an API token).
    pub commands: bool,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            url: None,
            protocol: Protocol::V311,
            username: None,
            password: None,
            ca_file: None,
            client_id: None,
            prefix: "tek".into(),
            queue_capacity: 10_000,
            keepalive_s: 30,
            retry_initial_ms: 500,
            retry_max_ms: 30_000,
            discovery: true,
            discovery_prefix: "homeassistant".into(),
            commands: false,
        }
    }
}

/// Where the broker is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// `mqtts://`.
    pub tls: bool,
}

impl BrokerUrl {
    /// Parses `mqtt://HOST[:PORT]` or `mqtts://HOST[:PORT]` (IPv6 hosts in brackets).
    pub fn parse(url: &str) -> Result<BrokerUrl, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("mqtts://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("mqtt://") {
            (false, r)
        } else {
            return Err(format!(
                "mqtt.url {url:?} must start with mqtt:// or mqtts://"
            ));
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '@', '?', '#']) {
            return Err(format!(
                "mqtt.url {url:?}: only HOST:PORT after the scheme (credentials go in mqtt.username and mqtt.password)"
            ));
        }
        let default_port = if tls { 8883 } else { 1883 };
        let (host, port) = if let Some(r) = rest.strip_prefix('[') {
            let (h, after) = r
                .split_once(']')
                .ok_or_else(|| format!("mqtt.url {url:?}: unclosed ["))?;
            match after.strip_prefix(':') {
                Some(p) => (h, Some(p)),
                None if after.is_empty() => (h, None),
                None => return Err(format!("mqtt.url {url:?}: bad port")),
            }
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        if host.is_empty() {
            return Err(format!("mqtt.url {url:?} has no host"));
        }
        let port = match port {
            None => default_port,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("mqtt.url {url:?}: bad port {p:?}"))?,
        };
        Ok(BrokerUrl {
            host: host.to_owned(),
            port,
            tls,
        })
    }
}

impl MqttConfig {
    /// Checks values that parse but cannot work.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(u) = &self.url {
            BrokerUrl::parse(u)?;
        }
        if self.password.is_some() && self.username.is_none() {
            return Err("mqtt.password needs mqtt.username".into());
        }
        let topic_ok = |s: &str| {
            !s.is_empty()
                && !s.contains(['+', '#', '\0'])
                && !s.starts_with('/')
                && !s.ends_with('/')
        };
        if !topic_ok(&self.prefix) || !topic_ok(&self.discovery_prefix) {
            return Err(
                "mqtt.prefix and mqtt.discovery_prefix must be non-empty topic levels without +, # or a leading/trailing /"
                    .into(),
            );
        }
        if self.queue_capacity == 0 {
            return Err("mqtt.queue_capacity must be at least 1".into());
        }
        if self.keepalive_s < 5 {
            return Err("mqtt.keepalive_s must be at least 5".into());
        }
        if self.retry_initial_ms == 0 || self.retry_max_ms < self.retry_initial_ms {
            return Err("mqtt.retry_initial_ms must be > 0 and <= mqtt.retry_max_ms".into());
        }
        Ok(())
    }
}

/// The configuration states a device's configuration goes through, as published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigEvent {
    /// Saved, waiting for the device.
    Pending,
    /// The device runs it.
    Applied,
    /// The device tried it and went back to the previous one.
    RolledBack,
}

/// The alarm events published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlarmEvent {
    /// Raised.
    Raised,
    /// Acknowledged by a user.
    Acknowledged,
    /// Cleared.
    Cleared,
}

/// Something to publish.
#[derive(Debug, Clone)]
pub enum Event {
    /// Records newly committed by this server.
    Records(Vec<TelemetryRow>),
    /// Wide records (a device's own channels) committed by this server.
    Wide(Vec<WideRow>),
    /// A committed status report.
    Status {
        /// Device.
        device_id: u32,
        /// The report.
        status: Status,
        /// When it was stored, Unix seconds.
        at: i64,
    },
    /// A device came online on this server or went offline.
    Availability {
        /// Device.
        device_id: u32,
        /// Online now.
        online: bool,
        /// When, Unix seconds.
        at: i64,
    },
    /// A configuration was saved, applied or rolled back.
    Config {
        /// Device.
        device_id: u32,
        /// Configuration version.
        version: u32,
        /// What happened.
        state: ConfigEvent,
        /// When, Unix seconds.
        at: i64,
    },
    /// An alarm was raised, acknowledged or cleared.
    Alarm {
        /// Device.
        device_id: u32,
        /// Alarm id.
        alarm_id: i64,
        /// Rule id.
        rule_id: i64,
        /// What happened.
        event: AlarmEvent,
        /// Severity name.
        severity: String,
        /// The alarm's message.
        message: String,
        /// When, Unix seconds.
        at: i64,
    },
    /// A device was renamed: its Home Assistant discovery documents carry the name, so they
    /// are published again.
    Renamed {
        /// Device.
        device_id: u32,
    },
}

impl Event {
    fn weight(&self) -> u64 {
        match self {
            Event::Records(r) => r.len() as u64,
            Event::Wide(r) => r.len() as u64,
            _ => 1,
        }
    }
}

/// Counters of the MQTT integration, for `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    /// Messages handed to the client library.
    pub published: AtomicU64,
    /// Events (records count one each) dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Connections established.
    pub connects: AtomicU64,
    /// Connection failures.
    pub connection_errors: AtomicU64,
    /// 1 while connected.
    pub connected: AtomicU64,
    /// Commands accepted.
    pub commands_accepted: AtomicU64,
    /// Commands refused.
    pub commands_refused: AtomicU64,
}

impl Counters {
    /// The counters in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, kind, help, c) in [
            (
                "tek_mqtt_published_total",
                "counter",
                "MQTT messages handed to the client (QoS 1).",
                &self.published,
            ),
            (
                "tek_mqtt_dropped_total",
                "counter",
                "Records and events not published because the MQTT queue was full.",
                &self.dropped,
            ),
            (
                "tek_mqtt_connects_total",
                "counter",
                "Connections to the MQTT broker established.",
                &self.connects,
            ),
            (
                "tek_mqtt_connection_errors_total",
                "counter",
                "Failed or lost connections to the MQTT broker.",
                &self.connection_errors,
            ),
            (
                "tek_mqtt_connected",
                "gauge",
                "1 while connected to the MQTT broker.",
                &self.connected,
            ),
            (
                "tek_mqtt_commands_accepted_total",
                "counter",
                "Commands received over MQTT and queued or saved.",
                &self.commands_accepted,
            ),
            (
                "tek_mqtt_commands_refused_total",
                "counter",
                "Commands received over MQTT and refused.",
                &self.commands_refused,
            ),
        ] {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}\n",
                c.load(Ordering::Relaxed)
            ));
        }
        out
    }
}

/// The feeding end: cheap to clone; a no-op when MQTT is not configured.
#[derive(Debug, Clone)]
pub struct Publisher {
    tx: Option<mpsc::Sender<Event>>,
    /// Counters (shared with the connection task).
    pub counters: Arc<Counters>,
}

impl Publisher {
    /// A publisher that publishes nothing (no `[mqtt] url`).
    pub fn disabled() -> Publisher {
        Publisher {
            tx: None,
            counters: Arc::default(),
        }
    }

    /// A publisher and the receiving end of its queue.
    pub(crate) fn channel(capacity: usize) -> (Publisher, mpsc::Receiver<Event>) {
        let (tx, rx) = mpsc::channel(capacity);
        (
            Publisher {
                tx: Some(tx),
                counters: Arc::default(),
            },
            rx,
        )
    }

    /// Whether events are published at all.
    pub fn active(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues an event; never blocks (a full queue drops it and counts it).
    pub fn offer(&self, e: Event) {
        let Some(tx) = &self.tx else {
            return;
        };
        let w = e.weight();
        if w == 0 {
            return;
        }
        if tx.try_send(e).is_err() {
            self.counters.dropped.fetch_add(w, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls() {
        let u = BrokerUrl::parse("mqtt://127.0.0.1:1884").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.tls), ("127.0.0.1", 1884, false));
        let u = BrokerUrl::parse("mqtts://broker.example").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.tls),
            ("broker.example", 8883, true)
        );
        let u = BrokerUrl::parse("mqtt://[::1]:9/").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 9));
        assert_eq!(BrokerUrl::parse("mqtt://h").unwrap().port, 1883);
        for bad in [
            "http://h:1",
            "mqtt://",
            "mqtt://h:0",
            "mqtt://h:x",
            "mqtt://u:p@h:1",
            "mqtt://h:1/topic",
        ] {
            assert!(BrokerUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn config_from_toml() {
        let path = std::path::Path::new("tek.toml");
        let c = crate::config::Config::from_toml(
            "[mqtt]\nurl = \"mqtts://b:8883\"\nprotocol = \"5\"\nusername = \"u\"\npassword = \"p\"\ncommands = true\n",
            path,
        )
        .unwrap();
        assert_eq!(c.mqtt.protocol, Protocol::V5);
        assert!(c.mqtt.commands);
        let c = crate::config::Config::from_toml("", path).unwrap();
        assert_eq!((c.mqtt.protocol, c.mqtt.url), (Protocol::V311, None));
        for bad in [
            "[mqtt]\nprotocol = \"4\"\n",
            "[mqtt]\nurl = \"ftp://x\"\n",
            "[mqtt]\nbogus = 1\n",
        ] {
            assert!(
                crate::config::Config::from_toml(bad, path).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn config_checks() {
        assert!(MqttConfig::default().validate().is_ok());
        let bad = [
            MqttConfig {
                prefix: "a/#".into(),
                ..MqttConfig::default()
            },
            MqttConfig {
                password: Some("x".into()),
                ..MqttConfig::default()
            },
            MqttConfig {
                queue_capacity: 0,
                ..MqttConfig::default()
            },
            MqttConfig {
                url: Some("tcp://x".into()),
                ..MqttConfig::default()
            },
        ];
        for c in bad {
            assert!(c.validate().is_err(), "{c:?}");
        }
    }

    #[test]
    fn full_queue_drops_and_counts_records() {
        let (p, mut rx) = Publisher::channel(1);
        let row = TelemetryRow {
            device_id: 1,
            boot: 0,
            seq: 0,
            time: 0,
            channels: 1,
            values: [0; 8],
        };
        p.offer(Event::Records(vec![row; 3]));
        p.offer(Event::Records(vec![row; 5]));
        assert_eq!(p.counters.dropped.load(Ordering::Relaxed), 5);
        assert!(matches!(rx.try_recv(), Ok(Event::Records(r)) if r.len() == 3));
        Publisher::disabled().offer(Event::Records(vec![row]));
    }
}
