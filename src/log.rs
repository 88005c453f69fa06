//! Logging: `tracing` to stdout through a non-blocking writer (a slow terminal or log
//! pipe must not stall request handling), human or JSON, and the one access-log line per
//! request. Nothing here ever sees a secret or a signature.

use crate::pipeline::Reject;
use http::{HeaderValue, Method, StatusCode, Uri};
use std::net::IpAddr;
use std::time::Duration;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

/// Installs the global subscriber. Keep the guard alive: dropping it flushes the writer.
pub fn init(format: LogFormat, level: &str) -> tracing_appender::non_blocking::WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking(std::io::stdout());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_writer(writer)
        .with_env_filter(filter);
    match format {
        LogFormat::Human => builder.with_target(true).init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init(),
    }
    guard
}

/// What one request's access-log line says; filled in as the stages run.
pub struct AccessLog {
    pub route_index: Option<usize>,
    pub client_ip: IpAddr,
    pub method: Method,
    /// The request's URI (cloning it shares its bytes; only the path is logged).
    pub uri: Uri,
    pub outcome: &'static str,
    pub reason: &'static str,
    pub upstream_status: Option<StatusCode>,
    pub bytes: usize,
}

impl AccessLog {
    pub fn new(peer: IpAddr, method: Method, uri: Uri) -> Self {
        AccessLog {
            route_index: None,
            client_ip: crate::net::canonical(peer),
            method,
            uri,
            outcome: "accepted",
            reason: "-",
            upstream_status: None,
            bytes: 0,
        }
    }

    pub fn handshake(&mut self, kind: &'static str) {
        self.outcome = "handshake";
        self.reason = kind;
    }

    pub fn reject(&mut self, reject: Reject) {
        self.outcome = reject.outcome();
        self.reason = reject.reason();
    }

    pub fn emit(
        &self,
        route: Option<&str>,
        request_id: &HeaderValue,
        status: StatusCode,
        latency: Duration,
    ) {
        tracing::info!(
            target: "access",
            request_id = request_id.to_str().unwrap_or("-"),
            route = route.unwrap_or("-"),
            client_ip = %self.client_ip,
            method = %self.method,
            path = self.uri.path(),
            status = status.as_u16(),
            outcome = self.outcome,
            reason = self.reason,
            upstream_status = self.upstream_status.map(|s| s.as_u16()).unwrap_or(0),
            bytes = self.bytes,
            latency_ms = (latency.as_secs_f64() * 1e6).round() / 1e3,
        );
    }
}
