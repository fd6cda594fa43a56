//! The admin listener (127.0.0.1 by default): `/metrics` in Prometheus text format,
//! `/healthz` (the process answers) and `/readyz` (listeners up and not shutting down).
//!
//! Metrics go through the `metrics` facade; `metrics-exporter-prometheus` renders them. Its own
//! HTTP listener is not used, so one hyper server serves every admin path.

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

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

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
            Ok(h) => Some(h),
            Err(e) => {
                warn!(error = %e, "metrics recorder not installed");
                None
            }
        }
    });
}

/// The current metrics in Prometheus text format.
pub fn render_metrics() -> String {
    match HANDLE.get() {
        Some(Some(h)) => h.render(),
        _ => String::new(),
    }
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
