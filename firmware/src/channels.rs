//! The controller's channel part (PROTOCOL.md 17): the firmware is a channel-capable device.
//!
//! * [`Part`] is tek-controller's `ChannelPart` at this chip's sizes, in a `static` of its own
//!   ([`take`]) that the controller holds by reference ([`FwChannels`]), so the controller's
//!   own static stays all-zero `.bss`.
//! * [`CAPS`] is what the device states in Capabilities (17.1): split configurations, wide
//!   telemetry, computed channels, Modbus RTU on one serial bus (UART2, [`crate::rtu`]).
//! * The part's flash record goes into two slots of its own ([`crate::storage::ChannelSlots`],
//!   tek-controller's `flash_log::layout::CHANNEL_SLOTS_START`); [`restore`] hands the newer
//!   valid one to `Controller::restore_channels` at power-up.
//! * The map is sampled through [`crate::rtu::BoardBus`] (the Modbus line and the board's
//!   simulated pool inputs); [`Shown`] puts what changed on the console.
//!
//! Wide records go into the flash log with the five-channel records of the factory map
//! (tek-controller's `record_log::FlashStore` is the part's `WideSink`): they survive a power
//! cut like those. The part's own RAM `WideLog` is not used, so it has no room
//! ([`WIDE_RECORDS`] = 0).

use crate::console::Opt;
use crate::log;
use crate::storage::{ChannelSlots, CHANNEL_SLOT_LEN};
use static_cell::ConstStaticCell;
use tek_controller::channel_part::{record, ChannelPart, ChannelRuntime, ChannelSupport};
use tek_controller::record_log::RecordLog;
use tek_controller::Controller;
use tek_proto::channel::split::{feature, Capabilities};

/// Channels a map may have.
pub const CHANNELS: usize = 32;
/// Bytes of a channel map.
pub const MAP_BYTES: usize = 1024;
/// Wide records held in RAM by the part: none, the flash log keeps them.
pub const WIDE_RECORDS: usize = 0;
/// Bytes of an assembled configuration (items + map).
pub const CONFIG_BYTES: usize = 1536;
/// The longest expression program the server may send (PROTOCOL.md 17.3's limit).
pub const MAX_PROGRAM: u8 = 128;

/// A Modbus read that timed out or failed its CRC is sent once more within the sample before
/// its channel has no value (line noise; the bench saw an answer lost now and then).
pub const MODBUS_RETRIES: u8 = 1;

/// The part at this chip's sizes.
pub type Part = ChannelPart<MAP_BYTES, CHANNELS, WIDE_RECORDS, CONFIG_BYTES>;

/// The longest flash record: header, the running and the previous configuration, CRC.
const RECORD_MAX: usize = record::HEADER + 2 * CONFIG_BYTES + 4;
const _: () = assert!(RECORD_MAX <= CHANNEL_SLOT_LEN);

/// What the device states in Capabilities: its real limits.
pub const CAPS: Capabilities = Capabilities {
    features: feature::SPLIT_CONFIG
        | feature::WIDE_TELEMETRY
        | feature::MODBUS
        | feature::EXPRESSIONS,
    max_channels: CHANNELS as u8,
    // One RS-485 port: UART2.
    max_buses: 1,
    max_config: CONFIG_BYTES as u16,
    max_program: MAX_PROGRAM,
};

/// The part's static. Its initial bytes are all zero (`.bss`, no copy in flash: a constant
/// part would cost its 17 kB twice, in flash and as a stack temporary); [`take`] sets every
/// field with `ChannelPart::init` before anything reads it.
// SAFETY: every field of `ChannelPart` is an integer, an array or a `heapless::Vec` of
// integers, or an enum/Option with a variant whose bytes are all zero; const evaluation rejects
// a zeroed value that is invalid for its type, so this compiles only if zero is a valid part.
// Zero is not a meaningful part, which is why `init` runs before any other use.
static PART: ConstStaticCell<Part> = ConstStaticCell::new(unsafe { core::mem::zeroed() });

/// The controller's channel part: a reference to [`PART`] once [`take`]n (`None` is a null
/// pointer: the controller's static stays all zero).
pub struct FwChannels(Option<&'static mut Part>);

impl ChannelSupport for FwChannels {
    const BLANK: Self = FwChannels(None);
    fn runtime(&mut self) -> Option<&mut dyn ChannelRuntime> {
        self.0.as_deref_mut().map(|p| p as &mut dyn ChannelRuntime)
    }
    fn runtime_ref(&self) -> Option<&dyn ChannelRuntime> {
        self.0.as_deref().map(|p| p as &dyn ChannelRuntime)
    }
}

/// The part, set up in place, for `Controller::set_channels` (once; `None` the second time).
pub fn take() -> Option<FwChannels> {
    let part = PART.try_take()?;
    part.init(CAPS);
    part.set_modbus_retries(MODBUS_RETRIES);
    Some(FwChannels(Some(part)))
}

/// Power-up: the newer valid record of the two channel slots, handed to the controller (after
/// `boot_from_flash`, whose record says which configuration runs). Out of line: the slot buffer
/// is gone before the loop runs.
#[inline(never)]
pub fn restore<L: RecordLog>(
    ctl: &mut Controller<L, FwChannels>,
    slots: &mut ChannelSlots,
    now: u64,
) {
    // As much of a slot as a record of this part can fill (not the whole slot: this is the
    // deepest frame of the boot).
    let mut buf = [0u8; RECORD_MAX];
    let mut newest: Option<(u32, u8)> = None;
    for slot in 0..2u8 {
        if slots.read(slot, &mut buf).is_err() {
            log!("channels: slot {} unreadable", slot);
            continue;
        }
        if let Some(h) = record::check(&buf) {
            // Newer across the sequence number's wrap, as the part itself compares.
            if newest.is_none_or(|(seq, _)| (h.seq.wrapping_sub(seq) as i32) > 0) {
                newest = Some((h.seq, slot));
            }
        }
    }
    let Some((seq, slot)) = newest else {
        log!("channels: no record in flash (factory pool map)");
        return;
    };
    if slots.read(slot, &mut buf).is_err() {
        log!("channels: slot {} unreadable", slot);
        return;
    }
    if ctl.restore_channels(&buf, &[], now) {
        let part = ctl.channel_part();
        log!(
            "channels: record seq {} restored, split configuration {} runs ({} channels)",
            seq,
            Opt(part.and_then(|p| p.split_version())),
            part.map_or(0, |p| p.channel_count())
        );
    } else {
        log!(
            "channels: record seq {} restored, factory pool map (no split configuration runs)",
            seq
        );
    }
}

/// What the console last showed of the channel part, to log changes only.
#[derive(Default, PartialEq, Eq, Clone, Copy)]
pub struct Shown {
    split: Option<u32>,
    count: usize,
    faults_any: bool,
    wide_drops: u32,
}

impl Shown {
    /// Logs the split configuration that runs when it changed, and whether channels fail.
    #[inline(never)]
    pub fn update<L: RecordLog>(&mut self, ctl: &Controller<L, FwChannels>) {
        let Some(part) = ctl.channel_part() else {
            return;
        };
        let now = Shown {
            split: part.split_version(),
            count: part.channel_count(),
            faults_any: part.faults_pending().1,
            wide_drops: part.wide_drops(),
        };
        if now == *self {
            return;
        }
        if (now.split, now.count) != (self.split, self.count) {
            match now.split {
                Some(v) => log!(
                    "channels: split configuration {} runs, {} channels, wide telemetry",
                    v,
                    now.count
                ),
                None => log!(
                    "channels: factory pool map, {} channels, telemetry 0x01",
                    now.count
                ),
            }
        }
        if now.faults_any != self.faults_any {
            if now.faults_any {
                log!("channels: a source failed (no value, counted; ChannelFaults follow the next Status)");
            } else {
                log!("channels: no channel fails");
            }
        }
        if now.wide_drops != self.wide_drops {
            log!("channels: {} wide records dropped", now.wide_drops);
        }
        *self = now;
    }
}

/// The last complete sample's values: ` v0 v1 ...`, `none` for a channel without value.
pub struct Values<'a>(pub &'a dyn ChannelRuntime);
impl core::fmt::Display for Values<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for ch in 0..self.0.channel_count() {
            if ch > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{}", Opt(self.0.value(ch)))?;
        }
        Ok(())
    }
}
