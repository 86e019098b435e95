//! `tek modem`: the emulator on sockets.
//!
//! * serial: a TCP listener QEMU's UART connects to (`-serial tcp:127.0.0.1:PORT`); one device at
//!   a time, a new connection replaces the old one (a modem power-cycle);
//! * control: a TCP listener taking one command per line (see [`crate::modem`]), one reply line
//!   each;
//! * relay: every UDP datagram the device sends over PPP goes out from a socket of its own (one
//!   per device port and destination, like a NAT) to the same port on `--relay-to` (a loopback
//!   address: whatever address the device aimed at — a server, the DNS server the network handed
//!   out — the servers of the test bench all listen on loopback); replies come back to the device
//!   from the address it aimed at.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;

use crate::control::{control_loop, ControlMsg, SerialEvent, SerialPort};
use crate::ip::Udp;
use crate::modem::{Modem, Options, Output};

/// Arguments of `tek modem`.
#[derive(Debug, clap::Args)]
pub struct ModemArgs {
    /// Where the device's UART connects (TCP).
    #[arg(long, default_value = "127.0.0.1:7700")]
    pub listen: SocketAddr,
    /// Control channel (TCP, one command per line: signal N, drop, refuse-apn NAME,
    /// accept-apn NAME, sim on|off, mute, unmute, status).
    #[arg(long, default_value = "127.0.0.1:7701")]
    pub control: SocketAddr,
    /// Loopback address the device's datagrams are relayed to (same port as the device aimed at).
    #[arg(long, default_value = "127.0.0.1")]
    pub relay_to: Ipv4Addr,
    /// The network's address on the PPP link (also the DNS server handed out).
    #[arg(long, default_value = "10.64.0.1")]
    pub gateway: Ipv4Addr,
    /// The address handed to the device.
    #[arg(long, default_value = "10.64.0.2")]
    pub address: Ipv4Addr,
    /// Signal quality at start (0..=31, 99 = no network).
    #[arg(long, default_value_t = 20)]
    pub signal: u8,
    /// An APN the network refuses (repeatable).
    #[arg(long = "refuse-apn")]
    pub refuse_apn: Vec<String>,
    /// Require PAP with this login (and --password).
    #[arg(long)]
    pub login: Option<String>,
    /// PAP password (with --login).
    #[arg(long, requires = "login")]
    pub password: Option<String>,
}

/// Runs `tek modem` until interrupted.
pub fn run(args: ModemArgs) -> anyhow::Result<()> {
    if !args.relay_to.is_loopback() {
        bail!("--relay-to must be a loopback address (the test bench reaches nothing else)");
    }
    if args.signal > 31 && args.signal != 99 {
        bail!("--signal must be 0..=31 or 99");
    }
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let (serial, control) = crate::control::bind(args.listen, args.control).await?;
        tracing::info!(serial = %serial.local_addr()?, control = %control.local_addr()?, "tek modem listening");
        let opts = Options {
            local: args.gateway,
            peer: args.address,
            signal: args.signal,
            refused_apns: args.refuse_apn.into_iter().collect(),
            pap: args.login.map(|l| (l, args.password.unwrap_or_default())),
        };
        serve(serial, control, opts, args.relay_to).await
    })
}

/// Serves the modem on bound listeners (tests bind port 0).
pub async fn serve(
    serial: TcpListener,
    control: TcpListener,
    opts: Options,
    relay_to: Ipv4Addr,
) -> anyhow::Result<()> {
    let (ctl_tx, mut ctl_rx) = mpsc::channel::<ControlMsg>(16);
    tokio::spawn(control_loop(control, ctl_tx, "modem"));
    let mut modem = Modem::new(opts);
    let (relay_tx, mut relay_rx) = mpsc::channel::<Udp>(256);
    let mut nat: HashMap<(u16, SocketAddrV4), Arc<UdpSocket>> = HashMap::new();
    let mut serial = SerialPort::new(serial);
    let mut buf = vec![0u8; 4096];
    let mut tick = tokio::time::interval(Duration::from_secs(3));
    loop {
        let out = tokio::select! {
            event = serial.next(&mut buf) => match event? {
                SerialEvent::Connected(peer) => {
                    tracing::info!(%peer, "device connected (modem powered on)");
                    nat.clear();
                    modem = Modem::new(modem_opts(&modem));
                    Vec::new()
                }
                SerialEvent::Disconnected => {
                    tracing::info!("device disconnected");
                    Vec::new()
                }
                SerialEvent::Bytes(n) => modem.serial_in(&buf[..n]),
            },
            Some(udp) = relay_rx.recv() => modem.deliver(&udp),
            Some((line, reply)) = ctl_rx.recv() => {
                let (text, out) = modem.control(&line);
                tracing::info!(command = %line.trim(), reply = %text, "control");
                let _ = reply.send(text);
                out
            }
            _ = tick.tick() => modem.tick(),
        };
        for o in out {
            match o {
                Output::Serial(bytes) => serial.write(&bytes).await,
                Output::Datagram(udp) => relay(&mut nat, &relay_tx, udp, relay_to).await,
                Output::CallEnded => nat.clear(),
            }
        }
    }
}

fn modem_opts(m: &Modem) -> Options {
    m.options().clone()
}

/// Sends the device's datagram on from the NAT socket for (device port, destination).
async fn relay(
    nat: &mut HashMap<(u16, SocketAddrV4), Arc<UdpSocket>>,
    to_device: &mpsc::Sender<Udp>,
    udp: Udp,
    relay_to: Ipv4Addr,
) {
    let key = (udp.src.port(), udp.dst);
    if let std::collections::hash_map::Entry::Vacant(slot) = nat.entry(key) {
        let sock = match UdpSocket::bind((relay_to, 0)).await {
            Ok(s) => Arc::new(s),
            Err(e) => {
                tracing::warn!(%e, "relay: no socket");
                return;
            }
        };
        let (device, aimed_at) = (udp.src, udp.dst);
        let rx = sock.clone();
        let tx = to_device.clone();
        tokio::spawn(async move {
            let mut b = vec![0u8; 2048];
            // Ends when the mapping is dropped (the call ended) and the send side errors, or the
            // device channel closes.
            while let Ok((n, _from)) = rx.recv_from(&mut b).await {
                let reply = Udp {
                    src: aimed_at,
                    dst: device,
                    payload: b[..n].to_vec(),
                };
                if tx.send(reply).await.is_err() || Arc::strong_count(&rx) == 1 {
                    break;
                }
            }
        });
        slot.insert(sock);
    }
    let sock = &nat[&key];
    let to = SocketAddrV4::new(relay_to, udp.dst.port());
    if let Err(e) = sock.send_to(&udp.payload, to).await {
        tracing::debug!(%e, %to, "relay: send failed");
    }
}
