//! Delivery of a compute node's recorded reports (TenantAdded / TenantRemoved) to the scheduler.
//!
//! The front ends only record reports in the node's state directory and return; this loop owns
//! the node's one SSNTP session (role AGENT, UUID = the node identity that reports carry). It
//! sends the reports oldest first and deletes each only after its frame was written, so a
//! crash or a dropped connection re-sends rather than loses (at-least-once; the CNCI's handlers
//! are idempotent). It reconnects forever with jittered back-off.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use netcore::state::StateDir;
use netcore::{Report, ReportEvent};
use ssntp::frame::{event, kind, role, Frame};
use ssntp::payloads::{
    Ipv4Subnet, Payload, TenantAdded, TenantAddedEvent, TenantRemoved, TunnelKind,
};

/// Where and how to deliver.
pub struct Delivery {
    pub state_dir: PathBuf,
    pub scheduler: String,
    pub server_name: String,
    pub tls: Arc<rustls::ClientConfig>,
    /// How often pending reports are looked for while connected.
    pub poll: Duration,
}

/// The SSNTP frame for one report.
pub fn frame_for(report: &Report) -> anyhow::Result<Frame> {
    let subnet: Ipv4Subnet = report
        .tenant_subnet
        .parse()
        .map_err(|e| anyhow::anyhow!("report subnet {}: {e:?}", report.tenant_subnet))?;
    let kind_of = match report.tunnel_kind {
        netcore::TunnelKind::Vxlan => TunnelKind::Vxlan,
        netcore::TunnelKind::Gretap => TunnelKind::Gretap,
        netcore::TunnelKind::Geneve => TunnelKind::Geneve,
    };
    let body = TenantAddedEvent::new(
        report.agent_uuid,
        report.agent_ip,
        report.tenant_uuid,
        subnet,
        report.concentrator_uuid,
        report.concentrator_ip,
    )
    .with_tunnel(kind_of, report.tunnel_id);
    let (operand, payload) = match report.event {
        ReportEvent::TenantAdded => (event::TENANT_ADDED, TenantAdded(body).to_yaml()),
        ReportEvent::TenantRemoved => (event::TENANT_REMOVED, TenantRemoved(body).to_yaml()),
    };
    Ok(Frame::new(kind::EVENT, operand, report.agent_uuid, payload))
}

/// Jittered back-off between connection attempts: 1 s doubling to 30 s, each ±50 %.
fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_secs(1u64 << attempt.min(5)).min(Duration::from_secs(30));
    let jitter = uuid::Uuid::new_v4().as_u128() as u64 % 1000;
    base / 2 + base.mul_f64(jitter as f64 / 1000.0)
}

impl Delivery {
    /// Runs until the process ends.
    pub async fn run(&self) -> anyhow::Result<()> {
        let state = StateDir::open(&self.state_dir).context("open the node state")?;
        let uuid = state.lock()?.node_identity()?.uuid;
        // One delivery process per node: a second one would be a second session with one UUID.
        let lock_path = self.state_dir.join("delivery.lock");
        let lock_file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("open {}", lock_path.display()))?;
        let _held = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| {
                anyhow::anyhow!("another ciao-node run holds {}: {e}", lock_path.display())
            })?;
        let mut attempt = 0;
        loop {
            match ssntp::client::dial(
                &self.scheduler,
                &self.server_name,
                self.tls.clone(),
                uuid,
                role::AGENT,
            )
            .await
            {
                Ok(session) => {
                    attempt = 0;
                    eprintln!(
                        "ciao-node: connected to scheduler {} as {uuid}",
                        session.server.uuid
                    );
                    if let Err(e) = self.serve(&state, session).await {
                        eprintln!("ciao-node: session ended: {e:#}");
                    }
                }
                Err(e) => eprintln!(
                    "ciao-node: cannot reach the scheduler at {}: {e}",
                    self.scheduler
                ),
            }
            tokio::time::sleep(backoff(attempt)).await;
            attempt = attempt.saturating_add(1);
        }
    }

    async fn serve(&self, state: &StateDir, session: ssntp::client::Session) -> anyhow::Result<()> {
        let ssntp::client::Session {
            mut reader,
            mut writer,
            ..
        } = session;
        // Frames from the scheduler (CONFIGURE, ...) are read only to notice a closed session.
        let mut closed = tokio::spawn(async move {
            loop {
                match reader.frame().await {
                    Ok(Some(_)) => continue,
                    Ok(None) => return anyhow::anyhow!("the scheduler closed the session"),
                    Err(e) => return anyhow::anyhow!(e),
                }
            }
        });
        loop {
            let pending = { state.lock()?.reports()? };
            for (name, report) in pending {
                match frame_for(&report) {
                    Ok(frame) => writer.frame(&frame).await.context("send a report")?,
                    Err(e) => eprintln!("ciao-node: dropping unreadable report {name}: {e:#}"),
                }
                state.lock()?.remove_report(&name)?;
            }
            tokio::select! {
                err = &mut closed => return Err(err.unwrap_or_else(|e| anyhow::anyhow!(e))),
                _ = tokio::time::sleep(self.poll) => {}
            }
        }
    }
}
