//! Commands queued for devices (relay on/off/auto, reboot, send status), with their outcome.

use super::Result;
use tek_proto::message::{Command, CommandResult, RelayMode};

/// What became of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandState {
    /// Queued, not confirmed yet.
    Queued,
    /// Carried out.
    Done,
    /// Refused by the device.
    Refused,
    /// Not delivered within [`EXPIRE_AFTER_S`] of being queued: never sent again (PROTOCOL.md
    /// 11.3: switching a relay hours after it was asked for surprises people).
    Expired,
}

/// A command not confirmed this many seconds after it was queued expires (PROTOCOL.md 11.3).
pub const EXPIRE_AFTER_S: i64 = 600;

/// Commands waiting for one device at most; queueing one more is refused
/// ([`Error::QueueFull`](super::Error::QueueFull)) until some are confirmed or expire.
pub const MAX_PENDING: u32 = 16;

/// The message of a refused queueing.
pub(crate) fn queue_full(device_id: u32) -> super::Error {
    super::Error::QueueFull(format!(
        "device {device_id} has {MAX_PENDING} commands waiting already; try again once it \
         confirmed some (unconfirmed commands expire {} minutes after they were queued)",
        EXPIRE_AFTER_S / 60
    ))
}

impl CommandState {
    /// Stable text form used in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            CommandState::Queued => "queued",
            CommandState::Done => "done",
            CommandState::Refused => "refused",
            CommandState::Expired => "expired",
        }
    }

    /// Parses [`as_str`](Self::as_str).
    pub fn parse(s: &str) -> Option<CommandState> {
        Some(match s {
            "queued" => CommandState::Queued,
            "done" => CommandState::Done,
            "refused" => CommandState::Refused,
            "expired" => CommandState::Expired,
            _ => return None,
        })
    }

    /// The state a CommandAck result puts a command in.
    pub fn from_result(r: CommandResult) -> CommandState {
        match r {
            CommandResult::Done => CommandState::Done,
            CommandResult::Refused => CommandState::Refused,
        }
    }
}

/// A CommandAck as the store applies it: the command moves to the result's state, and only
/// from [`ACKABLE`] (an ack after the expiry still records what the device did; a repeated ack
/// changes nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandAck {
    /// Device.
    pub device_id: u32,
    /// Command id.
    pub id: u32,
    /// The state the command moves to.
    pub to: CommandState,
    /// When the device answered.
    pub at: i64,
}

/// The states an acknowledgement may move a command from, as an SQL list (both dialects).
pub const ACKABLE: &str = "('queued', 'expired')";

/// One queued command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandRecord {
    /// Id, unique in the database, sent to the device and echoed in its CommandAck.
    pub id: u32,
    /// Device.
    pub device_id: u32,
    /// The command.
    pub command: Command,
    /// When it was queued.
    pub queued_at: i64,
    /// What became of it.
    pub state: CommandState,
    /// When the device answered.
    pub acked_at: Option<i64>,
    /// Boot number of the session a *reboot* was last sent in, by any server
    /// ([`CommandStore::command_sent`]); `None` for other commands and unsent reboots.
    pub sent_boot: Option<u32>,
}

/// Command operations.
pub trait CommandStore {
    /// Queues a command for a device; returns its id. First expires the device's commands queued
    /// [`EXPIRE_AFTER_S`] or more before `now`; refuses with
    /// [`Error::QueueFull`](super::Error::QueueFull) if [`MAX_PENDING`] are still waiting.
    fn queue_command(&self, device_id: u32, command: &Command, now: i64) -> Result<u32>;
    /// Commands of a device still waiting for their CommandAck, oldest first.
    fn pending_commands(&self, device_id: u32) -> Result<Vec<CommandRecord>>;
    /// Commands with an id above `after`, oldest first, at most `limit` (the change feed).
    fn commands_since(&self, after: u32, limit: usize) -> Result<Vec<CommandRecord>>;
    /// The highest command id so far (0 if none).
    fn command_cursor(&self) -> Result<u32>;
    /// Records the device's answer. Returns whether the state changed.
    fn command_acked(
        &self,
        device_id: u32,
        id: u32,
        result: CommandResult,
        now: i64,
    ) -> Result<bool> {
        self.apply_ack(&CommandAck {
            device_id,
            id,
            to: CommandState::from_result(result),
            at: now,
        })
    }
    /// Applies an acknowledgement as [`command_acked`](Self::command_acked) decided it (the
    /// backends' half). Returns whether the state changed.
    fn apply_ack(&self, ack: &CommandAck) -> Result<bool>;
    /// The newest commands of a device, newest first.
    fn commands(&self, device_id: u32, limit: usize) -> Result<Vec<CommandRecord>>;
    /// Marks every command still queued [`EXPIRE_AFTER_S`] or more before `now` expired (the
    /// server's sweep, every minute); returns how many.
    fn expire_commands(&self, now: i64) -> Result<u64>;
    /// Records that queued command `id` was sent in a session of boot `boot` (kept only for
    /// *reboot* commands, and only ever raised): any server can then tell, when the device says
    /// Hello with a higher boot, that the reboot was carried out.
    fn command_sent(&self, device_id: u32, id: u32, boot: u32) -> Result<()>;
    /// The device says Hello with boot number `boot`: every *reboot* still queued that was sent
    /// in an earlier boot is done (PROTOCOL.md 11.3), at `now`. Returns their ids.
    fn reboots_done(&self, device_id: u32, boot: u32, now: i64) -> Result<Vec<u32>>;
}

/// The storage encoding of a command, `(kind, arg1, arg2)`, shared by every backend: kind 1 =
/// SetRelay (relay, mode 0 off / 1 on / 2 auto), 2 = Reboot, 3 = SendStatus.
pub fn encode(c: &Command) -> (i64, i64, i64) {
    match c {
        Command::SetRelay { relay, mode } => (
            1,
            i64::from(*relay),
            match mode {
                RelayMode::Off => 0,
                RelayMode::On => 1,
                RelayMode::Auto => 2,
            },
        ),
        Command::Reboot => (2, 0, 0),
        Command::SendStatus => (3, 0, 0),
    }
}

/// [`encode`] of a command a device can carry out: a relay beyond 0..=7 is refused before any
/// SQL runs.
pub fn encode_valid(c: &Command) -> Result<(i64, i64, i64)> {
    if let Command::SetRelay { relay, .. } = c {
        if *relay > 7 {
            return Err(super::Error::Backend(format!(
                "relay {relay} out of range 0..=7"
            )));
        }
    }
    Ok(encode(c))
}

/// Inverse of [`encode`]; `None` for a row no version of tek wrote.
pub fn decode(kind: i64, a: i64, b: i64) -> Option<Command> {
    Some(match kind {
        1 => Command::SetRelay {
            relay: u8::try_from(a).ok().filter(|r| *r <= 7)?,
            mode: match b {
                0 => RelayMode::Off,
                1 => RelayMode::On,
                2 => RelayMode::Auto,
                _ => return None,
            },
        },
        2 => Command::Reboot,
        3 => Command::SendStatus,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_relays_a_device_has_are_encoded() {
        let on = |relay| Command::SetRelay {
            relay,
            mode: RelayMode::On,
        };
        assert_eq!(encode_valid(&on(7)).unwrap(), (1, 7, 1));
        assert!(matches!(
            encode_valid(&on(8)),
            Err(super::super::Error::Backend(m)) if m.contains("relay 8")
        ));
        for c in [on(0), Command::Reboot, Command::SendStatus] {
            let (kind, a, b) = encode_valid(&c).unwrap();
            assert_eq!(decode(kind, a, b), Some(c));
        }
    }
}
