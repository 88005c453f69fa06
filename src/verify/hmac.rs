//! The generic HMAC verifier: one configurable scheme that covers most senders. What it
//! spans is the parameter space of ../shared/senders.md: the hash; how the secret turns
//! into a key (raw, base64 after an optional prefix such as `whsec_`, base64 only when
//! prefixed, hex); what is signed (a compiled template); how the signature is encoded;
//! the header's shape (a bare value with a fixed prefix, or a list of `key=value` pairs
//! that may also carry the timestamp, as `t=…,v1=…` or `v1,sig v1,sig`); and where the
//! timestamp comes from (a header, the signature header, or a JSON body field; seconds,
//! milliseconds or RFC 3339). Key schedules are computed once at load time, received
//! signatures are decoded into stack buffers and compared in constant time with
//! `subtle`, and the cheap checks (header present, well-formed, fresh) run before any
//! hashing.

use super::template::{Inputs, Part, Template};
use super::VerifyError;
use crate::fields::Fields;
use hmac::Mac;
use http::{HeaderName, Method};
use std::time::Duration;

type HmacSha1 = hmac::Hmac<sha1::Sha1>;
type HmacSha256 = hmac::Hmac<sha2::Sha256>;
type HmacSha512 = hmac::Hmac<sha2::Sha512>;

/// The largest digest we produce (SHA-512).
const MAX_DIGEST: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha1,
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "sha1" => Ok(Algorithm::Sha1),
            "sha256" => Ok(Algorithm::Sha256),
            "sha512" => Ok(Algorithm::Sha512),
            _ => Err(format!(
                "unknown algorithm {s:?} (use sha1, sha256 or sha512)"
            )),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha1 => "sha1",
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }
    pub fn digest_len(self) -> usize {
        match self {
            Algorithm::Sha1 => 20,
            Algorithm::Sha256 => 32,
            Algorithm::Sha512 => 64,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Hex digits, either case.
    Hex,
    /// Standard base64; padding optional.
    Base64,
    /// URL-safe base64; padding optional (Sanity).
    Base64Url,
}

impl Encoding {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "hex" => Ok(Encoding::Hex),
            "base64" => Ok(Encoding::Base64),
            "base64url" => Ok(Encoding::Base64Url),
            _ => Err(format!(
                "unknown encoding {s:?} (use hex, base64 or base64url)"
            )),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Hex => "hex",
            Encoding::Base64 => "base64",
            Encoding::Base64Url => "base64url",
        }
    }
}

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
const B64URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// How a configured secret becomes the HMAC key. Explicit per preset: a `whsec_`
/// prefix alone never decides it (Stripe's secrets start with `whsec_` and are used as
/// they are; Standard Webhooks' are base64 after it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretEncoding {
    /// The secret's UTF-8 bytes.
    Raw,
    /// Base64, after removing `prefix` if the secret starts with it.
    Base64 { prefix: String },
    /// Base64 after `prefix` when the secret starts with it; raw otherwise (OpenAI).
    Base64IfPrefixed { prefix: String },
    /// Hex digits (Adyen).
    Hex,
}

impl SecretEncoding {
    pub fn parse(s: &str, prefix: &str) -> Result<Self, String> {
        match s {
            "raw" => Ok(SecretEncoding::Raw),
            "base64" => Ok(SecretEncoding::Base64 {
                prefix: prefix.to_string(),
            }),
            "base64_if_prefixed" if prefix.is_empty() => {
                Err("base64_if_prefixed needs `secret_prefix` (e.g. \"whsec_\")".to_string())
            }
            "base64_if_prefixed" => Ok(SecretEncoding::Base64IfPrefixed {
                prefix: prefix.to_string(),
            }),
            "hex" => Ok(SecretEncoding::Hex),
            _ => Err(format!(
                "unknown secret encoding {s:?} (use raw, base64, base64_if_prefixed or hex)"
            )),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            SecretEncoding::Raw => "raw",
            SecretEncoding::Base64 { .. } => "base64",
            SecretEncoding::Base64IfPrefixed { .. } => "base64_if_prefixed",
            SecretEncoding::Hex => "hex",
        }
    }

    /// The key bytes for `secret`. Errors never include the secret.
    pub fn decode(&self, secret: &[u8]) -> Result<Vec<u8>, String> {
        let strip = |p: &str| secret.strip_prefix(p.as_bytes());
        let key = match self {
            SecretEncoding::Raw => secret.to_vec(),
            SecretEncoding::Base64 { prefix } => {
                let body = strip(prefix).unwrap_or(secret);
                B64.decode(body.trim_ascii())
                    .map_err(|_| match prefix.is_empty() {
                        true => "is not valid base64".to_string(),
                        false => format!("is not valid base64 after removing {prefix:?}"),
                    })?
            }
            SecretEncoding::Base64IfPrefixed { prefix } => match strip(prefix) {
                Some(body) => B64
                    .decode(body.trim_ascii())
                    .map_err(|_| format!("is not valid base64 after removing {prefix:?}"))?,
                None => secret.to_vec(),
            },
            SecretEncoding::Hex => {
                hex_decode(secret.trim_ascii()).ok_or_else(|| "is not valid hex".to_string())?
            }
        };
        if key.is_empty() {
            return Err("decodes to an empty key".to_string());
        }
        Ok(key)
    }
}

/// The shape of the signature header's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// The whole value is one signature, after the spec's `prefix` (GitHub, Expel).
    Bare,
    /// Entries separated by `separator` (any whitespace when it is a space), each
    /// `key<assign>value`: signatures under `signature_keys`, and possibly the
    /// timestamp. `v1,sig v1,sig` (Standard Webhooks), `t=…,v1=…` (Stripe),
    /// `ts=…;h1=…` (Paddle), `v1=a,v1=b` (PagerDuty). Unknown keys are ignored.
    Pairs {
        separator: char,
        assign: char,
        signature_keys: Vec<String>,
    },
}

/// The unit a timestamp is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeUnit {
    Seconds,
    Millis,
    Rfc3339,
}

impl TimeUnit {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "unix" | "seconds" => Ok(TimeUnit::Seconds),
            "unix_ms" | "milliseconds" => Ok(TimeUnit::Millis),
            "rfc3339" => Ok(TimeUnit::Rfc3339),
            _ => Err(format!(
                "unknown timestamp format {s:?} (use unix, unix_ms or rfc3339)"
            )),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            TimeUnit::Seconds => "unix",
            TimeUnit::Millis => "unix_ms",
            TimeUnit::Rfc3339 => "rfc3339",
        }
    }
}

/// Where the timestamp is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimestampSource {
    Header(HeaderName),
    /// A key of the signature header (`t` in `t=…,v1=…`).
    SignatureKey(String),
    /// A field of the JSON body, as a path of object keys (`webhookTimestamp`).
    Json(Vec<String>),
}

impl TimestampSource {
    pub fn describe(&self) -> String {
        match self {
            TimestampSource::Header(h) => h.as_str().to_string(),
            TimestampSource::SignatureKey(k) => format!("signature key {k}"),
            TimestampSource::Json(p) => format!("json:{}", p.join(".")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimestampSpec {
    pub source: TimestampSource,
    pub unit: TimeUnit,
}

/// A secret's precomputed MAC state.
#[derive(Clone)]
enum Key {
    Sha1(HmacSha1),
    Sha256(HmacSha256),
    Sha512(HmacSha512),
}

impl Key {
    fn new(algorithm: Algorithm, secret: &[u8]) -> Key {
        // HMAC accepts keys of any length, so these cannot fail.
        match algorithm {
            Algorithm::Sha1 => Key::Sha1(HmacSha1::new_from_slice(secret).expect("any key length")),
            Algorithm::Sha256 => {
                Key::Sha256(HmacSha256::new_from_slice(secret).expect("any key length"))
            }
            Algorithm::Sha512 => {
                Key::Sha512(HmacSha512::new_from_slice(secret).expect("any key length"))
            }
        }
    }

    /// The MAC of the template's content; returns the digest length.
    fn sign(&self, template: &Template, inputs: &Inputs<'_>, out: &mut [u8; MAX_DIGEST]) -> usize {
        fn run<M: Mac + Clone>(m: &M, t: &Template, i: &Inputs<'_>, out: &mut [u8]) -> usize {
            let mut mac = m.clone();
            t.feed(i, |s| mac.update(s));
            let tag = mac.finalize().into_bytes();
            out[..tag.len()].copy_from_slice(&tag);
            tag.len()
        }
        match self {
            Key::Sha1(m) => run(m, template, inputs, out),
            Key::Sha256(m) => run(m, template, inputs, out),
            Key::Sha512(m) => run(m, template, inputs, out),
        }
    }
}

/// Everything that defines an HMAC scheme except the secrets: the fully spelled-out form
/// every preset expands to.
#[derive(Debug, Clone)]
pub struct HmacSpec {
    pub algorithm: Algorithm,
    pub header: HeaderName,
    pub format: Format,
    /// For [`Format::Bare`]: the fixed text before the signature (`sha256=`, `v0=`).
    pub prefix: String,
    /// Accept the value with or without `prefix` (for senders that vary).
    pub prefix_optional: bool,
    pub encoding: Encoding,
    pub template: Template,
    pub timestamp: Option<TimestampSpec>,
    pub id_header: Option<HeaderName>,
    /// How old a timestamp may be.
    pub tolerance: Duration,
    /// How far in the future a timestamp may be (clock skew).
    pub future_tolerance: Duration,
    pub secret_encoding: SecretEncoding,
    /// The public URL the sender signs, for `{url}` (it cannot be seen behind a proxy).
    pub url: Option<String>,
    /// Other names for the signature, timestamp and id headers, used when the signature
    /// header is absent (Svix also sends its scheme under the `webhook-*` names).
    pub fallback: Option<HeaderNames>,
}

/// The signature, timestamp and delivery id header names of a scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderNames {
    pub signature: HeaderName,
    pub timestamp: HeaderName,
    pub id: HeaderName,
}

impl HmacSpec {
    /// A spec with the common defaults: bare value, no prefix, `{body}`, raw secret.
    pub fn simple(
        algorithm: Algorithm,
        header: HeaderName,
        encoding: Encoding,
        template: Template,
    ) -> HmacSpec {
        HmacSpec {
            algorithm,
            header,
            format: Format::Bare,
            prefix: String::new(),
            prefix_optional: false,
            encoding,
            template,
            timestamp: None,
            id_header: None,
            tolerance: Duration::from_secs(300),
            future_tolerance: Duration::from_secs(300),
            secret_encoding: SecretEncoding::Raw,
            url: None,
            fallback: None,
        }
    }
}

/// A ready-to-use HMAC verifier: the spec plus one key state per secret.
#[derive(Clone)]
pub struct HmacScheme {
    pub spec: HmacSpec,
    keys: Vec<Key>,
}

impl std::fmt::Debug for HmacScheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HmacScheme")
            .field("spec", &self.spec)
            .field("secrets", &self.keys.len())
            .finish()
    }
}

/// A received signature, decoded.
pub(crate) struct Candidate {
    pub(crate) bytes: [u8; MAX_DIGEST],
    pub(crate) len: usize,
}

/// Decodes one encoded signature of `want` bytes, or `None` if malformed.
pub(crate) fn decode_encoded(v: &[u8], encoding: Encoding, want: usize) -> Option<Candidate> {
    let mut out = Candidate {
        bytes: [0; MAX_DIGEST],
        len: 0,
    };
    match encoding {
        Encoding::Hex => {
            if v.len() != want * 2 || !decode_hex_into(v, &mut out.bytes[..want]) {
                return None;
            }
            out.len = want;
        }
        Encoding::Base64 | Encoding::Base64Url => {
            // A digest of `want` bytes is at most 88 base64 characters; anything
            // longer is not a signature and is refused before decoding.
            if v.len() > want.div_ceil(3) * 4 {
                return None;
            }
            let engine = if encoding == Encoding::Base64 {
                &B64
            } else {
                &B64URL
            };
            out.len = engine.decode_slice(v, &mut out.bytes).ok()?;
            if out.len != want {
                return None;
            }
        }
    }
    Some(out)
}

/// A bare header value: the prefix (case-insensitive), then the signature.
pub(crate) fn decode_bare(value: &[u8], spec: &HmacSpec, want: usize) -> Option<Candidate> {
    let mut v = value.trim_ascii();
    let prefix = spec.prefix.as_bytes();
    if !prefix.is_empty() {
        match v.get(..prefix.len()) {
            Some(head) if head.eq_ignore_ascii_case(prefix) => v = &v[prefix.len()..],
            _ if spec.prefix_optional => {}
            _ => return None,
        }
    }
    decode_encoded(v, spec.encoding, want)
}

/// Splits a pairs-shaped value into `(key, value)` entries.
pub(crate) fn pairs(
    value: &[u8],
    separator: char,
    assign: char,
) -> impl Iterator<Item = (&[u8], &[u8])> {
    let sep = separator as u8;
    let whitespace = separator == ' ';
    value
        .split(move |&b| {
            if whitespace {
                b.is_ascii_whitespace()
            } else {
                b == sep
            }
        })
        .map(|e| e.trim_ascii())
        .filter(|e| !e.is_empty())
        .filter_map(move |e| {
            let at = e.iter().position(|&b| b == assign as u8)?;
            Some((e[..at].trim_ascii(), e[at + 1..].trim_ascii()))
        })
}

/// Each byte's value as a hex digit (either case), or `NOT_HEX`.
const HEX: [u8; 256] = {
    let mut table = [NOT_HEX; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        table[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};
/// Not a hex digit: the high bit set, which no digit's value has.
const NOT_HEX: u8 = 0xFF;

/// `hex` decoded (an even number of digits, either case), or `None`.
pub(crate) fn hex_decode(hex: &[u8]) -> Option<Vec<u8>> {
    if hex.len() % 2 != 0 {
        return None;
    }
    let mut out = vec![0; hex.len() / 2];
    decode_hex_into(hex, &mut out).then_some(out)
}

/// Decodes hex pairs from `hex` into `out` (as many bytes as `out` holds: `hex` holds
/// exactly twice that); false if a character is not a hex digit. One table lookup per
/// character and no branch per digit: a signature is 40 to 128 of them.
fn decode_hex_into(hex: &[u8], out: &mut [u8]) -> bool {
    debug_assert_eq!(hex.len(), out.len() * 2);
    let mut seen = 0u8;
    for (o, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        let (hi, lo) = (HEX[pair[0] as usize], HEX[pair[1] as usize]);
        seen |= hi | lo;
        *o = (hi << 4) | lo;
    }
    seen & 0x80 == 0
}

/// Parses an RFC 3339 timestamp (`2026-11-22T10:00:00.123456789Z`, `…+02:00`) into
/// unix seconds; fractions are dropped. ISO 8601 without a zone is read as UTC.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.trim().as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(r)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (y, mo, d, h, mi, sec) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    let offset = match b.get(i) {
        None => 0,
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) if b.len() == i + 6 && b[i + 3] == b':' => {
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            let o = oh * 3600 + om * 60;
            if sign == b'+' {
                o
            } else {
                -o
            }
        }
        _ => return None,
    };
    // A leap second (:60) counts as :59, so that every parsed time formats back to a
    // time that parses to it (found by the rfc3339 fuzz target at 9999-12-31T23:59:60Z).
    let sec = sec.min(59);
    let t = crate::h1::codec::date::days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec
        - offset;
    // Only years 0000 to 9999 (an offset can push a time past either end), so that every
    // parsed time formats back to four-digit years.
    (-62_167_219_200..253_402_300_800).contains(&t).then_some(t)
}

/// Reads a timestamp in `unit` as unix seconds.
fn timestamp_seconds(raw: &[u8], unit: TimeUnit) -> Result<i64, VerifyError> {
    let text = std::str::from_utf8(raw.trim_ascii()).map_err(|_| VerifyError::TimestampInvalid)?;
    let whole = |t: &str| -> Result<i64, VerifyError> {
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(VerifyError::TimestampInvalid);
        }
        t.parse().map_err(|_| VerifyError::TimestampInvalid)
    };
    match unit {
        TimeUnit::Seconds => whole(text),
        TimeUnit::Millis => whole(text).map(|ms| ms.div_euclid(1000)),
        TimeUnit::Rfc3339 => parse_rfc3339(text).ok_or(VerifyError::TimestampInvalid),
    }
}

/// Checks a timestamp against `now`: at most `past` old and `future` ahead.
/// Checks a unix-seconds timestamp against `now`: at most `past` old, `future` ahead.
pub(crate) fn check_unix(
    raw: &[u8],
    now_unix: i64,
    past: Duration,
    future: Duration,
) -> Result<(), VerifyError> {
    check_window(
        timestamp_seconds(raw, TimeUnit::Seconds)?,
        now_unix,
        past,
        future,
    )
}

fn check_window(
    ts: i64,
    now_unix: i64,
    past: Duration,
    future: Duration,
) -> Result<(), VerifyError> {
    let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    if ts < now_unix.saturating_sub(secs(past)) {
        Err(VerifyError::TimestampStale)
    } else if ts > now_unix.saturating_add(secs(future)) {
        Err(VerifyError::TimestampFuture)
    } else {
        Ok(())
    }
}

/// A JSON body field as the text a signer would have used: strings without quotes,
/// numbers as written.
pub(crate) fn json_field(body: &[u8], path: &[String]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let mut v = &value;
    for key in path {
        v = v.get(key)?;
    }
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Most senders send one signature; a few candidates are kept on the stack.
const MAX_CANDIDATES: usize = 8;

/// The request as the verifier sees it.
pub struct Request<'a> {
    pub headers: &'a Fields,
    pub body: &'a [u8],
    pub method: &'a Method,
    /// The request's query string (Twilio signs the URL it called).
    pub query: Option<&'a str>,
    pub now_unix: i64,
}

impl HmacScheme {
    /// `secrets` are the decoded keys (see [`SecretEncoding::decode`]).
    pub fn new(spec: HmacSpec, secrets: &[Vec<u8>]) -> HmacScheme {
        let keys = secrets
            .iter()
            .map(|s| Key::new(spec.algorithm, s))
            .collect();
        HmacScheme { spec, keys }
    }

    pub fn secret_count(&self) -> usize {
        self.keys.len()
    }

    /// The encoded signature of the signed content, with the first secret.
    fn encoded(&self, inputs: &Inputs<'_>) -> String {
        let mut out = [0u8; MAX_DIGEST];
        // A route that learns its secret in a handshake (Asana) may have none yet.
        let Some(key) = self.keys.first() else {
            return String::new();
        };
        let n = key.sign(&self.spec.template, inputs, &mut out);
        match self.spec.encoding {
            Encoding::Hex => out[..n]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
            Encoding::Base64 => base64::engine::general_purpose::STANDARD.encode(&out[..n]),
            Encoding::Base64Url => B64URL.encode(&out[..n]),
        }
    }

    /// Whether `secret` is one of this scheme's keys (compared by what it signs).
    pub fn holds_key(&self, secret: &[u8]) -> bool {
        let probe = HmacScheme::new(self.spec.clone(), &[secret.to_vec()]);
        let sample = probe.mac_hex(b"hookgate key check");
        self.keys.iter().any(|k| {
            let one = HmacScheme {
                spec: self.spec.clone(),
                keys: vec![k.clone()],
            };
            one.mac_hex(b"hookgate key check") == sample
        })
    }

    /// The hex HMAC of `data` with the first secret (Zoom's `encryptedToken`).
    pub fn mac_hex(&self, data: &[u8]) -> String {
        let Some(key) = self.keys.first() else {
            return String::new();
        };
        let template = Template::compile("{body}").expect("valid");
        let inputs = Inputs {
            body: data,
            timestamp: b"",
            id: b"",
            method: b"",
            url: b"",
        };
        let mut out = [0u8; MAX_DIGEST];
        let n = key.sign(&template, &inputs, &mut out);
        out[..n].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Computes the signature header value for `body`, as the sender would, with the
    /// first secret (for tests and the `sign` command). For a pairs-shaped header whose
    /// timestamp travels in it, the timestamp key is included.
    pub fn sign_value(&self, body: &[u8], timestamp: &[u8], id: &[u8]) -> String {
        self.sign_request(body, timestamp, id, b"POST")
    }

    pub fn sign_request(&self, body: &[u8], timestamp: &[u8], id: &[u8], method: &[u8]) -> String {
        let url = self.spec.url.as_deref().unwrap_or("").as_bytes();
        let inputs = Inputs {
            body,
            timestamp,
            id,
            method,
            url,
        };
        let sig = self.encoded(&inputs);
        match &self.spec.format {
            Format::Bare => format!("{}{sig}", self.spec.prefix),
            Format::Pairs {
                separator,
                assign,
                signature_keys,
            } => {
                let key = signature_keys.first().map(String::as_str).unwrap_or("v1");
                match &self.spec.timestamp {
                    Some(TimestampSpec {
                        source: TimestampSource::SignatureKey(k),
                        ..
                    }) => format!(
                        "{k}{assign}{}{separator}{key}{assign}{sig}",
                        String::from_utf8_lossy(timestamp)
                    ),
                    _ => format!("{key}{assign}{sig}"),
                }
            }
        }
    }

    pub fn verify(&self, req: &Request<'_>) -> Result<(), VerifyError> {
        let spec = &self.spec;
        let want = spec.algorithm.digest_len();

        // 1. The signature header: present and well-formed, before anything is hashed.
        let mut candidates: [Option<Candidate>; MAX_CANDIDATES] = Default::default();
        let mut found = 0;
        let mut present = false;
        let mut header_ts: Option<&[u8]> = None;
        let ts_key = match &spec.timestamp {
            Some(TimestampSpec {
                source: TimestampSource::SignatureKey(k),
                ..
            }) => Some(k.as_bytes()),
            _ => None,
        };
        // The scheme's header names, or their fallback names when only those are present.
        let fallback = spec.fallback.as_ref().filter(|f| {
            !req.headers.contains_key(&spec.header) && req.headers.contains_key(&f.signature)
        });
        let signature_header = fallback.map(|f| &f.signature).unwrap_or(&spec.header);
        for value in req.headers.get_all(signature_header) {
            present = true;
            match &spec.format {
                Format::Bare => {
                    if found < MAX_CANDIDATES {
                        if let Some(c) = decode_bare(value.as_bytes(), spec, want) {
                            candidates[found] = Some(c);
                            found += 1;
                        }
                    }
                }
                Format::Pairs {
                    separator,
                    assign,
                    signature_keys,
                } => {
                    for (k, v) in pairs(value.as_bytes(), *separator, *assign) {
                        if ts_key == Some(k) {
                            header_ts.get_or_insert(v);
                        } else if found < MAX_CANDIDATES
                            && signature_keys.iter().any(|s| s.as_bytes() == k)
                        {
                            if let Some(c) = decode_encoded(v, spec.encoding, want) {
                                candidates[found] = Some(c);
                                found += 1;
                            }
                        }
                    }
                }
            }
        }
        if !present {
            return Err(VerifyError::SignatureMissing);
        }
        if found == 0 {
            return Err(VerifyError::SignatureMalformed);
        }

        // 2. Freshness and the other signed inputs.
        let json_ts;
        let timestamp: &[u8] = match &spec.timestamp {
            None => b"",
            Some(ts) => {
                let raw: &[u8] = match &ts.source {
                    TimestampSource::Header(name) => req
                        .headers
                        .get(fallback.map(|f| &f.timestamp).unwrap_or(name))
                        .ok_or(VerifyError::TimestampMissing)?
                        .as_bytes()
                        .trim_ascii(),
                    TimestampSource::SignatureKey(_) => {
                        header_ts.ok_or(VerifyError::TimestampMissing)?
                    }
                    TimestampSource::Json(path) => {
                        json_ts =
                            json_field(req.body, path).ok_or(VerifyError::TimestampMissing)?;
                        json_ts.as_bytes()
                    }
                };
                let secs = timestamp_seconds(raw, ts.unit)?;
                check_window(secs, req.now_unix, spec.tolerance, spec.future_tolerance)?;
                raw
            }
        };
        let id = match &spec.id_header {
            Some(name) if spec.template.uses(&Part::Id) => req
                .headers
                .get(fallback.map(|f| &f.id).unwrap_or(name))
                .ok_or(VerifyError::IdMissing)?
                .as_bytes(),
            _ => b"",
        };

        // 3. The MAC with every secret, compared with every candidate in constant time.
        let inputs = Inputs {
            body: req.body,
            timestamp,
            id,
            method: req.method.as_str().as_bytes(),
            url: spec.url.as_deref().unwrap_or("").as_bytes(),
        };
        let mut expected = [0u8; MAX_DIGEST];
        let mut matched = subtle::Choice::from(0);
        for key in &self.keys {
            let n = key.sign(&spec.template, &inputs, &mut expected);
            for c in candidates[..found].iter().flatten() {
                matched |= super::digest_eq(&c.bytes[..c.len], &expected[..n]);
            }
        }
        if bool::from(matched) {
            Ok(())
        } else {
            Err(VerifyError::SignatureMismatch)
        }
    }
}

#[cfg(test)]
impl HmacScheme {
    /// `verify` for a POST at `now_unix`, for table tests.
    pub(crate) fn check(
        &self,
        headers: &Fields,
        body: &[u8],
        now_unix: i64,
    ) -> Result<(), VerifyError> {
        self.verify(&Request {
            headers,
            body,
            method: &Method::POST,
            query: None,
            now_unix,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const NOW: i64 = 1_700_000_000;

    #[test]
    fn the_hex_table_reads_every_byte_as_the_digit_rules_say() {
        for c in 0..=255u8 {
            let want = match c {
                b'0'..=b'9' => Some(c - b'0'),
                b'a'..=b'f' => Some(c - b'a' + 10),
                b'A'..=b'F' => Some(c - b'A' + 10),
                _ => None,
            };
            // As the high digit of a pair and as the low one.
            let mut out = [0u8];
            let got = decode_hex_into(&[c, b'0'], &mut out).then_some(out[0] >> 4);
            assert_eq!(got, want, "byte {c:#04x}");
            let got = decode_hex_into(&[b'0', c], &mut out).then_some(out[0]);
            assert_eq!(got, want, "byte {c:#04x}");
        }
    }

    #[test]
    fn hex_decoding_refuses_a_non_digit_anywhere() {
        let good = b"00ff7Ae9";
        let mut out = [0u8; 4];
        assert!(decode_hex_into(good, &mut out));
        assert_eq!(out, [0x00, 0xff, 0x7a, 0xe9]);
        // The neighbours of each digit range, and bytes with the high bit set.
        for bad in [b'/', b':', b'@', b'G', b'`', b'g', b' ', 0x80, 0xB0, 0xFF] {
            for at in 0..good.len() {
                let mut v = *good;
                v[at] = bad;
                assert!(!decode_hex_into(&v, &mut out), "{bad:#04x} at {at}");
                assert!(decode_encoded(&v, Encoding::Hex, 4).is_none());
            }
        }
    }

    fn spec(algorithm: Algorithm, encoding: Encoding, signed: &str) -> HmacSpec {
        HmacSpec::simple(
            algorithm,
            HeaderName::from_static("x-sig"),
            encoding,
            Template::compile(signed).unwrap(),
        )
    }

    fn hdrs(pairs: &[(&'static str, &str)]) -> Fields {
        let mut h = http::HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_static(k),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        Fields::from(&h)
    }

    // Expected values computed with `openssl dgst -<alg> -hmac k` over the signed bytes.
    #[test]
    fn sha512_hex() {
        let s = HmacScheme::new(
            spec(Algorithm::Sha512, Encoding::Hex, "{body}"),
            &[b"k".to_vec()],
        );
        let sig = "f527422686555b6528a2e7f7ec82b2f5452b00303bb286f874e075ba778974a6d81adfff523642fc73b6960f759b92a3bad138be110bf59223e79fd1b5c6825d";
        assert_eq!(
            s.check(&hdrs(&[("x-sig", sig)]), br#"{"a":1}"#, NOW),
            Ok(())
        );
        assert_eq!(
            s.check(&hdrs(&[("x-sig", sig)]), br#"{"a":2}"#, NOW),
            Err(VerifyError::SignatureMismatch)
        );
    }

    #[test]
    fn sha1_base64_with_and_without_padding() {
        let s = HmacScheme::new(
            spec(Algorithm::Sha1, Encoding::Base64, "{body}"),
            &[b"k".to_vec()],
        );
        assert_eq!(
            s.check(
                &hdrs(&[("x-sig", "e0q2iYq4Ygd+nK9QSzmYLyvEFFM=")]),
                br#"{"a":1}"#,
                NOW
            ),
            Ok(())
        );
        assert_eq!(
            s.check(
                &hdrs(&[("x-sig", "e0q2iYq4Ygd+nK9QSzmYLyvEFFM")]),
                br#"{"a":1}"#,
                NOW
            ),
            Ok(())
        );
        assert_eq!(
            s.check(
                &hdrs(&[("x-sig", "e0q2iYq4Ygd+nK9QSzmYLyvEFFM=AAAA")]),
                br#"{"a":1}"#,
                NOW
            ),
            Err(VerifyError::SignatureMalformed)
        );
        assert_eq!(
            s.check(&hdrs(&[("x-sig", "!!!!")]), br#"{"a":1}"#, NOW),
            Err(VerifyError::SignatureMalformed)
        );
    }

    fn timestamped() -> HmacScheme {
        let mut sp = spec(Algorithm::Sha256, Encoding::Hex, "v0:{timestamp}:{body}");
        sp.prefix = "v0=".into();
        sp.timestamp = Some(TimestampSpec {
            source: TimestampSource::Header(HeaderName::from_static("x-ts")),
            unit: TimeUnit::Seconds,
        });
        HmacScheme::new(sp, &[b"ts-secret".to_vec()])
    }

    const TS_SIG: &str = "v0=434e75416a7b1fa6fa7548c6fea8832c71ff7d8e24f405b90dd18ece77029808";

    #[test]
    fn timestamp_template_and_tolerance_both_ways() {
        let s = timestamped();
        let h = hdrs(&[("x-sig", TS_SIG), ("x-ts", "1700000000")]);
        let body = br#"{"a":1}"#;
        assert_eq!(s.check(&h, body, NOW), Ok(()));
        assert_eq!(s.check(&h, body, NOW + 300), Ok(()));
        assert_eq!(
            s.check(&h, body, NOW + 301),
            Err(VerifyError::TimestampStale)
        );
        assert_eq!(
            s.check(&h, body, NOW - 301),
            Err(VerifyError::TimestampFuture)
        );
        // A replayed signature with a fresh timestamp does not match.
        let moved = hdrs(&[("x-sig", TS_SIG), ("x-ts", "1700000100")]);
        assert_eq!(
            s.check(&moved, body, NOW),
            Err(VerifyError::SignatureMismatch)
        );
        assert_eq!(
            s.check(&hdrs(&[("x-sig", TS_SIG)]), body, NOW),
            Err(VerifyError::TimestampMissing)
        );
        for bad in ["", "soon", "1.7e9", "-"] {
            assert_eq!(
                s.check(&hdrs(&[("x-sig", TS_SIG), ("x-ts", bad)]), body, NOW),
                Err(VerifyError::TimestampInvalid),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn id_template_base64() {
        let mut sp = spec(
            Algorithm::Sha256,
            Encoding::Base64,
            "{id}.{timestamp}.{body}",
        );
        sp.timestamp = Some(TimestampSpec {
            source: TimestampSource::Header(HeaderName::from_static("x-ts")),
            unit: TimeUnit::Seconds,
        });
        sp.id_header = Some(HeaderName::from_static("x-id"));
        let s = HmacScheme::new(sp, &[b"k".to_vec()]);
        let sig = "VBsnaZ19KHxZpSPS1tPiG++uWCsM9Fw2ggfPDGLHkrU=";
        let body = br#"{"a":1}"#;
        assert_eq!(
            s.check(
                &hdrs(&[("x-sig", sig), ("x-ts", "1700000000"), ("x-id", "msg_1")]),
                body,
                NOW
            ),
            Ok(())
        );
        assert_eq!(
            s.check(
                &hdrs(&[("x-sig", sig), ("x-ts", "1700000000"), ("x-id", "msg_2")]),
                body,
                NOW
            ),
            Err(VerifyError::SignatureMismatch)
        );
        assert_eq!(
            s.check(&hdrs(&[("x-sig", sig), ("x-ts", "1700000000")]), body, NOW),
            Err(VerifyError::IdMissing)
        );
    }

    #[test]
    fn any_of_several_header_values_may_match() {
        let s = timestamped();
        let h = hdrs(&[
            ("x-sig", "v0=00"),
            ("x-sig", TS_SIG),
            ("x-ts", "1700000000"),
        ]);
        assert_eq!(s.check(&h, br#"{"a":1}"#, NOW), Ok(()));
    }

    #[test]
    fn sign_value_round_trips_every_algorithm_and_encoding() {
        for alg in [Algorithm::Sha1, Algorithm::Sha256, Algorithm::Sha512] {
            for enc in [Encoding::Hex, Encoding::Base64] {
                let mut sp = spec(alg, enc, "{body}");
                sp.prefix = "sig=".into();
                let s = HmacScheme::new(sp, &[b"secret".to_vec()]);
                let v = s.sign_value(b"payload", b"", b"");
                assert!(v.starts_with("sig="));
                assert_eq!(
                    s.check(&hdrs(&[("x-sig", &v)]), b"payload", NOW),
                    Ok(()),
                    "{alg:?} {enc:?}"
                );
            }
        }
    }

    #[test]
    fn debug_never_shows_keys() {
        let s = HmacScheme::new(
            spec(Algorithm::Sha256, Encoding::Hex, "{body}"),
            &[b"super-secret-value".to_vec()],
        );
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("super-secret-value"));
        assert!(dbg.contains("secrets: 1"));
    }
}

#[cfg(test)]
mod shapes {
    //! The parameter space beyond a bare header: pairs-shaped headers, key derivation,
    //! timestamp sources and units, and URL/method templates. Expected values are the
    //! published Standard Webhooks vector (../shared/senders.md §6.1) and values computed
    //! with Python's hmac module from the documented algorithms.
    use super::*;
    use crate::verify::presets::{find, Kind};
    use http::HeaderValue;

    fn preset(id: &str, secret: &str) -> HmacScheme {
        let Kind::Hmac(p) = find(id).unwrap().kind else {
            panic!("{id}")
        };
        let spec = p.spec().unwrap();
        let key = spec.secret_encoding.decode(secret.as_bytes()).unwrap();
        HmacScheme::new(spec, &[key])
    }

    fn hdrs(pairs: &[(&str, &str)]) -> Fields {
        let mut h = http::HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        Fields::from(&h)
    }

    const SW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SW_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SW_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn sw(sig: &str, ts: &str) -> Fields {
        hdrs(&[
            ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
            ("webhook-timestamp", ts),
            ("webhook-signature", sig),
        ])
    }

    #[test]
    fn standard_webhooks_published_vector() {
        let s = preset("standard-webhooks", SW_SECRET);
        let now = 1_614_265_330;
        assert_eq!(s.check(&sw(SW_SIG, "1614265330"), SW_BODY, now), Ok(()));
        // Several signatures, unknown versions ignored, any valid one passes.
        let multi = format!("v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= {SW_SIG} v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=");
        assert_eq!(s.check(&sw(&multi, "1614265330"), SW_BODY, now), Ok(()));
        assert_eq!(
            s.check(
                &sw(
                    "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
                    "1614265330"
                ),
                SW_BODY,
                now
            ),
            Err(VerifyError::SignatureMismatch)
        );
        assert_eq!(
            s.check(&sw("v1,", "1614265330"), SW_BODY, now),
            Err(VerifyError::SignatureMalformed)
        );
        assert_eq!(
            s.check(
                &sw(
                    "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
                    "1614265330"
                ),
                SW_BODY,
                now
            ),
            Err(VerifyError::SignatureMalformed)
        );
        assert_eq!(
            s.check(&sw(SW_SIG, "1614265330"), SW_BODY, now + 301),
            Err(VerifyError::TimestampStale)
        );
        assert_eq!(
            s.check(&sw(SW_SIG, "1614265330"), SW_BODY, now - 301),
            Err(VerifyError::TimestampFuture)
        );
        // The same key without its prefix decodes the same (the libraries strip it if present).
        let bare = preset("standard-webhooks", SW_SECRET.trim_start_matches("whsec_"));
        assert_eq!(bare.check(&sw(SW_SIG, "1614265330"), SW_BODY, now), Ok(()));
        // Svix sends the same scheme under svix-* names.
        let svix = preset("svix", SW_SECRET);
        let h = hdrs(&[
            ("svix-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
            ("svix-timestamp", "1614265330"),
            ("svix-signature", SW_SIG),
        ]);
        assert_eq!(svix.check(&h, SW_BODY, now), Ok(()));
        assert_eq!(
            s.sign_value(SW_BODY, b"1614265330", b"msg_p5jXN8AQM9LWM0D4loKWxJek"),
            SW_SIG
        );
    }

    #[test]
    fn openai_decodes_only_a_prefixed_secret() {
        let prefixed = preset("openai", SW_SECRET);
        assert_eq!(
            prefixed.check(&sw(SW_SIG, "1614265330"), SW_BODY, 1_614_265_330),
            Ok(())
        );
        // Unprefixed: the raw UTF-8 bytes are the key, so the same text no longer matches.
        let raw = preset("openai", SW_SECRET.trim_start_matches("whsec_"));
        assert_eq!(
            raw.check(&sw(SW_SIG, "1614265330"), SW_BODY, 1_614_265_330),
            Err(VerifyError::SignatureMismatch)
        );
    }

    #[test]
    fn stripe_pairs_with_the_timestamp_inside() {
        let s = preset("stripe", "whsec_test_secret");
        let body = br#"{"id":"evt_1","object":"event"}"#;
        let sig = "0c8670ed117751cc551a20e35839447075c42800ea3cf3e8a2fbda99cd1e6edd";
        let h = |v: &str| hdrs(&[("stripe-signature", v)]);
        let now = 1_700_000_000;
        assert_eq!(
            s.check(&h(&format!("t=1700000000,v1={sig}")), body, now),
            Ok(())
        );
        // Rotation: several v1 entries, a v0 test signature and unknown keys are fine.
        assert_eq!(
            s.check(
                &h(&format!(
                    "t=1700000000,v1=00{},v0=abc,v1={sig},x=1",
                    &sig[2..]
                )),
                body,
                now
            ),
            Ok(())
        );
        assert_eq!(
            s.check(&h(&format!("t=1700000001,v1={sig}")), body, now),
            Err(VerifyError::SignatureMismatch)
        );
        assert_eq!(
            s.check(&h(&format!("v1={sig}")), body, now),
            Err(VerifyError::TimestampMissing)
        );
        assert_eq!(
            s.check(&h("t=1700000000"), body, now),
            Err(VerifyError::SignatureMalformed)
        );
        assert_eq!(
            s.check(&h(&format!("t=1700000000,v1={sig}")), body, now + 301),
            Err(VerifyError::TimestampStale)
        );
        assert_eq!(
            s.sign_value(body, b"1700000000", b""),
            format!("t=1700000000,v1={sig}")
        );
        // The whsec_ secret is used as it is, not decoded.
        assert_eq!(s.spec.secret_encoding, SecretEncoding::Raw);
    }

    #[test]
    fn paddle_semicolons() {
        let s = preset("paddle", "pdl_ntfset_x");
        let body = br#"{"event_id":"evt_01"}"#;
        let v = "ts=1700000000;h1=bfe5e10f8205a11929caad28b3ca435d054b5e0e081f5a969346044add737a7c";
        assert_eq!(
            s.check(&hdrs(&[("paddle-signature", v)]), body, 1_700_000_003),
            Ok(())
        );
        assert_eq!(
            s.check(&hdrs(&[("paddle-signature", v)]), body, 1_700_000_006),
            Err(VerifyError::TimestampStale)
        );
    }

    #[test]
    fn linear_reads_milliseconds_from_the_body() {
        let s = preset("linear", "lin");
        let body = br#"{"action":"create","webhookTimestamp":1700000000123}"#;
        let h = hdrs(&[(
            "linear-signature",
            "c0bfa967c72f475ce885f3134d50a094ac686483c00d60c4885ffc7a8de0e578",
        )]);
        assert_eq!(s.check(&h, body, 1_700_000_030), Ok(()));
        assert_eq!(
            s.check(&h, body, 1_700_000_061),
            Err(VerifyError::TimestampStale)
        );
        assert_eq!(
            s.check(&h, br#"{"action":"create"}"#, 1_700_000_000),
            Err(VerifyError::TimestampMissing)
        );
    }

    #[test]
    fn twitch_rfc3339_with_nanoseconds() {
        let s = preset("twitch", "tw");
        let h = hdrs(&[
            ("twitch-eventsub-message-id", "msg-1"),
            (
                "twitch-eventsub-message-timestamp",
                "2023-11-14T22:13:20.123456789Z",
            ),
            (
                "twitch-eventsub-message-signature",
                "sha256=64117f1d48250fffed43dd39b38f1d4eca00491d3fed25eaf45f861c4fc5cb49",
            ),
        ]);
        assert_eq!(s.check(&h, br#"{"event":"x"}"#, 1_700_000_000), Ok(()));
        assert_eq!(
            s.check(&h, br#"{"event":"x"}"#, 1_700_000_601),
            Err(VerifyError::TimestampStale)
        );
    }

    #[test]
    fn hubspot_signs_method_url_body_and_millisecond_timestamp() {
        let Kind::Hmac(p) = find("hubspot-v3").unwrap().kind else {
            panic!()
        };
        let mut spec = p.spec().unwrap();
        spec.url = Some("https://hooks.example.com/hubspot?portal=1".into());
        let s = HmacScheme::new(spec, &[b"hs".to_vec()]);
        let h = hdrs(&[
            (
                "x-hubspot-signature-v3",
                "JTUprxkqPKkimvLaQuIdqJ90C/dqmGZWgij02+7aPXk=",
            ),
            ("x-hubspot-request-timestamp", "1700000000123"),
        ]);
        assert_eq!(s.check(&h, br#"[{"eventId":1}]"#, 1_700_000_100), Ok(()));
        let put = s.verify(&Request {
            headers: &h,
            body: br#"[{"eventId":1}]"#,
            method: &Method::PUT,
            query: None,
            now_unix: 1_700_000_100,
        });
        assert_eq!(
            put,
            Err(VerifyError::SignatureMismatch),
            "the method is signed"
        );
    }

    #[test]
    fn ms_teams_base64_key_and_hmac_prefix() {
        let s = preset("ms-teams", "c2VjcmV0LWtleS1ieXRlcw==");
        let h = hdrs(&[(
            "authorization",
            "HMAC vhdd84gntnsZpiPS9ZMEZTWZDUAaEidpt8OXBQ0mKKA=",
        )]);
        assert_eq!(s.check(&h, br#"{"type":"message"}"#, 0), Ok(()));
    }

    #[test]
    fn secret_encodings() {
        let b64 = SecretEncoding::Base64 {
            prefix: "whsec_".into(),
        };
        assert_eq!(b64.decode(b"whsec_aGVsbG8=").unwrap(), b"hello");
        assert_eq!(b64.decode(b"aGVsbG8").unwrap(), b"hello");
        let e = b64.decode(b"whsec_not base64!").unwrap_err();
        assert!(
            e.contains("not valid base64") && !e.contains("not base64!"),
            "{e}"
        );
        assert!(b64.decode(b"whsec_").unwrap_err().contains("empty"));
        let only = SecretEncoding::Base64IfPrefixed {
            prefix: "whsec_".into(),
        };
        assert_eq!(only.decode(b"whsec_aGVsbG8=").unwrap(), b"hello");
        assert_eq!(only.decode(b"aGVsbG8=").unwrap(), b"aGVsbG8=");
        assert_eq!(SecretEncoding::Hex.decode(b"00ff").unwrap(), [0, 255]);
        assert!(SecretEncoding::Hex.decode(b"0g").is_err());
        assert_eq!(SecretEncoding::Raw.decode(b"whsec_x").unwrap(), b"whsec_x");
        assert!(SecretEncoding::parse("base64_if_prefixed", "").is_err());
    }

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2023-11-14T22:13:20Z"), Some(1_700_000_000));
        assert_eq!(
            parse_rfc3339("2023-11-14T22:13:20.999999999Z"),
            Some(1_700_000_000)
        );
        assert_eq!(
            parse_rfc3339("2023-11-15T00:13:20+02:00"),
            Some(1_700_000_000)
        );
        assert_eq!(
            parse_rfc3339("2023-11-14T21:13:20-01:00"),
            Some(1_700_000_000)
        );
        assert_eq!(parse_rfc3339("2023-11-14T22:13:20"), Some(1_700_000_000));
        assert_eq!(parse_rfc3339("2000-02-29T00:00:00Z"), Some(951_782_400));
        assert_eq!(
            parse_rfc3339("2023-11-14T22:13:60Z"),
            parse_rfc3339("2023-11-14T22:13:59Z")
        );
        for bad in [
            "",
            "2023-13-01T00:00:00Z",
            "2023-11-14 22:13",
            "2023-11-14T22:13:20.Z",
            "2023-11-14T22:13:20+0200",
            "x023-11-14T22:13:20Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn millisecond_and_future_windows() {
        assert_eq!(
            timestamp_seconds(b"1700000000999", TimeUnit::Millis),
            Ok(1_700_000_000)
        );
        assert_eq!(
            timestamp_seconds(b"-5", TimeUnit::Seconds),
            Err(VerifyError::TimestampInvalid)
        );
        let past = Duration::from_secs(300);
        assert_eq!(check_window(1000, 1000, past, Duration::ZERO), Ok(()));
        assert_eq!(
            check_window(1001, 1000, past, Duration::ZERO),
            Err(VerifyError::TimestampFuture)
        );
    }
}
