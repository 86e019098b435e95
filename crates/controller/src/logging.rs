//! Logging: the latest sensor reading, the mean power since the last record, and a record into
//! the telemetry [`Log`] at every logging interval.
//!
//! * A record is taken every `log_interval_s`, from the latest reading and the mean of every
//!   power reading since the previous record; before the first reading nothing is logged (no
//!   made-up record).
//! * A reading older than [`SENSOR_STALE_MS`] loses its temperatures: the heater must not run
//!   blind ([`Logging::went_stale`] says when, the controller switches the heater off).
//! * When the interval changes, the next record is due one new interval after the last one.

use crate::log::{LogRecord, MISSING_TEMP};
use crate::record_log::RecordLog;
use crate::Reading;
use crate::Stats;

/// A sensor reading older than this no longer drives the heater (it is switched off).
pub const SENSOR_STALE_MS: u64 = 300_000;

/// The logging part of the controller, with its telemetry log `L`.
#[derive(Debug)]
pub(crate) struct Logging<L> {
    /// The telemetry log.
    pub log: L,
    /// When the next record is due.
    next_log_at: u64,
    /// The latest reading.
    pub reading: Option<Reading>,
    /// When it arrived (or went stale).
    pub reading_at: u64,
    power_sum: u64,
    power_n: u32,
    /// The last record taken (a bench shows it).
    pub last: Option<LogRecord>,
}

impl<L: RecordLog> Logging<L> {
    /// The all-zero placeholder of `Controller::blank` (`Some`: `None` is a non-zero niche).
    pub const BLANK: Self = Logging {
        log: L::BLANK,
        next_log_at: 0,
        reading: Some(Reading {
            power_w: 0,
            energy_wh: 0,
            water_cc: None,
            air_cc: None,
        }),
        reading_at: 0,
        power_sum: 0,
        power_n: 0,
        last: None,
    };

    /// Power-up of boot `boot` in place: the log started (a RAM log emptied), the first record
    /// one interval from `now`.
    pub fn start(&mut self, now: u64, interval_s: u16, boot: u32) {
        // Every field by name, without `..`: a field added later cannot be forgotten here.
        let Logging {
            log,
            next_log_at,
            reading,
            reading_at,
            power_sum,
            power_n,
            last,
        } = self;
        log.start(boot);
        *next_log_at = now + u64::from(interval_s) * 1000;
        *reading = None;
        *reading_at = now;
        *power_sum = 0;
        *power_n = 0;
        *last = None;
    }

    /// A sensor reading.
    pub fn sensor(&mut self, now: u64, reading: Reading) {
        self.reading = Some(reading);
        self.reading_at = now;
        self.power_sum += u64::from(reading.power_w);
        self.power_n = self.power_n.saturating_add(1);
    }

    /// The latest reading, if it is fresh at `now`.
    pub fn fresh(&self, now: u64) -> Option<Reading> {
        let fresh = now.saturating_sub(self.reading_at) < SENSOR_STALE_MS;
        self.reading.filter(|_| fresh)
    }

    /// Whether the reading went stale by `now`; if so its temperatures are dropped (the heater
    /// must then be re-evaluated without them) and the staleness clock starts again.
    pub fn went_stale(&mut self, now: u64) -> bool {
        if self.reading.is_some() && now.saturating_sub(self.reading_at) >= SENSOR_STALE_MS {
            self.reading_at = now;
            self.reading = self.reading.map(|r| Reading {
                water_cc: None,
                air_cc: None,
                ..r
            });
            return true;
        }
        false
    }

    /// Advances to `now`: takes a record if one is due (with `relays` as they are), into the
    /// telemetry log when `legacy` (else the channel part logs it: returns whether a record was
    /// due).
    pub fn poll(
        &mut self,
        now: u64,
        interval_s: u16,
        relays: u8,
        legacy: bool,
        stats: &mut Stats,
    ) -> bool {
        if now < self.next_log_at {
            return false;
        }
        let interval = u64::from(interval_s) * 1000;
        self.next_log_at += interval;
        if self.next_log_at <= now {
            self.next_log_at = now + interval;
        }
        let Some(r) = self.reading.filter(|_| legacy) else {
            // Nothing measured yet: no record rather than a made-up one.
            return true;
        };
        let power = if self.power_n > 0 {
            self.power_sum / u64::from(self.power_n)
        } else {
            u64::from(r.power_w)
        };
        self.power_sum = 0;
        self.power_n = 0;
        let record = LogRecord {
            time_s: (now / 1000) as u32,
            energy_wh: r.energy_wh,
            power_w: power.min(u64::from(u16::MAX)) as u16,
            water_cc: r.water_cc.unwrap_or(MISSING_TEMP),
            air_cc: r.air_cc.unwrap_or(MISSING_TEMP),
            relays,
        };
        self.log.push(&record);
        self.last = Some(record);
        stats.records_logged += 1;
        true
    }

    /// The interval changed from `old_s` to `new_s`: the next record is due one new interval
    /// after the last record (or power-up) — at once if that is past — rather than at the time
    /// the old interval set.
    pub fn interval_changed(&mut self, old_s: u16, new_s: u16, now: u64) {
        if new_s == old_s {
            return;
        }
        let last = self.next_log_at.saturating_sub(u64::from(old_s) * 1000);
        self.next_log_at = (last + u64::from(new_s) * 1000).max(now);
    }

    /// When [`poll`](Self::poll) has something to do next.
    pub fn poll_at(&self) -> u64 {
        let mut at = self.next_log_at;
        if self.reading.is_some() {
            at = at.min(self.reading_at + SENSOR_STALE_MS);
        }
        at
    }
}
