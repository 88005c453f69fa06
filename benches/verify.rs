//! Verification cost per scheme, through the public library API.
//!
//! Groups:
//! - `presets`: every shipped preset on the 1682-byte sample event
//!   (tests/fixtures/expel-bench-payload.json);
//! - `algorithms`: sha1/sha256/sha512 × hex/base64, spelled-out specs, same payload;
//! - `template`: a timestamped scheme (`v0:{timestamp}:{body}`);
//! - `reject`: a forged signature (full MAC, then mismatch), a malformed header and a
//!   missing one (both refused before anything is hashed);
//! - `throughput`: HMAC-SHA256 over 1 MiB, reported in bytes per second
//!   (`throughput/hmac_sha256_1mib`, parsed by bench/run.py).
//!
//! Run: `cargo bench --bench verify` (short: `cargo bench --bench verify -- --quick`).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hookgate::verify::hmac::{Algorithm, Encoding, HmacScheme, HmacSpec};
use hookgate::verify::presets;
use hookgate::verify::template::Template;
use hookgate::verify::VerifyError;
use http::{HeaderMap, HeaderName, HeaderValue};
use std::hint::black_box;
use std::time::Duration;

const PAYLOAD: &[u8] = include_bytes!("../tests/fixtures/expel-bench-payload.json");
const SECRET: &[u8] = b"bench-secret-0123456789";
const NOW: i64 = 1_700_000_000;

/// A verifier for a shipped preset, with the bench secret.
fn preset_scheme(id: &str) -> HmacScheme {
    let spec = presets::find(id)
        .unwrap_or_else(|| panic!("preset {id} is shipped"))
        .spec()
        .unwrap_or_else(|e| panic!("preset {id} has a valid spec: {e}"));
    HmacScheme::new(spec, &[SECRET.to_vec()])
}

/// A spelled-out scheme on header `x-signature`, no prefix, body only.
fn custom_scheme(algorithm: Algorithm, encoding: Encoding) -> HmacScheme {
    let spec = HmacSpec {
        algorithm,
        header: HeaderName::from_static("x-signature"),
        prefix: String::new(),
        prefix_optional: false,
        encoding,
        template: Template::compile("{body}").expect("valid template"),
        timestamp_header: None,
        id_header: None,
        tolerance: Duration::from_secs(300),
    };
    HmacScheme::new(spec, &[SECRET.to_vec()])
}

/// The headers a sender's delivery typically carries, plus `extra`.
fn headers(extra: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("host", HeaderValue::from_static("hooks.example.com"));
    h.insert("user-agent", HeaderValue::from_static("Expel-Webhooks/1.0"));
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h.insert("accept-encoding", HeaderValue::from_static("gzip"));
    h.insert("content-length", HeaderValue::from(PAYLOAD.len()));
    for (name, value) in extra {
        h.append(
            HeaderName::from_bytes(name.as_bytes()).expect("valid header name"),
            HeaderValue::from_str(value).expect("valid header value"),
        );
    }
    h
}

/// Headers carrying a correct signature for `body` (and the timestamp, for the
/// timestamped scheme).
fn signed_headers(scheme: &HmacScheme, body: &[u8], timestamp: &str) -> HeaderMap {
    let value = scheme.sign_value(body, timestamp.as_bytes(), b"");
    let mut extra = vec![(scheme.spec.header.as_str(), value.as_str())];
    if let Some(ts) = &scheme.spec.timestamp_header {
        extra.push((ts.as_str(), timestamp));
    }
    if let Some(id) = &scheme.spec.id_header {
        extra.push((id.as_str(), "72d3162e-cc78-11e3-81ab-4c9367dc0958"));
    }
    headers(&extra)
}

fn bench_presets(c: &mut Criterion) {
    let mut g = c.benchmark_group("presets");
    g.throughput(Throughput::Bytes(PAYLOAD.len() as u64));
    for id in ["expel", "github", "plextrac", "x-webhook-signature"] {
        let scheme = preset_scheme(id);
        let h = signed_headers(&scheme, PAYLOAD, "");
        assert_eq!(scheme.verify(&h, PAYLOAD, NOW), Ok(()), "{id} verifies");
        g.bench_function(id, |b| {
            b.iter(|| scheme.verify(black_box(&h), black_box(PAYLOAD), black_box(NOW)))
        });
    }
    g.finish();
}

fn bench_algorithms(c: &mut Criterion) {
    let mut g = c.benchmark_group("algorithms");
    g.throughput(Throughput::Bytes(PAYLOAD.len() as u64));
    for algorithm in [Algorithm::Sha1, Algorithm::Sha256, Algorithm::Sha512] {
        for encoding in [Encoding::Hex, Encoding::Base64] {
            let scheme = custom_scheme(algorithm, encoding);
            let h = signed_headers(&scheme, PAYLOAD, "");
            assert_eq!(scheme.verify(&h, PAYLOAD, NOW), Ok(()));
            let id = BenchmarkId::new(algorithm.name(), encoding.name());
            g.bench_function(id, |b| {
                b.iter(|| scheme.verify(black_box(&h), black_box(PAYLOAD), black_box(NOW)))
            });
        }
    }
    g.finish();
}

fn bench_template(c: &mut Criterion) {
    let mut g = c.benchmark_group("template");
    g.throughput(Throughput::Bytes(PAYLOAD.len() as u64));
    let spec = HmacSpec {
        algorithm: Algorithm::Sha256,
        header: HeaderName::from_static("x-signature"),
        prefix: "v0=".to_string(),
        prefix_optional: false,
        encoding: Encoding::Hex,
        template: Template::compile("v0:{timestamp}:{body}").expect("valid template"),
        timestamp_header: Some(HeaderName::from_static("x-request-timestamp")),
        id_header: None,
        tolerance: Duration::from_secs(300),
    };
    let scheme = HmacScheme::new(spec, &[SECRET.to_vec()]);
    let h = signed_headers(&scheme, PAYLOAD, &NOW.to_string());
    assert_eq!(scheme.verify(&h, PAYLOAD, NOW), Ok(()));
    g.bench_function("v0_timestamp_body", |b| {
        b.iter(|| scheme.verify(black_box(&h), black_box(PAYLOAD), black_box(NOW)))
    });
    g.finish();
}

fn bench_reject(c: &mut Criterion) {
    let mut g = c.benchmark_group("reject");
    let scheme = preset_scheme("expel");
    let header = scheme.spec.header.as_str();

    // Well-formed but wrong: the MAC is computed, then the comparison fails.
    let forged_value = format!("sha256={}", "0".repeat(64));
    let forged = headers(&[(header, &forged_value)]);
    assert_eq!(
        scheme.verify(&forged, PAYLOAD, NOW),
        Err(VerifyError::SignatureMismatch)
    );
    g.bench_function("forged_mismatch", |b| {
        b.iter(|| scheme.verify(black_box(&forged), black_box(PAYLOAD), black_box(NOW)))
    });

    // Not a signature at all: refused before any hashing.
    let malformed = headers(&[(header, "sha256=not-hex-at-all")]);
    assert_eq!(
        scheme.verify(&malformed, PAYLOAD, NOW),
        Err(VerifyError::SignatureMalformed)
    );
    g.bench_function("malformed_header", |b| {
        b.iter(|| scheme.verify(black_box(&malformed), black_box(PAYLOAD), black_box(NOW)))
    });

    let missing = headers(&[]);
    assert_eq!(
        scheme.verify(&missing, PAYLOAD, NOW),
        Err(VerifyError::SignatureMissing)
    );
    g.bench_function("missing_header", |b| {
        b.iter(|| scheme.verify(black_box(&missing), black_box(PAYLOAD), black_box(NOW)))
    });
    g.finish();
}

fn bench_throughput(c: &mut Criterion) {
    let mut g = c.benchmark_group("throughput");
    let body: Vec<u8> = (0..1024 * 1024u32)
        .map(|i| b"{\"k\":\"0123456789abcdef\"}\n"[(i % 25) as usize])
        .collect();
    let scheme = preset_scheme("expel");
    let h = signed_headers(&scheme, &body, "");
    assert_eq!(scheme.verify(&h, &body, NOW), Ok(()));
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("hmac_sha256_1mib", |b| {
        b.iter(|| scheme.verify(black_box(&h), black_box(&body), black_box(NOW)))
    });
    g.finish();
}

criterion_group!(
    benches,
    bench_presets,
    bench_algorithms,
    bench_template,
    bench_reject,
    bench_throughput
);
criterion_main!(benches);
