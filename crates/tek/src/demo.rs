//! `tek demo`: the whole system in one process — a server (SQLite in `--data`, web UI), a site
//! with 25 simulated pool controllers and one plant-room controller provisioned with their keys,
//! and an admin account whose credentials are printed. Running it again reuses the data
//! directory: same account, same controllers, their history kept.
//!
//! The plant-room controller has two Eastron meters and a TB260 temperature transmitter on its
//! Modbus bus (simulated in process: `tek_sim::meters`, [`PLANT_ROOM_METERS`]) and runs the
//! "plant room (demo)" template ([`plant_room_template`]: the site's power and energy, the pool
//! pump's, the room's temperature and one computed channel). The template is created and
//! applied through the service layer, as the API would (`service::channels::create_template`,
//! `service::apply::apply_template`), so its wide records reach the server like a real
//! installation's.
//!
//! The controllers get a first configuration with a 10 s logging and batching interval, and
//! simulated time runs 8x faster (`--speed`), so the dashboard fills within seconds instead of
//! the field defaults of one record a minute sent every five minutes. (Record times are
//! stamped by the server as arrival minus age, so at 8x they are a few seconds off.)

use anyhow::{bail, Context};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tek_proto::message::Config as DeviceConfig;
use tek_server::http::auth::{Principal, Via};
use tek_server::http::{Web, WebOptions};
use tek_server::router;
use tek_server::storage::sqlite::Sqlite;
use tek_server::storage::Storage;

/// The demo account.
pub const EMAIL: &str = "demo@tek.local";
/// Name of the demo site.
pub const SITE: &str = "Demo pool";
/// Name prefix of the plant-room controller (`plant-room-ID`), by which a second run finds it.
pub const PLANT_ROOM_PREFIX: &str = "plant-room";
/// Name of the template the plant-room controller runs.
pub const PLANT_ROOM_TEMPLATE: &str = "plant room (demo)";
/// What is on the plant-room controller's bus (`tek sim --meters` syntax): the site's
/// three-phase meter at 1, the pool pump's single-phase meter at 2, the transmitter at 3.
pub const PLANT_ROOM_METERS: &str = "sdm630@1,sdm120@2,tb260@3";
/// File in the data directory keeping the demo password (mode 0600), so a second run can print
/// it again; the database only has its hash.
pub const CREDENTIALS_FILE: &str = "demo-credentials.txt";

/// Arguments of `tek demo` (the same `--data`, `--udp`, `--http` as `tek serve`).
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Data directory (created if missing; reused if present).
    #[arg(long, default_value = "tek-demo")]
    pub data: PathBuf,
    /// UDP address the server listens on for the controllers.
    #[arg(long, default_value = "127.0.0.1:8844")]
    pub udp: SocketAddr,
    /// HTTP address of the web UI.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub http: SocketAddr,
    /// Simulated time runs this many times faster than real time. The controllers start with
    /// the factory logging interval (60 s) until their first configuration arrives; at 8x the
    /// first readings show within about 8 s.
    #[arg(long, default_value_t = 8.0)]
    pub speed: f64,
    /// Number of simulated pool controllers created on the first run (the plant-room
    /// controller comes on top).
    #[arg(long, default_value_t = 25, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub devices: u32,
    /// A `tek serve` configuration file (e.g. its `[mqtt]` section, to see the demo's data in
    /// Home Assistant); `--data`, `--udp` and `--http` still come from the flags above.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

impl DemoArgs {
    /// The server's configuration: the file's (or the defaults), with the demo's addresses and
    /// data directory.
    pub fn server_config(&self) -> anyhow::Result<tek_server::Config> {
        let base = match &self.config {
            Some(path) => tek_server::Config::load(path)?,
            None => tek_server::Config::default(),
        };
        Ok(tek_server::Config {
            udp: self.udp,
            http: self.http,
            data: self.data.clone(),
            ..base
        })
    }
}

/// What the demo set up.
struct Setup {
    password: Option<String>,
    /// The pool controllers, then the plant-room controller(s).
    devices: Vec<tek_sim::fleet::Device>,
    /// The plant-room controllers' ids.
    plant_rooms: Vec<u32>,
    site: i64,
    created: bool,
}

fn random_password() -> anyhow::Result<String> {
    let mut b = [0u8; 9];
    tek_server::keys::fill_random(&mut b)?;
    // 12 characters from an unambiguous alphabet (72 bits).
    const ABC: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut n = u128::from_le_bytes({
        let mut x = [0u8; 16];
        x[..9].copy_from_slice(&b);
        x
    });
    let mut s = String::new();
    for _ in 0..12 {
        s.push(ABC[(n % ABC.len() as u128) as usize] as char);
        n /= ABC.len() as u128;
    }
    Ok(s)
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// Creates what is missing: the account, the site, the controllers and their first
/// configuration. Returns the controllers with their keys for the simulator.
fn prepare(db: &dyn Storage, data: &Path, count: u32) -> anyhow::Result<Setup> {
    let now = tek_server::clock::unix_now();
    let cred_path = data.join(CREDENTIALS_FILE);
    let password = match db.user_by_email(EMAIL)? {
        Some(_) => std::fs::read_to_string(&cred_path).ok().and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("password: ").map(str::to_owned))
        }),
        None => {
            let pw = random_password()?;
            let (id, _) = tek_server::cli::accounts::ensure_user(db, EMAIL, &pw, true)?;
            write_private(&cred_path, &format!("user: {EMAIL}\npassword: {pw}\n"))?;
            tracing::info!(user = id, "demo account created");
            Some(pw)
        }
    };
    let site = match db.site_by_name(SITE)? {
        Some(s) => s.id,
        None => db.create_site(SITE, now)?,
    };
    if let Some(u) = db.user_by_email(EMAIL)? {
        db.grant_site(u.id, site)?;
    }
    let mut ids = db.site_device_ids(site)?;
    let created = ids.is_empty();
    if created {
        let fleet = tek_server::provision::provision(db, None, count, "pool", now)?;
        ids = fleet.device.iter().map(|d| d.id).collect();
        db.assign_devices(&ids, Some(site))?;
    }
    // The plant-room controller, also in a data directory of a demo from before it existed.
    let plant_room_name = format!("{PLANT_ROOM_PREFIX}-");
    let mut plant_rooms: Vec<u32> = db
        .list_devices()?
        .into_iter()
        .filter(|d| ids.contains(&d.id) && d.name.starts_with(&plant_room_name))
        .map(|d| d.id)
        .collect();
    if plant_rooms.is_empty() {
        let fleet = tek_server::provision::provision(db, None, 1, PLANT_ROOM_PREFIX, now)?;
        plant_rooms = fleet.device.iter().map(|d| d.id).collect();
        db.assign_devices(&plant_rooms, Some(site))?;
        ids.extend(&plant_rooms);
    }
    // Pool controllers first, as the fleet's addresses were before.
    ids.sort_by_key(|id| (plant_rooms.contains(id), *id));
    // The simulated controllers start from a blank flash on every run (factory settings), so
    // the demo configuration is saved as a new version each time: pending until each
    // controller confirms it, which it does within a second of connecting. The newest
    // configuration is re-sent as it is, so changes made in the UI are kept.
    for &id in &ids {
        let pool = !plant_rooms.contains(&id);
        let cfg = db.latest_config(id)?.map_or_else(
            || DeviceConfig {
                log_interval_s: 10,
                batch_s: 10,
                // The plant room switches nothing.
                schedule: pool.then(demo_schedule),
                ..DeviceConfig::default()
            },
            |r| r.config,
        );
        db.save_config(id, &cfg, now)?;
    }
    let mut devices = Vec::with_capacity(ids.len());
    for id in ids {
        let d = db
            .load_device(id)?
            .with_context(|| format!("device {id} vanished"))?;
        let prefix = if plant_rooms.contains(&id) {
            PLANT_ROOM_PREFIX
        } else {
            "pool"
        };
        devices.push(tek_sim::fleet::Device {
            id,
            key: d.key.0,
            name: Some(format!("{prefix}-{id}")),
        });
    }
    Ok(Setup {
        password,
        devices,
        plant_rooms,
        site,
        created,
    })
}

/// The plant-room template as the JSON API takes it (`POST /api/templates`, structured form):
/// the SDM630 at 1 (the site's power and import energy, kWh on the meter, Wh in the log), the
/// SDM120 at 2 (the pool pump's), the TB260 at 3 (0.1 °C, logged in 0.01 °C) and the power of
/// everything but the pump, computed. The roles give the site's power and energy to the
/// controller's legacy reading; it has no water or air temperature.
pub fn plant_room_template(site: i64) -> serde_json::Value {
    let read = |slave: u8, function: u8, register: u16, data_type: &str| {
        serde_json::json!({ "modbus": {
            "bus": 0, "slave": slave, "function": function, "register": register,
            "type": data_type,
        }})
    };
    serde_json::json!({
        "name": PLANT_ROOM_TEMPLATE,
        "site_id": site,
        "buses": [{ "baud": 9600, "parity": "none", "timeout_ms": 300 }],
        "roles": {
            "water": null, "air": null, "power": "Site power", "energy": "Site energy",
            "pump": 0, "heater": 1,
        },
        "channels": [
            { "name": "Site power", "kind": "power", "unit": "W",
              "source": read(1, 4, 0x0034, "f32") },
            { "name": "Site energy", "kind": "energy", "unit": "Wh", "mul": 1000,
              "source": read(1, 4, 0x0048, "f32") },
            { "name": "Pool pump power", "kind": "power", "unit": "W",
              "source": read(2, 4, 0x000C, "f32") },
            { "name": "Pool pump energy", "kind": "energy", "unit": "Wh", "mul": 1000,
              "source": read(2, 4, 0x0048, "f32") },
            { "name": "Plant room temperature", "kind": "temperature", "decimals": 1,
              "unit": "degC", "exponent": -2, "mul": 10,
              "source": read(3, 3, 0x0000, "i16") },
            { "name": "Other loads", "kind": "power", "unit": "W",
              "source": { "expression": "\"Site power\" - \"Pool pump power\"" } },
        ],
    })
}

/// Creates the plant-room template if it is missing and applies it to the plant-room
/// controllers that do not run it yet, through the service layer as the demo account.
/// Returns the template's id.
async fn plant_room(web: &Web, setup: &Setup) -> anyhow::Result<i64> {
    use tek_server::service::{apply, channels};
    let user = web
        .db_call(|db| db.user_by_email(EMAIL))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .context("the demo account vanished")?;
    let p = Principal {
        user,
        via: Via::Token,
    };
    let templates = web
        .db_call(|db| db.templates())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let id = match templates.iter().find(|t| t.name == PLANT_ROOM_TEMPLATE) {
        Some(t) => t.id,
        None => {
            let input: channels::TemplateInput =
                serde_json::from_value(plant_room_template(setup.site))?;
            channels::create_template(web, &p, &input)
                .await
                .map_err(|e| anyhow::anyhow!("the plant-room template: {e}"))?
                .id
        }
    };
    let mut todo = Vec::new();
    for &device in &setup.plant_rooms {
        let entry = web
            .db_call(move |db| db.device_channels(device, None))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        if entry.and_then(|e| e.template_id) != Some(id) {
            todo.push(device);
        }
    }
    if !todo.is_empty() {
        apply::apply_template(web, &p, id, &todo)
            .await
            .map_err(|e| anyhow::anyhow!("applying the plant-room template: {e}"))?;
    }
    Ok(id)
}

/// The demo's schedule (UTC): the pump runs 08:00-20:00 every day, occupied 09:00-19:00 at the
/// thermostat's setpoint, 24 °C otherwise — so the simulated pumps visibly follow it.
fn demo_schedule() -> tek_proto::message::config::Schedule {
    use tek_proto::message::config::{Schedule, SwitchPoint};
    let mut s = Schedule {
        unoccupied_cc: 2400,
        points: Default::default(),
    };
    for day in 0..7 {
        for (minute, pump, occupied) in [
            (480, true, false),
            (540, true, true),
            (1140, true, false),
            (1200, false, false),
        ] {
            if let Some(p) = SwitchPoint::new(day, minute, pump, occupied) {
                let _ = s.points.push(p);
            }
        }
    }
    s
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs `tek demo` until Ctrl-C or SIGTERM.
pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    rt.block_on(run_until(args, shutdown_signal()))
}

/// Runs the demo until `shutdown` resolves.
pub async fn run_until(
    args: DemoArgs,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let cfg = args.server_config()?;
    let data = args.data.clone();
    let count = args.devices;
    let (db, setup) = tokio::task::spawn_blocking(move || {
        let db: Arc<dyn Storage> = Arc::new(Sqlite::open_dir(&data)?);
        let setup = prepare(db.as_ref(), &data, count)?;
        anyhow::Ok((db, setup))
    })
    .await??;
    if setup.devices.is_empty() {
        bail!("the demo site has no controllers");
    }
    let opts = WebOptions::for_listener(args.http);
    let router_opts = opts.clone();
    let server =
        tek_server::Server::start_with(cfg, Some(db), move |api| router::router(api, router_opts))
            .await
            .context("cannot start the server")?;
    plant_room(&Web::new(server.api().clone(), opts), &setup).await?;
    let udp = server.udp_addr();
    // The controllers reach the server over loopback even if it listens on every address.
    let target = if udp.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], udp.port()))
    } else {
        udp
    };
    let n = setup.devices.len();
    let rooms = setup.plant_rooms.len();
    let meters = tek_sim::meters::MeterPlan::parse(PLANT_ROOM_METERS)
        .map_err(|e| anyhow::anyhow!("{PLANT_ROOM_METERS}: {e}"))?;
    let mut sim = tek_sim::Options::new(setup.devices, vec![target.to_string()]);
    sim.speed = args.speed;
    sim.meters = setup
        .plant_rooms
        .iter()
        .map(|&id| (id, meters.clone()))
        .collect();
    let fleet = tek_sim::Fleet::start(sim)
        .await
        .context("cannot start the simulated controllers")?;
    let http = server.http_addr();
    let host = if http.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], http.port()))
    } else {
        http
    };
    println!(
        "tek demo: {n} simulated controllers ({}) on udp {udp}: {} pool, {rooms} plant room \
         (meters {PLANT_ROOM_METERS})",
        if setup.created { "created" } else { "reused" },
        n - rooms,
    );
    println!("open http://{host}/");
    println!("user: {EMAIL}");
    match &setup.password {
        Some(pw) => println!("password: {pw}"),
        None => println!(
            "password: as printed on the first run (set a new one with `tek user passwd --data {} --email {EMAIL}`)",
            args.data.display()
        ),
    }
    println!("press Ctrl-C to stop");
    let _ = std::io::stdout().flush();
    shutdown.await;
    println!("stopping…");
    let snap = fleet.stop().await;
    server.shutdown().await;
    println!(
        "stopped: {} records acknowledged by the server this run",
        snap.records_acked
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tek_server::storage::{ConfigStore, DeviceStore, UserStore};

    #[test]
    fn config_file_gives_mqtt_and_flags_give_addresses() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            demo: DemoArgs,
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tek.toml");
        std::fs::write(
            &file,
            "udp = \"0.0.0.0:9999\"\n[mqtt]\nurl = \"mqtt://127.0.0.1:1883\"\nusername = \"tek\"\n",
        )
        .unwrap();
        let cli = Cli::parse_from(["demo", "--config", file.to_str().unwrap(), "--data", "d"]);
        let cfg = cli.demo.server_config().unwrap();
        assert_eq!(cfg.mqtt.url.as_deref(), Some("mqtt://127.0.0.1:1883"));
        assert_eq!(cfg.mqtt.username.as_deref(), Some("tek"));
        assert_eq!(cfg.udp, "127.0.0.1:8844".parse().unwrap());
        assert_eq!(cfg.data, PathBuf::from("d"));
        let none = Cli::parse_from(["demo"]).demo.server_config().unwrap();
        assert_eq!(none.mqtt.url, None);
        std::fs::write(&file, "[mqtt]\nurl = \"http://x\"\n").unwrap();
        let bad = Cli::parse_from(["demo", "--config", file.to_str().unwrap()]);
        assert!(bad.demo.server_config().is_err());
    }

    #[test]
    fn second_prepare_reuses_everything() {
        let dir = tempfile::tempdir().unwrap();
        let db = Sqlite::open_dir(dir.path()).unwrap();
        let a = prepare(&db, dir.path(), 3).unwrap();
        assert!(a.created);
        let pw = a.password.clone().unwrap();
        assert_eq!(pw.len(), 12);
        let b = prepare(&db, dir.path(), 3).unwrap();
        assert!(!b.created);
        assert_eq!(
            b.password.as_deref(),
            Some(pw.as_str()),
            "read back from the file"
        );
        assert_eq!(a.devices, b.devices, "same ids and keys");
        // Three pool controllers and the plant room, which comes last and switches nothing.
        assert_eq!(db.list_devices().unwrap().len(), 4);
        assert_eq!(a.plant_rooms, [4]);
        assert_eq!(b.plant_rooms, [4]);
        assert_eq!(a.devices[3].name.as_deref(), Some("plant-room-4"));
        let room = db.latest_config(4).unwrap().unwrap().config;
        assert_eq!((room.log_interval_s, room.schedule), (10, None));
        assert!(db
            .latest_config(1)
            .unwrap()
            .unwrap()
            .config
            .schedule
            .is_some());
        assert_eq!(db.list_users().unwrap().len(), 1);
        let (_, hash) = db.user_credentials(EMAIL).unwrap().unwrap();
        assert!(tek_server::http::auth::verify_password(&pw, &hash));
        let latest = db.latest_config(a.devices[0].id).unwrap().unwrap();
        assert_eq!((latest.version, latest.config.log_interval_s), (2, 10));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(CREDENTIALS_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "credentials readable by others");
        }
    }

    #[test]
    fn the_plant_room_template_reads_the_simulated_meters() {
        use tek_server::service::channels::TemplateInput;
        use tek_server::storage::channels::validate;
        let input: TemplateInput = serde_json::from_value(plant_room_template(1)).unwrap();
        let new = input.parse().unwrap();
        validate(&new.set).unwrap();
        // Every Modbus channel reads a register a meter of PLANT_ROOM_METERS serves, with its
        // encoding, at the slave's address.
        let plan = tek_sim::meters::MeterPlan::parse(PLANT_ROOM_METERS).unwrap();
        let map = tek_proto::channel::map::ChannelMap::new_checked(&new.set.map).unwrap();
        let mut reads = 0;
        for ch in map.channels() {
            let tek_proto::channel::map::Source::Modbus(read) = ch.source else {
                continue;
            };
            let model = plan.slaves[&read.slave];
            let space = tek_meter::device::Space::of_function(read.function.code()).unwrap();
            let mut regs = vec![0u16; usize::from(read.data_type.registers())];
            model
                .read(space, read.register, &mut regs, |_| 1.0)
                .unwrap_or_else(|e| panic!("{model} {:#x}: {e:?}", read.register));
            reads += 1;
        }
        assert_eq!(reads, 5);
        assert_eq!(new.set.channels.len(), 6);
    }
}
