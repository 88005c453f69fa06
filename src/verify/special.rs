//! Schemes that are not an HMAC over a template: Twilio's URL-and-sorted-parameters
//! signature (with its JSON `bodySHA256` variant and the port ambiguity its SDKs
//! tolerate), and the public-key schemes, Ed25519 (Discord) and ECDSA P-256 over
//! SHA-256 (SendGrid), each over `{timestamp}{body}`.

use super::hmac::hex_decode;
use super::VerifyError;
use crate::fields::Fields;
use base64::Engine;
use hmac::Mac;
use http::HeaderName;
use sha2::{Digest, Sha256};
use std::time::Duration;
use subtle::ConstantTimeEq;

type HmacSha1 = hmac::Hmac<sha1::Sha1>;

/// Twilio: `X-Twilio-Signature = base64(HMAC-SHA1(auth token, url + Σ sorted(name)+value))`.
#[derive(Clone)]
pub struct TwilioScheme {
    /// The public URL as registered with Twilio (scheme, host, port, path, own query).
    pub url: String,
    keys: Vec<HmacSha1>,
}

impl std::fmt::Debug for TwilioScheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioScheme")
            .field("url", &self.url)
            .field("secrets", &self.keys.len())
            .finish()
    }
}

/// Splits a URL into `(scheme, host, port, rest)` where rest starts at the path.
fn split_url(url: &str) -> Option<(&str, &str, Option<&str>, &str)> {
    let (scheme, after) = url.split_once("://")?;
    let (authority, rest) = match after.find(['/', '?']) {
        Some(i) => (&after[..i], &after[i..]),
        None => (after, ""),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => (h, Some(p)),
        _ => (authority, None),
    };
    Some((scheme, host, port, rest))
}

/// The URL as given, with the default port added, and with any port removed: Twilio's
/// SDKs accept each, since "sig generation on the back end is inconsistent".
fn url_variants(url: &str) -> Vec<String> {
    let mut out = vec![url.to_string()];
    if let Some((scheme, host, port, rest)) = split_url(url) {
        let default = if scheme.eq_ignore_ascii_case("https") {
            "443"
        } else {
            "80"
        };
        match port {
            Some(_) => out.push(format!("{scheme}://{host}{rest}")),
            None => out.push(format!("{scheme}://{host}:{default}{rest}")),
        }
    }
    out
}

/// `application/x-www-form-urlencoded` pairs, decoded.
fn form_pairs(body: &[u8]) -> Option<Vec<(String, String)>> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Some((
                crate::handshake::percent_decode(k)?,
                crate::handshake::percent_decode(v)?,
            ))
        })
        .collect()
}

impl TwilioScheme {
    pub fn new(url: String, tokens: &[Vec<u8>]) -> Self {
        let keys = tokens
            .iter()
            .map(|t| HmacSha1::new_from_slice(t).expect("any key length"))
            .collect();
        TwilioScheme { url, keys }
    }

    /// The URL Twilio called: the registered one, with the request's query when it
    /// has one (Twilio appends `bodySHA256` to it for JSON bodies).
    fn called_url(&self, query: Option<&str>) -> String {
        match query.filter(|q| !q.is_empty()) {
            Some(q) => {
                let base = self.url.split('?').next().unwrap_or(&self.url);
                format!("{base}?{q}")
            }
            None => self.url.clone(),
        }
    }

    /// The signed string for `url`: the URL, plus the sorted form parameters.
    fn signed(url: &str, params: &[(String, String)]) -> Vec<u8> {
        let mut sorted: Vec<&(String, String)> = params.iter().collect();
        sorted.sort();
        sorted.dedup();
        let mut out = url.as_bytes().to_vec();
        for (k, v) in sorted {
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(v.as_bytes());
        }
        out
    }

    pub fn sign_value(&self, query: Option<&str>, body: &[u8]) -> String {
        let url = self.called_url(query);
        let params = if url.contains("bodySHA256=") {
            Vec::new()
        } else {
            form_pairs(body).unwrap_or_default()
        };
        let Some(key) = self.keys.first() else {
            return String::new();
        };
        let mut mac = key.clone();
        mac.update(&Self::signed(&url, &params));
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    }

    pub fn verify(
        &self,
        headers: &Fields,
        body: &[u8],
        query: Option<&str>,
    ) -> Result<(), VerifyError> {
        let value = headers
            .get("x-twilio-signature")
            .ok_or(VerifyError::SignatureMissing)?;
        let sig = base64::engine::general_purpose::STANDARD
            .decode(value.as_bytes().trim_ascii())
            .map_err(|_| VerifyError::SignatureMalformed)?;
        if sig.len() != 20 {
            return Err(VerifyError::SignatureMalformed);
        }
        let url = self.called_url(query);
        // JSON bodies: the URL carries the body's hash and is signed alone.
        let body_hash =
            crate::handshake::query_param(url.split_once('?').map(|(_, q)| q), "bodySHA256");
        let params = match &body_hash {
            Some(want) => {
                let got: String = Sha256::digest(body)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                if !bool::from(got.as_bytes().ct_eq(want.to_ascii_lowercase().as_bytes())) {
                    return Err(VerifyError::SignatureMismatch);
                }
                Vec::new()
            }
            None => form_pairs(body).unwrap_or_default(),
        };
        let mut matched = subtle::Choice::from(0);
        for candidate in url_variants(&url) {
            let signed = Self::signed(&candidate, &params);
            for key in &self.keys {
                let mut mac = key.clone();
                mac.update(&signed);
                matched |= super::digest_eq(&mac.finalize().into_bytes(), &sig);
            }
        }
        if bool::from(matched) {
            Ok(())
        } else {
            Err(VerifyError::SignatureMismatch)
        }
    }
}

/// Which public-key algorithm.
#[derive(Clone, Debug)]
pub enum PublicKey {
    Ed25519(Box<ed25519_dalek::VerifyingKey>),
    P256(Box<p256::ecdsa::VerifyingKey>),
}

impl PublicKey {
    /// Ed25519 keys are 64 hex digits (Discord) or base64 (`whpk_…`, Telnyx); P-256 keys
    /// are base64 DER SubjectPublicKeyInfo (SendGrid's "verification key"), PEM allowed.
    pub fn parse_ed25519(s: &str) -> Result<PublicKey, String> {
        let t = s.trim();
        let bytes = if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            t.as_bytes()
                .chunks_exact(2)
                .map(|p| {
                    u8::from_str_radix(std::str::from_utf8(p).expect("ascii"), 16).expect("hex")
                })
                .collect::<Vec<u8>>()
        } else {
            let b64 = t.strip_prefix("whpk_").unwrap_or(t);
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|_| {
                    "is not an Ed25519 public key (64 hex digits, or base64 of 32 bytes)"
                        .to_string()
                })?
        };
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "is not an Ed25519 public key: it must be 32 bytes".to_string())?;
        ed25519_dalek::VerifyingKey::from_bytes(&arr)
            .map(|k| PublicKey::Ed25519(Box::new(k)))
            .map_err(|_| "is not a valid Ed25519 public key".to_string())
    }

    pub fn parse_p256(s: &str) -> Result<PublicKey, String> {
        use p256::pkcs8::DecodePublicKey;
        let t = s.trim();
        let body: String = if t.starts_with("-----BEGIN") {
            t.lines().filter(|l| !l.starts_with("-----")).collect()
        } else {
            t.to_string()
        };
        let der = base64::engine::general_purpose::STANDARD
            .decode(body.trim())
            .map_err(|_| {
                "is not a P-256 public key (base64 DER SubjectPublicKeyInfo)".to_string()
            })?;
        p256::ecdsa::VerifyingKey::from_public_key_der(&der)
            .map(|k| PublicKey::P256(Box::new(k)))
            .map_err(|_| {
                "is not a valid P-256 public key (base64 DER SubjectPublicKeyInfo)".to_string()
            })
    }
}

/// A signature by a public key over `{timestamp}{body}`.
#[derive(Clone, Debug)]
pub struct KeyScheme {
    pub key: PublicKey,
    pub signature_header: HeaderName,
    pub timestamp_header: HeaderName,
    /// `None`: the timestamp is signed but its age is not checked (no tolerance is
    /// published for these senders; set `tolerance` to check it).
    pub tolerance: Option<Duration>,
}

impl KeyScheme {
    pub fn verify(&self, headers: &Fields, body: &[u8], now_unix: i64) -> Result<(), VerifyError> {
        let sig = headers
            .get(&self.signature_header)
            .ok_or(VerifyError::SignatureMissing)?;
        let ts = headers
            .get(&self.timestamp_header)
            .ok_or(VerifyError::TimestampMissing)?;
        let ts = ts.as_bytes().trim_ascii();
        if let Some(tol) = self.tolerance {
            super::hmac::check_unix(ts, now_unix, tol, tol)?;
        }
        let mut message = Vec::with_capacity(ts.len() + body.len());
        message.extend_from_slice(ts);
        message.extend_from_slice(body);
        let raw = sig.as_bytes().trim_ascii();
        match &self.key {
            PublicKey::Ed25519(key) => {
                let bytes = hex_decode(raw).ok_or(VerifyError::SignatureMalformed)?;
                let sig = ed25519_dalek::Signature::from_slice(&bytes)
                    .map_err(|_| VerifyError::SignatureMalformed)?;
                key.verify_strict(&message, &sig)
                    .map_err(|_| VerifyError::SignatureMismatch)
            }
            PublicKey::P256(key) => {
                use p256::ecdsa::signature::Verifier;
                let der = base64::engine::general_purpose::STANDARD
                    .decode(raw)
                    .map_err(|_| VerifyError::SignatureMalformed)?;
                let sig = p256::ecdsa::Signature::from_der(&der)
                    .map_err(|_| VerifyError::SignatureMalformed)?;
                key.verify(&message, &sig)
                    .map_err(|_| VerifyError::SignatureMismatch)
            }
        }
    }
}

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// Standard Webhooks' asymmetric form: `webhook-signature: v1a,<base64 Ed25519>` over
/// `{id}.{timestamp}.{body}`, with a `whpk_` public key. Entries of other versions are
/// ignored, and any valid `v1a` entry passes.
#[derive(Clone, Debug)]
pub struct StandardAsymScheme {
    pub key: Box<ed25519_dalek::VerifyingKey>,
    pub spec: super::hmac::HmacSpec,
}

impl StandardAsymScheme {
    pub fn verify(&self, headers: &Fields, body: &[u8], now_unix: i64) -> Result<(), VerifyError> {
        let spec = &self.spec;
        let sig_header = headers
            .get(&spec.header)
            .ok_or(VerifyError::SignatureMissing)?;
        let mut sigs = Vec::new();
        for entry in sig_header
            .as_bytes()
            .split(|b| b.is_ascii_whitespace())
            .filter(|e| !e.is_empty())
        {
            if let Some(b64) = entry.strip_prefix(b"v1a,") {
                if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(b64) {
                    if let Ok(sig) = ed25519_dalek::Signature::from_slice(&bytes) {
                        sigs.push(sig);
                    }
                }
            }
        }
        if sigs.is_empty() {
            return Err(VerifyError::SignatureMalformed);
        }
        let Some(super::hmac::TimestampSpec {
            source: super::hmac::TimestampSource::Header(ts_name),
            ..
        }) = &spec.timestamp
        else {
            return Err(VerifyError::TimestampMissing);
        };
        let ts = headers
            .get(ts_name)
            .ok_or(VerifyError::TimestampMissing)?
            .as_bytes()
            .trim_ascii();
        super::hmac::check_unix(ts, now_unix, spec.tolerance, spec.future_tolerance)?;
        let id_name = spec.id_header.as_ref().ok_or(VerifyError::IdMissing)?;
        let id = headers
            .get(id_name)
            .ok_or(VerifyError::IdMissing)?
            .as_bytes();
        let mut message = Vec::with_capacity(id.len() + ts.len() + body.len() + 2);
        message.extend_from_slice(id);
        message.push(b'.');
        message.extend_from_slice(ts);
        message.push(b'.');
        message.extend_from_slice(body);
        if sigs
            .iter()
            .any(|sig| self.key.verify_strict(&message, sig).is_ok())
        {
            Ok(())
        } else {
            Err(VerifyError::SignatureMismatch)
        }
    }
}

fn hmac_keys(secrets: &[Vec<u8>]) -> Vec<HmacSha256> {
    secrets
        .iter()
        .map(|s| HmacSha256::new_from_slice(s).expect("any key length"))
        .collect()
}

/// Whether any key's HMAC of `parts` equals `sig`, looking at every key.
fn any_mac(keys: &[HmacSha256], parts: &[&[u8]], sig: &[u8]) -> bool {
    let mut matched = subtle::Choice::from(0);
    for key in keys {
        let mut mac = key.clone();
        for p in parts {
            mac.update(p);
        }
        matched |= super::digest_eq(&mac.finalize().into_bytes(), sig);
    }
    matched.into()
}

/// Mailgun: no header; the JSON body's `signature` object carries `timestamp`, `token`
/// and `signature` = hex HMAC-SHA256(signing key, timestamp + token). The event data
/// itself is not signed (Mailgun's design): dedup by `json:signature.token` stops
/// replays of a captured signature.
#[derive(Clone)]
pub struct MailgunScheme {
    keys: Vec<HmacSha256>,
    pub tolerance: Option<Duration>,
}

impl std::fmt::Debug for MailgunScheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailgunScheme")
            .field("secrets", &self.keys.len())
            .finish()
    }
}

impl MailgunScheme {
    pub fn new(secrets: &[Vec<u8>], tolerance: Option<Duration>) -> Self {
        MailgunScheme {
            keys: hmac_keys(secrets),
            tolerance,
        }
    }

    /// The `signature` object Mailgun would put in the body, with the first key.
    pub fn sign_object(&self, timestamp: &str, token: &str) -> serde_json::Value {
        let sig = self.keys.first().map(|k| {
            let mut mac = k.clone();
            mac.update(timestamp.as_bytes());
            mac.update(token.as_bytes());
            mac.finalize()
                .into_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        });
        serde_json::json!({ "timestamp": timestamp, "token": token, "signature": sig.unwrap_or_default() })
    }

    pub fn verify(&self, body: &[u8], now_unix: i64) -> Result<(), VerifyError> {
        let v: serde_json::Value =
            serde_json::from_slice(body).map_err(|_| VerifyError::SignatureMissing)?;
        let sig = v.get("signature").ok_or(VerifyError::SignatureMissing)?;
        let text = |k: &str| -> Option<String> {
            match sig.get(k)? {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            }
        };
        let timestamp = text("timestamp").ok_or(VerifyError::TimestampMissing)?;
        let token = text("token").ok_or(VerifyError::SignatureMalformed)?;
        let signature = text("signature").ok_or(VerifyError::SignatureMissing)?;
        let signature = hex_decode(signature.as_bytes())
            .filter(|s| s.len() == 32)
            .ok_or(VerifyError::SignatureMalformed)?;
        if let Some(tol) = self.tolerance {
            super::hmac::check_unix(timestamp.as_bytes(), now_unix, tol, tol)?;
        }
        if any_mac(
            &self.keys,
            &[timestamp.as_bytes(), token.as_bytes()],
            &signature,
        ) {
            Ok(())
        } else {
            Err(VerifyError::SignatureMismatch)
        }
    }
}

/// Netlify: `X-Webhook-Signature` is a JWS (HS256) whose claims say `iss: netlify` and
/// `sha256` = hex SHA-256 of the raw body.
#[derive(Clone)]
pub struct NetlifyScheme {
    keys: Vec<HmacSha256>,
}

impl std::fmt::Debug for NetlifyScheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetlifyScheme")
            .field("secrets", &self.keys.len())
            .finish()
    }
}

impl NetlifyScheme {
    pub fn new(secrets: &[Vec<u8>]) -> Self {
        NetlifyScheme {
            keys: hmac_keys(secrets),
        }
    }

    /// The JWS Netlify would send for `body`, with the first key.
    pub fn sign_value(&self, body: &[u8]) -> String {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let hash: String = Sha256::digest(body)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let head = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let claims = URL_SAFE_NO_PAD
            .encode(serde_json::json!({ "iss": "netlify", "sha256": hash }).to_string());
        let Some(key) = self.keys.first() else {
            return String::new();
        };
        let mut mac = key.clone();
        mac.update(head.as_bytes());
        mac.update(b".");
        mac.update(claims.as_bytes());
        format!(
            "{head}.{claims}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    }

    pub fn verify(&self, headers: &Fields, body: &[u8]) -> Result<(), VerifyError> {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let jws = headers
            .get("x-webhook-signature")
            .ok_or(VerifyError::SignatureMissing)?;
        let jws = jws
            .to_str()
            .map_err(|_| VerifyError::SignatureMalformed)?
            .trim();
        let mut parts = jws.split('.');
        let (Some(head), Some(claims), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(VerifyError::SignatureMalformed);
        };
        let decode = |s: &str| {
            URL_SAFE_NO_PAD
                .decode(s.trim_end_matches('='))
                .map_err(|_| VerifyError::SignatureMalformed)
        };
        let header: serde_json::Value =
            serde_json::from_slice(&decode(head)?).map_err(|_| VerifyError::SignatureMalformed)?;
        if header.get("alg").and_then(serde_json::Value::as_str) != Some("HS256") {
            return Err(VerifyError::SignatureMalformed);
        }
        let sig = decode(sig)?;
        if sig.len() != 32 {
            return Err(VerifyError::SignatureMalformed);
        }
        if !any_mac(
            &self.keys,
            &[head.as_bytes(), b".", claims.as_bytes()],
            &sig,
        ) {
            return Err(VerifyError::SignatureMismatch);
        }
        // Signed claims: the issuer, and the body's hash.
        let claims: serde_json::Value = serde_json::from_slice(&decode(claims)?)
            .map_err(|_| VerifyError::SignatureMalformed)?;
        let body_hash: String = Sha256::digest(body)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let iss_ok = claims.get("iss").and_then(serde_json::Value::as_str) == Some("netlify");
        let hash_ok = claims
            .get("sha256")
            .and_then(serde_json::Value::as_str)
            .is_some_and(|h| {
                bool::from(
                    h.to_ascii_lowercase()
                        .as_bytes()
                        .ct_eq(body_hash.as_bytes()),
                )
            });
        if iss_ok && hash_ok {
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

    fn h(pairs: &[(&'static str, &str)]) -> Fields {
        let mut m = http::HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        Fields::from(&m)
    }

    const FORM: &[u8] = b"CallSid=CA1234567890ABCDE&Digits=1234&From=%2B14158675309&To=%2B18005551212&Caller=%2B14158675309";

    // Published: twilio/twilio-python tests/unit/test_request_validator.py.
    #[test]
    fn twilio_published_vectors() {
        let s = TwilioScheme::new(
            "https://mycompany.com/myapp.php?foo=1&bar=2".into(),
            &[b"12345".to_vec()],
        );
        let q = Some("foo=1&bar=2");
        assert_eq!(
            s.verify(
                &h(&[("x-twilio-signature", "RSOYDt4T1cUTdK1PDd93/VVr8B8=")]),
                FORM,
                q
            ),
            Ok(())
        );
        // Signed with :443 added.
        assert_eq!(
            s.verify(
                &h(&[("x-twilio-signature", "kvajT1Ptam85bY51eRf/AJRuM3w=")]),
                FORM,
                q
            ),
            Ok(())
        );
        assert_eq!(s.sign_value(q, FORM), "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
        // Repeated parameters: values sorted.
        let dup = b"Sid=CA123&SidAccount=AC123&Digits=5678&Digits=1234";
        assert_eq!(
            s.verify(
                &h(&[("x-twilio-signature", "IK+Dwps556ElfBT0I3Rgjkr1wJU=")]),
                dup,
                q
            ),
            Ok(())
        );
        // A different parameter value fails.
        let tampered = b"CallSid=CA1234567890ABCDE&Digits=1235&From=%2B14158675309&To=%2B18005551212&Caller=%2B14158675309";
        assert_eq!(
            s.verify(
                &h(&[("x-twilio-signature", "RSOYDt4T1cUTdK1PDd93/VVr8B8=")]),
                tampered,
                q
            ),
            Err(VerifyError::SignatureMismatch)
        );
        // Registered with a port the signature does not have.
        let with_port = TwilioScheme::new(
            "https://mycompany.com:1234/myapp.php?foo=1&bar=2".into(),
            &[b"12345".to_vec()],
        );
        assert_eq!(
            with_port.verify(
                &h(&[("x-twilio-signature", "RSOYDt4T1cUTdK1PDd93/VVr8B8=")]),
                FORM,
                q
            ),
            Ok(())
        );
        // JSON body: the URL carries bodySHA256.
        let body = br#"{"property": "value", "boolean": true}"#;
        let q = Some("foo=1&bar=2&bodySHA256=0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620");
        assert_eq!(
            s.verify(
                &h(&[("x-twilio-signature", "a9nBmqA0ju/hNViExpshrM61xv4=")]),
                body,
                q
            ),
            Ok(())
        );
        assert_eq!(
            s.verify(
                &h(&[("x-twilio-signature", "a9nBmqA0ju/hNViExpshrM61xv4=")]),
                b"{}",
                q
            ),
            Err(VerifyError::SignatureMismatch)
        );
        assert_eq!(
            s.verify(&h(&[]), FORM, q),
            Err(VerifyError::SignatureMissing)
        );
        assert_eq!(
            s.verify(&h(&[("x-twilio-signature", "nope")]), FORM, q),
            Err(VerifyError::SignatureMalformed)
        );
    }

    // Published: sendgrid/sendgrid-python test/unit/test_eventwebhook.py.
    #[test]
    fn sendgrid_published_vector() {
        let key = PublicKey::parse_p256("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g==").unwrap();
        let s = KeyScheme {
            key,
            signature_header: HeaderName::from_static("x-twilio-email-event-webhook-signature"),
            timestamp_header: HeaderName::from_static("x-twilio-email-event-webhook-timestamp"),
            tolerance: None,
        };
        let body = b"[{\"email\":\"hello@world.com\",\"event\":\"dropped\",\"reason\":\"Bounced Address\",\"sg_event_id\":\"ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA\",\"sg_message_id\":\"LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0\",\"smtp-id\":\"<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>\",\"timestamp\":1600112492}]\r\n";
        let sig = "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15TluLtEZtM=";
        let good = h(&[
            ("x-twilio-email-event-webhook-signature", sig),
            ("x-twilio-email-event-webhook-timestamp", "1600112502"),
        ]);
        assert_eq!(s.verify(&good, body, 1_600_112_502), Ok(()));
        let later = h(&[
            ("x-twilio-email-event-webhook-signature", sig),
            ("x-twilio-email-event-webhook-timestamp", "1600112503"),
        ]);
        assert_eq!(
            s.verify(&later, body, 1_600_112_502),
            Err(VerifyError::SignatureMismatch)
        );
        assert_eq!(
            s.verify(&good, &body[..body.len() - 2], 1_600_112_502),
            Err(VerifyError::SignatureMismatch),
            "the trailing CRLF is signed"
        );
    }

    #[test]
    fn mailgun_body_signature() {
        // hex HMAC-SHA256("key-3ax6", "1700000900" + "tok123"), computed with Python's hmac.
        let s = MailgunScheme::new(&[b"key-3ax6".to_vec()], None);
        let sig = "56746db952c9cd32b379adb4e14c9236e23dda9da410bb53b729933fbba296b8";
        let body = format!(
            r#"{{"signature":{{"timestamp":"1700000900","token":"tok123","signature":"{sig}"}},"event-data":{{"event":"delivered"}}}}"#
        );
        assert_eq!(s.verify(body.as_bytes(), 1_700_000_910), Ok(()));
        let object = s.sign_object("1700000900", "tok123");
        assert_eq!(object["signature"], sig);
        let forged = body.replace("tok123", "tok124");
        assert_eq!(
            s.verify(forged.as_bytes(), 0),
            Err(VerifyError::SignatureMismatch)
        );
        assert_eq!(
            s.verify(br#"{"event-data":{}}"#, 0),
            Err(VerifyError::SignatureMissing)
        );
        let strict = MailgunScheme::new(&[b"key-3ax6".to_vec()], Some(Duration::from_secs(60)));
        assert_eq!(
            strict.verify(body.as_bytes(), 1_700_001_000),
            Err(VerifyError::TimestampStale)
        );
    }

    #[test]
    fn netlify_jws() {
        let s = NetlifyScheme::new(&[b"netlify-jws-secret-5d8e2f".to_vec()]);
        let body = br#"{"id":"5ebc34bf4fea0b01f02efa3a","site_id":"fa4dd95a-994e-4f89-8a7a-2d9e9fc36a32","build_id":"5ebc34bf4fea0b01f02efa38","state":"ready","name":"www-example","url":"https://www.example.com","branch":"main","context":"production","deploy_time":159}"#;
        let jws = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJuZXRsaWZ5Iiwic2hhMjU2IjoiN2RhMjJiZDRkZWJmMmEzNTczYmY2YmQxMDM3OWM0ODIzYzY4MmYwYzgzZTA5ZTMzNmMzYjgxZWNlZWZjMDQ3MCJ9.Vx5dwyDnD6oMgDbG-NTDE04SrHCVN7zPrPno3ts0O9k";
        assert_eq!(s.verify(&h(&[("x-webhook-signature", jws)]), body), Ok(()));
        assert_eq!(
            s.verify(&h(&[("x-webhook-signature", jws)]), b"{}"),
            Err(VerifyError::SignatureMismatch),
            "the body hash is a claim"
        );
        assert_eq!(
            s.verify(&h(&[("x-webhook-signature", "a.b")]), body),
            Err(VerifyError::SignatureMalformed)
        );
        let signed = s.sign_value(body);
        assert_eq!(
            s.verify(&h(&[("x-webhook-signature", &signed)]), body),
            Ok(())
        );
        let wrong = NetlifyScheme::new(&[b"other".to_vec()]);
        assert_eq!(
            wrong.verify(&h(&[("x-webhook-signature", jws)]), body),
            Err(VerifyError::SignatureMismatch)
        );
    }

    #[test]
    fn standard_webhooks_v1a() {
        use ed25519_dalek::Signer;
        // RFC 8032 §7.1 TEST 1 secret key; the public key is d75a…511a.
        let secret: [u8; 32] = [
            0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec,
            0x2c, 0xc4, 0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03,
            0x1c, 0xae, 0x7f, 0x60,
        ];
        let signing = ed25519_dalek::SigningKey::from_bytes(&secret);
        let PublicKey::Ed25519(key) = PublicKey::parse_ed25519(&format!(
            "whpk_{}",
            base64::engine::general_purpose::STANDARD.encode(signing.verifying_key().as_bytes())
        ))
        .unwrap() else {
            panic!()
        };
        let crate::verify::presets::Kind::Hmac(p) =
            crate::verify::presets::find("standard-webhooks")
                .unwrap()
                .kind
        else {
            panic!()
        };
        let s = StandardAsymScheme {
            key,
            spec: p.spec().unwrap(),
        };
        let body = br#"{"test": 2432232314}"#;
        let sig = signing.sign(b"msg_1.1700000000.{\"test\": 2432232314}");
        let value = format!(
            "v1,AAAA v1a,{}",
            base64::engine::general_purpose::STANDARD.encode(sig.to_bytes())
        );
        let good = h(&[
            ("webhook-id", "msg_1"),
            ("webhook-timestamp", "1700000000"),
            ("webhook-signature", &value),
        ]);
        assert_eq!(s.verify(&good, body, 1_700_000_000), Ok(()));
        assert_eq!(
            s.verify(&good, b"{}", 1_700_000_000),
            Err(VerifyError::SignatureMismatch)
        );
        assert_eq!(
            s.verify(&good, body, 1_700_000_400),
            Err(VerifyError::TimestampStale)
        );
        let only_v1 = h(&[
            ("webhook-id", "msg_1"),
            ("webhook-timestamp", "1700000000"),
            ("webhook-signature", "v1,AAAA"),
        ]);
        assert_eq!(
            s.verify(&only_v1, body, 1_700_000_000),
            Err(VerifyError::SignatureMalformed)
        );
    }

    // RFC 8032 §7.1 TEST 1 key pair; message = timestamp ‖ body, as Discord signs.
    #[test]
    fn ed25519_discord_shape() {
        let key = PublicKey::parse_ed25519(
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        )
        .unwrap();
        let s = KeyScheme {
            key,
            signature_header: HeaderName::from_static("x-signature-ed25519"),
            timestamp_header: HeaderName::from_static("x-signature-timestamp"),
            tolerance: None,
        };
        let body = br#"{"id":"787053080478613555","token":"ThisIsATokenFromDiscordThatIsVeryLong","type":1,"version":1}"#;
        let sig = "84ac4edc428eee2d478296dfb317f934694c65ece695412aea800cb5d8bddceb2b83a91f682dc6cd64b7ddaf48ef1f6cd6d036db5ff5c953ad1a66a1c2b60900";
        let good = h(&[
            ("x-signature-ed25519", sig),
            ("x-signature-timestamp", "1700001000"),
        ]);
        assert_eq!(s.verify(&good, body, 1_700_001_000), Ok(()));
        assert_eq!(
            s.verify(&good, b"{}", 1_700_001_000),
            Err(VerifyError::SignatureMismatch)
        );
        let bad = h(&[
            ("x-signature-ed25519", "zz"),
            ("x-signature-timestamp", "1700001000"),
        ]);
        assert_eq!(
            s.verify(&bad, body, 0),
            Err(VerifyError::SignatureMalformed)
        );
        assert!(PublicKey::parse_ed25519("abcd").is_err());
        assert!(PublicKey::parse_p256("bm90IGEga2V5").is_err());
    }
}
