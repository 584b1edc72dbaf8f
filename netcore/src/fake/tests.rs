//! The fake answers as the kernel does for what the core relies on.

use std::net::Ipv4Addr;
use std::os::fd::AsFd;

use super::*;
use crate::kernel::Kernel;
use crate::netlink::{LinkKind, NewLink, VethPeer};

fn netns_file() -> (tempfile::NamedTempFile, std::fs::File) {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    let open = std::fs::File::open(file.path()).expect("open");
    (file, open)
}

#[test]
fn veth_spans_namespaces_and_goes_with_either_end() {
    let world = FakeWorld::new();
    let (file, fd) = netns_file();
    let id = world.add_netns(file.path()).expect("netns");
    let mut host = world.kernel();
    let mut spec = NewLink::new(
        "h0",
        LinkKind::Veth(VethPeer {
            name: "eth0".into(),
            mac: Some([2, 0, 0, 0, 0, 1]),
            mtu: Some(1400),
            netns: Some(std::os::fd::AsRawFd::as_raw_fd(&fd)),
            up: false,
        }),
    );
    spec.mtu = Some(1400);
    let h0 = host.create_link(&spec).expect("create");
    assert!(host.create_link(&spec).expect_err("twice").is_exists());
    let mut inside = host.open_in(fd.as_fd()).expect("open_in");
    assert_eq!(inside.ns(), id);
    assert!(inside.is_own_netns(fd.as_fd()).expect("own"));
    assert!(!host.is_own_netns(fd.as_fd()).expect("not own"));
    let eth0 = inside.link_by_name("eth0").expect("get").expect("peer");
    assert_eq!((eth0.mtu, eth0.mac), (1400, Some([2, 0, 0, 0, 0, 1])));
    host.delete_link(h0.index).expect("delete");
    assert!(inside.link_by_name("eth0").expect("get").is_none());
    assert!(host.delete_link(h0.index).expect_err("gone").is_not_found());
}

#[test]
fn injections_fail_or_crash_once_and_every_call_is_recorded() {
    let world = FakeWorld::new();
    let mut k = world.kernel();
    world.inject(Trigger::Op("create_link", 1), Fault::Fail(libc::EPERM));
    let err = k
        .create_link(&NewLink::new("br0", LinkKind::Bridge))
        .expect_err("injected");
    assert_eq!(err.errno(), Some(libc::EPERM));
    let br = k
        .create_link(&NewLink::new("br0", LinkKind::Bridge))
        .expect("second time");
    world.inject(Trigger::Nth(3), Fault::Panic);
    let crash = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = k.set_up(br.index, true);
    }))
    .expect_err("killed");
    assert_eq!(
        crash.downcast_ref::<InjectedCrash>(),
        Some(&InjectedCrash {
            seq: 3,
            op: "set_up"
        })
    );
    assert!(!k.link_by_index(br.index).expect("get").expect("br0").up);
    let ops: Vec<_> = world.calls().iter().map(|c| c.op).collect();
    assert_eq!(
        ops,
        ["create_link", "create_link", "set_up", "link_by_index"]
    );
}

#[test]
fn routes_sysctls_and_deletion_clean_up_after_a_link() {
    let world = FakeWorld::new();
    let mut k = world.kernel();
    let mut spec = NewLink::new("eth0", LinkKind::Bridge);
    spec.up = true;
    let eth0 = k.create_link(&spec).expect("eth0");
    k.add_address(eth0.index, "192.0.2.10/24".parse().expect("net"))
        .expect("address");
    let got = k
        .route_get(Ipv4Addr::new(192, 0, 2, 1).into())
        .expect("connected route");
    assert_eq!(got.oif, eth0.index);
    assert_eq!(got.source, Some(Ipv4Addr::new(192, 0, 2, 10).into()));
    assert!(k.route_get(Ipv4Addr::new(198, 51, 100, 1).into()).is_err());
    k.disable_ipv6("eth0").expect("sysctl");
    k.disable_ipv6("missing")
        .expect("a missing device has nothing to turn off");
    assert_eq!(
        world
            .snapshot()
            .ns("host")
            .sysctls
            .get("ipv6/conf/eth0/disable_ipv6"),
        Some(&"1".to_string())
    );
    let before = FakeWorld::new().snapshot();
    k.delete_link(eth0.index).expect("delete");
    assert_eq!(world.snapshot(), before, "nothing hangs on a deleted link");
}
