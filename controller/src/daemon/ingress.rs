//! Inbound forwards, SSH access and the tenant's ingress rules (issue 14): the snapshot for the
//! tenant's CNCI, and what the CNCI answers (kept in the store: the API compares it with the
//! snapshot the store makes now, so `ciao-net` says whether the rules are in force).

use ssntp::payloads::{Payload, TenantIngressApplied, TenantIngressFailure, TenantIngressOutcome};
use uuid::Uuid;

use super::{frames, parse_uuid, Controller, HandleError, Out};
use crate::model::CnciState;
use crate::security::outcome::IngressOutcome;

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

impl Controller {
    /// EVENT TenantIngressApplied.
    pub(super) fn ingress_applied(&self, payload: &[u8]) -> Out {
        let body = TenantIngressApplied::from_yaml(payload)?.0;
        tracing::info!(cnci = %body.concentrator_uuid, tenant = %body.tenant_uuid, generation = body.generation, "ingress applied");
        self.record_outcome(&body, None)
    }

    /// ERROR TenantIngressFailure: the CNCI kept its previous snapshot.
    pub(super) fn ingress_refused(&self, payload: &[u8]) -> Out {
        let body = TenantIngressFailure::from_yaml(payload)?.0;
        tracing::warn!(cnci = %body.concentrator_uuid, tenant = %body.tenant_uuid, generation = body.generation, "ingress refused by the CNCI: {}", body.reason);
        let reason = body.reason.clone();
        self.record_outcome(&body, Some(reason))
    }

    fn record_outcome(&self, body: &TenantIngressOutcome, refused: Option<String>) -> Out {
        let outcome = IngressOutcome {
            tenant: parse_uuid("tenant_uuid", &body.tenant_uuid)?,
            cnci: parse_uuid("concentrator_uuid", &body.concentrator_uuid)?,
            generation: body.generation,
            refused,
            at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        };
        // Only the tenant's own CNCI speaks for it (the scheduler checked the sender's id).
        let owner = self.store.cnci_of(outcome.tenant)?.map(|c| c.uuid);
        if owner != Some(outcome.cnci) {
            return Err(HandleError::Refused(format!(
                "CNCI {} answered for tenant {}, whose CNCI it is not",
                outcome.cnci, outcome.tenant
            )));
        }
        self.store.record_ingress_outcome(&outcome)?;
        Ok(Vec::new())
    }
}
