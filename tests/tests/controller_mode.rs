//! Compute nodes without CNCI configuration (issue 12, item 3): containers whose CNI config
//! names only tenant and subnet are attached at once and reach their same-node neighbours;
//! `ciao-node run` asks for the CNCI (EVENT CnciRequest through the scheduler), and a
//! controller's COMMAND CnciAssignment gives the subnet its tunnel, after which the containers
//! on both nodes reach each other through the tenant's CNCI. The controller here is this test:
//! an SSNTP session with the controller role that answers the requests.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use serde_json::json;
use ssntp::frame::{command, event, kind, role, Frame};
use ssntp::payloads::{CnciAssignment, CnciAssignmentCmd, CnciRequest, Payload};
use testkit::cluster::{in_netns, Cluster, Cn, Tenant, Workload, NN_IP, SCHEDULER_ADDR};
use testkit::{require_root, TENANT_A};

const S1: &str = "172.16.1.0/24";
const TUNNEL_ID: u32 = 4242;

fn controlled(c: &Cluster, cn: Cn, t: &Tenant, ip: &str) -> Workload {
    c.container_with(cn, t, S1, ip, json!({"cnci": null}))
        .expect("container without cnci")
}

/// `ciao-node show --json` of a node, run in its namespace (so link states are its).
fn show(c: &Cluster, cn: Cn) -> serde_json::Value {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &c.cn(cn).ns.name])
        .arg(testkit::node_tool())
        .arg("--state-dir")
        .arg(c.cn(cn).state.path())
        .args(["show", "--json"])
        .output()
        .expect("ciao-node show");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("show json")
}

/// Plays the controller: waits (up to 20 s) for a CnciRequest from each of `nodes` distinct
/// agents, answers each with the tenant's CNCI, and returns the requests by agent.
fn answer_requests(c: &Cluster, t: &Tenant, nodes: usize) -> BTreeMap<String, CnciRequest> {
    let tls = testkit::client_tls(&c.certs.controller(), &c.certs.ca());
    let me = uuid::Uuid::new_v4();
    let (tenant, cnci) = (t.tenant.clone(), t.cnci.clone());
    in_netns(&c.underlay.path(), move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let mut s = ssntp::client::dial(SCHEDULER_ADDR, "localhost", tls, me, role::CONTROLLER)
                .await
                .expect("controller session");
            let mut asked = BTreeMap::new();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            while asked.len() < nodes {
                let frame = tokio::time::timeout_at(deadline, s.reader.frame())
                    .await
                    .expect("CnciRequests from every node within 20 s")
                    .expect("read")
                    .expect("session open");
                if (frame.kind, frame.operand) != (kind::EVENT, event::CNCI_REQUEST) {
                    continue;
                }
                let req = CnciRequest::from_yaml(&frame.payload).expect("CnciRequest payload");
                assert_eq!(req.tenant().expect("tenant").to_string(), tenant);
                let agent = req.agent().expect("agent").to_string();
                let answer = CnciAssignment(CnciAssignmentCmd {
                    agent_uuid: agent.clone(),
                    tenant_uuid: tenant.clone(),
                    subnet: req.0.subnet.clone(),
                    concentrator_uuid: cnci.clone(),
                    concentrator_ip: NN_IP.into(),
                    tunnel_kind: netcore::TunnelKind::Vxlan,
                    tunnel_id: TUNNEL_ID,
                });
                let out = Frame::new(
                    kind::COMMAND,
                    command::CNCI_ASSIGNMENT,
                    me,
                    answer.to_yaml(),
                );
                s.writer.frame(&out).await.expect("send CnciAssignment");
                asked.insert(agent, req);
            }
            asked
        })
    })
}

/// Pings `ip` from `w` until it answers (deadline 20 s).
fn wait_ping(w: &Workload, ip: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !w.ping(ip, 1) {
        assert!(Instant::now() < deadline, "{} never reached {ip}", w.ip);
    }
}

#[test]
fn containers_without_cnci_config_work_locally_at_once_and_across_nodes_once_assigned() {
    require_root!();
    let mut cluster = Cluster::new().expect("cluster");
    let t = cluster.add_tenant(TENANT_A).expect("tenant with its CNCI");
    let a1 = controlled(&cluster, Cn::Cn1, &t, "172.16.1.10");
    let a3 = controlled(&cluster, Cn::Cn1, &t, "172.16.1.12");
    let a2 = controlled(&cluster, Cn::Cn2, &t, "172.16.1.11");
    // Same node, same subnet: no CNCI needed.
    assert!(a1.ping("172.16.1.12", 3), "same-node neighbour at once");
    let cn1 = show(&cluster, Cn::Cn1);
    let net = &cn1["nets"][0];
    assert!(net["awaits_cnci"]["since"].is_string(), "{cn1}");
    assert_eq!(net["tunnel_state"], "missing", "{cn1}");

    let asked = answer_requests(&cluster, &t, 2);
    let ips: Vec<Ipv4Addr> = asked.values().map(|r| r.agent_ip().expect("ip")).collect();
    for cn in [Cn::Cn1, Cn::Cn2] {
        let want: Ipv4Addr = cn.ip().parse().expect("cn ip");
        assert!(ips.contains(&want), "{want} asked: {ips:?}");
    }
    cluster
        .wait_programmed(&t, S1, &[Cn::Cn1.ip(), Cn::Cn2.ip()])
        .expect("the CNCI hears TenantAdded from both nodes");
    wait_ping(&a1, "172.16.1.11");
    wait_ping(&a2, "172.16.1.12");
    for cn in [Cn::Cn1, Cn::Cn2] {
        let view = show(&cluster, cn);
        let net = &view["nets"][0];
        assert!(net["awaits_cnci"].is_null(), "{view}");
        assert_eq!(net["net"]["tunnel_id"], TUNNEL_ID, "{view}");
        assert_eq!(net["tunnel_state"], "present", "{view}");
    }
    drop((a1, a2, a3));
}
