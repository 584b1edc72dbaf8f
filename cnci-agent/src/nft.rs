//! The agent's nftables rules, in tables of its own: one in the network node's underlay
//! namespace, one in the tenant namespace. Never anyone else's table, never a flush.
//!
//! Rules are written in nft's own syntax and loaded with `nft -f -`, one transaction per table
//! ("add, delete, define" replaces a table atomically). The JSON schema that the nftables crate
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

/// What the underlay table needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnderlayRules {
    pub table: String,
    /// The underlay side of the tenant uplink.
    pub uplink: String,
    pub uplink_net: Ipv4Net,
    pub external_dev: Option<String>,
    /// Networks of the underlay: tenant traffic must never reach them (VNI forgery).
    pub underlay_nets: Vec<Ipv4Net>,
}

impl UnderlayRules {
    /// The ruleset; its version chain names a digest of the inputs, so an unchanged table is
    /// recognised and left alone (replacing it would empty the reflection set).
    pub fn render(&self) -> String {
        let uplink = &self.uplink;
        let forward_guard = match &self.external_dev {
            Some(ext) => format!(
                "iifname \"{uplink}\" oifname != \"{ext}\" drop\n    iifname \"{uplink}\" ip daddr {{ {} }} drop",
                join(&self.underlay_nets)
            ),
            None => format!("iifname \"{uplink}\" drop"),
        };
        let masquerade = match &self.external_dev {
            Some(ext) => format!("ip saddr {} oifname \"{ext}\" masquerade", self.uplink_net),
            None => String::new(),
        };
        let body = format!(
            r#"table ip {table} {{
  # Reflection suppression (reference/vxlan-hub.md): remember which CN each inner source MAC
  # of each VNI arrived from, and never flood a frame back to the CN it came from.
  set reflect {{
    typeof ip saddr . @th,96,24 . @th,176,48
    size 65536
    flags dynamic,timeout
    timeout 1s
  }}
  chain reflect_in {{
    type filter hook input priority -300; policy accept;
    udp dport 4789 update @reflect {{ ip saddr . @th,96,24 . @th,176,48 }}
  }}
  chain reflect_out {{
    type filter hook output priority -300; policy accept;
    udp dport 4789 ip daddr . @th,96,24 . @th,176,48 @reflect drop
  }}
  # The tenant may reach the outside, never the network node itself or the underlay.
  chain uplink_in {{
    type filter hook input priority filter; policy accept;
    iifname "{uplink}" drop
  }}
  chain uplink_forward {{
    type filter hook forward priority filter; policy accept;
    {forward_guard}
  }}
  chain uplink_nat {{
    type nat hook postrouting priority srcnat; policy accept;
    {masquerade}
  }}
}}
"#,
            table = self.table,
        );
        let digest = netcore::ids::fnv64(&[body.as_bytes()]);
        body.replacen(
            "  set reflect",
            &format!("  chain version_{digest:016x} {{\n  }}\n  set reflect"),
            1,
        )
    }
}

fn join(nets: &[Ipv4Net]) -> String {
    let v: Vec<String> = nets.iter().map(|n| n.to_string()).collect();
    if v.is_empty() {
        "255.255.255.255".to_string()
    } else {
        v.join(", ")
    }
}

/// The tenant namespace's rules: outbound NAT through the uplink, public IP DNAT/SNAT, and no
/// way in from outside except replies and mapped public IPs.
pub fn tenant_rules(public_ips: &BTreeMap<Ipv4Addr, PublicIpRecord>) -> String {
    let mut dnat = String::new();
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
  chain prerouting {{
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
fn nft(ns: Option<BorrowedFd<'_>>, args: &[&str], input: &str) -> Result<String> {
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

/// Installs `ruleset` unless the table already holds exactly this version.
pub fn ensure_table(ns: Option<BorrowedFd<'_>>, table: &str, ruleset: &str) -> Result<bool> {
    let version = ruleset
        .lines()
        .find_map(|l| l.trim().strip_prefix("chain version_"))
        .map(|v| v.trim_end_matches(" {").to_string());
    if let (Some(version), Ok(current)) = (version, nft(ns, &["list", "table", "ip", table], "")) {
        if current.contains(&format!("chain version_{version}")) {
            return Ok(false);
        }
    }
    replace_table(ns, table, ruleset)?;
    Ok(true)
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
    fn underlay_rules_name_their_version_and_guard_the_uplink() {
        let rules = UnderlayRules {
            table: "ciao_cnci_x".into(),
            uplink: "cu1".into(),
            uplink_net: "100.64.0.0/31".parse().expect("net"),
            external_dev: Some("ext0".into()),
            underlay_nets: vec!["10.250.0.0/24".parse().expect("net")],
        };
        let text = rules.render();
        assert!(text.contains("chain version_"));
        assert!(text.contains(r#"iifname "cu1" oifname != "ext0" drop"#));
        assert!(text.contains("ip daddr { 10.250.0.0/24 } drop"));
        assert!(text.contains("ip saddr 100.64.0.0/31 oifname \"ext0\" masquerade"));
        let mut other = rules.clone();
        other.external_dev = None;
        assert_ne!(text, other.render());
        assert!(other.render().contains(r#"iifname "cu1" drop"#));
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
        let text = tenant_rules(&map);
        assert!(text.contains("ip daddr 203.0.113.10 dnat to 172.16.1.10"));
        assert!(text.contains("ip saddr 172.16.1.10 snat to 203.0.113.10"));
        assert!(!tenant_rules(&BTreeMap::new()).contains("dnat to"));
    }
}
