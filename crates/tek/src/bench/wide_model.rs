//! `tek bench traffic --channels N`: the month's traffic if the controller logged `N` channels
//! with wide telemetry (PROTOCOL.md 17.5) instead of today's four-channel batches.
//!
//! The controller of the run still sends its own telemetry (its session does not send wide
//! telemetry yet); this model logs an `N`-channel record every log interval alongside it, and each time the controller
//! sends a telemetry batch, encodes the records logged since the previous batch with
//! [`tek_proto::channel::wide::WideWriter`] and seals it (session overhead + IP/UDP) in place of
//! the measured batch. Everything else (Acks, Keepalives, Status, handshakes) is as measured, so
//! the difference is exactly the telemetry encoding.
//!
//! Channels 0..=4 are the simulated pool's (power, energy, water and air temperature, relays);
//! the others model the meters a pool plant room has on Modbus, with sensor-like noise from a
//! fixed-seed generator (see BENCHMARKS.md for the list), one of them losing a reading now and
//! then so that records with a "no value" are part of the figure.

use tek_controller::{Entropy, XorShift};
use tek_proto::channel::wide::{ChannelSet, WideWriter, MAX_CHANNELS};
use tek_proto::wire::data::{MAX_MESSAGE, OVERHEAD};
use tek_sim::plant::Plant;

/// One log record of the model.
struct Record {
    /// Sequence number: records are numbered from 0 at boot, and the run has one boot.
    seq: u32,
    time_s: u32,
    values: [Option<i32>; MAX_CHANNELS],
}

/// The wide-telemetry model of one run.
pub struct WideModel {
    channels: ChannelSet,
    n: usize,
    rng: XorShift,
    pending: Vec<Record>,
    /// Length on the wire of the last batch (a retransmission costs the same again).
    last_batch: u64,
    /// Reactive energy counter of the modelled meter, varh.
    varh: f64,
    /// Bytes of the measured batches replaced, and of the wide batches that replace them.
    pub replaced_bytes: u64,
    /// Bytes of the wide batches.
    pub wide_bytes: u64,
    /// Wide telemetry messages.
    pub batches: u64,
    /// Records with at least one "no value".
    pub records_with_gaps: u64,
    /// Records logged.
    pub records: u64,
}

impl WideModel {
    /// A model of `n` channels (1..=128).
    pub fn new(n: usize) -> WideModel {
        let n = n.clamp(1, MAX_CHANNELS);
        let channels = (0..n).fold(ChannelSet(0), |s, c| s.with(c));
        WideModel {
            channels,
            n,
            rng: XorShift::new(0x5eed_0016),
            pending: Vec::new(),
            last_batch: 0,
            varh: 1_250_000.0,
            replaced_bytes: 0,
            wide_bytes: 0,
            batches: 0,
            records_with_gaps: 0,
            records: 0,
        }
    }

    /// Noise in -a..=a.
    fn noise(&mut self, a: i32) -> i32 {
        (self.rng.next_u32() % (2 * a as u32 + 1)) as i32 - a
    }

    /// Logs one record at simulated time `t_ms` from the plant's state.
    pub fn log(&mut self, t_ms: u64, plant: &Plant, relays: u8) {
        let r = plant.reading();
        let pump = relays & 1 != 0;
        let power = r.power_w as i32;
        let mut v = [None; MAX_CHANNELS];
        let mut gaps = false;
        for (ch, slot) in v.iter_mut().enumerate().take(self.n) {
            // Beyond 16, channels repeat the pattern (more probes and meters of the same kinds).
            let value = match ch % 16 {
                0 => Some(power),
                1 => Some(r.energy_wh as i32),
                2 => r.water_cc.map(i32::from),
                3 => r.air_cc.map(i32::from),
                4 => Some(i32::from(relays)),
                5 => Some(23_000 + self.noise(15)), // voltage, 0.01 V
                6 => Some(power * 100 / 230 + self.noise(3)), // current, 0.01 A
                7 => Some(5_000 + self.noise(2)),   // frequency, 0.01 Hz
                8 => Some(if power > 0 { 950 + self.noise(4) } else { 1000 }), // cos phi, 0.001
                9 => {
                    self.varh += f64::from(power) * 0.3 / 60.0;
                    Some(self.varh as i32) // reactive energy, varh
                }
                10 => Some(720 + self.noise(2)), // pH, 0.01
                11 => {
                    // Free chlorine, 0.01 mg/l: the sensor drops a reading now and then.
                    (self.rng.next_u32() % 200 != 0).then(|| 150 + self.noise(3))
                }
                12 => Some(if pump { 2_500 + self.noise(20) } else { 0 }), // flow, 0.1 l/min
                13 => Some(if pump { 1_200 + self.noise(8) } else { 0 }),  // pressure, 0.1 kPa
                14 => r.water_cc.map(|w| i32::from(w) + 40 + self.noise(2)), // heater outlet
                _ => Some(power / 10 + self.noise(1)), // computed: mean power, 10 W
            };
            gaps |= value.is_none();
            *slot = value;
        }
        self.pending.push(Record {
            seq: self.records as u32,
            time_s: (t_ms / 1000) as u32,
            values: v,
        });
        self.records += 1;
        self.records_with_gaps += u64::from(gaps);
    }

    /// The controller sent a telemetry batch of `measured` bytes (datagram + IP/UDP) at `t_ms`:
    /// account for the wide batch(es) that would have carried the records logged since.
    pub fn batch_sent(&mut self, t_ms: u64, measured: u64, ip_udp: u64) {
        self.replaced_bytes += measured;
        if self.pending.is_empty() {
            // A retransmission: the same batch again.
            self.wide_bytes += self.last_batch;
            return;
        }
        let now = (t_ms / 1000) as u32;
        let mut buf = [0u8; MAX_MESSAGE - 1];
        let mut at = 0;
        let mut first_batch_len = 0;
        while at < self.pending.len() {
            // The real first sequence number: it is a varint on the wire (PROTOCOL.md 17.5).
            let first = self.pending[at].seq;
            let Some(mut w) = WideWriter::new(&mut buf, first, self.channels, now) else {
                break;
            };
            while at < self.pending.len()
                && w.push(self.pending[at].time_s, &self.pending[at].values)
            {
                at += 1;
            }
            if w.is_empty() {
                break;
            }
            let wire = (OVERHEAD + 1 + w.len()) as u64 + ip_udp;
            if first_batch_len == 0 {
                first_batch_len = wire;
            }
            self.wide_bytes += wire;
            self.batches += 1;
        }
        self.last_batch = first_batch_len;
        self.pending.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_replace_measured_ones_and_retransmissions_cost_the_same() {
        let plant = Plant::new(1, 0);
        let mut m = WideModel::new(16);
        for i in 0..5u64 {
            m.log(i * 60_000, &plant, 1);
        }
        m.batch_sent(300_000, 96, 28);
        assert_eq!((m.batches, m.records, m.replaced_bytes), (1, 5, 96));
        let first = m.wide_bytes;
        // Header, five records of 16 channels, session overhead and IP/UDP: well under a
        // datagram, and more than the 4-channel batch it replaces.
        assert!(first > 96 && first < 400, "{first}");
        m.batch_sent(303_000, 96, 28);
        assert_eq!(m.wide_bytes, 2 * first);
        assert_eq!(m.batches, 1);
    }
}
