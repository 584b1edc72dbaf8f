//! What a CNCI accepts from the control plane (issue 10, items 3, 8 and 9): pure checks of
//! flood targets, tenant subnets and public IP mappings against the network node's own
//! addresses and ranges ([`Fences`]). Each check returns the reason of a refusal, which the
//! handlers log and, for public IP commands, send back in the ERROR frame.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// Shortest tenant subnet prefix accepted: a /8 is already 16 M addresses on one bridge.
pub const MIN_SUBNET_PREFIX: u8 = 8;
/// Longest tenant subnet prefix accepted: a /30 still has a gateway and one workload.
pub const MAX_SUBNET_PREFIX: u8 = 30;

/// The uplinks' transfer networks (RFC 6598 shared address space).
pub const UPLINK_POOL: Ipv4Net = net(Ipv4Addr::new(100, 64, 0, 0), 10);

const fn net(addr: Ipv4Addr, len: u8) -> Ipv4Net {
    Ipv4Net::new_assert(addr, len)
}

/// Ranges that are never a tenant subnet, a tunnel end or a public IP, with their names.
pub const RESERVED: [(Ipv4Net, &str); 6] = [
    (
        net(Ipv4Addr::new(0, 0, 0, 0), 8),
        "\"this network\" (0.0.0.0/8)",
    ),
    (
        net(Ipv4Addr::new(127, 0, 0, 0), 8),
        "loopback (127.0.0.0/8)",
    ),
    (
        net(Ipv4Addr::new(169, 254, 0, 0), 16),
        "link-local (169.254.0.0/16)",
    ),
    (
        net(Ipv4Addr::new(224, 0, 0, 0), 4),
        "multicast (224.0.0.0/4)",
    ),
    (
        net(Ipv4Addr::new(240, 0, 0, 0), 4),
        "reserved or broadcast (240.0.0.0/4)",
    ),
    (UPLINK_POOL, "the uplink pool (100.64.0.0/10)"),
];

/// The network node's addresses and ranges a tenant must never claim.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fences {
    /// Every IPv4 address configured in the network node's namespace.
    pub own_addrs: BTreeSet<Ipv4Addr>,
    /// Networks of the underlay interface's addresses.
    pub underlay_nets: Vec<Ipv4Net>,
    /// Networks of the external device's addresses.
    pub external_nets: Vec<Ipv4Net>,
    /// `--public-range` values: where public IPs may come from.
    pub public_ranges: Vec<Ipv4Net>,
    /// Gateways reached through the external device (never a public IP).
    pub external_peers: BTreeSet<Ipv4Addr>,
}

fn reserved(ip: Ipv4Addr) -> Option<&'static str> {
    RESERVED
        .iter()
        .find(|(n, _)| n.contains(&ip))
        .map(|(_, name)| *name)
}

impl Fences {
    /// Ranges a tenant subnet or a tunnel end must stay out of, with what they are.
    fn node_ranges(&self) -> impl Iterator<Item = (Ipv4Net, &'static str)> + '_ {
        let external = self
            .external_nets
            .iter()
            .map(|n| (*n, "an external network"));
        let public = self.public_ranges.iter().map(|n| (*n, "a public range"));
        let underlay = self
            .underlay_nets
            .iter()
            .map(|n| (*n, "an underlay network"));
        external.chain(public).chain(underlay)
    }
}

/// A compute node's tunnel end (`agent_ip`) the hub may flood to: a unicast address that is
/// neither special nor the network node's own nor in its external, public or uplink ranges.
pub fn flood_target(ip: Ipv4Addr, fences: &Fences) -> Result<(), String> {
    if let Some(name) = reserved(ip) {
        return Err(format!("agent_ip {ip} is in {name}"));
    }
    if fences.own_addrs.contains(&ip) {
        return Err(format!("agent_ip {ip} is an address of this network node"));
    }
    for n in &fences.underlay_nets {
        if n.prefix_len() < 31 && (ip == n.broadcast() || ip == n.network()) {
            return Err(format!(
                "agent_ip {ip} is the network or broadcast address of the underlay {n}"
            ));
        }
    }
    for n in fences.external_nets.iter().chain(&fences.public_ranges) {
        if n.contains(&ip) {
            return Err(format!(
                "agent_ip {ip} is in the network node's external or public range {n}"
            ));
        }
    }
    Ok(())
}

/// A tenant subnet this CNCI may carry: a prefix of /8 to /30, clear of reserved ranges and
/// the node's own networks, and not overlapping another subnet of the tenant (`existing`).
pub fn tenant_subnet(
    subnet: Ipv4Net,
    fences: &Fences,
    existing: impl IntoIterator<Item = Ipv4Net>,
) -> Result<(), String> {
    let len = subnet.prefix_len();
    if !(MIN_SUBNET_PREFIX..=MAX_SUBNET_PREFIX).contains(&len) {
        return Err(format!(
            "tenant_subnet {subnet}: prefix /{len} is outside /{MIN_SUBNET_PREFIX}../{MAX_SUBNET_PREFIX}"
        ));
    }
    let reserved = RESERVED.iter().map(|(n, name)| (*n, *name));
    for (n, name) in reserved.chain(fences.node_ranges()) {
        if overlaps(subnet, n) {
            return Err(format!("tenant_subnet {subnet} overlaps {name} {n}"));
        }
    }
    for other in existing {
        if other != subnet && overlaps(subnet, other) {
            return Err(format!(
                "tenant_subnet {subnet} overlaps the tenant's subnet {other}"
            ));
        }
    }
    Ok(())
}

/// Whether two networks share an address.
pub fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// A public IP to map: inside a configured public range, not its network or broadcast
/// address, not the node's own, its gateway's or a compute node's (`cn_addrs`) address.
/// Whether it is mapped already is the caller's check.
pub fn public_ip(
    ip: Ipv4Addr,
    fences: &Fences,
    cn_addrs: &BTreeSet<Ipv4Addr>,
) -> Result<(), String> {
    if fences.public_ranges.is_empty() {
        return Err(
            "no public range is configured on this CNCI (--public-range): public IPs are refused"
                .into(),
        );
    }
    let Some(range) = fences.public_ranges.iter().find(|r| r.contains(&ip)) else {
        let ranges: Vec<String> = fences.public_ranges.iter().map(|r| r.to_string()).collect();
        return Err(format!(
            "public_ip {ip} is outside the public range(s) {}",
            ranges.join(", ")
        ));
    };
    if range.prefix_len() < 31 && (ip == range.network() || ip == range.broadcast()) {
        return Err(format!(
            "public_ip {ip} is the network or broadcast address of {range}"
        ));
    }
    if let Some(name) = reserved(ip) {
        return Err(format!("public_ip {ip} is in {name}"));
    }
    if fences.own_addrs.contains(&ip) {
        return Err(format!("public_ip {ip} is an address of this network node"));
    }
    if fences.external_peers.contains(&ip) {
        return Err(format!(
            "public_ip {ip} is the network node's external gateway"
        ));
    }
    if cn_addrs.contains(&ip) {
        return Err(format!(
            "public_ip {ip} is a compute node's underlay address"
        ));
    }
    Ok(())
}

/// A workload address behind a public IP: a host of one of the tenant's `subnets`, neither its
/// network, broadcast nor gateway (first host) address.
pub fn private_ip(ip: Ipv4Addr, subnets: impl IntoIterator<Item = Ipv4Net>) -> Result<(), String> {
    let Some(subnet) = subnets.into_iter().find(|s| s.contains(&ip)) else {
        return Err(format!(
            "private_ip {ip} is in none of the tenant's registered subnets"
        ));
    };
    if ip == subnet.network() || ip == subnet.broadcast() {
        return Err(format!(
            "private_ip {ip} is the network or broadcast address of {subnet}"
        ));
    }
    if ip == crate::state::gateway_of(subnet) {
        return Err(format!("private_ip {ip} is the gateway of {subnet}"));
    }
    Ok(())
}

/// A `--public-range` itself: clear of reserved ranges and of the underlay.
pub fn public_range(range: Ipv4Net, fences: &Fences) -> Result<(), String> {
    for (n, name) in RESERVED.iter() {
        if overlaps(range, *n) {
            return Err(format!("public range {range} overlaps {name}"));
        }
    }
    for n in &fences.underlay_nets {
        if overlaps(range, *n) {
            return Err(format!("public range {range} overlaps the underlay {n}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
