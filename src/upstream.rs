//! The upstream client: HTTP/1.1 over pooled keep-alive connections, plain TCP or TLS,
//! driven inside the request's own task. hyper's client hands every request to a
//! separate connection task through a channel and back through a oneshot (two task
//! wake-ups and a queue per request); here the request task writes the request and reads
//! the answer itself, so a forward costs one `write` and usually one `read`. Requests
//! are ours to serialise (headers already validated by `http`, which refuses CR/LF in
//! values); responses are parsed with `httparse` and framed by Content-Length, chunked
//! coding or close.
//!
//! https upstreams are spoken to through rustls with the route's [`ClientTls`] (roots,
//! optional client certificate, the name to verify). A failed handshake is
//! [`Reject::UpstreamTls`], and so is a TLS alert in place of the answer (how a TLS 1.3
//! upstream refuses our client certificate); the handshake shares the TCP connect's
//! `connect_timeout`, and running out of it is [`Reject::UpstreamUnreachable`] either way.
//!
//! Each pool opens at most `max_per_host` connections at once, idle or busy: a request
//! that finds none idle and none to open waits, within its own upstream timeout, for a
//! connection to come back or to close. The limit protects the upstream from a burst of
//! senders; it does not queue beyond the request's timeout.
//!
//! A pooled connection the upstream closed while it sat idle fails before a byte of the
//! answer arrives; such a request is retried once on a new connection. Nothing else is
//! retried: a webhook must not be delivered twice because of the gateway.

use crate::answer::Answer;
use crate::config::PoolSettings;
use crate::pipeline::Reject;
use crate::tls::ClientTls;
use bytes::{Buf, Bytes, BytesMut};
use http::header::HeaderName;
use http::uri::Authority;
use http::StatusCode;
use rustls::pki_types::ServerName;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// The most of an upstream's response body we relay to the sender. Webhook answers are
/// tiny (SecurityScorecard caps them at 100 KB); a bigger one is an upstream fault.
pub const MAX_UPSTREAM_RESPONSE: usize = 1 << 20;
/// The largest response head we accept from an upstream.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Response header fields we parse at most.
const MAX_RESPONSE_HEADERS: usize = 100;
/// Over plain TCP, bodies up to this size are copied behind the head and sent in one
/// write (over TLS, rustls packs head and body into records without that copy).
const COALESCE_BODY: usize = 16 * 1024;
const READ_CHUNK: usize = 8 * 1024;

/// One kept-alive connection and its buffers.
struct Conn {
    stream: Stream,
    /// Reused for every request head written on this connection.
    head: Vec<u8>,
    /// Reused for every response read on this connection (empty between exchanges).
    read: BytesMut,
    idle_since: Instant,
    /// The exchange deadline's timer, kept with the connection and moved forward for
    /// each exchange: a later deadline only updates the registered one (tokio extends
    /// a registered timer with one atomic operation), where a timer per exchange is
    /// inserted into and removed from the timer wheel every time. Made at the first
    /// exchange; it may fire once while the connection is idle (a spurious wake-up of
    /// the task that last used it).
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Counts this connection against `max_per_host` for as long as it is open, idle
    /// included; dropping the connection gives it back.
    permit: OwnedSemaphorePermit,
}

/// A connection's transport. An enum rather than a generic or a boxed trait object, so
/// the plain path stays monomorphic and allocation-free.
enum Stream {
    Plain(TcpStream),
    /// Boxed: a rustls client connection is over a kilobyte, which plain connections
    /// should not carry.
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Idle lists per pool: one per worker thread (a worker's index modulo this).
const IDLE_LISTS: usize = 16;

thread_local! {
    static WORKER: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Marks the calling thread as worker `index`: its requests reuse the idle connections
/// it opened, which its own event loop drives (see [`Pool`]).
pub fn set_worker(index: usize) {
    WORKER.with(|w| w.set(index));
}

fn idle_list() -> usize {
    WORKER.with(|w| w.get()) % IDLE_LISTS
}

/// Connections to one upstream: the idle ones (most recently used last), and a permit
/// per open connection so that no more than `max_per_host` are open at once.
///
/// Each worker thread keeps its own idle list: a connection is registered with the
/// event loop of the thread that opened it, and reusing it on another would make every
/// read a cross-thread wake-up. A worker that finds no idle connection of its own and no
/// permit closes another worker's idle one to free its permit, rather than wait for it.
pub struct Pool {
    authority: Authority,
    /// Set for an https upstream.
    tls: Option<ClientTls>,
    idle: [Mutex<Vec<Conn>>; IDLE_LISTS],
    settings: PoolSettings,
    permits: Arc<Semaphore>,
    /// The number of permits `permits` started with.
    limit: usize,
    /// Signalled when a connection goes back to the idle list. A request waiting on the
    /// semaphore would not notice: the permit it waits for is now held by the idle
    /// connection, which only a checkout can take.
    returned: Notify,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("authority", &self.authority)
            .field("tls", &self.tls)
            .finish()
    }
}

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    None,
    Length(usize),
    Chunked,
    Close,
}

/// Why an exchange failed, and whether a retry on a fresh connection is safe.
#[derive(Debug)]
struct Failure {
    reject: Reject,
    /// The connection was reused and died before any byte of the answer arrived.
    stale: bool,
}

/// How an exchange on one connection ended badly.
enum Failed {
    /// A stale connection: the request goes once more on a new connection, under the
    /// dead one's permit. Waiting for another permit instead could wait forever on the
    /// idle connections of this very pool.
    Stale(OwnedSemaphorePermit),
    Final(Reject),
}

/// What a request sends on: an idle connection, or the right to open one.
enum Slot {
    Idle(Conn),
    Fresh(OwnedSemaphorePermit),
}

impl Pool {
    /// A pool of plain TCP connections (default port 80).
    pub fn new(authority: Authority, settings: PoolSettings) -> Pool {
        Pool::with_tls(authority, settings, None)
    }

    /// A pool of TLS connections when `tls` is set (default port 443), of plain TCP
    /// ones otherwise.
    pub fn with_tls(authority: Authority, settings: PoolSettings, tls: Option<ClientTls>) -> Pool {
        // The config refuses 0; the clamp also keeps Semaphore::new from panicking.
        let limit = settings.max_per_host.clamp(1, Semaphore::MAX_PERMITS);
        Pool {
            authority,
            tls,
            idle: std::array::from_fn(|_| Mutex::new(Vec::new())),
            settings,
            permits: Arc::new(Semaphore::new(limit)),
            limit,
            returned: Notify::new(),
        }
    }

    /// Number of idle connections kept (all workers).
    pub fn idle_count(&self) -> usize {
        self.idle
            .iter()
            .map(|l| l.lock().map(|v| v.len()).unwrap_or(0))
            .sum()
    }

    /// Number of connections open now, idle or busy.
    pub fn open_count(&self) -> usize {
        self.limit - self.permits.available_permits()
    }

    /// Expired connections met on the way are dropped, which frees their permits.
    /// `now` is the caller's clock reading (the request's start on the request path).
    fn checkout(&self, now: Instant) -> Option<Conn> {
        let mut idle = self.idle[idle_list()].lock().ok()?;
        while let Some(conn) = idle.pop() {
            if now.saturating_duration_since(conn.idle_since) < self.settings.idle_timeout {
                return Some(conn);
            }
        }
        None
    }

    /// `since` is when the exchange began, not when it ended: no clock read per request,
    /// and the error (one exchange's duration) only ever retires a connection early.
    fn checkin(&self, mut conn: Conn, since: Instant) {
        if self.settings.max_idle_per_host == 0 {
            return;
        }
        conn.idle_since = since;
        if let Ok(mut idle) = self.idle[idle_list()].lock() {
            if idle.len() >= self.settings.max_idle_per_host {
                // Drop the coldest one.
                idle.remove(0);
            }
            idle.push(conn);
        }
        self.returned.notify_one();
    }

    /// After a look for an idle connection found none: a permit to open one, else waits
    /// for a permit or an idle connection (reuse first: an idle connection may hold the
    /// last permit).
    async fn slot(&self) -> Result<Slot, Reject> {
        match self.try_permit() {
            Some(permit) => Ok(Slot::Fresh(permit)),
            None => self.wait_for_slot().await,
        }
    }

    /// A permit if one is free, or can be freed by closing another worker's idle
    /// connection.
    fn try_permit(&self) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() {
            return Some(permit);
        }
        let mine = idle_list();
        for (i, list) in self.idle.iter().enumerate() {
            if i == mine {
                continue;
            }
            // Dropped outside the lock; dropping it gives its permit back.
            let foreign = list
                .lock()
                .ok()
                .and_then(|mut l| (!l.is_empty()).then(|| l.remove(0)));
            if let Some(conn) = foreign {
                drop(conn);
                return Arc::clone(&self.permits).try_acquire_owned().ok();
            }
        }
        None
    }

    async fn wait_for_slot(&self) -> Result<Slot, Reject> {
        loop {
            let returned = self.returned.notified();
            tokio::pin!(returned);
            // Registered before looking, so that a connection checked in between the
            // look and the wait still wakes us.
            returned.as_mut().enable();
            if let Some(conn) = self.checkout(Instant::now()) {
                return Ok(Slot::Idle(conn));
            }
            if let Some(permit) = self.try_permit() {
                return Ok(Slot::Fresh(permit));
            }
            tokio::select! {
                biased;
                permit = Arc::clone(&self.permits).acquire_owned() => {
                    // A connection that went idle meanwhile saves a connect (and a
                    // handshake); the permit then goes to the next waiter.
                    if let Some(conn) = self.checkout(Instant::now()) {
                        return Ok(Slot::Idle(conn));
                    }
                    // The semaphore is never closed.
                    return permit.map(Slot::Fresh).map_err(|_| Reject::UpstreamUnreachable);
                }
                () = &mut returned => {}
            }
        }
    }

    /// Opens a connection under `permit`. One `connect_timeout` covers the TCP connect
    /// and the TLS handshake: it bounds the time to a usable connection.
    async fn connect(&self, permit: OwnedSemaphorePermit) -> Result<Conn, Reject> {
        let deadline = tokio::time::Instant::now() + self.settings.connect_timeout;
        let tcp = self.connect_tcp(deadline).await?;
        let stream = match &self.tls {
            None => Stream::Plain(tcp),
            Some(tls) => Stream::Tls(Box::new(self.handshake(tls, tcp, deadline).await?)),
        };
        Ok(Conn {
            stream,
            head: Vec::with_capacity(2048),
            read: BytesMut::with_capacity(READ_CHUNK),
            idle_since: Instant::now(),
            timer: None,
            permit,
        })
    }

    async fn connect_tcp(&self, deadline: tokio::time::Instant) -> Result<TcpStream, Reject> {
        let host = self.authority.host();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let default_port = if self.tls.is_some() { 443 } else { 80 };
        let port = self.authority.port_u16().unwrap_or(default_port);
        let stream = tokio::time::timeout_at(deadline, TcpStream::connect((host, port)))
            .await
            .map_err(|_| Reject::UpstreamUnreachable)?
            .map_err(|_| Reject::UpstreamUnreachable)?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    /// Every handshake error (certificate, name, protocol, EOF) is `UpstreamTls`; the
    /// reason goes to the debug log, since the access log only has room for the reject.
    async fn handshake(
        &self,
        tls: &ClientTls,
        tcp: TcpStream,
        deadline: tokio::time::Instant,
    ) -> Result<TlsStream<TcpStream>, Reject> {
        let connector = TlsConnector::from(Arc::clone(&tls.config));
        let handshake = connector.connect(tls.server_name.clone(), tcp);
        match tokio::time::timeout_at(deadline, handshake).await {
            Err(_) => Err(Reject::UpstreamUnreachable),
            Ok(Err(e)) => {
                tracing::debug!(upstream = %self.authority, error = %e, "upstream TLS handshake failed");
                Err(Reject::UpstreamTls)
            }
            Ok(Ok(stream)) => Ok(stream),
        }
    }

    /// Sends one request and reads the whole answer. `head` writes the request head
    /// into a buffer (it may be called twice, for the one retry); the caller bounds the
    /// exchange in time, including the wait for a connection.
    pub async fn send<H: Fn(&mut Vec<u8>)>(&self, head: H, body: &Bytes) -> Result<Answer, Reject> {
        self.send_at(head, body, Instant::now(), None).await
    }

    /// `send` for an exchange that begins at `now` (a clock reading the caller has) and
    /// ends by `deadline`, if any (the wait for a connection included).
    async fn send_at<H: Fn(&mut Vec<u8>)>(
        &self,
        head: H,
        body: &Bytes,
        now: Instant,
        deadline: Option<Instant>,
    ) -> Result<Answer, Reject> {
        // An idle connection at once is the common case: its exchange is bounded by its
        // own timer. Waiting for a slot and connecting are bounded by a timer of their own.
        let (conn, reused) = match self.checkout(now) {
            Some(conn) => (conn, true),
            None => {
                let fresh = async {
                    match self.slot().await? {
                        Slot::Idle(conn) => Ok((conn, true)),
                        // Boxed: it happens once per connection, and its state (TCP and
                        // TLS) would otherwise size every request's future.
                        Slot::Fresh(permit) => Ok((Box::pin(self.connect(permit)).await?, false)),
                    }
                };
                within(deadline, fresh).await?
            }
        };
        match self
            .exchange(conn, &head, body, reused, now, deadline)
            .await
        {
            Ok(resp) => Ok(resp),
            Err(Failed::Final(reject)) => Err(reject),
            Err(Failed::Stale(permit)) => {
                let conn = within(deadline, Box::pin(self.connect(permit))).await?;
                match self.exchange(conn, &head, body, false, now, deadline).await {
                    Ok(resp) => Ok(resp),
                    Err(Failed::Final(reject)) => Err(reject),
                    // A fresh connection is never stale; answer as a broken one would.
                    Err(Failed::Stale(_)) => Err(Reject::UpstreamBroken),
                }
            }
        }
    }

    /// One request and answer on `conn`, which goes back to the pool if it may be reused.
    /// Past `deadline` the exchange is dropped, and the connection with it.
    async fn exchange<H: Fn(&mut Vec<u8>)>(
        &self,
        mut conn: Conn,
        head: &H,
        body: &Bytes,
        reused: bool,
        now: Instant,
        deadline: Option<Instant>,
    ) -> Result<Answer, Failed> {
        let talked = match deadline {
            None => talk(&mut conn, head, body, reused).await,
            Some(deadline) => {
                let mut timer = match conn.timer.take() {
                    Some(mut timer) => {
                        timer.as_mut().reset(deadline.into());
                        timer
                    }
                    None => Box::pin(tokio::time::sleep_until(deadline.into())),
                };
                let talked = {
                    let mut talking = std::pin::pin!(talk(&mut conn, head, body, reused));
                    std::future::poll_fn(|cx| match talking.as_mut().poll(cx) {
                        Poll::Ready(r) => Poll::Ready(Some(r)),
                        Poll::Pending => timer.as_mut().poll(cx).map(|()| None),
                    })
                    .await
                };
                conn.timer = Some(timer);
                talked.ok_or(Failed::Final(Reject::UpstreamTimeout))?
            }
        };
        match talked {
            Ok((resp, reusable)) => {
                if reusable {
                    self.checkin(conn, now);
                }
                Ok(resp)
            }
            Err(Failure { stale: true, .. }) => Err(Failed::Stale(conn.permit)),
            Err(Failure { reject, .. }) => Err(Failed::Final(reject)),
        }
    }
}

/// `fut` within `deadline`, if any; past it, `UpstreamTimeout`.
async fn within<T>(
    deadline: Option<Instant>,
    fut: impl Future<Output = Result<T, Reject>>,
) -> Result<T, Reject> {
    match deadline {
        Some(d) => tokio::time::timeout_at(d.into(), fut)
            .await
            .map_err(|_| Reject::UpstreamTimeout)?,
        None => fut.await,
    }
}

/// Writes the request and reads the answer; also says whether the connection may be
/// reused.
async fn talk<H: Fn(&mut Vec<u8>)>(
    conn: &mut Conn,
    head: &H,
    body: &Bytes,
    reused: bool,
) -> Result<(Answer, bool), Failure> {
    head(&mut conn.head);
    write_request(conn, body)
        .await
        .map_err(|past_head| Failure {
            reject: Reject::UpstreamBroken,
            stale: reused && !past_head,
        })?;
    let mut buf = std::mem::take(&mut conn.read);
    buf.clear();
    let (mut resp, framing, keep_alive) = read_head(&mut conn.stream, &mut buf, reused).await?;
    let (body, buf) = read_body(&mut conn.stream, buf, framing)
        .await
        .map_err(|e| Failure {
            reject: read_reject(&e),
            stale: false,
        })?;
    // Reuse requires the message to end exactly where the connection's data does.
    let reusable = keep_alive && buf.is_empty() && framing != Framing::Close;
    conn.read = buf;
    resp.body = body;
    Ok((resp, reusable))
}

/// Writes the head (already in `conn.head`) and the body. On failure, says whether a
/// big body's write failed after the head had gone out whole: until then the upstream
/// cannot have a request to act on, so a stale connection may be retried (a small body
/// travels in one piece with its head).
///
/// Plain TCP: a small body is copied behind the head for one `write` (cheaper than a
/// `writev` of two slices at this size); a big one goes out with the head in one
/// `writev`, without a copy, so the upstream gets no head-only segment to wake up and
/// ACK for. TLS: head and body go to rustls as one vectored write, which packs them
/// into as few records as their size allows (a copy is made anyway, into the records),
/// and the flush pushes out what rustls could not write yet.
async fn write_request(conn: &mut Conn, body: &Bytes) -> Result<(), bool> {
    // Written at once. Yielding first, so that a round's writes left in a burst and the
    // upstream woke once per burst, paid off at 128 concurrent senders but cost more
    // than it saved at 4 to 64 (bench/README.md, eleventh pass).
    let coalesce = body.len() <= COALESCE_BODY;
    if coalesce {
        if let Stream::Plain(s) = &mut conn.stream {
            conn.head.extend_from_slice(body);
            return s.write_all(&conn.head).await.map_err(|_| false);
        }
    }
    let mut out = Buf::chain(conn.head.as_slice(), &body[..]);
    let written = conn.stream.write_all_buf(&mut out).await;
    // Whether the head had gone out whole: `out` holds what was not written.
    let past_head = !coalesce && out.remaining() <= body.len();
    written.map_err(|_| past_head)?;
    conn.stream.flush().await.map_err(|_| !coalesce)
}

/// Reads until a final response head is complete; skips informational ones.
async fn read_head(
    stream: &mut Stream,
    buf: &mut BytesMut,
    reused: bool,
) -> Result<(Answer, Framing, bool), Failure> {
    let broken = |stale: bool| Failure {
        reject: Reject::UpstreamBroken,
        stale,
    };
    let mut answered = false;
    loop {
        if !buf.is_empty() {
            match parse_head(buf).map_err(|_| broken(false))? {
                Parsed::Partial if buf.len() > MAX_RESPONSE_HEAD => return Err(broken(false)),
                Parsed::Partial => {}
                Parsed::Informational(len) => {
                    // 100 Continue and friends: skip, the real answer follows.
                    buf.advance(len);
                    continue;
                }
                Parsed::Done {
                    len,
                    resp,
                    framing,
                    keep_alive,
                } => {
                    buf.advance(len);
                    return Ok((resp, framing, keep_alive));
                }
            }
        }
        // A reused connection that ends before the first byte of an answer was
        // closed by the upstream while idle: safe to retry.
        let stale = reused && !answered;
        let n = read_more(stream, buf).await.map_err(|e| Failure {
            reject: read_reject(&e),
            stale,
        })?;
        if n == 0 {
            return Err(broken(stale));
        }
        answered = true;
    }
}

/// A read that failed at the TLS layer (an alert from the upstream, a record that does
/// not decrypt) is `UpstreamTls`, not a broken connection: with TLS 1.3 an upstream
/// refuses our client certificate only after our side of the handshake is done, and
/// its alert arrives here, in place of the answer.
fn read_reject(e: &io::Error) -> Reject {
    match e.get_ref() {
        Some(inner) if inner.is::<rustls::Error>() => Reject::UpstreamTls,
        _ => Reject::UpstreamBroken,
    }
}

/// Reads more bytes into `buf`; returns how many (0 at end of stream).
async fn read_more(stream: &mut Stream, buf: &mut BytesMut) -> io::Result<usize> {
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(READ_CHUNK);
    }
    stream.read_buf(buf).await
}

pub(crate) enum Parsed {
    Partial,
    Informational(usize),
    Done {
        len: usize,
        resp: Answer,
        framing: Framing,
        keep_alive: bool,
    },
}

#[derive(Debug)]
pub(crate) struct Malformed;

/// Parses a response head, and decides how its body is framed and whether the
/// connection may be reused. The fields kept are the end-to-end ones: hop-by-hop fields
/// and Content-Length (the sender's answer gets its own) are read for framing and
/// dropped. Pure, so it is tested without a socket. Requests are always POSTs, so a
/// response to HEAD never needs framing here.
pub(crate) fn parse_head(buf: &[u8]) -> Result<Parsed, Malformed> {
    // Uninitialised slots: zeroing them would cost a few KiB of stores per read.
    let mut slots = [std::mem::MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_RESPONSE_HEADERS];
    let mut parsed = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut parsed, buf, &mut slots)
        .map_err(|_| Malformed)?
    {
        httparse::Status::Partial => return Ok(Parsed::Partial),
        httparse::Status::Complete(len) => len,
    };
    let code = parsed.code.ok_or(Malformed)?;
    let status = StatusCode::from_u16(code).map_err(|_| Malformed)?;
    if status.is_informational() {
        if code == 101 {
            return Err(Malformed); // we never ask to upgrade
        }
        return Ok(Parsed::Informational(len));
    }
    let http10 = parsed.version == Some(0);
    // The end-to-end fields as header lines, copied once (room for the gateway's own).
    let mut lines = Vec::with_capacity(len + 64);
    let mut has_date = false;
    let mut length: Option<usize> = None;
    let mut chunked = false;
    let mut has_te = false;
    let (mut saw_close, mut saw_keep_alive) = (false, false);
    for h in parsed.headers.iter() {
        // Validated as a HeaderName and a HeaderValue would be (the rules the answer's
        // lines keep).
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| Malformed)?;
        if !crate::answer::valid_value(h.value) {
            return Err(Malformed);
        }
        if name == http::header::CONTENT_LENGTH {
            let text = std::str::from_utf8(h.value).map_err(|_| Malformed)?.trim();
            if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Malformed);
            }
            let n: usize = text.parse().map_err(|_| Malformed)?;
            if length.is_some_and(|l| l != n) {
                return Err(Malformed);
            }
            length = Some(n);
            continue;
        } else if name == http::header::TRANSFER_ENCODING {
            has_te = true;
            let text = std::str::from_utf8(h.value).map_err(|_| Malformed)?;
            // Several fields are one list: the last coding of all decides, and empty
            // elements ("chunked, " or an empty field) do not count.
            if let Some(last) = text.rsplit(',').map(str::trim).find(|c| !c.is_empty()) {
                chunked = last.eq_ignore_ascii_case("chunked");
            }
        } else if name == http::header::CONNECTION {
            let text = std::str::from_utf8(h.value).unwrap_or("");
            for token in text.split(',').map(str::trim) {
                // "close" anywhere wins; "keep-alive" only matters for HTTP/1.0.
                saw_close |= token.eq_ignore_ascii_case("close");
                saw_keep_alive |= token.eq_ignore_ascii_case("keep-alive");
            }
        }
        // The sender gets the gateway's request id, never the upstream's.
        if !crate::forward::is_hop_by_hop(name.as_str()) && name != crate::forward::X_REQUEST_ID {
            has_date |= name == http::header::DATE;
            crate::answer::push_line(&mut lines, name.as_str().as_bytes(), h.value);
        }
    }
    let close = saw_close || (http10 && !saw_keep_alive);
    let framing = if code == 204 || code == 304 {
        Framing::None
    } else if has_te {
        // Transfer-Encoding wins over Content-Length (RFC 9112 §6.3); anything but a
        // final chunked coding runs to the end of the connection.
        if chunked {
            Framing::Chunked
        } else {
            Framing::Close
        }
    } else {
        match length {
            Some(0) => Framing::None,
            Some(n) if n > MAX_UPSTREAM_RESPONSE => return Err(Malformed),
            Some(n) => Framing::Length(n),
            None => Framing::Close,
        }
    };
    let resp = Answer::from_lines(status, lines, has_date);
    Ok(Parsed::Done {
        len,
        resp,
        framing,
        keep_alive: !(close || (has_te && length.is_some())),
    })
}

/// Bodies up to this size are copied out of the read buffer, so that the buffer stays
/// unshared and is reused for the connection's next answer without an allocation.
const COPY_BODY: usize = 4096;

/// Reads the body as framed. Returns it, and what is left in the buffer behind it
/// (anything there means the upstream sent more than one message: no reuse).
async fn read_body(
    stream: &mut Stream,
    mut buf: BytesMut,
    framing: Framing,
) -> io::Result<(Bytes, BytesMut)> {
    let too_big = || io::Error::new(io::ErrorKind::InvalidData, "upstream response too large");
    match framing {
        Framing::None => Ok((Bytes::new(), buf)),
        Framing::Length(n) => {
            while buf.len() < n {
                if buf.capacity() < n {
                    buf.reserve(n - buf.len());
                }
                if stream.read_buf(&mut buf).await? == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
            }
            let body = if n <= COPY_BODY {
                let body = Bytes::copy_from_slice(&buf[..n]);
                buf.advance(n);
                body
            } else {
                buf.split_to(n).freeze()
            };
            Ok((body, buf))
        }
        Framing::Close => {
            loop {
                if buf.len() > MAX_UPSTREAM_RESPONSE {
                    return Err(too_big());
                }
                if read_more(stream, &mut buf).await? == 0 {
                    break;
                }
            }
            Ok((buf.freeze(), BytesMut::new()))
        }
        Framing::Chunked => {
            let mut body = BytesMut::new();
            let mut decoder = Chunked::default();
            loop {
                match decoder
                    .decode(&mut buf, &mut body)
                    .map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?
                {
                    true => return Ok((body.freeze(), buf)),
                    false => {
                        if body.len() > MAX_UPSTREAM_RESPONSE {
                            return Err(too_big());
                        }
                        if read_more(stream, &mut buf).await? == 0 {
                            return Err(io::ErrorKind::UnexpectedEof.into());
                        }
                    }
                }
            }
        }
    }
}

/// The chunked transfer coding of a response: the request side's strict decoder
/// ([`crate::h1::codec::Chunked`]), with the body collected into `out` under the response
/// size limit.
#[derive(Debug, Default)]
pub(crate) struct Chunked(crate::h1::codec::Chunked);

impl Chunked {
    /// Consumes what it can of `buf` into `out`; `Ok(true)` once the message is complete.
    pub(crate) fn decode(
        &mut self,
        buf: &mut BytesMut,
        out: &mut BytesMut,
    ) -> Result<bool, Malformed> {
        use crate::h1::codec::Chunk;
        loop {
            let step = self.0.decode(buf).map_err(|_| Malformed)?;
            // A chunk that would take the body over the limit is refused as soon as its
            // size is known.
            let announced = self.0.chunk_left().saturating_add(out.len() as u64);
            if announced > MAX_UPSTREAM_RESPONSE as u64 {
                return Err(Malformed);
            }
            match step {
                Chunk::Data(data) => {
                    if out.len() + data.len() > MAX_UPSTREAM_RESPONSE {
                        return Err(Malformed);
                    }
                    out.extend_from_slice(&data);
                }
                Chunk::NeedMore => return Ok(false),
                Chunk::End => return Ok(true),
            }
        }
    }
}

/// One pool per upstream and TLS setting, shared by the routes that forward there.
#[derive(Debug, Default)]
pub struct Pools {
    by_key: HashMap<PoolKey, Arc<Pool>>,
    /// The previous generation's pools, while a reloaded config is built.
    previous: HashMap<PoolKey, Arc<Pool>>,
}

/// Routes share connections only if they would have opened identical ones: same
/// authority, same scheme, and for https the same client config (roots, client
/// certificate) and the same name to verify, so that a connection verified for one
/// route's name or opened with one route's client certificate never carries another's
/// requests. Client configs are built once per distinct setting at config load, so the
/// config's address identifies the setting (two equal settings built apart only cost a
/// pool more); and the pool in the map keeps its config alive, so the address cannot be
/// reused by another config while the key exists.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PoolKey {
    /// Lower-cased.
    authority: String,
    /// `None` for http.
    tls: Option<(usize, ServerName<'static>)>,
}

impl Pools {
    /// The plain (http) pool for `authority`.
    pub fn pool_for(&mut self, authority: &Authority, settings: PoolSettings) -> Arc<Pool> {
        self.pool_for_tls(authority, settings, None)
    }

    /// The pool for `authority` over TLS with `tls`, or over plain TCP if `None`.
    /// `settings` apply to a pool made by this call; an existing one keeps its own.
    pub fn pool_for_tls(
        &mut self,
        authority: &Authority,
        settings: PoolSettings,
        tls: Option<ClientTls>,
    ) -> Arc<Pool> {
        let key = PoolKey {
            authority: authority.as_str().to_ascii_lowercase(),
            tls: tls
                .as_ref()
                .map(|t| (Arc::as_ptr(&t.config) as usize, t.server_name.clone())),
        };
        let reusable = self
            .previous
            .get(&key)
            .filter(|p| p.settings == settings)
            .cloned();
        self.by_key
            .entry(key)
            .or_insert_with(|| {
                reusable
                    .unwrap_or_else(|| Arc::new(Pool::with_tls(authority.clone(), settings, tls)))
            })
            .clone()
    }

    /// An empty set for a reloaded config that takes over `self`'s pools where nothing
    /// changed: a pool asked for again with the same upstream, TLS setting and pool
    /// settings keeps its idle connections and its limit. Call
    /// [`Pools::forget_previous`] once every route has its pool.
    pub fn reuse(&self) -> Pools {
        Pools {
            by_key: HashMap::new(),
            previous: self.by_key.clone(),
        }
    }

    /// Lets go of the previous generation's pools not taken over.
    pub fn forget_previous(&mut self) {
        self.previous.clear();
    }
}

/// Sends a request through `pool` within `timeout` of `start`, the wait for a
/// connection included. `start` is the caller's clock reading (the request's start on
/// the request path), so that the exchange reads no clock of its own.
pub async fn send<H: Fn(&mut Vec<u8>)>(
    pool: &Pool,
    head: H,
    body: &Bytes,
    timeout: Duration,
    start: Instant,
) -> Result<Answer, Reject> {
    // A timeout past the clock's range does not expire.
    pool.send_at(head, body, start, start.checked_add(timeout))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::net::TcpListener;

    fn head(raw: &str) -> Parsed {
        parse_head(raw.as_bytes()).unwrap()
    }

    fn done(raw: &str) -> (usize, Answer, Framing, bool) {
        match head(raw) {
            Parsed::Done {
                len,
                resp,
                framing,
                keep_alive,
            } => (len, resp, framing, keep_alive),
            _ => panic!("not a complete head: {raw:?}"),
        }
    }

    #[test]
    fn framing_and_reuse_from_the_head() {
        let (_, r, f, ka) = done(
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-a: b\r\nX-Request-Id: up-1\r\n\r\nhello",
        );
        assert_eq!((r.status.as_u16(), f, ka), (200, Framing::Length(5), true));
        // The end-to-end fields as lines; the framing ones are this hop's, not kept,
        // nor is the upstream's request id (the sender gets the gateway's).
        assert_eq!(r.lines(), b"x-a: b\r\n");
        assert_eq!(r.get("x-request-id"), None);
        let (_, _, f, ka) = done("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n");
        assert_eq!((f, ka), (Framing::Chunked, true));
        let (_, _, f, _) = done("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, \r\n\r\n");
        assert_eq!(
            f,
            Framing::Chunked,
            "found by the response_head fuzz target"
        );
        let (_, _, f, _) = done("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n");
        assert_eq!(f, Framing::Close);
        let (_, _, f, ka) = done("HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!((f, ka), (Framing::Close, true));
        let (_, _, f, ka) = done("HTTP/1.1 204 No Content\r\n\r\n");
        assert_eq!((f, ka), (Framing::None, true));
        let (_, _, _, ka) =
            done("HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        assert!(!ka);
        let (_, _, _, ka) = done("HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n");
        assert!(!ka);
        let (_, _, _, ka) =
            done("HTTP/1.0 200 OK\r\ncontent-length: 0\r\nconnection: keep-alive\r\n\r\n");
        assert!(ka);
        // CL and TE together: TE frames it, and the connection is not trusted after.
        let (_, _, f, ka) =
            done("HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n");
        assert_eq!((f, ka), (Framing::Chunked, false));
    }

    #[test]
    fn close_anywhere_wins() {
        // Found by the response_head fuzz target.
        let raw = "HTTP/1.0 200 OK\r\nconnection: close\r\nconnection: keep-alive\r\ncontent-length: 0\r\n\r\n";
        assert!(!done(raw).3);
        let raw = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked,\r\ntransfer-encoding:\r\n\r\n";
        assert_eq!(done(raw).2, Framing::Chunked);
    }

    #[test]
    fn informational_partial_and_malformed_heads() {
        assert!(matches!(
            head("HTTP/1.1 100 Continue\r\n\r\n"),
            Parsed::Informational(25)
        ));
        assert!(matches!(
            head("HTTP/1.1 200 OK\r\ncontent-le"),
            Parsed::Partial
        ));
        for bad in [
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: +5\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 99999999999\r\n\r\n",
            "HTTP/1.1 101 Switching Protocols\r\n\r\n",
            "garbage\r\n\r\n",
        ] {
            assert!(parse_head(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn chunked_decoding_incrementally() {
        let wire = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: 1\r\n\r\n";
        // Feed it one byte at a time: the decoder must carry its state across reads.
        let mut dec = Chunked::default();
        let mut buf = BytesMut::new();
        let mut out = BytesMut::new();
        let mut finished = false;
        for &b in wire.iter() {
            buf.extend_from_slice(&[b]);
            if dec.decode(&mut buf, &mut out).unwrap() {
                finished = true;
            }
        }
        assert!(finished);
        assert_eq!(&out[..], b"hello world");
        for bad in [
            &b"zz\r\n"[..],
            b"5\r\nhelloXX",
            b"123456789\r\n",
            b"+5\r\nhello\r\n",
        ] {
            let mut buf = BytesMut::from(bad);
            assert!(
                Chunked::default()
                    .decode(&mut buf, &mut BytesMut::new())
                    .is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn only_end_to_end_fields_are_kept() {
        let (_, r, _, _) = done("HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: keep-alive\r\nkeep-alive: timeout=5\r\nX-App: 1\r\ncontent-type: text/plain\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\nok");
        // Names in lower case, values as sent, in order; the upstream's date is kept.
        assert_eq!(
            r.lines(),
            b"x-app: 1\r\ncontent-type: text/plain\r\ndate: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
        );
        assert!(r.has_date());
        // A value a header line cannot hold refuses the head.
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nx-a: a\x7fb\r\n\r\n").is_err());
    }

    /// A raw upstream that answers each connection's requests from a script.
    async fn scripted(
        answers: Vec<Vec<&'static [u8]>>,
    ) -> (Authority, tokio::task::JoinHandle<Vec<Vec<u8>>>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let auth: Authority = l.local_addr().unwrap().to_string().parse().unwrap();
        let task = tokio::spawn(async move {
            let mut seen = Vec::new();
            for per_conn in answers {
                let (mut s, _) = l.accept().await.unwrap();
                for answer in per_conn {
                    let mut buf = vec![0u8; 65536];
                    let n = s.read(&mut buf).await.unwrap();
                    seen.push(buf[..n].to_vec());
                    if answer.is_empty() {
                        break; // close without answering
                    }
                    s.write_all(answer).await.unwrap();
                }
            }
            seen
        });
        (auth, task)
    }

    fn settings() -> PoolSettings {
        PoolSettings {
            max_per_host: 16,
            max_idle_per_host: 4,
            idle_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(2),
        }
    }

    /// A request head writer, as the server passes one.
    fn req(auth: &Authority, path: &'static str) -> impl Fn(&mut Vec<u8>) {
        let host = auth.to_string();
        move |out: &mut Vec<u8>| {
            out.clear();
            out.extend_from_slice(
                format!("POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-length: 4\r\n\r\n")
                    .as_bytes(),
            );
        }
    }

    #[tokio::test]
    async fn keep_alive_reuse_chunked_and_continue() {
        let (auth, server) = scripted(vec![vec![
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 Accepted\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            b"HTTP/1.1 406 Not Acceptable\r\ncontent-length: 1\r\nconnection: close\r\n\r\nn",
        ]])
        .await;
        let pool = Pool::new(auth.clone(), settings());
        let body = Bytes::from_static(b"data");
        let r = pool.send(req(&auth, "/a"), &body).await.unwrap();
        assert_eq!((r.status.as_u16(), &r.body[..]), (200, &b"ok"[..]));
        assert_eq!(pool.idle_count(), 1);
        let r = pool.send(req(&auth, "/b"), &body).await.unwrap();
        assert_eq!((r.status.as_u16(), &r.body[..]), (202, &b"abc"[..]));
        let r = pool.send(req(&auth, "/c"), &body).await.unwrap();
        assert_eq!(r.status, 406);
        assert_eq!(pool.idle_count(), 0, "connection: close is not pooled");
        let seen = server.await.unwrap();
        assert_eq!(seen.len(), 3, "all three on one connection");
        assert!(seen[1].starts_with(b"POST /b HTTP/1.1\r\n") && seen[1].ends_with(b"\r\n\r\ndata"));
    }

    #[tokio::test]
    async fn a_stale_pooled_connection_is_retried_once_on_a_new_one() {
        let (auth, server) = scripted(vec![
            // First connection: one answer, then it closes on the next request.
            vec![b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\n1", b""],
            vec![b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\n2"],
        ])
        .await;
        let pool = Pool::new(auth.clone(), settings());
        let body = Bytes::from_static(b"data");
        assert_eq!(
            &pool.send(req(&auth, "/"), &body).await.unwrap().body[..],
            b"1"
        );
        assert_eq!(
            &pool.send(req(&auth, "/"), &body).await.unwrap().body[..],
            b"2"
        );
        assert_eq!(server.await.unwrap().len(), 3);
    }

    /// A body too big to copy behind its head goes out with it in vectored writes: the
    /// upstream reads the head and every byte of the body, in order, on one connection
    /// that stays pooled. 256 KiB is more than a loopback socket takes in one write, so
    /// the partial-write loop runs too.
    #[tokio::test]
    async fn a_big_body_goes_out_whole_behind_its_head() {
        let body: Bytes = (0..256 * 1024u32).map(|i| (i % 251) as u8).collect();
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let auth: Authority = l.local_addr().unwrap().to_string().parse().unwrap();
        let want = body.len();
        let server = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut seen = Vec::new();
            for _ in 0..2 {
                let mut got = Vec::new();
                let mut buf = vec![0u8; 65536];
                loop {
                    let n = s.read(&mut buf).await.unwrap();
                    assert!(n > 0, "upstream closed mid-request");
                    got.extend_from_slice(&buf[..n]);
                    let head = got.windows(4).position(|w| w == b"\r\n\r\n");
                    if head.is_some_and(|h| got.len() >= h + 4 + want) {
                        break;
                    }
                }
                s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await
                    .unwrap();
                seen.push(got);
            }
            seen
        });
        let pool = Pool::new(auth.clone(), settings());
        let host = auth.to_string();
        let head = move |out: &mut Vec<u8>| {
            out.clear();
            out.extend_from_slice(
                format!("POST /big HTTP/1.1\r\nhost: {host}\r\ncontent-length: {want}\r\n\r\n")
                    .as_bytes(),
            );
        };
        for _ in 0..2 {
            let r = pool.send(&head, &body).await.unwrap();
            assert_eq!((r.status.as_u16(), &r.body[..]), (200, &b"ok"[..]));
        }
        assert_eq!(pool.idle_count(), 1);
        let mut expected = Vec::new();
        head(&mut expected);
        let head_len = expected.len();
        expected.extend_from_slice(&body);
        for got in server.await.unwrap() {
            assert_eq!(got.len(), expected.len());
            assert!(got == expected, "the bytes differ from head + body");
            assert!(got[..head_len].starts_with(b"POST /big HTTP/1.1\r\n"));
        }
    }

    #[tokio::test]
    async fn a_fresh_connection_that_fails_is_not_retried() {
        let (auth, server) = scripted(vec![vec![b""]]).await;
        let pool = Pool::new(auth.clone(), settings());
        let r = pool
            .send(req(&auth, "/"), &Bytes::from_static(b"data"))
            .await;
        assert_eq!(r.unwrap_err(), Reject::UpstreamBroken);
        assert_eq!(server.await.unwrap().len(), 1, "sent once");
    }

    #[tokio::test]
    async fn close_delimited_and_oversized_answers() {
        let (auth, _server) = scripted(vec![vec![b"HTTP/1.1 200 OK\r\n\r\nuntil close"]]).await;
        let pool = Pool::new(auth.clone(), settings());
        let r = pool
            .send(req(&auth, "/"), &Bytes::from_static(b"data"))
            .await;
        // The scripted server closes after its answer, which ends the body.
        assert_eq!(&r.unwrap().body[..], b"until close");
        assert_eq!(pool.idle_count(), 0);

        let (auth, _server) = scripted(vec![vec![
            b"HTTP/1.1 200 OK\r\ncontent-length: 2000000\r\n\r\n",
        ]])
        .await;
        let pool = Pool::new(auth.clone(), settings());
        let r = pool
            .send(req(&auth, "/"), &Bytes::from_static(b"data"))
            .await;
        assert_eq!(r.unwrap_err(), Reject::UpstreamBroken);
    }

    #[tokio::test]
    async fn refused_is_unreachable() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let auth: Authority = l.local_addr().unwrap().to_string().parse().unwrap();
        drop(l);
        let pool = Pool::new(auth.clone(), settings());
        let r = pool
            .send(req(&auth, "/"), &Bytes::from_static(b"data"))
            .await;
        assert_eq!(r.unwrap_err(), Reject::UpstreamUnreachable);
    }

    /// A keep-alive upstream that answers each request of `req()` after `delay`. Counts
    /// the connections it accepted, and the most requests it had in hand at once.
    async fn slow_upstream(delay: Duration) -> (Authority, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let auth: Authority = l.local_addr().unwrap().to_string().parse().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let busy = Arc::new(AtomicUsize::new(0));
        let (acc, pk) = (accepted.clone(), peak.clone());
        tokio::spawn(async move {
            loop {
                let (s, _) = l.accept().await.unwrap();
                acc.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve_slowly(s, delay, busy.clone(), pk.clone()));
            }
        });
        (auth, accepted, peak)
    }

    async fn serve_slowly(
        mut s: TcpStream,
        delay: Duration,
        busy: Arc<AtomicUsize>,
        peak: Arc<AtomicUsize>,
    ) {
        let mut buf = Vec::new();
        loop {
            // `req()` sends a head and a 4-byte body.
            let end = loop {
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    if buf.len() >= i + 8 {
                        break i + 8;
                    }
                }
                let mut chunk = [0u8; 4096];
                match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            };
            buf.drain(..end);
            let now = busy.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(delay).await;
            busy.fetch_sub(1, Ordering::SeqCst);
            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
            if s.write_all(answer).await.is_err() {
                return;
            }
        }
    }

    fn limited(max_per_host: usize, max_idle_per_host: usize) -> PoolSettings {
        PoolSettings {
            max_per_host,
            max_idle_per_host,
            ..settings()
        }
    }

    const LONG: Duration = Duration::from_secs(5);

    /// `send` within `timeout` from now.
    async fn send_now(
        pool: &Pool,
        head: impl Fn(&mut Vec<u8>),
        body: &Bytes,
        timeout: Duration,
    ) -> Result<Answer, Reject> {
        send(pool, head, body, timeout, Instant::now()).await
    }

    /// The deadline holds on a pooled connection (its own timer, moved forward per
    /// exchange) as on a fresh one: answered, answered, then an upstream that never
    /// answers is a timeout at the deadline, and that connection is not reused.
    #[tokio::test]
    async fn the_deadline_holds_on_a_pooled_connection() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let auth: Authority = l.local_addr().unwrap().to_string().parse().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                let n = counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    // The first connection answers twice, then reads and never answers.
                    for i in 0.. {
                        if s.read(&mut buf).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if n == 0 && i == 2 {
                            std::future::pending::<()>().await;
                        }
                        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        s.write_all(ok).await.unwrap();
                    }
                });
            }
        });
        let pool = Pool::new(auth.clone(), settings());
        let body = Bytes::from_static(b"data");
        let short = Duration::from_millis(200);
        for path in ["/a", "/b"] {
            let r = send_now(&pool, req(&auth, path), &body, short).await;
            assert_eq!(r.unwrap().status, 200);
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "the second reused the first"
        );
        let started = Instant::now();
        let c = send(&pool, req(&auth, "/c"), &body, short, started);
        let r = tokio::time::timeout(LONG, c)
            .await
            .expect("bounded by its deadline");
        assert_eq!(r.err(), Some(Reject::UpstreamTimeout));
        let took = started.elapsed();
        assert!(
            took >= short && took < short * 5,
            "timed out after {took:?}"
        );
        assert_eq!(
            pool.idle_count(),
            0,
            "the timed-out connection is not pooled"
        );
        // The next request gets a new connection and its answer in time.
        let r = send_now(&pool, req(&auth, "/d"), &body, short).await;
        assert_eq!(r.unwrap().status, 200);
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    /// Two concurrent requests through a pool limited to one connection, keeping up to
    /// `max_idle` idle: both succeed, never at once. Returns the pool and the number of
    /// connections the upstream accepted.
    async fn two_through_one(max_idle: usize) -> (Pool, usize) {
        let (auth, accepted, peak) = slow_upstream(Duration::from_millis(100)).await;
        let pool = Pool::new(auth.clone(), limited(1, max_idle));
        let body = Bytes::from_static(b"data");
        let (a, b) = tokio::join!(
            send_now(&pool, req(&auth, "/a"), &body, LONG),
            send_now(&pool, req(&auth, "/b"), &body, LONG),
        );
        assert_eq!(a.unwrap().status, 200);
        assert_eq!(b.unwrap().status, 200);
        assert_eq!(peak.load(Ordering::SeqCst), 1, "never two requests at once");
        let accepted = accepted.load(Ordering::SeqCst);
        (pool, accepted)
    }

    #[tokio::test]
    async fn the_per_host_limit_makes_a_request_wait_for_the_busy_connection() {
        let (pool, accepted) = two_through_one(4).await;
        // The second took the first's connection when it went idle.
        assert_eq!(accepted, 1);
        assert_eq!((pool.open_count(), pool.idle_count()), (1, 1));
    }

    #[tokio::test]
    async fn a_worker_reuses_its_own_idle_connections_and_frees_another_workers() {
        let (auth, accepted, _) = slow_upstream(Duration::ZERO).await;
        let pool = Arc::new(Pool::new(auth.clone(), limited(1, 4)));
        let body = Bytes::from_static(b"data");
        // Worker 0 (this thread) opens the only connection the pool allows; it goes idle.
        assert_eq!(
            send_now(&pool, req(&auth, "/a"), &body, LONG)
                .await
                .unwrap()
                .status,
            200
        );
        assert_eq!((pool.open_count(), pool.idle_count()), (1, 1));
        // Worker 1, on its own thread and event loop: no idle connection of its own and
        // no permit, so it closes worker 0's idle one and opens its own, without waiting.
        let (p, a) = (pool.clone(), auth.clone());
        // Joined off this event loop, which runs the upstream meanwhile.
        let worker = std::thread::spawn(move || {
            set_worker(1);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let started = Instant::now();
                let data = Bytes::from_static(b"data");
                let status = send_now(&p, req(&a, "/b"), &data, LONG)
                    .await
                    .unwrap()
                    .status;
                assert!(started.elapsed() < Duration::from_secs(2), "it waited");
                // Its next request reuses its own connection.
                send_now(&p, req(&a, "/c"), &data, LONG).await.unwrap();
                status
            })
        });
        let status = tokio::task::spawn_blocking(move || worker.join().unwrap())
            .await
            .unwrap();
        assert_eq!(status, 200);
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        assert_eq!((pool.open_count(), pool.idle_count()), (1, 1));
        // That idle connection is worker 1's: worker 0 now frees it in turn.
        assert_eq!(
            send_now(&pool, req(&auth, "/d"), &body, LONG)
                .await
                .unwrap()
                .status,
            200
        );
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_closed_connection_frees_its_place_for_a_waiting_request() {
        // Nothing is kept idle: the second request needs the first's permit back.
        let (pool, accepted) = two_through_one(0).await;
        assert_eq!(accepted, 2);
        assert_eq!(pool.open_count(), 0);
    }

    #[tokio::test]
    async fn waiting_for_a_connection_counts_against_the_send_timeout() {
        let (auth, accepted, _) = slow_upstream(Duration::from_millis(600)).await;
        let pool = Arc::new(Pool::new(auth.clone(), limited(1, 4)));
        let body = Bytes::from_static(b"data");
        let first = {
            let (pool, auth, body) = (pool.clone(), auth.clone(), body.clone());
            tokio::spawn(async move { send_now(&pool, req(&auth, "/a"), &body, LONG).await })
        };
        while pool.open_count() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let second = send_now(&pool, req(&auth, "/b"), &body, Duration::from_millis(150)).await;
        assert_eq!(second.unwrap_err(), Reject::UpstreamTimeout);
        assert_eq!(first.await.unwrap().unwrap().status, 200);
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "the second never connected"
        );
        assert_eq!(pool.open_count(), 1);
    }

    #[tokio::test]
    async fn expired_idle_connections_give_their_place_back() {
        let (auth, accepted, _) = slow_upstream(Duration::ZERO).await;
        let settings = PoolSettings {
            idle_timeout: Duration::from_millis(50),
            ..limited(1, 4)
        };
        let pool = Pool::new(auth.clone(), settings);
        let body = Bytes::from_static(b"data");
        assert_eq!(
            send_now(&pool, req(&auth, "/"), &body, LONG)
                .await
                .unwrap()
                .status,
            200
        );
        assert_eq!(pool.open_count(), 1);
        tokio::time::sleep(Duration::from_millis(100)).await;
        // The only permit is held by an expired idle connection.
        let r = send_now(&pool, req(&auth, "/"), &body, Duration::from_secs(2)).await;
        assert_eq!(r.unwrap().status, 200);
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        assert_eq!(pool.open_count(), 1);
    }

    #[tokio::test]
    async fn a_stale_connection_is_replaced_within_a_limit_of_one() {
        let (auth, server) = scripted(vec![
            vec![b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\n1", b""],
            vec![b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\n2"],
        ])
        .await;
        let pool = Pool::new(auth.clone(), limited(1, 4));
        let body = Bytes::from_static(b"data");
        for expected in [b"1", b"2"] {
            let r = send_now(&pool, req(&auth, "/"), &body, LONG).await.unwrap();
            assert_eq!(&r.body[..], expected);
        }
        assert_eq!(server.await.unwrap().len(), 3);
        assert_eq!(pool.open_count(), 1);
    }

    fn client_tls(name: &'static str) -> ClientTls {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        ClientTls {
            config: Arc::new(config),
            server_name: ServerName::try_from(name).unwrap(),
        }
    }

    #[test]
    fn pools_are_shared_only_by_identical_settings() {
        let mut pools = Pools::default();
        let s = settings();
        let auth: Authority = "up.example:8443".parse().unwrap();
        let upper: Authority = "UP.example:8443".parse().unwrap();
        let plain = pools.pool_for(&auth, s);
        assert!(Arc::ptr_eq(&plain, &pools.pool_for(&upper, s)));
        assert!(Arc::ptr_eq(&plain, &pools.pool_for_tls(&auth, s, None)));

        let a = client_tls("up.example");
        let tls_a = pools.pool_for_tls(&auth, s, Some(a.clone()));
        assert!(!Arc::ptr_eq(&plain, &tls_a), "http and https");
        assert!(Arc::ptr_eq(
            &tls_a,
            &pools.pool_for_tls(&auth, s, Some(a.clone()))
        ));
        let b = client_tls("up.example");
        let tls_b = pools.pool_for_tls(&auth, s, Some(b));
        assert!(!Arc::ptr_eq(&tls_a, &tls_b), "another client config");
        let renamed = ClientTls {
            server_name: ServerName::try_from("other.example").unwrap(),
            ..a
        };
        let tls_renamed = pools.pool_for_tls(&auth, s, Some(renamed));
        assert!(!Arc::ptr_eq(&tls_a, &tls_renamed), "another name to verify");
    }
}
