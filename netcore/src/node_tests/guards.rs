//! Anti-spoofing guards follow the ports: added before a port carries traffic, removed with
//! it, rolled back with a failed attach, restored and pruned by reconcile.

use std::net::Ipv4Addr;

use super::{subnet, veth_named, Bench};
use crate::fake::{Fault, Trigger};
use crate::ids;
use crate::kernel::Kernel;

fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("ip")
}

#[test]
fn after_two_attaches_and_one_detach_only_the_live_port_is_guarded() {
    let bench = Bench::new();
    let mut node = bench.node();
    let cfg = subnet();
    let a = node
        .attach(&cfg, &veth_named(&bench, "a", "eth0"))
        .expect("a");
    let mut req = veth_named(&bench, "b", "eth1");
    req.allowed = vec![ip("10.6.0.200")];
    let b = node.attach(&cfg, &req).expect("b");
    assert_eq!(bench.world.guards().len(), 2);
    node.detach(&cfg.net_key(), &a.vnic.id).expect("detach a");

    let guards = bench.world.guards();
    let keys: Vec<&String> = guards.keys().collect();
    assert_eq!(keys, vec![&b.vnic.host_ifname]);
    let g = &guards[&b.vnic.host_ifname];
    assert_eq!(Some(g.mac), ids::parse_mac(&b.vnic.mac));
    assert_eq!(g.ipv4, vec![b.vnic.ip, ip("10.6.0.200")]);
}

#[test]
fn the_guard_is_in_place_before_the_port_exists() {
    let bench = Bench::new();
    let mut node = bench.node();
    node.attach(&subnet(), &veth_named(&bench, "a", "eth0"))
        .expect("attach");
    let calls: Vec<&str> = bench.world.calls().iter().map(|c| c.op).collect();
    // The last link made is the workload's veth (bridge and tunnel come first).
    let guard = calls
        .iter()
        .position(|c| *c == "guard_port")
        .expect("guard");
    let veth = calls
        .iter()
        .rposition(|c| *c == "create_link")
        .expect("veth");
    assert!(guard < veth, "{calls:?}");
}

#[test]
fn a_failing_attach_leaves_no_guard() {
    let bench = Bench::new();
    let mut node = bench.node();
    bench.world.clear_calls();
    bench
        .world
        .inject(Trigger::Op("change_link", 1), Fault::Fail(libc::EPERM));
    node.attach(&subnet(), &veth_named(&bench, "a", "eth0"))
        .expect_err("attach fails");
    assert!(
        bench.world.guards().is_empty(),
        "{:?}",
        bench.world.guards()
    );
}

#[test]
fn bad_allowed_addresses_are_refused_before_anything_changes() {
    let bench = Bench::new();
    let mut node = bench.node();
    let before = bench.picture();
    for bad in ["10.6.0.1", "10.6.0.0", "10.6.0.255", "0.0.0.0", "10.7.0.5"] {
        let mut req = veth_named(&bench, "a", "eth0");
        req.allowed = vec![ip(bad)];
        let err = node.attach(&subnet(), &req).expect_err(bad);
        assert!(
            matches!(&err, crate::Error::Invalid { field, .. } if field == "allowed addresses"),
            "{bad}: {err}"
        );
    }
    assert_eq!(bench.picture(), before);
}

#[test]
fn reconcile_restores_missing_guards_and_removes_orphans() {
    let bench = Bench::new();
    let mut node = bench.node();
    let a = node
        .attach(&subnet(), &veth_named(&bench, "a", "eth0"))
        .expect("a");
    let want = bench.world.guards();
    let mut host = bench.world.kernel();
    host.unguard_port(&a.vnic.host_ifname).expect("flush");
    let orphan = crate::antispoof::PortGuard::new("gone0", [2, 0, 0, 0, 0, 9], [ip("10.6.0.9")]);
    host.guard_port(&orphan).expect("orphan");

    let summary = node.reconcile().expect("reconcile");
    assert_eq!(summary.repaired_guards, vec![a.vnic.host_ifname.clone()]);
    assert_eq!(summary.removed_guards, vec!["gone0".to_string()]);
    assert_eq!(bench.world.guards(), want);
    // Nothing left to do the second time.
    let again = node.reconcile().expect("reconcile again");
    assert!(again.repaired_guards.is_empty() && again.removed_guards.is_empty());
}

#[test]
fn check_fails_while_a_port_s_guard_is_missing_and_passes_after_reconcile() {
    let bench = Bench::new();
    let mut node = bench.node();
    let cfg = subnet();
    let a = node
        .attach(&cfg, &veth_named(&bench, "a", "eth0"))
        .expect("a");
    node.check(&cfg.net_key(), &a.vnic.id).expect("check");
    let mut host = bench.world.kernel();
    host.unguard_port(&a.vnic.host_ifname).expect("flush");
    let err = node
        .check(&cfg.net_key(), &a.vnic.id)
        .expect_err("check without the guard");
    assert!(err.to_string().contains("anti-spoofing guard"), "{err}");
    node.reconcile().expect("reconcile");
    node.check(&cfg.net_key(), &a.vnic.id).expect("check again");
}
