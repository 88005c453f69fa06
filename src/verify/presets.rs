//! The preset table: each sender is one row of values for the generic HMAC scheme. A
//! route names a preset and may override any field (`verify.hmac.header`, `tolerance`…).
//! Every row has a test vector below, labelled with where it comes from.

use super::hmac::{Algorithm, Encoding};

/// One sender's scheme, as data.
#[derive(Debug, Clone, Copy)]
pub struct Preset {
    pub id: &'static str,
    pub algorithm: Algorithm,
    pub header: &'static str,
    pub prefix: &'static str,
    pub prefix_optional: bool,
    pub encoding: Encoding,
    pub signed: &'static str,
    pub timestamp_header: Option<&'static str>,
    /// The delivery id header, if the sender sends one (signed or not).
    pub id_header: Option<&'static str>,
    pub tolerance_secs: u64,
}

use Algorithm::*;
use Encoding::*;

/// The shipped presets. Columns: id, algorithm, header, prefix, prefix optional,
/// encoding, signed template, timestamp header, id header, tolerance (s).
#[rustfmt::skip]
pub const PRESETS: &[Preset] = &[
    p("expel",               Sha256, "Expel-Signature-256",      "sha256=", false, Hex, "{body}", None, None, 300),
    p("plextrac",            Sha256, "X-Authorization-HMAC-256", "",        false, Hex, "{body}", None, None, 300),
    p("x-webhook-signature", Sha256, "X-Webhook-Signature",      "sha256=", true,  Hex, "{body}", None, None, 300),
    p("github",              Sha256, "X-Hub-Signature-256",      "sha256=", false, Hex, "{body}", None, Some("X-GitHub-Delivery"), 300),
];

#[allow(clippy::too_many_arguments)]
const fn p(
    id: &'static str,
    algorithm: Algorithm,
    header: &'static str,
    prefix: &'static str,
    prefix_optional: bool,
    encoding: Encoding,
    signed: &'static str,
    timestamp_header: Option<&'static str>,
    id_header: Option<&'static str>,
    tolerance_secs: u64,
) -> Preset {
    Preset {
        id,
        algorithm,
        header,
        prefix,
        prefix_optional,
        encoding,
        signed,
        timestamp_header,
        id_header,
        tolerance_secs,
    }
}

/// Presets of the config contract that later releases add; naming one gives a clear
/// "not supported yet" rather than "unknown".
pub const PLANNED: &[&str] = &[
    "standard-webhooks",
    "svix",
    "clerk",
    "resend",
    "openai",
    "replicate",
    "github-sha1",
    "gitlab",
    "stripe",
    "slack",
    "shopify",
    "twilio",
    "zoom",
    "square",
    "paddle",
    "linear",
    "intercom",
    "mailgun",
    "sendgrid",
    "discord",
    "pagerduty",
    "twitch",
    "okta",
    "bitbucket",
    "jira",
    "hubspot-v3",
    "typeform",
    "calendly",
    "zendesk",
    "datadog",
    "toggl",
    "coinify",
    "sentry",
    "ms-teams",
    "meta",
    "dropbox",
    "asana",
    "notion",
    "trello",
    "workos",
    "azure-event-grid",
    "ms-graph",
    "netlify",
];

pub fn find(id: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.id == id)
}

pub fn ids() -> Vec<&'static str> {
    PRESETS.iter().map(|p| p.id).chain(["none"]).collect()
}

impl Preset {
    /// The preset's values as a spec (what a route that only names the preset gets).
    pub fn spec(&self) -> Result<super::hmac::HmacSpec, String> {
        let name = |s: &str| http::HeaderName::from_bytes(s.as_bytes()).map_err(|e| e.to_string());
        Ok(super::hmac::HmacSpec {
            algorithm: self.algorithm,
            header: name(self.header)?,
            prefix: self.prefix.to_string(),
            prefix_optional: self.prefix_optional,
            encoding: self.encoding,
            template: super::template::Template::compile(self.signed)?,
            timestamp_header: self.timestamp_header.map(name).transpose()?,
            id_header: self.id_header.map(name).transpose()?,
            tolerance: std::time::Duration::from_secs(self.tolerance_secs),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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

    fn scheme(preset: &str, secrets: &[&str]) -> HmacScheme {
        let spec = find(preset).unwrap().spec().unwrap();
        let secrets: Vec<Vec<u8>> = secrets.iter().map(|s| s.as_bytes().to_vec()).collect();
        HmacScheme::new(spec, &secrets)
    }

    fn headers(name: &str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
        h
    }

    #[test]
    fn every_preset_has_a_vector() {
        for p in PRESETS {
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
            assert_eq!(s.verify(&good, v.body, NOW), Ok(()), "good vector: {ctx}");

            // The sign command produces what the sender sends (the prefix aside, where
            // the preset takes the value with or without it).
            let signed = s.sign_value(v.body, b"", b"");
            let p = find(v.preset).unwrap();
            let bare = |x: &str| x.strip_prefix(p.prefix).unwrap_or(x).to_ascii_lowercase();
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
                s.verify(&good, &tampered, NOW),
                Err(VerifyError::SignatureMismatch),
                "tampered: {ctx}"
            );

            let wrong = scheme(v.preset, &["not-the-secret"]);
            assert_eq!(
                wrong.verify(&good, v.body, NOW),
                Err(VerifyError::SignatureMismatch),
                "wrong secret: {ctx}"
            );

            let rotated = scheme(v.preset, &["the-new-secret", v.secret]);
            assert_eq!(rotated.verify(&good, v.body, NOW), Ok(()), "rotated: {ctx}");

            let upper = headers(v.header.0, &v.header.1.to_ascii_uppercase());
            assert_eq!(
                s.verify(&upper, v.body, NOW),
                Ok(()),
                "upper-case hex: {ctx}"
            );

            assert_eq!(
                s.verify(&HeaderMap::new(), v.body, NOW),
                Err(VerifyError::SignatureMissing),
                "missing: {ctx}"
            );
            for bad in ["", "sha256=", "sha256=zz", "sha256=abcd", "garbage"] {
                assert_eq!(
                    s.verify(&headers(v.header.0, bad), v.body, NOW),
                    Err(VerifyError::SignatureMalformed),
                    "malformed {bad:?}: {ctx}"
                );
            }
            let truncated = &v.header.1[..v.header.1.len() - 2];
            assert_eq!(
                s.verify(&headers(v.header.0, truncated), v.body, NOW),
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
            s.verify(&headers(v.header.0, &prefixed), v.body, NOW),
            Ok(())
        );
        assert_eq!(
            s.verify(&headers(v.header.0, v.header.1), v.body, NOW),
            Ok(())
        );
    }

    #[test]
    fn expel_requires_its_prefix() {
        let v = VECTORS.iter().find(|v| v.preset == "expel").unwrap();
        let bare = v.header.1.trim_start_matches("sha256=");
        let s = scheme(v.preset, &[v.secret]);
        assert_eq!(
            s.verify(&headers(v.header.0, bare), v.body, NOW),
            Err(VerifyError::SignatureMalformed)
        );
    }
}
