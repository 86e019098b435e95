//! Telemetry records, idempotent on (device, boot, sequence number).

use super::Result;
use tek_proto::message::telemetry::channel;

/// One stored record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelemetryRow {
    /// Device.
    pub device_id: u32,
    /// Boot number of the session that carried it (hello counter >> 32).
    pub boot: u32,
    /// Sequence number within the boot.
    pub seq: u32,
    /// When it was logged: arrival time minus its age, Unix seconds.
    pub time: i64,
    /// Channel mask of its batch: bit i set = `values[i]` is meaningful.
    pub channels: u8,
    /// Channel values (see `tek_proto::message::telemetry::channel`).
    pub values: [i32; channel::COUNT],
}

impl TelemetryRow {
    /// The value of `ch` if the record has it.
    pub fn get(&self, ch: u8) -> Option<i32> {
        (usize::from(ch) < channel::COUNT && self.channels & (1 << ch) != 0)
            .then(|| self.values[usize::from(ch)])
    }

    /// Sets the value of each channel of its mask, in channel order, to what `next` gives for
    /// that channel; the first error ends it. How every decoder of a stored layout fills a
    /// record (a channel outside the mask keeps its 0).
    pub(crate) fn fill_values(&mut self, mut next: impl FnMut(usize) -> Result<i32>) -> Result<()> {
        for ch in 0..channel::COUNT {
            if self.channels & (1 << ch) != 0 {
                self.values[ch] = next(ch)?;
            }
        }
        Ok(())
    }
}

/// A range query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelemetryQuery {
    /// Device.
    pub device_id: u32,
    /// From this time, inclusive.
    pub from: i64,
    /// To this time, exclusive.
    pub to: i64,
    /// At most this many rows (oldest first).
    pub limit: usize,
}

/// A record's place in the order every read returns: (time, boot, seq), which both backends'
/// `telemetry_by_time` index on (device, time) delivers (SQLite's carries the primary key's boot
/// and seq, PostgreSQL sorts the few records of one second). Unique per device, so a page that
/// starts after the last key of the previous one neither skips nor repeats a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TelemetryKey {
    /// Time, Unix seconds.
    pub time: i64,
    /// Boot number.
    pub boot: u32,
    /// Sequence number within the boot.
    pub seq: u32,
}

impl TelemetryKey {
    /// The key of `r`.
    pub fn of(r: &TelemetryRow) -> Self {
        Self {
            time: r.time,
            boot: r.boot,
            seq: r.seq,
        }
    }
}

/// The columns of a telemetry record, in the order both backends decode a [`TelemetryRow`].
pub(super) const COLUMNS: &str = "device_id, boot, seq, time, channels,
    power_w, energy_wh, water_cc, air_cc, relays, ch5, ch6, ch7";

/// The statement of [`TelemetryStore::telemetry_page`], the same for both backends: the
/// [`COLUMNS`] of the records, `param` is the placeholder prefix (`?` SQLite, `$` PostgreSQL). Parameters:
/// device, the start key's time, boot and seq (from [`page_start`]), the end time, the limit.
/// `time >= start` bounds the index range; the rest skips the records of that second up to and
/// including the start key (boot and seq are never negative, so a start of `(from, -1, -1)`
/// takes the whole second).
pub(super) fn page_sql(param: &str) -> String {
    let p = |n: u8| format!("{param}{n}");
    let (device, time, boot, seq, to, limit) = (p(1), p(2), p(3), p(4), p(5), p(6));
    format!(
        "SELECT {COLUMNS} FROM telemetry
         WHERE device_id = {device} AND time >= {time} AND time < {to}
           AND (time > {time} OR boot > {boot} OR (boot = {boot} AND seq > {seq}))
         ORDER BY time, boot, seq LIMIT {limit}"
    )
}

/// The start of a page as the SQL values (time, boot, seq) of [`page_sql`]: records strictly
/// after `after`, never before `q.from`.
pub(super) fn page_start(q: &TelemetryQuery, after: Option<TelemetryKey>) -> (i64, i64, i64) {
    match after {
        Some(k) if k.time >= q.from => (k.time, i64::from(k.boot), i64::from(k.seq)),
        _ => (q.from, -1, -1),
    }
}

/// The start of the UTC day holding `t`.
pub(super) fn day_of(t: i64) -> i64 {
    t.div_euclid(super::chunk::DAY_S) * super::chunk::DAY_S
}

/// Records sealed per transaction at most (a device-day is never split across two), so a pass
/// over a large backlog holds a bounded amount in memory and in one transaction.
pub(super) const SEAL_BATCH_RECORDS: u64 = 200_000;

/// The first day whose raw records `retention_days` keeps at `now` (`None`: keep everything),
/// the same for rows and chunks and on both backends (PostgreSQL's partitions end there too).
pub fn keep_from(now: i64, retention_days: u32) -> Option<i64> {
    (retention_days > 0).then(|| day_of(now - i64::from(retention_days) * super::chunk::DAY_S))
}

/// The time of device `$1`'s first record: the earliest start of its chunks (a chunk's
/// `start_time` is its earliest record's time) and its earliest row, each one seek of an index
/// on `(device_id, time)`; NULL without records. Both backends run it.
pub const FIRST_TIME_SQL: &str = "SELECT MIN(t) FROM (
    SELECT MIN(start_time) AS t FROM telemetry_chunk WHERE device_id = $1
    UNION ALL
    SELECT MIN(time) AS t FROM telemetry WHERE device_id = $1) AS firsts";

/// Telemetry operations.
pub trait TelemetryStore {
    /// Inserts rows in one transaction; rows already stored are skipped. Returns how many were
    /// new. When this returns `Ok`, every row is durable.
    fn insert_telemetry(&self, rows: &[TelemetryRow]) -> Result<u64> {
        Ok(self.insert_telemetry_new(rows)?.len() as u64)
    }
    /// As [`TelemetryStore::insert_telemetry`], returning the rows that were new (stored by this
    /// call, in their order in `rows`): what the MQTT publisher publishes, so that a record
    /// stored once is published once, whichever server of a fleet received it first.
    fn insert_telemetry_new(&self, rows: &[TelemetryRow]) -> Result<Vec<TelemetryRow>>;
    /// Rows of a device in a time range, oldest first.
    fn telemetry(&self, q: &TelemetryQuery) -> Result<Vec<TelemetryRow>> {
        self.telemetry_page(q, None)
    }
    /// One page of a long read by keyset pagination: at most `q.limit` rows of the range in
    /// [`TelemetryKey`] order, those after `after` (the key of the previous page's last row;
    /// `None` for the first page). Each page is an index seek, however far into the range, so
    /// a device-year is read in pages without holding it in memory (the CSV export).
    fn telemetry_page(
        &self,
        q: &TelemetryQuery,
        after: Option<TelemetryKey>,
    ) -> Result<Vec<TelemetryRow>>;
    /// Number of records of a device (rows and sealed chunks).
    fn telemetry_count(&self, device_id: u32) -> Result<u64>;
    /// Time of a device's first record (rows and sealed chunks), if it has any: the time of
    /// the first row [`TelemetryStore::telemetry`] gives over all time, from two index seeks
    /// ([`FIRST_TIME_SQL`]) instead of a page that decodes the device's first chunk.
    fn first_record_time(&self, device_id: u32) -> Result<Option<i64>>;
    /// Moves the records of every closed UTC day (one that ended [`chunk::GRACE_S`] or more
    /// before `now`) from the `telemetry` table into chunks ([`super::chunk`]), one transaction
    /// per bounded batch of device-days, deleting the rows it sealed in the same transaction.
    /// Returns how many records it moved out of the table. SQLite, whose inbox fold may store
    /// a run of records as chunks already, also merges each closed day's chunks and rows into
    /// one chunk per boot (those records not counted unless they were rows).
    ///
    /// [`chunk::GRACE_S`]: super::chunk::GRACE_S
    fn seal_closed(&self, now: i64) -> Result<u64>;
}
