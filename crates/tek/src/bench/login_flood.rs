//! `tek bench login-flood`: the server stays usable while its login form is flooded.
//!
//! 1. `tek serve` as a child process on a fresh SQLite database with N bench devices sending
//!    paced telemetry (as `bench flood` does) and eight web users.
//! 2. **Calm**: `--seconds` of telemetry alone: `ack_p99_ms_calm`.
//! 3. **Flood from one address** (127.0.1.1), then **from 256 addresses of one network**
//!    (127.0.2.0 to 127.0.2.255), then **from 256 networks** (127.3.0.1 to 127.3.255.1, one
//!    address in each /24), each client socket bound to its source address before connecting:
//!    attacker threads POST `/login` with made-up e-mails and passwords at `--attack-rps`
//!    requests per second in all; every other request is send-and-close (the request is
//!    written and the socket closed without reading the answer, as the pentest did), the others
//!    read the status code, which is counted (401, 429, 503). Meanwhile a legitimate user signs
//!    in from 127.0.0.2 every 3 s (the eight users in turn) and the time to its `303` is taken,
//!    and the devices' ack latency is measured as in the calm phase.
//!    Before the second and third flood and after the last, another calm window: each flood's
//!    ack p99 is compared with the calm window just before it (`ack_p99_ratio`) and with the
//!    mean of the calm windows on both sides of it (`ack_p99_ratio_bracketed`), which cancels a
//!    drift of the calm latency over the run (it does drift, as the database grows).
//! 4. Per flood phase: the server's resident set, largest sample (every 250 ms) and after the
//!    phase (memory given back), the legitimate logins (successes, failures, slowest), the ack
//!    p99 and its ratio to calm.
//!
//! Every loop is bounded in time (`--seconds`) and the attackers also in count; all traffic
//! stays on loopback.

use super::flood::{self, AttackerSched, Phase};
use super::loadgen::{self, Counters, Mode, Plan, Telemetry};
use super::procfs;
use super::progress;
use super::server::{self, ServerProcess};
use anyhow::{bail, Context};
use serde_json::json;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tek_server::storage::UserStore;
use tokio::time::Instant;

/// Arguments of `tek bench login-flood`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Measured seconds of each phase (calm, then floods from 1 address, 256 addresses of one
    /// network, 256 networks).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub seconds: u64,
    /// Controllers sending telemetry throughout.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=20_000))]
    pub devices: u32,
    /// Milliseconds between two telemetry batches of a device.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(20..=60_000))]
    pub interval_ms: u64,
    /// Attacker threads.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub attackers: u64,
    /// Login requests per second of all attackers together; 0: as fast as they can. Bounded by
    /// default so that one source address does not run out of ephemeral ports in a long run.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(0..=100_000))]
    pub attack_rps: u64,
    /// Extra TOML for the server's configuration file.
    #[arg(long)]
    pub server_config: Option<String>,
    /// CPU scheduling of the attacker threads (see `bench flood`).
    #[arg(long, value_enum, default_value_t = AttackerSched::Idle)]
    pub attacker_sched: AttackerSched,
}

/// Password of the bench's web users.
const PASSWORD: &str = "bench password, not secret";
/// Web users the legitimate logins take in turn.
const USERS: usize = 8;
/// Where the legitimate user signs in from.
const LEGIT_FROM: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// Requests per attacker thread at most (the time bound normally ends the flood first).
const ATTACK_LIMIT: u64 = 10_000_000;

fn user_email(i: usize) -> String {
    format!("user{i}@bench.example")
}

/// Answers the attackers saw, by status.
#[derive(Default)]
struct AttackCounters {
    sent: AtomicU64,
    unread: AtomicU64,
    s401: AtomicU64,
    s429: AtomicU64,
    s503: AtomicU64,
    other: AtomicU64,
    errors: AtomicU64,
}

impl AttackCounters {
    fn json(&self) -> serde_json::Value {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        json!({
            "sent": g(&self.sent),
            "send_and_close": g(&self.unread),
            "401": g(&self.s401),
            "429": g(&self.s429),
            "503": g(&self.s503),
            "other": g(&self.other),
            "errors": g(&self.errors),
        })
    }
}

/// A TCP connection from `from` to `to`.
fn connect_from(from: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    s.bind(&SocketAddr::from((from, 0)).into())?;
    s.connect_timeout(&to.into(), Duration::from_secs(2))?;
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    Ok(s)
}

fn login_request(to: SocketAddr, email: &str, password: &str) -> String {
    let body = format!(
        "email={}&password={}",
        email.replace('@', "%40"),
        password.replace(' ', "+").replace(',', "%2C")
    );
    format!(
        "POST /login HTTP/1.1\r\nHost: {to}\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Sends one login from `from`; `None` when `read` is false, else the status code.
fn login_once(
    from: Ipv4Addr,
    to: SocketAddr,
    email: &str,
    password: &str,
    read: bool,
) -> std::io::Result<Option<u16>> {
    let mut s = connect_from(from, to)?;
    s.write_all(login_request(to, email, password).as_bytes())?;
    if !read {
        return Ok(None);
    }
    let mut head = [0u8; 64];
    let mut got = 0;
    while got < 12 {
        let n = s.read(&mut head[got..])?;
        if n == 0 {
            break;
        }
        got += n;
    }
    let text = String::from_utf8_lossy(&head[..got]);
    Ok(text.split_whitespace().nth(1).and_then(|c| c.parse().ok()))
}

struct Attacker {
    t: u64,
    threads: u64,
    spread: Spread,
    server: SocketAddr,
    rps: u64,
    counters: Arc<AttackCounters>,
    stop: Arc<AtomicBool>,
    sched: AttackerSched,
}

/// Where a flood comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spread {
    /// 127.0.1.1.
    OneAddress,
    /// 127.0.2.0-255: many addresses of one /24.
    OneNetwork,
    /// 127.3.0-255.1: one address in each of 256 /24s.
    Networks,
}

impl Spread {
    const ALL: [Spread; 3] = [Spread::OneAddress, Spread::OneNetwork, Spread::Networks];

    fn addresses(self) -> u32 {
        match self {
            Spread::OneAddress => 1,
            _ => 256,
        }
    }

    fn networks(self) -> u32 {
        match self {
            Spread::Networks => 256,
            _ => 1,
        }
    }

    fn label(self) -> String {
        format!(
            "flood from {} addresses in {} networks",
            self.addresses(),
            self.networks()
        )
    }
}

/// Source address `i` of a flood spread as `spread` says.
fn attacker_addr(spread: Spread, i: u64) -> Ipv4Addr {
    let low = (i % 256) as u8;
    match spread {
        Spread::OneAddress => Ipv4Addr::new(127, 0, 1, 1),
        Spread::OneNetwork => Ipv4Addr::new(127, 0, 2, low),
        Spread::Networks => Ipv4Addr::new(127, 3, low, 1),
    }
}

fn attacker(a: Attacker) -> anyhow::Result<()> {
    if a.sched == AttackerSched::Idle {
        flood::sched_idle_this_thread()?;
    }
    let per_thread = a.rps as f64 / a.threads as f64;
    let started = std::time::Instant::now();
    let mut i = 0u64;
    while !a.stop.load(Ordering::Relaxed) && i < ATTACK_LIMIT {
        if per_thread > 0.0 {
            let due = Duration::from_secs_f64(i as f64 / per_thread);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait.min(Duration::from_millis(100)));
                continue;
            }
        }
        let n = i * a.threads + a.t;
        let from = attacker_addr(a.spread, n);
        let read = n % 2 == 0;
        let email = format!("n{n}@x.yz");
        a.counters.sent.fetch_add(1, Ordering::Relaxed);
        let c = &a.counters;
        match login_once(from, a.server, &email, "x", read) {
            Ok(None) => c.unread.fetch_add(1, Ordering::Relaxed),
            Ok(Some(401)) => c.s401.fetch_add(1, Ordering::Relaxed),
            Ok(Some(429)) => c.s429.fetch_add(1, Ordering::Relaxed),
            Ok(Some(503)) => c.s503.fetch_add(1, Ordering::Relaxed),
            Ok(Some(_)) => c.other.fetch_add(1, Ordering::Relaxed),
            Err(_) => c.errors.fetch_add(1, Ordering::Relaxed),
        };
        i += 1;
    }
    Ok(())
}

/// The legitimate logins of one phase.
#[derive(Default)]
struct Legit {
    ok: u64,
    failed: Vec<String>,
    slowest_ms: f64,
    total_ms: f64,
}

/// Signs in every 3 s from [`LEGIT_FROM`] until `stop`.
fn legit_logins(server: SocketAddr, stop: Arc<AtomicBool>) -> Legit {
    let mut l = Legit::default();
    let mut k = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let t = std::time::Instant::now();
        let r = login_once(LEGIT_FROM, server, &user_email(k % USERS), PASSWORD, true);
        let ms = t.elapsed().as_secs_f64() * 1e3;
        l.slowest_ms = l.slowest_ms.max(ms);
        l.total_ms += ms;
        match r {
            Ok(Some(303)) => l.ok += 1,
            Ok(other) => l.failed.push(format!("{other:?} after {ms:.0} ms")),
            Err(e) => l.failed.push(format!("{e} after {ms:.0} ms")),
        }
        k += 1;
        let until = t + Duration::from_secs(3);
        while !stop.load(Ordering::Relaxed) && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    l
}

/// What one flood phase measured.
struct FloodResult {
    spread: Spread,
    /// The ack p99 of the calm window just before this flood.
    calm_p99: Option<f64>,
    /// The ack p99 of the calm window just after it (before the next flood, or the last one).
    calm_after_p99: Option<f64>,
    /// The server's writes per second (write calls, to storage) in that calm window.
    calm_written: (f64, f64),
    /// The same during the flood.
    written: (f64, f64),
    devices: Phase,
    attack: Arc<AttackCounters>,
    attack_secs: f64,
    legit: Legit,
    bench_cpu: f64,
    machine_user: f64,
    machine_kernel: f64,
    rss_before: u64,
    rss_max: u64,
    rss_after: u64,
}

#[allow(clippy::too_many_arguments)]
async fn flood_phase(
    args: &Args,
    spread: Spread,
    groups: Vec<loadgen::Group>,
    srv: (u32, SocketAddr, SocketAddr),
    telemetry: Telemetry,
    counters: Arc<Counters>,
) -> anyhow::Result<(FloodResult, Vec<loadgen::Group>)> {
    let (pid, udp, http) = srv;
    let rss_before = procfs::rss_kib(pid)?;
    // The load generator's and the attackers' own cost (this process) and the machine's kernel
    // time: on one machine the attack traffic's system calls and loopback packet handling share
    // the cores with the server, which a flood from other machines would not.
    let bench_cpu = procfs::CpuMeter::start(std::process::id())?;
    let io = procfs::WriteMeter::start(pid)?;
    let machine_before = procfs::MachineCpu::now()?;
    let attack = Arc::new(AttackCounters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for t in 0..args.attackers {
        let a = Attacker {
            t,
            threads: args.attackers,
            spread,
            server: http,
            rps: args.attack_rps,
            counters: attack.clone(),
            stop: stop.clone(),
            sched: args.attacker_sched,
        };
        threads.push(std::thread::spawn(move || attacker(a)));
    }
    let legit = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            // The flood first: the user arrives when it is under way.
            std::thread::sleep(Duration::from_secs(1));
            legit_logins(http, stop)
        })
    };
    let rss_max = Arc::new(AtomicU64::new(rss_before));
    let sampler = {
        let rss_max = rss_max.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                if let Ok(r) = procfs::rss_kib(pid) {
                    rss_max.fetch_max(r, Ordering::Relaxed);
                }
            }
        })
    };
    let started = std::time::Instant::now();
    let stop_at = stop.clone();
    let secs = args.seconds;
    let stopper = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1 + secs)).await;
        stop_at.store(true, Ordering::Relaxed);
        started.elapsed().as_secs_f64()
    });
    let label = spread.label();
    let (devices, groups) =
        flood::phase(groups, udp, telemetry, args.seconds, pid, counters, &label).await?;
    let attack_secs = stopper
        .await
        .unwrap_or_else(|_| started.elapsed().as_secs_f64());
    let bench_cpu = bench_cpu.cores()?;
    let written = io.per_second()?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (machine_user, machine_kernel) =
        machine_before.cores_until(&procfs::MachineCpu::now()?, cores);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join()
            .map_err(|_| anyhow::anyhow!("an attacker thread panicked"))??;
    }
    let legit = legit
        .join()
        .map_err(|_| anyhow::anyhow!("the legitimate login thread panicked"))?;
    // Checks still running when the flood ended finish; then what is resident is what stays.
    tokio::time::sleep(Duration::from_secs(2)).await;
    sampler.abort();
    let rss_after = procfs::rss_kib(pid)?;
    Ok((
        FloodResult {
            spread,
            calm_p99: None,
            calm_after_p99: None,
            calm_written: (0.0, 0.0),
            written,
            devices,
            attack,
            attack_secs,
            legit,
            bench_cpu,
            machine_user,
            machine_kernel,
            rss_before,
            rss_max: rss_max.load(Ordering::Relaxed),
            rss_after,
        },
        groups,
    ))
}

/// Runs the benchmark and returns its summary line.
pub fn run(args: Args) -> anyhow::Result<String> {
    let n = args.devices;
    let dir = tempfile::Builder::new()
        .prefix("tek-bench-login-flood")
        .tempdir()?;
    progress!(
        "provisioning {n} devices and {USERS} users in {}",
        dir.path().display()
    );
    let ids = server::provision(dir.path(), n)?;
    {
        let db = tek_server::storage::sqlite::Sqlite::open_dir(dir.path())?;
        let hash =
            tek_server::http::auth::hash_password(PASSWORD).map_err(|e| anyhow::anyhow!("{e}"))?;
        for i in 0..USERS {
            db.create_user(&user_email(i), &hash, false, 0)?;
        }
    }
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let srv = ServerProcess::start(dir.path(), args.server_config.as_deref())?;
    let (pid, udp, http) = (srv.pid(), srv.udp, srv.http);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let telemetry = Telemetry {
        window: 1,
        records: 5,
        retry: Duration::from_secs(3),
        interval: Some(Duration::from_millis(args.interval_ms)),
    };
    let counters = Arc::new(Counters::default());
    let result = rt.block_on(async {
        let groups = loadgen::groups(
            &ids,
            (n as usize).div_ceil(super::fleet::DEVICES_PER_SOCKET),
        )
        .await?;
        let start = Instant::now();
        let hs = Plan {
            mode: Mode::Sealed,
            telemetry: None,
            keepalive: None,
            handshake_timeout: Duration::from_secs(5),
            handshake_window: 4,
            until_established: true,
            measure_from: start,
            measure_to: start,
            end: start + Duration::from_secs(120),
        };
        let (_, groups) = loadgen::run_all(groups, udp, hs, counters.clone(), "handshakes").await;
        let established = counters.established.load(Ordering::Relaxed);
        if established < u64::from(n) {
            bail!("only {established} of {n} devices got a session");
        }
        let rss_calm = procfs::rss_kib(pid)?;
        let mut first_calm = None;
        let mut floods: Vec<FloodResult> = Vec::new();
        let mut groups = groups;
        // Each flood is compared with the calm windows on both sides of it: how the ack latency
        // of a calm server drifts over a run (it does, by several times in some windows) must
        // not be charged to the flood that happens to follow. `None` is the last calm window.
        for spread in Spread::ALL.map(Some).into_iter().chain([None]) {
            let label = if first_calm.is_none() {
                "calm"
            } else {
                "calm again"
            };
            let io = procfs::WriteMeter::start(pid)?;
            let (c, g) = flood::phase(
                groups,
                udp,
                telemetry,
                args.seconds,
                pid,
                counters.clone(),
                label,
            )
            .await?;
            let calm_written = io.per_second()?;
            groups = g;
            progress!(
                "{label}: ack p99 {:?} ms, rss {} KiB, server writes {:.0} KiB/s",
                c.p99,
                procfs::rss_kib(pid)?,
                calm_written.0 / 1024.0
            );
            let calm_before = c.p99;
            first_calm.get_or_insert(c);
            if let Some(last) = floods.last_mut() {
                last.calm_after_p99 = calm_before;
            }
            let Some(spread) = spread else { break };
            let (mut r, g) = flood_phase(
                &args,
                spread,
                groups,
                (pid, udp, http),
                telemetry,
                counters.clone(),
            )
            .await?;
            r.calm_p99 = calm_before;
            r.calm_written = calm_written;
            groups = g;
            progress!(
                "{}: {} logins sent, ack p99 {:?} ms, rss max {} KiB, \
                 after {} KiB; legitimate logins {} ok, {} failed, slowest {:.0} ms",
                spread.label(),
                r.attack.sent.load(Ordering::Relaxed),
                r.devices.p99,
                r.rss_max,
                r.rss_after,
                r.legit.ok,
                r.legit.failed.len(),
                r.legit.slowest_ms
            );
            floods.push(r);
        }
        drop(groups);
        let calm = first_calm.context("no calm window was measured")?;
        Ok::<_, anyhow::Error>((calm, rss_calm, floods))
    });
    let log = srv.log_tail();
    srv.stop()?;
    let (calm, rss_calm, floods) = result.with_context(|| format!("server log: {log}"))?;
    let phases: Vec<serde_json::Value> = floods
        .iter()
        .map(|f| {
            let sent = f.attack.sent.load(Ordering::Relaxed);
            let legit_n = f.legit.ok + f.legit.failed.len() as u64;
            json!({
                "addresses": f.spread.addresses(),
                "networks": f.spread.networks(),
                "attack_logins": f.attack.json(),
                "attack_logins_per_s": sent as f64 / f.attack_secs.max(1e-9),
                "legit_logins_ok": f.legit.ok,
                "legit_logins_failed": f.legit.failed,
                "legit_login_ms_mean": f.legit.total_ms / (legit_n.max(1) as f64),
                "legit_login_ms_max": f.legit.slowest_ms,
                "ack_p50_ms": f.devices.p50,
                "ack_p99_ms": f.devices.p99,
                "ack_p99_ms_calm_before": f.calm_p99,
                "server_write_call_bytes_per_s_calm_before": f.calm_written.0,
                "server_storage_write_bytes_per_s_calm_before": f.calm_written.1,
                "server_write_call_bytes_per_s": f.written.0,
                "server_storage_write_bytes_per_s": f.written.1,
                "ack_p99_ms_calm_after": f.calm_after_p99,
                "ack_p99_ratio": match (f.calm_p99, f.devices.p99) {
                    (Some(c), Some(x)) => Some(x / c.max(1e-9)),
                    _ => None,
                },
                "ack_p99_ratio_bracketed": match (f.calm_p99, f.calm_after_p99, f.devices.p99) {
                    (Some(a), Some(b), Some(x)) => Some(x / ((a + b) / 2.0).max(1e-9)),
                    _ => None,
                },
                "ack_samples": f.devices.samples,
                "retransmits": f.devices.retransmits,
                "server_cpu_cores": f.devices.server_cpu,
                "bench_cpu_cores": f.bench_cpu,
                "machine_user_cores": f.machine_user,
                "machine_kernel_cores": f.machine_kernel,
                "rss_before_kib": f.rss_before,
                "rss_max_kib": f.rss_max,
                "rss_after_kib": f.rss_after,
            })
        })
        .collect();
    let summary = json!({
        "bench": "login-flood",
        "seconds": args.seconds,
        "devices": n,
        "interval_ms": args.interval_ms,
        "attacker_threads": args.attackers,
        "attack_rps_limit": args.attack_rps,
        "attacker_sched": args.attacker_sched.name(),
        "ack_p50_ms_calm": calm.p50,
        "ack_p99_ms_calm": calm.p99,
        "ack_samples_calm": calm.samples,
        "server_cpu_cores_calm": calm.server_cpu,
        "rss_calm_kib": rss_calm,
        "floods": phases,
        "loadavg": procfs::loadavg(),
    });
    if calm.samples == 0 {
        bail!("no telemetry was acknowledged: {summary}");
    }
    Ok(summary.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attacker_addresses() {
        assert_eq!(
            attacker_addr(Spread::OneAddress, 7),
            Ipv4Addr::new(127, 0, 1, 1)
        );
        for spread in [Spread::OneNetwork, Spread::Networks] {
            let all: std::collections::HashSet<Ipv4Addr> =
                (0..1000).map(|i| attacker_addr(spread, i)).collect();
            assert_eq!(all.len(), 256);
            assert!(!all.contains(&LEGIT_FROM));
            let nets: std::collections::HashSet<[u8; 3]> = all
                .iter()
                .map(|a| [a.octets()[0], a.octets()[1], a.octets()[2]])
                .collect();
            assert_eq!(nets.len() as u32, spread.networks());
        }
        let r = login_request("127.0.0.1:80".parse().unwrap(), "a@b.c", PASSWORD);
        let body = r.split("\r\n\r\n").nth(1).unwrap();
        assert!(r.contains(&format!("Content-Length: {}\r\n", body.len())));
        assert_eq!(body, "email=a%40b.c&password=bench+password%2C+not+secret");
    }
}
