//! The controller following its schedule: offline, across daylight-saving changes and holidays,
//! with the interlocks (see `schedule`, `local_time`, `interlock`).

use crate::testkit::*;
use heapless::{String, Vec};
use tek_proto::message::config::{Config, Freeze, Schedule, SwitchPoint, HOLIDAY};
use tek_proto::message::{Command, RelayMode};
use tek_proto::tz::days_from_civil;

const S: u64 = 1000;
const MIN: u64 = 60 * S;
type N = Net<512>;

fn utc(y: i32, mo: u32, d: u32, h: i64, mi: i64) -> i64 {
    i64::from(days_from_civil(y, mo, d)) * 86_400 + h * 3600 + mi * 60
}

/// A server configuration with a Central European schedule.
fn scheduled(points: &[(u8, u16, bool, bool)], holidays: &[(i32, u32, u32)]) -> Config {
    let mut cfg = config_with_servers(&["192.0.2.1:8844"]);
    let mut v = Vec::new();
    for &(d, m, pump, occ) in points {
        v.push(SwitchPoint::new(d, m, pump, occ).unwrap()).unwrap();
    }
    cfg.schedule = Some(Schedule {
        unoccupied_cc: 2400,
        points: v,
    });
    for &(y, m, d) in holidays {
        cfg.holidays.push(days_from_civil(y, m, d) as u16).unwrap();
    }
    cfg.time_zone = String::try_from("CET-1CEST,M3.5.0,M10.5.0/3").unwrap();
    cfg.validate().unwrap();
    cfg
}

/// Starts a controller whose server says it is `start` (UTC), gives it `cfg`, cuts the network
/// and runs `hours` offline. Returns the relay changes from the configuration on, as
/// (UTC seconds, relay, on), and the controller.
fn offline_run(start: i64, cfg: &Config, hours: u64) -> (std::vec::Vec<(i64, u8, bool)>, N) {
    let mut n = N::new(1);
    n.servers[0].time = start as u32;
    n.water_cc = 2600; // below the occupied setpoint (27.00), above the unoccupied one (24.00)
    n.run_for(5 * S);
    assert!(n.ctl.is_connected());
    let from = n.did.len();
    n.push_config(0, 1, cfg);
    assert_eq!(n.ctl.config().0, 1);
    n.eth_path = false;
    n.gsm_path = false;
    n.run_for(hours * 3600 * S);
    assert!(!n.ctl.is_connected(), "ran offline");
    let offset = n.ctl.unix_time(n.now).unwrap() - (n.now / 1000) as i64;
    // Replay every relay action: the heater never ran while the pump was off.
    let mut state = 0u8;
    let mut changes = std::vec::Vec::new();
    for (i, (at, did)) in n.did.iter().enumerate() {
        if let Did::Relay(r, on) = *did {
            state = if on {
                state | 1 << r
            } else {
                state & !(1 << r)
            };
            assert!(
                state & 2 == 0 || state & 1 == 1,
                "heater without pump at {at}"
            );
            if i >= from {
                changes.push(((at / 1000) as i64 + offset, r, on));
            }
        }
    }
    (changes, n)
}

fn pump(changes: &[(i64, u8, bool)]) -> std::vec::Vec<(i64, bool)> {
    changes
        .iter()
        .filter(|c| c.1 == 0)
        .map(|c| (c.0, c.2))
        .collect()
}

#[test]
fn offline_across_fall_back_and_a_holiday() {
    // Sunday 2026-10-25: 03:00 CEST -> 02:00 CET at 01:00 UTC. Sunday: pump 01:00-02:30,
    // unoccupied. Monday 26th is a holiday: 10:00-12:00 occupied instead of 06:00-07:00.
    let cfg = scheduled(
        &[
            (0, 360, true, true),
            (0, 420, false, false),
            (6, 60, true, false),
            (6, 150, false, false),
            (HOLIDAY, 600, true, true),
            (HOLIDAY, 720, false, false),
        ],
        &[(2026, 10, 26)],
    );
    // Saturday 22:00 CEST: nothing scheduled, the pump (on since boot) stops.
    let (changes, _) = offline_run(utc(2026, 10, 24, 20, 0), &cfg, 48);
    assert_eq!(changes[0].1, 1, "heater off first (interlock order)");
    assert_eq!(
        pump(&changes),
        [
            (utc(2026, 10, 24, 20, 0), false),
            (utc(2026, 10, 24, 23, 0), true),  // Sunday 01:00 CEST
            (utc(2026, 10, 25, 0, 30), false), // 02:30 CEST, not again at 02:30 CET
            (utc(2026, 10, 26, 9, 0), true),   // holiday 10:00 CET
            (utc(2026, 10, 26, 11, 0), false), // holiday 12:00 CET
        ]
    );
    // The heater ran only on the holiday (occupied: setpoint 27.00 > water 26.00); on Sunday
    // night the pump ran unoccupied (24.00 < 26.00).
    let heater: std::vec::Vec<_> = changes.iter().filter(|c| c.1 == 1).collect();
    assert_eq!(
        heater,
        [
            &(utc(2026, 10, 24, 20, 0), 1, false),
            &(utc(2026, 10, 26, 9, 0), 1, true),
            &(utc(2026, 10, 26, 11, 0), 1, false),
        ]
    );
}

#[test]
fn offline_across_spring_forward() {
    // Sunday 2026-03-29: 02:00 CET -> 03:00 CEST at 01:00 UTC. Pump on at 02:30 (skipped),
    // off at 04:00.
    let cfg = scheduled(&[(6, 150, true, true), (6, 240, false, false)], &[]);
    let (changes, _) = offline_run(utc(2026, 3, 28, 20, 0), &cfg, 12);
    assert_eq!(
        pump(&changes),
        [
            (utc(2026, 3, 28, 20, 0), false),
            (utc(2026, 3, 29, 1, 0), true),  // once, at the change
            (utc(2026, 3, 29, 2, 0), false), // 04:00 CEST
        ]
    );
}

#[test]
fn freeze_protection_overrides_the_schedule_and_a_manual_off() {
    // No point at all: the pump stays off ...
    let mut cfg = scheduled(&[], &[]);
    cfg.freeze = Freeze {
        limit_cc: 500,
        hysteresis_cc: 200,
    };
    let mut n = N::new(1);
    n.servers[0].time = utc(2026, 1, 10, 12, 0) as u32;
    n.run_for(5 * S);
    n.push_config(0, 1, &cfg);
    n.run_for(MIN);
    assert_eq!(n.ctl.relays() & 3, 0, "schedule: off, so no heater either");
    // ... until the air freezes, even offline and against a manual off.
    n.push_command(
        0,
        7,
        Command::SetRelay {
            relay: 0,
            mode: RelayMode::Off,
        },
    );
    n.eth_path = false;
    n.gsm_path = false;
    n.air_cc = 400;
    n.run_for(MIN);
    assert_eq!(n.ctl.relays() & 1, 1, "frost: pump on");
    n.air_cc = 650;
    n.run_for(10 * MIN);
    assert_eq!(n.ctl.relays() & 1, 1, "inside the hysteresis: still on");
    n.air_cc = 701;
    n.run_for(MIN);
    assert_eq!(n.ctl.relays() & 1, 0, "warm again: back to the manual off");
}

#[test]
fn without_time_the_pump_runs() {
    // A schedule that keeps the pump off, but no server has told the time since boot: the
    // controller runs as without a schedule (pump on) until it learns the time.
    let cfg = scheduled(&[], &[]);
    let mut n = N::new(1);
    n.servers[0].time = utc(2026, 6, 1, 12, 0) as u32;
    n.run_for(5 * S);
    n.push_config(0, 1, &cfg);
    assert_eq!(n.ctl.relays() & 1, 0);
    n.eth_path = false;
    n.gsm_path = false;
    n.reboot(false);
    n.run_for(MIN);
    assert!(n.ctl.unix_time(n.now).is_none());
    assert_eq!(n.ctl.config().0, 1, "the schedule survived the reboot");
    assert_eq!(n.ctl.relays() & 1, 1, "no time: pump on");
    n.eth_path = true;
    n.run_for(120 * S);
    assert!(n.ctl.is_connected());
    assert_eq!(n.ctl.relays() & 1, 0, "time known again: schedule");
}

/// Days offline: the back-off between passes over the server list stays at its maximum (it
/// once overflowed to zero after ~10 hours, so the device sent Hellos without pause).
#[test]
fn days_offline_keep_the_backoff() {
    let mut n = N::new(1);
    n.run_for(5 * S);
    n.eth_path = false;
    n.gsm_path = false;
    let hellos = n.ctl.stats().hellos;
    n.run_for(3 * 24 * 3600 * S);
    // At most one pass (a few Hellos per interface) every 7.5 minutes (600 s - 25 %).
    let passes = n.ctl.stats().failed_passes;
    assert!(passes <= 3 * 24 * 8 + 10, "{passes} passes");
    assert!(n.ctl.stats().hellos - hellos < passes * 20);
}
