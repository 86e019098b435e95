//! Telemetry records, idempotent on (device, boot, sequence number).

use super::Result;
use tek_proto::message::telemetry::channel;

/// One stored record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelemetryRow {
    /// Device.
    pub device_id: u32,
    /// Boot number of the session that carried it (hello counter >> 32).
    pub boot: u32,
    /// Sequence number within the boot.
    pub seq: u32,
    /// When it was logged: arrival time minus its age, Unix seconds.
    pub time: i64,
    /// Channel mask of its batch: bit i set = `values[i]` is meaningful.
    pub channels: u8,
    /// Channel values (see `tek_proto::message::telemetry::channel`).
    pub values: [i32; channel::COUNT],
}

impl TelemetryRow {
    /// The value of `ch` if the record has it.
    pub fn get(&self, ch: u8) -> Option<i32> {
        (usize::from(ch) < channel::COUNT && self.channels & (1 << ch) != 0)
            .then(|| self.values[usize::from(ch)])
    }
}

/// A range query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelemetryQuery {
    /// Device.
    pub device_id: u32,
    /// From this time, inclusive.
    pub from: i64,
    /// To this time, exclusive.
    pub to: i64,
    /// At most this many rows (oldest first).
    pub limit: usize,
}

/// Telemetry operations.
pub trait TelemetryStore {
    /// Inserts rows in one transaction; rows already stored are skipped. Returns how many were
    /// new. When this returns `Ok`, every row is durable.
    fn insert_telemetry(&self, rows: &[TelemetryRow]) -> Result<u64> {
        Ok(self.insert_telemetry_new(rows)?.len() as u64)
    }
    /// As [`TelemetryStore::insert_telemetry`], returning the rows that were new (stored by this
    /// call, in their order in `rows`): what the MQTT publisher publishes, so that a record
    /// stored once is published once, whichever server of a fleet received it first.
    fn insert_telemetry_new(&self, rows: &[TelemetryRow]) -> Result<Vec<TelemetryRow>>;
    /// Rows of a device in a time range, oldest first.
    fn telemetry(&self, q: &TelemetryQuery) -> Result<Vec<TelemetryRow>>;
    /// Number of rows of a device.
    fn telemetry_count(&self, device_id: u32) -> Result<u64>;
}
