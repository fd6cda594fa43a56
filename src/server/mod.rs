//! The IO shell: listeners, the accept loops, connection limits and graceful shutdown.
//!
//! [`Proxy::bind`] opens every listener first (so a test can bind `127.0.0.1:0` and learn the
//! port), then [`Proxy::run`] serves until the shutdown future resolves, stops accepting, asks
//! every connection to finish its requests, and waits at most `server.shutdown_grace`.

pub mod conn;
mod h2;
mod h2native;
pub mod info;
pub mod io;
pub mod proxy_protocol;
pub mod tcp_info;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use ipnet::IpNet;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use crate::admin;
use crate::config::{Config, StoreKind};
use crate::evidence::{EvidenceConfig, EvidenceLog, EvidenceWriter};
use crate::forward::{ForwardSetupError, Forwarder};
use crate::gate::{reload, Fallback, Gate};
use crate::limit::local::{LocalBounds, LocalStore};
use crate::limit::redis::RedisStore;
use crate::limit::{CounterStore, SystemClock};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Tls(#[from] tls::TlsSetupError),
    #[error(transparent)]
    Forward(#[from] ForwardSetupError),
    #[error("store: {0}")]
    Store(String),
    #[error("evidence.path {path}: {source}")]
    Evidence {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid policy:\n{}", .0.join("\n"))]
    Policy(Vec<String>),
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// State shared by every connection of one proxy.
pub struct Shared {
    pub cfg: Arc<Config>,
    pub gate: Arc<Gate>,
    acceptor: TlsAcceptor,
    forwarder: Forwarder,
    http_h1: auto::Builder<TokioExecutor>,
    http_auto: auto::Builder<TokioExecutor>,
    trusted: Vec<IpNet>,
    stats: Stats,
}

/// Metric handles used per request, registered once (a macro call per request would hash the
/// metric key every time).
struct Stats {
    /// Per measured TLS connection: TLS round trip minus TCP round trip.
    relay_gap_seconds: metrics::Histogram,
}

impl Stats {
    fn register() -> Self {
        Self {
            relay_gap_seconds: metrics::histogram!("portcullis_relay_gap_seconds"),
        }
    }
}

impl Shared {
    fn is_trusted_proxy(&self, peer: SocketAddr) -> bool {
        let ip = peer.ip().to_canonical();
        self.trusted.iter().any(|n| n.contains(&ip))
    }
}

fn http_builder(cfg: &Config) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(cfg.timeouts.header_read)
        .max_buf_size(cfg.server.max_header_bytes)
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(cfg.server.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(256);
    b
}

/// A bound, not yet running proxy.
pub struct Proxy {
    shared: Arc<Shared>,
    evidence_writer: Option<EvidenceWriter>,
    tls_listener: TcpListener,
    plain_listener: Option<TcpListener>,
    admin_listener: Option<TcpListener>,
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { what, addr, source })
}

impl Proxy {
    /// Builds TLS, the upstream client and the listeners; fails before serving anything.
    pub async fn bind(cfg: Config) -> Result<Self, ServerError> {
        admin::install_metrics();
        let acceptor = TlsAcceptor::from(tls::server_config(&cfg)?);
        let active = reload::load_active(&cfg).map_err(ServerError::Policy)?;
        let store: Arc<dyn CounterStore> = match cfg.store.kind {
            StoreKind::Local => Arc::new(LocalStore::new(
                Arc::new(SystemClock::default()),
                LocalBounds {
                    max_keys: cfg.store.max_keys,
                },
            )),
            // Starts even when Redis is down (then reconnects in the background).
            StoreKind::Redis => Arc::new(
                RedisStore::connect(&cfg.store.redis.to_store_config())
                    .await
                    .map_err(|e| ServerError::Store(e.to_string()))?,
            ),
        };
        let (evidence, evidence_writer) = match &cfg.evidence.path {
            Some(p) => {
                let e = &cfg.evidence;
                let ecfg = EvidenceConfig {
                    path: cfg.resolve(p),
                    max_bytes: e.max_bytes,
                    max_age: e.max_age,
                    keep: e.keep,
                    compress: e.compress,
                    fsync_interval: e.fsync_interval,
                    queue: e.queue,
                };
                let (log, writer) =
                    EvidenceLog::start(ecfg).map_err(|source| ServerError::Evidence {
                        path: cfg.resolve(p).display().to_string(),
                        source,
                    })?;
                (Some(log), Some(writer))
            }
            None => (None, None),
        };
        let fallback = match cfg.store.kind {
            StoreKind::Local => None,
            StoreKind::Redis => Some(Fallback {
                store: Arc::new(LocalStore::new(
                    Arc::new(SystemClock::default()),
                    LocalBounds {
                        max_keys: cfg.store.max_keys,
                    },
                )),
                fleet_size: cfg.store.fleet_size,
            }),
        };
        let mut gate = Gate::new(active, store, fallback, evidence);
        if let Some(url) = &cfg.evidence.stream_url {
            let stream = crate::evidence::stream::EvidenceStream::start(
                crate::evidence::stream::StreamConfig {
                    url: url.clone(),
                    key: cfg.evidence.stream_key.clone(),
                    maxlen: cfg.evidence.stream_maxlen,
                    queue: cfg.evidence.queue,
                },
            )
            .map_err(|e| ServerError::Store(format!("evidence.stream_url: {e}")))?;
            gate = gate.with_stream(stream);
        }
        let gate = Arc::new(gate);
        let forwarder = Forwarder::new(&cfg)?;
        let tls_listener = bind("server.listen", cfg.server.listen).await?;
        let plain_listener = match cfg.server.plain_listen {
            Some(a) => Some(bind("server.plain_listen", a).await?),
            None => None,
        };
        let admin_listener = match cfg.admin.listen {
            Some(a) => Some(bind("admin.listen", a).await?),
            None => None,
        };
        let shared = Shared {
            acceptor,
            forwarder,
            http_h1: http_builder(&cfg).http1_only(),
            http_auto: http_builder(&cfg),
            trusted: cfg.server.trusted_proxies.clone(),
            stats: Stats::register(),
            gate,
            cfg: Arc::new(cfg),
        };
        Ok(Self {
            shared: Arc::new(shared),
            evidence_writer,
            tls_listener,
            plain_listener,
            admin_listener,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.tls_listener
            .local_addr()
            .unwrap_or(self.shared.cfg.server.listen)
    }
    pub fn plain_addr(&self) -> Option<SocketAddr> {
        self.plain_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }
    /// The gate (policy and counters) this proxy decides with.
    pub fn gate(&self) -> Arc<Gate> {
        self.shared.gate.clone()
    }
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// Serves until `shutdown` resolves, then drains gracefully.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        let max = self.shared.cfg.server.max_connections;
        let limit = Arc::new(Semaphore::new(max));
        let (stop_tx, stop_rx) = watch::channel(false);
        let ready = Arc::new(admin::Readiness {
            serving: std::sync::atomic::AtomicBool::new(true),
            store: self.shared.gate.store().clone(),
        });
        let mut tasks = tokio::task::JoinSet::new();
        // The evidence writer is not in `tasks`: it must outlive the drain to flush.
        let writer = self.evidence_writer.take().map(|w| tokio::spawn(w.run()));
        info!(listen = %self.local_addr(), upstream = %self.shared.cfg.upstream.url, "portcullis serving");
        tasks.spawn(accept_loop(
            self.shared.clone(),
            self.tls_listener,
            limit.clone(),
            stop_rx.clone(),
            Kind::Tls,
        ));
        if let Some(l) = self.plain_listener {
            tasks.spawn(accept_loop(
                self.shared.clone(),
                l,
                limit.clone(),
                stop_rx.clone(),
                Kind::Plain,
            ));
        }
        tasks.spawn(reload::watch_task(
            self.shared.gate.clone(),
            self.shared.cfg.clone(),
            stop_rx.clone(),
        ));
        if let Some(l) = self.admin_listener {
            tasks.spawn(admin::serve(l, ready.clone(), stop_rx.clone()));
        }
        shutdown.await;
        info!("shutting down: no new connections, draining requests");
        ready
            .serving
            .store(false, std::sync::atomic::Ordering::Relaxed);
        let _ = stop_tx.send(true);
        let grace = self.shared.cfg.server.shutdown_grace;
        let all = u32::try_from(max).unwrap_or(u32::MAX);
        match tokio::time::timeout(grace, limit.acquire_many(all)).await {
            Ok(_) => info!("all connections closed"),
            Err(_) => warn!(grace = ?grace, "shutdown grace elapsed with connections still open"),
        }
        tasks.abort_all();
        if let Some(log) = self.shared.gate.evidence() {
            log.shutdown().await;
            info!(
                written = log.written(),
                dropped = log.dropped(),
                "evidence flushed"
            );
        }
        if let Some(w) = writer {
            let _ = w.await;
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Tls,
    Plain,
}

async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    limit: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
    kind: Kind,
) {
    let label = match kind {
        Kind::Tls => "tls",
        Kind::Plain => "plain",
    };
    loop {
        let accepted: std::io::Result<(TcpStream, SocketAddr)> = tokio::select! {
            r = listener.accept() => r,
            _ = stop.changed() => return,
        };
        let (stream, peer) = match accepted {
            Ok(v) => v,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            metrics::counter!("portcullis_connections_rejected_total", "reason" => "max_connections").increment(1);
            debug!(%peer, "max_connections reached; closing");
            drop(stream);
            continue;
        };
        metrics::counter!("portcullis_connections_accepted_total", "listener" => label)
            .increment(1);
        let shared = shared.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            metrics::gauge!("portcullis_connections_active").increment(1.0);
            match kind {
                Kind::Tls => conn::serve_tls(shared, stream, peer, stop).await,
                Kind::Plain => conn::serve_plain(shared, stream, peer, stop).await,
            }
            metrics::gauge!("portcullis_connections_active").decrement(1.0);
            drop(permit);
        });
    }
}
