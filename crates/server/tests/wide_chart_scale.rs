//! How long the reads of one wide channel take over a year of one-minute records of one device
//! (525,600 records of the 14 channels of the SDM630 template), on SQLite:
//! `cargo test --release -p tek-server --test wide_chart_scale -- --ignored --nocapture`.
//! Ignored by default (it writes about 60 MB); the figures are in BENCHMARKS.md. It prints
//! them, it does not time-limit them: each read from the rollups is checked against the same
//! read from the raw records instead.

use std::time::Instant;
use tek_server::service::device_channels::{all_channel_buckets, channel_buckets};
use tek_server::storage::channels::builtin;
use tek_server::storage::series::step_for_points;
use tek_server::storage::sqlite::Sqlite;
use tek_server::storage::wide::channel_meter_data_from_records;
use tek_server::storage::wide_rollup::Versions;
use tek_server::storage::{
    ChannelSet, ChannelStore, DeviceStore, NewDevice, TelemetryQuery, WideRow, WideStore,
    WideValues,
};

/// Milliseconds `f` takes, and its result (the fastest of three runs: the figure is the read,
/// not the machine's other work).
fn timed<T>(what: &str, f: impl Fn() -> T) -> T {
    let mut best = f64::MAX;
    let mut out = None;
    for _ in 0..3 {
        let t = Instant::now();
        out = Some(f());
        best = best.min(t.elapsed().as_secs_f64() * 1e3);
    }
    eprintln!("{what}: {best:.1} ms");
    out.unwrap()
}

#[test]
#[ignore]
fn a_year_of_one_channel() {
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
    let t = builtin::sdm630();
    let set = ChannelSet {
        map: t.map(),
        roles: t.roles_value(),
        channels: t.labels(),
    };
    db.save_device_channels(1, 2, None, &set, 0).unwrap();
    let entry = db.device_channels(1, Some(2)).unwrap().unwrap();
    let t0: i64 = 1_767_225_600; // 2026-01-01T00:00Z
    let n: i64 = 365 * 1440;
    let started = Instant::now();
    let mut energy = 1_000_000_i32;
    for chunk in (0..n).collect::<Vec<i64>>().chunks(1_440) {
        let rows: Vec<WideRow> = chunk
            .iter()
            .map(|&k| {
                let noise = |c: i64| ((k * 7_919 + c * 31) % 9) as i32 - 4;
                energy += 20 + noise(0).abs();
                let mut v: Vec<Option<i32>> = (0..11).map(|c| Some(2_300 + noise(c))).collect();
                v.extend([Some(energy), Some(energy / 50), Some(energy + energy / 50)]);
                // A sensor that loses a reading now and then: a gap, never 0.
                if k % 97 == 0 {
                    v[3] = None;
                }
                WideRow {
                    device_id: 1,
                    boot: 1,
                    seq: k as u32,
                    time: t0 + 60 * k,
                    config_version: Some(2),
                    values: WideValues::from_options(&v),
                }
            })
            .collect();
        db.insert_wide(&rows).unwrap();
    }
    eprintln!(
        "insert: {n} records in {:.1} s (batches of one day)",
        started.elapsed().as_secs_f64()
    );
    let (from, to) = (t0, t0 + 365 * 86_400);
    let year = TelemetryQuery {
        device_id: 1,
        from,
        to,
        limit: usize::MAX,
    };
    let raw = timed(
        "one channel's series from the records (wide_series)",
        || db.wide_series(&year, 9).unwrap().len(),
    );
    assert_eq!(raw as i64, n);
    let step = step_for_points(to - from, 600);
    let daily = timed("one channel, a year by day, from the rollups", || {
        channel_buckets(&db, &entry, 9, from, to, 86_400)
            .unwrap()
            .unwrap()
    });
    let points = timed(
        &format!("one channel, a year in 600 points (step {step} s), from the rollups"),
        || {
            channel_buckets(&db, &entry, 9, from, to, step)
                .unwrap()
                .unwrap()
        },
    );
    // The same buckets from the records: a step of a day and a second is not a whole number
    // of quarter hours, so it reads the records; compare with the day buckets one by one.
    let from_records = timed("one channel, a year by 86,401 s, from the records", || {
        channel_buckets(&db, &entry, 9, from, to, 86_401)
            .unwrap()
            .unwrap()
    });
    assert_eq!(daily.len(), 365);
    assert!(points.len() <= 601);
    assert_eq!(
        from_records.iter().map(|b| b.count).sum::<u64>(),
        daily.iter().map(|b| b.count).sum::<u64>()
    );
    let page = timed("every channel (the device page), a year by day", || {
        all_channel_buckets(&db, &entry, from, to, 86_400).unwrap()
    });
    assert_eq!(page.len(), entry.channels.len());
    let meter = timed("channel 11 as a meter, a year, from the rollups", || {
        db.channel_meter_data(1, 11, Versions::ALL, from, to)
            .unwrap()
    });
    let reference = timed("channel 11 as a meter, a year, from the records", || {
        channel_meter_data_from_records(&db, 1, 11, Versions::ALL, from, to).unwrap()
    });
    assert_eq!(meter, reference);
}
