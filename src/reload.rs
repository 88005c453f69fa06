//! Live reload. On SIGHUP, or when the config file or a file it names (secret files,
//! certificates, keys, CA bundles) changes, the config is read and validated again:
//!
//! - a valid config becomes a new [`Generation`] and is swapped in as a whole. Requests in
//!   flight finish on the generation they started with; each route keeps its rate-limit
//!   budgets, dedup memory and learned secret when those still apply (see
//!   `server::RouteState::new`); new TLS handshakes use the new certificates while open
//!   connections keep theirs;
//! - an invalid one is refused, with every error logged, and the running config keeps
//!   serving;
//! - what cannot change without a restart (listen addresses, workers) is reported as
//!   such, and the running value stays.
//!
//! Files are watched by polling their metadata (modification time, size, inode) every
//! `reload.interval`: it needs no inotify, and it sees a Kubernetes ConfigMap or Secret
//! update, which swaps a symlink to a new directory.

use crate::cli;
use crate::config::Config;
use crate::listener::{Generation, Shared};
use crate::server::Gateway;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::mpsc;

/// Where a reload reads the config from, and what asks for one.
#[derive(Default)]
pub struct Options {
    /// The config file; `None` is the embedded default (SIGHUP still re-reads the files
    /// it names).
    pub path: Option<PathBuf>,
    /// Reload requests, e.g. one per SIGHUP.
    pub requests: Option<mpsc::UnboundedReceiver<()>>,
}

/// One file's identity as far as change detection goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stamp {
    Present {
        modified: Option<SystemTime>,
        len: u64,
        inode: u64,
    },
    Missing,
}

fn stamp(path: &Path) -> Stamp {
    match std::fs::metadata(path) {
        Ok(m) => Stamp::Present {
            modified: m.modified().ok(),
            len: m.len(),
            #[cfg(unix)]
            inode: std::os::unix::fs::MetadataExt::ino(&m),
            #[cfg(not(unix))]
            inode: 0,
        },
        Err(_) => Stamp::Missing,
    }
}

/// The watched files and their stamps.
#[derive(Debug, Default, PartialEq, Eq)]
struct Watched(Vec<(PathBuf, Stamp)>);

impl Watched {
    fn of(path: Option<&Path>, config: &Config) -> Watched {
        let files = path
            .map(Path::to_path_buf)
            .into_iter()
            .chain(config.source_files());
        Watched(files.map(|p| (p.clone(), stamp(&p))).collect())
    }

    /// The first watched file whose stamp changed.
    fn changed(&self) -> Option<&Path> {
        self.0
            .iter()
            .find(|(p, s)| stamp(p) != *s)
            .map(|(p, _)| p.as_path())
    }
}

/// Serves reload requests and watches files until the task is aborted.
pub async fn run(shared: Arc<Shared>, config: Config, mut opts: Options) {
    let mut running = config;
    let mut watched = Watched::of(opts.path.as_deref(), &running);
    let mut tick = tokio::time::interval(running.reload.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let why = tokio::select! {
            Some(()) = recv(&mut opts.requests) => "SIGHUP".to_string(),
            _ = tick.tick(), if running.reload.watch => match watched.changed() {
                Some(p) => format!("{} changed", p.display()),
                None => continue,
            },
        };
        // Let an editor or kubelet finish writing before reading.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let next = reload(&shared, &running, opts.path.as_deref(), &why);
        if let Some(next) = next {
            if next.reload.interval != running.reload.interval {
                tick = tokio::time::interval(next.reload.interval);
            }
            running = next;
        }
        // Stamp after the attempt either way: a broken file is tried again when it
        // changes again (or on SIGHUP), not on every tick.
        watched = Watched::of(opts.path.as_deref(), &running);
    }
}

async fn recv(rx: &mut Option<mpsc::UnboundedReceiver<()>>) -> Option<()> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Reads, validates and swaps in the config; returns it if it was swapped in.
pub fn reload(shared: &Shared, running: &Config, path: Option<&Path>, why: &str) -> Option<Config> {
    let source = cli::read_source(path);
    let next = match cli::load(&source) {
        Ok(c) => c,
        Err(msg) => {
            crate::metrics::global()
                .reloads
                .get_or_create(&crate::metrics::ResultLabels { result: "failed" })
                .inc();
            tracing::error!(
                trigger = why,
                errors = %msg.trim_end(),
                "config reload refused; the running config keeps serving"
            );
            return None;
        }
    };
    for change in restart_only(running, &next) {
        tracing::warn!(
            trigger = why,
            "{change} changed: this takes a restart; the running value stays until then"
        );
    }
    let previous = shared.current();
    let gateway = Arc::new(Gateway::new(&next, Some(&previous.gateway)));
    shared.swap(Generation::new(gateway, next.tls.clone(), next.limits));
    crate::metrics::global()
        .reloads
        .get_or_create(&crate::metrics::ResultLabels { result: "ok" })
        .inc();
    tracing::info!(
        trigger = why,
        config = %source.label,
        routes = next.routes.len(),
        tls = next.tls.is_some(),
        "config reloaded"
    );
    Some(next)
}

/// The settings a running process cannot change.
fn restart_only(running: &Config, next: &Config) -> Vec<String> {
    let mut out = Vec::new();
    if running.listen != next.listen {
        out.push(format!("listen ({} → {})", running.listen, next.listen));
    }
    if running.admin_listen != next.admin_listen {
        let show = |a: Option<std::net::SocketAddr>| {
            a.map(|a| a.to_string()).unwrap_or_else(|| "off".into())
        };
        out.push(format!(
            "admin.listen ({} → {})",
            show(running.admin_listen),
            show(next.admin_listen)
        ));
    }
    if running.store != next.store {
        out.push("store".to_string());
    }
    if running.workers != next.workers {
        out.push(format!("workers ({} → {})", running.workers, next.workers));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_file_is_noticed_by_its_stamp() {
        let dir = std::env::temp_dir().join(format!("hookgate-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("secret");
        std::fs::write(&f, "one").unwrap();
        let w = Watched(vec![(f.clone(), stamp(&f))]);
        assert_eq!(w.changed(), None);
        std::fs::write(&f, "three").unwrap();
        assert_eq!(w.changed(), Some(f.as_path()));
        // A symlink swapped to a new file (what kubelet does) is a change too.
        let w = Watched(vec![(f.clone(), stamp(&f))]);
        let g = dir.join("secret.new");
        std::fs::write(&g, "three").unwrap();
        std::fs::rename(&g, &f).unwrap();
        assert_eq!(w.changed(), Some(f.as_path()));
        std::fs::remove_file(&f).unwrap();
        assert_eq!(stamp(&f), Stamp::Missing);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn listener_changes_are_restart_only() {
        let a = cli::load(&cli::read_source(None)).unwrap();
        let mut b = a.clone();
        assert!(restart_only(&a, &b).is_empty());
        b.listen = "127.0.0.1:1".parse().unwrap();
        b.workers = a.workers + 1;
        let changes = restart_only(&a, &b);
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert!(changes[0].starts_with("listen ("));
    }
}
