//! The listener's sections: `tls`, `limits` (connection hygiene) and `reload`, and a
//! route's `upstream_tls`. Certificates and keys are read and checked here, so `check`
//! and a reload refuse a broken one with its key path.

use super::tree::{MapReader, Node};
use super::{units, Errors};
use crate::tls::{self, ClientAuth, ClientTls, SniResolver};
use http::uri::Authority;
use rustls::pki_types::ServerName;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The public listener's TLS, ready to hand to an acceptor.
#[derive(Debug, Clone)]
pub struct TlsListener {
    pub server: Arc<rustls::ServerConfig>,
    pub handshake_timeout: Duration,
    /// The files it was built from (watched for changes; shown by `check`).
    pub files: Vec<PathBuf>,
    pub client_auth: Option<ClientAuth>,
    pub tls13_only: bool,
}

/// Connection hygiene: every limit the listener enforces (../shared/hardening.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Open connections at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// Open connections at once from one client address (0: no cap). Peers in
    /// `trusted_proxies` are exempt: behind a load balancer every sender shares its address.
    pub max_connections_per_ip: usize,
    /// From the first byte of a request (or the connection's start) to its whole head.
    pub header_timeout: Duration,
    /// From the head to the whole body.
    pub body_timeout: Duration,
    /// Bytes per second a body must keep up after `body_min_rate_grace` (0: no minimum):
    /// each byte received earns `1 / body_min_rate` seconds more (Apache mod_reqtimeout's
    /// `MinRate`), within `body_timeout`.
    pub body_min_rate: u64,
    /// The time a body gets before `body_min_rate` applies.
    pub body_min_rate_grace: Duration,
    /// A keep-alive connection with no request in progress is closed after this.
    pub idle_timeout: Duration,
    /// The largest request head (431 above it).
    pub max_header_bytes: usize,
    /// The most header fields in a request (431 above it).
    pub max_headers: usize,
    /// A connection older than this (less up to 10% jitter) is wound down after its
    /// current requests: HTTP/1.1 says `Connection: close`, HTTP/2 sends GOAWAY. Zero: off.
    pub max_connection_age: Duration,
    pub h2_max_concurrent_streams: u32,
    pub h2_max_header_list: u32,
    pub h2_stream_window: u32,
    pub h2_connection_window: u32,
    pub h2_max_frame_size: u32,
    /// HTTP/2 keep-alive PINGs after this long without a frame from the peer (zero: off).
    pub h2_keepalive_interval: Duration,
    /// An unanswered keep-alive PING closes the connection after this.
    pub h2_keepalive_timeout: Duration,
    /// After the answer that ends an HTTP/1.1 connection with the client still sending
    /// (a body refused before it was read): how long in all what it sends is read and
    /// discarded, so that closing with unread bytes does not reset the connection before
    /// the client has read its answer (zero: close at once). nginx's `lingering_time`.
    pub linger_time: Duration,
    /// Lingering ends early once the client has sent nothing for this long. nginx's
    /// `lingering_timeout`.
    pub linger_timeout: Duration,
}

impl Default for Limits {
    /// The values ../shared/hardening.md recommends.
    fn default() -> Self {
        Limits {
            max_connections: 10_000,
            max_connections_per_ip: 256,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            body_min_rate: 1024,
            body_min_rate_grace: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            // Off: hardening.md proposes 1 h, but a webhook sender's connections are short
            // or idle-closed already, and an age cut only helps behind a rebalancing LB.
            max_connection_age: Duration::ZERO,
            h2_max_concurrent_streams: 100,
            h2_max_header_list: 16 * 1024,
            h2_stream_window: 64 * 1024,
            h2_connection_window: 1024 * 1024,
            h2_max_frame_size: 16 * 1024,
            h2_keepalive_interval: Duration::from_secs(30),
            h2_keepalive_timeout: Duration::from_secs(10),
            // nginx's defaults: long enough for a sender to finish uploading a body that
            // was refused by its declared size, and read the 413.
            linger_time: Duration::from_secs(30),
            linger_timeout: Duration::from_secs(5),
        }
    }
}

/// `reload: { watch, interval }`: whether file changes trigger a reload (SIGHUP always does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reload {
    pub watch: bool,
    pub interval: Duration,
}

impl Default for Reload {
    fn default() -> Self {
        Reload {
            watch: true,
            interval: Duration::from_secs(2),
        }
    }
}

/// `tls: { cert, key, sni: [{cert, key}], client_ca, client_auth, min_version,
/// handshake_timeout }`.
pub(super) fn read_tls(top: &mut MapReader<'_>, errs: &mut Errors) -> Option<TlsListener> {
    let node = top.get("tls")?;
    let mut m = node.node().map(errs)?;
    let before = errs.0.len();
    let mut files = Vec::new();
    let default = read_pair(&mut m, errs, &mut files);
    let mut by_name = Vec::new();
    if let Some(list) = m.get("sni") {
        for item in list.node().list(errs).unwrap_or_default() {
            if let Some(mut pair) = item.node().map(errs) {
                by_name.push(read_pair(&mut pair, errs, &mut files));
                pair.finish(errs);
            }
        }
    }
    let client_ca = m.get("client_ca").and_then(|n| {
        let p = PathBuf::from(n.node().non_empty(errs)?);
        files.push(p.clone());
        Some((p, n))
    });
    let client_auth = m.get("client_auth").and_then(|n| {
        n.node().parsed(errs, |s| match s {
            "required" => Ok(ClientAuth::Required),
            "optional" => Ok(ClientAuth::Optional),
            _ => Err(format!("{s:?}: use required or optional")),
        })
    });
    if client_auth.is_some() && client_ca.is_none() {
        errs.push(&m.child_path("client_auth"), "needs `client_ca`");
    }
    let tls13_only = match m.get("min_version") {
        Some(n) => n
            .node()
            .parsed(errs, |s| match s {
                "1.2" => Ok(false),
                "1.3" => Ok(true),
                _ => Err(format!("{s:?}: use \"1.2\" or \"1.3\"")),
            })
            .unwrap_or(false),
        None => false,
    };
    let handshake_timeout =
        read_positive(m.get("handshake_timeout"), errs).unwrap_or(Duration::from_secs(10));
    let path = m.path().to_string();
    m.finish(errs);
    if errs.0.len() != before {
        return None;
    }
    let default = default?;
    let by_name: Vec<_> = by_name.into_iter().collect::<Option<_>>()?;
    let auth = client_ca
        .as_ref()
        .map(|_| client_auth.unwrap_or(ClientAuth::Required));
    let server = tls::server_config(tls::ServerSettings {
        resolver: SniResolver::new(default, by_name),
        client_ca: client_ca
            .as_ref()
            .map(|(p, _)| (p.as_path(), auth.unwrap_or(ClientAuth::Required))),
        tls13_only,
    });
    match server {
        Ok(server) => Some(TlsListener {
            server,
            handshake_timeout,
            files,
            client_auth: auth,
            tls13_only,
        }),
        Err(e) => {
            let at = match &client_ca {
                Some((_, n)) => n.path.clone(),
                None => path,
            };
            errs.push(&at, e);
            None
        }
    }
}

/// `cert` and `key` in `m`, loaded and checked to belong together.
fn read_pair(
    m: &mut MapReader<'_>,
    errs: &mut Errors,
    files: &mut Vec<PathBuf>,
) -> Option<Arc<rustls::sign::CertifiedKey>> {
    let cert = m.require("cert", errs);
    let key = m.require("key", errs);
    let (cert, key) = (cert?, key?);
    let cert_path = PathBuf::from(cert.node().non_empty(errs)?);
    let key_path = PathBuf::from(key.node().non_empty(errs)?);
    files.push(cert_path.clone());
    files.push(key_path.clone());
    // Errors about the key go to `key`, everything else to `cert`.
    if let Err(e) = tls::load_key(&key_path) {
        key.node().err(errs, e);
        return None;
    }
    match tls::certified_key(&cert_path, &key_path) {
        Ok(ck) => Some(ck),
        Err(e) => {
            cert.node().err(errs, e);
            None
        }
    }
}

fn read_positive(node: Option<super::tree::Owned<'_>>, errs: &mut Errors) -> Option<Duration> {
    let n = node?;
    let d = n.node().parsed(errs, units::parse_duration)?;
    if d.is_zero() {
        n.node().err(errs, "must be more than zero");
        return None;
    }
    Some(d)
}

/// A duration where zero means off: `0s`, or a bare `0` (which cannot be misread).
fn zero_or_duration(s: &str) -> Result<Duration, String> {
    match s.trim() {
        "0" => Ok(Duration::ZERO),
        s => units::parse_duration(s),
    }
}

/// `limits: { … }`, every key optional.
pub(super) fn read_limits(top: &mut MapReader<'_>, errs: &mut Errors) -> Limits {
    let mut l = Limits::default();
    let Some(node) = top.get("limits") else {
        return l;
    };
    let Some(mut m) = node.node().map(errs) else {
        return l;
    };
    let count = |m: &mut MapReader<'_>, key, errs: &mut Errors, min: u64, max: u64| {
        let n = m.get(key)?;
        let v = n.node().u64(errs)?;
        if !(min..=max).contains(&v) {
            n.node()
                .err(errs, format!("must be between {min} and {max}"));
            return None;
        }
        Some(v)
    };
    let size = |m: &mut MapReader<'_>, key, errs: &mut Errors, min: u64, max: u64| {
        let n = m.get(key)?;
        let v = n.node().parsed(errs, units::parse_size)?;
        if !(min..=max).contains(&v) {
            n.node().err(
                errs,
                format!(
                    "must be between {} and {}",
                    units::format_size(min),
                    units::format_size(max)
                ),
            );
            return None;
        }
        Some(v)
    };
    if let Some(v) = count(&mut m, "max_connections", errs, 1, 1_000_000) {
        l.max_connections = v as usize;
    }
    if let Some(v) = count(&mut m, "max_connections_per_ip", errs, 0, 1_000_000) {
        l.max_connections_per_ip = v as usize;
    }
    for (key, slot) in [
        ("header_timeout", &mut l.header_timeout),
        ("body_timeout", &mut l.body_timeout),
        ("idle_timeout", &mut l.idle_timeout),
        ("h2_keepalive_timeout", &mut l.h2_keepalive_timeout),
        ("linger_timeout", &mut l.linger_timeout),
    ] {
        if let Some(d) = read_positive(m.get(key), errs) {
            *slot = d;
        }
    }
    // Zero turns these off (for the grace: the rate applies from the body's start).
    for (key, slot) in [
        ("body_min_rate_grace", &mut l.body_min_rate_grace),
        ("h2_keepalive_interval", &mut l.h2_keepalive_interval),
        ("linger_time", &mut l.linger_time),
    ] {
        if let Some(d) = m
            .get(key)
            .and_then(|n| n.node().parsed(errs, zero_or_duration))
        {
            *slot = d;
        }
    }
    if let Some(n) = m.get("max_connection_age") {
        // Under a second would end connections before their first request is done.
        match n.node().parsed(errs, zero_or_duration) {
            Some(d) if !d.is_zero() && d < Duration::from_secs(1) => {
                n.node().err(errs, "must be 0s (off) or at least 1s")
            }
            Some(d) => l.max_connection_age = d,
            None => {}
        }
    }
    // Bytes per second, written as a size (`1KiB`, or `1KiB/s`); 0 turns it off.
    if let Some(n) = m.get("body_min_rate") {
        let rate = n.node().parsed(errs, |s| {
            units::parse_size(s.trim().strip_suffix("/s").unwrap_or(s))
        });
        match rate {
            Some(v) if v > 1 << 30 => n.node().err(errs, "must be between 0 and 1GiB/s"),
            Some(v) => l.body_min_rate = v,
            None => {}
        }
    }
    // A grace as long as the body timeout leaves the minimum rate nothing to do. Only an
    // explicit grace is held to it: the default one (5s) is simply moot under a shorter
    // `body_timeout`, which bounds a slow body by itself.
    if let Some(n) = m.get("body_min_rate_grace") {
        if l.body_min_rate > 0 && l.body_min_rate_grace >= l.body_timeout {
            n.node().err(
                errs,
                format!(
                    "must be shorter than body_timeout ({}), or body_min_rate never applies \
                     (body_min_rate: 0 turns the minimum rate off)",
                    units::format_duration(l.body_timeout)
                ),
            );
        }
    }
    // As for the grace above: only a `linger_timeout` set here is held to `linger_time`.
    if let Some(n) = m.get("linger_timeout") {
        if !l.linger_time.is_zero() && l.linger_timeout > l.linger_time {
            n.node().err(
                errs,
                format!(
                    "must not be longer than linger_time ({}), or it never applies",
                    units::format_duration(l.linger_time)
                ),
            );
        }
    }
    // Under 8 KiB would refuse ordinary senders' heads; 1 MiB is far beyond any sender.
    if let Some(v) = size(&mut m, "max_header_bytes", errs, 8192, 1 << 20) {
        l.max_header_bytes = v as usize;
    }
    let most = crate::h1::codec::MAX_HEADERS as u64;
    if let Some(v) = count(&mut m, "max_headers", errs, 1, most) {
        l.max_headers = v as usize;
    }
    if let Some(v) = count(&mut m, "h2_max_concurrent_streams", errs, 1, 1000) {
        l.h2_max_concurrent_streams = v as u32;
    }
    if let Some(v) = size(&mut m, "h2_max_header_list", errs, 1024, 1 << 20) {
        l.h2_max_header_list = v as u32;
    }
    // RFC 9113 §6.5.2: windows up to 2^31-1, frames 16 KiB to 16 MiB - 1.
    if let Some(v) = size(&mut m, "h2_stream_window", errs, 65_535, (1 << 31) - 1) {
        l.h2_stream_window = v as u32;
    }
    if let Some(v) = size(&mut m, "h2_connection_window", errs, 65_535, (1 << 31) - 1) {
        l.h2_connection_window = v as u32;
    }
    if let Some(v) = size(&mut m, "h2_max_frame_size", errs, 16_384, (1 << 24) - 1) {
        l.h2_max_frame_size = v as u32;
    }
    m.finish(errs);
    l
}

/// `reload: { watch: true, interval: 2s }`.
pub(super) fn read_reload(top: &mut MapReader<'_>, errs: &mut Errors) -> Reload {
    let mut r = Reload::default();
    let Some(node) = top.get("reload") else {
        return r;
    };
    let Some(mut m) = node.node().map(errs) else {
        return r;
    };
    if let Some(b) = m.get("watch").and_then(|n| n.node().bool(errs)) {
        r.watch = b;
    }
    if let Some(d) = read_positive(m.get("interval"), errs) {
        r.interval = d;
    }
    m.finish(errs);
    r
}

/// `upstream_tls: { ca, cert, key, server_name }` as written (files not read yet).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct UpstreamTlsSpec {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub server_name: Option<String>,
}

pub(super) fn read_upstream_tls(node: Node<'_>, errs: &mut Errors) -> Option<UpstreamTlsSpec> {
    let mut m = node.map(errs)?;
    let path = |key: &'static str, m: &mut MapReader<'_>, errs: &mut Errors| {
        m.get(key)
            .and_then(|n| n.node().non_empty(errs))
            .map(PathBuf::from)
    };
    let spec = UpstreamTlsSpec {
        ca: path("ca", &mut m, errs),
        cert: path("cert", &mut m, errs),
        key: path("key", &mut m, errs),
        server_name: m.get("server_name").and_then(|n| {
            n.node().parsed(errs, |s| {
                ServerName::try_from(s.to_string())
                    .map(|_| s.to_string())
                    .map_err(|_| format!("{s:?} is not a DNS name or IP address"))
            })
        }),
    };
    if spec.cert.is_some() != spec.key.is_some() {
        let at = m.path().to_string();
        errs.push(&at, "`cert` and `key` go together");
    }
    m.finish(errs);
    Some(spec)
}

/// Builds each distinct upstream TLS setting once per load, so that routes with the same
/// setting share one client config (and the upstream pool keyed by it).
#[derive(Default)]
pub(super) struct ClientConfigs {
    built: HashMap<UpstreamTlsSpec, Arc<rustls::ClientConfig>>,
}

impl ClientConfigs {
    /// The [`ClientTls`] for an https upstream at `authority`; `Err` names the problem.
    pub fn get(
        &mut self,
        spec: &UpstreamTlsSpec,
        authority: &Authority,
    ) -> Result<ClientTls, String> {
        let name = spec
            .server_name
            .clone()
            .unwrap_or_else(|| authority.host().trim_matches(['[', ']']).to_string());
        let server_name = ServerName::try_from(name.clone())
            .map_err(|_| format!("{name:?} is not a DNS name or IP address"))?;
        let key = UpstreamTlsSpec {
            server_name: None,
            ..spec.clone()
        };
        let config = match self.built.get(&key) {
            Some(c) => c.clone(),
            None => {
                let c = tls::client_config(tls::ClientSettings {
                    ca: spec.ca.as_deref(),
                    identity: spec.cert.as_deref().zip(spec.key.as_deref()),
                })?;
                self.built.insert(key, c.clone());
                c
            }
        };
        Ok(ClientTls {
            config,
            server_name,
        })
    }
}

/// Files of an upstream TLS setting, for the watcher.
pub fn upstream_tls_files(spec: &UpstreamTlsSpec) -> impl Iterator<Item = &Path> {
    [&spec.ca, &spec.cert, &spec.key]
        .into_iter()
        .filter_map(|p| p.as_deref())
}
