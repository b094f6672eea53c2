//! The SQLite implementation of [`Store`].

use rusqlite::{params, Connection, OptionalExtension};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use netloom_model::addr::{from_u128, to_u128};
use netloom_model::alloc::{first_free, search_order};
use netloom_model::network::first_overlap;
use netloom_model::{
    Allocation, Endpoint, EndpointState, Family, Lease, Mode, ModelError, Network, NetworkRequest,
    Owner, State,
};

use crate::endpoints;
use crate::schema;
use crate::{Store, StoreError};

/// File name of the database inside the state directory.
pub const DB_FILE: &str = "state.db";

/// How long a writer waits for another process's transaction.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

pub struct SqliteStore {
    db: Rc<Db>,
    cache: Cache,
}

/// A process's connection to the state database, shared by its
/// [`SqliteStore`] and the [`LabStore`](crate::LabStore)s taken from it, so
/// a command opens the file (and parses its schema) once. Whoever drops the
/// last handle closes it, checkpointing the WAL first when it has grown
/// past [`Db::checkpoint_at`] (see [`checkpoint_if_large`]).
///
/// Each holder runs its mutations as whole `BEGIN IMMEDIATE` transactions
/// through [`Db::write`], which returns only once the transaction has
/// ended: no holder can start one while another's is open.
pub(crate) struct Db {
    pub(crate) conn: Connection,
    pub(crate) path: PathBuf,
    /// Whether the lab tables are known to exist.
    pub(crate) labs_ready: std::cell::Cell<bool>,
    /// The WAL size at which the closing connection checkpoints it: see
    /// [`checkpoint_bound`].
    pub(crate) checkpoint_at: u64,
    /// Transactions committed since this connection last checkpointed
    /// (see [`Db::tidy`]).
    committed: std::cell::Cell<u32>,
}

impl Db {
    pub(crate) fn new(conn: Connection, path: &Path) -> Db {
        Db {
            conn,
            path: path.to_path_buf(),
            labs_ready: std::cell::Cell::new(false),
            checkpoint_at: checkpoint_bound(path),
            committed: std::cell::Cell::new(0),
        }
    }

    /// Runs `f` in one immediate transaction, committing on success and
    /// rolling back on error. The statements are cached: a mutation parses
    /// no SQL after the first.
    pub(crate) fn write<T>(
        &self,
        f: impl FnOnce(&Connection, &Path) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let (conn, path) = (&self.conn, self.path.as_path());
        let run = |sql: &str, op: &str| -> Result<(), StoreError> {
            conn.prepare_cached(sql)
                .and_then(|mut s| s.execute([]))
                .map(|_| ())
                .ctx(path, op)
        };
        run("BEGIN IMMEDIATE", "begin transaction")?;
        let out = f(conn, path).and_then(|v| run("COMMIT", "commit").map(|_| v));
        if out.is_ok() {
            self.committed.set(self.committed.get().saturating_add(1));
        }
        if out.is_err() && !conn.is_autocommit() {
            if let Err(e) = run("ROLLBACK", "roll back") {
                tracing::warn!("{e}");
            }
        }
        out
    }

    /// For a connection that stays open across many commands (the
    /// service's): once it has committed [`CHECKPOINT_EVERY`] transactions,
    /// copies the WAL into the database without waiting for anyone
    /// (`PASSIVE`). The next transaction then writes the WAL from its start
    /// again, so it stays a few hundred KiB long.
    ///
    /// Without this the WAL of a connection that never closes only grows:
    /// each served connect and disconnect added about 78 KiB, every
    /// commit wrote past its end (on tmpfs each new page is allocated
    /// then), and the file is only folded in when a connection closes.
    pub(crate) fn tidy(&self) {
        if self.committed.get() < CHECKPOINT_EVERY {
            return;
        }
        let path = self.path.as_path();
        match self
            .conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            }) {
            Ok((0, log, done)) if log == done => {
                self.committed.set(0);
                tracing::debug!(path = %path.display(), frames = log, "WAL checkpointed");
            }
            Ok((_, log, done)) => {
                tracing::debug!(path = %path.display(), "WAL checkpointed {done} of {log} frames; the rest later")
            }
            Err(e) => tracing::debug!(path = %path.display(), "WAL checkpoint skipped: {e}"),
        }
    }
}

/// Transactions between two checkpoints of a connection kept open (see
/// [`Db::tidy`]): a few hundred KiB of WAL, written back in one go.
pub(crate) const CHECKPOINT_EVERY: u32 = 64;

impl Drop for Db {
    fn drop(&mut self) {
        checkpoint_if_large(&mut self.conn, &self.path, self.checkpoint_at);
    }
}

fn blob(n: u128) -> [u8; 16] {
    n.to_be_bytes()
}

fn unblob(b: &[u8]) -> Option<u128> {
    Some(u128::from_be_bytes(b.try_into().ok()?))
}

/// Wraps a rusqlite error with the operation it failed in.
pub(crate) trait Ctx<T> {
    fn ctx(self, store: &Path, op: &str) -> Result<T, StoreError>;
}

impl<T> Ctx<T> for rusqlite::Result<T> {
    fn ctx(self, path: &Path, op: &str) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Db {
            path: path.to_path_buf(),
            op: op.to_string(),
            source,
        })
    }
}

/// 64 random hex digits (ids of networks and endpoints), from the
/// kernel's random source by `getrandom(2)`: one system call, where
/// reading `/dev/urandom` took three and a path lookup.
pub fn random_id() -> Result<String, ModelError> {
    let mut bytes = [0u8; 32];
    let mut filled = 0;
    while filled < bytes.len() {
        let rest = &mut bytes[filled..];
        // SAFETY: the kernel writes at most `rest.len()` bytes into `rest`.
        let n = unsafe { nix::libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(ModelError::Invalid {
                object: "netloom".into(),
                why: format!("the kernel gave no random bytes for a new id (getrandom: {err})"),
                fix: "netloom needs getrandom(2), in Linux since 3.17".into(),
            });
        }
        filled += n as usize;
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = String::with_capacity(64);
    for b in bytes {
        id.push(HEX[usize::from(b >> 4)] as char);
        id.push(HEX[usize::from(b & 15)] as char);
    }
    Ok(id)
}

/// Makes `conn` wait for a lock another process holds, for up to about
/// [`BUSY_TIMEOUT`], in short jittered steps (0.1 ms growing to 2 ms).
/// SQLite's own timeout handler sleeps 1, 2, 5 … 100 ms, so with many
/// processes writing at once (200 `lab up`s) each slept long after the
/// lock came free.
pub(crate) fn wait_when_busy(conn: &mut Connection) -> rusqlite::Result<()> {
    const MAX_STEP_US: u64 = 2_000;
    fn busy(attempt: i32) -> bool {
        let attempt = attempt.max(0) as u64;
        let step = (100 + 50 * attempt).min(MAX_STEP_US);
        let jitter = (u64::from(std::process::id()) * 7919 + attempt * 104_729) % 100;
        std::thread::sleep(std::time::Duration::from_micros(step + jitter));
        // Past the ramp every step is MAX_STEP_US; stop near BUSY_TIMEOUT.
        attempt < 40 + BUSY_TIMEOUT.as_micros() as u64 / MAX_STEP_US
    }
    conn.busy_handler(Some(busy))
}

/// On a disk, a closing connection checkpoints the WAL into the database
/// once the WAL has grown to this size (see [`open_connection`]).
pub(crate) const CHECKPOINT_AT_WAL_BYTES: u64 = 1 << 20;

/// Where the database lives in memory (tmpfs), the closing
/// connection checkpoints whenever the WAL holds anything.
///
/// The trade: a checkpoint on a disk costs three fsyncs (the WAL, the
/// directory, the database; 1.14 + 0.22 + 0.59 ms measured on ext4), and
/// skipping it costs the next process's first connection a read of the
/// whole WAL to rebuild its index, since no process keeps the index alive
/// between commands. On a disk the bound amortises the fsyncs over a few
/// dozen commands. In memory an fsync costs nothing, so the read is the
/// only cost left and a checkpoint at every close removes it: a `lab up`
/// then `lab down` pair spent 2.2 ms in opening the database with the
/// 1 MiB bound and 1.0 ms with this one.
pub(crate) fn checkpoint_bound(db_file: &Path) -> u64 {
    let dir = match db_file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if in_memory(dir) {
        1
    } else {
        CHECKPOINT_AT_WAL_BYTES
    }
}

/// Whether `dir` is on tmpfs, which keeps its files in memory only.
fn in_memory(dir: &Path) -> bool {
    use nix::sys::statfs::{statfs, TMPFS_MAGIC};
    statfs(dir)
        .map(|s| s.filesystem_type() == TMPFS_MAGIC)
        .unwrap_or(false)
}

pub(crate) fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let mut conn = Connection::open(path).ctx(path, "open")?;
    wait_when_busy(&mut conn).ctx(path, "set busy handler")?;
    // WAL keeps the file consistent on a crash; NORMAL syncs at
    // checkpoints only. A power loss may forget the last transactions,
    // but the kernel objects they describe are gone with the reboot too.
    conn.execute_batch(
        "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA wal_autocheckpoint = 0;",
    )
    .ctx(path, "configure connection")?;
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
        true,
    )
    .ctx(path, "configure connection")?;
    // Plans must not depend on bound values: otherwise this SQLite build
    // (with STAT4) recompiles statements that have ORDER BY or min() over
    // a range on every run, which costs more than the query itself.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )
    .ctx(path, "configure connection")?;
    Ok(conn)
}

/// Before `conn` closes: checkpoints the WAL into the database and
/// truncates it if it has grown to `bound` bytes. Skipped,
/// for a later connection to do, if another connection is using the WAL
/// right then; never waits.
pub(crate) fn checkpoint_if_large(conn: &mut Connection, path: &Path, bound: u64) {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    match std::fs::metadata(&wal) {
        Ok(m) if m.len() >= bound.max(1) => {}
        _ => return,
    }
    if conn.busy_handler(None::<fn(i32) -> bool>).is_err() {
        return;
    }
    match conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
        r.get::<_, i64>(0)
    }) {
        Ok(0) => tracing::debug!(path = %path.display(), "WAL checkpointed"),
        Ok(_) => tracing::debug!(path = %path.display(), "WAL in use; checkpoint left for later"),
        Err(e) => tracing::debug!(path = %path.display(), "WAL checkpoint skipped: {e}"),
    }
}

impl SqliteStore {
    /// Opens (creating when missing) the store in `state_dir`.
    pub fn open(state_dir: &Path) -> Result<SqliteStore, StoreError> {
        std::fs::create_dir_all(state_dir).map_err(|source| StoreError::Dir {
            path: state_dir.to_path_buf(),
            source,
        })?;
        let path = state_dir.join(DB_FILE);
        let conn = open_connection(&path)?;
        conn.set_prepared_statement_cache_capacity(64);
        let mut store = SqliteStore {
            db: Rc::new(Db::new(conn, &path)),
            cache: Cache::default(),
        };
        store.migrate()?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.db.path
    }

    /// The connection, for the lab records to share.
    pub(crate) fn db(&self) -> &Rc<Db> {
        &self.db
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let path = self.db.path.as_path();
        let version: i64 = self
            .db
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .ctx(path, "read schema version")?;
        if version == schema::VERSION {
            return Ok(());
        }
        if version > schema::VERSION {
            return Err(StoreError::Corrupt {
                path: path.to_path_buf(),
                what: format!(
                    "schema version {version} (this netloom knows up to {})",
                    schema::VERSION
                ),
            });
        }
        // Two processes opening a new database at once can each hold a read
        // lock the other's switch needs; SQLite then answers SQLITE_BUSY at
        // once, without its busy handler (it would deadlock). Try again.
        let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
        let mode: String = loop {
            match self
                .db
                .conn
                .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            {
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::DatabaseBusy
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                other => break other.ctx(path, "switch to WAL")?,
            }
        };
        tracing::debug!(journal_mode = %mode, "state database opened for the first time");
        let created = self.write(|_, conn, path| {
            // Another process may have created or upgraded it meanwhile.
            let version: i64 = conn
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .ctx(path, "read schema version")?;
            if version == 0 {
                conn.execute_batch(schema::CREATE)
                    .ctx(path, "create schema")?;
            } else {
                for (from, sql) in schema::UPGRADES {
                    if *from >= version {
                        conn.execute_batch(sql)
                            .ctx(path, &format!("upgrade schema from version {from}"))?;
                    }
                }
            }
            if version < schema::VERSION {
                conn.execute_batch(&format!("PRAGMA user_version = {}", schema::VERSION))
                    .ctx(path, "set schema version")?;
            }
            Ok(version == 0)
        })?;
        if created {
            // The schema includes the lab tables.
            self.db.labs_ready.set(true);
        }
        Ok(())
    }

    /// Runs `f` in one immediate transaction (see [`Db::write`]).
    fn write<T>(
        &mut self,
        f: impl FnOnce(&mut Cache, &Connection, &Path) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let cache = &mut self.cache;
        self.db.write(|conn, path| f(cache, conn, path))
    }
}

/// Parsed networks by row key. A network's document never changes after
/// creation and keys are never reused (AUTOINCREMENT), so an entry stays
/// true for as long as its key exists.
#[derive(Default)]
pub struct Cache {
    networks: std::collections::HashMap<i64, Rc<Network>>,
}

/// A network with its row key.
pub(crate) struct Stored {
    pub(crate) key: i64,
    pub(crate) net: Rc<Network>,
}

impl std::ops::Deref for Stored {
    type Target = Network;
    fn deref(&self) -> &Network {
        &self.net
    }
}

pub(crate) fn load_network(
    cache: &mut Cache,
    conn: &Connection,
    path: &Path,
    name_or_id: &str,
) -> Result<Stored, StoreError> {
    let key: Option<i64> = conn
        .prepare_cached(
            "SELECT key FROM networks WHERE name = ?1 UNION ALL SELECT key FROM networks WHERE id = ?1 LIMIT 1",
        )
        .and_then(|mut s| s.query_row([name_or_id], |r| r.get(0)).optional())
        .ctx(path, "read network")?;
    let key = key.ok_or_else(|| ModelError::NoSuchNetwork {
        name: name_or_id.to_string(),
    })?;
    if let Some(net) = cache.networks.get(&key) {
        return Ok(Stored {
            key,
            net: net.clone(),
        });
    }
    let doc: String = conn
        .prepare_cached("SELECT doc FROM networks WHERE key = ?1")
        .and_then(|mut s| s.query_row([key], |r| r.get(0)))
        .ctx(path, "read network")?;
    let net = Rc::new(parse_doc(path, &doc)?);
    cache.networks.insert(key, net.clone());
    Ok(Stored { key, net })
}

fn parse_doc(path: &Path, doc: &str) -> Result<Network, StoreError> {
    serde_json::from_str(doc).map_err(|e| StoreError::Corrupt {
        path: path.to_path_buf(),
        what: format!("a network record ({e})"),
    })
}

pub(crate) fn corrupt(path: &Path, what: &str) -> StoreError {
    StoreError::Corrupt {
        path: path.to_path_buf(),
        what: what.to_string(),
    }
}

/// Who holds `ip` on the network, if anyone.
fn holder(
    conn: &Connection,
    path: &Path,
    net: &Stored,
    ip: IpAddr,
) -> Result<Option<Owner>, StoreError> {
    let row: Option<(String, String)> = conn
        .prepare_cached(
            "SELECT owner_kind, owner FROM allocations WHERE net = ?1 AND family = ?2 AND addr = ?3",
        )
        .and_then(|mut s| {
            s.query_row(
                params![net.key, Family::of(&ip).number(), blob(to_u128(ip))],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
        })
        .ctx(path, "look up address")?;
    row.map(|(k, o)| owner_from_row(path, &k, &o)).transpose()
}

fn owner_from_row(path: &Path, kind: &str, id: &str) -> Result<Owner, StoreError> {
    Owner::from_parts(kind, id).ok_or_else(|| corrupt(path, &format!("owner kind {kind:?}")))
}

fn insert(
    conn: &Connection,
    path: &Path,
    net: &Stored,
    subnet_idx: usize,
    ip: IpAddr,
    owner: &Owner,
) -> Result<(), StoreError> {
    let owner_id = match owner {
        Owner::Gateway => subnet_idx.to_string(),
        other => other.id().to_string(),
    };
    let res = conn
        .prepare_cached(
            "INSERT INTO allocations (net, family, addr, subnet_idx, owner_kind, owner) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .and_then(|mut s| {
            s.execute(params![
                net.key,
                Family::of(&ip).number(),
                blob(to_u128(ip)),
                subnet_idx as i64,
                owner.kind(),
                owner_id
            ])
        });
    match res {
        Ok(_) => Ok(()),
        // The constraint stands even if the checks above it were wrong.
        Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation) => {
            match holder(conn, path, net, ip)? {
                Some(h) => Err(ModelError::AlreadyAllocated {
                    network: net.name.clone(),
                    ip,
                    holder: h,
                }
                .into()),
                None => Err(e).ctx(path, "record allocation"),
            }
        }
        Err(e) => Err(e).ctx(path, "record allocation"),
    }
}

/// The next free address of a family by the network's policy, searching its
/// subnets of that family in order; moves the subnet's cursor.
fn take_dynamic(
    conn: &Connection,
    path: &Path,
    net: &Stored,
    family: Family,
) -> Result<(usize, IpAddr), StoreError> {
    let mut pools = Vec::new();
    for (idx, s) in net
        .subnets
        .iter()
        .enumerate()
        .filter(|(_, s)| s.family() == family)
    {
        let (lo, hi) = s.pool_bounds();
        pools.push((s.pool_cidr(), s.pool_size()));
        let (cursor, low_water): (Option<Vec<u8>>, Option<Vec<u8>>) = conn
            .prepare_cached("SELECT cursor, low_water FROM subnets WHERE net = ?1 AND idx = ?2")
            .and_then(|mut st| {
                st.query_row(params![net.key, idx as i64], |r| Ok((r.get(0)?, r.get(1)?)))
            })
            .ctx(path, "read cursor")?;
        let cursor = cursor.as_deref().and_then(unblob);
        let low_water = low_water.as_deref().and_then(unblob).unwrap_or(lo);
        for (from, to) in search_order(net.ipam_policy, lo, hi, cursor) {
            // Below the low-water mark everything is taken.
            let from = from.max(low_water);
            if from > to {
                continue;
            }
            let mut scan = conn
                .prepare_cached(
                    "SELECT addr FROM allocations WHERE net = ?1 AND family = ?2 AND addr >= ?3 AND addr <= ?4 ORDER BY addr",
                )
                .ctx(path, "scan allocations")?;
            let mut rows = scan
                .query(params![net.key, family.number(), blob(from), blob(to)])
                .ctx(path, "scan allocations")?;
            let mut failed = None;
            let taken = std::iter::from_fn(|| match rows.next() {
                Ok(Some(row)) => match row.get_ref(0).map(|v| v.as_blob().ok().and_then(unblob)) {
                    Ok(Some(n)) => Some(n),
                    _ => {
                        failed = Some(corrupt(path, "an allocated address"));
                        None
                    }
                },
                Ok(None) => None,
                Err(e) => {
                    failed = Some(StoreError::Db {
                        path: path.to_path_buf(),
                        op: "scan allocations".into(),
                        source: e,
                    });
                    None
                }
            });
            let found = first_free(from, to, taken);
            if let Some(e) = failed {
                return Err(e);
            }
            if let Some(n) = found {
                // A scan that began at the mark proved [mark, n] taken now.
                let low_water = if from == low_water { n + 1 } else { low_water };
                conn.prepare_cached(
                    "UPDATE subnets SET cursor = ?3, low_water = ?4 WHERE net = ?1 AND idx = ?2",
                )
                .and_then(|mut st| {
                    st.execute(params![net.key, idx as i64, blob(n), blob(low_water)])
                })
                .ctx(path, "move cursor")?;
                return Ok((idx, from_u128(family, n)));
            }
        }
    }
    Err(ModelError::Exhausted {
        network: net.name.clone(),
        family,
        pools,
    }
    .into())
}

/// A freed address may lie below its pool's low-water mark: move the mark
/// down. An unset mark means the pool's start and needs no move.
pub(crate) fn lower_low_water(
    conn: &Connection,
    path: &Path,
    net: &Stored,
    freed: &Allocation,
) -> Result<(), StoreError> {
    let Some(idx) = net.subnets.iter().position(|s| s.subnet == freed.subnet) else {
        return Ok(());
    };
    let n = blob(to_u128(freed.address));
    conn.prepare_cached(
        "UPDATE subnets SET low_water = ?3 WHERE net = ?1 AND idx = ?2 AND low_water > ?3",
    )
    .and_then(|mut st| st.execute(params![net.key, idx as i64, n]))
    .ctx(path, "lower the low-water mark")?;
    Ok(())
}

fn lease(net: &Stored, subnet_idx: usize, ip: IpAddr, peer_gateway: Option<IpAddr>) -> Lease {
    let s = &net.subnets[subnet_idx];
    let (prefix, gateway) = match net.mode {
        Mode::Shared => (s.subnet.prefix(), s.gateway),
        Mode::Pooled => (Family::of(&ip).bits(), peer_gateway),
    };
    Lease {
        family: Family::of(&ip),
        address: format!("{ip}/{prefix}"),
        ip,
        gateway,
        subnet: s.subnet,
    }
}

pub(crate) fn rows_to_allocations(
    path: &Path,
    net: &Stored,
    rows: Vec<(i64, Vec<u8>, i64, String, String)>,
) -> Result<Vec<Allocation>, StoreError> {
    rows.into_iter()
        .map(|(fam, addr, idx, kind, owner)| {
            let family =
                Family::from_number(fam).ok_or_else(|| corrupt(path, "an address family"))?;
            let n = unblob(&addr).ok_or_else(|| corrupt(path, "an allocated address"))?;
            let subnet = net
                .subnets
                .get(idx as usize)
                .map(|s| s.subnet)
                .ok_or_else(|| {
                    corrupt(
                        path,
                        &format!("subnet index {idx} of network {:?}", net.name),
                    )
                })?;
            Ok(Allocation {
                network: net.name.clone(),
                subnet,
                address: from_u128(family, n),
                owner: owner_from_row(path, &kind, &owner)?,
            })
        })
        .collect()
}

fn network_allocations(
    conn: &Connection,
    path: &Path,
    net: &Stored,
) -> Result<Vec<Allocation>, StoreError> {
    let rows = conn
        .prepare_cached(
            "SELECT family, addr, subnet_idx, owner_kind, owner FROM allocations WHERE net = ?1 ORDER BY family, addr",
        )
        .and_then(|mut s| {
            s.query_map([net.key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .ctx(path, "list allocations")?;
    rows_to_allocations(path, net, rows)
}

pub(crate) fn owner_allocations(
    conn: &Connection,
    path: &Path,
    net: &Stored,
    owner: &str,
) -> Result<Vec<Allocation>, StoreError> {
    let rows = conn
        .prepare_cached(
            "SELECT family, addr, subnet_idx, owner_kind, owner FROM allocations INDEXED BY allocations_by_owner
             WHERE net = ?1 AND owner_kind IN ('endpoint', 'peer-gateway') AND owner = ?2
             ORDER BY family, owner_kind",
        )
        .and_then(|mut s| {
            s.query_map(params![net.key, owner], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .ctx(path, "list owner's allocations")?;
    rows_to_allocations(path, net, rows)
}

pub(crate) fn leases_of(net: &Stored, allocs: &[Allocation]) -> Vec<Lease> {
    allocs
        .iter()
        .filter(|a| matches!(a.owner, Owner::Endpoint(_)))
        .map(|a| {
            let idx = net
                .subnets
                .iter()
                .position(|s| s.subnet == a.subnet)
                .unwrap_or(0);
            let peer = allocs
                .iter()
                .find(|g| {
                    matches!(g.owner, Owner::PeerGateway(_))
                        && Family::of(&g.address) == Family::of(&a.address)
                })
                .map(|g| g.address);
            lease(net, idx, a.address, peer)
        })
        .collect()
}

/// Gives `owner` one address per family of the network, inside the
/// caller's transaction (see [`Store::allocate`]).
pub(crate) fn allocate_in(
    tx: &Connection,
    path: &Path,
    net: &Stored,
    owner: &str,
    requested: &[IpAddr],
) -> Result<Vec<Lease>, StoreError> {
    let held = owner_allocations(tx, path, net, owner)?;
    if !held.is_empty() {
        return Err(ModelError::OwnerExists {
            network: net.name.clone(),
            owner: owner.to_string(),
            holds: held.iter().map(|a| a.address).collect(),
        }
        .into());
    }
    let mut statics: Vec<(usize, IpAddr)> = Vec::new();
    for ip in requested {
        let idx = net.check_static(*ip)?;
        if let Some((_, prev)) = statics
            .iter()
            .find(|(_, p)| Family::of(p) == Family::of(ip))
        {
            return Err(ModelError::Invalid {
                object: format!("network {:?}", net.name),
                why: format!(
                    "two {} addresses requested ({prev} and {ip})",
                    Family::of(ip)
                ),
                fix: "request at most one address per family".into(),
            }
            .into());
        }
        statics.push((idx, *ip));
    }
    let mut leases = Vec::new();
    for family in net.families() {
        let (idx, ip) = match statics.iter().find(|(_, ip)| Family::of(ip) == family) {
            Some(&(idx, ip)) => {
                if let Some(h) = holder(tx, path, net, ip)? {
                    return Err(ModelError::AlreadyAllocated {
                        network: net.name.clone(),
                        ip,
                        holder: h,
                    }
                    .into());
                }
                (idx, ip)
            }
            None => take_dynamic(tx, path, net, family)?,
        };
        insert(tx, path, net, idx, ip, &Owner::Endpoint(owner.to_string()))?;
        let peer = if net.mode == Mode::Pooled {
            let (gidx, gw) = take_dynamic(tx, path, net, family)?;
            insert(
                tx,
                path,
                net,
                gidx,
                gw,
                &Owner::PeerGateway(owner.to_string()),
            )?;
            Some(gw)
        } else {
            None
        };
        leases.push(lease(net, idx, ip, peer));
    }
    Ok(leases)
}

/// Releases what `owner` holds on the network (its addresses and, in
/// pooled mode, its gateways), inside the caller's transaction; returns
/// what was released.
pub(crate) fn release_in(
    tx: &Connection,
    path: &Path,
    net: &Stored,
    owner: &str,
) -> Result<Vec<Allocation>, StoreError> {
    let held = owner_allocations(tx, path, net, owner)?;
    tx.prepare_cached(
        "DELETE FROM allocations INDEXED BY allocations_by_owner WHERE net = ?1 AND owner_kind IN ('endpoint', 'peer-gateway') AND owner = ?2",
    )
    .and_then(|mut s| s.execute(params![net.key, owner]))
    .ctx(path, "release")?;
    for a in &held {
        lower_low_water(tx, path, net, a)?;
    }
    Ok(held)
}

/// A validated network, with an id not yet recorded: what
/// [`Store::create_network`] records.
fn new_network(request: &NetworkRequest) -> Result<Network, StoreError> {
    Ok(request.validate(&random_id()?)?)
}

/// Records a validated network, its subnets, gateways and reserved
/// addresses, inside the caller's transaction (see [`Store::create_network`]).
fn create_in(tx: &Connection, path: &Path, net: Network) -> Result<Stored, StoreError> {
    let exists: bool = tx
        .query_row(
            "SELECT 1 FROM networks WHERE name = ?1",
            [&net.name],
            |_| Ok(true),
        )
        .optional()
        .ctx(path, "look up network")?
        .unwrap_or(false);
    if exists {
        return Err(ModelError::NetworkExists {
            name: net.name.clone(),
        }
        .into());
    }
    for s in &net.subnets {
        let other: Option<String> = tx
            .query_row(
                "SELECT n.doc FROM subnets s JOIN networks n ON n.key = s.net
                 WHERE s.address_space = ?1 AND s.family = ?2 AND s.first <= ?4 AND s.last >= ?3 LIMIT 1",
                params![
                    net.address_space,
                    s.family().number(),
                    blob(s.subnet.first()),
                    blob(s.subnet.last())
                ],
                |r| r.get(0),
            )
            .optional()
            .ctx(path, "check overlaps")?;
        if let Some(doc) = other {
            let other = parse_doc(path, &doc)?;
            let (subnet, other_subnet) =
                first_overlap(&net, &other).ok_or_else(|| corrupt(path, "a subnet row"))?;
            return Err(ModelError::Overlap {
                network: net.name.clone(),
                subnet,
                other_network: other.name,
                other_subnet,
                address_space: net.address_space.clone(),
            }
            .into());
        }
    }
    let doc = serde_json::to_string(&net).expect("a network serialises");
    tx.execute(
        "INSERT INTO networks (id, name, address_space, doc) VALUES (?1, ?2, ?3, ?4)",
        params![net.id, net.name, net.address_space, doc],
    )
    .ctx(path, "record network")?;
    let net = Stored {
        key: tx.last_insert_rowid(),
        net: Rc::new(net),
    };
    for (idx, s) in net.subnets.iter().enumerate() {
        tx.execute(
            "INSERT INTO subnets (net, idx, address_space, family, first, last) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                net.key,
                idx as i64,
                net.address_space,
                s.family().number(),
                blob(s.subnet.first()),
                blob(s.subnet.last())
            ],
        )
        .ctx(path, "record subnet")?;
        if let Some(gw) = s.gateway {
            insert(tx, path, &net, idx, gw, &Owner::Gateway)?;
        }
        for (name, ip) in &s.aux_addresses {
            insert(tx, path, &net, idx, *ip, &Owner::Reserved(name.clone()))?;
        }
    }
    Ok(net)
}

/// Gives each owner its addresses on `net` in turn, as
/// [`Store::allocate`] would, inside the caller's transaction.
fn allocate_each(
    tx: &Connection,
    path: &Path,
    net: &Stored,
    requests: &[(&str, &[IpAddr])],
) -> Result<Vec<Vec<Lease>>, StoreError> {
    requests
        .iter()
        .map(|&(owner, requested)| {
            netloom_model::network::check_name("owner id", owner)?;
            allocate_in(tx, path, net, owner, requested)
        })
        .collect()
}

impl Store for SqliteStore {
    fn tidy(&mut self) {
        self.db.tidy();
    }

    fn create_network(&mut self, request: &NetworkRequest) -> Result<Network, StoreError> {
        let net = new_network(request)?;
        self.write(|_, tx, path| Ok((*create_in(tx, path, net)?.net).clone()))
    }

    fn create_network_and_allocate(
        &mut self,
        request: &NetworkRequest,
        requests: &[(&str, &[IpAddr])],
    ) -> Result<(Network, Vec<Vec<Lease>>), StoreError> {
        let net = new_network(request)?;
        self.write(|_, tx, path| {
            let net = create_in(tx, path, net)?;
            let leases = allocate_each(tx, path, &net, requests)?;
            Ok(((*net.net).clone(), leases))
        })
    }

    fn network(&mut self, name_or_id: &str) -> Result<Network, StoreError> {
        let db = &*self.db;
        Ok((*load_network(&mut self.cache, &db.conn, &db.path, name_or_id)?.net).clone())
    }

    fn networks(&mut self) -> Result<Vec<Network>, StoreError> {
        let db = &*self.db;
        let docs: Vec<String> = db
            .conn
            .prepare_cached("SELECT doc FROM networks ORDER BY name")
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .ctx(&db.path, "list networks")?;
        docs.iter().map(|d| parse_doc(&db.path, d)).collect()
    }

    fn remove_network(&mut self, name_or_id: &str, force: bool) -> Result<Network, StoreError> {
        self.write(|cache, tx, path| {
            let net = load_network(cache, tx, path, name_or_id)?;
            if !force {
                let owners: Vec<String> = tx
                    .prepare_cached(
                        "SELECT DISTINCT owner FROM allocations WHERE net = ?1 AND owner_kind = 'endpoint' ORDER BY owner",
                    )
                    .and_then(|mut s| s.query_map([net.key], |r| r.get(0))?.collect())
                    .ctx(path, "list owners")?;
                if !owners.is_empty() {
                    let shown: Vec<String> = owners.iter().take(10).map(|o| format!("{o:?}")).collect();
                    let more = if owners.len() > 10 {
                        format!(" and {} more", owners.len() - 10)
                    } else {
                        String::new()
                    };
                    return Err(ModelError::Invalid {
                        object: format!("network {:?}", net.name),
                        why: format!(
                            "{} owner(s) still hold addresses on it: {}{more}",
                            owners.len(),
                            shown.join(", ")
                        ),
                        fix: "release them first, or remove it anyway with --force".into(),
                    }
                    .into());
                }
            }
            tx.execute("DELETE FROM networks WHERE key = ?1", [net.key])
                .ctx(path, "remove network")?;
            cache.networks.remove(&net.key);
            Ok((*net.net).clone())
        })
    }

    fn allocate(
        &mut self,
        network: &str,
        owner: &str,
        requested: &[IpAddr],
    ) -> Result<Vec<Lease>, StoreError> {
        let mut leases = self.allocate_many(network, &[(owner, requested)])?;
        Ok(leases.pop().expect("one list of leases per request"))
    }

    fn allocate_many(
        &mut self,
        network: &str,
        requests: &[(&str, &[IpAddr])],
    ) -> Result<Vec<Vec<Lease>>, StoreError> {
        // As many `allocate`s would: nothing to do for no owner, and the
        // first owner's name is checked before the network is looked up.
        let Some(&(first, _)) = requests.first() else {
            return Ok(Vec::new());
        };
        netloom_model::network::check_name("owner id", first)?;
        self.write(|cache, tx, path| {
            let net = load_network(cache, tx, path, network)?;
            allocate_each(tx, path, &net, requests)
        })
    }

    fn release(&mut self, network: &str, owner: &str) -> Result<Vec<Allocation>, StoreError> {
        self.write(|cache, tx, path| {
            let net = load_network(cache, tx, path, network)?;
            release_in(tx, path, &net, owner)
        })
    }

    fn leases(&mut self, network: &str, owner: &str) -> Result<Vec<Lease>, StoreError> {
        let db = &*self.db;
        let net = load_network(&mut self.cache, &db.conn, &db.path, network)?;
        let held = owner_allocations(&db.conn, &db.path, &net, owner)?;
        Ok(leases_of(&net, &held))
    }

    fn allocations(&mut self, network: &str) -> Result<Vec<Allocation>, StoreError> {
        let db = &*self.db;
        let net = load_network(&mut self.cache, &db.conn, &db.path, network)?;
        network_allocations(&db.conn, &db.path, &net)
    }

    fn snapshot(&mut self) -> Result<State, StoreError> {
        // One read transaction, so the snapshot is consistent.
        let path = self.db.path.as_path();
        // Refused by SQLite, rather than nested, if one were open.
        let tx = self
            .db
            .conn
            .unchecked_transaction()
            .ctx(path, "begin read")?;
        let rows: Vec<(i64, String)> = tx
            .prepare_cached("SELECT key, doc FROM networks ORDER BY name")
            .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
            .ctx(path, "list networks")?;
        let mut networks = Vec::new();
        let mut allocations = Vec::new();
        for (key, doc) in rows {
            let net = Stored {
                key,
                net: Rc::new(parse_doc(path, &doc)?),
            };
            allocations.extend(network_allocations(&tx, path, &net)?);
            networks.push((*net.net).clone());
        }
        tx.finish().ctx(path, "end read")?;
        Ok(State {
            networks,
            allocations,
        })
    }

    fn add_endpoint(
        &mut self,
        endpoint: &Endpoint,
        requested: &[IpAddr],
    ) -> Result<Vec<Lease>, StoreError> {
        self.write(|cache, tx, path| endpoints::add(cache, tx, path, endpoint, requested))
    }

    fn set_endpoint_state(&mut self, id: &str, state: EndpointState) -> Result<(), StoreError> {
        self.write(|_, tx, path| endpoints::set_state(tx, path, id, state))
    }

    fn remove_endpoint(&mut self, id: &str) -> Result<(), StoreError> {
        self.write(|cache, tx, path| endpoints::remove(cache, tx, path, id))
    }

    fn endpoint(&mut self, id: &str) -> Result<Endpoint, StoreError> {
        endpoints::get(&mut self.cache, &self.db.conn, &self.db.path, id)
    }

    fn endpoints(&mut self, network: Option<&str>) -> Result<Vec<Endpoint>, StoreError> {
        endpoints::list(&mut self.cache, &self.db.conn, &self.db.path, network)
    }

    fn add_sandbox(&mut self, name: &str, inode: u64) -> Result<(), StoreError> {
        self.write(|_, tx, path| endpoints::add_sandbox(tx, path, name, inode))
    }

    fn remove_sandbox(&mut self, name: &str) -> Result<bool, StoreError> {
        self.write(|_, tx, path| endpoints::remove_sandbox(tx, path, name))
    }

    fn sandboxes(&mut self) -> Result<Vec<(String, u64)>, StoreError> {
        endpoints::sandboxes(&self.db.conn, &self.db.path)
    }

    fn sandbox_ifnames(&mut self, inode: u64) -> Result<Vec<String>, StoreError> {
        endpoints::sandbox_ifnames(&self.db.conn, &self.db.path, inode)
    }

    fn lab_store(&mut self) -> Result<Option<crate::LabStore>, StoreError> {
        self.labs().map(Some)
    }

    fn sandbox_endpoints(
        &mut self,
        network: &str,
        inode: u64,
    ) -> Result<Vec<Endpoint>, StoreError> {
        endpoints::in_sandbox(
            &mut self.cache,
            &self.db.conn,
            &self.db.path,
            network,
            inode,
        )
    }

    fn container_endpoints(
        &mut self,
        network: &str,
        container_id: &str,
    ) -> Result<Vec<Endpoint>, StoreError> {
        endpoints::of_container(
            &mut self.cache,
            &self.db.conn,
            &self.db.path,
            network,
            container_id,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::random_id;

    #[test]
    fn random_ids_are_64_lowercase_hex_digits_and_differ() {
        let a = random_id().unwrap();
        let b = random_id().unwrap();
        for id in [&a, &b] {
            assert_eq!(id.len(), 64, "{id}");
            assert!(
                id.bytes()
                    .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)),
                "{id}"
            );
        }
        assert_ne!(a, b);
    }
}
