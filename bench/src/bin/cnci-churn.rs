//! Focused CNCI benchmark (issue 10, item 6): the agent's own handlers, without scheduler or
//! TLS, in a private network namespace. Times N TenantAdded, N TenantRemoved and a restart that
//! reconciles N stray subnets (records gone, kernel objects left), with release builds.
//!
//! `cnci-churn --subnets 5000` (root). Prints one line per phase with its rate.

use std::net::Ipv4Addr;
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use clap::Parser;
use cnci_agent::handlers::{Agent, Policy};
use cnci_agent::register::Limits;
use cnci_agent::state::{AgentRecord, Store};
use ssntp::frame::{event, kind, Frame};
use ssntp::payloads::{
    Ipv4Subnet, Payload, TenantAdded, TenantAddedEvent, TenantRemoved, TunnelKind,
};
use testkit::sh;
use uuid::Uuid;

#[derive(Parser)]
struct Args {
    /// Subnets to add, remove and reconcile.
    #[arg(long, default_value_t = 5000)]
    subnets: usize,
    /// Remove only this many of them (the slow code path is timed on a sample).
    #[arg(long)]
    remove: Option<usize>,
}

const UNDERLAY: Ipv4Addr = Ipv4Addr::new(10, 251, 0, 3);
const CN: Ipv4Addr = Ipv4Addr::new(10, 251, 0, 11);

/// The i-th /26 of 172.16.0.0/12.
fn subnet(i: usize) -> Ipv4Subnet {
    let base = u32::from(Ipv4Addr::new(172, 16, 0, 0)) + (i as u32) * 64;
    Ipv4Subnet::new(Ipv4Addr::from(base), 26).expect("subnet")
}

fn frame(op: u8, cnci: Uuid, tenant: Uuid, agent: Uuid, i: usize) -> Frame {
    let ev = TenantAddedEvent::new(agent, CN, tenant, subnet(i), cnci, UNDERLAY)
        .with_tunnel(TunnelKind::Vxlan, 100_000 + i as u32);
    let yaml = if op == event::TENANT_ADDED {
        TenantAdded(ev).to_yaml()
    } else {
        TenantRemoved(ev).to_yaml()
    };
    Frame::new(kind::EVENT, op, agent, yaml)
}

fn rate(what: &str, n: usize, t: Instant) {
    let s = t.elapsed().as_secs_f64();
    println!("{what}: {n} in {s:.2} s ({:.1}/s)", n as f64 / s);
}

fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(nix::unistd::geteuid().is_root(), "needs root");
    testkit::host::raise_nofile_to_hard()?;
    let id = std::process::id();
    let under = format!("churn-ul-{id}");
    let tenant_ns = format!("churn-t-{id}");
    sh(&["ip", "netns", "add", &under])?;
    let result = bench(&args, &under, &tenant_ns);
    let _ = sh(&["ip", "netns", "del", &tenant_ns]);
    let _ = sh(&["ip", "netns", "del", &under]);
    result
}

fn bench(args: &Args, under: &str, tenant_ns: &str) -> Result<()> {
    let ns = std::fs::File::open(format!("/run/netns/{under}"))?;
    nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).context("setns")?;
    sh(&[
        "ip", "link", "add", "ul0", "type", "veth", "peer", "name", "ul1",
    ])?;
    sh(&["ip", "link", "set", "ul1", "up"])?;
    sh(&["ip", "addr", "add", "10.251.0.3/24", "dev", "ul0"])?;
    sh(&["ip", "link", "set", "ul0", "up"])?;
    let dir = tempfile::tempdir()?;
    let (cnci, tenant, agent) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let record = AgentRecord {
        uuid: cnci,
        tenant,
        netns: tenant_ns.into(),
        underlay_ip: UNDERLAY,
        external_dev: None,
        uplink: "100.64.0.0/31".parse()?,
        dns: vec![],
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let _guard = rt.enter();
    let n = args.subnets;
    let start = || -> Result<Agent> {
        let store = Store::open(dir.path())?;
        let policy = Policy {
            lease_secs: 3600,
            limits: Limits {
                max_subnets: n,
                max_nodes_per_subnet: 16,
            },
            public_ranges: vec![],
        };
        Ok(Agent::start(store, record.clone(), policy)?)
    };
    let mut a = start()?;
    let t = Instant::now();
    for i in 0..n {
        a.handle(&frame(event::TENANT_ADDED, cnci, tenant, agent, i));
    }
    ensure!(
        a.desired().subnets.len() == n,
        "only {} subnets recorded",
        a.desired().subnets.len()
    );
    rate("add", n, t);
    let refused = frame(event::TENANT_ADDED, cnci, tenant, agent, n);
    a.handle(&refused);
    ensure!(a.desired().subnets.len() == n, "--max-subnets not enforced");
    let k = args.remove.unwrap_or(n).min(n);
    let t = Instant::now();
    for i in 0..k {
        a.handle(&frame(event::TENANT_REMOVED, cnci, tenant, agent, i));
    }
    a.idle(); // as the daemon does once no frame waits
    rate("remove (frames handled, tunnels gone)", k, t);
    a.wait_removed();
    rate("remove (every kernel object gone)", k, t);
    ensure!(a.desired().subnets.len() == n - k, "removal incomplete");
    // Restart with no records: everything left in the kernel is stray.
    drop(a);
    let store = Store::open(dir.path())?;
    for s in store.desired()?.subnets.keys() {
        store.remove_subnet(*s)?;
    }
    let t = Instant::now();
    let mut a = start()?;
    rate("reconcile strays (agent serving)", n - k, t);
    a.wait_removed();
    rate("reconcile strays (every kernel object gone)", n - k, t);
    ensure!(a.desired().subnets.is_empty());
    drop(a);
    cnci_agent::hub::destroy(&record, &Default::default())?;
    Ok(())
}
