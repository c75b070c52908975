//! One log line per request, written when the response body ends (or is abandoned), so it carries the real
//! size and duration. Route, method, target host, status, bytes and milliseconds only: never a path, a
//! query, a header value or a body.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::body::{BoxError, ProxyBody};

pub struct AccessLog {
    pub route: &'static str,
    pub method: http::Method,
    pub host: String,
    pub status: u16,
    pub started: Instant,
}

/// Wraps a response body; counts its bytes and logs once when it is done or dropped.
pub struct LoggedBody {
    inner: ProxyBody,
    log: Option<AccessLog>,
    bytes: u64,
}

impl LoggedBody {
    pub fn new(inner: ProxyBody, log: AccessLog) -> LoggedBody {
        LoggedBody {
            inner,
            log: Some(log),
            bytes: 0,
        }
    }

    fn finish(&mut self, complete: bool) {
        if let Some(log) = self.log.take() {
            tracing::info!(
                route = log.route,
                method = %log.method,
                host = %log.host,
                status = log.status,
                bytes = self.bytes,
                ms = log.started.elapsed().as_millis() as u64,
                complete,
                "request"
            );
        }
    }
}

impl Body for LoggedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                this.bytes += frame.data_ref().map_or(0, |d| d.len() as u64);
            }
            Poll::Ready(Some(Err(_))) => this.finish(false),
            Poll::Ready(None) => this.finish(true),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        let complete = self.inner.is_end_stream();
        self.finish(complete);
    }
}
