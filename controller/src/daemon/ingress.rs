//! Inbound forwards, SSH access and the tenant's ingress rules (issue 14): the snapshot for the tenant's CNCI, and what
//! the CNCI answers (logged: the API shows the store's state, the CNCI's log the kernel's).

use ssntp::payloads::{Payload, TenantIngressApplied, TenantIngressFailure};
use uuid::Uuid;

use super::{frames, Controller, Out};
use crate::model::CnciState;

impl Controller {
    /// TenantIngress for the tenant's live CNCI; nothing while it has none (the CNCI gets it
    /// when it announces itself).
    pub(super) fn ingress(&self, tenant: Uuid) -> Out {
        let Some(cnci) = self
            .store
            .cnci_of(tenant)?
            .filter(|c| matches!(c.state, CnciState::Ready | CnciState::Retiring))
        else {
            return Ok(Vec::new());
        };
        let access = self.store.ssh_access(tenant)?;
        let forwards = self.store.forwards(tenant)?;
        let rules = self.store.ingress_rules(tenant)?;
        tracing::debug!(cnci = %cnci.uuid, %tenant, forwards = forwards.len(), ssh = access.enabled, rules = rules.rules.len(), default = %rules.default, "TenantIngress");
        Ok(vec![frames::tenant_ingress(
            self.me, &cnci, &access, &forwards, &rules,
        )])
    }
}

/// EVENT TenantIngressApplied.
pub(super) fn applied(payload: &[u8]) -> Out {
    let body = TenantIngressApplied::from_yaml(payload)?.0;
    tracing::info!(cnci = %body.concentrator_uuid, tenant = %body.tenant_uuid, generation = body.generation, "ingress applied");
    Ok(Vec::new())
}

/// ERROR TenantIngressFailure: the CNCI kept its previous snapshot.
pub(super) fn refused(payload: &[u8]) -> Out {
    let body = TenantIngressFailure::from_yaml(payload)?.0;
    tracing::warn!(cnci = %body.concentrator_uuid, tenant = %body.tenant_uuid, generation = body.generation, "ingress refused by the CNCI: {}", body.reason);
    Ok(Vec::new())
}
