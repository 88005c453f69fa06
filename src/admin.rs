//! The admin listener, on its own port: `/healthz` (the process is up) and `/readyz`
//! (the gateway accepts traffic: false while starting and while draining), and, when
//! the gateway has a store, the queue's admin API:
//!
//! - `GET /queue/stats`: counts per route.
//! - `GET /dlq?route=R&limit=N`: dead deliveries, oldest first (limit 100 by default,
//!   1000 at most).
//! - `GET /dlq/{id}`: one dead delivery in full, body included.
//! - `POST /dlq/replay`, `POST /dlq/purge` with `{"id": 42}` or
//!   `{"all": true, "route": "R", "older_than_s": 86400}` (`route` and `older_than_s`
//!   optional: only a route's, only those dead for longer than that many seconds by the
//!   gateway's clock): make dead deliveries pending again, or delete them.
//!
//! With `admin.token` set, every queue and dead-letter endpoint requires
//! `Authorization: Bearer <token>`; the probes stay open.

use crate::server::Health;
use crate::store::{RouteStats, Select, Store, StoreError, Stored};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{json, Value};
use std::sync::Arc;
use tokio::net::TcpListener;

/// The admin port answers probes from the local kubelet or load balancer: a short head
/// deadline is plenty.
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// The whole body of an admin request must arrive within this.
const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Request bodies of the admin API (`{"id": 42}`) are tiny.
pub const MAX_ADMIN_BODY: usize = 64 * 1024;
/// `GET /dlq` lists this many dead deliveries unless `limit` says otherwise.
pub const DEFAULT_DLQ_LIMIT: usize = 100;
/// ... and never more than this.
pub const MAX_DLQ_LIMIT: usize = 1000;

/// What the queue's admin endpoints need: the store, and the bearer token they require
/// (a secret: never printed, `Debug` masks it).
#[derive(Clone)]
pub struct QueueAdmin {
    pub store: Store,
    pub token: Option<String>,
}

impl std::fmt::Debug for QueueAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueAdmin")
            .field("store", &self.store)
            .field("token", &self.token.as_ref().map(|_| "****"))
            .finish()
    }
}

/// One queue operation, as the API and the CLI's file mode both run it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueOp {
    Stats,
    ListDead { route: Option<String>, limit: usize },
    ShowDead(i64),
    Replay(Select),
    Purge(Select),
}

/// A failed queue operation: the status the API answers with, and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
    }
}

/// Runs a queue operation on the store; the answer is the API's JSON body.
pub async fn run_op(store: &Store, op: &QueueOp) -> Result<Value, ApiError> {
    Ok(match op {
        QueueOp::Stats => stats_json(&store.stats().await?),
        QueueOp::ListDead { route, limit } => {
            let dead = store
                .list_dead(route.clone(), (*limit).clamp(1, MAX_DLQ_LIMIT))
                .await?;
            json!({ "dead": dead.iter().map(dead_summary).collect::<Vec<_>>() })
        }
        QueueOp::ShowDead(id) => match store.get(*id).await? {
            Some(d) if d.state == crate::store::State::Dead => dead_full(&d),
            _ => {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    format!("no dead delivery {id}"),
                ))
            }
        },
        QueueOp::Replay(which) => json!({ "replayed": store.replay(which.clone()).await? }),
        QueueOp::Purge(which) => json!({ "purged": store.purge(which.clone()).await? }),
    })
}

/// `{"routes": [{route, pending, dead, done, oldest_pending_ms}]}`.
pub fn stats_json(stats: &[RouteStats]) -> Value {
    json!({ "routes": stats })
}

/// A dead delivery as `GET /dlq` lists it.
pub fn dead_summary(d: &Stored) -> Value {
    json!({
        "id": d.id,
        "route": d.delivery.route,
        "delivery_id": d
            .delivery
            .delivery_id
            .as_ref()
            .map(|b| String::from_utf8_lossy(b).into_owned()),
        "received_ms": d.received_ms,
        "attempts": d.attempts,
        "last_status": d.last_status,
        "last_error": d.last_error,
        "body_bytes": d.delivery.body.len(),
    })
}

/// A dead delivery in full, as `GET /dlq/{id}` shows it: the body is a string if it is
/// UTF-8, else `body_base64`.
pub fn dead_full(d: &Stored) -> Value {
    use base64::Engine;
    let mut v = dead_summary(d);
    let headers: Vec<String> = d
        .delivery
        .headers
        .split(|&b| b == b'\n')
        .map(|line| String::from_utf8_lossy(line.strip_suffix(b"\r").unwrap_or(line)).into_owned())
        .filter(|line| !line.is_empty())
        .collect();
    let m = v.as_object_mut().expect("an object");
    m.insert("query".into(), json!(d.delivery.query));
    m.insert("headers".into(), json!(headers));
    m.insert("request_id".into(), json!(d.delivery.request_id));
    m.insert("peer".into(), json!(d.delivery.peer));
    match std::str::from_utf8(&d.delivery.body) {
        Ok(text) => m.insert("body".into(), json!(text)),
        Err(_) => m.insert(
            "body_base64".into(),
            json!(base64::engine::general_purpose::STANDARD.encode(&d.delivery.body)),
        ),
    };
    v
}

/// Percent-encodes a query-string value (everything but unreserved characters).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes a query-string value (`+` is a space); `None` if it is not UTF-8 or has a
/// bad escape. The handshake probes' decoder (fuzzed).
pub use crate::handshake::percent_decode;

/// Answers one probe (`/healthz`, `/readyz`) or a 404.
pub fn respond(req: &Request<Incoming>, health: &Health) -> Response<Full<Bytes>> {
    probe(req.method(), req.uri().path(), health)
}

fn is_queue_path(path: &str) -> bool {
    path == "/dlq" || path.starts_with("/dlq/") || path == "/queue" || path.starts_with("/queue/")
}

/// Answers one admin request: a probe, or a queue endpoint.
pub async fn handle<B>(
    req: Request<B>,
    health: &Health,
    queue: Option<&QueueAdmin>,
) -> Response<Full<Bytes>>
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let path = req.uri().path().to_string();
    let get = matches!(*req.method(), Method::GET | Method::HEAD);
    if get && path == "/metrics" {
        return metrics(queue).await;
    }
    // Not ready while the store cannot answer a trivial read (disk gone, thread dead).
    if get && path == "/readyz" && health.is_ready() {
        if let Some(q) = queue {
            let read = tokio::time::timeout(std::time::Duration::from_secs(2), q.store.get(0));
            if !matches!(read.await, Ok(Ok(_))) {
                let mut resp = Response::new(Full::new(Bytes::from_static(b"store unavailable\n")));
                *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                return resp;
            }
        }
    }
    if !is_queue_path(&path) {
        return probe(req.method(), &path, health);
    }
    let Some(queue) = queue else {
        return json_response(
            StatusCode::NOT_FOUND,
            &json!({ "error": "no store configured" }),
        );
    };
    if !authorized(req.headers(), queue.token.as_deref()) {
        let mut resp = json_response(
            StatusCode::UNAUTHORIZED,
            &json!({ "error": "a valid `Authorization: Bearer <admin token>` is required" }),
        );
        resp.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer"),
        );
        return resp;
    }
    let result = match parse_op(req).await {
        Ok(op) => run_op(&queue.store, &op).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(v) => json_response(StatusCode::OK, &v),
        Err(e) => json_response(e.status, &json!({ "error": e.message })),
    }
}

/// `/metrics`: the Prometheus exposition, with the queue's gauges read now.
async fn metrics(queue: Option<&QueueAdmin>) -> Response<Full<Bytes>> {
    let m = crate::metrics::global();
    if let Some(q) = queue {
        if let Ok(stats) = q.store.stats().await {
            for r in stats {
                let route = std::sync::Arc::new(r.route);
                let labels = crate::metrics::RouteLabels { route };
                m.queue_pending.get_or_create(&labels).set(r.pending as i64);
                m.queue_dead.get_or_create(&labels).set(r.dead as i64);
            }
        }
    }
    let mut resp = Response::new(Full::new(Bytes::from(m.encode())));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
    );
    resp
}

/// The probes.
fn probe(method: &Method, path: &str, health: &Health) -> Response<Full<Bytes>> {
    let (status, body): (StatusCode, &'static [u8]) = match (method, path) {
        (&Method::GET | &Method::HEAD, "/healthz") => (StatusCode::OK, b"ok\n"),
        (&Method::GET | &Method::HEAD, "/readyz") if health.is_ready() => {
            (StatusCode::OK, b"ready\n")
        }
        (&Method::GET | &Method::HEAD, "/readyz") => {
            (StatusCode::SERVICE_UNAVAILABLE, b"not ready\n")
        }
        (_, "/healthz" | "/readyz") => (StatusCode::METHOD_NOT_ALLOWED, b"method_not_allowed\n"),
        _ => (StatusCode::NOT_FOUND, b"not_found\n"),
    };
    let mut resp = Response::new(Full::new(Bytes::from_static(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Whether the request carries the admin token (always, when there is none). The
/// comparison is of SHA-256 digests in constant time: neither the token's bytes nor its
/// length leak through timing.
fn authorized(headers: &http::HeaderMap, token: Option<&str>) -> bool {
    use sha2::{Digest, Sha256};
    use subtle::ConstantTimeEq;
    let Some(token) = token else {
        return true;
    };
    let Some(given) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
    else {
        return false;
    };
    let want = Sha256::digest(token.as_bytes());
    let got = Sha256::digest(given.as_bytes());
    bool::from(want.ct_eq(&got))
}

fn json_response(status: StatusCode, v: &Value) -> Response<Full<Bytes>> {
    let mut body = serde_json::to_vec(v).unwrap_or_else(|_| b"{}".to_vec());
    body.push(b'\n');
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    h.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    resp
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message)
}

fn method_not_allowed(allowed: &str) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method not allowed (use {allowed})"),
    )
}

/// What a refused `POST /dlq/replay` or `/dlq/purge` body is told.
const SELECT_SHAPE: &str = "the body must be {\"id\": N} or {\"all\": true, \"route\": \"R\", \"older_than_s\": S} (route and older_than_s optional)";

/// The body of `POST /dlq/replay` and `POST /dlq/purge`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SelectBody {
    id: Option<i64>,
    #[serde(default)]
    all: bool,
    route: Option<String>,
    /// With `all`: only deliveries dead for longer than this many seconds.
    older_than_s: Option<u64>,
}

/// Reads a queue request into an operation.
async fn parse_op<B>(req: Request<B>) -> Result<QueueOp, ApiError>
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    match path.as_str() {
        "/queue/stats" => match method {
            Method::GET => Ok(QueueOp::Stats),
            _ => Err(method_not_allowed("GET")),
        },
        "/dlq" => match method {
            Method::GET => list_query(req.uri().query().unwrap_or("")),
            _ => Err(method_not_allowed("GET")),
        },
        "/dlq/replay" | "/dlq/purge" => {
            if method != Method::POST {
                return Err(method_not_allowed("POST"));
            }
            let which = select_body(req.into_body()).await?;
            Ok(if path == "/dlq/replay" {
                QueueOp::Replay(which)
            } else {
                QueueOp::Purge(which)
            })
        }
        p => match p.strip_prefix("/dlq/") {
            Some(id) if !id.contains('/') => {
                if method != Method::GET {
                    return Err(method_not_allowed("GET"));
                }
                id.parse::<i64>()
                    .map(QueueOp::ShowDead)
                    .map_err(|_| bad_request(format!("{id:?} is not a delivery id")))
            }
            _ => Err(ApiError::new(StatusCode::NOT_FOUND, "not found")),
        },
    }
}

/// `route=R&limit=N`.
fn list_query(query: &str) -> Result<QueueOp, ApiError> {
    let mut route = None;
    let mut limit = DEFAULT_DLQ_LIMIT;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v).ok_or_else(|| bad_request(format!("bad query value {v:?}")))?;
        match k {
            "route" if !v.is_empty() => route = Some(v),
            "route" => {}
            "limit" => {
                limit = match v.parse::<usize>() {
                    Ok(n) if n >= 1 => n.min(MAX_DLQ_LIMIT),
                    _ => {
                        return Err(bad_request(format!(
                            "limit {v:?}: use a number from 1 to {MAX_DLQ_LIMIT}"
                        )))
                    }
                }
            }
            _ => {}
        }
    }
    Ok(QueueOp::ListDead { route, limit })
}

async fn select_body<B>(body: B) -> Result<Select, ApiError>
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is over {} KiB", MAX_ADMIN_BODY / 1024),
        )
    };
    if body
        .size_hint()
        .exact()
        .is_some_and(|n| n > MAX_ADMIN_BODY as u64)
    {
        return Err(too_large());
    }
    let collected = tokio::time::timeout(
        BODY_READ_TIMEOUT,
        Limited::new(body, MAX_ADMIN_BODY).collect(),
    )
    .await
    .map_err(|_| ApiError::new(StatusCode::REQUEST_TIMEOUT, "the body took too long"))?;
    let bytes = match collected {
        Ok(c) => c.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large()),
        Err(e) => return Err(bad_request(format!("cannot read the body: {e}"))),
    };
    let parsed: SelectBody =
        serde_json::from_slice(&bytes).map_err(|e| bad_request(format!("{SELECT_SHAPE}: {e}")))?;
    match parsed {
        SelectBody {
            id: Some(id),
            all: false,
            route: None,
            older_than_s: None,
        } => Ok(Select::One(id)),
        SelectBody {
            id: None,
            all: true,
            route,
            older_than_s,
        } => Ok(Select::All {
            route,
            older_than: older_than_s.map(std::time::Duration::from_secs),
        }),
        SelectBody {
            id: Some(_),
            all: true,
            ..
        } => Err(bad_request("give either `id` or `all`, not both")),
        SelectBody {
            id: Some(_),
            route: Some(_),
            ..
        } => Err(bad_request("`route` goes with `all`, not with `id`")),
        SelectBody {
            id: Some(_),
            older_than_s: Some(_),
            ..
        } => Err(bad_request("`older_than_s` goes with `all`, not with `id`")),
        SelectBody { .. } => Err(bad_request(SELECT_SHAPE)),
    }
}

/// Serves the probes until the task is aborted (no queue endpoints).
pub async fn serve(listener: TcpListener, health: Arc<Health>) {
    serve_with(listener, health, None).await
}

/// Serves the probes and, with a store, the queue's admin API, until the task is aborted.
pub async fn serve_with(listener: TcpListener, health: Arc<Health>, queue: Option<QueueAdmin>) {
    let queue = queue.map(Arc::new);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let health = health.clone();
        let queue = queue.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let health = health.clone();
                let queue = queue.clone();
                async move {
                    let resp = handle(req, &health, queue.as_deref()).await;
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{StoreSettings, Synchronous};
    use crate::store::{NewDelivery, Outcome};
    use std::time::Duration;

    struct Fixture {
        queue: QueueAdmin,
        dir: std::path::PathBuf,
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    async fn fixture(tag: &str, token: Option<&str>) -> Fixture {
        let dir = std::env::temp_dir().join(format!(
            "hookgate-admin-{tag}-{}-{}",
            std::process::id(),
            crate::store::now_ms()
        ));
        let settings = StoreSettings {
            path: dir.join("q.db"),
            synchronous: Synchronous::Normal,
            max_bytes: 1 << 30,
            max_deliveries: 1000,
            retain: Duration::from_secs(3600),
        };
        let store = Store::open(&settings).unwrap();
        Fixture {
            queue: QueueAdmin {
                store,
                token: token.map(String::from),
            },
            dir,
        }
    }

    fn delivery(route: &str, body: &[u8]) -> NewDelivery {
        NewDelivery {
            route: route.into(),
            delivery_id: Some(b"evt-1".to_vec()),
            query: Some("a=1".into()),
            headers: b"content-type: application/json\r\nx-one: 1\r\n".to_vec(),
            peer: "192.0.2.1".into(),
            peer_trusted: false,
            tls: false,
            original_host: None,
            request_id: "req-1".into(),
            body: Bytes::copy_from_slice(body),
        }
    }

    async fn dead(store: &Store, route: &str, body: &[u8]) -> i64 {
        let id = store.enqueue(delivery(route, body)).await.unwrap();
        store
            .record(
                id,
                Outcome::Dead {
                    status: Some(500),
                    error: "upstream 500".into(),
                },
            )
            .await
            .unwrap();
        id
    }

    fn req(method: &str, uri: &str, headers: &[(&str, &str)], body: &str) -> Request<Full<Bytes>> {
        let mut b = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Full::new(Bytes::from(body.to_string()))).unwrap()
    }

    async fn call(
        f: Option<&Fixture>,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (StatusCode, http::HeaderMap, Value) {
        let health = Health::default();
        let resp = handle(
            req(method, uri, headers, body),
            &health,
            f.map(|f| &f.queue),
        )
        .await;
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, headers, v)
    }

    const TOKEN: &str = "a-long-admin-token-123";
    const AUTH: (&str, &str) = ("authorization", "Bearer a-long-admin-token-123");

    #[tokio::test]
    async fn the_token_guards_queue_endpoints_but_not_probes() {
        let f = fixture("auth", Some(TOKEN)).await;
        for headers in [
            &[][..],
            &[("authorization", "Bearer wrong")][..],
            &[("authorization", "Bearer a-long-admin-token-1234")][..],
            &[("authorization", "Basic a-long-admin-token-123")][..],
            &[("authorization", "Bearer")][..],
        ] {
            let (status, h, v) = call(Some(&f), "GET", "/queue/stats", headers, "").await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{headers:?}");
            assert_eq!(h.get("www-authenticate").unwrap(), "Bearer");
            assert!(v["error"].is_string());
            assert!(!v.to_string().contains(TOKEN));
        }
        let (status, _, _) = call(Some(&f), "POST", "/dlq/purge", &[], r#"{"all":true}"#).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, h, v) = call(Some(&f), "GET", "/queue/stats", &[AUTH], "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(h.get("content-type").unwrap(), "application/json");
        assert_eq!(v, json!({ "routes": [] }));
        let (status, _, _) = call(
            Some(&f),
            "GET",
            "/queue/stats",
            &[("authorization", "bearer a-long-admin-token-123")],
            "",
        )
        .await;
        assert_eq!(status, StatusCode::OK, "the scheme is case-insensitive");
        let health = Health::default();
        let resp = handle(req("GET", "/healthz", &[], ""), &health, Some(&f.queue)).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let resp = handle(req("GET", "/readyz", &[], ""), &health, Some(&f.queue)).await;
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[tokio::test]
    async fn without_a_store_the_queue_paths_are_404() {
        for path in ["/queue/stats", "/dlq", "/dlq/1"] {
            let (status, _, v) = call(None, "GET", path, &[], "").await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
            assert_eq!(v, json!({ "error": "no store configured" }));
        }
        let health = Health::default();
        let resp = handle(req("GET", "/healthz", &[], ""), &health, None).await;
        assert_eq!(resp.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn stats_list_show_replay_and_purge() {
        let f = fixture("ops", None).await;
        let store = &f.queue.store;
        let a = dead(store, "a", b"{\"n\":1}").await;
        let b = dead(store, "b", b"\xff\x00binary").await;
        let c = dead(store, "a", b"three").await;
        let pending = store.enqueue(delivery("a", b"p")).await.unwrap();

        let (status, _, v) = call(Some(&f), "GET", "/queue/stats", &[], "").await;
        assert_eq!(status, StatusCode::OK);
        let routes = v["routes"].as_array().unwrap();
        assert_eq!(routes.len(), 2);
        assert_eq!(
            (
                &routes[0]["route"],
                &routes[0]["pending"],
                &routes[0]["dead"]
            ),
            (&json!("a"), &json!(1), &json!(2))
        );
        assert!(routes[0]["oldest_pending_ms"].is_i64());
        assert_eq!(routes[1]["oldest_pending_ms"], Value::Null);

        let (_, _, v) = call(Some(&f), "GET", "/dlq", &[], "").await;
        let ids: Vec<i64> = v["dead"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_i64().unwrap())
            .collect();
        assert_eq!(ids, vec![a, b, c]);
        assert_eq!(v["dead"][0]["delivery_id"], "evt-1");
        assert_eq!(v["dead"][0]["body_bytes"], 7);
        assert_eq!(v["dead"][0]["last_status"], 500);
        assert_eq!(v["dead"][0]["last_error"], "upstream 500");
        assert!(v["dead"][0].get("body").is_none());
        let (_, _, v) = call(Some(&f), "GET", "/dlq?route=a&limit=1", &[], "").await;
        assert_eq!(v["dead"].as_array().unwrap().len(), 1);
        assert_eq!(v["dead"][0]["id"], a);
        let (status, _, _) = call(Some(&f), "GET", "/dlq?limit=zero", &[], "").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);

        let (status, _, v) = call(Some(&f), "GET", &format!("/dlq/{a}"), &[], "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["body"], "{\"n\":1}");
        assert_eq!(
            v["headers"],
            json!(["content-type: application/json", "x-one: 1"])
        );
        assert_eq!(
            (&v["query"], &v["request_id"], &v["peer"]),
            (&json!("a=1"), &json!("req-1"), &json!("192.0.2.1"))
        );
        let (_, _, v) = call(Some(&f), "GET", &format!("/dlq/{b}"), &[], "").await;
        assert!(v.get("body").is_none());
        assert_eq!(v["body_base64"], "/wBiaW5hcnk=");
        for id in [pending, 9999] {
            let (status, _, v) = call(Some(&f), "GET", &format!("/dlq/{id}"), &[], "").await;
            assert_eq!(status, StatusCode::NOT_FOUND);
            assert_eq!(v, json!({ "error": format!("no dead delivery {id}") }));
        }

        let body = format!("{{\"id\": {a}}}");
        let (status, _, v) = call(Some(&f), "POST", "/dlq/replay", &[], &body).await;
        assert_eq!((status, v), (StatusCode::OK, json!({ "replayed": 1 })));
        assert_eq!(
            store.get(a).await.unwrap().unwrap().state,
            crate::store::State::Pending
        );
        let (_, _, v) = call(Some(&f), "POST", "/dlq/replay", &[], &body).await;
        assert_eq!(v, json!({ "replayed": 0 }), "no longer dead");
        let (_, _, v) = call(
            Some(&f),
            "POST",
            "/dlq/purge",
            &[],
            r#"{"all": true, "route": "b"}"#,
        )
        .await;
        assert_eq!(v, json!({ "purged": 1 }));
        // Dead only moments ago: an hour's age filter leaves it.
        let (_, _, v) = call(
            Some(&f),
            "POST",
            "/dlq/purge",
            &[],
            r#"{"all": true, "older_than_s": 3600}"#,
        )
        .await;
        assert_eq!(v, json!({ "purged": 0 }));
        assert!(store.get(c).await.unwrap().is_some());
        let (_, _, v) = call(Some(&f), "POST", "/dlq/purge", &[], r#"{"all": true}"#).await;
        assert_eq!(v, json!({ "purged": 1 }));
        assert!(store.get(c).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn bad_requests_are_refused_with_a_reason() {
        let f = fixture("bad", None).await;
        for body in [
            "",
            "not json",
            "{}",
            r#"{"all": false}"#,
            r#"{"id": 1, "all": true}"#,
            r#"{"id": 1, "route": "a"}"#,
            r#"{"id": 1, "older_than_s": 60}"#,
            r#"{"all": true, "older_than_s": -1}"#,
            r#"{"id": "1"}"#,
            r#"{"ids": [1]}"#,
        ] {
            let (status, _, v) = call(Some(&f), "POST", "/dlq/replay", &[], body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            assert!(v["error"].as_str().unwrap().len() > 5, "{body}");
        }
        let big = format!(r#"{{"all": true, "route": "{}"}}"#, "x".repeat(70_000));
        let (status, _, _) = call(Some(&f), "POST", "/dlq/purge", &[], &big).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        let (status, _, _) = call(Some(&f), "GET", "/dlq/replay", &[], "").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        let (status, _, _) = call(Some(&f), "DELETE", "/dlq/1", &[], "").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        let (status, _, _) = call(Some(&f), "GET", "/dlq/abc", &[], "").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, _, _) = call(Some(&f), "GET", "/queue/other", &[], "").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[test]
    fn query_values_round_trip() {
        for s in ["a", "a b&c=d/é%", ""] {
            assert_eq!(percent_decode(&percent_encode(s)).as_deref(), Some(s));
        }
        assert_eq!(percent_decode("a+b%2F").as_deref(), Some("a b/"));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%f"), None);
        assert_eq!(percent_decode("%+5"), None, "a sign is not a hex digit");
    }
}
