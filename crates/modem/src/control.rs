//! The test bench's control socket, shared by `tek modem` and `tek meter`: a TCP listener taking
//! one command per line and answering one line each. Every connection's lines go to the
//! emulator's loop as [`ControlMsg`]s; a line longer than [`MAX_LINE`] bytes closes that
//! connection (a test tool still bounds what it buffers).

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
