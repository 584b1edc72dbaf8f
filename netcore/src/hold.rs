//! Address holds: IPAM for front ends whose protocol allocates an address before it attaches.
//!
//! Docker's IPAM driver answers `RequestAddress` before `CreateEndpoint` names the endpoint, and
//! `ReleaseAddress` comes after `DeleteEndpoint`. A hold keeps such an address out of everyone
//! else's reach (CNI, VM and Docker workloads of a subnet share one address space) in between;
//! [`Node::attach`] takes over a hold named after the VNIC it attaches.

use std::net::Ipv4Addr;

use crate::attach::Node;
use crate::config::SubnetConfig;
use crate::error::{Error, Result};
use crate::ipam::{self, hold_owner};

impl<K: crate::kernel::Kernel> Node<K> {
    /// Holds `requested` (or the next free address of the node range) for `holder`. An address
    /// already reserved is refused even to its own holder: each hold is one allocation.
    pub fn hold_address(
        &mut self,
        cfg: &SubnetConfig,
        holder: &str,
        requested: Option<Ipv4Addr>,
    ) -> Result<Ipv4Addr> {
        cfg.validate()?;
        let (locked, _) = self.lock_and_recover()?;
        let key = cfg.net_key();
        if let Some(ip) = requested {
            if let Some(owner) = locked.ip_owner(&key, ip)? {
                return Err(Error::Conflict(format!(
                    "address {ip} is already in use on this node by {owner}"
                )));
            }
        }
        ipam::reserve(&locked, cfg, &key, &hold_owner(holder), requested)
    }

    /// Passes a hold from `from` to `to`; succeeds if `to` already holds it.
    pub fn rename_hold(&mut self, net_key: &str, ip: Ipv4Addr, from: &str, to: &str) -> Result<()> {
        let (locked, _) = self.lock_and_recover()?;
        let (from, to) = (hold_owner(from), hold_owner(to));
        match locked.ip_owner(net_key, ip)? {
            Some(owner) if owner == to => Ok(()),
            Some(owner) if owner == from => locked.set_ip_owner(net_key, ip, &to),
            Some(owner) => Err(Error::Conflict(format!(
                "address {ip} is held by {owner}, not {from}"
            ))),
            None => Err(Error::Conflict(format!("address {ip} is not held"))),
        }
    }

    /// Releases `ip` if `holder` holds it; returns whether it did. Anyone else's is left alone.
    pub fn release_hold(&mut self, net_key: &str, ip: Ipv4Addr, holder: &str) -> Result<bool> {
        let (locked, _) = self.lock_and_recover()?;
        if locked.ip_owner(net_key, ip)? == Some(hold_owner(holder)) {
            locked.release_ip(net_key, ip)?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Every reservation of a subnet as (address, owner), holds included.
    pub fn reservations(&mut self, net_key: &str) -> Result<Vec<(Ipv4Addr, String)>> {
        let (locked, _) = self.lock_and_recover()?;
        locked.reservations(net_key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Cnci;
    use crate::config::NodeConfig;
    use uuid::Uuid;

    fn cfg() -> SubnetConfig {
        SubnetConfig::new(
            Uuid::from_u128(1),
            "10.6.0.0/29".parse().expect("subnet"),
            Cnci {
                uuid: Uuid::from_u128(2),
                ip: Ipv4Addr::new(192, 0, 2, 1),
            },
        )
    }

    #[test]
    fn holds_are_exclusive_renamed_taken_over_and_released() {
        let dir = tempfile::tempdir().expect("tempdir");
        let Ok(mut node) = Node::open(&NodeConfig {
            state_dir: dir.path().into(),
        }) else {
            // Netlink sockets are available to every user; only a sandbox without them skips.
            eprintln!("skipped: holds: no netlink socket");
            return;
        };
        let c = cfg();
        let key = c.net_key();
        let ip = node.hold_address(&c, "docker", None).expect("hold");
        assert_eq!(ip, Ipv4Addr::new(10, 6, 0, 2));
        assert!(matches!(
            node.hold_address(&c, "docker", Some(ip)),
            Err(Error::Conflict(_))
        ));
        assert!(matches!(
            node.hold_address(&c, "other", Some(ip)),
            Err(Error::Conflict(_))
        ));
        node.rename_hold(&key, ip, "docker", "ep1:eth0")
            .expect("rename");
        node.rename_hold(&key, ip, "docker", "ep1:eth0")
            .expect("rename is idempotent");
        // The VNIC named by the hold takes it over.
        let locked = node.state.lock().expect("lock");
        let got = ipam::reserve(&locked, &c, &key, "ep1:eth0", Some(ip)).expect("take over");
        assert_eq!(got, ip);
        assert_eq!(
            locked.ip_owner(&key, ip).expect("owner").as_deref(),
            Some("ep1:eth0")
        );
        drop(locked);
        assert!(!node.release_hold(&key, ip, "docker").expect("not a hold"));
        let other = node.hold_address(&c, "docker", None).expect("next");
        assert!(node.release_hold(&key, other, "docker").expect("released"));
        assert_eq!(node.reservations(&key).expect("list").len(), 1);
    }
}
