//! The tunnel kind between a compute node and its tenant's CNCI: one type for configuration,
//! node state, SSNTP payloads and the CNCI's records.

use std::fmt;
use std::str::FromStr;

/// Largest VXLAN or Geneve network identifier (24 bits).
pub const MAX_VNI: u32 = (1 << 24) - 1;

/// The encapsulation of a tenant subnet's tunnel.
///
/// Its text form (`vxlan`, `gretap`, `geneve`) is the same in every place it is written:
/// configuration, state files and SSNTP's `tunnel_kind` extension key. Parsing accepts exactly
/// those three names, so a value that one component accepts every other accepts too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TunnelKind {
    /// VXLAN over UDP 4789: the default, and the only kind this project's test kernel has.
    #[default]
    Vxlan,
    /// Ethernet over GRE with a key, as upstream ciao (and what a Go peer means by absence).
    Gretap,
    /// Geneve over UDP 6081.
    Geneve,
}

impl TunnelKind {
    /// Every kind, for exhaustive parsing and tests.
    pub const ALL: [TunnelKind; 3] = [TunnelKind::Vxlan, TunnelKind::Gretap, TunnelKind::Geneve];

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

    /// Largest valid id: the 24-bit VNI, or the 32-bit GRE key.
    pub fn max_id(self) -> u32 {
        match self {
            TunnelKind::Vxlan | TunnelKind::Geneve => MAX_VNI,
            TunnelKind::Gretap => u32::MAX,
        }
    }

    /// The text form.
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

/// The text is not `vxlan`, `gretap` or `geneve`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown tunnel_kind {0:?}, expected vxlan, gretap or geneve")]
pub struct ParseTunnelKindError(pub String);

impl FromStr for TunnelKind {
    type Err = ParseTunnelKindError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TunnelKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| ParseTunnelKindError(s.to_owned()))
    }
}

impl serde::Serialize for TunnelKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A kind we do not know is an error rather than a silent default: building the wrong tunnel
/// type would fail far from the cause.
impl<'de> serde::Deserialize<'de> for TunnelKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <String as serde::Deserialize>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips_and_is_the_wire_form() {
        for kind in TunnelKind::ALL {
            assert_eq!(kind.as_str().parse::<TunnelKind>(), Ok(kind));
            let json = serde_json::to_string(&kind).expect("serialize");
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            assert_eq!(
                serde_json::from_str::<TunnelKind>(&json).expect("deserialize"),
                kind
            );
        }
        assert_eq!(TunnelKind::default(), TunnelKind::Vxlan);
    }

    #[test]
    fn only_the_three_names_parse() {
        for bad in ["gre", "GRETAP", "ipip", "", " vxlan"] {
            let err = bad.parse::<TunnelKind>().expect_err(bad);
            assert!(err.to_string().contains("tunnel_kind"), "{err}");
            assert!(serde_json::from_str::<TunnelKind>(&format!("{bad:?}")).is_err());
        }
    }

    #[test]
    fn overhead_and_id_range() {
        assert_eq!(TunnelKind::Vxlan.overhead(), 50);
        assert_eq!(TunnelKind::Gretap.overhead(), 42);
        assert_eq!(TunnelKind::Geneve.overhead(), 50);
        assert_eq!(TunnelKind::Vxlan.max_id(), 0xff_ffff);
        assert_eq!(TunnelKind::Geneve.max_id(), 0xff_ffff);
        assert_eq!(TunnelKind::Gretap.max_id(), u32::MAX);
    }
}
