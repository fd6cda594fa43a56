//! The upstream response body, read from the upstream socket by whoever polls it (hyper's
//! server side, in the task of the client's connection or stream), never buffered whole.
//!
//! Each poll hands on everything the socket already delivered, as one frame: a burst of
//! server-sent events that arrived together goes to the client as one TLS record and one
//! write, while a paced stream still goes out event by event, as each arrives.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use tokio::io::AsyncReadExt;

use super::codec::{ChunkedDecoder, Gathered, ResponseFraming};
use super::{Conn, Inner, READ_CHUNK};
use crate::forward::body::BoxError;

enum State {
    /// This many bytes to go.
    Length(u64),
    Chunked(ChunkedDecoder),
    /// Until the upstream closes.
    Close,
    Done,
}

/// A response body streamed from an upstream connection, which goes back to the pool once
/// the body has been read to its end (and is closed if the body is dropped before that).
pub struct UpstreamBody {
    conn: Option<Box<Conn>>,
    state: State,
    reusable: bool,
    pool: Arc<Inner>,
}

#[derive(Debug, thiserror::Error)]
enum BodyError {
    #[error("the upstream closed the connection before the end of the body")]
    Truncated,
    #[error(transparent)]
    Wire(#[from] super::codec::WireError),
}

impl UpstreamBody {
    pub(super) fn new(
        conn: Box<Conn>,
        framing: ResponseFraming,
        reusable: bool,
        pool: &Arc<Inner>,
    ) -> Self {
        let state = match framing {
            ResponseFraming::Empty | ResponseFraming::Length(0) => State::Done,
            ResponseFraming::Length(n) => State::Length(n),
            ResponseFraming::Chunked => State::Chunked(ChunkedDecoder::default()),
            ResponseFraming::Close => State::Close,
        };
        let mut body = Self {
            conn: Some(conn),
            state,
            reusable,
            pool: pool.clone(),
        };
        if matches!(body.state, State::Done) {
            body.finish();
        }
        body
    }

    /// The body has been read to its end: the connection goes back to the pool if nothing
    /// follows the body on it and its response allowed reuse.
    fn finish(&mut self) {
        self.state = State::Done;
        if let Some(conn) = self.conn.take() {
            if self.reusable && conn.rbuf.is_empty() {
                self.pool.put(conn);
            }
        }
    }

    /// Takes the body bytes already in the read buffer.
    fn take_buffered(&mut self, out: &mut Gathered) -> Result<(), BoxError> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        match &mut self.state {
            State::Length(left) => {
                if !conn.rbuf.is_empty() {
                    let n = usize::try_from(*left)
                        .unwrap_or(usize::MAX)
                        .min(conn.rbuf.len());
                    out.push(take(&mut conn.rbuf, n));
                    *left -= n as u64;
                }
                if *left == 0 {
                    self.finish();
                }
            }
            State::Chunked(dec) => {
                dec.decode(&mut conn.rbuf, out)
                    .map_err(|e| Box::new(BodyError::Wire(e)) as BoxError)?;
                if dec.is_done() {
                    self.finish();
                }
            }
            State::Close => {
                if !conn.rbuf.is_empty() {
                    let n = conn.rbuf.len();
                    out.push(take(&mut conn.rbuf, n));
                }
            }
            State::Done => {}
        }
        Ok(())
    }
}

/// Up to this many body bytes are copied out of the read buffer rather than split off it.
const COPY_MAX: usize = 4096;

/// The first `n` bytes of the read buffer, as a chunk of the body. A short chunk is copied:
/// splitting would turn the buffer into a shared one, whose reference counts are atomic
/// operations (one per split, one per drop), and the next read could no longer reuse it.
fn take(rbuf: &mut BytesMut, n: usize) -> Bytes {
    if n <= COPY_MAX {
        let chunk = Bytes::copy_from_slice(&rbuf[..n]);
        rbuf.advance(n);
        chunk
    } else {
        rbuf.split_to(n).freeze()
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            let mut out = Gathered::default();
            if let Err(e) = this.take_buffered(&mut out) {
                this.conn = None;
                this.state = State::Done;
                return Poll::Ready(Some(Err(e)));
            }
            if let Some(data) = out.take() {
                return Poll::Ready(Some(Ok(Frame::data(data))));
            }
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            conn.rbuf.reserve(READ_CHUNK);
            // `read_buf` is cancel-safe: a pending read leaves nothing behind.
            let read = std::pin::pin!(conn.io.read_buf(&mut conn.rbuf)).poll(cx);
            match read {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(n)) if n > 0 => {}
                Poll::Ready(Ok(_)) if matches!(this.state, State::Close) => {
                    this.conn = None;
                    this.state = State::Done;
                    return Poll::Ready(None);
                }
                Poll::Ready(Ok(_)) => {
                    this.conn = None;
                    this.state = State::Done;
                    return Poll::Ready(Some(Err(Box::new(BodyError::Truncated))));
                }
                Poll::Ready(Err(e)) => {
                    this.conn = None;
                    this.state = State::Done;
                    return Poll::Ready(Some(Err(Box::new(e))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            State::Length(n) => SizeHint::with_exact(n),
            State::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}
