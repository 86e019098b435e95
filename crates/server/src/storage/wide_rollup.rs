//! Rollups of wide records ([`super::wide`]): per device, channel, 15-minute interval and
//! configuration version, the readings of the channel — how many, lowest, highest, their sum
//! (the mean is sum / count) and the earliest and latest reading with its time, packed as the
//! pool rollups pack them ([`super::rollup`]: `(time - start) * 2^32 + value + 2^31`, one
//! `MIN`/`MAX` orders by time and the value rides along). Table `telemetry_wide_rollup`,
//! migration 14.
//!
//! The records' blobs (a mask and varints) cannot be aggregated by the database, so a year of
//! one channel read from the records decodes 525,600 rows; from the rollups it reads 35,040
//! rows the database has already reduced, and fewer still once it groups them into a chart's
//! buckets ([`BUCKETS`]).
//!
//! **Why the configuration version is in the key.** A channel number means what the map of the
//! version the device ran says; a chart of a device's channels shows only the records logged
//! under the map in effect ([`crate::service::device_channels::under`]), so the rollup keeps
//! each version's readings apart ([`UNKNOWN_VERSION`] for records whose version the server did
//! not know, which count as the current map's). A device changes its map rarely, so almost
//! every (device, channel, interval) has one row; the meter reads ([`channel_meter_data`])
//! merge the versions as the raw-record reads do.
//!
//! **Kept like the pool rollups.** Both backends reduce the records the insert reports as new
//! ([`rollups_of`]; a retransmitted record the insert skips is not among them) and merge them
//! into the table with [`upsert_sql`] (the pool rollups' [`super::rollup::merge_sql`]: counts
//! and sums add, extremes keep the extreme) in the transaction that stores the records, so the
//! order records arrive in does not matter. Migration 14 creates the table empty; SQL cannot
//! decode the blobs, so each backend then rolls up the existing records in Rust, page by page
//! ([`BACKFILL_PAGE`]), in the migration's transaction ([`super::schema::RustStep`]).
//!
//! A row costs about 45 bytes on SQLite (key of four small integers, four figures and two packed
//! readings of six bytes each), once per channel and quarter hour: with one record a minute 3
//! bytes per value on top of the records' 4.8 (`a_sixteen_channel_record_costs_few_bytes`
//! measures both: 76.4 bytes per 16-channel record, 123.9 with its rollups).

use super::energy::{assemble, unpack, IntervalAgg, MeterData, INTERVAL_S, MAX_GAP_S};
use super::rollup::{merge_sql, pack, Merge};
use super::schema::Dialect;
use super::wide::WideRow;
use std::collections::BTreeMap;

/// The table.
pub const TABLE: &str = "telemetry_wide_rollup";

/// The version stored for records whose configuration version the server did not know.
pub const UNKNOWN_VERSION: i64 = -1;

/// [`BUCKETS`]' `$7` for a range of versions without an end: past every `u32`.
const NO_END: i64 = 1 << 32;

/// One channel's readings in one 15-minute interval of one configuration version, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelInterval {
    /// Device.
    pub device_id: u32,
    /// Channel index, 0..=127.
    pub channel: u8,
    /// Start of the interval (a multiple of [`INTERVAL_S`]).
    pub start: i64,
    /// The records' configuration version, [`UNKNOWN_VERSION`] if the server did not know it.
    pub version: i64,
    /// Readings (at least one: an interval without a reading has no row).
    pub readings: i64,
    /// Lowest reading.
    pub lowest: i64,
    /// Highest reading.
    pub highest: i64,
    /// Sum of the readings.
    pub total: i64,
    /// Earliest reading, packed (module documentation).
    pub earliest: i64,
    /// Latest reading, packed.
    pub latest: i64,
}

/// Number of stored columns.
pub const COLUMN_COUNT: usize = 10;

/// The stored columns ([`ChannelInterval::values`] order) and how each merges.
const SPEC: [(&str, Merge); COLUMN_COUNT] = [
    ("device_id", Merge::Key),
    ("channel", Merge::Key),
    ("start", Merge::Key),
    ("version", Merge::Key),
    ("readings", Merge::Add),
    ("lowest", Merge::Least),
    ("highest", Merge::Greatest),
    ("total", Merge::Add),
    ("earliest", Merge::Least),
    ("latest", Merge::Greatest),
];

impl ChannelInterval {
    /// The values of the stored columns, in [`upsert_sql`]'s order.
    pub fn values(&self) -> [i64; COLUMN_COUNT] {
        [
            i64::from(self.device_id),
            i64::from(self.channel),
            self.start,
            self.version,
            self.readings,
            self.lowest,
            self.highest,
            self.total,
            self.earliest,
            self.latest,
        ]
    }

    fn add(&mut self, time: i64, value: i64) {
        let key = pack(self.start, time, value);
        self.readings += 1;
        self.lowest = self.lowest.min(value);
        self.highest = self.highest.max(value);
        self.total += value;
        self.earliest = self.earliest.min(key);
        self.latest = self.latest.max(key);
    }
}

/// The rollups of newly stored records: one per device, channel, interval and version that has
/// a reading (ordered by those). A channel without a value in a record adds nothing: a gap is
/// never a 0.
pub fn rollups_of(rows: &[WideRow]) -> Vec<ChannelInterval> {
    let mut by_key: BTreeMap<(u32, u8, i64, i64), ChannelInterval> = BTreeMap::new();
    for r in rows {
        let start = r.time - r.time.rem_euclid(INTERVAL_S);
        let version = r.config_version.map_or(UNKNOWN_VERSION, i64::from);
        for (ch, v) in r.values.iter() {
            // `WideValues` holds channels 0..=127 only.
            let channel = ch as u8;
            let value = i64::from(v);
            by_key
                .entry((r.device_id, channel, start, version))
                .or_insert_with(|| {
                    let key = pack(start, r.time, value);
                    ChannelInterval {
                        device_id: r.device_id,
                        channel,
                        start,
                        version,
                        readings: 0,
                        lowest: value,
                        highest: value,
                        total: 0,
                        earliest: key,
                        latest: key,
                    }
                })
                .add(r.time, value);
        }
    }
    by_key.into_values().collect()
}

/// The statement merging rollups into the table: `rows` supplies them in
/// [`ChannelInterval::values`] order (SQLite: `VALUES` of one; PostgreSQL: a `SELECT` over
/// arrays of a batch's rollups, each key once, as [`rollups_of`] gives them).
pub fn upsert_sql(dialect: Dialect, rows: &str) -> String {
    merge_sql(dialect, TABLE, &SPEC, rows)
}

/// Records the migration reads per page while rolling up a database's existing wide records:
/// after `($1, $2, $3)` in key order, at most `$4`.
pub const BACKFILL_PAGE: &str = "
SELECT device_id, boot, seq, time, config_version, mask, vals FROM telemetry_wide
WHERE (device_id, boot, seq) > ($1, $2, $3)
ORDER BY device_id, boot, seq LIMIT $4";

/// Records per page of [`BACKFILL_PAGE`].
pub const BACKFILL_ROWS: i64 = 5_000;

/// The configuration versions a read counts: `[from, below)` (`None`: no bound). A map's
/// channel numbers mean what they say only in records logged under its version up to the next
/// map's. A record whose version the server did not know counts only in a range without an
/// end: it is taken as the latest map's (`service::device_channels::under`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Versions {
    /// The oldest version counted.
    pub from: Option<u32>,
    /// The first version no longer counted.
    pub below: Option<u32>,
}

impl Versions {
    /// Every record.
    pub const ALL: Versions = Versions {
        from: None,
        below: None,
    };

    /// Version `v` and every later one.
    pub fn since(v: u32) -> Versions {
        Versions {
            from: Some(v),
            below: None,
        }
    }

    /// Whether a record of `version` (`None`: unknown) counts.
    pub fn counts(&self, version: Option<u32>) -> bool {
        match version {
            None => self.below.is_none(),
            Some(v) => self.from.is_none_or(|f| v >= f) && self.below.is_none_or(|b| v < b),
        }
    }
}

/// What one read of the rollups asks for: channel `channel` of device `device_id`, the
/// intervals starting in `[from, to)`, grouped into buckets of `step` seconds (a multiple of
/// [`INTERVAL_S`], counted from the epoch), of the records `versions` counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RollupQuery {
    /// Device.
    pub device_id: u32,
    /// Channel index.
    pub channel: u8,
    /// Start of the first interval (a multiple of [`INTERVAL_S`]).
    pub from: i64,
    /// End (a multiple of [`INTERVAL_S`]).
    pub to: i64,
    /// Bucket length, seconds (a multiple of [`INTERVAL_S`]).
    pub step: i64,
    /// The configuration versions counted.
    pub versions: Versions,
}

impl RollupQuery {
    /// `$1..$7` of [`BUCKETS`]: `$7` is past every version when the range has no end.
    pub fn params(&self) -> [i64; 7] {
        [
            i64::from(self.device_id),
            i64::from(self.channel),
            self.from,
            self.to,
            self.step,
            self.versions.from.map_or(0, i64::from),
            self.versions.below.map_or(NO_END, i64::from),
        ]
    }
}

/// One channel's readings in one bucket, in the channel's raw units: from rollups or from
/// records, the same figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelAgg {
    /// Start of the bucket.
    pub start: i64,
    /// Readings.
    pub readings: i64,
    /// Lowest.
    pub lowest: i64,
    /// Highest.
    pub highest: i64,
    /// Sum.
    pub total: i64,
    /// Earliest reading `(time, value)`.
    pub earliest: (i64, i64),
    /// Latest reading `(time, value)`.
    pub latest: (i64, i64),
}

impl ChannelAgg {
    /// A bucket of one reading.
    pub fn one(start: i64, time: i64, value: i64) -> ChannelAgg {
        ChannelAgg {
            start,
            readings: 1,
            lowest: value,
            highest: value,
            total: value,
            earliest: (time, value),
            latest: (time, value),
        }
    }

    /// Adds the readings of `o` (the same bucket).
    pub fn merge(&mut self, o: &ChannelAgg) {
        self.readings += o.readings;
        self.lowest = self.lowest.min(o.lowest);
        self.highest = self.highest.max(o.highest);
        self.total += o.total;
        self.earliest = self.earliest.min(o.earliest);
        self.latest = self.latest.max(o.latest);
    }

    /// Decodes a row of [`BUCKETS`].
    pub fn from_row(c: [i64; 7]) -> ChannelAgg {
        let [start, readings, lowest, highest, total, earliest, latest] = c;
        ChannelAgg {
            start,
            readings,
            lowest,
            highest,
            total,
            earliest: unpack(start, earliest),
            latest: unpack(start, latest),
        }
    }

    /// The interval as [`assemble`] takes it (the mean as [`super::energy::aggregate_readings`]
    /// computes it).
    pub fn interval(&self) -> IntervalAgg {
        IntervalAgg {
            start: self.start,
            count: self.readings,
            first: Some(self.earliest),
            last: Some(self.latest),
            min_max: Some((self.lowest, self.highest)),
            power_w: Some(self.total as f64 / self.readings as f64),
        }
    }
}

/// The rollups of [`RollupQuery`] `$1..$7` grouped per bucket, oldest first: bucket start,
/// readings, lowest, highest, sum, earliest and latest (packed from the bucket's start: a
/// rollup's keys move there by `(start - bucket) * 2^32`, as migration 10 moved the pool's to
/// the day). One text for both backends; the sums are cast back to 64-bit integers (PostgreSQL
/// sums `BIGINT` as `NUMERIC`).
pub const BUCKETS: &str = "
SELECT b, CAST(SUM(readings) AS BIGINT), MIN(lowest), MAX(highest), CAST(SUM(total) AS BIGINT),
       MIN(earliest + (start - b) * 4294967296), MAX(latest + (start - b) * 4294967296)
FROM (SELECT start - ((start % $5) + $5) % $5 AS b, start, readings, lowest, highest, total,
             earliest, latest
      FROM telemetry_wide_rollup
      WHERE device_id = $1 AND channel = $2 AND start >= $3 AND start < $4
        AND ((version >= $6 AND version < $7) OR (version = -1 AND $7 = 4294967296))) AS r
GROUP BY b ORDER BY b";

/// The channel's rollups as meter data over `[from, to)` (both multiples of [`INTERVAL_S`]):
/// `read` answers a [`RollupQuery`] (a backend's [`super::WideStore::wide_channel_rollups`]);
/// one read of the 15-minute rollups from a week before `from` to a week after `to` gives the
/// intervals and the readings next to the range, assembled as for the pool meter.
pub fn channel_meter_data(
    device_id: u32,
    channel: u8,
    versions: Versions,
    from: i64,
    to: i64,
    read: impl FnOnce(&RollupQuery) -> super::Result<Vec<ChannelAgg>>,
) -> super::Result<MeterData> {
    let q = RollupQuery {
        device_id,
        channel,
        from: from - MAX_GAP_S,
        to: to + MAX_GAP_S,
        step: INTERVAL_S,
        versions,
    };
    let all = read(&q)?;
    let before = all
        .iter()
        .rev()
        .find(|a| a.start < from)
        .map(|a| a.latest)
        .filter(|(t, _)| *t >= from - MAX_GAP_S);
    let after = all
        .iter()
        .find(|a| a.start >= to)
        .map(|a| a.earliest)
        .filter(|(t, _)| *t < to + MAX_GAP_S);
    let inside: Vec<IntervalAgg> = all
        .iter()
        .filter(|a| a.start >= from && a.start < to)
        .map(ChannelAgg::interval)
        .collect();
    Ok(assemble(&inside, before, after, from, to))
}

/// The part of `[from, to)` that buckets of `step` can read from the rollups: the whole
/// quarter hours inside it, when `step` is a whole number of them (then every quarter hour lies
/// in one bucket); `None` when no such part exists. The rest is read from the records.
pub fn rollup_part(from: i64, to: i64, step: i64) -> Option<(i64, i64)> {
    if step <= 0 || step % INTERVAL_S != 0 {
        return None;
    }
    let a = from + (INTERVAL_S - from.rem_euclid(INTERVAL_S)) % INTERVAL_S;
    let b = to - to.rem_euclid(INTERVAL_S);
    (a < b).then_some((a, b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::energy::PACK_SHIFT;
    use crate::storage::wide::WideValues;

    fn rec(seq: u32, time: i64, version: Option<u32>, values: &[Option<i32>]) -> WideRow {
        WideRow {
            device_id: 3,
            boot: 1,
            seq,
            time,
            config_version: version,
            values: WideValues::from_options(values),
        }
    }

    #[test]
    fn records_reduce_per_channel_interval_and_version_in_any_order() {
        let base = 900 * 2_000_000;
        let rows = [
            rec(1, base + 600, Some(2), &[Some(300), None, Some(i32::MIN)]),
            rec(2, base + 10, Some(2), &[Some(100), Some(7)]),
            rec(3, base + 300, Some(2), &[Some(-20)]),
            rec(4, base + 400, None, &[Some(5)]),
            rec(5, base + 901, Some(2), &[None, None]),
        ];
        let all = rollups_of(&rows);
        let mut reversed = rows.clone();
        reversed.reverse();
        assert_eq!(rollups_of(&reversed), all);
        // Channel 0 of version 2; of an unknown version; channel 1; channel 2. Record 5 has
        // no value at all: no row.
        assert_eq!(all.len(), 4);
        let unknown = all[0];
        assert_eq!(
            (
                unknown.channel,
                unknown.version,
                unknown.readings,
                unknown.total
            ),
            (0, UNKNOWN_VERSION, 1, 5)
        );
        let c0 = all[1];
        assert_eq!((c0.channel, c0.version, c0.start), (0, 2, base));
        assert_eq!(
            (c0.readings, c0.lowest, c0.highest, c0.total),
            (3, -20, 300, 380)
        );
        let agg = ChannelAgg::from_row([
            c0.start,
            c0.readings,
            c0.lowest,
            c0.highest,
            c0.total,
            c0.earliest,
            c0.latest,
        ]);
        assert_eq!(agg.earliest, (base + 10, 100));
        assert_eq!(agg.latest, (base + 600, 300));
        assert_eq!(agg.interval().power_w, Some(380.0 / 3.0));
        let c2 = all[3];
        assert_eq!((c2.channel, c2.lowest), (2, i64::from(i32::MIN)));
        assert_eq!(unpack(base, c2.latest), (base + 600, i64::from(i32::MIN)));
    }

    #[test]
    fn only_whole_quarter_hours_of_a_fitting_step_come_from_rollups() {
        assert_eq!(rollup_part(0, 3_600, 900), Some((0, 3_600)));
        assert_eq!(rollup_part(10, 3_590, 1_800), Some((900, 2_700)));
        assert_eq!(rollup_part(10, 890, 900), None);
        assert_eq!(rollup_part(0, 3_600, 60), None);
        assert_eq!(rollup_part(-890, 0, 900), None);
        assert_eq!(rollup_part(-900, 900, 900), Some((-900, 900)));
    }

    #[test]
    fn the_statements_render_for_both_dialects() {
        for d in [Dialect::Sqlite, Dialect::Postgres] {
            let sql = upsert_sql(d, "VALUES (1)");
            assert!(!sql.contains('{'), "{sql}");
            assert!(sql.contains("ON CONFLICT (device_id, channel, start, version)"));
            assert!(sql.contains("readings = telemetry_wide_rollup.readings + excluded.readings"));
        }
        assert!(BUCKETS.contains(&PACK_SHIFT.to_string()));
        assert!(BUCKETS.contains(&UNKNOWN_VERSION.to_string()));
    }
}
