//! What the ingest path (`udp/`) hands the writer task (`writer.rs`) to store durably: one
//! [`WriteJob`] per datagram's worth of writes.

use crate::storage::{TelemetryRow, WideRow};
use tek_proto::message::{CommandResult, ConfigResult, Status};

/// How a stored telemetry batch is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acknowledge {
    /// Ack (0x81): records of the session's own boot (Telemetry 0x01, WideTelemetry 0x07).
    Ack,
    /// BacklogAck (0x87) naming `boot`: records of an earlier boot (Backlog 0x0A, PROTOCOL.md
    /// 18). `estimated`: their times are estimated, so the boot is noted
    /// ([`crate::storage::BacklogStore::note_estimated_boots`]) before the BacklogAck.
    Backlog { boot: u32, estimated: bool },
}

/// A write waiting for the writer.
#[derive(Debug)]
pub(crate) enum WriteJob {
    /// A telemetry batch; acknowledged (as `ack` says) with `through_seq` in session
    /// `session_id` once stored.
    Telemetry {
        device_id: u32,
        session_id: u32,
        through_seq: u32,
        ack: Acknowledge,
        rows: Vec<TelemetryRow>,
    },
    /// A wide telemetry batch (WideTelemetry 0x07, or a Backlog in its layout, PROTOCOL.md
    /// 17.5, 18), acknowledged like [`WriteJob::Telemetry`] once stored.
    WideTelemetry {
        device_id: u32,
        session_id: u32,
        through_seq: u32,
        ack: Acknowledge,
        rows: Vec<WideRow>,
    },
    /// A status report.
    Status {
        device_id: u32,
        status: Status,
        at: i64,
    },
    /// A ChannelFaults report (PROTOCOL.md 17.8), replacing the device's previous one.
    ChannelFaults {
        device_id: u32,
        faults: Vec<tek_proto::channel::faults::FaultEntry>,
        at: i64,
    },
    /// A ConfigAck.
    ConfigAck {
        device_id: u32,
        version: u32,
        result: ConfigResult,
        at: i64,
    },
    /// The device reports running the pending version (its ConfigAck was lost).
    ConfigRunning {
        device_id: u32,
        version: u32,
        at: i64,
    },
    /// A CommandAck.
    CommandAck {
        device_id: u32,
        id: u32,
        result: CommandResult,
        at: i64,
    },
    /// A reboot command was sent in a session of boot `boot` (PROTOCOL.md 11.3).
    CommandSent { device_id: u32, id: u32, boot: u32 },
}

impl WriteJob {
    pub(crate) fn records(&self) -> usize {
        match self {
            WriteJob::Telemetry { rows, .. } => rows.len(),
            WriteJob::WideTelemetry { rows, .. } => rows.len(),
            _ => 1,
        }
    }
}
