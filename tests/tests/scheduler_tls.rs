//! The `ciao-scheduler` and `ciao-cert` binaries with real TLS on loopback: certificates of both
//! shapes connect, a role the certificate lacks is aborted, a foreign CA is refused, silence is
//! answered with ConnectionFailure, and TenantAdded reaches the CNCI it names.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ciao_tests::{
    cert_tool, ciao_certificates, client_tls, start_scheduler, tenant_added_frame, Proc,
};
use ssntp::client::dial;
use ssntp::conn::{ConnError, FrameReader};
use ssntp::frame::{error, event, kind, role, Incoming};
use uuid::Uuid;

fn start(cert: &Path, ca: &Path, extra: &[&str]) -> (Proc, String) {
    let (cert, ca) = (cert.to_str().expect("utf-8"), ca.to_str().expect("utf-8"));
    let mut args = vec!["--listen", "127.0.0.1:0", "--cert", cert, "--ca", ca];
    args.extend_from_slice(extra);
    start_scheduler(&args)
}

fn client_config(dir: &Path, cert: &str, ca: &str) -> std::sync::Arc<rustls::ClientConfig> {
    client_tls(&dir.join(cert), &dir.join(ca))
}

fn ciao_set(dir: &Path) {
    ciao_certificates(
        dir,
        &[
            ("cnciagent", "cnci"),
            ("agent", "cn1"),
            ("controller", "ctl"),
        ],
    );
}

#[tokio::test]
async fn ciao_certificates_connect_and_tenant_added_reaches_its_cnci() {
    let dir = tempfile::tempdir().expect("tempdir");
    ciao_set(dir.path());
    let (_sched, addr) = start(
        &dir.path().join("cert-scheduler-localhost.pem"),
        &dir.path().join("CAcert-localhost.pem"),
        &[],
    );
    let (cnci, other, cn) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let cnci_cfg = client_config(
        dir.path(),
        "cert-cnciagent-cnci.pem",
        "CAcert-localhost.pem",
    );
    let mut c1 = dial(&addr, "127.0.0.1", cnci_cfg.clone(), cnci, role::CNCIAGENT)
        .await
        .expect("cnci connects");
    assert_eq!(c1.server.role, role::SCHEDULER);
    let mut c2 = dial(&addr, "127.0.0.1", cnci_cfg, other, role::CNCIAGENT)
        .await
        .expect("second cnci");
    let agent_cfg = client_config(dir.path(), "cert-agent-cn1.pem", "CAcert-localhost.pem");
    let mut l = dial(&addr, "127.0.0.1", agent_cfg.clone(), cn, role::AGENT)
        .await
        .expect("launcher connects");
    let frame = tenant_added_frame(cn, cnci);
    l.writer.frame(&frame).await.expect("send");
    let got = tokio::time::timeout(Duration::from_secs(5), c1.reader.frame())
        .await
        .expect("in time")
        .expect("read")
        .expect("frame");
    assert_eq!((got.kind, got.operand), (kind::EVENT, event::TENANT_ADDED));
    assert_eq!(got.payload, frame.payload);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), c2.reader.frame())
            .await
            .is_err(),
        "other CNCI gets nothing"
    );

    // A certificate whose roles do not include the claimed one: ERROR ConnectionAborted.
    let refused = dial(
        &addr,
        "127.0.0.1",
        agent_cfg,
        Uuid::new_v4(),
        role::CONTROLLER,
    )
    .await;
    assert!(
        matches!(refused, Err(ConnError::Refused(e)) if e == error::CONNECTION_ABORTED),
        "{:?}",
        refused.err()
    );
}

#[tokio::test]
async fn a_foreign_ca_is_refused_and_silence_gets_connection_failure() {
    let dir = tempfile::tempdir().expect("tempdir");
    ciao_set(dir.path());
    let foreign = tempfile::tempdir().expect("tempdir");
    ciao_set(foreign.path());
    let (_sched, addr) = start(
        &dir.path().join("cert-scheduler-localhost.pem"),
        &dir.path().join("CAcert-localhost.pem"),
        &["--connect-timeout", "0.3"],
    );
    // A client of another deployment (its own CA, trusting its own scheduler only).
    let stranger = client_config(foreign.path(), "cert-agent-cn1.pem", "CAcert-localhost.pem");
    assert!(
        dial(&addr, "127.0.0.1", stranger, Uuid::new_v4(), role::AGENT)
            .await
            .is_err()
    );
    // Our CA, our client, but the client trusts the foreign CA: it refuses the scheduler.
    let mixed = client_tls(
        &dir.path().join("cert-agent-cn1.pem"),
        &foreign.path().join("CAcert-localhost.pem"),
    );
    assert!(dial(&addr, "127.0.0.1", mixed, Uuid::new_v4(), role::AGENT)
        .await
        .is_err());

    // TLS up, then nothing: after the (test-short) timeout the scheduler sends ConnectionFailure.
    let cfg = client_config(dir.path(), "cert-agent-cn1.pem", "CAcert-localhost.pem");
    let tcp = tokio::net::TcpStream::connect(&addr).await.expect("tcp");
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
        .expect("tls");
    let (r, _w) = tokio::io::split(tls);
    let mut reader = FrameReader::new(r);
    let started = std::time::Instant::now();
    let reply = tokio::time::timeout(Duration::from_secs(5), reader.next())
        .await
        .expect("in time")
        .expect("read");
    assert!(started.elapsed() >= Duration::from_millis(250));
    match reply {
        Some(Incoming::Frame(f)) => assert_eq!(
            (f.kind, f.operand),
            (kind::ERROR, error::CONNECTION_FAILURE)
        ),
        other => panic!("expected ERROR ConnectionFailure, got {other:?}"),
    }
}

#[tokio::test]
async fn modern_certificates_connect() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().expect("utf-8").to_string();
    cert_tool(&[
        "anchor",
        "--shape",
        "modern",
        "--org",
        "Ciao",
        "--out-dir",
        &d,
    ]);
    let ca_and_key = PathBuf::from(&d).join("ca-localhost.pem");
    let a = ca_and_key.to_str().expect("utf-8");
    cert_tool(&[
        "issue",
        "--shape",
        "modern",
        "--anchor",
        a,
        "--role",
        "scheduler",
        "--host",
        "localhost",
        "--ip",
        "127.0.0.1",
        "--out-dir",
        &d,
    ]);
    cert_tool(&[
        "issue",
        "--shape",
        "modern",
        "--anchor",
        a,
        "--role",
        "cnciagent",
        "--host",
        "cnci",
        "--out-dir",
        &d,
    ]);
    let (_sched, addr) = start(
        &dir.path().join("cert-scheduler-localhost.pem"),
        &dir.path().join("CAcert-localhost.pem"),
        &[],
    );
    let cfg = client_config(
        dir.path(),
        "cert-cnciagent-cnci.pem",
        "CAcert-localhost.pem",
    );
    let s = dial(&addr, "localhost", cfg, Uuid::new_v4(), role::CNCIAGENT)
        .await
        .expect("modern set connects");
    assert_eq!(s.server.role, role::SCHEDULER);
}
