//! Security groups enforced on a compute node (issue 14): the groups a port names, the
//! controller's snapshot of those groups, and their compilation into one nftables table.
//!
//! Enforcement lives in `table inet ciao_sg_v1` at the forward hook, where br_netfilter shows
//! bridged IPv4 with `iifname`/`oifname` = the bridge and conntrack works (bridge-family
//! conntrack is missing on the kernels we target). Two base chains, egress (priority 0) then
//! ingress (priority 1), each accept established/related flows and dispatch in O(1) through a
//! verdict map keyed `bridge . workload address` to the dispatch chain of the port's
//! combination of groups (shared by every port in the same groups), which jumps to each of
//! those groups' chains and ends in drop. A group's rules live once, in its own chain; a
//! remote group is a named set of its members' addresses, so a member joining is one element;
//! a remote CIDR is an interval set named after it, shared by every rule naming it.
//! Traffic of ports that name no group matches no map entry and passes as before.

mod chains;
mod compile;
mod elements;
mod node;
mod rule;
mod script;
mod store;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, Result};

pub use compile::{compile, free_zone, zone_of, Model};
pub use node::Enforcer;
pub use rule::Line;
pub use script::{diff, rebuild, run};
pub use store::{load_snapshots, save_snapshot, Snapshots};

/// The table; the suffix changes whenever its layout does.
pub const TABLE: &str = "ciao_sg_v1";

/// Filtered ports (`bridge . address`) attached but not yet in the dispatch maps: their new
/// ingress is dropped. The attach path adds the element by netlink (no `nft` spawned); the
/// node daemon empties the set whenever it adds ports to the maps.
pub const PENDING: &str = "pending4";

/// The field name in errors about group names; front ends name theirs.
pub const FIELD: &str = "security groups";

/// Checks group names as the controller does (1-64 of letters, digits, `.`, `_`, `-`) and
/// returns them sorted without duplicates.
pub fn check_names<S: AsRef<str>>(names: &[S]) -> Result<Vec<String>> {
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let name = name.as_ref();
        let fine = (1..=64).contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !fine {
            return Err(Error::invalid(
                FIELD,
                format!("{name:?} is not a group name (1-64 of letters, digits, '.', '_', '-')"),
            ));
        }
        out.push(name.to_string());
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Splits `web,admin` (a CNI_ARGS, hook or Docker option value) and checks the names.
pub fn parse_list(text: &str) -> Result<Vec<String>> {
    let names: Vec<&str> = text.split(',').map(str::trim).collect();
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    check_names(&names)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Ingress,
    Egress,
}

/// An IP protocol a rule matches; `Any` matches all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Any,
    Tcp,
    Udp,
    Icmp,
    Icmpv6,
    Number(u8),
}

/// Where a rule's traffic comes from (ingress) or goes to (egress).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Remote {
    Anywhere,
    Cidr(IpNet),
    /// A group of the same tenant, by name.
    Group(String),
}

/// One checked rule (the controller checked it; the node checks again what it compiles).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub direction: Direction,
    /// IPv6 rules are kept but not enforced yet (IPv6 has no dispatch map yet).
    pub ipv6: bool,
    pub protocol: Protocol,
    /// tcp/udp port range.
    pub ports: Option<(u16, u16)>,
    /// icmp type and optional code.
    pub icmp: Option<(u8, Option<u8>)>,
    pub remote: Remote,
}

/// One group of the controller's snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub name: String,
    /// `None`: the controller does not know the name; the group allows nothing.
    pub uuid: Option<Uuid>,
    pub rules: Vec<Rule>,
    /// Members' IPv4 addresses, cluster-wide.
    pub members: Vec<Ipv4Addr>,
}

/// The controller's last word on one tenant's groups for this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantGroups {
    pub tenant: Uuid,
    pub generation: u64,
    pub groups: Vec<Group>,
}

/// A filtered port of this node.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Port {
    pub tenant: Uuid,
    pub bridge: String,
    /// The bridge port.
    pub ifname: String,
    pub ip: Ipv4Addr,
    /// Sorted, non-empty.
    pub groups: Vec<String>,
    /// The bridge's conntrack zone ([`crate::state::NetRecord::ct_zone`]).
    pub zone: u16,
}

/// The filtered ports recorded in a node's state, by tenant.
pub fn ports_of(
    nets: &[crate::state::NetRecord],
    vnics: &[crate::state::VnicRecord],
) -> BTreeMap<Uuid, Vec<Port>> {
    let mut out: BTreeMap<Uuid, Vec<Port>> = BTreeMap::new();
    for v in vnics {
        if v.security_groups.is_empty() || v.ip.is_unspecified() {
            continue;
        }
        let Some(net) = nets.iter().find(|n| n.key == v.net) else {
            continue;
        };
        out.entry(net.config.tenant).or_default().push(Port {
            tenant: net.config.tenant,
            bridge: net.bridge.clone(),
            ifname: v.host_ifname.clone(),
            ip: v.ip,
            groups: v.security_groups.clone(),
            zone: net.ct_zone(),
        });
    }
    for ports in out.values_mut() {
        ports.sort();
    }
    out
}

/// Applies models to the kernel, remembering what it loaded so that the next apply is a diff.
/// Bound to the network namespace of its first element change (its netlink socket).
#[derive(Default)]
pub struct Applier {
    loaded: Option<Model>,
    /// Kept open between changes (see `elements::commit`).
    socket: Option<crate::nft::Socket>,
}

impl std::fmt::Debug for Applier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Applier")
            .field("loaded", &self.loaded.is_some())
            .field("socket", &self.socket.is_some())
            .finish()
    }
}

/// How an apply reached the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Nothing to change.
    Unchanged,
    /// Only set and map elements changed: one netlink batch from this process.
    Elements,
    /// Rules of existing chains changed (and maybe elements and CIDR sets): one netlink batch
    /// from this process.
    Rules,
    /// An `nft -f` script (the whole table, or the difference).
    Script,
}

impl Applier {
    /// What the last successful apply loaded (`None` after a failure: the next one rebuilds).
    pub fn loaded(&self) -> Option<&Model> {
        self.loaded.as_ref()
    }

    /// Replaces the members of sets the table has (and nothing else) in one netlink batch;
    /// `None` if a set is not loaded or the batch failed (then the next apply rebuilds).
    pub(crate) fn apply_sets(
        &mut self,
        sets: BTreeMap<String, std::collections::BTreeSet<Ipv4Addr>>,
    ) -> Option<Applied> {
        let loaded = self.loaded.as_mut()?;
        let mut msgs = Vec::new();
        for (name, members) in &sets {
            elements::set_batch(&mut msgs, name, loaded.sets.get(name)?, members);
        }
        if msgs.is_empty() {
            return Some(Applied::Unchanged);
        }
        if elements::commit(&mut self.socket, &msgs).is_err() {
            self.loaded = None;
            return None;
        }
        loaded.sets.extend(sets);
        Some(Applied::Elements)
    }

    /// Replaces the rules of chains the table has, the CIDR sets and the member sets (all of
    /// them: the table's sets must be exactly these) in one netlink batch, the dispatch chains
    /// untouched; `None` if a chain or set is not loaded or the batch failed (then the next
    /// apply rebuilds).
    pub(crate) fn apply_rules(
        &mut self,
        chains: BTreeMap<String, Vec<Line>>,
        cidrs: BTreeMap<String, ipnet::Ipv4Net>,
        sets: BTreeMap<String, std::collections::BTreeSet<Ipv4Addr>>,
    ) -> Option<Applied> {
        let loaded = self.loaded.as_mut()?;
        if !sets.keys().eq(loaded.sets.keys()) {
            return None;
        }
        let mut msgs = Vec::new();
        chains::new_cidr_sets(&mut msgs, &loaded.cidrs, &cidrs);
        chains::rule_msgs(&mut msgs, &loaded.chains, &chains)?;
        let rules = !msgs.is_empty() || loaded.cidrs != cidrs;
        for (name, members) in &sets {
            elements::set_batch(&mut msgs, name, loaded.sets.get(name)?, members);
        }
        chains::gone_cidr_sets(&mut msgs, &loaded.cidrs, &cidrs);
        if msgs.is_empty() {
            return Some(Applied::Unchanged);
        }
        if elements::commit(&mut self.socket, &msgs).is_err() {
            self.loaded = None;
            return None;
        }
        loaded.chains.extend(chains);
        loaded.cidrs = cidrs;
        loaded.sets = sets;
        Some(if rules {
            Applied::Rules
        } else {
            Applied::Elements
        })
    }

    /// Makes the table hold `model`: the whole table the first time (or after a failure),
    /// else only what changed; one transaction either way.
    pub fn apply(&mut self, model: Model) -> Result<Applied> {
        if let Some(old) = &self.loaded {
            if *old == model {
                return Ok(Applied::Unchanged);
            }
            if let Some(msgs) = elements::batch(old, &model) {
                let how = if old.chains == model.chains && old.cidrs == model.cidrs {
                    Applied::Elements
                } else {
                    Applied::Rules
                };
                if elements::commit(&mut self.socket, &msgs).is_ok() {
                    self.loaded = Some(model);
                    return Ok(how);
                }
                // The table is not what was loaded (or netlink failed): rebuild it whole.
                self.loaded = None;
            }
        }
        let done = match self.loaded.take() {
            // A diff refused means the table is not what was loaded: rebuild it whole.
            Some(old) => run(&diff(&old, &model)).or_else(|_| run(&rebuild(&model))),
            // Nothing to enforce and no table: nothing is made, no `nft` spawned (the next
            // model with a port then builds the table whole).
            None if model == Model::default() && !table_exists()? => return Ok(Applied::Unchanged),
            None => run(&rebuild(&model)),
        };
        match done {
            Ok(()) => {
                self.loaded = Some(model);
                Ok(Applied::Script)
            }
            Err(e) => {
                self.loaded = None;
                Err(e)
            }
        }
    }
}

/// Marks a just-attached filtered port pending (see [`PENDING`]) in one netlink transaction.
/// On a node whose daemon never ran there is no table yet: the attach creates the empty base
/// table first (one `nft -f`, once in the node's life; `create` fails if the daemon made it
/// meanwhile, which is as good), so the port is closed from its first frame all the same.
pub fn mark_pending(s: &mut crate::nft::Socket, bridge: &str, ip: Ipv4Addr) -> Result<()> {
    let key = crate::nft::objects::Key::new()
        .ifname(bridge)
        .part(&ip.octets());
    let msg = crate::nft::objects::add_elements(crate::nft::Family::Inet, TABLE, PENDING, &[key]);
    match s.commit(std::slice::from_ref(&msg)) {
        Err(e) if e.errno() == Some(libc::ENOENT) => {
            match script::run(&script::create_base()) {
                Err(e) if !table_exists()? => return Err(e),
                _ => {}
            }
            s.commit(&[msg])
        }
        other => other,
    }
}

/// Takes a detached port's `pending4` element out, if there (the daemon empties the set only
/// when it maps new ports).
pub fn unmark_pending(s: &mut crate::nft::Socket, bridge: &str, ip: Ipv4Addr) -> Result<()> {
    let key = crate::nft::objects::Key::new()
        .ifname(bridge)
        .part(&ip.octets());
    let msg = crate::nft::objects::del_elements(crate::nft::Family::Inet, TABLE, PENDING, &[key]);
    match s.commit(&[msg]) {
        Err(e) if e.errno() == Some(libc::ENOENT) => Ok(()),
        other => other,
    }
}

/// True if this namespace has the table (a netlink GETTABLE; no `nft` spawned).
fn table_exists() -> Result<bool> {
    let mut s = crate::nft::Socket::open()?;
    crate::nft::dump::table_exists(&mut s, crate::nft::Family::Inet, TABLE)
}

/// The filtered ports recorded in the state directory, read under its lock.
pub fn node_ports(state: &crate::state::StateDir) -> Result<BTreeMap<Uuid, Vec<Port>>> {
    let locked = state.lock()?;
    let nets = locked.nets()?;
    let mut vnics = Vec::new();
    for net in &nets {
        vnics.extend(locked.vnics(&net.key)?);
    }
    Ok(ports_of(&nets, &vnics))
}

/// Rebuilds the table from the records and the persisted snapshots (`ciao-node reconcile`,
/// a starting node daemon).
pub fn reconcile(state_dir: &Path) -> Result<Model> {
    let state = crate::state::StateDir::open(state_dir)?;
    let model = compile(&node_ports(&state)?, &load_snapshots(state_dir)?);
    Applier::default().apply(model.clone())?;
    Ok(model)
}
