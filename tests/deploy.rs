//! Keeps `deploy/` honest against the binary: every hookgate config the deployment files
//! embed passes `hookgate check` (run as the built binary, with the secret files it names
//! created in a temporary directory and the variables it names set), and the ports,
//! paths, probes, mounts and secrets of the Dockerfile, the Kubernetes manifests, the
//! Helm chart and the systemd unit agree with those configs and with the Kubernetes API's
//! required fields. Tools that may be missing (kubectl, helm, hadolint,
//! kubernetes-validate, systemd-analyze) are used when installed and skipped with a note
//! otherwise; the Rust-side checks always run.

use serde::Deserialize;
use serde_norway::{Mapping, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_hookgate");
/// The oldest Kubernetes the manifests are for (the preStop `sleep` action).
const MIN_KUBERNETES: &str = "1.30.0";
/// The probe endpoints of the admin listener (src/admin.rs).
const READYZ: &str = "/readyz";
const HEALTHZ: &str = "/healthz";

// ---- small helpers ---------------------------------------------------------------------

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn deploy(rel: &str) -> PathBuf {
    root().join("deploy").join(rel)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every non-empty document of a (multi-document) YAML text.
fn yaml_docs(text: &str, what: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{what}: not YAML: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

fn yaml(text: &str, what: &str) -> Value {
    serde_norway::from_str(text).unwrap_or_else(|e| panic!("{what}: not YAML: {e}"))
}

fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(*k))
}

fn str_at<'a>(v: &'a Value, path: &[&str], what: &str) -> &'a str {
    at(v, path)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{what}: `{}` must be a string", path.join(".")))
}

fn seq_at<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    at(v, path)
        .and_then(Value::as_sequence)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn keys(v: Option<&Value>) -> BTreeSet<String> {
    v.and_then(Value::as_mapping)
        .map(|m| {
            m.keys()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_mapping)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::String(s) => s.clone(),
                        other => serde_norway::to_string(other).unwrap().trim().to_owned(),
                    };
                    (k.as_str().unwrap_or_default().to_owned(), v)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Fails on keys outside `allowed` (space-separated): a misspelt field is silently
/// ignored by some tools.
fn only_keys(v: Option<&Value>, allowed: &str, what: &str) {
    for k in keys(v) {
        assert!(
            allowed.split_whitespace().any(|a| a == k),
            "{what}: unknown field `{k}`"
        );
    }
}

fn dirname(path: &str) -> &str {
    path.rsplit_once('/').map(|(d, _)| d).unwrap_or("")
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// `name` on PATH, if installed.
fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn skipped(what: &str) {
    println!("note: {what} is not installed here; skipped the checks that need it");
}

fn run_tool(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn temp_dir(label: &str) -> PathBuf {
    let clean: String = label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let dir = std::env::temp_dir().join(format!("hookgate-deploy-{}-{clean}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// "30s", "1m", "500ms", "2h" in whole seconds, rounded up; a bare number is seconds
/// (systemd's reading).
fn seconds(d: &str) -> u64 {
    let d = d.trim();
    let split = d.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(d.len());
    let (n, unit) = d.split_at(split);
    let n: f64 = n.parse().unwrap_or_else(|_| panic!("duration {d:?}"));
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        _ => panic!("duration {d:?}: unit"),
    };
    secs.ceil() as u64
}

// ---- hookgate configs ------------------------------------------------------------------

/// What the deployment files need to know about one embedded hookgate config.
#[derive(Debug)]
struct Gateway {
    label: String,
    text: String,
    listen: SocketAddr,
    admin: Option<SocketAddr>,
    secret_files: Vec<String>,
    store_path: Option<String>,
    shutdown_grace: u64,
    /// (route name, upstream URL)
    upstreams: Vec<(String, String)>,
}

impl Gateway {
    fn parse(label: &str, text: &str) -> Gateway {
        let v = yaml(text, label);
        let addr = |s: &str| -> SocketAddr {
            s.parse()
                .unwrap_or_else(|e| panic!("{label}: bad address {s:?}: {e}"))
        };
        let listen = addr(
            at(&v, &["listen"])
                .and_then(Value::as_str)
                .unwrap_or("127.0.0.1:8080"),
        );
        let admin = at(&v, &["admin", "listen"])
            .and_then(Value::as_str)
            .map(addr);
        let mut secret_files = Vec::new();
        let mut upstreams = Vec::new();
        for r in seq_at(&v, &["routes"]) {
            for f in seq_at(r, &["verify", "secret_files"]) {
                secret_files.push(f.as_str().expect("secret file path").to_owned());
            }
            upstreams.push((
                str_at(r, &["name"], label).to_owned(),
                str_at(r, &["upstream"], label).to_owned(),
            ));
        }
        assert!(!upstreams.is_empty(), "{label}: no routes");
        Gateway {
            label: label.to_owned(),
            text: text.to_owned(),
            listen,
            admin,
            secret_files,
            store_path: at(&v, &["store", "path"])
                .and_then(Value::as_str)
                .map(str::to_owned),
            shutdown_grace: at(&v, &["shutdown_grace"])
                .and_then(Value::as_str)
                .map(seconds)
                .unwrap_or(30),
            upstreams,
        }
    }

    /// A container's config: listeners on every interface (else neither a published
    /// port nor a probe reaches them), an admin listener for the probes.
    fn assert_container_ready(&self) {
        assert!(
            self.listen.ip().is_unspecified(),
            "{}: listen {} is not reachable from outside the container",
            self.label,
            self.listen
        );
        let admin = self
            .admin
            .unwrap_or_else(|| panic!("{}: no admin listener for the probes", self.label));
        assert!(
            admin.ip().is_unspecified(),
            "{}: admin.listen {admin} is not reachable by probes",
            self.label
        );
        for f in &self.secret_files {
            assert!(
                f.starts_with('/'),
                "{}: secret file {f} is relative",
                self.label
            );
        }
    }

    /// Runs `hookgate check` on the config, with every secret file it names created in
    /// a temporary directory (the paths rewritten), the store moved there too, and every
    /// `${VAR}` it uses set. Returns the listeners as the binary read them.
    fn check(&self) -> (SocketAddr, Option<SocketAddr>) {
        let dir = temp_dir(&self.label);
        let mut text = self.text.clone();
        let mut files = self.secret_files.clone();
        files.sort_by_key(|f| std::cmp::Reverse(f.len()));
        files.dedup();
        std::fs::create_dir_all(dir.join("secrets")).unwrap();
        for (i, f) in files.iter().enumerate() {
            let local = dir.join("secrets").join(format!("{i}-{}", basename(f)));
            std::fs::write(&local, format!("deploy-test-secret-{i}\n")).unwrap();
            text = text.replace(f.as_str(), local.to_str().unwrap());
        }
        if let Some(store) = &self.store_path {
            std::fs::create_dir_all(dir.join("state")).unwrap();
            let local = dir.join("state").join(basename(store));
            text = text.replace(store.as_str(), local.to_str().unwrap());
        }
        let path = dir.join("hookgate.yaml");
        std::fs::write(&path, &text).unwrap();
        let mut cmd = Command::new(BIN);
        cmd.args(["check", "--config"]).arg(&path);
        for var in env_vars(&text) {
            cmd.env(var, "deploy-test-value-0123456789");
        }
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}: `hookgate check` refused it:\n{stdout}{}",
            self.label,
            String::from_utf8_lossy(&out.stderr)
        );
        for (route, _) in &self.upstreams {
            assert!(
                stdout.contains(route.as_str()),
                "{}: {route} not in\n{stdout}",
                self.label
            );
        }
        // "listen 0.0.0.0:8080 (http)  admin 0.0.0.0:9901  workers 2 ..."
        let line = stdout
            .lines()
            .find(|l| l.starts_with("listen "))
            .unwrap_or_else(|| panic!("{}: no listen line in\n{stdout}", self.label));
        let words: Vec<&str> = line.split_whitespace().collect();
        let after = |key: &str| -> Option<SocketAddr> {
            let i = words.iter().position(|w| *w == key)?;
            words.get(i + 1)?.parse().ok()
        };
        let listen = after("listen").expect("the listen address");
        let admin = after("admin");
        assert_eq!(
            listen, self.listen,
            "{}: listen as the binary reads it",
            self.label
        );
        assert_eq!(
            admin, self.admin,
            "{}: admin.listen as the binary reads it",
            self.label
        );
        let _ = std::fs::remove_dir_all(&dir);
        (listen, admin)
    }
}

/// The names in `${NAME}` and `${NAME:-fallback}`.
fn env_vars(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        rest = &rest[i + 2..];
        let end = rest.find(['}', ':']).unwrap_or(rest.len());
        if !rest[..end].is_empty() {
            out.insert(rest[..end].to_owned());
        }
    }
    out
}

// ---- the Dockerfile --------------------------------------------------------------------

#[derive(Debug)]
struct Instruction {
    op: String,
    args: String,
}

fn dockerfile(text: &str) -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && current.is_empty()) {
            continue;
        }
        if let Some(head) = t.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(t);
        let full = std::mem::take(&mut current);
        let (op, args) = full
            .trim()
            .split_once(char::is_whitespace)
            .unwrap_or((&full, ""));
        out.push(Instruction {
            op: op.to_ascii_uppercase(),
            args: args.trim().to_owned(),
        });
    }
    out
}

fn json_args(args: &str, what: &str) -> Vec<String> {
    serde_json::from_str(args).unwrap_or_else(|e| panic!("{what}: not the exec (JSON) form: {e}"))
}

/// The image's default command line (ENTRYPOINT + CMD) and its config path.
fn image_cmd() -> (Vec<String>, Vec<String>) {
    let ins = dockerfile(&read(&deploy("docker/Dockerfile")));
    let last = |op: &str| {
        ins.iter()
            .rev()
            .find(|i| i.op == op)
            .unwrap_or_else(|| panic!("Dockerfile: no {op}"))
    };
    (
        json_args(&last("ENTRYPOINT").args, "ENTRYPOINT"),
        json_args(&last("CMD").args, "CMD"),
    )
}

fn config_arg(args: &[String], what: &str) -> String {
    let i = args
        .iter()
        .position(|a| a == "--config" || a == "-c")
        .unwrap_or_else(|| panic!("{what}: no --config in {args:?}"));
    args.get(i + 1).cloned().expect("a path after --config")
}

#[test]
fn docker_image_and_its_config_agree() {
    let text = read(&deploy("docker/Dockerfile"));
    let ins = dockerfile(&text);
    let gw = Gateway::parse(
        "deploy/docker/hookgate.yaml",
        &read(&deploy("docker/hookgate.yaml")),
    );
    gw.assert_container_ready();
    let (listen, admin) = gw.check();
    let admin = admin.expect("admin listener");

    // Multi-stage: a builder, and a runtime stage that gets only the binary.
    let froms: Vec<usize> = (0..ins.len()).filter(|&i| ins[i].op == "FROM").collect();
    assert!(
        froms.len() >= 2,
        "Dockerfile: expected a builder and a runtime stage"
    );
    let runtime = &ins[*froms.last().unwrap()..];
    let builder = &ins[froms[0]..*froms.last().unwrap()];
    assert!(
        builder
            .iter()
            .any(|i| i.op == "RUN" && i.args.contains("cargo build --release --locked")),
        "Dockerfile: the builder runs `cargo build --release --locked`"
    );

    // Non-root, by number (Kubernetes' runAsNonRoot cannot check a user name).
    let user = runtime
        .iter()
        .rev()
        .find(|i| i.op == "USER")
        .expect("Dockerfile: the runtime stage sets USER");
    let uid = user.args.split(':').next().unwrap();
    let uid: u32 = uid
        .parse()
        .unwrap_or_else(|_| panic!("Dockerfile: USER {} is not numeric", user.args));
    assert_ne!(uid, 0, "Dockerfile: USER is root");

    // EXPOSE = the config's listen and admin ports.
    let exposed: BTreeSet<u16> = runtime
        .iter()
        .filter(|i| i.op == "EXPOSE")
        .flat_map(|i| i.args.split_whitespace())
        .map(|p| p.trim_end_matches("/tcp").parse().expect("EXPOSE port"))
        .collect();
    assert_eq!(
        exposed,
        BTreeSet::from([listen.port(), admin.port()]),
        "Dockerfile: EXPOSE vs deploy/docker/hookgate.yaml's listen and admin.listen"
    );

    // ENTRYPOINT is the binary that the runtime stage copies in; CMD serves the config
    // at the path the README mounts, with JSON logs.
    let (entry, cmd) = image_cmd();
    assert_eq!(entry, ["/usr/local/bin/hookgate"], "Dockerfile: ENTRYPOINT");
    assert!(
        runtime
            .iter()
            .any(|i| i.op == "COPY" && i.args.ends_with(" /usr/local/bin/hookgate")),
        "Dockerfile: the runtime stage copies the binary to /usr/local/bin/hookgate"
    );
    assert_eq!(
        cmd.first().map(String::as_str),
        Some("serve"),
        "Dockerfile: CMD"
    );
    assert!(
        cmd.windows(2).any(|w| w == ["--log-format", "json"]),
        "Dockerfile: CMD logs JSON"
    );
    let config = config_arg(&cmd, "Dockerfile CMD");
    assert_eq!(
        config, "/etc/hookgate/hookgate.yaml",
        "Dockerfile: CMD's config"
    );
    let mount = dirname(&config);
    for f in &gw.secret_files {
        assert!(
            f.starts_with(&format!("{mount}/")),
            "deploy/docker/hookgate.yaml: {f} is outside the mounted {mount}"
        );
    }

    // The store (the one written path) is a VOLUME, and nothing else needs writing.
    let volumes: Vec<String> = runtime
        .iter()
        .filter(|i| i.op == "VOLUME")
        .flat_map(|i| {
            if i.args.starts_with('[') {
                json_args(&i.args, "VOLUME")
            } else {
                i.args.split_whitespace().map(str::to_owned).collect()
            }
        })
        .collect();
    let store = gw
        .store_path
        .as_deref()
        .expect("the docker config has a store");
    assert!(
        volumes.iter().any(|v| v == dirname(store)),
        "Dockerfile: VOLUME {volumes:?} must hold the store {store}"
    );

    // Every COPY source from the build context exists (the context is the repo root).
    for i in ins
        .iter()
        .filter(|i| i.op == "COPY" && !i.args.contains("--from"))
    {
        let words: Vec<&str> = i
            .args
            .split_whitespace()
            .filter(|w| !w.starts_with("--"))
            .collect();
        for src in &words[..words.len() - 1] {
            assert!(
                root().join(src).exists(),
                "Dockerfile: COPY {src}: not in the repository"
            );
        }
    }
    // The dependency layer's stub crate declares every target Cargo.toml has, or cargo
    // refuses the manifest before building anything.
    let manifest = read(&root().join("Cargo.toml"));
    let mut in_bench = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bench = line == "[[bench]]";
        } else if in_bench && line.starts_with("name") {
            let name = line.split('"').nth(1).expect("bench name");
            let stub = format!("benches/{name}.rs");
            assert!(
                text.contains(&stub),
                "Dockerfile: the stub crate lacks {stub}"
            );
        }
    }
    for stub in ["src/main.rs", "src/lib.rs"] {
        assert!(
            text.contains(stub),
            "Dockerfile: the stub crate lacks {stub}"
        );
    }
    // Files compiled into the binary come from the build context too.
    for dir in included_dirs() {
        assert!(
            ins.iter()
                .any(|i| i.op == "COPY" && i.args.split_whitespace().next() == Some(&dir)),
            "Dockerfile: src/ includes files from {dir}/, which is not copied"
        );
    }

    match find_tool("hadolint") {
        Some(h) => {
            run_tool(Command::new(h).arg(deploy("docker/Dockerfile")), "hadolint");
        }
        None => skipped("hadolint"),
    }
    println!(
        "note: the image itself is not built here (that needs a Docker daemon and the network)"
    );
}

/// Top-level directories (other than src/) that `include_str!`/`include_bytes!` in
/// non-test sources read from.
fn included_dirs() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root().join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if !name.ends_with(".rs") || name.contains("test") {
                continue;
            }
            for part in read(&path).split("include_").skip(1) {
                if !(part.starts_with("str!(") || part.starts_with("bytes!(")) {
                    continue;
                }
                let Some(lit) = part.split('"').nth(1) else {
                    continue;
                };
                let target = dir.join(lit);
                let Ok(rel) = normalize(&target)
                    .strip_prefix(root())
                    .map(Path::to_path_buf)
                else {
                    continue;
                };
                let top = rel
                    .components()
                    .next()
                    .unwrap()
                    .as_os_str()
                    .to_string_lossy()
                    .into_owned();
                if top != "src" && top != "tests" && top != "benches" {
                    out.insert(top);
                }
            }
        }
    }
    out
}

fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

// ---- Kubernetes ------------------------------------------------------------------------

const DEPLOYMENT_SPEC: &str =
    "replicas selector template strategy minReadySeconds revisionHistoryLimit \
    paused progressDeadlineSeconds";
const POD_SPEC: &str = "activeDeadlineSeconds affinity automountServiceAccountToken containers \
    dnsConfig dnsPolicy enableServiceLinks ephemeralContainers hostAliases hostIPC \
    hostNetwork hostPID hostUsers hostname imagePullSecrets initContainers \
    nodeName nodeSelector os overhead preemptionPolicy priority priorityClassName \
    readinessGates resourceClaims resources restartPolicy runtimeClassName \
    schedulerName schedulingGates securityContext serviceAccountName \
    setHostnameAsFQDN shareProcessNamespace subdomain \
    terminationGracePeriodSeconds tolerations topologySpreadConstraints volumes";
const CONTAINER: &str =
    "name image command args workingDir ports envFrom env resources resizePolicy \
    restartPolicy volumeMounts volumeDevices livenessProbe readinessProbe \
    startupProbe lifecycle terminationMessagePath terminationMessagePolicy \
    imagePullPolicy securityContext stdin stdinOnce tty";
const CONTAINER_SECURITY: &str =
    "allowPrivilegeEscalation appArmorProfile capabilities privileged procMount \
    readOnlyRootFilesystem runAsGroup runAsNonRoot runAsUser seLinuxOptions \
    seccompProfile windowsOptions";
const POD_SECURITY: &str =
    "appArmorProfile fsGroup fsGroupChangePolicy runAsGroup runAsNonRoot runAsUser \
    seLinuxOptions seccompProfile supplementalGroups supplementalGroupsPolicy \
    sysctls windowsOptions";
const PROBE: &str = "exec httpGet tcpSocket grpc initialDelaySeconds timeoutSeconds periodSeconds \
    successThreshold failureThreshold terminationGracePeriodSeconds";
const METADATA: &str = "name namespace labels annotations";

/// The API versions the manifests may use (current, not deprecated).
const KINDS: &[(&str, &str)] = &[
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
    ("v1", "Service"),
    ("apps/v1", "Deployment"),
    ("policy/v1", "PodDisruptionBudget"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("networking.k8s.io/v1", "Ingress"),
];

#[derive(Debug)]
struct Obj {
    source: String,
    v: Value,
}

impl Obj {
    fn kind(&self) -> &str {
        str_at(&self.v, &["kind"], &self.source)
    }
    fn name(&self) -> &str {
        str_at(&self.v, &["metadata", "name"], &self.source)
    }
    fn what(&self) -> String {
        format!("{} ({} {})", self.source, self.kind(), self.name())
    }
}

/// The resources a kustomization lists, parsed from their files; fails if a YAML file in
/// the directory is left out of it.
fn kustomize_dir(rel: &str) -> Vec<Obj> {
    let dir = deploy(rel);
    let k = yaml(&read(&dir.join("kustomization.yaml")), rel);
    assert_eq!(str_at(&k, &["kind"], rel), "Kustomization");
    let listed: BTreeSet<String> = seq_at(&k, &["resources"])
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect();
    let present: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    assert_eq!(
        listed, present,
        "{rel}/kustomization.yaml: resources vs the files there"
    );
    let mut objs = Vec::new();
    for file in &listed {
        let source = format!("deploy/{rel}/{file}");
        for v in yaml_docs(&read(&dir.join(file)), &source) {
            objs.push(Obj {
                source: source.clone(),
                v,
            });
        }
    }
    objs
}

fn selector_matches(
    selector: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn is_dns_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && !s.starts_with(['-', '.'])
        && !s.ends_with(['-', '.'])
}

/// A container port reference (number or name) as a number, among a pod's containers.
fn resolve_port(pod: &Value, port: &Value, what: &str) -> u16 {
    let ports: Vec<(&str, u16)> = seq_at(pod, &["containers"])
        .iter()
        .flat_map(|c| seq_at(c, &["ports"]))
        .map(|p| {
            (
                p.get("name").and_then(Value::as_str).unwrap_or(""),
                p.get("containerPort")
                    .and_then(Value::as_u64)
                    .expect("containerPort") as u16,
            )
        })
        .collect();
    match port {
        Value::Number(n) => {
            let n = n.as_u64().expect("a port number") as u16;
            assert!(
                ports.iter().any(|(_, p)| *p == n),
                "{what}: port {n} is no container's port"
            );
            n
        }
        Value::String(name) => ports
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| *p)
            .unwrap_or_else(|| panic!("{what}: no container port named {name:?}")),
        other => panic!("{what}: port {other:?}"),
    }
}

fn find<'a>(objs: &'a [Obj], kind: &str, name: &str) -> Option<&'a Obj> {
    objs.iter().find(|o| o.kind() == kind && o.name() == name)
}

fn pod_spec(d: &Obj) -> &Value {
    at(&d.v, &["spec", "template", "spec"]).expect("spec.template.spec")
}

fn pod_labels(d: &Obj) -> BTreeMap<String, String> {
    string_map(at(&d.v, &["spec", "template", "metadata", "labels"]))
}

/// The Deployment whose pods a selector picks.
fn selected<'a>(objs: &'a [Obj], selector: &BTreeMap<String, String>, what: &str) -> &'a Obj {
    objs.iter()
        .find(|d| d.kind() == "Deployment" && selector_matches(selector, &pod_labels(d)))
        .unwrap_or_else(|| panic!("{what}: its selector {selector:?} matches no Deployment's pods"))
}

/// A hookgate container of a Deployment, with its config as the binary read it.
#[derive(Debug)]
struct Running {
    deployment: String,
    gw: Gateway,
    listen: SocketAddr,
    admin: SocketAddr,
}

/// A checked set of resources: the API's required fields and the references between
/// them. Returns the hookgate containers, with their configs checked by the binary.
fn check_resources(objs: &[Obj]) -> Vec<Running> {
    let mut seen = BTreeSet::new();
    for o in objs {
        let what = o.source.clone();
        let api = str_at(&o.v, &["apiVersion"], &what);
        let kind = o.kind();
        assert!(
            KINDS.contains(&(api, kind)),
            "{what}: {api} {kind} is not one of the expected API versions {KINDS:?}"
        );
        let name = o.name();
        assert!(is_dns_name(name, 63), "{what}: metadata.name {name:?}");
        only_keys(o.v.get("metadata"), METADATA, &o.what());
        assert!(
            seen.insert((kind.to_owned(), name.to_owned())),
            "{}: defined twice",
            o.what()
        );
    }

    let mut running = Vec::new();
    for d in objs.iter().filter(|o| o.kind() == "Deployment") {
        let what = d.what();
        let spec = d.v.get("spec").expect("spec");
        only_keys(Some(spec), DEPLOYMENT_SPEC, &what);
        let selector = string_map(at(spec, &["selector", "matchLabels"]));
        assert!(
            selector_matches(&selector, &pod_labels(d)),
            "{what}: spec.selector.matchLabels {selector:?} must match the pod template's labels"
        );
        let pod = pod_spec(d);
        only_keys(Some(pod), POD_SPEC, &what);
        only_keys(pod.get("securityContext"), POD_SECURITY, &what);
        let containers = seq_at(pod, &["containers"]);
        assert!(!containers.is_empty(), "{what}: no containers");
        let volumes: BTreeMap<&str, &Value> = seq_at(pod, &["volumes"])
            .iter()
            .map(|v| (str_at(v, &["name"], &what), v))
            .collect();
        for c in containers {
            let cwhat = format!("{what}, container {}", str_at(c, &["name"], &what));
            assert!(!str_at(c, &["image"], &cwhat).is_empty(), "{cwhat}: image");
            only_keys(Some(c), CONTAINER, &cwhat);
            only_keys(c.get("securityContext"), CONTAINER_SECURITY, &cwhat);
            for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
                only_keys(c.get(probe), PROBE, &format!("{cwhat}, {probe}"));
            }
            // Non-root, read-only, no privilege gain, no capabilities.
            let sc = |k: &str| {
                at(c, &["securityContext", k]).or_else(|| at(pod, &["securityContext", k]))
            };
            assert_eq!(
                sc("runAsNonRoot").and_then(Value::as_bool),
                Some(true),
                "{cwhat}: runAsNonRoot"
            );
            assert_eq!(
                at(c, &["securityContext", "readOnlyRootFilesystem"]).and_then(Value::as_bool),
                Some(true),
                "{cwhat}: readOnlyRootFilesystem"
            );
            assert_eq!(
                at(c, &["securityContext", "allowPrivilegeEscalation"]).and_then(Value::as_bool),
                Some(false),
                "{cwhat}: allowPrivilegeEscalation"
            );
            assert!(
                seq_at(c, &["securityContext", "capabilities", "drop"])
                    .iter()
                    .any(|v| v.as_str() == Some("ALL")),
                "{cwhat}: capabilities.drop [ALL]"
            );
            assert_eq!(
                sc("seccompProfile")
                    .and_then(|s| s.get("type"))
                    .and_then(Value::as_str),
                Some("RuntimeDefault"),
                "{cwhat}: seccompProfile"
            );
            // Mounts name declared volumes, and none sits inside another (a mount point
            // inside a read-only ConfigMap or Secret volume cannot be created).
            let mounts: Vec<(&str, &str)> = seq_at(c, &["volumeMounts"])
                .iter()
                .map(|m| {
                    (
                        str_at(m, &["name"], &cwhat),
                        str_at(m, &["mountPath"], &cwhat),
                    )
                })
                .collect();
            for (vol, path) in &mounts {
                assert!(
                    volumes.contains_key(vol),
                    "{cwhat}: volume {vol} is not declared"
                );
                for (_, other) in &mounts {
                    assert!(
                        !other.starts_with(&format!("{path}/")),
                        "{cwhat}: {other} is mounted inside {path}"
                    );
                }
            }
            for p in seq_at(c, &["ports"]) {
                let n = p.get("containerPort").and_then(Value::as_u64);
                assert!(
                    n.is_some_and(|n| (1..=65535).contains(&n)),
                    "{cwhat}: containerPort {n:?}"
                );
            }
        }
        // Volumes name ConfigMaps and Secrets of this set.
        for (vname, v) in &volumes {
            if let Some(cm) = at(v, &["configMap", "name"]).and_then(Value::as_str) {
                assert!(
                    find(objs, "ConfigMap", cm).is_some(),
                    "{what}: volume {vname}: no ConfigMap {cm}"
                );
            }
            if let Some(s) = at(v, &["secret", "secretName"]).and_then(Value::as_str) {
                assert!(
                    find(objs, "Secret", s).is_some(),
                    "{what}: volume {vname}: no Secret {s}"
                );
            }
        }
        for c in containers {
            if str_at(c, &["image"], &what).contains("hookgate") {
                running.push(check_hookgate_container(objs, d, c, &volumes));
            }
        }
    }

    for o in objs {
        let what = o.what();
        let spec = o.v.get("spec");
        match o.kind() {
            "ConfigMap" => {
                for (k, v) in
                    o.v.get("data")
                        .and_then(Value::as_mapping)
                        .into_iter()
                        .flatten()
                {
                    assert!(v.is_string(), "{what}: data.{k:?} must be a string");
                }
            }
            "Secret" => {
                assert!(
                    o.v.get("data").is_some() || o.v.get("stringData").is_some(),
                    "{what}: no data"
                );
            }
            "Service" => {
                let spec = spec.expect("spec");
                let d = selected(objs, &string_map(spec.get("selector")), &what);
                let ports = seq_at(spec, &["ports"]);
                assert!(!ports.is_empty(), "{what}: no ports");
                for p in ports {
                    let port = p.get("port").cloned().expect("port");
                    let target = p.get("targetPort").cloned().unwrap_or(port);
                    resolve_port(pod_spec(d), &target, &format!("{what}, targetPort"));
                }
            }
            "PodDisruptionBudget" => {
                let spec = spec.expect("spec");
                let selector = string_map(at(spec, &["selector", "matchLabels"]));
                let d = selected(objs, &selector, &what);
                let min = spec.get("minAvailable").and_then(Value::as_u64);
                assert!(
                    min.is_some() || spec.get("maxUnavailable").is_some(),
                    "{what}: minAvailable or maxUnavailable"
                );
                // With as many replicas as minAvailable, no node could ever be drained.
                let mut replicas = at(&d.v, &["spec", "replicas"])
                    .and_then(Value::as_u64)
                    .unwrap_or(1);
                for h in objs
                    .iter()
                    .filter(|h| h.kind() == "HorizontalPodAutoscaler")
                {
                    if str_at(&h.v, &["spec", "scaleTargetRef", "name"], &what) == d.name() {
                        replicas = at(&h.v, &["spec", "minReplicas"])
                            .and_then(Value::as_u64)
                            .unwrap_or(1);
                    }
                }
                if let Some(min) = min {
                    assert!(
                        min < replicas,
                        "{what}: minAvailable {min} with {replicas} replicas blocks drains"
                    );
                }
            }
            "HorizontalPodAutoscaler" => {
                let spec = spec.expect("spec");
                let target = str_at(spec, &["scaleTargetRef", "name"], &what);
                assert_eq!(
                    str_at(spec, &["scaleTargetRef", "kind"], &what),
                    "Deployment"
                );
                assert_eq!(
                    str_at(spec, &["scaleTargetRef", "apiVersion"], &what),
                    "apps/v1"
                );
                let d = find(objs, "Deployment", target)
                    .unwrap_or_else(|| panic!("{what}: no Deployment {target}"));
                let max = spec.get("maxReplicas").and_then(Value::as_u64);
                let min = spec.get("minReplicas").and_then(Value::as_u64).unwrap_or(1);
                assert!(
                    max.is_some_and(|max| min <= max),
                    "{what}: maxReplicas, at least minReplicas"
                );
                for m in seq_at(spec, &["metrics"]) {
                    assert!(m.get("type").is_some(), "{what}: a metric without type");
                    if at(m, &["resource", "name"]).and_then(Value::as_str) == Some("cpu") {
                        for c in seq_at(pod_spec(d), &["containers"]) {
                            assert!(
                                at(c, &["resources", "requests", "cpu"]).is_some(),
                                "{what}: CPU utilization needs requests.cpu on every container"
                            );
                        }
                    }
                }
            }
            "NetworkPolicy" => {
                let spec = spec.expect("spec");
                let selector = string_map(at(spec, &["podSelector", "matchLabels"]));
                let d = selected(objs, &selector, &what);
                // (port, whether the rule names its peers)
                let mut allowed = BTreeSet::new();
                for rule in seq_at(spec, &["ingress"]) {
                    for p in seq_at(rule, &["ports"]) {
                        let port = resolve_port(pod_spec(d), p.get("port").expect("port"), &what);
                        // An absent or empty `from` admits every source.
                        allowed.insert((port, !seq_at(rule, &["from"]).is_empty()));
                    }
                }
                let types: Vec<&str> = seq_at(spec, &["policyTypes"])
                    .iter()
                    .filter_map(Value::as_str)
                    .collect();
                for r in running.iter().filter(|r| r.deployment == d.name()) {
                    // The public port reachable; the admin one from named peers only.
                    assert!(
                        allowed.iter().any(|(p, _)| *p == r.listen.port()),
                        "{what}: the public port {} is not allowed in",
                        r.listen.port()
                    );
                    assert!(
                        allowed.contains(&(r.admin.port(), true)),
                        "{what}: the admin port {} must be allowed from named peers only",
                        r.admin.port()
                    );
                    if types.contains(&"Egress") {
                        check_egress(spec, &r.gw, &what);
                    }
                }
            }
            "Ingress" => {
                let spec = spec.expect("spec");
                let rules = seq_at(spec, &["rules"]);
                assert!(!rules.is_empty(), "{what}: no rules");
                for p in rules.iter().flat_map(|r| seq_at(r, &["http", "paths"])) {
                    assert!(str_at(p, &["path"], &what).starts_with('/'), "{what}: path");
                    let kind = str_at(p, &["pathType"], &what);
                    assert!(
                        ["Prefix", "Exact", "ImplementationSpecific"].contains(&kind),
                        "{what}: pathType {kind}"
                    );
                    let name = str_at(p, &["backend", "service", "name"], &what);
                    let svc = find(objs, "Service", name)
                        .unwrap_or_else(|| panic!("{what}: no Service {name}"));
                    let port = at(p, &["backend", "service", "port"]).expect("backend port");
                    let sp = seq_at(&svc.v, &["spec", "ports"])
                        .iter()
                        .find(|sp| match (port.get("name"), port.get("number")) {
                            (Some(n), _) => sp.get("name") == Some(n),
                            (_, Some(n)) => sp.get("port") == Some(n),
                            _ => false,
                        })
                        .unwrap_or_else(|| panic!("{what}: Service {name} has no port {port:?}"));
                    // The Ingress reaches the public listener, never the admin one.
                    let d = selected(objs, &string_map(at(&svc.v, &["spec", "selector"])), &what);
                    let target = sp
                        .get("targetPort")
                        .map(|t| resolve_port(pod_spec(d), t, &what));
                    for r in running.iter().filter(|r| r.deployment == d.name()) {
                        assert_eq!(target, Some(r.listen.port()), "{what}: backend vs listen");
                    }
                }
            }
            _ => {}
        }
    }
    running
}

/// Every upstream's port is allowed out, and DNS when an upstream is a name.
fn check_egress(spec: &Value, gw: &Gateway, what: &str) {
    let rules = seq_at(spec, &["egress"]);
    let allows = |port: u64, proto: &str| {
        rules.iter().any(|r| {
            let ports = seq_at(r, &["ports"]);
            ports.is_empty()
                || ports.iter().any(|p| {
                    p.get("port").and_then(Value::as_u64) == Some(port)
                        && p.get("protocol").and_then(Value::as_str).unwrap_or("TCP") == proto
                })
        })
    };
    for (route, url) in &gw.upstreams {
        let (scheme, rest) = url.split_once("://").expect("upstream URL");
        let authority = rest.split('/').next().unwrap();
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().expect("upstream port")),
            None => (authority, if scheme == "https" { 443 } else { 80 }),
        };
        assert!(
            allows(port, "TCP"),
            "{what}: egress to route {route}'s upstream port {port}"
        );
        if host.parse::<std::net::IpAddr>().is_err() {
            assert!(allows(53, "UDP"), "{what}: egress to DNS, for {host}");
        }
    }
}

/// One hookgate container: its config (from the ConfigMap it mounts) passes `check`, and
/// its ports, probes, secret mounts and grace period agree with that config.
fn check_hookgate_container(
    objs: &[Obj],
    d: &Obj,
    c: &Value,
    volumes: &BTreeMap<&str, &Value>,
) -> Running {
    let pod = pod_spec(d);
    let what = format!(
        "{}, container {}",
        d.what(),
        str_at(c, &["name"], "container")
    );
    let args: Vec<String> = match c.get("args").and_then(Value::as_sequence) {
        Some(a) => a.iter().map(|a| a.as_str().unwrap().to_owned()).collect(),
        None => image_cmd().1,
    };
    assert!(
        c.get("command").is_none(),
        "{what}: keep the image's ENTRYPOINT"
    );
    assert_eq!(
        args.first().map(String::as_str),
        Some("serve"),
        "{what}: args"
    );
    let config = config_arg(&args, &what);
    let mount_of = |dir: &str| -> (&Value, &Value) {
        let m = seq_at(c, &["volumeMounts"])
            .iter()
            .find(|m| m.get("mountPath").and_then(Value::as_str) == Some(dir))
            .unwrap_or_else(|| panic!("{what}: nothing mounted at {dir}"));
        assert!(
            m.get("subPath").is_none(),
            "{what}: {dir} is a subPath mount, which kubelet never updates (no reload)"
        );
        let vol = volumes[str_at(m, &["name"], &what)];
        (m, vol)
    };

    // The config: a key of the ConfigMap mounted at its directory.
    let (_, vol) = mount_of(dirname(&config));
    let cm_name = str_at(vol, &["configMap", "name"], &what);
    let cm = find(objs, "ConfigMap", cm_name).unwrap();
    let text = str_at(&cm.v, &["data", basename(&config)], &cm.what());
    let gw = Gateway::parse(&format!("{} {}", cm.source, d.name()), text);
    gw.assert_container_ready();
    let (listen, admin) = gw.check();
    let admin = admin.unwrap();

    // Container ports: exactly the config's two listeners.
    let ports: BTreeMap<String, u16> = seq_at(c, &["ports"])
        .iter()
        .map(|p| {
            (
                p.get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
                p.get("containerPort").and_then(Value::as_u64).unwrap() as u16,
            )
        })
        .collect();
    let numbers: BTreeSet<u16> = ports.values().copied().collect();
    assert_eq!(
        numbers,
        BTreeSet::from([listen.port(), admin.port()]),
        "{what}: containerPorts vs the config"
    );
    assert_eq!(
        ports.get("http"),
        Some(&listen.port()),
        "{what}: port `http` is `listen`"
    );
    assert_eq!(
        ports.get("admin"),
        Some(&admin.port()),
        "{what}: port `admin` is `admin.listen`"
    );

    // Probes on the admin listener's endpoints.
    for (probe, path) in [("readinessProbe", READYZ), ("livenessProbe", HEALTHZ)] {
        let get =
            at(c, &[probe, "httpGet"]).unwrap_or_else(|| panic!("{what}: no {probe}.httpGet"));
        assert_eq!(str_at(get, &["path"], &what), path, "{what}: {probe} path");
        let port = resolve_port(pod, get.get("port").expect("probe port"), &what);
        assert_eq!(
            port,
            admin.port(),
            "{what}: {probe} must use the admin port"
        );
    }

    // Secret files: each directory is a whole Secret (no items, no subPath, so that a
    // key added later appears as a file), and its keys are the files the config names.
    let mut by_dir: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for f in &gw.secret_files {
        by_dir.entry(dirname(f)).or_default().insert(basename(f));
    }
    for (dir, files) in by_dir {
        let (_, vol) = mount_of(dir);
        let name = str_at(
            vol,
            &["secret", "secretName"],
            &format!("{what}: volume at {dir}"),
        );
        assert!(
            at(vol, &["secret", "items"]).is_none(),
            "{what}: Secret {name} mounted with items"
        );
        let secret = find(objs, "Secret", name).unwrap();
        let mut have = keys(secret.v.get("data"));
        have.extend(keys(secret.v.get("stringData")));
        let want: BTreeSet<String> = files.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            have,
            want,
            "{}: keys vs the config's secret_files under {dir}",
            secret.what()
        );
    }

    // A store needs a writable volume; the root file system is read-only.
    if let Some(store) = &gw.store_path {
        let dir = dirname(store);
        let m = seq_at(c, &["volumeMounts"])
            .iter()
            .find(|m| dir.starts_with(m.get("mountPath").and_then(Value::as_str).unwrap_or("-")))
            .unwrap_or_else(|| panic!("{what}: store {store} is on the read-only root"));
        assert_ne!(
            m.get("readOnly").and_then(Value::as_bool),
            Some(true),
            "{what}: store read-only"
        );
    }

    // Kubernetes waits long enough for the preStop sleep and the drain.
    let sleep = at(c, &["lifecycle", "preStop", "sleep", "seconds"])
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let grace = pod
        .get("terminationGracePeriodSeconds")
        .and_then(Value::as_u64)
        .unwrap_or(30);
    assert!(
        grace > sleep + gw.shutdown_grace,
        "{what}: terminationGracePeriodSeconds {grace} must exceed preStop {sleep} s + shutdown_grace {} s",
        gw.shutdown_grace
    );
    assert!(
        at(c, &["resources", "requests"]).is_some()
            && at(c, &["resources", "limits", "memory"]).is_some(),
        "{what}: resource requests and a memory limit"
    );
    Running {
        deployment: d.name().to_owned(),
        gw,
        listen,
        admin,
    }
}

#[test]
fn kubernetes_standalone_gateway() {
    let objs = kustomize_dir("kubernetes/standalone");
    let kinds: BTreeSet<&str> = objs.iter().map(Obj::kind).collect();
    for k in [
        "ConfigMap",
        "Secret",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
        "Ingress",
    ] {
        assert!(kinds.contains(k), "standalone: no {k}");
    }
    let running = check_resources(&objs);
    assert_eq!(running.len(), 1, "standalone: one hookgate container");
    let r = &running[0];
    // Stateless replicas: no queue, which would split into one store per pod.
    assert!(
        r.gw.store_path.is_none(),
        "standalone: a store needs the StatefulSet variant"
    );
    // The admin port is served by a Service of its own, not next to the public one.
    for s in objs.iter().filter(|o| o.kind() == "Service") {
        let ports = seq_at(&s.v, &["spec", "ports"]);
        if ports
            .iter()
            .any(|p| p.get("targetPort").and_then(Value::as_str) == Some("admin"))
        {
            assert_eq!(
                ports.len(),
                1,
                "{}: the admin port shares a Service",
                s.what()
            );
            assert_eq!(str_at(&s.v, &["spec", "type"], "Service"), "ClusterIP");
        }
    }
    assert_eq!(r.admin.port(), 9901);
}

#[test]
fn kubernetes_sidecar() {
    let objs = kustomize_dir("kubernetes/sidecar");
    let running = check_resources(&objs);
    assert_eq!(running.len(), 1, "sidecar: one hookgate container");
    let r = &running[0];
    // hookgate forwards to the application in the same pod, over loopback.
    for (route, url) in &r.gw.upstreams {
        assert!(
            url.starts_with("http://127.0.0.1:") || url.starts_with("http://localhost:"),
            "sidecar: route {route} forwards to {url}, not to the pod's application"
        );
    }
    let d = objs.iter().find(|o| o.kind() == "Deployment").unwrap();
    let containers = seq_at(&d.v, &["spec", "template", "spec", "containers"]);
    assert!(
        containers.len() >= 2,
        "sidecar: the application and hookgate in one pod"
    );
    // The Service reaches the pod through hookgate only.
    for s in objs.iter().filter(|o| o.kind() == "Service") {
        let pod = at(&d.v, &["spec", "template", "spec"]).unwrap();
        for p in seq_at(&s.v, &["spec", "ports"]) {
            let target = resolve_port(pod, p.get("targetPort").unwrap(), &s.what());
            assert_eq!(
                target,
                r.listen.port(),
                "{}: must target hookgate's listener",
                s.what()
            );
        }
    }
}

#[test]
fn kubernetes_manifests_render_and_validate_with_the_tools_present() {
    let kubectl = find_tool("kubectl");
    let validate = find_tool("kubernetes-validate");
    for (tool, found) in [("kubectl", &kubectl), ("kubernetes-validate", &validate)] {
        if found.is_none() {
            skipped(tool);
        }
    }
    for rel in ["kubernetes/standalone", "kubernetes/sidecar"] {
        let ours: BTreeSet<(String, String)> = kustomize_dir(rel)
            .iter()
            .map(|o| (o.kind().to_owned(), o.name().to_owned()))
            .collect();
        if let Some(k) = &kubectl {
            // Offline: kustomize renders without a cluster. What it renders (what
            // `kubectl apply -k` would send) passes the same checks.
            let out = run_tool(
                Command::new(k).arg("kustomize").arg(deploy(rel)),
                "kubectl kustomize",
            );
            let objs: Vec<Obj> = yaml_docs(&out, rel)
                .into_iter()
                .map(|v| Obj {
                    source: format!("kubectl kustomize deploy/{rel}"),
                    v,
                })
                .collect();
            let rendered: BTreeSet<(String, String)> = objs
                .iter()
                .map(|o| (o.kind().to_owned(), o.name().to_owned()))
                .collect();
            assert_eq!(rendered, ours, "{rel}: kubectl kustomize's resources");
            assert_eq!(check_resources(&objs).len(), 1, "{rel}: one gateway");
        }
        // Schema validation, rejecting unknown fields, against the oldest supported API.
        if let Some(v) = &validate {
            let files: Vec<PathBuf> = std::fs::read_dir(deploy(rel))
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| {
                    p.extension().is_some_and(|e| e == "yaml") && !p.ends_with("kustomization.yaml")
                })
                .collect();
            run_tool(
                Command::new(v)
                    .args(["--strict", "--quiet", "-k", MIN_KUBERNETES])
                    .args(&files),
                "kubernetes-validate",
            );
        }
    }
}

// ---- Helm ------------------------------------------------------------------------------

const CHART: &str = "helm/hookgate";

fn values() -> Value {
    yaml(
        &read(&deploy(&format!("{CHART}/values.yaml"))),
        "values.yaml",
    )
}

/// The config `_helpers.tpl`'s "hookgate.config" makes of these values, built the same
/// way in Rust.
fn config_from_values(v: &Value) -> Value {
    let s = |x: &str| Value::String(x.to_owned());
    let port = |k: &str| at(v, &["ports", k]).and_then(Value::as_u64).expect("ports");
    let mut m = Mapping::new();
    m.insert(s("listen"), s(&format!("0.0.0.0:{}", port("http"))));
    let mut admin = Mapping::new();
    admin.insert(s("listen"), s(&format!("0.0.0.0:{}", port("admin"))));
    m.insert(s("admin"), Value::Mapping(admin));
    m.insert(
        s("trusted_proxies"),
        at(v, &["config", "trustedProxies"]).cloned().unwrap(),
    );
    m.insert(
        s("shutdown_grace"),
        at(v, &["config", "shutdownGrace"]).cloned().unwrap(),
    );
    if let Some(d) = at(v, &["config", "defaults"]).filter(|d| !keys(Some(d)).is_empty()) {
        m.insert(s("defaults"), d.clone());
    }
    if at(v, &["tls", "enabled"]).and_then(Value::as_bool) == Some(true) {
        let dir = str_at(v, &["tls", "mountPath"], "values.yaml");
        let mut tls = Mapping::new();
        tls.insert(s("cert"), s(&format!("{dir}/tls.crt")));
        tls.insert(s("key"), s(&format!("{dir}/tls.key")));
        m.insert(s("tls"), Value::Mapping(tls));
    }
    if at(v, &["store", "enabled"]).and_then(Value::as_bool) == Some(true) {
        let mut store = Mapping::new();
        store.insert(s("path"), s("/var/lib/hookgate/hookgate.db"));
        m.insert(s("store"), Value::Mapping(store));
    }
    if let Some(extra) = at(v, &["config", "extra"]).and_then(Value::as_mapping) {
        for (k, x) in extra {
            m.insert(k.clone(), x.clone());
        }
    }
    m.insert(s("routes"), at(v, &["routes"]).cloned().unwrap());
    Value::Mapping(m)
}

/// Template actions (`{{ ... }}`) of a Go template, trimmed of `-` and spaces; comments
/// dropped.
fn actions(text: &str, what: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("{{") {
        let after = &rest[i + 2..];
        let end = after
            .find("}}")
            .unwrap_or_else(|| panic!("{what}: unclosed {{{{"));
        let a = after[..end]
            .trim_start_matches('-')
            .trim_end_matches('-')
            .trim();
        if !a.starts_with("/*") {
            out.push(a.to_owned());
        }
        rest = &after[end + 2..];
    }
    out
}

#[test]
fn helm_chart() {
    let chart = yaml(&read(&deploy(&format!("{CHART}/Chart.yaml"))), "Chart.yaml");
    assert_eq!(str_at(&chart, &["apiVersion"], "Chart.yaml"), "v2");
    assert_eq!(str_at(&chart, &["name"], "Chart.yaml"), "hookgate");
    for k in ["version", "appVersion", "description"] {
        assert!(
            !str_at(&chart, &[k], "Chart.yaml").is_empty(),
            "Chart.yaml: {k}"
        );
    }
    let v = values();

    // The default values' config, built as the template builds it, is the fixture, and
    // the fixture passes `hookgate check`.
    let fixture_text = read(&deploy(&format!("{CHART}/ci/rendered-config.yaml")));
    let fixture = yaml(&fixture_text, "ci/rendered-config.yaml");
    assert_eq!(
        config_from_values(&v),
        fixture,
        "{CHART}/ci/rendered-config.yaml is not what values.yaml renders"
    );
    let gw = Gateway::parse(&format!("{CHART}/ci/rendered-config.yaml"), &fixture_text);
    gw.assert_container_ready();
    let (listen, admin) = gw.check();
    assert_eq!(
        Some(listen.port() as u64),
        at(&v, &["ports", "http"]).and_then(Value::as_u64)
    );
    assert_eq!(
        admin.map(|a| a.port() as u64),
        at(&v, &["ports", "admin"]).and_then(Value::as_u64)
    );
    // The Secret rendered from `secrets` holds exactly the files the routes name.
    let mount = str_at(&v, &["secretsMountPath"], "values.yaml");
    let named: BTreeSet<String> = gw
        .secret_files
        .iter()
        .map(|f| {
            assert_eq!(
                dirname(f),
                mount,
                "values.yaml: {f} is outside secretsMountPath"
            );
            basename(f).to_owned()
        })
        .collect();
    assert_eq!(
        keys(v.get("secrets")),
        named,
        "values.yaml: `secrets` vs the routes' secret_files"
    );
    assert!(
        !format!("{}/", str_at(&v, &["tls", "mountPath"], "values.yaml"))
            .starts_with("/etc/hookgate/"),
        "values.yaml: tls.mountPath inside the ConfigMap's volume cannot be mounted"
    );
    let sleep = at(&v, &["preStopSleepSeconds"])
        .and_then(Value::as_u64)
        .unwrap();
    let grace = at(&v, &["terminationGracePeriodSeconds"])
        .and_then(Value::as_u64)
        .unwrap();
    assert!(
        grace > sleep + gw.shutdown_grace,
        "values.yaml: terminationGracePeriodSeconds"
    );

    // The templates: balanced blocks, `.Values` paths that values.yaml defines, and the
    // ports, probes and paths the config and image use.
    let dir = deploy(&format!("{CHART}/templates"));
    let mut all = String::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = read(&path);
        let mut depth = 0i32;
        for a in actions(&text, &name) {
            let word = a.split_whitespace().next().unwrap_or("");
            match word {
                "if" | "with" | "range" | "define" | "block" => depth += 1,
                "end" => depth -= 1,
                _ => {}
            }
            assert!(depth >= 0, "{name}: `end` without a block");
            for (i, _) in a.match_indices(".Values.") {
                let path: String = a[i + 8..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '_')
                    .collect();
                let segs: Vec<&str> = path.trim_end_matches('.').split('.').collect();
                assert!(
                    at(&v, &segs).is_some(),
                    "{name}: .Values.{path} is not in values.yaml"
                );
            }
        }
        assert_eq!(depth, 0, "{name}: unbalanced blocks");
        all.push_str(&text);
    }
    let (_, cmd) = image_cmd();
    let config = config_arg(&cmd, "Dockerfile CMD");
    for needle in [
        format!("path: {READYZ}"),
        format!("path: {HEALTHZ}"),
        "containerPort: {{ .Values.ports.http }}".to_owned(),
        "containerPort: {{ .Values.ports.admin }}".to_owned(),
        "listen: \"0.0.0.0:{{ .Values.ports.http }}\"".to_owned(),
        "listen: \"0.0.0.0:{{ .Values.ports.admin }}\"".to_owned(),
        format!("mountPath: {}", dirname(&config)),
        format!("{}: |", basename(&config)),
        format!("\"--config\", \"{config}\""),
        "mountPath: {{ .Values.secretsMountPath }}".to_owned(),
        "readOnlyRootFilesystem".to_owned(),
    ] {
        let in_values = serde_norway::to_string(&v).unwrap();
        assert!(
            all.contains(&needle) || in_values.contains(&needle),
            "{CHART}/templates: expected {needle:?}"
        );
    }
    let deployment = read(&dir.join("deployment.yaml"));
    for (probe, path) in [("readinessProbe:", READYZ), ("livenessProbe:", HEALTHZ)] {
        let block: Vec<&str> = deployment
            .split(probe)
            .nth(1)
            .unwrap_or_else(|| panic!("{CHART}: no {probe}"))
            .lines()
            .take(4)
            .map(str::trim)
            .collect();
        assert!(
            block.contains(&format!("path: {path}").as_str()) && block.contains(&"port: admin"),
            "{CHART}: {probe} must get {path} on the admin port: {block:?}"
        );
    }

    match find_tool("helm") {
        Some(helm) => {
            run_tool(
                Command::new(&helm).arg("lint").arg(deploy(CHART)),
                "helm lint",
            );
            let out = run_tool(
                Command::new(&helm)
                    .args(["template", "gw"])
                    .arg(deploy(CHART)),
                "helm template",
            );
            let objs: Vec<Obj> = yaml_docs(&out, "helm template")
                .into_iter()
                .map(|v| Obj {
                    source: "helm template".to_owned(),
                    v,
                })
                .collect();
            assert_eq!(
                check_resources(&objs).len(),
                1,
                "helm template: one gateway"
            );
            let cm = objs.iter().find(|o| o.kind() == "ConfigMap").unwrap();
            let rendered = yaml(
                str_at(&cm.v, &["data", "hookgate.yaml"], "ConfigMap"),
                "rendered",
            );
            assert_eq!(
                rendered, fixture,
                "helm template's hookgate.yaml vs the fixture"
            );
        }
        None => skipped("helm"),
    }
}

// ---- systemd ---------------------------------------------------------------------------

#[test]
fn systemd_unit_is_hardened() {
    let path = deploy("systemd/hookgate.service");
    let text = read(&path);
    let mut service: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line.to_owned();
        } else if let Some((k, v)) = line.split_once('=') {
            if section == "[Service]" && !line.starts_with('#') {
                service
                    .entry(k.trim().to_owned())
                    .or_default()
                    .push(v.trim().to_owned());
            }
        }
    }
    let one = |k: &str| -> &str {
        service
            .get(k)
            .and_then(|v| v.last())
            .map(String::as_str)
            .unwrap_or_else(|| panic!("hookgate.service: no {k}="))
    };
    let user = one("User");
    assert!(
        !user.is_empty() && user != "root" && user != "0",
        "User={user}"
    );
    assert_eq!(one("NoNewPrivileges"), "yes");
    assert_eq!(one("ProtectSystem"), "strict");
    assert_eq!(one("ProtectHome"), "yes");
    assert_eq!(one("PrivateTmp"), "yes");
    assert_eq!(one("CapabilityBoundingSet"), "");
    let reload = one("ExecReload");
    assert!(
        reload.contains("-HUP") && reload.contains("$MAINPID"),
        "ExecReload={reload}"
    );
    // The store's directory: writable under ProtectSystem=strict only as a StateDirectory.
    assert_eq!(one("StateDirectory"), "hookgate");
    let start = one("ExecStart");
    let args: Vec<String> = start
        .split_whitespace()
        .skip(1)
        .map(str::to_owned)
        .collect();
    assert_eq!(
        args.first().map(String::as_str),
        Some("serve"),
        "ExecStart={start}"
    );
    assert_eq!(
        config_arg(&args, "ExecStart"),
        "/etc/hookgate/hookgate.yaml"
    );
    assert!(start.contains("--log-format json"), "ExecStart={start}");
    assert!(
        seconds(one("TimeoutStopSec")) > 30,
        "TimeoutStopSec above the default shutdown_grace"
    );
    let nofile: u64 = one("LimitNOFILE").parse().unwrap();
    assert!(
        nofile > 10_000,
        "LimitNOFILE above limits.max_connections' default"
    );

    match find_tool("systemd-analyze") {
        Some(sa) => {
            // The unit as installed, pointing at the binary just built.
            let dir = temp_dir("systemd");
            let unit = dir.join("hookgate.service");
            std::fs::write(&unit, text.replace("/usr/local/bin/hookgate", BIN)).unwrap();
            run_tool(
                Command::new(sa).arg("verify").arg(&unit),
                "systemd-analyze verify",
            );
            let _ = std::fs::remove_dir_all(&dir);
        }
        None => skipped("systemd-analyze"),
    }
}

// ---- the README ------------------------------------------------------------------------

#[test]
fn deploy_readme_lists_every_file() {
    let readme = read(&deploy("README.md"));
    let base = root().join("deploy");
    let mut stack = vec![base.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path
                .strip_prefix(&base)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if rel != "README.md" {
                assert!(
                    readme.contains(&rel),
                    "deploy/README.md does not mention {rel}"
                );
            }
        }
    }
    // The build context is the repository root; the run keeps the root read-only.
    assert!(readme.contains("docker build -f deploy/docker/Dockerfile -t hookgate:dev ."));
    assert!(readme.contains("docker run --rm --name hookgate --read-only"));
}
