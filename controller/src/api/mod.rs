//! The controller's admin API: JSON over HTTP/1.1 on a unix socket (`<state_dir>/admin.sock`,
//! mode 0600, so only the controller's user may call it). TCP, with TLS client certificates,
//! is a later step.
//!
//! axum over hyper 1: its router gives the 404/405 split, typed path parameters and JSON
//! replies for free, where plain hyper would need a hand-written router; the extra crates
//! (axum-core, matchit, tower) are small and serve `UnixListener` directly.
//!
//! A change (public IP, tenant deletion) is decided by the [`Store`] in one transaction; only
//! after it committed is the daemon told, by an [`AdminEvent`], what to send to the nodes.
//! A refused request changes nothing.

pub mod client;
pub mod error;
mod handlers;
mod ingress_rules;
pub mod ingress_views;
mod security;
pub mod security_text;
pub mod security_views;
pub mod table;
pub mod text;
pub mod views;

use std::future::Future;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::routing::{delete, get, post};
use axum::Router;
use tokio::net::UnixListener;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::model::PublicIpAssignment;
use crate::store::Store;

pub use error::ApiError;

/// The socket's file name inside the state directory.
pub const SOCKET_FILE: &str = "admin.sock";

/// What the daemon must send to nodes after the store decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminEvent {
    /// Tell the tenant's CNCI to map the public address to the private one.
    PublicIpAssigned(PublicIpAssignment),
    /// Tell the tenant's CNCI to drop the mapping.
    PublicIpReleased(PublicIpAssignment),
    /// The tenant takes no new request; its CNCI is retiring (stop it once
    /// [`Store::cncis_to_stop`] lists it), or the tenant was forgotten at once.
    TenantDeleted(Uuid),
    /// The tenant's forwards, SSH access, forward IP or ingress rules changed: send its CNCI
    /// the snapshot.
    IngressChanged(Uuid),
    /// A security group or rule of the tenant changed: re-send the compute nodes whose
    /// snapshot of the tenant's groups changed.
    SecurityChanged(Uuid),
}

/// The socket path for a state directory.
pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join(SOCKET_FILE)
}

/// The socket path of a controller with the default state directory.
pub fn default_socket_path() -> PathBuf {
    socket_path(Path::new(crate::config::DEFAULT_STATE_DIR))
}

/// The API's routes, for [`serve`] (public so a test or another transport can mount it).
pub fn router(store: Arc<dyn Store>, events: mpsc::Sender<AdminEvent>) -> Router {
    Router::new()
        .route("/v1/nodes", get(handlers::nodes))
        .route("/v1/tenants", get(handlers::tenants))
        .route(
            "/v1/tenants/{id}",
            get(handlers::tenant).delete(handlers::delete_tenant),
        )
        .route(
            "/v1/tenants/{id}/public-ips",
            post(handlers::assign_public_ip),
        )
        .route(
            "/v1/tenants/{id}/public-ips/{ip}",
            delete(handlers::release_public_ip),
        )
        .route(
            "/v1/tenants/{id}/security-groups",
            get(security::groups).post(security::create_group),
        )
        .route(
            "/v1/tenants/{id}/security-groups/{group}",
            get(security::group).delete(security::delete_group),
        )
        .route(
            "/v1/tenants/{id}/security-groups/{group}/rules",
            post(security::add_rule),
        )
        .route(
            "/v1/tenants/{id}/security-rules/{rule}",
            delete(security::delete_rule),
        )
        .route(
            "/v1/tenants/{id}/forwards",
            get(security::forwards).post(security::add_forward),
        )
        .route(
            "/v1/tenants/{id}/forwards/{forward}",
            delete(security::delete_forward),
        )
        .route(
            "/v1/tenants/{id}/ssh",
            get(security::ssh).put(security::set_ssh),
        )
        .route(
            "/v1/tenants/{id}/ingress-rules",
            get(ingress_rules::rules).post(ingress_rules::add_rule),
        )
        .route(
            "/v1/tenants/{id}/ingress-rules/{rule}",
            delete(ingress_rules::delete_rule),
        )
        .route(
            "/v1/tenants/{id}/ingress-policy",
            get(ingress_rules::rules).put(ingress_rules::set_policy),
        )
        .route("/v1/cncis", get(handlers::cncis))
        .route("/v1/public-ips", get(handlers::public_ips))
        .fallback(handlers::no_route)
        .method_not_allowed_fallback(handlers::wrong_method)
        .with_state(handlers::AppState { store, events })
}

/// Serve the API on `listener` until the process ends (an accept error is retried, so this
/// returns only if the server cannot go on).
pub async fn serve(
    listener: UnixListener,
    store: Arc<dyn Store>,
    events: mpsc::Sender<AdminEvent>,
) -> io::Result<()> {
    axum::serve(listener, router(store, events)).await
}

/// [`serve`] until `shutdown` completes; requests under way are finished first.
pub async fn serve_until(
    listener: UnixListener,
    store: Arc<dyn Store>,
    events: mpsc::Sender<AdminEvent>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    axum::serve(listener, router(store, events))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Listen on `path` with mode 0600 from the first instant: the socket is bound under a
/// temporary name, restricted, then renamed into place. A stale socket (nobody answers) is
/// replaced; a live one (another controller) or a path that is not a socket is refused.
/// Must be called inside a tokio runtime.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    let named = |e: io::Error, what: &str| {
        io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ))
        }
        Ok(_) if std::os::unix::net::UnixStream::connect(path).is_ok() => {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "{} is served by a running process (another controller?)",
                    path.display()
                ),
            ))
        }
        _ => {}
    }
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(format!(".{}.tmp", std::process::id()));
    let temporary = PathBuf::from(temporary);
    let _ = std::fs::remove_file(&temporary);
    let listener = std::os::unix::net::UnixListener::bind(&temporary)
        .map_err(|e| named(e, "cannot bind the admin socket"))?;
    let placed = std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o600))
        .and_then(|()| std::fs::rename(&temporary, path));
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&temporary);
        return Err(named(e, "cannot place the admin socket at"));
    }
    listener.set_nonblocking(true)?;
    UnixListener::from_std(listener)
}
