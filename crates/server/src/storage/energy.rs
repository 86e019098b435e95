//! Energy data for [`crate::energy`]: a device's meter readings reduced by the database to
//! 15-minute intervals, and each site's tariff.
//!
//! How the meter counter becomes energy (both backends, in SQL, over the `(device_id, time)`
//! index): records carrying the energy channel are ordered by (time, boot, seq) — a controller
//! reboot does not reset an external meter, so steps across boots count like any other — and
//! each step between consecutive readings is one of
//! * a decrease: the meter was reset or replaced; the step counts as 0 (never negative, never
//!   guessed), and the next steps count from the new reading;
//! * at most [`INTERVAL_S`] long: its increase belongs to the interval of the later reading;
//! * longer, up to [`MAX_GAP_S`] (the controller was off or lost records): returned as a
//!   [`MeterSpan`] that the caller spreads evenly over the gap;
//! * longer than [`MAX_GAP_S`]: not counted (an increase after more than a week of silence
//!   cannot be placed in time, and is more often a swapped meter than real use).
//!
//! The reading just before `from` and just after `to` (within [`MAX_GAP_S`]) take part, so
//! an interval's energy does not depend on the range it was asked for in. Mean power
//! (`power_w`) per interval comes from the same index range.

use super::Result;
use crate::energy::tariff::Tariff;

/// Length of an interval (demand is measured over clock-aligned 15 minutes).
pub const INTERVAL_S: i64 = 900;
/// Longest gap between two readings whose increase is still counted (spread over the gap).
pub const MAX_GAP_S: i64 = 7 * 86_400;

/// One interval of a device's readings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeterInterval {
    /// Start, Unix seconds (a multiple of [`INTERVAL_S`]).
    pub start: i64,
    /// Wh of the meter steps that ended in this interval and were at most an interval long
    /// (`None`: no such step).
    pub wh: Option<i64>,
    /// Mean of the power channel of the records in this interval, W.
    pub power_w: Option<f64>,
}

/// A meter increase over a gap longer than an interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeterSpan {
    /// Time of the reading before the gap.
    pub from: i64,
    /// Time of the reading after it.
    pub to: i64,
    /// Wh counted over the gap (> 0).
    pub wh: i64,
}

/// What the database returns for one device and range.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MeterData {
    /// Intervals with a step or a power reading, oldest first.
    pub intervals: Vec<MeterInterval>,
    /// Increases over gaps, oldest first.
    pub spans: Vec<MeterSpan>,
}

/// Energy queries and tariffs.
pub trait EnergyStore {
    /// The meter data of `device_id` for the intervals in `[from, to)` (both multiples of
    /// [`INTERVAL_S`]); spans are those overlapping the range.
    fn meter_data(&self, device_id: u32, from: i64, to: i64) -> Result<MeterData>;
    /// The tariff of a site, if one is set.
    fn site_tariff(&self, site_id: i64) -> Result<Option<Tariff>>;
    /// Sets (`Some`) or removes (`None`) a site's tariff; `Missing` if the site does not exist.
    fn set_site_tariff(&self, site_id: i64, tariff: Option<&Tariff>, now: i64) -> Result<()>;
}

/// Decodes a stored tariff.
pub fn decode_tariff(json: &str) -> Result<Tariff> {
    serde_json::from_str(json).map_err(|e| super::Error::Corrupt(format!("tariff: {e}")))
}

/// Encodes a tariff for storage.
pub fn encode_tariff(t: &Tariff) -> String {
    // A struct of strings and finite numbers always serializes.
    serde_json::to_string(t).unwrap_or_default()
}
