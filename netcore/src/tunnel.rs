//! Tunnel kinds between a compute node and its tenant's CNCI.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The encapsulation of a tenant subnet's tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TunnelKind {
    /// VXLAN over UDP 4789: the default, and the only kind this project's test kernel has.
    #[default]
    Vxlan,
    /// Ethernet over GRE with a key, as upstream ciao.
    Gretap,
    /// Geneve over UDP 6081.
    Geneve,
}

impl TunnelKind {
    /// Bytes of encapsulation added to each inner Ethernet frame over an IPv4 underlay.
    pub fn overhead(self) -> u32 {
        match self {
            // outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14
            TunnelKind::Vxlan => 50,
            // outer IPv4 20 + GRE 4 + key 4 + inner Ethernet 14
            TunnelKind::Gretap => 42,
            // outer IPv4 20 + UDP 8 + Geneve 8 (no options) + inner Ethernet 14
            TunnelKind::Geneve => 50,
        }
    }

    /// Largest valid id: 24-bit VNI, or the 32-bit GRE key.
    pub fn max_id(self) -> u32 {
        match self {
            TunnelKind::Vxlan | TunnelKind::Geneve => crate::ids::MAX_VNI,
            TunnelKind::Gretap => u32::MAX,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TunnelKind::Vxlan => "vxlan",
            TunnelKind::Gretap => "gretap",
            TunnelKind::Geneve => "geneve",
        }
    }
}

impl fmt::Display for TunnelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TunnelKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "vxlan" => Ok(TunnelKind::Vxlan),
            "gretap" | "gre" => Ok(TunnelKind::Gretap),
            "geneve" => Ok(TunnelKind::Geneve),
            other => Err(format!(
                "unknown tunnel kind {other:?} (expected vxlan, gretap or geneve)"
            )),
        }
    }
}
