//! Controller mode: a subnet the controller refused stops asking, says why, refuses new
//! attaches naming the reason, and goes with its last VNIC; a subnet overlapping another of
//! the tenant's on the same node is refused at attach.

use super::*;
use crate::refuse::RefuseOutcome;
use crate::tunnel::TunnelKind;
use crate::Error;

const WHY: &str = "subnet 10.6.0.0/24 overlaps the tenant's subnet 10.6.0.0/16";

fn controlled() -> SubnetConfig {
    let s = subnet();
    SubnetConfig::controlled(s.tenant, s.subnet)
}

fn refuse(node: &mut Node<FakeKernel>, why: &str) -> RefuseOutcome {
    let cfg = controlled();
    node.refuse_cnci(cfg.tenant, cfg.subnet, why)
        .expect("refuse")
}

fn vnic_count(bench: &Bench, cfg: &SubnetConfig) -> usize {
    let node = bench.node();
    let locked = node.state().lock().expect("lock");
    locked.vnics(&cfg.net_key()).expect("vnics").len()
}

/// An invalid `subnet` whose message holds every needle.
fn assert_invalid_subnet(err: Error, needles: &[&str]) {
    match err {
        Error::Invalid { field, message } => {
            assert_eq!(field, "subnet");
            for n in needles {
                assert!(message.contains(n), "{message:?} lacks {n:?}");
            }
        }
        other => panic!("not an invalid subnet: {other}"),
    }
}

#[test]
fn a_refused_subnet_stops_asking_refuses_attaches_and_goes_with_its_last_vnic() {
    let bench = Bench::new();
    let mut node = bench.node();
    let cfg = controlled();
    let a = node.attach(&cfg, &veth(&bench, "a")).expect("a");
    assert_eq!(node.awaiting_cnci().expect("awaiting").len(), 1);

    assert_eq!(refuse(&mut node, WHY), RefuseOutcome::Recorded);
    // Persisted: a fresh process sees it, and asks for nothing.
    let mut again = bench.node();
    assert!(again.awaiting_cnci().expect("awaiting").is_empty());
    assert_eq!(refuse(&mut again, WHY), RefuseOutcome::Unchanged);
    let view = crate::inspect::inspect(bench.dir.path())
        .expect("inspect")
        .expect("state");
    let net = &view.nets[0];
    assert!(net.awaits_cnci.is_none());
    let refused = net.refused.as_ref().expect("refused");
    assert_eq!(refused.reason, WHY);
    assert!(refused.since_unix > 0 && refused.since.ends_with('Z'));

    let before = bench.picture();
    let err = node
        .attach(&cfg, &veth_named(&bench, "b", "eth1"))
        .expect_err("an attach into a refused subnet");
    assert_invalid_subnet(err, &["10.6.0.0/24", "refused by the controller", WHY]);
    assert_eq!(bench.picture(), before, "nothing attached, nothing changed");
    assert_eq!(vnic_count(&bench, &cfg), 1);

    // The last VNIC takes the record; the subnet is then new again and asks again.
    node.detach(&cfg.net_key(), &a.vnic.id).expect("detach");
    assert_eq!(refuse(&mut node, WHY), RefuseOutcome::NotHosted);
    node.attach(&cfg, &veth(&bench, "c")).expect("c");
    assert_eq!(node.awaiting_cnci().expect("awaiting").len(), 1);
}

#[test]
fn a_refusal_leaves_an_assigned_or_static_subnet_alone() {
    let bench = Bench::new();
    let mut node = bench.node();
    let cfg = controlled();
    node.attach(&cfg, &veth(&bench, "a")).expect("a");
    let cnci = Cnci {
        uuid: Uuid::from_u128(0xc0c5),
        ip: CNCI_IP,
    };
    node.assign_cnci(cfg.tenant, cfg.subnet, cnci, TunnelKind::Vxlan, 77)
        .expect("assign");
    assert_eq!(refuse(&mut node, WHY), RefuseOutcome::Assigned);
    node.attach(&cfg, &veth_named(&bench, "b", "eth1"))
        .expect("the assigned subnet still takes workloads");

    let bench = Bench::new();
    let mut node = bench.node();
    node.attach(&subnet(), &veth(&bench, "a")).expect("static");
    assert_eq!(refuse(&mut node, WHY), RefuseOutcome::Static);
}

#[test]
fn a_subnet_overlapping_another_of_the_tenant_on_this_node_is_refused_at_attach() {
    let bench = Bench::new();
    let mut node = bench.node();
    let wide = SubnetConfig::controlled(subnet().tenant, "10.6.0.0/16".parse().expect("cidr"));
    node.attach(&wide, &veth(&bench, "a")).expect("wide");
    let before = bench.picture();
    for (narrow, owner) in [(controlled(), "b"), (subnet(), "c")] {
        let err = node
            .attach(&narrow, &veth_named(&bench, owner, "eth1"))
            .expect_err("overlapping");
        assert_invalid_subnet(err, &["10.6.0.0/24", "overlaps 10.6.0.0/16"]);
        assert_eq!(bench.picture(), before, "nothing attached");
    }
    // Another tenant may use the same addresses.
    let other = SubnetConfig::controlled(Uuid::from_u128(0x7e4b), controlled().subnet);
    node.attach(&other, &veth_named(&bench, "d", "eth1"))
        .expect("another tenant");
}
