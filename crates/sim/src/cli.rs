//! `tek sim`: run a fleet of simulated controllers against one or more servers.
//!
//! ```text
//! tek sim --fleet FLEET.toml --servers 127.0.0.1:8844,127.0.0.1:8845 [--devices N]
//!         [--duration S] [--speed X] [--eth-fail-after S] [--eth-restore-after S]
//!         [--drop-percent P] [--restart-every S] [--no-gsm]
//! ```
//!
//! Prints a progress line every few seconds. With `--duration` it stops after that many
//! wall-clock seconds and fails (exit status 1) if any controller never set up a session.

use crate::runner::{Fleet, Options, Snapshot};
use anyhow::{bail, Context};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Arguments of `tek sim`.
#[derive(clap::Args, Debug, Clone)]
pub struct SimArgs {
    /// Fleet file from `tek device add --count N --out FLEET.toml`.
    #[arg(long)]
    pub fleet: PathBuf,
    /// Servers in the order the controllers try them: HOST:PORT[,HOST:PORT...] (at most 8).
    #[arg(long, value_delimiter = ',', required = true)]
    pub servers: Vec<String>,
    /// Run only the first N devices of the fleet file.
    #[arg(long)]
    pub devices: Option<usize>,
    /// Stop after this many wall-clock seconds (and fail if a controller never connected).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Simulated seconds per real second.
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Cut Ethernet after this many simulated seconds (exercises GSM failover).
    #[arg(long)]
    pub eth_fail_after: Option<f64>,
    /// Ethernet works again after this many simulated seconds from the start.
    #[arg(long)]
    pub eth_restore_after: Option<f64>,
    /// Drop this percentage of datagrams in each direction.
    #[arg(long, default_value_t = 0.0)]
    pub drop_percent: f64,
    /// Power-cycle each controller every this many simulated seconds (staggered).
    #[arg(long)]
    pub restart_every: Option<f64>,
    /// Controllers have no GSM modem.
    #[arg(long)]
    pub no_gsm: bool,
    /// Seconds between progress lines.
    #[arg(long, default_value_t = 5.0)]
    pub progress: f64,
    /// Real seconds over which the controllers power up (default: 1 s per 2000 devices).
    #[arg(long)]
    pub ramp: Option<f64>,
    /// Controllers with a channel part: they state Capabilities (PROTOCOL.md 17.1), sample the
    /// plant through their channel map (the factory pool map: board inputs) and take split
    /// configurations.
    #[arg(long)]
    pub channels: bool,
}

/// One progress line.
pub fn progress_line(sim: Duration, s: &Snapshot) -> String {
    format!(
        "sim {:>7.0}s  devices {}  connected {}  ever {}  gsm {}  sessions {}  records logged {} sent {} acked {}  failovers {} returns {}  restarts {}  tx {} rx {} dropped {}",
        sim.as_secs_f64(),
        s.devices,
        s.connected,
        s.ever_connected,
        s.on_gsm,
        s.sessions,
        s.records_logged,
        s.records_sent,
        s.records_acked,
        s.failovers,
        s.returns,
        s.restarts,
        s.datagrams_tx,
        s.datagrams_rx,
        s.fault_drops
    )
}

/// Checks the arguments and builds fleet options.
pub fn options(args: &SimArgs) -> anyhow::Result<Options> {
    let mut devices = crate::fleet::load(&args.fleet)?;
    if devices.is_empty() {
        bail!("the fleet file {} lists no device", args.fleet.display());
    }
    if let Some(n) = args.devices {
        if n == 0 || n > devices.len() {
            bail!(
                "--devices {n}: the fleet file has {} devices",
                devices.len()
            );
        }
        devices.truncate(n);
    }
    if let Some(d) = args.duration {
        if !(d > 0.0 && d.is_finite()) {
            bail!("--duration must be a positive number of seconds");
        }
    }
    if !(args.progress > 0.0 && args.progress.is_finite()) {
        bail!("--progress must be a positive number of seconds");
    }
    for v in [
        args.eth_fail_after,
        args.eth_restore_after,
        args.restart_every,
        args.ramp,
    ]
    .into_iter()
    .flatten()
    {
        if !(v >= 0.0 && v.is_finite()) {
            bail!("times must be non-negative numbers of seconds");
        }
    }
    let mut o = Options::new(devices, args.servers.clone());
    o.speed = args.speed;
    o.eth_fail_after_s = args.eth_fail_after;
    o.eth_restore_after_s = args.eth_restore_after;
    o.drop_percent = args.drop_percent;
    o.restart_every_s = args.restart_every;
    o.gsm = !args.no_gsm;
    o.channels = args.channels;
    if let Some(r) = args.ramp {
        o.ramp_s = r;
    }
    Ok(o)
}

/// Runs `tek sim`.
pub fn run(args: SimArgs) -> anyhow::Result<()> {
    let opts = options(&args)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    rt.block_on(async move {
        let fleet = Fleet::start(opts).await?;
        let started = Instant::now();
        let every = Duration::from_secs_f64(args.progress);
        let end = args.duration.map(|d| started + Duration::from_secs_f64(d));
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            let until_end = end.map_or(Duration::MAX, |e| e.saturating_duration_since(Instant::now()));
            tokio::select! {
                _ = tick.tick() => println!("{}", progress_line(fleet.sim_elapsed(), &fleet.snapshot())),
                _ = tokio::time::sleep(until_end) => break,
                _ = tokio::signal::ctrl_c() => break,
            }
        }
        let sim = fleet.sim_elapsed();
        let s = fleet.stop().await;
        println!("{}", progress_line(sim, &s));
        if args.duration.is_some() && s.ever_connected < s.devices {
            bail!(
                "{} of {} controllers never connected",
                s.devices - s.ever_connected,
                s.devices
            );
        }
        Ok(())
    })
}
