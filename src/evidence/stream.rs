//! The optional second evidence sink: a Redis Stream (`XADD key MAXLEN ~ N * r <json>`), so a
//! whole fleet's evidence lands in one place. `portcullis investigate redis://host:port/db`
//! reads it back (with `--stream-key`).
//!
//! Off the hot path like the file: records are queued (bounded) and a task sends them in
//! pipelined batches over one multiplexed connection. While Redis is down the task reconnects
//! with backoff; records that do not fit in the queue are dropped and counted
//! (`portcullis_evidence_stream_dropped_total`), never silently. The file log stays the
//! complete record.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{info, warn};

/// Where the stream lives.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// `redis://host:port/db`.
    pub url: String,
    /// The stream key.
    pub key: String,
    /// Approximate cap on the stream's length (`MAXLEN ~`).
    pub maxlen: u64,
    /// Records waiting to be sent.
    pub queue: usize,
}

/// The field name each entry's JSON is stored under.
pub const FIELD: &str = "r";

/// A handle for queueing records to the stream (cheap to clone).
#[derive(Clone, Debug)]
pub struct EvidenceStream {
    tx: mpsc::Sender<String>,
    sent: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
}

impl EvidenceStream {
    /// Validates the URL and spawns the sender task (needs a tokio runtime).
    pub fn start(cfg: StreamConfig) -> Result<Self, String> {
        let client = redis::Client::open(cfg.url.as_str()).map_err(|e| e.to_string())?;
        let (tx, rx) = mpsc::channel(cfg.queue.max(1));
        let s = Self {
            tx,
            sent: Arc::new(AtomicU64::new(0)),
            dropped: Arc::new(AtomicU64::new(0)),
        };
        tokio::spawn(run(client, cfg, rx, s.sent.clone(), s.dropped.clone()));
        Ok(s)
    }

    /// Queues one record's JSON; never blocks.
    pub fn send(&self, json: String) {
        if self.tx.try_send(json).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("portcullis_evidence_stream_dropped_total").increment(1);
        }
    }

    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

async fn run(
    client: redis::Client,
    cfg: StreamConfig,
    mut rx: mpsc::Receiver<String>,
    sent: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
) {
    let mut backoff = Duration::from_millis(100);
    let mut conn: Option<redis::aio::MultiplexedConnection> = None;
    let mut batch: Vec<String> = Vec::new();
    let mut down_logged = false;
    loop {
        if batch.is_empty() {
            match rx.recv().await {
                Some(r) => batch.push(r),
                None => return, // every handle dropped
            }
            while batch.len() < 256 {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
        }
        if conn.is_none() {
            let attempt = tokio::time::timeout(
                Duration::from_secs(2),
                client.get_multiplexed_async_connection(),
            );
            match attempt.await {
                Ok(Ok(c)) => {
                    if down_logged {
                        info!("evidence stream: connected");
                    }
                    conn = Some(c);
                    backoff = Duration::from_millis(100);
                    down_logged = false;
                }
                _ => {
                    if !down_logged {
                        warn!(url = %cfg.url, "evidence stream: Redis unreachable; retrying with backoff");
                        down_logged = true;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let mut pipe = redis::pipe();
        for r in &batch {
            pipe.cmd("XADD")
                .arg(&cfg.key)
                .arg("MAXLEN")
                .arg("~")
                .arg(cfg.maxlen)
                .arg("*")
                .arg(FIELD)
                .arg(r)
                .ignore();
        }
        let res: Result<Result<(), redis::RedisError>, _> =
            tokio::time::timeout(Duration::from_secs(2), pipe.query_async(c)).await;
        match res {
            Ok(Ok(())) => {
                sent.fetch_add(batch.len() as u64, Ordering::Relaxed);
                metrics::counter!("portcullis_evidence_stream_sent_total")
                    .increment(batch.len() as u64);
                batch.clear();
            }
            _ => {
                // Keep the batch and retry on a new connection; if the queue overflows
                // meanwhile, `send` counts the drops.
                conn = None;
                if !down_logged {
                    warn!(url = %cfg.url, "evidence stream: XADD failed; reconnecting");
                    down_logged = true;
                }
                let _ = &dropped;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// One XRANGE entry: its id and its field/value pairs.
type StreamEntry = (String, Vec<(String, Vec<u8>)>);

/// Reads every entry of `key` in order (XRANGE in pages) and calls `f` with each JSON value;
/// entries without the field are reported through `bad` with their position. Blocking.
pub fn read_all(
    url: &str,
    key: &str,
    mut f: impl FnMut(&[u8]),
    mut bad: impl FnMut(u64, String),
) -> Result<(), String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let mut conn = client.get_connection().map_err(|e| e.to_string())?;
    let mut start = "-".to_string();
    let mut n = 0u64;
    loop {
        let page: Vec<StreamEntry> = redis::cmd("XRANGE")
            .arg(key)
            .arg(&start)
            .arg("+")
            .arg("COUNT")
            .arg(1000)
            .query(&mut conn)
            .map_err(|e| e.to_string())?;
        let Some(last) = page.last().map(|(id, _)| id.clone()) else {
            return Ok(());
        };
        for (id, fields) in &page {
            n += 1;
            match fields.iter().find(|(k, _)| k == FIELD) {
                Some((_, v)) => f(v),
                None => bad(n, format!("entry {id} has no `{FIELD}` field")),
            }
        }
        start = format!("({last}");
    }
}
