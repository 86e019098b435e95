//! The log of channel records, sent as wide telemetry (PROTOCOL.md 17.5): a ring buffer of
//! `N` records of `CH` channels, each value or "no value", numbered from 0 at every boot like
//! the five-channel [`crate::log`].
//!
//! * [`WideLog::push`] adds a record; a full log drops its oldest record and counts it.
//! * [`WideLog::batch`] encodes the oldest records that fit into a WideTelemetry message
//!   (`tek_proto::channel::wide::WideWriter`; the channels of the map are 0..n, so the header
//!   takes the short form), with ages from the caller's clock.
//! * [`WideLog::ack_through`] frees them once the server acknowledged (Ack 0x81).

use tek_proto::channel::code;
use tek_proto::channel::wide::{ChannelSet, WideWriter};

/// One record.
#[derive(Debug, Clone, Copy)]
struct Record<const CH: usize> {
    seq: u32,
    time_s: u32,
    values: [Option<i32>; CH],
}

/// A ring buffer of `N` records of `CH` channels.
#[derive(Debug)]
pub struct WideLog<const N: usize, const CH: usize> {
    records: [Record<CH>; N],
    /// Index of the oldest record.
    head: usize,
    len: usize,
    next_seq: u32,
    drops: u32,
}

impl<const N: usize, const CH: usize> Default for WideLog<N, CH> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize, const CH: usize> WideLog<N, CH> {
    /// An empty log; the first record is number 0.
    pub const fn new() -> Self {
        WideLog {
            records: [Record {
                seq: 0,
                time_s: 0,
                values: [None; CH],
            }; N],
            head: 0,
            len: 0,
            next_seq: 0,
            drops: 0,
        }
    }

    /// Empties the log in place (a device's log is too large to be replaced through the
    /// stack); the next record is number 0 again and the drops count from 0.
    pub fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
        self.next_seq = 0;
        self.drops = 0;
    }

    /// Records waiting for an acknowledgement.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no record waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The sequence number of the oldest record held (the next one's if none is).
    pub fn first_seq(&self) -> u32 {
        match self.len {
            0 => self.next_seq,
            _ => self.records[self.head].seq,
        }
    }

    /// Records dropped from a full log.
    pub fn drops(&self) -> u32 {
        self.drops
    }

    /// Adds a record taken at device time `time_s` (seconds since power-up); `values[ch]` is
    /// channel `ch`'s value (past the slice: no value). Returns its sequence number.
    pub fn push(&mut self, time_s: u32, values: &[Option<i32>]) -> u32 {
        if N == 0 {
            self.drops = self.drops.saturating_add(1);
            return self.next_seq;
        }
        if self.len == N {
            self.head = (self.head + 1) % N;
            self.len -= 1;
            self.drops = self.drops.saturating_add(1);
        }
        let mut v = [None; CH];
        for (d, s) in v.iter_mut().zip(values) {
            *d = *s;
        }
        let seq = self.next_seq;
        self.records[(self.head + self.len) % N] = Record {
            seq,
            time_s,
            values: v,
        };
        self.len += 1;
        self.next_seq = self.next_seq.wrapping_add(1);
        seq
    }

    /// Frees every record up to `through_seq`; returns how many.
    pub fn ack_through(&mut self, through_seq: u32) -> usize {
        let mut n = 0;
        while self.len > 0 && self.records[self.head].seq <= through_seq {
            self.head = (self.head + 1) % N;
            self.len -= 1;
            n += 1;
        }
        n
    }

    /// Writes a WideTelemetry message (type byte 0x07 and body) of the oldest records that fit
    /// into `buf`, for the first `channels` channels, sealed at device time `now_s`. Returns
    /// (first seq, last seq, length), or `None` if the log is empty or not even one record fits.
    pub fn batch(&self, channels: usize, now_s: u32, buf: &mut [u8]) -> Option<(u32, u32, usize)> {
        self.batch_through(channels, u32::MAX, now_s, buf)
    }

    /// As [`batch`](Self::batch), with no record after number `last` (a batch in flight sent
    /// again holds no more records than the first time, so one Ack covers it exactly).
    pub fn batch_through(
        &self,
        channels: usize,
        last: u32,
        now_s: u32,
        buf: &mut [u8],
    ) -> Option<(u32, u32, usize)> {
        let channels = channels.min(CH);
        if self.len == 0 || channels == 0 || buf.is_empty() {
            return None;
        }
        let set = (0..channels).fold(ChannelSet(0), |s, c| s.with(c));
        let first = self.records[self.head].seq;
        let (head, body) = buf.split_first_mut()?;
        *head = code::WIDE_TELEMETRY;
        let mut w = WideWriter::new(body, first, set, now_s)?;
        let mut through = None;
        for i in 0..self.len.min(usize::from(u8::MAX)) {
            let r = &self.records[(self.head + i) % N];
            if r.seq.wrapping_sub(first) > last.wrapping_sub(first)
                || !w.push(r.time_s.min(now_s), &r.values[..channels])
            {
                break;
            }
            through = Some(r.seq);
        }
        Some((first, through?, 1 + w.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tek_proto::channel::ChannelMessage;

    #[test]
    fn records_with_gaps_round_trip_and_ack() {
        let mut log = WideLog::<4, 3>::new();
        assert_eq!(log.push(60, &[Some(1), None, Some(-5)]), 0);
        assert_eq!(log.push(120, &[Some(2), Some(7), None]), 1);
        let mut buf = [0u8; 64];
        let (first, last, n) = log.batch(3, 130, &mut buf).unwrap();
        assert_eq!((first, last), (0, 1));
        let Ok(Some(ChannelMessage::WideTelemetry(t))) = ChannelMessage::parse(&buf[..n]) else {
            panic!("not wide telemetry");
        };
        let r: std::vec::Vec<_> = t.records().collect();
        assert_eq!((r[0].age_s, r[0].get(0), r[0].get(1)), (70, Some(1), None));
        assert_eq!((r[1].age_s, r[1].get(1), r[1].get(2)), (10, Some(7), None));
        assert_eq!(log.ack_through(0), 1);
        assert_eq!(log.batch(3, 130, &mut buf).map(|b| b.0), Some(1));
        // Full: the oldest goes, and is counted.
        for t in 0..5 {
            log.push(200 + t, &[Some(0); 3]);
        }
        assert_eq!((log.len(), log.drops()), (4, 2));
        // A small buffer takes what fits.
        let (first, last, _) = log.batch(3, 300, &mut buf[..12]).unwrap();
        assert!(last >= first && last < first + 4);
        assert!(log.batch(3, 300, &mut buf[..3]).is_none());
        // Cleared in place: empty, numbered from 0 again, no drops.
        log.clear();
        assert_eq!((log.len(), log.drops()), (0, 0));
        assert!(log.batch(3, 300, &mut buf).is_none());
        assert_eq!(log.push(400, &[None; 3]), 0);
    }
}
