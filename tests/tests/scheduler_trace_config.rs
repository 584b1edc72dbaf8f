//! Two behaviours of ciao's own scheduler that Go peers depend on, with the real
//! `ciao-scheduler` binary over real TLS on loopback: a traced frame gets the scheduler's path
//! node (its UUID, role and receive and send times) on its way through, and CONNECTED always
//! carries a cluster configuration: the default, or the one of `--cluster-config`, whose bad
//! keys stop the scheduler at start.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use ssntp::client::{dial, Session};
use ssntp::frame::{role, Frame, FrameTrace, GobTime, TraceNode, TRACE_FLAG};
use ssntp::payloads::{Configure, Payload};
use testkit::bins::scheduler_tool;
use testkit::{ciao_certificates, client_tls, start_scheduler, tenant_added_frame, Proc};
use uuid::Uuid;

fn certificates(dir: &Path) {
    ciao_certificates(dir, &[("cnciagent", "cnci"), ("agent", "cn1")]);
}

/// Loopback, the scheduler certificate and CA in `dir`, then `extra`.
fn args(dir: &Path, extra: &[&str]) -> Vec<String> {
    let path = |f: &str| dir.join(f).to_str().expect("utf-8").to_owned();
    let mut args = vec![
        "--listen".to_owned(),
        "127.0.0.1:0".to_owned(),
        "--cert".to_owned(),
        path("cert-scheduler-localhost.pem"),
        "--ca".to_owned(),
        path("CAcert-localhost.pem"),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

fn start(dir: &Path, extra: &[&str]) -> (Proc, String) {
    let args = args(dir, extra);
    start_scheduler(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

async fn connect(dir: &Path, addr: &str, cert: &str, uuid: Uuid, role_bits: u32) -> Session {
    let tls = client_tls(&dir.join(cert), &dir.join("CAcert-localhost.pem"));
    dial(addr, "127.0.0.1", tls, uuid, role_bits)
        .await
        .expect("connects")
}

async fn next_frame(s: &mut Session) -> Frame {
    tokio::time::timeout(Duration::from_secs(10), s.reader.frame())
        .await
        .expect("a frame in time")
        .expect("read")
        .expect("frame")
}

/// A TenantAdded traced as a Go launcher traces it (ssntp.md §6): the flag, a label, a start
/// time and the sender's own path node with its send time.
fn traced_tenant_added(cn: Uuid, cnci: Uuid) -> Frame {
    let mut frame = tenant_added_frame(cn, cnci);
    frame.major |= TRACE_FLAG;
    frame.trace = Some(FrameTrace {
        label: b"issue-12".to_vec(),
        start: Some(GobTime::from_system_time(SystemTime::now())),
        end: None,
        path_length: 1,
        path: vec![TraceNode {
            uuid: cn.as_bytes().to_vec(),
            role: role::AGENT,
            tx: Some(GobTime::now()),
            rx: None,
        }],
    });
    frame
}

fn instant(t: &Option<GobTime>) -> SystemTime {
    t.as_ref()
        .and_then(GobTime::to_system_time)
        .expect("a Go time")
}

#[tokio::test]
async fn a_traced_frame_arrives_with_the_schedulers_path_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    certificates(dir.path());
    let sched = Uuid::new_v4();
    let (_proc, addr) = start(dir.path(), &["--uuid", &sched.to_string()]);
    let (cnci, cn) = (Uuid::new_v4(), Uuid::new_v4());
    let mut c = connect(
        dir.path(),
        &addr,
        "cert-cnciagent-cnci.pem",
        cnci,
        role::CNCIAGENT,
    )
    .await;
    let mut l = connect(dir.path(), &addr, "cert-agent-cn1.pem", cn, role::AGENT).await;

    let sent = traced_tenant_added(cn, cnci);
    let before = SystemTime::now();
    l.writer.frame(&sent).await.expect("send");
    let got = next_frame(&mut c).await;
    let after = SystemTime::now();

    assert!(got.path_traced(), "still traced: {got:?}");
    assert_eq!((got.origin, &got.payload), (sent.origin, &sent.payload));
    let (ours, theirs) = (got.trace.expect("trace"), sent.trace.expect("trace"));
    assert_eq!((&ours.label, &ours.start), (&theirs.label, &theirs.start));
    assert_eq!((ours.path.len(), ours.path_length), (2, 2));
    assert_eq!(
        ours.path[0], theirs.path[0],
        "the launcher's node is untouched"
    );
    let node = &ours.path[1];
    assert_eq!(node.uuid, sched.as_bytes().to_vec());
    assert_eq!(node.role, role::SCHEDULER);
    let (rx, tx) = (instant(&node.rx), instant(&node.tx));
    assert!(
        before <= rx && rx <= tx && tx <= after,
        "received {rx:?} and sent {tx:?} between {before:?} and {after:?}"
    );

    // An untraced frame goes through as it came: no trace is invented.
    let plain = tenant_added_frame(cn, cnci);
    l.writer.frame(&plain).await.expect("send");
    assert_eq!(next_frame(&mut c).await, plain);
}

#[tokio::test]
async fn connected_carries_the_default_or_the_given_cluster_configuration() {
    let dir = tempfile::tempdir().expect("tempdir");
    certificates(dir.path());
    let cert = "cert-agent-cn1.pem";

    let (_default, addr) = start(dir.path(), &[]);
    let s = connect(dir.path(), &addr, cert, Uuid::new_v4(), role::AGENT).await;
    assert_eq!(
        s.server.configuration,
        Configure::cluster_default().to_yaml()
    );
    let conf = Configure::from_yaml(&s.server.configuration).expect("a Go launcher reads it");
    assert!(conf.launcher.compute_net.is_empty() && conf.launcher.disk_limit);

    let file = dir.path().join("cluster.yaml");
    let text = "configure:\n  launcher:\n    compute_net:\n    - 10.99.0.0/24\n    mgmt_net: [10.98.0.0/16]\n";
    std::fs::write(&file, text).expect("write");
    let (_given, addr) = start(
        dir.path(),
        &["--cluster-config", file.to_str().expect("utf-8")],
    );
    let s = connect(dir.path(), &addr, cert, Uuid::new_v4(), role::AGENT).await;
    let conf = Configure::from_yaml(&s.server.configuration).expect("parses");
    assert_eq!(conf.launcher.compute_net, ["10.99.0.0/24"]);
    assert_eq!(conf.launcher.mgmt_net, ["10.98.0.0/16"]);
    assert_eq!(
        conf.controller.ciao_port, 8889,
        "keys left out take ciao's defaults"
    );
    // Sent re-marshalled with every key, as the Go scheduler sends its file.
    assert_eq!(
        s.server.configuration,
        Configure::from_operator_yaml(text.as_bytes())
            .expect("valid")
            .to_yaml()
    );
}

/// Runs the scheduler expecting it to exit within 10 s; returns its exit success and stderr.
fn run_to_exit(args: &[String]) -> (bool, String) {
    let mut child = Command::new(scheduler_tool("ciao-scheduler"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ciao-scheduler");
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the scheduler kept running with a bad --cluster-config");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_bad_cluster_config_stops_the_scheduler_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    certificates(dir.path());
    let file = dir.path().join("cluster.yaml");
    for (text, key) in [
        (
            "configure:\n  launcher:\n    compute_nets: []\n",
            "configure.launcher.compute_nets",
        ),
        (
            "configure:\n  launcher:\n    compute_net: [10.99.0.0/33]\n",
            "launcher.compute_net",
        ),
        (
            "configure:\n  controller:\n    ciao_port: abc\n",
            "ciao_port",
        ),
        (
            "configure:\n  controller:\n    cnci_net: nope\n",
            "controller.cnci_net",
        ),
    ] {
        std::fs::write(&file, text).expect("write");
        let path = file.to_str().expect("utf-8");
        let (ok, stderr) = run_to_exit(&args(dir.path(), &["--cluster-config", path]));
        assert!(!ok, "{text:?} accepted");
        assert!(
            stderr.contains("--cluster-config") && stderr.contains(key),
            "{text:?}: {stderr}"
        );
        assert!(
            !stderr.contains("listening on"),
            "it never listened: {stderr}"
        );
    }
}
