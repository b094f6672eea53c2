//! Many openers of a database that does not exist yet: every one of them
//! gets a working store (the first open switches the file to WAL, which
//! two openers at once can each block for the other).

use std::sync::{Arc, Barrier};

use netloom_store::{SqliteStore, Store};

mod common;
use common::TempDir;

#[test]
fn many_first_opens_at_once_all_succeed() {
    for round in 0..20 {
        let dir = TempDir::new("first-open");
        let openers = 8;
        let barrier = Arc::new(Barrier::new(openers));
        let handles: Vec<_> = (0..openers)
            .map(|_| {
                let path = dir.path().to_path_buf();
                let barrier = Arc::clone(&barrier);
                std::thread::spawn(move || {
                    barrier.wait();
                    SqliteStore::open(&path).map(|mut s| s.networks().map(|n| n.len()))
                })
            })
            .collect();
        for h in handles {
            let opened = h.join().unwrap();
            assert!(
                matches!(opened, Ok(Ok(0))),
                "round {round}: {:?}",
                opened
                    .map(|n| n.map_err(|e| e.to_string()))
                    .map_err(|e| e.to_string())
            );
        }
    }
}
