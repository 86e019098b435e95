//! The relay outputs (0 pump, 1 heater, 2.. auxiliary).
//!
//! The evaluation board has no relays and QEMU models no load, so the outputs are a bitmap that
//! the simulated pool ([`crate::sensors`]) reacts to, and every switch is written to the console
//! (`relay: heater on`). On a controller board each bit drives a GPIO pin through a relay driver.

/// The relay outputs.
pub struct Relays {
    bits: u8,
}

const NAMES: [&str; 2] = ["pump", "heater"];

impl Relays {
    /// All relays off.
    pub const fn new() -> Relays {
        Relays { bits: 0 }
    }

    /// Switches relay `relay` (0..=7; higher numbers are ignored).
    pub fn set(&mut self, relay: u8, on: bool) {
        if relay > 7 {
            return;
        }
        let mask = 1u8 << relay;
        let bits = if on {
            self.bits | mask
        } else {
            self.bits & !mask
        };
        if bits != self.bits {
            self.bits = bits;
            match NAMES.get(usize::from(relay)) {
                Some(name) => crate::log!("relay: {} {}", name, if on { "on" } else { "off" }),
                None => crate::log!("relay: aux {} {}", relay, if on { "on" } else { "off" }),
            }
        }
    }

    /// The bitmap.
    pub fn bits(&self) -> u8 {
        self.bits
    }
}
