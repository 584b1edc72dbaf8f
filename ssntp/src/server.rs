//! The scheduler's forwarding core: what networking needs of ciao-scheduler (reference/ssntp.md
//! §8), over any byte stream (the TLS listener hands each connection in with its certificate's
//! roles). Workload placement (START, DELETE, EVACUATE, ...) is deliberately not done.
//!
//! Each connection has a bounded outgoing queue. A reader forwarding into a full queue waits,
//! which stops it reading its own socket: a flood is slowed at its source by TCP instead of
//! growing the scheduler's memory.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, Notify};
use uuid::Uuid;

use crate::certs::PeerIdentity;
use crate::conn::ServerHello;
use crate::conn::{read_connect, refuse, send_connected, ConnError, FrameReader, FrameWriter};
use crate::frame::{command, error, event, kind, role, Frame, GobTime};
use crate::payloads::{
    Configure, NodeConnected, NodeConnectedEvent, NodeDisconnected, NodeType, Payload, PayloadError,
};
use crate::ratelog::RateLimit;

/// How a scheduler behaves.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    pub uuid: Uuid,
    /// The CONNECTED payload (`configure:` YAML), replaced by a controller's valid CONFIGURE.
    /// Never empty: a Go launcher without one exits. Default: [`Configure::cluster_default`].
    pub configuration: Vec<u8>,
    /// How long a new connection may take from its TCP accept to a complete CONNECT, the TLS
    /// handshake included (Go: 30 s for CONNECT alone, none for TLS).
    pub handshake_timeout: Duration,
    /// Connections accepted but not yet through CONNECT; one more drops the oldest of them.
    pub max_pending: usize,
    /// Frames queued per destination before senders to it are made to wait.
    pub queue_depth: usize,
    /// A destination that cannot take a frame for this long is disconnected (Go: 30 s).
    pub write_timeout: Duration,
    /// TenantAdded/TenantRemoved/TenantSync frames kept per CNCI that is not connected (0: drop
    /// them, as Go does).
    pub hold_depth: usize,
    /// How long such a frame is kept.
    pub hold_for: Duration,
}

/// Default of [`SchedulerConfig::handshake_timeout`].
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Default of [`SchedulerConfig::max_pending`].
pub const MAX_PENDING: usize = 256;

impl SchedulerConfig {
    pub fn new(uuid: Uuid) -> Self {
        Self {
            uuid,
            configuration: Configure::cluster_default().to_yaml(),
            handshake_timeout: HANDSHAKE_TIMEOUT,
            max_pending: MAX_PENDING,
            queue_depth: 256,
            write_timeout: Duration::from_secs(30),
            hold_depth: 4096,
            hold_for: Duration::from_secs(600),
        }
    }
}

struct Session {
    conn: u64,
    role: u32,
    /// The certificate it connected with: decides whether another session may replace it.
    identity: PeerIdentity,
    tx: mpsc::Sender<Frame>,
    kick: Arc<Notify>,
}

/// A tenant event kept for an absent CNCI.
struct Held {
    at: Instant,
    /// For a TenantSync, its agent: a newer sync from the same agent replaces it.
    sync_of: Option<String>,
    frame: Frame,
}

#[derive(Default)]
struct Registry {
    next_conn: u64,
    /// Keyed by the canonical lower-case UUID, which is what payloads name.
    sessions: HashMap<String, Session>,
    /// Controllers in connection order: the first is the master.
    controllers: Vec<String>,
    configuration: Vec<u8>,
    /// Tenant events for CNCIs that are not connected, oldest first, delivered when they
    /// connect: the Go scheduler drops them, and a subnet attached while its CNCI restarts would
    /// never reach it (compute nodes report each subnet once).
    held: HashMap<String, VecDeque<Held>>,
    /// CNCI UUID -> agent sessions that sent it TenantAdded or TenantSync: they are told when
    /// that CNCI announces itself (ConcentratorInstanceAdded), so they re-send their set.
    users: HashMap<String, HashSet<String>>,
    /// Agent UUID -> the CNCIs it is listed under in `users` (to forget it when it leaves).
    used: HashMap<String, HashSet<String>>,
}

/// Absent CNCIs for which tenant events are held at most (bounds memory against bogus UUIDs).
const MAX_HELD_CNCIS: usize = 4096;

/// CNCIs remembered per agent session at most (a node serving more tenants than this is not
/// told about the excess CNCIs' restarts).
const MAX_CNCIS_PER_AGENT: usize = 4096;

/// How long a refused connection is read (and discarded) before it is closed, at most.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 1 << 20;

/// What the handshake hands to the session loop.
pub(crate) struct Accepted<R, W> {
    reader: R,
    writer: W,
    key: String,
    role: u32,
    conn: u64,
    tx: mpsc::Sender<Frame>,
    rx: mpsc::Receiver<Frame>,
    kick: Arc<Notify>,
    /// Frames held for this CNCI, delivered once its writer runs.
    held: Vec<Frame>,
}

/// A running scheduler; cheap to clone, one per listener.
#[derive(Clone)]
pub struct Scheduler {
    pub(crate) cfg: Arc<SchedulerConfig>,
    registry: Arc<Mutex<Registry>>,
    /// Log lines about refused or dropped connections.
    pub(crate) refusals: Arc<RateLimit>,
    /// Log lines about dropped frames.
    drops: Arc<RateLimit>,
}

fn node_types(role_bits: u32) -> Vec<NodeType> {
    let mut out = Vec::new();
    if role_bits & role::AGENT != 0 {
        out.push(NodeType::ComputeNode);
    }
    if role_bits & role::NETAGENT != 0 {
        out.push(NodeType::NetworkNode);
    }
    out
}

/// Reads `top.<field>` of a YAML payload as strings, one entry per field.
fn payload_fields<const N: usize>(
    payload: &[u8],
    top: &str,
    fields: [&str; N],
) -> [Option<String>; N] {
    let value: Option<serde_yaml_ng::Value> = serde_yaml_ng::from_slice(payload).ok();
    let body = value.as_ref().and_then(|v| v.get(top));
    fields.map(|f| {
        body.and_then(|b| b.get(f))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    })
}

/// What a frame names, parsed before taking the registry lock so that routing on several cores
/// is not serialised behind YAML parsing.
enum Named {
    /// TenantAdded/Removed/Sync: the CNCI it is for and the agent it claims to come from.
    Tenant {
        cnci: Option<String>,
        agent: Option<String>,
        sync: bool,
    },
    /// A command for the CNCI with this UUID.
    Cnci(Option<String>),
    /// ConcentratorInstanceAdded: the CNCI it announces.
    InstanceAdded(Option<String>),
    /// CONFIGURE: whether its configuration may replace the current one.
    Configure(Result<(), PayloadError>),
    /// A controller's command for one node (START of a CNCI, DELETE, CnciAssignment, and the
    /// ERROR CnciRefused): the node's UUID, the roles a session must hold to get it, and for
    /// START the instance.
    ForNode {
        node: Option<String>,
        roles: u32,
        start_of: Option<String>,
    },
    /// A node's event for the controllers (CnciRequest, NodeReport): the node it claims to
    /// come from, and the roles that may send it.
    FromNode {
        node: Option<String>,
        roles: u32,
    },
    Nothing,
}

fn named(frame: &Frame) -> Named {
    let p = &frame.payload;
    let tenant = |top: &str, sync: bool| {
        let [cnci, agent] = payload_fields(p, top, ["concentrator_uuid", "agent_uuid"]);
        Named::Tenant { cnci, agent, sync }
    };
    let one = |top: &str, field: &str| payload_fields(p, top, [field])[0].take();
    match (frame.kind, frame.operand) {
        (kind::EVENT, event::TENANT_ADDED) => tenant("tenant_added", false),
        (kind::EVENT, event::TENANT_REMOVED) => tenant("tenant_removed", false),
        (kind::EVENT, event::TENANT_SYNC) => tenant("tenant_sync", true),
        (kind::COMMAND, command::ASSIGN_PUBLIC_IP) => {
            Named::Cnci(one("assign_public_ip", "concentrator_uuid"))
        }
        (kind::COMMAND, command::RELEASE_PUBLIC_IP) => {
            Named::Cnci(one("release_public_ip", "concentrator_uuid"))
        }
        (kind::COMMAND, command::REFRESH_CNCI) => Named::Cnci(one("cnci_refresh", "cnci_uuid")),
        // Issue 14: routed like AssignPublicIP; the CNCI's answers go to the controllers.
        (kind::COMMAND, command::TENANT_INGRESS) => {
            Named::Cnci(one("tenant_ingress", "concentrator_uuid"))
        }
        (kind::EVENT, event::TENANT_INGRESS_APPLIED) => Named::FromNode {
            node: one("tenant_ingress_applied", "concentrator_uuid"),
            roles: role::CNCIAGENT,
        },
        (kind::ERROR, error::TENANT_INGRESS_FAILURE) => Named::FromNode {
            node: one("tenant_ingress_failure", "concentrator_uuid"),
            roles: role::CNCIAGENT,
        },
        (kind::EVENT, event::CONCENTRATOR_INSTANCE_ADDED) => {
            Named::InstanceAdded(one("concentrator_instance_added", "instance_uuid"))
        }
        (kind::COMMAND, command::CONFIGURE) => Named::Configure(checked_configuration(p)),
        (kind::COMMAND, command::START) => {
            let start = crate::payloads::Start::from_yaml(p).ok();
            Named::ForNode {
                node: start.as_ref().map(|s| s.requirements.node_id.clone()),
                roles: role::NETAGENT,
                start_of: start.map(|s| s.instance_uuid.clone()),
            }
        }
        (kind::COMMAND, command::DELETE) => Named::ForNode {
            node: one("delete", "workload_agent_uuid"),
            roles: role::AGENT | role::NETAGENT,
            start_of: None,
        },
        (kind::COMMAND, command::CNCI_ASSIGNMENT) => Named::ForNode {
            node: one("cnci_assignment", "agent_uuid"),
            roles: role::AGENT,
            start_of: None,
        },
        (kind::ERROR, error::CNCI_REFUSED) => Named::ForNode {
            node: one("cnci_refused", "agent_uuid"),
            roles: role::AGENT,
            start_of: None,
        },
        (kind::EVENT, event::CNCI_REQUEST) => Named::FromNode {
            node: one("cnci_request", "agent_uuid"),
            roles: role::AGENT,
        },
        // The subnet left out (issue 12): same routes as CnciAssignment/CnciRequest.
        (kind::COMMAND, command::SUBNET_ASSIGNMENT) => Named::ForNode {
            node: one("subnet_assignment", "agent_uuid"),
            roles: role::AGENT,
            start_of: None,
        },
        (kind::EVENT, event::SUBNET_REQUEST) => Named::FromNode {
            node: one("subnet_request", "agent_uuid"),
            roles: role::AGENT,
        },
        (kind::COMMAND, command::SECURITY_GROUPS_UPDATE) => Named::ForNode {
            node: one("security_groups_update", "agent_uuid"),
            roles: role::AGENT,
            start_of: None,
        },
        (kind::EVENT, event::PORT_GROUPS) => Named::FromNode {
            node: one("port_groups", "agent_uuid"),
            roles: role::AGENT,
        },
        (kind::EVENT, event::SECURITY_GROUPS_APPLIED) => Named::FromNode {
            node: one("security_groups_applied", "agent_uuid"),
            roles: role::AGENT,
        },
        (kind::EVENT, event::NODE_REPORT) => Named::FromNode {
            node: one("node_report", "node_uuid"),
            roles: role::AGENT | role::NETAGENT,
        },
        _ => Named::Nothing,
    }
}

impl Scheduler {
    pub fn new(cfg: SchedulerConfig) -> Self {
        let registry = Registry {
            configuration: cfg.configuration.clone(),
            ..Registry::default()
        };
        Self {
            cfg: Arc::new(cfg),
            registry: Arc::new(Mutex::new(registry)),
            refusals: Arc::new(RateLimit::new(20, Duration::from_secs(1))),
            drops: Arc::new(RateLimit::new(20, Duration::from_secs(1))),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters more than losing the scheduler, so keep going with the data.
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Connected sessions.
    pub fn session_count(&self) -> usize {
        self.lock().sessions.len()
    }

    /// True if a session with this UUID is connected.
    pub fn is_connected(&self, uuid: &Uuid) -> bool {
        self.lock().sessions.contains_key(&uuid.to_string())
    }

    /// NodeConnected or NodeDisconnected (by `operand`) for one role of a node, as the Go
    /// scheduler sends them to controllers.
    fn node_event(&self, operand: u8, node: &str, node_type: &NodeType) -> Frame {
        let body = NodeConnectedEvent {
            node_uuid: node.to_string(),
            node_type: node_type.clone(),
        };
        let payload = if operand == event::NODE_CONNECTED {
            NodeConnected(body).to_yaml()
        } else {
            NodeDisconnected(body).to_yaml()
        };
        Frame::new(kind::EVENT, operand, self.cfg.uuid, payload)
    }

    /// ERROR InvalidConfiguration, which ciao defines for the scheduler to answer a bad
    /// CONFIGURE with (the configuration stays as it was); the payload is the reason.
    fn invalid_configuration(&self, reason: &PayloadError) -> Frame {
        let mut body = serde_yaml_ng::Mapping::new();
        body.insert("reason".into(), reason.to_string().into());
        let payload = serde_yaml_ng::to_string(&body)
            .map(String::into_bytes)
            .unwrap_or_default();
        Frame::new(
            kind::ERROR,
            error::INVALID_CONFIGURATION,
            self.cfg.uuid,
            payload,
        )
    }

    /// ERROR StartFailure for a START whose node is not connected (ciao's `no_net_cn`).
    fn start_failure(&self, start: &Frame, instance: String) -> Frame {
        let node = crate::payloads::Start::from_yaml(&start.payload)
            .map(|s| s.requirements.node_id.clone())
            .unwrap_or_default();
        let body = crate::payloads::StartFailureBody {
            node_uuid: node,
            instance_uuid: instance,
            reason: "no_net_cn".into(),
            restart: false,
        };
        Frame::new(
            kind::ERROR,
            error::START_FAILURE,
            self.cfg.uuid,
            crate::payloads::StartFailure(body).to_yaml(),
        )
    }

    /// Logs (rate-limited) a refused or dropped connection; the caller's span names the peer.
    pub(crate) fn log_refusal(&self, reason: &dyn std::fmt::Display) {
        if let Some(suppressed) = self.refusals.allow() {
            tracing::warn!(%reason, suppressed, "connection refused");
        }
    }

    /// Logs (rate-limited) a dropped frame.
    fn log_drop(&self, from: &str, frame: &Frame, reason: &str) {
        if let Some(suppressed) = self.drops.allow() {
            tracing::warn!(
                from,
                kind = frame.kind,
                operand = frame.operand,
                reason,
                suppressed,
                "frame dropped"
            );
        }
    }

    /// Serves one connection until it closes. `peer` is what the client's verified certificate
    /// says (roles, bound UUIDs, key): the claimed role must be a subset of its roles, a
    /// certificate naming UUIDs may only connect as one of them, and a UUID already in use may
    /// only be taken over with the same key or a certificate naming it.
    pub async fn serve<R, W>(
        &self,
        reader: R,
        writer: W,
        peer: PeerIdentity,
    ) -> Result<(), ConnError>
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let accepted = self
            .handshake(
                FrameReader::new(reader),
                FrameWriter::new(writer),
                peer,
                self.cfg.handshake_timeout,
            )
            .await?;
        self.run_session(accepted).await
    }

    /// CONNECT within `timeout`, the identity checks, registration, CONNECTED. Every refusal
    /// sends the ERROR frame Go sends, leaves the registry as it was, and lingers briefly
    /// (reading and discarding) so that the refusal reaches the peer before the close.
    pub(crate) async fn handshake<R, W>(
        &self,
        mut reader: FrameReader<R>,
        mut writer: FrameWriter<W>,
        peer: PeerIdentity,
        timeout: Duration,
    ) -> Result<Accepted<FrameReader<R>, FrameWriter<W>>, ConnError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let result = self
            .handshake_inner(&mut reader, &mut writer, peer, timeout)
            .await;
        match result {
            Ok(a) => Ok(Accepted {
                reader,
                writer,
                key: a.key,
                role: a.role,
                conn: a.conn,
                tx: a.tx,
                rx: a.rx,
                kick: a.kick,
                held: a.held,
            }),
            Err(e) => {
                let _ = writer.shutdown().await;
                let _ = tokio::time::timeout(LINGER, reader.discard(LINGER_BYTES)).await;
                Err(e)
            }
        }
    }

    async fn handshake_inner<R, W>(
        &self,
        reader: &mut FrameReader<R>,
        writer: &mut FrameWriter<W>,
        peer: PeerIdentity,
        timeout: Duration,
    ) -> Result<Accepted<(), ()>, ConnError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let client = read_connect(reader, writer, peer.roles, timeout).await?;
        let span = tracing::Span::current();
        span.record("uuid", tracing::field::display(client.uuid));
        span.record("role", client.role);
        if !peer.uuids.is_empty() && !peer.names(&client.uuid) {
            let reason = format!(
                "CONNECT as {} but the certificate names only {:?}",
                client.uuid, peer.uuids
            );
            return Err(refuse(writer, error::CONNECTION_ABORTED, reason).await);
        }
        let key = client.uuid.to_string();
        let (tx, rx) = mpsc::channel(self.cfg.queue_depth.max(1));
        let kick = Arc::new(Notify::new());
        let (conn, held) = match self
            .register(&key, client.role, &peer, tx.clone(), kick.clone())
            .await
        {
            Ok(r) => r,
            Err(reason) => return Err(refuse(writer, error::CONNECTION_ABORTED, reason).await),
        };
        let hello = ServerHello {
            uuid: self.cfg.uuid,
            role: role::SCHEDULER,
            configuration: self.lock().configuration.clone(),
        };
        if let Err(e) = send_connected(writer, &hello, client.uuid).await {
            self.unregister(&key, conn).await;
            return Err(e);
        }
        Ok(Accepted {
            reader: (),
            writer: (),
            key,
            role: client.role,
            conn,
            tx,
            rx,
            kick,
            held,
        })
    }

    /// The session after CONNECTED: a writer task draining the queue, this task reading and
    /// routing, until either side ends it or a newer session with the same UUID replaces it.
    pub(crate) async fn run_session<R, W>(
        &self,
        a: Accepted<FrameReader<R>, FrameWriter<W>>,
    ) -> Result<(), ConnError>
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let Accepted {
            mut reader,
            mut writer,
            key,
            role: role_bits,
            conn,
            tx,
            rx,
            kick,
            held,
        } = a;
        let write_timeout = self.cfg.write_timeout;
        let own_uuid = self.cfg.uuid;
        let writer_kick = kick.clone();
        let writer_task = tokio::spawn(async move {
            let mut rx = rx;
            // Everything queued goes out in one write: one TLS record and syscall per batch.
            let mut batch = Vec::with_capacity(64);
            while rx.recv_many(&mut batch, 64).await > 0 {
                for frame in &mut batch {
                    // As Go's session.Write: the send time on our path node, just before encoding.
                    if frame.path_traced() {
                        frame.record_send(&own_uuid, GobTime::now());
                    }
                    writer.queue(frame);
                }
                batch.clear();
                match tokio::time::timeout(write_timeout, writer.flush()).await {
                    Ok(Ok(())) => {}
                    _ => break,
                }
            }
            let _ = writer.shutdown().await;
            writer_kick.notify_one();
        });
        // Held frames go in only now that the writer drains the queue (there may be more of
        // them than the queue holds).
        for frame in held {
            if tx.send(frame).await.is_err() {
                break;
            }
        }

        let result = loop {
            let next = tokio::select! {
                r = reader.frame() => r,
                _ = kick.notified() => break Ok(()),
            };
            match next {
                Ok(Some(mut frame)) => {
                    // As Go's session.Read: our path node with the receive time.
                    if frame.path_traced() {
                        frame.record_receive(self.cfg.uuid, role::SCHEDULER, GobTime::now());
                    }
                    self.route(&key, role_bits, &tx, frame).await
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        drop(tx);
        self.unregister(&key, conn).await;
        writer_task.abort();
        result
    }

    /// Adds a session, replacing one with the same UUID only if `peer` holds the same key or
    /// names that UUID (else the reason for refusing the new one). Returns the connection id
    /// and the frames held for it.
    async fn register(
        &self,
        key: &str,
        role_bits: u32,
        peer: &PeerIdentity,
        tx: mpsc::Sender<Frame>,
        kick: Arc<Notify>,
    ) -> Result<(u64, Vec<Frame>), String> {
        let mut notices = Vec::new();
        let mut held_frames = Vec::new();
        let conn = {
            let mut reg = self.lock();
            if let Some(old) = reg.sessions.get(key) {
                let named = Uuid::parse_str(key).is_ok_and(|u| peer.names(&u));
                if !(old.identity.same_key(peer) || named) {
                    return Err(format!(
                        "UUID {key} is in use by a session with another certificate"
                    ));
                }
            }
            reg.next_conn += 1;
            let conn = reg.next_conn;
            // The replaced session is closed; unlike Go, its teardown will not remove the new
            // entry (checked by `conn`).
            let cutoff = self.cfg.hold_for;
            if role_bits & role::CNCIAGENT != 0 {
                if let Some(held) = reg.held.remove(key) {
                    held_frames.extend(
                        held.into_iter()
                            .filter(|h| h.at.elapsed() < cutoff)
                            .map(|h| h.frame),
                    );
                }
            }
            if let Some(old) = reg.sessions.insert(
                key.to_string(),
                Session {
                    conn,
                    role: role_bits,
                    identity: peer.clone(),
                    tx: tx.clone(),
                    kick,
                },
            ) {
                old.kick.notify_one();
            }
            if role_bits & role::CONTROLLER != 0 && !reg.controllers.iter().any(|c| c == key) {
                reg.controllers.push(key.to_string());
                // A new controller learns about every node already connected.
                for (uuid, s) in &reg.sessions {
                    for t in node_types(s.role) {
                        held_frames.push(self.node_event(event::NODE_CONNECTED, uuid, &t));
                    }
                }
            }
            for t in node_types(role_bits) {
                for c in reg.controllers.iter().filter(|c| *c != key) {
                    if let Some(s) = reg.sessions.get(c) {
                        notices.push((
                            s.tx.clone(),
                            self.node_event(event::NODE_CONNECTED, key, &t),
                        ));
                    }
                }
            }
            conn
        };
        for (to, frame) in notices {
            let _ = to.send(frame).await;
        }
        Ok((conn, held_frames))
    }

    async fn unregister(&self, key: &str, conn: u64) {
        let mut notices = Vec::new();
        {
            let mut reg = self.lock();
            let Some(s) = reg.sessions.get(key) else {
                return;
            };
            if s.conn != conn {
                return; // replaced by a newer session with the same UUID: leave it alone
            }
            let role_bits = s.role;
            reg.sessions.remove(key);
            reg.controllers.retain(|c| c != key);
            for cnci in reg.used.remove(key).unwrap_or_default() {
                if let Some(users) = reg.users.get_mut(&cnci) {
                    users.remove(key);
                    if users.is_empty() {
                        reg.users.remove(&cnci);
                    }
                }
            }
            for t in node_types(role_bits) {
                for c in &reg.controllers {
                    if let Some(s) = reg.sessions.get(c) {
                        notices.push((
                            s.tx.clone(),
                            self.node_event(event::NODE_DISCONNECTED, key, &t),
                        ));
                    }
                }
            }
        }
        for (to, frame) in notices {
            let _ = to.send(frame).await;
        }
    }

    /// Where a frame goes (reference/ssntp.md §8, the networking rules, plus this project's
    /// checks of who may send what).
    fn destinations(
        &self,
        from: &str,
        from_role: u32,
        own: &mpsc::Sender<Frame>,
        frame: &Frame,
    ) -> Vec<mpsc::Sender<Frame>> {
        let named = named(frame);
        let mut reg = self.lock();
        let is_master = from_role & role::CONTROLLER != 0
            && reg.controllers.first().map(String::as_str) == Some(from);
        let controllers = |reg: &Registry| -> Vec<mpsc::Sender<Frame>> {
            reg.controllers
                .iter()
                .filter(|c| *c != from)
                .filter_map(|c| reg.sessions.get(c).map(|s| s.tx.clone()))
                .collect()
        };
        match (frame.kind, frame.operand, named) {
            (kind::EVENT, _, Named::Tenant { cnci, agent, sync }) => {
                if from_role & role::AGENT == 0 {
                    self.log_drop(
                        from,
                        frame,
                        "tenant event from a session without the AGENT role",
                    );
                    return Vec::new();
                }
                if agent.as_deref() != Some(from) {
                    self.log_drop(from, frame, "agent_uuid is not the sending session's UUID");
                    return Vec::new();
                }
                // The key is the exact string: an upper-case or unknown UUID reaches nobody.
                let Some(cnci) = cnci else {
                    return Vec::new();
                };
                if frame.operand != event::TENANT_REMOVED {
                    remember_user(&mut reg, &cnci, from);
                }
                let to = cnci_session(&reg, &cnci);
                if to.is_empty() && self.cfg.hold_depth > 0 {
                    let sync_of = sync.then(|| from.to_string());
                    self.hold(&mut reg, cnci, sync_of, frame.clone());
                }
                to
            }
            (kind::COMMAND, _, Named::Cnci(cnci)) if is_master => {
                cnci.map(|c| cnci_session(&reg, &c)).unwrap_or_default()
            }
            (
                kind::COMMAND | kind::ERROR,
                _,
                Named::ForNode {
                    node,
                    roles,
                    start_of,
                },
            ) if is_master => {
                let to = node
                    .map(|n| node_session(&reg, &n, roles))
                    .unwrap_or_default();
                if to.is_empty() {
                    self.log_drop(from, frame, "no connected node of that UUID and role");
                    if let Some(instance) = start_of {
                        let _ = own.try_send(self.start_failure(frame, instance));
                    }
                }
                to
            }
            (kind::EVENT | kind::ERROR, _, Named::FromNode { node, roles }) => {
                if from_role & roles == 0 || node.as_deref() != Some(from) {
                    self.log_drop(from, frame, "node event not from the node it names");
                    return Vec::new();
                }
                controllers(&reg)
            }
            (kind::EVENT, _, Named::InstanceAdded(instance)) => {
                if from_role & role::CNCIAGENT == 0 || instance.as_deref() != Some(from) {
                    self.log_drop(
                        from,
                        frame,
                        "ConcentratorInstanceAdded not from the CNCI it names",
                    );
                    return Vec::new();
                }
                let mut to = controllers(&reg);
                if let Some(users) = reg.users.get(from) {
                    to.extend(
                        users
                            .iter()
                            .filter_map(|a| reg.sessions.get(a))
                            .filter(|s| s.role & role::AGENT != 0)
                            .map(|s| s.tx.clone()),
                    );
                }
                to
            }
            (kind::COMMAND, command::CONFIGURE, Named::Configure(check)) => {
                if from_role & role::CONTROLLER != 0 {
                    match check {
                        Ok(()) => reg.configuration = frame.payload.clone(),
                        Err(e) => {
                            self.log_drop(from, frame, "invalid CONFIGURE");
                            let _ = own.try_send(self.invalid_configuration(&e));
                        }
                    }
                }
                Vec::new()
            }
            (kind::EVENT, event::PUBLIC_IP_ASSIGNED | event::PUBLIC_IP_UNASSIGNED, _)
            | (
                kind::EVENT,
                event::INSTANCE_DELETED | event::INSTANCE_STOPPED | event::TRACE_REPORT,
                _,
            )
            | (kind::COMMAND, command::STATS, _)
            | (
                kind::ERROR,
                error::ASSIGN_PUBLIC_IP_FAILURE
                | error::UNASSIGN_PUBLIC_IP_FAILURE
                | error::START_FAILURE
                | error::DELETE_FAILURE
                | error::ATTACH_VOLUME_FAILURE,
                _,
            ) => controllers(&reg),
            (k, _, _) if k > kind::EVENT => {
                // Go answers an unknown frame type with InvalidFrameType and keeps the session.
                let _ = own.try_send(Frame::new(
                    kind::ERROR,
                    error::INVALID_FRAME_TYPE,
                    self.cfg.uuid,
                    Vec::new(),
                ));
                Vec::new()
            }
            // STATUS is consumed; workload commands are not this scheduler's job; rest dropped.
            _ => Vec::new(),
        }
    }

    /// Keeps a tenant event for an absent CNCI (bounded: the oldest and expired go first; a
    /// TenantSync replaces the same agent's older one). Only canonical UUIDs are held; anything
    /// else could never connect.
    fn hold(&self, reg: &mut Registry, uuid: String, sync_of: Option<String>, frame: Frame) {
        if !crate::payloads::is_canonical_uuid(&uuid)
            || (reg.held.len() >= MAX_HELD_CNCIS && !reg.held.contains_key(&uuid))
        {
            return;
        }
        let queue = reg.held.entry(uuid).or_default();
        if let Some(agent) = &sync_of {
            queue.retain(|h| h.sync_of.as_ref() != Some(agent));
        }
        while queue
            .front()
            .is_some_and(|h| h.at.elapsed() >= self.cfg.hold_for)
            || queue.len() >= self.cfg.hold_depth
        {
            queue.pop_front();
        }
        queue.push_back(Held {
            at: Instant::now(),
            sync_of,
            frame,
        });
    }

    async fn route(&self, from: &str, from_role: u32, own: &mpsc::Sender<Frame>, frame: Frame) {
        for to in self.destinations(from, from_role, own, &frame) {
            // Waiting here is the backpressure: this sender's socket is not read meanwhile.
            let _ = to.send(frame.clone()).await;
        }
    }
}

/// Whether a CONFIGURE payload may replace the configuration: it reads as Go reads it and
/// its values pass [`crate::payloads::ConfigurePayload::validate`], so that nodes connecting
/// later get one they can use.
fn checked_configuration(payload: &[u8]) -> Result<(), PayloadError> {
    Configure::from_yaml(payload)?.validate()
}

/// The queue of the CNCI session with exactly this UUID, if one is connected with the CNCI
/// role: frames for a CNCI never go to a session that merely claims its UUID.
fn cnci_session(reg: &Registry, uuid: &str) -> Vec<mpsc::Sender<Frame>> {
    reg.sessions
        .get(uuid)
        .filter(|s| s.role & role::CNCIAGENT != 0)
        .map(|s| vec![s.tx.clone()])
        .unwrap_or_default()
}

/// The queue of the session with exactly this UUID if it holds one of `roles`.
fn node_session(reg: &Registry, uuid: &str, roles: u32) -> Vec<mpsc::Sender<Frame>> {
    reg.sessions
        .get(uuid)
        .filter(|s| s.role & roles != 0)
        .map(|s| vec![s.tx.clone()])
        .unwrap_or_default()
}

/// Notes that agent `agent` registers with CNCI `cnci` (bounded per agent).
fn remember_user(reg: &mut Registry, cnci: &str, agent: &str) {
    if !crate::payloads::is_canonical_uuid(cnci) {
        return;
    }
    let used = reg.used.entry(agent.to_string()).or_default();
    if used.len() >= MAX_CNCIS_PER_AGENT && !used.contains(cnci) {
        return;
    }
    used.insert(cnci.to_string());
    reg.users
        .entry(cnci.to_string())
        .or_default()
        .insert(agent.to_string());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The typed payload writes the bytes the Go scheduler sends (and this one sent by hand).
    #[test]
    fn node_events_have_the_go_schedulers_bytes() {
        let s = Scheduler::new(SchedulerConfig::new(Uuid::from_u128(1)));
        let node = "67d0a5ea-3d6a-4b48-9a35-3d4c3bb6e9b0";
        let frame = s.node_event(event::NODE_CONNECTED, node, &NodeType::ComputeNode);
        assert_eq!(
            String::from_utf8_lossy(&frame.payload),
            format!("node_connected:\n  node_uuid: {node}\n  node_type: compute_node\n")
        );
        let frame = s.node_event(event::NODE_DISCONNECTED, node, &NodeType::NetworkNode);
        assert_eq!(frame.operand, event::NODE_DISCONNECTED);
        assert_eq!(
            String::from_utf8_lossy(&frame.payload),
            format!("node_disconnected:\n  node_uuid: {node}\n  node_type: network_node\n")
        );
    }
}
