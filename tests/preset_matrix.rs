//! The per-preset table: for every preset that `hookgate sign` can sign (HMAC, token,
//! basic auth, Twilio), a delivery signed as the sender signs it is accepted, and the
//! same delivery with a tampered body, a wrong secret, a malformed or missing signature
//! header, or (where the scheme has one) a stale or future timestamp is refused; with
//! two secrets (rotation) either one is accepted.

use hookgate::config::Route;
use hookgate::verify::presets::{Kind, Secret, PRESETS};
use hookgate::verify::{Request, Scheme, VerifyError};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use std::time::{Duration, SystemTime};

fn secret_for(kind: Kind, n: u8) -> Option<String> {
    match kind {
        Kind::Basic => Some(format!("user{n}:password{n}")),
        Kind::Hmac(h) => Some(match h.secret {
            Secret::Raw => format!("s3cret-value-{n}"),
            Secret::Base64("") => ["c2VjcmV0LW9uZQ==", "c2VjcmV0LXR3bw=="][n as usize].to_string(),
            Secret::Base64(_) | Secret::Base64IfPrefixed(_) => {
                ["whsec_c2VjcmV0LW9uZQ==", "whsec_c2VjcmV0LXR3bw=="][n as usize].to_string()
            }
        }),
        Kind::Token { .. } | Kind::Twilio | Kind::Netlify => Some(format!("token-{n}")),
        _ => None,
    }
}

fn route(id: &str, secrets: &[String]) -> Route {
    let list: Vec<String> = secrets.iter().map(|s| format!("{s:?}")).collect();
    let mut verify = format!(
        "preset: {id}, url: \"https://hooks.example.com/r\", secrets: [{}]",
        list.join(", ")
    );
    if id == "meta" {
        verify.push_str(", verify_token: t");
    }
    let yaml = format!("routes:\n  - name: r\n    path: /r\n    upstream: http://127.0.0.1:1/\n    verify: {{ {verify} }}\n");
    hookgate::config::load_str(&yaml, &|_| None)
        .unwrap_or_else(|e| panic!("{id}: {e}"))
        .routes
        .remove(0)
}

fn headers_at(route: &Route, body: &[u8], at: SystemTime) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in hookgate::sign::headers(route, body, at) {
        map.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(&v).unwrap(),
        );
    }
    map
}

fn check(route: &Route, headers: &HeaderMap, body: &[u8]) -> Result<(), VerifyError> {
    route.verifier.verify(&Request {
        headers: &hookgate::fields::Fields::from(headers),
        body,
        method: &Method::POST,
        query: None,
        now_unix: hookgate::verify::now_unix(),
    })
}

/// The header that carries the signature (or token), to break or remove it.
fn signature_header(route: &Route) -> HeaderName {
    match &route.verifier.scheme {
        Scheme::Hmac(h) => h.spec.header.clone(),
        Scheme::Token(t) => t.header.clone(),
        Scheme::Basic(_) => http::header::AUTHORIZATION,
        Scheme::Twilio(_) => HeaderName::from_static("x-twilio-signature"),
        Scheme::Netlify(_) => HeaderName::from_static("x-webhook-signature"),
        other => panic!("not signable: {other:?}"),
    }
}

#[test]
fn every_signable_preset_accepts_the_genuine_and_refuses_the_altered() {
    let mut covered = Vec::new();
    for p in PRESETS {
        let (Some(a), Some(b)) = (secret_for(p.kind, 0), secret_for(p.kind, 1)) else {
            continue;
        };
        let now = SystemTime::now();
        let ms = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        // Linear's timestamp travels in the body.
        let body = format!(r#"{{"event":"ping","id":42,"webhookTimestamp":{ms}}}"#).into_bytes();
        let r = route(p.id, std::slice::from_ref(&a));
        let good = headers_at(&r, &body, now);
        assert_eq!(check(&r, &good, &body), Ok(()), "{}: genuine", p.id);

        // Static tokens and basic auth do not sign the body (that is the senders' design).
        if !matches!(p.kind, Kind::Token { .. } | Kind::Basic) {
            let mut tampered = body.clone();
            tampered[2] ^= 1;
            assert!(
                check(&r, &good, &tampered).is_err(),
                "{}: tampered body accepted",
                p.id
            );
        }

        let other = route(p.id, std::slice::from_ref(&b));
        assert!(
            check(&other, &good, &body).is_err(),
            "{}: wrong secret accepted",
            p.id
        );

        let rotated = route(p.id, &[b.clone(), a.clone()]);
        assert_eq!(
            check(&rotated, &good, &body),
            Ok(()),
            "{}: rotated secrets",
            p.id
        );
        let from_b = headers_at(&route(p.id, std::slice::from_ref(&b)), &body, now);
        assert_eq!(
            check(&rotated, &from_b, &body),
            Ok(()),
            "{}: rotated, new secret",
            p.id
        );

        let name = signature_header(&r);
        let mut missing = good.clone();
        missing.remove(&name);
        assert!(
            check(&r, &missing, &body).is_err(),
            "{}: missing header accepted",
            p.id
        );
        let mut malformed = good.clone();
        malformed.insert(
            name.clone(),
            HeaderValue::from_static("%%not-a-signature%%"),
        );
        assert!(
            check(&r, &malformed, &body).is_err(),
            "{}: malformed header accepted",
            p.id
        );

        if let Scheme::Hmac(h) = &r.verifier.scheme {
            if let Some(ts) = &h.spec.timestamp {
                if !matches!(ts.source, hookgate::verify::hmac::TimestampSource::Json(_)) {
                    let stale = now - h.spec.tolerance - Duration::from_secs(5);
                    let future = now + h.spec.future_tolerance + Duration::from_secs(5);
                    assert_eq!(
                        check(&r, &headers_at(&r, &body, stale), &body),
                        Err(VerifyError::TimestampStale),
                        "{}: stale",
                        p.id
                    );
                    assert_eq!(
                        check(&r, &headers_at(&r, &body, future), &body),
                        Err(VerifyError::TimestampFuture),
                        "{}: future",
                        p.id
                    );
                }
            }
        }
        covered.push(p.id);
    }
    assert!(
        covered.len() >= 40,
        "{} presets covered: {covered:?}",
        covered.len()
    );
}
