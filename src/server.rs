//! The public listener and the request handler. [`Gateway`] holds everything built from
//! the config (route table, verifiers, limiters, the upstream client); [`Gateway::handle`]
//! is the outer layer (request id, error → response, the one access-log line) around
//! [`Gateway::handle_inner`], which runs the stages in order. [`run`] takes already
//! bound listeners and a shutdown future, so tests run it on port 0; the connections
//! themselves are the business of [`crate::listener`], and reloads of [`crate::reload`].

use crate::config::{Config, Route};
use crate::fields::RequestHead;
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
use http::{StatusCode, Uri};
use hyper::body::Body;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// How often idle per-client rate-limit entries are forgotten.
pub const RATE_PRUNE_INTERVAL: Duration = Duration::from_secs(30);

/// One route with its runtime state.
pub struct RouteState {
    pub route: Route,
    /// Shared with the previous generation when the route's rate limit is unchanged.
    pub limiter: Option<Arc<RateLimiter>>,
    pub name_header: HeaderValue,
    pub pool: Arc<Pool>,
    pub dedup: Option<Arc<DedupStore>>,
    /// A verifier built from a secret learned in a handshake (Asana), if any.
    pub learned: std::sync::RwLock<Option<Arc<crate::verify::Verifier>>>,
    /// The route's metrics.
    pub metrics: crate::metrics::RouteMetrics,
}

impl RouteState {
    /// The route's state, keeping what the same route in the previous generation had
    /// learned and counted when it still applies: the rate-limit budgets (same limit),
    /// the dedup memory (same window and size), a secret learned in a handshake.
    fn new(route: &Route, previous: Option<&RouteState>, pool: Arc<Pool>) -> RouteState {
        let limiter = match (route.rate_limit, previous) {
            (Some(spec), Some(p)) if p.route.rate_limit == Some(spec) => p.limiter.clone(),
            (spec, _) => spec.map(|s| Arc::new(RateLimiter::new(s))),
        };
        let dedup = match (&route.dedup, previous) {
            (Some(d), Some(p))
                if p.route
                    .dedup
                    .as_ref()
                    .is_some_and(|o| o.window == d.window && o.max_entries == d.max_entries) =>
            {
                p.dedup.clone()
            }
            (d, _) => d
                .as_ref()
                .map(|d| Arc::new(DedupStore::new(d.window, d.max_entries))),
        };
        let learned = previous
            .filter(|p| p.route.handshakes == route.handshakes)
            .and_then(|p| p.learned.read().ok().and_then(|l| l.clone()));
        RouteState {
            limiter,
            name_header: HeaderValue::from_str(&route.name).expect("route names are tokens"),
            pool,
            dedup,
            learned: std::sync::RwLock::new(learned),
            metrics: crate::metrics::RouteMetrics::new(&route.name),
            route: route.clone(),
        }
    }
}

/// Everything the handler needs, built once from a validated config.
pub struct Gateway {
    table: RouteTable,
    routes: Vec<RouteState>,
    trusted: IpSet,
    ids: Arc<RequestIds>,
    /// Requests in progress, counted across config generations (per thread: every
    /// request adds and takes one).
    in_flight: Arc<crate::sharded::ShardedLevel>,
    body_deadlines: body::Deadlines,
    pools: upstream::Pools,
    /// The durable queue, for routes with `delivery: queued`.
    queue: Option<Arc<crate::queue::Queue>>,
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
/// when it is a reasonable token. Each thread takes numbers from the counter in blocks,
/// so that workers do not share its cache line per request: ids are unique, and rise
/// per thread rather than across the process.
struct RequestIds {
    prefix: u64,
    next: AtomicU64,
}

/// Numbers a thread takes from the counter at a time.
const ID_BLOCK: u64 = 256;

impl RequestIds {
    fn new() -> Self {
        RequestIds {
            prefix: crate::trace::random_u64(),
            next: AtomicU64::new(1),
        }
    }

    fn take(&self, sent: Option<crate::fields::Value<'_>>) -> RequestId {
        if let Some(id) = sent.and_then(|v| RequestId::sent(v.as_bytes())) {
            return id;
        }
        let n = self.number();
        let mut buf = [0u8; MADE_ID_LEN];
        crate::trace::write_hex(&mut buf[..16], self.prefix);
        buf[16] = b'-';
        crate::trace::write_hex(&mut buf[17..], n);
        RequestId::made(buf)
    }

    /// The next number from this thread's block, which belongs to this set of ids
    /// (known by its random prefix).
    fn number(&self) -> u64 {
        use std::cell::Cell;
        thread_local! {
            // (prefix, next, end)
            static BLOCK: Cell<(u64, u64, u64)> = const { Cell::new((0, 0, 0)) };
        }
        BLOCK.with(|b| {
            let (prefix, mut next, mut end) = b.get();
            if prefix != self.prefix || next == end {
                next = self.next.fetch_add(ID_BLOCK, Ordering::Relaxed);
                end = next + ID_BLOCK;
            }
            b.set((self.prefix, next + 1, end));
            next
        })
    }
}

use crate::answer::MADE_ID_LEN;
pub use crate::answer::{Answer, RequestId};

/// What the connection knows about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnInfo {
    /// The request came over TLS.
    pub tls: bool,
}

impl Gateway {
    /// Builds the gateway for `config`. `previous` is the generation it replaces on a
    /// reload: per-route state carries over (see [`RouteState::new`]), and so do upstream
    /// connection pools whose upstream and settings are unchanged.
    pub fn new(config: &Config, previous: Option<&Gateway>) -> Gateway {
        let table = RouteTable::new(
            config
                .routes
                .iter()
                .map(|r| (r.path.as_str(), r.host.as_deref())),
        );
        let mut pools = match previous {
            Some(p) => p.pools.reuse(),
            None => upstream::Pools::default(),
        };
        let routes = config
            .routes
            .iter()
            .map(|r| {
                let pool =
                    pools.pool_for_tls(&r.upstream.authority, config.pool, r.upstream_tls.clone());
                let before =
                    previous.and_then(|p| p.routes.iter().find(|s| s.route.name == r.name));
                RouteState::new(r, before, pool)
            })
            .collect();
        pools.forget_previous();
        Gateway {
            table,
            routes,
            trusted: config.trusted_proxies.clone(),
            ids: previous
                .map(|p| p.ids.clone())
                .unwrap_or_else(|| Arc::new(RequestIds::new())),
            in_flight: previous.map(|p| p.in_flight.clone()).unwrap_or_default(),
            body_deadlines: body::Deadlines {
                timeout: config.limits.body_timeout,
                min_rate: config.limits.body_min_rate,
                grace: config.limits.body_min_rate_grace,
            },
            pools,
            queue: previous.and_then(|p| p.queue.clone()),
        }
    }

    /// Attaches the durable queue (the first generation; reloads carry it over).
    pub fn with_queue(mut self, queue: Option<Arc<crate::queue::Queue>>) -> Gateway {
        self.queue = queue;
        self
    }

    /// The peers whose X-Forwarded-For is believed (exempt from the per-address cap).
    pub fn trusted(&self) -> &IpSet {
        &self.trusted
    }

    /// The names of the routes with `delivery: queued`.
    pub fn queued_routes(&self) -> Vec<String> {
        self.routes
            .iter()
            .filter(|s| s.route.delivery == crate::config::Delivery::Queued)
            .map(|s| s.route.name.clone())
            .collect()
    }

    /// The index of the queued route called `name`.
    pub fn queued_route(&self, name: &str) -> Option<usize> {
        self.routes.iter().position(|s| {
            s.route.name == name && s.route.delivery == crate::config::Delivery::Queued
        })
    }

    pub fn route(&self, idx: usize) -> &Route {
        &self.routes[idx].route
    }

    pub fn route_state(&self, idx: usize) -> &RouteState {
        &self.routes[idx]
    }

    pub fn in_flight(&self) -> usize {
        usize::try_from(self.in_flight.get()).unwrap_or(0)
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
    /// Returns the answer and when it was ready: the request's last clock reading, which
    /// the connection uses for its idle time and the answer's `Date`.
    pub async fn handle<B>(
        &self,
        req: RequestHead,
        body: B,
        peer: SocketAddr,
        peer_text: &str,
        conn: ConnInfo,
    ) -> (Answer, Instant)
    where
        B: Body<Data = Bytes> + body::Progress + Unpin,
    {
        let start = Instant::now();
        self.in_flight.add(1);
        let request_id = self.ids.take(req.fields.get(X_REQUEST_ID));
        let mut log = AccessLog::new(peer.ip(), req.method.clone(), req.uri.clone());
        // The sender's trace context (if valid); this hop's span is made only for a
        // delivery that goes on (forwarded or queued).
        log.traceparent = req
            .fields
            .get(crate::trace::TRACEPARENT)
            .and_then(|v| crate::trace::TraceParent::parse(v.as_bytes()));
        let result = self
            .handle_inner(
                req,
                body,
                peer,
                peer_text,
                conn,
                &request_id,
                &mut log,
                start,
            )
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
                // A head another parser could read differently: do not read another
                // request from this connection (HAProxy does the same).
                if let Reject::Malformed(_) = reject {
                    resp.close_after();
                }
                // A route that answers handshake probes allows their methods too.
                if let (Reject::MethodNotAllowed, Some(i)) = (reject, log.route_index) {
                    let allow = handshake::allowed_methods(self.routes[i].route.handshakes);
                    resp.set("allow", allow.as_bytes());
                }
                resp
            }
        };
        let end = Instant::now();
        self.finish(
            &mut resp,
            &log,
            request_id,
            end.saturating_duration_since(start),
        );
        self.in_flight.add(-1);
        (resp, end)
    }

    /// Every answer's last step: its request id, its access line, its metrics.
    fn finish(&self, resp: &mut Answer, log: &AccessLog, request_id: RequestId, took: Duration) {
        let route_name = log.route_index.map(|i| self.routes[i].route.name.as_str());
        log.emit(route_name, request_id.as_str(), resp.status, took);
        // Never one from the upstream: the upstream client drops its X-Request-Id.
        resp.set_request_id(request_id);
        match log.route_index {
            Some(i) => self.routes[i]
                .metrics
                .request(log.outcome, log.reason, took),
            None => crate::metrics::global().request(
                &crate::metrics::no_route(),
                log.outcome,
                log.reason,
                took,
            ),
        }
    }

    /// A request head the HTTP/1 codec refused (not HTTP/1.x, a bad Content-Length,
    /// over the size or field limits): answered, logged and counted like every other
    /// rejection. The connection is closed after the answer.
    pub fn refuse_head(&self, peer: SocketAddr, why: pipeline::framing::Malformed) -> Answer {
        let reject = Reject::Malformed(why);
        let request_id = self.ids.take(None);
        let mut log = AccessLog::new(peer.ip(), http::Method::default(), Uri::from_static("*"));
        log.unparsed = true;
        log.reject(reject);
        // The HTTP/1 loop closes the connection after this answer, and says so.
        let mut resp = reject_response(reject, StatusCode::BAD_REQUEST);
        self.finish(&mut resp, &log, request_id, Duration::ZERO);
        resp
    }

    /// The stages, in order; the first failure ends the request.
    #[allow(clippy::too_many_arguments)]
    async fn handle_inner<B>(
        &self,
        req: RequestHead,
        incoming: B,
        peer: SocketAddr,
        peer_text: &str,
        conn: ConnInfo,
        request_id: &RequestId,
        log: &mut AccessLog,
        // The request's one clock reading: timestamps, the upstream deadline, the pool.
        start: Instant,
    ) -> Result<Answer, Reject>
    where
        B: Body<Data = Bytes> + body::Progress + Unpin,
    {
        pipeline::framing::check(req.version, &req.uri, &req.fields).map_err(Reject::Malformed)?;
        let host = req
            .uri
            .host()
            .or_else(|| req.fields.get(header::HOST).and_then(|h| h.to_str().ok()));
        let idx = self.table.select(req.uri.path(), host)?;
        log.route_index = Some(idx);
        let state = &self.routes[idx];
        let route = &state.route;

        if !handshake::allows_method(route.handshakes, &req.method) {
            return Err(Reject::MethodNotAllowed);
        }
        let peer_trusted = !self.trusted.is_empty() && self.trusted.contains(peer.ip());
        let client = client_ip::client_ip(
            peer.ip(),
            req.fields
                .get_all(&forward::X_FORWARDED_FOR)
                .map(crate::fields::Value::as_bytes),
            &self.trusted,
        );
        log.client_ip = client;
        pipeline::check_allowlist(client, route.allow_ips.as_ref())?;
        if let Some(limiter) = &state.limiter {
            limiter.check(client)?;
        }
        let declared = incoming.size_hint().exact();
        body::check_declared_size(declared, route.max_body)?;

        // A small body usually arrived with the head: read it without arming a timer,
        // and only if it has not, wait for the rest under the body deadline and the
        // minimum rate (one timer for both).
        let mut reader = body::Reader::new(incoming, route.max_body, declared);
        let body = match std::future::poll_fn(|cx| Poll::Ready(reader.poll_read(cx))).await {
            Poll::Ready(result) => result?,
            Poll::Pending => body::read_rest(&mut reader, self.body_deadlines).await?,
        };
        log.bytes = body.len();

        // Only a route that learns its secret in a handshake looks for a learned one.
        let learned = match route.handshakes.contains(&handshake::Kind::AsanaHookSecret) {
            true => state.learned.read().ok().and_then(|l| l.clone()),
            false => None,
        };
        let verifier = learned.as_deref().unwrap_or(&route.verifier);
        let vreq = crate::verify::Request {
            headers: &req.fields,
            body: &body,
            method: &req.method,
            query: req.uri.query(),
            now_unix: crate::clock::unix_at(start),
        };
        if !route.handshakes.is_empty() {
            let incoming = handshake::Incoming {
                method: &req.method,
                query: req.uri.query(),
                headers: &req.fields,
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
            if req.method != http::Method::POST {
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
            (Some(store), Some(spec)) => match spec.id_from.extract(&req.fields, &body) {
                Some(id) => Some(Ticket::take(store, &id, start)?),
                None => None,
            },
            _ => None,
        };

        // This hop's span, for a delivery that goes on (forwarded or queued).
        let trace = crate::trace::TraceParent::next_hop(log.traceparent);
        log.traceparent = Some(trace);
        if route.delivery == crate::config::Delivery::Queued {
            // Boxed: the store's commit is the cost here, and unboxed its state would
            // size (and be copied with) every forwarded request's future.
            return Box::pin(self.enqueue(
                state,
                &req,
                body,
                peer_text,
                peer_trusted,
                conn,
                request_id,
                &trace,
                ticket,
                log,
            ))
            .await;
        }

        let path = forward::upstream_path(&route.upstream, req.uri.query());
        // HTTP/2 carries the host in the URI's authority, not in a Host field.
        let original_host = match req.fields.get(header::HOST) {
            Some(h) => Some(h.as_bytes()),
            None => req.uri.authority().map(|a| a.as_str().as_bytes()),
        };
        let info = ForwardInfo {
            peer: peer_text,
            peer_trusted,
            proto: if conn.tls { "https" } else { "http" },
            original_host,
            request_id: request_id.as_bytes(),
            route: &state.name_header,
            verified: &route.verifier.header_value,
            upstream_host: &route.upstream.host_header,
            body_len: body.len(),
            traceparent: Some(trace.as_str()),
        };
        let head = |out: &mut Vec<u8>| {
            forward::write_upstream_head(out, &req.method, &path, &req.fields, &info)
        };
        let sent = upstream::send(&state.pool, head, &body, route.upstream_timeout, start).await;
        state
            .metrics
            .upstream(sent.as_ref().map(|r| r.status.as_u16()).map_err(|e| *e));
        // The upstream's end-to-end fields (its hop-by-hop ones were dropped when parsed)
        // and body, under the status the sender's retry contract wants.
        let mut answer = sent?;
        log.upstream_status = Some(answer.status);
        let status = forward::map_upstream_status(answer.status)?;
        if let (Some(ticket), true) = (ticket, status.is_success()) {
            ticket.accept(Instant::now());
        }
        answer.status = status;
        log.outcome = if status.is_success() {
            "accepted"
        } else {
            "upstream_rejected"
        };
        Ok(answer)
    }
}

impl Gateway {
    /// Stores an accepted delivery of a queued route; the 200 goes out only after the
    /// commit that holds it. A dedup ticket is settled at once: the delivery is durable.
    #[allow(clippy::too_many_arguments)]
    async fn enqueue(
        &self,
        state: &RouteState,
        req: &RequestHead,
        body: Bytes,
        peer_text: &str,
        peer_trusted: bool,
        conn: ConnInfo,
        request_id: &RequestId,
        trace: &crate::trace::TraceParent,
        ticket: Option<Ticket>,
        log: &mut AccessLog,
    ) -> Result<Answer, Reject> {
        let queue = self.queue.as_ref().ok_or(Reject::StoreUnavailable)?;
        let route = &state.route;
        let original_host = match req.fields.get(header::HOST) {
            Some(h) => Some(h.as_bytes().to_vec()),
            None => req.uri.authority().map(|a| a.as_str().as_bytes().to_vec()),
        };
        let delivery = crate::store::NewDelivery {
            route: route.name.clone(),
            delivery_id: route
                .dedup
                .as_ref()
                .and_then(|d| d.id_from.extract(&req.fields, &body)),
            query: req.uri.query().map(str::to_string),
            headers: crate::queue::encode_headers(&req.fields, trace),
            peer: peer_text.to_string(),
            peer_trusted,
            tls: conn.tls,
            original_host,
            request_id: request_id.as_str().to_string(),
            body,
        };
        let id = match queue.store.enqueue(delivery).await {
            Ok(id) => id,
            Err(crate::store::StoreError::Full) => return Err(Reject::StoreFull),
            Err(e) => {
                tracing::error!(route = %route.name, error = %e, "cannot store a delivery");
                return Err(Reject::StoreUnavailable);
            }
        };
        if let Some(ticket) = ticket {
            ticket.accept(Instant::now());
        }
        queue.notify(&route.name);
        log.outcome = "queued";
        let mut resp = Answer::new(StatusCode::OK, Bytes::from_static(b"queued\n"));
        resp.push("x-hookgate-delivery-id", queue.delivery_id(id).as_bytes());
        Ok(resp)
    }
}

/// A handshake's answer as a response.
fn handshake_response(answer: handshake::Answer) -> Answer {
    let mut resp = Answer::new(answer.status, answer.body);
    for (k, v) in &answer.headers {
        resp.push(k.as_str(), v.as_bytes());
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
pub fn reject_response(reject: Reject, reject_status: StatusCode) -> Answer {
    // The fields are fixed text but for a rate limit's wait: no allocation and no
    // formatting per rejection.
    macro_rules! lines {
        ($($more:literal)?) => {
            concat!("content-type: text/plain; charset=utf-8\r\n", $($more)?).as_bytes()
        };
    }
    let lines: &'static [u8] = match reject {
        Reject::MethodNotAllowed => lines!("allow: POST\r\n"),
        Reject::DuplicateInFlight | Reject::StoreFull | Reject::StoreUnavailable => {
            lines!("retry-after: 5\r\n")
        }
        _ => lines!(),
    };
    let body = Bytes::from_static(reason_body(reject));
    let mut resp = Answer::with_static_lines(reject.status(reject_status), lines, body);
    if let Reject::RateLimited { retry_after_secs } = reject {
        let wait = crate::answer::Decimal::new(retry_after_secs);
        resp.push("retry-after", wait.as_bytes());
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
        "content_length_with_transfer_encoding",
        "duplicate_content_length",
        "unsupported_transfer_encoding",
        "underscore_in_header_name",
        "missing_host",
        "duplicate_host",
        "invalid_host",
        "invalid_request",
        "invalid_content_length",
        "header_too_large",
        "too_many_headers",
        "unknown_route",
        "method_not_allowed",
        "ip_not_allowed",
        "rate_limited",
        "body_too_large",
        "body_read_error",
        "body_timeout",
        "body_too_slow",
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
        "upstream_tls_failed",
        "store_full",
        "store_unavailable",
    )
}

/// What a finished [`run`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeReport {
    /// Requests still in flight when the grace period ran out.
    pub cut: usize,
    /// Why the gateway could not start, if it could not (the store would not open).
    pub error: Option<String>,
}

/// Bound sockets for [`run`].
pub struct Listeners {
    pub public: TcpListener,
    pub admin: Option<TcpListener>,
}

/// Binds the config's addresses.
pub async fn bind(config: &Config) -> Result<Listeners, String> {
    let public = match config.workers {
        1 => TcpListener::bind(config.listen).await,
        _ => reuseport_listener(config.listen),
    }
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

/// Runs the gateway (and its admin listener) until `shutdown` resolves, without reloads.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> ServeReport {
    run_with(
        config,
        listeners,
        shutdown,
        crate::reload::Options::default(),
    )
    .await
}

/// Runs the gateway until `shutdown` resolves: readiness turns false, the listener stops
/// accepting, every connection is asked to close after its current requests, and those
/// get `shutdown_grace` to finish. `reload` says where the config comes from again on
/// SIGHUP or a file change.
pub async fn run_with(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
    reload: crate::reload::Options,
) -> ServeReport {
    let health = Arc::new(Health::default());
    let queue = match &config.store {
        None => None,
        Some(settings) => match crate::store::Store::open(settings) {
            Ok(store) => Some(crate::queue::Queue::new(store)),
            Err(e) => {
                tracing::error!(error = %e, "cannot open the store");
                return ServeReport {
                    cut: 0,
                    error: Some(e),
                };
            }
        },
    };
    let gateway = Arc::new(Gateway::new(&config, None).with_queue(queue.clone()));
    let shared = crate::listener::Shared::new(crate::listener::Generation::new(
        gateway,
        config.tls.clone(),
        config.limits,
    ));
    let queue_admin = queue.as_ref().map(|q| crate::admin::QueueAdmin {
        store: q.store.clone(),
        token: config.admin_token.clone(),
    });
    if let (Some(l), Some(_), None) = (&listeners.admin, &queue_admin, &config.admin_token) {
        if l.local_addr().is_ok_and(|a| !a.ip().is_loopback()) {
            tracing::warn!("the admin listener is not on loopback and has no admin.token: anyone who reaches it can replay and purge dead letters");
        }
    }
    let admin = listeners
        .admin
        .map(|l| tokio::spawn(crate::admin::serve_with(l, health.clone(), queue_admin)));
    let pruner = {
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RATE_PRUNE_INTERVAL);
            loop {
                tick.tick().await;
                shared.current().gateway.prune_rate_limits();
            }
        })
    };
    let grace = config.shutdown_grace;
    let config_workers = config.workers;
    let deliverer = queue.clone().map(|q| {
        let retain = config.store.as_ref().map(|s| s.retain).unwrap_or_default();
        tokio::spawn(q.run(shared.clone(), retain))
    });
    let reloader = tokio::spawn(crate::reload::run(shared.clone(), config, reload));
    health.set_ready(true);
    let stopping = {
        let health = health.clone();
        async move {
            shutdown.await;
            health.set_ready(false);
        }
    };
    // Workers 2..n: a thread each, with its own event loop, accepting from the same
    // listening socket; this task is worker 1 and also runs everything else.
    let (stop_workers, stopped) = tokio::sync::watch::channel(false);
    let (public, workers) =
        match spawn_workers(&shared, listeners.public, config_workers, grace, &stopped) {
            Ok(started) => started,
            Err(e) => {
                return ServeReport {
                    cut: 0,
                    error: Some(format!("cannot start the worker threads: {e}")),
                }
            }
        };
    crate::listener::accept_loop(shared.clone(), public, stopping).await;
    stop_workers.send_replace(true);
    reloader.abort();
    let in_flight = || shared.current().gateway.in_flight();
    tracing::info!(
        in_flight = in_flight(),
        connections = shared.conns.open(),
        grace_s = grace.as_secs_f64(),
        "draining"
    );
    let cut = match tokio::time::timeout(grace, shared.conns.all_closed()).await {
        Ok(()) => 0,
        Err(_) => {
            let cut = in_flight();
            tracing::warn!(
                cut,
                "grace period ran out; cutting the requests still in flight"
            );
            cut
        }
    };
    pruner.abort();
    for w in workers {
        let _ = tokio::task::spawn_blocking(move || w.join()).await;
    }
    // Attempts in progress are cut: their rows stay pending and go again next start.
    if let Some(d) = deliverer {
        d.abort();
    }
    if let Some(a) = admin {
        a.abort();
    }
    ServeReport { cut, error: None }
}

/// A listening socket with `SO_REUSEPORT`, so that each worker can bind its own to the
/// same address and the kernel spreads new connections over them (by a hash of the
/// addresses: evenly, where one shared socket lets the worker that wakes first take a
/// burst of connections). Only sockets of the same user join the group.
fn reuseport_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    #[cfg(unix)]
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// A worker's listening socket: its own in the `SO_REUSEPORT` group of `listener` if
/// `listener` was bound with it (by [`bind`] for more than one worker), else a duplicate
/// of `listener`'s descriptor, which the workers then share.
fn worker_listener(listener: &TcpListener) -> std::io::Result<std::net::TcpListener> {
    let addr = listener.local_addr()?;
    #[cfg(unix)]
    if let Ok(own) = reuseport_listener(addr).and_then(|l| l.into_std()) {
        return Ok(own);
    }
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        let dup = listener.as_fd().try_clone_to_owned()?;
        let shared = std::net::TcpListener::from(dup);
        shared.set_nonblocking(true)?;
        Ok(shared)
    }
    #[cfg(not(unix))]
    Err(std::io::Error::other(format!(
        "more than one worker needs a Unix socket API (listening on {addr})"
    )))
}

/// Starts `workers - 1` threads, each with a current-thread runtime that accepts from its
/// own socket ([`worker_listener`]) and runs the connections it accepted: thread per
/// core, without work stealing or cross-thread wake-ups on the request path. Each stops
/// accepting when `stop` says so (or its sender is gone), lets its connections drain for
/// `grace`, and ends. Returns the listener for the calling task's own accept loop.
fn spawn_workers(
    shared: &Arc<crate::listener::Shared>,
    listener: TcpListener,
    workers: usize,
    grace: Duration,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<(TcpListener, Vec<std::thread::JoinHandle<()>>)> {
    if workers <= 1 {
        return Ok((listener, Vec::new()));
    }
    let mut threads = Vec::with_capacity(workers - 1);
    for index in 1..workers {
        let socket = worker_listener(&listener)?;
        let shared = shared.clone();
        let mut stop = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("hookgate-worker-{index}"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(worker = index, error = %e, "cannot start a worker's runtime");
                        return;
                    }
                };
                runtime.block_on(async move {
                    crate::upstream::set_worker(index);
                    let listener = match TcpListener::from_std(socket) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!(worker = index, error = %e, "worker cannot listen");
                            return;
                        }
                    };
                    let stopping = async move {
                        let _ = stop.wait_for(|s| *s).await;
                    };
                    crate::listener::accept_loop(shared.clone(), listener, stopping).await;
                    let _ = tokio::time::timeout(grace, shared.conns.all_closed()).await;
                });
            })?;
        threads.push(thread);
    }
    Ok((listener, threads))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::VerifyError;

    #[cfg(unix)]
    #[tokio::test]
    async fn each_worker_gets_its_own_socket_and_the_kernel_spreads_connections() {
        let main = reuseport_listener("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = main.local_addr().unwrap();
        let own = TcpListener::from_std(worker_listener(&main).unwrap()).unwrap();
        assert_eq!(own.local_addr().unwrap(), addr);
        let mut clients = Vec::new();
        for _ in 0..64 {
            clients.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        let (mut a, mut b) = (0, 0);
        for _ in 0..64 {
            tokio::select! {
                r = main.accept() => { r.unwrap(); a += 1; }
                r = own.accept() => { r.unwrap(); b += 1; }
            }
        }
        // By the hash of 64 client ports, both sockets get some (all 64 to one: 2^-63).
        assert!(a > 0 && b > 0, "{a} / {b}");
        // A socket bound without SO_REUSEPORT (a test's, or one handed over): the
        // workers share a duplicate of it.
        let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let shared = TcpListener::from_std(worker_listener(&plain).unwrap()).unwrap();
        assert_eq!(shared.local_addr().unwrap(), plain.local_addr().unwrap());
        let _c = tokio::net::TcpStream::connect(plain.local_addr().unwrap())
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), shared.accept())
            .await
            .unwrap()
            .unwrap();
    }

    #[test]
    fn a_reloaded_gateway_keeps_the_state_of_unchanged_routes() {
        let yaml = |limit: u32, window: &str| {
            format!(
                "routes:\n  - name: a\n    path: /a\n    verify: {{ preset: github, secrets: [x] }}\n    \
                 rate_limit: {{ per_second: 1, burst: {limit} }}\n    dedup: {{ window: {window} }}\n    \
                 upstream: http://127.0.0.1:9/a\n  - name: b\n    path: /b\n    verify: {{ none: true }}\n    \
                 rate_limit: {{ per_second: 1, burst: 5 }}\n    upstream: http://127.0.0.1:9/b\n"
            )
        };
        let env = |_: &str| None;
        let load = |y: &str| crate::config::load_str(y, &env).unwrap();
        let first = Gateway::new(&load(&yaml(2, "1h")), None);
        let same = Gateway::new(&load(&yaml(2, "1h")), Some(&first));
        let ptr = |g: &Gateway, i: usize| {
            (
                Arc::as_ptr(g.routes[i].limiter.as_ref().unwrap()),
                g.routes[i].dedup.as_ref().map(Arc::as_ptr),
                Arc::as_ptr(&g.routes[i].pool),
            )
        };
        assert_eq!(ptr(&first, 0), ptr(&same, 0));
        assert_eq!(ptr(&first, 1), ptr(&same, 1));
        assert!(Arc::ptr_eq(&first.in_flight, &same.in_flight));
        // Route a's limit and dedup window change: fresh state for a, b keeps its own.
        let changed = Gateway::new(&load(&yaml(3, "2h")), Some(&same));
        assert_ne!(ptr(&same, 0).0, ptr(&changed, 0).0);
        assert_ne!(ptr(&same, 0).1, ptr(&changed, 0).1);
        assert_eq!(
            ptr(&same, 0).2,
            ptr(&changed, 0).2,
            "the pool's upstream did not change"
        );
        assert_eq!(ptr(&same, 1), ptr(&changed, 1));
    }

    #[test]
    fn request_ids_keep_a_sane_sent_id_and_make_one_otherwise() {
        let ids = RequestIds::new();
        let sent = |v: &'static str| Some(crate::fields::Value::from(v.as_bytes()));
        assert_eq!(ids.take(sent("abc-123")), "abc-123");
        let a = ids.take(None);
        let b = ids.take(None);
        assert_ne!(a, b);
        assert_eq!(a.as_bytes().len(), 29);
        let long: &'static str = "x".repeat(200).leak();
        assert_ne!(ids.take(sent(long)), long);
        assert_ne!(ids.take(sent("a b")), "a b");
    }

    #[test]
    fn request_ids_are_unique_across_threads_and_sets() {
        let ids = Arc::new(RequestIds::new());
        // More than a block per thread, on several threads at once.
        let per_thread = 3 * ID_BLOCK as usize + 7;
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let ids = ids.clone();
                std::thread::spawn(move || {
                    (0..per_thread).map(|_| ids.take(None)).collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all = std::collections::HashSet::new();
        for t in threads {
            for id in t.join().unwrap() {
                assert!(all.insert(id), "a repeated id");
            }
        }
        assert_eq!(all.len(), 4 * per_thread);
        // Two sets on one thread (a test's second gateway): each keeps its own numbers.
        let other = RequestIds::new();
        let (a1, b1, a2) = (ids.take(None), other.take(None), ids.take(None));
        assert_eq!(&b1.as_bytes()[17..], b"000000000001");
        assert_ne!(a1, a2);
        assert!(!all.contains(&a1) && !all.contains(&a2));
    }

    #[test]
    fn reject_responses_carry_their_headers_and_short_reasons() {
        let r = reject_response(
            Reject::RateLimited {
                retry_after_secs: 3,
            },
            StatusCode::NOT_ACCEPTABLE,
        );
        assert_eq!(r.status, 429);
        assert_eq!(r.get("retry-after"), Some(&b"3"[..]));
        let r = reject_response(Reject::MethodNotAllowed, StatusCode::NOT_ACCEPTABLE);
        assert_eq!(r.get("allow"), Some(&b"POST"[..]));
        let r = reject_response(
            Reject::Verify(VerifyError::SignatureMismatch),
            StatusCode::BAD_REQUEST,
        );
        assert_eq!(r.status, 400);
        assert_eq!(
            reason_body(Reject::Verify(VerifyError::SignatureMismatch)),
            b"signature_mismatch\n"
        );
        assert_eq!(reason_body(Reject::UpstreamBroken), b"upstream_broken\n");
    }
}
