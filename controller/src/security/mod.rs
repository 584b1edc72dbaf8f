//! Security groups and their rules (issue 14), as values: the shape Neutron users know.
//!
//! A rule is checked here, once, from what the operator wrote ([`RuleRequest`]) into a
//! [`RuleSpec`] that cannot hold a contradiction (ports only for tcp/udp, ICMP fields only for
//! icmp/icmpv6, one remote at most). A remote group is still a name or id here: the store
//! resolves it inside the tenant.

use std::fmt;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub mod forward;
pub mod ingress_rule;
pub mod outcome;

/// Every tenant has this group, created with the tenant; it cannot be deleted.
pub const DEFAULT_GROUP: &str = "default";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityGroup {
    pub uuid: Uuid,
    pub tenant: Uuid,
    pub name: String,
    pub description: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    Ingress,
    Egress,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ethertype {
    Ipv4,
    Ipv6,
}

/// `any`, a named protocol, or an IP protocol number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Any,
    Tcp,
    Udp,
    Icmp,
    Icmpv6,
    Number(u8),
}

/// Where the traffic of a rule comes from (ingress) or goes to (egress).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Remote {
    Anywhere,
    Cidr(IpNet),
    Group(Uuid),
}

/// A checked rule, without its id and group.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RuleSpec {
    pub direction: Direction,
    pub ethertype: Ethertype,
    pub protocol: Protocol,
    /// tcp/udp only: `(min, max)`, 1..=65535, min <= max. `None`: every port.
    pub ports: Option<(u16, u16)>,
    /// icmp/icmpv6 only: the type, and the code (only with a type). `None`: any.
    pub icmp_type: Option<u8>,
    pub icmp_code: Option<u8>,
    pub remote: Remote,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityRule {
    pub uuid: Uuid,
    pub group: Uuid,
    pub spec: RuleSpec,
}

/// A rule as the API takes it. Numbers are wide so that `70000` gets this module's message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleRequest {
    pub direction: String,
    #[serde(default)]
    pub ethertype: Option<String>,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub port_min: Option<i64>,
    #[serde(default)]
    pub port_max: Option<i64>,
    #[serde(default)]
    pub icmp_type: Option<i64>,
    #[serde(default)]
    pub icmp_code: Option<i64>,
    #[serde(default)]
    pub remote_cidr: Option<String>,
    /// A group of the same tenant, by name or id.
    #[serde(default)]
    pub remote_group: Option<String>,
}

/// A rule refused before anything was stored; the text says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RuleError(pub String);

fn refuse<T>(why: impl Into<String>) -> Result<T, RuleError> {
    Err(RuleError(why.into()))
}

/// A rule's port range from the API's wide numbers (so that 0 and 70000 get this message, not
/// serde's): `None` when neither is given; ports only where `ported` (tcp, udp).
pub(crate) fn port_range(
    min: Option<i64>,
    max: Option<i64>,
    ported: bool,
    protocol: &dyn std::fmt::Display,
) -> Result<Option<(u16, u16)>, String> {
    let (min, max) = match (min, max) {
        (None, None) => return Ok(None),
        (Some(min), None) => (min, min),
        (None, Some(_)) => return Err("port_max needs port_min".into()),
        (Some(min), Some(max)) => (min, max),
    };
    if !ported {
        return Err(format!("ports apply to tcp and udp only, not {protocol}"));
    }
    let port = |value: i64, name: &str| match u16::try_from(value) {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(format!("{name} {value} is not a port (1-65535)")),
    };
    let (min, max) = (port(min, "port_min")?, port(max, "port_max")?);
    if min > max {
        return Err(format!("port_min {min} is above port_max {max}"));
    }
    Ok(Some((min, max)))
}

/// `cidr` if it has no host bits set.
pub(crate) fn network_only(cidr: IpNet) -> Result<IpNet, String> {
    if cidr.trunc() != cidr {
        return Err(format!(
            "remote_cidr {cidr} has host bits set (its network is {})",
            cidr.trunc()
        ));
    }
    Ok(cidr)
}

impl RuleRequest {
    /// The checked rule, and the remote group's name or id still to resolve.
    pub fn check(&self) -> Result<(RuleSpec, Option<String>), RuleError> {
        let direction = self.direction.parse()?;
        let ethertype = match &self.ethertype {
            None => Ethertype::Ipv4,
            Some(text) => text.parse()?,
        };
        let protocol = match &self.protocol {
            None => Protocol::Any,
            Some(text) => text.parse()?,
        };
        check_family(protocol, ethertype)?;
        let ports = self.ports(protocol)?;
        let (icmp_type, icmp_code) = self.icmp(protocol)?;
        let (remote, group) = self.remote(ethertype)?;
        let spec = RuleSpec {
            direction,
            ethertype,
            protocol,
            ports,
            icmp_type,
            icmp_code,
            remote,
        };
        Ok((spec, group))
    }

    fn ports(&self, protocol: Protocol) -> Result<Option<(u16, u16)>, RuleError> {
        let ported = matches!(protocol, Protocol::Tcp | Protocol::Udp);
        port_range(self.port_min, self.port_max, ported, &protocol).map_err(RuleError)
    }

    fn icmp(&self, protocol: Protocol) -> Result<(Option<u8>, Option<u8>), RuleError> {
        if self.icmp_type.is_none() && self.icmp_code.is_none() {
            return Ok((None, None));
        }
        if !matches!(protocol, Protocol::Icmp | Protocol::Icmpv6) {
            return refuse(format!(
                "icmp_type and icmp_code apply to icmp and icmpv6 only, not {protocol}"
            ));
        }
        if self.icmp_type.is_none() {
            return refuse("icmp_code needs icmp_type");
        }
        let byte = |value: Option<i64>, name: &str| match value.map(u8::try_from) {
            None => Ok(None),
            Some(Ok(v)) => Ok(Some(v)),
            Some(Err(_)) => refuse(format!("{name} {} is not in 0-255", value.unwrap_or(0))),
        };
        Ok((
            byte(self.icmp_type, "icmp_type")?,
            byte(self.icmp_code, "icmp_code")?,
        ))
    }

    fn remote(&self, ethertype: Ethertype) -> Result<(Remote, Option<String>), RuleError> {
        match (&self.remote_cidr, &self.remote_group) {
            (Some(_), Some(_)) => refuse("give remote_cidr or remote_group, not both"),
            (None, None) => Ok((Remote::Anywhere, None)),
            (None, Some(group)) if group.is_empty() => refuse("remote_group is empty"),
            // Resolved by the store; a placeholder until then.
            (None, Some(group)) => Ok((Remote::Group(Uuid::nil()), Some(group.clone()))),
            (Some(text), None) => {
                let cidr: IpNet = text
                    .parse()
                    .or_else(|_| refuse(format!("remote_cidr {text:?} is not a CIDR")))?;
                let cidr = network_only(cidr).map_err(RuleError)?;
                let v4 = matches!(cidr, IpNet::V4(_));
                if v4 != (ethertype == Ethertype::Ipv4) {
                    return refuse(format!("remote_cidr {cidr} is not {ethertype}"));
                }
                Ok((Remote::Cidr(cidr), None))
            }
        }
    }
}

/// icmp is IPv4's, icmpv6 is IPv6's.
fn check_family(protocol: Protocol, ethertype: Ethertype) -> Result<(), RuleError> {
    match (protocol, ethertype) {
        (Protocol::Icmp, Ethertype::Ipv6) => refuse("icmp with IPv6: use protocol icmpv6"),
        (Protocol::Icmpv6, Ethertype::Ipv4) => refuse("icmpv6 with IPv4: use protocol icmp"),
        _ => Ok(()),
    }
}

fn any_rule(direction: Direction, ethertype: Ethertype, remote: Remote) -> RuleSpec {
    RuleSpec {
        direction,
        ethertype,
        protocol: Protocol::Any,
        ports: None,
        icmp_type: None,
        icmp_code: None,
        remote,
    }
}

/// The rules every new group starts with, as in Neutron: all egress, IPv4 and IPv6 (a group
/// made for its ingress rules would otherwise cut its members' own egress). They are ordinary
/// rules: deleting them restricts egress.
pub fn new_group_rules() -> Vec<RuleSpec> {
    vec![
        any_rule(Direction::Egress, Ethertype::Ipv4, Remote::Anywhere),
        any_rule(Direction::Egress, Ethertype::Ipv6, Remote::Anywhere),
    ]
}

/// The four rules of a new `default` group whose id is `group`: all egress, and ingress from
/// members of the group itself.
pub fn default_rules(group: Uuid) -> Vec<RuleSpec> {
    let mut rules = new_group_rules();
    rules.push(any_rule(
        Direction::Ingress,
        Ethertype::Ipv4,
        Remote::Group(group),
    ));
    rules.push(any_rule(
        Direction::Ingress,
        Ethertype::Ipv6,
        Remote::Group(group),
    ));
    rules
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        })
    }
}

impl FromStr for Direction {
    type Err = RuleError;
    fn from_str(s: &str) -> Result<Self, RuleError> {
        match s {
            "ingress" => Ok(Direction::Ingress),
            "egress" => Ok(Direction::Egress),
            _ => refuse(format!("direction {s:?} is not ingress or egress")),
        }
    }
}

impl fmt::Display for Ethertype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Ethertype::Ipv4 => "IPv4",
            Ethertype::Ipv6 => "IPv6",
        })
    }
}

impl FromStr for Ethertype {
    type Err = RuleError;
    fn from_str(s: &str) -> Result<Self, RuleError> {
        match s {
            "IPv4" | "ipv4" => Ok(Ethertype::Ipv4),
            "IPv6" | "ipv6" => Ok(Ethertype::Ipv6),
            _ => refuse(format!("ethertype {s:?} is not IPv4 or IPv6")),
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Protocol::Any => f.write_str("any"),
            Protocol::Tcp => f.write_str("tcp"),
            Protocol::Udp => f.write_str("udp"),
            Protocol::Icmp => f.write_str("icmp"),
            Protocol::Icmpv6 => f.write_str("icmpv6"),
            Protocol::Number(n) => write!(f, "{n}"),
        }
    }
}

impl FromStr for Protocol {
    type Err = RuleError;
    /// A name, or a number 0-255 (the numbers of the named ones become their names).
    fn from_str(s: &str) -> Result<Self, RuleError> {
        Ok(match s {
            "any" => Protocol::Any,
            "tcp" | "6" => Protocol::Tcp,
            "udp" | "17" => Protocol::Udp,
            "icmp" | "1" => Protocol::Icmp,
            "icmpv6" | "58" => Protocol::Icmpv6,
            _ => match s.parse::<u8>() {
                Ok(n) => Protocol::Number(n),
                Err(_) => {
                    return refuse(format!(
                        "protocol {s:?} is not any, tcp, udp, icmp, icmpv6 or a number 0-255"
                    ))
                }
            },
        })
    }
}

impl fmt::Display for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Remote::Anywhere => f.write_str("anywhere"),
            Remote::Cidr(net) => write!(f, "{net}"),
            Remote::Group(g) => write!(f, "group {g}"),
        }
    }
}

#[cfg(test)]
mod tests;
