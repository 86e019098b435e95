//! A real PPP client — `ppproto`, the crate the firmware runs — dials the emulator over its
//! serial socket, negotiates LCP and IPCP, and exchanges UDP with a server on loopback through
//! the relay. Also: PAP with the right and the wrong password, and the control channel's `drop`.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use ppproto::pppos::{PPPoS, PPPoSAction};
use ppproto::{Config, Phase};
use tek_modem::ip::{self, Udp};
use tek_modem::modem::Options;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

const T: Duration = Duration::from_secs(20);

async fn start(pap: Option<(&str, &str)>) -> (TcpStream, TcpStream) {
    let serial = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let control = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (sa, ca) = (serial.local_addr().unwrap(), control.local_addr().unwrap());
    let opts = Options {
        local: Ipv4Addr::new(10, 64, 0, 1),
        peer: Ipv4Addr::new(10, 64, 0, 2),
        signal: 18,
        refused_apns: Default::default(),
        pap: pap.map(|(u, p)| (u.into(), p.into())),
    };
    tokio::spawn(tek_modem::cli::serve(
        serial,
        control,
        opts,
        Ipv4Addr::LOCALHOST,
    ));
    (
        TcpStream::connect(sa).await.unwrap(),
        TcpStream::connect(ca).await.unwrap(),
    )
}

/// Sends `cmd` and reads until `want` shows up in the answer.
async fn at(s: &mut TcpStream, cmd: &str, want: &str) {
    s.write_all(format!("{cmd}\r").as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut b = [0u8; 256];
    tokio::time::timeout(T, async {
        while !String::from_utf8_lossy(&got).contains(want) {
            let n = s.read(&mut b).await.unwrap();
            assert!(n > 0, "modem closed");
            got.extend_from_slice(&b[..n]);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{cmd}: no {want:?} in {:?}", String::from_utf8_lossy(&got)));
}

struct Client<'a> {
    ppp: PPPoS<'a>,
    rx: [u8; 2048],
    tx: [u8; 4096],
}

impl Client<'_> {
    /// Runs the client until `done` or the time limit; returns received IPv4 packets.
    async fn run(
        &mut self,
        s: &mut TcpStream,
        mut done: impl FnMut(&PPPoS, &[Vec<u8>]) -> bool,
    ) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        let mut b = [0u8; 512];
        tokio::time::timeout(T, async {
            loop {
                loop {
                    match self.ppp.poll(&mut self.tx, &mut self.rx) {
                        PPPoSAction::None => break,
                        PPPoSAction::Transmit(n) => s.write_all(&self.tx[..n]).await.unwrap(),
                        PPPoSAction::Received(r) => got.push(self.rx[r].to_vec()),
                    }
                }
                if done(&self.ppp, &got) {
                    return;
                }
                let n = tokio::time::timeout(Duration::from_millis(200), s.read(&mut b)).await;
                if let Ok(n) = n {
                    let n = n.unwrap();
                    assert!(n > 0, "modem closed");
                    let mut data = &b[..n];
                    while !data.is_empty() {
                        let used = self.ppp.consume(data, &mut self.rx);
                        data = &data[used..];
                        match self.ppp.poll(&mut self.tx, &mut self.rx) {
                            PPPoSAction::None => {}
                            PPPoSAction::Transmit(n) => s.write_all(&self.tx[..n]).await.unwrap(),
                            PPPoSAction::Received(r) => got.push(self.rx[r].to_vec()),
                        }
                    }
                }
            }
        })
        .await
        .expect("PPP client: time limit");
        got
    }
}

async fn dial(s: &mut TcpStream) {
    at(s, "ATE0", "OK").await;
    at(s, "AT+CPIN?", "READY").await;
    at(s, "AT+CREG?", "+CREG: 0,1").await;
    at(s, "AT+CGDCONT=1,\"IP\",\"internet\"", "OK").await;
    at(s, "ATD*99#", "CONNECT").await;
}

#[tokio::test]
async fn ppproto_negotiates_and_udp_goes_through_the_relay() {
    let (mut s, mut ctl) = start(None).await;
    dial(&mut s).await;
    let mut c = Client {
        ppp: PPPoS::new(Config {
            username: b"",
            password: b"",
        }),
        rx: [0; 2048],
        tx: [0; 4096],
    };
    c.ppp.open().unwrap();
    c.run(&mut s, |p, _| p.status().phase == Phase::Open).await;
    let st = c.ppp.status();
    let v4 = st.ipv4.expect("IPCP up");
    assert_eq!(v4.address, Some(Ipv4Addr::new(10, 64, 0, 2)));
    assert_eq!(v4.peer_address, Some(Ipv4Addr::new(10, 64, 0, 1)));
    assert_eq!(v4.dns_servers[0], Some(Ipv4Addr::new(10, 64, 0, 1)));

    // A UDP echo server on loopback; the device aims at the gateway's address, same port.
    let echo = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = echo.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut b = [0u8; 2048];
        while let Ok((n, from)) = echo.recv_from(&mut b).await {
            let mut r = b"echo:".to_vec();
            r.extend_from_slice(&b[..n]);
            echo.send_to(&r, from).await.unwrap();
        }
    });
    let out = Udp {
        src: SocketAddrV4::new(Ipv4Addr::new(10, 64, 0, 2), 40_000),
        dst: SocketAddrV4::new(Ipv4Addr::new(10, 64, 0, 1), port),
        payload: vec![0x7E; 1000], // every byte needs escaping
    };
    let n = c.ppp.send(&ip::build(&out, 1), &mut c.tx).unwrap();
    s.write_all(&c.tx[..n]).await.unwrap();
    let got = c.run(&mut s, |_, got| !got.is_empty()).await;
    let reply = ip::parse(&got[0]).expect("a valid IPv4/UDP packet");
    assert_eq!(reply.src, out.dst);
    assert_eq!(reply.dst, out.src);
    assert_eq!(&reply.payload[..5], b"echo:");
    assert_eq!(&reply.payload[5..], &out.payload[..]);

    // The network drops the call: NO CARRIER on the serial line.
    ctl.write_all(b"drop\n").await.unwrap();
    let mut line = String::new();
    BufReader::new(&mut ctl).read_line(&mut line).await.unwrap();
    assert_eq!(line.trim(), "ok dropped");
    let mut b = [0u8; 64];
    let mut seen = Vec::new();
    tokio::time::timeout(T, async {
        while !String::from_utf8_lossy(&seen).contains("NO CARRIER") {
            let n = s.read(&mut b).await.unwrap();
            seen.extend_from_slice(&b[..n]);
        }
    })
    .await
    .unwrap();
    at(&mut s, "AT", "OK").await;
}

#[tokio::test]
async fn pap_login_is_checked() {
    let (mut s, _ctl) = start(Some(("tek", "secret"))).await;
    dial(&mut s).await;
    let mut c = Client {
        ppp: PPPoS::new(Config {
            username: b"tek",
            password: b"secret",
        }),
        rx: [0; 2048],
        tx: [0; 4096],
    };
    c.ppp.open().unwrap();
    c.run(&mut s, |p, _| p.status().phase == Phase::Open).await;

    let (mut s, _ctl) = start(Some(("tek", "secret"))).await;
    dial(&mut s).await;
    let mut c = Client {
        ppp: PPPoS::new(Config {
            username: b"tek",
            password: b"wrong",
        }),
        rx: [0; 2048],
        tx: [0; 4096],
    };
    c.ppp.open().unwrap();
    // ppproto retries on a PAP Nak; the link never reaches the network phase.
    let r = tokio::time::timeout(
        Duration::from_secs(3),
        c.run(&mut s, |p, _| p.status().phase >= Phase::Network),
    )
    .await;
    assert!(r.is_err(), "wrong password must not open the link");
}
