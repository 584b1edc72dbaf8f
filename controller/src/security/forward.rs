//! Inbound port forwards and SSH access (issue 14), as values.
//!
//! Both live on the tenant's *forward IP*: one public address taken from the pool for the
//! tenant's first forward (or when SSH access is turned on), shared by all its forwards and
//! its SSH ports, and given back when neither is left.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ForwardProtocol {
    Tcp,
    Udp,
}

impl ForwardProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            ForwardProtocol::Tcp => "tcp",
            ForwardProtocol::Udp => "udp",
        }
    }
}

impl fmt::Display for ForwardProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ForwardProtocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "tcp" => Ok(ForwardProtocol::Tcp),
            "udp" => Ok(ForwardProtocol::Udp),
            _ => Err(format!("protocol {s:?} is not tcp or udp")),
        }
    }
}

/// `public:public_port/protocol` is DNATed by the tenant's CNCI to `private:private_port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    pub uuid: Uuid,
    pub tenant: Uuid,
    pub public: Ipv4Addr,
    pub protocol: ForwardProtocol,
    pub public_port: u16,
    pub private: Ipv4Addr,
    pub private_port: u16,
}

/// A forward as the API takes it; ports are wide so that 0 and 70000 get a clear message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardRequest {
    pub protocol: String,
    pub public_port: i64,
    pub private_ip: Ipv4Addr,
    pub private_port: i64,
    /// Omitted: the tenant's forward IP (taken from the pool on its first forward).
    #[serde(default)]
    pub public_ip: Option<Ipv4Addr>,
}

/// A checked forward, before the store gives it an id and a public IP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardSpec {
    pub protocol: ForwardProtocol,
    pub public_port: u16,
    pub private: Ipv4Addr,
    pub private_port: u16,
    pub public: Option<Ipv4Addr>,
}

impl ForwardRequest {
    /// The forward, or why not (the store then checks it against the tenant's subnets).
    pub fn check(&self) -> Result<ForwardSpec, String> {
        let port = |value: i64, name: &str| match u16::try_from(value) {
            Ok(port) if port > 0 => Ok(port),
            _ => Err(format!("{name} {value} is not a port (1-65535)")),
        };
        Ok(ForwardSpec {
            protocol: self.protocol.parse()?,
            public_port: port(self.public_port, "public_port")?,
            private: self.private_ip,
            private_port: port(self.private_port, "private_port")?,
            public: self.public_ip,
        })
    }
}

/// Why `address` cannot receive a forward in `subnet` (its network, gateway or broadcast
/// address); `None` if it can.
pub fn reserved_in(subnet: Ipv4Net, address: Ipv4Addr) -> Option<&'static str> {
    let a = u32::from(address);
    if subnet.prefix_len() >= 31 {
        return None;
    }
    if a == u32::from(subnet.network()) {
        Some("network")
    } else if a == u32::from(subnet.network()) + 1 {
        Some("gateway")
    } else if a == u32::from(subnet.broadcast()) {
        Some("broadcast")
    } else {
        None
    }
}

/// The cluster's SSH access policy, from the controller's config (`[ssh]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SshPolicy {
    /// Whether a tenant that never chose has SSH access.
    pub default: bool,
    /// Where a tenant's first block of SSH ports starts.
    pub port_base: u16,
}

impl Default for SshPolicy {
    fn default() -> Self {
        SshPolicy {
            default: false,
            port_base: 33000,
        }
    }
}

/// A tenant subnet's SSH ports: the address at offset `i` in the subnet is reached on
/// `base + i`. Blocks of a tenant are disjoint, so two of its addresses never share a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshBlock {
    pub cidr: Ipv4Net,
    pub base: u16,
    /// The subnet's address count.
    pub size: u32,
}

impl SshBlock {
    pub fn last_port(&self) -> u32 {
        u32::from(self.base) + self.size - 1
    }

    /// The SSH port of `address`, if it is in the block's subnet.
    pub fn port_of(&self, address: Ipv4Addr) -> Option<u16> {
        if !self.cidr.contains(&address) {
            return None;
        }
        let offset = u32::from(address) - u32::from(self.cidr.network());
        u16::try_from(u32::from(self.base) + offset).ok()
    }

    pub fn holds(&self, port: u16) -> bool {
        (u32::from(self.base)..=self.last_port()).contains(&u32::from(port))
    }
}

/// A tenant's SSH access as stored: its own choice (`None`: the cluster default), its forward
/// IP, and its blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshAccess {
    pub tenant: Uuid,
    pub enabled: bool,
    /// Whether `enabled` is the tenant's own choice rather than the cluster default.
    pub chosen: bool,
    pub forward_ip: Option<Ipv4Addr>,
    pub blocks: Vec<SshBlock>,
}
