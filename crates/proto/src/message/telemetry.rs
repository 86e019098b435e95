//! Telemetry batches (message type 0x01, device -> server).
//!
//! ```text
//! first seq    u32      sequence number of the first record; records are consecutive
//! channels     u8       bit i set = channel i present in every record (non-zero)
//! count        u8       number of records (1..=255)
//! records      count ×  time  varint   record 0: its age in seconds when the datagram was sealed;
//!                                       record k>0: seconds after record k-1
//!                       value zigzag varint per present channel, in channel order;
//!                                       record 0: the value; record k>0: the wrapping i32
//!                                       difference from the same channel in record k-1
//! ```
//!
//! Record sequence numbers start at 0 at every boot; with the hello counter's boot half they name
//! a record uniquely, which makes storing a retransmitted record idempotent. Times are ages, not
//! clock readings, so a device with no real-time clock can log from power-up: the server turns
//! them into timestamps with its own clock on arrival.

use super::{varint, MessageError};

/// Channel numbers (bit positions in the channel mask).
pub mod channel {
    /// Electric power, watts (mean over the logging interval).
    pub const POWER_W: u8 = 0;
    /// Electric energy meter reading, watt-hours (cumulative).
    pub const ENERGY_WH: u8 = 1;
    /// Water temperature, hundredths of a degree Celsius.
    pub const WATER_TEMP_CC: u8 = 2;
    /// Air temperature, hundredths of a degree Celsius.
    pub const AIR_TEMP_CC: u8 = 3;
    /// Relay states, bit 0 = pump, bit 1 = heater, bit 2.. = auxiliary.
    pub const RELAYS: u8 = 4;
    /// Number of channel slots a record has (mask bits 5..7 are reserved for future channels
    /// and decode like any other channel).
    pub const COUNT: usize = 8;
}

const HEADER_LEN: usize = 6;

/// One decoded record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    /// Sequence number (per boot).
    pub seq: u32,
    /// Seconds between this record and the time the datagram was sealed.
    pub age_s: u32,
    /// Channel values; only the channels in the batch's mask are meaningful (others are 0).
    pub values: [i32; channel::COUNT],
}

/// A validated telemetry batch, borrowed from the decrypted datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Telemetry<'a> {
    bytes: &'a [u8],
}

impl<'a> Telemetry<'a> {
    /// Validates a whole batch (every record), so that iterating it cannot fail.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, MessageError> {
        if bytes.len() < HEADER_LEN {
            return Err(MessageError::Truncated);
        }
        let t = Telemetry { bytes };
        if t.channels() == 0 || t.count() == 0 {
            return Err(MessageError::Range);
        }
        if t.first_seq()
            .checked_add(u32::from(t.count()) - 1)
            .is_none()
        {
            return Err(MessageError::Range);
        }
        let mut at = HEADER_LEN;
        let mut age: u32 = 0;
        for i in 0..t.count() {
            let time = varint::read(bytes, &mut at)?;
            age = if i == 0 {
                time
            } else {
                // A later record cannot be older than the first.
                age.checked_sub(time).ok_or(MessageError::Range)?
            };
            for _ in 0..t.channels().count_ones() {
                varint::read(bytes, &mut at)?;
            }
        }
        if at != bytes.len() {
            return Err(MessageError::Trailing);
        }
        Ok(t)
    }

    /// Sequence number of the first record.
    pub fn first_seq(&self) -> u32 {
        u32::from_be_bytes([self.bytes[0], self.bytes[1], self.bytes[2], self.bytes[3]])
    }

    /// Sequence number of the last record.
    pub fn last_seq(&self) -> u32 {
        self.first_seq() + u32::from(self.count()) - 1
    }

    /// The channel mask.
    pub fn channels(&self) -> u8 {
        self.bytes[4]
    }

    /// Number of records.
    pub fn count(&self) -> u8 {
        self.bytes[5]
    }

    /// The encoded batch (without the message type byte).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The records, oldest first.
    pub fn records(&self) -> Records<'a> {
        Records {
            bytes: self.bytes,
            at: HEADER_LEN,
            index: 0,
            count: self.count(),
            channels: self.channels(),
            seq: self.first_seq(),
            prev: Record {
                seq: 0,
                age_s: 0,
                values: [0; channel::COUNT],
            },
        }
    }
}

/// Iterator over the records of a validated batch.
#[derive(Debug, Clone)]
pub struct Records<'a> {
    bytes: &'a [u8],
    at: usize,
    index: u8,
    count: u8,
    channels: u8,
    seq: u32,
    prev: Record,
}

impl Iterator for Records<'_> {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        if self.index >= self.count {
            return None;
        }
        // The batch was validated by `Telemetry::parse`, so these reads succeed; `ok()?` keeps
        // the iterator panic-free even if that invariant were ever broken.
        let time = varint::read(self.bytes, &mut self.at).ok()?;
        let first = self.index == 0;
        let mut rec = Record {
            seq: self.seq.wrapping_add(u32::from(self.index)),
            age_s: if first {
                time
            } else {
                self.prev.age_s.saturating_sub(time)
            },
            values: [0; channel::COUNT],
        };
        for ch in 0..channel::COUNT {
            if self.channels & (1 << ch) != 0 {
                let v = varint::unzigzag(varint::read(self.bytes, &mut self.at).ok()?);
                rec.values[ch] = if first {
                    v
                } else {
                    self.prev.values[ch].wrapping_add(v)
                };
            }
        }
        self.index += 1;
        self.prev = rec;
        Some(rec)
    }
}

/// Builds a batch record by record into a caller's buffer, stopping when the next record would
/// not fit: this is how a device packs as much of its log as one datagram holds.
#[derive(Debug)]
pub struct TelemetryWriter<'b> {
    buf: &'b mut [u8],
    at: usize,
    channels: u8,
    count: u8,
    now_s: u32,
    prev_time_s: u32,
    prev_values: [i32; channel::COUNT],
}

impl<'b> TelemetryWriter<'b> {
    /// Starts a batch in `buf` (the space for the message body) whose first record will carry
    /// sequence number `first_seq`. `now_s` is the device clock at sealing time; record times
    /// passed to [`push`](Self::push) are on the same clock. Returns `None` if `buf` cannot hold
    /// the header or `channels` is 0.
    pub fn new(buf: &'b mut [u8], first_seq: u32, channels: u8, now_s: u32) -> Option<Self> {
        if buf.len() < HEADER_LEN || channels == 0 {
            return None;
        }
        buf[0..4].copy_from_slice(&first_seq.to_be_bytes());
        buf[4] = channels;
        buf[5] = 0;
        Some(TelemetryWriter {
            buf,
            at: HEADER_LEN,
            channels,
            count: 0,
            now_s,
            prev_time_s: 0,
            prev_values: [0; channel::COUNT],
        })
    }

    /// Appends a record taken at device time `time_s` (not after `now_s`, not before the previous
    /// record). Returns `false`, writing nothing, if it does not fit, the batch already holds 255
    /// records, or the time is out of order.
    pub fn push(&mut self, time_s: u32, values: &[i32; channel::COUNT]) -> bool {
        if self.count == u8::MAX || time_s > self.now_s {
            return false;
        }
        let time_field = if self.count == 0 {
            self.now_s - time_s
        } else if time_s < self.prev_time_s {
            return false;
        } else {
            time_s - self.prev_time_s
        };
        let mut at = self.at;
        if !varint::write(self.buf, &mut at, time_field) {
            return false;
        }
        for (ch, (&value, &prev)) in values.iter().zip(&self.prev_values).enumerate() {
            if self.channels & (1 << ch) != 0 {
                let v = if self.count == 0 {
                    value
                } else {
                    value.wrapping_sub(prev)
                };
                if !varint::write(self.buf, &mut at, varint::zigzag(v)) {
                    return false;
                }
            }
        }
        self.at = at;
        self.count += 1;
        self.buf[5] = self.count;
        self.prev_time_s = time_s;
        self.prev_values = *values;
        true
    }

    /// Records written so far.
    pub fn count(&self) -> u8 {
        self.count
    }

    /// Length of the batch written so far (valid once `count() > 0`).
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

    fn vals(p: i32, e: i32, w: i32, a: i32, r: i32) -> [i32; 8] {
        [p, e, w, a, r, 0, 0, 0]
    }

    #[test]
    fn fixture_round_trip() {
        let mut buf = [0u8; 64];
        let mut w = TelemetryWriter::new(&mut buf, 7, 0b1_1111, 1000).unwrap();
        assert!(w.push(880, &vals(1500, 123_456, 2650, 1520, 1)));
        assert!(w.push(940, &vals(1510, 123_481, 2651, 1519, 3)));
        let len = w.len();
        let expected = [
            0, 0, 0, 7, 0x1F, 2, // header
            120, 0xB8, 0x17, 0x80, 0x89, 0x0F, 0xB4, 0x29, 0xE0, 0x17, 2, // record 0
            60, 20, 50, 2, 1, 4, // record 1: deltas
        ];
        assert_eq!(&buf[..len], &expected[..]);
        let t = Telemetry::parse(&buf[..len]).unwrap();
        assert_eq!((t.first_seq(), t.last_seq(), t.count()), (7, 8, 2));
        let recs: std::vec::Vec<Record> = t.records().collect();
        assert_eq!(recs[0].seq, 7);
        assert_eq!(recs[0].age_s, 120);
        assert_eq!(recs[0].values, vals(1500, 123_456, 2650, 1520, 1));
        assert_eq!(recs[1].age_s, 60);
        assert_eq!(recs[1].values, vals(1510, 123_481, 2651, 1519, 3));
    }

    #[test]
    fn malformed_batches() {
        assert_eq!(Telemetry::parse(&[0, 0, 0]), Err(MessageError::Truncated));
        assert_eq!(
            Telemetry::parse(&[0, 0, 0, 0, 0, 1, 0]),
            Err(MessageError::Range)
        );
        assert_eq!(
            Telemetry::parse(&[0, 0, 0, 0, 1, 0]),
            Err(MessageError::Range)
        );
        assert_eq!(
            Telemetry::parse(&[0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 0, 0, 0, 0]),
            Err(MessageError::Range)
        );
        assert_eq!(
            Telemetry::parse(&[0, 0, 0, 0, 1, 1, 0]),
            Err(MessageError::Truncated)
        );
        assert_eq!(
            Telemetry::parse(&[0, 0, 0, 0, 1, 1, 0, 0, 9]),
            Err(MessageError::Trailing)
        );
        // Record 1 claims to be 5 s after record 0, which was only 3 s old.
        assert_eq!(
            Telemetry::parse(&[0, 0, 0, 0, 1, 2, 3, 0, 5, 0]),
            Err(MessageError::Range)
        );
    }

    #[test]
    fn writer_stops_when_full() {
        let mut buf = [0u8; 20];
        let mut w = TelemetryWriter::new(&mut buf, 0, 0b1111, 10_000).unwrap();
        let mut n = 0;
        while w.push(10_000, &vals(i32::MAX, i32::MIN, -1, 1, 0)) {
            n += 1;
        }
        assert_eq!(usize::from(w.count()), n);
        assert!(w.len() <= 20);
        let len = w.len();
        let t = Telemetry::parse(&buf[..len]).unwrap();
        assert_eq!(usize::from(t.count()), n);
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(
            mask in 1u8..=255,
            first_seq in 0u32..1_000_000,
            steps in proptest::collection::vec((0u32..4000, proptest::array::uniform8(any::<i32>())), 1..40),
        ) {
            let now = 10_000_000u32;
            let mut t = now - steps.iter().map(|s| s.0).sum::<u32>();
            let mut buf = [0u8; 1002];
            let mut w = TelemetryWriter::new(&mut buf, first_seq, mask, now).unwrap();
            let mut expected = std::vec::Vec::new();
            for (dt, values) in &steps {
                t += dt;
                if !w.push(t, values) { break; }
                let mut masked = [0; 8];
                for ch in 0..8 { if mask & (1 << ch) != 0 { masked[ch] = values[ch]; } }
                expected.push((now - t, masked));
            }
            let len = w.len();
            let batch = Telemetry::parse(&buf[..len]).unwrap();
            let got: std::vec::Vec<_> = batch.records().map(|r| (r.age_s, r.values)).collect();
            prop_assert_eq!(got, expected);
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(t) = Telemetry::parse(&bytes) {
                prop_assert_eq!(t.records().count(), usize::from(t.count()));
            }
        }
    }
}
