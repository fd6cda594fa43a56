//! Connections to Redis: who to send a command to, what a failure means, and getting back up.
//!
//! - **Standalone**: [`POOL`] multiplexed connections, used round robin; see docs/redis.md for
//!   why this many. Each has its batch task (`batch.rs`), which sends the requests that queued
//!   while its previous call was in flight as one script call.
//! - **Cluster**: one `ClusterConnection` (redis-rs), which keeps a multiplexed connection per
//!   node, follows MOVED/ASK and refreshes the slot map itself.
//!
//! Failure: every command is bounded by the store's timeout (`StoreError::Timeout`). A
//! connection-level error (refused, reset, closed) drops that connection and starts one
//! background task that reconnects with capped exponential backoff and jitter
//! ([`BACKOFF_MIN`] doubling to [`BACKOFF_MAX`]), loading the script before the connection is
//! used. While no connection is up, calls fail at once with `StoreError::Unavailable` — they
//! never wait for a reconnection (unlike redis-rs's `ConnectionManager`, whose callers await
//! the reconnect future with its whole retry schedule). A server that accepts but never answers
//! shows as timeouts; when nothing has succeeded for [`hung_after`] the connection is replaced
//! too, which also drops the requests queued on it.
//!
//! Health is one flag with one log line per change (`warn` when the store goes down, `info`
//! when it is back), the `portcullis_store_up` gauge (0/1), and
//! `portcullis_store_errors_total{kind}` per failed call — never a log line per request.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use redis::aio::MultiplexedConnection;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{AsyncConnectionConfig, Client, Cmd, ErrorKind, IntoConnectionInfo, RedisError, Value};
use tracing::{info, warn};

use super::batch::{self, Queue};
use super::script;
use crate::limit::StoreError;

/// Multiplexed connections per standalone store (see docs/redis.md, "Connection strategy").
pub(super) const POOL: usize = 1;
/// Bound on one connection attempt (TCP connect + loading the scripts).
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
pub(super) const BACKOFF_MIN: Duration = Duration::from_millis(10);
pub(super) const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// How long without a successful call before timeouts count as "down" (and, on standalone,
/// the connection is replaced): long enough that a short stall (a fork, a slow command) does
/// not flap the state.
pub(super) fn hung_after(timeout: Duration) -> Duration {
    (timeout * 10).max(Duration::from_millis(250))
}

/// A connection handle (cheap to clone: both kinds are shared multiplexers).
#[derive(Clone)]
pub(super) enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl Conn {
    pub(super) async fn query(&mut self, cmd: &Cmd) -> redis::RedisResult<Value> {
        match self {
            Conn::Single(c) => cmd.query_async(c).await,
            Conn::Cluster(c) => cmd.query_async(c).await,
        }
    }

    /// An `EVALSHA` of the script; a `NOSCRIPT` reply (after `SCRIPT FLUSH` or a failover)
    /// loads the script again and retries once.
    pub(super) async fn eval(&mut self, cmd: &Cmd) -> redis::RedisResult<Value> {
        match self.query(cmd).await {
            Err(e) if e.kind() == ErrorKind::NoScriptError => {
                self.query(redis::cmd("SCRIPT").arg("LOAD").arg(script::EVALUATE))
                    .await?;
                self.query(cmd).await
            }
            other => other,
        }
    }
}

/// A connection and, on standalone, its batch queue.
pub(super) struct Link {
    pub(super) conn: Conn,
    pub(super) queue: Option<Queue>,
}

/// A connection currently in use; `Arc` identity tells a stale failure from a fresh one.
pub(super) type Live = Arc<Link>;

struct Slot {
    conn: ArcSwapOption<Link>,
    reconnecting: AtomicBool,
}

enum Target {
    Single(Client),
    Cluster(ClusterClient),
    /// Asks the Sentinels for the current master on every (re)connect, so a failover is
    /// followed by the reconnect supervisor. The client caches its Sentinel connections and
    /// needs `&mut`: connects are rare, a mutex is fine.
    Sentinel(tokio::sync::Mutex<SentinelClient>),
}

/// `[store.redis] sentinels` and `sentinel_master`.
pub(super) struct SentinelTarget<'a> {
    pub(super) sentinels: &'a [String],
    pub(super) master: &'a str,
}

/// What went wrong with one call, for the metric label and the health flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Failure {
    Timeout,
    /// The connection is gone (refused, reset, closed): reconnect.
    Connection,
    /// Redis answered with an error (OOM, BUSY, LOADING, CLUSTERDOWN, a script error…).
    Server,
    /// The reply was not what the script returns.
    Reply,
    /// No connection is up (reconnecting).
    Down,
}

impl Failure {
    pub(super) fn label(self) -> &'static str {
        match self {
            Failure::Timeout => "timeout",
            Failure::Connection => "connection",
            Failure::Server => "server",
            Failure::Reply => "reply",
            Failure::Down => "down",
        }
    }

    pub(super) fn classify(e: &RedisError) -> Self {
        if e.is_timeout() {
            Failure::Timeout
        } else if e.is_io_error()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.kind() == ErrorKind::ClusterConnectionNotFound
        {
            Failure::Connection
        } else {
            Failure::Server
        }
    }

    pub(super) fn error(self, detail: &str) -> StoreError {
        match self {
            Failure::Timeout => StoreError::Timeout,
            _ => StoreError::Unavailable(format!("{}: {detail}", self.label())),
        }
    }
}

/// The store's connections and health.
pub(super) struct Backend {
    target: Target,
    slots: Box<[Slot]>,
    next: AtomicUsize,
    /// For the batch task of each standalone connection.
    batch: Arc<batch::Settings>,
    timeout: Duration,
    up: AtomicBool,
    /// Milliseconds since `origin` of the first failure since the last success
    /// (`u64::MAX`: none).
    failing_since: AtomicU64,
    origin: Instant,
    up_gauge: metrics::Gauge,
}

impl Backend {
    /// Connects (each attempt bounded by [`CONNECT_TIMEOUT`]). A failed first attempt is not
    /// an error: the store starts down and keeps reconnecting in the background.
    pub(super) async fn start(
        url: &str,
        cluster: &[String],
        sentinel: Option<SentinelTarget<'_>>,
        pool: usize,
        batch: Arc<batch::Settings>,
    ) -> Result<Arc<Self>, StoreError> {
        let timeout = batch.timeout;
        // The URL may hold a password: never echo it.
        let bad_url = |_| StoreError::Unavailable("invalid store url".into());
        let (target, n) = if let Some(s) = sentinel {
            // `url` gives the master's database and credentials; the Sentinels give its address.
            let node = SentinelNodeConnectionInfo {
                tls_mode: None,
                redis_connection_info: Some(url.into_connection_info().map_err(bad_url)?.redis),
            };
            let client = SentinelClient::build(
                s.sentinels.to_vec(),
                s.master.to_string(),
                Some(node),
                SentinelServerType::Master,
            )
            .map_err(bad_url)?;
            (
                Target::Sentinel(tokio::sync::Mutex::new(client)),
                pool.max(1),
            )
        } else if cluster.is_empty() {
            (
                Target::Single(Client::open(url).map_err(bad_url)?),
                pool.max(1),
            )
        } else {
            let client = ClusterClient::builder(cluster.iter().map(String::as_str))
                .connection_timeout(CONNECT_TIMEOUT)
                .response_timeout(timeout)
                .retries(2)
                .min_retry_wait(1)
                .max_retry_wait(10)
                .build()
                .map_err(bad_url)?;
            (Target::Cluster(client), 1)
        };
        let backend = Arc::new(Self {
            target,
            slots: (0..n)
                .map(|_| Slot {
                    conn: ArcSwapOption::empty(),
                    reconnecting: AtomicBool::new(true),
                })
                .collect(),
            next: AtomicUsize::new(0),
            batch,
            timeout,
            up: AtomicBool::new(false),
            failing_since: AtomicU64::new(u64::MAX),
            origin: Instant::now(),
            up_gauge: metrics::gauge!("portcullis_store_up"),
        });
        backend.up_gauge.set(0.0);
        let attempts = (0..n).map(|i| {
            let b = Arc::clone(&backend);
            async move { (i, b.open().await) }
        });
        let mut first_error = None;
        for (i, result) in futures_util::future::join_all(attempts).await {
            match result {
                Ok(conn) => backend.install(i, conn),
                Err(e) => {
                    first_error.get_or_insert(e);
                    Self::spawn_reconnect(Arc::downgrade(&backend), i);
                }
            }
        }
        if let Some(e) = first_error {
            warn!(error = %e, "counter store down at start; reconnecting in the background");
        }
        Ok(backend)
    }

    /// One connection attempt: connect and load the script, within [`CONNECT_TIMEOUT`].
    async fn open(&self) -> Result<Conn, String> {
        let attempt = async {
            let mut conn = match &self.target {
                Target::Single(c) => {
                    let cfg = AsyncConnectionConfig::new()
                        .set_connection_timeout(CONNECT_TIMEOUT)
                        .set_response_timeout(self.timeout);
                    Conn::Single(c.get_multiplexed_async_connection_with_config(&cfg).await?)
                }
                Target::Cluster(c) => Conn::Cluster(c.get_async_connection().await?),
                Target::Sentinel(s) => {
                    let cfg = AsyncConnectionConfig::new()
                        .set_connection_timeout(CONNECT_TIMEOUT)
                        .set_response_timeout(self.timeout);
                    let mut client = s.lock().await;
                    Conn::Single(client.get_async_connection_with_config(&cfg).await?)
                }
            };
            conn.query(redis::cmd("SCRIPT").arg("LOAD").arg(script::EVALUATE))
                .await?;
            Ok::<_, RedisError>(conn)
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("connect timed out".into()),
        }
    }

    fn install(&self, i: usize, conn: Conn) {
        if let Some(slot) = self.slots.get(i) {
            // Without a runtime (no queue) calls go to the connection directly.
            let queue = match &conn {
                Conn::Single(_) => Queue::spawn(conn.clone(), Arc::clone(&self.batch)),
                Conn::Cluster(_) => None,
            };
            slot.conn.store(Some(Arc::new(Link { conn, queue })));
            slot.reconnecting.store(false, Ordering::Release);
            self.succeeded();
        }
    }

    fn spawn_reconnect(this: Weak<Self>, i: usize) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return; // no runtime: nothing can use the store either
        };
        handle.spawn(async move {
            let mut delay = BACKOFF_MIN;
            let mut rng = Jitter::new();
            loop {
                tokio::time::sleep(rng.apply(delay)).await;
                let Some(b) = this.upgrade() else {
                    return; // the store is gone
                };
                if let Ok(conn) = b.open().await {
                    b.install(i, conn);
                    return;
                }
                delay = (delay * 2).min(BACKOFF_MAX);
            }
        });
    }

    /// A connection to send on, round robin over the connected ones; `Down` at once if none.
    pub(super) fn get(&self) -> Result<(usize, Live), Failure> {
        let n = self.slots.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for k in 0..n {
            let i = (start + k) % n;
            if let Some(c) = self.slots.get(i).and_then(|s| s.conn.load_full()) {
                return Ok((i, c));
            }
        }
        Err(Failure::Down)
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    pub(super) fn succeeded(&self) {
        if self.failing_since.load(Ordering::Relaxed) != u64::MAX {
            self.failing_since.store(u64::MAX, Ordering::Relaxed);
        }
        if !self.up.swap(true, Ordering::AcqRel) {
            self.up_gauge.set(1.0);
            info!("counter store up");
        }
    }

    /// Record a failed call, sent on connection `sent.0` (`sent.1`) if it got that far.
    pub(super) fn failed(
        self: &Arc<Self>,
        sent: Option<(usize, &Live)>,
        failure: Failure,
        detail: &str,
    ) {
        let now = self.now_ms();
        // Only the first failure after a success sets the start of the failing period.
        let _ = self.failing_since.compare_exchange(
            u64::MAX,
            now,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        let since = self.failing_since.load(Ordering::Relaxed);
        let failing_for = Duration::from_millis(now.saturating_sub(since));
        let hung = failure == Failure::Timeout && failing_for >= hung_after(self.timeout);
        // A ClusterConnection reconnects per node and refreshes its slot map by itself.
        let single = matches!(self.target, Target::Single(_) | Target::Sentinel(_));
        let replace = single
            && match failure {
                Failure::Connection => true,
                Failure::Timeout => hung,
                _ => false,
            };
        if let (true, Some((i, live))) = (replace, sent) {
            if let Some(slot) = self.slots.get(i) {
                let cur = slot.conn.load();
                if cur.as_ref().is_some_and(|c| Arc::ptr_eq(c, live)) {
                    slot.conn.store(None);
                    if !slot.reconnecting.swap(true, Ordering::AcqRel) {
                        Self::spawn_reconnect(Arc::downgrade(self), i);
                    }
                }
            }
        }
        let down = match failure {
            Failure::Connection | Failure::Down => true,
            Failure::Timeout => hung,
            Failure::Server | Failure::Reply => false,
        };
        if down && self.up.swap(false, Ordering::AcqRel) {
            self.up_gauge.set(0.0);
            warn!(kind = failure.label(), error = detail, "counter store down");
        }
    }

    pub(super) fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    pub(super) fn is_cluster(&self) -> bool {
        matches!(self.target, Target::Cluster(_))
    }

    pub(super) fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// Backoff jitter in [50 %, 100 %] of the delay, so a fleet does not reconnect in step.
struct Jitter(u64);

impl Jitter {
    fn new() -> Self {
        use std::hash::BuildHasher;
        let seed = std::collections::hash_map::RandomState::new().hash_one(0u64);
        Self(seed | 1)
    }

    fn apply(&mut self, d: Duration) -> Duration {
        // xorshift64
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let frac = 0.5 + (self.0 >> 11) as f64 / (1u64 << 53) as f64 / 2.0;
        d.mul_f64(frac)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_half_to_full() {
        let mut j = Jitter::new();
        for _ in 0..1_000 {
            let d = j.apply(Duration::from_millis(100));
            assert!(d >= Duration::from_millis(50) && d <= Duration::from_millis(100));
        }
    }

    #[test]
    fn failures_map_to_store_errors() {
        let refused = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(Failure::classify(&refused), Failure::Connection);
        let timed_out = RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut));
        assert_eq!(Failure::classify(&timed_out), Failure::Timeout);
        let oom = RedisError::from((ErrorKind::ResponseError, "OOM"));
        assert_eq!(Failure::classify(&oom), Failure::Server);
        assert_eq!(Failure::Timeout.error("x"), StoreError::Timeout);
        assert!(matches!(
            Failure::Down.error("x"),
            StoreError::Unavailable(_)
        ));
    }
}
