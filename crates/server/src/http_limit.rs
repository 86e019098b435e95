//! A bound on the HTTP connections the server holds (docs/SECURITY.md, resource bounds).
//!
//! [`LimitedListener`] wraps the HTTP `TcpListener` for `axum::serve`: every accepted connection
//! takes one of `max` permits and gives it back when it closes. A connection accepted while all
//! permits are taken is answered `503 Service Unavailable` (one non-blocking write, no task, no
//! request read) and closed at once, so a flood of connections costs the server almost nothing
//! and never grows its memory. Each held connection also has an idle timeout: no byte read or
//! written for `idle` closes it, so connections opened and left silent (slowloris) cannot keep
//! the permits forever. Event streams send a keep-alive every 15 s and are not idle. A request
//! must also be answered within a deadline from its first byte: the server's first byte of the
//! answer must follow within `request`, so headers or a body trickled a byte at a time (which
//! the idle timeout alone never catches) cannot hold a place for longer than that either.

use crate::metrics::Metrics;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// What a connection beyond the bound gets before it is closed.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\
Content-Type: text/plain\r\nRetry-After: 5\r\nContent-Length: 25\r\n\r\ntoo many HTTP connections";

/// The HTTP listener with its connection bound.
pub struct LimitedListener {
    inner: TcpListener,
    permits: Arc<Semaphore>,
    timeouts: Timeouts,
    metrics: Arc<Metrics>,
}

/// The two clocks of a held connection.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// No byte read or written for this long closes the connection.
    pub idle: Duration,
    /// From a request's first byte to the first byte of its answer, at most this long.
    pub request: Duration,
}

impl LimitedListener {
    /// At most `max` connections at once, each closed when one of its `timeouts` runs out.
    pub fn new(inner: TcpListener, max: usize, timeouts: Timeouts, metrics: Arc<Metrics>) -> Self {
        LimitedListener {
            inner,
            permits: Arc::new(Semaphore::new(max)),
            timeouts,
            metrics,
        }
    }
}

impl axum::serve::Listener for LimitedListener {
    type Io = LimitedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (LimitedStream, SocketAddr) {
        loop {
            let (stream, addr) = match self.inner.accept().await {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin (as axum does).
                    tracing::debug!(%e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            match self.permits.clone().try_acquire_owned() {
                Ok(permit) => {
                    let _ = stream.set_nodelay(true);
                    return (LimitedStream::new(stream, permit, self.timeouts), addr);
                }
                Err(_) => {
                    self.metrics.http_refused();
                    tracing::debug!(%addr, "HTTP connection refused: at the bound");
                    let _ = stream.try_write(REFUSAL);
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// The peer address of a connection, for `ConnectInfo<PeerAddr>` (axum implements its own
/// `Connected` for `SocketAddr` only over a plain `TcpListener`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, LimitedListener>>
    for PeerAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, LimitedListener>) -> Self {
        PeerAddr(*stream.remote_addr())
    }
}

/// An accepted connection holding its permit until dropped.
pub struct LimitedStream {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
    timeouts: Timeouts,
    /// When the request being received must have been answered; `None` between requests.
    answer_by: Option<Instant>,
    /// The earlier of the idle deadline and `answer_by`.
    deadline: Pin<Box<Sleep>>,
}

impl LimitedStream {
    fn new(stream: TcpStream, permit: OwnedSemaphorePermit, timeouts: Timeouts) -> Self {
        LimitedStream {
            stream,
            _permit: permit,
            timeouts,
            answer_by: None,
            deadline: Box::pin(tokio::time::sleep(timeouts.idle)),
        }
    }

    /// Bytes came in: the first of a request starts its clock.
    fn read_progress(&mut self) {
        let now = Instant::now();
        if self.answer_by.is_none() {
            self.answer_by = Some(now + self.timeouts.request);
        }
        self.rearm(now);
    }

    /// Bytes went out: the request being received has its answer.
    fn write_progress(&mut self) {
        self.answer_by = None;
        self.rearm(Instant::now());
    }

    fn rearm(&mut self, now: Instant) {
        let idle = now + self.timeouts.idle;
        let at = self.answer_by.map_or(idle, |by| by.min(idle));
        self.deadline.as_mut().reset(at);
    }

    /// A pending operation: fails with `TimedOut` once a deadline has passed.
    fn check_deadline<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                if self.answer_by.is_some_and(|by| by <= Instant::now()) {
                    "HTTP request not complete in time"
                } else {
                    "HTTP connection idle"
                },
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

use std::future::Future;

impl AsyncRead for LimitedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    self.read_progress();
                }
                Poll::Ready(r)
            }
            Poll::Pending => self.check_deadline(cx),
        }
    }
}

impl AsyncWrite for LimitedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.stream).poll_write(cx, buf) {
            Poll::Ready(r) => {
                if r.as_ref().is_ok_and(|n| *n > 0) {
                    self.write_progress();
                }
                Poll::Ready(r)
            }
            Poll::Pending => self.check_deadline(cx),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.stream).poll_write_vectored(cx, bufs) {
            Poll::Ready(r) => {
                if r.as_ref().is_ok_and(|n| *n > 0) {
                    self.write_progress();
                }
                Poll::Ready(r)
            }
            Poll::Pending => self.check_deadline(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
