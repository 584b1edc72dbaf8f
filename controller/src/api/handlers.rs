//! One function per endpoint. Each asks the store (on a blocking thread: the store's calls do
//! file I/O), and only after the store has decided tells the daemon what to send to nodes.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::error::ApiError;
use super::views::{
    tenant_cnci, AssignRequest, CnciView, ComputeNodeView, IngressView, NetworkNodeView,
    NodeGroupsView, NodesView, PoolView, PublicIpView, PublicIpsView, SubnetView, TenantDeleted,
    TenantSummary, TenantView,
};
use super::AdminEvent;
use crate::store::{Store, StoreError};

type Reply<T> = Result<T, ApiError>;

/// What every handler shares: the store and the way to the daemon.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub events: mpsc::Sender<AdminEvent>,
}

impl AppState {
    /// Run `call` on the store off the async workers.
    pub(super) async fn store<T, F>(&self, call: F) -> Reply<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || call(store.as_ref()))
            .await
            .map_err(|e| ApiError::internal(format!("store call failed: {e}")))?
            .map_err(ApiError::from)
    }

    /// Tell the daemon; if it no longer listens, the decision is still in the store and a
    /// restarted controller acts on it, so the request itself succeeded.
    pub(super) async fn tell(&self, event: AdminEvent) {
        if let Err(lost) = self.events.send(event).await {
            tracing::warn!(
                "admin API: the controller takes no more events; {:?} is only in the store",
                lost.0
            );
        }
    }
}

pub async fn nodes(State(app): State<AppState>) -> Reply<Json<NodesView>> {
    let view = app
        .store(|store| {
            let cncis = store.cncis()?;
            Ok(NodesView {
                network_nodes: store
                    .network_nodes()?
                    .iter()
                    .map(|n| NetworkNodeView::new(n, &cncis))
                    .collect(),
                compute_nodes: store
                    .compute_nodes()?
                    .iter()
                    .map(ComputeNodeView::from)
                    .collect(),
            })
        })
        .await?;
    Ok(Json(view))
}

pub async fn tenants(State(app): State<AppState>) -> Reply<Json<Vec<TenantSummary>>> {
    let view = app
        .store(|store| {
            let cncis = store.cncis()?;
            let public_ips = store.public_ips()?;
            store
                .tenants()?
                .into_iter()
                .map(|t| {
                    Ok(TenantSummary {
                        uuid: t.uuid,
                        state: t.state.as_str().to_owned(),
                        cnci: tenant_cnci(t.uuid, &cncis).map(CnciView::from),
                        subnets: store.subnets(t.uuid)?.iter().map(|s| s.cidr).collect(),
                        public_ips: public_ips.iter().filter(|a| a.tenant == t.uuid).count(),
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()
        })
        .await?;
    Ok(Json(view))
}

pub async fn tenant(
    State(app): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Reply<Json<TenantView>> {
    let id = tenant_id(path)?;
    let view = app
        .store(move |store| {
            let tenant = store.tenant(id)?.ok_or(StoreError::UnknownTenant(id))?;
            let cncis = store.cncis()?;
            let slices = store.auto_slices(id)?;
            let subnets = store
                .subnets(id)?
                .iter()
                .map(|s| Ok(SubnetView::new(s, store.subnet_nodes(id, s.cidr)?, &slices)))
                .collect::<Result<Vec<_>, StoreError>>()?;
            Ok(TenantView {
                uuid: id,
                state: tenant.state.as_str().to_owned(),
                cnci: tenant_cnci(id, &cncis).map(CnciView::from),
                subnets,
                public_ips: store
                    .public_ips()?
                    .iter()
                    .filter(|a| a.tenant == id)
                    .map(PublicIpView::from)
                    .collect(),
                ingress: ingress_view(store, id)?,
                security_groups: groups_views(store, id)?,
            })
        })
        .await?;
    Ok(Json(view))
}

/// The tenant's security groups on each compute node that has filtered ports of it.
fn groups_views(store: &dyn Store, tenant: Uuid) -> Result<Vec<NodeGroupsView>, StoreError> {
    let nodes: std::collections::BTreeSet<Uuid> =
        store.port_groups(tenant)?.iter().map(|m| m.node).collect();
    Ok(store
        .groups_outcomes(tenant)?
        .iter()
        .filter(|o| nodes.contains(&o.node))
        .map(NodeGroupsView::from)
        .collect())
}

/// The tenant's ingress at its live CNCI (the one TenantIngress goes to), against the
/// snapshot the store makes now.
fn ingress_view(store: &dyn Store, tenant: Uuid) -> Result<Option<IngressView>, StoreError> {
    let live = store.cnci_of(tenant)?.filter(|c| {
        matches!(
            c.state,
            crate::CnciState::Ready | crate::CnciState::Retiring
        )
    });
    let Some(cnci) = live else {
        return Ok(None);
    };
    let wanted = crate::daemon::frames::tenant_ingress_cmd(
        &cnci,
        &store.ssh_access(tenant)?,
        &store.forwards(tenant)?,
        &store.ingress_rules(tenant)?,
    )
    .generation;
    let outcome = store.ingress_outcome(tenant)?;
    Ok(Some(IngressView::new(cnci.uuid, wanted, outcome.as_ref())))
}

pub async fn cncis(State(app): State<AppState>) -> Reply<Json<Vec<CnciView>>> {
    let view = app
        .store(|store| Ok(store.cncis()?.iter().map(CnciView::from).collect()))
        .await?;
    Ok(Json(view))
}

pub async fn public_ips(State(app): State<AppState>) -> Reply<Json<PublicIpsView>> {
    let view = app
        .store(|store| {
            let assignments = store.public_ips()?;
            Ok(PublicIpsView {
                pools: store
                    .public_pools()?
                    .into_iter()
                    .map(|p| PoolView::new(p, &assignments))
                    .collect(),
                assignments: assignments.iter().map(PublicIpView::from).collect(),
            })
        })
        .await?;
    Ok(Json(view))
}

/// 201 with a new assignment, 200 with the one the address already had (a retried call).
pub async fn assign_public_ip(
    State(app): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Reply<(StatusCode, Json<PublicIpView>)> {
    let id = tenant_id(path)?;
    let request: AssignRequest = json_body(body)?;
    let private = request.private_ip;
    let (created, assignment) = app
        .store(move |store| {
            let had = store
                .public_ips()?
                .iter()
                .any(|a| a.tenant == id && a.private == private);
            Ok((!had, store.assign_public_ip(id, private)?))
        })
        .await?;
    let view = PublicIpView::from(&assignment);
    // Told again on a retry too: the daemon's send is idempotent, and a retry may follow a
    // lost one.
    app.tell(AdminEvent::PublicIpAssigned(assignment)).await;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)))
}

/// 200 with the released assignment, 204 if the address was not assigned (a retried call).
pub async fn release_public_ip(
    State(app): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Reply<Response> {
    let Path((tenant, public)) = path.map_err(bad_path)?;
    let id = parse_tenant(&tenant)?;
    let public = public.parse().map_err(|_| {
        ApiError::bad_request(
            "bad_address",
            format!("public IP {public:?} is not an IPv4 address"),
        )
    })?;
    let released = app
        .store(move |store| store.release_public_ip(id, public))
        .await?;
    Ok(match released {
        Some(assignment) => {
            let view = PublicIpView::from(&assignment);
            app.tell(AdminEvent::PublicIpReleased(assignment)).await;
            Json(view).into_response()
        }
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

/// 202: the tenant takes no new request at once; its CNCI goes when its last workload has.
pub async fn delete_tenant(
    State(app): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Reply<(StatusCode, Json<TenantDeleted>)> {
    let id = tenant_id(path)?;
    let remains = app
        .store(move |store| {
            store.delete_tenant(id)?;
            Ok(store.tenant(id)?.is_some())
        })
        .await?;
    app.tell(AdminEvent::TenantDeleted(id)).await;
    let state = if remains { "deleting" } else { "forgotten" };
    Ok((
        StatusCode::ACCEPTED,
        Json(TenantDeleted {
            tenant: id,
            state: state.to_owned(),
        }),
    ))
}

pub async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_route",
        format!(
            "no endpoint {method} {}: the endpoints are /v1/nodes, /v1/tenants, \
             /v1/tenants/{{id}}, /v1/tenants/{{id}}/public-ips[/{{ip}}], /v1/tenants/{{id}}/security-groups[/{{group}}[/rules]], \
             /v1/tenants/{{id}}/security-rules/{{rule}}, /v1/tenants/{{id}}/forwards[/{{forward}}], \
             /v1/tenants/{{id}}/ssh, /v1/tenants/{{id}}/ingress-rules[/{{rule}}], \
             /v1/tenants/{{id}}/ingress-policy, /v1/cncis, /v1/public-ips",
            uri.path()
        ),
    )
}

pub async fn wrong_method(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("method {method} is not allowed on {}", uri.path()),
    )
}

pub(super) fn bad_path(rejection: PathRejection) -> ApiError {
    ApiError::bad_request("bad_path", rejection.body_text())
}

pub(super) fn tenant_id(path: Result<Path<String>, PathRejection>) -> Reply<Uuid> {
    let Path(text) = path.map_err(bad_path)?;
    parse_tenant(&text)
}

pub(super) fn parse_tenant(text: &str) -> Reply<Uuid> {
    text.parse().map_err(|_| {
        ApiError::bad_request("bad_tenant_id", format!("tenant id {text:?} is not a UUID"))
    })
}

/// The body as `T`, refused with the problem named: where the JSON breaks, or which field is
/// wrong and why.
pub(super) fn json_body<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Reply<T> {
    let body = body.map_err(|e| ApiError::bad_request("bad_body", e.body_text()))?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "malformed_json",
            "request body is empty: expected a JSON object",
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(&body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let at = e.path().to_string();
        json_error(Some(at), e.into_inner())
    })?;
    de.end().map_err(|e| json_error(None, e))?;
    Ok(value)
}

/// A data error names the field (`private_ip: invalid IPv4 address syntax`); a syntax error
/// says where the text breaks.
fn json_error(field: Option<String>, err: serde_json::Error) -> ApiError {
    if err.is_data() {
        let field = match field.as_deref() {
            None | Some(".") => "request body".to_owned(),
            Some(at) => at.to_owned(),
        };
        ApiError::bad_request("invalid_field", format!("{field}: {err}"))
    } else {
        ApiError::bad_request("malformed_json", format!("request body is not JSON: {err}"))
    }
}
