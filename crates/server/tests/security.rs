//! Security and reliability properties of the UDP server that docs/SECURITY.md relies on and
//! that no other suite covers: rebinding (a device whose NAT mapping changed is reached again at
//! once on its next datagram).

mod common;

use common::{start, Got, WAIT};
use std::time::Duration;
use tek_proto::message::{Config, Message};

/// A device behind a NAT that forgot its mapping reappears from a new address. Whatever the
/// server sent in between went to the old address; it must re-send to the new one as soon as
/// the device is heard from there, not after its back-off (here a minute): that is what makes a
/// configuration arrive within one keepalive interval after a NAT rebinding (tests/nat.rs of
/// the `tek` crate shows it through two real netfilter NATs).
#[tokio::test]
async fn rebinding_resends_at_once_to_the_new_address() {
    let h = start(|c| {
        c.push.retry_initial_ms = 60_000;
        c.push.retry_max_ms = 60_000;
    })
    .await;
    let api = h.server.api().clone();
    let mut d = h.device(5).await;
    d.handshake().await;
    d.send(&Message::Keepalive {
        reply_wanted: false,
        config_version: 0,
    })
    .await;
    let cfg = Config {
        log_interval_s: 30,
        ..Config::default()
    };
    assert_eq!(api.save_config(5, cfg).await.unwrap(), 1);
    // The first send reaches the old address (the NAT mapping is still there) ...
    assert!(matches!(
        d.recv(WAIT).await,
        Some(Got::Config { version: 1, .. })
    ));
    // ... then the mapping is gone: the device's next keepalive comes from another port.
    let old = d.local_addr();
    d.new_port().await;
    assert_ne!(old, d.local_addr());
    d.send(&Message::Keepalive {
        reply_wanted: false,
        config_version: 0,
    })
    .await;
    assert!(matches!(
        d.recv(Duration::from_secs(1)).await,
        Some(Got::Config { version: 1, .. })
    ));
    // A datagram from the same address again does not re-send (the back-off holds).
    d.send(&Message::Keepalive {
        reply_wanted: false,
        config_version: 0,
    })
    .await;
    assert_eq!(d.recv(Duration::from_millis(500)).await, None);
    h.server.shutdown().await;
}

/// The per-source-address Hello limit (`limits.hello_ip_burst`, `limits.hello_ip_per_s`) runs
/// before any cryptography: one address cannot make the server compute more CMACs than the
/// limit, whichever device ids it names.
#[tokio::test]
async fn hello_rate_limit_per_source_address() {
    let h = start(|c| {
        c.limits.hello_ip_burst = 3;
        c.limits.hello_ip_per_s = 1;
    })
    .await;
    let mut devices = Vec::new();
    for id in 1..=5 {
        devices.push(h.device(id).await);
    }
    // Five devices behind one address (127.0.0.1), each sending one genuine Hello at once.
    let mut welcomed = 0;
    for d in &mut devices {
        let (_, hello) = d.hello();
        d.send_raw(&hello).await;
        if d.recv_raw(Duration::from_millis(500)).await.is_some() {
            welcomed += 1;
        }
    }
    assert_eq!(welcomed, 3);
    assert_eq!(h.drops("rate_limit").await, 2.0);
    h.server.shutdown().await;
}

/// The session table is bounded (`sessions.max`): a Hello from a device without a session
/// is refused (`rate_limit`; the device goes on to its next server) when the table is full,
/// while devices holding a session keep it and may even rekey.
#[tokio::test]
async fn session_table_is_bounded() {
    let h = start(|c| c.sessions.max = 2).await;
    let mut a = h.device(1).await;
    let mut b = h.device(2).await;
    let mut c = h.device(3).await;
    a.handshake().await;
    b.handshake().await;
    let (_, hello) = c.hello();
    c.send_raw(&hello).await;
    assert_eq!(c.recv_raw(Duration::from_millis(500)).await, None);
    assert_eq!(h.drops("rate_limit").await, 1.0);
    // A device that has a session may replace it (a rekey) while the table is full.
    a.handshake().await;
    a.send(&Message::Keepalive {
        reply_wanted: true,
        config_version: 0,
    })
    .await;
    assert_eq!(a.recv(WAIT).await, Some(Got::Pong));
    h.server.shutdown().await;
}

/// Reads whatever the server sends until it closes the connection (or `limit` passes).
async fn read_to_close(s: &mut tokio::net::TcpStream, limit: Duration) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut all = Vec::new();
    let r = tokio::time::timeout(limit, s.read_to_end(&mut all)).await;
    r.ok().map(|_| String::from_utf8_lossy(&all).into_owned())
}

async fn healthz(addr: std::net::SocketAddr) -> Option<String> {
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    read_to_close(&mut s, Duration::from_secs(10)).await
}

/// The HTTP connection bound (`http_connections.max`): connections beyond it are answered 503
/// and closed at once; a connection that closes frees its place; silent connections are closed
/// after `http_connections.idle_timeout_s`, so they cannot hold the places forever.
#[tokio::test]
async fn http_connections_are_bounded_and_idle_ones_closed() {
    let h = start(|c| {
        c.http_connections.max = 4;
        c.http_connections.idle_timeout_s = 2;
    })
    .await;
    let addr = h.server.http_addr();
    assert!(healthz(addr).await.unwrap().starts_with("HTTP/1.1 200"));
    // Four silent connections take every place ...
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    // ... (the server accepts them asynchronously: wait until a fifth one is refused) ...
    let start = std::time::Instant::now();
    let refused = loop {
        let got = healthz(addr).await.unwrap_or_default();
        if got.starts_with("HTTP/1.1 503") {
            break got;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "not refused: {got}"
        );
    };
    assert!(refused.contains("too many HTTP connections"), "{refused}");
    // ... one closes: its place is free again.
    drop(held.pop());
    let start = std::time::Instant::now();
    loop {
        if healthz(addr)
            .await
            .unwrap_or_default()
            .starts_with("HTTP/1.1 200")
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the place was not freed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The silent ones are closed by the server after the idle timeout (2 s).
    for s in &mut held {
        let got = read_to_close(s, Duration::from_secs(20)).await;
        assert_eq!(got.as_deref(), Some(""), "closed without an answer");
    }
    assert!(healthz(addr).await.unwrap().starts_with("HTTP/1.1 200"));
    let (_, metrics) = common::http_get(addr, "/metrics").await;
    let refused: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("tek_http_connections_refused_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    assert!(refused >= 1, "{refused}");
}

/// A request trickled a byte at a time never goes idle, so the idle timeout alone would let it
/// hold its place forever: `http_connections.request_timeout_s` closes it when its answer has
/// not begun that long after its first byte. A request sent at once is answered as before.
#[tokio::test]
async fn trickled_requests_are_closed_after_the_request_timeout() {
    use tokio::io::AsyncWriteExt;
    let h = start(|c| {
        c.http_connections.idle_timeout_s = 5;
        c.http_connections.request_timeout_s = 2;
    })
    .await;
    let addr = h.server.http_addr();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let started = std::time::Instant::now();
    // One header byte every 200 ms: never idle for 5 s, and never a complete request.
    let trickle =
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut closed_after = None;
    for b in trickle.iter().cycle().take(100) {
        if s.write_all(&[*b]).await.is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        // The server closing shows as a read of 0 bytes (or a reset) without an answer.
        let mut probe = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(1), s.peek(&mut probe)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed_after = Some(started.elapsed());
                break;
            }
            Ok(Ok(n)) => panic!("answered: {:?}", String::from_utf8_lossy(&probe[..n])),
            Err(_) => {}
        }
    }
    let closed_after = closed_after.expect("the trickling connection was never closed");
    assert!(
        closed_after >= Duration::from_millis(1900) && closed_after < Duration::from_secs(5),
        "closed after {closed_after:?}, expected about 2 s (the request timeout, not the idle one)"
    );
    // A normal request on a new connection is unaffected.
    assert!(healthz(addr).await.unwrap().starts_with("HTTP/1.1 200"));
}

/// A command that could not be delivered within 10 minutes expires (PROTOCOL.md 11.3): one
/// queued 601 s ago (by another server, say, while the device was away) is never sent; a fresh
/// one is. The database side (the bound, the *expired* state) is in `storage::suite`.
#[tokio::test]
async fn commands_older_than_ten_minutes_are_never_sent() {
    use tek_proto::message::Command;
    let h = start(|c| c.push.poll_interval_ms = 100).await;
    let api = h.server.api().clone();
    let mut d = h.device(5).await;
    d.handshake().await;
    d.send(&Message::Keepalive {
        reply_wanted: false,
        config_version: 0,
    })
    .await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let storage = api.storage_handle();
    let old =
        tokio::task::spawn_blocking(move || storage.queue_command(5, &Command::Reboot, now - 601))
            .await
            .unwrap()
            .unwrap();
    // The change feed brings it to the server within 100 ms; it is not sent.
    loop {
        match d.recv(Duration::from_secs(2)).await {
            None => break,
            Some(Got::Command { id, .. }) => panic!("command {id} sent (the old one is {old})"),
            Some(_) => {}
        }
    }
    let id = api.queue_command(5, Command::SendStatus).await.unwrap();
    let got = d.recv(WAIT).await;
    assert!(
        matches!(got, Some(Got::Command { id: x, command: Command::SendStatus }) if x == id),
        "{got:?}"
    );
}
