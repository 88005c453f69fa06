//! The upstream client against a real TLS upstream on loopback (tokio-rustls and hyper),
//! with a CA and certificates made by rcgen at test time: bytes arrive exact, connections
//! are kept alive, and every way the upstream's identity can fail to check out (unknown
//! CA, wrong name, no client certificate for an mTLS upstream) refuses the forward.

use bytes::Bytes;
use hookgate::answer::Answer;
use hookgate::config::PoolSettings;
use hookgate::pipeline::Reject;
use hookgate::tls::ClientTls;
use hookgate::upstream::{send, Pool, Pools};
use http::uri::Authority;
use http::{HeaderMap, Method, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// No test here should take more than a fraction of this.
const BOUND: Duration = Duration::from_secs(10);
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

async fn bounded<F: Future>(test: F) -> F::Output {
    tokio::time::timeout(BOUND, test)
        .await
        .expect("test ran out of time")
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

struct Ca {
    cert: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn new_ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Ca {
        cert: cert.der().clone(),
        issuer: Issuer::new(params, key),
    }
}

/// A certificate for `sans` (names or IP addresses) signed by `ca`.
fn leaf(ca: &Ca, sans: &[&str], usage: ExtendedKeyUsagePurpose) -> Identity {
    let names: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
    let mut params = CertificateParams::new(names).unwrap();
    params.distinguished_name.push(DnType::CommonName, sans[0]);
    params.use_authority_key_identifier_extension = true;
    params.key_usages.push(KeyUsagePurpose::DigitalSignature);
    params.extended_key_usages.push(usage);
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    (vec![cert.der().clone()], PrivateKeyDer::from(key))
}

fn roots(ca: &Ca) -> RootCertStore {
    let mut roots = RootCertStore::empty();
    roots.add(ca.cert.clone()).unwrap();
    roots
}

/// What the gateway's side needs: `trusting`'s CA as the only root, `name` to verify,
/// and optionally a client certificate.
fn client(trusting: &Ca, name: &str, identity: Option<Identity>) -> ClientTls {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(trusting));
    let config = match identity {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).unwrap(),
        None => builder.with_no_client_auth(),
    };
    ClientTls {
        config: Arc::new(config),
        server_name: ServerName::try_from(name.to_string()).unwrap(),
    }
}

fn settings() -> PoolSettings {
    PoolSettings {
        max_per_host: 4,
        max_idle_per_host: 4,
        idle_timeout: Duration::from_secs(30),
        connect_timeout: Duration::from_secs(2),
    }
}

/// A request head as the gateway writes one.
/// `upstream::send` within `SEND_TIMEOUT` from now.
async fn send_now(
    pool: &Pool,
    head: impl Fn(&mut Vec<u8>),
    body: &Bytes,
) -> Result<Answer, Reject> {
    send(pool, head, body, SEND_TIMEOUT, std::time::Instant::now()).await
}

fn post(path: &'static str, len: usize) -> impl Fn(&mut Vec<u8>) {
    move |out: &mut Vec<u8>| {
        out.clear();
        out.extend_from_slice(
            format!(
                "POST {path} HTTP/1.1\r\nhost: localhost\r\n\
                 content-type: application/octet-stream\r\ncontent-length: {len}\r\n\r\n"
            )
            .as_bytes(),
        );
    }
}

#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

/// A TLS upstream for `localhost` and 127.0.0.1 signed by `ca`, answering 200
/// "accepted" to every request and recording it. With `client_ca`, it requires a client
/// certificate signed by that CA.
struct Upstream {
    authority: Authority,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// TCP connections accepted, whether or not their handshake succeeded.
    accepted: Arc<AtomicUsize>,
}

impl Upstream {
    async fn start(ca: &Ca, client_ca: Option<&Ca>) -> Upstream {
        let (chain, key) = leaf(
            ca,
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match client_ca {
            Some(client_ca) => {
                let verifier = WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots(client_ca)),
                    provider(),
                )
                .build()
                .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let config = builder.with_single_cert(chain, key).unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority: Authority = listener.local_addr().unwrap().to_string().parse().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (s, a) = (seen.clone(), accepted.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                let (acceptor, seen) = (acceptor.clone(), s.clone());
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        serve(tls, seen).await;
                    }
                });
            }
        });
        Upstream {
            authority,
            seen,
            accepted,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

async fn serve(
    tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    seen: Arc<Mutex<Vec<Seen>>>,
) {
    let service = service_fn(move |req: http::Request<Incoming>| {
        let seen = seen.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = body.collect().await?.to_bytes();
            seen.lock().unwrap().push(Seen {
                method: parts.method,
                path: parts.uri.path().to_string(),
                headers: parts.headers,
                body,
            });
            Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::from_static(b"accepted"))))
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(tls), service)
        .await;
}

/// Bytes that are not UTF-8, in a pattern that shows any reordering or loss.
fn binary(len: usize) -> Bytes {
    (0..len)
        .map(|i| (i.wrapping_mul(7) ^ (i >> 8)) as u8 | 0x80)
        .collect::<Vec<u8>>()
        .into()
}

#[tokio::test]
async fn posts_arrive_byte_exact_and_the_answer_is_relayed() {
    bounded(async {
        let ca = new_ca("test CA");
        let up = Upstream::start(&ca, None).await;
        let mut pools = Pools::default();
        let tls = client(&ca, "localhost", None);
        let pool = pools.pool_for_tls(&up.authority, settings(), Some(tls));

        // Bigger than the 16 KiB coalescing threshold and than one TLS record.
        let big = binary(70_000);
        let small = Bytes::from_static(b"\xff\xfe{\"a\":1}\x00\x80");
        for (path, body) in [("/big", &big), ("/small", &small)] {
            let r = send_now(&pool, post(path, body.len()), body).await.unwrap();
            assert_eq!(r.status, 200);
            assert_eq!(&r.body[..], b"accepted");
        }

        let seen = up.seen();
        assert_eq!(seen.len(), 2);
        for (s, (path, body)) in seen.iter().zip([("/big", &big), ("/small", &small)]) {
            assert_eq!(s.method, Method::POST);
            assert_eq!(s.path, path);
            assert_eq!(s.headers["content-type"], "application/octet-stream");
            assert_eq!(s.headers["content-length"], body.len().to_string().as_str());
            assert!(s.body == *body, "{path}: the body arrived altered");
        }
    })
    .await;
}

#[tokio::test]
async fn sequential_sends_share_one_tls_connection() {
    bounded(async {
        let ca = new_ca("test CA");
        let up = Upstream::start(&ca, None).await;
        let pool = Pool::with_tls(
            up.authority.clone(),
            settings(),
            Some(client(&ca, "localhost", None)),
        );
        let body = Bytes::from_static(b"{\"n\":1}");
        for _ in 0..5 {
            let r = send_now(&pool, post("/k", body.len()), &body).await;
            assert_eq!(r.unwrap().status, 200);
        }
        assert_eq!(up.seen().len(), 5);
        assert_eq!(up.accepted(), 1, "one handshake for all five");
        assert_eq!((pool.idle_count(), pool.open_count()), (1, 1));
    })
    .await;
}

#[tokio::test]
async fn an_upstream_certificate_from_another_ca_is_refused() {
    bounded(async {
        let ca = new_ca("test CA");
        let up = Upstream::start(&ca, None).await;
        let stranger = new_ca("another CA");
        let pool = Pool::with_tls(
            up.authority.clone(),
            settings(),
            Some(client(&stranger, "localhost", None)),
        );
        let body = Bytes::from_static(b"{}");
        let r = send_now(&pool, post("/", body.len()), &body).await;
        assert_eq!(r.unwrap_err(), Reject::UpstreamTls);
        assert!(up.seen().is_empty());
        assert_eq!(
            pool.open_count(),
            0,
            "the failed connection gave its place back"
        );
    })
    .await;
}

#[tokio::test]
async fn a_name_the_certificate_does_not_cover_is_refused() {
    bounded(async {
        let ca = new_ca("test CA");
        let up = Upstream::start(&ca, None).await;
        let body = Bytes::from_static(b"{}");
        let wrong = Pool::with_tls(
            up.authority.clone(),
            settings(),
            Some(client(&ca, "other.example", None)),
        );
        let r = send_now(&wrong, post("/", body.len()), &body).await;
        assert_eq!(r.unwrap_err(), Reject::UpstreamTls);
        assert!(up.seen().is_empty());

        // The same CA and upstream with a name it does cover (its IP SAN): accepted.
        let right = Pool::with_tls(
            up.authority.clone(),
            settings(),
            Some(client(&ca, "127.0.0.1", None)),
        );
        let r = send_now(&right, post("/", body.len()), &body).await;
        assert_eq!(r.unwrap().status, 200);
        assert_eq!(up.seen().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn an_mtls_upstream_gets_requests_only_with_the_client_certificate() {
    bounded(async {
        let ca = new_ca("test CA");
        let up = Upstream::start(&ca, Some(&ca)).await;
        let body = Bytes::from_static(b"{\"mtls\":true}");

        let anonymous = Pool::with_tls(
            up.authority.clone(),
            settings(),
            Some(client(&ca, "localhost", None)),
        );
        let r = send_now(&anonymous, post("/", body.len()), &body).await;
        // TLS 1.3: our handshake completes before the upstream refuses us, so the refusal
        // may surface as its alert (UpstreamTls) or as a reset connection (UpstreamBroken).
        let err = r.unwrap_err();
        assert!(
            matches!(err, Reject::UpstreamTls | Reject::UpstreamBroken),
            "{err:?}"
        );
        assert!(up.seen().is_empty(), "the upstream saw no request");

        let identity = leaf(
            &ca,
            &["gateway.example"],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let authenticated = Pool::with_tls(
            up.authority.clone(),
            settings(),
            Some(client(&ca, "localhost", Some(identity))),
        );
        let r = send_now(&authenticated, post("/in", body.len()), &body).await;
        assert_eq!(r.unwrap().status, 200);
        let seen = up.seen();
        assert_eq!(seen.len(), 1);
        assert_eq!((seen[0].path.as_str(), &seen[0].body), ("/in", &body));
    })
    .await;
}

#[tokio::test]
async fn a_client_certificate_from_another_ca_is_refused_too() {
    bounded(async {
        let ca = new_ca("test CA");
        let up = Upstream::start(&ca, Some(&ca)).await;
        let stranger = new_ca("another CA");
        let identity = leaf(
            &stranger,
            &["gateway.example"],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let pool = Pool::with_tls(
            up.authority.clone(),
            settings(),
            Some(client(&ca, "localhost", Some(identity))),
        );
        let body = Bytes::from_static(b"{}");
        let err = send_now(&pool, post("/", body.len()), &body)
            .await
            .unwrap_err();
        assert!(
            matches!(err, Reject::UpstreamTls | Reject::UpstreamBroken),
            "{err:?}"
        );
        assert!(up.seen().is_empty());
    })
    .await;
}

/// A listener that does `what` with each connection instead of speaking TLS.
async fn not_tls<F, Fut>(what: F) -> Authority
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let authority = listener.local_addr().unwrap().to_string().parse().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(what(tcp));
        }
    });
    authority
}

#[tokio::test]
async fn handshake_eof_and_garbage_are_tls_failures_and_silence_is_unreachable() {
    bounded(async {
        let ca = new_ca("test CA");
        let tls = Some(client(&ca, "localhost", None));
        let body = Bytes::from_static(b"{}");

        let closes = not_tls(|tcp| async move { drop(tcp) }).await;
        let pool = Pool::with_tls(closes, settings(), tls.clone());
        let r = send_now(&pool, post("/", body.len()), &body).await;
        assert_eq!(r.unwrap_err(), Reject::UpstreamTls, "EOF in the handshake");

        // A plain HTTP server answering the ClientHello.
        let plain = not_tls(|mut tcp| async move {
            let answer = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n";
            let _ = tcp.write_all(answer).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        })
        .await;
        let pool = Pool::with_tls(plain, settings(), tls.clone());
        let r = send_now(&pool, post("/", body.len()), &body).await;
        assert_eq!(r.unwrap_err(), Reject::UpstreamTls, "not TLS at all");

        // Accepts the TCP connection, never answers the ClientHello: the handshake takes
        // the rest of connect_timeout.
        let silent = not_tls(|tcp| async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(tcp);
        })
        .await;
        let short = PoolSettings {
            connect_timeout: Duration::from_millis(200),
            ..settings()
        };
        let pool = Pool::with_tls(silent, short, tls);
        let started = std::time::Instant::now();
        let r = send_now(&pool, post("/", body.len()), &body).await;
        assert_eq!(r.unwrap_err(), Reject::UpstreamUnreachable);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "bounded by connect_timeout"
        );
    })
    .await;
}
