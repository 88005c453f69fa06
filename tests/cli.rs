//! The binary as an operator runs it: `check` exit codes and messages, `serve` refusing a
//! bad config, and a whole `serve` process taking a signed delivery and stopping cleanly
//! on SIGTERM.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_hookgate");

fn write_config(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("hookgate-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::File::create(&path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    path
}

/// The child's stdout, a line at a time, read on a thread of its own.
fn stdout_lines(child: &mut Child) -> Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Sends `kill -SIG pid` and checks that it was delivered.
fn signal(pid: u32, sig: &str) {
    assert!(Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .status()
        .unwrap()
        .success());
}

/// SIGTERM, then the exit code once the process has stopped.
async fn terminate(mut child: Child) -> Option<i32> {
    signal(child.id(), "TERM");
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    status.code()
}

/// The status of an Expel-signed POST of `body` to /hooks/expel, signed with `secret`.
async fn post_expel(addr: std::net::SocketAddr, secret: &str, body: &[u8]) -> u16 {
    post(
        addr,
        "/hooks/expel",
        &[("expel-signature-256", &expel_sig(secret, body))],
        body.to_vec(),
    )
    .await
    .status
    .as_u16()
}

const BROKEN: &str = r#"
listen: 127.0.0.1:0
routes:
  - name: ok
    path: /ok
    verify: { none: true }
    upstream: http://127.0.0.1:9/ok
  - name: expel
    path: /hooks/expel
    verify:
      preset: expel
      secrets: ["${HOOKGATE_TEST_UNSET_SECRET}"]
    upstream: http://127.0.0.1:9/expel
    surprise: 1
"#;

#[test]
fn check_accepts_a_valid_config_and_masks_secrets() {
    let path = write_config(
        "valid.yaml",
        "routes:\n  - name: expel\n    path: /hooks/expel\n    verify: { preset: expel, secrets: [\"${HOOKGATE_TEST_SECRET}\", \"inline-s3cret\"] }\n    upstream: http://127.0.0.1:9000/expel\n",
    );
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&path)
        .env("HOOKGATE_TEST_SECRET", "env-s3cret-value")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("expel"), "{stdout}");
    assert!(stdout.contains("/hooks/expel"));
    assert!(stdout.contains("env:HOOKGATE_TEST_SECRET=****"), "{stdout}");
    assert!(stdout.contains("inline=****"), "{stdout}");
    // The connection-hygiene defaults, including the ones that are off.
    assert!(
        stdout.contains(
            "limits body_min_rate 1KiB/s after 5s  max_connection_age off  h2 keepalive 30s (timeout 10s)  linger 30s (quiet 5s)
"
        ),
        "{stdout}"
    );
    assert!(
        !stdout.contains("env-s3cret-value") && !stdout.contains("inline-s3cret"),
        "{stdout}"
    );
}

#[test]
fn check_lists_every_error_and_exits_64() {
    let path = write_config("broken.yaml", BROKEN);
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("invalid config (2 errors)"), "{stderr}");
    assert!(stderr.contains("routes[1].verify.secrets[0]: environment variable HOOKGATE_TEST_UNSET_SECRET is not set"), "{stderr}");
    assert!(
        stderr.contains("routes[1].surprise: unknown key"),
        "{stderr}"
    );
}

#[test]
fn check_on_a_missing_file_exits_64() {
    let out = Command::new(BIN)
        .args(["check", "--config", "/nonexistent/hookgate.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/hookgate.yaml"));
}

#[test]
fn the_shipped_configs_pass_check() {
    for file in ["config/hookgate.yaml", "config/example.yaml"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let out = Command::new(BIN)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["check", "--config"])
            .arg(&path)
            .env_remove("EXPEL_SECRET")
            .env("EXPEL_SECRET_PREVIOUS", "previous")
            .env("GITHUB_SECRET", "gh")
            .env("PENTEST_SECRET", "pt")
            .env("PLEXTRAC_SECRET", "px")
            .env("STAMPED_SECRET", "st")
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn serve_refuses_an_invalid_config() {
    let path = write_config("broken-serve.yaml", BROKEN);
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("environment variable HOOKGATE_TEST_UNSET_SECRET is not set"));
}

#[test]
fn bad_arguments_exit_2() {
    let out = Command::new(BIN)
        .args(["serve", "--no-such-flag"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_takes_a_delivery_and_stops_on_sigterm() {
    let up = Upstream::start().await;
    let path = write_config(
        "serve.yaml",
        &format!(
            "listen: 127.0.0.1:0\nworkers: 1\nroutes:\n  - name: expel\n    path: /hooks/expel\n    verify: {{ preset: expel, secrets: [\"${{HOOKGATE_TEST_SECRET}}\"] }}\n    upstream: http://{}/expel\n",
            up.addr
        ),
    );
    let mut child = Command::new(BIN)
        .args(["--log-format", "json", "serve", "--config"])
        .arg(&path)
        .env("HOOKGATE_TEST_SECRET", "process-secret")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let rx = stdout_lines(&mut child);
    let first = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("a startup line");
    let listen = first
        .split("\"listen\":\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| panic!("no listen address in {first}"));
    let addr: std::net::SocketAddr = listen.parse().unwrap();

    let body = br#"{"guid":"p-1"}"#;
    assert_eq!(post_expel(addr, "process-secret", body).await, 200);
    assert_eq!(post_expel(addr, "forged", body).await, 406);
    assert_eq!(up.received().len(), 1);

    // One JSON access line per request, with no secret and no signature in it.
    let mut access = Vec::new();
    while access.len() < 2 {
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("access lines");
        if line.contains("\"target\":\"access\"") {
            access.push(line);
        }
    }
    assert!(
        access[0].contains("\"status\":200") && access[0].contains("\"route\":\"expel\""),
        "{}",
        access[0]
    );
    assert!(
        access[1].contains("\"reason\":\"signature_mismatch\""),
        "{}",
        access[1]
    );
    let sig = expel_sig("process-secret", body);
    for line in &access {
        assert!(
            !line.contains("process-secret") && !line.contains(sig.trim_start_matches("sha256=")),
            "{line}"
        );
        assert!(
            line.contains("\"request_id\":")
                && line.contains("\"latency_ms\":")
                && line.contains("\"client_ip\":\"127.0.0.1\""),
            "{line}"
        );
    }

    // SIGHUP reloads the config (and does not stop the process).
    signal(child.id(), "HUP");
    let hup = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("a SIGHUP line");
    assert!(hup.contains("SIGHUP received"), "{hup}");
    let reloaded = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("a reload line");
    assert!(
        reloaded.contains("config reloaded") && reloaded.contains("\"trigger\":\"SIGHUP\""),
        "{reloaded}"
    );
    assert_eq!(post_expel(addr, "process-secret", body).await, 200);

    assert_eq!(terminate(child).await, Some(0));
}

/// With a level that lets no line through, the log writer's thread never starts: one
/// worker is then the process's only thread (so glibc skips its cancellation bookkeeping
/// around every send and recv). The first line to write starts it, and the line arrives.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_gateway_runs_one_thread_until_a_line_is_logged() {
    let up = Upstream::start().await;
    // A free port for the gateway: at `warn` it prints no startup line to read one from.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = |workers: u32| {
        format!(
            "listen: 127.0.0.1:{port}\nworkers: {workers}\nroutes:\n  - name: expel\n    path: /hooks/expel\n    verify: {{ preset: expel, secrets: [\"quiet-secret\"] }}\n    upstream: http://{}/expel\n",
            up.addr
        )
    };
    let path = write_config("quiet.yaml", &config(1));
    let mut child = Command::new(BIN)
        .args(["--log-level", "warn", "serve", "--config"])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let pid = child.id();
    let threads = || {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .count()
    };
    let rx = stdout_lines(&mut child);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the gateway never listened"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let body = br#"{"guid":"q-1"}"#;
    assert_eq!(post_expel(addr, "quiet-secret", body).await, 200);
    assert_eq!(post_expel(addr, "forged", body).await, 406);
    assert_eq!(
        threads(),
        1,
        "a gateway with nothing to log runs one thread"
    );
    assert!(rx.try_recv().is_err(), "nothing is logged at warn");

    // A reload that changes `workers` warns that it takes a restart: the first line.
    std::fs::write(&path, config(2)).unwrap();
    signal(pid, "HUP");
    let line = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the restart warning");
    assert!(
        line.contains("takes a restart") && line.contains("workers"),
        "{line}"
    );
    assert!(
        !line.contains('\x1b'),
        "no colour codes into a pipe: {line:?}"
    );
    assert_eq!(
        threads(),
        2,
        "the writer's thread started with the first line"
    );

    assert_eq!(terminate(child).await, Some(0));
}

#[tokio::test]
async fn sign_produces_deliveries_the_gateway_accepts() {
    let up = Upstream::start().await;
    let yaml = format!(
        r#"
listen: 127.0.0.1:0
routes:
  - name: expel
    path: /hooks/expel
    verify: {{ preset: expel, secrets: ["expel-secret"] }}
    upstream: http://{up}/expel
  - name: appsec
    path: /hooks/appsec
    verify: {{ preset: standard-webhooks, secrets: ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"] }}
    upstream: http://{up}/appsec
  - name: stripe
    path: /hooks/stripe
    verify: {{ preset: stripe, secrets: ["whsec_stripe"] }}
    upstream: http://{up}/stripe
  - name: gitlab
    path: /hooks/gitlab
    verify: {{ preset: gitlab, secrets: ["gl-token"] }}
    upstream: http://{up}/gitlab
"#,
        up = up.addr
    );
    let path = write_config("sign.yaml", &yaml);
    let body_path = write_config("body.json", r#"{"event":"ping","id":42}"#);
    let gw = Gateway::start(&yaml, None).await;
    for route in ["expel", "appsec", "stripe", "gitlab"] {
        let out = Command::new(BIN)
            .args(["sign", "--config"])
            .arg(&path)
            .args(["--route", route, "--body"])
            .arg(&body_path)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let headers: Vec<(String, String)> = text
            .lines()
            .map(|l| {
                let (k, v) = l.split_once(": ").unwrap();
                (k.to_string(), v.to_string())
            })
            .collect();
        let h: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let r = post(
            gw.addr,
            &format!("/hooks/{route}"),
            &h,
            r#"{"event":"ping","id":42}"#,
        )
        .await;
        assert_eq!(r.status, 200, "{route}: {text}");
    }
    assert_eq!(up.received().len(), 4);

    let curl = Command::new(BIN)
        .args(["sign", "--config"])
        .arg(&path)
        .args([
            "--route",
            "expel",
            "--print",
            "curl",
            "--url",
            "http://127.0.0.1:8080",
            "--body",
        ])
        .arg(&body_path)
        .output()
        .unwrap();
    let text = String::from_utf8(curl.stdout).unwrap();
    assert!(
        text.starts_with("curl -sS -i -X POST 'http://127.0.0.1:8080/hooks/expel'"),
        "{text}"
    );
    assert!(
        text.contains("-H 'Expel-Signature-256: sha256=")
            || text.contains("-H 'expel-signature-256: sha256="),
        "{text}"
    );
    assert!(text.contains("--data-binary '@"), "{text}");

    let unknown = Command::new(BIN)
        .args(["sign", "--config"])
        .arg(&path)
        .args(["--route", "nope", "--body"])
        .arg(&body_path)
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&unknown.stderr)
        .contains("no route named \"nope\" (routes: expel, appsec, stripe, gitlab)"));
    let missing = Command::new(BIN)
        .args(["sign", "--config"])
        .arg(&path)
        .args(["--route", "expel", "--body", "/nonexistent/body.json"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(66));
}
