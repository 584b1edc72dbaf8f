//! Issue 12, item 2: `ciao-nn`, the network node agent, driven as the controller drives it.
//! A real scheduler and a real `ciao-nn` in the cluster's network-node namespace, over real
//! TLS; the test holds a session of role controller and sends START and DELETE. Checked: the
//! NodeReport after every connect, a CNCI started on START (its ConcentratorInstanceAdded with
//! the tenant and the node's underlay address), a repeated START as a no-op, refusals in
//! StartFailure form with nothing recorded, adoption after SIGKILL without recreating anything
//! (same netns inode, same ifindex), DELETE answered by InstanceDeleted with the tenant
//! namespace gone, and a deletion interrupted by a kill finished by the next start.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ssntp::client::{Client, ClientConfig, ClientEvent};
use ssntp::frame::{command, error, event, kind, role, Frame};
use ssntp::payloads::{
    ConcentratorInstanceAdded, Delete, InstanceDeleted, NodeReport, Payload, Start, StartFailure,
};
use testkit::cluster::{in_netns, Cluster, Cn, Tenant, NN_IP, SCHEDULER_ADDR, SERVER_NAME};
use testkit::{require_root, Proc};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(60);

/// A session of role controller from the underlay namespace: frames received go to a channel.
struct Controller {
    rx: mpsc::Receiver<Frame>,
    tx: tokio::sync::mpsc::UnboundedSender<Frame>,
    uuid: Uuid,
}

impl Controller {
    fn connect(cluster: &Cluster) -> Controller {
        let tls = testkit::client_tls(&cluster.certs.controller(), &cluster.certs.ca());
        let (to_test, rx) = mpsc::channel();
        let (tx, mut outgoing) = tokio::sync::mpsc::unbounded_channel::<Frame>();
        let (up_tx, up) = mpsc::channel();
        let uuid = Uuid::new_v4();
        let ns = cluster.underlay.path();
        std::thread::spawn(move || {
            in_netns(&ns, move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    let (client, mut events) = Client::spawn(ClientConfig {
                        addr: SCHEDULER_ADDR.into(),
                        server_name: SERVER_NAME.into(),
                        tls,
                        uuid,
                        role: role::CONTROLLER,
                        max_backoff: Duration::from_secs(1),
                    });
                    loop {
                        tokio::select! {
                            e = events.recv() => match e {
                                Some(ClientEvent::Connected(_)) => { let _ = up_tx.send(()); }
                                Some(ClientEvent::Frame(f)) => {
                                    if to_test.send(f).is_err() { return; }
                                }
                                Some(ClientEvent::Disconnected(_)) => {}
                                None => return,
                            },
                            f = outgoing.recv() => match f {
                                Some(f) => { if client.send(f).await.is_err() { return; } }
                                None => return,
                            },
                        }
                    }
                })
            })
        });
        up.recv_timeout(WAIT).expect("controller session");
        Controller { rx, tx, uuid }
    }

    fn send(&self, frame: Frame) {
        self.tx.send(frame).expect("controller thread");
    }

    /// The first frame (after those already taken) for which `wanted` holds.
    fn wait(&self, what: &str, wanted: impl Fn(&Frame) -> bool) -> Frame {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(f) if wanted(&f) => return f,
                Ok(_) => continue,
                Err(e) => panic!("no {what}: {e}"),
            }
        }
    }

    fn start(&self, tenant: Uuid, cnci: Uuid, node: Uuid, vm_type: &str) {
        let mut start = Start::cnci(tenant, cnci, node);
        start.0.vm_type = vm_type.into();
        self.send(Frame::new(
            kind::COMMAND,
            command::START,
            self.uuid,
            start.to_yaml(),
        ));
    }

    fn delete(&self, cnci: Uuid, node: Uuid) {
        self.send(Frame::new(
            kind::COMMAND,
            command::DELETE,
            self.uuid,
            Delete::new(cnci, node).to_yaml(),
        ));
    }

    fn node_report(&self) -> NodeReport {
        let f = self.wait("NodeReport", |f| {
            f.kind == kind::EVENT && f.operand == event::NODE_REPORT
        });
        NodeReport::from_yaml(&f.payload).expect("node_report")
    }

    fn concentrator_added(&self, cnci: Uuid) -> ConcentratorInstanceAdded {
        let want = cnci.to_string();
        let f = self.wait("ConcentratorInstanceAdded", |f| {
            f.kind == kind::EVENT
                && f.operand == event::CONCENTRATOR_INSTANCE_ADDED
                && ConcentratorInstanceAdded::from_yaml(&f.payload)
                    .is_ok_and(|c| c.0.instance_uuid == want)
        });
        ConcentratorInstanceAdded::from_yaml(&f.payload).expect("payload")
    }

    /// ConcentratorInstanceAdded of each of `cncis`, in any order.
    fn concentrators_added(&self, cncis: &[Uuid]) {
        let mut left: std::collections::BTreeSet<String> =
            cncis.iter().map(Uuid::to_string).collect();
        while !left.is_empty() {
            let f = self.wait("ConcentratorInstanceAdded", |f| {
                f.kind == kind::EVENT && f.operand == event::CONCENTRATOR_INSTANCE_ADDED
            });
            let c = ConcentratorInstanceAdded::from_yaml(&f.payload).expect("payload");
            left.remove(&c.0.instance_uuid);
        }
    }

    fn instance_deleted(&self, cnci: Uuid) {
        let want = cnci.to_string();
        self.wait("InstanceDeleted", |f| {
            f.kind == kind::EVENT
                && f.operand == event::INSTANCE_DELETED
                && InstanceDeleted::from_yaml(&f.payload).is_ok_and(|d| d.0.instance_uuid == want)
        });
    }

    fn start_failure(&self, instance: &str) -> String {
        let f = self.wait("StartFailure", |f| {
            f.kind == kind::ERROR
                && f.operand == error::START_FAILURE
                && StartFailure::from_yaml(&f.payload).is_ok_and(|s| s.0.instance_uuid == instance)
        });
        StartFailure::from_yaml(&f.payload)
            .expect("payload")
            .0
            .reason
    }
}

/// `ciao-nn run` in the network node's namespace, its log in the cluster's log directory.
struct Nn {
    state: tempfile::TempDir,
    cert: PathBuf,
    ca: PathBuf,
    ns: PathBuf,
    log: PathBuf,
}

impl Nn {
    fn bin(&self) -> PathBuf {
        // Built with its package's other binary (`cargo build -p ciao-cnci-agent`) on first use.
        let bin = testkit::bins::bin_dir_override("ciao-nn")
            .unwrap_or_else(|| testkit::bins::cnci_agent_tool().with_file_name("ciao-nn"));
        assert!(
            bin.is_file(),
            "{} missing: cargo build -p ciao-cnci-agent --bins",
            bin.display()
        );
        bin
    }

    fn start(&self) -> Proc {
        let bin = self.bin();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log");
        let child = std::process::Command::new("nsenter")
            .arg(format!("--net={}", self.ns.display()))
            .arg(&bin)
            .arg("--state-dir")
            .arg(self.state.path())
            .args([
                "run",
                "--scheduler",
                SCHEDULER_ADDR,
                "--server-name",
                SERVER_NAME,
            ])
            .arg("--cert")
            .arg(&self.cert)
            .arg("--ca")
            .arg(&self.ca)
            .args(["--underlay-ip", NN_IP, "--external-dev", "ext0"])
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start ciao-nn");
        Proc(child)
    }

    /// `ciao-nn show --json`.
    fn show(&self) -> serde_json::Value {
        let out = testkit::run(&[
            self.bin().to_str().expect("path"),
            "--state-dir",
            self.state.path().to_str().expect("path"),
            "show",
            "--json",
        ]);
        serde_json::from_str(&out).expect("show --json")
    }

    fn recorded(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.state.path().join("cncis"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

/// Prints the logs of a failed run (the cluster removes its log directory).
struct LogsOnPanic(Vec<PathBuf>);

impl Drop for LogsOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for log in &self.0 {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                eprintln!("--- {}:\n{text}", log.display());
            }
        }
    }
}

/// Removes the tenant namespaces a failed run may leave.
struct TenantNs(Vec<String>);

impl Drop for TenantNs {
    fn drop(&mut self) {
        for ns in &self.0 {
            testkit::delete_netns(ns);
        }
    }
}

fn netns_of(cnci: Uuid) -> String {
    format!("cnci-{}", &cnci.simple().to_string()[..8])
}

fn netns_inode(ns: &str) -> Option<u64> {
    std::fs::metadata(Path::new("/run/netns").join(ns))
        .ok()
        .map(|m| m.ino())
}

fn uplink_ifindex(ns: &str) -> String {
    let out = testkit::run(&["ip", "-n", ns, "-o", "link", "show", "uplink0"]);
    out.split(':').next().unwrap_or_default().trim().to_string()
}

fn wait_gone(ns: &str) {
    let deadline = Instant::now() + WAIT;
    while netns_inode(ns).is_some() {
        assert!(Instant::now() < deadline, "namespace {ns} still there");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The cluster, the node's certificate (roles netagent and cnciagent, issued with
/// `ciao-cert issue --role netagent,cnciagent`) and how to start `ciao-nn`.
fn setup() -> (Cluster, tempfile::TempDir, Nn) {
    let cluster = Cluster::new().expect("cluster");
    let certs = tempfile::tempdir().expect("tempdir");
    testkit::cert_tool(&[
        "issue",
        "--anchor",
        cluster.certs.scheduler().to_str().expect("path"),
        "--role",
        "netagent,cnciagent",
        "--host",
        "nn1",
        "--out-dir",
        certs.path().to_str().expect("path"),
    ]);
    let nn = Nn {
        state: tempfile::tempdir().expect("state"),
        cert: certs.path().join("cert-netagent+cnciagent-nn1.pem"),
        ca: cluster.certs.ca(),
        ns: cluster.nn.path(),
        log: cluster.logs.path().join("nn.log"),
    };
    (cluster, certs, nn)
}

#[test]
fn ciao_nn_runs_adopts_and_deletes_cncis_on_the_controllers_word() {
    require_root!();
    let (cluster, _certs, nn) = setup();
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let (tenant_a, tenant_b) = (Uuid::new_v4(), Uuid::new_v4());
    let _cleanup = TenantNs(vec![netns_of(a), netns_of(b)]);
    let _logs = LogsOnPanic(vec![nn.log.clone(), cluster.log("scheduler")]);
    let ctl = Controller::connect(&cluster);
    let mut proc = nn.start();

    let report = ctl.node_report();
    let node = report.node().expect("node uuid");
    assert_eq!(report.underlay_ip().expect("ip").to_string(), NN_IP);
    assert_eq!(report.0.external_device, "ext0");
    assert!(report.0.cncis.is_empty(), "{report:?}");

    // START: the CNCI comes up and announces itself with the tenant and the node's address.
    ctl.start(tenant_a, a, node, "cnci");
    let added = ctl.concentrator_added(a);
    assert_eq!(added.0.tenant_uuid, tenant_a.to_string());
    assert_eq!(added.0.concentrator_ip, NN_IP);
    let inode = netns_inode(&netns_of(a)).expect("tenant namespace");
    let ifindex = uplink_ifindex(&netns_of(a));

    // A repeat is a no-op; a second CNCI for the tenant and a bad START are refused, recording
    // nothing.
    ctl.start(tenant_a, a, node, "cnci");
    let other = Uuid::new_v4();
    ctl.start(tenant_a, other, node, "cnci");
    assert_eq!(ctl.start_failure(&other.to_string()), "launch_failure");
    let bad = Uuid::new_v4();
    ctl.start(tenant_b, bad, node, "qemu");
    assert_eq!(ctl.start_failure(&bad.to_string()), "invalid_payload");
    assert_eq!(nn.recorded(), vec![a.to_string()]);
    let show = nn.show();
    assert_eq!(show["uuid"], serde_json::json!(node.to_string()), "{show}");
    assert_eq!(show["connected"], serde_json::json!(true), "{show}");
    assert_eq!(
        show["cncis"][0]["uuid"],
        serde_json::json!(a.to_string()),
        "{show}"
    );
    assert_eq!(
        show["cncis"][0]["tenant"],
        serde_json::json!(tenant_a.to_string()),
        "{show}"
    );
    let log = std::fs::read_to_string(&nn.log).expect("log");
    assert!(
        log.contains(&format!("START of CNCI {a}: runs already")),
        "{log}"
    );

    ctl.start(tenant_b, b, node, "cnci");
    ctl.concentrator_added(b);

    // SIGKILL and restart: both adopted, nothing recreated.
    drop(proc);
    proc = nn.start();
    let mut cncis = ctl.node_report().0.cncis;
    cncis.sort();
    let mut want = vec![a.to_string(), b.to_string()];
    want.sort();
    assert_eq!(cncis, want);
    ctl.concentrators_added(&[a, b]);
    assert_eq!(
        netns_inode(&netns_of(a)),
        Some(inode),
        "namespace recreated"
    );
    assert_eq!(uplink_ifindex(&netns_of(a)), ifindex, "uplink recreated");

    // DELETE: InstanceDeleted once the tenant namespace and the record are gone.
    ctl.delete(a, node);
    ctl.instance_deleted(a);
    assert_eq!(netns_inode(&netns_of(a)), None);
    assert_eq!(nn.recorded(), vec![b.to_string()]);
    ctl.delete(a, node); // unknown now: still answered
    ctl.instance_deleted(a);

    // A deletion interrupted by a kill (marked, not done) finishes on the next start.
    drop(proc);
    std::fs::write(
        nn.state
            .path()
            .join("cncis")
            .join(b.to_string())
            .join("deleting"),
        b"",
    )
    .expect("mark");
    let _proc = nn.start();
    ctl.instance_deleted(b);
    wait_gone(&netns_of(b));
    assert!(nn.recorded().is_empty());
    assert!(ctl.node_report().0.cncis.is_empty());
}

/// Traffic between containers on two compute nodes (static mode: their CNI configs name the
/// CNCI that `ciao-nn` runs) goes through the hub, keeps flowing while `ciao-nn` is killed, and
/// after its restart. A CNCI whose hub cannot be built is reported (StartFailure) and retried
/// until it can.
#[test]
fn traffic_through_a_ciao_nn_cnci_survives_its_restart_and_a_failed_cnci_is_retried() {
    require_root!();
    let (cluster, _certs, nn) = setup();
    let (cnci, tenant, broken) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let _cleanup = TenantNs(vec![netns_of(cnci), netns_of(broken)]);
    let _logs = LogsOnPanic(vec![
        nn.log.clone(),
        cluster.log("cn1"),
        cluster.log("scheduler"),
    ]);
    let ctl = Controller::connect(&cluster);
    let proc = nn.start();
    let node = ctl.node_report().node().expect("node");
    ctl.start(tenant, cnci, node, "cnci");
    ctl.concentrator_added(cnci);

    let t = Tenant {
        tenant: tenant.to_string(),
        cnci: cnci.to_string(),
        netns: netns_of(cnci),
        state_dir: nn.state.path().join("cncis").join(cnci.to_string()),
        agent_args: Vec::new(),
        controlled: false,
    };
    let subnet = "172.16.1.0/24";
    let w1 = cluster
        .container(Cn::Cn1, &t, subnet, "172.16.1.10")
        .expect("w1");
    let _w2 = cluster
        .container(Cn::Cn2, &t, subnet, "172.16.1.11")
        .expect("w2");
    cluster
        .wait_programmed(&t, subnet, &[Cn::Cn1.ip(), Cn::Cn2.ip()])
        .expect("hub programmed");
    assert!(w1.ping("172.16.1.11", 3), "cn1 -> cn2 through the hub");
    let inode = netns_inode(&t.netns);

    // SIGTERM: a clean exit that leaves the kernel as it is.
    let mut proc = proc;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(proc.0.id()).expect("pid")),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = proc.0.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "ciao-nn did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "ciao-nn exit on SIGTERM: {status}");
    assert!(w1.ping("172.16.1.11", 3), "traffic while ciao-nn is down");
    assert!(
        w1.ping("172.16.1.1", 1),
        "the gateway in the tenant namespace"
    );

    // A CNCI whose tenant namespace cannot be made (a directory in its place) fails and is
    // retried with back-off; once the obstacle is gone it comes up.
    let obstacle = Path::new("/run/netns").join(netns_of(broken));
    std::fs::create_dir_all(&obstacle).expect("obstacle");
    let _proc = nn.start();
    ctl.concentrator_added(cnci);
    assert_eq!(netns_inode(&t.netns), inode, "namespace recreated");
    assert!(w1.ping("172.16.1.11", 3), "traffic after the restart");
    ctl.start(Uuid::new_v4(), broken, node, "cnci");
    assert_eq!(ctl.start_failure(&broken.to_string()), "launch_failure");
    let deadline = Instant::now() + WAIT;
    while !std::fs::read_to_string(&nn.log)
        .unwrap_or_default()
        .contains(&format!("restarting CNCI {broken}"))
    {
        assert!(Instant::now() < deadline, "no failure logged");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::remove_dir(&obstacle).expect("remove obstacle");
    ctl.concentrator_added(broken);
}

/// Not a test: the numbers for the README's process-versus-task choice. `ciao-nn`'s resident
/// memory with 1, 10 and 100 CNCIs (`CIAO_NN_CNCIS`) and how long each batch takes to announce itself, then the
/// time to adopt all of them after a SIGKILL. Run with `--ignored --nocapture`.
#[test]
#[ignore]
fn ciao_nn_memory_per_cnci() {
    require_root!();
    let (cluster, _certs, nn) = setup();
    // CIAO_NN_CNCIS=1,10,100,1000 for more steps.
    let steps: Vec<usize> = std::env::var("CIAO_NN_CNCIS")
        .unwrap_or_else(|_| "1,10,100".into())
        .split(',')
        .map(|n| n.trim().parse().expect("CIAO_NN_CNCIS: counts"))
        .collect();
    let total = steps.iter().copied().max().unwrap_or(0);
    let cncis: Vec<Uuid> = (0..total).map(|_| Uuid::new_v4()).collect();
    let _cleanup = TenantNs(cncis.iter().map(|c| netns_of(*c)).collect());
    let _logs = LogsOnPanic(vec![nn.log.clone()]);
    let ctl = Controller::connect(&cluster);
    let proc = nn.start();
    let node = ctl.node_report().node().expect("node");
    let rss = |p: &Proc| testkit::host::rss_kib(p.0.id()).expect("rss");
    println!("ciao-nn idle: VmRSS {} KiB", rss(&proc));
    let mut done = 0;
    for upto in steps {
        let t0 = Instant::now();
        for c in &cncis[done..upto] {
            ctl.start(Uuid::new_v4(), *c, node, "cnci");
        }
        ctl.concentrators_added(&cncis[done..upto]);
        println!(
            "{upto} CNCIs: VmRSS {} KiB, {} started in {:.2?}",
            rss(&proc),
            upto - done,
            t0.elapsed()
        );
        done = upto;
    }
    drop(proc);
    let t0 = Instant::now();
    let proc = nn.start();
    ctl.concentrators_added(&cncis);
    println!(
        "after SIGKILL: {total} CNCIs adopted in {:.2?}, VmRSS {} KiB",
        t0.elapsed(),
        rss(&proc)
    );
    drop(proc);
    for c in &cncis {
        testkit::delete_netns(&netns_of(*c));
    }
}
