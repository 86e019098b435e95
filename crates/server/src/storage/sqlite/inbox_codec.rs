//! The encoding of an inbox row: all the new records of one ingest commit in one blob
//! (issue 21, disk written per datagram).
//!
//! Why one blob per commit: a row per record cost about 35 bytes of row and a page of B-tree
//! upkeep each time a leaf filled, and it was the commit's page writes, not its records, that
//! made up most of what an ingest commit wrote. A commit's records in this encoding take 10-14
//! bytes each for a one-channel record, so a commit of a hundred usually fits in the page the
//! previous commit left partly filled.
//!
//! Layout: the version byte [`VERSION`], then each record:
//! - a kind byte: 0 a narrow record, 1 a wide one;
//! - device id, boot and seq as unsigned LEB128;
//! - the time as the zigzag LEB128 of its difference from the previous record's (from 0);
//! - narrow: the channel mask byte, then each present channel's value, zigzag LEB128;
//! - wide: the configuration version plus one (0: none), then the mask's and the values'
//!   lengths and bytes, as `telemetry_wide` stores them ([`WideValues::encode`]).
//!
//! Decoding checks everything: a truncated blob, an unknown kind, a value out of range or
//! bytes left over is [`Error::Corrupt`], never a made-up record.

use super::inbox::Record;
use crate::storage::wide::{WideRow, WideValues};
use crate::storage::{Error, Result, TelemetryRow};
use tek_proto::message::telemetry::channel;

/// The first byte of every batch; another value is a layout this build does not know.
const VERSION: u8 = 1;

const NARROW: u8 = 0;
const WIDE: u8 = 1;

/// Appends the LEB128 of `v` to `out`.
fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_signed(out: &mut Vec<u8>, v: i64) {
    put(out, ((v << 1) ^ (v >> 63)) as u64);
}

/// A batch being written.
pub(super) struct Encoder {
    out: Vec<u8>,
    time: i64,
}

impl Encoder {
    pub(super) fn new() -> Self {
        Encoder {
            out: vec![VERSION],
            time: 0,
        }
    }

    fn head(&mut self, kind: u8, device_id: u32, boot: u32, seq: u32, time: i64) {
        self.out.push(kind);
        put(&mut self.out, device_id.into());
        put(&mut self.out, boot.into());
        put(&mut self.out, seq.into());
        put_signed(&mut self.out, time.wrapping_sub(self.time));
        self.time = time;
    }

    pub(super) fn narrow(&mut self, r: &TelemetryRow) {
        self.head(NARROW, r.device_id, r.boot, r.seq, r.time);
        self.out.push(r.channels);
        for v in (0..channel::COUNT as u8).filter_map(|ch| r.get(ch)) {
            put_signed(&mut self.out, v.into());
        }
    }

    pub(super) fn wide(&mut self, r: &WideRow) {
        self.head(WIDE, r.device_id, r.boot, r.seq, r.time);
        put(
            &mut self.out,
            r.config_version.map_or(0, |v| u64::from(v) + 1),
        );
        let (mask, vals) = r.values.encode();
        for part in [mask, vals] {
            put(&mut self.out, part.len() as u64);
            self.out.extend_from_slice(&part);
        }
    }

    pub(super) fn finish(self) -> Vec<u8> {
        self.out
    }
}

/// Reads a batch.
struct Reader<'a> {
    blob: &'a [u8],
    at: usize,
}

fn corrupt(what: &str) -> Error {
    Error::Corrupt(format!("telemetry inbox batch: {what}"))
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8> {
        let b = *self.blob.get(self.at).ok_or_else(|| corrupt("truncated"))?;
        self.at += 1;
        Ok(b)
    }

    fn unsigned(&mut self) -> Result<u64> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = self.byte()?;
            // The tenth byte holds the top bit only.
            if i == 9 && b > 1 {
                return Err(corrupt("number too long"));
            }
            v |= u64::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(corrupt("number too long"))
    }

    fn signed(&mut self) -> Result<i64> {
        let v = self.unsigned()?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        u32::try_from(self.unsigned()?).map_err(|_| corrupt(what))
    }

    fn bytes(&mut self) -> Result<&'a [u8]> {
        let len = usize::try_from(self.unsigned()?).map_err(|_| corrupt("length"))?;
        let end = self.at.checked_add(len).ok_or_else(|| corrupt("length"))?;
        let part = self
            .blob
            .get(self.at..end)
            .ok_or_else(|| corrupt("truncated"))?;
        self.at = end;
        Ok(part)
    }
}

/// Every record of `blob`, in the order they were written.
pub(super) fn decode(blob: &[u8]) -> Result<Vec<Record>> {
    let mut r = Reader { blob, at: 0 };
    if r.byte()? != VERSION {
        return Err(corrupt("unknown version"));
    }
    let mut out = Vec::new();
    let mut time: i64 = 0;
    while r.at < blob.len() {
        let kind = r.byte()?;
        let device_id = r.u32("device id")?;
        let boot = r.u32("boot")?;
        let seq = r.u32("seq")?;
        time = time.wrapping_add(r.signed()?);
        out.push(match kind {
            NARROW => {
                let mut row = TelemetryRow {
                    device_id,
                    boot,
                    seq,
                    time,
                    channels: r.byte()?,
                    values: [0; channel::COUNT],
                };
                row.fill_values(|_| i32::try_from(r.signed()?).map_err(|_| corrupt("value")))?;
                Record::Narrow(row)
            }
            WIDE => {
                let config_version = match r.unsigned()? {
                    0 => None,
                    v => Some(u32::try_from(v - 1).map_err(|_| corrupt("version"))?),
                };
                let mask = r.bytes()?;
                let vals = r.bytes()?;
                Record::Wide(WideRow {
                    device_id,
                    boot,
                    seq,
                    time,
                    config_version,
                    values: WideValues::decode(mask, vals)?,
                })
            }
            k => return Err(corrupt(&format!("record kind {k}"))),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn narrow() -> impl Strategy<Value = TelemetryRow> {
        (
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<i64>(),
            any::<u8>(),
            any::<[i32; 8]>(),
        )
            .prop_map(|(device_id, boot, seq, time, channels, mut values)| {
                // A channel outside the mask holds 0, as TelemetryRow keeps it.
                for (ch, v) in values.iter_mut().enumerate() {
                    if channels & (1 << ch) == 0 {
                        *v = 0;
                    }
                }
                TelemetryRow {
                    device_id,
                    boot,
                    seq,
                    time,
                    channels,
                    values,
                }
            })
    }

    fn wide() -> impl Strategy<Value = WideRow> {
        (
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<i64>(),
            any::<Option<u32>>(),
            proptest::collection::vec(any::<Option<i32>>(), 1..40),
        )
            .prop_map(
                |(device_id, boot, seq, time, config_version, vals)| WideRow {
                    device_id,
                    boot,
                    seq,
                    time,
                    config_version,
                    values: WideValues::from_options(&vals),
                },
            )
    }

    fn same(a: &Record, b: &Record) -> bool {
        match (a, b) {
            (Record::Narrow(a), Record::Narrow(b)) => a == b,
            (Record::Wide(a), Record::Wide(b)) => a == b,
            _ => false,
        }
    }

    proptest! {
        /// Any mix of records, any times (far apart, backwards, extremes), round-trips exactly.
        #[test]
        fn a_batch_round_trips(
            records in proptest::collection::vec(
                prop_oneof![narrow().prop_map(Record::Narrow), wide().prop_map(Record::Wide)],
                0..30,
            )
        ) {
            let mut e = Encoder::new();
            for r in &records {
                match r {
                    Record::Narrow(r) => e.narrow(r),
                    Record::Wide(r) => e.wide(r),
                }
            }
            let blob = e.finish();
            let back = decode(&blob).unwrap();
            prop_assert_eq!(back.len(), records.len());
            for (a, b) in back.iter().zip(&records) {
                prop_assert!(same(a, b), "{:?} != {:?}", a, b);
            }
            // Every cut of the blob short of its end is an error or fewer whole records,
            // never a panic or a different record.
            for cut in 0..blob.len() {
                if let Ok(part) = decode(&blob[..cut]) {
                    prop_assert!(part.len() < records.len() || records.is_empty());
                    for (a, b) in part.iter().zip(&records) {
                        prop_assert!(same(a, b));
                    }
                }
            }
        }

        /// Random bytes decode to an error or to records, never a panic.
        #[test]
        fn any_bytes_decode_without_panic(blob in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&blob);
        }
    }

    #[test]
    fn a_one_channel_record_takes_about_a_dozen_bytes() {
        let mut e = Encoder::new();
        for seq in 0..100u32 {
            e.narrow(&TelemetryRow {
                device_id: 70_000 + seq,
                boot: 3,
                seq: 1_000_000 + seq,
                time: 1_765_000_000 + i64::from(seq),
                channels: 0b10,
                values: [0, 123_456, 0, 0, 0, 0, 0, 0],
            });
        }
        let len = e.finish().len();
        assert!(len <= 1 + 100 * 14, "{len} bytes for 100 records");
    }

    #[test]
    fn unknown_versions_and_kinds_are_corrupt() {
        assert!(matches!(decode(&[]), Err(Error::Corrupt(_))));
        assert!(matches!(decode(&[2]), Err(Error::Corrupt(_))));
        assert!(matches!(
            decode(&[VERSION, 7, 1, 1, 1, 0]),
            Err(Error::Corrupt(_))
        ));
        // A narrow record's value beyond i32.
        let mut blob = vec![VERSION, NARROW, 1, 1, 1, 0, 1];
        put_signed(&mut blob, i64::from(i32::MAX) + 1);
        assert!(matches!(decode(&blob), Err(Error::Corrupt(_))));
    }
}
