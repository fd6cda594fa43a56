//! The fleet-wide counter store: every proxy of a fleet keeps its limits in one Redis
//! (standalone or Cluster), so a limit of N holds across the fleet, not per proxy.
//!
//! It sits behind [`CounterStore`] exactly like [`LocalStore`](crate::limit::local::LocalStore)
//! and gives the same [`Outcome`]s for the same sequence of requests (distinct counts within the
//! HyperLogLog error), so the gate cannot tell them apart. docs/redis.md is the operator's view.
//!
//! # One round trip, shared by the requests in flight
//! [`RedisStore::evaluate`](CounterStore::evaluate) puts every op of the request into one
//! `EVALSHA` of `evaluate.lua`. On standalone the request goes through its connection's batch
//! task (`batch.rs`): a lone request is sent at once; requests that arrive while a call is in
//! flight queue up and go together as the next call (at most 64). The script reads the
//! server's clock once (`TIME`; Redis 7 replicates scripts by effects, so this is allowed) and
//! takes the requests in order; for each it checks every op without writing, and only if no
//! enforcing op is denied charges them all — the same two passes as LocalStore, so each
//! request is all or nothing and sees the charges of the requests before it. Each key is read
//! at most once and written at most once per call. Lease releases ride in the same call,
//! applied before the requests. The script is loaded (`SCRIPT LOAD`) on every new connection; a
//! `NOSCRIPT` reply (a `SCRIPT FLUSH`, a failover) loads it again and retries once.
//! - **Rate**: GCRA, the TAT in integer µs under `…:r:<emission ns>:<burst>`, expiring when the
//!   key would be fresh again.
//! - **Concurrency**: a ZSET of lease members scored by their expiry; live = score > now.
//!   Releasing a [`Lease`] queues a `ZREM` for the next batch (Cluster: spawns the script
//!   call on the tokio runtime), off the decision path; without a runtime the release is
//!   skipped and the lease expires after `lease_ttl`. A request that outlives `lease_ttl` (a
//!   long stream) frees its slot early. A call that fails or is cancelled after it was sent
//!   releases its leases the same way, on the same connection (so after the script, if the
//!   script ran).
//! - **Distinct**: one HyperLogLog per bucket of 1/6 window, as LocalStore's epochs. The count
//!   is `PFCOUNT` of the merge of the live buckets; "present" is `PFADD` into a scratch `COPY`
//!   of that merge returning 0 (the copy is deleted by the same script). The merge itself is
//!   kept as a key (`…:m:<oldest live epoch>`, updated by every charge, expiring when that
//!   epoch leaves the window), so a request merges nothing: a `PFMERGE` of seven dense buckets
//!   costs ~80 µs of Redis time, the kept merge ~20 µs per op (docs/redis.md). Without it (first
//!   use, or just after the oldest bucket left) the live buckets are merged into the scratch key.
//!
//! # Redis Cluster
//! Keys are hash-tagged per layer key, so a layer's keys share a slot. Ops are grouped by slot
//! and the groups' scripts run in parallel (one round trip of wall time), one call per group,
//! not batched with other requests (their keys would span slots). Each group is all or
//! nothing; across groups the request is not atomic: when one group blocks the request, the
//! groups that charged are given back best effort by the script's give-backs — rate TATs
//! moved back by cost × emission, concurrency leases removed — while distinct members stay
//! recorded (an HLL cannot forget one member; the over-count is at most the blocked
//! requests' members). Two requests racing between the groups can each see the other's
//! charge for that moment.
//!
//! # Over-limit cache
//! Enforcing denials are remembered locally (see `cache.rs`); a request with an enforcing op
//! in the cache is answered `blocked` without a Redis call. Its other ops are reported as not
//! asked: `Allowed` with the limit's full size and a zero reset.
//!
//! # Failures
//! Every call is bounded by `timeout` (`StoreError::Timeout`); connection trouble is
//! `StoreError::Unavailable`, and while no connection is up calls fail at once (see
//! `conn.rs`). A call that timed out may still have run: its rate and distinct charges stand
//! (an over-charge, never an over-admission), its leases are released. The gate decides per
//! rule what an error means (open, closed, local budget).

mod batch;
mod cache;
mod conn;
mod script;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use smallvec::SmallVec;
use tokio::sync::oneshot;

use super::{BoxFuture, CounterStore, Evaluation, Lease, Op, OpSpec, Outcome, StoreError};
use batch::Answer;
use cache::OverLimitCache;
use conn::{Backend, Failure, Live};
use script::{Part, Sent, Undo};

/// How long a lease release or refund may take (off the decision path).
const UNDO_TIMEOUT: Duration = Duration::from_secs(1);

/// Where the Redis store connects and how it behaves (`[store]` in config.toml).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port/db` (standalone). Ignored when `cluster` is set.
    pub url: String,
    /// Seed node URLs; non-empty selects Redis Cluster.
    pub cluster: Vec<String>,
    /// Sentinel URLs; non-empty selects the master that `sentinel_master` names (`url` then
    /// gives only its database and credentials).
    pub sentinels: Vec<String>,
    /// The master's name in the Sentinels' configuration.
    pub sentinel_master: String,
    /// Bound on each call; past it the call fails with `StoreError::Timeout`.
    pub timeout: Duration,
    /// Prepended to every key (no `{` or `}`).
    pub key_prefix: String,
    /// How long a concurrency lease lives if its proxy never releases it.
    pub lease_ttl: Duration,
    /// Entries of the over-limit cache (0 disables it).
    pub over_limit_cache: usize,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379/0".into(),
            cluster: Vec::new(),
            sentinels: Vec::new(),
            sentinel_master: String::new(),
            timeout: Duration::from_millis(20),
            key_prefix: "pc:".into(),
            lease_ttl: Duration::from_secs(300),
            over_limit_cache: 10_000,
        }
    }
}

/// The Redis [`CounterStore`] (see the module docs).
pub struct RedisStore {
    shared: Arc<Shared>,
}

struct Shared {
    backend: Arc<Backend>,
    prefix: String,
    lease_ttl: Duration,
    cache: OverLimitCache,
    eval_sha: String,
    /// Lease members are `<base><seq>:<op index>` in hex: unique across a fleet.
    lease_base: u64,
    lease_seq: AtomicU64,
    metrics: Metrics,
}

struct Metrics {
    seconds: metrics::Histogram,
    cache_hits: metrics::Counter,
    errors: [metrics::Counter; 5],
}

impl Metrics {
    fn new() -> Self {
        let e =
            |kind: &'static str| metrics::counter!("portcullis_store_errors_total", "kind" => kind);
        Self {
            seconds: metrics::histogram!("portcullis_store_seconds"),
            cache_hits: metrics::counter!("portcullis_store_cache_hits_total"),
            errors: [
                e(Failure::Timeout.label()),
                e(Failure::Connection.label()),
                e(Failure::Server.label()),
                e(Failure::Reply.label()),
                e(Failure::Down.label()),
            ],
        }
    }

    fn error(&self, f: Failure) {
        let i = match f {
            Failure::Timeout => 0,
            Failure::Connection => 1,
            Failure::Server => 2,
            Failure::Reply => 3,
            Failure::Down => 4,
        };
        self.errors[i].increment(1);
    }
}

/// One group's answer: its outcomes (group order) and the leases it took.
struct GroupAnswer {
    outcomes: Vec<Outcome>,
    pending: PendingUndo,
}

type GroupResult = Result<GroupAnswer, (Failure, String)>;

impl RedisStore {
    /// Connects to Redis. Never waits past about one second: if Redis is down, the store
    /// starts down (calls fail at once with `Unavailable`) and reconnects in the background,
    /// so the proxy starts and serves with each rule's failure mode. Errors only on a bad
    /// configuration (URL, key prefix). Needs a tokio runtime.
    pub async fn connect(cfg: &RedisConfig) -> Result<RedisStore, StoreError> {
        Self::connect_pooled(cfg, conn::POOL).await
    }

    /// [`RedisStore::connect`] with `connections` multiplexed connections (standalone), for
    /// the connection-strategy bench.
    #[doc(hidden)]
    pub async fn connect_pooled(
        cfg: &RedisConfig,
        connections: usize,
    ) -> Result<RedisStore, StoreError> {
        if cfg.key_prefix.contains(['{', '}']) {
            return Err(StoreError::Unavailable(
                "store key_prefix must not contain '{' or '}'".into(),
            ));
        }
        let eval_sha = redis::Script::new(script::EVALUATE).get_hash().to_owned();
        let lease_ttl = cfg.lease_ttl.max(Duration::from_millis(1));
        let settings = Arc::new(batch::Settings {
            sha: eval_sha.clone(),
            lease_ttl,
            timeout: cfg.timeout.max(Duration::from_millis(1)),
        });
        let sentinel = (!cfg.sentinels.is_empty()).then(|| conn::SentinelTarget {
            sentinels: &cfg.sentinels,
            master: &cfg.sentinel_master,
        });
        let backend =
            Backend::start(&cfg.url, &cfg.cluster, sentinel, connections, settings).await?;
        let rs = std::collections::hash_map::RandomState::new();
        let lease_base = std::hash::BuildHasher::hash_one(&rs, 0x6c_6561_7365_u64);
        Ok(RedisStore {
            shared: Arc::new(Shared {
                backend,
                prefix: cfg.key_prefix.clone(),
                lease_ttl,
                cache: OverLimitCache::new(cfg.over_limit_cache),
                eval_sha,
                lease_base,
                lease_seq: AtomicU64::new(0),
                metrics: Metrics::new(),
            }),
        })
    }

    /// Whether the last calls reached Redis (for readiness and tests).
    pub fn is_up(&self) -> bool {
        self.shared.backend.is_up()
    }

    async fn evaluate_inner(&self, ops: &[OpSpec]) -> Result<Evaluation, StoreError> {
        let sh = &self.shared;
        let sent_at = Instant::now();
        if let Some(hits) = sh.cache.lookup(ops, sent_at) {
            sh.metrics.cache_hits.increment(1);
            let outcomes = ops
                .iter()
                .zip(hits)
                .map(|(spec, hit)| hit.unwrap_or_else(|| unasked(&spec.op)))
                .collect();
            return Ok(Evaluation {
                outcomes,
                blocked: true,
                lease: Lease::none(),
            });
        }

        let mut outcomes: Vec<Option<Outcome>> = ops
            .iter()
            .map(|s| script::answered_locally(&s.op))
            .collect();
        let groups = self.plan(ops, &outcomes);
        if groups.is_empty() {
            return Ok(Evaluation {
                outcomes: outcomes.into_iter().flatten().collect(),
                blocked: false,
                lease: Lease::none(),
            });
        }
        let results: Vec<GroupResult> = match groups.as_slice() {
            [one] => vec![sh.call(ops, one).await],
            many => futures_util::future::join_all(many.iter().map(|g| sh.call(ops, g))).await,
        };
        sh.metrics.seconds.record(sent_at.elapsed().as_secs_f64());

        // Place the outcomes; find whether the request is blocked, and by which groups.
        let mut failure = None;
        let mut blocked = false;
        let mut answers = Vec::with_capacity(results.len());
        for (group, result) in groups.iter().zip(results) {
            match result {
                Ok(answer) => {
                    let mut self_blocked = false;
                    for (s, o) in group.iter().zip(&answer.outcomes) {
                        let enforce = ops.get(s.index).is_some_and(|spec| spec.enforce);
                        self_blocked |= enforce && o.is_denied();
                        if let Some(slot) = outcomes.get_mut(s.index) {
                            *slot = Some(*o);
                        }
                    }
                    blocked |= self_blocked;
                    answers.push((group, answer, self_blocked));
                }
                Err(f) => {
                    failure.get_or_insert(f);
                }
            }
        }
        // A group that blocked charged nothing; when the request is blocked (or failed)
        // elsewhere, the groups that charged are given back (Cluster only; see module docs).
        let mut lease_entries = Vec::new();
        for (group, mut answer, self_blocked) in answers {
            let entries = answer.pending.disarm();
            if self_blocked {
                continue;
            }
            if blocked || failure.is_some() {
                let mut undo = entries;
                for (s, o) in group.iter().zip(&answer.outcomes) {
                    let Some(spec) = ops.get(s.index) else {
                        continue;
                    };
                    if let (false, Some(micros)) = (o.is_denied(), script::refund_micros(&spec.op))
                    {
                        undo.push(Undo::Refund {
                            key: s.key.clone(),
                            micros,
                        });
                    }
                }
                sh.give_back(None, undo);
            } else {
                lease_entries.extend(entries);
            }
        }
        if let Some((f, detail)) = failure {
            sh.metrics.error(f);
            return Err(f.error(&detail));
        }
        for (spec, o) in ops.iter().zip(&outcomes) {
            if let (true, Some(o)) = (spec.enforce, o) {
                sh.cache.insert(&spec.op, o, sent_at);
            }
        }
        let lease = if lease_entries.is_empty() {
            Lease::none()
        } else {
            let weak: Weak<Shared> = Arc::downgrade(&self.shared);
            Lease::new(move || {
                if let Some(sh) = weak.upgrade() {
                    sh.give_back(None, lease_entries);
                }
            })
        };
        Ok(Evaluation {
            // Every op has an outcome: answered locally, or by its group (all groups Ok here).
            outcomes: outcomes
                .into_iter()
                .zip(ops)
                .map(|(o, spec)| o.unwrap_or_else(|| unasked(&spec.op)))
                .collect(),
            blocked,
            lease,
        })
    }

    /// The ops that need Redis, grouped: one group on standalone, one per slot on Cluster.
    fn plan(&self, ops: &[OpSpec], answered: &[Option<Outcome>]) -> SmallVec<[Vec<Sent>; 4]> {
        let sh = &self.shared;
        let cluster = sh.backend.is_cluster();
        let mut groups: SmallVec<[(u16, Vec<Sent>); 4]> = SmallVec::new();
        let mut lease_id = None;
        for (index, spec) in ops.iter().enumerate() {
            if answered.get(index).is_some_and(Option::is_some) {
                continue;
            }
            let key = script::op_key(&sh.prefix, &spec.op);
            let lease = matches!(spec.op, Op::Concurrency { .. }).then(|| {
                let id =
                    *lease_id.get_or_insert_with(|| sh.lease_seq.fetch_add(1, Ordering::Relaxed));
                format!("{:016x}{id:016x}:{index}", sh.lease_base)
            });
            let slot = if cluster {
                script::slot(key.as_bytes())
            } else {
                0
            };
            let sent = Sent { index, key, lease };
            match groups.iter_mut().find(|(s, _)| *s == slot) {
                Some((_, g)) => g.push(sent),
                None => groups.push((slot, vec![sent])),
            }
        }
        groups.into_iter().map(|(_, g)| g).collect()
    }
}

impl Shared {
    /// One group's script call, bounded by the timeout: through the connection's batch queue
    /// on standalone, directly on Cluster.
    async fn call(self: &Arc<Self>, ops: &[OpSpec], group: &[Sent]) -> GroupResult {
        let (i, live) = match self.backend.get() {
            Ok(c) => c,
            Err(f) => {
                self.backend.failed(None, f, "no connection");
                return Err((f, "no connection".into()));
            }
        };
        // Armed until the answer is in: a timeout or a cancelled call releases its leases on
        // the connection it went to, after the call (see `batch.rs` for the queue's order).
        let mut pending = PendingUndo {
            shared: Arc::downgrade(self),
            via: Some(Arc::clone(&live)),
            answer: None,
            entries: group
                .iter()
                .filter_map(|s| {
                    s.lease.as_ref().map(|m| Undo::Lease {
                        key: s.key.clone(),
                        member: m.clone(),
                    })
                })
                .collect(),
        };
        let part = script::part(ops, group);
        let timeout = self.backend.timeout();
        let reply: Answer = match &live.queue {
            Some(queue) => match queue.evaluate(part) {
                Some(rx) => match tokio::time::timeout(timeout, pending.answer.insert(rx)).await {
                    Ok(Ok(answer)) => answer,
                    Ok(Err(_)) => Err((Failure::Connection, "connection replaced".into())),
                    Err(_) => Err((Failure::Timeout, "timed out".into())),
                },
                None => Err((Failure::Connection, "batch task gone".into())),
            },
            None => self.direct(live.conn.clone(), &[], Some(&part)).await,
        };
        let result = reply.and_then(|v| {
            script::decode(&v, ops, group).map_err(|e| (Failure::Reply, e.to_string()))
        });
        match result {
            Ok(outcomes) => {
                self.backend.succeeded();
                Ok(GroupAnswer {
                    outcomes,
                    pending: std::mem::take(&mut pending),
                })
            }
            Err((f, detail)) => {
                self.backend.failed(Some((i, &live)), f, &detail);
                // `pending` drops armed here: the leases are released on `live`.
                Err((f, detail))
            }
        }
    }

    /// One script call straight on a connection (Cluster, or no runtime for a batch task),
    /// bounded by `timeout`.
    async fn direct(&self, mut conn: conn::Conn, undo: &[Undo], part: Option<&Part>) -> Answer {
        let cmd = script::batch_cmd(&self.eval_sha, self.lease_ttl, undo, part.into_iter());
        match tokio::time::timeout(self.backend.timeout(), conn.eval(&cmd)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err((Failure::classify(&e), e.to_string())),
            Err(_) => Err((Failure::Timeout, "timed out".into())),
        }
    }

    /// Gives charges back off the decision path, on `via` (or the current connection): into
    /// its batch queue on standalone, else in a spawned task, one call per slot. Best effort:
    /// a lost release expires with the lease TTL (without a tokio runtime nothing is sent).
    fn give_back(self: &Arc<Self>, via: Option<Live>, entries: Vec<Undo>) {
        if entries.is_empty() {
            return;
        }
        let live = match via {
            Some(l) => l,
            None => match self.backend.get() {
                Ok((_, l)) => l,
                Err(_) => return,
            },
        };
        if let Some(queue) = &live.queue {
            queue.give_back(entries);
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let sh = Arc::clone(self);
        handle.spawn(async move {
            let mut by_slot: SmallVec<[(u16, Vec<Undo>); 4]> = SmallVec::new();
            let cluster = sh.backend.is_cluster();
            for e in entries {
                let slot = if cluster {
                    script::slot(e.key().as_bytes())
                } else {
                    0
                };
                match by_slot.iter_mut().find(|(s, _)| *s == slot) {
                    Some((_, v)) => v.push(e),
                    None => by_slot.push((slot, vec![e])),
                }
            }
            for (_, entries) in by_slot {
                let _ = tokio::time::timeout(
                    UNDO_TIMEOUT,
                    sh.direct(live.conn.clone(), &entries, None),
                )
                .await;
            }
        });
    }
}

/// Undo entries that are given back when dropped armed (a call that failed or was
/// cancelled), on the connection the call went to.
#[derive(Default)]
struct PendingUndo {
    shared: Weak<Shared>,
    via: Option<Live>,
    /// The batch queue's answer channel, closed before the entries are queued: the batch
    /// task then either has sent the request already or will not send it.
    answer: Option<oneshot::Receiver<Answer>>,
    entries: Vec<Undo>,
}

impl PendingUndo {
    /// Take the entries; nothing is sent on drop.
    fn disarm(&mut self) -> Vec<Undo> {
        self.via = None;
        std::mem::take(&mut self.entries)
    }
}

impl Drop for PendingUndo {
    fn drop(&mut self) {
        drop(self.answer.take());
        if self.entries.is_empty() {
            return;
        }
        if let Some(sh) = self.shared.upgrade() {
            sh.give_back(self.via.take(), std::mem::take(&mut self.entries));
        }
    }
}

/// The outcome reported for an op the store did not ask Redis about (the request was
/// blocked by the over-limit cache): allowed, the limit's full size, zero reset.
fn unasked(op: &Op) -> Outcome {
    if let Some(o) = script::answered_locally(op) {
        return o;
    }
    let remaining = match op {
        Op::Rate { rate, .. } => u64::from(rate.burst.max(1)),
        Op::Concurrency { max, .. } | Op::Distinct { max, .. } => u64::from(*max),
    };
    Outcome::Allowed {
        remaining,
        reset: Duration::ZERO,
    }
}

impl CounterStore for RedisStore {
    fn evaluate<'a>(&'a self, ops: &'a [OpSpec]) -> BoxFuture<'a, Result<Evaluation, StoreError>> {
        Box::pin(self.evaluate_inner(ops))
    }

    /// Entries of the over-limit cache (the only per-key state this process holds).
    fn is_up(&self) -> bool {
        RedisStore::is_up(self)
    }

    fn resident_keys(&self) -> usize {
        self.shared.cache.len()
    }
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("cluster", &self.shared.backend.is_cluster())
            .field("up", &self.shared.backend.is_up())
            .finish_non_exhaustive()
    }
}
