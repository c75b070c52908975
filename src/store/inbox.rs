//! Writes on their way to the backend, handed over without waking it while a commit window is open.
//!
//! Every page a visitor loads records a sighting. Sent through a channel, each one woke the backend's
//! owner (a futex wake on the request path, ~20 µs of a page's time on this machine, and a thread
//! switch on the shared cores) only to be kept until the window's commit. Here the first write after a
//! quiet spell wakes the owner and opens a window; later writes are only pushed. At the window's end the
//! owner takes what came; if anything did, the window rolls on without another wake, so a steadily busy
//! proxy never wakes the owner from a request at all. Queries still go through the command channel and
//! are answered at once, after the owner has committed what is here (`take`).

use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use super::command::Write;

pub struct Inbox {
    state: Mutex<State>,
    opened: Notify,
    limit: usize,
}

struct State {
    writes: Vec<Write>,
    /// A window is open: the owner will take the writes at its end, so a new one needs no wake.
    open: bool,
}

impl Inbox {
    /// Holds at most `limit` writes; beyond that they are dropped, as a full queue dropped them.
    pub fn new(limit: usize) -> Inbox {
        Inbox {
            state: Mutex::new(State {
                writes: Vec::new(),
                open: false,
            }),
            opened: Notify::new(),
            limit,
        }
    }

    /// Queues `write`; false when full. Wakes the owner only when this write opens a window.
    pub fn push(&self, write: Write) -> bool {
        let mut state = self.lock();
        if state.writes.len() >= self.limit {
            return false;
        }
        state.writes.push(write);
        let opens = !state.open;
        state.open = true;
        drop(state);
        if opens {
            self.opened.notify_one();
        }
        true
    }

    /// Resolves when a write has opened a window (at once if one did since the last call).
    pub async fn opened(&self) {
        self.opened.notified().await;
    }

    /// The writes that came, at a window's end: a window in which any came stays open (the owner starts
    /// the next), one in which none came closes, and the next write wakes the owner again.
    pub fn end_window(&self) -> Vec<Write> {
        let mut state = self.lock();
        let writes = std::mem::take(&mut state.writes);
        state.open = !writes.is_empty();
        writes
    }

    /// Every write that came, before a query or at close; the window stays as it is.
    pub fn take(&self) -> Vec<Write> {
        std::mem::take(&mut self.lock().writes)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-changed: every change is one push or
        // one take.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::events::{EventName, NewEvent};
    use std::time::Duration;

    fn write(n: i64) -> Write {
        Write::Event(NewEvent {
            at: n,
            session: "s".into(),
            name: EventName::PageView,
            role: None,
            bytes: None,
        })
    }

    fn at(writes: &[Write]) -> Vec<i64> {
        writes
            .iter()
            .map(|w| match w {
                Write::Event(e) => e.at,
                _ => -1,
            })
            .collect()
    }

    async fn woken(inbox: &Inbox) -> bool {
        tokio::time::timeout(Duration::from_millis(50), inbox.opened())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn only_the_write_that_opens_a_window_wakes_the_owner() {
        let inbox = Inbox::new(10);
        assert!(!woken(&inbox).await, "nothing written yet");
        assert!(inbox.push(write(1)));
        assert!(inbox.push(write(2)));
        assert!(woken(&inbox).await);
        assert!(
            !woken(&inbox).await,
            "the second write did not wake it again"
        );
        // Writes came in this window: it rolls on, and a write in the next one wakes nobody.
        assert_eq!(at(&inbox.end_window()), [1, 2]);
        assert!(inbox.push(write(3)));
        assert!(!woken(&inbox).await);
        assert_eq!(at(&inbox.end_window()), [3]);
        // A window with nothing in it closes; the next write wakes the owner.
        assert!(inbox.end_window().is_empty());
        assert!(inbox.push(write(4)));
        assert!(woken(&inbox).await);
    }

    #[tokio::test]
    async fn a_query_takes_what_came_and_a_full_inbox_drops() {
        let inbox = Inbox::new(2);
        assert!(inbox.push(write(1)));
        assert!(inbox.push(write(2)));
        assert!(!inbox.push(write(3)), "full");
        assert_eq!(at(&inbox.take()), [1, 2]);
        // The window is still open: the owner's timer ends it.
        assert!(inbox.push(write(5)));
        assert!(woken(&inbox).await, "the first push's wake is still there");
        assert!(!woken(&inbox).await);
        assert_eq!(at(&inbox.end_window()), [5]);
    }
}
