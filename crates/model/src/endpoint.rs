//! Endpoints: a network's attachment to a sandbox, and published ports.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::alloc::Lease;
use crate::error::ModelError;

/// Where an endpoint is in its life. Records are written before the kernel
/// is touched ("intent first"), so a crash leaves a record `gc` can finish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointState {
    /// Addresses allocated; kernel objects being made.
    Creating,
    /// Fully in place.
    Ready,
    /// Kernel objects being removed.
    Removing,
}

impl EndpointState {
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointState::Creating => "creating",
            EndpointState::Ready => "ready",
            EndpointState::Removing => "removing",
        }
    }

    pub fn parse(s: &str) -> Option<EndpointState> {
        Some(match s {
            "creating" => EndpointState::Creating,
            "ready" => EndpointState::Ready,
            "removing" => EndpointState::Removing,
            _ => return None,
        })
    }
}

/// Transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
}

impl Proto {
    /// IANA protocol number.
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
            Proto::Sctp => 132,
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        })
    }
}

/// One published port (ranges are expanded to one mapping per port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortMapping {
    /// Only traffic to this host address; any local address when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub container_port: u16,
    pub proto: Proto,
}

impl fmt::Display for PortMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host_ip {
            Some(IpAddr::V6(ip)) => write!(f, "[{ip}]:")?,
            Some(ip) => write!(f, "{ip}:")?,
            None => {}
        }
        write!(
            f,
            "{}:{}/{}",
            self.host_port, self.container_port, self.proto
        )
    }
}

/// Parses `[HOSTIP:]HPORT[-HEND]:CPORT[-CEND][/tcp|udp|sctp]` (an IPv6 host
/// address in brackets) into one mapping per port.
pub fn parse_publish(text: &str) -> Result<Vec<PortMapping>, ModelError> {
    let bad = |why: &str| ModelError::Malformed {
        what: "--publish".into(),
        value: text.to_string(),
        why: why.to_string(),
    };
    let (spec, proto) = match text.rsplit_once('/') {
        Some((s, p)) => (
            s,
            match p {
                "tcp" => Proto::Tcp,
                "udp" => Proto::Udp,
                "sctp" => Proto::Sctp,
                _ => return Err(bad("the protocol must be tcp, udp or sctp")),
            },
        ),
        None => (text, Proto::Tcp),
    };
    let (host_ip, ports) = if let Some(rest) = spec.strip_prefix('[') {
        let (ip, rest) = rest
            .split_once("]:")
            .ok_or_else(|| bad("an IPv6 host address goes in brackets: [fd00::1]:8080:80"))?;
        let ip = IpAddr::from_str(ip).map_err(|_| bad("the host address is not an IP address"))?;
        (Some(ip), rest)
    } else {
        let parts: Vec<&str> = spec.split(':').collect();
        match parts.as_slice() {
            [_, _] => (None, spec),
            [ip, h, c] => {
                let ip = IpAddr::from_str(ip)
                    .map_err(|_| bad("the host address is not an IPv4 address"))?;
                (Some(ip), &spec[spec.len() - h.len() - c.len() - 1..])
            }
            _ => {
                return Err(bad(
                    "expected [HOSTIP:]HOSTPORT:CONTAINERPORT[/PROTO], e.g. 8080:80/tcp",
                ))
            }
        }
    };
    let (h, c) = ports
        .split_once(':')
        .ok_or_else(|| bad("expected HOSTPORT:CONTAINERPORT"))?;
    let range = |s: &str| -> Result<(u16, u16), ModelError> {
        let port = |p: &str| -> Result<u16, ModelError> {
            match p.parse::<u16>() {
                Ok(0) | Err(_) => Err(bad(&format!("{p:?} is not a port (1-65535)"))),
                Ok(n) => Ok(n),
            }
        };
        match s.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (port(a)?, port(b)?);
                if a > b {
                    return Err(bad(&format!("range {a}-{b} ends before it starts")));
                }
                Ok((a, b))
            }
            None => port(s).map(|p| (p, p)),
        }
    };
    let (h0, h1) = range(h)?;
    let (c0, c1) = range(c)?;
    if h1 - h0 != c1 - c0 {
        return Err(bad("the host and container ranges differ in length"));
    }
    Ok((0..=(h1 - h0))
        .map(|i| PortMapping {
            host_ip,
            host_port: h0 + i,
            container_port: c0 + i,
            proto,
        })
        .collect())
}

/// Interface names: what the kernel accepts (1–15 bytes, no '/', no
/// whitespace, not "." or "..").
pub fn check_ifname(name: &str) -> Result<(), ModelError> {
    let why = if name.is_empty() || name.len() > 15 {
        "it must be 1 to 15 bytes long"
    } else if name.contains(['/', ':']) || name.chars().any(|c| c.is_whitespace()) {
        "it may not contain '/', ':' or whitespace"
    } else if name == "." || name == ".." {
        "it may not be \".\" or \"..\""
    } else {
        return Ok(());
    };
    Err(ModelError::Malformed {
        what: "interface name".into(),
        value: name.to_string(),
        why: why.into(),
    })
}

/// A MAC address as text `02:42:ac:11:00:02`, checked to be unicast.
pub fn parse_mac(text: &str) -> Result<[u8; 6], ModelError> {
    let bad = |why: &str| ModelError::Malformed {
        what: "MAC address".into(),
        value: text.to_string(),
        why: why.into(),
    };
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() != 6 {
        return Err(bad("expected six hex bytes, e.g. 02:42:ac:11:00:02"));
    }
    let mut mac = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        mac[i] = u8::from_str_radix(p, 16)
            .map_err(|_| bad("expected six hex bytes, e.g. 02:42:ac:11:00:02"))?;
    }
    if mac[0] & 1 == 1 {
        return Err(bad(
            "it is a multicast address; use a unicast one (even first byte)",
        ));
    }
    if mac == [0; 6] {
        return Err(bad("it is all zeros"));
    }
    Ok(mac)
}

pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// An endpoint as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub id: String,
    /// Network name.
    pub network: String,
    /// The sandbox as the user named it (a name, a path or `pid:N`).
    pub sandbox: String,
    /// Inode of the sandbox's network namespace: its identity.
    pub sandbox_inode: u64,
    /// Interface name inside the sandbox.
    pub ifname: String,
    /// Interface name on the host side, if the driver made one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_ifname: Option<String>,
    pub mac: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortMapping>,
    pub state: EndpointState,
    /// The container runtime's id of the container (CNI `CNI_CONTAINERID`),
    /// when a runtime made the endpoint; lets it be found again after the
    /// sandbox is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    /// The endpoint's addresses; filled in from the allocations when read
    /// back, never stored in the record itself.
    #[serde(skip_deserializing)]
    pub leases: Vec<Lease>,
}

impl Endpoint {
    /// Whether joining the sandbox brings its loopback up. Not for an
    /// endpoint a container runtime made (it has a container id): under
    /// CNI the namespace's other interfaces are the runtime's, which brings
    /// loopback up itself (the `loopback` plugin), as the reference
    /// plugins leave it. A sandbox netloom connects on its own gets a
    /// working loopback, as `netloom sandbox create` makes one.
    pub fn brings_loopback_up(&self) -> bool {
        self.container_id.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_forms() {
        let one = parse_publish("8080:80").unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].to_string(), "8080:80/tcp");
        let r = parse_publish("127.0.0.1:5000-5002:6000-6002/udp").unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r[2].to_string(), "127.0.0.1:5002:6002/udp");
        let v6 = parse_publish("[fd00::1]:53:53/udp").unwrap();
        assert_eq!(v6[0].host_ip, Some("fd00::1".parse().unwrap()));
        assert_eq!(
            parse_publish("9000:9000/sctp").unwrap()[0].proto,
            Proto::Sctp
        );
    }

    #[test]
    fn publish_errors_name_the_value() {
        for (bad, why) in [
            ("80", "expected"),
            ("0:80", "not a port"),
            ("8080:80/icmp", "tcp, udp or sctp"),
            ("5000-5002:6000/tcp", "differ in length"),
            ("5002-5000:5002-5000", "ends before it starts"),
            ("x.y:1:2", "not an IPv4"),
        ] {
            let e = parse_publish(bad).unwrap_err().to_string();
            assert!(e.contains(bad) && e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn macs_and_ifnames() {
        assert_eq!(
            format_mac(&parse_mac("02:42:AC:11:00:02").unwrap()),
            "02:42:ac:11:00:02"
        );
        assert!(parse_mac("01:00:5e:00:00:01")
            .unwrap_err()
            .to_string()
            .contains("multicast"));
        assert!(parse_mac("02:42").is_err());
        assert!(check_ifname("eth0").is_ok());
        assert!(check_ifname("averyveryverylongname").is_err());
        assert!(check_ifname("a/b").is_err());
    }
}
