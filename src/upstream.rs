//! The upstream client: HTTP/1.1 over pooled keep-alive connections, driven inside the
//! request's own task. hyper's client hands every request to a separate connection task
//! through a channel and back through a oneshot (two task wake-ups and a queue per
//! request); here the request task writes the request and reads the answer itself, so a
//! forward costs one `write` and usually one `read`. Requests are ours to serialise
//! (headers already validated by `http`, which refuses CR/LF in values); responses are
//! parsed with `httparse` and framed by Content-Length, chunked coding or close.
//!
//! A pooled connection the upstream closed while it sat idle fails before a byte of the
//! answer arrives; such a request is retried once on a new connection. Nothing else is
//! retried: a webhook must not be delivered twice because of the gateway.

use crate::config::PoolSettings;
use crate::pipeline::Reject;
use bytes::{Buf, Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::uri::Authority;
use http::{Response, StatusCode, Version};
use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The most of an upstream's response body we relay to the sender. Webhook answers are
/// tiny (SecurityScorecard caps them at 100 KB); a bigger one is an upstream fault.
pub const MAX_UPSTREAM_RESPONSE: usize = 1 << 20;
/// The largest response head we accept from an upstream.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Response header fields we parse at most.
const MAX_RESPONSE_HEADERS: usize = 100;
/// Bodies up to this size are copied behind the head and sent in one write.
const COALESCE_BODY: usize = 16 * 1024;
const READ_CHUNK: usize = 8 * 1024;

/// One kept-alive connection and its buffers.
struct Conn {
    stream: TcpStream,
    /// Reused for every request head written on this connection.
    head: Vec<u8>,
    /// Reused for every response read on this connection (empty between exchanges).
    read: BytesMut,
    idle_since: Instant,
}

/// Idle connections to one upstream authority, most recently used last.
pub struct Pool {
    authority: Authority,
    idle: Mutex<Vec<Conn>>,
    settings: PoolSettings,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("authority", &self.authority)
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

impl Pool {
    pub fn new(authority: Authority, settings: PoolSettings) -> Pool {
        Pool {
            authority,
            idle: Mutex::new(Vec::new()),
            settings,
        }
    }

    /// Number of idle connections kept.
    pub fn idle_count(&self) -> usize {
        self.idle.lock().map(|v| v.len()).unwrap_or(0)
    }

    fn checkout(&self) -> Option<Conn> {
        let mut idle = self.idle.lock().ok()?;
        while let Some(conn) = idle.pop() {
            if conn.idle_since.elapsed() < self.settings.idle_timeout {
                return Some(conn);
            }
        }
        None
    }

    fn checkin(&self, mut conn: Conn) {
        if self.settings.max_idle_per_host == 0 {
            return;
        }
        conn.idle_since = Instant::now();
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() >= self.settings.max_idle_per_host {
                // Drop the coldest one.
                idle.remove(0);
            }
            idle.push(conn);
        }
    }

    async fn connect(&self) -> Result<Conn, Reject> {
        let host = self.authority.host();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = self.authority.port_u16().unwrap_or(80);
        let stream = tokio::time::timeout(
            self.settings.connect_timeout,
            TcpStream::connect((host, port)),
        )
        .await
        .map_err(|_| Reject::UpstreamUnreachable)?
        .map_err(|_| Reject::UpstreamUnreachable)?;
        let _ = stream.set_nodelay(true);
        Ok(Conn {
            stream,
            head: Vec::with_capacity(2048),
            read: BytesMut::with_capacity(READ_CHUNK),
            idle_since: Instant::now(),
        })
    }

    /// Sends one request and reads the whole answer. `head` writes the request head
    /// into a buffer (it may be called twice, for the one retry); the caller bounds the
    /// exchange in time.
    pub async fn send<H: Fn(&mut Vec<u8>)>(
        &self,
        head: H,
        body: &Bytes,
    ) -> Result<Response<Bytes>, Reject> {
        if let Some(conn) = self.checkout() {
            match self.exchange(conn, &head, body, true).await {
                Err(Failure { stale: true, .. }) => {}
                other => return other.map_err(|f| f.reject),
            }
        }
        let conn = self.connect().await?;
        self.exchange(conn, &head, body, false)
            .await
            .map_err(|f| f.reject)
    }

    async fn exchange<H: Fn(&mut Vec<u8>)>(
        &self,
        mut conn: Conn,
        head: &H,
        body: &Bytes,
        reused: bool,
    ) -> Result<Response<Bytes>, Failure> {
        let broken = |stale: bool| Failure {
            reject: Reject::UpstreamBroken,
            stale,
        };
        head(&mut conn.head);
        if body.len() <= COALESCE_BODY {
            conn.head.extend_from_slice(body);
            conn.stream
                .write_all(&conn.head)
                .await
                .map_err(|_| broken(reused))?;
        } else {
            conn.stream
                .write_all(&conn.head)
                .await
                .map_err(|_| broken(reused))?;
            conn.stream
                .write_all(body)
                .await
                .map_err(|_| broken(false))?;
        }

        let mut buf = std::mem::take(&mut conn.read);
        buf.clear();
        let mut answered = false;
        let (resp, framing, keep_alive) = loop {
            if !buf.is_empty() {
                match parse_head(&buf).map_err(|_| broken(false))? {
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
                        break (resp, framing, keep_alive);
                    }
                }
            }
            // A reused connection that ends before the first byte of an answer was
            // closed by the upstream while idle: safe to retry.
            let stale = reused && !answered;
            let n = read_more(&mut conn.stream, &mut buf)
                .await
                .map_err(|_| broken(stale))?;
            if n == 0 {
                return Err(broken(stale));
            }
            answered = true;
        };
        let (body, buf) = read_body(&mut conn.stream, buf, framing)
            .await
            .map_err(|_| broken(false))?;
        // Reuse requires the message to end exactly where the connection's data does.
        if keep_alive && buf.is_empty() && framing != Framing::Close {
            conn.read = buf;
            self.checkin(conn);
        }
        let (parts, ()) = resp.into_parts();
        Ok(Response::from_parts(parts, body))
    }
}

/// Reads more bytes into `buf`; returns how many (0 at end of stream).
async fn read_more(stream: &mut TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
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
        resp: Response<()>,
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
    let mut slots = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
    let mut parsed = httparse::Response::new(&mut slots);
    let len = match parsed.parse(buf).map_err(|_| Malformed)? {
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
    let mut headers = HeaderMap::with_capacity(parsed.headers.len());
    let mut length: Option<usize> = None;
    let mut chunked = false;
    let mut has_te = false;
    let (mut saw_close, mut saw_keep_alive) = (false, false);
    for h in parsed.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| Malformed)?;
        let value = HeaderValue::from_bytes(h.value).map_err(|_| Malformed)?;
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
        if !crate::forward::is_hop_by_hop(&name) {
            headers.append(name, value);
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
    let mut resp = Response::new(());
    *resp.status_mut() = status;
    *resp.version_mut() = if http10 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    *resp.headers_mut() = headers;
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
    stream: &mut TcpStream,
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

/// An incremental decoder of the chunked transfer coding.
#[derive(Debug, Default)]
pub(crate) struct Chunked {
    /// Bytes left in the current chunk's data (plus its CRLF once data is done).
    remaining: usize,
    state: ChunkState,
}

#[derive(Debug, Default, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    Data,
    DataEnd,
    Trailers,
}

impl Chunked {
    /// Consumes what it can of `buf` into `out`; `Ok(true)` once the message is complete.
    pub(crate) fn decode(
        &mut self,
        buf: &mut BytesMut,
        out: &mut BytesMut,
    ) -> Result<bool, Malformed> {
        loop {
            match self.state {
                ChunkState::Size => {
                    // The same limit whether the line arrived whole or in pieces.
                    if find_crlf(buf).is_some_and(|eol| eol > 1024) {
                        return Err(Malformed);
                    }
                    // A line of the limit's length may still await its LF: limit + 1.
                    let Some(eol) = find_crlf(buf) else {
                        return if buf.len() > 1024 + 1 {
                            Err(Malformed)
                        } else {
                            Ok(false)
                        };
                    };
                    let line = &buf[..eol];
                    let size_part = line.split(|&b| b == b';').next().unwrap_or(b"");
                    let size_text = std::str::from_utf8(size_part)
                        .map_err(|_| Malformed)?
                        .trim();
                    // Only hex digits: from_str_radix would also take a sign ("+5").
                    if size_text.is_empty()
                        || size_text.len() > 8
                        || !size_text.bytes().all(|b| b.is_ascii_hexdigit())
                    {
                        return Err(Malformed);
                    }
                    let size = usize::from_str_radix(size_text, 16).map_err(|_| Malformed)?;
                    buf.advance(eol + 2);
                    if size == 0 {
                        self.state = ChunkState::Trailers;
                    } else {
                        if out.len() + size > MAX_UPSTREAM_RESPONSE {
                            return Err(Malformed);
                        }
                        self.remaining = size;
                        self.state = ChunkState::Data;
                    }
                }
                ChunkState::Data => {
                    if buf.is_empty() {
                        return Ok(false);
                    }
                    let take = self.remaining.min(buf.len());
                    out.extend_from_slice(&buf[..take]);
                    buf.advance(take);
                    self.remaining -= take;
                    if self.remaining == 0 {
                        self.state = ChunkState::DataEnd;
                    }
                }
                ChunkState::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(false);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(Malformed);
                    }
                    buf.advance(2);
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailers => {
                    // Trailer fields are dropped; the message ends at an empty line.
                    if find_crlf(buf).is_some_and(|eol| eol > 16 * 1024) {
                        return Err(Malformed);
                    }
                    let Some(eol) = find_crlf(buf) else {
                        return if buf.len() > 16 * 1024 + 1 {
                            Err(Malformed)
                        } else {
                            Ok(false)
                        };
                    };
                    buf.advance(eol + 2);
                    if eol == 0 {
                        return Ok(true);
                    }
                }
            }
        }
    }
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

/// One pool per upstream authority, shared by the routes that forward there.
#[derive(Debug, Default)]
pub struct Pools {
    by_authority: HashMap<String, Arc<Pool>>,
}

impl Pools {
    pub fn pool_for(&mut self, authority: &Authority, settings: PoolSettings) -> Arc<Pool> {
        self.by_authority
            .entry(authority.as_str().to_ascii_lowercase())
            .or_insert_with(|| Arc::new(Pool::new(authority.clone(), settings)))
            .clone()
    }
}

/// Sends a request through `pool` within `timeout`.
pub async fn send<H: Fn(&mut Vec<u8>)>(
    pool: &Pool,
    head: H,
    body: &Bytes,
    timeout: Duration,
) -> Result<Response<Bytes>, Reject> {
    tokio::time::timeout(timeout, pool.send(head, body))
        .await
        .map_err(|_| Reject::UpstreamTimeout)?
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    fn head(raw: &str) -> Parsed {
        parse_head(raw.as_bytes()).unwrap()
    }

    fn done(raw: &str) -> (usize, Response<()>, Framing, bool) {
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
        let (_, r, f, ka) = done("HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-a: b\r\n\r\nhello");
        assert_eq!(
            (r.status().as_u16(), f, ka),
            (200, Framing::Length(5), true)
        );
        assert_eq!(r.headers()["x-a"], "b");
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
        let (_, r, _, _) = done("HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: keep-alive\r\nkeep-alive: timeout=5\r\nx-app: 1\r\ncontent-type: text/plain\r\n\r\nok");
        let names: Vec<&str> = r.headers().keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-app", "content-type"]);
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
        assert_eq!((r.status().as_u16(), &r.body()[..]), (200, &b"ok"[..]));
        assert_eq!(pool.idle_count(), 1);
        let r = pool.send(req(&auth, "/b"), &body).await.unwrap();
        assert_eq!((r.status().as_u16(), &r.body()[..]), (202, &b"abc"[..]));
        let r = pool.send(req(&auth, "/c"), &body).await.unwrap();
        assert_eq!(r.status(), 406);
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
            &pool.send(req(&auth, "/"), &body).await.unwrap().body()[..],
            b"1"
        );
        assert_eq!(
            &pool.send(req(&auth, "/"), &body).await.unwrap().body()[..],
            b"2"
        );
        assert_eq!(server.await.unwrap().len(), 3);
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
        assert_eq!(&r.unwrap().body()[..], b"until close");
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
}
