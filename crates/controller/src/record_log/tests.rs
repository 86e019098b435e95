//! The flash log under the whole controller: records of earlier boots delivered as Backlog under
//! their boot, with exact or estimated times; an old server's refusal; acks that name a boot.

use super::*;
use crate::channel_part::NoChannels;
use crate::flash_log::FlashLog;
use crate::nor_sim::SimFlash;
use crate::testkit::*;
use std::vec::Vec;

type Store = FlashStore<SimFlash>;
type N = Net<0, NoChannels, Store>;
const S: u64 = 1000;
const MIN: u64 = 60 * S;
const EPOCH: u32 = 1_800_000_000;

fn net() -> N {
    let log = FlashStore::new(FlashLog::recover(SimFlash::new(8)).unwrap());
    let list = std::vec!["192.0.2.1:8844".into()];
    let mut n = Net::with_log(list, 1, NoChannels, log);
    n.server_clock = Some(EPOCH);
    n
}

/// A power cut: the controller's RAM is lost, the flash is read back, the next boot begins.
fn power_cut(n: &mut N) {
    let store = n.ctl.replace_log(Store::BLANK);
    let mut flash = store.into_inner().unwrap().into_flash();
    flash.restart();
    n.ctl
        .set_log(FlashStore::new(FlashLog::recover(flash).unwrap()));
    n.reboot(false);
}

/// (boot, seq) of every record stored, in order.
fn stored(n: &N) -> Vec<(u32, u32)> {
    n.servers[0].records.keys().copied().collect()
}

#[test]
fn an_anchored_boots_records_arrive_after_a_restart_under_their_boot_with_exact_times() {
    let mut n = net();
    n.run_for(3 * MIN);
    let online = stored(&n);
    assert!(!online.is_empty() && online.iter().all(|k| k.0 == 1));
    // The server stops acknowledging: records wait in flash; then the power fails.
    n.servers[0].withhold_acks = true;
    n.run_for(10 * MIN);
    let waiting = n.ctl.log().len();
    assert!(waiting >= 9, "{waiting}");
    power_cut(&mut n);
    n.servers[0].withhold_acks = false;
    // The current boot's records follow at the next batch interval (5 minutes).
    n.run_for(6 * MIN);
    assert_eq!(n.ctl.boot_counter(), 2);
    // Accepts came, the backlog went first, named by boot 1, times exact (anchored).
    assert!(n.servers[0].accepts_sent >= 1);
    let backlogs = &n.servers[0].backlogs;
    assert!(!backlogs.is_empty());
    assert!(backlogs.iter().all(|b| b.0 == 1 && !b.3), "{backlogs:?}");
    let keys = stored(&n);
    let boot1: Vec<u32> = keys.iter().filter(|k| k.0 == 1).map(|k| k.1).collect();
    let expect: Vec<u32> = (0..boot1.len() as u32).collect();
    assert_eq!(boot1, expect, "every record of boot 1 once, none lost");
    assert!(keys.iter().any(|k| k.0 == 2), "then the current boot's");
    // Boot 1 began at wall time 0: its record k was logged at uptime 60 (k + 1) s.
    let times = &n.servers[0].times;
    for seq in boot1 {
        let t = times[&(1, seq)];
        assert!(t.abs_diff(EPOCH + 60 * (seq + 1)) <= 1, "record {seq}: {t}");
    }
    // What waits is the current boot's, logged since its last batch.
    assert_eq!(n.ctl.log().earlier_boot(), None);
    assert!(n.ctl.log().len() <= 5);
    assert_eq!(n.ctl.log().drops(), 0);
}

#[test]
fn a_boot_that_never_met_a_server_is_sent_with_estimated_times() {
    let mut n = net();
    n.servers[0].alive = false;
    n.run_for(20 * MIN);
    let logged = n.ctl.log().len();
    assert!(logged >= 19);
    power_cut(&mut n);
    n.servers[0].alive = true;
    n.run_for(6 * MIN);
    let b = &n.servers[0].backlogs;
    assert!(!b.is_empty() && b.iter().all(|b| b.0 == 1 && b.3), "{b:?}");
    let boot1: Vec<_> = stored(&n).into_iter().filter(|k| k.0 == 1).collect();
    assert_eq!(boot1.len(), logged);
    // The estimate puts boot 1's end at boot 2's start: here exact (the restart was at once),
    // within the seconds between the last record and the cut.
    let times = &n.servers[0].times;
    let last = times[&(1, logged as u32 - 1)];
    let boot2_start = EPOCH + 20 * 60;
    assert!(last <= boot2_start && boot2_start - last <= 60, "{last}");
    assert_eq!(n.ctl.log().earlier_boot(), None);
}

#[test]
fn a_server_without_backlog_makes_the_device_drop_earlier_boots_and_go_on() {
    let mut n = net();
    n.servers[0].alive = false;
    n.run_for(10 * MIN);
    let logged = n.ctl.log().len() as u32;
    power_cut(&mut n);
    n.servers[0].alive = true;
    n.servers[0].old = true;
    n.run_for(3 * MIN);
    // Four Capabilities, no Accepts, no Backlog; then the earlier boot's records are dropped
    // and counted, and the current boot's go as Telemetry.
    let caps = n.servers[0].kinds.iter().filter(|&&k| k == 0x06).count();
    assert_eq!(caps, 4);
    assert!(n.servers[0].backlogs.is_empty());
    assert!(!n.servers[0]
        .kinds
        .contains(&tek_proto::backlog::code::BACKLOG));
    assert!(stored(&n).iter().all(|k| k.0 == 2) && !stored(&n).is_empty());
    assert_eq!(n.ctl.log().drops(), logged);
    let st = n.servers[0].statuses.last().unwrap();
    assert_eq!(st.log_drops, logged);
}

#[test]
fn a_ram_log_device_states_nothing_new() {
    // The RAM log has nothing to state: a device of today sends no Capabilities.
    let mut n: Net<64> = Net::new(1);
    n.run_for(2 * MIN);
    assert!(!n.servers[0].kinds.contains(&0x06));
    assert_eq!(n.servers[0].accepts_sent, 0);
}

#[test]
fn the_anchor_estimate_chains_over_boots_without_one() {
    let clock = |boot, anchor, last_time| BootClock {
        boot,
        anchor,
        last_time,
        base_seq: 0,
    };
    assert_eq!(
        estimate_anchor(&[clock(1, Some(500), 90)], 9_000),
        (500, false)
    );
    // Boot 1 unanchored (ended at 90 s), boot 2 anchored at 1,000: boot 1 began 90 s before.
    assert_eq!(
        estimate_anchor(&[clock(1, None, 90), clock(2, Some(1_000), 30)], 9_000),
        (910, true)
    );
    // No anchor until the current boot's.
    assert_eq!(
        estimate_anchor(&[clock(1, None, 90), clock(2, None, 30)], 9_000),
        (9_000 - 120, true)
    );
}

#[test]
fn records_of_a_boot_not_below_the_current_one_are_dropped_at_power_up() {
    // A log whose records name boot 5 meets a device whose boot counter restarted (its
    // configuration slots erased): they could never be sent.
    let mut log = FlashLog::recover(SimFlash::new(4)).unwrap();
    log.start_boot(5);
    for t in 1..=3 {
        log.push(t * 60, &[Some(1), Some(2), None, None, Some(0)])
            .unwrap();
    }
    let mut store = FlashStore::new(log);
    store.start(1);
    assert_eq!(store.earlier_boot(), None);
    assert_eq!(store.len(), 0);
    assert_eq!(RecordLog::drops(&store), 3);
    // A log of earlier boots is kept.
    let mut log = store.into_inner().unwrap();
    log.start_boot(1);
    log.push(60, &[Some(1), Some(2), None, None, Some(0)])
        .unwrap();
    let mut store = FlashStore::new(log);
    store.start(2);
    assert_eq!(store.earlier_boot(), Some(1));
    assert_eq!(store.len(), 1);
}

#[test]
fn many_earlier_boots_drain_back_to_back_not_one_per_batch_interval() {
    let mut n = net();
    n.servers[0].alive = false;
    // Six boots of two minutes each (two records each) while the server is away.
    for _ in 0..6 {
        n.run_for(2 * MIN + 5 * S);
        power_cut(&mut n);
    }
    let waiting = n.ctl.log().len();
    assert!(waiting >= 12, "{waiting}");
    n.servers[0].alive = true;
    // One Backlog per boot, each sent once the one before is acknowledged: the six boots are
    // in within a minute, not six batch intervals (30 minutes).
    n.run_for(MIN);
    let boots: Vec<u32> = stored(&n).iter().map(|k| k.0).collect();
    for boot in 1..=6 {
        assert!(boots.contains(&boot), "boot {boot} not stored: {boots:?}");
    }
    assert_eq!(stored(&n).len(), waiting, "every record once");
    assert_eq!(n.ctl.log().earlier_boot(), None);
}
