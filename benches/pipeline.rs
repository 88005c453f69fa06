//! The cost of each request-pipeline stage, through the library's public functions, in
//! the order the server runs them: the HTTP/1 head, route, method, client IP, allowlist, rate limit,
//! declared size, verification, and the forward's header rewrite and upstream path.
//!
//! The body read (`pipeline::body::read_body`) is async and driven by a hyper body, and
//! the upstream round trip needs sockets; both are left to the load benchmark
//! (bench/run.py).
//!
//! Run: `cargo bench --bench pipeline` (short: `cargo bench --bench pipeline -- --quick`).

use criterion::{criterion_group, criterion_main, Criterion};
use hookgate::config::{parse_upstream, RateKey, RateSpec};
use hookgate::fields::Fields;
use hookgate::forward::{upstream_path, write_upstream_head, ForwardInfo};
use hookgate::net::{parse_net, IpSet};
use hookgate::pipeline::client_ip::client_ip;
use hookgate::pipeline::rate::RateLimiter;
use hookgate::pipeline::route::RouteTable;
use hookgate::pipeline::{body, check_allowlist, check_method};
use hookgate::verify::hmac::HmacScheme;
use hookgate::verify::{presets, Scheme, Verifier};
use http::{HeaderMap, HeaderValue, Method};
use std::hint::black_box;
use std::net::IpAddr;

const PAYLOAD: &[u8] = include_bytes!("../tests/fixtures/expel-bench-payload.json");
const SECRET: &[u8] = b"bench-secret-0123456789";
const NOW: i64 = 1_700_000_000;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("valid IP")
}

fn ip_set(nets: &[&str]) -> IpSet {
    IpSet::new(
        nets.iter()
            .map(|n| parse_net(n).expect("valid net"))
            .collect(),
    )
}

fn bench_route(c: &mut Criterion) {
    let mut g = c.benchmark_group("route");
    // 20 routes: 16 plain paths, and two paths served by a host-specific route and a
    // catch-all one.
    let mut paths: Vec<(String, Option<&str>)> = (0..16)
        .map(|i| (format!("/hooks/sender-{i:02}"), None))
        .collect();
    paths.push(("/hooks/github".into(), Some("a.example.com")));
    paths.push(("/hooks/github".into(), None));
    paths.push(("/hooks/expel".into(), Some("hooks.example.com")));
    paths.push(("/hooks/expel".into(), None));
    let table = RouteTable::new(paths.iter().map(|(p, h)| (p.as_str(), *h)));
    assert_eq!(
        table.select("/hooks/expel", Some("hooks.example.com")),
        Ok(18)
    );
    assert_eq!(table.select("/hooks/sender-07", None), Ok(7));

    g.bench_function("hit_plain", |b| {
        b.iter(|| {
            table.select(
                black_box("/hooks/sender-07"),
                black_box(Some("127.0.0.1:8080")),
            )
        })
    });
    g.bench_function("hit_host_with_port", |b| {
        b.iter(|| {
            table.select(
                black_box("/hooks/expel"),
                black_box(Some("hooks.example.com:443")),
            )
        })
    });
    g.bench_function("miss", |b| {
        b.iter(|| {
            table.select(
                black_box("/hooks/nope"),
                black_box(Some("hooks.example.com")),
            )
        })
    });
    g.finish();
}

fn bench_method(c: &mut Criterion) {
    let mut g = c.benchmark_group("method");
    let post = Method::POST;
    let get = Method::GET;
    g.bench_function("post", |b| b.iter(|| check_method(black_box(&post))));
    g.bench_function("get_rejected", |b| b.iter(|| check_method(black_box(&get))));
    g.finish();
}

fn bench_client_ip(c: &mut Criterion) {
    let mut g = c.benchmark_group("client_ip");
    let trusted = ip_set(&["10.0.0.0/8", "172.16.0.0/12"]);
    let xff: [&[u8]; 1] = [b"203.0.113.5, 172.16.4.4, 10.0.0.2"];
    let untrusted_peer = ip("198.51.100.7");
    let trusted_peer = ip("10.0.0.1");
    assert_eq!(
        client_ip(untrusted_peer, xff.into_iter(), &trusted),
        untrusted_peer
    );
    assert_eq!(
        client_ip(trusted_peer, xff.into_iter(), &trusted),
        ip("203.0.113.5")
    );
    g.bench_function("untrusted_peer", |b| {
        b.iter(|| {
            client_ip(
                black_box(untrusted_peer),
                xff.into_iter(),
                black_box(&trusted),
            )
        })
    });
    g.bench_function("trusted_peer_xff_3_hops", |b| {
        b.iter(|| {
            client_ip(
                black_box(trusted_peer),
                xff.into_iter(),
                black_box(&trusted),
            )
        })
    });
    g.finish();
}

fn bench_allowlist(c: &mut Criterion) {
    let mut g = c.benchmark_group("allowlist");
    let set = ip_set(&[
        "192.0.2.0/24",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "10.10.0.0/16",
        "172.20.0.0/14",
        "100.64.0.0/10",
        "52.0.0.1",
        "2001:db8:1::/48",
        "2001:db8:2::/48",
        "34.120.0.0/16",
    ]);
    let last = ip("34.120.1.2");
    let outside = ip("8.8.8.8");
    assert!(check_allowlist(last, Some(&set)).is_ok());
    assert!(check_allowlist(outside, Some(&set)).is_err());
    g.bench_function("10_nets_hit_last", |b| {
        b.iter(|| check_allowlist(black_box(last), black_box(Some(&set))))
    });
    g.bench_function("10_nets_miss", |b| {
        b.iter(|| check_allowlist(black_box(outside), black_box(Some(&set))))
    });
    g.bench_function("no_allowlist", |b| {
        b.iter(|| check_allowlist(black_box(outside), black_box(None)))
    });
    g.finish();
}

fn bench_rate(c: &mut Criterion) {
    let mut g = c.benchmark_group("rate");
    // A budget so large that it never limits: the cost of the bookkeeping alone.
    let spec = |key| RateSpec {
        per_second: 1e9,
        burst: u32::MAX,
        key,
    };
    let client = ip("203.0.113.5");
    let per_route = RateLimiter::new(spec(RateKey::Route));
    let per_client = RateLimiter::new(spec(RateKey::ClientIp));
    assert!(per_route.check(client).is_ok());
    assert!(per_client.check(client).is_ok());
    g.bench_function("key_route", |b| {
        b.iter(|| per_route.check(black_box(client)))
    });
    g.bench_function("key_client_ip", |b| {
        b.iter(|| per_client.check(black_box(client)))
    });
    g.finish();
}

fn bench_body(c: &mut Criterion) {
    let mut g = c.benchmark_group("body");
    let max = 2 * 1024 * 1024;
    g.bench_function("check_declared_size", |b| {
        b.iter(|| body::check_declared_size(black_box(Some(PAYLOAD.len() as u64)), black_box(max)))
    });
    g.finish();
}

fn bench_verify(c: &mut Criterion) {
    let mut g = c.benchmark_group("verify");
    let presets::Kind::Hmac(preset) = presets::find("expel").expect("expel preset").kind else {
        panic!("expel is an HMAC preset")
    };
    let spec = preset.spec().expect("valid spec");
    let scheme = HmacScheme::new(spec, &[SECRET.to_vec()]);
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.insert(
        scheme.spec.header.clone(),
        HeaderValue::from_str(&scheme.sign_value(PAYLOAD, b"", b"")).expect("ASCII"),
    );
    let headers = Fields::from(&headers);
    let verifier = Verifier::new(Scheme::Hmac(Box::new(scheme)), "expel".to_string());
    let request = |headers| hookgate::verify::Request {
        headers,
        body: PAYLOAD,
        method: &http::Method::POST,
        query: None,
        now_unix: NOW,
    };
    assert_eq!(verifier.verify(&request(&headers)), Ok(()));
    g.bench_function("expel_1682b", |b| {
        b.iter(|| verifier.verify(black_box(&request(&headers))))
    });
    g.finish();
}

/// The headers of a typical delivery.
fn delivery_headers(signature: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("host", "hooks.example.com"),
        ("user-agent", "Expel-Webhooks/1.0 (+https://expel.com)"),
        ("content-type", "application/json"),
        ("content-length", "1682"),
        ("accept", "*/*"),
        ("accept-encoding", "gzip, deflate"),
        ("connection", "keep-alive"),
        ("x-forwarded-for", "203.0.113.5, 172.16.4.4"),
        ("x-request-id", "5e8b2a1c-0000-4000-8000-000000000001"),
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        ("expel-signature-256", signature),
    ] {
        h.append(k, HeaderValue::from_str(v).expect("valid value"));
    }
    h
}

fn bench_forward(c: &mut Criterion) {
    let mut g = c.benchmark_group("forward");
    let template = Fields::from(&delivery_headers(
        "sha256=e2eaca8e48b341792c2696fc98f4147b61f70eafeef16515714ace7543c45d39",
    ));
    let route = HeaderValue::from_static("expel");
    let verified = HeaderValue::from_static("expel");
    let upstream_host = HeaderValue::from_static("127.0.0.1:9000");
    let info = |peer: &'static str, peer_trusted: bool| ForwardInfo {
        peer,
        peer_trusted,
        proto: "http",
        original_host: Some(b"hooks.example.com"),
        request_id: b"5e8b2a1c-0000-4000-8000-000000000001",
        route: &route,
        verified: &verified,
        upstream_host: &upstream_host,
        body_len: PAYLOAD.len(),
        traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    };
    let untrusted = info("198.51.100.7", false);
    let trusted = info("10.0.0.1", true);

    // The upstream head is written from the sender's map, which is left untouched, into
    // a buffer reused across requests (as each pooled connection does).
    let mut out = Vec::with_capacity(2048);
    for (name, info) in [
        ("upstream_head_untrusted_peer", &untrusted),
        ("upstream_head_trusted_peer", &trusted),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                write_upstream_head(
                    &mut out,
                    &Method::POST,
                    "/expel",
                    black_box(&template),
                    black_box(info),
                );
                out.len()
            })
        });
    }

    let upstream = parse_upstream("http://127.0.0.1:9000/expel").expect("valid upstream");
    assert_eq!(upstream_path(&upstream, None), "/expel");
    assert_eq!(upstream_path(&upstream, Some("a=1")), "/expel?a=1");
    g.bench_function("upstream_path_no_query", |b| {
        b.iter(|| upstream_path(black_box(&upstream), black_box(None)))
    });
    g.bench_function("upstream_path_with_query", |b| {
        b.iter(|| upstream_path(black_box(&upstream), black_box(Some("a=1&b=two"))))
    });
    g.finish();
}

/// The HTTP/1 request head as wrk sends it in bench/run.py (post.lua), and a fuller
/// delivery head: parsed into the gateway's request head (method, target, fields,
/// framing), the first thing every request costs. `*_copy_only` is the cost of the
/// fresh buffer each iteration parses, to subtract.
fn bench_parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");
    let sig = "sha256=e2eaca8e48b341792c2696fc98f4147b61f70eafeef16515714ace7543c45d39";
    let wrk = format!(
        "POST /hooks/expel HTTP/1.1\r\nHost: 127.0.0.1:9100\r\nContent-Length: 1682\r\n\
         Content-Type: application/json\r\nExpel-Signature-256: {sig}\r\n\
         X-Hub-Signature-256: {sig}\r\n\r\n"
    );
    let mut full = String::from("POST /hooks/expel HTTP/1.1\r\n");
    for (k, v) in &delivery_headers(sig) {
        full.push_str(&format!("{k}: {}\r\n", v.to_str().expect("ASCII")));
    }
    full.push_str("\r\n");
    for (name, head) in [("wrk_6_fields", wrk), ("delivery_11_fields", full)] {
        let head = bytes::BytesMut::from(head.as_str());
        let parsed = hookgate::h1::codec::parse_head(&mut head.clone(), 65536, 100)
            .expect("valid head")
            .expect("complete head");
        assert_eq!(parsed.len, head.len());
        // Each iteration parses a fresh copy, as each request has its own buffer; the
        // copy's cost is measured alone.
        g.bench_function(format!("{name}_copy_only"), |b| {
            b.iter(|| black_box(&head).clone())
        });
        g.bench_function(name, |b| {
            b.iter(|| hookgate::h1::codec::parse_head(&mut black_box(&head).clone(), 65536, 100))
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    bench_parse,
    bench_route,
    bench_method,
    bench_client_ip,
    bench_allowlist,
    bench_rate,
    bench_body,
    bench_verify,
    bench_forward
);
criterion_main!(benches);
