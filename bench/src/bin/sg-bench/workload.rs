//! The synthetic tenant: groups with a realistic mix of rules, and ports in 1-3 groups each,
//! spread over the bridges. Deterministic (a hash of the index, no RNG), so every run and both
//! sizes load the same groups.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use anyhow::{ensure, Result};
use ipnet::IpNet;
use netcore::secgroups::{Direction, Group, Port, Protocol, Remote, Rule, TenantGroups};
use uuid::Uuid;

/// The port iperf3 listens on; every group allows it from its own members.
pub const IPERF_PORT: u16 = 5201;

/// The shape of the tenant.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub ports: usize,
    pub bridges: usize,
    pub groups: usize,
    pub rules: usize,
    /// Combinations of groups the ports draw from; 0: each port its own.
    pub combinations: usize,
}

impl Shape {
    pub fn check(&self) -> Result<()> {
        ensure!((1..=99).contains(&self.bridges), "--bridges: 1 to 99");
        ensure!(self.ports >= 1, "--ports and --small-ports: at least 1");
        ensure!((2..=100).contains(&self.groups), "--groups: 2 to 100");
        ensure!(self.rules >= 3, "--rules: at least 3");
        // A Linux bridge takes at most 1,023 ports; two are kept for the iperf3 workloads.
        ensure!(
            self.ports.div_ceil(self.bridges) <= 1000,
            "--ports: at most 1,000 per bridge"
        );
        Ok(())
    }
}

pub fn group_name(k: usize) -> String {
    format!("g{k:02}")
}

pub fn bridge_name(b: usize) -> String {
    format!("sgbr{b}")
}

/// Port `i`: on bridge `i % bridges`, address 10.<bridge+1>.x.y.
pub fn port_ip(i: usize, bridges: usize) -> Ipv4Addr {
    let (b, n) = (i % bridges, i / bridges);
    Ipv4Addr::new(10, (b + 1) as u8, (n / 250) as u8, (n % 250 + 2) as u8)
}

/// splitmix64: a well-mixed hash of the index.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The groups of port `i`: `g(i % groups)` and 0-2 more, never `g00` (so `g00`, the group
/// the changes touch, has exactly one port in `groups`).
fn port_groups(i: usize, groups: usize) -> Vec<String> {
    let h = mix(i as u64);
    let mut ks = vec![i % groups];
    for extra in 0..(h % 3) {
        let k = 1 + (mix(h ^ extra) % (groups as u64 - 1)) as usize;
        if !ks.contains(&k) {
            ks.push(k);
        }
    }
    let mut names: Vec<String> = ks.into_iter().map(group_name).collect();
    names.sort();
    names
}

pub fn ports(tenant: Uuid, s: &Shape) -> Vec<Port> {
    (0..s.ports)
        .map(|i| Port {
            tenant,
            bridge: bridge_name(i % s.bridges),
            ifname: format!("sp{i}"),
            ip: port_ip(i, s.bridges),
            groups: port_groups(
                match s.combinations {
                    0 => i,
                    n => i % n,
                },
                s.groups,
            ),
            zone: (i % s.bridges + 1) as u16,
        })
        .collect()
}

fn cidr(j: usize) -> IpNet {
    IpNet::V4(
        ipnet::Ipv4Net::new(Ipv4Addr::new(10, 200 + (j % 50) as u8, 0, 0), 16).unwrap_or_default(),
    )
}

/// Rule `j` of group `k`: tcp/udp single ports and ranges, icmp echo, from anywhere, from a
/// CIDR or from a group; a tenth egress. The last two: tcp/5201 from the group's own members
/// and any egress (Neutron's default group has both kinds).
fn rule(k: usize, j: usize, s: &Shape) -> Rule {
    let port = 1024 + ((k * s.rules + j) % 60_000) as u16;
    let remote_group = Remote::Group(group_name((k * 7 + j) % s.groups));
    let (direction, protocol, ports, icmp, remote) = if j == s.rules - 1 {
        (
            Direction::Egress,
            Protocol::Any,
            None,
            None,
            Remote::Anywhere,
        )
    } else if j == s.rules - 2 {
        let me = Remote::Group(group_name(k));
        let p = Some((IPERF_PORT, IPERF_PORT));
        (Direction::Ingress, Protocol::Tcp, p, None, me)
    } else {
        use Direction::{Egress as E, Ingress as I};
        match j % 10 {
            0 => (I, Protocol::Tcp, Some((port, port)), None, Remote::Anywhere),
            1 => (
                I,
                Protocol::Tcp,
                Some((port, port + 9)),
                None,
                Remote::Cidr(cidr(j)),
            ),
            2 => (I, Protocol::Udp, Some((port, port)), None, Remote::Anywhere),
            3 => (
                I,
                Protocol::Udp,
                Some((port, port + 99)),
                None,
                Remote::Cidr(cidr(j)),
            ),
            4 => (
                I,
                Protocol::Icmp,
                None,
                Some((8, None)),
                Remote::Cidr(cidr(j)),
            ),
            5 => (I, Protocol::Tcp, Some((port, port)), None, remote_group),
            6 => (I, Protocol::Any, None, None, remote_group),
            7 => (
                E,
                Protocol::Tcp,
                Some((port, port)),
                None,
                Remote::Cidr(cidr(j)),
            ),
            8 => (
                E,
                Protocol::Udp,
                Some((53, 53)),
                None,
                Remote::Cidr(cidr(j)),
            ),
            _ => (
                I,
                Protocol::Tcp,
                Some((port, port + 999)),
                None,
                Remote::Anywhere,
            ),
        }
    };
    Rule {
        direction,
        ipv6: false,
        protocol,
        ports,
        icmp,
        remote,
    }
}

/// The controller's snapshot for `ports`: every group with its rules and members.
pub fn snapshot(tenant: Uuid, s: &Shape, ports: &[Port]) -> TenantGroups {
    let groups = (0..s.groups)
        .map(|k| Group {
            name: group_name(k),
            uuid: Some(Uuid::from_u64_pair(k as u64 + 1, 0x5e6b)),
            rules: (0..s.rules).map(|j| rule(k, j, s)).collect(),
            members: Vec::new(),
        })
        .collect();
    let mut snap = TenantGroups {
        tenant,
        generation: 1,
        groups,
    };
    set_members(&mut snap, ports);
    snap
}

/// Each group's members: the addresses of the ports in it.
pub fn set_members(snap: &mut TenantGroups, ports: &[Port]) {
    let mut by: BTreeMap<&str, Vec<Ipv4Addr>> = BTreeMap::new();
    for p in ports {
        for g in &p.groups {
            by.entry(g).or_default().push(p.ip);
        }
    }
    for g in &mut snap.groups {
        g.members = by.remove(g.name.as_str()).unwrap_or_default();
    }
}

/// How many ports use `group`, and how many rules name it as remote group.
pub fn usage(snap: &TenantGroups, ports: &[Port], group: &str) -> (usize, usize) {
    let used = ports
        .iter()
        .filter(|p| p.groups.iter().any(|g| g == group))
        .count();
    let named = snap
        .groups
        .iter()
        .flat_map(|g| &g.rules)
        .filter(|r| matches!(&r.remote, Remote::Group(n) if n == group))
        .count();
    (used, named)
}

/// The extra rule of change `i` (added, then removed again): a tcp port no other rule uses.
pub fn extra_rule(i: usize) -> Rule {
    let port = 61_000 + i as u16 % 4_000;
    Rule {
        direction: Direction::Ingress,
        ipv6: false,
        protocol: Protocol::Tcp,
        ports: Some((port, port)),
        icmp: None,
        remote: Remote::Cidr(IpNet::V4(
            ipnet::Ipv4Net::new(Ipv4Addr::new(192, 0, 2, 0), 24).unwrap_or_default(),
        )),
    }
}

/// The member of change `i`: a workload elsewhere in the cluster (10.250.x.y) joining.
pub fn extra_member(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 250, (i / 250) as u8, (i % 250 + 1) as u8)
}
