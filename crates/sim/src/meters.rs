//! Simulated Modbus RTU buses (`tek sim --meters`): energy meters and a temperature transmitter
//! wired to a simulated controller's serial bus, answered in process.
//!
//! * [`MeterPlan`] is what is on one controller's bus — slaves by address (Eastron SDM630,
//!   SDM120, ControlBox TB260) and the windows in which a slave stops answering — parsed from
//!   the command line (`sdm630@1,sdm120@3,tb260@2`, `3@600+120`);
//! * [`MeterBus`] runs the plan: `tek meter`'s own slaves ([`tek_meter::bus::Bus`], the vendors'
//!   register tables, rmodbus' slave side, CRC, exceptions) on the seeded day profile
//!   ([`tek_meter::values::Profile::Day`]), so every site's curves differ but a run is
//!   reproducible. The controller's channel part reaches it through the simulated board's
//!   [`ChannelBus`](tek_controller::channels::ChannelBus) (`crate::channels::PlantBus`).
//!
//! Time is the fleet's simulated time in milliseconds, as for the pool plant: the host sets it
//! ([`MeterBus::at`]) before the controller samples. An answer is not there at once: it can be
//! read once the request and the answer have crossed the line at the map's baud rate (11 bits a
//! character: 8 data bits, parity or a second stop bit, start and stop) plus the slave's turnaround
//! ([`TURNAROUND_MS`]); [`MeterBus::answer_at`] tells the host when to sample again. The slaves
//! answer at whatever line settings the map sets (the simulated meters were set up to match), but
//! not at a baud-rate code this version does not know. A slave in a silence window, or an
//! address nobody has, leaves the controller to its timeout, as a meter without power would.
//!
//! The meters live beside the controller, not in it: a power cycle of the controller (`tek sim
//! --restart-every`) keeps their counters.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use tek_meter::bus::Bus as Slaves;
use tek_meter::device::Model;
use tek_meter::values::Profile;
use tek_proto::channel::map::Bus;

/// A slave's delay between the end of a request and the start of its answer, ms.
pub const TURNAROUND_MS: u64 = 5;

/// Bits a character takes on the line (start, 8 data, parity or a second stop bit, stop).
const BITS_PER_CHAR: u64 = 11;

/// The hour of the day at simulated time 0 (the pool plant's too).
const START_HOUR: f64 = 6.0;

/// A window of simulated time in which one slave does not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Silence {
    /// The slave's address.
    pub address: u8,
    /// From this simulated time on (ms since the fleet started) ...
    pub from_ms: u64,
    /// ... until this one (exclusive).
    pub until_ms: u64,
}

impl Silence {
    /// Parses `ADDRESS@START+SECONDS` (simulated seconds since the start, decimals allowed):
    /// `3@600+120` silences slave 3 from 600 s to 720 s.
    pub fn parse(s: &str) -> Result<Silence, String> {
        let usage = || format!("{s:?}: expected ADDRESS@START+SECONDS, e.g. 3@600+120");
        let (address, window) = s.split_once('@').ok_or_else(usage)?;
        let (start, length) = window.split_once('+').ok_or_else(usage)?;
        let address = parse_address(address).map_err(|e| format!("{s:?}: {e}"))?;
        let secs = |v: &str, what: &str| {
            v.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && (0.0..=1e9).contains(x))
                .ok_or_else(|| format!("{s:?}: the {what} must be a number of seconds, 0 to 1e9"))
        };
        let (start, length) = (secs(start, "start")?, secs(length, "length")?);
        if length == 0.0 {
            return Err(format!("{s:?}: a silence of 0 seconds silences nothing"));
        }
        let ms = |x: f64| (x * 1000.0).round() as u64;
        Ok(Silence {
            address,
            from_ms: ms(start),
            until_ms: ms(start + length),
        })
    }

    /// Whether the slave is silent at simulated time `t_ms`.
    pub fn covers(&self, t_ms: u64) -> bool {
        (self.from_ms..self.until_ms).contains(&t_ms)
    }
}

/// What is on one simulated controller's bus.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MeterPlan {
    /// Slaves by address (1..=247).
    pub slaves: BTreeMap<u8, Model>,
    /// When which slave does not answer.
    pub silences: Vec<Silence>,
}

impl MeterPlan {
    /// Parses `MODEL@ADDRESS[,MODEL@ADDRESS...]` (models: sdm630, sdm120, tb260; addresses
    /// 1..=247, each once): `sdm630@1,sdm120@3,tb260@2`.
    pub fn parse(s: &str) -> Result<MeterPlan, String> {
        let mut slaves = BTreeMap::new();
        for item in s.split(',') {
            let item = item.trim();
            let (model, address) = item.split_once('@').ok_or_else(|| {
                format!(
                    "{item:?}: expected MODEL@ADDRESS, e.g. sdm630@1 (models: {})",
                    models()
                )
            })?;
            let model = Model::parse(model)
                .ok_or_else(|| format!("{item:?}: unknown model (known: {})", models()))?;
            let address = parse_address(address).map_err(|e| format!("{item:?}: {e}"))?;
            if let Some(other) = slaves.insert(address, model) {
                return Err(format!(
                    "{s:?}: address {address} is taken twice ({other} and {model})"
                ));
            }
        }
        Ok(MeterPlan {
            slaves,
            silences: Vec::new(),
        })
    }
}

impl fmt::Display for MeterPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (address, model)) in self.slaves.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{model}@{address}")?;
        }
        Ok(())
    }
}

fn models() -> String {
    let names: Vec<_> = Model::ALL.iter().map(|m| m.name()).collect();
    names.join(", ")
}

fn parse_address(s: &str) -> Result<u8, String> {
    s.parse::<u8>()
        .ok()
        .filter(|a| (1..=247).contains(a))
        .ok_or_else(|| format!("the slave address must be 1..=247, not {s:?}"))
}

/// One controller's bus with its slaves, run in process (see the module docs).
#[derive(Debug)]
pub struct MeterBus {
    slaves: Slaves,
    silences: Vec<Silence>,
    now_ms: u64,
    /// The answer to the last request ...
    answer: Vec<u8>,
    /// ... readable from this simulated time on (`None`: no answer is coming).
    ready_at: Option<u64>,
}

impl MeterBus {
    /// The bus of `plan`, its values seeded by `seed` (the device id: every site differs).
    pub fn new(plan: &MeterPlan, seed: u32) -> MeterBus {
        let profile = Profile::Day {
            seed,
            start_hour: START_HOUR,
        };
        MeterBus {
            slaves: Slaves::with_profile(&plan.slaves, &[], profile),
            silences: plan.silences.clone(),
            now_ms: 0,
            answer: Vec::new(),
            ready_at: None,
        }
    }

    /// Simulated time is now `t_ms`: the slaves in a silence window fall silent (the others
    /// answer), the energy counters catch up.
    pub fn at(&mut self, t_ms: u64) {
        self.now_ms = t_ms;
        let addresses: Vec<u8> = self.slaves.slaves().map(|(a, _)| a).collect();
        for address in addresses {
            let silent = self
                .silences
                .iter()
                .any(|s| s.address == address && s.covers(t_ms));
            if let Some(slave) = self.slaves.slave_mut(address) {
                slave.muted = silent;
            }
        }
        self.slaves.advance(Duration::from_millis(t_ms));
    }

    /// When the answer to the last request can be read, if one is coming and not read yet.
    pub fn answer_at(&self) -> Option<u64> {
        self.ready_at
    }

    /// Requests slave `address` received (good CRC), and answers it sent.
    pub fn counts(&self, address: u8) -> Option<(u64, u64)> {
        self.slaves
            .slaves()
            .find(|(a, _)| *a == address)
            .map(|(_, s)| (s.requests, s.answers))
    }

    /// The value slave `address` shows for `quantity` now (what a read returns before the
    /// register encoding); `None` for a slave or quantity that is not there.
    pub fn value(&self, address: u8, quantity: &str) -> Option<f64> {
        let (_, slave) = self.slaves.slaves().find(|(a, _)| *a == address)?;
        slave.model.register_of(quantity)?;
        Some(
            slave
                .values
                .value(quantity, Duration::from_millis(self.now_ms)),
        )
    }

    /// `frame` goes out on the bus (set up as `settings`); what was received before is gone.
    pub fn send(&mut self, bus: u8, settings: &Bus, frame: &[u8]) {
        self.answer.clear();
        self.ready_at = None;
        // One bus is wired (Capabilities say so); a slave cannot hear an unknown speed.
        let Some(baud) = settings.baud.bits_per_s().filter(|_| bus == 0) else {
            return;
        };
        let Some(answer) = self
            .slaves
            .answer(frame, Duration::from_millis(self.now_ms))
        else {
            return;
        };
        let chars = (frame.len() + answer.len()) as u64;
        let wire_ms = (chars * BITS_PER_CHAR * 1000).div_ceil(u64::from(baud));
        self.ready_at = Some(self.now_ms + wire_ms + TURNAROUND_MS);
        self.answer = answer;
    }

    /// Forgets an answer that has arrived by now but was not read: the controller polled with it
    /// there and waits for none (its read was abandoned: a new map, a restart). As a UART drops
    /// bytes nobody reads — and so that the host does not keep waking for it.
    pub fn drop_unread(&mut self) {
        if self.ready_at.is_some_and(|at| self.now_ms >= at) {
            self.answer.clear();
            self.ready_at = None;
        }
    }

    /// Copies the answer into `buf` once it has arrived; returns how many bytes (0: nothing
    /// yet, or nothing coming).
    pub fn receive(&mut self, bus: u8, buf: &mut [u8]) -> usize {
        match self.ready_at {
            Some(at) if bus == 0 && self.now_ms >= at => {
                let n = self.answer.len().min(buf.len());
                buf[..n].copy_from_slice(&self.answer[..n]);
                self.answer.clear();
                self.ready_at = None;
                n
            }
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tek_meter::device::Space;
    use tek_meter::frame::{crc, crc_ok};
    use tek_proto::channel::map::{Baud, Parity};

    const LINE: Bus = Bus {
        baud: Baud::B9600,
        parity: Parity::None,
        timeout_ms: 500,
    };

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut f = body.to_vec();
        f.extend_from_slice(&crc(body));
        f
    }

    fn plan() -> MeterPlan {
        let mut p = MeterPlan::parse("sdm630@1,sdm120@3,tb260@2").unwrap();
        p.silences.push(Silence::parse("3@600+120").unwrap());
        p
    }

    /// Sends `request` at `t_ms` and reads the answer once it is there.
    fn transact(bus: &mut MeterBus, t_ms: u64, request: &[u8]) -> Option<Vec<u8>> {
        bus.at(t_ms);
        bus.send(0, &LINE, request);
        let mut buf = [0u8; 256];
        assert_eq!(bus.receive(0, &mut buf), 0, "an answer takes time");
        let at = bus.answer_at()?;
        bus.at(at - 1);
        assert_eq!(bus.receive(0, &mut buf), 0, "not before {at}");
        bus.at(at);
        let n = bus.receive(0, &mut buf);
        assert_eq!(bus.receive(0, &mut buf), 0, "read once");
        Some(buf[..n].to_vec())
    }

    #[test]
    fn plans_parse_and_bad_ones_are_refused() {
        let p = MeterPlan::parse("sdm630@1,sdm120@3,tb260@2").unwrap();
        assert_eq!(p.to_string(), "sdm630@1,tb260@2,sdm120@3");
        assert_eq!(p.slaves[&3], Model::Sdm120);
        assert_eq!(MeterPlan::parse(&p.to_string()).unwrap(), p);
        for (bad, why) in [
            ("", "\"\": expected MODEL@ADDRESS"),
            ("sdm630", "\"sdm630\": expected MODEL@ADDRESS"),
            (
                "sdm72@1",
                "\"sdm72@1\": unknown model (known: sdm630, sdm120, tb260)",
            ),
            ("sdm630@0", "the slave address must be 1..=247"),
            ("sdm630@248", "the slave address must be 1..=247"),
            ("sdm630@x", "the slave address must be 1..=247"),
            (
                "sdm630@1,tb260@1",
                "address 1 is taken twice (sdm630 and tb260)",
            ),
            ("sdm630@1,", "\"\": expected MODEL@ADDRESS"),
        ] {
            let err = MeterPlan::parse(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
        assert_eq!(
            Silence::parse("3@600+120.5"),
            Ok(Silence {
                address: 3,
                from_ms: 600_000,
                until_ms: 720_500
            })
        );
        for (bad, why) in [
            ("3", "expected ADDRESS@START+SECONDS"),
            ("3@600", "expected ADDRESS@START+SECONDS"),
            ("0@1+1", "1..=247"),
            ("3@-1+5", "the start must be"),
            ("3@1+nan", "the length must be"),
            ("3@1+0", "silences nothing"),
        ] {
            let err = Silence::parse(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }

    #[test]
    fn answers_are_the_register_tables_with_their_crc() {
        let mut bus = MeterBus::new(&plan(), 7);
        // What the slaves show when the requests go out (the answers take a few ms).
        bus.at(60_000);
        let shown = bus.value(1, "power").unwrap();
        let celsius = bus.value(2, "temperature").unwrap();
        let import = bus.value(3, "import_kwh").unwrap();
        // SDM630 total power, 30053: two registers, an IEEE float, high word first.
        let a = transact(&mut bus, 60_000, &framed(&[1, 4, 0, 0x34, 0, 2])).unwrap();
        assert!(crc_ok(&a));
        assert_eq!(a[..3], [1, 4, 4]);
        let watts = f32::from_bits(u32::from_be_bytes([a[3], a[4], a[5], a[6]]));
        assert_eq!(watts, shown as f32);
        // The same registers through the model's table, encoded the same way.
        let mut regs = [0u16; 2];
        Model::Sdm630
            .read(Space::Input, 0x34, &mut regs, |_| shown)
            .unwrap();
        assert_eq!(
            a[3..7],
            [regs[0].to_be_bytes(), regs[1].to_be_bytes()].concat()[..]
        );
        // TB260 temperature: one holding register, tenths of a degree.
        let a = transact(&mut bus, 60_000, &framed(&[2, 3, 0, 0, 0, 1])).unwrap();
        assert!(crc_ok(&a));
        let tenths = i16::from_be_bytes([a[3], a[4]]);
        assert_eq!(f64::from(tenths), (celsius * 10.0).round());
        // SDM120 import energy, 30073.
        let a = transact(&mut bus, 60_000, &framed(&[3, 4, 0, 0x48, 0, 2])).unwrap();
        let kwh = f32::from_bits(u32::from_be_bytes([a[3], a[4], a[5], a[6]]));
        assert_eq!(kwh, import as f32);
        // 8 + 9 characters of 11 bits at 9600 bit/s (19.5 ms, rounded up) and the turnaround.
        bus.at(100_000);
        bus.send(0, &LINE, &framed(&[1, 4, 0, 0x34, 0, 2]));
        assert_eq!(bus.answer_at(), Some(100_000 + 20 + TURNAROUND_MS));
    }

    #[test]
    fn a_bad_register_gets_an_exception() {
        let mut bus = MeterBus::new(&plan(), 7);
        // A reserved register of the SDM630: exception 2, illegal data address.
        let a = transact(&mut bus, 1_000, &framed(&[1, 4, 0, 0x12, 0, 2])).unwrap();
        assert_eq!(a, framed(&[1, 0x84, 2]));
        // Holding registers of the SDM120 are not there: exception 1.
        let a = transact(&mut bus, 1_000, &framed(&[3, 3, 0, 0, 0, 2])).unwrap();
        assert_eq!(a, framed(&[3, 0x83, 1]));
    }

    #[test]
    fn silence_when_silenced_absent_or_unreachable() {
        let mut bus = MeterBus::new(&plan(), 7);
        let read = framed(&[3, 4, 0, 0x0C, 0, 2]);
        assert!(transact(&mut bus, 599_999, &read).is_some());
        // Slave 3 is silent from 600 s for 120 s; the others answer meanwhile.
        assert_eq!(transact(&mut bus, 600_000, &read), None);
        assert_eq!(transact(&mut bus, 719_999, &read), None);
        assert!(transact(&mut bus, 650_000, &framed(&[1, 4, 0, 0, 0, 2])).is_some());
        assert!(transact(&mut bus, 720_000, &read).is_some());
        // It heard the requests (good CRC) but did not answer them.
        assert_eq!(bus.counts(3), Some((4, 2)));
        // Nobody at 9; a bad CRC; a second bus; an unknown baud-rate code.
        assert_eq!(transact(&mut bus, 1, &framed(&[9, 4, 0, 0, 0, 2])), None);
        let mut bad = read.clone();
        bad[7] ^= 1;
        assert_eq!(transact(&mut bus, 1, &bad), None);
        bus.send(1, &LINE, &read);
        assert_eq!(bus.answer_at(), None);
        let odd = Bus {
            baud: Baud::Unknown(9),
            ..LINE
        };
        bus.send(0, &odd, &read);
        assert_eq!(bus.answer_at(), None);
        // An answer nobody reads is dropped once it has arrived, not before.
        bus.at(700_000);
        bus.send(0, &LINE, &framed(&[1, 4, 0, 0, 0, 2]));
        bus.drop_unread();
        assert!(bus.answer_at().is_some());
        bus.at(700_100);
        bus.drop_unread();
        assert_eq!(bus.answer_at(), None);
        assert_eq!(bus.receive(0, &mut [0u8; 64]), 0);
        // A new request forgets an answer not read yet.
        bus.at(800_000);
        bus.send(0, &LINE, &read);
        assert!(bus.answer_at().is_some());
        bus.send(0, &LINE, &framed(&[9, 4, 0, 0, 0, 2]));
        bus.at(900_000);
        assert_eq!(bus.receive(0, &mut [0u8; 64]), 0);
    }

    #[test]
    fn counters_only_grow_and_survive_the_controller() {
        let mut bus = MeterBus::new(&plan(), 7);
        let mut last = 0.0;
        for minute in 0..24 * 60 {
            bus.at(minute * 60_000);
            let kwh = bus.value(1, "import_kwh").unwrap();
            assert!(kwh >= last);
            last = kwh;
        }
        // Same seed, same site; another seed, another site.
        let mut again = MeterBus::new(&plan(), 7);
        again.at(24 * 60 * 60_000 - 60_000);
        assert_eq!(again.value(1, "import_kwh"), Some(last));
        let (a, b) = (MeterBus::new(&plan(), 7), MeterBus::new(&plan(), 8));
        assert_ne!(a.value(1, "import_kwh"), b.value(1, "import_kwh"));
        assert_eq!(bus.value(1, "temperature"), None);
        assert_eq!(bus.value(5, "power"), None);
    }
}
