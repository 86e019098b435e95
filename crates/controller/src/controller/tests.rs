//! Behaviour tests: one controller, a fake clock, a fake network and in-process servers
//! (see `testkit`).

use super::{Conn, Controller, Stats};
use crate::testkit::*;
use crate::{EthernetSetup, Iface, Led, StaticIp};
use std::string::ToString;
use std::vec::Vec;
use tek_proto::message::status::{flag, Transport};
use tek_proto::message::{Command, CommandResult, ConfigResult, RelayMode};

const S: u64 = 1000;
type N = Net<512>;

fn fixed_ip() -> StaticIp {
    StaticIp {
        ip: [192, 168, 1, 50],
        netmask: [255, 255, 255, 0],
        gateway: [192, 168, 1, 1],
        dns: [192, 168, 1, 1],
    }
}

#[test]
fn boot_persists_counter_before_first_hello_and_uses_dhcp() {
    let mut n = N::new(1);
    n.run_for(5 * S);
    let first_send = n
        .did
        .iter()
        .position(|d| matches!(d.1, Did::Send { .. }))
        .unwrap();
    let persist = n
        .did
        .iter()
        .position(|d| matches!(d.1, Did::Persist(_)))
        .unwrap();
    assert!(persist < first_send, "{:?}", n.did);
    assert!(n
        .did
        .iter()
        .any(|d| d.1 == Did::Configure(EthernetSetup::Dhcp)));
    assert!(n.ctl.is_connected());
    assert_eq!(n.ctl.boot_counter(), 1);
    assert_eq!(
        n.servers[0].hellos[0].1 >> 32,
        1,
        "boot half of the hello counter"
    );
    // Status at session start, DHCP flag, time synced from the Welcome.
    let st = n.servers[0].statuses.last().unwrap();
    assert_eq!(st.flags & flag::DHCP, flag::DHCP);
    assert_eq!(st.transport, Transport::Ethernet);
    assert_eq!(n.ctl.unix_time(n.now), Some(1_750_000_000 + 5));
    assert!(n.did.iter().any(|d| d.1 == Did::Led(Led::Online)));
    // Next boot: counter from flash, +1, and hello counters keep rising across the reboot.
    let last = n.servers[0].hellos.last().unwrap().1;
    n.reboot(false);
    n.run_for(5 * S);
    assert_eq!(n.ctl.boot_counter(), 2);
    assert!(n.servers[0].hellos.last().unwrap().1 > last);
    assert!(n.ctl.is_connected());
}

#[test]
fn list_walk_wraps_around_with_backoff() {
    let mut n = N::new(3);
    for s in &mut n.servers {
        s.alive = false;
    }
    n.run_for(400 * S);
    let hellos = n.hello_log();
    let order: Vec<usize> = hellos
        .iter()
        .map(|h| n.server_index(h.3).unwrap())
        .collect();
    assert_eq!(&order[..12], &[0, 0, 0, 1, 1, 1, 2, 2, 2, 0, 0, 0]);
    // Three Hellos 2 s apart per attempt, same port; a new port per attempt.
    assert_eq!(hellos[1].0 - hellos[0].0, 2 * S);
    assert_eq!(hellos[2].0 - hellos[1].0, 2 * S);
    assert_eq!(hellos[0].2, hellos[2].2);
    assert_eq!(
        hellos[3].0 - hellos[2].0,
        2 * S,
        "next server right after the timeout"
    );
    // Pass 1 ends 2 s after the ninth Hello; then 30 s +-25 %; then 60 s +-25 %.
    let gap1 = hellos[9].0 - (hellos[8].0 + 2 * S);
    let gap2 = hellos[18].0 - (hellos[17].0 + 2 * S);
    assert!((22_500..=37_500).contains(&gap1), "{gap1}");
    assert!((45_000..=75_000).contains(&gap2), "{gap2}");
    assert!(n.ctl.stats().failed_passes >= 3);
    // A server that comes back is found on a later pass, from the top of the list.
    n.servers[1].alive = true;
    n.run_for(700 * S);
    assert!(n.ctl.is_connected());
    assert_eq!(n.ctl.server_index(), Some(1));
}

#[test]
fn first_server_down_second_answers() {
    let mut n = N::new(2);
    n.servers[0].alive = false;
    n.run_for(10 * S);
    assert_eq!(n.ctl.server_index(), Some(1));
    assert!(n.servers[1].has_session());
}

#[test]
fn fresh_random_port_per_attempt_in_range() {
    let mut n = N::new(2);
    for s in &mut n.servers {
        s.alive = false;
    }
    n.has_gsm = false;
    n.reboot(false);
    n.run_for(4 * 3600 * S);
    let hellos = n.hello_log();
    let mut ports = std::collections::BTreeSet::new();
    for attempt in hellos.chunks(3) {
        assert!(
            attempt.iter().all(|h| h.2 == attempt[0].2),
            "same port within an attempt"
        );
        assert!((28672..=32767).contains(&attempt[0].2));
        ports.insert(attempt[0].2);
    }
    let attempts = hellos.len() / 3;
    assert!(attempts >= 40, "{attempts}");
    assert!(
        ports.len() * 10 >= attempts * 9,
        "{} distinct of {attempts}",
        ports.len()
    );
    // Hello counters strictly increase (a retransmitted Hello is a new Hello).
    let counters: Vec<u64> = n.servers[0].hellos.iter().map(|h| h.1).collect();
    assert!(counters.is_empty(), "dead servers record nothing");
}

#[test]
fn dns_names_and_dns_failure_counts_as_down() {
    let mut n = N::with_list(
        ["nowhere.example", "b.example:8844"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        2,
    );
    n.dns.insert("b.example".into(), [192, 0, 2, 2]);
    n.run_for(5 * S);
    assert!(n
        .did
        .iter()
        .any(|d| d.1 == Did::Resolve("nowhere.example".into())));
    assert!(n
        .did
        .iter()
        .any(|d| d.1 == Did::Resolve("b.example".into())));
    assert_eq!(n.ctl.server_index(), Some(1));
}

#[test]
fn telemetry_batches_are_acked_and_freed() {
    let mut n = N::new(1);
    n.run_for(3600 * S);
    let s = &n.servers[0];
    assert!(s.records.len() >= 55, "{}", s.records.len());
    // Records every 60 s with consecutive sequence numbers from 0.
    let seqs: Vec<u32> = s.records.keys().map(|k| k.1).collect();
    assert_eq!(seqs, (0..seqs.len() as u32).collect::<Vec<_>>());
    assert!(
        n.ctl.log().len() <= 5,
        "only the records since the last batch remain"
    );
    // Batches every 5 min (plus the first at session start).
    assert!((12..=14).contains(&s.batches), "{}", s.batches);
    assert_eq!(n.ctl.stats().records_acked, s.records.len() as u32);
    let r = s.records.values().nth(3).unwrap();
    assert_eq!(r.values[0], 1500);
    assert_eq!(r.values[2], 2600);
    // Keepalives fill the gaps, and the budget holds: well under 4 MB a month.
    assert!(!s.keepalives.is_empty());
    let t = n.ctl.traffic();
    let per_month = u64::from(t.eth_tx + t.eth_rx) * 24 * 30;
    assert!(per_month < 4_000_000, "{per_month} bytes/month");
}

#[test]
fn log_overflow_drops_oldest_counts_and_recovers() {
    let mut n = Net::<16>::new(1);
    n.has_gsm = false;
    n.reboot(false);
    n.servers[0].alive = false;
    n.run_for(40 * 60 * S);
    assert_eq!(n.ctl.log().len(), 16);
    assert!(n.ctl.log().drops() >= 20);
    n.servers[0].alive = true;
    n.run_for(15 * 60 * S);
    let drops = n.ctl.log().drops();
    assert!(n.ctl.is_connected());
    let s = &n.servers[0];
    // The oldest records were dropped; everything after them arrived and was acked.
    let first = *s.records.keys().next().unwrap();
    assert_eq!(first.1, drops);
    assert!(n.ctl.log().len() < 6);
    assert!(s.statuses.iter().any(|st| st.log_drops == drops));
}

#[test]
fn unacked_batch_is_retried_then_next_server() {
    let mut n = N::new(2);
    n.servers[0].withhold_acks = true;
    n.run_for(400 * S);
    let s0 = &n.servers[0];
    // The first batch at session start (empty log: none) then at the first record...
    assert!(s0.batches >= 4, "{}", s0.batches);
    assert!(n.ctl.stats().batch_retries >= 3);
    assert_eq!(n.ctl.stats().dead_servers, 1);
    assert_eq!(n.ctl.server_index(), Some(1));
    // The same records reached server 1 and were acked there.
    assert!(!n.servers[1].records.is_empty());
    assert_eq!(n.servers[1].records.keys().next().unwrap().1, 0);
}

#[test]
fn silent_server_detected_by_keepalive() {
    let mut n = N::new(2);
    n.run_for(10 * S);
    assert_eq!(n.ctl.server_index(), Some(0));
    // Server 0 keeps its session state but stops answering; batches every 300 s are not
    // due yet, so keepalives with reply_wanted find it out.
    n.servers[0].alive = false;
    n.run_for(420 * S);
    assert_eq!(n.ctl.server_index(), Some(1), "{:?}", n.ctl);
    assert_eq!(n.ctl.stats().dead_servers, 1);
}

#[test]
fn keepalive_wants_no_reply_while_batches_are_acked() {
    // At the defaults every batch's Ack proves the server alive, so no Keepalive asks for a
    // Pong (PROTOCOL.md 10.6): that is what keeps the monthly budget under 4 MB.
    let mut n = N::new(1);
    n.run_for(3 * S);
    n.servers[0].keepalives.clear();
    n.run_for(3600 * S);
    let k = &n.servers[0].keepalives;
    assert!(k.len() >= 40, "{k:?}");
    assert!(k.iter().all(|r| !*r), "{k:?}");
}

#[test]
fn gsm_failover_and_return() {
    let mut n = N::new(2);
    n.run_for(10 * S);
    assert_eq!(n.ctl.transport(), Iface::Ethernet);
    let mut cfg = config_with_servers(&["192.0.2.1:8844", "192.0.2.2:8844"]);
    cfg.gsm.apn = heapless::String::try_from("iot.example").unwrap();
    n.push_config(0, 1, &cfg);
    let t_cut = n.now;
    n.eth_path = false;
    n.run_for(600 * S);
    assert_eq!(n.ctl.transport(), Iface::Gsm);
    assert!(n
        .did
        .iter()
        .any(|d| d.1 == Did::ModemUp("iot.example".into())));
    let up_at = n
        .did
        .iter()
        .find(|d| matches!(d.1, Did::ModemUp(_)))
        .unwrap()
        .0;
    assert!(
        up_at - t_cut >= 300 * S && up_at - t_cut <= 360 * S,
        "{}",
        up_at - t_cut
    );
    assert!(n.ctl.is_connected());
    assert_eq!(n.ctl.stats().failovers, 1);
    let st = n.servers[0].statuses.last().unwrap();
    assert_eq!(st.transport, Transport::Gsm);
    let gsm_tx = n.ctl.traffic().gsm_tx;
    assert!(gsm_tx > 0);
    // Ethernet comes back: within one probe interval the controller returns.
    n.eth_path = true;
    let back = n.now;
    n.run_for(700 * S);
    assert_eq!(n.ctl.transport(), Iface::Ethernet);
    assert_eq!(n.ctl.stats().returns, 1);
    let down = n.did.iter().find(|d| d.1 == Did::ModemDown).unwrap().0;
    assert!(down - back <= 600 * S + 10 * S);
    let st = n.servers[0].statuses.last().unwrap();
    assert_eq!(st.transport, Transport::Ethernet);
    assert_eq!(st.traffic.gsm_tx, n.ctl.traffic().gsm_tx);
    assert!(st.traffic.gsm_rx > 0 && st.traffic.eth_rx > 0);
    // No record lost across both switches.
    let seqs: Vec<u32> = n
        .servers
        .iter()
        .flat_map(|s| s.records.keys().map(|k| k.1))
        .collect();
    let max = *seqs.iter().max().unwrap();
    for q in 0..=max {
        assert!(seqs.contains(&q), "record {q} missing");
    }
}

#[test]
fn halt_forces_dhcp_over_stored_fixed_ip() {
    let mut n = N::new(1);
    n.run_for(5 * S);
    let mut cfg = config_with_servers(&["192.0.2.1:8844"]);
    cfg.ethernet = Some(fixed_ip());
    n.push_config(0, 1, &cfg);
    n.reboot(true);
    n.run_for(5 * S);
    assert!(n
        .did
        .iter()
        .filter(|d| d.0 == 0 || d.0 < 5 * S)
        .any(|d| d.1 == Did::Configure(EthernetSetup::Dhcp)));
    assert!(n.did.iter().rev().any(|d| d.1 == Did::Led(Led::Halt)));
    assert_eq!(n.ctl.ethernet_in_use(), None);
    assert!(n.ctl.is_connected());
    let st = n.servers[0].statuses.last().unwrap();
    assert_eq!(
        st.flags & (flag::HALT | flag::DHCP),
        flag::HALT | flag::DHCP
    );
    assert_eq!(
        n.ctl.config().1.ethernet,
        Some(fixed_ip()),
        "stored settings kept"
    );
}

#[test]
fn fixed_ip_takes_effect_at_next_reset() {
    let mut n = N::new(1);
    n.run_for(5 * S);
    let mut cfg = config_with_servers(&["192.0.2.1:8844"]);
    cfg.ethernet = Some(fixed_ip());
    let before = n.did.len();
    n.push_config(0, 7, &cfg);
    n.run_for(S);
    assert_eq!(
        n.servers[0].config_acks,
        [(7, ConfigResult::AppliedAtReset)]
    );
    assert!(
        !n.did[before..]
            .iter()
            .any(|d| matches!(d.1, Did::Configure(_))),
        "not reconfigured before the reset"
    );
    // A re-sent copy is only confirmed again.
    n.push_config(0, 7, &cfg);
    assert_eq!(n.servers[0].config_acks.len(), 2);
    assert_eq!(n.ctl.stats().configs_applied, 1);
    n.reboot(false);
    n.run_for(5 * S);
    assert!(n
        .did
        .iter()
        .any(|d| d.0 == 0 && d.1 == Did::Configure(EthernetSetup::Static(fixed_ip()))));
    assert!(n.ctl.is_connected());
    assert!(
        !n.ctl.on_trial(),
        "reaching a server commits the new settings"
    );
    let st = n.servers[0].statuses.last().unwrap();
    assert_eq!(st.flags & flag::DHCP, 0);
    assert_eq!(st.ip, fixed_ip().ip);
    assert_eq!(st.config_version, 7);
}

#[test]
fn bad_server_list_is_rolled_back() {
    let mut n = N::new(2);
    n.servers[1].alive = false;
    n.run_for(5 * S);
    let good = config_with_servers(&["192.0.2.1:8844"]);
    n.push_config(0, 1, &good);
    n.run_for(S);
    // Version 2 points at a server that never answers.
    let bad = config_with_servers(&["192.0.2.2:8844"]);
    n.push_config(0, 2, &bad);
    assert_eq!(
        n.servers[0].config_acks.last(),
        Some(&(2, ConfigResult::Applied))
    );
    n.has_gsm = false;
    n.run_for(899 * S);
    assert!(!n.ctl.is_connected());
    assert_eq!(n.ctl.config().0, 2);
    n.run_for(60 * S);
    assert_eq!(n.ctl.config().0, 1, "rolled back");
    assert!(n.ctl.is_connected());
    assert_eq!(
        n.servers[0].config_acks.last(),
        Some(&(2, ConfigResult::RolledBack))
    );
    let st = n.servers[0].statuses.last().unwrap();
    assert_eq!(st.flags & flag::ROLLED_BACK, flag::ROLLED_BACK);
    assert_eq!(st.config_version, 1);
    // Flash holds the restored configuration and remembers the failure across a reboot.
    let stored = crate::persist::load(&n.flash[0], &n.flash[1]).unwrap();
    assert_eq!((stored.version, stored.rolled_back), (1, Some(2)));
    assert!(stored.previous.is_none());
    // Re-sent, the failed version is refused again, not re-applied.
    n.push_config(0, 2, &bad);
    assert_eq!(n.ctl.config().0, 1);
    assert_eq!(
        n.servers[0].config_acks.last(),
        Some(&(2, ConfigResult::RolledBack))
    );
}

#[test]
fn bad_fixed_ip_is_rolled_back_after_reset() {
    let mut n = N::new(1);
    n.has_gsm = false;
    n.reboot(false);
    n.run_for(5 * S);
    let mut cfg = config_with_servers(&["192.0.2.1:8844"]);
    cfg.ethernet = Some(fixed_ip());
    n.push_config(0, 3, &cfg);
    // With the fixed settings the network is unreachable (wrong subnet, say).
    n.reboot(false);
    n.eth_path = false;
    n.run_for(10 * S);
    assert!(n.ctl.on_trial());
    n.run_for(900 * S);
    assert_eq!(n.ctl.ethernet_in_use(), None);
    assert!(n
        .did
        .iter()
        .rev()
        .any(|d| d.1 == Did::Configure(EthernetSetup::Dhcp)));
    n.eth_path = true;
    n.run_for(700 * S);
    assert!(n.ctl.is_connected());
    assert!(n.servers[0]
        .config_acks
        .contains(&(3, ConfigResult::RolledBack)));
}

#[test]
fn setpoint_from_server_and_thermostat_offline() {
    let mut n = N::new(1);
    n.water_cc = 2500;
    n.run_for(20 * S);
    assert_eq!(n.ctl.relays() & 2, 2, "cold water: heater on");
    let mut cfg = config_with_servers(&["192.0.2.1:8844"]);
    cfg.thermostat.setpoint_cc = 2400;
    n.push_config(0, 1, &cfg);
    n.run_for(20 * S);
    assert_eq!(n.ctl.relays() & 2, 0, "setpoint lowered: heater off");
    assert!(n.did.iter().any(|d| d.1 == Did::Relay(1, false)));
    // Offline: the thermostat keeps working.
    n.eth_path = false;
    n.gsm_path = false;
    n.water_cc = 2300;
    n.run_for(3600 * S);
    assert!(!n.ctl.is_connected());
    assert_eq!(n.ctl.relays() & 2, 2);
    n.water_cc = 2460;
    n.run_for(20 * S);
    assert_eq!(n.ctl.relays() & 2, 0);
}

#[test]
fn commands_relay_and_reboot() {
    let mut n = N::new(1);
    n.run_for(5 * S);
    n.push_command(
        0,
        10,
        Command::SetRelay {
            relay: 3,
            mode: RelayMode::On,
        },
    );
    assert!(n.did.iter().any(|d| d.1 == Did::Relay(3, true)));
    assert_eq!(n.servers[0].command_acks, [(10, CommandResult::Done)]);
    n.push_command(0, 11, Command::Reboot);
    let ack_at = n
        .did
        .iter()
        .rposition(|d| matches!(d.1, Did::Send { .. }))
        .unwrap();
    let reset_at = n.did.iter().rposition(|d| d.1 == Did::Reset).unwrap();
    assert!(ack_at < reset_at, "acknowledged before the reset");
    assert_eq!(
        n.servers[0].command_acks.last(),
        Some(&(11, CommandResult::Done))
    );
}

#[test]
fn rekey_after_a_day() {
    let mut n = N::new(1);
    n.run_for(25 * 3600 * S);
    assert_eq!(n.ctl.stats().sessions, 2);
    assert!(n.ctl.is_connected());
}

/// Runs a session with every kind of server datagram (Welcome, Ack, Pong, Config, Command).
fn busy_session() -> N {
    let mut n = N::new(2);
    n.run_for(400 * S);
    n.push_config(
        0,
        1,
        &config_with_servers(&["192.0.2.1:8844", "192.0.2.2:8844"]),
    );
    n.push_command(0, 5, Command::SendStatus);
    n.push_command(
        0,
        6,
        Command::SetRelay {
            relay: 2,
            mode: RelayMode::On,
        },
    );
    n.run_for(1800 * S);
    n
}

#[test]
fn replay_of_every_server_datagram_changes_nothing() {
    let mut n = busy_session();
    assert!(n.captured.len() > 10);
    let before = n.ctl.fingerprint();
    let actions = n.did.len();
    let captured = n.captured.clone();
    for (iface, from, port, bytes) in captured {
        n.deliver(iface, from, port, bytes);
        let now = n.now;
        assert!(n.ctl.poll(now, &mut n.rng).is_none());
    }
    assert_eq!(n.ctl.fingerprint(), before);
    assert_eq!(n.did.len(), actions);
}

#[test]
fn garbage_is_ignored_silently() {
    let mut n = busy_session();
    let before = n.ctl.fingerprint();
    let port = n.ctl.ports()[0].unwrap().1;
    let from = n.servers[0].ep;
    let mut rng = crate::XorShift::new(5);
    let captured: Vec<Vec<u8>> = n.captured.iter().map(|c| c.3.clone()).collect();
    use crate::Entropy;
    for i in 0..3000 {
        let mut bytes = if i % 2 == 0 {
            let len = (rng.next_u32() % 1100) as usize;
            let mut b = std::vec![0u8; len];
            rng.fill(&mut b);
            if len > 2 && i % 4 == 0 {
                b[0] = 1;
                b[1] = 1 + (rng.next_u32() % 3) as u8;
            }
            b
        } else {
            // A genuine datagram with one bit flipped, or cut short.
            let mut b = captured[i % captured.len()].clone();
            let bit = rng.next_u32() as usize % (b.len() * 8);
            if i % 3 == 0 {
                b.truncate(bit / 8);
            } else {
                b[bit / 8] ^= 1 << (bit % 8);
            }
            b
        };
        let to_port = if i % 5 == 0 {
            port.wrapping_add(1)
        } else {
            port
        };
        n.ctl
            .receive(n.now, Iface::Ethernet, from, to_port, &mut bytes);
        n.ctl.receive(n.now, Iface::Gsm, from, to_port, &mut bytes);
        let now = n.now;
        assert!(n.ctl.poll(now, &mut n.rng).is_none());
    }
    assert_eq!(n.ctl.fingerprint(), before);
    assert!(n.ctl.stats().ignored >= 6000);
    // And the session still works.
    n.run_for(600 * S);
    assert!(n.ctl.is_connected());
    assert_eq!(n.ctl.stats().dead_servers, 0);
}

#[test]
fn controller_fits_the_firmware_budget() {
    let size = core::mem::size_of::<crate::Controller<crate::log::Log<3072>>>();
    let log = core::mem::size_of::<crate::log::Log<3072>>();
    std::eprintln!("Controller<crate::log::Log<3072>>: {size} bytes, of which the log {log}");
    assert!(
        size - log <= 8 * 1024,
        "controller without log: {} bytes",
        size - log
    );
}

/// Everything a host can see of a controller at `now`, then the actions it takes: at once, and
/// after its Ethernet port got an address (handshake datagrams included, so the keys count).
fn observe<const L: usize>(
    ctl: &mut crate::Controller<crate::log::Log<L>>,
    now: u64,
) -> std::string::String {
    use std::fmt::Write;
    let mut out = std::format!(
        "{} | boot {} | cfg {:?} | eth {:?} trial {} | relays {} | log {} {} {} {} | {:?} | \
         {:?} | {:?} | at {} | {:?} | {} {:?} {:?}",
        ctl.fingerprint(),
        ctl.boot_counter(),
        ctl.config(),
        ctl.ethernet_in_use(),
        ctl.on_trial(),
        ctl.relays(),
        ctl.log().len(),
        ctl.log().first_seq(),
        ctl.log().next_seq(),
        ctl.log().drops(),
        ctl.stats(),
        ctl.traffic(),
        ctl.status(now),
        ctl.poll_at(),
        ctl.ports(),
        ctl.is_connected(),
        ctl.transport(),
        ctl.unix_time(now),
    );
    let mut rng = crate::XorShift::new(7);
    while let Some(a) = ctl.poll(now, &mut rng) {
        write!(out, " | {a:?}").unwrap();
    }
    ctl.ip_configured(
        now,
        Iface::Ethernet,
        crate::IpInfo {
            ip: ETH_IP,
            netmask: [255, 255, 255, 0],
            gateway: [10, 0, 2, 2],
            dns: [10, 0, 2, 3],
            dhcp: true,
        },
    );
    for _ in 0..8 {
        match ctl.poll(now + 1, &mut rng) {
            Some(a) => write!(out, " | {a:?}").unwrap(),
            None => break,
        }
    }
    out
}

fn setup<'a>(list: &'a [&'a str], flash: &[Vec<u8>; 2], halt: bool) -> crate::Setup<'a> {
    crate::Setup {
        device_id: ID,
        key: KEY,
        factory_servers: list,
        firmware: [0, 1, 0],
        halt,
        has_gsm: true,
        stored: crate::persist::load(&flash[0], &flash[1]),
    }
}

/// A controller with a history: session, records, a relay override, a fixed IP waiting for the
/// next reset (a network change on trial), time synced, traffic counted. Deterministic, so two
/// calls give two equal controllers.
fn used() -> N {
    let mut n = N::new(2);
    n.run_for(600 * S);
    n.push_command(
        0,
        7,
        Command::SetRelay {
            relay: 3,
            mode: RelayMode::On,
        },
    );
    let mut cfg = config_with_servers(&["192.0.2.1:8844", "192.0.2.2:8844"]);
    cfg.log_interval_s = 30;
    cfg.ethernet = Some(fixed_ip());
    n.push_config(0, 5, &cfg);
    n.run_for(30 * S);
    assert!(n.ctl.on_trial() && n.ctl.log().next_seq() > 0 && n.ctl.relays() & 8 != 0);
    n
}

#[test]
fn boot_in_place_equals_new() {
    let list = ["192.0.2.1:8844", "192.0.2.2:8844"];
    for halt in [false, true] {
        let now = 1234;
        let flash = used().flash;
        let mut fresh =
            crate::Controller::<crate::log::Log<512>>::new(setup(&list, &flash, halt), now);
        let want = observe(&mut fresh, now);
        assert!(
            want.contains("Persist") && want.contains("trial true"),
            "{want}"
        );
        // blank + boot on a value.
        let mut blank = crate::Controller::<crate::log::Log<512>>::blank();
        blank.boot(setup(&list, &flash, halt), now);
        assert_eq!(observe(&mut blank, now), want);
        // Re-booting a used controller in place leaves nothing of its past behind.
        let mut n = used();
        assert_ne!(observe(&mut used().ctl, now), want);
        n.ctl.boot(setup(&list, &flash, halt), now);
        assert_eq!(observe(&mut n.ctl, now), want);
        // Reading flash itself, slot by slot.
        let mut n = used();
        let mut s = setup(&list, &flash, halt);
        s.stored = None;
        let h = n
            .ctl
            .boot_from_flash(s, &mut |slot, buf| read_slot(&flash, slot, buf), now);
        let stored = crate::persist::load(&flash[0], &flash[1]).unwrap();
        assert_eq!(h.map(|h| (h.seq, h.boot)), Some((stored.seq, stored.boot)));
        assert_eq!(observe(&mut n.ctl, now), want);
    }
}

#[test]
fn boot_from_flash_picks_the_record_load_picks() {
    use crate::persist::{encode, MAX_LEN};
    use tek_proto::message::config::Config;
    let rec = |seq: u32, boot: u32, cfg: &Config| {
        let mut b = std::vec![0xFFu8; MAX_LEN];
        encode(
            &mut b,
            seq,
            boot,
            seq.wrapping_add(100),
            cfg,
            None,
            Some(seq),
        )
        .unwrap();
        b
    };
    let blank = std::vec![0xFFu8; MAX_LEN];
    let mut other = Config::default();
    other.thermostat.setpoint_cc = 3100;
    let mut torn = rec(9, 9, &other);
    torn[40..].fill(0xFF);
    // CRC-valid, but the configuration does not decode (logging interval out of range).
    let invalid = Config {
        log_interval_s: 5,
        ..Config::default()
    };
    let invalid = rec(9, 9, &invalid);
    type Case = (&'static str, [Vec<u8>; 2], Option<u32>);
    let cases: [Case; 8] = [
        ("blank", [blank.clone(), blank.clone()], None),
        (
            "1 newer",
            [rec(4, 4, &other), rec(5, 5, &Config::default())],
            Some(5),
        ),
        (
            "0 newer",
            [rec(6, 6, &other), rec(5, 5, &Config::default())],
            Some(6),
        ),
        (
            "wrap",
            [rec(u32::MAX, 1, &other), rec(0, 2, &Config::default())],
            Some(0),
        ),
        (
            "equal",
            [rec(3, 1, &other), rec(3, 2, &Config::default())],
            Some(3),
        ),
        ("torn newer", [rec(8, 8, &other), torn], Some(8)),
        (
            "invalid newer",
            [rec(8, 8, &other), invalid.clone()],
            Some(8),
        ),
        ("only 1", [blank.clone(), rec(2, 2, &other)], Some(2)),
    ];
    let list = ["192.0.2.1:8844"];
    for (what, flash, seq) in cases {
        let mut want =
            crate::Controller::<crate::log::Log<16>>::new(setup(&list, &flash, false), 0);
        let mut got = crate::Controller::<crate::log::Log<16>>::blank();
        let mut s = setup(&list, &flash, false);
        s.stored = None;
        let mut reads = 0;
        let h = got.boot_from_flash(
            s,
            &mut |slot, buf| {
                reads += 1;
                read_slot(&flash, slot, buf)
            },
            0,
        );
        assert_eq!(h.map(|h| h.seq), seq, "{what}");
        assert!(reads <= 3, "{what}: {reads} reads");
        assert_eq!(observe(&mut got, 0), observe(&mut want, 0), "{what}");
    }
    // An unreadable slot counts as blank.
    let flash = [rec(1, 1, &other), rec(2, 2, &Config::default())];
    let mut got = crate::Controller::<crate::log::Log<16>>::blank();
    let mut s = setup(&list, &flash, false);
    s.stored = None;
    let h = got.boot_from_flash(
        s,
        &mut |slot, buf| slot == 0 && read_slot(&flash, 0, buf),
        0,
    );
    assert_eq!(h.map(|h| h.seq), Some(1));
    assert_eq!(got.config().1.thermostat.setpoint_cc, 3100);
    assert_eq!(got.boot_counter(), 2);
}

#[test]
fn new_log_interval_reschedules_the_next_record() {
    // Factory interval 60 s; a configuration with 10 s arrives 5 s after power-up: the first
    // record is due 10 s after power-up, not at 60 s.
    let mut n = N::new(1);
    n.run_for(5 * S);
    assert!(n.ctl.is_connected());
    let mut cfg = tek_proto::message::config::Config {
        log_interval_s: 10,
        ..Default::default()
    };
    n.push_config(0, 1, &cfg);
    n.run_until(10 * S - 1);
    assert_eq!(n.ctl.stats().records_logged, 0);
    n.run_until(10 * S);
    assert_eq!(n.ctl.stats().records_logged, 1);
    n.run_until(35 * S);
    assert_eq!(n.ctl.stats().records_logged, 3, "at 10, 20 and 30 s");
    // Longer: one new interval after the last record (30 s + 120 s).
    cfg.log_interval_s = 120;
    n.push_config(0, 2, &cfg);
    n.run_until(150 * S - 1);
    assert_eq!(n.ctl.stats().records_logged, 3);
    n.run_until(150 * S);
    assert_eq!(n.ctl.stats().records_logged, 4);
    // Shorter, with the new interval already past since the last record: at once.
    n.run_until(200 * S);
    cfg.log_interval_s = 30;
    n.push_config(0, 3, &cfg);
    assert_eq!(n.ctl.stats().records_logged, 5);
    n.run_until(230 * S);
    assert_eq!(n.ctl.stats().records_logged, 6);
    // The first record went out at once (a session's first batch is due at its start), the
    // others wait in the log for the next batch, 300 s later.
    assert_eq!(n.ctl.stats().records_acked, 1);
    let log = n.ctl.log();
    let times: Vec<u32> = (1..6).map(|q| log.get(q).unwrap().time_s).collect();
    assert_eq!(times, [20, 30, 150, 200, 230]);
}

#[test]
fn probe_interval_can_be_shortened() {
    // The GSM test bench (scripts/gsm-e2e.sh) probes Ethernet every 40 s instead of 10 minutes.
    let mut n = N::new(1);
    n.ctl.set_probe_interval(40_000);
    n.run_for(10 * S);
    let cfg = config_with_servers(&["192.0.2.1:8844"]);
    n.push_config(0, 1, &cfg);
    n.eth_path = false;
    n.run_for(400 * S);
    assert_eq!(n.ctl.transport(), Iface::Gsm);
    n.eth_path = true;
    let back = n.now;
    n.run_for(60 * S);
    assert_eq!(n.ctl.transport(), Iface::Ethernet);
    let down = n.did.iter().find(|d| d.1 == Did::ModemDown).unwrap().0;
    assert!(down - back <= 40 * S + 10 * S, "{}", down - back);
    // 0 restores the default: no return within a minute of the next cut-and-restore.
    n.ctl.set_probe_interval(0);
    n.eth_path = false;
    n.run_for(400 * S);
    assert_eq!(n.ctl.transport(), Iface::Gsm);
    n.eth_path = true;
    n.run_for(60 * S);
    assert_eq!(n.ctl.transport(), Iface::Gsm);
}

impl<L: crate::record_log::RecordLog, X: crate::channel_part::ChannelSupport> Controller<L, X> {
    /// Everything observable except traffic counters and `Stats::ignored`, for tests that
    /// check that a datagram changed nothing.
    pub(crate) fn fingerprint(&self) -> std::string::String {
        let conn = match &self.link.conn {
            Conn::Up(up) => std::format!(
                "up {} {} {:?} {:?} {} {} {:?} {} {:?} {} {:?}",
                up.server,
                up.port,
                up.session.send_counter(),
                up.session.highest_received(),
                up.session.session_id(),
                up.counter,
                up.batch,
                up.last_rx,
                up.probing,
                up.next_batch_at,
                up.backlog_gate
            ),
            other => std::format!("{other:?}"),
        };
        let stats = Stats {
            ignored: 0,
            ..self.stats
        };
        let (log, cfg, o) = (&self.logging.log, &self.cfg, &self.outbox);
        std::format!(
            "{conn} | {:?} {:?} | log {} {} {} | cfg {} {:?} {:?} | relays {} | t {:?} | {:?} | \
             {:?} {:?} {:?} {} {} {} | {:?} {:?} {:?}",
            self.link.walk,
            self.transport.probe,
            log.oldest(),
            log.len(),
            log.drops(),
            cfg.version,
            cfg.previous.as_ref().map(|p| p.0),
            cfg.rolled_back,
            self.plant.relays.state(),
            self.plant.time_offset,
            stats,
            o.config_ack,
            o.rollback_report,
            o.command_acks,
            o.status_due,
            self.effects.len(),
            self.hellos.attempts,
            self.transport.active,
            self.transport.net,
            o.last_command
        )
    }
}
