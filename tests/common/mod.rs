//! Test harness: a real upstream and a real gateway on 127.0.0.1:0, a small HTTP client,
//! and a raw-socket client for what a well-behaved client would never send.
#![allow(dead_code)]

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the upstream received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: Method,
    pub uri: http::Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// How the upstream answers.
#[derive(Debug, Clone)]
pub struct Behavior {
    pub status: u16,
    pub body: &'static str,
    pub delay: Duration,
}

impl Default for Behavior {
    fn default() -> Self {
        Behavior {
            status: 200,
            body: "{\"ok\":true}",
            delay: Duration::ZERO,
        }
    }
}

pub struct Upstream {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<Received>>>,
    pub behavior: Arc<Mutex<Behavior>>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        Upstream::start_on("127.0.0.1:0".parse().unwrap()).await
    }

    /// Starts on a given address (an upstream that comes back on its old port).
    pub async fn start_on(addr: SocketAddr) -> Upstream {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let behavior = Arc::new(Mutex::new(Behavior::default()));
        let (r, b) = (received.clone(), behavior.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (r, b) = (r.clone(), b.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (r, b) = (r.clone(), b.clone());
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.unwrap().to_bytes();
                            r.lock().unwrap().push(Received {
                                method: parts.method,
                                uri: parts.uri,
                                headers: parts.headers,
                                body,
                            });
                            let beh = b.lock().unwrap().clone();
                            if !beh.delay.is_zero() {
                                tokio::time::sleep(beh.delay).await;
                            }
                            let mut resp =
                                Response::new(Full::new(Bytes::from_static(beh.body.as_bytes())));
                            *resp.status_mut() = StatusCode::from_u16(beh.status).unwrap();
                            resp.headers_mut()
                                .insert("x-upstream", "yes".parse().unwrap());
                            // Its own request id, which the sender must never get: the
                            // gateway answers with the request's.
                            resp.headers_mut()
                                .insert("x-request-id", "upstream-own-id".parse().unwrap());
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Upstream {
            addr,
            received,
            behavior,
            task,
        }
    }

    pub fn set(&self, status: u16, body: &'static str, delay: Duration) {
        *self.behavior.lock().unwrap() = Behavior {
            status,
            body,
            delay,
        };
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Asserts that the upstream received exactly `sent`'s bodies, in order, byte for byte.
    pub fn assert_bodies(&self, sent: &[Vec<u8>]) {
        let got: Vec<Vec<u8>> = self
            .received()
            .into_iter()
            .map(|r| r.body.to_vec())
            .collect();
        assert_eq!(got.len(), sent.len());
        for (i, (g, w)) in got.iter().zip(sent).enumerate() {
            assert!(g == w, "request {i}: the body changed on the way");
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A gateway running in this process on port 0.
pub struct Gateway {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    pub join: Option<tokio::task::JoinHandle<hookgate::server::ServeReport>>,
}

impl Gateway {
    /// Starts a gateway on `yaml`, where `{UPSTREAM}` is replaced by `upstream`'s address.
    pub async fn start(yaml: &str, upstream: Option<&Upstream>) -> Gateway {
        let yaml = match upstream {
            Some(u) => yaml.replace("{UPSTREAM}", &u.addr.to_string()),
            None => yaml.to_string(),
        };
        let env = |name: &str| std::env::var(name).ok();
        let config = hookgate::config::load_str(&yaml, &env)
            .unwrap_or_else(|e| panic!("test config invalid:\n{e}"));
        let public = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = public.local_addr().unwrap();
        let admin_addr = admin.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let listeners = hookgate::server::Listeners {
            public,
            admin: Some(admin),
        };
        let join = tokio::spawn(hookgate::server::run(config, listeners, async move {
            let _ = rx.await;
        }));
        Gateway {
            addr,
            admin: admin_addr,
            shutdown: Some(tx),
            join: Some(join),
        }
    }

    /// Stops accepting and waits for the drain.
    pub async fn stop(mut self) -> hookgate::server::ServeReport {
        let _ = self.shutdown.take().unwrap().send(());
        self.join.take().unwrap().await.unwrap()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A reply as the sender sees it.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one request over a fresh HTTP/1.1 connection.
pub async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Reply {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(body.into())).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(20), sender.send_request(req))
        .await
        .expect("gateway answered in time")
        .unwrap();
    let (parts, body) = resp.into_parts();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

pub async fn post(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Reply {
    send(addr, "POST", path, headers, body).await
}

/// Writes raw bytes and reads until the server closes or `wait` passes.
pub async fn raw(addr: SocketAddr, bytes: &[u8], wait: Duration) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    read_for(&mut stream, wait).await
}

pub async fn read_for(stream: &mut TcpStream, wait: Duration) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One route item (for a `routes:` list) that verifies Expel signatures made with
/// `secret`, has no rate limit and forwards to `upstream` (a URL); `extra` is more
/// `key: value` lines of the route, each ending in a newline.
pub fn expel_route(name: &str, path: &str, secret: &str, upstream: &str, extra: &str) -> String {
    format!(
        "  - name: {name}\n    path: {path}\n    verify: {{ preset: expel, secrets: [\"{secret}\"] }}\n    rate_limit: off\n{extra}    upstream: {upstream}\n"
    )
}

/// The raw bytes of an HTTP/1.1 POST of `body` to `/hooks/expel`, Expel-signed with
/// `secret`; `extra` is more header lines, each ending in CRLF.
pub fn expel_request(secret: &str, body: &[u8], extra: &str) -> Vec<u8> {
    let mut out = format!(
        "POST /hooks/expel HTTP/1.1\r\nHost: localhost\r\nExpel-Signature-256: {}\r\n{extra}Content-Length: {}\r\n\r\n",
        expel_sig(secret, body),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// Polls `done` until it holds; fails the test, naming `what`, after `limit`.
pub async fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads until the server closes the connection; returns what arrived and when it closed.
pub async fn until_closed(stream: &mut TcpStream, limit: Duration) -> (String, Option<Duration>) {
    let start = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((start + limit).into(), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                return (String::from_utf8_lossy(&out).into(), Some(start.elapsed()))
            }
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&out).into(), None),
        }
    }
}

/// Hex HMAC-SHA256, computed independently of hookgate's verifier.
pub fn hmac_sha256_hex(secret: &[u8], parts: &[&[u8]]) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    for p in parts {
        mac.update(p);
    }
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn expel_sig(secret: &str, body: &[u8]) -> String {
    format!("sha256={}", hmac_sha256_hex(secret.as_bytes(), &[body]))
}

/// A port on which nothing listens (bound, then released).
pub async fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    drop(l);
    a
}

/// A gateway started from a config file, with reloads on request (what SIGHUP does).
pub struct FileGateway {
    pub gw: Gateway,
    pub reload: tokio::sync::mpsc::UnboundedSender<()>,
}

impl Gateway {
    /// Starts a gateway from the config file at `path`, reloading it on request and
    /// when a file it names changes.
    pub async fn start_file(path: &std::path::Path) -> FileGateway {
        let source = hookgate::cli::read_source(Some(path));
        let config =
            hookgate::cli::load(&source).unwrap_or_else(|e| panic!("test config invalid:\n{e}"));
        let public = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = public.local_addr().unwrap();
        let admin_addr = admin.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (reload, requests) = tokio::sync::mpsc::unbounded_channel();
        let listeners = hookgate::server::Listeners {
            public,
            admin: Some(admin),
        };
        let options = hookgate::reload::Options {
            path: Some(path.to_path_buf()),
            requests: Some(requests),
        };
        let join = tokio::spawn(hookgate::server::run_with(
            config,
            listeners,
            async move {
                let _ = rx.await;
            },
            options,
        ));
        FileGateway {
            gw: Gateway {
                addr,
                admin: admin_addr,
                shutdown: Some(tx),
                join: Some(join),
            },
            reload,
        }
    }
}

/// A scratch directory, removed when dropped.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("hookgate-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// Writes `text` to `name` (atomically, by a rename, as kubelet and editors do).
    pub fn write(&self, name: &str, text: &str) -> std::path::PathBuf {
        let path = self.0.join(name);
        let tmp = self.0.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        path
    }

    pub fn path(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A test CA that issues server and client certificates (rcgen), and TLS clients.
pub mod pki {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    };
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use std::sync::Arc;

    pub struct Ca {
        pub pem: String,
        issuer: Issuer<'static, KeyPair>,
    }

    /// A certificate and its key, as PEM.
    pub struct Issued {
        pub cert_pem: String,
        pub key_pem: String,
    }

    impl Issued {
        pub fn der(&self) -> CertificateDer<'static> {
            use rustls::pki_types::pem::PemObject;
            CertificateDer::from_pem_slice(self.cert_pem.as_bytes()).unwrap()
        }
    }

    impl Ca {
        pub fn new(name: &str) -> Ca {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.distinguished_name.push(DnType::CommonName, name);
            let cert = params.self_signed(&key).unwrap();
            Ca {
                pem: cert.pem(),
                issuer: Issuer::new(params, key),
            }
        }

        fn issue(&self, names: &[&str], client: bool) -> Issued {
            let key = KeyPair::generate().unwrap();
            let mut params =
                CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                    .unwrap();
            params.distinguished_name.push(
                DnType::CommonName,
                names.first().copied().unwrap_or("client"),
            );
            params.extended_key_usages = vec![if client {
                ExtendedKeyUsagePurpose::ClientAuth
            } else {
                ExtendedKeyUsagePurpose::ServerAuth
            }];
            let cert = params.signed_by(&key, &self.issuer).unwrap();
            Issued {
                cert_pem: cert.pem(),
                key_pem: key.serialize_pem(),
            }
        }

        pub fn server(&self, names: &[&str]) -> Issued {
            self.issue(names, false)
        }

        pub fn client(&self, name: &str) -> Issued {
            self.issue(&[name], true)
        }

        pub fn roots(&self) -> rustls::RootCertStore {
            use rustls::pki_types::pem::PemObject;
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(CertificateDer::from_pem_slice(self.pem.as_bytes()).unwrap())
                .unwrap();
            roots
        }

        /// A client config trusting this CA, offering `alpn`, with an optional identity.
        pub fn client_config(
            &self,
            alpn: &[&[u8]],
            identity: Option<&Issued>,
        ) -> Arc<rustls::ClientConfig> {
            use rustls::pki_types::pem::PemObject;
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let b = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(self.roots());
            let mut c = match identity {
                None => b.with_no_client_auth(),
                Some(id) => b
                    .with_client_auth_cert(
                        vec![id.der()],
                        PrivateKeyDer::from_pem_slice(id.key_pem.as_bytes()).unwrap(),
                    )
                    .unwrap(),
            };
            c.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
            Arc::new(c)
        }
    }

    pub type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

    /// Connects and completes a TLS handshake as `name`.
    pub async fn connect(
        addr: std::net::SocketAddr,
        config: Arc<rustls::ClientConfig>,
        name: &str,
    ) -> std::io::Result<Tls> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let name = ServerName::try_from(name.to_string()).unwrap();
        tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
    }

    /// The certificate the server presented.
    pub fn peer_cert(s: &Tls) -> CertificateDer<'static> {
        s.get_ref().1.peer_certificates().unwrap()[0]
            .clone()
            .into_owned()
    }
}

/// Sends a request over an HTTP/1.1 or HTTP/2 client connection (`sender`), returning the
/// reply and the protocol version the server answered with.
pub async fn request_over<B>(
    sender: &mut B,
    req: Request<Full<Bytes>>,
) -> Result<(Reply, http::Version), hyper::Error>
where
    B: SendRequest,
{
    let resp = tokio::time::timeout(Duration::from_secs(20), sender.send(req))
        .await
        .expect("answered in time")?;
    let version = resp.version();
    let (parts, body) = resp.into_parts();
    Ok((
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await?.to_bytes(),
        },
        version,
    ))
}

/// An HTTP/2 client connection over `io` (cleartext with prior knowledge over a
/// `TcpStream`, or a TLS stream that chose h2): the sender, and the connection's task,
/// which ends when the server closes it.
pub async fn h2_handshake<I, B>(
    io: I,
) -> (
    hyper::client::conn::http2::SendRequest<B>,
    tokio::task::JoinHandle<hyper::Result<()>>,
)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    B: hyper::body::Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .unwrap();
    (sender, tokio::spawn(conn))
}

/// A POST of `body` to `/hooks/expel`, signed for Expel with `secret`, for hyper's clients.
pub fn expel_post(secret: &str, body: &'static [u8]) -> Request<Full<Bytes>> {
    Request::post("http://localhost/hooks/expel")
        .header("expel-signature-256", expel_sig(secret, body))
        .body(Full::new(Bytes::from_static(body)))
        .unwrap()
}

/// Sends `request` on `s` and reads its answer, which must be a 200 that keeps the
/// connection open; `what` names the request in a failure.
pub async fn expect_kept_alive_200<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    s: &mut S,
    pending: &mut Vec<u8>,
    request: &[u8],
    what: &str,
) {
    s.write_all(request).await.unwrap();
    let (head, _) = read_response(s, pending).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{what}: {head}");
    assert!(!head.contains("connection: close"), "{head}");
}

/// Reads one HTTP/1.1 response (head and Content-Length body; a `100 Continue` has none)
/// from `s` within 5 s, with `pending` holding bytes already read and keeping those
/// after it; returns the head's text (with its blank line) and the body.
pub async fn read_response<S: tokio::io::AsyncRead + Unpin>(
    s: &mut S,
    pending: &mut Vec<u8>,
) -> (String, Vec<u8>) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&pending[..end + 4]).into_owned();
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            let len = if head.starts_with("HTTP/1.1 100") {
                0
            } else {
                len
            };
            if pending.len() >= end + 4 + len {
                let body = pending[end + 4..end + 4 + len].to_vec();
                pending.drain(..end + 4 + len);
                return (head, body);
            }
        }
        let n = tokio::time::timeout_at(deadline.into(), s.read(&mut buf))
            .await
            .expect("no response within 5 s")
            .unwrap();
        assert!(n > 0, "closed before a whole response: {pending:?}");
        pending.extend_from_slice(&buf[..n]);
    }
}

/// hyper's HTTP/1 and HTTP/2 senders under one name.
pub trait SendRequest {
    fn send(
        &mut self,
        req: Request<Full<Bytes>>,
    ) -> impl std::future::Future<Output = Result<Response<Incoming>, hyper::Error>>;
}

impl SendRequest for hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    fn send(
        &mut self,
        req: Request<Full<Bytes>>,
    ) -> impl std::future::Future<Output = Result<Response<Incoming>, hyper::Error>> {
        self.send_request(req)
    }
}

impl SendRequest for hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    fn send(
        &mut self,
        req: Request<Full<Bytes>>,
    ) -> impl std::future::Future<Output = Result<Response<Incoming>, hyper::Error>> {
        self.send_request(req)
    }
}
