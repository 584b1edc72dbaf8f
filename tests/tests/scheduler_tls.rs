//! The `ciao-scheduler` and `ciao-cert` binaries with real TLS on loopback: certificates of both
//! shapes connect, a role the certificate lacks is aborted, a foreign CA is refused, silence is
//! answered with ConnectionFailure, and TenantAdded reaches the CNCI it names.

use std::path::Path;
use std::time::Duration;

use ssntp::client::dial;
use ssntp::conn::{ConnError, FrameReader};
use ssntp::frame::{error, event, kind, role, Incoming};
use testkit::{
    cert_tool, ciao_certificates, client_tls, start_scheduler, start_scheduler_logged,
    tenant_added_frame, LoggedScheduler, Proc,
};
use uuid::Uuid;

/// The scheduler's arguments: loopback, the scheduler certificate and CA in `dir`, then `extra`.
fn scheduler_args(dir: &Path, extra: &[&str]) -> Vec<String> {
    let cert = dir.join("cert-scheduler-localhost.pem");
    let ca = dir.join("CAcert-localhost.pem");
    let mut args: Vec<String> = vec!["--listen".into(), "127.0.0.1:0".into(), "--cert".into()];
    args.push(cert.to_str().expect("utf-8").into());
    args.push("--ca".into());
    args.push(ca.to_str().expect("utf-8").into());
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

/// Starts the scheduler with the certificate set in `dir`.
fn start(dir: &Path, extra: &[&str]) -> (Proc, String) {
    let args = scheduler_args(dir, extra);
    start_scheduler(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Starts the scheduler with the certificate set in `dir`, its log kept, RLIMIT_NOFILE `nofile`.
fn start_logged(dir: &Path, extra: &[&str], nofile: Option<u64>) -> LoggedScheduler {
    let args = scheduler_args(dir, extra);
    start_scheduler_logged(&args.iter().map(String::as_str).collect::<Vec<_>>(), nofile)
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
    let (_sched, addr) = start(dir.path(), &[]);
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
    let (_sched, addr) = start(dir.path(), &["--connect-timeout", "0.3"]);
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
    modern_set(dir.path(), None);
    let (_sched, addr) = start(dir.path(), &[]);
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

// ---------------------------------------------------------------------------------------------
// Issue 10, item 1: unauthenticated connections must not kill or bloat the scheduler.

/// Waits (up to 10 s) for the next frame of a session.
async fn next_frame(s: &mut ssntp::client::Session) -> ssntp::frame::Frame {
    tokio::time::timeout(Duration::from_secs(10), s.reader.frame())
        .await
        .expect("a frame in time")
        .expect("read")
        .expect("frame")
}

/// Waits until the scheduler has routed everything `s` sent so far (it answers an unknown
/// frame type in order); returns the other frames that arrived meanwhile.
async fn barrier(s: &mut ssntp::client::Session, me: Uuid) -> Vec<ssntp::frame::Frame> {
    s.writer
        .frame(&ssntp::frame::Frame::new(9, 0, me, Vec::new()))
        .await
        .expect("send");
    let mut other = Vec::new();
    loop {
        let f = next_frame(s).await;
        if (f.kind, f.operand) == (kind::ERROR, error::INVALID_FRAME_TYPE) {
            return other;
        }
        other.push(f);
    }
}

/// The number of file descriptors process `pid` has open.
fn fd_count(pid: u32) -> usize {
    testkit::cluster::open_fds(pid)
        .unwrap_or_else(|| panic!("process {pid} is gone"))
        .len()
}

/// Waits (up to 20 s: the scheduler notices closed connections asynchronously) until process
/// `pid` has exactly `baseline` file descriptors open again.
async fn wait_fds_back(pid: u32, baseline: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let now = fd_count(pid);
        if now == baseline {
            eprintln!("the scheduler holds {now} file descriptors, as before the attack");
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the scheduler holds {now} file descriptors, {baseline} before the attack: {:#?}",
            testkit::cluster::open_fds(pid)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_idle_connections_neither_kill_nor_bloat_the_scheduler() {
    const IDLE: usize = 10_000;
    testkit::raise_own_fd_limit(IDLE as u64 + 2048);
    let dir = tempfile::tempdir().expect("tempdir");
    ciao_set(dir.path());
    let mut sched = start_logged(dir.path(), &[], Some(1024));
    let rss_start = sched.status_kib("VmRSS").expect("VmRSS");
    let fds_start = fd_count(sched.pid());
    // The attack: plain TCP connections that never send a byte, ten times the fd limit.
    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        let c = tokio::time::timeout(
            Duration::from_secs(30),
            tokio::net::TcpStream::connect(&sched.addr),
        )
        .await
        .expect("the scheduler keeps accepting")
        .expect("connect");
        idle.push(c);
    }
    assert!(sched.alive(), "the scheduler died: {:?}", sched.lines());
    // A real client, behind the flood, gets in within a second.
    let cfg = client_config(dir.path(), "cert-agent-cn1.pem", "CAcert-localhost.pem");
    let started = std::time::Instant::now();
    let s = dial(&sched.addr, "127.0.0.1", cfg, Uuid::new_v4(), role::AGENT)
        .await
        .expect("an authenticated client connects");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "connect took {took:?}");
    assert!(sched.alive(), "the scheduler died: {:?}", sched.lines());
    let (rss, hwm) = (
        sched.status_kib("VmRSS").expect("VmRSS"),
        sched.status_kib("VmHWM").expect("VmHWM"),
    );
    eprintln!("scheduler RSS {rss_start} KiB at start, {rss} KiB now, peak {hwm} KiB; connect took {took:?}");
    assert!(hwm < 64 * 1024, "peak RSS {hwm} KiB");
    // The drops were logged with the peer and the reason (rate-limited).
    let line = sched
        .wait_for_line(
            &["peer=127.0.0.1:", "oldest unauthenticated"],
            Duration::from_secs(10),
        )
        .expect("a logged drop");
    eprintln!("{line}");
    let logged = sched
        .lines()
        .iter()
        .filter(|l| l.contains("connection refused"))
        .count();
    assert!(
        logged < IDLE / 10,
        "{logged} refusal lines: not rate-limited"
    );
    assert!(
        sched.lines().iter().any(|l| l.contains("RLIMIT_NOFILE")),
        "the fd limit is logged"
    );
    drop(s);
    drop(idle);
    // Every connection of the flood is closed on the scheduler's side too.
    wait_fds_back(sched.pid(), fds_start).await;
    assert!(sched.alive(), "the scheduler died: {:?}", sched.lines());
}

#[tokio::test]
async fn a_connect_with_a_100_kb_source_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    ciao_set(dir.path());
    let sched = start_logged(dir.path(), &[], None);
    let cfg = client_config(dir.path(), "cert-agent-cn1.pem", "CAcert-localhost.pem");
    for source_len in [100 * 1024, 17] {
        let tcp = tokio::net::TcpStream::connect(&sched.addr)
            .await
            .expect("tcp");
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
        let tls = tokio_rustls::TlsConnector::from(cfg.clone())
            .connect(name, tcp)
            .await
            .expect("tls");
        let (r, w) = tokio::io::split(tls);
        let (mut reader, mut writer) = (FrameReader::new(r), ssntp::conn::FrameWriter::new(w));
        writer
            .connect(&ssntp::frame::ConnectFrame {
                minor: 1,
                kind: kind::COMMAND,
                role: role::AGENT,
                source: vec![0x5a; source_len],
                destination: vec![0; 16],
                ..Default::default()
            })
            .await
            .expect("send CONNECT");
        let reply = tokio::time::timeout(Duration::from_secs(10), reader.next())
            .await
            .expect("in time")
            .expect("read the refusal");
        match reply {
            Some(Incoming::Frame(f)) => assert_eq!(
                (f.kind, f.operand),
                (kind::ERROR, error::CONNECTION_FAILURE),
                "Source of {source_len} bytes"
            ),
            other => {
                panic!("Source of {source_len} bytes: expected ConnectionFailure, got {other:?}")
            }
        }
    }
    let line = sched
        .wait_for_line(
            &["connection refused", "exceeds the limit of 4096"],
            Duration::from_secs(10),
        )
        .expect("the oversized CONNECT is logged");
    assert!(line.contains("peer=127.0.0.1:"), "{line}");
    assert!(sched
        .wait_for_line(&["connection refused", "17 bytes"], Duration::from_secs(10))
        .is_some());
}

#[tokio::test]
async fn a_connection_that_does_nothing_is_closed_after_the_handshake_timeout() {
    use tokio::io::AsyncReadExt;
    let dir = tempfile::tempdir().expect("tempdir");
    ciao_set(dir.path());
    let sched = start_logged(dir.path(), &["--handshake-timeout", "0.5"], None);
    let mut idle = tokio::net::TcpStream::connect(&sched.addr)
        .await
        .expect("tcp");
    let mut buf = [0u8; 64];
    // The close is what is waited for; the outer limit only keeps a broken build from hanging.
    let n = tokio::time::timeout(Duration::from_secs(30), idle.read(&mut buf))
        .await
        .expect("the scheduler closes an idle connection")
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without a byte");
    let line = sched
        .wait_for_line(
            &["connection refused", "no TLS handshake within"],
            Duration::from_secs(10),
        )
        .expect("logged");
    assert!(line.contains("peer=127.0.0.1:"), "{line}");
}

// ---------------------------------------------------------------------------------------------
// Issue 10, item 2: identities bound to certificates.

#[tokio::test]
async fn an_agent_certificate_cannot_take_over_a_cnci() {
    let dir = tempfile::tempdir().expect("tempdir");
    ciao_certificates(
        dir.path(),
        &[
            ("cnciagent", "cnci"),
            ("cnciagent", "cnci-other"),
            ("agent", "cn1"),
            ("agent", "cn2"),
        ],
    );
    let (sched, addr) = start(dir.path(), &[]);
    let ca = "CAcert-localhost.pem";
    let cnci_cfg = client_config(dir.path(), "cert-cnciagent-cnci.pem", ca);
    let other_cnci_cfg = client_config(dir.path(), "cert-cnciagent-cnci-other.pem", ca);
    let launcher_cfg = client_config(dir.path(), "cert-agent-cn1.pem", ca);
    let attacker_cfg = client_config(dir.path(), "cert-agent-cn2.pem", ca);
    let (cnci, cn) = (Uuid::new_v4(), Uuid::new_v4());
    let mut c = dial(&addr, "127.0.0.1", cnci_cfg.clone(), cnci, role::CNCIAGENT)
        .await
        .expect("cnci connects");
    let mut l = dial(&addr, "127.0.0.1", launcher_cfg, cn, role::AGENT)
        .await
        .expect("launcher connects");
    // Two sessions, as at the end (the launcher's and the CNCI's).
    let fds_before = fd_count(sched.0.id());

    // The attack, in a loop: an agent certificate connecting with the CNCI's UUID while the
    // launcher reports 40 subnets to that CNCI.
    const FRAMES: usize = 40;
    for _ in 0..FRAMES {
        let squat = dial(&addr, "127.0.0.1", attacker_cfg.clone(), cnci, role::AGENT).await;
        assert!(
            matches!(squat, Err(ConnError::Refused(e)) if e == error::CONNECTION_ABORTED),
            "{:?}",
            squat.err()
        );
        l.writer
            .frame(&tenant_added_frame(cn, cnci))
            .await
            .expect("send");
    }
    for i in 0..FRAMES {
        let f = next_frame(&mut c).await;
        assert_eq!(f.operand, event::TENANT_ADDED, "frame {i}");
    }
    assert!(
        barrier(&mut c, cnci).await.is_empty(),
        "the CNCI still has its session"
    );

    // Another CNCI certificate (another key) may not take the UUID either.
    let other = dial(&addr, "127.0.0.1", other_cnci_cfg, cnci, role::CNCIAGENT).await;
    assert!(
        matches!(other, Err(ConnError::Refused(e)) if e == error::CONNECTION_ABORTED),
        "{:?}",
        other.err()
    );
    assert!(barrier(&mut c, cnci).await.is_empty());

    // The same certificate reconnecting replaces the old session (a restarted CNCI).
    let mut c2 = dial(&addr, "127.0.0.1", cnci_cfg.clone(), cnci, role::CNCIAGENT)
        .await
        .expect("the same certificate takes over");
    let old = tokio::time::timeout(Duration::from_secs(10), c.reader.frame())
        .await
        .expect("the old session is closed");
    assert!(!matches!(old, Ok(Some(_))), "{old:?}");
    l.writer
        .frame(&tenant_added_frame(cn, cnci))
        .await
        .expect("send");
    assert_eq!(next_frame(&mut c2).await.operand, event::TENANT_ADDED);

    // While the CNCI is away, an agent certificate holding its UUID gets none of its frames:
    // they are held and reach the CNCI when it is back.
    c2.writer.shutdown().await.expect("close");
    drop(c2);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut squatter = loop {
        match dial(&addr, "127.0.0.1", attacker_cfg.clone(), cnci, role::AGENT).await {
            Ok(s) => break s,
            Err(ConnError::Refused(_)) if std::time::Instant::now() < deadline => {
                tokio::task::yield_now().await
            }
            Err(e) => panic!("the squatter never got the free UUID: {e}"),
        }
    };
    l.writer
        .frame(&tenant_added_frame(cn, cnci))
        .await
        .expect("send");
    barrier(&mut l, cn).await;
    assert!(
        barrier(&mut squatter, cnci).await.is_empty(),
        "an AGENT session with the CNCI's UUID receives nothing meant for the CNCI"
    );
    squatter.writer.shutdown().await.expect("close");
    drop(squatter);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut back = loop {
        match dial(&addr, "127.0.0.1", cnci_cfg.clone(), cnci, role::CNCIAGENT).await {
            Ok(s) => break s,
            Err(ConnError::Refused(_)) if std::time::Instant::now() < deadline => {
                tokio::task::yield_now().await
            }
            Err(e) => panic!("the CNCI never got its UUID back: {e}"),
        }
    };
    assert_eq!(
        next_frame(&mut back).await.operand,
        event::TENANT_ADDED,
        "held for it"
    );
    // The refused squatters, the squatter's session and the replaced CNCI sessions are closed:
    // the launcher's and the CNCI's sessions are all that is left.
    wait_fds_back(sched.0.id(), fds_before).await;
}

/// Makes a modern CA, a scheduler certificate and a CNCI certificate (bound to `uuid` if given).
fn modern_set(dir: &Path, uuid: Option<Uuid>) {
    let d = dir.to_str().expect("utf-8").to_string();
    cert_tool(&[
        "anchor",
        "--shape",
        "modern",
        "--org",
        "Ciao",
        "--out-dir",
        &d,
    ]);
    let anchor = dir.join("ca-localhost.pem");
    let a = anchor.to_str().expect("utf-8");
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
    let u = uuid.map(|u| u.to_string());
    let mut cnci = vec![
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
    ];
    if let Some(u) = &u {
        cnci.extend(["--uuid", u.as_str()]);
    }
    cert_tool(&cnci);
}

#[tokio::test]
async fn a_certificate_naming_a_uuid_connects_only_as_that_uuid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bound = Uuid::new_v4();
    modern_set(dir.path(), Some(bound));
    let (_sched, addr) = start(dir.path(), &[]);
    let cfg = client_config(
        dir.path(),
        "cert-cnciagent-cnci.pem",
        "CAcert-localhost.pem",
    );
    let other = dial(
        &addr,
        "localhost",
        cfg.clone(),
        Uuid::new_v4(),
        role::CNCIAGENT,
    )
    .await;
    assert!(
        matches!(other, Err(ConnError::Refused(e)) if e == error::CONNECTION_ABORTED),
        "{:?}",
        other.err()
    );
    dial(&addr, "localhost", cfg, bound, role::CNCIAGENT)
        .await
        .expect("its own UUID");
}

#[test]
fn ciao_cert_writes_private_keys_0600_under_umask_022() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().expect("utf-8");
    // A key file left world-readable by an older tool is rewritten 0600, not kept 0644.
    let stale = dir.path().join("cert-agent-cn1.pem");
    std::fs::write(&stale, "old").expect("write");
    std::fs::set_permissions(&stale, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let run = |args: &[&str]| {
        let mut cmd = std::process::Command::new(testkit::scheduler_tool("ciao-cert"));
        cmd.args(args);
        // SAFETY: umask is async-signal-safe and touches only the child's own state.
        unsafe {
            cmd.pre_exec(|| {
                libc::umask(0o022);
                Ok(())
            });
        }
        let out = cmd.output().expect("run ciao-cert");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&["anchor", "--host", "localhost", "--out-dir", d]);
    let anchor = dir.path().join("cert-scheduler-localhost.pem");
    run(&[
        "issue",
        "--anchor",
        anchor.to_str().expect("utf-8"),
        "--role",
        "agent",
        "--host",
        "cn1",
        "--out-dir",
        d,
    ]);
    let mode = |name: &str| {
        std::fs::metadata(dir.path().join(name))
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("cert-scheduler-localhost.pem"), 0o600);
    assert_eq!(mode("cert-agent-cn1.pem"), 0o600);
    assert_eq!(mode("CAcert-localhost.pem"), 0o644);
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 3, "no temporary file left: {names:?}");
}

/// Dials as a new agent; None when the session was not up within `limit`.
async fn dial_new_agent(
    addr: &str,
    cfg: &std::sync::Arc<rustls::ClientConfig>,
    limit: Duration,
) -> Option<ssntp::client::Session> {
    let dialled = dial(addr, "127.0.0.1", cfg.clone(), Uuid::new_v4(), role::AGENT);
    tokio::time::timeout(limit, dialled).await.ok()?.ok()
}

#[tokio::test]
async fn running_out_of_file_descriptors_is_logged_backed_off_and_survived() {
    let dir = tempfile::tempdir().expect("tempdir");
    ciao_set(dir.path());
    let mut sched = start_logged(dir.path(), &[], Some(64));
    // The attack: authenticated sessions until the scheduler cannot accept any more (a dial
    // that gets no TLS answer within 2 s is one the scheduler could not accept).
    let cfg = client_config(dir.path(), "cert-agent-cn1.pem", "CAcert-localhost.pem");
    let mut sessions = Vec::new();
    for _ in 0..100 {
        let dialled = dial_new_agent(&sched.addr, &cfg, Duration::from_secs(2)).await;
        match dialled {
            Some(s) => sessions.push(s),
            None => break,
        }
    }
    assert!(
        sessions.len() < 64,
        "{} sessions under a limit of 64",
        sessions.len()
    );
    let line = sched
        .wait_for_line(
            &["accept failed", "Too many open files"],
            Duration::from_secs(10),
        )
        .expect("the accept error is logged");
    assert!(line.contains("backoff_ms="), "{line}");
    assert!(sched.alive(), "the scheduler died: {:?}", sched.lines());
    // Descriptors come back: a new client gets in again.
    sessions.truncate(sessions.len().saturating_sub(8));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let dialled = dial_new_agent(&sched.addr, &cfg, Duration::from_secs(5)).await;
        if dialled.is_some() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no client got in again"
        );
    }
    assert!(sched.alive());
    let limits = sched
        .wait_for_line(&["limits", "max_pending=32"], Duration::from_secs(1))
        .expect("max_pending clamped to half the fd limit");
    eprintln!("{line}\n{limits}");
}
