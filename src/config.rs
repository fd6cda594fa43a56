//! Proxy configuration: the `[server]`, `[tls]`, `[upstream]`, `[timeouts]`, `[headers]` and
//! `[admin]` tables of `config.toml`.
//!
//! Two stages, as everywhere in portcullis: serde reads raw structs (unknown keys rejected),
//! then [`Config::problems`] checks what serde cannot (addresses, URLs, files, ranges) and
//! reports every problem at once with its TOML path. The embedded default is the repository's
//! own `config.toml`, so `portcullis run` with no file behaves exactly like the documented file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

/// The repository's `config.toml`, compiled in: the embedded default.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("../config.toml");

/// Errors from loading a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{origin}: {message}")]
    Parse { origin: String, message: String },
    #[error("{origin}: {} problem(s):\n{}", .problems.len(), .problems.join("\n"))]
    Invalid {
        origin: String,
        problems: Vec<String>,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub tls: TlsConfig,
    #[serde(default)]
    pub upstream: UpstreamConfig,
    #[serde(default)]
    pub timeouts: Timeouts,
    #[serde(default)]
    pub headers: HeaderNames,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub evidence: EvidenceSettings,
    /// A separate file holding the `[policy]` table; when set, this file must not have one.
    pub policy_file: Option<PathBuf>,
    /// The `[policy]` table: read and validated by `crate::policy` from the file's text (so
    /// its messages carry line numbers), not by serde here.
    pub policy: Option<toml::Value>,
    /// Directory that relative paths in the file are resolved against (not a TOML key).
    #[serde(skip)]
    pub base_dir: Option<PathBuf>,
    /// The file this came from (None = embedded default); reloads re-read it.
    #[serde(skip)]
    pub source_path: Option<PathBuf>,
    /// The text this was parsed from, for the policy parser.
    #[serde(skip)]
    pub source_text: String,
}

/// The rejected-traffic evidence log (`docs/evidence.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvidenceSettings {
    /// The active JSON-lines file; relative paths resolve against the config file's directory
    /// (the working directory for the embedded default). Absent: no evidence is written.
    pub path: Option<PathBuf>,
    /// Rotate before the file would pass this many bytes (0: never by size).
    pub max_bytes: u64,
    /// Rotate a non-empty file this long after it was opened ("0s": never by age).
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// Rotated files kept; older ones are deleted.
    pub keep: usize,
    /// Gzip rotated files.
    pub compress: bool,
    /// fdatasync the active file at least this often while it has unsynced data.
    #[serde(with = "humantime_serde")]
    pub fsync_interval: Option<Duration>,
    /// Records waiting for the writer; beyond it records are dropped and counted.
    pub queue: usize,
    /// Optional second sink: a Redis Stream for the whole fleet (`redis://host:port/db`).
    pub stream_url: Option<String>,
    /// The stream's key.
    pub stream_key: String,
    /// Approximate cap on the stream's length (XADD MAXLEN ~).
    pub stream_maxlen: u64,
}

impl Default for EvidenceSettings {
    fn default() -> Self {
        // The writer's own defaults, so the two never drift apart.
        let d = crate::evidence::EvidenceConfig::default();
        Self {
            path: None,
            max_bytes: d.max_bytes,
            max_age: d.max_age,
            keep: d.keep,
            compress: d.compress,
            fsync_interval: d.fsync_interval,
            queue: d.queue,
            stream_url: None,
            stream_key: "portcullis:evidence".into(),
            stream_maxlen: 1_000_000,
        }
    }
}

/// Where limit counters live.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `local`: in this process's memory (the embedded default); `redis`: shared by the fleet.
    pub kind: StoreKind,
    /// Most keys held per map kind (rate, concurrency, distinct) by the local store (and by
    /// the local fallback budget); beyond it the least recently used fresh-equivalent entries
    /// are evicted (docs/policy.md).
    pub max_keys: usize,
    /// Proxies sharing the Redis counters. When Redis fails, a rule with
    /// `on_store_error = "local"` falls back to its limits divided by this number.
    pub fleet_size: u32,
    /// The Redis connection (`kind = "redis"`).
    pub redis: RedisSettings,
}

/// `[store.redis]`: see docs/redis.md.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisSettings {
    /// `redis://[user:password@]host:port/db` (standalone).
    pub url: String,
    /// Seed node URLs; non-empty selects Redis Cluster (`url` is then ignored).
    pub cluster: Vec<String>,
    /// Sentinel URLs; non-empty selects the master named `sentinel_master` (`url` then gives
    /// only the database and credentials).
    pub sentinels: Vec<String>,
    pub sentinel_master: String,
    /// Bound on each call; a request never waits longer for the counters.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Prepended to every key.
    pub key_prefix: String,
    /// How long a concurrency lease lives if its proxy dies mid-request.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// Keys remembered locally as over their limit (no Redis call for them); 0 disables.
    pub over_limit_cache: usize,
}

impl Default for RedisSettings {
    fn default() -> Self {
        let d = crate::limit::redis::RedisConfig::default();
        Self {
            url: d.url,
            cluster: d.cluster,
            sentinels: d.sentinels,
            sentinel_master: d.sentinel_master,
            timeout: d.timeout,
            key_prefix: d.key_prefix,
            lease_ttl: d.lease_ttl,
            over_limit_cache: d.over_limit_cache,
        }
    }
}

impl RedisSettings {
    pub fn to_store_config(&self) -> crate::limit::redis::RedisConfig {
        crate::limit::redis::RedisConfig {
            url: self.url.clone(),
            cluster: self.cluster.clone(),
            sentinels: self.sentinels.clone(),
            sentinel_master: self.sentinel_master.clone(),
            timeout: self.timeout,
            key_prefix: self.key_prefix.clone(),
            lease_ttl: self.lease_ttl,
            over_limit_cache: self.over_limit_cache,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    Local,
    Redis,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            kind: StoreKind::Local,
            max_keys: 100_000,
            fleet_size: 1,
            redis: RedisSettings::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// TLS listener.
    pub listen: SocketAddr,
    /// Optional plaintext HTTP listener, for deployments behind a TLS-terminating balancer.
    pub plain_listen: Option<SocketAddr>,
    /// Tokio worker threads; 0 = one per CPU.
    pub workers: usize,
    /// Connections served at once; further accepts are closed at once and counted.
    pub max_connections: usize,
    /// Largest request head (request line + headers) accepted, in bytes.
    pub max_header_bytes: usize,
    /// Peers allowed to prefix a PROXY protocol v1/v2 header. Empty = PROXY protocol off.
    pub trusted_proxies: Vec<IpNet>,
    /// How long a graceful shutdown waits for in-flight requests.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Which HTTP/2 server serves connections that negotiated `h2`.
    pub http2: Http2Server,
}

/// The HTTP/2 server implementation (`[server] http2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Http2Server {
    /// portcullis' own frame layer (`src/http2`): one task per connection, no locks.
    Native,
    /// The `h2` crate (hyper's HTTP/2), as before the native server.
    H2,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            plain_listen: None,
            workers: 0,
            max_connections: 10_000,
            max_header_bytes: 64 * 1024,
            trusted_proxies: Vec::new(),
            shutdown_grace: Duration::from_secs(30),
            http2: Http2Server::Native,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain; absent = the bundled development certificate for localhost.
    pub cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1); absent = the bundled development key.
    pub key: Option<PathBuf>,
    /// ALPN protocols offered, in preference order.
    pub alpn: Vec<String>,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            cert: None,
            key: None,
            alpn: vec!["h2".into(), "http/1.1".into()],
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// Base URL of the model API, `http://host:port` or `https://host:port`.
    pub url: String,
    /// Extra PEM CA bundle trusted for an HTTPS upstream (beside the system roots).
    pub ca: Option<PathBuf>,
    /// Idle upstream connections kept per host.
    pub pool_max_idle: usize,
    /// How long an idle upstream connection is kept.
    #[serde(with = "humantime_serde")]
    pub pool_idle_timeout: Duration,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8081".into(),
            ca: None,
            pool_max_idle: 256,
            pool_idle_timeout: Duration::from_secs(90),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// From accept until the whole ClientHello (and any PROXY header) is in.
    #[serde(with = "humantime_serde")]
    pub client_hello: Duration,
    /// From the ClientHello until the TLS handshake completes.
    #[serde(with = "humantime_serde")]
    pub handshake: Duration,
    /// From the first byte of a request head until the whole head is in (HTTP/1.1).
    #[serde(with = "humantime_serde")]
    pub header_read: Duration,
    /// A connection with no request in flight and no bytes moving for this long is closed.
    #[serde(with = "humantime_serde")]
    pub idle: Duration,
    /// TCP connect to the upstream, and again the TLS handshake with an https upstream.
    #[serde(with = "humantime_serde")]
    pub upstream_connect: Duration,
    /// From sending the request upstream until the response head arrives.
    #[serde(with = "humantime_serde")]
    pub upstream_response: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            client_hello: Duration::from_secs(5),
            handshake: Duration::from_secs(10),
            header_read: Duration::from_secs(10),
            idle: Duration::from_secs(60),
            upstream_connect: Duration::from_secs(2),
            upstream_response: Duration::from_secs(120),
        }
    }
}

/// Names of the request headers that carry the fingerprints to the upstream. Client copies of
/// these headers are always removed before forwarding. An empty name (`""`) leaves that
/// header out (for an upstream that does not read it); the fingerprint is still computed for
/// the policy and the evidence.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeaderNames {
    pub ja3: String,
    pub ja3_hash: String,
    pub ja4: String,
    pub ja4_r: String,
    /// portcullis header fingerprint id (docs/fingerprints.md).
    pub header_fp: String,
    /// HTTP/2 fingerprint, Akamai format (HTTP/2 connections only).
    pub h2: String,
    /// The kernel's TCP round-trip estimate for the connection, microseconds (TLS only).
    pub tcp_rtt: String,
    /// The TLS handshake's round trip on the connection, microseconds (TLS only).
    pub tls_rtt: String,
}

impl Default for HeaderNames {
    fn default() -> Self {
        Self {
            ja3: "x-portcullis-ja3".into(),
            ja3_hash: "x-portcullis-ja3-hash".into(),
            ja4: "x-portcullis-ja4".into(),
            ja4_r: "x-portcullis-ja4-r".into(),
            header_fp: "x-portcullis-header-fp".into(),
            h2: "x-portcullis-h2".into(),
            tcp_rtt: "x-portcullis-tcp-rtt-us".into(),
            tls_rtt: "x-portcullis-tls-rtt-us".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Admin listener (metrics, health); absent = no admin listener.
    pub listen: Option<SocketAddr>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 9901))),
        }
    }
}

impl Config {
    /// Parses and validates TOML text; `origin` names it in messages.
    pub fn from_toml(
        text: &str,
        origin: &str,
        base_dir: Option<&Path>,
    ) -> Result<Self, ConfigError> {
        let mut cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
        cfg.base_dir = base_dir.map(Path::to_path_buf);
        cfg.source_text = text.to_string();
        let problems = cfg.problems();
        if problems.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigError::Invalid {
                origin: origin.to_string(),
                problems,
            })
        }
    }

    /// Reads a file; relative paths inside it resolve against its directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut cfg = Self::from_toml(&text, &path.display().to_string(), Some(&base))?;
        cfg.source_path = Some(path.to_path_buf());
        Ok(cfg)
    }

    /// The embedded default (the repository's `config.toml`).
    pub fn embedded_default() -> Result<Self, ConfigError> {
        Self::from_toml(DEFAULT_CONFIG_TOML, "<embedded config.toml>", None)
    }

    /// Resolves a path from the file against the file's directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        match &self.base_dir {
            Some(base) if p.is_relative() => base.join(p),
            _ => p.to_path_buf(),
        }
    }

    /// Everything serde could not check, each with its TOML path.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let s = &self.server;
        if s.max_connections == 0 {
            out.push("server.max_connections: must be at least 1".into());
        }
        if s.max_header_bytes < 8192 {
            out.push(
                "server.max_header_bytes: must be at least 8192 (hyper's minimum buffer)".into(),
            );
        }
        match self.tls.cert.is_some() == self.tls.key.is_some() {
            true => {}
            false => out.push(
                "tls: set both `cert` and `key`, or neither (the bundled dev certificate)".into(),
            ),
        }
        if self.tls.alpn.is_empty() {
            out.push("tls.alpn: list at least one of \"h2\", \"http/1.1\"".into());
        }
        for (i, p) in self.tls.alpn.iter().enumerate() {
            if p != "h2" && p != "http/1.1" {
                out.push(format!(
                    "tls.alpn[{i}]: {p:?} is not served; use \"h2\" or \"http/1.1\""
                ));
            }
        }
        match self.upstream.url.parse::<http::Uri>() {
            Ok(u) => {
                let scheme_ok = matches!(u.scheme_str(), Some("http") | Some("https"));
                if !scheme_ok || u.host().is_none() {
                    out.push(format!(
                        "upstream.url: {:?} must be http://host[:port] or https://host[:port]",
                        self.upstream.url
                    ));
                }
                if u.path() != "/" && !u.path().is_empty() {
                    out.push(
                        "upstream.url: a path prefix is not supported; give scheme://host:port"
                            .into(),
                    );
                }
            }
            Err(e) => out.push(format!("upstream.url: {e}")),
        }
        let t = &self.timeouts;
        for (name, d) in [
            ("client_hello", t.client_hello),
            ("handshake", t.handshake),
            ("header_read", t.header_read),
            ("idle", t.idle),
            ("upstream_connect", t.upstream_connect),
            ("upstream_response", t.upstream_response),
        ] {
            if d.is_zero() {
                out.push(format!(
                    "timeouts.{name}: must be greater than zero (e.g. \"5s\")"
                ));
            }
        }
        if self.evidence.queue == 0 {
            out.push("evidence.queue: must be at least 1".into());
        }
        if self.store.fleet_size == 0 {
            out.push("store.fleet_size: must be at least 1".into());
        }
        if self.store.redis.timeout.is_zero() || self.store.redis.timeout > Duration::from_secs(1) {
            out.push("store.redis.timeout: between 1ms and 1s (e.g. \"20ms\")".into());
        }
        let r = &self.store.redis;
        if !r.sentinels.is_empty() && !r.cluster.is_empty() {
            out.push("store.redis: give sentinels or cluster, not both".into());
        }
        if !r.sentinels.is_empty() && r.sentinel_master.is_empty() {
            out.push("store.redis.sentinel_master: required with sentinels (the master's name, e.g. \"mymaster\")".into());
        }
        if self.store.max_keys < 16 {
            out.push("store.max_keys: must be at least 16".into());
        }
        if self.policy_file.is_some() && self.policy.is_some() {
            out.push(
                "policy_file: this file also has a [policy] table; keep one of the two".into(),
            );
        }
        let h = &self.headers;
        for (name, v) in [
            ("ja3", &h.ja3),
            ("ja3_hash", &h.ja3_hash),
            ("ja4", &h.ja4),
            ("ja4_r", &h.ja4_r),
            ("header_fp", &h.header_fp),
            ("h2", &h.h2),
            ("tcp_rtt", &h.tcp_rtt),
            ("tls_rtt", &h.tls_rtt),
        ] {
            if !v.is_empty() && http::HeaderName::from_bytes(v.as_bytes()).is_err() {
                out.push(format!("headers.{name}: {v:?} is not a valid header name"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_valid() {
        let c = Config::embedded_default().expect("repository config.toml must validate");
        assert_eq!(c.headers.ja4, "x-portcullis-ja4");
    }

    #[test]
    fn unknown_key_is_rejected_with_its_name() {
        let e =
            Config::from_toml("[server]\nlisen = \"127.0.0.1:1\"\n", "t.toml", None).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("lisen"), "{msg}");
        assert!(msg.contains("t.toml"), "{msg}");
    }

    #[test]
    fn all_problems_reported_at_once() {
        let text = "[server]\nmax_connections = 0\n[upstream]\nurl = \"ftp://x\"\n[timeouts]\nidle = \"0s\"\n";
        let e = Config::from_toml(text, "t.toml", None).unwrap_err();
        let msg = e.to_string();
        for needle in [
            "server.max_connections",
            "upstream.url",
            "timeouts.idle",
            "3 problem(s)",
        ] {
            assert!(msg.contains(needle), "missing {needle} in {msg}");
        }
    }
}
