//! `first-ping-bench`: a new tenant's first attach to its first cross-node ping (issue 12,
//! benchmark 1; goal under 0.5 s), in controller mode (the CNCI provisioned on the way) and, as
//! the baseline in the same run, in static mode (the tenant's CNCI started beforehand and named
//! in the workload configs).
//!
//! ```text
//! cargo build --release -p ciao-bench -p ciao-cni -p ciao-node -p ciao-scheduler \
//!     -p ciao-cnci-agent -p ciao-controller
//! CIAO_BIN_DIR=target/release target/release/first-ping-bench [--tenants 10]
//! ```
//!
//! For each new tenant: a container on CN1, then one on CN2, which pings CN1's container
//! (`ping -i 0.01`, started right after its attach); the time from the first attach's start to
//! the first reply. Prints p50 and max per mode and their ratio; JSON with every sample to
//! `bench/results/first-ping.json`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde_json::json;
use testkit::cluster::{Cluster, Cn, Tenant, Workload};
use testkit::stats::{ms, round3};
use testkit::Proc;

#[derive(Parser)]
#[command(
    name = "first-ping-bench",
    about = "a new tenant's first attach to its first cross-node ping, controller vs. static mode (needs root)"
)]
struct Args {
    /// New tenants per mode.
    #[arg(long, default_value_t = 10)]
    tenants: usize,
    /// Where the JSON goes.
    #[arg(long, default_value = "bench/results/first-ping.json")]
    out: PathBuf,
}

const SUBNET: &str = "172.16.1.0/24";
/// A first ping slower than this is a failure, not a sample.
const GIVE_UP: Duration = Duration::from_secs(30);

/// Attaches `t`'s containers on CN1 and CN2 and pings the first from the second: the time from
/// the first attach to the first reply, and the containers (kept until the mode ends).
fn first_ping(cluster: &Cluster, t: &Tenant) -> Result<(Duration, Vec<Workload>)> {
    let start = Instant::now();
    let a = cluster.container(Cn::Cn1, t, SUBNET, "172.16.1.10")?;
    let b = cluster.container(Cn::Cn2, t, SUBNET, "172.16.1.11")?;
    let mut child = Command::new("ip")
        .args([
            "netns", "exec", &b.ns.name, "ping", "-n", "-i", "0.01", "-w", "30", &a.ip,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("spawn ping")?;
    let stdout = child.stdout.take().context("ping stdout")?;
    let _ping = Proc(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("bytes from") {
                let _ = tx.send(Instant::now());
                break;
            }
        }
    });
    let replied = rx
        .recv_timeout(GIVE_UP)
        .with_context(|| format!("tenant {}: no reply within {GIVE_UP:?}", t.tenant))?;
    Ok((replied - start, vec![a, b]))
}

/// p50 and max of `samples` in ms.
fn summary(samples: &[Duration]) -> (f64, f64) {
    let mut v: Vec<f64> = samples.iter().map(|d| ms(*d)).collect();
    v.sort_by(f64::total_cmp);
    let p50 = v.get(v.len().saturating_sub(1) / 2).copied().unwrap_or(0.0);
    (p50, v.last().copied().unwrap_or(0.0))
}

fn controller_mode(n: usize) -> Result<Vec<Duration>> {
    let mut cluster = Cluster::with_controller().context("cluster in controller mode")?;
    let mut samples = Vec::new();
    let mut kept = Vec::new();
    for _ in 0..n {
        let t = cluster.controlled_tenant(&uuid::Uuid::new_v4().to_string());
        let (took, workloads) = first_ping(&cluster, &t)?;
        println!("  controller mode: {:.1} ms", ms(took));
        samples.push(took);
        kept.extend(workloads);
    }
    drop(kept);
    Ok(samples)
}

fn static_mode(n: usize) -> Result<Vec<Duration>> {
    let mut cluster = Cluster::new().context("cluster in static mode")?;
    let mut samples = Vec::new();
    let mut kept = Vec::new();
    for _ in 0..n {
        // Not timed: the CNCI is up and connected before the first attach.
        let t = cluster.add_tenant(&uuid::Uuid::new_v4().to_string())?;
        let (took, workloads) = first_ping(&cluster, &t)?;
        println!("  static mode: {:.1} ms", ms(took));
        samples.push(took);
        kept.extend(workloads);
    }
    drop(kept);
    Ok(samples)
}

fn main() -> Result<()> {
    let args = Args::parse();
    if !nix::unistd::geteuid().is_root() {
        bail!("first-ping-bench needs root (namespaces, netlink)");
    }
    testkit::plugin(); // built or found before any timing
    let controlled = controller_mode(args.tenants)?;
    let fixed = static_mode(args.tenants)?;
    let (c50, cmax) = summary(&controlled);
    let (s50, smax) = summary(&fixed);
    println!(
        "\n| first attach to first cross-node ping, {} tenants | p50 ms | max ms |",
        args.tenants
    );
    println!("|---|---:|---:|");
    println!("| controller mode (CNCI provisioned on the way) | {c50:.1} | {cmax:.1} |");
    println!("| static mode (CNCI preconfigured) | {s50:.1} | {smax:.1} |");
    println!("| ratio | {:.2} | {:.2} |", c50 / s50, cmax / smax);
    let doc = json!({
        "tenants": args.tenants,
        "controller_mode_ms": controlled.iter().map(|d| round3(ms(*d))).collect::<Vec<_>>(),
        "static_mode_ms": fixed.iter().map(|d| round3(ms(*d))).collect::<Vec<_>>(),
        "controller_p50_ms": round3(c50),
        "controller_max_ms": round3(cmax),
        "static_p50_ms": round3(s50),
        "static_max_ms": round3(smax),
        "ratio_p50": round3(c50 / s50),
    });
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&doc)?)
        .with_context(|| format!("write {}", args.out.display()))?;
    println!("JSON: {}", args.out.display());
    Ok(())
}
