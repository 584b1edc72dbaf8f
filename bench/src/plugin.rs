//! Running a CNI plugin exactly as a runtime does (fork/exec, CNI_* environment, configuration
//! on stdin, stdout/stderr piped) inside a node namespace, and timing only that.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sched::{setns, CloneFlags};
use serde_json::Value;

/// Moves the calling thread between the bench's own network namespace and a node's.
///
/// The bench enters the node namespace itself (outside the timed region) and then spawns the
/// plugin directly, so the child inherits the namespace and no `ip netns exec` (an extra exec
/// plus its own setns and mount work) is charged to either plugin.
pub struct NsSwitch {
    home: File,
}

impl NsSwitch {
    /// Remembers the namespace the calling thread is in now.
    pub fn new() -> Result<Self> {
        let home = File::open("/proc/thread-self/ns/net").context("open own network namespace")?;
        Ok(Self { home })
    }

    fn enter(&self, ns: &File) -> Result<()> {
        setns(ns, CloneFlags::CLONE_NEWNET).context("setns into the node namespace")
    }

    fn leave(&self) -> Result<()> {
        setns(&self.home, CloneFlags::CLONE_NEWNET).context("setns back to the bench's namespace")
    }
}

/// One plugin on one simulated node, with the configuration it is invoked with.
pub struct Plugin {
    pub label: &'static str,
    path: PathBuf,
    node: File,
    conf: Vec<u8>,
}

/// The `CNI_PATH` both plugins get (the reference `bridge` finds `host-local` through it).
const CNI_PATH: &str = "/usr/lib/cni:/opt/cni/bin";

impl Plugin {
    /// `node_ns` is the node namespace's bind mount (e.g. `/run/netns/cn-…`).
    pub fn new(label: &'static str, path: &Path, node_ns: &Path, conf: &Value) -> Result<Self> {
        let node = File::open(node_ns).with_context(|| format!("open {}", node_ns.display()))?;
        Ok(Self {
            label,
            path: path.to_path_buf(),
            node,
            conf: serde_json::to_vec(conf).context("serialise network configuration")?,
        })
    }

    /// Runs one CNI command and returns its wall time (spawn to exit, output drained).
    pub fn call(
        &self,
        sw: &NsSwitch,
        cmd: &str,
        container: &str,
        netns: &Path,
        ifname: &str,
    ) -> Result<Duration> {
        sw.enter(&self.node)?;
        let outcome = self.spawn_and_wait(cmd, container, netns, ifname);
        // Always go home, even if the call failed, so setup and clean-up run where they should.
        sw.leave()?;
        let (elapsed, out) = outcome?;
        if !out.status.success() {
            bail!(
                "{} {cmd} {container} failed ({}): {}{}",
                self.label,
                out.status,
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(elapsed)
    }

    fn spawn_and_wait(
        &self,
        cmd: &str,
        container: &str,
        netns: &Path,
        ifname: &str,
    ) -> Result<(Duration, std::process::Output)> {
        let mut command = Command::new(&self.path);
        command
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("CNI_COMMAND", cmd)
            .env("CNI_CONTAINERID", container)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", ifname)
            .env("CNI_PATH", CNI_PATH)
            .env("CNI_ARGS", "IgnoreUnknown=1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let start = Instant::now();
        let mut child = command
            .spawn()
            .with_context(|| format!("spawn {}", self.path.display()))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A plugin that exits before reading everything closes the pipe; its exit status
            // tells what went wrong, so a write error here is not the interesting one.
            let _ = stdin.write_all(&self.conf);
        }
        let out = child
            .wait_with_output()
            .with_context(|| format!("wait for {}", self.path.display()))?;
        Ok((start.elapsed(), out))
    }
}
