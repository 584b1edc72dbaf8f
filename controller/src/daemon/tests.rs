//! The daemon's decisions frame by frame, on a real SQLite store (the process tests in
//! `controller/tests/daemon.rs` run it against a real scheduler).

use std::net::Ipv4Addr;
use std::sync::Arc;

use ssntp::frame::{command, error, event, kind, Frame};
use ssntp::payloads::{
    CnciAssignment, CnciRequest, ConcentratorInstanceAdded, ConcentratorInstanceAddedEvent, Delete,
    InstanceDeleted, NodeReport, NodeReportEvent, NodeType, Payload, Start, StartFailure,
    StartFailureBody, TunnelKind,
};
use uuid::Uuid;

use super::{AdminEvent, Controller};
use crate::model::CnciState;
use crate::{SqliteStore, Store};

struct Bed {
    _dir: tempfile::TempDir,
    store: Arc<SqliteStore>,
    ctl: Controller,
}

fn bed() -> Bed {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(SqliteStore::open_in(dir.path()).expect("store"));
    let ctl = Controller::new(Uuid::new_v4(), store.clone(), TunnelKind::Vxlan);
    Bed {
        _dir: dir,
        store,
        ctl,
    }
}

fn frame(k: u8, operand: u8, payload: Vec<u8>) -> Frame {
    Frame::new(k, operand, Uuid::nil(), payload)
}

fn report(node: Uuid, cncis: &[Uuid]) -> Frame {
    let body = NodeReportEvent {
        node_uuid: node.to_string(),
        node_type: NodeType::NetworkNode,
        underlay_ip: "10.99.0.9".into(),
        external_device: "eth9".into(),
        capacity: 0,
        cncis: cncis.iter().map(Uuid::to_string).collect(),
    };
    frame(kind::EVENT, event::NODE_REPORT, NodeReport(body).to_yaml())
}

fn request(cn: Uuid, tenant: Uuid, subnet: &str) -> Frame {
    let subnet = subnet.parse().expect("subnet");
    let payload = CnciRequest::new(cn, tenant, subnet, Ipv4Addr::new(10, 99, 0, 2)).to_yaml();
    frame(kind::EVENT, event::CNCI_REQUEST, payload)
}

fn ready(cnci: Uuid, ip: &str) -> Frame {
    let body = ConcentratorInstanceAddedEvent {
        instance_uuid: cnci.to_string(),
        tenant_uuid: String::new(),
        concentrator_ip: ip.into(),
        concentrator_mac: String::new(),
    };
    let payload = ConcentratorInstanceAdded(body).to_yaml();
    frame(kind::EVENT, event::CONCENTRATOR_INSTANCE_ADDED, payload)
}

fn started(out: &[Frame]) -> Vec<Uuid> {
    out.iter()
        .filter(|f| (f.kind, f.operand) == (kind::COMMAND, command::START))
        .map(|f| {
            Start::from_yaml(&f.payload)
                .expect("START")
                .instance()
                .expect("uuid")
        })
        .collect()
}

fn assigned(out: &[Frame]) -> Vec<CnciAssignment> {
    out.iter()
        .filter(|f| f.operand == command::CNCI_ASSIGNMENT)
        .map(|f| CnciAssignment::from_yaml(&f.payload).expect("assignment"))
        .collect()
}

/// A network node, one tenant whose CNCI is ready, and the compute node hosting its subnet.
fn ready_tenant(b: &mut Bed) -> (Uuid, Uuid, Uuid, Uuid) {
    let (nn, cn, tenant) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    assert!(b.ctl.handle(&report(nn, &[])).is_empty());
    let out = b.ctl.handle(&request(cn, tenant, "172.16.1.0/24"));
    let cnci = started(&out)[0];
    let out = b.ctl.handle(&ready(cnci, "10.99.0.9"));
    assert_eq!(assigned(&out).len(), 1);
    (nn, cn, tenant, cnci)
}

#[test]
fn a_request_waits_for_the_cnci_and_is_answered_when_it_is_ready() {
    let mut b = bed();
    let (nn, cn, tenant) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    b.ctl.handle(&report(nn, &[]));
    let out = b.ctl.handle(&request(cn, tenant, "172.16.1.0/24"));
    let cnci = started(&out);
    assert_eq!(cnci.len(), 1);
    assert_eq!(
        b.store.cncis().expect("cncis")[0].state,
        CnciState::Starting
    );
    assert!(
        b.ctl
            .handle(&request(cn, tenant, "172.16.1.0/24"))
            .is_empty(),
        "waits"
    );
    let out = b.ctl.handle(&ready(cnci[0], "10.99.0.77"));
    let a = assigned(&out);
    assert_eq!(a.len(), 1);
    assert_eq!(
        a[0].concentrator_ip().ok(),
        Some(Ipv4Addr::new(10, 99, 0, 77))
    );
    assert_eq!(a[0].agent().ok(), Some(cn));
    // Ready now: answered at once, the same.
    let again = assigned(&b.ctl.handle(&request(cn, tenant, "172.16.1.0/24")));
    assert_eq!(again, a);
}

#[test]
fn a_report_restarts_lost_cncis_and_deletes_unknown_ones() {
    let mut b = bed();
    let (nn, _, _, cnci) = ready_tenant(&mut b);
    assert!(
        b.ctl.handle(&report(nn, &[cnci])).is_empty(),
        "it runs: nothing to do"
    );
    let stranger = Uuid::new_v4();
    let out = b.ctl.handle(&report(nn, &[stranger]));
    assert_eq!(started(&out), [cnci], "lost: started again");
    let deleted: Vec<Uuid> = out
        .iter()
        .filter(|f| f.operand == command::DELETE)
        .map(|f| {
            Delete::from_yaml(&f.payload)
                .expect("DELETE")
                .instance()
                .expect("uuid")
        })
        .collect();
    assert_eq!(deleted, [stranger]);
    assert_eq!(
        b.store.cncis().expect("cncis")[0].state,
        CnciState::Starting
    );
    // Its announcement after the restart re-sends the (same) assignment: idempotent for nodes.
    let out = b.ctl.handle(&ready(cnci, "10.99.0.9"));
    assert_eq!(
        assigned(&out).len(),
        1,
        "a restarted CNCI is announced to its compute nodes"
    );
}

#[test]
fn a_lost_cnci_is_replaced_and_its_nodes_told() {
    let mut b = bed();
    let (_, cn, tenant, cnci) = ready_tenant(&mut b);
    let gone = InstanceDeleted::new(cnci).to_yaml();
    let out = b
        .ctl
        .handle(&frame(kind::EVENT, event::INSTANCE_DELETED, gone));
    let new = started(&out);
    assert_eq!(new.len(), 1);
    assert_ne!(new[0], cnci);
    let a = assigned(&b.ctl.handle(&ready(new[0], "10.99.0.9")));
    assert_eq!(a.len(), 1, "the hosting compute node is told");
    assert_eq!(a[0].agent().ok(), Some(cn));
    assert_eq!(a[0].tenant().ok(), Some(tenant));
    assert_eq!(a[0].concentrator().ok(), Some(new[0]));
}

#[test]
fn a_failed_start_is_placed_again_on_the_next_request() {
    let mut b = bed();
    let (nn, cn, tenant) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    b.ctl.handle(&report(nn, &[]));
    let first = started(&b.ctl.handle(&request(cn, tenant, "172.16.1.0/24")))[0];
    let failure = StartFailure(StartFailureBody {
        node_uuid: nn.to_string(),
        instance_uuid: first.to_string(),
        reason: "launch_failure".into(),
        restart: false,
    });
    let out = b
        .ctl
        .handle(&frame(kind::ERROR, error::START_FAILURE, failure.to_yaml()));
    assert!(out.is_empty(), "no immediate retry");
    let second = started(&b.ctl.handle(&request(cn, tenant, "172.16.1.0/24")));
    assert_eq!(second.len(), 1);
    assert_ne!(second[0], first);
    let states: Vec<CnciState> = b
        .store
        .cncis()
        .expect("cncis")
        .iter()
        .map(|c| c.state)
        .collect();
    assert!(states.contains(&CnciState::Gone) && states.contains(&CnciState::Starting));
}

#[test]
fn a_deleted_tenant_s_cnci_is_stopped_once_no_workload_remains() {
    let mut b = bed();
    let (nn, cn, tenant, cnci) = ready_tenant(&mut b);
    b.store.delete_tenant(tenant).expect("delete");
    let event = AdminEvent::TenantDeleted(tenant);
    assert!(b.ctl.admin(&event).is_empty(), "a workload remains");
    b.store
        .subnet_left(tenant, "172.16.1.0/24".parse().expect("cidr"), cn)
        .expect("left");
    let out = b.ctl.admin(&event);
    assert_eq!(out.len(), 1);
    let delete = Delete::from_yaml(&out[0].payload).expect("DELETE");
    assert_eq!(
        (delete.instance().ok(), delete.node().ok()),
        (Some(cnci), Some(nn))
    );
}

#[test]
fn malformed_frames_are_refused_without_a_trace_in_the_store() {
    let mut b = bed();
    let nn = Uuid::new_v4();
    b.ctl.handle(&report(nn, &[]));
    let tenant = Uuid::new_v4();
    for payload in [
        b"cnci_request: [".to_vec(),
        format!("cnci_request:\n  agent_uuid: nope\n  tenant_uuid: {tenant}\n  subnet: 172.16.1.0/24\n  agent_ip: 10.0.0.1\n").into_bytes(),
        format!("cnci_request:\n  agent_uuid: {nn}\n  tenant_uuid: {tenant}\n  subnet: 172.16.1.0/24\n  agent_ip: 10.0.0.300\n").into_bytes(),
    ] {
        assert!(b.ctl.handle(&frame(kind::EVENT, event::CNCI_REQUEST, payload)).is_empty());
    }
    assert!(b.store.tenants().expect("tenants").is_empty());
    assert!(
        b.ctl.handle(&ready(Uuid::new_v4(), "10.0.0.1")).is_empty(),
        "not ours"
    );
}

fn ingress_of(out: &[Frame]) -> Vec<ssntp::payloads::TenantIngress> {
    out.iter()
        .filter(|f| (f.kind, f.operand) == (kind::COMMAND, command::TENANT_INGRESS))
        .map(|f| ssntp::payloads::TenantIngress::from_yaml(&f.payload).expect("TenantIngress"))
        .collect()
}

#[test]
fn the_cnci_gets_the_tenants_ingress_after_each_change_and_on_every_announce() {
    use crate::security::forward::ForwardRequest;
    let mut b = bed();
    let pool = "203.0.113.8/29".parse().expect("pool");
    b.store.set_public_pools(&[pool]).expect("pools");
    let (_, _, tenant, cnci) = ready_tenant(&mut b);
    let spec = ForwardRequest {
        protocol: "tcp".into(),
        public_port: 8080,
        private_ip: Ipv4Addr::new(172, 16, 1, 5),
        private_port: 80,
        public_ip: None,
    }
    .check()
    .expect("spec");
    let forward = b.store.add_forward(tenant, &spec).expect("forward");
    let sent = ingress_of(&b.ctl.admin(&AdminEvent::IngressChanged(tenant)));
    assert_eq!(sent.len(), 1);
    let first = &sent[0];
    assert_eq!(first.concentrator().ok(), Some(cnci));
    assert_eq!(first.forward_ip().ok(), Some(Some(forward.public)));
    assert_eq!(first.forwards().expect("forwards")[0].public_port, 8080);
    assert!(first.0.ssh.is_empty(), "SSH is off");

    b.store.set_ssh(tenant, true).expect("ssh on");
    let on = ingress_of(&b.ctl.admin(&AdminEvent::IngressChanged(tenant)));
    assert_eq!(on[0].ssh().expect("ssh")[0].1, 33000);
    assert_ne!(
        on[0].0.generation, first.0.generation,
        "a new snapshot, a new generation"
    );

    let again = ingress_of(&b.ctl.handle(&ready(cnci, "10.99.0.9")));
    assert_eq!(again, on, "the same snapshot on a re-announce");

    b.store
        .delete_forward(tenant, forward.uuid)
        .expect("delete");
    b.store.set_ssh(tenant, false).expect("ssh off");
    let none = ingress_of(&b.ctl.admin(&AdminEvent::IngressChanged(tenant)));
    assert_eq!(
        none[0].forward_ip().ok(),
        Some(None),
        "the forward IP went back"
    );
    assert!(none[0].0.forwards.is_empty() && none[0].0.ssh.is_empty());
}

#[test]
fn the_tenants_ingress_rules_and_default_go_to_its_cnci_in_order() {
    use crate::security::ingress_rule::{IngressAction, IngressRuleRequest};
    let mut b = bed();
    let (_, _, tenant, _) = ready_tenant(&mut b);
    let plain = ingress_of(&b.ctl.admin(&AdminEvent::IngressChanged(tenant)));
    assert!(plain[0].0.rules.is_empty() && !plain[0].0.default_deny);
    let rule = |action: &str, port: i64, cidr: Option<&str>, position: Option<i64>| {
        IngressRuleRequest {
            action: action.into(),
            protocol: "tcp".into(),
            port_min: Some(port),
            remote_cidr: cidr.map(str::to_string),
            position,
            ..IngressRuleRequest::default()
        }
        .check()
        .expect("valid")
    };
    let (spec, at) = rule("allow", 15432, Some("203.0.113.100/32"), None);
    b.store.add_ingress_rule(tenant, &spec, at).expect("add");
    let (spec, at) = rule("deny", 8080, None, Some(1));
    b.store
        .add_ingress_rule(tenant, &spec, at)
        .expect("insert first");
    b.store
        .set_ingress_default(tenant, IngressAction::Deny)
        .expect("deny");
    let sent = ingress_of(&b.ctl.admin(&AdminEvent::IngressChanged(tenant)));
    let rules = sent[0].rules().expect("rules");
    assert_eq!(rules.len(), 2);
    assert!(!rules[0].allow && rules[0].ports == Some((8080, 8080)));
    assert!(rules[1].allow && rules[1].remote.is_some());
    assert!(sent[0].0.default_deny);
    assert_ne!(sent[0].0.generation, plain[0].0.generation);
    // No forward IP: the rules still go (they guard the tenant's 1:1 public IPs).
    assert_eq!(sent[0].forward_ip().ok(), Some(None));
}

#[test]
fn the_cncis_answer_is_kept_and_only_its_own_cnci_speaks_for_a_tenant() {
    use crate::security::outcome::AppliedState;
    use ssntp::payloads::{TenantIngressApplied, TenantIngressFailure};
    let mut b = bed();
    let (_, _, tenant, cnci) = ready_tenant(&mut b);
    let sent = ingress_of(&b.ctl.admin(&AdminEvent::IngressChanged(tenant)));
    let cmd = &sent[0];
    let wanted = cmd.0.generation;
    let state = |b: &Bed| {
        let o = b.store.ingress_outcome(tenant).expect("read");
        AppliedState::of(o.as_ref(), cnci, wanted)
    };
    assert_eq!(state(&b), AppliedState::Pending);

    let refused = TenantIngressFailure(cmd.outcome("nft said no")).to_yaml();
    b.ctl
        .handle(&frame(kind::ERROR, error::TENANT_INGRESS_FAILURE, refused));
    assert_eq!(state(&b), AppliedState::Refused);
    let kept = b
        .store
        .ingress_outcome(tenant)
        .expect("read")
        .expect("kept");
    assert_eq!(kept.refused.as_deref(), Some("nft said no"));

    let applied = TenantIngressApplied(cmd.outcome("")).to_yaml();
    b.ctl
        .handle(&frame(kind::EVENT, event::TENANT_INGRESS_APPLIED, applied));
    assert_eq!(state(&b), AppliedState::InForce);

    // Another CNCI claiming the tenant is refused and changes nothing.
    let mut forged = cmd.outcome("");
    forged.concentrator_uuid = Uuid::new_v4().to_string();
    forged.generation = wanted ^ 1;
    let forged = TenantIngressApplied(forged).to_yaml();
    b.ctl
        .handle(&frame(kind::EVENT, event::TENANT_INGRESS_APPLIED, forged));
    assert_eq!(state(&b), AppliedState::InForce);
}
