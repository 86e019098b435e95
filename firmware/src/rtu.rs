//! The Modbus RTU master's line (UART2, QEMU's third `-serial`) and the board's
//! [`ChannelBus`]: what `tek_controller::channels::Channels` reads its sources through.
//!
//! The controller crate runs the transactions (request frames and answer checks with rmodbus,
//! one slave at a time, the bus timeout on the loop's clock, retries, faults); this module is the
//! wire under it, and never waits:
//!
//! * [`BoardBus::serial_send`] sets the line up as the map's bus says (9600/19200/38400 baud;
//!   parity even or odd with one stop bit, none with two: 11-bit characters as Modbus over serial
//!   line asks, PROTOCOL.md 17.2), throws away what the line received so far (a late answer to an
//!   earlier request) and queues the frame.
//! * The frame goes out only after the line has been silent for 3.5 character times (t3.5;
//!   1.75 ms above 19200 baud, Modbus over serial line 2.5.1.1) since the last byte received —
//!   its time is taken by UART2's interrupt ([`on_interrupt`]) — and since the end of our own
//!   previous frame: [`BoardBus::poll`] checks on every turn of the loop, and
//!   [`BoardBus::poll_at_ms`] tells the loop's sleep when. The request (8 bytes) goes into the
//!   empty 16-byte transmit FIFO at once ([`crate::uart::Uart::try_write`]); what arrived in the
//!   meantime is thrown away first.
//! * [`BoardBus::serial_receive`] hands over what the interrupt put into the ring.
//! * [`BoardBus::board_input`] gives the board's inputs by number: today the simulated pool
//!   ([`crate::sensors::PoolModel`]): 0 power W, 1 energy Wh, 2 water and 3 air temperature
//!   0.01 degC, 4 the relay bitmap; a failed probe is `None`, never 0.
//!
//! The board has one RS-485 port, bus 0 of the map; a request for another bus is not sent (it
//! times out, and the channel counts the fault). Several slaves on the bus are the map's
//! business: each channel names its slave.
//!
//! The controller's channel part (`crate::channels`) reads its map through this bus; in the
//! `rtu-test` build the test bench's fixed map (`crate::rtu_test`) uses it too.

use core::cell::Cell;
use critical_section::Mutex;
use tek_controller::channels::ChannelBus;
use tek_controller::modbus::MAX_REQUEST;
use tek_controller::Reading;
use tek_proto::channel::map::{Bus, Parity};

use crate::uart::{self, Format, Uart, BUS_RING, UART2};
use crate::{clock, log, sysctl};
use cortex_m::peripheral::NVIC;

/// The last byte UART2 received (µs), and whether bytes arrived since the loop last looked.
static HEARD: Mutex<Cell<(u64, bool)>> = Mutex::new(Cell::new((0, false)));

/// UART2's interrupt: FIFO -> ring, and the time the line last carried a byte.
pub fn on_interrupt() {
    if UART2.on_interrupt() {
        let at = clock::now_us();
        critical_section::with(|cs| HEARD.borrow(cs).set((at, true)));
    }
}

/// Whether bytes arrived since the last [`BoardBus::poll`] (wakes the loop's sleep).
pub fn heard() -> bool {
    critical_section::with(|cs| HEARD.borrow(cs).get().1)
}

/// The silent interval that must precede a frame, µs: 3.5 characters, 1 750 µs above 19200 baud.
pub fn t35_us(format: &Format) -> u64 {
    if format.baud > 19_200 {
        return 1_750;
    }
    // 3.5 characters = 7 half characters, rounded up.
    let half_chars = 7 * u64::from(format.bits_per_char()) * 1_000_000;
    half_chars.div_ceil(2 * u64::from(format.baud.max(1)))
}

/// The line format of a map's bus; `None` for codes this board does not know.
pub fn format(bus: &Bus) -> Option<Format> {
    // 9600, 19200 or 38400; an unknown code has no rate.
    let baud = bus.baud.bits_per_s()?;
    let (parity, two_stop_bits) = match bus.parity {
        Parity::None => (uart::Parity::None, true),
        Parity::Even => (uart::Parity::Even, false),
        Parity::Odd => (uart::Parity::Odd, false),
        Parity::Unknown(_) => return None,
    };
    Some(Format {
        baud,
        parity,
        two_stop_bits,
    })
}

/// The board's inputs and its Modbus RTU line.
pub struct BoardBus {
    uart: Uart<BUS_RING>,
    sysclk_hz: u32,
    /// The line's format; `None` until the first request.
    format: Option<Format>,
    /// The request waiting for the silent interval.
    queued: heapless::Vec<u8, MAX_REQUEST>,
    /// When our last request has left the wire, µs.
    sent_until_us: u64,
    /// The pool model's latest sample and the relays, for the board inputs.
    reading: Option<Reading>,
    relays: u8,
    /// Requests sent.
    pub sent: u32,
}

impl BoardBus {
    /// UART2, its clock gate open; configured at the first request.
    pub fn new(sysclk_hz: u32) -> BoardBus {
        // Any format until the map's: nothing is sent before `serial_send` sets it.
        let uart = Uart::new(UART2, sysclk_hz, Format::MODEM);
        BoardBus {
            uart,
            sysclk_hz,
            format: None,
            queued: heapless::Vec::new(),
            sent_until_us: 0,
            reading: None,
            relays: 0,
            sent: 0,
        }
    }

    /// UART2 powered up, its interrupt on: the board's Modbus RTU master.
    pub fn boot() -> BoardBus {
        sysctl::enable_uart(sysctl::uart_gate::UART2);
        let bus = BoardBus::new(sysctl::SYSCLK_HZ);
        // SAFETY: UART2's handler (`DefaultHandler`) only moves bytes into its ring and notes
        // the time inside a critical section; unmasking its line cannot break one elsewhere.
        unsafe { NVIC::unmask(UART2.irq()) };
        log!("rtu: Modbus RTU master on UART2 (bus 0 of a channel map)");
        bus
    }

    /// The board inputs from now on: the pool model's latest sample and the relay bitmap.
    pub fn set_inputs(&mut self, reading: Reading, relays: u8) {
        self.reading = Some(reading);
        self.relays = relays;
    }

    /// When the queued request may go, µs (`None`: nothing queued).
    fn due_us(&self) -> Option<u64> {
        let format = self.format?;
        if self.queued.is_empty() {
            return None;
        }
        let last = critical_section::with(|cs| HEARD.borrow(cs).get().0);
        Some(last.max(self.sent_until_us) + t35_us(&format))
    }

    /// Sends the queued request once the line has been silent for t3.5. Never waits.
    pub fn poll(&mut self) {
        critical_section::with(|cs| {
            let h = HEARD.borrow(cs);
            h.set((h.get().0, false));
        });
        let (Some(due), Some(format)) = (self.due_us(), self.format) else {
            return;
        };
        let now = clock::now_us();
        if now < due {
            return;
        }
        // Whatever came in since the request was queued answers nothing we still ask.
        self.uart.discard();
        if self.uart.try_write(&self.queued) {
            let bits = self.queued.len() as u64 * u64::from(format.bits_per_char());
            self.sent_until_us = now + (bits * 1_000_000).div_ceil(u64::from(format.baud));
            self.queued.clear();
            self.sent += 1;
        }
    }

    /// When [`poll`](Self::poll) must run to send the queued request, ms (`None`: nothing
    /// queued).
    pub fn poll_at_ms(&self) -> Option<u64> {
        self.due_us().map(|t| t.div_ceil(1000))
    }
}

impl ChannelBus for BoardBus {
    fn board_input(&mut self, input: u8) -> Option<i32> {
        let r = self.reading?;
        match input {
            0 => i32::try_from(r.power_w).ok(),
            1 => i32::try_from(r.energy_wh).ok(),
            2 => r.water_cc.map(i32::from),
            3 => r.air_cc.map(i32::from),
            4 => Some(i32::from(self.relays)),
            _ => None,
        }
    }

    fn serial_send(&mut self, bus: u8, settings: &Bus, frame: &[u8]) {
        self.queued.clear();
        let format = format(settings).filter(|_| bus == 0);
        let (Some(format), Ok(request)) = (format, heapless::Vec::from_slice(frame)) else {
            // Not for this board's one port (or longer than a read request): it times out, and
            // the channel counts the fault.
            return;
        };
        if self.format != Some(format) {
            self.uart.set_format(self.sysclk_hz, format);
            self.format = Some(format);
        }
        self.uart.discard();
        self.queued = request;
        self.poll();
    }

    fn serial_receive(&mut self, bus: u8, buf: &mut [u8]) -> usize {
        if bus != 0 {
            return 0;
        }
        self.uart.read(buf)
    }
}
