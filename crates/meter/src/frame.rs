//! Modbus RTU request framing over a byte stream without timing guarantees.
//!
//! On a real RS-485 line a frame ends with a silence of 3.5 character times. Over QEMU's TCP
//! serial the bytes of one frame may arrive in several reads and several frames in one read, so
//! the [`Framer`] cuts frames by their function code and length (rmodbus'
//! `guess_request_frame_len`) and keeps only those whose CRC-16 holds; bytes that cannot start a
//! valid frame are dropped one at a time until one does (resynchronisation). A silence of at least
//! 3.5 character times also ends a frame: what is buffered then is a frame if its CRC holds
//! (functions whose length rmodbus cannot guess) and is dropped otherwise.
//!
//! No clock reads: time comes in as `now` (time since any fixed origin). Any input bytes, any
//! order of calls: no panic, and the buffer never grows beyond one frame.

use std::time::Duration;

use rmodbus::{guess_request_frame_len, ErrorKind, ModbusProto};

/// Longest RTU frame (Modbus over serial line: 256 bytes).
pub const MAX_FRAME: usize = 256;
/// Shortest RTU frame: address, function, CRC.
const MIN_FRAME: usize = 4;

const CRC16_MODBUS: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_MODBUS);

/// The CRC-16 (Modbus) of `bytes`, as it goes on the wire (low byte first).
pub fn crc(bytes: &[u8]) -> [u8; 2] {
    CRC16_MODBUS.checksum(bytes).to_le_bytes()
}

/// Whether `frame` ends with the right CRC of what precedes it.
pub fn crc_ok(frame: &[u8]) -> bool {
    match frame.len().checked_sub(2) {
        Some(n) if n >= 2 => crc(&frame[..n]) == frame[n..],
        _ => false,
    }
}

/// The serial line's character format. Over TCP only its timing matters: a character is 10 bits
/// with 8N1, 11 with 8E1 (start, 8 data, parity, stop).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Parity {
    /// 8N1.
    None,
    /// 8E1.
    Even,
}

/// Baud rate and character format of the bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line {
    /// 9600, 19200 or 38400.
    pub baud: u32,
    /// 8N1 or 8E1.
    pub parity: Parity,
}

impl Line {
    /// The baud rates a TEK controller's bus uses.
    pub const BAUDS: [u32; 3] = [9600, 19200, 38400];

    /// The silent interval that ends a frame: 3.5 character times, and 1.75 ms above 19200 baud
    /// (Modbus over serial line, 2.5.1.1: fixed values at high rates).
    pub fn silence(&self) -> Duration {
        if self.baud > 19200 {
            return Duration::from_micros(1750);
        }
        let bits: u64 = match self.parity {
            Parity::None => 10,
            Parity::Even => 11,
        };
        // 3.5 characters = 7 half characters.
        Duration::from_micros(7 * bits * 1_000_000 / (2 * u64::from(self.baud.max(1))))
    }
}

/// Cuts a byte stream into request frames with a good CRC.
#[derive(Debug)]
pub struct Framer {
    buf: Vec<u8>,
    last_byte: Option<Duration>,
    silence: Duration,
    dropped: u64,
}

impl Framer {
    /// A framer for `line`.
    pub fn new(line: Line) -> Framer {
        Framer {
            buf: Vec::with_capacity(MAX_FRAME),
            last_byte: None,
            silence: line.silence(),
            dropped: 0,
        }
    }

    /// Bytes received at `now`; returns the frames they complete, in order.
    pub fn push(&mut self, bytes: &[u8], now: Duration) -> Vec<Vec<u8>> {
        let mut frames = self.silence_at(now);
        if !bytes.is_empty() {
            self.last_byte = Some(now);
        }
        for &b in bytes {
            self.buf.push(b);
            self.scan(&mut frames);
        }
        frames
    }

    /// When the silence that ends the buffered bytes is over (`None`: nothing buffered).
    pub fn deadline(&self) -> Option<Duration> {
        match (self.buf.is_empty(), self.last_byte) {
            (false, Some(t)) => Some(t + self.silence),
            _ => None,
        }
    }

    /// Ends the buffered frame if the line has been silent long enough at `now`.
    pub fn silence_at(&mut self, now: Duration) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        if self.deadline().is_some_and(|d| now >= d) {
            // Garbage may have hidden a whole frame behind a long guessed length: slide over
            // it one byte at a time before giving up (at most 255 bytes, 255 scans).
            while !self.buf.is_empty() {
                if self.buf.len() >= MIN_FRAME && crc_ok(&self.buf) {
                    frames.push(std::mem::take(&mut self.buf));
                    break;
                }
                self.buf.remove(0);
                self.dropped += 1;
                self.scan(&mut frames);
            }
        }
        frames
    }

    /// Bytes dropped so far (noise, bad CRC, partial frames).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Forgets the buffered bytes (a new connection).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.last_byte = None;
    }

    fn scan(&mut self, frames: &mut Vec<Vec<u8>>) {
        loop {
            match guess_request_frame_len(&self.buf, ModbusProto::Rtu) {
                // Too short to tell yet.
                Err(ErrorKind::OOB) => return,
                Ok(len) if self.buf.len() < usize::from(len) => return,
                Ok(len) if crc_ok(&self.buf[..usize::from(len)]) => {
                    frames.push(self.buf.drain(..usize::from(len)).collect());
                }
                // A bad CRC, or a length no frame has: the first byte cannot start a frame.
                _ => {
                    self.buf.remove(0);
                    self.dropped += 1;
                }
            }
            if self.buf.is_empty() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: Duration = Duration::from_millis(1);

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut f = body.to_vec();
        f.extend_from_slice(&crc(body));
        f
    }

    fn line() -> Line {
        Line {
            baud: 9600,
            parity: Parity::None,
        }
    }

    #[test]
    fn crc_known_value() {
        // The textbook request 01 03 00 00 00 01 has CRC 84 0A.
        assert_eq!(crc(&[1, 3, 0, 0, 0, 1]), [0x84, 0x0A]);
        assert!(crc_ok(&[1, 3, 0, 0, 0, 1, 0x84, 0x0A]));
        assert!(!crc_ok(&[1, 3, 0, 0, 0, 1, 0x84, 0x0B]));
        assert!(!crc_ok(&[0x84, 0x0A]));
    }

    #[test]
    fn silence_per_line() {
        // 3.5 × 10 bits at 9600 baud = 3.646 ms; × 11 bits = 4.010 ms; fixed 1.75 ms at 38400.
        assert_eq!(line().silence(), Duration::from_micros(3645));
        let even = Line {
            baud: 9600,
            parity: Parity::Even,
        };
        assert_eq!(even.silence(), Duration::from_micros(4010));
        let fast = Line {
            baud: 38400,
            parity: Parity::None,
        };
        assert_eq!(fast.silence(), Duration::from_micros(1750));
    }

    #[test]
    fn frames_split_and_joined() {
        let a = framed(&[1, 4, 0, 0, 0, 2]);
        let b = framed(&[2, 3, 0, 10, 0, 1]);
        let mut f = Framer::new(line());
        // One frame in pieces, without pauses.
        assert!(f.push(&a[..3], MS).is_empty());
        assert_eq!(f.push(&a[3..], MS), vec![a.clone()]);
        // Two frames in one read.
        let both = [a.clone(), b.clone()].concat();
        assert_eq!(f.push(&both, 2 * MS), vec![a.clone(), b.clone()]);
        assert_eq!(f.deadline(), None);
    }

    #[test]
    fn garbage_resyncs() {
        let a = framed(&[1, 4, 0, 0, 0, 2]);
        let mut f = Framer::new(line());
        let noisy = [&[0xFF, 0x00, 0x13][..], &a].concat();
        assert_eq!(f.push(&noisy, MS), vec![a.clone()]);
        assert_eq!(f.dropped(), 3);
        // A bad CRC: nothing comes out of that frame, the next one is found.
        let mut bad = a.clone();
        bad[7] ^= 1;
        let mut f = Framer::new(line());
        assert_eq!(f.push(&[bad, a.clone()].concat(), MS), vec![a]);
    }

    #[test]
    fn silence_ends_a_frame() {
        let mut f = Framer::new(line());
        // Function 7 (read exception status) is 4 bytes; its length cannot be guessed (8 is),
        // the silence ends it.
        let short = framed(&[1, 7]);
        assert!(f.push(&short, MS).is_empty());
        assert_eq!(f.deadline(), Some(MS + line().silence()));
        assert!(f.silence_at(2 * MS).is_empty());
        assert_eq!(f.silence_at(5 * MS), vec![short]);
        // A partial frame and a pause: dropped, the next frame stands alone.
        let a = framed(&[1, 4, 0, 0, 0, 2]);
        assert!(f.push(&a[..5], 10 * MS).is_empty());
        assert_eq!(f.push(&a, 20 * MS), vec![a.clone()]);
        assert_eq!(f.dropped(), 5);
    }

    proptest! {
        #[test]
        fn any_bytes_never_panic(chunks in proptest::collection::vec(
            (proptest::collection::vec(any::<u8>(), 0..300), 0u64..10), 0..8)) {
            let mut f = Framer::new(line());
            let mut now = Duration::ZERO;
            for (bytes, pause_ms) in chunks {
                now += Duration::from_millis(pause_ms);
                for frame in f.push(&bytes, now) {
                    prop_assert!(crc_ok(&frame));
                    prop_assert!(frame.len() <= MAX_FRAME);
                }
                prop_assert!(f.buf.len() <= MAX_FRAME);
            }
        }
    }
}
