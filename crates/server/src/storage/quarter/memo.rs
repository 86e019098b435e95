//! What [`super::meter_data_sealed`] remembers between requests (issue 21: a site's year of
//! energy): for each (device, range), the state of its walk after the device's sealed days and
//! the rows before their end, with the inputs that state came from.
//!
//! Why it is never stale: the walk is a pure function of the device, the range, the sealed
//! days' energy bytes and the rows, taken in order. A checkpoint is used only when the inputs
//! read now (in the request's snapshot) begin with exactly the inputs it walked — the same days
//! with byte-for-byte the same energy group, and the same rows before its end —; the walk then
//! goes on from there with the rest (the days sealed since, the rows of open days). A day sealed
//! again (a late record), expired, or any row before the checkpoint's end makes the comparison
//! fail, and the walk starts from the beginning. Nothing is invalidated by hand, so a second
//! server or process writing the same database cannot make it wrong either.
//!
//! A request takes its checkpoint out ([`take`]), walks on from it in place, lends the finished
//! data to its caller, rewinds the walk to the end of the sealed days and puts it back
//! ([`put`]): a device-year's walk (1.4 MB) is never copied.
//!
//! Memory: at most [`BUDGET_BYTES`] counted (the remembered walk's intervals and spans, the
//! energy bytes of the days, the rows), the least recently used checkpoints dropped first. A
//! device-year is about 1.6 MB (35,040 intervals of 40 bytes, 365 energy groups of ~500 bytes),
//! so the budget holds the years of about 160 devices.

use super::{EnergyWalk, DAY_S, MASK_BYTES};
use crate::storage::energy::{MeterInterval, MeterSpan};
use crate::storage::rollup::Rollup;
use std::collections::HashMap;
use std::sync::Mutex;

/// Most bytes the remembered checkpoints take (counted as [`Checkpoint::bytes`]).
pub const BUDGET_BYTES: usize = 256 << 20;

/// `(device, from, to)`: a walk's range is part of what it computed.
pub(super) type Key = (u32, i64, i64);

/// A walk's state after the sealed days it has seen, and those inputs.
pub(super) struct Checkpoint {
    /// Every input before this (the end of the last day walked) was walked.
    pub upto: i64,
    /// The days walked, `(day, energy part of the blob)`, in order.
    days: Vec<(i64, Box<[u8]>)>,
    /// The rows walked (all those starting before `upto`), ordered by start.
    rows: Vec<Rollup>,
    /// The walk after them.
    pub walk: EnergyWalk,
}

/// The bytes of a blob that [`super::decode_energy`] reads (version, slot mask, the energy
/// group): the rest (the chart group) cannot change the energy. `None` when the blob is too
/// short to hold them (decoding it fails; nothing is remembered then).
pub(super) fn energy_part(blob: &[u8]) -> Option<&[u8]> {
    let head = 1 + MASK_BYTES;
    let len = blob.get(head..head + 4)?;
    let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
    blob.get(..head.checked_add(4)?.checked_add(len)?)
}

impl Checkpoint {
    /// A walk that has seen no inputs yet (remembered only once [`Checkpoint::walked`] some).
    pub fn new(walk: EnergyWalk) -> Checkpoint {
        Checkpoint {
            upto: i64::MIN,
            days: Vec::new(),
            rows: Vec::new(),
            walk,
        }
    }

    /// Records that the walk went on over `days` (each day's blob, ordered, after those it
    /// had seen) and `rows` (those starting from the end of its last day before to the end of
    /// the last of `days`). False when a blob is too short to hold its energy part (decoding
    /// it fails first; nothing is remembered then).
    pub fn walked(&mut self, days: &[&(i64, Vec<u8>)], rows: &[Rollup]) -> bool {
        for (d, b) in days {
            let Some(part) = energy_part(b) else {
                return false;
            };
            self.days.push((*d, part.into()));
        }
        if let Some(last) = days.last() {
            self.upto = last.0 + DAY_S;
        }
        self.rows.extend_from_slice(rows);
        true
    }

    /// How many of `days` (ordered, each once, at midnight) and `rows` (ordered by start) it
    /// has walked, when they begin with exactly its inputs; `None` otherwise.
    pub fn resumes(&self, days: &[&(i64, Vec<u8>)], rows: &[Rollup]) -> Option<(usize, usize)> {
        let k = self.days.len();
        let same_days = days.len() >= k
            && self
                .days
                .iter()
                .zip(days)
                .all(|(c, (d, b))| c.0 == *d && energy_part(b) == Some(&c.1[..]));
        // The days after these are later than the last of them: they begin at `upto` or after.
        let n = rows.partition_point(|r| r.start < self.upto);
        (same_days && rows[..n] == self.rows[..]).then_some((k, n))
    }

    /// What it holds, as counted against [`BUDGET_BYTES`].
    fn bytes(&self) -> usize {
        let (intervals, spans) = self.walk.assembly.as_ref().map_or((0, 0), |a| a.sizes());
        std::mem::size_of::<Checkpoint>()
            + self
                .days
                .iter()
                .map(|d| d.1.len() + std::mem::size_of::<(i64, Box<[u8]>)>())
                .sum::<usize>()
            + self.rows.len() * std::mem::size_of::<Rollup>()
            + intervals * std::mem::size_of::<MeterInterval>()
            + spans * std::mem::size_of::<MeterSpan>()
    }
}

#[derive(Default)]
struct Memo {
    /// Each checkpoint with its last use.
    entries: HashMap<Key, (Checkpoint, u64)>,
    bytes: usize,
    clock: u64,
}

static MEMO: Mutex<Option<Memo>> = Mutex::new(None);

fn with<T>(f: impl FnOnce(&mut Memo) -> T) -> T {
    // A panic elsewhere while the lock was held leaves the map consistent (every change is a
    // whole insert or remove): go on with it.
    let mut guard = MEMO.lock().unwrap_or_else(|e| e.into_inner());
    f(guard.get_or_insert_with(Memo::default))
}

/// The checkpoint remembered for `key`, if any, taken out: the walk goes on in place (no
/// copy of it), and [`put`] gives it back. A request for the same key meanwhile walks from the
/// start, as after a server start.
pub(super) fn take(key: Key) -> Option<Checkpoint> {
    with(|m| {
        let (c, _) = m.entries.remove(&key)?;
        m.bytes -= c.bytes();
        Some(c)
    })
}

/// Remembers `c` for `key` (instead of what was), then drops the least recently used until
/// the budget holds; one larger than the whole budget is not kept.
pub(super) fn put(key: Key, c: Checkpoint) {
    let size = c.bytes();
    if size > BUDGET_BYTES {
        return;
    }
    with(|m| {
        m.clock += 1;
        if let Some((old, _)) = m.entries.insert(key, (c, m.clock)) {
            m.bytes -= old.bytes();
        }
        m.bytes += size;
        while m.bytes > BUDGET_BYTES {
            let Some(oldest) = m.entries.iter().min_by_key(|e| e.1 .1).map(|e| *e.0) else {
                break;
            };
            if let Some((gone, _)) = m.entries.remove(&oldest) {
                m.bytes -= gone.bytes();
            }
        }
    });
}

/// Bytes counted now (tests).
#[cfg(test)]
pub(super) fn counted() -> usize {
    with(|m| m.bytes)
}
