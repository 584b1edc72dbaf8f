//! Typed SSNTP payloads: the YAML that rides in a frame's `Payload` (reference/ssntp.md §7).
//!
//! Go peers write payloads with `gopkg.in/yaml.v2` and read them the same way, which means:
//! unknown keys are ignored, a missing key leaves its field at the zero value, and keys come
//! out in struct-field order. We mirror that: every type here parses leniently (missing keys
//! become `""`/`0`/empty, unknown keys are skipped), and [`Payload::to_yaml`] writes exactly the
//! bytes yaml.v2 writes, so frames we build are identical to a Go peer's (checked against the
//! captured vectors in the tests). Fields keep the wire's strings; typed accessors
//! (`remote_subnet()`, `concentrator()`, …) check what is needed to act on a payload and name
//! the offending key when it is missing or malformed.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use uuid::Uuid;

#[macro_use]
mod macros;

mod cluster;
mod cnci;
mod configure;
mod control;
mod emit;
mod field;
mod ingress;
mod ingress_rules;
mod node;
mod public_ip;
mod quote;
mod secgroups;
mod subnet;
mod tenant;
#[cfg(test)]
mod tests;

pub(crate) use field::{flat_yaml, parse_flat, parse_wrapped, wrapped_yaml, Field};
pub(crate) use macros::newtype_impls;

pub use cnci::{
    CnciNet, CnciRefreshCommand, ConcentratorInstanceAdded, ConcentratorInstanceAddedEvent,
    RefreshCnci,
};
pub use configure::{
    Configure, ConfigurePayload, ControllerConfig, LauncherConfig, SchedulerConfig, StorageConfig,
};
pub use control::{
    CnciAssignment, CnciAssignmentCmd, CnciRequest, CnciRequestEvent, Delete, InstanceDeleted,
    InstanceDeletedEvent, NodeReport, NodeReportEvent, Start, StartCmd, StartFailure,
    StartFailureBody, StopCmd, WorkloadRequirements, VM_TYPE_CNCI,
};
pub use control::{CnciRefused, CnciRefusedError};
pub use ingress::{
    CheckedForward, IngressForward, IngressSsh, TenantIngress, TenantIngressApplied,
    TenantIngressCmd, TenantIngressFailure, TenantIngressOutcome,
};
pub use ingress_rules::{CheckedIngressRule, IngressRule, RuleProtocol};
pub use node::{NetworkStat, NodeConnected, NodeConnectedEvent, NodeDisconnected, NodeType, Ready};
pub use public_ip::{
    AssignPublicIp, AssignPublicIpFailure, PublicIpAssigned, PublicIpCommand, PublicIpEvent,
    PublicIpFailure, PublicIpFailureReason, PublicIpUnassigned, ReleasePublicIp,
    UnassignPublicIpFailure,
};
pub use secgroups::{
    PortGroups, PortGroupsEvent, PortGroupsPort, SecurityGroupItem, SecurityGroupsApplied,
    SecurityGroupsOutcome, SecurityGroupsUpdate, SecurityGroupsUpdateCmd, SecurityRuleItem,
};
pub use subnet::{
    Granted, SubnetAssignment, SubnetAssignmentCmd, SubnetRequest, SubnetRequestEvent,
};
pub use tenant::{
    ParseTunnelKindError, RemoteSubnet, TenantAdded, TenantAddedEvent, TenantRemoved, TenantSync,
    TenantSyncEvent, TunnelKind,
};

/// A payload type: its YAML text as Go writes it, and a lenient parse as Go reads it.
pub trait Payload: Sized {
    /// The top-level key, or for flat payloads the SSNTP name; used in error messages.
    const NAME: &'static str;

    /// The bytes yaml.v2 `Marshal` produces for the equivalent Go struct.
    fn to_yaml(&self) -> Vec<u8>;

    /// Parses like yaml.v2 `Unmarshal`: unknown keys ignored, missing keys zero. Fails on text
    /// that is not YAML, on a value of the wrong shape for its key, and, for payloads with a
    /// top-level key, when that key is absent.
    fn from_yaml(yaml: &[u8]) -> Result<Self, PayloadError>;
}

/// Why a payload could not be read or acted on. Every variant names the payload, and the key
/// when one is at fault.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// Not YAML, or a value of the wrong type (serde_yaml_ng's message includes the key path).
    #[error("{payload} payload: {error}")]
    Yaml {
        payload: &'static str,
        error: serde_yaml_ng::Error,
    },
    /// A key needed to act on the payload is absent (yaml.v2 cannot tell absent from zero).
    #[error("{payload} payload: key `{key}` is missing or has its zero value")]
    Missing {
        payload: &'static str,
        key: &'static str,
    },
    /// A key this project does not know (in an operator's file, where Go would ignore it and
    /// the operator would believe it took effect).
    #[error("{payload}: unknown key `{key}` (known here: {known})")]
    UnknownKey {
        payload: &'static str,
        key: String,
        known: String,
    },
    /// A key's value cannot be used.
    #[error("{payload} payload: key `{key}` {problem}: {value:?}")]
    Invalid {
        payload: &'static str,
        key: &'static str,
        value: String,
        problem: &'static str,
    },
    /// ciao-cnci-agent refuses a tunnel whose key is not derived from its subnet.
    #[error(
        "{payload} payload: subnet_key {subnet_key} does not match tenant_subnet {tenant_subnet} \
         (expected {expected}, the little-endian u32 of its network address)"
    )]
    SubnetKeyMismatch {
        payload: &'static str,
        tenant_subnet: String,
        subnet_key: i64,
        expected: u32,
    },
}

/// ciao's `subnet_key`: the subnet's network address read as a little-endian u32
/// (172.16.1.0 → 69804). Used as the GRE key by Go launchers and checked by the Go CNCI.
pub fn subnet_key(network: Ipv4Addr) -> u32 {
    u32::from_le_bytes(network.octets())
}

/// Whether `s` is a UUID in the canonical lower-case hyphenated form. The scheduler forwards by
/// exact string match against that form, so anything else is silently dropped there.
pub fn is_canonical_uuid(s: &str) -> bool {
    Uuid::parse_str(s).is_ok_and(|u| u.hyphenated().to_string() == s)
}

/// An IPv4 subnet as payloads carry it (`172.16.1.0/24`), host bits cleared like Go's
/// `net.ParseCIDR` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Subnet {
    network: Ipv4Addr,
    prefix_len: u8,
}

impl Ipv4Subnet {
    /// The subnet of `addr` with `prefix_len` bits; `None` when `prefix_len > 32`.
    pub fn new(addr: Ipv4Addr, prefix_len: u8) -> Option<Self> {
        if prefix_len > 32 {
            return None;
        }
        let mask = u32::MAX
            .checked_shl(32 - u32::from(prefix_len))
            .unwrap_or(0);
        Some(Ipv4Subnet {
            network: Ipv4Addr::from(u32::from(addr) & mask),
            prefix_len,
        })
    }

    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// [`subnet_key`] of the network address.
    pub fn subnet_key(&self) -> u32 {
        subnet_key(self.network)
    }
}

/// The text is not `a.b.c.d/len` with `len` ≤ 32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not an IPv4 CIDR")]
pub struct ParseSubnetError;

impl FromStr for Ipv4Subnet {
    type Err = ParseSubnetError;

    fn from_str(s: &str) -> Result<Self, ParseSubnetError> {
        let (addr, len) = s.split_once('/').ok_or(ParseSubnetError)?;
        if len.is_empty() || len.len() > 2 || !len.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseSubnetError);
        }
        let addr: Ipv4Addr = addr.parse().map_err(|_| ParseSubnetError)?;
        let len = len.parse().map_err(|_| ParseSubnetError)?;
        Ipv4Subnet::new(addr, len).ok_or(ParseSubnetError)
    }
}

impl fmt::Display for Ipv4Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

// ---- checks shared by the typed accessors -------------------------------------------------

fn required<'a>(
    payload: &'static str,
    key: &'static str,
    value: &'a str,
) -> Result<&'a str, PayloadError> {
    if value.is_empty() {
        Err(PayloadError::Missing { payload, key })
    } else {
        Ok(value)
    }
}

pub(crate) fn invalid(
    payload: &'static str,
    key: &'static str,
    value: &str,
    problem: &'static str,
) -> PayloadError {
    PayloadError::Invalid {
        payload,
        key,
        value: value.to_owned(),
        problem,
    }
}

/// A UUID key, in the canonical form the scheduler routes by.
pub(crate) fn uuid_key(
    payload: &'static str,
    key: &'static str,
    value: &str,
) -> Result<Uuid, PayloadError> {
    let uuid = Uuid::parse_str(required(payload, key, value)?)
        .map_err(|_| invalid(payload, key, value, "is not a UUID"))?;
    if uuid.hyphenated().to_string() != value {
        return Err(invalid(
            payload,
            key,
            value,
            "is not a lower-case hyphenated UUID, the only form the scheduler routes by",
        ));
    }
    Ok(uuid)
}

pub(crate) fn ipv4_key(
    payload: &'static str,
    key: &'static str,
    value: &str,
) -> Result<Ipv4Addr, PayloadError> {
    required(payload, key, value)?
        .parse()
        .map_err(|_| invalid(payload, key, value, "is not an IPv4 address"))
}

pub(crate) fn subnet_of_key(
    payload: &'static str,
    key: &'static str,
    value: &str,
) -> Result<Ipv4Subnet, PayloadError> {
    required(payload, key, value)?
        .parse()
        .map_err(|_| invalid(payload, key, value, "is not an IPv4 CIDR"))
}
