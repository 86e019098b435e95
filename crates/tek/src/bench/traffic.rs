//! `tek bench traffic`: what one controller sends and receives in a month at the default
//! configuration (one record a minute, 4 channels, batch every 300 s, keepalive after 60 s).
//!
//! The real controller logic (`tek-controller`) runs against a real `tek serve` child over
//! loopback UDP, in simulated time: the controller's clock jumps from one `poll_at` to the next,
//! and only when it has sent something that is answered (a Hello, a telemetry batch) does the
//! loop wait — in real time — for the answer, which is then delivered at the same simulated
//! instant. So a month takes well under a minute, and every byte is a byte that really crossed
//! a socket. Every datagram costs its length plus 28 bytes (IPv4 + UDP headers), as in
//! PROTOCOL.md 14. The server is given as an IPv4 literal, so the controller does no DNS; the
//! summary adds PROTOCOL.md's estimate of ~140 bytes per DNS lookup for every session the
//! controller opened (a controller configured with a host name resolves it once per attempt).

use super::progress;
use super::server::{self, ServerProcess};
use super::wide_model::WideModel;
use anyhow::{bail, Context};
use serde_json::json;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};
use tek_controller::{Action, Controller, Endpoint, Entropy, Iface, IpInfo, Setup, XorShift};
use tek_sim::plant::Plant;

/// Arguments of `tek bench traffic`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Simulated days (the result is scaled to 30 days).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=365))]
    pub days: u64,
    /// Also report the month with wide telemetry of this many channels (PROTOCOL.md 17.5) in
    /// place of today's four-channel batches (see `wide_model`).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=128))]
    pub channels: Option<u16>,
}

/// IPv4 (20) + UDP (8) header bytes per datagram.
const IP_UDP: u64 = 28;
/// PROTOCOL.md 14: one DNS query and answer for a server name, about 140 bytes.
const DNS_LOOKUP: u64 = 140;
/// The controller's sensor period, simulated milliseconds (as in the simulator).
const SENSOR_EVERY_MS: u64 = 10_000;
/// Longest real wait for an answer the server owes.
const REPLY_WAIT: Duration = Duration::from_secs(2);
/// The controller's own loopback address.
const DEVICE_ADDR: Ipv4Addr = Ipv4Addr::new(127, 60, 0, 1);

/// Lengths of session datagrams the server does not answer (PROTOCOL.md 14): Keepalive,
/// ConfigAck and CommandAck (28), Status (78).
fn answered(datagram: &[u8]) -> bool {
    match datagram.get(1) {
        Some(1) => true,
        Some(3) => !matches!(datagram.len(), 28 | 78),
        _ => false,
    }
}

struct Rng(XorShift);

impl Entropy for Rng {
    fn next_u32(&mut self) -> u32 {
        self.0.next_u32()
    }
}

#[derive(Default)]
struct Tally {
    tx: u64,
    rx: u64,
    tx_bytes: u64,
    rx_bytes: u64,
}

/// Runs the benchmark and returns its summary line.
pub fn run(args: Args) -> anyhow::Result<String> {
    let dir = tempfile::Builder::new()
        .prefix("tek-bench-traffic")
        .tempdir()?;
    let ids = server::provision(dir.path(), 1)?;
    let dev = ids.first().context("no device provisioned")?.clone();
    let srv = ServerProcess::start(dir.path(), None)?;
    let server_entry = srv.udp.to_string();
    let list = [server_entry.as_str()];
    let mut ctl: Box<Controller<tek_controller::log::Log<{ tek_sim::SIM_LOG }>>> =
        Box::new(Controller::new(
            Setup {
                device_id: dev.id,
                key: dev.key,
                factory_servers: &list,
                firmware: [0, 1, 0],
                halt: false,
                has_gsm: false,
                stored: None,
            },
            0,
        ));
    let mut rng = Rng(XorShift::new(0x7e6b_0001));
    let mut plant = Plant::new(dev.id, 0);
    let mut sockets: Vec<(u16, UdpSocket)> = Vec::new();
    let mut tally = Tally::default();
    let end = args.days * 86_400_000;
    let mut t: u64 = 0;
    let mut next_sensor = 0;
    let mut eth_ip_at: Option<u64> = None;
    let mut next_progress = 86_400_000;
    let started = Instant::now();
    let real_limit = Duration::from_secs(60 + 30 * args.days);
    let mut buf = [0u8; 2048];
    let mut wide = args.channels.map(|n| WideModel::new(usize::from(n)));
    let mut relays = 0u8;
    // The model logs on the controller's default log interval (PROTOCOL.md 7.6).
    let log_every_ms = 60_000;
    let mut next_log = log_every_ms;
    while t < end {
        if started.elapsed() > real_limit {
            bail!(
                "simulation of {} days took longer than {real_limit:?}",
                args.days
            );
        }
        if eth_ip_at.is_some_and(|at| t >= at) {
            eth_ip_at = None;
            ctl.ip_configured(
                t,
                Iface::Ethernet,
                IpInfo {
                    ip: DEVICE_ADDR.octets(),
                    netmask: [255, 0, 0, 0],
                    gateway: [127, 0, 0, 1],
                    dns: [127, 0, 0, 53],
                    dhcp: true,
                },
            );
        }
        if t >= next_log {
            if let Some(w) = wide.as_mut() {
                plant.advance(t);
                w.log(t, &plant, relays);
            }
            next_log += log_every_ms;
        }
        if t >= next_sensor {
            plant.advance(t);
            ctl.sensor(t, plant.reading());
            next_sensor = t + SENSOR_EVERY_MS;
        }
        let mut expect_reply = false;
        while let Some(action) = ctl.poll(t, &mut rng) {
            match action {
                Action::Send {
                    from_port,
                    to,
                    bytes,
                    ..
                } => {
                    if !sockets.iter().any(|(p, _)| *p == from_port) {
                        let s = UdpSocket::bind(SocketAddrV4::new(DEVICE_ADDR, from_port))
                            .with_context(|| format!("cannot bind {DEVICE_ADDR}:{from_port}"))?;
                        sockets.push((from_port, s));
                    }
                    let dest = SocketAddr::from((Ipv4Addr::from(to.addr), to.port));
                    if !dest.ip().is_loopback() {
                        bail!("the controller tried to send to {dest}, which is not loopback");
                    }
                    if let Some((_, s)) = sockets.iter().find(|(p, _)| *p == from_port) {
                        s.send_to(bytes, dest)?;
                        tally.tx += 1;
                        tally.tx_bytes += bytes.len() as u64 + IP_UDP;
                        expect_reply |= answered(bytes);
                        if bytes.get(1) == Some(&3) && answered(bytes) {
                            if let Some(w) = wide.as_mut() {
                                w.batch_sent(t, bytes.len() as u64 + IP_UDP, IP_UDP);
                            }
                        }
                    }
                }
                Action::Resolve { token, .. } => {
                    // The server is an IPv4 literal: no lookup is ever asked for.
                    ctl.dns_answer(t, token, None);
                }
                Action::ConfigureEthernet(_) => eth_ip_at = Some(t + 300),
                Action::SetRelay { relay, on } => {
                    plant.advance(t);
                    plant.set_relay(relay, on);
                    if relay < 8 {
                        relays = if on {
                            relays | 1 << relay
                        } else {
                            relays & !(1 << relay)
                        };
                    }
                }
                Action::ModemUp { .. }
                | Action::ModemDown
                | Action::Persist { .. }
                // No channel part in this controller: never asked.
                | Action::PersistChannels { .. }
                | Action::Led(_)
                | Action::Reset => {}
            }
        }
        let ports = ctl.ports();
        sockets.retain(|(p, _)| ports.iter().flatten().any(|(_, q)| q == p));
        // Deliver what arrived; wait for an owed answer (in real time) if one is due.
        let wait_until = Instant::now()
            + if expect_reply {
                REPLY_WAIT
            } else {
                Duration::ZERO
            };
        let mut got = false;
        loop {
            for (port, s) in &sockets {
                s.set_nonblocking(true)?;
                while let Ok((n, from)) = s.recv_from(&mut buf) {
                    let SocketAddr::V4(from) = from else { continue };
                    tally.rx += 1;
                    tally.rx_bytes += n as u64 + IP_UDP;
                    got = true;
                    ctl.receive(
                        t,
                        Iface::Ethernet,
                        Endpoint {
                            addr: from.ip().octets(),
                            port: from.port(),
                        },
                        *port,
                        &mut buf[..n],
                    );
                }
            }
            if got || Instant::now() >= wait_until {
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        if got {
            // The answer may cause more actions at the same instant.
            continue;
        }
        let mut wake = ctl.poll_at().min(next_sensor);
        if wide.is_some() {
            wake = wake.min(next_log);
        }
        if let Some(at) = eth_ip_at {
            wake = wake.min(at);
        }
        t = wake.max(t + 1);
        if t >= next_progress {
            progress!(
                "day {}: {} datagrams out, {} in, {} bytes",
                t / 86_400_000,
                tally.tx,
                tally.rx,
                tally.tx_bytes + tally.rx_bytes
            );
            next_progress += 86_400_000;
        }
    }
    let stats = *ctl.stats();
    srv.stop()?;
    if stats.records_acked == 0 {
        bail!("no telemetry was acknowledged: the controller never reached the server");
    }
    let udp_bytes = tally.tx_bytes + tally.rx_bytes;
    let dns_bytes = u64::from(stats.sessions) * DNS_LOOKUP;
    let scale = 30.0 / args.days as f64;
    let mb = |b: u64| b as f64 * scale / 1e6;
    progress!(
        "{} days: {} records logged, {} acked, {} batches ({} retries), {} sessions",
        args.days,
        stats.records_logged,
        stats.records_acked,
        stats.batches,
        stats.batch_retries,
        stats.sessions
    );
    let mut summary = json!({
        "bench": "traffic",
        "days": args.days,
        "mb_per_month": mb(udp_bytes + dns_bytes),
        "mb_per_month_udp": mb(udp_bytes),
        "dns_bytes_estimate": dns_bytes,
        "datagrams_tx": tally.tx,
        "datagrams_rx": tally.rx,
        "bytes_tx": tally.tx_bytes,
        "bytes_rx": tally.rx_bytes,
        "records_logged": stats.records_logged,
        "records_acked": stats.records_acked,
        "batches": stats.batches,
        "batch_retries": stats.batch_retries,
        "sessions": stats.sessions,
        "hellos": stats.hellos,
    });
    if let Some(w) = wide {
        let total = udp_bytes - w.replaced_bytes + w.wide_bytes;
        progress!(
            "wide telemetry, {} channels: {} records ({} with a missing value) in {} batches, \
             {} bytes instead of {}",
            args.channels.unwrap_or(0),
            w.records,
            w.records_with_gaps,
            w.batches,
            w.wide_bytes,
            w.replaced_bytes
        );
        summary["channels"] = json!(args.channels);
        summary["mb_per_month_4ch"] = summary["mb_per_month"].clone();
        summary["mb_per_month"] = json!(mb(total + dns_bytes));
        summary["mb_per_month_udp"] = json!(mb(total));
        summary["wide_records"] = json!(w.records);
        summary["wide_records_with_gaps"] = json!(w.records_with_gaps);
        summary["wide_batches"] = json!(w.batches);
        summary["wide_telemetry_bytes"] = json!(w.wide_bytes);
        summary["replaced_telemetry_bytes"] = json!(w.replaced_bytes);
    }
    Ok(summary.to_string())
}
