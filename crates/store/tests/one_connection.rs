//! The lab records taken from a store share its connection: a lab command
//! opens the database once. Writes through either are read through the
//! other and by later connections; a refusal on one leaves the connection
//! usable by the other; the WAL is checkpointed when the last of them
//! closes.

use std::path::Path;

use netloom_model::{NetworkRequest, Policy};
use netloom_store::{LabState, LabStore, NewLab, ProcessId, SqliteStore, Store, StoredPlan};

mod common;
use common::{null_net, TempDir};

fn plan() -> StoredPlan {
    StoredPlan {
        doc: "{\"plan\":1}".into(),
        summary: "plan 1".into(),
    }
}

fn begin(labs: &mut LabStore, name: &str) -> u32 {
    labs.begin(&NewLab {
        name,
        doc: "{}",
        owner: Some(ProcessId { pid: 7, start: 9 }),
        ports: &[],
        plan: &plan(),
        slots: 16,
    })
    .unwrap()
}

fn net(name: &str, subnet: &str) -> NetworkRequest {
    NetworkRequest {
        ipam_policy: Policy::Lowest,
        ..null_net(name, &[subnet])
    }
}

/// Open descriptors of this process on the database in `dir` (the file,
/// its WAL and its shared-memory index).
fn open_files(dir: &Path) -> usize {
    let db = dir.join("state.db");
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| {
            target
                .as_os_str()
                .to_string_lossy()
                .starts_with(&*db.to_string_lossy())
        })
        .count()
}

#[test]
fn the_lab_store_of_a_store_opens_nothing_more() {
    let dir = TempDir::new("one-connection");
    let mut store = SqliteStore::open(dir.path()).unwrap();
    store.networks().unwrap();
    let one = open_files(dir.path());
    assert!(one > 0, "the store's files are not seen open");
    let mut labs = store
        .lab_store()
        .unwrap()
        .expect("the SQLite store keeps labs");
    let mut more = store.labs().unwrap();
    begin(&mut labs, "l1");
    assert_eq!(more.labs().unwrap().len(), 1);
    assert_eq!(
        open_files(dir.path()),
        one,
        "a second connection was opened"
    );
    // A lab store opened alone has a connection of its own.
    let alone = LabStore::open(dir.path()).unwrap();
    assert!(open_files(dir.path()) > one);
    drop((alone, labs, more, store));
    assert_eq!(open_files(dir.path()), 0);
}

#[test]
fn writes_through_either_are_read_through_the_other_and_after_reopening() {
    let dir = TempDir::new("one-connection");
    let mut store = SqliteStore::open(dir.path()).unwrap();
    let mut labs = store.lab_store().unwrap().unwrap();
    assert_eq!(begin(&mut labs, "l1"), 0);
    store.create_network(&net("n1", "10.8.0.0/24")).unwrap();
    let leases = store
        .allocate_many("n1", &[("a", &[]), ("b", &[])])
        .unwrap();
    labs.set_doc("l1", "{\"nodes\":2}").unwrap();
    // Through a lab store opened alone, while the shared one is open.
    let mut alone = LabStore::open(dir.path()).unwrap();
    assert_eq!(alone.lab("l1").unwrap().unwrap().doc, "{\"nodes\":2}");
    alone.set_state("l1", LabState::Ready, None).unwrap();
    assert_eq!(begin(&mut alone, "l2"), 1);
    drop(alone);
    let row = labs.lab("l1").unwrap().unwrap();
    assert_eq!((row.state, row.owner), (LabState::Ready, None));
    assert_eq!(store.lab_store().unwrap().unwrap().labs().unwrap().len(), 2);
    drop(store);
    // The lab store outlives the store it came from.
    assert_eq!(labs.remove("l2").unwrap(), 1);
    drop(labs);

    let mut store = SqliteStore::open(dir.path()).unwrap();
    assert_eq!(store.leases("n1", "b").unwrap(), leases[1]);
    let mut labs = store.lab_store().unwrap().unwrap();
    let names: Vec<String> = labs.labs().unwrap().into_iter().map(|l| l.name).collect();
    assert_eq!(names, ["l1"]);
    assert_eq!(labs.plan().unwrap(), Some(plan()));
}

#[test]
fn a_refusal_on_one_leaves_the_connection_to_the_other() {
    let dir = TempDir::new("one-connection");
    let mut store = SqliteStore::open(dir.path()).unwrap();
    let mut labs = store.lab_store().unwrap().unwrap();
    store.create_network(&net("n1", "10.9.0.0/30")).unwrap();
    begin(&mut labs, "l1");
    // Refused halfway through its transaction: the /30 has one address.
    let err = store
        .allocate_many("n1", &[("a", &[]), ("b", &[])])
        .unwrap_err();
    assert!(err.to_string().contains("no free IPv4 address"), "{err}");
    assert_eq!(begin(&mut labs, "l2"), 1);
    let err = labs
        .begin(&NewLab {
            name: "l1",
            doc: "{}",
            owner: None,
            ports: &[],
            plan: &plan(),
            slots: 16,
        })
        .unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    store.allocate("n1", "a", &[]).unwrap();
    drop((store, labs));
    let mut store = SqliteStore::open(dir.path()).unwrap();
    assert_eq!(store.allocations("n1").unwrap().len(), 2);
    assert_eq!(store.lab_store().unwrap().unwrap().labs().unwrap().len(), 2);
}

#[test]
fn the_last_to_close_checkpoints_the_log() {
    for store_first in [true, false] {
        let dir = TempDir::on_disk("one-connection-wal");
        let mut store = SqliteStore::open(dir.path()).unwrap();
        let mut labs = store.lab_store().unwrap().unwrap();
        begin(&mut labs, "l1");
        for i in 0..6 {
            // Different throughout: SQLite writes only the pages that change.
            let big = i.to_string().repeat(300_000);
            labs.set_doc("l1", &format!("{{\"{i}\":\"{big}\"}}"))
                .unwrap();
        }
        let grown = dir.wal_len();
        assert!(grown >= 1 << 20, "the log grew to {grown} bytes only");
        let mut last: Box<dyn FnMut() -> usize> = if store_first {
            drop(store);
            Box::new(move || labs.labs().unwrap().len())
        } else {
            drop(labs);
            Box::new(move || store.networks().unwrap().len())
        };
        // The connection is still open: the log stays.
        last();
        assert_eq!(dir.wal_len(), grown);
        drop(last);
        assert_eq!(dir.wal_len(), 0, "not checkpointed at the last close");
        let mut labs = LabStore::open(dir.path()).unwrap();
        assert!(labs.lab("l1").unwrap().unwrap().doc.starts_with("{\"5\""));
    }
}

#[test]
fn a_database_without_the_lab_tables_gets_them() {
    let dir = TempDir::new("one-connection-old");
    let mut store = SqliteStore::open(dir.path()).unwrap();
    store.create_network(&net("n1", "10.10.0.0/24")).unwrap();
    drop(store);
    let conn = rusqlite::Connection::open(dir.path().join("state.db")).unwrap();
    conn.execute_batch("DROP TABLE lab_ports; DROP TABLE labs; DROP TABLE lab_plan;")
        .unwrap();
    drop(conn);
    let mut store = SqliteStore::open(dir.path()).unwrap();
    let mut labs = store.lab_store().unwrap().unwrap();
    assert!(labs.labs().unwrap().is_empty());
    assert_eq!(begin(&mut labs, "l1"), 0);
    assert_eq!(store.networks().unwrap().len(), 1);
}
