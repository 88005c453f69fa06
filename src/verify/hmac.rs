//! The generic HMAC verifier: one configurable scheme that covers most senders. The key
//! schedule of every secret is computed once at load time (a cloned `Hmac` state), the
//! received signature is decoded into a stack buffer and compared in constant time with
//! `subtle`, and the cheap checks (header present, well-formed, fresh) run before any
//! hashing.

use super::template::{Inputs, Part, Template};
use super::VerifyError;
use hmac::Mac;
use http::{HeaderMap, HeaderName};
use std::time::Duration;
use subtle::ConstantTimeEq;

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
}

impl Encoding {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "hex" => Ok(Encoding::Hex),
            "base64" => Ok(Encoding::Base64),
            _ => Err(format!("unknown encoding {s:?} (use hex or base64)")),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Hex => "hex",
            Encoding::Base64 => "base64",
        }
    }
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
    pub prefix: String,
    /// Accept the value with or without `prefix` (for senders that vary).
    pub prefix_optional: bool,
    pub encoding: Encoding,
    pub template: Template,
    pub timestamp_header: Option<HeaderName>,
    pub id_header: Option<HeaderName>,
    /// How far a timestamp may be from now, in the past or the future.
    pub tolerance: Duration,
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
struct Candidate {
    bytes: [u8; MAX_DIGEST],
    len: usize,
}

/// Decodes one header value into a signature of `want` bytes, or `None` if malformed.
fn decode_signature(value: &[u8], spec: &HmacSpec, want: usize) -> Option<Candidate> {
    let mut v = value.trim_ascii();
    let prefix = spec.prefix.as_bytes();
    if !prefix.is_empty() {
        match v.get(..prefix.len()) {
            Some(head) if head.eq_ignore_ascii_case(prefix) => v = &v[prefix.len()..],
            _ if spec.prefix_optional => {}
            _ => return None,
        }
    }
    let mut out = Candidate {
        bytes: [0; MAX_DIGEST],
        len: 0,
    };
    match spec.encoding {
        Encoding::Hex => {
            if v.len() != want * 2 {
                return None;
            }
            for (i, pair) in v.chunks_exact(2).enumerate() {
                out.bytes[i] = (hex_val(pair[0])? << 4) | hex_val(pair[1])?;
            }
            out.len = want;
        }
        Encoding::Base64 => {
            use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
            use base64::Engine;
            const LENIENT: GeneralPurpose = GeneralPurpose::new(
                &base64::alphabet::STANDARD,
                GeneralPurposeConfig::new()
                    .with_decode_padding_mode(DecodePaddingMode::Indifferent),
            );
            // A digest of `want` bytes is at most 88 base64 characters; anything
            // longer is not a signature and is refused before decoding.
            if v.len() > want.div_ceil(3) * 4 {
                return None;
            }
            out.len = LENIENT.decode_slice(v, &mut out.bytes).ok()?;
            if out.len != want {
                return None;
            }
        }
    }
    Some(out)
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Reads a unix-seconds timestamp and checks it against `now` with `tolerance` both ways.
fn check_timestamp(raw: &[u8], now_unix: i64, tolerance: Duration) -> Result<(), VerifyError> {
    let text = std::str::from_utf8(raw.trim_ascii()).map_err(|_| VerifyError::TimestampInvalid)?;
    let ts: i64 = text.parse().map_err(|_| VerifyError::TimestampInvalid)?;
    let tol = i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX);
    if ts < now_unix.saturating_sub(tol) {
        Err(VerifyError::TimestampStale)
    } else if ts > now_unix.saturating_add(tol) {
        Err(VerifyError::TimestampFuture)
    } else {
        Ok(())
    }
}

/// Most senders send one signature header; a few candidates are kept on the stack.
const MAX_CANDIDATES: usize = 8;

impl HmacScheme {
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

    /// Computes the signature header value for `body`, as the sender would, with the
    /// first secret (for tests and the `sign` command).
    pub fn sign_value(&self, body: &[u8], timestamp: &[u8], id: &[u8]) -> String {
        use base64::Engine;
        let mut out = [0u8; MAX_DIGEST];
        let inputs = Inputs {
            body,
            timestamp,
            id,
        };
        let n = self.keys[0].sign(&self.spec.template, &inputs, &mut out);
        let encoded = match self.spec.encoding {
            Encoding::Hex => out[..n]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
            Encoding::Base64 => base64::engine::general_purpose::STANDARD.encode(&out[..n]),
        };
        format!("{}{encoded}", self.spec.prefix)
    }

    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now_unix: i64,
    ) -> Result<(), VerifyError> {
        let spec = &self.spec;
        let want = spec.algorithm.digest_len();

        // 1. The signature header: present and well-formed, before anything is hashed.
        let mut candidates: [Option<Candidate>; MAX_CANDIDATES] = Default::default();
        let mut found = 0;
        let mut present = false;
        for value in headers.get_all(&spec.header) {
            present = true;
            if found < MAX_CANDIDATES {
                if let Some(c) = decode_signature(value.as_bytes(), spec, want) {
                    candidates[found] = Some(c);
                    found += 1;
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
        let timestamp = match &spec.timestamp_header {
            Some(name) => {
                let raw = headers
                    .get(name)
                    .ok_or(VerifyError::TimestampMissing)?
                    .as_bytes();
                check_timestamp(raw, now_unix, spec.tolerance)?;
                raw.trim_ascii()
            }
            None => b"",
        };
        let id = match &spec.id_header {
            Some(name) if spec.template.uses(&Part::Id) => {
                headers.get(name).ok_or(VerifyError::IdMissing)?.as_bytes()
            }
            _ => b"",
        };

        // 3. The MAC with every secret, compared with every candidate in constant time.
        let inputs = Inputs {
            body,
            timestamp,
            id,
        };
        let mut expected = [0u8; MAX_DIGEST];
        let mut matched = subtle::Choice::from(0);
        for key in &self.keys {
            let n = key.sign(&spec.template, &inputs, &mut expected);
            for c in candidates[..found].iter().flatten() {
                matched |= c.bytes[..c.len].ct_eq(&expected[..n]);
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
mod tests {
    use super::*;
    use http::HeaderValue;

    const NOW: i64 = 1_700_000_000;

    fn spec(algorithm: Algorithm, encoding: Encoding, signed: &str) -> HmacSpec {
        HmacSpec {
            algorithm,
            header: HeaderName::from_static("x-sig"),
            prefix: String::new(),
            prefix_optional: false,
            encoding,
            template: Template::compile(signed).unwrap(),
            timestamp_header: None,
            id_header: None,
            tolerance: Duration::from_secs(300),
        }
    }

    fn hdrs(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_static(k),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
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
            s.verify(&hdrs(&[("x-sig", sig)]), br#"{"a":1}"#, NOW),
            Ok(())
        );
        assert_eq!(
            s.verify(&hdrs(&[("x-sig", sig)]), br#"{"a":2}"#, NOW),
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
            s.verify(
                &hdrs(&[("x-sig", "e0q2iYq4Ygd+nK9QSzmYLyvEFFM=")]),
                br#"{"a":1}"#,
                NOW
            ),
            Ok(())
        );
        assert_eq!(
            s.verify(
                &hdrs(&[("x-sig", "e0q2iYq4Ygd+nK9QSzmYLyvEFFM")]),
                br#"{"a":1}"#,
                NOW
            ),
            Ok(())
        );
        assert_eq!(
            s.verify(
                &hdrs(&[("x-sig", "e0q2iYq4Ygd+nK9QSzmYLyvEFFM=AAAA")]),
                br#"{"a":1}"#,
                NOW
            ),
            Err(VerifyError::SignatureMalformed)
        );
        assert_eq!(
            s.verify(&hdrs(&[("x-sig", "!!!!")]), br#"{"a":1}"#, NOW),
            Err(VerifyError::SignatureMalformed)
        );
    }

    fn timestamped() -> HmacScheme {
        let mut sp = spec(Algorithm::Sha256, Encoding::Hex, "v0:{timestamp}:{body}");
        sp.prefix = "v0=".into();
        sp.timestamp_header = Some(HeaderName::from_static("x-ts"));
        HmacScheme::new(sp, &[b"ts-secret".to_vec()])
    }

    const TS_SIG: &str = "v0=434e75416a7b1fa6fa7548c6fea8832c71ff7d8e24f405b90dd18ece77029808";

    #[test]
    fn timestamp_template_and_tolerance_both_ways() {
        let s = timestamped();
        let h = hdrs(&[("x-sig", TS_SIG), ("x-ts", "1700000000")]);
        let body = br#"{"a":1}"#;
        assert_eq!(s.verify(&h, body, NOW), Ok(()));
        assert_eq!(s.verify(&h, body, NOW + 300), Ok(()));
        assert_eq!(
            s.verify(&h, body, NOW + 301),
            Err(VerifyError::TimestampStale)
        );
        assert_eq!(
            s.verify(&h, body, NOW - 301),
            Err(VerifyError::TimestampFuture)
        );
        // A replayed signature with a fresh timestamp does not match.
        let moved = hdrs(&[("x-sig", TS_SIG), ("x-ts", "1700000100")]);
        assert_eq!(
            s.verify(&moved, body, NOW),
            Err(VerifyError::SignatureMismatch)
        );
        assert_eq!(
            s.verify(&hdrs(&[("x-sig", TS_SIG)]), body, NOW),
            Err(VerifyError::TimestampMissing)
        );
        for bad in ["", "soon", "1.7e9", "-"] {
            assert_eq!(
                s.verify(&hdrs(&[("x-sig", TS_SIG), ("x-ts", bad)]), body, NOW),
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
        sp.timestamp_header = Some(HeaderName::from_static("x-ts"));
        sp.id_header = Some(HeaderName::from_static("x-id"));
        let s = HmacScheme::new(sp, &[b"k".to_vec()]);
        let sig = "VBsnaZ19KHxZpSPS1tPiG++uWCsM9Fw2ggfPDGLHkrU=";
        let body = br#"{"a":1}"#;
        assert_eq!(
            s.verify(
                &hdrs(&[("x-sig", sig), ("x-ts", "1700000000"), ("x-id", "msg_1")]),
                body,
                NOW
            ),
            Ok(())
        );
        assert_eq!(
            s.verify(
                &hdrs(&[("x-sig", sig), ("x-ts", "1700000000"), ("x-id", "msg_2")]),
                body,
                NOW
            ),
            Err(VerifyError::SignatureMismatch)
        );
        assert_eq!(
            s.verify(&hdrs(&[("x-sig", sig), ("x-ts", "1700000000")]), body, NOW),
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
        assert_eq!(s.verify(&h, br#"{"a":1}"#, NOW), Ok(()));
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
                    s.verify(&hdrs(&[("x-sig", &v)]), b"payload", NOW),
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
