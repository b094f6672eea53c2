//! The engine's handle on the kernel: sockets opened once per process, on
//! first use, and reused for every operation.

use netloom_kernel::{Netlink, Netns};

use crate::firewall::Firewall;
use crate::overlap::Helper;
use crate::EngineError;

/// Kernel access for drivers. Opening is lazy: a command that touches no
/// kernel object opens no socket.
#[derive(Default)]
pub struct Kernel {
    host: Option<Netlink>,
    firewall: Option<Firewall>,
    /// A socket in a sandbox, opened before it is needed (see
    /// [`Kernel::open_inside_ahead`]), with that namespace's inode.
    ahead: Option<(u64, Netlink)>,
    /// The engine's helper thread, when it keeps one (see
    /// [`crate::overlap`]).
    pub(crate) helper: Option<Helper>,
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
        if let Some((inode, nl)) = self.ahead.take() {
            // Sysctls are written from inside: with some to write, the
            // trip in is made anyway, and the socket is opened on it.
            if sysctls.is_empty() && sandbox.inode().is_ok_and(|i| i == inode) {
                return Ok(nl);
            }
        }
        Netlink::open_in_with_sysctls(sandbox, sysctls).map_err(|e| {
            EngineError::kernel(&format!("open netlink in sandbox {}", sandbox.label()), e)
        })
    }

    /// Opens the socket that the next [`Kernel::inside`] for `sandbox`
    /// takes, at a time when this thread would otherwise wait. A failure
    /// is left for that call to meet and report.
    pub fn open_inside_ahead(&mut self, sandbox: &Netns) {
        self.ahead = match (sandbox.inode(), Netlink::open_in(sandbox)) {
            (Ok(inode), Ok(nl)) => Some((inode, nl)),
            _ => None,
        };
    }

    /// The helper thread, if the engine keeps one: work that does not
    /// depend on each other can run on it and on this thread at once.
    pub fn helper(&self) -> Option<Helper> {
        self.helper.clone()
    }

    /// Lends out the firewall: a kernel holding only it, for work on this
    /// thread while another one makes links with the rest
    /// ([`Kernel::take_back`] afterwards).
    pub fn lend_firewall(&mut self) -> Kernel {
        Kernel {
            host: None,
            firewall: self.firewall.take(),
            ahead: None,
            helper: None,
        }
    }

    /// Takes back what [`Kernel::lend_firewall`] lent, with what was
    /// opened on it meanwhile.
    pub fn take_back(&mut self, lent: Kernel) {
        if lent.firewall.is_some() {
            self.firewall = lent.firewall;
        }
        if lent.ahead.is_some() {
            self.ahead = lent.ahead;
        }
        if self.host.is_none() {
            self.host = lent.host;
        }
    }
}
