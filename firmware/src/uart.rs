//! Driver for the LM3S6965's UARTs (ARM PL011-compatible; QEMU models them with its PL011), one
//! code for every instance ([`Line`]): UART1 for the GSM modem ([`UART1`]; PD2 RX / PD3 TX on
//! the board, QEMU's second `-serial`), 115 200 8N1; UART2 for the Modbus RTU bus ([`UART2`];
//! PG0 RX / PG1 TX, QEMU's third `-serial`), 9600/19200/38400 baud with the map's parity.
//!
//! * **Receive**: the receive and receive-timeout interrupts move bytes from the 16-byte hardware
//!   FIFO into the line's ring, so nothing is lost while the loop is busy (at 115 200 baud the
//!   FIFO fills in 1.4 ms; a datagram's decryption takes longer). The loop takes them with
//!   [`Uart::read`]. When the ring is full the interrupt masks itself and the FIFO holds the
//!   rest (the modem's RTS/CTS flow control, or QEMU's, stops the sender) until the loop has
//!   read and calls [`Uart::rearm`] (or [`Uart::discard`]).
//! * **Transmit**: polled: [`Uart::write`] waits for room in the 16-byte transmit FIFO. At
//!   115 200 baud a 1 kB datagram keeps the loop ~90 ms; the protocol's datagrams are rare
//!   enough that no transmit ring (RAM) is spent on it. [`Uart::try_write`] never waits: it
//!   takes a short frame (a Modbus request, 8 bytes) only into an empty FIFO.
//!
//! Register map: LM3S6965 datasheet, "UART" (the PL011's map: DR 0x000, FR 0x018, IBRD 0x024,
//! FBRD 0x028, LCRH 0x02C, CTL 0x030, IM 0x038, MIS 0x040, ICR 0x044); bases UART1 0x4000_D000,
//! UART2 0x4000_E000; interrupts (table "Interrupts") UART1 6, UART2 33; clock gates in RCGC1
//! (`sysctl::enable_uart`).

use core::cell::RefCell;
use core::ptr::{read_volatile, write_volatile};
use critical_section::Mutex;
use heapless::Deque;

const DR: usize = 0x000;
const FR: usize = 0x018;
const IBRD: usize = 0x024;
const FBRD: usize = 0x028;
const LCRH: usize = 0x02C;
const CTL: usize = 0x030;
const IM: usize = 0x038;
const ICR: usize = 0x044;

const FR_RXFE: u32 = 1 << 4;
const FR_TXFF: u32 = 1 << 5;
const FR_TXFE: u32 = 1 << 7;
const LCRH_PEN: u32 = 1 << 1;
const LCRH_EPS: u32 = 1 << 2;
const LCRH_STP2: u32 = 1 << 3;
const LCRH_FEN: u32 = 1 << 4;
const LCRH_WLEN8: u32 = 0b11 << 5;
const CTL_UARTEN: u32 = 1 << 0;
const CTL_TXE: u32 = 1 << 8;
const CTL_RXE: u32 = 1 << 9;
/// Receive and receive-timeout interrupts.
const INT_RX: u32 = (1 << 4) | (1 << 6);
/// Depth of the transmit FIFO.
pub const TX_FIFO: usize = 16;

/// A receive ring, filled by the interrupt, emptied by the loop.
pub type Ring<const N: usize> = Mutex<RefCell<Deque<u8, N>>>;

/// One UART instance: its registers, its interrupt line, its pins and its receive ring (a
/// `const`: the ring itself is a `static` in `.bss`, this costs no RAM).
pub struct Line<const RING: usize> {
    base: usize,
    irq: u16,
    pins: Pins,
    rx: &'static Ring<RING>,
}

/// The GPIO pins a UART's RX and TX come out on: its port's base and the pins' bits. On the
/// LM3S6965 each pin has one alternate function, selected by the port's AFSEL bit (datasheet,
/// "GPIO": AFSEL 0x420, DEN 0x51C; no PCTL on this family); the port's clock gate must be open
/// (`sysctl::gate`). QEMU routes its `-serial`s without this, the chip does not.
#[derive(Clone, Copy)]
struct Pins {
    port: usize,
    mask: u32,
}

const GPIO_AFSEL: usize = 0x420;
const GPIO_DEN: usize = 0x51C;

/// Bytes UART1's ring holds (the modem: a PPP frame's worth arrives between two loop turns).
pub const MODEM_RING: usize = 256;
static MODEM_RX: Ring<MODEM_RING> = Mutex::new(RefCell::new(Deque::new()));
/// UART1, the modem line.
pub const UART1: Line<MODEM_RING> = Line {
    base: 0x4000_D000,
    irq: 6,
    // PD2 U1Rx, PD3 U1Tx.
    pins: Pins {
        port: 0x4000_7000,
        mask: 0b1100,
    },
    rx: &MODEM_RX,
};
/// The modem's UART.
pub type ModemUart = Uart<MODEM_RING>;

/// Bytes UART2's ring holds: a Modbus answer this master asks for is at most 9 bytes; more
/// is noise or a late answer, which the RTU driver throws away before its next request.
pub const BUS_RING: usize = 32;
static BUS_RX: Ring<BUS_RING> = Mutex::new(RefCell::new(Deque::new()));
/// UART2, the Modbus RTU bus.
pub const UART2: Line<BUS_RING> = Line {
    base: 0x4000_E000,
    irq: 33,
    // PG0 U2Rx, PG1 U2Tx.
    pins: Pins {
        port: 0x4002_6000,
        mask: 0b11,
    },
    rx: &BUS_RX,
};

/// Parity of a character (8 data bits). (The modem line has none; the others are the Modbus
/// bus's, compiled in with it.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parity {
    /// No parity bit.
    None,
    /// Even parity.
    Even,
    /// Odd parity.
    Odd,
}

/// Speed and character format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Format {
    /// Bits per second.
    pub baud: u32,
    /// Parity bit.
    pub parity: Parity,
    /// Two stop bits (Modbus RTU without parity: every character is 11 bits).
    pub two_stop_bits: bool,
}

impl Format {
    /// The modem line: 115 200 8N1.
    pub const MODEM: Format = Format {
        baud: 115_200,
        parity: Parity::None,
        two_stop_bits: false,
    };

    /// Bits per character on the wire: start, 8 data, parity, stop(s).
    pub fn bits_per_char(&self) -> u32 {
        10 + u32::from(self.parity != Parity::None) + u32::from(self.two_stop_bits)
    }
}

impl<const RING: usize> Line<RING> {
    fn read(&self, offset: usize) -> u32 {
        // SAFETY: base..base+0x48 is this UART's register block (datasheet memory map); reading
        // DR pops the FIFO, which only this driver (interrupt or loop, never both at once: the
        // loop reads inside a critical section) does.
        unsafe { read_volatile((self.base + offset) as *const u32) }
    }

    fn write(&self, offset: usize, value: u32) {
        // SAFETY: as in `read`: this UART's registers, owned by this driver.
        unsafe { write_volatile((self.base + offset) as *mut u32, value) }
    }

    /// FIFO -> ring until one is empty or the other full; masks the interrupt when the ring
    /// is full (the FIFO keeps the rest). Returns whether a byte moved.
    fn drain(&self, ring: &mut Deque<u8, RING>) -> bool {
        let mut moved = false;
        while self.read(FR) & FR_RXFE == 0 {
            if ring.is_full() {
                self.write(IM, 0);
                return moved;
            }
            // Bits 8..11 are error flags (framing, parity, break, overrun): the byte is kept;
            // PPP's FCS, the AT driver's parser and the Modbus CRC reject what it damaged.
            let _ = ring.push_back(self.read(DR) as u8);
            moved = true;
        }
        moved
    }

    /// The line's interrupt: FIFO -> ring. Returns whether bytes arrived.
    pub fn on_interrupt(&self) -> bool {
        let moved = critical_section::with(|cs| self.drain(&mut self.rx.borrow_ref_mut(cs)));
        self.write(ICR, INT_RX);
        moved
    }

    /// The line's interrupt number.
    pub fn irq(&self) -> Irq {
        Irq(self.irq)
    }

    /// Whether `irqn` (as `DefaultHandler` gets it) is this line's interrupt.
    pub fn is_irq(&self, irqn: i16) -> bool {
        i32::from(irqn) == i32::from(self.irq)
    }

    /// Whether bytes wait in the ring or the FIFO (wakes the loop's sleep).
    pub fn rx_pending(&self) -> bool {
        self.read(FR) & FR_RXFE == 0
            || critical_section::with(|cs| !self.rx.borrow_ref(cs).is_empty())
    }
}

/// A configured UART, owned by one driver.
pub struct Uart<const RING: usize> {
    line: Line<RING>,
}

impl<const RING: usize> Uart<RING> {
    /// Routes `line`'s pins to it and configures it for `format` with FIFOs and the receive
    /// interrupts. Its clock gate and its pins' port's must be open (`sysctl::enable_uart`,
    /// `sysctl::enable`).
    pub fn new(line: Line<RING>, sysclk_hz: u32, format: Format) -> Uart<RING> {
        let Pins { port, mask } = line.pins;
        for reg in [GPIO_AFSEL, GPIO_DEN] {
            let at = (port + reg) as *mut u32;
            // SAFETY: AFSEL and DEN of the line's own GPIO port, read-modify-written once at
            // start-up for the line's two pins only; no other driver uses those pins.
            unsafe { write_volatile(at, read_volatile(at) | mask) };
        }
        let mut u = Uart { line };
        u.set_format(sysclk_hz, format);
        u
    }

    /// Reconfigures speed and character format (the PL011 wants the UART disabled meanwhile;
    /// a byte in flight is lost, so the RTU driver only does this between transactions).
    pub fn set_format(&mut self, sysclk_hz: u32, format: Format) {
        let l = &self.line;
        l.write(CTL, 0);
        // Divisor = sysclk / (16 * baud), 6 fractional bits, rounded.
        let baud = format.baud.max(1);
        let div64 = (sysclk_hz * 4 + baud / 2) / baud;
        l.write(IBRD, div64 >> 6);
        l.write(FBRD, div64 & 0x3F);
        let parity = match format.parity {
            Parity::None => 0,
            Parity::Even => LCRH_PEN | LCRH_EPS,
            Parity::Odd => LCRH_PEN,
        };
        let stop = if format.two_stop_bits { LCRH_STP2 } else { 0 };
        l.write(LCRH, LCRH_WLEN8 | LCRH_FEN | parity | stop);
        l.write(ICR, 0x7FF);
        l.write(IM, INT_RX);
        l.write(CTL, CTL_UARTEN | CTL_TXE | CTL_RXE);
    }

    /// Sends `bytes`, waiting for room in the transmit FIFO.
    pub fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            while self.line.read(FR) & FR_TXFF != 0 {}
            self.line.write(DR, u32::from(b));
        }
    }

    /// Puts all of `bytes` into the transmit FIFO if it is empty and they fit; else nothing.
    /// Never waits. Returns whether they went.
    pub fn try_write(&mut self, bytes: &[u8]) -> bool {
        if bytes.len() > TX_FIFO || self.line.read(FR) & FR_TXFE == 0 {
            return false;
        }
        for &b in bytes {
            self.line.write(DR, u32::from(b));
        }
        true
    }

    /// Takes received bytes into `buf`; returns how many.
    pub fn read(&mut self, buf: &mut [u8]) -> usize {
        critical_section::with(|cs| {
            let mut ring = self.line.rx.borrow_ref_mut(cs);
            let mut n = 0;
            while n < buf.len() {
                match ring.pop_front() {
                    Some(b) => {
                        buf[n] = b;
                        n += 1;
                    }
                    None => break,
                }
            }
            n
        })
    }

    /// Unmasks the receive interrupt again (after the ring was full), draining the FIFO first.
    pub fn rearm(&mut self) {
        critical_section::with(|cs| self.line.drain(&mut self.line.rx.borrow_ref_mut(cs)));
        self.line.write(IM, INT_RX);
    }

    /// Throws away everything received so far (ring and FIFO) and unmasks the interrupt.
    pub fn discard(&mut self) {
        critical_section::with(|cs| {
            let mut ring = self.line.rx.borrow_ref_mut(cs);
            // Bounded: the FIFO holds 16 bytes; a sender faster than this loop is noise too.
            for _ in 0..4 {
                ring.clear();
                if !self.line.drain(&mut ring) {
                    break;
                }
            }
            ring.clear();
        });
        self.line.write(IM, INT_RX);
    }
}

/// A UART's NVIC line (only [`Line::irq`] makes one).
#[derive(Debug, Clone, Copy)]
pub struct Irq(u16);

// SAFETY: the numbers come from the `Line` constants above, the UARTs' interrupt numbers on the
// LM3S6965 (datasheet, table "Interrupts": UART1 6, UART2 33), valid NVIC lines on this chip.
unsafe impl cortex_m::interrupt::InterruptNumber for Irq {
    fn number(self) -> u16 {
        self.0
    }
}
