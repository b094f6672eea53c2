//! Commands inside a lab: in a node's network namespace (or the bridge
//! namespace, for test drivers) and a private mount namespace in which the
//! lab's hosts file is bind-mounted over /etc/hosts, the way `ip netns
//! exec` bind-mounts /etc/netns/NAME/*. Nodes reach each other by name.

use std::ffi::CString;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::process::Command;

use netloom_kernel::Netns;
use netloom_model::ModelError;
use nix::mount::{mount, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

use super::{bridge_netns_name, lab_dir, node_netns_name, LabState};
use crate::{Engine, EngineError};

/// Where in a lab a command runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabTarget {
    /// In a node's namespace.
    Node(String),
    /// In the lab's bridge namespace, where test drivers run: it reaches
    /// every node and applies partitions.
    Bridge,
}

impl Engine {
    /// A command that will run `argv` inside the lab (see the module doc).
    /// Its environment has `NETLOOM_LAB`, `NETLOOM_STATE_DIR` and, on a
    /// node, `NETLOOM_NODE`; its hostname is the node's name (or `bridge`).
    /// Also `SIGKILL` reaches it when the process that spawned it dies, if
    /// `die_with_parent`.
    pub fn lab_command(
        &mut self,
        lab: &str,
        target: &LabTarget,
        argv: &[String],
        die_with_parent: bool,
    ) -> Result<Command, EngineError> {
        let rec = self.lab(lab)?;
        if rec.state != LabState::Ready {
            return Err(ModelError::Invalid {
                object: format!("lab {lab:?}"),
                why: format!("it is {}, not up", rec.state.as_str()),
                fix: "wait for it to come up, or run `netloom gc` if its command died".into(),
            }
            .into());
        }
        let (netns, hostname) = match target {
            LabTarget::Bridge => (bridge_netns_name(lab), "bridge".to_string()),
            LabTarget::Node(node) => {
                if rec.node(node).is_none() {
                    let names: Vec<&str> = rec.nodes.iter().map(|n| n.name.as_str()).collect();
                    return Err(ModelError::Invalid {
                        object: format!("lab {lab:?}"),
                        why: format!("it has no node {node:?}"),
                        fix: format!("use one of: {}, or --bridge", names.join(", ")),
                    }
                    .into());
                }
                (node_netns_name(lab, node), node.clone())
            }
        };
        let ns =
            Netns::open_named(&netns).map_err(super::kerr(format!("lab {lab:?}: open {netns}")))?;
        let hosts = lab_dir(&self.state_dir, lab).join("hosts");
        let Some(program) = argv.first() else {
            return Err(ModelError::Invalid {
                object: format!("lab {lab:?}"),
                why: "no command given".into(),
                fix: "put the command after `--`".into(),
            }
            .into());
        };
        let mut cmd = Command::new(program);
        cmd.args(&argv[1..]);
        cmd.env("NETLOOM_LAB", lab)
            .env("NETLOOM_STATE_DIR", &self.state_dir);
        match target {
            LabTarget::Node(node) => cmd.env("NETLOOM_NODE", node),
            LabTarget::Bridge => cmd.env_remove("NETLOOM_NODE"),
        };
        let c = |bytes: &[u8]| CString::new(bytes).expect("paths have no NUL");
        let hosts = c(hosts.as_os_str().as_bytes());
        let etc_hosts = c(b"/etc/hosts");
        let root = c(b"/");
        let hostname = c(hostname.as_bytes());
        let fd = ns
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| ModelError::Invalid {
                object: format!("lab {lab:?}"),
                why: format!("cannot duplicate the namespace fd ({e})"),
                fix: "check the open file limit".into(),
            })?;
        // SAFETY: only system calls between fork and exec (setns, unshare,
        // mount, sethostname, prctl), on values prepared before the fork.
        unsafe {
            cmd.pre_exec(move || {
                if die_with_parent {
                    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
                }
                setns(&fd, CloneFlags::CLONE_NEWNET)?;
                unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS)?;
                // Nothing done here may reach the parent's mount namespace.
                mount(
                    None::<&std::ffi::CStr>,
                    root.as_c_str(),
                    None::<&std::ffi::CStr>,
                    MsFlags::MS_REC | MsFlags::MS_SLAVE,
                    None::<&std::ffi::CStr>,
                )?;
                mount(
                    Some(hosts.as_c_str()),
                    etc_hosts.as_c_str(),
                    None::<&std::ffi::CStr>,
                    MsFlags::MS_BIND,
                    None::<&std::ffi::CStr>,
                )?;
                nix::unistd::sethostname(std::ffi::OsStr::from_bytes(hostname.as_bytes()))?;
                Ok(())
            });
        }
        Ok(cmd)
    }
}
