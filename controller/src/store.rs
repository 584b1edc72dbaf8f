//! The controller's store: every decision is one atomic, idempotent operation, persisted before
//! the caller acts on it.
//!
//! The trait is the contract a backend keeps (SQLite embedded, etcd later); the error is shared
//! so the admin API maps the same refusal to the same answer whatever the backend.

use std::net::Ipv4Addr;

use ciao_types::TunnelKind;
use ipnet::Ipv4Net;
use uuid::Uuid;

use crate::auto_subnet::TenantSubnets;
use crate::model::{
    AutoSlice, Cnci, CnciState, ComputeNode, NetworkNode, PublicIpAssignment, SubnetAssignment,
    Tenant, TenantSubnet,
};
use crate::pool::PublicPool;
use crate::security::forward::{Forward, ForwardProtocol, ForwardSpec, SshAccess, SshPolicy};
use crate::security::ingress_rule::{
    IngressAction, IngressRule, IngressRuleSpec, TenantIngressRules,
};
use crate::security::outcome::{IngressOutcome, NodeGroupsOutcome};
use crate::security::{RuleSpec, SecurityGroup, SecurityRule};

/// A refused operation (nothing was changed) or a failing backend.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unknown tenant {0}")]
    UnknownTenant(Uuid),
    #[error("tenant {0} is being deleted")]
    TenantDeleting(Uuid),
    #[error("unknown CNCI {0}")]
    UnknownCnci(Uuid),
    #[error("unknown network node {0}")]
    UnknownNetworkNode(Uuid),
    #[error("no connected network node with room for another CNCI")]
    NoNetworkNode,
    #[error("CNCI {cnci} cannot go from {from} to {to}")]
    CnciTransition {
        cnci: Uuid,
        from: CnciState,
        to: CnciState,
    },
    #[error("subnet {0} has host bits set (its network is {net})", net = .0.trunc())]
    SubnetNotNetwork(Ipv4Net),
    #[error("subnet {new} overlaps the tenant's subnet {existing}")]
    SubnetOverlap { new: Ipv4Net, existing: Ipv4Net },
    #[error("unknown subnet {cidr} of tenant {tenant}")]
    UnknownSubnet { tenant: Uuid, cidr: Ipv4Net },
    #[error("no free {0} tunnel id left")]
    TunnelIdsExhausted(TunnelKind),
    #[error("no free /{prefix} left for tenant {tenant} in tenant_subnets.range {range}")]
    AutoRangeExhausted {
        tenant: Uuid,
        range: Ipv4Net,
        prefix: u8,
    },
    #[error("address {address} is in none of tenant {tenant}'s subnets")]
    AddressOutsideSubnets { tenant: Uuid, address: Ipv4Addr },
    #[error("no public IP pool is configured")]
    NoPublicPool,
    #[error("every public IP pool is exhausted ({pools})")]
    PublicPoolExhausted { pools: String },
    #[error("public IP {public} is assigned to tenant {owner}, not to tenant {tenant}")]
    PublicIpNotOwned {
        public: Ipv4Addr,
        owner: Uuid,
        tenant: Uuid,
    },
    #[error("public IP pools {0} and {1} overlap")]
    PoolsOverlap(PublicPool, PublicPool),
    #[error("public IP {public} (tenant {tenant}) would be in no pool")]
    AssignedIpOutsidePools { public: Ipv4Addr, tenant: Uuid },
    #[error("invalid rule: {0}")]
    InvalidRule(String),
    #[error("invalid forward: {0}")]
    InvalidForward(String),
    #[error("invalid security group name {0:?}: use 1-64 letters, digits, '.', '_' or '-' (and not a UUID)")]
    InvalidGroupName(String),
    #[error("tenant {tenant} has no security group {group:?}")]
    UnknownGroup { tenant: Uuid, group: String },
    #[error("tenant {tenant} already has a security group named {name:?}")]
    GroupExists { tenant: Uuid, name: String },
    #[error("the default security group of tenant {0} cannot be deleted")]
    DefaultGroup(Uuid),
    #[error("security group {group:?} is the remote group of rule {rule} of group {by:?}: delete that rule first")]
    GroupInUse {
        group: String,
        rule: Uuid,
        by: String,
    },
    #[error("group {group:?} already has this rule: {existing}")]
    DuplicateRule { group: String, existing: Uuid },
    #[error("tenant {tenant} has no security rule {rule}")]
    UnknownRule { tenant: Uuid, rule: Uuid },
    #[error("invalid ingress rule: {0}")]
    InvalidIngressRule(String),
    #[error("tenant {tenant} has no ingress rule {rule}")]
    UnknownIngressRule { tenant: Uuid, rule: Uuid },
    #[error("tenant {tenant} has no forward {forward}")]
    UnknownForward { tenant: Uuid, forward: Uuid },
    #[error("{public}:{port}/{protocol} is already forwarded")]
    ForwardTaken {
        public: Ipv4Addr,
        protocol: ForwardProtocol,
        port: u16,
    },
    #[error("public IP {public} is in none of the public IP pools")]
    PublicIpOutsidePools { public: Ipv4Addr },
    #[error("public IP {public} cannot carry forwards: {why}")]
    PublicIpInUse { public: Ipv4Addr, why: String },
    #[error(
        "address {address} is the {what} address of subnet {cidr}: it cannot receive a forward"
    )]
    ReservedAddress {
        address: Ipv4Addr,
        cidr: Ipv4Net,
        what: &'static str,
    },
    #[error("tcp port {port} of the forward IP is both a forward and the SSH port of an address of subnet {cidr}")]
    SshForwardOverlap { port: u16, cidr: Ipv4Net },
    #[error("the SSH ports of subnet {cidr} (tenant {tenant}) do not fit below 65536: {size} ports from {base}")]
    SshPortsExhausted {
        tenant: Uuid,
        cidr: Ipv4Net,
        base: u32,
        size: u32,
    },
    #[error("store {path}: schema version {found} is newer than this controller's {supported}; use a newer controller")]
    SchemaTooNew {
        path: String,
        found: u32,
        supported: u32,
    },
    #[error("store {path} is not a ciao controller store: {why}")]
    NotAStore { path: String, why: String },
    #[error("store holds a value it cannot read: {0}")]
    Corrupt(String),
    #[error("store: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What a network node reports about itself when it connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkNodeReport {
    pub uuid: Uuid,
    pub underlay: Ipv4Addr,
    pub external_device: String,
    pub capacity: u32,
}

/// One workload port's membership of one security group, as its compute node reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMembership {
    pub node: Uuid,
    pub ip: Ipv4Addr,
    /// The group's name as the workload gave it (the tenant may not have such a group).
    pub group: String,
}

/// The controller's decisions and what it has learnt, behind one interface per backend.
///
/// Every method is one transaction: it either persists all it decides or nothing, and a
/// retried call with the same arguments returns the same answer without deciding again.
pub trait Store: Send + Sync {
    /// A network node connected (and reported itself): insert or update it as connected.
    fn network_node_connected(&self, report: &NetworkNodeReport) -> Result<NetworkNode>;
    /// A node's session ended. Unknown nodes are ignored (the scheduler tells of every role).
    fn node_disconnected(&self, node: Uuid) -> Result<()>;
    /// A compute node connected: insert or update it as connected.
    fn compute_node_connected(&self, node: Uuid, underlay: Ipv4Addr) -> Result<ComputeNode>;

    /// The tenant's live CNCI, placing one (state `requested`) on the connected network node
    /// with the fewest live CNCIs if it has none, and creating the tenant if it is new.
    fn ensure_cnci(&self, tenant: Uuid) -> Result<Cnci>;

    /// A compute node's request for one of its tenant subnets: the tenant's CNCI (placed if
    /// needed) and the subnet's tunnel kind and id (assigned if new, `kind` being the default
    /// for a new subnet). Records that `compute_node` hosts the subnet.
    fn request_subnet(
        &self,
        tenant: Uuid,
        cidr: Ipv4Net,
        kind: TunnelKind,
        compute_node: Uuid,
    ) -> Result<SubnetAssignment>;

    /// A subnet for a workload of `tenant` on `compute_node` that named none: this node's slice
    /// of one of the tenant's automatic subnets (see [`TenantSubnets`]), the same one on every
    /// call. A new automatic subnet gets its tunnel id (`kind`) like [`Store::request_subnet`].
    fn auto_subnet(
        &self,
        tenant: Uuid,
        compute_node: Uuid,
        plan: &TenantSubnets,
        kind: TunnelKind,
    ) -> Result<AutoSlice>;
    /// Every compute node's slice of the tenant's automatic subnets.
    fn auto_slices(&self, tenant: Uuid) -> Result<Vec<AutoSlice>>;

    /// The last workload of the subnet left `compute_node` (TenantRemoved). The subnet and its
    /// tunnel id stay assigned; a retiring CNCI may stop once no compute node hosts its tenant.
    fn subnet_left(&self, tenant: Uuid, cidr: Ipv4Net, compute_node: Uuid) -> Result<()>;

    /// Move a CNCI to `state` (see [`CnciState::may_become`]), with the underlay address it
    /// announced, if any. A CNCI of a deleted tenant that becomes `gone` takes the tenant, its
    /// subnets and its public IPs with it.
    fn set_cnci_state(
        &self,
        cnci: Uuid,
        state: CnciState,
        underlay: Option<Ipv4Addr>,
    ) -> Result<Cnci>;

    /// Delete a tenant: it takes no new request, and its CNCI retires (it stops once no
    /// workload of the tenant remains). A tenant without a live CNCI is forgotten at once.
    fn delete_tenant(&self, tenant: Uuid) -> Result<()>;

    /// Replace the public IP pools (the operator's config at start). Refused if an assigned
    /// address would be in no pool, or if two pools overlap.
    fn set_public_pools(&self, pools: &[PublicPool]) -> Result<()>;
    /// Give `private` (inside one of the tenant's subnets) a public address, or return the one
    /// it has.
    fn assign_public_ip(&self, tenant: Uuid, private: Ipv4Addr) -> Result<PublicIpAssignment>;
    /// Take back exactly `public` from `tenant`. `None` if it was not assigned (a retried
    /// release), an error if another tenant holds it.
    fn release_public_ip(
        &self,
        tenant: Uuid,
        public: Ipv4Addr,
    ) -> Result<Option<PublicIpAssignment>>;

    fn network_nodes(&self) -> Result<Vec<NetworkNode>>;
    fn compute_nodes(&self) -> Result<Vec<ComputeNode>>;
    fn tenants(&self) -> Result<Vec<Tenant>>;
    fn tenant(&self, tenant: Uuid) -> Result<Option<Tenant>>;
    /// Every CNCI the store remembers, gone ones included (until their tenant is forgotten).
    fn cncis(&self) -> Result<Vec<Cnci>>;
    /// One CNCI by its UUID, gone or not (an indexed lookup: the daemon asks per frame).
    fn cnci(&self, cnci: Uuid) -> Result<Option<Cnci>>;
    /// The tenant's live CNCI (any state but gone), if it has one.
    fn cnci_of(&self, tenant: Uuid) -> Result<Option<Cnci>>;
    /// The CNCIs placed on one network node, gone ones included.
    fn cncis_on(&self, network_node: Uuid) -> Result<Vec<Cnci>>;
    fn subnets(&self, tenant: Uuid) -> Result<Vec<TenantSubnet>>;
    /// The compute nodes hosting a tenant subnet.
    fn subnet_nodes(&self, tenant: Uuid, cidr: Ipv4Net) -> Result<Vec<Uuid>>;
    fn public_ips(&self) -> Result<Vec<PublicIpAssignment>>;
    fn public_pools(&self) -> Result<Vec<PublicPool>>;
    /// Retiring CNCIs whose tenant has no workload left: the ones to stop now.
    fn cncis_to_stop(&self) -> Result<Vec<Cnci>>;

    /// The cluster's SSH policy (the operator's config at start): the default for tenants that
    /// never chose, and where new SSH port blocks start (existing blocks keep their ports).
    fn set_ssh_policy(&self, policy: SshPolicy) -> Result<()>;
    /// A known tenant's security groups, by name.
    fn security_groups(&self, tenant: Uuid) -> Result<Vec<SecurityGroup>>;
    /// One group of the tenant, by id or name.
    fn security_group(&self, tenant: Uuid, group: &str) -> Result<SecurityGroup>;
    /// A new, empty group (a name is unique within the tenant).
    fn create_security_group(
        &self,
        tenant: Uuid,
        name: &str,
        description: &str,
    ) -> Result<SecurityGroup>;
    /// Delete a group and its rules; refused for `default` and while another group's rule
    /// names it as its remote group.
    fn delete_security_group(&self, tenant: Uuid, group: &str) -> Result<SecurityGroup>;
    /// Every rule of every group of the tenant.
    fn security_rules(&self, tenant: Uuid) -> Result<Vec<SecurityRule>>;
    /// Add a checked rule to `group`; `remote_group` (id or name) is resolved in the tenant.
    /// A rule equal to one the group has is refused.
    fn add_security_rule(
        &self,
        tenant: Uuid,
        group: &str,
        spec: RuleSpec,
        remote_group: Option<&str>,
    ) -> Result<SecurityRule>;
    fn delete_security_rule(&self, tenant: Uuid, rule: Uuid) -> Result<SecurityRule>;

    fn forwards(&self, tenant: Uuid) -> Result<Vec<Forward>>;
    /// Add a checked forward on the tenant's forward IP (taken from the pool if it has none),
    /// or return the equal one it has (a retried call).
    fn add_forward(&self, tenant: Uuid, spec: &ForwardSpec) -> Result<Forward>;
    /// Remove exactly one forward; the forward IP goes back to the pool when neither a
    /// forward nor SSH access uses it.
    fn delete_forward(&self, tenant: Uuid, forward: Uuid) -> Result<Forward>;
    /// Turn the tenant's SSH access on (blocks for every subnet, the forward IP) or off.
    fn set_ssh(&self, tenant: Uuid, enabled: bool) -> Result<SshAccess>;
    fn ssh_access(&self, tenant: Uuid) -> Result<SshAccess>;

    /// A known tenant's ingress rules in order (first match wins) and its default action.
    fn ingress_rules(&self, tenant: Uuid) -> Result<TenantIngressRules>;
    /// Insert a checked rule at `position` (1 = first; `None`: last), moving later ones down.
    fn add_ingress_rule(
        &self,
        tenant: Uuid,
        spec: &IngressRuleSpec,
        position: Option<u32>,
    ) -> Result<IngressRule>;
    /// Remove exactly one rule; the later ones move up.
    fn delete_ingress_rule(&self, tenant: Uuid, rule: Uuid) -> Result<IngressRule>;
    /// What enters when no rule matches.
    fn set_ingress_default(
        &self,
        tenant: Uuid,
        default: IngressAction,
    ) -> Result<TenantIngressRules>;

    /// Keep a tenant's CNCI's answer to its TenantIngress (replacing the previous one).
    fn record_ingress_outcome(&self, outcome: &IngressOutcome) -> Result<()>;
    /// The tenant's CNCI's last answer, if any.
    fn ingress_outcome(&self, tenant: Uuid) -> Result<Option<IngressOutcome>>;

    /// Note the generation of the SecurityGroupsUpdate sent to `node` for `tenant`.
    fn record_groups_sent(&self, node: Uuid, tenant: Uuid, generation: u64) -> Result<()>;
    /// Keep `node`'s answer for `tenant` (`refused`: why it could not load the table).
    fn record_groups_answer(
        &self,
        node: Uuid,
        tenant: Uuid,
        generation: u64,
        refused: Option<&str>,
        at: u64,
    ) -> Result<()>;
    /// What was sent to each node for `tenant` and what each answered.
    fn groups_outcomes(&self, tenant: Uuid) -> Result<Vec<NodeGroupsOutcome>>;

    /// Replace what compute node `node` reported of `tenant`'s ports and their groups (its
    /// whole list); true if that changed anything.
    fn set_port_groups(
        &self,
        node: Uuid,
        tenant: Uuid,
        ports: &[(Ipv4Addr, Vec<String>)],
    ) -> Result<bool>;
    /// Every reported membership of `tenant`'s ports, on every node.
    fn port_groups(&self, tenant: Uuid) -> Result<Vec<PortMembership>>;
    /// The next security-group snapshot generation: grows for the life of the store.
    fn next_sg_generation(&self) -> Result<u64>;
}
