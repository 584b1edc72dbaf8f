//! Delivery of a compute node's recorded reports (TenantAdded / TenantRemoved) to the scheduler,
//! and re-announcement of the node's current registrations.
//!
//! The front ends only record reports in the node's state directory and return; this loop owns
//! the node's one SSNTP session (role AGENT, UUID = the node identity that reports carry). It
//! sends the reports oldest first and deletes each once its frame was written. A frame written
//! is not a frame delivered (the scheduler or the CNCI may die with it), so the node also
//! re-announces its current set ([`crate::announce`]) after every (re)connect and whenever the
//! scheduler forwards a ConcentratorInstanceAdded for a CNCI the node uses. Subnets awaiting
//! their CNCI (controller mode) ask the controller for it and get their tunnel from its answer
//! ([`crate::cnci`]). It reconnects forever with jittered back-off.

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use netcore::state::{NetRecord, StateDir};
use netcore::Report;
use ssntp::frame::{event, kind, role, Frame};
use ssntp::payloads::{ConcentratorInstanceAdded, Payload};
use tokio::io::AsyncWrite;
use tokio::sync::mpsc;
use tracing::Instrument;
use uuid::Uuid;

use crate::announce::{self, CnciKey};
use crate::cnci;
use crate::secgroups::{self, SecGroups};
use crate::subnets::{self, Asks};

/// How many CNCI announcements the reader may queue ahead of the writer; the reader waits
/// (and with it the scheduler's writes) when they are not taken.
const ANNOUNCE_QUEUE: usize = 64;

/// Where and how to deliver.
pub struct Delivery {
    pub state_dir: PathBuf,
    pub scheduler: String,
    pub server_name: String,
    pub tls: Arc<rustls::ClientConfig>,
    /// How often pending reports are looked for while connected.
    pub poll: Duration,
    /// What was reported and loaded of the security groups, across sessions.
    pub secgroups: std::sync::Mutex<SecGroups>,
}

/// Jittered back-off between connection attempts: 1 s doubling to 30 s, each ±50 %.
fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_secs(1u64 << attempt.min(5)).min(Duration::from_secs(30));
    let jitter = uuid::Uuid::new_v4().as_u128() as u64 % 1000;
    base / 2 + base.mul_f64(jitter as f64 / 1000.0)
}

/// What the reader passes on from the scheduler.
enum Incoming {
    /// A ConcentratorInstanceAdded: re-announce to this CNCI.
    Announce(Uuid),
    /// A CnciAssignment (or CnciRefused) for a subnet awaiting its CNCI.
    Assignment(Frame),
    /// A SubnetAssignment for a tenant a front end waits for.
    Subnet(Frame),
    /// A SecurityGroupsUpdate for this node.
    SecGroups(Frame),
}

/// What a frame from the scheduler asks of the node, if anything.
fn incoming(frame: Frame) -> Option<Incoming> {
    if cnci::is_assignment(&frame) || cnci::is_refusal(&frame) {
        return Some(Incoming::Assignment(frame));
    }
    if secgroups::is_update(&frame) {
        return Some(Incoming::SecGroups(frame));
    }
    if subnets::is_assignment(&frame) {
        return Some(Incoming::Subnet(frame));
    }
    announced_cnci(&frame).map(Incoming::Announce)
}

/// The CNCI a frame from the scheduler asks us to re-announce to, if any: only
/// ConcentratorInstanceAdded is for the node; everything else is ignored.
fn announced_cnci(frame: &Frame) -> Option<Uuid> {
    if (frame.kind, frame.operand) != (kind::EVENT, event::CONCENTRATOR_INSTANCE_ADDED) {
        tracing::debug!(
            kind = frame.kind,
            operand = frame.operand,
            "ignoring a frame not for the node"
        );
        return None;
    }
    match ConcentratorInstanceAdded::from_yaml(&frame.payload)
        .map_err(|e| e.to_string())
        .and_then(|p| p.0.instance_uuid.parse::<Uuid>().map_err(|e| e.to_string()))
    {
        Ok(uuid) => Some(uuid),
        Err(e) => {
            tracing::warn!("ignoring an unreadable ConcentratorInstanceAdded: {e}");
            None
        }
    }
}

/// A consistent view of the node: pending reports and subnets read under one lock.
struct Snapshot {
    reports: Vec<(String, Report)>,
    nets: Vec<NetRecord>,
}

fn snapshot(state: &StateDir) -> anyhow::Result<Snapshot> {
    let locked = state.lock()?;
    Ok(Snapshot {
        reports: locked.reports()?,
        nets: locked.nets()?,
    })
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
        let asks = Asks::new(&self.state_dir);
        tokio::spawn(subnets::serve(
            subnets::listen(&self.state_dir)?,
            asks.clone(),
        ));
        // Enforce what was recorded before any controller speaks (a restarted daemon).
        // (Failures are logged; what was recorded is retried at every sync.)
        let _ = self
            .groups()
            .apply(&self.state_dir, &netcore::secgroups::node_ports(&state)?);
        let mut attempt = 0;
        let mut sessions: u64 = 0;
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
                    sessions += 1;
                    // One span per session: every line it logs names the session and its peer.
                    let span = tracing::info_span!(
                        "session",
                        n = sessions,
                        scheduler = %session.server.uuid
                    );
                    async {
                        tracing::info!(node = %uuid, "connected");
                        if let Err(e) = self.serve(&state, uuid, session, &asks).await {
                            tracing::warn!("session ended: {e:#}");
                        }
                    }
                    .instrument(span)
                    .await;
                }
                Err(e) => tracing::warn!("cannot reach the scheduler at {}: {e}", self.scheduler),
            }
            tokio::time::sleep(backoff(attempt)).await;
            attempt = attempt.saturating_add(1);
        }
    }

    async fn serve(
        &self,
        state: &StateDir,
        agent: Uuid,
        session: ssntp::client::Session,
        asks: &Asks,
    ) -> anyhow::Result<()> {
        let ssntp::client::Session {
            mut reader,
            mut writer,
            ..
        } = session;
        // The reader passes on the CNCIs announced by the scheduler and notices a closed
        // session; each frame is bounded by the reader's message limit.
        let (announce_tx, mut announce_rx) = mpsc::channel::<Incoming>(ANNOUNCE_QUEUE);
        let mut closed = tokio::spawn(
            async move {
                loop {
                    match reader.frame().await {
                        Ok(Some(frame)) => {
                            if let Some(asked) = incoming(frame) {
                                if announce_tx.send(asked).await.is_err() {
                                    return anyhow::anyhow!("the session is being closed");
                                }
                            }
                        }
                        Ok(None) => return anyhow::anyhow!("the scheduler closed the session"),
                        Err(e) => return anyhow::anyhow!(e),
                    }
                }
            }
            .in_current_span(),
        );
        let result = self
            .deliver(
                state,
                agent,
                &mut writer,
                &mut closed,
                &mut announce_rx,
                asks,
            )
            .await;
        closed.abort();
        result
    }

    /// Pending reports first, then every CNCI's current set; then new reports as they come and
    /// a CNCI's set again whenever the scheduler announces that CNCI.
    async fn deliver<W: AsyncWrite + Unpin>(
        &self,
        state: &StateDir,
        agent: Uuid,
        writer: &mut ssntp::conn::FrameWriter<W>,
        closed: &mut tokio::task::JoinHandle<anyhow::Error>,
        announce_rx: &mut mpsc::Receiver<Incoming>,
        asks: &Asks,
    ) -> anyhow::Result<()> {
        send_subnet_requests(agent, writer, asks).await?;
        self.sync_groups(state, agent, writer, true).await?;
        let mut ask_subnets = tokio::time::interval(subnets::ASK_EVERY);
        let first = snapshot(state)?;
        send_reports(state, agent, writer, &first).await?;
        let everyone = announce::cncis_in(&first.nets);
        send_announcements(agent, writer, &everyone, &first.nets).await?;
        tracing::info!(
            cncis = everyone.len(),
            "re-announced the node's registrations"
        );
        let source = cnci::source_toward(&self.scheduler);
        // Subnets asked for in this session: a new one is asked for at once when its attach
        // pokes the daemon (else at the next poll), then again with every other awaiting
        // subnet each REQUEST_EVERY.
        let mut asked = HashSet::new();
        send_requests(agent, writer, &first.nets, source, &mut asked, true).await?;
        let mut ask = tokio::time::interval(cnci::REQUEST_EVERY);
        ask.tick().await;
        let mut resend_groups = tokio::time::interval(secgroups::RESEND_EVERY);
        resend_groups.tick().await;
        loop {
            tokio::select! {
                err = &mut *closed => return Err(err.unwrap_or_else(|e| anyhow::anyhow!(e))),
                Some(first_asked) = announce_rx.recv() => {
                    // Several announcements of one CNCI in a row need one answer.
                    let mut asked = BTreeSet::new();
                    let mut assigned = Vec::new();
                    let mut next = Some(first_asked);
                    while let Some(item) = next {
                        match item {
                            Incoming::Announce(cnci) => {
                                asked.insert(cnci);
                            }
                            Incoming::Assignment(frame) => {
                                assigned.extend(self.assign(agent, &frame));
                            }
                            Incoming::Subnet(frame) => asks.answer(agent, &frame),
                            Incoming::SecGroups(frame) => {
                                if let Err(e) = self.groups().record(&self.state_dir, agent, &frame) {
                                    tracing::warn!("ignoring a SecurityGroupsUpdate: {e:#}");
                                }
                            }
                        }
                        next = announce_rx.try_recv().ok();
                    }
                    self.sync_groups(state, agent, writer, false).await?;
                    if asked.is_empty() {
                        if !assigned.is_empty() {
                            // The TenantAdded the assignment queued goes out at once.
                            let now = snapshot(state)?;
                            send_reports(state, agent, writer, &now).await?;
                        }
                        for (tenant, subnet) in assigned {
                            cnci::nudge_in_background(self.state_dir.clone(), tenant, subnet);
                        }
                        continue;
                    }
                    let now = snapshot(state)?;
                    send_reports(state, agent, writer, &now).await?;
                    let keys: Vec<CnciKey> = asked
                        .iter()
                        .flat_map(|c| announce::cncis_named(&now.nets, *c))
                        .collect();
                    send_announcements(agent, writer, &keys, &now.nets).await?;
                    tracing::info!(cncis = keys.len(), "re-announced to CNCIs that came back");
                    for (tenant, subnet) in assigned {
                        cnci::nudge_in_background(self.state_dir.clone(), tenant, subnet);
                    }
                }
                _ = asks.wake.notified() => send_subnet_requests(agent, writer, asks).await?,
                _ = asks.changed.notified() => {
                    // An attach just made a subnet (netcore's poke): its TenantAdded, or its
                    // CnciRequest, goes out now.
                    self.sync_groups(state, agent, writer, false).await?;
                    let now = snapshot(state)?;
                    send_reports(state, agent, writer, &now).await?;
                    send_requests(agent, writer, &now.nets, source, &mut asked, false).await?;
                }
                _ = ask_subnets.tick() => send_subnet_requests(agent, writer, asks).await?,
                _ = resend_groups.tick() => self.sync_groups(state, agent, writer, true).await?,
                _ = ask.tick() => {
                    let now = snapshot(state)?;
                    send_requests(agent, writer, &now.nets, source, &mut asked, true).await?;
                }
                _ = tokio::time::sleep(self.poll) => {
                    self.sync_groups(state, agent, writer, false).await?;
                    let now = snapshot(state)?;
                    send_reports(state, agent, writer, &now).await?;
                    send_requests(agent, writer, &now.nets, source, &mut asked, false).await?;
                }
            }
        }
    }

    /// Sends the PortGroups that changed (all if `all`) and loads what the records and the
    /// persisted snapshots say into the kernel (a no-op when nothing changed).
    async fn sync_groups<W: AsyncWrite + Unpin>(
        &self,
        state: &StateDir,
        agent: Uuid,
        writer: &mut ssntp::conn::FrameWriter<W>,
        all: bool,
    ) -> anyhow::Result<()> {
        let ports = netcore::secgroups::node_ports(state)?;
        let frames = self.groups().port_groups(agent, &ports, all);
        for frame in frames {
            writer.frame(&frame).await.context("send a PortGroups")?;
        }
        let answers = {
            let mut groups = self.groups();
            let outcome = groups.apply(&self.state_dir, &ports);
            groups.answers(agent, &outcome)
        };
        for frame in answers {
            writer
                .frame(&frame)
                .await
                .context("send a SecurityGroupsApplied")?;
        }
        Ok(())
    }

    /// The security-group state; a panic elsewhere while holding it leaves nothing half-done
    /// that matters more than going on (the next apply replaces the table whole).
    fn groups(&self) -> std::sync::MutexGuard<'_, SecGroups> {
        self.secgroups.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies a CnciAssignment or records a CnciRefused in the node (netlink in this
    /// process's namespace, which must be the node's); every failure is logged, none ends the
    /// session. The subnet whose tunnel it made (its TenantAdded is queued), if any.
    fn assign(&self, agent: Uuid, frame: &Frame) -> Option<(Uuid, ipnet::Ipv4Net)> {
        let node = netcore::Node::open(&netcore::NodeConfig {
            state_dir: self.state_dir.clone(),
        });
        match node {
            Ok(mut node) if cnci::is_refusal(frame) => {
                cnci::handle_refusal(&mut node, agent, frame).log();
                None
            }
            Ok(mut node) => {
                let handled = cnci::handle_assignment(&mut node, agent, frame);
                handled.log();
                handled.new_tunnel()
            }
            Err(e) => {
                tracing::error!("cannot open the node to apply a CNCI assignment: {e}");
                None
            }
        }
    }
}

/// Sends a SubnetRequest for every tenant a front end waits for.
async fn send_subnet_requests<W: AsyncWrite + Unpin>(
    agent: Uuid,
    writer: &mut ssntp::conn::FrameWriter<W>,
    asks: &Asks,
) -> anyhow::Result<()> {
    for frame in asks.requests(agent) {
        writer.frame(&frame).await.context("send a SubnetRequest")?;
    }
    Ok(())
}

/// Sends a CnciRequest for every subnet of `nets` that awaits its CNCI (`all`), or only for
/// those not in `asked` (a subnet that just appeared: its workload's tunnel should not wait
/// for the next round). `asked` is left holding exactly the awaiting subnets asked for.
async fn send_requests<W: AsyncWrite + Unpin>(
    agent: Uuid,
    writer: &mut ssntp::conn::FrameWriter<W>,
    nets: &[NetRecord],
    source: Option<std::net::Ipv4Addr>,
    asked: &mut HashSet<(Uuid, ipnet::Ipv4Net)>,
    all: bool,
) -> anyhow::Result<()> {
    let awaiting = netcore::assign::awaiting(nets);
    asked.retain(|key| awaiting.iter().any(|a| (a.tenant, a.subnet) == *key));
    let due: Vec<_> = awaiting
        .into_iter()
        .filter(|a| all || !asked.contains(&(a.tenant, a.subnet)))
        .collect();
    asked.extend(due.iter().map(|a| (a.tenant, a.subnet)));
    let frames = cnci::requests(agent, &due, source);
    for frame in &frames {
        writer.frame(frame).await.context("send a CnciRequest")?;
    }
    if !frames.is_empty() {
        tracing::info!(subnets = frames.len(), "asked the controller for CNCIs");
    }
    Ok(())
}

/// Sends the snapshot's reports oldest first, deleting each once written; then a TenantSync to
/// every CNCI whose last word from this node would otherwise not match the snapshot.
async fn send_reports<W: AsyncWrite + Unpin>(
    state: &StateDir,
    agent: Uuid,
    writer: &mut ssntp::conn::FrameWriter<W>,
    snap: &Snapshot,
) -> anyhow::Result<()> {
    let mut delivered = Vec::new();
    for (name, report) in &snap.reports {
        match announce::frame_for(report) {
            Ok(frame) => {
                writer.frame(&frame).await.context("send a report")?;
                delivered.push(report.clone());
            }
            Err(e) => tracing::error!("dropping unreadable report {name}: {e:#}"),
        }
        state.lock()?.remove_report(name)?;
    }
    let keys = announce::needing_final_word(&delivered, &snap.nets);
    for key in &keys {
        // Only the TenantSync: the TenantAdded frames for what is current were sent already.
        let frames = announce::announcement(agent, *key, &snap.nets)?;
        if let Some(sync) = frames.last() {
            writer.frame(sync).await.context("send a TenantSync")?;
        }
    }
    Ok(())
}

/// Sends each CNCI in `keys` its current set from `nets`.
async fn send_announcements<W: AsyncWrite + Unpin>(
    agent: Uuid,
    writer: &mut ssntp::conn::FrameWriter<W>,
    keys: &[CnciKey],
    nets: &[NetRecord],
) -> anyhow::Result<()> {
    for key in keys {
        for frame in announce::announcement(agent, *key, nets)? {
            writer.frame(&frame).await.context("send an announcement")?;
        }
    }
    Ok(())
}
