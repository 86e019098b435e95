//! The network side of PPP (RFC 1661, 1332, 1334, 1877), as a cellular network's gateway runs it
//! behind the modem: LCP, PAP when a login is required, IPCP handing out the device's address
//! and DNS server, then IPv4 packets.
//!
//! Pure logic: [`Server::input`] takes one unframed packet (protocol + information) and returns
//! what to send back and what happened; [`Server::tick`] retransmits an unanswered
//! Configure-Request (RFC 1661's restart timer) — the caller decides when. Malformed packets are
//! dropped, never a panic.

use std::net::Ipv4Addr;

/// PPP protocol numbers.
pub mod proto {
    /// Link Control Protocol.
    pub const LCP: u16 = 0xC021;
    /// Password Authentication Protocol.
    pub const PAP: u16 = 0xC023;
    /// Challenge Handshake Authentication Protocol (refused: PAP is offered).
    pub const CHAP: u16 = 0xC223;
    /// IP Control Protocol.
    pub const IPCP: u16 = 0x8021;
    /// IPv4.
    pub const IPV4: u16 = 0x0021;
}

/// Control protocol codes (LCP, IPCP; PAP uses 1..3 with its own meanings).
mod code {
    pub const CONF_REQ: u8 = 1;
    pub const CONF_ACK: u8 = 2;
    pub const CONF_NAK: u8 = 3;
    pub const CONF_REJ: u8 = 4;
    pub const TERM_REQ: u8 = 5;
    pub const TERM_ACK: u8 = 6;
    pub const PROTO_REJ: u8 = 8;
    pub const ECHO_REQ: u8 = 9;
    pub const ECHO_REPLY: u8 = 10;
    pub const DISCARD_REQ: u8 = 11;
}

/// LCP options.
mod lcp_opt {
    pub const MRU: u8 = 1;
    pub const ACCM: u8 = 2;
    pub const AUTH: u8 = 3;
    pub const MAGIC: u8 = 5;
    pub const PFC: u8 = 7;
    pub const ACFC: u8 = 8;
}

/// IPCP options.
mod ipcp_opt {
    pub const ADDRESS: u8 = 3;
    pub const DNS1: u8 = 129;
    pub const DNS2: u8 = 131;
}

/// The addresses and credentials of one call.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The network's (gateway's) address, sent in our IPCP Configure-Request.
    pub local: Ipv4Addr,
    /// The address handed to the device.
    pub peer: Ipv4Addr,
    /// The DNS server handed to the device.
    pub dns: Ipv4Addr,
    /// `Some((login, password))`: PAP is required and must match; `None`: no authentication.
    pub pap: Option<(Vec<u8>, Vec<u8>)>,
}

/// Where the call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// LCP negotiating.
    Establish,
    /// Waiting for the PAP Authenticate-Request.
    Auth,
    /// IPCP negotiating.
    Network,
    /// IPCP open both ways: IPv4 flows.
    Open,
    /// Terminated (by the device, or failed authentication).
    Dead,
}

/// Something that happened, besides the packets to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// IPCP opened: the device has its address.
    Up,
    /// An IPv4 packet from the device.
    Ipv4(Vec<u8>),
    /// The device sent an LCP Terminate-Request (hang-up).
    Terminated,
    /// PAP credentials did not match.
    AuthFailed,
}

/// One control protocol's negotiation state (RFC 1661's automaton, reduced to what a gateway
/// that always offers the same options needs).
#[derive(Debug, Default, Clone, Copy)]
struct Cp {
    /// Our Configure-Request was acked.
    ack_received: bool,
    /// We acked the peer's Configure-Request.
    ack_sent: bool,
    /// Identifier of our last Configure-Request.
    id: u8,
    /// Configure-Requests sent without an ack.
    retries: u8,
}

impl Cp {
    fn open(&self) -> bool {
        self.ack_received && self.ack_sent
    }
}

/// The network side of one PPP call.
#[derive(Debug)]
pub struct Server {
    settings: Settings,
    phase: Phase,
    lcp: Cp,
    ipcp: Cp,
    authenticated: bool,
    /// The ACCM the device asked for (what we must escape when sending to it).
    peer_accm: u32,
    magic: u32,
    /// Whether our Configure-Request carries the magic number (until the peer rejects it).
    send_magic: bool,
}

/// How many times a Configure-Request is sent before giving up (RFC 1661's Max-Configure).
pub const MAX_CONFIGURE: u8 = 10;

impl Server {
    /// A new call: the caller sends [`Server::start`]'s packets.
    pub fn new(settings: Settings, magic: u32) -> Server {
        Server {
            settings,
            phase: Phase::Establish,
            lcp: Cp::default(),
            ipcp: Cp::default(),
            authenticated: false,
            peer_accm: u32::MAX,
            magic,
            send_magic: true,
        }
    }

    /// The call's phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The map of control characters to escape when sending to the device: all of them until
    /// LCP is open (RFC 1662 7.1), then what the device asked for.
    pub fn tx_accm(&self, protocol: u16) -> u32 {
        if protocol == proto::LCP || !self.lcp.open() {
            u32::MAX
        } else {
            self.peer_accm
        }
    }

    /// The first packets of the call: our LCP Configure-Request.
    pub fn start(&mut self) -> Vec<Vec<u8>> {
        vec![self.lcp_request()]
    }

    /// Retransmits an unacknowledged Configure-Request (call about every 3 s). Returns nothing
    /// once the phase's request was acked, and nothing after [`MAX_CONFIGURE`] tries.
    pub fn tick(&mut self) -> Vec<Vec<u8>> {
        match self.phase {
            Phase::Establish if !self.lcp.ack_received && self.lcp.retries < MAX_CONFIGURE => {
                vec![self.lcp_request()]
            }
            Phase::Network if !self.ipcp.ack_received && self.ipcp.retries < MAX_CONFIGURE => {
                vec![self.ipcp_request()]
            }
            _ => Vec::new(),
        }
    }

    /// Wraps an IPv4 packet for the device (`None` unless IPCP is open).
    pub fn ipv4(&self, packet: &[u8]) -> Option<Vec<u8>> {
        (self.phase == Phase::Open).then(|| {
            let mut p = proto::IPV4.to_be_bytes().to_vec();
            p.extend_from_slice(packet);
            p
        })
    }

    /// An LCP Terminate-Request (the network hangs up).
    pub fn terminate(&mut self) -> Vec<u8> {
        self.phase = Phase::Dead;
        self.lcp.id = self.lcp.id.wrapping_add(1);
        control(proto::LCP, code::TERM_REQ, self.lcp.id, &[])
    }

    /// Handles one packet from the device (protocol + information).
    pub fn input(&mut self, packet: &[u8]) -> (Vec<Vec<u8>>, Vec<Event>) {
        let mut out = Vec::new();
        let mut events = Vec::new();
        if packet.len() < 2 || self.phase == Phase::Dead {
            return (out, events);
        }
        let protocol = u16::from_be_bytes([packet[0], packet[1]]);
        let body = &packet[2..];
        match protocol {
            proto::LCP => self.lcp_input(body, &mut out, &mut events),
            proto::PAP => self.pap_input(body, &mut out, &mut events),
            proto::IPCP => {
                if matches!(self.phase, Phase::Network | Phase::Open) {
                    self.ipcp_input(body, &mut out, &mut events);
                }
            }
            proto::IPV4 => {
                if self.phase == Phase::Open {
                    events.push(Event::Ipv4(body.to_vec()));
                }
            }
            _ => {
                if self.lcp.open() {
                    // RFC 1661 5.7: Protocol-Reject carries the rejected protocol and packet.
                    self.lcp.id = self.lcp.id.wrapping_add(1);
                    out.push(control(proto::LCP, code::PROTO_REJ, self.lcp.id, packet));
                }
            }
        }
        (out, events)
    }

    fn lcp_request(&mut self) -> Vec<u8> {
        self.lcp.id = self.lcp.id.wrapping_add(1);
        self.lcp.retries = self.lcp.retries.saturating_add(1);
        let mut opts = Vec::new();
        if self.settings.pap.is_some() {
            opts.extend_from_slice(&[lcp_opt::AUTH, 4, 0xC0, 0x23]);
        }
        if self.send_magic {
            opts.extend_from_slice(&[lcp_opt::MAGIC, 6]);
            opts.extend_from_slice(&self.magic.to_be_bytes());
        }
        control(proto::LCP, code::CONF_REQ, self.lcp.id, &opts)
    }

    fn ipcp_request(&mut self) -> Vec<u8> {
        self.ipcp.id = self.ipcp.id.wrapping_add(1);
        self.ipcp.retries = self.ipcp.retries.saturating_add(1);
        let mut opts = vec![ipcp_opt::ADDRESS, 6];
        opts.extend_from_slice(&self.settings.local.octets());
        control(proto::IPCP, code::CONF_REQ, self.ipcp.id, &opts)
    }

    fn lcp_input(&mut self, body: &[u8], out: &mut Vec<Vec<u8>>, events: &mut Vec<Event>) {
        let Some((c, id, data)) = header(body) else {
            return;
        };
        match c {
            code::CONF_REQ => {
                let Some(options) = options(data) else {
                    return;
                };
                let mut rej = Vec::new();
                let mut accm = None;
                for (t, v) in &options {
                    let ok = match *t {
                        lcp_opt::MRU => v.len() == 2,
                        lcp_opt::ACCM => {
                            accm = <[u8; 4]>::try_from(*v).ok().map(u32::from_be_bytes);
                            accm.is_some()
                        }
                        lcp_opt::MAGIC => v.len() == 4,
                        lcp_opt::PFC | lcp_opt::ACFC => v.is_empty(),
                        _ => false,
                    };
                    if !ok {
                        rej.extend_from_slice(&option(*t, v));
                    }
                }
                if rej.is_empty() {
                    if let Some(a) = accm {
                        self.peer_accm = a;
                    }
                    out.push(control(proto::LCP, code::CONF_ACK, id, data));
                    self.lcp.ack_sent = true;
                } else {
                    out.push(control(proto::LCP, code::CONF_REJ, id, &rej));
                }
                if self.lcp.ack_received && self.lcp.ack_sent && self.phase == Phase::Establish {
                    // The peer restarted negotiation after we were open: not modelled; a new
                    // request from the peer once open is acked and changes nothing else.
                }
            }
            code::CONF_ACK if id == self.lcp.id => self.lcp.ack_received = true,
            code::CONF_NAK | code::CONF_REJ if id == self.lcp.id => {
                // The device refused the magic number (ppproto does: it knows no loopback
                // detection): leave it out. Refusing authentication ends the call.
                let Some(opts) = options(data) else {
                    return;
                };
                if opts.iter().any(|(t, _)| *t == lcp_opt::MAGIC) {
                    self.send_magic = false;
                }
                if opts.iter().any(|(t, _)| *t == lcp_opt::AUTH) && self.settings.pap.is_some() {
                    events.push(Event::AuthFailed);
                    self.phase = Phase::Dead;
                    self.lcp.id = self.lcp.id.wrapping_add(1);
                    out.push(control(proto::LCP, code::TERM_REQ, self.lcp.id, &[]));
                    return;
                }
                out.push(self.lcp_request());
            }
            code::TERM_REQ => {
                out.push(control(proto::LCP, code::TERM_ACK, id, &[]));
                self.phase = Phase::Dead;
                events.push(Event::Terminated);
                return;
            }
            code::ECHO_REQ if self.lcp.open() => {
                let mut reply = data.to_vec();
                // Our magic number replaces the peer's (RFC 1661 5.8).
                if reply.len() >= 4 {
                    reply[..4].copy_from_slice(&self.magic.to_be_bytes());
                }
                out.push(control(proto::LCP, code::ECHO_REPLY, id, &reply));
            }
            code::DISCARD_REQ | code::ECHO_REPLY | code::TERM_ACK | code::PROTO_REJ => {}
            _ => {}
        }
        if self.phase == Phase::Establish && self.lcp.open() {
            if self.settings.pap.is_some() {
                self.phase = Phase::Auth;
            } else {
                self.phase = Phase::Network;
                out.push(self.ipcp_request());
            }
        }
    }

    fn pap_input(&mut self, body: &[u8], out: &mut Vec<Vec<u8>>, events: &mut Vec<Event>) {
        let Some((c, id, data)) = header(body) else {
            return;
        };
        // Authenticate-Request: peer-id length, peer-id, password length, password.
        if c != 1 || !matches!(self.phase, Phase::Auth | Phase::Network | Phase::Open) {
            return;
        }
        let Some((&ul, rest)) = data.split_first() else {
            return;
        };
        let ul = usize::from(ul);
        if rest.len() < ul + 1 {
            return;
        }
        let (user, rest) = rest.split_at(ul);
        let pl = usize::from(rest[0]);
        let Some(pass) = rest.get(1..1 + pl) else {
            return;
        };
        let ok = match &self.settings.pap {
            Some((u, p)) => u == user && p == pass,
            None => true,
        };
        if ok {
            out.push(control(proto::PAP, 2, id, &[0]));
            if self.phase == Phase::Auth {
                self.authenticated = true;
                self.phase = Phase::Network;
                out.push(self.ipcp_request());
            }
        } else {
            out.push(control(proto::PAP, 3, id, &[0]));
            events.push(Event::AuthFailed);
        }
    }

    fn ipcp_input(&mut self, body: &[u8], out: &mut Vec<Vec<u8>>, events: &mut Vec<Event>) {
        let Some((c, id, data)) = header(body) else {
            return;
        };
        match c {
            code::CONF_REQ => {
                let Some(opts) = options(data) else {
                    return;
                };
                let mut rej = Vec::new();
                let mut nak = Vec::new();
                for (t, v) in &opts {
                    let want = match *t {
                        ipcp_opt::ADDRESS => Some(self.settings.peer),
                        ipcp_opt::DNS1 => Some(self.settings.dns),
                        ipcp_opt::DNS2 => Some(self.settings.dns),
                        _ => None,
                    };
                    match (want, <[u8; 4]>::try_from(*v)) {
                        (Some(w), Ok(a)) if Ipv4Addr::from(a) == w => {}
                        (Some(w), Ok(_)) => nak.extend_from_slice(&option(*t, &w.octets())),
                        _ => rej.extend_from_slice(&option(*t, v)),
                    }
                }
                if !rej.is_empty() {
                    out.push(control(proto::IPCP, code::CONF_REJ, id, &rej));
                } else if !nak.is_empty() {
                    out.push(control(proto::IPCP, code::CONF_NAK, id, &nak));
                } else {
                    out.push(control(proto::IPCP, code::CONF_ACK, id, data));
                    self.ipcp.ack_sent = true;
                }
            }
            code::CONF_ACK if id == self.ipcp.id => self.ipcp.ack_received = true,
            code::CONF_NAK | code::CONF_REJ if id == self.ipcp.id => {
                // Our own address is not negotiable; asking again is all we can do.
                out.push(self.ipcp_request());
            }
            code::TERM_REQ => out.push(control(proto::IPCP, code::TERM_ACK, id, &[])),
            _ => {}
        }
        if self.phase == Phase::Network && self.ipcp.open() {
            self.phase = Phase::Open;
            events.push(Event::Up);
        }
    }
}

/// Code, identifier and data of a control packet (length field checked and applied).
fn header(body: &[u8]) -> Option<(u8, u8, &[u8])> {
    if body.len() < 4 {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([body[2], body[3]]));
    if len < 4 || len > body.len() {
        return None;
    }
    Some((body[0], body[1], &body[4..len]))
}

/// Type-length-value options; `None` if malformed.
fn options(mut data: &[u8]) -> Option<Vec<(u8, &[u8])>> {
    let mut v = Vec::new();
    while !data.is_empty() {
        if data.len() < 2 {
            return None;
        }
        let len = usize::from(data[1]);
        if len < 2 || len > data.len() {
            return None;
        }
        v.push((data[0], &data[2..len]));
        data = &data[len..];
    }
    Some(v)
}

fn option(t: u8, v: &[u8]) -> Vec<u8> {
    let mut o = vec![t, (v.len() + 2) as u8];
    o.extend_from_slice(v);
    o
}

/// A control packet: protocol, code, identifier, length, data.
pub fn control(protocol: u16, c: u8, id: u8, data: &[u8]) -> Vec<u8> {
    let mut p = protocol.to_be_bytes().to_vec();
    p.push(c);
    p.push(id);
    p.extend_from_slice(&((data.len() + 4) as u16).to_be_bytes());
    p.extend_from_slice(data);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pap: Option<(&str, &str)>) -> Settings {
        Settings {
            local: Ipv4Addr::new(10, 64, 0, 1),
            peer: Ipv4Addr::new(10, 64, 0, 2),
            dns: Ipv4Addr::new(10, 64, 0, 1),
            pap: pap.map(|(u, p)| (u.as_bytes().to_vec(), p.as_bytes().to_vec())),
        }
    }

    #[test]
    fn lcp_request_fixture() {
        let mut s = Server::new(settings(None), 0x0102_0304);
        assert_eq!(
            s.start(),
            vec![vec![0xC0, 0x21, 1, 1, 0, 10, 5, 6, 1, 2, 3, 4]]
        );
        let mut s = Server::new(settings(Some(("u", "p"))), 0x0102_0304);
        assert_eq!(
            s.start(),
            vec![vec![
                0xC0, 0x21, 1, 1, 0, 14, 3, 4, 0xC0, 0x23, 5, 6, 1, 2, 3, 4
            ]]
        );
    }

    #[test]
    fn lcp_acks_known_options_rejects_others() {
        let mut s = Server::new(settings(None), 7);
        s.start();
        // ACCM 0 and magic: acked as sent.
        let req = control(proto::LCP, 1, 5, &[2, 6, 0, 0, 0, 0, 5, 6, 9, 9, 9, 9]);
        let (out, _) = s.input(&req);
        assert_eq!(
            out,
            vec![control(
                proto::LCP,
                2,
                5,
                &[2, 6, 0, 0, 0, 0, 5, 6, 9, 9, 9, 9]
            )]
        );
        // Callback (13) is rejected, alone.
        let req = control(proto::LCP, 1, 6, &[2, 6, 0, 0, 0, 0, 13, 3, 6]);
        let (out, _) = s.input(&req);
        assert_eq!(out, vec![control(proto::LCP, 4, 6, &[13, 3, 6])]);
    }

    #[test]
    fn full_negotiation_with_pap_and_ipcp_naks() {
        let mut s = Server::new(settings(Some(("user", "pw"))), 7);
        s.start();
        s.input(&control(proto::LCP, 1, 1, &[2, 6, 0, 0, 0, 0]));
        let (out, _) = s.input(&control(
            proto::LCP,
            2,
            1,
            &[3, 4, 0xC0, 0x23, 5, 6, 0, 0, 0, 7],
        ));
        assert!(out.is_empty());
        assert_eq!(s.phase(), Phase::Auth);
        assert_eq!(s.tx_accm(proto::IPCP), 0);
        // Wrong password: Nak, and the call waits for another try.
        let (out, ev) = s.input(&control(proto::PAP, 1, 1, b"\x04user\x02no"));
        assert_eq!(out, vec![control(proto::PAP, 3, 1, &[0])]);
        assert_eq!(ev, vec![Event::AuthFailed]);
        let (out, _) = s.input(&control(proto::PAP, 1, 2, b"\x04user\x02pw"));
        assert_eq!(out[0], control(proto::PAP, 2, 2, &[0]));
        assert_eq!(out[1], control(proto::IPCP, 1, 1, &[3, 6, 10, 64, 0, 1]));
        assert_eq!(s.phase(), Phase::Network);
        // The device asks for 0.0.0.0 and DNS: naked with the assignments.
        let (out, _) = s.input(&control(
            proto::IPCP,
            1,
            1,
            &[3, 6, 0, 0, 0, 0, 129, 6, 0, 0, 0, 0],
        ));
        assert_eq!(
            out,
            vec![control(
                proto::IPCP,
                3,
                1,
                &[3, 6, 10, 64, 0, 2, 129, 6, 10, 64, 0, 1]
            )]
        );
        // Compression (2) is rejected.
        let (out, _) = s.input(&control(proto::IPCP, 1, 2, &[2, 6, 0, 0x2d, 0x0f, 1]));
        assert_eq!(
            out,
            vec![control(proto::IPCP, 4, 2, &[2, 6, 0, 0x2d, 0x0f, 1])]
        );
        let req = [3, 6, 10, 64, 0, 2, 129, 6, 10, 64, 0, 1];
        let (out, ev) = s.input(&control(proto::IPCP, 1, 3, &req));
        assert_eq!(out, vec![control(proto::IPCP, 2, 3, &req)]);
        assert!(ev.is_empty());
        let (_, ev) = s.input(&control(proto::IPCP, 2, 1, &[3, 6, 10, 64, 0, 1]));
        assert_eq!(ev, vec![Event::Up]);
        assert_eq!(s.phase(), Phase::Open);
        let (_, ev) = s.input(&[0x00, 0x21, 0x45, 0]);
        assert_eq!(ev, vec![Event::Ipv4(vec![0x45, 0])]);
        let (out, ev) = s.input(&control(proto::LCP, 5, 9, &[]));
        assert_eq!(out, vec![control(proto::LCP, 6, 9, &[])]);
        assert_eq!(ev, vec![Event::Terminated]);
        assert_eq!(s.phase(), Phase::Dead);
    }

    #[test]
    fn malformed_packets_are_dropped() {
        let mut s = Server::new(settings(None), 7);
        s.start();
        for p in [
            &[][..],
            &[0xC0],
            &[0xC0, 0x21, 1],
            &[0xC0, 0x21, 1, 1, 0, 200],
            &[0xC0, 0x21, 1, 1, 0, 6, 2, 9],
            &[0xC0, 0x21, 1, 1, 0, 6, 2, 0],
            &[0xC0, 0x23, 1, 1, 0, 6, 9, 1],
            &[0x80, 0x21, 1, 1, 0, 4],
        ] {
            let (out, ev) = s.input(p);
            assert!(out.is_empty() && ev.is_empty(), "{p:?}");
        }
    }

    #[test]
    fn a_rejected_magic_number_is_left_out() {
        let mut s = Server::new(settings(None), 0x0102_0304);
        s.start();
        let (out, _) = s.input(&control(proto::LCP, 4, 1, &[5, 6, 1, 2, 3, 4]));
        assert_eq!(out, vec![control(proto::LCP, 1, 2, &[])]);
        let mut s = Server::new(settings(Some(("u", "p"))), 1);
        s.start();
        let (out, ev) = s.input(&control(proto::LCP, 4, 1, &[3, 4, 0xC0, 0x23]));
        assert_eq!(ev, vec![Event::AuthFailed]);
        assert_eq!(out, vec![control(proto::LCP, 5, 2, &[])]);
        assert_eq!(s.phase(), Phase::Dead);
    }

    #[test]
    fn retransmits_until_acked() {
        let mut s = Server::new(settings(None), 7);
        s.start();
        assert_eq!(s.tick().len(), 1);
        s.input(&control(proto::LCP, 2, 2, &[5, 6, 0, 0, 0, 7]));
        assert!(s.tick().is_empty());
    }
}
