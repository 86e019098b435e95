//! Driver for the LM3S6965's Ethernet MAC, polled, as a smoltcp [`phy::Device`].
//!
//! The MAC has a 2 kB receive FIFO and a 2 kB transmit FIFO, both reached through one 32-bit
//! `DATA` register:
//!
//! * **Transmit**: the first word carries the frame length minus the 14-byte Ethernet header in
//!   its low half and the first two bytes of the frame in its high half; the rest of the frame
//!   follows, four bytes per word, little-endian. Writing `TR.NEWTX` sends it (the MAC pads short
//!   frames and appends the FCS).
//! * **Receive**: `NP` counts the frames waiting. A frame's first word carries its length + 6
//!   (the length field itself and the FCS) in its low half and the first two frame bytes in its
//!   high half; the frame and the FCS follow. Reading past the last word of a frame moves the FIFO
//!   to the next one, so a frame we cannot use is drained word by word.
//!
//! Both buffers are sized for this protocol, not for the largest Ethernet frame: the biggest
//! datagram is 1024 bytes (+ 28 IP/UDP + 14 Ethernet), DHCP replies are ~590 bytes. A larger
//! frame is drained and counted in [`Stats::rx_oversized`]. The link MTU reported to smoltcp is
//! [`FRAME_MAX`], so it never builds a larger frame.
//!
//! The PHY is left at its reset configuration (auto-negotiation on), which the board uses as-is;
//! QEMU does not model the MII at all. Register map: LM3S6965 datasheet, "Ethernet Controller";
//! QEMU's model: hw/net/stellaris_enet.c.

use core::ptr::{read_volatile, write_volatile};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use smoltcp::wire::EthernetAddress;

/// Largest Ethernet frame (without FCS) the driver sends or accepts: the largest TEK datagram
/// (1024) + UDP (8) + IPv4 (20) + Ethernet (14) = 1066, rounded up to whole FIFO words.
pub const FRAME_MAX: usize = 1068;
const HEADER: usize = 14;

const BASE: usize = 0x4004_8000;
/// Interrupt status (read) / acknowledge (write).
const RIS_IACK: usize = 0x00;
const IM: usize = 0x04;
const RCTL: usize = 0x08;
const TCTL: usize = 0x0C;
const DATA: usize = 0x10;
const IA0: usize = 0x14;
const IA1: usize = 0x18;
const NP: usize = 0x34;
const TR: usize = 0x38;

const INT_RX: u32 = 0x01;
const INT_ALL: u32 = 0x7F;
const RCTL_RXEN: u32 = 0x01;
const RCTL_AMUL: u32 = 0x02;
const RCTL_BADCRC: u32 = 0x08;
const RCTL_RSTFIFO: u32 = 0x10;
const TCTL_TXEN: u32 = 0x01;
const TCTL_PADEN: u32 = 0x02;
const TCTL_CRC: u32 = 0x04;
const TCTL_DUPLEX: u32 = 0x08;
const TR_NEWTX: u32 = 0x01;

/// The MAC's interrupt number in the NVIC (used only to wake the core from `WFI`).
pub const IRQ: u16 = 42;

/// Frame counters, for the log and for status reports.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    /// Frames received and handed to the stack.
    pub rx_frames: u32,
    /// Frames sent.
    pub tx_frames: u32,
    /// Frames drained because they were larger than [`FRAME_MAX`] or shorter than a header.
    pub rx_oversized: u32,
}

/// The Ethernet MAC with its two frame buffers.
pub struct Mac {
    rx: [u8; FRAME_MAX],
    tx: [u8; FRAME_MAX],
    stats: Stats,
}

fn read(offset: usize) -> u32 {
    // SAFETY: BASE..BASE+0x40 is the MAC's register block on the LM3S6965; reads have no side
    // effects other than DATA's FIFO advance, which only this driver performs.
    unsafe { read_volatile((BASE + offset) as *const u32) }
}

fn write(offset: usize, value: u32) {
    // SAFETY: as in `read`; the MAC is owned by the single `Mac` value created at boot.
    unsafe { write_volatile((BASE + offset) as *mut u32, value) }
}

impl Mac {
    /// An unconfigured MAC; call [`Mac::init`] once its clock gate is open.
    pub const fn new() -> Mac {
        Mac {
            rx: [0; FRAME_MAX],
            tx: [0; FRAME_MAX],
            stats: Stats {
                rx_frames: 0,
                tx_frames: 0,
                rx_oversized: 0,
            },
        }
    }

    /// Resets the FIFOs and enables transmit and receive, with the receive interrupt armed (see
    /// [`on_interrupt`]).
    pub fn init(&mut self, mac: EthernetAddress) {
        write(RCTL, 0);
        write(TCTL, 0);
        write(IM, 0);
        write(RIS_IACK, INT_ALL);
        self.set_address(mac);
        write(RCTL, RCTL_RSTFIFO);
        write(RCTL, RCTL_RXEN | RCTL_AMUL | RCTL_BADCRC);
        write(TCTL, TCTL_TXEN | TCTL_PADEN | TCTL_CRC | TCTL_DUPLEX);
        write(IM, INT_RX);
    }

    /// The station address programmed into the MAC (QEMU: `-net nic,macaddr=...`; a real board:
    /// the address the factory stored in the user registers).
    pub fn address() -> EthernetAddress {
        let a = read(IA0).to_le_bytes();
        let b = read(IA1).to_le_bytes();
        EthernetAddress([a[0], a[1], a[2], a[3], b[0], b[1]])
    }

    fn set_address(&mut self, mac: EthernetAddress) {
        let m = mac.0;
        write(IA0, u32::from_le_bytes([m[0], m[1], m[2], m[3]]));
        write(IA1, u32::from_le_bytes([m[4], m[5], 0, 0]));
    }

    /// Frame counters since boot.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Whether a received frame waits in the FIFO.
    pub fn rx_pending() -> bool {
        read(NP) & 0x3F != 0
    }

    /// Re-arms the receive interrupt after the FIFO was drained.
    pub fn arm_rx_interrupt() {
        write(RIS_IACK, INT_RX);
        write(IM, INT_RX);
    }

    /// Reads the next frame into `self.rx`; `None` when the FIFO is empty. Frames that do not fit
    /// are drained and counted, and the next one is tried.
    fn read_frame(&mut self) -> Option<usize> {
        while Self::rx_pending() {
            let first = read(DATA);
            // Length of the frame in the FIFO: 2 length bytes + frame + 4 FCS bytes.
            let fifo_len = (first & 0xFFFF) as usize;
            let words = fifo_len.div_ceil(4);
            let frame_len = fifo_len.saturating_sub(6);
            if !(HEADER..=FRAME_MAX).contains(&frame_len) {
                for _ in 1..words {
                    let _ = read(DATA);
                }
                self.stats.rx_oversized = self.stats.rx_oversized.wrapping_add(1);
                continue;
            }
            let [_, _, b0, b1] = first.to_le_bytes();
            self.rx[0] = b0;
            self.rx[1] = b1;
            let mut at = 2;
            for _ in 1..words {
                let bytes = read(DATA).to_le_bytes();
                for b in bytes {
                    // The FCS and the padding of the last word are read but not kept.
                    if at < frame_len {
                        self.rx[at] = b;
                    }
                    at += 1;
                }
            }
            self.stats.rx_frames = self.stats.rx_frames.wrapping_add(1);
            return Some(frame_len);
        }
        None
    }
}

/// The MAC's interrupt handler. The interrupt exists only to wake the core from `WFI` when a
/// frame arrives (the driver itself is polled): mask it so it does not fire again until the main
/// loop has drained the FIFO and called [`Mac::arm_rx_interrupt`].
pub fn on_interrupt() {
    write(IM, 0);
}

/// The MAC's NVIC line.
#[derive(Debug, Clone, Copy)]
pub struct Irq;

// SAFETY: 42 is the Ethernet controller's interrupt number on the LM3S6965 (datasheet, table
// "Interrupts"), a valid NVIC line on this chip.
unsafe impl cortex_m::interrupt::InterruptNumber for Irq {
    fn number(self) -> u16 {
        IRQ
    }
}

impl Default for Mac {
    fn default() -> Self {
        Mac::new()
    }
}

/// Pushes `frame` into the transmit FIFO and starts the transmission.
fn send_frame(frame: &[u8]) {
    // The previous frame must have left the FIFO (QEMU sends at once; hardware takes ~100 µs at
    // 100 Mbit/s). Bounded so a stuck MAC drops a frame rather than the whole controller.
    for _ in 0..100_000 {
        if read(TR) & TR_NEWTX == 0 {
            break;
        }
    }
    let len = frame.len();
    let data_len = (len - HEADER) as u32;
    write(
        DATA,
        data_len | u32::from(frame[0]) << 16 | u32::from(frame[1]) << 24,
    );
    for chunk in frame[2..].chunks(4) {
        let mut word = [0u8; 4];
        word[..chunk.len()].copy_from_slice(chunk);
        write(DATA, u32::from_le_bytes(word));
    }
    write(TR, TR_NEWTX);
}

impl Device for Mac {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _timestamp: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        let len = self.read_frame()?;
        let Mac { rx, tx, stats } = self;
        Some((
            RxToken { frame: &rx[..len] },
            TxToken {
                buf: tx,
                sent: &mut stats.tx_frames,
            },
        ))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<TxToken<'_>> {
        Some(TxToken {
            buf: &mut self.tx,
            sent: &mut self.stats.tx_frames,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = FRAME_MAX;
        caps.max_burst_size = Some(1);
        caps
    }
}

/// A received frame, already copied out of the FIFO.
pub struct RxToken<'a> {
    frame: &'a [u8],
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.frame)
    }
}

/// Permission to send one frame.
pub struct TxToken<'a> {
    buf: &'a mut [u8; FRAME_MAX],
    sent: &'a mut u32,
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        // smoltcp never asks for more than the MTU we report; clamp anyway so a bug there
        // truncates a frame instead of indexing out of bounds.
        let len = len.clamp(HEADER, FRAME_MAX);
        let frame = &mut self.buf[..len];
        let r = f(frame);
        send_frame(frame);
        *self.sent = self.sent.wrapping_add(1);
        r
    }
}
