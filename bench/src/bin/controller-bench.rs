//! `controller-bench`: a compute node's CnciRequest answered by `ciao-controller` whose store
//! holds 10,000 tenants x 5 subnets with their CNCIs ready (issue 12).
//!
//! The store is filled through the controller's own [`Store`] code on a real SQLite file (on
//! tmpfs while filling, so its fsyncs cost nothing, then copied into the controller's state
//! directory on disk). The testkit cluster in controller mode runs the real scheduler and
//! controller in namespaces this bench makes and removes; stand-in compute nodes (SSNTP
//! sessions of role agent) request existing (tenant, subnet) pairs: request to CnciAssignment
//! latency, sequential and from `--concurrency` sessions at once, and the controller's RSS.
//! Beside it, the baseline: the same with a store of `--baseline-tenants` tenants. Needs root.
//!
//! ```text
//! cargo build --release -p ciao-bench -p ciao-cnci-agent -p ciao-controller -p ciao-scheduler -p ciao-node
//! target/release/controller-bench
//! ```

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ciao_controller::{CnciState, NetworkNodeReport, SqliteStore, Store, STORE_FILE};
use clap::Parser;
use serde::Serialize;
use ssntp::frame::{command, event, kind, role, Frame};
use ssntp::payloads::{CnciAssignment, CnciRequest, CnciRequestEvent, Payload, TunnelKind};
use testkit::cluster::{in_netns, Cluster, Cn, SCHEDULER_ADDR};
use testkit::host::{mem, raise_nofile_to_hard, utc_stamp};
use uuid::Uuid;

const SUBNETS: u8 = 5;

/// The binaries the cluster runs, all taken from this bench's own directory.
const NEEDED: [&str; 7] = [
    "ciao-scheduler",
    "ciao-cert",
    "ciao-controller",
    "ciao-net",
    "ciao-nn",
    "ciao-cnci-agent",
    "ciao-node",
];

#[derive(Parser)]
#[command(
    name = "controller-bench",
    about = "CnciRequest latency of ciao-controller with a large store (needs root)"
)]
struct Args {
    /// Tenants in the large store (each with 5 subnets and a ready CNCI).
    #[arg(long, default_value_t = 10_000)]
    tenants: usize,
    /// Tenants in the baseline store.
    #[arg(long, default_value_t = 10)]
    baseline_tenants: usize,
    /// Requests measured one after the other.
    #[arg(long, default_value_t = 2000)]
    requests: usize,
    /// Sessions requesting at once in the concurrent phase (each sequential).
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Directory for `controller-<timestamp>.json`.
    #[arg(long, default_value_os_t = Path::new(env!("CARGO_MANIFEST_DIR")).join("results"))]
    out_dir: PathBuf,
}

#[derive(Serialize)]
struct Phase {
    tenants: usize,
    fill_secs: f64,
    sequential: Latency,
    concurrent: Latency,
    controller_rss_kib: u64,
}

#[derive(Serialize)]
struct Latency {
    requests: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    per_sec: f64,
}

#[derive(Serialize)]
struct Results {
    concurrency: usize,
    large: Phase,
    baseline: Phase,
    /// Large over baseline, p50 and p99 sequential.
    ratio_p50: f64,
    ratio_p99: f64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if !nix::unistd::geteuid().is_root() {
        bail!("controller-bench needs root (network namespaces)");
    }
    raise_nofile_to_hard()?;
    let dir = std::env::current_exe()?
        .parent()
        .context("bench directory")?
        .to_path_buf();
    testkit::bins::only_from(&dir, &NEEDED).map_err(anyhow::Error::msg)?;
    let cns: Vec<Uuid> = (0..args.concurrency.max(1))
        .map(|_| Uuid::new_v4())
        .collect();
    let mut cluster = Cluster::with_controller().context("cluster in controller mode")?;
    cluster.kill_nn(); // not needed: the stores' CNCIs are all ready
    let large = phase(&mut cluster, &args, args.tenants, &cns)?;
    let baseline = phase(&mut cluster, &args, args.baseline_tenants, &cns)?;
    let results = Results {
        concurrency: cns.len(),
        ratio_p50: round(large.sequential.p50_ms / baseline.sequential.p50_ms.max(1e-6)),
        ratio_p99: round(large.sequential.p99_ms / baseline.sequential.p99_ms.max(1e-6)),
        large,
        baseline,
    };
    let text = serde_json::to_string_pretty(&results)?;
    println!("{text}");
    std::fs::create_dir_all(&args.out_dir)?;
    let out = args
        .out_dir
        .join(format!("controller-{}.json", utc_stamp()));
    std::fs::write(&out, &text)?;
    eprintln!("written to {}", out.display());
    drop(cluster); // kills what it started, by PID, and removes its namespaces
    Ok(())
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn subnet(s: u8) -> String {
    format!("172.16.{s}.0/24")
}

/// Fills a store with `n` tenants, swaps it in under a restarted controller, and measures.
fn phase(cluster: &mut Cluster, args: &Args, n: usize, cns: &[Uuid]) -> Result<Phase> {
    let started = Instant::now();
    let tenants = fill(cluster, n, cns)?;
    let fill_secs = round(started.elapsed().as_secs_f64());
    eprintln!("{n} tenants x {SUBNETS} subnets stored in {fill_secs:.1} s");
    // Each compute node asks for the pairs it hosts: tenant i is hosted by cns[i % len].
    let pairs_of = |k: usize| -> Vec<(Uuid, String)> {
        let mut v = Vec::new();
        for (i, t) in tenants
            .iter()
            .enumerate()
            .filter(|(i, _)| i % cns.len() == k)
        {
            v.push((*t, subnet((i % SUBNETS as usize) as u8)));
        }
        v
    };
    let seq = run_sessions(cluster, &[(cns[0], pairs_of(0))], args.requests)?;
    let all: Vec<(Uuid, Vec<(Uuid, String)>)> =
        (0..cns.len()).map(|k| (cns[k], pairs_of(k))).collect();
    let conc = run_sessions(cluster, &all, args.requests / cns.len().max(1))?;
    let pid = cluster.control_pids().0.context("the controller runs")?;
    let rss = mem(pid)?.rss_kib;
    eprintln!(
        "{n} tenants: sequential p50 {:.2} ms p99 {:.2} ms; {} at once p50 {:.2} ms p99 {:.2} ms; RSS {rss} KiB",
        seq.p50_ms,
        seq.p99_ms,
        cns.len(),
        conc.p50_ms,
        conc.p99_ms
    );
    Ok(Phase {
        tenants: n,
        fill_secs,
        sequential: seq,
        concurrent: conc,
        controller_rss_kib: rss,
    })
}

/// Writes a store of `n` tenants on tmpfs through [`Store`], then replaces the controller's.
fn fill(cluster: &mut Cluster, n: usize, cns: &[Uuid]) -> Result<Vec<Uuid>> {
    let tmp = tempfile::tempdir_in("/dev/shm").context("tmpfs dir")?;
    let store = SqliteStore::open_in(tmp.path())?;
    let nn = Uuid::new_v4();
    let underlay = Ipv4Addr::new(10, 250, 0, 3);
    store.network_node_connected(&NetworkNodeReport {
        uuid: nn,
        underlay,
        external_device: "ext0".into(),
        capacity: u32::MAX,
    })?;
    let mut tenants = Vec::with_capacity(n);
    for i in 0..n {
        let tenant = Uuid::new_v4();
        let cn = cns[i % cns.len()];
        for s in 0..SUBNETS {
            store.request_subnet(tenant, subnet(s).parse()?, TunnelKind::Vxlan, cn)?;
        }
        let cnci = store.ensure_cnci(tenant)?;
        store.set_cnci_state(cnci.uuid, CnciState::Starting, None)?;
        store.set_cnci_state(cnci.uuid, CnciState::Ready, Some(underlay))?;
        tenants.push(tenant);
    }
    for cn in cns {
        store.compute_node_connected(*cn, Cn::Cn1.ip().parse()?)?;
    }
    drop(store); // closes the connection: the WAL is checkpointed into the file
    let dir = cluster
        .admin_socket()?
        .parent()
        .context("controller dir")?
        .to_path_buf();
    cluster.kill_controller();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.join(format!("{STORE_FILE}{suffix}")));
    }
    std::fs::copy(tmp.path().join(STORE_FILE), dir.join(STORE_FILE))?;
    cluster.start_controller()?;
    Ok(tenants)
}

fn request(cn: Uuid, tenant: Uuid, subnet: &str) -> Frame {
    let body = CnciRequest(CnciRequestEvent {
        agent_uuid: cn.to_string(),
        tenant_uuid: tenant.to_string(),
        subnet: subnet.into(),
        agent_ip: Cn::Cn1.ip().into(),
    });
    Frame::new(kind::EVENT, event::CNCI_REQUEST, cn, body.to_yaml())
}

/// One session per compute node, all at once, each sending `count` requests one after the
/// other (spread over its pairs) and timing each until its CnciAssignment.
fn run_sessions(
    cluster: &Cluster,
    nodes: &[(Uuid, Vec<(Uuid, String)>)],
    count: usize,
) -> Result<Latency> {
    let tls = testkit::client_tls(&cluster.certs.agent(Cn::Cn1), &cluster.certs.ca());
    let nodes = nodes.to_vec();
    let (mut samples, secs) = in_netns(&cluster.underlay.path(), move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let mut sessions = Vec::new();
            for (cn, pairs) in nodes {
                let s =
                    ssntp::client::dial(SCHEDULER_ADDR, "localhost", tls.clone(), cn, role::AGENT)
                        .await
                        .context("stand-in compute node session")?;
                sessions.push((s, cn, pairs));
            }
            let started = Instant::now();
            let mut set = tokio::task::JoinSet::new();
            for (s, cn, pairs) in sessions {
                set.spawn(one_node(s, cn, pairs, count));
            }
            let mut all = Vec::new();
            while let Some(r) = set.join_next().await {
                all.extend(r??);
            }
            anyhow::Ok((all, started.elapsed().as_secs_f64()))
        })
    })?;
    samples.sort_by(f64::total_cmp);
    let at =
        |q: f64| samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1];
    Ok(Latency {
        requests: samples.len(),
        p50_ms: round(at(0.50)),
        p99_ms: round(at(0.99)),
        max_ms: round(at(1.0)),
        per_sec: round(samples.len() as f64 / secs),
    })
}

async fn one_node(
    mut s: ssntp::client::Session,
    cn: Uuid,
    pairs: Vec<(Uuid, String)>,
    count: usize,
) -> Result<Vec<f64>> {
    if pairs.is_empty() {
        bail!("compute node {cn} hosts no pair");
    }
    let mut samples = Vec::with_capacity(count);
    // One unmeasured request first: the controller records the node's address once.
    for i in 0..=count {
        let (tenant, subnet) = &pairs[(i * 7919) % pairs.len()];
        let sent = Instant::now();
        s.writer.frame(&request(cn, *tenant, subnet)).await?;
        loop {
            let f = tokio::time::timeout(Duration::from_secs(10), s.reader.frame())
                .await
                .context("no CnciAssignment within 10 s")??
                .context("the scheduler closed the session")?;
            if (f.kind, f.operand) != (kind::COMMAND, command::CNCI_ASSIGNMENT) {
                continue;
            }
            let a = CnciAssignment::from_yaml(&f.payload)?;
            if a.0.tenant_uuid == tenant.to_string() && a.0.subnet == *subnet {
                break;
            }
        }
        if i > 0 {
            samples.push(sent.elapsed().as_secs_f64() * 1000.0);
        }
    }
    Ok(samples)
}
