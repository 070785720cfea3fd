//! A client connection outside its requests: admitted under the connection limits, then waited on
//! between requests with deadlines that fit each wait.
//!
//! pingora alone times a request header per read (a client trickling one byte a minute keeps its
//! connection for ever) and, while a kept-alive connection waits for its next request, holds the
//! whole proxy state of a request. Here the wait for a request's first byte is done first, with
//! nothing but the socket held, and the header must then arrive whole within
//! `limits.request_header_timeout_ms`. pingora's own HTTP/1 loop is replaced by [`Admission`]'s
//! (the same steps: `HttpProxy` documents this use), and the socket is wrapped in a
//! [`ClientStream`] that enforces the header deadline and can flush streamed responses.

use crate::connections::{ConnectionLimits, ConnectionPermit};
use crate::metrics::{CloseReason, Metrics};
use async_trait::async_trait;
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use pingora::server::ShutdownWatch;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The deadlines of the waits between requests.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionTiming {
    /// A whole request header, from the connection's start (first request) or first byte.
    pub header: Duration,
    /// Before the first byte of a next request on a kept-alive connection.
    pub idle: Duration,
    /// Before any first byte, while the connection limits are under pressure.
    pub under_pressure: Duration,
}

/// The proxy's `ServerApp`: admits a connection, then runs its requests one after another.
pub struct Admission<A> {
    pub app: Arc<A>,
    pub limits: Arc<ConnectionLimits>,
    pub timing: ConnectionTiming,
    pub metrics: Arc<Metrics>,
}

const NO_DEADLINE: u64 = u64::MAX;

/// The client's socket, as pingora reads and writes it: it holds the connection's place under the
/// limits, fails a read once the header deadline has passed, and flushes every write while a
/// response is being streamed.
pub struct ClientStream {
    inner: Stream,
    _permit: ConnectionPermit,
    started: Instant,
    /// Milliseconds after `started` by which the current request header must be whole.
    header_deadline_ms: AtomicU64,
    /// The keep-alive idle limit chosen for this connection (seconds).
    idle_secs: AtomicU64,
    flush_writes: AtomicBool,
    timer: Option<Pin<Box<Sleep>>>,
    header_timeouts: prometheus::IntCounter,
}

impl ClientStream {
    /// The header has been read: reads are no longer bound by its deadline.
    pub fn header_received(&self) {
        self.header_deadline_ms
            .store(NO_DEADLINE, Ordering::Relaxed);
    }

    /// How long this connection may next wait idle (a client may have asked for less).
    pub fn set_idle(&self, idle: Duration) {
        self.idle_secs.store(idle.as_secs(), Ordering::Relaxed);
    }

    /// Push every write out at once (a response body arriving in parts). pingora leaves a
    /// Content-Length body in a 1460-byte buffer until it fills or the body ends.
    pub fn flush_every_write(&self) {
        self.flush_writes.store(true, Ordering::Relaxed);
    }

    fn arm_header_deadline(&self, at: Instant) {
        let ms = at.saturating_duration_since(self.started).as_millis();
        self.header_deadline_ms
            .store(u64::try_from(ms).unwrap_or(NO_DEADLINE), Ordering::Relaxed);
    }

    /// The header deadline, while one is armed (once disarmed, its timer is dropped).
    fn header_deadline(&mut self) -> Option<Instant> {
        let ms = self.header_deadline_ms.load(Ordering::Relaxed);
        if ms == NO_DEADLINE {
            self.timer = None;
            return None;
        }
        Some(self.started + Duration::from_millis(ms))
    }

    /// The error a read returns once the header deadline has passed (counted, and the deadline
    /// disarmed).
    fn header_timed_out(&mut self) -> std::io::Error {
        self.header_timeouts.inc();
        self.header_received();
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "request header not received in time",
        )
    }

    /// A read's wake-up at `deadline`: Ready once it has passed.
    fn poll_timer(&mut self, cx: &mut Context<'_>, deadline: Instant) -> Poll<()> {
        let timer = match &mut self.timer {
            Some(timer) if timer.deadline() == deadline => timer,
            slot => slot.insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        timer.as_mut().poll(cx)
    }
}

/// The `ClientStream` under a pingora session, if it is one.
pub fn client_stream(session: &ServerSession) -> Option<&ClientStream> {
    session.stream()?.as_any().downcast_ref::<ClientStream>()
}

impl<A> Admission<A> {
    fn closed(&self, reason: CloseReason) {
        self.metrics
            .connections_closed
            .with_label_values(&[reason.as_str()])
            .inc();
    }
}

/// Until a first byte arrives, by `deadline`, or the server shuts down: whether one did. Under
/// pressure, the wait ends `under_pressure` after it began (or at once, if it began longer ago
/// than that).
async fn first_byte(
    stream: &mut Stream,
    deadline: Instant,
    shutdown: &ShutdownWatch,
    pressure: tokio::sync::watch::Receiver<bool>,
    under_pressure: Duration,
) -> Waited {
    let began = Instant::now();
    let mut shutdown = shutdown.clone();
    let mut byte = [0u8; 1];
    tokio::select! {
        // The byte first: when it is there already, nothing else is waited on.
        biased;
        peeked = tokio::time::timeout_at(deadline, stream.try_peek(&mut byte)) => match peeked {
            Ok(Ok(_)) => Waited::Arrived,
            Ok(Err(_)) => Waited::Closed,
            Err(_) => Waited::TimedOut,
        },
        _ = shutdown.wait_for(|down| *down) => Waited::Closed,
        _ = pressed(pressure, began + under_pressure) => Waited::Shed,
    }
}

/// Ready once the limits are under pressure and it is `not_before`.
async fn pressed(mut pressure: tokio::sync::watch::Receiver<bool>, not_before: Instant) {
    if pressure.wait_for(|pressed| *pressed).await.is_err() {
        std::future::pending::<()>().await;
    }
    tokio::time::sleep_until(not_before).await;
}

enum Waited {
    Arrived,
    Closed,
    TimedOut,
    Shed,
}

#[async_trait]
impl<A> ServerApp for Admission<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let peer = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        let permit = match self.limits.admit(peer) {
            Ok(permit) => permit,
            Err(limit) => {
                // Closed at once, unread: the cheapest answer to a flood. Counted, and summed
                // up in the log by the flood reporter, never one line each.
                self.metrics
                    .connections_refused
                    .with_label_values(&[limit.as_str()])
                    .inc();
                tracing::debug!(client = ?peer, limit = limit.as_str(), "connection refused");
                return None;
            }
        };
        let started = Instant::now();
        let mut stream: Stream = Box::new(ClientStream {
            inner: stream,
            _permit: permit,
            started,
            header_deadline_ms: AtomicU64::new(NO_DEADLINE),
            idle_secs: AtomicU64::new(self.timing.idle.as_secs()),
            flush_writes: AtomicBool::new(false),
            timer: None,
            header_timeouts: self
                .metrics
                .connections_closed
                .with_label_values(&[CloseReason::HeaderTimeout.as_str()]),
        });
        let mut persistent = None;
        let mut first = true;
        loop {
            let control = stream.as_any().downcast_ref::<ClientStream>()?;
            control.flush_writes.store(false, Ordering::Relaxed);
            let wait_until = if first {
                started + self.timing.header
            } else {
                Instant::now() + Duration::from_secs(control.idle_secs.load(Ordering::Relaxed))
            };
            let pressure = self.limits.pressure();
            let waited = first_byte(
                &mut stream,
                wait_until,
                shutdown,
                pressure,
                self.timing.under_pressure,
            );
            match waited.await {
                Waited::Arrived => {}
                Waited::Closed => return None,
                Waited::Shed => {
                    self.closed(CloseReason::Shed);
                    return None;
                }
                Waited::TimedOut => {
                    self.closed(if first {
                        CloseReason::HeaderTimeout
                    } else {
                        CloseReason::Idle
                    });
                    return None;
                }
            }
            let control = stream.as_any().downcast_ref::<ClientStream>()?;
            let header_by = if first {
                wait_until
            } else {
                Instant::now() + self.timing.header
            };
            control.arm_header_deadline(header_by);

            let mut session = ServerSession::new_http1(stream);
            match persistent.take() {
                Some(settings) => {
                    pingora::apps::HttpPersistentSettings::apply_to_session(settings, &mut session)
                }
                None => session.set_keepalive(Some(self.timing.idle.as_secs())),
            }
            if *shutdown.borrow() {
                session.set_keepalive(None);
            }
            let reused = self.app.process_new_http(session, shutdown).await?;
            (stream, persistent) = reused.consume();
            first = false;
        }
    }

    async fn cleanup(&self) {
        self.app.http_cleanup().await;
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let Some(deadline) = self.header_deadline() else {
            return Pin::new(&mut self.inner).poll_read(cx, buf);
        };
        // A slow client's bytes keep arriving: the clock, not a quiet socket, ends the wait.
        if Instant::now() >= deadline {
            return Poll::Ready(Err(self.header_timed_out()));
        }
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            // Only a read that waits needs waking at the deadline: most header reads find their
            // bytes there already, and a timer for each cost 1 300 instructions a request.
            Poll::Pending => match self.poll_timer(cx, deadline) {
                Poll::Ready(()) => Poll::Ready(Err(self.header_timed_out())),
                Poll::Pending => Poll::Pending,
            },
            ready => ready,
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(written, Poll::Ready(Ok(_))) && self.flush_writes.load(Ordering::Relaxed) {
            // Best effort: what a full socket does not take now goes with the next write.
            let _ = Pin::new(&mut self.inner).poll_flush(cx);
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(written, Poll::Ready(Ok(_))) && self.flush_writes.load(Ordering::Relaxed) {
            let _ = Pin::new(&mut self.inner).poll_flush(cx);
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

// What pingora asks of any stream, answered by the socket underneath.

impl std::fmt::Debug for ClientStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientStream")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Shutdown for ClientStream {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await;
    }
}

impl UniqueID for ClientStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for ClientStream {
    fn get_ssl_digest(&self) -> Option<Arc<pingora::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for ClientStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for ClientStream {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest);
    }
}

impl GetSocketDigest for ClientStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest);
    }
}

#[async_trait]
impl Peek for ClientStream {
    async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}
