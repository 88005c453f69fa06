//! Logging: `tracing` to stdout through a non-blocking writer (a slow terminal or log
//! pipe must not stall request handling), human or JSON, and the one access-log line per
//! request. Nothing here ever sees a secret or a signature.

use crate::pipeline::Reject;
use http::{Method, StatusCode, Uri};
use std::net::IpAddr;
use std::time::Duration;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

/// Installs the global subscriber. Keep the guard alive: dropping it flushes the writer.
pub fn init(format: LogFormat, level: &str) -> LogGuard {
    let writer = LazyStdout::default();
    let guard = LogGuard(writer.clone());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    // Colour only for a terminal that has not asked for none (no-color.org): a file, a
    // pipe or a log collector gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout())
        && !std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_writer(writer)
        .with_ansi(ansi)
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

/// Stdout through `tracing_appender`'s non-blocking writer, whose thread starts with the
/// first line there is to write. A gateway whose level lets no line through (`--log-level
/// warn` and nothing wrong) then runs one thread per worker and no other: with one worker
/// the process stays single-threaded, and glibc skips the thread-cancellation bookkeeping
/// it otherwise wraps around every `send` and `recv` (1.6% of a saturated core, measured
/// in bench/README.md).
#[derive(Clone, Default)]
pub struct LazyStdout(std::sync::Arc<LazyInner>);

#[derive(Default)]
struct LazyInner {
    writer: std::sync::OnceLock<tracing_appender::non_blocking::NonBlocking>,
    guard: std::sync::Mutex<Option<tracing_appender::non_blocking::WorkerGuard>>,
}

impl LazyStdout {
    fn writer(&self) -> &tracing_appender::non_blocking::NonBlocking {
        self.0.writer.get_or_init(|| {
            let (writer, guard) = tracing_appender::non_blocking(std::io::stdout());
            *self.0.guard.lock().unwrap_or_else(|e| e.into_inner()) = Some(guard);
            writer
        })
    }

    /// The writer thread's guard, if the thread was started; dropping it flushes.
    fn take_guard(&self) -> Option<tracing_appender::non_blocking::WorkerGuard> {
        self.0
            .guard
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LazyStdout {
    type Writer = tracing_appender::non_blocking::NonBlocking;

    fn make_writer(&'a self) -> Self::Writer {
        self.writer().clone()
    }
}

/// Flushes the log writer when dropped (if it ever started): the lines written so far
/// reach stdout before the process exits.
pub struct LogGuard(LazyStdout);

impl Drop for LogGuard {
    fn drop(&mut self) {
        drop(self.0.take_guard());
    }
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
    /// The trace context: the one sent upstream (W3C `traceparent`) for a delivery that
    /// went on, else the sender's, if any.
    pub traceparent: Option<crate::trace::TraceParent>,
    /// The head could not be parsed: method and path are logged as `-`.
    pub unparsed: bool,
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
            traceparent: None,
            unparsed: false,
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
        request_id: &str,
        status: StatusCode,
        latency: Duration,
    ) {
        // Nothing below is worth doing when access lines are filtered out.
        if !tracing::enabled!(target: "access", tracing::Level::INFO) {
            return;
        }
        // Under a flood of bad requests the rejection lines are rate limited; the next
        // line that gets through says how many were dropped.
        let dropped = if self.outcome == "rejected" {
            match REJECT_LINES.admit() {
                Some(d) => d,
                None => {
                    crate::metrics::global().access_log_dropped.inc();
                    return;
                }
            }
        } else {
            0
        };
        let trace = self
            .traceparent
            .as_ref()
            .map(crate::trace::TraceParent::trace_id)
            .unwrap_or("-");
        tracing::info!(
            target: "access",
            request_id,
            route = route.unwrap_or("-"),
            client_ip = %self.client_ip,
            method = if self.unparsed { "-" } else { self.method.as_str() },
            path = if self.unparsed { "-" } else { self.uri.path() },
            status = status.as_u16(),
            outcome = self.outcome,
            reason = self.reason,
            upstream_status = self.upstream_status.map(|s| s.as_u16()).unwrap_or(0),
            bytes = self.bytes,
            latency_ms = (latency.as_secs_f64() * 1e6).round() / 1e3,
            trace_id = trace,
            dropped_before = dropped,
        );
    }
}

/// Rejection log lines allowed per second; the rest are counted and dropped.
pub const REJECT_LINES_PER_SECOND: u64 = 100;

static REJECT_LINES: LineBudget = LineBudget::new(REJECT_LINES_PER_SECOND);

/// A per-second budget of log lines, lock-free.
pub struct LineBudget {
    per_second: u64,
    /// The current second (since the epoch) in the high 32 bits, lines in the low 32.
    state: std::sync::atomic::AtomicU64,
    dropped: std::sync::atomic::AtomicU64,
}

impl LineBudget {
    pub const fn new(per_second: u64) -> Self {
        LineBudget {
            per_second,
            state: std::sync::atomic::AtomicU64::new(0),
            dropped: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// `Some(n)`: log this line, `n` lines were dropped since the last one logged.
    pub fn admit(&self) -> Option<u64> {
        self.admit_at(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        )
    }

    fn admit_at(&self, now: u64) -> Option<u64> {
        use std::sync::atomic::Ordering::Relaxed;
        let second = now & 0xffff_ffff;
        let mut cur = self.state.load(Relaxed);
        loop {
            let (sec, used) = (cur >> 32, cur & 0xffff_ffff);
            let next = if sec != second {
                (second << 32) | 1
            } else if used < self.per_second {
                cur + 1
            } else {
                self.dropped.fetch_add(1, Relaxed);
                return None;
            };
            match self
                .state
                .compare_exchange_weak(cur, next, Relaxed, Relaxed)
            {
                Ok(_) => return Some(self.dropped.swap(0, Relaxed)),
                Err(actual) => cur = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_budget_drops_past_its_rate_and_reports_the_count() {
        let b = LineBudget::new(3);
        assert_eq!(b.admit_at(10), Some(0));
        assert_eq!(b.admit_at(10), Some(0));
        assert_eq!(b.admit_at(10), Some(0));
        assert_eq!(b.admit_at(10), None);
        assert_eq!(b.admit_at(10), None);
        // The next second: the first line says two were dropped.
        assert_eq!(b.admit_at(11), Some(2));
        assert_eq!(b.admit_at(11), Some(0));
    }
}
