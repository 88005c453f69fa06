//! Configuration in three steps: read the file, parse the text into a YAML tree
//! ([`from_yaml`], the one place that knows the YAML library), and validate the tree into
//! the runtime types below ([`validate`]), collecting *every* problem with its key path.
//! Work that can be done here is: CIDRs parsed, secrets read and keyed, header names
//! built, templates compiled, upstream URIs split.

pub mod expand;
pub mod listener;
pub mod queue;
pub mod tree;
pub mod units;

use crate::net::{parse_net, IpSet};
use crate::verify::hmac::{
    Algorithm, Encoding, Format, HmacScheme, HmacSpec, SecretEncoding, TimeUnit, TimestampSource,
    TimestampSpec,
};
use crate::verify::template::{Part, Template};
use crate::verify::{presets, token, Scheme, Verifier};
use http::header::HeaderName;
use http::uri::{Authority, Scheme as UriScheme};
use http::{HeaderValue, StatusCode, Uri};
pub use listener::{Limits, Reload, TlsListener, UpstreamTlsSpec};
pub use queue::{Delivery, RetrySpec, StoreSettings, Synchronous};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
pub use tree::{ConfigError, Errors};
use tree::{MapReader, Node};

/// Built-in defaults, used where neither the route nor `defaults` sets a value.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_MAX_BODY: u64 = 1 << 20;
pub const DEFAULT_REJECT_STATUS: u16 = 406;
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(4);
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);
/// The largest body a route may accept: bodies are buffered to be verified.
pub const MAX_BODY_LIMIT: u64 = 64 << 20;
/// Upstream connection pool: idle connections kept per upstream host.
pub const DEFAULT_POOL_MAX_IDLE: usize = 64;
/// Upstream connection pool: connections open at once per upstream host.
pub const DEFAULT_POOL_MAX_PER_HOST: usize = 512;
/// Below the keep-alive timeout of common upstream servers (Node.js 5 s, uvicorn 5 s),
/// so that we close an idle connection before the upstream does and never race it.
pub const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(4);
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub admin_listen: Option<SocketAddr>,
    /// A bearer token the admin API's queue and dead-letter endpoints require (a secret).
    pub admin_token: Option<String>,
    pub workers: usize,
    pub trusted_proxies: IpSet,
    pub pool: PoolSettings,
    pub shutdown_grace: Duration,
    /// TLS on the public listener; `None` is plain HTTP.
    pub tls: Option<TlsListener>,
    pub limits: Limits,
    pub reload: Reload,
    /// The durable store for queued routes.
    pub store: Option<StoreSettings>,
    pub routes: Vec<Route>,
}

impl Config {
    /// Every file the config was built from besides itself (secrets, certificates,
    /// keys): a change to one of them triggers a reload.
    pub fn source_files(&self) -> Vec<std::path::PathBuf> {
        let mut files: Vec<std::path::PathBuf> = Vec::new();
        if let Some(t) = &self.tls {
            files.extend(t.files.iter().cloned());
        }
        for r in &self.routes {
            files.extend(
                r.secret_sources
                    .iter()
                    .filter_map(|s| s.strip_prefix("file:"))
                    .map(std::path::PathBuf::from),
            );
            if let Some(spec) = &r.upstream_tls_spec {
                files.extend(listener::upstream_tls_files(spec).map(Path::to_path_buf));
            }
        }
        files.sort();
        files.dedup();
        files
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoolSettings {
    pub max_idle_per_host: usize,
    /// Connections open at once to one upstream (idle and busy); a request that finds
    /// them all busy waits for one within its upstream timeout.
    pub max_per_host: usize,
    pub idle_timeout: Duration,
    pub connect_timeout: Duration,
}

/// One route, with every default applied.
#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub path: String,
    /// If set, the route matches only requests for this host (lower case, no port).
    pub host: Option<String>,
    pub verifier: Verifier,
    /// Where each secret came from (`env:NAME`, `file:PATH`, `inline`), for `check`.
    pub secret_sources: Vec<String>,
    pub allow_ips: Option<IpSet>,
    pub rate_limit: Option<RateSpec>,
    pub max_body: u64,
    pub reject_status: StatusCode,
    pub upstream: Upstream,
    /// How to reach an https upstream (absent for http).
    pub upstream_tls: Option<crate::tls::ClientTls>,
    /// The `upstream_tls` section as written (for `check` and the file watcher).
    pub upstream_tls_spec: Option<UpstreamTlsSpec>,
    pub upstream_timeout: Duration,
    pub delivery: Delivery,
    /// Retries of queued deliveries.
    pub retry: RetrySpec,
    /// Queued deliveries in flight at once for this route.
    pub concurrency: usize,
    pub dedup: Option<DedupSpec>,
    /// The handshakes the route answers itself (from its preset).
    pub handshakes: &'static [crate::handshake::Kind],
    /// Meta's `hub.verify_token` (a secret: never shown).
    pub verify_token: Option<String>,
    /// Where a secret learned in a handshake (Asana's X-Hook-Secret) is kept.
    pub hook_secret_file: Option<String>,
}

/// `dedup: { window, id_from, max_entries }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DedupSpec {
    pub window: Duration,
    pub id_from: IdFrom,
    pub max_entries: usize,
}

/// Where a delivery's id is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdFrom {
    Header(HeaderName),
    /// The first of these headers present (a scheme sent under either of two names).
    Headers(Vec<HeaderName>),
    /// A path of object keys in the JSON body.
    Json(Vec<String>),
}

impl IdFrom {
    /// The id of a delivery, if it has one.
    pub fn extract(&self, headers: &crate::fields::Fields, body: &[u8]) -> Option<Vec<u8>> {
        match self {
            IdFrom::Header(h) => headers
                .get(h)
                .map(|v| v.as_bytes().trim_ascii())
                .filter(|v| !v.is_empty())
                .map(<[u8]>::to_vec),
            IdFrom::Headers(names) => names
                .iter()
                .find_map(|h| headers.get(h))
                .map(|v| v.as_bytes().trim_ascii())
                .filter(|v| !v.is_empty())
                .map(<[u8]>::to_vec),
            IdFrom::Json(path) => crate::verify::hmac::json_field(body, path)
                .filter(|v| !v.is_empty())
                .map(String::into_bytes),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            IdFrom::Header(h) => format!("header:{h}"),
            IdFrom::Headers(hs) => hs
                .iter()
                .map(|h| format!("header:{h}"))
                .collect::<Vec<_>>()
                .join("|"),
            IdFrom::Json(p) => format!("json:{}", p.join(".")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateSpec {
    pub per_second: f64,
    pub burst: u32,
    pub key: RateKey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateKey {
    /// One budget for the whole route.
    Route,
    /// One budget per client IP.
    ClientIp,
}

/// An upstream URL, split once so that a request only swaps in its query.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub url: String,
    pub scheme: UriScheme,
    pub authority: Authority,
    /// The upstream's path and its own query, if any (`/expel`, `/in?src=gw`).
    pub path_and_query: String,
    /// The URI used when the request has no query (most webhooks): built once.
    pub uri: Uri,
    /// The Host header sent upstream.
    pub host_header: HeaderValue,
}

/// Reads, parses and validates a config file.
pub fn load(path: &Path) -> Result<Config, Errors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        let mut errs = Errors::default();
        errs.push("", format!("cannot read {}: {e}", path.display()));
        errs
    })?;
    let env = |name: &str| std::env::var(name).ok();
    load_str(&text, &env)
}

/// Parses and validates config text, with `env` as the environment.
pub fn load_str(text: &str, env: tree::Env<'_>) -> Result<Config, Errors> {
    let value = from_yaml(text)?;
    validate(&value, env)
}

/// The one function that knows the YAML library.
pub fn from_yaml(text: &str) -> Result<serde_norway::Value, Errors> {
    let mut value: serde_norway::Value = serde_norway::from_str(text).map_err(|e| {
        let mut errs = Errors::default();
        let hint = if text.contains("[${") || text.contains(", ${") {
            " (inside [ ], quote values that use ${VAR}: [\"${VAR}\"])"
        } else {
            ""
        };
        errs.push("", format!("invalid YAML: {e}{hint}"));
        errs
    })?;
    value.apply_merge().map_err(|e| {
        let mut errs = Errors::default();
        errs.push("", format!("invalid YAML merge key: {e}"));
        errs
    })?;
    Ok(value)
}

/// Values that `defaults` sets for every route.
struct Defaults {
    max_body: u64,
    reject_status: StatusCode,
    upstream_timeout: Duration,
    rate_limit: Option<RateSpec>,
    upstream_tls: Option<UpstreamTlsSpec>,
}

/// Turns the YAML tree into a [`Config`], or lists every problem in it.
pub fn validate(value: &serde_norway::Value, env: tree::Env<'_>) -> Result<Config, Errors> {
    let mut errs = Errors::default();
    let root = Node::root(value, env);
    if root.is_null() {
        errs.push("", "the config is empty: it needs at least `routes`");
        return Err(errs);
    }
    let Some(mut top) = root.map(&mut errs) else {
        return Err(errs);
    };

    let listen = top
        .get("listen")
        .and_then(|n| n.node().parsed(&mut errs, parse_addr))
        .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid default"));
    let workers = match top.get("workers") {
        Some(n) => n.node().u64(&mut errs).and_then(|w| {
            if (1..=1024).contains(&w) {
                Some(w as usize)
            } else {
                n.node().err(&mut errs, "must be between 1 and 1024");
                None
            }
        }),
        None => None,
    }
    .unwrap_or_else(default_workers);

    let mut admin_listen = None;
    let mut admin_token = None;
    if let Some(admin) = top.get("admin") {
        if let Some(mut m) = admin.node().map(&mut errs) {
            admin_listen = m
                .require("listen", &mut errs)
                .and_then(|n| n.node().parsed(&mut errs, parse_addr));
            admin_token = m.get("token").and_then(|n| {
                let t = n.node().non_empty(&mut errs)?;
                if t.len() < 16 {
                    n.node().err(&mut errs, "must be at least 16 characters");
                    return None;
                }
                Some(t)
            });
            m.finish(&mut errs);
        }
    }
    if admin_listen.is_some() && admin_listen == Some(listen) {
        errs.push("admin.listen", "must differ from `listen`");
    }

    let trusted_proxies = top
        .get("trusted_proxies")
        .and_then(|n| read_ip_list(n.node(), &mut errs, true))
        .unwrap_or_default();

    let pool = read_pool(&mut top, &mut errs);
    let shutdown_grace = top
        .get("shutdown_grace")
        .and_then(|n| n.node().parsed(&mut errs, units::parse_duration))
        .unwrap_or(DEFAULT_SHUTDOWN_GRACE);

    let tls = listener::read_tls(&mut top, &mut errs);
    let limits = listener::read_limits(&mut top, &mut errs);
    let reload = listener::read_reload(&mut top, &mut errs);
    let store = queue::read_store(&mut top, &mut errs);
    top.not_yet("cluster", "cluster mode (`cluster`)", &mut errs);

    let defaults = read_defaults(&mut top, &mut errs);

    let mut routes = Vec::new();
    if let Some(list) = top.require("routes", &mut errs) {
        if let Some(items) = list.node().list(&mut errs) {
            if items.is_empty() {
                list.node().err(&mut errs, "needs at least one route");
            }
            let mut client_configs = listener::ClientConfigs::default();
            for item in &items {
                if let Some(route) =
                    read_route(item.node(), &defaults, &mut client_configs, &mut errs)
                {
                    routes.push(route);
                }
            }
        }
    }
    top.finish(&mut errs);
    check_route_conflicts(&routes, &mut errs);
    if store.is_none() {
        for (i, r) in routes.iter().enumerate() {
            if r.delivery == Delivery::Queued {
                errs.push(
                    &format!("routes[{i}].delivery"),
                    "queued needs a top-level `store` (store: { path: /var/lib/hookgate/hookgate.db })",
                );
            }
        }
    }

    if errs.is_empty() {
        Ok(Config {
            listen,
            admin_listen,
            admin_token,
            workers,
            trusted_proxies,
            pool,
            shutdown_grace,
            tls,
            limits,
            reload,
            store,
            routes,
        })
    } else {
        Err(errs)
    }
}

pub fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    s.trim().parse::<SocketAddr>().map_err(|_| {
        format!("{s:?} is not an address with a port (e.g. \"127.0.0.1:8080\" or \"[::]:8443\")")
    })
}

fn read_ip_list(node: Node<'_>, errs: &mut Errors, allow_empty: bool) -> Option<IpSet> {
    let nets = node.each(errs, |n, e| n.parsed(e, parse_net))?;
    if nets.is_empty() && !allow_empty {
        node.err(
            errs,
            "an empty list would refuse every request; remove the key to allow every address",
        );
        return None;
    }
    Some(IpSet::new(nets))
}

fn read_pool(top: &mut MapReader<'_>, errs: &mut Errors) -> PoolSettings {
    let mut pool = PoolSettings {
        max_idle_per_host: DEFAULT_POOL_MAX_IDLE,
        max_per_host: DEFAULT_POOL_MAX_PER_HOST,
        idle_timeout: DEFAULT_POOL_IDLE_TIMEOUT,
        connect_timeout: DEFAULT_CONNECT_TIMEOUT,
    };
    let Some(node) = top.get("upstream_pool") else {
        return pool;
    };
    let Some(mut m) = node.node().map(errs) else {
        return pool;
    };
    if let Some(n) = m.get("max_idle_per_host").and_then(|n| n.node().u64(errs)) {
        pool.max_idle_per_host = n as usize;
    }
    if let Some(n) = m.get("max_per_host") {
        match n.node().u64(errs) {
            Some(0) => n.node().err(errs, "must be at least 1"),
            Some(v) => pool.max_per_host = v as usize,
            None => {}
        }
    }
    if let Some(d) = m
        .get("idle_timeout")
        .and_then(|n| n.node().parsed(errs, units::parse_duration))
    {
        pool.idle_timeout = d;
    }
    if let Some(n) = m.get("connect_timeout") {
        if let Some(d) = n.node().parsed(errs, units::parse_duration) {
            if d.is_zero() {
                n.node().err(errs, "must be more than zero");
            } else {
                pool.connect_timeout = d;
            }
        }
    }
    m.finish(errs);
    pool
}

fn read_defaults(top: &mut MapReader<'_>, errs: &mut Errors) -> Defaults {
    let mut d = Defaults {
        max_body: DEFAULT_MAX_BODY,
        reject_status: StatusCode::from_u16(DEFAULT_REJECT_STATUS).expect("valid"),
        upstream_timeout: DEFAULT_UPSTREAM_TIMEOUT,
        rate_limit: None,
        upstream_tls: None,
    };
    let Some(node) = top.get("defaults") else {
        return d;
    };
    let Some(mut m) = node.node().map(errs) else {
        return d;
    };
    if let Some(v) = m
        .get("max_body")
        .and_then(|n| read_max_body(n.node(), errs))
    {
        d.max_body = v;
    }
    if let Some(v) = m
        .get("reject_status")
        .and_then(|n| read_reject_status(n.node(), errs))
    {
        d.reject_status = v;
    }
    if let Some(v) = m
        .get("upstream_timeout")
        .and_then(|n| read_timeout(n.node(), errs))
    {
        d.upstream_timeout = v;
    }
    if let Some(n) = m.get("rate_limit") {
        d.rate_limit = read_rate_limit(n.node(), errs).flatten();
    }
    if let Some(n) = m.get("upstream_tls") {
        d.upstream_tls = listener::read_upstream_tls(n.node(), errs);
    }
    m.finish(errs);
    d
}

fn read_max_body(node: Node<'_>, errs: &mut Errors) -> Option<u64> {
    let size = node.parsed(errs, units::parse_size)?;
    if size == 0 || size > MAX_BODY_LIMIT {
        node.err(
            errs,
            format!(
                "must be between 1B and {}",
                units::format_size(MAX_BODY_LIMIT)
            ),
        );
        return None;
    }
    Some(size)
}

fn read_reject_status(node: Node<'_>, errs: &mut Errors) -> Option<StatusCode> {
    let code = node.u64(errs)?;
    if !(400..=499).contains(&code) {
        node.err(
            errs,
            "must be a 4xx status (a 5xx would make senders retry forged deliveries)",
        );
        return None;
    }
    StatusCode::from_u16(code as u16).ok()
}

fn read_timeout(node: Node<'_>, errs: &mut Errors) -> Option<Duration> {
    let d = node.parsed(errs, units::parse_duration)?;
    if d.is_zero() || d > Duration::from_secs(3600) {
        node.err(errs, "must be more than zero and at most 1h");
        return None;
    }
    Some(d)
}

/// `Some(None)` is an explicit `rate_limit: off`.
fn read_rate_limit(node: Node<'_>, errs: &mut Errors) -> Option<Option<RateSpec>> {
    if let serde_norway::Value::String(s) = node.value {
        if s == "off" {
            return Some(None);
        }
    }
    if let serde_norway::Value::Bool(false) = node.value {
        return Some(None);
    }
    let mut m = node.map(errs)?;
    let per_second = m.require("per_second", errs).and_then(|n| {
        let v = n.node().f64(errs)?;
        if !(v > 0.0 && v <= 1e9) {
            n.node().err(errs, "must be more than 0");
            return None;
        }
        Some(v)
    });
    let burst = match m.get("burst") {
        Some(n) => n.node().u64(errs).and_then(|b| {
            if (1..=u32::MAX as u64).contains(&b) {
                Some(b as u32)
            } else {
                n.node().err(errs, "must be at least 1");
                None
            }
        }),
        None => per_second.map(|p| p.ceil().max(1.0) as u32),
    };
    let key = match m.get("key") {
        Some(n) => n.node().parsed(errs, |s| match s {
            "route" => Ok(RateKey::Route),
            "client_ip" => Ok(RateKey::ClientIp),
            _ => Err(format!("unknown key {s:?} (use route or client_ip)")),
        }),
        None => Some(RateKey::Route),
    };
    m.finish(errs);
    Some(Some(RateSpec {
        per_second: per_second?,
        burst: burst?,
        key: key?,
    }))
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn read_route(
    node: Node<'_>,
    defaults: &Defaults,
    client_configs: &mut listener::ClientConfigs,
    errs: &mut Errors,
) -> Option<Route> {
    let before = errs.0.len();
    let mut m = node.map(errs)?;
    let name = m.require("name", errs).and_then(|n| {
        n.node().parsed(errs, |s| {
            if valid_name(s) {
                Ok(s.to_string())
            } else {
                Err(format!(
                    "{s:?} is not a valid route name (1-64 letters, digits, '-', '_' or '.')"
                ))
            }
        })
    });
    let path = m.require("path", errs).and_then(|n| {
        n.node().parsed(errs, |s| {
            if !s.starts_with('/') {
                Err(format!("{s:?} must start with '/'"))
            } else if s.contains(['?', '#'])
                || s.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                Err(format!(
                    "{s:?} must be a plain path (no query, fragment or spaces)"
                ))
            } else {
                Ok(s.to_string())
            }
        })
    });
    let host = m.get("host").and_then(|n| {
        n.node().parsed(errs, |s| {
            let h = s.trim().to_ascii_lowercase();
            if h.is_empty() || h.contains(['/', ' ', ':']) {
                Err(format!(
                    "{s:?} is not a host name (no scheme, port or path)"
                ))
            } else {
                Ok(h)
            }
        })
    });
    let verify = m
        .require("verify", errs)
        .and_then(|n| read_verify(n.node(), errs));
    let allow_ips = m
        .get("allow_ips")
        .and_then(|n| read_ip_list(n.node(), errs, false));
    let rate_limit = match m.get("rate_limit") {
        Some(n) => read_rate_limit(n.node(), errs).flatten(),
        None => defaults.rate_limit,
    };
    let max_body = m
        .get("max_body")
        .map(|n| read_max_body(n.node(), errs))
        .unwrap_or(Some(defaults.max_body));
    let reject_status = m
        .get("reject_status")
        .map(|n| read_reject_status(n.node(), errs))
        .unwrap_or_else(|| {
            // A sender that needs a particular status (Discord: 401) gets it unless the
            // route says otherwise.
            let preferred = verify
                .as_ref()
                .and_then(|v| v.reject_status)
                .and_then(|c| StatusCode::from_u16(c).ok());
            Some(preferred.unwrap_or(defaults.reject_status))
        });
    let upstream = m
        .require("upstream", errs)
        .and_then(|n| n.node().parsed(errs, parse_upstream));
    let upstream_timeout = m
        .get("upstream_timeout")
        .map(|n| read_timeout(n.node(), errs))
        .unwrap_or(Some(defaults.upstream_timeout));
    let tls_node = m.get("upstream_tls");
    let tls_spec = match &tls_node {
        Some(n) => listener::read_upstream_tls(n.node(), errs),
        None => defaults.upstream_tls.clone(),
    };
    let mut upstream_tls = None;
    if let Some(up) = &upstream {
        if up.scheme == UriScheme::HTTPS {
            let spec = tls_spec.clone().unwrap_or_default();
            match client_configs.get(&spec, &up.authority) {
                Ok(t) => upstream_tls = Some(t),
                Err(e) => {
                    let at = match &tls_node {
                        Some(n) => n.path.clone(),
                        None => format!("{}.upstream", m.path()),
                    };
                    errs.push(&at, e);
                }
            }
        } else if let Some(n) = &tls_node {
            n.node().err(errs, "applies to https upstreams only");
        }
    }
    let delivery = match m.get("delivery") {
        Some(n) => queue::read_delivery(n.node(), errs),
        None => Some(Delivery::Sync),
    };
    let retry_node = m.get("retry");
    let retry = match &retry_node {
        Some(n) => queue::read_retry(n.node(), errs),
        None => Some(RetrySpec::default()),
    };
    let concurrency_node = m.get("concurrency");
    let concurrency = match &concurrency_node {
        Some(n) => queue::read_concurrency(n.node(), errs),
        None => Some(queue::DEFAULT_CONCURRENCY),
    };
    if delivery == Some(Delivery::Sync) {
        for n in [&retry_node, &concurrency_node].into_iter().flatten() {
            n.node()
                .err(errs, "applies to routes with `delivery: queued` only");
        }
    }
    let dedup_node = m.get("dedup");
    m.finish(errs);
    let dedup = match (&dedup_node, &verify) {
        (Some(n), Some(section)) => read_dedup(n.node(), &section.verifier, errs),
        _ => None,
    };

    if errs.0.len() != before {
        return None;
    }
    let section = verify?;
    Some(Route {
        name: name?,
        path: path?,
        host,
        verifier: section.verifier,
        secret_sources: section.sources,
        handshakes: section.handshakes,
        verify_token: section.verify_token,
        hook_secret_file: section.hook_secret_file,
        allow_ips,
        rate_limit,
        max_body: max_body?,
        reject_status: reject_status?,
        upstream_tls_spec: upstream_tls.as_ref().map(|_| tls_spec.unwrap_or_default()),
        upstream_tls,
        upstream: upstream?,
        upstream_timeout: upstream_timeout?,
        delivery: delivery?,
        retry: retry?,
        concurrency: concurrency?,
        dedup,
    })
}

/// `dedup: { window: 24h, id_from: header:X-Id | json:path.to.id, max_entries: 100000 }`.
/// Without `id_from`, the id is the scheme's delivery id header (`webhook-id`, …).
fn read_dedup(node: Node<'_>, verifier: &Verifier, errs: &mut Errors) -> Option<DedupSpec> {
    let mut m = node.map(errs)?;
    let window = m.require("window", errs).and_then(|n| {
        let d = n.node().parsed(errs, units::parse_duration)?;
        if d.is_zero() {
            n.node().err(errs, "must be more than zero");
            return None;
        }
        Some(d)
    });
    let id_from = match m.get("id_from") {
        Some(n) => n.node().parsed(errs, |s| {
            if let Some(h) = s.strip_prefix("header:") {
                header_name(h).map(IdFrom::Header)
            } else if let Some(p) = s.strip_prefix("json:") {
                let path: Vec<String> = p.split('.').map(str::to_string).collect();
                if path.iter().any(String::is_empty) {
                    Err(format!(
                        "{s:?} is not a JSON path (json:field or json:a.b.c)"
                    ))
                } else {
                    Ok(IdFrom::Json(path))
                }
            } else {
                Err(format!("{s:?}: use header:NAME or json:path.to.field"))
            }
        }),
        None => match &verifier.scheme {
            Scheme::Hmac(h) if h.spec.id_header.is_some() => {
                let primary = h.spec.id_header.clone().expect("checked");
                Some(match &h.spec.fallback {
                    Some(f) => IdFrom::Headers(vec![primary, f.id.clone()]),
                    None => IdFrom::Header(primary),
                })
            }
            _ => {
                errs.push(
                    &format!("{}.id_from", m.path()),
                    "is required: this route's scheme carries no delivery id (use header:NAME or json:path)",
                );
                None
            }
        },
    };
    let max_entries = match m.get("max_entries") {
        Some(n) => n.node().u64(errs).and_then(|v| {
            if v == 0 {
                n.node().err(errs, "must be at least 1");
                None
            } else {
                Some(v as usize)
            }
        }),
        None => Some(crate::pipeline::dedup::DEFAULT_MAX_ENTRIES),
    };
    m.finish(errs);
    Some(DedupSpec {
        window: window?,
        id_from: id_from?,
        max_entries: max_entries?,
    })
}

fn check_route_conflicts(routes: &[Route], errs: &mut Errors) {
    for (i, r) in routes.iter().enumerate() {
        for (j, other) in routes[..i].iter().enumerate() {
            if r.name == other.name {
                errs.push(
                    &format!("routes[{i}].name"),
                    format!("duplicate route name {:?} (also routes[{j}])", r.name),
                );
            }
            if r.path == other.path && r.host == other.host {
                errs.push(
                    &format!("routes[{i}].path"),
                    format!(
                        "{:?} is already served by routes[{j}] ({})",
                        r.path, other.name
                    ),
                );
            }
        }
    }
}

pub fn parse_upstream(s: &str) -> Result<Upstream, String> {
    let uri: Uri = s
        .trim()
        .parse()
        .map_err(|e| format!("{s:?} is not a valid URL: {e}"))?;
    let scheme = uri
        .scheme()
        .cloned()
        .ok_or_else(|| format!("{s:?} needs a scheme, e.g. http://127.0.0.1:9000/hook"))?;
    if scheme != UriScheme::HTTP && scheme != UriScheme::HTTPS {
        return Err(format!("{s:?}: the scheme must be http or https"));
    }
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| format!("{s:?} has no host"))?;
    if authority.as_str().contains('@') {
        return Err(format!("{s:?}: credentials in the URL are not supported"));
    }
    let path_and_query = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".to_string());
    let uri = Uri::builder()
        .scheme(scheme.clone())
        .authority(authority.clone())
        .path_and_query(path_and_query.as_str())
        .build()
        .map_err(|e| format!("{s:?} is not a valid URL: {e}"))?;
    let host_header =
        HeaderValue::from_str(authority.as_str()).map_err(|_| format!("{s:?}: invalid host"))?;
    Ok(Upstream {
        url: s.trim().to_string(),
        scheme,
        authority,
        path_and_query,
        uri,
        host_header,
    })
}

fn header_name(s: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(s.trim().as_bytes())
        .map_err(|_| format!("{s:?} is not a valid header name"))
}

/// What a route's `verify` section amounts to.
struct VerifySection {
    /// The status the sender needs for a failed verification, if not the default.
    reject_status: Option<u16>,
    verifier: Verifier,
    sources: Vec<String>,
    handshakes: &'static [crate::handshake::Kind],
    verify_token: Option<String>,
    hook_secret_file: Option<String>,
}

/// Reads a route's `verify` section into a verifier and the list of secret sources.
fn read_verify(node: Node<'_>, errs: &mut Errors) -> Option<VerifySection> {
    let before = errs.0.len();
    let mut m = node.map(errs)?;
    let path = m.path().to_string();

    let preset_node = m.get("preset");
    let preset_id = preset_node.as_ref().and_then(|n| n.node().string(errs));
    let none = match m.get("none") {
        Some(n) => match n.node().bool(errs) {
            Some(true) => true,
            Some(false) => {
                n.node().err(
                    errs,
                    "`none: false` has no meaning; remove it and choose a preset or hmac",
                );
                false
            }
            None => false,
        },
        None => false,
    };
    let hmac_node = m.get("hmac");
    let token_node = m.get("token");
    let basic = match m.get("basic") {
        Some(n) => n.node().bool(errs).unwrap_or(false),
        None => false,
    };
    let secrets_node = m.get("secrets");
    let files_node = m.get("secret_files");
    let tolerance_node = m.get("tolerance");
    let tolerance = tolerance_node
        .as_ref()
        .and_then(|n| n.node().parsed(errs, units::parse_duration));
    let future_node = m.get("future_tolerance");
    let future_tolerance = future_node
        .as_ref()
        .and_then(|n| n.node().parsed(errs, units::parse_duration));
    let url = m.get("url").and_then(|n| {
        n.node().parsed(errs, |s| {
            let uri: http::Uri = s.parse().map_err(|_| format!("{s:?} is not a URL"))?;
            match (uri.scheme_str(), uri.authority()) {
                (Some("http" | "https"), Some(_)) => Ok(s.to_string()),
                _ => Err(format!(
                    "{s:?} must be an absolute http(s) URL, as registered with the sender"
                )),
            }
        })
    });
    let verify_token = m.get("verify_token").and_then(|n| n.node().non_empty(errs));
    let hook_secret_file = m
        .get("hook_secret_file")
        .and_then(|n| n.node().non_empty(errs));
    let public_key_node = m.get("public_key");
    let public_key = public_key_node
        .as_ref()
        .and_then(|n| n.node().non_empty(errs));
    m.finish(errs);

    // Which scheme: one of preset, none, hmac, token, basic (hmac may refine a preset).
    let none = none || preset_id.as_deref() == Some("none");
    let preset = match preset_id.as_deref() {
        Some("none") | None => None,
        Some(id) => match presets::find(id) {
            Some(p) => Some(p),
            None => {
                let n = preset_node.as_ref().expect("id came from it").node();
                let supported = presets::ids().join(", ");
                if presets::PLANNED.contains(&id) {
                    n.err(errs, format!("preset {id:?} is not supported yet by this version of hookgate (supported: {supported})"));
                } else {
                    n.err(
                        errs,
                        format!("unknown preset {id:?} (supported: {supported})"),
                    );
                }
                return None;
            }
        },
    };
    let handshakes = preset
        .map(|p| crate::handshake::for_preset(p.id))
        .unwrap_or(&[]);
    let learns_secret = handshakes.contains(&crate::handshake::Kind::AsanaHookSecret);
    if verify_token.is_some() && !handshakes.contains(&crate::handshake::Kind::MetaHubChallenge) {
        errs.push(
            &format!("{path}.verify_token"),
            "only the meta preset's subscription handshake uses it",
        );
    }
    if hook_secret_file.is_some() && !learns_secret {
        errs.push(
            &format!("{path}.hook_secret_file"),
            "only a sender that hands over its secret in a handshake (asana) uses it",
        );
    }
    let chosen = [
        preset.is_some() || hmac_node.is_some(),
        none,
        token_node.is_some(),
        basic,
    ];
    if chosen.iter().filter(|c| **c).count() > 1 {
        let token_preset = matches!(preset.map(|p| p.kind), Some(presets::Kind::Token { .. }));
        // A token preset may name its header in `token`; every other mix is an error.
        let token_preset_with_header = token_preset && token_node.is_some() && !none && !basic;
        if !token_preset_with_header {
            errs.push(
                &path,
                "choose one of `preset`/`hmac`, `token`, `basic` or `none`",
            );
            return None;
        }
    }
    // Handshake-only senders (Azure Event Grid, Microsoft Graph) sign nothing.
    let unsigned_preset = matches!(preset.map(|p| p.kind), Some(presets::Kind::Unsigned));
    if none || unsigned_preset {
        for (n, key) in [(&secrets_node, "secrets"), (&files_node, "secret_files")] {
            if let Some(n) = n {
                n.node().err(errs, format!("a route with `none` verifies nothing, so `{key}` would be ignored; remove it"));
            }
        }
        if tolerance.is_some() {
            errs.push(
                &format!("{path}.tolerance"),
                "a route with `none` has no timestamp to check",
            );
        }
        if errs.0.len() != before {
            return None;
        }
        return Some(VerifySection {
            reject_status: None,
            verifier: Verifier::new(
                Scheme::None,
                preset
                    .filter(|_| unsigned_preset)
                    .map(|p| p.id)
                    .unwrap_or("none")
                    .into(),
            ),
            sources: Vec::new(),
            handshakes,
            verify_token,
            hook_secret_file,
        });
    }
    if !chosen.iter().any(|c| *c) {
        errs.push(
            &path,
            format!(
                "choose how to verify: `preset` (one of {}), `hmac: {{…}}`, `token: {{header}}`, `basic: true`, or `none: true`",
                presets::ids().join(", ")
            ),
        );
        return None;
    }
    let mut secrets = read_secrets(
        secrets_node.as_ref().map(|n| n.node()),
        files_node.as_ref().map(|n| n.node()),
        &path,
        learns_secret
            || public_key.is_some()
            || matches!(
                preset.map(|p| p.kind),
                Some(presets::Kind::Ed25519 { .. } | presets::Kind::P256 { .. })
            ),
        errs,
    );
    // A secret learned in an earlier handshake, kept in hook_secret_file.
    if let Some(file) = &hook_secret_file {
        match std::fs::read(file) {
            Ok(bytes) if !bytes.trim_ascii().is_empty() => secrets.push(SecretItem {
                bytes: bytes.trim_ascii().to_vec(),
                source: format!("learned:{file}"),
                path: format!("{path}.hook_secret_file"),
            }),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => errs.push(
                &format!("{path}.hook_secret_file"),
                format!("cannot read {file}: {e}"),
            ),
        }
    }
    let sources: Vec<String> = secrets.iter().map(|s| s.source.clone()).collect();
    let raw: Vec<Vec<u8>> = secrets.iter().map(|s| s.bytes.clone()).collect();

    // Token and basic schemes: no signature, no timestamp.
    let token_spec = match (preset.map(|p| p.kind), &token_node) {
        (_, Some(n)) => read_token(n.node(), errs),
        (Some(presets::Kind::Token { header, prefix }), None) => {
            Some((header_name(header).ok()?, prefix.to_string()))
        }
        _ => None,
    };
    let is_basic = basic || matches!(preset.map(|p| p.kind), Some(presets::Kind::Basic));
    // Public-key schemes: a key, no secrets.
    if let Some(
        presets::Kind::Ed25519 {
            signature,
            timestamp,
        }
        | presets::Kind::P256 {
            signature,
            timestamp,
        },
    ) = preset.map(|p| p.kind)
    {
        let ed = matches!(preset.map(|p| p.kind), Some(presets::Kind::Ed25519 { .. }));
        for (n, key) in [(&secrets_node, "secrets"), (&files_node, "secret_files")] {
            if let Some(n) = n {
                n.node().err(
                    errs,
                    format!("this scheme verifies with `public_key`, not `{key}`"),
                );
            }
        }
        let key = match (&public_key, &public_key_node) {
            (Some(k), Some(n)) => {
                let parsed = if ed {
                    crate::verify::special::PublicKey::parse_ed25519(k)
                } else {
                    crate::verify::special::PublicKey::parse_p256(k)
                };
                parsed.map_err(|e| n.node().err(errs, e)).ok()
            }
            _ => {
                errs.push(
                    &format!("{path}.public_key"),
                    "is required: the sender's public key",
                );
                None
            }
        };
        if errs.0.len() != before {
            return None;
        }
        let scheme = crate::verify::special::KeyScheme {
            key: key?,
            signature_header: header_name(signature).ok()?,
            timestamp_header: header_name(timestamp).ok()?,
            tolerance,
        };
        return Some(VerifySection {
            verifier: Verifier::new(
                Scheme::Key(scheme),
                preset.map(|p| p.id).unwrap_or("key").into(),
            ),
            sources: vec!["public_key".into()],
            handshakes,
            verify_token,
            hook_secret_file,
            reject_status: preset.and_then(|p| presets::reject_status(p.id)),
        });
    }
    // Standard Webhooks' asymmetric form: a whpk_ key instead of whsec_ secrets.
    if let (Some(k), Some(presets::Kind::Hmac(h))) = (&public_key, preset.map(|p| p.kind)) {
        if h.header.ends_with("-signature")
            && h.signed == "{id}.{timestamp}.{body}"
            && secrets.is_empty()
        {
            let key = match crate::verify::special::PublicKey::parse_ed25519(k) {
                Ok(crate::verify::special::PublicKey::Ed25519(key)) => Some(key),
                Ok(_) => None,
                Err(e) => {
                    errs.push(&format!("{path}.public_key"), e);
                    None
                }
            };
            let mut spec = h.spec().ok()?;
            if let Some(t) = tolerance {
                spec.tolerance = t;
                spec.future_tolerance = t;
            }
            if errs.0.len() != before {
                return None;
            }
            return Some(VerifySection {
                verifier: Verifier::new(
                    Scheme::StandardAsym(Box::new(crate::verify::special::StandardAsymScheme {
                        key: key?,
                        spec,
                    })),
                    format!(
                        "{}+v1a",
                        preset.map(|p| p.id).unwrap_or("standard-webhooks")
                    ),
                ),
                sources: vec!["public_key".into()],
                handshakes,
                verify_token,
                hook_secret_file,
                reject_status: None,
            });
        }
    }
    if public_key.is_some() {
        errs.push(
            &format!("{path}.public_key"),
            "only public-key schemes (discord, sendgrid, standard-webhooks v1a) use it",
        );
    }
    if let Some(kind @ (presets::Kind::Mailgun | presets::Kind::Netlify)) = preset.map(|p| p.kind) {
        if let Some(h) = &hmac_node {
            h.node()
                .err(errs, "`hmac` fields do not apply to this scheme");
        }
        if matches!(kind, presets::Kind::Netlify) && tolerance.is_some() {
            errs.push(
                &format!("{path}.tolerance"),
                "this scheme carries no timestamp to check",
            );
        }
        if errs.0.len() != before {
            return None;
        }
        let (scheme, name) = match kind {
            presets::Kind::Mailgun => (
                Scheme::Mailgun(crate::verify::special::MailgunScheme::new(&raw, tolerance)),
                "mailgun",
            ),
            _ => (
                Scheme::Netlify(crate::verify::special::NetlifyScheme::new(&raw)),
                "netlify",
            ),
        };
        return Some(VerifySection {
            verifier: Verifier::new(scheme, name.into()),
            sources,
            handshakes,
            verify_token,
            hook_secret_file,
            reject_status: None,
        });
    }
    if matches!(preset.map(|p| p.kind), Some(presets::Kind::Twilio)) {
        let Some(url) = url.clone() else {
            errs.push(
                &format!("{path}.url"),
                "is required: Twilio signs the URL it calls; give it as configured in Twilio",
            );
            return None;
        };
        if errs.0.len() != before {
            return None;
        }
        return Some(VerifySection {
            verifier: Verifier::new(
                Scheme::Twilio(crate::verify::special::TwilioScheme::new(url, &raw)),
                "twilio".into(),
            ),
            sources,
            handshakes,
            verify_token,
            hook_secret_file,
            reject_status: None,
        });
    }
    if matches!(preset.map(|p| p.kind), Some(presets::Kind::ClientState)) {
        if let Some(h) = &hmac_node {
            h.node()
                .err(errs, "`hmac` fields do not apply to this scheme");
        }
        if errs.0.len() != before {
            return None;
        }
        return Some(VerifySection {
            reject_status: None,
            verifier: Verifier::new(
                Scheme::ClientState(token::ClientStateScheme::new(&raw)),
                preset.map(|p| p.id).unwrap_or("ms-graph").into(),
            ),
            sources,
            handshakes,
            verify_token,
            hook_secret_file,
        });
    }
    if token_spec.is_some() || token_node.is_some() || is_basic {
        for (n, key) in [
            (&tolerance_node, "tolerance"),
            (&future_node, "future_tolerance"),
        ] {
            if let Some(n) = n {
                n.node().err(
                    errs,
                    format!("`{key}` applies to signed timestamps; this scheme has none"),
                );
            }
        }
        if let Some(h) = &hmac_node {
            h.node().err(
                errs,
                "`hmac` fields do not apply to a token or basic-auth scheme",
            );
        }
        if is_basic && !errs.0.iter().skip(before).any(|_| true) {
            for s in &secrets {
                if !s.bytes.contains(&b':') {
                    errs.push(&s.path, "a basic-auth secret is written user:password");
                }
            }
        }
        if errs.0.len() != before {
            return None;
        }
        let name = preset.map(|p| p.id.to_string()).unwrap_or_else(|| {
            if is_basic {
                "basic".into()
            } else {
                "token".into()
            }
        });
        let scheme = match token_spec {
            Some((header, prefix)) => Scheme::Token(token::TokenScheme::new(header, prefix, &raw)),
            None => Scheme::Basic(token::BasicScheme::new(&raw)),
        };
        return Some(VerifySection {
            reject_status: None,
            verifier: Verifier::new(scheme, name),
            sources,
            handshakes,
            verify_token,
            hook_secret_file,
        });
    }

    let hmac_preset = match preset.map(|p| p.kind) {
        Some(presets::Kind::Hmac(h)) => Some(h),
        _ => None,
    };
    let spec = read_hmac(
        hmac_preset,
        hmac_node.as_ref().map(|n| n.node()),
        Windows {
            tolerance,
            future_tolerance,
            url,
        },
        &path,
        errs,
    );
    // Keys are derived from the secrets as the scheme says (base64 after `whsec_`, …).
    let mut keys = Vec::new();
    if let Some(spec) = &spec {
        for s in &secrets {
            match spec.secret_encoding.decode(&s.bytes) {
                Ok(k) => keys.push(k),
                Err(e) => errs.push(
                    &s.path,
                    format!("{e} (secret_encoding {})", spec.secret_encoding.name()),
                ),
            }
        }
    }
    if errs.0.len() != before {
        return None;
    }
    let spec = spec?;
    let name = match (preset, hmac_node.is_some()) {
        (Some(p), false) => p.id.to_string(),
        (Some(p), true) => format!("{}+custom", p.id),
        (None, _) => format!("hmac-{}", spec.algorithm.name()),
    };
    Some(VerifySection {
        reject_status: None,
        verifier: Verifier::new(Scheme::Hmac(Box::new(HmacScheme::new(spec, &keys))), name),
        sources,
        handshakes,
        verify_token,
        hook_secret_file,
    })
}

/// `token: { header: X-Gitlab-Token, prefix: "Bearer " }`.
fn read_token(node: Node<'_>, errs: &mut Errors) -> Option<(HeaderName, String)> {
    let mut m = node.map(errs)?;
    let header = m
        .require("header", errs)
        .and_then(|n| n.node().parsed(errs, header_name));
    let prefix = m
        .get("prefix")
        .and_then(|n| n.node().string(errs))
        .unwrap_or_default();
    m.finish(errs);
    Some((header?, prefix))
}

/// The route-level values that shape an HMAC scheme's checks.
struct Windows {
    tolerance: Option<Duration>,
    future_tolerance: Option<Duration>,
    url: Option<String>,
}

/// Builds the HMAC spec: the preset's values, then any field of `hmac` over them.
fn read_hmac(
    preset: Option<presets::HmacPreset>,
    hmac: Option<Node<'_>>,
    windows: Windows,
    verify_path: &str,
    errs: &mut Errors,
) -> Option<HmacSpec> {
    let hmac_path = format!("{verify_path}.hmac");
    let before = errs.0.len();
    // Start from the preset (or the plain defaults), as a spec.
    let mut spec = match preset.map(|p| p.spec()) {
        Some(Ok(spec)) => spec,
        Some(Err(e)) => {
            errs.push(verify_path, format!("internal preset error: {e}"));
            return None;
        }
        None => HmacSpec::simple(
            Algorithm::Sha256,
            HeaderName::from_static("x-signature"),
            Encoding::Hex,
            Template::compile("{body}").expect("valid"),
        ),
    };
    let mut header_set = preset.is_some();
    let mut signed_path = format!("{hmac_path}.signed");
    let mut signed_src: Option<String> = None;

    if let Some(node) = hmac {
        let mut m = node.map(errs)?;
        if let Some(a) = m
            .get("algorithm")
            .and_then(|n| n.node().parsed(errs, Algorithm::parse))
        {
            spec.algorithm = a;
        }
        if let Some(h) = m
            .get("header")
            .and_then(|n| n.node().parsed(errs, header_name))
        {
            spec.header = h;
            header_set = true;
        }
        if let Some(p) = m.get("prefix").and_then(|n| n.node().string(errs)) {
            spec.prefix = p;
        }
        if let Some(b) = m.get("prefix_optional").and_then(|n| n.node().bool(errs)) {
            spec.prefix_optional = b;
        }
        if let Some(e) = m
            .get("encoding")
            .and_then(|n| n.node().parsed(errs, Encoding::parse))
        {
            spec.encoding = e;
        }
        if let Some(n) = m.get("signed") {
            signed_path = n.path.clone();
            signed_src = n.node().string(errs);
        }
        // The header's shape.
        let format = m.get("format").and_then(|n| {
            n.node().parsed(errs, |s| match s {
                "bare" | "pairs" => Ok(s.to_string()),
                _ => Err(format!("unknown format {s:?} (use bare or pairs)")),
            })
        });
        let one_char = |s: &str| -> Result<char, String> {
            let mut c = s.chars();
            match (c.next(), c.next()) {
                (Some(ch), None) => Ok(ch),
                _ => Err(format!("{s:?} must be a single character")),
            }
        };
        let separator = m
            .get("separator")
            .and_then(|n| n.node().parsed(errs, one_char));
        let assign = m
            .get("assign")
            .and_then(|n| n.node().parsed(errs, one_char));
        let keys = m
            .get("signature_keys")
            .and_then(|n| n.node().each(errs, |k, e| k.non_empty(e)));
        match (format.as_deref(), &mut spec.format) {
            (Some("bare"), f) => *f = Format::Bare,
            (Some("pairs"), f @ Format::Bare) => {
                *f = Format::Pairs {
                    separator: separator.unwrap_or(','),
                    assign: assign.unwrap_or('='),
                    signature_keys: keys.clone().unwrap_or_else(|| vec!["v1".to_string()]),
                }
            }
            _ => {}
        }
        if let Format::Pairs {
            separator: s,
            assign: a,
            signature_keys: k,
        } = &mut spec.format
        {
            if let Some(v) = separator {
                *s = v;
            }
            if let Some(v) = assign {
                *a = v;
            }
            if let Some(v) = keys {
                *k = v;
            }
            if k.is_empty() {
                errs.push(
                    &format!("{hmac_path}.signature_keys"),
                    "needs at least one key",
                );
            }
        } else if separator.is_some() || assign.is_some() {
            errs.push(
                &format!("{hmac_path}.format"),
                "`separator`, `assign` and `signature_keys` need `format: pairs`",
            );
        }
        // The timestamp: at most one source.
        let ts_header = m
            .get("timestamp_header")
            .and_then(|n| n.node().parsed(errs, header_name));
        let ts_key = m
            .get("timestamp_key")
            .and_then(|n| n.node().non_empty(errs));
        let ts_json = m
            .get("timestamp_json")
            .and_then(|n| n.node().non_empty(errs));
        let ts_unit = m
            .get("timestamp_format")
            .and_then(|n| n.node().parsed(errs, TimeUnit::parse));
        let sources = [ts_header.is_some(), ts_key.is_some(), ts_json.is_some()];
        if sources.iter().filter(|s| **s).count() > 1 {
            errs.push(
                &hmac_path,
                "choose one of timestamp_header, timestamp_key and timestamp_json",
            );
        }
        let source = ts_header
            .map(TimestampSource::Header)
            .or(ts_key.map(TimestampSource::SignatureKey))
            .or(ts_json.map(|p| TimestampSource::Json(p.split('.').map(str::to_string).collect())));
        match (source, &mut spec.timestamp) {
            (Some(source), Some(ts)) => ts.source = source,
            (Some(source), t @ None) => {
                *t = Some(TimestampSpec {
                    source,
                    unit: TimeUnit::Seconds,
                })
            }
            (None, _) => {}
        }
        match (ts_unit, &mut spec.timestamp) {
            (Some(unit), Some(ts)) => ts.unit = unit,
            (Some(_), None) => errs.push(
                &format!("{hmac_path}.timestamp_format"),
                "there is no timestamp to read",
            ),
            _ => {}
        }
        if let Some(h) = m
            .get("id_header")
            .and_then(|n| n.node().parsed(errs, header_name))
        {
            spec.id_header = Some(h);
        }
        let secret_prefix = m.get("secret_prefix").and_then(|n| n.node().string(errs));
        if let Some(enc) = m.get("secret_encoding") {
            let prefix = secret_prefix.clone().unwrap_or_default();
            if let Some(e) = enc
                .node()
                .parsed(errs, |s| SecretEncoding::parse(s, &prefix))
            {
                spec.secret_encoding = e;
            }
        } else if let Some(p) = secret_prefix {
            match &mut spec.secret_encoding {
                SecretEncoding::Base64 { prefix } | SecretEncoding::Base64IfPrefixed { prefix } => {
                    *prefix = p
                }
                _ => errs.push(
                    &format!("{hmac_path}.secret_prefix"),
                    "needs secret_encoding base64 or base64_if_prefixed",
                ),
            }
        }
        m.finish(errs);
    }
    if !header_set {
        errs.push(
            &format!("{hmac_path}.header"),
            "is required: the header that carries the signature",
        );
    }
    if let Some(src) = &signed_src {
        match Template::compile(src) {
            Ok(t) => spec.template = t,
            Err(e) => errs.push(&signed_path, e),
        }
    }
    if let Some(t) = windows.tolerance {
        spec.tolerance = t;
        spec.future_tolerance = t;
    }
    if let Some(t) = windows.future_tolerance {
        spec.future_tolerance = t;
    }
    spec.url = windows.url;

    // The pieces must fit together.
    let t = &spec.template;
    if t.uses(&Part::Timestamp) && spec.timestamp.is_none() {
        errs.push(
            &signed_path,
            "uses {timestamp}: set hmac.timestamp_header (or timestamp_key, timestamp_json)",
        );
    }
    if t.uses(&Part::Id) && spec.id_header.is_none() {
        errs.push(
            &signed_path,
            "uses {id}: set hmac.id_header to the header that carries it",
        );
    }
    if t.uses(&Part::Url) && spec.url.is_none() {
        errs.push(&format!("{verify_path}.url"), "is required: this scheme signs the URL the sender calls; give it as registered with the sender");
    }
    if let Some(ts) = &spec.timestamp {
        let signed_elsewhere = matches!(ts.source, TimestampSource::Json(_));
        if !t.uses(&Part::Timestamp) && !signed_elsewhere {
            errs.push(
                &format!("{hmac_path}.timestamp_header"),
                "the template does not sign {timestamp}, so an attacker could change it: add {timestamp} to `signed`",
            );
        }
        if matches!(ts.source, TimestampSource::SignatureKey(_)) && spec.format == Format::Bare {
            errs.push(
                &format!("{hmac_path}.timestamp_key"),
                "needs `format: pairs`",
            );
        }
    } else if windows.tolerance.is_some() || windows.future_tolerance.is_some() {
        errs.push(
            &format!("{verify_path}.tolerance"),
            "this scheme carries no timestamp to check",
        );
    }
    if spec.format != Format::Bare && !spec.prefix.is_empty() {
        errs.push(
            &format!("{hmac_path}.prefix"),
            "`prefix` applies to `format: bare`; a pairs header names its keys instead",
        );
    }
    if errs.0.len() != before {
        return None;
    }
    Some(spec)
}

/// One configured secret, with where it came from.
struct SecretItem {
    bytes: Vec<u8>,
    source: String,
    path: String,
}

/// Reads `secrets` and `secret_files`; every secret must be non-empty.
fn read_secrets(
    inline: Option<Node<'_>>,
    files: Option<Node<'_>>,
    verify_path: &str,
    may_be_empty: bool,
    errs: &mut Errors,
) -> Vec<SecretItem> {
    let mut secrets = Vec::new();
    if let Some(node) = inline {
        if let Some(items) = node.list(errs) {
            for item in &items {
                let n = item.node();
                let Some(raw) = n.raw_str(errs) else { continue };
                if let Some(s) = n.string(errs) {
                    if s.is_empty() {
                        n.err(errs, "is empty");
                    } else {
                        secrets.push(SecretItem {
                            bytes: s.into_bytes(),
                            source: expand::describe_source(&raw),
                            path: item.path.clone(),
                        });
                    }
                }
            }
        }
    }
    if let Some(node) = files {
        if let Some(items) = node.list(errs) {
            for item in &items {
                let n = item.node();
                let Some(path) = n.non_empty(errs) else {
                    continue;
                };
                match std::fs::read(&path) {
                    Ok(mut bytes) => {
                        // Files written by `echo` end in a newline that is not part of the secret.
                        if bytes.ends_with(b"\n") {
                            bytes.pop();
                            if bytes.ends_with(b"\r") {
                                bytes.pop();
                            }
                        }
                        if bytes.is_empty() {
                            n.err(errs, format!("{path} is empty"));
                        } else {
                            secrets.push(SecretItem {
                                bytes,
                                source: format!("file:{path}"),
                                path: item.path.clone(),
                            });
                        }
                    }
                    Err(e) => n.err(errs, format!("cannot read {path}: {e}")),
                }
            }
        }
    }
    if secrets.is_empty()
        && !may_be_empty
        && !errs.0.iter().any(|e| e.path.starts_with(verify_path))
    {
        errs.push(
            verify_path,
            "needs at least one secret in `secrets` or `secret_files`",
        );
    }
    secrets
}
#[cfg(test)]
mod tests;
