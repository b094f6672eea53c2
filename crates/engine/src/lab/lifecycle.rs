//! Bringing labs up and down.
//!
//! Intent first: the lab is recorded (`creating`, with the process doing
//! the work) before the kernel is touched; its node addresses come from
//! the store's IPAM, in a network of its own address space; then the
//! gateway, the bridge namespace and the nodes are made, and the lab is
//! marked `ready`. A failure removes everything it made, in reverse; a
//! crash leaves a `creating` lab whose process is dead, which `gc` removes.
//!
//! The gateway is shared: lab commands hold an exclusive lock on
//! `labs.lock` in the state directory while they make it, check it, or
//! decide to remove it (with the last lab's record), so one command's
//! teardown of the gateway never races another's bring-up. A lab's own
//! namespaces are made and released without the lock, so labs come up
//! and go down in parallel.

use std::fs::File;
use std::net::IpAddr;
use std::path::Path;

use netloom_model::{Mode, ModelError, NetworkRequest, Policy};
use netloom_store::{LabPort, LabRow, LabState, LabStore, NewLab, ProcessId, StoredPlan};
use serde::{Deserialize, Serialize};

use super::build::{self, NodePort};
use super::gateway::{self, Published};
use super::plan::{LabPlan, PlanSettings};
use super::spec::LabSpec;
use super::{ipam_network, lab_dir, node_port, this_process, LabNode, LabView, NodeRecord};
use crate::{Engine, EngineError};

/// What the store keeps of a lab (its `doc`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LabDoc {
    spec: LabSpec,
    plan: LabPlan,
    nodes: Vec<NodeRecord>,
}

/// A lab as recorded.
#[derive(Debug, Clone)]
pub struct Lab {
    pub name: String,
    pub state: LabState,
    /// Index of its /30 in the plan's lab range.
    pub slot: u32,
    /// The process bringing it up or supervising it (`lab run`).
    pub owner: Option<ProcessId>,
    pub spec: LabSpec,
    pub plan: LabPlan,
    pub nodes: Vec<NodeRecord>,
}

impl Lab {
    fn from_row(row: LabRow, path: &str) -> Result<Lab, EngineError> {
        let doc: LabDoc = serde_json::from_str(&row.doc).map_err(|e| ModelError::Invalid {
            object: format!("lab {:?}", row.name),
            why: format!("its record in {path} cannot be read ({e})"),
            fix: "remove it with `netloom gc` after `netloom lab down`".into(),
        })?;
        Ok(Lab {
            name: row.name,
            state: row.state,
            slot: row.slot,
            owner: row.owner,
            spec: doc.spec,
            plan: doc.plan,
            nodes: doc.nodes,
        })
    }

    /// The bridge namespace's address on its link to the gateway.
    pub fn uplink_v4(&self) -> std::net::Ipv4Addr {
        self.plan.link_v4(self.slot).1
    }

    /// A node by name.
    pub fn node(&self, name: &str) -> Option<&NodeRecord> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// What the partition layer sees.
    pub fn view(&self) -> LabView {
        LabView {
            name: self.name.clone(),
            bridge_netns: netloom_kernel::named_path(&super::bridge_netns_name(&self.name)),
            nodes: self
                .nodes
                .iter()
                .map(|n| LabNode {
                    name: n.name.clone(),
                    port: node_port(n.index),
                    ipv4: n.ipv4,
                    ipv6: Some(n.ipv6),
                })
                .collect(),
        }
    }
}

/// The lock that serialises lab commands of one state directory.
pub(crate) struct LabLock {
    _file: nix::fcntl::Flock<File>,
}

impl LabLock {
    pub(crate) fn take(state_dir: &Path) -> Result<LabLock, EngineError> {
        let path = state_dir.join("labs.lock");
        let cant = |why: String| -> EngineError {
            ModelError::Invalid {
                object: format!("lab lock {}", path.display()),
                why,
                fix: "check that the state directory is writable".into(),
            }
            .into()
        };
        std::fs::create_dir_all(state_dir).map_err(|e| cant(e.to_string()))?;
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| cant(e.to_string()))?;
        let file = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| cant(e.to_string()))?;
        Ok(LabLock { _file: file })
    }
}

fn hosts_file(lab: &Lab) -> String {
    let mut t = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    t.push_str(&format!(
        "{}\tbridge bridge.{}\n",
        lab.plan.bridge, lab.name
    ));
    for n in &lab.nodes {
        t.push_str(&format!("{}\t{} {}.{}\n", n.ipv4, n.name, n.name, lab.name));
    }
    for n in &lab.nodes {
        t.push_str(&format!(
            "{}\t{}.v6 {}.v6.{}\n",
            n.ipv6, n.name, n.name, lab.name
        ));
    }
    t
}

/// The plan `settings` ask for: explicit settings, else the plan stored in
/// `store`, else the default.
fn plan_in(store: &mut LabStore, settings: &PlanSettings) -> Result<LabPlan, EngineError> {
    if !settings.is_empty() {
        return Ok(LabPlan::resolve(settings)?);
    }
    match store.plan()? {
        Some(stored) => serde_json::from_str(&stored.doc).map_err(|e| {
            ModelError::Invalid {
                object: "lab plan".into(),
                why: format!("the stored plan cannot be read ({e})"),
                fix: "give the plan settings explicitly".into(),
            }
            .into()
        }),
        None => Ok(LabPlan::resolve(settings)?),
    }
}

impl Engine {
    /// The lab records: on the store's own connection when it keeps them,
    /// else in the state directory's database.
    fn lab_store(&mut self) -> Result<LabStore, EngineError> {
        match self.store.lab_store()? {
            Some(store) => Ok(store),
            None => Ok(LabStore::open(&self.state_dir)?),
        }
    }

    /// The plan `settings` ask for: explicit settings, else the stored
    /// plan, else the default.
    pub fn lab_plan(&mut self, settings: &PlanSettings) -> Result<LabPlan, EngineError> {
        // Explicit settings need no store opened.
        if !settings.is_empty() {
            return Ok(LabPlan::resolve(settings)?);
        }
        plan_in(&mut self.lab_store()?, settings)
    }

    /// Every lab.
    pub fn labs(&mut self) -> Result<Vec<Lab>, EngineError> {
        let mut store = self.lab_store()?;
        let path = self.state_dir.display().to_string();
        store
            .labs()?
            .into_iter()
            .map(|r| Lab::from_row(r, &path))
            .collect()
    }

    /// One lab by name.
    pub fn lab(&mut self, name: &str) -> Result<Lab, EngineError> {
        let mut store = self.lab_store()?;
        self.lab_in(&mut store, name)
    }

    /// [`Engine::lab`] through a lab store already open.
    fn lab_in(&self, store: &mut LabStore, name: &str) -> Result<Lab, EngineError> {
        let row = store.lab(name)?.ok_or_else(|| ModelError::Invalid {
            object: format!("lab {name:?}"),
            why: "there is no such lab".into(),
            fix: "`netloom lab ls` lists the labs; `netloom lab up FILE` makes one".into(),
        })?;
        Lab::from_row(row, &self.state_dir.display().to_string())
    }

    /// What the partition layer needs of a lab that is up.
    pub fn lab_view(&mut self, name: &str) -> Result<LabView, EngineError> {
        let lab = self.lab(name)?;
        if lab.state != LabState::Ready {
            return Err(ModelError::Invalid {
                object: format!("lab {name:?}"),
                why: format!("it is {}, not up", lab.state.as_str()),
                fix: "wait for it to come up, or run `netloom gc` if its command died".into(),
            }
            .into());
        }
        Ok(lab.view())
    }

    /// Brings a lab up. `supervisor` is the process that will take it down
    /// (`lab run`); `None` leaves it up until `lab down`. All or nothing.
    pub fn lab_up(
        &mut self,
        spec: &LabSpec,
        origin: &str,
        settings: &PlanSettings,
        supervisor: Option<ProcessId>,
    ) -> Result<Lab, EngineError> {
        spec.check(origin)?;
        // Held while the lab is recorded and the gateway checked (or made:
        // see `lab_make`); the lab's own namespaces are made without it.
        // Recording under it also paces many parallel bring-ups, which
        // otherwise spin on the database and the kernel's RTNL lock.
        let mut lock = Some(LabLock::take(&self.state_dir)?);
        let mut store = self.lab_store()?;
        let plan = plan_in(&mut store, settings)?;
        spec.check_plan(origin, &plan)?;
        let ports: Vec<LabPort> = spec
            .ports
            .iter()
            .map(|p| LabPort {
                proto: p.proto.clone(),
                host_port: p.host,
            })
            .collect();
        let stored_plan = StoredPlan {
            doc: serde_json::to_string(&plan).expect("plans serialise"),
            summary: plan.summary(),
        };
        let mut doc = LabDoc {
            spec: spec.clone(),
            plan: plan.clone(),
            nodes: Vec::new(),
        };
        let slot = store.begin(&NewLab {
            name: &spec.name,
            doc: &serde_json::to_string(&doc).expect("labs serialise"),
            owner: this_process(),
            ports: &ports,
            plan: &stored_plan,
            slots: plan.slots(),
        })?;
        tracing::debug!(lab = %spec.name, slot, "lab recorded");
        let made = self.lab_make(&mut store, &mut doc, slot, &mut lock);
        match made {
            Ok(()) => {
                drop(lock);
                store.set_state(&spec.name, LabState::Ready, supervisor)?;
                tracing::debug!(lab = %spec.name, "lab marked ready");
                tracing::info!(lab = %spec.name, nodes = spec.nodes.len(), slot, "lab up");
                self.lab_in(&mut store, &spec.name)
            }
            Err(e) => {
                let undone = self
                    .lab_unmake(&spec.name, slot, &plan, &spec.ports)
                    .and_then(|_| {
                        let _lock = match lock.take() {
                            Some(held) => held,
                            None => LabLock::take(&self.state_dir)?,
                        };
                        self.lab_forget(&mut store, &spec.name)
                    });
                if let Err(undo) = undone {
                    tracing::warn!(
                        "lab {:?}: could not undo everything ({undo}); `netloom gc` will",
                        spec.name
                    );
                }
                Err(e)
            }
        }
    }

    /// Addresses, then the kernel.
    ///
    /// `lock` (the lab lock, held) is released as soon as the gateway is
    /// known to be complete: at once if it was there, else once it is made.
    fn lab_make(
        &mut self,
        store: &mut LabStore,
        doc: &mut LabDoc,
        slot: u32,
        lock: &mut Option<LabLock>,
    ) -> Result<(), EngineError> {
        let t0 = std::time::Instant::now();
        let spec = &doc.spec;
        let plan = &doc.plan;
        let host = self.kernel.host()?;
        let gw = gateway::ensure(host, plan, &self.state_dir)?;
        lock.take();
        tracing::debug!(lab = %spec.name, elapsed = ?t0.elapsed(), "gateway there");
        let net = ipam_network(&spec.name);
        // Fixed addresses first, so a dynamic one never takes them.
        let order: Vec<usize> = (0..spec.nodes.len())
            .filter(|&i| spec.nodes[i].address.is_some())
            .chain((0..spec.nodes.len()).filter(|&i| spec.nodes[i].address.is_none()))
            .collect();
        let requested: Vec<Vec<IpAddr>> = order
            .iter()
            .map(|&i| spec.nodes[i].address.map(IpAddr::V4).into_iter().collect())
            .collect();
        let requests: Vec<(&str, &[IpAddr])> = order
            .iter()
            .zip(&requested)
            .map(|(&i, r)| (spec.nodes[i].name.as_str(), r.as_slice()))
            .collect();
        // The network and every node's addresses in one transaction.
        let (_, allocated) = self.store.create_network_and_allocate(
            &NetworkRequest {
                name: net.clone(),
                driver: "null".into(),
                subnets: vec![plan.nodes.to_string()],
                gateways: vec![plan.bridge.to_string()],
                address_space: Some(net.clone()),
                ipam_policy: Policy::Lowest,
                mode: Mode::Shared,
                ..Default::default()
            },
            &requests,
        )?;
        let mut nodes: Vec<Option<NodeRecord>> = vec![None; spec.nodes.len()];
        for (&i, leases) in order.iter().zip(allocated) {
            let n = &spec.nodes[i];
            let ipv4 = leases
                .iter()
                .find_map(|l| match l.ip {
                    IpAddr::V4(a) => Some(a),
                    IpAddr::V6(_) => None,
                })
                .expect("an IPv4 network gives an IPv4 address");
            nodes[i] = Some(NodeRecord {
                name: n.name.clone(),
                index: i,
                ipv4,
                ipv6: plan.node_v6(ipv4),
            });
        }
        doc.nodes = nodes
            .into_iter()
            .map(|n| n.expect("every node allocated"))
            .collect();
        store.set_doc(
            &spec.name,
            &serde_json::to_string(&*doc).expect("labs serialise"),
        )?;

        tracing::debug!(lab = %spec.name, elapsed = ?t0.elapsed(), "addresses allocated");
        let node_ports: Vec<NodePort> = spec
            .ports
            .iter()
            .map(|p| {
                let n = doc
                    .nodes
                    .iter()
                    .find(|n| n.name == p.node)
                    .expect("checked");
                NodePort {
                    proto: if p.proto == "udp" { "udp" } else { "tcp" },
                    host_port: p.host,
                    ipv4: n.ipv4,
                    ipv6: n.ipv6,
                    port: p.port,
                }
            })
            .collect();
        let mut bridge = build::make_bridge(&gw.ns, plan, &spec.name, slot, &node_ports)?;
        tracing::debug!(lab = %spec.name, elapsed = ?t0.elapsed(), "bridge namespace made");
        build::make_nodes(&mut bridge.nl, bridge.index, plan, &spec.name, &doc.nodes)?;
        tracing::debug!(lab = %spec.name, elapsed = ?t0.elapsed(), "nodes made");
        gateway::set_ports(plan, slot, &published(&spec.ports), true)?;
        let lab = Lab {
            name: spec.name.clone(),
            state: LabState::Creating,
            slot,
            owner: None,
            spec: spec.clone(),
            plan: plan.clone(),
            nodes: doc.nodes.clone(),
        };
        let dir = lab_dir(&self.state_dir, &spec.name);
        std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(dir.join("hosts"), hosts_file(&lab)))
            .map_err(|e| ModelError::Invalid {
                object: format!("lab {:?}", spec.name),
                why: format!("cannot write its hosts file in {} ({e})", dir.display()),
                fix: "check that the state directory is writable".into(),
            })?;
        Ok(())
    }

    /// Removes a lab's own kernel objects and addresses: its namespaces,
    /// its gateway link and ports, its IPAM network, its files. Absent
    /// parts are fine; needs no lock, as nothing here is shared.
    fn lab_unmake(
        &mut self,
        name: &str,
        slot: u32,
        plan: &LabPlan,
        ports: &[super::spec::PortSpec],
    ) -> Result<Vec<String>, EngineError> {
        let t0 = std::time::Instant::now();
        let mut done = build::remove(name, Some(slot))?;
        tracing::debug!(lab = %name, elapsed = ?t0.elapsed(), "namespaces released");
        if gateway::gateway_path().exists() {
            gateway::set_ports(plan, slot, &published(ports), false)?;
        }
        let net = ipam_network(name);
        if self.store.networks()?.iter().any(|n| n.name == net) {
            self.store.remove_network(&net, true)?;
            done.push(format!("addresses of network {net}"));
        }
        let dir = lab_dir(&self.state_dir, name);
        if dir.exists() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        tracing::debug!(lab = %name, elapsed = ?t0.elapsed(), "addresses released");
        Ok(done)
    }

    /// Removes a lab's record, and the gateway when no lab remains. The
    /// caller holds the [`LabLock`], so no bring-up is using the gateway.
    fn lab_forget(&mut self, store: &mut LabStore, name: &str) -> Result<Vec<String>, EngineError> {
        let mut done = Vec::new();
        if store.remove(name)? == 0 && gateway::remove(&self.state_dir)? {
            done.push("the lab gateway (no lab left)".into());
        }
        Ok(done)
    }

    /// Takes a lab down: its namespaces (and with them every veth and
    /// rule inside), its gateway link and ports, its addresses, its record.
    /// Only the last step, which may remove the shared gateway, waits for
    /// the lab lock.
    pub fn lab_down(&mut self, name: &str) -> Result<Lab, EngineError> {
        self.lab_take_down(name, false)
    }

    /// [`Engine::lab_down`] for a caller that holds the lab lock already.
    pub(crate) fn lab_down_locked(&mut self, name: &str) -> Result<Lab, EngineError> {
        self.lab_take_down(name, true)
    }

    fn lab_take_down(&mut self, name: &str, locked: bool) -> Result<Lab, EngineError> {
        let lab = self.lab(name)?;
        let mut store = self.lab_store()?;
        store.set_state(name, LabState::Removing, this_process())?;
        self.lab_unmake(name, lab.slot, &lab.plan, &lab.spec.ports)?;
        let _lock = if locked {
            None
        } else {
            Some(LabLock::take(&self.state_dir)?)
        };
        self.lab_forget(&mut store, name)?;
        tracing::info!(lab = %name, "lab down");
        Ok(lab)
    }

    /// Hands a lab to another supervising process (or to none).
    pub fn lab_set_supervisor(
        &mut self,
        name: &str,
        supervisor: Option<ProcessId>,
    ) -> Result<(), EngineError> {
        Ok(self
            .lab_store()?
            .set_state(name, LabState::Ready, supervisor)?)
    }
}

fn published(ports: &[super::spec::PortSpec]) -> Vec<Published> {
    ports
        .iter()
        .map(|p| Published {
            proto: gateway::proto_number(&p.proto),
            host_port: p.host,
        })
        .collect()
}
