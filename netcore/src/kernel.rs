//! What the core asks of the kernel, as one trait: links, addresses, routes, FDB and proxy
//! neighbours, sysctls, taps, handles in other namespaces, the host firewall and the ports'
//! anti-spoofing guards.
//!
//! [`Netlink`] implements it for real. The recording fake (`fake::FakeKernel`, cargo feature
//! `fake`) implements it in memory, so the logic above it (attach, teardown, crash recovery,
//! reconcile, the hub) is tested without root and in milliseconds. The methods are those of the
//! typed `Netlink` API, one for one; a handle lives in one network namespace.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{BorrowedFd, RawFd};

use ipnet::IpNet;

use crate::antispoof::{self, PortGuard};
use crate::error::{Error, Result};
use crate::netlink::tap::TapOwner;
use crate::netlink::{Address, FdbEntry, Link, LinkChange, Netlink, NewLink, Route, RouteLookup};

/// The kernel of one network namespace, as the core uses it.
pub trait Kernel: Sized {
    // Links.

    /// Creates a link and returns it as created; EEXIST if the name is taken.
    fn create_link(&mut self, spec: &NewLink) -> Result<Link>;
    /// Applies several changes to a link in one request.
    fn change_link(&mut self, index: u32, change: &LinkChange) -> Result<()>;
    /// Deletes a link; deleting one end of a veth removes both.
    fn delete_link(&mut self, index: u32) -> Result<()>;
    /// One link by name; `None` if there is none.
    fn link_by_name(&mut self, name: &str) -> Result<Option<Link>>;
    /// One link by index; `None` if there is none.
    fn link_by_index(&mut self, index: u32) -> Result<Option<Link>>;
    /// Every link of the namespace.
    fn links(&mut self) -> Result<Vec<Link>>;
    fn set_up(&mut self, index: u32, up: bool) -> Result<()>;
    fn set_mtu(&mut self, index: u32, mtu: u32) -> Result<()>;
    /// Sets IFLA_IFALIAS, where the system keeps each link's identity.
    fn set_alias(&mut self, index: u32, alias: &str) -> Result<()>;
    /// Enslaves a link to a bridge (`master = 0` releases it).
    fn set_master(&mut self, index: u32, master: u32) -> Result<()>;
    fn set_mac(&mut self, index: u32, mac: [u8; 6]) -> Result<()>;
    /// Hairpin mode of a bridge port.
    fn set_hairpin(&mut self, index: u32, on: bool) -> Result<()>;
    /// Renames a link (it must be down).
    fn set_name(&mut self, index: u32, name: &str) -> Result<()>;
    /// Puts a link into a link group.
    fn set_group(&mut self, index: u32, group: u32) -> Result<()>;
    /// Deletes every link of a group in one request.
    fn delete_group(&mut self, group: u32) -> Result<()>;
    /// Moves a link into the namespace open at `netns`.
    fn move_to_netns(&mut self, index: u32, netns: RawFd) -> Result<()>;

    // Addresses and routes.

    /// Adds an address; an identical existing one is not an error.
    fn add_address(&mut self, index: u32, net: IpNet) -> Result<()>;
    fn delete_address(&mut self, index: u32, net: IpNet) -> Result<()>;
    /// The addresses of one link, or of every link.
    fn addresses(&mut self, index: Option<u32>) -> Result<Vec<Address>>;
    fn add_route(&mut self, route: &Route) -> Result<()>;
    /// Adds a route unless one to the same destination exists; returns whether it added it.
    fn add_route_new(&mut self, route: &Route) -> Result<bool>;
    fn delete_route(&mut self, route: &Route) -> Result<()>;
    /// The route the kernel would take to `dst`.
    fn route_get(&mut self, dst: IpAddr) -> Result<RouteLookup>;
    /// The routes through one link.
    fn routes(&mut self, oif: u32) -> Result<Vec<Route>>;

    // Forwarding database and proxy neighbours.

    fn fdb_append(&mut self, index: u32, mac: [u8; 6], dst: Option<IpAddr>) -> Result<()>;
    fn fdb_delete(&mut self, index: u32, mac: [u8; 6], dst: Option<IpAddr>) -> Result<()>;
    fn fdb_entries(&mut self, index: u32) -> Result<Vec<FdbEntry>>;
    fn add_proxy_neighbour(&mut self, index: u32, ip: Ipv4Addr) -> Result<()>;
    fn delete_proxy_neighbour(&mut self, index: u32, ip: Ipv4Addr) -> Result<()>;

    // Sysctls and taps, in this handle's namespace.

    /// Writes `/proc/sys/net/<key>` (e.g. `ipv4/ip_forward`).
    fn write_sysctl(&mut self, key: &str, value: &str) -> Result<()>;
    /// Creates a persistent tap (rtnetlink cannot).
    fn create_tap(&mut self, name: &str, owner: TapOwner) -> Result<()>;

    // Namespaces.

    /// A handle on the namespace open at `ns` (a workload's), without moving the caller.
    fn open_in(&mut self, ns: BorrowedFd<'_>) -> Result<Self>;
    /// True if `ns` is this handle's own namespace.
    fn is_own_netns(&mut self, ns: BorrowedFd<'_>) -> Result<bool>;

    // The host firewall (see [`crate::firewall`]).

    /// Lets traffic between ports of `bridge` through docker's FORWARD policy; returns whether
    /// a rule is in place.
    fn allow_bridge(&mut self, bridge: &str) -> Result<bool>;
    /// Removes what `allow_bridge` added; nothing to do is not an error.
    fn revoke_bridge(&mut self, bridge: &str) -> Result<()>;

    // Anti-spoofing (see [`crate::antispoof`]).

    /// Guards a workload port: its name's elements in the guard sets become `guard`'s
    /// (creating the guard table on first use). Called before the port carries traffic.
    fn guard_port(&mut self, guard: &PortGuard) -> Result<()>;
    /// Removes a port's guard elements; none is not an error.
    fn unguard_port(&mut self, port: &str) -> Result<()>;
    /// Every port with guard elements: its guard, or `None` if they are incomplete.
    fn guarded_ports(&mut self) -> Result<BTreeMap<String, Option<PortGuard>>>;
    /// Drops new ingress to a just-attached filtered port until the node daemon loads its
    /// security groups ([`crate::secgroups::mark_pending`]).
    fn sg_pending(&mut self, bridge: &str, ip: std::net::Ipv4Addr) -> Result<()> {
        let _ = (bridge, ip);
        Ok(())
    }
    /// Takes a detached port's address out of the pending set (none there is no error).
    fn sg_unpending(&mut self, bridge: &str, ip: std::net::Ipv4Addr) -> Result<()> {
        let _ = (bridge, ip);
        Ok(())
    }
    /// Deletes guard tables of older layouts (their ports are guarded by the current one by
    /// then); returns their names.
    fn remove_old_guard_tables(&mut self) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    // Conveniences built on the above.

    /// Turns IPv6 off on a link (`ipv6/conf/<name>/disable_ipv6`). Host-side bridge ports are
    /// pure L2: without this each gets link-local addresses and routes (slowing every later
    /// link change) and the node would speak DAD and MLD inside tenant networks. A kernel
    /// without IPv6 has nothing to turn off.
    fn disable_ipv6(&mut self, name: &str) -> Result<()> {
        match self.write_sysctl(&format!("ipv6/conf/{name}/disable_ipv6"), "1") {
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Ok(())
            }
            other => other,
        }
    }

    /// Deletes a link by name; `false` if there was none.
    fn delete_link_by_name(&mut self, name: &str) -> Result<bool> {
        match self.link_by_name(name)? {
            Some(link) => match self.delete_link(link.index) {
                Ok(()) => Ok(true),
                Err(e) if e.is_not_found() => Ok(false),
                Err(e) => Err(e),
            },
            None => Ok(false),
        }
    }
}

impl Kernel for Netlink {
    fn create_link(&mut self, spec: &NewLink) -> Result<Link> {
        Netlink::create_link(self, spec)
    }
    fn change_link(&mut self, index: u32, change: &LinkChange) -> Result<()> {
        Netlink::change_link(self, index, change)
    }
    fn delete_link(&mut self, index: u32) -> Result<()> {
        Netlink::delete_link(self, index)
    }
    fn link_by_name(&mut self, name: &str) -> Result<Option<Link>> {
        Netlink::link_by_name(self, name)
    }
    fn link_by_index(&mut self, index: u32) -> Result<Option<Link>> {
        Netlink::link_by_index(self, index)
    }
    fn links(&mut self) -> Result<Vec<Link>> {
        Netlink::links(self)
    }
    fn set_up(&mut self, index: u32, up: bool) -> Result<()> {
        Netlink::set_up(self, index, up)
    }
    fn set_mtu(&mut self, index: u32, mtu: u32) -> Result<()> {
        Netlink::set_mtu(self, index, mtu)
    }
    fn set_alias(&mut self, index: u32, alias: &str) -> Result<()> {
        Netlink::set_alias(self, index, alias)
    }
    fn set_master(&mut self, index: u32, master: u32) -> Result<()> {
        Netlink::set_master(self, index, master)
    }
    fn set_mac(&mut self, index: u32, mac: [u8; 6]) -> Result<()> {
        Netlink::set_mac(self, index, mac)
    }
    fn set_hairpin(&mut self, index: u32, on: bool) -> Result<()> {
        Netlink::set_hairpin(self, index, on)
    }
    fn set_name(&mut self, index: u32, name: &str) -> Result<()> {
        Netlink::set_name(self, index, name)
    }
    fn set_group(&mut self, index: u32, group: u32) -> Result<()> {
        Netlink::set_group(self, index, group)
    }
    fn delete_group(&mut self, group: u32) -> Result<()> {
        Netlink::delete_group(self, group)
    }
    fn move_to_netns(&mut self, index: u32, netns: RawFd) -> Result<()> {
        Netlink::move_to_netns(self, index, netns)
    }
    fn add_address(&mut self, index: u32, net: IpNet) -> Result<()> {
        Netlink::add_address(self, index, net)
    }
    fn delete_address(&mut self, index: u32, net: IpNet) -> Result<()> {
        Netlink::delete_address(self, index, net)
    }
    fn addresses(&mut self, index: Option<u32>) -> Result<Vec<Address>> {
        Netlink::addresses(self, index)
    }
    fn add_route(&mut self, route: &Route) -> Result<()> {
        Netlink::add_route(self, route)
    }
    fn add_route_new(&mut self, route: &Route) -> Result<bool> {
        Netlink::add_route_new(self, route)
    }
    fn delete_route(&mut self, route: &Route) -> Result<()> {
        Netlink::delete_route(self, route)
    }
    fn route_get(&mut self, dst: IpAddr) -> Result<RouteLookup> {
        Netlink::route_get(self, dst)
    }
    fn routes(&mut self, oif: u32) -> Result<Vec<Route>> {
        Netlink::routes(self, oif)
    }
    fn fdb_append(&mut self, index: u32, mac: [u8; 6], dst: Option<IpAddr>) -> Result<()> {
        Netlink::fdb_append(self, index, mac, dst)
    }
    fn fdb_delete(&mut self, index: u32, mac: [u8; 6], dst: Option<IpAddr>) -> Result<()> {
        Netlink::fdb_delete(self, index, mac, dst)
    }
    fn fdb_entries(&mut self, index: u32) -> Result<Vec<FdbEntry>> {
        Netlink::fdb_entries(self, index)
    }
    fn add_proxy_neighbour(&mut self, index: u32, ip: Ipv4Addr) -> Result<()> {
        Netlink::add_proxy_neighbour(self, index, ip)
    }
    fn delete_proxy_neighbour(&mut self, index: u32, ip: Ipv4Addr) -> Result<()> {
        Netlink::delete_proxy_neighbour(self, index, ip)
    }
    fn write_sysctl(&mut self, key: &str, value: &str) -> Result<()> {
        let path = format!("/proc/sys/net/{key}");
        self.run_here(|| {
            std::fs::write(&path, value).map_err(|e| Error::io(format!("write {path}"), e))
        })
    }
    fn create_tap(&mut self, name: &str, owner: TapOwner) -> Result<()> {
        self.run_here(|| crate::netlink::tap::create_tap(name, owner))
    }
    fn open_in(&mut self, ns: BorrowedFd<'_>) -> Result<Self> {
        Netlink::open_in(ns)
    }
    fn is_own_netns(&mut self, ns: BorrowedFd<'_>) -> Result<bool> {
        match self.netns_fd() {
            Some(own) => crate::netns::same(ns, own),
            None => crate::netns::is_current(ns),
        }
    }
    fn allow_bridge(&mut self, bridge: &str) -> Result<bool> {
        crate::firewall::allow_bridge(bridge)
    }
    fn revoke_bridge(&mut self, bridge: &str) -> Result<()> {
        crate::firewall::revoke_bridge(bridge)
    }
    fn guard_port(&mut self, guard: &PortGuard) -> Result<()> {
        antispoof::guard(self.nft()?, guard)
    }
    fn unguard_port(&mut self, port: &str) -> Result<()> {
        antispoof::unguard(self.nft()?, port)
    }
    fn guarded_ports(&mut self) -> Result<BTreeMap<String, Option<PortGuard>>> {
        antispoof::list(self.nft()?)
    }
    fn sg_pending(&mut self, bridge: &str, ip: std::net::Ipv4Addr) -> Result<()> {
        crate::secgroups::mark_pending(self.nft()?, bridge, ip)
    }
    fn remove_old_guard_tables(&mut self) -> Result<Vec<String>> {
        antispoof::remove_old_tables(self.nft()?)
    }
    fn sg_unpending(&mut self, bridge: &str, ip: std::net::Ipv4Addr) -> Result<()> {
        crate::secgroups::unmark_pending(self.nft()?, bridge, ip)
    }
}
