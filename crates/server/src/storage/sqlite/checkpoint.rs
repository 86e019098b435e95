//! Checkpoints off the commit path.
//!
//! In WAL mode every commit appends its pages to `tek.db-wal`; a checkpoint copies them back into
//! `tek.db` and syncs it. By default SQLite runs that checkpoint inside the commit that takes the
//! log past 1,000 pages, on the committing connection: here the ingest writer, so one batch in
//! every few waits for thousands of page writes and two syncs before its Acks can go out, and the
//! devices see it as an ack latency spike. The longer the history, the more distinct pages a
//! commit dirties and the more often that happens (issue 20's calm latency drift).
//!
//! So a thread of its own, with its own connection, runs a `PASSIVE` checkpoint every
//! [`EVERY`]: it never waits for the writer or the readers, and copies whatever frames no reader
//! still needs. The writer keeps an automatic checkpoint only as a backstop
//! ([`WRITER_BACKSTOP_PAGES`]), should this thread fall far behind or fail. Durability does not
//! change: a commit is on disk (in the log, synced) before anything it holds is acknowledged;
//! the checkpoint only moves committed pages.

use super::connect;
use crate::storage::Result;
use rusqlite::Connection;
use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the thread checkpoints.
pub(super) const EVERY: Duration = Duration::from_millis(250);

/// Log pages after which the writer checkpoints itself anyway (64 MiB at 4 KiB pages): far more
/// than the thread lets accumulate in [`EVERY`], so it only acts if the thread cannot.
pub(super) const WRITER_BACKSTOP_PAGES: u32 = 16_384;

/// The checkpoint thread of one open database; stopped and joined when dropped.
pub(super) struct Checkpointer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts checkpointing the database at `path` on a connection of its own.
    pub(super) fn start(path: &Path) -> Result<Checkpointer> {
        let conn = connect(path)?;
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("tek-sqlite-checkpoint".into())
            .spawn(move || run(&conn, &stopped))
            .map_err(|e| {
                crate::storage::Error::Backend(format!("cannot start the checkpoint thread: {e}"))
            })?;
        Ok(Checkpointer {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        // Dropping the sender wakes the thread at once; joining makes sure its connection is
        // closed before the database's other connections (and the files) go away.
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(conn: &Connection, stopped: &mpsc::Receiver<()>) {
    let mut failing = false;
    loop {
        match stopped.recv_timeout(EVERY) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        // PASSIVE: copies what it can without waiting for any lock; a busy database is simply
        // tried again next turn. Its result row (busy, log frames, checkpointed frames) is not
        // needed.
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("SQLite checkpoints work again");
            }
            Ok(()) => {}
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "SQLite checkpoint failed; the writer's own checkpoint takes over if the log keeps growing");
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::storage::sqlite::tests::prepare;
    use crate::storage::{DeviceStore, NewDevice, TelemetryRow, TelemetryStore};
    use std::time::{Duration, Instant};
    use tek_proto::crypto::Key;

    /// The writer no longer checkpoints at SQLite's default 1,000 pages, yet committed pages
    /// reach the database file by themselves while the database stays open: the thread moves
    /// them. Without it they would stay in the log until 16,384 pages or the close.
    #[test]
    fn committed_pages_reach_the_database_file_without_the_writer() {
        let (_dir, db) = prepare();
        let backstop: i64 = db
            .writer()
            .unwrap()
            .query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))
            .unwrap();
        assert_eq!(backstop, i64::from(super::WRITER_BACKSTOP_PAGES));

        db.add_devices(
            &[NewDevice {
                id: 7,
                name: String::new(),
                key: Key([1; 16]),
            }],
            0,
        )
        .unwrap();
        let rows: Vec<TelemetryRow> = (0..50u32)
            .map(|seq| TelemetryRow {
                device_id: 7,
                boot: 1,
                seq,
                time: 1_700_000_000 + i64::from(seq) * 60,
                channels: 0b11,
                values: [seq as i32, 7, 0, 0, 0, 0, 0, 0],
            })
            .collect();
        assert_eq!(db.insert_telemetry_new(&rows).unwrap().len(), 50);
        // Out of the inbox's journal into the per-device tables (a run this long is folded into
        // a chunk, a shorter one into rows): the database file is what is watched.
        db.fold_inbox().unwrap();

        // A copy of `tek.db` alone (no log) holds only checkpointed pages.
        let copy = tempfile::tempdir().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            std::fs::copy(db.path(), copy.path().join("tek.db")).unwrap();
            let count = rusqlite::Connection::open(copy.path().join("tek.db"))
                .and_then(|c| {
                    c.query_row(
                        "SELECT (SELECT COUNT(*) FROM telemetry)
                              + (SELECT COALESCE(SUM(records), 0) FROM telemetry_chunk)",
                        [],
                        |r| r.get::<_, i64>(0),
                    )
                })
                .unwrap_or(0);
            if count == 50 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the records never reached the database file ({count} of 50)"
            );
            std::thread::sleep(Duration::from_millis(50));
            let _ = std::fs::remove_file(copy.path().join("tek.db-wal"));
        }
    }
}
