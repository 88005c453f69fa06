//! Differential: hookgate's HTTP/1.1 request codec (`h1::codec` plus the framing check
//! that runs before anything else) against hyper 1's HTTP/1.1 server, on arbitrary bytes
//! read as one connection's input, to catch request-smuggling style disagreements.
//!
//! hookgate's reading of the input: heads parsed with the gateway's default limits (64
//! KiB, 100 fields); a head `framing::check` refuses ends the connection (400, close), so
//! does one not keep-alive; a body is a whole Content-Length body or a chunked body
//! decoded to its end; an incomplete or refused one ends the reading. hyper's: a server
//! connection (default settings but `max_headers(100)`, as hookgate's, and half-close
//! allowed, so that the input's EOF does not cut the requests already read) over an in-memory
//! transport that reads the input then EOF, on a current-thread runtime made once, whose
//! service reads every body to its end and answers 404 (never an upgrade).
//!
//! Invariants, for every request hookgate accepts:
//! - hyper reads a request there too, with the same method, request-target, version,
//!   header fields (names compared in lower case, values bytewise; see the ordering
//!   exclusion below) and the same body bytes, read without error;
//! - pipelining: hyper reads at least as many requests as hookgate accepts, the first
//!   ones being hookgate's, in order;
//! - boundaries: the input cut where hookgate ends its first (and its last) accepted
//!   request, followed by a sentinel request, is read by hyper as exactly hookgate's
//!   requests up to there, then the sentinel, whenever hookgate would read on (the
//!   request is keep-alive), so hyper ends each request at the same byte;
//! - the upstream request hookgate writes for it (`forward::write_upstream_head` with
//!   the path from `forward::upstream_path`, then the body) is read by hyper as exactly
//!   one request (a sentinel after it is the second) with the same method, the
//!   upstream path, one `content-length` equal to the body's length, no
//!   `transfer-encoding`, and the same body; `httparse` also parses the head completely.
//!   That hyper allows 16 more fields than the sender's limit: the gateway adds up to 9
//!   (so an upstream with the default limit of 100 refuses a request that had 92+).
//!
//! Exclusions, where hookgate's reading is the RFC's and hyper's differs:
//! - An HTTP/1.0 request with Transfer-Encoding: hyper refuses it outright; RFC 9112
//!   §6.1 says a recipient "MUST treat the message as if the framing is faulty ... and
//!   close the connection after processing the message", which hookgate does (reads the
//!   chunked body, answers, closes; asserted here: never keep-alive). Its body is
//!   compared with hyper's reading of the same request with the version changed to
//!   HTTP/1.1 (same length), alone.
//! - Field order across different names: hyper's `HeaderMap` groups the values of a
//!   name at the place of its first line, so both sides are compared grouped that way
//!   (order within a name is kept). RFC 9110 §5.3: "the order in which field lines with
//!   differing field names are received is not significant".
//! - Limits counted differently: hyper refuses more than `max_headers` trailer lines,
//!   and counts the 16 KiB trailer and extension limits with their CRLFs (hookgate
//!   counts field bytes only). Inputs over 16000 bytes are skipped, and so are chunked
//!   bodies with more than 100 LF bytes (a bound on their trailer lines).
#![no_main]

use bytes::BytesMut;
use hookgate::config::Upstream;
use hookgate::fields::Fields;
use hookgate::fuzzing::{upstream_path, write_upstream_head, ForwardInfo};
use hookgate::h1::codec::{parse_head, Chunk, Chunked, Framing};
use http::header::HeaderValue;
use http::{Method, Uri, Version};
use hyper::body::{Body, Incoming};
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;
use std::convert::Infallible;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::OnceLock;
use std::task::{Context, Poll};

/// The gateway's default `limits.max_header_bytes` and `limits.max_headers`.
const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 100;
/// See the limits exclusion above.
const MAX_INPUT: usize = 16_000;
const MAX_CHUNKED_LFS: usize = 100;
const SENTINEL: &[u8] = b"GET /sentinel?x=1 HTTP/1.1\r\nhost: sentinel\r\n\r\n";
const TRACE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// One request as read: method, request-target, version, fields (lower-case names,
/// grouped by name), body (or why it could not be read).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Req {
    method: String,
    target: String,
    version: Version,
    fields: Vec<(Vec<u8>, Vec<u8>)>,
    body: Result<Vec<u8>, String>,
}

/// Fields in `HeaderMap` order: each name's lines, in order, at its first line's place.
fn grouped(fields: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut names: Vec<Vec<u8>> = Vec::new();
    for (n, _) in &fields {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    let mut out = Vec::with_capacity(fields.len());
    for name in &names {
        out.extend(fields.iter().filter(|(n, _)| n == name).cloned());
    }
    out
}

/// A request hookgate accepted.
struct Accepted {
    req: Req,
    /// Where it started and ended in the input.
    start: usize,
    end: usize,
    keep_alive: bool,
    method: Method,
    uri: Uri,
    fields: Fields,
}

/// hookgate's reading of a connection: the requests it would hand to the gateway.
fn hookgate_reads(input: &[u8]) -> (Vec<Accepted>, bool) {
    let mut buf = BytesMut::from(input);
    let mut out = Vec::new();
    let mut limits_hit = false;
    loop {
        let start = input.len() - buf.len();
        let Ok(Some(head)) = parse_head(&mut buf, MAX_HEAD, MAX_HEADERS) else {
            break;
        };
        if hookgate::pipeline::framing::check(head.version, &head.uri, &head.fields).is_err() {
            break;
        }
        let body_start = input.len() - buf.len();
        let body = match head.framing {
            Framing::Empty => Vec::new(),
            Framing::Length(n) if head.framing.in_hand(buf.len()) => {
                buf.split_to(n as usize).to_vec()
            }
            Framing::Length(_) => break,
            Framing::Chunked => {
                let mut d = Chunked::default();
                let mut body = Vec::new();
                let complete = loop {
                    match d.decode(&mut buf) {
                        Ok(Chunk::Data(b)) => body.extend_from_slice(&b),
                        Ok(Chunk::End) => break true,
                        Ok(Chunk::NeedMore) | Err(_) => break false,
                    }
                };
                if !complete {
                    break;
                }
                let raw = &input[body_start..input.len() - buf.len()];
                limits_hit |= raw.iter().filter(|&&b| b == b'\n').count() > MAX_CHUNKED_LFS;
                body
            }
        };
        let end = input.len() - buf.len();
        let fields = head
            .fields
            .iter()
            .map(|(n, v)| (n.to_vec(), v.as_bytes().to_vec()))
            .collect();
        let keep_alive = head.keep_alive;
        out.push(Accepted {
            req: Req {
                method: head.method.to_string(),
                target: head.uri.to_string(),
                version: head.version,
                fields: grouped(fields),
                body: Ok(body),
            },
            start,
            end,
            keep_alive,
            method: head.method,
            uri: head.uri,
            fields: head.fields,
        });
        if !keep_alive || buf.is_empty() {
            break;
        }
    }
    (out, limits_hit)
}

/// The input, then EOF; everything written is taken and dropped.
struct Mem {
    data: Vec<u8>,
    at: usize,
}

impl Read for Mem {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let n = buf.remaining().min(self.data.len() - self.at);
        let at = self.at;
        buf.put_slice(&self.data[at..at + n]);
        self.at += n;
        Poll::Ready(Ok(()))
    }
}

impl Write for Mem {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime")
    })
}

/// hyper's reading of a connection: every request its server hands to the service.
fn hyper_reads(input: &[u8], max_headers: usize) -> Vec<Req> {
    let log: Rc<RefCell<Vec<Req>>> = Rc::default();
    let seen = log.clone();
    let service = service_fn(move |req: Request<Incoming>| {
        let log = log.clone();
        async move {
            let (parts, mut body) = req.into_parts();
            let mut data = Vec::new();
            let mut error = None;
            while let Some(frame) = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
                match frame {
                    Ok(f) => {
                        if let Ok(d) = f.into_data() {
                            data.extend_from_slice(&d);
                        }
                    }
                    Err(e) => {
                        error = Some(e.to_string());
                        break;
                    }
                }
            }
            let fields = parts
                .headers
                .iter()
                .map(|(n, v)| (n.as_str().as_bytes().to_vec(), v.as_bytes().to_vec()))
                .collect();
            log.borrow_mut().push(Req {
                method: parts.method.to_string(),
                target: parts.uri.to_string(),
                version: parts.version,
                fields: grouped(fields),
                body: error.map_or(Ok(data), Err),
            });
            let mut resp = Response::new(String::new());
            *resp.status_mut() = http::StatusCode::NOT_FOUND;
            Ok::<_, Infallible>(resp)
        }
    });
    let io = Mem {
        data: input.to_vec(),
        at: 0,
    };
    let conn = http1::Builder::new()
        .max_headers(max_headers)
        // The client sent everything and shut down its side: hyper must still read the
        // requests in its buffer and answer them (without this, EOF while a request is
        // handled ends the connection).
        .half_close(true)
        .serve_connection(io, service);
    let _ = runtime().block_on(conn);
    let reqs = seen.borrow().clone();
    reqs
}

fn sentinel() -> Req {
    Req {
        method: "GET".into(),
        target: "/sentinel?x=1".into(),
        version: Version::HTTP_11,
        fields: vec![(b"host".to_vec(), b"sentinel".to_vec())],
        body: Ok(Vec::new()),
    }
}

/// The input up to `end`, then a sentinel request.
fn with_sentinel(input: &[u8], end: usize) -> Vec<u8> {
    let mut v = input[..end].to_vec();
    v.extend_from_slice(SENTINEL);
    v
}

/// The request from `a.start` to `a.end` with its version changed to HTTP/1.1 (the
/// HTTP/1.0 + Transfer-Encoding exclusion).
fn as_http11(input: &[u8], a: &Accepted) -> Vec<u8> {
    let mut v = input[a.start..a.end].to_vec();
    // The request line's version is the first " HTTP/1.0" (method and target hold no
    // space).
    let at = v
        .windows(9)
        .position(|w| w == b" HTTP/1.0")
        .expect("an HTTP/1.0 request line");
    v[at + 8] = b'1';
    v
}

fn is_faulty_http10(a: &Accepted) -> bool {
    a.req.version == Version::HTTP_10 && a.fields.contains_key("transfer-encoding")
}

/// The upstream request hookgate writes for `a` is one request, framed by its length.
fn check_upstream(a: &Accepted) {
    let Ok(body) = &a.req.body else {
        unreachable!("accepted bodies are whole")
    };
    let upstream = Upstream {
        url: "http://127.0.0.1:9000/up?src=gw".into(),
        scheme: http::uri::Scheme::HTTP,
        authority: http::uri::Authority::from_static("127.0.0.1:9000"),
        path_and_query: "/up?src=gw".into(),
        uri: Uri::from_static("http://127.0.0.1:9000/up?src=gw"),
        host_header: HeaderValue::from_static("127.0.0.1:9000"),
    };
    let path = upstream_path(&upstream, a.uri.query());
    let route = HeaderValue::from_static("r");
    let verified = HeaderValue::from_static("none");
    let info = ForwardInfo {
        peer: "198.51.100.7",
        peer_trusted: false,
        proto: "http",
        original_host: a.fields.get("host").map(|h| h.as_bytes()),
        request_id: b"req-1",
        route: &route,
        verified: &verified,
        upstream_host: &upstream.host_header,
        body_len: body.len(),
        traceparent: Some(TRACE),
    };
    let mut head = Vec::new();
    write_upstream_head(&mut head, &a.method, &path, &a.fields, &info);
    let shown = || String::from_utf8_lossy(&head).into_owned();

    let mut slots = vec![httparse::EMPTY_HEADER; a.fields.len() + 16];
    let mut parsed = httparse::Request::new(&mut slots);
    assert_eq!(
        parsed.parse(&head),
        Ok(httparse::Status::Complete(head.len())),
        "upstream head {}",
        shown()
    );

    let mut wire = head.clone();
    wire.extend_from_slice(body);
    wire.extend_from_slice(SENTINEL);
    // The gateway adds up to 9 fields of its own to the sender's (at most MAX_HEADERS):
    // the upstream reads with room for them.
    let got = hyper_reads(&wire, MAX_HEADERS + 16);
    assert_eq!(got.len(), 2, "upstream request {}: {got:?}", shown());
    let up = &got[0];
    assert_eq!(up.method, a.req.method, "{}", shown());
    assert_eq!(up.target, path.as_ref(), "{}", shown());
    assert_eq!(up.body.as_ref(), Ok(body), "{}", shown());
    let values = |name: &[u8]| -> Vec<&[u8]> {
        up.fields
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| &v[..])
            .collect()
    };
    assert_eq!(
        values(b"content-length"),
        [body.len().to_string().as_bytes()],
        "{}",
        shown()
    );
    assert!(values(b"transfer-encoding").is_empty(), "{}", shown());
    assert_eq!(got[1], sentinel(), "after the upstream request {}", shown());
}

fuzz_target!(|input: &[u8]| {
    if input.len() > MAX_INPUT {
        return;
    }
    let (accepted, limits_hit) = hookgate_reads(input);
    if accepted.is_empty() || limits_hit {
        return;
    }
    let hyper = hyper_reads(input, MAX_HEADERS);

    for (i, a) in accepted.iter().enumerate() {
        if is_faulty_http10(a) {
            // Exclusion (RFC 9112 §6.1): hookgate reads it and closes.
            assert!(!a.keep_alive, "HTTP/1.0 with Transfer-Encoding kept alive");
            assert_eq!(i + 1, accepted.len());
            let alone = hyper_reads(&as_http11(input, a), MAX_HEADERS);
            let want = Req {
                version: Version::HTTP_11,
                ..a.req.clone()
            };
            assert_eq!(alone.first(), Some(&want), "HTTP/1.0 chunked request {i}");
            // hyper refuses the original, so reads nothing from it on.
            continue;
        }
        assert_eq!(
            hyper.get(i),
            Some(&a.req),
            "request {i}: hyper read {hyper:?}"
        );
    }

    // Where hookgate ends its first and last request, hyper does too.
    let mut cuts = vec![0];
    if accepted.len() > 1 {
        cuts.push(accepted.len() - 1);
    }
    for k in cuts {
        let a = &accepted[k];
        if !a.keep_alive || is_faulty_http10(a) {
            continue;
        }
        let got = hyper_reads(&with_sentinel(input, a.end), MAX_HEADERS);
        let mut want: Vec<Req> = accepted[..=k].iter().map(|a| a.req.clone()).collect();
        want.push(sentinel());
        assert_eq!(
            got, want,
            "a sentinel after request {k} (ends at {})",
            a.end
        );
    }

    for a in &accepted {
        check_upstream(a);
    }
});
