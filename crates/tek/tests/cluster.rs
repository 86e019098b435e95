//! Clustered deployment end to end: several `tek serve` sharing one PostgreSQL (a throwaway
//! cluster started by `tek_server::storage::postgres::testing`), real simulated controllers
//! (`tek-sim`) over loopback UDP.
//!
//! * Failover: three `tek serve` processes, 200 controllers listing them in order; the server
//!   holding them is killed with SIGKILL; every controller must be on another server within 30 s,
//!   and afterwards every record any controller saw acknowledged is in the database exactly once.
//! * A configuration saved through server A (its in-process API, what the web UI calls) is pushed
//!   at once by server B, which holds the device's session, and the confirmation shows on A.
//! * The database goes away under a running server: it keeps receiving, acknowledges nothing,
//!   reports it in /healthz and /metrics, reconnects, and then loses nothing.
//!
//! The controllers run faster than real time (`speed`): their protocol timers (batch every
//! 300 s, retransmissions at 3/6/12 s, back-off) are simulated seconds; everything measured here
//! is wall-clock time.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tek_server::metrics::sample;
use tek_server::storage::postgres::testing::{self, TestDb};
use tek_server::storage::postgres::DbUrl;
use tek_server::storage::{ConfigStore, Storage, TelemetryQuery};
use tek_sim::{AckLedger, Fleet, Options};

/// The tests measure times: one at a time, so they do not slow each other down.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Simulated seconds per real second for the failover fleet.
const SPEED: f64 = 10.0;

fn free_udp() -> SocketAddr {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn free_tcp() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// `GET path` over HTTP/1.1; returns the status code and the body.
async fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
        .await
        .ok()?
        .ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n")?.1.to_owned();
    Some((code, body))
}

async fn metric(http: SocketAddr, series: &str) -> Option<f64> {
    let (code, body) = get(http, "/metrics").await?;
    (code == 200).then_some(())?;
    sample(&body, series)
}

/// Waits up to `limit` for `cond`, polling every 100 ms; returns the time it took.
async fn wait_until<F, Fut>(limit: Duration, what: &str, mut cond: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t = Instant::now();
    loop {
        if cond().await {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Server settings for the tests: quick re-sends, and a change poll so slow (60 s) that only
/// LISTEN/NOTIFY can deliver a configuration within the tests' limits.
const SERVER_TOML: &str = r#"
[push]
retry_initial_ms = 500
retry_max_ms = 2000
tick_ms = 50
poll_interval_ms = 60000

[limits]
hello_device_burst = 20
hello_device_interval_ms = 100
hello_ip_burst = 1000
hello_ip_per_s = 1000
"#;

/// A `tek serve` child process; SIGKILLed when dropped.
struct Serve {
    child: Child,
    udp: SocketAddr,
    http: SocketAddr,
}

impl Serve {
    async fn start(dir: &Path, name: &str, db: &TestDb) -> Serve {
        let url = db.url.as_str();
        let config = dir.join("tek.toml");
        if !config.exists() {
            std::fs::write(&config, SERVER_TOML).unwrap();
        }
        let (udp, http) = (free_udp(), free_tcp());
        let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_tek"))
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .args(["--db", url])
            // Every server of the cluster seals device keys under the same master key.
            .arg("--master-key")
            .arg(&db.master_key)
            .args(["--udp", &udp.to_string(), "--http", &http.to_string()])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("tek serve starts");
        let mut s = Serve { child, udp, http };
        let t = Instant::now();
        loop {
            if let Some((200, _)) = get(http, "/healthz").await {
                return s;
            }
            if let Ok(Some(status)) = s.child.try_wait() {
                let log =
                    std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default();
                panic!("tek serve {name} exited ({status}): {log}");
            }
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "{name} never healthy"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn sessions(&self) -> u64 {
        metric(self.http, "tek_sessions").await.unwrap_or(0.0) as u64
    }

    /// SIGKILL: no flush, no goodbye.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill();
    }
}

fn all_acked_at_least(ledgers: &[AckLedger], floor: &[u32]) -> bool {
    ledgers
        .iter()
        .zip(floor)
        .all(|(l, f)| l.boots.last().is_some_and(|b| b.first_unacked_seq > *f))
}

fn acked_now(fleet: &Fleet) -> Vec<u32> {
    fleet
        .ack_ledgers()
        .iter()
        .map(|l| l.boots.last().map_or(0, |b| b.first_unacked_seq))
        .collect()
}

/// Every record the controllers saw acknowledged is stored exactly once. Returns how many.
fn check_exactly_once(db: &dyn Storage, ledgers: &[AckLedger]) -> u64 {
    let mut acked = 0u64;
    for l in ledgers {
        let rows = db
            .telemetry(&TelemetryQuery {
                device_id: l.device_id,
                from: i64::MIN,
                to: i64::MAX,
                limit: 1_000_000,
            })
            .unwrap();
        let keys: HashSet<(u32, u32)> = rows.iter().map(|r| (r.boot, r.seq)).collect();
        assert_eq!(
            keys.len(),
            rows.len(),
            "device {}: a record stored twice",
            l.device_id
        );
        for b in &l.boots {
            assert_eq!(b.dropped, 0, "device {}: its log overflowed", l.device_id);
            for seq in 0..b.first_unacked_seq {
                assert!(
                    keys.contains(&(b.boot, seq)),
                    "device {}: acknowledged record boot {} seq {seq} is missing",
                    l.device_id,
                    b.boot
                );
            }
            acked += u64::from(b.first_unacked_seq);
        }
    }
    acked
}

fn database() -> Option<TestDb> {
    testing::database()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_of_200_controllers_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let Some(db) = database() else { return };
    let dir = tempfile::tempdir().unwrap();
    let fleet_file = dir.path().join("fleet.toml");
    // `tek device add --db URL --count 200 --out FLEET.toml`
    let out = Command::new(env!("CARGO_BIN_EXE_tek"))
        .args(["device", "add", "--db", &db.url, "--count", "200", "--out"])
        .arg(&fleet_file)
        .arg("--master-key")
        .arg(&db.master_key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let devices = tek_sim::fleet::load(&fleet_file).unwrap();
    assert_eq!(devices.len(), 200);

    // The shortest timers the protocol allows (a record every 10 s, a batch every 10 s,
    // keepalive 15 s), pushed by the server at each controller's first session, so a dead
    // server is noticed within seconds of simulated time.
    let fast = tek_proto::message::Config {
        log_interval_s: 10,
        batch_s: 10,
        keepalive_s: 15,
        ..Default::default()
    };
    for d in &devices {
        db.save_config(d.id, &fast, 0).unwrap();
    }
    let mut a = Serve::start(dir.path(), "a", &db).await;
    let b = Serve::start(dir.path(), "b", &db).await;
    let c = Serve::start(dir.path(), "c", &db).await;
    let mut opts = Options::new(
        devices,
        vec![a.udp.to_string(), b.udp.to_string(), c.udp.to_string()],
    );
    opts.speed = SPEED;
    opts.gsm = false;
    // Power-up spread over 3 s: a Hello is given up after 2 simulated seconds (0.2 s here), so
    // a burst of 200 first Hellos on a loaded 2-core machine would push some to B.
    opts.ramp_s = 3.0;
    let fleet = Fleet::start(opts).await.unwrap();

    // All on A (first in their list) with its configuration, each with records acknowledged.
    let zero = vec![0u32; 200];
    wait_until(
        Duration::from_secs(30),
        "every controller on A, acked",
        || async {
            let l = fleet.ack_ledgers();
            l.iter().all(|l| l.server_index == Some(0))
                && all_acked_at_least(&l, &zero)
                && db.pending_config_count().unwrap() == 0 // every controller runs the fast timers
        },
    )
    .await;
    assert_eq!(a.sessions().await, 200);

    a.kill();
    let before = acked_now(&fleet);
    let took = wait_until(
        Duration::from_secs(30),
        "every controller on B or C",
        || async {
            fleet
                .ack_ledgers()
                .iter()
                .all(|l| matches!(l.server_index, Some(1 | 2)))
        },
    )
    .await;
    eprintln!(
        "failover: 200 controllers in session with B or C {:.1} s (wall clock) after SIGKILL \
         of A (simulated time x{SPEED})",
        took.as_secs_f64()
    );
    assert!(b.sessions().await + c.sessions().await >= 200);
    // Ingest goes on there: every controller gets newer records acknowledged.
    wait_until(
        Duration::from_secs(30),
        "acks after the failover",
        || async { all_acked_at_least(&fleet.ack_ledgers(), &before) },
    )
    .await;
    let snap = fleet.snapshot();
    let ledgers = fleet.ack_ledgers();
    fleet.stop().await;
    let acked = check_exactly_once(&*db, &ledgers);
    eprintln!(
        "failover: {acked} acknowledged records, each stored exactly once ({} sent, {} datagrams)",
        snap.records_sent, snap.datagrams_tx
    );
    assert!(acked >= 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_saved_on_a_is_confirmed_by_a_device_on_b() {
    let _serial = SERIAL.lock().await;
    let Some(db) = database() else { return };
    let dir = tempfile::tempdir().unwrap();
    let fleet = tek_server::provision::provision(&*db, None, 3, "pool", 0).unwrap();
    let fleet_file = dir.path().join("fleet.toml");
    fleet.save_new(&fleet_file).unwrap();
    let devices = tek_sim::fleet::load(&fleet_file).unwrap();
    let start = |name: &str| {
        let mut cfg = tek_server::Config::for_tests(&dir.path().join(name));
        cfg.db = Some(DbUrl(db.url.clone()));
        cfg.master_key = Some(db.master_key.clone());
        // Only NOTIFY can bring the change to B within the limit below.
        cfg.push.poll_interval_ms = 60_000;
        tek_server::Server::start(cfg)
    };
    let a = start("a").await.unwrap();
    let b = start("b").await.unwrap();
    let mut opts = Options::new(devices, vec![b.udp_addr().to_string()]);
    opts.speed = 10.0;
    opts.gsm = false;
    let sim = Fleet::start(opts).await.unwrap();
    let id = fleet.device[0].id;
    wait_until(
        Duration::from_secs(20),
        "the device online on B",
        || async { b.api().device_state(id).await.is_ok_and(|s| s.online) },
    )
    .await;

    let config = tek_proto::message::Config {
        log_interval_s: 120,
        ..Default::default()
    };
    let saved = Instant::now();
    let version = a.api().save_config(id, config).await.unwrap();
    let took = wait_until(
        Duration::from_secs(5),
        "the confirmation, seen on A",
        || async {
            a.api()
                .device_state(id)
                .await
                .is_ok_and(|s| s.device.config_applied == version && !s.config_pending())
        },
    )
    .await;
    eprintln!(
        "config saved on A, applied by the device on B, seen on A: {} ms",
        took.as_millis()
    );
    assert!(saved.elapsed() < Duration::from_secs(5));
    // A holds no session for it: the push came from B.
    let on_a = a.api().device_state(id).await.unwrap();
    assert!(on_a.endpoint.is_none());
    let on_b = b.api().device_state(id).await.unwrap();
    assert!(on_b.endpoint.is_some());
    assert_eq!(on_b.device.config_applied, version);
    assert!(b.api().metrics().config_synced_total() >= 1);
    sim.stop().await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_database_stops_acks_then_recovers_without_loss() {
    let _serial = SERIAL.lock().await;
    let Some(db) = database() else { return };
    let cluster = testing::cluster().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let fleet = tek_server::provision::provision(&*db, None, 10, "pool", 0).unwrap();
    let fleet_file = dir.path().join("fleet.toml");
    fleet.save_new(&fleet_file).unwrap();
    let devices = tek_sim::fleet::load(&fleet_file).unwrap();
    let mut cfg = tek_server::Config::for_tests(&dir.path().join("data"));
    cfg.db = Some(DbUrl(db.url.clone()));
    cfg.master_key = Some(db.master_key.clone());
    let server = tek_server::Server::start(cfg).await.unwrap();
    let http = server.http_addr();
    let mut opts = Options::new(devices, vec![server.udp_addr().to_string()]);
    opts.speed = 60.0;
    opts.gsm = false;
    let sim = Fleet::start(opts).await.unwrap();
    let zero = vec![0u32; 10];
    wait_until(
        Duration::from_secs(20),
        "an ack for every controller",
        || async { all_acked_at_least(&sim.ack_ledgers(), &zero) },
    )
    .await;
    assert_eq!(metric(http, "tek_db_up").await, Some(1.0));

    // The database goes away.
    cluster
        .admin(&format!(
            "ALTER DATABASE {0} ALLOW_CONNECTIONS false;
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{0}'",
            db.name
        ))
        .unwrap();
    wait_until(Duration::from_secs(5), "/healthz 503", || async {
        get(http, "/healthz")
            .await
            .is_some_and(|(code, body)| code == 503 && body.contains("database unavailable"))
    })
    .await;
    assert_eq!(metric(http, "tek_db_up").await, Some(0.0));
    let acked = acked_now(&sim);
    let received = metric(http, "tek_datagrams_received_total").await.unwrap();
    // A little more than one batch interval (300 s simulated = 5 s): batches arrive, none is
    // acknowledged.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        acked_now(&sim),
        acked,
        "something was acknowledged while the database was away"
    );
    assert!(metric(http, "tek_datagrams_received_total").await.unwrap() > received);
    assert!(metric(http, "tek_storage_errors_total").await.unwrap() > 0.0);

    // It comes back: the server reconnects, the devices' kept records are stored and acked.
    cluster
        .admin(&format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS true",
            db.name
        ))
        .unwrap();
    wait_until(Duration::from_secs(15), "/healthz 200 again", || async {
        get(http, "/healthz")
            .await
            .is_some_and(|(code, _)| code == 200)
    })
    .await;
    assert_eq!(metric(http, "tek_db_up").await, Some(1.0));
    assert!(metric(http, "tek_db_reconnects_total").await.unwrap() >= 1.0);
    wait_until(Duration::from_secs(30), "acks after the outage", || async {
        all_acked_at_least(&sim.ack_ledgers(), &acked)
    })
    .await;
    let ledgers = sim.ack_ledgers();
    sim.stop().await;
    server.shutdown().await;
    check_exactly_once(&*db, &ledgers);
}
