//! `hookgate sign`: the headers (or a whole curl command) of a correctly signed delivery
//! for a route, made with the route's first secret and the current time, exactly as
//! the route's sender would make it. For testing a deployment end to end.

use crate::config::Route;
use crate::trace::random_u64;
use crate::verify::hmac::{TimeUnit, TimestampSource};
use crate::verify::template::Part;
use crate::verify::Scheme;
use std::time::{SystemTime, UNIX_EPOCH};

/// The header fields to send, in order.
pub fn headers(route: &Route, body: &[u8], now: SystemTime) -> Vec<(String, String)> {
    headers_with_key(route, body, now, None)
}

/// A private key for the public-key schemes, which only the sender's key can sign.
pub enum PrivateKey {
    Ed25519(Box<ed25519_dalek::SigningKey>),
    P256(Box<p256::ecdsa::SigningKey>),
}

impl PrivateKey {
    /// Ed25519: a 32-byte seed as 64 hex digits or base64; P-256: PKCS#8 DER as
    /// base64, or PEM.
    pub fn parse(text: &str) -> Result<PrivateKey, String> {
        use base64::Engine;
        let t = text.trim();
        if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            let seed: Vec<u8> = (0..32)
                .map(|i| u8::from_str_radix(&t[2 * i..2 * i + 2], 16).expect("hex"))
                .collect();
            let seed: [u8; 32] = seed.try_into().expect("32 bytes");
            return Ok(PrivateKey::Ed25519(Box::new(
                ed25519_dalek::SigningKey::from_bytes(&seed),
            )));
        }
        let b64: String = t.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|_| "the private key is neither 64 hex digits, base64, nor PEM".to_string())?;
        if der.len() == 32 {
            let seed: [u8; 32] = der.try_into().expect("32 bytes");
            return Ok(PrivateKey::Ed25519(Box::new(
                ed25519_dalek::SigningKey::from_bytes(&seed),
            )));
        }
        use p256::pkcs8::DecodePrivateKey;
        p256::ecdsa::SigningKey::from_pkcs8_der(&der)
            .map(|k| PrivateKey::P256(Box::new(k)))
            .map_err(|_| "the private key is not an Ed25519 seed or a P-256 PKCS#8 key".to_string())
    }

    fn sign_hex_or_der(&self, message: &[u8]) -> (Vec<u8>, bool) {
        match self {
            PrivateKey::Ed25519(k) => {
                use ed25519_dalek::Signer;
                (k.sign(message).to_bytes().to_vec(), true)
            }
            PrivateKey::P256(k) => {
                use p256::ecdsa::signature::Signer;
                let sig: p256::ecdsa::Signature = k.sign(message);
                (sig.to_der().as_bytes().to_vec(), false)
            }
        }
    }
}

/// [`headers`], with a private key for public-key schemes.
pub fn headers_with_key(
    route: &Route,
    body: &[u8],
    now: SystemTime,
    key: Option<&PrivateKey>,
) -> Vec<(String, String)> {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut out = Vec::new();
    if serde_json::from_slice::<serde_json::Value>(body).is_ok() {
        out.push(("Content-Type".to_string(), "application/json".to_string()));
    }
    match &route.verifier.scheme {
        // The clientState travels in the body, which `sign` sends as it is.
        // Public-key schemes cannot be signed without the sender's private key.
        Scheme::None | Scheme::ClientState(_) | Scheme::Mailgun(_) => {}
        Scheme::Key(k) => {
            if let Some(key) = key {
                use base64::Engine;
                let ts = since.as_secs().to_string();
                let mut message = ts.clone().into_bytes();
                message.extend_from_slice(body);
                let (sig, ed) = key.sign_hex_or_der(&message);
                let value = if ed {
                    sig.iter().map(|b| format!("{b:02x}")).collect()
                } else {
                    base64::engine::general_purpose::STANDARD.encode(sig)
                };
                out.push((k.timestamp_header.to_string(), ts));
                out.push((k.signature_header.to_string(), value));
            }
        }
        Scheme::StandardAsym(s) => {
            if let Some(key) = key {
                use base64::Engine;
                let ts = since.as_secs().to_string();
                let id = format!("msg_{:016x}{:08x}", random_u64(), since.subsec_nanos());
                let mut message = format!("{id}.{ts}.").into_bytes();
                message.extend_from_slice(body);
                let (sig, _) = key.sign_hex_or_der(&message);
                if let (
                    Some(id_header),
                    Some(crate::verify::hmac::TimestampSpec {
                        source: TimestampSource::Header(ts_header),
                        ..
                    }),
                ) = (&s.spec.id_header, &s.spec.timestamp)
                {
                    out.push((id_header.to_string(), id));
                    out.push((ts_header.to_string(), ts));
                }
                out.push((
                    s.spec.header.to_string(),
                    format!(
                        "v1a,{}",
                        base64::engine::general_purpose::STANDARD.encode(sig)
                    ),
                ));
            }
        }
        Scheme::Netlify(n) => out.push(("X-Webhook-Signature".to_string(), n.sign_value(body))),
        Scheme::Twilio(t) => {
            let query = t.url.split_once('?').map(|(_, q)| q);
            out.push(("X-Twilio-Signature".to_string(), t.sign_value(query, body)));
        }
        Scheme::Token(t) => out.push((t.header.to_string(), t.sign_value())),
        Scheme::Basic(b) => out.push(("Authorization".to_string(), b.sign_value())),
        Scheme::Hmac(h) => {
            let spec = &h.spec;
            let timestamp = match &spec.timestamp {
                Some(ts) => match ts.unit {
                    TimeUnit::Seconds => since.as_secs().to_string(),
                    TimeUnit::Millis => since.as_millis().to_string(),
                    TimeUnit::Rfc3339 => rfc3339(since.as_secs() as i64),
                },
                None => String::new(),
            };
            let id = if spec.id_header.is_some() || spec.template.uses(&Part::Id) {
                format!("msg_{:016x}{:08x}", random_u64(), since.subsec_nanos())
            } else {
                String::new()
            };
            // For a JSON-body timestamp the body itself carries it: sign what is given.
            let ts_for_signature = match &spec.timestamp {
                Some(t) if matches!(t.source, TimestampSource::Json(_)) => String::new(),
                _ => timestamp.clone(),
            };
            let value = h.sign_request(body, ts_for_signature.as_bytes(), id.as_bytes(), b"POST");
            if let Some(name) = &spec.id_header {
                out.push((name.to_string(), id.clone()));
            }
            if let Some(t) = &spec.timestamp {
                if let TimestampSource::Header(name) = &t.source {
                    out.push((name.to_string(), timestamp.clone()));
                }
            }
            out.push((spec.header.to_string(), value));
        }
    }
    out
}

/// Notes for the user about what `sign` cannot do for this route.
pub fn caveats(route: &Route, body: &[u8]) -> Vec<String> {
    let mut notes = Vec::new();
    if let Scheme::Key(_) | Scheme::StandardAsym(_) = &route.verifier.scheme {
        notes.push("a public-key scheme: only the sender's private key signs; pass --private-key (your own test key pair) to sign".to_string());
    }
    if let Scheme::Mailgun(m) = &route.verifier.scheme {
        let now = std::time::SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
            .to_string();
        let token = format!("{:016x}{:016x}", random_u64(), random_u64().rotate_left(17));
        notes.push(format!(
            "Mailgun signs inside the body: give the body this top-level \"signature\" field: {}",
            m.sign_object(&now, &token)
        ));
    }
    if let Scheme::Twilio(_) = &route.verifier.scheme {
        notes.push("send to the URL configured as verify.url (Twilio signs the URL it calls, query included)".to_string());
    }
    if let Scheme::ClientState(_) = &route.verifier.scheme {
        notes.push(
            "each notification's clientState in the body must be one of the route's secrets"
                .to_string(),
        );
    }
    if let Scheme::Hmac(h) = &route.verifier.scheme {
        if let Some(t) = &h.spec.timestamp {
            if let TimestampSource::Json(path) = &t.source {
                let present = serde_json::from_slice::<serde_json::Value>(body)
                    .ok()
                    .and_then(|v| path.iter().try_fold(v, |v, k| v.get(k).cloned()))
                    .is_some();
                notes.push(format!(
                    "the timestamp is read from the body's {} field{}: it must be within the route's tolerance",
                    path.join("."),
                    if present { "" } else { ", which this body lacks" }
                ));
            }
        }
    }
    notes
}

/// A curl command that sends `body_path` to the route on `base` (`http://127.0.0.1:8080`).
pub fn curl(route: &Route, base: &str, headers: &[(String, String)], body_path: &str) -> String {
    let quote = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
    let mut cmd = format!(
        "curl -sS -i -X POST {}",
        quote(&format!("{base}{}", route.path))
    );
    if let Some(host) = &route.host {
        cmd.push_str(&format!(" \\\n  -H {}", quote(&format!("Host: {host}"))));
    }
    for (k, v) in headers {
        cmd.push_str(&format!(" \\\n  -H {}", quote(&format!("{k}: {v}"))));
    }
    cmd.push_str(&format!(
        " \\\n  --data-binary {}",
        quote(&format!("@{body_path}"))
    ));
    cmd
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339(secs: i64) -> String {
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = crate::h1::codec::date::civil_from_days(secs.div_euclid(86_400));
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::hmac::parse_rfc3339;

    #[test]
    fn rfc3339_round_trips() {
        for secs in [0, 951_782_400, 1_700_000_000, 4_102_444_800] {
            assert_eq!(parse_rfc3339(&rfc3339(secs)), Some(secs), "{secs}");
        }
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn every_preset_signs_what_it_verifies() {
        use crate::verify::presets::{Kind, PRESETS};
        use http::{HeaderMap, HeaderName, HeaderValue};
        let body = br#"{"event":"ping","webhookTimestamp":NOW}"#;
        let now = SystemTime::now();
        let ms = now
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis()
            .to_string();
        let body = String::from_utf8_lossy(body)
            .replace("NOW", &ms)
            .into_bytes();
        for p in PRESETS {
            use crate::verify::presets::Secret;
            let secret = match p.kind {
                Kind::Basic => Some("user:password"),
                Kind::Hmac(h) => Some(match h.secret {
                    Secret::Raw => "s3cret-value",
                    Secret::Base64("") => "c2VjcmV0LWtleS1ieXRlcw==",
                    Secret::Base64(_) | Secret::Base64IfPrefixed(_) => {
                        "whsec_c2VjcmV0LWtleS1ieXRlcw=="
                    }
                }),
                Kind::Token { .. } | Kind::ClientState | Kind::Twilio => Some("s3cret-value"),
                // Their signatures live in the body or need a JWS: covered by vectors.
                Kind::Mailgun | Kind::Netlify => continue,
                Kind::Unsigned => None,
                // Only the sender's private key signs these.
                Kind::Ed25519 { .. } | Kind::P256 { .. } => continue,
            };
            let mut verify = format!(
                "preset: {}, url: \"https://hooks.example.com/r\", verify_token: t",
                p.id
            );
            if let Some(secret) = secret {
                verify.push_str(&format!(", secrets: [\"{secret}\"]"));
            }
            if p.id != "meta" {
                verify = verify.replace(", verify_token: t", "");
            }
            let yaml = format!(
                "routes:\n  - name: r\n    path: /r\n    upstream: http://127.0.0.1:1/\n    verify: {{ {verify} }}\n"
            );
            let config = crate::config::load_str(&yaml, &|_| None)
                .unwrap_or_else(|e| panic!("{}: {e}", p.id));
            let route = &config.routes[0];
            let graph = br#"{"value":[{"clientState":"s3cret-value"}]}"#.to_vec();
            let body = if matches!(p.kind, Kind::ClientState) {
                graph
            } else {
                body.clone()
            };
            let mut map = HeaderMap::new();
            for (k, v) in headers(route, &body, now) {
                map.append(
                    HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_str(&v).unwrap(),
                );
            }
            let req = crate::verify::Request {
                headers: &crate::fields::Fields::from(&map),
                body: &body,
                method: &http::Method::POST,
                query: None,
                now_unix: crate::verify::now_unix(),
            };
            assert_eq!(
                route.verifier.verify(&req),
                Ok(()),
                "preset {}: {map:?}",
                p.id
            );
        }
    }
}

#[cfg(test)]
mod key_tests {
    use super::*;
    use base64::Engine;
    use http::{HeaderMap, HeaderName, HeaderValue};

    fn verify_signed(yaml_verify: &str, key: &PrivateKey, body: &[u8]) {
        let yaml = format!("routes:\n  - name: r\n    path: /r\n    upstream: http://127.0.0.1:1/\n    verify: {{ {yaml_verify} }}\n");
        let config = crate::config::load_str(&yaml, &|_| None).unwrap_or_else(|e| panic!("{e}"));
        let route = &config.routes[0];
        let mut map = HeaderMap::new();
        for (k, v) in headers_with_key(route, body, SystemTime::now(), Some(key)) {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(&v).unwrap(),
            );
        }
        let req = crate::verify::Request {
            headers: &crate::fields::Fields::from(&map),
            body,
            method: &http::Method::POST,
            query: None,
            now_unix: crate::verify::now_unix(),
        };
        assert_eq!(
            route.verifier.verify(&req),
            Ok(()),
            "{yaml_verify}: {map:?}"
        );
        let tampered = crate::verify::Request { body: b"{}", ..req };
        assert!(route.verifier.verify(&tampered).is_err());
    }

    #[test]
    fn public_key_schemes_sign_with_a_test_private_key() {
        // RFC 8032 §7.1 TEST 1 seed; its public key is d75a…511a.
        let ed =
            PrivateKey::parse("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
                .unwrap();
        verify_signed("preset: discord, public_key: d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", &ed, br#"{"type":2}"#);
        verify_signed("preset: standard-webhooks, public_key: \"whpk_11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\"", &ed, br#"{"type":"x"}"#);

        use p256::pkcs8::{EncodePrivateKey, EncodePublicKey};
        let p = p256::ecdsa::SigningKey::from_slice(&[0x11; 32]).unwrap();
        let pkcs8 =
            base64::engine::general_purpose::STANDARD.encode(p.to_pkcs8_der().unwrap().as_bytes());
        let spki = base64::engine::general_purpose::STANDARD
            .encode(p.verifying_key().to_public_key_der().unwrap().as_bytes());
        let key = PrivateKey::parse(&pkcs8).unwrap();
        verify_signed(
            &format!("preset: sendgrid, public_key: \"{spki}\""),
            &key,
            b"[{\"event\":\"processed\"}]\r\n",
        );
        assert!(PrivateKey::parse("not a key").is_err());
    }
}
