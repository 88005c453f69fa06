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

/// `hookgate_connections_closed_total{reason}` as the admin listener shows it (0 while
/// the series does not exist yet).
async fn closed_total(admin: std::net::SocketAddr, reason: &str) -> u64 {
    let text = send(admin, "GET", "/metrics", &[], "").await.text();
    let series = format!("hookgate_connections_closed_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .map(|n| n.trim().parse().expect("a count"))
        .unwrap_or(0)
}

#[tokio::test]
async fn connections_the_gateway_ends_on_its_deadlines_are_counted_by_reason() {
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;

    let up = Upstream::start().await;
    let route = expel_route("timed", "/hooks/expel", SECRET, &up.url("/in"), "");
    let timed = Gateway::start(
        &format!("limits: {{ header_timeout: 500ms, idle_timeout: 800ms }}\nroutes:\n{route}"),
        None,
    )
    .await;
    let aged = Gateway::start(
        &format!("limits: {{ max_connection_age: 1s, idle_timeout: 10s }}\nroutes:\n{route}"),
        None,
    )
    .await;
    // The metrics are the process's: the other tests here end no connection on a
    // deadline (their timeouts are the defaults, longer than they run).
    let reasons = ["idle_timeout", "header_timeout", "max_connection_age"];
    let mut before = Vec::new();
    for r in reasons {
        before.push(closed_total(timed.admin, r).await);
    }
    let request = expel_request(SECRET, b"{\"n\":1}", "");

    // A head that never completes: closed after header_timeout.
    let mut partial = TcpStream::connect(timed.addr).await.unwrap();
    partial
        .write_all(b"POST /hooks/expel HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // A connection that goes quiet after its answer: closed after idle_timeout.
    let mut quiet = TcpStream::connect(timed.addr).await.unwrap();
    quiet.write_all(&request).await.unwrap();
    let (answer, _) = read_response(&mut quiet, &mut Vec::new()).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // A connection past its age: its next answer says close.
    let mut old = TcpStream::connect(aged.addr).await.unwrap();
    old.write_all(&request).await.unwrap();
    read_response(&mut old, &mut Vec::new()).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    old.write_all(&request).await.unwrap();

    let (_, head_closed) = until_closed(&mut partial, Duration::from_secs(5)).await;
    assert!(
        head_closed.is_some(),
        "the partial head's connection stayed open"
    );
    let (_, idle_closed) = until_closed(&mut quiet, Duration::from_secs(5)).await;
    assert!(idle_closed.is_some(), "the quiet connection stayed open");
    let (last, old_closed) = until_closed(&mut old, Duration::from_secs(5)).await;
    assert!(old_closed.is_some(), "the old connection stayed open");
    assert!(
        last.to_ascii_lowercase().contains("connection: close"),
        "{last}"
    );

    for (r, was) in reasons.iter().zip(before) {
        assert_eq!(
            closed_total(timed.admin, r).await,
            was + 1,
            "{r}: one connection each"
        );
    }
    timed.stop().await;
    aged.stop().await;
}
