//! Security groups toward the compute nodes (issue 14): EVENT PortGroups records which ports
//! of a node are in which groups (persisted before anything is sent), and every node whose
//! snapshot of a tenant's groups changed gets a COMMAND SecurityGroupsUpdate: the groups its
//! ports use, the groups their rules name as remote, members cluster-wide.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

use ssntp::frame::{command, kind, Frame};
use ssntp::payloads::{
    Payload, PortGroups, SecurityGroupItem, SecurityGroupsApplied, SecurityGroupsUpdate,
    SecurityGroupsUpdateCmd, SecurityRuleItem,
};
use uuid::Uuid;

use super::{Controller, HandleError, Out};
use crate::security::{Remote, SecurityGroup, SecurityRule};
use crate::store::{PortMembership, StoreError};

/// (compute node, tenant) → the groups last sent and their generation.
pub type Sent = HashMap<(Uuid, Uuid), (Vec<SecurityGroupItem>, u64)>;

/// Group names as the controller takes them: 1-64 of letters, digits, `.`, `_`, `-`.
fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

impl Controller {
    pub(super) fn port_groups(&mut self, payload: &[u8]) -> Out {
        let report = PortGroups::from_yaml(payload)?;
        let node = report.agent()?;
        let tenant = report.tenant()?;
        let mut ports = Vec::with_capacity(report.ports.len());
        for p in &report.ports {
            let ip: Ipv4Addr = p.ip.parse().map_err(|_| {
                HandleError::Refused(format!("port_groups.ports.ip {:?} is not IPv4", p.ip))
            })?;
            if let Some(bad) = p.groups.iter().find(|g| !valid_name(g)) {
                return Err(HandleError::Refused(format!(
                    "port_groups.ports.groups {bad:?} is not a group name"
                )));
            }
            ports.push((ip, p.groups.clone()));
        }
        let changed = self.store.set_port_groups(node, tenant, &ports)?;
        tracing::info!(%node, %tenant, ports = ports.len(), changed, "port groups");
        self.sg_snapshots(tenant, Some(node))
    }

    /// EVENT SecurityGroupsApplied: a node's answer, kept for the API (the scheduler checked
    /// that the sender is the node it names).
    pub(super) fn groups_applied(&mut self, payload: &[u8]) -> Out {
        let answer = SecurityGroupsApplied::from_yaml(payload)?;
        let (node, tenant) = (answer.agent()?, answer.tenant()?);
        let body = &answer.0;
        let refused = (!body.reason.is_empty()).then_some(body.reason.as_str());
        match refused {
            None => {
                tracing::info!(%node, %tenant, generation = body.generation, "security groups applied")
            }
            Some(why) => {
                tracing::warn!(%node, %tenant, generation = body.generation, "a node could not load the security groups: {why}")
            }
        }
        let kept = self.store.groups_outcomes(tenant)?;
        let same = kept.iter().any(|o| {
            o.node == node && o.answered == Some(body.generation) && o.refused.as_deref() == refused
        });
        if same {
            // The answer to a periodic re-send of the same generation: nothing new to keep.
            return Ok(Vec::new());
        }
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.store
            .record_groups_answer(node, tenant, body.generation, refused, at)?;
        Ok(Vec::new())
    }

    /// SecurityGroupsUpdate for every node of `tenant` whose snapshot changed since last sent,
    /// and for `always` (a node that just reported) in any case.
    pub(super) fn sg_snapshots(&mut self, tenant: Uuid, always: Option<Uuid>) -> Out {
        let members = self.store.port_groups(tenant)?;
        let (groups, rules) = match self.store.security_groups(tenant) {
            Ok(groups) => (groups, self.store.security_rules(tenant)?),
            Err(StoreError::UnknownTenant(_)) => (Vec::new(), Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let nodes: BTreeSet<Uuid> = members.iter().map(|m| m.node).chain(always).collect();
        self.sg_sent
            .retain(|(node, t), _| *t != tenant || nodes.contains(node));
        let mut out = Vec::new();
        let mut generation = None;
        for node in nodes {
            let body = snapshot(node, &members, &groups, &rules);
            let unchanged = self
                .sg_sent
                .get(&(node, tenant))
                .filter(|(sent, _)| *sent == body)
                .map(|(_, g)| *g);
            let generation = match (unchanged, Some(node) == always) {
                (Some(_), false) => continue,
                // The same groups again (a node's periodic report): the same generation, and
                // no store write.
                (Some(g), true) => g,
                (None, _) => {
                    let g = match generation {
                        Some(g) => g,
                        None => *generation.insert(self.store.next_sg_generation()?),
                    };
                    self.store.record_groups_sent(node, tenant, g)?;
                    g
                }
            };
            let cmd = SecurityGroupsUpdate(SecurityGroupsUpdateCmd {
                agent_uuid: node.to_string(),
                tenant_uuid: tenant.to_string(),
                generation,
                groups: body.clone(),
            });
            tracing::info!(%node, %tenant, generation, groups = body.len(), "security groups sent");
            out.push(Frame::new(
                kind::COMMAND,
                command::SECURITY_GROUPS_UPDATE,
                self.me,
                cmd.to_yaml(),
            ));
            self.sg_sent.insert((node, tenant), (body, generation));
        }
        Ok(out)
    }
}

/// What `node` must know: the groups its ports use (with their rules) and the groups those
/// rules name as remote (members only), each with its members in the whole cluster.
fn snapshot(
    node: Uuid,
    members: &[PortMembership],
    groups: &[SecurityGroup],
    rules: &[SecurityRule],
) -> Vec<SecurityGroupItem> {
    let by_name: BTreeMap<&str, &SecurityGroup> =
        groups.iter().map(|g| (g.name.as_str(), g)).collect();
    let used: BTreeSet<&str> = members
        .iter()
        .filter(|m| m.node == node)
        .map(|m| m.group.as_str())
        .collect();
    let mut wanted = used.clone();
    for name in &used {
        let Some(g) = by_name.get(name) else { continue };
        for r in rules.iter().filter(|r| r.group == g.uuid) {
            if let Remote::Group(remote) = r.spec.remote {
                if let Some(rg) = groups.iter().find(|x| x.uuid == remote) {
                    wanted.insert(rg.name.as_str());
                }
            }
        }
    }
    wanted
        .into_iter()
        .map(|name| {
            let ips: BTreeSet<Ipv4Addr> = members
                .iter()
                .filter(|m| m.group == name)
                .map(|m| m.ip)
                .collect();
            let members = ips.iter().map(Ipv4Addr::to_string).collect();
            match by_name.get(name) {
                Some(g) => SecurityGroupItem {
                    name: name.to_string(),
                    uuid: g.uuid.to_string(),
                    rules: if used.contains(name) {
                        rules
                            .iter()
                            .filter(|r| r.group == g.uuid)
                            .map(|r| rule_item(r, groups))
                            .collect()
                    } else {
                        Vec::new()
                    },
                    members,
                },
                None => {
                    tracing::warn!(%node, group = name, "a port names an unknown security group: it allows nothing");
                    SecurityGroupItem {
                        name: name.to_string(),
                        members,
                        ..Default::default()
                    }
                }
            }
        })
        .collect()
}

fn rule_item(r: &SecurityRule, groups: &[SecurityGroup]) -> SecurityRuleItem {
    let s = &r.spec;
    let (port_min, port_max) = s.ports.map_or((0, 0), |(a, b)| (a.into(), b.into()));
    let text = |v: Option<u8>| v.map(|v| v.to_string()).unwrap_or_default();
    let (remote_cidr, remote_group) = match &s.remote {
        Remote::Anywhere => (String::new(), String::new()),
        Remote::Cidr(net) => (net.to_string(), String::new()),
        Remote::Group(g) => (
            String::new(),
            groups
                .iter()
                .find(|x| x.uuid == *g)
                .map(|x| x.name.clone())
                // A name no group has: an empty set, allowing nothing (never anywhere).
                .unwrap_or_else(|| g.to_string()),
        ),
    };
    SecurityRuleItem {
        direction: s.direction.to_string(),
        ethertype: s.ethertype.to_string(),
        protocol: s.protocol.to_string(),
        port_min,
        port_max,
        icmp_type: text(s.icmp_type),
        icmp_code: text(s.icmp_code),
        remote_cidr,
        remote_group,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ssntp::payloads::{PortGroupsEvent, PortGroupsPort, TunnelKind};

    use super::*;
    use crate::security::RuleRequest;
    use crate::{SqliteStore, Store};

    const CN1: Uuid = Uuid::from_u128(0xc1);
    const CN2: Uuid = Uuid::from_u128(0xc2);
    const T: Uuid = Uuid::from_u128(0x7e);

    fn report(node: Uuid, ports: &[(&str, &[&str])]) -> Vec<u8> {
        PortGroups(PortGroupsEvent {
            agent_uuid: node.to_string(),
            tenant_uuid: T.to_string(),
            ports: ports
                .iter()
                .map(|(ip, groups)| PortGroupsPort {
                    ip: ip.to_string(),
                    groups: groups.iter().map(|g| g.to_string()).collect(),
                })
                .collect(),
        })
        .to_yaml()
    }

    /// A group as a node got it: rule count, members, known to the controller.
    type Got = (usize, Vec<String>, bool);

    /// Node → group name → what it got, of each SecurityGroupsUpdate.
    fn sent(out: &[Frame]) -> BTreeMap<Uuid, BTreeMap<String, Got>> {
        out.iter()
            .map(|f| {
                let cmd = SecurityGroupsUpdate::from_yaml(&f.payload).expect("update");
                let groups = cmd
                    .groups
                    .iter()
                    .map(|g| {
                        let known = !g.uuid.is_empty();
                        (g.name.clone(), (g.rules.len(), g.members.clone(), known))
                    })
                    .collect();
                (cmd.agent().expect("agent"), groups)
            })
            .collect()
    }

    #[test]
    fn reports_are_persisted_and_each_node_hears_only_what_changed_for_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(SqliteStore::open_in(dir.path()).expect("store"));
        let mut ctl = Controller::new(Uuid::new_v4(), store.clone(), TunnelKind::Vxlan);
        store
            .network_node_connected(&crate::store::NetworkNodeReport {
                uuid: Uuid::from_u128(0x22),
                underlay: Ipv4Addr::new(10, 99, 0, 9),
                external_device: "eth9".into(),
                capacity: 10,
            })
            .expect("network node");
        let subnet = "172.16.1.0/24".parse().expect("cidr");
        store
            .request_subnet(T, subnet, TunnelKind::Vxlan, CN1)
            .unwrap_or_else(|e| panic!("the tenant, its CNCI and subnet: {e}"));
        store.create_security_group(T, "web", "").expect("web");
        store.create_security_group(T, "admin", "").expect("admin");
        let ssh = RuleRequest {
            direction: "ingress".into(),
            protocol: Some("tcp".into()),
            port_min: Some(22),
            remote_group: Some("admin".into()),
            ..Default::default()
        };
        let (spec, remote) = ssh.check().expect("rule");
        let rule = store
            .add_security_rule(T, "web", spec, remote.as_deref())
            .expect("rule stored");

        let out = ctl
            .port_groups(&report(CN1, &[("172.16.1.10", &["web"])]))
            .expect("cn1");
        let got = sent(&out);
        assert_eq!(got.len(), 1);
        // web: the two egress rules every new group starts with, and the ssh rule.
        assert_eq!(got[&CN1]["web"], (3, vec!["172.16.1.10".into()], true));
        assert_eq!(
            got[&CN1]["admin"],
            (0, vec![], true),
            "remote group, members only"
        );

        let cn2 = report(
            CN2,
            &[("172.16.1.11", &["admin"]), ("172.16.1.12", &["nope"])],
        );
        let got = sent(&ctl.port_groups(&cn2).expect("cn2"));
        assert_eq!(
            got.len(),
            2,
            "cn2 answered, cn1's admin members changed: {got:?}"
        );
        assert_eq!(got[&CN1]["admin"].1, ["172.16.1.11"]);
        assert_eq!(got[&CN2]["nope"], (0, vec!["172.16.1.12".into()], false));
        assert_eq!(store.port_groups(T).expect("stored").len(), 3);

        let again = sent(&ctl.port_groups(&cn2).expect("cn2 again"));
        assert_eq!(
            again.keys().collect::<Vec<_>>(),
            [&CN2],
            "only the reporter"
        );

        store.delete_security_rule(T, rule.uuid).expect("delete");
        let got = sent(&ctl.sg_snapshots(T, None).expect("rule change"));
        assert_eq!(got.keys().collect::<Vec<_>>(), [&CN1], "only cn1 uses web");
        assert!(
            !got[&CN1].contains_key("admin"),
            "no rule names admin any more"
        );

        let bad = report(CN1, &[("172.16.1.10", &["no spaces"])]);
        assert!(ctl.port_groups(&bad).is_err(), "a bad name is refused");
        assert_eq!(store.port_groups(T).expect("unchanged").len(), 3);
    }

    #[test]
    fn each_nodes_answer_is_kept_against_what_it_was_sent() {
        use crate::security::outcome::AppliedState;
        use ssntp::payloads::{SecurityGroupsApplied, SecurityGroupsOutcome};
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(SqliteStore::open_in(dir.path()).expect("store"));
        let mut ctl = Controller::new(Uuid::new_v4(), store.clone(), TunnelKind::Vxlan);
        let out = ctl
            .port_groups(&report(CN1, &[("172.16.1.10", &["web"])]))
            .expect("cn1");
        let generation = SecurityGroupsUpdate::from_yaml(&out[0].payload)
            .expect("update")
            .0
            .generation;
        let states = || -> Vec<(Uuid, AppliedState, u64)> {
            store
                .groups_outcomes(T)
                .expect("outcomes")
                .iter()
                .map(|o| (o.node, o.state(), o.sent))
                .collect()
        };
        assert_eq!(states(), [(CN1, AppliedState::Pending, generation)]);
        let answer = |reason: &str| {
            SecurityGroupsApplied(SecurityGroupsOutcome {
                agent_uuid: CN1.to_string(),
                tenant_uuid: T.to_string(),
                generation,
                reason: reason.into(),
            })
            .to_yaml()
        };
        ctl.groups_applied(&answer("nft: no")).expect("refused");
        assert_eq!(states(), [(CN1, AppliedState::Refused, generation)]);
        ctl.groups_applied(&answer("")).expect("applied");
        assert_eq!(states(), [(CN1, AppliedState::InForce, generation)]);
        // The node's periodic report of the same ports: the same generation again, still in
        // force; a new update: pending until answered.
        let again = ctl
            .port_groups(&report(CN1, &[("172.16.1.10", &["web"])]))
            .expect("cn1 reports again");
        let resent = SecurityGroupsUpdate::from_yaml(&again[0].payload).expect("update");
        assert_eq!(resent.0.generation, generation);
        assert_eq!(states(), [(CN1, AppliedState::InForce, generation)]);
        let out = ctl
            .port_groups(&report(CN1, &[("172.16.1.10", &["web", "admin"])]))
            .expect("cn1 again");
        assert_eq!(out.len(), 1);
        assert_eq!(states()[0].1, AppliedState::Pending);
    }

    #[test]
    fn an_address_reported_by_another_node_leaves_the_first_nodes_groups() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(SqliteStore::open_in(dir.path()).expect("store"));
        let mut ctl = Controller::new(Uuid::new_v4(), store.clone(), TunnelKind::Vxlan);
        ctl.port_groups(&report(CN1, &[("172.16.1.10", &["admin"])]))
            .expect("cn1");
        // CN1 died with that workload; the address now serves a workload on CN2.
        ctl.port_groups(&report(CN2, &[("172.16.1.10", &["web"])]))
            .expect("cn2");
        let rows: Vec<(Uuid, String)> = store
            .port_groups(T)
            .expect("rows")
            .into_iter()
            .map(|m| (m.node, m.group))
            .collect();
        assert_eq!(rows, [(CN2, "web".to_string())], "not still in admin");
        // CN2's periodic report of the same ports changes nothing.
        let again = store
            .set_port_groups(
                CN2,
                T,
                &[(Ipv4Addr::new(172, 16, 1, 10), vec!["web".into()])],
            )
            .expect("again");
        assert!(!again);
    }
}
