//! Feeds arbitrary bytes to a `tek-controller` channel part (PROTOCOL.md 17.4, 17.5, 17.8)
//! through its public API, as a device with a channel map would meet them.
//!
//! The first input byte picks the case, the rest is the data:
//! * 0 — the two flash slots of the channel record (split in the middle): restored whatever they
//!   hold (erased, torn, corrupt);
//! * 1 — ConfigChunk messages cut at 0xFF: any sequence of chunks; one completes only if the
//!   last chunk's digest is the device's digest of the assembled bytes (a fuzzer that sees the
//!   comparison can learn those 8 bytes, so completing is allowed; completing with a wrong
//!   digest is not);
//! * 2 — an assembled configuration, split into chunks with the device's digest: authentic, so
//!   validation is all that stands between the bytes and the running map. Once accepted it is
//!   sampled through a bus whose answers are the fuzzer's bytes, logged, batched as
//!   WideTelemetry, reported as ChannelFaults and persisted; the record restores to the same map.
//!
//! Besides "never panics" (nor loops: every sample is bounded by the bus's timeout): whatever
//! decodes re-encodes to a message that decodes, and a configuration runs only if it validated.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tek_controller::channel_part::{ChannelPart, ChannelRuntime, Chunked};
use tek_controller::channels::ChannelBus;
use tek_proto::channel::map::Bus;
use tek_proto::channel::split::{digest_key, digest_ok, Capabilities, ConfigChunk, CHUNK_DATA};
use tek_proto::channel::ChannelMessage;
use tek_proto::crypto::Key;

const KEY: [u8; 16] = [0x42; 16];
type Part = ChannelPart<1024, 16, 64, 4096>;

const CAPS: Capabilities = Capabilities {
    features: 0b1111,
    max_channels: 16,
    max_buses: 4,
    max_config: 4096,
    max_program: 64,
};

/// A bus whose board inputs and serial answers come from the fuzzer.
struct FuzzBus<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl ChannelBus for FuzzBus<'_> {
    fn board_input(&mut self, input: u8) -> Option<i32> {
        let b = *self.bytes.get(self.at % self.bytes.len().max(1))?;
        self.at += 1;
        (b != 0).then(|| i32::from(b) * i32::from(input).wrapping_sub(3))
    }
    fn serial_send(&mut self, _bus: u8, _settings: &Bus, frame: &[u8]) {
        assert!(frame.len() <= tek_controller::modbus::MAX_REQUEST);
    }
    fn serial_receive(&mut self, _bus: u8, buf: &mut [u8]) -> usize {
        let rest = self.bytes.get(self.at..).unwrap_or(&[]);
        let n = rest.len().min(buf.len()).min(3);
        buf[..n].copy_from_slice(&rest[..n]);
        self.at += n;
        n
    }
}

fn part() -> Box<Part> {
    let mut p = Box::new(Part::new(CAPS));
    p.start(0, &KEY);
    p
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut p = part();
    match mode % 3 {
        0 => {
            let (a, b) = rest.split_at(rest.len() / 2);
            let version = u32::from(mode);
            let runs = p.restore([a, b], version, 0);
            assert_eq!(runs, p.split_version() == Some(version));
        }
        1 => {
            let k = digest_key(&Key(KEY));
            for m in rest.split(|&b| b == 0xFF) {
                if let Some(Chunked::Ready { version, .. }) = p.chunk(m, 0) {
                    let last = ConfigChunk::parse(&m[1..]).expect("a chunk that completed parses");
                    let (ready, bytes) = p.ready_bytes().expect("a ready transfer has its bytes");
                    assert_eq!(ready, version);
                    assert!(
                        digest_ok(&k, version, bytes, &last.digest),
                        "a transfer completed without the device's digest"
                    );
                    p.discard_ready();
                }
            }
            assert_eq!(p.split_version(), None);
        }
        _ => {
            let k = digest_key(&Key(KEY));
            let count = rest.len().div_ceil(CHUNK_DATA);
            let mut ready = None;
            for i in 0..count {
                let Some(c) = ConfigChunk::split(&k, 5, rest, i) else {
                    return;
                };
                let msg = ChannelMessage::ConfigChunk(c);
                let mut b = vec![0u8; msg.buffer_len()];
                msg.emit(&mut b).unwrap();
                ready = p.chunk(&b, 0);
            }
            let Some(Chunked::Ready { version, .. }) = ready else {
                return;
            };
            if p.ready_config().is_none() {
                assert_eq!(p.split_version(), None);
                return;
            }
            p.commit_ready(version, 0);
            assert_eq!(p.split_version(), Some(5));
            let mut bus = FuzzBus { bytes: rest, at: 0 };
            let mut now = 0;
            for _ in 0..200 {
                let _ = p.sample(now, &mut bus);
                now = p.sample_at().max(now + 1);
                if now % 60_000 < 1_000 {
                    p.log_record((now / 1000) as u32);
                }
            }
            p.log_record((now / 1000) as u32);
            let mut out = [0u8; 1100];
            if let Some((n, _, _)) =
                p.wide_log()
                    .write(None, 0, u32::MAX, (now / 1000) as u32, &mut out)
            {
                assert!(matches!(
                    ChannelMessage::parse(&out[..n]),
                    Ok(Some(ChannelMessage::WideTelemetry(_)))
                ));
            }
            if let Some(n) = p.faults_message(&mut out) {
                assert!(matches!(
                    ChannelMessage::parse(&out[..n]),
                    Ok(Some(ChannelMessage::ChannelFaults(_)))
                ));
            }
            let (slot, pieces) = p.record();
            let bytes = pieces.concat();
            let count = p.channel_count();
            let mut again = part();
            let slots: [&[u8]; 2] = if slot == 0 {
                [&bytes, &[]]
            } else {
                [&[], &bytes]
            };
            assert!(again.restore(slots, 5, 0));
            assert_eq!(again.channel_count(), count);
        }
    }
});
