//! Labs in `check` and `gc`: labs left half made or half removed by an
//! interrupted command, labs whose `lab run` died, and lab objects in the
//! kernel with no record.

use std::collections::BTreeSet;

use netloom_kernel::Netns;
use netloom_store::LabState;

use super::gateway::{self, lab_link};
use super::lifecycle::{Lab, LabLock};
use super::{
    bridge_netns_name, build, ipam_network, lab_of_netns, node_netns_name, process_alive,
    NETNS_PREFIX,
};
use crate::{Engine, EngineError};

/// Why a recorded lab should go, if it should.
fn abandoned(lab: &Lab) -> Option<String> {
    let alive = lab.owner.is_some_and(process_alive);
    match lab.state {
        LabState::Creating | LabState::Removing if !alive => Some(format!(
            "it was left {} by an interrupted command",
            lab.state.as_str()
        )),
        LabState::Ready if lab.owner.is_some() && !alive => Some(format!(
            "the `netloom lab run` that supervised it (pid {}) died",
            lab.owner.map(|o| o.pid).unwrap_or(0)
        )),
        _ => None,
    }
}

impl Engine {
    /// Kernel objects and records of labs that disagree; one line each.
    pub(crate) fn lab_check(&mut self) -> Result<Vec<String>, EngineError> {
        let mut out = Vec::new();
        let labs = self.labs()?;
        let names = Netns::list_named().map_err(super::kerr("list namespaces".into()))?;
        let present: BTreeSet<&str> = names.iter().map(String::as_str).collect();
        for lab in &labs {
            if let Some(why) = abandoned(lab) {
                out.push(format!(
                    "lab {:?}: {why}; `netloom gc` takes it down",
                    lab.name
                ));
                continue;
            }
            if lab.state != LabState::Ready {
                continue;
            }
            let mut wanted = vec![bridge_netns_name(&lab.name)];
            wanted.extend(
                lab.nodes
                    .iter()
                    .map(|n| node_netns_name(&lab.name, &n.name)),
            );
            for w in wanted.iter().filter(|w| !present.contains(w.as_str())) {
                out.push(format!(
                    "lab {:?}: namespace {w} is missing; take the lab down and up again",
                    lab.name
                ));
            }
        }
        let recorded: BTreeSet<&str> = labs.iter().map(|l| l.name.as_str()).collect();
        for n in &names {
            if let Some(lab) = lab_of_netns(n) {
                if !recorded.contains(lab) {
                    out.push(format!(
                        "namespace {n} belongs to no lab; `netloom gc` removes it"
                    ));
                }
            }
        }
        let slots: BTreeSet<String> = labs.iter().map(|l| lab_link(l.slot)).collect();
        for l in build::gateway_links()? {
            // Links on their way out with a released namespace are not
            // drift; `gc` deletes any that a process keeps alive.
            if !slots.contains(&l.name) && !l.reaping {
                out.push(format!(
                    "link {} in the lab gateway belongs to no lab; `netloom gc` removes it",
                    l.name
                ));
            }
        }
        if labs.is_empty() {
            for part in gateway::present(self.kernel.host()?)? {
                out.push(format!(
                    "lab gateway {part} remains with no lab; `netloom gc` removes it"
                ));
            }
        }
        for net in self.store.networks()? {
            if let Some(lab) = net.name.strip_prefix("lab.") {
                if net.driver == "null" && net.name == ipam_network(lab) && !recorded.contains(lab)
                {
                    out.push(format!(
                        "network {:?} holds addresses of lab {lab:?}, which does not exist; `netloom gc` removes it",
                        net.name
                    ));
                }
            }
        }
        Ok(out)
    }

    /// Takes down abandoned labs and removes lab leftovers; one line per action.
    pub(crate) fn lab_gc(&mut self) -> Result<Vec<String>, EngineError> {
        let _lock = LabLock::take(&self.state_dir)?;
        let mut out = Vec::new();
        for lab in self.labs()? {
            if let Some(why) = abandoned(&lab) {
                self.lab_down_locked(&lab.name)?;
                out.push(format!("took lab {:?} down: {why}", lab.name));
            }
        }
        let labs = self.labs()?;
        let recorded: BTreeSet<String> = labs.iter().map(|l| l.name.clone()).collect();
        let names = Netns::list_named().map_err(super::kerr("list namespaces".into()))?;
        for n in names.iter().filter(|n| n.starts_with(NETNS_PREFIX)) {
            if lab_of_netns(n).is_some_and(|l| !recorded.contains(l)) {
                build::remove_netns(n)?;
                out.push(format!("removed namespace {n}: no lab"));
            }
        }
        let slots: BTreeSet<String> = labs.iter().map(|l| lab_link(l.slot)).collect();
        for l in build::gateway_links()? {
            if !slots.contains(&l.name) && build::delete_gateway_link(&l.name)? {
                out.push(format!(
                    "deleted link {} in the lab gateway: no lab",
                    l.name
                ));
            }
        }
        for net in self.store.networks()? {
            if let Some(lab) = net.name.strip_prefix("lab.") {
                if net.driver == "null" && net.name == ipam_network(lab) && !recorded.contains(lab)
                {
                    self.store.remove_network(&net.name, true)?;
                    out.push(format!(
                        "removed network {:?}: lab {lab:?} does not exist",
                        net.name
                    ));
                }
            }
        }
        if labs.is_empty() {
            let host = self.kernel.host()?;
            let parts = gateway::present(host)?;
            if !parts.is_empty() {
                gateway::remove(&self.state_dir)?;
                // The kernel reaps the host link with the namespace just
                // released, unless a process holds that namespace: delete it.
                crate::drivers::delete_link_if_present(
                    &mut self.kernel,
                    gateway::HOST_LINK,
                    "lab gateway",
                )?;
                out.push(format!(
                    "removed the lab gateway ({}): no lab",
                    parts.join(", ")
                ));
            }
        }
        Ok(out)
    }
}
