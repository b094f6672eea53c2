//! The SQLite schema.
//!
//! Addresses are 16-byte big-endian BLOBs (IPv4 in the low 4 bytes), so
//! byte order is numeric order and index range scans find free addresses.
//! A network's full description is one JSON document; the columns beside it
//! exist to be indexed or constrained.

pub const VERSION: i64 = 2;

/// A container runtime finds its container's endpoints by the container's
/// id (CNI ADD, DEL), which is in the endpoint's document: an index on that
/// expression makes the lookup one index probe instead of a read of every
/// endpoint of the network. (Version 2.)
macro_rules! endpoints_by_container {
    () => {
        "CREATE INDEX endpoints_by_container ON endpoints (net, json_extract(doc, '$.container_id'));\n"
    };
}

/// What brings a database of version `from` to `from + 1`, in order.
pub const UPGRADES: &[(i64, &str)] = &[(1, endpoints_by_container!())];

/// The lab tables, also created on demand in databases made before they
/// existed (`CREATE TABLE IF NOT EXISTS`), so no version bump is needed.
macro_rules! lab_tables {
    () => {
        r#"
-- Labs (seed 001): one row per lab, written before the kernel is touched
-- (state 'creating'), 'ready' when up, 'removing' while going down. `slot`
-- numbers the lab's /30 between the gateway and its bridge namespace; a
-- slot is held by one lab at a time. `pid` and `pid_start` (the process's
-- start time in clock ticks since boot) name the process that supervises
-- the lab or is bringing it up, so gc knows a dead one from a reused pid.
CREATE TABLE IF NOT EXISTS labs (
    name          TEXT PRIMARY KEY,
    slot          INTEGER NOT NULL UNIQUE,
    state         TEXT NOT NULL CHECK (state IN ('creating', 'ready', 'removing')),
    pid           INTEGER,
    pid_start     INTEGER,
    doc           TEXT NOT NULL
);

-- Host ports published by labs: a host port belongs to one lab.
CREATE TABLE IF NOT EXISTS lab_ports (
    proto         TEXT NOT NULL,
    host_port     INTEGER NOT NULL,
    lab           TEXT NOT NULL REFERENCES labs(name) ON DELETE CASCADE,
    PRIMARY KEY (proto, host_port)
) WITHOUT ROWID;

-- The lab address plan in force (one row): fixed while any lab exists.
CREATE TABLE IF NOT EXISTS lab_plan (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    doc           TEXT NOT NULL,
    summary       TEXT NOT NULL
);
"#
    };
}

/// The lab tables alone.
pub const LABS: &str = lab_tables!();

pub const CREATE: &str = concat!(
    r#"
CREATE TABLE networks (
    -- Small integer key for the rows that refer to a network; keeps the
    -- allocation B-trees compact. Never reused (AUTOINCREMENT), so a
    -- process may cache a network's parsed document by key.
    key           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL UNIQUE,
    address_space TEXT NOT NULL,
    doc           TEXT NOT NULL
);

-- One row per subnet, for overlap queries and the sequential cursor.
CREATE TABLE subnets (
    net           INTEGER NOT NULL REFERENCES networks(key) ON DELETE CASCADE,
    idx           INTEGER NOT NULL,
    address_space TEXT NOT NULL,
    family        INTEGER NOT NULL CHECK (family IN (4, 6)),
    first         BLOB NOT NULL,
    last          BLOB NOT NULL,
    -- Last address handed out dynamically (the sequential policy's cursor).
    cursor        BLOB,
    -- Every address of the pool below this one is taken, so searches start
    -- here: the lowest policy stays cheap however full the pool is.
    low_water     BLOB,
    PRIMARY KEY (net, idx)
) WITHOUT ROWID;
CREATE INDEX subnets_by_space ON subnets (address_space, family, first);

-- Every allocated address, with its one owner. The primary key makes a
-- double allocation impossible; the unique key gives an owner at most one
-- address of a kind per family (gateways are keyed by subnet index).
CREATE TABLE allocations (
    net           INTEGER NOT NULL REFERENCES networks(key) ON DELETE CASCADE,
    family        INTEGER NOT NULL CHECK (family IN (4, 6)),
    addr          BLOB NOT NULL CHECK (length(addr) = 16),
    subnet_idx    INTEGER NOT NULL,
    owner_kind    TEXT NOT NULL CHECK (owner_kind IN ('endpoint', 'peer-gateway', 'gateway', 'reserved')),
    owner         TEXT NOT NULL,
    PRIMARY KEY (net, family, addr)
) WITHOUT ROWID;
CREATE UNIQUE INDEX allocations_by_owner ON allocations (net, owner, owner_kind, family);

-- Endpoints. Written before the kernel is touched (state 'creating') and
-- marked 'ready' after; 'removing' while being taken down. A network cannot
-- be deleted while endpoint records point at it: the kernel objects go first.
CREATE TABLE endpoints (
    id            TEXT PRIMARY KEY,
    net           INTEGER NOT NULL REFERENCES networks(key),
    sandbox_inode INTEGER NOT NULL,
    ifname        TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('creating', 'ready', 'removing')),
    doc           TEXT NOT NULL,
    UNIQUE (sandbox_inode, net, ifname)
);

-- Named sandboxes netloom created (network namespaces under /run/netns).
CREATE TABLE sandboxes (
    name          TEXT PRIMARY KEY,
    inode         INTEGER NOT NULL
);

-- Published host ports, one row per port: a host port is handed out once
-- across all networks. host_ip '' means every local address.
CREATE TABLE published_ports (
    proto         INTEGER NOT NULL,
    host_ip       TEXT NOT NULL,
    host_port     INTEGER NOT NULL,
    endpoint      TEXT NOT NULL REFERENCES endpoints(id) ON DELETE CASCADE,
    PRIMARY KEY (proto, host_port, host_ip)
) WITHOUT ROWID;
CREATE INDEX published_ports_by_endpoint ON published_ports (endpoint);
"#,
    endpoints_by_container!(),
    lab_tables!()
);
