//! Channels: the channel map evaluated every sample (PROTOCOL.md 17.2, 17.3, 17.8), in the
//! poll model of the rest of the crate.
//!
//! * Sources are read through the small [`ChannelBus`] trait, which the firmware (ADC inputs,
//!   relay outputs, a UART per serial bus) and the simulator implement. It never blocks: a
//!   Modbus read is a request sent and bytes picked up later.
//! * Every sample (every [`Channels::sample_every_ms`]), board inputs are read at once and the
//!   Modbus reads run **one transaction at a time**: [`Channels::poll`] sends a request, returns,
//!   and on a later poll takes what arrived; the bus's timeout runs on the caller's clock
//!   ([`Channels::poll_at`] says when it expires). Then the computed channels are evaluated in
//!   index order with `tek_proto::channel::expr`, over this sample's values and the interval
//!   statistics of the log interval so far.
//! * A read that timed out or came back with a bad CRC (line noise, a collision) is sent again
//!   up to [`Channels::modbus_retries`] times within the sample (0 by default: one try) before it
//!   counts as a failure; exceptions and malformed answers are the slave's word and are not
//!   repeated.
//! * A source that fails — Modbus timeout, CRC error, exception, malformed answer, a missing or
//!   out-of-range input, an expression without value (division by zero) — gives **no value**
//!   for that sample, never 0 and never the previous value, and counts against the channel
//!   ([`Channels::faults`], sent as ChannelFaults 0x09).
//! * The roles (configuration item 16, `tek_proto::channel::roles`) say which channel the
//!   thermostat, the schedule and the interlocks read: [`Channels::reading`] is the
//!   [`Reading`] for [`crate::Controller::sensor`], and [`Roles::output`] maps their relays to
//!   outputs.
//! * The factory map is [`POOL_MAP`]: the pool board's five inputs with the pool's roles, so the
//!   pool controller of today is one particular channel map.
//!
//! No heap: the map's bytes are kept in a buffer of `MAP` bytes, the channels' state in `CH`
//! slots; a map that does not fit is refused, as Capabilities (17.1) says.

use crate::modbus::{self, MAX_ANSWER};
use crate::Reading;
use tek_proto::channel::expr::{self, Env, Func, Interval};
use tek_proto::channel::faults::{Fault, FaultEntry};
use tek_proto::channel::map::{Bus, ChannelMap, MapError, Source};
use tek_proto::channel::roles::{Roles, RolesError};

/// The hardware the channel map reads. Implementations never block.
pub trait ChannelBus {
    /// Board input `input` (0..=31) now, in the unit the map's conversion expects (the pool
    /// board: 0 power W, 1 energy Wh, 2 water and 3 air temperature 0.01 degC, 4 the relay
    /// bitmap). `None`: no such input, or it failed (a broken probe).
    fn board_input(&mut self, input: u8) -> Option<i32>;
    /// Sends `frame` on serial bus `bus` (set up as `settings`) and forgets whatever the bus
    /// received before: the answer to this frame is what [`serial_receive`](Self::serial_receive)
    /// returns next.
    fn serial_send(&mut self, bus: u8, settings: &Bus, frame: &[u8]);
    /// Copies the bytes bus `bus` received since the last call (or the send) into `buf` and
    /// returns how many (0 if none yet). Never waits.
    fn serial_receive(&mut self, bus: u8, buf: &mut [u8]) -> usize;
}

/// The pool board as a channel map: board inputs 0..=4 (power W, energy Wh, water and air
/// temperature in 0.01 degC, relay bitmap), identity conversions, no bus.
#[rustfmt::skip]
pub const POOL_MAP: [u8; 78] = [
    1, 0, 5,
    2, 1, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 1, 0,
    2, 1, 1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 2, 0,
    2, 1, 2, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 3, 0xFE,
    2, 1, 3, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 3, 0xFE,
    2, 1, 4, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0,
];

/// How often a sample is taken by default (as the simulator's sensor period).
pub const SAMPLE_EVERY_MS: u64 = 10_000;

/// Why a map was refused by [`Channels::set_map`]; the running map stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetError {
    /// The map is invalid (the channel or bus and the field at fault).
    Map(MapError),
    /// The roles item is invalid.
    Roles(RolesError),
    /// More channels than this controller has slots for.
    TooManyChannels(usize),
    /// More bytes than its buffer holds.
    TooLarge(usize),
}

impl core::fmt::Display for SetError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SetError::Map(e) => write!(f, "channel map: {e}"),
            SetError::Roles(e) => write!(f, "{e}"),
            SetError::TooManyChannels(n) => {
                write!(f, "{n} channels are more than this device runs")
            }
            SetError::TooLarge(n) => {
                write!(f, "a map of {n} bytes is larger than this device holds")
            }
        }
    }
}

/// One channel's state.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// This sample's value so far.
    current: Option<i32>,
    /// The last complete sample's value.
    value: Option<i32>,
    /// Statistics over the log interval.
    interval: Interval,
    /// Failed samples since the map was set (saturating).
    errors: u16,
    /// The last failure.
    last: Option<Fault>,
}

impl Slot {
    const BLANK: Slot = Slot {
        current: None,
        value: None,
        interval: Interval::EMPTY,
        errors: 0,
        last: None,
    };
}

/// The Modbus transaction in flight.
#[derive(Debug, Clone, Copy)]
struct Txn {
    deadline: u64,
    /// Retries sent so far.
    tries: u8,
    got: u8,
    rx: [u8; MAX_ANSWER],
}

/// Where the sample stands.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Between samples.
    Idle,
    /// Reading the sources from channel `next` on; `txn` is the Modbus read of channel `next`.
    Reading { next: u8, txn: Option<Txn> },
}

/// The channel map and its state, for a map of at most `MAP` bytes and `CH` channels.
#[derive(Debug)]
pub struct Channels<const MAP: usize, const CH: usize> {
    map: heapless::Vec<u8, MAP>,
    count: usize,
    roles: Roles,
    slots: [Slot; CH],
    phase: Phase,
    /// Sample period, ms.
    pub sample_every_ms: u64,
    /// How many times a Modbus read that timed out or failed its CRC is sent again within the
    /// sample before the channel has no value (0: once only).
    pub modbus_retries: u8,
    next_sample_at: u64,
    log_interval_s: u32,
    /// The fault counters changed since [`faults_reported`](Self::faults_reported).
    faults_changed: bool,
    samples: u32,
}

/// What an expression sees: this sample's values and the interval statistics.
struct View<'s> {
    slots: &'s [Slot],
    interval_s: u32,
}

impl Env for View<'_> {
    fn value(&self, ch: u8) -> Option<i32> {
        self.slots.get(usize::from(ch))?.current
    }

    fn interval(&self, f: Func, ch: u8) -> Option<i32> {
        self.slots
            .get(usize::from(ch))?
            .interval
            .get(f, self.interval_s)
    }
}

impl<const MAP: usize, const CH: usize> Channels<MAP, CH> {
    /// The pool map ([`POOL_MAP`], pool roles), first sample at `now`, log interval 60 s.
    /// `MAP` must be at least 78 and `CH` at least 5 (else the controller has no channels).
    pub fn new(now: u64) -> Self {
        let mut c = Channels {
            map: heapless::Vec::new(),
            count: 0,
            roles: Roles::POOL,
            slots: [Slot::BLANK; CH],
            phase: Phase::Idle,
            sample_every_ms: SAMPLE_EVERY_MS,
            modbus_retries: 0,
            next_sample_at: now,
            log_interval_s: 60,
            faults_changed: false,
            samples: 0,
        };
        let _ = c.set_map(&POOL_MAP, &[], now);
        c
    }

    /// What [`new`](Self::new) gives, in place (a device's channels live in a `static`, too
    /// large to be built on its stack): the pool map, default sample period and retries, log
    /// interval 60 s, counters at 0, first sample at `now`.
    pub fn reset(&mut self, now: u64) {
        self.sample_every_ms = SAMPLE_EVERY_MS;
        self.modbus_retries = 0;
        self.log_interval_s = 60;
        self.samples = 0;
        // The pool map is valid (a test checks it): this cannot fail.
        let _ = self.set_map(&POOL_MAP, &[], now);
    }

    /// Runs `map` with the roles of the configuration items `items` (section 7.6 framing; no
    /// roles item: the pool's) from the next sample on, at `now`: validated as a whole first —
    /// a refused map leaves the running one as it was. Counters and statistics start again; a
    /// transaction in flight is abandoned.
    pub fn set_map(&mut self, map: &[u8], items: &[u8], now: u64) -> Result<(), SetError> {
        let m = ChannelMap::new_checked(map).map_err(SetError::Map)?;
        m.validate().map_err(SetError::Map)?;
        let count = m.channel_count();
        if count > CH {
            return Err(SetError::TooManyChannels(count));
        }
        let roles = Roles::from_items(items, count).map_err(SetError::Roles)?;
        let bytes = heapless::Vec::from_slice(map).map_err(|_| SetError::TooLarge(map.len()))?;
        self.map = bytes;
        self.count = count;
        self.roles = roles;
        self.slots = [Slot::BLANK; CH];
        self.phase = Phase::Idle;
        self.next_sample_at = now;
        self.faults_changed = false;
        Ok(())
    }

    /// The log interval the interval functions (`rate`) use, seconds.
    pub fn set_log_interval(&mut self, s: u32) {
        self.log_interval_s = s;
    }

    /// Channels in the running map.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The roles of the running configuration.
    pub fn roles(&self) -> Roles {
        self.roles
    }

    /// The running map's bytes.
    pub fn map(&self) -> &[u8] {
        &self.map
    }

    /// Samples completed.
    pub fn samples(&self) -> u32 {
        self.samples
    }

    /// Channel `ch`'s value in the last complete sample (`None`: no value, or no such channel).
    pub fn value(&self, ch: usize) -> Option<i32> {
        self.slots.get(ch)?.value
    }

    /// The last complete sample of every channel into `out` (what a log record holds; slots
    /// past the map's channels get `None`).
    pub fn record(&self, out: &mut [Option<i32>]) {
        for (i, o) in out.iter_mut().enumerate() {
            *o = if i < self.count { self.value(i) } else { None };
        }
    }

    /// Ends the log interval (after its record was taken): the interval statistics start again.
    pub fn close_interval(&mut self) {
        for s in &mut self.slots[..self.count] {
            s.interval.close();
        }
    }

    /// The inputs of the thermostat, schedule and interlocks from the channels the roles name.
    /// A temperature without value, or outside `i16`, is `None` (the heater does not run
    /// blind); power and energy without value are 0 in this legacy reading (Telemetry 0x01 has
    /// no "no value"; the channel's own record keeps the gap).
    pub fn reading(&self) -> Reading {
        let v = |c: Option<u8>| c.and_then(|c| self.value(usize::from(c)));
        let temp = |c| v(c).and_then(|t| i16::try_from(t).ok());
        Reading {
            power_w: v(self.roles.power).map_or(0, |p| p.max(0) as u32),
            energy_wh: v(self.roles.energy).map_or(0, |e| e.max(0) as u32),
            water_cc: temp(self.roles.water),
            air_cc: temp(self.roles.air),
        }
    }

    /// Per channel with a failure, its count and the last failure, in index order, into `out`;
    /// returns how many were written.
    pub fn faults(&self, out: &mut [FaultEntry]) -> usize {
        let mut n = 0;
        for (i, s) in self.slots[..self.count].iter().enumerate() {
            let (Some(last), true) = (s.last, s.errors > 0) else {
                continue;
            };
            let Some(o) = out.get_mut(n) else { break };
            *o = FaultEntry {
                channel: i as u8,
                errors: s.errors,
                last,
            };
            n += 1;
        }
        n
    }

    /// Whether a fault counter changed since [`faults_reported`](Self::faults_reported).
    pub fn faults_changed(&self) -> bool {
        self.faults_changed
    }

    /// The counters were sent.
    pub fn faults_reported(&mut self) {
        self.faults_changed = false;
    }

    /// When [`poll`](Self::poll) must run next: the next sample, or the timeout of the Modbus
    /// read in flight. (Bytes arriving on a bus call for a poll too.)
    pub fn poll_at(&self) -> u64 {
        match self.phase {
            Phase::Idle => self.next_sample_at,
            Phase::Reading { txn: Some(t), .. } => t.deadline,
            Phase::Reading { txn: None, .. } => 0,
        }
    }

    fn fail(slot: &mut Slot, fault: Fault) -> bool {
        slot.current = None;
        slot.errors = slot.errors.saturating_add(1);
        slot.last = Some(fault);
        true
    }

    /// Advances the sample: starts one when due, reads the sources until a Modbus answer is
    /// awaited, and once every source is read evaluates the computed channels. Returns `true`
    /// when a sample completed (then [`reading`](Self::reading) and [`record`](Self::record)
    /// have its values). Never blocks.
    pub fn poll(&mut self, now: u64, bus: &mut dyn ChannelBus) -> bool {
        let Ok(map) = ChannelMap::new_checked(&self.map) else {
            // No map (a buffer too small for even the pool's): nothing to sample, but the
            // schedule moves on, so `poll_at` never asks for a busy loop.
            self.next_sample_at = now.saturating_add(self.sample_every_ms.max(1));
            return false;
        };
        let (mut next, mut txn) = match self.phase {
            Phase::Idle if now >= self.next_sample_at => {
                for s in &mut self.slots[..self.count] {
                    s.current = None;
                }
                (0u8, None)
            }
            Phase::Idle => return false,
            Phase::Reading { next, txn } => (next, txn),
        };
        let mut changed = false;
        let retries = self.modbus_retries;
        while usize::from(next) < self.count {
            let Some(ch) = map.channel(usize::from(next)) else {
                break;
            };
            let slot = &mut self.slots[usize::from(next)];
            match ch.source {
                Source::Board(input) => match bus.board_input(input) {
                    Some(raw) => {
                        slot.current = ch
                            .conversion
                            .apply(tek_proto::channel::map::Raw::Int(i64::from(raw)));
                        if slot.current.is_none() {
                            changed |= Self::fail(slot, Fault::OutOfRange);
                        }
                    }
                    None => changed |= Self::fail(slot, Fault::OutOfRange),
                },
                Source::Modbus(read) => {
                    let settings = map.bus(usize::from(read.bus));
                    match (&mut txn, settings) {
                        (_, None) => changed |= Self::fail(slot, Fault::Malformed),
                        (None, Some(settings)) => {
                            let Some(frame) = modbus::request(&read) else {
                                changed |= Self::fail(slot, Fault::Malformed);
                                next += 1;
                                continue;
                            };
                            bus.serial_send(read.bus, &settings, &frame);
                            txn = Some(Txn {
                                deadline: now + u64::from(settings.timeout_ms),
                                tries: 0,
                                got: 0,
                                rx: [0; MAX_ANSWER],
                            });
                            // The answer comes later: on a later poll.
                            break;
                        }
                        (Some(t), Some(settings)) => {
                            let got = usize::from(t.got);
                            let n = bus.serial_receive(read.bus, &mut t.rx[got..]);
                            t.got = (got + n).min(MAX_ANSWER) as u8;
                            let have = &t.rx[..usize::from(t.got)];
                            let result = match modbus::answer_len(&read, have) {
                                Some(len) if have.len() >= len => {
                                    modbus::decode(&read, &have[..len])
                                }
                                _ if now >= t.deadline => Err(Fault::Timeout),
                                _ => break, // still waiting
                            };
                            let again = matches!(result, Err(Fault::Timeout | Fault::Crc))
                                && t.tries < retries;
                            if let (true, Some(frame)) = (again, modbus::request(&read)) {
                                // The same request again, a fresh timeout; the sample waits.
                                bus.serial_send(read.bus, &settings, &frame);
                                *t = Txn {
                                    deadline: now + u64::from(settings.timeout_ms),
                                    tries: t.tries + 1,
                                    got: 0,
                                    rx: [0; MAX_ANSWER],
                                };
                                break;
                            }
                            match result {
                                Ok(raw) => {
                                    slot.current = ch.conversion.apply(raw);
                                    if slot.current.is_none() {
                                        changed |= Self::fail(slot, Fault::OutOfRange);
                                    }
                                }
                                Err(f) => changed |= Self::fail(slot, f),
                            }
                            txn = None;
                        }
                    }
                }
                // Evaluated once every source is read.
                Source::Computed(_) | Source::Unknown(_) => {}
            }
            next += 1;
        }
        if usize::from(next) < self.count {
            self.phase = Phase::Reading { next, txn };
            self.faults_changed |= changed;
            return false;
        }
        // Every source is read: their statistics take the sample, then the computed channels
        // in index order (a program only reads computed channels of lower index).
        for (ch, s) in map.channels().zip(self.slots[..self.count].iter_mut()) {
            if !matches!(ch.source, Source::Computed(_)) {
                s.interval.sample(s.current);
            }
        }
        for (i, ch) in map.channels().enumerate() {
            let Source::Computed(code) = ch.source else {
                continue;
            };
            let view = View {
                slots: &self.slots[..self.count],
                interval_s: self.log_interval_s,
            };
            let v = expr::eval(code, &view).and_then(|r| {
                ch.conversion
                    .apply(tek_proto::channel::map::Raw::Int(i64::from(r)))
            });
            let slot = &mut self.slots[i];
            slot.current = v;
            if v.is_none() {
                changed |= Self::fail(slot, Fault::NoValue);
            }
            slot.interval.sample(v);
        }
        for s in &mut self.slots[..self.count] {
            s.value = s.current;
        }
        self.faults_changed |= changed;
        self.samples = self.samples.wrapping_add(1);
        self.phase = Phase::Idle;
        self.next_sample_at += self.sample_every_ms.max(1);
        if self.next_sample_at <= now {
            self.next_sample_at = now + self.sample_every_ms.max(1);
        }
        true
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::modbus::crc;
    use std::collections::HashMap;
    use std::vec::Vec;
    use tek_proto::channel::map::{
        self as m, Baud, Channel, Conversion, DataType, Function, ModbusRead, Parity, Resolution,
        Unit, WordOrder,
    };

    /// How a fake slave answers.
    #[derive(Clone, Copy, PartialEq, Debug)]
    pub(crate) enum Behaviour {
        Answer,
        Silent,
        BadCrc,
        Exception(u8),
    }

    /// Board inputs and slaves on serial buses; answers come back a few bytes per receive, so
    /// a read spans several polls.
    #[derive(Default)]
    pub(crate) struct FakeBus {
        pub(crate) board: HashMap<u8, i32>,
        pub(crate) regs: HashMap<(u8, u16), u16>,
        pub(crate) behaviour: HashMap<u8, Behaviour>,
        pending: Vec<u8>,
        /// Every request: (bus, frame).
        pub(crate) sent: Vec<(u8, Vec<u8>)>,
        /// A send while the previous answer was still being delivered (two transactions at once).
        overlapped: bool,
        pub(crate) bytes_per_receive: usize,
        /// A slave whose next answer is lost on the line (then it answers again).
        pub(crate) lose_once: Option<u8>,
    }

    impl ChannelBus for FakeBus {
        fn board_input(&mut self, input: u8) -> Option<i32> {
            self.board.get(&input).copied()
        }

        fn serial_send(&mut self, bus: u8, settings: &Bus, frame: &[u8]) {
            assert_eq!(settings.baud, Baud::B19200);
            self.overlapped |= !self.pending.is_empty();
            self.sent.push((bus, frame.to_vec()));
            self.pending.clear();
            assert_eq!(&frame[6..], &crc(&frame[..6]), "request CRC");
            let (slave, function) = (frame[0], frame[1]);
            if self.lose_once == Some(slave) {
                self.lose_once = None;
                return;
            }
            let reg = u16::from_be_bytes([frame[2], frame[3]]);
            let count = u16::from_be_bytes([frame[4], frame[5]]);
            let mut answer = match self
                .behaviour
                .get(&slave)
                .copied()
                .unwrap_or(Behaviour::Answer)
            {
                Behaviour::Silent => return,
                Behaviour::Exception(code) => std::vec![slave, function | 0x80, code],
                _ => {
                    let mut a = std::vec![slave, function, (2 * count) as u8];
                    for r in reg..reg + count {
                        let v = self.regs.get(&(slave, r)).copied().unwrap_or(0);
                        a.extend_from_slice(&v.to_be_bytes());
                    }
                    a
                }
            };
            let c = crc(&answer);
            answer.extend_from_slice(&c);
            if self.behaviour.get(&slave) == Some(&Behaviour::BadCrc) {
                answer[3] ^= 0x40;
            }
            self.pending = answer;
        }

        fn serial_receive(&mut self, _bus: u8, buf: &mut [u8]) -> usize {
            let n = self
                .pending
                .len()
                .min(buf.len())
                .min(self.bytes_per_receive.max(1));
            buf[..n].copy_from_slice(&self.pending[..n]);
            self.pending.drain(..n);
            n
        }
    }

    pub(crate) fn board(input: u8, unit: Unit, exponent: i8) -> Channel<'static> {
        Channel {
            source: Source::Board(input),
            conversion: Conversion::IDENTITY,
            resolution: Resolution { unit, exponent },
        }
    }

    pub(crate) fn modbus(
        slave: u8,
        register: u16,
        data_type: DataType,
        f: Function,
    ) -> Channel<'static> {
        Channel {
            source: Source::Modbus(ModbusRead {
                bus: 0,
                slave,
                function: f,
                register,
                data_type,
                word_order: WordOrder::HighFirst,
            }),
            conversion: Conversion::IDENTITY,
            resolution: Resolution {
                unit: Unit::None,
                exponent: 0,
            },
        }
    }

    fn computed(code: &'static [u8]) -> Channel<'static> {
        Channel {
            source: Source::Computed(code),
            conversion: Conversion::IDENTITY,
            resolution: Resolution {
                unit: Unit::None,
                exponent: 0,
            },
        }
    }

    pub(crate) fn encode(buses: &[Bus], channels: &[Channel<'_>]) -> Vec<u8> {
        let mut buf = std::vec![0u8; m::buffer_len(buses, channels)];
        let n = m::emit(buses, channels, &mut buf).unwrap();
        buf.truncate(n);
        buf
    }

    pub(crate) const BUS: Bus = Bus {
        baud: Baud::B19200,
        parity: Parity::Even,
        timeout_ms: 200,
    };

    /// ch0 power (f32, slave 1, input registers 12..14, 0.1 W), ch1 water temperature (i16,
    /// slave 2, holding register 0, 0.01 degC), ch2 air temperature (board input 3),
    /// ch3 = ch0 * 10 / ch1, ch4 = mean of ch0 over the interval.
    const RATIO: &[u8] = &[0x03, 0, 0x01, 10, 0x12, 0x03, 1, 0x13];
    const MEAN0: &[u8] = &[0x42, 0];

    fn plant_room() -> Vec<u8> {
        let mut power = modbus(1, 12, DataType::F32, Function::Input);
        power.conversion.mul = 10;
        encode(
            &[BUS],
            &[
                power,
                modbus(2, 0, DataType::I16, Function::Holding),
                board(3, Unit::Celsius, -2),
                computed(RATIO),
                computed(MEAN0),
            ],
        )
    }

    fn bus_with(power_w: f32, water_cc: i16) -> FakeBus {
        let mut b = FakeBus {
            bytes_per_receive: 3,
            ..FakeBus::default()
        };
        let bits = power_w.to_bits();
        b.regs.insert((1, 12), (bits >> 16) as u16);
        b.regs.insert((1, 13), bits as u16);
        b.regs.insert((2, 0), water_cc as u16);
        b.board.insert(3, 1850);
        b
    }

    /// Polls as a host would, from `from` every `step` ms (as bytes arrive), until a sample
    /// completes; returns the time it did.
    fn sample(c: &mut Channels<512, 16>, bus: &mut FakeBus, from: u64, step: u64) -> u64 {
        let mut now = from;
        for _ in 0..1000 {
            if c.poll(now, bus) {
                return now;
            }
            now += step;
        }
        panic!("the sample never completed");
    }

    /// [`sample`] from the next sample's time.
    fn next_sample(c: &mut Channels<512, 16>, bus: &mut FakeBus) -> u64 {
        let at = c.poll_at();
        sample(c, bus, at, 5)
    }

    #[test]
    fn the_pool_map_gives_todays_reading() {
        let mut c = Channels::<128, 8>::new(0);
        assert_eq!(c.count(), 5);
        assert_eq!(c.roles(), Roles::POOL);
        // POOL_MAP is the map the encoder makes of the pool board.
        let pool = encode(
            &[],
            &[
                board(0, Unit::Watt, 0),
                board(1, Unit::WattHour, 0),
                board(2, Unit::Celsius, -2),
                board(3, Unit::Celsius, -2),
                board(4, Unit::None, 0),
            ],
        );
        assert_eq!(c.map(), &pool[..]);
        let mut bus = FakeBus::default();
        for (i, v) in [1500, 123_456, 2650, 1850, 3].into_iter().enumerate() {
            bus.board.insert(i as u8, v);
        }
        assert!(
            c.poll(0, &mut bus),
            "board inputs only: the sample completes at once"
        );
        assert_eq!(
            c.reading(),
            Reading {
                power_w: 1500,
                energy_wh: 123_456,
                water_cc: Some(2650),
                air_cc: Some(1850),
            }
        );
        let mut rec = [Some(0); 8];
        c.record(&mut rec);
        assert_eq!(
            rec[..5],
            [Some(1500), Some(123_456), Some(2650), Some(1850), Some(3)]
        );
        assert_eq!(rec[5..], [None; 3]);
        assert_eq!(c.poll_at(), SAMPLE_EVERY_MS);
        assert!(!c.poll(SAMPLE_EVERY_MS - 1, &mut bus));
        // A broken water probe: no value, counted — not 0, not the last value.
        bus.board.remove(&2);
        assert!(c.poll(SAMPLE_EVERY_MS, &mut bus));
        assert_eq!(c.value(2), None);
        assert_eq!(c.reading().water_cc, None);
        let mut f = [FaultEntry {
            channel: 0,
            errors: 0,
            last: Fault::Timeout,
        }; 4];
        assert_eq!(c.faults(&mut f), 1);
        assert_eq!(
            f[0],
            FaultEntry {
                channel: 2,
                errors: 1,
                last: Fault::OutOfRange
            }
        );
        assert!(c.faults_changed());
    }

    #[test]
    fn modbus_reads_one_at_a_time_without_blocking() {
        let mut c = Channels::<512, 16>::new(0);
        c.set_map(&plant_room(), &[], 0).unwrap();
        let mut bus = bus_with(1234.5, 2650);
        // The first poll only sends the first request: nothing waits.
        assert!(!c.poll(0, &mut bus));
        assert_eq!(bus.sent.len(), 1);
        assert_eq!(&bus.sent[0].1[..6], &[1, 4, 0, 12, 0, 2]);
        assert_eq!(c.poll_at(), 200, "the bus timeout, on the caller's clock");
        let done = sample(&mut c, &mut bus, 1, 5);
        assert!(done < 200, "answers in time: no timeout waited for");
        assert!(!bus.overlapped, "one transaction at a time");
        assert_eq!(bus.sent.len(), 2);
        assert_eq!(&bus.sent[1].1[..6], &[2, 3, 0, 0, 0, 1]);
        assert_eq!(c.value(0), Some(12345)); // 1234.5 W × 10
        assert_eq!(c.value(1), Some(2650));
        assert_eq!(c.value(2), Some(1850));
        assert_eq!(c.value(3), Some(12345 * 10 / 2650));
        assert_eq!(c.value(4), Some(12345), "mean of one sample");
        let mut f = [FaultEntry {
            channel: 0,
            errors: 0,
            last: Fault::Timeout,
        }; 16];
        assert_eq!(c.faults(&mut f), 0);
    }

    #[test]
    fn timeouts_crc_errors_and_exceptions_are_no_value() {
        let mut c = Channels::<512, 16>::new(0);
        c.set_map(&plant_room(), &[], 0).unwrap();
        let mut bus = bus_with(1000.0, 2650);
        sample(&mut c, &mut bus, 0, 5);
        assert_eq!(c.value(0), Some(10_000));
        // Slave 2 stops answering: its channel has no value after its timeout, and so has the
        // expression that reads it; the sample still completes.
        bus.behaviour.insert(2, Behaviour::Silent);
        next_sample(&mut c, &mut bus);
        assert_eq!((c.value(0), c.value(1)), (Some(10_000), None));
        assert_eq!(
            c.value(3),
            None,
            "an operand without value: no value, not 0"
        );
        assert_eq!(c.value(4), Some(10_000));
        // Slave 1 answers with a broken CRC, then with exception 2.
        bus.behaviour.insert(2, Behaviour::Answer);
        bus.behaviour.insert(1, Behaviour::BadCrc);
        next_sample(&mut c, &mut bus);
        assert_eq!((c.value(0), c.value(1)), (None, Some(2650)));
        assert_eq!(
            c.value(4),
            Some(10_000),
            "the mean of the samples that had a value"
        );
        bus.behaviour.insert(1, Behaviour::Exception(2));
        next_sample(&mut c, &mut bus);
        assert_eq!(c.value(0), None);
        // Water 0: the division by zero is no value.
        bus.behaviour.clear();
        bus.regs.insert((2, 0), 0);
        next_sample(&mut c, &mut bus);
        assert_eq!(
            (c.value(0), c.value(1), c.value(3)),
            (Some(10_000), Some(0), None)
        );
        let mut f = [FaultEntry {
            channel: 0,
            errors: 0,
            last: Fault::Timeout,
        }; 16];
        let n = c.faults(&mut f);
        assert_eq!(
            &f[..n],
            &[
                FaultEntry {
                    channel: 0,
                    errors: 2,
                    last: Fault::Exception(2)
                },
                FaultEntry {
                    channel: 1,
                    errors: 1,
                    last: Fault::Timeout
                },
                FaultEntry {
                    channel: 3,
                    errors: 4,
                    last: Fault::NoValue
                },
            ]
        );
        // The log record of the last sample: gaps stay gaps.
        let mut rec = [Some(-1); 5];
        c.record(&mut rec);
        assert_eq!(rec, [Some(10_000), Some(0), Some(1850), None, Some(10_000)]);
    }

    /// With retries, a read that timed out or failed its CRC is sent again within the sample
    /// and a good second answer is a value, not a fault; an exception is not repeated; with the
    /// retries used up the channel has no value, counted once per sample.
    #[test]
    fn modbus_retries_cover_one_lost_answer() {
        let mut c = Channels::<512, 16>::new(0);
        c.set_map(&plant_room(), &[], 0).unwrap();
        c.modbus_retries = 1;
        let mut bus = bus_with(1000.0, 2650);
        // Slave 2 (channel 1) misses its first answer: the retry gets one.
        bus.lose_once = Some(2);
        let now = sample(&mut c, &mut bus, 0, 5);
        assert!(
            (200..400).contains(&now),
            "one timeout (200 ms) in the sample: {now}"
        );
        let to_slave_2: Vec<_> = bus.sent.iter().filter(|(_, f)| f[0] == 2).collect();
        assert_eq!(to_slave_2.len(), 2);
        assert_eq!(to_slave_2[0], to_slave_2[1], "the same request");
        assert_eq!((c.value(0), c.value(1)), (Some(10_000), Some(2650)));
        let mut f = [FaultEntry {
            channel: 0,
            errors: 0,
            last: Fault::Timeout,
        }; 4];
        assert_eq!(c.faults(&mut f), 0, "a retried read is no fault");
        // A bad CRC every time: two requests, then no value and one fault.
        bus.behaviour.insert(1, Behaviour::BadCrc);
        let before = bus.sent.len();
        let at = now.max(c.poll_at());
        let _ = sample(&mut c, &mut bus, at, 5);
        assert_eq!(c.value(0), None);
        let to_slave_1 = bus.sent[before..].iter().filter(|(_, f)| f[0] == 1).count();
        assert_eq!(to_slave_1, 2);
        assert_eq!(
            c.faults(&mut f),
            2,
            "channel 0, and channel 3 that reads it"
        );
        assert_eq!((f[0].channel, f[0].errors, f[0].last), (0, 1, Fault::Crc));
        // An exception is the slave's answer: asked once.
        bus.behaviour.insert(1, Behaviour::Exception(2));
        let before = bus.sent.len();
        let _ = next_sample(&mut c, &mut bus);
        let to_slave_1 = bus.sent[before..].iter().filter(|(_, f)| f[0] == 1).count();
        assert_eq!(to_slave_1, 1);
        assert_eq!(c.value(0), None);
        // Without retries (the default) one timeout is a fault at once.
        let mut c = Channels::<512, 16>::new(0);
        c.set_map(&plant_room(), &[], 0).unwrap();
        bus.behaviour.clear();
        bus.behaviour.insert(2, Behaviour::Silent);
        let before = bus.sent.len();
        let _ = sample(&mut c, &mut bus, 0, 5);
        assert_eq!(bus.sent.len() - before, 2);
        assert_eq!(c.value(1), None);
    }

    #[test]
    fn roles_name_the_thermostats_channels() {
        let mut c = Channels::<512, 16>::new(0);
        let roles = Roles {
            water: Some(1),
            air: Some(2),
            power: Some(0),
            energy: None,
            pump: 4,
            heater: 5,
        };
        let mut items = std::vec![1, 2, 0, 60];
        items.extend_from_slice(&roles.emit());
        c.set_map(&plant_room(), &items, 0).unwrap();
        assert_eq!(c.roles(), roles);
        let mut bus = bus_with(500.0, 2100);
        let now = sample(&mut c, &mut bus, 0, 5);
        assert_eq!(
            c.reading(),
            Reading {
                power_w: 5000,
                energy_wh: 0,
                water_cc: Some(2100),
                air_cc: Some(1850),
            }
        );
        // The controller's thermostat runs on it: cold water, heater on (with the pump) ...
        let mut ctl = crate::Controller::<crate::log::Log<8>>::new(
            crate::Setup {
                device_id: 7,
                key: [7; 16],
                factory_servers: &[],
                firmware: [0, 1, 0],
                halt: false,
                has_gsm: false,
                stored: None,
            },
            0,
        );
        let mut rng = crate::XorShift::new(1);
        ctl.sensor(now, c.reading());
        while ctl.poll(now, &mut rng).is_some() {}
        assert_eq!(ctl.relays() & 0b11, 0b11);
        assert_eq!((roles.output(0), roles.output(1)), (4, 5));
        // ... and when the water probe's slave stops answering, the heater goes off.
        bus.behaviour.insert(2, Behaviour::Silent);
        let now = next_sample(&mut c, &mut bus);
        assert_eq!(c.reading().water_cc, None);
        ctl.sensor(now, c.reading());
        while ctl.poll(now, &mut rng).is_some() {}
        assert_eq!(ctl.relays() & 0b10, 0);
    }

    #[test]
    fn a_refused_map_keeps_the_running_one() {
        let mut c = Channels::<512, 4>::new(0);
        assert_eq!(
            c.set_map(&plant_room(), &[], 0),
            Err(SetError::TooManyChannels(5))
        );
        let mut small = Channels::<64, 16>::new(0);
        assert_eq!(small.count(), 0, "the pool map needs 78 bytes");
        assert!(!small.poll(0, &mut FakeBus::default()));
        assert_eq!(
            small.poll_at(),
            SAMPLE_EVERY_MS,
            "no busy loop without a map"
        );
        assert_eq!(
            small.set_map(&plant_room(), &[], 0),
            Err(SetError::TooLarge(plant_room().len()))
        );
        let mut c = Channels::<512, 16>::new(0);
        let mut bad = plant_room();
        let last = bad.len() - 1;
        bad[last] = 20; // exponent 20
        assert!(matches!(c.set_map(&bad, &[], 0), Err(SetError::Map(_))));
        // Roles naming a channel the map does not have.
        let mut items = Roles::POOL.emit().to_vec();
        items[2] = 9;
        assert_eq!(
            c.set_map(&plant_room(), &items, 0),
            Err(SetError::Roles(RolesError::Channel(9)))
        );
        assert_eq!(c.map(), &POOL_MAP[..]);
    }

    #[test]
    fn interval_functions_follow_the_log_interval() {
        // ch0 board input 1 (an energy counter), ch1 = rate of ch0 per hour.
        let map = encode(&[], &[board(1, Unit::WattHour, 0), computed(&[0x41, 0])]);
        let mut c = Channels::<128, 4>::new(0);
        c.set_map(&map, &[], 0).unwrap();
        c.set_log_interval(60);
        let mut bus = FakeBus::default();
        bus.board.insert(1, 1000);
        assert!(c.poll(0, &mut bus));
        assert_eq!(c.value(1), None, "no earlier interval yet");
        c.close_interval();
        bus.board.insert(1, 1010);
        assert!(c.poll(c.poll_at(), &mut bus));
        assert_eq!(
            c.value(1),
            Some(10 * 60),
            "10 Wh in a minute: 600 Wh per hour"
        );
    }
    /// A controller fed through the pool map behaves exactly as one fed the readings directly:
    /// same relay actions, same log records, through cold and warm water, a failed probe and a
    /// failed air sensor.
    #[test]
    fn the_pool_map_is_the_pool_controller() {
        fn ctl() -> crate::Controller<crate::log::Log<64>> {
            crate::Controller::new(
                crate::Setup {
                    device_id: 7,
                    key: [7; 16],
                    factory_servers: &[],
                    firmware: [0, 1, 0],
                    halt: false,
                    has_gsm: false,
                    stored: None,
                },
                0,
            )
        }
        fn actions(
            c: &mut crate::Controller<crate::log::Log<64>>,
            now: u64,
        ) -> Vec<std::string::String> {
            let mut rng = crate::XorShift::new(1);
            let mut out = Vec::new();
            while let Some(a) = c.poll(now, &mut rng) {
                out.push(std::format!("{a:?}"));
            }
            out
        }
        let (mut direct, mut mapped) = (ctl(), ctl());
        let mut ch = Channels::<128, 8>::new(0);
        let mut bus = FakeBus::default();
        let water = [2500, 2600, 2690, 2740, 2760, 2700, 2650, 2600];
        for (k, now) in (0..48u64).map(|k| (k, k * SAMPLE_EVERY_MS)) {
            let reading = Reading {
                power_w: 1000 + 7 * k as u32,
                energy_wh: 50_000 + 3 * k as u32,
                water_cc: (k % 11 != 5).then_some(water[k as usize % 8]),
                air_cc: (k % 13 != 7).then_some(1500 - 10 * k as i16),
            };
            for (i, v) in [
                Some(reading.power_w as i32),
                Some(reading.energy_wh as i32),
                reading.water_cc.map(i32::from),
                reading.air_cc.map(i32::from),
                Some(i32::from(mapped.relays())),
            ]
            .into_iter()
            .enumerate()
            {
                match v {
                    Some(v) => bus.board.insert(i as u8, v),
                    None => bus.board.remove(&(i as u8)),
                };
            }
            assert!(ch.poll(now, &mut bus));
            assert_eq!(ch.reading(), reading);
            direct.sensor(now, reading);
            mapped.sensor(now, ch.reading());
            assert_eq!(
                actions(&mut direct, now),
                actions(&mut mapped, now),
                "at {now}"
            );
            assert_eq!(direct.relays(), mapped.relays());
        }
        let (a, b) = (direct.log(), mapped.log());
        assert!(!a.is_empty());
        assert_eq!(a.len(), b.len());
        for seq in 0..a.len() as u32 {
            assert_eq!(a.get(seq), b.get(seq));
        }
    }
    /// A failed source is logged as "no value" in wide telemetry: a gap, never 0 or the
    /// previous value.
    #[test]
    fn failed_sources_are_gaps_in_wide_telemetry() {
        use crate::wide_log::WideLog;
        use tek_proto::channel::ChannelMessage;
        let mut c = Channels::<512, 16>::new(0);
        c.set_map(&plant_room(), &[], 0).unwrap();
        let mut bus = bus_with(1000.0, 2650);
        let mut log = WideLog::<8, 16>::new();
        let mut rec = [None; 16];
        for minute in 0..3u32 {
            // Slave 2 (the water probe) times out in the second minute.
            if minute == 1 {
                bus.behaviour.insert(2, Behaviour::Silent);
            } else {
                bus.behaviour.clear();
            }
            let at = u64::from(minute) * 60_000;
            c.sample_every_ms = 60_000;
            let from = at.max(c.poll_at());
            let done = sample(&mut c, &mut bus, from, 5);
            c.record(&mut rec);
            log.push((done / 1000) as u32, &rec);
            c.close_interval();
        }
        let mut buf = [0u8; 256];
        let (first, last, n) = log.batch(c.count(), 200, &mut buf).unwrap();
        assert_eq!((first, last), (0, 2));
        let Ok(Some(ChannelMessage::WideTelemetry(t))) = ChannelMessage::parse(&buf[..n]) else {
            panic!("not wide telemetry");
        };
        let r: Vec<_> = t.records().collect();
        assert_eq!(r.len(), 3);
        assert_eq!(
            (r[0].get(1), r[1].get(1), r[2].get(1)),
            (Some(2650), None, Some(2650))
        );
        assert_eq!(
            r[1].get(3),
            None,
            "the expression reading it has no value either"
        );
        assert_eq!(r[1].get(0), Some(10_000));
    }
    proptest::proptest! {
        /// Any map bytes, any items, any board and bus behaviour: no panic, and a sample always
        /// completes within the longest bus timeout per channel.
        #[test]
        fn arbitrary_maps_and_buses_never_panic(
            map in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
            items in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..16),
            answer in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..12),
            board in proptest::prelude::any::<Option<i32>>(),
        ) {
            let mut c = Channels::<256, 16>::new(0);
            let _ = c.set_map(&map, &items, 0);
            let mut bus = ScriptedBus { answer: &answer, pending: &[], board };
            let mut now = 0;
            while !c.poll(now, &mut bus) {
                now += 50;
                proptest::prop_assert!(now <= 16 * 2000 + 50, "a sample always ends");
            }
            let mut rec = [None; 16];
            c.record(&mut rec);
            let _ = c.reading();
        }

        /// A Modbus channel of any read answered with any bytes, and a computed channel over
        /// it: a failed answer is no value on both, counted; never a panic.
        #[test]
        fn any_answer_to_any_read(
            slave in 1u8..=247,
            input in proptest::prelude::any::<bool>(),
            register in 0u16..0xFFFE,
            data_type in 0u8..5,
            answer in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..12),
            shape in 0u8..3,
        ) {
            let f = if input { Function::Input } else { Function::Holding };
            let mut ch = modbus(slave, register, DataType::from_code(data_type), f);
            if let Source::Modbus(m) = &mut ch.source {
                m.bus = 0;
            }
            let map = encode(&[BUS], &[ch, computed(&[0x03, 0, 0x01, 2, 0x12])]);
            let mut c = Channels::<256, 16>::new(0);
            c.set_map(&map, &[], 0).unwrap();
            // Raw bytes; bytes with a right CRC, so the checks past it run; or a well-formed
            // answer with any data, so values get through too.
            let regs = usize::from(DataType::from_code(data_type).registers());
            let mut frame = match shape {
                2 => {
                    let mut f = std::vec![slave, f.code(), 2 * regs as u8];
                    f.extend(answer.iter().copied().cycle().take(2 * regs));
                    f.resize(3 + 2 * regs, 0);
                    f
                }
                _ => answer.clone(),
            };
            if shape > 0 {
                let crc = crc(&frame);
                frame.extend_from_slice(&crc);
            }
            let mut bus = ScriptedBus { answer: &frame, pending: &[], board: None };
            let mut now = 0;
            while !c.poll(now, &mut bus) {
                now += 50;
                proptest::prop_assert!(now <= 300, "a sample always ends");
            }
            let mut f = [FaultEntry { channel: 0, errors: 0, last: Fault::Timeout }; 2];
            let faults = c.faults(&mut f);
            match c.value(0) {
                None => proptest::prop_assert!(faults == 2 && f[0].channel == 0 && c.value(1).is_none()),
                Some(v) => {
                    proptest::prop_assert_eq!(c.value(1), v.checked_mul(2));
                    proptest::prop_assert_eq!(faults, usize::from(v.checked_mul(2).is_none()));
                }
            }
        }
    }

    struct ScriptedBus<'a> {
        answer: &'a [u8],
        pending: &'a [u8],
        board: Option<i32>,
    }

    impl ChannelBus for ScriptedBus<'_> {
        fn board_input(&mut self, _input: u8) -> Option<i32> {
            self.board
        }
        fn serial_send(&mut self, _bus: u8, _settings: &Bus, _frame: &[u8]) {
            self.pending = self.answer;
        }
        fn serial_receive(&mut self, _bus: u8, buf: &mut [u8]) -> usize {
            let n = self.pending.len().min(buf.len());
            buf[..n].copy_from_slice(&self.pending[..n]);
            self.pending = &self.pending[n..];
            n
        }
    }
}
