//! Delivery of queued webhooks: one dispatcher task per queued route takes the route's
//! oldest pending deliveries from the store, up to its `concurrency` at a time, waits
//! until each is due, forwards it through the route's upstream pool, and records the
//! outcome. With `concurrency: 1` (the default) deliveries go out strictly in arrival
//! order: the oldest pending one is retried until it is done or dead before the next
//! one goes.
//!
//! The retry policy is [`decide`], a pure function: 2xx is done; 5xx, a timeout, a
//! refused or broken connection, a TLS failure and the route's `retry_statuses` (408 and
//! 429 by default) are retried with exponential backoff and full jitter, never sooner
//! than the upstream's Retry-After (seconds or an HTTP-date); any other status fails at
//! once. A delivery that has used `max_attempts`, or whose next attempt would come after
//! `max_age`, is dead.
//!
//! Each forwarded request carries `X-Hookgate-Delivery-Id` (the store's instance id and
//! the row id) and `X-Hookgate-Attempt`, since delivery is at least once.

use crate::answer::Answer;
use crate::config::RetrySpec;
use crate::fields::Fields;
use crate::forward::{self, ForwardInfo};
use crate::listener::Shared;
use crate::pipeline::Reject;
use crate::server::Gateway;
use crate::store::{now_ms, Outcome, Store, Stored};
use crate::trace::{TraceParent, TRACEPARENT};
use http::header::{HeaderName, HeaderValue};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// How often the dispatchers are matched to the config's queued routes, and the longest
/// a dispatcher sleeps without looking at the store.
const RECHECK: Duration = Duration::from_secs(1);
/// How often delivered rows older than `store.retain` are deleted.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// What an attempt got from the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    Answered {
        status: u16,
        retry_after: Option<Duration>,
    },
    Failed(Reject),
}

/// The outcome of attempt number `attempts_before + 1` of a delivery received at
/// `received_ms`, at `now_ms`; `jitter` in [0, 1) scales the backoff (full jitter).
pub fn decide(
    spec: &RetrySpec,
    attempts_before: u32,
    received_ms: i64,
    now_ms: i64,
    attempt: Attempt,
    jitter: f64,
) -> Outcome {
    let (status, retry_after, error) = match attempt {
        Attempt::Answered { status, .. } if (200..300).contains(&status) => {
            return Outcome::Done { status };
        }
        Attempt::Answered {
            status,
            retry_after,
        } => {
            let error = format!("upstream answered {status}");
            let retryable = status >= 500
                || !(400..500).contains(&status)
                || spec.retry_statuses.contains(&status);
            if !retryable {
                return Outcome::Dead {
                    status: Some(status),
                    error,
                };
            }
            (Some(status), retry_after, error)
        }
        Attempt::Failed(reject) => (None, None, reject.reason().to_string()),
    };
    let attempts = attempts_before.saturating_add(1);
    if attempts >= spec.max_attempts {
        return Outcome::Dead {
            status,
            error: format!("{error}; gave up after {attempts} attempts"),
        };
    }
    let ceiling = spec
        .backoff
        .saturating_mul(1u32.checked_shl(attempts - 1).unwrap_or(u32::MAX))
        .min(spec.max_backoff);
    let mut delay = ceiling.mul_f64(jitter.clamp(0.0, 1.0));
    if let Some(after) = retry_after {
        delay = delay.max(after);
    }
    let at_ms = now_ms.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
    if at_ms.saturating_sub(received_ms) > spec.max_age.as_millis() as i64 {
        return Outcome::Dead {
            status,
            error: format!("{error}; max_age reached"),
        };
    }
    Outcome::Retry {
        at_ms,
        status,
        error,
    }
}

/// An answer's Retry-After (RFC 9110 §10.2.3): seconds, or an HTTP-date (a date
/// already past means no wait). Anything else is ignored.
pub fn retry_after(answer: &Answer) -> Option<Duration> {
    retry_after_at(answer, crate::h1::codec::date::now_secs())
}

fn retry_after_at(answer: &Answer, now_secs: u64) -> Option<Duration> {
    let v = std::str::from_utf8(answer.get("retry-after")?).ok()?.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(v.parse().unwrap_or(u64::MAX)));
    }
    let at = crate::h1::codec::date::parse(v, now_secs)?;
    Some(Duration::from_secs(at.saturating_sub(now_secs)))
}

/// The header block stored with a delivery: `name: value\r\n` per field, with this
/// hop's `traceparent` in place of the sender's.
pub fn encode_headers(headers: &Fields, trace: &TraceParent) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    let ours = [(TRACEPARENT.as_bytes(), trace.as_str().as_bytes())];
    let sent = headers
        .iter()
        .filter(|(k, _)| *k != TRACEPARENT.as_bytes())
        .map(|(k, v)| (k, v.as_bytes()));
    for (k, v) in sent.chain(ours) {
        out.extend_from_slice(k);
        out.extend_from_slice(b": ");
        out.extend_from_slice(v);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The inverse of [`encode_headers`]; a field that does not parse is left out.
pub fn decode_headers(block: &[u8]) -> Fields {
    let fields = block.split(|&b| b == b'\n').filter_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.windows(2).position(|w| w == b": ")?;
        let (k, v) = (&line[..colon], &line[colon + 2..]);
        match (HeaderName::from_bytes(k), HeaderValue::from_bytes(v)) {
            (Ok(_), Ok(_)) => Some((std::str::from_utf8(k).ok()?, v)),
            _ => None,
        }
    });
    Fields::from_pairs(fields)
}

/// The queue's runtime: the store, and a wake-up per route for new deliveries.
pub struct Queue {
    pub store: Store,
    wakers: Mutex<HashMap<String, Arc<Notify>>>,
}

impl Queue {
    pub fn new(store: Store) -> Arc<Queue> {
        Arc::new(Queue {
            store,
            wakers: Mutex::new(HashMap::new()),
        })
    }

    fn waker(&self, route: &str) -> Arc<Notify> {
        let mut w = self.wakers.lock().unwrap_or_else(|p| p.into_inner());
        w.entry(route.to_string()).or_default().clone()
    }

    /// A delivery for `route` was committed.
    pub fn notify(&self, route: &str) {
        self.waker(route).notify_one();
    }

    /// The id sent upstream for row `id`.
    pub fn delivery_id(&self, id: i64) -> String {
        format!("{}-{id}", self.store.instance)
    }

    /// Runs the dispatchers (one per queued route of the current config, started as
    /// routes appear) and the retention sweeper, until the task is aborted.
    pub async fn run(self: Arc<Self>, shared: Arc<Shared>, retain: Duration) {
        let mut tasks = tokio::task::JoinSet::new();
        let mut started: HashSet<String> = HashSet::new();
        let mut tick = tokio::time::interval(RECHECK);
        let mut last_sweep = tokio::time::Instant::now();
        loop {
            tick.tick().await;
            for name in shared.current().gateway.queued_routes() {
                if started.insert(name.clone()) {
                    tasks.spawn(dispatch(self.clone(), shared.clone(), name));
                }
            }
            if last_sweep.elapsed() >= SWEEP_INTERVAL {
                last_sweep = tokio::time::Instant::now();
                let before = now_ms().saturating_sub(retain.as_millis() as i64);
                match self.store.sweep(before).await {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::debug!(deleted = n, "delivered rows past store.retain deleted")
                    }
                    Err(e) => tracing::warn!(error = %e, "store retention sweep failed"),
                }
            }
        }
    }
}

/// Rows fetched ahead per unit of concurrency: one store read serves several deliveries.
const PREFETCH: usize = 4;

/// Delivers one route's queue, forever. Pending rows are read ahead, oldest first, into
/// `ready`; attempts start from its front. With concurrency 1 the front row is waited for
/// even when later ones are due, which keeps arrival order.
async fn dispatch(queue: Arc<Queue>, shared: Arc<Shared>, route: String) {
    let wake = queue.waker(&route);
    let mut in_flight: HashSet<i64> = HashSet::new();
    let mut ready: std::collections::VecDeque<Stored> = std::collections::VecDeque::new();
    let mut running = tokio::task::JoinSet::new();
    let mut rng = Jitter::new();
    let mut refill = true;
    loop {
        let gateway = shared.current().gateway.clone();
        let mut next_due: Option<i64> = None;
        match gateway.queued_route(&route) {
            // The route is gone or no longer queued: its rows wait in the store.
            None => ready.clear(),
            Some(idx) => {
                let concurrency = gateway.route(idx).concurrency;
                if refill && in_flight.len() < concurrency {
                    let exclude: Vec<i64> = in_flight.iter().copied().collect();
                    match queue
                        .store
                        .oldest(&route, concurrency * PREFETCH, exclude)
                        .await
                    {
                        Ok(rows) => ready = rows.into(),
                        Err(e) => {
                            tracing::error!(route = %route, error = %e, "cannot read the queue");
                        }
                    }
                }
                let now = now_ms();
                let mut i = 0;
                while in_flight.len() < concurrency && i < ready.len() {
                    if ready[i].next_attempt_ms > now {
                        let due = ready[i].next_attempt_ms;
                        next_due = Some(next_due.map_or(due, |d: i64| d.min(due)));
                        if concurrency == 1 {
                            break;
                        }
                        i += 1;
                        continue;
                    }
                    let Some(row) = ready.remove(i) else { break };
                    in_flight.insert(row.id);
                    let (q, gw, jitter) = (queue.clone(), gateway.clone(), rng.next());
                    running.spawn(async move {
                        let id = row.id;
                        (id, attempt(&q, &gw, idx, row, jitter).await)
                    });
                }
            }
        }
        let sleep = match next_due {
            Some(due) => {
                Duration::from_millis(due.saturating_sub(now_ms()).max(0) as u64).min(RECHECK)
            }
            None => RECHECK,
        };
        // Read the store again when the read-ahead is used up, when new deliveries
        // arrive, or after a while (retries that came due, replays).
        refill = tokio::select! {
            Some(done) = running.join_next() => match done {
                // A delivery still pending (to be retried) goes back in line: read again,
                // so that with concurrency 1 it keeps its place at the front.
                Ok((id, pending)) => {
                    in_flight.remove(&id);
                    pending || ready.is_empty()
                }
                Err(_) => true,
            },
            _ = wake.notified() => ready.is_empty(),
            _ = tokio::time::sleep(sleep) => true,
        };
    }
}

/// A stored delivery's request id as its upstream head carries it. The gateway stored a
/// token, but the store is a file: a value that could end the header line (edited by
/// hand, a damaged row) goes out as `-`.
fn stored_request_id(id: &str) -> &[u8] {
    match id.as_bytes() {
        v if crate::answer::valid_value(v) => v,
        _ => b"-",
    }
}

/// One attempt at a stored delivery, and its outcome recorded. Returns whether the
/// delivery is still pending.
async fn attempt(queue: &Queue, gateway: &Gateway, idx: usize, row: Stored, jitter: f64) -> bool {
    let state = gateway.route_state(idx);
    let route = &state.route;
    let d = &row.delivery;
    let headers = decode_headers(&d.headers);
    let path = forward::upstream_path(&route.upstream, d.query.as_deref());
    let delivery_id = queue.delivery_id(row.id);
    let number = row.attempts + 1;
    let info = ForwardInfo {
        peer: &d.peer,
        peer_trusted: d.peer_trusted,
        proto: if d.tls { "https" } else { "http" },
        original_host: d.original_host.as_deref(),
        request_id: stored_request_id(&d.request_id),
        route: &state.name_header,
        verified: &route.verifier.header_value,
        upstream_host: &route.upstream.host_header,
        body_len: d.body.len(),
        traceparent: None,
    };
    let head = |out: &mut Vec<u8>| {
        forward::write_upstream_head(out, &http::Method::POST, &path, &headers, &info);
        // Before the blank line that ends the head.
        out.truncate(out.len() - 2);
        for (name, value) in [
            ("x-hookgate-delivery-id: ", delivery_id.as_str()),
            ("x-hookgate-attempt: ", &number.to_string()),
        ] {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
    };
    let result = crate::upstream::send(
        &state.pool,
        head,
        &d.body,
        route.upstream_timeout,
        std::time::Instant::now(),
    )
    .await;
    let got = match &result {
        Ok(resp) => Attempt::Answered {
            status: resp.status.as_u16(),
            retry_after: retry_after(resp),
        },
        Err(reject) => Attempt::Failed(*reject),
    };
    let outcome = decide(
        &route.retry,
        row.attempts,
        row.received_ms,
        now_ms(),
        got,
        jitter,
    );
    let metrics = crate::metrics::global();
    state.metrics.upstream(match got {
        Attempt::Answered { status, .. } => Ok(status),
        Attempt::Failed(r) => Err(r),
    });
    let result = match &outcome {
        Outcome::Done { .. } => "done",
        Outcome::Retry { .. } => "retry",
        Outcome::Dead { .. } => "dead",
    };
    metrics
        .queue_attempts
        .get_or_create(&crate::metrics::AttemptLabels {
            route: state.metrics.name.clone(),
            result,
        })
        .inc();
    match &outcome {
        Outcome::Done { status } => {
            tracing::info!(target: "access", route = %route.name, delivery_id = %delivery_id, attempt = number, status, outcome = "delivered", "queued delivery delivered")
        }
        Outcome::Retry { at_ms, error, .. } => {
            tracing::warn!(route = %route.name, delivery_id = %delivery_id, attempt = number, error = %error, retry_in_ms = at_ms - now_ms(), "queued delivery failed; will retry")
        }
        Outcome::Dead { error, .. } => {
            tracing::error!(route = %route.name, delivery_id = %delivery_id, attempt = number, error = %error, "queued delivery failed for good; moved to the dead-letter list")
        }
    }
    let pending = matches!(outcome, Outcome::Retry { .. });
    if let Err(e) = queue.store.record(row.id, outcome).await {
        // The row stays pending and is attempted again: at least once.
        tracing::error!(delivery_id = %delivery_id, error = %e, "cannot record a delivery attempt");
        return true;
    }
    pending
}

/// A small xorshift generator for backoff jitter (not for anything secret).
struct Jitter(u64);

impl Jitter {
    fn new() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(now_ms() as u64);
        Jitter(h.finish() | 1)
    }

    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_stored_request_id_never_splits_the_upstream_head() {
        use super::stored_request_id;
        assert_eq!(
            stored_request_id("5e8b2a1c-000000000001"),
            b"5e8b2a1c-000000000001"
        );
        for bad in ["a\r\nx-injected: 1", "nul\0", "lf\n"] {
            assert_eq!(stored_request_id(bad), b"-", "{bad:?}");
        }
    }

    use super::*;

    fn spec() -> RetrySpec {
        RetrySpec {
            max_attempts: 5,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
            max_age: Duration::from_secs(3600),
            retry_statuses: vec![408, 429],
        }
    }

    fn answered(status: u16) -> Attempt {
        Attempt::Answered {
            status,
            retry_after: None,
        }
    }

    #[test]
    fn statuses_decide_done_retry_or_dead() {
        let s = spec();
        assert_eq!(
            decide(&s, 0, 0, 0, answered(204), 0.5),
            Outcome::Done { status: 204 }
        );
        for retried in [500, 502, 503, 408, 429] {
            assert!(
                matches!(
                    decide(&s, 0, 0, 0, answered(retried), 0.5),
                    Outcome::Retry { .. }
                ),
                "{retried}"
            );
        }
        for dead in [400, 401, 404, 410, 422] {
            assert!(
                matches!(
                    decide(&s, 0, 0, 0, answered(dead), 0.5),
                    Outcome::Dead {
                        status: Some(_),
                        ..
                    }
                ),
                "{dead}"
            );
        }
        for failure in [
            Reject::UpstreamUnreachable,
            Reject::UpstreamTimeout,
            Reject::UpstreamBroken,
            Reject::UpstreamTls,
        ] {
            assert!(matches!(
                decide(&s, 0, 0, 0, Attempt::Failed(failure), 0.5),
                Outcome::Retry { status: None, .. }
            ));
        }
    }

    #[test]
    fn backoff_doubles_up_to_its_ceiling_with_full_jitter() {
        let s = spec();
        let at =
            |attempts: u32, jitter: f64| match decide(&s, attempts, 0, 0, answered(503), jitter) {
                Outcome::Retry { at_ms, .. } => at_ms,
                other => panic!("{other:?}"),
            };
        // Just under 1: the ceilings 1 s, 2 s, 4 s, 8 s, then 10 s (max_backoff).
        assert_eq!(
            [at(0, 0.999), at(1, 0.999), at(2, 0.999), at(3, 0.999)],
            [999, 1998, 3996, 7992]
        );
        assert_eq!(at(0, 0.0), 0);
        assert_eq!(at(0, 0.5), 500);
        let s = RetrySpec {
            max_attempts: 100,
            ..spec()
        };
        let far = match decide(&s, 40, 0, 0, answered(503), 0.999) {
            Outcome::Retry { at_ms, .. } => at_ms,
            other => panic!("{other:?}"),
        };
        assert_eq!(far, 9990, "no overflow at high attempt counts");
    }

    #[test]
    fn attempts_age_and_retry_after_bound_the_retries() {
        let s = spec();
        // The fifth attempt failing is the last.
        assert!(matches!(
            decide(&s, 4, 0, 0, answered(503), 0.5),
            Outcome::Dead { .. }
        ));
        // Retry-After wins over a shorter backoff.
        let ra = Attempt::Answered {
            status: 429,
            retry_after: Some(Duration::from_secs(30)),
        };
        assert!(matches!(
            decide(&s, 0, 0, 1000, ra, 0.5),
            Outcome::Retry { at_ms: 31_000, .. }
        ));
        // A Retry-After too large for the clock saturates: dead for max_age, not wrapped
        // into the past.
        let huge = Attempt::Answered {
            status: 503,
            retry_after: Some(Duration::from_secs(u64::MAX)),
        };
        assert!(matches!(
            decide(&s, 0, 0, 1000, huge, 0.5),
            Outcome::Dead { .. }
        ));
        // A retry that would land after max_age is dead instead.
        let old = 1000 - 3_600_000;
        assert!(matches!(
            decide(&s, 0, old, 1000, answered(503), 0.9),
            Outcome::Dead { .. }
        ));
    }

    #[test]
    fn headers_round_trip_through_their_stored_form() {
        let mut h = http::HeaderMap::new();
        h.append("content-type", HeaderValue::from_static("application/json"));
        h.append("x-multi", HeaderValue::from_static("a"));
        h.append("x-multi", HeaderValue::from_static("b: c"));
        h.append("x-bin", HeaderValue::from_bytes(b"\xfe\xff").unwrap());
        let trace = TraceParent::next_hop(None);
        let sent = crate::fields::Fields::from(&h);
        let back = decode_headers(&encode_headers(&sent, &trace));
        let pairs = |f: &crate::fields::Fields| -> Vec<(String, Vec<u8>)> {
            f.iter()
                .map(|(k, v)| {
                    (
                        String::from_utf8_lossy(k).into_owned(),
                        v.as_bytes().to_vec(),
                    )
                })
                .collect()
        };
        let mut want = pairs(&sent);
        want.push(("traceparent".into(), trace.as_str().as_bytes().to_vec()));
        assert_eq!(pairs(&back), want);
        // The sender's traceparent is replaced by this hop's, not kept beside it.
        h.append(TRACEPARENT, HeaderValue::from_static("00-sender"));
        let back = decode_headers(&encode_headers(&crate::fields::Fields::from(&h), &trace));
        let traces: Vec<&[u8]> = back.get_all(TRACEPARENT).map(|v| v.as_bytes()).collect();
        assert_eq!(traces, [trace.as_str().as_bytes()]);
        let mut ra = Answer::new(http::StatusCode::SERVICE_UNAVAILABLE, bytes::Bytes::new());
        ra.push("retry-after", b" 7 ");
        assert_eq!(retry_after(&ra), Some(Duration::from_secs(7)));
        // An HTTP-date: the wait is until then, none for a date already past.
        let now = 1_445_412_400; // Wed, 21 Oct 2015 07:26:40 GMT
        ra.set("retry-after", b"Wed, 21 Oct 2015 07:28:00 GMT");
        assert_eq!(retry_after_at(&ra, now), Some(Duration::from_secs(80)));
        assert_eq!(retry_after(&ra), Some(Duration::ZERO));
        ra.set("retry-after", b"soon");
        assert_eq!(retry_after(&ra), None);
        ra.set("retry-after", b"-5");
        assert_eq!(retry_after(&ra), None);
    }

    #[test]
    fn jitter_stays_in_range() {
        let mut j = Jitter::new();
        for _ in 0..10_000 {
            let x = j.next();
            assert!((0.0..1.0).contains(&x));
        }
    }
}
