//! Tunnel kinds between a compute node and its tenant's CNCI.
//!
//! The kind itself is [`ciao_types::TunnelKind`], shared with the SSNTP payloads.

pub use ciao_types::{ParseTunnelKindError, TunnelKind};
