//! The status LED (the evaluation board's user LED on PF0, active high) and its blink patterns.
//!
//! The controller chooses a [`Led`] pattern; this module turns it into edges. Pattern changes are
//! written to the console (`led: <pattern>`) so the QEMU test can see them: QEMU models the GPIO
//! pin but shows nothing.

use core::ptr::write_volatile;
use tek_controller::Led;

const GPIOF: usize = 0x4002_5000;
const PIN0: u32 = 1 << 0;
/// GPIODATA is address-masked: offset `mask << 2` touches only the pins in `mask`.
const DATA_PIN0: usize = GPIOF + ((PIN0 as usize) << 2);
const DIR: usize = GPIOF + 0x400;
const DEN: usize = GPIOF + 0x51C;

/// Half-periods of the patterns, milliseconds (`None`: steady).
fn half_period_ms(led: Led) -> Option<u64> {
    match led {
        Led::Halt => Some(100),
        Led::NoNetwork => Some(1000),
        Led::Connecting => Some(250),
        Led::Online => None,
    }
}

/// The LED.
pub struct StatusLed {
    pattern: Option<Led>,
    lit: bool,
    next_edge: Option<u64>,
}

impl StatusLed {
    /// Configures PF0 as an output, LED off. GPIOF's clock gate must be open.
    pub fn new() -> StatusLed {
        // SAFETY: GPIOF's DIR and DEN registers, read-modify-written only here at boot.
        unsafe {
            let dir = (DIR as *const u32).read_volatile();
            write_volatile(DIR as *mut u32, dir | PIN0);
            let den = (DEN as *const u32).read_volatile();
            write_volatile(DEN as *mut u32, den | PIN0);
        }
        let mut led = StatusLed {
            pattern: None,
            lit: false,
            next_edge: None,
        };
        led.drive(false);
        led
    }

    fn drive(&mut self, on: bool) {
        self.lit = on;
        // SAFETY: the masked data address of PF0 alone; this driver owns the pin.
        unsafe { write_volatile(DATA_PIN0 as *mut u32, if on { PIN0 } else { 0 }) }
    }

    /// Shows `pattern` from now on.
    pub fn set(&mut self, pattern: Led, now: u64) {
        if self.pattern == Some(pattern) {
            return;
        }
        crate::log!("led: {:?}", pattern);
        self.pattern = Some(pattern);
        self.drive(true);
        self.next_edge = half_period_ms(pattern).map(|h| now + h);
    }

    /// Toggles the LED when an edge is due.
    pub fn poll(&mut self, now: u64) {
        if let (Some(edge), Some(p)) = (self.next_edge, self.pattern) {
            if now >= edge {
                self.drive(!self.lit);
                self.next_edge = half_period_ms(p).map(|h| now + h);
            }
        }
    }

    /// When the next edge is due.
    pub fn poll_at(&self) -> Option<u64> {
        self.next_edge
    }
}
