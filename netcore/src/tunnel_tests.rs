//! Message-level tests of each tunnel kind: the RTM_NEWLINK request is built, serialized as it
//! goes to the kernel and parsed back, and every kind-specific attribute is checked, both as
//! the parser reads it and as raw bytes where byte order matters. No kernel module, no root.

use std::net::Ipv4Addr;

use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::link::{
    GreIOFlags, InfoData, InfoGeneve, InfoGre, InfoKind, InfoVxlan, LinkAttribute, LinkInfo,
    LinkMessage,
};
use netlink_packet_route::RouteNetlinkMessage;

use super::*;
use crate::netlink::{new_link_message, NewLink};

const NODE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const CNCI: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// Above 2^24 and with every byte distinct, so a wrong width or byte order shows.
const GRE_KEY: u32 = 0x8a12_3456;
const VNI: u32 = 0x12_3456;

/// Serializes the request as `Netlink::create_link` sends it and returns the bytes and the
/// message as the library parses it back.
fn wire(kind: LinkKind) -> (Vec<u8>, LinkMessage) {
    let mut spec = NewLink::new("t0", kind);
    spec.mtu = Some(1450);
    spec.master = Some(7);
    let mut packet = NetlinkMessage::new(
        NetlinkHeader::default(),
        NetlinkPayload::from(RouteNetlinkMessage::NewLink(new_link_message(&spec))),
    );
    packet.finalize();
    let mut bytes = vec![0u8; packet.buffer_len()];
    packet.serialize(&mut bytes);
    let parsed = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&bytes).expect("parse back");
    let NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(msg)) = parsed.payload else {
        panic!("not a NEWLINK: {:?}", parsed.payload);
    };
    (bytes, msg)
}

/// IFLA_INFO_KIND and IFLA_INFO_DATA of a parsed message; also checks the generic attributes.
fn info(msg: &LinkMessage) -> (InfoKind, InfoData) {
    assert!(msg.attributes.contains(&LinkAttribute::IfName("t0".into())));
    assert!(msg.attributes.contains(&LinkAttribute::Mtu(1450)));
    assert!(msg.attributes.contains(&LinkAttribute::Controller(7)));
    let infos = msg
        .attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::LinkInfo(i) => Some(i.clone()),
            _ => None,
        })
        .expect("IFLA_LINKINFO");
    let kind = infos.iter().find_map(|i| match i {
        LinkInfo::Kind(k) => Some(k.clone()),
        _ => None,
    });
    let data = infos.iter().find_map(|i| match i {
        LinkInfo::Data(d) => Some(d.clone()),
        _ => None,
    });
    (kind.expect("IFLA_INFO_KIND"), data.expect("IFLA_INFO_DATA"))
}

/// True if `bytes` holds the netlink attribute `kind` with exactly `value` (length included).
fn has_nla(bytes: &[u8], kind: u16, value: &[u8]) -> bool {
    let len = u16::try_from(4 + value.len()).expect("short attribute");
    let mut nla = len.to_ne_bytes().to_vec();
    nla.extend_from_slice(&kind.to_ne_bytes());
    nla.extend_from_slice(value);
    bytes.windows(nla.len()).any(|w| w == nla.as_slice())
}

fn end() -> TunnelEnd {
    TunnelEnd {
        id: VNI,
        local: NODE,
        underlay: Some(3),
    }
}

#[test]
fn vxlan_node_device_is_point_to_point_without_learning() {
    let (bytes, msg) = wire(driver(TunnelKind::Vxlan).node_device(&end(), CNCI));
    let (kind, data) = info(&msg);
    assert_eq!(kind, InfoKind::Vxlan);
    assert_eq!(
        data,
        InfoData::Vxlan(vec![
            InfoVxlan::Id(VNI),
            InfoVxlan::Local(NODE),
            InfoVxlan::Port(4789),
            InfoVxlan::Learning(false),
            InfoVxlan::Group(CNCI),
            InfoVxlan::Link(3),
        ])
    );
    // IFLA_VXLAN_ID (1) is host order, IFLA_VXLAN_PORT (15) network order.
    assert!(has_nla(&bytes, 1, &VNI.to_ne_bytes()));
    assert!(has_nla(&bytes, 15, &4789u16.to_be_bytes()));
    // IFLA_VXLAN_GROUP (2) carries the CNCI; IFLA_VXLAN_LOCAL (4) this node.
    assert!(has_nla(&bytes, 2, &CNCI.octets()));
    assert!(has_nla(&bytes, 4, &NODE.octets()));
}

#[test]
fn vxlan_hub_device_is_multipoint_and_learns() {
    let d = driver(TunnelKind::Vxlan);
    assert_eq!(d.hub_topology(), HubTopology::Multipoint);
    let (_, msg) = wire(d.hub_device(&end(), NODE));
    let (_, data) = info(&msg);
    assert_eq!(
        data,
        InfoData::Vxlan(vec![
            InfoVxlan::Id(VNI),
            InfoVxlan::Local(NODE),
            InfoVxlan::Port(4789),
            InfoVxlan::Learning(true),
            InfoVxlan::Link(3),
        ]),
        "no remote: nodes are flood-list entries"
    );
}

#[test]
fn gretap_sets_the_key_in_both_directions_as_libsnnet() {
    let d = driver(TunnelKind::Gretap);
    assert_eq!(d.hub_topology(), HubTopology::PointToPoint);
    let e = TunnelEnd {
        id: GRE_KEY,
        ..end()
    };
    let (bytes, msg) = wire(d.node_device(&e, CNCI));
    let (kind, data) = info(&msg);
    assert_eq!(kind, InfoKind::GreTap);
    assert_eq!(
        data,
        InfoData::GreTap(vec![
            InfoGre::IKey(GRE_KEY),
            InfoGre::OKey(GRE_KEY),
            InfoGre::IFlags(GreIOFlags::Key),
            InfoGre::OFlags(GreIOFlags::Key),
            InfoGre::Local(NODE),
            InfoGre::Remote(CNCI),
            InfoGre::PathMTUDiscovery(true),
            InfoGre::Link(3),
        ])
    );
    // IFLA_GRE_IKEY (4) and IFLA_GRE_OKEY (5) are __be32; GRE_KEY flag (0x2000) __be16.
    assert!(has_nla(&bytes, 4, &GRE_KEY.to_be_bytes()));
    assert!(has_nla(&bytes, 5, &GRE_KEY.to_be_bytes()));
    assert!(has_nla(&bytes, 2, &[0x20, 0x00]) && has_nla(&bytes, 3, &[0x20, 0x00]));
    // The hub's device toward a node mirrors the node's toward the hub.
    let (_, hub) = wire(d.hub_device(
        &TunnelEnd {
            id: GRE_KEY,
            local: CNCI,
            underlay: Some(3),
        },
        NODE,
    ));
    let (_, hub) = info(&hub);
    let InfoData::GreTap(attrs) = hub else {
        panic!("{hub:?}")
    };
    assert!(attrs.contains(&InfoGre::Local(CNCI)) && attrs.contains(&InfoGre::Remote(NODE)));
    assert!(attrs.contains(&InfoGre::IKey(GRE_KEY)) && attrs.contains(&InfoGre::OKey(GRE_KEY)));
    // No TTL or TOS: both inherit, as libsnnet's gretap.
    assert!(!attrs
        .iter()
        .any(|a| matches!(a, InfoGre::Ttl(_) | InfoGre::Tos(_))));
}

#[test]
fn geneve_is_point_to_point_on_6081() {
    let d = driver(TunnelKind::Geneve);
    assert_eq!(d.hub_topology(), HubTopology::PointToPoint);
    let (bytes, msg) = wire(d.node_device(&end(), CNCI));
    let (kind, data) = info(&msg);
    assert_eq!(kind, InfoKind::Geneve);
    assert_eq!(
        data,
        InfoData::Geneve(vec![
            InfoGeneve::Id(VNI),
            InfoGeneve::Remote(CNCI),
            InfoGeneve::Port(6081),
        ])
    );
    // IFLA_GENEVE_ID (1) host order, IFLA_GENEVE_PORT (5) network order.
    assert!(has_nla(&bytes, 1, &VNI.to_ne_bytes()));
    assert!(has_nla(&bytes, 5, &6081u16.to_be_bytes()));
    let (_, hub) = wire(d.hub_device(&end(), NODE));
    assert_eq!(
        info(&hub).1,
        InfoData::Geneve(vec![
            InfoGeneve::Id(VNI),
            InfoGeneve::Remote(NODE),
            InfoGeneve::Port(6081),
        ])
    );
}

#[test]
fn each_driver_reads_its_id_back_and_knows_its_limits() {
    for kind in TunnelKind::ALL {
        let d = driver(kind);
        assert_eq!(d.kind(), kind);
        assert_eq!(d.overhead(), kind.overhead());
        assert_eq!(d.max_id(), kind.max_id());
        let (_, msg) = wire(d.node_device(&end(), CNCI));
        let link = crate::netlink::Link {
            index: 1,
            name: "t0".into(),
            kind: Some(kind.to_string()),
            mtu: 1450,
            alias: None,
            master: None,
            mac: None,
            up: false,
            data: Some(info(&msg).1),
        };
        assert_eq!(d.id_of(&link), Some(VNI), "{kind}");
    }
    assert_eq!(driver(TunnelKind::Vxlan).slot(5, CNCI), "vxlan-5");
    assert_eq!(
        driver(TunnelKind::Gretap).slot(5, CNCI),
        "gretap-192.0.2.1-5"
    );
    assert_eq!(
        driver(TunnelKind::Geneve).slot(5, CNCI),
        "geneve-192.0.2.1-5"
    );
}
