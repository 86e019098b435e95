//! Driver for one of the LM3S6965's UARTs (ARM PL011-compatible; QEMU models them with its
//! PL011), 8N1, for the GSM modem: UART1 (PD2 RX / PD3 TX on the board), QEMU's second
//! `-serial` argument.
//!
//! * **Receive**: the receive and receive-timeout interrupts move bytes from the 16-byte hardware
//!   FIFO into a [`RX_RING`]-byte ring, so nothing is lost while the loop is busy (at 115 200
//!   baud the FIFO fills in 1.4 ms; a datagram's decryption takes longer). The loop takes them
//!   with [`Uart::read`]. When the ring is full the interrupt masks itself and the FIFO holds
//!   the rest (the modem's RTS/CTS flow control, or QEMU's, stops the sender) until the loop
//!   has read and calls [`Uart::rearm`].
//! * **Transmit**: polled: [`Uart::write`] waits for room in the 16-byte transmit FIFO. At
//!   115 200 baud a 1 kB datagram keeps the loop ~90 ms; the protocol's datagrams are rare
//!   enough that no transmit ring (RAM) is spent on it.
//!
//! Register map: LM3S6965 datasheet, "UART" (the PL011's map: DR 0x000, FR 0x018, IBRD 0x024,
//! FBRD 0x028, LCRH 0x02C, CTL 0x030, IM 0x038, MIS 0x040, ICR 0x044).

use core::cell::RefCell;
use core::ptr::{read_volatile, write_volatile};
use critical_section::Mutex;
use heapless::Deque;

/// UART1's registers.
const BASE: usize = 0x4000_D000;
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
const LCRH_FEN: u32 = 1 << 4;
const LCRH_WLEN8: u32 = 0b11 << 5;
const CTL_UARTEN: u32 = 1 << 0;
const CTL_TXE: u32 = 1 << 8;
const CTL_RXE: u32 = 1 << 9;
/// Receive and receive-timeout interrupts.
const INT_RX: u32 = (1 << 4) | (1 << 6);

/// The baud rate of the modem line.
pub const BAUD: u32 = 115_200;
/// UART1's interrupt number in the NVIC.
pub const IRQ: u16 = 6;
/// Bytes the receive ring holds.
pub const RX_RING: usize = 256;

/// Bytes received by the interrupt, waiting for the loop.
static RX: Mutex<RefCell<Deque<u8, RX_RING>>> = Mutex::new(RefCell::new(Deque::new()));

fn read(offset: usize) -> u32 {
    // SAFETY: BASE..BASE+0x48 is UART1's register block; reading DR pops the FIFO, which only
    // this driver (interrupt or loop, never both at once: the loop reads inside a critical
    // section) does.
    unsafe { read_volatile((BASE + offset) as *const u32) }
}

fn write(offset: usize, value: u32) {
    // SAFETY: as in `read`: UART1's registers, owned by this driver.
    unsafe { write_volatile((BASE + offset) as *mut u32, value) }
}

/// The modem UART.
pub struct Uart {
    _private: (),
}

impl Uart {
    /// Configures UART1 for [`BAUD`] 8N1 with FIFOs and the receive interrupts. Its clock gate
    /// must be open (`sysctl::enable_uart1`).
    pub fn new(sysclk_hz: u32) -> Uart {
        write(CTL, 0);
        // Divisor = sysclk / (16 * baud), 6 fractional bits, rounded.
        let div64 = (sysclk_hz * 4 + BAUD / 2) / BAUD;
        write(IBRD, div64 >> 6);
        write(FBRD, div64 & 0x3F);
        write(LCRH, LCRH_WLEN8 | LCRH_FEN);
        write(ICR, 0x7FF);
        write(IM, INT_RX);
        write(CTL, CTL_UARTEN | CTL_TXE | CTL_RXE);
        Uart { _private: () }
    }

    /// Sends `bytes`, waiting for room in the transmit FIFO.
    pub fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            while read(FR) & FR_TXFF != 0 {}
            write(DR, u32::from(b));
        }
    }

    /// Takes received bytes into `buf`; returns how many.
    pub fn read(&mut self, buf: &mut [u8]) -> usize {
        critical_section::with(|cs| {
            let mut ring = RX.borrow_ref_mut(cs);
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

    /// Whether bytes wait in the ring or the FIFO (wakes the loop's sleep).
    pub fn rx_pending() -> bool {
        read(FR) & FR_RXFE == 0 || critical_section::with(|cs| !RX.borrow_ref(cs).is_empty())
    }

    /// Unmasks the receive interrupt again (after the ring was full), draining the FIFO first.
    pub fn rearm(&mut self) {
        critical_section::with(|cs| drain(&mut RX.borrow_ref_mut(cs)));
        write(IM, INT_RX);
    }
}

/// FIFO -> ring until one is empty or the other full; masks the interrupt when the ring is full
/// (the FIFO keeps the rest).
fn drain(ring: &mut Deque<u8, RX_RING>) {
    while read(FR) & FR_RXFE == 0 {
        if ring.is_full() {
            write(IM, 0);
            return;
        }
        // Bits 8..11 are error flags (framing, parity, break, overrun): the byte is kept; PPP's
        // FCS and the AT driver's parser reject what it damaged.
        let _ = ring.push_back(read(DR) as u8);
    }
}

/// The UART's interrupt: FIFO -> ring.
pub fn on_interrupt() {
    critical_section::with(|cs| drain(&mut RX.borrow_ref_mut(cs)));
    write(ICR, INT_RX);
}

/// UART1's NVIC line.
#[derive(Debug, Clone, Copy)]
pub struct Irq;

// SAFETY: 6 is UART1's interrupt number on the LM3S6965 (datasheet, table "Interrupts"), a valid
// NVIC line on this chip.
unsafe impl cortex_m::interrupt::InterruptNumber for Irq {
    fn number(self) -> u16 {
        IRQ
    }
}
