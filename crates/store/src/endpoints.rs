//! Endpoint and sandbox records in SQLite.

use rusqlite::{params, Connection, OptionalExtension};
use std::net::IpAddr;
use std::path::Path;

use netloom_model::{Endpoint, EndpointState, Lease, ModelError};

use crate::sqlite::{
    allocate_in, corrupt, leases_of, load_network, owner_allocations, release_in, Cache, Ctx,
};
use crate::StoreError;

fn parse(path: &Path, doc: &str, state: &str) -> Result<Endpoint, StoreError> {
    let mut ep: Endpoint = serde_json::from_str(doc)
        .map_err(|e| corrupt(path, &format!("an endpoint record ({e})")))?;
    ep.state = EndpointState::parse(state)
        .ok_or_else(|| corrupt(path, &format!("endpoint state {state:?}")))?;
    Ok(ep)
}

/// Records a new endpoint in state `creating` and allocates its addresses,
/// in the caller's transaction.
pub(crate) fn add(
    cache: &mut Cache,
    conn: &Connection,
    path: &Path,
    ep: &Endpoint,
    requested: &[IpAddr],
) -> Result<Vec<Lease>, StoreError> {
    let net = load_network(cache, conn, path, &ep.network)?;
    let clash: Option<String> = conn
        .prepare_cached(
            "SELECT doc FROM endpoints WHERE sandbox_inode = ?1 AND net = ?2 AND ifname = ?3",
        )
        .and_then(|mut s| {
            s.query_row(params![ep.sandbox_inode as i64, net.key, ep.ifname], |r| {
                r.get(0)
            })
            .optional()
        })
        .ctx(path, "look up endpoint")?;
    if let Some(doc) = clash {
        let other = parse(path, &doc, "ready")?;
        return Err(ModelError::Invalid {
            object: format!("sandbox {:?}", ep.sandbox),
            why: format!(
                "it already has interface {:?} on network {:?} (endpoint {}, connected as {:?})",
                ep.ifname,
                net.name,
                &other.id[..12],
                other.sandbox
            ),
            fix: format!(
                "disconnect it first (`netloom disconnect {} {}`) or choose another --ifname",
                net.name, ep.sandbox
            ),
        }
        .into());
    }
    let mut stored = ep.clone();
    stored.leases.clear();
    stored.state = EndpointState::Creating;
    let doc = serde_json::to_string(&stored).expect("an endpoint serialises");
    conn.prepare_cached(
        "INSERT INTO endpoints (id, net, sandbox_inode, ifname, state, doc) VALUES (?1, ?2, ?3, ?4, 'creating', ?5)",
    )
    .and_then(|mut s| s.execute(params![ep.id, net.key, ep.sandbox_inode as i64, ep.ifname, doc]))
    .ctx(path, "record endpoint")?;
    claim_ports(conn, path, ep)?;
    allocate_in(conn, path, &net, &ep.id, requested)
}

pub(crate) fn set_state(
    conn: &Connection,
    path: &Path,
    id: &str,
    state: EndpointState,
) -> Result<(), StoreError> {
    let n = conn
        .prepare_cached("UPDATE endpoints SET state = ?2 WHERE id = ?1")
        .and_then(|mut s| s.execute(params![id, state.as_str()]))
        .ctx(path, "update endpoint")?;
    if n == 0 {
        return Err(no_such(id));
    }
    Ok(())
}

fn no_such(id: &str) -> StoreError {
    ModelError::Invalid {
        object: format!("endpoint {id}"),
        why: "it does not exist".into(),
        fix: "`netloom endpoint ls` lists the endpoints".into(),
    }
    .into()
}

/// Deletes an endpoint record and releases its addresses. A no-op when the
/// record is gone.
pub(crate) fn remove(
    cache: &mut Cache,
    conn: &Connection,
    path: &Path,
    id: &str,
) -> Result<(), StoreError> {
    let network: Option<String> = conn
        .prepare_cached(
            "SELECT n.id FROM endpoints e JOIN networks n ON n.key = e.net WHERE e.id = ?1",
        )
        .and_then(|mut s| s.query_row([id], |r| r.get(0)).optional())
        .ctx(path, "look up endpoint")?;
    let Some(network) = network else {
        return Ok(());
    };
    let net = load_network(cache, conn, path, &network)?;
    release_in(conn, path, &net, id)?;
    conn.prepare_cached("DELETE FROM endpoints WHERE id = ?1")
        .and_then(|mut s| s.execute([id]))
        .ctx(path, "remove endpoint")?;
    Ok(())
}

fn with_leases(
    cache: &mut Cache,
    conn: &Connection,
    path: &Path,
    mut ep: Endpoint,
) -> Result<Endpoint, StoreError> {
    let net = load_network(cache, conn, path, &ep.network)?;
    let held = owner_allocations(conn, path, &net, &ep.id)?;
    ep.leases = leases_of(&net, &held);
    Ok(ep)
}

/// One endpoint by id or unique id prefix (at least 6 characters).
pub(crate) fn get(
    cache: &mut Cache,
    conn: &Connection,
    path: &Path,
    id: &str,
) -> Result<Endpoint, StoreError> {
    let rows: Vec<(String, String)> = conn
        .prepare_cached("SELECT doc, state FROM endpoints WHERE id = ?1 OR (length(?1) >= 6 AND substr(id, 1, length(?1)) = ?1) LIMIT 2")
        .and_then(|mut s| s.query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
        .ctx(path, "read endpoint")?;
    match rows.as_slice() {
        [(doc, state)] => with_leases(cache, conn, path, parse(path, doc, state)?),
        [] => Err(no_such(id)),
        _ => Err(ModelError::Invalid {
            object: format!("endpoint {id}"),
            why: "the prefix matches several endpoints".into(),
            fix: "give more of the id".into(),
        }
        .into()),
    }
}

/// Endpoints, all or of one network, ordered by network then sandbox.
pub(crate) fn list(
    cache: &mut Cache,
    conn: &Connection,
    path: &Path,
    network: Option<&str>,
) -> Result<Vec<Endpoint>, StoreError> {
    let key = match network {
        Some(n) => Some(load_network(cache, conn, path, n)?.key),
        None => None,
    };
    let rows: Vec<(String, String)> = conn
        .prepare_cached("SELECT doc, state FROM endpoints WHERE ?1 IS NULL OR net = ?1")
        .and_then(|mut s| {
            s.query_map([key], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        })
        .ctx(path, "list endpoints")?;
    let mut out = with_all_leases(cache, conn, path, rows)?;
    out.sort_by(|a, b| {
        (&a.network, &a.sandbox, &a.ifname).cmp(&(&b.network, &b.sandbox, &b.ifname))
    });
    Ok(out)
}

pub(crate) fn add_sandbox(
    conn: &Connection,
    path: &Path,
    name: &str,
    inode: u64,
) -> Result<(), StoreError> {
    conn.prepare_cached("INSERT OR REPLACE INTO sandboxes (name, inode) VALUES (?1, ?2)")
        .and_then(|mut s| s.execute(params![name, inode as i64]))
        .ctx(path, "record sandbox")?;
    Ok(())
}

pub(crate) fn remove_sandbox(
    conn: &Connection,
    path: &Path,
    name: &str,
) -> Result<bool, StoreError> {
    let n = conn
        .prepare_cached("DELETE FROM sandboxes WHERE name = ?1")
        .and_then(|mut s| s.execute([name]))
        .ctx(path, "remove sandbox")?;
    Ok(n > 0)
}

pub(crate) fn sandboxes(conn: &Connection, path: &Path) -> Result<Vec<(String, u64)>, StoreError> {
    conn.prepare_cached("SELECT name, inode FROM sandboxes ORDER BY name")
        .and_then(|mut s| {
            s.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?
                .collect()
        })
        .ctx(path, "list sandboxes")
}

/// Records the endpoint's published host ports; refuses one that another
/// endpoint (on any network) publishes already, naming it.
fn claim_ports(conn: &Connection, path: &Path, ep: &Endpoint) -> Result<(), StoreError> {
    for p in &ep.ports {
        let ip = p.host_ip.map(|i| i.to_string()).unwrap_or_default();
        let holder: Option<(String, String)> = conn
            .prepare_cached(
                "SELECT e.doc, e.state FROM published_ports p JOIN endpoints e ON e.id = p.endpoint
                 WHERE p.proto = ?1 AND p.host_port = ?2 AND (p.host_ip = ?3 OR p.host_ip = '' OR ?3 = '') LIMIT 1",
            )
            .and_then(|mut s| s.query_row(params![p.proto.number(), p.host_port, ip], |r| Ok((r.get(0)?, r.get(1)?))).optional())
            .ctx(path, "look up published ports")?;
        if let Some((doc, state)) = holder {
            let other = parse(path, &doc, &state)?;
            return Err(ModelError::Invalid {
                object: format!("sandbox {:?}", ep.sandbox),
                why: format!(
                    "host port {}/{} is already published by sandbox {:?} on network {:?}",
                    p.host_port, p.proto, other.sandbox, other.network
                ),
                fix: "publish another host port, or disconnect that sandbox first".into(),
            }
            .into());
        }
        conn.prepare_cached("INSERT INTO published_ports (proto, host_ip, host_port, endpoint) VALUES (?1, ?2, ?3, ?4)")
            .and_then(|mut s| s.execute(params![p.proto.number(), ip, p.host_port, ep.id]))
            .ctx(path, "record published port")?;
    }
    Ok(())
}

/// Interface names a sandbox (by namespace inode) uses for endpoints.
pub(crate) fn sandbox_ifnames(
    conn: &Connection,
    path: &Path,
    inode: u64,
) -> Result<Vec<String>, StoreError> {
    conn.prepare_cached("SELECT ifname FROM endpoints WHERE sandbox_inode = ?1")
        .and_then(|mut s| s.query_map([inode as i64], |r| r.get(0))?.collect())
        .ctx(path, "list a sandbox's interfaces")
}

/// Endpoints of one network in one sandbox (by namespace inode).
pub(crate) fn in_sandbox(
    cache: &mut Cache,
    conn: &Connection,
    path: &Path,
    network: &str,
    inode: u64,
) -> Result<Vec<Endpoint>, StoreError> {
    let key = load_network(cache, conn, path, network)?.key;
    let rows: Vec<(String, String)> = conn
        .prepare_cached("SELECT doc, state FROM endpoints WHERE sandbox_inode = ?1 AND net = ?2")
        .and_then(|mut s| {
            s.query_map(params![inode as i64, key], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        })
        .ctx(path, "list a sandbox's endpoints")?;
    with_all_leases(cache, conn, path, rows)
}

/// Endpoints on `network` made for the container `container_id`, found
/// through the `endpoints_by_container` index.
pub(crate) fn of_container(
    cache: &mut Cache,
    conn: &Connection,
    path: &Path,
    network: &str,
    container_id: &str,
) -> Result<Vec<Endpoint>, StoreError> {
    let key = load_network(cache, conn, path, network)?.key;
    let rows: Vec<(String, String)> = conn
        .prepare_cached(
            "SELECT doc, state FROM endpoints WHERE net = ?1 AND json_extract(doc, '$.container_id') = ?2",
        )
        .and_then(|mut s| {
            s.query_map(params![key, container_id], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        })
        .ctx(path, "list a container's endpoints")?;
    with_all_leases(cache, conn, path, rows)
}

/// Endpoints from (doc, state) rows, with their leases.
fn with_all_leases(
    cache: &mut Cache,
    conn: &Connection,
    path: &Path,
    rows: Vec<(String, String)>,
) -> Result<Vec<Endpoint>, StoreError> {
    let mut out = Vec::with_capacity(rows.len());
    for (doc, state) in rows {
        out.push(with_leases(cache, conn, path, parse(path, &doc, &state)?)?);
    }
    Ok(out)
}
