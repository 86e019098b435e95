//! Wide telemetry (message type 0x07, device -> server; PROTOCOL.md 17.5): records of any subset
//! of up to 128 channels, with an explicit "no value" per channel and record.
//!
//! ```text
//! first seq   varint   sequence number of the first record; records are consecutive
//! count       u8       records, 1..=255
//! channels    u8       0x80 + k (k 0..=127): the channels 0..=k, no mask follows;
//!                      1..=16: the length of the mask that follows; other values: range
//! mask        [len]    only after 1..=16: bit j of byte i (least significant first) = channel
//!                      8i+j present; the last byte is not 0, and the set is not 0..=k
//!                      (that set has the short form)
//! records     count ×  head   varint  time << 1 | gaps  (time: record 0 its age in seconds,
//!                                      record k>0 seconds after record k-1)
//!                      gaps bitmap   only if gaps = 1: ceil(n/8) bytes, bit k (LSB first) of
//!                                      the present channels in index order = has a value; the
//!                                      bits past n are 0
//!                      values  zigzag varint per channel that has a value, in index order:
//!                                      the value minus the channel's last value in an earlier
//!                                      record of this batch (wrapping i32), or the value itself
//!                                      if it has none
//! ```
//!
//! Parsing untrusted bytes never panics; the writer never writes past its buffer.

use crate::message::{varint, MessageError};

/// Most channels.
pub const MAX_CHANNELS: usize = super::map::MAX_CHANNELS;
/// Largest age or time step (the head varint holds it shifted left by one).
pub const MAX_TIME: u32 = u32::MAX >> 1;

/// A set of channel indices 0..128.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct ChannelSet(pub u128);

impl ChannelSet {
    /// Whether channel `ch` is in the set.
    pub fn contains(self, ch: usize) -> bool {
        ch < MAX_CHANNELS && self.0 >> ch & 1 != 0
    }

    /// The set with `ch` added (ignored past 127).
    pub fn with(self, ch: usize) -> ChannelSet {
        if ch < MAX_CHANNELS {
            ChannelSet(self.0 | 1 << ch)
        } else {
            self
        }
    }

    /// Number of channels.
    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Bytes of the mask on the wire.
    pub fn mask_len(self) -> usize {
        (MAX_CHANNELS - self.0.leading_zeros() as usize).div_ceil(8)
    }

    /// The channels in index order.
    pub fn iter(self) -> impl Iterator<Item = usize> {
        (0..MAX_CHANNELS).filter(move |&c| self.contains(c))
    }
}

/// The `channels` byte of the short form: `PREFIX + k` is the channels 0..=k.
const PREFIX: u8 = 0x80;

impl ChannelSet {
    /// `Some(k)` if the set is exactly the channels 0..=k (it then has the short form).
    fn prefix(self) -> Option<u8> {
        let n = self.len();
        (n > 0 && (n == MAX_CHANNELS || self.0 == (1u128 << n) - 1)).then(|| (n - 1) as u8)
    }

    /// Bytes the set takes in a batch header: the `channels` byte and the mask, if any.
    pub fn header_len(self) -> usize {
        if self.prefix().is_some() {
            1
        } else {
            1 + self.mask_len()
        }
    }
}

fn gaps_len(n: usize) -> usize {
    n.div_ceil(8)
}

/// One decoded record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WideRecord {
    /// Sequence number.
    pub seq: u32,
    /// Seconds between this record and the sealing of the datagram.
    pub age_s: u32,
    /// Channels of this record that have a value (a subset of the batch's channels).
    pub has_value: ChannelSet,
    values: [i32; MAX_CHANNELS],
}

impl WideRecord {
    /// The value of channel `ch`: `None` if it is not in the batch or has no value here.
    pub fn get(&self, ch: usize) -> Option<i32> {
        self.has_value.contains(ch).then(|| self.values[ch])
    }
}

/// A validated wide telemetry batch, borrowed from the decrypted datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WideTelemetry<'a> {
    bytes: &'a [u8],
    channels: ChannelSet,
    first_seq: u32,
    count: u8,
    /// Offset of the first record (after the header: at most 5 + 2 + 16 bytes).
    records_at: u8,
}

impl<'a> WideTelemetry<'a> {
    /// Validates a whole batch, so that iterating it cannot fail.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, MessageError> {
        let mut at = 0;
        let first_seq = varint::read(bytes, &mut at)?;
        let (&count, rest) = bytes
            .get(at..)
            .and_then(<[u8]>::split_first)
            .ok_or(MessageError::Truncated)?;
        let &form = rest.first().ok_or(MessageError::Truncated)?;
        at += 2;
        if count == 0 || first_seq.checked_add(u32::from(count) - 1).is_none() {
            return Err(MessageError::Range);
        }
        let channels = if form >= PREFIX {
            let k = u32::from(form - PREFIX) + 1;
            ChannelSet(if k == 128 {
                u128::MAX
            } else {
                (1u128 << k) - 1
            })
        } else {
            let mask_len = usize::from(form);
            if !(1..=16).contains(&mask_len) {
                return Err(MessageError::Range);
            }
            let mask = bytes
                .get(at..at + mask_len)
                .ok_or(MessageError::Truncated)?;
            at += mask_len;
            let mut m = [0u8; 16];
            m[..mask_len].copy_from_slice(mask);
            let set = ChannelSet(u128::from_le_bytes(m));
            // One encoding per set: no trailing zero byte, no long form of a prefix.
            if mask[mask_len - 1] == 0 || set.prefix().is_some() {
                return Err(MessageError::Range);
            }
            set
        };
        let t = WideTelemetry {
            bytes,
            channels,
            first_seq,
            count,
            records_at: at as u8,
        };
        let mut r = t.raw_records();
        for _ in 0..count {
            r.next_raw()?;
        }
        if r.at != bytes.len() {
            return Err(MessageError::Trailing);
        }
        Ok(t)
    }

    /// Sequence number of the first record.
    pub fn first_seq(&self) -> u32 {
        self.first_seq
    }

    /// Number of records.
    pub fn count(&self) -> u8 {
        self.count
    }

    /// Sequence number of the last record.
    pub fn last_seq(&self) -> u32 {
        self.first_seq
            .wrapping_add(u32::from(self.count).saturating_sub(1))
    }

    /// The channels of the batch.
    pub fn channels(&self) -> ChannelSet {
        self.channels
    }

    /// The encoded batch (without the message type byte).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    fn raw_records(&self) -> WideRecords<'a> {
        WideRecords {
            bytes: self.bytes,
            at: usize::from(self.records_at),
            index: 0,
            count: self.count(),
            channels: self.channels,
            prev: WideRecord {
                seq: self.first_seq(),
                age_s: 0,
                has_value: ChannelSet(0),
                values: [0; MAX_CHANNELS],
            },
            seen: ChannelSet(0),
        }
    }

    /// The records, oldest first.
    pub fn records(&self) -> WideRecords<'a> {
        self.raw_records()
    }
}

/// Iterator over the records of a validated batch.
#[derive(Debug, Clone)]
pub struct WideRecords<'a> {
    bytes: &'a [u8],
    at: usize,
    index: u8,
    count: u8,
    channels: ChannelSet,
    /// The previous record; its `values` hold each channel's last value in the batch.
    prev: WideRecord,
    /// Channels that had a value in an earlier record of the batch.
    seen: ChannelSet,
}

impl WideRecords<'_> {
    fn next_raw(&mut self) -> Result<WideRecord, MessageError> {
        let head = varint::read(self.bytes, &mut self.at)?;
        let time = head >> 1;
        let first = self.index == 0;
        let age_s = if first {
            time
        } else {
            self.prev
                .age_s
                .checked_sub(time)
                .ok_or(MessageError::Range)?
        };
        let n = self.channels.len();
        let mut has_value = self.channels;
        if head & 1 != 0 {
            let gaps = self
                .bytes
                .get(self.at..self.at + gaps_len(n))
                .ok_or(MessageError::Truncated)?;
            self.at += gaps_len(n);
            let mut set = ChannelSet(0);
            for (k, ch) in self.channels.iter().enumerate() {
                if gaps[k / 8] >> (k % 8) & 1 != 0 {
                    set = set.with(ch);
                }
            }
            // Bits past the last channel must be 0 (one encoding per record).
            if n % 8 != 0 && gaps[n / 8] >> (n % 8) != 0 {
                return Err(MessageError::Range);
            }
            has_value = set;
        }
        let mut rec = WideRecord {
            seq: self.prev.seq.wrapping_add(u32::from(!first)),
            age_s,
            has_value,
            values: self.prev.values,
        };
        for ch in has_value.iter() {
            let v = varint::unzigzag(varint::read(self.bytes, &mut self.at)?);
            rec.values[ch] = if self.seen.contains(ch) {
                rec.values[ch].wrapping_add(v)
            } else {
                v
            };
        }
        self.seen = ChannelSet(self.seen.0 | has_value.0);
        self.index += 1;
        self.prev = rec;
        Ok(rec)
    }
}

impl Iterator for WideRecords<'_> {
    type Item = WideRecord;

    fn next(&mut self) -> Option<WideRecord> {
        if self.index >= self.count {
            return None;
        }
        // Validated by `WideTelemetry::parse`; `ok()?` keeps this panic-free regardless.
        self.next_raw().ok()
    }
}

/// Builds a batch record by record into a caller's buffer, stopping when the next record would
/// not fit (as [`crate::message::TelemetryWriter`]).
#[derive(Debug)]
pub struct WideWriter<'b> {
    buf: &'b mut [u8],
    at: usize,
    /// Offset of the count byte (after the first sequence number's varint).
    count_at: usize,
    channels: ChannelSet,
    count: u8,
    now_s: u32,
    prev_time_s: u32,
    last: [i32; MAX_CHANNELS],
    seen: ChannelSet,
}

impl<'b> WideWriter<'b> {
    /// Starts a batch of `channels` (not empty) in `buf`, first record `first_seq`, sealed at
    /// device time `now_s`. `None` if the header does not fit or the set is empty.
    pub fn new(
        buf: &'b mut [u8],
        first_seq: u32,
        channels: ChannelSet,
        now_s: u32,
    ) -> Option<Self> {
        if channels.is_empty() {
            return None;
        }
        let mut at = 0;
        if !varint::write(buf, &mut at, first_seq) {
            return None;
        }
        let count_at = at;
        let header = buf.get_mut(at..at + 1 + channels.header_len())?;
        header[0] = 0;
        match channels.prefix() {
            Some(k) => header[1] = PREFIX + k,
            None => {
                let mask_len = channels.mask_len();
                header[1] = mask_len as u8;
                header[2..].copy_from_slice(&channels.0.to_le_bytes()[..mask_len]);
            }
        }
        at += header.len();
        Some(WideWriter {
            buf,
            at,
            count_at,
            channels,
            count: 0,
            now_s,
            prev_time_s: 0,
            last: [0; MAX_CHANNELS],
            seen: ChannelSet(0),
        })
    }

    /// Appends a record taken at device time `time_s`; `values[ch]` is channel `ch`'s value
    /// (`None`, or an index past the slice: no value). Returns `false`, writing nothing, if it
    /// does not fit, the batch holds 255 records, or the time is out of order or too old.
    pub fn push(&mut self, time_s: u32, values: &[Option<i32>]) -> bool {
        if self.count == u8::MAX || time_s > self.now_s {
            return false;
        }
        let time = if self.count == 0 {
            self.now_s - time_s
        } else if time_s < self.prev_time_s {
            return false;
        } else {
            time_s - self.prev_time_s
        };
        if time > MAX_TIME {
            return false;
        }
        let value = |ch: usize| values.get(ch).copied().flatten();
        let mut has_value = ChannelSet(0);
        for ch in self.channels.iter() {
            if value(ch).is_some() {
                has_value = has_value.with(ch);
            }
        }
        let gaps = has_value != self.channels;
        let mut at = self.at;
        if !varint::write(self.buf, &mut at, time << 1 | u32::from(gaps)) {
            return false;
        }
        if gaps {
            let n = gaps_len(self.channels.len());
            let Some(dst) = self.buf.get_mut(at..at + n) else {
                return false;
            };
            dst.fill(0);
            for (k, ch) in self.channels.iter().enumerate() {
                if has_value.contains(ch) {
                    dst[k / 8] |= 1 << (k % 8);
                }
            }
            at += n;
        }
        for ch in has_value.iter() {
            let v = value(ch).unwrap_or(0);
            let d = if self.seen.contains(ch) {
                v.wrapping_sub(self.last[ch])
            } else {
                v
            };
            if !varint::write(self.buf, &mut at, varint::zigzag(d)) {
                return false;
            }
        }
        for ch in has_value.iter() {
            self.last[ch] = value(ch).unwrap_or(0);
        }
        self.seen = ChannelSet(self.seen.0 | has_value.0);
        self.at = at;
        self.count += 1;
        self.buf[self.count_at] = self.count;
        self.prev_time_s = time_s;
        true
    }

    /// Records written so far.
    pub fn count(&self) -> u8 {
        self.count
    }

    /// Length of the batch so far (valid once `count() > 0`).
    pub fn len(&self) -> usize {
        self.at
    }

    /// Whether no record was written yet.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fixture_with_a_missing_value() {
        // Channels 0, 2 and 9; in record 1 channel 2 has no value.
        let set = ChannelSet(0).with(0).with(2).with(9);
        let mut buf = [0u8; 64];
        let mut w = WideWriter::new(&mut buf, 5, set, 1000).unwrap();
        let mut v = [None; 10];
        v[0] = Some(1500);
        v[2] = Some(-3);
        v[9] = Some(70000);
        assert!(w.push(880, &v));
        v[0] = Some(1510);
        v[2] = None;
        assert!(w.push(940, &v));
        v[2] = Some(-1);
        v[9] = Some(69990);
        assert!(w.push(1000, &v));
        let n = w.len();
        let expected: &[u8] = &[
            5,
            3,
            2,
            0b0000_0101,
            0b0000_0010, // header: first seq 5, 3 records, mask 0x0205
            0xF0,
            0x01,
            0xB8,
            0x17,
            0x05,
            0xE0,
            0xC5,
            0x08, // age 120 <<1, 1500, -3, 70000
            121,
            0b101,
            20,
            0, // step 60 <<1 | 1, gaps: channel 2 missing; +10, +0
            120,
            0,
            4,
            19, // step 60; +0, -1 - -3 = +2, -10
        ];
        assert_eq!(&buf[..n], expected);
        let t = WideTelemetry::parse(expected).unwrap();
        assert_eq!((t.first_seq(), t.last_seq(), t.channels()), (5, 7, set));
        let r: std::vec::Vec<_> = t.records().collect();
        assert_eq!(r.len(), 3);
        assert_eq!((r[0].seq, r[0].age_s), (5, 120));
        assert_eq!(
            (r[0].get(0), r[0].get(2), r[0].get(9)),
            (Some(1500), Some(-3), Some(70000))
        );
        assert_eq!((r[1].seq, r[1].age_s), (6, 60));
        assert_eq!(
            (r[1].get(0), r[1].get(2), r[1].get(9)),
            (Some(1510), None, Some(70000))
        );
        assert_eq!(
            (r[2].get(0), r[2].get(2), r[2].get(9)),
            (Some(1510), Some(-1), Some(69990))
        );
        assert_eq!(r[2].get(1), None, "not in the batch");
    }

    #[test]
    fn malformed() {
        let p = WideTelemetry::parse;
        assert_eq!(p(&[0, 1]), Err(MessageError::Truncated));
        assert_eq!(p(&[0x80]), Err(MessageError::Truncated));
        // Count 0.
        assert_eq!(p(&[0, 0, 1, 1, 0, 0]), Err(MessageError::Range));
        // Channel forms 0 and 17..=0x7F.
        assert_eq!(p(&[0, 1, 0, 0]), Err(MessageError::Range));
        assert_eq!(p(&[0, 1, 17]), Err(MessageError::Range));
        assert_eq!(p(&[0, 1, 0x7F]), Err(MessageError::Range));
        // A mask ending in a zero byte, and the long form of a prefix set.
        assert_eq!(p(&[0, 1, 2, 2, 0, 0, 0]), Err(MessageError::Range));
        assert_eq!(p(&[0, 1, 1, 1, 0, 0]), Err(MessageError::Range));
        assert_eq!(p(&[0, 1, 1, 3, 0, 0, 0]), Err(MessageError::Range));
        // Sequence numbers past 2^32 - 1.
        assert_eq!(
            p(&[0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 2, 0x80, 0, 0, 0, 0]),
            Err(MessageError::Range)
        );
        assert_eq!(p(&[0, 1, 1, 2, 0]), Err(MessageError::Truncated));
        assert_eq!(p(&[0, 1, 0x80, 0, 0, 0]), Err(MessageError::Trailing));
        // Gap bits past the channel count.
        assert_eq!(p(&[0, 1, 0x80, 1, 0b10]), Err(MessageError::Range));
        // All gaps: no values at all is fine.
        assert!(p(&[0, 1, 0x80, 1, 0]).is_ok());
        // A later record older than the first.
        assert_eq!(p(&[0, 2, 0x80, 6, 0, 10, 0]), Err(MessageError::Range));
    }

    #[test]
    fn short_form_of_the_first_channels() {
        // Channels 0..=15, as a 16-channel map logs them: one byte instead of three.
        let set = (0..16).fold(ChannelSet(0), |s, c| s.with(c));
        assert_eq!(set.header_len(), 1);
        let mut buf = [0u8; 64];
        let mut w = WideWriter::new(&mut buf, 300, set, 60).unwrap();
        assert!(w.push(60, &[Some(1); 16]));
        let n = w.len();
        assert_eq!(&buf[..4], &[0xAC, 0x02, 1, 0x8F]);
        let t = WideTelemetry::parse(&buf[..n]).unwrap();
        assert_eq!((t.first_seq(), t.count(), t.channels()), (300, 1, set));
        // All 128 channels.
        let all = ChannelSet(u128::MAX);
        let mut w = WideWriter::new(&mut buf, 0, all, 0).unwrap();
        assert!(w.push(0, &[None; 128]));
        let n = w.len();
        assert_eq!(&buf[..3], &[0, 1, 0xFF]);
        assert_eq!(WideTelemetry::parse(&buf[..n]).unwrap().channels(), all);
        // A set that is not a prefix keeps its mask.
        assert_eq!(ChannelSet(0b110).header_len(), 2);
    }

    proptest! {
        #[test]
        fn round_trip(
            set in any::<u128>().prop_filter("non-empty", |s| *s != 0),
            first_seq in 0u32..1_000_000,
            steps in proptest::collection::vec((0u32..4000, proptest::collection::vec(proptest::option::weighted(0.9, any::<i32>()), MAX_CHANNELS)), 1..12),
        ) {
            let set = ChannelSet(set);
            let now = 10_000_000u32;
            let mut t = now - steps.iter().map(|s| s.0).sum::<u32>();
            let mut buf = std::vec![0u8; 4000];
            let mut w = WideWriter::new(&mut buf, first_seq, set, now).unwrap();
            let mut expected = std::vec::Vec::new();
            for (dt, values) in &steps {
                t += dt;
                if !w.push(t, values) { break; }
                expected.push((now - t, values.clone()));
            }
            let n = w.len();
            let batch = WideTelemetry::parse(&buf[..n]).unwrap();
            let got: std::vec::Vec<_> = batch.records().collect();
            prop_assert_eq!(got.len(), expected.len());
            for (r, (age, values)) in got.iter().zip(&expected) {
                prop_assert_eq!(r.age_s, *age);
                for (ch, &value) in values.iter().enumerate() {
                    let want = if set.contains(ch) { value } else { None };
                    prop_assert_eq!(r.get(ch), want);
                }
            }
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            if let Ok(t) = WideTelemetry::parse(&bytes) {
                prop_assert_eq!(t.records().count(), usize::from(t.count()));
            }
        }
    }
}
