//! The load generator: bench devices that speak the protocol with `tek-proto` (real Hellos,
//! real AES-CCM sessions), many per UDP socket.
//!
//! A device's identity is its id, key and session, not its socket: the server sends to the
//! source of the device's last authenticated datagram, so many devices can share one socket.
//! Sockets are spread over distinct loopback addresses (127.50.0.1, 127.50.0.2, ...; all of
//! 127/8 is loopback on Linux) so that the server's per-address Hello limit and its endpoint
//! tracking see many peers, and the open-file limit is not the ceiling.
//!
//! Each socket is one task that does everything for its devices: handshakes (a bounded number in
//! flight, re-sent with a new counter after a timeout), windowed telemetry (K batches in flight
//! per device, a new one per Ack, re-sent after a timeout), keepalives, and ConfigAck /
//! CommandAck answers to what the server pushes. In [`Mode::Plain`] the same task sends the same
//! datagrams unencrypted to the echo baseline and treats the echoes as Acks.

use super::server::DeviceIdentity;
use super::stats::Samples;
use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tek_proto::crypto::DeviceKeys;
use tek_proto::handshake::{hello_counter, Initiator};
use tek_proto::message::telemetry::{channel, TelemetryWriter};
use tek_proto::message::{CommandResult, ConfigResult, Message};
use tek_proto::session::Session;
use tokio::net::UdpSocket;
use tokio::time::Instant;

/// The boot number every bench device uses (records are keyed by it).
const BOOT: u32 = 1;
/// Message type byte of Telemetry and Ack (PROTOCOL.md 7).
const TYPE_TELEMETRY: u8 = 0x01;
const TYPE_ACK: u8 = 0x81;
/// Header and tag of a session datagram.
const HEADER: usize = 14;
const TAG: usize = 8;

/// Loopback address of generator socket `i`: 127.50.0.1 and up, 250 per /24.
pub fn socket_addr(i: usize) -> Ipv4Addr {
    let hi = 50 + (i / 62_500) as u8;
    Ipv4Addr::new(127, hi, ((i / 250) % 250) as u8, (i % 250) as u8 + 1)
}

/// Crypto and storage (the server) or neither (the echo baseline).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Real sessions against `tek serve`.
    Sealed,
    /// The same datagrams in the clear against the echo server.
    Plain,
}

/// Telemetry load of every device.
#[derive(Debug, Clone, Copy)]
pub struct Telemetry {
    /// Batches in flight per device.
    pub window: usize,
    /// Records per batch.
    pub records: u8,
    /// A batch unanswered this long is sent again (new counter, same records).
    pub retry: Duration,
    /// `None`: a new batch as soon as one is acknowledged (as fast as the server goes).
    /// `Some(t)`: a new batch every `t` per device (as a controller does, only faster), at most
    /// `window` in flight.
    pub interval: Option<Duration>,
}

/// What the devices of a run do.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Sealed or plain.
    pub mode: Mode,
    /// Send telemetry as fast as it is acknowledged, if set.
    pub telemetry: Option<Telemetry>,
    /// Send a Keepalive after this much silence, if set (spread over the interval).
    pub keepalive: Option<Duration>,
    /// Handshakes in flight per socket.
    pub handshake_window: usize,
    /// A Hello unanswered this long is replaced by a new one (new counter). Real devices wait
    /// 2 s; a bench that queues thousands of Hellos at once gives the server longer.
    pub handshake_timeout: Duration,
    /// End as soon as every device of the socket has a session (the handshake phase).
    pub until_established: bool,
    /// Counting starts here (after the warm-up).
    pub measure_from: Instant,
    /// Counting ends, sending of new batches stops here.
    pub measure_to: Instant,
    /// The task ends here at the latest.
    pub end: Instant,
}

/// Counters shared by every socket task.
#[derive(Debug, Default)]
pub struct Counters {
    /// Devices with an established session.
    pub established: AtomicU64,
    /// Hellos sent.
    pub hellos: AtomicU64,
    /// Records acknowledged inside the measurement window.
    pub records_acked: AtomicU64,
    /// Batches acknowledged inside the measurement window.
    pub batches_acked: AtomicU64,
    /// Records acknowledged in total.
    pub records_acked_total: AtomicU64,
    /// Batches sent again after a timeout.
    pub retransmits: AtomicU64,
    /// Keepalives sent.
    pub keepalives: AtomicU64,
    /// Configurations answered with ConfigAck.
    pub config_acks: AtomicU64,
    /// Datagrams that did not open or parse.
    pub bad: AtomicU64,
    /// Datagrams sent / received.
    pub tx: AtomicU64,
    /// Datagrams received.
    pub rx: AtomicU64,
    /// Copies of sent datagrams, if capturing (`tek bench flood` replays them).
    pub capture: Capture,
}

/// Copies of the datagrams the devices send, up to a limit (0, the default: off).
#[derive(Debug, Default)]
pub struct Capture {
    limit: std::sync::atomic::AtomicUsize,
    taken: std::sync::Mutex<Vec<Vec<u8>>>,
}

impl Capture {
    /// Keeps copies of sent datagrams from now on, up to `limit` in all.
    pub fn start(&self, limit: usize) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    /// Stops capturing and hands over what was captured.
    pub fn take(&self) -> Vec<Vec<u8>> {
        self.limit.store(0, Ordering::Relaxed);
        std::mem::take(&mut *self.taken.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn keep(&self, bytes: &[u8]) {
        let limit = self.limit.load(Ordering::Relaxed);
        if limit == 0 {
            return;
        }
        let mut taken = self.taken.lock().unwrap_or_else(|p| p.into_inner());
        if taken.len() < limit {
            taken.push(bytes.to_vec());
        }
    }
}

struct InFlight {
    last_seq: u32,
    first_seq: u32,
    first_sent: Instant,
    sent: Instant,
}

/// One bench device.
pub struct Device {
    id: u32,
    keys: DeviceKeys,
    attempt: u32,
    handshake: Option<(Initiator, Instant)>,
    session: Option<Session>,
    next_seq: u32,
    inflight: VecDeque<InFlight>,
    acked_through: Option<u32>,
    plain_counter: u32,
    config_version: u32,
    next_keepalive: Option<Instant>,
    next_batch: Option<Instant>,
}

impl Device {
    /// Its id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Highest sequence number the server acknowledged (every record up to it, from 0).
    pub fn acked_through(&self) -> Option<u32> {
        self.acked_through
    }

    /// A device that has not shaken hands yet.
    pub fn new(d: &DeviceIdentity) -> Device {
        Device {
            id: d.id,
            keys: tek_proto::handshake::device_keys(d.key),
            attempt: 0,
            handshake: None,
            session: None,
            next_seq: 0,
            inflight: VecDeque::new(),
            acked_through: None,
            plain_counter: 0,
            config_version: 0,
            next_keepalive: None,
            next_batch: None,
        }
    }
}

/// What a socket task hands back.
pub struct Outcome {
    /// Ack latencies of batches first sent and acknowledged inside the window.
    pub latency: Samples,
    /// The devices, sessions and all, for the next phase.
    pub devices: Vec<Device>,
    /// The socket, for the next phase.
    pub sock: UdpSocket,
}

/// Binds socket `index` on its loopback address.
pub async fn bind(index: usize) -> std::io::Result<UdpSocket> {
    let sock = UdpSocket::bind(SocketAddr::from((socket_addr(index), 0))).await?;
    // Bigger buffers so a burst of Acks is not lost while the task is busy sending.
    let s = socket2::SockRef::from(&sock);
    let _ = s.set_recv_buffer_size(4 << 20);
    let _ = s.set_send_buffer_size(4 << 20);
    Ok(sock)
}

/// Runs one socket's devices until `plan.end`.
pub async fn run_socket(
    sock: UdpSocket,
    server: SocketAddr,
    mut devices: Vec<Device>,
    plan: Plan,
    counters: Arc<Counters>,
) -> Outcome {
    let mut task = Task {
        sock,
        server,
        plan,
        counters,
        latency: Samples::new(),
        out: vec![0u8; tek_proto::MAX_DATAGRAM],
    };
    devices.sort_by_key(|d| d.id);
    if plan.mode == Mode::Plain {
        // The echo baseline has no handshake: every device counts as established.
        task.counters
            .established
            .fetch_add(devices.len() as u64, Ordering::Relaxed);
    }
    let mut buf = vec![0u8; 2048];
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Telemetry starts once every device of the socket has a session.
    let mut telemetry_started = false;
    loop {
        let now = Instant::now();
        if now >= plan.end {
            break;
        }
        tokio::select! {
            r = task.sock.recv_from(&mut buf) => {
                let Ok((n, from)) = r else { continue };
                if from != server {
                    continue;
                }
                task.counters.rx.fetch_add(1, Ordering::Relaxed);
                task.on_datagram(&mut devices, &mut buf[..n]);
                // Drain whatever else is queued without waiting, then go on.
                while let Ok((n, from)) = task.sock.try_recv_from(&mut buf) {
                    if from == server {
                        task.counters.rx.fetch_add(1, Ordering::Relaxed);
                        task.on_datagram(&mut devices, &mut buf[..n]);
                    }
                }
            }
            _ = tick.tick() => {
                let now = Instant::now();
                task.handshakes(&mut devices, now);
                if plan.until_established && devices.iter().all(|d| d.session.is_some()) {
                    break;
                }
                if !telemetry_started
                    && (plan.mode == Mode::Plain || devices.iter().all(|d| d.session.is_some()))
                {
                    telemetry_started = true;
                    task.start_telemetry(&mut devices, now);
                }
                if telemetry_started {
                    task.paced(&mut devices, now);
                }
                task.retransmit(&mut devices, now);
                task.keepalives(&mut devices, now);
            }
            _ = tokio::time::sleep_until(plan.end) => break,
        }
    }
    Outcome {
        latency: task.latency,
        devices,
        sock: task.sock,
    }
}

/// A socket and the devices that use it.
pub type Group = (UdpSocket, Vec<Device>);

/// Binds `sockets` sockets and deals `devices` out over them round robin.
pub async fn groups(devices: &[DeviceIdentity], sockets: usize) -> std::io::Result<Vec<Group>> {
    let sockets = sockets.clamp(1, devices.len().max(1));
    let mut out = Vec::with_capacity(sockets);
    for i in 0..sockets {
        out.push((bind(i).await?, Vec::new()));
    }
    for (i, d) in devices.iter().enumerate() {
        out[i % sockets].1.push(Device::new(d));
    }
    Ok(out)
}

/// Runs every group under `plan`, printing a progress line every second; returns the latency
/// samples of all groups and the groups for the next phase.
pub async fn run_all(
    groups: Vec<Group>,
    server: SocketAddr,
    plan: Plan,
    counters: Arc<Counters>,
    label: &str,
) -> (Samples, Vec<Group>) {
    let mut set = tokio::task::JoinSet::new();
    for (sock, devices) in groups {
        set.spawn(run_socket(sock, server, devices, plan, counters.clone()));
    }
    let c = counters.clone();
    let label = label.to_owned();
    let reporter = tokio::spawn(async move {
        let mut last = 0;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let total = c.records_acked_total.load(Ordering::Relaxed);
            super::progress!(
                "{label}: {} sessions, {} records/s acked, {} retransmits, {} keepalives, {} bad",
                c.established.load(Ordering::Relaxed),
                total - last,
                c.retransmits.load(Ordering::Relaxed),
                c.keepalives.load(Ordering::Relaxed),
                c.bad.load(Ordering::Relaxed),
            );
            last = total;
        }
    });
    let mut latency = Samples::new();
    let mut back = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok(o) = r {
            latency.extend(o.latency);
            back.push((o.sock, o.devices));
        }
    }
    reporter.abort();
    (latency, back)
}

struct Task {
    sock: UdpSocket,
    server: SocketAddr,
    plan: Plan,
    counters: Arc<Counters>,
    latency: Samples,
    out: Vec<u8>,
}

impl Task {
    fn send(&self, len: usize) {
        if self.sock.try_send_to(&self.out[..len], self.server).is_ok() {
            self.counters.tx.fetch_add(1, Ordering::Relaxed);
            self.counters.capture.keep(&self.out[..len]);
        }
    }

    /// Starts (or restarts after a timeout) handshakes, at most `handshake_window` in flight.
    fn handshakes(&mut self, devices: &mut [Device], now: Instant) {
        if self.plan.mode == Mode::Plain {
            return;
        }
        let mut in_flight = devices
            .iter()
            .filter(|d| {
                d.session.is_none()
                    && d.handshake.as_ref().is_some_and(|(_, at)| {
                        now.duration_since(*at) < self.plan.handshake_timeout
                    })
            })
            .count();
        for d in devices.iter_mut() {
            if in_flight >= self.plan.handshake_window {
                break;
            }
            if d.session.is_some()
                || d.handshake
                    .as_ref()
                    .is_some_and(|(_, at)| now.duration_since(*at) < self.plan.handshake_timeout)
            {
                continue;
            }
            d.attempt += 1;
            let mut nonce = [0u8; 16];
            nonce[..4].copy_from_slice(&d.id.to_be_bytes());
            nonce[4..8].copy_from_slice(&d.attempt.to_be_bytes());
            let _ = getrandom::fill(&mut nonce[8..]);
            let counter = hello_counter(BOOT, d.attempt);
            let Some((init, n)) = Initiator::start(&d.keys, d.id, counter, nonce, &mut self.out)
            else {
                continue;
            };
            d.handshake = Some((init, now));
            self.counters.hellos.fetch_add(1, Ordering::Relaxed);
            self.send(n);
            in_flight += 1;
        }
    }

    fn start_telemetry(&mut self, devices: &mut [Device], now: Instant) {
        let Some(t) = self.plan.telemetry else {
            return;
        };
        if t.interval.is_some() {
            return; // paced: see `paced`
        }
        for d in devices.iter_mut() {
            for _ in 0..t.window {
                self.send_batch(d, None, now);
            }
        }
    }

    /// Paced telemetry: a new batch per device every `interval` (the first ones spread over the
    /// interval), while fewer than `window` are in flight.
    fn paced(&mut self, devices: &mut [Device], now: Instant) {
        let Some(Telemetry {
            interval: Some(every),
            window,
            ..
        }) = self.plan.telemetry
        else {
            return;
        };
        for d in devices.iter_mut() {
            if d.session.is_none() && self.plan.mode == Mode::Sealed {
                continue;
            }
            let due = *d.next_batch.get_or_insert_with(|| {
                let phase =
                    u64::from(d.id.wrapping_mul(2_654_435_761)) % (every.as_millis() as u64).max(1);
                now + Duration::from_millis(phase)
            });
            if now < due {
                continue;
            }
            if d.inflight.len() < window {
                self.send_batch(d, None, now);
            }
            d.next_batch = Some(due + every).filter(|t| *t > now).or(Some(now + every));
        }
    }

    /// Sends a new batch, or `again` (the first in-flight batch) with a fresh counter.
    fn send_batch(&mut self, d: &mut Device, again: Option<usize>, now: Instant) {
        let Some(t) = self.plan.telemetry else {
            return;
        };
        if again.is_none() && now >= self.plan.measure_to {
            return;
        }
        let first_seq = match again {
            Some(i) => d.inflight[i].first_seq,
            None => d.next_seq,
        };
        let body = &mut self.out[HEADER + 1..];
        // Device clock: seconds; the records are one minute apart, the last one just taken.
        let now_s = 100_000 + first_seq / 16;
        let Some(mut w) = TelemetryWriter::new(body, first_seq, 0x0F, now_s) else {
            return;
        };
        for k in 0..u32::from(t.records) {
            let seq = first_seq.wrapping_add(k);
            let mut values = [0i32; channel::COUNT];
            values[0] = 1400 + (seq % 97) as i32;
            values[1] = 5_000_000 + seq as i32;
            values[2] = 2700 + (seq % 13) as i32;
            values[3] = -30 + (seq % 7) as i32;
            let time = now_s - 60 * (u32::from(t.records) - 1 - k);
            if !w.push(time, &values) {
                break;
            }
        }
        let count = u32::from(w.count());
        let msg_len = 1 + w.len();
        self.out[HEADER] = TYPE_TELEMETRY;
        let last_seq = first_seq + count - 1;
        let n = match self.plan.mode {
            Mode::Sealed => {
                let Some(s) = d.session.as_mut() else { return };
                match s.seal_in_place(&mut self.out, msg_len) {
                    Ok(n) => n,
                    Err(_) => return,
                }
            }
            Mode::Plain => {
                let counter = d.plain_counter;
                d.plain_counter += 1;
                tek_proto::wire::data::emit_header(&mut self.out, d.id, 0, counter);
                let n = HEADER + msg_len + TAG;
                self.out[HEADER + msg_len..n].fill(0);
                n
            }
        };
        self.send(n);
        match again {
            Some(i) => {
                d.inflight[i].sent = now;
                self.counters.retransmits.fetch_add(1, Ordering::Relaxed);
            }
            None => {
                d.next_seq = last_seq + 1;
                d.inflight.push_back(InFlight {
                    last_seq,
                    first_seq,
                    first_sent: now,
                    sent: now,
                });
            }
        }
    }

    fn retransmit(&mut self, devices: &mut [Device], now: Instant) {
        let Some(t) = self.plan.telemetry else {
            return;
        };
        for d in devices.iter_mut() {
            for i in 0..d.inflight.len() {
                if now.duration_since(d.inflight[i].sent) >= t.retry {
                    self.send_batch(d, Some(i), now);
                }
            }
        }
    }

    fn keepalives(&mut self, devices: &mut [Device], now: Instant) {
        let Some(every) = self.plan.keepalive else {
            return;
        };
        for d in devices.iter_mut() {
            let Some(s) = d.session.as_mut() else {
                continue;
            };
            let due = *d.next_keepalive.get_or_insert_with(|| {
                // Spread the first keepalives over the interval.
                let phase = u64::from(d.id.wrapping_mul(2_654_435_761)) % every.as_millis() as u64;
                now + Duration::from_millis(phase)
            });
            if now < due {
                continue;
            }
            let msg = Message::Keepalive {
                reply_wanted: false,
                config_version: d.config_version,
            };
            if let Ok(n) = s.seal_message(&msg, &mut self.out) {
                self.send(n);
                self.counters.keepalives.fetch_add(1, Ordering::Relaxed);
            }
            d.next_keepalive = Some(now + every);
        }
    }

    fn on_datagram(&mut self, devices: &mut [Device], bytes: &mut [u8]) {
        if bytes.len() < HEADER + 1 {
            self.counters.bad.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let id = u32::from_be_bytes([bytes[2], bytes[3], bytes[4], bytes[5]]);
        let Ok(i) = devices.binary_search_by_key(&id, |d| d.id) else {
            self.counters.bad.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let now = Instant::now();
        let d = &mut devices[i];
        match (self.plan.mode, bytes[1]) {
            (Mode::Plain, _) => {
                if bytes.len() >= HEADER + 5 && bytes[HEADER] == TYPE_ACK {
                    let through = u32::from_be_bytes([
                        bytes[HEADER + 1],
                        bytes[HEADER + 2],
                        bytes[HEADER + 3],
                        bytes[HEADER + 4],
                    ]);
                    self.on_ack(d, through, now);
                }
            }
            (Mode::Sealed, 2) => {
                let Some((init, _)) = d.handshake.as_ref() else {
                    return;
                };
                match init.finish(&d.keys, bytes) {
                    Ok((session, _time)) => {
                        d.session = Some(session);
                        d.handshake = None;
                        self.counters.established.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        self.counters.bad.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            (Mode::Sealed, 3) => {
                let Some(s) = d.session.as_mut() else {
                    return;
                };
                let reply = match s.open_message(bytes) {
                    Ok(Message::Ack { through_seq, .. }) => {
                        self.on_ack(d, through_seq, now);
                        return;
                    }
                    Ok(Message::Config { version, .. }) => {
                        d.config_version = version;
                        self.counters.config_acks.fetch_add(1, Ordering::Relaxed);
                        Message::ConfigAck {
                            version,
                            result: ConfigResult::Applied,
                        }
                    }
                    Ok(Message::Command { id, .. }) => Message::CommandAck {
                        id,
                        result: CommandResult::Done,
                    },
                    Ok(_) => return,
                    Err(_) => {
                        self.counters.bad.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                };
                if let Ok(n) = s.seal_message(&reply, &mut self.out) {
                    self.send(n);
                }
            }
            _ => {
                self.counters.bad.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// An Ack answers one batch, the one whose last record is `through` (PROTOCOL.md 7): only
    /// that batch's records count as stored. With a window of batches in flight an earlier batch
    /// may have been lost (a full socket buffer); it stays in flight and is sent again, instead of
    /// being taken as acknowledged too, so `records_acked` never counts a record the server did
    /// not confirm. A repeated Ack (for a batch sent twice) finds no batch and counts nothing.
    fn on_ack(&mut self, d: &mut Device, through: u32, now: Instant) {
        let Some(i) = d.inflight.iter().position(|b| b.last_seq == through) else {
            return;
        };
        let Some(b) = d.inflight.remove(i) else {
            return;
        };
        let new_records = u64::from(b.last_seq - b.first_seq + 1);
        // Every record before the oldest batch still in flight is acknowledged.
        let next = d.inflight.front().map_or(d.next_seq, |f| f.first_seq);
        d.acked_through = next.checked_sub(1);
        let in_window = now >= self.plan.measure_from && now < self.plan.measure_to;
        self.counters
            .records_acked_total
            .fetch_add(new_records, Ordering::Relaxed);
        if in_window {
            self.counters
                .records_acked
                .fetch_add(new_records, Ordering::Relaxed);
            self.counters.batches_acked.fetch_add(1, Ordering::Relaxed);
            if b.first_sent >= self.plan.measure_from {
                self.latency.push(now.duration_since(b.first_sent));
            }
        }
        if self.plan.telemetry.is_some_and(|t| t.interval.is_none()) {
            self.send_batch(d, None, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_addresses_are_distinct_loopback() {
        let a: Vec<Ipv4Addr> = (0..70_000).map(socket_addr).collect();
        assert!(a.iter().all(|x| x.is_loopback()));
        let set: std::collections::HashSet<_> = a.iter().collect();
        assert_eq!(set.len(), a.len());
        assert_eq!(socket_addr(0), Ipv4Addr::new(127, 50, 0, 1));
    }
}
