//! `ciao-cluster`: a whole local ciao cluster in network namespaces, as a demo.
//!
//! A scheduler on a shared underlay bridge, a network node running one CNCI agent per tenant,
//! two compute nodes with their delivery daemons, and two tenants (A and B) with identical
//! subnets and addresses: subnet 172.16.1.0/24 with a container on each compute node, subnet
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
//! The sibling binaries (`ciao`, `ciao-node`, `ciao-scheduler`, `ciao-cert`, `ciao-cnci-agent`)
//! are taken from the directory of this executable (`CIAO_BIN_DIR` overrides), else built as the
//! test fixtures build them.

use std::process::ExitCode;

use anyhow::{Context, Result};
use ciao_tests::cluster::{
    subnet_entry, Certs, Cluster, Cn, Tenant, EXT_IP, NN_EXT_IP, NN_IP, SCHEDULER_ADDR,
};
use ciao_tests::matrix::{TwoTenants, HUBS};
use ciao_tests::{TENANT_A, TENANT_B};
use clap::Parser;
use nix::sys::signal::{SigSet, Signal};

#[derive(Parser)]
#[command(about = "A local ciao cluster in network namespaces: topology and reachability matrix")]
struct Args {
    /// Tear down right after printing the matrix instead of waiting for Ctrl-C.
    #[arg(long)]
    exit: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if !ciao_tests::is_root() {
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
    if std::env::var_os("CIAO_BIN_DIR").is_none() {
        if let Some(dir) = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.to_path_buf()))
        {
            std::env::set_var("CIAO_BIN_DIR", dir);
        }
    }
    match run(&args, &signals) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("ciao-cluster: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(args: &Args, signals: &SigSet) -> Result<bool> {
    println!("== bringing up the cluster");
    let certs = Certs::fresh().context("certificates")?;
    let mut cluster = Cluster::with_certs(certs).context("cluster")?;
    let tenants = [
        ('A', cluster.add_tenant(TENANT_A).context("tenant A")?),
        ('B', cluster.add_tenant(TENANT_B).context("tenant B")?),
    ];
    let two = TwoTenants::attach(&cluster, &tenants[0].1, &tenants[1].1, Vec::new())?;
    let late = TwoTenants::wait_hubs(&cluster, &[('A', &tenants[0].1), ('B', &tenants[1].1)]);
    for warning in &late {
        eprintln!("warning: {warning}");
    }

    print_topology(&cluster, &tenants, &two);

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

fn print_topology(cluster: &Cluster, tenants: &[(char, Tenant)], two: &TwoTenants) {
    println!("\n== topology");
    println!(
        "  underlay  {:<22} bridge ulbr 10.250.0.1/24; ciao-scheduler {} on {SCHEDULER_ADDR}",
        cluster.underlay.name, cluster.scheduler_uuid
    );
    println!(
        "  nn        {:<22} ul0 {NN_IP}/24, ext0 {NN_EXT_IP}/24 (network node: CNCI agents)",
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
