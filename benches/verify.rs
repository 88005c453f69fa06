//! Verification cost per scheme, through the public library API.
//!
//! Groups:
//! - `presets`: every shipped preset on the 1682-byte sample event
//!   (tests/fixtures/expel-bench-payload.json);
//! - `algorithms`: sha1/sha256/sha512 × hex/base64, spelled-out specs, same payload;
//! - `template`: a timestamped scheme (`v0:{timestamp}:{body}`);
//! - `reject`: a forged signature (full MAC, then mismatch), a malformed header and a
//!   missing one (both refused before anything is hashed);
//! - `floor`: the bare HMAC-SHA256 of the same payload (the `hmac` crate, key pads
//!   expanded once, no header read and no comparison): what `presets/expel` costs
//!   beyond it is the verification's own work;
//! - `throughput`: HMAC-SHA1, HMAC-SHA256 (the Expel preset) and HMAC-SHA512 over 1
//!   MiB, reported in bytes per second (`throughput/hmac_sha{1,256,512}_1mib`, parsed by
//!   bench/run.py and set against `openssl speed` for the same hash).
//!
//! Run: `cargo bench --bench verify` (short: `cargo bench --bench verify -- --quick`).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hookgate::fields::Fields;
use hookgate::verify::hmac::{
    Algorithm, Encoding, HmacScheme, HmacSpec, Request, TimeUnit, TimestampSource, TimestampSpec,
};
use hookgate::verify::presets;
use hookgate::verify::template::Template;
use hookgate::verify::VerifyError;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use std::hint::black_box;

/// One verification of a POST, as the gateway makes it.
fn verify(
    scheme: &HmacScheme,
    headers: &Fields,
    body: &[u8],
    now_unix: i64,
) -> Result<(), VerifyError> {
    scheme.verify(&Request {
        headers,
        body,
        method: &Method::POST,
        query: None,
        now_unix,
    })
}

const PAYLOAD: &[u8] = include_bytes!("../tests/fixtures/expel-bench-payload.json");
const SECRET: &[u8] = b"bench-secret-0123456789";
const NOW: i64 = 1_700_000_000;

/// A verifier for a shipped preset, with the bench secret.
fn preset_scheme(id: &str) -> HmacScheme {
    let presets::Kind::Hmac(preset) = presets::find(id)
        .unwrap_or_else(|| panic!("preset {id} is shipped"))
        .kind
    else {
        panic!("{id} is an HMAC preset")
    };
    let spec = preset
        .spec()
        .unwrap_or_else(|e| panic!("preset {id} has a valid spec: {e}"));
    // Base64-keyed presets (Standard Webhooks) take the bench secret as their key bytes.
    HmacScheme::new(spec, &[SECRET.to_vec()])
}

/// A spelled-out scheme on header `x-signature`, no prefix, body only.
fn custom_scheme(algorithm: Algorithm, encoding: Encoding) -> HmacScheme {
    let spec = HmacSpec::simple(
        algorithm,
        HeaderName::from_static("x-signature"),
        encoding,
        Template::compile("{body}").expect("valid template"),
    );
    HmacScheme::new(spec, &[SECRET.to_vec()])
}

/// The headers a sender's delivery typically carries, plus `extra`.
fn headers(extra: &[(&str, &str)]) -> Fields {
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
    Fields::from(&h)
}

/// Headers carrying a correct signature for `body` (and the timestamp, for the
/// timestamped scheme).
fn signed_headers(scheme: &HmacScheme, body: &[u8], timestamp: &str) -> Fields {
    let id = "72d3162e-cc78-11e3-81ab-4c9367dc0958";
    let value = scheme.sign_value(body, timestamp.as_bytes(), id.as_bytes());
    let mut extra = vec![(scheme.spec.header.as_str(), value.as_str())];
    if let Some(TimestampSpec {
        source: TimestampSource::Header(ts),
        ..
    }) = &scheme.spec.timestamp
    {
        extra.push((ts.as_str(), timestamp));
    }
    if let Some(id_header) = &scheme.spec.id_header {
        extra.push((id_header.as_str(), id));
    }
    headers(&extra)
}

fn bench_presets(c: &mut Criterion) {
    let mut g = c.benchmark_group("presets");
    g.throughput(Throughput::Bytes(PAYLOAD.len() as u64));
    for id in [
        "expel",
        "github",
        "plextrac",
        "x-webhook-signature",
        "standard-webhooks",
        "stripe",
    ] {
        let scheme = preset_scheme(id);
        let h = signed_headers(&scheme, PAYLOAD, &NOW.to_string());
        assert_eq!(verify(&scheme, &h, PAYLOAD, NOW), Ok(()), "{id} verifies");
        g.bench_function(id, |b| {
            b.iter(|| verify(&scheme, black_box(&h), black_box(PAYLOAD), black_box(NOW)))
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
            assert_eq!(verify(&scheme, &h, PAYLOAD, NOW), Ok(()));
            let id = BenchmarkId::new(algorithm.name(), encoding.name());
            g.bench_function(id, |b| {
                b.iter(|| verify(&scheme, black_box(&h), black_box(PAYLOAD), black_box(NOW)))
            });
        }
    }
    g.finish();
}

fn bench_template(c: &mut Criterion) {
    let mut g = c.benchmark_group("template");
    g.throughput(Throughput::Bytes(PAYLOAD.len() as u64));
    let mut spec = HmacSpec::simple(
        Algorithm::Sha256,
        HeaderName::from_static("x-signature"),
        Encoding::Hex,
        Template::compile("v0:{timestamp}:{body}").expect("valid template"),
    );
    spec.prefix = "v0=".to_string();
    spec.timestamp = Some(TimestampSpec {
        source: TimestampSource::Header(HeaderName::from_static("x-request-timestamp")),
        unit: TimeUnit::Seconds,
    });
    let scheme = HmacScheme::new(spec, &[SECRET.to_vec()]);
    let h = signed_headers(&scheme, PAYLOAD, &NOW.to_string());
    assert_eq!(verify(&scheme, &h, PAYLOAD, NOW), Ok(()));
    g.bench_function("v0_timestamp_body", |b| {
        b.iter(|| verify(&scheme, black_box(&h), black_box(PAYLOAD), black_box(NOW)))
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
        verify(&scheme, &forged, PAYLOAD, NOW),
        Err(VerifyError::SignatureMismatch)
    );
    g.bench_function("forged_mismatch", |b| {
        b.iter(|| {
            verify(
                &scheme,
                black_box(&forged),
                black_box(PAYLOAD),
                black_box(NOW),
            )
        })
    });

    // Not a signature at all: refused before any hashing.
    let malformed = headers(&[(header, "sha256=not-hex-at-all")]);
    assert_eq!(
        verify(&scheme, &malformed, PAYLOAD, NOW),
        Err(VerifyError::SignatureMalformed)
    );
    g.bench_function("malformed_header", |b| {
        b.iter(|| {
            verify(
                &scheme,
                black_box(&malformed),
                black_box(PAYLOAD),
                black_box(NOW),
            )
        })
    });

    let missing = headers(&[]);
    assert_eq!(
        verify(&scheme, &missing, PAYLOAD, NOW),
        Err(VerifyError::SignatureMissing)
    );
    g.bench_function("missing_header", |b| {
        b.iter(|| {
            verify(
                &scheme,
                black_box(&missing),
                black_box(PAYLOAD),
                black_box(NOW),
            )
        })
    });
    g.finish();
}

fn bench_floor(c: &mut Criterion) {
    use hmac::Mac;
    let mut g = c.benchmark_group("floor");
    g.throughput(Throughput::Bytes(PAYLOAD.len() as u64));
    let keyed = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET).expect("any key length");
    g.bench_function("hmac_sha256_1682b", |b| {
        b.iter(|| {
            let mut mac = keyed.clone();
            mac.update(black_box(PAYLOAD));
            mac.finalize().into_bytes()
        })
    });
    g.finish();
}

fn bench_throughput(c: &mut Criterion) {
    let mut g = c.benchmark_group("throughput");
    let body: Vec<u8> = (0..1024 * 1024u32)
        .map(|i| b"{\"k\":\"0123456789abcdef\"}\n"[(i % 25) as usize])
        .collect();
    g.throughput(Throughput::Bytes(body.len() as u64));
    let schemes = [
        (
            "hmac_sha1_1mib",
            custom_scheme(Algorithm::Sha1, Encoding::Hex),
        ),
        ("hmac_sha256_1mib", preset_scheme("expel")),
        (
            "hmac_sha512_1mib",
            custom_scheme(Algorithm::Sha512, Encoding::Hex),
        ),
    ];
    for (name, scheme) in &schemes {
        let h = signed_headers(scheme, &body, "");
        assert_eq!(verify(scheme, &h, &body, NOW), Ok(()));
        g.bench_function(*name, |b| {
            b.iter(|| verify(scheme, black_box(&h), black_box(&body), black_box(NOW)))
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    bench_presets,
    bench_algorithms,
    bench_template,
    bench_reject,
    bench_floor,
    bench_throughput
);
criterion_main!(benches);
