//! Signature verification. A route owns one [`Verifier`], built at load time from its
//! `verify` section: a named preset (a row of [`presets::PRESETS`], overridable field by
//! field), the fully spelled-out `hmac` form, or `none`. Verification is a pure function
//! of the request's headers, its body and the current time.

pub mod hmac;
pub mod presets;
pub mod template;

use http::{HeaderMap, HeaderValue};

/// Why a delivery failed verification. Each variant is one short reason code sent to the
/// sender and logged; none says what the right signature would have been.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyError {
    SignatureMissing,
    SignatureMalformed,
    SignatureMismatch,
    TimestampMissing,
    TimestampInvalid,
    TimestampStale,
    TimestampFuture,
    IdMissing,
}

impl VerifyError {
    pub fn code(self) -> &'static str {
        match self {
            VerifyError::SignatureMissing => "signature_missing",
            VerifyError::SignatureMalformed => "signature_malformed",
            VerifyError::SignatureMismatch => "signature_mismatch",
            VerifyError::TimestampMissing => "timestamp_missing",
            VerifyError::TimestampInvalid => "timestamp_invalid",
            VerifyError::TimestampStale => "timestamp_stale",
            VerifyError::TimestampFuture => "timestamp_future",
            VerifyError::IdMissing => "id_missing",
        }
    }
}

/// How a route authenticates its sender.
#[derive(Debug, Clone)]
pub enum Scheme {
    /// No signature: the route relies on its IP allowlist (and dedup, later).
    None,
    Hmac(Box<hmac::HmacScheme>),
}

/// A route's verifier, with the name that is forwarded upstream in
/// `X-Hookgate-Verified` once it has passed.
#[derive(Debug, Clone)]
pub struct Verifier {
    pub scheme: Scheme,
    /// `expel`, `github`, `hmac-sha256`, `none`, …
    pub name: String,
    pub header_value: HeaderValue,
}

impl Verifier {
    pub fn new(scheme: Scheme, name: String) -> Verifier {
        let header_value = HeaderValue::from_str(&name).expect("verifier names are ASCII tokens");
        Verifier {
            scheme,
            name,
            header_value,
        }
    }

    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now_unix: i64,
    ) -> Result<(), VerifyError> {
        match &self.scheme {
            Scheme::None => Ok(()),
            Scheme::Hmac(h) => h.verify(headers, body, now_unix),
        }
    }

    /// A one-line description for `check` (never includes a secret).
    pub fn describe(&self) -> String {
        match &self.scheme {
            Scheme::None => "none".to_string(),
            Scheme::Hmac(h) => {
                let s = &h.spec;
                let mut d = format!(
                    "{} (hmac-{} {} {}",
                    self.name,
                    s.algorithm.name(),
                    s.encoding.name(),
                    s.header.as_str()
                );
                if !s.prefix.is_empty() {
                    d.push_str(&format!(" prefix {:?}", s.prefix));
                }
                if let Some(t) = &s.timestamp_header {
                    d.push_str(&format!(" ts {} ±{}s", t.as_str(), s.tolerance.as_secs()));
                }
                d.push(')');
                d
            }
        }
    }
}

/// Seconds since the Unix epoch, for timestamp checks.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
