//! The controller's conversation with the nodes (DESIGN.md, "Control plane, wave 2").
//!
//! ciao's own frames where ciao has one: START (COMMAND 1) with `requirements.network_node`
//! to run a CNCI on a network node, DELETE (COMMAND 4) to stop it, StartFailure (ERROR 1) and
//! InstanceDeleted (EVENT 2) for the outcome. This project's frames where ciao has none, with
//! operands far from ciao's range ([`crate::frame::command::CNCI_ASSIGNMENT`],
//! [`crate::frame::event::CNCI_REQUEST`], [`crate::frame::event::NODE_REPORT`]): in ciao the
//! controller put the CNCI into every START of a workload, which a compute node that attaches
//! containers on its own never receives.

use std::net::Ipv4Addr;

use uuid::Uuid;

use super::{ipv4_key, subnet_of_key, uuid_key};
use super::{Ipv4Subnet, Payload, PayloadError, TunnelKind};

/// `vm_type` of a START that runs a CNCI (ciao's values are `qemu` and `docker`).
pub const VM_TYPE_CNCI: &str = "cnci";

yaml_struct! {
    /// Go `payloads.WorkloadRequirements`, the keys this project uses.
    pub struct WorkloadRequirements {
        /// The node that must run the workload (the controller places CNCIs itself).
        pub node_id: String,
        /// A network node's workload (a CNCI).
        pub network_node: bool,
    }
}

yaml_struct! {
    /// Go `payloads.StartCmd`, the keys a CNCI start needs.
    pub struct StartCmd {
        pub tenant_uuid: String,
        /// The CNCI's UUID: also its SSNTP session UUID.
        pub instance_uuid: String,
        /// [`VM_TYPE_CNCI`] for a CNCI.
        pub vm_type: String,
        pub requirements: WorkloadRequirements,
    }
}

wrapped_payload! {
    /// COMMAND START (1), master controller → the network node `requirements.node_id`.
    Start(StartCmd) = "start"
}

impl Start {
    /// A CNCI start for `tenant` on network node `node`.
    pub fn cnci(tenant: Uuid, cnci: Uuid, node: Uuid) -> Self {
        Start(StartCmd {
            tenant_uuid: tenant.to_string(),
            instance_uuid: cnci.to_string(),
            vm_type: VM_TYPE_CNCI.into(),
            requirements: WorkloadRequirements {
                node_id: node.to_string(),
                network_node: true,
            },
        })
    }

    pub fn tenant(&self) -> Result<Uuid, PayloadError> {
        uuid_key(Self::NAME, "tenant_uuid", &self.0.tenant_uuid)
    }

    pub fn instance(&self) -> Result<Uuid, PayloadError> {
        uuid_key(Self::NAME, "instance_uuid", &self.0.instance_uuid)
    }

    /// The node the scheduler delivers to.
    pub fn node(&self) -> Result<Uuid, PayloadError> {
        uuid_key(
            Self::NAME,
            "requirements.node_id",
            &self.0.requirements.node_id,
        )
    }
}

yaml_struct! {
    /// Go `payloads.StopCmd`, the keys this project uses.
    pub struct StopCmd {
        pub instance_uuid: String,
        /// Routing key: the node that runs the instance.
        pub workload_agent_uuid: String,
    }
}

wrapped_payload! {
    /// COMMAND DELETE (4), master controller → the node `workload_agent_uuid`.
    Delete(StopCmd) = "delete"
}

impl Delete {
    pub fn new(instance: Uuid, node: Uuid) -> Self {
        Delete(StopCmd {
            instance_uuid: instance.to_string(),
            workload_agent_uuid: node.to_string(),
        })
    }

    pub fn instance(&self) -> Result<Uuid, PayloadError> {
        uuid_key(Self::NAME, "instance_uuid", &self.0.instance_uuid)
    }

    pub fn node(&self) -> Result<Uuid, PayloadError> {
        uuid_key(
            Self::NAME,
            "workload_agent_uuid",
            &self.0.workload_agent_uuid,
        )
    }
}

yaml_struct! {
    /// Go `payloads.InstanceDeletedEvent`.
    pub struct InstanceDeletedEvent {
        pub instance_uuid: String,
    }
}

wrapped_payload! {
    /// EVENT InstanceDeleted (2), node → all controllers: a CNCI is gone from its network node.
    InstanceDeleted(InstanceDeletedEvent) = "instance_deleted"
}

impl InstanceDeleted {
    pub fn new(instance: Uuid) -> Self {
        InstanceDeleted(InstanceDeletedEvent {
            instance_uuid: instance.to_string(),
        })
    }

    pub fn instance(&self) -> Result<Uuid, PayloadError> {
        uuid_key(Self::NAME, "instance_uuid", &self.0.instance_uuid)
    }
}

yaml_struct! {
    /// Go `payloads.ErrorStartFailure`: flat, no top-level key.
    pub struct StartFailureBody {
        pub node_uuid: String,
        pub instance_uuid: String,
        /// ciao's reasons are `no_cn`, `full_cloud`, `no_net_cn`, `launch_failure`, ...
        pub reason: String,
        pub restart: bool,
    }
}

flat_payload! {
    /// ERROR StartFailure (1), scheduler or network node → all controllers.
    StartFailure(StartFailureBody) = "StartFailure"
}

yaml_struct! {
    /// This project's EVENT CnciRequest: a compute node needs the CNCI and tunnel id of one
    /// tenant subnet it hosts. Sent after every (re)connect for every subnet still waiting, and
    /// again while no answer comes (the controller may be down: the scheduler drops events no
    /// controller can take).
    pub struct CnciRequestEvent {
        /// The asking node: must be the sending session (the scheduler checks).
        pub agent_uuid: String,
        pub tenant_uuid: String,
        /// The tenant subnet, CIDR.
        pub subnet: String,
        /// The node's tunnel end (its underlay address), shown by `ciao-net`.
        pub agent_ip: String,
    }
}

wrapped_payload! {
    /// EVENT CnciRequest (65), compute node → all controllers.
    CnciRequest(CnciRequestEvent) = "cnci_request"
}

impl CnciRequest {
    pub fn new(agent: Uuid, tenant: Uuid, subnet: Ipv4Subnet, agent_ip: Ipv4Addr) -> Self {
        CnciRequest(CnciRequestEvent {
            agent_uuid: agent.to_string(),
            tenant_uuid: tenant.to_string(),
            subnet: subnet.to_string(),
            agent_ip: agent_ip.to_string(),
        })
    }

    pub fn agent(&self) -> Result<Uuid, PayloadError> {
        uuid_key(Self::NAME, "agent_uuid", &self.0.agent_uuid)
    }

    pub fn tenant(&self) -> Result<Uuid, PayloadError> {
        uuid_key(Self::NAME, "tenant_uuid", &self.0.tenant_uuid)
    }

    pub fn subnet(&self) -> Result<Ipv4Subnet, PayloadError> {
        subnet_of_key(Self::NAME, "subnet", &self.0.subnet)
    }

    pub fn agent_ip(&self) -> Result<Ipv4Addr, PayloadError> {
        ipv4_key(Self::NAME, "agent_ip", &self.0.agent_ip)
    }
}

yaml_struct! {
    /// This project's COMMAND CnciAssignment: the answer to a CnciRequest, once the tenant's
    /// CNCI is ready (and again whenever it changes).
    pub struct CnciAssignmentCmd {
        /// Routing key: the scheduler delivers to the agent session with exactly this UUID.
        pub agent_uuid: String,
        pub tenant_uuid: String,
        pub subnet: String,
        pub concentrator_uuid: String,
        pub concentrator_ip: String,
        pub tunnel_kind: TunnelKind,
        /// VNI or GRE key, unique in the cluster for this (tenant, subnet).
        pub tunnel_id: u32,
    }
}

wrapped_payload! {
    /// COMMAND CnciAssignment (64), master controller → one compute node.
    CnciAssignment(CnciAssignmentCmd) = "cnci_assignment"
}

impl CnciAssignment {
    pub fn agent(&self) -> Result<Uuid, PayloadError> {
        uuid_key(Self::NAME, "agent_uuid", &self.0.agent_uuid)
    }

    pub fn tenant(&self) -> Result<Uuid, PayloadError> {
        uuid_key(Self::NAME, "tenant_uuid", &self.0.tenant_uuid)
    }

    pub fn subnet(&self) -> Result<Ipv4Subnet, PayloadError> {
        subnet_of_key(Self::NAME, "subnet", &self.0.subnet)
    }

    pub fn concentrator(&self) -> Result<Uuid, PayloadError> {
        uuid_key(Self::NAME, "concentrator_uuid", &self.0.concentrator_uuid)
    }

    pub fn concentrator_ip(&self) -> Result<Ipv4Addr, PayloadError> {
        ipv4_key(Self::NAME, "concentrator_ip", &self.0.concentrator_ip)
    }

    /// The id, checked against the kind's range (VXLAN and Geneve: 24 bits; GRE: 32, not 0).
    pub fn tunnel_id(&self) -> Result<u32, PayloadError> {
        let id = self.0.tunnel_id;
        if id == 0 || id > self.0.tunnel_kind.max_id() {
            return Err(super::invalid(
                Self::NAME,
                "tunnel_id",
                &id.to_string(),
                "is out of range for the tunnel kind",
            ));
        }
        Ok(id)
    }
}

yaml_struct! {
    /// This project's EVENT NodeReport: what a node tells the controllers about itself after
    /// every (re)connect (NodeConnected says only that it is there).
    pub struct NodeReportEvent {
        /// Must be the sending session (the scheduler checks).
        pub node_uuid: String,
        /// `network_node` or `compute_node`.
        pub node_type: super::NodeType,
        /// Where tunnels end on this node.
        pub underlay_ip: String,
        /// A network node's interface toward the outside (outbound NAT, public IPs).
        pub external_device: String,
        /// Most CNCIs this network node runs (0: no limit given).
        pub capacity: u32,
        /// The CNCIs this network node runs now (their UUIDs), so the controller can tell
        /// an adopted CNCI from a lost one.
        pub cncis: Vec<String>,
    }
}

wrapped_payload! {
    /// EVENT NodeReport (66), network or compute node → all controllers.
    NodeReport(NodeReportEvent) = "node_report"
}

impl NodeReport {
    pub fn node(&self) -> Result<Uuid, PayloadError> {
        uuid_key(Self::NAME, "node_uuid", &self.0.node_uuid)
    }

    pub fn underlay_ip(&self) -> Result<Ipv4Addr, PayloadError> {
        ipv4_key(Self::NAME, "underlay_ip", &self.0.underlay_ip)
    }
}

yaml_struct! {
    /// This project's ERROR CnciRefused: the controller will never answer this CnciRequest
    /// (the subnet overlaps another of the tenant's, has host bits set, no tunnel id is left,
    /// the tenant is being deleted, ...). The node stops asking for the subnet. Not sent when
    /// the controller merely cannot place a CNCI yet: that request is answered later.
    pub struct CnciRefusedError {
        /// Routing key: the scheduler delivers to the agent session with exactly this UUID.
        pub agent_uuid: String,
        pub tenant_uuid: String,
        /// The subnet exactly as the request wrote it.
        pub subnet: String,
        /// Why, for the node's operator (`ciao-node show`, the next attach's error).
        pub reason: String,
    }
}

wrapped_payload! {
    /// ERROR CnciRefused (65), master controller → one compute node.
    CnciRefused(CnciRefusedError) = "cnci_refused"
}

impl CnciRefused {
    pub fn new(agent: Uuid, tenant: Uuid, subnet: &str, reason: &str) -> Self {
        CnciRefused(CnciRefusedError {
            agent_uuid: agent.to_string(),
            tenant_uuid: tenant.to_string(),
            subnet: subnet.to_string(),
            reason: reason.to_string(),
        })
    }

    pub fn agent(&self) -> Result<Uuid, PayloadError> {
        uuid_key(Self::NAME, "agent_uuid", &self.0.agent_uuid)
    }

    pub fn tenant(&self) -> Result<Uuid, PayloadError> {
        uuid_key(Self::NAME, "tenant_uuid", &self.0.tenant_uuid)
    }

    pub fn subnet(&self) -> Result<Ipv4Subnet, PayloadError> {
        subnet_of_key(Self::NAME, "subnet", &self.0.subnet)
    }
}
