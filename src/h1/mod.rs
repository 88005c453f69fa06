//! hookgate's HTTP/1.1 server: one connection's request loop, its request body, and the
//! response write. HTTP/2 stays on hyper (chosen by ALPN or the preface sniff).
//!
//! Why not hyper's HTTP/1 server: a webhook gateway must see a request head exactly as
//! it was sent (hyper drops Content-Length when Transfer-Encoding is present and merges
//! equal Content-Lengths, so the smuggling checks needed a second, raw-byte parser), and
//! hyper's per-request machinery (a body channel between two tasks, a boxed timer, a
//! header map rebuilt per request, an 8 KiB read buffer and a write buffer kept for the
//! connection's lifetime) was most of the gateway's own per-request cost and most of an
//! idle connection's memory. Here:
//!
//! - **One task, one buffer per request.** A connection waits for its next request
//!   holding no buffer: over plain TCP it waits for the socket to be readable, then
//!   reads into an allocation sized by the connection's last request (16 KiB for its
//!   first); over TLS the same, unless rustls already holds decrypted bytes, which are
//!   read at once ([`FirstRead`]).
//!   The head is parsed with httparse ([`codec`]) and every header value, the target
//!   and a body that arrived with the head are slices of that allocation (no copy).
//!   The request's own state (its input and body state, reading the head, the
//!   handler's, the answer) is one box for as long as the request runs: between
//!   requests the connection's loop is under a hundred bytes, the bytes of a pipelined
//!   request aside.
//! - **Body:** the handler pulls it ([`H1Body`]); a Content-Length body is read straight
//!   into one allocation of its declared size (never past it), a chunked one through
//!   the strict decoder. `100 Continue` is sent only when the handler asks for the body,
//!   i.e. after the route, method, address, rate and size checks passed.
//! - **Response:** head and a small body are encoded into a per-thread scratch buffer and
//!   written with one `write`; only what the socket does not take at once is copied.
//! - **Connection reuse:** a request whose body was not read to its end (a reject before
//!   the body) ends the connection after the answer, unless the rest of the body is
//!   already in hand; so does every refused head, `Connection: close`, HTTP/1.0 without
//!   keep-alive, and a drain. Closing shuts down the write side and discards what the
//!   client still sends for a moment, so that the answer is not lost to a reset.
//! - **Deadlines:** the listener's watchdog owns the idle deadline and the first head's;
//!   a head that is not complete within `header_timeout` of its first read is cut here.

pub mod codec;

use crate::config::Limits;
use crate::fields::RequestHead;
use crate::listener::ConnCtx;
use crate::server::{Answer, ConnInfo};
use bytes::{BufMut, Bytes, BytesMut};
use codec::{Chunk, Chunked, Framing};
use hyper::body::{Body, Frame, SizeHint};
use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The most bytes one read takes while a connection waits for its next request, and what
/// a connection's first request is read into.
const FIRST_READ: usize = 16 * 1024;
/// The least a connection's later requests are read into.
const MIN_FIRST_READ: usize = 1024;
/// Response bodies up to this size go out in the same write as the head.
const INLINE_BODY: usize = 16 * 1024;
/// What one read takes while lingering (allocated only then).
const LINGER_READ: usize = 16 * 1024;

const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// A request's input, for as long as it runs: the connection's stream (lent), the bytes
/// read but not yet used, and the state of the request's body.
struct Input<S> {
    io: S,
    buf: BytesMut,
    body: BodyState,
    /// Bytes of `100 Continue` still to write before the body is read; `None` when no
    /// interim answer is due.
    continue_left: Option<usize>,
}

#[derive(Debug)]
enum BodyState {
    /// No body, or the body was read to its end.
    Done,
    /// The whole body, in hand.
    Ready(Bytes),
    /// A Content-Length body still arriving: `total` bytes, `acc` holds what was read.
    Length {
        total: usize,
        acc: Option<BytesMut>,
    },
    Chunked(Chunked),
}

/// Serves HTTP/1.1 requests on `io` until the client closes, a request ends the
/// connection, or the watchdog or a drain drops this future.
///
/// The stream is lent (`&mut S`), so that the caller's state keeps it once, and the
/// loop is an `async move` block rather than an `async fn`, whose body would keep its
/// arguments twice for as long as the connection is open.
#[allow(clippy::manual_async_fn)] // an `async fn` keeps its arguments twice
pub(crate) fn serve<'a, S>(
    io: &'a mut S,
    ctx: &'a ConnCtx,
    limits: &'a Limits,
) -> impl std::future::Future<Output = io::Result<()>> + 'a
where
    S: FirstRead + AsyncWrite + Send,
{
    async move {
        // What the next first read is given room for (see `next_room`).
        let mut room = FIRST_READ;
        // Bytes read and not yet used: between requests, a pipelined request's.
        let mut buf = BytesMut::new();
        loop {
            if buf.is_empty() {
                // A drained buffer may still hold the last request's allocation: let it go
                // before waiting, so that a waiting connection holds no buffer.
                drop(std::mem::take(&mut buf));
                if ctx.track.is_closing() {
                    return Ok(());
                }
                ctx.track.set_waiting(true);
                let first = poll_fn(|cx| io.poll_first(cx, room)).await;
                ctx.track.set_waiting(false);
                buf = first?;
                let n = buf.len();
                if n == 0 {
                    return Ok(()); // closed between requests
                }
                room = next_room(n, room);
            }
            // One request, boxed: its state (the handler's, several KiB, and the body's
            // and `100 Continue`'s in its `Input`) exists while it runs, not for as long
            // as the connection is open. What it leaves unread comes back.
            let input = Input {
                io: &mut *io,
                buf: std::mem::take(&mut buf),
                body: BodyState::Done,
                continue_left: None,
            };
            match Box::pin(exchange(input, ctx, limits)).await? {
                Some(rest) => buf = rest,
                None => return Ok(()),
            }
        }
    }
}

/// Reads one request's head, has the gateway handle it and writes the answer. Returns
/// the bytes read past the request (a pipelined one's) if the connection goes on to the
/// next request.
async fn exchange<S>(
    mut input: Input<S>,
    ctx: &ConnCtx,
    limits: &Limits,
) -> io::Result<Option<BytesMut>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let busy = ctx.track.begin();
    let head = match read_head(&mut input, limits).await {
        Ok(Some(parsed)) => parsed,
        Ok(None) => return Ok(None), // closed in the middle of a head
        Err(HeadFail::Io(e)) => return Err(e),
        Err(HeadFail::Timeout) => {
            crate::metrics::connection_closed("header_timeout");
            tracing::debug!(peer = %ctx.peer, "request head not complete within header_timeout");
            return Err(io::Error::new(io::ErrorKind::TimedOut, "header_timeout"));
        }
        Err(HeadFail::Refused(e)) => {
            tracing::debug!(peer = %ctx.peer, error = ?e, "request head refused");
            let resp = ctx.gateway().refuse_head(ctx.peer, e.malformed());
            drop(busy);
            write_response(&mut input.io, resp, false, true, Instant::now()).await?;
            linger(&mut input.io, ctx, limits).await;
            return Ok(None);
        }
    };
    // The body: split off without a copy when it came with the head (what follows
    // it, a pipelined request, stays in the buffer), else pulled by the handler from
    // the buffer and then the connection.
    input.body = match head.framing {
        Framing::Empty => BodyState::Done,
        Framing::Length(n) if head.framing.in_hand(input.buf.len()) => {
            BodyState::Ready(input.buf.split_to(n as usize).freeze())
        }
        Framing::Length(n) => BodyState::Length {
            // Over `usize` only on 32-bit targets, and then far over any max_body:
            // the handler refuses it by its declared size before polling.
            total: usize::try_from(n).unwrap_or(usize::MAX),
            acc: None,
        },
        Framing::Chunked => BodyState::Chunked(Chunked::default()),
    };
    input.continue_left = match (&input.body, head.expect_continue) {
        (BodyState::Length { .. } | BodyState::Chunked(_), true) => Some(0),
        _ => None,
    };
    let head_only = head.method == http::Method::HEAD;
    let req = RequestHead {
        method: head.method,
        uri: head.uri,
        version: head.version,
        fields: head.fields,
    };
    let body = H1Body { input: &mut input };
    let gateway = ctx.gateway();
    let conn = ConnInfo { tls: ctx.tls };
    let (resp, at) = gateway
        .handle(req, body, ctx.peer, &ctx.peer_text, conn)
        .await;
    // The next request starts after this one's body: read to its end, or in hand.
    let body_done = matches!(input.body, BodyState::Done | BodyState::Ready(_));
    input.body = BodyState::Done;
    let close = !head.keep_alive || !body_done || ctx.track.is_closing() || resp.closes();
    // A client that stops reading its answer is idle time for the watchdog.
    busy.end_at(at);
    write_response(&mut input.io, resp, head_only, close, at).await?;
    if close {
        linger(&mut input.io, ctx, limits).await;
        return Ok(None);
    }
    Ok(Some(input.buf))
}

/// The room for a connection's next first read, after one of `n` bytes in `room`:
/// twice `n` rounded up to a power of two (a connection's deliveries of one kind rarely
/// outgrow it), or all of FIRST_READ again after a read that filled its room.
fn next_room(n: usize, room: usize) -> usize {
    if n >= room {
        FIRST_READ
    } else {
        (2 * n)
            .next_power_of_two()
            .clamp(MIN_FIRST_READ, FIRST_READ)
    }
}

/// How a connection's stream takes the first bytes of a request, after a wait in which
/// the connection holds no buffer.
pub(crate) trait FirstRead: AsyncRead + Unpin {
    /// Waits until bytes (or the end of the stream) can be read, then reads up to `room`
    /// of them into a new allocation; empty at the end of the stream.
    fn poll_first(&mut self, cx: &mut Context<'_>, room: usize) -> Poll<io::Result<BytesMut>>;
}

/// Plain TCP: readiness first, then one read straight into the request's allocation.
impl FirstRead for tokio::net::TcpStream {
    fn poll_first(&mut self, cx: &mut Context<'_>, room: usize) -> Poll<io::Result<BytesMut>> {
        ready!(self.poll_read_ready(cx))?;
        read_into_room(self, cx, room)
    }
}

/// TLS: the same, except that rustls may already hold decrypted bytes (a pipelined
/// request behind one that ended exactly where the last read stopped) or the peer's
/// `close_notify` while the socket has nothing to read. rustls wants more bytes from the
/// socket only when it holds neither ([`rustls::CommonState::wants_read`]), and
/// only then is the socket's readiness what to wait for.
impl FirstRead for tokio_rustls::server::TlsStream<tokio::net::TcpStream> {
    fn poll_first(&mut self, cx: &mut Context<'_>, room: usize) -> Poll<io::Result<BytesMut>> {
        let (tcp, tls) = self.get_ref();
        if tls.wants_read() {
            ready!(tcp.poll_read_ready(cx))?;
        }
        read_into_room(self, cx, room)
    }
}

/// One read of up to `room` bytes into a new allocation, once bytes are expected.
fn read_into_room<S: AsyncRead + Unpin>(
    io: &mut S,
    cx: &mut Context<'_>,
    room: usize,
) -> Poll<io::Result<BytesMut>> {
    let mut buf = BytesMut::with_capacity(room);
    // Pending only if the readiness was stale (or, over TLS, a record is still
    // incomplete); this read then registered the waker, and the allocation is let go
    // until the next wake.
    let n = ready!(tokio_util::io::poll_read_buf(
        Pin::new(io),
        cx,
        &mut (&mut buf).limit(room)
    ))?;
    if n < room / 4 {
        // Far less than the room (a connection's first request, or a smaller one than
        // the last): copied into an allocation of its size, so that a request in flight
        // holds at most about four times its bytes.
        buf = BytesMut::from(&buf[..]);
    }
    Poll::Ready(Ok(buf))
}

enum HeadFail {
    Io(io::Error),
    Timeout,
    Refused(codec::HeadError),
}

/// Reads until the head in `input.buf` is complete and returns it; the bytes after it
/// stay in `input.buf`.
async fn read_head<S: AsyncRead + Unpin>(
    input: &mut Input<S>,
    limits: &Limits,
) -> Result<Option<codec::Head>, HeadFail> {
    let mut deadline = None;
    loop {
        match codec::parse_head(&mut input.buf, limits.max_header_bytes, limits.max_headers) {
            Ok(Some(head)) => return Ok(Some(head)),
            Err(e) => return Err(HeadFail::Refused(e)),
            Ok(None) => {
                let due = *deadline
                    .get_or_insert_with(|| tokio::time::Instant::now() + limits.header_timeout);
                input.buf.reserve(4096);
                match tokio::time::timeout_at(due, input.io.read_buf(&mut input.buf)).await {
                    Err(_) => return Err(HeadFail::Timeout),
                    Ok(Err(e)) => return Err(HeadFail::Io(e)),
                    Ok(Ok(0)) => return Ok(None),
                    Ok(Ok(_)) => {}
                }
            }
        }
    }
}

/// The body of a request being handled, read from its connection as the handler polls.
pub struct H1Body<'a, S> {
    input: &'a mut Input<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Input<S> {
    /// Writes `100 Continue` if it is due.
    fn poll_continue(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(sent) = self.continue_left {
            if sent == CONTINUE.len() {
                ready!(Pin::new(&mut self.io).poll_flush(cx))?;
                self.continue_left = None;
                break;
            }
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &CONTINUE[sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.continue_left = Some(sent + n);
        }
        Poll::Ready(Ok(()))
    }

    fn poll_body(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        loop {
            match &mut self.body {
                BodyState::Done => return Poll::Ready(None),
                BodyState::Ready(_) => {
                    let BodyState::Ready(b) = std::mem::replace(&mut self.body, BodyState::Done)
                    else {
                        unreachable!("matched above")
                    };
                    return Poll::Ready(Some(Ok(b)));
                }
                BodyState::Length { total, acc } => {
                    let total = *total;
                    let acc = acc.get_or_insert_with(|| {
                        // What came with the head, then the rest read after it into the
                        // same allocation, never past the declared length (the handler
                        // checked it against the route's max_body before asking). Pages
                        // of the allocation are only resident once data is read into
                        // them, so a client that announces much and sends little costs
                        // what it sent.
                        let mut a = BytesMut::with_capacity(total);
                        a.extend_from_slice(&self.buf.split());
                        a
                    });
                    while acc.len() < total {
                        let want = total - acc.len();
                        let mut limited = (&mut *acc).limit(want);
                        let n = ready!(tokio_util::io::poll_read_buf(
                            Pin::new(&mut self.io),
                            cx,
                            &mut limited
                        ))?;
                        if n == 0 {
                            return Poll::Ready(Some(Err(io::ErrorKind::UnexpectedEof.into())));
                        }
                    }
                    let BodyState::Length { acc: Some(acc), .. } =
                        std::mem::replace(&mut self.body, BodyState::Done)
                    else {
                        unreachable!("matched above")
                    };
                    return Poll::Ready(Some(Ok(acc.freeze())));
                }
                BodyState::Chunked(decoder) => match decoder.decode(&mut self.buf) {
                    Err(e) => {
                        return Poll::Ready(Some(Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("chunked body: {e:?}"),
                        ))))
                    }
                    Ok(Chunk::Data(b)) => return Poll::Ready(Some(Ok(b))),
                    Ok(Chunk::End) => self.body = BodyState::Done,
                    Ok(Chunk::NeedMore) => {
                        self.buf.reserve(8192);
                        let n = ready!(tokio_util::io::poll_read_buf(
                            Pin::new(&mut self.io),
                            cx,
                            &mut self.buf
                        ))?;
                        if n == 0 {
                            return Poll::Ready(Some(Err(io::ErrorKind::UnexpectedEof.into())));
                        }
                    }
                },
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Body for H1Body<'_, S> {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let input = &mut *self.get_mut().input;
        ready!(input.poll_continue(cx))?;
        input.poll_body(cx).map(|b| b.map(|r| r.map(Frame::data)))
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.input.body, BodyState::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match &self.input.body {
            BodyState::Done => SizeHint::with_exact(0),
            BodyState::Ready(b) => SizeHint::with_exact(b.len() as u64),
            BodyState::Length { total, .. } => SizeHint::with_exact(*total as u64),
            BodyState::Chunked(_) => SizeHint::default(),
        }
    }
}

/// Bytes of the body read from the connection and not yet handed out: what a
/// Content-Length body holds so far, or what a chunked one has not decoded yet.
impl<S> crate::pipeline::body::Progress for H1Body<'_, S> {
    fn held(&self) -> u64 {
        let held = match &self.input.body {
            BodyState::Length { acc: Some(acc), .. } => acc.len(),
            BodyState::Length { acc: None, .. } | BodyState::Chunked(_) => self.input.buf.len(),
            BodyState::Done | BodyState::Ready(_) => 0,
        };
        held as u64
    }
}

thread_local! {
    /// Where response heads are encoded; what the socket takes at once never leaves it.
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(INLINE_BODY + 4096));
}

/// Writes a response: the head and a small body in one write.
async fn write_response<S: AsyncWrite + Unpin>(
    io: &mut S,
    resp: Answer,
    head_only: bool,
    close: bool,
    // When the answer was ready: its `Date`, if it has none of its own.
    at: Instant,
) -> io::Result<()> {
    let body = &resp.body;
    let send_body = !head_only && !body.is_empty();
    let inline = send_body && body.len() <= INLINE_BODY;
    let mut left: Option<(Vec<u8>, usize)> = None;
    let mut first = true;
    poll_fn(|cx| {
        if std::mem::take(&mut first) {
            let written = SCRATCH.with(|s| {
                let mut out = s.borrow_mut();
                out.clear();
                let unix_secs = || crate::clock::unix_at(at).max(0) as u64;
                codec::write_response_head(&mut out, &resp, close, unix_secs);
                if inline {
                    out.extend_from_slice(body);
                }
                let n = match Pin::new(&mut *io).poll_write(cx, &out) {
                    Poll::Ready(Ok(0)) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                    Poll::Ready(Ok(n)) => n,
                    Poll::Ready(Err(e)) => return Err(e),
                    Poll::Pending => 0,
                };
                if n < out.len() {
                    // What the socket did not take leaves the scratch buffer.
                    left = Some((out[n..].to_vec(), 0));
                }
                Ok(())
            });
            written?;
        }
        let Some((rest, off)) = left.as_mut() else {
            return Poll::Ready(Ok::<(), io::Error>(()));
        };
        while *off < rest.len() {
            let n = ready!(Pin::new(&mut *io).poll_write(cx, &rest[*off..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *off += n;
        }
        Poll::Ready(Ok(()))
    })
    .await?;
    if send_body && !inline {
        io.write_all(body).await?;
    }
    io.flush().await
}

/// Ends a connection after its last answer: no more writes, then what the client still
/// sends is read and discarded, so that closing with unread input does not reset the
/// connection (and with it, at the client, the answer not yet read) while the client
/// is still sending: a sender whose body was refused by its declared size typically
/// uploads all of it before it reads the 413. Until the client closes, for at most
/// `linger_time`, and no longer than `linger_timeout` after it last sent something
/// (nginx's lingering close). It runs within the connection's `idle_timeout`, and not
/// during a drain: the answer is out, and a draining server waits for its connections
/// to close, so one that lingers (already, or when a drain starts) closes at once, as
/// an idle one does.
///
/// Boxed: its state (a timer, a read) would otherwise be part of every request's, and
/// only a connection that closes needs it.
fn linger<'a, S: AsyncRead + AsyncWrite + Unpin + Send>(
    io: &'a mut S,
    ctx: &'a ConnCtx,
    limits: &'a Limits,
) -> Pin<Box<impl std::future::Future<Output = ()> + Send + 'a>> {
    Box::pin(async move {
        if io.shutdown().await.is_err() || limits.linger_time.is_zero() || ctx.draining() {
            return;
        }
        // A drain that starts from here on drops the connection (`listener::drive`).
        ctx.track.set_waiting(true);
        let end = tokio::time::Instant::now() + limits.linger_time;
        // Read into uninitialised room (not zeroed): most clients have closed already, and
        // the first read says so.
        let mut sink = BytesMut::with_capacity(LINGER_READ);
        let mut discarded = 0u64;
        let ended = loop {
            let quiet = tokio::time::Instant::now() + limits.linger_timeout;
            sink.clear();
            match tokio::time::timeout_at(quiet.min(end), io.read_buf(&mut sink)).await {
                Ok(Ok(0)) => break "the client closed",
                Ok(Ok(n)) => discarded += n as u64,
                Ok(Err(_)) => break "a read failed",
                Err(_) if tokio::time::Instant::now() >= end => break "linger_time",
                Err(_) => break "linger_timeout",
            }
        };
        tracing::debug!(discarded, ended, "lingering close");
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_room_follows_the_last_request_and_resets_when_filled() {
        // The bench's request (1,883 bytes) gets 4 KiB next time, kept while it repeats.
        assert_eq!(next_room(1883, FIRST_READ), 4096);
        assert_eq!(next_room(1883, 4096), 4096);
        // Small requests get the least room; a read that filled its room gets all of it.
        assert_eq!(next_room(10, 4096), MIN_FIRST_READ);
        assert_eq!(next_room(4096, 4096), FIRST_READ);
        assert_eq!(next_room(FIRST_READ, FIRST_READ), FIRST_READ);
        // Never past FIRST_READ.
        assert_eq!(next_room(9000, FIRST_READ), FIRST_READ);
    }
}
