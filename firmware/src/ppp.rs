//! The GSM data path: PPP over the modem UART (RFC 1661/1662, `ppproto` runs LCP, PAP and IPCP)
//! carrying IPv4/UDP — and DNS over UDP — for the controller. No TCP.
//!
//! **Why not a second smoltcp interface.** A smoltcp `Interface` over a medium-ip PPP device
//! with its own socket set would need its own UDP payload buffers (2 × 1024 bytes), socket
//! bookkeeping (~0.9 kB), a PPP transmit frame buffer (escaping can double a 1052-byte packet)
//! and a receive frame buffer: ~5 kB the RAM budget does not have (see README.md, "Size
//! budget"). The controller needs one UDP flow and an occasional DNS query on this link, so:
//!
//! * **receive**: `ppproto` unescapes frames into the loop's one datagram buffer (`RX`, made
//!   [`FRAME_BUF`] bytes: a largest datagram + IPv4/UDP + PPP header and FCS); the IPv4 and UDP
//!   headers are checked here (smoltcp's `wire` views: lengths, both checksums) and the payload
//!   is decrypted by the controller in place, where it lies. The Ethernet path uses the same
//!   buffer between frames (see `main.rs`).
//! * **transmit**: the IPv4 and UDP headers are built on the stack and the frame is escaped and
//!   checksummed (FCS-16) on its way into the UART byte by byte — no frame buffer at all. Every
//!   control character is escaped (the default ACCM), which any peer accepts.
//! * **DNS**: one A query at a time, built and parsed here (RFC 1035), to the DNS server IPCP
//!   handed out.

use ppproto::pppos::{PPPoS, PPPoSAction};
use ppproto::{Config, Phase};
use smoltcp::wire::{IpProtocol, Ipv4Address, Ipv4Packet, UdpPacket};

use crate::uart::ModemUart;

/// The largest PPP frame kept (unescaped, control byte to FCS): 1024 + 28 + 2 + 1 + 2.
pub const FRAME_BUF: usize = tek_proto::MAX_DATAGRAM + 28 + 5;

/// The PAP credentials of the call; `ppproto` borrows them for the whole call.
struct Creds {
    login: [u8; 63],
    login_len: usize,
    password: [u8; 63],
    password_len: usize,
}

static mut CREDS: Creds = Creds {
    login: [0; 63],
    login_len: 0,
    password: [0; 63],
    password_len: 0,
};

/// IPv4 settings IPCP negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PppIp {
    /// Our address.
    pub address: Ipv4Address,
    /// The DNS server, if the network named one.
    pub dns: Option<Ipv4Address>,
}

/// A UDP datagram received on the link: its payload lies in the receive buffer at `payload`.
#[derive(Debug, Clone)]
pub struct Datagram {
    /// Sender.
    pub from: (Ipv4Address, u16),
    /// Our port it was sent to.
    pub to_port: u16,
    /// Where the payload is in the receive buffer.
    pub payload: core::ops::Range<usize>,
}

/// One PPP call.
pub struct Ppp {
    link: Option<PPPoS<'static>>,
    ip: Option<PppIp>,
    ip_id: u16,
    /// A frame is partly in the receive buffer (no closing flag yet).
    mid_frame: bool,
}

/// Only one [`Ppp`] may exist: it owns [`CREDS`].
static TAKEN: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

impl Ppp {
    /// The PPP side of the modem driver (once).
    pub fn take() -> Option<Ppp> {
        if TAKEN.swap(true, core::sync::atomic::Ordering::Relaxed) {
            return None;
        }
        Some(Ppp {
            link: None,
            ip: None,
            ip_id: 0,
            mid_frame: false,
        })
    }

    /// Starts negotiating (the modem answered `CONNECT`), with PAP credentials (may be blank).
    pub fn open(&mut self, login: &str, password: &str) {
        self.close();
        let (l, p) = (login.as_bytes(), password.as_bytes());
        // SAFETY: `CREDS` is only touched here, by the single `Ppp` (`take` hands out one), and
        // only while no `PPPoS` exists (`close` above dropped the one that borrowed it); the
        // shared borrow made below lives in `self.link` until the next `close`.
        let creds: &'static Creds = unsafe {
            let c = &mut *core::ptr::addr_of_mut!(CREDS);
            c.login_len = l.len().min(63);
            c.login[..c.login_len].copy_from_slice(&l[..c.login_len]);
            c.password_len = p.len().min(63);
            c.password[..c.password_len].copy_from_slice(&p[..c.password_len]);
            &*core::ptr::addr_of!(CREDS)
        };
        let mut link = PPPoS::new(Config {
            username: &creds.login[..creds.login_len],
            password: &creds.password[..creds.password_len],
        });
        // A new PPPoS is in phase Dead: opening cannot fail.
        let _ = link.open();
        self.link = Some(link);
    }

    /// Ends the call's state (the modem hung up).
    pub fn close(&mut self) {
        self.link = None;
        self.ip = None;
        self.mid_frame = false;
    }

    /// The negotiated IPv4 settings, once IPCP is open.
    pub fn ip(&self) -> Option<PppIp> {
        self.ip
    }

    /// Whether a frame is partly received into the shared buffer.
    pub fn mid_frame(&self) -> bool {
        self.mid_frame
    }

    /// Abandons a partly received frame (its bytes are lost, as on a line error) so the shared
    /// buffer can be used for something else.
    pub fn abort_frame(&mut self, rx: &mut [u8]) {
        if let Some(link) = self.link.as_mut() {
            link.consume(&[0x7E], rx);
        }
        self.mid_frame = false;
    }

    /// Feeds received serial bytes, up to and including the next flag, into the frame reader;
    /// returns how many were taken.
    pub fn consume(&mut self, data: &[u8], rx: &mut [u8]) -> usize {
        let Some(link) = self.link.as_mut() else {
            return data.len();
        };
        let end = data
            .iter()
            .position(|&b| b == 0x7E)
            .map_or(data.len(), |i| i + 1);
        let n = link.consume(&data[..end], rx);
        if n > 0 {
            self.mid_frame = data[n - 1] != 0x7E;
        }
        n
    }

    /// Runs the PPP state machine: sends its negotiation frames, and returns a received UDP
    /// datagram addressed to us. Out of line: `ppproto` puts a 128-byte packet on the stack and
    /// we a 300-byte frame buffer.
    #[inline(never)]
    pub fn poll(&mut self, uart: &mut ModemUart, rx: &mut [u8]) -> Option<Datagram> {
        let link = self.link.as_mut()?;
        let mut tx = [0u8; 300];
        let mut got = None;
        loop {
            match link.poll(&mut tx, rx) {
                PPPoSAction::None => break,
                PPPoSAction::Transmit(n) => uart.write(&tx[..n]),
                PPPoSAction::Received(r) => {
                    got = parse_udp(rx, r, self.ip.map(|i| i.address));
                    break;
                }
            }
        }
        let st = link.status();
        self.ip = match (st.phase, st.ipv4) {
            (Phase::Open, Some(v4)) => v4.address.map(|a| PppIp {
                address: Ipv4Address::from(a.octets()),
                dns: v4.dns_servers[0].map(|d| Ipv4Address::from(d.octets())),
            }),
            _ => None,
        };
        got
    }

    /// Sends `payload` as one UDP datagram from `from_port` to `to`, framed straight into the
    /// UART. `false` if IPCP is not up.
    #[inline(never)]
    pub fn send(
        &mut self,
        uart: &mut ModemUart,
        from_port: u16,
        to: (Ipv4Address, u16),
        payload: &[u8],
    ) -> bool {
        let Some(ip) = self.ip else {
            return false;
        };
        self.ip_id = self.ip_id.wrapping_add(1);
        let total = 28 + payload.len();
        let mut h = [0u8; 28];
        h[0] = 0x45;
        h[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        h[4..6].copy_from_slice(&self.ip_id.to_be_bytes());
        h[6] = 0x40; // don't fragment
        h[8] = 64;
        h[9] = 17;
        h[12..16].copy_from_slice(&ip.address.octets());
        h[16..20].copy_from_slice(&to.0.octets());
        let c = !fold(sum(&h[..20], 0));
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h[20..22].copy_from_slice(&from_port.to_be_bytes());
        h[22..24].copy_from_slice(&to.1.to_be_bytes());
        h[24..26].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        // UDP checksum: pseudo-header (addresses, protocol, length), header, payload.
        let mut acc = sum(&h[12..20], 17 + 8 + payload.len() as u32);
        acc = sum(&h[20..26], acc);
        acc = sum(payload, acc);
        let mut c = !fold(acc);
        if c == 0 {
            c = 0xFFFF;
        }
        h[26..28].copy_from_slice(&c.to_be_bytes());
        let mut w = FrameOut::start(uart);
        w.put(&[0x00, 0x21]); // PPP protocol: IPv4
        w.put(&h);
        w.put(payload);
        w.finish();
        true
    }

    /// Hangs up from our side: an LCP Terminate-Request (the modem answers `NO CARRIER`).
    pub fn terminate(&mut self, uart: &mut ModemUart) {
        if self.link.is_some() {
            let mut w = FrameOut::start(uart);
            w.put(&[0xC0, 0x21, 5, 0x54, 0, 4]);
            w.finish();
        }
    }
}

/// A frame being escaped into the UART (every control character escaped, FCS-16 appended).
struct FrameOut<'a> {
    uart: &'a mut ModemUart,
    fcs: u16,
}

impl<'a> FrameOut<'a> {
    fn start(uart: &'a mut ModemUart) -> FrameOut<'a> {
        uart.write(&[0x7E]);
        let mut w = FrameOut { uart, fcs: 0xFFFF };
        w.put(&[0xFF, 0x03]);
        w
    }

    fn put(&mut self, data: &[u8]) {
        self.fcs = fcs16(self.fcs, data);
        for &b in data {
            self.raw(b);
        }
    }

    fn raw(&mut self, b: u8) {
        if b < 0x20 || b == 0x7D || b == 0x7E {
            self.uart.write(&[0x7D, b ^ 0x20]);
        } else {
            self.uart.write(&[b]);
        }
    }

    fn finish(mut self) {
        for b in (!self.fcs).to_le_bytes() {
            self.raw(b);
        }
        self.uart.write(&[0x7E]);
    }
}

fn fcs16(mut fcs: u16, data: &[u8]) -> u16 {
    for &b in data {
        fcs ^= u16::from(b);
        for _ in 0..8 {
            fcs = if fcs & 1 != 0 {
                (fcs >> 1) ^ 0x8408
            } else {
                fcs >> 1
            };
        }
    }
    fcs
}

fn sum(data: &[u8], mut acc: u32) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = chunks.remainder() {
        acc += u32::from(*b) << 8;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xFFFF {
        acc = (acc & 0xFFFF) + (acc >> 16);
    }
    acc as u16
}

/// Checks an IPv4 packet at `rx[r]` and returns its UDP datagram if it is for `us`.
fn parse_udp(rx: &[u8], r: core::ops::Range<usize>, us: Option<Ipv4Address>) -> Option<Datagram> {
    let start = r.start;
    let ip = Ipv4Packet::new_checked(rx.get(r)?).ok()?;
    if !ip.verify_checksum()
        || ip.next_header() != IpProtocol::Udp
        || ip.more_frags()
        || ip.frag_offset() != 0
        || Some(ip.dst_addr()) != us
    {
        return None;
    }
    let hl = usize::from(ip.header_len());
    let udp = UdpPacket::new_checked(ip.payload()).ok()?;
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    if !udp.verify_checksum(&src.into(), &dst.into()) {
        return None;
    }
    let off = start + hl + 8;
    Some(Datagram {
        from: (src, udp.src_port()),
        to_port: udp.dst_port(),
        payload: off..off + udp.payload().len(),
    })
}

/// A DNS A query for `name` with identifier `id` into `buf`; its length (`None`: name invalid
/// or too long).
pub fn dns_query(buf: &mut [u8], id: u16, name: &str) -> Option<usize> {
    let mut n = 12;
    buf.get_mut(..12)?
        .copy_from_slice(&[0, 0, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    buf[..2].copy_from_slice(&id.to_be_bytes());
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return None;
        }
        *buf.get_mut(n)? = label.len() as u8;
        buf.get_mut(n + 1..n + 1 + label.len())?
            .copy_from_slice(label.as_bytes());
        n += 1 + label.len();
    }
    buf.get_mut(n..n + 5)?.copy_from_slice(&[0, 0, 1, 0, 1]);
    Some(n + 5)
}

/// The first A record of a DNS answer to query `id`. `Err(())`: an answer without one
/// (NXDOMAIN, no A record); `Ok(None)`: not an answer to this query (ignored).
#[allow(clippy::result_unit_err)]
pub fn dns_answer(msg: &[u8], id: u16) -> Result<Option<Ipv4Address>, ()> {
    if msg.len() < 12 || msg[..2] != id.to_be_bytes() || msg[2] & 0x80 == 0 {
        return Ok(None);
    }
    if msg[3] & 0x0F != 0 {
        return Err(());
    }
    let qd = u16::from_be_bytes([msg[4], msg[5]]);
    let an = u16::from_be_bytes([msg[6], msg[7]]);
    let mut p = 12;
    for _ in 0..qd {
        p = skip_name(msg, p).ok_or(())? + 4;
    }
    for _ in 0..an {
        p = skip_name(msg, p).ok_or(())?;
        let rr = msg.get(p..p + 10).ok_or(())?;
        let len = usize::from(u16::from_be_bytes([rr[8], rr[9]]));
        let data = msg.get(p + 10..p + 10 + len).ok_or(())?;
        if rr[..4] == [0, 1, 0, 1] && len == 4 {
            return Ok(Some(Ipv4Address::new(data[0], data[1], data[2], data[3])));
        }
        p += 10 + len;
    }
    Err(())
}

/// The offset after the (possibly compressed) name at `p`.
fn skip_name(msg: &[u8], mut p: usize) -> Option<usize> {
    loop {
        let l = *msg.get(p)?;
        match l {
            0 => return Some(p + 1),
            l if l & 0xC0 == 0xC0 => return Some(p + 2),
            l if l < 64 => p += 1 + usize::from(l),
            _ => return None,
        }
    }
}
