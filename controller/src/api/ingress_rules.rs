//! The endpoints of the tenants' ingress rules and default action. Each change is decided in
//! the store in one transaction, then the tenant's CNCI gets the new TenantIngress snapshot.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;

use super::error::ApiError;
use super::handlers::{bad_path, json_body, parse_tenant, tenant_id, AppState};
use super::ingress_views::{IngressPolicyRequest, IngressRuleView, IngressRulesView};
use super::AdminEvent;
use crate::security::ingress_rule::{IngressAction, IngressRuleRequest};
use crate::store::StoreError;

type Reply<T> = Result<T, ApiError>;
type TenantPath = Result<Path<String>, PathRejection>;

pub async fn rules(State(app): State<AppState>, path: TenantPath) -> Reply<Json<IngressRulesView>> {
    let tenant = tenant_id(path)?;
    let rules = app.store(move |store| store.ingress_rules(tenant)).await?;
    Ok(Json(IngressRulesView::from(&rules)))
}

pub async fn add_rule(
    State(app): State<AppState>,
    path: TenantPath,
    body: Result<Bytes, BytesRejection>,
) -> Reply<(StatusCode, Json<IngressRuleView>)> {
    let tenant = tenant_id(path)?;
    let request: IngressRuleRequest = json_body(body)?;
    let (spec, position) = request
        .check()
        .map_err(|e| ApiError::from(StoreError::InvalidIngressRule(e)))?;
    let rule = app
        .store(move |store| store.add_ingress_rule(tenant, &spec, position))
        .await?;
    app.tell(AdminEvent::IngressChanged(tenant)).await;
    Ok((StatusCode::CREATED, Json(IngressRuleView::from(&rule))))
}

pub async fn delete_rule(
    State(app): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Reply<Json<IngressRuleView>> {
    let Path((tenant, rule)) = path.map_err(bad_path)?;
    let tenant = parse_tenant(&tenant)?;
    let rule = rule.parse().map_err(|_| {
        ApiError::bad_request("bad_id", format!("ingress rule id {rule:?} is not a UUID"))
    })?;
    let gone = app
        .store(move |store| store.delete_ingress_rule(tenant, rule))
        .await?;
    app.tell(AdminEvent::IngressChanged(tenant)).await;
    Ok(Json(IngressRuleView::from(&gone)))
}

pub async fn set_policy(
    State(app): State<AppState>,
    path: TenantPath,
    body: Result<Bytes, BytesRejection>,
) -> Reply<Json<IngressRulesView>> {
    let tenant = tenant_id(path)?;
    let request: IngressPolicyRequest = json_body(body)?;
    let default: IngressAction = request
        .default
        .parse()
        .map_err(|e: String| ApiError::from(StoreError::InvalidIngressRule(e)))?;
    let rules = app
        .store(move |store| store.set_ingress_default(tenant, default))
        .await?;
    app.tell(AdminEvent::IngressChanged(tenant)).await;
    Ok(Json(IngressRulesView::from(&rules)))
}
