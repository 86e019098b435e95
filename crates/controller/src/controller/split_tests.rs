//! A controller with a channel part (PROTOCOL.md 17.4, 17.5, 17.8): split configurations
//! delivered in chunks, reassembled, validated, acknowledged, persisted, run and rolled back;
//! the map sampled through a fake bus (board inputs and Modbus slaves); wide telemetry with
//! gaps; ChannelFaults after Status.

use crate::channel_part::ChannelPart;
use crate::channels::tests::{board, encode, modbus, Behaviour, FakeBus, BUS};
use crate::channels::ChannelBus;
use crate::testkit::*;
use std::boxed::Box;
use std::cell::RefCell;
use std::rc::Rc;
use std::vec::Vec;
use tek_proto::channel::faults::Fault;
use tek_proto::channel::map::Bus;
use tek_proto::channel::map::ChannelMap;
use tek_proto::channel::map::{DataType, Function, Unit};
use tek_proto::channel::split::{
    digest_key, feature, Assembled, Capabilities, ChunkState, ConfigChunk, CHUNK_DATA,
};
use tek_proto::channel::{code, ChannelMessage};
use tek_proto::crypto::Key;
use tek_proto::message::config::Config;
use tek_proto::message::{ConfigItems, ConfigResult};

const S: u64 = 1000;
type Part = ChannelPart<1024, 16, 256, 4096>;
type N = Net<512, Option<Part>>;

const CAPS: Capabilities = Capabilities {
    features: feature::MODBUS | feature::EXPRESSIONS,
    max_channels: 16,
    max_buses: 1,
    max_config: 4096,
    max_program: 64,
};

/// The harness's bus, shared with the test so it can unplug a meter.
struct Shared(Rc<RefCell<FakeBus>>);

impl ChannelBus for Shared {
    fn board_input(&mut self, input: u8) -> Option<i32> {
        self.0.borrow_mut().board_input(input)
    }
    fn serial_send(&mut self, bus: u8, settings: &Bus, frame: &[u8]) {
        self.0.borrow_mut().serial_send(bus, settings, frame)
    }
    fn serial_receive(&mut self, bus: u8, buf: &mut [u8]) -> usize {
        self.0.borrow_mut().serial_receive(bus, buf)
    }
}

/// A controller with a channel part, one server, the pool's board inputs and a meter (slave
/// 1, input register 0 = 2301) on bus 0.
fn net() -> (N, Rc<RefCell<FakeBus>>) {
    let mut n = N::with_channels(1, Some(Part::new(CAPS)));
    let mut bus = FakeBus::default();
    bus.bytes_per_receive = 3;
    for (input, v) in [(0, 1500), (1, 10_000), (2, 2650), (3, 1800), (4, 0)] {
        bus.board.insert(input, v);
    }
    bus.regs.insert((1, 0), 2301);
    let bus = Rc::new(RefCell::new(bus));
    n.bus = Some(Box::new(Shared(bus.clone())));
    (n, bus)
}

/// The assembled configuration: `cfg`'s items and a map of water temperature (board 2),
/// power (board 0), the meter's register (slave 1), and `extra` board channels.
fn assembled(cfg: &Config, extra: usize) -> Vec<u8> {
    let mut items = [0u8; 1024];
    let items = ConfigItems::encode(cfg, &mut items).unwrap();
    let mut channels = std::vec![
        board(2, Unit::Celsius, -2),
        board(0, Unit::Watt, 0),
        modbus(1, 0, DataType::U16, Function::Input),
    ];
    for i in 0..extra {
        // Meters that are not on the bus: no value, but bytes in the map.
        channels.push(modbus(2 + i as u8, 0x0156, DataType::F32, Function::Input));
    }
    let map = encode(&[BUS], &channels);
    let a = Assembled {
        items: items.as_bytes(),
        map: ChannelMap::new_checked(&map).unwrap(),
    };
    let mut out = std::vec![0u8; a.buffer_len()];
    a.emit(&mut out).unwrap();
    out
}

/// The chunks of `assembled` as version `version`, each a message (type and body).
fn chunks(version: u32, assembled: &[u8]) -> Vec<Vec<u8>> {
    let k = digest_key(&Key(KEY));
    (0..assembled.len().div_ceil(CHUNK_DATA))
        .map(|i| {
            let c = ConfigChunk::split(&k, version, assembled, i).unwrap();
            let m = ChannelMessage::ConfigChunk(c);
            let mut b = std::vec![0u8; m.buffer_len()];
            m.emit(&mut b).unwrap();
            b
        })
        .collect()
}

fn send(n: &mut N, msg: &[u8]) {
    let s = &mut n.servers[0];
    let (Some(bytes), Some(dev)) = (s.seal_bytes(msg), s.device_ep) else {
        panic!("no session")
    };
    let from = s.ep;
    n.deliver(crate::Iface::Ethernet, from, dev.port, bytes);
    n.drain();
}

fn servers_config() -> Config {
    config_with_servers(&["192.0.2.1:8844"])
}

fn last_ack(n: &N) -> tek_proto::channel::split::ChunkAck {
    *n.servers[0].chunk_acks.last().expect("a ChunkAck")
}

fn split_version(n: &N) -> Option<u32> {
    n.ctl.channel_part().unwrap().split_version()
}

/// A configuration whose items are long: the GSM settings at their longest.
fn long_config() -> Config {
    let mut c = servers_config();
    let long = "a".repeat(tek_proto::message::config::MAX_TEXT);
    c.gsm.apn = heapless::String::try_from(long.as_str()).unwrap();
    c.gsm.login = heapless::String::try_from(long.as_str()).unwrap();
    c.gsm.password = heapless::String::try_from(long.as_str()).unwrap();
    for i in 0..7 {
        let name = std::format!("spare-{i}-{}.example.net:8844", "s".repeat(36));
        c.servers
            .push(heapless::String::try_from(name.as_str()).unwrap())
            .unwrap();
    }
    c
}

#[test]
fn a_split_configuration_is_assembled_applied_persisted_and_run() {
    let (mut n, bus) = net();
    n.run_for(5 * S);
    assert!(n.ctl.is_connected());
    let Ok(Some(ChannelMessage::Capabilities(caps))) =
        ChannelMessage::parse(&n.servers[0].extension[0])
    else {
        panic!("Capabilities first")
    };
    assert_ne!(caps.features & feature::SPLIT_CONFIG, 0);
    assert_eq!((caps.max_channels, caps.max_config), (16, 4096));
    // Before: the pool map, read from the board inputs, sent as Telemetry 0x01.
    n.run_for(400 * S);
    let r = n.servers[0].records.values().last().expect("v1 records");
    assert_eq!((r.values[0], r.values[2]), (1500, 2650));
    assert!(n.servers[0].wide.is_empty());

    for c in chunks(7, &assembled(&servers_config(), 0)) {
        send(&mut n, &c);
    }
    assert_eq!(last_ack(&n).state, ChunkState::Accepted);
    assert_eq!(
        n.servers[0].config_acks.last(),
        Some(&(7, ConfigResult::Applied))
    );
    assert_eq!(split_version(&n), Some(7));
    assert!(n.did.iter().any(|(_, d)| *d == Did::PersistChannels(1)));
    n.run_for(900 * S);
    let wide = &n.servers[0].wide;
    assert!(wide.len() >= 10, "{} wide records", wide.len());
    for v in wide.values() {
        assert_eq!(v, &std::vec![Some(2650), Some(1500), Some(2301)]);
    }
    // Telemetry 0x01 only until the first wide batch.
    let kinds = &n.servers[0].kinds;
    let first_wide = kinds
        .iter()
        .position(|&k| k == code::WIDE_TELEMETRY)
        .unwrap();
    assert!(!kinds[first_wide..].contains(&tek_proto::message::code::TELEMETRY));
    // Sent again, the version running is accepted without touching flash.
    let writes = n.did.len();
    for c in chunks(7, &assembled(&servers_config(), 0)) {
        send(&mut n, &c);
    }
    assert_eq!(last_ack(&n).state, ChunkState::Accepted);
    assert!(!n.did[writes..]
        .iter()
        .any(|(_, d)| matches!(d, Did::PersistChannels(_) | Did::Persist(_))));

    // The meter stops answering: its channel has no value (never 0, never the last one), and
    // ChannelFaults follow the next Status.
    bus.borrow_mut().behaviour.insert(1, Behaviour::Silent);
    let before = n.servers[0].wide.len();
    n.run_for(3700 * S);
    // (Records logged before, and sent after, still have the value.)
    let gaps: Vec<_> = n.servers[0].wide.values().skip(before + 10).collect();
    assert!(!gaps.is_empty());
    for v in &gaps {
        assert_eq!(v, &&std::vec![Some(2650), Some(1500), None]);
    }
    let faults = n.servers[0].faults.last().expect("ChannelFaults");
    assert_eq!(faults.len(), 1);
    assert_eq!((faults[0].channel, faults[0].last), (2, Fault::Timeout));
    assert!(faults[0].errors > 300);
    let kinds = &n.servers[0].kinds;
    let f = kinds
        .iter()
        .position(|&k| k == code::CHANNEL_FAULTS)
        .unwrap();
    assert_eq!(kinds[f - 1], tek_proto::message::code::STATUS);

    // Back again after a power cut: the split configuration runs from flash.
    bus.borrow_mut().behaviour.clear();
    n.reboot(false);
    assert_eq!(split_version(&n), Some(7));
    n.run_for(400 * S);
    assert_eq!(n.ctl.config().0, 7);
    let last = n.servers[0].wide.values().last().unwrap();
    assert_eq!(last, &std::vec![Some(2650), Some(1500), Some(2301)]);
}

#[test]
fn a_half_delivered_mixed_corrupt_or_invalid_configuration_is_never_applied() {
    let (mut n, _) = net();
    n.run_for(5 * S);
    let asm = assembled(&long_config(), 13);
    assert!(asm.len() > CHUNK_DATA, "{} bytes: two chunks", asm.len());
    let parts = chunks(9, &asm);
    assert_eq!(parts.len(), 2);
    // Half delivered: acknowledged as receiving, not applied.
    send(&mut n, &parts[0]);
    assert_eq!(
        (last_ack(&n).state, last_ack(&n).received),
        (ChunkState::Receiving, 0b01)
    );
    assert_eq!(split_version(&n), None);
    assert!(n.servers[0].config_acks.is_empty());
    // A chunk of another configuration starts a new transfer: nothing mixes.
    let other = chunks(10, &assembled(&long_config(), 12));
    send(&mut n, &other[1]);
    assert_eq!((last_ack(&n).version, last_ack(&n).received), (10, 0b10));
    send(&mut n, &parts[1]);
    assert_eq!((last_ack(&n).version, last_ack(&n).received), (9, 0b10));
    assert_eq!(split_version(&n), None);
    // Made with another key: every chunk arrives, the digest does not match.
    let k = digest_key(&Key([0x43; 16]));
    for i in 0..2 {
        let c = ConfigChunk::split(&k, 11, &asm, i).unwrap();
        let mut b = std::vec![0u8; ChannelMessage::ConfigChunk(c).buffer_len()];
        ChannelMessage::ConfigChunk(c).emit(&mut b).unwrap();
        send(&mut n, &b);
    }
    assert_eq!(last_ack(&n).state, ChunkState::DigestMismatch);
    // Authentic but more channels than this device runs: invalid, discarded.
    for c in chunks(12, &assembled(&servers_config(), 14)) {
        send(&mut n, &c);
    }
    assert_eq!(last_ack(&n).state, ChunkState::Invalid);
    // Larger than the device holds.
    let big = std::vec![0u8; 5000];
    send(&mut n, &chunks(13, &big)[0]);
    assert_eq!(last_ack(&n).state, ChunkState::TooLarge);
    assert_eq!(split_version(&n), None);
    assert!(n.servers[0].config_acks.is_empty());
    assert!(!n
        .did
        .iter()
        .any(|(_, d)| matches!(d, Did::PersistChannels(_))));
    // The whole of version 9 at last (again from the start: other transfers replaced it):
    // applied.
    send(&mut n, &parts[1]);
    send(&mut n, &parts[0]);
    assert_eq!(last_ack(&n).state, ChunkState::Accepted);
    assert_eq!(split_version(&n), Some(9));
    assert_eq!(n.ctl.channel_part().unwrap().channel_count(), 16);
}

#[test]
fn a_split_configuration_on_trial_rolls_back_with_its_map() {
    let (mut n, _) = net();
    n.run_for(5 * S);
    for c in chunks(7, &assembled(&servers_config(), 0)) {
        send(&mut n, &c);
    }
    assert_eq!(split_version(&n), Some(7));
    // Version 8 points at a server that never answers, with another map.
    let bad = config_with_servers(&["192.0.2.2:8844"]);
    for c in chunks(8, &assembled(&bad, 2)) {
        send(&mut n, &c);
    }
    assert_eq!(split_version(&n), Some(8));
    assert_eq!(n.ctl.channel_part().unwrap().channel_count(), 5);
    n.has_gsm = false;
    n.run_for(960 * S);
    assert_eq!(n.ctl.config().0, 7, "rolled back");
    assert_eq!(split_version(&n), Some(7));
    assert_eq!(n.ctl.channel_part().unwrap().channel_count(), 3);
    assert!(n.ctl.is_connected());
    assert_eq!(
        n.servers[0].config_acks.last(),
        Some(&(8, ConfigResult::RolledBack))
    );
    // Flash agrees after a power cut.
    n.reboot(false);
    assert_eq!((n.ctl.config().0, split_version(&n)), (7, Some(7)));
    assert_eq!(n.ctl.channel_part().unwrap().channel_count(), 3);
    // A single Config replaces the split one: the pool map and Telemetry 0x01 again.
    n.run_for(5 * S);
    n.push_config(0, 20, &servers_config());
    assert_eq!(split_version(&n), None);
    assert_eq!(n.ctl.channel_part().unwrap().channel_count(), 5);
    let before = n.servers[0].records.len();
    n.run_for(400 * S);
    assert!(n.servers[0].records.len() > before);
}

#[test]
fn a_version_1_controller_drops_chunks_unread() {
    let mut n: Net<512> = Net::new(1);
    n.run_for(5 * S);
    let asm = assembled(&servers_config(), 0);
    let c = &chunks(7, &asm)[0];
    let s = &mut n.servers[0];
    let (bytes, dev) = (s.seal_bytes(c).unwrap(), s.device_ep.unwrap());
    let from = s.ep;
    n.deliver(crate::Iface::Ethernet, from, dev.port, bytes);
    n.drain();
    assert!(n.servers[0].chunk_acks.is_empty());
    assert_eq!(n.ctl.config().0, 0);
}

#[test]
fn a_power_cut_between_the_channel_record_and_the_controllers_leaves_the_older_version() {
    let (mut n, _) = net();
    n.run_for(5 * S);
    for c in chunks(7, &assembled(&servers_config(), 0)) {
        send(&mut n, &c);
    }
    let flash_of_7 = n.flash.clone();
    for c in chunks(8, &assembled(&servers_config(), 1)) {
        send(&mut n, &c);
    }
    assert_eq!(split_version(&n), Some(8));
    // The channel record (written first) has version 8; the controller's never got there.
    n.flash = flash_of_7;
    n.reboot(false);
    assert_eq!((n.ctl.config().0, split_version(&n)), (7, Some(7)));
    assert_eq!(n.ctl.channel_part().unwrap().channel_count(), 3);
}

/// Wide records in a flash log (issue 17): kept by the telemetry log, not the part, so they
/// survive a power cut and reach the server afterwards as wide Backlog under their boot.
mod in_flash {
    use super::*;
    use crate::channel_part::Backlog;
    use crate::flash_log::FlashLog;
    use crate::nor_sim::SimFlash;
    use crate::record_log::{FlashStore, RecordLog};
    use std::collections::BTreeMap;

    type Store = FlashStore<SimFlash>;
    type F = Net<0, Option<Part>, Store>;
    const MIN: u64 = 60 * S;

    /// A flash-logging controller that runs a split map (version 7) and logged its wide records
    /// for a while, then its server stopped acknowledging: the controller, and how many records
    /// wait in flash (at least 3).
    fn map_records_waiting() -> (F, usize) {
        let mut n = flash_net();
        n.run_for(5 * S);
        for c in chunks(7, &assembled(&servers_config(), 0)) {
            send_f(&mut n, &c);
        }
        n.run_for(3 * MIN);
        // Not much longer: the session gives up on a server that never acknowledges.
        n.servers[0].withhold_acks = true;
        n.run_for(150 * S);
        let waiting = n.ctl.log().len();
        assert!(waiting >= 3, "{waiting} waiting");
        (n, waiting)
    }

    fn flash_net() -> F {
        let (ram, _) = net();
        let log = FlashStore::new(FlashLog::recover(SimFlash::new(16)).unwrap());
        let mut n = F::with_log(
            std::vec!["192.0.2.1:8844".into()],
            1,
            Some(Part::new(CAPS)),
            log,
        );
        n.bus = ram.bus;
        n.server_clock = Some(1_800_000_000);
        n
    }

    fn send_f(n: &mut F, msg: &[u8]) {
        let s = &mut n.servers[0];
        let (Some(bytes), Some(dev)) = (s.seal_bytes(msg), s.device_ep) else {
            panic!("no session")
        };
        let from = s.ep;
        n.deliver(crate::Iface::Ethernet, from, dev.port, bytes);
        n.drain();
    }

    /// The wide records waiting in the flash: (boot, boot seq) -> values.
    fn waiting(log: &mut FlashLog<SimFlash>) -> BTreeMap<(u32, u32), Vec<Option<i32>>> {
        let mut out = BTreeMap::new();
        log.visit(0, |r| {
            assert!(r.wide(), "only wide records wait");
            let values = (0..r.channels()).map(|c| r.get(c)).collect();
            out.insert((r.boot, r.boot_seq), values);
            true
        })
        .unwrap();
        out
    }

    /// A power cut: RAM lost, the flash read back (what waited returned), the next boot begins.
    fn power_cut(n: &mut F) -> BTreeMap<(u32, u32), Vec<Option<i32>>> {
        let store = n.ctl.replace_log(Store::BLANK);
        let mut flash = store.into_inner().unwrap().into_flash();
        flash.restart();
        let mut log = FlashLog::recover(flash).unwrap();
        let before = waiting(&mut log);
        n.ctl.set_log(FlashStore::new(log));
        n.reboot(false);
        before
    }

    #[test]
    fn wide_records_wait_in_flash_through_a_power_cut_and_drain_as_wide_backlog() {
        let mut n = flash_net();
        n.run_for(5 * S);
        assert!(n.ctl.is_connected());
        for c in chunks(7, &assembled(&servers_config(), 0)) {
            send_f(&mut n, &c);
        }
        assert_eq!(n.ctl.channel_part().unwrap().split_version(), Some(7));
        // Online: wide records go as WideTelemetry from the flash log, the part keeps none.
        n.run_for(12 * MIN);
        let online = n.servers[0].wide.len();
        assert!(online >= 5, "{online} wide records");
        assert!(n.servers[0].wide.keys().all(|k| k.0 == 1));
        assert_eq!(n.ctl.channel_part().unwrap().wide_log().len(), 0);
        // The server stops acknowledging: the records wait in flash; then the power fails.
        n.servers[0].withhold_acks = true;
        n.run_for(20 * MIN);
        let before = power_cut(&mut n);
        assert!(before.len() >= 15, "{} waiting", before.len());
        assert!(before.keys().all(|k| k.0 == 1));
        n.servers[0].withhold_acks = false;
        n.run_for(8 * MIN);
        assert_eq!(n.ctl.boot_counter(), 2);
        assert_eq!(n.ctl.channel_part().unwrap().split_version(), Some(7));
        // Every waiting record arrived, as it was logged, under boot 1, in wide Backlogs.
        assert!(n.servers[0].wide_backlogs >= 1);
        for (name, values) in &before {
            assert_eq!(n.servers[0].wide.get(name), Some(values), "record {name:?}");
            assert_eq!(values, &std::vec![Some(2650), Some(1500), Some(2301)]);
        }
        // Boot 1's records are consecutive: none lost between those sent online and after.
        let boot1: Vec<u32> = n.servers[0]
            .wide
            .keys()
            .filter(|k| k.0 == 1)
            .map(|k| k.1)
            .collect();
        let first = boot1[0];
        assert_eq!(
            boot1,
            (first..first + boot1.len() as u32).collect::<Vec<_>>()
        );
        // Then the current boot's, as WideTelemetry; nothing of boot 1 waits, nothing dropped.
        assert!(n.servers[0].wide.keys().any(|k| k.0 == 2));
        assert_eq!(n.ctl.log().earlier_boot(), None);
        assert_eq!(n.ctl.log().drops(), 0);
    }

    #[test]
    fn a_new_map_drops_the_old_maps_waiting_wide_records_from_flash_and_counts_them() {
        let (mut n, waiting) = map_records_waiting();
        assert_eq!(n.ctl.log().drops(), 0);
        let stored_before = n.servers[0].wide.len();
        // A map with two more channels: the old map's records would be read as its channels.
        for c in chunks(8, &assembled(&servers_config(), 2)) {
            send_f(&mut n, &c);
        }
        assert_eq!(n.ctl.channel_part().unwrap().split_version(), Some(8));
        assert_eq!(n.ctl.log().len(), 0);
        assert_eq!(n.ctl.log().drops(), waiting as u32);
        // Gone for good: not back after a power cut, never sent; the new map's records go.
        power_cut(&mut n);
        assert!(n.ctl.log().is_empty());
        n.servers[0].withhold_acks = false;
        n.run_for(4 * MIN);
        let new: Vec<_> = n.servers[0].wide.iter().skip(stored_before).collect();
        assert!(!new.is_empty());
        for (name, values) in new {
            assert_eq!(
                name.0, 2,
                "only the new boot's records, of the new map: {name:?}"
            );
            assert_eq!(values.len(), 5);
        }
    }

    #[test]
    fn wide_records_of_a_map_that_did_not_come_back_after_a_restart_go_counted() {
        let (mut n, waiting) = map_records_waiting();
        let wide_before = n.servers[0].wide.len();
        // The channel slots are lost (erased): the restart runs the pool map.
        n.channel_flash = [std::vec![0xFF; 64], std::vec![0xFF; 64]];
        let before = power_cut(&mut n);
        assert_eq!(before.len(), waiting);
        assert_eq!(n.ctl.channel_part().unwrap().split_version(), None);
        n.servers[0].withhold_acks = false;
        n.run_for(6 * MIN);
        // Never sent in the pool mode, not as wide Backlog either; counted as dropped.
        assert_eq!(n.servers[0].wide.len(), wide_before);
        assert_eq!(n.servers[0].wide_backlogs, 0);
        assert!(n.ctl.log().drops() >= waiting as u32);
        assert!(
            n.servers[0].records.keys().any(|k| k.0 == 2),
            "pool records of boot 2 go"
        );
    }
}
