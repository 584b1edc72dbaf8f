//! Security groups on this node (issue 14): tells the controllers which ports are in which
//! groups (EVENT PortGroups) and enforces the groups they send back (COMMAND
//! SecurityGroupsUpdate) through netcore's `ciao_sg_v1` table.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::Context;
use netcore::secgroups::{Direction, Enforcer, Group, Port, Protocol, Remote, Rule, TenantGroups};
use ssntp::frame::{command, event, kind, Frame};
use ssntp::payloads::{
    Payload, PortGroups, PortGroupsEvent, PortGroupsPort, SecurityGroupsApplied,
    SecurityGroupsOutcome, SecurityGroupsUpdate, SecurityRuleItem,
};
use uuid::Uuid;

/// How often every PortGroups is sent again: the scheduler drops events while no controller
/// is connected, and the answer is the controller's current snapshot.
pub const RESEND_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// One tenant's filtered ports as last sent: address and groups.
type Sent = Vec<(Ipv4Addr, Vec<String>)>;

/// What this node told the controllers and loaded into the kernel.
#[derive(Default)]
pub struct SecGroups {
    sent: BTreeMap<Uuid, Sent>,
    /// The snapshots (persisted, kept in memory once read: the daemon is their only writer)
    /// and the table; made at first use.
    enforcer: Option<Enforcer>,
    /// Tenant → generation of the SecurityGroupsUpdates recorded and not yet answered (the
    /// answer follows the next apply).
    unanswered: BTreeMap<Uuid, u64>,
}

/// True for a COMMAND SecurityGroupsUpdate.
pub fn is_update(frame: &Frame) -> bool {
    (frame.kind, frame.operand) == (kind::COMMAND, command::SECURITY_GROUPS_UPDATE)
}

impl SecGroups {
    /// A PortGroups for every tenant whose filtered ports changed since last sent (all of
    /// them if `all`: a new session); a tenant whose last port went gets one with none.
    pub fn port_groups(
        &mut self,
        agent: Uuid,
        ports: &BTreeMap<Uuid, Vec<Port>>,
        all: bool,
    ) -> Vec<Frame> {
        let mut frames = Vec::new();
        let mut now: BTreeMap<Uuid, Sent> = ports
            .iter()
            .map(|(t, ps)| (*t, ps.iter().map(|p| (p.ip, p.groups.clone())).collect()))
            .collect();
        for (tenant, list) in now.iter().chain(self.gone(&now).iter()) {
            if all || self.sent.get(tenant) != Some(list) {
                frames.push(port_groups_frame(agent, *tenant, list));
            }
        }
        now.retain(|_, list| !list.is_empty());
        self.sent = now;
        frames
    }

    /// Tenants sent before that have no filtered port now, each with an empty list.
    fn gone(&self, now: &BTreeMap<Uuid, Sent>) -> BTreeMap<Uuid, Sent> {
        self.sent
            .keys()
            .filter(|t| !now.contains_key(*t))
            .map(|t| (*t, Vec::new()))
            .collect()
    }

    /// Makes the kernel enforce the recorded ports with the persisted snapshots; why not, if
    /// it could not.
    pub fn apply(
        &mut self,
        state_dir: &Path,
        ports: &BTreeMap<Uuid, Vec<Port>>,
    ) -> Result<(), String> {
        self.enforcer(state_dir)
            .apply(ports)
            .map(|_| ())
            .map_err(|e| {
                tracing::error!("cannot load the security groups: {e}");
                e.to_string()
            })
    }

    /// A SecurityGroupsApplied for each update recorded since the last answers, with the
    /// outcome of the apply that followed it.
    pub fn answers(&mut self, agent: Uuid, outcome: &Result<(), String>) -> Vec<Frame> {
        let reason = outcome.as_ref().err().cloned().unwrap_or_default();
        std::mem::take(&mut self.unanswered)
            .into_iter()
            .map(|(tenant, generation)| {
                let payload = SecurityGroupsApplied(SecurityGroupsOutcome {
                    agent_uuid: agent.to_string(),
                    tenant_uuid: tenant.to_string(),
                    generation,
                    reason: reason.clone(),
                });
                Frame::new(
                    kind::EVENT,
                    event::SECURITY_GROUPS_APPLIED,
                    agent,
                    payload.to_yaml(),
                )
            })
            .collect()
    }

    /// Persists a SecurityGroupsUpdate for this node; the caller then applies.
    pub fn record(&mut self, state_dir: &Path, agent: Uuid, frame: &Frame) -> anyhow::Result<Uuid> {
        let cmd = SecurityGroupsUpdate::from_yaml(&frame.payload)?;
        let to = cmd.agent()?;
        anyhow::ensure!(
            to == agent,
            "a SecurityGroupsUpdate for {to}, not this node"
        );
        let snap = snapshot_of(&cmd)?;
        let (tenant, generation, groups) = (snap.tenant, snap.generation, snap.groups.len());
        self.enforcer(state_dir)
            .record(snap)
            .context("persist the snapshot")?;
        tracing::info!(%tenant, generation, groups, "security groups received");
        self.unanswered.insert(tenant, generation);
        Ok(tenant)
    }

    fn enforcer(&mut self, state_dir: &Path) -> &mut Enforcer {
        self.enforcer
            .get_or_insert_with(|| Enforcer::new(state_dir))
    }
}

fn port_groups_frame(agent: Uuid, tenant: Uuid, list: &Sent) -> Frame {
    let payload = PortGroups(PortGroupsEvent {
        agent_uuid: agent.to_string(),
        tenant_uuid: tenant.to_string(),
        ports: list
            .iter()
            .map(|(ip, groups)| PortGroupsPort {
                ip: ip.to_string(),
                groups: groups.clone(),
            })
            .collect(),
    });
    Frame::new(kind::EVENT, event::PORT_GROUPS, agent, payload.to_yaml())
}

/// The wire snapshot as netcore's; a rule the node cannot read is left out (allowing less),
/// a member that is no IPv4 address likewise.
fn snapshot_of(cmd: &SecurityGroupsUpdate) -> anyhow::Result<TenantGroups> {
    let tenant = cmd.tenant()?;
    let groups = cmd
        .groups
        .iter()
        .map(|g| Group {
            name: g.name.clone(),
            uuid: g.uuid.parse().ok(),
            rules: g
                .rules
                .iter()
                .filter_map(|r| match rule_of(r) {
                    Ok(rule) => Some(rule),
                    Err(e) => {
                        tracing::warn!(group = %g.name, "ignoring a rule: {e}");
                        None
                    }
                })
                .collect(),
            members: g.members.iter().filter_map(|m| m.parse().ok()).collect(),
        })
        .collect();
    Ok(TenantGroups {
        tenant,
        generation: cmd.generation,
        groups,
    })
}

fn rule_of(r: &SecurityRuleItem) -> anyhow::Result<Rule> {
    let direction = match r.direction.as_str() {
        "ingress" => Direction::Ingress,
        "egress" => Direction::Egress,
        other => anyhow::bail!("direction {other:?}"),
    };
    let ipv6 = match r.ethertype.as_str() {
        "" | "IPv4" | "ipv4" => false,
        "IPv6" | "ipv6" => true,
        other => anyhow::bail!("ethertype {other:?}"),
    };
    let protocol = match r.protocol.as_str() {
        "" | "any" => Protocol::Any,
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        "icmp" => Protocol::Icmp,
        "icmpv6" => Protocol::Icmpv6,
        n => Protocol::Number(n.parse().with_context(|| format!("protocol {n:?}"))?),
    };
    let port = |p: u32| u16::try_from(p).ok().filter(|p| *p > 0);
    let ports = match (port(r.port_min), port(r.port_max)) {
        (None, _) if r.port_min == 0 => None,
        (Some(lo), Some(hi)) if lo <= hi => Some((lo, hi)),
        (Some(lo), None) if r.port_max == 0 => Some((lo, lo)),
        _ => anyhow::bail!("ports {}-{}", r.port_min, r.port_max),
    };
    let icmp = match (r.icmp_type.as_str(), r.icmp_code.as_str()) {
        ("", _) => None,
        (t, "") => Some((t.parse()?, None)),
        (t, c) => Some((t.parse()?, Some(c.parse()?))),
    };
    let remote = match (r.remote_cidr.as_str(), r.remote_group.as_str()) {
        ("", "") => Remote::Anywhere,
        (cidr, "") => Remote::Cidr(
            cidr.parse()
                .with_context(|| format!("remote_cidr {cidr:?}"))?,
        ),
        ("", group) => Remote::Group(group.to_string()),
        _ => anyhow::bail!("both remote_cidr and remote_group"),
    };
    Ok(Rule {
        direction,
        ipv6,
        protocol,
        ports,
        icmp,
        remote,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(ip: u8, groups: &[&str]) -> Port {
        Port {
            tenant: Uuid::from_u128(1),
            bridge: "br".into(),
            ifname: format!("v{ip}"),
            ip: Ipv4Addr::new(10, 0, 0, ip),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            zone: 1,
        }
    }

    #[test]
    fn port_groups_go_out_on_change_and_once_when_the_last_port_goes() {
        let mut sg = SecGroups::default();
        let agent = Uuid::from_u128(9);
        let t = Uuid::from_u128(1);
        let ports = BTreeMap::from([(t, vec![port(2, &["web"])])]);
        assert_eq!(sg.port_groups(agent, &ports, false).len(), 1);
        assert!(sg.port_groups(agent, &ports, false).is_empty());
        assert_eq!(sg.port_groups(agent, &ports, true).len(), 1);
        let gone = sg.port_groups(agent, &BTreeMap::new(), false);
        let p = PortGroups::from_yaml(&gone[0].payload).expect("parses");
        assert!(p.ports.is_empty());
        assert!(sg.port_groups(agent, &BTreeMap::new(), false).is_empty());
    }

    #[test]
    fn wire_rules_become_netcore_rules() {
        let r = SecurityRuleItem {
            direction: "ingress".into(),
            ethertype: "IPv4".into(),
            protocol: "tcp".into(),
            port_min: 22,
            port_max: 22,
            remote_group: "admin".into(),
            ..Default::default()
        };
        let rule = rule_of(&r).expect("valid");
        assert_eq!(rule.ports, Some((22, 22)));
        assert_eq!(rule.remote, Remote::Group("admin".into()));
        let bad = SecurityRuleItem {
            port_min: 70000,
            ..r
        };
        assert!(rule_of(&bad).is_err());
    }
}

#[cfg(test)]
mod answer_tests {
    use super::*;
    use ssntp::payloads::SecurityGroupsUpdateCmd;

    fn update(agent: Uuid, tenant: u128, generation: u64) -> Frame {
        let cmd = SecurityGroupsUpdate(SecurityGroupsUpdateCmd {
            agent_uuid: agent.to_string(),
            tenant_uuid: Uuid::from_u128(tenant).to_string(),
            generation,
            groups: Vec::new(),
        });
        Frame::new(
            kind::COMMAND,
            command::SECURITY_GROUPS_UPDATE,
            Uuid::nil(),
            cmd.to_yaml(),
        )
    }

    fn read(frames: &[Frame]) -> Vec<(u64, String)> {
        frames
            .iter()
            .map(|f| {
                assert_eq!(
                    (f.kind, f.operand),
                    (kind::EVENT, event::SECURITY_GROUPS_APPLIED)
                );
                let a = SecurityGroupsApplied::from_yaml(&f.payload).expect("answer");
                (a.0.generation, a.0.reason)
            })
            .collect()
    }

    #[test]
    fn each_recorded_update_is_answered_once_with_the_applys_outcome() {
        let dir = tempfile::tempdir().expect("tempdir");
        let agent = Uuid::from_u128(7);
        let mut g = SecGroups::default();
        g.record(dir.path(), agent, &update(agent, 1, 4))
            .expect("t1");
        g.record(dir.path(), agent, &update(agent, 2, 5))
            .expect("t2");
        g.record(dir.path(), agent, &update(agent, 1, 6))
            .expect("t1 again");
        let ok = g.answers(agent, &Ok(()));
        assert_eq!(read(&ok), [(6, String::new()), (5, String::new())]);
        assert!(g.answers(agent, &Ok(())).is_empty(), "answered once");
        g.record(dir.path(), agent, &update(agent, 2, 8))
            .expect("t2");
        let failed = g.answers(agent, &Err("nft refused".into()));
        assert_eq!(read(&failed), [(8, "nft refused".to_string())]);
        let other = Uuid::from_u128(8);
        assert!(g.record(dir.path(), agent, &update(other, 1, 9)).is_err());
        assert!(g.answers(agent, &Ok(())).is_empty(), "not for this node");
    }
}
