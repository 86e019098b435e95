//! The plant: the relays as the thermostat, the schedule, the server's overrides and the
//! interlocks set them ([`crate::thermostat`]), and the server's clock the schedule runs on.
//!
//! * The relays are evaluated on every reading, on every configuration or override change, once
//!   a minute while a schedule is configured (on the minute of the UTC clock, which is also the
//!   minute of every local time whose offset is whole minutes), and when the reading goes stale.
//! * The clock is the server's: every Welcome, Ack and Pong sets it (and the schedule is
//!   evaluated again at once); before the first one there is no time of day.
//! * Switching ([`Plant::switch`]): everything that switches off (highest relay first) before
//!   anything that switches on (lowest first), so the interlock holds between two actions too:
//!   the heater (1) stops before the pump (0), and the pump starts before the heater.

use crate::effects::{Effect, Effects};
use crate::thermostat::{Inputs, Relays};
use crate::Reading;
use tek_proto::message::config::Config;

/// The plant part of the controller.
#[derive(Debug)]
pub(crate) struct Plant {
    /// Relay modes and states.
    pub relays: Relays,
    /// The relay bitmap the host was told to switch to.
    applied: u8,
    /// When the schedule is evaluated next (every minute while one is configured).
    next_schedule_at: u64,
    /// Unix time minus uptime, once a server has told the time.
    pub time_offset: Option<i64>,
}

impl Plant {
    /// The all-zero placeholder of `Controller::blank`.
    pub const BLANK: Plant = Plant {
        relays: Relays::BLANK,
        applied: 0,
        next_schedule_at: 0,
        time_offset: None,
    };

    /// Power-up: relays automatic and off, no clock; evaluated at once by `cfg`.
    pub fn start(&mut self, now: u64, cfg: &Config) {
        let Plant {
            relays,
            applied,
            next_schedule_at,
            time_offset,
        } = self;
        *relays = Relays::new();
        *applied = 0;
        *next_schedule_at = 0;
        *time_offset = None;
        self.update(now, cfg, None, None);
    }

    /// Unix time at `now`, once a server has told the time.
    pub fn unix_time(&self, now: u64) -> Option<i64> {
        self.time_offset.map(|o| o + (now / 1000) as i64)
    }

    /// A server told the time.
    pub fn sync_time(&mut self, now: u64, server_time: u32) {
        self.time_offset = Some(i64::from(server_time) - (now / 1000) as i64);
        // The schedule may say something else now that the time is known (or corrected).
        self.next_schedule_at = now;
    }

    /// Evaluates the relays: the schedule's demand at `now`, the thermostat with the setpoint it
    /// selects, manual overrides, then the interlocks.
    pub fn update(&mut self, now: u64, cfg: &Config, water_cc: Option<i16>, air_cc: Option<i16>) {
        let demand = crate::schedule::demand(cfg, self.unix_time(now));
        let mut thermostat = cfg.thermostat;
        if let (false, Some(s)) = (demand.occupied, &cfg.schedule) {
            thermostat.setpoint_cc = s.unoccupied_cc;
        }
        self.relays.evaluate(&Inputs {
            thermostat,
            water_cc,
            air_cc,
            pump_scheduled: demand.pump,
            freeze: cfg.freeze,
        });
    }

    /// [`update`](Self::update) with `reading` (the latest, if fresh).
    #[inline(always)]
    pub fn update_with(&mut self, now: u64, cfg: &Config, reading: Option<Reading>) {
        let r = reading;
        self.update(
            now,
            cfg,
            r.and_then(|r| r.water_cc),
            r.and_then(|r| r.air_cc),
        );
    }

    /// Re-evaluates the schedule once a minute (`reading`: the latest, if fresh).
    pub fn poll(&mut self, now: u64, cfg: &Config, reading: Option<Reading>) {
        if cfg.schedule.is_none() || now < self.next_schedule_at {
            return;
        }
        let Some(t) = self.unix_time(now) else {
            return;
        };
        self.update_with(now, cfg, reading);
        let to_minute = 60 - t.rem_euclid(60) as u64;
        self.next_schedule_at = (now / 1000 + to_minute) * 1000;
    }

    /// Queues the relay switches the last evaluations made. Returns whether any relay changed
    /// (status then says so).
    pub fn switch(&mut self, effects: &mut Effects) -> bool {
        let relays = self.relays.state();
        if relays == self.applied {
            return false;
        }
        for on in [false, true] {
            for n in 0..8u8 {
                let i = if on { n } else { 7 - n };
                let bit = 1 << i;
                if (relays ^ self.applied) & bit != 0 && (relays & bit != 0) == on {
                    effects.push(Effect::SetRelay { relay: i, on });
                }
            }
        }
        self.applied = relays;
        true
    }

    /// When [`poll`](Self::poll) has something to do.
    pub fn poll_at(&self, cfg: &Config) -> u64 {
        if cfg.schedule.is_some() && self.time_offset.is_some() {
            self.next_schedule_at
        } else {
            u64::MAX
        }
    }
}
