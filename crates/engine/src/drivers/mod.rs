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
        "bridge" => Some(Box::new(bridge::BridgeDriver)),
        "ptp" => Some(Box::new(ptp::PtpDriver)),
        "macvlan" => Some(Box::new(macvlan::MacvlanDriver)),
        "ipvlan" => Some(Box::new(ipvlan::IpvlanDriver)),
        "host" => Some(Box::new(host::HostDriver)),
        "null" => Some(Box::new(null::NullDriver)),
        _ => None,
    }
}
