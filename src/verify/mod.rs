//! Signature verification. A route owns one [`Verifier`], built at load time from its
//! `verify` section: a named preset (a row of [`presets::PRESETS`], overridable field by
//! field), the fully spelled-out `hmac` form, or `none`. Verification is a pure function
//! of the request's headers, its body and the current time.

pub mod hmac;
pub mod presets;
pub mod special;
pub mod template;
pub mod token;

pub use hmac::Request;
use http::HeaderValue;
use subtle::{Choice, ConstantTimeEq};

/// Whether two digests are equal, in time that depends only on their lengths (which
/// are public: the scheme's). The bytes are compared eight at a time with `subtle`'s
/// constant-time equality, which costs an optimisation barrier per call: 4 for a
/// SHA-256 digest instead of 32 byte by byte.
pub(crate) fn digest_eq(a: &[u8], b: &[u8]) -> Choice {
    if a.len() != b.len() {
        return Choice::from(0);
    }
    let (wa, wb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail = wa.remainder().ct_eq(wb.remainder());
    wa.zip(wb).fold(tail, |eq, (x, y)| {
        let x = u64::from_ne_bytes(x.try_into().expect("8 bytes"));
        let y = u64::from_ne_bytes(y.try_into().expect("8 bytes"));
        eq & x.ct_eq(&y)
    })
}

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
    Token(token::TokenScheme),
    Basic(token::BasicScheme),
    ClientState(token::ClientStateScheme),
    Twilio(special::TwilioScheme),
    /// A public-key signature over `{timestamp}{body}` (Discord, SendGrid).
    Key(special::KeyScheme),
    Mailgun(special::MailgunScheme),
    Netlify(special::NetlifyScheme),
    /// Standard Webhooks `v1a` (Ed25519) with a `whpk_` public key.
    StandardAsym(Box<special::StandardAsymScheme>),
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

    pub fn verify(&self, req: &Request<'_>) -> Result<(), VerifyError> {
        match &self.scheme {
            Scheme::None => Ok(()),
            Scheme::Hmac(h) => h.verify(req),
            Scheme::Token(t) => t.verify(req.headers),
            Scheme::Basic(b) => b.verify(req.headers),
            Scheme::ClientState(c) => c.verify(req.body),
            Scheme::Twilio(t) => t.verify(req.headers, req.body, req.query),
            Scheme::Key(k) => k.verify(req.headers, req.body, req.now_unix),
            Scheme::Mailgun(m) => m.verify(req.body, req.now_unix),
            Scheme::Netlify(n) => n.verify(req.headers, req.body),
            Scheme::StandardAsym(s) => s.verify(req.headers, req.body, req.now_unix),
        }
    }

    /// A one-line description for `check` (never includes a secret).
    pub fn describe(&self) -> String {
        match &self.scheme {
            Scheme::None => "none".to_string(),
            Scheme::Token(t) => format!("{} (token in {})", self.name, t.header.as_str()),
            Scheme::Basic(_) => format!("{} (basic auth)", self.name),
            Scheme::ClientState(_) => format!("{} (clientState in the body)", self.name),
            Scheme::StandardAsym(s) => format!("{} (v1a ed25519 in {})", self.name, s.spec.header),
            Scheme::Mailgun(_) => format!(
                "{} (hmac-sha256 of the body's signature.timestamp + token)",
                self.name
            ),
            Scheme::Netlify(_) => format!(
                "{} (JWS HS256 in x-webhook-signature with the body's sha256)",
                self.name
            ),
            Scheme::Twilio(t) => format!(
                "{} (hmac-sha1 base64 x-twilio-signature over {} + form)",
                self.name, t.url
            ),
            Scheme::Key(k) => format!(
                "{} ({} {} over ts {} + body{})",
                self.name,
                match k.key {
                    special::PublicKey::Ed25519(_) => "ed25519",
                    special::PublicKey::P256(_) => "ecdsa-p256-sha256",
                },
                k.signature_header,
                k.timestamp_header,
                k.tolerance
                    .map(|t| format!(" ±{}s", t.as_secs()))
                    .unwrap_or_default()
            ),
            Scheme::Hmac(h) => {
                let s = &h.spec;
                let mut d = format!(
                    "{} (hmac-{} {} {}",
                    self.name,
                    s.algorithm.name(),
                    s.encoding.name(),
                    s.header.as_str()
                );
                match &s.format {
                    hmac::Format::Bare if !s.prefix.is_empty() => {
                        d.push_str(&format!(" prefix {:?}", s.prefix))
                    }
                    hmac::Format::Bare => {}
                    hmac::Format::Pairs { signature_keys, .. } => {
                        d.push_str(&format!(" keys {}", signature_keys.join("|")))
                    }
                }
                if let Some(t) = &s.timestamp {
                    d.push_str(&format!(
                        " ts {} {} -{}s/+{}s",
                        t.source.describe(),
                        t.unit.name(),
                        s.tolerance.as_secs(),
                        s.future_tolerance.as_secs()
                    ));
                }
                if s.secret_encoding != hmac::SecretEncoding::Raw {
                    d.push_str(&format!(" key {}", s.secret_encoding.name()));
                }
                d.push(')');
                d
            }
        }
    }
}

/// Seconds since the Unix epoch, for timestamp checks.
pub use crate::clock::now_unix;

#[cfg(test)]
mod tests {
    use super::digest_eq;

    #[test]
    fn digest_eq_finds_any_differing_byte_at_any_length() {
        // SHA-1, SHA-256 and SHA-512 digest lengths, and lengths with a tail of 1 to 7.
        for len in [20usize, 32, 64, 1, 7, 9, 15] {
            let a: Vec<u8> = (0..len as u8).map(|i| i.wrapping_mul(37)).collect();
            assert!(bool::from(digest_eq(&a, &a.clone())), "len {len}: equal");
            for at in 0..len {
                for flip in [0x01u8, 0x80] {
                    let mut b = a.clone();
                    b[at] ^= flip;
                    assert!(
                        !bool::from(digest_eq(&a, &b)),
                        "len {len}, byte {at}, {flip:#x}"
                    );
                }
            }
        }
        assert!(bool::from(digest_eq(&[], &[])));
    }

    #[test]
    fn digest_eq_refuses_a_length_mismatch() {
        let a = [7u8; 32];
        assert!(!bool::from(digest_eq(&a, &a[..31])));
        assert!(!bool::from(digest_eq(&a[..8], &a)));
        assert!(!bool::from(digest_eq(&a, &[])));
    }
}
