//! Sealed 15-minute rollups: once a UTC day is closed (its end plus [`GRACE_S`] has passed), its
//! rows of `telemetry_rollup` ([`super::rollup`], up to 96 per device and day, 23 columns each)
//! are folded into one row of `telemetry_rollup_sealed` per (device, day) holding a compact
//! columnar blob ([`encode`]), and deleted. Schema version 16 added the table.
//!
//! Why: the rows of a device-year cost about 5.6 B per record on disk and a site's yearly energy
//! read 35,040 of them per device; the blob of a day is a few hundred bytes and one row read.
//!
//! * Sealing runs from [`super::Storage::maintain`] (the backends' `seal_quarter_rollups`), in
//!   transactions of at most [`SEAL_BATCH_ROWS`] rows each: the rows are deleted with
//!   `RETURNING` (so an upsert racing the pass either lands before and is sealed, or after and
//!   makes a new row), merged into the day's blob (decoded first when the day was sealed
//!   before) and the blob written back.
//! * A late record of a sealed day still upserts a row in `telemetry_rollup`; every reader
//!   reads the rows and the blobs in one snapshot and merges them ([`merge_into`]: the merge
//!   rules of [`super::rollup`], counts and sums add, lowest/highest/earliest/latest keep the
//!   extreme), and the next pass merges the row into the blob.
//! * Retention ([`retention_horizon`], setting `quarter_retention_days`) deletes the rows and
//!   blobs of days before the horizon; the daily rollups are kept.
//!
//! The blob ([`VERSION`] 1), little-endian:
//! * byte 0: the version;
//! * bytes 1..13: which of the day's 96 quarter hours have an interval (bit `i`: the interval
//!   starting `i * 900` s after midnight), `n` of them, in order;
//! * two groups, the energy figures ([`ENERGY`], the columns the energy reads need, so those
//!   decode only them) and the chart figures ([`CHART`]), each a `u32` byte length and then:
//!   per column one byte (0: every interval has a value, 1: none has, 2: a 12-byte mask of the
//!   intervals that have one follows), then one pco chunk of the present values of all its
//!   columns, column after column (nothing when there are none).
//!
//! Decoding untrusted bytes never panics: anything that does not add up is
//! [`super::Error::Corrupt`].

use super::rollup::{Interval, Rollup, COLUMN_COUNT};
use super::series::{Agg, Stat};
use super::{Error, Result};
use std::ops::Range;

/// The blob format written now.
pub const VERSION: u8 = 1;
/// A day is sealed once its end is this long past: records of the last minutes of a day that
/// arrive a little late (a controller's backlog after a short outage) still land in rows.
pub const GRACE_S: i64 = 3_600;
/// Seconds per UTC day.
pub const DAY_S: i64 = 86_400;
/// Quarter hours per day.
pub const SLOTS: usize = 96;
/// Rows sealed per transaction: bounds how long one pass holds the writer.
pub const SEAL_BATCH_ROWS: i64 = 20_000;
/// The value columns of [`Interval::values`] the energy reads need (energy count .. power count).
pub const ENERGY: Range<usize> = 2..9;
/// The chart-only value columns (records .. heater on).
pub const CHART: Range<usize> = 9..COLUMN_COUNT;

const MASK_BYTES: usize = SLOTS / 8;

/// Which groups of a blob to decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The energy figures only; the chart figures of the intervals are left empty.
    Energy,
    /// Everything.
    All,
}

/// The UTC day holding `time`.
pub fn day_of(time: i64) -> i64 {
    time - time.rem_euclid(DAY_S)
}

/// Rows starting before this are in closed days and may be sealed at `now`.
pub fn seal_before(now: i64) -> i64 {
    day_of(now - GRACE_S)
}

/// Rows and blobs of days before this are deleted at `now` when the 15-minute rollups are kept
/// `days` days (`None`: 0, keep everything). Counted from today's midnight, as the telemetry
/// retention is.
pub fn retention_horizon(now: i64, days: u32) -> Option<i64> {
    (days > 0).then(|| day_of(now) - i64::from(days) * DAY_S)
}

/// An interval from its [`Interval::values`]; a column that must not be NULL but is, or a
/// device id out of range, is a damaged row.
pub fn interval_from_values(v: &[Option<i64>; COLUMN_COUNT]) -> Result<Interval> {
    let need = |i: usize| v[i].ok_or_else(|| Error::Corrupt(format!("rollup column {i} is NULL")));
    let device = need(0)?;
    let rollup = Rollup {
        device_id: super::u32_col(device, "rollup device")?,
        start: need(1)?,
        energy_count: need(2)?,
        energy_min: v[3],
        energy_max: v[4],
        energy_first: v[5],
        energy_last: v[6],
        power_sum: need(7)?,
        power_count: need(8)?,
    };
    let stat = |i: usize, sum: i64, count: i64| Stat {
        sum,
        count,
        min: v[i],
        max: v[i + 1],
    };
    let chart = Agg {
        records: v[9].unwrap_or(0),
        power: stat(10, rollup.power_sum, rollup.power_count),
        energy_max: rollup.energy_max,
        water: Stat {
            sum: v[12].unwrap_or(0),
            count: v[13].unwrap_or(0),
            min: v[14],
            max: v[15],
        },
        air: Stat {
            sum: v[16].unwrap_or(0),
            count: v[17].unwrap_or(0),
            min: v[18],
            max: v[19],
        },
        relays: v[20].unwrap_or(0),
        pump_on: v[21].unwrap_or(0),
        heater_on: v[22].unwrap_or(0),
    };
    Ok(Interval { rollup, chart })
}

/// Merges `other` (the same device and interval) into `into` by the rules of
/// [`super::rollup`]'s upsert: counts and sums add, lowest/earliest keep the smaller,
/// highest/latest the larger.
pub fn merge_into(into: &mut Interval, other: &Interval) {
    let (a, b) = (into.values(), other.values());
    let mut out = a;
    for (i, (_, how)) in super::rollup::SPEC.iter().enumerate() {
        out[i] = match how {
            super::rollup::Merge::Key => a[i],
            super::rollup::Merge::Add => Some(a[i].unwrap_or(0) + b[i].unwrap_or(0)),
            super::rollup::Merge::Least => pick(a[i], b[i], i64::min),
            super::rollup::Merge::Greatest => pick(a[i], b[i], i64::max),
        };
    }
    // Both sides were whole intervals, so every NOT NULL column is set.
    if let Ok(merged) = interval_from_values(&out) {
        *into = merged;
    }
}

fn pick(a: Option<i64>, b: Option<i64>, f: fn(i64, i64) -> i64) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(f(a, b)),
        (a, b) => a.or(b),
    }
}

/// Merges `late` (rows, any order) into `sealed` (one blob's intervals, ordered by start): the
/// result is ordered by start, one interval per start.
pub fn merge_rows(sealed: &mut Vec<Interval>, late: &[Interval]) {
    for l in late {
        match sealed.binary_search_by_key(&l.rollup.start, |i| i.rollup.start) {
            Ok(at) => merge_into(&mut sealed[at], l),
            Err(at) => sealed.insert(at, *l),
        }
    }
}

fn corrupt(device: u32, day: i64, what: impl std::fmt::Display) -> Error {
    Error::Corrupt(format!(
        "sealed 15-minute rollups of device {device}, day {day}: {what}"
    ))
}

/// The blob of one device's intervals of the UTC day starting at `day` (each start inside it,
/// ordered, each once — as [`merge_rows`] leaves them).
pub fn encode(day: i64, intervals: &[Interval]) -> Result<Vec<u8>> {
    let device = intervals.first().map_or(0, |i| i.rollup.device_id);
    let mut slots = 0u128;
    for i in intervals {
        let offset = i.rollup.start - day;
        if !(0..DAY_S).contains(&offset) || offset % super::energy::INTERVAL_S != 0 {
            return Err(corrupt(device, day, format!("interval {}", i.rollup.start)));
        }
        let bit = 1u128 << (offset / super::energy::INTERVAL_S);
        if slots & bit != 0 {
            return Err(corrupt(device, day, "an interval twice"));
        }
        slots |= bit;
    }
    let values: Vec<[Option<i64>; COLUMN_COUNT]> = intervals.iter().map(Interval::values).collect();
    let mut out = Vec::with_capacity(64 + intervals.len() * 8);
    out.push(VERSION);
    out.extend_from_slice(&slots.to_le_bytes()[..MASK_BYTES]);
    for group in [ENERGY, CHART] {
        let body = encode_group(&values, group).map_err(|e| corrupt(device, day, e))?;
        let len = u32::try_from(body.len()).map_err(|_| corrupt(device, day, "group too long"))?;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&body);
    }
    Ok(out)
}

fn encode_group(
    values: &[[Option<i64>; COLUMN_COUNT]],
    group: Range<usize>,
) -> std::result::Result<Vec<u8>, pco::errors::PcoError> {
    let mut body = Vec::new();
    let mut present = Vec::with_capacity(values.len() * group.len());
    for c in group {
        let mut mask = 0u128;
        for (i, v) in values.iter().enumerate() {
            if let Some(x) = v[c] {
                mask |= 1 << i;
                present.push(x);
            }
        }
        let all = if values.len() == 128 {
            u128::MAX
        } else {
            (1u128 << values.len()) - 1
        };
        if mask == all {
            body.push(0);
        } else if mask == 0 {
            body.push(1);
        } else {
            body.push(2);
            body.extend_from_slice(&mask.to_le_bytes()[..MASK_BYTES]);
        }
    }
    if !present.is_empty() {
        body.extend(pco::standalone::simple_compress(
            &present,
            &pco::ChunkConfig::default(),
        )?);
    }
    Ok(body)
}

fn mask_of(bytes: &[u8]) -> u128 {
    let mut b = [0u8; 16];
    b[..MASK_BYTES].copy_from_slice(&bytes[..MASK_BYTES]);
    u128::from_le_bytes(b)
}

/// Splits `n` bytes off the front of `rest`.
fn take<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if rest.len() < n {
        return None;
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Some(head)
}

/// The intervals of a blob of device `device`'s day `day`, ordered by start; with
/// [`Part::Energy`] their chart figures are left empty.
pub fn decode(device: u32, day: i64, blob: &[u8], part: Part) -> Result<Vec<Interval>> {
    let err = |what: &str| corrupt(device, day, what);
    let mut rest = blob;
    let head = take(&mut rest, 1 + MASK_BYTES).ok_or_else(|| err("too short"))?;
    if head[0] != VERSION {
        return Err(err(&format!("unknown format version {}", head[0])));
    }
    let slots = mask_of(&head[1..]);
    let starts: Vec<i64> = (0..SLOTS)
        .filter(|i| slots & (1 << i) != 0)
        .map(|i| day + i as i64 * super::energy::INTERVAL_S)
        .collect();
    let mut values = vec![[None; COLUMN_COUNT]; starts.len()];
    for (v, &start) in values.iter_mut().zip(&starts) {
        v[0] = Some(i64::from(device));
        v[1] = Some(start);
    }
    let groups: &[Range<usize>] = match part {
        Part::Energy => &[ENERGY],
        Part::All => &[ENERGY, CHART],
    };
    for group in groups {
        let len = take(&mut rest, 4).ok_or_else(|| err("group length missing"))?;
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let body = take(&mut rest, len).ok_or_else(|| err("group cut short"))?;
        decode_group(body, group.clone(), &mut values).map_err(|e| corrupt(device, day, e))?;
    }
    if part == Part::All && !rest.is_empty() {
        return Err(err("bytes after the last group"));
    }
    let mut out = Vec::with_capacity(values.len());
    for v in &values {
        let mut i = interval_from_values(v).map_err(|_| err("a required column is missing"))?;
        if part == Part::Energy {
            i.chart = Agg {
                power: Stat {
                    sum: i.rollup.power_sum,
                    count: i.rollup.power_count,
                    ..Stat::default()
                },
                energy_max: i.rollup.energy_max,
                ..Agg::default()
            };
        }
        out.push(i);
    }
    Ok(out)
}

fn decode_group(
    mut body: &[u8],
    group: Range<usize>,
    values: &mut [[Option<i64>; COLUMN_COUNT]],
) -> std::result::Result<(), String> {
    let n = values.len();
    let all = if n == 128 {
        u128::MAX
    } else {
        (1u128 << n) - 1
    };
    let mut masks = Vec::with_capacity(group.len());
    for _ in group.clone() {
        let kind = take(&mut body, 1).ok_or("column kind missing")?[0];
        let mask = match kind {
            0 => all,
            1 => 0,
            2 => mask_of(take(&mut body, MASK_BYTES).ok_or("column mask cut short")?),
            k => return Err(format!("unknown column kind {k}")),
        };
        if mask & !all != 0 {
            return Err("a column mask names an interval the day does not have".into());
        }
        masks.push(mask);
    }
    let total: usize = masks.iter().map(|m| m.count_ones() as usize).sum();
    let mut present = vec![0i64; total];
    if total > 0 {
        let progress = pco::standalone::simple_decompress_into(body, &mut present)
            .map_err(|e| format!("pco: {e}"))?;
        if progress.n_processed != total || !progress.finished {
            return Err(format!(
                "{} values where the masks say {total}",
                progress.n_processed
            ));
        }
    } else if !body.is_empty() {
        return Err("values where the masks say none".into());
    }
    let mut next = present.into_iter();
    for (c, mask) in group.zip(masks) {
        for (i, v) in values.iter_mut().enumerate() {
            if mask & (1 << i) != 0 {
                v[c] = next.next();
            }
        }
    }
    Ok(())
}

/// One device's sealed days and late rows over a range, merged: the intervals ordered by start,
/// one per start. `blobs` are `(day, blob)`; `rows` are the rows of `telemetry_rollup`.
pub fn merged(
    device: u32,
    blobs: &[(i64, Vec<u8>)],
    mut rows: Vec<Interval>,
    part: Part,
) -> Result<Vec<Interval>> {
    if blobs.is_empty() {
        rows.sort_by_key(|i| i.rollup.start);
        return Ok(rows);
    }
    let mut out = Vec::with_capacity(blobs.len() * SLOTS + rows.len());
    for (day, blob) in blobs {
        out.extend(decode(device, *day, blob, part)?);
    }
    out.sort_by_key(|i| i.rollup.start);
    rows.sort_by_key(|i| i.rollup.start);
    merge_rows(&mut out, &rows);
    Ok(out)
}

/// The rows of device `$1` with `$2 <= start < $3`, every column of [`super::rollup::columns`].
pub fn rows_sql() -> String {
    format!(
        "SELECT {} FROM telemetry_rollup WHERE device_id = $1 AND start >= $2 AND start < $3 \
         ORDER BY start",
        super::rollup::columns()
    )
}

/// The blobs `(day, data)` of device `$1` with `$2 <= day < $3`.
pub const BLOBS: &str = "SELECT day, data FROM telemetry_rollup_sealed
WHERE device_id = $1 AND day >= $2 AND day < $3 ORDER BY day";

/// Takes (deletes and returns) at most `$2` rows starting before `$1`, every column.
pub fn take_sql() -> String {
    let c = super::rollup::columns();
    format!(
        "DELETE FROM telemetry_rollup WHERE (device_id, start) IN (
             SELECT device_id, start FROM telemetry_rollup WHERE start < $1
             ORDER BY device_id, start LIMIT $2)
         RETURNING {c}"
    )
}

/// The blob of device `$1`, day `$2`.
pub const BLOB: &str = "SELECT data FROM telemetry_rollup_sealed WHERE device_id = $1 AND day = $2";

/// Writes the blob `$3` of device `$1`, day `$2`.
pub const PUT_BLOB: &str = "INSERT INTO telemetry_rollup_sealed (device_id, day, data)
VALUES ($1, $2, $3) ON CONFLICT (device_id, day) DO UPDATE SET data = excluded.data";

/// Retention: the blobs, then the rows, of days before `$1`.
pub const EXPIRE: [&str; 2] = [
    "DELETE FROM telemetry_rollup_sealed WHERE day < $1",
    "DELETE FROM telemetry_rollup WHERE start < $1",
];

/// The taken rows grouped per (device, day), each group ordered by start.
pub fn by_day(rows: Vec<Interval>) -> std::collections::BTreeMap<(u32, i64), Vec<Interval>> {
    let mut out: std::collections::BTreeMap<(u32, i64), Vec<Interval>> = Default::default();
    for r in rows {
        out.entry((r.rollup.device_id, day_of(r.rollup.start)))
            .or_default()
            .push(r);
    }
    for v in out.values_mut() {
        v.sort_by_key(|i| i.rollup.start);
    }
    out
}

/// The new blob of a day: the old one (if the day was sealed before) with `rows` merged in.
pub fn reseal(device: u32, day: i64, old: Option<&[u8]>, rows: &[Interval]) -> Result<Vec<u8>> {
    let mut sealed = match old {
        Some(b) => decode(device, day, b, Part::All)?,
        None => Vec::new(),
    };
    merge_rows(&mut sealed, rows);
    encode(day, &sealed)
}

/// The range of 15-minute rollups the energy of `[from, to)` reads: the range and, on each
/// side, the window in which [`super::rollup::BEFORE`]/[`super::rollup::AFTER`] look for the
/// reading next to it.
pub fn energy_window(from: i64, to: i64) -> (i64, i64) {
    (
        from - super::energy::MAX_GAP_S - super::energy::INTERVAL_S,
        to + super::energy::MAX_GAP_S,
    )
}

/// The days whose blobs hold intervals of `[a, b)`: `day >= first && day < end`.
pub fn days_of(a: i64, b: i64) -> (i64, i64) {
    (day_of(a), b)
}

/// The meter data of `[from, to)` from a device's merged intervals over [`energy_window`]
/// (ordered by start): the same figures as the row queries [`super::rollup::INTERVALS`],
/// `BEFORE` and `AFTER` give, picked here because part of them may be sealed.
pub fn meter_data(intervals: &[Interval], from: i64, to: i64) -> super::energy::MeterData {
    use super::energy::{INTERVAL_S, MAX_GAP_S};
    let lo = intervals.partition_point(|i| i.rollup.start < from);
    let hi = intervals.partition_point(|i| i.rollup.start < to);
    let rows: Vec<_> = intervals[lo..hi].iter().map(|i| i.rollup.agg()).collect();
    let before = intervals[..lo]
        .iter()
        .rev()
        .take_while(|i| i.rollup.start > from - MAX_GAP_S - INTERVAL_S)
        .find(|i| i.rollup.energy_count > 0)
        .map(|i| (i.rollup.start, i.rollup.energy_last));
    let after = intervals[hi..]
        .iter()
        .take_while(|i| i.rollup.start < to + MAX_GAP_S)
        .find(|i| i.rollup.energy_count > 0)
        .map(|i| (i.rollup.start, i.rollup.energy_first));
    super::energy::assemble(
        &rows,
        super::rollup::reading_before(from, before),
        super::rollup::reading_after(to, after),
        from,
        to,
    )
}

/// The chart parts `(bucket start, Agg)` of buckets of `step` seconds over merged intervals.
pub fn chart_parts(intervals: &[Interval], step: i64) -> impl Iterator<Item = (i64, Agg)> + '_ {
    intervals.iter().map(move |i| {
        let s = i.rollup.start;
        (s - s.rem_euclid(step), i.chart)
    })
}

/// Sealing and retention of the 15-minute rollups, one implementation per backend.
pub trait QuarterStore {
    /// Seals the rows of closed days at `now` into their days' blobs (module documentation);
    /// returns how many rows were sealed.
    fn seal_quarter_rollups(&self, now: i64) -> Result<u64>;
    /// Deletes the 15-minute rollups (rows and blobs) of days older than `days` at `now`
    /// (0: keep everything).
    fn expire_quarter_rollups(&self, now: i64, days: u32) -> Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::rollup::{rollups_of, Resolution};
    use crate::storage::TelemetryRow;
    use proptest::prelude::*;
    use tek_proto::message::telemetry::channel;

    fn rec(time: i64, seed: i64) -> TelemetryRow {
        let mut values = [0; channel::COUNT];
        let mut channels = 0u8;
        for (ch, v) in [
            (channel::POWER_W, 500 + seed % 300),
            (channel::ENERGY_WH, 10_000 + time / 60),
            (channel::WATER_TEMP_CC, 2_500 + seed % 17),
            (channel::AIR_TEMP_CC, 1_800 - seed % 23),
            (channel::RELAYS, seed % 4),
        ] {
            // Leave some channels out of some records: "no value" must stay NULL.
            if (seed + i64::from(ch)) % 7 != 0 {
                channels |= 1 << ch;
                values[usize::from(ch)] = v as i32;
            }
        }
        TelemetryRow {
            device_id: 3,
            boot: 1,
            seq: time as u32,
            time,
            channels,
            values,
        }
    }

    fn day_of_records(day: i64, every: i64) -> Vec<Interval> {
        let rows: Vec<_> = (0..DAY_S / every)
            .map(|k| rec(day + k * every, k * 31 + 5))
            .collect();
        rollups_of(&rows, Resolution::Quarter)
    }

    #[test]
    fn a_day_round_trips_and_is_small() {
        let day = 20_000 * DAY_S;
        let all = day_of_records(day, 60);
        assert_eq!(all.len(), SLOTS);
        let blob = encode(day, &all).unwrap();
        assert_eq!(decode(3, day, &blob, Part::All).unwrap(), all);
        let energy = decode(3, day, &blob, Part::Energy).unwrap();
        for (e, a) in energy.iter().zip(&all) {
            assert_eq!(e.rollup, a.rollup);
        }
        // 1,440 records: well under 2 B per record (the rows took about 5.6).
        assert!(blob.len() < 2 * 1440, "{} bytes", blob.len());
        // A day with gaps (every 40 minutes: some quarter hours have no interval) and nothing.
        let sparse = day_of_records(day, 2_400);
        assert!(sparse.len() < SLOTS);
        let blob = encode(day, &sparse).unwrap();
        assert_eq!(decode(3, day, &blob, Part::All).unwrap(), sparse);
        let blob = encode(day, &[]).unwrap();
        assert_eq!(decode(3, day, &blob, Part::All).unwrap(), vec![]);
    }

    #[test]
    fn late_rows_merge_like_the_upsert() {
        let day = 20_000 * DAY_S;
        let recs: Vec<_> = (0..1440).map(|k| rec(day + k * 60, k)).collect();
        let whole = rollups_of(&recs, Resolution::Quarter);
        // Seal the day without every third record, then merge those as late rows.
        let (early, late): (Vec<_>, Vec<_>) = recs.iter().partition(|r| (r.time / 60) % 3 != 0);
        let mut sealed = rollups_of(&early, Resolution::Quarter);
        let blob = encode(day, &sealed).unwrap();
        sealed = decode(3, day, &blob, Part::All).unwrap();
        merge_rows(&mut sealed, &rollups_of(&late, Resolution::Quarter));
        assert_eq!(sealed, whole);
        let merged = merged(
            3,
            &[(day, blob)],
            rollups_of(&late, Resolution::Quarter),
            Part::All,
        )
        .unwrap();
        assert_eq!(merged, whole);
    }

    #[test]
    fn bad_blobs_are_clear_errors() {
        let day = 20_000 * DAY_S;
        let blob = encode(day, &day_of_records(day, 60)).unwrap();
        for bad in [
            vec![],
            vec![2; 40],
            blob[..blob.len() / 2].to_vec(),
            [blob.as_slice(), &[0]].concat(),
        ] {
            let e = decode(3, day, &bad, Part::All).unwrap_err();
            assert!(e.to_string().contains("device 3"), "{e}");
        }
        let other_day = encode(day, &day_of_records(day + DAY_S, 60));
        assert!(other_day.is_err());
        assert_eq!(seal_before(day + DAY_S + GRACE_S), day + DAY_S);
        assert_eq!(seal_before(day + DAY_S + GRACE_S - 1), day);
        assert_eq!(retention_horizon(day + 5, 0), None);
        assert_eq!(retention_horizon(day + 5, 2), Some(day - 2 * DAY_S));
    }

    proptest! {
        #[test]
        fn any_bytes_decode_to_ok_or_err(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = decode(1, 0, &bytes, Part::All);
            let _ = decode(1, 0, &bytes, Part::Energy);
        }

        #[test]
        fn a_valid_header_with_any_body_decodes_to_ok_or_err(
            slots in any::<u128>(),
            body in proptest::collection::vec(any::<u8>(), 0..400),
        ) {
            let mut b = vec![VERSION];
            b.extend_from_slice(&slots.to_le_bytes()[..MASK_BYTES]);
            b.extend_from_slice(&(body.len() as u32 / 2).to_le_bytes());
            b.extend_from_slice(&body);
            let _ = decode(1, 0, &b, Part::All);
        }

        #[test]
        fn a_flipped_byte_of_a_real_blob_decodes_to_ok_or_err(at in 0usize..4000, bit in 0u8..8) {
            let day = 20_000 * DAY_S;
            let mut blob = encode(day, &day_of_records(day, 60)).unwrap();
            let at = at % blob.len();
            blob[at] ^= 1 << bit;
            let _ = decode(3, day, &blob, Part::All);
        }
    }
}
