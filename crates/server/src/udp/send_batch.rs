//! Many datagrams handed to the kernel in one system call (`sendmmsg` on Linux).
//!
//! The writer's acknowledger answers a whole committed batch at once — up to
//! `ingest.batch_records` Acks — and one `sendto` per Ack was the server's largest single cost
//! after SQLite (BENCHMARKS.md, "Where the time goes in ingest"). A [`SendBatch`] collects the
//! sealed datagrams and [`SendBatch::send`] passes them in chunks of [`CHUNK`] per call. The echo
//! baseline of `tek bench ingest` answers through the same type, so the ratio compares like
//! with like.
//!
//! Sends never block, as everywhere in the ingest path: a full socket buffer loses the rest of
//! the batch, which the protocol's re-sends cover.

use std::net::SocketAddr;
use tokio::net::UdpSocket;

/// Datagrams per system call: the kernel caps `vlen` at `UIO_MAXIOV` (1024); 64 keeps the
/// headers on the stack-sized side and already makes the per-call cost negligible.
pub const CHUNK: usize = 64;

/// Sealed datagrams waiting to be sent, in the order they were added.
#[derive(Debug, Default)]
pub struct SendBatch {
    bytes: Vec<u8>,
    /// (end offset in `bytes`, destination) of each datagram.
    datagrams: Vec<(usize, SocketAddr)>,
}

impl SendBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one datagram for `to`.
    pub fn push(&mut self, datagram: &[u8], to: SocketAddr) {
        self.bytes.extend_from_slice(datagram);
        self.datagrams.push((self.bytes.len(), to));
    }

    /// Datagrams waiting.
    pub fn len(&self) -> usize {
        self.datagrams.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.datagrams.is_empty()
    }

    /// The datagrams, in order, with their destinations.
    fn iter(&self) -> impl Iterator<Item = (&[u8], SocketAddr)> {
        let mut start = 0;
        self.datagrams.iter().map(move |&(end, to)| {
            let d = &self.bytes[start..end];
            start = end;
            (d, to)
        })
    }

    /// Sends every datagram without waiting and empties the batch. Returns how many the kernel
    /// took; the others were lost (full buffer) or refused (logged at debug level).
    pub fn send(&mut self, socket: &UdpSocket) -> usize {
        let sent = send_all(socket, self);
        self.bytes.clear();
        self.datagrams.clear();
        sent
    }
}

#[cfg(target_os = "linux")]
fn send_all(socket: &UdpSocket, batch: &SendBatch) -> usize {
    let all: Vec<(&[u8], socket2::SockAddr)> = batch
        .iter()
        .map(|(d, to)| (d, socket2::SockAddr::from(to)))
        .collect();
    let mut sent = 0;
    let mut next = 0;
    while next < all.len() {
        let chunk = &all[next..all.len().min(next + CHUNK)];
        // Straight to the kernel, not through tokio's `try_io`: that refuses (WouldBlock) until
        // the reactor has seen the socket writable once, and nothing here ever waits for
        // writability, so its readiness state has nothing to add to MSG_DONTWAIT.
        match sendmmsg(socket, chunk) {
            Ok(n) => {
                sent += n;
                next += n;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                tracing::debug!(lost = all.len() - next, "send buffer full");
                break;
            }
            Err(e) => {
                // The first datagram of the chunk was refused (an address the kernel will not
                // send to): skip it alone, as one `sendto` per datagram would have.
                tracing::debug!(to = ?chunk[0].1.as_socket(), %e, "send failed");
                next += 1;
            }
        }
    }
    sent
}

/// One `sendmmsg(2)` over `chunk`; the number sent, or the error of the first datagram.
#[cfg(target_os = "linux")]
fn sendmmsg(socket: &UdpSocket, chunk: &[(&[u8], socket2::SockAddr)]) -> std::io::Result<usize> {
    use std::os::fd::AsRawFd;
    let mut iovecs: Vec<libc::iovec> = chunk
        .iter()
        .map(|(d, _)| libc::iovec {
            iov_base: d.as_ptr() as *mut libc::c_void,
            iov_len: d.len(),
        })
        .collect();
    let mut headers: Vec<libc::mmsghdr> = chunk
        .iter()
        .zip(iovecs.iter_mut())
        .map(|((_, to), iov)| {
            // SAFETY: all-zero is a valid msghdr (null pointers, zero lengths).
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_name = to.as_ptr() as *mut libc::c_void;
            h.msg_hdr.msg_namelen = to.len();
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
            h
        })
        .collect();
    // SAFETY: every header points at one iovec of `iovecs` and one address of `chunk`, all of
    // which outlive the call; the kernel only reads them (and writes each `msg_len`).
    let n = unsafe {
        libc::sendmmsg(
            socket.as_raw_fd(),
            headers.as_mut_ptr(),
            headers.len() as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

#[cfg(not(target_os = "linux"))]
fn send_all(socket: &UdpSocket, batch: &SendBatch) -> usize {
    batch
        .iter()
        .filter(|(d, to)| match socket.try_send_to(d, *to) {
            Ok(_) => true,
            Err(e) => {
                tracing::debug!(%to, %e, "send failed");
                false
            }
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// More datagrams than one call carries, to two receivers, arrive whole and in order.
    #[tokio::test]
    async fn a_batch_arrives_whole_and_in_order() {
        let sender = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        let mut batch = SendBatch::new();
        let count = CHUNK * 2 + 5;
        for i in 0..count {
            let to = if i % 3 == 0 { b_addr } else { a_addr };
            batch.push(format!("datagram {i}").as_bytes(), to);
        }
        assert_eq!(batch.len(), count);
        assert_eq!(batch.send(&sender), count);
        assert!(batch.is_empty());
        let mut buf = [0u8; 64];
        for i in 0..count {
            let from = if i % 3 == 0 { &b } else { &a };
            let n = tokio::time::timeout(std::time::Duration::from_secs(5), from.recv(&mut buf))
                .await
                .expect("datagram lost")
                .unwrap();
            assert_eq!(&buf[..n], format!("datagram {i}").as_bytes());
        }
    }

    /// A datagram the kernel refuses costs only itself: the ones after it are sent.
    #[tokio::test]
    async fn a_refused_datagram_does_not_stop_the_rest() {
        let sender = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let receiver = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut batch = SendBatch::new();
        batch.push(b"first", receiver.local_addr().unwrap());
        // Port 0 is not a destination: EINVAL.
        batch.push(b"refused", "127.0.0.1:0".parse().unwrap());
        batch.push(b"third", receiver.local_addr().unwrap());
        assert_eq!(batch.send(&sender), 2);
        let mut buf = [0u8; 16];
        for want in [&b"first"[..], b"third"] {
            let n = receiver.recv(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], want);
        }
    }
}
