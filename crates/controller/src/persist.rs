//! The flash record: what survives a power cut.
//!
//! The controller keeps one record and writes it alternately into two flash slots, so a power
//! cut in the middle of a write leaves the previous record readable. At power-up the host reads
//! both slots and [`load`] takes the valid one with the higher sequence number — or, on a device
//! short of RAM, the controller reads them itself, one at a time into its own buffer, picks the
//! newer by [`check`]ing headers and CRCs, and decodes only that one into place
//! ([`Controller::boot_from_flash`](crate::Controller::boot_from_flash)).
//!
//! ```text
//! 0   magic            "TK"
//! 2   format           u8 = 1
//! 3   flags            u8: bit 0 a trial is running (previous config follows),
//!                          bit 1 a rolled-back version is remembered
//! 4   sequence         u32, +1 per write (the slot written is sequence % 2)
//! 8   boot counter     u32 (the high half of the hello counter)
//! 12  config version   u32 (the running configuration)
//! 16  items length     u16
//! 18  previous version u32 (the configuration a trial would roll back to; 0 if none)
//! 22  previous length  u16 (0 if none)
//! 24  rolled back      u32 (the version that was rolled back; 0 if none)
//! 28  items            the running configuration, as tek-proto's Config item list
//! ..  previous items   the previous configuration (if a trial runs)
//! ..  crc32            IEEE CRC-32 of every byte before it
//! ```
//!
//! All integers are big-endian. A record whose magic, format, lengths, CRC or configuration
//! items do not check out is ignored as if the slot were erased.

use tek_proto::message::config::Config;

const MAGIC: [u8; 2] = *b"TK";
const FORMAT: u8 = 1;
const HEADER: usize = 28;
const FLAG_TRIAL: u8 = 1;
const FLAG_ROLLED_BACK: u8 = 2;

/// The longest item list a valid configuration encodes to.
pub const MAX_ITEMS: usize = tek_proto::message::config::MAX_ITEMS_LEN;

/// The longest record; a flash slot must hold at least this many bytes.
pub const MAX_LEN: usize = HEADER + 2 * MAX_ITEMS + 4;

/// The contents of a record.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stored {
    /// Sequence number of the write.
    pub seq: u32,
    /// Boot counter of the boot that wrote it.
    pub boot: u32,
    /// Version of the running configuration.
    pub version: u32,
    /// The running configuration.
    pub config: Config,
    /// A network change on trial: the version and configuration to roll back to.
    pub previous: Option<(u32, Config)>,
    /// The last version that was rolled back (so a re-sent copy is refused, not re-applied).
    pub rolled_back: Option<u32>,
}

/// IEEE 802.3 CRC-32 (reflected, polynomial 0xEDB88320), bitwise: small code, and records are
/// written once per boot or configuration change.
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32_parts(&[bytes])
}

/// [`crc32`] of the concatenation of `parts` (a record handed out in pieces).
pub fn crc32_parts(parts: &[&[u8]]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in parts.iter().flat_map(|p| p.iter()) {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

/// Writes a record into `buf`; returns its length, or `None` if `buf` is too short or a
/// configuration does not encode (it was validated before it got here, so that cannot happen).
pub fn encode(
    buf: &mut [u8],
    seq: u32,
    boot: u32,
    version: u32,
    config: &Config,
    previous: Option<(u32, &Config)>,
    rolled_back: Option<u32>,
) -> Option<usize> {
    if buf.len() < HEADER {
        return None;
    }
    let items_len = config.emit_items(buf.get_mut(HEADER..)?)?;
    let prev_at = HEADER + items_len;
    let prev_len = match previous {
        Some((_, prev)) => prev.emit_items(buf.get_mut(prev_at..)?)?,
        None => 0,
    };
    let end = prev_at + prev_len;
    let mut flags = 0;
    if previous.is_some() {
        flags |= FLAG_TRIAL;
    }
    if rolled_back.is_some() {
        flags |= FLAG_ROLLED_BACK;
    }
    buf[0..2].copy_from_slice(&MAGIC);
    buf[2] = FORMAT;
    buf[3] = flags;
    buf[4..8].copy_from_slice(&seq.to_be_bytes());
    buf[8..12].copy_from_slice(&boot.to_be_bytes());
    buf[12..16].copy_from_slice(&version.to_be_bytes());
    buf[16..18].copy_from_slice(&(items_len as u16).to_be_bytes());
    buf[18..22].copy_from_slice(&previous.map_or(0, |p| p.0).to_be_bytes());
    buf[22..24].copy_from_slice(&(prev_len as u16).to_be_bytes());
    buf[24..28].copy_from_slice(&rolled_back.unwrap_or(0).to_be_bytes());
    let crc = crc32(&buf[..end]);
    buf.get_mut(end..end + 4)?
        .copy_from_slice(&crc.to_be_bytes());
    Some(end + 4)
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// The numbers of a record whose header and CRC check out, read without decoding its
/// configurations (so a host can pick the newer of two slots with no decoded copy at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Sequence number of the write.
    pub seq: u32,
    /// Boot counter of the boot that wrote it.
    pub boot: u32,
    /// Version of the running configuration.
    pub version: u32,
    /// The version a trial would roll back to, if a trial runs.
    pub previous_version: Option<u32>,
    /// The last version that was rolled back.
    pub rolled_back: Option<u32>,
    /// Length of the running configuration's items.
    items_len: usize,
    /// Length of the previous configuration's items (0 without a trial).
    prev_len: usize,
}

impl Header {
    /// Whether this record is newer than `other` (sequence numbers compared with wrap-around,
    /// so the sequence may run past `u32::MAX`).
    pub fn newer_than(&self, other: &Header) -> bool {
        (self.seq.wrapping_sub(other.seq) as i32) > 0
    }
}

/// Checks one slot's header, lengths and CRC (its bytes, possibly followed by erased flash).
/// `None` if it holds no record. The configuration items are not looked at: [`decode_into`]
/// (or [`decode`]) still refuses a record whose items do not decode or validate.
pub fn check(slot: &[u8]) -> Option<Header> {
    let h = slot.get(..HEADER)?;
    if h[0..2] != MAGIC || h[2] != FORMAT || h[3] & !(FLAG_TRIAL | FLAG_ROLLED_BACK) != 0 {
        return None;
    }
    let items_len = usize::from(u16::from_be_bytes([h[16], h[17]]));
    let prev_len = usize::from(u16::from_be_bytes([h[22], h[23]]));
    if items_len > MAX_ITEMS || prev_len > MAX_ITEMS {
        return None;
    }
    let end = HEADER + items_len + prev_len;
    let crc = slot.get(end..end + 4)?;
    if crc32(&slot[..end]) != be32(crc) {
        return None;
    }
    let trial = h[3] & FLAG_TRIAL != 0;
    Some(Header {
        seq: be32(&h[4..8]),
        boot: be32(&h[8..12]),
        version: be32(&h[12..16]),
        previous_version: trial.then(|| be32(&h[18..22])),
        rolled_back: (h[3] & FLAG_ROLLED_BACK != 0).then(|| be32(&h[24..28])),
        items_len,
        prev_len,
    })
}

/// Decodes one slot straight into a controller's configuration fields: the running
/// configuration into `config`, the one a trial would roll back to into `previous`. Returns the
/// header, or `None` if the slot holds no valid record — then `config` and `previous` hold
/// leftovers of the attempt and must be reset by the caller.
pub fn decode_into(
    slot: &[u8],
    config: &mut Config,
    previous: &mut Option<(u32, Config)>,
) -> Option<Header> {
    let h = check(slot)?;
    let items = &slot[HEADER..HEADER + h.items_len];
    config.parse_items_into(items).ok()?;
    config.validate().ok()?;
    match h.previous_version {
        Some(v) => {
            let at = HEADER + h.items_len;
            let prev = previous.insert((v, Config::DEFAULT));
            prev.1.parse_items_into(&slot[at..at + h.prev_len]).ok()?;
            prev.1.validate().ok()?;
        }
        None => *previous = None,
    }
    Some(h)
}

/// Reads one slot (its bytes, possibly followed by erased flash). `None` if it holds no valid
/// record.
pub fn decode(slot: &[u8]) -> Option<Stored> {
    let mut config = Config::DEFAULT;
    let mut previous = None;
    let h = decode_into(slot, &mut config, &mut previous)?;
    Some(Stored {
        seq: h.seq,
        boot: h.boot,
        version: h.version,
        config,
        previous,
        rolled_back: h.rolled_back,
    })
}

/// Reads both slots and returns the valid record with the higher sequence number (comparing
/// with wrap-around, so the sequence may run past `u32::MAX`).
pub fn load(slot0: &[u8], slot1: &[u8]) -> Option<Stored> {
    match (decode(slot0), decode(slot1)) {
        (Some(a), Some(b)) => {
            if (b.seq.wrapping_sub(a.seq) as i32) > 0 {
                Some(b)
            } else {
                Some(a)
            }
        }
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use heapless::String;

    fn sample() -> Config {
        let mut c = Config::default();
        c.servers
            .push(String::try_from("a.example:9000").unwrap())
            .unwrap();
        c.gsm.apn = String::try_from("internet").unwrap();
        c
    }

    #[test]
    fn crc_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn round_trip_with_trial() {
        let mut buf = [0xFFu8; MAX_LEN + 10];
        let prev = Config::default();
        let n = encode(&mut buf, 7, 3, 12, &sample(), Some((11, &prev)), Some(10)).unwrap();
        let s = decode(&buf).unwrap();
        assert_eq!(s.seq, 7);
        assert_eq!(s.boot, 3);
        assert_eq!(s.version, 12);
        assert_eq!(s.config, sample());
        assert_eq!(s.previous, Some((11, prev)));
        assert_eq!(s.rolled_back, Some(10));
        // Erased flash after the record does not matter; a cut record does.
        assert!(decode(&buf[..n]).is_some());
        assert!(decode(&buf[..n - 1]).is_none());
    }

    #[test]
    fn largest_record_fits() {
        let mut c = Config::default();
        use tek_proto::message::config::{
            Freeze, Schedule, SwitchPoint, MAX_HOLIDAYS, MAX_POINTS, MAX_SERVERS, MAX_TEXT, MAX_TZ,
        };
        let long: std::string::String = "x".repeat(MAX_TEXT);
        c.gsm.apn = String::try_from(long.as_str()).unwrap();
        c.gsm.login = c.gsm.apn.clone();
        c.gsm.password = c.gsm.apn.clone();
        c.ethernet = Some(crate::StaticIp {
            ip: [10, 0, 0, 5],
            netmask: [255, 255, 255, 0],
            gateway: [10, 0, 0, 1],
            dns: [10, 0, 0, 1],
        });
        for _ in 0..MAX_SERVERS {
            c.servers
                .push(String::try_from(long.as_str()).unwrap())
                .unwrap();
        }
        let mut points = heapless::Vec::new();
        for i in 0..MAX_POINTS as u16 {
            points
                .push(SwitchPoint::new((i / 8) as u8, i * 7, true, false).unwrap())
                .unwrap();
        }
        c.schedule = Some(Schedule {
            unoccupied_cc: 2000,
            points,
        });
        for d in 0..MAX_HOLIDAYS as u16 {
            c.holidays.push(20_000 + 2 * d).unwrap();
        }
        c.time_zone = String::try_from("<+1245>-12:45<+1345>,M9.5.0/2:45,M4.1.0/03:45:00").unwrap();
        assert_eq!(c.time_zone.len(), MAX_TZ);
        c.freeze = Freeze {
            limit_cc: 100,
            hysteresis_cc: 100,
        };
        c.validate().unwrap();
        assert_eq!(c.items_len(), MAX_ITEMS);
        let mut buf = [0u8; MAX_LEN];
        assert_eq!(
            encode(&mut buf, 1, 1, 1, &c, Some((0, &c)), None),
            Some(MAX_LEN)
        );
        assert_eq!(decode(&buf).unwrap().previous.unwrap().1, c);
    }

    #[test]
    fn newest_valid_slot_wins_and_torn_write_keeps_old() {
        let mut a = [0xFFu8; MAX_LEN];
        let mut b = [0xFFu8; MAX_LEN];
        encode(&mut a, 4, 4, 1, &Config::default(), None, None).unwrap();
        encode(&mut b, 5, 5, 1, &Config::default(), None, None).unwrap();
        assert_eq!(load(&a, &b).unwrap().boot, 5);
        assert_eq!(load(&b, &a).unwrap().boot, 5);
        // Power cut while slot b was being rewritten: half of it is new bytes, half erased.
        let n = encode(&mut b, 6, 6, 2, &sample(), None, None).unwrap();
        for byte in &mut b[n / 2..] {
            *byte = 0xFF;
        }
        assert_eq!(load(&a, &b).unwrap().boot, 4);
        // Any single flipped bit invalidates a record.
        let mut c = a;
        for i in 0..n.min(200) * 8 {
            c[i / 8] ^= 1 << (i % 8);
            assert!(decode(&c).is_none() || decode(&c) == decode(&a), "bit {i}");
            c[i / 8] ^= 1 << (i % 8);
        }
        // Sequence wrap-around.
        let mut x = [0xFFu8; MAX_LEN];
        let mut y = [0xFFu8; MAX_LEN];
        encode(&mut x, u32::MAX, 1, 0, &Config::default(), None, None).unwrap();
        encode(&mut y, 0, 2, 0, &Config::default(), None, None).unwrap();
        assert_eq!(load(&x, &y).unwrap().boot, 2);
        assert!(load(&[0xFF; 64], &[0; 64]).is_none());
    }
}
