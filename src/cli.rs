//! The command line: `serve`, `check`, `sign`, `sink`, and `queue` and `dlq` (the
//! durable queue, through the admin API or on the store file), and the exit codes (0 ok,
//! 64 invalid config, unknown route or no `store`, 66 an unreadable input file, 1 a
//! runtime failure such as a port in use, a store or admin API failure or an unknown
//! delivery id, 2 bad arguments).

use crate::admin::{self, QueueOp};
use crate::config::{self, units, Config, Errors, StoreSettings};
use crate::log::LogFormat;
use crate::store::{Select, Store};
use bytes::Bytes;
use clap::{Parser, Subcommand};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Exit code for an invalid config (EX_USAGE, as linkerd does).
pub const EXIT_CONFIG: i32 = 64;
/// Exit code for a failure after the config was accepted.
pub const EXIT_RUNTIME: i32 = 1;

pub const DEFAULT_CONFIG_PATH: &str = "config/hookgate.yaml";
/// The default config, compiled in, used when no `--config` is given and the default
/// path does not exist, so `hookgate serve` runs anywhere.
pub const EMBEDDED_CONFIG: &str = include_str!("../config/hookgate.yaml");

#[derive(Debug, Parser)]
#[command(
    name = "hookgate",
    version,
    about = "A verifying reverse proxy for webhooks"
)]
pub struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value = "human")]
    pub log_format: LogFormat,
    /// Log level or filter (RUST_LOG overrides it).
    #[arg(long, global = true, default_value = "info")]
    pub log_level: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve {
        /// Config file [default: config/hookgate.yaml, else the embedded default]
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validate a config and print its route table (secrets masked).
    Check {
        /// Config file [default: config/hookgate.yaml, else the embedded default]
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Print the headers (or a curl command) of a correctly signed delivery for a route.
    Sign {
        /// Config file [default: config/hookgate.yaml, else the embedded default]
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The route's name.
        #[arg(long)]
        route: String,
        /// The body to sign (sent exactly as it is in the file).
        #[arg(long)]
        body: PathBuf,
        /// What to print: the header lines, or a whole curl command.
        #[arg(long, value_enum, default_value = "headers")]
        print: SignOutput,
        /// Where the curl command sends the delivery [default: http://<listen>].
        #[arg(long)]
        #[allow(rustdoc::invalid_html_tags)] // `<listen>` is text in `--help`, not HTML
        url: Option<String>,
        /// For public-key schemes (discord, sendgrid, standard-webhooks v1a): a file
        /// holding the private key of a test key pair (Ed25519 seed in hex or base64,
        /// or a P-256 PKCS#8 key in PEM or base64 DER).
        #[arg(long)]
        private_key: Option<PathBuf>,
    },
    /// Run a minimal upstream that answers every request (for demos and benchmarks).
    Sink {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:9000")]
        listen: SocketAddr,
        /// Status to answer with.
        #[arg(long, default_value_t = 200)]
        status: u16,
        /// Print each request received.
        #[arg(long)]
        print: bool,
        /// Worker threads.
        #[arg(long, default_value_t = 1)]
        workers: usize,
    },
    /// Inspect the durable queue (through the admin API, else the store file).
    Queue {
        #[command(subcommand)]
        command: QueueCommand,
    },
    /// List, show, replay or purge dead deliveries (the dead-letter queue).
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
}

/// `hookgate queue ...`
#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Pending, dead and delivered counts per route.
    Stats {
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// `hookgate dlq ...`
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Dead deliveries, oldest first.
    List {
        /// Only this route's.
        #[arg(long)]
        route: Option<String>,
        /// At most this many (1 to 1000).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1000))]
        limit: u64,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// One dead delivery in full, body included.
    Show {
        /// The delivery's id (from `dlq list`).
        id: i64,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Make dead deliveries pending again (their attempts start over).
    Replay {
        #[command(flatten)]
        target: DlqTarget,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Delete dead deliveries.
    Purge {
        #[command(flatten)]
        target: DlqTarget,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// Which dead deliveries `replay` and `purge` act on: one id, or `--all` (of a route).
#[derive(Debug, Clone, clap::Args)]
pub struct DlqTarget {
    /// The delivery's id (from `dlq list`).
    #[arg(required_unless_present = "all", conflicts_with_all = ["all", "route", "older_than"])]
    pub id: Option<i64>,
    /// Every dead delivery (of `--route`, if given).
    #[arg(long)]
    pub all: bool,
    /// With `--all`: only this route's.
    #[arg(long)]
    pub route: Option<String>,
    /// With `--all`: only deliveries dead for longer than this (`90s`, `36h`, `7d`;
    /// whole seconds), by the gateway's clock (on a stopped gateway's store, this host's).
    #[arg(long, value_name = "DURATION", value_parser = older_than)]
    pub older_than: Option<std::time::Duration>,
}

/// `--older-than`: a config-style duration of at least one second.
fn older_than(s: &str) -> Result<std::time::Duration, String> {
    let d = crate::config::units::parse_duration(s)?;
    if d.as_secs() == 0 {
        return Err("must be at least 1s".into());
    }
    Ok(std::time::Duration::from_secs(d.as_secs()))
}

/// What every `queue` and `dlq` subcommand takes.
#[derive(Clone, clap::Args)]
pub struct AdminArgs {
    /// Config file [default: config/hookgate.yaml, else the embedded default]
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// The admin API's token [default: $HOOKGATE_ADMIN_TOKEN, else the config's admin.token]
    #[arg(long)]
    pub token: Option<String>,
    /// Print the admin API's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl std::fmt::Debug for AdminArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminArgs")
            .field("config", &self.config)
            .field("token", &self.token.as_ref().map(|_| "****"))
            .field("json", &self.json)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SignOutput {
    Headers,
    Curl,
}

/// Exit code for an input file that cannot be read (EX_NOINPUT).
pub const EXIT_NOINPUT: i32 = 66;

/// `hookgate sign`: returns what to print, or an error message and exit code.
pub fn sign(
    config: &Config,
    route_name: &str,
    body_path: &Path,
    print: SignOutput,
    url: Option<&str>,
    private_key: Option<&Path>,
) -> Result<String, (String, i32)> {
    let Some(route) = config.routes.iter().find(|r| r.name == route_name) else {
        let names: Vec<&str> = config.routes.iter().map(|r| r.name.as_str()).collect();
        return Err((
            format!(
                "no route named {route_name:?} (routes: {})\n",
                names.join(", ")
            ),
            EXIT_CONFIG,
        ));
    };
    let body = std::fs::read(body_path).map_err(|e| {
        (
            format!("cannot read {}: {e}\n", body_path.display()),
            EXIT_NOINPUT,
        )
    })?;
    let key = match private_key {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| (format!("cannot read {}: {e}\n", p.display()), EXIT_NOINPUT))?;
            Some(
                crate::sign::PrivateKey::parse(&text)
                    .map_err(|e| (format!("{}: {e}\n", p.display()), EXIT_CONFIG))?,
            )
        }
        None => None,
    };
    let headers =
        crate::sign::headers_with_key(route, &body, std::time::SystemTime::now(), key.as_ref());
    let mut out = String::new();
    for note in crate::sign::caveats(route, &body) {
        out.push_str(&format!("# note: {note}\n"));
    }
    match print {
        SignOutput::Headers => {
            for (k, v) in &headers {
                out.push_str(&format!("{k}: {v}\n"));
            }
        }
        SignOutput::Curl => {
            let base = url
                .map(|u| u.trim_end_matches('/').to_string())
                .unwrap_or_else(|| format!("http://{}", config.listen));
            out.push_str(&crate::sign::curl(
                route,
                &base,
                &headers,
                &body_path.display().to_string(),
            ));
            out.push('\n');
        }
    }
    Ok(out)
}

/// Where a config comes from, for messages.
pub struct Source {
    pub label: String,
    pub text: Result<String, String>,
}

/// The config file `serve` reads (and reloads): the one named on the command line, else
/// the default path if it exists; `None` means the embedded default.
pub fn config_path(path: Option<&Path>) -> Option<std::path::PathBuf> {
    match path {
        Some(p) => Some(p.to_path_buf()),
        None if Path::new(DEFAULT_CONFIG_PATH).exists() => Some(DEFAULT_CONFIG_PATH.into()),
        None => None,
    }
}

/// Reads the config named on the command line, or the default one.
pub fn read_source(path: Option<&Path>) -> Source {
    match path {
        Some(p) => Source {
            label: p.display().to_string(),
            text: std::fs::read_to_string(p)
                .map_err(|e| format!("cannot read {}: {e}", p.display())),
        },
        None if Path::new(DEFAULT_CONFIG_PATH).exists() => {
            read_source(Some(Path::new(DEFAULT_CONFIG_PATH)))
        }
        None => Source {
            label: "(embedded default config)".to_string(),
            text: Ok(EMBEDDED_CONFIG.to_string()),
        },
    }
}

/// Loads and validates a config source, or formats every error.
pub fn load(source: &Source) -> Result<Config, String> {
    let env = |name: &str| std::env::var(name).ok();
    let result = match &source.text {
        Ok(text) => config::load_str(text, &env),
        Err(e) => {
            let mut errs = Errors::default();
            errs.push("", e.clone());
            Err(errs)
        }
    };
    result.map_err(|errs| {
        let n = errs.0.len();
        let mut out = format!(
            "{}: invalid config ({n} error{})\n",
            source.label,
            if n == 1 { "" } else { "s" }
        );
        for e in &errs.0 {
            out.push_str(&format!("  {e}\n"));
        }
        out
    })
}

/// The route table `check` prints. It shows where secrets come from, never what they are.
pub fn render(config: &Config, label: &str) -> String {
    let mut out = format!(
        "{label}: OK ({} route{})\n",
        config.routes.len(),
        if config.routes.len() == 1 { "" } else { "s" }
    );
    let trusted: Vec<String> = config
        .trusted_proxies
        .nets()
        .iter()
        .map(|n| n.to_string())
        .collect();
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    out.push_str(&format!(
        "listen {} ({scheme})  admin {}  workers {}  trusted_proxies {}\n",
        config.listen,
        config
            .admin_listen
            .map(|a| a.to_string())
            .unwrap_or_else(|| "off".into()),
        config.workers,
        if trusted.is_empty() {
            "none".to_string()
        } else {
            trusted.join(",")
        }
    ));
    if let Some(t) = &config.tls {
        let files: Vec<String> = t.files.iter().map(|p| p.display().to_string()).collect();
        out.push_str(&format!(
            "tls {}  client_auth {}  min_version {}  handshake_timeout {}\n",
            files.join(","),
            match t.client_auth {
                None => "none",
                Some(crate::tls::ClientAuth::Required) => "required",
                Some(crate::tls::ClientAuth::Optional) => "optional",
            },
            if t.tls13_only { "1.3" } else { "1.2" },
            units::format_duration(t.handshake_timeout),
        ));
    }
    let l = &config.limits;
    out.push_str(&format!(
        "limits connections {} (per ip {})  header {}  body {}  idle {}  head {} / {} fields  h2 streams {}\n",
        l.max_connections,
        l.max_connections_per_ip,
        units::format_duration(l.header_timeout),
        units::format_duration(l.body_timeout),
        units::format_duration(l.idle_timeout),
        units::format_size(l.max_header_bytes as u64),
        l.max_headers,
        l.h2_max_concurrent_streams,
    ));
    let off_or = |d: std::time::Duration, on: String| match d.is_zero() {
        true => "off".to_string(),
        false => on,
    };
    // `30s (timeout 10s)`, or `off` for a zero first duration.
    let paired = |d: std::time::Duration, label: &str, other: std::time::Duration| {
        let on = format!(
            "{} ({label} {})",
            units::format_duration(d),
            units::format_duration(other)
        );
        off_or(d, on)
    };
    out.push_str(&format!(
        "limits body_min_rate {}  max_connection_age {}  h2 keepalive {}  linger {}\n",
        match l.body_min_rate {
            0 => "off".to_string(),
            rate => format!(
                "{}/s after {}",
                units::format_size(rate),
                units::format_duration(l.body_min_rate_grace)
            ),
        },
        off_or(
            l.max_connection_age,
            format!(
                "{} (less up to 10%)",
                units::format_duration(l.max_connection_age)
            )
        ),
        paired(l.h2_keepalive_interval, "timeout", l.h2_keepalive_timeout),
        paired(l.linger_time, "quiet", l.linger_timeout),
    ));
    out.push_str(&format!(
        "reload {}\n\n",
        if config.reload.watch {
            format!(
                "on SIGHUP and file changes (every {})",
                units::format_duration(config.reload.interval)
            )
        } else {
            "on SIGHUP".to_string()
        }
    ));
    let mut rows = vec![[
        "ROUTE",
        "PATH",
        "VERIFY",
        "SECRETS",
        "ALLOW_IPS",
        "RATE_LIMIT",
        "MAX_BODY",
        "REJECT",
        "UPSTREAM",
        "TIMEOUT",
    ]
    .map(String::from)];
    for r in &config.routes {
        let path = match &r.host {
            Some(h) => format!("{h}{}", r.path),
            None => r.path.clone(),
        };
        let secrets = if r.secret_sources.is_empty() {
            "-".to_string()
        } else {
            r.secret_sources
                .iter()
                .map(|s| format!("{s}=****"))
                .collect::<Vec<_>>()
                .join(",")
        };
        let allow = match &r.allow_ips {
            Some(set) => set
                .nets()
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(","),
            None => "any".to_string(),
        };
        let rate = match &r.rate_limit {
            Some(s) => format!(
                "{}/s burst {} per {}",
                s.per_second,
                s.burst,
                match s.key {
                    config::RateKey::Route => "route",
                    config::RateKey::ClientIp => "client_ip",
                }
            ),
            None => "off".to_string(),
        };
        rows.push([
            r.name.clone(),
            path,
            r.verifier.describe(),
            secrets,
            allow,
            rate,
            units::format_size(r.max_body),
            r.reject_status.as_u16().to_string(),
            r.upstream.url.clone(),
            units::format_duration(r.upstream_timeout),
        ]);
    }
    out.push_str(&table(&rows));
    out
}

impl QueueCommand {
    /// The operation and the options it runs with.
    pub fn into_op(self) -> (QueueOp, AdminArgs) {
        match self {
            QueueCommand::Stats { admin } => (QueueOp::Stats, admin),
        }
    }
}

impl DlqCommand {
    /// The operation and the options it runs with.
    pub fn into_op(self) -> (QueueOp, AdminArgs) {
        let select = |t: DlqTarget| match t.id {
            Some(id) if !t.all => Select::One(id),
            _ => Select::All {
                route: t.route,
                older_than: t.older_than,
            },
        };
        match self {
            DlqCommand::List {
                route,
                limit,
                admin,
            } => (
                QueueOp::ListDead {
                    route,
                    limit: limit as usize,
                },
                admin,
            ),
            DlqCommand::Show { id, admin } => (QueueOp::ShowDead(id), admin),
            DlqCommand::Replay { target, admin } => (QueueOp::Replay(select(target)), admin),
            DlqCommand::Purge { target, admin } => (QueueOp::Purge(select(target)), admin),
        }
    }
}

/// The environment variable `queue` and `dlq` read the admin token from.
pub const ADMIN_TOKEN_ENV: &str = "HOOKGATE_ADMIN_TOKEN";
/// How long `queue` and `dlq` wait for the admin API (connect, request and answer).
pub const ADMIN_API_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// `hookgate queue ...` and `hookgate dlq ...`: through the gateway's admin API if the
/// config has an admin listener and the gateway answers there, else on the store file.
/// Returns what to print, or an error message and exit code. Notes (which way it went)
/// go to stderr.
pub fn queue_admin(op: QueueOp, args: &AdminArgs) -> Result<String, (String, i32)> {
    let source = read_source(args.config.as_deref());
    let cfg = load(&source).map_err(|msg| (msg, EXIT_CONFIG))?;
    let Some(store) = cfg.store.clone() else {
        return Err((
            format!(
                "{}: the config has no `store` (the durable queue lives there)\n",
                source.label
            ),
            EXIT_CONFIG,
        ));
    };
    let token = args
        .token
        .clone()
        .or_else(|| std::env::var(ADMIN_TOKEN_ENV).ok())
        .filter(|t| !t.is_empty())
        .or_else(|| cfg.admin_token.clone());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| (format!("cannot start the runtime: {e}\n"), EXIT_RUNTIME))?;
    let value = runtime.block_on(fetch(&op, cfg.admin_listen, token.as_deref(), &store))?;
    // One id that matched nothing is an error, as `show` of an unknown id is.
    if let QueueOp::Replay(Select::One(id)) | QueueOp::Purge(Select::One(id)) = &op {
        let n = value
            .get("replayed")
            .or_else(|| value.get("purged"))
            .and_then(|v| v.as_u64());
        if n == Some(0) {
            return Err((format!("no dead delivery {id}\n"), EXIT_RUNTIME));
        }
    }
    if args.json {
        let mut out = serde_json::to_string_pretty(&value).unwrap_or_default();
        out.push('\n');
        return Ok(out);
    }
    Ok(human(&op, &value, crate::store::now_ms()))
}

/// Runs the operation through the admin API, or on the store file if the gateway is
/// not there.
async fn fetch(
    op: &QueueOp,
    admin: Option<SocketAddr>,
    token: Option<&str>,
    store: &StoreSettings,
) -> Result<Value, (String, i32)> {
    let path = store.path.display();
    match admin {
        Some(addr) => match call_api(addr, op, token).await {
            Ok(v) => return Ok(v),
            Err(None) => eprintln!(
                "gateway not reachable at {}; working on the store file {path}",
                connect_addr(addr)
            ),
            Err(Some(msg)) => return Err((msg, EXIT_RUNTIME)),
        },
        None => eprintln!("the config has no admin listener; working on the store file {path}"),
    }
    if !store.path.exists() {
        return Err((
            format!("no store file at {path} (the gateway creates it when it starts)\n"),
            EXIT_RUNTIME,
        ));
    }
    let store = Store::open(store).map_err(|e| (format!("{e}\n"), EXIT_RUNTIME))?;
    admin::run_op(&store, op)
        .await
        .map_err(|e| (format!("{}\n", e.message), EXIT_RUNTIME))
}

/// Where to reach an admin listener bound to every address: loopback.
fn connect_addr(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, addr.port()))
        }
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port()))
        }
        _ => addr,
    }
}

/// The admin API's method, path and body for an operation.
fn api_request(op: &QueueOp) -> (http::Method, String, Option<Value>) {
    let select = |s: &Select| match s {
        Select::One(id) => json!({ "id": id }),
        Select::All { route, older_than } => {
            let mut v = json!({ "all": true });
            if let Some(r) = route {
                v["route"] = json!(r);
            }
            if let Some(d) = older_than {
                v["older_than_s"] = json!(d.as_secs());
            }
            v
        }
    };
    match op {
        QueueOp::Stats => (http::Method::GET, "/queue/stats".into(), None),
        QueueOp::ListDead { route, limit } => {
            let mut path = format!("/dlq?limit={limit}");
            if let Some(r) = route {
                path.push_str(&format!("&route={}", admin::percent_encode(r)));
            }
            (http::Method::GET, path, None)
        }
        QueueOp::ShowDead(id) => (http::Method::GET, format!("/dlq/{id}"), None),
        QueueOp::Replay(s) => (http::Method::POST, "/dlq/replay".into(), Some(select(s))),
        QueueOp::Purge(s) => (http::Method::POST, "/dlq/purge".into(), Some(select(s))),
    }
}

/// One request to the admin API over HTTP/1.1. `Err(None)`: the connection was refused
/// (the gateway is not running); `Err(Some(message))`: any other failure.
async fn call_api(
    addr: SocketAddr,
    op: &QueueOp,
    token: Option<&str>,
) -> Result<Value, Option<String>> {
    use http_body_util::{BodyExt, Full, Limited};
    let target = connect_addr(addr);
    let exchange = async {
        let stream = match tokio::net::TcpStream::connect(target).await {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Err(None),
            Err(e) => {
                return Err(Some(format!(
                    "cannot connect to the admin API at {target}: {e}\n"
                )))
            }
        };
        let failed =
            |e: &dyn std::fmt::Display| Some(format!("the admin API at {target} failed: {e}\n"));
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| failed(&e))?;
        let conn = tokio::spawn(conn);
        let (method, path, body) = api_request(op);
        let mut req = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, target.to_string());
        if let Some(t) = token {
            let mut v = http::HeaderValue::from_str(&format!("Bearer {t}")).map_err(|_| {
                Some("the admin token has characters an HTTP header cannot carry\n".to_string())
            })?;
            v.set_sensitive(true);
            req = req.header(http::header::AUTHORIZATION, v);
        }
        let body = match body {
            Some(v) => {
                req = req.header(http::header::CONTENT_TYPE, "application/json");
                Bytes::from(v.to_string())
            }
            None => Bytes::new(),
        };
        let req = req.body(Full::new(body)).map_err(|e| failed(&e))?;
        let resp = sender.send_request(req).await.map_err(|e| failed(&e))?;
        let status = resp.status();
        let bytes = Limited::new(resp.into_body(), 1 << 30)
            .collect()
            .await
            .map_err(|e| failed(&e))?
            .to_bytes();
        conn.abort();
        let value: Option<Value> = serde_json::from_slice(&bytes).ok();
        if status.is_success() {
            return value.ok_or_else(|| failed(&"the answer is not JSON"));
        }
        if status == http::StatusCode::UNAUTHORIZED {
            return Err(Some(format!(
                "the admin API at {target} refused the token (give --token, set \
                 {ADMIN_TOKEN_ENV} or the config's admin.token)\n"
            )));
        }
        let message = value
            .as_ref()
            .and_then(|v| v.get("error"))
            .and_then(|e| e.as_str())
            .map(String::from)
            .unwrap_or_else(|| format!("the admin API at {target} answered {status}"));
        Err(Some(format!("{message}\n")))
    };
    tokio::time::timeout(ADMIN_API_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| {
            Err(Some(format!(
                "the admin API at {target} did not answer within {}s\n",
                ADMIN_API_TIMEOUT.as_secs()
            )))
        })
}

/// The human form of an operation's answer.
fn human(op: &QueueOp, v: &Value, now_ms: i64) -> String {
    let s = |v: &Value| match v {
        Value::Null => "-".to_string(),
        Value::String(s) => clean(s, false),
        other => other.to_string(),
    };
    match op {
        QueueOp::Stats => {
            let routes = v["routes"].as_array().cloned().unwrap_or_default();
            if routes.is_empty() {
                return "no deliveries in the store\n".into();
            }
            let mut rows = vec![["ROUTE", "PENDING", "DEAD", "DONE", "OLDEST_PENDING_AGE"]
                .map(String::from)
                .to_vec()];
            for r in &routes {
                let age = match r["oldest_pending_ms"].as_i64() {
                    Some(ms) => format_age(now_ms.saturating_sub(ms)),
                    None => "-".into(),
                };
                rows.push(vec![
                    s(&r["route"]),
                    s(&r["pending"]),
                    s(&r["dead"]),
                    s(&r["done"]),
                    age,
                ]);
            }
            table(&rows)
        }
        QueueOp::ListDead { .. } => {
            let dead = v["dead"].as_array().cloned().unwrap_or_default();
            if dead.is_empty() {
                return "no dead deliveries\n".into();
            }
            let mut rows = vec![[
                "ID",
                "ROUTE",
                "DELIVERY_ID",
                "RECEIVED",
                "ATTEMPTS",
                "LAST_STATUS",
                "LAST_ERROR",
            ]
            .map(String::from)
            .to_vec()];
            for d in &dead {
                let mut error = s(&d["last_error"]);
                if error.chars().count() > 80 {
                    error = error.chars().take(79).chain(['…']).collect();
                }
                rows.push(vec![
                    s(&d["id"]),
                    s(&d["route"]),
                    s(&d["delivery_id"]),
                    d["received_ms"]
                        .as_i64()
                        .map(format_time)
                        .unwrap_or_else(|| "-".into()),
                    s(&d["attempts"]),
                    s(&d["last_status"]),
                    error,
                ]);
            }
            table(&rows)
        }
        QueueOp::ShowDead(_) => {
            let mut out = String::new();
            let mut field = |name: &str, value: String| {
                out.push_str(&format!("{name:<12} {value}\n"));
            };
            field("id", s(&v["id"]));
            field("route", s(&v["route"]));
            field("delivery_id", s(&v["delivery_id"]));
            field(
                "received",
                v["received_ms"]
                    .as_i64()
                    .map(format_time)
                    .unwrap_or_else(|| "-".into()),
            );
            field("attempts", s(&v["attempts"]));
            field("last_status", s(&v["last_status"]));
            field("last_error", s(&v["last_error"]));
            field("request_id", s(&v["request_id"]));
            field("peer", s(&v["peer"]));
            field("query", s(&v["query"]));
            let headers: Vec<String> = v["headers"]
                .as_array()
                .map(|a| a.iter().map(&s).collect())
                .unwrap_or_default();
            field(
                "headers",
                if headers.is_empty() {
                    "-".into()
                } else {
                    headers.join(&format!("\n{:<12} ", ""))
                },
            );
            let bytes = s(&v["body_bytes"]);
            let body = if let Some(text) = v["body"].as_str() {
                field("body", format!("{bytes} bytes"));
                clean(text, true)
            } else {
                field("body", format!("{bytes} bytes, not UTF-8: base64 below"));
                v["body_base64"].as_str().unwrap_or("").to_string()
            };
            out.push('\n');
            out.push_str(&body);
            if !body.is_empty() && !body.ends_with('\n') {
                out.push('\n');
            }
            out
        }
        QueueOp::Replay(_) | QueueOp::Purge(_) => {
            let (verb, n) = match op {
                QueueOp::Replay(_) => ("replayed", v["replayed"].as_u64().unwrap_or(0)),
                _ => ("purged", v["purged"].as_u64().unwrap_or(0)),
            };
            format!(
                "{verb} {n} dead deliver{}\n",
                if n == 1 { "y" } else { "ies" }
            )
        }
    }
}

/// Text from a sender, made safe for a terminal: control characters (an escape sequence
/// could rewrite the screen) are shown escaped; newlines and tabs are kept only in
/// `multiline` text.
fn clean(s: &str, multiline: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' | '\t' if multiline => out.push(c),
            '\r' if multiline => {}
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out
}

/// Columns padded to their widest cell.
fn table<R: AsRef<[String]>>(rows: &[R]) -> String {
    let cols = rows.first().map(|r| r.as_ref().len()).unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .map(|r| r.as_ref()[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .as_ref()
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// An age such as `850ms`, `42s`, `3m05s`, `2h10m` or `3d04h`.
fn format_age(ms: i64) -> String {
    let ms = ms.max(0);
    let s = ms / 1000;
    match s {
        0 => format!("{ms}ms"),
        1..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// Milliseconds since the epoch as an RFC 3339 UTC time, to the second.
fn format_time(ms: i64) -> String {
    crate::sign::rfc3339(ms.div_euclid(1000))
}

#[cfg(test)]
mod queue_tests {
    use super::*;

    #[test]
    fn times_and_ages() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_time(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(format_time(1_700_000_000_123), "2023-11-14T22:13:20Z");
        assert_eq!(format_age(850), "850ms");
        assert_eq!(format_age(42_000), "42s");
        assert_eq!(format_age(185_000), "3m05s");
        assert_eq!(format_age(7_800_000), "2h10m");
        assert_eq!(format_age(273_600_000), "3d04h");
        assert_eq!(clean("a\u{1b}[2Jb\nc", false), "a\\u{1b}[2Jb\\nc");
        assert_eq!(clean("a\r\nb\tc", true), "a\nb\tc");
    }

    #[test]
    fn replay_and_purge_need_an_id_or_all() {
        let parse = |args: &[&str]| Cli::try_parse_from(args).map(|c| c.command);
        assert!(parse(&["hookgate", "dlq", "replay"]).is_err());
        assert!(parse(&["hookgate", "dlq", "purge", "3", "--all"]).is_err());
        assert!(parse(&["hookgate", "dlq", "purge", "3", "--route", "a"]).is_err());
        match parse(&["hookgate", "dlq", "purge", "--all", "--route", "a"]) {
            Ok(Command::Dlq { command }) => assert_eq!(
                command.into_op().0,
                QueueOp::Purge(Select::all(Some("a".into())))
            ),
            other => panic!("{other:?}"),
        }
        match parse(&["hookgate", "dlq", "purge", "--all", "--older-than", "7d"]) {
            Ok(Command::Dlq { command }) => assert_eq!(
                command.into_op().0,
                QueueOp::Purge(Select::All {
                    route: None,
                    older_than: Some(std::time::Duration::from_secs(7 * 86_400)),
                })
            ),
            other => panic!("{other:?}"),
        }
        // --older-than needs --all, and a duration of a second or more.
        assert!(parse(&["hookgate", "dlq", "purge", "3", "--older-than", "1h"]).is_err());
        assert!(parse(&["hookgate", "dlq", "purge", "--all", "--older-than", "0s"]).is_err());
        assert!(parse(&["hookgate", "dlq", "purge", "--all", "--older-than", "soon"]).is_err());
        match parse(&["hookgate", "dlq", "replay", "7", "--json"]) {
            Ok(Command::Dlq { command }) => {
                let (op, args) = command.into_op();
                assert_eq!(op, QueueOp::Replay(Select::One(7)));
                assert!(args.json);
            }
            other => panic!("{other:?}"),
        }
        assert!(parse(&["hookgate", "dlq", "list", "--limit", "0"]).is_err());
        assert!(parse(&["hookgate", "dlq", "list", "--limit", "1001"]).is_err());
    }

    #[test]
    fn list_requests_encode_the_route() {
        let (m, path, body) = api_request(&QueueOp::ListDead {
            route: Some("a b&c".into()),
            limit: 5,
        });
        assert_eq!(
            (m, path.as_str()),
            (http::Method::GET, "/dlq?limit=5&route=a%20b%26c")
        );
        assert!(body.is_none());
        let (m, path, body) = api_request(&QueueOp::Purge(Select::all(None)));
        assert_eq!((m, path.as_str()), (http::Method::POST, "/dlq/purge"));
        assert_eq!(body, Some(json!({ "all": true })));
        let (_, _, body) = api_request(&QueueOp::Replay(Select::All {
            route: Some("r".into()),
            older_than: Some(std::time::Duration::from_secs(90)),
        }));
        assert_eq!(
            body,
            Some(json!({ "all": true, "route": "r", "older_than_s": 90 }))
        );
    }
}
