//! The public listener and the request handler. [`Gateway`] holds everything built from
//! the config (route table, verifiers, limiters, the upstream client); [`Gateway::handle`]
//! is the outer layer (request id, error → response, the one access-log line) around
//! [`Gateway::handle_inner`], which runs the stages in order. [`serve`] takes an already
//! bound listener and a shutdown future, so tests run it on port 0.

use crate::config::{Config, Route};
use crate::forward::{self, ForwardInfo, X_REQUEST_ID};
use crate::handshake;
use crate::log::AccessLog;
use crate::net::IpSet;
use crate::pipeline::dedup::{DedupStore, Ticket};
use crate::pipeline::rate::RateLimiter;
use crate::pipeline::route::RouteTable;
use crate::pipeline::{self, body, client_ip, Reject};
use crate::upstream::{self, Pool};
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::{Body as _, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// How long a client may take to send its request head (slowloris guard).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send its whole body once the head has arrived.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest request head hyper buffers (see ../shared/hardening.md).
pub const MAX_HEAD_BUF: usize = 64 * 1024;
/// HTTP/2 (h2c) limits.
pub const H2_MAX_CONCURRENT_STREAMS: u32 = 100;
pub const H2_MAX_HEADER_LIST: u32 = 16 * 1024;
/// How often idle per-client rate-limit entries are forgotten.
pub const RATE_PRUNE_INTERVAL: Duration = Duration::from_secs(30);

/// One route with its runtime state.
pub struct RouteState {
    pub route: Route,
    pub limiter: Option<RateLimiter>,
    pub name_header: HeaderValue,
    pub pool: Arc<Pool>,
    pub dedup: Option<Arc<DedupStore>>,
    /// A verifier built from a secret learned in a handshake (Asana), if any.
    pub learned: std::sync::RwLock<Option<Arc<crate::verify::Verifier>>>,
}

/// Everything the handler needs, built once from a validated config.
pub struct Gateway {
    table: RouteTable,
    routes: Vec<RouteState>,
    trusted: IpSet,
    ids: RequestIds,
    in_flight: AtomicUsize,
    pub health: Arc<Health>,
}

/// Liveness and readiness, shared with the admin listener.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
}

impl Health {
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

/// Request ids: a random per-process prefix and a counter; a sender's own id is kept
/// when it is a reasonable token.
struct RequestIds {
    prefix: u64,
    next: AtomicU64,
}

impl RequestIds {
    fn new() -> Self {
        use std::hash::{BuildHasher, Hasher};
        // RandomState is seeded from the OS; good enough for unique, unguessable-ish ids.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(std::process::id() as u64);
        RequestIds {
            prefix: h.finish(),
            next: AtomicU64::new(1),
        }
    }

    fn take(&self, sent: Option<&HeaderValue>) -> HeaderValue {
        if let Some(v) = sent {
            let b = v.as_bytes();
            if !b.is_empty() && b.len() <= 128 && b.iter().all(|c| c.is_ascii_graphic()) {
                return v.clone();
            }
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut buf = [0u8; 29];
        write_hex(&mut buf[..16], self.prefix);
        buf[16] = b'-';
        write_hex(&mut buf[17..], n);
        HeaderValue::from_bytes(&buf).expect("hex is a valid header value")
    }
}

fn write_hex(out: &mut [u8], mut v: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for slot in out.iter_mut().rev() {
        *slot = DIGITS[(v & 0xf) as usize];
        v >>= 4;
    }
}

type Resp = Response<Full<Bytes>>;

impl Gateway {
    pub fn new(config: &Config) -> Gateway {
        let table = RouteTable::new(
            config
                .routes
                .iter()
                .map(|r| (r.path.as_str(), r.host.as_deref())),
        );
        let mut pools = upstream::Pools::default();
        let routes = config
            .routes
            .iter()
            .map(|r| RouteState {
                limiter: r.rate_limit.map(RateLimiter::new),
                name_header: HeaderValue::from_str(&r.name).expect("route names are tokens"),
                pool: pools.pool_for(&r.upstream.authority, config.pool),
                dedup: r
                    .dedup
                    .as_ref()
                    .map(|d| Arc::new(DedupStore::new(d.window, d.max_entries))),
                learned: std::sync::RwLock::new(None),
                route: r.clone(),
            })
            .collect();
        Gateway {
            table,
            routes,
            trusted: config.trusted_proxies.clone(),
            ids: RequestIds::new(),
            in_flight: AtomicUsize::new(0),
            health: Arc::new(Health::default()),
        }
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Forgets idle per-client rate-limit entries.
    pub fn prune_rate_limits(&self) {
        for r in &self.routes {
            if let Some(l) = &r.limiter {
                l.prune();
            }
        }
    }

    /// The outer layer: request id, the stages, error → response, one log line.
    /// `peer_text` is the peer's address as text, rendered once per connection.
    pub async fn handle(&self, req: Request<Incoming>, peer: SocketAddr, peer_text: &str) -> Resp {
        let start = Instant::now();
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let request_id = self.ids.take(req.headers().get(X_REQUEST_ID));
        let mut log = AccessLog::new(peer.ip(), req.method().clone(), req.uri().clone());
        let result = self
            .handle_inner(req, peer, peer_text, &request_id, &mut log)
            .await;
        let mut resp = match result {
            Ok(resp) => resp,
            Err(reject) => {
                let reject_status = log
                    .route_index
                    .map(|i| self.routes[i].route.reject_status)
                    .unwrap_or(StatusCode::NOT_ACCEPTABLE);
                log.reject(reject);
                let mut resp = reject_response(reject, reject_status);
                // A route that answers handshake probes allows their methods too.
                if let (Reject::MethodNotAllowed, Some(i)) = (reject, log.route_index) {
                    let allow = handshake::allowed_methods(self.routes[i].route.handshakes);
                    if let Ok(v) = HeaderValue::from_str(&allow) {
                        resp.headers_mut().insert(header::ALLOW, v);
                    }
                }
                resp
            }
        };
        resp.headers_mut().insert(X_REQUEST_ID, request_id.clone());
        let route_name = log.route_index.map(|i| self.routes[i].route.name.as_str());
        log.emit(route_name, &request_id, resp.status(), start.elapsed());
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        resp
    }

    /// The stages, in order; the first failure ends the request.
    async fn handle_inner(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
        peer_text: &str,
        request_id: &HeaderValue,
        log: &mut AccessLog,
    ) -> Result<Resp, Reject> {
        let host = req.uri().host().or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
        });
        let idx = self.table.select(req.uri().path(), host)?;
        log.route_index = Some(idx);
        let state = &self.routes[idx];
        let route = &state.route;

        if !handshake::allows_method(route.handshakes, req.method()) {
            return Err(Reject::MethodNotAllowed);
        }
        let peer_trusted = !self.trusted.is_empty() && self.trusted.contains(peer.ip());
        let client = client_ip::client_ip(
            peer.ip(),
            req.headers().get_all(forward::X_FORWARDED_FOR).iter(),
            &self.trusted,
        );
        log.client_ip = client;
        pipeline::check_allowlist(client, route.allow_ips.as_ref())?;
        if let Some(limiter) = &state.limiter {
            limiter.check(client)?;
        }
        let declared = req.body().size_hint().exact();
        body::check_declared_size(declared, route.max_body)?;

        let (parts, incoming) = req.into_parts();
        // A small body usually arrived with the head: read it without arming a timer,
        // and only if it has not, wait for the rest under the body deadline.
        let mut reading = std::pin::pin!(body::read_body(incoming, route.max_body, declared));
        let body = match std::future::poll_fn(|cx| Poll::Ready(reading.as_mut().poll(cx))).await {
            Poll::Ready(result) => result?,
            Poll::Pending => tokio::time::timeout(BODY_READ_TIMEOUT, reading)
                .await
                .map_err(|_| Reject::BodyTimeout)??,
        };
        log.bytes = body.len();

        // Only a route that learns its secret in a handshake looks for a learned one.
        let learned = match route.handshakes.contains(&handshake::Kind::AsanaHookSecret) {
            true => state.learned.read().ok().and_then(|l| l.clone()),
            false => None,
        };
        let verifier = learned.as_deref().unwrap_or(&route.verifier);
        let vreq = crate::verify::Request {
            headers: &parts.headers,
            body: &body,
            method: &parts.method,
            query: parts.uri.query(),
            now_unix: crate::verify::now_unix(),
        };
        if !route.handshakes.is_empty() {
            let incoming = handshake::Incoming {
                method: &parts.method,
                query: parts.uri.query(),
                headers: &parts.headers,
                body: &body,
                verify_token: route.verify_token.as_deref(),
            };
            // Unsigned probes, answered before verification.
            if let Some(probe) = handshake::before_verify(route.handshakes, &incoming) {
                let answer = match probe {
                    handshake::Probe::Answer(a) => a,
                    handshake::Probe::AfterCredentials(a) => {
                        verifier.verify(&vreq).map_err(Reject::Verify)?;
                        a
                    }
                    handshake::Probe::LearnSecret(secret, a) => {
                        self.learn_secret(state, &secret)?;
                        a
                    }
                    handshake::Probe::Refused(_) => return Err(Reject::HandshakeRefused),
                };
                log.handshake(answer.kind.name());
                return Ok(handshake_response(answer));
            }
            if parts.method != http::Method::POST {
                return Err(Reject::MethodNotAllowed);
            }
            verifier.verify(&vreq).map_err(Reject::Verify)?;
            // Signed handshakes, answered once the signature has verified.
            let zoom_mac = |data: &[u8]| match &verifier.scheme {
                crate::verify::Scheme::Hmac(h) => h.mac_hex(data),
                _ => String::new(),
            };
            if let Some(answer) = handshake::after_verify(route.handshakes, &incoming, &zoom_mac) {
                log.handshake(answer.kind.name());
                return Ok(handshake_response(answer));
            }
        } else {
            verifier.verify(&vreq).map_err(Reject::Verify)?;
        }

        // Replay protection: a delivery id seen and accepted is answered here; one
        // in flight is refused for now; the ticket is settled when the forward ends.
        let ticket = match (&state.dedup, &route.dedup) {
            (Some(store), Some(spec)) => match spec.id_from.extract(&parts.headers, &body) {
                Some(id) => Some(Ticket::take(store, &id, Instant::now())?),
                None => None,
            },
            _ => None,
        };

        let path = forward::upstream_path(&route.upstream, parts.uri.query());
        // HTTP/2 carries the host in the URI's authority, not in a Host field.
        let original_host = match parts.headers.get(header::HOST) {
            Some(h) => Some(h.as_bytes()),
            None => parts.uri.authority().map(|a| a.as_str().as_bytes()),
        };
        let info = ForwardInfo {
            peer: peer_text,
            peer_trusted,
            proto: "http",
            original_host,
            request_id,
            route: &state.name_header,
            verified: &route.verifier.header_value,
            upstream_host: &route.upstream.host_header,
            body_len: body.len(),
        };
        let head = |out: &mut Vec<u8>| {
            forward::write_upstream_head(out, &parts.method, &path, &parts.headers, &info)
        };
        let up_resp = upstream::send(&state.pool, head, &body, route.upstream_timeout).await?;
        log.upstream_status = Some(up_resp.status());
        let status = forward::map_upstream_status(up_resp.status())?;
        if let (Some(ticket), true) = (ticket, status.is_success()) {
            ticket.accept(Instant::now());
        }
        // The upstream's end-to-end fields (its hop-by-hop ones were dropped when parsed).
        let (mut up_parts, up_body) = up_resp.into_parts();
        up_parts.status = status;
        log.outcome = if status.is_success() {
            "accepted"
        } else {
            "upstream_rejected"
        };
        Ok(Response::from_parts(up_parts, Full::new(up_body)))
    }
}

/// A handshake's answer as a response.
fn handshake_response(answer: handshake::Answer) -> Resp {
    let mut resp = Response::new(Full::new(answer.body));
    *resp.status_mut() = answer.status;
    for (k, v) in answer.headers {
        resp.headers_mut().append(k, v);
    }
    resp
}

impl Gateway {
    /// Asana hands over its signing secret in a handshake: trust it on first use (the
    /// route's allowlist and rate limit have passed), keep it in `hook_secret_file` if
    /// configured, and refuse a different one later. The same secret again is fine.
    fn learn_secret(&self, state: &RouteState, secret: &[u8]) -> Result<(), Reject> {
        let route = &state.route;
        let known = |v: &crate::verify::Verifier| match &v.scheme {
            crate::verify::Scheme::Hmac(h) => h.secret_count() > 0,
            _ => true,
        };
        let mut learned = state
            .learned
            .write()
            .map_err(|_| Reject::HandshakeRefused)?;
        let current = learned.as_deref().unwrap_or(&route.verifier);
        if known(current) {
            // Accept a repeat of the secret we hold; refuse any other.
            let same = match &current.scheme {
                crate::verify::Scheme::Hmac(h) => h.holds_key(secret),
                _ => false,
            };
            return if same {
                Ok(())
            } else {
                Err(Reject::HandshakeRefused)
            };
        }
        let crate::verify::Scheme::Hmac(h) = &route.verifier.scheme else {
            return Err(Reject::HandshakeRefused);
        };
        if let Some(file) = &route.hook_secret_file {
            if let Err(e) = write_secret_file(file, secret) {
                tracing::error!(route = %route.name, file = %file, error = %e, "cannot keep the handshake secret; refusing the handshake");
                return Err(Reject::HandshakeRefused);
            }
        }
        let scheme = crate::verify::hmac::HmacScheme::new(h.spec.clone(), &[secret.to_vec()]);
        *learned = Some(Arc::new(crate::verify::Verifier::new(
            crate::verify::Scheme::Hmac(Box::new(scheme)),
            route.verifier.name.clone(),
        )));
        tracing::warn!(route = %route.name, kept_in = route.hook_secret_file.as_deref().unwrap_or("memory only"), "handshake secret received and now used to verify this route");
        Ok(())
    }
}

/// Writes a secret file readable by its owner only.
fn write_secret_file(path: &str, secret: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(secret)?;
    f.sync_all()
}

/// The answer to a failed request: the status, a short reason, and the headers the
/// status calls for. Never anything about what the right signature would have been.
pub fn reject_response(reject: Reject, reject_status: StatusCode) -> Resp {
    let mut resp = Response::new(Full::new(Bytes::from_static(reason_body(reject))));
    *resp.status_mut() = reject.status(reject_status);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    match reject {
        Reject::RateLimited { retry_after_secs } => {
            h.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        Reject::MethodNotAllowed => {
            h.insert(header::ALLOW, HeaderValue::from_static("POST"));
        }
        Reject::DuplicateInFlight => {
            h.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        _ => {}
    }
    resp
}

/// The body of a reject: its reason code and a newline, as static bytes.
pub(crate) fn reason_body(reject: Reject) -> &'static [u8] {
    macro_rules! line {
        ($($code:literal),* $(,)?) => {
            match reject.reason() {
                $($code => concat!($code, "\n").as_bytes(),)*
                other => other.as_bytes(),
            }
        };
    }
    line!(
        "unknown_route",
        "method_not_allowed",
        "ip_not_allowed",
        "rate_limited",
        "body_too_large",
        "body_read_error",
        "body_timeout",
        "signature_missing",
        "signature_malformed",
        "signature_mismatch",
        "timestamp_missing",
        "timestamp_invalid",
        "timestamp_stale",
        "timestamp_future",
        "id_missing",
        "duplicate",
        "duplicate_in_flight",
        "handshake_refused",
        "upstream_error_status",
        "upstream_unreachable",
        "upstream_broken",
        "upstream_timeout",
    )
}

/// The HTTP/1.1 + h2c connection builder with the hardening defaults.
pub fn connection_builder() -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEAD_BUF)
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
        .max_header_list_size(H2_MAX_HEADER_LIST)
        .max_pending_accept_reset_streams(20)
        .max_local_error_reset_streams(256);
    b
}

/// What a finished [`serve`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeReport {
    /// Requests still in flight when the grace period ran out.
    pub cut: usize,
}

/// Accepts connections on `listener` until `shutdown` resolves, then stops accepting and
/// lets in-flight requests finish within `grace`.
pub async fn serve(
    gateway: Arc<Gateway>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> ServeReport {
    let builder = connection_builder();
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off rather than spin.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let gw = gateway.clone();
                let peer_text: Arc<str> = crate::net::canonical(peer.ip()).to_string().into();
                let svc = service_fn(move |req| {
                    let gw = gw.clone();
                    let peer_text = peer_text.clone();
                    async move { Ok::<_, std::convert::Infallible>(gw.handle(req, peer, &peer_text).await) }
                });
                let conn = builder.serve_connection(TokioIo::new(stream), svc).into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    gateway.health.set_ready(false);
    tracing::info!(
        in_flight = gateway.in_flight(),
        grace_s = grace.as_secs_f64(),
        "draining"
    );
    let cut = match tokio::time::timeout(grace, graceful.shutdown()).await {
        Ok(()) => 0,
        Err(_) => {
            let cut = gateway.in_flight();
            tracing::warn!(
                cut,
                "grace period ran out; cutting the requests still in flight"
            );
            cut
        }
    };
    ServeReport { cut }
}

/// Bound sockets for [`run`].
pub struct Listeners {
    pub public: TcpListener,
    pub admin: Option<TcpListener>,
}

/// Binds the config's addresses.
pub async fn bind(config: &Config) -> Result<Listeners, String> {
    let public = TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let admin = match config.admin_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen on {addr} (admin): {e}"))?,
        ),
        None => None,
    };
    Ok(Listeners { public, admin })
}

/// Runs the gateway (and its admin listener) until `shutdown` resolves.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> ServeReport {
    let gateway = Arc::new(Gateway::new(&config));
    let admin = listeners
        .admin
        .map(|l| tokio::spawn(crate::admin::serve(l, gateway.health.clone())));
    let pruner = {
        let gw = gateway.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RATE_PRUNE_INTERVAL);
            loop {
                tick.tick().await;
                gw.prune_rate_limits();
            }
        })
    };
    gateway.health.set_ready(true);
    let report = serve(gateway, listeners.public, shutdown, config.shutdown_grace).await;
    pruner.abort();
    if let Some(a) = admin {
        a.abort();
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::VerifyError;

    #[test]
    fn request_ids_keep_a_sane_sent_id_and_make_one_otherwise() {
        let ids = RequestIds::new();
        let sent = HeaderValue::from_static("abc-123");
        assert_eq!(ids.take(Some(&sent)), sent);
        let a = ids.take(None);
        let b = ids.take(None);
        assert_ne!(a, b);
        assert_eq!(a.len(), 29);
        let long = HeaderValue::from_str(&"x".repeat(200)).unwrap();
        assert_ne!(ids.take(Some(&long)), long);
        let spaced = HeaderValue::from_static("a b");
        assert_ne!(ids.take(Some(&spaced)), spaced);
    }

    #[test]
    fn reject_responses_carry_their_headers_and_short_reasons() {
        let r = reject_response(
            Reject::RateLimited {
                retry_after_secs: 3,
            },
            StatusCode::NOT_ACCEPTABLE,
        );
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()[header::RETRY_AFTER], "3");
        let r = reject_response(Reject::MethodNotAllowed, StatusCode::NOT_ACCEPTABLE);
        assert_eq!(r.headers()[header::ALLOW], "POST");
        let r = reject_response(
            Reject::Verify(VerifyError::SignatureMismatch),
            StatusCode::BAD_REQUEST,
        );
        assert_eq!(r.status(), 400);
        assert_eq!(
            reason_body(Reject::Verify(VerifyError::SignatureMismatch)),
            b"signature_mismatch\n"
        );
        assert_eq!(reason_body(Reject::UpstreamBroken), b"upstream_broken\n");
    }
}
