//! The null driver: addresses are managed, nothing is made in the kernel.
//! A sandbox connected to a null network keeps only its loopback.

use netloom_kernel::Netns;
use netloom_model::{Endpoint, Network};

use crate::driver::{check_options, Driver};
use crate::kernel::Kernel;
use crate::EngineError;

pub struct NullDriver;

impl Driver for NullDriver {
    fn name(&self) -> &'static str {
        "null"
    }

    fn validate(&self, network: &Network) -> Result<(), EngineError> {
        check_options("null", network, &[])
    }

    fn create_network(&mut self, _: &mut Kernel, _: &Network) -> Result<(), EngineError> {
        Ok(())
    }

    fn delete_network(&mut self, _: &mut Kernel, _: &Network) -> Result<(), EngineError> {
        Ok(())
    }

    fn join(
        &mut self,
        _: &mut Kernel,
        _: &Network,
        _: &Endpoint,
        _: &Netns,
    ) -> Result<(), EngineError> {
        Ok(())
    }

    fn leave(
        &mut self,
        _: &mut Kernel,
        _: &Network,
        _: &Endpoint,
        _: Option<&Netns>,
    ) -> Result<(), EngineError> {
        Ok(())
    }

    fn host_links(&self, _: &Network, _: &[Endpoint]) -> Vec<String> {
        Vec::new()
    }

    fn makes_sandbox_interface(&self) -> bool {
        false
    }
}
