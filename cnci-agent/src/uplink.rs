//! The uplink's transfer network: a /31 from the shared address space (RFC 6598) that no
//! interface of the underlay namespace uses yet.

use std::net::Ipv4Addr;

use ipnet::{IpNet, Ipv4Net};
use netcore::kernel::Kernel;
use uuid::Uuid;

use crate::error::{Error, Result};

/// 100.64.0.0/10, where the transfer networks come from.
const UPLINK_POOL: u32 = 0x6440_0000;
/// The /31s in [`UPLINK_POOL`].
const UPLINK_PAIRS: u64 = 1 << 21;

/// A /31 for the uplink of CNCI `uuid` not used by any interface of the calling namespace.
pub fn allocate(uuid: Uuid) -> Result<Ipv4Net> {
    allocate_in(&mut netcore::netlink::Netlink::open()?, uuid)
}

/// [`allocate`] among the addresses `underlay` has.
pub fn allocate_in<K: Kernel>(underlay: &mut K, uuid: Uuid) -> Result<Ipv4Net> {
    let used: Vec<Ipv4Addr> = underlay
        .addresses(None)?
        .into_iter()
        .filter_map(|a| match a.net {
            IpNet::V4(n) => Some(n.addr()),
            IpNet::V6(_) => None,
        })
        .collect();
    first_free(uuid, &used)
}

/// The first /31 holding none of `used`, starting at a hash of the UUID (so a lost record
/// usually gets the same pair again).
pub fn first_free(uuid: Uuid, used: &[Ipv4Addr]) -> Result<Ipv4Net> {
    let start = netcore::ids::fnv64(&[uuid.as_bytes()]) % UPLINK_PAIRS;
    for step in 0..UPLINK_PAIRS {
        let pair = ((start + step) % UPLINK_PAIRS) as u32;
        let net = Ipv4Net::new(Ipv4Addr::from(UPLINK_POOL + pair * 2), 31)
            .map_err(|e| Error::Invalid(e.to_string()))?;
        if !used.iter().any(|a| net.contains(a)) {
            return Ok(net);
        }
    }
    Err(Error::Invalid(
        "no free uplink transfer network in 100.64.0.0/10".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_used_pair_is_skipped_and_the_choice_is_stable() {
        let uuid = Uuid::from_u128(0x1234);
        let first = first_free(uuid, &[]).expect("free");
        assert_eq!(first.prefix_len(), 31);
        assert!("100.64.0.0/10"
            .parse::<Ipv4Net>()
            .expect("pool")
            .contains(&first));
        assert_eq!(first_free(uuid, &[]).expect("again"), first);
        let next = first_free(uuid, &[first.addr()]).expect("next");
        assert_ne!(next, first);
        assert!(!next.contains(&first.addr()));
    }

    #[test]
    fn an_address_already_on_an_interface_is_not_handed_out() {
        let world = netcore::fake::FakeWorld::new();
        let mut k = world.kernel();
        let uuid = Uuid::from_u128(0x1234);
        let first = allocate_in(&mut k, uuid).expect("free");
        let lo = k.link_by_name("lo").expect("lookup").expect("lo");
        k.add_address(
            lo.index,
            IpNet::V4(Ipv4Net::new(first.addr(), 32).expect("net")),
        )
        .expect("address");
        let next = allocate_in(&mut k, uuid).expect("next");
        assert!(!next.contains(&first.addr()), "{next} holds {first}");
    }
}
