//! One simulated compute node: a scratch network namespace with the bridges and the workload
//! ports, a state directory, and the node's applier, driven exactly as `ciao-node run` drives
//! it (`secgroups::Enforcer`: persist the snapshot and keep it in memory, then apply: the
//! changed member sets alone, or compile and apply the difference).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use netcore::secgroups::{self, Applied, Enforcer, Model, Port, TenantGroups};
use testkit::Netns;
use uuid::Uuid;

use crate::workload::{self, bridge_name, Shape};

/// One timed apply: the whole of it, the snapshot's durable write, and the rest (compile or
/// member sets, diff, netlink batch or `nft -f`).
pub struct Sample {
    pub total: Duration,
    pub persist: Duration,
    pub applier: Duration,
    /// Lines of the nft script it loaded.
    pub lines: usize,
    /// True if it went as one netlink batch (elements, or rules: no `nft`).
    pub netlink: bool,
}

pub struct Bed {
    pub ns: Netns,
    /// The state directory the snapshots are persisted in (removed on drop).
    state: tempfile::TempDir,
    enforcer: Enforcer,
    pub ports: Vec<Port>,
    pub snap: TenantGroups,
    loaded: Model,
}

impl Bed {
    /// The namespace with `shape.bridges` bridges and `shape.ports` veth pairs (host end on
    /// its bridge), and the tenant's snapshot; nothing loaded yet.
    pub fn new(shape: &Shape) -> Result<Bed> {
        let ns = Netns::try_new("sgb")?;
        ip_batch(&ns.name, &links(shape))?;
        let tenant = Uuid::new_v4();
        let ports = workload::ports(tenant, shape);
        let snap = workload::snapshot(tenant, shape, &ports);
        let state = tempfile::tempdir()?;
        Ok(Bed {
            ns,
            enforcer: Enforcer::new(state.path()),
            state,
            ports,
            snap,
            loaded: Model::default(),
        })
    }

    /// Applies the current ports and snapshot as the node daemon does after a
    /// SecurityGroupsUpdate: persist (and keep in memory), compile, apply the difference.
    pub fn apply(&mut self) -> Result<Sample> {
        self.snap.generation += 1;
        let Bed {
            ns,
            enforcer,
            ports,
            snap,
            loaded,
            ..
        } = self;
        let by_tenant = BTreeMap::from([(snap.tenant, ports.clone())]);
        let snap = snap.clone();
        in_ns(&ns.path(), || {
            let start = Instant::now();
            enforcer.record(snap)?;
            let persist = start.elapsed();
            let how = enforcer.apply(&by_tenant)?;
            let total = start.elapsed();
            let applier = total - persist;
            let model = enforcer.applier().loaded().cloned().unwrap_or_default();
            // What the applier loaded: the whole table after a clear, else the difference.
            let script = if *loaded == Model::default() {
                secgroups::rebuild(&model)
            } else {
                secgroups::diff(loaded, &model)
            };
            let lines = script.lines().count();
            *loaded = model;
            Ok(Sample {
                total,
                persist,
                applier,
                lines,
                netlink: matches!(how, Applied::Elements | Applied::Rules),
            })
        })
    }

    /// Removes the table (untimed) and forgets what was loaded: the next apply is from scratch.
    pub fn clear(&mut self) -> Result<()> {
        in_ns(&self.ns.path(), || {
            let out = Command::new("nft")
                .args(["delete", "table", "inet", secgroups::TABLE])
                .output()?;
            let err = String::from_utf8_lossy(&out.stderr);
            if !out.status.success() && !err.contains("No such file") {
                bail!("nft delete table: {}", err.trim());
            }
            Ok(())
        })?;
        self.enforcer = Enforcer::new(self.state.path());
        self.loaded = Model::default();
        Ok(())
    }

    /// Rules in the table's regular chains (group and dispatch chains).
    pub fn rules_loaded(&self) -> usize {
        self.loaded.chains.values().map(Vec::len).sum()
    }

    /// Dispatch chain pairs: one per combination of groups the ports use.
    pub fn combinations(&self) -> usize {
        self.loaded
            .ingress
            .values()
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    }
}

/// Bridges up, each port's host end on its bridge (the peer stays, down, beside it).
fn links(shape: &Shape) -> String {
    let mut out = String::new();
    for b in 0..shape.bridges {
        let br = bridge_name(b);
        out.push_str(&format!("link add {br} type bridge\nlink set {br} up\n"));
    }
    for i in 0..shape.ports {
        let br = bridge_name(i % shape.bridges);
        out.push_str(&format!(
            "link add sp{i} type veth peer name sq{i}\nlink set sp{i} master {br}\n"
        ));
    }
    out
}

/// `ip -n <ns> -batch -` with `commands` on stdin.
pub fn ip_batch(ns: &str, commands: &str) -> Result<()> {
    let mut child = Command::new("ip")
        .args(["-n", ns, "-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawn ip -batch")?;
    child
        .stdin
        .take()
        .context("ip's stdin")?
        .write_all(commands.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("ip -batch: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Runs `f` on a thread that entered the namespace at `ns` (its `nft` children inherit it).
pub fn in_ns<T: Send>(ns: &Path, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    let fd = std::fs::File::open(ns).with_context(|| format!("open {}", ns.display()))?;
    std::thread::scope(|s| {
        s.spawn(move || {
            nix::sched::setns(&fd, nix::sched::CloneFlags::CLONE_NEWNET).context("setns")?;
            f()
        })
        .join()
        .map_err(|_| anyhow!("the thread in {} panicked", ns.display()))?
    })
}
