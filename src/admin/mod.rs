//! The admin listener (127.0.0.1 by default): `/metrics` in Prometheus text format,
//! `/healthz` (the process answers) and `/readyz` (listeners up and not shutting down).
//!
//! Metrics go through the `metrics` facade; `metrics-exporter-prometheus` renders them. Its own
//! HTTP listener is not used, so one hyper server serves every admin path. The few that every
//! request updates are counted per thread instead ([`hot`]) and rendered after them.
//!
//! Histogram samples wait in a lock-free bucket until they are folded into the histogram's
//! counts, which the exporter does only on a render or an explicit upkeep. With no scraper (or
//! `--admin off`) the buckets would grow without bound, and a scrape after a long pause would
//! fold millions of samples at once; a thread of its own, off the proxy's runtime, folds them
//! every [`UPKEEP_EVERY`].

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::warn;

use crate::forward::body::{full, ProxyBody};

pub mod hot;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// How often histogram samples are folded into their counts (see the module docs).
pub const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The name of the thread that runs the upkeep.
pub const UPKEEP_THREAD: &str = "metrics-upkeep";

fn spawn_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name(UPKEEP_THREAD.into())
        .spawn(move || loop {
            std::thread::sleep(UPKEEP_EVERY);
            handle.run_upkeep();
        });
    if let Err(e) = spawned {
        warn!(error = %e, "metrics upkeep thread not started; histograms drain only on a scrape");
    }
}

/// Installs the process-wide Prometheus recorder once; later calls are no-ops.
pub fn install_metrics() {
    // Histograms as Prometheus histograms (not summaries), with buckets from 50 µs to 60 s:
    // gate overhead sits in the microseconds, upstream time in the seconds.
    const BUCKETS: &[f64] = &[
        0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
        1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    ];
    HANDLE.get_or_init(|| {
        match PrometheusBuilder::new()
            .set_buckets(BUCKETS)
            .and_then(|b| b.install_recorder())
        {
            Ok(h) => {
                spawn_upkeep(h.clone());
                Some(h)
            }
            Err(e) => {
                warn!(error = %e, "metrics recorder not installed");
                None
            }
        }
    });
}

/// The current metrics in Prometheus text format.
pub fn render_metrics() -> String {
    let mut out = match HANDLE.get() {
        Some(Some(h)) => h.render(),
        _ => String::new(),
    };
    hot::render(&mut out);
    out
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<ProxyBody> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}

/// What `/readyz` looks at: the listeners are up and not draining (`serving`), a policy is
/// loaded (always, once the proxy is bound), and the counter store answers.
pub struct Readiness {
    pub serving: AtomicBool,
    pub store: Arc<dyn crate::limit::CounterStore>,
}

fn route(req: &Request<Incoming>, ready: &Readiness) -> Response<ProxyBody> {
    match req.uri().path() {
        "/metrics" => text(StatusCode::OK, render_metrics()),
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => {
            if !ready.serving.load(Ordering::Relaxed) {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not ready: shutting down\n",
                )
            } else if !ready.store.is_up() {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not ready: counter store down\n",
                )
            } else {
                text(StatusCode::OK, "ready\n")
            }
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// Serves the admin paths until `stop` fires.
pub async fn serve(listener: TcpListener, ready: Arc<Readiness>, mut stop: watch::Receiver<bool>) {
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r { Ok(v) => v, Err(_) => continue },
            _ = stop.changed() => return,
        };
        let ready = ready.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let resp = route(&req, &ready);
                async move { Ok::<_, Infallible>(resp) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
