//! The in-memory kernel model behind [`super::FakeKernel`]: namespaces with their links,
//! addresses, routes, FDB and proxy entries and sysctls, plus the host firewall. Each operation
//! answers as the kernel (and the `Netlink` wrapper above it) would: the same errno for a
//! missing or taken name, the same tolerance of "already there" and "already gone".

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use netlink_packet_route::link::InfoData;

use crate::error::{Error, Result};
use crate::netlink::{Address, FdbEntry, Link, LinkChange, LinkKind, NewLink, Route, RouteLookup};

/// A network namespace of the fake world, named by the (device, inode) of the file a test
/// made for it (any plain file works: no root, no nsfs), or [`NsId::HOST`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NsId {
    pub dev: u64,
    pub ino: u64,
}

impl NsId {
    /// The node's own namespace, which no file names.
    pub const HOST: NsId = NsId {
        dev: u64::MAX,
        ino: u64::MAX,
    };
}

/// One link as the fake kernel holds it.
#[derive(Debug, Clone)]
pub(crate) struct FakeLink {
    pub index: u32,
    pub name: String,
    pub kind: String,
    pub alias: Option<String>,
    pub master: Option<u32>,
    pub up: bool,
    pub mtu: u32,
    pub mac: [u8; 6],
    pub data: Option<InfoData>,
    /// The other end of a veth.
    pub peer: Option<(NsId, u32)>,
    pub hairpin: bool,
    pub group: u32,
}

impl FakeLink {
    pub fn to_link(&self) -> Link {
        Link {
            index: self.index,
            name: self.name.clone(),
            kind: Some(self.kind.clone()),
            mtu: self.mtu,
            alias: self.alias.clone(),
            master: self.master,
            mac: Some(self.mac),
            up: self.up,
            data: self.data.clone(),
        }
    }
}

/// One namespace's tables.
#[derive(Debug, Clone, Default)]
pub(crate) struct Namespace {
    /// `host`, or `netns-N` for the Nth namespace a test added: stable across worlds.
    pub label: String,
    pub links: BTreeMap<u32, FakeLink>,
    pub addresses: Vec<Address>,
    pub routes: Vec<Route>,
    pub fdb: Vec<FdbEntry>,
    pub proxy: BTreeSet<(u32, Ipv4Addr)>,
    pub sysctls: BTreeMap<String, String>,
    /// Anti-spoofing guards by port name.
    pub guards: BTreeMap<String, crate::antispoof::PortGuard>,
}

pub(crate) fn errno(op: &str, errno: i32) -> Error {
    Error::Netlink {
        op: op.to_string(),
        errno,
    }
}

/// A MAC the kernel would make up: locally administered, stable per name (so a link re-created
/// after a crash looks the same in a snapshot).
fn made_up_mac(name: &str) -> [u8; 6] {
    let h = name
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        })
        .to_be_bytes();
    [0x02, h[0], h[1], h[2], h[3], h[4]]
}

impl Namespace {
    pub fn with_loopback(index: u32, label: String) -> Self {
        let mut ns = Namespace {
            label,
            ..Namespace::default()
        };
        ns.links.insert(
            index,
            FakeLink {
                index,
                name: "lo".into(),
                kind: "loopback".into(),
                alias: None,
                master: None,
                up: true,
                mtu: 65536,
                mac: [0; 6],
                data: None,
                peer: None,
                hairpin: false,
                group: 0,
            },
        );
        ns
    }

    pub fn by_name(&self, name: &str) -> Option<&FakeLink> {
        self.links.values().find(|l| l.name == name)
    }

    pub fn link_mut(&mut self, op: &str, index: u32) -> Result<&mut FakeLink> {
        self.links
            .get_mut(&index)
            .ok_or_else(|| errno(op, libc::ENODEV))
    }

    fn check_master(&self, op: &str, master: u32) -> Result<()> {
        match self.links.get(&master) {
            Some(l) if l.kind == "bridge" => Ok(()),
            Some(_) => Err(errno(op, libc::EOPNOTSUPP)),
            None => Err(errno(op, libc::ENODEV)),
        }
    }

    /// A new link from `spec` (the veth peer is made by the caller).
    pub fn new_link(&self, op: &str, index: u32, spec: &NewLink) -> Result<FakeLink> {
        if spec.name.is_empty() || spec.name.len() >= libc::IFNAMSIZ {
            return Err(errno(op, libc::EINVAL));
        }
        if self.by_name(&spec.name).is_some() {
            return Err(errno(op, libc::EEXIST));
        }
        if let Some(m) = spec.master {
            self.check_master(op, m)?;
        }
        Ok(FakeLink {
            index,
            name: spec.name.clone(),
            kind: crate::netlink::kind_name(&spec.kind).into(),
            alias: None,
            master: spec.master,
            up: spec.up,
            mtu: spec.mtu.unwrap_or(1500),
            mac: spec.mac.unwrap_or_else(|| made_up_mac(&spec.name)),
            data: match &spec.kind {
                LinkKind::Veth(_) => None,
                kind => crate::netlink::info_data(kind),
            },
            peer: None,
            hairpin: false,
            group: 0,
        })
    }

    pub fn change(&mut self, op: &str, index: u32, change: &LinkChange) -> Result<()> {
        if let Some(m) = change.master.filter(|m| *m != 0) {
            self.check_master(op, m)?;
        }
        let link = self.link_mut(op, index)?;
        if let Some(up) = change.up {
            link.up = up;
        }
        if let Some(alias) = &change.alias {
            link.alias = (!alias.is_empty()).then(|| alias.clone());
        }
        if let Some(mtu) = change.mtu {
            link.mtu = mtu;
        }
        if let Some(master) = change.master {
            link.master = (master != 0).then_some(master);
        }
        Ok(())
    }

    /// Removes a link and everything that hangs on it; returns its veth peer, if any.
    pub fn remove(&mut self, index: u32) -> Option<(NsId, u32)> {
        let link = self.links.remove(&index)?;
        for other in self.links.values_mut() {
            if other.master == Some(index) {
                other.master = None;
            }
        }
        self.addresses.retain(|a| a.index != index);
        self.routes.retain(|r| r.oif != index);
        self.fdb.retain(|e| e.index != index);
        self.proxy.retain(|(i, _)| *i != index);
        let prefix = format!("ipv6/conf/{}/", link.name);
        self.sysctls.retain(|k, _| !k.starts_with(&prefix));
        link.peer
    }

    pub fn route_get(&self, op: &str, dst: IpAddr) -> Result<RouteLookup> {
        let up = |index: u32| self.links.get(&index).is_some_and(|l| l.up);
        let connected = self
            .addresses
            .iter()
            .filter(|a| up(a.index) && a.net.trunc().contains(&dst))
            .map(|a| (a.net.prefix_len(), a.index, None));
        let routed = self
            .routes
            .iter()
            .filter(|r| up(r.oif) && r.dst.contains(&dst))
            .map(|r| (r.dst.prefix_len(), r.oif, r.gateway));
        let (_, oif, gateway) = connected
            .chain(routed)
            .max_by_key(|(len, _, _)| *len)
            .ok_or_else(|| errno(op, libc::ENETUNREACH))?;
        let source = self
            .addresses
            .iter()
            .find(|a| a.index == oif && a.net.addr().is_ipv4() == dst.is_ipv4())
            .map(|a| a.net.addr());
        Ok(RouteLookup {
            oif,
            source,
            gateway,
        })
    }

    pub fn add_address(&mut self, op: &str, index: u32, net: IpNet) -> Result<()> {
        self.link_mut(op, index)?;
        if !self
            .addresses
            .iter()
            .any(|a| a.index == index && a.net == net)
        {
            self.addresses.push(Address { index, net });
        }
        Ok(())
    }

    pub fn write_sysctl(&mut self, key: &str, value: &str) -> Result<()> {
        if let Some(rest) = key.strip_prefix("ipv6/conf/") {
            let dev = rest.split('/').next().unwrap_or_default();
            if !matches!(dev, "all" | "default") && self.by_name(dev).is_none() {
                return Err(Error::io(
                    format!("write /proc/sys/net/{key}"),
                    std::io::Error::from(std::io::ErrorKind::NotFound),
                ));
            }
        }
        self.sysctls.insert(key.to_string(), value.to_string());
        Ok(())
    }
}
