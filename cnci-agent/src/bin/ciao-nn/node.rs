//! The network node's own SSNTP session (role netagent): NodeReport after every connect, and
//! the controller's START and DELETE of CNCIs. Every decision is recorded before it is acted
//! on; both commands are idempotent.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use cnci_agent::hub;
use cnci_agent::state::{AgentRecord, Store};
use ssntp::frame::{command, error, event, kind, Frame};
use ssntp::payloads::{
    Delete, InstanceDeleted, NodeReport, NodeReportEvent, NodeType, Payload, Start, StartFailure,
    StartFailureBody, VM_TYPE_CNCI,
};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use uuid::Uuid;

use crate::cncis::{Shared, Task};

/// ciao's StartFailure reasons this node gives.
const INVALID_PAYLOAD: &str = "invalid_payload";
const LAUNCH_FAILURE: &str = "launch_failure";
const FULL_CN: &str = "full_cn";

/// What this node is, as NodeReport tells it.
pub struct Identity {
    pub uuid: Uuid,
    pub underlay_ip: Ipv4Addr,
    pub external_dev: Option<String>,
    pub dns: Vec<Ipv4Addr>,
    /// Most CNCIs here (0: no limit).
    pub capacity: u32,
}

struct Entry {
    record: AgentRecord,
    task: Option<Task>,
    deleting: bool,
}

/// The CNCIs of this node and their tasks.
pub struct Node {
    pub me: Identity,
    shared: Arc<Shared>,
    cncis: BTreeMap<Uuid, Entry>,
    /// Fresh CNCIs whose first start failed (see [`Node::start_failed`]).
    failed: UnboundedSender<Uuid>,
}

fn start_failure(node: Uuid, instance: &str, reason: &str) -> Frame {
    let body = StartFailureBody {
        node_uuid: node.to_string(),
        instance_uuid: instance.to_string(),
        reason: reason.to_string(),
        restart: false,
    };
    Frame::new(
        kind::ERROR,
        error::START_FAILURE,
        node,
        StartFailure(body).to_yaml(),
    )
}

impl Node {
    /// The node, and where the UUIDs of fresh CNCIs whose first start failed arrive.
    pub fn new(me: Identity, shared: Arc<Shared>) -> (Self, UnboundedReceiver<Uuid>) {
        let (failed, failures) = tokio::sync::mpsc::unbounded_channel();
        let node = Node {
            me,
            shared,
            cncis: BTreeMap::new(),
            failed,
        };
        (node, failures)
    }

    /// StartFailure `launch_failure` for a fresh CNCI whose first start failed: the controller
    /// may place it elsewhere (and DELETE it here); until then its task keeps trying.
    pub fn start_failed(&self, cnci: Uuid) -> Option<Frame> {
        let entry = self.cncis.get(&cnci).filter(|e| !e.deleting)?;
        tracing::warn!("START of CNCI {cnci}: its first start failed; retrying");
        Some(start_failure(
            self.me.uuid,
            &entry.record.uuid.to_string(),
            LAUNCH_FAILURE,
        ))
    }

    fn instance_deleted(&self, cnci: Uuid) -> Frame {
        Frame::new(
            kind::EVENT,
            event::INSTANCE_DELETED,
            self.me.uuid,
            InstanceDeleted::new(cnci).to_yaml(),
        )
    }

    /// Takes over every recorded CNCI: finishes interrupted deletions (their InstanceDeleted
    /// frames are returned) and starts a task for each of the others, which converges the
    /// kernel without recreating what is right.
    pub async fn adopt(&mut self) -> Result<Vec<Frame>> {
        let mut frames = Vec::new();
        for found in self.shared.dir.scan(true)? {
            let uuid = found.record.uuid;
            if found.deleting {
                tracing::info!("CNCI {uuid}: finishing its interrupted deletion");
                self.cncis.insert(
                    uuid,
                    Entry {
                        record: found.record,
                        task: None,
                        deleting: true,
                    },
                );
                if let Some(f) = self.finish_delete(uuid).await {
                    frames.push(f);
                }
                continue;
            }
            tracing::info!("adopting CNCI {uuid} of tenant {}", found.record.tenant);
            if found.record.underlay_ip != self.me.underlay_ip {
                // Its compute nodes tunnel to the recorded address: it keeps it.
                tracing::warn!(
                    "CNCI {uuid} was recorded with underlay address {}, not {}: kept",
                    found.record.underlay_ip,
                    self.me.underlay_ip
                );
            }
            let task = Task::spawn(self.shared.clone(), found.record.clone(), None);
            self.cncis.insert(
                uuid,
                Entry {
                    record: found.record,
                    task: Some(task),
                    deleting: false,
                },
            );
        }
        Ok(frames)
    }

    /// EVENT NodeReport, sent after every connect.
    pub fn report(&self) -> Frame {
        let body = NodeReportEvent {
            node_uuid: self.me.uuid.to_string(),
            node_type: NodeType::NetworkNode,
            underlay_ip: self.me.underlay_ip.to_string(),
            external_device: self.me.external_dev.clone().unwrap_or_default(),
            capacity: self.me.capacity,
            cncis: self
                .cncis
                .iter()
                .filter(|(_, e)| !e.deleting)
                .map(|(u, _)| u.to_string())
                .collect(),
        };
        Frame::new(
            kind::EVENT,
            event::NODE_REPORT,
            self.me.uuid,
            NodeReport(body).to_yaml(),
        )
    }

    /// One frame from the scheduler; the frame to answer with, if any.
    pub async fn handle(&mut self, frame: &Frame) -> Option<Frame> {
        match (frame.kind, frame.operand) {
            (kind::COMMAND, command::START) => self.start(&frame.payload),
            (kind::COMMAND, command::DELETE) => self.delete(&frame.payload).await,
            (k, op) => {
                tracing::warn!("ignoring frame kind {k} operand {op}");
                None
            }
        }
    }

    /// START of a CNCI: validated, recorded, then its task started. A repeat is a no-op.
    fn start(&mut self, payload: &[u8]) -> Option<Frame> {
        let me = self.me.uuid;
        let start = match Start::from_yaml(payload) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("START refused: {e}");
                return Some(start_failure(me, "", INVALID_PAYLOAD));
            }
        };
        let raw = start.0.instance_uuid.clone();
        let (tenant, cnci) = match self.check_start(&start) {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!("START of {raw:?} refused: {e}");
                return Some(start_failure(me, &raw, INVALID_PAYLOAD));
            }
        };
        let refuse = |why: String, reason: &str| {
            tracing::warn!("START of CNCI {cnci} for tenant {tenant} refused: {why}");
            Some(start_failure(me, &raw, reason))
        };
        if let Some(e) = self.cncis.get(&cnci) {
            return match (e.record.tenant == tenant, e.deleting) {
                (true, false) => {
                    tracing::info!("START of CNCI {cnci}: runs already");
                    None
                }
                (true, true) => refuse("it is being deleted".into(), LAUNCH_FAILURE),
                (false, _) => refuse(
                    format!("it serves tenant {} here", e.record.tenant),
                    LAUNCH_FAILURE,
                ),
            };
        }
        if let Some((other, _)) = self.cncis.iter().find(|(_, e)| e.record.tenant == tenant) {
            return refuse(
                format!("the tenant has CNCI {other} on this node"),
                LAUNCH_FAILURE,
            );
        }
        let capacity = usize::try_from(self.me.capacity).unwrap_or(usize::MAX);
        if capacity > 0 && self.cncis.len() >= capacity {
            return refuse(
                format!("this node runs {} CNCIs (--capacity)", self.cncis.len()),
                FULL_CN,
            );
        }
        let record = match self.record_new(tenant, cnci) {
            Ok(r) => r,
            Err(e) => return refuse(format!("recording it: {e:#}"), LAUNCH_FAILURE),
        };
        tracing::info!("START of CNCI {cnci} for tenant {tenant}: recorded, starting");
        let task = Task::spawn(
            self.shared.clone(),
            record.clone(),
            Some(self.failed.clone()),
        );
        self.cncis.insert(
            cnci,
            Entry {
                record,
                task: Some(task),
                deleting: false,
            },
        );
        None
    }

    fn check_start(&self, start: &Start) -> Result<(Uuid, Uuid)> {
        let tenant = start.tenant()?;
        let cnci = start.instance()?;
        let node = start.node()?;
        if start.0.vm_type != VM_TYPE_CNCI {
            anyhow::bail!(
                "vm_type {:?}: a network node runs only {VM_TYPE_CNCI:?}",
                start.0.vm_type
            );
        }
        if node != self.me.uuid {
            anyhow::bail!("requirements.node_id {node} is not this node");
        }
        if cnci == self.me.uuid || cnci.is_nil() || tenant.is_nil() {
            anyhow::bail!("instance_uuid {cnci} or tenant_uuid {tenant} cannot name a CNCI");
        }
        Ok((tenant, cnci))
    }

    fn record_new(&self, tenant: Uuid, cnci: Uuid) -> Result<AgentRecord> {
        let template = AgentRecord {
            uuid: cnci,
            tenant,
            netns: String::new(),
            underlay_ip: self.me.underlay_ip,
            external_dev: self.me.external_dev.clone(),
            uplink: ipnet::Ipv4Net::default(),
            dns: self.me.dns.clone(),
        };
        let others: Vec<_> = self.cncis.values().map(|e| e.record.uplink).collect();
        tokio::task::block_in_place(|| self.shared.dir.record(&template, others.into_iter()))
    }

    /// DELETE of a CNCI: marked, its task stopped, its hub destroyed, its record wiped, then
    /// InstanceDeleted. An unknown CNCI is answered InstanceDeleted at once.
    async fn delete(&mut self, payload: &[u8]) -> Option<Frame> {
        let parsed = Delete::from_yaml(payload)
            .map_err(anyhow::Error::from)
            .and_then(|d| {
                let node = d.node()?;
                if node != self.me.uuid {
                    anyhow::bail!("workload_agent_uuid {node} is not this node");
                }
                Ok(d.instance()?)
            });
        let cnci = match parsed {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("DELETE refused: {e}");
                return None;
            }
        };
        let Some(entry) = self.cncis.get_mut(&cnci) else {
            tracing::info!("DELETE of CNCI {cnci}: not here (deleted already)");
            return Some(self.instance_deleted(cnci));
        };
        if !entry.deleting {
            if let Err(e) = self.shared.dir.mark_deleting(cnci) {
                tracing::error!("DELETE of CNCI {cnci}: marking it: {e:#}");
                return None;
            }
            entry.deleting = true;
        }
        if let Some(task) = entry.task.take() {
            task.stop().await;
        }
        self.finish_delete(cnci).await
    }

    /// Destroys a CNCI marked as deleting and wipes its record; InstanceDeleted once gone.
    /// On failure the marked record stays: a repeated DELETE, or the next start, tries again.
    async fn finish_delete(&mut self, cnci: Uuid) -> Option<Frame> {
        let dir = self.shared.dir.cnci_dir(cnci);
        match tokio::task::spawn_blocking(move || destroy(dir)).await {
            Ok(Ok(())) => {
                self.cncis.remove(&cnci);
                tracing::info!("CNCI {cnci} deleted");
                Some(self.instance_deleted(cnci))
            }
            Ok(Err(e)) => {
                tracing::error!("deleting CNCI {cnci}: {e:#}");
                None
            }
            Err(e) => {
                tracing::error!("deleting CNCI {cnci}: {e}");
                None
            }
        }
    }

    /// Stops every task (their kernel objects stay, so tenant traffic keeps flowing).
    pub async fn stop_all(&mut self) {
        for entry in self.cncis.values_mut() {
            if let Some(task) = entry.task.take() {
                task.stop().await;
            }
        }
    }
}

/// Takes a CNCI down from its state directory and removes the directory.
fn destroy(dir: PathBuf) -> Result<()> {
    let Some(store) = Store::open_existing(&dir)? else {
        return Ok(());
    };
    let lock = store.lock()?;
    if let Some(record) = store.agent()? {
        let desired = store.desired()?;
        hub::destroy(&record, &desired.public_ips).context("destroy the hub")?;
    }
    drop(lock);
    store.wipe()?;
    Ok(())
}
