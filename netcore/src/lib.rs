//! The shared core of ciao networking on a compute node.
//!
//! Front ends (the CNI plugin, the Docker plugin, the QEMU hooks) translate their protocol into
//! one call here — [`Node::attach`] or [`Node::detach`] — and back. Netlink, tunnels, IPAM,
//! node state, crash recovery and the TenantAdded/TenantRemoved reports live only here.

pub mod antispoof;
pub mod arp_nudge;
pub mod assign;
pub mod attach;
pub mod auto_subnet;
pub mod claim;
pub mod config;
mod crash;
pub mod error;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
pub mod firewall;
mod hold;
pub mod ids;
pub mod inspect;
pub mod ipam;
pub mod kernel;
pub mod maintain;
pub mod netlink;
pub mod netns;
pub mod nft;
#[cfg(test)]
mod node_tests;
mod qemu_tap;
mod refuse;
pub mod report;
pub mod secgroups;
pub mod state;
mod subnet;
mod teardown;
pub mod tunnel;

pub use assign::{AssignOutcome, Awaiting};
pub use attach::{Attachment, Node};
pub use config::{AddrRange, Cnci, NodeConfig, SubnetConfig, VnicId, VnicKind, VnicRequest};
pub use crash::ATTACH_STEPS;
pub use error::{Error, Failures, Result};
pub use kernel::Kernel;
pub use qemu_tap::TapAttachment;
pub use refuse::RefuseOutcome;
pub use report::{Report, ReportEvent};
pub use tunnel::TunnelKind;
