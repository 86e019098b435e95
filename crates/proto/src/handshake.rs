//! The handshake that opens every session: one Hello from the device, one Welcome back.
//!
//! ```text
//! device                                                     server
//!   | Hello {id, counter, nonce_d} CMAC(K_hs)                  |
//!   |--------------------------------------------------------->|  tag ok? counter > last accepted?
//!   |                                                          |  (atomic compare-and-set in the
//!   |                                                          |   shared database), rate limits
//!   |        Welcome {id, session, nonce_s, time} CMAC(K_hs, .. hello)
//!   |<---------------------------------------------------------|
//!   both: K_d2s, K_s2d = KDF(K_device, "tek d2s"/"tek s2d", id||session||counter||nonce_d||nonce_s)
//! ```
//!
//! The hello counter is what makes a captured Hello worthless: the server accepts a counter only
//! if it is above the last one it accepted for that device. The device never reuses one because
//! its high half is a boot counter kept in flash and its low half counts attempts since boot.
//! A captured Welcome is worthless because its tag covers the device's fresh nonce.
//!
//! Neither side keeps any state from a datagram that fails its checks.

use crate::crypto::{DeviceKeys, Key};
use crate::session::{Role, Session};
use crate::wire::{Hello, HelloRepr, Welcome, WelcomeRepr, WireError};

/// Why a handshake datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeError {
    /// Failed the length, version or kind check.
    Wire(WireError),
    /// Addressed to or from another device.
    WrongDevice,
    /// The tag did not verify.
    Auth,
    /// The session id is 0 (reserved).
    Range,
}

impl core::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            HandshakeError::Wire(e) => e.fmt(f),
            HandshakeError::WrongDevice => f.write_str("wrong device id"),
            HandshakeError::Auth => f.write_str("handshake authentication failed"),
            HandshakeError::Range => f.write_str("session id 0"),
        }
    }
}

/// The hello counter for attempt `attempt` of boot `boot`.
pub const fn hello_counter(boot: u32, attempt: u32) -> u64 {
    ((boot as u64) << 32) | attempt as u64
}

/// The device's side of a handshake in progress.
#[derive(Debug, Clone)]
pub struct Initiator {
    hello: HelloRepr,
}

impl Initiator {
    /// Writes a Hello into `out` and returns the pending handshake and the Hello's length.
    /// `counter` must be higher than any counter this device used before (see [`hello_counter`]);
    /// `nonce` must be fresh random bytes.
    pub fn start(
        keys: &DeviceKeys,
        device_id: u32,
        counter: u64,
        nonce: [u8; 16],
        out: &mut [u8],
    ) -> Option<(Initiator, usize)> {
        let hello = HelloRepr {
            device_id,
            counter,
            nonce,
        };
        let n = hello.emit(keys.handshake(), out)?;
        Some((Initiator { hello }, n))
    }

    /// The Hello this handshake sent.
    pub fn hello(&self) -> &HelloRepr {
        &self.hello
    }

    /// Checks a Welcome and, if it answers this Hello, derives the session.
    /// Returns the session and the server's clock (Unix seconds).
    pub fn finish(
        &self,
        keys: &DeviceKeys,
        datagram: &[u8],
    ) -> Result<(Session, u32), HandshakeError> {
        let welcome = Welcome::new_checked(datagram).map_err(HandshakeError::Wire)?;
        if welcome.device_id() != self.hello.device_id {
            return Err(HandshakeError::WrongDevice);
        }
        let transcript = transcript(&self.hello);
        if !welcome.verify(keys.handshake(), &transcript) {
            return Err(HandshakeError::Auth);
        }
        let w = WelcomeRepr::parse(&welcome);
        if w.session_id == 0 {
            return Err(HandshakeError::Range);
        }
        let session = Session::derive(
            Role::Device,
            keys.master(),
            w.device_id,
            w.session_id,
            self.hello.counter,
            &self.hello.nonce,
            &w.nonce,
        );
        Ok((session, w.server_time))
    }
}

fn transcript(hello: &HelloRepr) -> [u8; 24] {
    let mut t = [0u8; 24];
    t[..8].copy_from_slice(&hello.counter.to_be_bytes());
    t[8..].copy_from_slice(&hello.nonce);
    t
}

/// Server side, step 1: the device id a Hello claims, read before any crypto so the server can
/// look up the key (and drop Hellos of unknown devices cheaply).
pub fn hello_device_id(datagram: &[u8]) -> Result<u32, HandshakeError> {
    Hello::new_checked(datagram)
        .map(|h| h.device_id())
        .map_err(HandshakeError::Wire)
}

/// Server side, step 2: verifies a Hello under the device's keys. The caller must then check the
/// counter against the last accepted one before answering.
pub fn verify_hello(keys: &DeviceKeys, datagram: &[u8]) -> Result<HelloRepr, HandshakeError> {
    let hello = Hello::new_checked(datagram).map_err(HandshakeError::Wire)?;
    if !hello.verify(keys.handshake()) {
        return Err(HandshakeError::Auth);
    }
    Ok(HelloRepr::parse(&hello))
}

/// Server side, step 3: writes the Welcome for an accepted Hello and derives the session.
/// `session_id` must be non-zero and `server_nonce` fresh random bytes.
pub fn respond(
    keys: &DeviceKeys,
    hello: &HelloRepr,
    session_id: u32,
    server_nonce: [u8; 16],
    server_time: u32,
    out: &mut [u8],
) -> Option<(Session, usize)> {
    if session_id == 0 {
        return None;
    }
    let welcome = WelcomeRepr {
        device_id: hello.device_id,
        session_id,
        nonce: server_nonce,
        server_time,
    };
    let n = welcome.emit(keys.handshake(), &transcript(hello), out)?;
    let session = Session::derive(
        Role::Server,
        keys.master(),
        hello.device_id,
        session_id,
        hello.counter,
        &hello.nonce,
        &server_nonce,
    );
    Some((session, n))
}

/// Convenience for tests and tools: the keys of a device from its 16 raw bytes.
pub fn device_keys(key: [u8; 16]) -> DeviceKeys {
    DeviceKeys::new(Key(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;

    #[test]
    fn full_handshake_then_data() {
        let keys = device_keys([0x11; 16]);
        let mut hello = [0u8; 64];
        let (init, n) =
            Initiator::start(&keys, 42, hello_counter(3, 1), [0xAA; 16], &mut hello).unwrap();
        assert_eq!(n, 46);
        assert_eq!(hello_device_id(&hello[..n]), Ok(42));
        let h = verify_hello(&keys, &hello[..n]).unwrap();
        assert_eq!(h.counter, (3 << 32) | 1);
        let mut welcome = [0u8; 64];
        let (mut srv, wn) = respond(
            &keys,
            &h,
            0x0102_0304,
            [0xBB; 16],
            1_764_000_000,
            &mut welcome,
        )
        .unwrap();
        assert!(wn <= n, "no amplification");
        let (mut dev, time) = init.finish(&keys, &welcome[..wn]).unwrap();
        assert_eq!(time, 1_764_000_000);
        let mut buf = [0u8; 128];
        let m = Message::Pong { server_time: 5 };
        let len = srv.seal_message(&m, &mut buf).unwrap();
        assert_eq!(dev.open_message(&mut buf[..len]).unwrap(), m);
    }

    #[test]
    fn handshake_drops() {
        let keys = device_keys([0x11; 16]);
        let other = device_keys([0x12; 16]);
        let mut hello = [0u8; 46];
        let (init, _) = Initiator::start(&keys, 42, 7, [1; 16], &mut hello).unwrap();
        assert_eq!(verify_hello(&other, &hello), Err(HandshakeError::Auth));
        let mut bad = hello;
        bad[10] ^= 1;
        assert_eq!(verify_hello(&keys, &bad), Err(HandshakeError::Auth));
        assert_eq!(
            verify_hello(&keys, &hello[..45]),
            Err(HandshakeError::Wire(WireError::Length))
        );

        let h = verify_hello(&keys, &hello).unwrap();
        let mut welcome = [0u8; 46];
        respond(&keys, &h, 9, [2; 16], 0, &mut welcome).unwrap();
        // A Welcome for another Hello (a replayed one) does not verify.
        let mut hello2 = [0u8; 46];
        let (init2, _) = Initiator::start(&keys, 42, 8, [3; 16], &mut hello2).unwrap();
        assert_eq!(
            init2.finish(&keys, &welcome).err(),
            Some(HandshakeError::Auth)
        );
        // Wrong device id.
        let mut w = welcome;
        w[5] ^= 1;
        assert_eq!(
            init.finish(&keys, &w).err(),
            Some(HandshakeError::WrongDevice)
        );
        // Session id 0 is refused by the responder.
        assert!(respond(&keys, &h, 0, [2; 16], 0, &mut welcome).is_none());
        // ... and by the initiator, even when the tag is right.
        let zero = WelcomeRepr {
            device_id: 42,
            session_id: 0,
            nonce: [2; 16],
            server_time: 0,
        };
        zero.emit(keys.handshake(), &transcript(init.hello()), &mut welcome)
            .unwrap();
        assert_eq!(
            init.finish(&keys, &welcome).err(),
            Some(HandshakeError::Range)
        );
    }
}
