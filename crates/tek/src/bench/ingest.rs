//! `tek bench ingest`: telemetry records durably stored and acknowledged per second.
//!
//! 1. Baseline: the echo server ([`super::echo`]) as a child process and the load generator in
//!    [`Mode::Plain`]: same devices, same sockets, same datagram sizes, same window, the
//!    server's socket buffers and system calls, no crypto, no storage. Gives echoes per second;
//!    the datagrams the echo's socket dropped are reported (`baseline_udp_drops`).
//! 2. The server: `tek serve` as a child process on a fresh SQLite database. Every device shakes
//!    hands first (real Hellos), then keeps `window` telemetry batches in flight, a new one per
//!    Ack. Only Acks count, and an Ack means committed (PROTOCOL.md 11.2). Ack latency is taken
//!    per batch from its first send; server CPU from `/proc/<pid>/stat`.
//! 3. After the server stopped, the database is opened and every acknowledged record must be in
//!    it — the benchmark checks durability, not only speed.
//!
//! `ratio` = stored-and-acknowledged records per second / baseline echoes per second. With the
//! default of one record per batch that is datagram for datagram.

use super::loadgen::{self, Counters, Mode, Plan, Telemetry};
use super::procfs::{self, CpuMeter};
use super::progress;
use super::server::{self, ServerProcess};
use anyhow::{bail, Context};
use serde_json::json;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tek_server::storage::TelemetryStore;
use tokio::time::Instant;

/// Arguments of `tek bench ingest`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Measured seconds of each phase (after a one-second warm-up).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub seconds: u64,
    /// Devices sending at once.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=20_000))]
    pub devices: u32,
    /// Telemetry batches in flight per device (16 x 100 devices keeps the server busy; with 4 the
    /// run measures commit latency rather than capacity).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub window: u64,
    /// Records per batch (1: the ratio is datagram for datagram).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub records: u8,
    /// Generator sockets (each on its own loopback address).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub sockets: u64,
    /// Generator threads.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub threads: u64,
    /// Database: `sqlite` (a fresh SQLite database in a temporary directory, the default).
    #[arg(long, default_value = "sqlite")]
    pub db: String,
    /// Extra TOML for the server's configuration file (e.g. "[ingest]\nbatch_records = 1000").
    #[arg(long)]
    pub server_config: Option<String>,
}

/// Runs the benchmark and returns its summary line.
pub fn run(args: Args) -> anyhow::Result<String> {
    if args.db != "sqlite" {
        bail!(
            "--db {}: only `sqlite` is supported: `tek serve` has no database URL option yet \
             (the PostgreSQL backend of issue 6 is not wired into it)",
            args.db
        );
    }
    let dir = tempfile::Builder::new()
        .prefix("tek-bench-ingest")
        .tempdir()?;
    progress!(
        "provisioning {} devices in {}",
        args.devices,
        dir.path().display()
    );
    let ids = server::provision(dir.path(), args.devices)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads as usize)
        .enable_all()
        .build()?;
    let telemetry = Telemetry {
        window: args.window as usize,
        records: args.records,
        retry: Duration::from_secs(2),
        interval: None,
    };
    let measure = Duration::from_secs(args.seconds);
    // The echo's socket gets the buffers the server will have (its configuration file included).
    let buffer_bytes = match args.server_config.as_deref() {
        Some(text) => {
            tek_server::Config::from_toml(text, std::path::Path::new("bench-server.toml"))?
                .udp_buffer_bytes
        }
        None => tek_server::Config::default().udp_buffer_bytes,
    };

    // 1. Baseline.
    let port = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port();
    let echo_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut echo = Command::new(std::env::current_exe()?)
        .args(["bench", "echo", "--udp", &echo_addr.to_string()])
        .args(["--max-seconds", &(args.seconds + 60).to_string()])
        .args(["--buffer-bytes", &buffer_bytes.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .context("cannot start the echo server")?;
    std::thread::sleep(Duration::from_millis(300));
    let echo_pid = echo.id();
    let (baseline_rate, (baseline_cpu, baseline_gen_cpu), base_lat) = rt.block_on(async {
        let groups = loadgen::groups(&ids, args.sockets as usize).await?;
        let counters = Arc::new(Counters::default());
        let start = Instant::now();
        let plan = Plan {
            mode: Mode::Plain,
            telemetry: Some(telemetry),
            keepalive: None,
            handshake_timeout: Duration::from_secs(3),
            handshake_window: 0,
            until_established: false,
            measure_from: start + Duration::from_secs(1),
            measure_to: start + Duration::from_secs(1) + measure,
            end: start + Duration::from_secs(1) + measure + Duration::from_millis(200),
        };
        let cpu = tokio::spawn(async move {
            tokio::time::sleep_until(plan.measure_from).await;
            let m = CpuMeter::start(echo_pid)?;
            let g = CpuMeter::start(std::process::id())?;
            tokio::time::sleep_until(plan.measure_to).await;
            Ok::<_, anyhow::Error>((m.cores()?, g.cores()?))
        });
        let (mut lat, _) =
            loadgen::run_all(groups, echo_addr, plan, counters.clone(), "baseline").await;
        let rate = counters.batches_acked.load(Ordering::Relaxed) as f64 / measure.as_secs_f64();
        let cpu = cpu.await??;
        Ok::<_, anyhow::Error>((rate, cpu, lat.percentile_ms(50.0)))
    })?;
    let baseline_drops = procfs::udp_drops(echo_addr).ok();
    let _ = echo.kill();
    let _ = echo.wait();
    progress!(
        "baseline: {baseline_rate:.0} echoes/s ({buffer_bytes} B socket buffers, {} datagrams \
         dropped by its socket)",
        baseline_drops.map_or("?".into(), |d| d.to_string())
    );

    // 2. The server.
    let srv = ServerProcess::start(dir.path(), args.server_config.as_deref())?;
    let pid = srv.pid();
    let udp = srv.udp;
    let rss_before = procfs::rss_kib(pid)?;
    let result = rt.block_on(async {
        let groups = loadgen::groups(&ids, args.sockets as usize).await?;
        let counters = Arc::new(Counters::default());
        let start = Instant::now();
        let hs_plan = Plan {
            mode: Mode::Sealed,
            telemetry: None,
            keepalive: None,
            handshake_timeout: Duration::from_secs(3),
            handshake_window: 32,
            until_established: true,
            measure_from: start,
            measure_to: start,
            end: start + Duration::from_secs(120),
        };
        let (_, groups) =
            loadgen::run_all(groups, udp, hs_plan, counters.clone(), "handshakes").await;
        let established = counters.established.load(Ordering::Relaxed);
        if established < u64::from(args.devices) {
            bail!(
                "only {established} of {} devices got a session",
                args.devices
            );
        }
        progress!(
            "{established} sessions in {:.1} s",
            start.elapsed().as_secs_f64()
        );
        let start = Instant::now();
        let plan = Plan {
            mode: Mode::Sealed,
            telemetry: Some(telemetry),
            keepalive: None,
            handshake_timeout: Duration::from_secs(3),
            handshake_window: 32,
            until_established: false,
            measure_from: start + Duration::from_secs(1),
            measure_to: start + Duration::from_secs(1) + measure,
            end: start + Duration::from_secs(1) + measure + Duration::from_secs(3),
        };
        let cpu = tokio::spawn(async move {
            tokio::time::sleep_until(plan.measure_from).await;
            let m = CpuMeter::start(pid)?;
            let g = CpuMeter::start(std::process::id())?;
            let w = procfs::WriteMeter::start(pid)?;
            tokio::time::sleep_until(plan.measure_to).await;
            Ok::<_, anyhow::Error>((m.cores()?, g.cores()?, w.bytes()?))
        });
        let (mut lat, _) = loadgen::run_all(groups, udp, plan, counters.clone(), "server").await;
        let cpu = cpu.await??;
        let secs = measure.as_secs_f64();
        Ok::<_, anyhow::Error>((
            counters.records_acked.load(Ordering::Relaxed) as f64 / secs,
            counters.batches_acked.load(Ordering::Relaxed) as f64 / secs,
            lat.percentile_ms(50.0),
            lat.percentile_ms(99.0),
            lat.len(),
            cpu,
            counters.records_acked_total.load(Ordering::Relaxed),
            counters.retransmits.load(Ordering::Relaxed),
        ))
    });
    let rss_after = procfs::rss_kib(pid).unwrap_or(0);
    let server_drops = procfs::udp_drops(udp).ok();
    srv.stop()?;
    let (
        records_s,
        batches_s,
        p50,
        p99,
        samples,
        (cpu, gen_cpu, written),
        acked_total,
        retransmits,
    ) = result?;
    // What the server wrote per acknowledged datagram in the measured window: through write
    // calls (the database's log and pages) and what reached storage (issue 21's "disk written
    // per 1-record datagram").
    let batches = (batches_s * measure.as_secs_f64()).max(1.0);
    let per_batch = (written.0 as f64 / batches, written.1 as f64 / batches);

    // 3. Every acknowledged record must be in the database.
    let db = tek_server::storage::sqlite::Sqlite::open_existing_dir(dir.path())?;
    let mut stored = 0u64;
    for d in &ids {
        stored += db.telemetry_count(d.id)?;
    }
    if stored < acked_total {
        bail!("{acked_total} records were acknowledged but only {stored} are in the database");
    }
    let ratio = records_s / baseline_rate.max(1e-9);
    progress!(
        "server: {records_s:.0} records/s ({batches_s:.0} batches/s), p50 {p50:?} ms, p99 {p99:?} ms, \
         cpu {cpu:.2} cores; ratio {ratio:.2}; {stored} records stored, {acked_total} acknowledged; \
         server writes {:.0} B per batch ({:.0} B to storage)",
        per_batch.0,
        per_batch.1
    );
    Ok(json!({
        "bench": "ingest",
        "db": "sqlite",
        "devices": args.devices,
        "window": args.window,
        "records_per_batch": args.records,
        "seconds": args.seconds,
        "pps": records_s,
        "batches_per_s": batches_s,
        "baseline_pps": baseline_rate,
        "ratio": ratio,
        "ack_p50_ms": p50,
        "ack_p99_ms": p99,
        "ack_samples": samples,
        "baseline_p50_ms": base_lat,
        "server_cpu_cores": cpu,
        "server_write_call_bytes_per_batch": per_batch.0,
        "server_storage_write_bytes_per_batch": per_batch.1,
        "baseline_cpu_cores": baseline_cpu,
        "generator_cpu_cores": gen_cpu,
        "baseline_generator_cpu_cores": baseline_gen_cpu,
        "server_rss_kib": rss_after.max(rss_before),
        "records_acked": acked_total,
        "records_stored": stored,
        "retransmits": retransmits,
        "udp_buffer_bytes": buffer_bytes,
        "baseline_udp_drops": baseline_drops,
        "server_udp_drops": server_drops,
        "loadavg": procfs::loadavg(),
    })
    .to_string())
}
