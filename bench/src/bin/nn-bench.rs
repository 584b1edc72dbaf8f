//! `nn-bench`: 1,000 tenants provisioned on one network node (issue 12).
//!
//! The testkit cluster in controller mode (real `ciao-scheduler`, `ciao-controller` and
//! `ciao-nn`, each in a network namespace this bench makes and removes) and a stand-in compute
//! node (an SSNTP session of role agent) that sends CnciRequest for `--tenants` new tenants, one
//! subnet each, and re-sends the unanswered ones every 2 s as `ciao-node` does. Measures the
//! time from the first request to the last CnciAssignment (each assignment means the tenant's
//! CNCI runs and announced itself), and `ciao-nn`'s RSS before and after. Beside it, the
//! baseline: `--baseline` standalone `ciao-cnci-agent` processes in the same network node,
//! their RSS per process, measured first, on a node with no other CNCI. Needs root. Not part
//! of CI.
//!
//! ```text
//! cargo build --release -p ciao-bench -p ciao-cnci-agent -p ciao-controller -p ciao-scheduler -p ciao-node
//! target/release/nn-bench --tenants 1000
//! ```

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde::Serialize;
use ssntp::frame::{command, event, kind, role, Frame};
use ssntp::payloads::{CnciAssignment, CnciRequest, CnciRequestEvent, Payload};
use testkit::cluster::{in_netns, Cluster, Member, SCHEDULER_ADDR};
use testkit::host::{mem, raise_nofile_to_hard, utc_stamp, CpuMeter};
use uuid::Uuid;

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
    name = "nn-bench",
    about = "Tenants provisioned on one ciao-nn: time and memory per CNCI (needs root)"
)]
struct Args {
    /// New tenants (one subnet each, so one CNCI each).
    #[arg(long, default_value_t = 1000)]
    tenants: usize,
    /// Standalone ciao-cnci-agent processes for the baseline (0: none).
    #[arg(long, default_value_t = 10)]
    baseline: usize,
    /// Seconds allowed for the provisioning before the run is declared broken.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
    /// Directory for `nn-<timestamp>.json`.
    #[arg(long, default_value_os_t = Path::new(env!("CARGO_MANIFEST_DIR")).join("results"))]
    out_dir: PathBuf,
    /// Copy the cluster's logs (ciao-nn, the controller, the scheduler) next to the JSON, in
    /// `nn-<timestamp>.logs/`, before the clean-up removes them.
    #[arg(long)]
    keep_logs: bool,
}

#[derive(Serialize, Debug)]
struct Cpu {
    nn_pct: f64,
    controller_pct: f64,
    scheduler_pct: f64,
    bench_pct: f64,
    machine_pct: f64,
}

#[derive(Serialize)]
struct Results {
    tenants: usize,
    /// First request to the last CnciAssignment.
    provision_secs: f64,
    /// Seconds at which 10 %, 50 %, 90 % and all tenants had their assignment.
    progress_secs: Vec<(usize, f64)>,
    /// In % of one core (the machine: 200 % is both cores busy); `nft` and `ip` children of
    /// ciao-nn and the kernel's work count only in the machine's share.
    cpu_while_provisioning: Cpu,
    nn_rss_before_kib: u64,
    nn_rss_after_kib: u64,
    nn_kib_per_cnci: f64,
    baseline_processes: usize,
    baseline_kib_per_process: f64,
    /// Baseline memory per CNCI over ciao-nn's.
    ratio_process_over_task: f64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if !nix::unistd::geteuid().is_root() {
        bail!("nn-bench needs root (network namespaces, nft)");
    }
    raise_nofile_to_hard()?;
    let dir = std::env::current_exe()?
        .parent()
        .context("bench directory")?
        .to_path_buf();
    testkit::bins::only_from(&dir, &NEEDED).map_err(anyhow::Error::msg)?;
    let mut cluster = Cluster::with_controller().context("cluster in controller mode")?;
    // The baseline first, on a node without other CNCIs: an agent started beside 1,000 CNCIs
    // reads their 1,000 uplinks at start, and its allocator keeps what that took.
    let per_process = baseline(&mut cluster, args.baseline)?;
    let nn_pid = cluster.control_pids().1.context("ciao-nn runs")?;
    let before = mem(nn_pid)?.rss_kib;
    eprintln!("ciao-nn up, RSS {before} KiB; {} tenants", args.tenants);
    let (ctl_pid, _) = cluster.control_pids();
    let sched_pid = cluster
        .pid(&Member::Scheduler)
        .context("the scheduler runs")?;
    let meter = CpuMeter::start(&[nn_pid, ctl_pid.context("the controller runs")?, sched_pid])?;
    let (secs, progress) = provision(&cluster, args.tenants, args.timeout_secs)?;
    let used = meter.stop()?;
    let cpu = Cpu {
        nn_pct: used.processes_pct[0],
        controller_pct: used.processes_pct[1],
        scheduler_pct: used.processes_pct[2],
        bench_pct: used.own_pct,
        machine_pct: used.machine_pct,
    };
    eprintln!("CPU while provisioning (% of one core): {cpu:?}");
    let after = mem(nn_pid)?.rss_kib;
    let per_cnci = (after.saturating_sub(before)) as f64 / args.tenants.max(1) as f64;
    eprintln!("provisioned in {secs:.2} s; ciao-nn RSS {after} KiB ({per_cnci:.0} KiB per CNCI)");
    let results = Results {
        tenants: args.tenants,
        provision_secs: round(secs),
        progress_secs: progress,
        cpu_while_provisioning: cpu,
        nn_rss_before_kib: before,
        nn_rss_after_kib: after,
        nn_kib_per_cnci: round(per_cnci),
        baseline_processes: args.baseline,
        baseline_kib_per_process: round(per_process),
        ratio_process_over_task: round(per_process / per_cnci.max(1.0)),
    };
    let text = serde_json::to_string_pretty(&results)?;
    println!("{text}");
    std::fs::create_dir_all(&args.out_dir)?;
    let out = args.out_dir.join(format!("nn-{}.json", utc_stamp()));
    std::fs::write(&out, &text)?;
    eprintln!("written to {}", out.display());
    if args.keep_logs {
        keep_logs(&cluster, &out.with_extension("logs"))?;
    }
    // Dropping the cluster kills every process it started by PID, destroys ciao-nn's CNCIs
    // and the baseline agents' state, and removes every namespace it made.
    eprintln!(
        "cleaning up ({} CNCIs to destroy)",
        args.tenants + args.baseline
    );
    drop(cluster);
    Ok(())
}

/// Copies every log of the cluster into `dir`.
fn keep_logs(cluster: &Cluster, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    for entry in std::fs::read_dir(cluster.logs.path())? {
        let path = entry?.path();
        if let Some(name) = path.file_name() {
            std::fs::copy(&path, dir.join(name))
                .with_context(|| format!("copy {}", path.display()))?;
        }
    }
    eprintln!("logs in {}", dir.display());
    Ok(())
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn request(cn: Uuid, tenant: Uuid) -> Frame {
    let body = CnciRequest(CnciRequestEvent {
        agent_uuid: cn.to_string(),
        tenant_uuid: tenant.to_string(),
        subnet: "172.16.1.0/24".into(),
        agent_ip: testkit::cluster::Cn::Cn1.ip().into(),
    });
    Frame::new(kind::EVENT, event::CNCI_REQUEST, cn, body.to_yaml())
}

/// The stand-in compute node: requests for `n` new tenants, re-sent every 2 s while
/// unanswered; returns the time to the last assignment and the progress marks.
fn provision(cluster: &Cluster, n: usize, timeout: u64) -> Result<(f64, Vec<(usize, f64)>)> {
    let tls = testkit::client_tls(
        &cluster.certs.agent(testkit::cluster::Cn::Cn1),
        &cluster.certs.ca(),
    );
    let tenants: Vec<Uuid> = (0..n).map(|_| Uuid::new_v4()).collect();
    in_netns(&cluster.underlay.path(), move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let cn = Uuid::new_v4();
            let mut s = ssntp::client::dial(SCHEDULER_ADDR, "localhost", tls, cn, role::AGENT)
                .await
                .context("stand-in compute node session")?;
            let start = Instant::now();
            let deadline = start + Duration::from_secs(timeout);
            let marks: Vec<usize> = [n / 10, n / 2, n * 9 / 10, n]
                .into_iter()
                .filter(|m| *m > 0)
                .collect();
            let mut progress = Vec::new();
            let mut answered: HashSet<String> = HashSet::new();
            let mut round_at = start;
            loop {
                if Instant::now() >= round_at {
                    for t in tenants
                        .iter()
                        .filter(|t| !answered.contains(&t.to_string()))
                    {
                        s.writer.frame(&request(cn, *t)).await?;
                    }
                    round_at = Instant::now() + Duration::from_secs(2);
                }
                let wait = tokio::time::timeout_at(round_at.into(), s.reader.frame()).await;
                let Ok(next) = wait else { continue };
                let f = next?.context("the scheduler closed the session")?;
                if (f.kind, f.operand) != (kind::COMMAND, command::CNCI_ASSIGNMENT) {
                    continue;
                }
                let a = CnciAssignment::from_yaml(&f.payload)?;
                if answered.insert(a.0.tenant_uuid.clone()) {
                    let secs = start.elapsed().as_secs_f64();
                    if marks.contains(&answered.len()) {
                        eprintln!("{} of {n} assigned after {secs:.2} s", answered.len());
                        progress.push((answered.len(), round(secs)));
                    }
                    if answered.len() == n {
                        return Ok((secs, progress));
                    }
                }
                if Instant::now() > deadline {
                    bail!(
                        "only {} of {n} tenants assigned in {timeout} s",
                        answered.len()
                    );
                }
            }
        })
    })
}

/// `n` standalone agents (static mode) in the network node; their mean RSS in KiB.
fn baseline(cluster: &mut Cluster, n: usize) -> Result<f64> {
    let mut total = 0;
    let mut started = Vec::new();
    for _ in 0..n {
        let t = cluster.add_tenant(&Uuid::new_v4().to_string())?;
        started.push(t);
    }
    for t in &started {
        let pid = cluster
            .pid(&Member::Agent(t.clone()))
            .context("a baseline agent runs")?;
        total += mem(pid)?.rss_kib;
    }
    let per = total as f64 / n.max(1) as f64;
    if n > 0 {
        eprintln!("baseline: {n} ciao-cnci-agent processes, {per:.0} KiB RSS each");
    }
    Ok(per)
}
