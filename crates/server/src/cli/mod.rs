//! Command-line entry points: `tek serve` and `tek device ...`. Argument errors come back as
//! one-line `anyhow` errors (the binary prints them and exits non-zero); nothing here panics on
//! user input. `tek user ...` and `tek site ...` are in [`accounts`].

pub mod accounts;

use crate::config::Config;
use crate::device_config;
use crate::fleet::Fleet;
use crate::storage::sqlite::Sqlite;
use crate::storage::Storage;
use anyhow::{bail, Context};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use tek_proto::message::{Command, RelayMode};

/// Arguments of `tek serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// TOML configuration file (every field optional; flags override it).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// UDP address for controllers [default: 0.0.0.0:8844].
    #[arg(long, value_name = "ADDR")]
    pub udp: Option<SocketAddr>,
    /// HTTP address for /healthz, /metrics and the web UI [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    /// Data directory (the SQLite database tek.db lives there) [default: ./tek-data].
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// PostgreSQL shared by several servers, instead of SQLite in --data:
    /// postgres://USER:PASSWORD@HOST:PORT/DB (the password is better kept in --config's `db`).
    #[arg(long, value_name = "URL", conflicts_with = "data")]
    pub db: Option<String>,
    /// With --db: the master key file sealing device keys at rest, the same for every server of
    /// the cluster (created 0600 if missing) [default: DATA/master.key].
    #[arg(long, value_name = "FILE", requires = "db")]
    pub master_key: Option<PathBuf>,
}

impl ServeArgs {
    /// The configuration: defaults, then the file, then the flags.
    pub fn resolve(&self) -> anyhow::Result<Config> {
        let mut cfg = match &self.config {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        if let Some(a) = self.udp {
            cfg.udp = a;
        }
        if let Some(a) = self.http {
            cfg.http = a;
        }
        if let Some(d) = &self.data {
            cfg.data = d.clone();
        }
        if let Some(url) = &self.db {
            cfg.db = Some(crate::storage::postgres::DbUrl(url.clone()));
        }
        if let Some(k) = &self.master_key {
            cfg.master_key = Some(k.clone());
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

/// `tek device ...`
#[derive(clap::Subcommand, Debug)]
pub enum DeviceCommand {
    /// Create devices with fresh keys from the OS random source.
    ///
    /// One device: `--id ID [--name NAME] --out FILE`. Many: `--count N --out FLEET.toml
    /// [--first-id ID]` (ids follow the highest in use unless --first-id). The keys are written
    /// only to the --out file (a fleet file, mode 0600), never printed, and no command reads
    /// them out of the database later: that file is what the firmware team flashes from.
    Add(AddArgs),
    /// List the devices (never their keys).
    List(DataArgs),
    /// Show a device's configuration, or save a new version with --set key=value ...; a running
    /// server notices within a second and pushes it.
    Config(ConfigArgs),
    /// Queue a command for a device; a running server sends it within a second.
    Command(CommandArgs),
    /// Rotate the master key that seals the device keys at rest (stop the servers first): every
    /// key is re-sealed under a new master key file, the old one is kept as `FILE.old` for you
    /// to destroy (docs/SECURITY.md). SQLite: `--data DIR`; PostgreSQL: `--db URL
    /// --master-key FILE`, then give every server the new FILE.
    RotateMasterKey(RotateArgs),
    /// Give one device a fresh key, for a key that was stolen or lost (docs/SECURITY.md 6): the
    /// new key is written only to the --out file, for flashing; the device's Hello counter
    /// starts again. Restart the servers afterwards: each holds a device's key from its first
    /// Hello, and the old key is refused only once they no longer do.
    Rekey(RekeyArgs),
}

/// Arguments of `tek device rekey`.
#[derive(clap::Args, Debug)]
pub struct RekeyArgs {
    /// Data directory of the server.
    #[arg(long, value_name = "DIR", default_value = "tek-data")]
    pub data: PathBuf,
    /// The servers' PostgreSQL database instead of --data (postgres://USER:PASSWORD@HOST/DB).
    #[arg(
        long,
        value_name = "URL",
        conflicts_with = "data",
        requires = "master_key"
    )]
    pub db: Option<String>,
    /// With --db: the servers' master key file (`master_key` of their configuration).
    #[arg(long, value_name = "FILE", requires = "db")]
    pub master_key: Option<PathBuf>,
    /// The device.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub id: u32,
    /// Fleet file to write the new key to (must not exist).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// Arguments of `tek device rotate-master-key`.
#[derive(clap::Args, Debug)]
pub struct RotateArgs {
    /// Data directory of the server.
    #[arg(long, value_name = "DIR", default_value = "tek-data")]
    pub data: PathBuf,
    /// The servers' PostgreSQL database instead of --data (postgres://USER:PASSWORD@HOST/DB).
    #[arg(
        long,
        value_name = "URL",
        conflicts_with = "data",
        requires = "master_key"
    )]
    pub db: Option<String>,
    /// With --db: the servers' master key file (`master_key` of their configuration).
    #[arg(long, value_name = "FILE", requires = "db")]
    pub master_key: Option<PathBuf>,
}

/// The data directory argument.
#[derive(clap::Args, Debug)]
pub struct DataArgs {
    /// Data directory of the server.
    #[arg(long, value_name = "DIR", default_value = "tek-data")]
    pub data: PathBuf,
    /// The servers' PostgreSQL database instead of --data (postgres://USER:PASSWORD@HOST/DB).
    #[arg(long, value_name = "URL", conflicts_with = "data")]
    pub db: Option<String>,
}

/// Arguments of `tek device add`.
#[derive(clap::Args, Debug)]
pub struct AddArgs {
    /// Data directory of the server (created if missing).
    #[arg(long, value_name = "DIR", default_value = "tek-data")]
    pub data: PathBuf,
    /// The servers' PostgreSQL database instead of --data (postgres://USER:PASSWORD@HOST/DB).
    #[arg(
        long,
        value_name = "URL",
        conflicts_with = "data",
        requires = "master_key"
    )]
    pub db: Option<String>,
    /// With --db: the servers' master key file (`master_key` of their configuration), which
    /// seals the new keys (created 0600 if missing).
    #[arg(long, value_name = "FILE", requires = "db")]
    pub master_key: Option<PathBuf>,
    /// Id of the one device to create.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..), conflicts_with_all = ["count", "first_id"], required_unless_present = "count")]
    pub id: Option<u32>,
    /// Name of the one device.
    #[arg(long, requires = "id")]
    pub name: Option<String>,
    /// Number of devices to create.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000), requires = "out")]
    pub count: Option<u32>,
    /// First id of --count devices.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..), requires = "count")]
    pub first_id: Option<u32>,
    /// Fleet file to write the ids and keys to (must not exist). Required: it is the only place
    /// a new key is ever shown, and a device whose key nobody has can never connect.
    #[arg(long, value_name = "FILE", required = true)]
    pub out: Option<PathBuf>,
}

/// Arguments of `tek device config`.
#[derive(clap::Args, Debug)]
pub struct ConfigArgs {
    /// Data directory of the server.
    #[arg(long, value_name = "DIR", default_value = "tek-data")]
    pub data: PathBuf,
    /// The servers' PostgreSQL database instead of --data (postgres://USER:PASSWORD@HOST/DB).
    #[arg(long, value_name = "URL", conflicts_with = "data")]
    pub db: Option<String>,
    /// With --db: the servers' master key file, which seals configurations at rest (without
    /// it a configuration sealed by a server cannot be read, and a new one is stored in the
    /// clear until a server next starts).
    #[arg(long, value_name = "FILE", requires = "db")]
    pub master_key: Option<PathBuf>,
    /// Device id.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub id: u32,
    /// A setting key=value (repeatable): log_interval, keepalive, batch, gsm_failover, rollback,
    /// setpoint, hysteresis, ethernet (dhcp | IP/PREFIX,GATEWAY,DNS), gsm_apn, gsm_login,
    /// gsm_password, servers (comma-separated).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

/// Arguments of `tek device command`.
#[derive(clap::Args, Debug)]
pub struct CommandArgs {
    /// Data directory of the server.
    #[arg(long, value_name = "DIR", default_value = "tek-data")]
    pub data: PathBuf,
    /// The servers' PostgreSQL database instead of --data (postgres://USER:PASSWORD@HOST/DB).
    #[arg(long, value_name = "URL", conflicts_with = "data")]
    pub db: Option<String>,
    /// Device id.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub id: u32,
    /// Drive relay N (0 pump, 1 heater, 2.. auxiliary) with --mode.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=7), requires = "mode", conflicts_with_all = ["reboot", "send_status"])]
    pub relay: Option<u8>,
    /// on, off or auto.
    #[arg(long, value_parser = ["on", "off", "auto"], requires = "relay")]
    pub mode: Option<String>,
    /// Restart the controller.
    #[arg(long, conflicts_with = "send_status")]
    pub reboot: bool,
    /// Ask for a status report now.
    #[arg(long)]
    pub send_status: bool,
}

/// Runs `tek serve` until SIGINT or SIGTERM.
pub fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let cfg = args.resolve()?;
    crate::runtime::few_arenas();
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    rt.block_on(serve_until(cfg, shutdown_signal()))
}

/// Runs a server with `cfg` until `shutdown` resolves (for embedding and tests).
pub async fn serve_until(cfg: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    // The web UI and JSON API share the HTTP listener (cookies `Secure` unless on loopback or
    // as `web.public_url` says).
    let web = crate::http::WebOptions::from_config(&cfg);
    let handle =
        crate::Server::start_with(cfg, None, move |api| crate::router::router(api, web)).await?;
    shutdown.await;
    tracing::info!("shutting down");
    handle.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

use crate::clock::unix_now as now;

/// Runs `tek device ...`, printing to stdout.
pub fn device(cmd: DeviceCommand) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    device_to(cmd, &mut out)
}

/// Runs `tek device ...`, writing what it prints to `out`.
pub fn device_to(cmd: DeviceCommand, out: &mut dyn std::io::Write) -> anyhow::Result<()> {
    match cmd {
        DeviceCommand::Add(a) => add(a, out),
        DeviceCommand::Rekey(a) => rekey(a, out),
        DeviceCommand::List(a) => list(&a.data, a.db.as_deref(), out),
        DeviceCommand::Config(a) => config(a, out),
        DeviceCommand::Command(a) => command(a, out),
        DeviceCommand::RotateMasterKey(a) => match (&a.db, &a.master_key) {
            (Some(url), Some(key)) => rotate_master_key_pg(url, key, out),
            _ => rotate_master_key(&a.data, out),
        },
    }
}

/// Re-seals every device key under a new master key: the new key file is written and every key
/// re-sealed in one transaction first, then the files are swapped (`master.key` ->
/// `master.key.old`, `master.key.new` -> `master.key`).
fn rotate_master_key(data: &Path, out: &mut dyn std::io::Write) -> anyhow::Result<()> {
    let current = crate::vault::path_in(data);
    let new = data.join("master.key.new");
    let old = data.join("master.key.old");
    if new.exists() || old.exists() {
        bail!(
            "{} or {} exists: a rotation was interrupted or its old key not yet destroyed; \
             see docs/SECURITY.md",
            new.display(),
            old.display()
        );
    }
    let db = Sqlite::open_existing_dir(data)?;
    let n = db.rotate_master(&new)?;
    drop(db);
    std::fs::rename(&current, &old)?;
    std::fs::rename(&new, &current)?;
    writeln!(
        out,
        "re-sealed {n} device key(s) under a new {}; destroy {} once backups are renewed",
        current.display(),
        old.display()
    )?;
    Ok(())
}

/// `rotate_master_key` for PostgreSQL: the key file is `master_key` (shared by the servers), the
/// new one `FILE.new` until the swap, the old one kept as `FILE.old`.
fn rotate_master_key_pg(
    url: &str,
    master_key: &Path,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    let with = |suffix: &str| {
        let mut p = master_key.as_os_str().to_owned();
        p.push(suffix);
        PathBuf::from(p)
    };
    let (new, old) = (with(".new"), with(".old"));
    if new.exists() || old.exists() {
        bail!(
            "{} or {} exists: a rotation was interrupted or its old key not yet destroyed; \
             see docs/SECURITY.md",
            new.display(),
            old.display()
        );
    }
    if !master_key.exists() {
        bail!("no master key at {}", master_key.display());
    }
    let db = crate::storage::postgres::Postgres::connect_sealed(url, master_key)?;
    let n = db.rotate_master(&new)?;
    drop(db);
    std::fs::rename(master_key, &old)?;
    std::fs::rename(&new, master_key)?;
    writeln!(
        out,
        "re-sealed {n} device key(s) under a new {}; copy it to every server of the cluster, \
         restart them, and destroy {} once backups are renewed",
        master_key.display(),
        old.display()
    )?;
    Ok(())
}

/// The database a command names: PostgreSQL with `--db`, else the SQLite file in `--data`
/// (created only when `create`).
fn open_existing(dir: &Path, db: Option<&str>) -> anyhow::Result<std::sync::Arc<dyn Storage>> {
    open_target(dir, db, false)
}

/// Opens the storage a command names: PostgreSQL when `db` is given, else SQLite in `data`
/// (created if missing when `create`, else it must exist).
pub fn open_target(
    data: &Path,
    db: Option<&str>,
    create: bool,
) -> anyhow::Result<std::sync::Arc<dyn Storage>> {
    if db.is_none() && data.as_os_str().is_empty() {
        bail!("give --data DIR (SQLite) or --db URL (PostgreSQL)");
    }
    Ok(match db {
        Some(url) => crate::storage::postgres::Postgres::connect(url)?.into_arc(),
        None if create => Sqlite::open_dir(data)?.into_arc(),
        None => Sqlite::open_existing_dir(data)?.into_arc(),
    })
}

fn add(a: AddArgs, out: &mut dyn std::io::Write) -> anyhow::Result<()> {
    // Checked before anything is created (the struct is also built without clap).
    let Some(path) = a.out.clone() else {
        bail!("give --out FILE: the new keys are written only there");
    };
    if path.exists() {
        bail!(
            "{} exists already; refusing to overwrite a fleet file",
            path.display()
        );
    }
    let db = match (&a.db, &a.master_key) {
        (Some(url), Some(key)) => {
            crate::storage::postgres::Postgres::connect_sealed(url, key)?.into_arc()
        }
        _ => open_target(&a.data, a.db.as_deref(), true)?,
    };
    let fleet = match (a.id, a.count) {
        (Some(id), _) => {
            let key = crate::keys::generate()?;
            let name = a.name.clone().unwrap_or_default();
            db.add_devices(
                &[crate::storage::NewDevice {
                    id,
                    name: name.clone(),
                    key: key.clone(),
                }],
                now(),
            )?;
            Fleet {
                device: vec![crate::fleet::FleetDevice::new(id, &key, &name)],
            }
        }
        (None, Some(count)) => crate::provision::provision(&*db, a.first_id, count, "pool", now())?,
        (None, None) => bail!("give --id ID or --count N --out FILE"),
    };
    fleet.save_new(&path)?;
    writeln!(
        out,
        "created {} device(s); ids and keys written to {}",
        fleet.device.len(),
        path.display()
    )?;
    Ok(())
}

fn rekey(a: RekeyArgs, out: &mut dyn std::io::Write) -> anyhow::Result<()> {
    if a.out.exists() {
        bail!(
            "{} exists already; refusing to overwrite a fleet file",
            a.out.display()
        );
    }
    let db = match (&a.db, &a.master_key) {
        (Some(url), Some(key)) => {
            crate::storage::postgres::Postgres::connect_sealed(url, key)?.into_arc()
        }
        _ => open_existing(&a.data, a.db.as_deref())?,
    };
    let device = match db.device(a.id) {
        Err(crate::storage::Error::NotFound(_)) => bail!("no device {}", a.id),
        other => other?,
    };
    let key = crate::keys::generate()?;
    // The file first: a key stored but never written anywhere would lock the device out.
    Fleet {
        device: vec![crate::fleet::FleetDevice::new(a.id, &key, &device.name)],
    }
    .save_new(&a.out)?;
    if let Err(e) = db.replace_key(a.id, &key) {
        // Nothing changed: the file holds a key nobody uses.
        let _ = std::fs::remove_file(&a.out);
        return Err(e.into());
    }
    writeln!(
        out,
        "device {} has a new key, written to {}; flash it, then restart the servers so the old \
         key is refused",
        a.id,
        a.out.display()
    )?;
    Ok(())
}

fn list(data: &Path, db: Option<&str>, out: &mut dyn std::io::Write) -> anyhow::Result<()> {
    let db = open_existing(data, db)?;
    writeln!(
        out,
        "{:>10}  {:<20}  {:>8}  {:>8}  last seen",
        "id", "name", "config", "applied"
    )?;
    for d in db.list_devices()? {
        let seen = d
            .last_seen
            .map_or_else(|| "never".to_owned(), |t| format!("{}s ago", now() - t));
        writeln!(
            out,
            "{:>10}  {:<20}  {:>8}  {:>8}  {}",
            d.id, d.name, d.config_desired, d.config_applied, seen
        )?;
    }
    Ok(())
}

fn config(a: ConfigArgs, out: &mut dyn std::io::Write) -> anyhow::Result<()> {
    let db = match (&a.db, &a.master_key) {
        (Some(url), Some(key)) => {
            crate::storage::postgres::Postgres::connect_sealed(url, key)?.into_arc()
        }
        _ => open_existing(&a.data, a.db.as_deref())?,
    };
    let dev = db.device(a.id)?;
    let latest = db.latest_config(a.id)?;
    let mut cfg = latest
        .as_ref()
        .map(|c| c.config.clone())
        .unwrap_or_default();
    if a.set.is_empty() {
        writeln!(
            out,
            "device {}: version {} ({}), applied {}",
            a.id,
            dev.config_desired,
            latest.map_or("factory", |c| c.state.as_str()),
            dev.config_applied
        )?;
        writeln!(out, "{cfg:#?}")?;
        return Ok(());
    }
    device_config::apply(&mut cfg, &a.set)?;
    let version = db.save_config(a.id, &cfg, now())?;
    writeln!(
        out,
        "device {}: saved configuration version {version}",
        a.id
    )?;
    Ok(())
}

fn command(a: CommandArgs, out: &mut dyn std::io::Write) -> anyhow::Result<()> {
    let cmd = match (a.relay, a.mode.as_deref(), a.reboot, a.send_status) {
        (Some(relay), Some(mode), false, false) => Command::SetRelay {
            relay,
            mode: match mode {
                "on" => RelayMode::On,
                "off" => RelayMode::Off,
                _ => RelayMode::Auto,
            },
        },
        (None, None, true, false) => Command::Reboot,
        (None, None, false, true) => Command::SendStatus,
        _ => bail!("give exactly one of --relay N --mode MODE, --reboot, --send-status"),
    };
    let db = open_existing(&a.data, a.db.as_deref())?;
    let id = db.queue_command(a.id, &cmd, now())?;
    writeln!(out, "device {}: queued command {id}", a.id)?;
    Ok(())
}

/// Opens the storage a CLI command names (SQLite in `data`), as the server would.
pub fn open_storage(data: &Path) -> anyhow::Result<std::sync::Arc<dyn Storage>> {
    Ok(Sqlite::open_dir(data)?.into_arc())
}

#[cfg(test)]
mod tests;
