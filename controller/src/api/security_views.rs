//! The JSON documents of security groups, rules, forwards and SSH access.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::security::forward::{Forward, SshAccess};
use crate::security::{Remote, SecurityGroup, SecurityRule};

/// A group with its rules (`GET .../security-groups[/{group}]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupView {
    pub uuid: Uuid,
    pub tenant: Uuid,
    pub name: String,
    pub description: String,
    pub rules: Vec<RuleView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleView {
    pub uuid: Uuid,
    pub security_group: Uuid,
    /// `ingress` or `egress`.
    pub direction: String,
    /// `IPv4` or `IPv6`.
    pub ethertype: String,
    /// `any`, `tcp`, `udp`, `icmp`, `icmpv6` or a protocol number.
    pub protocol: String,
    pub port_min: Option<u16>,
    pub port_max: Option<u16>,
    pub icmp_type: Option<u8>,
    pub icmp_code: Option<u8>,
    pub remote_cidr: Option<String>,
    pub remote_group: Option<Uuid>,
    /// The remote group's name, for reading.
    pub remote_group_name: Option<String>,
}

/// The body of `POST .../security-groups`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupRequest {
    pub name: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardView {
    pub uuid: Uuid,
    pub tenant: Uuid,
    pub public_ip: Ipv4Addr,
    /// `tcp` or `udp`.
    pub protocol: String,
    pub public_port: u16,
    pub private_ip: Ipv4Addr,
    pub private_port: u16,
}

/// The body of `PUT .../ssh`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshRequest {
    pub enabled: bool,
}

/// `GET/PUT .../ssh`: whether it is on, the forward IP, and each subnet's block of ports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshView {
    pub tenant: Uuid,
    pub enabled: bool,
    /// `tenant` (its own choice) or `cluster` (the `[ssh] default` of the config).
    pub source: String,
    pub forward_ip: Option<Ipv4Addr>,
    /// The address at offset `i` of `subnet` is reached on `first_port + i`.
    pub blocks: Vec<SshBlockView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshBlockView {
    pub subnet: Ipv4Net,
    pub first_port: u16,
    pub last_port: u16,
}

impl GroupView {
    /// The group and those of `rules` that are its own; `groups` names remote groups.
    pub fn new(group: &SecurityGroup, rules: &[SecurityRule], groups: &[SecurityGroup]) -> Self {
        GroupView {
            uuid: group.uuid,
            tenant: group.tenant,
            name: group.name.clone(),
            description: group.description.clone(),
            rules: rules
                .iter()
                .filter(|r| r.group == group.uuid)
                .map(|r| RuleView::new(r, groups))
                .collect(),
        }
    }
}

impl RuleView {
    pub fn new(rule: &SecurityRule, groups: &[SecurityGroup]) -> Self {
        let s = &rule.spec;
        let (remote_cidr, remote_group) = match &s.remote {
            Remote::Anywhere => (None, None),
            Remote::Cidr(net) => (Some(net.to_string()), None),
            Remote::Group(g) => (None, Some(*g)),
        };
        RuleView {
            uuid: rule.uuid,
            security_group: rule.group,
            direction: s.direction.to_string(),
            ethertype: s.ethertype.to_string(),
            protocol: s.protocol.to_string(),
            port_min: s.ports.map(|p| p.0),
            port_max: s.ports.map(|p| p.1),
            icmp_type: s.icmp_type,
            icmp_code: s.icmp_code,
            remote_cidr,
            remote_group,
            remote_group_name: remote_group
                .and_then(|g| groups.iter().find(|x| x.uuid == g))
                .map(|g| g.name.clone()),
        }
    }
}

impl From<&Forward> for ForwardView {
    fn from(f: &Forward) -> Self {
        ForwardView {
            uuid: f.uuid,
            tenant: f.tenant,
            public_ip: f.public,
            protocol: f.protocol.to_string(),
            public_port: f.public_port,
            private_ip: f.private,
            private_port: f.private_port,
        }
    }
}

impl From<&SshAccess> for SshView {
    fn from(a: &SshAccess) -> Self {
        SshView {
            tenant: a.tenant,
            enabled: a.enabled,
            source: if a.chosen { "tenant" } else { "cluster" }.to_owned(),
            forward_ip: a.forward_ip,
            blocks: a
                .blocks
                .iter()
                .map(|b| SshBlockView {
                    subnet: b.cidr,
                    first_port: b.base,
                    last_port: u16::try_from(b.last_port()).unwrap_or(u16::MAX),
                })
                .collect(),
        }
    }
}
