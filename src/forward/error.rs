//! Error responses in the model API's shape:
//! `{"type":"error","error":{"type":"...","message":"..."}}`.
//!
//! Each failure is tagged by side (client, upstream, internal) because the side picks the
//! status code, the log level and the metric label.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

use super::body::{full, ProxyBody};

/// Which side a failure comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Upstream,
    Internal,
}

/// A failure that ends a request with an error response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyError {
    /// The upstream refused or could not be reached: 502.
    UpstreamUnavailable,
    /// The upstream did not answer within `timeouts.upstream_response`: 504.
    UpstreamTimeout,
    /// The upstream broke the exchange (protocol error, reset): 502.
    UpstreamProtocol,
    /// The client's request could not be forwarded as sent: 400.
    BadRequest,
}

impl ProxyError {
    pub fn side(self) -> Side {
        match self {
            Self::UpstreamUnavailable | Self::UpstreamTimeout | Self::UpstreamProtocol => {
                Side::Upstream
            }
            Self::BadRequest => Side::Client,
        }
    }
    pub fn status(self) -> StatusCode {
        match self {
            Self::UpstreamUnavailable | Self::UpstreamProtocol => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::BadRequest => StatusCode::BAD_REQUEST,
        }
    }
    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::UpstreamUnavailable => "upstream_unavailable",
            Self::UpstreamTimeout => "upstream_timeout",
            Self::UpstreamProtocol => "upstream_protocol",
            Self::BadRequest => "bad_request",
        }
    }
    fn api_type(self) -> &'static str {
        match self {
            Self::UpstreamUnavailable | Self::UpstreamProtocol => "api_error",
            Self::UpstreamTimeout => "timeout_error",
            Self::BadRequest => "invalid_request_error",
        }
    }
    fn message(self) -> &'static str {
        match self {
            Self::UpstreamUnavailable => "The upstream service is unavailable.",
            Self::UpstreamTimeout => "The upstream service did not respond in time.",
            Self::UpstreamProtocol => "The upstream service returned an invalid response.",
            Self::BadRequest => "The request could not be forwarded.",
        }
    }
    pub fn response(self) -> Response<ProxyBody> {
        error_response(self.status(), self.api_type(), self.message())
    }
}

/// A JSON error response in the model API's shape.
pub fn error_response(status: StatusCode, kind: &str, message: &str) -> Response<ProxyBody> {
    let body = serde_json::json!({"type": "error", "error": {"type": kind, "message": message}});
    let mut resp = Response::new(full(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn shape_is_the_model_api_error() {
        let resp = ProxyError::UpstreamTimeout.response();
        assert_eq!(resp.status(), StatusCode::GATEWAY_TIMEOUT);
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "timeout_error");
    }
}
