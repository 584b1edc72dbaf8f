//! `docker-bench`: the Docker plugin against Docker's own bridge driver, with a private dockerd
//! in a simulated compute node (as the tests run it).
//!
//! ```text
//! cargo build --release -p ciao-bench -p ciao-docker-plugin -p ciao-cni -p ciao-node
//! CIAO_BIN_DIR=target/release target/release/docker-bench [--runs 30] [--endpoints 500]
//! ```
//!
//! 1. `docker run --rm --network <net> test/busybox true` on a ciao network and on a
//!    user-defined bridge network, interleaved (ciao, bridge, ciao, ...): median, p90, ratio.
//! 2. The plugin alone, driven over its socket as dockerd drives it: `--endpoints` times
//!    RequestAddress + CreateEndpoint + Join, then Leave + DeleteEndpoint + ReleaseAddress; time
//!    per endpoint and the daemon's resident memory with all endpoints up.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;
use testkit::docker::{tenant_network_args, unavailable, Dockerd, PluginDaemon, CNCI, IMAGE};
use testkit::host::{rss_kib, status_kib};
use testkit::stats::{ms, percentile};
use testkit::{ComputeNode, TENANT_A};

#[derive(Parser)]
#[command(
    name = "docker-bench",
    about = "docker run on a ciao network vs. Docker's bridge; plugin time and memory (needs root)"
)]
struct Args {
    /// `docker run` per network.
    #[arg(long, default_value_t = 30)]
    runs: usize,
    /// Endpoints created through the raw protocol.
    #[arg(long, default_value_t = 500)]
    endpoints: usize,
}

/// Nearest-rank percentile, `p` in percent.
fn pct(samples: &mut [f64], p: f64) -> f64 {
    percentile(samples, p / 100.0)
}

fn call(p: &PluginDaemon, path: &str, body: &str) -> Result<serde_json::Value> {
    let (status, reply) = p.call(path, body);
    if status != 200 || reply.get("Err").is_some() {
        bail!("{path} {body}: {status} {reply}");
    }
    Ok(reply)
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(why) = unavailable() {
        bail!("docker-bench cannot run here: {why}");
    }
    let cn = ComputeNode::new();
    let d = Dockerd::start(&cn);
    let p = PluginDaemon::start(&cn);

    // 1. docker run, interleaved.
    let net_args = tenant_network_args(
        &p.name,
        TENANT_A,
        CNCI,
        &cn.cnci_ip,
        &["--subnet", "172.16.1.0/24"],
        "ciao-tenant",
    );
    d.docker(&net_args.iter().map(String::as_str).collect::<Vec<_>>());
    d.docker(&[
        "network",
        "create",
        "-d",
        "bridge",
        "--subnet",
        "10.201.0.0/24",
        "plain",
    ]);
    let (mut ciao, mut bridge) = (Vec::new(), Vec::new());
    for _ in 0..args.runs {
        for (net, out) in [("ciao-tenant", &mut ciao), ("plain", &mut bridge)] {
            let t = Instant::now();
            d.docker(&["run", "--rm", "--network", net, IMAGE, "true"]);
            out.push(ms(t.elapsed()));
        }
    }
    let (cm, bm) = (pct(&mut ciao, 50.0), pct(&mut bridge, 50.0));
    println!(
        "docker run --rm ... true, {} runs each, interleaved:",
        args.runs
    );
    println!(
        "  ciao network    median {cm:7.1} ms  p90 {:7.1} ms",
        pct(&mut ciao, 90.0)
    );
    println!(
        "  bridge network  median {bm:7.1} ms  p90 {:7.1} ms",
        pct(&mut bridge, 90.0)
    );
    println!("  ratio ciao/bridge (median) {:.2}", cm / bm);
    d.docker(&["network", "rm", "ciao-tenant", "plain"]);

    // 2. The plugin alone with many endpoints.
    let pid = p.pid().context("plugin pid")?;
    let rss_idle = rss_kib(pid)?;
    let pool = call(
        &p,
        "/IpamDriver.RequestPool",
        r#"{"AddressSpace":"ciao-local","Pool":"10.60.0.0/22","SubPool":"","Options":{},"V6":false}"#,
    )?;
    let pool_id = pool["PoolID"].as_str().context("PoolID")?.to_string();
    call(
        &p,
        "/IpamDriver.RequestAddress",
        &format!(
            r#"{{"PoolID":"{pool_id}","Address":"","Options":{{"RequestAddressType":"com.docker.network.gateway"}}}}"#
        ),
    )?;
    let nid = "b".repeat(64);
    call(
        &p,
        "/NetworkDriver.CreateNetwork",
        &format!(
            r#"{{"NetworkID":"{nid}","Options":{{"com.docker.network.generic":{{"tenant":"{TENANT_A}","cnci":"{CNCI}@{}"}}}},"IPv4Data":[{{"AddressSpace":"ciao-local","Gateway":"10.60.0.1/22","Pool":"10.60.0.0/22"}}],"IPv6Data":[]}}"#,
            cn.cnci_ip
        ),
    )?;
    let mut up = Vec::new();
    let mut ips = Vec::new();
    let started = Instant::now();
    for i in 0..args.endpoints {
        let eid = format!("{i:064x}");
        let t = Instant::now();
        let addr = call(
            &p,
            "/IpamDriver.RequestAddress",
            &format!(r#"{{"PoolID":"{pool_id}","Address":"","Options":null}}"#),
        )?;
        let addr = addr["Address"].as_str().context("Address")?.to_string();
        call(
            &p,
            "/NetworkDriver.CreateEndpoint",
            &format!(
                r#"{{"NetworkID":"{nid}","EndpointID":"{eid}","Interface":{{"Address":"{addr}","AddressIPv6":"","MacAddress":""}},"Options":{{}}}}"#
            ),
        )?;
        call(
            &p,
            "/NetworkDriver.Join",
            &format!(
                r#"{{"NetworkID":"{nid}","EndpointID":"{eid}","SandboxKey":"/var/run/docker/netns/x","Options":{{}}}}"#
            ),
        )?;
        up.push(ms(t.elapsed()));
        ips.push((eid, addr));
    }
    let total_up = started.elapsed();
    let rss_full = rss_kib(pid)?;
    let mut down = Vec::new();
    let started = Instant::now();
    for (eid, addr) in &ips {
        let t = Instant::now();
        let ep = format!(r#"{{"NetworkID":"{nid}","EndpointID":"{eid}"}}"#);
        call(&p, "/NetworkDriver.Leave", &ep)?;
        call(&p, "/NetworkDriver.DeleteEndpoint", &ep)?;
        let bare = addr.split('/').next().unwrap_or(addr);
        call(
            &p,
            "/IpamDriver.ReleaseAddress",
            &format!(r#"{{"PoolID":"{pool_id}","Address":"{bare}"}}"#),
        )?;
        down.push(ms(t.elapsed()));
    }
    let total_down = started.elapsed();
    call(
        &p,
        "/IpamDriver.ReleasePool",
        &format!(r#"{{"PoolID":"{pool_id}"}}"#),
    )?;
    call(
        &p,
        "/NetworkDriver.DeleteNetwork",
        &format!(r#"{{"NetworkID":"{nid}"}}"#),
    )?;
    let peak = status_kib(pid, "VmHWM")?;
    println!(
        "plugin with {} endpoints (RequestAddress+CreateEndpoint+Join each):",
        args.endpoints
    );
    println!(
        "  up:   total {:.2} s, per endpoint median {:.2} ms p90 {:.2} ms",
        total_up.as_secs_f64(),
        pct(&mut up, 50.0),
        pct(&mut up, 90.0)
    );
    println!(
        "  down: total {:.2} s, per endpoint median {:.2} ms p90 {:.2} ms",
        total_down.as_secs_f64(),
        pct(&mut down, 50.0),
        pct(&mut down, 90.0)
    );
    println!(
        "  memory: RSS idle {} KiB, with all endpoints {} KiB, peak {} KiB",
        rss_idle, rss_full, peak
    );
    cn.assert_clean();
    Ok(())
}
