//! Security groups on compute nodes (issue 14): which of a node's ports are in which groups
//! (EVENT PortGroups, node → controllers) and the groups a node enforces (COMMAND
//! SecurityGroupsUpdate, master controller → one node). Both are full snapshots per tenant and
//! node, so a lost or repeated frame is healed by the next one.

use uuid::Uuid;

use super::{uuid_key, Payload, PayloadError};

yaml_struct! {
    /// One filtered port of a node: the workload's address and the groups it named.
    pub struct PortGroupsPort {
        pub ip: String,
        pub groups: Vec<String>,
    }
}

yaml_struct! {
    /// This project's EVENT PortGroups: every port of one tenant on the sending node that names
    /// security groups. Sent after every change and after every (re)connect; an empty `ports`
    /// says the node has none left.
    pub struct PortGroupsEvent {
        /// The sending node: must be the sending session (the scheduler checks).
        pub agent_uuid: String,
        pub tenant_uuid: String,
        pub ports: Vec<PortGroupsPort>,
    }
}

wrapped_payload! {
    /// EVENT PortGroups (71), compute node → all controllers.
    PortGroups(PortGroupsEvent) = "port_groups"
}

impl PortGroups {
    pub fn agent(&self) -> Result<Uuid, PayloadError> {
        uuid_key(Self::NAME, "agent_uuid", &self.0.agent_uuid)
    }

    pub fn tenant(&self) -> Result<Uuid, PayloadError> {
        uuid_key(Self::NAME, "tenant_uuid", &self.0.tenant_uuid)
    }
}

yaml_struct! {
    /// One rule, as the controller stores it. Empty or zero fields mean "any"; at most one of
    /// `remote_cidr` and `remote_group` (a group name of the same tenant) is set.
    pub struct SecurityRuleItem {
        /// `ingress` or `egress`.
        pub direction: String,
        /// `IPv4` or `IPv6`.
        pub ethertype: String,
        /// `any`, `tcp`, `udp`, `icmp`, `icmpv6` or a number 0-255.
        pub protocol: String,
        /// tcp/udp port range; 0: every port.
        pub port_min: u32,
        pub port_max: u32,
        /// icmp type and code as decimal text; empty: any.
        pub icmp_type: String,
        pub icmp_code: String,
        pub remote_cidr: String,
        pub remote_group: String,
    }
}

yaml_struct! {
    /// One group: its rules and the addresses of its members in the whole cluster.
    pub struct SecurityGroupItem {
        pub name: String,
        /// Empty for a name the controller does not know (the group then allows nothing).
        pub uuid: String,
        pub rules: Vec<SecurityRuleItem>,
        pub members: Vec<String>,
    }
}

yaml_struct! {
    /// This project's COMMAND SecurityGroupsUpdate: every group the node's ports of one tenant
    /// use, and every group their rules name as remote, with members cluster-wide. Replaces
    /// what the node had for the tenant; `generation` only grows for one controller store.
    pub struct SecurityGroupsUpdateCmd {
        /// Routing key: the scheduler delivers to the agent session with exactly this UUID.
        pub agent_uuid: String,
        pub tenant_uuid: String,
        pub generation: u64,
        pub groups: Vec<SecurityGroupItem>,
    }
}

wrapped_payload! {
    /// COMMAND SecurityGroupsUpdate (71), master controller → one compute node.
    SecurityGroupsUpdate(SecurityGroupsUpdateCmd) = "security_groups_update"
}

impl SecurityGroupsUpdate {
    pub fn agent(&self) -> Result<Uuid, PayloadError> {
        uuid_key(Self::NAME, "agent_uuid", &self.0.agent_uuid)
    }

    pub fn tenant(&self) -> Result<Uuid, PayloadError> {
        uuid_key(Self::NAME, "tenant_uuid", &self.0.tenant_uuid)
    }
}

yaml_struct! {
    /// This project's EVENT SecurityGroupsApplied: the node persisted a SecurityGroupsUpdate
    /// and loaded the table with it (`reason` empty), or could not load the table (`reason`
    /// says why; the snapshot stays recorded and the next apply retries it).
    pub struct SecurityGroupsOutcome {
        /// The sending node: must be the sending session (the scheduler checks).
        pub agent_uuid: String,
        pub tenant_uuid: String,
        pub generation: u64,
        pub reason: String,
    }
}

wrapped_payload! {
    /// EVENT SecurityGroupsApplied (72), compute node → all controllers.
    SecurityGroupsApplied(SecurityGroupsOutcome) = "security_groups_applied"
}

impl SecurityGroupsApplied {
    pub fn agent(&self) -> Result<Uuid, PayloadError> {
        uuid_key(Self::NAME, "agent_uuid", &self.0.agent_uuid)
    }

    pub fn tenant(&self) -> Result<Uuid, PayloadError> {
        uuid_key(Self::NAME, "tenant_uuid", &self.0.tenant_uuid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_groups_round_trip() {
        let p = PortGroups(PortGroupsEvent {
            agent_uuid: Uuid::from_u128(1).to_string(),
            tenant_uuid: Uuid::from_u128(2).to_string(),
            ports: vec![PortGroupsPort {
                ip: "172.16.0.2".into(),
                groups: vec!["web".into(), "admin".into()],
            }],
        });
        let back = PortGroups::from_yaml(&p.to_yaml()).expect("parses");
        assert_eq!(back, p);
        assert_eq!(back.agent().expect("agent"), Uuid::from_u128(1));
        assert_eq!(back.tenant().expect("tenant"), Uuid::from_u128(2));
    }

    #[test]
    fn security_groups_applied_round_trip() {
        let p = SecurityGroupsApplied(SecurityGroupsOutcome {
            agent_uuid: Uuid::from_u128(1).to_string(),
            tenant_uuid: Uuid::from_u128(2).to_string(),
            generation: u64::MAX - 1,
            reason: "nft: no".into(),
        });
        let back = SecurityGroupsApplied::from_yaml(&p.to_yaml()).expect("parses");
        assert_eq!(back, p);
        assert_eq!(back.agent().expect("agent"), Uuid::from_u128(1));
        assert_eq!(back.tenant().expect("tenant"), Uuid::from_u128(2));
    }

    #[test]
    fn security_groups_update_round_trip() {
        let rule = SecurityRuleItem {
            direction: "ingress".into(),
            ethertype: "IPv4".into(),
            protocol: "tcp".into(),
            port_min: 22,
            port_max: 22,
            remote_group: "admin".into(),
            ..Default::default()
        };
        let p = SecurityGroupsUpdate(SecurityGroupsUpdateCmd {
            agent_uuid: Uuid::from_u128(1).to_string(),
            tenant_uuid: Uuid::from_u128(2).to_string(),
            generation: 7,
            groups: vec![
                SecurityGroupItem {
                    name: "web".into(),
                    uuid: Uuid::from_u128(3).to_string(),
                    rules: vec![rule],
                    members: vec!["172.16.0.2".into()],
                },
                SecurityGroupItem {
                    name: "nope".into(),
                    ..Default::default()
                },
            ],
        });
        let back = SecurityGroupsUpdate::from_yaml(&p.to_yaml()).expect("parses");
        assert_eq!(back, p);
        assert_eq!(back.agent().expect("agent"), Uuid::from_u128(1));
    }
}
