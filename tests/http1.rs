//! The HTTP/1.1 server (`h1`) over raw sockets on 127.0.0.1: pipelining, `100 Continue`
//! only after the checks, connection reuse after rejects, HTTP/1.0, refused heads, large
//! bodies read in pieces, and HEAD answers without a body.

mod common;

use common::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SECRET: &str = "h1-test-secret";

fn yaml(up: &Upstream) -> String {
    let route = expel_route(
        "expel",
        "/hooks/expel",
        SECRET,
        &up.url("/expel"),
        "    max_body: 2MiB\n",
    );
    format!("routes:\n{route}")
}

fn signed_request(body: &[u8], extra: &str) -> Vec<u8> {
    expel_request(SECRET, body, extra)
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&yaml(&up), None).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let mut all = Vec::new();
    for i in 0..3 {
        all.extend(signed_request(format!("{{\"n\":{i}}}").as_bytes(), ""));
    }
    // A forged one in the middle of the stream, then a good one again.
    all.extend(
        format!(
            "POST /hooks/expel HTTP/1.1\r\nHost: localhost\r\nExpel-Signature-256: {}\r\nContent-Length: 2\r\n\r\n{{}}",
            expel_sig("wrong", b"{}")
        )
        .into_bytes(),
    );
    all.extend(signed_request(b"{\"n\":4}", ""));
    s.write_all(&all).await.unwrap();
    let mut pending = Vec::new();
    for want in ["200", "200", "200", "406", "200"] {
        let (head, _) = read_response(&mut s, &mut pending).await;
        assert!(head.starts_with(&format!("HTTP/1.1 {want}")), "{head}");
        assert!(!head.contains("connection: close"), "{head}");
    }
    let bodies: Vec<Vec<u8>> = up.received().into_iter().map(|r| r.body.to_vec()).collect();
    assert_eq!(
        bodies,
        [&b"{\"n\":0}"[..], b"{\"n\":1}", b"{\"n\":2}", b"{\"n\":4}"]
    );
}

#[tokio::test]
async fn continue_is_sent_only_after_the_checks_pass() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&yaml(&up), None).await;
    let body = br#"{"alert":"expect"}"#;
    let req = signed_request(body, "Expect: 100-continue\r\n");
    let head_len = req.len() - body.len();
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(&req[..head_len]).await.unwrap();
    let mut pending = Vec::new();
    let (interim, _) = read_response(&mut s, &mut pending).await;
    assert!(interim.starts_with("HTTP/1.1 100 Continue"), "{interim}");
    s.write_all(body).await.unwrap();
    let (fin, _) = read_response(&mut s, &mut pending).await;
    assert!(fin.starts_with("HTTP/1.1 200"), "{fin}");
    assert_eq!(up.received()[0].body, &body[..]);

    // Declared over max_body: 413 at once, no 100, and the connection ends.
    let mut s = refused_upload(gw.addr, 5_000_000, "Expect: 100-continue\r\n").await;
    assert!(until_closed(&mut s, Duration::from_secs(3))
        .await
        .1
        .is_some());

    // An unknown route: 404, no 100.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(
        b"POST /nowhere HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n",
    )
    .await
    .unwrap();
    let (fin, _) = read_response(&mut s, &mut Vec::new()).await;
    assert!(fin.starts_with("HTTP/1.1 404"), "{fin}");
    assert_eq!(up.received().len(), 1);
}

#[tokio::test]
async fn a_reject_keeps_the_connection_only_if_the_body_is_in_hand() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&yaml(&up), None).await;
    // Whole body sent: the 404 leaves the connection usable.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"POST /nowhere HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello")
        .await
        .unwrap();
    let mut pending = Vec::new();
    let (head, body) = read_response(&mut s, &mut pending).await;
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    assert_eq!(body, b"unknown_route\n");
    s.write_all(&signed_request(b"{\"after\":404}", ""))
        .await
        .unwrap();
    let (head, _) = read_response(&mut s, &mut pending).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    // Body still on its way: the answer says close, and the connection ends, so that
    // the rest of that body is never read as a request.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"POST /nowhere HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\nGET / HTTP/1.1\r\n")
        .await
        .unwrap();
    let mut pending = Vec::new();
    let (head, _) = read_response(&mut s, &mut pending).await;
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert!(until_closed(&mut s, Duration::from_secs(4))
        .await
        .1
        .is_some());
    assert_eq!(up.received().len(), 1);
}

#[tokio::test]
async fn refused_heads_get_400_and_the_connection_ends() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&yaml(&up), None).await;
    for (raw_req, reason) in [
        (
            &b"POST /hooks/expel HTTP/1.1\r\nHost: localhost\r\nContent-Length: +2\r\n\r\n{}"[..],
            "invalid_content_length",
        ),
        (
            b"POST /hooks/expel HTTP/1.1\r\nHost: localhost\r\nX: a\rb\r\n\r\n",
            "invalid_request",
        ),
        (
            b"POST /hooks/expel HTTP/3.0\r\nHost: localhost\r\n\r\n",
            "invalid_request",
        ),
        (
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            "invalid_request",
        ),
    ] {
        let answer = raw(gw.addr, raw_req, Duration::from_secs(3)).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
        assert!(answer.contains("connection: close"), "{answer:?}");
        assert!(
            answer.ends_with(&format!("\r\n\r\n{reason}\n")),
            "{answer:?}"
        );
    }
    assert!(up.received().is_empty());
}

#[tokio::test]
async fn http10_closes_unless_it_asks_for_keep_alive() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&yaml(&up), None).await;
    let body = b"{\"v\":\"1.0\"}";
    let req = |extra: &str| {
        let mut r = String::from_utf8(signed_request(body, extra)).unwrap();
        r = r.replacen("HTTP/1.1", "HTTP/1.0", 1);
        r.into_bytes()
    };
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(&req("")).await.unwrap();
    let (head, _) = read_response(&mut s, &mut Vec::new()).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert!(until_closed(&mut s, Duration::from_secs(3))
        .await
        .1
        .is_some());

    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let mut pending = Vec::new();
    for i in 0..2 {
        let request = req("Connection: keep-alive\r\n");
        let what = format!("HTTP/1.0 keep-alive request {i}");
        expect_kept_alive_200(&mut s, &mut pending, &request, &what).await;
    }
    assert_eq!(up.received().len(), 3);
}

#[tokio::test]
async fn a_large_body_sent_in_pieces_arrives_whole() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&yaml(&up), None).await;
    let body: Vec<u8> = (0..1_500_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let req = signed_request(&body, "");
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    for piece in req.chunks(100_003) {
        s.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let (head, _) = read_response(&mut s, &mut Vec::new()).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let got = up.received();
    assert_eq!(got.len(), 1);
    assert!(got[0].body == body, "the body changed on the way");
}

#[tokio::test]
async fn head_requests_get_a_head_and_no_body() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&yaml(&up), None).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"HEAD /hooks/expel HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut pending = Vec::new();
    // The 405 announces its length but sends no body: the next answer follows at once.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 4096];
    while !pending.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout_at(deadline.into(), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        pending.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&pending).into_owned();
    assert!(text.starts_with("HTTP/1.1 405"), "{text}");
    assert!(text.contains("content-length: 19"), "{text}");
    assert!(text.ends_with("\r\n\r\n"), "a body followed: {text:?}");
    s.write_all(&signed_request(b"{}", "")).await.unwrap();
    pending.clear();
    let (head, _) = read_response(&mut s, &mut pending).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
}

/// A plain connection's first read gets room sized by its last request: a request that
/// outgrows it (the head, or the body that came with it) is read on, byte for byte.
#[tokio::test]
async fn requests_of_changing_sizes_on_one_connection_arrive_whole() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&yaml(&up), None).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let sizes = [100, 2000, 12_000, 300, 17_000, 1500, 40_000, 20, 3000];
    let mut sent = Vec::new();
    let mut pending = Vec::new();
    for (i, &size) in sizes.iter().enumerate() {
        let body: Vec<u8> = (0..size).map(|j| b'a' + ((i + j) % 26) as u8).collect();
        // A long header as well for one of them, so that the head itself outgrows a
        // small room.
        let extra = if i == 4 {
            format!("X-Pad: {}\r\n", "p".repeat(6000))
        } else {
            String::new()
        };
        let what = format!("request {i} ({size} B)");
        expect_kept_alive_200(&mut s, &mut pending, &signed_request(&body, &extra), &what).await;
        sent.push(body);
    }
    up.assert_bodies(&sent);
}

/// The head of an upload of `declared` bytes, with `extra` header lines.
fn upload_head(declared: usize, extra: &str) -> Vec<u8> {
    format!(
        "POST /hooks/expel HTTP/1.1\r\nHost: localhost\r\n{extra}Content-Length: {declared}\r\n\r\n"
    )
    .into_bytes()
}

/// A request whose declared body is over the route's `max_body` (2 MiB): answered 413 at
/// once (the first answer: no `100 Continue`), its body unread. Returns the connection
/// with the answer read.
async fn refused_upload(addr: std::net::SocketAddr, declared: usize, extra: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&upload_head(declared, extra)).await.unwrap();
    let mut pending = Vec::new();
    let (head, body) = read_response(&mut s, &mut pending).await;
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert_eq!(body, b"body_too_large\n");
    s
}

/// Sends 1 KiB every `every` until a write fails (the server closed and reset the
/// connection) or `limit` passes; returns when the failing write was made.
async fn trickle_until_refused(
    s: &mut TcpStream,
    every: Duration,
    limit: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if s.write_all(&[b'x'; 1024]).await.is_err() {
            return Some(start.elapsed());
        }
        tokio::time::sleep(every).await;
    }
    None
}

/// A sender whose body is refused by its declared size (413) usually uploads all of it
/// before it reads the answer. Closing with its bytes unread would reset the connection
/// and, at the sender, the 413 with it: a reset reads as "retry" to most senders. So
/// the connection lingers (nginx's lingering close): what the sender still sends is
/// read and discarded until it closes. Here 16 MiB after the answer, more than the
/// kernel buffers hold: every write must go through, and the 413 be read after them.
#[tokio::test]
async fn a_sender_still_uploading_after_its_413_reads_the_answer() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&yaml(&up), None).await;
    let total = 16 << 20;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(&upload_head(total, "")).await.unwrap();
    let chunk = vec![b'x'; 64 * 1024];
    let mut sent = 0;
    while sent < total {
        s.write_all(&chunk)
            .await
            .unwrap_or_else(|e| panic!("the upload was cut after {sent} bytes: {e}"));
        sent += chunk.len();
    }
    s.shutdown().await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer))
        .await
        .expect("the connection ends once the sender has closed")
        .expect("no reset");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.ends_with("body_too_large\n"), "{answer}");
    assert!(up.received().is_empty());
}

/// Lingering ends once the sender has sent nothing for `linger_timeout`, and after
/// `linger_time` in all however it trickles; `linger_time: 0s` closes at once.
#[tokio::test]
async fn lingering_ends_after_linger_timeout_of_quiet_or_linger_time_in_all() {
    let up = Upstream::start().await;
    let limits = "limits: { linger_time: 10s, linger_timeout: 300ms }\n";
    let gw = Gateway::start(&format!("{limits}{}", yaml(&up)), None).await;
    let mut s = refused_upload(gw.addr, 5_000_000, "").await;
    // Sending keeps it open past linger_timeout...
    let every = Duration::from_millis(100);
    let refused = trickle_until_refused(&mut s, every, Duration::from_millis(900)).await;
    assert_eq!(
        refused, None,
        "the server closed while the sender was sending"
    );
    // ...and a quiet spell longer than it ends it: the next writes are reset.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let refused = trickle_until_refused(&mut s, every, Duration::from_secs(2)).await;
    assert!(
        refused.is_some_and(|at| at < Duration::from_millis(500)),
        "still lingering after 800 ms of quiet: {refused:?}"
    );
    gw.stop().await;

    // linger_time bounds it however the sender trickles (linger_timeout is 5 s here).
    for (linger_time, from, to) in [("1s", 800, 3000), ("0s", 0, 500)] {
        let limits = format!("limits: {{ linger_time: {linger_time} }}\n");
        let gw = Gateway::start(&format!("{limits}{}", yaml(&up)), None).await;
        let mut s = refused_upload(gw.addr, 5_000_000, "").await;
        let refused = trickle_until_refused(&mut s, every, Duration::from_secs(5)).await;
        assert!(
            refused.is_some_and(|at| (from..to).contains(&(at.as_millis() as u64))),
            "linger_time {linger_time}: the writes were refused after {refused:?}, \
             want {from}..{to} ms"
        );
        gw.stop().await;
    }
}

/// A drain waits for every connection to close, so a lingering one must not hold it: its
/// answer is out. One that lingers when the drain starts closes at once, as an idle one
/// does, however the client trickles (here `linger_time` 30 s against a 10 s grace).
#[tokio::test]
async fn a_drain_does_not_wait_for_a_lingering_connection() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&format!("shutdown_grace: 10s\n{}", yaml(&up)), None).await;
    let mut s = refused_upload(gw.addr, 5_000_000, "").await;
    let every = Duration::from_millis(100);
    let refused = trickle_until_refused(&mut s, every, Duration::from_millis(300)).await;
    assert_eq!(refused, None, "lingering");
    let trickler =
        tokio::spawn(
            async move { trickle_until_refused(&mut s, every, Duration::from_secs(8)).await },
        );
    let start = Instant::now();
    let report = gw.stop().await;
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "the drain took {:?}",
        start.elapsed()
    );
    assert_eq!(report.cut, 0);
    assert!(
        trickler.await.unwrap().is_some(),
        "the connection outlived the drain"
    );
}

/// A connection whose request was in flight when the drain started does not begin to
/// linger after its answer (the drain already asked it to close).
#[tokio::test]
async fn a_connection_answered_during_a_drain_does_not_linger() {
    let up = Upstream::start().await;
    up.set(200, "ok", Duration::from_millis(800));
    let gw = Gateway::start(&format!("shutdown_grace: 10s\n{}", yaml(&up)), None).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(&signed_request(b"{\"n\":1}", "Connection: close\r\n"))
        .await
        .unwrap();
    wait_until("the request upstream", Duration::from_secs(5), || {
        up.received().len() == 1
    })
    .await;
    let start = Instant::now();
    let stopping = tokio::spawn(gw.stop());
    let mut pending = Vec::new();
    let (head, _) = read_response(&mut s, &mut pending).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let refused =
        trickle_until_refused(&mut s, Duration::from_millis(100), Duration::from_secs(8)).await;
    assert!(
        refused.is_some_and(|at| at < Duration::from_secs(1)),
        "lingered during the drain: {refused:?}"
    );
    let report = stopping.await.unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "the drain took {:?}",
        start.elapsed()
    );
    assert_eq!(report.cut, 0);
}
