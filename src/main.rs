//! The `hookgate` binary: parse arguments, start logging, load the config, call the library.

use clap::Parser;
use hookgate::cli::{self, Cli, Command, EXIT_CONFIG, EXIT_RUNTIME};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = Cli::parse();
    match args.command {
        Command::Check { config } => {
            let source = cli::read_source(config.as_deref());
            match cli::load(&source) {
                Ok(cfg) => {
                    print!("{}", cli::render(&cfg, &source.label));
                    ExitCode::SUCCESS
                }
                Err(msg) => {
                    eprint!("{msg}");
                    ExitCode::from(EXIT_CONFIG as u8)
                }
            }
        }
        Command::Serve { config } => {
            let source = cli::read_source(config.as_deref());
            // The config is validated before any port is bound or thread started.
            let cfg = match cli::load(&source) {
                Ok(cfg) => cfg,
                Err(msg) => {
                    eprint!("{msg}");
                    return ExitCode::from(EXIT_CONFIG as u8);
                }
            };
            let _guard = hookgate::log::init(args.log_format, &args.log_level);
            // Thread per core: this thread is the first worker (and runs the admin API,
            // reloads and queued delivery); `server::run_with` starts the others, each
            // with its own current-thread runtime accepting from the same socket. No
            // work stealing, no cross-thread wake-ups on the request path.
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the runtime");
                    return ExitCode::from(EXIT_RUNTIME as u8);
                }
            };
            runtime.block_on(async move {
                let listeners = match hookgate::server::bind(&cfg).await {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!("{e}");
                        return ExitCode::from(EXIT_RUNTIME as u8);
                    }
                };
                tracing::info!(
                    config = %source.label,
                    listen = %listeners.public.local_addr().map(|a| a.to_string()).unwrap_or_default(),
                    admin = %listeners.admin.as_ref().and_then(|l| l.local_addr().ok()).map(|a| a.to_string()).unwrap_or_else(|| "off".into()),
                    workers = cfg.workers,
                    routes = cfg.routes.len(),
                    "hookgate listening"
                );
                let (reload_tx, reload_rx) = tokio::sync::mpsc::unbounded_channel();
                #[cfg(unix)]
                tokio::spawn(forward_sighup(reload_tx));
                #[cfg(not(unix))]
                drop(reload_tx);
                let reload = hookgate::reload::Options {
                    path: cli::config_path(config.as_deref()),
                    requests: Some(reload_rx),
                };
                let report =
                    hookgate::server::run_with(cfg, listeners, shutdown_signal(), reload).await;
                if let Some(e) = report.error {
                    tracing::error!("{e}");
                    return ExitCode::from(EXIT_RUNTIME as u8);
                }
                tracing::info!(cut = report.cut, "hookgate stopped");
                ExitCode::SUCCESS
            })
        }
        Command::Sign {
            config,
            route,
            body,
            print,
            url,
            private_key,
        } => {
            let source = cli::read_source(config.as_deref());
            let cfg = match cli::load(&source) {
                Ok(cfg) => cfg,
                Err(msg) => {
                    eprint!("{msg}");
                    return ExitCode::from(EXIT_CONFIG as u8);
                }
            };
            print_outcome(cli::sign(
                &cfg,
                &route,
                &body,
                print,
                url.as_deref(),
                private_key.as_deref(),
            ))
        }
        Command::Sink {
            listen,
            status,
            print,
            workers,
        } => {
            let Ok(status) = http::StatusCode::from_u16(status) else {
                eprintln!("--status {status} is not an HTTP status");
                return ExitCode::from(2);
            };
            // One worker: everything on this thread, no work-stealing machinery.
            let runtime = match workers {
                0 | 1 => tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build(),
                n => tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(n)
                    .enable_all()
                    .build(),
            }
            .expect("runtime");
            match runtime.block_on(hookgate::sink::run(listen, status, print)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("sink: {e}");
                    ExitCode::from(EXIT_RUNTIME as u8)
                }
            }
        }
        Command::Queue { command } => {
            let (op, admin) = command.into_op();
            print_outcome(cli::queue_admin(op, &admin))
        }
        Command::Dlq { command } => {
            let (op, admin) = command.into_op();
            print_outcome(cli::queue_admin(op, &admin))
        }
    }
}

/// Prints a subcommand's output, or its error message, and gives its exit code.
fn print_outcome(outcome: Result<String, (String, i32)>) -> ExitCode {
    match outcome {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err((msg, code)) => {
            eprint!("{msg}");
            ExitCode::from(code as u8)
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// SIGHUP asks for a config reload (its default action would end the process).
#[cfg(unix)]
async fn forward_sighup(reload: tokio::sync::mpsc::UnboundedSender<()>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::error!("cannot listen for SIGHUP; reload by changing the config file");
        return;
    };
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP received: reloading the config");
        if reload.send(()).is_err() {
            return;
        }
    }
}

/// mimalloc instead of glibc's malloc: a request makes a dozen short-lived allocations,
/// and glibc's free and consolidation were 5% of a core under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
