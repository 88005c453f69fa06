//! The production listener (issue #5), end to end on 127.0.0.1: TLS with ALPN, SNI and
//! client certificates, certificate and config reloads, and connection hygiene
//! (slowloris, idle and handshake deadlines, smuggling shapes, connection caps, 431).

mod common;

use bytes::Bytes;
use common::pki::{self, Ca};
use common::*;
use http::{Request, Version};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SECRET: &str = "listener-test-secret";
const BODY: &[u8] = br#"{"alert":"listener test"}"#;

fn route_yaml(upstream: &Upstream) -> String {
    let route = expel_route("expel", "/hooks/expel", SECRET, &upstream.url("/expel"), "");
    format!("routes:\n{route}")
}

fn signed(addr: SocketAddr, version: Version) -> Request<Full<Bytes>> {
    let mut b = Request::post(format!("https://localhost:{}/hooks/expel", addr.port()))
        .header("expel-signature-256", expel_sig(SECRET, BODY))
        .version(version);
    if version == Version::HTTP_11 {
        b = b.header("host", format!("localhost:{}", addr.port()));
    }
    b.body(Full::new(Bytes::from_static(BODY))).unwrap()
}

/// An upstream, a scratch directory and a test CA.
async fn tls_setup(tag: &str) -> (Upstream, TempDir, Ca) {
    (
        Upstream::start().await,
        TempDir::new(tag),
        Ca::new("test CA"),
    )
}

#[tokio::test]
async fn tls_requests_of_changing_sizes_and_pipelined_ones_arrive_whole() {
    let (up, _dir, ca, g) = tls_gateway("tls-sizes", &["localhost"], "").await;
    let mut tls = pki::connect(
        g.gw.addr,
        ca.client_config(&[b"http/1.1"], None),
        "localhost",
    )
    .await
    .unwrap();
    let body = |i: usize, size: usize| -> Vec<u8> {
        (0..size).map(|j| b'a' + ((i + j) % 26) as u8).collect()
    };
    // A connection's first read takes up to 16 KiB. The first request is exactly that
    // long and the next one follows in the same write: rustls then holds the second,
    // decrypted, while the socket has nothing left to read, and the gateway must read
    // it without waiting for the socket.
    let head_len = expel_request(SECRET, &body(0, 16_000), "").len() - 16_000;
    let exact = body(0, 16 * 1024 - head_len);
    let mut pair = expel_request(SECRET, &exact, "");
    assert_eq!(pair.len(), 16 * 1024);
    let mut sent = vec![exact, body(1, 700)];
    pair.extend_from_slice(&expel_request(SECRET, &sent[1], ""));
    tls.write_all(&pair).await.unwrap();
    let mut pending = Vec::new();
    for i in 0..2 {
        let (head, _) = read_response(&mut tls, &mut pending).await;
        assert!(head.starts_with("HTTP/1.1 200"), "pipelined {i}: {head}");
    }
    // Then one at a time, growing and shrinking, so that each read's room changes.
    for (i, size) in [100, 2000, 12_000, 300, 17_000, 1500, 40_000, 20]
        .into_iter()
        .enumerate()
    {
        let b = body(i + 2, size);
        let request = expel_request(SECRET, &b, "");
        let what = format!("request of {size} B");
        expect_kept_alive_200(&mut tls, &mut pending, &request, &what).await;
        sent.push(b);
    }
    up.assert_bodies(&sent);
}

/// A gateway terminating TLS with a certificate for `names` (`server.crt`) issued by its
/// own test CA, in front of the test route, with `extra` config lines; the directory
/// holds its files.
async fn tls_gateway(
    tag: &str,
    names: &[&str],
    extra: &str,
) -> (Upstream, TempDir, Ca, FileGateway) {
    let (up, dir, ca) = tls_setup(tag).await;
    write_server_pki(&dir, &ca, names, "server");
    let yaml = format!(
        "tls: {{ cert: {}, key: {} }}\n{extra}{}",
        dir.path("server.crt"),
        dir.path("server.key"),
        route_yaml(&up)
    );
    let g = Gateway::start_file(&dir.write("hookgate.yaml", &yaml)).await;
    (up, dir, ca, g)
}

/// The first certificate in `dir`/`file`.
fn cert_der(dir: &TempDir, file: &str) -> rustls::pki_types::CertificateDer<'static> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_file(dir.0.join(file)).unwrap()
}

/// TLS files for the gateway in `dir`: server.crt/key for localhost, and the CA.
fn write_server_pki(dir: &TempDir, ca: &Ca, names: &[&str], file: &str) {
    let issued = ca.server(names);
    dir.write(&format!("{file}.crt"), &issued.cert_pem);
    dir.write(&format!("{file}.key"), &issued.key_pem);
}

async fn h1_over(stream: pki::Tls) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

async fn h2_over(stream: pki::Tls) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    h2_handshake(stream).await.0
}

#[tokio::test]
async fn tls_serves_http11_and_h2_chosen_by_alpn() {
    let (up, _dir, ca, g) = tls_gateway("tls-alpn", &["localhost", "127.0.0.1"], "").await;
    let addr = g.gw.addr;

    let tls = pki::connect(
        addr,
        ca.client_config(&[b"h2", b"http/1.1"], None),
        "localhost",
    )
    .await
    .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut h2 = h2_over(tls).await;
    let (reply, version) = request_over(&mut h2, signed(addr, Version::HTTP_2))
        .await
        .unwrap();
    assert_eq!(
        (reply.status.as_u16(), version),
        (200, Version::HTTP_2),
        "{}",
        reply.text()
    );
    // A second stream on the same connection.
    let (reply, _) = request_over(&mut h2, signed(addr, Version::HTTP_2))
        .await
        .unwrap();
    assert_eq!(reply.status, 200);

    let tls = pki::connect(addr, ca.client_config(&[b"http/1.1"], None), "localhost")
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let mut h1 = h1_over(tls).await;
    let (reply, version) = request_over(&mut h1, signed(addr, Version::HTTP_11))
        .await
        .unwrap();
    assert_eq!((reply.status.as_u16(), version), (200, Version::HTTP_11));

    // A client that offers no ALPN gets HTTP/1.1.
    let tls = pki::connect(addr, ca.client_config(&[], None), "127.0.0.1")
        .await
        .unwrap();
    let mut h1 = h1_over(tls).await;
    let (reply, _) = request_over(&mut h1, signed(addr, Version::HTTP_11))
        .await
        .unwrap();
    assert_eq!(reply.status, 200);

    let got = up.received();
    assert_eq!(got.len(), 4);
    assert!(got.iter().all(|r| r.body == BODY));
    assert!(got
        .iter()
        .all(|r| r.headers["x-forwarded-proto"] == "https"));
    // A forged delivery over TLS is still refused.
    let tls = pki::connect(addr, ca.client_config(&[b"h2"], None), "localhost")
        .await
        .unwrap();
    let mut h2 = h2_over(tls).await;
    let mut forged = signed(addr, Version::HTTP_2);
    *forged.body_mut() = Full::new(Bytes::from_static(b"{\"alert\":\"forged\"}"));
    let (reply, _) = request_over(&mut h2, forged).await.unwrap();
    assert_eq!(reply.status, 406);
    assert_eq!(up.received().len(), 4);
}

#[tokio::test]
async fn sni_chooses_the_certificate() {
    let (up, dir, ca) = tls_setup("tls-sni").await;
    write_server_pki(&dir, &ca, &["localhost"], "default");
    write_server_pki(&dir, &ca, &["a.example"], "a");
    write_server_pki(&dir, &ca, &["*.b.example"], "b");
    let yaml = format!(
        "tls:\n  cert: {}\n  key: {}\n  sni:\n    - {{ cert: {}, key: {} }}\n    - {{ cert: {}, key: {} }}\n{}",
        dir.path("default.crt"),
        dir.path("default.key"),
        dir.path("a.crt"),
        dir.path("a.key"),
        dir.path("b.crt"),
        dir.path("b.key"),
        route_yaml(&up)
    );
    let g = Gateway::start_file(&dir.write("hookgate.yaml", &yaml)).await;
    let client = ca.client_config(&[b"http/1.1"], None);
    for (name, file) in [
        ("a.example", "a.crt"),
        ("x.b.example", "b.crt"),
        ("localhost", "default.crt"),
    ] {
        let tls = pki::connect(g.gw.addr, client.clone(), name).await.unwrap();
        assert_eq!(pki::peer_cert(&tls), cert_der(&dir, file), "{name}");
    }
    // A name no certificate covers gets the default one, which the client refuses.
    assert!(pki::connect(g.gw.addr, client, "c.example").await.is_err());
}

#[tokio::test]
async fn client_certificates_are_required_when_configured() {
    let (up, dir, ca) = tls_setup("tls-mtls").await;
    let senders = Ca::new("sender CA");
    dir.write("senders.pem", &senders.pem);
    write_server_pki(&dir, &ca, &["localhost"], "server");
    let yaml = format!(
        "tls: {{ cert: {}, key: {}, client_ca: {} }}\n{}",
        dir.path("server.crt"),
        dir.path("server.key"),
        dir.path("senders.pem"),
        route_yaml(&up)
    );
    let g = Gateway::start_file(&dir.write("hookgate.yaml", &yaml)).await;
    let addr = g.gw.addr;

    let good = senders.client("sender.example");
    let tls = pki::connect(
        addr,
        ca.client_config(&[b"http/1.1"], Some(&good)),
        "localhost",
    )
    .await
    .unwrap();
    let mut h1 = h1_over(tls).await;
    let (reply, _) = request_over(&mut h1, signed(addr, Version::HTTP_11))
        .await
        .unwrap();
    assert_eq!(reply.status, 200);

    // Without a certificate, or with one from another CA: refused. Under TLS 1.3 the
    // client may finish its side of the handshake first and learn of it on first use.
    let stranger = Ca::new("other CA").client("intruder.example");
    for identity in [None, Some(&stranger)] {
        let refused = match pki::connect(
            addr,
            ca.client_config(&[b"http/1.1"], identity),
            "localhost",
        )
        .await
        {
            Err(_) => true,
            Ok(tls) => {
                let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                    .await
                    .unwrap();
                tokio::spawn(conn);
                request_over(&mut sender, signed(addr, Version::HTTP_11))
                    .await
                    .is_err()
            }
        };
        assert!(
            refused,
            "a client without a trusted certificate got through"
        );
    }
    assert_eq!(up.received().len(), 1);
}

#[tokio::test]
async fn certificates_reload_without_dropping_open_connections() {
    let (up, dir, ca, g) =
        tls_gateway("tls-reload", &["localhost"], "reload: { watch: false }\n").await;
    let first = cert_der(&dir, "server.crt");
    let addr = g.gw.addr;
    let client = ca.client_config(&[b"http/1.1"], None);
    let tls = pki::connect(addr, client.clone(), "localhost")
        .await
        .unwrap();
    assert_eq!(pki::peer_cert(&tls), first);
    let mut open = h1_over(tls).await;
    let (reply, _) = request_over(&mut open, signed(addr, Version::HTTP_11))
        .await
        .unwrap();
    assert_eq!(reply.status, 200);

    // New certificate and key on disk, then a reload (SIGHUP).
    write_server_pki(&dir, &ca, &["localhost"], "server");
    g.reload.send(()).unwrap();
    let second = cert_der(&dir, "server.crt");
    assert_ne!(first, second);
    let fresh = wait_for_cert(addr, &client, &second).await;
    assert!(fresh, "new handshakes never saw the new certificate");
    // The connection opened before the reload still works.
    let (reply, _) = request_over(&mut open, signed(addr, Version::HTTP_11))
        .await
        .unwrap();
    assert_eq!(reply.status, 200);

    // A broken certificate is refused: the old one stays.
    dir.write(
        "server.crt",
        "-----BEGIN CERTIFICATE-----\nbm9wZQ==\n-----END CERTIFICATE-----\n",
    );
    g.reload.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let tls = pki::connect(addr, client.clone(), "localhost")
        .await
        .unwrap();
    assert_eq!(pki::peer_cert(&tls), second);
    let mut h1 = h1_over(tls).await;
    let (reply, _) = request_over(&mut h1, signed(addr, Version::HTTP_11))
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(up.received().len(), 3);
}

/// Handshakes until the server presents `want` (a reload is asynchronous), up to 5 s.
async fn wait_for_cert(
    addr: SocketAddr,
    client: &std::sync::Arc<rustls::ClientConfig>,
    want: &rustls::pki_types::CertificateDer<'static>,
) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let tls = pki::connect(addr, client.clone(), "localhost")
            .await
            .unwrap();
        if pki::peer_cert(&tls) == *want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// The status `path` answers to the sample body signed with `sig`.
async fn status(addr: SocketAddr, path: &str, sig: &str) -> u16 {
    post(addr, path, &[("expel-signature-256", sig)], BODY)
        .await
        .status
        .as_u16()
}

/// Posts until `path` answers `want` (a reload is asynchronous), up to 5 s.
async fn wait_for_status(addr: SocketAddr, path: &str, sig: &str, want: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if post(addr, path, &[("expel-signature-256", sig)], BODY)
            .await
            .status
            == want
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn config_reload_swaps_good_configs_and_refuses_bad_ones() {
    let up = Upstream::start().await;
    let dir = TempDir::new("reload");
    dir.write("secret", &format!("{SECRET}\n"));
    let routes = |extra: &str| {
        format!(
            r#"reload: {{ watch: true, interval: 100ms }}
routes:
  - name: expel
    path: /hooks/expel
    verify: {{ preset: expel, secret_files: ["{}"] }}
    rate_limit: {{ per_second: 0.01, burst: 3 }}
    upstream: http://{}/expel
{extra}"#,
            dir.path("secret"),
            up.addr
        )
    };
    let path = dir.write("hookgate.yaml", &routes(""));
    let g = Gateway::start_file(&path).await;
    let addr = g.gw.addr;
    let sig = expel_sig(SECRET, BODY);
    for _ in 0..2 {
        assert_eq!(status(addr, "/hooks/expel", &sig).await, 200);
    }
    assert_eq!(status(addr, "/hooks/other", &sig).await, 404);

    // A good config with one more route: picked up from the file change.
    dir.write("other-secret", &format!("{SECRET}\n"));
    let other = format!(
        "  - name: other\n    path: /hooks/other\n    verify: {{ preset: expel, secret_files: [\"{}\"] }}\n    upstream: http://{}/other\n",
        dir.path("other-secret"),
        up.addr
    );
    dir.write("hookgate.yaml", &routes(&other));
    assert!(
        wait_for_status(addr, "/hooks/other", &sig, 200).await,
        "the new route never answered"
    );
    // The unchanged route kept its rate-limit budget: one of three left, then 429.
    assert_eq!(status(addr, "/hooks/expel", &sig).await, 200);
    assert_eq!(status(addr, "/hooks/expel", &sig).await, 429);

    // A bad config is refused; the running one keeps serving.
    dir.write("hookgate.yaml", "routes: [ this is not yaml\n");
    g.reload.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(status(addr, "/hooks/other", &sig).await, 200);
    let admin = send(g.gw.admin, "GET", "/readyz", &[], "").await;
    assert_eq!(admin.status, 200);
    dir.write("hookgate.yaml", &routes(&other));

    // Secret rotation by rewriting the secret file (a Kubernetes Secret update): no
    // restart, no SIGHUP; the watcher sees the file change.
    let rotated = "rotated-listener-secret";
    dir.write("other-secret", &format!("{rotated}\n"));
    let new_sig = expel_sig(rotated, BODY);
    assert!(
        wait_for_status(addr, "/hooks/other", &new_sig, 200).await,
        "the rotated secret never took"
    );
    assert_eq!(status(addr, "/hooks/other", &sig).await, 406);
}

async fn hygiene_gateway(limits: &str, tls: Option<&str>) -> (Upstream, Gateway, Option<TempDir>) {
    let up = Upstream::start().await;
    let mut yaml = format!("limits: {{ {limits} }}\n{}", route_yaml(&up));
    let mut dir = None;
    if let Some(extra) = tls {
        let d = TempDir::new("hygiene-tls");
        let ca = Ca::new("test CA");
        write_server_pki(&d, &ca, &["localhost"], "server");
        yaml = format!(
            "tls: {{ cert: {}, key: {}, {extra} }}\n{yaml}",
            d.path("server.crt"),
            d.path("server.key")
        );
        dir = Some(d);
    }
    let gw = Gateway::start(&yaml, None).await;
    (up, gw, dir)
}

#[tokio::test]
async fn a_slowloris_client_is_cut_off_within_the_header_timeout() {
    let (up, gw, _) = hygiene_gateway("header_timeout: 400ms, idle_timeout: 5s", None).await;
    // A head dribbled one byte every 100 ms never completes in time.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let head = b"POST /hooks/expel HTTP/1.1\r\nHost: localhost\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let start = Instant::now();
    let mut closed_at = None;
    for b in head.iter() {
        if s.write_all(&[*b]).await.is_err() {
            closed_at = Some(start.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut probe = [0u8; 64];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(1), s.read(&mut probe)).await
        {
            closed_at = Some(start.elapsed());
            break;
        }
    }
    let closed_at = closed_at.expect("a dribbling client was never cut off");
    assert!(
        closed_at >= Duration::from_millis(350),
        "cut too early: {closed_at:?}"
    );
    assert!(
        closed_at < Duration::from_millis(2500),
        "cut too late: {closed_at:?}"
    );

    // A connection that sends nothing is closed too; so is a partial HTTP/2 preface.
    for first in [&b""[..], &b"PRI * HTTP/2.0\r\n"[..]] {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(first).await.unwrap();
        let (_, closed) = until_closed(&mut s, Duration::from_secs(3)).await;
        let closed = closed.expect("a silent connection stayed open");
        assert!(closed >= Duration::from_millis(350), "{closed:?}");
    }
    assert!(up.received().is_empty());
}

#[tokio::test]
async fn idle_keep_alive_connections_close_after_the_idle_timeout_not_before() {
    let (up, gw, _) = hygiene_gateway("header_timeout: 300ms, idle_timeout: 1500ms", None).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let sig = expel_sig(SECRET, BODY);
    let request = format!(
        "POST /hooks/expel HTTP/1.1\r\nHost: localhost\r\nExpel-Signature-256: {sig}\r\nContent-Length: {}\r\n\r\n{}",
        BODY.len(),
        std::str::from_utf8(BODY).unwrap()
    );
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    // Idle for longer than the header timeout: still open (idle is not a slow head).
    tokio::time::sleep(Duration::from_millis(700)).await;
    s.write_all(request.as_bytes()).await.unwrap();
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    // Then idle past the idle timeout: closed.
    let (_, closed) = until_closed(&mut s, Duration::from_secs(4)).await;
    let closed = closed.expect("an idle connection stayed open");
    assert!(closed >= Duration::from_millis(1200), "{closed:?}");
    assert_eq!(up.received().len(), 2);

    // HTTP/2 (h2c): an idle connection is closed with a GOAWAY.
    let stream = TcpStream::connect(gw.addr).await.unwrap();
    let (mut sender, conn) = h2_handshake(stream).await;
    let (reply, _) = request_over(&mut sender, expel_post(SECRET, BODY))
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    let start = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(5), conn).await;
    assert!(ended.is_ok(), "an idle h2 connection stayed open");
    assert!(
        start.elapsed() >= Duration::from_millis(1200),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn a_stalled_tls_handshake_is_cut_off() {
    let (_up, gw, _dir) =
        hygiene_gateway("header_timeout: 5s", Some("handshake_timeout: 300ms")).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let (_, closed) = until_closed(&mut s, Duration::from_secs(3)).await;
    let closed = closed.expect("a silent TLS client stayed connected");
    assert!(
        closed >= Duration::from_millis(250) && closed < Duration::from_secs(2),
        "{closed:?}"
    );
}

#[tokio::test]
async fn smuggling_shapes_get_400_and_are_never_forwarded() {
    let (up, gw, _) = hygiene_gateway("", None).await;
    let sig = expel_sig(SECRET, BODY);
    let body = std::str::from_utf8(BODY).unwrap();
    let chunked = format!("{:x}\r\n{body}\r\n0\r\n\r\n", BODY.len());
    let cases = [
        format!(
            "Content-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n{chunked}",
            BODY.len()
        ),
        format!(
            "Transfer-Encoding: chunked\r\nContent-Length: {}\r\n\r\n{chunked}",
            BODY.len()
        ),
        format!(
            "Content-Length: {0}\r\nContent-Length: {0}\r\n\r\n{body}",
            BODY.len()
        ),
        format!("Content-Length: {0}, {0}\r\n\r\n{body}", BODY.len()),
        format!("Transfer-Encoding: gzip, chunked\r\n\r\n{chunked}"),
        format!("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n{chunked}"),
        format!(
            "X_Forwarded_For: 10.0.0.1\r\nContent-Length: {}\r\n\r\n{body}",
            BODY.len()
        ),
    ];
    for case in &cases {
        let req = format!(
            "POST /hooks/expel HTTP/1.1\r\nHost: localhost\r\nExpel-Signature-256: {sig}\r\n{case}"
        );
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(req.as_bytes()).await.unwrap();
        let (answer, closed) = until_closed(&mut s, Duration::from_secs(3)).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{case:?} → {answer:?}");
        assert!(
            closed.is_some(),
            "{case:?}: the connection stayed open after a 400"
        );
    }
    // HTTP/1.1 without Host.
    let req = format!(
        "POST /hooks/expel HTTP/1.1\r\nExpel-Signature-256: {sig}\r\nContent-Length: {}\r\n\r\n{body}",
        BODY.len()
    );
    let answer = raw(gw.addr, req.as_bytes(), Duration::from_secs(2)).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    assert!(answer.contains("missing_host"), "{answer:?}");
    assert!(up.received().is_empty(), "a smuggling shape was forwarded");
}

#[tokio::test]
async fn oversized_heads_get_431() {
    let (up, gw, _) = hygiene_gateway("max_header_bytes: 8KiB, max_headers: 20", None).await;
    let big = format!(
        "POST /hooks/expel HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\nContent-Length: 2\r\n\r\n{{}}",
        "a".repeat(10_000)
    );
    let answer = raw(gw.addr, big.as_bytes(), Duration::from_secs(2)).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");
    let many: String = (0..30).map(|i| format!("X-H{i}: v\r\n")).collect();
    let req = format!(
        "POST /hooks/expel HTTP/1.1\r\nHost: localhost\r\n{many}Content-Length: 2\r\n\r\n{{}}"
    );
    let answer = raw(gw.addr, req.as_bytes(), Duration::from_secs(2)).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");
    assert!(up.received().is_empty());
}

#[tokio::test]
async fn connection_limits_refuse_the_excess_at_once() {
    let (_up, gw, _) = hygiene_gateway("max_connections: 2, max_connections_per_ip: 0", None).await;
    let sig = expel_sig(SECRET, BODY);
    let request = format!(
        "POST /hooks/expel HTTP/1.1\r\nHost: localhost\r\nExpel-Signature-256: {sig}\r\nContent-Length: {}\r\n\r\n{}",
        BODY.len(),
        std::str::from_utf8(BODY).unwrap()
    );
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        open.push(s);
    }
    // The third is accepted by the kernel and closed by the gateway straight away.
    let mut third = TcpStream::connect(gw.addr).await.unwrap();
    let _ = third.write_all(request.as_bytes()).await;
    let (answer, closed) = until_closed(&mut third, Duration::from_secs(2)).await;
    assert!(
        closed.is_some() && answer.is_empty(),
        "{answer:?} {closed:?}"
    );
    // A place frees up when a connection closes.
    drop(open.pop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = post(
        gw.addr,
        "/hooks/expel",
        &[("expel-signature-256", &sig)],
        BODY,
    )
    .await;
    assert_eq!(r.status, 200);

    // Per client address (127.0.0.1 is not a trusted proxy here).
    let (_up, gw, _) = hygiene_gateway("max_connections_per_ip: 1", None).await;
    let mut first = TcpStream::connect(gw.addr).await.unwrap();
    first.write_all(request.as_bytes()).await.unwrap();
    let mut buf = [0u8; 4096];
    assert!(first.read(&mut buf).await.unwrap() > 0);
    let mut second = TcpStream::connect(gw.addr).await.unwrap();
    let _ = second.write_all(request.as_bytes()).await;
    let (answer, closed) = until_closed(&mut second, Duration::from_secs(2)).await;
    assert!(closed.is_some() && answer.is_empty(), "{answer:?}");
}

/// An upstream that speaks HTTPS with `issued`, optionally requiring client certificates
/// from `client_ca`; returns its address and the bodies it received.
async fn tls_upstream(
    issued: &pki::Issued,
    client_ca: Option<&Ca>,
) -> (SocketAddr, std::sync::Arc<std::sync::Mutex<Vec<Bytes>>>) {
    use http_body_util::BodyExt;
    use rustls::pki_types::pem::PemObject;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let b = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let b = match client_ca {
        None => b.with_no_client_auth(),
        Some(ca) => b.with_client_cert_verifier(
            rustls::server::WebPkiClientVerifier::builder_with_provider(
                ca.roots().into(),
                provider,
            )
            .build()
            .unwrap(),
        ),
    };
    let config = b
        .with_single_cert(
            vec![issued.der()],
            rustls::pki_types::PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).unwrap(),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = got.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, seen) = (acceptor.clone(), seen.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let body = req.into_body().collect().await?.to_bytes();
                        seen.lock().unwrap().push(body);
                        Ok::<_, hyper::Error>(http::Response::new(Full::new(Bytes::from_static(
                            b"tls ok",
                        ))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (addr, got)
}

#[tokio::test]
async fn https_upstreams_with_a_ca_bundle_and_a_client_certificate() {
    let dir = TempDir::new("https-upstream");
    let ca = Ca::new("upstream CA");
    let gateway_ca = Ca::new("gateway client CA");
    dir.write("upstream-ca.pem", &ca.pem);
    let identity = gateway_ca.client("hookgate.internal");
    dir.write("client.crt", &identity.cert_pem);
    dir.write("client.key", &identity.key_pem);
    let (plain_addr, plain_got) = tls_upstream(&ca.server(&["upstream.internal"]), None).await;
    let (mtls_addr, mtls_got) = tls_upstream(&ca.server(&["127.0.0.1"]), Some(&gateway_ca)).await;
    let yaml = format!(
        r#"routes:
  - name: tls
    path: /hooks/tls
    verify: {{ preset: expel, secrets: ["{SECRET}"] }}
    upstream: https://{plain_addr}/in
    upstream_tls: {{ ca: {ca}, server_name: upstream.internal }}
  - name: mtls
    path: /hooks/mtls
    verify: {{ preset: expel, secrets: ["{SECRET}"] }}
    upstream: https://{mtls_addr}/in
    upstream_tls: {{ ca: {ca}, cert: {cert}, key: {key} }}
  - name: wrong-name
    path: /hooks/wrong-name
    verify: {{ preset: expel, secrets: ["{SECRET}"] }}
    upstream: https://{plain_addr}/in
    upstream_tls: {{ ca: {ca} }}
"#,
        ca = dir.path("upstream-ca.pem"),
        cert = dir.path("client.crt"),
        key = dir.path("client.key"),
    );
    let gw = Gateway::start(&yaml, None).await;
    let sig = expel_sig(SECRET, BODY);
    // wrong-name: the certificate names upstream.internal, not 127.0.0.1.
    for (path, want) in [
        ("/hooks/tls", (200, "tls ok")),
        ("/hooks/mtls", (200, "tls ok")),
        ("/hooks/wrong-name", (502, "upstream_tls_failed\n")),
    ] {
        let r = post(gw.addr, path, &[("expel-signature-256", &sig)], BODY).await;
        assert_eq!((r.status.as_u16(), r.text().as_str()), want, "{path}");
    }
    assert_eq!(
        plain_got.lock().unwrap().as_slice(),
        &[Bytes::from_static(BODY)]
    );
    assert_eq!(
        mtls_got.lock().unwrap().as_slice(),
        &[Bytes::from_static(BODY)]
    );
}

#[tokio::test]
async fn sigterm_drain_turns_unready_closes_idle_connections_and_finishes_requests() {
    let up = Upstream::start().await;
    up.set(200, "slow but fine", Duration::from_millis(800));
    let gw = Gateway::start(&format!("shutdown_grace: 5s\n{}", route_yaml(&up)), None).await;
    let (addr, admin) = (gw.addr, gw.admin);
    let sig = expel_sig(SECRET, BODY);
    let request = format!(
        "POST /hooks/expel HTTP/1.1\r\nHost: localhost\r\nExpel-Signature-256: {sig}\r\nContent-Length: {}\r\n\r\n{}",
        BODY.len(),
        std::str::from_utf8(BODY).unwrap()
    );
    // An idle keep-alive connection (its request answered), and one request in flight.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(request.as_bytes()).await.unwrap();
    let mut buf = [0u8; 4096];
    assert!(idle.read(&mut buf).await.unwrap() > 0);
    let sig2 = sig.clone();
    let inflight = tokio::spawn(async move {
        post(
            addr,
            "/hooks/expel",
            &[("expel-signature-256", &sig2)],
            BODY,
        )
        .await
    });
    // The idle connection's request and the one in flight, however slowly a loaded
    // machine got them there.
    wait_until("both requests upstream", Duration::from_secs(10), || {
        up.received().len() == 2
    })
    .await;
    let stopping = tokio::spawn(gw.stop());
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(send(admin, "GET", "/readyz", &[], "").await.status, 503);
    let (_, closed) = until_closed(&mut idle, Duration::from_secs(1)).await;
    assert!(
        closed.is_some(),
        "an idle connection stayed open during the drain"
    );
    let r = inflight.await.unwrap();
    assert_eq!(
        (r.status.as_u16(), r.text().as_str()),
        (200, "slow but fine")
    );
    assert_eq!(stopping.await.unwrap().cut, 0);

    // A request that outlives the grace period is cut, and counted.
    let up = Upstream::start().await;
    up.set(200, "too slow", Duration::from_secs(3));
    let gw = Gateway::start(&format!("shutdown_grace: 200ms\n{}", route_yaml(&up)), None).await;
    let addr = gw.addr;
    let slow = tokio::spawn(async move {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        until_closed(&mut s, Duration::from_secs(5)).await
    });
    wait_until("the request upstream", Duration::from_secs(10), || {
        up.received().len() == 1
    })
    .await;
    let start = Instant::now();
    assert_eq!(gw.stop().await.cut, 1);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    drop(slow);
}

#[tokio::test]
async fn chunked_bodies_arrive_whole_and_trailers_are_not_forwarded() {
    let up = Upstream::start().await;
    let gw = Gateway::start(&route_yaml(&up), None).await;
    let sig = expel_sig(SECRET, BODY);
    let (a, b) = BODY.split_at(7);
    let req = format!(
        "POST /hooks/expel HTTP/1.1\r\nHost: localhost\r\nExpel-Signature-256: {sig}\r\nTransfer-Encoding: chunked\r\n\r\n\
         {:x};ext=1\r\n{}\r\n{:x}\r\n{}\r\n0\r\nX-Trailer: smuggled\r\n\r\n",
        a.len(),
        std::str::from_utf8(a).unwrap(),
        b.len(),
        std::str::from_utf8(b).unwrap()
    );
    let answer = raw(gw.addr, req.as_bytes(), Duration::from_millis(500)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    let got = up.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, BODY);
    assert_eq!(
        got[0].headers["content-length"],
        BODY.len().to_string().as_str()
    );
    assert!(got[0].headers.get("x-trailer").is_none());
    assert!(got[0].headers.get("transfer-encoding").is_none());
}

#[tokio::test]
async fn several_workers_share_the_listener_and_drain_together() {
    let up = Upstream::start().await;
    let gw = Gateway::start(
        &format!("workers: 4\nshutdown_grace: 20s\n{}", route_yaml(&up)),
        None,
    )
    .await;
    let mut clients = Vec::new();
    for _ in 0..24 {
        let addr = gw.addr;
        clients.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let mut ok = 0;
            for _ in 0..5 {
                s.write_all(&expel_request(SECRET, BODY, "")).await.unwrap();
                let mut got = Vec::new();
                let mut buf = [0u8; 1024];
                while !got.ends_with(b"{\"ok\":true}") {
                    let n = s.read(&mut buf).await.unwrap();
                    assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&got));
                    got.extend_from_slice(&buf[..n]);
                }
                ok += usize::from(got.starts_with(b"HTTP/1.1 200"));
            }
            ok
        }));
    }
    let mut ok = 0;
    for c in clients {
        ok += c.await.unwrap();
    }
    assert_eq!(ok, 120);
    assert_eq!(up.received().len(), 120);
    // Connections left open, one idle after a request and one that never sent a byte:
    // the drain closes both at once, whichever worker holds them (not after the 20 s
    // grace, nor the 10 s header timeout), and every worker thread ends.
    let mut idle = TcpStream::connect(gw.addr).await.unwrap();
    idle.write_all(&expel_request(SECRET, BODY, ""))
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    assert!(idle.read(&mut buf).await.unwrap() > 0);
    let _silent = TcpStream::connect(gw.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let report = tokio::time::timeout(Duration::from_secs(5), gw.stop())
        .await
        .expect("the drain did not end");
    assert_eq!(report.cut, 0);
    assert!(report.error.is_none());
}
