//! The endpoints of security groups, rules, forwards and SSH access. Each decides in the
//! store in one transaction; what the nodes must apply is read from the store by the appliers.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use uuid::Uuid;

use super::error::ApiError;
use super::handlers::{bad_path, json_body, parse_tenant, tenant_id, AppState};
use super::security_views::{ForwardView, GroupRequest, GroupView, RuleView, SshRequest, SshView};
use super::AdminEvent;
use crate::security::forward::ForwardRequest;
use crate::security::RuleRequest;
use crate::store::{Store, StoreError};

type Reply<T> = Result<T, ApiError>;
type Pair = Result<Path<(String, String)>, PathRejection>;

fn group_view(store: &dyn Store, tenant: Uuid, group: &str) -> Result<GroupView, StoreError> {
    let found = store.security_group(tenant, group)?;
    let groups = store.security_groups(tenant)?;
    Ok(GroupView::new(
        &found,
        &store.security_rules(tenant)?,
        &groups,
    ))
}

fn pair(path: Pair) -> Reply<(Uuid, String)> {
    let Path((tenant, other)) = path.map_err(bad_path)?;
    Ok((parse_tenant(&tenant)?, other))
}

fn id(text: &str, what: &'static str) -> Reply<Uuid> {
    text.parse()
        .map_err(|_| ApiError::bad_request("bad_id", format!("{what} id {text:?} is not a UUID")))
}

pub async fn groups(
    State(app): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Reply<Json<Vec<GroupView>>> {
    let tenant = tenant_id(path)?;
    let view = app
        .store(move |store| {
            let groups = store.security_groups(tenant)?;
            let rules = store.security_rules(tenant)?;
            Ok(groups
                .iter()
                .map(|g| GroupView::new(g, &rules, &groups))
                .collect())
        })
        .await?;
    Ok(Json(view))
}

pub async fn group(State(app): State<AppState>, path: Pair) -> Reply<Json<GroupView>> {
    let (tenant, group) = pair(path)?;
    let view = app
        .store(move |store| group_view(store, tenant, &group))
        .await?;
    Ok(Json(view))
}

pub async fn create_group(
    State(app): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Reply<(StatusCode, Json<GroupView>)> {
    let tenant = tenant_id(path)?;
    let request: GroupRequest = json_body(body)?;
    let view = app
        .store(move |store| {
            let made = store.create_security_group(tenant, &request.name, &request.description)?;
            group_view(store, tenant, &made.uuid.to_string())
        })
        .await?;
    // A name workloads already use becomes a real group.
    app.tell(AdminEvent::SecurityChanged(tenant)).await;
    Ok((StatusCode::CREATED, Json(view)))
}

pub async fn delete_group(State(app): State<AppState>, path: Pair) -> Reply<Json<GroupView>> {
    let (tenant, group) = pair(path)?;
    let view = app
        .store(move |store| {
            let before = group_view(store, tenant, &group)?;
            store.delete_security_group(tenant, &group)?;
            Ok(before)
        })
        .await?;
    app.tell(AdminEvent::SecurityChanged(tenant)).await;
    Ok(Json(view))
}

pub async fn add_rule(
    State(app): State<AppState>,
    path: Pair,
    body: Result<Bytes, BytesRejection>,
) -> Reply<(StatusCode, Json<RuleView>)> {
    let (tenant, group) = pair(path)?;
    let request: RuleRequest = json_body(body)?;
    let (spec, remote) = request
        .check()
        .map_err(|e| ApiError::from(StoreError::InvalidRule(e.0)))?;
    let view = app
        .store(move |store| {
            let rule = store.add_security_rule(tenant, &group, spec, remote.as_deref())?;
            Ok(RuleView::new(&rule, &store.security_groups(tenant)?))
        })
        .await?;
    app.tell(AdminEvent::SecurityChanged(tenant)).await;
    Ok((StatusCode::CREATED, Json(view)))
}

pub async fn delete_rule(State(app): State<AppState>, path: Pair) -> Reply<Json<RuleView>> {
    let (tenant, rule) = pair(path)?;
    let rule = id(&rule, "rule")?;
    let view = app
        .store(move |store| {
            let gone = store.delete_security_rule(tenant, rule)?;
            Ok(RuleView::new(&gone, &store.security_groups(tenant)?))
        })
        .await?;
    app.tell(AdminEvent::SecurityChanged(tenant)).await;
    Ok(Json(view))
}

pub async fn forwards(
    State(app): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Reply<Json<Vec<ForwardView>>> {
    let tenant = tenant_id(path)?;
    let view = app
        .store(move |store| {
            Ok(store
                .forwards(tenant)?
                .iter()
                .map(ForwardView::from)
                .collect())
        })
        .await?;
    Ok(Json(view))
}

/// 201 with a new forward, 200 with the equal one the tenant had (a retried call).
pub async fn add_forward(
    State(app): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Reply<(StatusCode, Json<ForwardView>)> {
    let tenant = tenant_id(path)?;
    let request: ForwardRequest = json_body(body)?;
    let spec = request
        .check()
        .map_err(|e| ApiError::from(StoreError::InvalidForward(e)))?;
    let (created, forward) = app
        .store(move |store| {
            let before = store.forwards(tenant)?.len();
            let forward = store.add_forward(tenant, &spec)?;
            Ok((store.forwards(tenant)?.len() > before, forward))
        })
        .await?;
    app.tell(AdminEvent::IngressChanged(tenant)).await;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(ForwardView::from(&forward))))
}

pub async fn delete_forward(State(app): State<AppState>, path: Pair) -> Reply<Json<ForwardView>> {
    let (tenant, forward) = pair(path)?;
    let forward = id(&forward, "forward")?;
    let gone = app
        .store(move |store| store.delete_forward(tenant, forward))
        .await?;
    app.tell(AdminEvent::IngressChanged(tenant)).await;
    Ok(Json(ForwardView::from(&gone)))
}

pub async fn ssh(
    State(app): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Reply<Json<SshView>> {
    let tenant = tenant_id(path)?;
    let access = app.store(move |store| store.ssh_access(tenant)).await?;
    Ok(Json(SshView::from(&access)))
}

pub async fn set_ssh(
    State(app): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Reply<Json<SshView>> {
    let tenant = tenant_id(path)?;
    let request: SshRequest = json_body(body)?;
    let access = app
        .store(move |store| store.set_ssh(tenant, request.enabled))
        .await?;
    app.tell(AdminEvent::IngressChanged(tenant)).await;
    Ok(Json(SshView::from(&access)))
}
