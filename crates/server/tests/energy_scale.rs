//! How long the energy query takes on a year of one-minute records of one device (525,600 rows),
//! on SQLite: `cargo test -p tek-server --test energy_scale -- --ignored --nocapture`. Ignored by
//! default (it writes about 50 MB); the figures are in BENCHMARKS.md. `TEK_WIDE_INDEX=1` measures
//! only the insert with a wider index (energy and power in it).

use std::time::Instant;
use tek_server::energy;
use tek_server::storage::sqlite::Sqlite;
use tek_server::storage::{DeviceStore, EnergyStore, NewDevice, TelemetryRow, TelemetryStore};

const WIDE: &str = "DROP INDEX telemetry_by_time;
    CREATE INDEX telemetry_by_time ON telemetry (device_id, time, energy_wh, power_w);";

#[test]
#[ignore]
fn a_year_of_minutes() {
    let dir = tempfile::tempdir().unwrap();
    let db = Sqlite::open_dir(dir.path()).unwrap();
    db.add_devices(
        &[NewDevice {
            id: 1,
            name: String::new(),
            key: tek_proto::crypto::Key([0; 16]),
        }],
        0,
    )
    .unwrap();
    if std::env::var("TEK_WIDE_INDEX").is_ok() {
        // Insert cost with an index that also carries the energy and power channels.
        let c = rusqlite::Connection::open(dir.path().join("tek.db")).unwrap();
        c.execute_batch(WIDE).unwrap();
    }
    let t0 = 1_767_225_600; // 2026-01-01T00:00Z
    let n = 365 * 1440;
    let started = Instant::now();
    for chunk in (0..n).collect::<Vec<i64>>().chunks(10_000) {
        let rows: Vec<TelemetryRow> = chunk
            .iter()
            .map(|&k| TelemetryRow {
                device_id: 1,
                boot: 1,
                seq: k as u32,
                time: t0 + k * 60,
                channels: 0b1111,
                values: [
                    1000 + (k % 7) as i32,
                    20 * k as i32 / 60,
                    2500,
                    1800,
                    0,
                    0,
                    0,
                    0,
                ],
            })
            .collect();
        db.insert_telemetry(&rows).unwrap();
    }
    println!("insert {n} rows: {:?}", started.elapsed());
    if std::env::var("TEK_WIDE_INDEX").is_ok() {
        return;
    }
    for (label, days) in [("30 days", 30), ("12 months", 365)] {
        let to = t0 + n * 60;
        let from = to - days * 86_400;
        let started = Instant::now();
        let data = db.meter_data(1, from, to).unwrap();
        let q = started.elapsed();
        let i = energy::device_intervals(&data, from, to);
        println!(
            "{label}: query {q:?} ({} intervals), total {:?}",
            data.intervals.len(),
            started.elapsed()
        );
        assert_eq!(i.len() as i64, days * 96);
    }
    // The same with an index that also carries the energy and power channels (no table
    // lookups): faster to read, slower to write; schema version 3 keeps the narrow one.
    let c = rusqlite::Connection::open(dir.path().join("tek.db")).unwrap();
    c.execute_batch(WIDE).unwrap();
    drop(c);
    let db = Sqlite::open_dir(dir.path()).unwrap();
    let to = t0 + n * 60;
    let started = Instant::now();
    db.meter_data(1, to - 365 * 86_400, to).unwrap();
    println!(
        "12 months, index with energy/power: {:?}",
        started.elapsed()
    );
}
