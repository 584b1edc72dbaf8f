//! What the controller decides and remembers: the rows of its store, as values.
//!
//! Every type here is plain data. The store hands them out and takes them in; no type here
//! knows how it is persisted, so a second backend (etcd) reuses them unchanged.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use ciao_types::TunnelKind;
use ipnet::Ipv4Net;
use uuid::Uuid;

/// A network node as it reported itself on connect. It hosts tenants' CNCIs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkNode {
    pub uuid: Uuid,
    /// Where compute nodes' tunnels to this node's CNCIs end.
    pub underlay: Ipv4Addr,
    /// The device facing the outside world (public IPs are reached through it).
    pub external_device: String,
    /// How many live CNCIs it accepts; placement skips a full node.
    pub capacity: u32,
    /// Whether its SSNTP session is up: placement considers only connected nodes.
    pub connected: bool,
}

/// A compute node: it runs workloads and tunnels each tenant subnet to the tenant's CNCI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComputeNode {
    pub uuid: Uuid,
    pub underlay: Ipv4Addr,
    pub connected: bool,
}

/// A tenant's lifecycle: deletion is a state, so the CNCI can outlive the last request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TenantState {
    Active,
    /// Deleted by the operator: new requests are refused, its CNCI retires once no workload
    /// remains, and the tenant is forgotten when its CNCI is gone.
    Deleting,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub uuid: Uuid,
    pub state: TenantState,
}

/// Where a tenant's CNCI is in its life. Stored as its text form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CnciState {
    /// Placed and persisted; the network node has not yet been told (or has not answered).
    Requested,
    /// The network node acknowledged the start.
    Starting,
    /// The CNCI announced itself (ConcentratorInstanceAdded): compute nodes may tunnel to it.
    Ready,
    /// Its tenant was deleted: it stops once no workload of the tenant remains.
    Retiring,
    /// Stopped (or lost). A tenant whose CNCI is gone gets a new one on its next request.
    Gone,
}

impl CnciState {
    pub const ALL: [CnciState; 5] = [
        CnciState::Requested,
        CnciState::Starting,
        CnciState::Ready,
        CnciState::Retiring,
        CnciState::Gone,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CnciState::Requested => "requested",
            CnciState::Starting => "starting",
            CnciState::Ready => "ready",
            CnciState::Retiring => "retiring",
            CnciState::Gone => "gone",
        }
    }

    /// Whether a CNCI may move from `self` to `next`. Staying put is allowed (idempotent
    /// retries); `Gone` is final (a replacement is a new CNCI with a new uuid); `Retiring` is
    /// entered only by deleting the tenant (not through this check), and is left only to `Gone`.
    pub fn may_become(self, next: CnciState) -> bool {
        use CnciState::*;
        match (self, next) {
            _ if self == next => true,
            (Gone, _) => false,
            (_, Gone) => true,
            // Deleting the tenant retires its CNCI; nothing else does, and nothing undoes it.
            (Retiring, _) | (_, Retiring) => false,
            (Requested, Starting | Ready) => true,
            (Starting, Ready | Requested) => true,
            // A restarted CNCI (crash, node agent restart) passes through starting again.
            (Ready, Starting) => true,
            _ => false,
        }
    }
}

impl fmt::Display for CnciState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CnciState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CnciState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| format!("unknown CNCI state {s:?}"))
    }
}

impl TenantState {
    pub fn as_str(self) -> &'static str {
        match self {
            TenantState::Active => "active",
            TenantState::Deleting => "deleting",
        }
    }
}

impl FromStr for TenantState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "active" => Ok(TenantState::Active),
            "deleting" => Ok(TenantState::Deleting),
            _ => Err(format!("unknown tenant state {s:?}")),
        }
    }
}

/// A tenant's concentrator: its hub and router, one per tenant, on a network node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cnci {
    pub uuid: Uuid,
    pub tenant: Uuid,
    pub network_node: Uuid,
    /// Where compute nodes' tunnels end: the network node's underlay address at placement,
    /// then what the CNCI itself announces.
    pub underlay: Ipv4Addr,
    pub state: CnciState,
}

/// A tenant subnet and the tunnel id the controller chose for it, unique across the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantSubnet {
    pub tenant: Uuid,
    pub cidr: Ipv4Net,
    pub tunnel_kind: TunnelKind,
    pub tunnel_id: u32,
}

/// What a compute node is told for one of its tenant subnets: where to tunnel, and with what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetAssignment {
    pub cnci: Cnci,
    pub subnet: TenantSubnet,
}

/// One compute node's share of a tenant's automatic subnet (a workload that named no subnet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoSlice {
    pub compute_node: Uuid,
    pub subnet: TenantSubnet,
    pub slice: Ipv4Net,
    /// The first and last address the node gives out (never the gateway).
    pub range: (Ipv4Addr, Ipv4Addr),
}

/// A public address given to one private address of a tenant (DNAT/SNAT on its CNCI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicIpAssignment {
    pub tenant: Uuid,
    pub private: Ipv4Addr,
    pub public: Ipv4Addr,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_their_text() {
        for state in CnciState::ALL {
            assert_eq!(state.as_str().parse::<CnciState>(), Ok(state));
        }
        for state in [TenantState::Active, TenantState::Deleting] {
            assert_eq!(state.as_str().parse::<TenantState>(), Ok(state));
        }
        assert!("Ready".parse::<CnciState>().is_err());
        assert!("gone ".parse::<TenantState>().is_err());
    }

    #[test]
    fn a_cnci_moves_forward_and_gone_is_final() {
        use CnciState::*;
        let allowed = [
            (Requested, Starting),
            (Requested, Ready),
            (Starting, Ready),
            (Starting, Requested),
            (Ready, Starting),
            (Requested, Gone),
            (Starting, Gone),
            (Ready, Gone),
            (Retiring, Gone),
        ];
        for from in CnciState::ALL {
            for to in CnciState::ALL {
                let expected = from == to || allowed.contains(&(from, to));
                assert_eq!(from.may_become(to), expected, "{from} -> {to}");
            }
        }
    }
}
