//! The running server and its in-process API.
//!
//! [`Server::start`] opens the storage, binds both sockets and spawns the tasks (socket loop,
//! writer, re-send timer, change poller, HTTP); it returns a [`ServerHandle`]. [`Server::run`]
//! does the same and stops when a shutdown future resolves. [`Api`] is what the web UI, the
//! CLI and tests call: save a configuration, queue a command, read a device's state, query
//! telemetry. It never exposes a device key.

use crate::clock::unix_now;
use crate::config::Config;
use crate::metrics::{Gauges, Metrics};
use crate::storage::sqlite::Sqlite;
use crate::storage::{
    self, CommandRecord, ConfigRecord, DeviceRecord, NewDevice, StatusRecord, Storage,
    TelemetryQuery, TelemetryRow, TrafficMonth,
};
use crate::udp::ratelimit::IpLimiter;
use crate::udp::sessions::LinkTable;
use crate::udp::Ingest;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tek_proto::message::{Command, Config as DeviceConfig};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] crate::config::Error),
    /// The database could not be opened.
    #[error("{0}")]
    Storage(#[from] storage::Error),
    /// The MQTT client could not be set up (URL, TLS roots).
    #[error("mqtt: {0}")]
    Mqtt(#[from] crate::mqtt::client::Error),
    /// A socket could not be bound.
    #[error("cannot bind {what} on {addr}: {source}")]
    Bind {
        /// `UDP` or `HTTP`.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

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

/// Entry points.
pub struct Server;

/// A running server.
pub struct ServerHandle {
    api: Api,
    udp_addr: SocketAddr,
    http_addr: SocketAddr,
    stop_ingest: watch::Sender<bool>,
    stop_writer: watch::Sender<bool>,
    ingest_tasks: Vec<JoinHandle<()>>,
    writer_task: JoinHandle<()>,
    mqtt_tasks: Vec<JoinHandle<()>>,
    http_task: JoinHandle<()>,
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
    ingest: Arc<Ingest>,
}

async fn blocking<T: Send + 'static>(
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
        self.ingest.apply_config(&ConfigRecord {
            device_id,
            version,
            config,
            saved_at: now,
            state: storage::ConfigState::Pending,
            acked_at: None,
            seq: 0,
        });
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
            s.list_devices()?
                .into_iter()
                .map(|d| {
                    let st = s.latest_status(d.id)?;
                    Ok((d, st))
                })
                .collect::<storage::Result<Vec<_>>>()
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

impl Server {
    /// Starts a server on the SQLite database in `config.data`.
    pub async fn start(config: Config) -> Result<ServerHandle, StartError> {
        Server::start_with(config, None, |_| axum::Router::new()).await
    }

    /// Starts a server on the given storage (`None`: SQLite in `config.data`), merging the routes
    /// `extra` builds (the web UI) into the HTTP listener.
    pub async fn start_with(
        config: Config,
        storage: Option<Arc<dyn Storage>>,
        extra: impl FnOnce(Api) -> axum::Router,
    ) -> Result<ServerHandle, StartError> {
        config.validate()?;
        let storage: Arc<dyn Storage> = match storage {
            Some(s) => s,
            None => {
                // PostgreSQL when `db` is set, else SQLite in the data directory.
                let (db, dir) = (config.db.clone(), config.data.clone());
                let key = config.master_key.clone();
                crate::runtime::blocking(move || storage::open(db.as_ref(), &dir, key.as_deref()))
                    .await?
            }
        };
        let st = storage.clone();
        let (config_seq, command_id) = crate::runtime::blocking(move || {
            Ok::<_, storage::Error>((st.config_cursor()?, st.command_cursor()?))
        })
        .await?;

        let udp =
            bind_udp(config.udp, config.udp_buffer_bytes).map_err(|source| StartError::Bind {
                what: "UDP",
                addr: config.udp,
                source,
            })?;
        let http = tokio::net::TcpListener::bind(config.http)
            .await
            .map_err(|source| StartError::Bind {
                what: "HTTP",
                addr: config.http,
                source,
            })?;
        let udp_addr = udp.local_addr().map_err(|source| StartError::Bind {
            what: "UDP",
            addr: config.udp,
            source,
        })?;
        let http_addr = http.local_addr().map_err(|source| StartError::Bind {
            what: "HTTP",
            addr: config.http,
            source,
        })?;

        let (tx, rx) = mpsc::channel(config.ingest.queue_capacity);
        let (alarms, alarm_rx) = crate::alarms::task::channel(&config.alarms);
        let (mqtt, mqtt_rx) = match config.mqtt.url {
            Some(_) => {
                // Checked before anything runs: a bad URL or CA file is a start error.
                crate::mqtt::client::settings(&config.mqtt)?;
                let (p, rx) = crate::mqtt::Publisher::channel(config.mqtt.queue_capacity);
                (p, Some(rx))
            }
            None => (crate::mqtt::Publisher::disabled(), None),
        };
        let cfg = Arc::new(config);
        let ingest = Arc::new(Ingest {
            socket: Arc::new(udp),
            storage,
            metrics: Arc::new(Metrics::default()),
            links: LinkTable::new(cfg.sessions.shards),
            writer: tx,
            ip_limiter: Mutex::new(IpLimiter::new(
                cfg.limits.hello_ip_burst,
                cfg.limits.hello_ip_per_s,
                Instant::now(),
            )),
            cfg,
            unknown: Mutex::new(HashMap::new()),
            udp_up: AtomicBool::new(false),
            poll_now: Notify::new(),
            alarms: Arc::new(alarms),
            mqtt,
        });
        let api = Api {
            ingest: ingest.clone(),
        };
        let (stop_ingest, stop_rx) = watch::channel(false);
        let (stop_writer, writer_rx) = watch::channel(false);
        // A change saved through another server wakes the poller at once (PostgreSQL NOTIFY).
        let weak = Arc::downgrade(&ingest);
        ingest.storage.watch_changes(Arc::new(move || {
            if let Some(ingest) = weak.upgrade() {
                ingest.poll_now.notify_one();
            }
        }));
        let ingest_tasks = vec![
            tokio::spawn(maintain(ingest.clone(), stop_rx.clone())),
            tokio::spawn(ingest.clone().run(stop_rx.clone())),
            tokio::spawn(ingest.clone().run_timer(stop_rx.clone())),
            tokio::spawn(ingest.clone().run_expiry(stop_rx.clone())),
            tokio::spawn(
                ingest
                    .clone()
                    .run_poller(config_seq, command_id, stop_rx.clone()),
            ),
            tokio::spawn(crate::alarms::task::run(
                ingest.storage.clone(),
                ingest.cfg.alarms.clone(),
                alarm_rx,
                ingest.mqtt.clone(),
                stop_rx.clone(),
            )),
        ];
        // The socket loop must be receiving before start returns (health, tests).
        ingest.udp_up.store(true, Ordering::Relaxed);
        // The MQTT tasks stop with the writer: what the writer commits while draining is still
        // handed to them.
        let mqtt_tasks = match mqtt_rx {
            Some(rx) => {
                let web = crate::web::Web::new(api.clone(), crate::web::WebOptions::default());
                crate::mqtt::client::start(ingest.clone(), Some(web), rx, writer_rx.clone())?
            }
            None => Vec::new(),
        };
        let writer_task = tokio::spawn(crate::writer::run(ingest.clone(), rx, writer_rx));
        let app = crate::api::router(api.clone()).merge(extra(api.clone()));
        let mut http_stop = stop_rx;
        let http = crate::http_limit::LimitedListener::new(
            http,
            ingest.cfg.http_connections.max,
            crate::http_limit::Timeouts {
                idle: std::time::Duration::from_secs(ingest.cfg.http_connections.idle_timeout_s),
                request: std::time::Duration::from_secs(
                    ingest.cfg.http_connections.request_timeout_s,
                ),
            },
            ingest.metrics.clone(),
        );
        let http_task = tokio::spawn(async move {
            // With the peer address: the login limits count per client address.
            let served = axum::serve(
                http,
                app.into_make_service_with_connect_info::<crate::http_limit::PeerAddr>(),
            )
            .with_graceful_shutdown(async move {
                crate::runtime::stopped(&mut http_stop).await;
            })
            .await;
            if let Err(e) = served {
                tracing::error!(%e, "http server failed");
            }
        });
        tracing::info!(%udp_addr, %http_addr, "tek server listening");
        Ok(ServerHandle {
            api,
            udp_addr,
            http_addr,
            stop_ingest,
            stop_writer,
            ingest_tasks,
            writer_task,
            mqtt_tasks,
            http_task,
        })
    }

    /// Runs a server until `shutdown` resolves, then stops it gracefully (pending writes are
    /// committed and acknowledged before this returns).
    pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
        let handle = Server::start(config).await?;
        shutdown.await;
        tracing::info!("shutting down");
        handle.shutdown().await;
        Ok(())
    }
}

/// Binds the UDP socket with large kernel buffers: a burst of datagrams (a fleet reconnecting
/// after an outage) must not overflow the default ~200 kB receive buffer, in which each small
/// datagram costs about 2 kB. The kernel caps the size at `net.core.rmem_max`. Public so that
/// `tek bench ingest`'s echo baseline binds exactly the same socket.
pub fn bind_udp(addr: SocketAddr, buffer: usize) -> std::io::Result<tokio::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if let Err(e) = socket.set_recv_buffer_size(buffer) {
        tracing::warn!(%e, buffer, "cannot size the UDP receive buffer");
    }
    if let Err(e) = socket.set_send_buffer_size(buffer) {
        tracing::warn!(%e, buffer, "cannot size the UDP send buffer");
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    tokio::net::UdpSocket::from_std(socket.into())
}

/// How often the storage's upkeep runs (telemetry partitions ahead, retention).
const MAINTENANCE_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Runs [`Storage::maintain`] at start and then hourly until `stop`. A failure (database away)
/// is logged and retried at the next round; partitions are also created on demand.
async fn maintain(ingest: Arc<Ingest>, mut stop: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(MAINTENANCE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = crate::runtime::stopped(&mut stop) => break,
        }
        let (s, days) = (ingest.storage.clone(), ingest.cfg.retention_days);
        if let Err(e) = blocking(move || s.maintain(unix_now(), days)).await {
            ingest.metrics.storage_error();
            tracing::warn!(%e, "storage maintenance failed");
        }
    }
}

impl ServerHandle {
    /// The in-process API.
    pub fn api(&self) -> &Api {
        &self.api
    }

    /// The bound UDP address.
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp_addr
    }

    /// The bound HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Stops receiving, then commits (and acknowledges) everything queued, then stops HTTP.
    pub async fn shutdown(self) {
        let _ = self.stop_ingest.send(true);
        for t in self.ingest_tasks {
            let _ = t.await;
        }
        let _ = self.stop_writer.send(true);
        let _ = self.writer_task.await;
        for t in self.mqtt_tasks {
            let _ = t.await;
        }
        let _ = self.http_task.await;
        tracing::info!("server stopped");
    }
}

impl Sqlite {
    /// As a shared trait object.
    pub fn into_arc(self) -> Arc<dyn Storage> {
        Arc::new(self)
    }
}
