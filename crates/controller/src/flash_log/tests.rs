use super::*;
use crate::nor_sim::{SimError, SimFlash};
use crate::{Entropy, XorShift};
use embedded_storage::nor_flash::ReadNorFlash;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::vec;
use std::vec::Vec;
use tek_proto::channel::ChannelMessage;

type Values = Vec<Option<i32>>;
/// seq -> (time, values), the records a log holds.
type Contents = BTreeMap<u32, (u32, Values)>;

fn contents(log: &mut FlashLog<SimFlash>) -> Contents {
    let mut out = Contents::new();
    log.visit(0, |r| {
        let values = (0..r.channels()).map(|ch| r.get(ch)).collect();
        out.insert(r.seq, (r.time_s, values));
        true
    })
    .unwrap();
    assert_eq!(out.len(), log.len(), "len() and the records read disagree");
    out
}

/// seq -> (boot, boot_seq): the names the records are sent under.
fn names(log: &mut FlashLog<SimFlash>) -> BTreeMap<u32, (u32, u32)> {
    let mut out = BTreeMap::new();
    log.visit(0, |r| {
        out.insert(r.seq, (r.boot, r.boot_seq));
        true
    })
    .unwrap();
    out
}

/// seq -> whether it is a wide record.
fn kinds(log: &mut FlashLog<SimFlash>) -> BTreeMap<u32, bool> {
    let mut out = BTreeMap::new();
    log.visit(0, |r| {
        out.insert(r.seq, r.wide());
        true
    })
    .unwrap();
    out
}

fn reopen(log: FlashLog<SimFlash>) -> FlashLog<SimFlash> {
    let mut flash = log.into_flash();
    flash.restart();
    FlashLog::recover(flash).unwrap()
}

#[test]
fn records_round_trip_ack_and_batch() {
    let mut log = FlashLog::recover(SimFlash::new(4)).unwrap();
    assert!(log.is_empty());
    assert_eq!(log.push(60, &[Some(1), None, Some(-5)]), Ok(0));
    assert_eq!(log.push(120, &[Some(2), Some(7), None]), Ok(1));
    assert_eq!(
        log.push(180, &[Some(i32::MIN), Some(i32::MAX), None]),
        Ok(2)
    );
    assert_eq!(log.push(240, &[]), Ok(3));
    let c = contents(&mut log);
    assert_eq!(c[&0], (60, vec![Some(1), None, Some(-5)]));
    assert_eq!(c[&1], (120, vec![Some(2), Some(7), None]));
    assert_eq!(c[&2], (180, vec![Some(i32::MIN), Some(i32::MAX), None]));
    assert_eq!(c[&3], (240, vec![]));

    let mut buf = [0u8; 64];
    let (first, last, n) = log.batch(3, 250, &mut buf).unwrap().unwrap();
    assert_eq!((first, last), (0, 3));
    let Ok(Some(ChannelMessage::WideTelemetry(t))) = ChannelMessage::parse(&buf[..n]) else {
        panic!("not wide telemetry");
    };
    let r: Vec<_> = t.records().collect();
    assert_eq!((r[0].age_s, r[0].get(0), r[0].get(1)), (190, Some(1), None));
    assert_eq!((r[1].age_s, r[1].get(1), r[1].get(2)), (130, Some(7), None));
    assert_eq!(r[3].get(0), None);

    assert_eq!(log.ack_through(1), Ok(2));
    assert_eq!(log.ack_through(1), Ok(0));
    assert_eq!(log.len(), 2);
    assert_eq!(log.batch(3, 250, &mut buf).unwrap().map(|b| b.0), Some(2));
    // Acknowledging past the newest record acknowledges what there is.
    assert_eq!(log.ack_through(u32::MAX), Ok(2));
    assert!(log.is_empty());
    assert_eq!(log.batch(3, 250, &mut buf), Ok(None));
    let mut log = reopen(log);
    assert!(log.is_empty());
    assert_eq!(
        log.push(300, &[Some(1)]),
        Ok(4),
        "sequence numbers go on after a restart"
    );
}

#[test]
fn a_small_buffer_takes_what_fits() {
    let mut log = FlashLog::recover(SimFlash::new(4)).unwrap();
    for t in 0..10 {
        log.push(t * 60, &[Some(t as i32); 16]).unwrap();
    }
    let mut buf = [0u8; 40];
    let (first, last, n) = log.batch(16, 600, &mut buf).unwrap().unwrap();
    assert!(first == 0 && last < 9 && n <= 40);
    assert_eq!(log.batch(16, 600, &mut buf[..3]), Ok(None));
}

#[test]
fn acknowledgements_survive_a_restart() {
    let mut log = FlashLog::recover(SimFlash::new(4)).unwrap();
    for t in 0..10 {
        log.push(t, &[Some(t as i32)]).unwrap();
    }
    assert_eq!(log.ack_through(4), Ok(5));
    let mut log = reopen(log);
    assert_eq!(log.len(), 5);
    assert_eq!(
        contents(&mut log).keys().copied().collect::<Vec<_>>(),
        [5, 6, 7, 8, 9]
    );
    assert_eq!(log.next_seq(), 10);
}

#[test]
fn a_torn_tail_closes_the_page_and_a_new_page_header_carries_the_ack() {
    // The operations of two records (page erase, header, entries), counted on a dry run; the
    // third record's first word is left half programmed.
    let mut dry = FlashLog::recover(SimFlash::new(4)).unwrap();
    dry.push(60, &[Some(1), Some(2)]).unwrap();
    dry.push(120, &[Some(3), Some(4)]).unwrap();
    let mut flash = SimFlash::new(4);
    flash.cut_after(dry.flash().ops(), false);
    let mut log = FlashLog::recover(flash).unwrap();
    log.push(60, &[Some(1), Some(2)]).unwrap();
    log.push(120, &[Some(3), Some(4)]).unwrap();
    assert_eq!(
        log.push(180, &[Some(5), Some(6)]),
        Err(Error::Flash(SimError::PowerCut))
    );
    let mut log = reopen(log);
    assert_eq!(log.len(), 2);
    assert_eq!(log.next_seq(), 2, "the torn record is not counted");
    // The page's tail is not blank: the acknowledgement goes into a new page's header.
    let erases = log.flash().erases().iter().sum::<u32>();
    assert_eq!(log.ack_through(0), Ok(1));
    assert_eq!(log.flash().erases().iter().sum::<u32>(), erases + 1);
    let mut log = reopen(log);
    assert_eq!(contents(&mut log).keys().copied().collect::<Vec<_>>(), [1]);
    assert_eq!(log.push(240, &[Some(7)]), Ok(2));
    assert_eq!(contents(&mut reopen(log)).len(), 2);
}

#[test]
fn the_full_backlog_survives_a_restart() {
    // The whole ring, minus the page the next record would need: no record dropped yet.
    let pages = 8;
    // How many records the ring holds before its first drop (the run is deterministic).
    let mut dry = FlashLog::recover(SimFlash::new(pages)).unwrap();
    let mut pool = Workload::new(16, 7);
    let mut capacity = 0;
    while dry.drops() == 0 {
        let (t, v) = pool.next();
        dry.push(t, &v).unwrap();
        capacity += 1;
    }
    let mut log = FlashLog::recover(SimFlash::new(pages)).unwrap();
    let mut pool = Workload::new(16, 7);
    let mut expected = Contents::new();
    for _ in 1..capacity {
        let (t, v) = pool.next();
        let seq = log.push(t, &v).unwrap();
        expected.insert(seq, (t, v));
    }
    assert_eq!(log.drops(), 0);
    let n = expected.len();
    assert!(n > 100, "{n} records");
    let mut log = reopen(log);
    assert_eq!(log.len(), n);
    assert_eq!(contents(&mut log), expected);
    // And it drains by batches.
    let mut buf = [0u8; 1000];
    let now = expected.values().map(|r| r.0).max().unwrap() + 60;
    let mut drained = 0;
    for _ in 0..n {
        let Some((first, last, _)) = log.batch(16, now, &mut buf).unwrap() else {
            break;
        };
        assert_eq!(first as usize, drained);
        drained += (last - first + 1) as usize;
        log.ack_through(last).unwrap();
    }
    assert_eq!(drained, n);
    assert!(reopen(log).is_empty());
}

#[test]
fn a_full_ring_drops_its_oldest_page_and_counts_it() {
    let mut log = FlashLog::recover(SimFlash::new(3)).unwrap();
    let mut pushed = 0u32;
    for t in 0..2000u32 {
        log.push(t, &[Some(t as i32 * 1000), None, Some(-1)])
            .unwrap();
        pushed += 1;
    }
    assert!(log.drops() > 0);
    assert_eq!(log.len() as u32 + log.drops(), pushed);
    let c = contents(&mut log);
    assert_eq!(c.keys().next_back(), Some(&(pushed - 1)));
    assert_eq!(c.len(), log.len());
    for (seq, (t, v)) in &c {
        assert_eq!(
            (*t, v.clone()),
            (*seq, vec![Some(*seq as i32 * 1000), None, Some(-1)])
        );
    }
    // After acks, the drops count only the unacknowledged records.
    let drops = log.drops();
    log.ack_through(pushed - 1).unwrap();
    for t in 0..100 {
        log.push(t, &[Some(1)]).unwrap();
    }
    assert_eq!(log.drops(), drops);
}

#[test]
fn bad_geometry_is_an_error_not_a_panic() {
    assert!(matches!(
        FlashLog::recover(SimFlash::new(1)),
        Err(Error::Geometry)
    ));
    assert!(matches!(
        FlashLog::recover(SimFlash::new(0)),
        Err(Error::Geometry)
    ));
}

#[test]
fn garbage_in_flash_is_never_decoded_and_never_panics() {
    let mut rng = XorShift::new(99);
    for round in 0..200 {
        let mut flash = SimFlash::new(3);
        // Random bytes programmed over a few pages, with and without a valid header in front.
        let mut bytes = vec![0u8; 3 * 1024];
        rng.fill(&mut bytes);
        if round % 2 == 0 {
            let h = Header {
                page_no: 1,
                first_seq: 5,
                acked_below: 0,
                boot: 2,
                boot_seq: 1,
                anchor: if round % 4 == 0 { 1_000 } else { NO_ANCHOR },
            }
            .encode();
            bytes[..HEADER_LEN].copy_from_slice(&h);
        }
        flash.write(0, &bytes).unwrap();
        let mut log = FlashLog::recover(flash).unwrap();
        // Random bytes pass a CRC-16 once in 65,536: a few decoded records are possible, but
        // nothing panics, and the log still takes new records.
        let _ = contents(&mut log);
        let _ = log.boot_clocks(|_| true);
        log.start_boot(3);
        let seq = log.push(1, &[Some(2)]).unwrap();
        let c = contents(&mut log);
        assert_eq!(c[&seq], (1, vec![Some(2)]));
    }
}

#[test]
fn a_corrupt_record_is_never_decoded() {
    // Every bit of every byte of a page of records, cleared in turn (a disturbed cell): the
    // records read back are exactly ones that were pushed, and never the corrupt one.
    let mut clean = FlashLog::recover(SimFlash::new(3)).unwrap();
    let mut pool = Workload::new(5, 11);
    let mut pushed = Contents::new();
    for _ in 0..12 {
        let (t, v) = pool.next();
        let seq = clean.push(t, &v).unwrap();
        pushed.insert(seq, (t, v));
    }
    let mut decoded_fewer = 0;
    for offset in HEADER_LEN..HEADER_LEN + 12 * 8 {
        for bit in 0..8 {
            let mut flash = clean.flash().clone();
            if flash_byte(&mut flash, offset) & (1 << bit) == 0 {
                continue;
            }
            flash.disturb(offset, 1 << bit);
            let mut log = FlashLog::recover(flash).unwrap();
            let got = contents(&mut log);
            for (seq, record) in &got {
                assert_eq!(
                    pushed.get(seq),
                    Some(record),
                    "offset {offset} bit {bit}: record {seq}"
                );
            }
            decoded_fewer += usize::from(got.len() < pushed.len());
        }
    }
    assert!(decoded_fewer > 0);
}

fn flash_byte(flash: &mut SimFlash, offset: usize) -> u8 {
    let mut b = [0u8];
    flash.read(offset as u32, &mut b).unwrap();
    b[0]
}

/// One step of a scripted run.
#[derive(Debug, Clone)]
enum Op {
    Push(u32, Values),
    /// A wide record (of a channel map).
    PushWide(u32, Values),
    /// Acknowledge through the oldest waiting record + n.
    Ack(u32),
    /// A restart without a power cut: the next boot begins.
    Boot,
    /// The current boot learns its anchor.
    Anchor(u32),
}

fn run(log: &mut FlashLog<SimFlash>, op: &Op) -> Result<(), Error<SimError>> {
    match op {
        Op::Push(t, v) => log.push(*t, v).map(|_| ()),
        Op::PushWide(t, v) => log.push_wide(*t, v).map(|_| ()),
        Op::Boot => {
            log.start_boot(log.boot() + 1);
            Ok(())
        }
        Op::Anchor(a) => log.set_anchor(*a),
        Op::Ack(n) => {
            let mut first = None;
            log.visit(0, |r| {
                first = Some(r.seq);
                false
            })?;
            match first {
                Some(first) => log.ack_through(first + n).map(|_| ()),
                None => Ok(()),
            }
        }
    }
}

/// Runs `ops` with the power cut after every possible number of flash operations and checks
/// the three guarantees after each restart: no acknowledged record comes back, no waiting record
/// is lost except the one being written (or those a full ring drops in that step), no torn
/// record is decoded (every record read back is one that was pushed, exactly).
fn check_every_cut(pages: usize, ops: &[Op]) {
    // The run without a cut: the contents before and after each step.
    let mut log = FlashLog::recover(SimFlash::new(pages)).unwrap();
    let mut states = vec![Contents::new()];
    let mut all_names = BTreeMap::new();
    let mut all_kinds = BTreeMap::new();
    let mut seqs = vec![];
    for op in ops {
        seqs.push(log.next_seq());
        run(&mut log, op).unwrap();
        states.push(contents(&mut log));
        all_names.extend(names(&mut log));
        all_kinds.extend(kinds(&mut log));
    }
    let total = log.flash().ops();
    for cut in 0..=2 * total + 1 {
        let mut flash = SimFlash::new(pages);
        flash.cut_after(cut / 2, cut % 2 == 1);
        let mut log = FlashLog::recover(flash).unwrap();
        let mut step = ops.len();
        for (i, op) in ops.iter().enumerate() {
            match run(&mut log, op) {
                Ok(()) => {}
                Err(Error::Flash(SimError::PowerCut)) => {
                    step = i;
                    break;
                }
                Err(e) => panic!("cut {cut}, step {i}: {e:?}"),
            }
        }
        if step == ops.len() {
            assert_eq!(cut / 2, total);
            continue;
        }
        let mut log = reopen(log);
        let got = contents(&mut log);
        let (before, after) = (&states[step], &states[step + 1]);
        let new_seq = matches!(ops[step], Op::Push(..) | Op::PushWide(..)).then_some(seqs[step]);
        for (seq, record) in &got {
            let known = before.get(seq).or_else(|| after.get(seq));
            assert_eq!(
                known,
                Some(record),
                "cut {cut} at step {step}: record {seq} not as pushed or acknowledged"
            );
        }
        for seq in after.keys() {
            assert!(
                got.contains_key(seq) || Some(*seq) == new_seq,
                "cut {cut} at step {step}: record {seq} lost"
            );
        }
        for (seq, name) in names(&mut log) {
            assert_eq!(
                all_names.get(&seq),
                Some(&name),
                "cut {cut} at step {step}: record {seq} under another name"
            );
        }
        for (seq, wide) in kinds(&mut log) {
            assert_eq!(
                all_kinds.get(&seq),
                Some(&wide),
                "cut {cut} at step {step}: record {seq} of the other kind"
            );
        }
        // The log goes on after the restart, without programming a word twice.
        log.start_boot(log.boot() + 1);
        let seq = log.push(7, &[Some(7)]).unwrap();
        if let Some(before) = seq.checked_sub(1) {
            log.ack_through(before).unwrap();
        }
        let mut log = reopen(log);
        assert_eq!(contents(&mut log).get(&seq), Some(&(7, vec![Some(7)])));
    }
}

#[test]
fn every_power_cut_keeps_the_guarantees_scripted() {
    // Enough to fill three pages of a three-page ring twice: page opens, drops, acks in a new
    // page's header and as entries.
    let mut ops = vec![];
    let mut pool = Workload::new(5, 3);
    for i in 0..300u32 {
        let (t, v) = pool.next();
        ops.push(Op::Push(t, v));
        if i % 7 == 6 {
            ops.push(Op::Ack(i % 4));
        }
        if i % 90 == 40 {
            ops.push(Op::Boot);
        }
        if i % 90 == 60 {
            ops.push(Op::Anchor(1_000_000 + i));
        }
    }
    check_every_cut(3, &ops);
}

#[test]
fn every_power_cut_keeps_the_guarantees_with_wide_records() {
    // A device that runs the pool map, then a channel map of 16 channels (a meter, transmitters:
    // records several times longer, with gaps), then the pool map again, across boots: wide
    // records written at every program and erase step, in pages shared with pool records.
    let mut ops = vec![];
    let mut pool = Workload::new(5, 4);
    let mut meters = Workload::new(16, 5);
    for i in 0..240u32 {
        let wide = (40..200).contains(&i);
        if wide {
            let (t, mut v) = meters.next();
            if i % 11 == 3 {
                v[2] = None; // a meter that did not answer: no value
            }
            ops.push(Op::PushWide(t, v));
        } else {
            let (t, v) = pool.next();
            ops.push(Op::Push(t, v));
        }
        if i % 9 == 8 {
            ops.push(Op::Ack(i % 3));
        }
        if i % 70 == 50 {
            ops.push(Op::Boot);
        }
        if i % 70 == 60 {
            ops.push(Op::Anchor(2_000_000 + i));
        }
    }
    check_every_cut(3, &ops);
}

#[test]
fn wide_and_pool_records_share_the_queue_and_keep_their_kind() {
    let mut log = FlashLog::recover(SimFlash::new(4)).unwrap();
    assert_eq!(
        log.push(60, &[Some(1), Some(2), None, Some(4), Some(0)]),
        Ok(0)
    );
    // The same channel count and set as the pool record before: still told apart.
    assert_eq!(
        log.push_wide(120, &[Some(1), Some(2), None, Some(4), Some(0)]),
        Ok(1)
    );
    let meter: Values = (0..16)
        .map(|ch| (ch != 3).then_some(230_000 + ch))
        .collect();
    assert_eq!(log.push_wide(180, &meter), Ok(2));
    assert_eq!(log.push(240, &[Some(5); 5]), Ok(3));
    let mut log = reopen(log);
    assert_eq!(
        kinds(&mut log).into_iter().collect::<Vec<_>>(),
        vec![(0, false), (1, true), (2, true), (3, false)]
    );
    assert_eq!(contents(&mut log)[&2], (180, meter));
    log.ack_through(1).unwrap();
    let mut log = reopen(log);
    assert_eq!(
        kinds(&mut log).into_iter().collect::<Vec<_>>(),
        vec![(2, true), (3, false)]
    );
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u32..100_000, prop::collection::vec(prop::option::weighted(0.8, any::<i32>()), 0..20))
            .prop_map(|(t, v)| Op::Push(t, v)),
        2 => (0u32..100_000, prop::collection::vec(prop::option::weighted(0.8, any::<i32>()), 0..40))
            .prop_map(|(t, v)| Op::PushWide(t, v)),
        1 => (0u32..5).prop_map(Op::Ack),
        1 => Just(Op::Boot),
        1 => (0u32..10).prop_map(Op::Anchor),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]
    #[test]
    fn every_power_cut_keeps_the_guarantees(ops in prop::collection::vec(op_strategy(), 1..120)) {
        check_every_cut(2, &ops);
    }

    #[test]
    fn records_round_trip(records in prop::collection::vec(
        (any::<u32>(), prop::collection::vec(prop::option::of(any::<i32>()), 0..=130)), 1..40)) {
        let mut log = FlashLog::recover(SimFlash::new(4)).unwrap();
        let mut expected = Contents::new();
        for (t, v) in &records {
            let seq = log.push(*t, v).unwrap();
            let mut v = v.clone();
            v.truncate(MAX_CHANNELS);
            expected.insert(seq, (*t, v));
        }
        // Four pages of at least one record of up to 684 bytes each: some may be dropped.
        let mut got = contents(&mut log);
        let kept: Contents = expected.split_off(got.keys().next().unwrap());
        prop_assert_eq!(&got, &kept);
        got = contents(&mut reopen(log));
        prop_assert_eq!(got, kept);
    }
}

/// Readings as a pool controller and, beyond five channels, a three-phase meter and a few
/// transmitters produce them, one a minute: the "typical" records the offline days are
/// measured with.
struct Workload {
    channels: usize,
    rng: XorShift,
    minute: u32,
    water_cc: i32,
    energy_wh_x60: i64,
    heater: bool,
}

impl Workload {
    fn new(channels: usize, seed: u64) -> Workload {
        Workload {
            channels,
            rng: XorShift::new(seed),
            minute: 0,
            water_cc: 2500,
            energy_wh_x60: 0,
            heater: false,
        }
    }

    fn noise(&mut self, amplitude: u32) -> i32 {
        (self.rng.next_u32() % (2 * amplitude + 1)) as i32 - amplitude as i32
    }

    fn next(&mut self) -> (u32, Values) {
        let minute_of_day = self.minute % 1440;
        // The firmware's pool model: air a triangle 18..26 °C over the day, the pump 08:00 to
        // 20:00, the heater on below 27 °C and off above 28 °C while the pump runs.
        let up = if minute_of_day < 720 {
            minute_of_day
        } else {
            1440 - minute_of_day
        };
        let air_cc = 1800 + (800 * up / 720) as i32;
        let pump = (480..1200).contains(&minute_of_day);
        if !pump || self.water_cc > 2800 {
            self.heater = false;
        } else if self.water_cc < 2700 {
            self.heater = true;
        }
        self.water_cc += if self.heater {
            60
        } else {
            (air_cc - self.water_cc) / 64
        };
        let power_w = 120 + if pump { 750 } else { 0 } + if self.heater { 3000 } else { 0 };
        self.energy_wh_x60 += i64::from(power_w);
        let relays = i32::from(pump) | i32::from(self.heater) << 1;
        let mut v = vec![
            Some(power_w),
            Some((self.energy_wh_x60 / 60) as i32),
            Some(self.water_cc),
            Some(air_cc),
            Some(relays),
        ];
        // A three-phase meter: voltages (0.1 V), currents (mA), powers (W), frequency
        // (0.01 Hz), energy (Wh); a pressure (mbar) and a flow (l/min) transmitter, a sensor
        // (0.01 °C).
        let amps = if pump { 1100 } else { 180 } + if self.heater { 4300 } else { 0 };
        let phase_energy = self.energy_wh_x60 / 60;
        while v.len() < self.channels {
            let value = match v.len() {
                5..=7 => 2300 + self.noise(4),
                8..=10 => amps + self.noise(15),
                11 => power_w / 3 + self.noise(5),
                12 => 5000 + self.noise(2),
                13 => (phase_energy / 3) as i32,
                14 => {
                    if pump {
                        1450 + self.noise(3)
                    } else {
                        0
                    }
                }
                15 => air_cc + 40,
                _ => self.noise(1000),
            };
            v.push(Some(value));
        }
        let t = 1_765_000_000 + self.minute * 60;
        self.minute += 1;
        (t, v)
    }
}

/// Records of `channels` channels at one a minute from empty until the first drop, in the
/// firmware's log region: the offline days. `worst`: every value a random 32-bit number, so
/// every delta takes 5 bytes.
fn offline_days(channels: usize, worst: bool) -> f64 {
    let pages = (layout::LOG_LEN / layout::PAGE_LEN) as usize;
    let mut log = FlashLog::recover(SimFlash::new(pages)).unwrap();
    let mut pool = Workload::new(channels, 1);
    let mut rng = XorShift::new(5);
    let mut records = 0u32;
    loop {
        let (t, mut v) = pool.next();
        if worst {
            for value in &mut v {
                *value = Some(rng.next_u32() as i32 | 0x4000_0000);
            }
        }
        log.push(t, &v).unwrap();
        if log.drops() > 0 {
            break;
        }
        records += 1;
    }
    f64::from(records) / 1440.0
}

/// Printed for scripts/firmware-size.sh (`-- --nocapture`), and checked against issue 17's
/// goals.
#[test]
fn offline_days_in_the_firmware_region() {
    let at5 = offline_days(5, false);
    let at16 = offline_days(16, false);
    std::println!(
        "offline log region: {} pages of {} bytes",
        layout::LOG_LEN / layout::PAGE_LEN,
        layout::PAGE_LEN
    );
    std::println!("offline log: {at5:.1} days at 5 channels");
    std::println!("offline log: {at16:.1} days at 16 channels");
    // The floor, whatever the values: entries of kind, time step (same: 0 bytes), changed
    // bitmap, 5 bytes a value, CRC, rounded to words, in the pages after their headers (the
    // last page of the ring is the one the next record erases).
    let pages = (layout::LOG_LEN / layout::PAGE_LEN) as usize;
    for channels in [5usize, 16] {
        let entry = round_up(1 + channels.div_ceil(8) + 5 * channels + 2);
        let floor = ((pages - 1) * ((layout::PAGE_LEN as usize - HEADER_LEN) / entry)) as f64;
        let worst = offline_days(channels, true);
        std::println!("offline log, worst case (random 32-bit values): {worst:.1} days at {channels} channels");
        assert!(
            worst * 1440.0 >= floor - 2.0,
            "{worst} days, floor {floor} records"
        );
        assert!(
            worst * 1440.0 <= floor + 1.0 + (layout::PAGE_LEN as f64 / 4.0),
            "{worst} days, floor {floor} records"
        );
    }
    assert!(at5 >= 7.0, "{at5:.2} days at 5 channels, goal 7");
    assert!(at16 >= 3.0, "{at16:.2} days at 16 channels, goal 72 h");
}

/// Erases per page per day, logging one record a minute for `days` days with the server
/// acknowledging every 15 minutes, in the firmware's region.
fn erases_per_page_per_day(channels: usize, days: u32) -> f64 {
    let pages = (layout::LOG_LEN / layout::PAGE_LEN) as usize;
    let mut log = FlashLog::recover(SimFlash::new(pages)).unwrap();
    let mut pool = Workload::new(channels, 2);
    for minute in 0..days * 1440 {
        let (t, v) = pool.next();
        let seq = log.push(t, &v).unwrap();
        if minute % 15 == 14 {
            log.ack_through(seq).unwrap();
        }
    }
    let most = *log.flash().erases().iter().max().unwrap();
    let least = *log.flash().erases().iter().min().unwrap();
    // Levelled: no page erased more than once more than any other.
    assert!(most - least <= 1, "erases {least}..={most}");
    f64::from(most) / f64::from(days)
}

#[test]
fn wear_at_most_one_erase_per_page_per_day() {
    for channels in [5, 16] {
        let rate = erases_per_page_per_day(channels, 30);
        std::println!("wear: {rate:.2} erases per page per day at {channels} channels");
        assert!(
            rate <= 1.0,
            "{rate} erases per page per day at {channels} channels"
        );
    }
}

#[test]
fn records_keep_their_boot_names_and_clocks_across_restarts() {
    let mut log = FlashLog::recover(SimFlash::new(6)).unwrap();
    // Boot 1: anchored before its first record (the page header carries it).
    log.start_boot(1);
    log.set_anchor(1_000).unwrap();
    log.push(60, &[Some(1)]).unwrap();
    log.push(120, &[Some(2)]).unwrap();
    // Boot 2: never anchored.
    log.start_boot(2);
    log.push(60, &[Some(3)]).unwrap();
    log.push(90, &[Some(4)]).unwrap();
    // Boot 3: anchored after its first record (an anchor entry).
    log.start_boot(3);
    log.push(30, &[Some(5)]).unwrap();
    log.set_anchor(5_000).unwrap();
    log.set_anchor(6_000).unwrap(); // the first anchor of a boot counts
    log.push(40, &[Some(6)]).unwrap();
    let mut log = reopen(log);
    let expect_names = [(1, 0), (1, 1), (2, 0), (2, 1), (3, 0), (3, 1)];
    assert_eq!(
        names(&mut log).into_values().collect::<Vec<_>>(),
        expect_names
    );
    log.start_boot(4);
    log.set_anchor(9_000).unwrap();
    let mut clocks = vec![];
    log.boot_clocks(|c| {
        clocks.push(*c);
        true
    })
    .unwrap();
    let got: Vec<_> = clocks
        .iter()
        .map(|c| (c.boot, c.anchor, c.last_time, c.base_seq))
        .collect();
    assert_eq!(
        got,
        [
            (1, Some(1_000), 120, 0),
            (2, None, 90, 2),
            (3, Some(5_000), 40, 4)
        ]
    );
    // Boot 4's records follow, named from 0; acknowledging boot 1 leaves boots 2.. waiting.
    assert_eq!(log.boot_base(), 6);
    log.push(10, &[Some(7)]).unwrap();
    log.ack_through(1).unwrap();
    let mut log = reopen(log);
    assert_eq!(
        names(&mut log).into_values().collect::<Vec<_>>(),
        [(2, 0), (2, 1), (3, 0), (3, 1), (4, 0)]
    );
    let mut boots = vec![];
    log.boot_clocks(|c| {
        boots.push((c.boot, c.anchor));
        c.boot < 3
    })
    .unwrap();
    assert_eq!(boots, [(2, None), (3, Some(5_000))], "stops when told");
}
