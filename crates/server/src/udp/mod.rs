//! UDP ingest: the socket loop, handshakes, the session table and message dispatch.
//!
//! ```text
//! recv_from ─► cheap checks (length, version, kind) ─► Hello ─► rate limits ─► key (memory, or
//!                                                       │        one DB load) ─► CMAC ─► counter
//!                                                       │        (memory, then one DB CAS) ─► Welcome
//!                                                       └► Data ─► session table (memory) ─► replay
//!                                                                  window ─► AEAD ─► dispatch
//! dispatch: Telemetry ─► writer queue ─► (commit) ─► Ack     Keepalive ─► Pong, config check
//!           Status ─► writer queue, config check            ConfigAck/CommandAck ─► writer queue
//!           Backlog ─► writer queue ─► (commit) ─► BacklogAck  Capabilities (bit 4) ─► Accepts
//! ```
//!
//! Every datagram that fails a check is dropped silently and counted under its reason; nothing
//! is ever sent in answer to a bad datagram. The only per-datagram work on the data path is one
//! shard lock and the AEAD. Sends never block: `try_send_to` on the shared socket, or for the Acks
//! of a committed batch one non-blocking `sendmmsg` per 64 (`send_batch.rs`); a full socket
//! buffer loses the datagram, which the protocol's re-sends cover.

mod backlog;
pub mod channels;
mod dispatch;
mod handshake;
pub(crate) mod push;
pub mod ratelimit;
pub mod send_batch;
pub(crate) mod sessions;
pub mod split;

use crate::config::Config;
use crate::metrics::{DropReason, Metrics};
use crate::storage::Storage;
use crate::write_job::WriteJob;
use ratelimit::IpLimiter;
use sessions::{Link, LinkTable};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tek_proto::message::{ConfigItems, Message, MessageError};
use tek_proto::session::{OpenError, ReceiveError};
use tek_proto::wire::{Datagram, Kind, WireError};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch, Notify};

// The clock and the shutdown signal live at the bottom (`clock`, `runtime`); named here too
// so the ingest files keep calling them as `super::unix_now` and the like.
pub(crate) use crate::clock::{server_time, unix_now};
pub(crate) use crate::runtime::stopped;

pub(crate) fn wire_reason(e: WireError) -> DropReason {
    match e {
        WireError::Length => DropReason::Length,
        WireError::Version => DropReason::Version,
        WireError::Kind => DropReason::Kind,
    }
}

pub(crate) fn receive_reason(e: ReceiveError) -> DropReason {
    match e {
        ReceiveError::Open(OpenError::Wire(w)) => wire_reason(w),
        ReceiveError::Open(OpenError::WrongDevice | OpenError::StaleSession) => {
            DropReason::StaleSession
        }
        ReceiveError::Open(OpenError::Replay) => DropReason::Replay,
        ReceiveError::Open(OpenError::Auth) => DropReason::Auth,
        ReceiveError::Message(MessageError::Range) => DropReason::Range,
        ReceiveError::Message(_) => DropReason::Malformed,
    }
}

/// State shared by the socket loop, the handshake tasks, the timers, the writer and the API.
pub(crate) struct Ingest {
    pub socket: Arc<UdpSocket>,
    pub storage: Arc<dyn Storage>,
    pub metrics: Arc<Metrics>,
    pub links: LinkTable,
    pub writer: mpsc::Sender<WriteJob>,
    pub cfg: Arc<Config>,
    pub ip_limiter: Mutex<IpLimiter>,
    /// Device ids recently found unknown, so a flood of them costs no database reads.
    pub unknown: Mutex<HashMap<u32, Instant>>,
    /// Set while the socket loop runs (for /healthz).
    pub udp_up: AtomicBool,
    /// Wakes the change poller at once (after a save through the API).
    pub poll_now: Notify,
    /// Feeds the alarm engine (never blocks).
    pub alarms: Arc<crate::alarms::task::Alarms>,
    /// Feeds the MQTT publisher (never blocks; a no-op without `[mqtt] url`).
    pub mqtt: crate::mqtt::Publisher,
}

impl Ingest {
    pub(crate) fn drop_datagram(&self, reason: DropReason) {
        self.metrics.dropped(reason);
        tracing::trace!(reason = reason.label(), "datagram dropped");
    }

    /// Seals `msg` in the link's live session and sends it to the link's endpoint.
    /// Returns whether it was handed to the socket.
    pub(crate) fn send(&self, link: &mut Link, msg: &Message<'_>) -> bool {
        let mut buf = [0u8; tek_proto::MAX_DATAGRAM];
        match Self::seal(link, msg, &mut buf) {
            Some((n, to)) => self.send_raw(&buf[..n], to),
            None => false,
        }
    }

    /// Seals `msg` in the link's live session into `buf`: its length and the link's endpoint,
    /// or `None` without a live session (or if it cannot be sealed, which is logged).
    pub(crate) fn seal(
        link: &mut Link,
        msg: &Message<'_>,
        buf: &mut [u8; tek_proto::MAX_DATAGRAM],
    ) -> Option<(usize, SocketAddr)> {
        let live = link.live.as_mut()?;
        match live.session.seal_message(msg, buf) {
            Ok(n) => Some((n, live.endpoint)),
            Err(e) => {
                tracing::warn!(device = live.session.device_id(), ?e, "cannot seal");
                None
            }
        }
    }

    /// Seals a message of an extension (PROTOCOL.md 17, 18: its own enum, not [`Message`]) of
    /// `len` bytes, written by `emit` (type byte and body), in the link's live session and sends
    /// it to the link's endpoint. `what` names it in the log if it cannot be sealed.
    pub(crate) fn send_extension(
        &self,
        link: &mut Link,
        len: usize,
        emit: impl FnOnce(&mut [u8]) -> bool,
        what: &dyn std::fmt::Debug,
    ) -> bool {
        let Some(live) = link.live.as_mut() else {
            return false;
        };
        let header = tek_proto::wire::data::HEADER_LEN;
        let mut buf = [0u8; tek_proto::MAX_DATAGRAM];
        let emitted = buf.get_mut(header..header + len).is_some_and(emit);
        match emitted.then(|| live.session.seal_in_place(&mut buf, len)) {
            Some(Ok(n)) => self.send_raw(&buf[..n], live.endpoint),
            _ => {
                tracing::warn!(device = live.session.device_id(), ?what, "cannot seal");
                false
            }
        }
    }

    pub(crate) fn send_raw(&self, bytes: &[u8], to: SocketAddr) -> bool {
        match self.socket.try_send_to(bytes, to) {
            Ok(_) => {
                self.metrics.sent();
                true
            }
            Err(e) => {
                tracing::debug!(%to, %e, "send failed");
                false
            }
        }
    }

    /// Sends the link's desired configuration: as ConfigChunks if it has a channel map
    /// (`udp/split.rs`), else as Config 0x82.
    pub(crate) fn send_config(&self, link: &mut Link) -> bool {
        let Some(d) = link.desired.as_ref() else {
            return false;
        };
        if d.assembled().is_some() {
            return self.send_split(link);
        }
        let version = d.version();
        // Saved configurations were validated; one that did not encode is never sent.
        let Some(stored) = d.items() else {
            return false;
        };
        // Copied out: sending borrows the link mutably (its session's counter).
        let mut items = [0u8; tek_proto::MAX_DATAGRAM];
        let Some(items) = items.get_mut(..stored.len()) else {
            return false;
        };
        items.copy_from_slice(stored);
        let Ok(config) = ConfigItems::parse(items) else {
            return false;
        };
        let sent = self.send(link, &Message::Config { version, config });
        if sent {
            self.metrics.config_sent();
        }
        sent
    }

    /// The socket loop. Returns when `stop` turns true.
    pub(crate) async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        self.udp_up.store(true, Ordering::Relaxed);
        // Twice the protocol maximum, so an oversized datagram is seen as such, not truncated
        // into an acceptable length.
        let mut buf = vec![0u8; 2 * tek_proto::MAX_DATAGRAM];
        loop {
            let (n, src) = tokio::select! {
                r = self.socket.recv_from(&mut buf) => match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::debug!(%e, "recv_from failed");
                        continue;
                    }
                },
                _ = crate::udp::stopped(&mut stop) => break,
            };
            self.metrics.received();
            self.handle(&mut buf[..n], src);
        }
        self.udp_up.store(false, Ordering::Relaxed);
    }

    fn handle(self: &Arc<Self>, datagram: &mut [u8], src: SocketAddr) {
        let kind = match Datagram::new_checked(&datagram[..]) {
            Ok(d) => d.kind(),
            Err(e) => return self.drop_datagram(wire_reason(e)),
        };
        match kind {
            Kind::Hello => self.on_hello(datagram, src),
            Kind::Data => self.on_data(datagram, src),
            Kind::Welcome | Kind::Unknown(_) => self.drop_datagram(DropReason::Kind),
        }
    }
}
