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

use crate::channel_part::Backlog;
use crate::flash_log::{BootClock, Error as FlashError, FlashLog};
use crate::log::{Log, LogRecord, MISSING_TEMP};
use crate::session::MAX_BATCH;
use core::cell::{Cell, RefCell};
use embedded_storage::nor_flash::NorFlash;
use tek_proto::backlog;
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
    /// The oldest waiting record's name, read once per change of the log (the session asks on
    /// every poll): (known, some, boot, boot seq) — all zero, unknown, in a blank controller.
    oldest: Cell<(bool, bool, u32, u32)>,
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
            oldest: Cell::new((false, false, 0, 0)),
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
        self.oldest.set((false, false, 0, 0));
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
        let flags = if estimated { backlog::ESTIMATED } else { 0 };
        let base = clocks[at].base_seq;
        let head = backlog::write_header(out, boot, flags)?;
        let server_now = current.wrapping_add(now_s);
        let body = out.get_mut(head..)?;
        let (len, from, through) = self.fill(
            boot,
            base.wrapping_add(first),
            last,
            anchor,
            server_now,
            body,
        )?;
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
        *head = tek_proto::message::code::TELEMETRY;
        let (len, from, through) =
            self.fill(boot, base.wrapping_add(first), last, 0, now_s, body)?;
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
                if r.boot != boot || r.boot_seq > last || usize::from(w.count()) >= MAX_BATCH {
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

    /// The oldest waiting record's (boot, boot seq).
    fn oldest_name(&self) -> Option<(u32, u32)> {
        let (known, some, boot, seq) = self.oldest.get();
        if known {
            return some.then_some((boot, seq));
        }
        let mut name = None;
        self.with(|l| {
            l.visit(0, |r| {
                name = Some((r.boot, r.boot_seq));
                false
            })
        })?
        .ok()?;
        let (boot, seq) = name.unwrap_or((0, 0));
        self.oldest.set((true, name.is_some(), boot, seq));
        name
    }
}

impl<F: NorFlash> Backlog for FlashStore<F> {
    fn wide(&self) -> bool {
        false
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
        oldest: Cell::new((false, false, 0, 0)),
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
