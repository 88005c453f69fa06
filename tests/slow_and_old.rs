//! Connection hygiene over time, end to end on 127.0.0.1: a body that trickles in below
//! `limits.body_min_rate` (HTTP/1.1 and HTTP/2), connections older than
//! `limits.max_connection_age`, and HTTP/2 keep-alive PINGs to a silent peer.

mod common;

use bytes::Bytes;
use common::*;
use http::Request;
use hyper::body::Frame;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SECRET: &str = "slow-and-old-secret";
const BODY: &[u8] = br#"{"alert":"slow and old"}"#;

/// A gateway with `limits` in front of a real upstream sink, with one Expel route.
async fn gateway(limits: &str) -> (Upstream, Gateway) {
    let up = Upstream::start().await;
    let route = expel_route("expel", "/hooks/expel", SECRET, &up.url("/expel"), "");
    let gw = Gateway::start(&format!("limits: {{ {limits} }}\nroutes:\n{route}"), None).await;
    (up, gw)
}

/// A request body fed through a channel, one DATA frame per chunk sent.
struct Fed(tokio::sync::mpsc::UnboundedReceiver<Bytes>);

impl hyper::body::Body for Fed {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

/// Writes `body` in pieces of `piece` bytes, one every `every`, until it is all sent or
/// the server stops reading.
async fn trickle(
    mut w: tokio::net::tcp::OwnedWriteHalf,
    body: Vec<u8>,
    piece: usize,
    every: Duration,
) {
    for part in body.chunks(piece) {
        tokio::time::sleep(every).await;
        if w.write_all(part).await.is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn a_trickled_body_gets_408_body_too_slow_and_a_fast_one_is_delivered() {
    let (up, gw) =
        gateway("body_min_rate: 1KiB, body_min_rate_grace: 500ms, body_timeout: 10s").await;
    let body: Vec<u8> = format!(r#"{{"pad":"{}"}}"#, "x".repeat(4000)).into_bytes();

    // HTTP/1.1, 100 bytes a second: refused once the grace is over, well before the
    // body deadline.
    let request = expel_request(SECRET, &body, "");
    let head_len = request.len() - body.len();
    let s = TcpStream::connect(gw.addr).await.unwrap();
    let (mut r, mut w) = s.into_split();
    w.write_all(&request[..head_len]).await.unwrap();
    let start = Instant::now();
    let writer = tokio::spawn(trickle(w, body.clone(), 10, Duration::from_millis(100)));
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), r.read_to_end(&mut answer)).await;
    let took = start.elapsed();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.ends_with("body_too_slow\n"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    assert!(
        took >= Duration::from_millis(450),
        "refused within the grace: {took:?}"
    );
    assert!(took < Duration::from_secs(3), "refused late: {took:?}");
    writer.abort();

    // The same body in one write (in hand at once: no timer at all) is delivered.
    let sig = expel_sig(SECRET, &body);
    let reply = post(
        gw.addr,
        "/hooks/expel",
        &[("expel-signature-256", &sig)],
        body.clone(),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    // So is one that arrives late but fast: 1 KiB every 200 ms, past the grace.
    let s = TcpStream::connect(gw.addr).await.unwrap();
    let (mut r, mut w) = s.into_split();
    w.write_all(&request[..head_len]).await.unwrap();
    trickle(w, body.clone(), 1024, Duration::from_millis(200)).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), r.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let received = up.received();
    assert_eq!(received.len(), 2, "only the fast bodies reach the upstream");
    assert!(received.iter().all(|r| r.body[..] == body[..]));

    // HTTP/2 (h2c): the same for a stream whose DATA frames trickle in.
    let stream = TcpStream::connect(gw.addr).await.unwrap();
    let (mut sender, _conn) = h2_handshake::<_, Fed>(stream).await;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let req = Request::post("http://localhost/hooks/expel")
        .header("expel-signature-256", &sig)
        .header("content-length", body.len())
        .body(Fed(rx))
        .unwrap();
    let feeder = tokio::spawn(async move {
        for part in body.chunks(10) {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if tx.send(Bytes::copy_from_slice(part)).is_err() {
                return;
            }
        }
    });
    let start = Instant::now();
    let resp = tokio::time::timeout(Duration::from_secs(5), sender.send_request(req))
        .await
        .expect("answered in time")
        .unwrap();
    assert_eq!(resp.status(), 408);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(3),
        "{took:?}"
    );
    use http_body_util::BodyExt;
    let text = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&text[..], b"body_too_slow\n");
    feeder.abort();
    assert_eq!(up.received().len(), 2);
}

#[tokio::test]
async fn an_old_http1_connection_answers_with_connection_close_and_closes() {
    let (up, gw) = gateway("max_connection_age: 1s, idle_timeout: 10s").await;
    let request = expel_request(SECRET, BODY, "");
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let opened = Instant::now();
    s.write_all(&request).await.unwrap();
    let first = read_response(&mut s, &mut Vec::new()).await.0;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    assert!(
        !first.to_ascii_lowercase().contains("connection: close"),
        "{first}"
    );
    // Past the age (1 s less up to 10%): the next answer closes the connection.
    tokio::time::sleep(Duration::from_millis(1100).saturating_sub(opened.elapsed())).await;
    s.write_all(&request).await.unwrap();
    let (second, closed) = until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
    assert!(
        second.to_ascii_lowercase().contains("connection: close"),
        "{second}"
    );
    assert!(closed.is_some(), "an old connection stayed open");
    assert_eq!(up.received().len(), 2, "both requests were delivered");

    // A young connection on the same gateway keeps alive.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(&request).await.unwrap();
    let answer = read_response(&mut s, &mut Vec::new()).await.0;
    assert!(
        !answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
}

/// `body_min_rate` counts body bytes, not the bytes on the wire: a chunked body that sends
/// its data one byte a chunk, padded with chunk extensions to 1.5 KB/s of framing, is
/// as slow as its 10 data bytes a second, and gets 408 `body_too_slow`.
#[tokio::test]
async fn chunk_framing_does_not_count_towards_the_body_rate() {
    let (up, gw) =
        gateway("body_min_rate: 1KiB, body_min_rate_grace: 500ms, body_timeout: 10s").await;
    let body = vec![b'x'; 100];
    let sig = expel_sig(SECRET, &body);
    let s = TcpStream::connect(gw.addr).await.unwrap();
    let (mut r, mut w) = s.into_split();
    let head = format!(
        "POST /hooks/expel HTTP/1.1\r\nHost: localhost\r\nExpel-Signature-256: {sig}\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    w.write_all(head.as_bytes()).await.unwrap();
    let start = Instant::now();
    let padding = format!(";pad={}", "p".repeat(140));
    let wire: Vec<u8> = body
        .iter()
        .flat_map(|b| {
            let mut chunk = format!("1{padding}\r\n").into_bytes();
            chunk.extend_from_slice(&[*b, b'\r', b'\n']);
            chunk
        })
        .collect();
    let per_chunk = wire.len() / body.len();
    assert!(per_chunk >= 150, "{per_chunk} bytes a chunk");
    // One chunk every 100 ms: 1.5 KB/s on the wire, 10 body bytes a second.
    let writer = tokio::spawn(trickle(w, wire, per_chunk, Duration::from_millis(100)));
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), r.read_to_end(&mut answer)).await;
    let took = start.elapsed();
    writer.abort();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.ends_with("body_too_slow\n"), "{answer}");
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert!(up.received().is_empty());
}

/// The HTTP/2 connection preface and an empty SETTINGS frame.
const H2_HELLO: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";
const GOAWAY: u8 = 0x7;
const PING: u8 = 0x6;

/// The frames a raw HTTP/2 client that never answers anything receives: `(type, flags,
/// when)`, until `stop` says so, the server closes, or `limit` passes; and when it closed.
async fn frames(
    s: &mut TcpStream,
    limit: Duration,
    stop: impl Fn(u8, u8) -> bool,
) -> (Vec<(u8, u8, Duration)>, Option<Duration>) {
    let start = Instant::now();
    let (mut got, mut buf, mut chunk) = (Vec::new(), Vec::<u8>::new(), [0u8; 4096]);
    loop {
        while buf.len() >= 9 {
            let len =
                (usize::from(buf[0]) << 16) | (usize::from(buf[1]) << 8) | usize::from(buf[2]);
            if buf.len() < 9 + len {
                break;
            }
            let (kind, flags) = (buf[3], buf[4]);
            got.push((kind, flags, start.elapsed()));
            buf.drain(..9 + len);
            if stop(kind, flags) {
                return (got, None);
            }
        }
        match tokio::time::timeout_at((start + limit).into(), s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (got, Some(start.elapsed())),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => return (got, None),
        }
    }
}

#[tokio::test]
async fn an_old_h2_connection_gets_goaway_and_finishes_its_streams() {
    let (up, gw) =
        gateway("max_connection_age: 1s, idle_timeout: 10s, h2_keepalive_interval: 0s").await;
    // A raw client: GOAWAY arrives once the connection is 0.9 to 1 s old.
    let mut raw = TcpStream::connect(gw.addr).await.unwrap();
    raw.write_all(H2_HELLO).await.unwrap();
    let (got, _) = frames(&mut raw, Duration::from_secs(4), |kind, _| kind == GOAWAY).await;
    let at = got.iter().find(|f| f.0 == GOAWAY).map(|f| f.2);
    let at = at.unwrap_or_else(|| panic!("no GOAWAY: {got:?}"));
    assert!(
        at >= Duration::from_millis(850) && at < Duration::from_millis(2500),
        "{at:?}"
    );

    // A stream in flight when the connection gets old finishes; then the connection ends.
    up.set(200, "{\"ok\":true}", Duration::from_millis(900));
    let stream = TcpStream::connect(gw.addr).await.unwrap();
    let opened = Instant::now();
    let (mut sender, conn) = h2_handshake(stream).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let req = expel_post(SECRET, BODY);
    let (reply, _) = request_over(&mut sender, req).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(
        opened.elapsed() >= Duration::from_millis(1200),
        "the stream outlived the age"
    );
    let ended = tokio::time::timeout(Duration::from_secs(3), conn).await;
    assert!(ended.is_ok(), "an old h2 connection stayed open");
    assert!(sender.is_closed() || !sender.is_ready());
    assert_eq!(up.received().len(), 1);
}

/// An idle HTTP/2 connection gets a GOAWAY; a peer that ignores it (it answers nothing,
/// and keep-alive PINGs are off, so nothing else would find it) is closed one
/// `idle_timeout` later instead of holding the connection for good.
#[tokio::test]
async fn an_h2_peer_that_ignores_its_goaway_is_closed_an_idle_timeout_later() {
    let (_up, gw) = gateway("h2_keepalive_interval: 0s, idle_timeout: 1s").await;
    let mut raw = TcpStream::connect(gw.addr).await.unwrap();
    raw.write_all(H2_HELLO).await.unwrap();
    let (got, closed) = frames(&mut raw, Duration::from_secs(6), |_, _| false).await;
    let goaway = got.iter().find(|f| f.0 == GOAWAY).map(|f| f.2);
    let goaway = goaway.unwrap_or_else(|| panic!("no GOAWAY: {got:?}"));
    assert!(
        goaway >= Duration::from_millis(900) && goaway < Duration::from_millis(2500),
        "{got:?}"
    );
    let closed = closed.unwrap_or_else(|| panic!("the peer kept the connection: {got:?}"));
    assert!(
        closed >= goaway + Duration::from_millis(900) && closed < Duration::from_millis(5000),
        "GOAWAY at {goaway:?}, closed at {closed:?}"
    );
}

#[tokio::test]
async fn a_silent_h2_peer_is_pinged_and_cut_and_keepalive_can_be_off() {
    let (up, gw) =
        gateway("h2_keepalive_interval: 300ms, h2_keepalive_timeout: 300ms, idle_timeout: 30s")
            .await;
    // A client that sends its preface, then neither sends nor answers anything.
    let mut raw = TcpStream::connect(gw.addr).await.unwrap();
    raw.write_all(H2_HELLO).await.unwrap();
    let (got, closed) = frames(&mut raw, Duration::from_secs(4), |_, _| false).await;
    let ping = got.iter().find(|f| f.0 == PING && f.1 & 1 == 0);
    let ping = ping.unwrap_or_else(|| panic!("no keep-alive PING: {got:?}"));
    assert!(ping.2 >= Duration::from_millis(250), "{got:?}");
    let closed = closed.unwrap_or_else(|| panic!("a silent peer stayed connected: {got:?}"));
    assert!(
        closed >= Duration::from_millis(550) && closed < Duration::from_secs(3),
        "{closed:?}"
    );

    // A client that answers (hyper's) stays, past several intervals.
    let stream = TcpStream::connect(gw.addr).await.unwrap();
    let (mut sender, conn) = h2_handshake(stream).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!conn.is_finished(), "a live peer was cut");
    let req = expel_post(SECRET, BODY);
    let (reply, _) = request_over(&mut sender, req).await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(up.received().len(), 1);

    // Off (0s): no PING, and the silent peer stays until another limit ends it.
    let (_up, gw) = gateway("h2_keepalive_interval: 0s, idle_timeout: 30s").await;
    let mut raw = TcpStream::connect(gw.addr).await.unwrap();
    raw.write_all(H2_HELLO).await.unwrap();
    let (got, closed) = frames(&mut raw, Duration::from_millis(1200), |_, _| false).await;
    assert!(!got.iter().any(|f| f.0 == PING), "{got:?}");
    assert_eq!(closed, None, "{got:?}");
}
