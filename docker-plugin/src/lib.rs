//! Docker libnetwork remote NetworkDriver + IpamDriver for ciao tenant subnets.
//!
//! A thin front end over `netcore`: each Docker call becomes a record here and at most one call
//! of the shared core, which owns bridges, tunnels, IPAM and reports.

pub mod api;
pub mod auto;
pub mod error;
mod ipam;
pub mod options;
pub mod plugin;
pub mod server;
pub mod store;

pub use error::PluginError;
pub use plugin::Plugin;
