//! Compute-node delivery: reports recorded by the CNI plugin reach the CNCI through the
//! scheduler, whatever was down or killed in between (`ciao-node run`, `ciao-scheduler`,
//! `ciao-cert`, real TLS on loopback).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ciao_tests::{
    ciao_certificates, client_tls, node_tool, require_root, start_scheduler, ComputeNode, Netns,
    Proc, TENANT_A,
};
use ssntp::frame::{event, role};
use ssntp::payloads::{Payload, TenantAdded, TenantRemoved};
use uuid::Uuid;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn delivery(node: &ComputeNode, certs: &Path, port: u16) -> Proc {
    Proc(
        Command::new(node_tool())
            .arg("--state-dir")
            .arg(node.state.path())
            .args([
                "run",
                "--scheduler",
                &format!("127.0.0.1:{port}"),
                "--poll-ms",
                "50",
                "--cert",
            ])
            .arg(certs.join("cert-agent-cn1.pem"))
            .arg("--ca")
            .arg(certs.join("CAcert-localhost.pem"))
            .stderr(Stdio::null())
            .spawn()
            .expect("start ciao-node run"),
    )
}

#[tokio::test]
async fn reports_survive_a_down_scheduler_and_a_killed_daemon_and_arrive_in_order() {
    require_root!();
    let certs = tempfile::tempdir().expect("tempdir");
    let dir = certs.path().to_str().expect("utf-8");
    ciao_certificates(certs.path(), &[("agent", "cn1"), ("cnciagent", "cnci")]);
    let anchor = format!("{dir}/cert-scheduler-localhost.pem");
    let port = free_port();

    // The scheduler is down. The node's daemon runs and keeps retrying; an attach is prompt.
    let node = ComputeNode::new();
    let daemon = delivery(&node, certs.path(), port);
    let (c1, c2) = (Netns::new("c1"), Netns::new("c2"));
    let conf_a = node.conf("1.1.0", "a", TENANT_A, "172.16.1.0/24");
    let conf_b = node.conf("1.1.0", "b", TENANT_A, "172.16.2.0/24");
    let started = Instant::now();
    node.cni("ADD", "c1", &c1.path().display().to_string(), &conf_a)
        .expect_ok("ADD with the scheduler down");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "attach must not wait for the scheduler"
    );

    // kill -9 between record and delivery; meanwhile an attach and a detach of subnet B.
    drop(daemon);
    node.cni("ADD", "c2", &c2.path().display().to_string(), &conf_b)
        .expect_ok("ADD b");
    node.cni("DEL", "c2", "", &conf_b).expect_ok("DEL b");
    assert_eq!(
        node.report_events(),
        ["tenant_added", "tenant_added", "tenant_removed"]
    );

    // The scheduler comes up with the CNCI connected; the daemon comes back.
    let (_sched, _) = start_scheduler(&[
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--cert",
        &anchor,
        "--ca",
        &format!("{dir}/CAcert-localhost.pem"),
    ]);
    let cnci: Uuid = "3390740c-dce9-48d6-b83a-a717417072ce"
        .parse()
        .expect("uuid");
    let tls = client_tls(
        &certs.path().join("cert-cnciagent-cnci.pem"),
        &certs.path().join("CAcert-localhost.pem"),
    );
    let mut session = ssntp::client::dial(
        &format!("127.0.0.1:{port}"),
        "127.0.0.1",
        tls,
        cnci,
        role::CNCIAGENT,
    )
    .await
    .expect("CNCI connects");
    let _daemon = delivery(&node, certs.path(), port);

    let mut got = Vec::new();
    while got.len() < 3 {
        let frame = tokio::time::timeout(Duration::from_secs(20), session.reader.frame())
            .await
            .expect("reports arrive")
            .expect("read")
            .expect("frame");
        // Both parse as the CNCI parses them, with this project's tunnel keys present.
        let (body, checked) = if frame.operand == event::TENANT_ADDED {
            let p = TenantAdded::from_yaml(&frame.payload).expect("payload");
            let checked = p.remote_subnet().expect("a valid remote subnet");
            (p.0, checked)
        } else {
            let p = TenantRemoved::from_yaml(&frame.payload).expect("payload");
            let checked = p.remote_subnet().expect("a valid remote subnet");
            (p.0, checked)
        };
        got.push((
            frame.operand,
            body.tenant_subnet.clone(),
            body.tunnel_kind.is_some(),
            checked.tunnel_id,
        ));
    }
    assert_eq!(
        got.iter()
            .map(|(op, s, tunnel, _)| (*op, s.as_str(), *tunnel))
            .collect::<Vec<_>>(),
        [
            (event::TENANT_ADDED, "172.16.1.0/24", true),
            (event::TENANT_ADDED, "172.16.2.0/24", true),
            (event::TENANT_REMOVED, "172.16.2.0/24", true),
        ],
        "every report, in the order recorded"
    );
    // Delivered reports leave the queue.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !node.reports().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(node.reports().is_empty(), "{:?}", node.report_events());
    node.cni("DEL", "c1", "", &conf_a).expect_ok("DEL a");
}
