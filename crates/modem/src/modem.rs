//! The emulated modem as one state machine: serial bytes in, serial bytes and relay work out.
//!
//! In command mode it answers AT commands ([`crate::at`]); `ATD*99#` opens a packet data call
//! (refused with `NO CARRIER` without signal or registration, or when the APN is on the refused
//! list), after which the serial line carries PPP ([`crate::hdlc`], [`crate::ppp`]) until either
//! side hangs up: the device with an LCP Terminate-Request, the network (a lost signal, a
//! `drop` from the control channel) with `NO CARRIER` — as a module reports it.
//!
//! The test bench steers it with control lines ([`Modem::control`]): `signal N`, `drop`,
//! `refuse-apn NAME`, `accept-apn NAME`, `sim on|off`, `mute`/`unmute` (stop / resume answering
//! AT commands: a hung module), `status`.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use crate::at::{self, Command, LineReader};
use crate::hdlc::{self, Decoder};
use crate::ip::{self, Udp};
use crate::ppp::{self, Event, Server, Settings};

/// How the emulator is set up.
#[derive(Debug, Clone)]
pub struct Options {
    /// The network's own address on the PPP link (also the DNS server handed out).
    pub local: Ipv4Addr,
    /// The address handed to the device.
    pub peer: Ipv4Addr,
    /// Signal quality at start (0..=31, 99 = none).
    pub signal: u8,
    /// APNs the network refuses.
    pub refused_apns: BTreeSet<String>,
    /// `Some((login, password))`: PAP required with these credentials.
    pub pap: Option<(String, String)>,
}

/// Work for the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Bytes for the device's serial line.
    Serial(Vec<u8>),
    /// A UDP datagram from the device, to relay.
    Datagram(Udp),
    /// The call ended: forget the relay's mappings.
    CallEnded,
}

/// What the serial line carries.
#[derive(Debug)]
enum Mode {
    Command,
    Data { server: Server, decoder: Decoder },
}

/// The modem.
#[derive(Debug)]
pub struct Modem {
    opts: Options,
    mode: Mode,
    echo: bool,
    lines: LineReader,
    apn: String,
    sim: bool,
    muted: bool,
    calls: u64,
    ip_id: u16,
    up: bool,
}

impl Modem {
    /// A modem just powered on (echo on, no context defined).
    pub fn new(opts: Options) -> Modem {
        Modem {
            opts,
            mode: Mode::Command,
            echo: true,
            lines: LineReader::default(),
            apn: String::new(),
            sim: true,
            muted: false,
            calls: 0,
            ip_id: 0,
            up: false,
        }
    }

    fn registered(&self) -> bool {
        self.sim && (1..=31).contains(&self.opts.signal)
    }

    /// Whether a data call is up with IPCP open.
    pub fn call_up(&self) -> bool {
        self.up
    }

    /// Bytes from the device.
    pub fn serial_in(&mut self, bytes: &[u8]) -> Vec<Output> {
        let mut out = Vec::new();
        for &b in bytes {
            match &mut self.mode {
                Mode::Command => {
                    if self.muted {
                        continue;
                    }
                    if self.echo {
                        out.push(Output::Serial(vec![b]));
                    }
                    if let Some(line) = self.lines.push(b) {
                        self.command(&line, &mut out);
                    }
                }
                Mode::Data { decoder, .. } => {
                    if let Some(packet) = decoder.push(b) {
                        self.ppp_input(&packet, &mut out);
                    }
                }
            }
        }
        out
    }

    /// Retransmissions of the PPP negotiation (call every few seconds).
    pub fn tick(&mut self) -> Vec<Output> {
        let mut out = Vec::new();
        if let Mode::Data { server, .. } = &mut self.mode {
            for p in server.tick() {
                out.push(Output::Serial(frame(server, &p)));
            }
        }
        out
    }

    /// A datagram from the relay for the device (dropped unless the call is up).
    pub fn deliver(&mut self, udp: &Udp) -> Vec<Output> {
        let Mode::Data { server, .. } = &mut self.mode else {
            return Vec::new();
        };
        self.ip_id = self.ip_id.wrapping_add(1);
        match server.ipv4(&ip::build(udp, self.ip_id)) {
            Some(p) => vec![Output::Serial(frame(server, &p))],
            None => Vec::new(),
        }
    }

    /// The device's address on the link.
    pub fn peer(&self) -> Ipv4Addr {
        self.opts.peer
    }

    /// The options in force (control commands change signal and refused APNs).
    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// A control line from the test bench: the reply and any work.
    pub fn control(&mut self, line: &str) -> (String, Vec<Output>) {
        let mut out = Vec::new();
        let mut words = line.split_whitespace();
        let reply = match (words.next(), words.next(), words.next()) {
            (Some("signal"), Some(n), None) => match n.parse::<u8>() {
                Ok(n) if n <= 31 || n == 99 => {
                    self.opts.signal = n;
                    if !self.registered() {
                        self.network_hangup("signal lost", &mut out);
                    }
                    format!("ok signal {n}")
                }
                _ => "error: signal is 0..=31 or 99".into(),
            },
            (Some("drop"), None, None) => {
                if self.network_hangup("dropped by the network", &mut out) {
                    "ok dropped".into()
                } else {
                    "ok no call".into()
                }
            }
            (Some("refuse-apn"), apn, None) => {
                let apn = apn.unwrap_or("").to_string();
                let r = format!("ok refusing APN {apn:?}");
                self.opts.refused_apns.insert(apn);
                r
            }
            (Some("accept-apn"), apn, None) => {
                let apn = apn.unwrap_or("");
                self.opts.refused_apns.remove(apn);
                format!("ok accepting APN {apn:?}")
            }
            (Some("sim"), Some(s @ ("on" | "off")), None) => {
                self.sim = s == "on";
                if !self.sim {
                    self.network_hangup("SIM removed", &mut out);
                }
                format!("ok sim {s}")
            }
            (Some("mute"), None, None) => {
                self.muted = true;
                "ok muted".into()
            }
            (Some("unmute"), None, None) => {
                self.muted = false;
                "ok answering".into()
            }
            (Some("status"), None, None) => self.status(),
            _ => format!("error: unknown control command {line:?}"),
        };
        (reply, out)
    }

    /// One line describing the modem (`status` on the control channel).
    pub fn status(&self) -> String {
        format!(
            "mode {} apn {:?} signal {} sim {} calls {} muted {}",
            match &self.mode {
                Mode::Command => "command",
                Mode::Data { .. } if self.up => "data-up",
                Mode::Data { .. } => "data-negotiating",
            },
            self.apn,
            self.opts.signal,
            if self.sim { "on" } else { "off" },
            self.calls,
            self.muted
        )
    }

    fn respond(&self, out: &mut Vec<Output>, text: &str) {
        out.push(Output::Serial(format!("\r\n{text}\r\n").into_bytes()));
    }

    fn command(&mut self, line: &str, out: &mut Vec<Output>) {
        let cmd = at::parse(line);
        tracing::debug!(?cmd, "AT");
        match cmd {
            Command::Attention | Command::Functionality => self.respond(out, "OK"),
            Command::Echo(on) => {
                self.echo = on;
                self.respond(out, "OK");
            }
            Command::Info => self.respond(out, "tek modem emulator\r\n\r\nOK"),
            Command::Reset => {
                self.echo = true;
                self.apn.clear();
                self.respond(out, "OK");
            }
            Command::PinQuery => {
                if self.sim {
                    self.respond(out, "+CPIN: READY\r\n\r\nOK");
                } else {
                    self.respond(out, "+CME ERROR: 10");
                }
            }
            Command::SignalQuality => {
                let s = if self.sim { self.opts.signal } else { 99 };
                self.respond(out, &format!("+CSQ: {s},0\r\n\r\nOK"));
            }
            Command::RegistrationQuery => {
                let stat = if !self.sim {
                    0
                } else if self.registered() {
                    1
                } else {
                    2
                };
                self.respond(out, &format!("+CREG: 0,{stat}\r\n\r\nOK"));
            }
            Command::DefineContext { cid, apn } => {
                if cid == 1 {
                    self.apn = apn;
                }
                self.respond(out, "OK");
            }
            Command::DialData { cid } => {
                if cid != 1 || !self.registered() {
                    tracing::info!("dial refused: not registered");
                    self.respond(out, "NO CARRIER");
                } else if self.opts.refused_apns.contains(&self.apn) {
                    tracing::info!(apn = %self.apn, "dial refused: APN refused by the network");
                    self.respond(out, "NO CARRIER");
                } else {
                    self.calls += 1;
                    tracing::info!(apn = %self.apn, call = self.calls, "data call: CONNECT");
                    self.respond(out, "CONNECT 115200");
                    let mut server = Server::new(
                        Settings {
                            local: self.opts.local,
                            peer: self.opts.peer,
                            dns: self.opts.local,
                            pap: self
                                .opts
                                .pap
                                .as_ref()
                                .map(|(u, p)| (u.clone().into_bytes(), p.clone().into_bytes())),
                        },
                        0x5445_4B00 ^ self.calls as u32,
                    );
                    for p in server.start() {
                        out.push(Output::Serial(frame(&server, &p)));
                    }
                    self.mode = Mode::Data {
                        server,
                        decoder: Decoder::new(),
                    };
                }
            }
            Command::Hangup => self.respond(out, "OK"),
            Command::Unknown(_) => self.respond(out, "ERROR"),
        }
    }

    fn ppp_input(&mut self, packet: &[u8], out: &mut Vec<Output>) {
        let Mode::Data { server, .. } = &mut self.mode else {
            return;
        };
        tracing::debug!(len = packet.len(), head = ?&packet[..packet.len().min(8)], "PPP in");
        let (packets, events) = server.input(packet);
        for p in &packets {
            out.push(Output::Serial(frame(server, p)));
        }
        for e in events {
            match e {
                Event::Up => {
                    self.up = true;
                    tracing::info!(peer = %self.opts.peer, "data call: IPCP up");
                }
                Event::Ipv4(p) => match ip::parse(&p) {
                    Some(udp) if *udp.src.ip() == self.opts.peer => out.push(Output::Datagram(udp)),
                    _ => tracing::debug!("dropped a non-UDP or spoofed IPv4 packet"),
                },
                Event::Terminated => {
                    tracing::info!("data call: hung up by the device");
                    self.end_call(out);
                }
                Event::AuthFailed => {
                    tracing::info!("data call: PAP authentication failed");
                }
            }
        }
    }

    /// The network ends the call; `false` if there was none.
    fn network_hangup(&mut self, why: &str, out: &mut Vec<Output>) -> bool {
        if !matches!(self.mode, Mode::Data { .. }) {
            return false;
        }
        tracing::info!("data call: {why}");
        self.end_call(out);
        true
    }

    fn end_call(&mut self, out: &mut Vec<Output>) {
        self.mode = Mode::Command;
        self.up = false;
        self.lines = LineReader::default();
        self.respond(out, "NO CARRIER");
        out.push(Output::CallEnded);
    }
}

fn frame(server: &Server, packet: &[u8]) -> Vec<u8> {
    let protocol = u16::from_be_bytes([packet[0], packet[1]]);
    hdlc::encode(packet, server.tx_accm(protocol))
}

/// The serial bytes of `out`, concatenated (for tests).
pub fn serial_of(out: &[Output]) -> Vec<u8> {
    out.iter()
        .filter_map(|o| match o {
            Output::Serial(b) => Some(b.as_slice()),
            _ => None,
        })
        .flatten()
        .copied()
        .collect()
}

/// Re-exported for the PPP client test.
pub use ppp::proto;

#[cfg(test)]
mod tests {
    use super::*;

    fn modem() -> Modem {
        Modem::new(Options {
            local: Ipv4Addr::new(10, 64, 0, 1),
            peer: Ipv4Addr::new(10, 64, 0, 2),
            signal: 20,
            refused_apns: ["wrong.apn".to_string()].into(),
            pap: None,
        })
    }

    fn say(m: &mut Modem, line: &str) -> String {
        String::from_utf8_lossy(&serial_of(&m.serial_in(format!("{line}\r").as_bytes())))
            .into_owned()
    }

    #[test]
    fn answers_the_attach_sequence() {
        let mut m = modem();
        assert_eq!(say(&mut m, "AT"), "AT\r\r\nOK\r\n"); // echo on at power-up
        assert_eq!(say(&mut m, "ATE0"), "ATE0\r\r\nOK\r\n");
        assert_eq!(say(&mut m, "AT+CPIN?"), "\r\n+CPIN: READY\r\n\r\nOK\r\n");
        assert_eq!(say(&mut m, "AT+CSQ"), "\r\n+CSQ: 20,0\r\n\r\nOK\r\n");
        assert_eq!(say(&mut m, "AT+CREG?"), "\r\n+CREG: 0,1\r\n\r\nOK\r\n");
        assert_eq!(
            say(&mut m, "AT+CGDCONT=1,\"IP\",\"internet\""),
            "\r\nOK\r\n"
        );
        assert_eq!(say(&mut m, "AT+BOGUS"), "\r\nERROR\r\n");
        let s = say(&mut m, "ATD*99#");
        assert!(s.starts_with("\r\nCONNECT 115200\r\n\x7e"), "{s:?}");
        assert!(m
            .status()
            .starts_with("mode data-negotiating apn \"internet\""));
    }

    #[test]
    fn refuses_without_signal_or_with_a_refused_apn() {
        let mut m = modem();
        say(&mut m, "ATE0");
        m.control("signal 99");
        assert_eq!(say(&mut m, "AT+CREG?"), "\r\n+CREG: 0,2\r\n\r\nOK\r\n");
        assert_eq!(say(&mut m, "ATD*99#"), "\r\nNO CARRIER\r\n");
        m.control("signal 15");
        say(&mut m, "AT+CGDCONT=1,\"IP\",\"wrong.apn\"");
        assert_eq!(say(&mut m, "ATD*99#"), "\r\nNO CARRIER\r\n");
        m.control("accept-apn wrong.apn");
        assert!(say(&mut m, "ATD*99#").contains("CONNECT"));
        // Losing the signal drops the call with NO CARRIER, back in command mode.
        let (_, out) = m.control("signal 0");
        assert_eq!(serial_of(&out), b"\r\nNO CARRIER\r\n");
        assert!(out.contains(&Output::CallEnded));
        assert_eq!(say(&mut m, "AT"), "\r\nOK\r\n");
        m.control("sim off");
        assert_eq!(say(&mut m, "AT+CPIN?"), "\r\n+CME ERROR: 10\r\n");
        m.control("mute");
        assert_eq!(say(&mut m, "AT"), "");
        assert!(m.control("signal 40").0.starts_with("error"));
        assert!(m.control("explode").0.starts_with("error"));
    }
}
