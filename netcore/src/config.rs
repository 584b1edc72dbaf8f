//! What a front end tells the core about a tenant subnet and one VNIC.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::ids;
use crate::netlink::tap::TapOwner;
use crate::tunnel::TunnelKind;

/// A tenant's concentrator: its SSNTP UUID and its underlay address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cnci {
    pub uuid: Uuid,
    pub ip: Ipv4Addr,
}

impl Cnci {
    /// Checks the UUID and the address; the error names the field.
    pub fn validate(&self) -> Result<()> {
        if self.uuid.is_nil() {
            return Err(Error::invalid("cnci.uuid", "the nil UUID is not a CNCI"));
        }
        if let Some(why) = not_unicast(self.ip) {
            return Err(Error::invalid(
                "cnci.ip",
                format!(
                    "{} is {why}, not the unicast underlay address of a CNCI",
                    self.ip
                ),
            ));
        }
        Ok(())
    }
}

/// Checks a tunnel id against its kind's range.
pub fn validate_tunnel_id(kind: TunnelKind, id: u32) -> Result<()> {
    let max = kind.max_id();
    if id == 0 || id > max {
        return Err(Error::invalid(
            "tunnel.id",
            format!("{id} is out of range for {kind} (1..={max})"),
        ));
    }
    Ok(())
}

/// An inclusive address range inside the subnet from which this node allocates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddrRange {
    pub start: Ipv4Addr,
    pub end: Ipv4Addr,
}

/// A tenant subnet as configured by the operator (the same on every node).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetConfig {
    pub tenant: Uuid,
    pub subnet: Ipv4Net,
    /// The tenant's CNCI (static mode). `None` is controller mode: the subnet is set up on the
    /// node at once without a tunnel, and `ciao-node run` asks the controller for the CNCI and
    /// tunnel id ([`crate::Node::assign_cnci`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnci: Option<Cnci>,
    #[serde(default)]
    pub tunnel_kind: TunnelKind,
    /// Overrides the derived tunnel id (VNI or GRE key); static mode only.
    #[serde(default)]
    pub tunnel_id: Option<u32>,
    /// Range this node allocates from; default: every host address of the subnet.
    #[serde(default)]
    pub node_range: Option<AddrRange>,
    /// The CNCI's address in the subnet; default: the subnet's first host address.
    #[serde(default)]
    pub gateway: Option<Ipv4Addr>,
    /// Workload MTU; default: underlay MTU minus the tunnel overhead.
    #[serde(default)]
    pub mtu: Option<u32>,
    /// Underlay device for the tunnel; default: the one the kernel routes the CNCI's IP through.
    #[serde(default)]
    pub underlay_device: Option<String>,
}

impl SubnetConfig {
    /// A static-mode VXLAN subnet with every optional setting at its default.
    pub fn new(tenant: Uuid, subnet: Ipv4Net, cnci: Cnci) -> Self {
        SubnetConfig {
            cnci: Some(cnci),
            ..Self::controlled(tenant, subnet)
        }
    }

    /// A controller-mode subnet (no CNCI named) with every optional setting at its default.
    pub fn controlled(tenant: Uuid, subnet: Ipv4Net) -> Self {
        SubnetConfig {
            tenant,
            subnet,
            cnci: None,
            tunnel_kind: TunnelKind::Vxlan,
            tunnel_id: None,
            node_range: None,
            gateway: None,
            mtu: None,
            underlay_device: None,
        }
    }

    /// Checks every value and fills nothing in; the error names the field.
    pub fn validate(&self) -> Result<()> {
        let subnet = self.subnet;
        if subnet != subnet.trunc() {
            return Err(Error::invalid(
                "subnet",
                format!(
                    "{subnet} has host bits set (did you mean {}?)",
                    subnet.trunc()
                ),
            ));
        }
        if subnet.prefix_len() > 30 {
            return Err(Error::invalid(
                "subnet",
                format!("{subnet} is too small: a tenant subnet needs at least a /30"),
            ));
        }
        if let Some((range, why)) = reserved_overlap(subnet) {
            return Err(Error::invalid(
                "subnet",
                format!("{subnet} overlaps {range}, {why}; a tenant subnet must be unicast space"),
            ));
        }
        if self.tenant.is_nil() {
            return Err(Error::invalid("tenant", "the nil UUID is not a tenant"));
        }
        match (&self.cnci, self.tunnel_id) {
            (Some(cnci), id) => {
                cnci.validate()?;
                if let Some(id) = id {
                    validate_tunnel_id(self.tunnel_kind, id)?;
                }
            }
            (None, Some(id)) => {
                return Err(Error::invalid(
                    "tunnel.id",
                    format!(
                        "{id} is given without a cnci: without one the controller assigns the \
                         tunnel id (give both, or neither)"
                    ),
                ))
            }
            (None, None) => {}
        }
        let gateway = self.gateway();
        if !self.is_host(gateway) {
            return Err(Error::invalid(
                "gateway",
                format!("{gateway} is not a host address of {subnet}"),
            ));
        }
        if let Some(range) = self.node_range {
            for (field, ip) in [("range.start", range.start), ("range.end", range.end)] {
                if !self.is_host(ip) {
                    return Err(Error::invalid(
                        field,
                        format!("{ip} is not a host address of {subnet}"),
                    ));
                }
            }
            if range.start > range.end {
                return Err(Error::invalid(
                    "range",
                    format!("start {} is after end {}", range.start, range.end),
                ));
            }
        }
        if let Some(mtu) = self.mtu {
            if !(576..=65_000).contains(&mtu) {
                return Err(Error::invalid(
                    "mtu",
                    format!("{mtu} is outside 576..=65000"),
                ));
            }
        }
        if let Some(dev) = &self.underlay_device {
            if dev.is_empty() || dev.len() > 15 {
                return Err(Error::invalid(
                    "underlay",
                    format!("{dev:?} is not a link name"),
                ));
            }
        }
        Ok(())
    }

    /// True for an address inside the subnet that is neither its network nor broadcast address.
    pub fn is_host(&self, ip: Ipv4Addr) -> bool {
        self.subnet.contains(&ip) && ip != self.subnet.network() && ip != self.subnet.broadcast()
    }

    /// The gateway (the CNCI's address in the subnet).
    pub fn gateway(&self) -> Ipv4Addr {
        self.gateway
            .unwrap_or_else(|| Ipv4Addr::from(u32::from(self.subnet.network()) + 1))
    }

    /// The tunnel id in use: the override or the derived one.
    pub fn tunnel_id(&self) -> u32 {
        self.tunnel_id
            .unwrap_or_else(|| ids::derive_tunnel_id(self.tenant, self.subnet))
    }

    /// The node-local key of this tenant subnet.
    pub fn net_key(&self) -> String {
        ids::net_key(self.tenant, self.subnet)
    }
}

/// How a VNIC reaches its workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum VnicKind {
    /// A veth pair whose far end is created as `ifname` in the network namespace at `netns`.
    Veth { netns: PathBuf, ifname: String },
    /// A veth pair whose far end stays in the node's namespace as `ifname`, down and without an
    /// address: for a runtime that moves the interface into the workload itself (Docker's
    /// libnetwork does, at container start, after the plugin has answered).
    Handoff { ifname: String },
    /// A persistent tap named `name` (QEMU attaches to it); created if missing.
    Tap {
        name: String,
        #[serde(default)]
        uid: Option<u32>,
        #[serde(default)]
        gid: Option<u32>,
    },
}

impl VnicKind {
    pub(crate) fn tap_owner(&self) -> TapOwner {
        match self {
            VnicKind::Tap { uid, gid, .. } => TapOwner {
                uid: *uid,
                gid: *gid,
            },
            VnicKind::Veth { .. } | VnicKind::Handoff { .. } => TapOwner::default(),
        }
    }
}

/// Who a VNIC belongs to: a container id (or VM id) and its interface name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VnicId {
    pub owner: String,
    pub ifname: String,
}

impl VnicId {
    /// File-name-safe key; owners are validated to `[A-Za-z0-9_.-]`.
    pub fn key(&self) -> String {
        format!("{}:{}", self.owner, self.ifname)
    }

    /// Checks the owner and interface name.
    pub fn validate(&self) -> Result<()> {
        let ok_owner = !self.owner.is_empty()
            && self.owner.len() <= 256
            && self
                .owner
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !ok_owner {
            return Err(Error::invalid(
                "container id",
                format!(
                    "{:?} must be 1-256 characters of [A-Za-z0-9_.-]",
                    self.owner
                ),
            ));
        }
        validate_ifname("interface name", &self.ifname)
    }
}

/// Address blocks no tenant subnet may touch, and why.
pub const RESERVED_SUBNETS: [(&str, &str); 7] = [
    (
        "0.0.0.0/8",
        "\"this network\" (and 0.0.0.0/0, every address)",
    ),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved (class E and 255.255.255.255)"),
    (
        "100.64.0.0/10",
        "the CNCI uplink pool (shared address space)",
    ),
    ("255.255.255.255/32", "broadcast"),
];

/// The reserved block `subnet` overlaps, if any.
pub fn reserved_overlap(subnet: Ipv4Net) -> Option<(Ipv4Net, &'static str)> {
    RESERVED_SUBNETS.iter().find_map(|(text, why)| {
        let reserved: Ipv4Net = text.parse().ok()?;
        let overlaps = reserved.contains(&subnet.network()) || subnet.contains(&reserved.network());
        overlaps.then_some((reserved, *why))
    })
}

/// Why `ip` is not a unicast host address, if it is not.
pub fn not_unicast(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, ..] = ip.octets();
    if ip.is_unspecified() || a == 0 {
        Some("unspecified (0.0.0.0/8)")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_broadcast() {
        Some("broadcast")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if a >= 240 {
        Some("reserved (240.0.0.0/4)")
    } else {
        None
    }
}

/// Checks a workload MAC: unicast (group bit clear), not all-zero, not the bridge's own.
pub fn validate_mac(field: &str, mac: [u8; 6], bridge: [u8; 6]) -> Result<()> {
    let shown = crate::ids::format_mac(mac);
    let why = if mac == [0xff; 6] {
        "the broadcast address"
    } else if mac[0] & 1 == 1 {
        "a multicast (group) address"
    } else if mac == [0; 6] {
        "all zero"
    } else if mac == bridge {
        "the subnet bridge's own MAC"
    } else {
        return Ok(());
    };
    Err(Error::invalid(
        field,
        format!("{shown} is {why}; a workload needs a unicast MAC of its own"),
    ))
}

/// Checks a Linux interface name as the kernel would use it: 1-15 bytes, no '/', ':', '%'
/// (a name template) or whitespace, and not `.`, `..`, `all` or `default` (names of
/// `/proc/sys/net/*/conf/` entries).
pub fn validate_ifname(field: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && !matches!(name, "." | ".." | "all" | "default")
        && !name
            .chars()
            .any(|c| matches!(c, '/' | ':' | '%' | '\0') || c.is_whitespace());
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            format!(
                "{name:?} is not a valid interface name (1-15 bytes; no '/', ':', '%' or \
                 whitespace; not '.', '..', 'all' or 'default')"
            ),
        ))
    }
}

/// One attach request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VnicRequest {
    pub id: VnicId,
    pub kind: VnicKind,
    /// Caller-chosen address; otherwise allocated from the node range.
    pub ip: Option<Ipv4Addr>,
    /// Caller-chosen MAC; otherwise derived from the address.
    pub mac: Option<[u8; 6]>,
    /// Add a default route via the gateway in the workload (veth only).
    pub default_route: bool,
    /// Extra source addresses the workload may send from (VRRP-style virtual IPs): exact host
    /// addresses of the subnet, never its gateway. Anti-spoofing drops every other one.
    pub allowed: Vec<Ipv4Addr>,
    /// Security groups the workload joins (checked names, sorted); none: not filtered.
    pub security_groups: Vec<String>,
}

/// Where the node keeps its state, and who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    pub state_dir: PathBuf,
}

impl NodeConfig {
    /// The default state directory of a node.
    pub const DEFAULT_STATE_DIR: &'static str = "/var/lib/ciao-net";
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SubnetConfig {
        SubnetConfig::new(
            Uuid::from_u128(1),
            "172.16.1.0/24".parse().expect("subnet"),
            Cnci {
                uuid: Uuid::from_u128(2),
                ip: Ipv4Addr::new(10, 99, 0, 3),
            },
        )
    }

    fn set_cnci_ip(c: &mut SubnetConfig, ip: Ipv4Addr) {
        if let Some(cnci) = c.cnci.as_mut() {
            cnci.ip = ip;
        }
    }

    #[test]
    fn a_controlled_subnet_needs_no_cnci_and_takes_no_tunnel_id() {
        let mut c = config();
        c.cnci = None;
        c.validate().expect("controller mode is valid");
        c.tunnel_id = Some(7);
        match c.validate() {
            Err(Error::Invalid { field, .. }) => assert_eq!(field, "tunnel.id"),
            other => panic!("expected invalid, got {other:?}"),
        }
        let text =
            serde_json::to_string(&SubnetConfig::controlled(c.tenant, c.subnet)).expect("json");
        assert!(!text.contains("cnci"), "{text}");
        let back: SubnetConfig = serde_json::from_str(&text).expect("parse");
        assert_eq!(back.cnci, None);
    }

    #[test]
    fn defaults_are_valid() {
        let c = config();
        c.validate().expect("valid");
        assert_eq!(c.gateway(), Ipv4Addr::new(172, 16, 1, 1));
    }

    #[test]
    fn each_bad_value_names_its_field() {
        type Mutation = Box<dyn Fn(&mut SubnetConfig)>;
        let cases: Vec<(&str, Mutation)> = vec![
            (
                "subnet",
                Box::new(|c| c.subnet = "172.16.1.5/24".parse().expect("net")),
            ),
            (
                "subnet",
                Box::new(|c| c.subnet = "172.16.1.4/31".parse().expect("net")),
            ),
            ("tenant", Box::new(|c| c.tenant = Uuid::nil())),
            (
                "cnci.ip",
                Box::new(|c| set_cnci_ip(c, Ipv4Addr::UNSPECIFIED)),
            ),
            ("tunnel.id", Box::new(|c| c.tunnel_id = Some(1 << 24))),
            ("tunnel.id", Box::new(|c| c.tunnel_id = Some(0))),
            (
                "gateway",
                Box::new(|c| c.gateway = Some(Ipv4Addr::new(10, 0, 0, 1))),
            ),
            (
                "gateway",
                Box::new(|c| c.gateway = Some(Ipv4Addr::new(172, 16, 1, 255))),
            ),
            (
                "range.start",
                Box::new(|c| {
                    c.node_range = Some(AddrRange {
                        start: Ipv4Addr::new(172, 16, 2, 1),
                        end: Ipv4Addr::new(172, 16, 1, 9),
                    })
                }),
            ),
            (
                "range",
                Box::new(|c| {
                    c.node_range = Some(AddrRange {
                        start: Ipv4Addr::new(172, 16, 1, 9),
                        end: Ipv4Addr::new(172, 16, 1, 2),
                    })
                }),
            ),
            ("mtu", Box::new(|c| c.mtu = Some(100))),
            (
                "cnci.ip",
                Box::new(|c| set_cnci_ip(c, Ipv4Addr::new(127, 0, 0, 1))),
            ),
            (
                "cnci.ip",
                Box::new(|c| set_cnci_ip(c, Ipv4Addr::new(169, 254, 1, 1))),
            ),
            (
                "cnci.ip",
                Box::new(|c| set_cnci_ip(c, Ipv4Addr::new(224, 0, 0, 1))),
            ),
            ("cnci.ip", Box::new(|c| set_cnci_ip(c, Ipv4Addr::BROADCAST))),
        ];
        for subnet in [
            "0.0.0.0/0",
            "0.0.0.0/24",
            "127.0.0.0/8",
            "169.254.0.0/16",
            "224.0.0.0/24",
            "240.0.0.0/24",
            "100.64.0.0/10",
            "100.100.0.0/24",
            "64.0.0.0/2",
        ] {
            let mut c = config();
            c.subnet = subnet.parse().expect("net");
            c.gateway = None;
            match c.validate() {
                Err(Error::Invalid { field, .. }) => assert_eq!(field, "subnet", "{subnet}"),
                other => panic!("{subnet}: expected invalid, got {other:?}"),
            }
        }
        for (field, mutate) in cases {
            let mut c = config();
            mutate(&mut c);
            match c.validate() {
                Err(Error::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: expected invalid, got {other:?}"),
            }
        }
    }

    #[test]
    fn gre_keys_may_use_32_bits() {
        let mut c = config();
        c.tunnel_kind = TunnelKind::Gretap;
        c.tunnel_id = Some(u32::MAX);
        c.validate().expect("32-bit GRE key");
    }

    #[test]
    fn vnic_ids_are_checked() {
        let good = VnicId {
            owner: "abc-123_x.y".into(),
            ifname: "eth0".into(),
        };
        good.validate().expect("valid");
        for (owner, ifname) in [
            ("a/b", "eth0"),
            ("", "eth0"),
            ("a", ""),
            ("a", "0123456789abcdef"),
            ("a", "eth%d"),
            ("a", "all"),
            ("a", "default"),
            ("a", ".."),
            ("a", "a b"),
            ("a", "a\u{a0}b"),
        ] {
            let id = VnicId {
                owner: owner.into(),
                ifname: ifname.into(),
            };
            assert!(id.validate().is_err(), "{owner:?} {ifname:?}");
        }
    }
}
