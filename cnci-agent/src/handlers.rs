//! What the agent does with each SSNTP frame. Every handler records the desired state first,
//! then converges the kernel, and is idempotent: frames may repeat and arrive in any order.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use ssntp::frame::{error, event, kind, Frame};
use ssntp::payloads::{
    AssignPublicIp, AssignPublicIpFailure, ConcentratorInstanceAdded,
    ConcentratorInstanceAddedEvent, Payload, PublicIpAssigned, PublicIpCommand, PublicIpEvent,
    PublicIpFailure, PublicIpFailureReason, PublicIpUnassigned, RefreshCnci, ReleasePublicIp,
    TenantAdded, TenantAddedEvent, TenantRemoved, TenantSync, UnassignPublicIpFailure,
};

use crate::dhcp::DhcpSubnet;
use crate::error::{Error, Result};
use crate::hub::{Hub, HubKernel};
use crate::register::Limits;
use crate::state::{AgentRecord, Desired, PublicIpRecord, Store, SubnetRecord};
use crate::validate::Fences;

/// The running agent: its records, its kernel handle and its DHCP servers.
pub struct Agent<K: HubKernel = netcore::netlink::Netlink> {
    pub record: AgentRecord,
    pub(crate) store: Store,
    pub(crate) hub: Hub<K>,
    pub(crate) desired: Desired,
    dhcp: HashMap<Ipv4Net, tokio::task::JoinHandle<()>>,
    lease_secs: u32,
    pub(crate) limits: Limits,
    pub(crate) public_ranges: Vec<Ipv4Net>,
    /// The node's addresses and ranges, read at start and again for each public IP command.
    pub(crate) fences: Fences,
    /// The latest TenantIngress, if refused: tried again whenever a subnet is registered (a
    /// new CNCI gets the snapshot before the compute nodes have registered their subnets).
    pub(crate) pending_ingress: Option<ssntp::payloads::TenantIngress>,
}

/// What the operator configured beside the record: limits and public ranges.
#[derive(Debug, Clone)]
pub struct Policy {
    pub lease_secs: u32,
    pub limits: Limits,
    /// `--public-range`: where public IPs may come from; none: every AssignPublicIP refused.
    pub public_ranges: Vec<Ipv4Net>,
}

fn payload_err(e: ssntp::payloads::PayloadError) -> Error {
    Error::Invalid(e.to_string())
}

impl Agent {
    /// Opens the hub and converges the kernel with the recorded state. Must run inside a tokio
    /// runtime (DHCP servers are spawned on it).
    pub fn start(store: Store, record: AgentRecord, policy: Policy) -> Result<Agent> {
        let hub = Hub::open(&record)?;
        Agent::start_with(hub, store, record, policy)
    }
}

impl<K: HubKernel> Agent<K> {
    /// [`Agent::start`] on an opened hub (the real one, or one on the fake kernel in tests).
    pub fn start_with(
        mut hub: Hub<K>,
        store: Store,
        record: AgentRecord,
        policy: Policy,
    ) -> Result<Self> {
        let fences = hub.fences(&policy.public_ranges)?;
        for range in &policy.public_ranges {
            crate::validate::public_range(*range, &fences).map_err(Error::Invalid)?;
        }
        let desired = store.desired()?;
        hub.reconcile(&desired)?;
        let mut agent = Agent {
            record,
            store,
            hub,
            desired,
            dhcp: HashMap::new(),
            lease_secs: policy.lease_secs,
            limits: policy.limits,
            public_ranges: policy.public_ranges,
            fences,
            pending_ingress: None,
        };
        let subnets: Vec<SubnetRecord> = agent.desired.subnets.values().cloned().collect();
        for rec in &subnets {
            agent.start_dhcp(rec);
        }
        Ok(agent)
    }

    pub fn desired(&self) -> &Desired {
        &self.desired
    }

    /// Blocks until the kernel objects of removed subnets are all gone (tests, benchmarks).
    pub fn wait_removed(&mut self) {
        self.idle();
        self.hub.wait_bridges_gone();
    }

    /// Work deferred while frames were waiting: deletes the links of removed subnets in one
    /// batch. The daemon calls it whenever no frame is queued.
    pub fn idle(&mut self) {
        if let Err(e) = self.hub.flush_retired() {
            tracing::warn!("deleting the links of removed subnets: {e}");
        }
    }

    /// The frame announcing this CNCI, sent after every (re)connect.
    pub fn concentrator_added(&self) -> Frame {
        let mac = self
            .hub
            .underlay_mac()
            .map(netcore::ids::format_mac)
            .unwrap_or_default();
        let body = ConcentratorInstanceAddedEvent {
            instance_uuid: self.record.uuid.to_string(),
            tenant_uuid: self.record.tenant.to_string(),
            concentrator_ip: self.record.underlay_ip.to_string(),
            concentrator_mac: mac,
        };
        Frame::new(
            kind::EVENT,
            event::CONCENTRATOR_INSTANCE_ADDED,
            self.record.uuid,
            ConcentratorInstanceAdded(body).to_yaml(),
        )
    }

    pub(crate) fn start_dhcp(&mut self, rec: &SubnetRecord) {
        if self.dhcp.get(&rec.subnet).is_some_and(|t| !t.is_finished()) {
            return;
        }
        let bridge = crate::names::bridge(rec.subnet);
        let socket = crate::dhcp::bind_socket(self.hub.tenant_ns(), &bridge)
            .and_then(tokio::net::UdpSocket::from_std);
        let socket = match socket {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("dhcp on {}: cannot open the server socket: {e}", rec.subnet);
                return;
            }
        };
        let subnet = DhcpSubnet {
            subnet: rec.subnet,
            gateway: rec.gateway(),
            mtu: u16::try_from(self.hub.subnet_mtu(rec.kind)).unwrap_or(1500),
            dns: self.record.dns.clone(),
            lease_secs: self.lease_secs,
        };
        // The server task logs under its subnet and tenant, whatever frame started it.
        let span = tracing::info_span!(parent: None, "dhcp", tenant = %self.record.tenant, subnet = %rec.subnet);
        let server = tracing::Instrument::instrument(crate::dhcp::serve(socket, subnet), span);
        self.dhcp.insert(rec.subnet, tokio::spawn(server));
    }

    pub(crate) fn stop_dhcp(&mut self, subnet: Ipv4Net) {
        if let Some(task) = self.dhcp.remove(&subnet) {
            task.abort();
        }
    }

    /// Handles one frame; returns the frames to send back.
    pub fn handle(&mut self, frame: &Frame) -> Vec<Frame> {
        // One span per frame: every line it causes names the tenant, and the sending agent
        // once the payload is parsed (see `register`).
        let span = tracing::info_span!(
            "frame",
            tenant = %self.record.tenant,
            kind = frame.kind,
            operand = frame.operand,
            agent = tracing::field::Empty,
        );
        let _entered = span.enter();
        self.hub.busy();
        let payload = frame.payload.as_slice();
        let subnets_before = self.desired.subnets.len();
        let result = match (frame.kind, frame.operand) {
            (kind::EVENT, event::TENANT_ADDED) => TenantAdded::from_yaml(payload)
                .map_err(payload_err)
                .and_then(|p| self.tenant_added(&p.0)),
            (kind::EVENT, event::TENANT_REMOVED) => TenantRemoved::from_yaml(payload)
                .map_err(payload_err)
                .and_then(|p| self.tenant_removed(&p.0)),
            (kind::EVENT, event::TENANT_SYNC) => TenantSync::from_yaml(payload)
                .map_err(payload_err)
                .and_then(|p| self.tenant_sync(&p)),
            (kind::COMMAND, ssntp::frame::command::ASSIGN_PUBLIC_IP) => {
                return vec![self.public_ip(payload, true)]
            }
            (kind::COMMAND, ssntp::frame::command::RELEASE_PUBLIC_IP) => {
                return vec![self.public_ip(payload, false)]
            }
            (kind::COMMAND, ssntp::frame::command::REFRESH_CNCI) => self.refresh(payload),
            (kind::COMMAND, ssntp::frame::command::TENANT_INGRESS) => {
                return vec![self.tenant_ingress(payload)]
            }
            (k, op) => {
                tracing::warn!("ignoring frame kind {k} operand {op}");
                Ok(())
            }
        };
        if let Err(e) = result {
            tracing::warn!("frame kind {} operand {}: {e}", frame.kind, frame.operand);
        }
        if self.desired.subnets.len() == subnets_before {
            return Vec::new();
        }
        self.retry_ingress().into_iter().collect()
    }

    /// Checks that an event is for this CNCI and tenant and returns its subnet record key.
    pub(crate) fn check_tenant_event(
        &self,
        ev: &TenantAddedEvent,
        name: &'static str,
    ) -> Result<()> {
        let cnci = ev.concentrator_in(name).map_err(payload_err)?;
        if cnci != self.record.uuid {
            return Err(Error::Invalid(format!(
                "{name} is for CNCI {cnci}, this is {}",
                self.record.uuid
            )));
        }
        if ev.tenant_uuid != self.record.tenant.to_string() {
            return Err(Error::Invalid(format!(
                "{name} from {} is for tenant {:?}, this CNCI serves tenant {}",
                ev.agent_ip, ev.tenant_uuid, self.record.tenant
            )));
        }
        Ok(())
    }

    /// AssignPublicIP (`assign`) or ReleasePublicIP: the reply event, or the failure error.
    fn public_ip(&mut self, payload: &[u8], assign: bool) -> Frame {
        let parsed = if assign {
            AssignPublicIp::from_yaml(payload).map(|p| p.0)
        } else {
            ReleasePublicIp::from_yaml(payload).map(|p| p.0)
        };
        let (cmd, outcome) = match parsed {
            Ok(cmd) => {
                let outcome = self.apply_public_ip(&cmd, assign);
                (cmd, outcome)
            }
            Err(e) => (
                PublicIpCommand::default(),
                Err((PublicIpFailureReason::InvalidPayload, e.to_string())),
            ),
        };
        let uuid = self.record.uuid;
        match outcome {
            Ok(()) => {
                let body = PublicIpEvent::from(&cmd);
                let (op, yaml) = if assign {
                    (event::PUBLIC_IP_ASSIGNED, PublicIpAssigned(body).to_yaml())
                } else {
                    (
                        event::PUBLIC_IP_UNASSIGNED,
                        PublicIpUnassigned(body).to_yaml(),
                    )
                };
                Frame::new(kind::EVENT, op, uuid, yaml)
            }
            Err((reason, message)) => {
                tracing::warn!(
                    "{} public IP {:?}: {message}",
                    if assign { "assign" } else { "release" },
                    cmd.public_ip
                );
                let op = if assign {
                    error::ASSIGN_PUBLIC_IP_FAILURE
                } else {
                    error::UNASSIGN_PUBLIC_IP_FAILURE
                };
                let body = PublicIpFailure::for_command(&cmd, reason);
                let yaml = if assign {
                    AssignPublicIpFailure(body).to_yaml()
                } else {
                    UnassignPublicIpFailure(body).to_yaml()
                };
                Frame::new(kind::ERROR, op, uuid, yaml)
            }
        }
    }

    fn apply_public_ip(
        &mut self,
        cmd: &PublicIpCommand,
        assign: bool,
    ) -> Result<(), (PublicIpFailureReason, String)> {
        use PublicIpFailureReason::{AssignFailure, InvalidData, ReleaseFailure};
        let fail = || {
            if assign {
                AssignFailure
            } else {
                ReleaseFailure
            }
        };
        if cmd.concentrator_uuid != self.record.uuid.to_string() {
            return Err((InvalidData, format!("for CNCI {:?}", cmd.concentrator_uuid)));
        }
        let public: Ipv4Addr = cmd.public_ip.parse().map_err(|_| {
            (
                InvalidData,
                format!("public_ip {:?} is not IPv4", cmd.public_ip),
            )
        })?;
        let private: Ipv4Addr = cmd.private_ip.parse().map_err(|_| {
            (
                InvalidData,
                format!("private_ip {:?} is not IPv4", cmd.private_ip),
            )
        })?;
        let current = self.desired.public_ips.get(&public).cloned();
        if assign {
            match &current {
                Some(c) if c.private_ip == private => return Ok(()),
                Some(c) => {
                    return Err((
                        fail(),
                        format!("{public} is mapped to {} already", c.private_ip),
                    ))
                }
                None => {}
            }
            self.check_public_ip(public, private)
                .map_err(|why| (InvalidData, why))?;
            if let Some(other) = self
                .desired
                .public_ips
                .values()
                .find(|p| p.private_ip == private)
            {
                return Err((
                    fail(),
                    format!("{private} already has public IP {}", other.public_ip),
                ));
            }
            let rec = PublicIpRecord {
                public_ip: public,
                private_ip: private,
                instance_uuid: cmd.instance_uuid.clone(),
                vnic_mac: cmd.vnic_mac.clone(),
            };
            self.store
                .put_public_ip(&rec)
                .map_err(|e| (fail(), e.to_string()))?;
            self.desired.public_ips.insert(public, rec);
            if let Err(e) = self
                .hub
                .apply_public_ips(&self.desired.public_ips, self.desired.ingress.as_ref())
            {
                self.desired.public_ips.remove(&public);
                let _ = self.store.remove_public_ip(public);
                let _ = self
                    .hub
                    .apply_public_ips(&self.desired.public_ips, self.desired.ingress.as_ref());
                return Err((fail(), e.to_string()));
            }
        } else {
            let Some(current) = current else {
                return Ok(()); // released already
            };
            if current.private_ip != private {
                return Err((
                    fail(),
                    format!(
                        "{public} is mapped to {}, not {private}",
                        current.private_ip
                    ),
                ));
            }
            self.store
                .remove_public_ip(public)
                .map_err(|e| (fail(), e.to_string()))?;
            self.desired.public_ips.remove(&public);
            self.hub
                .apply_public_ips(&self.desired.public_ips, self.desired.ingress.as_ref())
                .map_err(|e| (fail(), e.to_string()))?;
        }
        Ok(())
    }

    /// Item 9 of issue 10: the public IP must come from a configured range and belong to
    /// nobody else here; the private IP must be a workload address of the tenant.
    fn check_public_ip(&mut self, public: Ipv4Addr, private: Ipv4Addr) -> Result<(), String> {
        match self.hub.fences(&self.public_ranges) {
            Ok(f) => self.fences = f,
            Err(e) => {
                tracing::warn!("re-reading the node's addresses: {e}; using those from start")
            }
        }
        let cns: std::collections::BTreeSet<Ipv4Addr> = self
            .desired
            .subnets
            .values()
            .flat_map(|r| r.nodes())
            .collect();
        crate::validate::public_ip(public, &self.fences, &cns)?;
        if self
            .desired
            .ingress
            .as_ref()
            .is_some_and(|i| i.forward_ip == Some(public))
        {
            return Err(format!("public_ip {public} is the tenant's forward IP"));
        }
        if let Some(route) = self
            .hub
            .public_ip_in_use(public)
            .map_err(|e| e.to_string())?
        {
            return Err(format!(
                "public_ip {public} is in use on this node ({route})"
            ));
        }
        crate::validate::private_ip(private, self.desired.subnets.keys().copied())
    }

    /// RefreshCNCI lists the tenant's other CNCIs. With one CNCI per tenant (this design)
    /// there is nobody to mesh with; the list is validated and logged.
    fn refresh(&mut self, payload: &[u8]) -> Result<()> {
        let refresh = RefreshCnci::from_yaml(payload).map_err(payload_err)?;
        let cnci = refresh.cnci().map_err(payload_err)?;
        if cnci != self.record.uuid {
            return Err(Error::Invalid(format!("cnci_refresh is for {cnci}")));
        }
        for peer in &refresh.0.cncis {
            let ip = peer.physical_addr().map_err(payload_err)?;
            let subnet = peer.subnet().map_err(payload_err)?;
            peer.tunnel_addr().map_err(payload_err)?;
            tracing::info!(
                "cnci_refresh: peer CNCI {ip} serves {}/{}",
                subnet.network(),
                subnet.prefix_len()
            );
        }
        Ok(())
    }
}
