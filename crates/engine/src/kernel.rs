//! The engine's handle on the kernel: sockets opened once per process, on
//! first use, and reused for every operation.

use netloom_kernel::{Netlink, Netns};

use crate::firewall::Firewall;
use crate::EngineError;

/// Kernel access for drivers. Opening is lazy: a command that touches no
/// kernel object opens no socket.
#[derive(Default)]
pub struct Kernel {
    host: Option<Netlink>,
    firewall: Option<Firewall>,
}

impl Kernel {
    /// The route-netlink socket of the namespace netloom runs in (the host).
    pub fn host(&mut self) -> Result<&mut Netlink, EngineError> {
        if self.host.is_none() {
            self.host =
                Some(Netlink::open_current().map_err(|e| EngineError::kernel("open netlink", e))?);
        }
        Ok(self.host.as_mut().expect("just opened"))
    }

    /// The nftables applier of the host namespace.
    pub fn firewall(&mut self) -> Result<&mut Firewall, EngineError> {
        if self.firewall.is_none() {
            self.firewall = Some(Firewall::open()?);
        }
        Ok(self.firewall.as_mut().expect("just opened"))
    }

    /// A route-netlink socket inside a sandbox (opened per use: sandboxes differ).
    pub fn inside(&mut self, sandbox: &Netns) -> Result<Netlink, EngineError> {
        self.inside_with_sysctls(sandbox, &[])
    }

    /// [`Kernel::inside`], writing network sysctls in the sandbox on the
    /// same trip into it.
    pub fn inside_with_sysctls(
        &mut self,
        sandbox: &Netns,
        sysctls: &[(&str, &str)],
    ) -> Result<Netlink, EngineError> {
        Netlink::open_in_with_sysctls(sandbox, sysctls).map_err(|e| {
            EngineError::kernel(&format!("open netlink in sandbox {}", sandbox.label()), e)
        })
    }
}
