//! Sensors. In QEMU there are no meters or probes, so readings come from a deterministic
//! simulation of a pool, driven by the relay outputs the controller sets — the thermostat really
//! closes the loop, and the path from sample to log record to datagram is the real one.
//!
//! The model, all integer arithmetic, a function of uptime and relay history only:
//! * air temperature: 22.00 °C ± 4.00 °C over a 24 h sine-like triangle wave, lowest at uptime 0;
//! * water temperature: starts at 25.00 °C; with the heater on it rises 0.60 °C per minute, with
//!   it off it falls towards the air temperature by 1/64 of the difference per minute;
//! * power: 120 W standby + 750 W while the pump relay is on + 3000 W while the heater is on;
//! * energy: the integral of power, in Wh.
//!
//! A real board replaces [`PoolModel`] with ADC/pulse-counter drivers behind the same
//! [`Sensors`] trait.

use tek_controller::Reading;

/// A source of sensor readings.
pub trait Sensors {
    /// Samples every sensor at uptime `now_ms`, with the relays as they are now.
    fn sample(&mut self, now_ms: u64, relays: u8) -> Reading;
}

/// The simulated pool.
pub struct PoolModel {
    last_ms: u64,
    /// Water temperature in 0.0001 °C, for smooth integration.
    water_e4: i64,
    /// Energy in watt-milliseconds... kept as W·ms to integrate exactly.
    energy_wms: u64,
}

const DAY_MS: u64 = 24 * 3600 * 1000;

fn air_cc(now_ms: u64) -> i32 {
    // Triangle wave: 18.00 °C at t = 0 and every 24 h, 26.00 °C at 12 h.
    let phase = now_ms % DAY_MS;
    let half = DAY_MS / 2;
    let up = if phase < half { phase } else { DAY_MS - phase };
    1800 + (800 * up / half) as i32
}

fn power_w(relays: u8) -> u32 {
    let mut p = 120;
    if relays & 1 != 0 {
        p += 750;
    }
    if relays & 2 != 0 {
        p += 3000;
    }
    p
}

impl PoolModel {
    /// The pool at power-up.
    pub const fn new() -> PoolModel {
        PoolModel {
            last_ms: 0,
            water_e4: 25_0000,
            energy_wms: 0,
        }
    }
}

impl Sensors for PoolModel {
    fn sample(&mut self, now_ms: u64, relays: u8) -> Reading {
        let dt = now_ms.saturating_sub(self.last_ms);
        self.last_ms = now_ms;
        let air_e4 = i64::from(air_cc(now_ms)) * 100;
        if relays & 2 != 0 {
            // 0.60 °C per minute = 6000 e-4 °C per 60 000 ms.
            self.water_e4 += dt as i64 / 10;
        } else {
            self.water_e4 -= (self.water_e4 - air_e4) * dt as i64 / (64 * 60_000);
        }
        self.water_e4 = self.water_e4.clamp(0, 45_0000);
        self.energy_wms += u64::from(power_w(relays)) * dt;
        Reading {
            power_w: power_w(relays),
            energy_wh: (self.energy_wms / 3_600_000) as u32,
            water_cc: Some((self.water_e4 / 100) as i16),
            air_cc: Some(air_cc(now_ms) as i16),
        }
    }
}
