//! Local relay control: the heater thermostat, the schedule, the server's manual overrides and
//! the safety interlocks.
//!
//! Runs on every sensor reading, with or without a server: a pool must stay heated while the
//! network is down. The heater (relay 1) switches on when the water is colder than
//! `setpoint - hysteresis / 2` and off when warmer than `setpoint + hysteresis / 2`; in between
//! it keeps its state, so it does not chatter. Without a water temperature reading the heater is
//! switched off (a heater must never run blind). The setpoint is the occupied or the unoccupied
//! one, as the schedule says. The pump (relay 0) runs in automatic mode when the schedule asks
//! for it (always, without a schedule); other relays are off in automatic mode. A
//! [`RelayMode::On`]/[`RelayMode::Off`] command from the server overrides a relay until
//! [`RelayMode::Auto`] is sent.
//!
//! Then the interlocks, which neither the schedule nor a manual override can defeat
//! ([`interlock`](crate::interlock)): freeze protection runs the pump; the heater is off
//! whenever the pump is.

use crate::interlock;
use crate::relay::{HEATER, PUMP, RELAYS};
use tek_proto::message::config::{Freeze, Thermostat as Settings};
pub use tek_proto::message::RelayMode;

/// Relay states and modes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relays {
    modes: [RelayMode; RELAYS],
    /// Current relay bitmap.
    state: u8,
    /// Freeze protection is running the pump (its hysteresis needs the previous state).
    freeze: bool,
}

/// What the relays are evaluated from.
#[derive(Debug, Clone, Copy)]
pub struct Inputs {
    /// Thermostat settings, with the setpoint the schedule selects (occupied or unoccupied).
    pub thermostat: Settings,
    /// Water temperature, 0.01 °C (`None`: no fresh reading).
    pub water_cc: Option<i16>,
    /// Air temperature, 0.01 °C (`None`: no fresh reading).
    pub air_cc: Option<i16>,
    /// The schedule asks for the pump.
    pub pump_scheduled: bool,
    /// Freeze protection settings.
    pub freeze: Freeze,
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
        freeze: false,
    };

    /// All relays automatic; state as at power-up (all off until the first evaluation).
    pub const fn new() -> Self {
        Relays {
            modes: [RelayMode::Auto; RELAYS],
            state: 0,
            freeze: false,
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

    /// Whether freeze protection is running the pump.
    pub fn freeze_active(&self) -> bool {
        self.freeze
    }

    /// Computes the relay bitmap and returns it.
    pub fn evaluate(&mut self, i: &Inputs) -> u8 {
        let mut next = 0u8;
        for (n, mode) in self.modes.iter().enumerate() {
            let bit = 1u8 << n;
            let on = match mode {
                RelayMode::On => true,
                RelayMode::Off => false,
                RelayMode::Auto => match n as u8 {
                    PUMP => i.pump_scheduled,
                    HEATER => heater_auto(&i.thermostat, i.water_cc, self.state & bit != 0),
                    _ => false,
                },
            };
            if on {
                next |= bit;
            }
        }
        self.freeze = interlock::freeze(&i.freeze, i.air_cc, self.freeze);
        next = interlock::apply(next, self.freeze);
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
    use tek_proto::message::config::DEFAULT_FREEZE;

    fn inputs(s: Settings, water: Option<i16>) -> Inputs {
        Inputs {
            thermostat: s,
            water_cc: water,
            air_cc: Some(1500),
            pump_scheduled: true,
            freeze: DEFAULT_FREEZE,
        }
    }

    #[test]
    fn hysteresis() {
        let s = Settings {
            setpoint_cc: 2700,
            hysteresis_cc: 100,
        };
        let mut r = Relays::new();
        let mut ev = |w| r.evaluate(&inputs(s, w));
        let heater = |b: u8| b & (1 << HEATER) != 0;
        assert!(heater(ev(Some(2600))), "cold: on");
        assert!(heater(ev(Some(2700))), "in band: stays on");
        assert!(heater(ev(Some(2750))), "at the edge: stays on");
        assert!(!heater(ev(Some(2751))), "warm: off");
        assert!(!heater(ev(Some(2700))), "in band: stays off");
        assert!(!heater(ev(Some(2650))), "at the edge: stays off");
        assert!(heater(ev(Some(2649))));
        assert!(!heater(ev(None)), "no sensor: off");
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
        assert_eq!(r.evaluate(&inputs(s, Some(1000))) & 2, 0);
        assert!(r.set_mode(5, RelayMode::On));
        assert!(r.set_mode(HEATER, RelayMode::Auto));
        assert_eq!(r.evaluate(&inputs(s, Some(1000))), (1 << 5) | 2 | 1);
        assert!(!r.set_mode(8, RelayMode::On));
    }

    #[test]
    fn schedule_switches_the_pump_in_auto_only() {
        let s = Settings {
            setpoint_cc: 2700,
            hysteresis_cc: 100,
        };
        let mut r = Relays::new();
        let mut i = inputs(s, Some(2800));
        i.pump_scheduled = false;
        assert_eq!(r.evaluate(&i) & 1, 0, "schedule: pump off");
        i.pump_scheduled = true;
        assert_eq!(r.evaluate(&i) & 1, 1, "schedule: pump on");
        r.set_mode(PUMP, RelayMode::Off);
        assert_eq!(r.evaluate(&i) & 1, 0, "manual off wins over the schedule");
        r.set_mode(PUMP, RelayMode::On);
        i.pump_scheduled = false;
        assert_eq!(r.evaluate(&i) & 1, 1, "manual on wins over the schedule");
    }

    /// Interlock: the heater never runs without the pump — not in automatic mode when the
    /// schedule stops the pump, not when the heater is forced on by hand.
    #[test]
    fn heater_only_with_the_pump() {
        let s = Settings {
            setpoint_cc: 2700,
            hysteresis_cc: 100,
        };
        let mut r = Relays::new();
        let mut i = inputs(s, Some(1000));
        assert_eq!(r.evaluate(&i) & 3, 3, "cold water, pump on: heating");
        i.pump_scheduled = false;
        assert_eq!(
            r.evaluate(&i) & 3,
            0,
            "pump stopped by the schedule: heater off"
        );
        r.set_mode(HEATER, RelayMode::On);
        assert_eq!(
            r.evaluate(&i) & 3,
            0,
            "heater forced on, pump off: still off"
        );
        r.set_mode(PUMP, RelayMode::Off);
        i.pump_scheduled = true;
        assert_eq!(r.evaluate(&i) & 3, 0, "pump forced off: heater off");
        r.set_mode(PUMP, RelayMode::On);
        assert_eq!(r.evaluate(&i) & 3, 3);
    }

    /// Interlock: freeze protection runs the pump below the limit, with hysteresis, whatever the
    /// schedule or a manual override says.
    #[test]
    fn freeze_protection_runs_the_pump() {
        let s = Settings {
            setpoint_cc: 2700,
            hysteresis_cc: 100,
        };
        let mut r = Relays::new();
        let mut i = inputs(s, Some(2800));
        i.pump_scheduled = false;
        i.freeze = Freeze {
            limit_cc: 200,
            hysteresis_cc: 150,
        };
        let mut pump = |r: &mut Relays, air| {
            i.air_cc = air;
            r.evaluate(&i) & 1 == 1
        };
        assert!(!pump(&mut r, Some(200)), "at the limit: not yet");
        assert!(pump(&mut r, Some(199)), "below: pump on");
        assert!(r.freeze_active());
        assert!(
            pump(&mut r, Some(300)),
            "warming, inside the hysteresis: stays on"
        );
        assert!(pump(&mut r, None), "no air reading: keeps its state");
        assert!(pump(&mut r, Some(350)), "at limit + hysteresis: stays on");
        assert!(!pump(&mut r, Some(351)), "above: released to the schedule");
        assert!(!pump(&mut r, None));
        assert!(
            !pump(&mut r, Some(250)),
            "inside the band from above: stays off"
        );
        r.set_mode(PUMP, RelayMode::Off);
        assert!(pump(&mut r, Some(-500)), "frost overrides a manual off");
    }
}
