//! `tek bench fleet`: how many devices one server holds, and what each costs.
//!
//! N bench devices (real Hellos, real sessions) are multiplexed over sockets of at most
//! [`DEVICES_PER_SOCKET`] devices, each socket on its own loopback address (the server allows a
//! burst of 40 Hellos per source address). After every device has a session they hold it with a
//! Keepalive every 60 s (no reply wanted, as at the defaults) for `--hold-seconds`. Memory per
//! device is the growth of the `tek serve` child's resident set (`VmRSS`) from just after start
//! to the end of the hold, divided by N; CPU at idle is the server's CPU time over the hold.
//!
//! Every device has a saved configuration, as real ones do (eight server names, GSM access, a
//! thermostat and a time zone set on the server): it is pending at start, pushed by the server
//! at the device's first Keepalive and acknowledged, so the server holds what it holds for a
//! configured fleet in the field. `--without-configs` measures factory devices instead.

use super::loadgen::{self, Counters, Mode, Plan};
use super::procfs::{self, CpuMeter};
use super::progress;
use super::server::{self, ServerProcess};
use anyhow::bail;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tek_proto::message::Config;
use tokio::time::Instant;

/// Devices sharing one generator socket (and so one source address).
pub const DEVICES_PER_SOCKET: usize = 40;

/// Arguments of `tek bench fleet`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Devices with live sessions.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub devices: u32,
    /// Seconds the sessions are held with keepalives after the last handshake.
    #[arg(long, default_value_t = 65, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub hold_seconds: u64,
    /// Keepalive interval, seconds.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub keepalive: u64,
    /// Generator threads.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub threads: u64,
    /// Leave the devices without a saved configuration (factory settings).
    #[arg(long)]
    pub without_configs: bool,
}

/// The configuration saved for every device: what an installer sets on the server's pages.
fn field_config() -> anyhow::Result<Config> {
    let mut c = Config::default();
    for i in 1..=8 {
        c.servers
            .push(text(&format!("ems{i}.pools.example.net"))?)
            .map_err(|_| anyhow::anyhow!("too many server names"))?;
    }
    c.gsm.apn = text("internet.provider.example")?;
    c.gsm.login = text("pool-ems")?;
    c.gsm.password = text("a-long-cellular-password")?;
    c.thermostat.setpoint_cc = 2850;
    c.time_zone = text("CET-1CEST,M3.5.0,M10.5.0/3")?;
    c.validate()
        .map_err(|e| anyhow::anyhow!("the bench configuration is invalid: {e:?}"))?;
    Ok(c)
}

fn text<const N: usize>(s: &str) -> anyhow::Result<heapless::String<N>> {
    heapless::String::try_from(s).map_err(|_| anyhow::anyhow!("{s:?} is too long"))
}

/// Saves [`field_config`] as every device's first version (pending: the server pushes it).
fn save_configs(dir: &std::path::Path, ids: &[server::DeviceIdentity]) -> anyhow::Result<()> {
    use tek_server::storage::{sqlite::Sqlite, ConfigStore};
    let db = Sqlite::open_dir(dir)?;
    let config = field_config()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    for d in ids {
        db.save_config(d.id, &config, now)?;
    }
    Ok(())
}

/// Runs the benchmark and returns its summary line.
pub fn run(args: Args) -> anyhow::Result<String> {
    let n = args.devices as usize;
    let sockets = n.div_ceil(DEVICES_PER_SOCKET);
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0);
    if (sockets as u64) + 200 > limit {
        bail!("{sockets} sockets are needed but the open-file limit is {limit}");
    }
    let dir = tempfile::Builder::new()
        .prefix("tek-bench-fleet")
        .tempdir()?;
    progress!("provisioning {n} devices");
    let ids = server::provision(dir.path(), args.devices)?;
    if !args.without_configs {
        progress!("saving a configuration for each device");
        save_configs(dir.path(), &ids)?;
    }
    let config = format!("[sessions]\nmax = {}\n", n.max(100_000));
    let srv = ServerProcess::start(dir.path(), Some(&config))?;
    let pid = srv.pid();
    std::thread::sleep(Duration::from_millis(500));
    let rss_start = procfs::rss_kib(pid)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads as usize)
        .enable_all()
        .build()?;
    let udp = srv.udp;
    let keepalive = Duration::from_secs(args.keepalive);
    let out = rt.block_on(async {
        let groups = loadgen::groups(&ids, sockets).await?;
        let counters = Arc::new(Counters::default());
        let start = Instant::now();
        let far = start + Duration::from_secs(3600);
        let hs = Plan {
            mode: Mode::Sealed,
            telemetry: None,
            keepalive: Some(keepalive),
            // Bounded so that the handshakes queued at the server stay below the devices'
            // 3-second retry (each costs the server a database load and a committed counter).
            handshake_timeout: Duration::from_secs(30),
            handshake_window: if n > 10_000 { 1 } else { 4 },
            until_established: true,
            measure_from: far,
            measure_to: far,
            end: start + Duration::from_secs(900),
        };
        let (_, groups) = loadgen::run_all(groups, udp, hs, counters.clone(), "handshakes").await;
        let established = counters.established.load(Ordering::Relaxed);
        let handshake_s = start.elapsed().as_secs_f64();
        if established < n as u64 {
            bail!("only {established} of {n} devices got a session in 900 s");
        }
        progress!(
            "{established} sessions in {handshake_s:.1} s; holding {} s",
            args.hold_seconds
        );
        let hold_start = Instant::now();
        let hold = Plan {
            end: hold_start + Duration::from_secs(args.hold_seconds),
            until_established: false,
            ..hs
        };
        let cpu = CpuMeter::start(pid)?;
        let (_, _groups) = loadgen::run_all(groups, udp, hold, counters.clone(), "hold").await;
        let cores = cpu.cores()?;
        Ok::<_, anyhow::Error>((handshake_s, cores, counters))
    });
    let (handshake_s, idle_cores, counters) = out?;
    let rss_end = procfs::rss_kib(pid)?;
    let sessions = server::metric(srv.http, "tek_sessions")?;
    let online = server::metric(srv.http, "tek_devices_online")?;
    srv.stop()?;
    let per_device = (rss_end.saturating_sub(rss_start)) as f64 * 1024.0 / n as f64;
    progress!(
        "rss {rss_start} KiB -> {rss_end} KiB: {per_device:.0} bytes per device; \
         {sessions} sessions, {online} online; idle cpu {idle_cores:.3} cores"
    );
    if (sessions as usize) < n {
        bail!("the server holds {sessions} sessions, not {n}");
    }
    Ok(json!({
        "bench": "fleet",
        "devices": n,
        "sockets": sockets,
        "bytes_per_device": per_device,
        "rss_start_kib": rss_start,
        "rss_end_kib": rss_end,
        "server_sessions": sessions,
        "server_online": online,
        "idle_cpu_cores": idle_cores,
        "handshake_seconds": handshake_s,
        "hold_seconds": args.hold_seconds,
        "keepalives": counters.keepalives.load(Ordering::Relaxed),
        "configs": !args.without_configs,
        "config_acks": counters.config_acks.load(Ordering::Relaxed),
        "hellos": counters.hellos.load(Ordering::Relaxed),
        "loadavg": procfs::loadavg(),
    })
    .to_string())
}
