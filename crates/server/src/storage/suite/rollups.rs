//! Suite checks of the rollups ([`crate::storage::rollup`]) on every backend: the energy
//! figures read from them equal those recomputed from the raw records the way the energy query
//! computed them before the rollups existed, the chart buckets equal those computed from the raw
//! records, however the records arrived, and a database migrated from the schema before them
//! (version 7) or before the chart rollups (version 8) gets the same figures.

use super::dev;
use crate::storage::energy::{assemble, IntervalAgg, MeterData, INTERVAL_S, MAX_GAP_S};
use crate::storage::series::step_for_points;
use crate::storage::wide_rollup::Versions;
use crate::storage::{Bucket, Storage, TelemetryQuery, TelemetryRow};
use std::collections::BTreeMap;
use tek_proto::message::telemetry::channel;

/// A UTC midnight.
pub(super) const BASE: i64 = 900 * 2_000_000;

/// A small deterministic generator (the records must be the same on every run and backend).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}

/// Three days of device 1's records at irregular steps: a reboot (sequence numbers restart), a
/// meter reset, a three-hour gap (a span), a gap of more than a week (not counted), records
/// without an energy reading, without a power reading, and with neither ("no value", never 0);
/// water temperature in every record, air temperature and relay states in most.
pub(super) fn history() -> Vec<TelemetryRow> {
    let mut rng = Lcg(21);
    let (mut t, mut wh, mut boot, mut seq) = (BASE - 3_600, 1_000_i64, 1, 0);
    let mut rows = Vec::new();
    let mut n = 0;
    while t < BASE + 3 * 86_400 {
        n += 1;
        let mut channels = 0;
        let mut values = [0; channel::COUNT];
        if n % 13 != 0 && n % 29 != 0 {
            channels |= 1 << channel::ENERGY_WH;
            values[usize::from(channel::ENERGY_WH)] = wh as i32;
        }
        if n % 17 != 0 && n % 29 != 0 {
            channels |= 1 << channel::POWER_W;
            values[usize::from(channel::POWER_W)] = rng.next(4_000) as i32 - 200;
        }
        channels |= 1 << channel::WATER_TEMP_CC;
        values[usize::from(channel::WATER_TEMP_CC)] = 2_500 + (n % 11) * 7;
        // Not from `rng`: the energy and power readings stay those the energy checks were
        // written for.
        if n % 7 != 0 {
            channels |= 1 << channel::AIR_TEMP_CC;
            values[usize::from(channel::AIR_TEMP_CC)] = -300 + (n * 37 % 2_000);
        }
        if n % 5 != 0 {
            channels |= 1 << channel::RELAYS;
            values[usize::from(channel::RELAYS)] = n / 3 % 4;
        }
        rows.push(TelemetryRow {
            device_id: 1,
            boot,
            seq,
            time: t,
            channels,
            values,
        });
        seq += 1;
        wh += rng.next(40) as i64;
        t += 20 + rng.next(100) as i64;
        match n {
            700 => wh = 3,                 // the meter is reset
            1_200 => (boot, seq) = (2, 0), // the controller reboots; the meter keeps counting
            1_500 => t += 3 * 3_600,       // off for three hours
            _ => {}
        }
    }
    // After more than a week of silence.
    let mut last = *rows.last().unwrap();
    (last.seq, last.time) = (last.seq + 1, last.time + 8 * 86_400);
    rows.push(last);
    rows
}

/// Every stored record of device 1, oldest first.
fn all_records(db: &dyn Storage) -> Vec<TelemetryRow> {
    db.telemetry(&TelemetryQuery {
        device_id: 1,
        from: i64::MIN,
        to: i64::MAX,
        limit: usize::MAX,
    })
    .unwrap()
}

/// Stores `rows` shuffled, in batches of varying size, then retransmits a third of them (some
/// stamped a second later, as another server would stamp them) and a batch holding one record
/// twice; returns the records as stored.
pub(super) fn store_shuffled_with_retransmissions(
    db: &dyn Storage,
    rows: &[TelemetryRow],
) -> Vec<TelemetryRow> {
    let mut rng = Lcg(7);
    let mut shuffled = rows.to_vec();
    for i in (1..shuffled.len()).rev() {
        shuffled.swap(i, rng.next(i as u64 + 1) as usize);
    }
    let mut rest = &shuffled[..];
    while !rest.is_empty() {
        let n = (1 + rng.next(300) as usize).min(rest.len());
        let (batch, tail) = rest.split_at(n);
        assert_eq!(db.insert_telemetry(batch).unwrap(), n as u64);
        rest = tail;
    }
    let mut again = Vec::new();
    for r in &shuffled {
        if rng.next(3) == 0 {
            let stamped = r.time + rng.next(2) as i64;
            again.push(TelemetryRow {
                time: stamped,
                ..*r
            });
        }
    }
    assert_eq!(db.insert_telemetry(&again).unwrap(), 0, "retransmissions");
    assert_eq!(db.insert_telemetry(&[rows[5], rows[5]]).unwrap(), 0);
    let stored = all_records(db);
    assert_eq!(stored.len(), rows.len());
    stored
}

/// The meter data of `[from, to)` computed from raw records as the energy query did before the
/// rollups: per interval the number of meter readings, lowest, highest, earliest and latest (by
/// time, then reading) and mean power; the latest reading within a week before `from` and the
/// earliest within a week from `to`.
fn meter_data_from_records(rows: &[TelemetryRow], from: i64, to: i64) -> MeterData {
    let energy = |r: &TelemetryRow| r.get(channel::ENERGY_WH).map(|e| (r.time, i64::from(e)));
    let mut by_interval: BTreeMap<i64, Vec<&TelemetryRow>> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.time >= from && r.time < to) {
        by_interval
            .entry(r.time - r.time.rem_euclid(INTERVAL_S))
            .or_default()
            .push(r);
    }
    let aggs: Vec<IntervalAgg> = by_interval
        .into_iter()
        .map(|(start, rs)| {
            let readings: Vec<(i64, i64)> = rs.iter().filter_map(|r| energy(r)).collect();
            let power: Vec<i64> = rs
                .iter()
                .filter_map(|r| r.get(channel::POWER_W).map(i64::from))
                .collect();
            let whs = readings.iter().map(|r| r.1);
            IntervalAgg {
                start,
                count: readings.len() as i64,
                first: readings.iter().min().copied(),
                last: readings.iter().max().copied(),
                min_max: whs.clone().min().zip(whs.max()),
                power_w: (!power.is_empty())
                    .then(|| power.iter().sum::<i64>() as f64 / power.len() as f64),
            }
        })
        .collect();
    let before = rows
        .iter()
        .filter_map(energy)
        .filter(|(t, _)| *t < from && *t >= from - MAX_GAP_S)
        .max();
    let after = rows
        .iter()
        .filter_map(energy)
        .filter(|(t, _)| *t >= to && *t < to + MAX_GAP_S)
        .min();
    assemble(&aggs, before, after, from, to)
}

/// The ranges compared: everything, a day, an hour in the middle, a range inside the gap, one
/// starting inside it, and one ending just after the meter reset.
pub(super) fn ranges(rows: &[TelemetryRow]) -> Vec<(i64, i64)> {
    let floor = |t: i64| t - t.rem_euclid(INTERVAL_S);
    let at = |i: usize| floor(rows[i].time);
    vec![
        (floor(BASE - 86_400), BASE + 20 * 86_400),
        (BASE, BASE + 86_400),
        (at(900), at(904) + 3_600),
        (at(1_499) + 1_800, at(1_499) + 3_600),
        (at(1_499) + 1_800, at(1_600)),
        (at(650), at(701) + 900),
    ]
}

fn check_against_records(db: &dyn Storage, stored: &[TelemetryRow]) {
    for (from, to) in ranges(stored) {
        assert_eq!(
            db.meter_data(1, from, to).unwrap(),
            meter_data_from_records(stored, from, to),
            "{from}..{to}"
        );
    }
}

/// Rollups kept as records are committed give the figures recomputed from the raw records,
/// after shuffled batches, retransmissions, a reboot and a meter reset.
pub(crate) fn energy_rollups_follow_raw_records(db: &dyn Storage) {
    db.add_devices(&[dev(1), dev(2)], 0).unwrap();
    let stored = store_shuffled_with_retransmissions(db, &history());
    // The history exercises what it should: power-only intervals, spans, a reset.
    let all = meter_data_from_records(&stored, BASE - 86_400, BASE + 20 * 86_400);
    assert!(all
        .intervals
        .iter()
        .any(|i| i.wh.is_none() && i.power_w.is_some()));
    assert!(!all.spans.is_empty());
    let readings: Vec<i32> = stored
        .iter()
        .filter_map(|r| r.get(channel::ENERGY_WH))
        .collect();
    assert!(readings.windows(2).any(|w| w[1] < w[0]));
    check_against_records(db, &stored);
    assert_eq!(
        db.meter_data(2, BASE, BASE + 86_400).unwrap(),
        MeterData::default()
    );
    assert!(db.meter_data(1, BASE + 1, BASE + 900).is_err(), "unaligned");
}

/// A database of the schema before the rollups (version 7), holding records: `downgrade`
/// drops the rollups and sets that version, and reopens the database, which migrates it. The
/// figures are those of before, and rollups keep following new records.
pub(crate) fn energy_rollups_backfilled_by_migration(
    db: &dyn Storage,
    downgrade: impl FnOnce() -> Box<dyn Storage>,
) {
    db.add_devices(&[dev(1)], 0).unwrap();
    let rows = history();
    let (old, new) = rows.split_at(2_000);
    let stored = store_shuffled_with_retransmissions(db, old);
    let before: Vec<MeterData> = ranges(&stored)
        .iter()
        .map(|(f, t)| db.meter_data(1, *f, *t).unwrap())
        .collect();
    assert!(before.iter().any(|d| !d.intervals.is_empty()));
    let migrated = downgrade();
    for ((f, t), b) in ranges(&stored).iter().zip(&before) {
        assert_eq!(&migrated.meter_data(1, *f, *t).unwrap(), b, "{f}..{t}");
    }
    check_against_records(&*migrated, &stored);
    check_charts_against_records(&*migrated, &stored);
    assert_eq!(migrated.insert_telemetry(new).unwrap(), new.len() as u64);
    check_against_records(&*migrated, &all_records(&*migrated));
}

/// The chart buckets of `[from, to)` by `step`, computed from raw records directly (each
/// bucket's records gathered, then means as sum / count, extremes, shares), as the raw query
/// computes them.
fn buckets_from_records(rows: &[TelemetryRow], from: i64, to: i64, step: i64) -> Vec<Bucket> {
    let mut by_bucket: BTreeMap<i64, Vec<&TelemetryRow>> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.time >= from && r.time < to) {
        by_bucket
            .entry(r.time - r.time.rem_euclid(step))
            .or_default()
            .push(r);
    }
    by_bucket
        .into_iter()
        .map(|(start, rs)| {
            let of = |ch: u8| -> Vec<i64> {
                rs.iter().filter_map(|r| r.get(ch).map(i64::from)).collect()
            };
            let mean =
                |v: &[i64]| (!v.is_empty()).then(|| v.iter().sum::<i64>() as f64 / v.len() as f64);
            let range = |v: &[i64]| {
                let lo = v.iter().min().map(|x| *x as f64);
                lo.zip(v.iter().max().map(|x| *x as f64))
            };
            let (power, water, air, relays) = (
                of(channel::POWER_W),
                of(channel::WATER_TEMP_CC),
                of(channel::AIR_TEMP_CC),
                of(channel::RELAYS),
            );
            let share = |bit: i64| mean(&relays.iter().map(|r| (r >> bit) & 1).collect::<Vec<_>>());
            Bucket {
                start,
                count: rs.len() as u32,
                power_w: mean(&power),
                energy_wh: of(channel::ENERGY_WH).into_iter().max(),
                water_cc: mean(&water),
                air_cc: mean(&air),
                power_range: range(&power),
                water_range_cc: range(&water),
                air_range_cc: range(&air),
                pump_on: share(0),
                heater_on: share(1),
            }
        })
        .collect()
}

/// The charts compared, `(from, to, step)`: whole days on day boundaries (daily rollups), the
/// same with ends inside a quarter hour (records, quarter hours, days), hours (quarter hours),
/// 45 minutes from an unaligned start, minutes and 7 minutes (records only), a week, and the
/// step the API picks for 600 points over everything.
pub(super) fn charts() -> Vec<(i64, i64, i64)> {
    let day0 = BASE - BASE.rem_euclid(86_400);
    let (from, to) = (BASE - 3_600 + 17, BASE + 3 * 86_400 + 4_000);
    let all = (day0 - 86_400, day0 + 20 * 86_400);
    vec![
        (all.0, all.1, 86_400),
        (from, to, 86_400),
        (from, to, 2 * 86_400),
        (day0, day0 + 2 * 86_400, 3_600),
        (from, to, 2_700),
        (BASE, BASE + 86_400, 60),
        (from, to, 420),
        (from + 1_000, to, 7 * 86_400),
        (all.0, all.1, step_for_points(all.1 - all.0, 600)),
    ]
}

/// Two records on either side of a UTC midnight (every bucket boundary of the charts above),
/// with every channel.
fn at_midnight() -> [TelemetryRow; 2] {
    let midnight = BASE - BASE.rem_euclid(86_400) + 86_400;
    let row = |seq: u32, time: i64, v: i32| TelemetryRow {
        device_id: 1,
        boot: 9,
        seq,
        time,
        channels: 0b1_1111,
        values: [
            v,
            5_000_000 + v,
            2_600 + v / 100,
            1_900 - v / 100,
            v.rem_euclid(4),
            0,
            0,
            0,
        ],
    };
    // Beyond every power reading of `history`, so each shows as its bucket's extreme.
    [row(1, midnight - 1, 30_000), row(2, midnight, -30_000)]
}

fn check_charts_against_records(db: &dyn Storage, stored: &[TelemetryRow]) {
    for (from, to, step) in charts() {
        let expected = buckets_from_records(stored, from, to, step);
        assert!(!expected.is_empty(), "{from}..{to} by {step}: no bucket");
        assert_eq!(
            db.telemetry_buckets(1, from, to, step).unwrap(),
            expected,
            "{from}..{to} by {step}"
        );
    }
}

/// Chart buckets read from the rollups (or partly from records) equal those computed from the
/// raw records, after shuffled batches, retransmissions (one of them of a record at a bucket
/// boundary) and records on both sides of that boundary.
pub(crate) fn chart_rollups_follow_raw_records(db: &dyn Storage) {
    db.add_devices(&[dev(1), dev(2)], 0).unwrap();
    store_shuffled_with_retransmissions(db, &history());
    let [before, after] = at_midnight();
    assert_eq!(db.insert_telemetry(&[after, before]).unwrap(), 2);
    let again = TelemetryRow {
        time: after.time - 1, // stamped by another server a second earlier: another bucket
        ..after
    };
    assert_eq!(db.insert_telemetry(&[again]).unwrap(), 0, "retransmission");
    let stored = all_records(db);
    // The data exercises what it should: relay shares between 0 and 1, records without air.
    let day = buckets_from_records(&stored, BASE, BASE + 86_400, 86_400);
    assert!(day
        .iter()
        .any(|b| b.pump_on.is_some_and(|p| p > 0.0 && p < 1.0)));
    assert!(day.iter().any(|b| b.air_cc.is_some()));
    assert!(stored.iter().any(|r| r.get(channel::AIR_TEMP_CC).is_none()));
    check_charts_against_records(db, &stored);
    // A bucket boundary: the day after midnight starts with the record stamped at midnight.
    let midnight = after.time;
    let b = db
        .telemetry_buckets(1, midnight - 86_400, midnight + 86_400, 86_400)
        .unwrap();
    let power = |start: i64| {
        b.iter()
            .find(|b| b.start == start)
            .and_then(|b| b.power_range)
    };
    assert_eq!(power(midnight).map(|r| r.0), Some(-30_000.0));
    assert_eq!(power(midnight - 86_400).map(|r| r.1), Some(30_000.0));
    assert!(db
        .telemetry_buckets(2, BASE, BASE + 86_400, 86_400)
        .unwrap()
        .is_empty());
}

/// Sealed 15-minute rollups ([`crate::storage::quarter`]) give the figures the rows gave: the
/// energy and the charts equal those recomputed from the raw records with some days sealed,
/// with all of them sealed, after late records of a sealed day (a row merged with the blob
/// on read) and after the next pass merged those into the blob.
pub(crate) fn sealed_quarters_read_like_rows(db: &dyn Storage) {
    use crate::storage::quarter::GRACE_S;
    db.add_devices(&[dev(1), dev(2)], 0).unwrap();
    let stored = store_shuffled_with_retransmissions(db, &history());
    let day0 = BASE - BASE.rem_euclid(86_400);
    // Not closed yet: its end plus the grace is a second away.
    assert_eq!(db.seal_quarter_rollups(day0 + GRACE_S - 1).unwrap(), 0);
    // The day before BASE and BASE's day sealed, the rest still rows.
    assert!(db.seal_quarter_rollups(day0 + 86_400 + GRACE_S).unwrap() > 0);
    check_against_records(db, &stored);
    check_charts_against_records(db, &stored);
    // Everything, through the upkeep the server runs.
    db.maintain(day0 + 60 * 86_400, 0).unwrap();
    assert_eq!(db.seal_quarter_rollups(day0 + 60 * 86_400).unwrap(), 0);
    check_against_records(db, &stored);
    check_charts_against_records(db, &stored);
    // Late records in sealed days: rows again, merged with the blobs on read.
    let late = at_midnight();
    assert_eq!(db.insert_telemetry(&late).unwrap(), 2);
    let all = all_records(db);
    check_against_records(db, &all);
    check_charts_against_records(db, &all);
    assert_eq!(db.seal_quarter_rollups(day0 + 60 * 86_400).unwrap(), 2);
    check_against_records(db, &all);
    check_charts_against_records(db, &all);
    assert_eq!(
        db.meter_data(2, BASE, BASE + 86_400).unwrap(),
        MeterData::default()
    );
}

/// Retention of the 15-minute rollups: the days before the horizon lose their energy figures
/// and quarter-hour charts (rows and sealed days alike); the daily rollups stay; later days
/// are untouched; 0 keeps everything.
pub(crate) fn quarter_retention_keeps_the_days(db: &dyn Storage) {
    db.add_devices(&[dev(1)], 0).unwrap();
    let stored = store_shuffled_with_retransmissions(db, &history());
    let day0 = BASE - BASE.rem_euclid(86_400);
    let now = day0 + 2 * 86_400 + 7_200;
    // Seal the first days only: the horizon cuts sealed days and rows.
    db.seal_quarter_rollups(now).unwrap();
    db.expire_quarter_rollups(now, 0).unwrap();
    check_against_records(db, &stored);
    // Keep one day: days before day0 + 86,400 go (day0 - 1 and day0, sealed).
    db.expire_quarter_rollups(now, 1).unwrap();
    let horizon = day0 + 86_400;
    assert_eq!(
        db.meter_data(1, day0 - 86_400, horizon).unwrap(),
        MeterData::default()
    );
    assert!(db
        .telemetry_buckets(1, day0, horizon, 3_600)
        .unwrap()
        .is_empty());
    // The daily rollups stay.
    assert_eq!(
        db.telemetry_buckets(1, day0 - 86_400, horizon, 86_400)
            .unwrap(),
        buckets_from_records(&stored, day0 - 86_400, horizon, 86_400)
    );
    // Later days keep their figures (a range whose reading before lies after the horizon).
    let later: Vec<_> = stored
        .iter()
        .filter(|r| r.time >= horizon)
        .copied()
        .collect();
    let (from, to) = (horizon + 3_600, horizon + 2 * 86_400);
    assert_eq!(
        db.meter_data(1, from, to).unwrap(),
        meter_data_from_records(&later, from, to)
    );
    assert_eq!(
        db.telemetry_buckets(1, from, to, 3_600).unwrap(),
        buckets_from_records(&later, from, to, 3_600)
    );
}

/// A database of schema version 8 (15-minute energy rollups, no chart figures, no daily table)
/// holding records: `downgrade` turns the database into that and reopens it, which migrates.
/// The charts are those of the raw records, and the rollups keep following new records.
pub(crate) fn chart_rollups_backfilled_by_migration(
    db: &dyn Storage,
    downgrade: impl FnOnce() -> Box<dyn Storage>,
) {
    db.add_devices(&[dev(1)], 0).unwrap();
    let rows = history();
    let (old, new) = rows.split_at(2_000);
    let mut stored = store_shuffled_with_retransmissions(db, old);
    let midnight = at_midnight();
    assert_eq!(db.insert_telemetry(&midnight).unwrap(), 2);
    stored.extend(midnight);
    stored.sort_by_key(|r| (r.time, r.boot, r.seq));
    let migrated = downgrade();
    check_charts_against_records(&*migrated, &stored);
    check_against_records(&*migrated, &stored);
    assert_eq!(migrated.insert_telemetry(new).unwrap(), new.len() as u64);
    let all = all_records(&*migrated);
    check_charts_against_records(&*migrated, &all);
    check_against_records(&*migrated, &all);
}

/// The SQL turning a database of the current schema into one of version 8 (the rollups of that
/// version rebuilt from the records by its own migration), in `dialect`, without the version
/// bump (each backend records versions its own way).
pub(crate) fn to_version_8(dialect: crate::storage::schema::Dialect) -> String {
    use crate::storage::schema::{render, MIGRATIONS};
    let v8 = MIGRATIONS.iter().find(|m| m.0 == 8).unwrap().1;
    format!(
        "{}DROP TABLE backlog_estimated_boots; DROP TABLE telemetry_rollup_day;\n         DROP TABLE telemetry_rollup; {}",
        super::TO_VERSION_10,
        render(v8, dialect)
    )
}

/// A channel of wide records read as a meter ([`crate::storage::WideStore::channel_meter_data`])
/// gives the pool meter's figures when it holds the same readings: the same history stored
/// both as pool records and as wide records (channel 0 the power, channel 1 the energy
/// counter, gaps where the pool record has no value), every range of [`ranges`] gives the same
/// energy steps and spans from channel 1 and the same mean power from channel 0.
pub(crate) fn channel_meter_data_matches_the_pool_meter(db: &dyn Storage) {
    use crate::storage::{WideRow, WideValues};
    db.add_devices(&[dev(1)], 0).unwrap();
    let stored = store_shuffled_with_retransmissions(db, &history());
    let wide: Vec<WideRow> = stored
        .iter()
        .map(|r| WideRow {
            device_id: 1,
            boot: r.boot,
            seq: r.seq,
            time: r.time,
            config_version: Some(2),
            values: WideValues::from_options(&[r.get(channel::POWER_W), r.get(channel::ENERGY_WH)]),
        })
        .collect();
    for batch in wide.chunks(500) {
        db.insert_wide(batch).unwrap();
    }
    let energy_steps = |d: &MeterData| -> Vec<(i64, i64)> {
        d.intervals
            .iter()
            .filter_map(|i| i.wh.map(|wh| (i.start, wh)))
            .collect()
    };
    let mean_power = |d: &MeterData| -> Vec<(i64, f64)> {
        d.intervals
            .iter()
            .filter_map(|i| i.power_w.map(|p| (i.start, p)))
            .collect()
    };
    for (from, to) in ranges(&stored) {
        let pool = db.meter_data(1, from, to).unwrap();
        let counter = db
            .channel_meter_data(1, 1, Versions::ALL, from, to)
            .unwrap();
        let power = db
            .channel_meter_data(1, 0, Versions::ALL, from, to)
            .unwrap();
        assert_eq!(energy_steps(&counter), energy_steps(&pool), "{from}..{to}");
        assert_eq!(counter.spans, pool.spans, "{from}..{to}");
        let (a, b) = (mean_power(&power), mean_power(&pool));
        assert_eq!(a.len(), b.len(), "{from}..{to}");
        for ((ta, pa), (tb, pb)) in a.iter().zip(&b) {
            assert_eq!(ta, tb);
            assert!((pa - pb).abs() < 1e-9, "{ta}: {pa} != {pb}");
        }
    }
    assert!(!energy_steps(
        &db.channel_meter_data(1, 1, Versions::ALL, BASE, BASE + 86_400)
            .unwrap()
    )
    .is_empty());
    assert_eq!(
        db.channel_meter_data(1, 5, Versions::ALL, BASE, BASE + 86_400)
            .unwrap(),
        MeterData::default(),
        "a channel without values"
    );
    assert!(
        db.channel_meter_data(1, 1, Versions::ALL, BASE + 1, BASE + 900)
            .is_err(),
        "unaligned"
    );
    assert!(
        db.channel_meter_data(1, 200, Versions::ALL, BASE, BASE + 900)
            .is_err(),
        "no such channel"
    );
}

/// `history` as wide records: channel 0 the power, 1 the energy counter, 2 the water and 3 the
/// air temperature, 4 the relays (gaps where the pool record has no value), logged under
/// configuration version 1 in the first boot and 2 in the second, with every 50th record of a
/// version the server did not know.
fn wide_history() -> Vec<crate::storage::WideRow> {
    use crate::storage::{WideRow, WideValues};
    history()
        .iter()
        .enumerate()
        .map(|(i, r)| WideRow {
            device_id: 1,
            boot: r.boot,
            seq: r.seq,
            time: r.time,
            config_version: (i % 50 != 0).then_some(r.boot),
            values: WideValues::from_options(&[
                r.get(channel::POWER_W),
                r.get(channel::ENERGY_WH),
                r.get(channel::WATER_TEMP_CC),
                r.get(channel::AIR_TEMP_CC),
                r.get(channel::RELAYS),
            ]),
        })
        .collect()
}

/// Stores wide `rows` shuffled in batches of varying size, each batch after the first mixing
/// new records with retransmissions of stored ones (some stamped a second later, as another
/// server would stamp them), and checks the insert names exactly the new ones, in input order.
fn store_wide_shuffled_with_retransmissions(db: &dyn Storage, rows: &[crate::storage::WideRow]) {
    let mut rng = Lcg(11);
    let mut shuffled = rows.to_vec();
    for i in (1..shuffled.len()).rev() {
        shuffled.swap(i, rng.next(i as u64 + 1) as usize);
    }
    let mut stored: Vec<crate::storage::WideRow> = Vec::new();
    let mut rest = &shuffled[..];
    while !rest.is_empty() {
        let n = (1 + rng.next(300) as usize).min(rest.len());
        let (fresh, tail) = rest.split_at(n);
        let mut batch = Vec::new();
        for r in fresh {
            batch.push(r.clone());
            if !stored.is_empty() && rng.next(3) == 0 {
                let mut again = stored[rng.next(stored.len() as u64) as usize].clone();
                again.time += rng.next(2) as i64;
                batch.push(again);
            }
        }
        batch.push(fresh[0].clone()); // one record twice in the batch
        assert_eq!(db.insert_wide_new(&batch).unwrap(), fresh, "the new rows");
        stored.extend_from_slice(fresh);
        rest = tail;
    }
    assert_eq!(
        db.insert_wide(&shuffled[..100]).unwrap(),
        0,
        "retransmissions"
    );
    assert_eq!(db.wide_count(1).unwrap(), rows.len() as u64);
}

/// The ranges of [`ranges`] on the wide history's own times.
fn wide_ranges() -> Vec<(i64, i64)> {
    ranges(&history())
}

/// Per bucket of `step` (a multiple of 15 minutes), channel `channel`'s readings in
/// `[from, to)` computed from the raw records directly, counting only the versions
/// `q.versions` counts.
fn channel_buckets_from_records(
    rows: &[crate::storage::WideRow],
    q: &crate::storage::wide_rollup::RollupQuery,
) -> Vec<crate::storage::wide_rollup::ChannelAgg> {
    use crate::storage::wide_rollup::ChannelAgg;
    let mut by_bucket: BTreeMap<i64, ChannelAgg> = BTreeMap::new();
    for r in rows {
        let counted = q.versions.counts(r.config_version);
        let Some(v) = r.values.get(usize::from(q.channel)) else {
            continue;
        };
        if !counted || r.time < q.from || r.time >= q.to {
            continue;
        }
        let start = r.time - r.time.rem_euclid(q.step);
        let one = ChannelAgg::one(start, r.time, i64::from(v));
        by_bucket
            .entry(start)
            .and_modify(|b| b.merge(&one))
            .or_insert(one);
    }
    by_bucket.into_values().collect()
}

/// Every wide record of device 1.
fn all_wide(db: &dyn Storage) -> Vec<crate::storage::WideRow> {
    db.wide_records(&TelemetryQuery {
        device_id: 1,
        from: i64::MIN,
        to: i64::MAX,
        limit: usize::MAX,
    })
    .unwrap()
}

/// The wide rollups give the raw records' figures: each channel read as a meter
/// ([`crate::storage::WideStore::channel_meter_data`] against
/// [`crate::storage::wide::channel_meter_data_from_records`]) over ranges around the reset,
/// the gaps and the long silence, and per chart bucket (count, lowest, highest, sum, earliest,
/// latest) for every version filter.
/// Ranges of configuration versions for the comparisons: all, from one on, between two, below
/// one, one alone.
fn version_ranges() -> [Versions; 6] {
    let v = |from, below| Versions { from, below };
    [
        Versions::ALL,
        Versions::since(2),
        Versions::since(3),
        v(Some(1), Some(3)),
        v(None, Some(2)),
        v(Some(2), Some(3)),
    ]
}

fn check_wide_rollups_against_records(db: &dyn Storage) {
    use crate::storage::wide::channel_meter_data_from_records;
    use crate::storage::wide_rollup::RollupQuery;
    let stored = all_wide(db);
    for channel in 0..6 {
        for (from, to) in wide_ranges() {
            for versions in version_ranges() {
                assert_eq!(
                    db.channel_meter_data(1, channel, versions, from, to)
                        .unwrap(),
                    channel_meter_data_from_records(db, 1, channel, versions, from, to).unwrap(),
                    "channel {channel}, {from}..{to}, {versions:?}"
                );
            }
        }
    }
    // The filter matters in this history: version 3 alone has fewer readings than all.
    let (from, to) = wide_ranges()[0];
    assert_ne!(
        db.channel_meter_data(1, 1, Versions::since(3), from, to)
            .unwrap(),
        db.channel_meter_data(1, 1, Versions::ALL, from, to)
            .unwrap()
    );
    let day0 = BASE - BASE.rem_euclid(86_400);
    for step in [900, 3_600, 2_700, 86_400, 7 * 86_400] {
        for versions in version_ranges() {
            for channel in 0..6 {
                let q = RollupQuery {
                    device_id: 1,
                    channel,
                    from: day0 - 86_400,
                    to: day0 + 20 * 86_400,
                    step,
                    versions,
                };
                assert_eq!(
                    db.wide_channel_rollups(&q).unwrap(),
                    channel_buckets_from_records(&stored, &q),
                    "{q:?}"
                );
            }
        }
    }
}

/// Wide rollups kept as records are committed follow the raw records, after shuffled batches
/// mixing new records with retransmissions, a reboot, a meter reset, gaps and a week's silence.
pub(crate) fn wide_rollups_follow_raw_records(db: &dyn Storage) {
    use crate::storage::wide::channel_meter_data_from_records;
    db.add_devices(&[dev(1), dev(2)], 0).unwrap();
    store_wide_shuffled_with_retransmissions(db, &wide_history());
    // The data exercises what it should: steps, spans, a reset of the counter channel.
    let all =
        channel_meter_data_from_records(db, 1, 1, Versions::ALL, BASE - 86_400, BASE + 20 * 86_400)
            .unwrap();
    assert!(!all.spans.is_empty());
    assert!(all.intervals.iter().any(|i| i.wh.is_some()));
    check_wide_rollups_against_records(db);
    assert_eq!(
        db.channel_meter_data(2, 1, Versions::ALL, BASE, BASE + 86_400)
            .unwrap(),
        MeterData::default()
    );
}

/// A database of schema version 13 (wide records, no wide rollups) holding wide records:
/// `downgrade` turns the database into that and reopens it, which migrates and rolls up the
/// records in Rust. The figures are those of before and of the raw records, and the rollups keep
/// following new records.
pub(crate) fn wide_rollups_backfilled_by_migration(
    db: &dyn Storage,
    downgrade: impl FnOnce() -> Box<dyn Storage>,
) {
    db.add_devices(&[dev(1)], 0).unwrap();
    let rows = wide_history();
    let (old, new) = rows.split_at(2_000);
    store_wide_shuffled_with_retransmissions(db, old);
    let before: Vec<MeterData> = wide_ranges()
        .iter()
        .map(|(f, t)| db.channel_meter_data(1, 1, Versions::ALL, *f, *t).unwrap())
        .collect();
    assert!(before.iter().any(|d| !d.intervals.is_empty()));
    let migrated = downgrade();
    for ((f, t), b) in wide_ranges().iter().zip(&before) {
        assert_eq!(
            &migrated
                .channel_meter_data(1, 1, Versions::ALL, *f, *t)
                .unwrap(),
            b,
            "{f}..{t}"
        );
    }
    check_wide_rollups_against_records(&*migrated);
    assert_eq!(migrated.insert_wide(new).unwrap(), new.len() as u64);
    check_wide_rollups_against_records(&*migrated);
}
