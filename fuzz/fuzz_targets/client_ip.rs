//! `pipeline::client_ip::client_ip` (the client address behind trusted proxies).
//!
//! Input: the peer address on the first line, the trusted networks (comma-separated) on
//! the second, then one X-Forwarded-For field value per line.
//!
//! Invariants: it never panics, and returns what the documented policy says, computed
//! here independently from the flattened hop list: an untrusted peer (or no trusted
//! proxies) is the client; otherwise walk the hops right to left: a trusted hop becomes
//! the nearest known address, the first untrusted hop is the client, and anything that
//! is not an address (or a value that is not visible ASCII) ends the walk at the nearest
//! known address. The result is always in canonical form (IPv4-mapped IPv6 as IPv4).
#![no_main]

use hookgate::fuzzing::client_ip;
use hookgate::net::{canonical, parse_net, IpSet};
use http::HeaderValue;
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, SocketAddr};

enum Hop {
    Addr(IpAddr),
    Garbage,
}

/// The X-Forwarded-For values as one list of hops, right-most first.
fn hops(values: &[HeaderValue]) -> Vec<Hop> {
    let mut out = Vec::new();
    for v in values.iter().rev() {
        if !v
            .as_bytes()
            .iter()
            .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
        {
            out.push(Hop::Garbage);
            return out;
        }
        let text = std::str::from_utf8(v.as_bytes()).unwrap();
        let mut entries: Vec<&str> = text.split(',').map(str::trim).collect();
        entries.reverse();
        for e in entries.into_iter().filter(|e| !e.is_empty()) {
            let ip = e
                .parse::<IpAddr>()
                .ok()
                .or_else(|| e.parse::<SocketAddr>().ok().map(|s| s.ip()));
            out.push(match ip {
                Some(ip) => Hop::Addr(canonical(ip)),
                None => Hop::Garbage,
            });
        }
    }
    out
}

fuzz_target!(|text: &str| {
    let mut lines = text.split('\n');
    let Some(Ok(peer)) = lines.next().map(|l| l.trim().parse::<IpAddr>()) else {
        return;
    };
    let trusted = IpSet::new(
        lines
            .next()
            .unwrap_or("")
            .split(',')
            .filter_map(|n| parse_net(n).ok())
            .collect(),
    );
    let values: Vec<HeaderValue> = lines
        .filter_map(|l| HeaderValue::from_bytes(l.as_bytes()).ok())
        .collect();

    let got = client_ip(peer, values.iter().map(HeaderValue::as_bytes), &trusted);

    let peer = canonical(peer);
    let mut want = peer;
    if !trusted.is_empty() && trusted.contains(peer) {
        for hop in hops(&values) {
            match hop {
                Hop::Addr(ip) if trusted.contains(ip) => want = ip,
                Hop::Addr(ip) => {
                    want = ip;
                    break;
                }
                Hop::Garbage => break,
            }
        }
    }
    assert_eq!(
        got, want,
        "peer {peer}, trusted {trusted:?}, xff {values:?}"
    );
    assert_eq!(got, canonical(got), "not canonical");
});
