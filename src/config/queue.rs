//! The durable queue's sections: top-level `store`, and a route's `delivery`, `retry`
//! and `concurrency`.

use super::tree::{MapReader, Node, Owned};
use super::{units, Errors};
use std::path::PathBuf;
use std::time::Duration;

/// How a route hands accepted deliveries over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Delivery {
    /// Forward at once; the sender gets the upstream's answer.
    #[default]
    Sync,
    /// Store durably, answer 200, deliver later (at least once).
    Queued,
}

/// SQLite's `synchronous` level for the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synchronous {
    /// fsync on every commit: a committed delivery survives power loss (the default).
    Full,
    /// In WAL mode, survives a crash of the process but may lose the last commits on
    /// power loss.
    Normal,
    /// As `Full`, and the WAL's directory is synced too.
    Extra,
}

impl Synchronous {
    pub fn pragma(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
            Synchronous::Extra => "EXTRA",
        }
    }
}

/// `store: { path, synchronous, max_bytes, max_deliveries, retain }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSettings {
    pub path: PathBuf,
    pub synchronous: Synchronous,
    /// The store's size in use (pages holding data), above which new deliveries get 503.
    pub max_bytes: u64,
    /// Deliveries not yet delivered (pending and dead), above which new ones get 503.
    pub max_deliveries: u64,
    /// How long delivered rows are kept (for `queue stats` and inspection).
    pub retain: Duration,
}

pub const DEFAULT_STORE_MAX_BYTES: u64 = 1 << 30;
pub const DEFAULT_STORE_MAX_DELIVERIES: u64 = 1_000_000;
pub const DEFAULT_STORE_RETAIN: Duration = Duration::from_secs(24 * 3600);

/// `retry: { max_attempts, backoff, max_backoff, max_age, retry_statuses }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySpec {
    /// Attempts in all, the first included; then the delivery is dead.
    pub max_attempts: u32,
    /// The first retry's backoff ceiling; it doubles per attempt (full jitter).
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// A delivery older than this is dead instead of retried.
    pub max_age: Duration,
    /// 4xx statuses that are retried (others fail at once); 5xx, timeouts and refused
    /// connections are always retried.
    pub retry_statuses: Vec<u16>,
}

impl Default for RetrySpec {
    fn default() -> Self {
        RetrySpec {
            max_attempts: 10,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(600),
            max_age: Duration::from_secs(24 * 3600),
            retry_statuses: vec![408, 429],
        }
    }
}

/// Concurrent deliveries per queued route by default: one keeps them in order.
pub const DEFAULT_CONCURRENCY: usize = 1;

pub(super) fn read_store(top: &mut MapReader<'_>, errs: &mut Errors) -> Option<StoreSettings> {
    let node = top.get("store")?;
    let mut m = node.node().map(errs)?;
    let path = m
        .require("path", errs)
        .and_then(|n| n.node().non_empty(errs))
        .map(PathBuf::from);
    let synchronous = match m.get("synchronous") {
        Some(n) => n
            .node()
            .parsed(errs, |s| match s.to_ascii_lowercase().as_str() {
                "full" => Ok(Synchronous::Full),
                "normal" => Ok(Synchronous::Normal),
                "extra" => Ok(Synchronous::Extra),
                _ => Err(format!("{s:?}: use full, extra or normal")),
            }),
        None => Some(Synchronous::Full),
    };
    let max_bytes = match m.get("max_bytes") {
        Some(n) => positive(&n, n.node().parsed(errs, units::parse_size), errs),
        None => Some(DEFAULT_STORE_MAX_BYTES),
    };
    let max_deliveries = match m.get("max_deliveries") {
        Some(n) => positive(&n, n.node().u64(errs), errs),
        None => Some(DEFAULT_STORE_MAX_DELIVERIES),
    };
    let retain = match m.get("retain") {
        Some(n) => n.node().parsed(errs, units::parse_duration),
        None => Some(DEFAULT_STORE_RETAIN),
    };
    m.finish(errs);
    Some(StoreSettings {
        path: path?,
        synchronous: synchronous?,
        max_bytes: max_bytes?,
        max_deliveries: max_deliveries?,
        retain: retain?,
    })
}

fn positive(n: &Owned<'_>, v: Option<u64>, errs: &mut Errors) -> Option<u64> {
    match v {
        Some(0) => {
            n.node().err(errs, "must be more than zero");
            None
        }
        v => v,
    }
}

pub(super) fn read_delivery(node: Node<'_>, errs: &mut Errors) -> Option<Delivery> {
    node.parsed(errs, |s| match s {
        "sync" => Ok(Delivery::Sync),
        "queued" => Ok(Delivery::Queued),
        _ => Err(format!("unknown delivery mode {s:?} (use sync or queued)")),
    })
}

pub(super) fn read_retry(node: Node<'_>, errs: &mut Errors) -> Option<RetrySpec> {
    let mut m = node.map(errs)?;
    let mut r = RetrySpec::default();
    let before = errs.0.len();
    if let Some(n) = m.get("max_attempts") {
        match n.node().u64(errs) {
            Some(v) if (1..=1000).contains(&v) => r.max_attempts = v as u32,
            Some(_) => n.node().err(errs, "must be between 1 and 1000"),
            None => {}
        }
    }
    for (key, slot) in [
        ("backoff", &mut r.backoff),
        ("max_backoff", &mut r.max_backoff),
        ("max_age", &mut r.max_age),
    ] {
        if let Some(n) = m.get(key) {
            match n.node().parsed(errs, units::parse_duration) {
                Some(d) if d.is_zero() => n.node().err(errs, "must be more than zero"),
                Some(d) => *slot = d,
                None => {}
            }
        }
    }
    if let Some(n) = m.get("retry_statuses") {
        if let Some(list) = n.node().each(errs, |item, e| {
            let code = item.u64(e)?;
            if (400..=499).contains(&code) {
                Some(code as u16)
            } else {
                item.err(e, "must be a 4xx status (5xx are always retried)");
                None
            }
        }) {
            r.retry_statuses = list;
        }
    }
    if r.backoff > r.max_backoff {
        let at = m.child_path("backoff");
        errs.push(&at, "must not exceed max_backoff");
    }
    m.finish(errs);
    (errs.0.len() == before).then_some(r)
}

pub(super) fn read_concurrency(node: Node<'_>, errs: &mut Errors) -> Option<usize> {
    match node.u64(errs)? {
        v @ 1..=256 => Some(v as usize),
        _ => {
            node.err(errs, "must be between 1 and 256");
            None
        }
    }
}
