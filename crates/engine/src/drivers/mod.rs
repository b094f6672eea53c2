//! Built-in drivers, one module each.

pub mod bridge;
pub mod host;
pub mod ipvlan;
pub mod macvlan;
pub mod null;
pub mod ptp;

use crate::driver::Driver;

/// Names of the built-in drivers.
pub const NAMES: &[&str] = &["bridge", "ptp", "macvlan", "ipvlan", "host", "null"];

/// A built-in driver by name.
pub fn by_name(name: &str) -> Option<Box<dyn Driver>> {
    match name {
        "bridge" => Some(Box::new(bridge::BridgeDriver::default())),
        "ptp" => Some(Box::new(ptp::PtpDriver)),
        "macvlan" => Some(Box::new(macvlan::MacvlanDriver)),
        "ipvlan" => Some(Box::new(ipvlan::IpvlanDriver)),
        "host" => Some(Box::new(host::HostDriver)),
        "null" => Some(Box::new(null::NullDriver)),
        _ => None,
    }
}

/// Deletes a host-side link, treating "already gone" as done; whether it
/// was there.
/// How errors about an endpoint name it: its network and its sandbox.
pub(crate) fn endpoint_what(
    network: &netloom_model::Network,
    endpoint: &netloom_model::Endpoint,
) -> String {
    format!("network {:?}: sandbox {}", network.name, endpoint.sandbox)
}

pub(crate) fn delete_link_if_present(
    kernel: &mut crate::kernel::Kernel,
    name: &str,
    what: &str,
) -> Result<bool, crate::EngineError> {
    delete_link_in(kernel.host()?, name, what)
}

/// [`delete_link_if_present`] in the namespace of `nl`.
pub(crate) fn delete_link_in(
    nl: &mut netloom_kernel::Netlink,
    name: &str,
    what: &str,
) -> Result<bool, crate::EngineError> {
    gone_is_false(nl.delete_link(name).map(|()| true), name, what)
}

/// Takes a host-side link out of service at once and leaves its deletion
/// (and its veth peer's) to the kernel in the background
/// ([`netloom_kernel::Netlink::delete_link_in_background`]); whether it
/// was there. What an endpoint's removal uses: a plain deletion blocks for
/// 20–30 ms.
pub(crate) fn delete_link_in_background_if_present(
    kernel: &mut crate::kernel::Kernel,
    name: &str,
    sandbox: Option<&netloom_kernel::Netns>,
    what: &str,
) -> Result<bool, crate::EngineError> {
    // A socket where the veth's other end is, to free its name at once.
    let mut peer = match sandbox {
        Some(ns) => kernel.inside(ns).ok(),
        None => None,
    };
    let deleted = kernel
        .host()?
        .delete_link_in_background(name, peer.as_mut());
    gone_is_false(deleted, name, what)
}

/// A deletion's outcome: "already gone" is `false`; other errors name the
/// link and what it was deleted for.
fn gone_is_false(
    deleted: netloom_kernel::Result<bool>,
    name: &str,
    what: &str,
) -> Result<bool, crate::EngineError> {
    match deleted {
        Ok(there) => Ok(there),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(crate::EngineError::kernel(
            &format!("{what}: delete {name}"),
            e,
        )),
    }
}

/// A validated network for the drivers' unit tests.
#[cfg(test)]
pub(crate) fn test_network(
    name: &str,
    driver: &str,
    subnet: &str,
    options: &[(&str, &str)],
    mode: netloom_model::Mode,
) -> netloom_model::Network {
    netloom_model::NetworkRequest {
        name: name.into(),
        driver: driver.into(),
        subnets: vec![subnet.into()],
        mode,
        options: options
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    }
    .validate("0123456789abcdef")
    .unwrap()
}
