//! Capacity check: N simulated controllers and the reference responder in one process.
//!
//! `cargo run --release -p tek-sim --example capacity -- 10000 60 1`
//! (devices, wall-clock seconds, speed). Prints progress lines, then CPU time and peak RSS of
//! the process (the responder's share included), read from /proc.

use std::time::{Duration, Instant};
use tek_sim::fleet::Device;
use tek_sim::reference::Responder;
use tek_sim::{Fleet, Options};

fn proc_status(field: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or("")
        .to_string()
}

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let n: u32 = args.get(1).map_or(Ok(10_000), |s| s.parse())?;
    let secs: f64 = args.get(2).map_or(Ok(60.0), |s| s.parse())?;
    let speed: f64 = args.get(3).map_or(Ok(1.0), |s| s.parse())?;
    let devices: Vec<Device> = (1..=n)
        .map(|id| {
            let mut key = [0u8; 16];
            key[..4].copy_from_slice(&id.to_be_bytes());
            Device {
                id,
                key,
                name: None,
            }
        })
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let server = Responder::start("127.0.0.1:0".parse()?, &devices).await?;
        let mut opts = Options::new(devices, vec![server.addr.to_string()]);
        opts.speed = speed;
        let t0 = Instant::now();
        let fleet = Fleet::start(opts).await?;
        let mut all_at = None;
        while t0.elapsed().as_secs_f64() < secs {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let s = fleet.snapshot();
            if all_at.is_none() && s.connected == u64::from(n) {
                all_at = Some(t0.elapsed());
            }
            println!("{}", tek_sim::cli::progress_line(fleet.sim_elapsed(), &s));
        }
        let cpu = cpu_seconds();
        let wall = t0.elapsed().as_secs_f64();
        let s = fleet.stop().await;
        println!(
            "devices {n}  speed {speed}  wall {wall:.1}s  cpu {cpu:.1}s ({:.0}% of one core)  all connected after {:?}  {}  sessions {}  records acked {}  server datagrams {}",
            100.0 * cpu / wall,
            all_at,
            proc_status("VmHWM"),
            s.sessions,
            s.records_acked,
            server.counters.datagrams.load(std::sync::atomic::Ordering::Relaxed)
        );
        server.stop().await;
        anyhow::Ok(())
    })
}
