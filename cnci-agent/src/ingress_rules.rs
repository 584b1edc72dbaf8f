//! The tenant's ingress rules (issue 14): what may enter the tenant namespace from outside (to
//! its public IPs, its forwards and SSH ports), in the tenant's order, first match wins, then
//! the tenant's default action. Replies of established flows always pass.
//!
//! One base chain `outside` of the tenant table at prerouting, priority -110: before the DNAT
//! of the forwards, SSH ports and public IPs (dstnat, -100), so a rule's port is the one the
//! outside sees, and after conntrack (-200), so `ct state` is known. `accept` there only ends
//! this chain: the packet goes on to the DNAT and the forward chain as before.

use std::fmt::Write as _;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use ssntp::payloads::{CheckedIngressRule, RuleProtocol};

/// One rule as applied, persisted in `ingress.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantRule {
    pub allow: bool,
    pub protocol: RuleProtocol,
    /// tcp/udp only; `None`: every port.
    pub ports: Option<(u16, u16)>,
    /// `None`: any source.
    pub remote: Option<Ipv4Net>,
}

impl TenantRule {
    /// The rule of a checked payload rule.
    pub fn from_checked(r: &CheckedIngressRule) -> Result<Self, String> {
        let remote = match r.remote {
            Some(net) => Some(
                Ipv4Net::new(net.network(), net.prefix_len())
                    .map_err(|e| format!("rule remote_cidr {net}: {e}"))?,
            ),
            None => None,
        };
        Ok(TenantRule {
            allow: r.allow,
            protocol: r.protocol,
            ports: r.ports,
            remote,
        })
    }

    /// The rule's nft statement, without indentation.
    pub fn nft(&self) -> String {
        let mut line = String::new();
        if let Some(net) = self.remote {
            let _ = write!(line, "ip saddr {net} ");
        }
        let name = (self.protocol != RuleProtocol::Any).then(|| self.protocol.as_str());
        match (name, self.ports) {
            (Some(p), Some((min, max))) if min == max => {
                let _ = write!(line, "{p} dport {min} ");
            }
            (Some(p), Some((min, max))) => {
                let _ = write!(line, "{p} dport {min}-{max} ");
            }
            (Some(p), None) => {
                let _ = write!(line, "ip protocol {p} ");
            }
            (None, _) => {}
        }
        line.push_str(if self.allow { "accept" } else { "drop" });
        line
    }

    /// As `ciao-cnci-agent show` prints it.
    pub fn describe(&self) -> String {
        let ports = match self.ports {
            Some((a, b)) if a == b => format!(" port {a}"),
            Some((a, b)) => format!(" ports {a}-{b}"),
            None => String::new(),
        };
        let from = self
            .remote
            .map(|n| n.to_string())
            .unwrap_or("anywhere".into());
        let action = if self.allow { "allow" } else { "deny" };
        format!("{action} {}{ports} from {from}", self.protocol)
    }
}

/// The `outside` chain for `rules` and the default; empty when there is nothing to filter
/// (no rule and the default allow: the table is exactly what it was before rules existed).
pub fn render(rules: &[TenantRule], default_deny: bool, uplink: &str) -> String {
    if rules.is_empty() && !default_deny {
        return String::new();
    }
    let mut chain = format!(
        "  chain outside {{\n    type filter hook prerouting priority -110; policy accept;\n    iifname != \"{uplink}\" accept\n    ct state established,related accept\n"
    );
    for r in rules {
        let _ = writeln!(chain, "    {}", r.nft());
    }
    if default_deny {
        chain.push_str("    drop\n");
    }
    chain.push_str("  }\n");
    chain
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(
        allow: bool,
        protocol: RuleProtocol,
        ports: Option<(u16, u16)>,
        cidr: &str,
    ) -> TenantRule {
        TenantRule {
            allow,
            protocol,
            ports,
            remote: (!cidr.is_empty()).then(|| cidr.parse().expect("net")),
        }
    }

    #[test]
    fn rules_render_in_order_then_the_default() {
        let rules = [
            rule(
                false,
                RuleProtocol::Tcp,
                Some((8080, 8080)),
                "203.0.113.101/32",
            ),
            rule(true, RuleProtocol::Udp, Some((5000, 5100)), ""),
            rule(true, RuleProtocol::Icmp, None, "198.51.100.0/24"),
            rule(true, RuleProtocol::Tcp, None, ""),
            rule(false, RuleProtocol::Any, None, "10.0.0.0/8"),
        ];
        let chain = render(&rules, true, "up");
        let lines: Vec<&str> = chain.lines().map(str::trim).collect();
        assert_eq!(
            lines,
            [
                "chain outside {",
                "type filter hook prerouting priority -110; policy accept;",
                "iifname != \"up\" accept",
                "ct state established,related accept",
                "ip saddr 203.0.113.101/32 tcp dport 8080 drop",
                "udp dport 5000-5100 accept",
                "ip saddr 198.51.100.0/24 ip protocol icmp accept",
                "ip protocol tcp accept",
                "ip saddr 10.0.0.0/8 drop",
                "drop",
                "}",
            ]
        );
        assert!(!render(&rules, false, "up").contains("    drop\n  }"));
        assert_eq!(render(&[], false, "up"), "");
        assert!(render(&[], true, "up").contains("    drop\n"));
        assert_eq!(
            rules[0].describe(),
            "deny tcp port 8080 from 203.0.113.101/32"
        );
    }
}
