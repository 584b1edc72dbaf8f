//! First and last instance of a subnet on a node.

use super::*;

#[test]
fn the_first_attach_creates_bridge_and_tunnel_and_the_last_detach_removes_them() {
    let bench = Bench::new();
    let mut node = bench.node();
    node.view().expect("open");
    let before = bench.picture();
    let cfg = subnet();
    let key = cfg.net_key();
    let bridge = crate::ids::bridge_name(cfg.tenant, cfg.subnet);
    let tunnel = crate::ids::tunnel_name(cfg.tenant, cfg.subnet);

    let a = node.attach(&cfg, &veth(&bench, "a")).expect("a");
    assert!(a.first_instance && a.default_route);
    let host = bench.world.snapshot().ns("host");
    assert_eq!(host.links[&bridge].kind, "bridge");
    assert!(host.links[&bridge].up);
    assert_eq!(host.links[&tunnel].kind, "vxlan");
    assert_eq!(host.links[&tunnel].master.as_deref(), Some(bridge.as_str()));
    assert_eq!(
        host.links[&tunnel].mtu, 1450,
        "uplink 1500 minus VXLAN's 50"
    );
    assert!(bench.world.firewall_rules().contains(&bridge));
    assert_eq!(events(&bench), [ReportEvent::TenantAdded]);
    let inside = bench.world.snapshot().ns("netns-1");
    assert!(inside.links["eth0"].up);
    assert!(inside
        .addresses
        .contains(&("eth0".into(), format!("{}", a.address))));
    assert_eq!(inside.routes.len(), 1, "the default route via the gateway");

    bench.world.clear_calls();
    let b = node
        .attach(&cfg, &veth(&bench, "b"))
        .expect_err("the same ifname twice in one netns");
    assert!(matches!(b, crate::Error::Conflict(_)), "{b}");
    bench.world.clear_calls();
    let b = node
        .attach(&cfg, &veth_named(&bench, "b", "eth1"))
        .expect("b");
    assert!(!b.first_instance);
    let created: Vec<_> = bench
        .world
        .calls()
        .into_iter()
        .filter(|c| c.op == "create_link")
        .collect();
    assert_eq!(created.len(), 1, "only b's veth: {created:?}");
    assert_eq!(
        events(&bench),
        [ReportEvent::TenantAdded],
        "no second report"
    );

    node.detach(&key, &a.vnic.id).expect("detach a");
    let host = bench.world.snapshot().ns("host");
    assert!(host.links.contains_key(&bridge) && host.links.contains_key(&tunnel));
    assert_eq!(events(&bench), [ReportEvent::TenantAdded]);

    node.detach(&key, &b.vnic.id).expect("detach b");
    assert_eq!(
        events(&bench),
        [ReportEvent::TenantAdded, ReportEvent::TenantRemoved]
    );
    // Reports aside (they wait for delivery), the node is as before the first attach.
    let (world, mut state) = bench.picture();
    state.retain(|f| !f.starts_with("reports/"));
    assert_eq!((world, state), before);
    node.detach(&key, &b.vnic.id)
        .expect("detaching again is fine");
}

#[test]
fn each_subnet_of_a_node_gets_its_own_conntrack_zone_kept_in_its_record() {
    let bench = Bench::new();
    let mut node = bench.node();
    let first = subnet();
    let second = SubnetConfig {
        subnet: "10.7.0.0/24".parse().expect("subnet"),
        ..subnet()
    };
    node.attach(&first, &veth(&bench, "a")).expect("a");
    node.attach(&second, &veth_named(&bench, "b", "eth1"))
        .expect("b");
    node.attach(&first, &veth_named(&bench, "c", "eth2"))
        .expect("c");
    let state = crate::state::StateDir::open(bench.dir.path()).expect("state");
    let nets = state.lock().expect("lock").nets().expect("nets");
    let zones: BTreeSet<u16> = nets.iter().map(|n| n.ct_zone).collect();
    assert_eq!(nets.len(), 2);
    assert_eq!(zones.len(), 2, "{zones:?}");
    assert!(!zones.contains(&0));
}
