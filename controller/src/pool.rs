//! A public IP pool: a CIDR block (`203.0.113.0/28`) or an inclusive range
//! (`198.51.100.10-198.51.100.20`), as the operator writes it in the config.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use ipnet::Ipv4Net;

/// One pool of public addresses. A CIDR block gives its host addresses (without the network
/// and broadcast addresses, except in a /31 or /32); a range gives every address in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublicPool {
    Cidr(Ipv4Net),
    Range { first: Ipv4Addr, last: Ipv4Addr },
}

/// Why a pool's text is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a pool: expected a CIDR block (203.0.113.0/28) or a range (198.51.100.10-198.51.100.20){1}")]
pub struct ParsePoolError(pub String, &'static str);

impl PublicPool {
    /// The first and last address handed out.
    pub fn bounds(self) -> (Ipv4Addr, Ipv4Addr) {
        match self {
            PublicPool::Range { first, last } => (first, last),
            PublicPool::Cidr(net) if net.prefix_len() >= 31 => (net.network(), net.broadcast()),
            PublicPool::Cidr(net) => (
                Ipv4Addr::from(u32::from(net.network()) + 1),
                Ipv4Addr::from(u32::from(net.broadcast()) - 1),
            ),
        }
    }

    pub fn contains(self, addr: Ipv4Addr) -> bool {
        let (first, last) = self.bounds();
        (first..=last).contains(&addr)
    }

    /// Whether the two pools share an address.
    pub fn overlaps(self, other: PublicPool) -> bool {
        let (a_first, a_last) = self.bounds();
        let (b_first, b_last) = other.bounds();
        a_first <= b_last && b_first <= a_last
    }

    /// Every address of the pool, in order.
    pub fn addresses(self) -> impl Iterator<Item = Ipv4Addr> {
        let (first, last) = self.bounds();
        (u32::from(first)..=u32::from(last)).map(Ipv4Addr::from)
    }
}

impl FromStr for PublicPool {
    type Err = ParsePoolError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let refuse = |why| ParsePoolError(text.to_owned(), why);
        if let Some((first, last)) = text.split_once('-') {
            let first: Ipv4Addr = first.trim().parse().map_err(|_| refuse(""))?;
            let last: Ipv4Addr = last.trim().parse().map_err(|_| refuse(""))?;
            if first > last {
                return Err(refuse(" (its first address is after its last)"));
            }
            return Ok(PublicPool::Range { first, last });
        }
        let net: Ipv4Net = text.parse().map_err(|_| refuse(""))?;
        if net.trunc() != net {
            return Err(refuse(" (the block has host bits set)"));
        }
        Ok(PublicPool::Cidr(net))
    }
}

impl fmt::Display for PublicPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublicPool::Cidr(net) => write!(f, "{net}"),
            PublicPool::Range { first, last } => write!(f, "{first}-{last}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(text: &str) -> PublicPool {
        text.parse().expect(text)
    }

    #[test]
    fn cidr_pool_hands_out_its_hosts() {
        let p = pool("203.0.113.0/30");
        let all: Vec<_> = p.addresses().collect();
        assert_eq!(
            all,
            [Ipv4Addr::new(203, 0, 113, 1), Ipv4Addr::new(203, 0, 113, 2)]
        );
        assert_eq!(pool("203.0.113.7/32").addresses().count(), 1);
        assert_eq!(pool("203.0.113.6/31").addresses().count(), 2);
        assert_eq!(p.to_string(), "203.0.113.0/30");
    }

    #[test]
    fn range_pool_is_inclusive() {
        let p = pool("198.51.100.10-198.51.100.12");
        assert_eq!(p.addresses().count(), 3);
        assert!(p.contains(Ipv4Addr::new(198, 51, 100, 12)));
        assert!(!p.contains(Ipv4Addr::new(198, 51, 100, 13)));
        assert_eq!(p.to_string(), "198.51.100.10-198.51.100.12");
    }

    #[test]
    fn overlap_is_by_address() {
        assert!(pool("10.0.0.0/24").overlaps(pool("10.0.0.200-10.0.1.5")));
        assert!(!pool("10.0.0.0/25").overlaps(pool("10.0.0.128/25")));
    }

    #[test]
    fn bad_pools_are_refused() {
        for bad in [
            "",
            "10.0.0.0/33",
            "10.0.0.1/24",
            "10.0.0.9-10.0.0.1",
            "a-b",
            "10.0.0.1",
        ] {
            let err = bad.parse::<PublicPool>().expect_err(bad);
            assert!(err.to_string().contains("is not a pool"), "{err}");
        }
    }
}
