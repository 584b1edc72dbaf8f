//! Model → nft script: the difference between what is loaded and what should be, as one
//! `nft -f` transaction (all or nothing), so traffic never sees a half-applied change.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::net::Ipv4Addr;

use super::{Model, PENDING, TABLE};

/// The fixed part: the conntrack zone of each bridge (prerouting, before conntrack), two dispatch
/// maps, the pending set and two base chains at the forward hook.
fn base() -> String {
    format!(
        "table inet {TABLE} {{\n\
         \tmap ingress4 {{ type ifname . ipv4_addr : verdict; }}\n\
         \tmap egress4 {{ type ifname . ipv4_addr : verdict; }}\n\
         \tset {PENDING} {{ type ifname . ipv4_addr; }}\n\
         \tmap zones {{ typeof iifname : ct zone; }}\n\
         \tchain zone {{\n\
         \t\ttype filter hook prerouting priority -300; policy accept;\n\
         \t\tct zone set iifname map @zones\n\
         \t}}\n\
         \tchain egress {{\n\
         \t\ttype filter hook forward priority 0; policy accept;\n\
         \t\tct state established,related accept\n\
         \t\tiifname . ip saddr vmap @egress4\n\
         \t}}\n\
         \tchain ingress {{\n\
         \t\ttype filter hook forward priority 1; policy accept;\n\
         \t\tct state established,related accept\n\
         \t\toifname . ip daddr vmap @ingress4\n\
         \t\toifname . ip daddr @{PENDING} drop\n\
         \t}}\n\
         }}\n"
    )
}

/// The empty base table, created only if the namespace has none (`create` fails otherwise).
pub(crate) fn create_base() -> String {
    format!("create table inet {TABLE}\n{}", base())
}

/// Replaces the whole table with `model` in one transaction (the table need not exist).
pub fn rebuild(model: &Model) -> String {
    let mut out = format!("add table inet {TABLE}\ndelete table inet {TABLE}\n");
    out.push_str(&base());
    out.push_str(&diff(&Model::default(), model));
    out
}

/// The commands that turn a table holding `old` into one holding `new`: a membership change
/// is one element, a rule change one group chain, a new combination of groups one dispatch chain pair.
pub fn diff(old: &Model, new: &Model) -> String {
    let mut out = String::new();
    let t = format!("inet {TABLE}");
    for name in new.sets.keys().filter(|n| !old.sets.contains_key(*n)) {
        let _ = writeln!(out, "add set {t} {name} {{ type ipv4_addr; }}");
    }
    for (name, net) in new
        .cidrs
        .iter()
        .filter(|(n, _)| !old.cidrs.contains_key(*n))
    {
        let _ = writeln!(
            out,
            "add set {t} {name} {{ type ipv4_addr; flags interval; }}"
        );
        let _ = writeln!(out, "add element {t} {name} {{ {net} }}");
    }
    for name in new.chains.keys().filter(|n| !old.chains.contains_key(*n)) {
        let _ = writeln!(out, "add chain {t} {name}");
    }
    for (name, rules) in &new.chains {
        match old.chains.get(name) {
            Some(was) if was == rules => continue,
            Some(_) => {
                let _ = writeln!(out, "flush chain {t} {name}");
            }
            None => {}
        }
        for rule in rules {
            let _ = writeln!(out, "add rule {t} {name} {}", rule.text);
        }
    }
    let empty = BTreeSet::new();
    for (name, members) in &new.sets {
        let was = old.sets.get(name).unwrap_or(&empty);
        elements(&mut out, "delete", &t, name, was.difference(members));
        elements(&mut out, "add", &t, name, members.difference(was));
    }
    map_diff(&mut out, &t, "ingress4", &old.ingress, &new.ingress);
    if new.ingress.keys().any(|k| !old.ingress.contains_key(k)) {
        // The new ports are in the map now: what waited in the pending set is covered.
        let _ = writeln!(out, "flush set {t} {PENDING}");
    }
    map_diff(&mut out, &t, "egress4", &old.egress, &new.egress);
    zone_diff(&mut out, &t, &old.zones, &new.zones);
    // Gone chains: empty them all first (dispatch chains jump to group chains), then delete.
    let gone: Vec<&String> = old
        .chains
        .keys()
        .filter(|n| !new.chains.contains_key(*n))
        .collect();
    for name in &gone {
        let _ = writeln!(out, "flush chain {t} {name}");
    }
    for name in &gone {
        let _ = writeln!(out, "delete chain {t} {name}");
    }
    for name in old.sets.keys().filter(|n| !new.sets.contains_key(*n)) {
        let _ = writeln!(out, "delete set {t} {name}");
    }
    for name in old.cidrs.keys().filter(|n| !new.cidrs.contains_key(*n)) {
        let _ = writeln!(out, "delete set {t} {name}");
    }
    out
}

fn elements<'a>(
    out: &mut String,
    verb: &str,
    t: &str,
    set: &str,
    addrs: impl Iterator<Item = &'a Ipv4Addr>,
) {
    let list: Vec<String> = addrs.map(Ipv4Addr::to_string).collect();
    if !list.is_empty() {
        let _ = writeln!(out, "{verb} element {t} {set} {{ {} }}", list.join(", "));
    }
}

type Map = BTreeMap<(String, Ipv4Addr), String>;

fn map_diff(out: &mut String, t: &str, map: &str, old: &Map, new: &Map) {
    for (key, chain) in old {
        if new.get(key) != Some(chain) {
            let _ = writeln!(
                out,
                "delete element {t} {map} {{ \"{}\" . {} }}",
                key.0, key.1
            );
        }
    }
    for (key, chain) in new {
        if old.get(key) != Some(chain) {
            let _ = writeln!(
                out,
                "add element {t} {map} {{ \"{}\" . {} : jump {chain} }}",
                key.0, key.1
            );
        }
    }
}

fn zone_diff(out: &mut String, t: &str, old: &BTreeMap<String, u16>, new: &BTreeMap<String, u16>) {
    for (bridge, zone) in old {
        if new.get(bridge) != Some(zone) {
            let _ = writeln!(out, "delete element {t} zones {{ \"{bridge}\" }}");
        }
    }
    for (bridge, zone) in new {
        if old.get(bridge) != Some(zone) {
            let _ = writeln!(out, "add element {t} zones {{ \"{bridge}\" : {zone} }}");
        }
    }
}

/// Runs `script` as one `nft -f -` transaction.
pub fn run(script: &str) -> crate::Result<()> {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    if script.is_empty() {
        return Ok(());
    }
    let io = |what: &str, e| crate::Error::io(format!("nft -f: {what}"), e);
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io("spawn", e))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| io("write", e))?;
    }
    let done = child.wait_with_output().map_err(|e| io("wait", e))?;
    if done.status.success() {
        Ok(())
    } else {
        Err(crate::Error::Internal(format!(
            "nft refused the security-group ruleset: {}",
            String::from_utf8_lossy(&done.stderr).trim()
        )))
    }
}
