//! The telemetry inbox (issue 21: disk written per datagram).
//!
//! Why it exists: `telemetry`, `telemetry_wide` and their rollups are keyed by device first, so
//! a commit carrying the records of N devices dirtied about four B-tree pages per device (the
//! record, its time index, the 15-minute and the daily rollup), each a 4 KiB frame in the log.
//! With a commit every few milliseconds that was ~2 KB written per 1-record datagram. Here an
//! ingest commit appends its new records, as one row in a compact encoding
//! ([`super::inbox_codec`]), to a rowid table without any index — a commit mostly rewrites the
//! page the previous one left partly filled, however many devices it carries — and the records
//! move into the per-device tables later in bulk: the records of many commits at once, sorted
//! by device, so a device's pages are written once for all of them.
//!
//! Two tables take turns (migration 18; migration 17's had a row per record, and its Rust step
//! [`fold_legacy_tables`] stores what they held). Ingest appends to the *filling* one. Once it holds
//! [`FOLD_ROWS`] records, or its first record is [`FOLD_AGE`] old, it becomes the *folding*
//! one and ingest fills the other. The folding table's records are read once, sorted, and
//! stored in slices of about [`SLICE_ROWS`], one slice per transaction after each ingest commit
//! (so no commit waits for a whole fold); the last slice's transaction empties the table with
//! a `DELETE` without a condition, which frees its pages without writing them.
//!
//! What stays as it was:
//! - Idempotence on (device, boot, seq): a record is new only if no inbox table, no per-device
//!   table and no sealed chunk holds it. The keys the inbox holds are kept in memory.
//! - Durability: the inbox is in the same file, committed with `synchronous = FULL` before any
//!   Ack. After a crash, opening the database folds what both tables hold. Folding a record
//!   twice stores it once, and rollups are computed only from the records a fold actually
//!   inserted, so nothing is counted twice.
//! - Reads: every read of telemetry first folds whatever the inbox holds
//!   ([`Sqlite::telemetry_reader`]), so it sees every acknowledged record.

use super::inbox_codec::Encoder;
use super::Sqlite;
use crate::storage::wide::{WideRow, WideValues};
use crate::storage::{Error, Result, TelemetryRow};
use rusqlite::{Connection, TransactionBehavior};
use std::collections::HashSet;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tek_proto::message::telemetry::channel;

/// The two tables, by turn.
const TABLES: [&str; 2] = ["telemetry_inbox_batch_a", "telemetry_inbox_batch_b"];

/// Records in the filling table that start a fold: with 100 devices, ~500 records per device,
/// enough that a device's pages are written once for many records; ~3 MB of table.
pub(super) const FOLD_ROWS: usize = 50_000;

/// Age of the filling table's first record that starts a fold even below [`FOLD_ROWS`]: a quiet
/// fleet's records reach their per-device tables within this, and the inbox stays small.
pub(super) const FOLD_AGE: Duration = Duration::from_secs(10);

/// Records stored per fold transaction (a slice ends at a device's last record, up to twice
/// this): short enough that an ingest commit waiting for the writer waits a few milliseconds.
/// A device's records are not split below that, so the slice size does not change how often
/// a device's pages are written, only how long one transaction holds the writer.
pub(super) const SLICE_ROWS: usize = 2_048;

/// A record in the inbox: either layout.
#[derive(Debug, Clone)]
pub(super) enum Record {
    Narrow(TelemetryRow),
    Wide(WideRow),
}

impl Record {
    /// (device, is wide, boot, seq): the fold's order and the in-memory key.
    fn key(&self) -> Key {
        match self {
            Record::Narrow(r) => (r.device_id, false, r.boot, r.seq),
            Record::Wide(r) => (r.device_id, true, r.boot, r.seq),
        }
    }
}

type Key = (u32, bool, u32, u32);

/// A record type the inbox holds: the two layouts of [`crate::storage`].
pub(super) trait Inboxed: Clone {
    fn key(&self) -> Key;
    /// Appends it to a batch ([`super::inbox_codec`]).
    fn encode(&self, batch: &mut Encoder);
    /// Those of `rows` the per-device tables do not hold (checked in `tx`).
    fn not_stored(tx: &Connection, rows: &[Self]) -> Result<Vec<Self>>;
}

impl Inboxed for TelemetryRow {
    fn key(&self) -> Key {
        (self.device_id, false, self.boot, self.seq)
    }
    fn encode(&self, batch: &mut Encoder) {
        batch.narrow(self);
    }
    fn not_stored(tx: &Connection, rows: &[Self]) -> Result<Vec<Self>> {
        super::telemetry::not_stored(tx, rows)
    }
}

impl Inboxed for WideRow {
    fn key(&self) -> Key {
        (self.device_id, true, self.boot, self.seq)
    }
    fn encode(&self, batch: &mut Encoder) {
        batch.wide(self);
    }
    fn not_stored(tx: &Connection, rows: &[Self]) -> Result<Vec<Self>> {
        super::wide::not_stored(tx, rows)
    }
}

/// What the inbox holds, as this process knows it. Locked only by a holder of the writer
/// connection, after it (one order, no deadlock).
#[derive(Default)]
struct State {
    /// The table this process appends to (0 or 1).
    filling: usize,
    /// The keys each table holds.
    keys: [HashSet<Key>; 2],
    /// When the filling table got its first record.
    first_at: Option<Instant>,
    /// The fold in progress: the other table's records, sorted, and how many are stored.
    folding: Option<Folding>,
    /// The writer connection's `PRAGMA data_version` when this process last looked: it changes
    /// only when another connection (a second server or a CLI command on the same file)
    /// commits, and then the keys are read again.
    version: Option<i64>,
}

struct Folding {
    table: usize,
    records: Vec<Record>,
    /// `PRAGMA data_version` when the table was read. If another connection committed since,
    /// it may have appended to the table, which then holds more than `records`: the fold ends
    /// with [`Sqlite::fold_all`] (read, store and empty in one transaction) instead of
    /// emptying the table.
    version: i64,
    stored: usize,
}

impl State {
    fn holds(&self, k: &Key) -> bool {
        self.keys[0].contains(k) || self.keys[1].contains(k)
    }

    fn fold_due(&self) -> bool {
        self.keys[self.filling].len() >= FOLD_ROWS
            || self.first_at.is_some_and(|t| t.elapsed() >= FOLD_AGE)
    }
}

/// The inbox's state beside the database (see the module docs).
#[derive(Default)]
pub(super) struct Inbox {
    state: Mutex<State>,
}

impl Inbox {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The connection's `PRAGMA data_version` (changes when another connection commits).
fn data_version(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row("PRAGMA data_version", [], |r| r.get(0))?)
}

/// Whether either table holds a record (whoever appended it).
fn holds_any(conn: &Connection) -> Result<bool> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM telemetry_inbox_batch_a)
            OR EXISTS (SELECT 1 FROM telemetry_inbox_batch_b)",
        [],
        |r| r.get(0),
    )?)
}

impl Sqlite {
    /// Stores the new records among `rows` in the filling inbox table, in one transaction, and
    /// returns them (a record already held anywhere, or twice in `rows`, is not new). Then
    /// moves a fold on by a slice, if one is due.
    pub(super) fn inbox_append<R: Inboxed>(&self, rows: &[R]) -> Result<Vec<R>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.writer()?;
        let mut st = self.inbox.lock();
        // Immediate: the transaction reads the stored keys before it writes, and a deferred
        // one could not upgrade to writing after another process's commit (SQLITE_BUSY).
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version = data_version(&tx)?;
        if st.version != Some(version) {
            for (table, keys) in st.keys.iter_mut().enumerate() {
                *keys = read_table(&tx, table)?.iter().map(Record::key).collect();
            }
        }
        let mut fresh = HashSet::with_capacity(rows.len());
        let candidates: Vec<R> = rows
            .iter()
            .filter(|r| !st.holds(&r.key()) && fresh.insert(r.key()))
            .cloned()
            .collect();
        let new = R::not_stored(&tx, &candidates)?;
        if !new.is_empty() {
            let mut batch = Encoder::new();
            for r in &new {
                r.encode(&mut batch);
            }
            tx.prepare_cached(&format!(
                "INSERT INTO {} (batch) VALUES (?1)",
                TABLES[st.filling]
            ))?
            .execute([batch.finish()])?;
        }
        tx.commit()?;
        // This connection's own commits leave its data_version as it was.
        st.version = Some(version);
        if !new.is_empty() {
            let filling = st.filling;
            st.keys[filling].extend(new.iter().map(Inboxed::key));
            st.first_at.get_or_insert_with(Instant::now);
        }
        // The records are committed whatever happens next; a fold that fails here is tried
        // again by the next commit or read, and loses nothing.
        if let Err(e) = self.fold_step(&mut conn, &mut st) {
            tracing::warn!(%e, "moving the telemetry inbox into its tables failed; will retry");
        }
        Ok(new)
    }

    /// One step of folding: a slice of the fold in progress, or the start of one if due. While
    /// the filling table is already past [`FOLD_ROWS`] (ingest outruns the slices), the whole
    /// fold in progress, so the inbox stays bounded.
    fn fold_step(&self, conn: &mut Connection, st: &mut State) -> Result<()> {
        if st.folding.is_none() {
            if !st.fold_due() {
                return Ok(());
            }
            let table = st.filling;
            let version = data_version(conn)?;
            let records = read_table(conn, table)?;
            st.filling = 1 - table;
            st.first_at = None;
            st.folding = Some(Folding {
                table,
                records,
                version,
                stored: 0,
            });
        }
        let behind = st.keys[st.filling].len() >= FOLD_ROWS;
        while st.folding.is_some() {
            self.fold_slice(conn, st)?;
            if !behind {
                break;
            }
        }
        Ok(())
    }

    /// Stores the next slice of the fold in progress in one transaction; the last slice's
    /// transaction also empties the table.
    fn fold_slice(&self, conn: &mut Connection, st: &mut State) -> Result<()> {
        let Some(f) = st.folding.as_mut() else {
            return Ok(());
        };
        let end = slice_end(&f.records, f.stored);
        let last = end == f.records.len();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        store(&tx, &f.records[f.stored..end])?;
        if last {
            // Under the write lock: no other connection can commit between this look and the
            // DELETE.
            if data_version(&tx)? != f.version {
                tx.commit()?;
                return self.fold_all(conn, st);
            }
            tx.execute_batch(&format!("DELETE FROM {}", TABLES[f.table]))?;
        }
        tx.commit()?;
        f.stored = end;
        if last {
            let table = f.table;
            st.keys[table].clear();
            st.folding = None;
        }
        Ok(())
    }

    /// Moves everything both tables hold (whichever process appended it) into the per-device
    /// tables: one transaction per table, so a process appending meanwhile loses nothing.
    fn fold_all(&self, conn: &mut Connection, st: &mut State) -> Result<()> {
        // A fold in progress read its table; the table is read again below, and storing a
        // record twice stores it once.
        st.folding = None;
        for (table, name) in TABLES.iter().enumerate() {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let records = read_table(&tx, table)?;
            if records.is_empty() {
                continue;
            }
            store(&tx, &records)?;
            tx.execute_batch(&format!("DELETE FROM {name}"))?;
            tx.commit()?;
        }
        st.keys = Default::default();
        st.first_at = None;
        // Read again at the next append: another process may have appended meanwhile.
        st.version = None;
        Ok(())
    }

    /// Folds whatever the inbox holds: what every maintenance pass does first, and what
    /// opening the database does (records a crash or a stop left there).
    pub(super) fn fold_inbox(&self) -> Result<()> {
        let mut conn = self.writer()?;
        let mut st = self.inbox.lock();
        self.fold_all(&mut conn, &mut st)
    }

    /// A read connection for reads of telemetry and its rollups: if the inbox holds any
    /// record, it is folded first, so the read sees every acknowledged record.
    pub(super) fn telemetry_reader(&self) -> Result<super::Reader<'_>> {
        let reader = self.reader()?;
        if holds_any(&reader)? {
            self.fold_inbox()?;
        }
        Ok(reader)
    }

    /// Records the inbox holds now, as this process knows (tests and the benchmarks).
    pub fn inbox_records(&self) -> usize {
        let st = self.inbox.lock();
        st.keys[0].len() + st.keys[1].len()
    }
}

/// Every record of inbox table `table`, sorted for the fold (by device, layout, boot, seq).
fn read_table(conn: &Connection, table: usize) -> Result<Vec<Record>> {
    let mut stmt = conn.prepare_cached(&format!("SELECT batch FROM {}", TABLES[table]))?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let blob: Vec<u8> = r.get(0)?;
        out.extend(super::inbox_codec::decode(&blob)?);
    }
    out.sort_by_key(Record::key);
    Ok(out)
}

/// Where the slice starting at `from` ends: [`SLICE_ROWS`] records on, moved to the end of
/// that device's records if they end within as many again.
fn slice_end(records: &[Record], from: usize) -> usize {
    let len = records.len();
    let mut end = (from + SLICE_ROWS).min(len);
    let limit = (from + 2 * SLICE_ROWS).min(len);
    if end < len {
        let device = records[end - 1].key().0;
        let mut e = end;
        while e < limit && records[e].key().0 == device {
            e += 1;
        }
        if e < limit || e == len {
            end = e;
        }
    }
    end
}

/// Stores `records` (sorted) in their per-device tables in `tx`.
fn store(tx: &Connection, records: &[Record]) -> Result<()> {
    let mut narrow = Vec::new();
    let mut wide = Vec::new();
    for r in records {
        match r {
            Record::Narrow(r) => narrow.push(*r),
            Record::Wide(r) => wide.push(r.clone()),
        }
    }
    super::telemetry::store_rows(tx, &narrow)?;
    super::wide::store_rows(tx, &wide)?;
    Ok(())
}

/// The record of one row of migration 17's inbox tables (a record per row).
fn legacy_record(r: &rusqlite::Row<'_>) -> Result<Record> {
    let kind: i64 = r.get(0)?;
    let device_id = super::u32_col(r.get(1)?, "device id")?;
    let boot = super::u32_col(r.get(2)?, "boot")?;
    let seq = super::u32_col(r.get(3)?, "seq")?;
    let time: i64 = r.get(4)?;
    let meta: Option<i64> = r.get(5)?;
    let mask: Option<Vec<u8>> = r.get(6)?;
    let vals: Vec<u8> = r.get(7)?;
    match kind {
        0 => {
            let channels = meta
                .and_then(|m| u8::try_from(m).ok())
                .ok_or_else(|| Error::Corrupt(format!("inbox channel mask {meta:?}")))?;
            if vals.len() != 4 * channels.count_ones() as usize {
                return Err(Error::Corrupt(format!(
                    "inbox record of {} channels with {} value bytes",
                    channels.count_ones(),
                    vals.len()
                )));
            }
            let mut row = TelemetryRow {
                device_id,
                boot,
                seq,
                time,
                channels,
                values: [0; channel::COUNT],
            };
            let mut at = vals.chunks_exact(4);
            // Counted above: one 4-byte value per channel of the mask.
            row.fill_values(|_| {
                let b = at
                    .next()
                    .ok_or_else(|| Error::Corrupt("inbox values".into()))?;
                Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            })?;
            Ok(Record::Narrow(row))
        }
        1 => Ok(Record::Wide(WideRow {
            device_id,
            boot,
            seq,
            time,
            config_version: meta
                .map(|v| super::u32_col(v, "configuration version"))
                .transpose()?,
            values: WideValues::decode(mask.as_deref().unwrap_or_default(), &vals)?,
        })),
        k => Err(Error::Corrupt(format!("inbox record kind {k}"))),
    }
}

/// Migration 18: what migration 17's inbox tables (a row per record) hold is stored in the
/// per-device tables, in the migration's transaction, and the tables are dropped; the batch
/// tables take over.
pub(in crate::storage) fn fold_legacy_tables(tx: &Connection) -> Result<()> {
    for table in ["telemetry_inbox_a", "telemetry_inbox_b"] {
        let exists: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
            [table],
            |r| r.get(0),
        )?;
        if !exists {
            continue;
        }
        let mut records = {
            let mut stmt = tx.prepare(&format!(
                "SELECT kind, device_id, boot, seq, time, meta, mask, vals FROM {table}"
            ))?;
            let mut rows = stmt.query([])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                out.push(legacy_record(r)?);
            }
            out
        };
        records.sort_by_key(Record::key);
        store(tx, &records)?;
        tx.execute_batch(&format!("DROP TABLE {table}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::sqlite::tests::prepare;
    use crate::storage::wide::WideStore;
    use crate::storage::{
        DeviceStore, NewDevice, SeriesStore, TelemetryQuery, TelemetryRow, TelemetryStore,
    };
    use tek_proto::crypto::Key;

    const DAY: i64 = 20_000 * 86_400;

    fn devices(db: &Sqlite, n: u32) {
        let devices: Vec<NewDevice> = (1..=n)
            .map(|id| NewDevice {
                id,
                name: format!("d{id}"),
                key: Key([id as u8; 16]),
            })
            .collect();
        db.add_devices(&devices, 0).unwrap();
    }

    fn row(device_id: u32, seq: u32) -> TelemetryRow {
        TelemetryRow {
            device_id,
            boot: 1,
            seq,
            time: DAY + i64::from(seq) * 60,
            channels: 0b1_0011,
            values: [seq as i32, 1000 + seq as i32, 0, 0, -7, 0, 0, 0],
        }
    }

    fn all(db: &Sqlite, device_id: u32) -> Vec<TelemetryRow> {
        db.telemetry(&TelemetryQuery {
            device_id,
            from: 0,
            to: i64::MAX,
            limit: 1_000_000,
        })
        .unwrap()
    }

    /// Frames the log holds after the last commit, counted from an emptied log.
    fn frames_of(db: &Sqlite, commit: impl FnOnce()) -> i64 {
        // TRUNCATE answers busy (1) while the checkpoint thread or a reader is in the way; the
        // log is empty only once it answers 0.
        let emptied = (0..200).any(|_| {
            let busy = db
                .writer()
                .unwrap()
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                    r.get::<_, i64>(0)
                })
                .unwrap();
            busy == 0 || {
                std::thread::sleep(std::time::Duration::from_millis(10));
                false
            }
        });
        assert!(emptied, "the log could not be emptied");
        commit();
        db.writer()
            .unwrap()
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1))
            .unwrap()
    }

    /// The point of the inbox: a commit of one record for each of 300 devices, each with a
    /// history of its own, writes a handful of pages, not several per device as a commit into
    /// the per-device tables did.
    #[test]
    fn a_commit_writes_a_few_pages_whatever_the_devices() {
        let (_dir, db) = prepare();
        devices(&db, 300);
        // The history as rows: folds of a record per device, as a quiet fleet's (a fold of
        // many records per device writes chunks instead).
        for s in 0..100 {
            let round: Vec<TelemetryRow> = (1..=300).map(|d| row(d, s)).collect();
            db.insert_telemetry(&round).unwrap();
            db.fold_inbox().unwrap();
        }
        let one_each: Vec<TelemetryRow> = (1..=300).map(|d| row(d, 100)).collect();
        let frames = frames_of(&db, || {
            assert_eq!(db.insert_telemetry(&one_each).unwrap(), 300);
        });
        // 300 records of ~13 bytes: the page the fold left empty, and maybe one more.
        assert!(frames <= 3, "{frames} pages written for 300 records");
        assert_eq!(db.inbox_records(), 300);
        // Folded, every device's pages are written: what the inbox saves is one such pass
        // per commit.
        let folded = frames_of(&db, || db.fold_inbox().unwrap());
        assert!(folded > 300, "{folded} pages written by the fold");
        assert_eq!(db.inbox_records(), 0);
    }

    /// Records in the inbox are read like any other, stored once however often they come
    /// (while in the inbox, while being folded, after), and roll up once.
    #[test]
    fn retransmits_are_stored_once_at_every_stage() {
        let (_dir, db) = prepare();
        devices(&db, 3);
        let first: Vec<TelemetryRow> = (0..40).map(|s| row(1 + s % 3, s)).collect();
        let new = db.insert_telemetry_new(&first).unwrap();
        assert_eq!(new, first);
        // Twice in one batch, and again while in the inbox.
        let mut again = first[..10].to_vec();
        again.extend_from_slice(&first[..10]);
        again.push(row(2, 1000));
        again.push(row(2, 1000));
        assert_eq!(db.insert_telemetry_new(&again).unwrap(), vec![row(2, 1000)]);
        assert_eq!(db.inbox_records(), 41);
        // A read folds first, and sees everything.
        let of_1: Vec<TelemetryRow> = first.iter().filter(|r| r.device_id == 1).copied().collect();
        assert_eq!(all(&db, 1), of_1);
        assert_eq!(db.inbox_records(), 0);
        // After the fold, the per-device table is what says "stored".
        assert_eq!(db.insert_telemetry(&first).unwrap(), 0);
        assert_eq!(db.telemetry_count(2).unwrap(), 14);
        // One fold's rollups count each record once.
        let buckets = db.telemetry_buckets(1, DAY, DAY + 86_400, 86_400).unwrap();
        assert_eq!(buckets.len(), 1);
        assert_eq!(buckets[0].count, 14);
    }

    /// A fold is done in slices, one per ingest commit, while ingest fills the other table;
    /// retransmits of records in either table, or already folded, are never new; in the end
    /// every record is stored once and rolled up once.
    #[test]
    fn a_fold_in_slices_beside_ingest_stores_everything_once() {
        let (_dir, db) = prepare();
        devices(&db, 20);
        let per_device = (FOLD_ROWS as u32) / 20 + 50;
        let batch = |from: u32| -> Vec<TelemetryRow> {
            (from..from + 500)
                .flat_map(|s| (1..=20).map(move |d| row(d, s)))
                .filter(|r| r.seq < per_device)
                .collect()
        };
        let mut sent = 0u64;
        let mut from = 0;
        let mut saw_fold = false;
        while from < per_device {
            let rows = batch(from);
            sent += db.insert_telemetry(&rows).unwrap();
            // The previous batch again: in the inbox, being folded, or folded.
            if from >= 500 {
                assert_eq!(db.insert_telemetry(&batch(from - 500)).unwrap(), 0);
            }
            saw_fold |= db.inbox.lock().folding.is_some();
            from += 500;
        }
        assert!(saw_fold, "no fold was in progress between commits");
        assert_eq!(sent, u64::from(per_device) * 20);
        assert!(db.inbox_records() < 2 * FOLD_ROWS);
        for d in [1, 20] {
            assert_eq!(db.telemetry_count(d).unwrap(), u64::from(per_device));
            let day = db
                .telemetry_buckets(d, DAY, DAY + 400 * 86_400, 86_400)
                .unwrap();
            let counted: u32 = day.iter().map(|b| b.count).sum();
            assert_eq!(counted, per_device);
        }
    }

    /// What a crash leaves in the inbox (committed, never folded) is in the tables once the
    /// database is open again, rolled up once.
    #[test]
    fn records_left_in_the_inbox_are_folded_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let rows: Vec<TelemetryRow> = (0..30).map(|s| row(1, s)).collect();
        {
            let db = Sqlite::open_dir(dir.path()).unwrap();
            devices(&db, 1);
            assert_eq!(db.insert_telemetry(&rows).unwrap(), 30);
            assert_eq!(db.inbox_records(), 30);
            // Dropped without a fold, as a kill -9 would leave it.
        }
        let db = Sqlite::open_dir(dir.path()).unwrap();
        assert_eq!(db.inbox_records(), 0);
        let left: i64 = db
            .writer()
            .unwrap()
            .query_row(
                "SELECT (SELECT COUNT(*) FROM telemetry_inbox_batch_a)
                      + (SELECT COUNT(*) FROM telemetry_inbox_batch_b)",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(left, 0);
        assert_eq!(all(&db, 1), rows);
        assert_eq!(db.insert_telemetry(&rows).unwrap(), 0);
        let b = db.telemetry_buckets(1, DAY, DAY + 86_400, 86_400).unwrap();
        assert_eq!(b[0].count, 30);
    }

    /// Wide records go through the inbox too, with their values and configuration version
    /// exactly as sent, and retransmits are not new.
    #[test]
    fn wide_records_round_trip_through_the_inbox() {
        let (_dir, db) = prepare();
        devices(&db, 1);
        let rows: Vec<WideRow> = (0..5u32)
            .map(|s| WideRow {
                device_id: 1,
                boot: 2,
                seq: s,
                time: DAY + i64::from(s),
                config_version: (s % 2 == 0).then_some(s + 1),
                values: WideValues::from_options(&[
                    Some(s as i32),
                    None,
                    Some(-1_000_000),
                    Some(i32::MIN),
                    Some(i32::MAX),
                ]),
            })
            .collect();
        assert_eq!(db.insert_wide_new(&rows).unwrap(), rows);
        assert!(db.insert_wide_new(&rows).unwrap().is_empty());
        let q = TelemetryQuery {
            device_id: 1,
            from: 0,
            to: i64::MAX,
            limit: 100,
        };
        assert_eq!(db.wide_page(&q, None).unwrap(), rows);
        assert!(db.insert_wide_new(&rows).unwrap().is_empty());
        assert_eq!(db.wide_count(1).unwrap(), 5);
    }

    /// Two processes on one file (two servers, or a CLI command beside one): while one is
    /// folding a table, the other folds it whole and appends to it again. The first must not
    /// then empty the table: it sees the other's commits and folds everything in one
    /// transaction instead. Nothing is lost, nothing counted twice.
    #[test]
    fn another_process_refilling_a_table_mid_fold_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let a = Sqlite::open_dir(dir.path()).unwrap();
        let b = Sqlite::open_dir(dir.path()).unwrap();
        devices(&a, 3);
        // More than two slices of one device, so the fold takes several steps.
        let long: Vec<TelemetryRow> = (0..3 * SLICE_ROWS as u32).map(|s| row(1, s)).collect();
        assert_eq!(a.insert_telemetry(&long).unwrap(), long.len() as u64);
        a.inbox.lock().first_at = Instant::now().checked_sub(FOLD_AGE);
        assert_eq!(a.insert_telemetry(&[row(2, 0)]).unwrap(), 1);
        assert!(a.inbox.lock().folding.is_some(), "a's fold is under way");
        // b reads (folding both tables whole), then appends to an empty table: ids from 1.
        assert_eq!(b.telemetry_count(1).unwrap(), long.len() as u64);
        let late: Vec<TelemetryRow> = (0..3).map(|s| row(3, s)).collect();
        assert_eq!(b.insert_telemetry(&late).unwrap(), 3);
        // a goes on with its fold to the end.
        for s in 1..10 {
            a.insert_telemetry(&[row(2, s)]).unwrap();
        }
        assert!(a.inbox.lock().folding.is_none());
        assert_eq!(
            a.telemetry_count(3).unwrap(),
            3,
            "b's records survived a's fold"
        );
        assert_eq!(a.telemetry_count(2).unwrap(), 10);
        assert_eq!(b.telemetry_count(1).unwrap(), long.len() as u64);
        let day = a
            .telemetry_buckets(1, DAY, DAY + 400 * 86_400, 86_400)
            .unwrap();
        assert_eq!(day.iter().map(|b| b.count).sum::<u32>(), long.len() as u32);
    }

    /// A corrupt inbox row is an error, never a panic or a made-up record.
    #[test]
    fn a_corrupt_inbox_row_is_an_error() {
        let (_dir, db) = prepare();
        let conn = db.writer().unwrap();
        // A narrow record cut short in its values.
        conn.execute(
            "INSERT INTO telemetry_inbox_batch_a (batch) VALUES (X'01000101010003')",
            [],
        )
        .unwrap();
        assert!(matches!(read_table(&conn, 0), Err(Error::Corrupt(_))));
        // A layout this build does not know.
        conn.execute("UPDATE telemetry_inbox_batch_a SET batch = X'09'", [])
            .unwrap();
        assert!(matches!(read_table(&conn, 0), Err(Error::Corrupt(_))));
    }

    /// One ingest commit is one inbox row, however many records it carries, and its records
    /// come back exactly from it.
    #[test]
    fn a_commit_is_one_row_of_its_records() {
        let (_dir, db) = prepare();
        devices(&db, 50);
        let rows: Vec<TelemetryRow> = (1..=50).map(|d| row(d, 7)).collect();
        assert_eq!(db.insert_telemetry(&rows).unwrap(), 50);
        let conn = db.writer().unwrap();
        let (batches, bytes): (i64, i64) = conn
            .query_row(
                "SELECT COUNT(*), SUM(length(batch)) FROM telemetry_inbox_batch_a",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(batches, 1);
        assert!(
            bytes <= 50 * 14,
            "{bytes} bytes for 50 records of 3 channels"
        );
        let back: Vec<TelemetryRow> = read_table(&conn, 0)
            .unwrap()
            .into_iter()
            .map(|r| match r {
                Record::Narrow(r) => r,
                Record::Wide(_) => panic!("a narrow record came back wide"),
            })
            .collect();
        assert_eq!(back, rows);
    }

    /// A database whose inbox is in migration 17's tables (a row per record) keeps every
    /// record when migrated: they are stored, rolled up once, and the old tables are gone.
    #[test]
    fn migration_18_stores_what_the_old_inbox_tables_held() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = Sqlite::open_dir(dir.path()).unwrap();
            devices(&db, 2);
            let conn = db.writer().unwrap();
            conn.execute_batch(&format!(
                "DROP TABLE telemetry_inbox_batch_a; DROP TABLE telemetry_inbox_batch_b;
                 {}
                 INSERT INTO telemetry_inbox_a (kind, device_id, boot, seq, time, meta, mask, vals)
                   VALUES (0, 1, 1, 5, {DAY}, 3, NULL, X'0700000009000000');
                 INSERT INTO telemetry_inbox_b (kind, device_id, boot, seq, time, meta, mask, vals)
                   VALUES (0, 2, 1, 6, {DAY}, 1, NULL, X'FFFFFFFF'),
                          (1, 2, 1, 7, {DAY}, 4, X'05', X'0204');
                 PRAGMA user_version = 17;",
                crate::storage::schema::pending(16, crate::storage::schema::Dialect::Sqlite)
                    .unwrap()
                    .into_iter()
                    .find(|(v, _)| *v == 17)
                    .unwrap()
                    .1
            ))
            .unwrap();
        }
        let db = Sqlite::open_dir(dir.path()).unwrap();
        let mut one = TelemetryRow {
            device_id: 1,
            boot: 1,
            seq: 5,
            time: DAY,
            channels: 3,
            values: [7, 9, 0, 0, 0, 0, 0, 0],
        };
        assert_eq!(all(&db, 1), vec![one]);
        one = TelemetryRow {
            device_id: 2,
            seq: 6,
            channels: 1,
            values: [-1, 0, 0, 0, 0, 0, 0, 0],
            ..one
        };
        assert_eq!(all(&db, 2), vec![one]);
        assert_eq!(db.wide_count(2).unwrap(), 1);
        let left: i64 = db
            .writer()
            .unwrap()
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE name IN ('telemetry_inbox_a', 'telemetry_inbox_b')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(left, 0);
        let b = db.telemetry_buckets(1, DAY, DAY + 86_400, 86_400).unwrap();
        assert_eq!(b[0].count, 1);
    }
}
