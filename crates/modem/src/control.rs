//! The sockets of a test-bench device, shared by `tek modem` and `tek meter`:
//!
//! * the control socket ([`control_loop`]): a TCP listener taking one command per line and
//!   answering one line each. Every connection's lines go to the emulator's loop as
//!   [`ControlMsg`]s; a line longer than [`MAX_LINE`] bytes closes that connection (a test tool
//!   still bounds what it buffers);
//! * the serial line ([`SerialPort`]): the TCP listener QEMU's UART connects to.

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

/// A command line and where its reply goes.
pub type ControlMsg = (String, oneshot::Sender<String>);

/// Longest control line accepted.
pub const MAX_LINE: u64 = 1024;

/// Accepts control connections on `listener` for ever, each on a task of its own, sending
/// their lines to `tx`; `who` names the emulator in the reply when it has stopped.
pub async fn control_loop(listener: TcpListener, tx: mpsc::Sender<ControlMsg>, who: &'static str) {
    while let Ok((s, _)) = listener.accept().await {
        let tx = tx.clone();
        tokio::spawn(async move {
            let (r, mut w) = s.into_split();
            let mut reader = BufReader::new(r);
            loop {
                let mut line = String::new();
                let mut limited = (&mut reader).take(MAX_LINE);
                match limited.read_line(&mut line).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) if n as u64 >= MAX_LINE && !line.ends_with('\n') => {
                        let _ = w.write_all(b"error: line too long\n").await;
                        break;
                    }
                    Ok(_) => {}
                }
                let (rtx, rrx) = oneshot::channel();
                if tx.send((line, rtx)).await.is_err() {
                    break;
                }
                let reply = rrx
                    .await
                    .unwrap_or_else(|_| format!("error: {who} stopped"));
                if w.write_all(format!("{reply}\n").as_bytes()).await.is_err() {
                    break;
                }
            }
        });
    }
}

/// What happened on a [`SerialPort`].
#[derive(Debug)]
pub enum SerialEvent {
    /// A device connected (QEMU started, or restarted): it replaced the one before.
    Connected(std::net::SocketAddr),
    /// This many bytes arrived, at the start of the read buffer.
    Bytes(usize),
    /// The device went away.
    Disconnected,
}

/// The serial line of a test-bench device: a TCP listener QEMU's UART connects to
/// (`-serial tcp:HOST:PORT`), one device at a time; a new connection replaces the old one.
pub struct SerialPort {
    listener: TcpListener,
    conn: Option<tokio::net::TcpStream>,
}

impl SerialPort {
    /// A port listening on `listener`, with no device yet.
    pub fn new(listener: TcpListener) -> SerialPort {
        SerialPort {
            listener,
            conn: None,
        }
    }

    /// The next event, reading into `buf`. Cancel-safe (a connection or bytes not yet taken
    /// stay for the next call), so it can be one branch of a `select!`.
    pub async fn next(&mut self, buf: &mut [u8]) -> std::io::Result<SerialEvent> {
        let read = async {
            match self.conn.as_mut() {
                Some(c) => c.read(buf).await,
                None => std::future::pending().await,
            }
        };
        let event = tokio::select! {
            accepted = self.listener.accept() => {
                let (s, peer) = accepted?;
                s.set_nodelay(true)?;
                self.conn = Some(s);
                SerialEvent::Connected(peer)
            }
            n = read => match n {
                Ok(0) | Err(_) => {
                    self.conn = None;
                    SerialEvent::Disconnected
                }
                Ok(n) => SerialEvent::Bytes(n),
            },
        };
        Ok(event)
    }

    /// Sends `bytes` to the device, if one is connected (a failed write drops it).
    pub async fn write(&mut self, bytes: &[u8]) {
        if let Some(c) = self.conn.as_mut() {
            if c.write_all(bytes).await.is_err() {
                self.conn = None;
            }
        }
    }
}

/// Binds a test-bench device's two listeners: the serial line at `serial` and the control
/// socket at `control`.
pub async fn bind(
    serial: std::net::SocketAddr,
    control: std::net::SocketAddr,
) -> anyhow::Result<(TcpListener, TcpListener)> {
    use anyhow::Context;
    let s = TcpListener::bind(serial)
        .await
        .with_context(|| format!("binding the serial listener {serial}"))?;
    let c = TcpListener::bind(control)
        .await
        .with_context(|| format!("binding the control listener {control}"))?;
    Ok((s, c))
}
