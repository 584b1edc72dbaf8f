//! Per-node IPAM of a tenant subnet: caller-chosen addresses or round-robin from the node range.
//!
//! Reservations are files created with O_EXCL under the node lock, so an address is never given
//! twice, and a reservation belongs to a VNIC key that GC and recovery can check.

use std::net::Ipv4Addr;

use crate::config::SubnetConfig;
use crate::error::{Error, Result};
use crate::state::Locked;

/// The first and last address this node may allocate from.
pub fn allocation_range(cfg: &SubnetConfig) -> (Ipv4Addr, Ipv4Addr) {
    match cfg.node_range {
        Some(r) => (r.start, r.end),
        None => {
            let net = u32::from(cfg.subnet.network());
            let bcast = u32::from(cfg.subnet.broadcast());
            (Ipv4Addr::from(net + 1), Ipv4Addr::from(bcast - 1))
        }
    }
}

/// Checks that `ip` may be given to a workload at all.
pub fn check_requested(cfg: &SubnetConfig, ip: Ipv4Addr) -> Result<()> {
    if !cfg.is_host(ip) {
        return Err(Error::invalid(
            "ip",
            format!("{ip} is not a host address of {}", cfg.subnet),
        ));
    }
    if ip == cfg.gateway() {
        return Err(Error::invalid(
            "ip",
            format!("{ip} is the subnet's gateway (the CNCI)"),
        ));
    }
    Ok(())
}

/// The field name in errors about allowed extra addresses; front ends name theirs.
pub const ALLOWED_FIELD: &str = "allowed addresses";

/// Checks the extra addresses a workload may send from: host addresses of the subnet (not
/// 0.0.0.0, the network or broadcast address), never the gateway.
pub fn check_allowed(cfg: &SubnetConfig, allowed: &[Ipv4Addr]) -> Result<()> {
    for ip in allowed {
        if !cfg.is_host(*ip) {
            return Err(Error::invalid(
                ALLOWED_FIELD,
                format!("{ip} is not a host address of {}", cfg.subnet),
            ));
        }
        if *ip == cfg.gateway() {
            return Err(Error::invalid(
                ALLOWED_FIELD,
                format!("{ip} is the subnet's gateway (the CNCI): no workload may send from it"),
            ));
        }
    }
    Ok(())
}

/// Owner prefix of an address held for a workload that is not attached yet (a front end with its
/// own IPAM calls, like Docker's, asks for an address before it attaches anything). GC, reconcile
/// and the removal of a subnet leave holds alone; the front end releases them.
pub const HOLD_PREFIX: &str = "hold:";

/// True if a reservation's owner is a hold.
pub fn is_hold(owner: &str) -> bool {
    owner.starts_with(HOLD_PREFIX)
}

/// The reservation owner of a hold by `holder`.
pub fn hold_owner(holder: &str) -> String {
    format!("{HOLD_PREFIX}{holder}")
}

/// Reserves an address for `owner`: `requested` if given, otherwise the next free one.
/// A requested address held as `hold:<owner>` passes to `owner`.
pub fn reserve(
    state: &Locked<'_>,
    cfg: &SubnetConfig,
    net: &str,
    owner: &str,
    requested: Option<Ipv4Addr>,
) -> Result<Ipv4Addr> {
    if let Some(ip) = requested {
        check_requested(cfg, ip)?;
        if state.reserve_ip(net, ip, owner)? {
            return Ok(ip);
        }
        if state.ip_owner(net, ip)? == Some(hold_owner(owner)) {
            state.set_ip_owner(net, ip, owner)?;
            return Ok(ip);
        }
        let holder = state.ip_owner(net, ip)?.unwrap_or_default();
        return Err(Error::Conflict(format!(
            "address {ip} is already in use on this node by {holder}"
        )));
    }
    let (start, end) = allocation_range(cfg);
    let (start, end) = (u32::from(start), u32::from(end));
    let gateway = u32::from(cfg.gateway());
    let size = u64::from(end - start) + 1;
    let next = |ip: u32| if ip >= end { start } else { ip + 1 };
    let mut candidate = match state.ipam_cursor(net)? {
        Some(last) if (start..=end).contains(&u32::from(last)) => next(u32::from(last)),
        _ => start,
    };
    if candidate == gateway {
        candidate = next(candidate);
    }
    state.ensure_ip_dir(net)?;
    // Usually the address after the cursor is free: one file creation.
    if candidate != gateway && state.try_reserve_ip(net, Ipv4Addr::from(candidate), owner)? {
        state.set_ipam_cursor(net, Ipv4Addr::from(candidate))?;
        return Ok(Ipv4Addr::from(candidate));
    }
    // Otherwise read the reservations once and take the next free one.
    let taken = state.reserved_ips(net)?;
    for _ in 0..size {
        let ip = Ipv4Addr::from(candidate);
        if candidate != gateway && !taken.contains(&ip) && state.try_reserve_ip(net, ip, owner)? {
            state.set_ipam_cursor(net, ip)?;
            return Ok(ip);
        }
        candidate = next(candidate);
    }
    Err(Error::Conflict(format!(
        "no free address left in {}..={} of {} on this node",
        Ipv4Addr::from(start),
        Ipv4Addr::from(end),
        cfg.subnet
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AddrRange, Cnci};
    use crate::state::StateDir;
    use crate::tunnel::TunnelKind;
    use proptest::prelude::*;
    use std::collections::HashSet;
    use uuid::Uuid;

    fn cfg(range: Option<(u8, u8)>) -> SubnetConfig {
        SubnetConfig {
            tenant: Uuid::from_u128(1),
            subnet: "10.5.0.0/28".parse().expect("subnet"),
            cnci: Some(Cnci {
                uuid: Uuid::from_u128(2),
                ip: Ipv4Addr::new(192, 0, 2, 1),
            }),
            tunnel_kind: TunnelKind::Vxlan,
            tunnel_id: None,
            node_range: range.map(|(a, b)| AddrRange {
                start: Ipv4Addr::new(10, 5, 0, a),
                end: Ipv4Addr::new(10, 5, 0, b),
            }),
            gateway: None,
            mtu: None,
            underlay_device: None,
        }
    }

    #[test]
    fn allocates_every_host_but_the_gateway_then_reports_exhaustion() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::open(dir.path()).expect("state");
        let locked = state.lock().expect("lock");
        let c = cfg(None);
        let mut seen = HashSet::new();
        for i in 0..13 {
            let ip = reserve(&locked, &c, "n", &format!("o{i}"), None).expect("free address");
            assert_ne!(ip, c.gateway());
            assert!(c.is_host(ip));
            assert!(seen.insert(ip), "duplicate {ip}");
        }
        assert!(matches!(
            reserve(&locked, &c, "n", "late", None),
            Err(Error::Conflict(_))
        ));
        // Releasing one makes exactly that one available again.
        locked.release_ips_of("n", "o4", None).expect("release");
        let again = reserve(&locked, &c, "n", "late", None).expect("reuse");
        assert_eq!(
            locked.ip_owner("n", again).expect("owner").as_deref(),
            Some("late")
        );
    }

    #[test]
    fn requested_addresses_are_checked_and_exclusive() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::open(dir.path()).expect("state");
        let locked = state.lock().expect("lock");
        let c = cfg(Some((8, 12)));
        let ip = Ipv4Addr::new(10, 5, 0, 3);
        assert_eq!(
            reserve(&locked, &c, "n", "a", Some(ip)).expect("given ip"),
            ip
        );
        // The same owner retrying gets it again; another owner does not.
        assert_eq!(reserve(&locked, &c, "n", "a", Some(ip)).expect("retry"), ip);
        assert!(matches!(
            reserve(&locked, &c, "n", "b", Some(ip)),
            Err(Error::Conflict(_))
        ));
        for bad in [[10, 5, 0, 0], [10, 5, 0, 15], [10, 5, 0, 1], [10, 6, 0, 3]] {
            assert!(matches!(
                reserve(&locked, &c, "n", "c", Some(Ipv4Addr::from(bad))),
                Err(Error::Invalid { .. })
            ));
        }
        // Allocation stays inside the node range.
        for i in 0..5 {
            let got = reserve(&locked, &c, "n", &format!("r{i}"), None).expect("in range");
            assert!((8..=12).contains(&got.octets()[3]), "{got}");
        }
        assert!(reserve(&locked, &c, "n", "r5", None).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn random_reserve_release_never_duplicates(ops in proptest::collection::vec((any::<bool>(), 0u8..20), 1..60)) {
            let dir = tempfile::tempdir().expect("tempdir");
            let state = StateDir::open(dir.path()).expect("state");
            let locked = state.lock().expect("lock");
            let c = cfg(None);
            let mut held: std::collections::HashMap<u8, Ipv4Addr> = Default::default();
            for (add, who) in ops {
                let owner = format!("o{who}");
                if add && !held.contains_key(&who) {
                    if let Ok(ip) = reserve(&locked, &c, "n", &owner, None) {
                        prop_assert!(!held.values().any(|h| *h == ip));
                        held.insert(who, ip);
                    } else {
                        prop_assert_eq!(held.len(), 13);
                    }
                } else if let Some(ip) = held.remove(&who) {
                    locked.release_ips_of("n", &owner, Some(ip)).expect("release");
                }
            }
            prop_assert_eq!(locked.reservations("n").expect("list").len(), held.len());
        }
    }
}
