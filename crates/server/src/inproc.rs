//! The in-process API: what the web UI, the JSON API, MQTT commands, the CLI and tests call to
//! save a configuration, queue a command, read a device's state, or query telemetry. It never
//! exposes a device key. It sits under every face and imports none of them; `server.rs`
//! builds it when the server starts.

use crate::clock::unix_now;
use crate::metrics::{Gauges, Metrics};
use crate::storage::{
    self, CommandRecord, ConfigRecord, DeviceRecord, NewDevice, StatusRecord, Storage,
    TelemetryQuery, TelemetryRow, TrafficMonth,
};
use crate::udp::Ingest;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;
use tek_proto::message::{Command, Config as DeviceConfig};

/// What [`Api`] calls can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// From the storage.
    #[error(transparent)]
    Storage(#[from] storage::Error),
    /// A background task failed.
    #[error("internal error: {0}")]
    Internal(String),
}

/// A device as the UI shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceState {
    /// The registry entry (configuration versions, last seen in the database).
    pub device: DeviceRecord,
    /// Heard from within 3 keepalive intervals (by this server).
    pub online: bool,
    /// Unix seconds of the last authenticated datagram seen by this server, else the database's
    /// coarser last-seen time.
    pub last_seen: Option<i64>,
    /// Where this server sends to (source of the last authenticated datagram), if it holds a
    /// session.
    pub endpoint: Option<SocketAddr>,
    /// Boot number of the live session.
    pub boot: Option<u32>,
    /// The latest status report.
    pub status: Option<StatusRecord>,
}

impl DeviceState {
    /// A configuration change is waiting for the device (the UI's spinner).
    pub fn config_pending(&self) -> bool {
        let d = &self.device;
        d.config_desired > d.config_applied && d.config_rolled_back != Some(d.config_desired)
    }
}

/// The in-process API, cheap to clone.
#[derive(Clone)]
pub struct Api {
    pub(crate) ingest: Arc<Ingest>,
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> storage::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    crate::runtime::blocking(f).await.map_err(ApiError::from)
}

impl Api {
    fn storage(&self) -> Arc<dyn Storage> {
        self.ingest.storage.clone()
    }

    /// The storage, for queries this API does not wrap (read-mostly; writes that the ingest must
    /// know about go through the methods here).
    pub fn storage_handle(&self) -> Arc<dyn Storage> {
        self.storage()
    }

    /// Tells the alarm engine about a change made through the API (rules, acknowledgement,
    /// shelving). Never blocks.
    pub fn alarm_event(&self, e: crate::alarms::task::Event) {
        self.ingest.alarms.offer(e);
    }

    /// Hands a logged test notification to the alarm task for delivery; `false` if its queue
    /// is full. Never blocks.
    pub fn alarm_test(&self, job: crate::alarms::deliver::Job) -> bool {
        self.ingest.alarms.offer_test(job)
    }

    /// The MQTT publisher (a no-op without `[mqtt] url`).
    pub fn mqtt(&self) -> &crate::mqtt::Publisher {
        &self.ingest.mqtt
    }

    /// The token `/metrics` requires (`web.metrics_token`), if any.
    pub fn metrics_token(&self) -> Option<&str> {
        self.ingest.cfg.web.metrics_token.as_deref()
    }

    /// The counters.
    pub fn metrics(&self) -> &Metrics {
        &self.ingest.metrics
    }

    /// Creates a device with a fresh key from the OS random source. The key is not returned:
    /// provisioning tools that must hand keys out use [`crate::provision`].
    pub async fn add_device(&self, id: u32, name: &str) -> Result<(), ApiError> {
        let key = crate::keys::generate().map_err(|e| ApiError::Internal(e.to_string()))?;
        let dev = NewDevice {
            id,
            name: name.to_owned(),
            key,
        };
        let s = self.storage();
        blocking(move || s.add_devices(&[dev], unix_now())).await
    }

    /// Validates and saves a configuration as the device's next version, and pushes it at once
    /// if the device is online here. Returns the version.
    pub async fn save_config(&self, device_id: u32, config: DeviceConfig) -> Result<u32, ApiError> {
        let s = self.storage();
        let now = unix_now();
        let c = config.clone();
        let version = blocking(move || s.save_config(device_id, &c, now)).await?;
        self.ingest
            .alarms
            .offer(crate::alarms::task::Event::ConfigSaved { device_id, at: now });
        self.ingest.mqtt.offer(crate::mqtt::Event::Config {
            device_id,
            version,
            state: crate::mqtt::ConfigEvent::Pending,
            at: now,
        });
        let rec = ConfigRecord {
            device_id,
            version,
            config,
            saved_at: now,
            state: storage::ConfigState::Pending,
            acked_at: None,
            seq: 0,
        };
        // A version with a channel map goes out as ConfigChunks (`udp/split.rs`): its registry
        // entry was saved before the version (`service::apply`).
        let (s, r) = (self.storage(), rec.clone());
        let assembled = blocking(move || crate::udp::split::load(&*s, &r)).await?;
        self.ingest.apply_config(&rec, assembled);
        Ok(version)
    }

    /// Queues a command and sends it at once if the device is online here. Returns its id.
    pub async fn queue_command(&self, device_id: u32, command: Command) -> Result<u32, ApiError> {
        let s = self.storage();
        let now = unix_now();
        let id = blocking(move || s.queue_command(device_id, &command, now)).await?;
        self.ingest.apply_command(&CommandRecord {
            id,
            device_id,
            command,
            queued_at: now,
            state: storage::CommandState::Queued,
            acked_at: None,
            sent_boot: None,
        });
        Ok(id)
    }

    /// The newest saved configuration of a device.
    pub async fn latest_config(&self, device_id: u32) -> Result<Option<ConfigRecord>, ApiError> {
        let s = self.storage();
        blocking(move || s.latest_config(device_id)).await
    }

    /// The newest commands of a device, newest first.
    pub async fn commands(
        &self,
        device_id: u32,
        limit: usize,
    ) -> Result<Vec<CommandRecord>, ApiError> {
        let s = self.storage();
        blocking(move || s.commands(device_id, limit)).await
    }

    /// What the device stated it can run in its live session (PROTOCOL.md 17.1), if it did.
    pub fn capabilities(&self, device_id: u32) -> Option<tek_proto::channel::split::Capabilities> {
        self.ingest
            .links
            .with(device_id, |l| l?.live.as_ref()?.capabilities)
    }

    /// Why the device's newest configuration, which carries a channel map, is not being sent
    /// to it although it is online here (`udp::split::withheld_reason`): it stated no
    /// Capabilities in its session, or ones the map exceeds. `None` otherwise.
    pub fn split_wait_reason(&self, device_id: u32) -> Option<&'static str> {
        self.ingest.links.with(device_id, |l| {
            let l = l?;
            let d = l.desired.as_ref()?;
            if d.state() != storage::ConfigState::Pending {
                return None;
            }
            let live = l.live.as_ref()?;
            crate::udp::split::withheld_reason(live.capabilities.as_ref(), d.assembled()?)
        })
    }

    /// Whether the device's live session may be sent `assembled` as a split configuration
    /// (ConfigChunk): only if it stated Capabilities that cover it (`udp::channels`).
    pub fn may_send_split(&self, device_id: u32, assembled: &[u8]) -> bool {
        self.ingest.links.with(device_id, |l| {
            l.and_then(|l| l.live.as_ref())
                .is_some_and(|live| live.may_send_split(assembled))
        })
    }

    /// A device's state: registry entry, live session facts, latest status.
    pub async fn device_state(&self, device_id: u32) -> Result<DeviceState, ApiError> {
        let s = self.storage();
        let (device, status) =
            blocking(move || Ok((s.device(device_id)?, s.latest_status(device_id)?))).await?;
        Ok(self.live_state(device, status))
    }

    /// Every device's state, by id.
    pub async fn devices(&self) -> Result<Vec<DeviceState>, ApiError> {
        let s = self.storage();
        let rows = blocking(move || {
            let devices = s.list_devices()?;
            // One read for the page, not one per device (a round trip each on PostgreSQL).
            let ids: Vec<u32> = devices.iter().map(|d| d.id).collect();
            let statuses = s.latest_status_of(&ids)?;
            Ok(devices.into_iter().zip(statuses).collect::<Vec<_>>())
        })
        .await?;
        Ok(rows
            .into_iter()
            .map(|(d, s)| self.live_state(d, s))
            .collect())
    }

    fn live_state(&self, device: DeviceRecord, status: Option<StatusRecord>) -> DeviceState {
        let now = Instant::now();
        let unix = unix_now();
        let live = self.ingest.links.with(device.id, |l| {
            let l = l?;
            let live = l.live.as_ref()?;
            let ago = now.saturating_duration_since(live.last_auth).as_secs() as i64;
            Some((l.online(now), unix - ago, live.endpoint, live.boot))
        });
        match live {
            Some((online, seen, endpoint, boot)) => DeviceState {
                online,
                last_seen: Some(seen),
                endpoint: Some(endpoint),
                boot: Some(boot),
                device,
                status,
            },
            None => DeviceState {
                online: false,
                last_seen: device.last_seen,
                endpoint: None,
                boot: None,
                device,
                status,
            },
        }
    }

    /// Telemetry of a device in a time range, oldest first.
    pub async fn telemetry(&self, q: TelemetryQuery) -> Result<Vec<TelemetryRow>, ApiError> {
        let s = self.storage();
        blocking(move || s.telemetry(&q)).await
    }

    /// IP traffic of a device per month, newest first.
    pub async fn traffic(&self, device_id: u32) -> Result<Vec<TrafficMonth>, ApiError> {
        let s = self.storage();
        blocking(move || s.traffic(device_id)).await
    }

    /// Ok when the UDP loop runs and the database answers; else why not.
    pub async fn health(&self) -> Result<(), String> {
        if !self.ingest.udp_up.load(Ordering::Relaxed) {
            return Err("udp socket loop is not running".into());
        }
        let s = self.storage();
        blocking(move || s.ping())
            .await
            .map_err(|e| format!("database: {e}"))
    }

    /// Runs the re-send/idle timer as if `ahead` had passed: lets tests control time instead of
    /// sleeping (e.g. to see an idle session removed).
    #[doc(hidden)]
    pub fn run_timers_ahead(&self, ahead: std::time::Duration) {
        self.ingest.tick(Instant::now() + ahead);
    }

    /// The /metrics page.
    pub async fn metrics_text(&self) -> String {
        let now = Instant::now();
        let mut online = 0u64;
        self.ingest.links.for_each(|_, l| {
            if l.online(now) {
                online += 1;
            }
        });
        let s = self.storage();
        let pending = match blocking(move || s.pending_config_count()).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(%e, "pending config count failed");
                0
            }
        };
        let s = self.storage();
        let db_up = blocking(move || s.ping()).await.is_ok();
        let mut text = self.ingest.metrics.render(Gauges {
            devices_online: online,
            sessions: self.ingest.links.live_count() as u64,
            config_pending: pending,
            db_up,
            db_reconnects: self.ingest.storage.reconnects_total(),
        });
        text.push_str(&self.ingest.alarms.counters.render());
        if self.ingest.mqtt.active() {
            text.push_str(&self.ingest.mqtt.counters.render());
        }
        text
    }
}
