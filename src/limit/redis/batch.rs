//! Natural batching on a standalone connection: one task per connection sends the requests
//! that queued while its previous call was in flight as one `EVALSHA`.
//!
//! The task waits for a message, takes whatever else is queued (at most [`MAX_BATCH`]
//! messages), sends it as one script call and waits for the answer before taking the next
//! batch. An idle store therefore adds no delay (a lone request goes at once), and a busy one
//! pays the script call, the round trip and each key's read and write once per batch instead of
//! once per request (docs/redis.md, "Batching").
//!
//! Messages are evaluations (one request's ops, answered on its own channel) and give-backs
//! (lease releases), which the script applies before the batch's evaluations. Every message
//! that waits here was sent after the evaluation it gives back was answered or given up on,
//! so a give-back never runs before its charge:
//! - a caller that gave up (timeout, cancelled) drops its answer channel first and only then
//!   queues its lease release; a request whose caller is gone before its batch is built is
//!   not sent at all, and one that was sent is followed by its release in a later batch, on
//!   the same connection, so after it;
//! - a lease is released when the request ends, after its evaluation's answer.
//!
//! Timeouts stay per request: the caller bounds its wait for the answer (queueing included) by
//! the store's timeout, and the batch call itself is bounded by the same timeout, so a slow
//! batch fails every request in it with `Timeout` and the task moves on.

use std::sync::Arc;
use std::time::Duration;

use redis::Value;
use tokio::sync::{mpsc, oneshot};

use super::conn::{Conn, Failure};
use super::script::{self, Part, Undo};

/// Most messages (evaluations and give-backs) in one script call. 64 in-flight requests of
/// 10 ops make a script of ~600 ops, well under a millisecond of Redis time.
pub(super) const MAX_BATCH: usize = 64;

/// One request's answer: its part of the script's reply, or why there is none.
pub(super) type Answer = Result<Value, (Failure, String)>;

/// What every batch call needs.
#[derive(Debug)]
pub(super) struct Settings {
    pub(super) sha: String,
    pub(super) lease_ttl: Duration,
    pub(super) timeout: Duration,
}

enum Msg {
    Eval {
        part: Part,
        answer: oneshot::Sender<Answer>,
    },
    GiveBack(Vec<Undo>),
}

/// The sending side of one connection's batch task (cheap to clone). The task ends when the
/// last clone is gone, after sending what is still queued.
#[derive(Clone)]
pub(super) struct Queue(mpsc::UnboundedSender<Msg>);

impl Queue {
    /// Starts the batch task for `conn` on the current tokio runtime (`None` without one).
    pub(super) fn spawn(conn: Conn, settings: Arc<Settings>) -> Option<Self> {
        let handle = tokio::runtime::Handle::try_current().ok()?;
        let (tx, rx) = mpsc::unbounded_channel();
        handle.spawn(serve(rx, conn, settings));
        Some(Self(tx))
    }

    /// Queues one request; its answer comes on the returned channel. `None`: the task is
    /// gone (the runtime is shutting down).
    pub(super) fn evaluate(&self, part: Part) -> Option<oneshot::Receiver<Answer>> {
        let (answer, rx) = oneshot::channel();
        self.0.send(Msg::Eval { part, answer }).ok()?;
        Some(rx)
    }

    /// Queues give-backs for the next batch (best effort: a lost lease expires with its TTL).
    pub(super) fn give_back(&self, entries: Vec<Undo>) {
        if !entries.is_empty() {
            let _ = self.0.send(Msg::GiveBack(entries));
        }
    }
}

async fn serve(mut rx: mpsc::UnboundedReceiver<Msg>, mut conn: Conn, settings: Arc<Settings>) {
    let mut evals: Vec<(Part, oneshot::Sender<Answer>)> = Vec::with_capacity(MAX_BATCH);
    let mut undo: Vec<Undo> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        let mut taken = 0;
        while let Some(msg) = next.take() {
            match msg {
                Msg::Eval { part, answer } => evals.push((part, answer)),
                Msg::GiveBack(entries) => undo.extend(entries),
            }
            taken += 1;
            if taken < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        // Callers that gave up before their request was sent: it is not sent (their lease
        // release, queued after, then removes nothing).
        evals.retain(|(_, answer)| !answer.is_closed());
        if evals.is_empty() && undo.is_empty() {
            continue;
        }
        let cmd = script::batch_cmd(
            &settings.sha,
            settings.lease_ttl,
            &undo,
            evals.iter().map(|(part, _)| part),
        );
        undo.clear();
        let reply = match tokio::time::timeout(settings.timeout, conn.eval(&cmd)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err((Failure::classify(&e), e.to_string())),
            Err(_) => Err((Failure::Timeout, "timed out".to_owned())),
        };
        let sizes = evals.iter().map(|(part, _)| part.ops());
        match reply
            .and_then(|v| script::split(v, sizes).map_err(|e| (Failure::Reply, e.to_string())))
        {
            Ok(parts) => {
                for ((_, answer), v) in evals.drain(..).zip(parts) {
                    // A caller gone meanwhile releases its own leases.
                    let _ = answer.send(Ok(v));
                }
            }
            Err(failure) => {
                for (_, answer) in evals.drain(..) {
                    let _ = answer.send(Err(failure.clone()));
                }
            }
        }
    }
}
