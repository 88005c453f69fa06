//! `forward::write_upstream_head` (the request head sent to the upstream).
//!
//! Input: one flag byte (peer trusted, https, sender's Host known), then lines: the
//! method, the request's query, the sender's Host, the request id, the route name, the
//! verifier name, the upstream Host, then `name:value` fields of the sender's request.
//! Lines that are not valid as what they stand for fall back to defaults or are skipped,
//! as `http` would have refused them before the gateway saw them.
//!
//! Invariants: for any header map, the head
//! - parses completely with `httparse::Request`, with the method, path and HTTP/1.1;
//! - has exactly one `host` (the upstream's), one `content-length` (the body's), one
//!   `x-request-id` (ours), one `x-forwarded-for` (ending with the peer), and the
//!   gateway's `x-hookgate-route` and `x-hookgate-verified` exactly once each, and no
//!   other `x-hookgate-*`;
//! - has no hop-by-hop field (connection, keep-alive, te, trailer, transfer-encoding,
//!   upgrade, proxy-*), no field the sender's Connection names, no `expect`;
//! - keeps every other field of the sender, in order, with its value; `x-forwarded-*`
//!   only from a trusted peer, and then `x-forwarded-proto`/`-host` at most once
//!   each from us;
//! - with this hop's trace context, exactly one `traceparent` (ours), even when the
//!   sender's Connection names it.
#![no_main]

use hookgate::fields::Fields;
use hookgate::fuzzing::{is_hop_by_hop, write_upstream_head, ForwardInfo};

/// This hop's trace context, when the input's flags ask for one.
const TRACE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::Method;
use libfuzzer_sys::fuzz_target;

fn value_or(line: Option<&[u8]>, default: &'static str) -> HeaderValue {
    line.and_then(|l| HeaderValue::from_bytes(l).ok())
        .unwrap_or(HeaderValue::from_static(default))
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let peer_trusted = flags & 1 != 0;
    let proto = if flags & 2 != 0 { "https" } else { "http" };
    let peer = if peer_trusted {
        "10.0.0.1"
    } else {
        "198.51.100.7"
    };
    let body_len = (flags as usize) << 4;

    let mut lines = rest.split(|&b| b == b'\n');
    let method = lines
        .next()
        .and_then(|m| Method::from_bytes(m).ok())
        .unwrap_or(Method::POST);
    let query = lines.next().unwrap_or(b"");
    let mut path = b"/in".to_vec();
    if !query.is_empty() {
        path.push(b'?');
        path.extend_from_slice(query);
    }
    // What `http` accepts as a request target (HTTP/2 requests are parsed by it alone).
    let Ok(path) = PathAndQuery::try_from(path) else {
        return;
    };
    let path = path.as_str();
    let host_line = lines.next();
    let original_host = value_or(host_line, "hooks.example.com");
    let request_id = value_or(lines.next(), "req-1");
    let route = value_or(lines.next(), "expel");
    let verified = value_or(lines.next(), "expel");
    let upstream_host = value_or(lines.next(), "127.0.0.1:9000");

    let mut headers = HeaderMap::new();
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii_start()),
        ) else {
            continue;
        };
        headers.append(name, value);
    }

    let info = ForwardInfo {
        peer,
        peer_trusted,
        proto,
        original_host: (flags & 4 != 0).then_some(original_host.as_bytes()),
        request_id: request_id.as_bytes(),
        route: &route,
        verified: &verified,
        upstream_host: &upstream_host,
        body_len,
        traceparent: (flags & 8 != 0).then_some(TRACE),
    };
    let mut out = Vec::new();
    write_upstream_head(&mut out, &method, path, &Fields::from(&headers), &info);

    let mut slots = vec![httparse::EMPTY_HEADER; headers.len() + 16];
    let mut req = httparse::Request::new(&mut slots);
    let status = req.parse(&out);
    assert_eq!(
        status,
        Ok(httparse::Status::Complete(out.len())),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
    assert_eq!(req.method, Some(method.as_str()));
    assert_eq!(req.path, Some(path));
    assert_eq!(req.version, Some(1));
    let fields: Vec<(String, &[u8])> = req
        .headers
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), h.value))
        .collect();
    let all = |name: &str| -> Vec<&[u8]> {
        fields
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.trim_ascii())
            .collect()
    };
    let one = |name: &str, want: &[u8]| {
        assert_eq!(all(name), [want.trim_ascii()], "{name}");
    };
    one("host", upstream_host.as_bytes());
    one("content-length", body_len.to_string().as_bytes());
    one("x-request-id", request_id.as_bytes());
    one("x-hookgate-route", route.as_bytes());
    one("x-hookgate-verified", verified.as_bytes());
    if info.traceparent.is_some() {
        one("traceparent", TRACE.as_bytes());
    }
    let xff = all("x-forwarded-for");
    assert_eq!(xff.len(), 1, "x-forwarded-for");
    assert!(xff[0].ends_with(peer.as_bytes()), "{:?}", xff[0]);

    let listed: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|t| t.trim().to_ascii_lowercase()))
        .filter(|t| !t.is_empty())
        .collect();
    for (name, _) in &fields {
        let n = HeaderName::from_bytes(name.as_bytes()).unwrap();
        assert!(!is_hop_by_hop(n.as_str()), "hop-by-hop {name} forwarded");
        assert!(name != "expect", "expect forwarded");
        if name.starts_with("x-hookgate-") {
            assert!(
                name == "x-hookgate-route" || name == "x-hookgate-verified",
                "{name} forwarded"
            );
        }
    }

    // The sender's fields that must survive, in order, then ours.
    let mut kept: Vec<(String, &[u8])> = Vec::new();
    for (name, value) in &headers {
        let n = name.as_str();
        let dropped = is_hop_by_hop(n)
            || listed.iter().any(|l| l == n)
            || (info.traceparent.is_some() && n == "traceparent")
            || matches!(n, "host" | "content-length" | "expect" | "x-request-id")
            || n.starts_with("x-hookgate-")
            || n == "x-forwarded-for"
            || (!peer_trusted && (n == "x-forwarded-proto" || n == "x-forwarded-host"));
        if !dropped {
            kept.push((n.to_string(), value.as_bytes().trim_ascii()));
        }
    }
    assert!(fields.len() >= kept.len());
    let sent: Vec<(String, &[u8])> = fields[..kept.len()]
        .iter()
        .map(|(n, v)| (n.clone(), v.trim_ascii()))
        .collect();
    assert_eq!(sent, kept, "the sender's end-to-end fields");
    for name in listed {
        assert!(
            all(&name).is_empty()
                || name.starts_with("x-forwarded-")
                || matches!(
                    name.as_str(),
                    "host"
                        | "content-length"
                        | "x-request-id"
                        | "x-hookgate-route"
                        | "x-hookgate-verified"
                )
                || (name == "traceparent" && info.traceparent.is_some()),
            "{name} is named by Connection but forwarded"
        );
    }
    let ours = &fields[kept.len()..];
    for name in ["x-forwarded-proto", "x-forwarded-host"] {
        let count = all(name).len();
        assert!(count <= 1 || peer_trusted, "{name} {count} times");
        if !peer_trusted {
            assert!(ours.iter().filter(|(n, _)| n == name).count() == count);
        }
    }
    if !peer_trusted {
        one("x-forwarded-proto", proto.as_bytes());
    }
});
