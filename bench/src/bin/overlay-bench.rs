//! `overlay-bench`: TCP throughput (iperf3) of a tenant subnet through the CNCI hub and between
//! local neighbours, as ratios to a plain veth + Linux bridge. Uses the multi-node cluster
//! fixture (`testkit::cluster`): scheduler, two compute nodes and a network node in network
//! namespaces, the real CNI plugin, node daemons and CNCI agent. Needs root and `iperf3`.
//!
//! ```text
//! cargo build --release -p ciao-bench -p ciao-cnci-agent -p ciao-scheduler -p ciao-cni -p ciao-node
//! target/release/overlay-bench
//! ```
//!
//! See `bench/README.md`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use clap::Parser;
use serde::Serialize;
use testkit::cluster::{Cluster, Cn};
use testkit::host::{utc_stamp, wait_quiet};
use testkit::stats::median;
use testkit::{Netns, Proc, TENANT_A};

const SUBNET: &str = "172.16.1.0/24";
const A1: &str = "172.16.1.10";
const A2: &str = "172.16.1.20";
const A3: &str = "172.16.1.11";
const B1: &str = "10.77.0.1";
const B2: &str = "10.77.0.2";
const PORT: &str = "5201";

#[derive(Parser)]
#[command(
    name = "overlay-bench",
    about = "iperf3 through the CNCI hub and between local neighbours, vs. plain veth + bridge (needs root)"
)]
struct Args {
    /// Rounds; each runs all three paths once, in a rotating order.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Seconds per iperf3 run (`-t`).
    #[arg(long, default_value_t = 5)]
    secs: u32,
    /// Seconds to wait at start for the machine to fall below 15 % busy (0: don't wait).
    #[arg(long, default_value_t = 60)]
    quiet_wait_secs: u64,
    /// Tunnel kind of the tenant subnet: vxlan, gretap or geneve (the last two need a kernel
    /// that has them: the kernel lane's, see the README).
    #[arg(long, default_value = "vxlan", value_parser = ["vxlan", "gretap", "geneve"])]
    kind: String,
    /// Directory for `overlay-<timestamp>.json` and `.txt`.
    #[arg(long, default_value_os_t = Path::new(env!("CARGO_MANIFEST_DIR")).join("results"))]
    out_dir: PathBuf,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc_int) {
    STOP.store(true, Ordering::SeqCst);
}

#[allow(non_camel_case_types)]
type libc_int = std::os::raw::c_int;

/// SIGINT/SIGTERM only set a flag: the bench stops between runs and its fixtures clean up.
fn install_signal_flag() -> Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { sigaction(sig, &action) }.context("install a signal handler")?;
    }
    Ok(())
}

fn check_stop() -> Result<()> {
    if STOP.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------

/// Plain veth + Linux bridge: `b1` and `b2` joined by veths to a bridge in a third namespace.
struct Baseline {
    b1: Netns,
    b2: Netns,
    // Deleted last (after the ends): declared last.
    _br: Netns,
}

impl Baseline {
    fn new(mtu: u32) -> Result<Baseline> {
        let br = Netns::new("obr");
        let b1 = Netns::new("ob1");
        let b2 = Netns::new("ob2");
        let mtu = mtu.to_string();
        br.exec(&["ip", "link", "add", "br0", "mtu", &mtu, "type", "bridge"]);
        br.exec(&["ip", "link", "set", "br0", "up"]);
        for (i, (ns, ip)) in [(&b1, B1), (&b2, B2)].into_iter().enumerate() {
            let port = format!("p{i}");
            br.exec(&[
                "ip", "link", "add", &port, "mtu", &mtu, "type", "veth", "peer", "name", "eth0",
                "mtu", &mtu, "netns", &ns.name,
            ]);
            br.exec(&["ip", "link", "set", &port, "master", "br0", "up"]);
            ns.exec(&["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
            ns.exec(&["ip", "link", "set", "eth0", "up"]);
        }
        Ok(Baseline { b1, b2, _br: br })
    }
}

#[derive(Debug, Clone, Serialize)]
struct Run {
    round: usize,
    path: &'static str,
    gbit_s: f64,
    retransmits: u64,
    /// Why the run failed (counted as 0 Gbit/s).
    error: Option<String>,
}

/// One iperf3 run: server (`-s -1`) in `server_ns`, client in `client_ns`; Gbit/s received.
fn iperf(server_ns: &str, server_ip: &str, client_ns: &str, secs: u32) -> Result<(f64, u64)> {
    let nsenter = |ns: &str| {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{ns}"))
            .arg("--")
            .arg("iperf3");
        c
    };
    let server = nsenter(server_ns)
        .args(["-s", "-1", "-p", PORT])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("start iperf3 -s (is iperf3 installed? scripts/install-deps.sh)")?;
    let mut server = Proc(server);
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let out = loop {
        check_stop()?;
        let client = nsenter(client_ns)
            .args(["-c", server_ip, "-p", PORT, "-J", "-t", &secs.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("run iperf3 -c")?;
        let mut client = Proc(client);
        // A stalled path must not hang the bench: cap the run and report it as failed.
        let deadline = Instant::now() + Duration::from_secs(u64::from(secs) + 15);
        while client.0.try_wait()?.is_none() {
            if Instant::now() > deadline || STOP.load(Ordering::SeqCst) {
                let _ = client.0.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut stdout = Vec::new();
        if let Some(mut pipe) = client.0.stdout.take() {
            use std::io::Read;
            let _ = pipe.read_to_end(&mut stdout);
        }
        let ok = client.0.wait()?.success();
        check_stop()?;
        let text = String::from_utf8_lossy(&stdout).into_owned();
        if ok {
            break stdout;
        }
        // The server may not listen yet.
        if text.contains("Connection refused") && started.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        let why = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_else(|| "no result within the time limit".into());
        return Err(anyhow!(
            "iperf3 -c {server_ip} from {client_ns} failed: {why}"
        ));
    };
    // `-s -1` exits after its one test; a server whose client failed is killed on drop.
    let until = Instant::now() + Duration::from_secs(2);
    while server.0.try_wait()?.is_none() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(server);
    let v: serde_json::Value = serde_json::from_slice(&out).context("iperf3 -J output")?;
    let bps = v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .ok_or_else(|| {
            anyhow!(
                "no end.sum_received.bits_per_second in iperf3's output (error: {})",
                v["error"].as_str().unwrap_or("none")
            )
        })?;
    let retr = v["end"]["sum_sent"]["retransmits"].as_u64().unwrap_or(0);
    Ok(((bps / 1e7).round() / 100.0, retr))
}

fn mtu_of(ns: &Netns, dev: &str) -> Result<u32> {
    let text = ns.exec(&["ip", "-o", "link", "show", dev]);
    let mut words = text.split_whitespace();
    while let Some(w) = words.next() {
        if w == "mtu" {
            return words
                .next()
                .and_then(|m| m.parse().ok())
                .ok_or_else(|| anyhow!("bad mtu in {text}"));
        }
    }
    bail!("no mtu in {text}")
}

#[derive(Debug, Clone, Serialize)]
struct PathSummary {
    path: &'static str,
    median_gbit_s: f64,
    ratio_to_baseline: f64,
    runs_gbit_s: Vec<f64>,
}

#[derive(Debug, Clone, Serialize)]
struct Results {
    timestamp: String,
    cpus: usize,
    busy_at_start_pct: f64,
    kind: String,
    rounds: usize,
    secs: u32,
    workload_mtu: u32,
    setup_s: f64,
    summary: Vec<PathSummary>,
    runs: Vec<Run>,
}

impl Results {
    fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "## overlay-bench {}: {}, iperf3 TCP, {} rounds x {} s per path, MTU {}, {} CPUs\n",
            self.timestamp, self.kind, self.rounds, self.secs, self.workload_mtu, self.cpus
        );
        let _ = writeln!(
            s,
            "Machine {:.0}% busy before the start; cluster set-up {:.1} s\n",
            self.busy_at_start_pct, self.setup_s
        );
        let _ = writeln!(s, "| path | median Gbit/s | ratio to baseline | runs |");
        let _ = writeln!(s, "|---|---:|---:|---|");
        for p in &self.summary {
            let runs: Vec<String> = p.runs_gbit_s.iter().map(|g| format!("{g:.2}")).collect();
            let _ = writeln!(
                s,
                "| {} | {:.2} | {:.2} | {} |",
                p.path,
                p.median_gbit_s,
                p.ratio_to_baseline,
                runs.join(", ")
            );
        }
        for r in self.runs.iter().filter(|r| r.error.is_some()) {
            let _ = writeln!(
                s,
                "\nFAILED run (not counted): round {} {}: {}",
                r.round,
                r.path,
                r.error.as_deref().unwrap_or("")
            );
        }
        s
    }
}

const HUB: &str = "a1 (CN1) -> a2 (CN2) through the hub";
const LOCAL: &str = "a1 (CN1) -> a3 (CN1), local neighbour";
const BASE: &str = "baseline: plain veth + bridge";

fn run(args: &Args) -> Result<Results> {
    let t0 = Instant::now();
    eprintln!("overlay-bench: building the cluster");
    let mut cluster = Cluster::new()?;
    let t = cluster.add_tenant(TENANT_A)?;
    let tunnel = serde_json::json!({"tunnel": {"kind": args.kind}});
    let a1 = cluster.container_with(Cn::Cn1, &t, SUBNET, A1, tunnel.clone())?;
    let a3 = cluster.container_with(Cn::Cn1, &t, SUBNET, A3, tunnel.clone())?;
    let a2 = cluster.container_with(Cn::Cn2, &t, SUBNET, A2, tunnel)?;
    cluster.wait_programmed(&t, SUBNET, &[Cn::Cn1.ip(), Cn::Cn2.ip()])?;
    let mtu = mtu_of(&a1.ns, "eth0")?;
    let base = Baseline::new(mtu)?;
    // Connectivity first (this also fills the ARP caches and the bridges' FDBs).
    let reach = |from: &Netns, to: &str| -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !from.ping(to, 1) {
            check_stop()?;
            ensure!(Instant::now() < deadline, "{} cannot reach {to}", from.name);
        }
        Ok(())
    };
    reach(&a1.ns, A2)?;
    reach(&a1.ns, A3)?;
    reach(&base.b1, B2)?;
    let setup_s = (t0.elapsed().as_secs_f64() * 10.0).round() / 10.0;

    let paths: [(&'static str, &str, &str, &str); 3] = [
        (HUB, a2.ns.name.as_str(), A2, a1.ns.name.as_str()),
        (LOCAL, a3.ns.name.as_str(), A3, a1.ns.name.as_str()),
        (BASE, base.b2.name.as_str(), B2, base.b1.name.as_str()),
    ];
    let mut runs = Vec::new();
    for round in 0..args.rounds {
        for k in 0..paths.len() {
            let (path, server_ns, server_ip, client_ns) = paths[(k + round) % paths.len()];
            check_stop()?;
            let (gbit_s, retransmits, error) =
                match iperf(server_ns, server_ip, client_ns, args.secs) {
                    Ok((g, r)) => (g, r, None),
                    Err(e) => {
                        check_stop()?;
                        (0.0, 0, Some(format!("{e:#}")))
                    }
                };
            eprintln!(
                "overlay-bench: round {round}: {path}: {gbit_s:.2} Gbit/s {}",
                error.as_deref().unwrap_or("")
            );
            runs.push(Run {
                round,
                path,
                gbit_s,
                retransmits,
                error,
            });
        }
    }
    let med = |p: &str| {
        median(
            runs.iter()
                .filter(|r| r.path == p)
                .map(|r| r.gbit_s)
                .collect(),
        )
    };
    let baseline = med(BASE);
    let summary = [HUB, LOCAL, BASE]
        .into_iter()
        .map(|p| PathSummary {
            path: p,
            median_gbit_s: med(p),
            ratio_to_baseline: (med(p) / baseline * 100.0).round() / 100.0,
            runs_gbit_s: runs
                .iter()
                .filter(|r| r.path == p)
                .map(|r| r.gbit_s)
                .collect(),
        })
        .collect();
    // Workloads go before the cluster (their CNI DEL runs in its node namespaces).
    drop((a1, a2, a3, base));
    drop(cluster);
    Ok(Results {
        timestamp: utc_stamp(),
        kind: args.kind.clone(),
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        busy_at_start_pct: f64::NAN,
        rounds: args.rounds,
        secs: args.secs,
        workload_mtu: mtu,
        setup_s,
        summary,
        runs,
    })
}

fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(
        nix::unistd::geteuid().is_root(),
        "overlay-bench needs root (network namespaces)"
    );
    ensure!(
        Command::new("iperf3")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success()),
        "iperf3 is not installed (scripts/install-deps.sh installs it)"
    );
    // The cluster fixture takes the binaries next to this one (a release build) instead of
    // building debug ones with cargo, unless told otherwise.
    if std::env::var_os("CIAO_BIN_DIR").is_none() {
        if let Some(dir) = std::env::current_exe()?.parent() {
            std::env::set_var("CIAO_BIN_DIR", dir);
        }
    }
    install_signal_flag()?;
    let busy = if args.quiet_wait_secs > 0 {
        wait_quiet(
            Duration::from_secs(args.quiet_wait_secs),
            "overlay-bench",
            check_stop,
        )?
    } else {
        f64::NAN
    };
    let mut results = run(&args)?;
    results.busy_at_start_pct = busy;
    let table = results.table();
    println!("{table}");
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("create {}", args.out_dir.display()))?;
    let base = args.out_dir.join(format!("overlay-{}", results.timestamp));
    let json = base.with_extension("json");
    let txt = base.with_extension("txt");
    std::fs::write(&json, serde_json::to_string_pretty(&results)?)
        .with_context(|| format!("write {}", json.display()))?;
    std::fs::write(&txt, &table).with_context(|| format!("write {}", txt.display()))?;
    eprintln!(
        "overlay-bench: results in {} and {}",
        json.display(),
        txt.display()
    );
    Ok(())
}
