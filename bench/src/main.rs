//! `ciao-bench`: attach/detach latency of the `ciao` CNI plugin against the reference `bridge` +
//! `host-local` plugins, both invoked exactly as a runtime invokes them, interleaved in one run
//! so machine noise hits both alike. Not part of CI: numbers from a shared 2-CPU VM only mean
//! something relative to each other within one run.
//!
//! ```text
//! cargo build --release -p ciao-bench -p ciao-cni
//! sudo target/release/ciao-bench --containers 200
//! ```
//!
//! See `bench/README.md` for what is measured and how.

mod plugin;
mod report;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, ensure, Context, Result};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use serde_json::Value;
use testkit::{json, ComputeNode, Netns, TENANT_A};

use plugin::{NsSwitch, Plugin};
use report::{
    Growth, Host, Ops, QuietCheck, Ratios, Results, Scale, ScaleOps, Sequential, Settings, Startup,
};
use testkit::host::{wait_quiet_for, Quiet};
use testkit::stats::{self, Summary};

const USAGE: &str = "\
usage: ciao-bench [options]   (as root: it creates network namespaces)

  --containers N   containers in the sequential ADD/DEL phase (default 200)
  --scale A,B,..   attachment counts for the scaling phase (default 10,1000; max 1020,
                   a bridge holds at most 1023 ports and a /22 has 1021 free addresses)
  --rounds R       ADD+DEL rounds measured at each count (default 50)
  --no-ref-scale   leave the reference plugin out of the scaling phase (saves ~1 minute)
  --plugin PATH    the ciao plugin (default $CIAO_CNI_PLUGIN, else target/release/ciao)
  --ref-dir DIR    where the reference bridge and host-local live (default /usr/lib/cni)
  --out PATH       JSON results (default bench/results/latest.json)
  --node-sysctl K=V  set a sysctl in both node namespaces before any attach (repeatable;
                   for experiments, e.g. net.ipv6.conf.default.disable_ipv6=1)

Node state (ciao's stateDir, host-local's dataDir) goes under $TMPDIR (default /tmp).
";

/// Largest attachment count either plugin can hold on one /22 bridge (1021 addresses, N + 1).
const MAX_ATTACHED: usize = 1020;
/// VERSION calls per binary for the start-up floor.
const STARTUP_CALLS: usize = 30;

struct Args {
    containers: usize,
    scale: Vec<usize>,
    rounds: usize,
    ref_scale: bool,
    plugin: PathBuf,
    ref_dir: PathBuf,
    out: PathBuf,
    node_sysctl: Vec<String>,
}

fn parse_args() -> Result<Option<Args>> {
    let mut args = Args {
        containers: 200,
        scale: vec![10, 1000],
        rounds: 50,
        ref_scale: true,
        plugin: std::env::var_os("CIAO_CNI_PLUGIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| testkit::workspace_root().join("target/release/ciao")),
        ref_dir: PathBuf::from("/usr/lib/cni"),
        out: testkit::workspace_root().join("bench/results/latest.json"),
        node_sysctl: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| anyhow!("{flag} needs a value\n\n{USAGE}"))
        };
        let number = |text: String| -> Result<usize> {
            text.trim()
                .parse()
                .with_context(|| format!("{flag}: {text:?} is not a number"))
        };
        match flag.as_str() {
            "-h" | "--help" => {
                print!("{USAGE}");
                return Ok(None);
            }
            "--containers" => args.containers = number(value()?)?,
            "--rounds" => args.rounds = number(value()?)?,
            "--scale" => {
                let text = value()?;
                args.scale = if text.trim().is_empty() {
                    Vec::new()
                } else {
                    text.split(',')
                        .map(|t| number(t.to_string()))
                        .collect::<Result<_>>()?
                };
            }
            "--no-ref-scale" => args.ref_scale = false,
            "--plugin" => args.plugin = PathBuf::from(value()?),
            "--ref-dir" => args.ref_dir = PathBuf::from(value()?),
            "--out" => args.out = PathBuf::from(value()?),
            "--node-sysctl" => {
                let kv = value()?;
                ensure!(
                    kv.contains('='),
                    "--node-sysctl wants KEY=VALUE, got {kv:?}"
                );
                args.node_sysctl.push(kv);
            }
            other => bail!("unknown argument {other:?}\n\n{USAGE}"),
        }
    }
    ensure!(
        (1..=MAX_ATTACHED).contains(&args.containers),
        "--containers must be 1..={MAX_ATTACHED}"
    );
    ensure!(args.rounds >= 1, "--rounds must be at least 1");
    ensure!(
        args.scale.iter().all(|n| *n <= MAX_ATTACHED),
        "--scale values must be at most {MAX_ATTACHED}"
    );
    args.scale.sort_unstable();
    args.scale.dedup();
    Ok(Some(args))
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: nix::libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Ctrl-C/SIGTERM only raise a flag, so the run stops between calls and unwinds normally,
/// deleting every namespace and temporary directory it made.
fn install_signal_handlers() -> Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { sigaction(sig, &action) }.with_context(|| format!("install {sig} handler"))?;
    }
    Ok(())
}

fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted; cleaning up");
    }
    Ok(())
}

/// The fixtures panic on failure (they are test code); turn that into an error so clean-up of
/// everything made so far still runs through normal drops.
fn fixture<T>(what: &str, make: impl FnOnce() -> T + std::panic::UnwindSafe) -> Result<T> {
    check_interrupted()?;
    std::panic::catch_unwind(make).map_err(|_| anyhow!("{what} failed (see the message above)"))
}

/// A simulated compute node (namespace, underlay, state directory), tuned as asked.
fn node(args: &Args) -> Result<ComputeNode> {
    let node = fixture("creating a node namespace", ComputeNode::new)?;
    for kv in &args.node_sysctl {
        let out = node.ns.try_exec(&["sysctl", "-q", "-w", kv]);
        ensure!(
            out.status.success(),
            "sysctl {kv} in {}: {}",
            node.ns.name,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(node)
}

fn container_id() -> String {
    // 64 hex digits, like the ids containerd and CRI-O pass.
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

fn ours_conf(node: &ComputeNode) -> Value {
    node.conf("1.0.0", "blue", TENANT_A, "172.16.0.0/22")
}

/// The reference attach: a bridge with the same MTU, no gateway address, no masquerading, and
/// host-local IPAM from a /22 with a default route, so the container ends up configured like
/// ours (veth on a bridge, one address, default route).
fn reference_conf(node: &ComputeNode) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": "ref",
        "type": "bridge",
        "bridge": "cni-ref0",
        "isGateway": false,
        "ipMasq": false,
        "mtu": 1450,
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": "10.22.0.0/22"}]],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": node.state.path().join("host-local"),
        },
    })
}

/// One plugin's side of a phase: its node, container namespaces and the ids attached so far.
struct Side<'a> {
    plugin: Plugin,
    pool: &'a [Netns],
    ids: Vec<Option<String>>,
}

impl<'a> Side<'a> {
    fn new(plugin: Plugin, pool: &'a [Netns]) -> Self {
        Side {
            plugin,
            pool,
            ids: vec![None; pool.len()],
        }
    }

    fn add(&mut self, sw: &NsSwitch, slot: usize, ifname: &str) -> Result<Duration> {
        check_interrupted()?;
        let ns = self
            .pool
            .get(slot)
            .ok_or_else(|| anyhow!("no container namespace #{slot}"))?;
        let id = container_id();
        let took = self.plugin.call(sw, "ADD", &id, &ns.path(), ifname);
        self.ids[slot] = Some(id);
        took
    }

    fn del(&mut self, sw: &NsSwitch, slot: usize, ifname: &str) -> Result<Duration> {
        check_interrupted()?;
        let ns = self
            .pool
            .get(slot)
            .ok_or_else(|| anyhow!("no container namespace #{slot}"))?;
        let id = self.ids[slot]
            .take()
            .ok_or_else(|| anyhow!("nothing attached in slot {slot}"))?;
        self.plugin.call(sw, "DEL", &id, &ns.path(), ifname)
    }
}

fn make_pool(count: usize, label: &str) -> Result<Vec<Netns>> {
    let mut pool = Vec::with_capacity(count);
    for i in 0..count {
        pool.push(fixture("creating a container namespace", || {
            Netns::new("cb")
        })?);
        if (i + 1) % 250 == 0 {
            eprintln!("  {label}: {} namespaces", i + 1);
        }
    }
    Ok(pool)
}

/// Start-up floor and requirement 1: the sequential ADD/DEL phase.
fn sequential(
    sw: &NsSwitch,
    args: &Args,
    pools: &[Vec<Netns>; 2],
    quiet: &mut Vec<QuietCheck>,
) -> Result<(Vec<Startup>, Sequential)> {
    let ours_node = node(args)?;
    let ref_node = node(args)?;
    let ours_path = ours_node.ns.path();
    let ref_path = ref_node.ns.path();
    let ref_conf = reference_conf(&ref_node);
    let host_local = Plugin::new(
        "host-local",
        &args.ref_dir.join("host-local"),
        &ref_path,
        &ref_conf,
    )?;
    let mut sides = [
        Side::new(
            Plugin::new("ciao", &args.plugin, &ours_path, &ours_conf(&ours_node))?,
            &pools[0],
        ),
        Side::new(
            Plugin::new("bridge", &args.ref_dir.join("bridge"), &ref_path, &ref_conf)?,
            &pools[1],
        ),
    ];

    go_quiet(quiet, "start-up");
    eprintln!("start-up floor: {STARTUP_CALLS} × VERSION per binary");
    let no_ns = Path::new("");
    let mut startup = vec![Vec::new(), Vec::new(), Vec::new()];
    for _ in 0..STARTUP_CALLS {
        check_interrupted()?;
        for (k, p) in [&sides[0].plugin, &sides[1].plugin, &host_local]
            .into_iter()
            .enumerate()
        {
            startup[k].push(p.call(sw, "VERSION", "", no_ns, "")?);
        }
    }
    let names = ["ciao", "bridge", "host-local"];
    let startup = names
        .iter()
        .zip(&startup)
        .map(|(name, s)| Startup {
            binary: (*name).to_string(),
            exec: Summary::of(s),
        })
        .collect();

    let n = args.containers;
    go_quiet(quiet, "phase 1");
    eprintln!("phase 1: {n} × ADD, then {n} × DEL, ciao and reference interleaved");
    let ifname = "eth0";
    let mut add = [Vec::new(), Vec::new()];
    let mut del = [Vec::new(), Vec::new()];
    for i in 0..n {
        // Alternate who goes first so neither always runs right after the other's side effects.
        for k in [i % 2, (i + 1) % 2] {
            add[k].push(sides[k].add(sw, i, ifname)?);
        }
        if i == 0 {
            for side in &sides {
                verify(side.plugin.label, &side.pool[0], ifname)?;
            }
        }
    }
    for i in 0..n {
        for k in [i % 2, (i + 1) % 2] {
            del[k].push(sides[k].del(sw, i, ifname)?);
        }
    }
    let ours = Ops::new(&add[0], &del[0]);
    let reference = Ops::new(&add[1], &del[1]);
    let ratio = Ratios::of(&ours, &reference);
    let seq = Sequential {
        containers: n,
        goal_add_p50_at_most_half_met: ratio.add_p50 <= 0.5,
        ours,
        reference,
        ratio,
    };
    Ok((startup, seq))
}

/// Requirement 2 for one N: pre-attach N containers, then time ADD+DEL rounds on top of them.
fn scale(
    sw: &NsSwitch,
    args: &Args,
    pools: &[Vec<Netns>; 2],
    existing: usize,
    ifname: &str,
    quiet: &mut Vec<QuietCheck>,
) -> Result<Scale> {
    let ours_node = node(args)?;
    let ref_node = node(args)?;
    let mut sides = vec![Side::new(
        Plugin::new(
            "ciao",
            &args.plugin,
            &ours_node.ns.path(),
            &ours_conf(&ours_node),
        )?,
        &pools[0],
    )];
    if args.ref_scale {
        let plugin = Plugin::new(
            "bridge",
            &args.ref_dir.join("bridge"),
            &ref_node.ns.path(),
            &reference_conf(&ref_node),
        )?;
        sides.push(Side::new(plugin, &pools[1]));
    }
    let count = sides.len();
    // Rotate who goes first so neither always runs right after the other's side effects.
    let order = |i: usize| -> Vec<usize> { (0..count).map(|k| (i + k) % count).collect() };

    go_quiet(quiet, &format!("phase 2 N={existing} pre-attach"));
    eprintln!("phase 2, N={existing}: pre-attaching {existing} containers per plugin");
    let mut pre = vec![Vec::new(); count];
    for i in 0..existing {
        for k in order(i) {
            pre[k].push(sides[k].add(sw, i, ifname)?);
        }
        if (i + 1) % 250 == 0 {
            eprintln!("  {} attached", i + 1);
        }
    }
    go_quiet(quiet, &format!("phase 2 N={existing} rounds"));
    eprintln!("phase 2, N={existing}: {} rounds of ADD+DEL", args.rounds);
    let mut add = vec![Vec::new(); count];
    let mut del = vec![Vec::new(); count];
    for r in 0..args.rounds {
        let slot = existing + r;
        for k in order(r) {
            add[k].push(sides[k].add(sw, slot, ifname)?);
            del[k].push(sides[k].del(sw, slot, ifname)?);
        }
    }
    let mut results = (0..count).map(|k| ScaleOps {
        preattach: Summary::of(&pre[k]),
        preattach_samples_ms: pre[k].iter().map(|d| stats::ms(*d)).collect(),
        rounds: Ops::new(&add[k], &del[k]),
    });
    let ours = results
        .next()
        .ok_or_else(|| anyhow!("no results for ciao"))?;
    let reference = results.next();
    // The pre-attached containers are not detached one by one (that alone would take the
    // reference a minute at N=1000): deleting the node namespaces drops their veths.
    drop(sides);
    drop(ours_node);
    drop(ref_node);
    if existing > 0 {
        settle(&pools[0][existing - 1], ifname);
        if args.ref_scale {
            settle(&pools[1][existing - 1], ifname);
        }
    }
    Ok(Scale {
        existing,
        ours,
        reference,
    })
}

/// Checks (once, untimed) that an ADD really configured the container: the interface is up
/// with an IPv4 address and there is a default route, so both plugins are doing the same job.
fn verify(label: &str, container: &Netns, ifname: &str) -> Result<()> {
    let out = container.try_exec(&["ip", "-4", "-o", "addr", "show", "dev", ifname, "up"]);
    let addr = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success() && addr.contains("inet "),
        "{label}: {ifname} in {} is not up with an IPv4 address: {addr}",
        container.name
    );
    let out = container.try_exec(&["ip", "-4", "route", "show", "default"]);
    ensure!(
        String::from_utf8_lossy(&out.stdout).contains(ifname),
        "{label}: no default route via {ifname} in {}",
        container.name
    );
    Ok(())
}

/// Waits (at most a minute) until the machine is nearly idle before a phase starts.
///
/// Deleting network namespaces leaves the kernel tearing them down in the background for many
/// seconds (holding the RTNL lock that every link change needs), e.g. after a previous run or
/// a test suite; measuring during that mostly measures the lock wait. Returns the busy share
/// of all CPUs seen last (0..1), for the record.
fn wait_quiet(phase: &str) -> f64 {
    let how = Quiet {
        limit: Duration::from_secs(60),
        sample: Duration::from_millis(500),
        streak: 2,
    };
    let who = format!("  {phase}");
    wait_quiet_for(how, &who, check_interrupted).unwrap_or(f64::NAN)
}

/// Waits for a quiet machine and records how quiet it got.
fn go_quiet(quiet: &mut Vec<QuietCheck>, phase: &str) {
    quiet.push(QuietCheck::new(phase, wait_quiet(phase)));
}

/// Waits (bounded) until the kernel has finished destroying a deleted node namespace, seen as
/// the container end of one of its veths going away, so that work does not land in the next
/// phase's timings.
fn settle(container: &Netns, ifname: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let present = Command::new("ip")
            .args(["-n", &container.name, "link", "show", "dev", ifname])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !present {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn preflight(args: &Args) -> Result<()> {
    ensure!(
        testkit::is_root(),
        "must run as root (it creates network namespaces)"
    );
    ensure!(
        args.plugin.is_file(),
        "no ciao plugin at {} (build it: cargo build --release -p ciao-cni, or pass --plugin)",
        args.plugin.display()
    );
    if let Some(newer) = newer_source(&args.plugin) {
        eprintln!(
            "warning: {} is newer than {}; rebuild with cargo build --release -p ciao-cni",
            newer.display(),
            args.plugin.display()
        );
    }
    for name in ["bridge", "host-local"] {
        let p = args.ref_dir.join(name);
        ensure!(
            p.is_file(),
            "no reference plugin at {} (Debian: apt-get install containernetworking-plugins)",
            p.display()
        );
    }
    Ok(())
}

/// A plugin source file modified after the binary was built, if any: `cargo run -p ciao-bench`
/// does not rebuild the plugin, and measuring a stale one is an easy mistake.
fn newer_source(binary: &Path) -> Option<PathBuf> {
    let built = std::fs::metadata(binary).and_then(|m| m.modified()).ok()?;
    let root = testkit::workspace_root();
    let mut stack = vec![root.join("cni-plugin/src"), root.join("netcore/src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).ok()?.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t > built)
            {
                return Some(path);
            }
        }
    }
    None
}

fn git_rev() -> Option<String> {
    let out = Command::new("git")
        .args(["-c", "safe.directory=*", "rev-parse", "--short", "HEAD"])
        .current_dir(testkit::workspace_root())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn run() -> Result<()> {
    let Some(args) = parse_args()? else {
        return Ok(());
    };
    preflight(&args)?;
    install_signal_handlers()?;
    let started = Instant::now();
    let sw = NsSwitch::new()?;

    let per_side = args
        .scale
        .iter()
        .map(|n| n + args.rounds)
        .chain([args.containers])
        .max()
        .unwrap_or(args.containers);
    eprintln!("creating 2 × {per_side} container namespaces");
    let pools = [
        make_pool(per_side, "ciao")?,
        make_pool(per_side, "reference")?,
    ];

    let mut quiet = Vec::new();
    let (startup, sequential) = sequential(&sw, &args, &pools, &mut quiet)?;
    let mut scales = Vec::new();
    for (phase, n) in args.scale.iter().enumerate() {
        // A fresh interface name per phase: namespaces are reused, and the kernel removes the
        // previous phase's container ends asynchronously.
        let ifname = format!("eth{}", phase + 1);
        scales.push(scale(&sw, &args, &pools, *n, &ifname, &mut quiet)?);
    }
    let growth = match (scales.first(), scales.last()) {
        (Some(a), Some(b)) if scales.len() >= 2 => {
            let ours = stats::ratio(b.ours.rounds.add.p50_ms, a.ours.rounds.add.p50_ms);
            let reference = match (&a.reference, &b.reference) {
                (Some(x), Some(y)) => Some(stats::ratio(y.rounds.add.p50_ms, x.rounds.add.p50_ms)),
                _ => None,
            };
            Some(Growth {
                from: a.existing,
                to: b.existing,
                ours_add_p50: ours,
                reference_add_p50: reference,
                goal_ours_below_1_5x_met: ours < 1.5,
            })
        }
        _ => None,
    };

    let results = Results {
        tool: "ciao-bench",
        unix_time: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        wall_seconds: (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        host: Host {
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
            cpus: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0),
        },
        settings: Settings {
            containers: args.containers,
            scale: args.scale.clone(),
            rounds: args.rounds,
            reference_in_scale: args.ref_scale,
            ours: args.plugin.display().to_string(),
            reference: args.ref_dir.join("bridge").display().to_string(),
            git_rev: git_rev(),
            node_sysctl: args.node_sysctl.clone(),
            state_parent: std::env::temp_dir().display().to_string(),
        },
        quiet,
        startup,
        sequential,
        scale: scales,
        growth,
    };
    println!("{}", results.markdown());
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(&results).context("serialise results")?;
    std::fs::write(&args.out, text + "\n")
        .with_context(|| format!("write {}", args.out.display()))?;
    eprintln!("results written to {}", args.out.display());
    eprintln!("cleaning up {} namespaces", 2 * per_side);
    drop(pools);
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ciao-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
