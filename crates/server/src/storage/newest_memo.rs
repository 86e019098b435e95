//! The newest record of recently read chunks, remembered per process (issue 21, `/api/devices`
//! during a site query: ~40 % of the server's CPU per page of 100 devices went to decoding each
//! device's newest sealed chunk again on every request, though it had not changed).
//!
//! Exact whatever writes chunks: an answer is reused only when the chunk row read now has the
//! same columns *and* the same blob bytes as the row it was decoded from. [`chunk::newest`] is a
//! function of (row, blob) alone, so the reused answer is the one decoding would give — after a
//! day is sealed again with a late record, after the ingest fold rewrites an open day's chunk,
//! after retention deleted a chunk and another took its key, after another process wrote the
//! database. Comparing the row's columns alone would need every writer, present and future, to
//! never store different records under equal columns; comparing the bytes needs nothing of them.
//! What this saves is the decode (pcodec, every column of ~1,440 records), not the read of the
//! blob: the comparison is a `memcmp` of a few kilobytes.
//!
//! Bounded: at most [`MEMO_BYTES`] of blobs and entries; past it, the least recently used half
//! goes. A chunk that does not decode is never remembered, so it fails again on every read.

use super::chunk::{self, ChunkMeta, StoredChunk};
use super::telemetry::TelemetryRow;
use super::Result;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Most bytes the memo holds (blobs and entries): a page of 100 devices with a day chunk of a
/// few kilobytes each needs well under 1 MiB, so this covers several pages of a fleet.
pub const MEMO_BYTES: usize = 4 << 20;

/// A chunk's identity in its table: the primary key (device, boot, first seq).
type ChunkKey = (u32, u32, u32);

/// Remembers the newest record of the chunks it decoded (see the module).
pub struct NewestMemo {
    inner: Mutex<Memo>,
}

impl Default for NewestMemo {
    fn default() -> Self {
        NewestMemo::with_budget(MEMO_BYTES)
    }
}

struct Memo {
    /// Most bytes held.
    budget: usize,
    entries: HashMap<ChunkKey, Entry>,
    /// Bytes held: every entry's [`Entry::cost`].
    bytes: usize,
    /// Counts lookups: the recency of an entry.
    clock: u64,
}

struct Entry {
    meta: ChunkMeta,
    data: Box<[u8]>,
    newest: TelemetryRow,
    /// The clock at its last use.
    used: u64,
}

impl Entry {
    fn cost(&self) -> usize {
        self.data.len() + std::mem::size_of::<(ChunkKey, Entry)>()
    }
}

impl NewestMemo {
    /// A memo holding at most `budget` bytes.
    pub fn with_budget(budget: usize) -> NewestMemo {
        NewestMemo {
            inner: Mutex::new(Memo {
                budget,
                entries: HashMap::new(),
                bytes: 0,
                clock: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Memo> {
        // Every change to the memo is whole before the lock is released (an insert or a
        // removal), so a panic elsewhere while it was held leaves it usable.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// [`chunk::newest`] of the chunk with row `meta` and blob `data`, decoded only if this
    /// exact row and blob were not decoded lately.
    pub fn newest(&self, meta: &ChunkMeta, data: &[u8]) -> Result<TelemetryRow> {
        let key = (meta.device_id, meta.boot, meta.first_seq);
        {
            let mut memo = self.lock();
            memo.clock += 1;
            let now = memo.clock;
            if let Some(e) = memo.entries.get_mut(&key) {
                if e.meta == *meta && *e.data == *data {
                    e.used = now;
                    return Ok(e.newest);
                }
            }
        }
        // Decoded outside the lock: other pages' reads go on meanwhile.
        let newest = chunk::newest(meta, data)?;
        self.lock().insert(
            key,
            Entry {
                meta: *meta,
                data: data.into(),
                newest,
                used: 0,
            },
        );
        Ok(newest)
    }

    /// [`chunk::latest_of`], each chunk's newest record through [`NewestMemo::newest`].
    pub fn latest_of(
        &self,
        table_latest: Option<TelemetryRow>,
        candidates: &[StoredChunk],
    ) -> Result<Option<TelemetryRow>> {
        let mut best = table_latest;
        for c in candidates {
            best = chunk::newer_with_chunk(best, &c.meta, || self.newest(&c.meta, &c.data))?;
        }
        Ok(best)
    }

    /// How many chunks it remembers and the bytes they take.
    #[cfg(test)]
    fn held(&self) -> (usize, usize) {
        let memo = self.lock();
        (memo.entries.len(), memo.bytes)
    }
}

impl Memo {
    fn insert(&mut self, key: ChunkKey, mut entry: Entry) {
        let cost = entry.cost();
        if cost > self.budget / 4 {
            // A chunk that large would push out most others for one device.
            return;
        }
        self.clock += 1;
        entry.used = self.clock;
        if let Some(old) = self.entries.insert(key, entry) {
            self.bytes -= old.cost();
        }
        self.bytes += cost;
        if self.bytes > self.budget {
            self.evict_older_half();
        }
    }

    /// Drops the least recently used half of the entries: one pass now and then rather than
    /// ordered bookkeeping on every lookup.
    fn evict_older_half(&mut self) {
        let mut used: Vec<u64> = self.entries.values().map(|e| e.used).collect();
        let middle = used.len() / 2;
        let (_, &mut cut, _) = used.select_nth_unstable(middle);
        let mut freed = 0;
        self.entries.retain(|_, e| {
            let keep = e.used > cut;
            if !keep {
                freed += e.cost();
            }
            keep
        });
        self.bytes -= freed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::chunk::{seal, DAY_S};
    use crate::storage::Error;
    use proptest::prelude::*;

    fn day(device: u32, boot: u32, first_seq: u32, n: u32, day: i64, base: i32) -> StoredChunk {
        let rows: Vec<TelemetryRow> = (0..n)
            .map(|i| TelemetryRow {
                device_id: device,
                boot,
                seq: first_seq + i,
                time: day * DAY_S + i64::from(i) * 60,
                channels: 0b1_0011,
                values: [base + i as i32, 7, 0, 0, base - 1, 0, 0, 0],
            })
            .collect();
        let mut chunks = seal(&rows).unwrap();
        assert_eq!(chunks.len(), 1);
        chunks.remove(0)
    }

    /// A chunk rewritten under the same key with the same columns but other records (values
    /// changed: what comparing the row alone would miss) is decoded again, not answered from
    /// memory.
    #[test]
    fn same_row_other_bytes_is_decoded_again() {
        let memo = NewestMemo::default();
        let a = day(1, 1, 0, 1440, 20_000, 5);
        let b = day(1, 1, 0, 1440, 20_000, 900);
        assert_eq!(a.meta, b.meta);
        assert_ne!(a.data, b.data);
        let from_a = memo.newest(&a.meta, &a.data).unwrap();
        assert_eq!(from_a, chunk::newest(&a.meta, &a.data).unwrap());
        let from_b = memo.newest(&b.meta, &b.data).unwrap();
        assert_eq!(from_b, chunk::newest(&b.meta, &b.data).unwrap());
        assert_ne!(from_a, from_b);
        assert_eq!(memo.held().0, 1, "one entry per chunk key");
    }

    /// A damaged blob is an error every time, even right after the same row decoded well.
    #[test]
    fn a_corrupt_chunk_is_never_remembered() {
        let memo = NewestMemo::default();
        let good = day(2, 1, 0, 100, 20_000, 1);
        memo.newest(&good.meta, &good.data).unwrap();
        let mut bad = good.data.clone();
        bad.truncate(bad.len() - 3);
        for _ in 0..2 {
            assert!(matches!(
                memo.newest(&good.meta, &bad),
                Err(Error::Corrupt(_))
            ));
        }
        assert_eq!(
            memo.newest(&good.meta, &good.data).unwrap(),
            chunk::newest(&good.meta, &good.data).unwrap()
        );
    }

    /// Past its budget the memo drops the entries used least lately and keeps the recent ones.
    #[test]
    fn the_memo_stays_within_its_budget() {
        let c = day(1, 1, 0, 1440, 20_000, 3);
        let one = c.data.len() + std::mem::size_of::<(ChunkKey, Entry)>();
        let fit = 50;
        let memo = NewestMemo::with_budget(fit * one);
        let mut last = c.meta;
        // Enough devices' chunks (the same blob under other keys) to go past the budget
        // several times.
        for device in 0..3 * fit as u32 {
            last.device_id = device;
            memo.newest(&last, &c.data).unwrap();
            let (entries, bytes) = memo.held();
            assert!(bytes <= fit * one, "{bytes} bytes held");
            assert_eq!(bytes, entries * one);
        }
        assert!(memo.held().0 >= fit / 2, "{:?}", memo.held());
        // The last chunk read is still there: reading it again leaves the memo as it was.
        let held = memo.held();
        memo.newest(&last, &c.data).unwrap();
        assert_eq!(memo.held(), held);
    }

    proptest! {
        /// Whatever sequence of chunk versions is read (several keys, rows that change records,
        /// values or length), the memo answers what decoding answers.
        #[test]
        fn answers_what_decoding_answers(
            reads in proptest::collection::vec((0u32..3, 1u32..40, 0i32..3, 0u32..2), 1..60),
        ) {
            let memo = NewestMemo::default();
            for (first_seq, n, base, boot) in reads {
                let c = day(9, boot, first_seq, n, 20_001, base);
                prop_assert_eq!(
                    memo.newest(&c.meta, &c.data).unwrap(),
                    chunk::newest(&c.meta, &c.data).unwrap()
                );
                let plain = chunk::latest_of(None, std::slice::from_ref(&c)).unwrap();
                prop_assert_eq!(memo.latest_of(None, std::slice::from_ref(&c)).unwrap(), plain);
            }
        }
    }
}
