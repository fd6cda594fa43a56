//! The writer task: drains the queue, serializes records into one buffer of lines and hands
//! the buffer to the blocking [`Sink`] — at least every 100 ms, whenever the queue runs empty,
//! or when the buffer is large — so at a low rate each record reaches the file at once and at a
//! high rate writes are batched.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{error, warn};

use super::sink::{tidy, Sink};
use super::{DropReason, EvidenceConfig, Record, Shared};

/// Flush at least this often while records are buffered.
const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Flush when the buffer holds this much.
const FLUSH_BYTES: usize = 256 * 1024;
/// Records taken off the queue per wake-up.
const BATCH: usize = 1024;

/// The writer task. Spawn [`run`](Self::run) once.
pub struct EvidenceWriter {
    rx: mpsc::Receiver<Record>,
    ctl: mpsc::UnboundedReceiver<oneshot::Sender<()>>,
    shared: Arc<Shared>,
    cfg: EvidenceConfig,
    sink: Sink,
}

impl std::fmt::Debug for EvidenceWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvidenceWriter")
            .field("path", &self.cfg.path)
            .finish()
    }
}

/// The writer's state between wake-ups.
struct State {
    shared: Arc<Shared>,
    cfg: EvidenceConfig,
    /// `None` only while a blocking call holds it.
    sink: Option<Sink>,
    buf: Vec<u8>,
    /// Records in `buf`.
    pending: u64,
    last_flush: Instant,
    last_sync: Instant,
    /// The running compress-and-prune job, if any; at most one at a time.
    tidy: Option<JoinHandle<()>>,
    /// Queue-full drops already reported in the log.
    reported_overflow: u64,
    /// An IO error is being reported; log once per episode, not per batch.
    failing: bool,
}

impl EvidenceWriter {
    pub(super) fn open(
        cfg: EvidenceConfig,
        rx: mpsc::Receiver<Record>,
        ctl: mpsc::UnboundedReceiver<oneshot::Sender<()>>,
        shared: Arc<Shared>,
    ) -> std::io::Result<Self> {
        let sink = Sink::open(&cfg)?;
        Ok(Self {
            rx,
            ctl,
            shared,
            cfg,
            sink,
        })
    }

    /// Writes records until [`EvidenceLog::shutdown`](super::EvidenceLog::shutdown) or until
    /// every handle is dropped; then writes whatever is queued, fsyncs and returns.
    pub async fn run(self) {
        let EvidenceWriter {
            mut rx,
            mut ctl,
            shared,
            cfg,
            sink,
        } = self;
        let mut st = State {
            shared,
            cfg,
            sink: Some(sink),
            buf: Vec::with_capacity(FLUSH_BYTES + 64 * 1024),
            pending: 0,
            last_flush: Instant::now(),
            last_sync: Instant::now(),
            tidy: None,
            reported_overflow: 0,
            failing: false,
        };
        // Compress rotated files a previous run left plain, and apply retention.
        st.start_tidy().await;
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch = Vec::with_capacity(BATCH);
        let mut acks = Vec::new();
        loop {
            tokio::select! {
                biased;
                ack = ctl.recv() => {
                    if let Some(ack) = ack {
                        acks.push(ack);
                    }
                    break;
                }
                n = rx.recv_many(&mut batch, BATCH) => {
                    if n == 0 {
                        break; // every handle dropped and the queue is empty
                    }
                    st.take(&mut batch);
                    if st.flush_due(rx.is_empty()) {
                        st.flush().await;
                    }
                    st.report_overflow();
                }
                _ = tick.tick() => st.maintain().await,
            }
        }
        // Shutdown: refuse new records, then drain what is already queued. A record that raced
        // past the `closed` check is either in the queue (written here) or refused by the
        // closed channel (counted as dropped).
        st.shared.closed.store(true, Ordering::Release);
        rx.close();
        while rx.recv_many(&mut batch, BATCH).await > 0 {
            st.take(&mut batch);
            if st.buf.len() >= FLUSH_BYTES {
                st.flush().await;
            }
        }
        st.flush().await;
        st.report_overflow();
        st.blocking(|sink| sink.sync().map(|()| false)).await;
        if let Some(job) = st.tidy.take() {
            let _ = job.await;
        }
        ctl.close();
        while let Ok(ack) = ctl.try_recv() {
            acks.push(ack);
        }
        for ack in acks {
            let _ = ack.send(());
        }
    }
}

impl State {
    /// Serializes a batch into the buffer.
    fn take(&mut self, batch: &mut Vec<Record>) {
        for r in batch.drain(..) {
            let mark = self.buf.len();
            match serde_json::to_writer(&mut self.buf, &r) {
                Ok(()) => {
                    self.buf.push(b'\n');
                    self.pending += 1;
                }
                Err(e) => {
                    // Not reachable with these field types; counted, never silent.
                    self.buf.truncate(mark);
                    self.shared.add_dropped(1, DropReason::Io);
                    error!(error = %e, "evidence: record not serializable");
                }
            }
        }
    }

    fn flush_due(&self, queue_empty: bool) -> bool {
        let size = self.sink.as_ref().map_or(0, Sink::size);
        let max = self.cfg.max_bytes;
        queue_empty
            || self.buf.len() >= FLUSH_BYTES
            || self.last_flush.elapsed() >= FLUSH_EVERY
            || (max > 0 && size + self.buf.len() as u64 >= max)
    }

    /// After the queue was full and has been drained again: one summary line.
    fn report_overflow(&mut self) {
        let total = self.shared.overflowed.load(Ordering::Relaxed);
        if total > self.reported_overflow {
            let dropped = total - self.reported_overflow;
            self.reported_overflow = total;
            warn!(
                dropped,
                total,
                queue = self.cfg.queue,
                "evidence queue overflowed; records dropped"
            );
        }
    }

    /// The 100 ms tick: flush, rotate by age, fsync by interval.
    async fn maintain(&mut self) {
        if self.pending > 0 {
            self.flush().await;
        }
        let Some(sink) = self.sink.as_ref() else {
            return;
        };
        let sync_due = sink.unsynced()
            && self
                .cfg
                .fsync_interval
                .is_some_and(|iv| self.last_sync.elapsed() >= iv);
        if !sync_due && !sink.age_due() {
            return;
        }
        let rotated = self
            .blocking(move |sink| {
                let rotated = sink.rotate_if_old()?;
                if sync_due {
                    sink.sync()?;
                }
                Ok(rotated)
            })
            .await;
        if sync_due {
            self.last_sync = Instant::now();
        }
        if rotated {
            self.start_tidy().await;
        }
    }

    /// Writes the buffer; counts its records as written or, on an IO error, as dropped.
    async fn flush(&mut self) {
        self.last_flush = Instant::now();
        if self.buf.is_empty() {
            return;
        }
        let buf = std::mem::take(&mut self.buf);
        let pending = std::mem::take(&mut self.pending);
        let Some(mut sink) = self.sink.take() else {
            self.shared.add_dropped(pending, DropReason::Io);
            return;
        };
        let job = tokio::task::spawn_blocking(move || {
            let commit = sink.commit(&buf);
            (sink, buf, commit)
        });
        match job.await {
            Ok((sink, mut buf, commit)) => {
                self.sink = Some(sink);
                buf.clear();
                self.buf = buf;
                self.shared.add_written(commit.lines);
                self.shared
                    .add_dropped(pending.saturating_sub(commit.lines), DropReason::Io);
                self.note(commit.error);
                if commit.rotated {
                    self.start_tidy().await;
                }
            }
            Err(e) => {
                // The blocking task panicked; the sink went with it. Reopen and go on.
                self.shared.add_dropped(pending, DropReason::Io);
                error!(error = %e, "evidence: write task failed");
                self.reopen();
            }
        }
    }

    /// Runs `f` on the sink in a blocking task; true when it rotated the file.
    async fn blocking<F>(&mut self, f: F) -> bool
    where
        F: FnOnce(&mut Sink) -> std::io::Result<bool> + Send + 'static,
    {
        let Some(mut sink) = self.sink.take() else {
            return false;
        };
        match tokio::task::spawn_blocking(move || {
            let r = f(&mut sink);
            (sink, r)
        })
        .await
        {
            Ok((sink, r)) => {
                self.sink = Some(sink);
                match r {
                    Ok(rotated) => rotated,
                    Err(e) => {
                        self.note(Some(e));
                        false
                    }
                }
            }
            Err(e) => {
                error!(error = %e, "evidence: file task failed");
                self.reopen();
                false
            }
        }
    }

    fn reopen(&mut self) {
        match Sink::open(&self.cfg) {
            Ok(s) => self.sink = Some(s),
            Err(e) => self.note(Some(e)),
        }
    }

    /// Logs the first error of an episode and the recovery; not one line per batch.
    fn note(&mut self, err: Option<std::io::Error>) {
        match err {
            Some(e) if !self.failing => {
                self.failing = true;
                error!(file = %self.cfg.path.display(), error = %e, "evidence: write failed; records are being dropped");
            }
            Some(_) => {}
            None if self.failing => {
                self.failing = false;
                warn!(file = %self.cfg.path.display(), "evidence: writes recovered");
            }
            None => {}
        }
    }

    /// Starts compress-and-prune after a rotation, after the previous run has finished.
    async fn start_tidy(&mut self) {
        if let Some(prev) = self.tidy.take() {
            let _ = prev.await;
        }
        let Some(names) = self.sink.as_ref().map(Sink::names) else {
            return;
        };
        let (keep, compress) = (self.cfg.keep, self.cfg.compress);
        self.tidy = Some(tokio::task::spawn_blocking(move || {
            tidy(&names, keep, compress)
        }));
    }
}
