//! Reconcile and GC on the fake: leftovers labelled as this node's are removed, others kept.

use super::*;
use crate::ids;

fn plant(bench: &Bench, name: &str, kind: LinkKind, alias: Option<String>) {
    let mut k = bench.world.kernel();
    let link = k.create_link(&NewLink::new(name, kind)).expect("plant");
    if let Some(alias) = alias {
        k.set_alias(link.index, &alias).expect("alias");
    }
}

#[test]
fn reconcile_removes_planted_leftovers_of_this_node_only() {
    let bench = Bench::new();
    let mut node = bench.node();
    let cfg = subnet();
    let kept = node.attach(&cfg, &veth(&bench, "kept")).expect("attach");
    let tag = node.state().lock().expect("lock").node_tag().expect("tag");
    let before = bench.picture();
    let gone = "6a7a.10.9.0.0-24";
    plant(
        &bench,
        "cb-stale",
        LinkKind::Bridge,
        Some(ids::bridge_alias(&tag, gone)),
    );
    plant(
        &bench,
        "cv-stale",
        LinkKind::Bridge,
        Some(ids::vnic_alias(&tag, gone, "x:eth0")),
    );
    plant(
        &bench,
        "cb-foreign",
        LinkKind::Bridge,
        Some(ids::bridge_alias("someothernode", gone)),
    );
    plant(&bench, "plain0", LinkKind::Bridge, None);

    let summary = node.reconcile().expect("reconcile");
    let mut removed = summary.removed_links.clone();
    removed.sort();
    assert_eq!(removed, ["cb-stale", "cv-stale"]);
    assert_eq!(summary.repaired_nets, [cfg.net_key()]);
    assert!(summary.removed_vnics.is_empty());
    let host = bench.world.snapshot().ns("host");
    assert!(host.links.contains_key("cb-foreign") && host.links.contains_key("plain0"));
    assert!(node.check(&cfg.net_key(), &kept.vnic.id).is_ok());
    let mut k = bench.world.kernel();
    for name in ["cb-foreign", "plain0"] {
        assert!(k.delete_link_by_name(name).expect("unplant"));
    }
    assert_eq!(bench.picture(), before, "nothing else changed");
}

#[test]
fn reconcile_drops_a_vnic_whose_namespace_vanished_and_repairs_a_lost_bridge() {
    let bench = Bench::new();
    let mut node = bench.node();
    node.view().expect("open");
    let clean = bench.picture();
    let cfg = subnet();
    node.attach(&cfg, &veth(&bench, "gone")).expect("attach");
    // The workload's namespace goes: the kernel takes the veth pair with it.
    bench.world.remove_netns(bench.netns_id);
    let summary = node.reconcile().expect("reconcile");
    assert_eq!(summary.removed_vnics.len(), 1);
    assert_eq!(
        events(&bench),
        [ReportEvent::TenantAdded, ReportEvent::TenantRemoved]
    );
    let (world, mut state) = bench.picture();
    state.retain(|f| !f.starts_with("reports/"));
    let mut expected = clean.0.clone();
    expected.namespaces.remove("netns-1");
    assert_eq!((world, state), (expected, clean.1));
}

#[test]
fn gc_keeps_listed_vnics_and_removes_the_rest() {
    let bench = Bench::new();
    let mut node = bench.node();
    let cfg = subnet();
    let a = node
        .attach(&cfg, &veth_named(&bench, "a", "eth0"))
        .expect("a");
    let b = node
        .attach(&cfg, &veth_named(&bench, "b", "eth1"))
        .expect("b");
    let summary = node.gc(None, std::slice::from_ref(&a.vnic.id)).expect("gc");
    assert_eq!(summary.removed_vnics, [b.vnic.id.key()]);
    let inside = bench.world.snapshot().ns("netns-1");
    assert!(inside.links.contains_key("eth0") && !inside.links.contains_key("eth1"));
}
