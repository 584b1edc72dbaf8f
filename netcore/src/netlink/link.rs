//! Links: create (bridge, veth, VXLAN, GRE tap, Geneve), read back, change, delete.

use std::net::Ipv4Addr;
use std::os::fd::RawFd;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_ECHO, NLM_F_EXCL};
use netlink_packet_route::link::{
    BridgeStpState, GreIOFlags, InfoBridge, InfoBridgePort, InfoData, InfoGeneve, InfoGre,
    InfoKind, InfoPortData, InfoPortKind, InfoVeth, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo,
    LinkMessage,
};
use netlink_packet_route::RouteNetlinkMessage;

use super::Netlink;
use crate::error::{Error, Result};

/// VXLAN's IANA port.
pub const VXLAN_PORT: u16 = 4789;
/// Geneve's IANA port.
pub const GENEVE_PORT: u16 = 6081;

/// The kind-specific part of a new link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkKind {
    Bridge,
    /// A veth pair; the peer may be created directly in another namespace.
    Veth(VethPeer),
    Vxlan(VxlanSpec),
    GreTap(GreSpec),
    Geneve(GeneveSpec),
}

/// The far end of a veth pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VethPeer {
    pub name: String,
    pub mac: Option<[u8; 6]>,
    pub mtu: Option<u32>,
    /// Namespace to create the peer in (an open netns fd); `None` keeps it here.
    pub netns: Option<RawFd>,
    pub up: bool,
}

/// A point-to-point (or, without `remote`, multipoint) VXLAN device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanSpec {
    pub vni: u32,
    pub local: Ipv4Addr,
    pub remote: Option<Ipv4Addr>,
    pub port: u16,
    /// Underlay device index.
    pub underlay: Option<u32>,
    pub learning: bool,
}

/// A GRE tap (Ethernet over GRE) device with a key, as ciao's `gretap`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GreSpec {
    pub key: u32,
    pub local: Ipv4Addr,
    pub remote: Ipv4Addr,
    pub underlay: Option<u32>,
}

/// A point-to-point Geneve device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneveSpec {
    pub vni: u32,
    pub remote: Ipv4Addr,
    pub port: u16,
}

/// Everything needed to create one link in one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLink {
    pub name: String,
    pub kind: LinkKind,
    pub mtu: Option<u32>,
    pub mac: Option<[u8; 6]>,
    /// Bridge to enslave the new link to.
    pub master: Option<u32>,
    pub up: bool,
}

impl NewLink {
    pub fn new(name: impl Into<String>, kind: LinkKind) -> Self {
        Self {
            name: name.into(),
            kind,
            mtu: None,
            mac: None,
            master: None,
            up: false,
        }
    }
}

/// Changes to an existing link, applied in one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkChange {
    pub up: Option<bool>,
    pub alias: Option<String>,
    pub mtu: Option<u32>,
    pub master: Option<u32>,
}

/// A link as read back from the kernel.
#[derive(Debug, Clone)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub kind: Option<String>,
    pub mtu: u32,
    pub alias: Option<String>,
    pub master: Option<u32>,
    pub mac: Option<[u8; 6]>,
    pub up: bool,
    /// The kind-specific attributes, for checks.
    pub data: Option<InfoData>,
}

impl Link {
    fn from_message(msg: LinkMessage) -> Self {
        let mut link = Link {
            index: msg.header.index,
            name: String::new(),
            kind: None,
            mtu: 0,
            alias: None,
            master: None,
            mac: None,
            up: msg.header.flags.contains(LinkFlags::Up),
            data: None,
        };
        for attr in msg.attributes {
            match attr {
                LinkAttribute::IfName(n) => link.name = n,
                LinkAttribute::Mtu(m) => link.mtu = m,
                LinkAttribute::IfAlias(a) => link.alias = Some(a),
                LinkAttribute::Controller(m) => link.master = Some(m),
                LinkAttribute::Address(a) => link.mac = <[u8; 6]>::try_from(a.as_slice()).ok(),
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        match info {
                            LinkInfo::Kind(k) => link.kind = Some(k.to_string()),
                            LinkInfo::Data(d) => link.data = Some(d),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        link
    }
}

fn kind_info(kind: &LinkKind) -> Vec<LinkInfo> {
    match kind {
        LinkKind::Bridge => vec![
            LinkInfo::Kind(InfoKind::Bridge),
            // No STP, no forwarding delay: ports forward as soon as they come up.
            LinkInfo::Data(InfoData::Bridge(vec![
                InfoBridge::StpState(BridgeStpState::Disabled),
                InfoBridge::ForwardDelay(0),
                // A tenant segment floods multicast like any L2 overlay; snooping only costs.
                InfoBridge::MulticastSnooping(false),
            ])),
        ],
        LinkKind::Veth(peer) => {
            let mut msg = LinkMessage::default();
            msg.attributes
                .push(LinkAttribute::IfName(peer.name.clone()));
            if let Some(mac) = peer.mac {
                msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
            }
            if let Some(mtu) = peer.mtu {
                msg.attributes.push(LinkAttribute::Mtu(mtu));
            }
            if let Some(fd) = peer.netns {
                msg.attributes.push(LinkAttribute::NetNsFd(fd));
            }
            if peer.up {
                msg.header.flags = LinkFlags::Up;
                msg.header.change_mask = LinkFlags::Up;
            }
            vec![
                LinkInfo::Kind(InfoKind::Veth),
                LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(msg))),
            ]
        }
        LinkKind::Vxlan(v) => {
            let mut data = vec![
                InfoVxlan::Id(v.vni),
                InfoVxlan::Local(v.local),
                InfoVxlan::Port(v.port),
                InfoVxlan::Learning(v.learning),
            ];
            if let Some(remote) = v.remote {
                data.push(InfoVxlan::Group(remote));
            }
            if let Some(dev) = v.underlay {
                data.push(InfoVxlan::Link(dev));
            }
            vec![
                LinkInfo::Kind(InfoKind::Vxlan),
                LinkInfo::Data(InfoData::Vxlan(data)),
            ]
        }
        LinkKind::GreTap(g) => {
            let mut data = vec![
                InfoGre::IKey(g.key),
                InfoGre::OKey(g.key),
                InfoGre::IFlags(GreIOFlags::Key),
                InfoGre::OFlags(GreIOFlags::Key),
                InfoGre::Local(g.local),
                InfoGre::Remote(g.remote),
                InfoGre::PathMTUDiscovery(true),
            ];
            if let Some(dev) = g.underlay {
                data.push(InfoGre::Link(dev));
            }
            vec![
                LinkInfo::Kind(InfoKind::GreTap),
                LinkInfo::Data(InfoData::GreTap(data)),
            ]
        }
        LinkKind::Geneve(g) => vec![
            LinkInfo::Kind(InfoKind::Geneve),
            LinkInfo::Data(InfoData::Geneve(vec![
                InfoGeneve::Id(g.vni),
                InfoGeneve::Remote(g.remote),
                InfoGeneve::Port(g.port),
            ])),
        ],
    }
}

/// The RTM_NEWLINK body that creates `spec` (public so its attributes can be checked without a
/// kernel).
pub fn new_link_message(spec: &NewLink) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.attributes
        .push(LinkAttribute::IfName(spec.name.clone()));
    if let Some(mtu) = spec.mtu {
        msg.attributes.push(LinkAttribute::Mtu(mtu));
    }
    if let Some(mac) = spec.mac {
        msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
    }
    if let Some(master) = spec.master {
        msg.attributes.push(LinkAttribute::Controller(master));
    }
    if spec.up {
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
    }
    msg.attributes
        .push(LinkAttribute::LinkInfo(kind_info(&spec.kind)));
    msg
}

/// The kind-specific attributes (IFLA_INFO_DATA) of a new link, as the kernel reports them back.
#[cfg(any(test, feature = "fake"))]
pub(crate) fn info_data(kind: &LinkKind) -> Option<InfoData> {
    kind_info(kind).into_iter().find_map(|i| match i {
        LinkInfo::Data(d) => Some(d),
        _ => None,
    })
}

fn index_msg(index: u32) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg
}

impl Netlink {
    /// Creates a link and returns it as the kernel echoes it back; fails with EEXIST if the
    /// name is taken.
    pub fn create_link(&mut self, spec: &NewLink) -> Result<Link> {
        let msg = new_link_message(spec);
        let what = format!("create link {}", spec.name);
        let replies = self
            .exchange_ack(
                &what,
                RouteNetlinkMessage::NewLink(msg),
                NLM_F_CREATE | NLM_F_EXCL | NLM_F_ECHO,
            )
            .map_err(|e| match e {
                Error::Netlink { errno, .. } if errno == libc::EOPNOTSUPP => {
                    Error::Unsupported(format!(
                        "{what}: the kernel lacks link kind {}",
                        kind_name(&spec.kind)
                    ))
                }
                other => other,
            })?;
        // Recent kernels echo the new link; older ones need a lookup.
        let echoed = replies.into_iter().find_map(|r| match r {
            RouteNetlinkMessage::NewLink(m) => Some(Link::from_message(m)),
            _ => None,
        });
        match echoed {
            Some(link) if link.name == spec.name => Ok(link),
            _ => self
                .link_by_name(&spec.name)?
                .ok_or_else(|| Error::Internal(format!("{what}: link vanished"))),
        }
    }

    /// Applies several changes to a link in one request.
    pub fn change_link(&mut self, index: u32, change: &LinkChange) -> Result<()> {
        let mut msg = index_msg(index);
        if let Some(up) = change.up {
            msg.header.flags = if up {
                LinkFlags::Up
            } else {
                LinkFlags::empty()
            };
            msg.header.change_mask = LinkFlags::Up;
        }
        if let Some(alias) = &change.alias {
            msg.attributes.push(LinkAttribute::IfAlias(alias.clone()));
        }
        if let Some(mtu) = change.mtu {
            msg.attributes.push(LinkAttribute::Mtu(mtu));
        }
        if let Some(master) = change.master {
            msg.attributes.push(LinkAttribute::Controller(master));
        }
        self.ack(
            &format!("change link #{index}"),
            RouteNetlinkMessage::SetLink(msg),
            0,
        )
    }

    /// Turns hairpin mode of a bridge port on or off (`bridge link set dev D hairpin on`):
    /// a hub's multipoint tunnel port must send frames back out of the port they came in on.
    pub fn set_hairpin(&mut self, index: u32, on: bool) -> Result<()> {
        let mut msg = index_msg(index);
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::PortKind(InfoPortKind::Bridge),
            LinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(
                on,
            )])),
        ]));
        self.ack(
            &format!("set hairpin on link #{index}"),
            RouteNetlinkMessage::NewLink(msg),
            0,
        )
    }

    /// Reads one link by name; `None` if there is none.
    pub fn link_by_name(&mut self, name: &str) -> Result<Option<Link>> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        self.get_link(&format!("get link {name}"), msg)
    }

    /// Reads one link by index; `None` if there is none.
    pub fn link_by_index(&mut self, index: u32) -> Result<Option<Link>> {
        self.get_link(&format!("get link #{index}"), index_msg(index))
    }

    fn get_link(&mut self, what: &str, msg: LinkMessage) -> Result<Option<Link>> {
        match self.get(what, RouteNetlinkMessage::GetLink(msg)) {
            Ok(RouteNetlinkMessage::NewLink(m)) => Ok(Some(Link::from_message(m))),
            Ok(_) => Err(Error::Internal(format!("{what}: unexpected reply"))),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Lists every link in this namespace.
    pub fn links(&mut self) -> Result<Vec<Link>> {
        let replies = self.dump(
            "list links",
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|r| match r {
                RouteNetlinkMessage::NewLink(m) => Some(Link::from_message(m)),
                _ => None,
            })
            .collect())
    }

    /// Deletes a link by index. Deleting one end of a veth removes both.
    pub fn delete_link(&mut self, index: u32) -> Result<()> {
        self.ack(
            &format!("delete link #{index}"),
            RouteNetlinkMessage::DelLink(index_msg(index)),
            0,
        )
    }

    /// Deletes a link by name; succeeds if it does not exist.
    pub fn delete_link_by_name(&mut self, name: &str) -> Result<bool> {
        match self.link_by_name(name)? {
            Some(link) => match self.delete_link(link.index) {
                Ok(()) => Ok(true),
                Err(e) if e.is_not_found() => Ok(false),
                Err(e) => Err(e),
            },
            None => Ok(false),
        }
    }

    fn set_link(&mut self, what: String, index: u32, attrs: Vec<LinkAttribute>) -> Result<()> {
        let mut msg = index_msg(index);
        msg.attributes = attrs;
        self.ack(&what, RouteNetlinkMessage::SetLink(msg), 0)
    }

    /// Brings a link up or down.
    pub fn set_up(&mut self, index: u32, up: bool) -> Result<()> {
        let mut msg = index_msg(index);
        msg.header.flags = if up {
            LinkFlags::Up
        } else {
            LinkFlags::empty()
        };
        msg.header.change_mask = LinkFlags::Up;
        self.ack(
            &format!("set link #{index} {}", if up { "up" } else { "down" }),
            RouteNetlinkMessage::SetLink(msg),
            0,
        )
    }

    /// Sets the MTU.
    pub fn set_mtu(&mut self, index: u32, mtu: u32) -> Result<()> {
        self.set_link(
            format!("set mtu {mtu} on link #{index}"),
            index,
            vec![LinkAttribute::Mtu(mtu)],
        )
    }

    /// Sets the alias (IFLA_IFALIAS), where the system keeps each link's identity.
    pub fn set_alias(&mut self, index: u32, alias: &str) -> Result<()> {
        self.set_link(
            format!("set alias on link #{index}"),
            index,
            vec![LinkAttribute::IfAlias(alias.to_string())],
        )
    }

    /// Enslaves a link to a bridge (`master = 0` releases it).
    pub fn set_master(&mut self, index: u32, master: u32) -> Result<()> {
        self.set_link(
            format!("set master of link #{index}"),
            index,
            vec![LinkAttribute::Controller(master)],
        )
    }

    /// Sets the MAC address.
    pub fn set_mac(&mut self, index: u32, mac: [u8; 6]) -> Result<()> {
        self.set_link(
            format!("set mac on link #{index}"),
            index,
            vec![LinkAttribute::Address(mac.to_vec())],
        )
    }

    /// Renames a link (it must be down).
    pub fn set_name(&mut self, index: u32, name: &str) -> Result<()> {
        self.set_link(
            format!("rename link #{index} to {name}"),
            index,
            vec![LinkAttribute::IfName(name.to_string())],
        )
    }

    /// Puts a link into a link group, so a whole group can be deleted in one request.
    pub fn set_group(&mut self, index: u32, group: u32) -> Result<()> {
        self.set_link(
            format!("put link #{index} in group {group:#x}"),
            index,
            vec![LinkAttribute::Group(group)],
        )
    }

    /// Deletes every link of a group with one request (one RCU grace period for all).
    pub fn delete_group(&mut self, group: u32) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::Group(group));
        self.ack(
            &format!("delete link group {group:#x}"),
            RouteNetlinkMessage::DelLink(msg),
            0,
        )
    }

    /// Moves a link into the namespace open at `netns`.
    pub fn move_to_netns(&mut self, index: u32, netns: RawFd) -> Result<()> {
        self.set_link(
            format!("move link #{index} to netns"),
            index,
            vec![LinkAttribute::NetNsFd(netns)],
        )
    }
}

/// The kernel's name of a link kind (IFLA_INFO_KIND).
pub fn kind_name(kind: &LinkKind) -> &'static str {
    match kind {
        LinkKind::Bridge => "bridge",
        LinkKind::Veth(_) => "veth",
        LinkKind::Vxlan(_) => "vxlan",
        LinkKind::GreTap(_) => "gretap",
        LinkKind::Geneve(_) => "geneve",
    }
}
