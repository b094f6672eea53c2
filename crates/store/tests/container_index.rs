//! A container runtime finds its container's endpoints by the container's
//! id, kept in the endpoint's document: through an index on that
//! expression (schema version 2), in databases made now and in ones a
//! version-1 netloom made, which get the index when opened.

use netloom_model::{Endpoint, EndpointState};
use netloom_store::{SqliteStore, Store};

mod common;
use common::{null_net, TempDir};

fn endpoint(network: &str, n: u64, container: Option<&str>) -> Endpoint {
    Endpoint {
        id: format!("{n:064x}"),
        network: network.into(),
        sandbox: format!("sb{n}"),
        sandbox_inode: 1000 + n,
        ifname: "eth0".into(),
        host_ifname: None,
        mac: "02:00:00:00:00:01".into(),
        aliases: Vec::new(),
        ports: Vec::new(),
        state: EndpointState::Creating,
        container_id: container.map(str::to_string),
        leases: Vec::new(),
    }
}

/// Two networks; on each, endpoints of containers c0..c9 and one made
/// without a container id.
fn fill(store: &mut SqliteStore) {
    for (name, subnet) in [("web", "10.1.0.0/24"), ("db", "10.2.0.0/24")] {
        store.create_network(&null_net(name, &[subnet])).unwrap();
        let base = if name == "web" { 0 } else { 100 };
        for i in 0..10 {
            let ep = endpoint(name, base + i, Some(&format!("c{i}")));
            store.add_endpoint(&ep, &[]).unwrap();
        }
        store
            .add_endpoint(&endpoint(name, base + 50, None), &[])
            .unwrap();
    }
}

fn found(store: &mut SqliteStore, network: &str, container: &str) -> Vec<String> {
    store
        .container_endpoints(network, container)
        .unwrap()
        .into_iter()
        .map(|e| format!("{} {}", e.network, e.sandbox))
        .collect()
}

fn query_plan(dir: &std::path::Path) -> String {
    let conn = rusqlite::Connection::open(dir.join("state.db")).unwrap();
    let mut s = conn
        .prepare(
            "EXPLAIN QUERY PLAN SELECT doc, state FROM endpoints WHERE net = 1 AND json_extract(doc, '$.container_id') = 'c3'",
        )
        .unwrap();
    let rows: Vec<String> = s
        .query_map([], |r| r.get::<_, String>(3))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    rows.join("; ")
}

fn version(dir: &std::path::Path) -> i64 {
    let conn = rusqlite::Connection::open(dir.join("state.db")).unwrap();
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn a_containers_endpoints_are_found_by_its_id_through_the_index() {
    let dir = TempDir::new("container-index");
    let mut store = SqliteStore::open(dir.path()).unwrap();
    fill(&mut store);
    assert_eq!(found(&mut store, "web", "c3"), ["web sb3"]);
    assert_eq!(found(&mut store, "db", "c3"), ["db sb103"]);
    assert!(found(&mut store, "web", "c77").is_empty());
    // Leases come with them, as with every other endpoint query.
    let eps = store.container_endpoints("web", "c4").unwrap();
    assert_eq!(eps.len(), 1);
    assert_eq!(eps[0].leases.len(), 1, "{:?}", eps[0]);
    drop(store);
    let plan = query_plan(dir.path());
    assert!(plan.contains("endpoints_by_container"), "{plan}");
    assert_eq!(version(dir.path()), 2);
}

#[test]
fn a_version_one_database_gets_the_index_when_opened() {
    let dir = TempDir::new("container-index-v1");
    let mut store = SqliteStore::open(dir.path()).unwrap();
    fill(&mut store);
    drop(store);
    // What a version-1 netloom left: the same tables, no index.
    {
        let conn = rusqlite::Connection::open(dir.path().join("state.db")).unwrap();
        conn.execute_batch("DROP INDEX endpoints_by_container; PRAGMA user_version = 1;")
            .unwrap();
    }
    assert!(!query_plan(dir.path()).contains("endpoints_by_container"));
    let mut store = SqliteStore::open(dir.path()).unwrap();
    assert_eq!(found(&mut store, "web", "c9"), ["web sb9"]);
    drop(store);
    assert_eq!(version(dir.path()), 2);
    let plan = query_plan(dir.path());
    assert!(plan.contains("endpoints_by_container"), "{plan}");
    // And it opens as it is from then on.
    let mut store = SqliteStore::open(dir.path()).unwrap();
    assert_eq!(found(&mut store, "db", "c0"), ["db sb100"]);
}
