//! Snapshot + ports → the table's content, as plain values (no kernel): what [`super::diff`]
//! turns into one nft transaction.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::{IpNet, Ipv4Net};
use uuid::Uuid;

use super::rule::{Addr, Build, Line, ICMP, TCP, UDP};
use super::{Direction, Group, Port, Protocol, Remote, Rule, TenantGroups};
use crate::nft::expr::Verdict;

/// What the table holds besides its fixed base chains and maps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Model {
    /// Member sets (`ipv4_addr`), one per group of a tenant with ports here.
    pub sets: BTreeMap<String, BTreeSet<Ipv4Addr>>,
    /// Remote CIDRs of the rules, one interval set each, named after the CIDR: every rule
    /// naming the same CIDR shares it, and its content never changes.
    pub cidrs: BTreeMap<String, Ipv4Net>,
    /// Regular chains: each group's ingress and egress rules, and the dispatch of each
    /// combination of groups the ports use.
    pub chains: BTreeMap<String, Vec<Line>>,
    /// `bridge . address` → the chain traffic to that port jumps to.
    pub ingress: BTreeMap<(String, Ipv4Addr), String>,
    /// `bridge . address` → the chain traffic from that port jumps to.
    pub egress: BTreeMap<(String, Ipv4Addr), String>,
    /// Bridge → its conntrack zone (allocated free on the node when the subnet came): two
    /// tenants' equal addresses never share a flow.
    pub zones: BTreeMap<String, u16>,
}

/// Where a bridge's conntrack zone search starts: 1-65535 from its name (FNV-1a), so zones
/// spread and a subnet re-created here tends to get its old zone back; also the zone of
/// records from before zones were allocated.
pub fn zone_of(bridge: &str) -> u16 {
    let hash = bridge.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    // In 1..=65535: zone 0 is every other packet's.
    u16::try_from(hash % 65535 + 1).unwrap_or(1)
}

/// A zone for a new subnet's bridge that none of `nets` uses: from [`zone_of`] upward,
/// wrapping within 1-65535. Two bridges sharing a zone would share conntrack entries, so one
/// tenant's established flow could let in another's packets with the same addresses. Only a
/// node with 65,535 subnets finds none free; it gets the name's zone.
pub fn free_zone(nets: &[crate::state::NetRecord], bridge: &str) -> u16 {
    let used: BTreeSet<u16> = nets.iter().map(crate::state::NetRecord::ct_zone).collect();
    let start = u32::from(zone_of(bridge));
    (0..65535u32)
        .map(|i| (start - 1 + i) % 65535 + 1)
        .filter_map(|z| u16::try_from(z).ok())
        .find(|z| !used.contains(z))
        .unwrap_or_else(|| zone_of(bridge))
}

/// The key naming a group's set and chains: its id, or the tenant and name of a group the
/// controller does not know.
fn group_key(tenant: Uuid, group: Option<&Group>, name: &str) -> String {
    match group.and_then(|g| g.uuid) {
        Some(uuid) => uuid.simple().to_string(),
        None => format!("{}_{name}", tenant.simple()),
    }
}

pub(crate) fn set_name(key: &str) -> String {
    format!("m_{key}")
}

/// The interval set of a remote CIDR: `c_0a000000_8` for 10.0.0.0/8.
pub(crate) fn cidr_set_name(net: &Ipv4Net) -> String {
    format!("c_{:08x}_{}", u32::from(net.network()), net.prefix_len())
}

fn chain_name(direction: Direction, key: &str) -> String {
    match direction {
        Direction::Ingress => format!("gi_{key}"),
        Direction::Egress => format!("ge_{key}"),
    }
}

/// Compiles every tenant's ports with that tenant's snapshot. A port whose tenant has no
/// snapshot yet drops new ingress (fail closed) and keeps its egress until one arrives; a
/// group a port names that the snapshot lacks allows nothing.
pub fn compile(ports: &BTreeMap<Uuid, Vec<Port>>, snaps: &BTreeMap<Uuid, TenantGroups>) -> Model {
    let mut m = Model::default();
    for (tenant, ports) in ports {
        match snaps.get(tenant) {
            Some(snap) => tenant_model(&mut m, *tenant, ports, snap),
            None => {
                for p in ports {
                    port_chains(&mut m, p, None, &[]);
                }
            }
        }
    }
    m
}

/// One tenant's member sets: every group of the snapshot and every name its ports use or its
/// rules reference (an unknown name: an empty set).
pub(super) fn tenant_sets(
    tenant: Uuid,
    ports: &[Port],
    snap: &TenantGroups,
) -> BTreeMap<String, BTreeSet<Ipv4Addr>> {
    let by_name: BTreeMap<&str, &Group> =
        snap.groups.iter().map(|g| (g.name.as_str(), g)).collect();
    let mut names: BTreeSet<&str> = by_name.keys().copied().collect();
    for p in ports {
        names.extend(p.groups.iter().map(String::as_str));
    }
    for g in &snap.groups {
        for r in &g.rules {
            if let Remote::Group(name) = &r.remote {
                names.insert(name);
            }
        }
    }
    names
        .into_iter()
        .map(|name| {
            let group = by_name.get(name).copied();
            let members = group
                .map(|g| g.members.iter().copied().collect())
                .unwrap_or_default();
            (set_name(&group_key(tenant, group, name)), members)
        })
        .collect()
}

fn tenant_model(m: &mut Model, tenant: Uuid, ports: &[Port], snap: &TenantGroups) {
    let by_name: BTreeMap<&str, &Group> =
        snap.groups.iter().map(|g| (g.name.as_str(), g)).collect();
    let key = |name: &str| group_key(tenant, by_name.get(name).copied(), name);
    m.sets.extend(tenant_sets(tenant, ports, snap));
    group_chains(&mut m.chains, &mut m.cidrs, tenant, ports, snap);
    for p in ports {
        let keys: Vec<String> = p.groups.iter().map(|g| key(g)).collect();
        port_chains(m, p, Some(snap), &keys);
    }
}

/// The group chains of every tenant with ports and a snapshot, and the CIDR sets they name:
/// what a rule change alone changes (with the member sets), without the dispatch chains.
pub(super) fn group_rules(
    ports: &BTreeMap<Uuid, Vec<Port>>,
    snaps: &BTreeMap<Uuid, TenantGroups>,
) -> (BTreeMap<String, Vec<Line>>, BTreeMap<String, Ipv4Net>) {
    let (mut chains, mut cidrs) = Default::default();
    for (tenant, ports) in ports {
        if let Some(snap) = snaps.get(tenant) {
            group_chains(&mut chains, &mut cidrs, *tenant, ports, snap);
        }
    }
    (chains, cidrs)
}

/// The chains of the groups a tenant's ports use.
fn group_chains(
    chains: &mut BTreeMap<String, Vec<Line>>,
    cidrs: &mut BTreeMap<String, Ipv4Net>,
    tenant: Uuid,
    ports: &[Port],
    snap: &TenantGroups,
) {
    let by_name: BTreeMap<&str, &Group> =
        snap.groups.iter().map(|g| (g.name.as_str(), g)).collect();
    let key = |name: &str| group_key(tenant, by_name.get(name).copied(), name);
    let used: BTreeSet<&str> = ports
        .iter()
        .flat_map(|p| p.groups.iter().map(String::as_str))
        .collect();
    for name in used {
        let rules = by_name
            .get(name)
            .map(|g| g.rules.as_slice())
            .unwrap_or_default();
        for direction in [Direction::Ingress, Direction::Egress] {
            let body = rules
                .iter()
                .filter(|r| r.direction == direction)
                .filter_map(|r| rule_line(r, &key, cidrs))
                .collect();
            chains.insert(chain_name(direction, &key(name)), body);
        }
    }
}

/// The dispatch chains of ports in the same groups (the same group keys, or no snapshot yet):
/// `di_`/`de_` and a name-based UUID of the keys, so every such port's map entries jump to one
/// pair. The kernel validates each chain reachable from the maps once per commit, so a rule
/// change costs the same at 10 ports or 10,000 (a chain per port made it grow with the ports).
pub(crate) fn dispatch_names(keys: Option<&[String]>) -> (String, String) {
    let id = match keys {
        Some(keys) => Uuid::new_v5(&Uuid::NAMESPACE_OID, keys.join(",").as_bytes())
            .simple()
            .to_string(),
        None => "wait".to_string(),
    };
    (format!("di_{id}"), format!("de_{id}"))
}

/// The port's map entries and its groups' dispatch chains (made once for all ports sharing
/// them); `snap` `None`: not known yet.
fn port_chains(m: &mut Model, p: &Port, snap: Option<&TenantGroups>, keys: &[String]) {
    let (pi, pe) = dispatch_names(snap.map(|_| keys));
    m.ingress.insert((p.bridge.clone(), p.ip), pi.clone());
    m.egress.insert((p.bridge.clone(), p.ip), pe.clone());
    m.zones.insert(p.bridge.clone(), p.zone);
    if m.chains.contains_key(&pi) {
        return;
    }
    let invalid = || Build::new().ct_invalid().verdict(Verdict::Drop);
    let mut egress = vec![invalid()];
    // DHCP answers reach a VM whatever its groups, as in Neutron: only the CNCI can send them
    // (anti-spoofing drops a workload's DHCP server traffic).
    let mut ingress = vec![
        invalid(),
        Build::new().dhcp_answer().verdict(Verdict::Accept),
    ];
    let jump = |d, k| Build::new().verdict(Verdict::Jump(chain_name(d, k)));
    if snap.is_some() {
        ingress.extend(keys.iter().map(|k| jump(Direction::Ingress, k)));
        egress.extend(keys.iter().map(|k| jump(Direction::Egress, k)));
        egress.push(Build::new().verdict(Verdict::Drop));
    } else {
        egress.push(Build::new().verdict(Verdict::Accept));
    }
    ingress.push(Build::new().verdict(Verdict::Drop));
    m.chains.insert(pi, ingress);
    m.chains.insert(pe, egress);
}

/// One IPv4 rule ending in `accept`; `None` for what IPv4 dispatch never sees (IPv6 rules) or
/// cannot express (an IPv6 CIDR in an IPv4 rule). A remote CIDR is looked up in its interval
/// set, added to `cidrs`.
fn rule_line(
    r: &Rule,
    key: &dyn Fn(&str) -> String,
    cidrs: &mut BTreeMap<String, Ipv4Net>,
) -> Option<Line> {
    if r.ipv6 {
        return None;
    }
    let addr = match r.direction {
        Direction::Ingress => Addr::Saddr,
        Direction::Egress => Addr::Daddr,
    };
    let mut b = Build::new();
    match &r.remote {
        Remote::Anywhere => {}
        Remote::Cidr(IpNet::V4(net)) => {
            let net = net.trunc();
            let name = cidr_set_name(&net);
            b = b.ip_in(addr, &name);
            cidrs.insert(name, net);
        }
        Remote::Cidr(IpNet::V6(_)) => return None,
        Remote::Group(name) => b = b.ip_in(addr, &set_name(&key(name))),
    }
    b = match (r.protocol, r.ports, r.icmp) {
        (Protocol::Tcp, Some((lo, hi)), _) => b.dport(TCP, lo, hi),
        (Protocol::Udp, Some((lo, hi)), _) => b.dport(UDP, lo, hi),
        (Protocol::Tcp, None, _) => b.l4proto("tcp", TCP),
        (Protocol::Udp, None, _) => b.l4proto("udp", UDP),
        (Protocol::Icmp, _, Some((t, code))) => b.icmp(t, code),
        (Protocol::Icmp, _, None) => b.l4proto("icmp", ICMP),
        (Protocol::Icmpv6, _, _) => return None,
        (Protocol::Number(n), _, _) => b.l4proto(&n.to_string(), n),
        (Protocol::Any, _, _) => b,
    };
    Some(b.verdict(Verdict::Accept))
}
