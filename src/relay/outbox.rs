//! A connection's outgoing queue, bounded in messages and bytes. Pushing never waits, so whoever
//! produces (the visitor's reader) is never slowed by whoever consumes (an agent's socket). When the
//! bound is hit the queue is emptied rather than grown: the backlog is stale, and the room answers the
//! overflow with a fresh snapshot.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Utf8Bytes;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Text(Utf8Bytes),
    /// Send a close frame with this code and reason, then stop.
    Close(u16, &'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    Queued,
    /// The queue was full: everything queued was dropped, and so was this message.
    Overflowed,
    /// The connection is closing; nothing more goes out.
    Closed,
}

#[derive(Default)]
struct Inner {
    queue: VecDeque<Utf8Bytes>,
    bytes: usize,
    close: Option<(u16, &'static str)>,
}

pub struct Outbox {
    inner: Mutex<Inner>,
    ready: Notify,
    max_messages: usize,
    max_bytes: usize,
}

impl Outbox {
    pub fn new(max_messages: usize, max_bytes: usize) -> Outbox {
        Outbox {
            inner: Mutex::new(Inner::default()),
            ready: Notify::new(),
            max_messages: max_messages.max(1),
            max_bytes,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A poisoned queue only means a panic elsewhere; the data (texts) is still consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn push(&self, text: Utf8Bytes) -> Push {
        let mut inner = self.lock();
        if inner.close.is_some() {
            return Push::Closed;
        }
        let full =
            inner.queue.len() >= self.max_messages || inner.bytes + text.len() > self.max_bytes;
        if full {
            inner.queue.clear();
            inner.bytes = 0;
            return Push::Overflowed;
        }
        inner.bytes += text.len();
        inner.queue.push_back(text);
        drop(inner);
        self.ready.notify_one();
        Push::Queued
    }

    /// Ends the queue: what is already queued still goes out (an `ended` notice, say), then the close
    /// frame, and nothing after it. The first close wins.
    pub fn close(&self, code: u16, reason: &'static str) {
        let mut inner = self.lock();
        if inner.close.is_none() {
            inner.close = Some((code, reason));
        }
        drop(inner);
        self.ready.notify_one();
    }

    pub fn is_closed(&self) -> bool {
        self.lock().close.is_some()
    }

    /// The next item to write, waiting until there is one.
    pub async fn pop(&self) -> Item {
        loop {
            let notified = self.ready.notified();
            if let Some(item) = self.try_pop() {
                return item;
            }
            notified.await;
        }
    }

    fn try_pop(&self) -> Option<Item> {
        let mut inner = self.lock();
        match inner.queue.pop_front() {
            Some(text) => {
                inner.bytes -= text.len();
                Some(Item::Text(text))
            }
            None => inner.close.map(|(code, reason)| Item::Close(code, reason)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bounded_by_count_and_bytes_and_emptied_on_overflow() {
        let ob = Outbox::new(2, 10);
        assert_eq!(ob.push("abc".into()), Push::Queued);
        assert_eq!(ob.push("def".into()), Push::Queued);
        assert_eq!(ob.push("g".into()), Push::Overflowed);
        // The backlog is gone, not kept.
        assert!(ob.try_pop().is_none());
        assert_eq!(ob.push("0123456789".into()), Push::Queued);
        assert_eq!(ob.push("x".into()), Push::Overflowed);
        assert_eq!(ob.push("next".into()), Push::Queued);
        assert_eq!(ob.pop().await, Item::Text("next".into()));
    }

    #[tokio::test]
    async fn close_comes_after_what_is_queued_and_ends_pushing() {
        let ob = Outbox::new(8, 100);
        ob.push("a".into());
        ob.close(4010, "ended");
        ob.close(1000, "later");
        assert_eq!(ob.push("b".into()), Push::Closed);
        assert_eq!(ob.pop().await, Item::Text("a".into()));
        assert_eq!(ob.pop().await, Item::Close(4010, "ended"));
    }
}
