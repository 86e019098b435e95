//! Why a controller rolled a configuration back, for the Configure page.
//!
//! The controller's ConfigAck says only *rolled back* (docs/PROTOCOL.md 7.1: result 2, no reason
//! code). But the protocol allows one cause (10.8): the version changed how the device reaches
//! the servers (Ethernet, GSM or the server list), it was tried, and no server accepted a
//! session with it within the version's rollback delay. So the reason shown is that rule plus
//! the network settings the rolled-back version changed against the one the controller runs
//! again — both known to the server — never a guess about which of them failed.

use tek_proto::message::config::StaticIp;
use tek_proto::message::Config;

fn dotted(a: [u8; 4]) -> String {
    format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3])
}

fn ethernet(e: &Option<StaticIp>) -> String {
    match e {
        None => "DHCP".into(),
        Some(s) => format!(
            "fixed {} netmask {} gateway {} DNS {}",
            dotted(s.ip),
            dotted(s.netmask),
            dotted(s.gateway),
            dotted(s.dns)
        ),
    }
}

fn servers(c: &Config) -> String {
    if c.servers.is_empty() {
        "the factory list".into()
    } else {
        c.servers
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The network settings `tried` changed against `running`, one line each, as people read them
/// ("Ethernet: fixed 10.0.0.9 … (runs: DHCP)"). The GSM password is named, never shown.
pub fn network_changes(running: &Config, tried: &Config) -> Vec<String> {
    let mut out = Vec::new();
    if running.ethernet != tried.ethernet {
        out.push(format!(
            "Ethernet: {} (runs: {})",
            ethernet(&tried.ethernet),
            ethernet(&running.ethernet)
        ));
    }
    if running.gsm.apn != tried.gsm.apn {
        out.push(format!(
            "GSM APN: {:?} (runs: {:?})",
            tried.gsm.apn.as_str(),
            running.gsm.apn.as_str()
        ));
    }
    if running.gsm.login != tried.gsm.login {
        out.push(format!(
            "GSM login: {:?} (runs: {:?})",
            tried.gsm.login.as_str(),
            running.gsm.login.as_str()
        ));
    }
    if running.gsm.password != tried.gsm.password {
        out.push("GSM password: changed".into());
    }
    if running.servers != tried.servers {
        out.push(format!(
            "servers: {} (runs: {})",
            servers(tried),
            servers(running)
        ));
    }
    out
}

/// The sentence that says why: the protocol's one cause of a rollback, with the version's
/// rollback delay.
pub fn reason(tried_version: u32, tried: &Config) -> String {
    format!(
        "v{tried_version} changed how the controller reaches the servers, and no server accepted a \
         session with it within {} s (its rollback delay), so the controller restored the \
         configuration it ran before. The controller reports no more than that; the changes it \
         tried:",
        tried.rollback_s
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_network_settings_are_listed_and_the_password_is_not_shown() {
        let running = Config::default();
        let mut tried = running.clone();
        assert!(network_changes(&running, &tried).is_empty());
        tried.ethernet = Some(StaticIp {
            ip: [192, 168, 1, 50],
            netmask: [255, 255, 255, 0],
            gateway: [192, 168, 1, 1],
            dns: [1, 1, 1, 1],
        });
        tried.gsm.password = "hunter2-secret".try_into().unwrap();
        tried.servers.clear();
        tried.servers.push("b.example".try_into().unwrap()).unwrap();
        tried.log_interval_s = running.log_interval_s + 10;
        let lines = network_changes(&running, &tried);
        assert_eq!(
            lines[0],
            "Ethernet: fixed 192.168.1.50 netmask 255.255.255.0 gateway 192.168.1.1 DNS 1.1.1.1 (runs: DHCP)"
        );
        assert_eq!(lines[1], "GSM password: changed");
        assert!(
            lines[2].starts_with("servers: b.example (runs: "),
            "{lines:?}"
        );
        assert_eq!(lines.len(), 3, "only network settings: {lines:?}");
        assert!(!lines.concat().contains("hunter2"));
        assert!(reason(4, &tried).contains(&format!("within {} s", tried.rollback_s)));
    }
}
