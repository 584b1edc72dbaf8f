//! This project's frames for a tenant subnet the workload did not name (issue 12: "the subnet
//! too may be left out, as in ciao, where tenants never chose one"): a compute node asks
//! (EVENT [`crate::frame::event::SUBNET_REQUEST`]) and the master controller answers with the
//! tenant's automatic subnet and this node's slice of it (COMMAND
//! [`crate::frame::command::SUBNET_ASSIGNMENT`]).

use std::net::Ipv4Addr;

use uuid::Uuid;

use super::{ipv4_key, subnet_of_key, uuid_key};
use super::{Ipv4Subnet, Payload, PayloadError};

/// A SubnetAssignment's outcome: the subnet and this node's first and last address, or the
/// controller's reason for refusing.
pub type Granted = Result<(Ipv4Subnet, Ipv4Addr, Ipv4Addr), String>;

yaml_struct! {
    /// This project's EVENT SubnetRequest: a workload on this node names only its tenant.
    /// Resent while unanswered (the scheduler drops events no controller can take).
    pub struct SubnetRequestEvent {
        /// The asking node: must be the sending session (the scheduler checks).
        pub agent_uuid: String,
        pub tenant_uuid: String,
    }
}

wrapped_payload! {
    /// EVENT SubnetRequest (67), compute node → all controllers.
    SubnetRequest(SubnetRequestEvent) = "subnet_request"
}

impl SubnetRequest {
    pub fn new(agent: Uuid, tenant: Uuid) -> Self {
        SubnetRequest(SubnetRequestEvent {
            agent_uuid: agent.to_string(),
            tenant_uuid: tenant.to_string(),
        })
    }

    pub fn agent(&self) -> Result<Uuid, PayloadError> {
        uuid_key(Self::NAME, "agent_uuid", &self.0.agent_uuid)
    }

    pub fn tenant(&self) -> Result<Uuid, PayloadError> {
        uuid_key(Self::NAME, "tenant_uuid", &self.0.tenant_uuid)
    }
}

yaml_struct! {
    /// This project's COMMAND SubnetAssignment: the answer to a SubnetRequest. The same node
    /// asking again for the same tenant gets the same answer.
    pub struct SubnetAssignmentCmd {
        /// Routing key: the scheduler delivers to the agent session with exactly this UUID.
        pub agent_uuid: String,
        pub tenant_uuid: String,
        /// The tenant subnet, CIDR (empty when refused).
        pub subnet: String,
        /// First and last address this node may give out (its slice; never the gateway).
        pub range_start: String,
        pub range_end: String,
        /// Non-empty: refused, with the reason (the other address fields are then empty).
        pub error: String,
    }
}

wrapped_payload! {
    /// COMMAND SubnetAssignment (65), master controller → one compute node.
    SubnetAssignment(SubnetAssignmentCmd) = "subnet_assignment"
}

impl SubnetAssignment {
    /// An assignment of `subnet` with this node's range.
    pub fn granted(
        agent: Uuid,
        tenant: Uuid,
        subnet: Ipv4Subnet,
        range: (Ipv4Addr, Ipv4Addr),
    ) -> Self {
        SubnetAssignment(SubnetAssignmentCmd {
            agent_uuid: agent.to_string(),
            tenant_uuid: tenant.to_string(),
            subnet: subnet.to_string(),
            range_start: range.0.to_string(),
            range_end: range.1.to_string(),
            error: String::new(),
        })
    }

    /// A refusal with its reason.
    pub fn refused(agent: Uuid, tenant: Uuid, reason: &str) -> Self {
        SubnetAssignment(SubnetAssignmentCmd {
            agent_uuid: agent.to_string(),
            tenant_uuid: tenant.to_string(),
            error: reason.to_string(),
            ..SubnetAssignmentCmd::default()
        })
    }

    pub fn agent(&self) -> Result<Uuid, PayloadError> {
        uuid_key(Self::NAME, "agent_uuid", &self.0.agent_uuid)
    }

    pub fn tenant(&self) -> Result<Uuid, PayloadError> {
        uuid_key(Self::NAME, "tenant_uuid", &self.0.tenant_uuid)
    }

    /// `Err(reason)` when refused, else the subnet and this node's range, checked (the range
    /// lies inside the subnet and is ordered).
    pub fn outcome(&self) -> Result<Granted, PayloadError> {
        if !self.0.error.is_empty() {
            return Ok(Err(self.0.error.clone()));
        }
        let subnet = subnet_of_key(Self::NAME, "subnet", &self.0.subnet)?;
        let start = ipv4_key(Self::NAME, "range_start", &self.0.range_start)?;
        let end = ipv4_key(Self::NAME, "range_end", &self.0.range_end)?;
        let inside = |a: Ipv4Addr| Ipv4Subnet::new(a, subnet.prefix_len()) == Some(subnet);
        if start > end || !inside(start) || !inside(end) {
            return Err(super::invalid(
                Self::NAME,
                "range_end",
                &self.0.range_end,
                "is not a range inside the subnet",
            ));
        }
        Ok(Ok((subnet, start, end)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignment_round_trips_and_checks_its_range() {
        let (a, t) = (Uuid::new_v4(), Uuid::new_v4());
        let subnet: Ipv4Subnet = "172.16.0.0/24".parse().expect("subnet");
        let range = (Ipv4Addr::new(172, 16, 0, 2), Ipv4Addr::new(172, 16, 0, 31));
        let yaml = SubnetAssignment::granted(a, t, subnet, range).to_yaml();
        let back = SubnetAssignment::from_yaml(&yaml).expect("parse");
        assert_eq!(back.outcome().expect("ok"), Ok((subnet, range.0, range.1)));
        let refused = SubnetAssignment::refused(a, t, "range exhausted").to_yaml();
        let back = SubnetAssignment::from_yaml(&refused).expect("parse");
        assert_eq!(
            back.outcome().expect("ok"),
            Err("range exhausted".to_string())
        );
        let mut bad = SubnetAssignment::granted(a, t, subnet, range);
        bad.0.range_end = "10.0.0.1".into();
        assert!(bad.outcome().is_err());
        let req = SubnetRequest::from_yaml(&SubnetRequest::new(a, t).to_yaml()).expect("req");
        assert_eq!((req.agent().expect("a"), req.tenant().expect("t")), (a, t));
    }
}
