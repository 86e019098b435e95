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
//! * The energy reads ([`meter_data_sealed`]) go on from the walk an earlier request made over
//!   the same sealed days ([`memo`]), checked input for input, so a site's year decodes only
//!   the days sealed since.
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

mod memo;

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

/// The energy figures of an interval from its [`ENERGY`] columns (in [`Interval::values`]
/// order); `None` when a column that must not be NULL is.
fn rollup_from_energy(
    device_id: u32,
    start: i64,
    v: &[Option<i64>; ENERGY.end - ENERGY.start],
) -> Option<Rollup> {
    Some(Rollup {
        device_id,
        start,
        energy_count: v[0]?,
        energy_min: v[1],
        energy_max: v[2],
        energy_first: v[3],
        energy_last: v[4],
        power_sum: v[5]?,
        power_count: v[6]?,
    })
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

/// A blob's slot mask, once its version is checked, and the bytes after them; what is wrong
/// otherwise.
fn opened(blob: &[u8]) -> std::result::Result<(u128, &[u8]), String> {
    let mut rest = blob;
    let head = take(&mut rest, 1 + MASK_BYTES).ok_or("too short")?;
    if head[0] != VERSION {
        return Err(format!("unknown format version {}", head[0]));
    }
    Ok((mask_of(&head[1..]), rest))
}

/// The intervals of a blob of device `device`'s day `day`, ordered by start; with
/// [`Part::Energy`] their chart figures are left empty.
pub fn decode(device: u32, day: i64, blob: &[u8], part: Part) -> Result<Vec<Interval>> {
    let err = |what: &str| corrupt(device, day, what);
    let (slots, mut rest) = opened(blob).map_err(|what| err(&what))?;
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
    body: &[u8],
    group: Range<usize>,
    values: &mut [[Option<i64>; COLUMN_COUNT]],
) -> std::result::Result<(), String> {
    let n = values.len();
    read_group(body, group.len(), n, &mut Vec::new(), |c, i, x| {
        values[i][group.start + c] = Some(x)
    })
}

/// Reads the `columns` columns of a group body of `n` intervals: calls `put(column, interval,
/// value)` for every value present, column after column, each in interval order. `present` is
/// scratch space for the decompressed values, reused by a caller decoding many days.
fn read_group(
    mut body: &[u8],
    columns: usize,
    n: usize,
    present: &mut Vec<i64>,
    mut put: impl FnMut(usize, usize, i64),
) -> std::result::Result<(), String> {
    let all = if n >= 128 {
        u128::MAX
    } else {
        (1u128 << n) - 1
    };
    let mut masks = [0u128; COLUMN_COUNT];
    let masks = masks
        .get_mut(..columns)
        .ok_or("more columns than an interval has")?;
    for m in masks.iter_mut() {
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
        *m = mask;
    }
    let total: usize = masks.iter().map(|m| m.count_ones() as usize).sum();
    present.clear();
    present.resize(total, 0);
    if total > 0 {
        let progress = pco::standalone::simple_decompress_into(body, present)
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
    let mut next = present.iter();
    for (c, &mask) in masks.iter().enumerate() {
        // The set bits in order: each a present value of the column.
        let mut bits = mask;
        while bits != 0 {
            let i = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            if let Some(&x) = next.next() {
                put(c, i, x);
            }
        }
    }
    Ok(())
}

/// Columns of the energy group.
const ENERGY_COLUMNS: usize = ENERGY.end - ENERGY.start;

/// Space [`meter_data_sealed`] reuses from one sealed day to the next.
#[derive(Default)]
struct DayScratch {
    present: Vec<i64>,
    columns: Vec<[Option<i64>; ENERGY_COLUMNS]>,
    day: Vec<Rollup>,
}

/// The energy figures of a blob into `scratch.day` (ordered by start): the `rollup`s that
/// [`decode`] with [`Part::Energy`] gives, and an error where it gives one, without building
/// the intervals' 23 columns and chart figures.
fn decode_energy(device: u32, day: i64, blob: &[u8], scratch: &mut DayScratch) -> Result<()> {
    let err = |what: &str| corrupt(device, day, what);
    let (slots, mut rest) = opened(blob).map_err(|what| err(&what))?;
    let n = slots.count_ones() as usize;
    let DayScratch {
        present,
        columns,
        day: out,
    } = scratch;
    columns.clear();
    columns.resize(n, [None; ENERGY_COLUMNS]);
    let len = take(&mut rest, 4).ok_or_else(|| err("group length missing"))?;
    let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
    let body = take(&mut rest, len).ok_or_else(|| err("group cut short"))?;
    read_group(body, ENERGY_COLUMNS, n, present, |c, i, x| {
        columns[i][c] = Some(x)
    })
    .map_err(|e| corrupt(device, day, e))?;
    out.clear();
    let mut bits = slots;
    for v in columns.iter() {
        let k = bits.trailing_zeros() as i64;
        bits &= bits - 1;
        let start = day + k * super::energy::INTERVAL_S;
        out.push(
            rollup_from_energy(device, start, v)
                .ok_or_else(|| err("a required column is missing"))?,
        );
    }
    Ok(())
}

/// Merges the energy figures `other` (the same device and interval) into `into`, by
/// [`merge_into`]'s rules (late rows are few: the whole interval is merged).
fn merge_energy(into: &mut Rollup, other: &Rollup) {
    let mut i = Interval {
        rollup: *into,
        chart: Agg::default(),
    };
    merge_into(
        &mut i,
        &Interval {
            rollup: *other,
            chart: Agg::default(),
        },
    );
    *into = i.rollup;
}

/// What [`meter_data`] reads of a device's intervals, taken one interval at a time in start
/// order: the reading before the range, the intervals inside it (assembled as they come), the
/// reading after it.
#[derive(Clone)]
struct EnergyWalk {
    from: i64,
    to: i64,
    /// The window [`energy_window`] reads.
    window: (i64, i64),
    /// The last interval with readings in the window before `from`: `(start, latest)`.
    before: Option<(i64, Option<i64>)>,
    /// Started at the first interval of `[from, to)`, when `before` is known.
    assembly: Option<super::energy::Assembly>,
    /// The first interval with readings at or after `to`: `(start, earliest)`.
    after: Option<(i64, Option<i64>)>,
}

impl EnergyWalk {
    fn new(from: i64, to: i64) -> EnergyWalk {
        EnergyWalk {
            from,
            to,
            window: energy_window(from, to),
            before: None,
            assembly: None,
            after: None,
        }
    }

    /// The next interval (starts increasing; one outside the window is skipped).
    fn visit(&mut self, r: &Rollup) {
        let (a, b) = self.window;
        if r.start < a || r.start >= b {
            return;
        }
        if r.start < self.from {
            // As [`meter_data`]'s walk back: the newest with readings, after the window's start.
            if r.start > a && r.energy_count > 0 {
                self.before = Some((r.start, r.energy_last));
            }
        } else if r.start < self.to {
            let (from, to, before) = (self.from, self.to, self.before);
            self.assembly
                .get_or_insert_with(|| {
                    super::energy::Assembly::new(
                        super::rollup::reading_before(from, before),
                        from,
                        to,
                    )
                })
                .push(&r.agg());
        } else if self.after.is_none() && r.energy_count > 0 {
            self.after = Some((r.start, r.energy_first));
        }
    }

    /// Rows of days without a blob (ordered): two of one start merge, as [`merge_rows`]
    /// merges them.
    fn visit_rows(&mut self, rows: &[Rollup]) {
        let mut rows = rows.iter().peekable();
        while let Some(&first) = rows.next() {
            let mut x = first;
            while let Some(y) = rows.next_if(|y| y.start == x.start) {
                merge_energy(&mut x, y);
            }
            self.visit(&x);
        }
    }

    /// The meter data of what it visited, finished in place: the data is lent, and
    /// [`EnergyWalk::rewind`] to a mark taken before undoes the finish.
    fn finish_in_place(&mut self) -> &super::energy::MeterData {
        let (from, to, before) = (self.from, self.to, self.before);
        let after = super::rollup::reading_after(to, self.after);
        self.assembly
            .get_or_insert_with(|| {
                super::energy::Assembly::new(super::rollup::reading_before(from, before), from, to)
            })
            .finish_in_place(after)
    }

    /// Where the walk is now.
    fn mark(&self) -> WalkMark {
        WalkMark {
            before: self.before,
            after: self.after,
            assembly: self.assembly.as_ref().map(super::energy::Assembly::mark),
        }
    }

    /// Back to `mark` (taken from this walk): what was visited and finished since is undone.
    fn rewind(&mut self, mark: WalkMark) {
        self.before = mark.before;
        self.after = mark.after;
        match (mark.assembly, &mut self.assembly) {
            (Some(m), Some(a)) => a.rewind(m),
            // Started since the mark: it was not there.
            (None, a) => *a = None,
            // An assembly is never dropped once started.
            (Some(_), None) => {}
        }
    }
}

/// An [`EnergyWalk`]'s state at one point ([`EnergyWalk::mark`]).
struct WalkMark {
    before: Option<(i64, Option<i64>)>,
    after: Option<(i64, Option<i64>)>,
    assembly: Option<super::energy::AssemblyMark>,
}

/// The meter data of `[from, to)` from a device's sealed days `blobs` (`(day, blob)`) and rows
/// `rows` (the energy figures of `telemetry_rollup`) over [`energy_window`]: what [`meter_data`]
/// gives over [`merged`] with [`Part::Energy`], figure for figure, and the same errors, but
/// decoded one day at a time into a day's worth of energy figures and assembled as they come —
/// no intervals of a whole year (about 7 MB per device) are built, copied and sorted first.
/// The rows are merged into their day as [`merged`] merges them.
pub fn meter_data_sealed(
    device: u32,
    blobs: &[(i64, Vec<u8>)],
    rows: &[Rollup],
    from: i64,
    to: i64,
) -> Result<super::energy::MeterData> {
    meter_data_sealed_with(
        device,
        blobs,
        rows,
        from,
        to,
        super::energy::MeterData::clone,
    )
}

/// [`meter_data_sealed`], the data lent to `f` (whose answer is returned) instead of given
/// away: the walk remembered for the device ([`memo`]) is finished in place and put back as it
/// was, not copied (a device-year is 1.4 MB).
pub fn meter_data_sealed_with<T>(
    device: u32,
    blobs: &[(i64, Vec<u8>)],
    rows: &[Rollup],
    from: i64,
    to: i64,
    f: impl FnOnce(&super::energy::MeterData) -> T,
) -> Result<T> {
    let mut days: Vec<&(i64, Vec<u8>)> = blobs.iter().collect();
    days.sort_by_key(|b| b.0);
    if days.iter().any(|(d, _)| d.rem_euclid(DAY_S) != 0)
        || days.windows(2).any(|w| w[0].0 == w[1].0)
    {
        // Days off midnight, or twice, are never written by sealing; their intervals could
        // interleave, which the whole merge sorts out.
        let rows = rows
            .iter()
            .map(|&rollup| Interval {
                rollup,
                chart: Agg::default(),
            })
            .collect();
        let (a, b) = energy_window(from, to);
        let mut all = merged(device, blobs, rows, Part::Energy)?;
        all.retain(|i| i.rollup.start >= a && i.rollup.start < b);
        return Ok(f(&meter_data(&all, from, to)));
    }
    let mut rows = rows.to_vec();
    rows.sort_by_key(|r| r.start);
    if days.is_empty() {
        // As [`merged`] without blobs: the rows as they are, ordered.
        let mut walk = EnergyWalk::new(from, to);
        for r in &rows {
            walk.visit(r);
        }
        return Ok(f(walk.finish_in_place()));
    }
    // Go on from the walk of an earlier request over the same sealed days, if the inputs begin
    // with exactly what it walked ([`memo`]: never stale, as it compares the inputs). Taken out
    // while in use, put back after.
    let key = (device, from, to);
    let (mut checkpoint, first_day, mut next) = memo::take(key)
        .and_then(|c| {
            let (k, n) = c.resumes(&days, &rows)?;
            Some((c, k, n))
        })
        .unwrap_or_else(|| (memo::Checkpoint::new(EnergyWalk::new(from, to)), 0, 0));
    let walked_rows = next;
    let walk = &mut checkpoint.walk;
    let mut scratch = DayScratch::default();
    for &&(day, ref blob) in &days[first_day..] {
        // Rows of days without a blob, before this day.
        let end = next + rows[next..].partition_point(|r| r.start < day);
        walk.visit_rows(&rows[next..end]);
        next = end;
        decode_energy(device, day, blob, &mut scratch)?;
        let end = next + rows[next..].partition_point(|r| r.start < day + DAY_S);
        for l in &rows[next..end] {
            match scratch.day.binary_search_by_key(&l.start, |i| i.start) {
                Ok(at) => merge_energy(&mut scratch.day[at], l),
                Err(at) => scratch.day.insert(at, *l),
            }
        }
        next = end;
        for x in &scratch.day {
            walk.visit(x);
        }
    }
    // The rows after the last sealed day (the open days), then the end: lent to `f`, then
    // undone, so the walk stays the one of the sealed days.
    let mark = walk.mark();
    walk.visit_rows(&rows[next..]);
    let out = f(walk.finish_in_place());
    walk.rewind(mark);
    // Remembered with the inputs walked up to the end of the last day.
    if checkpoint.walked(&days[first_day..], &rows[walked_rows..next]) {
        memo::put(key, checkpoint);
    }
    Ok(out)
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

/// Sealed days as [`BLOBS`] reads them: `(day, data)`.
pub type DayBlobs = Vec<(i64, Vec<u8>)>;

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

    /// A device's records over `DAYS` days from `day0` as the strategy below draws them:
    /// `(offset in seconds, energy present, step, reset, power)`, ordered by offset; the
    /// counter rises by the steps and sometimes restarts from 0 (a meter replaced).
    fn drawn_records(
        device: u32,
        day0: i64,
        drawn: &[(i64, bool, i64, bool, Option<i32>)],
    ) -> Vec<TelemetryRow> {
        let mut counter = 50_000i64;
        drawn
            .iter()
            .enumerate()
            .map(|(k, &(offset, has_energy, step, reset, power))| {
                counter = if reset { step } else { counter + step };
                let mut values = [0; channel::COUNT];
                let mut channels = 0u8;
                if has_energy {
                    channels |= 1 << channel::ENERGY_WH;
                    values[usize::from(channel::ENERGY_WH)] = counter as i32;
                }
                if let Some(p) = power {
                    channels |= 1 << channel::POWER_W;
                    values[usize::from(channel::POWER_W)] = p;
                }
                TelemetryRow {
                    device_id: device,
                    boot: 1,
                    seq: k as u32,
                    time: day0 + offset,
                    channels,
                    values,
                }
            })
            .collect()
    }

    const DAYS: i64 = 10;

    /// The blobs and rows of `records` (from `day0`, over [`DAYS`] days) when day `d` is
    /// `sealing[d]`: 0 sealed whole, 1 sealed but every third record arrived late (a row
    /// beside the blob), 2 not sealed.
    fn sealed_inputs(
        day0: i64,
        records: &[TelemetryRow],
        sealing: &[u8],
    ) -> (DayBlobs, Vec<Interval>) {
        let (mut sealed, mut late) = (Vec::new(), Vec::new());
        for (k, r) in records.iter().enumerate() {
            match sealing[((r.time - day0) / DAY_S) as usize] {
                0 => sealed.push(*r),
                1 if k % 3 != 0 => sealed.push(*r),
                _ => late.push(*r),
            }
        }
        let mut blobs = Vec::new();
        for d in 0..DAYS {
            let day = day0 + d * DAY_S;
            let of_day: Vec<_> = sealed
                .iter()
                .filter(|r| day_of(r.time) == day)
                .copied()
                .collect();
            if sealing[d as usize] != 2 {
                blobs.push((
                    day,
                    encode(day, &rollups_of(&of_day, Resolution::Quarter)).unwrap(),
                ));
            }
        }
        (blobs, rollups_of(&late, Resolution::Quarter))
    }

    /// A day sealed again with a late record changes the energy at once, though the walk over
    /// the days before was remembered; so does a late row beside a sealed day, and a day sealed
    /// after the remembered ones is walked on from there.
    #[test]
    fn a_day_sealed_again_with_a_late_record_changes_the_remembered_energy() {
        let device = 4_999_001;
        let day0 = 20_100 * DAY_S;
        let days = 4;
        let mut records: Vec<TelemetryRow> = (0..days * 96)
            .map(|k| {
                let mut r = rec(day0 + k * 900 + 60, k);
                r.device_id = device;
                r.channels |= 1 << channel::ENERGY_WH;
                r.values[usize::from(channel::ENERGY_WH)] = (10_000 + k * 7) as i32;
                r
            })
            .collect();
        let (from, to) = (day0, day0 + days * DAY_S);
        let seal = |records: &[TelemetryRow], upto: i64| -> DayBlobs {
            (0..upto)
                .map(|d| {
                    let day = day0 + d * DAY_S;
                    let of_day: Vec<_> = records
                        .iter()
                        .filter(|r| day_of(r.time) == day)
                        .copied()
                        .collect();
                    (
                        day,
                        encode(day, &rollups_of(&of_day, Resolution::Quarter)).unwrap(),
                    )
                })
                .collect()
        };
        let reference = |blobs: &DayBlobs, rows: Vec<Interval>| {
            let (a, b) = energy_window(from, to);
            let mut all = merged(device, blobs, rows, Part::Energy).unwrap();
            all.retain(|i| i.rollup.start >= a && i.rollup.start < b);
            meter_data(&all, from, to)
        };
        let energy = |rows: &[Interval]| rows.iter().map(|i| i.rollup).collect::<Vec<_>>();
        let total = |m: &super::super::energy::MeterData| {
            m.intervals.iter().filter_map(|i| i.wh).sum::<i64>()
        };
        // Three days sealed, the fourth still rows: remembered, then asked again.
        let blobs = seal(&records, 3);
        let open: Vec<_> = records
            .iter()
            .filter(|r| r.time >= day0 + 3 * DAY_S)
            .copied()
            .collect();
        let rows = rollups_of(&open, Resolution::Quarter);
        let first = meter_data_sealed(device, &blobs, &energy(&rows), from, to).unwrap();
        assert_eq!(first, reference(&blobs, rows.clone()));
        assert_eq!(
            meter_data_sealed(device, &blobs, &energy(&rows), from, to).unwrap(),
            first
        );

        // A late record in day 1's last quarter hour (a reading 500 Wh above the others of
        // that quarter hour): first as a row beside the sealed day, then sealed into it.
        let mut late = rec(day0 + DAY_S + 95 * 900 + 600, 1);
        late.device_id = device;
        late.channels = 1 << channel::ENERGY_WH;
        late.values[usize::from(channel::ENERGY_WH)] = 10_000 + 191 * 7 + 500;
        let open: Vec<_> = records
            .iter()
            .filter(|r| r.time >= day0 + 3 * DAY_S)
            .copied()
            .collect();
        let mut with_row = rollups_of(&open, Resolution::Quarter);
        with_row.extend(rollups_of(&[late], Resolution::Quarter));
        let beside = meter_data_sealed(device, &blobs, &energy(&with_row), from, to).unwrap();
        assert_eq!(beside, reference(&blobs, with_row.clone()));
        assert_ne!(total(&beside), total(&first));

        records.push(late);
        records.sort_by_key(|r| r.time);
        let resealed = seal(&records, 3);
        assert_ne!(resealed[1], blobs[1]);
        let rows = rollups_of(&open, Resolution::Quarter);
        let again = meter_data_sealed(device, &resealed, &energy(&rows), from, to).unwrap();
        assert_eq!(again, reference(&resealed, rows.clone()));
        assert_eq!(again, beside);
        assert_ne!(again, first);

        // The fourth day sealed too: walked on from the three remembered.
        let all_sealed = seal(&records, 4);
        let last = meter_data_sealed(device, &all_sealed, &[], from, to).unwrap();
        assert_eq!(last, reference(&all_sealed, Vec::new()));
        assert_eq!(last, again);
        assert!(memo::counted() <= memo::BUDGET_BYTES);
    }

    proptest! {
        /// The meter data decoded day by day ([`meter_data_sealed`]) equals the reference
        /// path (every interval of the window merged first, [`merged`] + [`meter_data`]) on
        /// random records: readings and power missing from some records and intervals (no
        /// value, never zero), gaps of minutes to days, meter resets, days sealed whole,
        /// partly (late rows merged into their blob) or not at all, any range. Both also
        /// equal the answer from the rows alone, had nothing been sealed.
        #[test]
        fn decoding_sealed_days_into_meter_data_equals_merging_them_first(
            mut drawn in proptest::collection::vec(
                (
                    0i64..DAYS * DAY_S,
                    prop::bool::weighted(0.85),
                    0i64..400,
                    prop::bool::weighted(0.02),
                    prop::option::weighted(0.8, 0i32..5000),
                ),
                0..400,
            ),
            sealing in proptest::collection::vec(0u8..3, DAYS as usize),
            device in 1u32..5000,
            from in -800i64..1100,
            len in 0i64..1300,
        ) {
            drawn.sort_by_key(|d| d.0);
            let day0 = 20_000 * DAY_S;
            let records = drawn_records(device, day0, &drawn);
            let (blobs, rows) = sealed_inputs(day0, &records, &sealing);
            let energy_rows: Vec<Rollup> = rows.iter().map(|i| i.rollup).collect();
            let (from, to) = (day0 + from * 900, day0 + (from + len) * 900);
            let (a, b) = energy_window(from, to);

            let got = meter_data_sealed(device, &blobs, &energy_rows, from, to).unwrap();
            let mut all = merged(device, &blobs, rows, Part::Energy).unwrap();
            all.retain(|i| i.rollup.start >= a && i.rollup.start < b);
            prop_assert_eq!(&got, &meter_data(&all, from, to));
            let unsealed: Vec<Rollup> = rollups_of(&records, Resolution::Quarter)
                .iter()
                .map(|i| i.rollup)
                .collect();
            prop_assert_eq!(&got, &meter_data_sealed(device, &[], &unsealed, from, to).unwrap());
            // Missing power is no value, never a mean of zero readings.
            for i in &got.intervals {
                prop_assert!(i.wh.is_some() || i.power_w.is_some());
            }
        }

        /// The walk remembered between calls ([`memo`]) never gives other figures than a
        /// fresh one: the same device and range asked again and again while days are sealed
        /// (whole or partly, late rows beside their blob), sealed again or opened — each
        /// answer equals the reference path over that moment's inputs, with readings and power
        /// missing from some records (no value, never zero).
        #[test]
        fn a_remembered_walk_equals_a_fresh_one_while_days_are_sealed_again(
            mut drawn in proptest::collection::vec(
                (
                    0i64..DAYS * DAY_S,
                    prop::bool::weighted(0.85),
                    0i64..400,
                    prop::bool::weighted(0.02),
                    prop::option::weighted(0.8, 0i32..5000),
                ),
                0..300,
            ),
            steps in proptest::collection::vec((0..DAYS as usize, 0u8..3), 1..8),
            device in 1u32..5000,
            from in -800i64..1100,
            len in 0i64..1300,
        ) {
            drawn.sort_by_key(|d| d.0);
            let day0 = 20_000 * DAY_S;
            let records = drawn_records(device, day0, &drawn);
            let (from, to) = (day0 + from * 900, day0 + (from + len) * 900);
            let (a, b) = energy_window(from, to);
            let mut sealing = vec![2u8; DAYS as usize];
            for (day, how) in steps {
                sealing[day] = how;
                let (blobs, rows) = sealed_inputs(day0, &records, &sealing);
                let energy_rows: Vec<Rollup> = rows.iter().map(|i| i.rollup).collect();
                let mut all = merged(device, &blobs, rows, Part::Energy).unwrap();
                all.retain(|i| i.rollup.start >= a && i.rollup.start < b);
                let reference = meter_data(&all, from, to);
                // Twice: the second call goes on from what the first remembered.
                for _ in 0..2 {
                    let got = meter_data_sealed(device, &blobs, &energy_rows, from, to).unwrap();
                    prop_assert_eq!(&got, &reference);
                }
            }
            prop_assert!(memo::counted() <= memo::BUDGET_BYTES);
        }

        /// A damaged blob is an error on the day-by-day path exactly where the reference
        /// path errs.
        #[test]
        fn a_damaged_blob_errs_on_both_paths_alike(at in 0usize..4000, bit in 0u8..8, cut in 0usize..4000) {
            let day = 20_000 * DAY_S;
            let mut blob = encode(day, &day_of_records(day, 60)).unwrap();
            let at = at % blob.len();
            blob[at] ^= 1 << bit;
            if cut % 5 == 0 {
                blob.truncate(cut % (blob.len() + 1));
            }
            let blobs = [(day, blob)];
            let (from, to) = (day, day + DAY_S);
            let got = meter_data_sealed(3, &blobs, &[], from, to);
            let reference = merged(3, &blobs, Vec::new(), Part::Energy)
                .map(|all| meter_data(&all, from, to));
            match (got, reference) {
                (Ok(g), Ok(r)) => prop_assert_eq!(g, r),
                (Err(_), Err(_)) => {}
                (g, r) => prop_assert!(false, "day by day {:?}, reference {:?}", g, r),
            }
        }

        #[test]
        fn any_bytes_decode_to_ok_or_err(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = decode(1, 0, &bytes, Part::All);
            let _ = decode(1, 0, &bytes, Part::Energy);
            let _ = meter_data_sealed(1, &[(0, bytes)], &[], 0, DAY_S);
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
