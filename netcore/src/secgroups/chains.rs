//! A rule change by netlink: each changed chain flushed and its new rules added, the CIDR sets
//! its rules name created (or dropped once unused), in the batch of the element changes. `nft
//! -f` would first read every chain of the table into its cache and, at exit, wait for the
//! grace period of the flush (see `elements::commit`): 20-30 ms a rule change.

use std::collections::BTreeMap;

use ipnet::Ipv4Net;

use super::rule::Line;
use super::TABLE;
use crate::nft::objects::{self, Key, KeyType, Msg, Set};
use crate::nft::Family;

const FAMILY: Family = Family::Inet;

/// Messages creating the CIDR sets `new` has and `old` lacks (first in the batch: the new
/// rules look them up).
pub(super) fn new_cidr_sets(
    msgs: &mut Vec<Msg>,
    old: &BTreeMap<String, Ipv4Net>,
    new: &BTreeMap<String, Ipv4Net>,
) {
    for (id, (name, net)) in new
        .iter()
        .filter(|(n, _)| !old.contains_key(*n))
        .enumerate()
    {
        let set = Set {
            name: name.clone(),
            key: vec![KeyType::Ipv4Addr],
            flags: objects::SET_INTERVAL,
            id: u32::try_from(id + 1).unwrap_or(u32::MAX),
        };
        msgs.push(objects::new_set(FAMILY, TABLE, &set));
        msgs.push(objects::add_interval_elements(
            FAMILY,
            TABLE,
            name,
            &bounds(net),
        ));
    }
}

/// A CIDR's interval bounds as nft sends them: the range below it closed at 0.0.0.0 (unless it
/// starts there), its start, and its end + 1 (unless it ends the address space).
fn bounds(net: &Ipv4Net) -> Vec<(Key, bool)> {
    let key = |ip: u32| Key::new().part(&ip.to_be_bytes());
    let start = u32::from(net.network());
    let mut out = Vec::with_capacity(3);
    if start != 0 {
        out.push((key(0), true));
    }
    out.push((key(start), false));
    if let Some(end) = u32::from(net.broadcast()).checked_add(1) {
        out.push((key(end), true));
    }
    out
}

/// Each chain of `new` whose rules differ from `old`'s: flushed, then its rules appended in
/// order. `None` if `old` lacks one (a new chain is made by `nft`).
pub(super) fn rule_msgs(
    msgs: &mut Vec<Msg>,
    old: &BTreeMap<String, Vec<Line>>,
    new: &BTreeMap<String, Vec<Line>>,
) -> Option<()> {
    for (name, rules) in new {
        if old.get(name)? == rules {
            continue;
        }
        msgs.push(objects::flush_chain(FAMILY, TABLE, name));
        for rule in rules {
            msgs.push(objects::new_rule(FAMILY, TABLE, name, &rule.exprs));
        }
    }
    Some(())
}

/// Messages deleting the CIDR sets no rule names any more (last: after the flushes that
/// released them).
pub(super) fn gone_cidr_sets(
    msgs: &mut Vec<Msg>,
    old: &BTreeMap<String, Ipv4Net>,
    new: &BTreeMap<String, Ipv4Net>,
) {
    for name in old.keys().filter(|n| !new.contains_key(*n)) {
        msgs.push(objects::del_set(FAMILY, TABLE, name));
    }
}
