//! Counter stores: where the limits' state lives.
//!
//! The policy (pure) turns a request into a list of [`OpSpec`]s, one per matching layer; a
//! [`CounterStore`] evaluates them **all or nothing**: if any enforcing op is denied, nothing
//! is charged anywhere (a request one layer rejects consumes nothing from the others). Two
//! implementations sit behind the one trait: [`local::LocalStore`] (in memory, bounded; the
//! embedded default) and, later, Redis (one Lua round trip per request, shared by a fleet).
//!
//! Time comes from the store's [`Clock`] (injected for tests), never from the caller.

pub mod clock;
pub mod local;
pub mod redis;

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::time::Duration;

pub use clock::{Clock, ManualClock, SystemClock};

/// A boxed future, so the trait stays object-safe (`Arc<dyn CounterStore>`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A GCRA rate: at most `burst` at once, refilling one unit every `emission` interval.
/// `count` per `period` with burst `b` is `emission = period / count`, `burst = b`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    pub emission: Duration,
    pub burst: u32,
}

/// One check a request must pass, on one layer key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// GCRA: admit `cost` units if the key's theoretical arrival time allows it.
    Rate { key: String, rate: Rate, cost: u32 },
    /// At most `max` requests in flight on `key`; a lease is held until the response ends.
    Concurrency { key: String, max: u32 },
    /// At most `max` distinct `member`s (e.g. account hashes) on `key` per sliding `window`.
    /// A member already counted in the window is always allowed.
    Distinct {
        key: String,
        member: u64,
        max: u32,
        window: Duration,
    },
}

impl Op {
    pub fn key(&self) -> &str {
        match self {
            Op::Rate { key, .. } | Op::Concurrency { key, .. } | Op::Distinct { key, .. } => key,
        }
    }
}

/// An op and whether its denial blocks the request (`enforce = false`: shadow or flag rules,
/// evaluated and counted but never blocking).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpSpec {
    pub op: Op,
    pub enforce: bool,
}

/// The result of one op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Within the limit. `remaining` units are left now; the key is back to full after `reset`.
    Allowed { remaining: u64, reset: Duration },
    /// Over the limit: `current` observed against `limit`; retry after `retry_after`.
    Denied {
        current: u64,
        limit: u64,
        retry_after: Duration,
    },
}

impl Outcome {
    pub fn is_denied(&self) -> bool {
        matches!(self, Outcome::Denied { .. })
    }
}

/// Held while a request is in flight; dropping it releases its concurrency slots.
pub struct Lease {
    release: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl Lease {
    pub fn new(release: impl FnOnce() + Send + Sync + 'static) -> Self {
        Self {
            release: Some(Box::new(release)),
        }
    }
    /// A lease that holds nothing.
    pub fn none() -> Self {
        Self { release: None }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(f) = self.release.take() {
            f();
        }
    }
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("held", &self.release.is_some())
            .finish()
    }
}

/// The answer for one request: an outcome per op (same order), whether an enforcing op was
/// denied (then nothing was charged), and the lease for any concurrency slots taken.
#[derive(Debug)]
pub struct Evaluation {
    pub outcomes: Vec<Outcome>,
    pub blocked: bool,
    pub lease: Lease,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    #[error("counter store timed out")]
    Timeout,
    #[error("counter store unavailable: {0}")]
    Unavailable(String),
}

/// What a store derives from a list of ops that is evaluated again and again (the gate's
/// per-connection plan): the local store keeps each op's hashed id and member here instead of
/// hashing the keys on every request. Tagged with the store instance that filled it; a copy
/// starts empty.
#[derive(Default)]
pub struct OpsMemo(OnceLock<(u64, MemoIds)>);

/// Per op, in order: the store's id for it and its member hash.
type MemoIds = Box<[(u64, u64)]>;

impl OpsMemo {
    /// What store instance `owner` left here, if it filled this memo.
    pub fn get(&self, owner: u64) -> Option<&[(u64, u64)]> {
        self.0
            .get()
            .filter(|(o, _)| *o == owner)
            .map(|(_, ids)| &**ids)
    }

    /// Fills the memo for `owner` unless it is already filled (by any store).
    pub fn fill(&self, owner: u64, ids: MemoIds) {
        let _ = self.0.set((owner, ids));
    }
}

impl Clone for OpsMemo {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl std::fmt::Debug for OpsMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OpsMemo")
    }
}

/// Where limit state lives. Implementations must be all-or-nothing per call (see module docs).
pub trait CounterStore: Send + Sync + 'static {
    fn evaluate<'a>(&'a self, ops: &'a [OpSpec]) -> BoxFuture<'a, Result<Evaluation, StoreError>>;

    /// The evaluation at once, for a store that needs no IO (the local store), which may keep
    /// what it derives from `ops` in `memo` (they come back with it while a connection reuses
    /// its plan): the caller then boxes and awaits no future. `None`: use
    /// [`evaluate`](Self::evaluate).
    fn evaluate_ready(&self, ops: &[OpSpec], memo: &OpsMemo) -> Option<Evaluation> {
        let _ = (ops, memo);
        None
    }
    /// Keys currently held in memory by this store (for the bounded-memory checks and metrics).
    fn resident_keys(&self) -> usize;
    /// Whether the store can answer now (readiness). In-memory stores always can.
    fn is_up(&self) -> bool {
        true
    }
}
