//! The listening socket, and what one connection may cost before it sends
//! anything worth serving (docs/reference.md §10): at most `max_connections` at
//! once (the rest wait in the kernel's backlog); a whole request head within
//! `header_read` of the connection, or of the first byte of a later request;
//! an idle keep-alive connection closed after `keep_alive`; a response
//! whose writing makes no progress for `write_stall` ends the connection.
//!
//! hyper's own header timeout starts when it waits for a head, so it would
//! also cut idle keep-alive connections at the head's bound: the phase of
//! each connection is tracked here instead, from the bytes it reads and
//! from the requests the router sees begin and end.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{ConnectInfo, Request};
use axum::response::Response;
use axum::serve::{IncomingStream, Listener};
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// How long each phase of a connection may last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    /// A request head must be whole this long after the connection opens,
    /// or after the first byte of a later request.
    pub header_read: Duration,
    /// An idle keep-alive connection is closed after this long.
    pub keep_alive: Duration,
    /// A response write that makes no progress this long ends the connection.
    pub write_stall: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            header_read: Duration::from_secs(10),
            keep_alive: Duration::from_secs(60),
            write_stall: Duration::from_secs(30),
        }
    }
}

/// A TCP listener that hands out at most `max_connections` connections.
pub struct GuardedListener {
    inner: TcpListener,
    slots: Arc<Semaphore>,
    limits: ConnectionLimits,
}

impl GuardedListener {
    pub fn new(inner: TcpListener, limits: ConnectionLimits) -> Self {
        Self {
            inner,
            slots: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            limits,
        }
    }
}

impl Listener for GuardedListener {
    type Io = GuardedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (GuardedStream, SocketAddr) {
        loop {
            // A slot first: beyond the limit, connections wait unaccepted.
            let slot = match self.slots.clone().acquire_owned().await {
                Ok(slot) => slot,
                Err(_) => std::future::pending().await,
            };
            match self.inner.accept().await {
                Ok((stream, peer)) => {
                    return (GuardedStream::new(stream, slot, self.limits), peer);
                }
                Err(e) => accept_failed(e).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// As axum's own listener does: a peer that gave up is nothing; anything
/// else (out of file descriptors) is logged and waited out, never fatal.
async fn accept_failed(e: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Where a connection stands.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for the first byte of a request, until `deadline`.
    Idle { deadline: Instant },
    /// Part of a request head has come; the rest must by `deadline`.
    Head { deadline: Instant },
    /// Requests are being served (their bodies have their own bound).
    Busy { requests: u32 },
}

/// A connection's phase, shared by its stream and the requests it carries.
#[derive(Debug)]
pub struct ConnState {
    phase: Mutex<Phase>,
    limits: ConnectionLimits,
}

impl ConnState {
    fn new(limits: ConnectionLimits) -> Self {
        Self {
            phase: Mutex::new(Phase::Idle {
                deadline: Instant::now() + limits.header_read,
            }),
            limits,
        }
    }

    fn phase(&self) -> std::sync::MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bytes_read(&self) {
        let mut phase = self.phase();
        if let Phase::Idle { deadline } = *phase {
            let head_by = Instant::now() + self.limits.header_read;
            *phase = Phase::Head {
                deadline: deadline.min(head_by),
            };
        }
    }

    fn read_deadline(&self) -> Option<Instant> {
        match *self.phase() {
            Phase::Idle { deadline } | Phase::Head { deadline } => Some(deadline),
            Phase::Busy { .. } => None,
        }
    }

    fn request_started(self: &Arc<Self>) -> InFlight {
        let mut phase = self.phase();
        *phase = match *phase {
            Phase::Busy { requests } => Phase::Busy {
                requests: requests + 1,
            },
            _ => Phase::Busy { requests: 1 },
        };
        InFlight(self.clone())
    }

    fn request_finished(&self) {
        let mut phase = self.phase();
        if let Phase::Busy { requests } = *phase {
            *phase = if requests > 1 {
                Phase::Busy {
                    requests: requests - 1,
                }
            } else {
                Phase::Idle {
                    deadline: Instant::now() + self.limits.keep_alive,
                }
            };
        }
    }
}

/// A request being served: while one lives, the connection is busy.
struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// A TCP stream that fails its reads once its phase's deadline passes, and
/// its writes once they have made no progress for `write_stall`.
pub struct GuardedStream {
    inner: TcpStream,
    state: Arc<ConnState>,
    read_timer: Pin<Box<Sleep>>,
    write_timer: Pin<Box<Sleep>>,
    write_stalled: bool,
    _slot: OwnedSemaphorePermit,
}

impl GuardedStream {
    fn new(inner: TcpStream, slot: OwnedSemaphorePermit, limits: ConnectionLimits) -> Self {
        let state = Arc::new(ConnState::new(limits));
        let now = Instant::now();
        Self {
            inner,
            state,
            read_timer: Box::pin(tokio::time::sleep_until(now + limits.header_read)),
            write_timer: Box::pin(tokio::time::sleep_until(now + limits.write_stall)),
            write_stalled: false,
            _slot: slot,
        }
    }

    fn timed_out(what: &str) -> io::Error {
        io::Error::new(io::ErrorKind::TimedOut, what.to_owned())
    }

    /// After a write came back pending: fails once it has been pending for
    /// `write_stall` in a row.
    fn poll_write_stall(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if !self.write_stalled {
            self.write_stalled = true;
            let deadline = Instant::now() + self.state.limits.write_stall;
            self.write_timer.as_mut().reset(deadline);
        }
        match self.write_timer.as_mut().poll(cx) {
            Poll::Ready(()) => Err(Self::timed_out("the peer stopped reading")),
            Poll::Pending => Ok(()),
        }
    }

    fn after_write<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match polled {
            Poll::Pending => match self.poll_write_stall(cx) {
                Ok(()) => Poll::Pending,
                Err(e) => Poll::Ready(Err(e)),
            },
            ready => {
                self.write_stalled = false;
                ready
            }
        }
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.state.bytes_read();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let Some(deadline) = this.state.read_deadline() else {
                    return Poll::Pending;
                };
                if this.read_timer.deadline() != deadline {
                    this.read_timer.as_mut().reset(deadline);
                }
                match this.read_timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        Poll::Ready(Err(GuardedStream::timed_out("no whole request in time")))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.after_write(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.after_write(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.after_write(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Makes, for each connection, the service that serves its requests: the
/// app, told of the peer's address (`ConnectInfo<SocketAddr>`), with the
/// connection marked busy from the moment a request reaches it until its
/// response body has been sent (or dropped).
#[derive(Clone)]
pub struct MakeTracked<S> {
    pub app: S,
}

impl<S: Clone> tower::Service<IncomingStream<'_, GuardedListener>> for MakeTracked<S> {
    type Response = Tracked<S>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Tracked<S>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, stream: IncomingStream<'_, GuardedListener>) -> Self::Future {
        std::future::ready(Ok(Tracked {
            app: self.app.clone(),
            peer: *stream.remote_addr(),
            conn: stream.io().state.clone(),
        }))
    }
}

/// One connection's service (see [`MakeTracked`]).
#[derive(Clone)]
pub struct Tracked<S> {
    app: S,
    peer: SocketAddr,
    conn: Arc<ConnState>,
}

impl<S> tower::Service<Request> for Tracked<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.app.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        request.extensions_mut().insert(ConnectInfo(self.peer));
        let in_flight = self.conn.request_started();
        let answer = self.app.call(request);
        Box::pin(async move {
            let response = answer.await?;
            Ok(response.map(|body| {
                Body::new(TrackedBody {
                    inner: body,
                    _in_flight: in_flight,
                })
            }))
        })
    }
}

/// A response body that keeps its request in flight until it is dropped.
struct TrackedBody {
    inner: Body,
    _in_flight: InFlight,
}

impl HttpBody for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
