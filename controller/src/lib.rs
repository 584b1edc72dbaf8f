//! The controller's decisions and the store that persists them (issue 12, in progress).
//!
//! The controller places each tenant's CNCI on a network node, gives each tenant subnet a
//! cluster-unique tunnel id and hands out public IPs. Each decision is one transaction of a
//! [`Store`], written before it is acted on; [`SqliteStore`] is the embedded default, a
//! distributed backend (etcd) would be a second implementation of the same trait.

pub mod api;
pub mod auto_subnet;
pub mod config;
pub mod daemon;
pub mod model;
pub mod pool;
pub mod security;
pub mod sqlite;
pub mod store;

pub use auto_subnet::TenantSubnets;
pub use config::{ConfigError, ControllerConfig, SchedulerConfig};
pub use model::{
    AutoSlice, Cnci, CnciState, ComputeNode, NetworkNode, PublicIpAssignment, SubnetAssignment,
    Tenant, TenantState, TenantSubnet,
};
pub use pool::PublicPool;
pub use sqlite::{SqliteStore, STORE_FILE};
pub use store::{NetworkNodeReport, Store, StoreError};
