//! The public listener: accept, admit, handshake, pick the protocol, drive the
//! connection under its deadlines, drain on shutdown. ../shared/hardening.md lists what
//! hyper, hyper-util and tokio-rustls leave to the application; this module is where each
//! gap is closed:
//!
//! - **Admission:** a global cap and a per-client-address cap on open connections. A
//!   connection over either is closed as soon as it is accepted, never queued.
//! - **TLS handshake:** bounded by `tls.handshake_timeout`; ALPN picks hyper's HTTP/2
//!   server or hookgate's HTTP/1.1 one ([`crate::h1`]) directly.
//! - **Protocol sniff (plain TCP):** hyper-util's `auto` sniff waits forever for the
//!   24-byte HTTP/2 preface. Here the first bytes are peeked (nothing is copied) under the
//!   header deadline, and HTTP/1.1 is recognised from the first byte that differs from
//!   the preface.
//! - **Deadlines:** one watchdog per connection, no timer per request. It cuts a
//!   connection that sends no first request within `header_timeout` (an HTTP/1 head
//!   started but not complete is cut by the request loop: slowloris), and one with no
//!   request in progress for
//!   `idle_timeout`: an idle HTTP/2 connection gets a GOAWAY, which hyper does not send
//!   by itself, and is closed if still open and idle one `idle_timeout` after any GOAWAY
//!   (a peer may ignore it). A stalled response write is idle time too. The body
//!   deadlines are the handler's (`body_timeout`, `body_min_rate`).
//! - **Age:** a connection older than `max_connection_age` (less up to 10% jitter) is
//!   wound down like a drain: HTTP/1.1 closes after its current or next answer, HTTP/2
//!   sends GOAWAY and finishes its streams. HTTP/2 keep-alive PINGs (hyper's) find dead
//!   peers.
//! - **Drain:** on shutdown every connection is asked to finish its current requests
//!   and close (HTTP/1.1 without keep-alive, HTTP/2 GOAWAY).

use crate::config::{Limits, TlsListener};
use crate::net::IpSet;
use crate::server::Gateway;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What one generation of the config gives the listener: swapped as a whole on reload.
/// A connection takes the generation current when it is accepted for its TLS and limits;
/// each request takes the gateway current when it arrives.
pub struct Generation {
    pub gateway: Arc<Gateway>,
    pub tls: Option<TlsListener>,
    pub limits: Limits,
    h2: hyper::server::conn::http2::Builder<TokioExecutor>,
}

impl Generation {
    pub fn new(gateway: Arc<Gateway>, tls: Option<TlsListener>, limits: Limits) -> Self {
        let mut h2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .max_concurrent_streams(limits.h2_max_concurrent_streams)
            .max_header_list_size(limits.h2_max_header_list)
            .initial_stream_window_size(limits.h2_stream_window)
            .initial_connection_window_size(limits.h2_connection_window)
            .max_frame_size(limits.h2_max_frame_size)
            .max_send_buf_size(64 * 1024)
            .max_pending_accept_reset_streams(20)
            .max_local_error_reset_streams(256);
        // Finds dead peers (not an idle timeout: an answered PING keeps a connection up).
        // hyper then notes every frame received for the PING's schedule (a lock per frame).
        if !limits.h2_keepalive_interval.is_zero() {
            h2.keep_alive_interval(limits.h2_keepalive_interval)
                .keep_alive_timeout(limits.h2_keepalive_timeout);
        }
        Generation {
            gateway,
            tls,
            limits,
            h2,
        }
    }
}

/// State shared by the accept loop, every connection and the reloader.
pub struct Shared {
    current: RwLock<Arc<Generation>>,
    /// Bumped by every swap, so that a connection can tell with one atomic load that the
    /// generation it started with is still current (no lock on the request path).
    epoch: AtomicU64,
    pub conns: Conns,
    drain: Drain,
}

/// The drain signal: set once, when the listener stops accepting; every connection
/// waiting for it wakes.
///
/// A flag and a `Notify` rather than a `watch` channel: a connection keeps its wait for
/// as long as it is open, and this one is 96 bytes against the channel's 160 (its
/// receiver and its `wait_for` future).
#[derive(Default)]
struct Drain {
    started: AtomicBool,
    notify: tokio::sync::Notify,
}

impl Drain {
    fn start(&self) {
        self.started.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    fn started(&self) -> bool {
        self.started.load(Ordering::SeqCst)
    }

    /// Completes once a drain starts after it was made (tokio's guarantee for
    /// `notify_waiters`), waking its task if it had been polled by then; a drain that
    /// started before is told by [`Drain::started`].
    fn waiter(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }

    /// Resolves once the drain has started, at once if it already had.
    #[allow(clippy::manual_async_fn)] // an `async fn` keeps its arguments twice
    fn wait(&self) -> impl Future<Output = ()> + '_ {
        async move {
            let mut notified = std::pin::pin!(self.waiter());
            // Registered first, then the flag read: a drain that starts in between is
            // seen either way.
            notified.as_mut().enable();
            if !self.started() {
                notified.await;
            }
        }
    }
}

impl Shared {
    pub fn new(generation: Generation) -> Arc<Shared> {
        Arc::new(Shared {
            current: RwLock::new(Arc::new(generation)),
            epoch: AtomicU64::new(0),
            conns: Conns::default(),
            drain: Drain::default(),
        })
    }

    /// The current generation and its epoch.
    fn current_with_epoch(&self) -> (Arc<Generation>, u64) {
        let g = self.current.read().unwrap_or_else(|p| p.into_inner());
        // Read under the lock: `swap` bumps the epoch while it holds the write lock.
        (g.clone(), self.epoch.load(Ordering::Acquire))
    }

    /// The current generation.
    pub fn current(&self) -> Arc<Generation> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Swaps in a new generation: new connections and new requests use it; requests in
    /// flight finish on the one they started with.
    pub fn swap(&self, generation: Generation) {
        let next = Arc::new(generation);
        let mut g = self.current.write().unwrap_or_else(|p| p.into_inner());
        *g = next;
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }
}

/// Open connections, in total and per client address.
#[derive(Default)]
pub struct Conns {
    open: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    closed: tokio::sync::Notify,
}

/// Holds a connection's place; gives it back when dropped.
pub struct Admitted {
    shared: Arc<Shared>,
    ip: Option<IpAddr>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let conns = &self.shared.conns;
        if let Some(ip) = self.ip {
            if let Ok(mut map) = conns.per_ip.lock() {
                if let Some(n) = map.get_mut(&ip) {
                    *n -= 1;
                    if *n == 0 {
                        map.remove(&ip);
                    }
                }
            }
        }
        crate::metrics::global().connections_open.dec();
        if conns.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            conns.closed.notify_waiters();
        }
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    TooManyConnections,
    TooManyFromAddress,
}

impl Conns {
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Admits a connection from `peer` under `limits`, or says why not.
    pub fn admit(
        shared: &Arc<Shared>,
        peer: IpAddr,
        limits: &Limits,
        trusted: &IpSet,
    ) -> Result<Admitted, Refused> {
        let conns = &shared.conns;
        if conns.open.fetch_add(1, Ordering::AcqRel) >= limits.max_connections {
            conns.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Refused::TooManyConnections);
        }
        let mut admitted = Admitted {
            shared: shared.clone(),
            ip: None,
        };
        if limits.max_connections_per_ip > 0 && !trusted.contains(peer) {
            let key = crate::pipeline::rate::key_for(peer);
            let mut map = conns.per_ip.lock().unwrap_or_else(|p| p.into_inner());
            let n = map.entry(key).or_insert(0);
            if *n >= limits.max_connections_per_ip {
                drop(map);
                return Err(Refused::TooManyFromAddress); // `admitted` gives the slot back
            }
            *n += 1;
            admitted.ip = Some(key);
        }
        Ok(admitted)
    }

    /// Resolves once no connection is open.
    pub async fn all_closed(&self) {
        loop {
            let notified = self.closed.notified();
            if self.open() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Accepts connections until shutdown is requested, then stops accepting, asks every
/// connection to close after its current requests, and returns.
pub async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => admit_and_spawn(&shared, stream, peer),
                Err(e) => {
                    // Out of file descriptors and the like: back off rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    shared.drain.start();
}

fn admit_and_spawn(shared: &Arc<Shared>, stream: TcpStream, peer: SocketAddr) {
    let (generation, epoch) = shared.current_with_epoch();
    let admitted = match Conns::admit(
        shared,
        peer.ip(),
        &generation.limits,
        generation.gateway.trusted(),
    ) {
        Ok(a) => a,
        Err(why) => {
            tracing::debug!(%peer, ?why, "connection refused");
            let reason = match why {
                Refused::TooManyConnections => "max_connections",
                Refused::TooManyFromAddress => "max_connections_per_ip",
            };
            crate::metrics::count(&crate::metrics::global().connections_refused, reason);
            return; // dropping the stream closes it
        }
    };
    crate::metrics::global().connections_open.inc();
    let _ = stream.set_nodelay(true);
    let ctx = ConnCtx {
        gateway: generation.gateway.clone(),
        epoch,
        track: Arc::new(ConnTrack::new(generation.limits.max_connection_age)),
        peer,
        peer_text: crate::net::canonical(peer.ip()).to_string().into(),
        tls: generation.tls.is_some(),
        admitted,
    };
    tokio::spawn(connection(generation, ctx, stream));
}

/// The protocol a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Http1,
    Http2,
}

/// A connection's task, from its first bytes to its end; it holds the connection's
/// admission (in `ctx`) until then.
///
/// What it keeps for the connection's life is most of an idle connection's memory, so
/// each phase's state is boxed where it starts and freed where it ends: the wait for the
/// first bytes (the protocol sniff: two timers and the shutdown signal), each protocol's
/// connection (HTTP/1 or HTTP/2, plain or TLS), and the TLS path as a whole (the TLS
/// stream it holds across its awaits, rustls' state of about 3 KB, would otherwise be
/// part of every connection's task). No other async fn is awaited in place: a nested
/// one would keep a second copy of the arguments it is given, and the context and
/// stream are most of this future. For the same reason this is an `async move` block
/// rather than an `async fn`, whose body keeps its arguments twice: once as captured,
/// once rebound as its locals.
#[allow(clippy::manual_async_fn)] // an `async fn` keeps its arguments twice
fn connection(
    generation: Arc<Generation>,
    ctx: ConnCtx,
    stream: TcpStream,
) -> impl Future<Output = ()> + Send {
    async move {
        let peer = ctx.peer;
        let served = match &generation.tls {
            Some(tls) => Box::pin(tls_connection(&generation, tls, ctx, stream)).await,
            None => {
                let deadline = tokio::time::Instant::now() + generation.limits.header_timeout;
                let sniffed = Box::pin(async {
                    let sniff = std::pin::pin!(tokio::time::timeout_at(deadline, sniff(&stream)));
                    unless_draining(ctx.shared(), sniff).await
                })
                .await;
                match sniffed {
                    None => Ok(()), // a drain began before the first request
                    Some(Err(_)) => {
                        crate::metrics::connection_closed("header_timeout");
                        Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "no request within header_timeout",
                        ))
                    }
                    Some(Ok(Err(e))) => Err(e),
                    Some(Ok(Ok(Proto::Http1))) => {
                        Box::pin(serve_h1(&generation, &ctx, stream)).await
                    }
                    Some(Ok(Ok(Proto::Http2))) => {
                        Box::pin(serve_h2(&generation, &ctx, stream)).await
                    }
                }
            }
        };
        if let Err(e) = served {
            tracing::debug!(%peer, error = %e, "connection ended");
        }
    }
}

/// A TLS connection: the handshake, then the protocol ALPN chose.
#[allow(clippy::manual_async_fn)] // an `async fn` keeps its arguments twice
fn tls_connection<'a>(
    generation: &'a Generation,
    tls: &'a TlsListener,
    ctx: ConnCtx,
    stream: TcpStream,
) -> impl Future<Output = io::Result<()>> + 'a {
    async move {
        // The handshake in a block of its own: its boxed state (with the wait for a
        // drain beside it) is freed when it ends, and the TLS stream it yields is not
        // kept twice (here and in the protocol's future) for the connection's life.
        let (stream, proto) = {
            let handshake = Box::pin(async {
                let acceptor = tokio_rustls::TlsAcceptor::from(tls.server.clone());
                let accept = std::pin::pin!(tokio::time::timeout(
                    tls.handshake_timeout,
                    acceptor.accept(stream),
                ));
                unless_draining(ctx.shared(), accept).await
            })
            .await;
            let Some(handshake) = handshake else {
                return Ok(());
            };
            let stream = match handshake {
                Ok(Ok(s)) => s,
                failed => {
                    crate::metrics::global().tls_handshake_failures.inc();
                    return Err(match failed {
                        Ok(Err(e)) => {
                            tracing::debug!(peer = %ctx.peer, error = %e, "TLS handshake failed");
                            e
                        }
                        _ => io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"),
                    });
                }
            };
            // RFC 9113 §3.3: over TLS, HTTP/2 is chosen by ALPN only.
            let proto = match stream.get_ref().1.alpn_protocol() {
                Some(crate::tls::ALPN_H2) => Proto::Http2,
                _ => Proto::Http1,
            };
            (stream, proto)
        };
        // The head deadline restarts after the handshake, which had its own.
        ctx.track.reset_head();
        match proto {
            Proto::Http1 => Box::pin(serve_h1(generation, &ctx, stream)).await,
            Proto::Http2 => Box::pin(serve_h2(generation, &ctx, stream)).await,
        }
    }
}

/// `fut`'s output, or `None` if a drain begins first: a connection that has not sent a
/// request yet is closed at once. `fut` is pinned by the caller, so that it is stored
/// once in the connection's state, not again in this future's.
async fn unless_draining<F: Future>(shared: &Shared, fut: Pin<&mut F>) -> Option<F::Output> {
    tokio::select! {
        out = fut => Some(out),
        _ = shared.drain.wait() => None,
    }
}

/// Waits for enough of the first bytes to tell HTTP/2's preface from an HTTP/1.1
/// request line, without consuming them.
async fn sniff(stream: &TcpStream) -> io::Result<Proto> {
    let mut buf = [0u8; 24];
    loop {
        let n = stream.peek(&mut buf).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if buf[..n] != H2_PREFACE[..n] {
            return Ok(Proto::Http1);
        }
        if n == H2_PREFACE.len() {
            return Ok(Proto::Http2);
        }
        // A partial preface: peeking again at once would return the same bytes, so
        // wait a little for the rest (the caller's deadline bounds this).
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// What a connection's requests need.
pub(crate) struct ConnCtx {
    /// The connection's place among the open ones (and the listener's shared state).
    admitted: Admitted,
    /// The gateway current at accept time, used while `epoch` is still current.
    gateway: Arc<Gateway>,
    epoch: u64,
    pub(crate) track: Arc<ConnTrack>,
    pub(crate) peer: SocketAddr,
    pub(crate) peer_text: Arc<str>,
    pub(crate) tls: bool,
}

impl ConnCtx {
    fn shared(&self) -> &Arc<Shared> {
        &self.admitted.shared
    }

    /// Whether the listener is draining (it stopped accepting; connections close).
    pub(crate) fn draining(&self) -> bool {
        self.shared().drain.started()
    }

    /// The gateway for a request arriving now: the one the connection started with
    /// while no reload happened (one atomic load), else the current one.
    pub(crate) fn gateway(&self) -> Arc<Gateway> {
        match self.shared().epoch.load(Ordering::Acquire) == self.epoch {
            true => self.gateway.clone(),
            false => self.shared().current().gateway.clone(),
        }
    }

    /// The per-connection service: each request takes the current gateway.
    fn service(
        &self,
    ) -> impl hyper::service::Service<
        http::Request<hyper::body::Incoming>,
        Response = crate::answer::HttpResponse,
        Error = std::convert::Infallible,
        Future = impl Future<Output = Result<crate::answer::HttpResponse, std::convert::Infallible>>
                     + Send,
    > + Clone {
        let shared = self.shared().clone();
        let track = self.track.clone();
        let peer = self.peer;
        let peer_text = self.peer_text.clone();
        let tls = self.tls;
        let (at_accept, epoch) = (self.gateway.clone(), self.epoch);
        service_fn(move |req| {
            let gateway = match shared.epoch.load(Ordering::Acquire) == epoch {
                true => at_accept.clone(),
                false => shared.current().gateway.clone(),
            };
            let busy = track.begin();
            let peer_text = peer_text.clone();
            // Boxed: hyper moves each stream's future into the task it spawns for it,
            // and a request's handling is about 3 KB of state; a box moves as a pointer.
            Box::pin(async move {
                let conn = crate::server::ConnInfo { tls };
                let (head, body) = req.into_parts();
                let head = crate::fields::RequestHead::from(head);
                let (resp, at) = gateway.handle(head, body, peer, &peer_text, conn).await;
                busy.end_at(at);
                Ok(resp.into_response())
            })
        })
    }
}

// These and `drive` are `async move` blocks rather than `async fn`s
// for the reason given at `connection`: their state lives as long as the connection.
// For the same reason the context stays in the caller's state (it is borrowed), and
// the stream is kept once, here, and lent to HTTP/1's loop rather than moved into it.
#[allow(clippy::manual_async_fn)] // an `async fn` keeps its arguments twice
fn serve_h1<'a, S>(
    generation: &'a Generation,
    ctx: &'a ConnCtx,
    mut stream: S,
) -> impl Future<Output = io::Result<()>> + 'a
where
    S: crate::h1::FirstRead + AsyncWrite + Send + 'static,
{
    async move {
        let limits = &generation.limits;
        let conn = std::pin::pin!(crate::h1::serve(&mut stream, ctx, limits));
        drive(conn, ctx, limits, Proto::Http1, |_| ctx.track.close_soon()).await
    }
}

#[allow(clippy::manual_async_fn)] // an `async fn` keeps its arguments twice
fn serve_h2<'a, S>(
    generation: &'a Generation,
    ctx: &'a ConnCtx,
    stream: S,
) -> impl Future<Output = io::Result<()>> + 'a
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    async move {
        let conn = std::pin::pin!(generation
            .h2
            .serve_connection(TokioIo::new(stream), ctx.service()));
        drive(conn, ctx, &generation.limits, Proto::Http2, |c| {
            c.graceful_shutdown()
        })
        .await
    }
}

/// Polls a connection to its end, under the watchdog and the shutdown signal.
///
/// The watchdog's timer and the shutdown signal are polled only when one of them woke
/// the task ([`SideWake`]), not on every read and write of the connection: polling the
/// shutdown signal takes a lock shared by every connection of every worker.
///
/// `conn` comes pinned by the caller, and the futures below are pinned where they are
/// made: a future moved into a local and pinned there (`tokio::pin!`) takes its space
/// twice in this state machine, which lives as long as the connection.
#[allow(clippy::manual_async_fn)] // an `async fn` keeps its arguments twice
fn drive<'a, C, E>(
    mut conn: Pin<&'a mut C>,
    ctx: &'a ConnCtx,
    limits: &'a Limits,
    proto: Proto,
    graceful: impl Fn(Pin<&mut C>) + 'a,
) -> impl Future<Output = io::Result<()>> + 'a
where
    C: Future<Output = Result<(), E>>,
    E: IntoIo,
{
    async move {
        // The drain signal and the watchdog's timer, polled here rather than through
        // futures of their own, which would keep what this state already has.
        let drain = &ctx.shared().drain;
        let mut drained = std::pin::pin!(drain.waiter());
        let mut deadline = std::pin::pin!(tokio::time::sleep(ctx.track.first_wait(limits)));
        let side = Arc::new(SideWake {
            woken: AtomicBool::new(true),
            task: Mutex::new(None),
        });
        let side_waker = std::task::Waker::from(side.clone());
        // The shutdown signal fired: it is not polled again.
        let mut stopping = false;
        // HTTP/2: a GOAWAY went out. The connection then has `idle_timeout` (from the
        // GOAWAY, or from its last request if that is later) to finish; past it, it is
        // closed at once: a peer that ignores the GOAWAY, with keep-alive PINGs off, would
        // otherwise hold it open for good.
        let mut goaway_sent = false;
        loop {
            let event = std::future::poll_fn(|cx| {
                if let Poll::Ready(done) = conn.as_mut().poll(cx) {
                    return Poll::Ready(Event::Done(done));
                }
                if !side.woken.swap(false, Ordering::AcqRel) {
                    return Poll::Pending;
                }
                side.follow(cx.waker());
                let mut side_cx = Context::from_waker(&side_waker);
                // The watchdog: when its timer fires, the connection's timeline says
                // whether a deadline passed or when to look again.
                while deadline.as_mut().poll(&mut side_cx).is_ready() {
                    match ctx.track.check(limits, proto == Proto::Http1) {
                        Ok(wait) => deadline.as_mut().reset(tokio::time::Instant::now() + wait),
                        Err(expiry) => return Poll::Ready(Event::Expired(expiry)),
                    }
                }
                if !stopping && (drain.started() || drained.as_mut().poll(&mut side_cx).is_ready())
                {
                    return Poll::Ready(Event::Shutdown);
                }
                Poll::Pending
            })
            .await;
            // A deadline is counted once, by what it did; after the GOAWAY it only closes.
            if let (Event::Expired(expiry), false) = (&event, goaway_sent) {
                expiry.count();
            }
            let h2_goaway = match event {
                Event::Done(done) => return done.map_err(IntoIo::into_io),
                Event::Expired(Expiry::Idle) if goaway_sent => {
                    tracing::debug!(peer = %ctx.peer, "HTTP/2 connection still open idle_timeout after its GOAWAY");
                    return Ok(());
                }
                // Nothing is in progress: close at once (HTTP/2 says GOAWAY first).
                Event::Expired(Expiry::Idle) if proto == Proto::Http2 => true,
                Event::Expired(Expiry::Idle) => return Ok(()),
                // Old: HTTP/2 says GOAWAY and lets its streams finish; HTTP/1 says
                // `Connection: close` on its current or next answer (not at once: a request
                // may be on its way) and keeps its other deadlines.
                Event::Expired(Expiry::Age) => {
                    tracing::debug!(peer = %ctx.peer, "connection reached max_connection_age");
                    match proto {
                        Proto::Http2 => true,
                        Proto::Http1 => {
                            graceful(conn.as_mut());
                            // Looks at once: the next deadline may be near.
                            deadline.as_mut().reset(tokio::time::Instant::now());
                            side.woken.store(true, Ordering::Release);
                            false
                        }
                    }
                }
                Event::Expired(Expiry::Head) => {
                    tracing::debug!(peer = %ctx.peer, "request head not complete within header_timeout");
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "header_timeout"));
                }
                Event::Shutdown => {
                    stopping = true;
                    match proto {
                        Proto::Http2 => true,
                        // An HTTP/1 connection waiting for its next request (or lingering
                        // after its last answer) closes at once; one with a request in
                        // progress closes after its answer and keeps its deadlines meanwhile.
                        Proto::Http1 if ctx.track.is_waiting() => return Ok(()),
                        Proto::Http1 => {
                            graceful(conn.as_mut());
                            false
                        }
                    }
                }
            };
            if h2_goaway {
                if !goaway_sent {
                    graceful(conn.as_mut());
                    goaway_sent = true;
                }
                // The watchdog looks again `idle_timeout` from now, so the GOAWAY gets at
                // least that long, however long the connection had been idle before.
                deadline
                    .as_mut()
                    .reset(tokio::time::Instant::now() + limits.idle_timeout);
                side.woken.store(true, Ordering::Release);
            }
        }
    }
}

/// What ended a wait in [`drive`].
enum Event<T> {
    Done(T),
    Expired(Expiry),
    Shutdown,
}

/// The waker given to a connection's watchdog and shutdown signal: notes that one of
/// them fired, then wakes the connection's task.
struct SideWake {
    woken: AtomicBool,
    task: Mutex<Option<std::task::Waker>>,
}

impl SideWake {
    /// Keeps the task's current waker (the same one for a task's whole life in tokio,
    /// so this rarely clones).
    fn follow(&self, waker: &std::task::Waker) {
        let mut task = self.task.lock().unwrap_or_else(|p| p.into_inner());
        if !task.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *task = Some(waker.clone());
        }
    }
}

impl std::task::Wake for SideWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = task.as_ref() {
            w.wake_by_ref();
        }
    }
}

/// A connection's error as an I/O error (hyper's HTTP/2 server, or the HTTP/1 loop).
trait IntoIo {
    fn into_io(self) -> io::Error;
}

impl IntoIo for hyper::Error {
    fn into_io(self) -> io::Error {
        io::Error::other(self)
    }
}

impl IntoIo for io::Error {
    fn into_io(self) -> io::Error {
        self
    }
}

/// Why the watchdog ended a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    /// No request in progress for `idle_timeout`.
    Idle,
    /// A request head started but was not complete within `header_timeout`.
    Head,
    /// The connection reached its `max_connection_age`: wind it down.
    Age,
}

impl Expiry {
    /// Counts the close (or wind-down) in `hookgate_connections_closed_total`.
    fn count(&self) {
        crate::metrics::connection_closed(match self {
            Expiry::Idle => "idle_timeout",
            Expiry::Head => "header_timeout",
            Expiry::Age => "max_connection_age",
        });
    }
}

const NONE: u64 = u64::MAX;

/// `max_age` in nanoseconds less a random part of up to a tenth of it, so that
/// connections opened together (a sender's burst, a restart) do not all close together;
/// `NONE` for zero (no age limit).
fn jittered_age(max_age: Duration) -> u64 {
    if max_age.is_zero() {
        return NONE;
    }
    let nanos = u64::try_from(max_age.as_nanos()).unwrap_or(NONE - 1);
    match nanos / 10 {
        0 => nanos,
        tenth => nanos - crate::trace::random_u64() % tenth,
    }
}

/// A connection's timeline, in nanoseconds since it was accepted: when the current
/// request head started, when the connection last became idle, and how many requests
/// are in progress. Written on the request path with relaxed atomics and two clock
/// reads per request; read by the watchdog when it wakes.
pub struct ConnTrack {
    epoch: Instant,
    active: AtomicUsize,
    head_started: AtomicU64,
    idle_since: AtomicU64,
    /// HTTP/1: closing the connection now would lose nothing: it waits for the first
    /// bytes of its next request, or lingers after its last answer.
    waiting: AtomicBool,
    /// HTTP/1: a drain asked the connection to close after its current request.
    closing: AtomicBool,
    /// When the connection reaches its `max_connection_age` (`NONE`: off, or reached).
    old_at: AtomicU64,
}

impl ConnTrack {
    /// A new connection's timeline; `max_age` zero: no age limit.
    fn new(max_age: Duration) -> Self {
        ConnTrack {
            epoch: Instant::now(),
            active: AtomicUsize::new(0),
            // The first head is due `header_timeout` after the connection opens.
            head_started: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
            waiting: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            old_at: AtomicU64::new(jittered_age(max_age)),
        }
    }

    pub(crate) fn set_waiting(&self, waiting: bool) {
        self.waiting.store(waiting, Ordering::Relaxed);
    }

    fn is_waiting(&self) -> bool {
        self.waiting.load(Ordering::Relaxed)
    }

    fn close_soon(&self) {
        self.closing.store(true, Ordering::Relaxed);
    }

    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }

    fn now(&self) -> u64 {
        self.since_epoch(Instant::now())
    }

    fn since_epoch(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    fn reset_head(&self) {
        self.head_started.store(self.now(), Ordering::Relaxed);
    }

    /// A request is in progress until the guard drops: for HTTP/1 from its first bytes
    /// (the head's own deadline is kept by the request loop), for HTTP/2 from its head.
    pub(crate) fn begin(self: &Arc<Self>) -> Busy {
        self.active.fetch_add(1, Ordering::Relaxed);
        self.head_started.store(NONE, Ordering::Relaxed);
        Busy(self.clone(), None)
    }

    /// When a new connection's watchdog first looks: no later than its first head is
    /// due, or it becomes old (a clock reading only with an age limit).
    fn first_wait(&self, limits: &Limits) -> Duration {
        let first = limits.header_timeout.min(limits.idle_timeout);
        match self.old_at.load(Ordering::Relaxed) {
            NONE => first,
            at => first.min(Duration::from_nanos(at.saturating_sub(self.now()))),
        }
    }

    /// `Ok(wait)`: check again after `wait`; `Err`: the connection is past a deadline.
    /// [`Expiry::Age`] is reported once; the other deadlines still apply after it.
    fn check(&self, limits: &Limits, heads: bool) -> Result<Duration, Expiry> {
        let now = self.now();
        let old_at = self.old_at.load(Ordering::Relaxed);
        if now >= old_at {
            self.old_at.store(NONE, Ordering::Relaxed);
            return Err(Expiry::Age);
        }
        let until_old = Duration::from_nanos(old_at - now);
        self.check_use(limits, heads, now)
            .map(|wait| wait.min(until_old))
    }

    /// The request deadlines: the first head's, a head's, idleness.
    fn check_use(&self, limits: &Limits, heads: bool, now: u64) -> Result<Duration, Expiry> {
        if self.active.load(Ordering::Relaxed) > 0 {
            return Ok(limits.header_timeout.min(limits.idle_timeout));
        }
        let head = self.head_started.load(Ordering::Relaxed);
        let (since, limit, expiry) = if heads && head != NONE {
            (head, limits.header_timeout, Expiry::Head)
        } else {
            (
                self.idle_since.load(Ordering::Relaxed),
                limits.idle_timeout,
                Expiry::Idle,
            )
        };
        let due = since.saturating_add(limit.as_nanos() as u64);
        if now >= due {
            Err(expiry)
        } else {
            Ok(Duration::from_nanos(due - now))
        }
    }
}

/// A request in progress on a connection.
pub(crate) struct Busy(Arc<ConnTrack>, Option<Instant>);

impl Busy {
    /// The request ended at `at` (a clock reading the caller has): no reading of its own.
    pub(crate) fn end_at(mut self, at: Instant) {
        self.1 = Some(at);
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let at = match self.1 {
            Some(at) => self.0.since_epoch(at),
            None => self.0.now(),
        };
        self.0.idle_since.store(at, Ordering::Relaxed);
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn limits(header_ms: u64, idle_ms: u64) -> Limits {
        Limits {
            header_timeout: Duration::from_millis(header_ms),
            idle_timeout: Duration::from_millis(idle_ms),
            ..Limits::default()
        }
    }

    #[test]
    fn the_timeline_picks_the_deadline_that_applies() {
        let l = limits(50, 200);
        let t = Arc::new(ConnTrack::new(Duration::ZERO));
        // A new connection owes its first head within the header timeout.
        assert!(t.check(&l, true).unwrap() <= Duration::from_millis(50));
        let busy = t.begin();
        assert_eq!(t.check(&l, true), Ok(Duration::from_millis(50)));
        drop(busy);
        // Idle now: the idle deadline applies.
        let wait = t.check(&l, true).unwrap();
        assert!(wait > Duration::from_millis(150), "{wait:?}");
        // A TLS handshake done: the first head is due within the header timeout again.
        t.reset_head();
        assert!(t.check(&l, true).unwrap() <= Duration::from_millis(50));
        // HTTP/2 has no heads to time this way: only idleness counts.
        assert!(t.check(&l, false).unwrap() > Duration::from_millis(150));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(t.check(&l, true), Err(Expiry::Head));
        assert!(t.check(&l, false).is_ok());
        // The first bytes of a request: the loop keeps the head's deadline itself.
        let busy = t.begin();
        assert!(t.check(&l, true).is_ok());
        drop(busy);
    }

    #[test]
    fn an_old_connection_is_told_once_and_keeps_its_other_deadlines() {
        let l = limits(50, 200);
        // Off: never old.
        assert_eq!(jittered_age(Duration::ZERO), NONE);
        // Up to a tenth less than the age, never more.
        for _ in 0..100 {
            let at = jittered_age(Duration::from_secs(10));
            assert!((9_000_000_000..=10_000_000_000).contains(&at), "{at}");
        }
        let t = Arc::new(ConnTrack::new(Duration::from_millis(100)));
        let busy = t.begin();
        // In use: the watchdog looks again no later than when the connection gets old.
        assert!(t.check(&l, true).unwrap() <= Duration::from_millis(50));
        assert!(t.first_wait(&limits(5000, 5000)) <= Duration::from_millis(100));
        std::thread::sleep(Duration::from_millis(110));
        assert_eq!(t.check(&l, true), Err(Expiry::Age));
        // Said once; then the request deadlines apply as before.
        assert!(t.check(&l, true).is_ok());
        drop(busy);
        assert!(t.check(&l, false).unwrap() > Duration::from_millis(150));
    }

    #[test]
    fn a_request_ended_at_a_given_time_starts_the_idle_clock_then() {
        let l = limits(50, 200);
        let t = Arc::new(ConnTrack::new(Duration::ZERO));
        // Ended 150 ms before now (by the handler's reading): 50 ms of idleness are left.
        let busy = t.begin();
        std::thread::sleep(Duration::from_millis(160));
        busy.end_at(Instant::now() - Duration::from_millis(150));
        let wait = t.check(&l, false).unwrap();
        assert!(wait <= Duration::from_millis(50), "{wait:?}");
        // A reading from before the connection opened counts from its start (160 ms
        // ago or more): at most 40 ms of idleness are left.
        let busy = t.begin();
        busy.end_at(t.epoch - Duration::from_millis(1));
        let wait = t.check(&l, false).unwrap_or_default();
        assert!(wait <= Duration::from_millis(40), "{wait:?}");
    }

    /// Connections' shared state for the embedded default config.
    fn embedded_shared() -> Arc<Shared> {
        let gw = Arc::new(Gateway::new(
            &crate::cli::load(&crate::cli::read_source(None)).unwrap(),
            None,
        ));
        Shared::new(Generation::new(gw, None, Limits::default()))
    }

    /// A plain (not TLS) connection's context, as the accept loop builds it.
    fn plain_ctx(shared: &Arc<Shared>, peer: SocketAddr) -> ConnCtx {
        let (generation, epoch) = shared.current_with_epoch();
        ConnCtx {
            admitted: Admitted {
                shared: shared.clone(),
                ip: None,
            },
            gateway: generation.gateway.clone(),
            epoch,
            track: Arc::new(ConnTrack::new(Duration::ZERO)),
            peer,
            peer_text: crate::net::canonical(peer.ip()).to_string().into(),
            tls: false,
        }
    }

    /// A drain that started before a connection's loop began is seen by it: tokio's
    /// `notify_waiters` reaches only the waits that exist when it is called, so `drive`
    /// also reads the drain's flag. An HTTP/1 connection waiting for its first request
    /// closes at once; without the flag it would wait for the request (or a timeout).
    #[tokio::test]
    async fn a_drain_started_before_a_connection_is_served_closes_it() {
        let shared = embedded_shared();
        shared.drain.start();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (stream, peer) = listener.accept().await.unwrap();
        let (generation, _) = shared.current_with_epoch();
        let ctx = plain_ctx(&shared, peer);
        let served =
            tokio::time::timeout(Duration::from_secs(2), serve_h1(&generation, &ctx, stream)).await;
        assert!(
            matches!(served, Ok(Ok(()))),
            "the connection went on after the drain: {served:?}"
        );
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(2), client.read_to_end(&mut rest))
            .await
            .expect("the client sees the connection close");
        assert_eq!(read.unwrap(), 0, "no answer before the close: {rest:?}");
    }

    /// What every open connection keeps, whatever it does: its task's future (what is
    /// spawned), for HTTP/1 the boxed protocol future, and for TLS the boxed future
    /// around the handshake. Measured in this (debug) build: 240, 496 and 184 bytes
    /// (release: 232, 488 and 176), of which HTTP/1's own loop between requests is 88
    /// (both builds). tokio lays a task out in multiples of 128 bytes and mimalloc
    /// rounds an allocation up to its size class, so a few bytes over a step cost a
    /// whole one: in release the task takes 384 bytes and the HTTP/1 future 512.
    /// They were 296 (plus the wrapper that was spawned around it, 640 bytes in all),
    /// 952 and 464 before these futures were written as `async move` blocks (an
    /// `async fn` keeps its arguments twice), before the handshake's drain wait was
    /// boxed with it, before the drain signal became a `Notify` and the watchdog's timer
    /// was polled in place, before the HTTP/1 future borrowed the context and lent the
    /// stream to its loop, and before a request's body state moved into its box.
    /// Before the request and the first bytes' wait were boxed, the task's future was
    /// 888 (release 872) and the HTTP/1 future 1,840 (release 1,864); before the TLS
    /// path was boxed apart, its handshake scoped, and the futures inside pinned once
    /// where made, they were 3,712, 3,784 and 2,952 here (3,840, 4,856 and 2,928 in
    /// release, plus a 1,328-byte handshake box kept for the connection's life): the
    /// bounds catch any of them coming back.
    #[tokio::test]
    async fn an_idle_connection_keeps_little_state() {
        let shared = embedded_shared();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = TcpStream::connect(addr).await.unwrap();
        let (stream, peer) = listener.accept().await.unwrap();
        let (generation, _) = shared.current_with_epoch();
        let ctx = |peer| plain_ctx(&shared, peer);
        // What is spawned per connection.
        let task = connection(generation.clone(), ctx(peer), stream);
        let task_bytes = std::mem::size_of_val(&task);
        drop(task);
        let _client = TcpStream::connect(addr).await.unwrap();
        let (stream, peer) = listener.accept().await.unwrap();
        let h1_ctx = ctx(peer);
        let h1_bytes = std::mem::size_of_val(&serve_h1(&generation, &h1_ctx, stream));
        // Of which HTTP/1's own loop, between requests (a request's state is boxed); it
        // borrows the stream, as `serve_h1` lends it.
        let _client = TcpStream::connect(addr).await.unwrap();
        let (mut stream, _) = listener.accept().await.unwrap();
        let serve_bytes =
            std::mem::size_of_val(&crate::h1::serve(&mut stream, &h1_ctx, &generation.limits));
        // A TLS connection's own future, around the handshake and the protocol's.
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        let signer = rustls::crypto::ring::sign::any_supported_type(&der).unwrap();
        let certified = rustls::sign::CertifiedKey::new(vec![cert.der().clone()], signer);
        let tls = TlsListener {
            server: crate::tls::server_config(crate::tls::ServerSettings {
                resolver: crate::tls::SniResolver::new(Arc::new(certified), Vec::new()),
                client_ca: None,
                tls13_only: false,
            })
            .unwrap(),
            handshake_timeout: Duration::from_secs(10),
            files: Vec::new(),
            client_auth: None,
            tls13_only: false,
        };
        let _client = TcpStream::connect(addr).await.unwrap();
        let (stream, peer) = listener.accept().await.unwrap();
        let tls_bytes =
            std::mem::size_of_val(&tls_connection(&generation, &tls, ctx(peer), stream));
        eprintln!(
            "connection future {task_bytes} B, serve_h1 future {h1_bytes} B \
             (h1::serve {serve_bytes} B), tls_connection future {tls_bytes} B"
        );
        assert!(
            task_bytes <= 256,
            "a connection's task future is {task_bytes} B"
        );
        assert!(
            h1_bytes <= 512,
            "an HTTP/1 connection's future is {h1_bytes} B"
        );
        assert!(
            serve_bytes <= 128,
            "HTTP/1's loop between requests is {serve_bytes} B"
        );
        assert!(
            tls_bytes <= 256,
            "a TLS connection's future is {tls_bytes} B"
        );
    }

    #[test]
    fn admission_counts_per_address_and_in_total() {
        let gw = Arc::new(Gateway::new(
            &crate::cli::load(&crate::cli::read_source(None)).unwrap(),
            None,
        ));
        let l = Limits {
            max_connections: 3,
            max_connections_per_ip: 2,
            ..Limits::default()
        };
        let trusted = IpSet::new(vec![crate::net::parse_net("10.0.0.0/8").unwrap()]);
        let shared = Shared::new(Generation::new(gw, None, l));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "10.1.1.1".parse().unwrap();
        let a1 = Conns::admit(&shared, a, &l, &trusted).unwrap();
        let _a2 = Conns::admit(&shared, a, &l, &trusted).unwrap();
        assert_eq!(
            Conns::admit(&shared, a, &l, &trusted).err(),
            Some(Refused::TooManyFromAddress)
        );
        assert_eq!(shared.conns.open(), 2);
        // A trusted proxy is not capped per address, only in total.
        let _b1 = Conns::admit(&shared, b, &l, &trusted).unwrap();
        assert_eq!(
            Conns::admit(&shared, b, &l, &trusted).err(),
            Some(Refused::TooManyConnections)
        );
        drop(a1);
        assert_eq!(shared.conns.open(), 2);
        let _a3 = Conns::admit(&shared, a, &l, &trusted).unwrap();
        // IPv6 clients share their /64.
        let l6 = Limits {
            max_connections_per_ip: 1,
            ..l
        };
        let shared6 = Shared::new(Generation::new(shared.current().gateway.clone(), None, l6));
        let _x = Conns::admit(
            &shared6,
            "2001:db8::1".parse().unwrap(),
            &l6,
            &IpSet::default(),
        )
        .unwrap();
        assert!(Conns::admit(
            &shared6,
            "2001:db8::2".parse().unwrap(),
            &l6,
            &IpSet::default()
        )
        .is_err());
        assert!(Conns::admit(
            &shared6,
            "2001:db8:0:1::1".parse().unwrap(),
            &l6,
            &IpSet::default()
        )
        .is_ok());
    }
}
