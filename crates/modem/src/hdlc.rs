//! PPP in HDLC-like framing (RFC 1662): flag `0x7E`, address `0xFF`, control `0x03`, the PPP
//! protocol and information, FCS-16; `0x7D` escapes the flag, itself and the control characters
//! the peer's async-control-character map (ACCM) names.
//!
//! Decoding untrusted bytes never panics: a frame with a bad FCS, shorter than address + control
//! + protocol + FCS, or longer than [`MAX_FRAME`] is dropped and counted.

/// The flag that starts and ends a frame.
pub const FLAG: u8 = 0x7E;
/// The control escape.
pub const ESCAPE: u8 = 0x7D;
/// The largest frame content (address to FCS, unescaped) accepted: a 1500-byte MRU plus header.
pub const MAX_FRAME: usize = 1500 + 8;
/// The FCS of a good frame run over its own FCS (RFC 1662, "good final FCS value").
const GOOD_FCS: u16 = 0xF0B8;

/// Runs the FCS-16 over `data`, starting from `fcs` (`0xFFFF` for a new frame).
pub fn fcs16(mut fcs: u16, data: &[u8]) -> u16 {
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

/// Frames `packet` (PPP protocol field + information) for the wire, escaping every control
/// character in `accm` (LCP frames always use the default map, all 32 control characters).
pub fn encode(packet: &[u8], accm: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(packet.len() * 2 + 8);
    out.push(FLAG);
    let header = [0xFF, 0x03];
    let mut fcs = fcs16(0xFFFF, &header);
    fcs = fcs16(fcs, packet);
    let fcs = !fcs;
    let push = |out: &mut Vec<u8>, b: u8| {
        if b == FLAG || b == ESCAPE || (b < 0x20 && accm & (1 << b) != 0) {
            out.push(ESCAPE);
            out.push(b ^ 0x20);
        } else {
            out.push(b);
        }
    };
    for &b in header.iter().chain(packet).chain(&fcs.to_le_bytes()) {
        push(&mut out, b);
    }
    out.push(FLAG);
    out
}

/// Reassembles frames from a byte stream.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    escape: bool,
    overlong: bool,
    /// Frames dropped (bad FCS, too short, too long).
    pub dropped: u64,
}

impl Decoder {
    /// An empty decoder.
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Feeds one byte; returns a complete, checked packet (protocol + information) at a closing
    /// flag.
    pub fn push(&mut self, b: u8) -> Option<Vec<u8>> {
        match b {
            FLAG => {
                let frame = std::mem::take(&mut self.buf);
                let overlong = std::mem::replace(&mut self.overlong, false);
                self.escape = false;
                if frame.is_empty() {
                    return None; // back-to-back flags
                }
                if overlong || frame.len() < 4 || fcs16(0xFFFF, &frame) != GOOD_FCS {
                    self.dropped += 1;
                    return None;
                }
                let body = &frame[..frame.len() - 2];
                // Address and control field compression (RFC 1661 6.6): FF 03 may be left out.
                let body = body.strip_prefix(&[0xFF, 0x03]).unwrap_or(body);
                if body.len() < 2 {
                    self.dropped += 1;
                    return None;
                }
                Some(body.to_vec())
            }
            ESCAPE => {
                self.escape = true;
                None
            }
            mut b => {
                if self.escape {
                    self.escape = false;
                    b ^= 0x20;
                }
                if self.buf.len() >= MAX_FRAME {
                    self.overlong = true;
                } else {
                    self.buf.push(b);
                }
                None
            }
        }
    }

    /// Whether a frame is partly received.
    pub fn in_frame(&self) -> bool {
        !self.buf.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fcs_of_rfc1662_check_value() {
        // "123456789" with the PPP FCS-16 (CRC-16/X-25 before the final complement): 0x906E.
        assert_eq!(!fcs16(0xFFFF, b"123456789"), 0x906E);
    }

    #[test]
    fn lcp_configure_request_fixture() {
        // An LCP Configure-Request id 1 with ACCM 0, as pppd sends it; bytes checked by hand
        // against RFC 1662's escaping rules (all control characters escaped for LCP).
        let pkt = [0xC0, 0x21, 0x01, 0x01, 0x00, 0x0A, 0x02, 0x06, 0, 0, 0, 0];
        let wire = encode(&pkt, u32::MAX);
        assert_eq!(wire[0], FLAG);
        assert_eq!(*wire.last().unwrap(), FLAG);
        assert_eq!(&wire[1..4], &[0xFF, 0x7D, 0x23]); // 0x03 escaped
        let mut d = Decoder::new();
        let got: Vec<_> = wire.iter().filter_map(|&b| d.push(b)).collect();
        assert_eq!(got, vec![pkt.to_vec()]);
    }

    #[test]
    fn round_trip_every_byte_value_and_accm() {
        let pkt: Vec<u8> = (0..=255u8).chain([FLAG, ESCAPE, 0, 0x11]).collect();
        for accm in [0, u32::MAX, 0x000A_0000] {
            let wire = encode(&pkt, accm);
            // Escaped bytes never show a raw flag inside the frame.
            assert!(!wire[1..wire.len() - 1].contains(&FLAG));
            let mut d = Decoder::new();
            let got: Vec<_> = wire.iter().filter_map(|&b| d.push(b)).collect();
            assert_eq!(got, vec![pkt.clone()]);
        }
    }

    #[test]
    fn bad_fcs_short_and_overlong_frames_are_dropped() {
        let mut wire = encode(&[0x00, 0x21, 1, 2, 3], u32::MAX);
        let n = wire.len();
        wire[n - 3] ^= 0x01; // corrupt the FCS
        let mut d = Decoder::new();
        assert!(wire.iter().all(|&b| d.push(b).is_none()));
        assert_eq!(d.dropped, 1);
        for &b in &[FLAG, 0xFF, FLAG] {
            assert!(d.push(b).is_none());
        }
        assert_eq!(d.dropped, 2);
        let big = vec![0x41; MAX_FRAME + 10];
        let wire = encode(&big, 0);
        assert!(wire.iter().all(|&b| d.push(b).is_none()));
        assert_eq!(d.dropped, 3);
        // The decoder recovers: the next good frame is delivered.
        let wire = encode(&[0xC0, 0x21, 9, 9, 0, 4], 0);
        assert_eq!(
            wire.iter().filter_map(|&b| d.push(b)).next(),
            Some(vec![0xC0, 0x21, 9, 9, 0, 4])
        );
    }

    #[test]
    fn noise_between_frames_is_ignored() {
        let mut d = Decoder::new();
        let mut stream = b"\r\nNO CARRIER\r\n".to_vec();
        stream.extend(encode(&[0x80, 0x21, 1, 1, 0, 4], u32::MAX));
        let got: Vec<_> = stream.iter().filter_map(|&b| d.push(b)).collect();
        assert_eq!(got, vec![vec![0x80, 0x21, 1, 1, 0, 4]]);
    }
}
