//! The connection to the broker: two tasks.
//!
//! * The **connection** task drives rumqttc's event loop: it connects, and after a failure waits
//!   (from `retry_initial_ms`, doubling up to `retry_max_ms`) and connects again. At every
//!   connection it subscribes to the command topic (when commands are on) and tells the
//!   publishing task to announce everything again (the broker may have lost its retained
//!   messages). Command messages go to [`super::commands`].
//! * The **publishing** task takes events from the bounded queue, turns them into topics and
//!   payloads, and hands them to the client (QoS 1). While the broker is away the client's own
//!   queue fills, this task waits, and the bounded queue in front of it takes the overflow (dropped
//!   and counted), so ingest never waits. Once a second it also compares each device's online
//!   state on this server with what it last published, and publishes the changes.

use super::commands::{self, Incoming};
use super::link::{self, Client, Connection, Polled, Settings};
use super::payload::{self, topic};
use super::{discovery, BrokerUrl, ConfigEvent, Counters, Event, MqttConfig};
use crate::service::device_channels;
use crate::storage::{Storage, WideRow};
use crate::udp::Ingest;
use rumqttc::{TlsConfiguration, Transport};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Why the MQTT client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The URL is not usable.
    #[error("{0}")]
    Url(String),
    /// The CA file could not be read or holds no usable certificate.
    #[error("mqtt.ca_file {path}: {why}")]
    CaFile {
        /// The file.
        path: String,
        /// Why.
        why: String,
    },
    /// No trusted root at all for `mqtts://`.
    #[error("mqtts://: no trusted root certificates (set mqtt.ca_file)")]
    NoRoots,
    /// rustls refused the settings.
    #[error("TLS: {0}")]
    Tls(String),
}

/// How long a site assignment is trusted before it is read again.
const SITE_TTL: Duration = Duration::from_secs(30);
/// How often the online states are compared.
const AVAILABILITY_EVERY: Duration = Duration::from_secs(1);

fn client_id(cfg: &MqttConfig) -> String {
    if let Some(id) = &cfg.client_id {
        return id.clone();
    }
    let mut b = [0u8; 4];
    // Uniqueness, not secrecy: a fixed fallback still works for a single server.
    let _ = getrandom::fill(&mut b);
    format!("tek-{}", crate::keys::hex(&b))
}

fn tls_config(cfg: &MqttConfig) -> Result<TlsConfiguration, Error> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    match &cfg.ca_file {
        Some(path) => {
            let shown = path.display().to_string();
            let pem = std::fs::read(path).map_err(|e| Error::CaFile {
                path: shown.clone(),
                why: e.to_string(),
            })?;
            for c in CertificateDer::pem_slice_iter(&pem) {
                let c = c.map_err(|e| Error::CaFile {
                    path: shown.clone(),
                    why: e.to_string(),
                })?;
                roots.add(c).map_err(|e| Error::CaFile {
                    path: shown.clone(),
                    why: e.to_string(),
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for c in found.certs {
                // One unparsable system certificate must not disable the others.
                let _ = roots.add(c);
            }
        }
    }
    if roots.is_empty() {
        return Err(match &cfg.ca_file {
            Some(p) => Error::CaFile {
                path: p.display().to_string(),
                why: "no certificate in the file".into(),
            },
            None => Error::NoRoots,
        });
    }
    let tls = rustls::ClientConfig::builder_with_provider(ring_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConfiguration::Rustls(Arc::new(tls)))
}

/// rustls on *ring*, as alarm delivery uses it. rustls 0.23.48 deprecates this provider (no
/// post-quantum key exchange); the one it prefers, aws-lc-rs, builds a C library under the
/// OpenSSL licence, which deny.toml does not allow.
#[allow(deprecated)]
fn ring_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The connection settings for `cfg` (which must have a URL); reads the CA file for `mqtts://`.
pub(crate) fn settings(cfg: &MqttConfig) -> Result<Settings, Error> {
    let url = cfg
        .url
        .as_deref()
        .ok_or_else(|| Error::Url("mqtt.url is not set".into()))?;
    let url = BrokerUrl::parse(url).map_err(Error::Url)?;
    Ok(Settings {
        client_id: client_id(cfg),
        host: url.host,
        port: url.port,
        keepalive: Duration::from_secs(cfg.keepalive_s),
        credentials: cfg
            .username
            .clone()
            .map(|u| (u, cfg.password.clone().unwrap_or_default())),
        transport: if url.tls {
            Transport::tls_with_config(tls_config(cfg)?)
        } else {
            Transport::tcp()
        },
    })
}

/// Starts both tasks (and the command task when commands are on). `rx` is the receiving end of
/// the ingest's [`super::Publisher`].
pub(crate) fn start(
    ingest: Arc<Ingest>,
    web: Option<crate::http::Web>,
    rx: mpsc::Receiver<Event>,
    stop: watch::Receiver<bool>,
) -> Result<Vec<JoinHandle<()>>, Error> {
    let cfg = ingest.cfg.mqtt.clone();
    let (client, eventloop) = link::new(cfg.protocol, settings(&cfg)?);
    let counters = ingest.mqtt.counters.clone();
    let (connected_tx, connected_rx) = watch::channel(0u64);
    let mut tasks = Vec::new();
    let commands_tx = match web {
        Some(web) if cfg.commands => {
            let (tx, crx) = mpsc::channel(64);
            tasks.push(tokio::spawn(commands::run(
                web,
                client.clone(),
                cfg.clone(),
                counters.clone(),
                crx,
                stop.clone(),
            )));
            Some(tx)
        }
        _ => None,
    };
    tasks.push(tokio::spawn(connection(
        eventloop,
        client.clone(),
        cfg.clone(),
        counters.clone(),
        commands_tx,
        connected_tx,
        stop.clone(),
    )));
    tasks.push(tokio::spawn(
        Publishing {
            ingest,
            client,
            cfg,
            counters,
            sites: HashMap::new(),
            announced: HashMap::new(),
            online: HashMap::new(),
            channel_topics: HashMap::new(),
        }
        .run(rx, connected_rx, stop),
    ));
    Ok(tasks)
}

async fn connection(
    mut eventloop: Connection,
    client: Client,
    cfg: MqttConfig,
    counters: Arc<Counters>,
    commands: Option<mpsc::Sender<Incoming>>,
    connected: watch::Sender<u64>,
    mut stop: watch::Receiver<bool>,
) {
    let initial = Duration::from_millis(cfg.retry_initial_ms);
    let max = Duration::from_millis(cfg.retry_max_ms);
    let mut backoff = initial;
    let set_topic = format!("{}/+/+/set", cfg.prefix);
    loop {
        let polled = tokio::select! {
            p = eventloop.poll() => p,
            _ = crate::runtime::stopped(&mut stop) => break,
        };
        match polled {
            Polled::Connected => {
                backoff = initial;
                counters.connects.fetch_add(1, Ordering::Relaxed);
                counters.connected.store(1, Ordering::Relaxed);
                tracing::info!("connected to the MQTT broker");
                if commands.is_some() {
                    // try_: the event loop must keep running for the request to be sent.
                    if let Err(e) = client.try_subscribe(set_topic.clone()) {
                        tracing::warn!(%e, "cannot subscribe to the command topic");
                    }
                }
                connected.send_modify(|n| *n += 1);
            }
            Polled::Message { topic, payload } => {
                if let Some(tx) = &commands {
                    if tx.try_send(Incoming { topic, payload }).is_err() {
                        counters.commands_refused.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!("MQTT command dropped: too many waiting");
                    }
                }
            }
            Polled::Other => {}
            Polled::Failed(e) => {
                counters.connected.store(0, Ordering::Relaxed);
                counters.connection_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%e, retry_in_ms = backoff.as_millis() as u64, "MQTT connection failed");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = crate::runtime::stopped(&mut stop) => break,
                }
                backoff = (backoff * 2).min(max);
            }
        }
    }
    counters.connected.store(0, Ordering::Relaxed);
    // Best effort: a clean DISCONNECT lets the broker forget the session at once.
    client.try_disconnect();
    let _ = tokio::time::timeout(Duration::from_millis(200), eventloop.poll()).await;
    tracing::debug!("MQTT connection task stopped");
}

struct Publishing {
    ingest: Arc<Ingest>,
    client: Client,
    cfg: MqttConfig,
    counters: Arc<Counters>,
    /// Site of each device, with when it was read.
    sites: HashMap<u32, (Option<i64>, Instant)>,
    /// Devices whose discovery documents were published in this connection, with the site
    /// their topics name.
    announced: HashMap<u32, Option<i64>>,
    /// Online state last published per device.
    online: HashMap<u32, bool>,
    /// Per device, the version of the channel map whose sensors were announced in this
    /// connection (`None`: none, the pool sensors) and their discovery topics (those a new map
    /// no longer has are emptied).
    channel_topics: HashMap<u32, (Option<u32>, Vec<String>)>,
}

async fn blocking<T: Send + 'static>(
    storage: &Arc<dyn Storage>,
    f: impl FnOnce(&dyn Storage) -> crate::storage::Result<T> + Send + 'static,
) -> Option<T> {
    let s = storage.clone();
    match crate::runtime::blocking(move || f(&*s)).await {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(%e, "MQTT: database read failed");
            None
        }
    }
}

impl Publishing {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Event>,
        mut connected: watch::Receiver<u64>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut every = tokio::time::interval(AVAILABILITY_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = crate::runtime::stopped(&mut stop) => break,
                changed = connected.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    self.announce_all().await;
                }
                _ = every.tick() => self.availability().await,
                e = rx.recv() => match e {
                    Some(e) => self.event(e).await,
                    None => break,
                },
            }
        }
        tracing::debug!("MQTT publishing task stopped");
    }

    async fn send(&self, topic: String, retain: bool, payload: Vec<u8>) {
        // Waits while the client's queue is full (broker away); the queue in front of this task
        // absorbs that, never the ingest.
        match self.client.publish(topic, retain, payload).await {
            Ok(()) => {
                self.counters.published.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => tracing::warn!(%e, "MQTT publish failed"),
        }
    }

    async fn send_json(&self, topic: String, retain: bool, v: &Value) {
        self.send(topic, retain, v.to_string().into_bytes()).await;
    }

    fn topic(&self, site: Option<i64>, device_id: u32, leaf: &str) -> String {
        topic(&self.cfg.prefix, site, device_id, leaf)
    }

    async fn site(&mut self, device_id: u32) -> Option<i64> {
        if let Some((s, at)) = self.sites.get(&device_id) {
            if at.elapsed() < SITE_TTL {
                return *s;
            }
        }
        let site = blocking(&self.ingest.storage, move |db| db.device_site(device_id))
            .await
            .flatten();
        self.sites.insert(device_id, (site, Instant::now()));
        if self.cfg.discovery
            && self
                .announced
                .get(&device_id)
                .is_some_and(|old| *old != site)
        {
            // Moved to another site: its state topics moved with it.
            self.announce(device_id, site).await;
        }
        site
    }

    /// Discovery documents and the latest configuration of one device.
    async fn announce(&mut self, device_id: u32, site: Option<i64>) {
        self.announced.insert(device_id, site);
        let Some((dev, latest)) = blocking(&self.ingest.storage, move |db| {
            Ok((db.device(device_id)?, db.latest_config(device_id)?))
        })
        .await
        else {
            return;
        };
        if self.cfg.discovery {
            for d in discovery::documents(
                &self.cfg.discovery_prefix,
                &self.cfg.prefix,
                device_id,
                &dev.name,
                site,
            ) {
                self.send_json(d.topic, true, &d.payload).await;
            }
            self.announce_channels(device_id, &dev.name, site).await;
        }
        if let Some(c) = latest {
            let state = if dev.config_rolled_back == Some(c.version) {
                ConfigEvent::RolledBack
            } else if dev.config_applied >= c.version {
                ConfigEvent::Applied
            } else {
                ConfigEvent::Pending
            };
            let mut v = payload::config(device_id, site, c.version, state, c.saved_at);
            add_thermostat(&mut v, &c.config);
            self.send_json(self.topic(site, device_id, "config"), true, &v)
                .await;
        }
    }

    /// The discovery documents of the channels of the device's map in effect (after the pool
    /// ones, which a device with its own map then has emptied), and empty documents for the
    /// channels published before in this connection that the map no longer has.
    async fn announce_channels(&mut self, device_id: u32, name: &str, site: Option<i64>) {
        let Some(entry) = blocking(&self.ingest.storage, move |db| {
            device_channels::in_effect_now(db, device_id)
        })
        .await
        else {
            return;
        };
        let docs = entry.as_ref().map_or_else(Vec::new, |e| {
            discovery::channel_documents(
                &self.cfg.discovery_prefix,
                &self.cfg.prefix,
                device_id,
                name,
                site,
                e,
            )
        });
        let (had_map, mut gone) = self
            .channel_topics
            .remove(&device_id)
            .map_or((false, Vec::new()), |(v, topics)| (v.is_some(), topics));
        if entry.is_none() && had_map {
            // Back to the pool map: its sensors, emptied with the earlier map, come back.
            for d in discovery::documents(
                &self.cfg.discovery_prefix,
                &self.cfg.prefix,
                device_id,
                name,
                site,
            ) {
                self.send_json(d.topic, true, &d.payload).await;
            }
        }
        if entry.is_some() {
            gone.extend(discovery::pool_sensor_topics(
                &self.cfg.discovery_prefix,
                device_id,
            ));
        }
        gone.retain(|t| !docs.iter().any(|d| &d.topic == t));
        for t in gone {
            self.send(t, true, Vec::new()).await;
        }
        let topics = docs.iter().map(|d| d.topic.clone()).collect();
        for d in docs {
            self.send_json(d.topic, true, &d.payload).await;
        }
        self.channel_topics
            .insert(device_id, (entry.map(|e| e.version), topics));
    }

    /// After a (re)connection: every device announced again, every known online state again.
    async fn announce_all(&mut self) {
        self.announced.clear();
        self.channel_topics.clear();
        let ids = blocking(&self.ingest.storage, |db| {
            Ok(db
                .list_devices()?
                .into_iter()
                .map(|d| d.id)
                .collect::<Vec<_>>())
        })
        .await
        .unwrap_or_default();
        for id in ids {
            let site = self.site(id).await;
            self.announce(id, site).await;
        }
        let known: Vec<(u32, bool)> = self.online.iter().map(|(k, v)| (*k, *v)).collect();
        for (id, online) in known {
            let site = self.site(id).await;
            self.send_availability(id, site, online).await;
        }
    }

    async fn ensure_announced(&mut self, device_id: u32, site: Option<i64>) {
        if !self.announced.contains_key(&device_id) {
            self.announce(device_id, site).await;
        }
    }

    async fn send_availability(&self, device_id: u32, site: Option<i64>, online: bool) {
        let word = if online { "online" } else { "offline" };
        self.send(
            self.topic(site, device_id, "availability"),
            true,
            word.as_bytes().to_vec(),
        )
        .await;
    }

    async fn availability(&mut self) {
        let now = Instant::now();
        let mut states = Vec::new();
        self.ingest.links.for_each(|id, l| {
            if l.live.is_some() {
                states.push((id, l.online(now)));
            } else {
                states.push((id, false));
            }
        });
        for (id, online) in states {
            let before = self.online.get(&id).copied();
            // A device never online here is not announced offline by this server: another
            // server of the fleet may hold its session.
            if before == Some(online) || (before.is_none() && !online) {
                continue;
            }
            self.online.insert(id, online);
            let site = self.site(id).await;
            self.ensure_announced(id, site).await;
            self.send_availability(id, site, online).await;
        }
    }

    async fn event(&mut self, e: Event) {
        match e {
            Event::Records(rows) => {
                for r in rows {
                    let site = self.site(r.device_id).await;
                    self.ensure_announced(r.device_id, site).await;
                    let v = payload::record(&r, site);
                    self.send_json(self.topic(site, r.device_id, "record"), false, &v)
                        .await;
                }
            }
            Event::Wide(rows) => self.wide(rows).await,
            Event::Status {
                device_id,
                status,
                at,
            } => {
                let site = self.site(device_id).await;
                self.ensure_announced(device_id, site).await;
                let v = payload::status(device_id, site, &status, at);
                self.send_json(self.topic(site, device_id, "status"), true, &v)
                    .await;
            }
            Event::Availability {
                device_id, online, ..
            } => {
                self.online.insert(device_id, online);
                let site = self.site(device_id).await;
                self.send_availability(device_id, site, online).await;
            }
            Event::Config {
                device_id,
                version,
                state,
                at,
            } => {
                let site = self.site(device_id).await;
                self.ensure_announced(device_id, site).await;
                let mut v = payload::config(device_id, site, version, state, at);
                if let Some(Some(c)) =
                    blocking(&self.ingest.storage, move |db| db.latest_config(device_id)).await
                {
                    if c.version == version {
                        add_thermostat(&mut v, &c.config);
                    }
                }
                self.send_json(self.topic(site, device_id, "config"), true, &v)
                    .await;
                if self.cfg.discovery && state != ConfigEvent::Pending {
                    // A confirmed version may come with another channel map.
                    if let Some(dev) =
                        blocking(&self.ingest.storage, move |db| db.device(device_id)).await
                    {
                        self.announce_channels(device_id, &dev.name, site).await;
                    }
                }
            }
            Event::Renamed { device_id } => {
                let site = self.site(device_id).await;
                if self.cfg.discovery {
                    // Reads the new name from the database (the rename is committed).
                    self.announce(device_id, site).await;
                }
            }
            Event::Alarm {
                device_id,
                alarm_id,
                rule_id,
                event,
                severity,
                message,
                at,
            } => {
                let site = self.site(device_id).await;
                let v = payload::alarm(
                    device_id, site, alarm_id, rule_id, event, &severity, &message, at,
                );
                self.send_json(self.topic(site, device_id, "alarm"), false, &v)
                    .await;
            }
        }
    }
}

impl Publishing {
    /// Wide records on `channels`, each with the channel map it was logged under (one read per
    /// run of records of the same device and version).
    async fn wide(&mut self, rows: Vec<WideRow>) {
        let mut i = 0;
        while i < rows.len() {
            let (device_id, version) = (rows[i].device_id, rows[i].config_version);
            let run = rows[i..]
                .iter()
                .take_while(|r| r.device_id == device_id && r.config_version == version)
                .count();
            let site = self.site(device_id).await;
            self.ensure_announced(device_id, site).await;
            // A record whose version the server did not know is taken as the current map's,
            // as the device pages do (`device_channels::under`).
            let entry = blocking(&self.ingest.storage, move |db| match version {
                Some(v) => device_channels::in_effect(db, device_id, v),
                None => device_channels::in_effect_now(db, device_id),
            })
            .await
            .flatten();
            // A map newer than the one announced: this server did not see the confirmation
            // (another server of the fleet stored it, or it came before this connection's
            // announcement), so the sensors follow the records.
            let announced = self.channel_topics.get(&device_id).and_then(|(v, _)| *v);
            if self.cfg.discovery
                && entry
                    .as_ref()
                    .is_some_and(|e| announced.is_none_or(|a| e.version > a))
            {
                if let Some(dev) =
                    blocking(&self.ingest.storage, move |db| db.device(device_id)).await
                {
                    self.announce_channels(device_id, &dev.name, site).await;
                }
            }
            for r in &rows[i..i + run] {
                let v = payload::channels_record(r, entry.as_ref(), site);
                self.send_json(self.topic(site, device_id, "channels"), false, &v)
                    .await;
            }
            i += run;
        }
    }
}

/// The thermostat of a configuration, in the `config` payload (Home Assistant's target
/// temperature).
fn add_thermostat(v: &mut Value, c: &tek_proto::message::Config) {
    v["setpoint_c"] = serde_json::json!(f64::from(c.thermostat.setpoint_cc) / 100.0);
    v["hysteresis_c"] = serde_json::json!(f64::from(c.thermostat.hysteresis_cc) / 100.0);
}
