//! Lab records in SQLite: which labs exist, the /30 slot each holds, the
//! host ports each publishes, the process that supervises it, and the
//! address plan in force while any lab exists.
//!
//! A [`LabStore`] taken from the [`SqliteStore`] of the state directory
//! ([`SqliteStore::labs`]) shares its connection; one opened alone
//! ([`LabStore::open`]) has its own. Each of its mutations is one
//! `BEGIN IMMEDIATE` transaction, like the store's own.

use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::rc::Rc;

use netloom_model::ModelError;

use crate::schema;
use crate::sqlite::{corrupt, Ctx, Db};
use crate::{SqliteStore, StoreError};

/// Where a lab is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabState {
    /// Recorded; its kernel objects are being made.
    Creating,
    /// Up.
    Ready,
    /// Being taken down.
    Removing,
}

impl LabState {
    pub fn as_str(self) -> &'static str {
        match self {
            LabState::Creating => "creating",
            LabState::Ready => "ready",
            LabState::Removing => "removing",
        }
    }

    pub fn parse(text: &str) -> Option<LabState> {
        match text {
            "creating" => Some(LabState::Creating),
            "ready" => Some(LabState::Ready),
            "removing" => Some(LabState::Removing),
            _ => None,
        }
    }
}

/// A process, told apart from a later one with the same pid by its start
/// time (clock ticks after boot, field 22 of `/proc/PID/stat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessId {
    pub pid: u32,
    pub start: u64,
}

/// One lab as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabRow {
    pub name: String,
    /// Index of the lab's /30 in the plan's lab range.
    pub slot: u32,
    pub state: LabState,
    /// The process bringing the lab up, or supervising it (`lab run`).
    pub owner: Option<ProcessId>,
    /// The engine's description of the lab (JSON).
    pub doc: String,
}

/// A published host port of a lab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabPort {
    /// `tcp` or `udp`.
    pub proto: String,
    pub host_port: u16,
}

/// The address plan as the engine describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPlan {
    /// Machine-readable (JSON), compared for equality.
    pub doc: String,
    /// For people: what error messages show.
    pub summary: String,
}

/// What [`LabStore::begin`] records.
#[derive(Debug, Clone)]
pub struct NewLab<'a> {
    pub name: &'a str,
    pub doc: &'a str,
    pub owner: Option<ProcessId>,
    pub ports: &'a [LabPort],
    /// The plan this lab is made with; it must be the stored one while
    /// other labs exist, and becomes the stored one otherwise.
    pub plan: &'a StoredPlan,
    /// How many slots the plan's lab range has.
    pub slots: u32,
}

/// The lab tables of one state directory.
pub struct LabStore {
    db: Rc<Db>,
}

impl SqliteStore {
    /// The lab records of this store, on its connection.
    pub fn labs(&self) -> Result<LabStore, StoreError> {
        LabStore::with_db(self.db().clone())
    }
}

fn row_to_lab(path: &Path, r: &rusqlite::Row<'_>) -> Result<LabRow, StoreError> {
    let get = |i: usize| r.get_ref(i).map(|v| v.as_i64_or_null().ok().flatten());
    let name: String = r.get(0).ctx(path, "read lab")?;
    let state: String = r.get(2).ctx(path, "read lab")?;
    let slot = get(1).ctx(path, "read lab")?.unwrap_or(-1);
    let pid = get(3).ctx(path, "read lab")?;
    let start = get(4).ctx(path, "read lab")?;
    Ok(LabRow {
        slot: u32::try_from(slot)
            .map_err(|_| corrupt(path, &format!("lab {name:?}: slot {slot}")))?,
        state: LabState::parse(&state)
            .ok_or_else(|| corrupt(path, &format!("lab {name:?}: state {state:?}")))?,
        owner: match (pid, start) {
            (Some(pid), Some(start)) => Some(ProcessId {
                pid: pid as u32,
                start: start as u64,
            }),
            _ => None,
        },
        doc: r.get(5).ctx(path, "read lab")?,
        name,
    })
}

const LAB_COLUMNS: &str = "name, slot, state, pid, pid_start, doc";

impl LabStore {
    /// Opens (creating when missing) the state in `state_dir` and its lab tables.
    ///
    /// A database already at the current schema is opened with one
    /// connection; otherwise the full open makes or updates it first.
    pub fn open(state_dir: &Path) -> Result<LabStore, StoreError> {
        let path = state_dir.join(crate::sqlite::DB_FILE);
        if path.exists() {
            let conn = crate::sqlite::open_connection(&path)?;
            let version: i64 = conn
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .ctx(&path, "read schema version")?;
            if version == crate::schema::VERSION {
                return LabStore::with_db(Rc::new(Db::new(conn, &path)));
            }
        }
        SqliteStore::open(state_dir)?.labs()
    }

    fn with_db(db: Rc<Db>) -> Result<LabStore, StoreError> {
        if !db.labs_ready.get() {
            let path = db.path.as_path();
            // Databases made before the lab tables existed get them now.
            let have: bool = db
                .conn
                .query_row(
                    "SELECT count(*) = 3 FROM sqlite_master WHERE type = 'table' AND name IN ('labs', 'lab_ports', 'lab_plan')",
                    [],
                    |r| r.get(0),
                )
                .ctx(path, "look for the lab tables")?;
            if !have {
                db.conn
                    .execute_batch(schema::LABS)
                    .ctx(path, "create the lab tables")?;
            }
            db.labs_ready.set(true);
        }
        Ok(LabStore { db })
    }

    /// Runs `f` in one immediate transaction (see [`Db::write`]).
    fn write<T>(
        &mut self,
        f: impl FnOnce(&Connection, &Path) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.db.write(f)
    }

    /// The plan in force (or last used), if any lab was ever made.
    pub fn plan(&mut self) -> Result<Option<StoredPlan>, StoreError> {
        read_plan(&self.db.conn, &self.db.path)
    }

    /// Records a new lab in state `creating`: checks that the name is free,
    /// that the plan agrees with the other labs', that no other lab
    /// publishes its host ports; takes the lowest free slot. Returns the slot.
    pub fn begin(&mut self, new: &NewLab<'_>) -> Result<u32, StoreError> {
        self.write(|conn, path| {
            let labs = all_labs(conn, path)?;
            if let Some(other) = labs.iter().find(|l| l.name == new.name) {
                return Err(ModelError::Invalid {
                    object: format!("lab {:?}", new.name),
                    why: format!("a lab of that name already exists ({})", other.state.as_str()),
                    fix: format!(
                        "take it down first (`netloom lab down {}`) or give this lab another name",
                        new.name
                    ),
                }
                .into());
            }
            let stored = read_plan(conn, path)?;
            if !labs.is_empty() {
                if let Some(stored) = stored.filter(|s| s.doc != new.plan.doc) {
                    let names: Vec<String> = labs.iter().map(|l| format!("{:?}", l.name)).collect();
                    return Err(ModelError::Invalid {
                        object: "lab address plan".into(),
                        why: format!(
                            "lab {:?} asks for plan {}, but lab(s) {} are up with plan {}; the plan cannot change while labs exist",
                            new.name,
                            new.plan.summary,
                            names.join(", "),
                            stored.summary
                        ),
                        fix: "take those labs down first (`netloom lab down NAME`), or leave the plan setting out to use the one in force".into(),
                    }
                    .into());
                }
            }
            conn.prepare_cached(
                "INSERT INTO lab_plan (id, doc, summary) VALUES (1, ?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET doc = excluded.doc, summary = excluded.summary",
            )
            .and_then(|mut s| s.execute(params![new.plan.doc, new.plan.summary]))
            .ctx(path, "record the lab plan")?;
            for p in new.ports {
                let holder: Option<String> = conn
                    .prepare_cached("SELECT lab FROM lab_ports WHERE proto = ?1 AND host_port = ?2")
                    .and_then(|mut s| {
                        s.query_row(params![p.proto, p.host_port], |r| r.get(0))
                            .optional()
                    })
                    .ctx(path, "look up published ports")?;
                if let Some(holder) = holder {
                    return Err(ModelError::Invalid {
                        object: format!("lab {:?}", new.name),
                        why: format!(
                            "host port {}/{} is already published by lab {holder:?}",
                            p.host_port, p.proto
                        ),
                        fix: format!(
                            "choose another host port, or take lab {holder:?} down first (`netloom lab down {holder}`)"
                        ),
                    }
                    .into());
                }
            }
            let mut slot = 0u32;
            for l in &labs {
                if l.slot == slot {
                    slot += 1;
                } else if l.slot > slot {
                    break;
                }
            }
            if slot >= new.slots {
                return Err(ModelError::Invalid {
                    object: format!("lab {:?}", new.name),
                    why: format!("all {} lab slots of the plan are taken", new.slots),
                    fix: "take a lab down first, or use a plan with a wider lab range".into(),
                }
                .into());
            }
            conn.prepare_cached(
                "INSERT INTO labs (name, slot, state, pid, pid_start, doc) VALUES (?1, ?2, 'creating', ?3, ?4, ?5)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    new.name,
                    slot,
                    new.owner.map(|o| o.pid),
                    new.owner.map(|o| o.start as i64),
                    new.doc
                ])
            })
            .ctx(path, "record the lab")?;
            for p in new.ports {
                conn.prepare_cached("INSERT INTO lab_ports (proto, host_port, lab) VALUES (?1, ?2, ?3)")
                    .and_then(|mut s| s.execute(params![p.proto, p.host_port, new.name]))
                    .ctx(path, "record a published port")?;
            }
            Ok(slot)
        })
    }

    /// Sets a lab's state and owning process.
    pub fn set_state(
        &mut self,
        name: &str,
        state: LabState,
        owner: Option<ProcessId>,
    ) -> Result<(), StoreError> {
        self.write(|conn, path| {
            let n = conn
                .prepare_cached(
                    "UPDATE labs SET state = ?2, pid = ?3, pid_start = ?4 WHERE name = ?1",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        name,
                        state.as_str(),
                        owner.map(|o| o.pid),
                        owner.map(|o| o.start as i64)
                    ])
                })
                .ctx(path, "update lab")?;
            if n == 0 {
                return Err(no_such_lab(name));
            }
            Ok(())
        })
    }

    /// Replaces a lab's description.
    pub fn set_doc(&mut self, name: &str, doc: &str) -> Result<(), StoreError> {
        self.write(|conn, path| {
            conn.prepare_cached("UPDATE labs SET doc = ?2 WHERE name = ?1")
                .and_then(|mut s| s.execute(params![name, doc]))
                .ctx(path, "update lab")
                .map(|_| ())
        })
    }

    /// Forgets a lab and its ports; returns how many labs remain. A no-op
    /// when it is not recorded.
    pub fn remove(&mut self, name: &str) -> Result<usize, StoreError> {
        self.write(|conn, path| {
            conn.prepare_cached("DELETE FROM labs WHERE name = ?1")
                .and_then(|mut s| s.execute([name]))
                .ctx(path, "remove lab")?;
            conn.query_row("SELECT count(*) FROM labs", [], |r| r.get::<_, i64>(0))
                .ctx(path, "count labs")
                .map(|n| n as usize)
        })
    }

    /// Every lab, by name.
    pub fn labs(&mut self) -> Result<Vec<LabRow>, StoreError> {
        all_labs(&self.db.conn, &self.db.path)
    }

    /// One lab.
    pub fn lab(&mut self, name: &str) -> Result<Option<LabRow>, StoreError> {
        let path = self.db.path.as_path();
        let mut stmt = self
            .db
            .conn
            .prepare_cached(&format!("SELECT {LAB_COLUMNS} FROM labs WHERE name = ?1"))
            .ctx(path, "read lab")?;
        let mut rows = stmt.query([name]).ctx(path, "read lab")?;
        match rows.next().ctx(path, "read lab")? {
            Some(r) => Ok(Some(row_to_lab(path, r)?)),
            None => Ok(None),
        }
    }

    /// The host ports a lab publishes.
    pub fn ports(&mut self, lab: &str) -> Result<Vec<LabPort>, StoreError> {
        let path = self.db.path.as_path();
        let mut stmt = self
            .db
            .conn
            .prepare_cached(
                "SELECT proto, host_port FROM lab_ports WHERE lab = ?1 ORDER BY host_port, proto",
            )
            .ctx(path, "read published ports")?;
        let rows = stmt
            .query_map([lab], |r| {
                Ok(LabPort {
                    proto: r.get(0)?,
                    host_port: r.get(1)?,
                })
            })
            .ctx(path, "read published ports")?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .ctx(path, "read published ports")
    }
}

fn no_such_lab(name: &str) -> StoreError {
    ModelError::Invalid {
        object: format!("lab {name:?}"),
        why: "there is no such lab".into(),
        fix: "`netloom lab ls` lists the labs".into(),
    }
    .into()
}

fn read_plan(conn: &Connection, path: &Path) -> Result<Option<StoredPlan>, StoreError> {
    conn.prepare_cached("SELECT doc, summary FROM lab_plan WHERE id = 1")
        .and_then(|mut s| {
            s.query_row([], |r| {
                Ok(StoredPlan {
                    doc: r.get(0)?,
                    summary: r.get(1)?,
                })
            })
            .optional()
        })
        .ctx(path, "read the lab plan")
}

fn all_labs(conn: &Connection, path: &Path) -> Result<Vec<LabRow>, StoreError> {
    let mut stmt = conn
        .prepare_cached(&format!("SELECT {LAB_COLUMNS} FROM labs ORDER BY slot"))
        .ctx(path, "list labs")?;
    let mut rows = stmt.query([]).ctx(path, "list labs")?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().ctx(path, "list labs")? {
        out.push(row_to_lab(path, r)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(doc: &str) -> StoredPlan {
        StoredPlan {
            doc: doc.into(),
            summary: format!("plan {doc}"),
        }
    }

    fn new<'a>(name: &'a str, ports: &'a [LabPort], plan: &'a StoredPlan) -> NewLab<'a> {
        NewLab {
            name,
            doc: "{}",
            owner: Some(ProcessId { pid: 7, start: 9 }),
            ports,
            plan,
            slots: 2,
        }
    }

    #[test]
    fn slots_names_ports_and_plan() {
        let dir = std::env::temp_dir().join(format!("netloom-labs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut labs = LabStore::open(&dir).unwrap();
        let p = plan("a");
        let web = [LabPort {
            proto: "tcp".into(),
            host_port: 8080,
        }];
        assert_eq!(labs.begin(&new("one", &web, &p)).unwrap(), 0);
        let err = labs.begin(&new("one", &[], &p)).unwrap_err().to_string();
        assert!(err.contains("already exists"), "{err}");
        let err = labs.begin(&new("two", &web, &p)).unwrap_err().to_string();
        assert!(
            err.contains("8080/tcp is already published by lab \"one\""),
            "{err}"
        );
        let other = plan("b");
        let err = labs
            .begin(&new("two", &[], &other))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot change while labs exist"), "{err}");
        assert_eq!(labs.begin(&new("two", &[], &p)).unwrap(), 1);
        let err = labs.begin(&new("three", &[], &p)).unwrap_err().to_string();
        assert!(err.contains("all 2 lab slots"), "{err}");
        assert_eq!(labs.remove("one").unwrap(), 1);
        assert!(labs.ports("one").unwrap().is_empty());
        assert_eq!(labs.begin(&new("three", &web, &p)).unwrap(), 0);
        labs.set_state("three", LabState::Ready, None).unwrap();
        let row = labs.lab("three").unwrap().unwrap();
        assert_eq!((row.state, row.owner), (LabState::Ready, None));
        assert_eq!(labs.remove("two").unwrap(), 1);
        assert_eq!(labs.remove("three").unwrap(), 0);
        // No labs: a new plan is taken.
        assert_eq!(labs.begin(&new("four", &[], &other)).unwrap(), 0);
        assert_eq!(labs.plan().unwrap().unwrap().doc, "b");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
