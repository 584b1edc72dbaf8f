//! The agent's nftables rules, in tables of its own: the node-wide one in the network node's
//! underlay namespace, shared by all CNCIs, in which each CNCI owns set elements only; and one
//! in the tenant namespace. Never anyone else's table, never a flush.
//!
//! Rules are written in nft's own syntax and loaded with `nft -f -`, one transaction per change
//! ("add, delete, define" replaces a tenant table atomically). The JSON schema that the nftables crate
//! speaks cannot express the reflection filter's set (`typeof` a concatenation of raw transport
//! payload fields), so this module renders text instead of mixing two styles.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::fd::BorrowedFd;
use std::process::{Command, Stdio};

use ipnet::Ipv4Net;

use crate::error::{Error, Result};
use crate::names::UPLINK_TENANT;
use crate::state::PublicIpRecord;

/// Prefix of the node-wide underlay table; the rest of its name is its version.
pub const UNDERLAY_PREFIX: &str = "ciao_cnci_node_";

/// The node-wide underlay table, shared by every CNCI of the network node (ciao-nn's tasks and
/// standalone agents alike). One table, not one per CNCI: the kernel allows 1,024 base chains
/// per hook per namespace, and a table per CNCI put two on the input hook, so a node stopped
/// at about 510 CNCIs. Each CNCI adds its uplink as set elements ([`Uplink`]).
///
/// The rules never change while CNCIs use the table: its name carries a digest of its text,
/// so a build with other rules makes a second table beside it instead of replacing this one
/// (which would empty the reflection set and drop every uplink's guard for a moment).
pub fn underlay_table() -> (String, String) {
    let body = r#"  # Reflection suppression (reference/vxlan-hub.md): remember which CN each inner source MAC
  # of each VNI arrived from, and never flood a frame back to the CN it came from.
  set reflect {
    typeof ip saddr . @th,96,24 . @th,176,48
    size 262144
    flags dynamic,timeout
    timeout 1s
  }
  # Underlay sides of the CNCIs' uplinks.
  set uplinks {
    type ifname
  }
  # (uplink, external device): the only way out of an uplink.
  set exits {
    type ifname . ifname
  }
  # Networks of the underlay: tenant traffic must never reach them (VNI forgery).
  set underlay_nets {
    type ipv4_addr
    flags interval
    auto-merge
  }
  # (tenant side of an uplink, external device): masqueraded on the way out. Exact addresses,
  # not the uplink networks: adding an element to an interval set makes nft read the whole set.
  set masq {
    type ipv4_addr . ifname
  }
  chain reflect_in {
    type filter hook input priority -300; policy accept;
    udp dport 4789 update @reflect { ip saddr . @th,96,24 . @th,176,48 }
  }
  chain reflect_out {
    type filter hook output priority -300; policy accept;
    udp dport 4789 ip daddr . @th,96,24 . @th,176,48 @reflect drop
  }
  # The tenant may reach the outside, never the network node itself or the underlay.
  chain uplink_in {
    type filter hook input priority filter; policy accept;
    iifname @uplinks drop
  }
  chain uplink_forward {
    type filter hook forward priority filter; policy accept;
    iifname @uplinks iifname . oifname != @exits drop
    iifname @uplinks ip daddr @underlay_nets drop
  }
  chain uplink_nat {
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr . oifname @masq masquerade
  }
"#;
    let digest = netcore::ids::fnv64(&[body.as_bytes()]) & 0xffff_ffff;
    let name = format!("{UNDERLAY_PREFIX}{digest:08x}");
    (name.clone(), format!("table ip {name} {{\n{body}}}\n"))
}

/// Earlier versions of the node-wide table whose elements this build can name: each CNCI moves
/// its elements out of them ([`Uplink::remove_earlier_script`]) in the transaction that adds
/// them to the current table, so its uplink is guarded at every instant, and the table goes
/// once no uplink is left in it.
pub const EARLIER: &[&str] = &[
    // Until the masq set held exact addresses: keyed on the uplink's /31, an interval set.
    "ciao_cnci_node_a378ae8c",
];

/// One CNCI's elements in the node-wide underlay table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uplink {
    /// The underlay side of the tenant uplink.
    pub uplink: String,
    pub uplink_net: Ipv4Net,
    pub external_dev: Option<String>,
}

impl Uplink {
    /// `(set, element)` pairs in nft syntax: exactly what this CNCI owns in the table.
    pub fn elements(&self) -> Vec<(&'static str, String)> {
        let uplink = &self.uplink;
        let mut out = vec![("uplinks", format!("\"{uplink}\""))];
        if let Some(ext) = &self.external_dev {
            out.push(("exits", format!("\"{uplink}\" . \"{ext}\"")));
            out.push(("masq", format!("{} . \"{ext}\"", self.tenant_side())));
        }
        out
    }

    /// The tenant side's address of the uplink (the second of its /31): what the tenant
    /// namespace masquerades its traffic to, so the source of what leaves through the uplink.
    pub fn tenant_side(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.uplink_net.network()).saturating_add(1))
    }

    /// Removes the elements this CNCI has in `table`, a table of [`EARLIER`]: the same, but
    /// `masq` keyed on the uplink's network.
    pub fn remove_earlier_script(&self, table: &str) -> String {
        let mut elements = self.elements();
        for (set, e) in elements.iter_mut() {
            if *set == "masq" {
                if let Some(ext) = &self.external_dev {
                    *e = format!("{} . \"{ext}\"", self.uplink_net);
                }
            }
        }
        remove_elements(table, &elements)
    }

    /// Adds the elements (an existing one is left as it is), in one transaction.
    pub fn add_script(&self, table: &str) -> String {
        self.elements()
            .iter()
            .map(|(set, e)| format!("add element ip {table} {set} {{ {e} }}\n"))
            .collect()
    }

    /// Removes the elements, present or not, in one transaction: each is added and then
    /// deleted, as nft 1.0.6 has no `destroy element` and a missing one would fail the batch.
    pub fn remove_script(&self, table: &str) -> String {
        remove_elements(table, &self.elements())
    }
}

fn remove_elements(table: &str, elements: &[(&'static str, String)]) -> String {
    elements
        .iter()
        .map(|(set, e)| {
            format!(
                "add element ip {table} {set} {{ {e} }}\ndelete element ip {table} {set} {{ {e} }}\n"
            )
        })
        .collect()
}

/// Script adding the node's underlay networks, which are node facts: never removed by a
/// CNCI (a stale one only forbids an address range the node no longer uses).
pub fn underlay_nets_script(table: &str, nets: &[Ipv4Net]) -> String {
    if nets.is_empty() {
        return String::new();
    }
    format!(
        "add element ip {table} underlay_nets {{ {} }}\n",
        join(nets)
    )
}

/// Creates the node-wide table unless `tables` (the namespace's ip tables) holds it; true if
/// this call created it. A concurrent creator makes `create` fail, after which the table exists
/// and is used as it is.
fn ensure_underlay_table_in(ns: Option<BorrowedFd<'_>>, tables: &[String]) -> Result<bool> {
    let (name, ruleset) = underlay_table();
    if tables.contains(&name) {
        return Ok(false);
    }
    match nft(
        ns,
        &["-f", "-"],
        &format!("create table ip {name}\n{ruleset}"),
    ) {
        Ok(_) => Ok(true),
        Err(_) if table_names(ns)?.contains(&name) => Ok(false),
        Err(e) => Err(e),
    }
}

/// [`ensure_underlay_table_in`] after listing the namespace's tables.
pub fn ensure_underlay_table(ns: Option<BorrowedFd<'_>>) -> Result<bool> {
    ensure_underlay_table_in(ns, &table_names(ns)?)
}

/// The names of the namespace's tables of family ip.
pub(crate) fn table_names(ns: Option<BorrowedFd<'_>>) -> Result<Vec<String>> {
    let tables = nft(ns, &["list", "tables", "ip"], "")?;
    Ok(tables
        .lines()
        .filter_map(|l| l.trim().strip_prefix("table ip "))
        .map(str::to_string)
        .collect())
}

/// Ensures the node-wide table and adds `uplink`'s elements and the underlay networks, moving
/// them out of [`EARLIER`] tables and deleting `legacy` (this CNCI's own table of a build
/// before the node-wide one) if it exists, in one transaction shared with the other CNCIs of
/// this process that ask meanwhile ([`crate::node_table`]).
pub fn add_uplink(
    ns: Option<BorrowedFd<'_>>,
    uplink: &Uplink,
    nets: &[Ipv4Net],
    legacy: &str,
) -> Result<()> {
    crate::node_table::apply(
        ns,
        crate::node_table::Change::Add {
            uplink: uplink.clone(),
            nets: nets.to_vec(),
            legacy: legacy.to_string(),
        },
    )
}

/// Removes exactly `uplink`'s elements (from earlier tables too); the table stays, if empty,
/// for the next CNCI.
pub fn remove_uplink(ns: Option<BorrowedFd<'_>>, uplink: &Uplink) -> Result<()> {
    crate::node_table::apply(
        ns,
        crate::node_table::Change::Remove {
            uplink: uplink.clone(),
        },
    )
}

fn join(nets: &[Ipv4Net]) -> String {
    let v: Vec<String> = nets.iter().map(|n| n.to_string()).collect();
    v.join(", ")
}

/// The tenant namespace's rules: outbound NAT through the uplink, public IP DNAT/SNAT, the
/// tenant's ingress rules before them, and no way in from outside except replies and mapped
/// public IPs.
pub fn tenant_rules(
    public_ips: &BTreeMap<Ipv4Addr, PublicIpRecord>,
    ingress: Option<&crate::ingress::IngressRecord>,
) -> String {
    let (ssh_map, mut dnat) = crate::ingress::render(ingress, UPLINK_TENANT);
    let outside = ingress.map_or_else(String::new, |i| {
        crate::ingress_rules::render(&i.rules, i.default_deny, UPLINK_TENANT)
    });
    let mut snat = String::new();
    for p in public_ips.values() {
        dnat.push_str(&format!(
            "    ip daddr {} dnat to {}\n",
            p.public_ip, p.private_ip
        ));
        snat.push_str(&format!(
            "    oifname \"{UPLINK_TENANT}\" ip saddr {} snat to {}\n",
            p.private_ip, p.public_ip
        ));
    }
    format!(
        r#"table ip {table} {{
{ssh_map}{outside}  chain prerouting {{
    type nat hook prerouting priority dstnat; policy accept;
{dnat}  }}
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
{snat}    oifname "{UPLINK_TENANT}" masquerade
  }}
  chain forward {{
    type filter hook forward priority filter; policy accept;
    iifname "{UPLINK_TENANT}" ct state established,related accept
    iifname "{UPLINK_TENANT}" ct status dnat accept
    iifname "{UPLINK_TENANT}" drop
  }}
  chain input {{
    type filter hook input priority filter; policy accept;
    iifname "{UPLINK_TENANT}" ct state established,related accept
    iifname "{UPLINK_TENANT}" drop
  }}
}}
"#,
        table = crate::names::TENANT_TABLE,
    )
}

/// Runs `nft` with `args` and `input` on stdin, in the namespace `ns` (the caller's if `None`).
pub(crate) fn nft(ns: Option<BorrowedFd<'_>>, args: &[&str], input: &str) -> Result<String> {
    let run = || -> netcore::Result<std::process::Output> {
        let mut child = Command::new("nft")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| netcore::Error::Io {
                op: "run nft".into(),
                source: e,
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(input.as_bytes())
                .map_err(|e| netcore::Error::Io {
                    op: "write to nft".into(),
                    source: e,
                })?;
        }
        child.wait_with_output().map_err(|e| netcore::Error::Io {
            op: "wait for nft".into(),
            source: e,
        })
    };
    // A child forked from a thread inside the namespace lives in that namespace.
    let out = match ns {
        Some(ns) => netcore::netns::run_in(ns, run)?,
        None => run()?,
    };
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(Error::Nft(format!(
            "nft {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Replaces table `table` (family ip) with `ruleset` in one transaction.
pub fn replace_table(ns: Option<BorrowedFd<'_>>, table: &str, ruleset: &str) -> Result<()> {
    let script = format!("table ip {table} {{}}\ndelete table ip {table}\n{ruleset}");
    nft(ns, &["-f", "-"], &script).map(|_| ())
}

/// Deletes table `table` (family ip) if it exists.
pub fn delete_table(ns: Option<BorrowedFd<'_>>, table: &str) -> Result<()> {
    let script = format!("table ip {table} {{}}\ndelete table ip {table}\n");
    nft(ns, &["-f", "-"], &script).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_table_is_named_by_its_version_and_each_cnci_owns_only_elements() {
        let (name, text) = underlay_table();
        assert!(name.starts_with(UNDERLAY_PREFIX));
        assert!(text.starts_with(&format!("table ip {name} {{")));
        assert_eq!(underlay_table(), (name.clone(), text));
        let up = Uplink {
            uplink: "cu1".into(),
            uplink_net: "100.64.0.0/31".parse().expect("net"),
            external_dev: Some("ext0".into()),
        };
        let add = up.add_script(&name);
        assert!(add.contains(r#"uplinks { "cu1" }"#));
        assert!(add.contains(r#"exits { "cu1" . "ext0" }"#));
        assert!(add.contains(r#"masq { 100.64.0.1 . "ext0" }"#));
        let earlier = up.remove_earlier_script("old");
        assert!(earlier.contains(r#"delete element ip old masq { 100.64.0.0/31 . "ext0" }"#));
        assert!(earlier.contains(r#"delete element ip old uplinks { "cu1" }"#));
        assert!(!add.contains("table ip") && !add.contains("chain"));
        let remove = up.remove_script(&name);
        assert_eq!(remove.matches("delete element").count(), 3);
        let isolated = Uplink {
            external_dev: None,
            ..up
        };
        assert_eq!(isolated.elements().len(), 1, "no exit: every forward drops");
        let nets = ["10.250.0.0/24".parse().expect("net")];
        assert!(underlay_nets_script(&name, &nets).contains("underlay_nets { 10.250.0.0/24 }"));
        assert!(underlay_nets_script(&name, &[]).is_empty());
    }

    #[test]
    fn tenant_rules_map_each_public_ip_both_ways() {
        let mut map = BTreeMap::new();
        map.insert(
            Ipv4Addr::new(203, 0, 113, 10),
            PublicIpRecord {
                public_ip: Ipv4Addr::new(203, 0, 113, 10),
                private_ip: Ipv4Addr::new(172, 16, 1, 10),
                instance_uuid: String::new(),
                vnic_mac: String::new(),
            },
        );
        let text = tenant_rules(&map, None);
        assert!(text.contains("ip daddr 203.0.113.10 dnat to 172.16.1.10"));
        assert!(text.contains("ip saddr 172.16.1.10 snat to 203.0.113.10"));
        assert!(!tenant_rules(&BTreeMap::new(), None).contains("dnat to"));
    }
}
