//! Shared-secret schemes without a signature: a static token in a header (GitLab's
//! `X-Gitlab-Token`, Okta's configured header, Datadog's custom headers) and HTTP basic
//! auth. Values are compared as SHA-256 digests in constant time, so neither a token
//! nor its length shows through timing.

use super::VerifyError;
use crate::fields::Fields;
use base64::Engine;
use http::HeaderName;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

fn digest(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

/// Whether `value`'s digest equals any of `digests`, looking at all of them.
fn any_matches(value: &[u8], digests: &[[u8; 32]]) -> bool {
    let d = digest(value);
    let mut matched = subtle::Choice::from(0);
    for want in digests {
        matched |= d.ct_eq(want);
    }
    matched.into()
}

/// A static token in a header, after an optional prefix such as `Bearer `.
#[derive(Clone)]
pub struct TokenScheme {
    pub header: HeaderName,
    pub prefix: String,
    digests: Vec<[u8; 32]>,
    /// The first token, kept for `hookgate sign` (a token cannot be derived from a hash).
    first: Vec<u8>,
}

impl std::fmt::Debug for TokenScheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenScheme")
            .field("header", &self.header)
            .field("prefix", &self.prefix)
            .field("secrets", &self.digests.len())
            .finish()
    }
}

impl TokenScheme {
    pub fn new(header: HeaderName, prefix: String, tokens: &[Vec<u8>]) -> Self {
        TokenScheme {
            header,
            prefix,
            digests: tokens.iter().map(|t| digest(t)).collect(),
            first: tokens.first().cloned().unwrap_or_default(),
        }
    }

    /// The header value a sender would send, with the first token.
    pub fn sign_value(&self) -> String {
        format!("{}{}", self.prefix, String::from_utf8_lossy(&self.first))
    }

    pub fn verify(&self, headers: &Fields) -> Result<(), VerifyError> {
        let value = headers
            .get(&self.header)
            .ok_or(VerifyError::SignatureMissing)?
            .as_bytes()
            .trim_ascii();
        let prefix = self.prefix.as_bytes();
        let token = match value.get(..prefix.len()) {
            Some(head) if head.eq_ignore_ascii_case(prefix) => &value[prefix.len()..],
            _ => return Err(VerifyError::SignatureMalformed),
        };
        if any_matches(token, &self.digests) {
            Ok(())
        } else {
            Err(VerifyError::SignatureMismatch)
        }
    }
}

/// HTTP basic auth against `user:password` secrets.
#[derive(Clone)]
pub struct BasicScheme {
    digests: Vec<[u8; 32]>,
    first: Vec<u8>,
}

impl std::fmt::Debug for BasicScheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicScheme")
            .field("secrets", &self.digests.len())
            .finish()
    }
}

impl BasicScheme {
    pub fn new(credentials: &[Vec<u8>]) -> Self {
        BasicScheme {
            digests: credentials.iter().map(|c| digest(c)).collect(),
            first: credentials.first().cloned().unwrap_or_default(),
        }
    }

    /// The Authorization value a sender would send, with the first credentials.
    pub fn sign_value(&self) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(&self.first)
        )
    }

    pub fn verify(&self, headers: &Fields) -> Result<(), VerifyError> {
        let value = headers
            .get(http::header::AUTHORIZATION)
            .ok_or(VerifyError::SignatureMissing)?
            .as_bytes()
            .trim_ascii();
        let encoded = match value.get(..6) {
            Some(scheme) if scheme.eq_ignore_ascii_case(b"basic ") => value[6..].trim_ascii(),
            _ => return Err(VerifyError::SignatureMalformed),
        };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| VerifyError::SignatureMalformed)?;
        if any_matches(&decoded, &self.digests) {
            Ok(())
        } else {
            Err(VerifyError::SignatureMismatch)
        }
    }
}

/// Microsoft Graph change notifications: every notification in the body's `value`
/// array carries the subscription's `clientState`, which must be a configured secret.
#[derive(Clone)]
pub struct ClientStateScheme {
    digests: Vec<[u8; 32]>,
}

impl std::fmt::Debug for ClientStateScheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientStateScheme")
            .field("secrets", &self.digests.len())
            .finish()
    }
}

impl ClientStateScheme {
    pub fn new(values: &[Vec<u8>]) -> Self {
        ClientStateScheme {
            digests: values.iter().map(|v| digest(v)).collect(),
        }
    }

    pub fn verify(&self, body: &[u8]) -> Result<(), VerifyError> {
        let v: serde_json::Value =
            serde_json::from_slice(body).map_err(|_| VerifyError::SignatureMissing)?;
        let items = v
            .get("value")
            .and_then(serde_json::Value::as_array)
            .filter(|a| !a.is_empty())
            .ok_or(VerifyError::SignatureMissing)?;
        for item in items {
            let state = item
                .get("clientState")
                .and_then(serde_json::Value::as_str)
                .ok_or(VerifyError::SignatureMissing)?;
            if !any_matches(state.as_bytes(), &self.digests) {
                return Err(VerifyError::SignatureMismatch);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn h(name: &'static str, v: &str) -> Fields {
        let mut m = http::HeaderMap::new();
        m.insert(name, HeaderValue::from_str(v).unwrap());
        Fields::from(&m)
    }

    #[test]
    fn tokens() {
        let s = TokenScheme::new(
            HeaderName::from_static("x-gitlab-token"),
            String::new(),
            &[b"old".to_vec(), b"new-token".to_vec()],
        );
        assert_eq!(s.verify(&h("x-gitlab-token", "new-token")), Ok(()));
        assert_eq!(s.verify(&h("x-gitlab-token", "old")), Ok(()));
        assert_eq!(
            s.verify(&h("x-gitlab-token", "new-token2")),
            Err(VerifyError::SignatureMismatch)
        );
        assert_eq!(
            s.verify(&Fields::default()),
            Err(VerifyError::SignatureMissing)
        );
        let bearer = TokenScheme::new(
            HeaderName::from_static("authorization"),
            "Bearer ".into(),
            &[b"t0k".to_vec()],
        );
        assert_eq!(bearer.verify(&h("authorization", "bearer t0k")), Ok(()));
        assert_eq!(
            bearer.verify(&h("authorization", "t0k")),
            Err(VerifyError::SignatureMalformed)
        );
        assert!(!format!("{bearer:?}").contains("t0k"));
    }

    #[test]
    fn graph_client_state() {
        let s = ClientStateScheme::new(&[b"secretClientValue".to_vec()]);
        let ok = br#"{"value":[{"clientState":"secretClientValue"},{"clientState":"secretClientValue"}]}"#;
        assert_eq!(s.verify(ok), Ok(()));
        let one_bad = br#"{"value":[{"clientState":"secretClientValue"},{"clientState":"x"}]}"#;
        assert_eq!(s.verify(one_bad), Err(VerifyError::SignatureMismatch));
        assert_eq!(
            s.verify(br#"{"value":[{"id":"1"}]}"#),
            Err(VerifyError::SignatureMissing)
        );
        assert_eq!(
            s.verify(br#"{"value":[]}"#),
            Err(VerifyError::SignatureMissing)
        );
        assert_eq!(s.verify(b"not json"), Err(VerifyError::SignatureMissing));
    }

    #[test]
    fn basic_auth() {
        let s = BasicScheme::new(&[b"dd:s3cret".to_vec()]);
        // base64("dd:s3cret") = ZGQ6czNjcmV0
        assert_eq!(s.verify(&h("authorization", "Basic ZGQ6czNjcmV0")), Ok(()));
        assert_eq!(s.verify(&h("authorization", "basic ZGQ6czNjcmV0")), Ok(()));
        assert_eq!(
            s.verify(&h("authorization", "Basic ZGQ6d3Jvbmc=")),
            Err(VerifyError::SignatureMismatch)
        );
        assert_eq!(
            s.verify(&h("authorization", "Bearer x")),
            Err(VerifyError::SignatureMalformed)
        );
        assert_eq!(
            s.verify(&h("authorization", "Basic !!!")),
            Err(VerifyError::SignatureMalformed)
        );
        assert_eq!(
            s.verify(&Fields::default()),
            Err(VerifyError::SignatureMissing)
        );
    }
}
