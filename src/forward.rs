//! The forward's decisions, as pure functions: which headers the upstream gets
//! (hop-by-hop fields removed; `X-Forwarded-*`, `X-Request-Id` and the `X-Hookgate-*`
//! fields set), which path, and what the sender sees for the upstream's answer (2xx and
//! 4xx pass through, 5xx → 502). The connection pool that carries the request is
//! [`crate::upstream`].

use crate::answer::{push_line, Decimal};
use crate::config::Upstream;
use crate::fields::Fields;
use crate::pipeline::Reject;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use std::borrow::Cow;

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// The request id's field name, for the places that write lines rather than a map.
pub const X_REQUEST_ID_NAME: &str = "x-request-id";
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static(X_REQUEST_ID_NAME);

/// Whether a field describes one hop rather than the message (RFC 9110 §7.6.1):
/// Connection, Keep-Alive, TE, Trailer, Transfer-Encoding, Upgrade and every Proxy-*.
/// `name` is in lower case, as `HeaderName` and [`Fields`] keep names.
pub fn is_hop_by_hop(name: impl AsRef<[u8]>) -> bool {
    match name.as_ref() {
        b"connection" | b"keep-alive" | b"te" | b"trailer" | b"transfer-encoding" | b"upgrade" => {
            true
        }
        other => other.starts_with(b"proxy-"),
    }
}

/// The field names a message's Connection header lists (hop-by-hop by declaration).
/// Most requests have none, so this allocates nothing unless there is one.
pub fn connection_listed(headers: &Fields) -> Vec<&str> {
    let mut listed = Vec::new();
    for value in headers.get_all(&header::CONNECTION) {
        if let Ok(text) = value.to_str() {
            listed.extend(text.split(',').map(str::trim).filter(|t| !t.is_empty()));
        }
    }
    listed
}

/// What the gateway knows about a request that the upstream should learn too.
pub struct ForwardInfo<'a> {
    /// The TCP peer's address as text (rendered once per connection).
    pub peer: &'a str,
    /// Whether the peer is a trusted proxy (whose X-Forwarded-* we keep and extend).
    pub peer_trusted: bool,
    /// `http` or `https`: how the request reached us.
    pub proto: &'static str,
    /// The Host the sender asked for (the Host field, or the HTTP/2 authority).
    pub original_host: Option<&'a [u8]>,
    pub request_id: &'a [u8],
    pub route: &'a HeaderValue,
    pub verified: &'a HeaderValue,
    pub upstream_host: &'a HeaderValue,
    pub body_len: usize,
    /// This hop's trace context, sent in place of the sender's; `None` sends the
    /// fields as they are (a stored delivery's already hold it).
    pub traceparent: Option<&'a str>,
}

/// Writes the upstream request head into `out` (cleared first): the request line, the
/// sender's end-to-end fields, then ours. Filtering while writing leaves the sender's
/// header map untouched and costs one pass over it. Dropped: hop-by-hop fields and the
/// ones Connection names, Host and Content-Length (ours replace them), Expect (the body
/// is already read), any X-Hookgate-* (only we may claim a route or a verification),
/// X-Request-Id (ours, which keeps a sane one the sender sent), and X-Forwarded-* unless
/// the peer is a trusted proxy.
pub fn write_upstream_head(
    out: &mut Vec<u8>,
    method: &Method,
    path: &str,
    headers: &Fields,
    info: &ForwardInfo<'_>,
) {
    out.clear();
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");

    let listed = connection_listed(headers);
    let mut kept_proto = false;
    let mut kept_host = false;
    let mut chain_started = false;
    let mut chain: Vec<u8> = Vec::new();
    for (name, value) in headers.iter() {
        if is_hop_by_hop(name)
            || name == b"host"
            || name == b"content-length"
            || name == b"expect"
            || name == X_REQUEST_ID_NAME.as_bytes()
            || name.starts_with(b"x-hookgate-")
            || (info.traceparent.is_some() && name == crate::trace::TRACEPARENT.as_bytes())
            || listed
                .iter()
                .any(|l| l.as_bytes().eq_ignore_ascii_case(name))
        {
            continue;
        }
        if name == X_FORWARDED_FOR.as_str().as_bytes() {
            if info.peer_trusted {
                if chain_started {
                    chain.extend_from_slice(b", ");
                }
                chain.extend_from_slice(value.as_bytes().trim_ascii());
                chain_started = true;
            }
            continue;
        }
        if name == X_FORWARDED_PROTO.as_str().as_bytes()
            || name == X_FORWARDED_HOST.as_str().as_bytes()
        {
            if !info.peer_trusted {
                continue;
            }
            if name == X_FORWARDED_PROTO.as_str().as_bytes() {
                kept_proto = true;
            } else {
                kept_host = true;
            }
        }
        push_line(out, name, value.as_bytes());
    }

    push_line(out, b"host", info.upstream_host.as_bytes());
    let length = Decimal::new(info.body_len as u64);
    push_line(out, b"content-length", length.as_bytes());
    out.extend_from_slice(b"x-forwarded-for: ");
    if chain_started {
        out.extend_from_slice(&chain);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(info.peer.as_bytes());
    out.extend_from_slice(b"\r\n");
    if !kept_proto {
        push_line(out, b"x-forwarded-proto", info.proto.as_bytes());
    }
    if let (false, Some(host)) = (kept_host, info.original_host) {
        push_line(out, b"x-forwarded-host", host);
    }
    push_line(out, X_REQUEST_ID_NAME.as_bytes(), info.request_id);
    push_line(out, b"x-hookgate-route", info.route.as_bytes());
    push_line(out, b"x-hookgate-verified", info.verified.as_bytes());
    if let Some(trace) = info.traceparent {
        push_line(out, b"traceparent", trace.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
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
    use http::HeaderMap;

    fn hv(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    /// Writes the head for `headers` and parses it back into (name, value) pairs.
    fn forwarded(
        h: &HeaderMap,
        peer: &str,
        trusted: bool,
        original_host: Option<&[u8]>,
    ) -> Vec<(String, String)> {
        forwarded_with(h, peer, trusted, original_host, None)
    }

    fn forwarded_with(
        h: &HeaderMap,
        peer: &str,
        trusted: bool,
        original_host: Option<&[u8]>,
        traceparent: Option<&str>,
    ) -> Vec<(String, String)> {
        let vals = [hv("req-1"), hv("expel"), hv("expel"), hv("127.0.0.1:9000")];
        let info = ForwardInfo {
            peer,
            peer_trusted: trusted,
            proto: "http",
            original_host,
            request_id: b"req-1",
            route: &vals[1],
            verified: &vals[2],
            upstream_host: &vals[3],
            body_len: 42,
            traceparent,
        };
        let mut out = Vec::new();
        write_upstream_head(&mut out, &Method::POST, "/in?a=1", &Fields::from(h), &info);
        let mut slots = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut slots);
        assert_eq!(
            req.parse(&out).unwrap(),
            httparse::Status::Complete(out.len())
        );
        assert_eq!(
            (req.method, req.path, req.version),
            (Some("POST"), Some("/in?a=1"), Some(1))
        );
        req.headers
            .iter()
            .map(|h| {
                (
                    h.name.to_string(),
                    String::from_utf8(h.value.to_vec()).unwrap(),
                )
            })
            .collect()
    }

    fn all<'a>(fields: &'a [(String, String)], name: &str) -> Vec<&'a str> {
        fields
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
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
        h.insert("x-request-id", hv("sender-chosen"));
        h.insert("expel-signature-256", hv("sha256=abc"));
        h.insert(header::CONTENT_TYPE, hv("application/json"));
        h.append("x-multi", hv("1"));
        h.append("x-multi", hv("2"));
        h.append(X_FORWARDED_FOR, hv("1.1.1.1"));
        h.append(X_FORWARDED_FOR, hv("2.2.2.2"));
        h.insert(X_FORWARDED_PROTO, hv("https"));
        h
    }

    #[test]
    fn hop_by_hop_and_spoofed_fields_are_removed() {
        let f = forwarded(&sample(), "198.51.100.7", false, Some(b"hooks.example.com"));
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
            assert!(all(&f, gone).is_empty(), "{gone} should be stripped");
        }
        assert_eq!(all(&f, "expel-signature-256"), ["sha256=abc"]);
        assert_eq!(all(&f, "content-type"), ["application/json"]);
        assert_eq!(all(&f, "x-multi"), ["1", "2"]);
        assert_eq!(all(&f, "host"), ["127.0.0.1:9000"]);
        assert_eq!(all(&f, "content-length"), ["42"]);
        assert_eq!(all(&f, "x-hookgate-verified"), ["expel"]);
        assert_eq!(all(&f, "x-hookgate-route"), ["expel"]);
        assert_eq!(all(&f, "x-request-id"), ["req-1"]);
    }

    #[test]
    fn this_hops_trace_context_replaces_the_senders() {
        const OURS: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-01";
        let mut h = sample();
        h.append(
            crate::trace::TRACEPARENT,
            hv("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        let f = forwarded_with(&h, "198.51.100.7", false, None, Some(OURS));
        assert_eq!(all(&f, "traceparent"), [OURS]);
        // A stored delivery's fields already hold this hop's: sent as they are.
        let f = forwarded_with(&h, "198.51.100.7", false, None, None);
        assert_eq!(
            all(&f, "traceparent"),
            ["00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"]
        );
        // The sender's Connection may name traceparent: its own is dropped, ours sent
        // once (found by the upstream_head fuzz target's smoke run).
        h.insert(header::CONNECTION, hv("traceparent"));
        let f = forwarded_with(&h, "198.51.100.7", false, None, Some(OURS));
        assert_eq!(all(&f, "traceparent"), [OURS]);
        let f = forwarded_with(&h, "198.51.100.7", false, None, None);
        assert!(all(&f, "traceparent").is_empty());
    }

    #[test]
    fn forwarded_fields_from_an_untrusted_peer_are_replaced() {
        let f = forwarded(&sample(), "198.51.100.7", false, Some(b"hooks.example.com"));
        assert_eq!(all(&f, "x-forwarded-for"), ["198.51.100.7"]);
        assert_eq!(all(&f, "x-forwarded-proto"), ["http"]);
        assert_eq!(all(&f, "x-forwarded-host"), ["hooks.example.com"]);
        let f = forwarded(&sample(), "198.51.100.7", false, None);
        assert!(all(&f, "x-forwarded-host").is_empty());
    }

    #[test]
    fn forwarded_fields_from_a_trusted_proxy_are_extended() {
        let f = forwarded(&sample(), "10.0.0.1", true, Some(b"hooks.example.com"));
        assert_eq!(all(&f, "x-forwarded-for"), ["1.1.1.1, 2.2.2.2, 10.0.0.1"]);
        assert_eq!(all(&f, "x-forwarded-proto"), ["https"]);
        assert_eq!(all(&f, "x-forwarded-host"), ["hooks.example.com"]);
        let mut h = sample();
        h.remove(X_FORWARDED_FOR);
        let f = forwarded(&h, "10.0.0.1", true, None);
        assert_eq!(all(&f, "x-forwarded-for"), ["10.0.0.1"]);
    }

    #[test]
    fn hop_by_hop_names() {
        for n in [
            "connection",
            "keep-alive",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "proxy-authorization",
            "proxy-x",
        ] {
            assert!(is_hop_by_hop(n), "{n}");
        }
        for n in ["content-type", "x-proxy", "trailers", "expel-signature-256"] {
            assert!(!is_hop_by_hop(n), "{n}");
        }
        assert!(connection_listed(&Fields::default()).is_empty());
        let sample = Fields::from(&sample());
        assert_eq!(connection_listed(&sample), ["keep-alive", "X-Secret-Hop"]);
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
