//! Telemetry for charts and exports: time buckets aggregated by the database, so a 30-day chart
//! reads a few hundred values instead of tens of thousands of records.

use super::Result;
use super::TelemetryRow;

/// One time bucket of a device's telemetry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// Start of the bucket, Unix seconds (a multiple of the step).
    pub start: i64,
    /// Records in the bucket.
    pub count: u32,
    /// Mean electric power, W.
    pub power_w: Option<f64>,
    /// Largest energy meter reading, Wh.
    pub energy_wh: Option<i64>,
    /// Mean water temperature, 0.01 °C.
    pub water_cc: Option<f64>,
    /// Mean air temperature, 0.01 °C.
    pub air_cc: Option<f64>,
    /// Lowest and highest power in the bucket, W: a chart drawn from buckets keeps the peaks.
    pub power_range: Option<(f64, f64)>,
    /// Lowest and highest water temperature, 0.01 °C.
    pub water_range_cc: Option<(f64, f64)>,
    /// Lowest and highest air temperature, 0.01 °C.
    pub air_range_cc: Option<(f64, f64)>,
    /// Share of the bucket's records with the pump relay (bit 0) on, 0..=1.
    pub pump_on: Option<f64>,
    /// Share of the bucket's records with the heater relay (bit 1) on, 0..=1.
    pub heater_on: Option<f64>,
}

/// `(min, max)` when both are present.
pub fn range(min: Option<f64>, max: Option<f64>) -> Option<(f64, f64)> {
    min.zip(max)
}

/// Energy used in one UTC day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayEnergy {
    /// Start of the day, Unix seconds.
    pub day: i64,
    /// Wh used that day (meter reading difference; meter resets are not counted as negative use).
    pub wh: i64,
}

/// Aggregated telemetry queries.
pub trait SeriesStore {
    /// Buckets of `step` seconds from `from` (inclusive) to `to` (exclusive), oldest first; empty
    /// buckets are absent.
    fn telemetry_buckets(
        &self,
        device_id: u32,
        from: i64,
        to: i64,
        step: i64,
    ) -> Result<Vec<Bucket>>;
    /// Energy used per UTC day from `from` to `to`, oldest first.
    fn energy_per_day(&self, device_id: u32, from: i64, to: i64) -> Result<Vec<DayEnergy>>;
    /// The newest record of a device.
    fn latest_telemetry(&self, device_id: u32) -> Result<Option<TelemetryRow>>;
}
