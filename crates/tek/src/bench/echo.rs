//! The ingest baseline: a plain UDP echo server on the same socket setup as `tek serve`, with no
//! crypto and no storage. It answers every datagram of protocol length with a datagram the size
//! of an Ack (31 bytes): the clear header, `0x81`, the last sequence number of the telemetry
//! batch it carried, and zeros — so the load generator runs exactly the same windowed loop
//! against it as against the server. Runs as a child process (`tek bench echo`) so that it
//! competes for the cores exactly like the server does.
//!
//! Fair by construction: the socket is bound by the server's own
//! [`tek_server::server::bind_udp`] with the server's buffer size (`udp_buffer_bytes`, 4 MiB by
//! default — the kernel's default of ~208 KiB dropped tens of thousands of datagrams per run and
//! under-stated the baseline), and the system calls are the server's: one `recvfrom` per
//! datagram through the async runtime into a buffer twice the protocol maximum, and the answers
//! sent together through the server's own [`tek_server::udp::send_batch::SendBatch`]
//! (`sendmmsg`, 64 per call) — the server's answerer sends the Acks of a committed batch that
//! way. The echo's batch is what was already readable, up to the server's `batch_records`
//! (500): the server's batch is what queued during the previous commit, up to the same cap.

use anyhow::Context;
use std::net::SocketAddr;
use tek_server::udp::send_batch::SendBatch;

/// Arguments of the hidden `tek bench echo`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Address to listen on (loopback only).
    #[arg(long)]
    pub udp: SocketAddr,
    /// Stop after this many seconds (every load loop is bounded).
    #[arg(long, default_value_t = 600)]
    pub max_seconds: u64,
    /// Kernel receive and send buffer of the socket: the server's `udp_buffer_bytes`.
    #[arg(long, default_value_t = tek_server::Config::default().udp_buffer_bytes)]
    pub buffer_bytes: usize,
}

/// Length of the answer: a session datagram carrying an Ack.
const ACK_DATAGRAM: usize = 31;

/// The answer to `datagram`, or `None` for anything that is not a telemetry-shaped datagram.
pub fn answer(datagram: &[u8], out: &mut [u8; ACK_DATAGRAM]) -> bool {
    // Header 14, type 1, first seq 4, channels 1, count 1.
    if !tek_proto::length_ok(datagram.len()) || datagram.len() < 21 || datagram[14] != 0x01 {
        return false;
    }
    let first = u32::from_be_bytes([datagram[15], datagram[16], datagram[17], datagram[18]]);
    let count = u32::from(datagram[20]);
    let through = first.wrapping_add(count.saturating_sub(1));
    out.fill(0);
    out[..14].copy_from_slice(&datagram[..14]);
    out[14] = 0x81;
    out[15..19].copy_from_slice(&through.to_be_bytes());
    true
}

/// Serves until `max_seconds` pass or the process is terminated.
pub fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.udp.ip().is_loopback(),
        "the echo server listens on loopback only"
    );
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    rt.block_on(async move {
        let sock = tek_server::server::bind_udp(args.udp, args.buffer_bytes)
            .with_context(|| format!("cannot bind {}", args.udp))?;
        let deadline =
            tokio::time::Instant::now() + std::time::Duration::from_secs(args.max_seconds);
        let mut buf = vec![0u8; 2 * tek_proto::MAX_DATAGRAM];
        let mut out = [0u8; ACK_DATAGRAM];
        let mut answers = SendBatch::new();
        let most = tek_server::Config::default().ingest.batch_records;
        loop {
            let (n, from) = tokio::select! {
                r = sock.recv_from(&mut buf) => match r {
                    Ok(x) => x,
                    Err(_) => continue,
                },
                _ = tokio::time::sleep_until(deadline) => break,
            };
            if answer(&buf[..n], &mut out) {
                answers.push(&out, from);
            }
            // What is already readable joins the batch (no waiting, as the server's group
            // commit never waits for more).
            while answers.len() < most {
                match sock.try_recv_from(&mut buf) {
                    Ok((n, from)) => {
                        if answer(&buf[..n], &mut out) {
                            answers.push(&out, from);
                        }
                    }
                    Err(_) => break,
                }
            }
            answers.send(&sock);
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_telemetry_shaped_datagrams_only() {
        let mut d = [0u8; 40];
        d[0] = 1;
        d[1] = 3;
        d[14] = 0x01;
        d[15..19].copy_from_slice(&10u32.to_be_bytes());
        d[20] = 5;
        let mut out = [0u8; ACK_DATAGRAM];
        assert!(answer(&d, &mut out));
        assert_eq!(&out[15..19], &14u32.to_be_bytes());
        assert_eq!(out[14], 0x81);
        assert!(!answer(&d[..20], &mut out));
        d[14] = 0x05;
        assert!(!answer(&d, &mut out));
    }
}
