//! The telemetry log in NOR flash (issue 17, point 1): wide records (time, sequence number, up to
//! [`MAX_CHANNELS`] channel values, each a value or "no value") in a ring over the erase pages of
//! a flash region, safe against a power cut at any instant. no_std, no heap, generic over
//! `embedded_storage::nor_flash::NorFlash`; the API follows [`crate::wide_log::WideLog`]
//! ([`FlashLog::push`], [`FlashLog::len`], [`FlashLog::drops`], [`FlashLog::ack_through`],
//! [`FlashLog::batch`]), plus [`FlashLog::visit`] to read the oldest records one by one.
//!
//! ## Why not `sequential-storage`'s queue
//! It was the first candidate (no_std, built for NOR flash). Three things rule it out here:
//! * popping an item marks it in place, which needs `MultiwriteNorFlash` (programming a word a
//!   second time); the LM3S6965 rules this log follows forbid programming a word twice;
//! * its item header and alignment cost ~8 bytes per item on top of the record, and a record of
//!   the five pool channels is 8 bytes here: the offline days at 5 channels would fall from the
//!   goal of 7 to under 5 in the 108 kB the firmware can give the log;
//! * its API is async only (the firmware has no executor), and acknowledgements by sequence
//!   number across pages would still have to be written around it.
//!
//! ## Layout (all integers little-endian)
//! Every erase page starts with a 32-byte header, programmed right after the page's erase:
//!
//! ```text
//! magic "TLG2" | page_no u32 | first_seq u32 | acked_below u32 | boot u32 | boot_seq u32
//!              | anchor u32 | crc32 of the 28 bytes before
//! ```
//!
//! `page_no` grows by one at every page opened (the newest page is the head); `first_seq` is the
//! log's own sequence number of the page's first record; `acked_below` the acknowledgement point
//! when the page was opened (records with a lower sequence number are acknowledged). A page holds
//! the records of one boot (PROTOCOL.md 18): `boot` is that boot, `boot_seq` the page's first
//! record's sequence number in that boot (the name the server knows it by), `anchor` the boot's
//! clock anchor (server time - uptime) if it was known when the page was opened, else
//! 0xFFFF_FFFF. Entries follow, each a whole number of 4-byte words (a word is programmed once),
//! in order:
//!
//! ```text
//! record: kind byte 0b00SW_00TC (C: same channel set as the previous record of the page,
//!         T: same time step, S: salt, W: a wide record — of a server-defined channel map,
//!         sent as WideTelemetry — rather than one of the five pool channels)
//!         [count u8, presence bitmap ceil(count/8)]        unless C
//!         [time step: zigzag varint of time - previous time] unless T
//!         changed bitmap, one bit per present channel, ceil(present/8) bytes
//!         per present channel whose bit is set: zigzag varint of value - previous value
//!         zero padding | crc16 (CCITT) of the entry before it, in the last 2 bytes of the entry
//! ack:    0x40 | acked_below u32 | 0x00 | crc16
//! anchor: 0x80 | anchor u32 | 0x00 | crc16   (the page's boot learnt its anchor)
//! ```
//!
//! "Previous" means earlier in the same page (a channel's previous value starts at 0, the
//! previous time at 0), so a page decodes on its own and a record's sequence number is the page's
//! `first_seq` plus its index. The salt bit is set when the CRC would be 0xFFFF: a CRC still
//! erased (0xFFFF) is never valid.
//!
//! ## Power cuts
//! * Programming is in address order and the CRC sits in the entry's last word: an entry cut
//!   short has erased (0xFF) bytes where its CRC belongs, or a half-programmed last word, and
//!   fails the check; a torn entry is never decoded. After one, the page takes no more entries
//!   (its tail is not blank): the next entry opens a new page.
//! * An acknowledgement is an ack entry in the head page, or the `acked_below` of a new page's
//!   header; the head page always carries the newest one, so an acknowledged record never
//!   comes back. Records are only lost to a full ring (counted in [`FlashLog::drops`]) or the one
//!   whose programming was cut.
//! * A page is erased, then its header programmed; a cut between the two leaves a page without a
//!   valid header, which holds no records and is erased again when the ring reaches it.
//!
//! ## Recovery ([`FlashLog::recover`])
//! Reads every page's header; the valid header with the highest `page_no` is the head, the first
//! valid page after it in ring order the oldest. Only the head page is read through: its records
//! give the next sequence number, its ack entries the acknowledgement point.
//!
//! ## Wear
//! Pages are used in ring order, each erased once per turn of the ring: erases per page per day =
//! bytes written per day / region size (see the wear tests: well under one at 1-minute logging).
//!
//! The log's own sequence numbers continue across restarts (they order the whole log and carry
//! its acknowledgement point); they are `u32` and do not wrap in practice (8,000 years at one
//! record a minute). A record's protocol name is (boot, sequence number in the boot), from the
//! page header ([`Record::boot`], [`Record::boot_seq`]). Times are the caller's `u32` seconds
//! since the boot began (uptime); a boot's anchor turns them into the server's clock
//! ([`FlashLog::boot_clock`]).

use crate::persist::crc32;
use embedded_storage::nor_flash::NorFlash;
use tek_proto::channel::code;
use tek_proto::channel::wide::{ChannelSet, WideWriter};

/// Channels per record at most (the protocol's wide telemetry maximum).
pub const MAX_CHANNELS: usize = 128;
const SET_BYTES: usize = MAX_CHANNELS / 8;
const WORD: usize = 4;
/// Bytes of a page header.
pub const HEADER_LEN: usize = 32;
const MAGIC: u32 = u32::from_le_bytes(*b"TLG2");
/// An anchor not known.
pub const NO_ANCHOR: u32 = u32::MAX;
/// The largest entry: kind, count, presence bitmap, time step, changed bitmap, every value in 5
/// bytes, CRC, rounded up to a word.
pub const MAX_ENTRY_LEN: usize = round_up(1 + 1 + SET_BYTES + 5 + SET_BYTES + MAX_CHANNELS * 5 + 2);
/// The largest erase page this log reads whole (the LM3S6965's is 1 kB).
pub const MAX_PAGE_LEN: usize = 1024;

const KIND_MASK: u8 = 0xC0;
const KIND_RECORD: u8 = 0x00;
const KIND_ACK: u8 = 0x40;
const KIND_ANCHOR: u8 = 0x80;
const SAME_SET: u8 = 0x01;
const SAME_STEP: u8 = 0x02;
const SALT: u8 = 0x20;
const WIDE: u8 = 0x10;
const RECORD_FLAGS: u8 = SAME_SET | SAME_STEP | SALT | WIDE;
const ACK_LEN: usize = 8;

const fn round_up(n: usize) -> usize {
    n.div_ceil(WORD) * WORD
}

/// The flash region of the LM3S6965 firmware (256 kB flash, 1 kB pages): the image gets the
/// first 144 kB (its budget), the two configuration slots of 2 kB the top 4 kB, the log the
/// rest.
pub mod layout {
    /// The chip's flash.
    pub const FLASH_LEN: u32 = 256 * 1024;
    /// Erase page.
    pub const PAGE_LEN: u32 = 1024;
    /// The image's budget (issue 17: vectors + text + rodata + data).
    pub const IMAGE_BUDGET: u32 = 144 * 1024;
    /// The two configuration slots at the top of flash.
    pub const CONFIG_SLOTS_LEN: u32 = 2 * 2048;
    /// One slot of the channel part's record (`channel_part::record`: its header, two
    /// assembled configurations of up to 2 kB and the CRC fit): four pages.
    pub const CHANNEL_SLOT_LEN: u32 = 4 * PAGE_LEN;
    /// The channel part's two slots, right below the configuration slots.
    pub const CHANNEL_SLOTS_LEN: u32 = 2 * CHANNEL_SLOT_LEN;
    /// Where the channel slots start.
    pub const CHANNEL_SLOTS_START: u32 = FLASH_LEN - CONFIG_SLOTS_LEN - CHANNEL_SLOTS_LEN;
    /// Where the log starts.
    pub const LOG_START: u32 = IMAGE_BUDGET;
    /// The log's length: 100 pages, between the image budget and the channel slots.
    pub const LOG_LEN: u32 = CHANNEL_SLOTS_START - LOG_START;
    const _: () = assert!(LOG_START % PAGE_LEN == 0 && LOG_LEN % PAGE_LEN == 0);
    const _: () = assert!(CHANNEL_SLOTS_START % PAGE_LEN == 0);
    // The regions follow each other without overlap: image, log, channel slots, config slots.
    const _: () = assert!(LOG_START + LOG_LEN == CHANNEL_SLOTS_START);
    const _: () = assert!(CHANNEL_SLOTS_START + CHANNEL_SLOTS_LEN + CONFIG_SLOTS_LEN == FLASH_LEN);
}

/// A flash log operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error<E> {
    /// The flash reported an error; the log stays consistent (a page whose programming failed
    /// takes no more entries).
    Flash(E),
    /// The flash's geometry does not suit the log: pages of 704..=1024 bytes (a multiple of 4),
    /// at least two of them, writes and reads of at most a word.
    Geometry,
}

/// A batch written by [`FlashLog::batch`]: (first seq, last seq, length in bytes).
pub type Batch = (u32, u32, usize);

/// One record, as [`FlashLog::visit`] hands it out.
#[derive(Debug)]
pub struct Record<'a> {
    /// The log's sequence number.
    pub seq: u32,
    /// The boot it was logged in.
    pub boot: u32,
    /// Its sequence number in that boot.
    pub boot_seq: u32,
    /// The time given to [`FlashLog::push`].
    pub time_s: u32,
    chain: &'a Chain,
}

impl Record<'_> {
    /// Channels in the record (the length of the slice given to [`FlashLog::push`], at most
    /// [`MAX_CHANNELS`]).
    pub fn channels(&self) -> usize {
        usize::from(self.chain.count)
    }

    /// Whether it is a wide record ([`FlashLog::push_wide`]).
    pub fn wide(&self) -> bool {
        self.chain.wide
    }

    /// Channel `ch`'s value; `None` for "no value" and past [`Record::channels`].
    pub fn get(&self, ch: usize) -> Option<i32> {
        (ch < self.channels() && present(&self.chain.set, ch)).then(|| self.chain.values[ch])
    }
}

/// A page header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    page_no: u32,
    first_seq: u32,
    acked_below: u32,
    boot: u32,
    boot_seq: u32,
    anchor: u32,
}

impl Header {
    fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        let fields = [
            MAGIC,
            self.page_no,
            self.first_seq,
            self.acked_below,
            self.boot,
            self.boot_seq,
            self.anchor,
        ];
        for (i, f) in fields.iter().enumerate() {
            b[i * 4..i * 4 + 4].copy_from_slice(&f.to_le_bytes());
        }
        let crc = crc32(&b[..HEADER_LEN - 4]);
        b[HEADER_LEN - 4..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<Header> {
        if b.len() < HEADER_LEN {
            return None;
        }
        let word = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        if word(0) != MAGIC || word(HEADER_LEN - 4) != crc32(&b[..HEADER_LEN - 4]) {
            return None;
        }
        Some(Header {
            page_no: word(4),
            first_seq: word(8),
            acked_below: word(12),
            boot: word(16),
            boot_seq: word(20),
            anchor: word(24),
        })
    }
}

/// What [`FlashLog::visit_entries`] hands out.
enum Visited<'a> {
    Record(Record<'a>),
    Anchor { boot: u32, anchor: u32 },
}

/// What the log knows of one boot's clock ([`FlashLog::boot_clock`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootClock {
    /// The boot.
    pub boot: u32,
    /// Its anchor (server time - uptime), if it learnt one.
    pub anchor: Option<u32>,
    /// The uptime of its last record in the log.
    pub last_time: u32,
    /// The log's sequence number of its record with boot sequence number 0 (wrapping: the
    /// record itself may be gone).
    pub base_seq: u32,
}

/// The telemetry log in a NOR flash region (the whole of `F`).
pub struct FlashLog<F> {
    flash: F,
    pages: u32,
    page_len: u32,
    /// Whether a page has been opened (false on a blank region).
    has_head: bool,
    head_page: u32,
    head_no: u32,
    /// Where the next entry goes in the head page; `page_len` when the page takes no more.
    write_off: u32,
    oldest_page: u32,
    oldest_seq: u32,
    next_seq: u32,
    acked_below: u32,
    drops: u32,
    chain: Chain,
    /// The head page's boot.
    head_boot: u32,
    /// The boot records are pushed in ([`FlashLog::start_boot`]).
    boot: u32,
    /// The log's sequence number of this boot's record 0.
    boot_base: u32,
    /// This boot's anchor, or [`NO_ANCHOR`].
    anchor: u32,
}

impl<F: NorFlash> FlashLog<F> {
    /// Opens the log kept in `flash`, recovering what a previous run (or a power cut) left: see
    /// the module documentation. A blank region is an empty log.
    pub fn recover(flash: F) -> Result<Self, Error<F::Error>> {
        let page_len = F::ERASE_SIZE;
        let pages = flash.capacity() / page_len.max(1);
        if !(MAX_ENTRY_LEN + HEADER_LEN..=MAX_PAGE_LEN).contains(&page_len)
            || page_len % WORD != 0
            || pages < 2
            || WORD % F::WRITE_SIZE != 0
            || WORD % F::READ_SIZE != 0
        {
            return Err(Error::Geometry);
        }
        let mut log = FlashLog {
            flash,
            pages: pages as u32,
            page_len: page_len as u32,
            has_head: false,
            head_page: pages as u32 - 1,
            head_no: 0,
            write_off: page_len as u32,
            oldest_page: 0,
            oldest_seq: 0,
            next_seq: 0,
            acked_below: 0,
            drops: 0,
            chain: Chain::START,
            head_boot: 0,
            boot: 0,
            boot_base: 0,
            anchor: NO_ANCHOR,
        };
        let mut head: Option<(u32, Header)> = None;
        for p in 0..log.pages {
            if let Some(h) = log.header(p)? {
                if head.is_none_or(|(_, best)| h.page_no > best.page_no) {
                    head = Some((p, h));
                }
            }
        }
        let Some((head_page, head)) = head else {
            return Ok(log);
        };
        log.has_head = true;
        log.head_page = head_page;
        log.head_no = head.page_no;
        log.head_boot = head.boot;
        (log.boot, log.boot_base) = (head.boot, head.first_seq.wrapping_sub(head.boot_seq));
        log.next_seq = head.first_seq;
        log.acked_below = head.acked_below;
        (log.oldest_page, log.oldest_seq) = (head_page, head.first_seq);
        for i in 1..log.pages {
            let p = (head_page + i) % log.pages;
            if let Some(h) = log.header(p)? {
                (log.oldest_page, log.oldest_seq) = (p, h.first_seq);
                break;
            }
        }
        let mut page = [0u8; MAX_PAGE_LEN];
        let page = &mut page[..page_len];
        log.read(head_page * log.page_len, page)?;
        let mut at = HEADER_LEN;
        loop {
            match read_entry(&mut log.chain, page, at) {
                Entry::Record(end) => {
                    log.next_seq = log.next_seq.wrapping_add(1);
                    at = end;
                }
                Entry::Ack(end, acked) => {
                    log.acked_below = log.acked_below.max(acked);
                    at = end;
                }
                Entry::Anchor(end, _) => at = end,
                Entry::Blank => {
                    // Anything programmed past the last entry (a torn entry whose first word
                    // reads erased) closes the page: no word is programmed twice.
                    let tail_blank = page.get(at..).is_some_and(|t| t.iter().all(|&b| b == 0xFF));
                    log.write_off = if tail_blank { at as u32 } else { log.page_len };
                    break;
                }
                Entry::Torn => {
                    log.write_off = log.page_len;
                    break;
                }
            }
        }
        log.acked_below = log.acked_below.min(log.next_seq);
        Ok(log)
    }

    /// A new boot begins: records pushed from now on belong to `boot` (above every boot in the
    /// log), numbered from 0 in it, and start a new page. Its anchor is not known yet.
    pub fn start_boot(&mut self, boot: u32) {
        self.boot = boot;
        self.boot_base = self.next_seq;
        self.anchor = NO_ANCHOR;
    }

    /// The boot records are pushed in.
    pub fn boot(&self) -> u32 {
        self.boot
    }

    /// The log's sequence number of the current boot's record 0: records below it are of
    /// earlier boots.
    pub fn boot_base(&self) -> u32 {
        self.boot_base
    }

    /// The current boot learnt its anchor (server time - uptime); the first one counts. Written
    /// into the log when the boot has records in it (else the boot's first page carries it).
    pub fn set_anchor(&mut self, anchor: u32) -> Result<(), Error<F::Error>> {
        if self.anchor != NO_ANCHOR || anchor == NO_ANCHOR {
            return Ok(());
        }
        self.anchor = anchor;
        if !self.has_head || self.head_boot != self.boot || self.next_seq == self.boot_base {
            return Ok(());
        }
        if self.write_off as usize + ACK_LEN > self.page_len as usize {
            // The new page's header carries it.
            return self.open_page(self.acked_below);
        }
        let mut entry = [0u8; ACK_LEN];
        entry[0] = KIND_ANCHOR;
        entry[1..5].copy_from_slice(&anchor.to_le_bytes());
        let len = seal(&mut entry, 5);
        self.program(&entry[..len])
    }

    /// This boot's anchor, if known.
    pub fn anchor(&self) -> Option<u32> {
        (self.anchor != NO_ANCHOR).then_some(self.anchor)
    }

    /// The clocks of the boots whose records are waiting, oldest first, handed to `f` (at most
    /// one call per boot; the current boot's anchor is this run's). Reads every page once.
    pub fn boot_clocks(
        &mut self,
        mut f: impl FnMut(&BootClock) -> bool,
    ) -> Result<(), Error<F::Error>> {
        let mut clock: Option<BootClock> = None;
        let mut pending: Option<(u32, Option<u32>)> = None;
        let mut go_on = true;
        let live_from = self.live_from();
        let (boot, anchor) = (self.boot, self.anchor());
        self.visit_entries(live_from, |e| {
            let (b, base, time, a) = match *e {
                Visited::Record(ref r) => {
                    (r.boot, r.seq.wrapping_sub(r.boot_seq), Some(r.time_s), None)
                }
                Visited::Anchor { boot, anchor } => (boot, 0, None, Some(anchor)),
            };
            match &mut clock {
                Some(c) if c.boot == b => {
                    c.last_time = time.unwrap_or(c.last_time);
                    c.anchor = c.anchor.or(a);
                }
                _ => {
                    let Some(t) = time else {
                        // A page header's anchor comes before the page's records.
                        pending = Some((b, a));
                        return true;
                    };
                    if let Some(c) = clock.take() {
                        go_on = f(&c);
                        if !go_on {
                            return false;
                        }
                    }
                    let from_page = pending.take().filter(|p| p.0 == b).and_then(|p| p.1);
                    clock = Some(BootClock {
                        boot: b,
                        anchor: if b == boot { anchor } else { from_page },
                        last_time: t,
                        base_seq: base,
                    });
                }
            }
            true
        })?;
        if let (true, Some(c)) = (go_on, clock) {
            f(&c);
        }
        Ok(())
    }

    /// Records waiting for an acknowledgement.
    pub fn len(&self) -> usize {
        self.next_seq.saturating_sub(self.live_from()) as usize
    }

    /// Whether no record waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records dropped from a full ring since [`FlashLog::recover`].
    pub fn drops(&self) -> u32 {
        self.drops
    }

    /// The sequence number the next record gets.
    pub fn next_seq(&self) -> u32 {
        self.next_seq
    }

    /// The flash, e.g. to count its erases in tests.
    pub fn flash(&self) -> &F {
        &self.flash
    }

    /// Gives the flash back.
    pub fn into_flash(self) -> F {
        self.flash
    }

    /// The first sequence number still waiting (acknowledged or dropped below it).
    fn live_from(&self) -> u32 {
        self.acked_below.max(self.oldest_seq)
    }

    /// Adds a record taken at time `time_s`; `values[ch]` is channel `ch`'s value (past the
    /// slice and past [`MAX_CHANNELS`]: no value). Returns its sequence number. A full ring drops
    /// its oldest page (counted in [`FlashLog::drops`]). On a flash error the record is not
    /// logged (and not counted).
    pub fn push(&mut self, time_s: u32, values: &[Option<i32>]) -> Result<u32, Error<F::Error>> {
        self.push_kind(time_s, values, false)
    }

    /// As [`push`](Self::push), for a wide record (of a channel map; [`Record::wide`]): the
    /// same queue and sequence numbers, told apart when read.
    pub fn push_wide(
        &mut self,
        time_s: u32,
        values: &[Option<i32>],
    ) -> Result<u32, Error<F::Error>> {
        self.push_kind(time_s, values, true)
    }

    fn push_kind(
        &mut self,
        time_s: u32,
        values: &[Option<i32>],
        wide: bool,
    ) -> Result<u32, Error<F::Error>> {
        let mut entry = [0u8; MAX_ENTRY_LEN];
        let mut len = encode(&self.chain, time_s, values, wide, &mut entry);
        if self.write_off as usize + len > self.page_len as usize || self.head_boot != self.boot {
            self.open_page(self.acked_below)?;
            len = encode(&self.chain, time_s, values, wide, &mut entry);
        }
        self.program(&entry[..len])?;
        apply(&mut self.chain, time_s, values, wide);
        let seq = self.next_seq;
        self.next_seq = seq.wrapping_add(1);
        Ok(seq)
    }

    /// Acknowledges every record up to `through_seq`, durably (an acknowledged record never
    /// comes back after a restart); returns how many were waiting.
    pub fn ack_through(&mut self, through_seq: u32) -> Result<usize, Error<F::Error>> {
        let acked_below = through_seq.saturating_add(1).min(self.next_seq);
        let live_from = self.live_from();
        if acked_below <= live_from {
            return Ok(0);
        }
        if self.write_off as usize + ACK_LEN > self.page_len as usize {
            // The new page's header carries the acknowledgement.
            self.open_page(acked_below)?;
        } else {
            let mut entry = [0u8; ACK_LEN];
            entry[0] = KIND_ACK;
            entry[1..5].copy_from_slice(&acked_below.to_le_bytes());
            let len = seal(&mut entry, 5);
            self.program(&entry[..len])?;
        }
        self.acked_below = acked_below;
        Ok((acked_below - live_from) as usize)
    }

    /// Hands the waiting records from sequence number `from_seq` on to `f`, oldest first, until
    /// `f` returns false.
    pub fn visit(
        &mut self,
        from_seq: u32,
        mut f: impl FnMut(&Record<'_>) -> bool,
    ) -> Result<(), Error<F::Error>> {
        self.visit_entries(from_seq, |e| match e {
            Visited::Record(r) => f(r),
            Visited::Anchor { .. } => true,
        })
    }

    /// As [`visit`](Self::visit), with the anchors met on the way (a page header's before the
    /// page's records).
    fn visit_entries(
        &mut self,
        from_seq: u32,
        mut f: impl FnMut(&Visited<'_>) -> bool,
    ) -> Result<(), Error<F::Error>> {
        let start = from_seq.max(self.live_from());
        if !self.has_head || start >= self.next_seq {
            return Ok(());
        }
        // The last page, from the oldest on, whose first record is at or before `start`.
        let mut first_page = self.oldest_page;
        for i in 0..self.pages {
            let p = (self.oldest_page + i) % self.pages;
            if let Some(h) = self.header(p)? {
                if h.first_seq <= start {
                    first_page = p;
                }
            }
            if p == self.head_page {
                break;
            }
        }
        let mut page = [0u8; MAX_PAGE_LEN];
        let page = &mut page[..self.page_len as usize];
        let mut chain = Chain::START;
        for i in 0..self.pages {
            let p = (first_page + i) % self.pages;
            self.read(p * self.page_len, page)?;
            if let Some(h) = Header::decode(page) {
                chain.clone_from(&Chain::START);
                let mut seq = h.first_seq;
                let mut at = HEADER_LEN;
                let boot = h.boot;
                if h.anchor != NO_ANCHOR
                    && !f(&Visited::Anchor {
                        boot,
                        anchor: h.anchor,
                    })
                {
                    return Ok(());
                }
                while seq < self.next_seq {
                    match read_entry(&mut chain, page, at) {
                        Entry::Record(end) => {
                            if seq >= start {
                                let record = Record {
                                    seq,
                                    boot,
                                    boot_seq: h.boot_seq.wrapping_add(seq - h.first_seq),
                                    time_s: chain.time,
                                    chain: &chain,
                                };
                                if !f(&Visited::Record(record)) {
                                    return Ok(());
                                }
                            }
                            seq += 1;
                            at = end;
                        }
                        Entry::Anchor(end, anchor) => {
                            if !f(&Visited::Anchor { boot, anchor }) {
                                return Ok(());
                            }
                            at = end;
                        }
                        Entry::Ack(end, _) => at = end,
                        Entry::Blank | Entry::Torn => break,
                    }
                }
            }
            if p == self.head_page {
                break;
            }
        }
        Ok(())
    }

    /// Writes a WideTelemetry message (type byte 0x07 and body) of the oldest waiting records
    /// that fit into `buf`, for the first `channels` channels, sealed at time `now_s` (in the
    /// clock of the records' times). Returns (first seq, last seq, length), or `None` if the log
    /// is empty or not even one record fits — like [`crate::wide_log::WideLog::batch`].
    pub fn batch(
        &mut self,
        channels: usize,
        now_s: u32,
        buf: &mut [u8],
    ) -> Result<Option<Batch>, Error<F::Error>> {
        let channels = channels.min(MAX_CHANNELS);
        if self.is_empty() || channels == 0 || buf.is_empty() {
            return Ok(None);
        }
        let first = self.live_from();
        let set = (0..channels).fold(ChannelSet(0), |s, c| s.with(c));
        let Some((head, body)) = buf.split_first_mut() else {
            return Ok(None);
        };
        *head = code::WIDE_TELEMETRY;
        let Some(mut w) = WideWriter::new(body, first, set, now_s) else {
            return Ok(None);
        };
        let mut last = None;
        let mut values = [None; MAX_CHANNELS];
        self.visit(first, |r| {
            for (ch, v) in values[..channels].iter_mut().enumerate() {
                *v = r.get(ch);
            }
            if !w.push(r.time_s.min(now_s), &values[..channels]) {
                return false;
            }
            last = Some(r.seq);
            true
        })?;
        Ok(last.map(|last| (first, last, 1 + w.len())))
    }

    /// Erases the next page of the ring and makes it the head, its header carrying
    /// `acked_below`. If it held the oldest records, they go (the unacknowledged ones counted
    /// as drops).
    fn open_page(&mut self, acked_below: u32) -> Result<(), Error<F::Error>> {
        let p = if self.has_head {
            (self.head_page + 1) % self.pages
        } else {
            0
        };
        let mut oldest = (self.oldest_page, self.oldest_seq);
        if self.has_head && p == self.oldest_page && p != self.head_page {
            oldest = (self.head_page, self.next_seq);
            for i in 1..self.pages {
                let q = (p + i) % self.pages;
                if let Some(h) = self.header(q)? {
                    oldest = (q, h.first_seq);
                    break;
                }
            }
        }
        let page_no = if self.has_head {
            self.head_no.wrapping_add(1)
        } else {
            0
        };
        let header = Header {
            page_no,
            first_seq: self.next_seq,
            acked_below,
            boot: self.boot,
            boot_seq: self.next_seq.wrapping_sub(self.boot_base),
            anchor: self.anchor,
        };
        let base = p * self.page_len;
        // From here on the head page takes no more entries, whatever fails.
        self.write_off = self.page_len;
        self.flash
            .erase(base, base + self.page_len)
            .map_err(Error::Flash)?;
        if !self.has_head {
            oldest = (p, self.next_seq);
        }
        self.drops = self
            .drops
            .saturating_add(oldest.1.saturating_sub(acked_below.max(self.oldest_seq)));
        (self.oldest_page, self.oldest_seq) = oldest;
        self.has_head = true;
        self.head_page = p;
        self.head_no = page_no;
        self.head_boot = self.boot;
        self.chain.clone_from(&Chain::START);
        self.flash
            .write(base, &header.encode())
            .map_err(Error::Flash)?;
        self.write_off = HEADER_LEN as u32;
        Ok(())
    }

    /// Programs `entry` at the head page's write offset.
    fn program(&mut self, entry: &[u8]) -> Result<(), Error<F::Error>> {
        let at = self.head_page * self.page_len + self.write_off;
        if let Err(e) = self.flash.write(at, entry) {
            // Part of it may be programmed: the page takes no more entries.
            self.write_off = self.page_len;
            return Err(Error::Flash(e));
        }
        self.write_off += entry.len() as u32;
        Ok(())
    }

    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), Error<F::Error>> {
        self.flash.read(offset, buf).map_err(Error::Flash)
    }

    fn header(&mut self, page: u32) -> Result<Option<Header>, Error<F::Error>> {
        let mut b = [0u8; HEADER_LEN];
        self.read(page * self.page_len, &mut b)?;
        Ok(Header::decode(&b))
    }
}

impl<F> core::fmt::Debug for FlashLog<F> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FlashLog")
            .field("pages", &self.pages)
            .field("head_page", &self.head_page)
            .field("write_off", &self.write_off)
            .field("oldest_seq", &self.oldest_seq)
            .field("acked_below", &self.acked_below)
            .field("next_seq", &self.next_seq)
            .field("drops", &self.drops)
            .finish()
    }
}

mod entry;
use entry::*;

#[cfg(test)]
mod tests;
