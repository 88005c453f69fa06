//! `hookgate queue` and `hookgate dlq` as an operator runs them: on the store file when
//! the gateway is not reachable, and through the admin API (token-guarded) when it is;
//! and the admin API itself over real HTTP.

mod common;

use common::*;
use hookgate::admin::{self, QueueAdmin};
use hookgate::config::{StoreSettings, Synchronous};
use hookgate::server::Health;
use hookgate::store::{NewDelivery, Outcome, State, Store};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_hookgate");
const TOKEN: &str = "a-long-admin-token-123";

fn settings(path: &Path) -> StoreSettings {
    StoreSettings {
        path: path.to_path_buf(),
        synchronous: Synchronous::Normal,
        max_bytes: 1 << 30,
        max_deliveries: 1000,
        retain: Duration::from_secs(3600),
    }
}

fn delivery(route: &str, body: &str) -> NewDelivery {
    NewDelivery {
        route: route.into(),
        delivery_id: Some(format!("evt-{}", body.replace(' ', "-")).into_bytes()),
        query: None,
        headers: b"content-type: text/plain\r\n".to_vec(),
        peer: "127.0.0.1".into(),
        peer_trusted: false,
        tls: false,
        original_host: None,
        request_id: "req-1".into(),
        body: bytes::Bytes::from(body.to_string()),
    }
}

async fn enqueue(store: &Store, route: &str, body: &str, outcome: Option<Outcome>) -> i64 {
    let id = store.enqueue(delivery(route, body)).await.unwrap();
    if let Some(o) = outcome {
        store.record(id, o).await.unwrap();
    }
    id
}

fn dead() -> Option<Outcome> {
    Some(Outcome::Dead {
        status: Some(500),
        error: "upstream answered 500".into(),
    })
}

/// A config with a store at `db`, one queued route, and optionally an admin listener.
fn config(db: &Path, admin: Option<(SocketAddr, &str)>) -> String {
    let admin = match admin {
        Some((addr, token)) => format!("admin: {{ listen: \"{addr}\", token: \"{token}\" }}\n"),
        None => String::new(),
    };
    format!(
        "listen: 127.0.0.1:0\n{admin}store: {{ path: \"{}\" }}\nroutes:\n  - name: a\n    path: /a\n    verify: {{ none: true }}\n    allow_ips: [127.0.0.1/32]\n    delivery: queued\n    upstream: http://127.0.0.1:9/a\n",
        db.display()
    )
}

fn run(config: &Path, args: &[&str], env_token: Option<&str>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).arg("--config").arg(config);
    match env_token {
        Some(t) => cmd.env("HOOKGATE_ADMIN_TOKEN", t),
        None => cmd.env_remove("HOOKGATE_ADMIN_TOKEN"),
    };
    cmd.output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs and asserts the exit code; returns stdout and stderr.
fn expect(config: &Path, args: &[&str], code: i32) -> (String, String) {
    let out = run(config, args, None);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(code),
        "{args:?}\nstdout: {stdout}\nstderr: {stderr}"
    );
    (stdout, stderr)
}

/// The table row whose first cell is `key`, split on whitespace.
fn row<'a>(table: &'a str, key: &str) -> Vec<&'a str> {
    table
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.first() == Some(&key))
        .unwrap_or_else(|| panic!("no row {key:?} in\n{table}"))
}

fn stats_json(config: &Path) -> Value {
    let (stdout, _) = expect(config, &["queue", "stats", "--json"], 0);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn route_stats<'a>(v: &'a Value, route: &str) -> &'a Value {
    v["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["route"] == route)
        .unwrap_or_else(|| panic!("no route {route} in {v}"))
}

fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

#[test]
fn file_mode_inspects_replays_and_purges_the_store_file() {
    let dir = TempDir::new("queue-cli-file");
    let db = dir.0.join("q.db");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (d1, d2, d3, done, pending) = runtime.block_on(async {
        let store = Store::open(&settings(&db)).unwrap();
        let d1 = enqueue(&store, "a", "first dead body", dead()).await;
        let d2 = enqueue(&store, "a", "second dead body", dead()).await;
        let d3 = enqueue(&store, "b", "dead on b", dead()).await;
        let done = enqueue(&store, "a", "done", Some(Outcome::Done { status: 200 })).await;
        let pending = enqueue(&store, "a", "pending", None).await;
        (d1, d2, d3, done, pending)
    });
    drop(runtime);
    let cfg = dir.write("hookgate.yaml", &config(&db, None));

    let (stdout, stderr) = expect(&cfg, &["queue", "stats"], 0);
    assert!(
        stderr.contains(&format!("working on the store file {}", db.display())),
        "{stderr}"
    );
    assert_eq!(
        row(&stdout, "ROUTE"),
        ["ROUTE", "PENDING", "DEAD", "DONE", "OLDEST_PENDING_AGE"]
    );
    assert_eq!(row(&stdout, "a")[1..4], ["1", "2", "1"], "{stdout}");
    assert_eq!(row(&stdout, "b")[1..], ["0", "1", "0", "-"], "{stdout}");
    let v = stats_json(&cfg);
    let a = route_stats(&v, "a");
    assert_eq!(
        (&a["pending"], &a["dead"], &a["done"]),
        (&json!(1), &json!(2), &json!(1))
    );
    assert!(a["oldest_pending_ms"].as_i64().unwrap() > 0);

    // dlq list: the dead ones only, oldest first; --route narrows.
    let (stdout, _) = expect(&cfg, &["dlq", "list"], 0);
    let ids: Vec<String> = stdout
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    assert_eq!(ids, [d1, d2, d3].map(|i| i.to_string()), "{stdout}");
    assert!(stdout.starts_with("ID"), "{stdout}");
    let r = row(&stdout, &d1.to_string());
    assert_eq!(r[1..3], ["a", "evt-first-dead-body"]);
    assert_eq!(r[4..6], ["1", "500"], "attempts and last status: {stdout}");
    assert!(stdout.contains("upstream answered 500"), "{stdout}");
    let (stdout, _) = expect(&cfg, &["dlq", "list", "--route", "b"], 0);
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    assert_eq!(row(&stdout, &d3.to_string())[1], "b");
    let (stdout, _) = expect(&cfg, &["dlq", "list", "--json", "--limit", "1"], 0);
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["dead"].as_array().unwrap().len(), 1);
    assert_eq!(v["dead"][0]["id"], d1);
    assert_eq!(v["dead"][0]["body_bytes"], "first dead body".len());

    // dlq show: the fields, then the body.
    let (stdout, _) = expect(&cfg, &["dlq", "show", &d1.to_string()], 0);
    assert!(stdout.ends_with("\nfirst dead body\n"), "{stdout}");
    assert!(stdout.contains("content-type: text/plain"), "{stdout}");
    assert_eq!(row(&stdout, "route"), ["route", "a"]);
    assert_eq!(row(&stdout, "last_status"), ["last_status", "500"]);
    for id in [pending, done, 999_999] {
        let (_, stderr) = expect(&cfg, &["dlq", "show", &id.to_string()], 1);
        assert!(
            stderr.contains(&format!("no dead delivery {id}")),
            "{stderr}"
        );
    }

    // dlq replay ID: pending again.
    let (stdout, _) = expect(&cfg, &["dlq", "replay", &d1.to_string()], 0);
    assert_eq!(stdout, "replayed 1 dead delivery\n");
    let v = stats_json(&cfg);
    let a = route_stats(&v, "a");
    assert_eq!((&a["pending"], &a["dead"]), (&json!(2), &json!(1)));
    let (_, stderr) = expect(&cfg, &["dlq", "replay", &d1.to_string()], 1);
    assert!(
        stderr.contains(&format!("no dead delivery {d1}")),
        "{stderr}"
    );
    let (_, stderr) = expect(&cfg, &["dlq", "purge", "999999"], 1);
    assert!(stderr.contains("no dead delivery 999999"), "{stderr}");

    // dlq purge --all --older-than: these died moments ago, so a day's filter keeps them.
    let (stdout, _) = expect(&cfg, &["dlq", "purge", "--all", "--older-than", "1d"], 0);
    assert_eq!(stdout, "purged 0 dead deliveries\n");
    // dlq purge --all [--route]: the rest goes.
    let (stdout, _) = expect(&cfg, &["dlq", "purge", "--all", "--route", "b"], 0);
    assert_eq!(stdout, "purged 1 dead delivery\n");
    let (stdout, _) = expect(&cfg, &["dlq", "purge", "--all", "--json"], 0);
    assert_eq!(
        serde_json::from_str::<Value>(&stdout).unwrap(),
        json!({ "purged": 1 })
    );
    let (stdout, _) = expect(&cfg, &["dlq", "list"], 0);
    assert_eq!(stdout, "no dead deliveries\n");
    let v = stats_json(&cfg);
    let a = route_stats(&v, "a");
    assert_eq!(
        (&a["pending"], &a["dead"], &a["done"]),
        (&json!(2), &json!(0), &json!(1))
    );
    assert_eq!(
        v["routes"].as_array().unwrap().len(),
        1,
        "b has no rows left: {v}"
    );

    // The data really changed in the file.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = Store::open(&settings(&db)).unwrap();
        assert_eq!(store.get(d1).await.unwrap().unwrap().state, State::Pending);
        assert!(store.get(d2).await.unwrap().is_none());
        assert!(store.get(d3).await.unwrap().is_none());
    });
    drop(runtime);

    // Bad arguments: exit 2, and nothing is touched.
    for args in [
        &["dlq", "replay"][..],
        &["dlq", "purge"][..],
        &["dlq", "purge", "3", "--all"][..],
        &["dlq", "replay", "3", "--route", "a"][..],
        &["dlq", "purge", "3", "--older-than", "1d"][..],
        &["dlq", "purge", "--all", "--older-than", "0s"][..],
        &["dlq", "show", "abc"][..],
        &["dlq", "show"][..],
        &["dlq", "list", "--limit", "0"][..],
        &["queue", "frobnicate"][..],
    ] {
        expect(&cfg, args, 2);
    }

    // A closed admin port (the gateway is stopped): the file, said so.
    let closed = free_port();
    let cfg2 = dir.write("closed.yaml", &config(&db, Some((closed, TOKEN))));
    let (stdout, stderr) = expect(&cfg2, &["queue", "stats"], 0);
    assert!(
        stderr.contains(&format!(
            "gateway not reachable at {closed}; working on the store file {}",
            db.display()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains(TOKEN) && !stdout.contains(TOKEN));
    assert_eq!(row(&stdout, "a")[1..4], ["2", "0", "1"], "{stdout}");
}

#[test]
fn config_problems_exit_64_and_a_missing_store_file_is_not_created() {
    let dir = TempDir::new("queue-cli-config");
    let no_store = dir.write(
        "nostore.yaml",
        "routes:\n  - name: a\n    path: /a\n    verify: { none: true }\n    upstream: http://127.0.0.1:9/a\n",
    );
    let (_, stderr) = expect(&no_store, &["queue", "stats"], 64);
    assert!(stderr.contains("the config has no `store`"), "{stderr}");
    let (_, stderr) = expect(&no_store, &["dlq", "purge", "--all"], 64);
    assert!(stderr.contains("the config has no `store`"), "{stderr}");

    let invalid = dir.write(
        "invalid.yaml",
        "store: { path: \"\" }\nroutes: []\nsurprise: 1\n",
    );
    let (_, stderr) = expect(&invalid, &["dlq", "list"], 64);
    assert!(stderr.contains("invalid config"), "{stderr}");

    let db = dir.0.join("never").join("q.db");
    let cfg = dir.write("missing.yaml", &config(&db, None));
    let (_, stderr) = expect(&cfg, &["queue", "stats"], 1);
    assert!(stderr.contains("no store file at"), "{stderr}");
    assert!(!db.exists() && !db.parent().unwrap().exists());
}

/// The CLI binary, run without blocking the runtime that serves the admin API.
async fn run_async(config: &Path, args: &[&str], env_token: Option<&str>) -> Output {
    let config = config.to_path_buf();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let env_token = env_token.map(String::from);
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        run(&config, &args, env_token.as_deref())
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_requires_the_token_and_the_cli_goes_through_it() {
    let dir = TempDir::new("queue-cli-api");
    let store = Store::open(&settings(&dir.0.join("q.db"))).unwrap();
    let d1 = enqueue(&store, "a", "one", dead()).await;
    let d2 = enqueue(&store, "a", "two", dead()).await;
    let d3 = enqueue(&store, "b", "three", dead()).await;
    enqueue(&store, "a", "pending", None).await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(admin::serve_with(
        listener,
        Arc::new(Health::default()),
        Some(QueueAdmin {
            store: store.clone(),
            token: Some(TOKEN.into()),
        }),
    ));
    let bearer = format!("Bearer {TOKEN}");
    let auth = [("authorization", bearer.as_str())];

    // Without the token, or with a wrong one: 401 and a Bearer challenge.
    for headers in [
        &[][..],
        &[("authorization", "Bearer a-long-admin-token-12")][..],
        &[("authorization", "Bearer not-it")][..],
    ] {
        let r = send(addr, "GET", "/queue/stats", headers, "").await;
        assert_eq!(r.status, 401, "{headers:?}");
        assert_eq!(r.headers.get("www-authenticate").unwrap(), "Bearer");
        assert!(!r.text().contains(TOKEN));
    }
    let r = post(addr, "/dlq/purge", &[], r#"{"all": true}"#).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        store.list_dead(None, 10).await.unwrap().len(),
        3,
        "nothing purged"
    );
    // The probes stay open.
    let r = send(addr, "GET", "/healthz", &[], "").await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "ok\n"));

    // With it: the stats.
    let r = send(addr, "GET", "/queue/stats", &auth, "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers.get("content-type").unwrap(), "application/json");
    let api_stats: Value = serde_json::from_slice(&r.body).unwrap();
    let a = route_stats(&api_stats, "a");
    assert_eq!(
        (&a["pending"], &a["dead"], &a["done"]),
        (&json!(1), &json!(2), &json!(0))
    );
    assert_eq!(route_stats(&api_stats, "b")["dead"], 1);

    // Replay and purge over POST; bad bodies are refused.
    let r = post(addr, "/dlq/replay", &auth, format!("{{\"id\": {d1}}}")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        serde_json::from_slice::<Value>(&r.body).unwrap(),
        json!({ "replayed": 1 })
    );
    assert_eq!(store.get(d1).await.unwrap().unwrap().state, State::Pending);
    let r = post(addr, "/dlq/purge", &auth, r#"{"all": true, "route": "b"}"#).await;
    assert_eq!(
        serde_json::from_slice::<Value>(&r.body).unwrap(),
        json!({ "purged": 1 })
    );
    assert!(store.get(d3).await.unwrap().is_none());
    let r = post(addr, "/dlq/purge", &auth, "{\"all\": tru").await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("error"), "{}", r.text());
    let r = post(addr, "/dlq/purge", &auth, "{}").await;
    assert_eq!(r.status, 400);
    let r = post(addr, "/dlq/purge", &auth, vec![b' '; 70 * 1024]).await;
    assert_eq!(r.status, 413);
    let r = send(addr, "GET", &format!("/dlq/{d2}"), &auth, "").await;
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!((&v["id"], &v["body"]), (&json!(d2), &json!("two")));
    let r = send(addr, "GET", "/dlq/424242", &auth, "").await;
    assert_eq!(r.status, 404);
    assert_eq!(
        serde_json::from_slice::<Value>(&r.body).unwrap(),
        json!({ "error": "no dead delivery 424242" })
    );

    // The CLI through the API. The config's store path does not exist, so the file
    // fallback would fail: success means the API answered.
    let elsewhere = dir.0.join("not-here.db");
    let cfg = dir.write(
        "api.yaml",
        &config(&elsewhere, Some((addr, "the-config-token-is-wrong"))),
    );
    let r = send(addr, "GET", "/queue/stats", &auth, "").await;
    let api_stats: Value = serde_json::from_slice(&r.body).unwrap();
    let out = run_async(&cfg, &["queue", "stats", "--json", "--token", TOKEN], None).await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(!stderr.contains("working on the store file"), "{stderr}");
    let cli_stats: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(cli_stats, api_stats);
    assert_eq!(route_stats(&cli_stats, "a")["pending"], 2);

    // The config's (wrong) token: refused, exit 1, and no token is printed.
    let out = run_async(&cfg, &["queue", "stats"], None).await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("refused the token"), "{stderr}");
    for t in [TOKEN, "the-config-token-is-wrong"] {
        assert!(
            !stdout.contains(t) && !stderr.contains(t),
            "{stdout}{stderr}"
        );
    }
    assert!(!elsewhere.exists());

    // The environment's token wins over the config's.
    let out = run_async(&cfg, &["dlq", "list"], Some(TOKEN)).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert_eq!(row(&stdout, &d2.to_string())[1], "a");
    assert_eq!(stdout.lines().count(), 2, "{stdout}");

    let out = run_async(
        &cfg,
        &["dlq", "show", &d2.to_string(), "--token", TOKEN],
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out.stdout).ends_with("\ntwo\n"),
        "{}",
        text(&out.stdout)
    );
    let out = run_async(&cfg, &["dlq", "show", "424242", "--token", TOKEN], None).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no dead delivery 424242"));

    let out = run_async(&cfg, &["dlq", "purge", "--all", "--token", TOKEN], None).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "purged 1 dead delivery\n");
    assert!(store.list_dead(None, 10).await.unwrap().is_empty());
    assert!(store.get(d2).await.unwrap().is_none());

    server.abort();
    drop(store);
}

#[tokio::test]
async fn without_a_store_the_queue_endpoints_are_404() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(admin::serve(listener, Arc::new(Health::default())));
    let r = send(addr, "GET", "/queue/stats", &[], "").await;
    assert_eq!(r.status, 404);
    assert_eq!(
        serde_json::from_slice::<Value>(&r.body).unwrap(),
        json!({ "error": "no store configured" })
    );
    let r = send(addr, "GET", "/healthz", &[], "").await;
    assert_eq!(r.status, 200);
    server.abort();
}
