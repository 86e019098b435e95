//! A small controller stand-in built on tek-proto, and helpers to run a server in-process.
#![allow(dead_code)]

pub mod broker;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tek_proto::crypto::{DeviceKeys, Key};
use tek_proto::handshake::{hello_counter, Initiator};
use tek_proto::message::status::{Radio, Traffic, Transport};
use tek_proto::message::{Command, Config, Message, Status, TelemetryWriter};
use tek_proto::session::Session;
use tek_server::storage::Storage;
use tek_server::{Config as ServerConfig, Server, ServerHandle};
use tokio::net::UdpSocket;

/// Short enough to keep the suite fast, long enough for a loaded CI machine to answer.
pub const QUIET: Duration = Duration::from_millis(300);
pub const WAIT: Duration = Duration::from_secs(3);

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub server: ServerHandle,
}

pub async fn start(tweak: impl FnOnce(&mut ServerConfig)) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ServerConfig::for_tests(dir.path());
    tweak(&mut cfg);
    let server = Server::start(cfg).await.unwrap();
    Harness { dir, server }
}

pub async fn start_with_storage(
    tweak: impl FnOnce(&mut ServerConfig),
    storage: Arc<dyn Storage>,
) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ServerConfig::for_tests(dir.path());
    tweak(&mut cfg);
    let server = Server::start_with(cfg, Some(storage), |_| axum::Router::new())
        .await
        .unwrap();
    Harness { dir, server }
}

/// A server on a throwaway PostgreSQL cluster (`storage::postgres::testing`). `None` (and a
/// loud message) where PostgreSQL cannot start, except in CI, where that fails the test.
pub async fn start_postgres() -> Option<Harness> {
    let db = tek_server::storage::postgres::testing::database()?;
    let storage: Arc<dyn Storage> = db.db.into_arc();
    Some(start_with_storage(|_| {}, storage).await)
}

/// `on_both_backends!(check, ...)`: for each `async fn check(h: Harness)`, a module `check`
/// with the tests `check::sqlite` and `check::postgres`, running it on a server of that backend
/// ([`start`], [`start_postgres`]).
#[allow(unused_macros)]
macro_rules! on_both_backends {
    ($($check:ident),* $(,)?) => {$(
        mod $check {
            #[tokio::test]
            async fn sqlite() {
                super::$check(super::start(|_| {}).await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(h) = super::start_postgres().await {
                    super::$check(h).await;
                }
            }
        }
    )*};
}
#[allow(unused_imports)]
pub(crate) use on_both_backends;

/// Every wide record (PROTOCOL.md 17.5) device `id` has stored, oldest first.
pub fn wide_records(db: &dyn Storage, id: u32) -> Vec<tek_server::storage::WideRow> {
    db.wide_records(&tek_server::storage::TelemetryQuery {
        device_id: id,
        from: 0,
        to: i64::MAX,
        limit: 1000,
    })
    .unwrap()
}

/// Creates device `id` in the server's database and returns its key.
pub fn provision(storage: &dyn Storage, id: u32) -> Key {
    let fleet = tek_server::provision::provision(storage, Some(id), 1, "t", 0).unwrap();
    fleet.device[0].key().unwrap()
}

impl Harness {
    pub fn storage(&self) -> Arc<dyn Storage> {
        self.server.api().storage_handle()
    }

    pub async fn device(&self, id: u32) -> TestDevice {
        let key = provision(&*self.storage(), id);
        TestDevice::new(id, key, self.server.udp_addr()).await
    }

    pub async fn metric(&self, series: &str) -> f64 {
        let (code, body) = http_get(self.server.http_addr(), "/metrics").await;
        assert_eq!(code, 200);
        tek_server::metrics::sample(&body, series).unwrap_or_else(|| panic!("no {series}"))
    }

    pub async fn drops(&self, reason: &str) -> f64 {
        self.metric(&format!(
            "tek_datagrams_dropped_total{{reason=\"{reason}\"}}"
        ))
        .await
    }
}

/// What a device received, owned.
#[derive(Debug, Clone, PartialEq)]
pub enum Got {
    Ack { through_seq: u32 },
    Config { version: u32, config: Box<Config> },
    Command { id: u32, command: Command },
    Pong,
    Other,
}

pub struct TestDevice {
    pub id: u32,
    pub keys: DeviceKeys,
    pub sock: UdpSocket,
    pub server: SocketAddr,
    pub boot: u32,
    pub attempt: u32,
    pub session: Option<Session>,
    /// Counter and device nonce of the latest Hello.
    pub last_hello: (u64, [u8; 16]),
    /// `K_d2s` and session id of the current session, to seal with any counter
    /// ([`seal_with_counter`](Self::seal_with_counter)).
    pub d2s: Option<(Key, u32)>,
}

impl TestDevice {
    pub async fn new(id: u32, key: Key, server: SocketAddr) -> TestDevice {
        TestDevice {
            id,
            keys: DeviceKeys::new(key),
            sock: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            server,
            boot: 1,
            attempt: 0,
            session: None,
            last_hello: (0, [0; 16]),
            d2s: None,
        }
    }

    /// A new device socket (a new attempt from a new port).
    pub async fn new_port(&mut self) {
        self.sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.sock.local_addr().unwrap()
    }

    /// The next Hello (new counter) and its initiator.
    pub fn hello(&mut self) -> (Initiator, Vec<u8>) {
        self.attempt += 1;
        let mut nonce = [0u8; 16];
        nonce[..4].copy_from_slice(&self.attempt.to_be_bytes());
        nonce[4..8].copy_from_slice(&self.boot.to_be_bytes());
        let mut buf = [0u8; 46];
        let counter = hello_counter(self.boot, self.attempt);
        self.last_hello = (counter, nonce);
        let (init, n) = Initiator::start(&self.keys, self.id, counter, nonce, &mut buf).unwrap();
        (init, buf[..n].to_vec())
    }

    /// Sends a Hello and completes the handshake; panics if no Welcome comes.
    pub async fn handshake(&mut self) -> u32 {
        let (init, hello) = self.hello();
        self.send_raw(&hello).await;
        // Skip anything of the old session still arriving on this port.
        let bytes = loop {
            let b = self.recv_raw(WAIT).await.expect("no Welcome");
            if b.len() == 46 && b[1] == 2 {
                break b;
            }
        };
        let (session, time) = init.finish(&self.keys, &bytes).expect("bad Welcome");
        let session_id = session.session_id();
        let server_nonce: [u8; 16] = bytes[10..26].try_into().unwrap();
        let ctx = tek_proto::session::key_context(
            self.id,
            session_id,
            self.last_hello.0,
            &self.last_hello.1,
            &server_nonce,
        );
        let d2s = tek_proto::crypto::kdf(self.keys.master(), tek_proto::crypto::LABEL_D2S, &ctx);
        self.d2s = Some((d2s, session_id));
        self.session = Some(session);
        time
    }

    /// Seals `msg` in the current session with `counter`, which a real device would never
    /// choose (the session's own counter does not move): for testing the receiver's counter
    /// rules.
    pub fn seal_with_counter(&self, msg: &Message<'_>, counter: u32) -> Vec<u8> {
        use tek_proto::wire::data::{self, Direction};
        let (key, session_id) = self.d2s.clone().expect("no session");
        let mut body = [0u8; 1002];
        let len = msg.emit(&mut body).unwrap();
        let mut out = vec![0u8; 14 + len + 8];
        data::emit_header(&mut out, self.id, session_id, counter);
        out[14..14 + len].copy_from_slice(&body[..len]);
        let nonce = data::nonce(self.id, session_id, Direction::DeviceToServer, counter);
        let (header, rest) = out.split_at_mut(14);
        let tag = tek_proto::crypto::seal(&key, &nonce, header, &mut rest[..len]).unwrap();
        rest[len..].copy_from_slice(&tag);
        out
    }

    pub async fn send_raw(&self, bytes: &[u8]) {
        self.sock.send_to(bytes, self.server).await.unwrap();
    }

    pub async fn recv_raw(&self, timeout: Duration) -> Option<Vec<u8>> {
        let mut buf = [0u8; 2048];
        match tokio::time::timeout(timeout, self.sock.recv_from(&mut buf)).await {
            Ok(Ok((n, _))) => Some(buf[..n].to_vec()),
            _ => None,
        }
    }

    /// Seals a message in the session without sending it.
    pub fn seal(&mut self, msg: &Message<'_>) -> Vec<u8> {
        let mut buf = [0u8; 1024];
        let n = self
            .session
            .as_mut()
            .unwrap()
            .seal_message(msg, &mut buf)
            .unwrap();
        buf[..n].to_vec()
    }

    /// Seals raw message bytes (possibly malformed) without sending them.
    pub fn seal_bytes(&mut self, body: &[u8]) -> Vec<u8> {
        let mut buf = [0u8; 1024];
        buf[14..14 + body.len()].copy_from_slice(body);
        let n = self
            .session
            .as_mut()
            .unwrap()
            .seal_in_place(&mut buf, body.len())
            .unwrap();
        buf[..n].to_vec()
    }

    pub async fn send(&mut self, msg: &Message<'_>) -> Vec<u8> {
        let bytes = self.seal(msg);
        self.send_raw(&bytes).await;
        bytes
    }

    /// Receives and opens one message; `None` on timeout. Undecryptable datagrams are `Other`.
    pub async fn recv(&mut self, timeout: Duration) -> Option<Got> {
        let mut bytes = self.recv_raw(timeout).await?;
        let session = self.session.as_mut()?;
        Some(match session.open_message(&mut bytes) {
            Ok(Message::Ack { through_seq, .. }) => Got::Ack { through_seq },
            Ok(Message::Config { version, config }) => Got::Config {
                version,
                config: Box::new(config.to_config()),
            },
            Ok(Message::Command { id, command }) => Got::Command { id, command },
            Ok(Message::Pong { .. }) => Got::Pong,
            _ => Got::Other,
        })
    }

    /// Receives until `want` matches (other messages are skipped) or the time is up.
    pub async fn recv_until(
        &mut self,
        timeout: Duration,
        want: impl Fn(&Got) -> bool,
    ) -> Option<Got> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let got = self.recv(left).await?;
            if want(&got) {
                return Some(got);
            }
        }
    }

    /// A telemetry batch of records `first..first + n` (ages 60 s apart, newest 10 s old).
    pub fn telemetry(&self, first: u32, n: u32) -> Vec<u8> {
        let mut body = [0u8; 1002];
        let now = 100_000u32;
        let mut w = TelemetryWriter::new(&mut body, first, 0b1_1111, now).unwrap();
        for i in 0..n {
            let seq = first + i;
            let t = now - 10 - 60 * (n - 1 - i);
            assert!(w.push(
                t,
                &[1000 + seq as i32, 5000 + seq as i32, 2650, 1800, 1, 0, 0, 0]
            ));
        }
        let len = w.len();
        let mut msg = vec![tek_proto::message::code::TELEMETRY];
        msg.extend_from_slice(&body[..len]);
        msg
    }

    /// Seals and sends a telemetry batch; returns the sealed datagram.
    pub async fn send_telemetry(&mut self, first: u32, n: u32) -> Vec<u8> {
        let body = self.telemetry(first, n);
        let bytes = self.seal_bytes(&body);
        self.send_raw(&bytes).await;
        bytes
    }

    pub fn status(config_version: u32, uptime_s: u32) -> Status {
        Status {
            transport: Transport::Ethernet,
            flags: 1,
            ip: [192, 168, 1, 50],
            netmask: [255, 255, 255, 0],
            gateway: [192, 168, 1, 1],
            dns: [192, 168, 1, 1],
            uptime_s,
            firmware: [0, 1, 0],
            config_version,
            log_drops: 0,
            log_backlog: 0,
            traffic: Traffic {
                eth_tx: 1000,
                eth_rx: 800,
                gsm_tx: 0,
                gsm_rx: 0,
            },
            gsm_signal: 99,
            radio: Radio::Off,
            relays: 1,
            server_index: 0,
        }
    }
}

/// A minimal HTTP/1.1 GET (the suite needs no HTTP client dependency for two endpoints).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |b| b.1).to_owned();
    (code, body)
}

/// Polls `f` until it is true or the time is up.
pub async fn eventually(timeout: Duration, mut f: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if f().await {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
