//! Unsigned LEB128 for `u32` (at most 5 bytes) and zigzag mapping for signed values.

use super::MessageError;

/// Longest encoding of a `u32`.
pub const MAX_LEN: usize = 5;

/// Writes `value` at `buf[*at..]`, advancing `at`. Returns `false` (and writes nothing) when it
/// does not fit.
pub fn write(buf: &mut [u8], at: &mut usize, mut value: u32) -> bool {
    let mut tmp = [0u8; MAX_LEN];
    let mut n = 0;
    loop {
        let byte = (value & 0x7F) as u8;
        value >>= 7;
        if value == 0 {
            tmp[n] = byte;
            n += 1;
            break;
        }
        tmp[n] = byte | 0x80;
        n += 1;
    }
    match buf.get_mut(*at..*at + n) {
        Some(dst) => {
            dst.copy_from_slice(&tmp[..n]);
            *at += n;
            true
        }
        None => false,
    }
}

/// Reads a value at `buf[*at..]`, advancing `at`.
pub fn read(buf: &[u8], at: &mut usize) -> Result<u32, MessageError> {
    let mut value: u32 = 0;
    for i in 0..MAX_LEN {
        let byte = *buf.get(*at).ok_or(MessageError::Truncated)?;
        *at += 1;
        if i == MAX_LEN - 1 && byte > 0x0F {
            return Err(MessageError::Range);
        }
        value |= u32::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(MessageError::Range)
}

/// Bytes `value` takes.
pub fn len(value: u32) -> usize {
    match value {
        0..=0x7F => 1,
        0x80..=0x3FFF => 2,
        0x4000..=0x1F_FFFF => 3,
        0x20_0000..=0x0FFF_FFFF => 4,
        _ => 5,
    }
}

/// Zigzag: small magnitudes, either sign, become small unsigned numbers.
pub fn zigzag(v: i32) -> u32 {
    ((v << 1) ^ (v >> 31)) as u32
}

/// Inverse of [`zigzag`].
pub fn unzigzag(v: u32) -> i32 {
    ((v >> 1) as i32) ^ -((v & 1) as i32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_encodings() {
        for (v, bytes) in [
            (0u32, &[0x00][..]),
            (127, &[0x7F]),
            (128, &[0x80, 0x01]),
            (300, &[0xAC, 0x02]),
            (u32::MAX, &[0xFF, 0xFF, 0xFF, 0xFF, 0x0F]),
        ] {
            let mut buf = [0u8; 5];
            let mut at = 0;
            assert!(write(&mut buf, &mut at, v));
            assert_eq!(&buf[..at], bytes);
            assert_eq!(len(v), at);
            let mut at2 = 0;
            assert_eq!(read(bytes, &mut at2), Ok(v));
        }
        assert_eq!(zigzag(0), 0);
        assert_eq!(zigzag(-1), 1);
        assert_eq!(zigzag(1), 2);
        assert_eq!(zigzag(i32::MIN), u32::MAX);
    }

    #[test]
    fn overlong_and_truncated() {
        let mut at = 0;
        assert_eq!(
            read(&[0xFF, 0xFF, 0xFF, 0xFF, 0x10], &mut at),
            Err(MessageError::Range)
        );
        let mut at = 0;
        assert_eq!(read(&[0x80, 0x80], &mut at), Err(MessageError::Truncated));
        let mut buf = [0u8; 1];
        let mut at = 0;
        assert!(!write(&mut buf, &mut at, 300));
        assert_eq!(at, 0);
    }

    proptest! {
        #[test]
        fn round_trip(v: u32, s: i32) {
            let mut buf = [0u8; 5];
            let mut at = 0;
            prop_assert!(write(&mut buf, &mut at, v));
            let mut r = 0;
            prop_assert_eq!(read(&buf, &mut r), Ok(v));
            prop_assert_eq!(r, at);
            prop_assert_eq!(unzigzag(zigzag(s)), s);
        }
    }
}
