//! Controller mode: a subnet attached without a CNCI gets its bridge at once and its tunnel when
//! the controller's assignment arrives.

use std::panic::{catch_unwind, AssertUnwindSafe};

use super::*;
use crate::assign::AssignOutcome;
use crate::fake::{Fault, InjectedCrash, Trigger};
use crate::tunnel::TunnelKind;

fn controlled() -> SubnetConfig {
    let s = subnet();
    SubnetConfig::controlled(s.tenant, s.subnet)
}

fn cnci(n: u8) -> Cnci {
    Cnci {
        uuid: Uuid::from_u128(0xc0c0 + u128::from(n)),
        ip: Ipv4Addr::new(192, 0, 2, n),
    }
}

fn assign(node: &mut Node<FakeKernel>, c: Cnci, id: u32) -> crate::Result<AssignOutcome> {
    let cfg = controlled();
    node.assign_cnci(cfg.tenant, cfg.subnet, c, TunnelKind::Vxlan, id)
}

fn has_link(bench: &Bench, name: &str) -> bool {
    bench.world.snapshot().ns("host").links.contains_key(name)
}

#[test]
fn an_attach_without_cnci_makes_the_bridge_only_and_the_assignment_adds_the_tunnel() {
    let bench = Bench::new();
    let mut node = bench.node();
    let cfg = controlled();
    let bridge = crate::ids::bridge_name(cfg.tenant, cfg.subnet);
    let tunnel = crate::ids::tunnel_name(cfg.tenant, cfg.subnet);

    let a = node.attach(&cfg, &veth(&bench, "a")).expect("a");
    assert!(a.first_instance);
    assert!(has_link(&bench, &bridge) && !has_link(&bench, &tunnel));
    assert_eq!(
        a.vnic.mtu, 1450,
        "1500 (no underlay known) minus the largest overhead"
    );
    assert!(events(&bench).is_empty(), "no TenantAdded without a CNCI");
    let waiting = node.awaiting_cnci().expect("awaiting");
    assert_eq!(waiting.len(), 1);
    assert_eq!(
        (waiting[0].tenant, waiting[0].subnet),
        (cfg.tenant, cfg.subnet)
    );
    assert!(waiting[0].since > 0);
    node.check(&cfg.net_key(), &a.vnic.id)
        .expect("an awaiting subnet checks out without a tunnel");

    assert_eq!(
        assign(&mut node, cnci(1), 4242).expect("assign"),
        AssignOutcome::Created
    );
    let host = bench.world.snapshot().ns("host");
    assert_eq!(host.links[&tunnel].kind, "vxlan");
    assert_eq!(host.links[&tunnel].master.as_deref(), Some(bridge.as_str()));
    assert_eq!(host.links[&tunnel].mtu, 1450);
    assert_eq!(events(&bench), [ReportEvent::TenantAdded]);
    assert!(node.awaiting_cnci().expect("awaiting").is_empty());
    let report = &node.view().expect("view").pending_reports[0];
    assert_eq!(report.concentrator_uuid, cnci(1).uuid);
    assert_eq!(report.tunnel_id, 4242);
    assert_eq!(
        report.agent_ip,
        Ipv4Addr::new(192, 0, 2, 10),
        "the underlay toward the CNCI"
    );

    let picture = bench.picture();
    assert_eq!(
        assign(&mut node, cnci(1), 4242).expect("again"),
        AssignOutcome::Unchanged
    );
    assert_eq!(
        bench.picture(),
        picture,
        "the same assignment changes nothing"
    );

    // A second workload joins in controller mode; a static one naming the same CNCI and id too.
    let b = node
        .attach(&cfg, &veth_named(&bench, "b", "eth1"))
        .expect("b");
    assert!(!b.first_instance);
    let mut same = SubnetConfig::new(cfg.tenant, cfg.subnet, cnci(1));
    same.tunnel_id = Some(4242);
    node.attach(&same, &veth_named(&bench, "c", "eth2"))
        .expect("identical static joins");
    let other = SubnetConfig::new(cfg.tenant, cfg.subnet, cnci(2));
    let err = node
        .attach(&other, &veth_named(&bench, "d", "eth3"))
        .expect_err("another CNCI");
    assert!(matches!(err, crate::Error::Conflict(_)), "{err}");

    for (owner, ifname) in [("a", "eth0"), ("b", "eth1"), ("c", "eth2")] {
        let id = VnicId {
            owner: owner.into(),
            ifname: ifname.into(),
        };
        node.detach(&cfg.net_key(), &id).expect("detach");
    }
    assert!(!has_link(&bench, &bridge) && !has_link(&bench, &tunnel));
    assert_eq!(
        events(&bench),
        [ReportEvent::TenantAdded, ReportEvent::TenantRemoved]
    );
    assert!(
        bench.world.snapshot().ns("host").links.len() <= 2,
        "only lo and eth0 left"
    );
}

#[test]
fn a_subnet_that_never_got_its_cnci_leaves_without_a_report_and_a_late_assignment_is_ignored() {
    let bench = Bench::new();
    let mut node = bench.node();
    let cfg = controlled();
    let a = node.attach(&cfg, &veth(&bench, "a")).expect("a");
    node.detach(&cfg.net_key(), &a.vnic.id).expect("detach");
    assert!(events(&bench).is_empty());
    assert!(node.view().expect("view").nets.is_empty());
    assert_eq!(
        assign(&mut node, cnci(1), 7).expect("late"),
        AssignOutcome::NotHosted
    );
    assert!(events(&bench).is_empty());
}

#[test]
fn a_new_assignment_replaces_the_tunnel_and_a_static_subnet_keeps_its_own() {
    let bench = Bench::new();
    let mut node = bench.node();
    let cfg = controlled();
    node.attach(&cfg, &veth(&bench, "a")).expect("a");
    assign(&mut node, cnci(1), 7).expect("first");
    assert_eq!(
        assign(&mut node, cnci(2), 8).expect("second"),
        AssignOutcome::Replaced
    );
    assert_eq!(
        events(&bench),
        [
            ReportEvent::TenantAdded,
            ReportEvent::TenantRemoved,
            ReportEvent::TenantAdded
        ]
    );
    let reports = node.view().expect("view").pending_reports;
    assert_eq!(
        reports[1].concentrator_uuid,
        cnci(1).uuid,
        "removed at the old CNCI"
    );
    assert_eq!(
        (reports[2].concentrator_uuid, reports[2].tunnel_id),
        (cnci(2).uuid, 8)
    );
    let net = &node.view().expect("view").nets[0].net;
    assert_eq!((net.config.cnci, net.tunnel_id), (Some(cnci(2)), 8));

    // A static subnet is the operator's: an assignment for it is ignored.
    let bench = Bench::new();
    let mut node = bench.node();
    node.attach(&subnet(), &veth(&bench, "a")).expect("static");
    let s = subnet();
    let outcome = node
        .assign_cnci(s.tenant, s.subnet, cnci(2), TunnelKind::Vxlan, 9)
        .expect("ignored");
    assert_eq!(outcome, AssignOutcome::Static);
    // A controller-mode attach joins the static subnet.
    node.attach(&controlled(), &veth_named(&bench, "b", "eth1"))
        .expect("joins");
}

#[test]
fn a_static_attach_naming_a_cnci_is_refused_while_the_subnet_awaits_one() {
    let bench = Bench::new();
    let mut node = bench.node();
    node.attach(&controlled(), &veth(&bench, "a")).expect("a");
    let err = node
        .attach(&subnet(), &veth_named(&bench, "b", "eth1"))
        .expect_err("awaiting");
    assert!(err.to_string().contains("awaits the controller"), "{err}");
}

#[test]
fn an_assigned_id_another_subnet_holds_is_refused_and_changes_nothing() {
    let bench = Bench::new();
    let mut node = bench.node();
    let mut holder = subnet();
    holder.subnet = "10.7.0.0/24".parse().expect("subnet");
    holder.tunnel_id = Some(77);
    node.attach(&holder, &veth(&bench, "h"))
        .expect("static holder of vxlan 77");
    node.attach(&controlled(), &veth_named(&bench, "a", "eth1"))
        .expect("a");
    let before = bench.picture();
    let err = assign(&mut node, cnci(1), 77).expect_err("collision");
    assert!(matches!(err, crate::Error::Conflict(_)), "{err}");
    assert_eq!(bench.picture(), before);
    assert_eq!(node.awaiting_cnci().expect("awaiting").len(), 1);
    for bad in [0, 1 << 24] {
        let err = assign(&mut node, cnci(1), bad).expect_err("out of range");
        assert!(err.to_string().contains("tunnel.id"), "{err}");
    }
}

#[test]
fn a_crash_or_failure_at_each_kernel_call_of_an_assignment_is_undone_then_retried_cleanly() {
    // The clean run, for its kernel calls and its result.
    let clean = Bench::new();
    let mut node = clean.node();
    node.attach(&controlled(), &veth(&clean, "a")).expect("a");
    let awaiting = clean.picture();
    clean.world.clear_calls();
    assign(&mut node, cnci(1), 5).expect("assign");
    let calls: Vec<_> = clean.world.calls().iter().map(|c| c.op).collect();
    assert!(calls.len() >= 4, "{calls:?}");
    let assigned = clean.picture();
    let strip = |p: &(Snapshot, BTreeSet<String>)| p.1.clone();

    for step in 1..=calls.len() {
        for fault in [Fault::Panic, Fault::Fail(libc::EIO)] {
            let bench = Bench::new();
            let mut node = bench.node();
            node.attach(&controlled(), &veth(&bench, "a")).expect("a");
            bench.world.clear_calls();
            bench.world.inject(Trigger::Nth(step), fault);
            match fault {
                Fault::Panic => {
                    let killed = catch_unwind(AssertUnwindSafe(|| {
                        let _ = assign(&mut node, cnci(1), 5);
                    }))
                    .expect_err("killed");
                    assert!(killed.downcast_ref::<InjectedCrash>().is_some());
                    drop(node);
                    node = bench.node();
                    node.view().expect("recovering view");
                }
                Fault::Fail(_) => {
                    assign(&mut node, cnci(1), 5).expect_err("the injected failure");
                }
            }
            assert_eq!(
                bench.picture().0,
                awaiting.0,
                "step {step} {fault:?}: kernel undone"
            );
            assert_eq!(
                strip(&bench.picture()),
                strip(&awaiting),
                "step {step} {fault:?}"
            );
            assert_eq!(node.awaiting_cnci().expect("awaiting").len(), 1);
            assert_eq!(
                assign(&mut node, cnci(1), 5).expect("retry"),
                AssignOutcome::Created
            );
            assert_eq!(
                bench.picture().0,
                assigned.0,
                "step {step} {fault:?}: retried"
            );
            assert_eq!(events(&bench), [ReportEvent::TenantAdded], "step {step}");
        }
    }
}

#[test]
fn a_crash_at_each_kernel_call_of_a_first_attach_without_cnci_is_undone_then_retried_cleanly() {
    let clean = Bench::new();
    let mut node = clean.node();
    node.view().expect("view");
    let before = clean.picture();
    clean.world.clear_calls();
    node.attach(&controlled(), &veth(&clean, "c1"))
        .expect("attach");
    let calls: Vec<_> = clean.world.calls().iter().map(|c| c.op).collect();
    let after = clean.picture();
    for step in 1..=calls.len() {
        let bench = Bench::new();
        let mut node = bench.node();
        node.view().expect("view");
        bench.world.clear_calls();
        bench.world.inject(Trigger::Nth(step), Fault::Panic);
        catch_unwind(AssertUnwindSafe(|| {
            let _ = node.attach(&controlled(), &veth(&bench, "c1"));
        }))
        .expect_err("killed");
        drop(node);
        let mut next = bench.node();
        next.view().expect("recovering view");
        assert_eq!(bench.picture().0, before.0, "step {step}: kernel undone");
        assert_eq!(bench.picture().1, before.1, "step {step}: state undone");
        next.attach(&controlled(), &veth(&bench, "c1"))
            .unwrap_or_else(|e| panic!("step {step}: retry: {e}"));
        assert_eq!(bench.picture().0, after.0, "step {step}: retried cleanly");
        assert!(events(&bench).is_empty(), "step {step}: no report");
    }
}

#[test]
fn reconcile_keeps_an_awaiting_subnet_without_tunnel_and_removes_a_stray_one() {
    let bench = Bench::new();
    let mut node = bench.node();
    let cfg = controlled();
    let a = node.attach(&cfg, &veth(&bench, "a")).expect("a");
    let tag = node.state().lock().expect("lock").node_tag().expect("tag");
    let before = bench.picture();
    // What a killed assignment could leave: the subnet's tunnel, while it awaits its CNCI.
    let tunnel = crate::ids::tunnel_name(cfg.tenant, cfg.subnet);
    let mut k = bench.world.kernel();
    let link = k
        .create_link(&NewLink::new(&tunnel, LinkKind::Bridge))
        .expect("plant");
    k.set_alias(link.index, &crate::ids::tunnel_alias(&tag, &cfg.net_key()))
        .expect("alias");
    let summary = node.reconcile().expect("reconcile");
    assert_eq!(summary.removed_links, [tunnel]);
    assert_eq!(summary.repaired_nets, [cfg.net_key()]);
    assert_eq!(bench.picture(), before, "only the stray tunnel went");
    assert_eq!(node.awaiting_cnci().expect("awaiting").len(), 1);
    let summary = node.gc(None, std::slice::from_ref(&a.vnic.id)).expect("gc");
    assert!(summary.removed_vnics.is_empty());
    assert!(events(&bench).is_empty());
}
