//! The API's refusals: an HTTP status and a JSON body `{"error": "...", "code": "..."}`, the
//! code being stable for scripts and the message saying what to fix.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::views::ErrorBody;
use crate::store::StoreError;

/// A refused request (the store was left unchanged) or a failure of the controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.message,
            code: self.code.to_owned(),
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        let (status, code) = status_and_code(&err);
        if status.is_server_error() {
            tracing::error!("admin API: {err}");
        }
        ApiError::new(status, code, err.to_string())
    }
}

/// Every store refusal has its own code; the status says whose fault it is: the request's
/// (4xx: the caller can fix it) or the controller's (5xx).
fn status_and_code(err: &StoreError) -> (StatusCode, &'static str) {
    use StatusCode as S;
    match err {
        StoreError::UnknownTenant(_) => (S::NOT_FOUND, "unknown_tenant"),
        StoreError::UnknownCnci(_) => (S::NOT_FOUND, "unknown_cnci"),
        StoreError::UnknownNetworkNode(_) => (S::NOT_FOUND, "unknown_network_node"),
        StoreError::UnknownSubnet { .. } => (S::NOT_FOUND, "unknown_subnet"),
        StoreError::TenantDeleting(_) => (S::CONFLICT, "tenant_deleting"),
        StoreError::CnciTransition { .. } => (S::CONFLICT, "cnci_transition"),
        StoreError::SubnetOverlap { .. } => (S::CONFLICT, "subnet_overlap"),
        StoreError::TunnelIdsExhausted(_) => (S::CONFLICT, "tunnel_ids_exhausted"),
        StoreError::AutoRangeExhausted { .. } => (S::CONFLICT, "tenant_subnets_exhausted"),
        StoreError::NoPublicPool => (S::CONFLICT, "no_public_pool"),
        StoreError::PublicPoolExhausted { .. } => (S::CONFLICT, "public_pool_exhausted"),
        StoreError::PublicIpNotOwned { .. } => (S::CONFLICT, "public_ip_not_owned"),
        StoreError::PoolsOverlap(..) => (S::CONFLICT, "pools_overlap"),
        StoreError::AssignedIpOutsidePools { .. } => (S::CONFLICT, "assigned_ip_outside_pools"),
        StoreError::SubnetNotNetwork(_) => (S::UNPROCESSABLE_ENTITY, "subnet_not_network"),
        StoreError::AddressOutsideSubnets { .. } => {
            (S::UNPROCESSABLE_ENTITY, "address_outside_subnets")
        }
        StoreError::InvalidRule(_) => (S::UNPROCESSABLE_ENTITY, "invalid_rule"),
        StoreError::InvalidForward(_) => (S::UNPROCESSABLE_ENTITY, "invalid_forward"),
        StoreError::InvalidGroupName(_) => (S::UNPROCESSABLE_ENTITY, "invalid_group_name"),
        StoreError::UnknownGroup { .. } => (S::NOT_FOUND, "unknown_security_group"),
        StoreError::GroupExists { .. } => (S::CONFLICT, "security_group_exists"),
        StoreError::DefaultGroup(_) => (S::CONFLICT, "default_group"),
        StoreError::GroupInUse { .. } => (S::CONFLICT, "security_group_in_use"),
        StoreError::DuplicateRule { .. } => (S::CONFLICT, "duplicate_rule"),
        StoreError::UnknownRule { .. } => (S::NOT_FOUND, "unknown_rule"),
        StoreError::UnknownForward { .. } => (S::NOT_FOUND, "unknown_forward"),
        StoreError::InvalidIngressRule(_) => (S::BAD_REQUEST, "invalid_ingress_rule"),
        StoreError::UnknownIngressRule { .. } => (S::NOT_FOUND, "unknown_ingress_rule"),
        StoreError::ForwardTaken { .. } => (S::CONFLICT, "forward_taken"),
        StoreError::PublicIpOutsidePools { .. } => {
            (S::UNPROCESSABLE_ENTITY, "public_ip_outside_pools")
        }
        StoreError::PublicIpInUse { .. } => (S::CONFLICT, "public_ip_in_use"),
        StoreError::ReservedAddress { .. } => (S::UNPROCESSABLE_ENTITY, "reserved_address"),
        StoreError::SshForwardOverlap { .. } => (S::CONFLICT, "ssh_forward_overlap"),
        StoreError::SshPortsExhausted { .. } => (S::CONFLICT, "ssh_ports_exhausted"),
        StoreError::NoNetworkNode => (S::SERVICE_UNAVAILABLE, "no_network_node"),
        StoreError::SchemaTooNew { .. } | StoreError::NotAStore { .. } => {
            (S::INTERNAL_SERVER_ERROR, "store_unusable")
        }
        StoreError::Corrupt(_) => (S::INTERNAL_SERVER_ERROR, "store_corrupt"),
        StoreError::Backend(_) => (S::INTERNAL_SERVER_ERROR, "store_failed"),
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use ciao_types::TunnelKind;
    use uuid::Uuid;

    use super::*;
    use crate::model::CnciState;
    use crate::pool::PublicPool;

    /// One of each variant: a new variant without a mapping fails to compile in
    /// `status_and_code`; this checks the mapping's contract (client errors are 4xx, the
    /// store's own failures 5xx, every code distinct).
    #[test]
    fn every_store_error_has_its_own_code() {
        let t = Uuid::nil();
        let ip = Ipv4Addr::LOCALHOST;
        let net = "10.0.0.0/24".parse().expect("net");
        let pool: PublicPool = "10.0.0.0/24".parse().expect("pool");
        let errors = [
            StoreError::UnknownTenant(t),
            StoreError::TenantDeleting(t),
            StoreError::UnknownCnci(t),
            StoreError::UnknownNetworkNode(t),
            StoreError::NoNetworkNode,
            StoreError::CnciTransition {
                cnci: t,
                from: CnciState::Gone,
                to: CnciState::Ready,
            },
            StoreError::SubnetNotNetwork(net),
            StoreError::SubnetOverlap {
                new: net,
                existing: net,
            },
            StoreError::UnknownSubnet {
                tenant: t,
                cidr: net,
            },
            StoreError::TunnelIdsExhausted(TunnelKind::default()),
            StoreError::AddressOutsideSubnets {
                tenant: t,
                address: ip,
            },
            StoreError::NoPublicPool,
            StoreError::PublicPoolExhausted {
                pools: String::new(),
            },
            StoreError::PublicIpNotOwned {
                public: ip,
                owner: t,
                tenant: t,
            },
            StoreError::PoolsOverlap(pool, pool),
            StoreError::AssignedIpOutsidePools {
                public: ip,
                tenant: t,
            },
            StoreError::SchemaTooNew {
                path: String::new(),
                found: 2,
                supported: 1,
            },
            StoreError::Corrupt(String::new()),
            StoreError::Backend("x".into()),
        ];
        let mut codes = std::collections::HashSet::new();
        for err in &errors {
            let (status, code) = status_and_code(err);
            assert!(
                status.is_client_error() || status.is_server_error(),
                "{err}"
            );
            assert!(codes.insert(code), "{code} used twice");
        }
        let (status, _) = status_and_code(&StoreError::Backend("x".into()));
        assert!(status.is_server_error());
        assert_eq!(
            status_and_code(&StoreError::UnknownTenant(t)),
            (StatusCode::NOT_FOUND, "unknown_tenant")
        );
    }
}
