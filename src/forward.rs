//! The forward's decisions, as pure functions: which headers the upstream gets
//! (hop-by-hop fields removed; `X-Forwarded-*`, `X-Request-Id` and the `X-Hookgate-*`
//! fields set), which path, and what the sender sees for the upstream's answer (2xx and
//! 4xx pass through, 5xx → 502). The connection pool that carries the request is
//! [`crate::upstream`].

use crate::config::Upstream;
use crate::pipeline::Reject;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::StatusCode;
use std::borrow::Cow;
use std::net::IpAddr;

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const X_HOOKGATE_ROUTE: HeaderName = HeaderName::from_static("x-hookgate-route");
pub const X_HOOKGATE_VERIFIED: HeaderName = HeaderName::from_static("x-hookgate-verified");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Removes the fields that describe one hop, not the message: Connection and every field
/// it names, Keep-Alive, TE, Trailer, Transfer-Encoding, Upgrade and Proxy-*.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        KEEP_ALIVE,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::PROXY_AUTHORIZATION,
        header::PROXY_AUTHENTICATE,
        PROXY_CONNECTION,
    ] {
        headers.remove(name);
    }
    remove_prefixed(headers, "proxy-");
}

/// Removes every field whose name starts with `prefix` (lower case). Allocates only
/// when there is something to remove.
fn remove_prefixed(headers: &mut HeaderMap, prefix: &str) {
    if headers.keys().any(|k| k.as_str().starts_with(prefix)) {
        let names: Vec<HeaderName> = headers
            .keys()
            .filter(|k| k.as_str().starts_with(prefix))
            .cloned()
            .collect();
        for name in names {
            headers.remove(name);
        }
    }
}

/// What the gateway knows about a request that the upstream should learn too.
pub struct ForwardInfo<'a> {
    /// The TCP peer.
    pub peer: IpAddr,
    /// Whether the peer is a trusted proxy (whose X-Forwarded-* we keep and extend).
    pub peer_trusted: bool,
    /// `http` or `https`: how the request reached us.
    pub proto: &'static str,
    pub request_id: &'a HeaderValue,
    pub route: &'a HeaderValue,
    pub verified: &'a HeaderValue,
    pub upstream_host: &'a HeaderValue,
    pub body_len: usize,
}

/// Rewrites the sender's headers, in place, into the upstream request's headers.
pub fn upstream_headers(headers: &mut HeaderMap, info: &ForwardInfo<'_>) {
    let original_host = headers.remove(header::HOST);
    strip_hop_by_hop(headers);
    // The body has been read already, so the upstream must not be asked to continue.
    headers.remove(header::EXPECT);
    // Nobody outside may claim a route or a verification: only we set these.
    remove_prefixed(headers, "x-hookgate-");

    let peer = info.peer.to_string();
    let xff = if info.peer_trusted {
        let chain: Vec<&str> = headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if chain.is_empty() {
            peer
        } else {
            format!("{}, {peer}", chain.join(", "))
        }
    } else {
        peer
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        headers.insert(X_FORWARDED_FOR, v);
    }
    if !(info.peer_trusted && headers.contains_key(&X_FORWARDED_PROTO)) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(info.proto));
    }
    if !(info.peer_trusted && headers.contains_key(&X_FORWARDED_HOST)) {
        match original_host {
            Some(h) => {
                headers.insert(X_FORWARDED_HOST, h);
            }
            None => {
                headers.remove(&X_FORWARDED_HOST);
            }
        }
    }
    headers.insert(X_REQUEST_ID, info.request_id.clone());
    headers.insert(X_HOOKGATE_ROUTE, info.route.clone());
    headers.insert(X_HOOKGATE_VERIFIED, info.verified.clone());
    headers.insert(header::HOST, info.upstream_host.clone());
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(info.body_len));
}

/// The upstream request's path: the upstream's path (and own query), plus the
/// request's query. Borrowed when the request has no query, as webhooks rarely do.
pub fn upstream_path<'a>(upstream: &'a Upstream, query: Option<&str>) -> Cow<'a, str> {
    let Some(query) = query.filter(|q| !q.is_empty()) else {
        return Cow::Borrowed(&upstream.path_and_query);
    };
    let sep = if upstream.path_and_query.contains('?') {
        '&'
    } else {
        '?'
    };
    let mut pq = String::with_capacity(upstream.path_and_query.len() + 1 + query.len());
    pq.push_str(&upstream.path_and_query);
    pq.push(sep);
    pq.push_str(query);
    Cow::Owned(pq)
}

/// What the sender sees for the upstream's status: 2xx and 4xx pass through; 5xx and
/// anything a sender cannot act on (1xx, 3xx: webhook senders do not follow redirects)
/// become a 502 so that the sender retries.
pub fn map_upstream_status(status: StatusCode) -> Result<StatusCode, Reject> {
    if status.is_success() || status.is_client_error() {
        Ok(status)
    } else {
        Err(Reject::UpstreamStatus)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_upstream;

    fn hv(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    fn info<'a>(peer: &str, trusted: bool, vals: &'a [HeaderValue; 4]) -> ForwardInfo<'a> {
        ForwardInfo {
            peer: peer.parse().unwrap(),
            peer_trusted: trusted,
            proto: "http",
            request_id: &vals[0],
            route: &vals[1],
            verified: &vals[2],
            upstream_host: &vals[3],
            body_len: 42,
        }
    }

    fn sample() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, hv("hooks.example.com"));
        h.insert(header::CONNECTION, hv("keep-alive, X-Secret-Hop"));
        h.insert("x-secret-hop", hv("1"));
        h.insert("keep-alive", hv("timeout=5"));
        h.insert(header::TE, hv("trailers"));
        h.insert(header::TRAILER, hv("x-foo"));
        h.insert(header::TRANSFER_ENCODING, hv("chunked"));
        h.insert(header::UPGRADE, hv("websocket"));
        h.insert(header::PROXY_AUTHORIZATION, hv("Basic x"));
        h.insert("proxy-custom", hv("x"));
        h.insert(header::EXPECT, hv("100-continue"));
        h.insert(header::CONTENT_LENGTH, hv("999"));
        h.insert("x-hookgate-verified", hv("forged"));
        h.insert("expel-signature-256", hv("sha256=abc"));
        h.insert(header::CONTENT_TYPE, hv("application/json"));
        h.append(X_FORWARDED_FOR, hv("1.1.1.1"));
        h.append(X_FORWARDED_FOR, hv("2.2.2.2"));
        h.insert(X_FORWARDED_PROTO, hv("https"));
        h
    }

    #[test]
    fn hop_by_hop_and_spoofed_fields_are_removed() {
        let vals = [hv("req-1"), hv("expel"), hv("expel"), hv("127.0.0.1:9000")];
        let mut h = sample();
        upstream_headers(&mut h, &info("198.51.100.7", false, &vals));
        for gone in [
            "connection",
            "x-secret-hop",
            "keep-alive",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "proxy-authorization",
            "proxy-custom",
            "expect",
        ] {
            assert!(!h.contains_key(gone), "{gone} should be stripped");
        }
        assert_eq!(h["expel-signature-256"], "sha256=abc");
        assert_eq!(h[header::CONTENT_TYPE], "application/json");
        assert_eq!(h[header::HOST], "127.0.0.1:9000");
        assert_eq!(h[header::CONTENT_LENGTH], "42");
        assert_eq!(h["x-hookgate-verified"], "expel");
        assert_eq!(h.get_all("x-hookgate-verified").iter().count(), 1);
        assert_eq!(h["x-hookgate-route"], "expel");
        assert_eq!(h["x-request-id"], "req-1");
    }

    #[test]
    fn forwarded_fields_from_an_untrusted_peer_are_replaced() {
        let vals = [hv("r"), hv("a"), hv("b"), hv("up:1")];
        let mut h = sample();
        upstream_headers(&mut h, &info("198.51.100.7", false, &vals));
        assert_eq!(h.get_all(X_FORWARDED_FOR).iter().count(), 1);
        assert_eq!(h[X_FORWARDED_FOR], "198.51.100.7");
        assert_eq!(h[X_FORWARDED_PROTO], "http");
        assert_eq!(h[X_FORWARDED_HOST], "hooks.example.com");
    }

    #[test]
    fn forwarded_fields_from_a_trusted_proxy_are_extended() {
        let vals = [hv("r"), hv("a"), hv("b"), hv("up:1")];
        let mut h = sample();
        upstream_headers(&mut h, &info("10.0.0.1", true, &vals));
        assert_eq!(h[X_FORWARDED_FOR], "1.1.1.1, 2.2.2.2, 10.0.0.1");
        assert_eq!(h[X_FORWARDED_PROTO], "https");
    }

    #[test]
    fn path_keeps_the_request_query() {
        let up = parse_upstream("http://127.0.0.1:9000/expel").unwrap();
        assert!(matches!(upstream_path(&up, None), Cow::Borrowed("/expel")));
        assert_eq!(upstream_path(&up, Some("")), "/expel");
        assert_eq!(upstream_path(&up, Some("a=1&b=2")), "/expel?a=1&b=2");
        let up = parse_upstream("http://127.0.0.1:9000/in?src=gw").unwrap();
        assert_eq!(upstream_path(&up, Some("a=1")), "/in?src=gw&a=1");
        let up = parse_upstream("http://upstream.internal").unwrap();
        assert_eq!(upstream_path(&up, None), "/");
    }

    #[test]
    fn status_mapping() {
        for (up, want) in [
            (200, Ok(200)),
            (202, Ok(202)),
            (204, Ok(204)),
            (400, Ok(400)),
            (406, Ok(406)),
            (429, Ok(429)),
        ] {
            assert_eq!(
                map_upstream_status(StatusCode::from_u16(up).unwrap()).map(|s| s.as_u16()),
                want
            );
        }
        for up in [500, 502, 503, 504, 301, 302, 101] {
            assert_eq!(
                map_upstream_status(StatusCode::from_u16(up).unwrap()),
                Err(Reject::UpstreamStatus)
            );
        }
    }
}
