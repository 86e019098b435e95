//! IPv4 + UDP packets between the device's PPP link and the relay: parsing with every check
//! (version, header length, total length, header checksum, UDP length and checksum) and
//! building with both checksums. Anything else (fragments, options we do not need, other
//! protocols) is `None`: the relay drops it, as a NAT with only a UDP table would.

use std::net::{Ipv4Addr, SocketAddrV4};

/// A UDP datagram inside an IPv4 packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Udp {
    /// Source address and port.
    pub src: SocketAddrV4,
    /// Destination address and port.
    pub dst: SocketAddrV4,
    /// The payload.
    pub payload: Vec<u8>,
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
    !(acc as u16)
}

fn udp_checksum(src: Ipv4Addr, dst: Ipv4Addr, udp: &[u8]) -> u16 {
    let mut acc = sum(&src.octets(), 0);
    acc = sum(&dst.octets(), acc);
    acc += 17 + udp.len() as u32;
    fold(sum(udp, acc))
}

/// Parses an IPv4 packet carrying UDP.
pub fn parse(p: &[u8]) -> Option<Udp> {
    if p.len() < 20 || p[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(p[0] & 0x0F) * 4;
    let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
    if ihl < 20 || total < ihl + 8 || total > p.len() || fold(sum(&p[..ihl], 0)) != 0 {
        return None;
    }
    // More fragments, or a fragment offset: not reassembled.
    if u16::from_be_bytes([p[6], p[7]]) & 0x3FFF != 0 || p[9] != 17 {
        return None;
    }
    let src = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
    let dst = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
    let u = &p[ihl..total];
    let ulen = usize::from(u16::from_be_bytes([u[4], u[5]]));
    if ulen < 8 || ulen > u.len() {
        return None;
    }
    let u = &u[..ulen];
    if u16::from_be_bytes([u[6], u[7]]) != 0 && udp_checksum(src, dst, u) != 0 {
        return None;
    }
    Some(Udp {
        src: SocketAddrV4::new(src, u16::from_be_bytes([u[0], u[1]])),
        dst: SocketAddrV4::new(dst, u16::from_be_bytes([u[2], u[3]])),
        payload: u[8..].to_vec(),
    })
}

/// Builds the IPv4 packet for `udp` (TTL 64, identification `id`, don't fragment).
pub fn build(udp: &Udp, id: u16) -> Vec<u8> {
    let total = 20 + 8 + udp.payload.len();
    let mut p = Vec::with_capacity(total);
    p.extend_from_slice(&[0x45, 0]);
    p.extend_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&[0x40, 0, 64, 17, 0, 0]);
    p.extend_from_slice(&udp.src.ip().octets());
    p.extend_from_slice(&udp.dst.ip().octets());
    let c = fold(sum(&p, 0));
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(&udp.src.port().to_be_bytes());
    p.extend_from_slice(&udp.dst.port().to_be_bytes());
    p.extend_from_slice(&((8 + udp.payload.len()) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(&udp.payload);
    let mut c = udp_checksum(*udp.src.ip(), *udp.dst.ip(), &p[20..]);
    if c == 0 {
        c = 0xFFFF; // 0 means "no checksum" in UDP over IPv4
    }
    p[26..28].copy_from_slice(&c.to_be_bytes());
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Udp {
        Udp {
            src: "10.64.0.2:40000".parse().unwrap(),
            dst: "10.64.0.1:8844".parse().unwrap(),
            payload: b"hello".to_vec(),
        }
    }

    #[test]
    fn build_fixture_and_round_trip() {
        let p = build(&sample(), 1);
        // Header checksum computed independently (Python, RFC 1071) for this header: 0x2649.
        assert_eq!(
            &p[..20],
            &[0x45, 0, 0, 33, 0, 1, 0x40, 0, 64, 17, 0x26, 0x49, 10, 64, 0, 2, 10, 64, 0, 1]
        );
        assert_eq!(parse(&p), Some(sample()));
    }

    #[test]
    fn corrupt_packets_are_refused() {
        let good = build(&sample(), 7);
        for i in 0..good.len() {
            let mut p = good.clone();
            p[i] ^= 0x01;
            // Every single-bit error is caught by a length check or a checksum.
            assert_eq!(parse(&p), None, "byte {i}");
        }
        assert_eq!(parse(&good[..27]), None);
        let mut frag = good.clone();
        frag[6] = 0x20; // more fragments
        assert_eq!(parse(&frag), None);
    }
}
