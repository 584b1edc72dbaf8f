//! Tenant-level ingress rules (issue 14, item 2): what may enter a tenant from outside (its
//! public IPs, its forwards and SSH ports), applied by its CNCI before any translation.
//!
//! An ordered list, first match wins (Neutron FWaaS / AWS network ACL style), then the
//! tenant's default action: `allow` (the default: a tenant without rules is as before) or
//! `deny`. Replies of established flows always pass. A port is the one the outside sees.

use std::fmt;
use std::str::FromStr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IngressAction {
    Allow,
    Deny,
}

/// The wire's protocol type, so that the controller, the frame and the CNCI share its names.
pub use ssntp::payloads::RuleProtocol as IngressProtocol;

/// A checked rule, without its id and position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressRuleSpec {
    pub action: IngressAction,
    pub protocol: IngressProtocol,
    /// tcp/udp only: `(min, max)`, 1..=65535, min <= max. `None`: every port.
    pub ports: Option<(u16, u16)>,
    /// IPv4 source without host bits; `None`: anywhere.
    pub remote_cidr: Option<Ipv4Net>,
    pub description: String,
}

/// A stored rule: `position` 1 is matched first; positions are 1..=n without gaps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressRule {
    pub uuid: Uuid,
    pub tenant: Uuid,
    pub position: u32,
    pub spec: IngressRuleSpec,
}

/// A tenant's rules in order and its default action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantIngressRules {
    pub tenant: Uuid,
    pub default: IngressAction,
    pub rules: Vec<IngressRule>,
}

/// A rule as the API takes it; numbers are wide so that 0 and 70000 get this module's message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngressRuleRequest {
    pub action: String,
    pub protocol: String,
    #[serde(default)]
    pub port_min: Option<i64>,
    #[serde(default)]
    pub port_max: Option<i64>,
    #[serde(default)]
    pub remote_cidr: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// Insert at this position (1 = first); omitted: append.
    #[serde(default)]
    pub position: Option<i64>,
}

/// The longest description kept.
const MAX_DESCRIPTION: usize = 255;

impl IngressRuleRequest {
    /// The checked rule and the position asked for, or what to fix.
    pub fn check(&self) -> Result<(IngressRuleSpec, Option<u32>), String> {
        let action = self.action.parse()?;
        let protocol = self.protocol.parse()?;
        let ports = self.ports(protocol)?;
        let remote_cidr = match &self.remote_cidr {
            None => None,
            Some(text) => Some(remote(text)?),
        };
        let description = self.description.clone().unwrap_or_default();
        if description.chars().count() > MAX_DESCRIPTION
            || description.chars().any(char::is_control)
        {
            return Err(format!(
                "description: at most {MAX_DESCRIPTION} characters, no control characters"
            ));
        }
        let position = match self.position {
            None => None,
            Some(p) => match u32::try_from(p) {
                Ok(p) if p > 0 => Some(p),
                _ => return Err(format!("position {p} is not 1 or more")),
            },
        };
        let spec = IngressRuleSpec {
            action,
            protocol,
            ports,
            remote_cidr,
            description,
        };
        Ok((spec, position))
    }

    fn ports(&self, protocol: IngressProtocol) -> Result<Option<(u16, u16)>, String> {
        let ported = matches!(protocol, IngressProtocol::Tcp | IngressProtocol::Udp);
        super::port_range(self.port_min, self.port_max, ported, &protocol)
    }
}

fn remote(text: &str) -> Result<Ipv4Net, String> {
    let net: Ipv4Net = text
        .parse()
        .map_err(|_| format!("remote_cidr {text:?} is not an IPv4 CIDR"))?;
    super::network_only(net.into())?;
    Ok(net)
}

impl IngressAction {
    pub fn as_str(self) -> &'static str {
        match self {
            IngressAction::Allow => "allow",
            IngressAction::Deny => "deny",
        }
    }
}

impl fmt::Display for IngressAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for IngressAction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "allow" => Ok(IngressAction::Allow),
            "deny" => Ok(IngressAction::Deny),
            _ => Err(format!("action {s:?} is not allow or deny")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(action: &str, protocol: &str) -> IngressRuleRequest {
        IngressRuleRequest {
            action: action.into(),
            protocol: protocol.into(),
            ..IngressRuleRequest::default()
        }
    }

    #[test]
    fn a_good_rule_is_checked_into_its_spec() {
        let mut r = req("deny", "tcp");
        r.port_min = Some(8080);
        r.remote_cidr = Some("203.0.113.101/32".into());
        r.position = Some(2);
        let (spec, position) = r.check().expect("valid");
        assert_eq!(spec.action, IngressAction::Deny);
        assert_eq!(spec.ports, Some((8080, 8080)));
        assert_eq!(
            spec.remote_cidr,
            Some("203.0.113.101/32".parse().expect("net"))
        );
        assert_eq!(position, Some(2));
        let (any, _) = req("allow", "any").check().expect("valid");
        assert_eq!((any.ports, any.remote_cidr), (None, None));
    }

    type Change = dyn Fn(&mut IngressRuleRequest);

    #[test]
    fn every_bad_rule_says_what_to_fix() {
        let with = |f: &dyn Fn(&mut IngressRuleRequest)| {
            let mut r = req("allow", "tcp");
            f(&mut r);
            r.check().expect_err("refused")
        };
        let cases: [(&Change, &str); 12] = [
            (&|r| r.port_min = Some(0), "port_min 0 is not a port"),
            (
                &|r| r.port_min = Some(70000),
                "port_min 70000 is not a port",
            ),
            (
                &|r| {
                    r.port_min = Some(80);
                    r.port_max = Some(65536)
                },
                "port_max 65536",
            ),
            (
                &|r| {
                    r.port_min = Some(90);
                    r.port_max = Some(80)
                },
                "above port_max",
            ),
            (&|r| r.port_max = Some(80), "port_max needs port_min"),
            (
                &|r| {
                    r.protocol = "icmp".into();
                    r.port_min = Some(80)
                },
                "tcp and udp only, not icmp",
            ),
            (
                &|r| {
                    r.protocol = "any".into();
                    r.port_min = Some(80)
                },
                "not any",
            ),
            (&|r| r.protocol = "sctp".into(), "protocol \"sctp\""),
            (&|r| r.action = "reject".into(), "action \"reject\""),
            (
                &|r| r.remote_cidr = Some("203.0.113.5/24".into()),
                "host bits",
            ),
            (
                &|r| r.remote_cidr = Some("2001:db8::/32".into()),
                "not an IPv4 CIDR",
            ),
            (&|r| r.position = Some(0), "position 0"),
        ];
        for (change, expected) in cases {
            let e = with(change);
            assert!(e.contains(expected), "{e} (expected {expected})");
        }
    }
}
