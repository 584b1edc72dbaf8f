//! A second network node for the cluster in controller mode (issue 12: "a second network node
//! joins"): its own namespace on the underlay bridge, its own underlay address and external
//! device, and a `ciao-nn` started later with only its certificate and the scheduler address
//! (plus what `ciao-nn run` needs to know about the machine itself). The controller learns it
//! from the scheduler and its NodeReport; nothing else is told about it.
//!
//! ```text
//!  underlay ns: bridge ulbr
//!     `-- nn2 ns: ul0 10.250.0.4/24, ext0 198.51.100.1/24 (veth to ext's eth1 198.51.100.100)
//! ```

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::{log_tail, nn_run_args, running, spawn_in, Cluster, AGENT_TIMEOUT};
use crate::bins::workspace_tool as tool;
use crate::{Netns, Proc};

/// The second network node's underlay address.
pub const NN2_IP: &str = "10.250.0.4";
/// Its address toward the outside world (its `ext0`).
pub const NN2_EXT_IP: &str = "198.51.100.1";
/// The external host's address on the second node's side.
pub const EXT2_IP: &str = "198.51.100.100";
/// Its CNCIs' `--public-range`.
pub const NN2_PUBLIC_RANGE: &str = "198.51.100.8/29";

/// The second network node: its namespace (removed with it) and its `ciao-nn`.
pub(super) struct SecondNn {
    /// Declared first: the process is killed before its namespace goes.
    proc: Option<Proc>,
    pub(super) ns: Netns,
}

impl SecondNn {
    /// The namespace, cabled to the underlay bridge and to the external namespace.
    fn build(underlay: &Netns, ext: &Netns) -> SecondNn {
        let ns = Netns::new("nn2");
        ns.exec(&[
            "ip",
            "link",
            "add",
            "ul0",
            "mtu",
            "1500",
            "type",
            "veth",
            "peer",
            "name",
            "nn2",
            "mtu",
            "1500",
            "netns",
            &underlay.name,
        ]);
        ns.exec(&["ip", "addr", "add", &format!("{NN2_IP}/24"), "dev", "ul0"]);
        ns.exec(&["ip", "link", "set", "ul0", "up"]);
        underlay.exec(&["ip", "link", "set", "nn2", "master", "ulbr", "up"]);
        ns.exec(&["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
        ns.exec(&[
            "ip", "link", "add", "ext0", "type", "veth", "peer", "name", "eth1", "netns", &ext.name,
        ]);
        ns.exec(&[
            "ip",
            "addr",
            "add",
            &format!("{NN2_EXT_IP}/24"),
            "dev",
            "ext0",
        ]);
        ns.exec(&["ip", "link", "set", "ext0", "up"]);
        ext.exec(&["ip", "addr", "add", &format!("{EXT2_IP}/24"), "dev", "eth1"]);
        ext.exec(&["ip", "link", "set", "eth1", "up"]);
        SecondNn { proc: None, ns }
    }

    /// Kills its `ciao-nn` (SIGKILL, by PID).
    pub(super) fn kill(&mut self) {
        self.proc = None;
    }
}

impl Cluster {
    /// The second network node's state directory.
    pub fn nn2_state_dir(&self) -> Result<PathBuf> {
        Ok(self.control()?.nn2_dir())
    }

    /// The second network node's namespace, once [`Cluster::start_nn2`] made it.
    pub fn nn2_ns(&self) -> Option<&Netns> {
        self.control
            .as_ref()
            .and_then(|c| c.nn2.as_ref())
            .map(|n| &n.ns)
    }

    /// Starts (or restarts) `ciao-nn` on a second network node (its namespace made on the first
    /// call, kept until the cluster goes), and waits until the controller lists two connected
    /// network nodes. Returns the new node's UUID (from its `node.json`).
    pub fn start_nn2(&mut self) -> Result<String> {
        self.kill_nn2();
        if self.control()?.nn2.is_none() {
            let built = SecondNn::build(&self.underlay, &self.ext);
            self.control_mut()?.nn2 = Some(built);
        }
        let dir = self.control()?.nn2_dir().display().to_string();
        let cert = self.certs.network_node2().display().to_string();
        let ca = self.certs.ca().display().to_string();
        let args = nn_run_args(&dir, &cert, &ca, NN2_IP, NN2_PUBLIC_RANGE);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let log = self.log("nn2");
        let ns = self
            .nn2_ns()
            .context("the second network node's namespace")?
            .path();
        let proc = spawn_in(&ns, &tool("ciao-nn"), &args, &log)?;
        if let Some(nn2) = self.control_mut()?.nn2.as_mut() {
            nn2.proc = Some(proc);
        }
        let deadline = Instant::now() + AGENT_TIMEOUT;
        loop {
            let uuid = node_uuid(&PathBuf::from(&dir));
            let nodes = self.ciao_net_json(&["nodes"]).unwrap_or(Value::Null);
            if let Some(uuid) = uuid.filter(|u| connected(&nodes, u)) {
                return Ok(uuid);
            }
            if !self.nn2_running() || Instant::now() > deadline {
                bail!(
                    "the second ciao-nn is not a connected network node (running: {}); nodes: \
                     {nodes}; log:\n{}",
                    self.nn2_running(),
                    log_tail(&log)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the second `ciao-nn` (SIGKILL, by PID); its namespace and CNCIs stay.
    pub fn kill_nn2(&mut self) {
        if let Some(nn2) = self.control.as_mut().and_then(|c| c.nn2.as_mut()) {
            nn2.kill();
        }
    }

    /// True while the second `ciao-nn` runs.
    pub fn nn2_running(&mut self) -> bool {
        self.control
            .as_mut()
            .and_then(|c| c.nn2.as_mut())
            .is_some_and(|n| running(&mut n.proc))
    }
}

/// The node UUID `ciao-nn` keeps in `<state>/node.json` (`None` before its first write).
fn node_uuid(state: &std::path::Path) -> Option<String> {
    let bytes = std::fs::read(state.join("node.json")).ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    v["uuid"].as_str().map(str::to_lowercase)
}

/// Whether `ciao-net --json nodes` lists network node `uuid` as connected.
fn connected(nodes: &Value, uuid: &str) -> bool {
    nodes["network_nodes"].as_array().is_some_and(|list| {
        list.iter()
            .any(|n| n["uuid"] == uuid && n["state"] == "connected")
    })
}
