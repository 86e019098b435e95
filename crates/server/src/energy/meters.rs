//! Which channels of a device's channel map are energy meters, which one is the device's total,
//! and the site's breakdown by meter (issue 18 point 4), modelled on Home Assistant's energy
//! dashboard: the **total** ("grid consumption") is what the site pays for, the **sub-meters**
//! ("individual devices") are parts of it, and **untracked** is the total minus their sum. Pure
//! functions over a registry entry and over [`Intervals`]; no I/O.
//!
//! ## Meters of a map ([`plan`])
//! * A channel is read as energy only in a unit that converts exactly: an energy channel in Wh
//!   (`× 10^exponent`: kWh is Wh with exponent 3, MWh exponent 6), a power channel in W. Any
//!   other unit is refused with a note naming the channel, never guessed.
//! * One **instrument** is measured once. An instrument is one Modbus slave on one bus, or the
//!   board's inputs; every computed channel is its own. Its meter is its energy-role channel,
//!   else its first energy channel (a counter: its steps are the energy, exactly as the pool
//!   meter's), else its power-role channel, else its first power channel (its energy the
//!   integral of its mean, as [`super::device_intervals`] does for a pool controller without a
//!   counter). So a power channel is a meter only where no energy channel of the same
//!   instrument measures the same flow, and a meter's export and total registers (the built-in
//!   Eastron templates log import, export and total) are not added to its import.
//! * The device's **total** — what adds into the site's energy, demand and cost, as a pool
//!   controller's meter does — is the meter of the instrument of the energy-role channel, else
//!   of the power-role channel. Its demand is the power-role channel's mean when that is a
//!   power channel in W (as the pool controller's demand is its power channel's). A map with
//!   neither role adds nothing to the site's total; its meters are still shown.
//!
//! ## The breakdown ([`breakdown`])
//! The site's parts: a device with a total and other meters contributes those other meters
//! (its sub-meters); a device whose total is its only meter, and every pool controller,
//! contributes that meter (the whole device is one part). A device without a total contributes
//! all its meters, which are then not inside the total (the page says so). **Untracked** is
//! the total minus the parts, never shown negative: when the parts exceed the total the excess
//! is reported instead.

use super::tariff::Tariff;
use super::zone::{By, Period};
use super::{energy_cost_only, summarize, Figures, Intervals};
use crate::storage::channels::{ChannelKind, DeviceChannels};
use jiff::tz::TimeZone;
use tek_proto::channel::map::{ChannelMap, Source, Unit};
use tek_proto::channel::roles::Roles;

/// How a meter's readings become energy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// An energy counter: the energy is its steps.
    Counter,
    /// A power channel: the energy is the integral of its mean.
    Power,
}

/// One meter of a map.
#[derive(Debug, Clone, PartialEq)]
pub struct MeterChannel {
    /// Index of the channel in the map.
    pub index: u8,
    /// The channel's name.
    pub name: String,
    /// How it is read.
    pub reading: Reading,
    /// Wh (a counter) or W (power) per logged unit.
    pub factor: f64,
}

/// The meters of a device's map, its total, and what was refused.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// The meters, one per instrument, in channel order.
    pub meters: Vec<MeterChannel>,
    /// Which of [`Plan::meters`] is the device's total (`None`: it adds nothing to the site's).
    pub total: Option<usize>,
    /// The power channel whose mean is the total's demand, and its W per logged unit.
    pub demand: Option<(u8, f64)>,
    /// Channels that could not be read as energy, and why (shown on the site page).
    pub notes: Vec<String>,
}

impl Plan {
    /// The meters that are parts of the site in the breakdown (see the module documentation),
    /// by index into [`Plan::meters`].
    pub fn parts(&self) -> Vec<usize> {
        match self.total {
            Some(t) if self.meters.len() > 1 => {
                (0..self.meters.len()).filter(|&i| i != t).collect()
            }
            _ => (0..self.meters.len()).collect(),
        }
    }
}

/// The instrument a channel reads (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Instrument {
    Board,
    Modbus { bus: u8, slave: u8 },
    Own(u8),
}

/// A channel read as energy or power: index, name, kind, factor, instrument.
type Usable<'a> = (u8, &'a str, ChannelKind, f64, Instrument);

/// The factor turning one logged unit of a channel of `kind` into Wh (energy) or W (power);
/// `Err` with the reason for a unit that does not convert, `Ok(None)` for another kind.
pub fn factor(kind: ChannelKind, unit: Unit, exponent: i8) -> Result<Option<f64>, String> {
    let want = match kind {
        ChannelKind::Energy => Unit::WattHour,
        ChannelKind::Power => Unit::Watt,
        _ => return Ok(None),
    };
    if unit == want {
        Ok(Some(10f64.powi(i32::from(exponent))))
    } else {
        let symbol = |u: Unit| crate::service::channel_map::unit_symbol(u.code()).unwrap_or("?");
        Err(format!(
            "its unit {:?} is not {} (or a multiple of it)",
            if unit == Unit::None {
                "none"
            } else {
                symbol(unit)
            },
            symbol(want)
        ))
    }
}

/// The meters of `entry`'s map (see the module documentation). A map that does not parse
/// (stored maps were validated, so only a damaged row) has none, with a note.
pub fn plan<'a>(entry: &'a DeviceChannels) -> Plan {
    let Ok(map) = ChannelMap::new_checked(&entry.map) else {
        return Plan {
            notes: vec!["the channel map cannot be read".into()],
            ..Plan::default()
        };
    };
    let roles = match &entry.roles {
        // Absent, the device runs the pool board's roles (PROTOCOL.md 17.2).
        None => Some(Roles::POOL),
        Some(r) => Roles::parse(r, map.channel_count()).ok(),
    };
    let mut notes = Vec::new();
    // Every channel read as energy or power.
    let mut usable: Vec<Usable> = Vec::new();
    for (i, ch) in map.channels().enumerate() {
        let Some(info) = entry.channels.iter().find(|c| usize::from(c.index) == i) else {
            continue;
        };
        let index = info.index;
        let instrument = match ch.source {
            Source::Board(_) => Instrument::Board,
            Source::Modbus(m) => Instrument::Modbus {
                bus: m.bus,
                slave: m.slave,
            },
            Source::Computed(_) | Source::Unknown(_) => Instrument::Own(index),
        };
        match factor(info.kind, ch.resolution.unit, ch.resolution.exponent) {
            Ok(Some(f)) => usable.push((index, &info.name, info.kind, f, instrument)),
            Ok(None) => {}
            Err(why) => notes.push(format!(
                "channel {:?} ({}) is not counted: {why}",
                info.name,
                info.kind.as_str()
            )),
        }
    }
    let of_kind = |index: Option<u8>, kind: ChannelKind| {
        usable
            .iter()
            .find(|u| Some(u.0) == index && u.2 == kind)
            .copied()
    };
    let energy_role = of_kind(roles.and_then(|r| r.energy), ChannelKind::Energy);
    let power_role = of_kind(roles.and_then(|r| r.power), ChannelKind::Power);
    let mut instruments: Vec<Instrument> = Vec::new();
    for u in &usable {
        if !instruments.contains(&u.4) {
            instruments.push(u.4);
        }
    }
    let mut meters = Vec::new();
    let mut total = None;
    for inst in instruments {
        // The role's channel if it is on this instrument, else the instrument's first of kind.
        let pick = |role: Option<Usable<'a>>, kind: ChannelKind| -> Option<Usable<'a>> {
            role.filter(|r| r.4 == inst)
                .or_else(|| usable.iter().find(|u| u.4 == inst && u.2 == kind).copied())
        };
        let (chosen, reading) = match pick(energy_role, ChannelKind::Energy) {
            Some(c) => (c, Reading::Counter),
            None => match pick(power_role, ChannelKind::Power) {
                Some(c) => (c, Reading::Power),
                None => continue,
            },
        };
        let total_here = match (energy_role, power_role) {
            (Some(e), _) => e.4 == inst,
            (None, Some(p)) => p.4 == inst,
            (None, None) => false,
        };
        if total_here {
            total = Some(meters.len());
        }
        meters.push(MeterChannel {
            index: chosen.0,
            name: chosen.1.to_owned(),
            reading,
            factor: chosen.3,
        });
    }
    Plan {
        meters,
        total,
        demand: power_role.map(|p| (p.0, p.3)),
        notes,
    }
}

/// One part of the site in a breakdown: its figures over the period (energy cost only, at the
/// site's prices).
#[derive(Debug, Clone, PartialEq)]
pub struct Breakdown {
    /// The site's total over the period.
    pub total: Figures,
    /// Each part's figures, in the order given.
    pub parts: Vec<Figures>,
    /// kWh of the total not measured by any part (≥ 0).
    pub untracked_kwh: f64,
    /// Its energy cost (with a tariff; ≥ 0).
    pub untracked_cost: Option<f64>,
    /// kWh by which the parts exceed the total (≥ 0; 0 when they do not).
    pub exceeded_kwh: f64,
}

/// Differences below this (kWh, or money) are rounding, not untracked energy.
const ROUNDING: f64 = 1e-9;

/// The breakdown of `total` into `parts` over `period`, priced with `tariff` (energy only: the
/// demand and fixed charges are the site's and are not split).
pub fn breakdown(
    total: &Intervals,
    parts: &[&Intervals],
    tz: &TimeZone,
    period: &Period,
    tariff: Option<&Tariff>,
) -> Breakdown {
    let total = part_figures(total, tz, period, tariff);
    let parts: Vec<Figures> = parts
        .iter()
        .map(|p| part_figures(p, tz, period, tariff))
        .collect();
    breakdown_of(total, parts)
}

/// The figures of one part (or the total) of a [`breakdown`] over `period`: its energy and
/// energy cost.
pub fn part_figures(
    intervals: &Intervals,
    tz: &TimeZone,
    period: &Period,
    tariff: Option<&Tariff>,
) -> Figures {
    let mut f = summarize(intervals, tz, By::Day, std::slice::from_ref(period), tariff);
    energy_cost_only(&mut f);
    f.remove(0)
}

/// The breakdown from the figures of the total and of each part ([`part_figures`], which a
/// caller may compute on several threads).
pub fn breakdown_of(total: Figures, parts: Vec<Figures>) -> Breakdown {
    let rest = total.kwh - parts.iter().map(|p| p.kwh).sum::<f64>();
    let rest_cost = total.cost.map(|c| {
        c.energy
            - parts
                .iter()
                .filter_map(|p| p.cost.map(|c| c.energy))
                .sum::<f64>()
    });
    let clean = |v: f64| if v.abs() < ROUNDING { 0.0 } else { v };
    let rest = clean(rest);
    Breakdown {
        untracked_kwh: rest.max(0.0),
        untracked_cost: rest_cost.map(|c| clean(c).max(0.0)),
        exceeded_kwh: (-rest).max(0.0),
        total,
        parts,
    }
}

/// `part`'s share of `total`, 0..=1 (`None` without a total to share).
pub fn share(part_kwh: f64, total_kwh: f64) -> Option<f64> {
    (total_kwh > ROUNDING).then(|| part_kwh / total_kwh)
}

#[cfg(test)]
mod tests {
    use super::super::tariff::Tariff;
    use super::super::zone;
    use super::super::{meter_intervals, Interval};
    use super::*;
    use crate::storage::channels::builtin::{self, Builtin, BuiltinChannel};
    use crate::storage::channels::ChannelInfo;
    use crate::storage::energy::{MeterData, MeterInterval, MeterSpan, INTERVAL_S};
    use tek_proto::channel::map::{
        Bus, Channel, Conversion, DataType, Function, ModbusRead, Resolution, WordOrder,
    };

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    fn modbus(slave: u8) -> Source<'static> {
        Source::Modbus(ModbusRead {
            bus: 0,
            slave,
            function: Function::Input,
            register: 0,
            data_type: DataType::F32,
            word_order: WordOrder::HighFirst,
        })
    }

    /// A computed channel's program (`#0 * 2`); only its framing is read here.
    const PROGRAM: &[u8] = &[1, 0, 0, 2, 0, 0, 0, 3];

    fn channel(
        name: &'static str,
        kind: ChannelKind,
        source: Source<'static>,
        unit: Unit,
        exponent: i8,
    ) -> BuiltinChannel {
        BuiltinChannel {
            name,
            kind,
            decimals: 0,
            channel: Channel {
                source,
                conversion: Conversion::IDENTITY,
                resolution: Resolution { unit, exponent },
            },
        }
    }

    /// The registry entry of a template, as storage returns it.
    fn entry(b: &Builtin) -> DeviceChannels {
        DeviceChannels {
            device_id: 1,
            version: 1,
            template_id: None,
            map: b.map(),
            roles: b.roles_value(),
            saved_at: 0,
            channels: b
                .channels
                .iter()
                .enumerate()
                .map(|(i, c)| ChannelInfo {
                    index: i as u8,
                    name: c.name.into(),
                    unit: c.channel.resolution.unit.code(),
                    kind: c.kind,
                    decimals: c.decimals,
                })
                .collect(),
        }
    }

    fn roles(power: Option<u8>, energy: Option<u8>) -> Option<Roles> {
        Some(Roles {
            water: None,
            air: None,
            power,
            energy,
            pump: 0,
            heater: 1,
        })
    }

    fn bus() -> Vec<Bus> {
        builtin::sdm120().buses
    }

    /// The demo's plant room: the site meter at slave 1 (power and energy), the pump's at 2
    /// (energy in kWh), a temperature at 3, a computed power, and a volume counter that is
    /// marked energy but counts litres.
    fn plant_room() -> Builtin {
        use ChannelKind::*;
        Builtin {
            name: "plant room",
            roles: roles(Some(0), Some(1)),
            buses: bus(),
            channels: vec![
                channel("Site power", Power, modbus(1), Unit::Watt, 0),
                channel("Site energy", Energy, modbus(1), Unit::WattHour, 0),
                channel("Pump power", Power, modbus(2), Unit::Watt, 0),
                channel("Pump energy", Energy, modbus(2), Unit::WattHour, 3),
                channel(
                    "Room temperature",
                    Temperature,
                    modbus(3),
                    Unit::Celsius,
                    -2,
                ),
                channel(
                    "Other loads",
                    Power,
                    Source::Computed(PROGRAM),
                    Unit::Watt,
                    0,
                ),
                channel("Water used", Energy, modbus(4), Unit::Litre, 0),
            ],
        }
    }

    #[test]
    fn one_meter_per_instrument_and_the_energy_role_is_the_total() {
        let p = plan(&entry(&plant_room()));
        let got: Vec<(u8, &str, Reading, f64)> = p
            .meters
            .iter()
            .map(|m| (m.index, m.name.as_str(), m.reading, m.factor))
            .collect();
        // Slave 1: its energy channel, not its power; slave 2: kWh, 1000 Wh per unit; the
        // temperature is no meter; the computed power is its own instrument.
        assert_eq!(
            got,
            [
                (1, "Site energy", Reading::Counter, 1.0),
                (3, "Pump energy", Reading::Counter, 1000.0),
                (5, "Other loads", Reading::Power, 1.0),
            ]
        );
        assert_eq!(p.total, Some(0));
        assert_eq!(p.demand, Some((0, 1.0)), "the power role gives the demand");
        assert_eq!(p.parts(), [1, 2], "the total's sub-meters");
        assert_eq!(
            p.notes,
            ["channel \"Water used\" (energy) is not counted: its unit \"l\" is not Wh (or a multiple of it)"]
        );
    }

    #[test]
    fn a_meters_export_and_total_registers_are_not_added_to_its_import() {
        // The SDM630: import, export and total energy, four power channels, all on slave 1.
        let p = plan(&entry(&builtin::sdm630()));
        assert_eq!(p.meters.len(), 1);
        assert_eq!(
            (p.meters[0].index, p.meters[0].name.as_str()),
            (11, "Import energy")
        );
        assert_eq!((p.total, p.demand), (Some(0), Some((9, 1.0))));
        // Its only meter is the whole device: the device is one part of its site.
        assert_eq!(p.parts(), [0]);
        // The temperature transmitter: no meter at all.
        let p = plan(&entry(&builtin::tb260()));
        assert_eq!((p.meters.len(), p.total, p.parts().len()), (0, None, 0));
    }

    #[test]
    fn without_roles_nothing_adds_to_the_total_and_power_alone_is_a_meter() {
        use ChannelKind::*;
        let mut b = Builtin {
            name: "no roles",
            roles: roles(None, None),
            buses: bus(),
            channels: vec![
                channel("Heat pump", Power, modbus(5), Unit::Watt, 3),
                channel("Lights", Energy, modbus(6), Unit::WattHour, 6),
                channel("Lights power", Power, modbus(6), Unit::Watt, 0),
            ],
        };
        let p = plan(&entry(&b));
        let got: Vec<(u8, Reading, f64)> = p
            .meters
            .iter()
            .map(|m| (m.index, m.reading, m.factor))
            .collect();
        // kW power: 1000 W per unit; MWh: 10^6 Wh per unit; the lights' power is not a meter.
        assert_eq!(
            got,
            [(0, Reading::Power, 1000.0), (1, Reading::Counter, 1e6)]
        );
        assert_eq!((p.total, p.demand), (None, None));
        assert_eq!(p.parts(), [0, 1], "shown, though outside the total");
        // Only a power role: that instrument's meter is the total (its counter, as it
        // measures the same flow); its demand the power channel's.
        b.roles = roles(Some(2), None);
        let p = plan(&entry(&b));
        assert_eq!((p.total, p.demand), (Some(1), Some((2, 1.0))));
        assert_eq!(p.parts(), [0]);
        // No roles item at all: the device runs the pool board's (power 0, energy 1).
        b.roles = None;
        let p = plan(&entry(&b));
        assert_eq!((p.total, p.demand), (Some(1), Some((0, 1000.0))));
        // A role naming a channel of another kind does not make it a meter of that kind.
        b.roles = roles(Some(1), Some(0));
        let p = plan(&entry(&b));
        assert_eq!((p.total, p.demand), (None, None));
    }

    #[test]
    fn units_that_do_not_convert_are_refused() {
        assert_eq!(
            factor(ChannelKind::Energy, Unit::WattHour, 3),
            Ok(Some(1000.0))
        );
        assert_eq!(factor(ChannelKind::Power, Unit::Watt, -1), Ok(Some(0.1)));
        assert_eq!(factor(ChannelKind::Temperature, Unit::Celsius, 0), Ok(None));
        for (kind, unit) in [
            (ChannelKind::Energy, Unit::Watt),
            (ChannelKind::Energy, Unit::None),
            (ChannelKind::Power, Unit::VoltAmpere),
            (ChannelKind::Power, Unit::Unknown(200)),
        ] {
            assert!(factor(kind, unit, 0).is_err(), "{kind:?} {unit:?}");
        }
        let damaged = DeviceChannels {
            map: vec![9, 9],
            ..entry(&plant_room())
        };
        let p = plan(&damaged);
        assert!(p.meters.is_empty() && p.notes.len() == 1);
    }

    #[test]
    fn counters_and_power_are_scaled_to_wh_and_w() {
        let t0 = 1_800_000_000 - 1_800_000_000 % 86_400;
        let iv = |start, wh, power_w| MeterInterval { start, wh, power_w };
        // A kWh counter: 2 units in the first interval, 3 over a 30-minute gap after it; the
        // mean of its readings (power_w) is not power and is not read.
        let counter = MeterData {
            intervals: vec![iv(t0, Some(2), Some(12_345.0))],
            spans: vec![MeterSpan {
                from: t0 + 900,
                to: t0 + 2700,
                wh: 3,
            }],
        };
        // A power channel in kW: 4 kW in the first interval, 2 kW in the second.
        let power = MeterData {
            intervals: vec![iv(t0, Some(99), Some(4.0)), iv(t0 + 900, None, Some(2.0))],
            spans: vec![],
        };
        let (from, to) = (t0, t0 + 3600);
        let i = meter_intervals(Some((&counter, 1000.0)), Some((&power, 1000.0)), from, to);
        assert_eq!(
            i.iter().map(|(k, v)| (k, *v)).collect::<Vec<_>>(),
            [
                (
                    t0,
                    Interval {
                        wh: 2000.0,
                        demand_w: 4000.0
                    }
                ),
                (
                    t0 + 900,
                    Interval {
                        wh: 1500.0,
                        demand_w: 2000.0
                    }
                ),
                (
                    t0 + 1800,
                    Interval {
                        wh: 1500.0,
                        demand_w: 6000.0
                    }
                ),
            ]
        );
        // The power channel alone: its integral, 4 kW × 15 min = 1 kWh.
        let i = meter_intervals(None, Some((&power, 1000.0)), from, to);
        assert!(close(i[&t0].wh, 1000.0) && close(i[&(t0 + 900)].wh, 500.0));
        // The counter alone: demand is energy over 15 minutes.
        let i = meter_intervals(Some((&counter, 1000.0)), None, from, to);
        assert!(close(i[&t0].demand_w, 2000.0 * 3600.0 / INTERVAL_S as f64));
    }

    fn flat(wh: &[f64], t0: i64) -> Intervals {
        wh.iter()
            .enumerate()
            .map(|(k, &wh)| {
                (
                    t0 + k as i64 * INTERVAL_S,
                    Interval {
                        wh,
                        demand_w: wh * 4.0,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn untracked_is_the_total_minus_the_parts_never_negative() {
        let tz = zone::load("UTC");
        let day = zone::periods(&tz, By::Day, jiff::civil::date(2026, 6, 1), 1).remove(0);
        let t0 = day.start;
        // 10 kWh in total; a pump 3 kWh, lights 4 kWh: 3 kWh untracked.
        let total = flat(&[4000.0, 6000.0], t0);
        let pump = flat(&[1000.0, 2000.0], t0);
        let lights = flat(&[4000.0], t0);
        let tariff = Tariff {
            demand_price: 10.0,
            monthly_fixed: 5.0,
            ..Tariff::flat("EUR", 0.2)
        };
        let b = breakdown(&total, &[&pump, &lights], &tz, &day, Some(&tariff));
        assert!(close(b.total.kwh, 10.0));
        assert!(close(b.parts[0].kwh, 3.0) && close(b.parts[1].kwh, 4.0));
        assert!(close(b.untracked_kwh, 3.0) && b.exceeded_kwh == 0.0);
        // Energy at the site's price only: no demand or fixed charge split.
        let c = b.parts[0].cost.unwrap();
        assert!(close(c.total, 0.6) && c.demand == 0.0 && c.fixed == 0.0);
        assert!(close(b.untracked_cost.unwrap(), 0.6));
        assert!(close(share(3.0, b.total.kwh).unwrap(), 0.3));
        // Sub-meters above the total: untracked 0, the excess said instead.
        let heater = flat(&[5000.0], t0);
        let b = breakdown(&total, &[&pump, &lights, &heater], &tz, &day, None);
        assert_eq!((b.untracked_kwh, b.untracked_cost), (0.0, None));
        assert!(close(b.exceeded_kwh, 2.0));
        // A whole device as its only part: nothing untracked, not a rounding residue.
        let thirds = flat(&[0.1, 0.2, 0.3, 1.0 / 3.0], t0);
        let b = breakdown(&thirds, &[&thirds], &tz, &day, Some(&tariff));
        assert_eq!((b.untracked_kwh, b.exceeded_kwh), (0.0, 0.0));
        // No energy at all: no share.
        assert_eq!(share(0.0, 0.0), None);
    }
}
