//! What the hub needs of the host beside the kernel trait: named network namespaces and the
//! agent's nft tables. [`System`] is the real host; tests use a fake (`fake_host.rs`).

use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;

use ipnet::Ipv4Net;

use crate::error::Result;
use crate::nft;

/// Named namespaces and nft tables, by namespace (`None`: the underlay, the caller's own).
pub trait HubHost: Send + Sync {
    /// Opens the named namespace, creating it (loopback up) if it does not exist.
    fn ensure_netns(&self, name: &str) -> Result<OwnedFd>;
    /// Opens the named namespace if it exists; never creates it.
    fn open_netns(&self, name: &str) -> Result<Option<OwnedFd>>;
    /// Deletes the named namespace and with it its links; a missing one is not an error.
    fn delete_netns(&self, name: &str) -> Result<()>;
    /// Replaces table `table` with `ruleset` in one transaction.
    fn replace_table(&self, ns: Option<BorrowedFd<'_>>, table: &str, ruleset: &str) -> Result<()>;
    /// Ensures the node-wide underlay table and adds `uplink`'s elements and the underlay
    /// networks to it; deletes `legacy`, an earlier build's table of this CNCI, if it exists.
    fn add_uplink(&self, uplink: &nft::Uplink, nets: &[Ipv4Net], legacy: &str) -> Result<()>;
    /// Removes exactly `uplink`'s elements from the node-wide underlay table.
    fn remove_uplink(&self, uplink: &nft::Uplink) -> Result<()>;
    /// Deletes table `table` if it exists.
    fn delete_table(&self, ns: Option<BorrowedFd<'_>>, table: &str) -> Result<()>;
}

/// The real host: `/run/netns` as `ip netns` keeps it, and `nft`.
pub struct System;

impl HubHost for System {
    fn ensure_netns(&self, name: &str) -> Result<OwnedFd> {
        Ok(netcore::netns::ensure_named(name)?)
    }

    fn open_netns(&self, name: &str) -> Result<Option<OwnedFd>> {
        match netcore::netns::open(&Path::new(netcore::netns::NAMED_DIR).join(name)) {
            Ok(fd) => Ok(Some(fd)),
            Err(netcore::Error::NetnsGone(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn delete_netns(&self, name: &str) -> Result<()> {
        Ok(netcore::netns::delete_named(name)?)
    }

    fn replace_table(&self, ns: Option<BorrowedFd<'_>>, table: &str, ruleset: &str) -> Result<()> {
        nft::replace_table(ns, table, ruleset)
    }

    fn add_uplink(&self, uplink: &nft::Uplink, nets: &[Ipv4Net], legacy: &str) -> Result<()> {
        nft::add_uplink(None, uplink, nets, legacy)
    }

    fn remove_uplink(&self, uplink: &nft::Uplink) -> Result<()> {
        nft::remove_uplink(None, uplink)
    }

    fn delete_table(&self, ns: Option<BorrowedFd<'_>>, table: &str) -> Result<()> {
        nft::delete_table(ns, table)
    }
}
