//! Teardown attempts every step and returns every failure; the journal finishes the rest.

use super::*;
use crate::fake::{Fault, Trigger};

#[test]
fn a_firewall_failure_no_longer_stops_the_tunnel_and_bridge_deletion() {
    let bench = Bench::new();
    let mut node = bench.node();
    node.view().expect("open");
    let clean = bench.picture();
    let cfg = subnet();
    let a = node.attach(&cfg, &veth(&bench, "a")).expect("attach");
    let bridge = crate::ids::bridge_name(cfg.tenant, cfg.subnet);
    let tunnel = crate::ids::tunnel_name(cfg.tenant, cfg.subnet);

    bench
        .world
        .inject(Trigger::Op("revoke_bridge", 1), Fault::Fail(libc::EPERM));
    let err = node
        .detach(&cfg.net_key(), &a.vnic.id)
        .expect_err("nft failed");
    assert_eq!(err.errno(), Some(libc::EPERM), "{err}");
    let host = bench.world.snapshot().ns("host");
    assert!(!host.links.contains_key(&tunnel), "the tunnel went anyway");
    assert!(!host.links.contains_key(&bridge), "the bridge went anyway");
    assert!(bench.world.firewall_rules().contains(&bridge));
    assert!(
        bench.state().contains("journal.json"),
        "the retry is journaled"
    );

    // The next call finishes it: the rule goes, the records go, one TenantRemoved.
    node.view().expect("recover");
    assert_eq!(
        events(&bench),
        [ReportEvent::TenantAdded, ReportEvent::TenantRemoved]
    );
    let (world, mut state) = bench.picture();
    state.retain(|f| !f.starts_with("reports/"));
    assert_eq!((world, state), clean);
}

#[test]
fn every_failure_of_a_teardown_is_returned() {
    let bench = Bench::new();
    let mut node = bench.node();
    let cfg = subnet();
    let a = node.attach(&cfg, &veth(&bench, "a")).expect("attach");
    let bridge = crate::ids::bridge_name(cfg.tenant, cfg.subnet);
    // Detach deletes: the veth (1st delete_link), the tunnel (2nd), the bridge (3rd).
    bench
        .world
        .inject(Trigger::Op("revoke_bridge", 1), Fault::Fail(libc::EPERM));
    bench
        .world
        .inject(Trigger::Op("delete_link", 2), Fault::Fail(libc::EBUSY));
    let err = node
        .detach(&cfg.net_key(), &a.vnic.id)
        .expect_err("two failures");
    let errnos: Vec<_> = err.failures().iter().map(|e| e.errno()).collect();
    assert_eq!(errnos, [Some(libc::EPERM), Some(libc::EBUSY)], "{err}");
    let host = bench.world.snapshot().ns("host");
    assert!(
        !host.links.contains_key(&bridge),
        "attempted after the tunnel failed"
    );
    node.detach(&cfg.net_key(), &a.vnic.id)
        .expect("the retry finishes");
    let host = bench.world.snapshot().ns("host");
    assert_eq!(host.links.keys().collect::<Vec<_>>(), ["eth0", "lo"]);
    assert!(bench.world.firewall_rules().is_empty());
}

#[test]
fn a_port_that_cannot_be_removed_keeps_its_record_for_the_retry() {
    let bench = Bench::new();
    let mut node = bench.node();
    let cfg = subnet();
    let a = node.attach(&cfg, &veth(&bench, "a")).expect("attach");
    bench
        .world
        .inject(Trigger::Op("delete_link", 1), Fault::Fail(libc::EBUSY));
    let before = bench.state();
    node.detach(&cfg.net_key(), &a.vnic.id)
        .expect_err("port stuck");
    let mut after = bench.state();
    assert!(after.remove("journal.json"), "the retry is journaled");
    assert_eq!(after, before, "records, addresses and subnet all kept");
    let host = bench.world.snapshot().ns("host");
    assert!(host.links.contains_key(&a.vnic.host_ifname));
    // The next call's recovery finishes the detach.
    assert!(node
        .vnic(&cfg.net_key(), &a.vnic.id)
        .expect("read")
        .is_none());
    assert_eq!(
        bench.world.snapshot().ns("host").links.len(),
        2,
        "lo and eth0"
    );
}
