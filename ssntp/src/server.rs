//! The scheduler's forwarding core: what networking needs of ciao-scheduler (reference/ssntp.md
//! §8), over any byte stream (the TLS listener hands each connection in with its certificate's
//! roles). Workload placement (START, DELETE, EVACUATE, ...) is deliberately not done.
//!
//! Each connection has a bounded outgoing queue. A reader forwarding into a full queue waits,
//! which stops it reading its own socket: a flood is slowed at its source by TCP instead of
//! growing the scheduler's memory.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, Notify};
use uuid::Uuid;

use crate::conn::{server_handshake, ConnError, FrameReader, FrameWriter, ServerHello};
use crate::frame::{command, error, event, kind, role, Frame};

/// How a scheduler behaves.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    pub uuid: Uuid,
    /// The CONNECTED payload (`configure:` YAML), replaced by a controller's CONFIGURE.
    pub configuration: Vec<u8>,
    /// How long a new connection may take to send CONNECT (Go: 30 s).
    pub connect_timeout: Duration,
    /// Frames queued per destination before senders to it are made to wait.
    pub queue_depth: usize,
    /// A destination that cannot take a frame for this long is disconnected (Go: 30 s).
    pub write_timeout: Duration,
    /// TenantAdded/TenantRemoved frames kept per CNCI that is not connected (0: drop them, as
    /// Go does).
    pub hold_depth: usize,
    /// How long such a frame is kept.
    pub hold_for: Duration,
}

impl SchedulerConfig {
    pub fn new(uuid: Uuid) -> Self {
        Self {
            uuid,
            configuration: Vec::new(),
            connect_timeout: crate::conn::CONNECT_TIMEOUT,
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
    tx: mpsc::Sender<Frame>,
    kick: Arc<Notify>,
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
    held: HashMap<String, VecDeque<(Instant, Frame)>>,
}

/// Absent CNCIs for which tenant events are held at most (bounds memory against bogus UUIDs).
const MAX_HELD_CNCIS: usize = 4096;

/// A running scheduler; cheap to clone, one per listener.
#[derive(Clone)]
pub struct Scheduler {
    cfg: Arc<SchedulerConfig>,
    registry: Arc<Mutex<Registry>>,
}

fn node_types(role_bits: u32) -> Vec<&'static str> {
    let mut out = Vec::new();
    if role_bits & role::AGENT != 0 {
        out.push("compute_node");
    }
    if role_bits & role::NETAGENT != 0 {
        out.push("network_node");
    }
    out
}

/// Reads `top.field` of a YAML payload as a string.
fn payload_field(payload: &[u8], top: &str, field: &str) -> Option<String> {
    let value: serde_yaml_ng::Value = serde_yaml_ng::from_slice(payload).ok()?;
    value.get(top)?.get(field)?.as_str().map(str::to_string)
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

    fn node_event(&self, operand: u8, node: &str, node_type: &str) -> Frame {
        let key = if operand == event::NODE_CONNECTED {
            "node_connected"
        } else {
            "node_disconnected"
        };
        let payload = format!("{key}:\n  node_uuid: {node}\n  node_type: {node_type}\n");
        Frame::new(kind::EVENT, operand, self.cfg.uuid, payload.into_bytes())
    }

    /// Serves one connection until it closes. `cert_roles` are the role bits of the client's
    /// certificate; the claimed role must be a subset of them.
    pub async fn serve<R, W>(&self, reader: R, writer: W, cert_roles: u32) -> Result<(), ConnError>
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let mut reader = FrameReader::new(reader);
        let mut writer = FrameWriter::new(writer);
        let hello = ServerHello {
            uuid: self.cfg.uuid,
            role: role::SCHEDULER,
            configuration: self.lock().configuration.clone(),
        };
        let client = server_handshake(
            &mut reader,
            &mut writer,
            cert_roles,
            &hello,
            self.cfg.connect_timeout,
        )
        .await?;
        let key = client.uuid.to_string();
        let (tx, rx) = mpsc::channel(self.cfg.queue_depth.max(1));
        let kick = Arc::new(Notify::new());
        let conn = self
            .register(&key, client.role, tx.clone(), kick.clone())
            .await;

        let write_timeout = self.cfg.write_timeout;
        let writer_kick = kick.clone();
        let writer_task = tokio::spawn(async move {
            let mut rx = rx;
            // Everything queued goes out in one write: one TLS record and syscall per batch.
            let mut batch = Vec::with_capacity(64);
            while rx.recv_many(&mut batch, 64).await > 0 {
                for frame in &batch {
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

        let result = loop {
            let next = tokio::select! {
                r = reader.frame() => r,
                _ = kick.notified() => break Ok(()),
            };
            match next {
                Ok(Some(frame)) => self.route(&key, client.role, &tx, frame).await,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        drop(tx);
        self.unregister(&key, conn).await;
        writer_task.abort();
        result
    }

    async fn register(
        &self,
        key: &str,
        role_bits: u32,
        tx: mpsc::Sender<Frame>,
        kick: Arc<Notify>,
    ) -> u64 {
        let mut notices = Vec::new();
        let conn = {
            let mut reg = self.lock();
            reg.next_conn += 1;
            let conn = reg.next_conn;
            // A second session with the same UUID replaces the first, which is closed; unlike
            // Go, the old one's teardown will not remove the new entry (checked by `conn`).
            let cutoff = self.cfg.hold_for;
            if let Some(held) = reg.held.remove(key) {
                for (_, frame) in held.into_iter().filter(|(at, _)| at.elapsed() < cutoff) {
                    notices.push((tx.clone(), frame));
                }
            }
            if let Some(old) = reg.sessions.insert(
                key.to_string(),
                Session {
                    conn,
                    role: role_bits,
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
                        notices.push((tx.clone(), self.node_event(event::NODE_CONNECTED, uuid, t)));
                    }
                }
            }
            for t in node_types(role_bits) {
                for c in reg.controllers.iter().filter(|c| *c != key) {
                    if let Some(s) = reg.sessions.get(c) {
                        notices
                            .push((s.tx.clone(), self.node_event(event::NODE_CONNECTED, key, t)));
                    }
                }
            }
            conn
        };
        for (to, frame) in notices {
            let _ = to.send(frame).await;
        }
        conn
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
            for t in node_types(role_bits) {
                for c in &reg.controllers {
                    if let Some(s) = reg.sessions.get(c) {
                        notices.push((
                            s.tx.clone(),
                            self.node_event(event::NODE_DISCONNECTED, key, t),
                        ));
                    }
                }
            }
        }
        for (to, frame) in notices {
            let _ = to.send(frame).await;
        }
    }

    /// Where a frame goes (reference/ssntp.md §8, the networking rules).
    fn destinations(
        &self,
        from: &str,
        from_role: u32,
        own: &mpsc::Sender<Frame>,
        frame: &Frame,
    ) -> Vec<mpsc::Sender<Frame>> {
        let p = &frame.payload;
        // The payload names the destination; parse it before taking the registry lock so that
        // routing on several cores is not serialised behind YAML parsing.
        let named = match (frame.kind, frame.operand) {
            (kind::EVENT, event::TENANT_ADDED) => {
                payload_field(p, "tenant_added", "concentrator_uuid")
            }
            (kind::EVENT, event::TENANT_REMOVED) => {
                payload_field(p, "tenant_removed", "concentrator_uuid")
            }
            (kind::COMMAND, command::ASSIGN_PUBLIC_IP) => {
                payload_field(p, "assign_public_ip", "concentrator_uuid")
            }
            (kind::COMMAND, command::RELEASE_PUBLIC_IP) => {
                payload_field(p, "release_public_ip", "concentrator_uuid")
            }
            (kind::COMMAND, command::REFRESH_CNCI) => payload_field(p, "cnci_refresh", "cnci_uuid"),
            _ => None,
        };
        let mut reg = self.lock();
        let is_master = from_role & role::CONTROLLER != 0
            && reg.controllers.first().map(String::as_str) == Some(from);
        let to_uuid = |reg: &Registry, uuid: Option<String>| -> Vec<mpsc::Sender<Frame>> {
            // The key is the exact string: an upper-case or unknown UUID reaches nobody.
            uuid.and_then(|u| reg.sessions.get(&u).map(|s| vec![s.tx.clone()]))
                .unwrap_or_default()
        };
        let controllers = |reg: &Registry| -> Vec<mpsc::Sender<Frame>> {
            reg.controllers
                .iter()
                .filter(|c| *c != from)
                .filter_map(|c| reg.sessions.get(c).map(|s| s.tx.clone()))
                .collect()
        };
        match (frame.kind, frame.operand) {
            (kind::EVENT, event::TENANT_ADDED | event::TENANT_REMOVED) => {
                let to = to_uuid(&reg, named.clone());
                match named {
                    Some(uuid) if to.is_empty() && self.cfg.hold_depth > 0 => {
                        self.hold(&mut reg, uuid, frame.clone());
                        Vec::new()
                    }
                    _ => to,
                }
            }
            (
                kind::COMMAND,
                command::ASSIGN_PUBLIC_IP | command::RELEASE_PUBLIC_IP | command::REFRESH_CNCI,
            ) if is_master => to_uuid(&reg, named),
            (kind::COMMAND, command::CONFIGURE) => {
                if from_role & role::CONTROLLER != 0 {
                    reg.configuration = p.clone();
                }
                Vec::new()
            }
            (
                kind::EVENT,
                event::CONCENTRATOR_INSTANCE_ADDED
                | event::PUBLIC_IP_ASSIGNED
                | event::PUBLIC_IP_UNASSIGNED,
            )
            | (
                kind::EVENT,
                event::INSTANCE_DELETED | event::INSTANCE_STOPPED | event::TRACE_REPORT,
            )
            | (kind::COMMAND, command::STATS)
            | (
                kind::ERROR,
                error::ASSIGN_PUBLIC_IP_FAILURE
                | error::UNASSIGN_PUBLIC_IP_FAILURE
                | error::START_FAILURE
                | error::DELETE_FAILURE
                | error::ATTACH_VOLUME_FAILURE,
            ) => controllers(&reg),
            (k, _) if k > kind::EVENT => {
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

    /// Keeps a tenant event for an absent CNCI (bounded: the oldest and expired go first).
    /// Only canonical UUIDs are held; anything else could never connect.
    fn hold(&self, reg: &mut Registry, uuid: String, frame: Frame) {
        if !crate::payloads::is_canonical_uuid(&uuid)
            || (reg.held.len() >= MAX_HELD_CNCIS && !reg.held.contains_key(&uuid))
        {
            return;
        }
        let queue = reg.held.entry(uuid).or_default();
        while queue
            .front()
            .is_some_and(|(at, _)| at.elapsed() >= self.cfg.hold_for)
            || queue.len() >= self.cfg.hold_depth
        {
            queue.pop_front();
        }
        queue.push_back((Instant::now(), frame));
    }

    async fn route(&self, from: &str, from_role: u32, own: &mpsc::Sender<Frame>, frame: Frame) {
        for to in self.destinations(from, from_role, own, &frame) {
            // Waiting here is the backpressure: this sender's socket is not read meanwhile.
            let _ = to.send(frame.clone()).await;
        }
    }
}

impl Scheduler {
    /// Accepts TLS connections on `listener` forever, serving each on its own task. The
    /// client's role bits come from its verified certificate.
    pub async fn run_tls(
        self,
        listener: tokio::net::TcpListener,
        config: Arc<rustls::ServerConfig>,
    ) -> std::io::Result<()> {
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        loop {
            let (tcp, _) = listener.accept().await?;
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let sched = self.clone();
            tokio::spawn(async move {
                // A failed TLS handshake (foreign CA, expired certificate) just drops the peer.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let roles = crate::tls::peer_roles(tls.get_ref().1);
                let (r, w) = tokio::io::split(tls);
                let _ = sched.serve(r, w, roles).await;
            });
        }
    }
}
