//! Prometheus metrics (`prometheus-client`), served by the admin listener at `/metrics`.
//! One process-wide set. Labels stay bounded: route names come from the config, reasons
//! and outcomes from closed enums, status classes are `2xx`..`5xx`; never a client
//! address or a delivery id.

use crate::sharded::{ShardedHistogram, ShardedU64};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// A counter the request path adds to: one shard per thread (see `sharded`).
pub type HotCounter = Counter<u64, ShardedU64>;

/// A route name as a label value, shared rather than copied per request.
pub type RouteName = Arc<String>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: RouteName,
    pub outcome: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: RouteName,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    pub route: RouteName,
    pub class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamErrorLabels {
    pub route: RouteName,
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptLabels {
    pub route: RouteName,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: &'static str,
}

/// Adds one to `family`'s series for `reason`.
pub fn count(family: &Family<ReasonLabels, Counter>, reason: &'static str) {
    family.get_or_create(&ReasonLabels { reason }).inc();
}

/// A connection the gateway ended (or began to wind down) on one of its own deadlines:
/// `reason` is `idle_timeout`, `header_timeout` or `max_connection_age`.
pub fn connection_closed(reason: &'static str) {
    count(&global().connections_closed, reason);
}

/// Every metric hookgate exports.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, HotCounter>,
    pub latency: Family<RouteLabels, ShardedHistogram>,
    pub upstream_responses: Family<UpstreamLabels, HotCounter>,
    pub upstream_errors: Family<UpstreamErrorLabels, Counter>,
    pub dedup_hits: Family<RouteLabels, Counter>,
    pub queue_pending: Family<RouteLabels, Gauge>,
    pub queue_dead: Family<RouteLabels, Gauge>,
    pub queue_attempts: Family<AttemptLabels, Counter>,
    pub tls_handshake_failures: Counter,
    pub reloads: Family<ResultLabels, Counter>,
    pub connections_open: Gauge,
    pub connections_refused: Family<ReasonLabels, Counter>,
    pub connections_closed: Family<ReasonLabels, Counter>,
    pub access_log_dropped: Counter,
}

/// Latency buckets: webhooks are answered in milliseconds unless the upstream is slow.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("hookgate");
        let m = Metrics {
            requests: Family::default(),
            latency: Family::new_with_constructor(|| ShardedHistogram::new(&LATENCY_BUCKETS)),
            upstream_responses: Family::default(),
            upstream_errors: Family::default(),
            dedup_hits: Family::default(),
            queue_pending: Family::default(),
            queue_dead: Family::default(),
            queue_attempts: Family::default(),
            tls_handshake_failures: Counter::default(),
            reloads: Family::default(),
            connections_open: Gauge::default(),
            connections_refused: Family::default(),
            connections_closed: Family::default(),
            access_log_dropped: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "requests",
            "Requests on the public listener by route, outcome (accepted, queued, rejected, duplicate, handshake, upstream_failed, store_failed) and reason",
            m.requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from request head to answer, by route",
            m.latency.clone(),
        );
        registry.register(
            "upstream_responses",
            "Upstream answers by route and status class (sync forwards and queued attempts)",
            m.upstream_responses.clone(),
        );
        registry.register(
            "upstream_errors",
            "Upstream failures by route and kind (unreachable, broken, timeout, tls)",
            m.upstream_errors.clone(),
        );
        registry.register(
            "dedup_hits",
            "Deliveries answered as duplicates (already accepted or in flight), by route",
            m.dedup_hits.clone(),
        );
        registry.register(
            "queue_pending",
            "Queued deliveries not yet delivered, by route (read at scrape time)",
            m.queue_pending.clone(),
        );
        registry.register(
            "queue_dead_letters",
            "Queued deliveries given up (the dead-letter list), by route (read at scrape time)",
            m.queue_dead.clone(),
        );
        registry.register(
            "queue_attempts",
            "Queued delivery attempts by route and result (done, retry, dead)",
            m.queue_attempts.clone(),
        );
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes on the public listener that failed or timed out",
            m.tls_handshake_failures.clone(),
        );
        registry.register(
            "config_reloads",
            "Config reloads by result (ok, failed)",
            m.reloads.clone(),
        );
        registry.register(
            "connections_open",
            "Connections open on the public listener",
            m.connections_open.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections closed at accept, by reason (max_connections, max_connections_per_ip)",
            m.connections_refused.clone(),
        );
        registry.register(
            "connections_closed",
            "Connections the gateway closed or wound down on its own deadline, by reason (idle_timeout, header_timeout, max_connection_age)",
            m.connections_closed.clone(),
        );
        registry.register(
            "access_log_dropped",
            "Rejection log lines dropped by the log rate limit",
            m.access_log_dropped.clone(),
        );
        let build: Family<BuildLabels, Gauge> = Family::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("build_info", "The running build (always 1)", build);
        Metrics { registry, ..m }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// One answered request.
    pub fn request(
        &self,
        route: &RouteName,
        outcome: &'static str,
        reason: &'static str,
        took: Duration,
    ) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.clone(),
                outcome,
                reason,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                route: route.clone(),
            })
            .observe(took);
    }

    /// An upstream's answer (by status class) or failure.
    pub fn upstream(&self, route: &RouteName, result: Result<u16, crate::pipeline::Reject>) {
        use crate::pipeline::Reject;
        match result {
            Ok(status) => {
                let class = match status {
                    100..=199 => "1xx",
                    200..=299 => "2xx",
                    300..=399 => "3xx",
                    400..=499 => "4xx",
                    _ => "5xx",
                };
                self.upstream_responses
                    .get_or_create(&UpstreamLabels {
                        route: route.clone(),
                        class,
                    })
                    .inc();
            }
            Err(reject) => {
                let kind = match reject {
                    Reject::UpstreamUnreachable => "unreachable",
                    Reject::UpstreamTimeout => "timeout",
                    Reject::UpstreamTls => "tls",
                    _ => "broken",
                };
                self.upstream_errors
                    .get_or_create(&UpstreamErrorLabels {
                        route: route.clone(),
                        kind,
                    })
                    .inc();
            }
        }
    }
}

/// One route's handles for the series every accepted request touches, looked up once
/// when the route is built so that the request path is an atomic add and a histogram
/// observation, not label hashing and map lookups.
#[derive(Clone)]
pub struct RouteMetrics {
    pub name: RouteName,
    accepted: HotCounter,
    queued: HotCounter,
    signature_mismatch: HotCounter,
    latency: ShardedHistogram,
    upstream_2xx: HotCounter,
}

impl RouteMetrics {
    pub fn new(route: &str) -> RouteMetrics {
        let m = global();
        let name: RouteName = Arc::new(route.to_string());
        let req = |outcome, reason| {
            m.requests
                .get_or_create(&RequestLabels {
                    route: name.clone(),
                    outcome,
                    reason,
                })
                .clone()
        };
        RouteMetrics {
            accepted: req("accepted", "-"),
            queued: req("queued", "-"),
            signature_mismatch: req("rejected", "signature_mismatch"),
            latency: m
                .latency
                .get_or_create(&RouteLabels {
                    route: name.clone(),
                })
                .clone(),
            upstream_2xx: m
                .upstream_responses
                .get_or_create(&UpstreamLabels {
                    route: name.clone(),
                    class: "2xx",
                })
                .clone(),
            name,
        }
    }

    /// One answered request of this route.
    pub fn request(&self, outcome: &'static str, reason: &'static str, took: Duration) {
        match (outcome, reason) {
            ("accepted", "-") => self.accepted.inc(),
            ("queued", "-") => self.queued.inc(),
            ("rejected", "signature_mismatch") => self.signature_mismatch.inc(),
            _ => global()
                .requests
                .get_or_create(&RequestLabels {
                    route: self.name.clone(),
                    outcome,
                    reason,
                })
                .inc(),
        };
        if outcome == "duplicate" || reason == "duplicate_in_flight" {
            global()
                .dedup_hits
                .get_or_create(&RouteLabels {
                    route: self.name.clone(),
                })
                .inc();
        }
        self.latency.observe(took);
    }

    /// An upstream's answer or failure for this route.
    pub fn upstream(&self, result: Result<u16, crate::pipeline::Reject>) {
        match result {
            Ok(200..=299) => {
                self.upstream_2xx.inc();
            }
            other => global().upstream(&self.name, other),
        }
    }
}

/// The process's metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// The label for requests that matched no route.
pub fn no_route() -> RouteName {
    static NONE: OnceLock<RouteName> = OnceLock::new();
    NONE.get_or_init(|| Arc::new(String::new())).clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_has_every_family_with_bounded_labels() {
        let m = Metrics::new();
        let route = Arc::new("expel".to_string());
        m.request(&route, "accepted", "-", Duration::from_millis(3));
        m.request(
            &route,
            "rejected",
            "signature_mismatch",
            Duration::from_micros(300),
        );
        m.upstream(&route, Ok(204));
        m.upstream(&route, Err(crate::pipeline::Reject::UpstreamTimeout));
        let text = m.encode();
        for want in [
            "hookgate_requests_total{route=\"expel\",outcome=\"accepted\",reason=\"-\"} 1",
            "hookgate_requests_total{route=\"expel\",outcome=\"rejected\",reason=\"signature_mismatch\"} 1",
            "hookgate_request_duration_seconds_count{route=\"expel\"} 2",
            "hookgate_request_duration_seconds_sum{route=\"expel\"} 0.0033",
            "hookgate_request_duration_seconds_bucket{le=\"0.0005\",route=\"expel\"} 1",
            "hookgate_request_duration_seconds_bucket{le=\"0.005\",route=\"expel\"} 2",
            "hookgate_request_duration_seconds_bucket{le=\"+Inf\",route=\"expel\"} 2",
            "hookgate_upstream_responses_total{route=\"expel\",class=\"2xx\"} 1",
            "hookgate_upstream_errors_total{route=\"expel\",kind=\"timeout\"} 1",
            "hookgate_build_info{version=\"",
            "# TYPE hookgate_tls_handshake_failures counter",
            "# TYPE hookgate_connections_open gauge",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }
}
