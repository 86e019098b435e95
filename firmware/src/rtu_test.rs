//! The test bench's fixed channel map on the Modbus RTU bus (feature `rtu-test`, run by
//! scripts/rtu-e2e.sh): polled by `Channels` every loop turn, samples and fault changes logged.

use crate::console::Opt;
use crate::{clock, log, rtu, semihosting};

/// The test bench's channel map (`rtu-test`): one bus, 19200 baud 8E1, 200 ms timeout; an
/// Eastron SDM630 at address 1 (input registers, f32 high word first) and a ControlBox TB260
/// at 2 (holding register 0, i16 in 0.1 degC), and a board input:
/// 0 voltage L1 (30001) x10 -> 0.1 V, 1 total power (30053) -> W, 2 total energy (30343)
/// x1000 -> Wh, 3 temperature x10 -> 0.01 degC, 4 board input 2 (water, 0.01 degC).
#[rustfmt::skip]
const RTU_TEST_MAP: [u8; 106] = [
    1, 1, 5,
    1, 1, 0, 200, // 19200 baud, even parity, 200 ms
    1, 7, 0, 1, 4, 0x00, 0x00, 4, 0,  0, 0, 0, 10,  0, 1,  0, 0, 0, 0,  5, 0xFF,
    1, 7, 0, 1, 4, 0x00, 0x34, 4, 0,  0, 0, 0, 1,   0, 1,  0, 0, 0, 0,  1, 0,
    1, 7, 0, 1, 4, 0x01, 0x56, 4, 0,  0, 0, 0x03, 0xE8,  0, 1,  0, 0, 0, 0,  2, 0,
    1, 7, 0, 2, 3, 0x00, 0x00, 1, 0,  0, 0, 0, 10,  0, 1,  0, 0, 0, 0,  3, 0xFE,
    2, 1, 2,                          0, 0, 0, 1,   0, 1,  0, 0, 0, 0,  3, 0xFE,
];
/// Bytes and channels the test map may have.
pub(crate) type RtuChannels = tek_controller::channels::Channels<{ RTU_TEST_MAP.len() }, 5>;

/// The `rtu-test` bench: [`RTU_TEST_MAP`] sampled every 2 s over the board's
/// [`rtu::BoardBus`] (which the controller's pool map also reads: board inputs only, so the
/// line is this map's), one retry per read, every sample and every change of the fault
/// counters on the console.
pub(crate) struct RtuTest {
    pub(crate) channels: RtuChannels,
}

impl RtuTest {
    pub(crate) fn boot() -> RtuTest {
        let now = clock::now_ms();
        let mut channels = RtuChannels::new(now);
        if let Err(e) = channels.set_map(&RTU_TEST_MAP, &[], now) {
            log!("fatal: rtu test map: {}", e);
            semihosting::exit(false);
        }
        channels.sample_every_ms = 2_000;
        channels.modbus_retries = 1;
        log!(
            "rtu: Modbus RTU master on UART2, {} channels, sample every {} ms, {} retry",
            channels.count(),
            channels.sample_every_ms,
            channels.modbus_retries
        );
        RtuTest { channels }
    }

    /// Sends a queued request when the line is quiet, advances the sample, logs what it gave.
    #[inline(never)]
    pub(crate) fn poll(&mut self, now: u64, bus: &mut rtu::BoardBus) {
        bus.poll();
        if self.channels.poll(now, bus) {
            log!(
                "rtu: sample {}:{} (requests {})",
                self.channels.samples(),
                RtuValues(&self.channels),
                bus.sent
            );
        }
        if self.channels.faults_changed() {
            self.channels.faults_reported();
            log!("rtu: faults{}", RtuFaults(&self.channels));
        }
    }
}

/// ` v0 v1 ...`, `none` for a channel without value.
struct RtuValues<'a>(&'a RtuChannels);
impl core::fmt::Display for RtuValues<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for ch in 0..self.0.count() {
            write!(f, " {}", Opt(self.0.value(ch)))?;
        }
        Ok(())
    }
}

/// ` chN xCOUNT LAST` per channel with failures.
struct RtuFaults<'a>(&'a RtuChannels);
impl core::fmt::Display for RtuFaults<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut entries = [tek_proto::channel::faults::FaultEntry {
            channel: 0,
            errors: 0,
            last: tek_proto::channel::faults::Fault::Timeout,
        }; 5];
        let n = self.0.faults(&mut entries);
        for e in &entries[..n] {
            write!(f, " ch{} x{} {:?}", e.channel, e.errors, e.last)?;
        }
        Ok(())
    }
}
