//! Every vector in tests/fixtures/vectors.json (published ones from the senders' docs
//! and SDK test suites, and ones computed from the documented algorithms, each labelled
//! with its source) through the config loader and the route's verifier: accepted ones
//! must verify, rejected ones must not.

use base64::Engine;
use hookgate::verify::presets::{self, PRESETS};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use serde_json::Value;

fn vectors() -> Vec<Value> {
    let text = include_str!("fixtures/vectors.json");
    serde_json::from_str::<Value>(text)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn s(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

/// Handshakes the gateway answers before (or instead of) verification: GET, HEAD and
/// OPTIONS probes, and unsigned handshake POSTs (Asana's X-Hook-Secret, Notion's token).
fn is_handshake(v: &Value) -> bool {
    if matches!(s(v, "method").as_deref(), Some("GET" | "HEAD" | "OPTIONS")) {
        return true;
    }
    let notes = s(v, "notes").unwrap_or_default().to_ascii_lowercase();
    let unsigned = match presets::find(&s(v, "preset").unwrap()).map(|p| p.kind) {
        Some(presets::Kind::Hmac(h)) => !v["headers"]
            .as_object()
            .unwrap()
            .keys()
            .any(|k| k.eq_ignore_ascii_case(h.header)),
        _ => false,
    };
    notes.contains("handshake") && unsigned
}

#[test]
fn every_shipped_preset_has_vectors() {
    let all = vectors();
    for p in PRESETS {
        let accepted = all
            .iter()
            .filter(|v| {
                s(v, "preset").as_deref() == Some(p.id)
                    && s(v, "expect").as_deref() == Some("accept")
                    && !is_handshake(v)
            })
            .count();
        assert!(
            accepted >= 1,
            "preset {} has no accepted delivery vector",
            p.id
        );
    }
}

#[test]
fn vectors_verify_as_published() {
    let now_default = hookgate::verify::now_unix();
    let mut checked = 0;
    let mut failures = Vec::new();
    for v in vectors() {
        let preset = s(&v, "preset").unwrap();
        if presets::find(&preset).is_none() || is_handshake(&v) {
            assert!(
                presets::find(&preset).is_some() || presets::PLANNED.contains(&preset.as_str()),
                "vector for unknown preset {preset}"
            );
            continue;
        }
        let source = s(&v, "source").unwrap_or_default();
        let mut verify = format!("{{ preset: {preset}");
        match (s(&v, "secret"), s(&v, "public_key")) {
            (_, Some(key)) => verify.push_str(&format!(
                ", public_key: {}",
                serde_json::to_string(&key).unwrap()
            )),
            (Some(secret), None) => verify.push_str(&format!(
                ", secrets: [{}]",
                serde_json::to_string(&secret).unwrap()
            )),
            (None, None) => continue,
        }
        if let Some(url) = s(&v, "url") {
            verify.push_str(&format!(", url: {}", serde_json::to_string(&url).unwrap()));
        }
        verify.push_str(" }");
        let yaml = format!("routes:\n  - name: v\n    path: /v\n    upstream: http://127.0.0.1:1/\n    verify: {verify}\n");
        let config = match hookgate::config::load_str(&yaml, &|_| None) {
            Ok(c) => c,
            Err(e) => {
                failures.push(format!("{preset} ({source}): config refused: {e}"));
                continue;
            }
        };
        let mut headers = HeaderMap::new();
        for (k, val) in v["headers"].as_object().unwrap() {
            headers.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(val.as_str().unwrap()).unwrap(),
            );
        }
        let body = match s(&v, "body_base64") {
            Some(b) => base64::engine::general_purpose::STANDARD.decode(b).unwrap(),
            None => s(&v, "body").unwrap_or_default().into_bytes(),
        };
        let method: Method = s(&v, "method").unwrap_or("POST".into()).parse().unwrap();
        let now = v.get("now").and_then(Value::as_i64).unwrap_or(now_default);
        let result = config.routes[0]
            .verifier
            .verify(&hookgate::verify::Request {
                headers: &hookgate::fields::Fields::from(&headers),
                body: &body,
                method: &method,
                query: s(&v, "url")
                    .as_deref()
                    .and_then(|u| u.split_once('?'))
                    .map(|(_, q)| q),
                now_unix: now,
            });
        let want_accept = s(&v, "expect").as_deref() != Some("reject");
        if result.is_ok() != want_accept {
            failures.push(format!(
                "{preset} ({source}; {}): expected {}, got {result:?}",
                s(&v, "why").unwrap_or_default(),
                if want_accept { "accept" } else { "reject" }
            ));
        }
        checked += 1;
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} vectors failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked >= 100, "only {checked} vectors checked");
}
