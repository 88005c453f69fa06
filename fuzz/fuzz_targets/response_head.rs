//! The upstream client's response-head parser (`upstream::parse_head`).
//!
//! Invariants, for any bytes:
//! - it never panics, and never claims a head longer than the bytes it was given;
//! - a head it accepts is a head of exactly those `len` bytes: the prefix alone parses the
//!   same, and every shorter prefix is `Partial` (so an answer split across reads is
//!   never refused where the whole one is accepted);
//! - a final head's status is not 1xx; the fields kept are exactly the end-to-end ones
//!   (no hop-by-hop field, no Content-Length, and no X-Request-Id: the sender gets the
//!   gateway's id, never the upstream's), with their values;
//! - framing and reuse follow RFC 9112 §6.3 / §9.3, checked against a reference reading
//!   of the same head: 204/304 have no body; Transfer-Encoding whose final coding
//!   (ignoring empty list elements) is chunked → chunked, any other → read to close;
//!   else Content-Length (0 → no body); else read to close. The connection is reused
//!   only without a `close` option, for HTTP/1.0 only with `keep-alive`, and never
//!   after a response that had both Transfer-Encoding and Content-Length;
//! - a Content-Length body is never larger than `MAX_UPSTREAM_RESPONSE`.
#![no_main]

use hookgate::fuzzing::{is_hop_by_hop, parse_head, Framing, Head};
use hookgate::upstream::MAX_UPSTREAM_RESPONSE;
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;

fn list_tokens<'a>(
    fields: &'a [httparse::Header<'a>],
    name: &'a str,
) -> impl Iterator<Item = String> + 'a {
    fields
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
        .flat_map(|h| {
            std::str::from_utf8(h.value)
                .unwrap_or("")
                .split(',')
                .map(|t| t.trim().to_ascii_lowercase())
                .filter(|t| !t.is_empty())
                .collect::<Vec<_>>()
        })
}

/// Cut points below `len` at which the prefix must be `Partial`.
fn cuts(len: usize) -> Vec<usize> {
    if len <= 300 {
        (1..len).collect()
    } else {
        (1..len).step_by(len / 97 + 1).chain([len - 1]).collect()
    }
}

fn check_prefixes(data: &[u8], len: usize) {
    for k in cuts(len) {
        match parse_head(&data[..k]) {
            Ok(Head::Partial) => {}
            other => panic!(
                "head of {len} bytes accepted whole, but its first {k} bytes gave {other:?}: {:?}",
                String::from_utf8_lossy(&data[..len])
            ),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(head) = parse_head(data) else {
        return;
    };
    match head {
        Head::Partial => {}
        Head::Informational(len) => {
            assert!(len > 0 && len <= data.len(), "len {len} of {}", data.len());
            assert!(matches!(parse_head(&data[..len]), Ok(Head::Informational(l)) if l == len));
            check_prefixes(data, len);
        }
        Head::Done {
            len,
            resp,
            framing,
            keep_alive,
        } => {
            assert!(len > 0 && len <= data.len(), "len {len} of {}", data.len());
            let status = resp.status().as_u16();
            assert!(status >= 200, "final head with status {status}");
            match parse_head(&data[..len]) {
                Ok(Head::Done {
                    len: l,
                    resp: r,
                    framing: f,
                    keep_alive: k,
                }) => assert_eq!(
                    (l, r.status(), r.headers(), f, k),
                    (len, resp.status(), resp.headers(), framing, keep_alive)
                ),
                other => panic!("the head alone parses differently: {other:?}"),
            }
            check_prefixes(data, len);

            // The reference reading of the same head.
            let mut slots = [httparse::EMPTY_HEADER; 100];
            let mut parsed = httparse::Response::new(&mut slots);
            assert_eq!(parsed.parse(data).unwrap(), httparse::Status::Complete(len));
            let fields = &*parsed.headers;
            let http10 = parsed.version == Some(0);

            let mut kept: BTreeMap<String, Vec<&[u8]>> = BTreeMap::new();
            for h in fields {
                let name = http::HeaderName::from_bytes(h.name.as_bytes()).unwrap();
                if !is_hop_by_hop(name.as_str())
                    && name != http::header::CONTENT_LENGTH
                    && name != "x-request-id"
                {
                    kept.entry(name.to_string()).or_default().push(h.value);
                }
            }
            let mut got: BTreeMap<String, Vec<&[u8]>> = BTreeMap::new();
            for (name, value) in resp.headers() {
                assert!(
                    !is_hop_by_hop(name.as_str()),
                    "hop-by-hop field {name} kept"
                );
                got.entry(name.to_string())
                    .or_default()
                    .push(value.as_bytes());
            }
            assert_eq!(got, kept, "end-to-end fields");

            let has = |n: &str| fields.iter().any(|h| h.name.eq_ignore_ascii_case(n));
            let (has_te, has_cl) = (has("transfer-encoding"), has("content-length"));
            let length = fields
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .map(|h| {
                    std::str::from_utf8(h.value)
                        .unwrap()
                        .trim()
                        .parse::<usize>()
                        .unwrap()
                });
            let want_framing = if status == 204 || status == 304 {
                Framing::None
            } else if has_te {
                match list_tokens(fields, "transfer-encoding").last().as_deref() {
                    Some("chunked") => Framing::Chunked,
                    _ => Framing::Close,
                }
            } else {
                match length {
                    Some(0) => Framing::None,
                    Some(n) => Framing::Length(n),
                    None => Framing::Close,
                }
            };
            let options: Vec<String> = list_tokens(fields, "connection").collect();
            let close = options.iter().any(|o| o == "close")
                || (http10 && !options.iter().any(|o| o == "keep-alive"));
            let want_keep_alive = !(close || (has_te && has_cl));
            let head = String::from_utf8_lossy(&data[..len]);
            assert_eq!(framing, want_framing, "framing of {head:?}");
            assert_eq!(keep_alive, want_keep_alive, "reuse after {head:?}");
            if let Framing::Length(n) = framing {
                assert!(n > 0 && n <= MAX_UPSTREAM_RESPONSE, "length {n}");
            }
        }
    }
});
