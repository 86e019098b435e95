//! Feeds arbitrary datagrams to a `tek-controller` [`Controller`], through its public API only,
//! in the two states where it listens: waiting for a Welcome, and in an established session.
//!
//! The first input byte picks the case, the rest is the datagram:
//! * bit 0 — state: 0 = handshake (a Hello was sent), 1 = established session;
//! * bit 1 — 0 = the bytes arrive raw; 1 = (established only) the server seals them as the
//!   plaintext of an authentic session datagram, which exercises the message decoder and
//!   everything a decoded message can do to the controller;
//! * bit 2 — the datagram comes from the server's address (0) or from a stranger (1);
//! * bit 3 — it arrives on the session's port (0) or on another one (1).
//!
//! Properties checked, besides "never panics" (including while the clock runs on afterwards):
//! * a raw datagram cannot carry a valid tag (the keys are unknown to the fuzzer), so it must be
//!   counted as ignored, cause no action, and leave every observable part of the controller as it
//!   was (RFC-style "silent drop": traffic counters aside, nothing changes);
//! * after such a drop, the server's next genuine datagram is still accepted (a forged counter
//!   never moved the replay window).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tek_controller::XorShift;
use tek_controller::{Action, Controller, Endpoint, EthernetSetup, Iface, IpInfo, Setup, Stats};
use tek_proto::crypto::DeviceKeys;
use tek_proto::handshake;
use tek_proto::message::Message;
use tek_proto::session::Session;

const KEY: [u8; 16] = [0x42; 16];
const ID: u32 = 1234;
const SERVER: Endpoint = Endpoint {
    addr: [192, 0, 2, 1],
    port: 8844,
};
const STRANGER: Endpoint = Endpoint {
    addr: [198, 51, 100, 7],
    port: 8844,
};

type Ctl = Controller<tek_controller::log::Log<64>>;

/// What the host sees of the controller: everything but the traffic counters and the
/// `ignored` statistic, which a dropped datagram is allowed (required) to move.
#[derive(Debug, PartialEq)]
struct View {
    debug: String,
    stats: Stats,
    poll_at: u64,
    ports: [Option<(Iface, u16)>; 2],
    config: String,
    connected: bool,
    server: Option<u8>,
    trial: bool,
    relays: u8,
    log: usize,
    time: Option<i64>,
}

fn view(ctl: &Ctl, now: u64) -> View {
    let debug = format!("{ctl:?}");
    // `stats` is the last field of the Debug output; it is compared below without `ignored`.
    let debug = debug.split("stats:").next().unwrap_or("").to_owned();
    let (version, cfg) = ctl.config();
    View {
        debug,
        stats: Stats {
            ignored: 0,
            ..*ctl.stats()
        },
        poll_at: ctl.poll_at(),
        ports: ctl.ports(),
        config: format!("{version} {cfg:?}"),
        connected: ctl.is_connected(),
        server: ctl.server_index(),
        trial: ctl.on_trial(),
        relays: ctl.relays(),
        log: ctl.log().len(),
        time: ctl.unix_time(now),
    }
}

/// Carries out every pending action; returns the datagrams sent to the server.
fn drain(ctl: &mut Ctl, now: u64, rng: &mut XorShift) -> Vec<(u16, Vec<u8>)> {
    let mut sent = Vec::new();
    for _ in 0..1000 {
        let Some(action) = ctl.poll(now, rng) else {
            return sent;
        };
        match action {
            Action::Send {
                from_port,
                to,
                bytes,
                ..
            } => {
                assert!(tek_proto::length_ok(bytes.len()));
                if to == SERVER {
                    sent.push((from_port, bytes.to_vec()));
                }
            }
            Action::ConfigureEthernet(EthernetSetup::Dhcp) => ctl.ip_configured(
                now,
                Iface::Ethernet,
                IpInfo {
                    ip: [10, 0, 2, 15],
                    netmask: [255, 255, 255, 0],
                    gateway: [10, 0, 2, 2],
                    dns: [10, 0, 2, 3],
                    dhcp: true,
                },
            ),
            Action::Resolve { token, .. } => ctl.dns_answer(now, token, None),
            _ => {}
        }
    }
    panic!("the controller never went idle");
}

struct Bench {
    ctl: Ctl,
    rng: XorShift,
    now: u64,
    port: u16,
    keys: DeviceKeys,
    session: Option<Session>,
}

/// Powers a controller up until its first Hello is out; with `establish`, answers it.
fn bench(establish: bool) -> Bench {
    let servers = ["192.0.2.1:8844"];
    let mut ctl = Ctl::new(
        Setup {
            device_id: ID,
            key: KEY,
            factory_servers: &servers,
            firmware: [0, 1, 0],
            halt: false,
            has_gsm: false,
            stored: None,
        },
        0,
    );
    let mut rng = XorShift::new(7);
    let keys = handshake::device_keys(KEY);
    let sent = drain(&mut ctl, 0, &mut rng);
    let (port, hello) = sent.into_iter().next().expect("a Hello");
    let mut session = None;
    let mut now = 0;
    if establish {
        let h = handshake::verify_hello(&keys, &hello).expect("a genuine Hello");
        let mut buf = [0u8; 64];
        let (s, n) = handshake::respond(&keys, &h, 77, [5; 16], 1_750_000_000, &mut buf).unwrap();
        now = 100;
        ctl.receive(now, Iface::Ethernet, SERVER, port, &mut buf[..n]);
        assert!(ctl.is_connected());
        drain(&mut ctl, now, &mut rng);
        session = Some(s);
    }
    Bench {
        ctl,
        rng,
        now,
        port,
        keys,
        session,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    let established = mode & 1 != 0;
    let sealed = established && mode & 2 != 0;
    let from = if mode & 4 == 0 { SERVER } else { STRANGER };
    let mut b = bench(established);
    let to_port = if mode & 8 == 0 {
        b.port
    } else {
        b.port.wrapping_add(1)
    };
    let _ = &b.keys;

    if sealed {
        // An authentic datagram whatever its plaintext: may do anything legal, never panic.
        let s = b.session.as_mut().unwrap();
        let len = bytes.len().clamp(2, tek_proto::wire::data::MAX_MESSAGE);
        let mut buf = vec![0u8; 1100];
        buf[14..14 + bytes.len().min(len)].copy_from_slice(&bytes[..bytes.len().min(len)]);
        let n = s.seal_in_place(&mut buf, len).unwrap();
        b.ctl
            .receive(b.now, Iface::Ethernet, from, to_port, &mut buf[..n]);
        // Let the consequences play out for a simulated hour of timers.
        let mut now = b.now;
        for _ in 0..200 {
            drain(&mut b.ctl, now, &mut b.rng);
            let next = b.ctl.poll_at().max(now + 1);
            if next > 3_600_000 {
                break;
            }
            now = next;
        }
        return;
    }

    let before = view(&b.ctl, b.now);
    let ignored = b.ctl.stats().ignored;
    let mut dg = bytes.to_vec();
    b.ctl
        .receive(b.now, Iface::Ethernet, from, to_port, &mut dg);
    assert_eq!(
        b.ctl.stats().ignored,
        ignored + 1,
        "a forged datagram was not dropped"
    );
    assert!(
        b.ctl.poll(b.now, &mut b.rng).is_none(),
        "a forged datagram caused an action"
    );
    assert_eq!(
        view(&b.ctl, b.now),
        before,
        "a forged datagram changed state"
    );

    if let Some(s) = b.session.as_mut() {
        // The replay window did not move: the server's next datagram is accepted.
        let mut buf = [0u8; 64];
        let n = s
            .seal_message(
                &Message::Pong {
                    server_time: 1_750_000_001,
                },
                &mut buf,
            )
            .unwrap();
        b.ctl
            .receive(b.now, Iface::Ethernet, SERVER, b.port, &mut buf[..n]);
        assert_eq!(
            b.ctl.stats().ignored,
            ignored + 1,
            "a genuine datagram was refused after a forged one"
        );
    }
});
