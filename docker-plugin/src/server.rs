//! HTTP/1.1 over a unix socket, as Docker's plugin client speaks it: every call is
//! `POST /<Interface>.<Method>` with a JSON body (no Content-Type, possibly empty). Replies are
//! 200 with JSON (`{"Err": ...}` on failure); a path outside the protocol gets 404.

use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::UnixListener;

use crate::plugin::Plugin;

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

async fn handle(
    req: Request<Incoming>,
    plugin: Arc<Mutex<Plugin>>,
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
    // one call at a time (the node lock would serialise them anyway).
    let result = tokio::task::spawn_blocking(move || {
        let mut plugin = plugin.lock().unwrap_or_else(|p| p.into_inner());
        plugin.call(&call, &body)
    })
    .await;
    let resp = match result {
        Ok(None) => reply(
            StatusCode::NOT_FOUND,
            &json!({"Err": format!("{path} is not a call of this plugin")}),
        ),
        Ok(Some(Ok(value))) => {
            if verbose {
                eprintln!("ciao-docker-plugin: {path}: ok");
            }
            reply(StatusCode::OK, &value)
        }
        Ok(Some(Err(err))) => {
            eprintln!("ciao-docker-plugin: {path}: {err}");
            reply(StatusCode::OK, &json!({"Err": err.to_string()}))
        }
        Err(e) => reply(
            StatusCode::OK,
            &json!({"Err": format!("internal error: {e}")}),
        ),
    };
    Ok(resp)
}

/// Serves connections until `shutdown` completes.
pub async fn serve(
    listener: UnixListener,
    plugin: Arc<Mutex<Plugin>>,
    verbose: bool,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    eprintln!("ciao-docker-plugin: accept: {e}");
                    continue;
                }
            },
            () = &mut shutdown => return Ok(()),
        };
        let plugin = plugin.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(req, plugin.clone(), verbose));
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                eprintln!("ciao-docker-plugin: connection: {e}");
            }
        });
    }
}
