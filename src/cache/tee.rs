//! The body that stores while it streams: every data frame goes on to the client at once and is copied
//! aside; at a clean end of stream the copy is handed to a commit callback. A body that fails, grows past
//! the per-object cap, or does not match its `Content-Length` is never committed. The client never waits
//! for the copy.
//!
//! Whatever happens to the body, the coalescing guard it carries is released when copying stops, so
//! waiting requests wake up.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};

use super::flight::FlightGuard;
use crate::body::{BoxError, ProxyBody};

pub type Commit = Box<dyn FnOnce(Bytes) + Send>;

pub struct TeeBody {
    inner: ProxyBody,
    copy: Option<Copying>,
}

struct Copying {
    buf: BytesMut,
    cap: u64,
    expected: Option<u64>,
    commit: Commit,
    _guard: Option<FlightGuard>,
}

impl TeeBody {
    /// `expected` is the response's `Content-Length`, when it has one.
    pub fn new(
        inner: ProxyBody,
        cap: u64,
        expected: Option<u64>,
        commit: Commit,
        guard: Option<FlightGuard>,
    ) -> TeeBody {
        let mut tee = TeeBody {
            inner,
            copy: Some(Copying {
                buf: BytesMut::new(),
                cap,
                expected,
                commit,
                _guard: guard,
            }),
        };
        // An empty body may never be polled at all.
        if tee.inner.is_end_stream() {
            tee.finish();
        }
        tee
    }

    fn take(&mut self, data: &Bytes) {
        let Some(copy) = self.copy.as_mut() else {
            return;
        };
        if (copy.buf.len() + data.len()) as u64 > copy.cap {
            self.copy = None;
            return;
        }
        copy.buf.extend_from_slice(data);
    }

    fn finish(&mut self) {
        let Some(copy) = self.copy.take() else {
            return;
        };
        let complete = copy.expected.is_none_or(|n| n == copy.buf.len() as u64);
        if complete {
            (copy.commit)(copy.buf.freeze());
        }
    }
}

impl Body for TeeBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    this.take(data);
                }
                if this.inner.is_end_stream() {
                    this.finish();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => {
                this.copy = None;
                Poll::Ready(Some(Err(e)))
            }
            None => {
                this.finish();
                Poll::Ready(None)
            }
        }
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
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use futures_util::StreamExt;
    use http_body_util::{BodyExt, StreamBody};
    use tokio::sync::mpsc;

    use super::*;
    use crate::body::{boxed, full};

    type Committed = Arc<Mutex<Option<Bytes>>>;

    fn recorder() -> (Committed, Commit) {
        let seen: Committed = Arc::default();
        let into = seen.clone();
        (seen, Box::new(move |b| *into.lock().unwrap() = Some(b)))
    }

    /// A body fed chunk by chunk from the test.
    fn channel_body() -> (mpsc::Sender<Result<Bytes, BoxError>>, ProxyBody) {
        let (tx, rx) = mpsc::channel(4);
        let stream = tokio_stream_from(rx).map(|r| r.map(Frame::data));
        (tx, boxed(StreamBody::new(stream)))
    }

    fn tokio_stream_from(
        mut rx: mpsc::Receiver<Result<Bytes, BoxError>>,
    ) -> impl futures_util::Stream<Item = Result<Bytes, BoxError>> {
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }

    async fn next_data(tee: &mut TeeBody) -> Option<Bytes> {
        let frame = tokio::time::timeout(Duration::from_secs(10), tee.frame())
            .await
            .expect("a frame, not a hang");
        frame.map(|f| f.unwrap().into_data().unwrap())
    }

    #[tokio::test]
    async fn chunks_flow_before_the_body_ends_and_the_whole_is_committed() {
        let (tx, body) = channel_body();
        let (seen, commit) = recorder();
        let mut tee = TeeBody::new(body, 100, None, commit, None);
        tx.send(Ok(Bytes::from_static(b"first "))).await.unwrap();
        // The origin has not finished: the client still gets the first chunk now.
        assert_eq!(next_data(&mut tee).await.unwrap(), "first ");
        assert!(seen.lock().unwrap().is_none());
        tx.send(Ok(Bytes::from_static(b"second"))).await.unwrap();
        drop(tx);
        assert_eq!(next_data(&mut tee).await.unwrap(), "second");
        assert!(next_data(&mut tee).await.is_none());
        assert_eq!(seen.lock().unwrap().as_deref(), Some(&b"first second"[..]));
    }

    #[tokio::test]
    async fn over_the_cap_errors_and_short_bodies_are_not_committed() {
        let (seen, commit) = recorder();
        let tee = TeeBody::new(full("0123456789"), 9, None, commit, None);
        assert_eq!(
            tee.collect().await.unwrap().to_bytes(),
            "0123456789",
            "still streamed whole"
        );
        assert!(seen.lock().unwrap().is_none());

        let (seen, commit) = recorder();
        let tee = TeeBody::new(full("short"), 100, Some(10), commit, None);
        let _ = tee.collect().await.unwrap();
        assert!(seen.lock().unwrap().is_none(), "Content-Length not met");

        let (tx, body) = channel_body();
        let (seen, commit) = recorder();
        let tee = TeeBody::new(body, 100, None, commit, None);
        tx.send(Ok(Bytes::from_static(b"part"))).await.unwrap();
        tx.send(Err("reset".into())).await.unwrap();
        drop(tx);
        assert!(tee.collect().await.is_err());
        assert!(seen.lock().unwrap().is_none());
    }

    #[tokio::test]
    async fn empty_and_dropped_bodies() {
        let (seen, commit) = recorder();
        let _tee = TeeBody::new(crate::body::empty(), 100, Some(0), commit, None);
        assert_eq!(
            seen.lock().unwrap().as_deref(),
            Some(&b""[..]),
            "committed unpolled"
        );

        let (tx, body) = channel_body();
        let (seen, commit) = recorder();
        let mut tee = TeeBody::new(body, 100, None, commit, None);
        tx.send(Ok(Bytes::from_static(b"part"))).await.unwrap();
        let _ = next_data(&mut tee).await;
        drop(tee);
        assert!(
            seen.lock().unwrap().is_none(),
            "a client that leaves stores nothing"
        );
    }
}
