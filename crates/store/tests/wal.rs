//! The write-ahead log across short-lived connections: each netloom process
//! opens the store, writes a little and closes it. The log is left in place
//! for the next one (no checkpoint per command) and is folded into the
//! database once it has grown past a bound, so it never grows without one.

use netloom_model::{Mode, NetworkRequest};
use netloom_store::{SqliteStore, Store};

mod common;
use common::TempDir;

fn net(i: usize) -> NetworkRequest {
    NetworkRequest {
        name: format!("n{i}"),
        driver: "null".into(),
        subnets: vec![format!("10.{}.{}.0/24", i / 250, i % 250)],
        mode: Mode::Shared,
        ..Default::default()
    }
}

#[test]
fn the_log_stays_bounded_and_every_write_survives_reopening() {
    let dir = TempDir::new("wal");
    let mut max = 0;
    let mut shrank = false;
    let mut last = 0;
    for i in 0..400 {
        // One process's worth of work: open, write, close.
        let mut store = SqliteStore::open(dir.path()).unwrap();
        store.create_network(&net(i)).unwrap();
        drop(store);
        let len = dir.wal_len();
        if i > 0 && len < last {
            shrank = true;
        }
        last = len;
        max = max.max(len);
    }
    // Kept between connections (a checkpoint at each close would delete
    // it every time, so it could never shrink), but folded in and truncated
    // once past its bound (1 MiB): never much more than that plus one
    // connection's writes.
    assert!(shrank, "the log never shrank (largest {max} bytes)");
    assert!(max < 2 << 20, "the log grew to {max} bytes");
    // Everything written is there for a later connection.
    let mut store = SqliteStore::open(dir.path()).unwrap();
    assert_eq!(store.networks().unwrap().len(), 400);
    assert_eq!(store.network("n399").unwrap().subnets.len(), 1);
}
