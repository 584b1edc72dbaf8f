//! Derived identities: ciao's MAC and subnet key, tunnel ids, link names and aliases.
//!
//! Everything here is a pure function of its inputs, so every compute node derives the same
//! values for the same tenant subnet without talking to anyone.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use uuid::Uuid;

/// Largest VXLAN / Geneve network identifier (24 bits).
pub const MAX_VNI: u32 = ciao_types::MAX_VNI;

/// The tenant VNIC MAC ciao derives from an IPv4 address: `02:00:a:b:c:d`.
///
/// The CNCI's DHCP server relies on it to answer a VM statelessly.
pub fn mac_from_ip(ip: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = ip.octets();
    [0x02, 0x00, a, b, c, d]
}

/// The inverse of [`mac_from_ip`], for MACs in ciao's scheme only.
pub fn ip_from_mac(mac: [u8; 6]) -> Option<Ipv4Addr> {
    (mac[0] == 0x02 && mac[1] == 0x00).then(|| Ipv4Addr::new(mac[2], mac[3], mac[4], mac[5]))
}

/// ciao's `subnet_key`: the subnet's network address read as a little-endian u32.
pub fn subnet_key(subnet: Ipv4Net) -> u32 {
    u32::from_le_bytes(subnet.network().octets())
}

/// FNV-1a, 64 bit: a stable, dependency-free hash for names and ids (not for security).
pub fn fnv64(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            hash ^= 0xff;
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        for byte in *part {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// The default tunnel id of a tenant subnet: 24 bits of a hash of (tenant, subnet), never 0.
///
/// Two tenants with the same subnet get different ids, and every CN derives the same id for the
/// same tenant subnet, which the CNCI's single VXLAN device per subnet needs.
pub fn derive_tunnel_id(tenant: Uuid, subnet: Ipv4Net) -> u32 {
    let h = fnv64(&[tenant.as_bytes(), subnet.to_string().as_bytes()]);
    let folded = (h ^ (h >> 24) ^ (h >> 48)) as u32 & MAX_VNI;
    if folded == 0 {
        1
    } else {
        folded
    }
}

/// The node-local key of a tenant subnet, used for state file names.
pub fn net_key(tenant: Uuid, subnet: Ipv4Net) -> String {
    format!("{}_{}_{}", tenant, subnet.network(), subnet.prefix_len())
}

fn short_hash(parts: &[&[u8]], hex_digits: usize) -> String {
    let full = format!("{:016x}", fnv64(parts));
    full[..hex_digits].to_string()
}

/// Name of the subnet bridge on a node: `cb` + 10 hex digits (12 bytes, under the 15-byte limit).
pub fn bridge_name(tenant: Uuid, subnet: Ipv4Net) -> String {
    format!(
        "cb{}",
        short_hash(&[tenant.as_bytes(), subnet.to_string().as_bytes()], 10)
    )
}

/// A stable MAC for a subnet bridge (locally administered, outside ciao's `02:00` VNIC scheme).
///
/// A bridge without a set MAC takes its lowest port's, so it would change as workloads come and go.
pub fn bridge_mac(tenant: Uuid, subnet: Ipv4Net) -> [u8; 6] {
    let h = fnv64(&[
        b"bridge-mac",
        tenant.as_bytes(),
        subnet.to_string().as_bytes(),
    ])
    .to_be_bytes();
    [0x0e, h[0], h[1], h[2], h[3], h[4]]
}

/// Name of the subnet's tunnel device on a node: `ct` + 10 hex digits.
pub fn tunnel_name(tenant: Uuid, subnet: Ipv4Net) -> String {
    format!(
        "ct{}",
        short_hash(&[tenant.as_bytes(), subnet.to_string().as_bytes()], 10)
    )
}

/// Name of a VNIC's host-side veth: `cv` + 12 hex digits of (net, owner, ifname).
pub fn host_veth_name(net_key: &str, owner: &str, ifname: &str) -> String {
    format!(
        "cv{}",
        short_hash(
            &[net_key.as_bytes(), owner.as_bytes(), ifname.as_bytes()],
            12
        )
    )
}

/// Prefix of every alias this system sets; a link with it is ours.
pub const ALIAS_PREFIX: &str = "ciao:";

/// The longest alias the kernel stores (IFALIASZ minus the terminating NUL).
pub const MAX_ALIAS_LEN: usize = 255;

/// The short node id carried in every alias: the first 8 hex digits of the node's UUID, so that
/// two state directories on one namespace (a mistake, refused by `claim`) or leftovers of an
/// old node identity never take each other's links for their own.
pub fn node_tag(node: Uuid) -> String {
    node.simple().to_string()[..8].to_string()
}

/// Alias of a subnet bridge: `ciao:<node>:bridge:<net>`.
pub fn bridge_alias(node: &str, net_key: &str) -> String {
    format!("{ALIAS_PREFIX}{node}:bridge:{net_key}")
}

/// Alias of a subnet tunnel: `ciao:<node>:tunnel:<net>`.
pub fn tunnel_alias(node: &str, net_key: &str) -> String {
    format!("{ALIAS_PREFIX}{node}:tunnel:{net_key}")
}

/// Alias of a VNIC's host-side link: `ciao:<node>:vnic:<net>:<vnic>`. A VNIC key too long for
/// the kernel's alias limit (container ids may have 256 characters) is replaced by `#` and a
/// hash of it; the record keeps the full key.
pub fn vnic_alias(node: &str, net_key: &str, vnic_key: &str) -> String {
    let full = format!("{ALIAS_PREFIX}{node}:vnic:{net_key}:{vnic_key}");
    if full.len() <= MAX_ALIAS_LEN {
        return full;
    }
    format!(
        "{ALIAS_PREFIX}{node}:vnic:{net_key}:#{:016x}",
        fnv64(&[vnic_key.as_bytes()])
    )
}

/// True if `alias` labels the object that `expected` (a current alias) names: either exactly,
/// or in the format before node ids (`ciao:<kind>:...`), which links made by earlier versions
/// still carry.
pub fn alias_names(alias: &str, expected: &str) -> bool {
    alias == expected || legacy_of(expected).is_some_and(|legacy| alias == legacy)
}

fn legacy_of(alias: &str) -> Option<String> {
    let rest = alias.strip_prefix(ALIAS_PREFIX)?;
    let (_, body) = rest.split_once(':')?;
    Some(format!("{ALIAS_PREFIX}{body}"))
}

/// What an alias says a link is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AliasKind {
    Bridge { net: String },
    Tunnel { net: String },
    Vnic { net: String, vnic: String },
}

/// A parsed alias: whose it is (`None` for the format before node ids) and what it labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alias {
    pub node: Option<String>,
    pub kind: AliasKind,
}

fn is_node_tag(text: &str) -> bool {
    text.len() == 8 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Parses an alias set by this system; `None` for anything else.
pub fn parse_alias(alias: &str) -> Option<Alias> {
    let rest = alias.strip_prefix(ALIAS_PREFIX)?;
    let (first, after) = rest.split_once(':')?;
    let (node, kind, rest) = if is_node_tag(first) {
        let (kind, rest) = after.split_once(':')?;
        (Some(first.to_string()), kind, rest)
    } else {
        (None, first, after)
    };
    let kind = match kind {
        "bridge" => AliasKind::Bridge { net: rest.into() },
        "tunnel" => AliasKind::Tunnel { net: rest.into() },
        "vnic" => {
            let (net, vnic) = rest.split_once(':')?;
            AliasKind::Vnic {
                net: net.into(),
                vnic: vnic.into(),
            }
        }
        _ => return None,
    };
    Some(Alias { node, kind })
}

/// Formats a MAC as `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parses `aa:bb:cc:dd:ee:ff` (or with dashes).
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = text.split([':', '-']);
    for byte in &mut out {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn subnet_key_matches_ciao() {
        // reference/ssntp.md §7.1: 172.16.1.0 -> 69804.
        let subnet: Ipv4Net = "172.16.1.0/24".parse().expect("subnet");
        assert_eq!(subnet_key(subnet), 69804);
    }

    #[test]
    fn mac_matches_ciao() {
        assert_eq!(
            format_mac(mac_from_ip(Ipv4Addr::new(172, 16, 1, 5))),
            "02:00:ac:10:01:05"
        );
    }

    #[test]
    fn tunnel_ids_differ_per_tenant_for_the_same_subnet() {
        let subnet: Ipv4Net = "172.16.1.0/24".parse().expect("subnet");
        let a = derive_tunnel_id(Uuid::from_u128(1), subnet);
        let b = derive_tunnel_id(Uuid::from_u128(2), subnet);
        assert_ne!(a, b);
        assert_eq!(a, derive_tunnel_id(Uuid::from_u128(1), subnet), "stable");
    }

    #[test]
    fn aliases_round_trip() {
        let net = net_key(Uuid::from_u128(7), "10.0.0.0/24".parse().expect("subnet"));
        let node = node_tag(Uuid::from_u128(0xabcd_ef12_0000_0000_0000_0000_0000_0001));
        assert_eq!(node, "abcdef12");
        assert_eq!(
            parse_alias(&bridge_alias(&node, &net)),
            Some(Alias {
                node: Some(node.clone()),
                kind: AliasKind::Bridge { net: net.clone() }
            })
        );
        assert_eq!(
            parse_alias(&vnic_alias(&node, &net, "abc:eth0")),
            Some(Alias {
                node: Some(node.clone()),
                kind: AliasKind::Vnic {
                    net: net.clone(),
                    vnic: "abc:eth0".into()
                }
            })
        );
        let legacy = format!("ciao:tunnel:{net}");
        assert_eq!(
            parse_alias(&legacy),
            Some(Alias {
                node: None,
                kind: AliasKind::Tunnel { net: net.clone() }
            })
        );
        assert!(alias_names(&legacy, &tunnel_alias(&node, &net)));
        assert!(!alias_names(
            &tunnel_alias("00000000", &net),
            &tunnel_alias(&node, &net)
        ));
        assert_eq!(parse_alias("docker0"), None);
    }

    #[test]
    fn long_vnic_keys_are_hashed_into_the_alias() {
        let net = net_key(Uuid::from_u128(7), "10.0.0.0/24".parse().expect("subnet"));
        for len in [1usize, 150, 188, 189, 245, 256] {
            let key = format!("{}:eth0", "a".repeat(len));
            let alias = vnic_alias("abcdef12", &net, &key);
            assert!(alias.len() <= MAX_ALIAS_LEN, "{len}: {}", alias.len());
        }
        let a = vnic_alias("abcdef12", &net, &format!("{}:eth0", "a".repeat(256)));
        let b = vnic_alias("abcdef12", &net, &format!("{}:eth0", "b".repeat(256)));
        assert_ne!(a, b);
    }

    proptest! {
        #[test]
        fn mac_ip_round_trip(raw in any::<u32>()) {
            let ip = Ipv4Addr::from(raw);
            prop_assert_eq!(ip_from_mac(mac_from_ip(ip)), Some(ip));
            prop_assert_eq!(parse_mac(&format_mac(mac_from_ip(ip))), Some(mac_from_ip(ip)));
        }

        #[test]
        fn tunnel_id_is_a_valid_vni(t in any::<u128>(), raw in any::<u32>(), len in 8u8..=30) {
            let subnet = Ipv4Net::new(Ipv4Addr::from(raw), len).expect("prefix").trunc();
            let id = derive_tunnel_id(Uuid::from_u128(t), subnet);
            prop_assert!((1..=MAX_VNI).contains(&id));
        }

        #[test]
        fn names_fit_the_kernel_limit(t in any::<u128>(), owner in "[a-z0-9]{1,64}", ifname in "[a-z0-9]{1,15}") {
            let subnet: Ipv4Net = "10.1.0.0/16".parse().expect("subnet");
            let tenant = Uuid::from_u128(t);
            prop_assert!(bridge_name(tenant, subnet).len() <= 15);
            prop_assert!(tunnel_name(tenant, subnet).len() <= 15);
            prop_assert!(host_veth_name(&net_key(tenant, subnet), &owner, &ifname).len() <= 15);
        }

        #[test]
        fn parse_mac_never_panics(s in ".{0,40}") {
            let _ = parse_mac(&s);
        }
    }
}
