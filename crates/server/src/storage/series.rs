//! Telemetry for charts and exports: time buckets aggregated by the database, so a 30-day chart
//! reads a few hundred values instead of tens of thousands of records.
//!
//! A chart's buckets are built from the coarsest source that covers them exactly ([`plan`]):
//! the daily rollups ([`super::rollup`], UTC days) where the step is a whole number of days,
//! the 15-minute rollups where it is a whole number of quarter hours, and raw records for the
//! rest, including the ends of a range that do not fall on a rollup boundary. Buckets start at
//! multiples of the step counted from the Unix epoch, so with such a step every rollup interval
//! lies inside one bucket. Every source is read as the same sums, counts and extremes per bucket
//! ([`Agg`], [`BUCKET_COLUMNS`]), merged here and divided once ([`Agg::bucket`]): the chart shows
//! the same numbers whichever source it came from, and a year's chart reads 365 daily rows
//! instead of 525,600 records.

use super::chunk::{self, ChunkWalk};
use super::rollup::Resolution;
use super::Result;
use super::{TelemetryKey, TelemetryQuery, TelemetryRow};
use std::collections::BTreeMap;
use tek_proto::message::telemetry::channel;

/// One time bucket of a device's telemetry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// Start of the bucket, Unix seconds (a multiple of the step).
    pub start: i64,
    /// Records in the bucket.
    pub count: u32,
    /// Mean electric power, W.
    pub power_w: Option<f64>,
    /// Largest energy meter reading, Wh.
    pub energy_wh: Option<i64>,
    /// Mean water temperature, 0.01 °C.
    pub water_cc: Option<f64>,
    /// Mean air temperature, 0.01 °C.
    pub air_cc: Option<f64>,
    /// Lowest and highest power in the bucket, W: a chart drawn from buckets keeps the peaks.
    pub power_range: Option<(f64, f64)>,
    /// Lowest and highest water temperature, 0.01 °C.
    pub water_range_cc: Option<(f64, f64)>,
    /// Lowest and highest air temperature, 0.01 °C.
    pub air_range_cc: Option<(f64, f64)>,
    /// Share of the bucket's records with the pump relay (bit 0) on, 0..=1.
    pub pump_on: Option<f64>,
    /// Share of the bucket's records with the heater relay (bit 1) on, 0..=1.
    pub heater_on: Option<f64>,
}

/// `(min, max)` when both are present.
pub fn range(min: Option<f64>, max: Option<f64>) -> Option<(f64, f64)> {
    min.zip(max)
}

/// Energy used in one UTC day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayEnergy {
    /// Start of the day, Unix seconds.
    pub day: i64,
    /// Wh used that day (meter reading difference; meter resets are not counted as negative use).
    pub wh: i64,
}

/// Aggregated telemetry queries.
pub trait SeriesStore {
    /// Buckets of `step` seconds from `from` (inclusive) to `to` (exclusive), oldest first; empty
    /// buckets are absent.
    fn telemetry_buckets(
        &self,
        device_id: u32,
        from: i64,
        to: i64,
        step: i64,
    ) -> Result<Vec<Bucket>>;
    /// Energy used per UTC day from `from` to `to`, oldest first.
    fn energy_per_day(&self, device_id: u32, from: i64, to: i64) -> Result<Vec<DayEnergy>>;
    /// The newest record of each of `device_ids`, in their order (`None`: the device has no
    /// record, raw or sealed in a chunk). One call for a whole page of devices: the backends
    /// answer it with a fixed number of queries, not one per device (issue 21: `/api/devices`).
    fn latest_telemetry_of(&self, device_ids: &[u32]) -> Result<Vec<Option<TelemetryRow>>>;

    /// The newest record of a device: [`SeriesStore::latest_telemetry_of`] of one.
    fn latest_telemetry(&self, device_id: u32) -> Result<Option<TelemetryRow>> {
        Ok(self
            .latest_telemetry_of(&[device_id])?
            .into_iter()
            .next()
            .flatten())
    }
}

/// Sum, count and extremes of one channel (a mean is `sum / count`; no reading: count 0 and no
/// extremes, never a zero).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stat {
    /// Sum of the readings.
    pub sum: i64,
    /// Number of readings.
    pub count: i64,
    /// Lowest reading.
    pub min: Option<i64>,
    /// Highest reading.
    pub max: Option<i64>,
}

fn pick(a: Option<i64>, b: Option<i64>, f: fn(i64, i64) -> i64) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(f(a, b)),
        (a, b) => a.or(b),
    }
}

impl Stat {
    fn add(&mut self, v: Option<i32>) {
        if let Some(v) = v.map(i64::from) {
            self.merge(&Stat {
                sum: v,
                count: 1,
                min: Some(v),
                max: Some(v),
            });
        }
    }

    fn merge(&mut self, o: &Stat) {
        self.sum += o.sum;
        self.count += o.count;
        self.min = pick(self.min, o.min, i64::min);
        self.max = pick(self.max, o.max, i64::max);
    }

    fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum as f64 / self.count as f64)
    }

    fn range(&self) -> Option<(f64, f64)> {
        range(self.min.map(|v| v as f64), self.max.map(|v| v as f64))
    }
}

/// What a chart bucket is made of, in a form that adds up: a bucket from several sources (raw
/// ends, 15-minute and daily rollups) is the [`Agg::merge`] of theirs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Agg {
    /// Records.
    pub records: i64,
    /// Power, W.
    pub power: Stat,
    /// Largest energy meter reading, Wh.
    pub energy_max: Option<i64>,
    /// Water temperature, 0.01 °C.
    pub water: Stat,
    /// Air temperature, 0.01 °C.
    pub air: Stat,
    /// Records with the relay channel.
    pub relays: i64,
    /// Of those, records with the pump relay (bit 0) on.
    pub pump_on: i64,
    /// Of those, records with the heater relay (bit 1) on.
    pub heater_on: i64,
}

/// The aggregate columns every bucket query selects after the bucket start, in
/// [`Agg::from_columns`] order: `records`, power sum, count, min, max, `energy_max`, water and
/// air sum, count, min, max, relay records, pump on, heater on.
pub const BUCKET_COLUMNS: usize = 17;

impl Agg {
    /// Adds one record.
    pub fn add(&mut self, r: &TelemetryRow) {
        self.records += 1;
        self.power.add(r.get(channel::POWER_W));
        self.energy_max = pick(
            self.energy_max,
            r.get(channel::ENERGY_WH).map(i64::from),
            i64::max,
        );
        self.water.add(r.get(channel::WATER_TEMP_CC));
        self.air.add(r.get(channel::AIR_TEMP_CC));
        if let Some(v) = r.get(channel::RELAYS) {
            self.relays += 1;
            self.pump_on += i64::from(v & 1);
            self.heater_on += i64::from((v >> 1) & 1);
        }
    }

    /// Adds another part of the same bucket.
    pub fn merge(&mut self, o: &Agg) {
        self.records += o.records;
        self.power.merge(&o.power);
        self.energy_max = pick(self.energy_max, o.energy_max, i64::max);
        self.water.merge(&o.water);
        self.air.merge(&o.air);
        self.relays += o.relays;
        self.pump_on += o.pump_on;
        self.heater_on += o.heater_on;
    }

    /// From the [`BUCKET_COLUMNS`] columns of a bucket query (a sum over no reading is NULL
    /// there: 0 here).
    pub fn from_columns(c: &[Option<i64>; BUCKET_COLUMNS]) -> Agg {
        let stat = |i: usize| Stat {
            sum: c[i].unwrap_or(0),
            count: c[i + 1].unwrap_or(0),
            min: c[i + 2],
            max: c[i + 3],
        };
        Agg {
            records: c[0].unwrap_or(0),
            power: stat(1),
            energy_max: c[5],
            water: stat(6),
            air: stat(10),
            relays: c[14].unwrap_or(0),
            pump_on: c[15].unwrap_or(0),
            heater_on: c[16].unwrap_or(0),
        }
    }

    /// The bucket starting at `start`.
    pub fn bucket(&self, start: i64) -> Bucket {
        let share = |n: i64| (self.relays > 0).then(|| n as f64 / self.relays as f64);
        Bucket {
            start,
            count: self.records.clamp(0, u32::MAX.into()) as u32,
            power_w: self.power.mean(),
            energy_wh: self.energy_max,
            water_cc: self.water.mean(),
            air_cc: self.air.mean(),
            power_range: self.power.range(),
            water_range_cc: self.water.range(),
            air_range_cc: self.air.range(),
            pump_on: share(self.pump_on),
            heater_on: share(self.heater_on),
        }
    }
}

/// The step for about `points` buckets over `span` seconds (`points` ≥ 1): `span / points`
/// rounded up, and further up to a whole number of rollup intervals once it is at least one
/// (15 minutes, a day), so such a chart reads rollups ([`plan`]) instead of records. It gives
/// at most `points` buckets over an aligned range (one more where the range starts inside one).
pub fn step_for_points(span: i64, points: i64) -> i64 {
    // Rounded-up divisions of positive numbers that cannot overflow.
    let up = |a: i64, b: i64| a / b + i64::from(a % b != 0);
    let step = up(span.max(1), points.max(1));
    match [Resolution::Day, Resolution::Quarter]
        .into_iter()
        .map(Resolution::seconds)
        .find(|w| step >= *w)
    {
        Some(w) => up(step, w).saturating_mul(w),
        None => step,
    }
}

/// Where a part of a chart's range is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The records themselves ([`RAW_BUCKETS`]).
    Raw,
    /// Rollups of this resolution ([`rollup_buckets_sql`]).
    Rollup(Resolution),
}

/// The parts of `[from, to)` and the source of each, for buckets of `step` seconds: the longest
/// run on the coarsest resolution that divides the step, its uncovered ends from the next finer
/// one, raw records last. Empty parts are left out; the parts are disjoint and cover the range.
pub fn plan(from: i64, to: i64, step: i64) -> Vec<(Source, i64, i64)> {
    let mut out = Vec::new();
    split(
        from,
        to,
        step,
        &[Resolution::Day, Resolution::Quarter],
        &mut out,
    );
    out
}

fn split(from: i64, to: i64, step: i64, levels: &[Resolution], out: &mut Vec<(Source, i64, i64)>) {
    if from >= to {
        return;
    }
    let Some((level, finer)) = levels.split_first() else {
        out.push((Source::Raw, from, to));
        return;
    };
    let w = level.seconds();
    // First boundary at or after `from` and last at or before `to` (None near the ends of i64).
    let first = from.checked_add((w - from.rem_euclid(w)) % w);
    let last = to - to.rem_euclid(w);
    match first {
        Some(a) if step > 0 && step % w == 0 && a < last => {
            split(from, a, step, finer, out);
            out.push((Source::Rollup(*level), a, last));
            split(last, to, step, finer, out);
        }
        _ => split(from, to, step, finer, out),
    }
}

/// Buckets from the per-bucket aggregates of every part of a range (each `(bucket start, Agg)`),
/// merged where a bucket has several parts, oldest first.
pub fn merge_parts(parts: impl IntoIterator<Item = (i64, Agg)>) -> Vec<Bucket> {
    let mut by_start: BTreeMap<i64, Agg> = BTreeMap::new();
    for (start, agg) in parts {
        by_start.entry(start).or_default().merge(&agg);
    }
    by_start
        .into_iter()
        .filter(|(_, a)| a.records > 0)
        .map(|(start, a)| a.bucket(start))
        .collect()
}

/// Buckets of `$4` seconds of device `$1`'s records with `$2 <= time < $3`: the bucket start
/// (floor division, right for negative times too) and the [`BUCKET_COLUMNS`]. In both dialects
/// (SQLite: `$` read as `?`, [`sqlite_params`]); every column is cast to a 64-bit integer so both
/// backends return the same types.
pub const RAW_BUCKETS: &str = "
SELECT time - ((time % $4) + $4) % $4 AS b, COUNT(*),
       CAST(SUM(power_w) AS BIGINT), COUNT(power_w),
       CAST(MIN(power_w) AS BIGINT), CAST(MAX(power_w) AS BIGINT),
       CAST(MAX(energy_wh) AS BIGINT),
       CAST(SUM(water_cc) AS BIGINT), COUNT(water_cc),
       CAST(MIN(water_cc) AS BIGINT), CAST(MAX(water_cc) AS BIGINT),
       CAST(SUM(air_cc) AS BIGINT), COUNT(air_cc),
       CAST(MIN(air_cc) AS BIGINT), CAST(MAX(air_cc) AS BIGINT),
       COUNT(relays), CAST(SUM(relays & 1) AS BIGINT), CAST(SUM((relays >> 1) & 1) AS BIGINT)
FROM telemetry WHERE device_id = $1 AND time >= $2 AND time < $3
GROUP BY b ORDER BY b";

/// [`RAW_BUCKETS`] over the rollups of `resolution` with `$2 <= start < $3` (both ends on its
/// boundaries, [`plan`]).
pub fn rollup_buckets_sql(resolution: Resolution) -> String {
    format!(
        "SELECT start - ((start % $4) + $4) % $4 AS b, CAST(SUM(records) AS BIGINT),
                CAST(SUM(power_sum) AS BIGINT), CAST(SUM(power_count) AS BIGINT),
                MIN(power_min), MAX(power_max), MAX(energy_max),
                CAST(SUM(water_sum) AS BIGINT), CAST(SUM(water_count) AS BIGINT),
                MIN(water_min), MAX(water_max),
                CAST(SUM(air_sum) AS BIGINT), CAST(SUM(air_count) AS BIGINT),
                MIN(air_min), MAX(air_max),
                CAST(SUM(relays_count) AS BIGINT), CAST(SUM(pump_on) AS BIGINT),
                CAST(SUM(heater_on) AS BIGINT)
         FROM {} WHERE device_id = $1 AND start >= $2 AND start < $3
         GROUP BY b ORDER BY b",
        resolution.table()
    )
}

/// `sql` with PostgreSQL's `$n` as SQLite's `?n`: SQLite numbers `$n` by first appearance, not
/// by `n`, and these texts use `$4` before `$1`.
pub fn sqlite_params(sql: &str) -> String {
    sql.replace('$', "?")
}

/// The SQL of one part of a plan.
pub fn part_sql(source: Source) -> String {
    match source {
        Source::Raw => RAW_BUCKETS.to_string(),
        Source::Rollup(r) => rollup_buckets_sql(r),
    }
}

/// The per-bucket aggregates (bucket start, [`Agg`]) of `device`'s sealed records
/// ([`super::chunk`]) with `from <= time < to`, buckets of `step` seconds as in
/// [`RAW_BUCKETS`]: a raw part of a plan is this merged with [`RAW_BUCKETS`] over the rows.
pub fn sealed_buckets(
    walk: &mut dyn ChunkWalk,
    device_id: u32,
    from: i64,
    to: i64,
    step: i64,
) -> Result<Vec<(i64, Agg)>> {
    check_step(step)?;
    let mut by_start: BTreeMap<i64, Agg> = BTreeMap::new();
    chunk::for_each_sealed(walk, device_id, from, to, |_, rows| {
        for r in &rows {
            by_start
                .entry(r.time - r.time.rem_euclid(step))
                .or_default()
                .add(r);
        }
        true
    })?;
    Ok(by_start.into_iter().collect())
}

/// Records per page when a series is computed from every record of a range.
const PAGE_RECORDS: usize = 10_000;

/// [`SeriesStore::energy_per_day`] from a device's records read page by page (`page`:
/// [`super::TelemetryStore::telemetry_page`], rows and chunks merged in time order): per UTC
/// day the sum of the increases of the meter between consecutive readings, a decrease (meter
/// reset, controller replaced) counted as zero; a day appears once one of its readings has a
/// previous one.
pub fn energy_per_day_paged(
    device_id: u32,
    from: i64,
    to: i64,
    mut page: impl FnMut(&TelemetryQuery, Option<TelemetryKey>) -> Result<Vec<TelemetryRow>>,
) -> Result<Vec<DayEnergy>> {
    let q = TelemetryQuery {
        device_id,
        from,
        to,
        limit: PAGE_RECORDS,
    };
    let mut days: BTreeMap<i64, i64> = BTreeMap::new();
    let mut previous: Option<i64> = None;
    let mut after = None;
    loop {
        let rows = page(&q, after)?;
        for r in &rows {
            let Some(e) = r.get(channel::ENERGY_WH).map(i64::from) else {
                continue;
            };
            if let Some(p) = previous {
                *days.entry(r.time - r.time.rem_euclid(86_400)).or_default() += (e - p).max(0);
            }
            previous = Some(e);
        }
        match rows.last() {
            Some(last) if rows.len() >= q.limit => after = Some(TelemetryKey::of(last)),
            _ => break,
        }
    }
    Ok(days
        .into_iter()
        .map(|(day, wh)| DayEnergy { day, wh })
        .collect())
}

/// Refuses a step that is not positive.
pub fn check_step(step: i64) -> Result<()> {
    if step <= 0 {
        return Err(super::Error::Backend(format!(
            "bucket step {step} must be positive"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use Resolution::{Day, Quarter};
    use Source::{Raw, Rollup};

    const D: i64 = 86_400;
    const Q: i64 = 900;

    #[test]
    fn a_plan_reads_the_coarsest_rollups_that_fit_and_records_at_the_ends() {
        let day0 = 20_000 * D;
        // A whole number of days on day boundaries: daily rollups only.
        assert_eq!(
            plan(day0, day0 + 365 * D, D),
            vec![(Rollup(Day), day0, day0 + 365 * D)]
        );
        // Unaligned ends: records, then quarter hours, then days, and back.
        let (from, to) = (day0 - Q - 7, day0 + 3 * D + Q + 5);
        assert_eq!(
            plan(from, to, 2 * D),
            vec![
                (Raw, from, day0 - Q),
                (Rollup(Quarter), day0 - Q, day0),
                (Rollup(Day), day0, day0 + 3 * D),
                (Rollup(Quarter), day0 + 3 * D, day0 + 3 * D + Q),
                (Raw, day0 + 3 * D + Q, to),
            ]
        );
        // A step of hours: quarter hours; one that is no multiple of 15 minutes: records.
        assert_eq!(
            plan(day0, day0 + D, 3_600),
            vec![(Rollup(Quarter), day0, day0 + D)]
        );
        assert_eq!(plan(day0, day0 + D, 1_000), vec![(Raw, day0, day0 + D)]);
        // Shorter than one interval, negative times, an empty range, the ends of i64.
        assert_eq!(
            plan(day0 + 1, day0 + 899, Q),
            vec![(Raw, day0 + 1, day0 + 899)]
        );
        assert_eq!(plan(-D, 0, D), vec![(Rollup(Day), -D, 0)]);
        assert!(plan(day0, day0, D).is_empty());
        let all = plan(i64::MIN, i64::MAX, D);
        assert_eq!(all.first().map(|p| p.1), Some(i64::MIN));
        assert_eq!(all.last().map(|p| p.2), Some(i64::MAX));
        for w in all.windows(2) {
            assert_eq!(w[0].2, w[1].1, "parts touch");
        }
    }

    fn row(time: i64, ch: &[(u8, i32)]) -> TelemetryRow {
        let mut r = TelemetryRow {
            device_id: 1,
            boot: 1,
            seq: time as u32,
            time,
            channels: 0,
            values: [0; channel::COUNT],
        };
        for (c, v) in ch {
            r.channels |= 1 << c;
            r.values[usize::from(*c)] = *v;
        }
        r
    }

    #[test]
    fn parts_of_a_bucket_add_up_to_the_whole() {
        let rows = [
            row(0, &[(channel::POWER_W, -5), (channel::RELAYS, 3)]),
            row(1, &[(channel::POWER_W, 9), (channel::WATER_TEMP_CC, 2_500)]),
            row(2, &[(channel::RELAYS, 0), (channel::ENERGY_WH, 7)]),
            row(3, &[]),
        ];
        let mut whole = Agg::default();
        rows.iter().for_each(|r| whole.add(r));
        let (mut a, mut b) = (Agg::default(), Agg::default());
        rows[..1].iter().for_each(|r| a.add(r));
        rows[1..].iter().for_each(|r| b.add(r));
        let merged = merge_parts([(0, b), (0, a), (10, Agg::default())]);
        assert_eq!(merged, vec![whole.bucket(0)]);
        let x = merged[0];
        assert_eq!(
            (x.count, x.power_w, x.power_range),
            (4, Some(2.0), Some((-5.0, 9.0)))
        );
        assert_eq!((x.pump_on, x.heater_on), (Some(0.5), Some(0.5)));
        assert_eq!(
            (x.energy_wh, x.air_cc, x.air_range_cc),
            (Some(7), None, None)
        );
        assert!(check_step(0).is_err() && check_step(1).is_ok());
        // A year in 600 points: 14.6 h rounded up to 59 quarter hours; three years: two days.
        assert_eq!(step_for_points(365 * D, 600), 59 * Q);
        assert_eq!(step_for_points(3 * 365 * D, 600), 2 * D);
        assert_eq!(step_for_points(3_600, 600), 6);
        assert_eq!(step_for_points(0, 600), 1);
        assert!(step_for_points(i64::MAX, 1) > 0, "no overflow");
        assert_eq!(sqlite_params("a $4 $1"), "a ?4 ?1");
    }
}
