//! Names of the links the agent creates: deterministic, so a restarted agent finds its own
//! links again, and within the kernel's 15 bytes.
//!
//! Tunnel devices are created in the network node's underlay namespace, which several agents
//! share, before they move into the tenant's namespace; their names therefore hash the CNCI's
//! UUID in. Links that live only in the tenant namespace need no such care.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use netcore::ids::fnv64;
use uuid::Uuid;

/// Prefix of a tenant subnet's bridge (`sb<network hex><prefix>`).
pub const BRIDGE_PREFIX: &str = "sb";
/// Prefix of a subnet's multipoint VXLAN device.
pub const VXLAN_PREFIX: &str = "vh";
/// Prefix of a point-to-point (GRE tap, Geneve) device of one (subnet, CN).
pub const P2P_PREFIX: &str = "th";
/// The tenant side of the uplink to the network node.
pub const UPLINK_TENANT: &str = "uplink0";

fn hex12(parts: &[&[u8]]) -> String {
    format!("{:012x}", fnv64(parts) & 0xffff_ffff_ffff)
}

/// The bridge of `subnet` in the tenant namespace.
pub fn bridge(subnet: Ipv4Net) -> String {
    format!(
        "{BRIDGE_PREFIX}{:08x}{:02}",
        u32::from(subnet.network()),
        subnet.prefix_len()
    )
}

/// The name a removed subnet's bridge takes until it is deleted: unique (its ifindex), never a
/// subnet's name (`z` is not hex), and still `sb…`, so a restart reconcile finds it as stray.
pub fn condemned(index: u32) -> String {
    format!("{BRIDGE_PREFIX}z{index:x}")
}

/// The multipoint VXLAN device of `subnet`.
pub fn vxlan(cnci: Uuid, subnet: Ipv4Net) -> String {
    let net = subnet.to_string();
    format!(
        "{VXLAN_PREFIX}{}",
        hex12(&[cnci.as_bytes(), net.as_bytes()])
    )
}

/// The point-to-point tunnel device of `subnet` toward the CN at `node`.
pub fn p2p(cnci: Uuid, subnet: Ipv4Net, node: Ipv4Addr) -> String {
    let net = subnet.to_string();
    format!(
        "{P2P_PREFIX}{}",
        hex12(&[cnci.as_bytes(), net.as_bytes(), &node.octets()])
    )
}

/// The underlay side of the tenant's uplink veth.
pub fn uplink_underlay(cnci: Uuid) -> String {
    format!("cu{}", hex12(&[cnci.as_bytes()]))
}

/// The underlay table of one CNCI that builds before the node-wide table made
/// (`nft::underlay_table`); deleted on start and on destroy.
pub fn legacy_underlay_table(cnci: Uuid) -> String {
    format!("ciao_cnci_{}", hex12(&[cnci.as_bytes()]))
}

/// The agent's nftables table in the tenant namespace.
pub const TENANT_TABLE: &str = "ciao_tenant";

/// The default tenant namespace of a CNCI.
pub fn default_netns(cnci: Uuid) -> String {
    let id = cnci.simple().to_string();
    format!("cnci-{}", &id[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_the_kernel_and_differ_per_cnci() {
        let subnet: Ipv4Net = "172.16.1.0/24".parse().expect("subnet");
        let a = Uuid::from_u128(1);
        let b = Uuid::from_u128(2);
        assert_eq!(bridge(subnet), "sbac10010024");
        for name in [
            bridge(subnet),
            vxlan(a, subnet),
            p2p(a, subnet, Ipv4Addr::new(10, 0, 0, 1)),
            uplink_underlay(a),
            default_netns(a),
            condemned(u32::MAX),
        ] {
            assert!(name.len() <= 15, "{name} too long");
        }
        assert_ne!(vxlan(a, subnet), vxlan(b, subnet));
        assert!(condemned(7).starts_with(BRIDGE_PREFIX) && condemned(7) != bridge(subnet));
        assert_ne!(
            p2p(a, subnet, Ipv4Addr::new(10, 0, 0, 1)),
            p2p(a, subnet, Ipv4Addr::new(10, 0, 0, 2))
        );
    }
}
