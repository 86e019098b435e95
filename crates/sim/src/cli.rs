//! `tek sim`: run a fleet of simulated controllers against one or more servers.
//!
//! ```text
//! tek sim --fleet FLEET.toml --servers 127.0.0.1:8844,127.0.0.1:8845 [--devices N]
//!         [--duration S] [--speed X] [--eth-fail-after S] [--eth-restore-after S]
//!         [--drop-percent P] [--restart-every S] [--no-gsm] [--channels]
//!         [--meters [IDS=]MODEL@ADDRESS,...]... [--meter-silent [IDS=]ADDRESS@START+SECONDS]...
//! ```
//!
//! `--meters` wires Modbus meters to the controllers' serial bus (`crate::meters`): without
//! `IDS=` to every controller no other `--meters` names, with `IDS=` (a device id, or an
//! inclusive range `FIRST-LAST`) to those controllers of the fleet only. `--meter-silent`
//! makes a slave stop answering for a while (simulated seconds from the start), on every
//! controller with meters or on those of `IDS=`.
//!
//! Prints a progress line every few seconds. With `--duration` it stops after that many
//! wall-clock seconds and fails (exit status 1) if any controller never set up a session.

use crate::meters::{MeterPlan, Silence};
use crate::runner::{Fleet, Options, Snapshot};
use anyhow::{bail, Context};
use std::collections::BTreeMap;
use std::fmt;
use std::ops::RangeInclusive;
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
    /// Meters on the controllers' Modbus bus: [IDS=]MODEL@ADDRESS[,MODEL@ADDRESS...], models
    /// sdm630, sdm120, tb260, addresses 1..=247 (repeatable). Without IDS= every controller no
    /// other --meters names; IDS is a device id or a range FIRST-LAST. Those controllers state
    /// one Modbus bus, so the server sends them maps with meter channels.
    #[arg(long = "meters", value_parser = parse_meters)]
    pub meters: Vec<ForDevices<MeterPlan>>,
    /// A slave stops answering for a while: [IDS=]ADDRESS@START+SECONDS in simulated seconds
    /// from the start, e.g. 3@600+120 (repeatable). Without IDS= on every controller with
    /// meters.
    #[arg(long = "meter-silent", value_parser = parse_silence)]
    pub meter_silent: Vec<ForDevices<Silence>>,
}

/// A command-line value for some devices of the fleet: `[IDS=]VALUE`.
#[derive(Debug, Clone, PartialEq)]
pub struct ForDevices<T> {
    /// The device ids it is for (`None`: every device).
    pub ids: Option<RangeInclusive<u32>>,
    /// The value.
    pub value: T,
    /// As given.
    pub text: String,
}

impl<T> ForDevices<T> {
    fn covers(&self, id: u32) -> bool {
        self.ids.as_ref().is_none_or(|r| r.contains(&id))
    }
}

impl<T> fmt::Display for ForDevices<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Splits `[IDS=]VALUE` and parses IDS (a device id, or `FIRST-LAST`).
fn for_devices<T>(
    s: &str,
    value: impl FnOnce(&str) -> Result<T, String>,
) -> Result<ForDevices<T>, String> {
    let (ids, rest) = match s.split_once('=') {
        Some((ids, rest)) => {
            let id = |v: &str| {
                v.trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|&i| i > 0)
                    .ok_or_else(|| format!("{s:?}: {v:?} is not a device id (1..=4294967295)"))
            };
            let range = match ids.split_once('-') {
                Some((a, b)) => id(a)?..=id(b)?,
                None => id(ids)?..=id(ids)?,
            };
            if range.is_empty() {
                return Err(format!("{s:?}: the range {ids} is empty (FIRST-LAST)"));
            }
            (Some(range), rest)
        }
        None => (None, s),
    };
    Ok(ForDevices {
        ids,
        value: value(rest)?,
        text: s.to_owned(),
    })
}

fn parse_meters(s: &str) -> Result<ForDevices<MeterPlan>, String> {
    for_devices(s, MeterPlan::parse)
}

fn parse_silence(s: &str) -> Result<ForDevices<Silence>, String> {
    for_devices(s, Silence::parse)
}

/// Which controllers of `ids` get which meters, and their silences; every `--meters` and
/// `--meter-silent` must apply to some controller.
pub fn meter_plans(
    ids: &[u32],
    meters: &[ForDevices<MeterPlan>],
    silent: &[ForDevices<Silence>],
) -> anyhow::Result<BTreeMap<u32, MeterPlan>> {
    let defaults: Vec<_> = meters.iter().filter(|m| m.ids.is_none()).collect();
    if let [a, b, ..] = defaults.as_slice() {
        bail!("--meters {a} and --meters {b} are both for every controller: give one of them IDS=");
    }
    let mut plans = BTreeMap::new();
    for &id in ids {
        let mut named = meters.iter().filter(|m| m.ids.is_some() && m.covers(id));
        let plan = match (named.next(), named.next()) {
            (Some(a), Some(b)) => bail!("device {id} is named by --meters {a} and --meters {b}"),
            (Some(a), None) => a,
            (None, _) => match defaults.first() {
                Some(d) => d,
                None => continue,
            },
        };
        plans.insert(id, plan.value.clone());
    }
    for m in meters.iter().filter(|m| m.ids.is_some()) {
        if !ids.iter().any(|&id| m.covers(id)) {
            bail!("--meters {m}: no controller of this run has such an id");
        }
    }
    for s in silent {
        let mut used = false;
        for (&id, plan) in plans.iter_mut() {
            if s.covers(id) && plan.slaves.contains_key(&s.value.address) {
                plan.silences.push(s.value);
                used = true;
            }
        }
        if !used {
            bail!(
                "--meter-silent {s}: no controller it is for has a slave at address {}",
                s.value.address
            );
        }
    }
    Ok(plans)
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
    let ids: Vec<u32> = o.devices.iter().map(|d| d.id).collect();
    o.meters = meter_plans(&ids, &args.meters, &args.meter_silent)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        sim: SimArgs,
    }

    fn parse(extra: &[&str]) -> Result<SimArgs, String> {
        let base = ["sim", "--fleet", "f.toml", "--servers", "127.0.0.1:1"];
        Cli::try_parse_from(base.iter().chain(extra))
            .map(|c| c.sim)
            .map_err(|e| e.to_string())
    }

    fn plans(extra: &[&str]) -> anyhow::Result<BTreeMap<u32, MeterPlan>> {
        let a = parse(extra).map_err(anyhow::Error::msg)?;
        meter_plans(&[1, 2, 3, 4, 5], &a.meters, &a.meter_silent)
    }

    #[test]
    fn meters_per_controller() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        // Nothing by default: pool controllers as before.
        assert!(plans(&[]).unwrap().is_empty());
        // Everyone the same.
        let p = plans(&["--meters", "sdm630@1,sdm120@3,tb260@2"]).unwrap();
        assert_eq!(p.len(), 5);
        assert_eq!(p[&4].to_string(), "sdm630@1,tb260@2,sdm120@3");
        // Devices 2 to 3 one bus, device 5 another, the rest none.
        let p = plans(&["--meters", "2-3=sdm630@1", "--meters", "5=tb260@7"]).unwrap();
        assert_eq!(p.keys().copied().collect::<Vec<_>>(), [2, 3, 5]);
        assert_eq!(p[&5].to_string(), "tb260@7");
        // Named devices first, the default for the others; silences where the slave is.
        let p = plans(&[
            "--meters",
            "sdm120@3",
            "--meters",
            "1=sdm630@1,sdm120@3",
            "--meter-silent",
            "3@600+120",
            "--meter-silent",
            "1=1@10+5",
        ])
        .unwrap();
        assert_eq!(p[&1].to_string(), "sdm630@1,sdm120@3");
        assert_eq!(p[&2].to_string(), "sdm120@3");
        assert_eq!(p[&1].silences.len(), 2);
        assert_eq!(p[&2].silences, [Silence::parse("3@600+120").unwrap()]);
    }

    #[test]
    fn bad_meter_arguments_are_errors() {
        for (args, why) in [
            (&["--meters", "sdm630"][..], "expected MODEL@ADDRESS"),
            (&["--meters", "x=sdm630@1"], "\"x\" is not a device id"),
            (&["--meters", "0=sdm630@1"], "\"0\" is not a device id"),
            (&["--meters", "5-2=sdm630@1"], "the range 5-2 is empty"),
            (
                &["--meters", "1=sdm630@300"],
                "the slave address must be 1..=247",
            ),
            (&["--meter-silent", "3@x+1"], "the start must be"),
        ] {
            let err = parse(args).unwrap_err();
            assert!(err.contains(why), "{args:?}: {err}");
        }
        for (args, why) in [
            (
                &["--meters", "sdm630@1", "--meters", "tb260@2"][..],
                "--meters sdm630@1 and --meters tb260@2 are both for every controller",
            ),
            (
                &["--meters", "1-3=sdm630@1", "--meters", "3=tb260@2"],
                "device 3 is named by --meters 1-3=sdm630@1 and --meters 3=tb260@2",
            ),
            (
                &["--meters", "9-12=sdm630@1"],
                "--meters 9-12=sdm630@1: no controller of this run has such an id",
            ),
            (
                &["--meter-silent", "3@1+1"],
                "--meter-silent 3@1+1: no controller it is for has a slave at address 3",
            ),
            (
                &["--meters", "1=sdm630@1", "--meter-silent", "2=1@1+1"],
                "no controller it is for has a slave at address 1",
            ),
        ] {
            let err = plans(args).unwrap_err().to_string();
            assert!(err.contains(why), "{args:?}: {err}");
        }
    }
}
