//! Subnets the tenant did not choose (issue 12: "the subnet too may be left out, as in ciao"):
//! the operator's range, cut into the tenant's automatic subnets (`/prefix` blocks) and each of
//! those into per-compute-node slices (`/node_slice_prefix`), so two nodes never hand out the
//! same address without talking to each other.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// `[tenant_subnets]` of the controller's config, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantSubnets {
    /// Where automatic subnets come from.
    pub range: Ipv4Net,
    /// The size of one automatic subnet.
    pub prefix: u8,
    /// The size of one compute node's share of a subnet.
    pub node_slice_prefix: u8,
}

/// Address blocks that are no tenant's to use.
const RESERVED: &[(&str, [u8; 4], u8)] = &[
    ("this network", [0, 0, 0, 0], 8),
    ("loopback", [127, 0, 0, 0], 8),
    ("link-local", [169, 254, 0, 0], 16),
    ("multicast", [224, 0, 0, 0], 4),
    ("reserved (240/4)", [240, 0, 0, 0], 4),
];

impl Default for TenantSubnets {
    fn default() -> Self {
        TenantSubnets {
            range: Ipv4Net::new(Ipv4Addr::new(172, 16, 0, 0), 12).unwrap_or_default(),
            prefix: 24,
            node_slice_prefix: 27,
        }
    }
}

impl TenantSubnets {
    /// Checks the three values; the error names the key at fault (`range`, `prefix`,
    /// `node_slice_prefix`) and why.
    pub fn new(
        range: Ipv4Net,
        prefix: u8,
        node_slice_prefix: u8,
    ) -> Result<Self, (&'static str, String)> {
        if range.trunc() != range {
            return Err((
                "range",
                format!(
                    "{range} has host bits set (its network is {})",
                    range.trunc()
                ),
            ));
        }
        if let Some((name, _, _)) = RESERVED.iter().find(|(_, a, len)| {
            let reserved = Ipv4Net::new(Ipv4Addr::from(*a), *len).unwrap_or_default();
            reserved.contains(&range) || range.contains(&reserved)
        }) {
            return Err(("range", format!("{range} is in reserved space ({name})")));
        }
        if prefix < range.prefix_len() || prefix > 30 {
            return Err((
                "prefix",
                format!(
                    "/{prefix} does not fit in the range {range} (/{}../30)",
                    range.prefix_len()
                ),
            ));
        }
        if node_slice_prefix <= prefix || node_slice_prefix > 30 {
            return Err((
                "node_slice_prefix",
                format!(
                    "/{node_slice_prefix} must be longer than prefix /{prefix} and at most /30"
                ),
            ));
        }
        Ok(TenantSubnets {
            range,
            prefix,
            node_slice_prefix,
        })
    }

    /// The candidate automatic subnets, in order.
    pub fn blocks(&self) -> impl Iterator<Item = Ipv4Net> {
        self.range.subnets(self.prefix).into_iter().flatten()
    }

    /// The node slices of one automatic subnet, in order.
    pub fn slices(&self, subnet: Ipv4Net) -> impl Iterator<Item = Ipv4Net> {
        subnet.subnets(self.node_slice_prefix).into_iter().flatten()
    }
}

/// The addresses a node may give out from `slice` of `subnet`: the slice without the subnet's
/// network address, its gateway (first host) and its broadcast address.
pub fn slice_range(subnet: Ipv4Net, slice: Ipv4Net) -> (Ipv4Addr, Ipv4Addr) {
    let first_free = u32::from(subnet.network()) + 2;
    let last_free = u32::from(subnet.broadcast()) - 1;
    let start = u32::from(slice.network()).max(first_free);
    let end = u32::from(slice.broadcast()).min(last_free);
    (Ipv4Addr::from(start), Ipv4Addr::from(end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().expect("net")
    }

    #[test]
    fn bad_values_name_their_key() {
        let key = |r: &str, p, s| TenantSubnets::new(net(r), p, s).expect_err("refused").0;
        assert_eq!(key("172.16.0.1/12", 24, 27), "range");
        assert_eq!(key("127.0.0.0/16", 24, 27), "range");
        assert_eq!(key("0.0.0.0/0", 24, 27), "range");
        assert_eq!(key("172.16.0.0/24", 16, 27), "prefix");
        assert_eq!(key("172.16.0.0/12", 31, 32), "prefix");
        assert_eq!(key("172.16.0.0/12", 24, 24), "node_slice_prefix");
        assert_eq!(key("172.16.0.0/12", 24, 31), "node_slice_prefix");
        assert!(TenantSubnets::new(net("10.0.0.0/8"), 24, 27).is_ok());
    }

    #[test]
    fn slices_skip_network_gateway_and_broadcast() {
        let s = net("172.16.0.0/24");
        let r = |slice: &str| slice_range(s, net(slice));
        let a = |t: &str| t.parse::<Ipv4Addr>().expect("addr");
        assert_eq!(r("172.16.0.0/27"), (a("172.16.0.2"), a("172.16.0.31")));
        assert_eq!(r("172.16.0.32/27"), (a("172.16.0.32"), a("172.16.0.63")));
        assert_eq!(r("172.16.0.224/27"), (a("172.16.0.224"), a("172.16.0.254")));
        let plan = TenantSubnets::default();
        assert_eq!(plan.slices(s).count(), 8);
        assert_eq!(plan.blocks().count(), 4096);
    }
}
