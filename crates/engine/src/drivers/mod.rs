//! Built-in drivers, one module each.

pub mod bridge;
pub mod null;

use crate::driver::Driver;

/// Names of the built-in drivers.
pub const NAMES: &[&str] = &["bridge", "null"];

/// A built-in driver by name.
pub fn by_name(name: &str) -> Option<Box<dyn Driver>> {
    match name {
        "bridge" => Some(Box::new(bridge::BridgeDriver)),
        "null" => Some(Box::new(null::NullDriver)),
        _ => None,
    }
}
