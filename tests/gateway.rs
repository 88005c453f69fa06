//! End to end: the status contract of ../shared/design.md (every row sync delivery can
//! produce), exact forwarding, rotation, client IPs, rate limits and body limits, with a
//! real gateway and a real upstream on 127.0.0.1:0.

mod common;

use common::*;
use std::time::{Duration, Instant};

const SECRET: &str = "expel-test-secret";
const OLD_SECRET: &str = "expel-old-secret";

fn config(extra_route_keys: &str) -> String {
    format!(
        r#"
listen: 127.0.0.1:0
routes:
  - name: expel
    path: /hooks/expel
    verify:
      preset: expel
      secrets: ["{SECRET}", "{OLD_SECRET}"]
    upstream: http://{{UPSTREAM}}/in/expel
{extra_route_keys}
  - name: stamped
    path: /hooks/stamped
    verify:
      hmac:
        header: X-Sig
        prefix: "v0="
        signed: "v0:{{timestamp}}:{{body}}"
        timestamp_header: X-Ts
      secrets: ["{SECRET}"]
      tolerance: 5m
    reject_status: 401
    upstream: http://{{UPSTREAM}}/in/stamped
  - name: open
    path: /hooks/open
    verify: {{ none: true }}
    allow_ips: [203.0.113.0/24]
    upstream: http://{{UPSTREAM}}/in/open
"#
    )
}

async fn setup(extra: &str) -> (Upstream, Gateway) {
    let up = Upstream::start().await;
    let gw = Gateway::start(&config(extra), Some(&up)).await;
    (up, gw)
}

const BODY: &[u8] = br#"{"guid":"1a9c","event_name":"investigation_created"}"#;

#[tokio::test]
async fn accepted_delivery_is_forwarded_exactly() {
    let (up, gw) = setup("").await;
    let sig = expel_sig(SECRET, BODY);
    let r = post(
        gw.addr,
        "/hooks/expel?tenant=a&x=1",
        &[
            ("expel-signature-256", &sig),
            ("content-type", "application/json"),
            ("x-custom", "kept"),
            ("connection", "keep-alive, x-drop-me"),
            ("x-drop-me", "1"),
            ("x-hookgate-verified", "forged-by-client"),
            ("x-request-id", "sender-id-42"),
        ],
        BODY,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "{\"ok\":true}");
    assert_eq!(r.headers["x-upstream"], "yes");
    assert_eq!(r.headers["x-request-id"], "sender-id-42");

    let got = up.received();
    assert_eq!(got.len(), 1);
    let req = &got[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.uri.path(), "/in/expel");
    assert_eq!(req.uri.query(), Some("tenant=a&x=1"));
    assert_eq!(&req.body[..], BODY);
    let h = &req.headers;
    assert_eq!(h["expel-signature-256"], sig.as_str());
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(h["x-custom"], "kept");
    assert!(!h.contains_key("x-drop-me"));
    assert_eq!(h["x-hookgate-route"], "expel");
    assert_eq!(h["x-hookgate-verified"], "expel");
    assert_eq!(h.get_all("x-hookgate-verified").iter().count(), 1);
    assert_eq!(h["x-request-id"], "sender-id-42");
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], gw.addr.to_string().as_str());
    assert_eq!(h["host"], up.addr.to_string().as_str());
    assert_eq!(h["content-length"], BODY.len().to_string().as_str());
}

#[tokio::test]
async fn binary_and_non_utf8_bodies_are_forwarded_byte_for_byte() {
    let (up, gw) = setup("").await;
    let mut body: Vec<u8> = (0..=255u8).collect();
    body.extend_from_slice(&[0xff, 0xfe, 0x00, 0xc3, 0x28, b'\r', b'\n', b'\r', b'\n']);
    body.extend((0..70_000u32).map(|i| (i * 7 % 251) as u8));
    let sig = expel_sig(SECRET, &body);
    let r = post(
        gw.addr,
        "/hooks/expel",
        &[
            ("expel-signature-256", &sig),
            ("content-type", "application/octet-stream"),
        ],
        body.clone(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(&up.received()[0].body[..], &body[..]);
}

#[tokio::test]
async fn a_request_id_is_made_when_the_sender_has_none() {
    let (up, gw) = setup("").await;
    let r = post(
        gw.addr,
        "/hooks/expel",
        &[("expel-signature-256", &expel_sig(SECRET, BODY))],
        BODY,
    )
    .await;
    let id = r.headers["x-request-id"].to_str().unwrap().to_string();
    assert!(id.len() >= 16, "{id}");
    assert_eq!(up.received()[0].headers["x-request-id"], id.as_str());
    // A rejected request carries one too, so the sender's support can quote it.
    let r = post(gw.addr, "/hooks/expel", &[], BODY).await;
    assert!(r.headers.contains_key("x-request-id"));
}

#[tokio::test]
async fn secret_rotation_accepts_either_secret_and_nothing_else() {
    let (up, gw) = setup("").await;
    for secret in [SECRET, OLD_SECRET] {
        let r = post(
            gw.addr,
            "/hooks/expel",
            &[("expel-signature-256", &expel_sig(secret, BODY))],
            BODY,
        )
        .await;
        assert_eq!(r.status, 200, "{secret}");
    }
    let r = post(
        gw.addr,
        "/hooks/expel",
        &[("expel-signature-256", &expel_sig("retired", BODY))],
        BODY,
    )
    .await;
    assert_eq!(r.status, 406);
    assert_eq!(up.received().len(), 2);
}

#[tokio::test]
async fn verification_failures_answer_reject_status_with_a_short_reason() {
    let (up, gw) = setup("").await;
    let good = expel_sig(SECRET, BODY);
    let mut tampered = BODY.to_vec();
    tampered[3] ^= 0x20;
    type Case = (Vec<(&'static str, String)>, Vec<u8>, &'static str);
    let cases: Vec<Case> = vec![
        (vec![], BODY.to_vec(), "signature_missing\n"),
        (
            vec![("expel-signature-256", "sha256=nothex".into())],
            BODY.to_vec(),
            "signature_malformed\n",
        ),
        (
            vec![(
                "expel-signature-256",
                good.trim_start_matches("sha256=").into(),
            )],
            BODY.to_vec(),
            "signature_malformed\n",
        ),
        (
            vec![("expel-signature-256", good.clone())],
            tampered,
            "signature_mismatch\n",
        ),
        (
            vec![("expel-signature-256", expel_sig("wrong", BODY))],
            BODY.to_vec(),
            "signature_mismatch\n",
        ),
    ];
    for (headers, body, reason) in cases {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = post(gw.addr, "/hooks/expel", &h, body).await;
        assert_eq!(r.status, 406, "{reason}");
        assert_eq!(r.text(), reason);
        // Never a hint of the right signature.
        assert!(!r.text().contains(good.trim_start_matches("sha256=")));
    }
    assert!(
        up.received().is_empty(),
        "nothing rejected reaches the upstream"
    );
}

#[tokio::test]
async fn stale_and_future_timestamps_are_rejected_with_the_routes_status() {
    let (up, gw) = setup("").await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for (offset, want, reason) in [
        (0i64, 200u16, ""),
        (-200, 200, ""),
        (-400, 401, "timestamp_stale\n"),
        (400, 401, "timestamp_future\n"),
    ] {
        let ts = (now + offset).to_string();
        let sig = format!(
            "v0={}",
            hmac_sha256_hex(SECRET.as_bytes(), &[b"v0:", ts.as_bytes(), b":", BODY])
        );
        let r = post(
            gw.addr,
            "/hooks/stamped",
            &[("x-sig", &sig), ("x-ts", &ts)],
            BODY,
        )
        .await;
        assert_eq!(r.status, want, "offset {offset}: {}", r.text());
        if !reason.is_empty() {
            assert_eq!(r.text(), reason);
        }
    }
    let r = post(gw.addr, "/hooks/stamped", &[("x-sig", "v0=00")], BODY).await;
    assert_eq!(
        (r.status.as_u16(), r.text().as_str()),
        (401, "signature_malformed\n")
    );
    assert_eq!(up.received().len(), 2);
}

#[tokio::test]
async fn routing_method_and_allowlist() {
    let (up, gw) = setup("").await;
    let r = post(gw.addr, "/hooks/nope", &[], BODY).await;
    assert_eq!(
        (r.status.as_u16(), r.text().as_str()),
        (404, "unknown_route\n")
    );
    let r = post(gw.addr, "/hooks/expel/", &[], BODY).await;
    assert_eq!(r.status, 404);
    for method in ["GET", "PUT", "DELETE", "PATCH"] {
        let r = send(gw.addr, method, "/hooks/expel", &[], "").await;
        assert_eq!(r.status, 405, "{method}");
        assert_eq!(r.headers["allow"], "POST");
    }
    // 127.0.0.1 is not in the open route's allowlist, and no proxy is trusted.
    let r = post(
        gw.addr,
        "/hooks/open",
        &[("x-forwarded-for", "203.0.113.9")],
        BODY,
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), r.text().as_str()),
        (403, "ip_not_allowed\n")
    );
    assert!(up.received().is_empty());
}

#[tokio::test]
async fn x_forwarded_for_is_believed_only_from_trusted_proxies() {
    let up = Upstream::start().await;
    let yaml = config("").replace(
        "listen: 127.0.0.1:0",
        "listen: 127.0.0.1:0\ntrusted_proxies: [127.0.0.0/8]",
    );
    let gw = Gateway::start(&yaml, Some(&up)).await;
    // Through a trusted proxy (our loopback peer), the right-most untrusted hop counts.
    let r = post(
        gw.addr,
        "/hooks/open",
        &[("x-forwarded-for", "198.51.100.1, 203.0.113.9")],
        BODY,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = post(
        gw.addr,
        "/hooks/open",
        &[("x-forwarded-for", "203.0.113.9, 198.51.100.1")],
        BODY,
    )
    .await;
    assert_eq!(r.status, 403, "a spoofed left-most entry does not help");
    let r = post(
        gw.addr,
        "/hooks/open",
        &[("x-forwarded-for", "203.0.113.9, 127.0.0.2")],
        BODY,
    )
    .await;
    assert_eq!(r.status, 200, "trusted hops are skipped");
    let got = up.received();
    assert_eq!(
        got[0].headers["x-forwarded-for"],
        "198.51.100.1, 203.0.113.9, 127.0.0.1"
    );
    assert_eq!(got[0].headers["x-hookgate-verified"], "none");

    // The same request without trusted proxies: the peer is the client.
    let (_up2, gw2) = setup("").await;
    let r = post(
        gw2.addr,
        "/hooks/open",
        &[("x-forwarded-for", "198.51.100.1, 203.0.113.9")],
        BODY,
    )
    .await;
    assert_eq!(r.status, 403);
}

#[tokio::test]
async fn rate_limits_per_client_ip_answer_429_with_retry_after() {
    let up = Upstream::start().await;
    let yaml = config("    rate_limit: { per_second: 0.05, burst: 2, key: client_ip }").replace(
        "listen: 127.0.0.1:0",
        "listen: 127.0.0.1:0\ntrusted_proxies: [127.0.0.0/8]",
    );
    let gw = Gateway::start(&yaml, Some(&up)).await;
    let sig = expel_sig(SECRET, BODY);
    let a = [
        ("expel-signature-256", sig.as_str()),
        ("x-forwarded-for", "203.0.113.1"),
    ];
    let b = [
        ("expel-signature-256", sig.as_str()),
        ("x-forwarded-for", "203.0.113.2"),
    ];
    for _ in 0..2 {
        assert_eq!(post(gw.addr, "/hooks/expel", &a, BODY).await.status, 200);
    }
    let r = post(gw.addr, "/hooks/expel", &a, BODY).await;
    assert_eq!(
        (r.status.as_u16(), r.text().as_str()),
        (429, "rate_limited\n")
    );
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=20).contains(&retry), "retry-after {retry}");
    // Another client has its own budget.
    assert_eq!(post(gw.addr, "/hooks/expel", &b, BODY).await.status, 200);
    assert_eq!(up.received().len(), 3);
}

#[tokio::test]
async fn a_declared_oversized_body_is_refused_before_it_is_sent() {
    let (up, gw) = setup("    max_body: 1KiB").await;
    // Headers only, announcing 10 MB and asking to continue: the answer must come at once.
    let head = "POST /hooks/expel HTTP/1.1\r\nhost: x\r\ncontent-length: 10000000\r\nexpect: 100-continue\r\n\r\n";
    let start = Instant::now();
    let reply = raw(gw.addr, head.as_bytes(), Duration::from_secs(3)).await;
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert!(!reply.contains("100 Continue"), "{reply}");
    assert!(reply.contains("body_too_large"));
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "answered without waiting for the body"
    );
    assert!(up.received().is_empty());
    // Exactly at the limit is fine.
    let body = vec![b'x'; 1024];
    let r = post(
        gw.addr,
        "/hooks/expel",
        &[("expel-signature-256", &expel_sig(SECRET, &body))],
        body,
    )
    .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn an_oversized_chunked_body_is_cut_off_at_the_limit() {
    let (up, gw) = setup("    max_body: 1KiB").await;
    let chunk = "x".repeat(800);
    let mut req = String::from("POST /hooks/expel HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nexpel-signature-256: sha256=00\r\n\r\n");
    for _ in 0..3 {
        req.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
    }
    req.push_str("0\r\n\r\n");
    let reply = raw(gw.addr, req.as_bytes(), Duration::from_secs(3)).await;
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert!(reply.contains("body_too_large"));
    assert!(up.received().is_empty());

    // A chunked body under the limit is read whole, verified and forwarded with a length.
    let body = "y".repeat(900);
    let sig = expel_sig(SECRET, body.as_bytes());
    let req = format!(
        "POST /hooks/expel HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nexpel-signature-256: {sig}\r\nconnection: close\r\n\r\n1c2\r\n{}\r\n1c2\r\n{}\r\n0\r\n\r\n",
        &body[..450],
        &body[450..]
    );
    let reply = raw(gw.addr, req.as_bytes(), Duration::from_secs(3)).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let got = up.received();
    assert_eq!(got[0].body, body.as_bytes());
    assert_eq!(got[0].headers["content-length"], "900");
    assert!(!got[0].headers.contains_key("transfer-encoding"));
}

#[tokio::test]
async fn upstream_answers_map_to_the_senders_contract() {
    let (up, gw) = setup("").await;
    let sig = expel_sig(SECRET, BODY);
    let h = [("expel-signature-256", sig.as_str())];
    for (upstream, want, reason) in [
        (200u16, 200u16, None),
        (202, 202, None),
        (204, 204, None),
        (400, 400, None),
        (404, 404, None),
        (406, 406, None),
        (429, 429, None),
        (500, 502, Some("upstream_error_status\n")),
        (503, 502, Some("upstream_error_status\n")),
        (302, 502, Some("upstream_error_status\n")),
    ] {
        up.set(
            upstream,
            if upstream == 204 { "" } else { "upstream says" },
            Duration::ZERO,
        );
        let r = post(gw.addr, "/hooks/expel", &h, BODY).await;
        assert_eq!(r.status, want, "upstream {upstream}");
        match reason {
            Some(reason) => assert_eq!(r.text(), reason, "upstream {upstream}"),
            None if upstream != 204 => assert_eq!(r.text(), "upstream says", "upstream {upstream}"),
            None => {}
        }
    }
}

#[tokio::test]
async fn an_unreachable_upstream_is_a_502() {
    let dead = closed_port().await;
    let yaml = format!(
        "routes:\n  - name: a\n    path: /a\n    verify: {{ none: true }}\n    upstream: http://{dead}/x\n"
    );
    let gw = Gateway::start(&yaml, None).await;
    let r = post(gw.addr, "/a", &[], BODY).await;
    assert_eq!(
        (r.status.as_u16(), r.text().as_str()),
        (502, "upstream_unreachable\n")
    );
}

#[tokio::test]
async fn a_slow_upstream_is_a_504_within_the_timeout() {
    let (up, gw) = setup("    upstream_timeout: 300ms").await;
    up.set(200, "late", Duration::from_secs(3));
    let start = Instant::now();
    let r = post(
        gw.addr,
        "/hooks/expel",
        &[("expel-signature-256", &expel_sig(SECRET, BODY))],
        BODY,
    )
    .await;
    let took = start.elapsed();
    assert_eq!(
        (r.status.as_u16(), r.text().as_str()),
        (504, "upstream_timeout\n")
    );
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(2),
        "{took:?}"
    );
}

#[tokio::test]
async fn published_preset_vectors_pass_end_to_end() {
    let up = Upstream::start().await;
    let yaml = r#"
routes:
  - name: expel
    path: /expel
    verify: { preset: expel, secrets: ["bench-secret-0123456789"] }
    upstream: http://{UPSTREAM}/expel
  - name: github
    path: /github
    verify: { preset: github, secrets: ["It's a Secret to Everybody"] }
    upstream: http://{UPSTREAM}/github
  - name: plextrac
    path: /plextrac
    verify: { preset: plextrac, secrets: [plextrac-secret] }
    upstream: http://{UPSTREAM}/plextrac
  - name: pentest
    path: /pentest
    verify: { preset: x-webhook-signature, secrets: [pentest-secret] }
    upstream: http://{UPSTREAM}/pentest
"#;
    let gw = Gateway::start(yaml, Some(&up)).await;
    let expel_body = include_bytes!("fixtures/expel-bench-payload.json");
    let cases: [(&str, &str, &str, &[u8]); 5] = [
        (
            "/expel",
            "expel-signature-256",
            "sha256=e2eaca8e48b341792c2696fc98f4147b61f70eafeef16515714ace7543c45d39",
            expel_body,
        ),
        (
            "/github",
            "x-hub-signature-256",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            b"Hello, World!",
        ),
        (
            "/plextrac",
            "x-authorization-hmac-256",
            "b634759aee6a6101d65190f4fe8fc863a7f086bf2fda9f64a0891bee8763a89d",
            br#"{"reportId":42,"status":"published"}"#,
        ),
        (
            "/pentest",
            "x-webhook-signature",
            "3fdb25f3d831bf5a861cdc9e1649368ed87f13d8b676addc6aea4c924e62dc81",
            br#"{"id":"f-1","event":"finding_added","severity":"critical"}"#,
        ),
        (
            "/pentest",
            "x-webhook-signature",
            "sha256=3fdb25f3d831bf5a861cdc9e1649368ed87f13d8b676addc6aea4c924e62dc81",
            br#"{"id":"f-1","event":"finding_added","severity":"critical"}"#,
        ),
    ];
    for (path, header, value, body) in cases {
        let r = post(gw.addr, path, &[(header, value)], body.to_vec()).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        let mut altered = body.to_vec();
        altered.push(b' ');
        let r = post(gw.addr, path, &[(header, value)], altered).await;
        assert_eq!(r.status, 406, "{path} altered");
    }
    let got = up.received();
    assert_eq!(got.len(), 5);
    assert_eq!(&got[0].body[..], &expel_body[..]);
    assert_eq!(got[1].headers["x-hookgate-verified"], "github");
}

#[tokio::test]
async fn admin_health_and_readiness() {
    let (_up, gw) = setup("").await;
    let r = send(gw.admin, "GET", "/healthz", &[], "").await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "ok\n"));
    let r = send(gw.admin, "GET", "/readyz", &[], "").await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "ready\n"));
    let r = send(gw.admin, "GET", "/nope", &[], "").await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests() {
    let (up, gw) = setup("").await;
    up.set(200, "slow but fine", Duration::from_millis(500));
    let addr = gw.addr;
    let sig = expel_sig(SECRET, BODY);
    let inflight = tokio::spawn(async move {
        post(addr, "/hooks/expel", &[("expel-signature-256", &sig)], BODY).await
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let report = gw.stop().await;
    assert_eq!(report.cut, 0);
    let r = inflight.await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "slow but fine");
    // And no new connection is accepted.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn many_concurrent_deliveries_all_arrive() {
    let (up, gw) = setup("").await;
    let mut tasks = Vec::new();
    for i in 0..200u32 {
        let addr = gw.addr;
        tasks.push(tokio::spawn(async move {
            let body = format!("{{\"n\":{i}}}");
            let sig = expel_sig(SECRET, body.as_bytes());
            post(addr, "/hooks/expel", &[("expel-signature-256", &sig)], body)
                .await
                .status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let mut seen: Vec<String> = up
        .received()
        .iter()
        .map(|r| String::from_utf8(r.body.to_vec()).unwrap())
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 200);
}

#[tokio::test]
async fn h2c_prior_knowledge_is_served_too() {
    use http_body_util::{BodyExt, Full};
    let (up, gw) = setup("").await;
    let stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let (mut sender, _conn) = h2_handshake(stream).await;
    let sig = expel_sig(SECRET, BODY);
    let req = http::Request::post(format!("http://{}/hooks/expel", gw.addr))
        .header("expel-signature-256", &sig)
        .body(Full::new(bytes::Bytes::from_static(BODY)))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        &resp.into_body().collect().await.unwrap().to_bytes()[..],
        b"{\"ok\":true}"
    );
    let got = up.received();
    assert_eq!(&got[0].body[..], BODY);
    assert_eq!(
        got[0].headers["x-forwarded-host"],
        gw.addr.to_string().as_str()
    );
}

#[tokio::test]
async fn duplicates_are_answered_once_forwarded_and_retries_after_failure_go_through() {
    let up = Upstream::start().await;
    let yaml = r#"
routes:
  - name: scorecard
    path: /hooks/scorecard
    verify: { none: true }
    dedup: { window: 36h, id_from: json:execution_id }
    upstream: http://{UPSTREAM}/scorecard
"#;
    let gw = Gateway::start(yaml, Some(&up)).await;
    let a = r#"{"execution_id":"exec-1","retries":0}"#;
    let a_retry = r#"{"execution_id":"exec-1","retries":1}"#;
    let r = post(gw.addr, "/hooks/scorecard", &[], a).await;
    assert_eq!(r.status, 200);
    let r = post(gw.addr, "/hooks/scorecard", &[], a_retry).await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "duplicate\n"));
    assert_eq!(up.received().len(), 1, "the duplicate was not forwarded");

    // A forward that fails is not remembered: the sender's retry goes through.
    up.set(500, "down", Duration::ZERO);
    let b = r#"{"execution_id":"exec-2"}"#;
    assert_eq!(post(gw.addr, "/hooks/scorecard", &[], b).await.status, 502);
    up.set(200, "ok", Duration::ZERO);
    assert_eq!(post(gw.addr, "/hooks/scorecard", &[], b).await.status, 200);
    assert_eq!(
        post(gw.addr, "/hooks/scorecard", &[], b).await.text(),
        "duplicate\n"
    );
    assert_eq!(up.received().len(), 3);

    // A copy that arrives while the first is still being forwarded is refused for now.
    up.set(200, "slow", Duration::from_millis(600));
    let addr = gw.addr;
    let c = r#"{"execution_id":"exec-3"}"#;
    let first = tokio::spawn(async move { post(addr, "/hooks/scorecard", &[], c).await });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let r = post(gw.addr, "/hooks/scorecard", &[], c).await;
    assert_eq!(
        (r.status.as_u16(), r.text().as_str()),
        (503, "duplicate_in_flight\n")
    );
    assert!(r.headers.contains_key("retry-after"));
    assert_eq!(first.await.unwrap().status, 200);
    assert_eq!(
        post(gw.addr, "/hooks/scorecard", &[], c).await.text(),
        "duplicate\n"
    );
    assert_eq!(up.received().len(), 4, "exec-3 forwarded exactly once");

    // No id, no dedup: the delivery is forwarded.
    up.set(200, "ok", Duration::ZERO);
    assert_eq!(
        post(gw.addr, "/hooks/scorecard", &[], "{}").await.status,
        200
    );
    assert_eq!(
        post(gw.addr, "/hooks/scorecard", &[], "{}").await.status,
        200
    );
    assert_eq!(up.received().len(), 6);
}

#[tokio::test]
async fn standard_webhooks_deliveries_are_deduplicated_by_their_signed_id() {
    let up = Upstream::start().await;
    let yaml = r#"
routes:
  - name: appsec
    path: /hooks/appsec
    verify: { preset: standard-webhooks, secrets: ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"] }
    dedup: { window: 24h }
    upstream: http://{UPSTREAM}/appsec
"#;
    let gw = Gateway::start(yaml, Some(&up)).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let body = br#"{"type":"assignment.created"}"#;
    let key = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .unwrap()
    };
    let sign = |id: &str| {
        use base64::Engine;
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
        mac.update(format!("{id}.{now}.").as_bytes());
        mac.update(body);
        format!(
            "v1,{}",
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
        )
    };
    for (id, want) in [
        ("msg_1", "{\"ok\":true}"),
        ("msg_1", "duplicate\n"),
        ("msg_2", "{\"ok\":true}"),
    ] {
        let sig = sign(id);
        let r = post(
            gw.addr,
            "/hooks/appsec",
            &[
                ("webhook-id", id),
                ("webhook-timestamp", &now),
                ("webhook-signature", &sig),
            ],
            body.to_vec(),
        )
        .await;
        assert_eq!((r.status.as_u16(), r.text().as_str()), (200, want), "{id}");
    }
    assert_eq!(up.received().len(), 2);
}
