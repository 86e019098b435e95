//! The Radio LED: the modem's state as a blink pattern (the networking note's "Radio indicator";
//! its table did not survive in the note, so the patterns follow its wording — "on-blink" is
//! on most of the time with short pulses off):
//!
//! | radio                    | pattern                                  |
//! |--------------------------|------------------------------------------|
//! | off                      | off                                      |
//! | searching for a network  | slow blink, 500 ms on / 500 ms off       |
//! | registered, no data call | on-blink: on 1 900 ms, off 100 ms        |
//! | data connection          | steady on                                |
//! | no SIM                   | fast blink, 100 ms on / 100 ms off       |
//!
//! On PB0 (active high). Not PG0, where it first was: on the LM3S6965 PG0 is U2RX, the Modbus
//! bus's receive pin ([`crate::uart`]). PB0 is brought out on the evaluation board's header and
//! drives nothing on the board: the board's own functions sit on PA0/PA1 (UART0), PD2/PD3
//! (UART1), PG0/PG1 (UART2), PF0 (the status LED, [`crate::leds`]), PF1 and PE0..PE3 (the
//! buttons), PF2/PF3 (the Ethernet LEDs), PA2..PA5, PC6 and PC7 (the OLED), PD0 (the SD card)
//! and PD1 (the speaker); the relays ([`crate::relays`]) drive no pin on this board. Changes are logged
//! (`radio: <state> signal <n>`) since QEMU shows no LEDs; the controller reports the same state
//! and signal in its status, which the server shows.

use core::ptr::write_volatile;
use tek_controller::Radio;

const GPIOB: usize = 0x4000_5000;
const PIN0: u32 = 1 << 0;
const DATA_PIN0: usize = GPIOB + ((PIN0 as usize) << 2);
const DIR: usize = GPIOB + 0x400;
const DEN: usize = GPIOB + 0x51C;

/// (on, off) times in ms; `None`: steady (lit or dark per the first field).
fn timing(r: Radio) -> Option<(u64, u64)> {
    match r {
        Radio::Off | Radio::Data => None,
        Radio::Searching => Some((500, 500)),
        Radio::Registered => Some((1_900, 100)),
        Radio::NoSim => Some((100, 100)),
    }
}

/// The Radio LED.
pub struct RadioLed {
    radio: Radio,
    lit: bool,
    next_edge: Option<u64>,
}

impl RadioLed {
    /// PB0 as an output, dark. GPIOB's clock gate must be open.
    pub fn new() -> RadioLed {
        // SAFETY: GPIOB's DIR and DEN registers, read-modify-written only here at boot.
        unsafe {
            let dir = (DIR as *const u32).read_volatile();
            write_volatile(DIR as *mut u32, dir | PIN0);
            let den = (DEN as *const u32).read_volatile();
            write_volatile(DEN as *mut u32, den | PIN0);
        }
        let mut led = RadioLed {
            radio: Radio::Off,
            lit: false,
            next_edge: None,
        };
        led.drive(false);
        led
    }

    fn drive(&mut self, on: bool) {
        self.lit = on;
        // SAFETY: PB0's masked data address; this driver owns the pin.
        unsafe { write_volatile(DATA_PIN0 as *mut u32, if on { PIN0 } else { 0 }) }
    }

    /// Shows `radio` from now on.
    pub fn set(&mut self, radio: Radio, signal: u8, now: u64) {
        crate::log!("radio: {:?} signal {}", radio, signal);
        if radio == self.radio {
            return;
        }
        self.radio = radio;
        match timing(radio) {
            None => {
                self.drive(radio == Radio::Data);
                self.next_edge = None;
            }
            Some((on, _)) => {
                self.drive(true);
                self.next_edge = Some(now + on);
            }
        }
    }

    /// Toggles the LED when an edge is due.
    pub fn poll(&mut self, now: u64) {
        if let (Some(edge), Some((on, off))) = (self.next_edge, timing(self.radio)) {
            if now >= edge {
                self.drive(!self.lit);
                self.next_edge = Some(now + if self.lit { on } else { off });
            }
        }
    }

    /// When the next edge is due.
    pub fn poll_at(&self) -> Option<u64> {
        self.next_edge
    }
}
