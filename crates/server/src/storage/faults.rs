//! Each device's latest per-channel fault report (ChannelFaults 0x09, PROTOCOL.md 17.8): per
//! channel, how many samples failed since boot or since the map changed, and why the last one
//! did. A new report replaces the previous one as a whole, so what is stored is always one
//! report, never a mix of two (table `channel_faults`, migration 13).

use super::Result;
use tek_proto::channel::faults::{Fault, FaultEntry};

/// One channel's entry of the latest report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelFault {
    /// Channel index.
    pub channel: u8,
    /// Failed samples since boot or since the map changed.
    pub errors: u16,
    /// The last failure.
    pub last: Fault,
    /// When the report arrived, Unix seconds.
    pub received_at: i64,
}

impl ChannelFault {
    /// The entry of a report that arrived at `at`.
    pub fn of(e: &FaultEntry, at: i64) -> Self {
        ChannelFault {
            channel: e.channel,
            errors: e.errors,
            last: e.last,
            received_at: at,
        }
    }

    /// From the stored columns; anything no report can have carried is [`super::Error::Corrupt`].
    pub(super) fn from_columns(
        channel: i64,
        errors: i64,
        code: i64,
        detail: i64,
        received_at: i64,
    ) -> Result<Self> {
        let corrupt = || super::Error::Corrupt(format!("channel fault of channel {channel}"));
        Ok(ChannelFault {
            channel: u8::try_from(channel).map_err(|_| corrupt())?,
            errors: u16::try_from(errors).map_err(|_| corrupt())?,
            last: Fault::from_code(
                u8::try_from(code).map_err(|_| corrupt())?,
                u8::try_from(detail).map_err(|_| corrupt())?,
            ),
            received_at,
        })
    }

    /// The columns `(channel, errors, code, detail)`.
    pub(super) fn columns(&self) -> (i64, i64, i64, i64) {
        let (code, detail) = self.last.code();
        (
            i64::from(self.channel),
            i64::from(self.errors),
            i64::from(code),
            i64::from(detail),
        )
    }
}

/// The columns both backends read, in [`ChannelFault::from_columns`]' order.
pub(super) const SELECT_SQL: &str =
    "SELECT channel, errors, code, detail, received_at FROM channel_faults WHERE device_id = ";

/// Per-channel fault reports.
pub trait FaultStore {
    /// Replaces device `device_id`'s report with `faults` (received at `at`), atomically.
    fn store_channel_faults(&self, device_id: u32, faults: &[FaultEntry], at: i64) -> Result<()>;

    /// Device `device_id`'s latest report, by channel (empty: none, or no channel failed).
    fn channel_faults(&self, device_id: u32) -> Result<Vec<ChannelFault>>;
}
