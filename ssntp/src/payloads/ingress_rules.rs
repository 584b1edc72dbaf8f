//! The tenant's ingress rules inside TenantIngress (issue 14): an ordered list, first match
//! wins, then the tenant's default action. The CNCI filters what enters from outside with them
//! before any DNAT, so a port is the one the outside sees.

use std::net::Ipv4Addr;

use super::{invalid, Ipv4Subnet, Payload, PayloadError, TenantIngress};

yaml_struct! {
    /// One rule, in the tenant's order.
    pub struct IngressRule {
        /// `allow` or `deny`.
        pub action: String,
        /// `tcp`, `udp`, `icmp` or `any`.
        pub protocol: String,
        /// tcp/udp only; 0 = every port.
        pub port_min: u32,
        pub port_max: u32,
        /// An IPv4 network without host bits; `""` = any source.
        pub remote_cidr: String,
    }
}

/// What a rule matches of the IP protocol (also the controller's and the CNCI's type: one
/// set of names everywhere).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum RuleProtocol {
    Any,
    Tcp,
    Udp,
    Icmp,
}

impl RuleProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleProtocol::Any => "any",
            RuleProtocol::Tcp => "tcp",
            RuleProtocol::Udp => "udp",
            RuleProtocol::Icmp => "icmp",
        }
    }
}

impl std::fmt::Display for RuleProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for RuleProtocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "any" => Ok(RuleProtocol::Any),
            "tcp" => Ok(RuleProtocol::Tcp),
            "udp" => Ok(RuleProtocol::Udp),
            "icmp" => Ok(RuleProtocol::Icmp),
            _ => Err(format!("protocol {s:?} is not tcp, udp, icmp or any")),
        }
    }
}

/// A rule with its values checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CheckedIngressRule {
    pub allow: bool,
    pub protocol: RuleProtocol,
    /// `(min, max)`, tcp/udp only; `None`: every port.
    pub ports: Option<(u16, u16)>,
    /// `None`: any source.
    pub remote: Option<Ipv4Subnet>,
}

const KEY: &str = TenantIngress::NAME;

fn check_rule(r: &IngressRule) -> Result<CheckedIngressRule, PayloadError> {
    let allow = match r.action.as_str() {
        "allow" => true,
        "deny" => false,
        other => return Err(invalid(KEY, "rules.action", other, "is not allow or deny")),
    };
    let protocol: RuleProtocol = r.protocol.parse().map_err(|_| {
        invalid(
            KEY,
            "rules.protocol",
            &r.protocol,
            "is not any, tcp, udp or icmp",
        )
    })?;
    Ok(CheckedIngressRule {
        allow,
        protocol,
        ports: ports(r, protocol)?,
        remote: remote(&r.remote_cidr)?,
    })
}

fn ports(r: &IngressRule, protocol: RuleProtocol) -> Result<Option<(u16, u16)>, PayloadError> {
    if r.port_min == 0 && r.port_max == 0 {
        return Ok(None);
    }
    if !matches!(protocol, RuleProtocol::Tcp | RuleProtocol::Udp) {
        return Err(invalid(
            KEY,
            "rules.port_min",
            &r.port_min.to_string(),
            "ports apply to tcp and udp only",
        ));
    }
    let port = |key: &'static str, v: u32| match u16::try_from(v) {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(invalid(KEY, key, &v.to_string(), "is not a port (1-65535)")),
    };
    let (min, max) = (
        port("rules.port_min", r.port_min)?,
        port("rules.port_max", r.port_max)?,
    );
    if min > max {
        return Err(invalid(
            KEY,
            "rules.port_max",
            &max.to_string(),
            "is below port_min",
        ));
    }
    Ok(Some((min, max)))
}

fn remote(text: &str) -> Result<Option<Ipv4Subnet>, PayloadError> {
    if text.is_empty() {
        return Ok(None);
    }
    let net: Ipv4Subnet = text
        .parse()
        .map_err(|_| invalid(KEY, "rules.remote_cidr", text, "is not an IPv4 CIDR"))?;
    let addr: Option<Ipv4Addr> = text.split('/').next().and_then(|a| a.parse().ok());
    if addr != Some(net.network()) {
        return Err(invalid(KEY, "rules.remote_cidr", text, "has host bits set"));
    }
    Ok(Some(net))
}

impl TenantIngress {
    /// The rules in order, each checked.
    pub fn rules(&self) -> Result<Vec<CheckedIngressRule>, PayloadError> {
        self.0.rules.iter().map(check_rule).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payloads::TenantIngressCmd;

    fn rule(action: &str, protocol: &str, ports: (u32, u32), cidr: &str) -> IngressRule {
        IngressRule {
            action: action.into(),
            protocol: protocol.into(),
            port_min: ports.0,
            port_max: ports.1,
            remote_cidr: cidr.into(),
        }
    }

    fn with(rules: Vec<IngressRule>) -> TenantIngress {
        TenantIngress(TenantIngressCmd {
            rules,
            default_deny: true,
            ..TenantIngressCmd::default()
        })
    }

    #[test]
    fn rules_round_trip_in_order() {
        let cmd = with(vec![
            rule("deny", "tcp", (8080, 8080), "203.0.113.101/32"),
            rule("allow", "icmp", (0, 0), ""),
            rule("allow", "udp", (5000, 5100), "198.51.100.0/24"),
        ]);
        let back = TenantIngress::from_yaml(&cmd.to_yaml()).expect("parse");
        assert_eq!(back, cmd);
        assert!(back.0.default_deny);
        let rules = back.rules().expect("valid");
        assert_eq!(rules.len(), 3);
        assert!(!rules[0].allow);
        assert_eq!(rules[0].ports, Some((8080, 8080)));
        assert_eq!(
            rules[0].remote.map(|r| r.to_string()),
            Some("203.0.113.101/32".to_string())
        );
        assert_eq!(rules[1].protocol, RuleProtocol::Icmp);
        assert_eq!(rules[1].remote, None);
        assert_eq!(rules[2].ports, Some((5000, 5100)));
        // A frame of a controller without rules (neither key) is the default: allow all.
        let old = b"tenant_ingress:\n  concentrator_uuid: x\n  forward_ip: \"\"\n";
        let back = TenantIngress::from_yaml(old).expect("parse");
        assert!(back.rules().expect("none").is_empty() && !back.0.default_deny);
    }

    #[test]
    fn bad_rules_are_named() {
        for (bad, key) in [
            (rule("maybe", "tcp", (0, 0), ""), "rules.action"),
            (rule("allow", "sctp", (0, 0), ""), "rules.protocol"),
            (rule("allow", "tcp", (70000, 70000), ""), "rules.port_min"),
            (rule("allow", "tcp", (0, 80), ""), "rules.port_min"),
            (rule("allow", "tcp", (90, 80), ""), "rules.port_max"),
            (rule("allow", "icmp", (80, 80), ""), "rules.port_min"),
            (rule("allow", "any", (80, 80), ""), "rules.port_min"),
            (
                rule("allow", "tcp", (0, 0), "10.0.0.1/8"),
                "rules.remote_cidr",
            ),
            (rule("allow", "tcp", (0, 0), "nope"), "rules.remote_cidr"),
        ] {
            let e = with(vec![bad.clone()])
                .rules()
                .expect_err("refused")
                .to_string();
            assert!(e.contains(key), "{bad:?}: {e}");
        }
    }
}
