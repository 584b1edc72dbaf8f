//! The core's netlink layer against the real kernel: every link kind is created with the right
//! attributes and read back, in a fresh namespace per test.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, AsRawFd};

use netcore::netlink::{
    tap, GeneveSpec, GreSpec, InfoData, LinkKind, Netlink, NewLink, Route, VethPeer, VxlanSpec,
};
use netcore::Error;
use netlink_packet_route::link::{InfoGeneve, InfoGre, InfoVxlan};
use testkit::{require_root, Netns};

fn open(ns: &Netns) -> (std::os::fd::OwnedFd, Netlink) {
    let fd = netcore::netns::open(&ns.path()).expect("open netns");
    let nl = Netlink::open_in(fd.as_fd()).expect("netlink in netns");
    (fd, nl)
}

/// A namespace with an underlay link carrying 10.1.0.1/24.
fn with_underlay() -> (Netns, std::os::fd::OwnedFd, Netlink, u32) {
    let ns = Netns::new("nl");
    ns.exec(&[
        "ip", "link", "add", "ul0", "type", "veth", "peer", "name", "ul1",
    ]);
    ns.exec(&["ip", "addr", "add", "10.1.0.1/24", "dev", "ul0"]);
    ns.exec(&["ip", "link", "set", "ul0", "up"]);
    let (fd, mut nl) = open(&ns);
    let ul = nl.link_by_name("ul0").expect("get").expect("ul0").index;
    (ns, fd, nl, ul)
}

#[test]
fn bridge_with_mtu_mac_alias_and_up_down() {
    require_root!();
    let ns = Netns::new("nl");
    let (_fd, mut nl) = open(&ns);
    let mut spec = NewLink::new("br-t", LinkKind::Bridge);
    spec.mtu = Some(1400);
    spec.mac = Some([0x0e, 1, 2, 3, 4, 5]);
    spec.up = true;
    let created = nl.create_link(&spec).expect("create bridge");
    let link = nl.link_by_name("br-t").expect("get").expect("exists");
    assert_eq!(
        (created.index, created.name.as_str()),
        (link.index, "br-t"),
        "create returns the new link"
    );
    assert_eq!(link.kind.as_deref(), Some("bridge"));
    assert_eq!(link.mtu, 1400);
    assert_eq!(link.mac, Some([0x0e, 1, 2, 3, 4, 5]));
    assert!(link.up);
    nl.set_alias(link.index, "ciao:test").expect("alias");
    nl.set_mtu(link.index, 1300).expect("mtu");
    nl.set_up(link.index, false).expect("down");
    let link = nl.link_by_index(link.index).expect("get").expect("exists");
    assert_eq!(link.alias.as_deref(), Some("ciao:test"));
    assert_eq!(link.mtu, 1300);
    assert!(!link.up);
    // Creating it again is EEXIST, deleting twice is fine by name.
    assert!(nl.create_link(&spec).expect_err("duplicate").is_exists());
    assert!(nl.delete_link_by_name("br-t").expect("delete"));
    assert!(!nl.delete_link_by_name("br-t").expect("delete again"));
    assert!(nl.link_by_name("br-t").expect("get").is_none());
}

#[test]
fn veth_peer_is_created_directly_in_the_target_namespace() {
    require_root!();
    let node = Netns::new("nl");
    let workload = Netns::new("nlw");
    let (_nfd, mut nl) = open(&node);
    let (wfd, mut inside) = open(&workload);
    let mut br = NewLink::new("br0", LinkKind::Bridge);
    br.up = true;
    nl.create_link(&br).expect("bridge");
    let bridge = nl.link_by_name("br0").expect("get").expect("bridge");
    nl.create_link(&NewLink {
        name: "cvhost".into(),
        kind: LinkKind::Veth(VethPeer {
            name: "eth0".into(),
            mac: Some([2, 0, 10, 0, 0, 5]),
            mtu: Some(1450),
            netns: Some(wfd.as_raw_fd()),
            up: false,
        }),
        mtu: Some(1450),
        mac: None,
        master: Some(bridge.index),
        up: true,
    })
    .expect("veth");
    let host = nl.link_by_name("cvhost").expect("get").expect("host end");
    assert_eq!(host.kind.as_deref(), Some("veth"));
    assert_eq!(host.master, Some(bridge.index));
    assert_eq!(host.mtu, 1450);
    assert!(
        nl.link_by_name("eth0").expect("get").is_none(),
        "peer must not be in the node"
    );
    let peer = inside
        .link_by_name("eth0")
        .expect("get")
        .expect("peer inside");
    assert_eq!(peer.mac, Some([2, 0, 10, 0, 0, 5]));
    assert_eq!(peer.mtu, 1450);

    // Addresses and routes inside the workload namespace.
    inside.set_up(peer.index, true).expect("up");
    inside
        .add_address(peer.index, "10.0.0.5/24".parse().expect("net"))
        .expect("address");
    inside
        .add_address(peer.index, "10.0.0.5/24".parse().expect("net"))
        .expect("adding the same address again is fine");
    inside
        .add_route(&Route {
            dst: "0.0.0.0/0".parse().expect("net"),
            gateway: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))),
            oif: peer.index,
        })
        .expect("default route");
    let addrs = inside.addresses(Some(peer.index)).expect("addresses");
    assert!(
        addrs.iter().any(|a| a.net.to_string() == "10.0.0.5/24"),
        "{addrs:?}"
    );
    let routes = inside.routes(peer.index).expect("routes");
    assert!(
        routes.iter().any(|r| r.dst.prefix_len() == 0
            && r.gateway == Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)))),
        "{routes:?}"
    );
    let lookup = inside
        .route_get(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9)))
        .expect("route get");
    assert_eq!(lookup.oif, peer.index);
    assert_eq!(lookup.source, Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5))));

    // Deleting the host end removes the peer too.
    nl.delete_link(host.index).expect("delete");
    assert!(inside.link_by_name("eth0").expect("get").is_none());
}

#[test]
fn link_moves_to_another_namespace() {
    require_root!();
    let a = Netns::new("nl");
    let b = Netns::new("nl");
    let (_afd, mut nla) = open(&a);
    let (bfd, mut nlb) = open(&b);
    // Bridges are namespace-local in the kernel; tunnel devices and veths move.
    nla.create_link(&NewLink::new(
        "mv0",
        LinkKind::Veth(VethPeer {
            name: "mv1".into(),
            mac: None,
            mtu: None,
            netns: None,
            up: false,
        }),
    ))
    .expect("create");
    let link = nla.link_by_name("mv0").expect("get").expect("exists");
    nla.move_to_netns(link.index, bfd.as_raw_fd())
        .expect("move");
    assert!(nla.link_by_name("mv0").expect("get").is_none());
    assert!(nlb.link_by_name("mv0").expect("get").is_some());
}

#[test]
fn vxlan_attributes_read_back_and_fdb_entries() {
    require_root!();
    let (_ns, _fd, mut nl, ul) = with_underlay();
    let mut spec = NewLink::new(
        "vx0",
        LinkKind::Vxlan(VxlanSpec {
            vni: 4242,
            local: Ipv4Addr::new(10, 1, 0, 1),
            remote: None,
            port: 4789,
            underlay: Some(ul),
            learning: false,
        }),
    );
    spec.mtu = Some(1450);
    spec.up = true;
    nl.create_link(&spec).expect("vxlan");
    let link = nl.link_by_name("vx0").expect("get").expect("vxlan");
    assert_eq!(link.kind.as_deref(), Some("vxlan"));
    assert_eq!(link.mtu, 1450);
    let Some(InfoData::Vxlan(info)) = link.data else {
        panic!("no vxlan data: {:?}", link.data)
    };
    assert!(info.contains(&InfoVxlan::Id(4242)), "{info:?}");
    assert!(info.contains(&InfoVxlan::Local(Ipv4Addr::new(10, 1, 0, 1))));
    assert!(info.contains(&InfoVxlan::Port(4789)));
    assert!(info.contains(&InfoVxlan::Link(ul)));
    assert!(info.contains(&InfoVxlan::Learning(false)));

    // A hub's flood list: one all-zero entry per remote.
    let zero = [0u8; 6];
    for remote in [2, 3] {
        nl.fdb_append(
            link.index,
            zero,
            Some(IpAddr::V4(Ipv4Addr::new(10, 1, 0, remote))),
        )
        .expect("append");
    }
    let entries = nl.fdb_entries(link.index).expect("fdb");
    let dsts: Vec<_> = entries
        .iter()
        .filter(|e| e.mac == zero)
        .filter_map(|e| e.dst)
        .collect();
    assert_eq!(dsts.len(), 2, "{entries:?}");
    nl.fdb_delete(
        link.index,
        zero,
        Some(IpAddr::V4(Ipv4Addr::new(10, 1, 0, 2))),
    )
    .expect("delete");
    nl.fdb_delete(
        link.index,
        zero,
        Some(IpAddr::V4(Ipv4Addr::new(10, 1, 0, 2))),
    )
    .expect("deleting a missing entry is fine");
    let left: Vec<_> = nl
        .fdb_entries(link.index)
        .expect("fdb")
        .into_iter()
        .filter(|e| e.mac == zero)
        .collect();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].dst, Some(IpAddr::V4(Ipv4Addr::new(10, 1, 0, 3))));

    // Point-to-point VXLAN (a CN's tunnel) carries its remote.
    nl.create_link(&NewLink::new(
        "vx1",
        LinkKind::Vxlan(VxlanSpec {
            vni: 4243,
            local: Ipv4Addr::new(10, 1, 0, 1),
            remote: Some(Ipv4Addr::new(10, 1, 0, 9)),
            port: 4789,
            underlay: Some(ul),
            learning: false,
        }),
    ))
    .expect("p2p vxlan");
    let p2p = nl.link_by_name("vx1").expect("get").expect("exists");
    let Some(InfoData::Vxlan(info)) = p2p.data else {
        panic!("no vxlan data")
    };
    assert!(
        info.contains(&InfoVxlan::Group(Ipv4Addr::new(10, 1, 0, 9))),
        "{info:?}"
    );
}

#[test]
fn persistent_tap_with_owner() {
    require_root!();
    let ns = Netns::new("nl");
    let (fd, mut nl) = open(&ns);
    // Taps are made through /dev/net/tun, which acts in the calling thread's namespace.
    let owner = tap::TapOwner {
        uid: Some(4242),
        gid: Some(4343),
    };
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::setns(fd.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            tap::create_tap("tap-t0", owner).expect("create tap");
        })
        .join()
        .expect("thread");
    });
    let link = nl
        .link_by_name("tap-t0")
        .expect("get")
        .expect("tap persists");
    assert_eq!(link.kind.as_deref(), Some("tun"));
    let owner_file = ns.exec(&["cat", "/sys/class/net/tap-t0/owner"]);
    let group_file = ns.exec(&["cat", "/sys/class/net/tap-t0/group"]);
    assert_eq!(owner_file.trim(), "4242");
    assert_eq!(group_file.trim(), "4343");
    assert!(
        tap::create_tap("0123456789abcdefg", owner).is_err(),
        "name too long"
    );
}

fn skip_if_unsupported<T>(test: &str, kind: &str, result: Result<T, Error>) -> bool {
    match result {
        Err(Error::Unsupported(msg)) => {
            testkit::skip(test, &format!("kernel lacks {kind} ({msg})"));
            true
        }
        Err(e) => panic!("create {kind}: {e}"),
        Ok(_) => false,
    }
}

#[test]
fn gretap_attributes_read_back() {
    require_root!();
    let (_ns, _fd, mut nl, ul) = with_underlay();
    let created = nl.create_link(&NewLink::new(
        "gt0",
        LinkKind::GreTap(GreSpec {
            key: 69804,
            local: Ipv4Addr::new(10, 1, 0, 1),
            remote: Ipv4Addr::new(10, 1, 0, 7),
            underlay: Some(ul),
        }),
    ));
    if skip_if_unsupported("gretap_attributes_read_back", "gretap", created) {
        return;
    }
    let link = nl.link_by_name("gt0").expect("get").expect("gretap");
    assert_eq!(link.kind.as_deref(), Some("gretap"));
    let Some(InfoData::GreTap(info)) = link.data else {
        panic!("no gretap data: {:?}", link.data)
    };
    assert!(info.contains(&InfoGre::IKey(69804)), "{info:?}");
    assert!(info.contains(&InfoGre::OKey(69804)));
    assert!(info.contains(&InfoGre::Remote(Ipv4Addr::new(10, 1, 0, 7))));
    assert!(info.contains(&InfoGre::Local(Ipv4Addr::new(10, 1, 0, 1))));
}

#[test]
fn geneve_attributes_read_back() {
    require_root!();
    let (_ns, _fd, mut nl, _ul) = with_underlay();
    let created = nl.create_link(&NewLink::new(
        "gn0",
        LinkKind::Geneve(GeneveSpec {
            vni: 777,
            remote: Ipv4Addr::new(10, 1, 0, 7),
            port: 6081,
        }),
    ));
    if skip_if_unsupported("geneve_attributes_read_back", "geneve", created) {
        return;
    }
    let link = nl.link_by_name("gn0").expect("get").expect("geneve");
    assert_eq!(link.kind.as_deref(), Some("geneve"));
    let Some(InfoData::Geneve(info)) = link.data else {
        panic!("no geneve data: {:?}", link.data)
    };
    assert!(info.contains(&InfoGeneve::Id(777)), "{info:?}");
    assert!(info.contains(&InfoGeneve::Remote(Ipv4Addr::new(10, 1, 0, 7))));
    assert!(info.contains(&InfoGeneve::Port(6081)));
}
