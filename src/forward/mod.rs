//! Forwarding to the model API: our own pooled HTTP/1.1 client (HTTP or HTTPS upstream,
//! [`upstream`]), header rewriting, and bodies streamed both ways — a server-sent-events
//! response reaches the client event by event because data is passed on as it arrives, never
//! collected.

pub mod body;
pub mod error;
pub mod headers;
pub mod upstream;

use std::sync::Arc;

use http::header::{HeaderName, HeaderValue, EXPECT};
use http::uri::Scheme;
use http::{Request, Response, Uri};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use crate::config::Config;
use crate::server::info::ConnInfo;
use body::ProxyBody;
use error::ProxyError;
use http_body_util::BodyExt;
use upstream::{HeadEdits, Upstream, UpstreamSettings, UpstreamTls};

#[derive(Debug, thiserror::Error)]
pub enum ForwardSetupError {
    #[error("upstream.url: {0}")]
    Url(String),
    #[error("upstream.ca {path}: {message}")]
    Ca { path: String, message: String },
}

/// Header names, parsed once. `None`: configured as `""`, that header is not sent.
#[derive(Debug, Clone)]
struct Names {
    ja3: Option<HeaderName>,
    ja3_hash: Option<HeaderName>,
    ja4: Option<HeaderName>,
    ja4_r: Option<HeaderName>,
    header_fp: Option<HeaderName>,
    h2: Option<HeaderName>,
    tcp_rtt: Option<HeaderName>,
    tls_rtt: Option<HeaderName>,
    /// Configured names outside [`headers::RESERVED_PREFIX`] (none by default).
    unprefixed: Vec<HeaderName>,
    forwarded_for: HeaderName,
    forwarded_proto: HeaderName,
    https: HeaderValue,
    http: HeaderValue,
}

impl Names {
    /// A client header the upstream never gets from the client: the ones the proxy sets
    /// (`X-Forwarded-*`, every fingerprint header) and `Expect`, which hyper's server side
    /// already answered by reading the body.
    fn is_reserved(&self, name: &HeaderName) -> bool {
        name == EXPECT
            || name == self.forwarded_for
            || name == self.forwarded_proto
            || name.as_str().starts_with(headers::RESERVED_PREFIX)
            || self.unprefixed.contains(name)
    }
}

/// The upstream client and everything needed to rewrite a request for it.
#[derive(Clone)]
pub struct Forwarder {
    upstream: Upstream,
    names: Arc<Names>,
}

/// `None` for `""`: that header is not sent.
fn header_name(s: &str) -> Result<Option<HeaderName>, ForwardSetupError> {
    if s.is_empty() {
        return Ok(None);
    }
    // Validated in config; kept fallible so a library caller gets an error, not a panic.
    HeaderName::from_bytes(s.as_bytes())
        .map(Some)
        .map_err(|e| ForwardSetupError::Url(format!("header name {s:?}: {e}")))
}

impl Forwarder {
    pub fn new(cfg: &Config) -> Result<Self, ForwardSetupError> {
        let uri: Uri = cfg
            .upstream
            .url
            .parse()
            .map_err(|e: http::uri::InvalidUri| ForwardSetupError::Url(e.to_string()))?;
        let scheme = uri.scheme().cloned().unwrap_or(Scheme::HTTP);
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| ForwardSetupError::Url("no host".into()))?;

        let mut roots = rustls::RootCertStore::empty();
        if scheme == Scheme::HTTPS {
            // System roots; a missing or partly unreadable store is not fatal when a CA is given.
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
        }
        if let Some(ca) = &cfg.upstream.ca {
            let path = cfg.resolve(ca);
            let pem = std::fs::read(&path).map_err(|e| ForwardSetupError::Ca {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
            for c in CertificateDer::pem_slice_iter(&pem) {
                let c = c.map_err(|e| ForwardSetupError::Ca {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })?;
                roots.add(c).map_err(|e| ForwardSetupError::Ca {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ForwardSetupError::Url(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];

        let tls = if scheme == Scheme::HTTPS {
            let name = authority
                .host()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let name = rustls_pki_types::ServerName::try_from(name)
                .map_err(|e| ForwardSetupError::Url(format!("upstream host: {e}")))?;
            Some(UpstreamTls {
                connector: tokio_rustls::TlsConnector::from(Arc::new(tls)),
                name,
            })
        } else {
            None
        };
        let target = Uri::builder()
            .scheme(scheme)
            .authority(authority)
            .path_and_query("/")
            .build()
            .map_err(|e| ForwardSetupError::Url(e.to_string()))?;
        let upstream = Upstream::new(UpstreamSettings {
            target,
            tls,
            connect_timeout: cfg.timeouts.upstream_connect,
            response_timeout: cfg.timeouts.upstream_response,
            max_idle: cfg.upstream.pool_max_idle,
            idle_timeout: cfg.upstream.pool_idle_timeout,
        })
        .ok_or_else(|| ForwardSetupError::Url("no host".into()))?;

        let h = &cfg.headers;
        let mut names = Names {
            ja3: header_name(&h.ja3)?,
            ja3_hash: header_name(&h.ja3_hash)?,
            ja4: header_name(&h.ja4)?,
            ja4_r: header_name(&h.ja4_r)?,
            header_fp: header_name(&h.header_fp)?,
            h2: header_name(&h.h2)?,
            tcp_rtt: header_name(&h.tcp_rtt)?,
            tls_rtt: header_name(&h.tls_rtt)?,
            unprefixed: Vec::new(),
            forwarded_for: HeaderName::from_static("x-forwarded-for"),
            forwarded_proto: HeaderName::from_static("x-forwarded-proto"),
            https: HeaderValue::from_static("https"),
            http: HeaderValue::from_static("http"),
        };
        names.unprefixed = [
            &names.ja3,
            &names.ja3_hash,
            &names.ja4,
            &names.ja4_r,
            &names.header_fp,
            &names.h2,
            &names.tcp_rtt,
            &names.tls_rtt,
        ]
        .into_iter()
        .flatten()
        .filter(|n| !n.as_str().starts_with(headers::RESERVED_PREFIX))
        .cloned()
        .collect();
        Ok(Self {
            upstream,
            names: Arc::new(names),
        })
    }

    /// The headers for the upstream that are the same for every request of the connection,
    /// encoded: `X-Forwarded-For`, `X-Forwarded-Proto`, the TLS fingerprints and round trips,
    /// the HTTP/2 fingerprint.
    fn connection_fields(&self, info: &ConnInfo) -> Box<[u8]> {
        let n = &*self.names;
        let mut out = Vec::with_capacity(512);
        let proto = if info.tls.is_some() {
            &n.https
        } else {
            &n.http
        };
        upstream::codec::put_header(&mut out, &n.forwarded_for, &info.peer_ip_header);
        upstream::codec::put_header(&mut out, &n.forwarded_proto, proto);
        if let Some(t) = &info.tls {
            let mut fields = vec![
                (&n.ja3, &t.ja3),
                (&n.ja3_hash, &t.ja3_hash),
                (&n.ja4, &t.ja4),
                (&n.ja4_r, &t.ja4_r),
            ];
            if let Some(r) = &t.rtt {
                fields.extend([(&n.tcp_rtt, &r.tcp_header), (&n.tls_rtt, &r.tls_header)]);
            }
            for (name, value) in fields {
                if let Some(name) = name {
                    upstream::codec::put_header(&mut out, name, value);
                }
            }
        }
        // Known once the connection's first request is in (its frames come before it).
        let h2 = info
            .h2
            .get()
            .and_then(|h2| HeaderValue::try_from(&h2.akamai).ok());
        if let (Some(name), Some(value)) = (&n.h2, h2) {
            upstream::codec::put_header(&mut out, name, &value);
        }
        out.into_boxed_slice()
    }

    /// Sends `req` upstream with its headers rewritten and returns the response, whose body
    /// streams through. `extra` headers (e.g. the gate's flags) are added after client copies
    /// of every reserved header are left out. The request is borrowed, not taken: an async
    /// call that takes it by value keeps a copy of it (264 bytes) in its future at every level,
    /// and the futures of a request are moved around whole.
    pub async fn forward<B>(
        &self,
        req: &mut Request<B>,
        info: &ConnInfo,
        header_fp: &str,
        extra: Vec<(HeaderName, http::HeaderValue)>,
    ) -> Result<Response<ProxyBody>, ProxyError>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + Sync + Unpin,
        B::Error: std::fmt::Display,
    {
        // The upstream hop is HTTP/1.1 in origin form whatever the client spoke, with the
        // upstream's own Host (src/forward/upstream). Hop-by-hop headers go first (rarely
        // any); the rest of the rewriting happens as the head is written.
        headers::strip_hop_by_hop(req.headers_mut());
        let n = &*self.names;
        let fixed = info
            .upstream_fields
            .get_or_init(|| self.connection_fields(info));
        let drop = |name: &HeaderName| n.is_reserved(name);
        // The header fingerprint's id (`h1_`/`h2_` and hex digits) is a valid value as it is.
        let fp_field = n
            .header_fp
            .as_ref()
            .map(|name| (name, header_fp.as_bytes()));
        let edits = HeadEdits {
            fixed,
            fields: fp_field.as_slice(),
            add: &extra,
            drop: &drop,
        };

        let resp = self.upstream.send(req, &edits).await?;
        let (mut parts, body) = resp.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers);
        Ok(Response::from_parts(parts, body.boxed_unsync()))
    }
}
