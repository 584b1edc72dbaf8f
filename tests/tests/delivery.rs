//! Compute-node delivery: reports recorded by the CNI plugin reach the CNCI through the
//! scheduler, whatever was down or killed in between (`ciao-node run`, `ciao-scheduler`,
//! `ciao-cert`, real TLS on loopback).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ssntp::conn::{FrameReader, FrameWriter, ServerHello};
use ssntp::frame::{event, kind, role, Frame};
use ssntp::payloads::{
    ConcentratorInstanceAdded, ConcentratorInstanceAddedEvent, Payload, TenantAdded, TenantRemoved,
    TenantSync,
};
use testkit::{
    ciao_certificates, client_tls, node_tool, require_root, start_scheduler, ComputeNode, Netns,
    Proc, TENANT_A,
};
use tokio::io::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use uuid::Uuid;

/// The CNCI UUID that `ComputeNode::conf` names.
const CNCI: &str = "3390740c-dce9-48d6-b83a-a717417072ce";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Starts the real scheduler on `port` with the scheduler certificate in `certs`.
fn scheduler_on(certs: &Path, port: u16) -> Proc {
    let (cert, ca) = (
        certs.join("cert-scheduler-localhost.pem"),
        certs.join("CAcert-localhost.pem"),
    );
    let (sched, _) = start_scheduler(&[
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--cert",
        cert.to_str().expect("utf-8"),
        "--ca",
        ca.to_str().expect("utf-8"),
    ]);
    sched
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
    ciao_certificates(certs.path(), &[("agent", "cn1"), ("cnciagent", "cnci")]);
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
    let _sched = scheduler_on(certs.path(), port);
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

type StandInReader = FrameReader<ReadHalf<TlsStream<TcpStream>>>;
type StandInWriter = FrameWriter<WriteHalf<TlsStream<TcpStream>>>;

/// A scheduler stand-in: real TLS with the scheduler's certificate and the real server
/// handshake, so the test sees exactly what the node sends and can send it frames itself.
struct StandIn {
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl StandIn {
    async fn bind(certs: &Path, port: u16) -> Self {
        let identity = ssntp::tls::Identity::from_pem(
            &std::fs::read(certs.join("cert-scheduler-localhost.pem")).expect("read cert"),
        )
        .expect("identity");
        let ca = ssntp::tls::ca_from_pem(
            &std::fs::read(certs.join("CAcert-localhost.pem")).expect("read CA"),
        )
        .expect("CA");
        let config = ssntp::tls::server_config(&ca, identity, &Default::default()).expect("TLS");
        StandIn {
            listener: TcpListener::bind(("127.0.0.1", port)).await.expect("bind"),
            acceptor: tokio_rustls::TlsAcceptor::from(config),
        }
    }

    /// The next node session, after the server handshake.
    async fn session(&self) -> (StandInReader, StandInWriter) {
        let accept = async {
            let (tcp, _) = self.listener.accept().await.expect("accept");
            let tls = self.acceptor.accept(tcp).await.expect("TLS handshake");
            let roles = ssntp::tls::peer_roles(tls.get_ref().1);
            let (r, w) = tokio::io::split(tls);
            let (mut reader, mut writer) = (FrameReader::new(r), FrameWriter::new(w));
            let hello = ServerHello {
                uuid: Uuid::new_v4(),
                role: role::SCHEDULER,
                configuration: Vec::new(),
            };
            let client = ssntp::conn::server_handshake(
                &mut reader,
                &mut writer,
                roles,
                &hello,
                Duration::from_secs(10),
            )
            .await
            .expect("SSNTP handshake");
            assert_eq!(client.role, role::AGENT);
            (reader, writer)
        };
        tokio::time::timeout(Duration::from_secs(30), accept)
            .await
            .expect("the node connects")
    }
}

/// Frames a node sends to one CNCI, summarised: TenantAdded / TenantRemoved subnets and the
/// subnets a TenantSync lists.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Heard {
    Added(String),
    Removed(String),
    Sync(Vec<String>),
}

async fn next_heard(reader: &mut StandInReader) -> (Uuid, Heard) {
    let frame = tokio::time::timeout(Duration::from_secs(20), reader.frame())
        .await
        .expect("a frame arrives")
        .expect("read")
        .expect("frame");
    assert_eq!(frame.kind, kind::EVENT, "{frame:?}");
    match frame.operand {
        event::TENANT_ADDED => {
            let p = TenantAdded::from_yaml(&frame.payload).expect("payload");
            p.remote_subnet().expect("a valid remote subnet");
            (
                p.concentrator().expect("cnci"),
                Heard::Added(p.0.tenant_subnet),
            )
        }
        event::TENANT_REMOVED => {
            let p = TenantRemoved::from_yaml(&frame.payload).expect("payload");
            (
                p.concentrator().expect("cnci"),
                Heard::Removed(p.0.tenant_subnet),
            )
        }
        event::TENANT_SYNC => {
            let p = TenantSync::from_yaml(&frame.payload).expect("payload");
            p.remote_subnets().expect("valid entries");
            let mut listed: Vec<_> =
                p.0.subnets
                    .iter()
                    .map(|s| s.tenant_subnet.clone())
                    .collect();
            listed.sort();
            (p.concentrator().expect("cnci"), Heard::Sync(listed))
        }
        other => panic!("unexpected event {other}"),
    }
}

/// Reads until a TenantSync arrives; returns the TenantAdded subnets before it (sorted) and
/// the sync's list. Every frame must be for `cnci`.
async fn until_sync(reader: &mut StandInReader, cnci: Uuid) -> (Vec<String>, Vec<String>) {
    let mut added = Vec::new();
    loop {
        let (to, heard) = next_heard(reader).await;
        assert_eq!(to, cnci, "a frame for another CNCI: {heard:?}");
        match heard {
            Heard::Added(s) => added.push(s),
            Heard::Sync(listed) => {
                added.sort();
                return (added, listed);
            }
            Heard::Removed(s) => panic!("unexpected TenantRemoved {s}"),
        }
    }
}

async fn wait_delivered(node: &ComputeNode) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !node.reports().is_empty() {
        assert!(Instant::now() < deadline, "{:?}", node.report_events());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const SUBNETS: [&str; 3] = ["172.16.1.0/24", "172.16.2.0/24", "172.16.3.0/24"];

/// A node with one workload in each of [`SUBNETS`] (tenant A, one CNCI).
struct Attached {
    node: ComputeNode,
    _workloads: Vec<Netns>,
}

fn attach_three() -> Attached {
    let node = ComputeNode::new();
    let mut workloads = Vec::new();
    for (i, subnet) in SUBNETS.iter().enumerate() {
        let ns = Netns::new("w");
        let conf = node.conf("1.1.0", &format!("n{i}"), TENANT_A, subnet);
        node.cni(
            "ADD",
            &format!("w{i}"),
            &ns.path().display().to_string(),
            &conf,
        )
        .expect_ok("ADD");
        workloads.push(ns);
    }
    Attached {
        node,
        _workloads: workloads,
    }
}

fn detach(node: &ComputeNode, i: usize) {
    let conf = node.conf("1.1.0", &format!("n{i}"), TENANT_A, SUBNETS[i]);
    node.cni("DEL", &format!("w{i}"), "", &conf)
        .expect_ok("DEL");
}

fn all_subnets() -> Vec<String> {
    SUBNETS.iter().map(|s| s.to_string()).collect()
}

fn cnci() -> Uuid {
    CNCI.parse().expect("uuid")
}

/// A node with [`attach_three`] and its delivery daemon connected to a stand-in scheduler.
/// Fields drop in order: the session and the daemon go before the node and the certificates.
struct Delivering {
    writer: StandInWriter,
    reader: StandInReader,
    daemon: Proc,
    stand_in: StandIn,
    at: Attached,
    port: u16,
    certs: tempfile::TempDir,
}

async fn delivering() -> Delivering {
    let certs = tempfile::tempdir().expect("tempdir");
    ciao_certificates(certs.path(), &[("agent", "cn1")]);
    let port = free_port();
    let at = attach_three();
    let stand_in = StandIn::bind(certs.path(), port).await;
    let daemon = delivery(&at.node, certs.path(), port);
    let (reader, writer) = stand_in.session().await;
    Delivering {
        writer,
        reader,
        daemon,
        stand_in,
        at,
        port,
        certs,
    }
}

#[tokio::test]
async fn a_node_reannounces_everything_to_a_new_scheduler_after_the_old_one_died() {
    require_root!();
    let mut d = delivering().await;
    // The three reports, then the re-announcement of the current set.
    let (reports, none) = until_sync_after_reports(&mut d.reader).await;
    assert_eq!(reports, all_subnets());
    assert_eq!(none, all_subnets());
    wait_delivered(&d.at.node).await;

    // The scheduler dies with everything it was told; a new one listens on the same port.
    drop((d.reader, d.writer, d.stand_in));
    let stand_in = StandIn::bind(d.certs.path(), d.port).await;
    let (mut reader, _writer) = stand_in.session().await;
    let (added, listed) = until_sync(&mut reader, cnci()).await;
    assert_eq!(added, all_subnets(), "TenantAdded for every subnet again");
    assert_eq!(listed, all_subnets(), "a TenantSync listing exactly them");
}

/// The first session: TenantAdded reports for every subnet, then the announcement (the same
/// TenantAdded again and a TenantSync). Returns the reported subnets and the sync's list.
async fn until_sync_after_reports(reader: &mut StandInReader) -> (Vec<String>, Vec<String>) {
    let mut reported = Vec::new();
    for _ in SUBNETS {
        let (to, heard) = next_heard(reader).await;
        assert_eq!(to, cnci());
        match heard {
            Heard::Added(s) => reported.push(s),
            other => panic!("expected a TenantAdded report, got {other:?}"),
        }
    }
    reported.sort();
    let (again, listed) = until_sync(reader, cnci()).await;
    assert_eq!(again, reported);
    (reported, listed)
}

#[tokio::test]
async fn a_node_daemon_killed_and_restarted_reannounces_its_set() {
    require_root!();
    let mut d = delivering().await;
    until_sync_after_reports(&mut d.reader).await;
    wait_delivered(&d.at.node).await;

    drop(d.daemon); // kill -9
    let _daemon = delivery(&d.at.node, d.certs.path(), d.port);
    let (mut reader, _writer) = d.stand_in.session().await;
    let (added, listed) = until_sync(&mut reader, cnci()).await;
    assert_eq!(added, all_subnets());
    assert_eq!(listed, all_subnets());
}

fn concentrator_added(uuid: Uuid) -> Frame {
    let body = ConcentratorInstanceAddedEvent {
        instance_uuid: uuid.to_string(),
        tenant_uuid: String::new(),
        concentrator_ip: "10.250.0.3".into(),
        concentrator_mac: "02:00:0a:fa:00:03".into(),
    };
    Frame::new(
        kind::EVENT,
        event::CONCENTRATOR_INSTANCE_ADDED,
        uuid,
        ConcentratorInstanceAdded(body).to_yaml(),
    )
}

#[tokio::test]
async fn a_cnci_that_comes_back_hears_the_set_again_and_other_cncis_hear_nothing() {
    require_root!();
    let mut d = delivering().await;
    until_sync_after_reports(&mut d.reader).await;

    // A CNCI the node does not use announces itself, then the node's own CNCI does; frames
    // are handled in order, so anything sent for the first would arrive before the second's.
    // Other frames the node does not handle are ignored without closing the session.
    d.writer
        .frame(&Frame::new(
            kind::EVENT,
            event::INSTANCE_DELETED,
            Uuid::new_v4(),
            b"x".to_vec(),
        ))
        .await
        .expect("send");
    d.writer
        .frame(&concentrator_added(Uuid::new_v4()))
        .await
        .expect("send");
    d.writer
        .frame(&concentrator_added(cnci()))
        .await
        .expect("send");
    let (added, listed) = until_sync(&mut d.reader, cnci()).await;
    assert_eq!(added, all_subnets());
    assert_eq!(listed, all_subnets());
}

#[tokio::test]
async fn removals_end_with_a_sync_of_what_is_left_and_an_empty_one_at_the_end() {
    require_root!();
    let mut d = delivering().await;
    until_sync_after_reports(&mut d.reader).await;

    detach(&d.at.node, 0);
    assert_eq!(
        next_heard(&mut d.reader).await,
        (cnci(), Heard::Removed(SUBNETS[0].into()))
    );
    assert_eq!(
        next_heard(&mut d.reader).await,
        (cnci(), Heard::Sync(all_subnets()[1..].to_vec()))
    );
    detach(&d.at.node, 1);
    detach(&d.at.node, 2);
    // Both removals (in one batch or two), each batch closed by a sync of what is left; the
    // last word is an empty sync.
    let mut removed = Vec::new();
    let last = loop {
        match next_heard(&mut d.reader).await {
            (to, Heard::Removed(s)) if to == cnci() => removed.push(s),
            (to, Heard::Sync(left)) if to == cnci() && removed.len() == 2 => break left,
            (to, Heard::Sync(left)) if to == cnci() => assert_eq!(left, [SUBNETS[2]]),
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(removed, [SUBNETS[1], SUBNETS[2]]);
    assert!(
        last.is_empty(),
        "the last word is an empty TenantSync: {last:?}"
    );
    wait_delivered(&d.at.node).await;
    assert!(
        d.at.node.ciao_links().is_empty(),
        "{:?}",
        d.at.node.ciao_links()
    );
}

/// Dials the scheduler as the CNCI, retrying while a restarted scheduler comes up.
async fn cnci_session(certs: &Path, port: u16) -> ssntp::client::Session {
    let tls = client_tls(
        &certs.join("cert-cnciagent-cnci.pem"),
        &certs.join("CAcert-localhost.pem"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let dialled = ssntp::client::dial(
            &format!("127.0.0.1:{port}"),
            "127.0.0.1",
            tls.clone(),
            cnci(),
            role::CNCIAGENT,
        )
        .await;
        match dialled {
            Ok(session) => return session,
            Err(e) => assert!(Instant::now() < deadline, "the CNCI cannot connect: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads at the CNCI until TenantAdded arrived for every one of [`SUBNETS`]; TenantSync
/// frames (forwarded or not, depending on the scheduler) are passed over.
async fn cnci_hears_every_subnet(session: &mut ssntp::client::Session) {
    let mut heard = std::collections::BTreeSet::new();
    while heard.len() < SUBNETS.len() {
        let frame = tokio::time::timeout(Duration::from_secs(20), session.reader.frame())
            .await
            .expect("TenantAdded arrives")
            .expect("read")
            .expect("frame");
        if frame.operand == event::TENANT_ADDED {
            let p = TenantAdded::from_yaml(&frame.payload).expect("payload");
            p.remote_subnet().expect("a valid remote subnet");
            heard.insert(p.0.tenant_subnet);
        } else {
            assert_eq!(frame.operand, event::TENANT_SYNC, "{frame:?}");
        }
    }
    assert_eq!(heard.into_iter().collect::<Vec<_>>(), all_subnets());
}

#[tokio::test]
async fn a_real_scheduler_killed_and_restarted_gets_every_subnet_again_to_the_cnci() {
    require_root!();
    let certs = tempfile::tempdir().expect("tempdir");
    ciao_certificates(certs.path(), &[("agent", "cn1"), ("cnciagent", "cnci")]);
    let port = free_port();
    let at = attach_three();
    let scheduler = scheduler_on(certs.path(), port);
    let mut session = cnci_session(certs.path(), port).await;
    let _daemon = delivery(&at.node, certs.path(), port);
    cnci_hears_every_subnet(&mut session).await;
    wait_delivered(&at.node).await;

    // kill -9 with the reports delivered and deleted; the CNCI's session goes with it.
    drop(scheduler);
    drop(session);
    let _scheduler = scheduler_on(certs.path(), port);
    let mut session = cnci_session(certs.path(), port).await;
    cnci_hears_every_subnet(&mut session).await;
}
