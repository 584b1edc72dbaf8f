//! A client of the admin API over its unix socket (what `ciao-net` and the tests use).

use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

/// How long a call may take before the client gives up on the controller.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// Why a call got no answer. Each message names the socket and what to check.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no admin socket at {0}: the controller is not running (or uses another state_dir: give --socket or set CIAO_NET_SOCKET)")]
    NoSocket(String),
    #[error("nothing answers on {0}: the controller is not running (the socket is left from an earlier run)")]
    Refused(String),
    #[error("{0} is not a socket: give the controller's admin socket (<state_dir>/admin.sock)")]
    NotASocket(String),
    #[error("{0}: permission denied (the socket is mode 0600: run as the controller's user)")]
    Denied(String),
    #[error("cannot connect to {path}: {source}")]
    Connect { path: String, source: io::Error },
    #[error("talking to the controller on {path}: {source}")]
    Http { path: String, source: hyper::Error },
    #[error("the controller on {0} did not answer within {TIMEOUT:?}")]
    Timeout(String),
    #[error("bad request: {0}")]
    Request(#[from] axum::http::Error),
}

/// An answer of the API: its status and JSON body (empty for 204).
#[derive(Debug, Clone)]
pub struct ApiResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Calls the API on one socket; each call is its own connection.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
}

impl Client {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Client {
            socket: socket.into(),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `method path` with an optional JSON body, within [`TIMEOUT`].
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<ApiResponse, ClientError> {
        let shown = self.socket.display().to_string();
        tokio::time::timeout(TIMEOUT, self.call_once(method, path, body, &shown))
            .await
            .map_err(|_| ClientError::Timeout(shown.clone()))?
    }

    async fn call_once(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        shown: &str,
    ) -> Result<ApiResponse, ClientError> {
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|e| connect_error(e, &self.socket, shown))?;
        let http = |source| ClientError::Http {
            path: shown.to_owned(),
            source,
        };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(http)?;
        tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "localhost");
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let request = request.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        let response = sender.send_request(request).await.map_err(http)?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(http)?
            .to_bytes();
        Ok(ApiResponse {
            status,
            headers,
            body,
        })
    }
}

fn connect_error(err: io::Error, path: &Path, shown: &str) -> ClientError {
    let is_socket = std::fs::metadata(path).map(|m| m.file_type().is_socket());
    if let Ok(false) = is_socket {
        return ClientError::NotASocket(shown.to_owned());
    }
    match err.kind() {
        io::ErrorKind::NotFound => ClientError::NoSocket(shown.to_owned()),
        io::ErrorKind::ConnectionRefused => ClientError::Refused(shown.to_owned()),
        io::ErrorKind::PermissionDenied => ClientError::Denied(shown.to_owned()),
        _ => ClientError::Connect {
            path: shown.to_owned(),
            source: err,
        },
    }
}
