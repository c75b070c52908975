//! The store against a real SQLite file in a temporary folder, on a manual clock: the shared
//! contract (`tests/support/store_contract.rs`, also run against PostgreSQL), checking the file's
//! bytes for what must not be there.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::cache::ManualClock;

#[macro_use]
#[path = "../../tests/support/store_contract.rs"]
mod contract;

use contract::Backend;

struct Dir(PathBuf);

impl Dir {
    fn new() -> Dir {
        let name = format!(
            "cobrowse-store-unit-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        );
        Dir(std::env::temp_dir().join(name))
    }

    /// Every byte under the folder, so tests can look for what must not be there.
    fn bytes(&self) -> Vec<u8> {
        let mut all = Vec::new();
        for entry in std::fs::read_dir(&self.0).unwrap() {
            all.extend(std::fs::read(entry.unwrap().path()).unwrap());
        }
        all
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Backend for Dir {
    async fn open(&self, clock: Arc<ManualClock>, debug_events: bool) -> Store {
        Store::open(&self.0, clock, debug_events).unwrap()
    }

    async fn assert_absent(&self, needles: &[&str]) {
        let bytes = self.bytes();
        for needle in needles {
            let found = bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
            assert!(!found, "{needle} is in the file");
        }
    }
}

store_contract!(async { Some(Dir::new()) });

/// A sighting of `id`, online, with nothing else known.
fn sight(store: &Store, id: &str) {
    let visitor = crate::url_codec::SessionId::parse(id).unwrap();
    store.seen(Sighting {
        visitor: &visitor,
        ip: None,
        page: None,
        user_agent: None,
        online: Some(true),
    });
}

/// The visitors in the store's file, read by a second connection, once there are `at_least` or a second
/// has passed.
async fn committed_visitors(dir: &Dir, at_least: i64) -> i64 {
    let file = sqlite::db::path(&dir.0);
    let mut rows = 0;
    for _ in 0..50 {
        let reader = rusqlite::Connection::open(&file).unwrap();
        rows = reader
            .query_row("SELECT count(*) FROM visitors", [], |r| r.get(0))
            .unwrap_or(0);
        if rows >= at_least {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    rows
}

/// Sightings wait for the commit window, not for a query: one reaches the file on its own, read by a
/// second connection while the store still runs.
#[tokio::test]
async fn a_sighting_is_committed_within_the_window_without_a_query() {
    let dir = Dir::new();
    let clock = Arc::new(ManualClock::new());
    let store = Store::open(&dir.0, clock, false).unwrap();
    sight(&store, "k3x9q2m7wa");
    assert_eq!(
        committed_visitors(&dir, 1).await,
        1,
        "the sighting was never committed"
    );
    store.close().await;
}

/// Writes after the first in a window wake nobody (`inbox.rs`); they must still be committed: one in the
/// window that rolls on after a busy one, and one after a quiet window closed.
#[tokio::test]
async fn sightings_are_committed_as_windows_roll_on_and_close() {
    let dir = Dir::new();
    let clock = Arc::new(ManualClock::new());
    let store = Store::open(&dir.0, clock, false).unwrap();
    sight(&store, "k3x9q2m7wa");
    assert_eq!(
        committed_visitors(&dir, 1).await,
        1,
        "the first window's sighting"
    );
    sight(&store, "p4n8r2t6vb");
    assert_eq!(
        committed_visitors(&dir, 2).await,
        2,
        "a sighting in the window that rolled on"
    );
    tokio::time::sleep(3 * command::COMMIT_WINDOW).await;
    sight(&store, "z7c5m3h9qd");
    assert_eq!(
        committed_visitors(&dir, 3).await,
        3,
        "a sighting after a quiet window closed"
    );
    store.close().await;
}
