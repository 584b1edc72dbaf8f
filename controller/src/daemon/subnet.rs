//! EVENT SubnetRequest: a workload named only its tenant; the node gets its slice of one of
//! the tenant's automatic subnets (persisted first), or the reason it gets none.

use ssntp::frame::{command, kind, Frame};
use ssntp::payloads::{Payload, SubnetAssignment, SubnetRequest};

use super::{Controller, HandleError, Out};
use crate::store::StoreError;

impl Controller {
    pub(super) fn subnet_request(&mut self, payload: &[u8]) -> Out {
        let request = SubnetRequest::from_yaml(payload)?;
        let agent = request.agent()?;
        let tenant = request.tenant()?;
        let plan = self.tenant_subnets;
        let answer = match self
            .store
            .auto_subnet(tenant, agent, &plan, self.default_kind)
        {
            Ok(got) => {
                let subnet = ssntp::payloads::Ipv4Subnet::new(
                    got.subnet.cidr.network(),
                    got.subnet.cidr.prefix_len(),
                )
                .ok_or_else(|| HandleError::Refused(format!("bad subnet {}", got.subnet.cidr)))?;
                tracing::info!(%tenant, node = %agent, subnet = %got.subnet.cidr, slice = %got.slice, "automatic subnet");
                SubnetAssignment::granted(agent, tenant, subnet, got.range)
            }
            // A refusal the node must hear about; a failing backend is not: it asks again.
            Err(
                e @ (StoreError::AutoRangeExhausted { .. }
                | StoreError::TenantDeleting(_)
                | StoreError::TunnelIdsExhausted(_)),
            ) => {
                tracing::warn!(%tenant, node = %agent, "automatic subnet refused: {e}");
                SubnetAssignment::refused(agent, tenant, &e.to_string())
            }
            Err(e) => return Err(e.into()),
        };
        Ok(vec![Frame::new(
            kind::COMMAND,
            command::SUBNET_ASSIGNMENT,
            self.me,
            answer.to_yaml(),
        )])
    }
}
