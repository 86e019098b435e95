//! Raw telemetry of closed days, sealed into compact per-device time chunks (table
//! `telemetry_chunk`, schema version 15).
//!
//! Records arrive one row each in `telemetry` (cheap to insert, idempotent on (device, boot,
//! seq)). Once a UTC day is closed — its end plus [`GRACE_S`] has passed — `Storage::maintain`
//! moves its records into chunks ([`TelemetryStore::seal_closed`](super::TelemetryStore)): one
//! chunk per device, boot and UTC day (never spanning two boots or two days; at most
//! [`MAX_RECORDS`] records, a bigger group is cut in several), in the same transaction that
//! deletes the rows, so a crash leaves every record in exactly one of the two places. A record
//! arriving late for a sealed day lands in `telemetry` again and the next pass seals it into an
//! additional chunk of that day: a day may have several chunks, and every read merges chunks and
//! rows in (time, boot, seq) order. On SQLite the inbox's fold also writes chunks, for an open
//! day too: a run of many new records of one (device, boot, day) is stored as a chunk instead of
//! rows (`sqlite/telemetry.rs` `store_rows`); sealing a closed day then merges its chunks and
//! rows into what one seal of the day writes.
//!
//! The blob is columnar ([`encode`]): a version byte, then the columns time, seq, channel mask
//! and, per channel, only the values the records have (a channel without a value is no value,
//! never 0: the mask says which records have it), each column compressed by pcodec (delta and
//! bit packing chosen per column; a 1-minute series of a pool costs a few bits per value).
//! Decoding ([`decode`]) checks every length, count and range against the chunk's row and
//! returns [`Error::Corrupt`] for anything else — it never panics, whatever the bytes.
//!
//! Idempotence: a record retransmitted after its day was sealed is looked up in the chunks of
//! its (device, boot) whose seq range covers it ([`covering_sql`], an index seek that finds
//! nothing for a record newer than every chunk) and only such a chunk is decoded.

use super::telemetry::{TelemetryKey, TelemetryQuery, TelemetryRow};
use super::{Error, Result};
use std::collections::BTreeMap;
use tek_proto::message::telemetry::channel;

/// The first byte of every chunk blob: the layout below.
pub const VERSION: u8 = 1;
/// A closed day is sealed this long after it ends, so records still trickling in for it (a
/// controller's last datagrams before midnight, retransmissions) mostly arrive before.
pub const GRACE_S: i64 = 3_600;
/// Seconds per UTC day.
pub const DAY_S: i64 = 86_400;
/// Most records in one chunk (a device logging every second for a whole day fits): bounds the
/// memory a decode allocates whatever its row claims.
pub const MAX_RECORDS: usize = 100_000;
/// A chunk never spans two UTC days, so one that ends at or after `t` starts after
/// `t - MAX_SPAN_S`: reads bound the index range on `start_time` with it.
pub const MAX_SPAN_S: i64 = DAY_S - 1;
/// Chunks a read fetches per query while it walks a range in time order.
pub const FETCH_CHUNKS: usize = 8;

/// The columns of a chunk row other than its blob, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkMeta {
    /// Device.
    pub device_id: u32,
    /// Boot of every record of the chunk.
    pub boot: u32,
    /// Lowest seq of its records.
    pub first_seq: u32,
    /// Highest seq of its records.
    pub last_seq: u32,
    /// Earliest record time.
    pub start_time: i64,
    /// Latest record time (same UTC day as `start_time`).
    pub end_time: i64,
    /// Number of records.
    pub records: u32,
}

/// A chunk as read back: its row and its blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredChunk {
    /// The row.
    pub meta: ChunkMeta,
    /// The blob ([`encode`]).
    pub data: Vec<u8>,
}

/// The position of a chunk in the order reads walk them: (start time, boot, first seq), unique
/// per device (a record is in one chunk only, so two chunks of a boot never share a first seq).
pub type ChunkCursor = (i64, i64, i64);

impl ChunkMeta {
    /// Its place in the walk order.
    pub fn cursor(&self) -> ChunkCursor {
        (
            self.start_time,
            i64::from(self.boot),
            i64::from(self.first_seq),
        )
    }
}

/// The start of the first UTC day that is not closed at `now`: every record older than this can
/// be sealed.
pub fn sealable_before(now: i64) -> i64 {
    now.saturating_sub(GRACE_S).div_euclid(DAY_S) * DAY_S
}

/// The records of one device's day (any boots, any order) as chunks: grouped by boot, sorted
/// by (time, seq), cut after [`MAX_RECORDS`].
pub fn seal(rows: &[TelemetryRow]) -> Result<Vec<StoredChunk>> {
    let mut groups: BTreeMap<(u32, u32, i64), Vec<TelemetryRow>> = BTreeMap::new();
    for r in rows {
        groups
            .entry((r.device_id, r.boot, r.time.div_euclid(DAY_S)))
            .or_default()
            .push(*r);
    }
    let mut out = Vec::new();
    for (_, mut group) in groups {
        group.sort_by_key(|r| (r.time, r.seq));
        for part in group.chunks(MAX_RECORDS) {
            out.push(StoredChunk {
                meta: meta_of(part)?,
                data: encode(part)?,
            });
        }
    }
    Ok(out)
}

/// The row of a chunk holding `rows` (non-empty, one device and boot).
fn meta_of(rows: &[TelemetryRow]) -> Result<ChunkMeta> {
    let first = rows
        .first()
        .ok_or_else(|| Error::Backend("an empty telemetry chunk".into()))?;
    Ok(ChunkMeta {
        device_id: first.device_id,
        boot: first.boot,
        first_seq: rows.iter().map(|r| r.seq).min().unwrap_or(first.seq),
        last_seq: rows.iter().map(|r| r.seq).max().unwrap_or(first.seq),
        start_time: rows.iter().map(|r| r.time).min().unwrap_or(first.time),
        end_time: rows.iter().map(|r| r.time).max().unwrap_or(first.time),
        records: u32::try_from(rows.len())
            .map_err(|_| Error::Backend("telemetry chunk too large".into()))?,
    })
}

fn compressed<T: pco::data_types::Number>(column: &[T], out: &mut Vec<u8>) -> Result<()> {
    let bytes = if column.is_empty() {
        Vec::new()
    } else {
        pco::standalone::simple_compress(column, &pco::ChunkConfig::default())
            .map_err(|e| Error::Backend(format!("telemetry chunk compression: {e}")))?
    };
    let len = u32::try_from(bytes.len())
        .map_err(|_| Error::Backend("telemetry chunk column too large".into()))?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&bytes);
    Ok(())
}

/// The blob of `rows` (in the order given): [`VERSION`], then each column as a 4-byte
/// little-endian length and a pcodec standalone file (length 0: no values): time (`i64`), seq
/// (`u32`), channel mask (`u16`: pcodec refuses 8-bit columns), then for each channel 0..8 the values of the records whose
/// mask has it (`i32`).
pub fn encode(rows: &[TelemetryRow]) -> Result<Vec<u8>> {
    let mut out = vec![VERSION];
    let times: Vec<i64> = rows.iter().map(|r| r.time).collect();
    let seqs: Vec<u32> = rows.iter().map(|r| r.seq).collect();
    let masks: Vec<u16> = rows.iter().map(|r| u16::from(r.channels)).collect();
    compressed(&times, &mut out)?;
    compressed(&seqs, &mut out)?;
    compressed(&masks, &mut out)?;
    for ch in 0..channel::COUNT as u8 {
        let values: Vec<i32> = rows.iter().filter_map(|r| r.get(ch)).collect();
        compressed(&values, &mut out)?;
    }
    Ok(out)
}

fn corrupt(m: &ChunkMeta, what: impl std::fmt::Display) -> Error {
    Error::Corrupt(format!(
        "telemetry chunk of device {} boot {} from seq {}: {what}",
        m.device_id, m.boot, m.first_seq
    ))
}

/// Reads the blob column by column.
struct Columns<'a> {
    rest: &'a [u8],
    meta: &'a ChunkMeta,
}

impl Columns<'_> {
    /// The next column, which must hold exactly `n` numbers.
    fn next<T: pco::data_types::Number + Default>(
        &mut self,
        n: usize,
        what: &str,
    ) -> Result<Vec<T>> {
        let m = self.meta;
        let (len, rest) = self
            .rest
            .split_first_chunk::<4>()
            .ok_or_else(|| corrupt(m, format!("{what} column cut short")))?;
        let len = u32::from_le_bytes(*len) as usize;
        if len > rest.len() {
            return Err(corrupt(m, format!("{what} column cut short")));
        }
        let (bytes, rest) = rest.split_at(len);
        self.rest = rest;
        if n == 0 {
            return if len == 0 {
                Ok(Vec::new())
            } else {
                Err(corrupt(
                    m,
                    format!("{what} column has values, none expected"),
                ))
            };
        }
        let mut out = vec![T::default(); n];
        let progress = pco::standalone::simple_decompress_into(bytes, &mut out)
            .map_err(|e| corrupt(m, format!("{what} column: {e}")))?;
        if progress.n_processed != n || !progress.finished {
            return Err(corrupt(
                m,
                format!("{what} column does not hold {n} values"),
            ));
        }
        Ok(out)
    }
}

/// The records of a chunk, in their stored order, checked against its row: every column has
/// the row's number of records (each channel as many values as masks that have it), every time
/// and seq lies in the row's ranges, and nothing follows the last column.
pub fn decode(meta: &ChunkMeta, data: &[u8]) -> Result<Vec<TelemetryRow>> {
    let d = Decoded::of(meta, data)?;
    let mut values: Vec<std::slice::Iter<'_, i32>> = d.values.iter().map(|v| v.iter()).collect();
    let mut out = Vec::with_capacity(d.times.len());
    for i in 0..d.times.len() {
        let mut row = d.row_without_values(i);
        // Each column was decoded with exactly as many values as masks that have it.
        row.fill_values(|ch| {
            values[ch]
                .next()
                .copied()
                .ok_or_else(|| corrupt(meta, "channel short"))
        })?;
        out.push(row);
    }
    Ok(out)
}

/// The newest record of a chunk (greatest time, then boot and seq; the first such in stored
/// order) with the checks of [`decode`], without building a row for every record: what the
/// newest record of a device needs (issue 21, `/api/devices` of a page of devices).
pub fn newest(meta: &ChunkMeta, data: &[u8]) -> Result<TelemetryRow> {
    let d = Decoded::of(meta, data)?;
    let mut at = 0;
    for i in 1..d.times.len() {
        if (d.times[i], d.seqs[i]) > (d.times[at], d.seqs[at]) {
            at = i;
        }
    }
    let mut row = d.row_without_values(at);
    for (ch, column) in d.values.iter().enumerate() {
        if row.channels & (1 << ch) != 0 {
            // The record's value is the column's next after those of the earlier records that
            // have the channel.
            let before = d.masks[..at]
                .iter()
                .filter(|&&m| m & (1 << ch) != 0)
                .count();
            row.values[ch] = *column
                .get(before)
                .ok_or_else(|| corrupt(meta, "channel short"))?;
        }
    }
    Ok(row)
}

/// A chunk's columns, decoded and checked as [`decode`] says.
struct Decoded<'a> {
    meta: &'a ChunkMeta,
    times: Vec<i64>,
    seqs: Vec<u32>,
    masks: Vec<u8>,
    /// Per channel, the values of the records whose mask has it.
    values: Vec<Vec<i32>>,
}

impl<'a> Decoded<'a> {
    fn of(m: &'a ChunkMeta, data: &[u8]) -> Result<Decoded<'a>> {
        let n = m.records as usize;
        if n == 0 || n > MAX_RECORDS {
            return Err(corrupt(m, format!("{n} records")));
        }
        match data.first() {
            Some(&VERSION) => {}
            Some(v) => return Err(corrupt(m, format!("unknown version {v}"))),
            None => return Err(corrupt(m, "empty")),
        }
        let mut cols = Columns {
            rest: &data[1..],
            meta: m,
        };
        let times: Vec<i64> = cols.next(n, "time")?;
        let seqs: Vec<u32> = cols.next(n, "seq")?;
        let masks: Vec<u16> = cols.next(n, "channel mask")?;
        let mut values = Vec::with_capacity(channel::COUNT);
        for ch in 0..channel::COUNT {
            let present = masks.iter().filter(|&&mask| mask & (1 << ch) != 0).count();
            values.push(cols.next::<i32>(present, "channel")?);
        }
        if !cols.rest.is_empty() {
            return Err(corrupt(m, "bytes after the last column"));
        }
        let masks = masks
            .into_iter()
            .zip(times.iter().zip(&seqs))
            .map(|(mask, (&time, &seq))| {
                let mask =
                    u8::try_from(mask).map_err(|_| corrupt(m, format!("channel mask {mask}")))?;
                if !(m.start_time..=m.end_time).contains(&time)
                    || !(m.first_seq..=m.last_seq).contains(&seq)
                {
                    return Err(corrupt(
                        m,
                        format!("record {seq} at {time} outside the chunk's ranges"),
                    ));
                }
                Ok(mask)
            })
            .collect::<Result<Vec<u8>>>()?;
        Ok(Decoded {
            meta: m,
            times,
            seqs,
            masks,
            values,
        })
    }

    /// Record `i` with its values still 0.
    fn row_without_values(&self, i: usize) -> TelemetryRow {
        TelemetryRow {
            device_id: self.meta.device_id,
            boot: self.meta.boot,
            seq: self.seqs[i],
            time: self.times[i],
            channels: self.masks[i],
            values: [0; channel::COUNT],
        }
    }
}

/// Of the chunk rows found for a batch of records (those whose seq ranges cover some of them),
/// the (device, boot, seq) of every record they hold, decoding each once.
pub fn sealed_keys(found: &[StoredChunk]) -> Result<std::collections::HashSet<(u32, u32, u32)>> {
    let mut keys = std::collections::HashSet::new();
    for c in found {
        for r in decode(&c.meta, &c.data)? {
            keys.insert((r.device_id, r.boot, r.seq));
        }
    }
    Ok(keys)
}

/// Per (device, boot) of `rows`, the lowest and highest seq: what [`covering_sql`] looks up.
pub fn seq_ranges(rows: &[TelemetryRow]) -> Vec<(u32, u32, u32, u32)> {
    let mut by: BTreeMap<(u32, u32), (u32, u32)> = BTreeMap::new();
    for r in rows {
        let e = by.entry((r.device_id, r.boot)).or_insert((r.seq, r.seq));
        e.0 = e.0.min(r.seq);
        e.1 = e.1.max(r.seq);
    }
    by.into_iter()
        .map(|((d, b), (lo, hi))| (d, b, lo, hi))
        .collect()
}

/// The columns of a chunk row in the order [`ChunkMeta`] is decoded from, then the blob.
pub const CHUNK_COLUMNS: &str =
    "device_id, boot, first_seq, last_seq, start_time, end_time, records, data";

/// The chunks of device `p1`, boot `p2` whose seq range meets `[p3, p4]`: the seek of the
/// idempotence check, on the index (device_id, boot, last_seq) — it visits only chunks ending
/// at or after the lowest seq, none for records newer than every sealed one.
pub fn covering_sql(param: &str) -> String {
    format!(
        "SELECT {CHUNK_COLUMNS} FROM telemetry_chunk
         WHERE device_id = {param}1 AND boot = {param}2 AND last_seq >= {param}3
           AND first_seq <= {param}4"
    )
}

/// Up to `p5` chunks of device `p1` in walk order after the cursor `(p2, p3, p4)` that may hold
/// records at or after `p6` and before `p7`: an index range on (device_id, start_time) bounded
/// below by `p8`, which is `p6 -` [`MAX_SPAN_S`] (a parameter of its own, so that PostgreSQL
/// types every parameter from its column).
pub fn walk_sql(param: &str) -> String {
    let p = |n: u8| format!("{param}{n}");
    format!(
        "SELECT {CHUNK_COLUMNS} FROM telemetry_chunk
         WHERE device_id = {d} AND start_time >= {t} AND start_time >= {lowest}
           AND start_time < {to} AND end_time >= {from}
           AND (start_time > {t} OR boot > {b} OR (boot = {b} AND first_seq > {s}))
         ORDER BY start_time, boot, first_seq LIMIT {n}",
        d = p(1),
        t = p(2),
        b = p(3),
        s = p(4),
        n = p(5),
        from = p(6),
        to = p(7),
        lowest = p(8),
    )
}

/// The cursor before every chunk.
pub const WALK_START: ChunkCursor = (i64::MIN, -1, -1);

/// Fetches the next chunks of a walk: `(device, after cursor, limit, from, to)`, the parameters
/// of [`walk_sql`].
pub trait ChunkWalk {
    /// The next at most `limit` chunks after `after` meeting `[from, to)`.
    fn next_chunks(
        &mut self,
        device_id: u32,
        after: ChunkCursor,
        limit: usize,
        from: i64,
        to: i64,
    ) -> Result<Vec<StoredChunk>>;
}

impl<F> ChunkWalk for F
where
    F: FnMut(u32, ChunkCursor, usize, i64, i64) -> Result<Vec<StoredChunk>>,
{
    fn next_chunks(
        &mut self,
        device_id: u32,
        after: ChunkCursor,
        limit: usize,
        from: i64,
        to: i64,
    ) -> Result<Vec<StoredChunk>> {
        self(device_id, after, limit, from, to)
    }
}

/// Calls `each` with every sealed record of `device` in `[from, to)`, chunk by chunk in
/// start-time order (not sorted across chunks), until it returns `false` after a chunk.
/// `each` gets the chunk's row too, so a caller can stop once chunks start too late.
pub fn for_each_sealed(
    walk: &mut dyn ChunkWalk,
    device_id: u32,
    from: i64,
    to: i64,
    mut each: impl FnMut(&ChunkMeta, Vec<TelemetryRow>) -> bool,
) -> Result<()> {
    let mut after = WALK_START;
    loop {
        let chunks = walk.next_chunks(device_id, after, FETCH_CHUNKS, from, to)?;
        let Some(last) = chunks.last() else {
            return Ok(());
        };
        after = last.meta.cursor();
        let done = chunks.len() < FETCH_CHUNKS;
        for c in &chunks {
            let rows: Vec<TelemetryRow> = decode(&c.meta, &c.data)?
                .into_iter()
                .filter(|r| (from..to).contains(&r.time))
                .collect();
            if !each(&c.meta, rows) {
                return Ok(());
            }
        }
        if done {
            return Ok(());
        }
    }
}

fn sort_key(r: &TelemetryRow) -> (i64, u32, u32) {
    (r.time, r.boot, r.seq)
}

/// One keyset page ([`super::TelemetryStore::telemetry_page`]) of chunks and rows merged:
/// `table_page` is the page of the `telemetry` table alone (at most `q.limit` rows after the
/// start); the chunks are walked in start-time order only until no later chunk can hold a
/// record of the page.
pub fn merged_page(
    walk: &mut dyn ChunkWalk,
    q: &TelemetryQuery,
    after: Option<TelemetryKey>,
    table_page: Vec<TelemetryRow>,
) -> Result<Vec<TelemetryRow>> {
    let (time, boot, seq) = super::telemetry::page_start(q, after);
    let start = (time, boot, seq);
    let mut out = table_page;
    // Until `out` holds a whole page, every chunk counts; after that only those starting no
    // later than the page's last record.
    let mut bound = i64::MAX;
    if out.len() >= q.limit {
        bound = out.iter().map(|r| r.time).max().unwrap_or(i64::MAX);
    }
    for_each_sealed(walk, q.device_id, time, q.to, |meta, rows| {
        if meta.start_time > bound {
            return false;
        }
        out.extend(
            rows.into_iter()
                .filter(|r| (r.time, i64::from(r.boot), i64::from(r.seq)) > start),
        );
        if out.len() >= q.limit {
            out.sort_unstable_by_key(sort_key);
            out.truncate(q.limit);
            bound = out.last().map_or(i64::MAX, |r| r.time);
        }
        true
    })?;
    out.sort_unstable_by_key(sort_key);
    out.truncate(q.limit);
    Ok(out)
}

/// The newest of `table_latest` (the newest row of `telemetry`) and the sealed records of the
/// chunks `candidates` (those starting within [`MAX_SPAN_S`] of the newest chunk start), each
/// chunk decoded: what [`crate::storage::newest_memo::NewestMemo::latest_of`], which the
/// backends call, is checked against.
#[cfg(test)]
pub fn latest_of(
    table_latest: Option<TelemetryRow>,
    candidates: &[StoredChunk],
) -> Result<Option<TelemetryRow>> {
    let mut best = table_latest;
    for c in candidates {
        best = newer_with_chunk(best, &c.meta, || newest(&c.meta, &c.data))?;
    }
    Ok(best)
}

/// `best` after looking at the chunk `meta`: the newer, in the read order (time, boot, seq),
/// of `best` and the chunk's newest record, which `newest_of` gives (decoded, or remembered:
/// [`crate::storage::newest_memo`]); `best` on a tie. A chunk whose last record is older than
/// `best` cannot hold a newer one, and is not decoded.
pub fn newer_with_chunk(
    best: Option<TelemetryRow>,
    meta: &ChunkMeta,
    newest_of: impl FnOnce() -> Result<TelemetryRow>,
) -> Result<Option<TelemetryRow>> {
    if best.is_some_and(|b| b.time > meta.end_time) {
        return Ok(best);
    }
    let r = newest_of()?;
    Ok(Some(match best {
        Some(b) if sort_key(&r) <= sort_key(&b) => b,
        _ => r,
    }))
}

/// The newest chunks of device `p1`: those starting within [`MAX_SPAN_S`] of the newest start,
/// which include the one holding its newest sealed record.
pub fn newest_sql(param: &str) -> String {
    format!(
        "SELECT {CHUNK_COLUMNS} FROM telemetry_chunk
         WHERE device_id = {param}1 AND start_time >= (
             SELECT MAX(start_time) FROM telemetry_chunk WHERE device_id = {param}1) - {MAX_SPAN_S}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn row(boot: u32, seq: u32, time: i64, channels: u8, base: i32) -> TelemetryRow {
        let mut values = [0; channel::COUNT];
        for (ch, v) in values.iter_mut().enumerate() {
            if channels & (1 << ch) != 0 {
                *v = base + ch as i32 * 1000;
            }
        }
        TelemetryRow {
            device_id: 7,
            boot,
            seq,
            time,
            channels,
            values,
        }
    }

    #[test]
    fn a_day_round_trips_with_missing_values_and_is_small() {
        let day = 20_000 * DAY_S;
        let rows: Vec<TelemetryRow> = (0..1440u32)
            .map(|m| {
                // Every tenth record lacks the water temperature: no value, not 0.
                let mask = if m % 10 == 0 { 0b1_1011 } else { 0b1_1111 };
                row(
                    3,
                    100 + m,
                    day + i64::from(m) * 60,
                    mask,
                    (m as i32 % 37) - 5,
                )
            })
            .collect();
        let chunks = seal(&rows).unwrap();
        assert_eq!(chunks.len(), 1);
        let c = &chunks[0];
        assert_eq!(
            c.meta,
            ChunkMeta {
                device_id: 7,
                boot: 3,
                first_seq: 100,
                last_seq: 1539,
                start_time: day,
                end_time: day + 1439 * 60,
                records: 1440,
            }
        );
        assert_eq!(c.data[0], VERSION);
        assert_eq!(decode(&c.meta, &c.data).unwrap(), rows);
        assert!(
            c.data.len() < 1440 * 4,
            "{} bytes for 1440 records",
            c.data.len()
        );
    }

    #[test]
    fn seal_cuts_by_boot_and_day() {
        let day = 20_000 * DAY_S;
        let rows = [
            row(2, 5, day + DAY_S + 1, 1, 1),
            row(1, 9, day + 10, 1, 2),
            row(1, 8, day + 20, 0, 0),
            row(2, 4, day + DAY_S - 1, 0b11, 3),
        ];
        let chunks = seal(&rows).unwrap();
        let metas: Vec<(u32, i64, i64, u32)> = chunks
            .iter()
            .map(|c| {
                (
                    c.meta.boot,
                    c.meta.start_time,
                    c.meta.end_time,
                    c.meta.records,
                )
            })
            .collect();
        assert_eq!(
            metas,
            vec![
                (1, day + 10, day + 20, 2),
                (2, day + DAY_S - 1, day + DAY_S - 1, 1),
                (2, day + DAY_S + 1, day + DAY_S + 1, 1),
            ]
        );
        let first = decode(&chunks[0].meta, &chunks[0].data).unwrap();
        assert_eq!(first, vec![rows[1], rows[2]]);
        assert_eq!(sealable_before(day + DAY_S + GRACE_S - 1), day);
        assert_eq!(sealable_before(day + DAY_S + GRACE_S), day + DAY_S);
    }

    #[test]
    fn damaged_chunks_are_errors() {
        let day = 20_000 * DAY_S;
        let rows: Vec<TelemetryRow> = (0..50)
            .map(|i| row(1, i, day + i64::from(i), 0b101, 9))
            .collect();
        let c = &seal(&rows).unwrap()[0];
        let bad = |meta: ChunkMeta, data: &[u8]| {
            assert!(matches!(decode(&meta, data), Err(Error::Corrupt(_))));
            assert!(matches!(newest(&meta, data), Err(Error::Corrupt(_))));
        };
        bad(c.meta, &[]);
        bad(c.meta, &[2]);
        bad(c.meta, &c.data[..c.data.len() - 1]);
        bad(c.meta, &[c.data.as_slice(), &[0]].concat());
        bad(
            ChunkMeta {
                records: 49,
                ..c.meta
            },
            &c.data,
        );
        bad(
            ChunkMeta {
                records: 51,
                ..c.meta
            },
            &c.data,
        );
        bad(
            ChunkMeta {
                records: 0,
                ..c.meta
            },
            &c.data,
        );
        bad(
            ChunkMeta {
                end_time: day + 10,
                ..c.meta
            },
            &c.data,
        );
        bad(
            ChunkMeta {
                last_seq: 10,
                ..c.meta
            },
            &c.data,
        );
    }

    proptest! {
        #[test]
        fn any_bytes_decode_to_an_answer(
            data in proptest::collection::vec(any::<u8>(), 0..600),
            records in 0u32..300,
        ) {
            let meta = ChunkMeta {
                device_id: 1,
                boot: 1,
                first_seq: 0,
                last_seq: u32::MAX,
                start_time: i64::MIN,
                end_time: i64::MAX,
                records,
            };
            let mut blob = data.clone();
            let _ = decode(&meta, &blob);
            let _ = newest(&meta, &blob);
            // Also behind a valid version byte, where the column parser has to reject it.
            blob.insert(0, VERSION);
            let _ = decode(&meta, &blob);
            let _ = newest(&meta, &blob);
        }

        #[test]
        fn damaged_real_chunks_decode_to_an_answer(
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        ) {
            let rows: Vec<TelemetryRow> =
                (0..200).map(|i| row(1, i, 1_000 + i64::from(i) * 60, 0b1_0111, i as i32)).collect();
            let c = &seal(&rows).unwrap()[0];
            let mut data = c.data.clone();
            for (at, x) in flips {
                let i = at % data.len();
                data[i] ^= x | 1;
            }
            let _ = decode(&c.meta, &data);
            let _ = newest(&c.meta, &data);
        }

        #[test]
        fn newest_is_the_greatest_decoded_record(
            // Few distinct times, so records share them and the seq decides; any channel mask.
            spec in proptest::collection::vec((any::<u8>(), any::<i32>(), 0i64..20), 1..300),
        ) {
            let rows: Vec<TelemetryRow> = spec
                .iter()
                .enumerate()
                .map(|(i, &(mask, v, t))| {
                    let mut r = row(2, (i as u32 * 7919) % 1_000, 40 * DAY_S + t * 60, mask, 0);
                    for ch in 0..channel::COUNT {
                        if mask & (1 << ch) != 0 {
                            r.values[ch] = v.wrapping_mul(ch as i32 + 1);
                        }
                    }
                    r
                })
                .collect();
            for c in seal(&rows).unwrap() {
                let all = decode(&c.meta, &c.data).unwrap();
                // What `latest_of` did with every decoded record: the first of the greatest.
                let mut want = all[0];
                for r in &all {
                    if sort_key(r) > sort_key(&want) {
                        want = *r;
                    }
                }
                prop_assert_eq!(newest(&c.meta, &c.data).unwrap(), want);
            }
        }

        #[test]
        fn records_round_trip(
            spec in proptest::collection::vec((0u32..3, any::<u8>(), any::<i32>(), 0i64..86_400), 1..200),
        ) {
            let rows: Vec<TelemetryRow> = spec
                .iter()
                .enumerate()
                .map(|(i, &(boot, mask, v, t))| {
                    let mut r = row(boot, i as u32, 40 * DAY_S + t, mask, 0);
                    for ch in 0..channel::COUNT {
                        if mask & (1 << ch) != 0 {
                            r.values[ch] = v.wrapping_add(ch as i32);
                        }
                    }
                    r
                })
                .collect();
            let mut back = Vec::new();
            for c in seal(&rows).unwrap() {
                back.extend(decode(&c.meta, &c.data).unwrap());
            }
            back.sort_by_key(|r| r.seq);
            prop_assert_eq!(back, rows);
        }
    }
}
