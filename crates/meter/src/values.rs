//! What each slave measures: a plant model by default, a script where one is given, a value set
//! on the control socket above both.
//!
//! Per quantity, the first that has a value wins: a `set` override, then the script's latest
//! entry at or before `now`, then the plant model. The plant model is deterministic in time, in
//! one of two [`Profile`]s:
//!
//! * [`Profile::Bench`] (`tek meter`): phase powers swing around a base load within minutes (a
//!   pump and a heater cycling), and the temperature drifts from 24 °C towards 27 °C — something
//!   moves on every read of a bench test;
//! * [`Profile::Day`] (the simulated controllers of `tek sim --meters`): a site over the day,
//!   with quirks seeded per site and slave — the three-phase meter sees a base load, daytime
//!   loads that peak in the afternoon and a cycling heater; the single-phase meter a circulation
//!   pump that runs 07:00–21:00 and idles at a few watts at night; the temperature transmitter a
//!   plant room that is warmest in the afternoon.
//!
//! In both, voltages and frequency wobble a little, currents follow power ÷ voltage, the total
//! power is the sum of the phases. The energy counters integrate whatever total power the meter
//! shows (scripted or set power included) in steps of at most a second: positive power into
//! `import_kwh`, negative into `export_kwh`, `total_kwh` = both — monotonic unless a script or
//! `set` writes them directly.
//!
//! # Script format (`--script FILE`)
//!
//! One entry per line: `SECONDS SLAVE QUANTITY VALUE`, whitespace-separated; `#` starts a
//! comment. SECONDS is the offset from the meter's start (decimals allowed); from then on the
//! quantity shows VALUE, until the slave's next entry for it. Entries need not be sorted.
//! QUANTITY is one of the slave's model's quantities (see `tek meter --help`). Example:
//!
//! ```text
//! # t    slave quantity    value
//! 0      1     power_l1    1500
//! 0      3     temperature 21.7
//! 30     1     power_l1    -250.5
//! ```

use std::collections::BTreeMap;
use std::f64::consts::TAU;
use std::time::Duration;

use crate::device::Model;

/// One scripted value.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Offset from the start.
    pub at: Duration,
    /// Slave address.
    pub slave: u8,
    /// Quantity name.
    pub quantity: String,
    /// Value from `at` on.
    pub value: f64,
}

/// Parses a script; `models` are the configured slaves (an entry for another slave or a quantity
/// its model does not have is an error, with the line number).
pub fn parse_script(text: &str, models: &BTreeMap<u8, Model>) -> Result<Vec<Entry>, String> {
    let mut entries = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let at_line = |e: String| format!("line {}: {e}", n + 1);
        let fields: Vec<&str> = line.split_whitespace().collect();
        let &[t, slave, quantity, value] = fields.as_slice() else {
            return Err(at_line("expected SECONDS SLAVE QUANTITY VALUE".into()));
        };
        let secs: f64 = t
            .parse()
            .ok()
            .filter(|s: &f64| s.is_finite() && (0.0..=1e9).contains(s))
            .ok_or_else(|| at_line(format!("bad time offset {t:?}")))?;
        let slave: u8 = slave
            .parse()
            .map_err(|_| at_line(format!("bad slave {slave:?}")))?;
        let model = models
            .get(&slave)
            .ok_or_else(|| at_line(format!("slave {slave} is not configured")))?;
        let value = check_value(*model, quantity, value).map_err(at_line)?;
        entries.push(Entry {
            at: Duration::from_secs_f64(secs),
            slave,
            quantity: quantity.to_string(),
            value,
        });
    }
    Ok(entries)
}

/// Parses `value` for `quantity` of `model`: the quantity must exist and the value fit its
/// register.
pub fn check_value(model: Model, quantity: &str, value: &str) -> Result<f64, String> {
    let reg = model.register_of(quantity).ok_or_else(|| {
        let known: Vec<_> = model.quantities().collect();
        format!(
            "{model} has no quantity {quantity:?} (it has {})",
            known.join(", ")
        )
    })?;
    let v: f64 = value.parse().map_err(|_| format!("bad value {value:?}"))?;
    reg.encoding.check(v)?;
    Ok(v)
}

/// Which plant model gives the values nothing else sets (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Profile {
    /// `tek meter`'s bench curves, moving within minutes.
    Bench,
    /// A site over the day; time 0 is `start_hour` o'clock (0.0..24.0), `seed` makes one site's
    /// curves and counters differ from another's.
    Day {
        /// Per-site quirks (base loads, offsets, counter readings).
        seed: u32,
        /// Hour of the day at time 0.
        start_hour: f64,
    },
}

/// A number in 0.0..=1.0 from `seed`, different for each `salt` (Knuth's multiplicative hash).
fn quirk(seed: u32, salt: u32) -> f64 {
    let h = (seed ^ salt.wrapping_mul(0x9E37_79B9)).wrapping_mul(2_654_435_761);
    f64::from(h >> 16) / f64::from(u16::MAX)
}

/// Longest step of the energy integration: short enough that a reader every 10 s or a caller
/// that advances rarely still gets counters consistent with the power curve.
const INTEGRATION_STEP: Duration = Duration::from_secs(1);

/// The values of one slave.
#[derive(Debug)]
pub struct Values {
    model: Model,
    profile: Profile,
    /// Shifts this slave's plant curves, so two meters do not show the same numbers.
    phase: f64,
    /// Sorted by time; this slave's entries only.
    script: Vec<Entry>,
    overrides: BTreeMap<String, f64>,
    import_kwh: f64,
    export_kwh: f64,
    integrated_to: Duration,
}

impl Values {
    /// Values for slave `address` of `model`, with its script entries, on the bench profile.
    pub fn new(model: Model, address: u8, script: &[Entry]) -> Values {
        Values::with_profile(model, address, script, Profile::Bench)
    }

    /// Values for slave `address` of `model`, with its script entries, on `profile`.
    pub fn with_profile(model: Model, address: u8, script: &[Entry], profile: Profile) -> Values {
        let (phase, import_kwh) = match profile {
            // A meter that has been in service for a while.
            Profile::Bench => (f64::from(address) * 0.7, 1000.0 + f64::from(address)),
            Profile::Day { seed, .. } => {
                let salt = u32::from(address);
                (
                    f64::from(address) * 0.7 + std::f64::consts::TAU * quirk(seed, salt),
                    (1000.0 + 9000.0 * quirk(seed, salt + 100)).round(),
                )
            }
        };
        let mut mine: Vec<Entry> = script
            .iter()
            .filter(|e| e.slave == address)
            .cloned()
            .collect();
        mine.sort_by_key(|e| e.at);
        Values {
            model,
            profile,
            phase,
            script: mine,
            overrides: BTreeMap::new(),
            import_kwh,
            export_kwh: 10.0,
            integrated_to: Duration::ZERO,
        }
    }

    /// Sets an override (`None`: back to script and plant). The value was checked.
    pub fn set(&mut self, quantity: &str, value: Option<f64>) {
        match value {
            Some(v) => self.overrides.insert(quantity.to_string(), v),
            None => self.overrides.remove(quantity),
        };
    }

    /// Brings the energy counters to `now` (rectangle rule in steps of at most
    /// `INTEGRATION_STEP` (1 s), each at the power of its end; the caller calls this before every
    /// read).
    pub fn advance(&mut self, now: Duration) {
        if self.model == Model::Tb260 {
            return;
        }
        while self.integrated_to < now {
            let to = (self.integrated_to + INTEGRATION_STEP).min(now);
            let hours = (to - self.integrated_to).as_secs_f64() / 3600.0;
            let watts = self.value("power", to);
            if watts.is_finite() {
                if watts >= 0.0 {
                    self.import_kwh += watts * hours / 1000.0;
                } else {
                    self.export_kwh += -watts * hours / 1000.0;
                }
            }
            self.integrated_to = to;
        }
    }

    /// The value of `quantity` at `now`.
    pub fn value(&self, quantity: &str, now: Duration) -> f64 {
        if let Some(&v) = self.overrides.get(quantity) {
            return v;
        }
        if let Some(e) = self
            .script
            .iter()
            .rev()
            .find(|e| e.quantity == quantity && e.at <= now)
        {
            return e.value;
        }
        self.plant(quantity, now)
    }

    /// Phase `n`'s power (the single-phase meter: its only phase, `n` = 0) at `t` seconds.
    fn phase_power(&self, n: f64, t: f64) -> f64 {
        let wave = |period: f64, shift: f64| (TAU * t / period + self.phase + shift).sin();
        match (self.profile, self.model) {
            // A pump on each phase plus a heater cycling every 10 minutes.
            (Profile::Bench, Model::Sdm630) => {
                800.0 + 200.0 * n + 600.0 * wave(600.0 + 240.0 * n, n)
            }
            // A single circulation pump.
            (Profile::Bench, _) => 450.0 + 150.0 * wave(300.0, 0.0),
            (Profile::Day { seed, start_hour }, Model::Sdm630) => {
                let h = hour_of_day(t, start_hour);
                let salt = n as u32;
                let base = 150.0 + 250.0 * quirk(seed, salt);
                // Daytime loads (filtration, lights, a heat pump): 07:00-21:00, most at 14:00.
                let day = (1200.0 + 400.0 * n) * (0.7 + 0.6 * quirk(seed, salt + 10));
                let daytime = ((h - 7.0) / 14.0 * std::f64::consts::PI).sin().max(0.0);
                // A heater cycling, on phase 1 only, period 20-30 minutes.
                let heater = if n == 0.0 {
                    let period = 1200.0 + 600.0 * quirk(seed, 20);
                    if wave(period, 0.0) > 0.3 {
                        2000.0
                    } else {
                        0.0
                    }
                } else {
                    0.0
                };
                base + day * daytime + heater + 30.0 * (1.0 + wave(97.0, n))
            }
            (Profile::Day { seed, start_hour }, _) => {
                // A circulation pump: on 07:00-21:00 (shifted up to half an hour per site).
                let h = hour_of_day(t, start_hour) - 0.5 * quirk(seed, 30);
                if (7.0..21.0).contains(&h) {
                    380.0 + 80.0 * quirk(seed, 31) + 25.0 * wave(300.0, 0.0)
                } else {
                    3.0
                }
            }
        }
    }

    /// The temperature at `t` seconds.
    fn temperature(&self, t: f64) -> f64 {
        let wave = |period: f64| (TAU * t / period + self.phase).sin();
        match self.profile {
            Profile::Bench => 24.0 + 3.0 * (1.0 - (-t / 1800.0).exp()) + 0.2 * wave(300.0),
            Profile::Day { seed, start_hour } => {
                // A plant room: warmest at 15:00, 4 K either side, a little noise.
                let h = hour_of_day(t, start_hour);
                19.0 + 3.0 * quirk(seed, 40) - 1.5
                    + 4.0 * ((h - 9.0) / 24.0 * TAU).sin()
                    + 0.3 * wave(600.0)
            }
        }
    }

    fn plant(&self, quantity: &str, now: Duration) -> f64 {
        let t = now.as_secs_f64();
        let wave = |period: f64, shift: f64| (TAU * t / period + self.phase + shift).sin();
        let phase_power = |n: f64| self.phase_power(n, t);
        let voltage = |n: f64| 230.0 + 2.0 * wave(47.0, n);
        let current = |phase: &str, volts: &str| {
            let v = self.value(volts, now);
            if v.abs() < 1.0 {
                0.0
            } else {
                (self.value(phase, now) / v).abs()
            }
        };
        match quantity {
            "voltage_l1" | "voltage" => voltage(0.0),
            "voltage_l2" => voltage(1.0),
            "voltage_l3" => voltage(2.0),
            "power_l1" => phase_power(0.0),
            "power_l2" => phase_power(1.0),
            "power_l3" => phase_power(2.0),
            "power" if self.model == Model::Sdm630 => ["power_l1", "power_l2", "power_l3"]
                .iter()
                .map(|p| self.value(p, now))
                .sum(),
            "power" => phase_power(0.0),
            "current_l1" => current("power_l1", "voltage_l1"),
            "current_l2" => current("power_l2", "voltage_l2"),
            "current_l3" => current("power_l3", "voltage_l3"),
            "current" => current("power", "voltage"),
            "frequency" => 50.0 + 0.03 * wave(53.0, 0.0),
            "import_kwh" => self.import_kwh,
            "export_kwh" => self.export_kwh,
            "total_kwh" => self.value("import_kwh", now) + self.value("export_kwh", now),
            "temperature" => self.temperature(t),
            _ => f64::NAN,
        }
    }
}

/// The hour of the day (0.0..24.0) `t` seconds after `start_hour` o'clock.
fn hour_of_day(t: f64, start_hour: f64) -> f64 {
    (start_hour + t / 3600.0).rem_euclid(24.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn models() -> BTreeMap<u8, Model> {
        [(1, Model::Sdm630), (2, Model::Sdm120), (3, Model::Tb260)].into()
    }

    #[test]
    fn script_parses_and_rejects() {
        let text =
            "# comment\n0 1 power_l1 1500\n\n 2.5 3 temperature -3.2 # cold\n1 1 power_l1 -20\n";
        let e = parse_script(text, &models()).unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(e[1].at, Duration::from_millis(2500));
        assert_eq!(e[1].value, -3.2);
        for (bad, why) in [
            ("0 4 power 1", "line 1: slave 4 is not configured"),
            (
                "0 2 power_l1 1",
                "line 1: sdm120 has no quantity \"power_l1\"",
            ),
            ("x 1 power 1", "line 1: bad time offset"),
            ("-1 1 power 1", "line 1: bad time offset"),
            ("0 1 power", "line 1: expected"),
            ("0 3 temperature 4000", "line 1: 4000 does not fit"),
            ("0 3 temperature nan", "line 1: NaN does not fit"),
            ("0 1 power abc", "line 1: bad value"),
        ] {
            let err = parse_script(bad, &models()).unwrap_err();
            assert!(err.starts_with(why), "{bad}: {err}");
        }
    }

    #[test]
    fn override_beats_script_beats_plant() {
        let script = parse_script("5 1 power_l1 1500\n10 1 power_l1 -20", &models()).unwrap();
        let mut v = Values::new(Model::Sdm630, 1, &script);
        let plant = v.value("power_l1", S);
        assert!(plant > 0.0 && plant != 1500.0);
        assert_eq!(v.value("power_l1", 5 * S), 1500.0);
        assert_eq!(v.value("power_l1", 9 * S), 1500.0);
        assert_eq!(v.value("power_l1", 10 * S), -20.0);
        v.set("power_l1", Some(7.5));
        assert_eq!(v.value("power_l1", 10 * S), 7.5);
        v.set("power_l1", None);
        assert_eq!(v.value("power_l1", 10 * S), -20.0);
        // The total follows the phases; the current follows power ÷ voltage.
        v.set("power_l2", Some(100.0));
        v.set("power_l3", Some(200.0));
        assert_eq!(v.value("power", 10 * S), 280.0);
        v.set("voltage_l2", Some(250.0));
        assert_eq!(v.value("current_l2", 10 * S), 0.4);
    }

    #[test]
    fn energy_integrates_power_and_never_falls() {
        let mut v = Values::new(Model::Sdm120, 2, &[]);
        v.set("power", Some(3600.0));
        let start = v.value("import_kwh", Duration::ZERO);
        // One hour at 3.6 kW in one-second steps: 3.6 kWh.
        for s in 1..=3600 {
            v.advance(s * S);
        }
        let after = v.value("import_kwh", 3600 * S);
        assert!((after - start - 3.6).abs() < 1e-9, "{after} - {start}");
        v.set("power", Some(-1800.0));
        let export = v.value("export_kwh", 3600 * S);
        v.advance(7200 * S);
        assert!((v.value("export_kwh", 7200 * S) - export - 1.8).abs() < 1e-9);
        assert_eq!(v.value("import_kwh", 7200 * S), after);
        // The plant's own power: the counter only grows.
        let mut v = Values::new(Model::Sdm630, 1, &[]);
        let mut last = v.value("total_kwh", Duration::ZERO);
        for s in 1..=1200 {
            v.advance(s * S);
            let now = v.value("total_kwh", s * S);
            assert!(now >= last);
            last = now;
        }
        // Time going backwards (never from the caller) changes nothing.
        v.advance(S);
        assert_eq!(v.value("total_kwh", 1200 * S), last);
    }

    #[test]
    fn plant_moves() {
        let v = Values::new(Model::Tb260, 3, &[]);
        let t0 = v.value("temperature", Duration::ZERO);
        let t1 = v.value("temperature", 3600 * S);
        assert!((23.0..25.0).contains(&t0) && t1 > t0 + 1.5, "{t0} {t1}");
        let m = Values::new(Model::Sdm630, 1, &[]);
        let p: Vec<f64> = (0..10).map(|i| m.value("power", i * 60 * S)).collect();
        assert!(p.iter().all(|w| *w > 0.0));
        assert!(p.windows(2).any(|w| (w[0] - w[1]).abs() > 100.0));
        let f = m.value("frequency", 7 * S);
        assert!((49.9..50.1).contains(&f));
    }

    fn day(seed: u32) -> Profile {
        Profile::Day {
            seed,
            start_hour: 6.0,
        }
    }

    const H: Duration = Duration::from_secs(3600);

    #[test]
    fn day_profile_is_seeded_and_follows_the_hour() {
        // Same seed, same numbers; another seed, other numbers.
        let a = Values::with_profile(Model::Sdm630, 1, &[], day(7));
        let b = Values::with_profile(Model::Sdm630, 1, &[], day(7));
        let c = Values::with_profile(Model::Sdm630, 1, &[], day(8));
        for t in [0, 1234, 40_000] {
            let at = Duration::from_secs(t);
            assert_eq!(a.value("power", at), b.value("power", at));
            assert_eq!(a.value("import_kwh", at), b.value("import_kwh", at));
        }
        assert_ne!(a.value("power", H), c.value("power", H));
        assert_ne!(
            a.value("import_kwh", Duration::ZERO),
            c.value("import_kwh", Duration::ZERO)
        );
        // Time 0 is 06:00: 14:00 is 8 h later, 02:00 20 h later. The site draws more by day.
        let mean = |v: &Values, from: Duration| {
            (0..60)
                .map(|m| v.value("power", from + Duration::from_secs(60 * m)))
                .sum::<f64>()
                / 60.0
        };
        let (afternoon, night) = (mean(&a, 8 * H), mean(&a, 20 * H));
        assert!(afternoon > night + 1000.0, "{afternoon} W vs {night} W");
        assert!(night > 0.0);
        // The circulation pump: running in the afternoon, idle at night.
        let pump = Values::with_profile(Model::Sdm120, 3, &[], day(7));
        assert!((300.0..600.0).contains(&pump.value("power", 8 * H)));
        assert_eq!(pump.value("power", 20 * H), 3.0);
        // The plant room: warmer at 15:00 than at 03:00, within a plant room's range.
        let room = Values::with_profile(Model::Tb260, 2, &[], day(7));
        let (warm, cold) = (
            room.value("temperature", 9 * H),
            room.value("temperature", 21 * H),
        );
        assert!(warm > cold + 5.0, "{warm} vs {cold}");
        assert!((10.0..30.0).contains(&cold) && (10.0..30.0).contains(&warm));
    }

    #[test]
    fn day_counters_grow_with_the_power() {
        // Advanced every 10 s (a controller's sample period) over a whole day: the import
        // counter only grows, and by the integral of the power shown (sampled every second).
        let mut v = Values::with_profile(Model::Sdm630, 1, &[], day(3));
        let start = v.value("import_kwh", Duration::ZERO);
        let (mut last, mut wh) = (start, 0.0);
        for s in 1..=86_400u64 {
            let at = Duration::from_secs(s);
            wh += v.value("power", at) / 3600.0;
            if s % 10 == 0 {
                v.advance(at);
                let now = v.value("import_kwh", at);
                assert!(now >= last);
                last = now;
            }
        }
        let counted = (last - start) * 1000.0;
        assert!((counted - wh).abs() < 1e-6 * wh, "{counted} Wh vs {wh} Wh");
        assert!((20_000.0..120_000.0).contains(&wh), "{wh} Wh a day");
        assert_eq!(v.value("export_kwh", 24 * H), 10.0);
        // A caller that advances rarely gets the same counter (steps of at most a second).
        let mut rare = Values::with_profile(Model::Sdm630, 1, &[], day(3));
        rare.advance(24 * H);
        assert!((rare.value("import_kwh", 24 * H) - last).abs() < 1e-9);
    }
}
