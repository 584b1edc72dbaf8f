//! Throughput between two workloads on one bridge of the large bed: iperf3 with every rule
//! loaded (the two ports filtered by a group that allows the iperf3 port) against the same
//! with no table, alternating.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use netcore::secgroups::Port;
use serde::Serialize;
use testkit::stats::median;
use testkit::{Netns, Proc};

use crate::bed::{ip_batch, Bed};
use crate::workload::{bridge_name, group_name, set_members, IPERF_PORT};

#[derive(Serialize)]
pub struct Throughput {
    pub secs: u64,
    pub loaded_gbps: Vec<f64>,
    pub baseline_gbps: Vec<f64>,
    /// Median loaded over median baseline.
    pub ratio: f64,
}

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 1, 250, 1);
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 1, 250, 2);

/// Two workload namespaces on the first bridge, their ports in `g01` beside the others.
pub fn measure(bed: &mut Bed, secs: u64, pairs: usize) -> Result<Throughput> {
    let client = workload(bed, "sgw1", CLIENT)?;
    let server = workload(bed, "sgw2", SERVER)?;
    for (ifname, ip) in [("sw1", CLIENT), ("sw2", SERVER)] {
        bed.ports.push(Port {
            tenant: bed.snap.tenant,
            bridge: bridge_name(0),
            ifname: ifname.into(),
            ip,
            groups: vec![group_name(1)],
            zone: 1,
        });
    }
    let ports = bed.ports.clone();
    set_members(&mut bed.snap, &ports);
    bed.clear()?;
    bed.apply()?;
    let _iperf = listen(&server)?;
    ensure_filtered(&client)?;
    let (mut loaded, mut baseline) = (Vec::new(), Vec::new());
    for pair in 0..pairs {
        for with_rules in [pair % 2 == 0, pair % 2 == 1] {
            if with_rules {
                bed.apply()?;
                loaded.push(run(&client, secs)?);
            } else {
                bed.clear()?;
                baseline.push(run(&client, secs)?);
            }
            eprintln!(
                "  iperf3 {}: {:.2} Gbit/s",
                if with_rules { "rules" } else { "no table" },
                if with_rules { &loaded } else { &baseline }
                    .last()
                    .copied()
                    .unwrap_or(0.0)
            );
        }
    }
    let ratio = median(loaded.clone()) / median(baseline.clone());
    Ok(Throughput {
        secs,
        loaded_gbps: loaded,
        baseline_gbps: baseline,
        ratio: testkit::stats::round3(ratio),
    })
}

/// A namespace with `eth0` at `ip`/16, its peer (`sw1`/`sw2`) on the first bridge.
fn workload(bed: &Bed, prefix: &str, ip: Ipv4Addr) -> Result<Netns> {
    let ns = Netns::try_new(prefix)?;
    let host = if ip == CLIENT { "sw1" } else { "sw2" };
    ip_batch(
        &bed.ns.name,
        &format!(
            "link add {host} type veth peer name eth0 netns {}\nlink set {host} master {} up\n",
            ns.name,
            bridge_name(0)
        ),
    )?;
    ip_batch(
        &ns.name,
        &format!("addr add {ip}/16 dev eth0\nlink set eth0 up\nlink set lo up\n"),
    )?;
    Ok(ns)
}

/// iperf3's server in `ns`, once it listens.
fn listen(ns: &Netns) -> Result<Proc> {
    let child = Command::new("ip")
        .args(["netns", "exec", &ns.name, "iperf3", "-s", "-p"])
        .arg(IPERF_PORT.to_string())
        .stdout(std::process::Stdio::null())
        .spawn()
        .context("start iperf3 -s (installed?)")?;
    let proc = Proc(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    let filter = format!("sport = :{IPERF_PORT}");
    while Instant::now() < deadline {
        let out = testkit::sh(&["ip", "netns", "exec", &ns.name, "ss", "-Hltn", &filter])?;
        if !out.trim().is_empty() {
            return Ok(proc);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("iperf3 -s did not listen within 10 s")
}

/// The rules are in force: a port the groups do not allow times out (dropped), where without
/// the table the server's kernel would refuse it at once.
fn ensure_filtered(client: &Netns) -> Result<()> {
    let to = SocketAddr::from((SERVER, IPERF_PORT + 1));
    let got = crate::bed::in_ns(&client.path(), || {
        Ok(TcpStream::connect_timeout(&to, Duration::from_millis(500)).map(|_| ()))
    })?;
    match got {
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Ok(()),
        other => bail!(
            "tcp/{} should be dropped by the groups, got {other:?}",
            to.port()
        ),
    }
}

/// One iperf3 run from `client`: the receiver's rate in Gbit/s.
fn run(client: &Netns, secs: u64) -> Result<f64> {
    let out = testkit::sh(&[
        "ip",
        "netns",
        "exec",
        &client.name,
        "iperf3",
        "-c",
        &SERVER.to_string(),
        "-p",
        &IPERF_PORT.to_string(),
        "-t",
        &secs.to_string(),
        "-J",
    ])?;
    let v: serde_json::Value = serde_json::from_str(&out).context("iperf3 -J output")?;
    let bps = v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .context("iperf3 -J: end.sum_received.bits_per_second")?;
    ensure!(bps > 0.0, "iperf3 measured nothing");
    Ok(testkit::stats::round3(bps / 1e9))
}
