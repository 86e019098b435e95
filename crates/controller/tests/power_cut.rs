//! A power cut in the middle of persisting a configuration (docs/SECURITY.md, durability): for
//! every byte offset at which the write of the new record can stop, and for every way the byte
//! being programmed can be left, the controller boots with either the complete old record or the
//! complete new one — never a mixture, never a broken configuration, never the factory
//! defaults when a valid record existed.
//!
//! Flash model (the LM3S6965 and its kin): a slot is erased to 0xFF, then programmed from its
//! first byte to its last. The record is written into the slot *not* holding the current one
//! (`seq % 2`), so the cut can only damage the slot being written. Cases per offset `k`:
//! * programmed up to `k`, the rest still erased (clean cut between bytes);
//! * as above, with byte `k` half programmed (some of its bits cleared: `new & 0x0F`, `new & 0xF0`,
//!   or a bit pattern of the old value);
//! * the erase itself cut short: the first `k` bytes erased, the rest still the slot's older
//!   contents (the record before the current one).

use tek_controller::persist::{self, Stored, MAX_LEN};
use tek_controller::{Controller, Setup};
use tek_proto::message::config::Config;

fn config(setpoint: i16, servers: &[&str]) -> Config {
    let mut c = Config::default();
    c.thermostat.setpoint_cc = setpoint;
    c.keepalive_s = 45;
    c.gsm.apn = heapless::String::try_from("internet").unwrap();
    for s in servers {
        c.servers
            .push(heapless::String::try_from(*s).unwrap())
            .unwrap();
    }
    c
}

fn record(seq: u32, version: u32, cfg: &Config, previous: Option<(u32, &Config)>) -> Vec<u8> {
    let mut buf = vec![0xFF; MAX_LEN];
    let n = persist::encode(&mut buf, seq, 3, version, cfg, previous, None).unwrap();
    assert!(n <= MAX_LEN);
    buf
}

/// What the controller runs after booting from these two slots.
fn boot(slots: &[Vec<u8>; 2]) -> (u32, Config, bool) {
    let stored: Option<Stored> = persist::load(&slots[0], &slots[1]);
    let ctl = Controller::<tek_controller::log::Log<16>>::new(
        Setup {
            device_id: 9,
            key: [7; 16],
            factory_servers: &["192.0.2.1:8844"],
            firmware: [0, 1, 0],
            halt: false,
            has_gsm: true,
            stored,
        },
        0,
    );
    let (v, c) = ctl.config();
    (v, c.clone(), ctl.on_trial())
}

#[test]
fn a_torn_configuration_write_boots_old_or_new_never_broken() {
    let older_cfg = config(2500, &["192.0.2.9:8844"]);
    let old_cfg = config(2600, &["a.tek.example", "192.0.2.1:9000"]);
    let new_cfg = config(2700, &["b.tek.example"]);
    // Slot 1 holds the record before the current one (seq 5), slot 0 the current one (seq 6).
    // The new record (seq 7, a network change on trial with the old one as fallback) goes to
    // slot 1.
    let older = record(5, 4, &older_cfg, None);
    let old = record(6, 5, &old_cfg, None);
    let new = record(7, 6, &new_cfg, Some((5, &old_cfg)));
    assert!(persist::check(&new).is_some());
    // The record proper: the slot beyond its CRC stays erased.
    let new_len = new.iter().rposition(|&b| b != 0xFF).unwrap() + 1;

    let before = boot(&[old.clone(), older.clone()]);
    assert_eq!((before.0, &before.1, before.2), (5, &old_cfg, false));
    let after = boot(&[old.clone(), new.clone()]);
    assert_eq!((after.0, &after.1, after.2), (6, &new_cfg, true));

    let mut cases = 0;
    let (mut saw_old, mut saw_new) = (0, 0);
    let mut check = |slot1: Vec<u8>, what: &str| {
        let got = boot(&[old.clone(), slot1]);
        if got == before {
            saw_old += 1;
        } else if got == after {
            saw_new += 1;
        } else {
            panic!("{what}: booted version {} {:?}", got.0, got.1);
        }
        cases += 1;
    };
    for k in 0..=MAX_LEN {
        // Clean cut: bytes before k programmed, the rest erased.
        let mut s = vec![0xFF; MAX_LEN];
        s[..k].copy_from_slice(&new[..k]);
        check(s.clone(), &format!("cut at {k}"));
        if k < MAX_LEN {
            // Byte k half programmed (programming only clears bits).
            for partial in [new[k] | 0x0F, new[k] | 0xF0, new[k] | older[k]] {
                let mut t = s.clone();
                t[k] = partial;
                check(t, &format!("byte {k} half programmed"));
            }
            // The erase cut short: the first k bytes erased, the rest the older record.
            let mut e = older.clone();
            e[..k].fill(0xFF);
            check(e, &format!("erase cut at {k}"));
        }
    }
    // Every cut before the last byte of the new record leaves the old configuration; only the
    // complete record brings the new one.
    assert!(saw_old > 0 && saw_new > 0);
    assert!(cases > 4 * new_len);
    // A cut anywhere inside the record (before its CRC is complete) never yields the new one.
    for k in 0..new_len {
        let mut s = vec![0xFF; MAX_LEN];
        s[..k].copy_from_slice(&new[..k]);
        assert_eq!(boot(&[old.clone(), s]), before, "cut at {k}");
    }
}
