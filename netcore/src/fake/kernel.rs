//! [`Kernel`] for [`FakeKernel`]: every method records itself and works on the world's tables.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{BorrowedFd, RawFd};

use ipnet::IpNet;

use super::world::{errno, Namespace, NsId};
use super::{ns_of, FakeKernel, State};
use crate::antispoof::PortGuard;
use crate::error::{Error, Result};
use crate::kernel::Kernel;
use crate::netlink::tap::TapOwner;
use crate::netlink::{Address, FdbEntry, Link, LinkChange, LinkKind, NewLink, Route, RouteLookup};

fn here<'a>(s: &'a mut State, ns: NsId, op: &str) -> Result<&'a mut Namespace> {
    s.namespaces
        .get_mut(&ns)
        .ok_or_else(|| Error::Internal(format!("{op}: the namespace is gone")))
}

fn raw_ns(fd: RawFd) -> Result<NsId> {
    // SAFETY: the caller holds `fd` open for the duration of the call it passed it to.
    ns_of(unsafe { BorrowedFd::borrow_raw(fd) })
}

impl FakeKernel {
    /// The namespace this handle is in.
    pub fn ns(&self) -> NsId {
        self.ns
    }

    fn on<T>(
        &self,
        op: &'static str,
        detail: String,
        f: impl FnOnce(&mut Namespace) -> Result<T>,
    ) -> Result<T> {
        let ns = self.ns;
        self.world.call(ns, op, detail, |s| f(here(s, ns, op)?))
    }

    fn set(
        &self,
        op: &'static str,
        index: u32,
        detail: String,
        f: impl FnOnce(&mut super::world::FakeLink),
    ) -> Result<()> {
        self.on(op, format!("#{index} {detail}"), |ns| {
            f(ns.link_mut(op, index)?);
            Ok(())
        })
    }
}

impl Kernel for FakeKernel {
    fn create_link(&mut self, spec: &NewLink) -> Result<Link> {
        let me = self.ns;
        let op = "create_link";
        self.world.call(me, op, format!("{spec:?}"), |s| {
            let index = s.next_index;
            let mut link = here(s, me, op)?.new_link(op, index, spec)?;
            if let LinkKind::Veth(peer) = &spec.kind {
                let peer_ns = match peer.netns {
                    Some(fd) => raw_ns(fd)?,
                    None => me,
                };
                let far = here(s, peer_ns, op)?;
                let mut far_spec = NewLink::new(&peer.name, LinkKind::Bridge);
                far_spec.mtu = peer.mtu;
                far_spec.mac = peer.mac;
                far_spec.up = peer.up;
                let mut far_link = far.new_link(op, index + 1, &far_spec)?;
                if peer_ns == me && peer.name == spec.name {
                    return Err(errno(op, libc::EEXIST));
                }
                far_link.kind = "veth".into();
                far_link.data = None;
                far_link.peer = Some((me, index));
                link.peer = Some((peer_ns, index + 1));
                far.links.insert(index + 1, far_link);
                s.next_index += 1;
            }
            s.next_index += 1;
            let out = link.to_link();
            here(s, me, op)?.links.insert(index, link);
            Ok(out)
        })
    }

    fn change_link(&mut self, index: u32, change: &LinkChange) -> Result<()> {
        self.on("change_link", format!("#{index} {change:?}"), |ns| {
            ns.change("change_link", index, change)
        })
    }

    fn delete_link(&mut self, index: u32) -> Result<()> {
        let me = self.ns;
        let op = "delete_link";
        self.world.call(me, op, format!("#{index}"), |s| {
            let ns = here(s, me, op)?;
            ns.link_mut(op, index)?;
            if let Some((peer_ns, peer)) = ns.remove(index) {
                if let Some(other) = s.namespaces.get_mut(&peer_ns) {
                    other.remove(peer);
                }
            }
            Ok(())
        })
    }

    fn link_by_name(&mut self, name: &str) -> Result<Option<Link>> {
        self.on("link_by_name", name.into(), |ns| {
            Ok(ns.by_name(name).map(|l| l.to_link()))
        })
    }

    fn link_by_index(&mut self, index: u32) -> Result<Option<Link>> {
        self.on("link_by_index", format!("#{index}"), |ns| {
            Ok(ns.links.get(&index).map(|l| l.to_link()))
        })
    }

    fn links(&mut self) -> Result<Vec<Link>> {
        self.on("links", String::new(), |ns| {
            Ok(ns.links.values().map(|l| l.to_link()).collect())
        })
    }

    fn set_up(&mut self, index: u32, up: bool) -> Result<()> {
        self.set("set_up", index, format!("{up}"), |l| l.up = up)
    }

    fn set_mtu(&mut self, index: u32, mtu: u32) -> Result<()> {
        self.set("set_mtu", index, format!("{mtu}"), |l| l.mtu = mtu)
    }

    fn set_alias(&mut self, index: u32, alias: &str) -> Result<()> {
        self.set("set_alias", index, alias.into(), |l| {
            l.alias = (!alias.is_empty()).then(|| alias.to_string())
        })
    }

    fn set_master(&mut self, index: u32, master: u32) -> Result<()> {
        let change = LinkChange {
            master: Some(master),
            ..LinkChange::default()
        };
        self.on("set_master", format!("#{index} master #{master}"), |ns| {
            ns.change("set_master", index, &change)
        })
    }

    fn set_mac(&mut self, index: u32, mac: [u8; 6]) -> Result<()> {
        self.set("set_mac", index, format!("{mac:02x?}"), |l| l.mac = mac)
    }

    fn set_hairpin(&mut self, index: u32, on: bool) -> Result<()> {
        self.set("set_hairpin", index, format!("{on}"), |l| l.hairpin = on)
    }

    fn set_name(&mut self, index: u32, name: &str) -> Result<()> {
        self.on("set_name", format!("#{index} {name}"), |ns| {
            if ns.by_name(name).is_some_and(|l| l.index != index) {
                return Err(errno("set_name", libc::EEXIST));
            }
            let link = ns.link_mut("set_name", index)?;
            if link.up {
                return Err(errno("set_name", libc::EBUSY));
            }
            link.name = name.into();
            Ok(())
        })
    }

    fn set_group(&mut self, index: u32, group: u32) -> Result<()> {
        self.set("set_group", index, format!("{group:#x}"), |l| {
            l.group = group
        })
    }

    fn delete_group(&mut self, group: u32) -> Result<()> {
        let me = self.ns;
        let op = "delete_group";
        self.world.call(me, op, format!("{group:#x}"), |s| {
            let ns = here(s, me, op)?;
            let members: Vec<u32> = ns
                .links
                .values()
                .filter(|l| l.group == group)
                .map(|l| l.index)
                .collect();
            if members.is_empty() {
                return Err(errno(op, libc::ENODEV));
            }
            let peers: Vec<_> = members.into_iter().filter_map(|i| ns.remove(i)).collect();
            for (peer_ns, peer) in peers {
                if let Some(other) = s.namespaces.get_mut(&peer_ns) {
                    other.remove(peer);
                }
            }
            Ok(())
        })
    }

    fn move_to_netns(&mut self, index: u32, netns: RawFd) -> Result<()> {
        let me = self.ns;
        let op = "move_to_netns";
        self.world.call(me, op, format!("#{index}"), |s| {
            let to = raw_ns(netns)?;
            let name = here(s, me, op)?.link_mut(op, index)?.name.clone();
            if here(s, to, op)?.by_name(&name).is_some() {
                return Err(errno(op, libc::EEXIST));
            }
            let ns = here(s, me, op)?;
            let mut link = ns
                .links
                .get(&index)
                .cloned()
                .ok_or_else(|| errno(op, libc::ENODEV))?;
            let peer = link.peer;
            ns.remove(index);
            link.master = None;
            link.up = false;
            here(s, to, op)?.links.insert(index, link);
            if let Some((peer_ns, peer)) = peer {
                if let Some(p) = s
                    .namespaces
                    .get_mut(&peer_ns)
                    .and_then(|n| n.links.get_mut(&peer))
                {
                    p.peer = Some((to, index));
                }
            }
            Ok(())
        })
    }

    fn add_address(&mut self, index: u32, net: IpNet) -> Result<()> {
        self.on("add_address", format!("#{index} {net}"), |ns| {
            ns.add_address("add_address", index, net)
        })
    }

    fn delete_address(&mut self, index: u32, net: IpNet) -> Result<()> {
        self.on("delete_address", format!("#{index} {net}"), |ns| {
            ns.addresses.retain(|a| !(a.index == index && a.net == net));
            Ok(())
        })
    }

    fn addresses(&mut self, index: Option<u32>) -> Result<Vec<Address>> {
        self.on("addresses", format!("{index:?}"), |ns| {
            Ok(ns
                .addresses
                .iter()
                .filter(|a| index.is_none_or(|i| a.index == i))
                .cloned()
                .collect())
        })
    }

    fn add_route(&mut self, route: &Route) -> Result<()> {
        self.add_route_new(route).map(|_| ())
    }

    fn add_route_new(&mut self, route: &Route) -> Result<bool> {
        self.on("add_route", format!("{route:?}"), |ns| {
            ns.link_mut("add_route", route.oif)?;
            if ns.routes.iter().any(|r| r.dst == route.dst) {
                return Ok(false);
            }
            ns.routes.push(route.clone());
            Ok(true)
        })
    }

    fn delete_route(&mut self, route: &Route) -> Result<()> {
        self.on("delete_route", format!("{route:?}"), |ns| {
            ns.routes
                .retain(|r| !(r.dst == route.dst && r.oif == route.oif));
            Ok(())
        })
    }

    fn route_get(&mut self, dst: IpAddr) -> Result<RouteLookup> {
        self.on("route_get", dst.to_string(), |ns| {
            ns.route_get("route_get", dst)
        })
    }

    fn routes(&mut self, oif: u32) -> Result<Vec<Route>> {
        self.on("routes", format!("#{oif}"), |ns| {
            Ok(ns.routes.iter().filter(|r| r.oif == oif).cloned().collect())
        })
    }

    fn fdb_append(&mut self, index: u32, mac: [u8; 6], dst: Option<IpAddr>) -> Result<()> {
        self.on("fdb_append", format!("#{index} {mac:02x?} {dst:?}"), |ns| {
            ns.link_mut("fdb_append", index)?;
            let entry = FdbEntry { index, mac, dst };
            if !ns.fdb.contains(&entry) {
                ns.fdb.push(entry);
            }
            Ok(())
        })
    }

    fn fdb_delete(&mut self, index: u32, mac: [u8; 6], dst: Option<IpAddr>) -> Result<()> {
        self.on("fdb_delete", format!("#{index} {mac:02x?} {dst:?}"), |ns| {
            let entry = FdbEntry { index, mac, dst };
            ns.fdb.retain(|e| *e != entry);
            Ok(())
        })
    }

    fn fdb_entries(&mut self, index: u32) -> Result<Vec<FdbEntry>> {
        self.on("fdb_entries", format!("#{index}"), |ns| {
            Ok(ns
                .fdb
                .iter()
                .filter(|e| e.index == index)
                .cloned()
                .collect())
        })
    }

    fn add_proxy_neighbour(&mut self, index: u32, ip: Ipv4Addr) -> Result<()> {
        self.on("add_proxy_neighbour", format!("#{index} {ip}"), |ns| {
            ns.link_mut("add_proxy_neighbour", index)?;
            ns.proxy.insert((index, ip));
            Ok(())
        })
    }

    fn delete_proxy_neighbour(&mut self, index: u32, ip: Ipv4Addr) -> Result<()> {
        self.on("delete_proxy_neighbour", format!("#{index} {ip}"), |ns| {
            ns.proxy.remove(&(index, ip));
            Ok(())
        })
    }

    fn write_sysctl(&mut self, key: &str, value: &str) -> Result<()> {
        self.on("write_sysctl", format!("{key}={value}"), |ns| {
            ns.write_sysctl(key, value)
        })
    }

    fn create_tap(&mut self, name: &str, owner: TapOwner) -> Result<()> {
        let me = self.ns;
        let op = "create_tap";
        self.world.call(me, op, format!("{name} {owner:?}"), |s| {
            if name.is_empty() || name.len() >= libc::IFNAMSIZ {
                return Err(Error::Invalid {
                    field: "tap name".into(),
                    message: format!("{name:?} must be 1 to 15 bytes"),
                });
            }
            let index = s.next_index;
            let ns = here(s, me, op)?;
            match ns.by_name(name) {
                Some(l) if l.kind == "tun" => return Ok(()),
                Some(_) => return Err(errno(op, libc::EBUSY)),
                None => {}
            }
            // A tap's kind reads back as "tun"; a bridge spec gives it no kind data.
            let mut link = ns.new_link(op, index, &NewLink::new(name, LinkKind::Bridge))?;
            link.kind = "tun".into();
            link.data = None;
            ns.links.insert(index, link);
            s.next_index += 1;
            Ok(())
        })
    }

    fn open_in(&mut self, ns: BorrowedFd<'_>) -> Result<Self> {
        let id = ns_of(ns)?;
        let world = self.world.clone();
        self.world.call(self.ns, "open_in", format!("{id:?}"), |s| {
            if !s.namespaces.contains_key(&id) {
                return Err(Error::io(
                    "enter network namespace",
                    std::io::Error::from_raw_os_error(libc::EINVAL),
                ));
            }
            Ok(FakeKernel { world, ns: id })
        })
    }

    fn is_own_netns(&mut self, ns: BorrowedFd<'_>) -> Result<bool> {
        let id = ns_of(ns)?;
        let me = self.ns;
        self.world
            .call(me, "is_own_netns", format!("{id:?}"), |_| Ok(id == me))
    }

    fn allow_bridge(&mut self, bridge: &str) -> Result<bool> {
        self.world
            .call(self.ns, "allow_bridge", bridge.into(), |s| {
                if !s.docker_chain {
                    return Ok(false);
                }
                s.firewall.insert(bridge.to_string());
                Ok(true)
            })
    }

    fn guard_port(&mut self, guard: &PortGuard) -> Result<()> {
        let g = guard.clone();
        self.on("guard_port", format!("{guard:?}"), |ns| {
            ns.guards.insert(g.port.clone(), g);
            Ok(())
        })
    }

    fn unguard_port(&mut self, port: &str) -> Result<()> {
        self.on("unguard_port", port.into(), |ns| {
            ns.guards.remove(port);
            Ok(())
        })
    }

    fn guarded_ports(&mut self) -> Result<BTreeMap<String, Option<PortGuard>>> {
        self.on("guarded_ports", String::new(), |ns| {
            Ok(ns
                .guards
                .iter()
                .map(|(k, g)| (k.clone(), Some(g.clone())))
                .collect())
        })
    }

    fn revoke_bridge(&mut self, bridge: &str) -> Result<()> {
        self.world
            .call(self.ns, "revoke_bridge", bridge.into(), |s| {
                s.firewall.remove(bridge);
                Ok(())
            })
    }
}
