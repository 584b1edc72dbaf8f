//! The scheduler's routes for the controller's frames (START and DELETE of a CNCI,
//! CnciAssignment, CnciRefused, CnciRequest, NodeReport, InstanceDeleted, StartFailure,
//! TenantIngress and its answers) and each refusal,
//! with real TLS sessions against the in-process scheduler.

use std::net::Ipv4Addr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ssntp::certs::{Authority, Issued, Names, Shape, Validity};
use ssntp::client::{dial, Session};
use ssntp::frame::{command, error, event, kind, role, Frame};
use ssntp::payloads::{
    CnciAssignment, CnciAssignmentCmd, CnciRefused, CnciRequest, Delete, InstanceDeleted,
    NodeReport, NodeReportEvent, NodeType, Payload, Start, StartFailure, StartFailureBody,
    SubnetAssignment, SubnetRequest, TunnelKind,
};
use ssntp::server::{Scheduler, SchedulerConfig};
use ssntp::tls::ServerOptions;
use ssntp::tls::{ca_from_pem, client_config, server_config, ClientOptions, Identity};
use uuid::Uuid;

/// The CA and one leaf per role, made once (RSA key generation is slow in debug builds).
struct Pki {
    ca: Authority,
    leaves: Vec<(u32, Issued)>,
}

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let names = Names::new(&["localhost"], &[]);
        let ca = Authority::new(Shape::Ciao, "routes test", Validity::default(), &names)
            .expect("anchor");
        let leaves = [
            role::CONTROLLER,
            role::AGENT,
            role::NETAGENT,
            role::CNCIAGENT,
        ]
        .into_iter()
        .map(|r| (r, ca.issue(r, &Names::default()).expect("leaf")))
        .collect();
        Pki { ca, leaves }
    })
}

/// An in-process scheduler on a loopback TLS port; returns its address.
async fn bed() -> String {
    let p = pki();
    let ca = ca_from_pem(p.ca.cert_pem().as_bytes()).expect("CA");
    let identity = Identity::from_pem(p.ca.anchor().combined_pem().as_bytes()).expect("anchor");
    let tls = server_config(&ca, identity, &ServerOptions::default()).expect("server TLS");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listen");
    let addr = listener.local_addr().expect("address").to_string();
    let scheduler = Scheduler::new(SchedulerConfig::new(Uuid::new_v4()));
    tokio::spawn(scheduler.run_tls(listener, tls));
    addr
}

async fn connect(addr: &str, uuid: Uuid, role_bits: u32) -> Session {
    let p = pki();
    let leaf = &p
        .leaves
        .iter()
        .find(|(r, _)| *r == role_bits)
        .expect("role")
        .1;
    let ca = ca_from_pem(p.ca.cert_pem().as_bytes()).expect("CA");
    let identity = Identity::from_pem(leaf.combined_pem().as_bytes()).expect("leaf");
    let tls: Arc<rustls::ClientConfig> =
        client_config(&ca, identity, &ClientOptions::default()).expect("client TLS");
    dial(addr, "localhost", tls, uuid, role_bits)
        .await
        .expect("connects")
}

async fn send(s: &mut Session, kind: u8, operand: u8, payload: Vec<u8>) {
    s.writer
        .frame(&Frame::new(kind, operand, Uuid::nil(), payload))
        .await
        .expect("send");
}

/// Waits until the scheduler has routed everything `s` sent before: it answers an unknown
/// frame type in order. Returns the frames that arrived meanwhile.
async fn barrier(s: &mut Session) -> Vec<Frame> {
    send(s, 9, 0, Vec::new()).await;
    let mut other = Vec::new();
    loop {
        let f = next_any(s).await;
        if (f.kind, f.operand) == (kind::ERROR, error::INVALID_FRAME_TYPE) {
            return other;
        }
        other.push(f);
    }
}

async fn next_any(s: &mut Session) -> Frame {
    tokio::time::timeout(Duration::from_secs(10), s.reader.frame())
        .await
        .expect("a frame in time")
        .expect("read")
        .expect("open session")
}

/// The next frame that is not a NodeConnected/NodeDisconnected notice.
async fn next(s: &mut Session) -> Frame {
    loop {
        let f = next_any(s).await;
        let notice = f.kind == kind::EVENT
            && matches!(f.operand, event::NODE_CONNECTED | event::NODE_DISCONNECTED);
        if !notice {
            return f;
        }
    }
}

fn start(tenant: Uuid, cnci: Uuid, node: Uuid) -> Vec<u8> {
    Start::cnci(tenant, cnci, node).to_yaml()
}

fn assignment(agent: Uuid) -> Vec<u8> {
    CnciAssignment(CnciAssignmentCmd {
        agent_uuid: agent.to_string(),
        tenant_uuid: Uuid::new_v4().to_string(),
        subnet: "172.16.1.0/24".into(),
        concentrator_uuid: Uuid::new_v4().to_string(),
        concentrator_ip: "10.99.0.3".into(),
        tunnel_kind: TunnelKind::Vxlan,
        tunnel_id: 7,
    })
    .to_yaml()
}

fn request(agent: Uuid) -> Vec<u8> {
    let subnet = "172.16.1.0/24".parse().expect("subnet");
    CnciRequest::new(agent, Uuid::new_v4(), subnet, Ipv4Addr::new(10, 99, 0, 2)).to_yaml()
}

fn report(node: Uuid, node_type: NodeType) -> Vec<u8> {
    NodeReport(NodeReportEvent {
        node_uuid: node.to_string(),
        node_type,
        underlay_ip: "10.99.0.9".into(),
        external_device: "eth1".into(),
        capacity: 100,
        cncis: Vec::new(),
    })
    .to_yaml()
}

/// The master controller, a backup controller, a network node and a compute node.
struct Cast {
    master: Session,
    backup: Session,
    nn: Session,
    nn_id: Uuid,
    cn: Session,
    cn_id: Uuid,
}

async fn cast(bed: &str) -> Cast {
    let master = connect(bed, Uuid::new_v4(), role::CONTROLLER).await;
    let backup = connect(bed, Uuid::new_v4(), role::CONTROLLER).await;
    let (nn_id, cn_id) = (Uuid::new_v4(), Uuid::new_v4());
    let nn = connect(bed, nn_id, role::NETAGENT).await;
    let cn = connect(bed, cn_id, role::AGENT).await;
    Cast {
        master,
        backup,
        nn,
        nn_id,
        cn,
        cn_id,
    }
}

#[tokio::test]
async fn start_goes_to_the_named_network_node_and_an_absent_one_fails() {
    let bed = bed().await;
    let mut c = cast(&bed).await;
    let (tenant, cnci) = (Uuid::new_v4(), Uuid::new_v4());
    send(
        &mut c.master,
        kind::COMMAND,
        command::START,
        start(tenant, cnci, c.nn_id),
    )
    .await;
    let got = next(&mut c.nn).await;
    assert_eq!((got.kind, got.operand), (kind::COMMAND, command::START));
    let got = Start::from_yaml(&got.payload).expect("START payload");
    assert_eq!(got.instance().expect("instance"), cnci);
    assert_eq!(got.tenant().expect("tenant"), tenant);

    // An absent node, and a node without the network role: StartFailure no_net_cn back to
    // the master, and nothing to the compute node.
    for node in [Uuid::new_v4(), c.cn_id] {
        send(
            &mut c.master,
            kind::COMMAND,
            command::START,
            start(tenant, cnci, node),
        )
        .await;
        let f = next(&mut c.master).await;
        assert_eq!((f.kind, f.operand), (kind::ERROR, error::START_FAILURE));
        let body = StartFailure::from_yaml(&f.payload)
            .expect("StartFailure payload")
            .0;
        assert_eq!(body.reason, "no_net_cn");
        assert_eq!(body.node_uuid, node.to_string());
        assert_eq!(body.instance_uuid, cnci.to_string());
    }
    send(
        &mut c.master,
        kind::COMMAND,
        command::DELETE,
        Delete::new(cnci, c.cn_id).to_yaml(),
    )
    .await;
    assert_eq!(
        next(&mut c.cn).await.operand,
        command::DELETE,
        "no START reached it first"
    );
}

#[tokio::test]
async fn delete_and_assignment_reach_the_named_node_with_the_right_role() {
    let bed = bed().await;
    let mut c = cast(&bed).await;
    let cnci = Uuid::new_v4();
    for node in [c.nn_id, c.cn_id] {
        send(
            &mut c.master,
            kind::COMMAND,
            command::DELETE,
            Delete::new(cnci, node).to_yaml(),
        )
        .await;
    }
    for s in [&mut c.nn, &mut c.cn] {
        let f = next(s).await;
        assert_eq!((f.kind, f.operand), (kind::COMMAND, command::DELETE));
        assert_eq!(
            Delete::from_yaml(&f.payload)
                .expect("DELETE")
                .instance()
                .ok(),
            Some(cnci)
        );
    }

    // CnciAssignment goes only to compute nodes: the one naming the network node is dropped.
    send(
        &mut c.master,
        kind::COMMAND,
        command::CNCI_ASSIGNMENT,
        assignment(c.nn_id),
    )
    .await;
    send(
        &mut c.master,
        kind::COMMAND,
        command::CNCI_ASSIGNMENT,
        assignment(c.cn_id),
    )
    .await;
    let f = next(&mut c.cn).await;
    assert_eq!(
        (f.kind, f.operand),
        (kind::COMMAND, command::CNCI_ASSIGNMENT)
    );
    let got = CnciAssignment::from_yaml(&f.payload).expect("assignment");
    assert_eq!(got.agent().ok(), Some(c.cn_id));
    assert_eq!(got.tunnel_id().ok(), Some(7));
    barrier(&mut c.master).await;
    send(
        &mut c.master,
        kind::COMMAND,
        command::DELETE,
        Delete::new(cnci, c.nn_id).to_yaml(),
    )
    .await;
    assert_eq!(
        next(&mut c.nn).await.operand,
        command::DELETE,
        "no assignment reached it"
    );
}

/// CnciRefused is routed as CnciAssignment is: from the master only, to the compute node it
/// names only.
#[tokio::test]
async fn a_refusal_reaches_only_the_compute_node_it_names_from_the_master() {
    let bed = bed().await;
    let mut c = cast(&bed).await;
    let tenant = Uuid::new_v4();
    let refusal = |agent: Uuid, reason: &str| {
        CnciRefused::new(agent, tenant, "10.1.2.0/24", reason).to_yaml()
    };
    // Dropped: naming the network node, or sent by the backup controller.
    send(
        &mut c.master,
        kind::ERROR,
        error::CNCI_REFUSED,
        refusal(c.nn_id, "to the network node"),
    )
    .await;
    send(
        &mut c.backup,
        kind::ERROR,
        error::CNCI_REFUSED,
        refusal(c.cn_id, "from the backup"),
    )
    .await;
    barrier(&mut c.backup).await;
    barrier(&mut c.master).await;
    send(
        &mut c.master,
        kind::ERROR,
        error::CNCI_REFUSED,
        refusal(c.cn_id, "overlaps 10.1.0.0/16"),
    )
    .await;
    let f = next(&mut c.cn).await;
    assert_eq!((f.kind, f.operand), (kind::ERROR, error::CNCI_REFUSED));
    let got = CnciRefused::from_yaml(&f.payload).expect("refusal");
    assert_eq!(got.agent().ok(), Some(c.cn_id));
    assert_eq!(got.tenant().ok(), Some(tenant));
    assert_eq!(
        got.subnet().ok().map(|s| s.to_string()),
        Some("10.1.2.0/24".into())
    );
    assert_eq!(
        got.0.reason, "overlaps 10.1.0.0/16",
        "only the master's reached it"
    );
    send(
        &mut c.master,
        kind::COMMAND,
        command::DELETE,
        Delete::new(Uuid::new_v4(), c.nn_id).to_yaml(),
    )
    .await;
    assert_eq!(
        next(&mut c.nn).await.operand,
        command::DELETE,
        "no refusal reached the network node"
    );
}

#[tokio::test]
async fn a_backup_controller_commands_nobody() {
    let bed = bed().await;
    let mut c = cast(&bed).await;
    let cnci = Uuid::new_v4();
    let b = &mut c.backup;
    send(
        b,
        kind::COMMAND,
        command::START,
        start(Uuid::new_v4(), cnci, c.nn_id),
    )
    .await;
    send(
        b,
        kind::COMMAND,
        command::DELETE,
        Delete::new(cnci, c.nn_id).to_yaml(),
    )
    .await;
    send(
        b,
        kind::COMMAND,
        command::DELETE,
        Delete::new(cnci, c.cn_id).to_yaml(),
    )
    .await;
    send(
        b,
        kind::COMMAND,
        command::CNCI_ASSIGNMENT,
        assignment(c.cn_id),
    )
    .await;
    let seen = barrier(b).await;
    assert!(
        seen.iter()
            .all(|f| f.operand != error::START_FAILURE || f.kind != kind::ERROR),
        "a backup gets no StartFailure either: its START was not routed"
    );
    // Whatever the master sends next is the first thing each node receives.
    send(
        &mut c.master,
        kind::COMMAND,
        command::REFRESH_CNCI,
        Vec::new(),
    )
    .await;
    send(
        &mut c.master,
        kind::COMMAND,
        command::CNCI_ASSIGNMENT,
        assignment(c.cn_id),
    )
    .await;
    let marker = Uuid::new_v4();
    send(
        &mut c.master,
        kind::COMMAND,
        command::DELETE,
        Delete::new(marker, c.nn_id).to_yaml(),
    )
    .await;
    let f = next(&mut c.nn).await;
    assert_eq!(f.operand, command::DELETE);
    assert_eq!(
        Delete::from_yaml(&f.payload)
            .expect("DELETE")
            .instance()
            .ok(),
        Some(marker)
    );
    let f = next(&mut c.cn).await;
    assert_eq!(f.operand, command::CNCI_ASSIGNMENT);
}

#[tokio::test]
async fn node_events_reach_every_controller_only_from_the_node_they_name() {
    let bed = bed().await;
    let mut c = cast(&bed).await;
    let cnci_id = Uuid::new_v4();
    let mut cnci = connect(&bed, cnci_id, role::CNCIAGENT).await;

    // Refused: a CnciRequest naming another agent, or from a network node; a NodeReport
    // naming another node, or from a CNCI.
    send(
        &mut c.cn,
        kind::EVENT,
        event::CNCI_REQUEST,
        request(c.nn_id),
    )
    .await;
    send(
        &mut c.nn,
        kind::EVENT,
        event::CNCI_REQUEST,
        request(c.nn_id),
    )
    .await;
    send(
        &mut c.cn,
        kind::EVENT,
        event::NODE_REPORT,
        report(c.nn_id, NodeType::NetworkNode),
    )
    .await;
    send(
        &mut cnci,
        kind::EVENT,
        event::NODE_REPORT,
        report(cnci_id, NodeType::NetworkNode),
    )
    .await;
    for s in [&mut c.cn, &mut c.nn, &mut cnci] {
        barrier(s).await;
    }

    // Accepted, in this order.
    send(
        &mut c.cn,
        kind::EVENT,
        event::CNCI_REQUEST,
        request(c.cn_id),
    )
    .await;
    barrier(&mut c.cn).await;
    send(
        &mut c.nn,
        kind::EVENT,
        event::NODE_REPORT,
        report(c.nn_id, NodeType::NetworkNode),
    )
    .await;
    barrier(&mut c.nn).await;
    send(
        &mut c.cn,
        kind::EVENT,
        event::NODE_REPORT,
        report(c.cn_id, NodeType::ComputeNode),
    )
    .await;
    barrier(&mut c.cn).await;
    send(
        &mut c.nn,
        kind::EVENT,
        event::INSTANCE_DELETED,
        InstanceDeleted::new(cnci_id).to_yaml(),
    )
    .await;
    barrier(&mut c.nn).await;
    let failure = StartFailure(StartFailureBody {
        node_uuid: c.nn_id.to_string(),
        instance_uuid: cnci_id.to_string(),
        reason: "launch_failure".into(),
        restart: false,
    });
    send(
        &mut c.nn,
        kind::ERROR,
        error::START_FAILURE,
        failure.to_yaml(),
    )
    .await;

    for ctl in [&mut c.master, &mut c.backup] {
        let mut got = Vec::new();
        for _ in 0..5 {
            let f = next(ctl).await;
            got.push((f.kind, f.operand));
            if f.operand == event::CNCI_REQUEST && f.kind == kind::EVENT {
                let r = CnciRequest::from_yaml(&f.payload).expect("request");
                assert_eq!(r.agent().ok(), Some(c.cn_id));
            }
            if f.operand == event::NODE_REPORT && f.kind == kind::EVENT && got.len() == 2 {
                let r = NodeReport::from_yaml(&f.payload).expect("report");
                assert_eq!(r.node().ok(), Some(c.nn_id));
                assert_eq!(r.underlay_ip().ok(), Some(Ipv4Addr::new(10, 99, 0, 9)));
            }
        }
        assert_eq!(
            got,
            [
                (kind::EVENT, event::CNCI_REQUEST),
                (kind::EVENT, event::NODE_REPORT),
                (kind::EVENT, event::NODE_REPORT),
                (kind::EVENT, event::INSTANCE_DELETED),
                (kind::ERROR, error::START_FAILURE),
            ]
        );
    }
}

// ---- the subnet left out: SubnetRequest and SubnetAssignment --------------------------------

#[tokio::test]
async fn subnet_frames_route_like_the_cnci_ones() {
    let bed = bed().await;
    let mut c = cast(&bed).await;
    let tenant = Uuid::new_v4();
    let req = |agent| SubnetRequest::new(agent, tenant).to_yaml();

    // Refused: a request naming another agent, or from a network node.
    send(&mut c.cn, kind::EVENT, event::SUBNET_REQUEST, req(c.nn_id)).await;
    send(&mut c.nn, kind::EVENT, event::SUBNET_REQUEST, req(c.nn_id)).await;
    barrier(&mut c.cn).await;
    barrier(&mut c.nn).await;
    // Accepted: to every controller.
    send(&mut c.cn, kind::EVENT, event::SUBNET_REQUEST, req(c.cn_id)).await;
    for ctl in [&mut c.master, &mut c.backup] {
        let f = next(ctl).await;
        assert_eq!((f.kind, f.operand), (kind::EVENT, event::SUBNET_REQUEST));
        let r = SubnetRequest::from_yaml(&f.payload).expect("request");
        assert_eq!(r.agent().ok(), Some(c.cn_id));
    }

    // The assignment goes only to the compute node it names; not from a backup.
    let range = (Ipv4Addr::new(172, 16, 0, 2), Ipv4Addr::new(172, 16, 0, 31));
    let subnet = "172.16.0.0/24".parse().expect("subnet");
    let answer = |agent| SubnetAssignment::granted(agent, tenant, subnet, range).to_yaml();
    let op = command::SUBNET_ASSIGNMENT;
    send(&mut c.master, kind::COMMAND, op, answer(c.nn_id)).await;
    send(&mut c.backup, kind::COMMAND, op, answer(c.cn_id)).await;
    barrier(&mut c.backup).await;
    send(&mut c.master, kind::COMMAND, op, answer(c.cn_id)).await;
    let f = next(&mut c.cn).await;
    assert_eq!((f.kind, f.operand), (kind::COMMAND, op));
    let got = SubnetAssignment::from_yaml(&f.payload).expect("assignment");
    assert_eq!(got.outcome().ok(), Some(Ok((subnet, range.0, range.1))));
    // Nothing else came: the next frame after a barrier is the barrier's own answer.
    assert!(barrier(&mut c.cn).await.is_empty(), "one assignment only");
    assert!(
        barrier(&mut c.nn).await.is_empty(),
        "none to the network node"
    );
}

#[tokio::test]
async fn tenant_ingress_reaches_its_cnci_and_its_answers_every_controller() {
    use ssntp::payloads::{
        TenantIngress, TenantIngressApplied, TenantIngressCmd, TenantIngressFailure,
    };
    let bed = bed().await;
    let mut c = cast(&bed).await;
    let cnci_id = Uuid::new_v4();
    let mut cnci = connect(&bed, cnci_id, role::CNCIAGENT).await;
    let tenant = Uuid::new_v4();
    let cmd = |to: Uuid| {
        TenantIngress(TenantIngressCmd {
            concentrator_uuid: to.to_string(),
            tenant_uuid: tenant.to_string(),
            generation: 3,
            forward_ip: "203.0.113.9".into(),
            forwards: Vec::new(),
            ssh: Vec::new(),
            ..TenantIngressCmd::default()
        })
    };
    let op = command::TENANT_INGRESS;
    // Only the master's, only to the CNCI it names.
    send(&mut c.backup, kind::COMMAND, op, cmd(cnci_id).to_yaml()).await;
    barrier(&mut c.backup).await;
    send(&mut c.master, kind::COMMAND, op, cmd(cnci_id).to_yaml()).await;
    let f = next(&mut cnci).await;
    assert_eq!((f.kind, f.operand), (kind::COMMAND, op));
    assert_eq!(
        TenantIngress::from_yaml(&f.payload).ok(),
        Some(cmd(cnci_id))
    );
    assert!(barrier(&mut cnci).await.is_empty(), "one command only");

    // The answers: to every controller, only from the CNCI they name.
    let applied = TenantIngressApplied(cmd(cnci_id).outcome("")).to_yaml();
    let forged = TenantIngressApplied(cmd(c.cn_id).outcome("")).to_yaml();
    send(
        &mut c.cn,
        kind::EVENT,
        event::TENANT_INGRESS_APPLIED,
        forged,
    )
    .await;
    barrier(&mut c.cn).await;
    send(
        &mut cnci,
        kind::EVENT,
        event::TENANT_INGRESS_APPLIED,
        applied,
    )
    .await;
    let failed = TenantIngressFailure(cmd(cnci_id).outcome("no")).to_yaml();
    send(
        &mut cnci,
        kind::ERROR,
        error::TENANT_INGRESS_FAILURE,
        failed,
    )
    .await;
    for ctl in [&mut c.master, &mut c.backup] {
        let f = next(ctl).await;
        assert_eq!(
            (f.kind, f.operand),
            (kind::EVENT, event::TENANT_INGRESS_APPLIED)
        );
        let got = TenantIngressApplied::from_yaml(&f.payload).expect("applied");
        assert_eq!(
            got.0.concentrator_uuid,
            cnci_id.to_string(),
            "not the forged one"
        );
        let f = next(ctl).await;
        assert_eq!(
            (f.kind, f.operand),
            (kind::ERROR, error::TENANT_INGRESS_FAILURE)
        );
    }
}

#[tokio::test]
async fn a_nodes_security_groups_answer_reaches_every_controller_only_under_its_own_name() {
    use ssntp::payloads::{SecurityGroupsApplied, SecurityGroupsOutcome};
    let bed = bed().await;
    let mut c = cast(&bed).await;
    let answer = |node: Uuid| {
        SecurityGroupsApplied(SecurityGroupsOutcome {
            agent_uuid: node.to_string(),
            tenant_uuid: Uuid::new_v4().to_string(),
            generation: 9,
            reason: String::new(),
        })
        .to_yaml()
    };
    let op = event::SECURITY_GROUPS_APPLIED;
    // Another node's name: dropped.
    send(&mut c.cn, kind::EVENT, op, answer(c.nn_id)).await;
    barrier(&mut c.cn).await;
    send(&mut c.cn, kind::EVENT, op, answer(c.cn_id)).await;
    for ctl in [&mut c.master, &mut c.backup] {
        let f = next(ctl).await;
        assert_eq!((f.kind, f.operand), (kind::EVENT, op));
        let got = SecurityGroupsApplied::from_yaml(&f.payload).expect("applied");
        assert_eq!(got.0.agent_uuid, c.cn_id.to_string(), "not the forged one");
    }
}
