//! The CNCI agent: one tenant's concentrator on a network node.
//!
//! It is the hub of the tenant's overlay: compute nodes tunnel each tenant subnet to it (their
//! TenantAdded events arrive over SSNTP), and it switches between them, routes between the
//! tenant's subnets, NATs to the outside, maps public IPs and serves DHCP, all inside a network
//! namespace of the tenant's own.

pub mod cli;
pub mod daemon;
pub mod dhcp;
pub mod error;
pub mod handlers;
pub mod hub;
pub mod ingress;
pub mod ingress_rules;
pub mod names;
pub mod nft;
pub mod node_table;
pub mod reaper;
pub mod register;
pub mod show;
pub mod state;
pub mod uplink;
pub mod validate;

pub use error::{Error, ErrorList, Result};
