//! The daemon: bring the hub to its recorded state, then follow the scheduler's frames.

use std::time::Duration;

use ssntp::client::{Client, ClientConfig, ClientEvent};
use ssntp::frame::role;

use crate::error::Result;
use crate::handlers::Agent;
use crate::state::{Status, Store};

/// How to reach the scheduler.
pub struct Connection {
    pub addr: String,
    pub server_name: String,
    pub tls: std::sync::Arc<rustls::ClientConfig>,
}

fn set_status(store: &Store, connected: bool) {
    let status = Status {
        pid: std::process::id(),
        connected,
    };
    if let Err(e) = store.put_status(&status) {
        tracing::warn!("recording the session status: {e}");
    }
}

/// Runs until SIGINT or SIGTERM. Stopping leaves the kernel as it is, so tenant traffic keeps
/// flowing while the agent restarts; `destroy` is the way to take a CNCI down.
pub async fn run(agent: &mut Agent, status: &Store, conn: Connection) -> Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| netcore::Error::Io {
            op: "install SIGTERM handler".into(),
            source: e,
        })?;
    let stop = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    serve(agent, status, conn, stop).await
}

/// Follows the scheduler's frames until `stop` completes (`ciao-nn` stops one CNCI of many
/// this way). Like [`run`], it leaves the kernel as it is.
pub async fn serve(
    agent: &mut Agent,
    status: &Store,
    conn: Connection,
    stop: impl std::future::Future<Output = ()>,
) -> Result<()> {
    set_status(status, false);
    tracing::info!(
        "ciao-cnci-agent {} ready: tenant namespace {}",
        agent.record.uuid,
        agent.record.netns
    );
    let (client, mut events) = Client::spawn(ClientConfig {
        addr: conn.addr,
        server_name: conn.server_name,
        tls: conn.tls,
        uuid: agent.record.uuid,
        role: role::CNCIAGENT,
        max_backoff: Duration::from_secs(5),
    });
    tokio::pin!(stop);
    loop {
        let event = tokio::select! {
            e = events.recv() => e,
            () = &mut stop => break,
        };
        let Some(event) = event else { break };
        match event {
            ClientEvent::Connected(hello) => {
                tracing::info!("connected to scheduler {}", hello.uuid);
                set_status(status, true);
                if client.send(agent.concentrator_added()).await.is_err() {
                    break;
                }
            }
            ClientEvent::Frame(frame) => {
                let replies = tokio::task::block_in_place(|| {
                    let replies = agent.handle(&frame);
                    if events.is_empty() {
                        agent.idle();
                    }
                    replies
                });
                for reply in replies {
                    if client.send(reply).await.is_err() {
                        break;
                    }
                }
            }
            ClientEvent::Disconnected(reason) => {
                tracing::warn!("scheduler session: {reason}; reconnecting");
                set_status(status, false);
            }
        }
    }
    set_status(status, false);
    Ok(())
}
