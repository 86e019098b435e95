//! The entries of a flash log page, encoded and decoded: records (a channel set, a time step
//! and zigzag varint deltas against the record before in the page) and acks, each sealed with a
//! CRC-16 so a torn or corrupt entry is never decoded (the layout: [`super`]'s module docs).

use super::*;

pub(super) fn present(set: &[u8; SET_BYTES], ch: usize) -> bool {
    set[ch / 8] & (1 << (ch % 8)) != 0
}

/// What decoding needs from the records before in the page (and encoding keeps up to date).
#[derive(Debug, Clone)]
pub(super) struct Chain {
    pub(super) has_prev: bool,
    /// The last record is a wide record (of a channel map), not one of the five pool channels.
    pub(super) wide: bool,
    pub(super) count: u8,
    pub(super) set: [u8; SET_BYTES],
    pub(super) time: u32,
    pub(super) step: u32,
    pub(super) values: [i32; MAX_CHANNELS],
}

impl Chain {
    pub(super) const START: Chain = Chain {
        has_prev: false,
        wide: false,
        count: 0,
        set: [0; SET_BYTES],
        time: 0,
        step: 0,
        values: [0; MAX_CHANNELS],
    };
}

pub(super) fn zigzag(v: i32) -> u32 {
    ((v << 1) ^ (v >> 31)) as u32
}

pub(super) fn unzigzag(v: u32) -> i32 {
    ((v >> 1) as i32) ^ -((v & 1) as i32)
}

pub(super) fn put_varint(out: &mut [u8], mut pos: usize, mut v: u32) -> usize {
    while v >= 0x80 {
        out[pos] = (v as u8) | 0x80;
        v >>= 7;
        pos += 1;
    }
    out[pos] = v as u8;
    pos + 1
}

/// CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF), bitwise: small code, entries are short.
pub(super) fn crc16(bytes: &[u8]) -> u16 {
    let mut crc = 0xFFFFu16;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Puts the padding and the CRC after `body` bytes of `out` (kind byte first); returns the
/// entry's length.
pub(super) fn seal(out: &mut [u8], body: usize) -> usize {
    let end = round_up(body + 2);
    out[body..end - 2].fill(0);
    let mut crc = crc16(&out[..end - 2]);
    if crc == 0xFFFF {
        // One flipped bit always changes a CRC: the salted CRC is not 0xFFFF.
        out[0] |= SALT;
        crc = crc16(&out[..end - 2]);
    }
    out[end - 2..end].copy_from_slice(&crc.to_le_bytes());
    end
}

/// Encodes a record after `chain` into `out` (`wide`: a record of a channel map); returns its
/// length.
pub(super) fn encode(
    chain: &Chain,
    time_s: u32,
    values: &[Option<i32>],
    wide: bool,
    out: &mut [u8],
) -> usize {
    let n = values.len().min(MAX_CHANNELS);
    let values = &values[..n];
    let mut set = [0u8; SET_BYTES];
    for (ch, v) in values.iter().enumerate() {
        if v.is_some() {
            set[ch / 8] |= 1 << (ch % 8);
        }
    }
    let mut kind = if wide {
        KIND_RECORD | WIDE
    } else {
        KIND_RECORD
    };
    let mut pos = 1;
    if chain.has_prev && usize::from(chain.count) == n && chain.set == set {
        kind |= SAME_SET;
    } else {
        out[pos] = n as u8;
        let len = n.div_ceil(8);
        out[pos + 1..pos + 1 + len].copy_from_slice(&set[..len]);
        pos += 1 + len;
    }
    let step = time_s.wrapping_sub(chain.time);
    if chain.has_prev && step == chain.step {
        kind |= SAME_STEP;
    } else {
        pos = put_varint(out, pos, zigzag(step as i32));
    }
    let present = values.iter().filter(|v| v.is_some()).count();
    let changed_at = pos;
    pos += present.div_ceil(8);
    out[changed_at..pos].fill(0);
    for (k, (ch, v)) in values
        .iter()
        .enumerate()
        .filter_map(|(ch, v)| v.map(|v| (ch, v)))
        .enumerate()
    {
        if v != chain.values[ch] {
            out[changed_at + k / 8] |= 1 << (k % 8);
            pos = put_varint(out, pos, zigzag(v.wrapping_sub(chain.values[ch])));
        }
    }
    out[0] = kind;
    seal(out, pos)
}

/// The chain after a record that [`encode`] wrote.
pub(super) fn apply(chain: &mut Chain, time_s: u32, values: &[Option<i32>], wide: bool) {
    let n = values.len().min(MAX_CHANNELS);
    chain.wide = wide;
    chain.set = [0; SET_BYTES];
    for (ch, v) in values[..n].iter().enumerate() {
        if let Some(v) = v {
            chain.set[ch / 8] |= 1 << (ch % 8);
            chain.values[ch] = *v;
        }
    }
    chain.count = n as u8;
    chain.step = time_s.wrapping_sub(chain.time);
    chain.time = time_s;
    chain.has_prev = true;
}

/// What lies at an offset of a page.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Entry {
    /// Erased flash from here to the end of the page, or the end of the page.
    Blank,
    /// Not a valid entry: a torn one, or a page whose tail is not blank after the last entry.
    Torn,
    /// A record (decoded into the chain); the next entry's offset.
    Record(usize),
    /// An acknowledgement point; the next entry's offset.
    Ack(usize, u32),
    /// The page's boot learnt its anchor; the next entry's offset.
    Anchor(usize, u32),
}

pub(super) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    pub(super) fn byte(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    pub(super) fn varint(&mut self) -> Option<u32> {
        let mut v = 0u32;
        for i in 0..5 {
            let b = self.byte()?;
            v |= u32::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
}

/// Reads a record's body after its kind byte; with `commit`, into `chain` (call first without,
/// to find the end and check the CRC, so a torn record changes nothing). Returns the offset
/// after the body.
pub(super) fn walk_record(
    chain: &mut Chain,
    page: &[u8],
    at: usize,
    commit: bool,
) -> Option<usize> {
    let kind = page[at];
    let mut r = Reader {
        bytes: page,
        pos: at + 1,
    };
    let mut set = chain.set;
    let mut count = chain.count;
    if kind & SAME_SET != 0 {
        if !chain.has_prev {
            return None;
        }
    } else {
        count = r.byte()?;
        if usize::from(count) > MAX_CHANNELS {
            return None;
        }
        let len = usize::from(count).div_ceil(8);
        set = [0; SET_BYTES];
        set[..len].copy_from_slice(page.get(r.pos..r.pos + len)?);
        r.pos += len;
        if (usize::from(count)..len * 8).any(|ch| present(&set, ch)) {
            return None;
        }
    }
    let step = if kind & SAME_STEP != 0 {
        if !chain.has_prev {
            return None;
        }
        chain.step
    } else {
        unzigzag(r.varint()?) as u32
    };
    let present_count = (0..usize::from(count))
        .filter(|&ch| present(&set, ch))
        .count();
    let changed_at = r.pos;
    r.pos += present_count.div_ceil(8);
    if r.pos > page.len() {
        return None;
    }
    let mut k = 0;
    for ch in 0..usize::from(count) {
        if !present(&set, ch) {
            continue;
        }
        if page[changed_at + k / 8] & (1 << (k % 8)) != 0 {
            let delta = unzigzag(r.varint()?);
            if commit {
                chain.values[ch] = chain.values[ch].wrapping_add(delta);
            }
        }
        k += 1;
    }
    if commit {
        chain.has_prev = true;
        chain.wide = kind & WIDE != 0;
        chain.count = count;
        chain.set = set;
        chain.step = step;
        chain.time = chain.time.wrapping_add(step);
    }
    Some(r.pos)
}

/// Reads the entry at `at` of `page` (a whole page; the header ends at [`HEADER_LEN`]).
pub(super) fn read_entry(chain: &mut Chain, page: &[u8], at: usize) -> Entry {
    // Programming goes in address order: an entry whose first word is erased was never begun
    // (recovery checks that the rest of the page is erased too).
    if at + WORD > page.len() || page[at..at + WORD].iter().all(|&b| b == 0xFF) {
        return Entry::Blank;
    }
    let kind = page[at];
    let body_end = match kind & KIND_MASK {
        KIND_RECORD if kind & !RECORD_FLAGS == 0 => walk_record(chain, page, at, false),
        KIND_ACK if kind == KIND_ACK => Some(at + 5),
        KIND_ANCHOR if kind == KIND_ANCHOR => Some(at + 5),
        _ => None,
    };
    let Some(body_end) = body_end else {
        return Entry::Torn;
    };
    let end = at + round_up(body_end - at + 2);
    let Some(entry) = page.get(at..end) else {
        return Entry::Torn;
    };
    let (data, crc) = entry.split_at(entry.len() - 2);
    let crc = u16::from_le_bytes([crc[0], crc[1]]);
    if crc == 0xFFFF || crc != crc16(data) || data[body_end - at..].iter().any(|&b| b != 0) {
        return Entry::Torn;
    }
    if kind == KIND_ACK || kind == KIND_ANCHOR {
        // Both are 8 bytes long (checked above): a kind byte and a word.
        let word = u32::from_le_bytes([entry[1], entry[2], entry[3], entry[4]]);
        return if kind == KIND_ACK {
            Entry::Ack(end, word)
        } else {
            Entry::Anchor(end, word)
        };
    }
    // Checked above: cannot fail the second time.
    match walk_record(chain, page, at, true) {
        Some(_) => Entry::Record(end),
        None => Entry::Torn,
    }
}
