//! Local relay control: the heater thermostat and the server's manual overrides.
//!
//! Runs on every sensor reading, with or without a server: a pool must stay heated while the
//! network is down. The heater (relay 1) switches on when the water is colder than
//! `setpoint - hysteresis / 2` and off when warmer than `setpoint + hysteresis / 2`; in between
//! it keeps its state, so it does not chatter. Without a water temperature reading the heater is
//! switched off (a heater must never run blind). The pump (relay 0) runs in automatic mode (the
//! site's timer and schedules sit downstream); other relays are off in automatic mode. A
//! [`RelayMode::On`]/[`RelayMode::Off`] command from the server overrides a relay until
//! [`RelayMode::Auto`] is sent.

use tek_proto::message::config::Thermostat as Settings;
pub use tek_proto::message::RelayMode;

/// Number of relays (bits of the relay bitmap).
pub const RELAYS: usize = 8;
/// The pump relay.
pub const PUMP: u8 = 0;
/// The heater relay.
pub const HEATER: u8 = 1;

/// Relay states and modes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relays {
    modes: [RelayMode; RELAYS],
    /// Current relay bitmap.
    state: u8,
}

impl Default for Relays {
    fn default() -> Self {
        Self::new()
    }
}

impl Relays {
    /// Every relay forced off, all bytes zero: the placeholder in a controller that has not
    /// booted (`Controller::blank`; `RelayMode::Auto` is not zero). Booting sets
    /// [`Relays::new`].
    pub(crate) const BLANK: Relays = Relays {
        modes: [RelayMode::Off; RELAYS],
        state: 0,
    };

    /// All relays automatic; state as at power-up (all off until the first evaluation).
    pub const fn new() -> Self {
        Relays {
            modes: [RelayMode::Auto; RELAYS],
            state: 0,
        }
    }

    /// The relay bitmap.
    pub fn state(&self) -> u8 {
        self.state
    }

    /// Sets a relay's mode. Returns `false` for a relay that does not exist.
    pub fn set_mode(&mut self, relay: u8, mode: RelayMode) -> bool {
        match self.modes.get_mut(usize::from(relay)) {
            Some(m) => {
                *m = mode;
                true
            }
            None => false,
        }
    }

    /// Computes the relay bitmap for a water temperature (`None` = no reading) and returns it.
    pub fn evaluate(&mut self, settings: &Settings, water_cc: Option<i16>) -> u8 {
        let mut next = 0u8;
        for (i, mode) in self.modes.iter().enumerate() {
            let bit = 1u8 << i;
            let on = match mode {
                RelayMode::On => true,
                RelayMode::Off => false,
                RelayMode::Auto => match i as u8 {
                    PUMP => true,
                    HEATER => heater_auto(settings, water_cc, self.state & bit != 0),
                    _ => false,
                },
            };
            if on {
                next |= bit;
            }
        }
        self.state = next;
        next
    }
}

fn heater_auto(s: &Settings, water_cc: Option<i16>, was_on: bool) -> bool {
    let Some(t) = water_cc else {
        return false;
    };
    let t = i32::from(t);
    let half = i32::from(s.hysteresis_cc) / 2;
    let sp = i32::from(s.setpoint_cc);
    if t < sp - half {
        true
    } else if t > sp + half {
        false
    } else {
        was_on
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hysteresis() {
        let s = Settings {
            setpoint_cc: 2700,
            hysteresis_cc: 100,
        };
        let mut r = Relays::new();
        let heater = |b: u8| b & (1 << HEATER) != 0;
        assert!(heater(r.evaluate(&s, Some(2600))), "cold: on");
        assert!(heater(r.evaluate(&s, Some(2700))), "in band: stays on");
        assert!(heater(r.evaluate(&s, Some(2750))), "at the edge: stays on");
        assert!(!heater(r.evaluate(&s, Some(2751))), "warm: off");
        assert!(!heater(r.evaluate(&s, Some(2700))), "in band: stays off");
        assert!(
            !heater(r.evaluate(&s, Some(2650))),
            "at the edge: stays off"
        );
        assert!(heater(r.evaluate(&s, Some(2649))));
        assert!(!heater(r.evaluate(&s, None)), "no sensor: off");
        assert_eq!(r.state() & 1, 1, "pump runs in auto");
    }

    #[test]
    fn overrides() {
        let s = Settings {
            setpoint_cc: 2700,
            hysteresis_cc: 100,
        };
        let mut r = Relays::new();
        assert!(r.set_mode(HEATER, RelayMode::Off));
        assert_eq!(r.evaluate(&s, Some(1000)) & 2, 0);
        assert!(r.set_mode(PUMP, RelayMode::Off));
        assert!(r.set_mode(5, RelayMode::On));
        assert_eq!(r.evaluate(&s, Some(1000)), 1 << 5);
        assert!(r.set_mode(HEATER, RelayMode::Auto));
        assert_eq!(r.evaluate(&s, Some(1000)), (1 << 5) | 2);
        assert!(!r.set_mode(8, RelayMode::On));
    }
}
