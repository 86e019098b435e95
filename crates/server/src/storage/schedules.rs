//! Server-side settings of a device's schedule that do not travel to the device: the IANA time
//! zone (e.g. `Europe/Paris`) the schedule page edits. The device gets the POSIX TZ rule derived
//! from it (`crate::tzdb`), inside its configuration; the zone's name stays here so the page can
//! show it again and a later tzdata update can derive a new rule.

use super::Result;

/// Zone of a device without a stored one.
pub const DEFAULT_ZONE: &str = "UTC";

/// Schedule settings per device.
pub trait ScheduleStore {
    /// The IANA time zone of the device's schedule (`None`: never set, use [`DEFAULT_ZONE`]).
    fn schedule_zone(&self, device_id: u32) -> Result<Option<String>>;

    /// Sets the IANA time zone of the device's schedule. `Error::NotFound` for an unknown device.
    fn set_schedule_zone(&self, device_id: u32, zone: &str) -> Result<()>;
}
