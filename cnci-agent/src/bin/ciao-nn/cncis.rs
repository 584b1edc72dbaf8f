//! One task per CNCI, all in this process: each builds (or adopts) its tenant's hub with the
//! cnci-agent library and holds its own SSNTP session as role cnciagent under the CNCI's UUID.
//! A task that fails or panics is started again after a back-off, converging from its records
//! as `ciao-cnci-agent` does on start.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use cnci_agent::daemon::{self, Connection};
use cnci_agent::handlers::{Agent, Policy};
use cnci_agent::state::{AgentRecord, Store};
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::records::NodeDir;

/// What every CNCI task shares.
pub struct Shared {
    pub dir: NodeDir,
    pub policy: Policy,
    pub addr: String,
    pub server_name: String,
    pub tls: Arc<rustls::ClientConfig>,
    /// Bounds the hubs being built at once: the kernel serialises netlink changes anyway, and
    /// a thousand adoptions at start must not open a thousand sockets at the same moment.
    pub building: Semaphore,
}

/// A running CNCI task and the way to stop it.
pub struct Task {
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

impl Task {
    /// Starts the task of `record`; its UUID goes to `first_failure` if its first attempt fails
    /// (a fresh START: the controller is told, while the task keeps trying).
    pub fn spawn(
        shared: Arc<Shared>,
        record: AgentRecord,
        first_failure: Option<UnboundedSender<Uuid>>,
    ) -> Task {
        let (stop, stopped) = watch::channel(false);
        let span =
            tracing::info_span!(parent: None, "cnci", uuid = %record.uuid, tenant = %record.tenant);
        let handle = tokio::spawn(tracing::Instrument::instrument(
            supervise(shared, record, stopped, first_failure),
            span,
        ));
        Task { stop, handle }
    }

    /// Stops the task and waits for it: its session closes, its kernel objects stay.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.handle.await {
            tracing::warn!("CNCI task ended badly while stopping: {e}");
        }
    }
}

/// The pause before the `failures`-th restart: 1 s doubling up to a minute.
fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.min(6)).min(Duration::from_secs(60))
}

async fn supervise(
    shared: Arc<Shared>,
    record: AgentRecord,
    mut stop: watch::Receiver<bool>,
    mut first_failure: Option<UnboundedSender<Uuid>>,
) {
    let mut failures = 0u32;
    while !*stop.borrow() {
        let attempt = tokio::spawn(tracing::Instrument::instrument(
            run_once(shared.clone(), record.clone(), stop.clone()),
            tracing::Span::current(),
        ));
        match attempt.await {
            Ok(Ok(())) => return, // stopped
            Ok(Err(e)) => tracing::error!("CNCI {} failed: {e:#}", record.uuid),
            Err(e) => tracing::error!("CNCI {} task panicked: {e}", record.uuid),
        }
        if let Some(tx) = first_failure.take() {
            let _ = tx.send(record.uuid);
        }
        failures = failures.saturating_add(1);
        let pause = backoff(failures);
        tracing::info!("restarting CNCI {} in {pause:?}", record.uuid);
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            _ = stop.changed() => {}
        }
    }
}

/// Builds or adopts the hub, then follows the CNCI's session until stopped.
async fn run_once(
    shared: Arc<Shared>,
    record: AgentRecord,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let dir = shared.dir.cnci_dir(record.uuid);
    let permit = shared.building.acquire().await.context("node stopping")?;
    let store = Store::open(&dir)?;
    let lock = store.lock()?;
    let policy = shared.policy.clone();
    let uuid = record.uuid;
    let mut agent = tokio::task::spawn_blocking(move || Agent::start(store, record, policy))
        .await
        .context("hub task")?
        .with_context(|| format!("bring CNCI {uuid}'s hub to its recorded state"))?;
    drop(permit);
    let status = Store::open(&dir)?;
    let conn = Connection {
        addr: shared.addr.clone(),
        server_name: shared.server_name.clone(),
        tls: shared.tls.clone(),
    };
    let watch = stop.clone();
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    daemon::serve(&mut agent, &status, conn, stopped).await?;
    drop(lock);
    if !*watch.borrow() {
        anyhow::bail!("the session ended on its own");
    }
    Ok(())
}
