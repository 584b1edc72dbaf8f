//! Changes that are set and map elements (a member joining or leaving a group, a port's
//! dispatch entry), and chains' rules (see `chains`), as one nf_tables batch sent from this
//! process. `nft -f` would first read
//! every chain and set of the table into its cache: milliseconds per change at 1,000 ports.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use super::{chains, Model, PENDING, TABLE};
use crate::nft::expr::Verdict;
use crate::nft::objects::{self, Key, Msg};
use crate::nft::{Family, Socket};

const FAMILY: Family = Family::Inet;

/// The messages that turn a table holding `old` into one holding `new`, or `None` if the change
/// is structural (chains made or deleted, zones, which member sets exist): that goes through
/// `nft`. Chains' rules and CIDR sets are in the batch (see `chains`). Deletions
/// are exact (`DELSETELEM`: the applier knows what it loaded; a missing element fails the
/// batch and the caller rebuilds).
pub(super) fn batch(old: &Model, new: &Model) -> Option<Vec<Msg>> {
    if old.zones != new.zones
        || !old.sets.keys().eq(new.sets.keys())
        || !old.chains.keys().eq(new.chains.keys())
    {
        return None;
    }
    let mut msgs = Vec::new();
    chains::new_cidr_sets(&mut msgs, &old.cidrs, &new.cidrs);
    chains::rule_msgs(&mut msgs, &old.chains, &new.chains)?;
    for (name, members) in &new.sets {
        set_batch(&mut msgs, name, old.sets.get(name)?, members);
    }
    map_batch(&mut msgs, "ingress4", &old.ingress, &new.ingress);
    if new.ingress.keys().any(|k| !old.ingress.contains_key(k)) {
        // As in the script: ports now in the map need no pending entry.
        msgs.push(objects::flush_set(FAMILY, TABLE, PENDING));
    }
    map_batch(&mut msgs, "egress4", &old.egress, &new.egress);
    chains::gone_cidr_sets(&mut msgs, &old.cidrs, &new.cidrs);
    Some(msgs)
}

/// The members `was` has and `now` lacks are deleted, the others added.
pub(super) fn set_batch(
    msgs: &mut Vec<Msg>,
    set: &str,
    was: &BTreeSet<Ipv4Addr>,
    now: &BTreeSet<Ipv4Addr>,
) {
    let key = |ip: &Ipv4Addr| Key::new().part(&ip.octets());
    let gone: Vec<Key> = was.difference(now).map(key).collect();
    let came: Vec<Key> = now.difference(was).map(key).collect();
    if !gone.is_empty() {
        msgs.push(objects::del_elements(FAMILY, TABLE, set, &gone));
    }
    if !came.is_empty() {
        msgs.push(objects::add_elements(FAMILY, TABLE, set, &came));
    }
}

type Map = BTreeMap<(String, Ipv4Addr), String>;

fn map_key((bridge, ip): &(String, Ipv4Addr)) -> Key {
    Key::new().ifname(bridge).part(&ip.octets())
}

/// Entries gone or pointing elsewhere are deleted, new or changed ones added (with their jump).
fn map_batch(msgs: &mut Vec<Msg>, map: &str, old: &Map, new: &Map) {
    let gone: Vec<Key> = old
        .iter()
        .filter(|(k, chain)| new.get(*k) != Some(*chain))
        .map(|(k, _)| map_key(k))
        .collect();
    let came: Vec<(Key, Verdict)> = new
        .iter()
        .filter(|(k, chain)| old.get(*k) != Some(*chain))
        .map(|(k, chain)| (map_key(k), Verdict::Jump(chain.clone())))
        .collect();
    if !gone.is_empty() {
        msgs.push(objects::del_elements(FAMILY, TABLE, map, &gone));
    }
    if !came.is_empty() {
        msgs.push(objects::add_verdict_elements(FAMILY, TABLE, map, &came));
    }
}

/// Commits `msgs` as one transaction on `socket`, opened at first use in the calling thread's
/// namespace and then kept. Closing an nf_tables socket makes the kernel finish freeing what
/// the last transactions deleted first (`nft_rcv_nl_event` flushes the destroy work: an RCU
/// grace period, 8-16 ms measured), so a socket per change made every deletion that slow; a
/// kept one leaves the freeing to the kernel's worker. A failed socket is dropped.
pub(super) fn commit(socket: &mut Option<Socket>, msgs: &[Msg]) -> crate::Result<()> {
    let s = match socket {
        Some(s) => s,
        None => socket.insert(Socket::open()?),
    };
    let done = s.commit(msgs);
    if done.is_err() {
        *socket = None;
    }
    done
}
