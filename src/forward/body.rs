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

/// A body that holds `G` until it is finished or dropped, and joins data frames that are
/// *already available* into one (up to [`COALESCE_LIMIT`]).
///
/// Why join: an upstream that sends 50 server-sent events at once arrives as 50 chunks; passed
/// on one by one, each becomes its own TLS record and write. Joining only what is ready never
/// delays a byte: the moment the upstream has nothing more, what was gathered goes out, so a
/// paced SSE stream still reaches the client event by event.
pub struct Guarded<G> {
    inner: ProxyBody,
    guard: Option<G>,
    /// Something to return after the gathered data: trailers, an error, or the end.
    pending: Option<Option<Result<Frame<Bytes>, BoxError>>>,
}

impl<G: Send + Unpin + 'static> Guarded<G> {
    pub fn wrap(inner: ProxyBody, guard: G) -> ProxyBody {
        Self {
            inner,
            guard: Some(guard),
            pending: None,
        }
        .boxed_unsync()
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
            if matches!(next, None | Some(Err(_))) {
                this.guard = None;
            }
            return Poll::Ready(next);
        }
        let mut gathered: Option<BytesMut> = None;
        loop {
            let polled = Pin::new(&mut this.inner).poll_frame(cx);
            let frame = match polled {
                Poll::Ready(Some(Ok(frame))) => frame,
                Poll::Pending => {
                    return match gathered {
                        Some(b) => Poll::Ready(Some(Ok(Frame::data(b.freeze())))),
                        None => Poll::Pending,
                    };
                }
                end => {
                    // End of body, an error, or (below) trailers: hand back what was gathered
                    // first, and this on the next poll.
                    let end = match end {
                        Poll::Ready(v) => v,
                        Poll::Pending => None, // handled above
                    };
                    return match gathered {
                        Some(b) => {
                            this.pending = Some(end);
                            Poll::Ready(Some(Ok(Frame::data(b.freeze()))))
                        }
                        None => {
                            if matches!(end, None | Some(Err(_))) {
                                this.guard = None;
                            }
                            Poll::Ready(end)
                        }
                    };
                }
            };
            match frame.into_data() {
                Ok(data) => match gathered.as_mut() {
                    None if data.len() >= COALESCE_LIMIT => {
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    None => gathered = Some(BytesMut::from(&data[..])),
                    Some(b) => {
                        b.extend_from_slice(&data);
                        if b.len() >= COALESCE_LIMIT {
                            return Poll::Ready(
                                gathered.take().map(|b| Ok(Frame::data(b.freeze()))),
                            );
                        }
                    }
                },
                Err(trailers) => {
                    return match gathered {
                        Some(b) => {
                            this.pending = Some(Some(Ok(trailers)));
                            Poll::Ready(Some(Ok(Frame::data(b.freeze()))))
                        }
                        None => Poll::Ready(Some(Ok(trailers))),
                    };
                }
            }
        }
    }
    fn is_end_stream(&self) -> bool {
        self.pending.is_none() && self.inner.is_end_stream()
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
}
