//! The frames the controller sends, built from the store's values.

use ssntp::frame::{command, error, kind, Frame};
use ssntp::payloads::{
    AssignPublicIp, CnciAssignment, CnciAssignmentCmd, CnciRefused, Delete, IngressForward,
    IngressRule, IngressSsh, Payload, PublicIpCommand, ReleasePublicIp, Start, TenantIngress,
    TenantIngressCmd,
};
use uuid::Uuid;

use crate::model::{Cnci, PublicIpAssignment, TenantSubnet};
use crate::security::forward::{Forward, SshAccess};
use crate::security::ingress_rule::{IngressAction, TenantIngressRules};

/// COMMAND START of `cnci` on its network node.
pub fn start(me: Uuid, cnci: &Cnci) -> Frame {
    let payload = Start::cnci(cnci.tenant, cnci.uuid, cnci.network_node).to_yaml();
    Frame::new(kind::COMMAND, command::START, me, payload)
}

/// COMMAND DELETE of the CNCI `cnci` on network node `node`.
pub fn delete(me: Uuid, cnci: Uuid, node: Uuid) -> Frame {
    let payload = Delete::new(cnci, node).to_yaml();
    Frame::new(kind::COMMAND, command::DELETE, me, payload)
}

/// COMMAND CnciAssignment: compute node `agent` tunnels `subnet` to the ready `cnci`.
pub fn assignment(me: Uuid, agent: Uuid, cnci: &Cnci, subnet: &TenantSubnet) -> Frame {
    let payload = CnciAssignment(CnciAssignmentCmd {
        agent_uuid: agent.to_string(),
        tenant_uuid: subnet.tenant.to_string(),
        subnet: subnet.cidr.to_string(),
        concentrator_uuid: cnci.uuid.to_string(),
        concentrator_ip: cnci.underlay.to_string(),
        tunnel_kind: subnet.tunnel_kind,
        tunnel_id: subnet.tunnel_id,
    })
    .to_yaml();
    Frame::new(kind::COMMAND, command::CNCI_ASSIGNMENT, me, payload)
}

/// ERROR CnciRefused: compute node `agent` is never to get a CNCI for `subnet` (its text as
/// the request wrote it), for `reason`.
pub fn refused(me: Uuid, agent: Uuid, tenant: Uuid, subnet: &str, reason: &str) -> Frame {
    let payload = CnciRefused::new(agent, tenant, subnet, reason).to_yaml();
    Frame::new(kind::ERROR, error::CNCI_REFUSED, me, payload)
}

fn public_ip_command(cnci: &Cnci, ip: &PublicIpAssignment) -> PublicIpCommand {
    PublicIpCommand {
        concentrator_uuid: cnci.uuid.to_string(),
        tenant_uuid: ip.tenant.to_string(),
        instance_uuid: String::new(),
        public_ip: ip.public.to_string(),
        private_ip: ip.private.to_string(),
        vnic_mac: String::new(),
    }
}

/// COMMAND AssignPublicIP (5) to the tenant's CNCI.
pub fn assign_public_ip(me: Uuid, cnci: &Cnci, ip: &PublicIpAssignment) -> Frame {
    let payload = AssignPublicIp(public_ip_command(cnci, ip)).to_yaml();
    Frame::new(kind::COMMAND, command::ASSIGN_PUBLIC_IP, me, payload)
}

/// COMMAND ReleasePublicIP (6) to the tenant's CNCI.
pub fn release_public_ip(me: Uuid, cnci: &Cnci, ip: &PublicIpAssignment) -> Frame {
    let payload = ReleasePublicIp(public_ip_command(cnci, ip)).to_yaml();
    Frame::new(kind::COMMAND, command::RELEASE_PUBLIC_IP, me, payload)
}

/// The tenant's ingress rules as the frame carries them, in order.
fn wire_rules(rules: &TenantIngressRules) -> Vec<IngressRule> {
    rules
        .rules
        .iter()
        .map(|r| IngressRule {
            action: r.spec.action.as_str().to_string(),
            protocol: r.spec.protocol.as_str().to_string(),
            port_min: r.spec.ports.map_or(0, |p| u32::from(p.0)),
            port_max: r.spec.ports.map_or(0, |p| u32::from(p.1)),
            remote_cidr: r
                .spec
                .remote_cidr
                .map(|c| c.to_string())
                .unwrap_or_default(),
        })
        .collect()
}

/// COMMAND TenantIngress (70) to the tenant's CNCI: everything that may enter on the tenant's
/// forward IP, and the tenant's rules for all that enters from outside. Its generation is a
/// digest of the rest, so it follows from the store's state (persisted before this is built)
/// and names the same snapshot after any restart.
pub fn tenant_ingress(
    me: Uuid,
    cnci: &Cnci,
    access: &SshAccess,
    forwards: &[Forward],
    rules: &TenantIngressRules,
) -> Frame {
    let payload = TenantIngress(tenant_ingress_cmd(cnci, access, forwards, rules)).to_yaml();
    Frame::new(kind::COMMAND, command::TENANT_INGRESS, me, payload)
}

/// The body of [`tenant_ingress`], with its generation: also what the API compares the CNCI's
/// last answer with.
pub fn tenant_ingress_cmd(
    cnci: &Cnci,
    access: &SshAccess,
    forwards: &[Forward],
    rules: &TenantIngressRules,
) -> TenantIngressCmd {
    let forward_ip = access
        .forward_ip
        .or_else(|| forwards.first().map(|f| f.public));
    let mut body = TenantIngressCmd {
        concentrator_uuid: cnci.uuid.to_string(),
        tenant_uuid: cnci.tenant.to_string(),
        generation: 0,
        forward_ip: forward_ip.map(|ip| ip.to_string()).unwrap_or_default(),
        forwards: forwards
            .iter()
            .map(|f| IngressForward {
                protocol: f.protocol.as_str().to_string(),
                public_port: u32::from(f.public_port),
                private_ip: f.private.to_string(),
                private_port: u32::from(f.private_port),
            })
            .collect(),
        ssh: if access.enabled && forward_ip.is_some() {
            access
                .blocks
                .iter()
                .map(|b| IngressSsh {
                    cidr: b.cidr.to_string(),
                    base: u32::from(b.base),
                })
                .collect()
        } else {
            Vec::new()
        },
        rules: wire_rules(rules),
        default_deny: rules.default == IngressAction::Deny,
    };
    body.forwards
        .sort_by(|a, b| (&a.protocol, a.public_port).cmp(&(&b.protocol, b.public_port)));
    body.generation = fnv64(&TenantIngress(body.clone()).to_yaml());
    body
}

/// FNV-1a, 64 bits: a stable digest (std's hasher may change between Rust releases).
fn fnv64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
