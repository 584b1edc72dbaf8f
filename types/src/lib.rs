//! Value types shared by ciao's protocol crate (`ssntp`) and its kernel crate (`netcore`).
//!
//! They live here so that neither of those depends on the other: the wire protocol must not pull
//! in netlink, and the kernel side must not pull in TLS.

mod tunnel;

pub use tunnel::{ParseTunnelKindError, TunnelKind, MAX_VNI};
