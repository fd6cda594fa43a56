//! The `portcullis` command: `run`, `demo`, `check`, `mock-upstream`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use portcullis::config::Config;
use portcullis::server::Proxy;
use tracing_subscriber::EnvFilter;

/// mimalloc instead of glibc malloc: see Cargo.toml and docs/benchmarks.md (the library
/// leaves the allocator to the binary that embeds it).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "portcullis",
    version,
    about = "TLS edge proxy that fingerprints clients and limits distillation campaigns"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the proxy.
    Run(RunArgs),
    /// Run the proxy with the bundled mock model API as its upstream (a newcomer's first look).
    Demo(RunArgs),
    /// Validate a configuration file; exit 1 and list every problem if it is invalid.
    Check {
        /// The file to check.
        file: PathBuf,
    },
    /// Investigate evidence logs: top rules, fingerprints, subnets, account clusters, timeline.
    Investigate(portcullis::investigate::InvestigateArgs),
    /// Serve the mock model API (Messages JSON + SSE) used by the demo and the tests.
    MockUpstream {
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: SocketAddr,
    },
}

#[derive(Args, Clone)]
struct RunArgs {
    /// Configuration file; without it, the embedded default (this repository's config.toml).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Override server.listen.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Override upstream.url (`host:port` means http://host:port).
    #[arg(long)]
    upstream: Option<String>,
    /// Override tls.cert.
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// Override tls.key.
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// Override server.workers.
    #[arg(long)]
    workers: Option<usize>,
    /// Override admin.listen; `off` disables the admin listener.
    #[arg(long)]
    admin: Option<String>,
}

fn load(args: &RunArgs) -> Result<Config> {
    let mut cfg = match &args.config {
        Some(p) => Config::load(p)?,
        None => Config::embedded_default()?,
    };
    if let Some(l) = args.listen {
        cfg.server.listen = l;
    }
    if let Some(u) = &args.upstream {
        cfg.upstream.url = if u.contains("://") {
            u.clone()
        } else {
            format!("http://{u}")
        };
    }
    if let (Some(c), Some(k)) = (&args.cert, &args.key) {
        cfg.tls.cert = Some(c.clone());
        cfg.tls.key = Some(k.clone());
    }
    if let Some(w) = args.workers {
        cfg.server.workers = w;
    }
    match args.admin.as_deref() {
        Some("off") => cfg.admin.listen = None,
        Some(a) => cfg.admin.listen = Some(a.parse().context("--admin")?),
        None => {}
    }
    let problems = cfg.problems();
    anyhow::ensure!(
        problems.is_empty(),
        "invalid settings:\n{}",
        problems.join("\n")
    );
    Ok(cfg)
}

/// One worker: a current-thread runtime (no work-stealing machinery, measurably cheaper per
/// request when pinned to one CPU); otherwise a multi-thread runtime with `workers` threads
/// (0 = one per CPU).
fn runtime(workers: usize) -> Result<tokio::runtime::Runtime> {
    let mut b = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    if workers > 1 {
        b.worker_threads(workers);
    }
    Ok(b.enable_all().build()?)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

fn run(args: RunArgs, demo: bool) -> Result<()> {
    let cfg = load(&args)?;
    runtime(cfg.server.workers)?.block_on(async move {
        if demo {
            let uri: http::Uri = cfg.upstream.url.parse()?;
            let host = uri.host().unwrap_or("127.0.0.1");
            let port = uri.port_u16().unwrap_or(80);
            let addr: SocketAddr = format!("{host}:{port}").parse().context("demo upstream must be an IP address")?;
            let bound = portcullis::mock::spawn(addr)
                .await
                .with_context(|| format!("mock upstream on {addr}"))?;
            tracing::info!(%bound, "mock model API listening");
        }
        let proxy = Proxy::bind(cfg).await?;
        if demo {
            let a = proxy.local_addr();
            eprintln!(
                "\nportcullis demo: try\n  curl -sk https://localhost:{}/v1/echo\n  curl -skN https://localhost:{}/v1/messages -d '{{\"model\":\"m\",\"stream\":true,\"messages\":[]}}'\n",
                a.port(),
                a.port()
            );
        }
        proxy.run(shutdown_signal()).await;
        Ok(())
    })
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().cmd {
        Cmd::Run(a) => run(a, false),
        Cmd::Demo(a) => run(a, true),
        Cmd::Check { file } => {
            let problems = match Config::load(&file) {
                Ok(cfg) => match portcullis::gate::reload::load_policy(&cfg) {
                    Ok(policy) => {
                        println!(
                            "{}: ok (policy {:?}, {} rules)",
                            file.display(),
                            policy.version(),
                            policy.rules().len()
                        );
                        return Ok(());
                    }
                    Err(problems) => problems,
                },
                Err(e) => vec![e.to_string()],
            };
            for p in &problems {
                eprintln!("{p}");
            }
            eprintln!(
                "{}: {} problem(s); the file is not valid",
                file.display(),
                problems.len()
            );
            std::process::exit(1);
        }
        Cmd::Investigate(args) => portcullis::investigate::cli_main(args),
        Cmd::MockUpstream { listen } => runtime(0)?.block_on(async move {
            let l = tokio::net::TcpListener::bind(listen).await?;
            tracing::info!(%listen, "mock model API listening");
            portcullis::mock::serve(l).await;
            Ok(())
        }),
    }
}
