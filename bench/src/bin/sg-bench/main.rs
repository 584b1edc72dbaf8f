//! `sg-bench`: security groups on one compute node (issue 14).
//!
//! Two simulated nodes (scratch network namespaces this bench makes and removes), the same
//! tenant shape on each but for the number of ports: `--small-ports` and `--ports` workload
//! ports (veth host ends on `--bridges` bridges), `--groups` groups of `--rules` rules, each
//! port in 1-3 groups. The node's real path (netcore `secgroups::Enforcer`, as `ciao-node run`
//! drives it: persist the snapshot and keep it in memory, then the changed member sets alone as
//! one netlink batch, or compile and send the difference: one netlink batch when only elements
//! and existing chains' rules differ, else `nft -f`) loads it all from
//! scratch, then applies single changes alternately on the two nodes: one rule added to and
//! removed from `g00` (used by one port in `--groups`), one member joining and leaving `g00`
//! (which other groups' rules name as remote group). Last, iperf3 between two workloads on the
//! large node with every rule loaded against no table. Needs root and iperf3. Not part of CI.
//!
//! ```text
//! cargo build --release -p ciao-bench --bin sg-bench
//! target/release/sg-bench
//! ```

mod bed;
mod iperf;
mod workload;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Parser;
use serde::Serialize;
use testkit::host::utc_stamp;
use testkit::stats::{ratio, Summary};

use bed::{Bed, Sample};
use workload::{extra_member, extra_rule, group_name, Shape};

#[derive(Parser)]
#[command(
    name = "sg-bench",
    about = "Security groups on one node: load, change and throughput (needs root, iperf3)"
)]
struct Args {
    /// Workload ports of the large node.
    #[arg(long, default_value_t = 1000)]
    ports: usize,
    /// Workload ports of the small node (the changes are compared side by side).
    #[arg(long, default_value_t = 100)]
    small_ports: usize,
    /// Bridges (tenant subnets) the ports are spread over.
    #[arg(long, default_value_t = 10)]
    bridges: usize,
    #[arg(long, default_value_t = 20)]
    groups: usize,
    /// Rules per group.
    #[arg(long, default_value_t = 100)]
    rules: usize,
    /// Loads from scratch per node.
    #[arg(long, default_value_t = 3)]
    scratch_runs: usize,
    /// Repetitions of each change per node.
    #[arg(long, default_value_t = 20)]
    repeat: usize,
    /// Distinct combinations of groups the ports draw from (0: each port its own draw of 1-3
    /// groups, so the combinations grow with the ports). Equal on both nodes, it shows what a
    /// change costs when only the ports differ.
    #[arg(long, default_value_t = 0)]
    combinations: usize,
    /// Seconds per iperf3 run (0: no throughput test).
    #[arg(long, default_value_t = 5)]
    iperf_secs: u64,
    /// iperf3 pairs (one run with rules, one without each).
    #[arg(long, default_value_t = 3)]
    iperf_pairs: usize,
    /// Directory for `sg-<timestamp>.json`.
    #[arg(long, default_value_os_t = Path::new(env!("CARGO_MANIFEST_DIR")).join("results"))]
    out_dir: PathBuf,
}

/// One node's timings of one kind of apply.
#[derive(Serialize)]
struct Timed {
    ports: usize,
    /// The whole apply: persist + the rest.
    total: Summary,
    /// Of which the snapshot's durable write (fsync).
    persist: Summary,
    /// Of which `Enforcer::apply` (compile or member sets, diff, netlink batch or `nft -f`).
    applier: Summary,
    /// Samples that went as one netlink batch (elements or rules; no `nft`).
    via_netlink: usize,
    /// Lines of the nft script of the first sample.
    script_lines: usize,
}

impl Timed {
    fn of(ports: usize, samples: &[Sample]) -> Self {
        let pick = |f: fn(&Sample) -> Duration| samples.iter().map(f).collect::<Vec<_>>();
        Timed {
            ports,
            total: Summary::of(&pick(|s| s.total)),
            persist: Summary::of(&pick(|s| s.persist)),
            applier: Summary::of(&pick(|s| s.applier)),
            via_netlink: samples.iter().filter(|s| s.netlink).count(),
            script_lines: samples.first().map_or(0, |s| s.lines),
        }
    }
}

/// One kind of change on both nodes.
#[derive(Serialize)]
struct Change {
    kind: &'static str,
    small: Timed,
    large: Timed,
    /// Large p50 over small p50 (1.0: independent of the number of ports).
    ratio_p50: f64,
}

#[derive(Serialize)]
struct Results {
    ports: usize,
    small_ports: usize,
    bridges: usize,
    groups: usize,
    rules_per_group: usize,
    /// Rules in the large node's regular chains (groups' and dispatch).
    rules_loaded: usize,
    /// Combinations of groups (dispatch chain pairs) on each node: what the kernel validates
    /// besides the group chains at each rule change.
    combinations: (usize, usize),
    /// Ports using `g00` on each node, and rules naming it as remote group.
    g00_ports: (usize, usize),
    g00_named_as_remote: usize,
    scratch: Vec<Timed>,
    changes: Vec<Change>,
    /// p50 of every change under 10 ms on the large node.
    goal_change_under_10ms_met: bool,
    throughput: Option<iperf::Throughput>,
    goal_throughput_ratio_met: Option<bool>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if !nix::unistd::geteuid().is_root() {
        bail!("sg-bench needs root (network namespaces, nft)");
    }
    let shape = |ports| Shape {
        ports,
        bridges: args.bridges,
        groups: args.groups,
        rules: args.rules,
        combinations: args.combinations,
    };
    let (small_shape, large_shape) = (shape(args.small_ports), shape(args.ports));
    small_shape.check()?;
    large_shape.check()?;
    eprintln!(
        "making the nodes: {} and {} ports",
        args.small_ports, args.ports
    );
    let mut nodes = [Bed::new(&small_shape)?, Bed::new(&large_shape)?];
    let scratch = nodes
        .iter_mut()
        .map(|n| scratch(n, args.scratch_runs))
        .collect::<Result<Vec<_>>>()?;
    for s in &scratch {
        eprintln!(
            "from scratch, {} ports: p50 {:.1} ms, max {:.1} ms ({} lines)",
            s.ports, s.total.p50_ms, s.total.max_ms, s.script_lines
        );
    }
    let changes = changes(&mut nodes, args.repeat)?;
    let g00 = group_name(0);
    let usage = |n: &Bed| workload::usage(&n.snap, &n.ports, &g00);
    let results = Results {
        ports: args.ports,
        small_ports: args.small_ports,
        bridges: args.bridges,
        groups: args.groups,
        rules_per_group: args.rules,
        rules_loaded: nodes[1].rules_loaded(),
        combinations: (nodes[0].combinations(), nodes[1].combinations()),
        g00_ports: (usage(&nodes[0]).0, usage(&nodes[1]).0),
        g00_named_as_remote: usage(&nodes[1]).1,
        scratch,
        goal_change_under_10ms_met: changes.iter().all(|c| c.large.total.p50_ms < 10.0),
        changes,
        throughput: None,
        goal_throughput_ratio_met: None,
    };
    let results = throughput(results, &mut nodes[1], &args)?;
    let text = serde_json::to_string_pretty(&results)?;
    println!("{text}");
    std::fs::create_dir_all(&args.out_dir)?;
    let out = args.out_dir.join(format!("sg-{}.json", utc_stamp()));
    std::fs::write(&out, &text)?;
    eprintln!("written to {}", out.display());
    Ok(())
}

/// `runs` loads of the whole table into an empty namespace.
fn scratch(node: &mut Bed, runs: usize) -> Result<Timed> {
    let mut samples = Vec::new();
    for _ in 0..runs.max(1) {
        node.clear()?;
        samples.push(node.apply()?);
    }
    Ok(Timed::of(node.ports.len(), &samples))
}

/// The changes, `repeat` times each, alternating between the nodes (which goes first swaps).
fn changes(nodes: &mut [Bed; 2], repeat: usize) -> Result<Vec<Change>> {
    const KINDS: [&str; 4] = ["rule added", "rule removed", "member joined", "member left"];
    let mut samples: [[Vec<Sample>; 4]; 2] = Default::default();
    for i in 0..repeat {
        for n in [i % 2, 1 - i % 2] {
            let node = &mut nodes[n];
            for (k, kind) in KINDS.iter().enumerate() {
                let g00 = &mut node.snap.groups[0];
                match k {
                    0 => g00.rules.push(extra_rule(i)),
                    1 => {
                        g00.rules.pop();
                    }
                    2 => g00.members.push(extra_member(i)),
                    _ => {
                        g00.members.pop();
                    }
                }
                let s = node.apply()?;
                if s.lines == 0 {
                    bail!("{kind}: the apply changed nothing");
                }
                samples[n][k].push(s);
            }
        }
    }
    let mut out = Vec::new();
    for (k, kind) in KINDS.iter().enumerate() {
        let small = Timed::of(nodes[0].ports.len(), &samples[0][k]);
        let large = Timed::of(nodes[1].ports.len(), &samples[1][k]);
        eprintln!(
            "{kind}: {} ports p50 {:.2} ms (max {:.2}), {} ports p50 {:.2} ms (max {:.2})",
            small.ports,
            small.total.p50_ms,
            small.total.max_ms,
            large.ports,
            large.total.p50_ms,
            large.total.max_ms
        );
        out.push(Change {
            kind,
            ratio_p50: ratio(large.total.p50_ms, small.total.p50_ms),
            small,
            large,
        });
    }
    Ok(out)
}

fn throughput(mut results: Results, node: &mut Bed, args: &Args) -> Result<Results> {
    if args.iperf_secs == 0 || args.iperf_pairs == 0 {
        return Ok(results);
    }
    eprintln!(
        "iperf3, {} pairs of {} s ({} rules loaded)",
        args.iperf_pairs,
        args.iperf_secs,
        node.rules_loaded()
    );
    let t = iperf::measure(node, args.iperf_secs, args.iperf_pairs)?;
    eprintln!(
        "throughput with rules / without: {:.3} (goal ≥ 0.9)",
        t.ratio
    );
    results.goal_throughput_ratio_met = Some(t.ratio >= 0.9);
    results.throughput = Some(t);
    Ok(results)
}
