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
