//! The bus: the configured slaves, their faults, and the control commands. No I/O, no clock:
//! [`Bus::answer`] takes one framed request and the time, and returns the answer to send, if
//! any; [`Bus::control`] takes one command line and returns the one reply line.
//!
//! Reads (functions 3 and 4, 8-byte requests) are parsed and answered by rmodbus' slave side
//! (`server::ModbusFrame`); the registers come from [`crate::device`] and [`crate::values`].
//! Only configured addresses answer; broadcasts (address 0) never do (a read cannot be
//! broadcast), nor do function codes 128 and above (exception answers, not requests). Other
//! functions get exception 1 from here (rmodbus' parsers of writes overflow on some frames);
//! a count outside 1..=125, exception 3.
//!
//! # Control commands (one per line, one reply line each)
//!
//! * `set SLAVE QUANTITY VALUE` — show VALUE from now on (above the script and the plant);
//!   `set SLAVE QUANTITY auto` goes back to them;
//! * `mute SLAVE` / `unmute SLAVE` — the slave stops answering / answers again;
//! * `corrupt SLAVE` — the next answer goes out with a wrong CRC; `corrupt SLAVE all` — every
//!   answer, until `clear`;
//! * `exception SLAVE CODE` — every request gets exception CODE (1..=255), until `clear`;
//! * `clear SLAVE` — ends mute, corrupt and exception;
//! * `unplug` / `plug` — the whole bus falls silent (requests still counted) / answers again;
//! * `status` — the bus and, per slave, requests, answers, faults and the values now.
//!
//! A bad command gets `error: ...` and changes nothing.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use rmodbus::server::ModbusFrame;
use rmodbus::{ErrorKind, ModbusProto};

use crate::device::{Model, ReadError, Space};
use crate::frame::{crc, MAX_FRAME};
use crate::values::{check_value, Entry, Profile, Values};

/// When answers go out with a wrong CRC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corrupt {
    /// Never.
    Off,
    /// The next answer only.
    Next,
    /// Every answer.
    All,
}

/// One emulated device on the bus.
#[derive(Debug)]
pub struct Slave {
    /// Its model.
    pub model: Model,
    /// Its values.
    pub values: Values,
    /// Does not answer.
    pub muted: bool,
    /// Answers with a wrong CRC.
    pub corrupt: Corrupt,
    /// Answers every request with this exception code.
    pub exception: Option<u8>,
    /// Requests addressed to it (good CRC).
    pub requests: u64,
    /// Answers it sent.
    pub answers: u64,
}

/// The bus: slaves by address.
#[derive(Debug)]
pub struct Bus {
    slaves: BTreeMap<u8, Slave>,
    unplugged: bool,
}

impl Bus {
    /// A bus with `slaves` (address → model) and their script entries, on the bench profile
    /// (`tek meter`).
    pub fn new(slaves: &BTreeMap<u8, Model>, script: &[Entry]) -> Bus {
        Bus::with_profile(slaves, script, Profile::Bench)
    }

    /// A bus with `slaves` (address → model) and their script entries, whose plant model is
    /// `profile` (the simulated controllers' buses: [`Profile::Day`]).
    pub fn with_profile(slaves: &BTreeMap<u8, Model>, script: &[Entry], profile: Profile) -> Bus {
        let slaves = slaves
            .iter()
            .map(|(&address, &model)| {
                let slave = Slave {
                    model,
                    values: Values::with_profile(model, address, script, profile),
                    muted: false,
                    corrupt: Corrupt::Off,
                    exception: None,
                    requests: 0,
                    answers: 0,
                };
                (address, slave)
            })
            .collect();
        Bus {
            slaves,
            unplugged: false,
        }
    }

    /// The slave at `address`, if one is configured (faults and values set directly, without a
    /// command line).
    pub fn slave_mut(&mut self, address: u8) -> Option<&mut Slave> {
        self.slaves.get_mut(&address)
    }

    /// The configured slaves, by address.
    pub fn slaves(&self) -> impl Iterator<Item = (u8, &Slave)> {
        self.slaves.iter().map(|(&a, s)| (a, s))
    }

    /// Integrates the energy counters up to `now` (call regularly).
    pub fn advance(&mut self, now: Duration) {
        for s in self.slaves.values_mut() {
            s.values.advance(now);
        }
    }

    /// The answer to one framed request (CRC already checked), if one goes out.
    pub fn answer(&mut self, request: &[u8], now: Duration) -> Option<Vec<u8>> {
        let (&address, &function) = (request.first()?, request.get(1)?);
        let slave = self.slaves.get_mut(&address)?;
        slave.requests += 1;
        // Codes 128..=255 are exception answers, never requests: no answer (rmodbus' exception
        // path would add 0x80 to the code and overflow).
        if self.unplugged || slave.muted || function >= 0x80 {
            return None;
        }
        let mut answer = match (slave.exception, function) {
            (Some(code), _) => exception(address, function, code),
            (None, 3 | 4) => {
                slave.values.advance(now);
                respond(address, request, slave, now)?
            }
            // Coils, discrete inputs, writes, diagnostics: nothing these devices offer that is
            // emulated. Answered here rather than by rmodbus, whose parsers of the other
            // functions overflow on some frames (a write's byte count of 249 and up).
            (None, _) => exception(address, function, 1),
        };
        match slave.corrupt {
            Corrupt::Off => {}
            Corrupt::Next | Corrupt::All => {
                if let Some(last) = answer.last_mut() {
                    *last ^= 0x5A;
                }
                if slave.corrupt == Corrupt::Next {
                    slave.corrupt = Corrupt::Off;
                }
            }
        }
        slave.answers += 1;
        Some(answer)
    }

    /// Runs one control command; returns the reply line.
    pub fn control(&mut self, line: &str, now: Duration) -> String {
        match self.command(line, now) {
            Ok(reply) => reply,
            Err(e) => format!("error: {e}"),
        }
    }

    fn slave(&mut self, arg: Option<&str>) -> Result<(u8, &mut Slave), String> {
        let arg = arg.ok_or("missing SLAVE")?;
        let address: u8 = arg
            .parse()
            .map_err(|_| format!("bad slave address {arg:?}"))?;
        let known: Vec<String> = self.slaves.keys().map(u8::to_string).collect();
        match self.slaves.get_mut(&address) {
            Some(s) => Ok((address, s)),
            None => Err(format!(
                "no slave {address} on this bus (slaves: {})",
                known.join(", ")
            )),
        }
    }

    fn command(&mut self, line: &str, now: Duration) -> Result<String, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let (&cmd, args) = words.split_first().ok_or("empty command")?;
        let arity = |n: usize, usage: &str| {
            if args.len() == n {
                Ok(())
            } else {
                Err(format!("usage: {usage}"))
            }
        };
        match cmd {
            "set" => {
                arity(3, "set SLAVE QUANTITY VALUE|auto")?;
                let (address, s) = self.slave(args.first().copied())?;
                let (quantity, value) = (args[1], args[2]);
                if value == "auto" {
                    check_value(s.model, quantity, "0")?;
                    s.values.set(quantity, None);
                    return Ok(format!("ok: slave {address} {quantity} back to script/plant"));
                }
                let v = check_value(s.model, quantity, value)?;
                s.values.advance(now);
                s.values.set(quantity, Some(v));
                Ok(format!("ok: slave {address} {quantity} = {v}"))
            }
            "mute" | "unmute" => {
                arity(1, &format!("{cmd} SLAVE"))?;
                let (address, s) = self.slave(args.first().copied())?;
                s.muted = cmd == "mute";
                Ok(format!("ok: slave {address} {cmd}d"))
            }
            "corrupt" => {
                let (address, s) = self.slave(args.first().copied())?;
                match args.get(1..) {
                    Some([]) => {
                        s.corrupt = Corrupt::Next;
                        Ok(format!("ok: slave {address}: next answer with a bad CRC"))
                    }
                    Some(["all"]) => {
                        s.corrupt = Corrupt::All;
                        Ok(format!(
                            "ok: slave {address}: every answer with a bad CRC until clear"
                        ))
                    }
                    _ => Err("usage: corrupt SLAVE [all]".into()),
                }
            }
            "exception" => {
                arity(2, "exception SLAVE CODE")?;
                let (address, s) = self.slave(args.first().copied())?;
                let code = args[1]
                    .parse::<u8>()
                    .ok()
                    .filter(|&c| c != 0)
                    .ok_or_else(|| format!("bad exception code {:?} (1..=255)", args[1]))?;
                s.exception = Some(code);
                Ok(format!(
                    "ok: slave {address}: exception {code} to every request until clear"
                ))
            }
            "clear" => {
                arity(1, "clear SLAVE")?;
                let (address, s) = self.slave(args.first().copied())?;
                s.muted = false;
                s.corrupt = Corrupt::Off;
                s.exception = None;
                Ok(format!("ok: slave {address} cleared"))
            }
            "unplug" | "plug" => {
                arity(0, cmd)?;
                self.unplugged = cmd == "unplug";
                Ok(format!("ok: bus {cmd}ged"))
            }
            "status" => {
                arity(0, "status")?;
                self.advance(now);
                Ok(self.status(now))
            }
            other => Err(format!(
                "unknown command {other:?} (set, mute, unmute, corrupt, exception, clear, unplug, plug, status)"
            )),
        }
    }

    fn status(&self, now: Duration) -> String {
        let mut out = format!(
            "bus {}",
            if self.unplugged {
                "unplugged"
            } else {
                "plugged"
            }
        );
        for (address, s) in &self.slaves {
            let _ = write!(
                out,
                "; slave {address} {} requests={} answers={}",
                s.model, s.requests, s.answers
            );
            if s.muted {
                out.push_str(" muted");
            }
            match s.corrupt {
                Corrupt::Off => {}
                Corrupt::Next => out.push_str(" corrupt=next"),
                Corrupt::All => out.push_str(" corrupt=all"),
            }
            if let Some(code) = s.exception {
                let _ = write!(out, " exception={code}");
            }
            for q in s.model.quantities() {
                let _ = write!(out, " {q}={}", s.values.value(q, now));
            }
        }
        out
    }
}

/// An exception answer, CRC included.
fn exception(address: u8, function: u8, code: u8) -> Vec<u8> {
    let mut a = vec![address, function | 0x80, code];
    a.extend_from_slice(&crc(&a));
    a
}

/// rmodbus' slave side answers a read (function 3 or 4) of `slave`; `None` when it sends
/// nothing (a read request is exactly 8 bytes; anything else is not one).
fn respond(address: u8, request: &[u8], slave: &Slave, now: Duration) -> Option<Vec<u8>> {
    if request.len() != 8 {
        return None;
    }
    let mut response: heapless::Vec<u8, MAX_FRAME> = heapless::Vec::new();
    let mut frame = ModbusFrame::new(address, request, ModbusProto::Rtu, &mut response);
    // Broadcast reads are never answered; a broadcast write is not for these devices either.
    frame.parse().ok()?;
    if !frame.response_required {
        return None;
    }
    if frame.processing_required {
        let space = Space::of_function(request[1]);
        let result = match space {
            // Quantity 0 is as illegal as above 125 (Modbus application protocol, 6.3/6.4).
            Some(_) if frame.count == 0 => Err(ErrorKind::IllegalDataValue),
            Some(space) => match frame.get_external_read() {
                Ok(rmodbus::server::Read::Words(words)) => {
                    let mut regs = vec![0u16; usize::from(words.count)];
                    let r = slave.model.read(space, words.address, &mut regs, |q| {
                        slave.values.value(q, now)
                    });
                    for (b, r) in words.buf.chunks_exact_mut(2).zip(&regs) {
                        b.copy_from_slice(&r.to_be_bytes());
                    }
                    r.map_err(|e| match e {
                        ReadError::IllegalFunction => ErrorKind::IllegalFunction,
                        ReadError::IllegalAddress => ErrorKind::IllegalDataAddress,
                    })
                }
                _ => Err(ErrorKind::IllegalFunction),
            },
            None => Err(ErrorKind::IllegalFunction),
        };
        match result {
            Ok(()) => frame.process_external_read(Ok(())).ok()?,
            Err(e) => frame.set_modbus_error_if_unset(&e).ok()?,
        }
    }
    frame.finalize_response().ok()?;
    Some(response.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{crc_ok, Framer, Line, Parity};
    use crate::values::parse_script;
    use proptest::prelude::*;

    const T: Duration = Duration::from_secs(1);

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut f = body.to_vec();
        f.extend_from_slice(&crc(body));
        f
    }

    fn bus() -> Bus {
        let models = [(1, Model::Sdm630), (2, Model::Sdm120), (3, Model::Tb260)].into();
        let script = parse_script(
            "0 1 power_l1 1500\n0 2 voltage 230.5\n0 3 temperature 21.7",
            &models,
        )
        .unwrap();
        Bus::new(&models, &script)
    }

    #[test]
    fn reads_answer_the_register_table() {
        let mut b = bus();
        // 1500.0 = 0x44BB8000.
        let a = b.answer(&framed(&[1, 4, 0, 0x0C, 0, 2]), T).unwrap();
        assert_eq!(a, framed(&[1, 4, 4, 0x44, 0xBB, 0x80, 0x00]));
        let a = b.answer(&framed(&[2, 4, 0, 0, 0, 2]), T).unwrap();
        assert_eq!(a, framed(&[2, 4, 4, 0x43, 0x66, 0x80, 0x00]));
        let a = b.answer(&framed(&[3, 3, 0, 0, 0, 1]), T).unwrap();
        assert_eq!(a, framed(&[3, 3, 2, 0, 217]));
    }

    #[test]
    fn exceptions_for_bad_requests() {
        let mut b = bus();
        let cases: [(&[u8], &[u8]); 6] = [
            (&[1, 4, 0, 0x12, 0, 2], &[1, 0x84, 2]), // reserved register
            (&[1, 4, 0, 0x01, 0, 2], &[1, 0x84, 2]), // half a float
            (&[2, 3, 0, 0, 0, 2], &[2, 0x83, 1]),    // SDM120 holding: not emulated
            (&[3, 6, 0, 0, 0, 1], &[3, 0x86, 1]),    // a write
            (&[1, 4, 0, 0, 0, 0], &[1, 0x84, 3]),    // quantity 0
            (&[1, 4, 0, 0, 0x00, 126], &[1, 0x84, 3]), // quantity above 125
        ];
        for (req, want) in cases {
            assert_eq!(b.answer(&framed(req), T), Some(framed(want)), "{req:?}");
        }
        // An unknown function (length guessed as 8 by the framer).
        assert_eq!(
            b.answer(&framed(&[1, 0x2B, 0, 0, 0, 0]), T),
            Some(framed(&[1, 0xAB, 1]))
        );
    }

    #[test]
    fn only_configured_slaves_and_never_broadcast() {
        let mut b = bus();
        assert_eq!(b.answer(&framed(&[9, 4, 0, 0, 0, 2]), T), None);
        assert_eq!(b.answer(&framed(&[0, 4, 0, 0, 0, 2]), T), None);
        assert_eq!(b.answer(&framed(&[0, 6, 0, 0, 0, 1]), T), None);
        assert_eq!(b.answer(&[], T), None);
        assert_eq!(b.answer(&[1], T), None);
        // A function code of an exception answer (found by the proptest below: rmodbus
        // overflowed adding 0x80 to it).
        assert_eq!(b.answer(&framed(&[1, 0x84, 0, 0, 0, 2]), T), None);
        assert_eq!(b.answer(&framed(&[1, 0xFF]), T), None);
        // A write with a byte count of 249 (found by the proptest: rmodbus' parser overflows
        // on it) gets exception 1 like every write; a read of the wrong length, nothing.
        assert_eq!(
            b.answer(&framed(&[1, 15, 0, 0, 0, 0, 249]), T),
            Some(framed(&[1, 0x8F, 1]))
        );
        assert_eq!(b.answer(&framed(&[1, 4, 0, 0, 0, 2, 0]), T), None);
    }

    #[test]
    fn faults_on_command() {
        let mut b = bus();
        let req = framed(&[1, 4, 0, 0x0C, 0, 2]);
        assert_eq!(b.control("mute 1", T), "ok: slave 1 muted");
        assert_eq!(b.answer(&req, T), None);
        assert_eq!(b.control("unmute 1", T), "ok: slave 1 unmuted");
        assert!(b.answer(&req, T).is_some());

        assert!(b.control("corrupt 1", T).contains("next answer"));
        assert!(!crc_ok(&b.answer(&req, T).unwrap()));
        assert!(crc_ok(&b.answer(&req, T).unwrap()));
        assert!(b.control("corrupt 1 all", T).contains("every answer"));
        assert!(!crc_ok(&b.answer(&req, T).unwrap()));
        assert!(!crc_ok(&b.answer(&req, T).unwrap()));

        assert!(b.control("exception 1 6", T).starts_with("ok"));
        assert_eq!(b.control("clear 1", T), "ok: slave 1 cleared");
        assert!(b.control("exception 1 6", T).starts_with("ok"));
        assert_eq!(b.answer(&req, T), Some(framed(&[1, 0x84, 6])));
        b.control("clear 1", T);

        assert_eq!(b.control("unplug", T), "ok: bus unplugged");
        assert_eq!(b.answer(&req, T), None);
        assert_eq!(b.answer(&framed(&[3, 3, 0, 0, 0, 1]), T), None);
        assert_eq!(b.control("plug", T), "ok: bus plugged");
        assert_eq!(
            b.answer(&req, T),
            Some(framed(&[1, 4, 4, 0x44, 0xBB, 0x80, 0x00]))
        );

        assert_eq!(
            b.control("set 3 temperature -5", T),
            "ok: slave 3 temperature = -5"
        );
        assert_eq!(
            b.answer(&framed(&[3, 3, 0, 0, 0, 1]), T),
            Some(framed(&[3, 3, 2, 0xFF, 0xCE]))
        );
        assert!(b.control("set 3 temperature auto", T).starts_with("ok"));
        assert_eq!(
            b.answer(&framed(&[3, 3, 0, 0, 0, 1]), T),
            Some(framed(&[3, 3, 2, 0, 217]))
        );

        let status = b.control("status", T);
        assert!(
            status.starts_with("bus plugged; slave 1 sdm630 requests=9 answers=7"),
            "{status}"
        );
        assert!(status.contains("power_l1=1500"), "{status}");
        assert!(
            status.contains("slave 3 tb260 requests=3 answers=2 temperature=21.7"),
            "{status}"
        );
    }

    #[test]
    fn bad_commands_get_errors() {
        let mut b = bus();
        for (cmd, want) in [
            ("", "error: empty command"),
            ("fly 1", "error: unknown command \"fly\""),
            ("mute", "error: usage: mute SLAVE"),
            ("mute 7", "error: no slave 7 on this bus (slaves: 1, 2, 3)"),
            ("mute x", "error: bad slave address \"x\""),
            (
                "set 1 power_l1",
                "error: usage: set SLAVE QUANTITY VALUE|auto",
            ),
            (
                "set 1 temperature 3",
                "error: sdm630 has no quantity \"temperature\"",
            ),
            ("set 3 temperature 99999", "error: 99999 does not fit"),
            ("set 1 power x", "error: bad value \"x\""),
            ("set 1 bogus auto", "error: sdm630 has no quantity"),
            ("exception 1 0", "error: bad exception code \"0\""),
            ("exception 1 300", "error: bad exception code \"300\""),
            ("corrupt 1 some", "error: usage: corrupt SLAVE [all]"),
            ("corrupt", "error: missing SLAVE"),
            ("unplug now", "error: usage: unplug"),
        ] {
            let got = b.control(cmd, T);
            assert!(got.starts_with(want), "{cmd:?}: {got}");
        }
        // Nothing changed.
        assert!(b.answer(&framed(&[1, 4, 0, 0, 0, 2]), T).is_some());
    }

    proptest! {
        #[test]
        fn any_read_gets_data_or_an_exception(address in 1u8..4, function in 3u8..5,
                                               register in prop_oneof![0u16..0x60, any::<u16>()],
                                               count in 0u16..130) {
            let mut b = bus();
            let [r0, r1] = register.to_be_bytes();
            let [c0, c1] = count.to_be_bytes();
            let request = framed(&[address, function, r0, r1, c0, c1]);
            let answer = b.answer(&request, T).unwrap();
            prop_assert!(crc_ok(&answer));
            if answer[1] == function {
                prop_assert_eq!(usize::from(answer[2]), 2 * usize::from(count));
                prop_assert_eq!(answer.len(), 5 + 2 * usize::from(count));
            } else {
                prop_assert_eq!(answer[1], function | 0x80);
                prop_assert!(matches!(answer[2], 1..=3));
            }
        }

        #[test]
        fn random_requests_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300),
                                       address in 0u8..5,
                                       body in proptest::collection::vec(any::<u8>(), 0..20)) {
            let mut b = bus();
            let mut framer = Framer::new(Line { baud: 9600, parity: Parity::None });
            // Random bytes through the framer, and random bodies with a right CRC straight in.
            let mut frames = framer.push(&bytes, T);
            // Mostly addressed to the configured slaves 1..=3, so their paths run.
            frames.push(framed(&[&[address][..], &body].concat()));
            frames.push(framed(&body));
            for f in frames {
                if let Some(answer) = b.answer(&f, T) {
                    prop_assert!(crc_ok(&answer));
                    prop_assert_eq!(answer[0], f[0]);
                    prop_assert!(answer.len() <= MAX_FRAME);
                }
            }
        }
    }
}
