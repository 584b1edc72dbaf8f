//! `qemu-bench`: time from QEMU start to the guest's first successful ping, through the QEMU
//! hooks and the tenant overlay, against the same guest on a plain Linux bridge whose ifup script
//! is `ip link set $1 master br0 up`. Also times the hooks alone on a tap made beforehand.
//! Needs root and network access once (`scripts/qemu-guest.sh` fetches QEMU and the guest).
//!
//! ```text
//! cargo build --release -p ciao-bench -p ciao-vm-hooks -p ciao-cnci-agent -p ciao-scheduler -p ciao-cni -p ciao-node
//! CIAO_BIN_DIR=target/release target/release/qemu-bench [--runs 5]
//! ```
//!
//! Modes, each run once per round in turn:
//! - `plain`: static address, a peer namespace on the same bridge;
//! - `hooks-static`: the cluster fixture, QEMU on CN1 with `ciao-qemu-ifup`, static address,
//!   pinging a container of the tenant on CN2 through the CNCI hub;
//! - `hooks-dhcp`: the same with the address from the CNCI's DHCP (the whole VM path).
//!
//! Each overlay run is the subnet's first VNIC on CN1 (ifup creates bridge + tunnel; the guest's
//! ifdown removes them), as for the first VM of a tenant on a node.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use serde::Serialize;
use testkit::cluster::{Cluster, Cn, Tenant, NN_IP};
use testkit::qemu::{guest_image, log_dir, Guest, GuestImage, GuestSpec, ImageError};
use testkit::stats::percentile;
use testkit::{vm_hook, Netns, TENANT_A};

const SUBNET: &str = "172.16.1.0/24";
const CONTAINER_IP: &str = "172.16.1.11";
const VM_IP: &str = "172.16.1.32";
const VM_MAC: &str = "02:00:ac:10:01:20";
const TIMEOUT: Duration = Duration::from_secs(150);

#[derive(Parser)]
#[command(
    name = "qemu-bench",
    about = "QEMU start to first ping: ciao hooks + overlay vs. a plain bridge (needs root)"
)]
struct Args {
    /// Guest boots per mode.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// ifup/ifdown pairs timed on a pre-made tap.
    #[arg(long, default_value_t = 20)]
    hook_runs: usize,
    /// Where `qemu-latest.json` goes.
    #[arg(long, default_value_os_t = Path::new(env!("CARGO_MANIFEST_DIR")).join("results"))]
    out_dir: PathBuf,
}

#[derive(Serialize, Default)]
struct ModeResult {
    mode: String,
    /// QEMU start to the guest's line saying the first ping was answered, per run (s).
    wall_s: Vec<f64>,
    /// The guest's uptime at that moment, per run (s): boot time inside the guest.
    guest_uptime_s: Vec<f64>,
    median_wall_s: f64,
    median_guest_uptime_s: f64,
}

#[derive(Serialize)]
struct HookTimes {
    what: String,
    median_ms: f64,
    p90_ms: f64,
    runs: usize,
}

#[derive(Serialize)]
struct Report {
    runs: usize,
    modes: Vec<ModeResult>,
    hooks: Vec<HookTimes>,
}

fn median(v: &[f64]) -> f64 {
    testkit::stats::median(v.to_vec())
}

/// The plain baseline: namespace `host` with bridge br0 and a peer namespace on it at 10.80.0.3.
struct Plain {
    host: Netns,
    _peer: Netns,
    ifup: PathBuf,
    _dir: tempfile::TempDir,
}

impl Plain {
    fn new() -> Result<Plain> {
        let host = Netns::new("qbplain");
        let peer = Netns::new("qbpeer");
        host.exec(&["ip", "link", "add", "br0", "type", "bridge"]);
        host.exec(&["ip", "link", "set", "br0", "up"]);
        host.exec(&[
            "ip", "link", "add", "pv0", "type", "veth", "peer", "name", "eth0", "netns", &peer.name,
        ]);
        host.exec(&["ip", "link", "set", "pv0", "master", "br0", "up"]);
        peer.exec(&["ip", "addr", "add", "10.80.0.3/24", "dev", "eth0"]);
        peer.exec(&["ip", "link", "set", "eth0", "up"]);
        let dir = tempfile::tempdir().context("ifup script dir")?;
        let ifup = dir.path().join("plain-ifup");
        std::fs::write(&ifup, "#!/bin/sh\nip link set \"$1\" master br0 up\n")
            .context("write ifup")?;
        std::fs::set_permissions(&ifup, std::fs::Permissions::from_mode(0o755))
            .context("chmod ifup")?;
        Ok(Plain {
            host,
            _peer: peer,
            ifup,
            _dir: dir,
        })
    }
}

fn hook_env(c: &Cluster, t: &Tenant) -> Vec<(String, String)> {
    [
        ("CIAO_TENANT", t.tenant.as_str()),
        ("CIAO_SUBNET", SUBNET),
        ("CIAO_CNCI_UUID", t.cnci.as_str()),
        ("CIAO_CNCI_IP", NN_IP),
        ("CIAO_VM_IP", VM_IP),
        ("CIAO_STATE_DIR", &c.cn1.state.path().display().to_string()),
        ("CIAO_VNIC_DIR", "/nonexistent/ciao-vnics"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Boots one guest and returns (wall seconds, guest uptime seconds) at the first ping reply.
fn boot(image: &GuestImage, spec: &GuestSpec, target: &str) -> Result<(f64, f64)> {
    let mut guest = Guest::start(image, spec)?;
    let (line, wall) = guest.wait_line(&format!("ping ok {target}"), TIMEOUT)?;
    let uptime = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("uptime="))
        .and_then(|u| u.parse::<f64>().ok())
        .ok_or_else(|| anyhow!("no uptime in {line:?}"))?;
    let status = guest.wait_exit(Duration::from_secs(30))?;
    if !status.success() {
        bail!("qemu exited {status}: {}", guest.qemu_text());
    }
    Ok((wall.as_secs_f64(), uptime))
}

/// Runs `bin tap` in `ns` with `env`, returning its duration (the spawn via nsenter included,
/// as QEMU's fork+exec of a script is).
fn time_hook(ns: &Path, bin: &Path, tap: &str, env: &[(String, String)]) -> Result<f64> {
    let start = Instant::now();
    let out = Command::new("nsenter")
        .arg(format!("--net={}", ns.display()))
        .arg(bin)
        .arg(tap)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .output()
        .context("run hook")?;
    let took = start.elapsed().as_secs_f64() * 1000.0;
    if !out.status.success() {
        bail!(
            "{} {tap}: {}",
            bin.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(took)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let image = match guest_image() {
        Ok(i) => i,
        Err(ImageError::Unavailable(why)) | Err(ImageError::Failed(why)) => {
            bail!("no QEMU guest: {why}")
        }
    };

    let plain = Plain::new()?;
    let mut c = Cluster::new().context("cluster")?;
    let a = c.add_tenant(TENANT_A)?;
    let _ctr = c.container(Cn::Cn2, &a, SUBNET, CONTAINER_IP)?;
    c.wait_programmed(&a, SUBNET, &[Cn::Cn2.ip()])?;
    let env = hook_env(&c, &a);

    let logs = log_dir("qemu-bench");
    let plain_spec = GuestSpec {
        netns: plain.host.path(),
        tap: "tapplain".into(),
        mac: "52:54:00:12:34:56".into(),
        ifup: plain.ifup.clone(),
        ifdown: None,
        env: Vec::new(),
        append: "ciao.ip=10.80.0.2/24 ciao.ping=10.80.0.3".into(),
        log_dir: logs.clone(),
    };
    let hooks_spec = |append: &str| GuestSpec {
        netns: c.cn1.ns.path(),
        tap: "tapbench".into(),
        mac: VM_MAC.into(),
        ifup: vm_hook("ciao-qemu-ifup"),
        ifdown: Some(vm_hook("ciao-qemu-ifdown")),
        env: env.clone(),
        append: append.into(),
        log_dir: logs.clone(),
    };
    let static_spec = hooks_spec(&format!(
        "ciao.ip={VM_IP}/24 ciao.gw=172.16.1.1 ciao.ping={CONTAINER_IP}"
    ));
    let dhcp_spec = hooks_spec(&format!("ciao.ping={CONTAINER_IP}"));

    let mut modes: Vec<ModeResult> = ["plain", "hooks-static", "hooks-dhcp"]
        .iter()
        .map(|m| ModeResult {
            mode: m.to_string(),
            ..ModeResult::default()
        })
        .collect();
    for round in 0..args.runs {
        for (i, (spec, target)) in [
            (&plain_spec, "10.80.0.3"),
            (&static_spec, CONTAINER_IP),
            (&dhcp_spec, CONTAINER_IP),
        ]
        .into_iter()
        .enumerate()
        {
            let (wall, uptime) =
                boot(&image, spec, target).with_context(|| format!("{} run", modes[i].mode))?;
            eprintln!(
                "round {round} {:<13} wall {wall:6.2} s, guest uptime {uptime:5.2} s",
                modes[i].mode
            );
            modes[i].wall_s.push(wall);
            modes[i].guest_uptime_s.push(uptime);
            if i > 0 {
                // Independent runs: the hub has forgotten CN1 before the next first VNIC.
                c.wait_programmed(&a, SUBNET, &[Cn::Cn2.ip()])?;
            }
        }
    }
    for m in &mut modes {
        m.median_wall_s = median(&m.wall_s);
        m.median_guest_uptime_s = median(&m.guest_uptime_s);
    }

    // The hooks alone: ifup (the subnet's first VNIC: bridge + tunnel) and ifdown (the last).
    let ns = c.cn1.ns.path();
    c.cn1
        .ns
        .exec(&["ip", "tuntap", "add", "dev", "taphook", "mode", "tap"]);
    let plain_ns = plain.host.path();
    plain
        .host
        .exec(&["ip", "tuntap", "add", "dev", "taphook", "mode", "tap"]);
    let (mut up, mut down, mut plain_up) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..args.hook_runs {
        up.push(time_hook(&ns, &vm_hook("ciao-qemu-ifup"), "taphook", &env)?);
        down.push(time_hook(
            &ns,
            &vm_hook("ciao-qemu-ifdown"),
            "taphook",
            &env,
        )?);
        plain_up.push(time_hook(&plain_ns, &plain.ifup, "taphook", &[])?);
        plain
            .host
            .exec(&["ip", "link", "set", "taphook", "nomaster"]);
    }
    let hooks = [
        ("ciao-qemu-ifup (first vnic: bridge + tunnel)", up),
        ("ciao-qemu-ifdown (last vnic)", down),
        ("plain ifup script", plain_up),
    ]
    .into_iter()
    .map(|(what, v)| HookTimes {
        what: what.into(),
        median_ms: median(&v),
        p90_ms: percentile(&v, 0.9),
        runs: v.len(),
    })
    .collect();

    let report = Report {
        runs: args.runs,
        modes,
        hooks,
    };
    println!(
        "== QEMU start to first ping reply (TCG), median of {}",
        args.runs
    );
    println!("{:<14} {:>10} {:>16}", "mode", "wall s", "guest uptime s");
    for m in &report.modes {
        println!(
            "{:<14} {:>10.2} {:>16.2}",
            m.mode, m.median_wall_s, m.median_guest_uptime_s
        );
    }
    println!("== the hooks alone, {} runs", args.hook_runs);
    for h in &report.hooks {
        println!(
            "{:<46} median {:>7.1} ms  p90 {:>7.1} ms",
            h.what, h.median_ms, h.p90_ms
        );
    }
    std::fs::create_dir_all(&args.out_dir).context("results dir")?;
    let out = args.out_dir.join("qemu-latest.json");
    std::fs::write(&out, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("write {}", out.display()))?;
    println!("written {}", out.display());
    Ok(())
}
