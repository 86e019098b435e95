//! `tek meter` on sockets.
//!
//! * serial: a TCP listener QEMU's UART connects to (`-serial tcp:127.0.0.1:PORT`); one device at
//!   a time, a new connection replaces the old one (as with `tek modem`);
//! * control: a TCP listener taking one command per line (see [`crate::bus`]), one reply line
//!   each.
//!
//! Time is `Instant::now()` minus the start of [`serve`]: script offsets count from there.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use tek_modem::control::{control_loop, ControlMsg, SerialEvent, SerialPort};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::bus::Bus;
use crate::device::Model;
use crate::frame::{Framer, Line, Parity};
use crate::values::{parse_script, Entry};

/// Arguments of `tek meter`.
#[derive(Debug, clap::Args)]
pub struct MeterArgs {
    /// Where the device's UART connects (TCP).
    #[arg(long, default_value = "127.0.0.1:7710")]
    pub listen: SocketAddr,
    /// Control channel (TCP, one command per line: set SLAVE QUANTITY VALUE|auto, mute SLAVE,
    /// unmute SLAVE, corrupt SLAVE [all], exception SLAVE CODE, clear SLAVE, unplug, plug,
    /// status).
    #[arg(long, default_value = "127.0.0.1:7711")]
    pub control: SocketAddr,
    /// A slave on the bus, ADDRESS=MODEL (repeatable). Models: sdm630 (Eastron, three-phase;
    /// quantities voltage_l1..3, current_l1..3, power_l1..3, power, frequency, import_kwh,
    /// export_kwh, total_kwh), sdm120 (Eastron, single-phase; voltage, current, power,
    /// frequency, import_kwh, export_kwh, total_kwh), tb260 (ControlBox PT100 transmitter;
    /// temperature).
    #[arg(long = "slave", value_parser = parse_slave, required = true)]
    pub slaves: Vec<(u8, Model)>,
    /// Baud rate: 9600, 19200 or 38400 (sets the 3.5-character silence that ends a frame).
    #[arg(long, default_value_t = 9600, value_parser = parse_baud)]
    pub baud: u32,
    /// Character format: none = 8N1, even = 8E1.
    #[arg(long, value_enum, default_value_t = Parity::None)]
    pub parity: Parity,
    /// Scripted values: lines of `SECONDS SLAVE QUANTITY VALUE` (offset from start; `#`
    /// comments). Unscripted quantities follow the plant model.
    #[arg(long)]
    pub script: Option<PathBuf>,
}

fn parse_slave(s: &str) -> Result<(u8, Model), String> {
    let (address, model) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected ADDRESS=MODEL"))?;
    let address: u8 = address
        .parse()
        .ok()
        .filter(|a| (1..=247).contains(a))
        .ok_or_else(|| format!("{s:?}: the address must be 1..=247"))?;
    let names: Vec<_> = Model::ALL.iter().map(|m| m.name()).collect();
    let model = Model::parse(model)
        .ok_or_else(|| format!("{s:?}: unknown model (known: {})", names.join(", ")))?;
    Ok((address, model))
}

fn parse_baud(s: &str) -> Result<u32, String> {
    s.parse()
        .ok()
        .filter(|b| Line::BAUDS.contains(b))
        .ok_or_else(|| format!("{s:?}: the baud rate must be 9600, 19200 or 38400"))
}

/// What [`serve`] needs besides its listeners.
#[derive(Debug, Clone)]
pub struct Config {
    /// Slaves by address.
    pub slaves: BTreeMap<u8, Model>,
    /// The bus timing.
    pub line: Line,
    /// Scripted values.
    pub script: Vec<Entry>,
}

impl Config {
    /// Checks the arguments and reads the script.
    pub fn from_args(args: &MeterArgs) -> anyhow::Result<Config> {
        let mut slaves = BTreeMap::new();
        for &(address, model) in &args.slaves {
            if slaves.insert(address, model).is_some() {
                bail!("--slave {address} given twice");
            }
        }
        let script = match &args.script {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading the script {}", path.display()))?;
                parse_script(&text, &slaves)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
            }
            None => Vec::new(),
        };
        Ok(Config {
            slaves,
            line: Line {
                baud: args.baud,
                parity: args.parity,
            },
            script,
        })
    }
}

/// Runs `tek meter` until interrupted.
pub fn run(args: MeterArgs) -> anyhow::Result<()> {
    let config = Config::from_args(&args)?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let (serial, control) = tek_modem::control::bind(args.listen, args.control).await?;
        tracing::info!(serial = %serial.local_addr()?, control = %control.local_addr()?,
            slaves = ?config.slaves, "tek meter listening");
        serve(serial, control, config).await
    })
}

/// How often the energy counters integrate when nobody reads them.
const INTEGRATE_EVERY: Duration = Duration::from_millis(200);

/// Serves the bus on bound listeners (tests bind port 0).
pub async fn serve(
    serial: TcpListener,
    control: TcpListener,
    config: Config,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let (ctl_tx, mut ctl_rx) = mpsc::channel::<ControlMsg>(16);
    tokio::spawn(control_loop(control, ctl_tx, "meter"));
    let mut bus = Bus::new(&config.slaves, &config.script);
    let mut framer = Framer::new(config.line);
    let mut serial = SerialPort::new(serial);
    let mut buf = vec![0u8; 1024];
    let mut tick = tokio::time::interval(INTEGRATE_EVERY);
    loop {
        let silence_end = framer.deadline().map(|d| start + d);
        let frames = tokio::select! {
            event = serial.next(&mut buf) => match event? {
                SerialEvent::Connected(peer) => {
                    tracing::info!(%peer, "device connected");
                    framer.reset();
                    Vec::new()
                }
                SerialEvent::Disconnected => {
                    tracing::info!("device disconnected");
                    framer.reset();
                    Vec::new()
                }
                SerialEvent::Bytes(n) => framer.push(&buf[..n], start.elapsed()),
            },
            () = async {
                match silence_end {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => framer.silence_at(start.elapsed()),
            Some((line, reply)) = ctl_rx.recv() => {
                let text = bus.control(&line, start.elapsed());
                tracing::info!(command = %line.trim(), reply = %text, "control");
                let _ = reply.send(text);
                Vec::new()
            }
            _ = tick.tick() => {
                bus.advance(start.elapsed());
                Vec::new()
            }
        };
        for request in frames {
            let Some(answer) = bus.answer(&request, start.elapsed()) else {
                continue;
            };
            serial.write(&answer).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        meter: MeterArgs,
    }

    fn parse(args: &[&str]) -> Result<MeterArgs, clap::Error> {
        use clap::Parser;
        Cli::try_parse_from([&["tek-meter"], args].concat()).map(|c| c.meter)
    }

    #[test]
    fn command_line() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let a = parse(&[
            "--slave", "1=sdm630", "--slave", "3=tb260", "--parity", "even",
        ])
        .unwrap();
        assert_eq!(a.slaves, vec![(1, Model::Sdm630), (3, Model::Tb260)]);
        assert_eq!((a.baud, a.parity), (9600, Parity::Even));
        let c = Config::from_args(&a).unwrap();
        assert_eq!(c.line.silence(), Duration::from_micros(4010));
        // No slave, a bad baud rate, the same address twice, a missing script.
        assert!(parse(&[]).is_err());
        assert!(parse(&["--slave", "1=sdm630", "--baud", "4800"]).is_err());
        let twice = parse(&["--slave", "1=sdm630", "--slave", "1=sdm120"]).unwrap();
        assert_eq!(
            Config::from_args(&twice).unwrap_err().to_string(),
            "--slave 1 given twice"
        );
        let missing = parse(&["--slave", "1=sdm630", "--script", "/nonexistent/x"]).unwrap();
        assert!(Config::from_args(&missing)
            .unwrap_err()
            .to_string()
            .starts_with("reading the script /nonexistent/x"));
    }

    #[test]
    fn slave_and_baud_arguments() {
        assert_eq!(parse_slave("1=sdm630"), Ok((1, Model::Sdm630)));
        assert_eq!(parse_slave("247=tb260"), Ok((247, Model::Tb260)));
        assert!(parse_slave("0=sdm630").unwrap_err().contains("1..=247"));
        assert!(parse_slave("248=sdm630").unwrap_err().contains("1..=247"));
        assert!(parse_slave("1").unwrap_err().contains("ADDRESS=MODEL"));
        assert!(parse_slave("1=em24").unwrap_err().contains("known: sdm630"));
        assert_eq!(parse_baud("19200"), Ok(19200));
        assert!(parse_baud("115200").is_err());
    }
}
