//! Where the controller keeps its five-channel telemetry records: [`RecordLog`], implemented by
//! the RAM ring [`Log`] (lost at a reset, PROTOCOL.md 9) and by [`FlashStore`], the log in NOR
//! flash that survives a restart (issue 17; PROTOCOL.md 18).
//!
//! A flash log holds, after a restart, records of earlier boots. They drain first (the log stays
//! a queue) and travel as Backlog (0x0A) under the boot they were logged in, with their ages
//! computed from that boot's anchor (server time - uptime) — or, for a boot that never learnt
//! the server's clock, an estimate that assumes it ended when the next boot began
//! ([`estimate_anchor`]). Records of the current boot travel as Telemetry (0x01), exactly as from
//! the RAM log.
//!
//! A flash log also keeps the channel part's wide records (a split configuration's channel map,
//! PROTOCOL.md 17.5) when the controller hands them over through [`WideSink`]: in the same queue
//! and numbering as the pool records (a boot's records are numbered from 0 whatever their
//! kind), told apart by [`crate::flash_log::Record::wide`]. A batch holds records of one kind,
//! one boot and one channel count: WideTelemetry (0x07) for the current boot's wide records,
//! Backlog with the wide flag (18.2) for an earlier boot's.

use crate::channel_part::Backlog;
use crate::flash_log::{BootClock, Error as FlashError, FlashLog, MAX_CHANNELS};
use crate::log::{Log, LogRecord, MISSING_TEMP};
use crate::session::MAX_BATCH;
use core::cell::{Cell, RefCell};
use embedded_storage::nor_flash::NorFlash;
use tek_proto::backlog;
use tek_proto::channel::wide::{ChannelSet, WideWriter};
use tek_proto::message::telemetry::channel;
use tek_proto::message::TelemetryWriter;

/// A telemetry log the controller can run on.
pub trait RecordLog: Backlog {
    /// The all-zero placeholder of `Controller::blank`.
    const BLANK: Self;
    /// Power-up of boot `boot`: a RAM log empties; a flash log keeps what earlier boots left.
    fn start(&mut self, boot: u32);
    /// Adds a record of the current boot (its time: seconds of uptime).
    fn push(&mut self, record: &LogRecord);
    /// An acknowledgement: records of `boot` (`None`: the current boot) through `through_seq`
    /// are stored. Returns how many were freed, `None` if none.
    fn ack(&mut self, boot: Option<u32>, through_seq: u32) -> Option<usize>;
    /// The server does not take earlier boots' records: they go (counted as drops).
    fn drop_earlier_boots(&mut self);
    /// The current boot learnt its anchor (server time - uptime).
    fn set_anchor(&mut self, anchor: u32);
    /// Records lost: dropped from a full log, or earlier boots' records a server refused.
    fn drops(&self) -> u32;
    /// Capabilities feature bits this log needs stated (PROTOCOL.md 18.1).
    fn features(&self) -> u32 {
        0
    }
    /// This log as the keeper of the channel part's wide records, if it can keep them (a log
    /// that survives restarts); else the part keeps them itself, in RAM.
    fn wide_sink(&mut self) -> Option<&mut dyn WideSink> {
        None
    }
    /// Whether the channel part's wide records go into this log ([`wide_sink`](Self::wide_sink)
    /// is some): then it is the session's one backlog, whatever the mode.
    fn holds_wide(&self) -> bool {
        false
    }
    /// The channel map the waiting wide records were logged with is left behind (a new
    /// configuration, a rollback): they would be read as another map's channels, so they go,
    /// counted as drops.
    fn abandon_wide(&mut self) {}
}

/// Where the channel part logs its wide records when the telemetry log keeps them.
pub trait WideSink {
    /// Adds a wide record of the current boot taken at uptime `time_s`; `values[ch]` is channel
    /// `ch`'s value. Returns whether it was logged (not on a flash error).
    fn push_wide(&mut self, time_s: u32, values: &[Option<i32>]) -> bool;
    /// The (boot, boot sequence number) of the last record logged in this boot, if any.
    fn last_logged(&self) -> Option<(u32, u32)>;
}

impl<const N: usize> RecordLog for Log<N> {
    const BLANK: Self = Log::new();

    fn start(&mut self, _boot: u32) {
        self.clear();
    }

    fn push(&mut self, record: &LogRecord) {
        Log::push(self, *record);
    }

    fn ack(&mut self, boot: Option<u32>, through_seq: u32) -> Option<usize> {
        // A RAM log never holds another boot's records.
        boot.is_none()
            .then(|| self.ack_through(through_seq))
            .flatten()
    }

    fn drop_earlier_boots(&mut self) {}

    fn set_anchor(&mut self, _anchor: u32) {}

    fn drops(&self) -> u32 {
        Log::drops(self)
    }
}

/// The anchor of the boot `clocks` starts with: its own, or estimated from the boots after it
/// (each assumed to begin when the one before ended) and `current`, the running boot's anchor.
/// Returns (anchor, estimated).
pub fn estimate_anchor(clocks: &[BootClock], current: u32) -> (u32, bool) {
    let mut ended_before = 0u32;
    for c in clocks {
        if let Some(a) = c.anchor {
            return (a.wrapping_sub(ended_before), ended_before != 0);
        }
        ended_before = ended_before.saturating_add(c.last_time);
    }
    (current.wrapping_sub(ended_before), true)
}

/// The five pool channels as a flash record's values (a missing temperature: no value).
fn values_of(r: &LogRecord) -> [Option<i32>; 5] {
    let v = r.values();
    let temp = |c: u8| Some(v[usize::from(c)]).filter(|&t| t != i32::from(MISSING_TEMP));
    [
        Some(v[usize::from(channel::POWER_W)]),
        Some(v[usize::from(channel::ENERGY_WH)]),
        temp(channel::WATER_TEMP_CC),
        temp(channel::AIR_TEMP_CC),
        Some(v[usize::from(channel::RELAYS)]),
    ]
}

/// A flash record back in Telemetry's channel order (no value: the temperature sentinel; the
/// other channels always have one).
fn wire_values(r: &crate::flash_log::Record<'_>) -> [i32; channel::COUNT] {
    let mut v = [0i32; channel::COUNT];
    let missing = i32::from(MISSING_TEMP);
    v[usize::from(channel::POWER_W)] = r.get(0).unwrap_or(0);
    v[usize::from(channel::ENERGY_WH)] = r.get(1).unwrap_or(0);
    v[usize::from(channel::WATER_TEMP_CC)] = r.get(2).unwrap_or(missing);
    v[usize::from(channel::AIR_TEMP_CC)] = r.get(3).unwrap_or(missing);
    v[usize::from(channel::RELAYS)] = r.get(4).unwrap_or(0);
    v
}

/// A log or none. `repr(u8)`: an explicit tag, 0 for `Empty`, so a blank controller is all
/// zero bytes (as `Option` the empty value would be a niche, e.g. 2 in a `bool` of the log,
/// and the whole controller static would move into `.data`, i.e. into flash).
#[repr(u8)]
enum Slot<T> {
    Empty,
    Ready(T),
}

impl<T> Slot<T> {
    fn as_mut(&mut self) -> Option<&mut T> {
        match self {
            Slot::Ready(t) => Some(t),
            Slot::Empty => None,
        }
    }
}

/// How many boots' clocks an estimate looks at (more boots without an anchor in a row than
/// this: the estimate counts only these; the flag still says "estimated").
const CLOCKS: usize = 16;

/// The telemetry log in flash: a [`FlashLog`] behind a `RefCell`, because reading flash needs
/// `&mut` while the session reads its backlog through `&self` ([`Backlog::write`]).
pub struct FlashStore<F> {
    log: RefCell<Slot<FlashLog<F>>>,
    /// The oldest waiting record's name and kind, read once per change of the log (the session
    /// asks on every poll): (known, some, boot, boot seq, wide) — all zero, unknown, in a blank
    /// controller.
    oldest: Cell<(bool, bool, u32, u32, bool)>,
    /// Records dropped because the flash failed or a server refused earlier boots.
    lost: u32,
    /// Flash operations that failed (the log stays consistent; see [`FlashLog`]).
    pub flash_errors: u32,
}

impl<F: NorFlash> FlashStore<F> {
    /// A store over a recovered log.
    pub fn new(log: FlashLog<F>) -> Self {
        FlashStore {
            log: RefCell::new(Slot::Ready(log)),
            oldest: Cell::new((false, false, 0, 0, false)),
            lost: 0,
            flash_errors: 0,
        }
    }

    /// The log, taken back (e.g. its flash, after a test's power cut).
    pub fn into_inner(self) -> Option<FlashLog<F>> {
        match self.log.into_inner() {
            Slot::Ready(l) => Some(l),
            Slot::Empty => None,
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut FlashLog<F>) -> T) -> Option<T> {
        self.log.borrow_mut().as_mut().map(f)
    }

    /// As [`with`](Self::with), for a change to the log.
    fn change<T>(&mut self, f: impl FnOnce(&mut FlashLog<F>) -> T) -> Option<T> {
        self.oldest.set((false, false, 0, 0, false));
        self.log.get_mut().as_mut().map(f)
    }

    fn counted<T>(&mut self, r: Option<Result<T, FlashError<F::Error>>>) -> Option<T> {
        match r? {
            Ok(v) => Some(v),
            Err(_) => {
                self.flash_errors = self.flash_errors.saturating_add(1);
                None
            }
        }
    }

    /// The clocks of the waiting boots, oldest first (at most [`CLOCKS`]).
    fn clocks(&self) -> heapless::Vec<BootClock, CLOCKS> {
        let mut out = heapless::Vec::new();
        let _ = self.with(|l| {
            l.boot_clocks(|c| {
                let _ = out.push(*c);
                !out.is_full()
            })
        });
        out
    }

    /// Writes a Backlog of `boot`'s records from `first` through `last` (boot sequence
    /// numbers), sealed at device uptime `now_s`.
    fn write_backlog(
        &self,
        boot: u32,
        first: u32,
        last: u32,
        now_s: u32,
        out: &mut [u8],
    ) -> Option<(usize, u32, u32)> {
        let current = self.with(|l| l.anchor())??;
        let clocks = self.clocks();
        let at = clocks.iter().position(|c| c.boot == boot)?;
        let (anchor, estimated) = estimate_anchor(&clocks[at..], current);
        let wide = self.oldest_wide();
        let flags = match (estimated, wide) {
            (true, true) => backlog::ESTIMATED | backlog::WIDE,
            (true, false) => backlog::ESTIMATED,
            (false, true) => backlog::WIDE,
            (false, false) => 0,
        };
        let base = clocks[at].base_seq;
        let head = backlog::write_header(out, boot, flags)?;
        let server_now = current.wrapping_add(now_s);
        let body = out.get_mut(head..)?;
        let from = base.wrapping_add(first);
        let (len, from, through) = if wide {
            self.fill_wide(boot, from, last, anchor, server_now, body)?
        } else {
            self.fill(boot, from, last, anchor, server_now, body)?
        };
        Some((head + len, from, through))
    }

    /// Writes a Telemetry of the current boot's records.
    fn write_current(
        &self,
        first: u32,
        last: u32,
        now_s: u32,
        out: &mut [u8],
    ) -> Option<(usize, u32, u32)> {
        let (boot, base) = self.with(|l| (l.boot(), l.boot_base()))?;
        let (head, body) = out.split_first_mut()?;
        let from = base.wrapping_add(first);
        let (len, from, through) = if self.oldest_wide() {
            *head = tek_proto::channel::code::WIDE_TELEMETRY;
            self.fill_wide(boot, from, last, 0, now_s, body)?
        } else {
            *head = tek_proto::message::code::TELEMETRY;
            self.fill(boot, from, last, 0, now_s, body)?
        };
        Some((1 + len, from, through))
    }

    /// Writes a Telemetry body into `body`: the records of `boot` from the log's sequence number
    /// `from` through boot sequence number `last`, each at `shift` + its uptime on the clock of
    /// `now` (uptime for the current boot; the server's clock, through the boot's anchor, for an
    /// earlier one). Returns the length and the boot sequence numbers included.
    fn fill(
        &self,
        boot: u32,
        from: u32,
        last: u32,
        shift: u32,
        now: u32,
        body: &mut [u8],
    ) -> Option<(usize, u32, u32)> {
        // The writer starts at seq 0: the batch's first seq is set once its first record is known.
        let mut w = TelemetryWriter::new(body, 0, LogRecord::CHANNELS, now)?;
        let mut range: Option<(u32, u32)> = None;
        self.with(|l| {
            l.visit(from, |r| {
                if r.boot != boot
                    || r.wide()
                    || r.boot_seq > last
                    || usize::from(w.count()) >= MAX_BATCH
                {
                    return false;
                }
                if !w.push(shift.wrapping_add(r.time_s).min(now), &wire_values(r)) {
                    return false;
                }
                range = Some((range.map_or(r.boot_seq, |x| x.0), r.boot_seq));
                true
            })
        })?
        .ok()?;
        let (first, through) = range?;
        let len = w.len();
        body[..4].copy_from_slice(&first.to_be_bytes());
        Some((len, first, through))
    }

    /// Writes a WideTelemetry body into `body`, as [`fill`](Self::fill) a Telemetry's: the wide
    /// records of `boot` from the log's sequence number `from` through boot sequence number
    /// `last` that have the first one's channel count (the channels 0..count of the map they
    /// were logged with), at most [`MAX_BATCH`].
    fn fill_wide(
        &self,
        boot: u32,
        from: u32,
        last: u32,
        shift: u32,
        now: u32,
        body: &mut [u8],
    ) -> Option<(usize, u32, u32)> {
        // The first record names the batch (its sequence number heads the body) and its
        // channels.
        let mut head = None;
        self.with(|l| {
            l.visit(from, |r| {
                head = Some((r.boot, r.boot_seq, r.wide(), r.channels()));
                false
            })
        })?
        .ok()?;
        let (first_boot, first, wide, channels) = head?;
        if first_boot != boot || !wide || channels == 0 || first > last {
            return None;
        }
        let set = (0..channels).fold(ChannelSet(0), |s, c| s.with(c));
        let mut w = WideWriter::new(body, first, set, now)?;
        let mut through = None;
        let mut values = [None; MAX_CHANNELS];
        self.with(|l| {
            l.visit(from, |r| {
                if r.boot != boot
                    || !r.wide()
                    || r.channels() != channels
                    || r.boot_seq > last
                    || usize::from(w.count()) >= MAX_BATCH
                {
                    return false;
                }
                for (ch, v) in values[..channels].iter_mut().enumerate() {
                    *v = r.get(ch);
                }
                if !w.push(shift.wrapping_add(r.time_s).min(now), &values[..channels]) {
                    return false;
                }
                through = Some(r.boot_seq);
                true
            })
        })?
        .ok()?;
        Some((w.len(), first, through?))
    }

    /// The oldest waiting record's (boot, boot seq).
    fn oldest_name(&self) -> Option<(u32, u32)> {
        self.oldest_record().map(|(boot, seq, _)| (boot, seq))
    }

    /// Whether the oldest waiting record is a wide one.
    fn oldest_wide(&self) -> bool {
        self.oldest_record().is_some_and(|(_, _, wide)| wide)
    }

    /// The oldest waiting record's (boot, boot seq, wide).
    fn oldest_record(&self) -> Option<(u32, u32, bool)> {
        let (known, some, boot, seq, wide) = self.oldest.get();
        if known {
            return some.then_some((boot, seq, wide));
        }
        let mut found = None;
        self.with(|l| {
            l.visit(0, |r| {
                found = Some((r.boot, r.boot_seq, r.wide()));
                false
            })
        })?
        .ok()?;
        let (boot, seq, wide) = found.unwrap_or((0, 0, false));
        self.oldest.set((true, found.is_some(), boot, seq, wide));
        found
    }
}

impl<F: NorFlash> Backlog for FlashStore<F> {
    fn wide(&self) -> bool {
        self.oldest_wide()
    }

    fn len(&self) -> usize {
        self.with(|l| l.len()).unwrap_or(0)
    }

    fn oldest(&self) -> u32 {
        self.oldest_name().map_or(0, |n| n.1)
    }

    fn earlier_boot(&self) -> Option<u32> {
        let base = self.with(|l| (l.boot_base(), l.len(), l.next_seq()))?;
        let (boot_base, len, next) = base;
        // Waiting records below the current boot's base are earlier boots'.
        if next.wrapping_sub(len as u32) >= boot_base {
            return None;
        }
        self.oldest_name().map(|n| n.0)
    }

    fn write(
        &self,
        boot: Option<u32>,
        first: u32,
        last: u32,
        now_s: u32,
        out: &mut [u8],
    ) -> Option<(usize, u32, u32)> {
        match boot {
            Some(b) => self.write_backlog(b, first, last, now_s, out),
            None => self.write_current(first, last, now_s, out),
        }
    }
}

impl<F: NorFlash> RecordLog for FlashStore<F> {
    const BLANK: Self = FlashStore {
        log: RefCell::new(Slot::Empty),
        oldest: Cell::new((false, false, 0, 0, false)),
        lost: 0,
        flash_errors: 0,
    };

    fn start(&mut self, boot: u32) {
        self.change(|l| l.start_boot(boot));
        self.lost = 0;
        // Records of a boot not below this one cannot be sent (a server refuses them, 18.4):
        // the device's boot counter went back (a re-provisioned device, or its configuration
        // slots erased). They go, counted, rather than block the log for ever.
        if self.earlier_boot().is_some_and(|b| b >= boot) {
            self.drop_earlier_boots();
        }
    }

    fn push(&mut self, record: &LogRecord) {
        let r = self.change(|l| l.push(record.time_s, &values_of(record)));
        if self.counted(r).is_none() {
            self.lost = self.lost.saturating_add(1);
        }
    }

    fn ack(&mut self, boot: Option<u32>, through_seq: u32) -> Option<usize> {
        let base = match boot {
            None => self.with(|l| l.boot_base())?,
            Some(b) => {
                // Only the oldest waiting boot is ever in flight.
                let c = *self.clocks().first()?;
                if c.boot != b {
                    return None;
                }
                c.base_seq
            }
        };
        let r = self.change(|l| l.ack_through(base.wrapping_add(through_seq)));
        self.counted(r).filter(|&n| n > 0)
    }

    fn drop_earlier_boots(&mut self) {
        let Some((base, waiting)) = self.with(|l| (l.boot_base(), l.len())) else {
            return;
        };
        let current = self.with(|l| l.next_seq().wrapping_sub(l.boot_base()) as usize);
        let earlier = waiting.saturating_sub(current.unwrap_or(0));
        if earlier == 0 {
            return;
        }
        let r = self.change(|l| l.ack_through(base.wrapping_sub(1)));
        if self.counted(r).is_some() {
            self.lost = self.lost.saturating_add(earlier as u32);
        }
    }

    fn set_anchor(&mut self, anchor: u32) {
        let r = self.change(|l| l.set_anchor(anchor));
        self.counted(r);
    }

    fn drops(&self) -> u32 {
        self.with(|l| l.drops())
            .unwrap_or(0)
            .saturating_add(self.lost)
    }

    fn features(&self) -> u32 {
        tek_proto::channel::split::feature::BACKLOG
    }

    fn wide_sink(&mut self) -> Option<&mut dyn WideSink> {
        Some(self)
    }

    fn holds_wide(&self) -> bool {
        true
    }

    fn abandon_wide(&mut self) {
        // The log is a queue: the newest waiting wide record and everything before it go (a
        // configuration arrives from a server, so what waits before it was sent by then).
        let mut newest = None;
        let _ = self.with(|l| {
            l.visit(0, |r| {
                if r.wide() {
                    newest = Some(r.seq);
                }
                true
            })
        });
        let Some(newest) = newest else {
            return;
        };
        let r = self.change(|l| l.ack_through(newest));
        if let Some(n) = self.counted(r) {
            self.lost = self.lost.saturating_add(n as u32);
        }
    }
}

impl<F: NorFlash> WideSink for FlashStore<F> {
    fn push_wide(&mut self, time_s: u32, values: &[Option<i32>]) -> bool {
        let r = self.change(|l| l.push_wide(time_s, values));
        if self.counted(r).is_some() {
            return true;
        }
        self.lost = self.lost.saturating_add(1);
        false
    }

    fn last_logged(&self) -> Option<(u32, u32)> {
        self.with(|l| {
            let in_boot = l.next_seq().wrapping_sub(l.boot_base());
            (in_boot > 0).then(|| (l.boot(), in_boot - 1))
        })?
    }
}

impl<F> core::fmt::Debug for FlashStore<F> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FlashStore")
            .field("lost", &self.lost)
            .field("flash_errors", &self.flash_errors)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
