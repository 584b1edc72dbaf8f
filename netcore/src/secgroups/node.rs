//! A node's security groups in one place: the snapshots (persisted, then kept in memory), the
//! applier, and what was applied last, so that a membership change (the most frequent change)
//! skips compiling and comparing the whole table.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::Path;

use uuid::Uuid;

use super::{compile, Applied, Applier, Group, Port, Snapshots, TenantGroups};
use crate::error::Result;

type Ports = BTreeMap<Uuid, Vec<Port>>;
type Snaps = BTreeMap<Uuid, TenantGroups>;

/// Records the controller's snapshots and makes the kernel enforce them for the node's ports.
#[derive(Debug)]
pub struct Enforcer {
    snaps: Snapshots,
    applier: Applier,
    /// The ports and snapshots the table holds (`None`: unknown, compile it all).
    applied: Option<(Ports, Snaps)>,
}

impl Enforcer {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            snaps: Snapshots::new(state_dir),
            applier: Applier::default(),
            applied: None,
        }
    }

    /// Persists a snapshot (durably, before it is applied) and keeps it.
    pub fn record(&mut self, snap: TenantGroups) -> Result<()> {
        self.snaps.record(snap)
    }

    /// Makes the table enforce `ports` with the recorded snapshots. Same ports and only members
    /// changed: the changed tenants' member sets alone, one netlink batch; same ports and groups
    /// but rules changed: the group chains and sets alone (not the dispatch chains and maps,
    /// most of the table), one netlink batch; else compile all and apply the difference.
    /// Snapshots that cannot be read are applied as none (ports fail closed: new ingress
    /// dropped) and the error returned after.
    pub fn apply(&mut self, ports: &Ports) -> Result<Applied> {
        let empty = Snaps::new();
        let (snaps, unread) = match self.snaps.all() {
            Ok(snaps) => (snaps, None),
            Err(e) => (&empty, Some(e)),
        };
        if unread.is_some() {
            self.applied = None;
        }
        if let Some((was_ports, was_snaps)) = &self.applied {
            if was_ports == ports {
                let how = match changed_members(was_snaps, snaps, ports) {
                    Some(sets) => self.applier.apply_sets(sets),
                    None if same_groups(was_snaps, snaps, ports) => {
                        let (chains, cidrs) = compile::group_rules(ports, snaps);
                        let sets = all_sets(snaps, ports);
                        self.applier.apply_rules(chains, cidrs, sets)
                    }
                    None => None,
                };
                if let Some(how) = how {
                    // The ports are the same: only the snapshots are copied.
                    if let Some((_, was_snaps)) = &mut self.applied {
                        was_snaps.clone_from(snaps);
                    }
                    return Ok(how);
                }
            }
        }
        self.applied = None;
        let how = self.applier.apply(compile(ports, snaps))?;
        if let Some(e) = unread {
            return Err(e);
        }
        self.applied = Some((ports.clone(), snaps.clone()));
        Ok(how)
    }

    /// The applier (what it loaded).
    pub fn applier(&self) -> &Applier {
        &self.applier
    }
}

/// The member sets of every tenant with ports whose snapshot changed in members only (same
/// groups, ids and rules); `None` if any changed otherwise.
fn changed_members(
    was: &Snaps,
    now: &Snaps,
    ports: &Ports,
) -> Option<BTreeMap<String, BTreeSet<Ipv4Addr>>> {
    let mut sets = BTreeMap::new();
    for (tenant, tenant_ports) in ports {
        match (was.get(tenant), now.get(tenant)) {
            (Some(a), Some(b)) if a.groups == b.groups => {}
            (Some(a), Some(b)) if members_only(a, b) => {
                sets.extend(compile::tenant_sets(*tenant, tenant_ports, b));
            }
            (None, None) => {}
            _ => return None,
        }
    }
    Some(sets)
}

/// True if every tenant with ports has the same groups (names and ids, so the same chains and
/// dispatch chains) in both, or no snapshot in either: what changed is rules and members.
fn same_groups(was: &Snaps, now: &Snaps, ports: &Ports) -> bool {
    ports.keys().all(|t| match (was.get(t), now.get(t)) {
        (Some(a), Some(b)) => pairwise(a, b, |x, y| (&x.name, &x.uuid) == (&y.name, &y.uuid)),
        (None, None) => true,
        _ => false,
    })
}

/// Every member set of the table: those of each tenant with ports and a snapshot.
fn all_sets(snaps: &Snaps, ports: &Ports) -> BTreeMap<String, BTreeSet<Ipv4Addr>> {
    let mut sets = BTreeMap::new();
    for (tenant, tenant_ports) in ports {
        if let Some(snap) = snaps.get(tenant) {
            sets.extend(compile::tenant_sets(*tenant, tenant_ports, snap));
        }
    }
    sets
}

/// True if only members differ: same groups (names, ids) with the same rules.
fn members_only(a: &TenantGroups, b: &TenantGroups) -> bool {
    pairwise(a, b, |x, y| {
        (&x.name, &x.uuid, &x.rules) == (&y.name, &y.uuid, &y.rules)
    })
}

/// True if `a` and `b` have as many groups and `same` holds for each pair in order.
fn pairwise(a: &TenantGroups, b: &TenantGroups, same: impl Fn(&Group, &Group) -> bool) -> bool {
    a.groups.len() == b.groups.len() && a.groups.iter().zip(&b.groups).all(|(x, y)| same(x, y))
}
