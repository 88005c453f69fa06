//! Metrics on the admin listener and W3C trace context (issue #7), end to end.

mod common;

use common::*;

const SECRET: &str = "observability-secret";

#[tokio::test]
async fn metrics_count_outcomes_by_route_and_reason_and_traces_reach_the_upstream() {
    let up = Upstream::start().await;
    let route = expel_route("observed", "/hooks/observed", SECRET, &up.url("/in"), "");
    let yaml = format!("routes:\n{route}");
    let gw = Gateway::start(&yaml, None).await;
    let body = br#"{"n":1}"#;
    let sig = expel_sig(SECRET, body);
    let sent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = post(
        gw.addr,
        "/hooks/observed",
        &[("expel-signature-256", &sig), ("traceparent", sent)],
        &body[..],
    )
    .await;
    assert_eq!(r.status, 200);
    let r = post(
        gw.addr,
        "/hooks/observed",
        &[("expel-signature-256", "sha256=00")],
        &body[..],
    )
    .await;
    assert_eq!(r.status, 406);
    let r = post(
        gw.addr,
        "/hooks/observed",
        &[("expel-signature-256", &sig)],
        &body[..],
    )
    .await;
    assert_eq!(r.status, 200);

    // The sender's trace continues upstream with a new span; a request without one
    // starts a trace.
    let got = up.received();
    let first = got[0].headers["traceparent"].to_str().unwrap();
    assert!(
        first.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{first}"
    );
    assert!(!first.contains("00f067aa0ba902b7"), "{first}");
    let second = got[1].headers["traceparent"].to_str().unwrap();
    assert_eq!(second.len(), 55, "{second}");
    assert!(!second.contains("4bf92f3577b34da6a3ce929d0e0e4736"));

    let m = send(gw.admin, "GET", "/metrics", &[], "").await;
    assert_eq!(m.status, 200);
    assert!(m.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let text = m.text();
    for want in [
        r#"hookgate_requests_total{route="observed",outcome="accepted",reason="-"} 2"#,
        r#"hookgate_requests_total{route="observed",outcome="rejected",reason="signature_malformed"} 1"#,
        r#"hookgate_request_duration_seconds_count{route="observed"} 3"#,
        r#"hookgate_upstream_responses_total{route="observed",class="2xx"} 2"#,
        "hookgate_build_info{version=",
        "# EOF",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    // No client address or delivery id ever becomes a label.
    assert!(!text.contains("127.0.0.1"));
    gw.stop().await;
}
