//! Response bodies: boxed, streamed as they arrive, and able to carry a guard that is dropped
//! when the body ends or the client goes away (used to count requests in flight).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type of every response portcullis sends.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// A body from bytes already in memory.
pub fn full(b: impl Into<Bytes>) -> ProxyBody {
    Full::new(b.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Boxes any body whose error converts to [`BoxError`].
pub fn boxed<B>(b: B) -> ProxyBody
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    b.map_err(Into::into).boxed_unsync()
}

/// Largest frame [`Guarded`] builds by joining frames that are already available.
pub const COALESCE_LIMIT: usize = 16 * 1024;

/// Polls in a row that find no new data before [`Guarded`] sends what it gathered.
const QUIET_POLLS: u8 = 2;

/// Data frames taken from the inner body and not yet handed on. The first one is kept as it
/// came (no copy when it turns out to be the only one, as for a JSON answer); a second one
/// starts a joined buffer.
#[derive(Default)]
struct Gathered {
    first: Option<Bytes>,
    joined: BytesMut,
}

impl Gathered {
    fn push(&mut self, data: Bytes) {
        if let Some(first) = self.first.take() {
            self.joined.reserve(first.len() + data.len());
            self.joined.extend_from_slice(&first);
        }
        if self.joined.is_empty() {
            self.first = Some(data);
        } else {
            self.joined.extend_from_slice(&data);
        }
    }
    fn len(&self) -> usize {
        self.first.as_ref().map_or(self.joined.len(), Bytes::len)
    }
    fn is_empty(&self) -> bool {
        self.first.is_none() && self.joined.is_empty()
    }
    fn take(&mut self) -> Option<Bytes> {
        match self.first.take() {
            Some(b) => Some(b),
            None if self.joined.is_empty() => None,
            None => Some(self.joined.split().freeze()),
        }
    }
}

/// A body that holds `G` until it is finished or dropped, and joins data frames that are
/// *already available* into one (up to [`COALESCE_LIMIT`]).
///
/// Why join: an upstream that sends 50 server-sent events at once arrives as 50 chunks; passed
/// on one by one, each becomes its own TLS record and write. hyper's HTTP/1.1 client hands its
/// body over through a one-slot channel from the connection's own task, so the next chunk is
/// only "available" once that task has run again. So when data was gathered and the inner body
/// says `Pending`, the body yields (wakes itself and returns `Pending`) to let that task refill
/// the slot, and sends what it has only after `QUIET_POLLS` polls in a row found nothing new.
/// It takes two, not one, because hyper's HTTP/1.1 server polls a pending body a second time
/// within the same task poll, before any other task has run. This never waits for time or for
/// the upstream's socket: a paced SSE stream still goes out event by event, two scheduler turns
/// later.
pub struct Guarded<G> {
    inner: ProxyBody,
    guard: Option<G>,
    gathered: Gathered,
    /// Polls in a row that found no new data while `gathered` held some.
    quiet: u8,
    /// Something to return after the gathered data: trailers, an error, or the end.
    pending: Option<Option<Result<Frame<Bytes>, BoxError>>>,
}

impl<G: Send + Unpin + 'static> Guarded<G> {
    pub fn wrap(inner: ProxyBody, guard: G) -> ProxyBody {
        Self {
            inner,
            guard: Some(guard),
            gathered: Gathered::default(),
            quiet: 0,
            pending: None,
        }
        .boxed_unsync()
    }
}

impl<G> Guarded<G> {
    /// Hands on what was gathered, if anything, and keeps `next` for the following poll;
    /// otherwise returns `next` now.
    fn finish(
        &mut self,
        next: Option<Result<Frame<Bytes>, BoxError>>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.gathered.take() {
            Some(b) => {
                self.pending = Some(next);
                Poll::Ready(Some(Ok(Frame::data(b))))
            }
            None => self.release(next),
        }
    }

    /// Returns `next`, dropping the guard first when it ends the body.
    fn release(
        &mut self,
        next: Option<Result<Frame<Bytes>, BoxError>>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if matches!(next, None | Some(Err(_))) {
            self.guard = None;
        }
        Poll::Ready(next)
    }
}

impl<G: Unpin> Body for Guarded<G> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(next) = this.pending.take() {
            return this.release(next);
        }
        let mut fresh = false;
        loop {
            let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => frame,
                Poll::Ready(end) => return this.finish(end),
                Poll::Pending if this.gathered.is_empty() => return Poll::Pending,
                Poll::Pending => {
                    if !fresh {
                        this.quiet += 1;
                    }
                    if this.quiet < QUIET_POLLS {
                        // Let the upstream connection's task run (see the type's doc).
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                    this.quiet = 0;
                    let data = this.gathered.take();
                    return Poll::Ready(data.map(|b| Ok(Frame::data(b))));
                }
            };
            match frame.into_data() {
                Ok(data) => {
                    fresh = true;
                    this.quiet = 0;
                    this.gathered.push(data);
                    // Nothing more can come when the inner body knows it has ended (a
                    // content-length body read to its length): no reason to wait a turn.
                    if this.gathered.len() >= COALESCE_LIMIT || this.inner.is_end_stream() {
                        let data = this.gathered.take();
                        return Poll::Ready(data.map(|b| Ok(Frame::data(b))));
                    }
                }
                Err(trailers) => return this.finish(Some(Ok(trailers))),
            }
        }
    }
    fn is_end_stream(&self) -> bool {
        self.pending.is_none() && self.gathered.is_empty() && self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::channel::Channel;

    #[tokio::test]
    async fn ready_frames_are_joined_and_pending_ones_are_not_waited_for() {
        let (mut tx, body) = Channel::<Bytes, BoxError>::new(8);
        for i in 0..3 {
            tx.send_data(Bytes::from(format!("e{i};")))
                .await
                .expect("send");
        }
        let mut b = Guarded::wrap(body.boxed_unsync(), ());
        // Three frames were ready: one joined frame, without waiting for more.
        let f = b.frame().await.expect("frame").expect("ok");
        assert_eq!(f.into_data().expect("data"), Bytes::from("e0;e1;e2;"));
        tx.send_data(Bytes::from("late")).await.expect("send");
        drop(tx);
        let f = b.frame().await.expect("frame").expect("ok");
        assert_eq!(f.into_data().expect("data"), Bytes::from("late"));
        assert!(b.frame().await.is_none());
    }

    #[tokio::test]
    async fn frames_handed_over_one_per_task_turn_are_joined() {
        // A one-slot channel fed by another task, as hyper's HTTP/1.1 client feeds its body.
        let (mut tx, body) = Channel::<Bytes, BoxError>::new(1);
        tokio::spawn(async move {
            for i in 0..5 {
                tx.send_data(Bytes::from(format!("e{i};")))
                    .await
                    .expect("send");
            }
        });
        let mut b = Guarded::wrap(body.boxed_unsync(), ());
        let f = b.frame().await.expect("frame").expect("ok");
        assert_eq!(f.into_data().expect("data"), Bytes::from("e0;e1;e2;e3;e4;"));
        assert!(b.frame().await.is_none());
    }
}
