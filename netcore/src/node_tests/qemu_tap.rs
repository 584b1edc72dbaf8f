//! QEMU's taps: the hook's one core call, its tap check and its stale-record policy.

use super::*;
use crate::netlink::tap::TapOwner;

fn tap_req(vm: &str, tap: &str) -> VnicRequest {
    VnicRequest {
        id: VnicId {
            owner: vm.into(),
            ifname: tap.into(),
        },
        kind: VnicKind::Tap {
            name: tap.into(),
            uid: None,
            gid: None,
        },
        ip: Some(Ipv4Addr::new(10, 6, 0, 32)),
        mac: Some([2, 0, 10, 6, 0, 32]),
        default_route: false,
        allowed: Vec::new(),
        security_groups: Vec::new(),
    }
}

/// QEMU makes its tap (down, on no bridge) before it runs the hook.
fn qemu_makes(bench: &Bench, tap: &str) {
    bench
        .world
        .kernel()
        .create_tap(tap, TapOwner::default())
        .expect("tap");
}

#[test]
fn a_missing_tap_and_a_link_that_is_no_tap_are_refused_before_anything_changes() {
    let bench = Bench::new();
    let mut node = bench.node();
    node.view().expect("open");
    let before = bench.picture();
    let err = node
        .attach_existing_tap(&subnet(), &tap_req("vm1", "vm1n0"))
        .expect_err("no tap");
    assert!(err.to_string().contains("does not exist"), "{err}");
    let err = node
        .attach_existing_tap(&subnet(), &tap_req("vm1", "eth0"))
        .expect_err("not a tap");
    assert!(
        err.to_string().contains("eth0 is not a tap device"),
        "{err}"
    );
    assert_eq!(bench.picture(), before);
}

#[test]
fn a_record_left_by_a_killed_qemu_is_dropped_when_its_tap_name_comes_back_fresh() {
    let bench = Bench::new();
    let mut node = bench.node();
    let cfg = subnet();
    qemu_makes(&bench, "vm1n0");
    let first = node
        .attach_existing_tap(&cfg, &tap_req("vm-old", "vm1n0"))
        .expect("first VM");
    assert!(first.stale_removed.is_empty() && first.attachment.first_instance);
    // QEMU is killed without its ifdown: its tap goes, the record stays. A new VM gets a new
    // tap of the same name.
    let mut k = bench.world.kernel();
    assert!(k.delete_link_by_name("vm1n0").expect("kill"));
    qemu_makes(&bench, "vm1n0");
    let second = node
        .attach_existing_tap(&cfg, &tap_req("vm-new", "vm1n0"))
        .expect("second VM");
    assert_eq!(second.stale_removed, [first.attachment.vnic.id.key()]);
    assert_eq!(
        second.attachment.address, first.attachment.address,
        "its address is free again"
    );
    let host = bench.world.snapshot().ns("host");
    assert_eq!(host.links["vm1n0"].kind, "tun");
    assert!(host.links["vm1n0"].master.is_some(), "on the bridge");
    // ifdown: unplugged, not deleted (the tap is QEMU's); the subnet goes with its last VNIC.
    assert_eq!(
        node.detach_tap("vm1n0").expect("ifdown"),
        [second.attachment.vnic.id.key()]
    );
    let host = bench.world.snapshot().ns("host");
    assert!(host.links["vm1n0"].master.is_none() && host.links["vm1n0"].alias.is_none());
    assert_eq!(host.links.len(), 3, "lo, eth0 and QEMU's tap");
    assert!(node.detach_tap("vm1n0").expect("twice").is_empty());
}
