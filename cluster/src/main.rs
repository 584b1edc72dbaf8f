//! `ciao-cluster`: a whole local ciao cluster in network namespaces, as a demo.
//!
//! A scheduler and the controller on a shared underlay bridge, a network node agent that runs
//! each tenant's CNCI when the controller places it there, two compute nodes with their
//! delivery daemons, and two tenants (A and B) with identical subnets and addresses whose
//! workload configs name no CNCI (each tenant's CNCI appears with its first container): subnet 172.16.1.0/24 with a container on each compute node, subnet
//! 172.16.2.0/24 with one on the second. It prints the topology and a reachability matrix (every
//! container and the external host 203.0.113.100), then waits for Ctrl-C and tears everything
//! down (`--exit`: at once). Exits non-zero if any cell of the matrix differs from what the
//! design promises: a tenant's containers reach each other across nodes and subnets, never
//! another tenant's; containers reach the outside (outbound NAT), the outside does not reach
//! them.
//!
//! Since both tenants use the same addresses, a reply alone does not say who answered: every
//! endpoint answers with its own initial TTL (`net.ipv4.ip_default_ttl`), and a cell counts as
//! reached only if the reply carries the destination's signature.
//!
//! It also prints, for each tenant, the time from its first container's attach to the first
//! ping that crosses to its container on the other compute node (CNCI provisioning included).
//!
//! The sibling binaries (`ciao`, `ciao-node`, `ciao-scheduler`, `ciao-cert`, `ciao-cnci-agent`,
//! `ciao-nn`, `ciao-controller`, `ciao-net`)
//! are taken from the directory of this executable (`--bin-dir` / `CIAO_BIN_DIR` overrides); it
//! never builds anything: if one is missing it says which, and the cargo command that builds it.
//!
//! The processes' logs go to a directory printed as `logs: <dir>`; it is removed at the end of
//! a run that went as expected and kept (`kept logs: <dir>`) after any failure.
//!
//! The cluster itself is the `testkit` fixture the end-to-end tests use ([`testkit::cluster`]):
//! one implementation, so what the demo shows is what the tests check; this binary only picks
//! where the binaries come from, prints, and waits.

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use clap::Parser;
use nix::sys::signal::{SigSet, Signal};
use testkit::cluster::{
    new_log_dir, subnet_entry, wait_reachable, Certs, Cluster, Cn, Tenant, Workload, EXT_IP,
    NN_EXT_IP, NN_IP, SCHEDULER_ADDR,
};
use testkit::matrix::{TwoTenants, HUBS, LAYOUT};
use testkit::{TENANT_A, TENANT_B};

/// The binaries the cluster runs.
const NEEDED: [&str; 8] = [
    "ciao",
    "ciao-node",
    "ciao-scheduler",
    "ciao-cert",
    "ciao-cnci-agent",
    "ciao-nn",
    "ciao-controller",
    "ciao-net",
];

/// How long a tenant's first cross-node ping may take before the demo calls it a failure.
const FIRST_PING_WITHIN: Duration = Duration::from_secs(60);

#[derive(Parser)]
#[command(about = "A local ciao cluster in network namespaces: topology and reachability matrix")]
struct Args {
    /// Tear down right after printing the matrix instead of waiting for Ctrl-C.
    #[arg(long)]
    exit: bool,
    /// Where the sibling binaries are (default: the directory of this executable).
    #[arg(long, env = "CIAO_BIN_DIR")]
    bin_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = use_binaries_from(args.bin_dir.as_deref()) {
        eprintln!("ciao-cluster: {e:#}");
        return ExitCode::from(2);
    }
    if !testkit::is_root() {
        eprintln!("ciao-cluster: must run as root (it creates network namespaces)");
        return ExitCode::from(2);
    }
    // Ctrl-C and SIGTERM are taken synchronously at the end (or make the wait return at once if
    // they came during set-up), so teardown always runs. Children get an empty mask (std resets
    // it), and run in their own process groups so a terminal's Ctrl-C reaches only us.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    if let Err(e) = signals.thread_block() {
        eprintln!("ciao-cluster: block signals: {e}");
        return ExitCode::from(2);
    }
    let mut logs = match new_log_dir() {
        Ok(logs) => logs,
        Err(e) => {
            eprintln!("ciao-cluster: {e:#}");
            return ExitCode::from(2);
        }
    };
    // Removed below only after a run that went as expected, so a failure (an error, a cell off,
    // a panic in a fixture) leaves the logs to read.
    logs.disable_cleanup(true);
    let log_dir = logs.path().to_path_buf();
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| run(&args, &signals, logs)));
    let code = match outcome {
        Ok(Ok(true)) => {
            let _ = std::fs::remove_dir_all(&log_dir);
            return ExitCode::SUCCESS;
        }
        Ok(Ok(false)) => ExitCode::from(1),
        Ok(Err(e)) => {
            eprintln!("ciao-cluster: {e:#}");
            ExitCode::from(1)
        }
        // The panic hook has printed the message.
        Err(_) => ExitCode::from(1),
    };
    eprintln!("kept logs: {}", log_dir.display());
    code
}

/// Takes every binary from `dir`, else from this executable's directory; fails naming what is
/// missing and how to build it. Nothing is ever built at run time.
fn use_binaries_from(dir: Option<&Path>) -> Result<()> {
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => std::env::current_exe()
            .context("locate this executable")?
            .parent()
            .context("this executable has no directory")?
            .to_path_buf(),
    };
    testkit::bins::only_from(&dir, &NEEDED).map_err(anyhow::Error::msg)
}

fn run(args: &Args, signals: &SigSet, logs: tempfile::TempDir) -> Result<bool> {
    println!("== bringing up the cluster");
    let certs = Certs::fresh().context("certificates")?;
    let mut cluster = Cluster::with_certs_and_logs(certs, logs).context("cluster")?;
    cluster
        .enable_controller()
        .context("controller and network node agent")?;
    let mut a = cluster.controlled_tenant(TENANT_A);
    let mut b = cluster.controlled_tenant(TENANT_B);
    let mut first = Vec::new();
    let mut timings = Vec::new();
    for (name, t) in [('A', &a), ('B', &b)] {
        let (workloads, took) = first_cross_node_ping(&cluster, t)
            .with_context(|| format!("tenant {name}'s first containers"))?;
        first.extend(workloads);
        timings.push((name, took));
    }
    cluster
        .wait_cnci_ready(&mut a)
        .context("CNCI of tenant A")?;
    cluster
        .wait_cnci_ready(&mut b)
        .context("CNCI of tenant B")?;
    let tenants = [('A', a), ('B', b)];
    let two = TwoTenants::attach(&cluster, &tenants[0].1, &tenants[1].1, first)?;
    let late = TwoTenants::wait_hubs(&cluster, &[('A', &tenants[0].1), ('B', &tenants[1].1)]);
    for warning in &late {
        eprintln!("warning: {warning}");
    }

    print_topology(&cluster, &tenants, &two);

    println!("\n== a new tenant's first attach to its first cross-node ping (CNCI provisioned on the way)");
    for (name, took) in &timings {
        println!("  tenant {name}: {:.3} s", took.as_secs_f64());
    }

    let matrix = two.matrix(&cluster);
    print!("{}", matrix.render());
    if !late.is_empty() {
        println!("(some hubs were not programmed in time: see the warnings above)");
    }

    if !args.exit {
        println!(
            "\nThe cluster is up; look around with `ip netns exec <namespace> ...`. Ctrl-C tears it down."
        );
        let _ = signals.wait();
    }
    println!("== tearing down");
    drop(two);
    drop(cluster);
    Ok(matrix.as_expected())
}

/// Attaches the tenant's first two containers of the layout (one per compute node), and pings
/// the first from the second until it answers: the containers, and the time from the first
/// attach to that answer.
fn first_cross_node_ping(cluster: &Cluster, t: &Tenant) -> Result<(Vec<Workload>, Duration)> {
    let start = Instant::now();
    let mut workloads = Vec::new();
    for (cn, subnet, ip) in &LAYOUT[..2] {
        workloads.push(cluster.container(*cn, t, subnet, ip)?);
    }
    let took = wait_reachable(&workloads[1], &workloads[0].ip, start, FIRST_PING_WITHIN)
        .ok_or_else(|| anyhow!("no cross-node ping within {FIRST_PING_WITHIN:?}"))?;
    Ok((workloads, took))
}

fn print_topology(cluster: &Cluster, tenants: &[(char, Tenant)], two: &TwoTenants) {
    println!("\n== topology");
    println!(
        "  underlay  {:<22} bridge ulbr 10.250.0.1/24; ciao-scheduler {} on {SCHEDULER_ADDR}",
        cluster.underlay.name, cluster.scheduler_uuid
    );
    if let Ok(socket) = cluster.admin_socket() {
        println!(
            "  {:<9} {:<22} ciao-controller (store and admin socket {}: `ciao-net --socket {} tenants`)",
            "",
            "",
            socket.parent().map(|p| p.display().to_string()).unwrap_or_default(),
            socket.display()
        );
    }
    println!(
        "  nn        {:<22} ul0 {NN_IP}/24, ext0 {NN_EXT_IP}/24 (network node: ciao-nn runs the CNCIs)",
        cluster.nn.name
    );
    println!(
        "  ext       {:<22} eth0 {EXT_IP}/24 (the outside world)",
        cluster.ext.name
    );
    for cn in Cn::ALL {
        let node = cluster.cn(cn);
        println!(
            "  {:<9} {:<22} ul0 {}/24, state {}, ciao-node run",
            cn.name(),
            node.ns.name,
            node.ip,
            node.state.path().display()
        );
    }
    for (name, t) in tenants {
        println!("\n  tenant {name} {}", t.tenant);
        println!("    CNCI {} in tenant namespace {}", t.cnci, t.netns);
        match cluster.agent_show(t) {
            Ok(show) => {
                for (subnet, _) in HUBS {
                    let e = subnet_entry(&show, subnet);
                    println!(
                        "    subnet {subnet}: {} id {} gateway {} nodes {} programmed {}",
                        e["kind"].as_str().unwrap_or("?"),
                        e["id"],
                        e["gateway"].as_str().unwrap_or("?"),
                        e["nodes"],
                        e["programmed"]
                    );
                }
            }
            Err(e) => println!("    show: {e:#}"),
        }
    }
    println!("\n  containers");
    for c in &two.members {
        let w = &c.workload;
        println!(
            "    {:<4} {:<22} {:<12} on {} subnet {}",
            c.label,
            w.ns.name,
            w.ip,
            w.cn.name(),
            w.subnet
        );
    }
    println!("\n  logs: {}", cluster.logs.path().display());
}
