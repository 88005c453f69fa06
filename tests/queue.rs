//! Queued delivery (issue #6) against a real upstream that is down, then failing, then
//! slow, then back: every accepted delivery arrives, in order when concurrency is 1, and
//! deliveries stored before a restart go out after it.

mod common;

use common::*;
use hookgate::store::{Select, State, Store};
use std::time::Duration;

fn config(dir: &TempDir, upstream: std::net::SocketAddr, extra: &str) -> String {
    format!(
        r#"store: {{ path: {}, synchronous: normal }}
routes:
  - name: q
    path: /q
    verify: {{ none: true }}
    allow_ips: [127.0.0.1/32]
    delivery: queued
    upstream_timeout: 300ms
    retry: {{ max_attempts: 1000, backoff: 20ms, max_backoff: 100ms, max_age: 1h }}
    upstream: http://{upstream}/in
{extra}"#,
        dir.path("q.db")
    )
}

async fn deliver(addr: std::net::SocketAddr, n: usize) {
    let body = format!("{{\"seq\":{n}}}");
    let r = post(addr, "/q", &[("content-type", "application/json")], body).await;
    assert_eq!(
        (r.status.as_u16(), r.text().as_str()),
        (200, "queued\n"),
        "delivery {n}"
    );
    assert!(r.headers.contains_key("x-hookgate-delivery-id"));
}

#[tokio::test]
async fn an_upstream_down_then_failing_then_slow_then_back_gets_every_delivery_in_order() {
    let dir = TempDir::new("queue-order");
    let port = closed_port().await;
    let gw = Gateway::start(&config(&dir, port, ""), None).await;

    // Down: deliveries are accepted and stored.
    for n in 0..10 {
        deliver(gw.addr, n).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Back, but answering 503 (and recording those attempts).
    let up = Upstream::start_on(port).await;
    up.set(503, "busy", Duration::ZERO);
    for n in 10..15 {
        deliver(gw.addr, n).await;
    }
    wait_until("retries against the 503s", Duration::from_secs(5), || {
        up.received().len() >= 5
    })
    .await;
    // Slow: every attempt times out (300 ms upstream timeout).
    up.set(200, "late", Duration::from_millis(600));
    for n in 15..20 {
        deliver(gw.addr, n).await;
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    // Healthy again.
    up.set(200, "ok", Duration::ZERO);
    for n in 20..30 {
        deliver(gw.addr, n).await;
    }
    // 200s come only from the healthy phase or a slow one that finished: look at the
    // first successful arrival of each sequence number.
    wait_until("all 30 deliveries", Duration::from_secs(15), || {
        let mut seen: Vec<usize> = Vec::new();
        for r in up.received() {
            let n: usize = String::from_utf8_lossy(&r.body)
                .trim_start_matches("{\"seq\":")
                .trim_end_matches('}')
                .parse()
                .unwrap();
            if !seen.contains(&n) {
                seen.push(n);
            }
        }
        seen.len() == 30
    })
    .await;
    let got = up.received();
    // In order: the first arrival of each sequence number comes in sequence.
    let mut first: Vec<usize> = Vec::new();
    for r in &got {
        let n: usize = String::from_utf8_lossy(&r.body)
            .trim_start_matches("{\"seq\":")
            .trim_end_matches('}')
            .parse()
            .unwrap();
        if !first.contains(&n) {
            first.push(n);
        }
        // Every attempt says which delivery and which attempt it is.
        assert!(r.headers["x-hookgate-delivery-id"]
            .to_str()
            .unwrap()
            .contains('-'));
        let attempt: u32 = r.headers["x-hookgate-attempt"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(attempt >= 1);
        assert_eq!(r.uri.path(), "/in");
    }
    assert_eq!(first, (0..30).collect::<Vec<_>>());
    // Stricter: with concurrency 1 a delivery's retries all come before the next
    // delivery's first attempt, so every arrival is in sequence.
    let all: Vec<usize> = got
        .iter()
        .map(|r| {
            String::from_utf8_lossy(&r.body)
                .trim_start_matches("{\"seq\":")
                .trim_end_matches('}')
                .parse()
                .unwrap()
        })
        .collect();
    assert!(
        all.windows(2).all(|w| w[0] <= w[1]),
        "out of order: {all:?}"
    );
    // The first delivery was attempted several times (503s), with rising attempt numbers.
    let attempts: Vec<u32> = got
        .iter()
        .filter(|r| r.body.as_ref() == b"{\"seq\":10}")
        .map(|r| {
            r.headers["x-hookgate-attempt"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert!(
        attempts.windows(2).all(|w| w[1] == w[0] + 1),
        "{attempts:?}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn stored_deliveries_go_out_after_a_restart_and_4xx_ones_are_dead_letters() {
    let dir = TempDir::new("queue-restart");
    let port = closed_port().await;
    let gw = Gateway::start(&config(&dir, port, ""), None).await;
    for n in 0..5 {
        deliver(gw.addr, n).await;
    }
    assert_eq!(gw.stop().await.cut, 0);

    // Restart on the same store with the upstream up: all five arrive.
    let up = Upstream::start_on(port).await;
    let gw = Gateway::start(&config(&dir, port, ""), None).await;
    wait_until(
        "the five stored deliveries",
        Duration::from_secs(10),
        || up.received().len() >= 5,
    )
    .await;
    let bodies: Vec<String> = up
        .received()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert_eq!(
        bodies,
        (0..5)
            .map(|n| format!("{{\"seq\":{n}}}"))
            .collect::<Vec<_>>()
    );

    // A 4xx the route does not retry: dead at once, not retried.
    up.set(422, "no", Duration::ZERO);
    deliver(gw.addr, 99).await;
    wait_until("the 422", Duration::from_secs(5), || {
        up.received().len() >= 6
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(up.received().len(), 6, "a 422 was retried");
    gw.stop().await;

    let settings = hookgate::config::StoreSettings {
        path: dir.0.join("q.db"),
        synchronous: hookgate::config::Synchronous::Normal,
        max_bytes: 1 << 30,
        max_deliveries: 1000,
        retain: Duration::from_secs(3600),
    };
    let store = Store::open(&settings).unwrap();
    let dead = store.list_dead(None, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].delivery.body.as_ref(), b"{\"seq\":99}");
    assert_eq!(
        (dead[0].state, dead[0].last_status),
        (State::Dead, Some(422))
    );
    // Replayed, it goes out again once the upstream accepts it.
    up.set(200, "ok", Duration::ZERO);
    assert_eq!(store.replay(Select::all(None)).await.unwrap(), 1);
    drop(store);
    let gw = Gateway::start(&config(&dir, port, ""), None).await;
    wait_until("the replayed delivery", Duration::from_secs(5), || {
        up.received().len() >= 7
    })
    .await;
    assert_eq!(up.received()[6].body.as_ref(), b"{\"seq\":99}");
    gw.stop().await;
}

#[tokio::test]
async fn a_full_store_answers_503_and_dedup_marks_queued_deliveries_done() {
    let dir = TempDir::new("queue-full");
    let port = closed_port().await;
    let yaml = config(&dir, port, "").replace(
        "synchronous: normal }",
        "synchronous: normal, max_deliveries: 3 }",
    );
    let gw = Gateway::start(&yaml, None).await;
    for n in 0..3 {
        deliver(gw.addr, n).await;
    }
    let r = post(gw.addr, "/q", &[], "{\"seq\":3}").await;
    assert_eq!(
        (r.status.as_u16(), r.text().as_str()),
        (503, "store_full\n")
    );
    assert!(r.headers.contains_key("retry-after"));
    gw.stop().await;

    // Dedup on a queued route: the copy of a stored delivery is a duplicate at once.
    let dir = TempDir::new("queue-dedup");
    let yaml = config(&dir, port, "").replace(
        "    delivery: queued",
        "    dedup: { window: 1h, id_from: json:seq }\n    delivery: queued",
    );
    let gw = Gateway::start(&yaml, None).await;
    deliver(gw.addr, 7).await;
    let r = post(gw.addr, "/q", &[], "{\"seq\":7}").await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "duplicate\n"));
    gw.stop().await;
}

#[tokio::test]
async fn the_running_gateway_serves_queue_stats_on_its_admin_listener() {
    let dir = TempDir::new("queue-admin");
    let port = closed_port().await;
    let gw = Gateway::start(&config(&dir, port, ""), None).await;
    for n in 0..2 {
        deliver(gw.addr, n).await;
    }
    let r = send(gw.admin, "GET", "/queue/stats", &[], "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["routes"][0]["route"], "q");
    assert_eq!(v["routes"][0]["pending"], 2);
    gw.stop().await;
}
