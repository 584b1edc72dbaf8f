//! The daemon's loop: the scheduler session's frames and the admin API's events in, the
//! controller's frames out, until SIGINT or SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use ssntp::client::{Client, ClientConfig, ClientEvent};
use ssntp::frame::role;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use super::{AdminEvent, Controller};

/// How to reach the scheduler.
pub struct Connection {
    pub addr: String,
    pub server_name: String,
    pub tls: Arc<rustls::ClientConfig>,
}

/// Follows the scheduler (reconnecting forever) and the admin events until a signal. The
/// store calls block (SQLite, fsync per decision), hence `block_in_place`: the runtime must
/// be multi-threaded.
pub async fn run(
    mut ctl: Controller,
    conn: Connection,
    mut admin: mpsc::Receiver<AdminEvent>,
) -> std::io::Result<()> {
    let (client, mut events) = Client::spawn(ClientConfig {
        addr: conn.addr,
        server_name: conn.server_name,
        tls: conn.tls,
        uuid: ctl.me,
        role: role::CONTROLLER,
        max_backoff: Duration::from_secs(5),
    });
    let mut term = signal(SignalKind::terminate())?;
    let mut admin_open = true;
    loop {
        let out = tokio::select! {
            event = events.recv() => match event {
                Some(ClientEvent::Connected(hello)) => {
                    tracing::info!(scheduler = %hello.uuid, "connected to the scheduler");
                    Vec::new()
                }
                Some(ClientEvent::Frame(frame)) => tokio::task::block_in_place(|| ctl.handle(&frame)),
                Some(ClientEvent::Disconnected(reason)) => {
                    tracing::warn!("scheduler session: {reason}; reconnecting");
                    Vec::new()
                }
                None => break,
            },
            event = admin.recv(), if admin_open => match event {
                Some(event) => tokio::task::block_in_place(|| ctl.admin(&event)),
                None => {
                    admin_open = false;
                    Vec::new()
                }
            },
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        };
        for frame in out {
            if client.send(frame).await.is_err() {
                return Ok(());
            }
        }
    }
    tracing::info!("stopping");
    Ok(())
}
