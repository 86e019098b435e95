//! The telemetry inbox (issue 21: disk written per datagram).
//!
//! Why it exists: `telemetry`, `telemetry_wide` and their rollups are keyed by device first, so
//! a commit carrying the records of N devices dirtied about four B-tree pages per device (the
//! record, its time index, the 15-minute and the daily rollup), each a 4 KiB frame in the log.
//! With a commit every few milliseconds that was ~2 KB written per 1-record datagram. Here an
//! ingest commit appends its new records, in a compact encoding ([`super::inbox_codec`]), as one
//! frame to a journal file of the inbox's own ([`super::journal`]) and syncs it: one or two pages
//! of the OS, however many devices it carries, and no SQLite page at all. The records move into
//! the per-device tables later in bulk: the records of many commits at once, sorted by device,
//! so a device's pages are written once for all of them. (Migrations 17 and 18 kept the inbox in
//! SQLite tables; each commit then still wrote the table's tail, interior, freelist and header
//! pages to the log, and the checkpoint wrote them again: ~120 B per record at 100 devices.)
//!
//! Two journal files take turns (a *pair*). Ingest appends to the *filling* one. Once it holds
//! [`FOLD_ROWS`] records, or its first record is [`FOLD_AGE`] old, or the next batch does not fit
//! in it, it becomes the *folding* one and ingest fills the other. The folding file's records are
//! read once, sorted, and stored in slices of about [`SLICE_ROWS`], one slice per SQLite
//! transaction after each ingest commit (so no commit waits for a whole fold); once the last
//! slice is committed, the file is reset (a new generation in its header) and is free again.
//! A batch that cannot go to the journal (bigger than a file, or the file failed) is stored in
//! SQLite at once, as before the inbox existed: never lost, never refused.
//!
//! What stays as it was:
//! - Idempotence on (device, boot, seq): a record is new only if this process's journal (the
//!   keys it holds, kept in memory), the per-device tables and the sealed chunks do not hold it.
//! - Durability: a batch's frame is synced (`fdatasync`) before any Ack of its records. After a
//!   crash, opening the database folds what the journal holds, up to the first frame that is not
//!   whole (a torn last frame was never acknowledged). Folding a record twice stores it once,
//!   and rollups are computed only from the records a fold actually inserted, so a crash between
//!   a fold's last commit and the file's reset loses and doubles nothing.
//! - Reads: every read of telemetry first folds whatever this process's inbox holds
//!   ([`Sqlite::telemetry_reader`]), so it sees every record this process acknowledged.
//!
//! Other processes on the same database (a second `tek serve`, a CLI command beside a server):
//! each takes a pair of its own, the first whose lock it gets (`tek.db-inbox-0-a`/`-b`, then
//! `-1-`, ...), and keeps it while open. A pair nobody holds belongs to a process that crashed or
//! stopped: opening the database and every maintenance pass fold it ([`Sqlite::fold_orphans`]).
//! So another live process's records appear here once it folds them, within [`FOLD_AGE`] (or its
//! next read or maintenance pass), not at once as when the inbox was a table every connection
//! could read. A record sent to two live processes is in both journals and stored once: each
//! fold checks the per-device tables and chunks in its transaction, and the primary key holds.
//! A graceful close (dropping the [`Sqlite`]) folds this process's pair. Since other processes
//! see records only once they are folded, a fold that is due is not left waiting for the next
//! commit: a thread of its own ([`Folder`]) folds it, a slice per hold of the writer, when no
//! commit comes (a quiet server's last records reach the tables within [`FOLD_AGE`] + [`FOLD_TICK`]).

use super::inbox_codec::Encoder;
use super::journal::{self, Journal, Lock};
use super::Sqlite;
use crate::storage::wide::{WideRow, WideValues};
use crate::storage::{Error, Result, TelemetryRow};
use rusqlite::{Connection, TransactionBehavior};
use std::collections::HashSet;
use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tek_proto::message::telemetry::channel;

/// Records in the filling file that start a fold: with 100 devices, ~500 records per device,
/// enough that a device's pages are written once for many records; ~0.7 MB of journal.
pub(super) const FOLD_ROWS: usize = 50_000;

/// Age of the filling file's first record that starts a fold even below [`FOLD_ROWS`]: a quiet
/// fleet's records reach their per-device tables within this, and the inbox stays small.
pub(super) const FOLD_AGE: Duration = Duration::from_secs(10);

/// Records stored per fold transaction (a slice ends at a device's last record, up to twice
/// this): short enough that an ingest commit waiting for the writer waits a few milliseconds.
/// A device's records are not split below that, so the slice size does not change how often
/// a device's pages are written, only how long one transaction holds the writer.
pub(super) const SLICE_ROWS: usize = 2_048;

/// How often the fold thread ([`Folder`]) looks whether a fold is due.
const FOLD_TICK: Duration = Duration::from_secs(1);

/// Journal pairs tried at open: as many processes on one database at once.
const MAX_PAIRS: u32 = 64;

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
    /// As a record of either layout.
    fn record(&self) -> Record;
    /// Its time: the fold may seal the day it falls in ([`super::telemetry`] `unmerged_days`).
    fn time(&self) -> i64;
}

impl Inboxed for TelemetryRow {
    fn key(&self) -> Key {
        (self.device_id, false, self.boot, self.seq)
    }
    fn time(&self) -> i64 {
        self.time
    }
    fn encode(&self, batch: &mut Encoder) {
        batch.narrow(self);
    }
    fn not_stored(tx: &Connection, rows: &[Self]) -> Result<Vec<Self>> {
        super::telemetry::not_stored(tx, rows)
    }
    fn record(&self) -> Record {
        Record::Narrow(*self)
    }
}

impl Inboxed for WideRow {
    fn key(&self) -> Key {
        (self.device_id, true, self.boot, self.seq)
    }
    fn time(&self) -> i64 {
        self.time
    }
    fn encode(&self, batch: &mut Encoder) {
        batch.wide(self);
    }
    fn not_stored(tx: &Connection, rows: &[Self]) -> Result<Vec<Self>> {
        super::wide::not_stored(tx, rows)
    }
    fn record(&self) -> Record {
        Record::Wide(self.clone())
    }
}

/// What the inbox holds. Locked by a holder of the writer connection, after it (one order, no
/// deadlock); a look at whether it holds anything may lock it alone, briefly.
struct State {
    /// This process's journal pair: its number and its two files.
    pair: u32,
    files: [Journal; 2],
    /// The file this process appends to (0 or 1).
    filling: usize,
    /// The keys each file holds.
    keys: [HashSet<Key>; 2],
    /// When the filling file got its first record.
    first_at: Option<Instant>,
    /// The fold in progress: the other file's records, sorted, and how many are stored.
    folding: Option<Folding>,
    /// An append failed: what its file holds is unknown past that point, so batches go straight
    /// to SQLite from then on (the files' earlier frames still fold as usual).
    broken: bool,
}

struct Folding {
    file: usize,
    records: Vec<Record>,
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
pub(super) struct Inbox {
    state: Mutex<State>,
    /// Set by tests that drop a database as a kill -9 would leave it: no fold at the drop.
    #[cfg(test)]
    killed: std::sync::atomic::AtomicBool,
}

impl Inbox {
    /// Takes the first journal pair beside database file `db` that no other open database
    /// holds, creating it if needed. Its files may hold records (a crashed process's): the
    /// caller folds them ([`Sqlite::fold_inbox`]) before appending.
    pub(super) fn open(db: &Path) -> Result<Inbox> {
        for pair in 0..MAX_PAIRS {
            let [a, b] = journal::pair_paths(db, pair);
            let first = Journal::open(&a, journal::CAPACITY)?;
            if let Lock::Held = first.try_lock()? {
                continue;
            }
            let second = Journal::open(&b, journal::CAPACITY)?;
            return Ok(Inbox {
                state: Mutex::new(State {
                    pair,
                    files: [first, second],
                    filling: 0,
                    keys: Default::default(),
                    first_at: None,
                    folding: None,
                    broken: false,
                }),
                #[cfg(test)]
                killed: Default::default(),
            });
        }
        Err(Error::Backend(format!(
            "all {MAX_PAIRS} inbox journal pairs beside {} are held by open databases",
            db.display()
        )))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Sqlite {
    /// Stores the new records among `rows` in the filling journal file, synced, and returns
    /// them (a record already held anywhere, or twice in `rows`, is not new). Then moves a
    /// fold on by a slice, if one is due.
    pub(super) fn inbox_append<R: Inboxed>(&self, rows: &[R]) -> Result<Vec<R>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.writer()?;
        let mut st = self.inbox.lock();
        let mut fresh = HashSet::with_capacity(rows.len());
        let candidates: Vec<R> = rows
            .iter()
            .filter(|r| !st.holds(&r.key()) && fresh.insert(r.key()))
            .cloned()
            .collect();
        // Only reads: one snapshot for all the checks. Nothing of SQLite is written here.
        let new = {
            let tx = conn.transaction()?;
            let new = R::not_stored(&tx, &candidates)?;
            tx.commit()?;
            new
        };
        if let Some(t) = new.iter().map(Inboxed::time).min() {
            self.chunks_written_since(t);
        }
        if !new.is_empty() {
            let mut batch = Encoder::new();
            for r in &new {
                r.encode(&mut batch);
            }
            if self.journal_append(&mut conn, &mut st, &batch.finish()) {
                let filling = st.filling;
                st.keys[filling].extend(new.iter().map(Inboxed::key));
                st.first_at.get_or_insert_with(Instant::now);
            } else {
                let mut records: Vec<Record> = new.iter().map(Inboxed::record).collect();
                records.sort_by_key(Record::key);
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                store(&tx, &records)?;
                tx.commit()?;
            }
        }
        // The records are durable whatever happens next; a fold that fails here is tried
        // again by the next commit or read, and loses nothing.
        if let Err(e) = fold_step(&mut conn, &mut st) {
            tracing::warn!(%e, "moving the telemetry inbox into its tables failed; will retry");
        }
        Ok(new)
    }

    /// Appends a batch to the filling file, switching files first if it is full. False if the
    /// batch could not go to the journal: the caller stores it in SQLite instead.
    fn journal_append(&self, conn: &mut Connection, st: &mut State, payload: &[u8]) -> bool {
        if st.broken {
            return false;
        }
        if !st.files[st.filling].fits(payload.len()) {
            if !st.files[1 - st.filling].fits_when_empty(payload.len()) {
                // Bigger than a whole file.
                return false;
            }
            // Full: the fold in progress ends now (its file is then empty), and the full file
            // starts folding while ingest fills the other.
            let switched = (|| {
                while st.folding.is_some() {
                    fold_slice(conn, st)?;
                }
                start_fold(st)
            })();
            if let Err(e) = switched {
                tracing::warn!(%e, "the telemetry inbox's journal is full and could not be folded; storing in the database");
                return false;
            }
        }
        let filling = st.filling;
        match st.files[filling].append(payload) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(%e, "appending to the telemetry inbox's journal failed; storing telemetry in the database from now on");
                st.broken = true;
                false
            }
        }
    }

    /// Folds whatever this process's inbox holds: what every maintenance pass does first, and
    /// what opening the database does (records a crash left in the pair it took).
    pub fn fold_inbox(&self) -> Result<()> {
        let mut conn = self.writer()?;
        let mut st = self.inbox.lock();
        fold_all(&mut conn, &mut st)
    }

    /// Folds the journal pairs beside the database that no open database holds (a crashed or
    /// stopped process's), each under its lock, so two processes never fold one at once and a
    /// process starting meanwhile takes another pair. A pair that cannot be read is skipped
    /// (and the first such error returned at the end) so the others are still folded.
    pub(super) fn fold_orphans(&self) -> Result<()> {
        let own = self.inbox.lock().pair;
        let mut first_error = None;
        for pair in journal::pairs_beside(&self.path)? {
            if pair == own {
                continue;
            }
            if let Err(e) = self.fold_orphan(pair) {
                tracing::error!(%e, pair, "an inbox journal pair left by another process could not be folded");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn fold_orphan(&self, pair: u32) -> Result<()> {
        let [a, b] = journal::pair_paths(&self.path, pair);
        let first = Journal::open_existing(&a)?;
        if let Lock::Held = first.try_lock()? {
            return Ok(());
        }
        // The second file may be missing: its process stopped before creating it.
        let mut files = vec![first];
        if b.exists() {
            files.push(Journal::open_existing(&b)?);
        }
        let mut records = Vec::new();
        for f in &mut files {
            records.extend(read_journal(f)?);
        }
        if !records.is_empty() {
            records.sort_by_key(Record::key);
            let mut conn = self.writer()?;
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            store(&tx, &records)?;
            tx.commit()?;
            tracing::info!(
                pair,
                records = records.len(),
                "telemetry left in another process's inbox journal folded"
            );
        }
        for f in &mut files {
            if f.holds_frames() {
                f.reset()?;
            }
        }
        // The lock goes with the files.
        Ok(())
    }

    /// A read connection for reads of telemetry and its rollups: if this process's inbox holds
    /// any record, it is folded first, so the read sees every record this process
    /// acknowledged.
    pub(super) fn telemetry_reader(&self) -> Result<super::Reader<'_>> {
        let reader = self.reader()?;
        if self.inbox_records() > 0 {
            self.fold_inbox()?;
        }
        Ok(reader)
    }

    /// Records the inbox holds now, as this process knows (tests and the benchmarks).
    pub fn inbox_records(&self) -> usize {
        let st = self.inbox.lock();
        st.keys[0].len() + st.keys[1].len()
    }

    /// Drops the database as a kill -9 would leave it: the inbox not folded, its locks released.
    #[cfg(test)]
    pub(super) fn drop_as_if_killed(self) {
        self.inbox
            .killed
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for Sqlite {
    /// A graceful close folds the inbox, so the journal is empty for whoever opens the
    /// database next (what it left would be folded then anyway).
    fn drop(&mut self) {
        #[cfg(test)]
        if self.inbox.killed.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        if let Err(e) = self.fold_inbox() {
            tracing::warn!(%e, "the telemetry inbox could not be folded at close; it will be at the next open");
        }
    }
}

/// One step of folding: a slice of the fold in progress, or the start of one if due. While
/// the filling file is already past [`FOLD_ROWS`] (ingest outruns the slices), the whole
/// fold in progress, so the inbox stays bounded.
fn fold_step(conn: &mut Connection, st: &mut State) -> Result<()> {
    if st.folding.is_none() {
        if !st.fold_due() {
            return Ok(());
        }
        start_fold(st)?;
    }
    let behind = st.keys[st.filling].len() >= FOLD_ROWS;
    while st.folding.is_some() {
        fold_slice(conn, st)?;
        if !behind {
            break;
        }
    }
    Ok(())
}

/// Makes the filling file the folding one (its records read and sorted), and the other
/// (empty: no fold is in progress) the filling one.
fn start_fold(st: &mut State) -> Result<()> {
    let file = st.filling;
    let records = read_journal(&mut st.files[file])?;
    st.filling = 1 - file;
    st.first_at = None;
    st.folding = Some(Folding {
        file,
        records,
        stored: 0,
    });
    Ok(())
}

/// Stores the next slice of the fold in progress in one transaction; once the last is
/// committed, resets the folding file.
fn fold_slice(conn: &mut Connection, st: &mut State) -> Result<()> {
    let Some(f) = st.folding.as_mut() else {
        return Ok(());
    };
    if f.stored < f.records.len() {
        let end = slice_end(&f.records, f.stored);
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        store(&tx, &f.records[f.stored..end])?;
        tx.commit()?;
        f.stored = end;
    }
    if f.stored == f.records.len() {
        let file = f.file;
        // Every record it held is committed in SQLite: only now may it be emptied.
        if st.files[file].holds_frames() {
            st.files[file].reset()?;
        }
        st.keys[file].clear();
        st.folding = None;
    }
    Ok(())
}

/// Moves everything this process's pair holds into the per-device tables: one transaction
/// per file, then the file's reset.
fn fold_all(conn: &mut Connection, st: &mut State) -> Result<()> {
    // A fold in progress read its file; the file is read again below, and storing a
    // record twice stores it once.
    st.folding = None;
    // The older file first: the one not filling.
    for file in [1 - st.filling, st.filling] {
        let records = read_journal(&mut st.files[file])?;
        if !records.is_empty() {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            store(&tx, &records)?;
            tx.commit()?;
        }
        if st.files[file].holds_frames() {
            st.files[file].reset()?;
        }
        st.keys[file].clear();
    }
    st.first_at = None;
    Ok(())
}

/// The thread that folds a due inbox when no commit comes to do it; stopped and joined when
/// dropped.
pub(super) struct Folder {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Folder {
    /// Starts folding `inbox` through the writer connection `write` when due.
    pub(super) fn start(write: Arc<Mutex<Connection>>, inbox: Arc<Inbox>) -> Result<Folder> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("tek-inbox-fold".into())
            .spawn(move || run_folder(&write, &inbox, &stopped))
            .map_err(|e| Error::Backend(format!("cannot start the inbox fold thread: {e}")))?;
        Ok(Folder {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run_folder(write: &Mutex<Connection>, inbox: &Inbox, stopped: &mpsc::Receiver<()>) {
    loop {
        match stopped.recv_timeout(FOLD_TICK) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        // A slice per hold of the writer (the order: writer, then state), so ingest commits
        // go between slices as they do when commits move the fold on.
        loop {
            let Ok(mut conn) = write.lock() else { return };
            let mut st = inbox.lock();
            if st.folding.is_none() {
                if !st.fold_due() {
                    break;
                }
                if let Err(e) = start_fold(&mut st) {
                    tracing::warn!(%e, "reading the telemetry inbox's journal failed; will retry");
                    break;
                }
            }
            if let Err(e) = fold_slice(&mut conn, &mut st) {
                tracing::warn!(%e, "moving the telemetry inbox into its tables failed; will retry");
                break;
            }
            drop(st);
            drop(conn);
            if !matches!(stopped.try_recv(), Err(mpsc::TryRecvError::Empty)) {
                return;
            }
        }
    }
}

/// Every record a journal file holds, sorted for the fold (by device, layout, boot, seq).
fn read_journal(file: &mut Journal) -> Result<Vec<Record>> {
    let mut out = Vec::new();
    for frame in file.frames()? {
        out.extend(super::inbox_codec::decode(&frame)?);
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

/// Migration 19: what migration 18's inbox tables (a row per commit) hold is stored in the
/// per-device tables, in the migration's transaction, and the tables are dropped; the journal
/// files take over.
pub(in crate::storage) fn fold_batch_tables(tx: &Connection) -> Result<()> {
    for table in ["telemetry_inbox_batch_a", "telemetry_inbox_batch_b"] {
        let exists: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
            [table],
            |r| r.get(0),
        )?;
        if !exists {
            continue;
        }
        let mut records = Vec::new();
        {
            let mut stmt = tx.prepare(&format!("SELECT batch FROM {table}"))?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let blob: Vec<u8> = r.get(0)?;
                records.extend(super::inbox_codec::decode(&blob)?);
            }
        }
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
    use crate::storage::Storage;
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

    /// The journal file of pair `pair`, side `side` (0: a, 1: b), beside `db`'s file.
    fn journal_of(db_path: &Path, pair: u32, side: usize) -> Journal {
        let path = journal::pair_paths(db_path, pair)[side].clone();
        Journal::open_existing(&path).unwrap()
    }

    /// Bytes this thread has caused to be written to storage so far (`write_bytes` of
    /// `/proc/thread-self/io`: 4 KiB per page-cache page dirtied): what `tek bench ingest`
    /// reports for the whole server, here for the committing thread alone.
    fn thread_write_bytes() -> u64 {
        let io = std::fs::read_to_string("/proc/thread-self/io").unwrap();
        io.lines()
            .find_map(|l| l.strip_prefix("write_bytes: "))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// Frames in the SQLite log: unchanged as long as nothing is committed (a checkpoint copies
    /// frames without removing them; only a writer starts the log anew).
    fn wal_frames(db: &Sqlite) -> i64 {
        db.writer()
            .unwrap()
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1))
            .unwrap()
    }

    /// The point of the journal: a commit of one record for each of 300 devices, each with a
    /// history of its own, appends one frame (~13 bytes a record) to the journal, dirties a
    /// page or two of it, and writes no page of SQLite at all; folded, every device's pages
    /// are written, which the inbox does once for many commits.
    #[test]
    fn a_commit_writes_a_page_or_two_of_journal_and_no_sqlite_page() {
        let (dir, db) = prepare();
        devices(&db, 300);
        // The history as rows: folds of a record per device, as a quiet fleet's (a fold of
        // many records per device writes chunks instead).
        for s in 0..100 {
            let round: Vec<TelemetryRow> = (1..=300).map(|d| row(d, s)).collect();
            db.insert_telemetry(&round).unwrap();
            db.fold_inbox().unwrap();
        }
        for round in 0..3u32 {
            let one_each: Vec<TelemetryRow> = (1..=300).map(|d| row(d, 100 + round)).collect();
            let before = db.inbox.lock().files[0].end();
            let frames = wal_frames(&db);
            let at = thread_write_bytes();
            assert_eq!(db.insert_telemetry(&one_each).unwrap(), 300);
            let written = thread_write_bytes() - at;
            assert_eq!(wal_frames(&db), frames, "an append wrote SQLite log frames");
            let appended = db.inbox.lock().files[0].end() - before;
            assert!(
                (300 * 10..=300 * 14).contains(&(appended - journal::FRAME_HEAD)),
                "{appended} bytes appended for 300 records"
            );
            // The pages the frame touches (two at most: 4 KiB) and nothing else.
            assert!(
                written <= 2 * 4096,
                "{written} bytes written by a commit of 300 records"
            );
        }
        assert_eq!(db.inbox_records(), 900);
        // The fold starts the log anew: count from an emptied log. TRUNCATE answers busy (1)
        // while the checkpoint thread or a reader is in the way.
        let emptied = (0..200).any(|_| {
            let busy: i64 = db
                .writer()
                .unwrap()
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
                .unwrap();
            busy == 0 || {
                std::thread::sleep(std::time::Duration::from_millis(10));
                false
            }
        });
        assert!(emptied, "the log could not be emptied");
        db.fold_inbox().unwrap();
        let folded = wal_frames(&db);
        assert!(folded > 300, "{folded} pages written by the fold");
        assert_eq!(db.inbox_records(), 0);
        drop(db);
        assert!(
            journal_of(&dir.path().join(super::super::FILE_NAME), 0, 0)
                .frames()
                .unwrap()
                .is_empty(),
            "a folded journal is empty"
        );
    }

    /// What a crash leaves in the journal (synced, never folded) is in the tables once the
    /// database is open again, rolled up once, and the journal is empty after.
    #[test]
    fn records_left_in_the_journal_are_folded_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let rows: Vec<TelemetryRow> = (0..30).map(|s| row(1, s)).collect();
        {
            let db = Sqlite::open_dir(dir.path()).unwrap();
            devices(&db, 1);
            assert_eq!(db.insert_telemetry(&rows[..10]).unwrap(), 10);
            assert_eq!(db.insert_telemetry(&rows[10..]).unwrap(), 20);
            assert_eq!(db.inbox_records(), 30);
            db.drop_as_if_killed();
        }
        let db = Sqlite::open_dir(dir.path()).unwrap();
        assert_eq!(db.inbox_records(), 0);
        assert_eq!(all(&db, 1), rows);
        assert_eq!(db.insert_telemetry(&rows).unwrap(), 0);
        let b = db.telemetry_buckets(1, DAY, DAY + 86_400, 86_400).unwrap();
        assert_eq!(b[0].count, 30);
        for side in 0..2 {
            assert!(journal_of(db.path(), 0, side).frames().unwrap().is_empty());
        }
        // A crash between a fold's commit and the reset: the journal is folded again, and
        // nothing is stored or rolled up twice.
        let more: Vec<TelemetryRow> = (30..40).map(|s| row(1, s)).collect();
        assert_eq!(db.insert_telemetry(&more).unwrap(), 10);
        {
            let mut conn = db.writer().unwrap();
            let records = read_journal(&mut db.inbox.lock().files[0]).unwrap();
            let tx = conn.transaction().unwrap();
            store(&tx, &records).unwrap();
            tx.commit().unwrap();
        }
        let path = db.path().to_owned();
        db.drop_as_if_killed();
        let db = Sqlite::open(&path).unwrap();
        assert_eq!(db.telemetry_count(1).unwrap(), 40);
        let b = db.telemetry_buckets(1, DAY, DAY + 86_400, 86_400).unwrap();
        assert_eq!(b[0].count, 40);
    }

    /// A crash during an append leaves its frame torn: that batch was never acknowledged and
    /// is not stored; every batch before it is.
    #[test]
    fn a_torn_last_frame_is_ignored_and_the_frames_before_it_fold() {
        let dir = tempfile::tempdir().unwrap();
        let first: Vec<TelemetryRow> = (0..20).map(|s| row(1, s)).collect();
        let torn: Vec<TelemetryRow> = (20..40).map(|s| row(1, s)).collect();
        let path = {
            let db = Sqlite::open_dir(dir.path()).unwrap();
            devices(&db, 1);
            db.insert_telemetry(&first).unwrap();
            let at = db.inbox.lock().files[0].end();
            db.insert_telemetry(&torn).unwrap();
            let end = db.inbox.lock().files[0].end();
            let path = db.path().to_owned();
            db.drop_as_if_killed();
            // The second frame's last bytes never reached the disk.
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(&journal::pair_paths(&path, 0)[0])
                .unwrap();
            std::os::unix::fs::FileExt::write_all_at(&file, &[0u8; 8], end - 8).unwrap();
            assert!(end - 8 > at);
            path
        };
        let db = Sqlite::open(&path).unwrap();
        assert_eq!(all(&db, 1), first);
        // The torn batch, sent again (its Acks never went out), is new.
        assert_eq!(db.insert_telemetry(&torn).unwrap(), 20);
        assert_eq!(db.telemetry_count(1).unwrap(), 40);
    }

    /// A journal file that fills up: ingest switches to the other file after folding the one
    /// in progress, and no record is lost, refused or stored twice; a batch bigger than a whole
    /// file goes straight to the tables.
    #[test]
    fn a_full_journal_switches_files_and_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let db_path = dir.path().join(super::super::FILE_NAME);
        // Small files (an existing file keeps its size): a block of frames, ~15 batches of 20
        // records each.
        for side in journal::pair_paths(&db_path, 0) {
            Journal::open(&side, journal::FRAMES_AT + 2_500).unwrap();
        }
        let db = Sqlite::open(&db_path).unwrap();
        devices(&db, 4);
        let mut sent = 0;
        for batch in 0..60u32 {
            let rows: Vec<TelemetryRow> =
                (0..20).map(|i| row(1 + i % 4, batch * 5 + i / 4)).collect();
            sent += db.insert_telemetry(&rows).unwrap();
            // Sent again: in a journal file, being folded, or folded.
            assert_eq!(db.insert_telemetry(&rows).unwrap(), 0);
            assert!(
                db.inbox_records() <= 2 * 4096 / 10,
                "{}",
                db.inbox_records()
            );
        }
        assert_eq!(sent, 1200);
        let huge: Vec<TelemetryRow> = (0..400).map(|s| row(1, 10_000 + s)).collect();
        let held = db.inbox_records();
        assert_eq!(db.insert_telemetry(&huge).unwrap(), 400);
        assert_eq!(
            db.inbox_records(),
            held,
            "the huge batch went straight to the tables"
        );
        assert_eq!(db.insert_telemetry(&huge).unwrap(), 0);
        for d in 1..=4 {
            let want = if d == 1 { 700 } else { 300 };
            assert_eq!(db.telemetry_count(d).unwrap(), want);
            let day = db
                .telemetry_buckets(d, DAY, DAY + 400 * 86_400, 86_400)
                .unwrap();
            assert_eq!(day.iter().map(|b| b.count).sum::<u32>(), want as u32);
        }
    }

    /// Two handles on one database (two processes, as far as the journal can tell): the second
    /// takes the second pair. A record sent to both is in both journals and stored once; each
    /// sees the other's records once they are folded.
    #[test]
    fn two_handles_take_two_pairs_and_a_record_sent_to_both_is_stored_once() {
        let dir = tempfile::tempdir().unwrap();
        let a = Sqlite::open_dir(dir.path()).unwrap();
        let b = Sqlite::open_dir(dir.path()).unwrap();
        assert_eq!(a.inbox.lock().pair, 0);
        assert_eq!(b.inbox.lock().pair, 1);
        devices(&a, 2);
        let rows: Vec<TelemetryRow> = (0..30).map(|s| row(1 + s % 2, s)).collect();
        assert_eq!(a.insert_telemetry(&rows).unwrap(), 30);
        assert_eq!(b.insert_telemetry(&rows[10..]).unwrap(), 20);
        assert_eq!(b.inbox_records(), 20);
        // b reads: its own journal folds; a's records are not visible before a folds them.
        assert_eq!(b.telemetry_count(1).unwrap(), 10);
        a.fold_inbox().unwrap();
        for db in [&a, &b] {
            for d in 1..=2 {
                let want: Vec<TelemetryRow> =
                    rows.iter().filter(|r| r.device_id == d).copied().collect();
                assert_eq!(all(db, d), want);
                let day = db.telemetry_buckets(d, DAY, DAY + 86_400, 86_400).unwrap();
                assert_eq!(day[0].count, 15, "device {d} rolled up once");
            }
        }
        // Once folded, the tables say "stored" to both.
        assert_eq!(a.insert_telemetry(&rows).unwrap(), 0);
        assert_eq!(b.insert_telemetry(&rows).unwrap(), 0);
    }

    /// A quiet process's records are not left in its journal until its next commit: once the
    /// fold is due, the fold thread folds them, and another process then sees them.
    #[test]
    fn a_due_fold_happens_without_another_commit() {
        let dir = tempfile::tempdir().unwrap();
        let a = Sqlite::open_dir(dir.path()).unwrap();
        let b = Sqlite::open_dir(dir.path()).unwrap();
        devices(&a, 1);
        let rows: Vec<TelemetryRow> = (0..SLICE_ROWS as u32 * 3).map(|s| row(1, s)).collect();
        assert_eq!(a.insert_telemetry(&rows).unwrap(), rows.len() as u64);
        assert_eq!(b.telemetry_count(1).unwrap(), 0, "in a's journal only");
        a.inbox.lock().first_at = Instant::now().checked_sub(FOLD_AGE);
        let deadline = Instant::now() + 5 * FOLD_TICK;
        while a.inbox_records() > 0 {
            assert!(Instant::now() < deadline, "the due fold did not happen");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(b.telemetry_count(1).unwrap(), rows.len() as u64);
        assert!(journal_of(a.path(), 0, 0).frames().unwrap().is_empty());
    }

    /// A handle dropped without folding (a crashed process) leaves its pair unlocked: the
    /// other's maintenance folds it, and the next database opened takes the freed pair.
    #[test]
    fn a_crashed_handles_journal_is_folded_by_the_others_maintenance() {
        let dir = tempfile::tempdir().unwrap();
        let a = Sqlite::open_dir(dir.path()).unwrap();
        devices(&a, 1);
        let b = Sqlite::open_dir(dir.path()).unwrap();
        let rows: Vec<TelemetryRow> = (0..25).map(|s| row(1, s)).collect();
        assert_eq!(b.insert_telemetry(&rows).unwrap(), 25);
        b.drop_as_if_killed();
        assert_eq!(a.telemetry_count(1).unwrap(), 0, "not folded yet");
        a.maintain(DAY, 0).unwrap();
        assert_eq!(all(&a, 1), rows);
        let day = a.telemetry_buckets(1, DAY, DAY + 86_400, 86_400).unwrap();
        assert_eq!(day[0].count, 25);
        assert!(journal_of(a.path(), 1, 0).frames().unwrap().is_empty());
        // Again, folded at open this time, by the next handle taking that pair.
        let b = Sqlite::open_dir(dir.path()).unwrap();
        let more: Vec<TelemetryRow> = (25..30).map(|s| row(1, s)).collect();
        assert_eq!(b.insert_telemetry(&more).unwrap(), 5);
        b.drop_as_if_killed();
        let c = Sqlite::open_dir(dir.path()).unwrap();
        assert_eq!(c.inbox.lock().pair, 1);
        assert_eq!(a.telemetry_count(1).unwrap(), 30);
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
                "DROP TABLE IF EXISTS telemetry_inbox_batch_a; DROP TABLE IF EXISTS telemetry_inbox_batch_b;
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

    /// A frame that is whole (its checksum holds) but whose batch does not decode is an error
    /// at open, never a panic or a made-up record.
    #[test]
    fn a_corrupt_batch_in_the_journal_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let db_path = dir.path().join(super::super::FILE_NAME);
        drop(Sqlite::open(&db_path).unwrap());
        let mut j = journal_of(&db_path, 0, 0);
        // A narrow record cut short in its values.
        j.append(&[0x01, 0x00, 0x01, 0x01, 0x01, 0x00, 0x03])
            .unwrap();
        drop(j);
        assert!(matches!(Sqlite::open(&db_path), Err(Error::Corrupt(_))));
        // A layout this build does not know.
        let mut j = journal_of(&db_path, 0, 0);
        j.reset().unwrap();
        j.append(&[0x09]).unwrap();
        drop(j);
        assert!(matches!(Sqlite::open(&db_path), Err(Error::Corrupt(_))));
    }

    /// One ingest commit is one frame, however many records it carries, and its records come
    /// back exactly from it.
    #[test]
    fn a_commit_is_one_frame_of_its_records() {
        let (_dir, db) = prepare();
        devices(&db, 50);
        let rows: Vec<TelemetryRow> = (1..=50).map(|d| row(d, 7)).collect();
        assert_eq!(db.insert_telemetry(&rows).unwrap(), 50);
        let mut st = db.inbox.lock();
        let frames = st.files[0].frames().unwrap();
        assert_eq!(frames.len(), 1);
        assert!(
            frames[0].len() <= 50 * 14,
            "{} bytes for 50 records of 3 channels",
            frames[0].len()
        );
        let back: Vec<TelemetryRow> = read_journal(&mut st.files[0])
            .unwrap()
            .into_iter()
            .map(|r| match r {
                Record::Narrow(r) => r,
                Record::Wide(_) => panic!("a narrow record came back wide"),
            })
            .collect();
        assert_eq!(back, rows);
    }

    /// A database whose inbox is in migration 18's tables (a row per commit) keeps every
    /// record when migrated: they are stored, rolled up once, and the tables are gone.
    #[test]
    fn migration_19_stores_what_the_batch_tables_held() {
        let dir = tempfile::tempdir().unwrap();
        let db_path = dir.path().join(super::super::FILE_NAME);
        let rows: Vec<TelemetryRow> = (0..12).map(|s| row(1 + s % 2, s)).collect();
        {
            let db = Sqlite::open(&db_path).unwrap();
            devices(&db, 2);
            let conn = db.writer().unwrap();
            let mut one = Encoder::new();
            for r in &rows[..5] {
                one.narrow(r);
            }
            let mut two = Encoder::new();
            for r in &rows[5..] {
                two.narrow(r);
            }
            conn.execute_batch(&format!(
                "{} PRAGMA user_version = 18;",
                crate::storage::schema::pending(17, crate::storage::schema::Dialect::Sqlite)
                    .unwrap()
                    .into_iter()
                    .find(|(v, _)| *v == 18)
                    .unwrap()
                    .1
            ))
            .unwrap();
            conn.execute(
                "INSERT INTO telemetry_inbox_batch_a (batch) VALUES (?1)",
                [one.finish()],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO telemetry_inbox_batch_b (batch) VALUES (?1)",
                [two.finish()],
            )
            .unwrap();
        }
        let db = Sqlite::open(&db_path).unwrap();
        for d in 1..=2 {
            let want: Vec<TelemetryRow> =
                rows.iter().filter(|r| r.device_id == d).copied().collect();
            assert_eq!(all(&db, d), want);
            let b = db.telemetry_buckets(d, DAY, DAY + 86_400, 86_400).unwrap();
            assert_eq!(b[0].count, 6);
        }
        let left: i64 = db
            .writer()
            .unwrap()
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE name LIKE 'telemetry_inbox%'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(left, 0);
    }
}
