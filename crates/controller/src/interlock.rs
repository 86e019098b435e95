//! Safety interlocks, applied to the relay bitmap after the thermostat, the schedule and the
//! server's manual overrides, so that none of them can defeat them:
//!
//! * freeze protection: while the air is colder than the configured limit, the pump runs (water
//!   standing in pipes freezes; moving water much later), until the air is warmer than the
//!   limit plus the hysteresis. Without an air reading the protection keeps its state: a sensor
//!   fault neither starts nor stops the pump;
//! * the heater runs only with the pump: a heater without flow overheats.

use crate::relay::{HEATER, PUMP};
use tek_proto::message::config::Freeze;

/// Whether freeze protection runs the pump, given the air temperature and whether it ran so far.
pub fn freeze(settings: &Freeze, air_cc: Option<i16>, active: bool) -> bool {
    let Some(air) = air_cc else {
        return active;
    };
    let air = i32::from(air);
    let limit = i32::from(settings.limit_cc);
    if air < limit {
        true
    } else if air > limit + i32::from(settings.hysteresis_cc) {
        false
    } else {
        active
    }
}

/// The relay bitmap with the interlocks applied.
pub fn apply(mut relays: u8, freeze_active: bool) -> u8 {
    if freeze_active {
        relays |= 1 << PUMP;
    }
    if relays & (1 << PUMP) == 0 {
        relays &= !(1 << HEATER);
    }
    relays
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_rules() {
        assert_eq!(apply(0b10, false), 0, "heater without pump: off");
        assert_eq!(
            apply(0b10, true),
            0b11,
            "frost: pump on, so the heater may run"
        );
        assert_eq!(apply(0b100, true), 0b101, "other relays untouched");
        assert_eq!(apply(0b11, false), 0b11);
    }
}
