//! A rewritten body read ahead of its rewriter, by a task of its own, a few chunks deep.
//!
//! hyper hands a response body over one chunk at a time and reads the next only when asked, and a TLS
//! upstream's body comes in 16 KiB records. So while the rewriter works on one chunk, nothing else of the
//! body is read, and the rewriter never sees more than one record at a time: too little to be worth
//! splitting across two cores (`html/split.rs`). Read ahead, whatever arrived while the rewriter was busy
//! is waiting when it comes back, and it takes all of it at once ([`super::TransformStream`]); it never
//! waits for more than what is there. The queue is bounded, so a slow visitor still holds the origin
//! back, and memory stays flat for any body size.

use std::io;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::decode::ByteStream;

/// Chunks read ahead at most: 128 KiB of TLS records, 256 KiB of decoded pieces.
const DEPTH: usize = 8;

/// `input`, read ahead on a task of the current runtime (as it is outside one).
pub fn read_ahead(mut input: ByteStream) -> ByteStream {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return input;
    };
    let (tx, mut rx) = mpsc::channel::<io::Result<Bytes>>(DEPTH);
    runtime.spawn(async move {
        while let Some(item) = input.next().await {
            let failed = item.is_err();
            // A dropped receiver (the visitor went away) ends the read, and drops the upstream body.
            if tx.send(item).await.is_err() || failed {
                break;
            }
        }
    });
    Box::pin(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)))
}
