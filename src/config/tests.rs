//! Config validation tests: the contract file, every error with its path, defaults,
//! secrets never shown.

use super::*;
use crate::verify::hmac::{Format, SecretEncoding, TimeUnit, TimestampSource, TimestampSpec};
use crate::verify::Scheme;

fn env(name: &str) -> Option<String> {
    match name {
        "EXPEL_SECRET" => Some("expel-s3cret-value".into()),
        "PENTEST_SECRET" => Some("pentest-s3cret-value".into()),
        "STRIPE_SECRET" => Some("whsec_stripe".into()),
        "SQUARE_KEY" => Some("sq".into()),
        "META_APP_SECRET" => Some("meta".into()),
        "META_VERIFY_TOKEN" => Some("tok".into()),
        _ => None,
    }
}

fn errors(yaml: &str) -> Vec<String> {
    match load_str(yaml, &env) {
        Ok(_) => vec![],
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

fn ok(yaml: &str) -> Config {
    load_str(yaml, &env).unwrap_or_else(|e| panic!("config should load:\n{e}"))
}

const MINIMAL: &str = r#"
routes:
  - name: expel
    path: /hooks/expel
    verify: { preset: expel, secrets: ["${EXPEL_SECRET}"] }
    upstream: http://127.0.0.1:9000/expel
"#;

#[test]
fn the_whole_contract_file_loads_unchanged_with_its_meaning() {
    let text = include_str!("../../tests/fixtures/config-contract.yaml");
    let c = load_str(text, &env).unwrap_or_else(|e| panic!("the contract must load:\n{e}"));
    let tls = c.tls.as_ref().expect("tls");
    assert!(tls.files.contains(&"tests/fixtures/tls/server.crt".into()));
    let store = c.store.as_ref().expect("store");
    assert_eq!(store.path, std::path::Path::new("data/hookgate.db"));
    assert_eq!(
        store.synchronous,
        Synchronous::Full,
        "power-loss safe by default"
    );
    let appsec = &c.routes[1];
    assert_eq!(appsec.name, "appsec");
    assert_eq!(appsec.delivery, Delivery::Queued);
    assert_eq!(appsec.retry.max_attempts, 8);
    assert_eq!(appsec.retry.backoff, Duration::from_secs(1));
    assert_eq!(appsec.retry.max_backoff, Duration::from_secs(600));
    assert_eq!(
        appsec.dedup.as_ref().unwrap().window,
        Duration::from_secs(24 * 3600)
    );
    assert_eq!(appsec.concurrency, 1);
    assert!(c
        .routes
        .iter()
        .filter(|r| r.name != "appsec")
        .all(|r| r.delivery == Delivery::Sync));
}

#[test]
fn the_supported_part_of_the_contract_loads_with_its_meaning() {
    let text = include_str!("../../tests/fixtures/config-contract.yaml");
    let mut v = from_yaml(text).unwrap();
    let m = v.as_mapping_mut().unwrap();
    m.remove("tls");
    m.remove("store");
    let routes = m.get_mut("routes").unwrap().as_sequence_mut().unwrap();
    routes.retain(|r| matches!(r["name"].as_str(), Some("expel" | "pentest" | "scorecard")));
    let c = validate(&v, &env).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.listen, "127.0.0.1:8443".parse().unwrap());
    assert_eq!(c.admin_listen, Some("127.0.0.1:9901".parse().unwrap()));
    assert!(c.trusted_proxies.contains("127.0.0.5".parse().unwrap()));
    let expel = &c.routes[0];
    assert_eq!(expel.path, "/hooks/expel");
    assert_eq!(expel.verifier.name, "expel");
    assert_eq!(expel.max_body, 1 << 20);
    assert_eq!(expel.reject_status, 406);
    assert_eq!(expel.upstream_timeout, Duration::from_secs(4));
    assert_eq!(
        expel.rate_limit,
        Some(RateSpec {
            per_second: 50.0,
            burst: 100,
            key: RateKey::ClientIp
        })
    );
    assert!(expel
        .allow_ips
        .as_ref()
        .unwrap()
        .contains("203.0.113.77".parse().unwrap()));
    assert_eq!(expel.secret_sources, vec!["env:EXPEL_SECRET"]);
    let pentest = &c.routes[1];
    assert_eq!(
        pentest.rate_limit,
        Some(RateSpec {
            per_second: 200.0,
            burst: 400,
            key: RateKey::Route
        })
    );
    match &pentest.verifier.scheme {
        Scheme::Hmac(h) => {
            assert_eq!(h.spec.header.as_str(), "x-webhook-signature");
            assert_eq!(h.spec.prefix, "sha256=");
        }
        other => panic!("pentest verifies with hmac: {other:?}"),
    }
    assert_eq!(pentest.verifier.name, "hmac-sha256");
    assert!(matches!(c.routes[2].verifier.scheme, Scheme::None));
    let dedup = c.routes[2].dedup.as_ref().unwrap();
    assert_eq!(dedup.window, Duration::from_secs(36 * 3600));
    assert_eq!(dedup.id_from, IdFrom::Json(vec!["execution_id".into()]));
}

#[test]
fn every_error_is_listed_with_its_path() {
    let errs = errors(
        r#"
listen: nowhere
workers: 0
trusted_proxies: [10.0.0.1/8, bogus]
defaults: { max_body: 2XB, reject_status: 503, upstream_timeout: 5, colour: blue }
routes:
  - name: ok
    path: /a
    verify: { preset: expel, secrets: ["${EXPEL_SECRET}"] }
    upstream: http://127.0.0.1:9000/a
  - name: bad name
    path: b
    verify: { preset: expel, secrets: ["${EXPEL_SECRET}", "${MISSING_SECRET}"] }
    upstream: ftp://x
    rate_limit: { per_second: 0, key: everyone }
    allow_ips: []
    verfy: typo
  - name: ok
    path: /a
    verify: { preset: nope, secrets: [x] }
    upstream: http://127.0.0.1:9000/a
"#,
    );
    let want = [
        "listen: \"nowhere\" is not an address with a port",
        "workers: must be between 1 and 1024",
        "trusted_proxies[0]: \"10.0.0.1/8\" has host bits set; did you mean 10.0.0.0/8?",
        "trusted_proxies[1]: \"bogus\" is not an IP address or CIDR network",
        "defaults.max_body: size \"2XB\" has unknown unit",
        "defaults.reject_status: must be a 4xx status",
        "defaults.upstream_timeout: duration \"5\" needs a unit",
        "defaults.colour: unknown key",
        "routes[1].name: \"bad name\" is not a valid route name",
        "routes[1].path: \"b\" must start with '/'",
        "routes[1].verify.secrets[1]: environment variable MISSING_SECRET is not set",
        "routes[1].upstream: \"ftp://x\": the scheme must be http",
        "routes[1].rate_limit.per_second: must be more than 0",
        "routes[1].rate_limit.key: unknown key \"everyone\"",
        "routes[1].allow_ips: an empty list would refuse every request",
        "routes[1].verfy: unknown key",
        "routes[2].verify.preset: unknown preset \"nope\"",
    ];
    for w in want {
        assert!(
            errs.iter().any(|e| e.starts_with(w)),
            "missing {w:?} in {errs:#?}"
        );
    }
    assert_eq!(errs.len(), want.len(), "{errs:#?}");
}

#[test]
fn duplicate_names_and_paths_are_refused() {
    let errs = errors(
        r#"
routes:
  - { name: a, path: /x, verify: { none: true }, upstream: "http://127.0.0.1:1/" }
  - { name: a, path: /x, verify: { none: true }, upstream: "http://127.0.0.1:1/" }
  - { name: c, path: /x, host: hooks.example.com, verify: { none: true }, upstream: "http://127.0.0.1:1/" }
"#,
    );
    assert_eq!(
        errs,
        vec![
            "routes[1].name: duplicate route name \"a\" (also routes[0])",
            "routes[1].path: \"/x\" is already served by routes[0] (a)",
        ]
    );
}

#[test]
fn the_env_error_reads_as_documented() {
    let errs = errors(
        r#"
routes:
  - { name: a, path: /a, verify: { none: true }, upstream: "http://127.0.0.1:1/" }
  - name: b
    path: /b
    verify: { preset: expel, secrets: ["${NOT_SET_ANYWHERE}"] }
    upstream: http://127.0.0.1:1/
"#,
    );
    assert_eq!(
        errs,
        vec!["routes[1].verify.secrets[0]: environment variable NOT_SET_ANYWHERE is not set"]
    );
}

#[test]
fn defaults_apply_and_routes_override() {
    let c = ok(r#"
defaults:
  max_body: 512KiB
  reject_status: 401
  upstream_timeout: 2s
  rate_limit: { per_second: 10 }
routes:
  - { name: a, path: /a, verify: { none: true }, upstream: "http://127.0.0.1:1/" }
  - name: b
    path: /b
    verify: { none: true }
    upstream: http://127.0.0.1:1/
    max_body: 2048
    reject_status: 400
    upstream_timeout: 500ms
    rate_limit: off
"#);
    let (a, b) = (&c.routes[0], &c.routes[1]);
    assert_eq!(
        (a.max_body, a.reject_status.as_u16(), a.upstream_timeout),
        (512 * 1024, 401, Duration::from_secs(2))
    );
    assert_eq!(
        a.rate_limit,
        Some(RateSpec {
            per_second: 10.0,
            burst: 10,
            key: RateKey::Route
        })
    );
    assert_eq!(
        (b.max_body, b.reject_status.as_u16(), b.upstream_timeout),
        (2048, 400, Duration::from_millis(500))
    );
    assert_eq!(b.rate_limit, None);
    assert_eq!(c.listen, DEFAULT_LISTEN.parse().unwrap());
    assert_eq!(c.admin_listen, None);
    assert_eq!(c.workers, default_workers());
}

#[test]
fn verify_forms_are_checked() {
    let route = |verify: &str| {
        format!("routes:\n  - {{ name: a, path: /a, upstream: \"http://127.0.0.1:1/\", verify: {verify} }}\n")
    };
    let cases: &[(&str, &str)] = &[
        ("{}", "routes[0].verify: choose how to verify"),
        (
            "{ preset: expel }",
            "routes[0].verify: needs at least one secret",
        ),
        (
            "{ none: true, secrets: [x] }",
            "routes[0].verify.secrets: a route with `none` verifies nothing",
        ),
        (
            "{ none: false }",
            "routes[0].verify.none: `none: false` has no meaning",
        ),
        (
            "{ preset: mailchimp, secrets: [x] }",
            "routes[0].verify.preset: unknown preset \"mailchimp\"",
        ),
        (
            "{ hmac: { algorithm: md5, header: X-Sig }, secrets: [x] }",
            "routes[0].verify.hmac.algorithm: unknown algorithm \"md5\"",
        ),
        (
            "{ hmac: { encoding: hex }, secrets: [x] }",
            "routes[0].verify.hmac.header: is required",
        ),
        (
            "{ hmac: { header: \"bad header\" }, secrets: [x] }",
            "routes[0].verify.hmac.header: \"bad header\" is not a valid header name",
        ),
        (
            "{ hmac: { header: X-Sig, signed: \"{timestamp}\" }, secrets: [x] }",
            "routes[0].verify.hmac.signed: template \"{timestamp}\" does not sign the body",
        ),
        (
            "{ hmac: { header: X-Sig, signed: \"{timestamp}.{body}\" }, secrets: [x] }",
            "routes[0].verify.hmac.signed: uses {timestamp}: set hmac.timestamp_header",
        ),
        (
            "{ hmac: { header: X-Sig, timestamp_header: X-Ts }, secrets: [x] }",
            "routes[0].verify.hmac.timestamp_header: the template does not sign {timestamp}",
        ),
        (
            "{ preset: expel, tolerance: 5m, secrets: [x] }",
            "routes[0].verify.tolerance: this scheme carries no timestamp",
        ),
        (
            "{ preset: expel, secrets: [\"\"] }",
            "routes[0].verify.secrets[0]: is empty",
        ),
        (
            "{ preset: expel, secret_files: [/nonexistent/hookgate-secret] }",
            "routes[0].verify.secret_files[0]: cannot read /nonexistent/hookgate-secret",
        ),
    ];
    for (verify, want) in cases {
        let errs = errors(&route(verify));
        assert!(
            errs.iter().any(|e| e.starts_with(want)),
            "{verify}: want {want:?}, got {errs:#?}"
        );
    }
}

#[test]
fn presets_can_be_overridden_field_by_field() {
    let c = ok(r#"
routes:
  - name: gh
    path: /gh
    upstream: http://127.0.0.1:1/
    verify:
      preset: github
      hmac: { header: X-Hub-Signature, algorithm: sha1, prefix: "sha1=" }
      secrets: [x]
"#);
    let Scheme::Hmac(h) = &c.routes[0].verifier.scheme else {
        panic!()
    };
    assert_eq!(h.spec.header.as_str(), "x-hub-signature");
    assert_eq!(h.spec.algorithm.name(), "sha1");
    assert_eq!(h.spec.prefix, "sha1=");
    assert_eq!(h.spec.encoding.name(), "hex");
    assert_eq!(c.routes[0].verifier.name, "github+custom");
}

#[test]
fn secret_files_are_read_and_their_newline_dropped() {
    let dir = std::env::temp_dir().join(format!("hookgate-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("s");
    std::fs::write(&f, "file-secret\r\n").unwrap();
    let empty = dir.join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let yaml = format!(
        "routes:\n  - {{ name: a, path: /a, upstream: \"http://127.0.0.1:1/\", verify: {{ preset: expel, secret_files: [\"{}\"] }} }}\n",
        f.display()
    );
    let c = ok(&yaml);
    let Scheme::Hmac(h) = &c.routes[0].verifier.scheme else {
        panic!()
    };
    // The secret is the file's content without its line ending: check by signing.
    let mut expected = HmacScheme::new(h.spec.clone(), &[b"file-secret".to_vec()]);
    assert_eq!(
        h.sign_value(b"x", b"", b""),
        expected.sign_value(b"x", b"", b"")
    );
    expected = HmacScheme::new(h.spec.clone(), &[b"file-secret\r\n".to_vec()]);
    assert_ne!(
        h.sign_value(b"x", b"", b""),
        expected.sign_value(b"x", b"", b"")
    );
    assert_eq!(
        c.routes[0].secret_sources,
        vec![format!("file:{}", f.display())]
    );
    let errs = errors(&yaml.replace(&f.display().to_string(), &empty.display().to_string()));
    assert!(errs[0].ends_with("is empty"), "{errs:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn secrets_never_appear_in_errors_or_the_route_table() {
    let c = ok(MINIMAL);
    let table = crate::cli::render(&c, "test");
    assert!(!table.contains("expel-s3cret-value"), "{table}");
    assert!(table.contains("env:EXPEL_SECRET=****"), "{table}");
    assert!(!format!("{c:?}").contains("expel-s3cret-value"));
    // An invalid value next to a secret: the message shows neither.
    let errs = errors(&MINIMAL.replace(
        "upstream: http://127.0.0.1:9000/expel",
        "upstream: \"${EXPEL_SECRET}\"",
    ));
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with("routes[0].upstream: \"${EXPEL_SECRET}\""),
        "{errs:?}"
    );
    assert!(!errs[0].contains("expel-s3cret-value"), "{errs:?}");
}

#[test]
fn not_yet_supported_keys_are_errors_not_ignored() {
    let errs = errors(&format!("cluster: {{ redis: x }}\n{MINIMAL}"));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("cluster: ") && errs[0].contains("not supported yet"),
        "{errs:?}"
    );
}

#[test]
fn queued_routes_need_a_store_and_retry_needs_a_queued_route() {
    let queued = MINIMAL.replace("    upstream:", "    delivery: queued\n    upstream:");
    let errs = errors(&queued);
    assert!(
        errs[0].starts_with("routes[0].delivery: queued needs a top-level `store`"),
        "{errs:?}"
    );
    let with_store = format!("store: {{ path: /tmp/x.db }}\n{queued}");
    let c = ok(&with_store);
    assert_eq!(c.routes[0].delivery, Delivery::Queued);
    assert_eq!(c.routes[0].retry, RetrySpec::default());
    let store = c.store.unwrap();
    assert_eq!(
        (store.max_deliveries, store.max_bytes),
        (1_000_000, 1 << 30)
    );
    for (yaml, want) in [
        (
            MINIMAL.replace(
                "    upstream:",
                "    retry: { max_attempts: 3 }\n    upstream:",
            ),
            "routes[0].retry: applies to routes with `delivery: queued` only",
        ),
        (
            MINIMAL.replace("    upstream:", "    concurrency: 2\n    upstream:"),
            "routes[0].concurrency: applies to routes",
        ),
        (
            MINIMAL.replace("    upstream:", "    delivery: later\n    upstream:"),
            "routes[0].delivery: unknown delivery mode",
        ),
        (
            with_store.replace(
                "    upstream:",
                "    retry: { max_attempts: 0 }\n    upstream:",
            ),
            "routes[0].retry.max_attempts: must be between 1 and 1000",
        ),
        (
            with_store.replace(
                "    upstream:",
                "    retry: { backoff: 1m, max_backoff: 10s }\n    upstream:",
            ),
            "routes[0].retry.backoff: must not exceed max_backoff",
        ),
        (
            with_store.replace(
                "    upstream:",
                "    retry: { retry_statuses: [503] }\n    upstream:",
            ),
            "routes[0].retry.retry_statuses[0]: must be a 4xx status",
        ),
        (
            with_store.replace("    upstream:", "    concurrency: 0\n    upstream:"),
            "routes[0].concurrency: must be between 1 and 256",
        ),
        (
            with_store.replace("/tmp/x.db }", "/tmp/x.db, synchronous: off }"),
            "store.synchronous: \"off\": use full",
        ),
        (
            with_store.replace("/tmp/x.db }", "/tmp/x.db, max_deliveries: 0 }"),
            "store.max_deliveries: must be more than zero",
        ),
        (
            "store: {}\n".to_string() + MINIMAL,
            "store.path: is required",
        ),
    ] {
        let errs = errors(&yaml);
        assert!(
            errs.iter().any(|e| e.starts_with(want)),
            "want {want:?}: {errs:?}"
        );
    }
}

#[test]
fn yaml_problems_are_reported() {
    assert!(errors("routes: [")[0].starts_with("invalid YAML"));
    assert!(errors("")[0].contains("empty"));
    assert!(errors("- a\n- b\n")[0].contains("expected a map"));
    assert!(errors("routes: []\n")[0].starts_with("routes: needs at least one route"));
    let unquoted = errors("routes: [${X}]\n");
    assert!(unquoted[0].contains("quote values"), "{unquoted:?}");
}

const FIXTURE_CERT: &str = "tests/fixtures/tls/server.crt";
const FIXTURE_KEY: &str = "tests/fixtures/tls/server.key";

#[test]
fn https_upstreams_take_a_ca_bundle_and_a_server_name() {
    let https = MINIMAL.replace(
        "    upstream: http://127.0.0.1:9000/expel",
        &format!(
            "    upstream: https://127.0.0.1:9443/expel\n    upstream_tls: {{ ca: {FIXTURE_CERT} }}"
        ),
    );
    let c = ok(&https);
    let tls = c.routes[0].upstream_tls.as_ref().expect("client TLS built");
    assert_eq!(
        format!("{:?}", tls.server_name),
        "IpAddress(V4(Ipv4Addr([127, 0, 0, 1])))"
    );
    assert_eq!(c.routes[0].upstream.authority.port_u16(), Some(9443));
    assert!(c.source_files().contains(&FIXTURE_CERT.into()));

    let named = https.replace(
        &format!("{FIXTURE_CERT} }}"),
        &format!("{FIXTURE_CERT}, server_name: internal.example }}"),
    );
    let c = ok(&named);
    let tls = c.routes[0].upstream_tls.as_ref().unwrap();
    assert!(format!("{:?}", tls.server_name).contains("internal.example"));

    let errs = errors(&https.replace(FIXTURE_CERT, "no/such/ca.pem"));
    assert!(
        errs[0].starts_with("routes[0].upstream_tls: cannot read no/such/ca.pem"),
        "{errs:?}"
    );
    let errs = errors(&https.replace(
        &format!("{FIXTURE_CERT} }}"),
        &format!("{FIXTURE_CERT}, cert: {FIXTURE_CERT} }}"),
    ));
    assert!(errs[0].contains("`cert` and `key` go together"), "{errs:?}");
    // upstream_tls on an http upstream is a mistake worth pointing out.
    let errs = errors(&https.replace("https://", "http://"));
    assert!(
        errs[0].starts_with("routes[0].upstream_tls: applies to https upstreams only"),
        "{errs:?}"
    );
    let errs = errors(&MINIMAL.replace("http://127.0.0.1", "ftp://127.0.0.1"));
    assert!(errs[0].contains("http or https"), "{errs:?}");
}

#[test]
fn the_listener_tls_section_loads_and_names_its_broken_files() {
    let tls = format!("tls: {{ cert: {FIXTURE_CERT}, key: {FIXTURE_KEY} }}\n");
    let c = ok(&format!("{tls}{MINIMAL}"));
    let t = c.tls.as_ref().expect("tls");
    assert_eq!(t.handshake_timeout, Duration::from_secs(10));
    assert_eq!(t.client_auth, None);
    assert!(c.source_files().contains(&FIXTURE_KEY.into()));

    let cases = [
        (
            tls.replace(FIXTURE_KEY, "no/key.pem"),
            "tls.key: cannot read no/key.pem",
        ),
        (
            tls.replace(FIXTURE_CERT, "no/cert.pem"),
            "tls.cert: cannot read no/cert.pem",
        ),
        // The certificate file given as the key: not a private key.
        (
            tls.replace(FIXTURE_KEY, FIXTURE_CERT),
            "tls.key: tests/fixtures/tls/server.crt: holds no PEM private key",
        ),
        (
            tls.replace(" }", ", client_auth: optional }"),
            "tls.client_auth: needs `client_ca`",
        ),
        (
            tls.replace(" }", ", min_version: \"1.1\" }"),
            "tls.min_version: \"1.1\": use",
        ),
        (
            tls.replace(" }", ", handshake_timeout: 0s }"),
            "tls.handshake_timeout: must be more than zero",
        ),
        (
            tls.replace(" }", ", client_ca: no/ca.pem }"),
            "tls.client_ca: cannot read no/ca.pem",
        ),
        ("tls: { cert: a }\n".to_string(), "tls.key: is required"),
    ];
    for (yaml, want) in cases {
        let errs = errors(&format!("{yaml}{MINIMAL}"));
        assert!(
            errs.iter().any(|e| e.starts_with(want)),
            "want {want:?}: {errs:?}"
        );
    }
    let mtls = tls.replace(
        " }",
        &format!(", client_ca: {FIXTURE_CERT}, min_version: \"1.3\" }}"),
    );
    let c = ok(&format!("{mtls}{MINIMAL}"));
    let t = c.tls.unwrap();
    assert_eq!(t.client_auth, Some(crate::tls::ClientAuth::Required));
    assert!(t.tls13_only);
}

#[test]
fn limits_and_reload_have_safe_defaults_and_checked_ranges() {
    let c = ok(MINIMAL);
    assert_eq!(c.limits, Limits::default());
    assert_eq!(c.limits.header_timeout, Duration::from_secs(10));
    assert_eq!(c.limits.max_connections, 10_000);
    assert!(c.reload.watch);
    let c = ok(&format!(
        "limits: {{ max_connections: 5, max_connections_per_ip: 0, header_timeout: 2s, \
         body_timeout: 3s, idle_timeout: 4s, max_header_bytes: 16KiB, max_headers: 50, \
         h2_max_concurrent_streams: 10, h2_max_header_list: 8KiB, h2_stream_window: 1MiB, \
         h2_connection_window: 2MiB, h2_max_frame_size: 32KiB }}\n\
         reload: {{ watch: false, interval: 500ms }}\n{MINIMAL}"
    ));
    assert_eq!(c.limits.max_connections, 5);
    assert_eq!(c.limits.max_connections_per_ip, 0);
    assert_eq!(c.limits.idle_timeout, Duration::from_secs(4));
    assert_eq!(c.limits.max_header_bytes, 16 * 1024);
    assert_eq!(c.limits.h2_max_frame_size, 32 * 1024);
    assert!(!c.reload.watch);
    assert_eq!(c.reload.interval, Duration::from_millis(500));
    for (yaml, want) in [
        (
            "limits: { max_header_bytes: 4KiB }",
            "limits.max_header_bytes: must be between 8KiB",
        ),
        (
            "limits: { max_connections: 0 }",
            "limits.max_connections: must be between 1",
        ),
        (
            "limits: { h2_max_frame_size: 1KiB }",
            "limits.h2_max_frame_size: must be between 16KiB",
        ),
        (
            "limits: { idle_timeout: 0s }",
            "limits.idle_timeout: must be more than zero",
        ),
        (
            "limits: { header_timout: 1s }",
            "limits.header_timout: unknown key",
        ),
        ("reload: { watch: maybe }", "reload.watch:"),
    ] {
        let errs = errors(&format!("{yaml}\n{MINIMAL}"));
        assert!(
            errs.iter().any(|e| e.starts_with(want)),
            "want {want:?}: {errs:?}"
        );
    }
}

#[test]
fn body_rate_connection_age_and_h2_keepalive_have_defaults_zero_turns_them_off() {
    let l = ok(MINIMAL).limits;
    assert_eq!(l.body_min_rate, 1024);
    assert_eq!(l.body_min_rate_grace, Duration::from_secs(5));
    assert_eq!(l.max_connection_age, Duration::ZERO);
    assert_eq!(l.h2_keepalive_interval, Duration::from_secs(30));
    assert_eq!(l.h2_keepalive_timeout, Duration::from_secs(10));
    let l = ok(&format!(
        "limits: {{ body_min_rate: 4KiB/s, body_min_rate_grace: 2s, max_connection_age: 1h, \
         h2_keepalive_interval: 500ms, h2_keepalive_timeout: 1s }}\n{MINIMAL}"
    ))
    .limits;
    assert_eq!(l.body_min_rate, 4096);
    assert_eq!(l.body_min_rate_grace, Duration::from_secs(2));
    assert_eq!(l.max_connection_age, Duration::from_secs(3600));
    assert_eq!(l.h2_keepalive_interval, Duration::from_millis(500));
    assert_eq!(l.h2_keepalive_timeout, Duration::from_secs(1));
    // A rate is a size per second, with or without `/s`; 0 (or `0s`) turns a limit off.
    let l = ok(&format!(
        "limits: {{ body_min_rate: 0, body_min_rate_grace: 0s, max_connection_age: 0, \
         h2_keepalive_interval: 0s }}\n{MINIMAL}"
    ))
    .limits;
    assert_eq!(l.body_min_rate, 0);
    assert_eq!(l.body_min_rate_grace, Duration::ZERO);
    assert_eq!(l.max_connection_age, Duration::ZERO);
    assert_eq!(l.h2_keepalive_interval, Duration::ZERO);
    assert_eq!(
        ok(&format!("limits: {{ body_min_rate: 512 }}\n{MINIMAL}"))
            .limits
            .body_min_rate,
        512
    );
    // The default grace is moot, not wrong, under a shorter body_timeout; an explicit
    // one is only held to it while there is a minimum rate to apply.
    assert_eq!(
        ok(&format!("limits: {{ body_timeout: 3s }}\n{MINIMAL}"))
            .limits
            .body_timeout,
        Duration::from_secs(3)
    );
    let l = ok(&format!(
        "limits: {{ body_min_rate: 0, body_min_rate_grace: 1m }}\n{MINIMAL}"
    ))
    .limits;
    assert_eq!(l.body_min_rate_grace, Duration::from_secs(60));
    for (yaml, want) in [
        (
            "limits: { body_min_rate: fast }",
            "limits.body_min_rate: size \"fast\" does not start with a whole number",
        ),
        (
            "limits: { body_min_rate: 2GiB/s }",
            "limits.body_min_rate: must be between 0 and 1GiB/s",
        ),
        (
            "limits: { body_min_rate_grace: 5 }",
            "limits.body_min_rate_grace: duration \"5\" needs a unit",
        ),
        (
            "limits: { max_connection_age: 500ms }",
            "limits.max_connection_age: must be 0s (off) or at least 1s",
        ),
        (
            "limits: { max_connection_age: forever }",
            "limits.max_connection_age: duration \"forever\" does not start with a number",
        ),
        (
            "limits: { h2_keepalive_interval: 30 }",
            "limits.h2_keepalive_interval: duration \"30\" needs a unit",
        ),
        (
            "limits: { h2_keepalive_timeout: 0s }",
            "limits.h2_keepalive_timeout: must be more than zero",
        ),
        (
            "limits: { body_timeout: 10s, body_min_rate_grace: 10s }",
            "limits.body_min_rate_grace: must be shorter than body_timeout (10s), or \
             body_min_rate never applies",
        ),
        (
            "limits: { body_min_rate_grace: 1m }",
            "limits.body_min_rate_grace: must be shorter than body_timeout (30s)",
        ),
    ] {
        let errs = errors(&format!("{yaml}\n{MINIMAL}"));
        assert!(
            errs.iter().any(|e| e.starts_with(want)),
            "want {want:?}: {errs:?}"
        );
    }
}

#[test]
fn lingering_close_has_nginx_defaults_can_be_set_and_turned_off() {
    let l = ok(MINIMAL).limits;
    assert_eq!(l.linger_time, Duration::from_secs(30));
    assert_eq!(l.linger_timeout, Duration::from_secs(5));
    let l = ok(&format!(
        "limits: {{ linger_time: 1m, linger_timeout: 250ms }}\n{MINIMAL}"
    ))
    .limits;
    assert_eq!(l.linger_time, Duration::from_secs(60));
    assert_eq!(l.linger_timeout, Duration::from_millis(250));
    // 0s closes at once; a linger_timeout longer than an active linger_time never
    // applies, which is an error only when it was set (the default one is moot).
    assert_eq!(
        ok(&format!("limits: {{ linger_time: 0s }}\n{MINIMAL}"))
            .limits
            .linger_time,
        Duration::ZERO
    );
    assert_eq!(
        ok(&format!(
            "limits: {{ linger_time: 0s, linger_timeout: 1m }}\n{MINIMAL}"
        ))
        .limits
        .linger_timeout,
        Duration::from_secs(60)
    );
    assert_eq!(
        ok(&format!("limits: {{ linger_time: 2s }}\n{MINIMAL}"))
            .limits
            .linger_time,
        Duration::from_secs(2)
    );
    for (yaml, want) in [
        (
            "limits: { linger_timeout: 0s }",
            "limits.linger_timeout: must be more than zero",
        ),
        (
            "limits: { linger_time: 30 }",
            "limits.linger_time: duration \"30\" needs a unit",
        ),
        (
            "limits: { linger_time: 10s, linger_timeout: 11s }",
            "limits.linger_timeout: must not be longer than linger_time (10s), or it never \
             applies",
        ),
    ] {
        let errs = errors(&format!("{yaml}\n{MINIMAL}"));
        assert!(
            errs.iter().any(|e| e.starts_with(want)),
            "want {want:?}: {errs:?}"
        );
    }
}

#[test]
fn the_full_hmac_form_reads_every_shape() {
    let c = ok(r#"
routes:
  - name: pairs
    path: /pairs
    upstream: http://127.0.0.1:1/
    verify:
      hmac:
        header: X-Sig
        format: pairs
        separator: ";"
        assign: "="
        signature_keys: [h1, h2]
        timestamp_key: ts
        timestamp_format: unix_ms
        signed: "{timestamp}:{method}:{url}:{body}"
        secret_encoding: base64
        secret_prefix: "key_"
      secrets: ["key_aGVsbG8="]
      url: https://hooks.example.com/pairs
      tolerance: 2m
      future_tolerance: 10s
"#);
    let Scheme::Hmac(h) = &c.routes[0].verifier.scheme else {
        panic!()
    };
    let s = &h.spec;
    assert_eq!(
        s.format,
        Format::Pairs {
            separator: ';',
            assign: '=',
            signature_keys: vec!["h1".into(), "h2".into()]
        }
    );
    assert_eq!(
        s.timestamp,
        Some(TimestampSpec {
            source: TimestampSource::SignatureKey("ts".into()),
            unit: TimeUnit::Millis
        })
    );
    assert_eq!(
        s.secret_encoding,
        SecretEncoding::Base64 {
            prefix: "key_".into()
        }
    );
    assert_eq!(
        (s.tolerance, s.future_tolerance),
        (Duration::from_secs(120), Duration::from_secs(10))
    );
    assert_eq!(s.url.as_deref(), Some("https://hooks.example.com/pairs"));
    // The key is the decoded secret: "hello".
    let expected = HmacScheme::new(s.clone(), &[b"hello".to_vec()]);
    assert_eq!(
        h.sign_value(b"x", b"1", b""),
        expected.sign_value(b"x", b"1", b"")
    );
}

#[test]
fn new_verify_forms_are_checked() {
    let route = |verify: &str| {
        format!("routes:\n  - {{ name: a, path: /a, upstream: \"http://127.0.0.1:1/\", verify: {verify} }}\n")
    };
    let cases: &[(&str, &str)] = &[
        ("{ preset: square, secrets: [x] }", "routes[0].verify.url: is required"),
        ("{ preset: standard-webhooks, secrets: [\"whsec_%%%\"] }", "routes[0].verify.secrets[0]: is not valid base64 after removing \"whsec_\""),
        ("{ hmac: { header: X-Sig, separator: \";\" }, secrets: [x] }", "routes[0].verify.hmac.format: `separator`, `assign` and `signature_keys` need `format: pairs`"),
        ("{ hmac: { header: X-Sig, timestamp_header: X-Ts, timestamp_key: t, signed: \"{timestamp}{body}\" }, secrets: [x] }", "routes[0].verify.hmac: choose one of timestamp_header"),
        ("{ hmac: { header: X-Sig, timestamp_key: t, signed: \"{timestamp}{body}\" }, secrets: [x] }", "routes[0].verify.hmac.timestamp_key: needs `format: pairs`"),
        ("{ hmac: { header: X-Sig, format: pairs, prefix: \"v1=\" }, secrets: [x] }", "routes[0].verify.hmac.prefix: `prefix` applies to `format: bare`"),
        ("{ hmac: { header: X-Sig, secret_encoding: rot13 }, secrets: [x] }", "routes[0].verify.hmac.secret_encoding: unknown secret encoding"),
        ("{ hmac: { header: X-Sig, timestamp_format: unix_ms }, secrets: [x] }", "routes[0].verify.hmac.timestamp_format: there is no timestamp to read"),
        ("{ hmac: { header: X-Sig }, url: \"/relative\", secrets: [x] }", "routes[0].verify.url: \"/relative\" must be an absolute http(s) URL"),
        ("{ basic: true, secrets: [nocolon] }", "routes[0].verify.secrets[0]: a basic-auth secret is written user:password"),
        ("{ token: { prefix: x }, secrets: [t] }", "routes[0].verify.token.header: is required"),
        ("{ preset: gitlab, tolerance: 5m, secrets: [t] }", "routes[0].verify.tolerance: `tolerance` applies to signed timestamps"),
        ("{ preset: expel, basic: true, secrets: [a:b] }", "routes[0].verify: choose one of `preset`/`hmac`, `token`, `basic` or `none`"),
    ];
    for (verify, want) in cases {
        let errs = errors(&route(verify));
        assert!(
            errs.iter().any(|e| e.starts_with(want)),
            "{verify}: want {want:?}, got {errs:#?}"
        );
        assert!(
            !errs.iter().any(|e| e.contains("%%%")),
            "a secret in an error: {errs:#?}"
        );
    }
}

#[test]
fn token_and_basic_routes() {
    let c = ok(r#"
routes:
  - { name: gl, path: /gl, upstream: "http://127.0.0.1:1/", verify: { preset: gitlab, secrets: [t1] } }
  - { name: ok, path: /ok, upstream: "http://127.0.0.1:1/", verify: { preset: okta, token: { header: X-Okta-Auth, prefix: "Bearer " }, secrets: [t2] } }
  - { name: dd, path: /dd, upstream: "http://127.0.0.1:1/", verify: { preset: datadog, secrets: ["dd:pw"] } }
  - { name: tk, path: /tk, upstream: "http://127.0.0.1:1/", verify: { token: { header: X-Token }, secrets: [t3] } }
"#);
    let kinds: Vec<String> = c.routes.iter().map(|r| r.verifier.describe()).collect();
    assert_eq!(
        kinds,
        [
            "gitlab (token in x-gitlab-token)",
            "okta (token in x-okta-auth)",
            "datadog (token in authorization)",
            "token (token in x-token)"
        ]
    );
}

#[test]
fn dedup_settings() {
    let c = ok(r#"
routes:
  - name: sw
    path: /sw
    upstream: http://127.0.0.1:1/
    verify: { preset: standard-webhooks, secrets: ["whsec_aGVsbG8="] }
    dedup: { window: 24h }
  - name: gh
    path: /gh
    upstream: http://127.0.0.1:1/
    verify: { preset: github, secrets: [x] }
    dedup: { window: 1h, id_from: "header:X-Custom-Id", max_entries: 10 }
"#);
    let sw = c.routes[0].dedup.as_ref().unwrap();
    assert_eq!(sw.id_from.describe(), "header:webhook-id");
    assert_eq!(sw.max_entries, crate::pipeline::dedup::DEFAULT_MAX_ENTRIES);
    let gh = c.routes[1].dedup.as_ref().unwrap();
    assert_eq!(
        (gh.id_from.describe(), gh.max_entries),
        ("header:x-custom-id".to_string(), 10)
    );
    let errs = errors(
        r#"
routes:
  - { name: a, path: /a, upstream: "http://127.0.0.1:1/", verify: { none: true }, dedup: { window: 1h } }
  - { name: b, path: /b, upstream: "http://127.0.0.1:1/", verify: { none: true }, dedup: { id_from: "body:x" } }
  - { name: c, path: /c, upstream: "http://127.0.0.1:1/", verify: { none: true }, dedup: { window: 0s, id_from: "json:a..b", max_entries: 0 } }
"#,
    );
    for want in [
        "routes[0].dedup.id_from: is required",
        "routes[1].dedup.window: is required",
        "routes[1].dedup.id_from: \"body:x\": use header:NAME or json:path.to.field",
        "routes[2].dedup.window: must be more than zero",
        "routes[2].dedup.id_from: \"json:a..b\" is not a JSON path",
        "routes[2].dedup.max_entries: must be at least 1",
    ] {
        assert!(
            errs.iter().any(|e| e.starts_with(want)),
            "missing {want:?} in {errs:#?}"
        );
    }
}

#[test]
fn public_key_and_twilio_routes() {
    let c = ok(r#"
routes:
  - name: discord
    path: /discord
    upstream: http://127.0.0.1:1/
    verify: { preset: discord, public_key: d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a }
  - name: twilio
    path: /twilio
    upstream: http://127.0.0.1:1/
    verify: { preset: twilio, secrets: [auth-token], url: "https://hooks.example.com/twilio" }
"#);
    assert_eq!(
        c.routes[0].reject_status, 401,
        "discord wants 401 for bad signatures"
    );
    assert_eq!(c.routes[1].reject_status, 406);
    let errs = errors(
        r#"
routes:
  - { name: a, path: /a, upstream: "http://127.0.0.1:1/", verify: { preset: discord } }
  - { name: b, path: /b, upstream: "http://127.0.0.1:1/", verify: { preset: discord, public_key: abcd, secrets: [x] } }
  - { name: c, path: /c, upstream: "http://127.0.0.1:1/", verify: { preset: sendgrid, public_key: "bm90IGEga2V5" } }
  - { name: d, path: /d, upstream: "http://127.0.0.1:1/", verify: { preset: twilio, secrets: [x] } }
  - { name: e, path: /e, upstream: "http://127.0.0.1:1/", verify: { preset: expel, secrets: [x], public_key: abcd } }
  - { name: f, path: /f, upstream: "http://127.0.0.1:1/", reject_status: 400, verify: { preset: discord, public_key: d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a } }
"#,
    );
    for want in [
        "routes[0].verify.public_key: is required",
        "routes[1].verify.secrets: this scheme verifies with `public_key`",
        "routes[1].verify.public_key: is not an Ed25519 public key",
        "routes[2].verify.public_key: is not a valid P-256 public key",
        "routes[3].verify.url: is required",
        "routes[4].verify.public_key: only public-key schemes",
    ] {
        assert!(
            errs.iter().any(|e| e.starts_with(want)),
            "missing {want:?} in {errs:#?}"
        );
    }
    assert!(
        !errs.iter().any(|e| e.starts_with("routes[5]")),
        "{errs:#?}"
    );
}

#[test]
fn standard_webhooks_asymmetric_keys() {
    let c = ok(r#"
routes:
  - name: sw
    path: /sw
    upstream: http://127.0.0.1:1/
    verify: { preset: standard-webhooks, public_key: "whpk_11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=" }
"#);
    assert_eq!(c.routes[0].verifier.name, "standard-webhooks+v1a");
    let errs = errors(
        r#"
routes:
  - { name: a, path: /a, upstream: "http://127.0.0.1:1/", verify: { preset: standard-webhooks, public_key: "whpk_bm9wZQ==" } }
"#,
    );
    assert!(
        errs[0].starts_with("routes[0].verify.public_key: is not an Ed25519 public key"),
        "{errs:?}"
    );
}
