//! The command line: `serve`, `check`, `sign` and `sink`, and the exit codes (0 ok, 64
//! invalid config or unknown route, 66 an unreadable input file, 1 a runtime failure
//! such as a port in use, 2 bad arguments).

use crate::config::{self, units, Config, Errors};
use crate::log::LogFormat;
use clap::{Parser, Subcommand};
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
    let widths: Vec<usize> = (0..10)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}
