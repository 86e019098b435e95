//! One Modbus RTU register read as bytes: the request frame, and the answer frame checked and
//! turned into a raw value or a [`Fault`] (PROTOCOL.md 17.2, 17.8).
//!
//! Frames and CRC come from `rmodbus` (its no_std client, heapless buffers): the request is
//! `ModbusRequest::generate_get_holdings` / `generate_get_inputs`, the answer's CRC, slave and
//! function are checked by `ModbusRequest::parse_slice`. What is written here is only what that
//! client does not do for a non-blocking reader: knowing from the first bytes how long the
//! answer will be ([`answer_len`]), keeping the exception code itself (rmodbus folds some codes
//! into `UnknownError`), and insisting that the byte count is exactly the registers asked for.
//!
//! Nothing here waits or reads a clock: [`crate::channels`] runs one transaction at a time and
//! times it out with the caller's `now`. Decoding untrusted bytes never panics.

use rmodbus::client::ModbusRequest;
use rmodbus::{ErrorKind, ModbusProto};
use tek_proto::channel::faults::Fault;
use tek_proto::channel::map::{Function, ModbusRead, Raw};

/// Longest request: slave, function, register, count, CRC.
pub const MAX_REQUEST: usize = 8;
/// Longest answer this reader expects: slave, function, byte count, 2 registers, CRC.
pub const MAX_ANSWER: usize = 9;

fn client(read: &ModbusRead) -> ModbusRequest {
    ModbusRequest::new(read.slave, ModbusProto::Rtu)
}

/// The request frame of `read`. `None` for a function other than 3 or 4 (a validated map has
/// none).
pub fn request(read: &ModbusRead) -> Option<heapless::Vec<u8, MAX_REQUEST>> {
    let mut frame = heapless::Vec::new();
    let mut c = client(read);
    let count = read.data_type.registers();
    let r = match read.function {
        Function::Holding => c.generate_get_holdings(read.register, count, &mut frame),
        Function::Input => c.generate_get_inputs(read.register, count, &mut frame),
        Function::Unknown(_) => return None,
    };
    r.ok().map(|()| frame)
}

/// How long the answer to `read` is, judged from its first bytes: `None` until two bytes
/// arrived; 5 for an exception, else 5 + 2 × registers. (An answer of the wrong length ends in
/// a CRC or framing fault, or a timeout.)
pub fn answer_len(read: &ModbusRead, got: &[u8]) -> Option<usize> {
    let &function = got.get(1)?;
    Some(if function & 0x80 != 0 {
        5
    } else {
        5 + 2 * usize::from(read.data_type.registers())
    })
}

/// Checks a complete answer to `read` and decodes its registers.
pub fn decode(read: &ModbusRead, frame: &[u8]) -> Result<Raw, Fault> {
    let mut c = client(read);
    let count = read.data_type.registers();
    // Sets the client's function and count, as when the request was made.
    let mut scratch = heapless::Vec::<u8, MAX_REQUEST>::new();
    let _ = match read.function {
        Function::Holding => c.generate_get_holdings(read.register, count, &mut scratch),
        Function::Input => c.generate_get_inputs(read.register, count, &mut scratch),
        Function::Unknown(_) => return Err(Fault::Malformed),
    };
    let data = c.parse_slice(frame).map_err(|e| match (e, frame) {
        (ErrorKind::FrameCRCError, _) => Fault::Crc,
        // CRC good: an exception of this slave to this function, whatever its code.
        (_, &[slave, f, code, _, _]) if slave == read.slave && f == read.function.code() | 0x80 => {
            Fault::Exception(code)
        }
        _ => Fault::Malformed,
    })?;
    // Exactly the registers asked for: the byte count and the bytes.
    let want = 2 * usize::from(count);
    if frame.get(2).map(|&n| usize::from(n)) != Some(want) || data.len() != want {
        return Err(Fault::Malformed);
    }
    let mut regs = [0u16; 2];
    for (r, b) in regs.iter_mut().zip(data.chunks_exact(2)) {
        *r = u16::from_be_bytes([b[0], b[1]]);
    }
    read.decode(&regs[..usize::from(count)])
        .ok_or(Fault::OutOfRange)
}

/// The CRC-16 (Modbus) of `bytes`, low byte first as on the wire: for the tests' slaves, which
/// build answers (rmodbus keeps its own CRC function private; the code under test uses it).
#[cfg(test)]
pub(crate) fn crc(bytes: &[u8]) -> [u8; 2] {
    let mut crc: u16 = 0xFFFF;
    for &b in bytes {
        crc ^= u16::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                crc >> 1 ^ 0xA001
            } else {
                crc >> 1
            };
        }
    }
    crc.to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tek_proto::channel::map::{DataType, WordOrder};

    fn read(data_type: DataType, function: Function) -> ModbusRead {
        ModbusRead {
            bus: 0,
            slave: 1,
            function,
            register: 12,
            data_type,
            word_order: WordOrder::HighFirst,
        }
    }

    fn framed(body: &[u8]) -> std::vec::Vec<u8> {
        let mut f = body.to_vec();
        f.extend_from_slice(&crc(body));
        f
    }

    #[test]
    fn request_frames() {
        // Read input registers 12..14 of slave 1: the textbook frame with its CRC.
        let r = request(&read(DataType::F32, Function::Input)).unwrap();
        assert_eq!(&r[..6], &[1, 4, 0, 12, 0, 2]);
        assert_eq!(&r[6..], &crc(&r[..6]));
        let r = request(&read(DataType::U16, Function::Holding)).unwrap();
        assert_eq!(&r[..6], &[1, 3, 0, 12, 0, 1]);
        // The well-known example: 01 03 00 00 00 01 has CRC 84 0A.
        assert_eq!(crc(&[1, 3, 0, 0, 0, 1]), [0x84, 0x0A]);
        assert!(request(&read(DataType::U16, Function::Unknown(6))).is_none());
    }

    #[test]
    fn answers_values_and_faults() {
        let f32r = read(DataType::F32, Function::Input);
        let ok = framed(&[1, 4, 4, 0x44, 0x7A, 0x00, 0x00]); // 1000.0
        assert_eq!(answer_len(&f32r, &ok[..1]), None);
        assert_eq!(answer_len(&f32r, &ok[..2]), Some(9));
        assert_eq!(decode(&f32r, &ok), Ok(Raw::Float(1000.0)));
        let mut bad = ok.clone();
        bad[4] ^= 1;
        assert_eq!(decode(&f32r, &bad), Err(Fault::Crc));
        // Exception 2 (illegal data address), and one rmodbus does not name (0x0B).
        let ex = framed(&[1, 0x84, 2]);
        assert_eq!(answer_len(&f32r, &ex), Some(5));
        assert_eq!(decode(&f32r, &ex), Err(Fault::Exception(2)));
        assert_eq!(
            decode(&f32r, &framed(&[1, 0x84, 0x0B])),
            Err(Fault::Exception(0x0B))
        );
        // Another slave, another function, a short byte count.
        assert_eq!(
            decode(&f32r, &framed(&[2, 4, 4, 0, 0, 0, 0])),
            Err(Fault::Malformed)
        );
        assert_eq!(
            decode(&f32r, &framed(&[1, 3, 4, 0, 0, 0, 0])),
            Err(Fault::Malformed)
        );
        assert_eq!(
            decode(&f32r, &framed(&[1, 4, 2, 0, 0])),
            Err(Fault::Malformed)
        );
        // A NaN float is out of range.
        assert_eq!(
            decode(&f32r, &framed(&[1, 4, 4, 0x7F, 0xC0, 0, 0])),
            Err(Fault::OutOfRange)
        );
        let i16r = read(DataType::I16, Function::Holding);
        assert_eq!(
            decode(&i16r, &framed(&[1, 3, 2, 0xFF, 0xFE])),
            Ok(Raw::Int(-2))
        );
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..12), t in 0u8..5, f in 3u8..5) {
            let r = read(DataType::from_code(t), Function::from_code(f));
            let _ = answer_len(&r, &bytes);
            let _ = decode(&r, &bytes);
            // With a right CRC too, so the checks past it run.
            let _ = decode(&r, &framed(&bytes));
        }
    }
}
