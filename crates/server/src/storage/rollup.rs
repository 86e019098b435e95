//! Rollups of each device's records at two resolutions, kept as records are committed: 15
//! minutes (table `telemetry_rollup`, [`Resolution::Quarter`]) and one UTC day (table
//! `telemetry_rollup_day`, [`Resolution::Day`]). A row holds, per device and interval, the
//! figures the energy code needs ([`Rollup`]: number of meter readings, lowest, highest,
//! earliest and latest reading, sum and number of power readings) and those a chart bucket
//! needs ([`Agg`]: records, and per channel sum, count, lowest and highest; relay records and
//! how many had the pump or heater on). A site's year reads 35,040 rows per device for its
//! energy instead of 525,600 records, a one-year chart 365.
//!
//! One row layout for both channels' figures and both resolutions (schema version 10 widened
//! the energy rollups of version 8 and added the daily table): a record is rolled up once per
//! resolution in one row, not once per consumer, so the chart figures cost columns, not another
//! key and index; the energy reads ([`INTERVALS`], [`BEFORE`], [`AFTER`]) name their columns
//! and did not change. Days are UTC: the charts bucket by multiples of the step from the Unix
//! epoch ([`super::series`]), so a local day would not fit their buckets anyway; the energy
//! pages, which need the site's days, read the 15-minute rows.
//!
//! Both backends keep them in the transaction that stores the records: the rows the insert
//! reports as new (a retransmitted record the insert skips is not among them) are reduced here
//! ([`rollups_of`]) to one [`Interval`] per device and interval, and merged into each table with
//! [`upsert_sql`] (counts and sums add, lowest/highest/earliest/latest keep the extreme), so the
//! order records arrive in does not matter. Migration 9 rolls up the records of an older
//! database the same way in SQL (the days from the quarter hours). The reads are one text for
//! both backends (SQLite numbers `$1`, `$2`, ... in order of appearance, as PostgreSQL does).
//!
//! Earliest and latest are packed as `(time - start) * 2^32 + Wh + 2^31`
//! ([`super::energy::PACK_SHIFT`]): one `min`/`max` orders by time, and at the same second by
//! reading. (Before the rollups, the reading just before a range was picked at the same second
//! by boot and sequence number; a controller logs at most one record per second, so the two
//! rules differ only for two boots' records stamped in the same second.)

use super::energy::{unpack, IntervalAgg, INTERVAL_S, MAX_GAP_S, PACK_BIAS, PACK_SHIFT};
use super::schema::{render, Dialect};
use super::series::Agg;
use super::TelemetryRow;
use std::collections::BTreeMap;
use tek_proto::message::telemetry::channel;

/// The length of a rollup's interval, and its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Resolution {
    /// 15 minutes ([`INTERVAL_S`]), table `telemetry_rollup`.
    Quarter,
    /// One UTC day, table `telemetry_rollup_day`.
    Day,
}

impl Resolution {
    /// Both, finest first.
    pub const ALL: [Resolution; 2] = [Resolution::Quarter, Resolution::Day];

    /// Length of an interval, seconds.
    pub fn seconds(self) -> i64 {
        match self {
            Resolution::Quarter => INTERVAL_S,
            Resolution::Day => 86_400,
        }
    }

    /// The table holding the rollups.
    pub fn table(self) -> &'static str {
        match self {
            Resolution::Quarter => "telemetry_rollup",
            Resolution::Day => "telemetry_rollup_day",
        }
    }
}

/// One interval of one device as stored: the energy figures and the chart figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    /// The energy figures (and the key).
    pub rollup: Rollup,
    /// The chart figures (its power sum and count are the rollup's).
    pub chart: Agg,
}

impl Interval {
    /// The values of [`columns`], in order.
    pub fn values(&self) -> [Option<i64>; COLUMN_COUNT] {
        let (u, c) = (&self.rollup, &self.chart);
        [
            Some(i64::from(u.device_id)),
            Some(u.start),
            Some(u.energy_count),
            u.energy_min,
            u.energy_max,
            u.energy_first,
            u.energy_last,
            Some(u.power_sum),
            Some(u.power_count),
            Some(c.records),
            c.power.min,
            c.power.max,
            Some(c.water.sum),
            Some(c.water.count),
            c.water.min,
            c.water.max,
            Some(c.air.sum),
            Some(c.air.count),
            c.air.min,
            c.air.max,
            Some(c.relays),
            Some(c.pump_on),
            Some(c.heater_on),
        ]
    }
}

/// One interval's energy figures, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rollup {
    /// Device.
    pub device_id: u32,
    /// Start of the interval (a multiple of [`INTERVAL_S`]).
    pub start: i64,
    /// Readings of the energy counter.
    pub energy_count: i64,
    /// Lowest reading.
    pub energy_min: Option<i64>,
    /// Highest reading.
    pub energy_max: Option<i64>,
    /// Earliest reading, packed (module documentation).
    pub energy_first: Option<i64>,
    /// Latest reading, packed.
    pub energy_last: Option<i64>,
    /// Sum of the power readings, W.
    pub power_sum: i64,
    /// Number of power readings.
    pub power_count: i64,
}

/// Start of the 15-minute interval holding `time`.
pub fn interval_start(time: i64) -> i64 {
    time - time.rem_euclid(INTERVAL_S)
}

/// A reading packed with its time inside the interval starting at `start`.
pub(super) fn pack(start: i64, time: i64, wh: i64) -> i64 {
    (time - start) * PACK_SHIFT + wh + PACK_BIAS
}

fn merge(a: Option<i64>, b: Option<i64>, pick: fn(i64, i64) -> i64) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(pick(a, b)),
        (a, b) => a.or(b),
    }
}

impl Rollup {
    fn empty(device_id: u32, start: i64) -> Rollup {
        Rollup {
            device_id,
            start,
            energy_count: 0,
            energy_min: None,
            energy_max: None,
            energy_first: None,
            energy_last: None,
            power_sum: 0,
            power_count: 0,
        }
    }

    /// Adds one record's readings (a channel the record does not have adds nothing).
    fn add(&mut self, r: &TelemetryRow) {
        if let Some(wh) = r.get(channel::ENERGY_WH).map(i64::from) {
            let key = Some(pack(self.start, r.time, wh));
            self.energy_count += 1;
            self.energy_min = merge(self.energy_min, Some(wh), i64::min);
            self.energy_max = merge(self.energy_max, Some(wh), i64::max);
            self.energy_first = merge(self.energy_first, key, i64::min);
            self.energy_last = merge(self.energy_last, key, i64::max);
        }
        if let Some(w) = r.get(channel::POWER_W) {
            self.power_sum += i64::from(w);
            self.power_count += 1;
        }
    }

    /// The interval as [`super::energy::assemble`] takes it.
    pub fn agg(&self) -> IntervalAgg {
        IntervalAgg {
            start: self.start,
            count: self.energy_count,
            first: self.energy_first.map(|k| unpack(self.start, k)),
            last: self.energy_last.map(|k| unpack(self.start, k)),
            min_max: self.energy_min.zip(self.energy_max),
            power_w: (self.power_count > 0)
                .then(|| self.power_sum as f64 / self.power_count as f64),
        }
    }
}

/// The intervals of `resolution` of newly stored records, one per device and interval (ordered
/// by both); every record counts, with or without readings.
pub fn rollups_of(rows: &[TelemetryRow], resolution: Resolution) -> Vec<Interval> {
    let w = resolution.seconds();
    let mut by_interval: BTreeMap<(u32, i64), Interval> = BTreeMap::new();
    for r in rows {
        let start = r.time - r.time.rem_euclid(w);
        let i = by_interval
            .entry((r.device_id, start))
            .or_insert_with(|| Interval {
                rollup: Rollup::empty(r.device_id, start),
                chart: Agg::default(),
            });
        i.rollup.add(r);
        i.chart.add(r);
    }
    by_interval.into_values().collect()
}

/// How a column merges into the stored row.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Merge {
    /// Part of the key.
    Key,
    /// Counts and sums add.
    Add,
    /// Keeps the smaller (a side without readings, NULL, leaves the other's).
    Least,
    /// Keeps the larger.
    Greatest,
}

/// Number of stored columns.
pub const COLUMN_COUNT: usize = 23;

/// The stored columns ([`Interval::values`] order) and how each merges.
pub(super) const SPEC: [(&str, Merge); COLUMN_COUNT] = [
    ("device_id", Merge::Key),
    ("start", Merge::Key),
    ("energy_count", Merge::Add),
    ("energy_min", Merge::Least),
    ("energy_max", Merge::Greatest),
    ("energy_first", Merge::Least),
    ("energy_last", Merge::Greatest),
    ("power_sum", Merge::Add),
    ("power_count", Merge::Add),
    ("records", Merge::Add),
    ("power_min", Merge::Least),
    ("power_max", Merge::Greatest),
    ("water_sum", Merge::Add),
    ("water_count", Merge::Add),
    ("water_min", Merge::Least),
    ("water_max", Merge::Greatest),
    ("air_sum", Merge::Add),
    ("air_count", Merge::Add),
    ("air_min", Merge::Least),
    ("air_max", Merge::Greatest),
    ("relays_count", Merge::Add),
    ("pump_on", Merge::Add),
    ("heater_on", Merge::Add),
];

/// The stored columns, comma-separated, in [`Interval::values`] order.
pub fn columns() -> String {
    SPEC.map(|c| c.0).join(", ")
}

/// The statement merging intervals into the table of `resolution`: `rows` supplies them in
/// [`columns`] order (SQLite: `VALUES` of one interval; PostgreSQL: a `SELECT` over arrays of a
/// batch's intervals, each (device, interval) once, as [`rollups_of`] gives them).
pub fn upsert_sql(dialect: Dialect, resolution: Resolution, rows: &str) -> String {
    merge_sql(dialect, resolution.table(), &SPEC, rows)
}

/// The statement merging rows into rollup table `table` whose columns `spec` lists, with how
/// each merges (the key columns are the conflict target): counts and sums add,
/// lowest/highest/earliest/latest keep the extreme, so the order rows arrive in does not
/// matter. `rows` supplies them in `spec` order. Shared by these rollups and the wide
/// records' ([`super::wide_rollup`]).
pub(super) fn merge_sql(
    dialect: Dialect,
    table: &str,
    spec: &[(&str, Merge)],
    rows: &str,
) -> String {
    let t = table;
    let set: Vec<String> = spec
        .iter()
        .filter_map(|&(c, m)| {
            let (old, new) = (format!("{t}.{c}"), format!("excluded.{c}"));
            let keep =
                |f: &str| format!("{c} = {{{f}}}(COALESCE({old}, {new}), COALESCE({new}, {old}))");
            match m {
                Merge::Key => None,
                Merge::Add => Some(format!("{c} = {old} + {new}")),
                Merge::Least => Some(keep("least")),
                Merge::Greatest => Some(keep("greatest")),
            }
        })
        .collect();
    let key: Vec<&str> = spec
        .iter()
        .filter(|c| c.1 == Merge::Key)
        .map(|c| c.0)
        .collect();
    let all: Vec<&str> = spec.iter().map(|c| c.0).collect();
    render(
        &format!(
            "INSERT INTO {t} ({}) {rows} ON CONFLICT ({}) DO UPDATE SET {}",
            all.join(", "),
            key.join(", "),
            set.join(", ")
        ),
        dialect,
    )
}

/// The 15-minute rollups of device `$1` with `$2 <= start < $3`, oldest first: the energy
/// figures, the first nine of [`columns`].
pub const INTERVALS: &str = "
SELECT device_id, start, energy_count, energy_min, energy_max, energy_first, energy_last,
       power_sum, power_count
FROM telemetry_rollup WHERE device_id = $1 AND start >= $2 AND start < $3 ORDER BY start";

/// The latest interval of device `$1` with a meter reading before `$2` that may hold one within
/// `$3` ([`MAX_GAP_S`]) of it: `(start, energy_last)`.
pub const BEFORE: &str = "
SELECT start, energy_last FROM telemetry_rollup
WHERE device_id = $1 AND start < $2 AND start > $2 - $3 - 900 AND energy_count > 0
ORDER BY start DESC LIMIT 1";

/// The earliest interval of device `$1` with a meter reading at or after `$2`, within `$3`:
/// `(start, energy_first)`.
pub const AFTER: &str = "
SELECT start, energy_first FROM telemetry_rollup
WHERE device_id = $1 AND start >= $2 AND start < $2 + $3 AND energy_count > 0
ORDER BY start LIMIT 1";

/// The reading [`BEFORE`] found, if it is within [`MAX_GAP_S`] of `from`.
pub fn reading_before(from: i64, found: Option<(i64, Option<i64>)>) -> Option<(i64, i64)> {
    let (start, key) = found?;
    let (t, wh) = unpack(start, key?);
    (t < from && t >= from - MAX_GAP_S).then_some((t, wh))
}

/// The reading [`AFTER`] found, if it is within [`MAX_GAP_S`] of `to`.
pub fn reading_after(to: i64, found: Option<(i64, Option<i64>)>) -> Option<(i64, i64)> {
    let (start, key) = found?;
    let (t, wh) = unpack(start, key?);
    (t >= to && t < to + MAX_GAP_S).then_some((t, wh))
}

/// Refuses a range whose ends are not interval starts: the rollups cannot split an interval.
pub fn check_aligned(from: i64, to: i64) -> super::Result<()> {
    if from.rem_euclid(INTERVAL_S) != 0 || to.rem_euclid(INTERVAL_S) != 0 {
        return Err(super::Error::Backend(format!(
            "energy range {from}..{to} is not on {INTERVAL_S}-second boundaries"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(time: i64, power: Option<i32>, energy: Option<i32>) -> TelemetryRow {
        let mut channels = 0;
        let mut values = [0; channel::COUNT];
        if let Some(p) = power {
            channels |= 1 << channel::POWER_W;
            values[usize::from(channel::POWER_W)] = p;
        }
        if let Some(e) = energy {
            channels |= 1 << channel::ENERGY_WH;
            values[usize::from(channel::ENERGY_WH)] = e;
        }
        TelemetryRow {
            device_id: 7,
            boot: 1,
            seq: time as u32,
            time,
            channels,
            values,
        }
    }

    #[test]
    fn records_reduce_per_interval_in_any_order_without_inventing_values() {
        let base = 900 * 2_000_000;
        let rows = [
            rec(base + 600, Some(300), Some(90)),
            rec(base + 10, Some(100), Some(100)),
            rec(base + 300, None, Some(20)), // a reset inside the interval
            rec(base + 400, Some(-50), None),
            rec(base + 901, None, None), // no reading at all: counted, no figures
            rec(base - 1, None, Some(-5)),
        ];
        let all = rollups_of(&rows, Resolution::Quarter);
        let r: Vec<Rollup> = all.iter().map(|i| i.rollup).collect();
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].start, base - 900);
        let a = r[1].agg();
        assert_eq!(a.start, base);
        assert_eq!(a.count, 3);
        assert_eq!(a.first, Some((base + 10, 100)));
        assert_eq!(a.last, Some((base + 600, 90)));
        assert_eq!(a.min_max, Some((20, 100)));
        assert_eq!(a.power_w, Some(350.0 / 3.0));
        assert_eq!(all[1].chart.records, 4);
        assert_eq!(all[1].chart.power.min, Some(-50));
        let empty = r[2].agg();
        assert_eq!((empty.count, empty.first, empty.power_w), (0, None, None));
        assert_eq!(all[2].chart.records, 1);
        let mut reversed = rows;
        reversed.reverse();
        assert_eq!(rollups_of(&reversed, Resolution::Quarter), all);
        // Power only: no meter figures at all, not zeros.
        let p = rollups_of(&[rec(base, Some(5), None)], Resolution::Quarter)[0]
            .rollup
            .agg();
        assert_eq!((p.count, p.first, p.min_max), (0, None, None));
        assert_eq!(r[0].agg().last, Some((base - 1, -5)));
        // One UTC day: one interval from midnight, readings packed from there (`base` is 08:00).
        let midnight = base - base.rem_euclid(86_400);
        let day = rollups_of(&rows[..5], Resolution::Day);
        assert_eq!(day.len(), 1);
        let d = day[0].rollup.agg();
        assert_eq!(
            (d.start, d.count, d.last),
            (midnight, 3, Some((base + 600, 90)))
        );
        assert_eq!(day[0].chart.records, 5);
        assert_eq!(day[0].values()[..2], [Some(7), Some(midnight)]);
    }

    #[test]
    fn readings_next_to_a_range_stay_within_the_gap_limit() {
        let from = 900 * 2_000_000;
        let key = |start: i64, t: i64, wh: i64| Some((start, Some(pack(start, t, wh))));
        let s = interval_start(from - MAX_GAP_S);
        assert_eq!(
            reading_before(from, key(s, from - MAX_GAP_S, 4)),
            Some((from - MAX_GAP_S, 4))
        );
        assert_eq!(
            reading_before(from, key(s - 900, from - MAX_GAP_S - 1, 4)),
            None
        );
        assert_eq!(reading_before(from, Some((s, None))), None);
        assert_eq!(
            reading_after(from, key(from, from + 5, -3)),
            Some((from + 5, -3))
        );
        assert_eq!(
            reading_after(from, key(from + MAX_GAP_S, from + MAX_GAP_S, 1)),
            None
        );
        assert!(check_aligned(from, from + 900).is_ok());
        assert!(check_aligned(from + 1, from + 900).is_err());
    }

    #[test]
    fn the_upsert_renders_for_both_dialects_and_tables() {
        for d in [Dialect::Sqlite, Dialect::Postgres] {
            for r in Resolution::ALL {
                let sql = upsert_sql(d, r, "VALUES (1)");
                assert!(!sql.contains('{') && !sql.contains('}'), "{sql}");
                assert!(sql.contains(&format!("INSERT INTO {} (", r.table())));
                assert!(sql.contains(&format!(
                    "records = {}.records + excluded.records",
                    r.table()
                )));
            }
        }
        let q = upsert_sql(Dialect::Sqlite, Resolution::Quarter, "");
        assert!(q.contains("energy_min = min(COALESCE"), "{q}");
        assert!(upsert_sql(Dialect::Postgres, Resolution::Day, "").contains("LEAST(COALESCE"));
        assert_eq!(columns().split(", ").count(), COLUMN_COUNT);
        assert_eq!(Resolution::Day.seconds() % Resolution::Quarter.seconds(), 0);
    }
}
