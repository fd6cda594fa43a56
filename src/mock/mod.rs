//! A mock model API for the demo and the tests (`portcullis mock-upstream`).
//!
//! - `POST /v1/messages`: a Messages-style JSON request. With `"stream": true` the answer is a
//!   server-sent-events stream (`message_start`, `content_block_delta`…, `message_delta` with
//!   usage, `message_stop`), one event every `delay_ms` (query, default 20); otherwise one JSON
//!   message with a `usage` object.
//! - `GET /v1/stream?n=N&delay_ms=D`: N `data:` events D ms apart, then `data: [DONE]`.
//! - `GET` or `POST /v1/echo`: the request's method, path and headers as JSON (shows what the
//!   proxy sent; a POST body is ignored).
//! - `GET /v1/slow?ms=M`: answers after M ms (for upstream timeout tests).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::channel::Channel;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::json;
use tokio::net::TcpListener;

use crate::forward::body::{full, BoxError, ProxyBody};
use crate::forward::error::error_response;

fn query_u64(req: &Request<Incoming>, key: &str, default: u64) -> u64 {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(default)
}

fn json_response(v: serde_json::Value) -> Response<ProxyBody> {
    let mut r = Response::new(full(v.to_string()));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Streams `events` (already formatted SSE text) with `delay` between them.
fn sse(events: Vec<String>, delay: Duration) -> Response<ProxyBody> {
    // One frame per event, sent as soon as it is produced.
    let (mut tx, body) = Channel::<Bytes, BoxError>::new(4);
    tokio::spawn(async move {
        for (i, e) in events.into_iter().enumerate() {
            if i > 0 && !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if tx.send_data(Bytes::from(e)).await.is_err() {
                return; // client went away
            }
        }
    });
    let mut r = Response::new(body.boxed_unsync());
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

fn event(name: &str, data: serde_json::Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

async fn messages(req: Request<Incoming>) -> Response<ProxyBody> {
    let delay = Duration::from_millis(query_u64(&req, "delay_ms", 20));
    let body = match Limited::new(req.into_body(), 1 << 20).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request_too_large",
                "body too large",
            )
        }
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return error_response(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "body is not JSON",
        );
    };
    let model = v["model"].as_str().unwrap_or("mock-model").to_string();
    let words = [
        "The", " mock", " model", " answers", " one", " word", " at", " a", " time", ".",
    ];
    let max = v["max_tokens"]
        .as_u64()
        .unwrap_or(words.len() as u64)
        .clamp(1, 10_000);
    let n = usize::try_from(max).unwrap_or(1).min(words.len());
    let input_tokens = body.len() as u64 / 4;
    if v["stream"].as_bool() != Some(true) {
        let text: String = words[..n].concat();
        return json_response(json!({
            "id": "msg_mock", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": input_tokens, "output_tokens": n}
        }));
    }
    let mut events = vec![
        event(
            "message_start",
            json!({"type": "message_start", "message": {
            "id": "msg_mock", "type": "message", "role": "assistant", "model": model, "content": [],
            "usage": {"input_tokens": input_tokens, "output_tokens": 0}}}),
        ),
        event(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "text", "text": ""}}),
        ),
    ];
    for w in &words[..n] {
        events.push(event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": w}}),
        ));
    }
    events.push(event(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    events.push(event(
        "message_delta",
        json!({"type": "message_delta",
        "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": n}}),
    ));
    events.push(event("message_stop", json!({"type": "message_stop"})));
    sse(events, delay)
}

async fn handle(req: Request<Incoming>) -> Response<ProxyBody> {
    match (req.method(), req.uri().path()) {
        (&Method::POST, "/v1/messages") => messages(req).await,
        (&Method::GET, "/v1/stream") => {
            let n = query_u64(&req, "n", 10).min(10_000);
            let delay = Duration::from_millis(query_u64(&req, "delay_ms", 20));
            let mut events: Vec<String> =
                (0..n).map(|i| format!("data: {{\"i\":{i}}}\n\n")).collect();
            events.push("data: [DONE]\n\n".into());
            sse(events, delay)
        }
        (&Method::GET | &Method::POST, "/v1/echo") => {
            let headers: serde_json::Map<String, serde_json::Value> = req
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), json!(String::from_utf8_lossy(v.as_bytes()))))
                .collect();
            json_response(
                json!({"method": req.method().as_str(), "path": req.uri().path(), "headers": headers}),
            )
        }
        (&Method::GET, "/v1/slow") => {
            tokio::time::sleep(Duration::from_millis(query_u64(&req, "ms", 1000))).await;
            json_response(json!({"slow": true}))
        }
        _ => error_response(StatusCode::NOT_FOUND, "not_found_error", "no such endpoint"),
    }
}

/// Serves the mock API on `listener` forever (HTTP/1.1 and h2c).
pub async fn serve(listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let svc = service_fn(|req| async move { Ok::<_, Infallible>(handle(req).await) });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Binds `addr` and serves in a background task; returns the bound address.
pub async fn spawn(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let l = TcpListener::bind(addr).await?;
    let a = l.local_addr()?;
    tokio::spawn(serve(l));
    Ok(a)
}
