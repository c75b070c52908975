//! Request coalescing: concurrent misses for the same URL make one origin request. The first becomes the
//! leader and holds a [`FlightGuard`]; later ones wait, bounded in time, until the guard is released (the
//! response was stored, turned out not storable, failed, or its client left), then look again.
//!
//! It knows nothing about HTTP: it only tracks who is fetching which key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

#[derive(Default)]
pub struct Flights {
    inner: Arc<Mutex<HashMap<String, watch::Receiver<()>>>>,
}

pub enum Join {
    /// Nobody is fetching this key: fetch it, and drop the guard when done.
    Leader(FlightGuard),
    /// Someone is: wait for them.
    Follower(Waiter),
}

/// Held by the leader; dropping it wakes every follower.
pub struct FlightGuard {
    flights: Arc<Mutex<HashMap<String, watch::Receiver<()>>>>,
    key: String,
    done: watch::Sender<()>,
}

pub struct Waiter(watch::Receiver<()>);

impl Flights {
    pub fn join(&self, key: &str) -> Join {
        let mut map = lock(&self.inner);
        if let Some(rx) = map.get(key) {
            return Join::Follower(Waiter(rx.clone()));
        }
        let (done, rx) = watch::channel(());
        map.insert(key.to_owned(), rx);
        Join::Leader(FlightGuard {
            flights: self.inner.clone(),
            key: key.to_owned(),
            done,
        })
    }

    /// Leads only if nobody else is fetching `key` (background revalidation).
    pub fn try_lead(&self, key: &str) -> Option<FlightGuard> {
        match self.join(key) {
            Join::Leader(guard) => Some(guard),
            Join::Follower(_) => None,
        }
    }
}

impl Waiter {
    /// Waits until the leader is done, or `limit` passes. True when the leader finished in time.
    pub async fn wait(mut self, limit: Duration) -> bool {
        // `changed` fails once the sender is gone, which is how the leader signals.
        let ended = async { while self.0.changed().await.is_ok() {} };
        tokio::time::timeout(limit, ended).await.is_ok()
    }
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        let mut map = lock(&self.flights);
        let ours = map
            .get(&self.key)
            .is_some_and(|rx| rx.same_channel(&self.done.subscribe()));
        if ours {
            map.remove(&self.key);
        }
    }
}

/// A panic elsewhere while holding the lock leaves the map usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn followers_wait_for_the_leader_and_the_key_frees_after() {
        let flights = Flights::default();
        let Join::Leader(guard) = flights.join("k") else {
            panic!("first is the leader");
        };
        let Join::Follower(waiter) = flights.join("k") else {
            panic!("second follows");
        };
        assert!(flights.try_lead("k").is_none());
        assert!(matches!(flights.join("other"), Join::Leader(_)));
        let waiting = tokio::spawn(waiter.wait(Duration::from_secs(10)));
        drop(guard);
        assert!(waiting.await.unwrap(), "woken by the leader, not the limit");
        assert!(flights.try_lead("k").is_some(), "the key is free again");
    }

    #[tokio::test]
    async fn a_wait_is_bounded() {
        let flights = Flights::default();
        let _guard = flights.try_lead("k").unwrap();
        let Join::Follower(waiter) = flights.join("k") else {
            panic!("follows");
        };
        assert!(!waiter.wait(Duration::from_millis(20)).await);
    }
}
