//! `ciao-controller` as a process, against a real `ciao-scheduler` over TLS, with test SSNTP
//! clients standing in for network nodes (NETAGENT, plus one CNCIAGENT session per started
//! CNCI) and compute nodes (AGENT). The store is the real SQLite file in the state directory.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use ciao_controller::{CnciState, SqliteStore, Store};
use ssntp::client::{dial, Session};
use ssntp::frame::{command, error, event, kind, role, Frame};
use ssntp::payloads::{
    CnciAssignment, CnciAssignmentCmd, CnciRefused, CnciRequest, CnciRequestEvent,
    ConcentratorInstanceAdded, ConcentratorInstanceAddedEvent, NodeReport, NodeReportEvent,
    NodeType, Payload, Start,
};
use testkit::{ciao_certificates, start_scheduler_logged, LoggedScheduler, Proc};
use uuid::Uuid;

const DEADLINE: Duration = Duration::from_secs(60);

/// The certificates: one leaf per role beside the scheduler's anchor.
const LEAVES: [(&str, &str); 4] = [
    ("controller", "ctl"),
    ("agent", "cn"),
    ("netagent", "nn"),
    ("cnciagent", "cnci"),
];

/// One certificate set per checkout, made once with `ciao-cert` under
/// `target/test-certs/controller` (RSA key generation takes seconds per key in a debug
/// build), in a temporary directory renamed into place so that no process sees half a set.
fn certs() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = testkit::workspace_root().join("target/test-certs");
        let dir = base.join("controller");
        let complete = |d: &Path| {
            d.join("CAcert-localhost.pem").is_file()
                && LEAVES
                    .iter()
                    .all(|(r, h)| d.join(format!("cert-{r}-{h}.pem")).is_file())
        };
        if !complete(&dir) {
            std::fs::create_dir_all(&base).expect("target/test-certs");
            let tmp = tempfile::tempdir_in(&base).expect("certificate dir");
            ciao_certificates(tmp.path(), &LEAVES);
            let made = tmp.keep();
            if std::fs::rename(&made, &dir).is_err() {
                let _ = std::fs::remove_dir_all(&made);
                assert!(complete(&dir), "{} is incomplete; remove it", dir.display());
            }
        }
        dir
    })
}

fn cert(role_bits: u32) -> PathBuf {
    let name = match role_bits {
        role::CONTROLLER => "controller-ctl",
        role::AGENT => "agent-cn",
        role::NETAGENT => "netagent-nn",
        _ => "cnciagent-cnci",
    };
    certs().join(format!("cert-{name}.pem"))
}

fn client_tls(role_bits: u32) -> Arc<rustls::ClientConfig> {
    static TLS: OnceLock<Mutex<HashMap<u32, Arc<rustls::ClientConfig>>>> = OnceLock::new();
    let mut all = TLS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    all.entry(role_bits)
        .or_insert_with(|| {
            testkit::client_tls(&cert(role_bits), &certs().join("CAcert-localhost.pem"))
        })
        .clone()
}

async fn connect(addr: &str, uuid: Uuid, role_bits: u32) -> Session {
    dial(addr, "localhost", client_tls(role_bits), uuid, role_bits)
        .await
        .expect("connects to the scheduler")
}

/// A scheduler and a controller (restartable), each in its own state.
struct Bed {
    scheduler: LoggedScheduler,
    dir: tempfile::TempDir,
    controller: Option<Proc>,
    log: PathBuf,
    starts: u32,
}

impl Bed {
    fn new() -> Bed {
        let path = |f: &Path| f.to_str().expect("utf-8").to_owned();
        let args = [
            "--listen".to_owned(),
            "127.0.0.1:0".to_owned(),
            "--cert".to_owned(),
            path(&certs().join("cert-scheduler-localhost.pem")),
            "--ca".to_owned(),
            path(&certs().join("CAcert-localhost.pem")),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let scheduler = start_scheduler_logged(&args, None);
        let dir = tempfile::tempdir().expect("tempdir");
        let config = format!(
            "state_dir = {:?}\n\n[scheduler]\naddress = {:?}\nserver_name = \"localhost\"\ncert = {:?}\nca = {:?}\n",
            dir.path().join("state"),
            scheduler.addr,
            cert(role::CONTROLLER),
            certs().join("CAcert-localhost.pem"),
        );
        std::fs::write(dir.path().join("controller.toml"), config).expect("config");
        let mut bed = Bed {
            scheduler,
            log: PathBuf::new(),
            dir,
            controller: None,
            starts: 0,
        };
        bed.start_controller();
        bed
    }

    /// Starts the controller and waits until it is connected to the scheduler.
    fn start_controller(&mut self) {
        self.starts += 1;
        self.log = self
            .dir
            .path()
            .join(format!("controller-{}.log", self.starts));
        let log = std::fs::File::create(&self.log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_ciao-controller"))
            .arg("--config")
            .arg(self.dir.path().join("controller.toml"))
            .env("RUST_LOG", "info")
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start ciao-controller");
        self.controller = Some(Proc(child));
        self.wait_log(&["connected to the scheduler"]);
    }

    /// SIGKILL, by PID (the child handle), then reaped.
    fn kill_controller(&mut self) {
        if let Some(mut p) = self.controller.take() {
            p.0.kill().expect("SIGKILL");
            p.0.wait().expect("reaped");
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for a line of the current controller log holding every needle.
    fn wait_log(&self, needles: &[&str]) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let text = self.log_text();
            if let Some(line) = text.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
                return line.to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "no controller log line with {needles:?}:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn store(&self) -> SqliteStore {
        SqliteStore::open_in(&self.dir.path().join("state")).expect("store")
    }
}

/// A network node: its NETAGENT session, the STARTs it received, and for each a CNCI session
/// that announces itself with the node's underlay address.
struct NetworkNode {
    uuid: Uuid,
    underlay: Ipv4Addr,
    starts: Arc<Mutex<Vec<Start>>>,
}

impl NetworkNode {
    async fn join(bed: &Bed, underlay: Ipv4Addr) -> NetworkNode {
        let uuid = Uuid::new_v4();
        let starts = Arc::new(Mutex::new(Vec::new()));
        let mut session = connect(&bed.scheduler.addr, uuid, role::NETAGENT).await;
        let report = NodeReport(NodeReportEvent {
            node_uuid: uuid.to_string(),
            node_type: NodeType::NetworkNode,
            underlay_ip: underlay.to_string(),
            external_device: "eth9".into(),
            capacity: 0,
            cncis: Vec::new(),
        });
        send(
            &mut session,
            kind::EVENT,
            event::NODE_REPORT,
            uuid,
            report.to_yaml(),
        )
        .await;
        let (addr, seen) = (bed.scheduler.addr.clone(), starts.clone());
        tokio::spawn(async move {
            let mut cncis = HashMap::new();
            while let Ok(Some(f)) = session.reader.frame().await {
                if (f.kind, f.operand) != (kind::COMMAND, command::START) {
                    continue;
                }
                let start = Start::from_yaml(&f.payload).expect("START payload");
                let cnci = start.instance().expect("instance uuid");
                let tenant = start.0.tenant_uuid.clone();
                seen.lock().unwrap_or_else(|e| e.into_inner()).push(start);
                if cncis.contains_key(&cnci) {
                    continue; // idempotent: it runs already
                }
                let mut s = connect(&addr, cnci, role::CNCIAGENT).await;
                let added = ConcentratorInstanceAdded(ConcentratorInstanceAddedEvent {
                    instance_uuid: cnci.to_string(),
                    tenant_uuid: tenant,
                    concentrator_ip: underlay.to_string(),
                    concentrator_mac: String::new(),
                });
                send(
                    &mut s,
                    kind::EVENT,
                    event::CONCENTRATOR_INSTANCE_ADDED,
                    cnci,
                    added.to_yaml(),
                )
                .await;
                cncis.insert(cnci, s);
            }
        });
        bed.wait_log(&["network node reported", &uuid.to_string()]);
        NetworkNode {
            uuid,
            underlay,
            starts,
        }
    }

    fn starts(&self) -> Vec<Start> {
        self.starts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

async fn send(s: &mut Session, k: u8, operand: u8, origin: Uuid, payload: Vec<u8>) {
    s.writer
        .frame(&Frame::new(k, operand, origin, payload))
        .await
        .expect("send");
}

fn request(cn: Uuid, tenant: Uuid, subnet: &str) -> Vec<u8> {
    CnciRequest(CnciRequestEvent {
        agent_uuid: cn.to_string(),
        tenant_uuid: tenant.to_string(),
        subnet: subnet.to_owned(),
        agent_ip: "10.99.0.2".into(),
    })
    .to_yaml()
}

type Answers = HashMap<(String, String), CnciAssignmentCmd>;

/// A compute node: sends every request at once, then again every 500 ms for those still
/// unanswered (as `ciao-node` does, every 2 s), until each has its CnciAssignment.
async fn compute_node(addr: &str, cn: Uuid, requests: &[(Uuid, String)]) -> Answers {
    let mut s = connect(addr, cn, role::AGENT).await;
    let mut answers = Answers::new();
    let deadline = Instant::now() + DEADLINE;
    loop {
        for (tenant, subnet) in requests {
            if !answers.contains_key(&(tenant.to_string(), subnet.clone())) {
                send(
                    &mut s,
                    kind::EVENT,
                    event::CNCI_REQUEST,
                    cn,
                    request(cn, *tenant, subnet),
                )
                .await;
            }
        }
        let round = Instant::now() + Duration::from_millis(500);
        while let Ok(next) = tokio::time::timeout_at(round.into(), s.reader.frame()).await {
            let f = next.expect("read").expect("session open");
            if (f.kind, f.operand) != (kind::COMMAND, command::CNCI_ASSIGNMENT) {
                continue;
            }
            let a = CnciAssignment::from_yaml(&f.payload).expect("assignment payload");
            assert_eq!(a.agent().ok(), Some(cn), "an assignment for another node");
            answers.insert((a.0.tenant_uuid.clone(), a.0.subnet.clone()), a.0);
        }
        if answers.len() == requests.len() {
            return answers;
        }
        assert!(Instant::now() < deadline, "{cn}: answers {answers:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_simultaneous_requests_get_one_cnci_and_one_tunnel_id_per_subnet() {
    let bed = Bed::new();
    let nn = NetworkNode::join(&bed, Ipv4Addr::new(10, 99, 0, 9)).await;
    let tenant = Uuid::new_v4();
    let requests: Vec<(Uuid, String)> = (0..10)
        .map(|i| (tenant, format!("172.16.{i}.0/24")))
        .collect();
    let addr = bed.scheduler.addr.clone();
    let (a, b) = tokio::join!(
        compute_node(&addr, Uuid::new_v4(), &requests),
        compute_node(&addr, Uuid::new_v4(), &requests)
    );
    let starts = nn.starts();
    assert_eq!(starts.len(), 1, "exactly one START: {starts:?}");
    let cnci = starts[0].instance().expect("cnci");
    assert_eq!(starts[0].tenant().ok(), Some(tenant));
    let mut ids = HashSet::new();
    for (key, got) in &a {
        let other = &b[key];
        assert_eq!(got.concentrator_uuid, cnci.to_string());
        assert_eq!(got.concentrator_ip, nn.underlay.to_string());
        assert_eq!(
            (got.tunnel_kind, got.tunnel_id),
            (other.tunnel_kind, other.tunnel_id),
            "both nodes tunnel {key:?} with the same id"
        );
        assert_eq!(other.concentrator_uuid, got.concentrator_uuid);
        ids.insert(got.tunnel_id);
    }
    assert_eq!(ids.len(), 10, "one distinct id per subnet: {ids:?}");
    let store = bed.store();
    let cncis = store.cncis().expect("cncis");
    assert_eq!(cncis.len(), 1, "{cncis:?}");
    assert_eq!(cncis[0].state, CnciState::Ready);
    assert_eq!(cncis[0].network_node, nn.uuid);
    assert_eq!(
        store
            .subnet_nodes(tenant, "172.16.3.0/24".parse().expect("cidr"))
            .expect("nodes")
            .len(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_get_distinct_ids_and_a_new_network_node_gets_the_next_tenant() {
    let bed = Bed::new();
    let nn1 = NetworkNode::join(&bed, Ipv4Addr::new(10, 99, 0, 9)).await;
    let (t1, t2) = (Uuid::new_v4(), Uuid::new_v4());
    let subnet = "172.16.1.0/24".to_owned();
    let addr = bed.scheduler.addr.clone();
    let cn = Uuid::new_v4();
    let first = compute_node(&addr, cn, &[(t1, subnet.clone())]).await;
    let nn2 = NetworkNode::join(&bed, Ipv4Addr::new(10, 99, 0, 10)).await;
    let second = compute_node(&addr, Uuid::new_v4(), &[(t2, subnet.clone())]).await;
    let a = &first[&(t1.to_string(), subnet.clone())];
    let b = &second[&(t2.to_string(), subnet)];
    assert_ne!(
        a.tunnel_id, b.tunnel_id,
        "same subnet, two tenants: two ids"
    );
    assert_eq!(a.concentrator_ip, nn1.underlay.to_string());
    assert_eq!(
        b.concentrator_ip,
        nn2.underlay.to_string(),
        "the new node has fewest CNCIs"
    );
    assert_eq!(nn1.starts().len(), 1);
    assert_eq!(nn2.starts().len(), 1);
    assert_eq!(nn2.starts()[0].tenant().ok(), Some(t2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_controller_restarts_with_the_same_answers_and_starts_nothing_again() {
    let mut bed = Bed::new();
    let nn = NetworkNode::join(&bed, Ipv4Addr::new(10, 99, 0, 9)).await;
    let tenant = Uuid::new_v4();
    let addr = bed.scheduler.addr.clone();
    let cn = Uuid::new_v4();
    let one = [(tenant, "172.16.1.0/24".to_owned())];
    let before = compute_node(&addr, cn, &one).await;

    bed.kill_controller();
    // A new tenant's attach while the controller is down: its requests go nowhere until the
    // controller is back, then the next one is answered.
    let late_tenant = Uuid::new_v4();
    let late = [(late_tenant, "172.16.1.0/24".to_owned())];
    let (late_addr, late_cn) = (addr.clone(), Uuid::new_v4());
    let waiting = tokio::spawn(async move { compute_node(&late_addr, late_cn, &late).await });
    tokio::task::block_in_place(|| bed.start_controller());
    let after = compute_node(&addr, cn, &one).await;
    assert_eq!(before, after, "the same answer from the store");
    let two = [(tenant, "172.16.2.0/24".to_owned())];
    let more = compute_node(&addr, Uuid::new_v4(), &two).await;
    let new = &more[&(tenant.to_string(), two[0].1.clone())];
    let old = &before[&(tenant.to_string(), one[0].1.clone())];
    assert_eq!(
        new.concentrator_uuid, old.concentrator_uuid,
        "the same CNCI"
    );
    assert_ne!(new.tunnel_id, old.tunnel_id, "a new id for the new subnet");
    let late = waiting.await.expect("the late compute node");
    let late = &late[&(late_tenant.to_string(), "172.16.1.0/24".to_owned())];
    assert_ne!(late.tunnel_id, old.tunnel_id);
    let starts: Vec<Option<Uuid>> = nn.starts().iter().map(|s| s.tenant().ok()).collect();
    assert_eq!(
        starts,
        [Some(tenant), Some(late_tenant)],
        "no second START for a ready CNCI"
    );
    assert_eq!(bed.store().cncis().expect("cncis").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_subnet_is_refused_logged_and_nothing_stored() {
    let bed = Bed::new();
    let _nn = NetworkNode::join(&bed, Ipv4Addr::new(10, 99, 0, 9)).await;
    let addr = bed.scheduler.addr.clone();
    let (bad, good, cn) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let mut s = connect(&addr, cn, role::AGENT).await;
    for subnet in ["172.16.1.0/33", "not-a-cidr", "172.16.1.1/24"] {
        send(
            &mut s,
            kind::EVENT,
            event::CNCI_REQUEST,
            cn,
            request(cn, bad, subnet),
        )
        .await;
    }
    // From the same node afterwards, so handled afterwards: its answer means the bad ones
    // were handled.
    let mut answers = HashMap::new();
    let mut refusals = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    send(
        &mut s,
        kind::EVENT,
        event::CNCI_REQUEST,
        cn,
        request(cn, good, "172.16.9.0/24"),
    )
    .await;
    while answers.is_empty() {
        assert!(Instant::now() < deadline, "no answer to the good request");
        let f = tokio::time::timeout(DEADLINE, s.reader.frame())
            .await
            .expect("in time")
            .expect("read")
            .expect("open");
        if f.operand == command::CNCI_ASSIGNMENT {
            let a = CnciAssignment::from_yaml(&f.payload).expect("payload").0;
            assert_eq!(
                a.tenant_uuid,
                good.to_string(),
                "only the good one is answered"
            );
            answers.insert(a.subnet.clone(), a);
        } else if (f.kind, f.operand) == (kind::ERROR, error::CNCI_REFUSED) {
            let r = CnciRefused::from_yaml(&f.payload).expect("refusal").0;
            assert_eq!(r.agent_uuid, cn.to_string());
            refusals.push(r.subnet);
        }
    }
    assert_eq!(
        refusals,
        ["172.16.1.0/33", "not-a-cidr", "172.16.1.1/24"],
        "each bad request is refused to its node, so that it stops asking"
    );
    let log = bed.log_text();
    for why in ["\"172.16.1.0/33\"", "\"not-a-cidr\"", "has host bits set"] {
        assert!(log.contains(why), "no refusal naming {why} in:\n{log}");
    }
    let store = bed.store();
    let tenants: Vec<Uuid> = store
        .tenants()
        .expect("tenants")
        .iter()
        .map(|t| t.uuid)
        .collect();
    assert_eq!(tenants, [good], "the refused tenant was not stored");
    assert!(store.subnets(bad).expect("subnets").is_empty());
}

/// The next frame of `s` that is not a NodeConnected/NodeDisconnected notice.
async fn next_frame(s: &mut Session) -> Frame {
    loop {
        let f = tokio::time::timeout(DEADLINE, s.reader.frame())
            .await
            .expect("a frame in time")
            .expect("read")
            .expect("open");
        if f.kind != kind::EVENT {
            return f;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overlapping_subnet_is_refused_to_its_node_and_a_missing_network_node_is_not() {
    let bed = Bed::new();
    let addr = bed.scheduler.addr.clone();
    let (tenant, cn1, cn2) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let mut s = connect(&addr, cn2, role::AGENT).await;
    // No network node yet: the request cannot be answered now, but it is not refused.
    send(
        &mut s,
        kind::EVENT,
        event::CNCI_REQUEST,
        cn2,
        request(cn2, tenant, "10.1.0.0/16"),
    )
    .await;
    bed.wait_log(&["no connected network node"]);
    let _nn = NetworkNode::join(&bed, Ipv4Addr::new(10, 99, 0, 9)).await;
    let wide = [(tenant, "10.1.0.0/16".to_owned())];
    compute_node(&addr, cn1, &wide).await;
    send(
        &mut s,
        kind::EVENT,
        event::CNCI_REQUEST,
        cn2,
        request(cn2, tenant, "10.1.2.0/24"),
    )
    .await;
    let f = next_frame(&mut s).await;
    assert_eq!(
        (f.kind, f.operand),
        (kind::ERROR, error::CNCI_REFUSED),
        "the first frame cn2 gets is the refusal of the overlapping subnet"
    );
    let r = CnciRefused::from_yaml(&f.payload).expect("refusal");
    assert_eq!(r.agent().ok(), Some(cn2));
    assert_eq!(r.tenant().ok(), Some(tenant));
    assert_eq!(r.0.subnet, "10.1.2.0/24");
    assert!(
        r.0.reason.contains("overlaps") && r.0.reason.contains("10.1.0.0/16"),
        "{}",
        r.0.reason
    );
    let store = bed.store();
    let subnets: Vec<String> = store
        .subnets(tenant)
        .expect("subnets")
        .iter()
        .map(|s| s.cidr.to_string())
        .collect();
    assert_eq!(
        subnets,
        ["10.1.0.0/16"],
        "nothing stored for the refused one"
    );
}

#[test]
fn a_bad_config_is_refused_at_start_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("controller.toml");
    for (text, key) in [
        ("public_pools = [\"10.0.0.0/33\"]\n", "public_pools[0]"),
        ("state_dir = \"relative\"\n", "state_dir"),
        ("", "scheduler"),
        ("", "scheduler.cert / scheduler.ca"),
    ] {
        let state = dir.path().join("state");
        let state_line = if key == "state_dir" {
            String::new()
        } else {
            format!("state_dir = {state:?}\n")
        };
        let full = format!(
            "{state_line}{text}{}",
            if text.is_empty() && key == "scheduler" {
                String::new()
            } else {
                "[scheduler]\ncert = \"/nonexistent/c.pem\"\nca = \"/nonexistent/ca.pem\"\n".into()
            }
        );
        std::fs::write(&config, full).expect("config");
        let out = Command::new(env!("CARGO_BIN_EXE_ciao-controller"))
            .arg("--config")
            .arg(&config)
            .output()
            .expect("run ciao-controller");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{key}: accepted");
        let named = [format!("config key {key}"), format!("config keys {key}")];
        assert!(named.iter().any(|n| stderr.contains(n)), "{key}: {stderr}");
        assert!(!state.exists(), "nothing made for a refused config");
    }
}

// ---- the subnet left out: SubnetRequest -> SubnetAssignment ---------------------------------

/// Sends SubnetRequest for `tenant` every 500 ms until the SubnetAssignment comes.
async fn ask_subnet(s: &mut Session, cn: Uuid, tenant: Uuid) -> ssntp::payloads::Granted {
    use ssntp::payloads::{SubnetAssignment, SubnetRequest};
    let deadline = Instant::now() + DEADLINE;
    loop {
        let ask = SubnetRequest::new(cn, tenant).to_yaml();
        send(s, kind::EVENT, event::SUBNET_REQUEST, cn, ask).await;
        let round = Instant::now() + Duration::from_millis(500);
        while let Ok(next) = tokio::time::timeout_at(round.into(), s.reader.frame()).await {
            let f = next.expect("read").expect("session open");
            if (f.kind, f.operand) == (kind::COMMAND, command::SUBNET_ASSIGNMENT) {
                let a = SubnetAssignment::from_yaml(&f.payload).expect("payload");
                assert_eq!(a.agent().ok(), Some(cn));
                return a.outcome().expect("a well-formed assignment");
            }
        }
        assert!(Instant::now() < deadline, "{cn}: no SubnetAssignment");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_get_one_automatic_subnet_with_disjoint_slices_that_survive_a_restart() {
    let mut bed = Bed::new();
    let addr = bed.scheduler.addr.clone();
    let (tenant, cn1, cn2) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let mut s1 = connect(&addr, cn1, role::AGENT).await;
    let mut s2 = connect(&addr, cn2, role::AGENT).await;
    let a1 = ask_subnet(&mut s1, cn1, tenant).await.expect("granted");
    let a2 = ask_subnet(&mut s2, cn2, tenant).await.expect("granted");
    assert_eq!(a1.0, a2.0, "one subnet for the tenant");
    assert_eq!(a1.0.to_string(), "172.16.0.0/24", "the range's first block");
    assert!(a1.2 < a2.1 || a2.2 < a1.1, "disjoint slices: {a1:?} {a2:?}");
    assert_eq!(a1.1, Ipv4Addr::new(172, 16, 0, 2), "never the gateway");
    let subnets = bed.store().subnets(tenant).expect("subnets");
    assert_eq!(subnets.len(), 1);
    assert!(subnets[0].tunnel_id > 0, "a tunnel id with it");

    // The decision was persisted: a new controller gives the same answer.
    bed.kill_controller();
    bed.start_controller();
    assert_eq!(ask_subnet(&mut s1, cn1, tenant).await, Ok(a1));
}
