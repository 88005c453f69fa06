//! The generic HMAC verifier (`HmacScheme::verify`) behind every HMAC preset, with the
//! signature-header parsers under it (`hmac::pairs`, `decode_bare`, `decode_encoded`).
//!
//! Input, line by line: a preset id (an unknown one picks a preset by its first byte),
//! the secret (as configured: prefixed, base64, raw), the public URL (empty: none), the
//! verifier's clock (unix seconds), then `name: value` header fields up to an empty line,
//! then the body. In the signature header, `{sig}` and `{SIG}` stand for the correct
//! signature of this request (lower-case hex / padded base64, and upper-case hex /
//! unpadded base64), so that the fuzzer can build accepted deliveries of any shape.
//!
//! Invariants:
//! - `verify` never panics, and its answer is exactly that of a reference verifier
//!   written from the documented behaviour: the signature header (or the fallback
//!   `webhook-*` one when only that is present) must be present; its candidates are
//!   the values (bare: after the prefix, any case) or the signature-key entries
//!   (pairs) that decode to a digest of the right length (hex of either case; base64
//!   with or without padding), the first 8 kept; the timestamp must be present, valid
//!   and inside the window; the id must be present if signed; and the delivery is
//!   accepted if and only if a candidate equals the HMAC (computed here with the
//!   `hmac` crate) of the template's content. So a fuzzed header that verifies is the
//!   correct signature modulo prefix case, hex case and base64 padding, and the correct
//!   signature is never refused;
//! - `pairs`, `decode_bare` and `decode_encoded` agree with the reference parsers;
//! - a delivery signed as the sender would (`sign_request`, with its timestamp and id
//!   headers) verifies at its own time.
#![no_main]

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use hmac::{Hmac, Mac};
use hookgate::fuzzing::{hmac_decode_bare, hmac_decode_encoded, hmac_pairs, parse_rfc3339};
use hookgate::verify::hmac::{
    Algorithm, Encoding, Format, HmacScheme, HmacSpec, TimeUnit, TimestampSource,
};
use hookgate::verify::presets::{HmacPreset, Kind, PRESETS};
use hookgate::verify::template::{Inputs, Part};
use hookgate::verify::{Request, VerifyError};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use libfuzzer_sys::fuzz_target;

const MAX_CANDIDATES: usize = 8;

fn hmac_presets() -> Vec<(&'static str, HmacPreset)> {
    PRESETS
        .iter()
        .filter_map(|p| match p.kind {
            Kind::Hmac(h) => Some((p.id, h)),
            _ => None,
        })
        .collect()
}

fn engine(encoding: Encoding) -> GeneralPurpose {
    let alphabet = match encoding {
        Encoding::Base64Url => &base64::alphabet::URL_SAFE,
        _ => &base64::alphabet::STANDARD,
    };
    GeneralPurpose::new(
        alphabet,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    )
}

fn ref_decode(v: &[u8], encoding: Encoding, want: usize) -> Option<Vec<u8>> {
    match encoding {
        Encoding::Hex => {
            if v.len() != want * 2 || !v.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            Some(
                v.chunks(2)
                    .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
                    .collect(),
            )
        }
        _ => engine(encoding).decode(v).ok().filter(|d| d.len() == want),
    }
}

fn ref_bare(value: &[u8], spec: &HmacSpec, want: usize) -> Option<Vec<u8>> {
    let mut v = value.trim_ascii();
    let prefix = spec.prefix.as_bytes();
    if v.len() >= prefix.len() && v[..prefix.len()].eq_ignore_ascii_case(prefix) {
        v = &v[prefix.len()..];
    } else if !spec.prefix_optional {
        return None;
    }
    ref_decode(v, spec.encoding, want)
}

fn ref_pairs(value: &[u8], separator: char, assign: char) -> Vec<(&[u8], &[u8])> {
    let entries: Vec<&[u8]> = if separator == ' ' {
        value.split(|b| b.is_ascii_whitespace()).collect()
    } else {
        value.split(|&b| b == separator as u8).collect()
    };
    entries
        .into_iter()
        .map(<[u8]>::trim_ascii)
        .filter(|e| !e.is_empty())
        .filter_map(|e| {
            let at = e.iter().position(|&b| b == assign as u8)?;
            Some((e[..at].trim_ascii(), e[at + 1..].trim_ascii()))
        })
        .collect()
}

fn mac(algorithm: Algorithm, key: &[u8], content: &[u8]) -> Vec<u8> {
    fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], content: &[u8]) -> Vec<u8> {
        let mut m = <M as hmac::digest::KeyInit>::new_from_slice(key).unwrap();
        m.update(content);
        m.finalize().into_bytes().to_vec()
    }
    match algorithm {
        Algorithm::Sha1 => run::<Hmac<sha1::Sha1>>(key, content),
        Algorithm::Sha256 => run::<Hmac<sha2::Sha256>>(key, content),
        Algorithm::Sha512 => run::<Hmac<sha2::Sha512>>(key, content),
    }
}

/// The header names in use: the scheme's, or the fallback ones when only the fallback
/// signature header is present.
struct Names {
    signature: HeaderName,
    timestamp: Option<HeaderName>,
    id: Option<HeaderName>,
}

fn names(spec: &HmacSpec, present: &dyn Fn(&HeaderName) -> bool) -> Names {
    let ts_header = spec.timestamp.as_ref().and_then(|t| match &t.source {
        TimestampSource::Header(h) => Some(h.clone()),
        _ => None,
    });
    match &spec.fallback {
        Some(f) if !present(&spec.header) && present(&f.signature) => Names {
            signature: f.signature.clone(),
            timestamp: ts_header.map(|_| f.timestamp.clone()),
            id: spec.id_header.as_ref().map(|_| f.id.clone()),
        },
        _ => Names {
            signature: spec.header.clone(),
            timestamp: ts_header,
            id: spec.id_header.clone(),
        },
    }
}

fn ts_key(spec: &HmacSpec) -> Option<&[u8]> {
    match spec.timestamp.as_ref().map(|t| &t.source) {
        Some(TimestampSource::SignatureKey(k)) => Some(k.as_bytes()),
        _ => None,
    }
}

/// The first timestamp entry of a pairs-shaped signature header.
fn header_ts<'a>(spec: &HmacSpec, values: &[&'a [u8]]) -> Option<&'a [u8]> {
    let (
        Format::Pairs {
            separator, assign, ..
        },
        Some(key),
    ) = (&spec.format, ts_key(spec))
    else {
        return None;
    };
    values
        .iter()
        .flat_map(|v| ref_pairs(v, *separator, *assign))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

fn json_ts(body: &[u8], path: &[String]) -> Option<String> {
    let root: serde_json::Value = serde_json::from_slice(body).ok()?;
    let mut v = &root;
    for key in path {
        v = v.get(key)?;
    }
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The raw timestamp the scheme signs, or why there is none.
fn raw_timestamp(
    spec: &HmacSpec,
    headers: &HeaderMap,
    names: &Names,
    sig_values: &[&[u8]],
    body: &[u8],
) -> Result<Vec<u8>, VerifyError> {
    let Some(ts) = &spec.timestamp else {
        return Ok(Vec::new());
    };
    match &ts.source {
        TimestampSource::Header(_) => headers
            .get(names.timestamp.as_ref().unwrap())
            .map(|v| v.as_bytes().trim_ascii().to_vec())
            .ok_or(VerifyError::TimestampMissing),
        TimestampSource::SignatureKey(_) => header_ts(spec, sig_values)
            .map(<[u8]>::to_vec)
            .ok_or(VerifyError::TimestampMissing),
        TimestampSource::Json(path) => json_ts(body, path)
            .map(String::into_bytes)
            .ok_or(VerifyError::TimestampMissing),
    }
}

fn seconds(raw: &[u8], unit: TimeUnit) -> Result<i64, VerifyError> {
    let text = std::str::from_utf8(raw.trim_ascii()).map_err(|_| VerifyError::TimestampInvalid)?;
    let whole = || -> Result<i64, VerifyError> {
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(VerifyError::TimestampInvalid);
        }
        text.parse().map_err(|_| VerifyError::TimestampInvalid)
    };
    match unit {
        TimeUnit::Seconds => whole(),
        TimeUnit::Millis => whole().map(|ms| ms.div_euclid(1000)),
        TimeUnit::Rfc3339 => parse_rfc3339(text).ok_or(VerifyError::TimestampInvalid),
    }
}

fn raw_id(spec: &HmacSpec, headers: &HeaderMap, names: &Names) -> Result<Vec<u8>, VerifyError> {
    match &names.id {
        Some(name) if spec.template.uses(&Part::Id) => headers
            .get(name)
            .map(|v| v.as_bytes().to_vec())
            .ok_or(VerifyError::IdMissing),
        _ => Ok(Vec::new()),
    }
}

fn digest(spec: &HmacSpec, key: &[u8], body: &[u8], timestamp: &[u8], id: &[u8]) -> Vec<u8> {
    let inputs = Inputs {
        body,
        timestamp,
        id,
        method: b"POST",
        url: spec.url.as_deref().unwrap_or("").as_bytes(),
    };
    let mut content = Vec::new();
    spec.template
        .feed(&inputs, |s| content.extend_from_slice(s));
    mac(spec.algorithm, key, &content)
}

/// The reference verifier; also checks the header parsers against the reference ones.
fn reference(
    spec: &HmacSpec,
    key: &[u8],
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<(), VerifyError> {
    let want = spec.algorithm.digest_len();
    let names = names(spec, &|n| headers.contains_key(n));
    let values: Vec<&[u8]> = headers
        .get_all(&names.signature)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    let mut candidates = Vec::new();
    for value in &values {
        for w in [20, 32, 64] {
            for e in [Encoding::Hex, Encoding::Base64, Encoding::Base64Url] {
                assert_eq!(
                    hmac_decode_encoded(value, e, w),
                    ref_decode(value, e, w),
                    "decode_encoded({value:?}, {e:?}, {w})"
                );
            }
        }
        match &spec.format {
            Format::Bare => {
                let c = ref_bare(value, spec, want);
                assert_eq!(
                    hmac_decode_bare(value, spec, want),
                    c,
                    "decode_bare({value:?})"
                );
                if let Some(c) = c.filter(|_| candidates.len() < MAX_CANDIDATES) {
                    candidates.push(c);
                }
            }
            Format::Pairs {
                separator,
                assign,
                signature_keys,
            } => {
                let entries = ref_pairs(value, *separator, *assign);
                assert_eq!(
                    hmac_pairs(value, *separator, *assign),
                    entries,
                    "pairs({value:?})"
                );
                for (k, v) in entries {
                    if ts_key(spec) == Some(k) || candidates.len() >= MAX_CANDIDATES {
                        continue;
                    }
                    if signature_keys.iter().any(|s| s.as_bytes() == k) {
                        candidates.extend(ref_decode(v, spec.encoding, want));
                    }
                }
            }
        }
    }
    if values.is_empty() {
        return Err(VerifyError::SignatureMissing);
    }
    if candidates.is_empty() {
        return Err(VerifyError::SignatureMalformed);
    }
    let timestamp = raw_timestamp(spec, headers, &names, &values, body)?;
    if let Some(ts) = &spec.timestamp {
        let secs = seconds(&timestamp, ts.unit)?;
        let window = |d: std::time::Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        if secs < now.saturating_sub(window(spec.tolerance)) {
            return Err(VerifyError::TimestampStale);
        }
        if secs > now.saturating_add(window(spec.future_tolerance)) {
            return Err(VerifyError::TimestampFuture);
        }
    }
    let id = raw_id(spec, headers, &names)?;
    let expected = digest(spec, key, body, &timestamp, &id);
    match candidates.contains(&expected) {
        true => Ok(()),
        false => Err(VerifyError::SignatureMismatch),
    }
}

/// The correct signature of a request with these fields, encoded both ways.
fn encodings(spec: &HmacSpec, digest: &[u8]) -> (String, String) {
    match spec.encoding {
        Encoding::Hex => {
            let lower: String = digest.iter().map(|b| format!("{b:02x}")).collect();
            (lower.clone(), lower.to_ascii_uppercase())
        }
        Encoding::Base64 => (
            base64::engine::general_purpose::STANDARD.encode(digest),
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest),
        ),
        Encoding::Base64Url => (
            base64::engine::general_purpose::URL_SAFE.encode(digest),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest),
        ),
    }
}

fn to_map(fields: &[(HeaderName, Vec<u8>)]) -> Option<HeaderMap> {
    let mut map = HeaderMap::new();
    for (name, value) in fields {
        map.append(name.clone(), HeaderValue::from_bytes(value).ok()?);
    }
    Some(map)
}

fn replace(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = haystack;
    while let Some(at) = rest.windows(from.len()).position(|w| w == from) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(to);
        rest = &rest[at + from.len()..];
    }
    out.extend_from_slice(rest);
    out
}

fn verify(
    scheme: &HmacScheme,
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<(), VerifyError> {
    scheme.verify(&Request {
        headers: &hookgate::fields::Fields::from(headers),
        body,
        method: &Method::POST,
        query: None,
        now_unix: now,
    })
}

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    let mut line = || -> &[u8] {
        let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        let l = &rest[..end];
        rest = rest.get(end + 1..).unwrap_or(&[]);
        l
    };
    let presets = hmac_presets();
    let id_line = line();
    let (_, preset) = presets
        .iter()
        .find(|(id, _)| id.as_bytes() == id_line)
        .unwrap_or(&presets[id_line.first().copied().unwrap_or(0) as usize % presets.len()]);
    let secret = line().to_vec();
    let url = std::str::from_utf8(line()).ok().map(str::to_string);
    let now: i64 = std::str::from_utf8(line())
        .ok()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    let mut fields: Vec<(HeaderName, Vec<u8>)> = Vec::new();
    loop {
        let l = line();
        if l.is_empty() {
            break;
        }
        let Some(colon) = l.iter().position(|&b| b == b':') else {
            continue;
        };
        let Ok(name) = HeaderName::from_bytes(l[..colon].trim_ascii()) else {
            continue;
        };
        let value = l[colon + 1..].strip_prefix(b" ").unwrap_or(&l[colon + 1..]);
        fields.push((name, value.to_vec()));
    }
    let body = rest;

    let mut spec = preset.spec().expect("presets are valid");
    spec.url = url.filter(|u| !u.is_empty());
    let Ok(key) = spec.secret_encoding.decode(&secret) else {
        return;
    };
    let scheme = HmacScheme::new(spec.clone(), std::slice::from_ref(&key));

    // Put the correct signature where the input asks for it.
    let Some(template_map) = to_map(&fields) else {
        return;
    };
    let n = names(&spec, &|h| template_map.contains_key(h));
    let sig_values: Vec<&[u8]> = template_map
        .get_all(&n.signature)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    let ts = raw_timestamp(&spec, &template_map, &n, &sig_values, body).unwrap_or_default();
    let id = raw_id(&spec, &template_map, &n).unwrap_or_default();
    let (lower, upper) = encodings(&spec, &digest(&spec, &key, body, &ts, &id));
    for (name, value) in fields.iter_mut() {
        if *name == n.signature {
            *value = replace(value, b"{sig}", lower.as_bytes());
            *value = replace(value, b"{SIG}", upper.as_bytes());
        }
    }
    let Some(headers) = to_map(&fields) else {
        return;
    };
    let values: Vec<&[u8]> = headers
        .get_all(&n.signature)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    if raw_timestamp(&spec, &headers, &n, &values, body).unwrap_or_default() != ts {
        return; // the placeholder was inside the timestamp itself
    }

    let got = verify(&scheme, &headers, body, now);
    let expected = reference(&spec, &key, &headers, body, now);
    assert_eq!(
        got,
        expected,
        "{headers:?}, body {:?}",
        String::from_utf8_lossy(body)
    );

    // A delivery signed as the sender would verifies at its own time.
    let Some(ts_spec) = &spec.timestamp else {
        return self_signed(&scheme, &spec, body, now, None);
    };
    if matches!(ts_spec.source, TimestampSource::Json(_)) {
        return;
    }
    let at = now.clamp(0, 253_402_300_799);
    let text = match ts_spec.unit {
        TimeUnit::Seconds => at.to_string(),
        TimeUnit::Millis => (at * 1000).to_string(),
        TimeUnit::Rfc3339 => hookgate::sign::rfc3339(at),
    };
    self_signed(&scheme, &spec, body, at, Some(text));
});

fn self_signed(scheme: &HmacScheme, spec: &HmacSpec, body: &[u8], at: i64, ts: Option<String>) {
    let ts = ts.unwrap_or_default();
    let id = b"msg_2kd9Fuzz";
    let value = scheme.sign_request(body, ts.as_bytes(), id, b"POST");
    let mut headers = HeaderMap::new();
    headers.insert(spec.header.clone(), HeaderValue::from_str(&value).unwrap());
    if let Some(TimestampSource::Header(h)) = spec.timestamp.as_ref().map(|t| &t.source) {
        headers.insert(h.clone(), HeaderValue::from_str(&ts).unwrap());
    }
    if let Some(h) = &spec.id_header {
        headers.insert(h.clone(), HeaderValue::from_static("msg_2kd9Fuzz"));
    }
    assert_eq!(
        verify(scheme, &headers, body, at),
        Ok(()),
        "self-signed {value:?} at {at} ({ts:?})"
    );
}
