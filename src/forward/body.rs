//! Response bodies: boxed, streamed as they arrive, and able to carry a guard that is dropped
//! when the body ends or the client goes away (used to count requests in flight).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
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

/// A body that holds `G` until it is finished, fails or is dropped (the client went away).
///
/// Frames pass through as they come: the upstream body already hands on everything the
/// socket delivered in one frame (src/forward/upstream/body.rs).
pub struct Guarded<G> {
    inner: ProxyBody,
    guard: Option<G>,
}

impl<G: Send + Unpin + 'static> Guarded<G> {
    pub fn wrap(inner: ProxyBody, guard: G) -> ProxyBody {
        Self {
            inner,
            guard: Some(guard),
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
        let next = std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx));
        if matches!(next, None | Some(Err(_))) {
            this.guard = None;
        }
        Poll::Ready(next)
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    struct Flag(Arc<AtomicBool>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn the_guard_is_held_until_the_body_ends() {
        let dropped = Arc::new(AtomicBool::new(false));
        let mut b = Guarded::wrap(full("abc"), Flag(dropped.clone()));
        let f = b.frame().await.expect("frame").expect("ok");
        assert_eq!(f.into_data().expect("data"), Bytes::from("abc"));
        assert!(
            !dropped.load(Ordering::SeqCst),
            "guard released before the end"
        );
        assert!(b.frame().await.is_none());
        assert!(dropped.load(Ordering::SeqCst), "guard kept after the end");
    }
}
