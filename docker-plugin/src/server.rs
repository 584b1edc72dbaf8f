//! HTTP/1.1 over a unix socket, as Docker's plugin client speaks it: every call is
//! `POST /<Interface>.<Method>` with a JSON body (no Content-Type, possibly empty). Replies are
//! 200 with JSON (`{"Err": ...}` on failure); a path outside the protocol gets 404.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio::net::UnixListener;
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::plugin::Plugin;
use netcore::Kernel;

/// Requests served since start; numbers the request spans.
static REQUESTS: AtomicU64 = AtomicU64::new(0);

/// Largest request body accepted; Docker's are a few hundred bytes.
const MAX_BODY: usize = 1 << 20;

const CONTENT_TYPE: &str = "application/vnd.docker.plugins.v1+json";

fn reply(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(CONTENT_TYPE),
    );
    resp
}

async fn handle<K: Kernel + Send + 'static>(
    req: Request<Incoming>,
    plugin: Arc<Mutex<Plugin<K>>>,
    state_dir: Arc<PathBuf>,
    verbose: bool,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let path = req.uri().path().to_string();
    if req.method() != hyper::Method::POST {
        return Ok(reply(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({"Err": format!("{} {path}: plugin calls are POST", req.method())}),
        ));
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return Ok(reply(
                StatusCode::OK,
                &json!({"Err": format!("malformed request: {e}")}),
            ))
        }
    };
    let call = path.clone();
    // The core does blocking netlink and file I/O under the node lock: off the async workers,
    // one call at a time (the node lock would serialise them anyway). Only what touches no
    // record runs before the plugin is taken: a RequestPool's wait for the controller.
    let span = tracing::Span::current();
    let result = tokio::task::spawn_blocking(move || {
        let _span = span.enter();
        let prepared = crate::plugin::prepare(&state_dir, &call, &body);
        let mut plugin = plugin.lock().unwrap_or_else(|p| p.into_inner());
        plugin.call_prepared(&call, &body, prepared)
    })
    .await;
    let resp = match result {
        Ok(None) => reply(
            StatusCode::NOT_FOUND,
            &json!({"Err": format!("{path} is not a call of this plugin")}),
        ),
        Ok(Some(Ok(value))) => {
            if verbose {
                tracing::info!("{path}: ok");
            }
            reply(StatusCode::OK, &value)
        }
        Ok(Some(Err(err))) => {
            tracing::warn!("{path}: {err}");
            reply(StatusCode::OK, &json!({"Err": err.to_string()}))
        }
        Err(e) => reply(
            StatusCode::OK,
            &json!({"Err": format!("internal error: {e}")}),
        ),
    };
    Ok(resp)
}

/// Connection bounds; see the README's Docker plugin section for what each guards against.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A request head must arrive within this, counted from when the connection starts waiting
    /// for it: also how long an idle keep-alive connection is kept.
    pub header_timeout: Duration,
    /// From a head received to the answer written, body included; a connection over it is
    /// closed (a core call already under way still completes: it is crash-safe and idempotent).
    pub request_timeout: Duration,
    /// Connections served at once; further ones wait in the socket's listen backlog.
    pub max_connections: usize,
    /// Pause after a failed accept (e.g. out of file descriptors) before the next one.
    pub accept_backoff: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(60),
            max_connections: 256,
            accept_backoff: Duration::from_millis(100),
        }
    }
}

/// The call did not finish within [`Limits::request_timeout`]; hyper closes the connection.
#[derive(Debug, thiserror::Error)]
#[error("request not answered within {0:?}")]
struct RequestTimeout(Duration);

/// At most one log line per interval for a repeated failure, with the count it stands for.
struct RateLimited {
    every: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimited {
    fn new(every: Duration) -> Self {
        RateLimited {
            every,
            last: None,
            suppressed: 0,
        }
    }

    /// How many occurrences this one stands for, or `None` if it should not be logged.
    fn admit(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < self.every)
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed) + 1)
    }
}

/// Serves connections until `shutdown` completes.
pub async fn serve<K: Kernel + Send + 'static>(
    listener: UnixListener,
    plugin: Arc<Mutex<Plugin<K>>>,
    verbose: bool,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    tokio::pin!(shutdown);
    let state_dir = Arc::new(
        plugin
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .state_dir()
            .to_path_buf(),
    );
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut accept_errors = RateLimited::new(Duration::from_secs(1));
    let mut at_cap = RateLimited::new(Duration::from_secs(10));
    let timer = TokioTimer::new();
    loop {
        // A connection is taken from the backlog only when it can be served: excess ones queue
        // in the kernel, costing this process neither a file descriptor nor memory.
        if slots.available_permits() == 0 {
            if let Some(n) = at_cap.admit() {
                tracing::warn!(
                    max_connections = limits.max_connections,
                    times = n,
                    "connection cap reached; new connections wait in the listen backlog"
                );
            }
        }
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.map_err(std::io::Error::other)?,
            () = &mut shutdown => return Ok(()),
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    if let Some(n) = accept_errors.admit() {
                        tracing::error!(times = n, "accept: {e}; backing off");
                    }
                    tokio::time::sleep(limits.accept_backoff).await;
                    continue;
                }
            },
            () = &mut shutdown => return Ok(()),
        };
        let plugin = plugin.clone();
        let state_dir = state_dir.clone();
        let timer = timer.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let deadline = limits.request_timeout;
            let service = service_fn(move |req: Request<Incoming>| {
                // One span per request: every line it logs names the call and its number.
                let span = tracing::info_span!(
                    "request",
                    id = REQUESTS.fetch_add(1, Ordering::Relaxed),
                    call = %req.uri().path()
                );
                let call = handle(req, plugin.clone(), state_dir.clone(), verbose).instrument(span);
                async move {
                    match tokio::time::timeout(deadline, call).await {
                        Ok(Ok(resp)) => Ok(resp),
                        Ok(Err(never)) => match never {},
                        Err(_) => Err(RequestTimeout(deadline)),
                    }
                }
            });
            let served = http1::Builder::new()
                .timer(timer)
                .header_read_timeout(limits.header_timeout)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                tracing::debug!("connection closed: {e}");
            }
        });
    }
}
