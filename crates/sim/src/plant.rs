//! The pool equipment behind each simulated controller.
//!
//! * Pump: 1.1 kW, runs whenever the controller's pump relay is on — so it follows the
//!   controller's weekly schedule (Configure → Schedules) and its freeze protection; without a
//!   schedule the controller keeps it on around the clock.
//! * Heater: 12 kW, switched by the controller's thermostat relay, and only heats while the pump
//!   runs (the flow switch every pool heater has).
//! * Water: 20 m³ (23.2 kWh per kelvin), warmed by the heater, losing heat to the air in
//!   proportion to the difference (more with the pump running: the water is stirred and sprayed).
//! * Air: 18 °C ± 6 °C over the day (warmest at 15:00) plus a per-site offset.
//! * Energy meter: integrates the electric power (pump, heater, 40 W standby).
//!
//! Every plant differs a little (seeded from the device id), so a fleet's curves are not copies.

use tek_controller::Reading;

const HEAT_CAPACITY_KWH_PER_K: f64 = 23.2;
const HEATER_KW: f64 = 12.0;
const PUMP_W: f64 = 1100.0;
const STANDBY_W: f64 = 40.0;

/// One pool's equipment.
#[derive(Debug, Clone)]
pub struct Plant {
    /// Simulated time of the state, ms since the fleet started.
    t_ms: u64,
    /// Local time of day at fleet start, ms.
    day_offset_ms: u64,
    water_c: f64,
    energy_wh: f64,
    power_w: f64,
    air_offset_c: f64,
    loss_kw_per_k: f64,
    relays: u8,
}

impl Plant {
    /// A plant whose quirks derive from `seed`; `t_ms` is the fleet's simulated time now.
    pub fn new(seed: u32, t_ms: u64) -> Plant {
        let f = |shift: u32| f64::from((seed.wrapping_mul(2_654_435_761) >> shift) & 0xFF) / 255.0;
        Plant {
            t_ms,
            day_offset_ms: 6 * 3_600_000, // the fleet starts at 06:00
            water_c: 24.0 + 3.0 * f(0),
            energy_wh: 10_000.0 + 5_000.0 * f(8),
            power_w: STANDBY_W,
            air_offset_c: 4.0 * f(16) - 2.0,
            loss_kw_per_k: 0.25 + 0.2 * f(24),
            relays: 0,
        }
    }

    /// The controller switched its relays.
    pub fn set_relays(&mut self, relays: u8) {
        self.relays = relays;
    }

    /// The relay bitmap as the controller last switched it.
    pub fn relays(&self) -> u8 {
        self.relays
    }

    /// Sets one relay.
    pub fn set_relay(&mut self, relay: u8, on: bool) {
        if relay < 8 {
            if on {
                self.relays |= 1 << relay;
            } else {
                self.relays &= !(1 << relay);
            }
        }
    }

    fn hour(&self, t_ms: u64) -> f64 {
        ((t_ms + self.day_offset_ms) % 86_400_000) as f64 / 3_600_000.0
    }

    /// Air temperature at simulated time `t_ms`.
    pub fn air_c(&self, t_ms: u64) -> f64 {
        let h = self.hour(t_ms);
        18.0 + self.air_offset_c + 6.0 * ((h - 9.0) / 24.0 * std::f64::consts::TAU).sin()
    }

    /// Whether the pump runs at `t_ms` (the relay alone decides; the time is kept for models
    /// that add a mechanical timer or a flow fault).
    pub fn pump_on(&self, _t_ms: u64) -> bool {
        self.relays & 1 != 0
    }

    /// Whether the heater heats at `t_ms`.
    pub fn heater_on(&self, t_ms: u64) -> bool {
        self.relays & 2 != 0 && self.pump_on(t_ms)
    }

    /// Integrates the physics up to simulated time `t_ms` in steps of at most a minute.
    pub fn advance(&mut self, t_ms: u64) {
        while self.t_ms < t_ms {
            let step = (t_ms - self.t_ms).min(60_000);
            let dt_h = step as f64 / 3_600_000.0;
            let pump = self.pump_on(self.t_ms);
            let heater = self.heater_on(self.t_ms);
            let air = self.air_c(self.t_ms);
            let loss = self.loss_kw_per_k * if pump { 1.5 } else { 1.0 };
            let heat_kw = if heater { HEATER_KW } else { 0.0 } - loss * (self.water_c - air);
            self.water_c += heat_kw * dt_h / HEAT_CAPACITY_KWH_PER_K;
            self.power_w = STANDBY_W
                + if pump { PUMP_W } else { 0.0 }
                + if heater { HEATER_KW * 1000.0 } else { 0.0 };
            self.energy_wh += self.power_w * dt_h;
            self.t_ms += step;
        }
    }

    /// What the controller's sensors read now.
    pub fn reading(&self) -> Reading {
        Reading {
            power_w: self.power_w as u32,
            energy_wh: self.energy_wh as u32,
            water_cc: Some((self.water_c * 100.0).round() as i16),
            air_cc: Some((self.air_c(self.t_ms) * 100.0).round() as i16),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heater_warms_and_cooling_follows_air() {
        let mut p = Plant::new(7, 0);
        p.set_relays(0b11);
        p.advance(2 * 3_600_000); // 08:00: pump and heater start
        let w0 = p.reading().water_cc.unwrap();
        let e0 = p.reading().energy_wh;
        p.advance(4 * 3_600_000); // 10:00
        let w1 = p.reading().water_cc.unwrap();
        assert!(w1 > w0 + 20, "{w0} -> {w1}");
        let used = p.reading().energy_wh - e0;
        assert!(
            (24_000..=27_000).contains(&used),
            "{used} Wh in 2 h of 13.1 kW"
        );
        assert!(p.reading().power_w > 13_000);
        // Heater relay off: the water cools towards the air.
        p.set_relay(1, false);
        p.advance(10 * 3_600_000);
        assert!(p.reading().water_cc.unwrap() < w1);
        assert_eq!(p.reading().power_w, 1140);
        // The controller's schedule stops the pump: the heater stops with it (flow switch),
        // even if its relay were on.
        p.set_relays(0b10);
        p.advance(18 * 3_600_000);
        assert!(!p.pump_on(18 * 3_600_000));
        assert!(!p.heater_on(18 * 3_600_000));
        assert_eq!(p.reading().power_w, 40);
    }

    #[test]
    fn air_has_a_daily_cycle() {
        let p = Plant::new(1, 0);
        let at = |h: u64| p.air_c((h + 24 - 6) % 24 * 3_600_000);
        assert!(at(15) > at(3) + 10.0);
    }
}
