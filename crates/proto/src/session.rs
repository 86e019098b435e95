//! An established session: the two derived keys, the send counter and the receive window.
//!
//! Sealing writes header, encrypted message and tag into one buffer. Opening runs the checks in
//! the order that costs an attacker the most and us the least: length, version and kind; device
//! and session id; the replay window; only then the AEAD; and only after the AEAD accepted the
//! datagram is the window moved.

use crate::crypto::{self, Key, TAG_LEN};
use crate::message::{Message, MessageError};
use crate::replay::ReplayWindow;
use crate::wire::data::{self, DataPacket, Direction, HEADER_LEN, MAX_MESSAGE, MIN_MESSAGE};
use crate::wire::WireError;

/// Which end of the session this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The controller.
    Device,
    /// The server.
    Server,
}

/// Why a received session datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    /// Failed the length, version or kind check.
    Wire(WireError),
    /// Carries another device id.
    WrongDevice,
    /// Carries another session id (an old or foreign session).
    StaleSession,
    /// Counter already seen or too old.
    Replay,
    /// The AEAD tag did not verify.
    Auth,
}

impl core::fmt::Display for OpenError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            OpenError::Wire(e) => e.fmt(f),
            OpenError::WrongDevice => f.write_str("wrong device id"),
            OpenError::StaleSession => f.write_str("unknown or stale session"),
            OpenError::Replay => f.write_str("replayed counter"),
            OpenError::Auth => f.write_str("authentication failed"),
        }
    }
}

/// Why a message could not be sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealError {
    /// The message does not fit in one datagram, is shorter than the protocol minimum, or the
    /// output buffer is too small.
    Size,
    /// The send counter is used up: start a new session.
    CounterExhausted,
}

/// Send counters stop here, well before they could wrap; the device starts a new session long
/// before (PROTOCOL.md: rekey after 24 h or 2^31 datagrams). The receiver refuses the same
/// counters ([`crate::replay::FIRST_UNUSABLE`]).
pub const COUNTER_LIMIT: u32 = crate::replay::FIRST_UNUSABLE;

/// One side of an established session.
#[derive(Clone)]
pub struct Session {
    role: Role,
    device_id: u32,
    session_id: u32,
    send_key: Key,
    recv_key: Key,
    send_counter: u32,
    window: ReplayWindow,
}

impl core::fmt::Debug for Session {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Session")
            .field("role", &self.role)
            .field("device_id", &self.device_id)
            .field("session_id", &self.session_id)
            .field("send_counter", &self.send_counter)
            .finish_non_exhaustive()
    }
}

/// The KDF context of a session: `device id || session id || hello counter || device nonce ||
/// server nonce` (48 bytes).
pub fn key_context(
    device_id: u32,
    session_id: u32,
    hello_counter: u64,
    device_nonce: &[u8; 16],
    server_nonce: &[u8; 16],
) -> [u8; 48] {
    let mut ctx = [0u8; 48];
    ctx[0..4].copy_from_slice(&device_id.to_be_bytes());
    ctx[4..8].copy_from_slice(&session_id.to_be_bytes());
    ctx[8..16].copy_from_slice(&hello_counter.to_be_bytes());
    ctx[16..32].copy_from_slice(device_nonce);
    ctx[32..48].copy_from_slice(server_nonce);
    ctx
}

impl Session {
    /// Derives the session keys from the device key and the handshake values.
    pub fn derive(
        role: Role,
        device_key: &Key,
        device_id: u32,
        session_id: u32,
        hello_counter: u64,
        device_nonce: &[u8; 16],
        server_nonce: &[u8; 16],
    ) -> Session {
        let ctx = key_context(
            device_id,
            session_id,
            hello_counter,
            device_nonce,
            server_nonce,
        );
        let d2s = crypto::kdf(device_key, crypto::LABEL_D2S, &ctx);
        let s2d = crypto::kdf(device_key, crypto::LABEL_S2D, &ctx);
        let (send_key, recv_key) = match role {
            Role::Device => (d2s, s2d),
            Role::Server => (s2d, d2s),
        };
        Session {
            role,
            device_id,
            session_id,
            send_key,
            recv_key,
            send_counter: 0,
            window: ReplayWindow::new(),
        }
    }

    /// The device this session belongs to.
    pub fn device_id(&self) -> u32 {
        self.device_id
    }

    /// The session id the server chose.
    pub fn session_id(&self) -> u32 {
        self.session_id
    }

    /// The counter the next sealed datagram will carry.
    pub fn send_counter(&self) -> u32 {
        self.send_counter
    }

    /// The highest counter received so far.
    pub fn highest_received(&self) -> Option<u32> {
        self.window.highest()
    }

    fn directions(&self) -> (Direction, Direction) {
        match self.role {
            Role::Device => (Direction::DeviceToServer, Direction::ServerToDevice),
            Role::Server => (Direction::ServerToDevice, Direction::DeviceToServer),
        }
    }

    /// Seals `message` into `out` as one datagram. Returns the datagram's length.
    pub fn seal_message(
        &mut self,
        message: &Message<'_>,
        out: &mut [u8],
    ) -> Result<usize, SealError> {
        let len = message.buffer_len();
        let body = out
            .get_mut(HEADER_LEN..HEADER_LEN + len)
            .ok_or(SealError::Size)?;
        message.emit(body).map_err(|_| SealError::Size)?;
        self.seal_in_place(out, len)
    }

    /// Seals a message the caller already wrote at `buf[14..14 + len]` (so a device can build a
    /// telemetry batch straight into its send buffer). Returns the datagram's length.
    pub fn seal_in_place(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SealError> {
        if !(MIN_MESSAGE..=MAX_MESSAGE).contains(&len) || buf.len() < HEADER_LEN + len + TAG_LEN {
            return Err(SealError::Size);
        }
        if self.send_counter >= COUNTER_LIMIT {
            return Err(SealError::CounterExhausted);
        }
        let counter = self.send_counter;
        data::emit_header(buf, self.device_id, self.session_id, counter);
        let nonce = data::nonce(
            self.device_id,
            self.session_id,
            self.directions().0,
            counter,
        );
        let (header, rest) = buf.split_at_mut(HEADER_LEN);
        let tag = crypto::seal(&self.send_key, &nonce, header, &mut rest[..len])
            .map_err(|_| SealError::Size)?;
        rest[len..len + TAG_LEN].copy_from_slice(&tag);
        self.send_counter += 1;
        Ok(HEADER_LEN + len + TAG_LEN)
    }

    /// Authenticates and decrypts a datagram in place; returns the message bytes (a slice of
    /// `datagram`). On any error nothing in the session changed and the datagram must be dropped.
    pub fn open<'a>(&mut self, datagram: &'a mut [u8]) -> Result<&'a [u8], OpenError> {
        let mut packet = DataPacket::new_checked(&mut datagram[..]).map_err(OpenError::Wire)?;
        if packet.device_id() != self.device_id {
            return Err(OpenError::WrongDevice);
        }
        if packet.session_id() != self.session_id {
            return Err(OpenError::StaleSession);
        }
        let counter = packet.counter();
        self.window.check(counter).map_err(|_| OpenError::Replay)?;
        let nonce = packet.nonce(self.directions().1);
        let (header, body, tag) = packet.split_mut();
        crypto::open(&self.recv_key, &nonce, header, body, &tag).map_err(|_| OpenError::Auth)?;
        // Only an authentic datagram moves the window.
        self.window.update(counter).map_err(|_| OpenError::Replay)?;
        let end = datagram.len() - TAG_LEN;
        Ok(&datagram[HEADER_LEN..end])
    }

    /// [`open`](Self::open) followed by [`Message::parse`]. A datagram whose message does not
    /// parse was still authentic, so the window has moved: that is what stops it being replayed.
    pub fn open_message<'a>(
        &mut self,
        datagram: &'a mut [u8],
    ) -> Result<Message<'a>, ReceiveError> {
        let bytes = self.open(datagram).map_err(ReceiveError::Open)?;
        Message::parse(bytes).map_err(ReceiveError::Message)
    }
}

/// Why a received datagram produced no message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiveError {
    /// The datagram itself was refused.
    Open(OpenError),
    /// It was authentic, but its message is malformed or out of range.
    Message(MessageError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Session, Session) {
        let key = Key([9; 16]);
        let dn = [1; 16];
        let sn = [2; 16];
        (
            Session::derive(Role::Device, &key, 77, 5, 1 << 32, &dn, &sn),
            Session::derive(Role::Server, &key, 77, 5, 1 << 32, &dn, &sn),
        )
    }

    #[test]
    fn both_directions_and_silent_drops() {
        let (mut dev, mut srv) = pair();
        let mut buf = [0u8; 1024];
        let ka = Message::Keepalive {
            reply_wanted: true,
            config_version: 3,
        };
        let n = dev.seal_message(&ka, &mut buf).unwrap();
        assert_eq!(n, 14 + 6 + 8);
        let captured: std::vec::Vec<u8> = buf[..n].to_vec();
        assert_eq!(srv.open_message(&mut buf[..n]).unwrap(), ka);

        // Replay of the same bytes.
        let mut again = captured.clone();
        assert_eq!(srv.open(&mut again), Err(OpenError::Replay));

        // Reflection: the server's own send key does not open device datagrams and vice versa.
        let mut reflected = captured.clone();
        assert_eq!(dev.open(&mut reflected), Err(OpenError::Auth));

        // Bad tag, wrong device, stale session, too short, too long.
        let mut next = [0u8; 64];
        let n = dev.seal_message(&ka, &mut next).unwrap();
        let mut bad = next[..n].to_vec();
        bad[n - 1] ^= 1;
        assert_eq!(srv.open(&mut bad), Err(OpenError::Auth));
        let mut bad = next[..n].to_vec();
        bad[5] ^= 1;
        assert_eq!(srv.open(&mut bad), Err(OpenError::WrongDevice));
        let mut bad = next[..n].to_vec();
        bad[9] ^= 1;
        assert_eq!(srv.open(&mut bad), Err(OpenError::StaleSession));
        assert_eq!(
            srv.open(&mut [1u8, 3, 0, 0, 0, 77, 0, 0][..]),
            Err(OpenError::Wire(WireError::Length))
        );
        assert_eq!(
            srv.open(&mut [0u8; 1025][..]),
            Err(OpenError::Wire(WireError::Length))
        );

        // A forged datagram did not move the window: the genuine one is still accepted.
        let mut good = next[..n].to_vec();
        assert!(srv.open(&mut good).is_ok());

        // Server to device.
        let pong = Message::Pong {
            server_time: 1_700_000_000,
        };
        let n = srv.seal_message(&pong, &mut buf).unwrap();
        assert_eq!(dev.open_message(&mut buf[..n]).unwrap(), pong);
    }

    #[test]
    fn out_of_order_within_window() {
        let (mut dev, mut srv) = pair();
        let mut sealed = std::vec::Vec::new();
        for i in 0..10 {
            let mut buf = [0u8; 64];
            let n = dev
                .seal_message(
                    &Message::Keepalive {
                        reply_wanted: false,
                        config_version: i,
                    },
                    &mut buf,
                )
                .unwrap();
            sealed.push(buf[..n].to_vec());
        }
        for mut d in sealed.into_iter().rev() {
            assert!(srv.open(&mut d).is_ok());
        }
    }

    #[test]
    fn authentic_but_malformed_is_refused_and_not_replayable() {
        let (mut dev, mut srv) = pair();
        let mut buf = [0u8; 64];
        buf[14] = 0x03; // ConfigAck with a bad result code
        buf[15..20].copy_from_slice(&[0, 0, 0, 1, 9]);
        let n = dev.seal_in_place(&mut buf, 6).unwrap();
        let copy = buf[..n].to_vec();
        assert_eq!(
            srv.open_message(&mut buf[..n]),
            Err(ReceiveError::Message(MessageError::Range))
        );
        let mut replay = copy;
        assert_eq!(
            srv.open_message(&mut replay),
            Err(ReceiveError::Open(OpenError::Replay))
        );
    }

    #[test]
    fn seal_size_limits() {
        let (mut dev, _) = pair();
        let mut buf = [0u8; 1100];
        assert_eq!(dev.seal_in_place(&mut buf, 1), Err(SealError::Size));
        assert_eq!(
            dev.seal_in_place(&mut buf, MAX_MESSAGE + 1),
            Err(SealError::Size)
        );
        assert_eq!(dev.seal_in_place(&mut buf, MAX_MESSAGE), Ok(1024));
        assert_eq!(dev.seal_in_place(&mut buf[..100], 90), Err(SealError::Size));
    }
}
