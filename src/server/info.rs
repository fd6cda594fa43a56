//! Per-connection facts, computed once and shared (`Arc`) with every request on the connection.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::HeaderValue;

use crate::fingerprint::{ClientHello, H2Fingerprint};

/// What portcullis knows about one client connection.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The client: the TCP peer, or the source named by a trusted PROXY header.
    pub peer: SocketAddr,
    /// The TCP peer as the kernel sees it (the balancer when PROXY protocol is used).
    pub tcp_peer: SocketAddr,
    /// The local address the connection arrived on.
    pub local: SocketAddr,
    /// `peer`'s IP as a header value, built once for `X-Forwarded-For`.
    pub peer_ip_header: HeaderValue,
    /// TLS facts; `None` on the plaintext listener.
    pub tls: Option<TlsInfo>,
    /// The headers the proxy adds for the upstream that are the same for every request of the
    /// connection (`X-Forwarded-*`, TLS fingerprints, round trips), encoded once by the
    /// forwarder at the first request as `name: value\r\n` lines.
    pub upstream_fields: OnceLock<Box<[u8]>>,
    /// The gate's last plan on this connection ([`crate::gate::PlanCache`]).
    pub plan_cache: crate::gate::PlanCache,
    /// The HTTP/2 (Akamai) fingerprint, set by the connection's tap before the first request
    /// is dispatched; empty on HTTP/1.1.
    pub h2: Arc<OnceLock<H2Fingerprint>>,
}

impl ConnInfo {
    pub fn new(
        peer: SocketAddr,
        tcp_peer: SocketAddr,
        local: SocketAddr,
        tls: Option<TlsInfo>,
    ) -> Self {
        Self {
            peer,
            tcp_peer,
            local,
            peer_ip_header: header_value(peer.ip().to_canonical().to_string()),
            tls,
            upstream_fields: OnceLock::new(),
            plan_cache: crate::gate::PlanCache::default(),
            h2: Arc::new(OnceLock::new()),
        }
    }
}

/// Facts from the ClientHello and the finished handshake.
#[derive(Debug, Clone)]
pub struct TlsInfo {
    pub sni: Option<String>,
    /// ALPN protocols the client offered, lossy UTF-8.
    pub alpn_offered: Vec<String>,
    /// ALPN protocol agreed, if any.
    pub alpn: Option<String>,
    /// Negotiated protocol version, e.g. "TLSv1.3".
    pub version: &'static str,
    pub ja3: HeaderValue,
    pub ja3_hash: HeaderValue,
    pub ja4: HeaderValue,
    pub ja4_r: HeaderValue,
    /// Round trips measured during the handshake; `None` when the kernel gave no TCP estimate.
    pub rtt: Option<Rtt>,
}

/// The relay signal's two round trips (docs/fingerprints.md, "Relay signal").
///
/// `tcp` is the kernel's estimate for the TCP peer (`TCP_INFO` minimum RTT); `tls` is the time
/// from the server's first handshake flight to the client's next bytes, which spans the whole
/// path to the TLS client. A relay terminates TCP near us but forwards TLS to a distant client,
/// so `tls` grows and `tcp` does not.
#[derive(Debug, Clone)]
pub struct Rtt {
    pub tcp: Duration,
    pub tls: Duration,
    /// `tcp` and `tls` in microseconds, as header values built once for the upstream.
    pub tcp_header: HeaderValue,
    pub tls_header: HeaderValue,
}

impl Rtt {
    pub fn new(tcp: Duration, tls: Duration) -> Self {
        Self {
            tcp,
            tls,
            tcp_header: HeaderValue::from(micros(tcp)),
            tls_header: HeaderValue::from(micros(tls)),
        }
    }
    /// How much longer the TLS round trip took than the TCP one.
    pub fn gap(&self) -> Duration {
        self.tls.saturating_sub(self.tcp)
    }
}

/// Whole microseconds, saturating.
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl TlsInfo {
    /// Fingerprints a ClientHello. Header values are built once here, not per request.
    pub fn from_hello(hello: &ClientHello) -> Self {
        let ja3 = hello.ja3();
        let ja4 = hello.ja4();
        Self {
            sni: hello.sni.clone(),
            alpn_offered: hello
                .alpn
                .iter()
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect(),
            alpn: None,
            version: "",
            ja3: header_value(ja3.full),
            ja3_hash: header_value(ja3.hash),
            ja4: header_value(ja4.ja4),
            ja4_r: header_value(ja4.ja4_r),
            rtt: None,
        }
    }
}

/// JA3/JA4 strings are ASCII digits, letters, `,`, `-` and `_`, always valid header values;
/// an empty value stands in should that ever not hold.
fn header_value(s: String) -> HeaderValue {
    HeaderValue::try_from(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}
