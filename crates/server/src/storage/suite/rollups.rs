//! Suite checks of the 15-minute rollups ([`crate::storage::rollup`]) on every backend: the
//! energy figures read from them equal those recomputed from the raw records the way the energy
//! query computed them before the rollups existed, however the records arrived, and a database
//! migrated from the schema before them gets the same figures.

use super::dev;
use crate::storage::energy::{assemble, IntervalAgg, MeterData, INTERVAL_S, MAX_GAP_S};
use crate::storage::{Storage, TelemetryQuery, TelemetryRow};
use std::collections::BTreeMap;
use tek_proto::message::telemetry::channel;

/// A UTC midnight.
const BASE: i64 = 900 * 2_000_000;

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
/// without an energy reading, without a power reading, and with neither ("no value", never 0).
fn history() -> Vec<TelemetryRow> {
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
        values[usize::from(channel::WATER_TEMP_CC)] = 2_500;
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
fn store_shuffled_with_retransmissions(
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
fn ranges(rows: &[TelemetryRow]) -> Vec<(i64, i64)> {
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
    assert_eq!(migrated.insert_telemetry(new).unwrap(), new.len() as u64);
    check_against_records(&*migrated, &all_records(&*migrated));
}
