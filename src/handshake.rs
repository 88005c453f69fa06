//! Handshakes: the requests senders make to prove that an endpoint is theirs, which the
//! gateway answers itself instead of forwarding. Unsigned probes (GET, HEAD and OPTIONS
//! challenges, Azure's validation event, Graph's `validationToken`, Asana's
//! `X-Hook-Secret`) are answered before verification, after the route's IP allowlist
//! and rate limit; signed ones (Slack's `url_verification`, Zoom's
//! `endpoint.url_validation`, Twitch's `webhook_callback_verification`, Discord's PING)
//! only after the signature has been verified. Which handshakes a route answers follows from its
//! preset. The decisions are pure functions of the request; the server sends what they
//! return.

use crate::fields::Fields;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::{Method, StatusCode};
use serde_json::{json, Value};

/// One kind of handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    SlackUrlVerification,
    ZoomUrlValidation,
    TwitchCallbackVerification,
    OktaVerification,
    MetaHubChallenge,
    DropboxChallenge,
    AsanaHookSecret,
    AzureValidation,
    CloudEventsOptions,
    TrelloHead,
    GraphValidationToken,
    DiscordPing,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::SlackUrlVerification => "slack_url_verification",
            Kind::ZoomUrlValidation => "zoom_url_validation",
            Kind::TwitchCallbackVerification => "twitch_callback_verification",
            Kind::OktaVerification => "okta_verification",
            Kind::MetaHubChallenge => "meta_hub_challenge",
            Kind::DropboxChallenge => "dropbox_challenge",
            Kind::AsanaHookSecret => "asana_hook_secret",
            Kind::AzureValidation => "azure_validation",
            Kind::CloudEventsOptions => "cloudevents_options",
            Kind::TrelloHead => "trello_head",
            Kind::GraphValidationToken => "graph_validation_token",
            Kind::DiscordPing => "discord_ping",
        }
    }

    /// The method the handshake arrives with, when it is not POST.
    fn probe_method(self) -> Option<Method> {
        match self {
            Kind::OktaVerification | Kind::MetaHubChallenge | Kind::DropboxChallenge => {
                Some(Method::GET)
            }
            Kind::TrelloHead => Some(Method::HEAD),
            Kind::CloudEventsOptions => Some(Method::OPTIONS),
            _ => None,
        }
    }
}

/// The handshakes a preset's sender makes.
pub fn for_preset(id: &str) -> &'static [Kind] {
    match id {
        "slack" => &[Kind::SlackUrlVerification],
        "zoom" => &[Kind::ZoomUrlValidation],
        "twitch" => &[Kind::TwitchCallbackVerification],
        "okta" => &[Kind::OktaVerification],
        "meta" => &[Kind::MetaHubChallenge],
        "dropbox" => &[Kind::DropboxChallenge],
        "asana" => &[Kind::AsanaHookSecret],
        "azure-event-grid" => &[Kind::AzureValidation, Kind::CloudEventsOptions],
        "trello" => &[Kind::TrelloHead],
        "ms-graph" => &[Kind::GraphValidationToken],
        "discord" => &[Kind::DiscordPing],
        _ => &[],
    }
}

/// The `Allow` value for a route with these handshakes: POST and the probes' methods.
pub fn allowed_methods(kinds: &[Kind]) -> String {
    let mut methods = vec!["POST".to_string()];
    for m in kinds.iter().filter_map(|k| k.probe_method()) {
        if !methods.iter().any(|x| x == m.as_str()) {
            methods.push(m.as_str().to_string());
        }
    }
    methods.join(", ")
}

/// Whether a route with these handshakes accepts `method` (POST always).
pub fn allows_method(kinds: &[Kind], method: &Method) -> bool {
    method == Method::POST
        || kinds
            .iter()
            .any(|k| k.probe_method().as_ref() == Some(method))
}

/// The gateway's answer to a handshake.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    pub kind: Kind,
    pub status: StatusCode,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
}

/// A handshake that needs the gateway to act (verify a token first, store a secret).
#[derive(Debug, PartialEq, Eq)]
pub enum Probe {
    /// Answer as is.
    Answer(Answer),
    /// Okta: answer only if the request's credentials verify.
    AfterCredentials(Answer),
    /// Asana: the secret to establish for the route, and the answer if it is accepted.
    LearnSecret(Vec<u8>, Answer),
    /// A probe the route recognises but must refuse (a wrong Meta verify token).
    Refused(Kind),
}

fn text(kind: Kind, body: impl Into<Bytes>) -> Answer {
    Answer {
        kind,
        status: StatusCode::OK,
        headers: vec![
            (
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            ),
            (
                HeaderName::from_static("x-content-type-options"),
                HeaderValue::from_static("nosniff"),
            ),
        ],
        body: body.into(),
    }
}

fn json_answer(kind: Kind, value: Value) -> Answer {
    Answer {
        kind,
        status: StatusCode::OK,
        headers: vec![(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body: Bytes::from(value.to_string()),
    }
}

/// Decodes `%XX` escapes and `+` in a query value.
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3)?;
                // from_str_radix would accept a sign ("%+0"): require two hex digits.
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                let v = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
                out.push(v);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// A query parameter, decoded.
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(k, _)| percent_decode(k).as_deref() == Some(name))
        .and_then(|(_, v)| percent_decode(v))
}

/// What a handshake request looks like to the decision functions.
pub struct Incoming<'a> {
    pub method: &'a Method,
    pub query: Option<&'a str>,
    pub headers: &'a Fields,
    pub body: &'a [u8],
    /// The route's `verify.verify_token` (Meta), if configured.
    pub verify_token: Option<&'a str>,
}

/// Handshakes answered before verification: probes without a signature.
pub fn before_verify(kinds: &[Kind], req: &Incoming<'_>) -> Option<Probe> {
    for &kind in kinds {
        let probe = match kind {
            Kind::OktaVerification if req.method == Method::GET => req
                .headers
                .get("x-okta-verification-challenge")
                .and_then(|v| v.to_str().ok())
                .map(|v| Probe::AfterCredentials(json_answer(kind, json!({ "verification": v })))),
            Kind::MetaHubChallenge if req.method == Method::GET => {
                let mode = query_param(req.query, "hub.mode");
                let challenge = query_param(req.query, "hub.challenge");
                let token = query_param(req.query, "hub.verify_token");
                match (mode.as_deref(), challenge, token, req.verify_token) {
                    (Some("subscribe"), Some(c), Some(t), Some(want))
                        if constant_eq(t.as_bytes(), want.as_bytes()) =>
                    {
                        Some(Probe::Answer(text(kind, c)))
                    }
                    (Some(_), _, _, _) => Some(Probe::Refused(kind)),
                    _ => None,
                }
            }
            Kind::DropboxChallenge if req.method == Method::GET => {
                query_param(req.query, "challenge").map(|c| Probe::Answer(text(kind, c)))
            }
            Kind::TrelloHead if req.method == Method::HEAD => {
                Some(Probe::Answer(text(kind, Bytes::new())))
            }
            Kind::CloudEventsOptions if req.method == Method::OPTIONS => {
                req.headers.get("webhook-request-origin").map(|origin| {
                    let mut a = text(kind, Bytes::new());
                    if let Some(origin) = origin.to_header_value() {
                        a.headers
                            .push((HeaderName::from_static("webhook-allowed-origin"), origin));
                    }
                    a.headers.push((
                        HeaderName::from_static("webhook-allowed-rate"),
                        HeaderValue::from_static("*"),
                    ));
                    a.headers.push((
                        http::header::ALLOW,
                        HeaderValue::from_static("POST, OPTIONS"),
                    ));
                    Probe::Answer(a)
                })
            }
            Kind::GraphValidationToken => {
                query_param(req.query, "validationToken").map(|t| Probe::Answer(text(kind, t)))
            }
            Kind::AzureValidation if is_azure_validation(req.headers) => {
                azure_code(req.body).map(|code| {
                    Probe::Answer(json_answer(kind, json!({ "validationResponse": code })))
                })
            }
            Kind::AsanaHookSecret if req.method == Method::POST => {
                req.headers.get("x-hook-secret").map(|secret| {
                    let mut a = text(kind, Bytes::new());
                    if let Some(echo) = secret.to_header_value() {
                        a.headers
                            .push((HeaderName::from_static("x-hook-secret"), echo));
                    }
                    Probe::LearnSecret(secret.as_bytes().to_vec(), a)
                })
            }
            _ => None,
        };
        if probe.is_some() {
            return probe;
        }
    }
    None
}

fn is_azure_validation(headers: &Fields) -> bool {
    headers
        .get("aeg-event-type")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"SubscriptionValidation"))
}

/// Event Grid's validation code, from `[{"eventType": "...SubscriptionValidationEvent", "data": {"validationCode": …}}]`.
fn azure_code(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let events = v.as_array()?;
    events.iter().find_map(|e| {
        let is_validation = e
            .get("eventType")
            .and_then(Value::as_str)
            .is_some_and(|t| t.ends_with("SubscriptionValidationEvent"));
        if !is_validation {
            return None;
        }
        e.get("data")?
            .get("validationCode")?
            .as_str()
            .map(str::to_string)
    })
}

/// Handshakes answered once the signature has verified. `zoom_mac` computes the hex
/// HMAC-SHA256 of a value with the route's secret (Zoom's `encryptedToken`).
pub fn after_verify(
    kinds: &[Kind],
    req: &Incoming<'_>,
    zoom_mac: &dyn Fn(&[u8]) -> String,
) -> Option<Answer> {
    for &kind in kinds {
        let answer = match kind {
            Kind::SlackUrlVerification => {
                let v: Value = serde_json::from_slice(req.body).ok()?;
                match (
                    v.get("type").and_then(Value::as_str),
                    v.get("challenge").and_then(Value::as_str),
                ) {
                    (Some("url_verification"), Some(c)) => Some(text(kind, c.to_string())),
                    _ => None,
                }
            }
            Kind::ZoomUrlValidation => {
                let v: Value = serde_json::from_slice(req.body).ok()?;
                let plain = v
                    .get("payload")
                    .and_then(|p| p.get("plainToken"))
                    .and_then(Value::as_str);
                match (v.get("event").and_then(Value::as_str), plain) {
                    (Some("endpoint.url_validation"), Some(pt)) => Some(json_answer(
                        kind,
                        json!({ "plainToken": pt, "encryptedToken": zoom_mac(pt.as_bytes()) }),
                    )),
                    _ => None,
                }
            }
            // Interactions PING (type 1) wants {"type":1}; webhook-events PING (type 0) a 204.
            Kind::DiscordPing => {
                let v: Value = serde_json::from_slice(req.body).ok()?;
                match v.get("type").and_then(Value::as_u64) {
                    Some(1) if v.get("event").is_none() => {
                        Some(json_answer(kind, json!({ "type": 1 })))
                    }
                    Some(0) => Some(Answer {
                        kind,
                        status: StatusCode::NO_CONTENT,
                        headers: Vec::new(),
                        body: Bytes::new(),
                    }),
                    _ => None,
                }
            }
            Kind::TwitchCallbackVerification => {
                let is_verification = req
                    .headers
                    .get("twitch-eventsub-message-type")
                    .is_some_and(|t| t.as_bytes() == b"webhook_callback_verification");
                if is_verification {
                    let v: Value = serde_json::from_slice(req.body).ok()?;
                    v.get("challenge")
                        .and_then(Value::as_str)
                        .map(|c| text(kind, c.to_string()))
                } else {
                    None
                }
            }
            _ => None,
        };
        if answer.is_some() {
            return answer;
        }
    }
    None
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    use subtle::ConstantTimeEq;
    let (da, db): ([u8; 32], [u8; 32]) = (Sha256::digest(a).into(), Sha256::digest(b).into());
    da.ct_eq(&db).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(
        method: &'a Method,
        query: Option<&'a str>,
        headers: &'a Fields,
        body: &'a [u8],
    ) -> Incoming<'a> {
        Incoming {
            method,
            query,
            headers,
            body,
            verify_token: Some("meatyhamhock"),
        }
    }

    fn hm(pairs: &[(&'static str, &'static str)]) -> Fields {
        Fields::from_pairs(pairs.iter().map(|(k, v)| (*k, v.as_bytes())))
    }

    fn answer_of(p: Option<Probe>) -> Answer {
        match p {
            Some(Probe::Answer(a) | Probe::AfterCredentials(a) | Probe::LearnSecret(_, a)) => a,
            other => panic!("no answer: {other:?}"),
        }
    }

    #[test]
    fn meta_checks_the_verify_token() {
        let h = Fields::default();
        let k = for_preset("meta");
        let ok = req(
            &Method::GET,
            Some("hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=meatyhamhock"),
            &h,
            b"",
        );
        assert_eq!(answer_of(before_verify(k, &ok)).body, "1158201444");
        let bad = req(
            &Method::GET,
            Some("hub.mode=subscribe&hub.challenge=1&hub.verify_token=nope"),
            &h,
            b"",
        );
        assert_eq!(
            before_verify(k, &bad),
            Some(Probe::Refused(Kind::MetaHubChallenge))
        );
        assert!(allows_method(k, &Method::GET) && !allows_method(k, &Method::PUT));
        assert_eq!(allowed_methods(k), "POST, GET");
        assert_eq!(
            allowed_methods(for_preset("azure-event-grid")),
            "POST, OPTIONS"
        );
        assert_eq!(allowed_methods(&[]), "POST");
    }

    #[test]
    fn dropbox_graph_trello_cloudevents() {
        let h = Fields::default();
        let a = answer_of(before_verify(
            for_preset("dropbox"),
            &req(&Method::GET, Some("challenge=CKKx%2BLX"), &h, b""),
        ));
        assert_eq!(a.body, "CKKx+LX");
        assert!(a
            .headers
            .iter()
            .any(|(k, v)| k == "x-content-type-options" && v == "nosniff"));
        let a = answer_of(before_verify(
            for_preset("ms-graph"),
            &req(
                &Method::POST,
                Some("validationToken=Validation%3A+Testing+client+application"),
                &h,
                b"",
            ),
        ));
        assert_eq!(a.body, "Validation: Testing client application");
        let a = answer_of(before_verify(
            for_preset("trello"),
            &req(&Method::HEAD, None, &h, b""),
        ));
        assert_eq!(a.status, 200);
        let ce = hm(&[("webhook-request-origin", "eventgrid.azure.net")]);
        let a = answer_of(before_verify(
            for_preset("azure-event-grid"),
            &req(&Method::OPTIONS, None, &ce, b""),
        ));
        assert!(a
            .headers
            .iter()
            .any(|(k, v)| k == "webhook-allowed-origin" && v == "eventgrid.azure.net"));
    }

    #[test]
    fn azure_validation_event() {
        let h = hm(&[("aeg-event-type", "SubscriptionValidation")]);
        let body = br#"[{"id":"2d1781af","eventType":"Microsoft.EventGrid.SubscriptionValidationEvent","data":{"validationCode":"512d38b6-c7b8-40c8-89fe-f46f9e9dfb3c","validationUrl":"https://x"}}]"#;
        let a = answer_of(before_verify(
            for_preset("azure-event-grid"),
            &req(&Method::POST, None, &h, body),
        ));
        assert_eq!(
            a.body,
            r#"{"validationResponse":"512d38b6-c7b8-40c8-89fe-f46f9e9dfb3c"}"#
        );
        let notification = hm(&[("aeg-event-type", "Notification")]);
        assert_eq!(
            before_verify(
                for_preset("azure-event-grid"),
                &req(&Method::POST, None, &notification, body)
            ),
            None
        );
    }

    #[test]
    fn okta_and_asana_need_the_gateway() {
        let h = hm(&[("x-okta-verification-challenge", "VmXp")]);
        match before_verify(for_preset("okta"), &req(&Method::GET, None, &h, b"")) {
            Some(Probe::AfterCredentials(a)) => assert_eq!(a.body, r#"{"verification":"VmXp"}"#),
            other => panic!("{other:?}"),
        }
        let h = hm(&[("x-hook-secret", "f5e2d3")]);
        match before_verify(for_preset("asana"), &req(&Method::POST, None, &h, b"")) {
            Some(Probe::LearnSecret(s, a)) => {
                assert_eq!(s, b"f5e2d3");
                assert!(a
                    .headers
                    .iter()
                    .any(|(k, v)| k == "x-hook-secret" && v == "f5e2d3"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn signed_handshakes() {
        let h = Fields::default();
        let mac = |v: &[u8]| format!("mac({})", String::from_utf8_lossy(v));
        let slack = br#"{"token":"Jhj5","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
        let a = after_verify(
            for_preset("slack"),
            &req(&Method::POST, None, &h, slack),
            &mac,
        )
        .unwrap();
        assert_eq!(
            a.body,
            "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
        );
        assert!(after_verify(
            for_preset("slack"),
            &req(&Method::POST, None, &h, br#"{"type":"event_callback"}"#),
            &mac
        )
        .is_none());
        let zoom = br#"{"payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"},"event_ts":1654503849680,"event":"endpoint.url_validation"}"#;
        let a = after_verify(
            for_preset("zoom"),
            &req(&Method::POST, None, &h, zoom),
            &mac,
        )
        .unwrap();
        assert_eq!(
            a.body,
            r#"{"encryptedToken":"mac(qgg8vlvZRS6UYooatFL8Aw)","plainToken":"qgg8vlvZRS6UYooatFL8Aw"}"#
        );
        let th = hm(&[(
            "twitch-eventsub-message-type",
            "webhook_callback_verification",
        )]);
        let a = after_verify(
            for_preset("twitch"),
            &req(
                &Method::POST,
                None,
                &th,
                br#"{"challenge":"pogchamp-kappa-360noscope-vohiyo"}"#,
            ),
            &mac,
        )
        .unwrap();
        assert_eq!(a.body, "pogchamp-kappa-360noscope-vohiyo");
        let notification = hm(&[("twitch-eventsub-message-type", "notification")]);
        assert!(after_verify(
            for_preset("twitch"),
            &req(&Method::POST, None, &notification, br#"{"challenge":"x"}"#),
            &mac
        )
        .is_none());
    }

    #[test]
    fn queries() {
        assert_eq!(
            query_param(Some("a=1&b=two%20words&c"), "b").as_deref(),
            Some("two words")
        );
        assert_eq!(query_param(Some("a=1&c"), "c").as_deref(), Some(""));
        assert_eq!(query_param(Some("a=%zz"), "a"), None);
        // Found by the `query` fuzz target: a sign is not a hex digit.
        assert_eq!(percent_decode("c4%+0"), None);
        assert_eq!(percent_decode("%-1"), None);
        assert_eq!(query_param(None, "a"), None);
    }
}
