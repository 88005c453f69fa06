//! Handshakes through a running gateway: answered by the gateway, never forwarded,
//! signed ones only after their signature verified.

mod common;

use common::*;
use std::time::{SystemTime, UNIX_EPOCH};

fn now() -> String {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string()
}

const CONFIG: &str = r#"
routes:
  - { name: slack, path: /slack, upstream: "http://{UPSTREAM}/slack", verify: { preset: slack, secrets: [slack-secret] } }
  - { name: zoom, path: /zoom, upstream: "http://{UPSTREAM}/zoom", verify: { preset: zoom, secrets: [zoom-secret] } }
  - { name: twitch, path: /twitch, upstream: "http://{UPSTREAM}/twitch", verify: { preset: twitch, secrets: [twitch-secret] } }
  - { name: okta, path: /okta, upstream: "http://{UPSTREAM}/okta", verify: { preset: okta, secrets: [okta-token] } }
  - { name: meta, path: /meta, upstream: "http://{UPSTREAM}/meta", verify: { preset: meta, secrets: [meta-secret], verify_token: meatyhamhock } }
  - { name: dropbox, path: /dropbox, upstream: "http://{UPSTREAM}/dropbox", verify: { preset: dropbox, secrets: [dbx] } }
  - { name: trello, path: /trello, upstream: "http://{UPSTREAM}/trello", verify: { preset: trello, secrets: [tr], url: "https://hooks.example.com/trello" } }
  - { name: azure, path: /azure, upstream: "http://{UPSTREAM}/azure", verify: { preset: azure-event-grid } }
  - { name: graph, path: /graph, upstream: "http://{UPSTREAM}/graph", verify: { preset: ms-graph, secrets: [graph-state] } }
  - { name: asana, path: /asana, upstream: "http://{UPSTREAM}/asana", verify: { preset: asana, hook_secret_file: "{SECRET_FILE}" } }
"#;

async fn setup() -> (Upstream, Gateway, std::path::PathBuf) {
    let up = Upstream::start().await;
    let dir = std::env::temp_dir().join(format!("hookgate-hs-{}-{}", std::process::id(), now()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("asana-secret");
    let yaml = CONFIG.replace("{SECRET_FILE}", &file.display().to_string());
    let gw = Gateway::start(&yaml, Some(&up)).await;
    (up, gw, file)
}

#[tokio::test]
async fn signed_handshakes_are_answered_after_verification() {
    let (up, gw, _) = setup().await;
    let ts = now();
    // Slack url_verification.
    let body = r#"{"token":"x","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    let sig = format!(
        "v0={}",
        hmac_sha256_hex(
            b"slack-secret",
            &[b"v0:", ts.as_bytes(), b":", body.as_bytes()]
        )
    );
    let r = post(
        gw.addr,
        "/slack",
        &[
            ("x-slack-request-timestamp", &ts),
            ("x-slack-signature", &sig),
        ],
        body,
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), r.text().as_str()),
        (200, "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P")
    );
    // The same challenge with a bad signature is rejected like any delivery.
    let r = post(
        gw.addr,
        "/slack",
        &[
            ("x-slack-request-timestamp", &ts),
            ("x-slack-signature", "v0=00"),
        ],
        body,
    )
    .await;
    assert_eq!(r.status, 406);

    // Zoom endpoint.url_validation: encryptedToken = hex HMAC-SHA256(secret, plainToken).
    let body = r#"{"payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"},"event_ts":1654503849680,"event":"endpoint.url_validation"}"#;
    let sig = format!(
        "v0={}",
        hmac_sha256_hex(
            b"zoom-secret",
            &[b"v0:", ts.as_bytes(), b":", body.as_bytes()]
        )
    );
    let r = post(
        gw.addr,
        "/zoom",
        &[("x-zm-request-timestamp", &ts), ("x-zm-signature", &sig)],
        body,
    )
    .await;
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["plainToken"], "qgg8vlvZRS6UYooatFL8Aw");
    assert_eq!(
        v["encryptedToken"],
        hmac_sha256_hex(b"zoom-secret", &[b"qgg8vlvZRS6UYooatFL8Aw"]).as_str()
    );

    // Twitch webhook_callback_verification.
    let rfc = hookgate::sign::rfc3339(now().parse().unwrap());
    let body = r#"{"challenge":"pogchamp-kappa-360noscope-vohiyo","subscription":{"id":"f1c2"}}"#;
    let sig = format!(
        "sha256={}",
        hmac_sha256_hex(
            b"twitch-secret",
            &[b"msg-1", rfc.as_bytes(), body.as_bytes()]
        )
    );
    let r = post(
        gw.addr,
        "/twitch",
        &[
            ("twitch-eventsub-message-id", "msg-1"),
            ("twitch-eventsub-message-timestamp", &rfc),
            (
                "twitch-eventsub-message-type",
                "webhook_callback_verification",
            ),
            ("twitch-eventsub-message-signature", &sig),
        ],
        body,
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), r.text().as_str()),
        (200, "pogchamp-kappa-360noscope-vohiyo")
    );
    assert!(up.received().is_empty(), "handshakes are never forwarded");
}

#[tokio::test]
async fn probes_are_answered_before_verification() {
    let (up, gw, _) = setup().await;
    // Okta: the GET carries the configured token, checked first.
    let r = send(
        gw.addr,
        "GET",
        "/okta",
        &[
            ("authorization", "okta-token"),
            ("x-okta-verification-challenge", "VmXp"),
        ],
        "",
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), r.text().as_str()),
        (200, r#"{"verification":"VmXp"}"#)
    );
    let r = send(
        gw.addr,
        "GET",
        "/okta",
        &[
            ("authorization", "wrong"),
            ("x-okta-verification-challenge", "VmXp"),
        ],
        "",
    )
    .await;
    assert_eq!(r.status, 406);
    // Meta hub.challenge with the verify token.
    let r = send(
        gw.addr,
        "GET",
        "/meta?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=meatyhamhock",
        &[],
        "",
    )
    .await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "1158201444"));
    let r = send(
        gw.addr,
        "GET",
        "/meta?hub.mode=subscribe&hub.challenge=1&hub.verify_token=guess",
        &[],
        "",
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), r.text().as_str()),
        (403, "handshake_refused\n")
    );
    let r = send(gw.addr, "GET", "/meta", &[], "").await;
    assert_eq!(r.status, 405, "a GET that is no handshake is not forwarded");
    assert_eq!(r.headers["allow"], "POST, GET");
    // Dropbox challenge echo.
    let r = send(
        gw.addr,
        "GET",
        "/dropbox?challenge=CKKxLXtUOSsZHuWGlC8CUjS9Ygc",
        &[],
        "",
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), r.text().as_str()),
        (200, "CKKxLXtUOSsZHuWGlC8CUjS9Ygc")
    );
    assert_eq!(r.headers["x-content-type-options"], "nosniff");
    // Trello HEAD at creation.
    assert_eq!(send(gw.addr, "HEAD", "/trello", &[], "").await.status, 200);
    // Azure Event Grid validation event and CloudEvents OPTIONS.
    let body = r#"[{"id":"2d1781af","eventType":"Microsoft.EventGrid.SubscriptionValidationEvent","data":{"validationCode":"512d38b6-c7b8"}}]"#;
    let r = post(
        gw.addr,
        "/azure",
        &[("aeg-event-type", "SubscriptionValidation")],
        body,
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), r.text().as_str()),
        (200, r#"{"validationResponse":"512d38b6-c7b8"}"#)
    );
    let r = send(
        gw.addr,
        "OPTIONS",
        "/azure",
        &[("webhook-request-origin", "eventgrid.azure.net")],
        "",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["webhook-allowed-origin"], "eventgrid.azure.net");
    // Microsoft Graph validationToken.
    let r = post(
        gw.addr,
        "/graph?validationToken=Validation%3A+Testing+client+application",
        &[],
        "",
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), r.text().as_str()),
        (200, "Validation: Testing client application")
    );
    assert!(up.received().is_empty());
    // Ordinary deliveries still go through.
    let r = post(
        gw.addr,
        "/azure",
        &[("aeg-event-type", "Notification")],
        r#"[{"eventType":"x"}]"#,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(up.received().len(), 1);
}

#[tokio::test]
async fn asana_secret_is_learned_once_kept_and_used() {
    let (up, gw, file) = setup().await;
    let body = r#"{"events":[{"action":"changed"}]}"#;
    // Before the handshake nothing verifies.
    let sig = hmac_sha256_hex(b"f5e2d3c4", &[body.as_bytes()]);
    assert_eq!(
        post(gw.addr, "/asana", &[("x-hook-signature", &sig)], body)
            .await
            .status,
        406
    );
    // The handshake: echoed, kept.
    let r = post(gw.addr, "/asana", &[("x-hook-secret", "f5e2d3c4")], "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["x-hook-secret"], "f5e2d3c4");
    assert_eq!(std::fs::read(&file).unwrap(), b"f5e2d3c4");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    // Now deliveries signed with it verify; a second, different secret is refused.
    assert_eq!(
        post(gw.addr, "/asana", &[("x-hook-signature", &sig)], body)
            .await
            .status,
        200
    );
    let r = post(gw.addr, "/asana", &[("x-hook-secret", "attacker")], "").await;
    assert_eq!(r.status, 403);
    assert_eq!(
        post(gw.addr, "/asana", &[("x-hook-secret", "f5e2d3c4")], "")
            .await
            .status,
        200,
        "a repeat is fine"
    );
    assert_eq!(up.received().len(), 1);

    // A restarted gateway reads the kept secret.
    drop(gw);
    let yaml = CONFIG.replace("{SECRET_FILE}", &file.display().to_string());
    let gw2 = Gateway::start(&yaml, Some(&up)).await;
    assert_eq!(
        post(gw2.addr, "/asana", &[("x-hook-signature", &sig)], body)
            .await
            .status,
        200
    );
    assert_eq!(
        post(gw2.addr, "/asana", &[("x-hook-secret", "other")], "")
            .await
            .status,
        403
    );
}
