//! `tek bench history`: what a long history costs — bytes on disk per record, and how long the
//! web UI's long-range reads take over it.
//!
//! 1. A fresh SQLite database in a temporary directory — or, with `--postgres URL`, the empty
//!    PostgreSQL database the URL names, migrated by the normal connect path ([`super::history_db`]
//!    holds what differs between the two) — with N bench devices in one site, an admin user
//!    with an API token (the `tek user` commands).
//! 2. D days of 1-minute records of the 5 pool channels per device, up to the last midnight
//!    (UTC), written through the storage call the UDP ingest writer commits with
//!    ([`TelemetryStore::insert_telemetry_new`], idempotent on (device, boot, seq)) in large
//!    batches, each batch a time slice of every device as ingest interleaves them. The values
//!    come from the simulator's pool ([`tek_sim::plant::Plant`], seeded per device) driven by
//!    the controller's own relay logic ([`tek_controller::thermostat::Relays`] at the factory
//!    thermostat and freeze settings, the pump scheduled 08:00–20:00) — not constants, so the
//!    database compresses and indexes what a real fleet would give it.
//!    As simulated time passes, the same upkeep the server runs hourly (`Storage::maintain`)
//!    runs at the end of each written slice with `now` = the end of that slice, so every day is
//!    sealed into chunks ([`tek_server::storage::chunk`]) an hour after it closes, as in a
//!    running server, and the file reaches its steady state (SQLite reuses the freed pages).
//! 3. The upkeep runs once more at the real time (as `tek serve` does at start), the database
//!    is closed (SQLite: its WAL checkpointed) and measured: `bytes_per_record` counts
//!    everything on disk, indexes and the other tables included (SQLite: its files;
//!    PostgreSQL: `pg_database_size` after a `VACUUM (ANALYZE)`, the write-ahead log not
//!    counted); `raw_bytes_per_record` only the raw records (rows, chunks and their indexes;
//!    PostgreSQL: `pg_total_relation_size` of `telemetry` with all its daily partitions and of
//!    `telemetry_chunk`), `rollup_bytes_per_record` the rollups. The summary's `backend` says
//!    which database it was.
//! 4. `tek serve` as a child process on that directory (and, with `--postgres`, that database:
//!    `db` in its configuration file), and real HTTP requests with the token,
//!    the way the web UI makes them: the device page's chart of the whole range
//!    (`/api/devices/{id}/telemetry?points=600`), the device CSV of the whole range
//!    (`/api/devices/{id}/telemetry.csv`, full body read), the site's energy over the range by
//!    month (`/api/sites/{id}/energy`, every device), the device list (`/api/devices`) once
//!    alone (`devices_first_ms`), then `/healthz` and `/api/devices` issued while a second site
//!    energy query runs: both the query and the list are measured warm there, as a user who
//!    keeps the pages open asks them again and again.
//!
//! With `--dir PATH` (SQLite only) the database is kept in PATH, with `bench-history.json` once the write
//! finished; a later run with the same `--devices` and `--days` on PATH skips steps 1–3 and
//! measures step 4 again (`"reused": true`), so a change of the readers can be measured before
//! and after on the same history without writing it again.
//!
//! Every loop is bounded: the write by `--max-write-seconds`, each request by a timeout.

use super::history_db::Db;
use super::progress;
use super::server::ServerProcess;
use anyhow::{bail, ensure, Context};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};
use tek_controller::thermostat::{Inputs, Relays};
use tek_proto::message::config::{Config, DEFAULT_FREEZE};
use tek_server::storage::postgres::DbUrl;
use tek_server::storage::status::month_of;
use tek_server::storage::{chunk, TelemetryRow};
use tek_sim::plant::Plant;

/// Arguments of `tek bench history`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Devices of the site.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub devices: u32,
    /// Days of 1-minute records per device (the energy query covers them by month, at most 36).
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub days: u32,
    /// Records per write (one transaction, as one batch of the ingest writer).
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub batch: u64,
    /// Give up if writing the history takes longer than this.
    #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub max_write_seconds: u64,
    /// Run on this PostgreSQL database instead of SQLite (postgres://USER@HOST:PORT/DB). It
    /// must hold no devices (a fresh database): the bench migrates it, writes the history and
    /// starts `tek serve` on it; it leaves the data there.
    // Checked when the arguments are parsed: a typo fails before anything is made.
    #[arg(long, value_name = "URL", value_parser = DbUrl::parse)]
    pub postgres: Option<DbUrl>,
    /// Keep the database in this directory (created if missing; else it must be empty or hold
    /// a history this benchmark finished) instead of a temporary one. If it holds a finished
    /// history of the same --devices and --days (its `bench-history.json` says so), the write is
    /// skipped and only the reads are measured: the summary line then says `"reused": true` and
    /// carries no write or size figures. The directory is left in place; delete it yourself.
    #[arg(long, conflicts_with = "postgres")]
    pub dir: Option<std::path::PathBuf>,
}

/// What `--dir` keeps beside the database once a history is written: enough to measure it
/// again. The token is the bench admin's, of this throwaway database only.
struct Finished {
    devices: u32,
    days: u32,
    ids: Vec<u32>,
    site: i64,
    token: String,
    start: i64,
    end: i64,
}

/// The file `--dir` records a finished history in.
const FINISHED: &str = "bench-history.json";

impl Finished {
    fn to_json(&self) -> Value {
        json!({
            "devices": self.devices,
            "days": self.days,
            "ids": self.ids,
            "site": self.site,
            "token": self.token,
            "start": self.start,
            "end": self.end,
        })
    }

    fn from_json(v: &Value) -> Option<Finished> {
        let int = |k: &str| v[k].as_i64();
        let small = |k: &str| int(k).and_then(|n| u32::try_from(n).ok());
        Some(Finished {
            devices: small("devices")?,
            days: small("days")?,
            ids: v["ids"]
                .as_array()?
                .iter()
                .map(|i| i.as_u64().and_then(|n| u32::try_from(n).ok()))
                .collect::<Option<_>>()?,
            site: int("site")?,
            token: v["token"].as_str()?.to_owned(),
            start: int("start")?,
            end: int("end")?,
        })
    }
}

/// Seconds per record.
const STEP_S: i64 = 60;
/// Channel mask of the records: power, energy, water, air, relays.
const CHANNELS: u8 = 0b1_1111;
/// Points of the device page's chart (`static/app.js`).
const CHART_POINTS: u32 = 600;
/// Longest wait for one HTTP answer.
const HTTP_TIMEOUT: Duration = Duration::from_secs(600);
/// Boot number of every record (one session per device, sequence numbers from 0).
const BOOT: u32 = 1;

/// One bench device's pool and its controller's relay logic.
struct Pool {
    id: u32,
    plant: Plant,
    relays: Relays,
    seq: u32,
}

impl Pool {
    /// The plant's clock: its day starts at 06:00, so the offset makes its hours those of UTC.
    const PLANT_T0_MS: u64 = 18 * 3_600_000;

    fn new(id: u32) -> Pool {
        let mut plant = Plant::new(id, 0);
        // Let the water settle for the 18 simulated hours before the first record.
        plant.advance(Self::PLANT_T0_MS);
        Pool {
            id,
            plant,
            relays: Relays::new(),
            seq: 0,
        }
    }

    /// The record logged at `time` (`elapsed_s` after the first).
    fn record(&mut self, time: i64, elapsed_s: u64) -> TelemetryRow {
        self.plant.advance(Self::PLANT_T0_MS + elapsed_s * 1000);
        let r = self.plant.reading();
        let hour = time.rem_euclid(86_400) / 3600;
        let relays = self.relays.evaluate(&Inputs {
            thermostat: Config::DEFAULT.thermostat,
            water_cc: r.water_cc,
            air_cc: r.air_cc,
            pump_scheduled: (8..20).contains(&hour),
            freeze: DEFAULT_FREEZE,
        });
        self.plant.set_relays(relays);
        let mut values = [0i32; tek_proto::message::telemetry::channel::COUNT];
        values[0] = i32::try_from(r.power_w).unwrap_or(i32::MAX);
        values[1] = i32::try_from(r.energy_wh).unwrap_or(i32::MAX);
        values[2] = r.water_cc.map_or(0, i32::from);
        values[3] = r.air_cc.map_or(0, i32::from);
        values[4] = i32::from(relays);
        let row = TelemetryRow {
            device_id: self.id,
            boot: BOOT,
            seq: self.seq,
            time,
            channels: CHANNELS,
            values,
        };
        self.seq += 1;
        row
    }
}

/// Runs the benchmark and returns its summary line.
pub fn run(args: Args) -> anyhow::Result<String> {
    let load_start = super::procfs::loadavg();
    let temp;
    let dir = match &args.dir {
        Some(d) => {
            if !d.exists() {
                // Private, as the temporary directory would be (the server warns otherwise).
                tek_server::storage::sqlite::files::create_private_dir(d)?;
            }
            let marker = d.join(FINISHED);
            if marker.exists() {
                let f = serde_json::from_slice::<Value>(&std::fs::read(&marker)?)
                    .ok()
                    .as_ref()
                    .and_then(Finished::from_json)
                    .with_context(|| format!("{} is not a finished history", marker.display()))?;
                ensure!(
                    f.devices == args.devices && f.days == args.days,
                    "{} holds {} devices x {} days, not {} x {}",
                    d.display(),
                    f.devices,
                    f.days,
                    args.devices,
                    args.days
                );
                progress!("reusing the history in {}", d.display());
                let mut out = read_back(d, &f, None, "sqlite")?;
                out["reused"] = json!(true);
                out["loadavg_start"] = json!(load_start);
                out["loadavg_end"] = json!(super::procfs::loadavg());
                return Ok(out.to_string());
            }
            ensure!(
                std::fs::read_dir(d)?.next().is_none(),
                "{} is neither empty nor a finished history",
                d.display()
            );
            d.as_path()
        }
        None => {
            temp = tempfile::Builder::new()
                .prefix("tek-bench-history")
                .tempdir()?;
            temp.path()
        }
    };
    progress!(
        "{} devices x {} days of 1-minute records in {}",
        args.devices,
        args.days,
        dir.display()
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let store = Db::open(dir, args.postgres.as_ref())?;
    let backend = store.backend();
    let db = store.storage();
    let ids: Vec<u32> = tek_server::provision::provision(db, Some(1), args.devices, "bench", now)?
        .device
        .iter()
        .map(|d| d.id)
        .collect();
    let site = db.create_site("bench-history", now)?;
    db.assign_devices(&ids, Some(site))?;
    let token = store.api_token(dir)?;
    let bytes_before = store.bytes(dir)?;

    // Write the history.
    let end = now.div_euclid(86_400) * 86_400;
    let start = end - i64::from(args.days) * 86_400;
    let minutes = u64::from(args.days) * 1440;
    let records = minutes * u64::from(args.devices);
    let slice = (args.batch / u64::from(args.devices)).max(1);
    let mut pools: Vec<Pool> = ids.iter().map(|&id| Pool::new(id)).collect();
    let t0 = Instant::now();
    let limit = Duration::from_secs(args.max_write_seconds);
    let mut written = 0u64;
    let mut next_report = 0u64;
    let mut rows = Vec::with_capacity((slice * u64::from(args.devices)) as usize);
    let mut m0 = 0u64;
    let mut sealed_before = chunk::sealable_before(start);
    let mut seal_seconds = 0.0;
    while m0 < minutes {
        let m1 = (m0 + slice).min(minutes);
        rows.clear();
        for p in &mut pools {
            for m in m0..m1 {
                rows.push(p.record(start + m as i64 * STEP_S, m * STEP_S as u64));
            }
        }
        let new = db.insert_telemetry_new(&rows)?;
        ensure!(
            new.len() == rows.len(),
            "{} of {} fresh records were stored",
            new.len(),
            rows.len()
        );
        written += rows.len() as u64;
        m0 = m1;
        // The server's hourly upkeep, at the simulated time of the slice's end.
        let sim_now = start + m1 as i64 * STEP_S;
        if chunk::sealable_before(sim_now) > sealed_before {
            let t = Instant::now();
            db.maintain(sim_now, 0)?;
            seal_seconds += t.elapsed().as_secs_f64();
            sealed_before = chunk::sealable_before(sim_now);
        }
        if t0.elapsed() > limit {
            bail!(
                "writing took longer than --max-write-seconds {} ({written} of {records} records)",
                args.max_write_seconds
            );
        }
        if written >= next_report {
            progress!(
                "{written} of {records} records written, {:.0} records/s",
                written as f64 / t0.elapsed().as_secs_f64().max(1e-9)
            );
            next_report += records / 10;
        }
    }
    // Idempotence, as the writer relies on it: the last batch again stores nothing.
    let again = db.insert_telemetry_new(&rows)?;
    ensure!(
        again.is_empty(),
        "{} records were stored twice",
        again.len()
    );
    let write_seconds = t0.elapsed().as_secs_f64();
    // As `tek serve` does at start.
    db.maintain(now, 0)?;
    ensure!(
        db.telemetry_count(ids[0])? == minutes,
        "{} of {minutes} records of device {} read back after sealing",
        db.telemetry_count(ids[0])?,
        ids[0]
    );
    let serve_config = store.serve_config();
    let sizes = store.close_and_measure(dir)?;
    let (bytes, raw_bytes, rollup_bytes, tables) =
        (sizes.total, sizes.raw, sizes.rollup, sizes.tables);
    let bytes_per_record = bytes as f64 / records as f64;
    let raw_bytes_per_record = raw_bytes as f64 / records as f64;
    let rollup_bytes_per_record = rollup_bytes as f64 / records as f64;
    progress!(
        "raw records {raw_bytes} B ({raw_bytes_per_record:.2} B per record), rollups \
         {rollup_bytes} B ({rollup_bytes_per_record:.2} B per record); sealing took \
         {seal_seconds:.1} s of the write; largest: {:?}",
        &tables[..tables.len().min(6)]
    );
    progress!(
        "{records} records in {write_seconds:.1} s ({:.0} records/s, {:.0}x real time); \
         database {bytes} bytes ({bytes_before} before), {bytes_per_record:.1} B per record",
        records as f64 / write_seconds,
        (minutes * STEP_S as u64) as f64 / write_seconds
    );

    let finished = Finished {
        devices: args.devices,
        days: args.days,
        ids,
        site,
        token,
        start,
        end,
    };
    if args.dir.is_some() {
        std::fs::write(dir.join(FINISHED), serde_json::to_vec(&finished.to_json())?)?;
    }
    let mut out = read_back(dir, &finished, serve_config.as_deref(), backend)?;
    let written = json!({
        "reused": false,
        "records": records,
        "batch": args.batch,
        "write_seconds": write_seconds,
        "write_records_per_s": records as f64 / write_seconds,
        "db_bytes": bytes,
        "db_bytes_before": bytes_before,
        "bytes_per_record": bytes_per_record,
        "raw_bytes_per_record": raw_bytes_per_record,
        "rollup_bytes_per_record": rollup_bytes_per_record,
        "seal_seconds": seal_seconds,
        "loadavg_start": load_start,
        "loadavg_end": super::procfs::loadavg(),
    });
    if let (Some(o), Value::Object(w)) = (out.as_object_mut(), written) {
        o.extend(w);
    }
    Ok(out.to_string())
}

/// Reads a written history back the way the web UI does; the figures of the reads.
fn read_back(
    dir: &Path,
    f: &Finished,
    serve_config: Option<&str>,
    backend: &str,
) -> anyhow::Result<Value> {
    let (ids, site, token, start, end) = (&f.ids, f.site, &f.token, f.start, f.end);
    let minutes = u64::from(f.days) * 1440;
    let srv = ServerProcess::start(dir, serve_config)?;
    let http = srv.http;
    let device = ids[0];
    let chart_path =
        format!("/api/devices/{device}/telemetry?from={start}&to={end}&points={CHART_POINTS}");
    let mut chart = Vec::new();
    for _ in 0..3 {
        let r = get(http, &chart_path, token)?;
        let v = r.json()?;
        let buckets = v["buckets"].as_array().map_or(0, Vec::len);
        let counted: u64 = v["buckets"]
            .as_array()
            .map_or(0, |b| b.iter().filter_map(|b| b["count"].as_u64()).sum());
        ensure!(
            buckets > 0 && counted == minutes,
            "chart: {buckets} buckets holding {counted} of {minutes} records"
        );
        chart.push(r.total_ms);
    }
    let chart_first_ms = chart[0];
    let chart_year_ms = median(&mut chart);
    progress!(
        "chart of {} days: {chart_year_ms:.1} ms (first {chart_first_ms:.1} ms)",
        f.days
    );

    let csv_path = format!("/api/devices/{device}/telemetry.csv?from={start}&to={end}");
    let mut csv = Vec::new();
    for _ in 0..2 {
        let r = get(http, &csv_path, token)?;
        let lines = r.body.iter().filter(|&&b| b == b'\n').count() as u64;
        ensure!(lines > minutes, "csv: {lines} lines for {minutes} records");
        csv.push(r);
    }
    let (device_csv_first_ms, device_csv_ms) = (csv[0].total_ms, csv[1].total_ms);
    let device_csv_first_byte_ms = csv[1].first_byte_ms;
    let device_csv_bytes = csv[1].body.len();
    progress!(
        "csv of {} days ({device_csv_bytes} bytes): {device_csv_ms:.1} ms, first byte \
         {device_csv_first_byte_ms:.1} ms (first run {device_csv_first_ms:.1} ms)",
        f.days
    );

    let energy_path = format!(
        "/api/sites/{site}/energy?by=month&from={}&to={}",
        month_of(start),
        month_after(end - 1)
    );
    let first = get(http, &energy_path, token)?;
    check_energy(&first.json()?, f.devices)?;
    let site_energy_first_ms = first.total_ms;
    // The device list once alone, as the first of the requests the web UI repeats while it is
    // open: like the site query, it is measured during the query warm, and its first request
    // after a start is reported on its own.
    let devices_first = get(http, "/api/devices", token)?;
    ensure!(
        devices_first.code == 200,
        "/api/devices answered {}",
        devices_first.code
    );
    let devices_first_ms = devices_first.total_ms;
    // Again, and /healthz and /api/devices while it runs.
    let during = Duration::from_secs_f64((site_energy_first_ms / 4.0).min(200.0) / 1000.0);
    let (energy, healthz, devices, overlapped) = std::thread::scope(|s| {
        let q = s.spawn(|| get(http, &energy_path, token));
        std::thread::sleep(during);
        let healthz = get(http, "/healthz", token);
        let devices = get(http, "/api/devices", token);
        let overlapped = !q.is_finished();
        let energy = q
            .join()
            .map_err(|_| anyhow::anyhow!("the site query panicked"));
        (energy, healthz, devices, overlapped)
    });
    let energy = energy??;
    check_energy(&energy.json()?, f.devices)?;
    let site_energy_ms = energy.total_ms;
    let healthz = healthz?;
    ensure!(healthz.code == 200, "/healthz answered {}", healthz.code);
    let devices = devices?;
    ensure!(
        devices.json()?.as_array().map_or(0, Vec::len) == ids.len(),
        "/api/devices does not list the {} devices",
        ids.len()
    );
    let healthz_during_ms = healthz.total_ms;
    let devices_during_ms = devices.total_ms;
    progress!(
        "site energy of {} devices: {site_energy_ms:.1} ms (first {site_energy_first_ms:.1} ms); \
         during it /healthz {healthz_during_ms:.1} ms, /api/devices {devices_during_ms:.1} ms \
         (alone before it {devices_first_ms:.1} ms){}",
        f.devices,
        if overlapped {
            ""
        } else {
            " (the query had already ended)"
        }
    );
    srv.stop()?;

    Ok(json!({
        "bench": "history",
        "backend": backend,
        "db": backend,
        "devices": f.devices,
        "days": f.days,
        "chart_year_ms": chart_year_ms,
        "chart_first_ms": chart_first_ms,
        "chart_points": CHART_POINTS,
        "device_csv_ms": device_csv_ms,
        "device_csv_first_ms": device_csv_first_ms,
        "device_csv_first_byte_ms": device_csv_first_byte_ms,
        "device_csv_bytes": device_csv_bytes,
        "site_energy_ms": site_energy_ms,
        "site_energy_first_ms": site_energy_first_ms,
        "healthz_during_ms": healthz_during_ms,
        "devices_during_ms": devices_during_ms,
        "devices_first_ms": devices_first_ms,
        "during_overlapped": overlapped,
    }))
}

fn check_energy(v: &Value, devices: u32) -> anyhow::Result<()> {
    let kwh = v["total"]["kwh"].as_f64().unwrap_or(0.0);
    let listed = v["devices"].as_array().map_or(0, Vec::len);
    ensure!(
        kwh > 0.0 && listed == devices as usize,
        "site energy: {kwh} kWh over {listed} of {devices} devices"
    );
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `YYYY-MM` of the UTC month after the one holding `t`.
fn month_after(t: i64) -> String {
    let day = i32::try_from(t.div_euclid(86_400)).unwrap_or(i32::MAX);
    let (y, m, _) = tek_proto::tz::civil_from_days(day);
    let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    format!("{y:04}-{m:02}")
}

/// An answer and how long it took.
struct Timed {
    code: u16,
    first_byte_ms: f64,
    total_ms: f64,
    body: Vec<u8>,
}

impl Timed {
    fn json(&self) -> anyhow::Result<Value> {
        ensure!(
            self.code == 200,
            "HTTP {}: {}",
            self.code,
            String::from_utf8_lossy(&self.body[..self.body.len().min(200)])
        );
        serde_json::from_slice(&self.body).context("the answer is not JSON")
    }
}

/// `GET path` with the bearer token, the whole body read (chunked transfer decoded).
fn get(addr: SocketAddr, path: &str, token: &str) -> anyhow::Result<Timed> {
    let t0 = Instant::now();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(HTTP_TIMEOUT))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Accept: */*\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut first_byte = None;
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        first_byte.get_or_insert_with(|| t0.elapsed());
        raw.extend_from_slice(&buf[..n]);
        ensure!(
            t0.elapsed() < HTTP_TIMEOUT,
            "GET {path}: no end in {HTTP_TIMEOUT:?}"
        );
    }
    let total = t0.elapsed();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("malformed HTTP response")?;
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("malformed HTTP status line")?;
    let mut body = raw.split_off(split + 4);
    if head.contains("transfer-encoding: chunked") {
        body = dechunk(&body)?;
    }
    Ok(Timed {
        code,
        first_byte_ms: first_byte.unwrap_or(total).as_secs_f64() * 1000.0,
        total_ms: total.as_secs_f64() * 1000.0,
        body,
    })
}

/// The payload of a chunked HTTP/1.1 body.
fn dechunk(mut b: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(b.len());
    loop {
        let eol = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("bad chunk")?;
        let size = std::str::from_utf8(&b[..eol])?;
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        ensure!(b.len() >= size + 2, "truncated chunk");
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_and_months() {
        assert_eq!(tek_proto::tz::civil_from_days(0), (1970, 1, 1));
        assert_eq!(tek_proto::tz::civil_from_days(20_454), (2026, 1, 1));
        let y2027 = 20_819 * 86_400;
        assert_eq!(month_of(y2027 - 1), "2026-12");
        assert_eq!(month_after(y2027 - 1), "2027-01");
        assert_eq!(month_of(y2027), "2027-01");
    }

    #[test]
    fn a_bad_postgres_url_is_refused_when_parsing() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: Args,
        }
        use clap::Parser;
        let e = Cli::try_parse_from(["history", "--postgres", "postgres://[bad"])
            .err()
            .expect("a bad URL must be refused");
        assert!(e.to_string().contains("invalid database URL"), "{e}");
        let e = Cli::try_parse_from(["history", "--postgres", "dbname=tek"])
            .err()
            .expect("a URL without a host must be refused");
        assert!(e.to_string().contains("no host"), "{e}");
        let ok = Cli::try_parse_from(["history", "--postgres", "postgres://b@127.0.0.1:5/t"])
            .unwrap()
            .args;
        assert_eq!(
            ok.postgres.as_ref().map(DbUrl::expose),
            Some("postgres://b@127.0.0.1:5/t")
        );
        assert!(Cli::try_parse_from(["history"])
            .unwrap()
            .args
            .postgres
            .is_none());
    }

    #[test]
    fn chunked_bodies_decode() {
        assert_eq!(
            dechunk(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").unwrap(),
            b"abcde"
        );
    }

    #[test]
    fn the_pool_heats_and_counts_energy() {
        let mut p = Pool::new(3);
        let rows: Vec<_> = (0..1440u64)
            .map(|m| p.record(m as i64 * 60, m * 60))
            .collect();
        assert_eq!(rows[1439].seq, 1439);
        // The pump runs by the schedule, the energy meter only goes up.
        assert!(rows.iter().any(|r| r.values[4] & 1 != 0));
        assert!(rows.iter().any(|r| r.values[4] & 1 == 0));
        assert!(rows[1439].values[1] > rows[0].values[1]);
        assert!(rows.iter().all(|r| (1000..4000).contains(&r.values[2])));
    }
}
