//! The telemetry log: a ring buffer of compact records in RAM, with a capacity fixed at compile
//! time.
//!
//! Records get consecutive sequence numbers from 0 at every boot. They leave the buffer only when
//! the server acknowledges them ([`Log::ack_through`]) or, when the buffer is full and a new record
//! arrives, the oldest is dropped and counted ([`Log::drops`]) — the newest data is the most
//! useful after a long outage, and the drop count tells the server exactly how much is missing.
//!
//! A record is 16 bytes, so the firmware's 47 kB for the log hold 3007 records and the ring's
//! indices (16 bytes on the Cortex-M3): more than two days at the default one-minute interval.

use tek_proto::message::telemetry::channel;

/// Stored in place of a temperature whose sensor gave no reading.
pub const MISSING_TEMP: i16 = i16::MIN;

/// One log record in RAM (16 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogRecord {
    /// Controller uptime when the record was taken, seconds.
    pub time_s: u32,
    /// Energy meter reading, watt-hours.
    pub energy_wh: u32,
    /// Mean electric power over the interval, watts (saturated at 65535).
    pub power_w: u16,
    /// Water temperature, 0.01 °C ([`MISSING_TEMP`] if unknown).
    pub water_cc: i16,
    /// Air temperature, 0.01 °C ([`MISSING_TEMP`] if unknown).
    pub air_cc: i16,
    /// Relay bitmap.
    pub relays: u8,
}

impl LogRecord {
    /// The channel mask every batch uses.
    pub const CHANNELS: u8 = (1 << channel::POWER_W)
        | (1 << channel::ENERGY_WH)
        | (1 << channel::WATER_TEMP_CC)
        | (1 << channel::AIR_TEMP_CC)
        | (1 << channel::RELAYS);

    /// The record's channel values in wire order.
    pub fn values(&self) -> [i32; channel::COUNT] {
        let mut v = [0i32; channel::COUNT];
        v[usize::from(channel::POWER_W)] = i32::from(self.power_w);
        // The meter reading is unsigned; the wire carries i32 and wrapping differences.
        v[usize::from(channel::ENERGY_WH)] = self.energy_wh as i32;
        v[usize::from(channel::WATER_TEMP_CC)] = i32::from(self.water_cc);
        v[usize::from(channel::AIR_TEMP_CC)] = i32::from(self.air_cc);
        v[usize::from(channel::RELAYS)] = i32::from(self.relays);
        v
    }
}

/// A ring buffer of `N` records.
#[derive(Debug, Clone)]
pub struct Log<const N: usize> {
    buf: [LogRecord; N],
    /// Index of the oldest record.
    head: usize,
    len: usize,
    /// Sequence number of the oldest record (of the next one when empty).
    head_seq: u32,
    drops: u32,
}

impl<const N: usize> Default for Log<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Log<N> {
    /// An empty log whose first record will get sequence number 0.
    pub const fn new() -> Self {
        Log {
            buf: [LogRecord {
                time_s: 0,
                energy_wh: 0,
                power_w: 0,
                water_cc: 0,
                air_cc: 0,
                relays: 0,
            }; N],
            head: 0,
            len: 0,
            head_seq: 0,
            drops: 0,
        }
    }

    /// Empties the log in place, as [`Log::new`] would (the next record gets sequence number 0,
    /// the drop count restarts): only the indices are reset — the records left in the buffer
    /// are unreachable — so a 48 kB log is cleared without a 48 kB temporary.
    pub fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
        self.head_seq = 0;
        self.drops = 0;
    }

    /// Capacity in records.
    pub const fn capacity(&self) -> usize {
        N
    }

    /// Records held (not yet acknowledged).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no record is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Records dropped because the buffer was full.
    pub fn drops(&self) -> u32 {
        self.drops
    }

    /// Sequence number of the oldest record held (of the next one if empty).
    pub fn first_seq(&self) -> u32 {
        self.head_seq
    }

    /// Sequence number the next record will get.
    pub fn next_seq(&self) -> u32 {
        self.head_seq.wrapping_add(self.len as u32)
    }

    /// Appends a record; when full, drops (and counts) the oldest first. Returns its sequence
    /// number.
    pub fn push(&mut self, rec: LogRecord) -> u32 {
        if N == 0 {
            self.drops = self.drops.wrapping_add(1);
            self.head_seq = self.head_seq.wrapping_add(1);
            return self.head_seq.wrapping_sub(1);
        }
        if self.len == N {
            self.head = (self.head + 1) % N;
            self.head_seq = self.head_seq.wrapping_add(1);
            self.len -= 1;
            self.drops = self.drops.wrapping_add(1);
        }
        let seq = self.next_seq();
        self.buf[(self.head + self.len) % N] = rec;
        self.len += 1;
        seq
    }

    /// The record with sequence number `seq`, if still held.
    pub fn get(&self, seq: u32) -> Option<&LogRecord> {
        let off = seq.wrapping_sub(self.head_seq) as usize;
        if off < self.len {
            Some(&self.buf[(self.head + off) % N])
        } else {
            None
        }
    }

    /// Frees every record with a sequence number up to and including `seq`. An ack for a record
    /// not yet logged is refused (returns `None`, changes nothing); otherwise returns how many
    /// were freed.
    pub fn ack_through(&mut self, seq: u32) -> Option<usize> {
        let through = seq.wrapping_add(1).wrapping_sub(self.head_seq);
        if through as i32 <= 0 {
            return Some(0); // already freed (or dropped)
        }
        let n = through as usize;
        if n > self.len {
            return None;
        }
        self.head = (self.head + n) % N.max(1);
        self.head_seq = self.head_seq.wrapping_add(n as u32);
        self.len -= n;
        Some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(t: u32) -> LogRecord {
        LogRecord {
            time_s: t,
            ..LogRecord::default()
        }
    }

    #[test]
    fn record_is_compact() {
        assert_eq!(core::mem::size_of::<LogRecord>(), 16);
        // 48 h at one record a minute (2880) in 48 kB.
        assert!(core::mem::size_of::<Log<3072>>() <= 48 * 1024 + 32);
    }

    #[test]
    fn clear_is_a_new_log() {
        let mut log = Log::<4>::new();
        for t in 0..6 {
            log.push(rec(t));
        }
        log.ack_through(3);
        log.clear();
        assert!(log.is_empty());
        assert_eq!((log.first_seq(), log.next_seq(), log.drops()), (0, 0, 0));
        assert!(
            log.get(0).is_none() && log.get(5).is_none(),
            "old records unreachable"
        );
        assert_eq!(log.push(rec(9)), 0);
        assert_eq!(log.get(0).unwrap().time_s, 9);
    }

    #[test]
    fn overflow_drops_oldest_and_counts() {
        let mut log = Log::<4>::new();
        for t in 0..6 {
            assert_eq!(log.push(rec(t)), t);
        }
        assert_eq!(log.len(), 4);
        assert_eq!(log.drops(), 2);
        assert_eq!(log.first_seq(), 2);
        assert!(log.get(1).is_none());
        assert_eq!(log.get(2).unwrap().time_s, 2);
        assert_eq!(log.get(5).unwrap().time_s, 5);
        assert!(log.get(6).is_none());
    }

    #[test]
    fn ack_frees_through_seq_only() {
        let mut log = Log::<8>::new();
        for t in 0..5 {
            log.push(rec(t));
        }
        assert_eq!(log.ack_through(1), Some(2));
        assert_eq!(log.first_seq(), 2);
        assert_eq!(log.ack_through(1), Some(0), "duplicate ack");
        assert_eq!(log.ack_through(9), None, "ack beyond what was logged");
        assert_eq!(log.len(), 3);
        assert_eq!(log.ack_through(4), Some(3));
        assert!(log.is_empty());
        assert_eq!(log.push(rec(9)), 5);
        // Wrap the ring many times.
        for t in 0..100 {
            let s = log.push(rec(t));
            assert_eq!(log.ack_through(s), Some(if t == 0 { 2 } else { 1 }));
        }
        assert_eq!(log.drops(), 0);
    }
}
