//! The rejected-traffic evidence log: one versioned JSON object per line for every rejection,
//! tarpit, deny-list hit and flagged (or shadow) decision.
//!
//! Where it sits: the gate decides a request, builds a [`Record`] and calls
//! [`EvidenceLog::record`], which never blocks and never awaits — it only tries to put the
//! record on a bounded queue. One writer task ([`EvidenceWriter::run`]) drains the queue,
//! serializes with `serde_json`, and hands whole batches of lines to a blocking task that
//! appends them to the active file, rotates it by size and by age, gzips rotated files and keeps
//! the newest `keep` of them. `portcullis investigate` ([`crate::investigate`]) reads the files
//! back.
//!
//! No silent loss: a record that cannot be queued (queue full, log shut down) or written (an IO
//! error) is counted in [`EvidenceLog::dropped`] and in `portcullis_evidence_dropped_total`
//! (label `reason`); after an overflow the writer logs one `warn!` with the number dropped as soon
//! as it has drained the queue again. [`EvidenceLog::shutdown`] stops accepting records, writes
//! everything already queued, fsyncs and waits for the last compression. So at any quiet moment
//! `written() + dropped()` equals the number of records submitted.
//!
//! The file format is documented in `docs/evidence.md`; this is a stream of its own, not a
//! tracing line.

mod sink;
pub mod stream;
mod writer;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

pub use writer::EvidenceWriter;

/// The `v` of every record this build writes. A reader accepts newer versions as long as the
/// fields it needs are still there (fields are only ever added).
pub const SCHEMA_VERSION: u32 = 1;

/// The response header that carries [`Record::decision_id`] back to the client, so a
/// customer's complaint can be traced to its evidence line.
pub const DECISION_ID_HEADER: &str = "x-portcullis-decision-id";

/// [`Record::verdict`] values.
pub mod verdict {
    pub const REJECT: &str = "reject";
    /// Forwarded, marked; also every shadow decision (its hits have `shadow = true`).
    pub const FLAG: &str = "flag";
    pub const TARPIT: &str = "tarpit";
    pub const DENY_LIST: &str = "deny_list";
}

/// One evidence line. Field order is the serialized order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    /// [`SCHEMA_VERSION`].
    pub v: u32,
    /// RFC 3339, UTC, milliseconds: see [`timestamp`].
    pub ts: String,
    /// Also sent to the client in [`DECISION_ID_HEADER`]; see [`DecisionIds`].
    pub decision_id: String,
    pub policy_version: String,
    /// One of [`verdict`].
    pub verdict: String,
    /// The client IP (after a trusted PROXY header).
    pub peer: String,
    /// The client's subnet, e.g. `203.0.113.0/24`.
    pub subnet: String,
    /// Keyed hash of the API key, 32 hex digits; never the raw key.
    pub account: Option<String>,
    pub sni: Option<String>,
    pub alpn: Option<String>,
    pub ja3: Option<String>,
    pub ja3_hash: Option<String>,
    pub ja4: Option<String>,
    pub ja4_r: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_fp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub h2_fp: Option<String>,
    /// JA4H (FoxIO License); only from a build with the `ja4h` feature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ja4h: Option<String>,
    pub user_agent: Option<String>,
    /// The `[[policy.clients]]` name the request claimed (User-Agent or SDK headers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<String>,
    /// The layers (`ja4`, `ja3`, `header_fp`, `h2`) that contradict the claim.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claim_mismatch: Vec<String>,
    /// The kernel's TCP round-trip estimate, microseconds (docs/fingerprints.md, relay signal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_rtt_us: Option<u64>,
    /// The TLS handshake's round trip, microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_rtt_us: Option<u64>,
    /// The TLS round trip exceeded the TCP one by `policy.relay_gap` or more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<bool>,
    pub method: String,
    pub path: String,
    /// What the client got (200 when a flagged request was forwarded).
    pub status: u16,
    pub hits: Vec<HitRecord>,
}

/// One layer that matched: which rule, which counter, how far over.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HitRecord {
    pub rule: String,
    pub layer_key: String,
    pub current: u64,
    pub limit: u64,
    /// `reject`, `flag` or `tarpit`.
    pub action: String,
    /// Not enforced (global or per-rule shadow mode).
    pub shadow: bool,
    pub retry_after_ms: u64,
}

/// `t` as RFC 3339 UTC with milliseconds, the format of [`Record::ts`]
/// (`2025-04-22T10:15:00.123Z`).
pub fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Decision ids: 32 hex digits, unique per process without coordination.
///
/// The first half is random per process (so ids from a fleet do not collide); the second is a
/// keyed SipHash of a counter, so ids are unique within the process without telling a client
/// how many requests the proxy has decided.
pub struct DecisionIds {
    prefix: u64,
    hasher: siphasher::sip::SipHasher13,
    next: AtomicU64,
}

impl DecisionIds {
    pub fn new() -> Self {
        use ring::rand::SecureRandom;
        let mut seed = [0u8; 24];
        if ring::rand::SystemRandom::new().fill(&mut seed).is_err() {
            // No OS randomness (should not happen): time and pid still separate processes.
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos();
            seed[..16].copy_from_slice(&now.to_le_bytes());
            seed[16..20].copy_from_slice(&std::process::id().to_le_bytes());
        }
        let word = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&seed[i * 8..i * 8 + 8]);
            u64::from_le_bytes(b)
        };
        Self {
            prefix: word(0),
            hasher: siphasher::sip::SipHasher13::new_with_keys(word(1), word(2)),
            next: AtomicU64::new(0),
        }
    }

    /// The next id (lock-free).
    pub fn next_id(&self) -> String {
        use std::hash::Hasher;
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut h = self.hasher;
        h.write_u64(n);
        format!("{:016x}{:016x}", self.prefix, h.finish())
    }
}

impl Default for DecisionIds {
    fn default() -> Self {
        Self::new()
    }
}

/// Where and how the evidence file is written.
#[derive(Debug, Clone)]
pub struct EvidenceConfig {
    /// The active file, e.g. `/var/log/portcullis/evidence.jsonl`. Rotated files go beside it
    /// as `evidence-<UTC yyyymmddThhmmssZ>-<seq>.jsonl[.gz]`.
    pub path: PathBuf,
    /// Rotate before the active file would grow past this many bytes (0: never by size).
    pub max_bytes: u64,
    /// Rotate a non-empty active file this long after it was opened (zero: never by age).
    pub max_age: Duration,
    /// Rotated files kept; older ones are deleted.
    pub keep: usize,
    /// Gzip rotated files (in a blocking task, off the writer).
    pub compress: bool,
    /// `fdatasync` the active file at least this often while it has unsynced data.
    pub fsync_interval: Option<Duration>,
    /// Records that may wait for the writer; past that, [`EvidenceLog::record`] drops and counts.
    pub queue: usize,
}

impl Default for EvidenceConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("/var/log/portcullis/evidence.jsonl"),
            max_bytes: 256 * 1024 * 1024,
            max_age: Duration::from_secs(3600),
            keep: 24,
            compress: true,
            fsync_interval: None,
            queue: 65_536,
        }
    }
}

impl EvidenceConfig {
    /// The defaults with the active file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            ..Self::default()
        }
    }
}

/// Why a record was dropped (the `reason` label of `portcullis_evidence_dropped_total`).
#[derive(Debug, Clone, Copy)]
pub(crate) enum DropReason {
    QueueFull,
    Closed,
    Io,
}

impl DropReason {
    fn label(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::Closed => "closed",
            DropReason::Io => "io_error",
        }
    }
}

/// Counters shared by every handle and the writer.
#[derive(Default)]
pub(crate) struct Shared {
    written: AtomicU64,
    dropped: AtomicU64,
    /// Queue-full drops only, for the writer's "overflowed" summary.
    overflowed: AtomicU64,
    closed: AtomicBool,
}

impl Shared {
    pub(crate) fn add_written(&self, n: u64) {
        if n > 0 {
            self.written.fetch_add(n, Ordering::Relaxed);
            metrics::counter!("portcullis_evidence_written_total").increment(n);
        }
    }

    pub(crate) fn add_dropped(&self, n: u64, reason: DropReason) {
        if n == 0 {
            return;
        }
        if let DropReason::QueueFull = reason {
            self.overflowed.fetch_add(n, Ordering::Relaxed);
        }
        self.dropped.fetch_add(n, Ordering::Relaxed);
        metrics::counter!("portcullis_evidence_dropped_total", "reason" => reason.label())
            .increment(n);
    }
}

/// The handle the request path holds: cheap to clone, never blocks.
#[derive(Clone)]
pub struct EvidenceLog {
    tx: mpsc::Sender<Record>,
    ctl: mpsc::UnboundedSender<oneshot::Sender<()>>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for EvidenceLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvidenceLog")
            .field("written", &self.written())
            .field("dropped", &self.dropped())
            .finish()
    }
}

impl EvidenceLog {
    /// Opens (creating it and its directory if needed) the active file and returns the handle
    /// and the writer; spawn [`EvidenceWriter::run`] on the runtime. Records submitted before
    /// the writer runs wait in the queue.
    pub fn start(cfg: EvidenceConfig) -> std::io::Result<(EvidenceLog, EvidenceWriter)> {
        let (tx, rx) = mpsc::channel(cfg.queue.max(1));
        let (ctl, ctl_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared::default());
        let writer = EvidenceWriter::open(cfg, rx, ctl_rx, shared.clone())?;
        Ok((EvidenceLog { tx, ctl, shared }, writer))
    }

    /// Queues one record for the writer. Never blocks or awaits: when the queue is full or the
    /// log is shut down the record is dropped and counted.
    pub fn record(&self, r: Record) {
        if self.shared.closed.load(Ordering::Acquire) {
            self.shared.add_dropped(1, DropReason::Closed);
            return;
        }
        match self.tx.try_send(r) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.shared.add_dropped(1, DropReason::QueueFull)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.shared.add_dropped(1, DropReason::Closed)
            }
        }
    }

    /// Records on disk (handed to the file without error).
    pub fn written(&self) -> u64 {
        self.shared.written.load(Ordering::Relaxed)
    }

    /// Records dropped: queue full, submitted after shutdown, or lost to a write error.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Stops accepting records, writes everything already queued, fsyncs, waits for the last
    /// rotated file to be compressed, and returns. Later [`record`](Self::record) calls are
    /// counted as dropped. Returns at once if the writer has already stopped; waits for the
    /// writer if it has not been spawned yet.
    pub async fn shutdown(&self) {
        self.shared.closed.store(true, Ordering::Release);
        let (ack, done) = oneshot::channel();
        if self.ctl.send(ack).is_ok() {
            // An Err means the writer ended (dropped the ack) without us: nothing left to wait for.
            let _ = done.await;
        }
    }
}
