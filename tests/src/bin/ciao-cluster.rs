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
    ping_reply_ttl, subnet_entry, Certs, Cluster, Cn, Tenant, Workload, EXT_IP, NN_EXT_IP, NN_IP,
    SCHEDULER_ADDR,
};
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

/// The TTL the external host answers with.
const EXT_TTL: u32 = 200;

/// One row/column of the matrix.
struct Endpoint {
    label: String,
    ns: String,
    ip: String,
    /// `None` for the external host.
    tenant: Option<char>,
    ttl: u32,
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
    let layout = [
        (Cn::Cn1, "172.16.1.0/24", "172.16.1.10"),
        (Cn::Cn2, "172.16.1.0/24", "172.16.1.11"),
        (Cn::Cn2, "172.16.2.0/24", "172.16.2.10"),
    ];
    let mut workloads: Vec<(String, char, Workload, u8)> = Vec::new();
    let mut ttl = 100u8;
    for (name, t) in &tenants {
        for (i, (cn, subnet, ip)) in layout.iter().enumerate() {
            let w = cluster
                .container(*cn, t, subnet, ip)
                .with_context(|| format!("container {name}{}", i + 1))?;
            w.set_default_ttl(ttl);
            workloads.push((format!("{name}{}", i + 1), *name, w, ttl));
            ttl += 10;
        }
    }
    let mut settled = true;
    for (name, t) in &tenants {
        for (subnet, nodes) in [
            ("172.16.1.0/24", vec![Cn::Cn1.ip(), Cn::Cn2.ip()]),
            ("172.16.2.0/24", vec![Cn::Cn2.ip()]),
        ] {
            if let Err(e) = cluster.wait_programmed(t, subnet, &nodes) {
                settled = false;
                eprintln!("warning: tenant {name}: {e:#}");
            }
        }
    }

    print_topology(&cluster, &tenants, &workloads);

    let mut endpoints: Vec<Endpoint> = workloads
        .iter()
        .map(|(label, tenant, w, ttl)| Endpoint {
            label: label.clone(),
            ns: w.ns.name.clone(),
            ip: w.ip.clone(),
            tenant: Some(*tenant),
            ttl: u32::from(*ttl),
        })
        .collect();
    cluster.ext.exec(&[
        "sysctl",
        "-q",
        "-w",
        &format!("net.ipv4.ip_default_ttl={EXT_TTL}"),
    ]);
    endpoints.push(Endpoint {
        label: "ext".into(),
        ns: cluster.ext.name.clone(),
        ip: EXT_IP.into(),
        tenant: None,
        ttl: EXT_TTL,
    });
    let as_expected = print_matrix(&endpoints);
    if !settled {
        println!("(some hubs were not programmed in time: see the warnings above)");
    }

    if !args.exit {
        println!(
            "\nThe cluster is up; look around with `ip netns exec <namespace> ...`. Ctrl-C tears it down."
        );
        let _ = signals.wait();
    }
    println!("== tearing down");
    drop(workloads);
    drop(cluster);
    Ok(as_expected)
}

fn print_topology(
    cluster: &Cluster,
    tenants: &[(char, Tenant)],
    workloads: &[(String, char, Workload, u8)],
) {
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
                for subnet in ["172.16.1.0/24", "172.16.2.0/24"] {
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
    for (label, _, w, _) in workloads {
        println!(
            "    {label:<4} {:<22} {:<12} on {} subnet {}",
            w.ns.name,
            w.ip,
            w.cn.name(),
            w.subnet
        );
    }
    println!("\n  logs: {}", cluster.logs.path().display());
}

/// Pings every pair in parallel, prints the matrix, returns whether every cell matched.
fn print_matrix(endpoints: &[Endpoint]) -> bool {
    let n = endpoints.len();
    // results[i][j]: the reply's TTL from i pinging j.
    let results: Vec<Vec<Option<u32>>> = std::thread::scope(|s| {
        let handles: Vec<Vec<_>> = endpoints
            .iter()
            .enumerate()
            .map(|(i, src)| {
                endpoints
                    .iter()
                    .enumerate()
                    .map(|(j, dst)| {
                        (i != j).then(|| s.spawn(move || ping_reply_ttl(&src.ns, &dst.ip, 1)))
                    })
                    .collect()
            })
            .collect();
        handles
            .into_iter()
            .map(|row| {
                row.into_iter()
                    .map(|h| h.and_then(|h| h.join().ok().flatten()))
                    .collect()
            })
            .collect()
    });

    let who = |ttl: u32| {
        endpoints
            .iter()
            .find(|e| ttl <= e.ttl && e.ttl - ttl <= 4)
            .map(|e| e.label.as_str())
            .unwrap_or("?")
    };
    println!("\n== reachability (row pings column; ✓ reached, ✗ not; ! = not as expected)");
    print!("  {:<5}", "from");
    for e in endpoints {
        print!("{:>6}", e.label);
    }
    println!();
    let mut mismatches = 0;
    let mut notes = Vec::new();
    for (i, src) in endpoints.iter().enumerate() {
        print!("  {:<5}", src.label);
        for (j, dst) in endpoints.iter().enumerate() {
            if i == j {
                print!("{:>6}", "-");
                continue;
            }
            let reply = results[i][j];
            let reached = reply.is_some_and(|t| t <= dst.ttl && dst.ttl - t <= 4);
            if let (Some(t), false) = (reply, reached) {
                let by = who(t);
                let by = if by == src.label {
                    format!("{by} itself")
                } else {
                    by.to_string()
                };
                notes.push(format!(
                    "  {} -> {} ({}): answered by {by}, not by {}",
                    src.label, dst.label, dst.ip, dst.label
                ));
            }
            let expected = match (src.tenant, dst.tenant) {
                (Some(a), Some(b)) => a == b,
                (Some(_), None) => true,
                (None, _) => false,
            };
            let mark = if reached { "✓" } else { "✗" };
            let flag = if reached == expected {
                " "
            } else {
                mismatches += 1;
                "!"
            };
            print!("{:>5}{flag}", mark);
        }
        println!();
    }
    for note in &notes {
        println!("{note}");
    }
    let cells = n * (n - 1);
    println!(
        "\n  {} of {cells} cells as expected (same tenant reachable across nodes and subnets, \
         other tenant not, outside reachable from containers and not the reverse)",
        cells - mismatches
    );
    mismatches == 0
}
