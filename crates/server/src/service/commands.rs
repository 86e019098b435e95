//! Commands to a controller (relay modes, send status, reboot): their names as the form and the
//! API use them, their text in the audit log and on the device page, and queueing one with its
//! access check and audit entry.

use crate::http::auth::Principal;
use crate::http::error::WebError;
use crate::http::Web;
use tek_proto::message::{Command, RelayMode};

/// A command as the audit log and the device page say it (`pump on`, `send status`).
pub fn command_text(c: &Command) -> String {
    match c {
        Command::SetRelay { relay, mode } => {
            let name = match relay {
                0 => "pump".to_owned(),
                1 => "heater".to_owned(),
                n => format!("relay {n}"),
            };
            let m = match mode {
                RelayMode::On => "on",
                RelayMode::Off => "off",
                RelayMode::Auto => "automatic",
            };
            format!("{name} {m}")
        }
        Command::Reboot => "reboot".into(),
        Command::SendStatus => "send status".into(),
    }
}

/// Parses a command name as the form and the API use it.
pub fn parse_command(action: &str) -> Result<Command, WebError> {
    let relay = |relay, mode| Ok(Command::SetRelay { relay, mode });
    // Auxiliary relays 2..=7 (which `tek device command --relay N` can queue): `relay2_on` ...
    if let Some((n, mode)) = action
        .strip_prefix("relay")
        .and_then(|rest| rest.split_once('_'))
    {
        let mode = match mode {
            "on" => Some(RelayMode::On),
            "off" => Some(RelayMode::Off),
            "auto" => Some(RelayMode::Auto),
            _ => None,
        };
        if let (Ok(n @ 2..=7), Some(mode)) = (n.parse::<u8>(), mode) {
            return relay(n, mode);
        }
    }
    match action {
        "pump_on" => relay(0, RelayMode::On),
        "pump_off" => relay(0, RelayMode::Off),
        "pump_auto" => relay(0, RelayMode::Auto),
        "heater_on" => relay(1, RelayMode::On),
        "heater_off" => relay(1, RelayMode::Off),
        "heater_auto" => relay(1, RelayMode::Auto),
        "status" => Ok(Command::SendStatus),
        "reboot" => Ok(Command::Reboot),
        other => Err(WebError::Invalid(format!(
            "unknown command {other:?} (pump_on, pump_off, pump_auto, heater_on, heater_off, heater_auto, status, reboot, relayN_on|off|auto for N 2..7)"
        ))),
    }
}

/// The name [`parse_command`] takes for `c`: what the API lists, so a script can send back what
/// it read.
pub fn command_name(c: &Command) -> String {
    match c {
        Command::SetRelay { relay, mode } => {
            let relay = match relay {
                0 => "pump".to_owned(),
                1 => "heater".to_owned(),
                n => format!("relay{n}"),
            };
            let mode = match mode {
                RelayMode::On => "on",
                RelayMode::Off => "off",
                RelayMode::Auto => "auto",
            };
            format!("{relay}_{mode}")
        }
        Command::Reboot => "reboot".into(),
        Command::SendStatus => "status".into(),
    }
}

/// Queues a command for a device the user may change, with an audit entry.
pub async fn queue(web: &Web, p: &Principal, id: u32, command: Command) -> Result<u32, WebError> {
    web.check_device(&p.user, id).await?;
    let cid = web.api.queue_command(id, command).await?;
    web.audit(
        p,
        "command.queue",
        Some(id),
        None,
        format!("command {cid}: {}", command_text(&command)),
    )
    .await?;
    Ok(cid)
}

#[cfg(test)]
mod command_name_tests {
    use super::{command_name, parse_command};
    use tek_proto::message::{Command, RelayMode};

    /// Every command the device understands has one name, and that name parses back to it: the
    /// API lists what one POSTs (it once listed Rust debug text such as `Reboot`).
    #[test]
    fn every_command_name_parses_back() {
        let mut all = vec![Command::Reboot, Command::SendStatus];
        for relay in 0..=7 {
            for mode in [RelayMode::On, RelayMode::Off, RelayMode::Auto] {
                all.push(Command::SetRelay { relay, mode });
            }
        }
        for c in all {
            let name = command_name(&c);
            assert_eq!(parse_command(&name).ok(), Some(c), "{name}");
        }
        assert_eq!(
            command_name(&Command::SetRelay {
                relay: 0,
                mode: RelayMode::On
            }),
            "pump_on"
        );
        for bad in ["relay8_on", "relay1_on", "relay2_up", "relay_on", "relay2"] {
            assert!(parse_command(bad).is_err(), "{bad}");
        }
    }
}
