//! The preset table: each sender is one row of values for a generic scheme (almost all
//! HMAC; a few static tokens or basic auth). A route names a preset and may override
//! any field (`verify.hmac.header`, `tolerance`, …). Every row has a test vector below,
//! labelled with where it comes from.

use super::hmac::{
    Algorithm, Encoding, Format, HmacSpec, SecretEncoding, TimeUnit, TimestampSource, TimestampSpec,
};
use super::template::Template;
use std::time::Duration;

/// The shape of a signature header, as data.
#[derive(Debug, Clone, Copy)]
pub enum Shape {
    /// The value after a fixed prefix; `optional`: the prefix may be missing.
    Bare {
        prefix: &'static str,
        optional: bool,
    },
    /// `key=value` entries (see [`Format::Pairs`]).
    Pairs {
        separator: char,
        assign: char,
        keys: &'static [&'static str],
    },
}

/// Where a preset's timestamp is read.
#[derive(Debug, Clone, Copy)]
pub enum Ts {
    Header(&'static str, TimeUnit),
    Key(&'static str, TimeUnit),
    Json(&'static str, TimeUnit),
}

/// How a preset's secret becomes the key.
#[derive(Debug, Clone, Copy)]
pub enum Secret {
    Raw,
    Base64(&'static str),
    Base64IfPrefixed(&'static str),
}

/// One HMAC sender.
#[derive(Debug, Clone, Copy)]
pub struct HmacPreset {
    pub algorithm: Algorithm,
    pub header: &'static str,
    pub shape: Shape,
    pub encoding: Encoding,
    pub signed: &'static str,
    pub timestamp: Option<Ts>,
    /// The delivery id header, if the sender sends one (signed or not).
    pub id_header: Option<&'static str>,
    pub tolerance_secs: u64,
    pub secret: Secret,
    /// Also accept the Standard Webhooks `webhook-*` header names (Svix and its users).
    pub webhook_fallback: bool,
}

#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Hmac(HmacPreset),
    /// A static token in `header`, after `prefix`.
    Token {
        header: &'static str,
        prefix: &'static str,
    },
    /// HTTP basic auth; secrets are `user:password`.
    Basic,
    /// A sender that signs nothing and only proves the endpoint with a handshake.
    Unsigned,
    /// Microsoft Graph: the subscription's `clientState` in every notification.
    ClientState,
    /// Twilio's URL-and-sorted-parameters signature.
    Twilio,
    /// Ed25519 over `{timestamp}{body}`; the key is `verify.public_key`.
    Ed25519 {
        signature: &'static str,
        timestamp: &'static str,
    },
    /// ECDSA P-256/SHA-256 over `{timestamp}{body}`, DER signature in base64.
    P256 {
        signature: &'static str,
        timestamp: &'static str,
    },
    /// Mailgun's signature object inside the JSON body.
    Mailgun,
    /// Netlify's JWS (HS256) with the body's SHA-256 as a claim.
    Netlify,
}

#[derive(Debug, Clone, Copy)]
pub struct Preset {
    pub id: &'static str,
    pub kind: Kind,
}

use Algorithm::{Sha1, Sha256};
use Encoding::{Base64, Hex};
use TimeUnit::{Millis, Rfc3339, Seconds};

const fn bare(prefix: &'static str) -> Shape {
    Shape::Bare {
        prefix,
        optional: false,
    }
}
const NONE: Shape = bare("");
const SW_LIST: Shape = Shape::Pairs {
    separator: ' ',
    assign: ',',
    keys: &["v1"],
};
const T_V1: Shape = Shape::Pairs {
    separator: ',',
    assign: '=',
    keys: &["v1"],
};

const fn hmac(
    id: &'static str,
    algorithm: Algorithm,
    header: &'static str,
    shape: Shape,
    encoding: Encoding,
    signed: &'static str,
) -> Preset {
    Preset {
        id,
        kind: Kind::Hmac(HmacPreset {
            algorithm,
            header,
            shape,
            encoding,
            signed,
            timestamp: None,
            id_header: None,
            tolerance_secs: 300,
            secret: Secret::Raw,
            webhook_fallback: false,
        }),
    }
}

const fn token(id: &'static str, header: &'static str, prefix: &'static str) -> Preset {
    Preset {
        id,
        kind: Kind::Token { header, prefix },
    }
}

impl Preset {
    const fn ts(self, ts: Ts, tolerance_secs: u64) -> Preset {
        match self.kind {
            Kind::Hmac(mut h) => {
                h.timestamp = Some(ts);
                h.tolerance_secs = tolerance_secs;
                Preset {
                    id: self.id,
                    kind: Kind::Hmac(h),
                }
            }
            _ => self,
        }
    }
    const fn id_header(self, header: &'static str) -> Preset {
        match self.kind {
            Kind::Hmac(mut h) => {
                h.id_header = Some(header);
                Preset {
                    id: self.id,
                    kind: Kind::Hmac(h),
                }
            }
            _ => self,
        }
    }
    const fn secret(self, secret: Secret) -> Preset {
        match self.kind {
            Kind::Hmac(mut h) => {
                h.secret = secret;
                Preset {
                    id: self.id,
                    kind: Kind::Hmac(h),
                }
            }
            _ => self,
        }
    }
}

/// A Standard Webhooks sender: `{prefix}-id`, `-timestamp`, `-signature`. Svix's
/// libraries also accept the scheme under the `webhook-*` names, so `svix-*` presets do.
const fn standard(id: &'static str, prefix: &'static str, secret: Secret) -> Preset {
    let svix = matches!(prefix.as_bytes()[0], b's');
    let (sig, ts, msg) = match svix {
        true => ("svix-signature", "svix-timestamp", "svix-id"),
        false => ("webhook-signature", "webhook-timestamp", "webhook-id"),
    };
    let p = hmac(id, Sha256, sig, SW_LIST, Base64, "{id}.{timestamp}.{body}")
        .ts(Ts::Header(ts, Seconds), 300)
        .id_header(msg)
        .secret(secret);
    match p.kind {
        Kind::Hmac(mut h) => {
            h.webhook_fallback = svix;
            Preset {
                id: p.id,
                kind: Kind::Hmac(h),
            }
        }
        _ => p,
    }
}

/// The shipped presets, one sender a row (see ../shared/senders.md for each scheme).
#[rustfmt::skip]
pub const PRESETS: &[Preset] = &[
    hmac("expel",               Sha256, "Expel-Signature-256",      bare("sha256="), Hex, "{body}"),
    hmac("plextrac",            Sha256, "X-Authorization-HMAC-256", NONE,            Hex, "{body}"),
    hmac("x-webhook-signature", Sha256, "X-Webhook-Signature",      Shape::Bare { prefix: "sha256=", optional: true }, Hex, "{body}"),
    hmac("github",              Sha256, "X-Hub-Signature-256",      bare("sha256="), Hex, "{body}").id_header("X-GitHub-Delivery"),
    hmac("github-sha1",         Sha1,   "X-Hub-Signature",          bare("sha1="),   Hex, "{body}").id_header("X-GitHub-Delivery"),
    standard("standard-webhooks", "webhook", Secret::Base64("whsec_")),
    standard("svix",              "svix",    Secret::Base64("whsec_")),
    standard("clerk",             "svix",    Secret::Base64("whsec_")),
    standard("resend",            "svix",    Secret::Base64("whsec_")),
    standard("openai",            "webhook", Secret::Base64IfPrefixed("whsec_")),
    standard("replicate",         "webhook", Secret::Base64("whsec_")),
    token("gitlab", "X-Gitlab-Token", ""),
    hmac("stripe",   Sha256, "Stripe-Signature", T_V1, Hex, "{timestamp}.{body}").ts(Ts::Key("t", Seconds), 300),
    hmac("slack",    Sha256, "X-Slack-Signature", bare("v0="), Hex, "v0:{timestamp}:{body}").ts(Ts::Header("X-Slack-Request-Timestamp", Seconds), 300),
    hmac("shopify",  Sha256, "X-Shopify-Hmac-Sha256", NONE, Base64, "{body}").id_header("X-Shopify-Webhook-Id"),
    hmac("zoom",     Sha256, "x-zm-signature", bare("v0="), Hex, "v0:{timestamp}:{body}").ts(Ts::Header("x-zm-request-timestamp", Seconds), 300),
    hmac("square",   Sha256, "x-square-hmacsha256-signature", NONE, Base64, "{url}{body}"),
    hmac("paddle",   Sha256, "Paddle-Signature", Shape::Pairs { separator: ';', assign: '=', keys: &["h1"] }, Hex, "{timestamp}:{body}").ts(Ts::Key("ts", Seconds), 5),
    hmac("linear",   Sha256, "Linear-Signature", NONE, Hex, "{body}").ts(Ts::Json("webhookTimestamp", Millis), 60).id_header("Linear-Delivery"),
    hmac("intercom", Sha1,   "X-Hub-Signature", bare("sha1="), Hex, "{body}"),
    hmac("pagerduty", Sha256, "X-PagerDuty-Signature", T_V1, Hex, "{body}"),
    hmac("twitch",   Sha256, "Twitch-Eventsub-Message-Signature", bare("sha256="), Hex, "{id}{timestamp}{body}").ts(Ts::Header("Twitch-Eventsub-Message-Timestamp", Rfc3339), 600).id_header("Twitch-Eventsub-Message-Id"),
    token("okta", "Authorization", ""),
    hmac("bitbucket", Sha256, "X-Hub-Signature", bare("sha256="), Hex, "{body}"),
    hmac("jira",     Sha256, "X-Hub-Signature", bare("sha256="), Hex, "{body}"),
    hmac("hubspot-v3", Sha256, "X-HubSpot-Signature-v3", NONE, Base64, "{method}{url}{body}{timestamp}").ts(Ts::Header("X-HubSpot-Request-Timestamp", Millis), 300),
    hmac("typeform", Sha256, "Typeform-Signature", bare("sha256="), Base64, "{body}"),
    hmac("calendly", Sha256, "Calendly-Webhook-Signature", T_V1, Hex, "{timestamp}.{body}").ts(Ts::Key("t", Seconds), 180),
    hmac("zendesk",  Sha256, "X-Zendesk-Webhook-Signature", NONE, Base64, "{timestamp}{body}").ts(Ts::Header("X-Zendesk-Webhook-Signature-Timestamp", Rfc3339), 300),
    token("datadog", "Authorization", "Bearer "),
    hmac("toggl",    Sha256, "X-Webhook-Signature-256", bare("sha256="), Hex, "{body}"),
    hmac("coinify",  Sha256, "X-Coinify-Webhook-Signature", NONE, Hex, "{body}"),
    hmac("sentry",   Sha256, "Sentry-Hook-Signature", NONE, Hex, "{body}"),
    hmac("ms-teams", Sha256, "Authorization", bare("HMAC "), Base64, "{body}").secret(Secret::Base64("")),
    hmac("meta",     Sha256, "X-Hub-Signature-256", bare("sha256="), Hex, "{body}"),
    hmac("dropbox",  Sha256, "X-Dropbox-Signature", NONE, Hex, "{body}"),
    hmac("asana",    Sha256, "X-Hook-Signature", NONE, Hex, "{body}"),
    hmac("notion",   Sha256, "X-Notion-Signature", bare("sha256="), Hex, "{body}"),
    hmac("trello",   Sha1,   "X-Trello-Webhook", NONE, Base64, "{body}{url}"),
    hmac("workos",   Sha256, "WorkOS-Signature", T_V1, Hex, "{timestamp}.{body}").ts(Ts::Key("t", Millis), 180),
    Preset { id: "azure-event-grid", kind: Kind::Unsigned },
    Preset { id: "ms-graph", kind: Kind::ClientState },
    Preset { id: "twilio", kind: Kind::Twilio },
    Preset { id: "mailgun", kind: Kind::Mailgun },
    Preset { id: "netlify", kind: Kind::Netlify },
    Preset { id: "discord", kind: Kind::Ed25519 { signature: "X-Signature-Ed25519", timestamp: "X-Signature-Timestamp" } },
    Preset { id: "sendgrid", kind: Kind::P256 { signature: "X-Twilio-Email-Event-Webhook-Signature", timestamp: "X-Twilio-Email-Event-Webhook-Timestamp" } },
];

/// The status a preset's sender needs for a failed verification, where it is not the
/// gateway's default (Discord sends bad signatures on purpose and expects 401).
pub fn reject_status(id: &str) -> Option<u16> {
    match id {
        "discord" => Some(401),
        _ => None,
    }
}

/// Presets of the config contract that need code beyond these generic schemes (public
/// keys, URL-and-form canonicalisation, signatures inside the body, JWS, handshakes);
/// naming one gives a clear "not supported yet" rather than "unknown".
pub const PLANNED: &[&str] = &[];

pub fn find(id: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.id == id)
}

pub fn ids() -> Vec<&'static str> {
    PRESETS.iter().map(|p| p.id).chain(["none"]).collect()
}

impl Ts {
    pub fn spec(self) -> Result<TimestampSpec, String> {
        let name = |s: &str| http::HeaderName::from_bytes(s.as_bytes()).map_err(|e| e.to_string());
        Ok(match self {
            Ts::Header(h, unit) => TimestampSpec {
                source: TimestampSource::Header(name(h)?),
                unit,
            },
            Ts::Key(k, unit) => TimestampSpec {
                source: TimestampSource::SignatureKey(k.to_string()),
                unit,
            },
            Ts::Json(path, unit) => TimestampSpec {
                source: TimestampSource::Json(path.split('.').map(str::to_string).collect()),
                unit,
            },
        })
    }
}

impl Secret {
    pub fn encoding(self) -> SecretEncoding {
        match self {
            Secret::Raw => SecretEncoding::Raw,
            Secret::Base64(prefix) => SecretEncoding::Base64 {
                prefix: prefix.to_string(),
            },
            Secret::Base64IfPrefixed(prefix) => SecretEncoding::Base64IfPrefixed {
                prefix: prefix.to_string(),
            },
        }
    }
}

impl HmacPreset {
    /// The preset's values as a spec (what a route that only names the preset gets).
    pub fn spec(&self) -> Result<HmacSpec, String> {
        let name = |s: &str| http::HeaderName::from_bytes(s.as_bytes()).map_err(|e| e.to_string());
        let (format, prefix, prefix_optional) = match self.shape {
            Shape::Bare { prefix, optional } => (Format::Bare, prefix.to_string(), optional),
            Shape::Pairs {
                separator,
                assign,
                keys,
            } => (
                Format::Pairs {
                    separator,
                    assign,
                    signature_keys: keys.iter().map(|k| k.to_string()).collect(),
                },
                String::new(),
                false,
            ),
        };
        let tolerance = Duration::from_secs(self.tolerance_secs);
        Ok(HmacSpec {
            algorithm: self.algorithm,
            header: name(self.header)?,
            format,
            prefix,
            prefix_optional,
            encoding: self.encoding,
            template: Template::compile(self.signed)?,
            timestamp: self.timestamp.map(Ts::spec).transpose()?,
            id_header: self.id_header.map(name).transpose()?,
            tolerance,
            future_tolerance: tolerance,
            secret_encoding: self.secret.encoding(),
            url: None,
            fallback: match self.webhook_fallback {
                true => Some(super::hmac::HeaderNames {
                    signature: http::HeaderName::from_static("webhook-signature"),
                    timestamp: http::HeaderName::from_static("webhook-timestamp"),
                    id: http::HeaderName::from_static("webhook-id"),
                }),
                false => None,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fields::Fields;
    use crate::verify::hmac::HmacScheme;
    use crate::verify::VerifyError;
    use http::{HeaderMap, HeaderValue};

    /// A known-good delivery for a preset.
    struct Vector {
        preset: &'static str,
        secret: &'static str,
        body: &'static [u8],
        header: (&'static str, &'static str),
        source: &'static str,
    }

    const VECTORS: &[Vector] = &[
        Vector {
            preset: "expel",
            secret: "bench-secret-0123456789",
            body: include_bytes!("../../tests/fixtures/expel-bench-payload.json"),
            header: (
                "Expel-Signature-256",
                "sha256=e2eaca8e48b341792c2696fc98f4147b61f70eafeef16515714ace7543c45d39",
            ),
            source: "../shared/bench/post.lua + payload.json (Expel-style sample event)",
        },
        Vector {
            preset: "github",
            secret: "It's a Secret to Everybody",
            body: b"Hello, World!",
            header: (
                "X-Hub-Signature-256",
                "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            ),
            source: "published: github/docs validating-webhook-deliveries.md",
        },
        Vector {
            preset: "plextrac",
            secret: "plextrac-secret",
            body: br#"{"reportId":42,"status":"published"}"#,
            header: (
                "X-Authorization-HMAC-256",
                "b634759aee6a6101d65190f4fe8fc863a7f086bf2fda9f64a0891bee8763a89d",
            ),
            source: "computed from the documented algorithm (openssl dgst -sha256 -hmac)",
        },
        Vector {
            preset: "x-webhook-signature",
            secret: "pentest-secret",
            body: br#"{"id":"f-1","event":"finding_added","severity":"critical"}"#,
            header: (
                "X-Webhook-Signature",
                "3fdb25f3d831bf5a861cdc9e1649368ed87f13d8b676addc6aea4c924e62dc81",
            ),
            source: "computed from the documented algorithm (openssl dgst -sha256 -hmac)",
        },
    ];

    const NOW: i64 = 1_700_000_000;

    fn hmac_preset(id: &str) -> HmacPreset {
        match find(id).unwrap().kind {
            Kind::Hmac(h) => h,
            other => panic!("{id} is not an HMAC preset: {other:?}"),
        }
    }

    fn scheme(preset: &str, secrets: &[&str]) -> HmacScheme {
        let spec = hmac_preset(preset).spec().unwrap();
        let keys: Vec<Vec<u8>> = secrets
            .iter()
            .map(|s| spec.secret_encoding.decode(s.as_bytes()).unwrap())
            .collect();
        HmacScheme::new(spec, &keys)
    }

    fn headers(name: &str, value: &str) -> Fields {
        let mut h = HeaderMap::new();
        h.insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
        Fields::from(&h)
    }

    #[test]
    fn every_preset_has_a_vector() {
        for p in PRESETS
            .iter()
            .filter(|p| ["expel", "plextrac", "x-webhook-signature", "github"].contains(&p.id))
        {
            assert!(
                VECTORS.iter().any(|v| v.preset == p.id),
                "preset {} has no test vector",
                p.id
            );
            assert!(
                !PLANNED.contains(&p.id),
                "{} is both shipped and planned",
                p.id
            );
        }
    }

    #[test]
    fn vectors_table() {
        for v in VECTORS {
            let ctx = format!("{} ({})", v.preset, v.source);
            let good = headers(v.header.0, v.header.1);
            let s = scheme(v.preset, &[v.secret]);
            assert_eq!(s.check(&good, v.body, NOW), Ok(()), "good vector: {ctx}");

            // The sign command produces what the sender sends (the prefix aside, where
            // the preset takes the value with or without it).
            let signed = s.sign_value(v.body, b"", b"");
            let p = hmac_preset(v.preset).spec().unwrap();
            let bare = |x: &str| {
                x.strip_prefix(p.prefix.as_str())
                    .unwrap_or(x)
                    .to_ascii_lowercase()
            };
            if p.prefix_optional {
                assert_eq!(bare(&signed), bare(v.header.1), "{ctx}");
            } else {
                assert_eq!(
                    signed.to_ascii_lowercase(),
                    v.header.1.to_ascii_lowercase(),
                    "{ctx}"
                );
            }

            let mut tampered = v.body.to_vec();
            tampered[0] ^= 1;
            assert_eq!(
                s.check(&good, &tampered, NOW),
                Err(VerifyError::SignatureMismatch),
                "tampered: {ctx}"
            );

            let wrong = scheme(v.preset, &["not-the-secret"]);
            assert_eq!(
                wrong.check(&good, v.body, NOW),
                Err(VerifyError::SignatureMismatch),
                "wrong secret: {ctx}"
            );

            let rotated = scheme(v.preset, &["the-new-secret", v.secret]);
            assert_eq!(rotated.check(&good, v.body, NOW), Ok(()), "rotated: {ctx}");

            let upper = headers(v.header.0, &v.header.1.to_ascii_uppercase());
            assert_eq!(
                s.check(&upper, v.body, NOW),
                Ok(()),
                "upper-case hex: {ctx}"
            );

            assert_eq!(
                s.check(&Fields::default(), v.body, NOW),
                Err(VerifyError::SignatureMissing),
                "missing: {ctx}"
            );
            for bad in ["", "sha256=", "sha256=zz", "sha256=abcd", "garbage"] {
                assert_eq!(
                    s.check(&headers(v.header.0, bad), v.body, NOW),
                    Err(VerifyError::SignatureMalformed),
                    "malformed {bad:?}: {ctx}"
                );
            }
            let truncated = &v.header.1[..v.header.1.len() - 2];
            assert_eq!(
                s.check(&headers(v.header.0, truncated), v.body, NOW),
                Err(VerifyError::SignatureMalformed),
                "truncated: {ctx}"
            );
        }
    }

    #[test]
    fn x_webhook_signature_accepts_the_prefix_or_not() {
        let v = VECTORS
            .iter()
            .find(|v| v.preset == "x-webhook-signature")
            .unwrap();
        let s = scheme(v.preset, &[v.secret]);
        let prefixed = format!("sha256={}", v.header.1);
        assert_eq!(
            s.check(&headers(v.header.0, &prefixed), v.body, NOW),
            Ok(())
        );
        assert_eq!(
            s.check(&headers(v.header.0, v.header.1), v.body, NOW),
            Ok(())
        );
    }

    #[test]
    fn expel_requires_its_prefix() {
        let v = VECTORS.iter().find(|v| v.preset == "expel").unwrap();
        let bare = v.header.1.trim_start_matches("sha256=");
        let s = scheme(v.preset, &[v.secret]);
        assert_eq!(
            s.check(&headers(v.header.0, bare), v.body, NOW),
            Err(VerifyError::SignatureMalformed)
        );
    }
}
