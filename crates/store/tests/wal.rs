//! The write-ahead log across short-lived connections: each netloom process
//! opens the store, writes a little and closes it. On a disk the log is left
//! in place for the next one (no checkpoint, and so no fsyncs, per command)
//! and is folded into the database once it has grown past a bound, so it
//! never grows without one. In memory (tmpfs) the closing connection folds
//! it in every time, so no process has to read it back.

use netloom_model::NetworkRequest;
use netloom_store::{SqliteStore, Store};

mod common;
use common::{null_net, TempDir};

fn net(i: usize) -> NetworkRequest {
    null_net(
        &format!("n{i}"),
        &[&format!("10.{}.{}.0/24", i / 250, i % 250)],
    )
}

/// Whether `dir` is on tmpfs.
fn in_memory(dir: &std::path::Path) -> bool {
    use nix::sys::statfs::{statfs, TMPFS_MAGIC};
    statfs(dir).unwrap().filesystem_type() == TMPFS_MAGIC
}

#[test]
fn on_a_disk_the_log_stays_bounded_and_every_write_survives_reopening() {
    let dir = TempDir::on_disk("wal");
    if in_memory(dir.path()) {
        eprintln!(
            "SKIP: {} is on tmpfs here: no disk directory to test the disk policy in",
            dir.path().display()
        );
        return;
    }
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

#[test]
fn in_memory_every_close_folds_the_log_in() {
    let dir = TempDir::new("wal-mem");
    if !in_memory(dir.path()) {
        eprintln!(
            "SKIP: {} is not on tmpfs (no /dev/shm here)",
            dir.path().display()
        );
        return;
    }
    for i in 0..20 {
        let mut store = SqliteStore::open(dir.path()).unwrap();
        store.create_network(&net(i)).unwrap();
        // Open: the log holds this connection's writes.
        assert!(dir.wal_len() > 0, "nothing in the log after a write");
        drop(store);
        assert_eq!(dir.wal_len(), 0, "the log was left at close {i}");
    }
    // Folded in while another connection is open (and idle): that one
    // reads what the first wrote, from the database file now.
    let mut first = SqliteStore::open(dir.path()).unwrap();
    let mut second = SqliteStore::open(dir.path()).unwrap();
    first.create_network(&net(20)).unwrap();
    drop(first);
    assert_eq!(
        dir.wal_len(),
        0,
        "the log was left with another connection open"
    );
    assert_eq!(second.networks().unwrap().len(), 21);
    second.create_network(&net(21)).unwrap();
    drop(second);
    assert_eq!(dir.wal_len(), 0, "the last close left the log");
    let mut store = SqliteStore::open(dir.path()).unwrap();
    assert_eq!(store.networks().unwrap().len(), 22);
}

/// A connection kept open across many commands (the service's) that
/// tidies between them: the log is folded in every so many transactions
/// and then rewritten from its start, so it stays small. The same work
/// without tidying lets it grow with every transaction.
#[test]
fn a_connection_kept_open_keeps_the_log_small_when_it_tidies() {
    fn churn(tidy: bool) -> (u64, u64) {
        let dir = TempDir::new("wal-kept");
        let mut store = SqliteStore::open(dir.path()).unwrap();
        store
            .create_network(&null_net("kept", &["10.9.0.0/16"]))
            .unwrap();
        let mut max = 0;
        for i in 0..400 {
            let owner = format!("owner-{i}");
            store.allocate("kept", &owner, &[]).unwrap();
            store.release("kept", &owner).unwrap();
            if tidy {
                store.tidy();
            }
            max = max.max(dir.wal_len());
        }
        // Every write is still there for another connection.
        let mut other = SqliteStore::open(dir.path()).unwrap();
        let net = other.network("kept").unwrap();
        assert_eq!(net.name, "kept");
        (max, dir.wal_len())
    }
    let (max, _) = churn(true);
    eprintln!("tidied: largest log {max} bytes");
    assert!(max < 1 << 20, "tidied, the log still grew to {max} bytes");
    let (_, end) = churn(false);
    eprintln!("untidied: log {end} bytes at the end");
    assert!(
        end > 2 << 20,
        "untidied, 800 transactions left only {end} bytes of log: the bound above proves nothing"
    );
}
