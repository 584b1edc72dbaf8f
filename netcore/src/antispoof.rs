//! Anti-spoofing on workload ports: a workload sends only from its own MAC and addresses.
//!
//! One bridge-family table per namespace, [`TABLE`], loaded once (in one batch; a concurrent
//! creator loses with EEXIST and uses the winner's) and never changed after: the per-port state
//! lives in four sets keyed by the port's name, so attaching or detaching a port changes set
//! elements only, in one transaction, without spawning `nft`.
//!
//! - `ports {ifname}`: guarded ports; the prerouting chain sends their frames to `guard`.
//! - `macs {ifname . ether_addr}`: the source MAC of each port (also the ARP sender MAC).
//! - `addrs4 {ifname . ipv4_addr}`: its IPv4 address and explicitly allowed extra ones.
//! - `addrs6 {ifname . ipv6_addr}`: its MAC-derived (EUI-64) link-local address.
//! - `closed6 {ifname}`: ports filtered by security groups, which are enforced for IPv4 only:
//!   their IPv6 is closed both ways except neighbour discovery and MLD, so a group's rules
//!   cannot be bypassed over link-local IPv6 (fail closed until IPv6 rules are enforced).
//!
//! Enforced: source MAC; ARP of Ethernet/IPv4 only, sender MAC and IP the port's (0.0.0.0 for
//! probes); IPv4 source the port's, except a DHCP client's 0.0.0.0:68 -> :67 before its lease,
//! and never DHCP server traffic (sport 67); IPv6 source the link-local or :: (DAD), no router
//! advertisements, redirects or DHCPv6 server traffic, neighbour advertisements only for the
//! port's own address; every other ethertype (VLAN tags included) dropped. The ports are
//! matched by `iifname` (this kernel lacks `meta ibrname`), so names are only ever those of our
//! own ports. Inspect with `nft list table bridge ciao_guard_v1`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};
use crate::nft::expr::{eq, lookup, meta, neq, payload, Base, Expr, MetaKey, Reg, Verdict};
use crate::nft::objects::{self, BaseChain, Hook, Key, KeyType, Msg, Set};
use crate::nft::{dump, Family, Socket};

/// The guard table. The version suffix changes whenever the rules do: a node then builds the
/// new table beside the old one, and reconcile removes the old one.
pub const TABLE: &str = "ciao_guard_v2";
const TABLE_PREFIX: &str = "ciao_guard_";
const FAMILY: Family = Family::Bridge;
const PORTS: &str = "ports";
const MACS: &str = "macs";
const ADDRS4: &str = "addrs4";
const ADDRS6: &str = "addrs6";
const CLOSED6: &str = "closed6";
/// ICMPv6 a port with closed IPv6 still sends and receives: MLD (130-132, 143) and neighbour
/// discovery (133-136), without which its IPv4 neighbours would not notice anything amiss but
/// the kernel's own address configuration would stall.
const OPEN_ICMP6: [u8; 8] = [130, 131, 132, 133, 134, 135, 136, 143];
/// Before br_netfilter (priority 0) and everything else at the bridge's prerouting hook.
const PRIORITY: i32 = -200;

/// What one port may send from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortGuard {
    /// The bridge port (host end of a veth, or a tap).
    pub port: String,
    /// The workload's MAC (a VM's own for a tap).
    pub mac: [u8; 6],
    /// The workload's address and any explicitly allowed extra ones; sorted, no duplicates.
    pub ipv4: Vec<Ipv4Addr>,
    /// The port is filtered by security groups: its IPv6 is closed (see `closed6` above).
    pub closed_v6: bool,
}

impl PortGuard {
    pub fn new(port: &str, mac: [u8; 6], ipv4: impl IntoIterator<Item = Ipv4Addr>) -> Self {
        let ipv4: BTreeSet<Ipv4Addr> = ipv4.into_iter().collect();
        Self {
            port: port.to_string(),
            mac,
            ipv4: ipv4.into_iter().collect(),
            closed_v6: false,
        }
    }

    /// The same guard with the port's IPv6 closed (or open).
    pub fn with_closed_v6(mut self, closed: bool) -> Self {
        self.closed_v6 = closed;
        self
    }
}

/// The EUI-64 link-local address a kernel derives from `mac` (fe80::/64, U/L bit flipped).
pub fn link_local(mac: [u8; 6]) -> Ipv6Addr {
    let m = mac;
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        m[0] ^ 2,
        m[1],
        m[2],
        0xff,
        0xfe,
        m[3],
        m[4],
        m[5],
    ])
}

fn set(name: &str, key: Vec<KeyType>, id: u32) -> Set {
    Set {
        name: name.into(),
        key,
        flags: 0,
        id,
    }
}

fn rule(chain: &str, exprs: Vec<Expr>) -> Msg {
    objects::new_rule(FAMILY, TABLE, chain, &exprs)
}

fn drop_() -> Expr {
    Expr::Verdict(Verdict::Drop)
}

fn accept() -> Expr {
    Expr::Verdict(Verdict::Accept)
}

fn iifname() -> Expr {
    meta(MetaKey::IifName, Reg::R1)
}

/// `meta l4proto <proto>`.
fn l4proto(proto: u8) -> [Expr; 2] {
    [meta(MetaKey::L4Proto, Reg::R1), eq(&[proto])]
}

/// The whole table, in one batch; the table message is exclusive (EEXIST if it exists).
pub fn ruleset() -> Vec<Msg> {
    let mut m = vec![objects::new_table(FAMILY, TABLE, true)];
    let if_ = KeyType::IfName;
    for s in [
        set(PORTS, vec![if_], 1),
        set(MACS, vec![if_, KeyType::EtherAddr], 2),
        set(ADDRS4, vec![if_, KeyType::Ipv4Addr], 3),
        set(ADDRS6, vec![if_, KeyType::Ipv6Addr], 4),
        set(CLOSED6, vec![if_], 5),
    ] {
        m.push(objects::new_set(FAMILY, TABLE, &s));
    }
    let base = BaseChain {
        hook: Hook::Prerouting,
        priority: PRIORITY,
        kind: "filter",
        accept: true,
    };
    m.push(objects::new_chain(FAMILY, TABLE, "pre", Some(&base)));
    let post = BaseChain {
        hook: Hook::Postrouting,
        ..base
    };
    m.push(objects::new_chain(FAMILY, TABLE, "post", Some(&post)));
    for chain in ["guard", "guard_arp", "guard_ip4", "guard_ip6", CLOSED6] {
        m.push(objects::new_chain(FAMILY, TABLE, chain, None));
    }
    let jump = |c: &str| Expr::Verdict(Verdict::Jump(c.into()));
    m.push(rule(
        "pre",
        vec![iifname(), lookup(PORTS, false), jump("guard")],
    ));

    // guard: the source MAC, then by ethertype.
    let ether_type = || payload(Base::Link, 12, 2, Reg::R1);
    m.push(rule(
        "post",
        vec![
            meta(MetaKey::OifName, Reg::R1),
            lookup(CLOSED6, false),
            ether_type(),
            eq(&[0x86, 0xdd]),
            jump(CLOSED6),
        ],
    ));
    m.push(rule(
        "guard",
        vec![
            iifname(),
            payload(Base::Link, 6, 6, Reg::R2),
            lookup(MACS, true),
            drop_(),
        ],
    ));
    for (ty, chain) in [
        ([0x08, 0x06], "guard_arp"),
        ([0x08, 0x00], "guard_ip4"),
        ([0x86, 0xdd], "guard_ip6"),
    ] {
        m.push(rule("guard", vec![ether_type(), eq(&ty), jump(chain)]));
    }
    m.push(rule("guard", vec![drop_()]));

    // ARP: Ethernet/IPv4 only; sender MAC the port's; sender IP the port's or 0.0.0.0.
    let nh = |off, len, reg| payload(Base::Network, off, len, reg);
    m.push(rule(
        "guard_arp",
        vec![nh(0, 6, Reg::R1), neq(&[0, 1, 8, 0, 6, 4]), drop_()],
    ));
    m.push(rule(
        "guard_arp",
        vec![iifname(), nh(8, 6, Reg::R2), lookup(MACS, true), drop_()],
    ));
    m.push(rule(
        "guard_arp",
        vec![nh(14, 4, Reg::R1), eq(&[0; 4]), accept()],
    ));
    m.push(rule(
        "guard_arp",
        vec![
            iifname(),
            nh(14, 4, Reg::R2),
            lookup(ADDRS4, false),
            accept(),
        ],
    ));
    m.push(rule("guard_arp", vec![drop_()]));

    // IPv4: no DHCP server; a DHCP client before its lease; else the port's addresses.
    let th = |off, len| payload(Base::Transport, off, len, Reg::R1);
    let [p, u] = l4proto(17);
    m.push(rule(
        "guard_ip4",
        vec![p, u, th(0, 2), eq(&[0, 67]), drop_()],
    ));
    let [p, u] = l4proto(17);
    m.push(rule(
        "guard_ip4",
        vec![
            nh(12, 4, Reg::R1),
            eq(&[0; 4]),
            p,
            u,
            th(0, 4),
            eq(&[0, 68, 0, 67]),
            accept(),
        ],
    ));
    m.push(rule(
        "guard_ip4",
        vec![
            iifname(),
            nh(12, 4, Reg::R2),
            lookup(ADDRS4, false),
            accept(),
        ],
    ));
    m.push(rule("guard_ip4", vec![drop_()]));

    // IPv6: no RA, redirect or DHCPv6 server; NA only for the port's own address.
    for icmp_type in [134u8, 137] {
        let [p, u] = l4proto(58);
        m.push(rule(
            "guard_ip6",
            vec![p, u, th(0, 1), eq(&[icmp_type]), drop_()],
        ));
    }
    let [p, u] = l4proto(17);
    m.push(rule(
        "guard_ip6",
        vec![p, u, th(0, 2), eq(&[2, 35]), drop_()],
    ));
    let [p, u] = l4proto(58);
    m.push(rule(
        "guard_ip6",
        vec![
            p,
            u,
            th(0, 1),
            eq(&[136]),
            iifname(),
            payload(Base::Transport, 8, 16, Reg::R2),
            lookup(ADDRS6, true),
            drop_(),
        ],
    ));
    m.push(rule(
        "guard_ip6",
        vec![iifname(), lookup(CLOSED6, false), jump(CLOSED6)],
    ));
    m.push(rule(
        "guard_ip6",
        vec![nh(8, 16, Reg::R1), eq(&[0; 16]), accept()],
    ));
    m.push(rule(
        "guard_ip6",
        vec![
            iifname(),
            nh(8, 16, Reg::R2),
            lookup(ADDRS6, false),
            accept(),
        ],
    ));
    m.push(rule("guard_ip6", vec![drop_()]));

    // closed6: only MLD and neighbour discovery go on (return); the rest is dropped.
    for icmp_type in OPEN_ICMP6 {
        let [p, u] = l4proto(58);
        m.push(rule(
            CLOSED6,
            vec![
                p,
                u,
                th(0, 1),
                eq(&[icmp_type]),
                Expr::Verdict(Verdict::Return),
            ],
        ));
    }
    m.push(rule(CLOSED6, vec![drop_()]));
    m
}

/// Creates the table unless it exists (a concurrent creator's EEXIST is success).
pub fn ensure_table(s: &mut Socket) -> Result<()> {
    if dump::table_exists(s, FAMILY, TABLE)? {
        return Ok(());
    }
    match s.commit(&ruleset()) {
        Err(e) if e.errno() == Some(libc::EEXIST) => Ok(()),
        other => other,
    }
}

/// Runs `f`; if the table is missing (ENOENT), creates it and runs `f` once more.
fn with_table<T>(s: &mut Socket, mut f: impl FnMut(&mut Socket) -> Result<T>) -> Result<T> {
    match f(s) {
        Err(e) if e.errno() == Some(libc::ENOENT) => {
            ensure_table(s)?;
            f(s)
        }
        other => other,
    }
}

fn name_of(key: &[u8]) -> String {
    let name = key.get(..16).unwrap_or(key);
    let end = name.iter().position(|b| *b == 0).unwrap_or(name.len());
    String::from_utf8_lossy(&name[..end]).into_owned()
}

/// (port, rest of the key) for every element of one set.
fn elements(s: &mut Socket, set: &str) -> Result<Vec<(String, Vec<u8>)>> {
    Ok(dump::set_elements(s, FAMILY, TABLE, set)?
        .into_iter()
        .map(|k| {
            (
                name_of(k.bytes()),
                k.bytes().get(16..).unwrap_or_default().to_vec(),
            )
        })
        .collect())
}

fn mac_of(rest: &[u8]) -> Option<[u8; 6]> {
    rest.get(..6)?.try_into().ok()
}

fn ipv4_of(rest: &[u8]) -> Option<Ipv4Addr> {
    let b: [u8; 4] = rest.get(..4)?.try_into().ok()?;
    Some(Ipv4Addr::from(b))
}

fn key(port: &str, part: &[u8]) -> Key {
    Key::new().ifname(port).part(part)
}

/// Set once a kernel refused `NFT_MSG_DESTROYSETELEM` (before Linux 6.3: EINVAL): from then
/// on removals dump what the port has and delete exactly that.
static NO_DESTROY: AtomicBool = AtomicBool::new(false);

/// Each set's elements for `port` that `keep` (the port's new guard, if any) wants, as the key
/// bytes after the port's name.
fn wanted(keep: Option<&PortGuard>) -> [(&'static str, Vec<Vec<u8>>); 5] {
    let Some(k) = keep else {
        return [PORTS, MACS, ADDRS4, ADDRS6, CLOSED6].map(|set| (set, Vec::new()));
    };
    [
        (PORTS, vec![Vec::new()]),
        (MACS, vec![k.mac.to_vec()]),
        (
            ADDRS4,
            k.ipv4.iter().map(|ip| ip.octets().to_vec()).collect(),
        ),
        (ADDRS6, vec![link_local(k.mac).octets().to_vec()]),
        (
            CLOSED6,
            if k.closed_v6 {
                vec![Vec::new()]
            } else {
                Vec::new()
            },
        ),
    ]
}

/// The messages that remove `port`'s stale elements, with `NFT_MSG_DESTROYSETELEM` (a missing
/// one is no error), from its current MACs and IPv4 addresses; none that `keep` wants.
fn destroys(port: &str, macs: &[[u8; 6]], ipv4: &[Ipv4Addr], keep: Option<&PortGuard>) -> Vec<Msg> {
    let stale_macs: Vec<[u8; 6]> = macs
        .iter()
        .filter(|m| keep.is_none_or(|k| k.mac != **m))
        .copied()
        .collect();
    let stale_v4: Vec<Key> = ipv4
        .iter()
        .filter(|ip| keep.is_none_or(|k| !k.ipv4.contains(ip)))
        .map(|ip| key(port, &ip.octets()))
        .collect();
    let mut msgs = Vec::new();
    let destroy = |set: &str, keys: &[Key]| objects::destroy_elements(FAMILY, TABLE, set, keys);
    if keep.is_none() {
        msgs.push(destroy(PORTS, &[Key::new().ifname(port)]));
    }
    // A port that had elements may be closed6 from its previous guard; a fresh one has
    // nothing to remove (no destroy message: on kernels before 6.3 each would cost a refused
    // batch and the dumps of the fallback, on the attach path).
    let stale_closed6 = match keep {
        None => true,
        Some(k) => !k.closed_v6 && !macs.is_empty(),
    };
    if stale_closed6 {
        msgs.push(destroy(CLOSED6, &[Key::new().ifname(port)]));
    }
    if !stale_macs.is_empty() {
        let m: Vec<Key> = stale_macs.iter().map(|m| key(port, m)).collect();
        let l: Vec<Key> = stale_macs
            .iter()
            .map(|m| key(port, &link_local(*m).octets()))
            .collect();
        msgs.push(destroy(MACS, &m));
        msgs.push(destroy(ADDRS6, &l));
    }
    if !stale_v4.is_empty() {
        msgs.push(destroy(ADDRS4, &stale_v4));
    }
    msgs
}

/// The messages that delete exactly the stale elements `port` has in every set (read first):
/// for kernels without `NFT_MSG_DESTROYSETELEM`.
fn exact_deletes(s: &mut Socket, port: &str, keep: Option<&PortGuard>) -> Result<Vec<Msg>> {
    let mut msgs = Vec::new();
    for (set, want) in wanted(keep) {
        let stale: Vec<Key> = elements(s, set)?
            .into_iter()
            .filter(|(p, rest)| p == port && !want.contains(rest))
            .map(|(_, rest)| key(port, &rest))
            .collect();
        if !stale.is_empty() {
            msgs.push(objects::del_elements(FAMILY, TABLE, set, &stale));
        }
    }
    Ok(msgs)
}

/// Commits the removal of `port`'s stale elements (all, without `keep`) followed by `adds`,
/// in one transaction.
fn replace_elements(
    s: &mut Socket,
    port: &str,
    keep: Option<&PortGuard>,
    adds: Vec<Msg>,
) -> Result<()> {
    if !NO_DESTROY.load(Ordering::Relaxed) {
        let (macs, v4) = current(s, port)?;
        let mut msgs = destroys(port, &macs, &v4, keep);
        let destroying = !msgs.is_empty();
        msgs.extend(adds.iter().cloned());
        match s.commit(&msgs) {
            Err(e) if destroying && e.errno() == Some(libc::EINVAL) => {
                NO_DESTROY.store(true, Ordering::Relaxed);
            }
            other => return other,
        }
    }
    let mut msgs = exact_deletes(s, port, keep)?;
    msgs.extend(adds);
    s.commit(&msgs)
}

/// Makes this process remove elements as on a kernel before 6.3 (tests of that path run on
/// newer kernels too; both paths leave the same sets).
#[cfg(test)]
pub(crate) fn delete_exactly_from_now_on() {
    NO_DESTROY.store(true, Ordering::Relaxed);
}

/// The current MACs and IPv4 addresses of one port.
fn current(s: &mut Socket, port: &str) -> Result<(Vec<[u8; 6]>, Vec<Ipv4Addr>)> {
    let macs = elements(s, MACS)?
        .into_iter()
        .filter(|(p, _)| p == port)
        .filter_map(|(_, rest)| mac_of(&rest))
        .collect();
    let v4 = elements(s, ADDRS4)?
        .into_iter()
        .filter(|(p, _)| p == port)
        .filter_map(|(_, rest)| ipv4_of(&rest))
        .collect();
    Ok((macs, v4))
}

/// Guards a port: replaces whatever elements its name has (a stale guard of a workload that
/// had the name before) with `g`'s, in one transaction.
pub fn guard(s: &mut Socket, g: &PortGuard) -> Result<()> {
    if g.ipv4.is_empty() {
        return Err(Error::Internal(format!(
            "guard of {} without an address",
            g.port
        )));
    }
    with_table(s, |s| {
        let add = |set: &str, keys: &[Key]| objects::add_elements(FAMILY, TABLE, set, keys);
        let v4: Vec<Key> = g.ipv4.iter().map(|ip| key(&g.port, &ip.octets())).collect();
        let adds = vec![
            add(PORTS, &[Key::new().ifname(&g.port)]),
            add(MACS, &[key(&g.port, &g.mac)]),
            add(ADDRS4, &v4),
            add(ADDRS6, &[key(&g.port, &link_local(g.mac).octets())]),
        ];
        let mut adds = adds;
        if g.closed_v6 {
            adds.push(add(CLOSED6, &[Key::new().ifname(&g.port)]));
        }
        replace_elements(s, &g.port, Some(g), adds)
    })
}

/// Removes a port's elements; a port without any (or no table) is not an error.
pub fn unguard(s: &mut Socket, port: &str) -> Result<()> {
    match replace_elements(s, port, None, Vec::new()) {
        Err(e) if e.errno() == Some(libc::ENOENT) => Ok(()),
        other => other,
    }
}

/// Every port that has elements: its guard if they are complete and consistent, `None` if
/// something is missing or extra (reconcile then writes the port's guard afresh).
pub fn list(s: &mut Socket) -> Result<BTreeMap<String, Option<PortGuard>>> {
    let read = |s: &mut Socket, set| match elements(s, set) {
        Err(e) if e.errno() == Some(libc::ENOENT) => Ok(Vec::new()),
        other => other,
    };
    let ports: BTreeSet<String> = read(s, PORTS)?.into_iter().map(|(p, _)| p).collect();
    let closed: BTreeSet<String> = read(s, CLOSED6)?.into_iter().map(|(p, _)| p).collect();
    let mut macs: BTreeMap<String, Vec<[u8; 6]>> = BTreeMap::new();
    for (p, rest) in read(s, MACS)? {
        macs.entry(p).or_default().extend(mac_of(&rest));
    }
    let mut v4: BTreeMap<String, Vec<Ipv4Addr>> = BTreeMap::new();
    for (p, rest) in read(s, ADDRS4)? {
        v4.entry(p).or_default().extend(ipv4_of(&rest));
    }
    let mut v6: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    for (p, rest) in read(s, ADDRS6)? {
        v6.entry(p).or_default().push(rest);
    }
    let names: BTreeSet<String> = ports
        .iter()
        .chain(macs.keys())
        .chain(v4.keys())
        .chain(v6.keys())
        .chain(closed.iter())
        .cloned()
        .collect();
    Ok(names
        .into_iter()
        .map(|name| {
            let intact = match (macs.get(&name).map(Vec::as_slice), v6.get(&name)) {
                (Some([mac]), Some(ll)) if ports.contains(&name) => {
                    (ll.len() == 1 && ll[0] == link_local(*mac).octets()).then_some(*mac)
                }
                _ => None,
            };
            let guard = intact.and_then(|mac| {
                let ips = v4.get(&name).cloned().unwrap_or_default();
                (!ips.is_empty())
                    .then(|| PortGuard::new(&name, mac, ips).with_closed_v6(closed.contains(&name)))
            });
            (name, guard)
        })
        .collect())
}

/// Deletes guard tables of other versions than [`TABLE`]; returns their names.
pub fn remove_old_tables(s: &mut Socket) -> Result<Vec<String>> {
    let old: Vec<String> = dump::tables(s, FAMILY)?
        .into_iter()
        .filter(|t| t.starts_with(TABLE_PREFIX) && t != TABLE)
        .collect();
    let msgs: Vec<Msg> = old.iter().map(|t| objects::del_table(FAMILY, t)).collect();
    s.commit(&msgs)?;
    Ok(old)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_local_is_eui64() {
        let ll = link_local([0x02, 0x00, 0x0a, 0x00, 0x00, 0x02]);
        assert_eq!(ll, "fe80::aff:fe00:2".parse::<Ipv6Addr>().expect("addr"));
    }

    #[test]
    fn a_guard_sorts_and_dedups_its_addresses() {
        let a: Ipv4Addr = "10.0.0.9".parse().expect("ip");
        let b: Ipv4Addr = "10.0.0.2".parse().expect("ip");
        assert_eq!(PortGuard::new("p", [0; 6], [a, b, a]).ipv4, vec![b, a]);
    }
}
