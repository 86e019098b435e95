//! The messages carried, encrypted, inside session datagrams.
//!
//! A message is a type byte followed by a body; exactly one message per datagram. Codes below
//! 0x80 travel device -> server, codes from 0x80 server -> device. Integers are big-endian.
//!
//! | code | message       | body                                                           |
//! |------|---------------|----------------------------------------------------------------|
//! | 0x01 | Telemetry     | see [`telemetry`]                                              |
//! | 0x02 | Status        | see [`status`] (55 bytes)                                      |
//! | 0x03 | ConfigAck     | version u32, result u8 (0 applied, 1 saved — takes effect at next reset, 2 rolled back) |
//! | 0x04 | CommandAck    | command id u32, result u8 (0 done, 1 refused)                  |
//! | 0x05 | Keepalive     | flags u8 (bit 0: reply wanted), config version u32             |
//! | 0x81 | Ack           | through seq u32 (telemetry stored up to and including), server time u32 |
//! | 0x82 | Config        | version u32, items (see [`config`])                           |
//! | 0x83 | Command       | command id u32, kind u8, arguments (see [`Command`])           |
//! | 0x84 | Pong          | server time u32                                                |
//!
//! A message whose code is unknown decodes to [`Message::Unknown`]; a receiver drops it (after the
//! session has authenticated it, so it counts it but changes nothing else). A known message that
//! is too short, has bytes left over, or carries a value outside its range is a
//! [`MessageError`]: dropped silently, too.

pub mod config;
pub mod status;
pub mod telemetry;
pub mod varint;

pub use config::Config;
pub use status::Status;
pub use telemetry::{Record, Telemetry, TelemetryWriter};

/// Why a decrypted message was refused. Every variant means: drop it silently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageError {
    /// Shorter than its layout.
    Truncated,
    /// Bytes left over after the layout.
    Trailing,
    /// A field outside its allowed range.
    Range,
    /// The output buffer is too small (emit only).
    Buffer,
}

impl core::fmt::Display for MessageError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            MessageError::Truncated => "message truncated",
            MessageError::Trailing => "bytes after the message",
            MessageError::Range => "value out of range",
            MessageError::Buffer => "buffer too small",
        })
    }
}

/// Message type codes.
pub mod code {
    /// Telemetry batch.
    pub const TELEMETRY: u8 = 0x01;
    /// Device status.
    pub const STATUS: u8 = 0x02;
    /// Configuration confirmation.
    pub const CONFIG_ACK: u8 = 0x03;
    /// Command confirmation.
    pub const COMMAND_ACK: u8 = 0x04;
    /// Keepalive.
    pub const KEEPALIVE: u8 = 0x05;
    /// Telemetry acknowledgement.
    pub const ACK: u8 = 0x81;
    /// Configuration download.
    pub const CONFIG: u8 = 0x82;
    /// Command.
    pub const COMMAND: u8 = 0x83;
    /// Keepalive answer.
    pub const PONG: u8 = 0x84;
}

/// What the device did with a configuration version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigResult {
    /// Stored in flash and in effect.
    Applied,
    /// Stored in flash; its fixed IP settings take effect at the next reset.
    AppliedAtReset,
    /// Applied, but no server could be reached with it, so the previous configuration was
    /// restored. The device runs the previous version again.
    RolledBack,
}

/// What the device did with a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandResult {
    /// Carried out.
    Done,
    /// Not carried out (unknown relay, or refused by a safety interlock).
    Refused,
}

/// How a relay is driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayMode {
    /// Forced off.
    Off,
    /// Forced on.
    On,
    /// Back to automatic (thermostat / schedule).
    Auto,
}

/// Commands (message 0x83). Layout after the command id:
///
/// | kind | command       | arguments                                   |
/// |------|---------------|---------------------------------------------|
/// | 1    | SetRelay      | relay u8 (0..=7), mode u8 (0 off, 1 on, 2 auto) |
/// | 2    | Reboot        | none                                        |
/// | 3    | SendStatus    | none                                        |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Drive a relay.
    SetRelay {
        /// Relay number (0 pump, 1 heater, 2.. auxiliary).
        relay: u8,
        /// How.
        mode: RelayMode,
    },
    /// Restart the controller.
    Reboot,
    /// Send a status report now.
    SendStatus,
}

/// One decoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    /// Device -> server: a batch of log records.
    Telemetry(Telemetry<'a>),
    /// Device -> server: status report.
    Status(Status),
    /// Device -> server: what became of a configuration version.
    ConfigAck {
        /// The version concerned.
        version: u32,
        /// What happened to it.
        result: ConfigResult,
    },
    /// Device -> server: what became of a command.
    CommandAck {
        /// The command's id.
        id: u32,
        /// What happened to it.
        result: CommandResult,
    },
    /// Device -> server: keeps the NAT mapping open and tells the server which configuration the
    /// device runs.
    Keepalive {
        /// The device wants a [`Message::Pong`] (it uses that to tell a dead server).
        reply_wanted: bool,
        /// Configuration version the device runs.
        config_version: u32,
    },
    /// Server -> device: telemetry is durably stored up to and including `through_seq`.
    Ack {
        /// Highest record sequence number stored (all records of the batch it answers).
        through_seq: u32,
        /// Server clock, Unix seconds.
        server_time: u32,
    },
    /// Server -> device: the whole configuration, version `version`.
    Config {
        /// Version number.
        version: u32,
        /// The configuration.
        config: ConfigItems<'a>,
    },
    /// Server -> device: a command.
    Command {
        /// Id, echoed in the CommandAck.
        id: u32,
        /// The command.
        command: Command,
    },
    /// Server -> device: answer to a keepalive.
    Pong {
        /// Server clock, Unix seconds.
        server_time: u32,
    },
    /// A type code this implementation does not know.
    Unknown(u8),
}

/// The item list of a configuration message, validated, borrowed from the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigItems<'a> {
    bytes: &'a [u8],
}

impl<'a> ConfigItems<'a> {
    /// Validates an item list.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, MessageError> {
        Config::parse_items(bytes)?;
        Ok(ConfigItems { bytes })
    }

    /// Encodes `config` into `buf` and borrows the result, for sending.
    pub fn encode(config: &Config, buf: &'a mut [u8]) -> Result<Self, MessageError> {
        config.validate()?;
        let n = config.emit_items(buf).ok_or(MessageError::Buffer)?;
        Ok(ConfigItems { bytes: &buf[..n] })
    }

    /// The decoded configuration.
    pub fn to_config(&self) -> Config {
        // Decoded into the value returned, without a `Result<Config>` or a second copy of the
        // default in between: a device takes this on its loop's stack. Validated at
        // construction, so it cannot fail; if it did, the result would be the default.
        let mut config = Config::DEFAULT;
        let _ = config.parse_items_into(self.bytes);
        config
    }

    /// The encoded items.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }
}

fn exact<const N: usize>(body: &[u8]) -> Result<[u8; N], MessageError> {
    match body.len() {
        n if n < N => Err(MessageError::Truncated),
        n if n > N => Err(MessageError::Trailing),
        _ => {
            let mut a = [0u8; N];
            a.copy_from_slice(body);
            Ok(a)
        }
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl<'a> Message<'a> {
    /// Decodes one message (type byte and body).
    pub fn parse(bytes: &'a [u8]) -> Result<Message<'a>, MessageError> {
        let (&code_byte, body) = bytes.split_first().ok_or(MessageError::Truncated)?;
        Ok(match code_byte {
            code::TELEMETRY => Message::Telemetry(Telemetry::parse(body)?),
            code::STATUS => Message::Status(Status::parse(body)?),
            code::CONFIG_ACK => {
                let b: [u8; 5] = exact(body)?;
                let result = match b[4] {
                    0 => ConfigResult::Applied,
                    1 => ConfigResult::AppliedAtReset,
                    2 => ConfigResult::RolledBack,
                    _ => return Err(MessageError::Range),
                };
                Message::ConfigAck {
                    version: be32(&b),
                    result,
                }
            }
            code::COMMAND_ACK => {
                let b: [u8; 5] = exact(body)?;
                let result = match b[4] {
                    0 => CommandResult::Done,
                    1 => CommandResult::Refused,
                    _ => return Err(MessageError::Range),
                };
                Message::CommandAck {
                    id: be32(&b),
                    result,
                }
            }
            code::KEEPALIVE => {
                let b: [u8; 5] = exact(body)?;
                if b[0] & !1 != 0 {
                    return Err(MessageError::Range);
                }
                Message::Keepalive {
                    reply_wanted: b[0] & 1 != 0,
                    config_version: be32(&b[1..]),
                }
            }
            code::ACK => {
                let b: [u8; 8] = exact(body)?;
                Message::Ack {
                    through_seq: be32(&b),
                    server_time: be32(&b[4..]),
                }
            }
            code::CONFIG => {
                if body.len() < 4 {
                    return Err(MessageError::Truncated);
                }
                // Version 0 is the factory configuration, never sent (PROTOCOL.md 7.5): a
                // device must not store a configuration under it.
                if be32(body) == 0 {
                    return Err(MessageError::Range);
                }
                Message::Config {
                    version: be32(body),
                    config: ConfigItems::parse(&body[4..])?,
                }
            }
            code::COMMAND => {
                if body.len() < 5 {
                    return Err(MessageError::Truncated);
                }
                let (id, kind, args) = (be32(body), body[4], &body[5..]);
                let command = match kind {
                    1 => {
                        let a: [u8; 2] = exact(args)?;
                        let mode = match a[1] {
                            0 => RelayMode::Off,
                            1 => RelayMode::On,
                            2 => RelayMode::Auto,
                            _ => return Err(MessageError::Range),
                        };
                        if a[0] > 7 {
                            return Err(MessageError::Range);
                        }
                        Command::SetRelay { relay: a[0], mode }
                    }
                    2 => {
                        exact::<0>(args)?;
                        Command::Reboot
                    }
                    3 => {
                        exact::<0>(args)?;
                        Command::SendStatus
                    }
                    _ => return Err(MessageError::Range),
                };
                Message::Command { id, command }
            }
            code::PONG => {
                let b: [u8; 4] = exact(body)?;
                Message::Pong {
                    server_time: be32(&b),
                }
            }
            other => Message::Unknown(other),
        })
    }

    /// Bytes [`emit`](Self::emit) writes.
    pub fn buffer_len(&self) -> usize {
        1 + match self {
            Message::Telemetry(t) => t.as_bytes().len(),
            Message::Status(_) => status::LEN,
            Message::ConfigAck { .. } | Message::CommandAck { .. } | Message::Keepalive { .. } => 5,
            Message::Ack { .. } => 8,
            Message::Config { config, .. } => 4 + config.as_bytes().len(),
            Message::Command { command, .. } => {
                5 + match command {
                    Command::SetRelay { .. } => 2,
                    Command::Reboot | Command::SendStatus => 0,
                }
            }
            Message::Pong { .. } => 4,
            Message::Unknown(_) => 0,
        }
    }

    /// Writes the message into `buf`. Returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, MessageError> {
        let len = self.buffer_len();
        let buf = buf.get_mut(..len).ok_or(MessageError::Buffer)?;
        let (head, body) = buf.split_at_mut(1);
        match self {
            Message::Telemetry(t) => {
                head[0] = code::TELEMETRY;
                body.copy_from_slice(t.as_bytes());
            }
            Message::Status(s) => {
                head[0] = code::STATUS;
                s.emit(body).ok_or(MessageError::Buffer)?;
            }
            Message::ConfigAck { version, result } => {
                head[0] = code::CONFIG_ACK;
                body[..4].copy_from_slice(&version.to_be_bytes());
                body[4] = match result {
                    ConfigResult::Applied => 0,
                    ConfigResult::AppliedAtReset => 1,
                    ConfigResult::RolledBack => 2,
                };
            }
            Message::CommandAck { id, result } => {
                head[0] = code::COMMAND_ACK;
                body[..4].copy_from_slice(&id.to_be_bytes());
                body[4] = match result {
                    CommandResult::Done => 0,
                    CommandResult::Refused => 1,
                };
            }
            Message::Keepalive {
                reply_wanted,
                config_version,
            } => {
                head[0] = code::KEEPALIVE;
                body[0] = u8::from(*reply_wanted);
                body[1..].copy_from_slice(&config_version.to_be_bytes());
            }
            Message::Ack {
                through_seq,
                server_time,
            } => {
                head[0] = code::ACK;
                body[..4].copy_from_slice(&through_seq.to_be_bytes());
                body[4..].copy_from_slice(&server_time.to_be_bytes());
            }
            Message::Config { version, config } => {
                head[0] = code::CONFIG;
                body[..4].copy_from_slice(&version.to_be_bytes());
                body[4..].copy_from_slice(config.as_bytes());
            }
            Message::Command { id, command } => {
                head[0] = code::COMMAND;
                body[..4].copy_from_slice(&id.to_be_bytes());
                match command {
                    Command::SetRelay { relay, mode } => {
                        body[4] = 1;
                        body[5] = *relay;
                        body[6] = match mode {
                            RelayMode::Off => 0,
                            RelayMode::On => 1,
                            RelayMode::Auto => 2,
                        };
                    }
                    Command::Reboot => body[4] = 2,
                    Command::SendStatus => body[4] = 3,
                }
            }
            Message::Pong { server_time } => {
                head[0] = code::PONG;
                body.copy_from_slice(&server_time.to_be_bytes());
            }
            Message::Unknown(c) => head[0] = *c,
        }
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Byte fixtures: decode a known buffer, compare with the value, emit, compare the bytes.
    #[test]
    fn fixtures() {
        let cases: std::vec::Vec<(&[u8], Message)> = std::vec![
            (
                &[0x03, 0, 0, 0, 9, 1],
                Message::ConfigAck {
                    version: 9,
                    result: ConfigResult::AppliedAtReset
                },
            ),
            (
                &[0x04, 0, 0, 1, 0, 0],
                Message::CommandAck {
                    id: 256,
                    result: CommandResult::Done
                }
            ),
            (
                &[0x05, 1, 0, 0, 0, 3],
                Message::Keepalive {
                    reply_wanted: true,
                    config_version: 3
                }
            ),
            (
                &[0x81, 0, 0, 0, 42, 0x69, 0x2B, 0x5E, 0x00],
                Message::Ack {
                    through_seq: 42,
                    server_time: 0x692B_5E00
                },
            ),
            (
                &[0x83, 0, 0, 0, 7, 1, 0, 1],
                Message::Command {
                    id: 7,
                    command: Command::SetRelay {
                        relay: 0,
                        mode: RelayMode::On
                    }
                },
            ),
            (
                &[0x83, 0, 0, 0, 8, 2],
                Message::Command {
                    id: 8,
                    command: Command::Reboot
                }
            ),
            (&[0x84, 0, 0, 0, 1], Message::Pong { server_time: 1 }),
            (&[0x42, 1, 2], Message::Unknown(0x42)),
        ];
        for (bytes, msg) in cases {
            assert_eq!(Message::parse(bytes).unwrap(), msg, "{bytes:?}");
            let mut out = [0u8; 64];
            let n = msg.emit(&mut out).unwrap();
            if !matches!(msg, Message::Unknown(_)) {
                assert_eq!(&out[..n], bytes);
            }
        }
    }

    #[test]
    fn refused_bodies() {
        let cases: &[(&[u8], MessageError)] = &[
            (&[], MessageError::Truncated),
            (&[0x03, 0, 0, 0, 9], MessageError::Truncated),
            (&[0x03, 0, 0, 0, 9, 3], MessageError::Range),
            (&[0x03, 0, 0, 0, 9, 0, 0], MessageError::Trailing),
            (&[0x05, 2, 0, 0, 0, 3], MessageError::Range),
            (&[0x83, 0, 0, 0, 7, 1, 8, 1], MessageError::Range),
            (&[0x83, 0, 0, 0, 7, 1, 0, 3], MessageError::Range),
            (&[0x83, 0, 0, 0, 7, 9], MessageError::Range),
            (&[0x83, 0, 0, 0, 7, 2, 0], MessageError::Trailing),
            (&[0x82, 0, 0], MessageError::Truncated),
            (&[0x84, 0, 0, 0, 1, 5], MessageError::Trailing),
        ];
        for (bytes, err) in cases {
            assert_eq!(Message::parse(bytes), Err(*err), "{bytes:?}");
        }
    }

    #[test]
    fn config_message_round_trip() {
        let mut cfg = Config::default();
        cfg.thermostat.setpoint_cc = 2850;
        let mut items = [0u8; 200];
        let msg = Message::Config {
            version: 12,
            config: ConfigItems::encode(&cfg, &mut items).unwrap(),
        };
        let mut out = [0u8; 300];
        let n = msg.emit(&mut out).unwrap();
        match Message::parse(&out[..n]).unwrap() {
            Message::Config { version, config } => {
                assert_eq!(version, 12);
                assert_eq!(config.to_config(), cfg);
            }
            other => panic!("{other:?}"),
        }
        // Version 0 is the factory configuration and never sent (PROTOCOL.md 7.5): `range`.
        out[1..5].copy_from_slice(&0u32.to_be_bytes());
        assert_eq!(Message::parse(&out[..n]), Err(MessageError::Range));
        let mut bad = cfg.clone();
        bad.log_interval_s = 1;
        assert_eq!(
            ConfigItems::encode(&bad, &mut items),
            Err(MessageError::Range)
        );
    }

    #[test]
    fn status_round_trip() {
        let s = Status {
            transport: status::Transport::Gsm,
            flags: status::flag::DHCP | status::flag::TIME_SYNCED,
            ip: [10, 0, 2, 15],
            netmask: [255, 255, 255, 0],
            gateway: [10, 0, 2, 2],
            dns: [10, 0, 2, 3],
            uptime_s: 86_400,
            firmware: [1, 2, 3],
            config_version: 4,
            log_drops: 0,
            log_backlog: 17,
            traffic: status::Traffic {
                eth_tx: 1,
                eth_rx: 2,
                gsm_tx: 3,
                gsm_rx: 4,
            },
            gsm_signal: 99,
            radio: status::Radio::Data,
            relays: 0b11,
            server_index: 1,
        };
        let mut out = [0u8; 64];
        let n = Message::Status(s).emit(&mut out).unwrap();
        assert_eq!(n, 56);
        assert_eq!(Message::parse(&out[..n]).unwrap(), Message::Status(s));
        for (at, bad) in [(1, 2u8), (2, 0x10), (52, 50), (53, 5), (55, 8)] {
            let mut b = out;
            b[at] = bad;
            assert_eq!(
                Message::parse(&b[..n]),
                Err(MessageError::Range),
                "byte {at}"
            );
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_reemits(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            if let Ok(msg) = Message::parse(&bytes) {
                if !matches!(msg, Message::Unknown(_)) {
                    let mut out = [0u8; 512];
                    let n = msg.emit(&mut out).unwrap();
                    // Re-parsing what we emit gives the same message.
                    prop_assert_eq!(Message::parse(&out[..n]).unwrap(), msg);
                }
            }
        }
    }
}
