//! TenantAdded / TenantRemoved (EVENT 0 / 1, reference/ssntp.md §7.1): a compute node telling
//! the tenant's CNCI, through the scheduler, that its tunnel end for a subnet appeared or went.

use std::net::Ipv4Addr;

use uuid::Uuid;

use super::{ipv4_key, subnet_of_key, uuid_key, Field, Ipv4Subnet, Payload, PayloadError};

/// The tunnel type; this project's extension key `tunnel_kind`. Go peers only know GRE taps,
/// so an absent key means [`TunnelKind::Gretap`]. One type for the whole workspace.
pub use ciao_types::{ParseTunnelKindError, TunnelKind};

impl Field for TunnelKind {
    fn de<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <Self as serde::Deserialize>::deserialize(d)
    }

    fn node(&self) -> Option<super::emit::Node> {
        Some(super::emit::Node::Str(self.as_str().to_owned()))
    }
}

yaml_struct! {
    /// The body shared by TenantAdded and TenantRemoved (Go `payloads.TenantAddedEvent`).
    /// Strings are kept as sent: the scheduler routes by the exact `concentrator_uuid` text and
    /// the Go CNCI names its bridge after the exact `tenant_subnet` text.
    pub struct TenantAddedEvent {
        /// SSNTP UUID of the sending node agent.
        pub agent_uuid: String,
        /// The node's end of the tunnel (the CNCI's remote).
        pub agent_ip: String,
        pub tenant_uuid: String,
        /// CIDR of the tenant subnet.
        pub tenant_subnet: String,
        /// Routing key: the scheduler forwards to the CNCI session with exactly this UUID text.
        pub concentrator_uuid: String,
        pub concentrator_ip: String,
        /// ciao's GRE key; must be [`super::subnet_key`] of `tenant_subnet` (Go `int`).
        pub subnet_key: i64,
        /// Extension: absent means gretap (all a Go peer does).
        pub tunnel_kind: Option<TunnelKind>,
        /// Extension: VNI or GRE key; absent means `subnet_key`.
        pub tunnel_id: Option<u32>,
    }
}

impl TenantAddedEvent {
    /// A Go-compatible body for a subnet's tunnel between this node and the CNCI, with UUIDs in
    /// the canonical form the scheduler routes by and the key derived from the subnet.
    pub fn new(
        agent: Uuid,
        agent_ip: Ipv4Addr,
        tenant: Uuid,
        subnet: Ipv4Subnet,
        concentrator: Uuid,
        concentrator_ip: Ipv4Addr,
    ) -> Self {
        TenantAddedEvent {
            agent_uuid: agent.to_string(),
            agent_ip: agent_ip.to_string(),
            tenant_uuid: tenant.to_string(),
            tenant_subnet: subnet.to_string(),
            concentrator_uuid: concentrator.to_string(),
            concentrator_ip: concentrator_ip.to_string(),
            subnet_key: i64::from(subnet.subnet_key()),
            tunnel_kind: None,
            tunnel_id: None,
        }
    }

    /// Adds this project's tunnel keys (Go peers ignore them).
    pub fn with_tunnel(mut self, kind: TunnelKind, id: u32) -> Self {
        self.tunnel_kind = Some(kind);
        self.tunnel_id = Some(id);
        self
    }

    /// The CNCI UUID, checked as in [`TenantAdded::concentrator`]; `payload` names the event.
    pub fn concentrator_in(&self, payload: &'static str) -> Result<Uuid, PayloadError> {
        uuid_key(payload, "concentrator_uuid", &self.concentrator_uuid)
    }

    /// ciao-cnci-agent `unmarshallSubnetParams`: a CIDR subnet, a key equal to its LE32 and not
    /// 0, and a parseable `agent_ip`; the same for added and removed.
    pub fn remote_subnet_in(&self, payload: &'static str) -> Result<RemoteSubnet, PayloadError> {
        let subnet = subnet_of_key(payload, "tenant_subnet", &self.tenant_subnet)?;
        if self.subnet_key == 0 {
            return Err(PayloadError::Missing {
                payload,
                key: "subnet_key",
            });
        }
        let expected = subnet.subnet_key();
        let subnet_key = u32::try_from(self.subnet_key)
            .ok()
            .filter(|k| *k == expected)
            .ok_or_else(|| PayloadError::SubnetKeyMismatch {
                payload,
                tenant_subnet: self.tenant_subnet.clone(),
                subnet_key: self.subnet_key,
                expected,
            })?;
        Ok(RemoteSubnet {
            agent_ip: ipv4_key(payload, "agent_ip", &self.agent_ip)?,
            subnet,
            subnet_key,
            tunnel_kind: self.tunnel_kind.unwrap_or(TunnelKind::Gretap),
            tunnel_id: self.tunnel_id.unwrap_or(subnet_key),
        })
    }
}

/// What a CNCI needs to add or remove its tunnel to one node, checked like the Go CNCI checks
/// it, with this project's defaults for Go senders filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteSubnet {
    /// Remote end of the tunnel.
    pub agent_ip: Ipv4Addr,
    pub subnet: Ipv4Subnet,
    pub subnet_key: u32,
    /// `gretap` when the sender did not say (a Go launcher).
    pub tunnel_kind: TunnelKind,
    /// `subnet_key` when the sender did not say: the GRE key a Go launcher uses.
    pub tunnel_id: u32,
}

wrapped_payload! {
    /// EVENT TenantAdded: the node's first workload of a tenant subnet created its tunnel end.
    TenantAdded(TenantAddedEvent) = "tenant_added"
}

wrapped_payload! {
    /// EVENT TenantRemoved: the node's last workload of the subnet left, its tunnel end is gone.
    TenantRemoved(TenantAddedEvent) = "tenant_removed"
}

macro_rules! tenant_checks {
    ($($name:ident),*) => {$(
        impl $name {
            /// The CNCI this event is for; fails unless `concentrator_uuid` is a canonical
            /// lower-case UUID, since the scheduler silently drops anything else.
            pub fn concentrator(&self) -> Result<Uuid, PayloadError> {
                self.0.concentrator_in(Self::NAME)
            }

            /// The checked tunnel parameters; errors name the key at fault.
            pub fn remote_subnet(&self) -> Result<RemoteSubnet, PayloadError> {
                self.0.remote_subnet_in(Self::NAME)
            }
        }
    )*};
}

tenant_checks!(TenantAdded, TenantRemoved);

yaml_struct! {
    /// This project's EVENT TenantSync ([`crate::frame::event::TENANT_SYNC`]; ciao has no such
    /// frame): a compute node's complete set of tunnel ends at one CNCI. The node sends it after
    /// every (re)connect to the scheduler and whenever the CNCI announces itself again
    /// (ConcentratorInstanceAdded forwarded to the nodes that use it), so a registration lost
    /// with a dying scheduler, CNCI or node daemon is restored, and one whose TenantRemoved was
    /// lost is pruned: the CNCI makes this agent's entries exactly `subnets`. Routed like
    /// TenantAdded (by `concentrator_uuid`, only from the session whose UUID is `agent_uuid`).
    /// Go peers never see it from a Go scheduler, which drops unknown events.
    pub struct TenantSyncEvent {
        /// SSNTP UUID of the sending node agent; every entry must name it too.
        pub agent_uuid: String,
        /// Routing key, as in TenantAdded.
        pub concentrator_uuid: String,
        pub tenant_uuid: String,
        /// One TenantAdded body per subnet the node currently tunnels to this CNCI.
        pub subnets: Vec<TenantAddedEvent>,
    }
}

wrapped_payload! {
    /// EVENT TenantSync: a node's whole set of registrations at one CNCI (see the body type).
    TenantSync(TenantSyncEvent) = "tenant_sync"
}

impl TenantSync {
    /// The CNCI this snapshot is for (canonical UUID, as the scheduler routes by).
    pub fn concentrator(&self) -> Result<Uuid, PayloadError> {
        self.0.concentrator_in()
    }

    /// The sending agent (canonical UUID).
    pub fn agent(&self) -> Result<Uuid, PayloadError> {
        uuid_key(Self::NAME, "agent_uuid", &self.0.agent_uuid)
    }

    /// Every entry checked as a TenantAdded body; each must name the same agent, CNCI and
    /// tenant as the snapshot.
    pub fn remote_subnets(&self) -> Result<Vec<RemoteSubnet>, PayloadError> {
        let body = &self.0;
        body.subnets
            .iter()
            .map(|e| {
                if e.agent_uuid != body.agent_uuid {
                    return Err(super::invalid(
                        Self::NAME,
                        "subnets.agent_uuid",
                        &e.agent_uuid,
                        "differs from the snapshot's agent_uuid",
                    ));
                }
                if e.concentrator_uuid != body.concentrator_uuid {
                    return Err(super::invalid(
                        Self::NAME,
                        "subnets.concentrator_uuid",
                        &e.concentrator_uuid,
                        "differs from the snapshot's concentrator_uuid",
                    ));
                }
                if e.tenant_uuid != body.tenant_uuid {
                    return Err(super::invalid(
                        Self::NAME,
                        "subnets.tenant_uuid",
                        &e.tenant_uuid,
                        "differs from the snapshot's tenant_uuid",
                    ));
                }
                e.remote_subnet_in(Self::NAME)
            })
            .collect()
    }
}

impl TenantSyncEvent {
    fn concentrator_in(&self) -> Result<Uuid, PayloadError> {
        uuid_key(
            TenantSync::NAME,
            "concentrator_uuid",
            &self.concentrator_uuid,
        )
    }
}
