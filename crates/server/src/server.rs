//! The running server and its in-process API.
//!
//! [`Server::start`] opens the storage, binds both sockets and spawns the tasks (socket loop,
//! writer, re-send timer, change poller, HTTP); it returns a [`ServerHandle`]. [`Server::run`]
//! does the same and stops when a shutdown future resolves. [`Api`] (in `inproc.rs`, named
//! here too) is what the web UI, the CLI and tests call.

use crate::clock::unix_now;
use crate::config::Config;
use crate::inproc::blocking;
pub use crate::inproc::{Api, ApiError, DeviceState};
use crate::metrics::Metrics;
use crate::storage::sqlite::Sqlite;
use crate::storage::{self, Storage};
use crate::udp::ratelimit::IpLimiter;
use crate::udp::sessions::LinkTable;
use crate::udp::Ingest;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
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
            tokio::spawn(crate::runtime::release_memory(stop_rx.clone())),
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
                let web = crate::http::Web::new(api.clone(), crate::http::WebOptions::default());
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
        let quarter_days = ingest.cfg.quarter_retention_days;
        let upkeep = move || {
            let now = unix_now();
            s.maintain(now, days)?;
            s.expire_quarter_rollups(now, quarter_days)
        };
        if let Err(e) = blocking(upkeep).await {
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
