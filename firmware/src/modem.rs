//! The GSM/3G modem driver: AT commands over the modem UART (3GPP TS 27.007), then PPP
//! ([`crate::ppp`]) once the data call is up.
//!
//! ```text
//! up:   AT (until it answers) -> ATE0 -> AT+CPIN? -> AT+CSQ -> AT+CREG? -> AT+CGDCONT=1,"IP","apn"
//!       -> ATD*99# -> CONNECT: PPP (LCP, PAP with login/password, IPCP) -> IP up
//! down: LCP Terminate-Request (-> NO CARRIER) -> ATH -> off
//! ```
//!
//! * not registered (no signal): the radio shows Searching, CSQ/CREG again every 2 s;
//! * no SIM (`+CPIN` not READY): NoSim, asked again every 10 s;
//! * the dial refused (`NO CARRIER`/`ERROR`: wrong APN, no network): again after 5 s — the
//!   controller's rollback restores a working APN if a new one never connects;
//! * the call dropped (`NO CARRIER` in data mode): IP lost, back to registration;
//! * a modem that stops answering: each command times out after [`AT_TIMEOUT_MS`]; after three
//!   in a row the modem is power-cycled (its power switch on the board; logged here) and the
//!   sequence starts over after [`POWER_CYCLE_MS`].
//!
//! Everything is non-blocking: [`Modem::poll`] advances on received bytes and deadlines.

use heapless::Vec;
use tek_controller::Radio;

use crate::ppp::{Datagram, Ppp, PppIp};
use crate::uart::ModemUart;

/// How long an AT command may take.
pub const AT_TIMEOUT_MS: u64 = 2_000;
/// How long `ATD` may take to connect.
pub const DIAL_TIMEOUT_MS: u64 = 30_000;
/// How long PPP may take to bring IP up after CONNECT.
pub const PPP_TIMEOUT_MS: u64 = 30_000;
/// `ppproto` has no restart timer: negotiation is started over this often until IP is up.
pub const PPP_RESTART_MS: u64 = 5_000;
/// Pause after a power-cycle.
pub const POWER_CYCLE_MS: u64 = 5_000;

/// What the driver is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Off,
    Probe,
    EchoOff,
    Pin,
    Csq,
    Creg,
    Context,
    Dial,
    /// PPP negotiating or up.
    Data,
    /// Waiting for NO CARRIER after our Terminate-Request.
    Hangup,
    Ath,
    /// Waiting until `deadline`, then `then`.
    Pause(Next),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    Probe,
    Pin,
    Csq,
}

/// Something the loop must tell the controller.
#[derive(Debug, Clone)]
pub enum ModemEvent {
    /// IPCP is up with these settings.
    IpUp(PppIp),
    /// The data call ended (dropped by the network or the modem).
    IpDown,
    /// A UDP datagram arrived (payload in the receive buffer).
    Datagram(Datagram),
}

/// The modem.
pub struct Modem {
    uart: ModemUart,
    ppp: Ppp,
    step: Step,
    deadline: u64,
    timeouts: u8,
    line: Vec<u8, 48>,
    /// Progress through "NO CARRIER" in data mode.
    carrier_match: u8,
    sim_ready: bool,
    /// The information line of the running command (+CPIN/+CSQ/+CREG) arrived: an `OK` without
    /// it is a late answer to an earlier command, and is ignored.
    info_seen: bool,
    registered: bool,
    signal: u8,
    radio: Radio,
    reported: Option<(Radio, u8)>,
    ip_reported: bool,
    /// When PPP negotiation is started over if IP is not up by then.
    ppp_restart_at: u64,
}

const NO_CARRIER: &[u8] = b"NO CARRIER";

impl Modem {
    /// The driver on `uart`, modem off.
    pub fn new(uart: ModemUart, ppp: Ppp) -> Modem {
        Modem {
            uart,
            ppp,
            step: Step::Off,
            deadline: u64::MAX,
            timeouts: 0,
            line: Vec::new(),
            carrier_match: 0,
            sim_ready: false,
            info_seen: false,
            registered: false,
            signal: 99,
            radio: Radio::Off,
            reported: None,
            ip_reported: false,
            ppp_restart_at: u64::MAX,
        }
    }

    /// Powers up and starts the attach sequence (again, if it was running).
    pub fn up(&mut self, now: u64) {
        crate::log!("gsm: modem up");
        self.ppp.close();
        self.ip_reported = false;
        self.radio = Radio::Searching;
        self.timeouts = 0;
        self.command(now, Step::Probe, "AT");
    }

    /// Hangs up and powers down.
    pub fn down(&mut self, now: u64) {
        crate::log!("gsm: modem down");
        if self.step == Step::Data {
            self.ppp.terminate(&mut self.uart);
            self.step = Step::Hangup;
            self.deadline = now + AT_TIMEOUT_MS;
        } else if self.step == Step::Dial {
            self.command(now, Step::Ath, "ATH");
        } else {
            // No call: nothing to hang up (an ATH now would leave a stray OK for the next
            // power-up's sequence).
            self.step = Step::Off;
            self.deadline = u64::MAX;
        }
        self.ppp.close();
        self.ip_reported = false;
        self.radio = Radio::Off;
    }

    /// The radio state and signal, when they changed since the last call.
    pub fn radio_changed(&mut self) -> Option<(Radio, u8)> {
        let now = (self.radio, self.signal);
        (self.reported != Some(now)).then(|| {
            self.reported = Some(now);
            now
        })
    }

    /// The PPP side (sending, the shared buffer's state).
    pub fn ppp(&mut self) -> &mut Ppp {
        &mut self.ppp
    }

    /// The UART (for sending on the PPP side).
    pub fn link(&mut self) -> (&mut Ppp, &mut ModemUart) {
        (&mut self.ppp, &mut self.uart)
    }

    /// When [`Modem::poll`] must run at the latest without received bytes.
    pub fn poll_at(&self) -> Option<u64> {
        (self.step != Step::Off).then_some(self.deadline)
    }

    fn command(&mut self, now: u64, step: Step, cmd: &str) {
        self.uart.write(cmd.as_bytes());
        self.uart.write(b"\r");
        self.step = step;
        self.info_seen = false;
        self.line.clear();
        self.deadline = now
            + if step == Step::Dial {
                DIAL_TIMEOUT_MS
            } else {
                AT_TIMEOUT_MS
            };
    }

    fn pause(&mut self, now: u64, ms: u64, next: Next) {
        self.step = Step::Pause(next);
        self.deadline = now + ms;
    }

    /// Advances on received bytes and deadlines; returns one event at a time (call again until
    /// `None`). `rx` is the loop's shared receive buffer (PPP frames land there); `apn`,
    /// `login`, `password` come from the running configuration.
    ///
    /// Bytes are taken from the UART one at a time: in data mode a complete frame is handled
    /// (and a datagram in it given to the caller) before the next frame's bytes may overwrite it.
    #[inline(never)]
    pub fn poll(
        &mut self,
        now: u64,
        rx: &mut [u8],
        apn: &str,
        login: &str,
        password: &str,
    ) -> Option<ModemEvent> {
        if self.step == Step::Data {
            if !self.ip_reported && now >= self.ppp_restart_at && !self.ppp.mid_frame() {
                // A lost negotiation frame is never sent again by ppproto: start over (the
                // network side answers a new Configure-Request in any state).
                crate::log!("gsm: PPP negotiation restarted");
                self.ppp.open(login, password);
                self.ppp_restart_at = now + PPP_RESTART_MS;
            }
            if let Some(e) = self.data_step(now, rx) {
                return Some(e);
            }
        }
        let mut b = [0u8; 1];
        while self.uart.read(&mut b) == 1 {
            let b = b[0];
            if self.step == Step::Data {
                if self.carrier(b) {
                    return self.call_dropped(now);
                }
                self.ppp.consume(&[b], rx);
                if b == 0x7E {
                    if let Some(e) = self.data_step(now, rx) {
                        return Some(e);
                    }
                }
            } else {
                self.at_byte(now, b, apn, login, password);
                if self.step == Step::Data {
                    // Just connected: send our Configure-Request before the network's is read
                    // (a ppproto still in its Closed state answers it with a Terminate-Ack).
                    if let Some(e) = self.data_step(now, rx) {
                        return Some(e);
                    }
                }
            }
        }
        self.uart.rearm();
        if now >= self.deadline {
            return self.timeout(now, apn);
        }
        None
    }

    /// Matches "NO CARRIER" across bytes; `true` when complete.
    fn carrier(&mut self, b: u8) -> bool {
        let i = usize::from(self.carrier_match);
        if b == NO_CARRIER[i] {
            self.carrier_match += 1;
        } else {
            self.carrier_match = u8::from(b == NO_CARRIER[0]);
        }
        if usize::from(self.carrier_match) == NO_CARRIER.len() {
            self.carrier_match = 0;
            return true;
        }
        false
    }

    /// Runs PPP: negotiation frames out, IP up, datagrams in.
    fn data_step(&mut self, now: u64, rx: &mut [u8]) -> Option<ModemEvent> {
        let got = self.ppp.poll(&mut self.uart, rx);
        if !self.ip_reported {
            if let Some(ip) = self.ppp.ip() {
                self.ip_reported = true;
                self.radio = Radio::Data;
                self.deadline = u64::MAX;
                crate::log!("gsm: PPP up, address {} dns {:?}", ip.address, ip.dns);
                // The datagram (if any) comes with the next poll: IP first.
                return Some(ModemEvent::IpUp(ip));
            }
            if now >= self.deadline {
                crate::log!("gsm: PPP did not come up, hanging up");
                self.ppp.terminate(&mut self.uart);
                self.ppp.close();
                self.step = Step::Hangup;
                self.deadline = now + AT_TIMEOUT_MS;
                return None;
            }
        }
        got.map(ModemEvent::Datagram)
    }

    fn call_dropped(&mut self, now: u64) -> Option<ModemEvent> {
        crate::log!("gsm: NO CARRIER, data call ended");
        self.ppp.close();
        self.radio = if self.registered {
            Radio::Registered
        } else {
            Radio::Searching
        };
        self.pause(now, 2_000, Next::Csq);
        let was_up = core::mem::replace(&mut self.ip_reported, false);
        was_up.then_some(ModemEvent::IpDown)
    }

    /// One byte of an AT response.
    fn at_byte(&mut self, now: u64, b: u8, apn: &str, login: &str, password: &str) {
        if b != b'\n' {
            if b != b'\r' {
                // A longer line is cut: every line we act on is short.
                let _ = self.line.push(b);
            }
            return;
        }
        let mut line: Vec<u8, 48> = Vec::new();
        core::mem::swap(&mut line, &mut self.line);
        let line = core::str::from_utf8(&line).unwrap_or("").trim();
        if line.is_empty() || line.starts_with("AT") {
            return; // blank, or our command echoed
        }
        self.response(now, line, apn, login, password);
    }

    fn response(&mut self, now: u64, line: &str, apn: &str, login: &str, password: &str) {
        let ok = line == "OK";
        let failed = line == "ERROR"
            || line.starts_with("+CME ERROR")
            || line == "NO CARRIER"
            || line == "BUSY"
            || line == "NO DIALTONE";
        if ok || failed || line.starts_with('+') || line.starts_with("CONNECT") {
            self.timeouts = 0;
        }
        match self.step {
            Step::Probe if ok => self.command(now, Step::EchoOff, "ATE0"),
            Step::EchoOff if ok => {
                self.sim_ready = false;
                self.command(now, Step::Pin, "AT+CPIN?");
            }
            Step::Pin => {
                if line.starts_with("+CPIN:") {
                    self.sim_ready = line.ends_with("READY");
                    self.info_seen = true;
                } else if ok && !self.info_seen {
                    // A late OK of an earlier command.
                } else if ok && self.sim_ready {
                    self.command(now, Step::Csq, "AT+CSQ");
                } else if ok || failed {
                    if self.radio != Radio::NoSim {
                        crate::log!("gsm: no SIM ({})", line);
                    }
                    self.radio = Radio::NoSim;
                    self.pause(now, 10_000, Next::Pin);
                }
            }
            Step::Csq => {
                if let Some(v) = line.strip_prefix("+CSQ:") {
                    self.signal = v
                        .split(',')
                        .next()
                        .and_then(|s| s.trim().parse().ok())
                        .unwrap_or(99);
                    self.info_seen = true;
                } else if ok && self.info_seen {
                    self.command(now, Step::Creg, "AT+CREG?");
                } else if failed {
                    self.pause(now, 2_000, Next::Csq);
                }
            }
            Step::Creg => {
                if let Some(v) = line.strip_prefix("+CREG:") {
                    let stat = v.split(',').nth(1).map(str::trim);
                    self.registered = matches!(stat, Some("1") | Some("5"));
                    self.info_seen = true;
                } else if ok && !self.info_seen {
                    // A late OK of an earlier command.
                } else if ok && self.registered {
                    if self.radio != Radio::Registered {
                        crate::log!("gsm: registered, signal {}", self.signal);
                    }
                    self.radio = Radio::Registered;
                    let mut cmd: heapless::String<96> = heapless::String::new();
                    // APN characters are checked by the configuration (printable, no quotes).
                    let _ =
                        core::fmt::write(&mut cmd, format_args!("AT+CGDCONT=1,\"IP\",\"{}\"", apn));
                    self.command(now, Step::Context, &cmd);
                } else if ok || failed {
                    if self.radio != Radio::Searching {
                        crate::log!("gsm: searching for a network (signal {})", self.signal);
                    }
                    self.radio = Radio::Searching;
                    self.pause(now, 2_000, Next::Csq);
                }
            }
            Step::Context if ok => self.command(now, Step::Dial, "ATD*99#"),
            Step::Context if failed => self.pause(now, 5_000, Next::Csq),
            Step::Dial if line.starts_with("CONNECT") => {
                crate::log!("gsm: CONNECT (APN \"{}\"), PPP negotiating", apn);
                self.ppp.open(login, password);
                self.step = Step::Data;
                self.carrier_match = 0;
                self.deadline = now + PPP_TIMEOUT_MS;
                self.ppp_restart_at = now + PPP_RESTART_MS;
            }
            Step::Dial if failed => {
                crate::log!("gsm: dial failed ({}), APN \"{}\"", line, apn);
                self.pause(now, 5_000, Next::Csq);
            }
            Step::Hangup if line == "NO CARRIER" => self.command(now, Step::Ath, "ATH"),
            Step::Ath if ok || failed => self.hung_up(now),
            _ => {}
        }
    }

    /// The call is over: off if the controller asked for that, else dial again (a call that
    /// did not come up is retried, the modem stays in use).
    fn hung_up(&mut self, now: u64) {
        if self.radio == Radio::Off {
            self.step = Step::Off;
            self.deadline = u64::MAX;
        } else {
            self.pause(now, 2_000, Next::Csq);
        }
    }

    /// A deadline passed.
    fn timeout(&mut self, now: u64, _apn: &str) -> Option<ModemEvent> {
        match self.step {
            Step::Off | Step::Data => {}
            Step::Pause(next) => match next {
                Next::Probe => self.command(now, Step::Probe, "AT"),
                Next::Pin => self.command(now, Step::Pin, "AT+CPIN?"),
                Next::Csq => self.command(now, Step::Csq, "AT+CSQ"),
            },
            Step::Hangup => self.command(now, Step::Ath, "ATH"),
            Step::Ath => self.hung_up(now),
            _ => {
                self.timeouts += 1;
                if self.timeouts >= 3 {
                    crate::log!("gsm: modem not answering, power-cycling it");
                    self.timeouts = 0;
                    self.radio = Radio::Searching;
                    self.pause(now, POWER_CYCLE_MS, Next::Probe);
                } else {
                    // Start over from a plain AT (whatever state the modem is in).
                    self.command(now, Step::Probe, "AT");
                }
            }
        }
        None
    }
}
