//! A minimal in-process responder built from tek-proto, for the simulator's own tests and for
//! load measurements without a database: it answers Hellos (counter above the last accepted),
//! acknowledges telemetry at once, answers reply-wanted keepalives, and counts what it saw.
//!
//! It is **not** the TEK server (no storage, no rate limits, no configuration pushes) — that is
//! `tek serve` in crates/server. It exists so `tek sim` can be tested and measured on its own.

use crate::fleet::Device;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tek_proto::crypto::{DeviceKeys, Key};
use tek_proto::handshake;
use tek_proto::message::Message;
use tek_proto::session::Session;
use tokio::net::UdpSocket;
use tokio::sync::watch;

/// What the responder counted.
#[derive(Debug, Default)]
pub struct Counters {
    /// Datagrams received.
    pub datagrams: AtomicU64,
    /// Sessions set up.
    pub sessions: AtomicU64,
    /// Telemetry records received (retransmissions included).
    pub records: AtomicU64,
    /// Status reports received.
    pub statuses: AtomicU64,
    /// Datagrams dropped (failed a check).
    pub dropped: AtomicU64,
}

struct Dev {
    keys: DeviceKeys,
    accepted: u64,
    session: Option<Session>,
}

/// A running responder.
pub struct Responder {
    /// Its address.
    pub addr: SocketAddr,
    /// Its counters.
    pub counters: Arc<Counters>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Responder {
    /// Binds `addr` (port 0 for any) and serves `devices` until stopped.
    pub async fn start(addr: SocketAddr, devices: &[Device]) -> anyhow::Result<Responder> {
        let sock = UdpSocket::bind(addr).await?;
        let addr = sock.local_addr()?;
        let counters = Arc::new(Counters::default());
        let mut devs: HashMap<u32, Dev> = devices
            .iter()
            .map(|d| {
                (
                    d.id,
                    Dev {
                        keys: DeviceKeys::new(Key(d.key)),
                        accepted: 0,
                        session: None,
                    },
                )
            })
            .collect();
        let (stop, mut stopped) = watch::channel(false);
        let c = counters.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            let mut out = vec![0u8; 1024];
            let mut next_session: u32 = 1;
            loop {
                let (n, from) = tokio::select! {
                    r = sock.recv_from(&mut buf) => match r { Ok(x) => x, Err(_) => continue },
                    _ = stopped.changed() => return,
                };
                c.datagrams.fetch_add(1, Ordering::Relaxed);
                let reply = handle(&mut devs, &c, &mut buf[..n], &mut out, &mut next_session);
                if let Some(len) = reply {
                    let _ = sock.try_send_to(&out[..len], from);
                }
            }
        });
        Ok(Responder {
            addr,
            counters,
            stop,
            task,
        })
    }

    /// Stops serving and waits for the task to end.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

fn now_unix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32)
}

fn handle(
    devs: &mut HashMap<u32, Dev>,
    c: &Counters,
    dg: &mut [u8],
    out: &mut [u8],
    next_session: &mut u32,
) -> Option<usize> {
    let drop = || {
        c.dropped.fetch_add(1, Ordering::Relaxed);
        None
    };
    if !tek_proto::length_ok(dg.len()) {
        return drop();
    }
    let id = u32::from_be_bytes([dg[2], dg[3], dg[4], dg[5]]);
    let Some(dev) = devs.get_mut(&id) else {
        return drop();
    };
    match dg[1] {
        1 => {
            let Ok(h) = handshake::verify_hello(&dev.keys, dg) else {
                return drop();
            };
            if h.counter <= dev.accepted {
                return drop();
            }
            dev.accepted = h.counter;
            *next_session = next_session.wrapping_add(1).max(1);
            let mut nonce = [0u8; 16];
            getrandom::fill(&mut nonce).ok()?;
            let (s, n) = handshake::respond(&dev.keys, &h, *next_session, nonce, now_unix(), out)?;
            dev.session = Some(s);
            c.sessions.fetch_add(1, Ordering::Relaxed);
            Some(n)
        }
        3 => {
            let Some(s) = &mut dev.session else {
                return drop();
            };
            let Ok(msg) = s.open_message(dg) else {
                return drop();
            };
            let reply = match msg {
                Message::Telemetry(t) => {
                    c.records.fetch_add(u64::from(t.count()), Ordering::Relaxed);
                    Some(Message::Ack {
                        through_seq: t.last_seq(),
                        server_time: now_unix(),
                    })
                }
                Message::Keepalive {
                    reply_wanted: true, ..
                } => Some(Message::Pong {
                    server_time: now_unix(),
                }),
                Message::Status(_) => {
                    c.statuses.fetch_add(1, Ordering::Relaxed);
                    None
                }
                _ => None,
            }?;
            s.seal_message(&reply, out).ok()
        }
        _ => drop(),
    }
}
