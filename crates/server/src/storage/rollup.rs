//! 15-minute rollups of each device's energy and power readings (table `telemetry_rollup`,
//! schema version 8): per device and interval the figures the energy code needs
//! ([`IntervalAgg`]: number of meter readings, lowest, highest, earliest and latest reading, and
//! the sum and number of power readings), so a site's year reads 35,040 rows per device instead
//! of 525,600 records.
//!
//! Both backends keep them in the transaction that stores the records: the rows the insert
//! reports as new (a retransmitted record the insert skips is not among them) are reduced here
//! ([`rollups_of`]) to one [`Rollup`] per device and interval, and merged into the table with
//! [`upsert_sql`] (counts and sums add, lowest/highest/earliest/latest keep the extreme), so the
//! order records arrive in does not matter. Migration 8 rolls up the records of an older
//! database the same way in SQL. The reads ([`INTERVALS`], [`BEFORE`], [`AFTER`]) are one text
//! for both backends (SQLite numbers `$1`, `$2`, ... in order of appearance, as PostgreSQL does).
//!
//! Earliest and latest are packed as `(time - start) * 2^32 + Wh + 2^31`
//! ([`super::energy::PACK_SHIFT`]): one `min`/`max` orders by time, and at the same second by
//! reading. (Before the rollups, the reading just before a range was picked at the same second
//! by boot and sequence number; a controller logs at most one record per second, so the two
//! rules differ only for two boots' records stamped in the same second.)

use super::energy::{unpack, IntervalAgg, INTERVAL_S, MAX_GAP_S, PACK_BIAS, PACK_SHIFT};
use super::schema::{render, Dialect};
use super::TelemetryRow;
use std::collections::BTreeMap;
use tek_proto::message::telemetry::channel;

/// One interval of one device, as stored.
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

/// Start of the interval holding `time`.
pub fn interval_start(time: i64) -> i64 {
    time - time.rem_euclid(INTERVAL_S)
}

/// A reading packed with its time inside the interval starting at `start`.
fn pack(start: i64, time: i64, wh: i64) -> i64 {
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

/// The rollups of newly stored records, one per device and interval (ordered by both), without
/// intervals where no record had an energy or power reading.
pub fn rollups_of(rows: &[TelemetryRow]) -> Vec<Rollup> {
    let mut by_interval: BTreeMap<(u32, i64), Rollup> = BTreeMap::new();
    for r in rows {
        if r.get(channel::ENERGY_WH).is_none() && r.get(channel::POWER_W).is_none() {
            continue;
        }
        let start = interval_start(r.time);
        by_interval
            .entry((r.device_id, start))
            .or_insert_with(|| Rollup::empty(r.device_id, start))
            .add(r);
    }
    by_interval.into_values().collect()
}

/// The stored columns, in [`Rollup`]'s field order.
pub const COLUMNS: &str = "device_id, start, energy_count, energy_min, energy_max, \
                           energy_first, energy_last, power_sum, power_count";

/// How a rollup merges into the stored one (in the notation of [`super::schema`]): counts and
/// sums add; a side without readings (NULL) leaves the other's extremes.
const MERGE: &str = "
ON CONFLICT (device_id, start) DO UPDATE SET
    energy_count = telemetry_rollup.energy_count + excluded.energy_count,
    energy_min = {least}(COALESCE(telemetry_rollup.energy_min, excluded.energy_min),
                        COALESCE(excluded.energy_min, telemetry_rollup.energy_min)),
    energy_max = {greatest}(COALESCE(telemetry_rollup.energy_max, excluded.energy_max),
                            COALESCE(excluded.energy_max, telemetry_rollup.energy_max)),
    energy_first = {least}(COALESCE(telemetry_rollup.energy_first, excluded.energy_first),
                          COALESCE(excluded.energy_first, telemetry_rollup.energy_first)),
    energy_last = {greatest}(COALESCE(telemetry_rollup.energy_last, excluded.energy_last),
                             COALESCE(excluded.energy_last, telemetry_rollup.energy_last)),
    power_sum = telemetry_rollup.power_sum + excluded.power_sum,
    power_count = telemetry_rollup.power_count + excluded.power_count";

/// The statement merging rollups into the table: `rows` supplies them in [`COLUMNS`] order
/// (SQLite: `VALUES` of one rollup; PostgreSQL: a `SELECT` over arrays of a batch's rollups,
/// each (device, interval) once, as [`rollups_of`] gives them).
pub fn upsert_sql(dialect: Dialect, rows: &str) -> String {
    render(
        &format!("INSERT INTO telemetry_rollup ({COLUMNS}) {rows} {MERGE}"),
        dialect,
    )
}

/// The rollups of device `$1` with `$2 <= start < $3`, oldest first, in [`COLUMNS`] order.
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
            rec(base + 901, None, None), // no reading at all: no rollup
            rec(base - 1, None, Some(-5)),
        ];
        let r = rollups_of(&rows);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].start, base - 900);
        let a = r[1].agg();
        assert_eq!(a.start, base);
        assert_eq!(a.count, 3);
        assert_eq!(a.first, Some((base + 10, 100)));
        assert_eq!(a.last, Some((base + 600, 90)));
        assert_eq!(a.min_max, Some((20, 100)));
        assert_eq!(a.power_w, Some(350.0 / 3.0));
        let mut reversed = rows;
        reversed.reverse();
        assert_eq!(rollups_of(&reversed), r);
        // Power only: no meter figures at all, not zeros.
        let p = rollups_of(&[rec(base, Some(5), None)])[0].agg();
        assert_eq!((p.count, p.first, p.min_max), (0, None, None));
        assert_eq!(r[0].agg().last, Some((base - 1, -5)));
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
    fn the_upsert_renders_for_both_dialects() {
        for d in [Dialect::Sqlite, Dialect::Postgres] {
            let sql = upsert_sql(d, "VALUES (1)");
            assert!(!sql.contains('{') && !sql.contains('}'), "{sql}");
        }
        assert!(upsert_sql(Dialect::Sqlite, "").contains("min(COALESCE"));
        assert!(upsert_sql(Dialect::Postgres, "").contains("LEAST(COALESCE"));
    }
}
