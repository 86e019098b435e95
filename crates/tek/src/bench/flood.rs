//! `tek bench flood`: 1,000 controllers keep working while other sockets flood the server.
//!
//! 1. `tek serve` as a child process on a fresh SQLite database; N bench devices (real
//!    handshakes, real AES-CCM sessions, 40 per socket on 127.50.x.x) send paced telemetry, a
//!    batch every `--interval-ms` each (as a controller does, only faster), and keepalives.
//! 2. **Calm**: `--seconds` of that alone; every datagram the devices send is captured. Ack
//!    latency p99 of the batches first sent in the window is `ack_p99_ms_calm`.
//! 3. **Flood**: the same again while attacker threads, each with its own sockets on other
//!    loopback addresses (127.66.x.x), send as fast as they can, round robin:
//!    * random garbage (random bytes, random lengths 1..=1500);
//!    * valid framing with wrong tags: session datagrams with a live device's id and session id
//!      and a counter ahead of the replay window (so the server runs the AEAD), and Hellos with
//!      real device ids and random CMACs;
//!    * unknown device ids: Hellos and session datagrams with ids never provisioned;
//!    * every captured datagram of the calm phase (Hellos and session datagrams), replayed.
//!
//!    The attacker threads run under SCHED_IDLE by default (`--attacker-sched`), so they use
//!    only CPU time the server and the devices leave idle, as an attacker on another machine
//!    would; the summary reports the attack rate they achieved and the legitimate rate.
//!
//!    `ack_p99_ms_flood` is the devices' ack latency p99 during the flood.
//! 4. `bytes_to_attackers`: everything that arrived on any attacking socket (must be 0: the
//!    server never answers what it cannot authenticate). `records_lost`: after the server
//!    stopped, every record a device saw acknowledged must be in the database (must be 0).
//!    `rss_before`/`rss_after`/`rss_max`: the server's resident set before the flood, after it,
//!    and the largest sample during it (KiB). `kernel_drops_*`: datagrams the kernel dropped
//!    because the server's receive buffer was full (`/proc/net/udp`), the cost of a flood that
//!    outruns the server.
//!
//! Every loop is bounded in time (`--seconds`) and the attackers also in count.

use super::loadgen::{self, Counters, Mode, Plan, Telemetry};
use super::procfs::{self, CpuMeter};
use super::progress;
use super::server::{self, ServerProcess};
use anyhow::{bail, Context};
use serde_json::json;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tek_server::storage::{TelemetryQuery, TelemetryStore};
use tokio::time::Instant;

/// Arguments of `tek bench flood`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Measured seconds of each phase (calm, then flood).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub seconds: u64,
    /// Controllers running normally.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..=20_000))]
    pub devices: u32,
    /// Milliseconds between two telemetry batches of a device.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(20..=60_000))]
    pub interval_ms: u64,
    /// Records per batch.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub records: u8,
    /// Attacker threads, each sending as fast as it can.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=16))]
    pub attackers: u64,
    /// Attack datagrams per second of each thread; 0: as fast as it can (the default). The
    /// smoke test uses a rate an unoptimised build of the server keeps up with.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=10_000_000))]
    pub attack_pps: u64,
    /// Sockets (source addresses) per attacker thread.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub attack_sockets: u64,
    /// Extra TOML for the server's configuration file.
    #[arg(long)]
    pub server_config: Option<String>,
    /// CPU scheduling of the attacker threads: `idle` (SCHED_IDLE, the default: they run only
    /// on CPU time nothing else wants, as an attacker on another machine costs the server no
    /// CPU) or `normal` (they compete with the server and the controllers for this machine's
    /// cores).
    #[arg(long, value_enum, default_value_t = AttackerSched::Idle)]
    pub attacker_sched: AttackerSched,
}

/// How the attacker threads are scheduled (see `--attacker-sched`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttackerSched {
    /// Linux SCHED_IDLE: only CPU time no other thread wants.
    Idle,
    /// The default policy, competing with everything else.
    Normal,
}

impl AttackerSched {
    pub(crate) fn name(self) -> &'static str {
        match self {
            AttackerSched::Idle => "SCHED_IDLE",
            AttackerSched::Normal => "SCHED_OTHER",
        }
    }
}

/// Puts the calling thread under SCHED_IDLE, so that it uses only CPU time that neither the
/// server nor the controllers want: a flooder on the internet does not run on the server's
/// cores, while on a 2-core test machine an unrestricted attacker mostly measures CPU
/// contention instead of the server's defences.
pub(crate) fn sched_idle_this_thread() -> anyhow::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: plain system call on the calling thread (pid 0) with a valid parameter struct.
    let r = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if r != 0 {
        bail!(
            "sched_setscheduler(SCHED_IDLE): {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// The kinds of attack datagrams, in the order the attackers cycle through them.
const KINDS: [&str; 4] = ["garbage", "wrong_tag", "unknown_id", "replay"];
/// Captured datagrams kept for replay at most.
const CAPTURE_LIMIT: usize = 500_000;
/// Attack datagrams per thread at most (the time bound normally ends the flood first).
const ATTACK_LIMIT: u64 = 2_000_000_000;
/// First device id that is never provisioned.
const UNKNOWN_BASE: u32 = 3_000_000_000;

/// The four pools of attack datagrams, built before the flood so sending costs only `sendto`.
struct Pools {
    kinds: [Vec<Vec<u8>>; 4],
}

/// A tiny PRNG (xorshift64*) for cheap variation; the seeds come from the OS.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let mut b = [0u8; 8];
        let _ = getrandom::fill(&mut b);
        Rng(u64::from_le_bytes(b) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

const KIND_HELLO: u8 = 1;
const KIND_DATA: u8 = 3;

fn build_pools(captured: &[Vec<u8>], devices: u32) -> Pools {
    let mut rng = Rng::new();
    let mut garbage = Vec::with_capacity(4096);
    for _ in 0..4096 {
        let len = 1 + (rng.next() % 1500) as usize;
        let mut b = vec![0u8; len];
        rng.fill(&mut b);
        garbage.push(b);
    }
    let hellos: Vec<&Vec<u8>> = captured
        .iter()
        .filter(|d| d.len() == 46 && d[1] == KIND_HELLO)
        .collect();
    let data: Vec<&Vec<u8>> = captured
        .iter()
        .filter(|d| d.len() >= 24 && d[1] == KIND_DATA)
        .collect();
    // Valid framing, wrong tags: a live session's header with a counter far ahead (passes the
    // replay window, fails the AEAD, moves nothing); Hellos of real devices with a random CMAC.
    let mut wrong = Vec::with_capacity(4096);
    for i in 0..4096usize {
        if i % 4 == 3 || data.is_empty() {
            let id = 1 + (rng.next() % u64::from(devices)) as u32;
            let mut h = hellos.get(i % hellos.len().max(1)).map_or_else(
                || {
                    let mut h = vec![0u8; 46];
                    h[0] = 1;
                    h[1] = KIND_HELLO;
                    h
                },
                |h| h.to_vec(),
            );
            h[2..6].copy_from_slice(&id.to_be_bytes());
            rng.fill(&mut h[14..46]);
            wrong.push(h);
        } else {
            let d = data[i % data.len()];
            let mut b = d.clone();
            let counter = u32::from_be_bytes([d[10], d[11], d[12], d[13]]);
            let ahead = counter.wrapping_add(1 << 20).wrapping_add(i as u32);
            b[10..14].copy_from_slice(&ahead.to_be_bytes());
            rng.fill(&mut b[14..]);
            wrong.push(b);
        }
    }
    // Unknown device ids: Hellos (each id new, so the server's unknown-id cache is tested too)
    // and session datagrams.
    let mut unknown = Vec::with_capacity(4096);
    for i in 0..4096usize {
        let id = UNKNOWN_BASE + (rng.next() % 1_000_000_000) as u32;
        let mut b = if i % 2 == 0 {
            let mut h = vec![0u8; 46];
            h[0] = 1;
            h[1] = KIND_HELLO;
            h
        } else {
            let mut d = vec![0u8; 24 + (rng.next() % 200) as usize];
            tek_proto::wire::data::emit_header(&mut d, id, rng.next() as u32, rng.next() as u32);
            d
        };
        b[2..6].copy_from_slice(&id.to_be_bytes());
        if i % 2 == 0 {
            rng.fill(&mut b[6..]);
        } else {
            rng.fill(&mut b[14..]);
        }
        unknown.push(b);
    }
    let replay: Vec<Vec<u8>> = captured.to_vec();
    Pools {
        kinds: [garbage, wrong, unknown, replay],
    }
}

/// What the attackers did.
#[derive(Default)]
struct AttackCounters {
    sent: [AtomicU64; 4],
    bytes_received: AtomicU64,
    datagrams_received: AtomicU64,
}

/// Loopback address of attacker socket `k` of thread `t`.
fn attacker_addr(t: usize, k: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 66, t as u8, (k % 250) as u8 + 1)
}

/// Drains every socket without waiting; counts what arrived.
fn drain(sockets: &[UdpSocket], buf: &mut [u8], c: &AttackCounters) {
    for s in sockets {
        while let Ok((n, _)) = s.recv_from(buf) {
            c.bytes_received.fetch_add(n as u64, Ordering::Relaxed);
            c.datagrams_received.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One attacker thread: binds its sockets, then sends until `stop` (or `ATTACK_LIMIT`), then
/// keeps its sockets open and drained until `close`, so late answers are counted too.
struct Attacker {
    /// Thread number (its sockets' addresses).
    t: usize,
    sockets: usize,
    server: SocketAddr,
    /// Datagrams per second, 0: unpaced.
    pps: u64,
    pools: Arc<Pools>,
    counters: Arc<AttackCounters>,
    stop: Arc<AtomicBool>,
    close: Arc<AtomicBool>,
    sched: AttackerSched,
}

fn attacker(a: Attacker) -> anyhow::Result<()> {
    let Attacker {
        t,
        sockets,
        server,
        pps,
        pools,
        counters,
        stop,
        close,
        sched,
    } = a;
    if sched == AttackerSched::Idle {
        sched_idle_this_thread()?;
    }
    let mut socks = Vec::with_capacity(sockets);
    for k in 0..sockets {
        let s = UdpSocket::bind((attacker_addr(t, k), 0))
            .with_context(|| format!("cannot bind {}", attacker_addr(t, k)))?;
        s.set_nonblocking(true)?;
        socks.push(s);
    }
    let mut buf = vec![0u8; 65536];
    let mut i = 0u64;
    let mut pos = [0usize; 4];
    // Unpaced: bursts of 1024 between checks of the stop flag; paced: ~100 bursts a second.
    let burst = if pps == 0 {
        1024
    } else {
        (pps / 100).clamp(1, 1024)
    };
    let started = std::time::Instant::now();
    while !stop.load(Ordering::Relaxed) && i < ATTACK_LIMIT {
        if pps > 0 {
            let due = Duration::from_secs_f64(i as f64 / pps as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        for _ in 0..burst {
            let kind = (i % 4) as usize;
            let pool = &pools.kinds[kind];
            let kind = if pool.is_empty() { 0 } else { kind };
            let pool = &pools.kinds[kind];
            let bytes = &pool[pos[kind] % pool.len()];
            pos[kind] = pos[kind].wrapping_add(1);
            let s = &socks[(i as usize / 4) % socks.len()];
            if s.send_to(bytes, server).is_ok() {
                counters.sent[kind].fetch_add(1, Ordering::Relaxed);
            }
            i += 1;
        }
        drain(&socks, &mut buf, &counters);
    }
    while !close.load(Ordering::Relaxed) {
        drain(&socks, &mut buf, &counters);
        std::thread::sleep(Duration::from_millis(20));
    }
    drain(&socks, &mut buf, &counters);
    Ok(())
}

/// Result of one phase of the devices.
pub(crate) struct Phase {
    pub(crate) p50: Option<f64>,
    pub(crate) p99: Option<f64>,
    pub(crate) samples: usize,
    pub(crate) batches: u64,
    pub(crate) retransmits: u64,
    pub(crate) server_cpu: f64,
}

/// Runs the devices for one phase (`seconds` measured after a one-second warm-up, then four
/// seconds to collect the last Acks).
pub(crate) async fn phase(
    groups: Vec<loadgen::Group>,
    udp: SocketAddr,
    telemetry: Telemetry,
    seconds: u64,
    pid: u32,
    counters: Arc<Counters>,
    label: &str,
) -> anyhow::Result<(Phase, Vec<loadgen::Group>)> {
    let start = Instant::now();
    let measure_from = start + Duration::from_secs(1);
    let measure_to = measure_from + Duration::from_secs(seconds);
    let plan = Plan {
        mode: Mode::Sealed,
        telemetry: Some(telemetry),
        keepalive: Some(Duration::from_secs(15)),
        handshake_timeout: Duration::from_secs(5),
        handshake_window: 4,
        until_established: false,
        measure_from,
        measure_to,
        end: measure_to + Duration::from_secs(4),
    };
    let retransmits_before = counters.retransmits.load(Ordering::Relaxed);
    let batches_before = counters.batches_acked.load(Ordering::Relaxed);
    let cpu = tokio::spawn(async move {
        tokio::time::sleep_until(measure_from).await;
        let m = CpuMeter::start(pid)?;
        tokio::time::sleep_until(measure_to).await;
        m.cores()
    });
    let (mut lat, groups) = loadgen::run_all(groups, udp, plan, counters.clone(), label).await;
    let server_cpu = cpu.await??;
    Ok((
        Phase {
            p50: lat.percentile_ms(50.0),
            p99: lat.percentile_ms(99.0),
            samples: lat.len(),
            batches: counters.batches_acked.load(Ordering::Relaxed) - batches_before,
            retransmits: counters.retransmits.load(Ordering::Relaxed) - retransmits_before,
            server_cpu,
        },
        groups,
    ))
}

/// Runs the benchmark and returns its summary line.
pub fn run(args: Args) -> anyhow::Result<String> {
    let n = args.devices;
    let dir = tempfile::Builder::new()
        .prefix("tek-bench-flood")
        .tempdir()?;
    progress!("provisioning {n} devices in {}", dir.path().display());
    let ids = server::provision(dir.path(), n)?;
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let srv = ServerProcess::start(dir.path(), args.server_config.as_deref())?;
    let (pid, udp, http) = (srv.pid(), srv.udp, srv.http);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    // Stop and wait, as PROTOCOL.md 10.4 says a controller does: one batch in flight, sent again
    // after 3 s. (An Ack covers every record up to its `through seq`, which is only right with
    // one batch in flight: with more, a lost batch would be covered by the next one's Ack.)
    let telemetry = Telemetry {
        window: 1,
        records: args.records,
        retry: Duration::from_secs(3),
        interval: Some(Duration::from_millis(args.interval_ms)),
    };
    let counters = Arc::new(Counters::default());
    let attack = Arc::new(AttackCounters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let close = Arc::new(AtomicBool::new(false));

    let result = rt.block_on(async {
        // Sessions.
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
        counters.capture.start(CAPTURE_LIMIT);
        let (_, groups) = loadgen::run_all(groups, udp, hs, counters.clone(), "handshakes").await;
        let established = counters.established.load(Ordering::Relaxed);
        if established < u64::from(n) {
            bail!("only {established} of {n} devices got a session");
        }
        progress!(
            "{established} sessions in {:.1} s",
            start.elapsed().as_secs_f64()
        );

        // Calm, capturing.
        let (calm, groups) = phase(
            groups,
            udp,
            telemetry,
            args.seconds,
            pid,
            counters.clone(),
            "calm",
        )
        .await?;
        let captured = counters.capture.take();
        progress!(
            "calm: ack p99 {:?} ms over {} batches; {} datagrams captured",
            calm.p99,
            calm.samples,
            captured.len()
        );
        let pools = Arc::new(build_pools(&captured, n));
        drop(captured);
        let drops_before = procfs::udp_drops(udp).unwrap_or(0);
        let rss_before = procfs::rss_kib(pid)?;

        // Flood.
        let mut threads = Vec::new();
        for t in 0..args.attackers as usize {
            let (pools, attack, stop, close) =
                (pools.clone(), attack.clone(), stop.clone(), close.clone());
            let sockets = args.attack_sockets as usize;
            let pps = args.attack_pps;
            let sched = args.attacker_sched;
            threads.push(std::thread::spawn(move || {
                attacker(Attacker {
                    t,
                    sockets,
                    server: udp,
                    pps,
                    pools,
                    counters: attack,
                    stop,
                    close,
                    sched,
                })
            }));
        }
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
        let flood_start = std::time::Instant::now();
        let attack_c = attack.clone();
        let stop_at = stop.clone();
        let secs = args.seconds;
        // The attackers stop when the measured window ends (after the one-second warm-up).
        // Returns how long the attackers sent, for the attack rate actually achieved.
        let stopper = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1 + secs)).await;
            stop_at.store(true, Ordering::Relaxed);
            flood_start.elapsed().as_secs_f64()
        });
        let (flood, groups) = phase(
            groups,
            udp,
            telemetry,
            args.seconds,
            pid,
            counters.clone(),
            "flood",
        )
        .await?;
        let flood_secs = stopper
            .await
            .unwrap_or_else(|_| flood_start.elapsed().as_secs_f64());
        stop.store(true, Ordering::Relaxed);
        sampler.abort();
        let drops_after = procfs::udp_drops(udp).unwrap_or(0);
        let rss_after = procfs::rss_kib(pid)?;
        // Late answers, if any, still arrive on the attackers' sockets while they stay open.
        tokio::time::sleep(Duration::from_millis(500)).await;
        close.store(true, Ordering::Relaxed);
        for t in threads {
            t.join()
                .map_err(|_| anyhow::anyhow!("an attacker thread panicked"))??;
        }
        let attack_sent: Vec<u64> = attack_c
            .sent
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let drops_by_reason =
            server::metric_family(http, "tek_datagrams_dropped_total").unwrap_or_default();
        Ok::<_, anyhow::Error>((
            calm,
            flood,
            groups,
            rss_before,
            rss_after,
            rss_max.load(Ordering::Relaxed),
            attack_sent,
            flood_secs,
            drops_after.saturating_sub(drops_before),
            drops_by_reason,
        ))
    });
    srv.stop()?;
    let (
        calm,
        flood,
        groups,
        rss_before,
        rss_after,
        rss_max,
        attack_sent,
        flood_secs,
        kernel_drops,
        drops_by_reason,
    ) = result?;

    // Every record a device saw acknowledged must be in the database.
    let db = tek_server::storage::sqlite::Sqlite::open_existing_dir(dir.path())
        .context("cannot open the benchmark database")?;
    let (mut acked, mut lost) = (0u64, 0u64);
    for (_, devices) in &groups {
        for d in devices {
            let Some(through) = d.acked_through() else {
                continue;
            };
            let rows = db.telemetry(&TelemetryQuery {
                device_id: d.id(),
                from: i64::MIN,
                to: i64::MAX,
                limit: usize::MAX,
            })?;
            let stored: std::collections::HashSet<u32> =
                rows.iter().filter(|r| r.boot == 1).map(|r| r.seq).collect();
            acked += u64::from(through) + 1;
            lost += (0..=through).filter(|s| !stored.contains(s)).count() as u64;
        }
    }
    let bytes_to_attackers = attack.bytes_received.load(Ordering::Relaxed);
    let attack_total: u64 = attack_sent.iter().sum();
    let attack_pps = attack_total as f64 / flood_secs.max(1e-9);
    // Legitimate traffic: the batches first sent in the measured window (one datagram each,
    // plus its Ack), per second; keepalives (one per device per 15 s) are not counted.
    let legit_pps = flood.samples as f64 / args.seconds as f64;
    let ratio = match (calm.p99, flood.p99) {
        (Some(c), Some(f)) => Some(f / c.max(1e-9)),
        _ => None,
    };
    progress!(
        "flood: {attack_total} attack datagrams ({attack_pps:.0}/s), ack p99 {:?} ms (calm {:?} ms), \
         {bytes_to_attackers} bytes to attackers, {lost} of {acked} acknowledged records lost, \
         rss {rss_before} -> {rss_after} KiB (max {rss_max}), kernel drops {kernel_drops}",
        flood.p99,
        calm.p99
    );
    let per_kind: serde_json::Map<String, serde_json::Value> = KINDS
        .iter()
        .zip(&attack_sent)
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    let summary = json!({
        "bench": "flood",
        "devices": n,
        "seconds": args.seconds,
        "interval_ms": args.interval_ms,
        "records_per_batch": args.records,
        "attacker_threads": args.attackers,
        "attack_pps_limit": args.attack_pps,
        "attacker_sockets": args.attackers * args.attack_sockets,
        "attack_datagrams": attack_total,
        "attack_pps": attack_pps,
        "attack_by_kind": per_kind,
        "attacker_sched": args.attacker_sched.name(),
        "legit_batches_per_s_flood": legit_pps,
        "attack_to_legit_ratio": attack_pps / legit_pps.max(1e-9),
        "bytes_to_attackers": bytes_to_attackers,
        "datagrams_to_attackers": attack.datagrams_received.load(Ordering::Relaxed),
        "ack_p50_ms_calm": calm.p50,
        "ack_p99_ms_calm": calm.p99,
        "ack_p50_ms_flood": flood.p50,
        "ack_p99_ms_flood": flood.p99,
        "ack_p99_ratio": ratio,
        "ack_samples_calm": calm.samples,
        "ack_samples_flood": flood.samples,
        "batches_acked_calm": calm.batches,
        "batches_acked_flood": flood.batches,
        "retransmits_calm": calm.retransmits,
        "retransmits_flood": flood.retransmits,
        "server_cpu_cores_calm": calm.server_cpu,
        "server_cpu_cores_flood": flood.server_cpu,
        "kernel_drops_flood": kernel_drops,
        "server_drops": drops_by_reason,
        "rss_before": rss_before,
        "rss_after": rss_after,
        "rss_max": rss_max,
        "records_acked": acked,
        "records_lost": lost,
        "loadavg": procfs::loadavg(),
    });
    if acked == 0 {
        bail!("no record was acknowledged: {summary}");
    }
    Ok(summary.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_have_the_shapes_they_claim() {
        // A captured Hello and a captured session datagram of device 7.
        let mut hello = vec![0u8; 46];
        hello[0] = 1;
        hello[1] = KIND_HELLO;
        hello[2..6].copy_from_slice(&7u32.to_be_bytes());
        let mut data = vec![0u8; 40];
        tek_proto::wire::data::emit_header(&mut data, 7, 99, 5);
        let p = build_pools(&[hello.clone(), data.clone()], 10);
        assert!(p.kinds[0].iter().all(|g| (1..=1500).contains(&g.len())));
        for w in &p.kinds[1] {
            let id = u32::from_be_bytes([w[2], w[3], w[4], w[5]]);
            if w[1] == KIND_DATA {
                // The live session, a counter far ahead.
                assert_eq!(id, 7);
                let pkt = tek_proto::wire::data::DataPacket::new_checked(&w[..]).unwrap();
                assert_eq!(pkt.session_id(), 99);
                assert!(pkt.counter() >= 5 + (1 << 20));
            } else {
                assert_eq!(w.len(), 46);
                assert!((1..=10).contains(&id));
            }
        }
        for u in &p.kinds[2] {
            let id = u32::from_be_bytes([u[2], u[3], u[4], u[5]]);
            assert!(id >= UNKNOWN_BASE, "{id}");
        }
        assert_eq!(p.kinds[3], vec![hello, data]);
    }
}
