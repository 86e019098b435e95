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
            Some(t) if self.meters.len() > 1 => (0..self.meters.len()).filter(|&i| i != t).collect(),
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
            role.filter(|r| r.4 == inst).or_else(|| {
                usable
                    .iter()
                    .find(|u| u.4 == inst && u.2 == kind)
                    .copied()
            })
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
    let one = std::slice::from_ref(period);
    let figures = |i: &Intervals| {
        let mut f = summarize(i, tz, By::Day, one, tariff);
        energy_cost_only(&mut f);
        f.remove(0)
    };
    let total = figures(total);
    let parts: Vec<Figures> = parts.iter().map(|p| figures(p)).collect();
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
