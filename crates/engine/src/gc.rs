//! Store and kernel agreement (invariant 6): `check` lists every
//! difference; `gc` finishes or undoes unfinished intents and removes
//! leftovers.
//!
//! Every kernel object netloom makes has a recognisable name: links start
//! with [`LINK_PREFIXES`]; lab namespaces with `nlab-`, the lab gateway is
//! `nlgw` (see [`crate::lab`]). Anything so named without a record is a
//! leftover. Links named [`RETIRED_LINK_PREFIX`]… are on their way out with
//! a released namespace, and links marked as being deleted
//! ([`netloom_kernel::Link::being_deleted`]) are being deleted in the
//! background after an endpoint's removal: `check` ignores both, `gc`
//! deletes any still there. Labs whose supervising process died are taken down.

use std::collections::BTreeSet;

use netloom_kernel::RETIRED_LINK_PREFIX;
use netloom_model::{Endpoint, EndpointState, Network, Violation};

use crate::sandbox::open_if_same;
use crate::{Engine, EngineError};

/// Prefixes of the host-side links netloom's drivers make.
pub const LINK_PREFIXES: &[&str] = &["nlbr-", "nlv-", "nlp-", "nlm-"];

fn drift(message: String) -> Violation {
    Violation {
        invariant: 6,
        message,
    }
}

/// Whether the endpoint's sandbox still exists (its reference opens the
/// namespace the endpoint was made in).
fn sandbox_alive(ep: &Endpoint) -> bool {
    open_if_same(&ep.sandbox, ep.sandbox_inode).is_some()
}

/// For a sandbox made by `netloom run` (`nlrun-PID-N`): whether the run
/// that made it has died without cleaning up.
fn orphaned_run(name: &str) -> bool {
    name.strip_prefix("nlrun-")
        .and_then(|rest| rest.split('-').next())
        .and_then(|pid| pid.parse::<u32>().ok())
        .is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
}

/// A network, its endpoints, and the host links its records call for.
type Expected = (Network, Vec<Endpoint>, Vec<String>);

/// What `gc` did.
#[derive(Debug, Default, serde::Serialize)]
pub struct GcReport {
    /// One line per action, naming the object.
    pub actions: Vec<String>,
}

impl Engine {
    fn host_link_names(&mut self) -> Result<BTreeSet<String>, EngineError> {
        Ok(self.host_links_by_state()?.0)
    }

    /// The host's links by name: those in service, and those on their way
    /// out (retired, or marked as being deleted by an endpoint's removal).
    fn host_links_by_state(&mut self) -> Result<(BTreeSet<String>, BTreeSet<String>), EngineError> {
        let (leaving, in_service) = self
            .kernel
            .host()?
            .list_links()
            .map_err(|e| EngineError::kernel("list the host's links", e))?
            .into_iter()
            .partition::<Vec<_>, _>(|l| l.being_deleted || l.name.starts_with(RETIRED_LINK_PREFIX));
        Ok((
            in_service.into_iter().map(|l| l.name).collect(),
            leaving.into_iter().map(|l| l.name).collect(),
        ))
    }

    /// Network tables in nftables whose network has no record.
    fn stray_tables(&mut self) -> Result<Vec<String>, EngineError> {
        let mut wanted = BTreeSet::new();
        for net in self.store.networks()? {
            if let Some(id8) = self.driver_of(&net)?.firewall_table(&net) {
                wanted.insert(id8);
            }
        }
        Ok(self
            .kernel
            .firewall()?
            .network_ids()?
            .into_iter()
            .filter(|id| !wanted.contains(id))
            .collect())
    }

    /// The links the records say should exist, by network.
    fn expected_links(&mut self) -> Result<Vec<Expected>, EngineError> {
        let mut out = Vec::new();
        for net in self.store.networks()? {
            let eps = self.store.endpoints(Some(&net.id))?;
            let driver = self.driver_of(&net)?;
            let live: Vec<Endpoint> = eps
                .iter()
                .filter(|e| e.state == EndpointState::Ready)
                .cloned()
                .collect();
            let links = driver.host_links(&net, &live);
            out.push((net, eps, links));
        }
        Ok(out)
    }

    /// A network record is the intent to have its kernel objects: a network
    /// without endpoints whose own links are missing (its create was cut
    /// short, or someone deleted its bridge) is made again by its driver.
    /// With endpoints the network is left alone: their ports went with the
    /// bridge, and remaking it would hide that.
    fn remake_networks(&mut self) -> Result<Vec<String>, EngineError> {
        let present = self.host_link_names()?;
        let mut done = Vec::new();
        for (net, eps, links) in self.expected_links()? {
            let missing: Vec<&String> = links.iter().filter(|l| !present.contains(*l)).collect();
            if !eps.is_empty() || missing.is_empty() {
                continue;
            }
            let what = missing
                .iter()
                .map(|l| l.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            let mut driver = self.driver_of(&net)?;
            driver.create_network(&mut self.kernel, &net)?;
            done.push(format!(
                "remade network {:?} in the kernel ({what} was missing)",
                net.name
            ));
        }
        Ok(done)
    }

    /// Invariant 6: every record has its kernel objects, and nothing with a
    /// netloom name exists without a record.
    pub fn check_kernel(&mut self) -> Result<Vec<Violation>, EngineError> {
        let mut out = Vec::new();
        let present = self.host_link_names()?;
        let mut expected = BTreeSet::new();
        for (net, eps, links) in self.expected_links()? {
            for l in links {
                if !present.contains(&l) {
                    out.push(drift(format!(
                        "network {:?}: link {l} is recorded but missing from the kernel; `netloom gc` remakes it once the network has no endpoints (disconnect them, or remove the network)",
                        net.name
                    )));
                }
                expected.insert(l);
            }
            for ep in &eps {
                if ep.state != EndpointState::Ready {
                    out.push(drift(format!(
                        "network {:?}: endpoint {} ({} {}) was left {} by an interrupted command; `netloom gc` finishes it",
                        net.name,
                        &ep.id[..12],
                        ep.sandbox,
                        ep.ifname,
                        ep.state.as_str()
                    )));
                } else if let Some(ns) = open_if_same(&ep.sandbox, ep.sandbox_inode) {
                    let driver = self.driver_of(&net)?;
                    if driver.makes_sandbox_interface() {
                        out.extend(self.check_inside(&net, ep, &ns)?);
                    }
                    out.extend(
                        driver
                            .check_endpoint(&mut self.kernel, &net, ep)?
                            .into_iter()
                            .map(drift),
                    );
                } else {
                    out.push(drift(format!(
                        "network {:?}: endpoint {} belongs to sandbox {}, which is gone; `netloom gc` removes it",
                        net.name,
                        &ep.id[..12],
                        ep.sandbox
                    )));
                }
            }
        }
        for name in present
            .iter()
            .filter(|n| LINK_PREFIXES.iter().any(|p| n.starts_with(p)))
        {
            if !expected.contains(name) {
                out.push(drift(format!(
                    "link {name} has a netloom name but no record; `netloom gc` removes it"
                )));
            }
        }
        for id8 in self.stray_tables()? {
            out.push(drift(format!(
                "nftables table inet netloom-{id8} belongs to no network; `netloom gc` removes it"
            )));
        }
        out.extend(self.lab_check()?.into_iter().map(drift));
        for (name, _, alive) in self.sandboxes()? {
            if !alive {
                out.push(drift(format!(
                    "sandbox {name:?} is recorded but its namespace is gone; `netloom gc` forgets it"
                )));
            } else if orphaned_run(&name) {
                out.push(drift(format!(
                    "sandbox {name:?} belongs to a `netloom run` that died; `netloom gc` removes it"
                )));
            }
        }
        Ok(out)
    }

    /// The sandbox side of an endpoint: its interface holds its addresses.
    fn check_inside(
        &mut self,
        net: &Network,
        ep: &Endpoint,
        ns: &netloom_kernel::Netns,
    ) -> Result<Vec<Violation>, EngineError> {
        let mut nl = self.kernel.inside(ns)?;
        let Some(link) = nl.get_link(ep.ifname.as_str()).map_err(|e| {
            EngineError::kernel(&format!("sandbox {}: read {}", ep.sandbox, ep.ifname), e)
        })?
        else {
            return Ok(vec![drift(format!(
                "network {:?}: sandbox {} has no interface {}",
                net.name, ep.sandbox, ep.ifname
            ))]);
        };
        let have: BTreeSet<String> = nl
            .list_addresses(Some(link.index))
            .map_err(|e| {
                EngineError::kernel(&format!("sandbox {}: read addresses", ep.sandbox), e)
            })?
            .into_iter()
            .map(|a| format!("{}/{}", a.prefix.addr(), a.prefix.prefix_len()))
            .collect();
        Ok(ep
            .leases
            .iter()
            .filter(|l| !have.contains(&l.address))
            .map(|l| {
                drift(format!(
                    "network {:?}: sandbox {} interface {} lacks its address {}",
                    net.name, ep.sandbox, ep.ifname, l.address
                ))
            })
            .collect())
    }

    /// Finishes or undoes interrupted commands and removes leftovers:
    /// endpoints left `creating` or `removing`, endpoints whose sandbox is
    /// gone, links with netloom names and no record, sandboxes whose
    /// namespace is gone.
    pub fn gc(&mut self) -> Result<GcReport, EngineError> {
        let mut report = GcReport::default();
        // Labs first: taking one down releases its addresses and namespaces.
        report.actions.extend(self.lab_gc()?);
        for net in self.store.networks()? {
            for ep in self.store.endpoints(Some(&net.id))? {
                let why = match ep.state {
                    EndpointState::Creating => "its connect was interrupted",
                    EndpointState::Removing => "its disconnect was interrupted",
                    EndpointState::Ready if !sandbox_alive(&ep) => "its sandbox is gone",
                    EndpointState::Ready => continue,
                };
                self.remove_endpoint(&net, &ep)?;
                report.actions.push(format!(
                    "removed endpoint {} ({} {} on network {:?}): {why}",
                    &ep.id[..12],
                    ep.sandbox,
                    ep.ifname,
                    net.name
                ));
            }
        }
        report.actions.extend(self.remake_networks()?);
        for (name, _, alive) in self.sandboxes()? {
            if alive && orphaned_run(&name) {
                let n = self.remove_sandbox(&name)?;
                report.actions.push(format!(
                    "removed sandbox {name:?} and its {n} endpoint(s): the `netloom run` that made it died"
                ));
            }
        }
        for id8 in self.stray_tables()? {
            self.kernel.firewall()?.remove_network(&id8)?;
            report.actions.push(format!(
                "deleted nftables table inet netloom-{id8}: no network"
            ));
        }
        let (present, leaving) = self.host_links_by_state()?;
        let expected: BTreeSet<String> = self
            .expected_links()?
            .into_iter()
            .flat_map(|(_, _, l)| l)
            .collect();
        let stray = present
            .iter()
            .filter(|n| LINK_PREFIXES.iter().any(|p| n.starts_with(p)) && !expected.contains(*n));
        for name in leaving.iter().chain(stray) {
            let (what, why) = if leaving.contains(name) {
                // Still here: a process keeps the namespace of its other
                // end alive, or the deletion has not finished.
                ("link on its way out", "the kernel had not removed it yet")
            } else {
                ("link", "no record")
            };
            if crate::drivers::delete_link_if_present(&mut self.kernel, name, "gc")? {
                report.actions.push(format!("deleted {what} {name}: {why}"));
            }
        }
        for (name, _, alive) in self.sandboxes()? {
            if !alive {
                self.store.remove_sandbox(&name)?;
                report
                    .actions
                    .push(format!("forgot sandbox {name:?}: its namespace is gone"));
            }
        }
        Ok(report)
    }
}
