//! The cluster's control plane in controller mode (issue 12): `ciao-controller` beside the
//! scheduler and `ciao-nn` on the network node, so that tenants' workload configs name no CNCI
//! and each tenant's CNCI appears with its first workload.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::{
    log_len, log_tail, node_run_args, running, spawn_in, wait_log, Cluster, Tenant, AGENT_TIMEOUT,
    SCHEDULER_ADDR, SERVER_NAME,
};
use crate::Proc;

/// The public pool the controller hands out: the addresses of [`PUBLIC_RANGE`] clear of the
/// network node's and the external host's.
pub const PUBLIC_POOL: &str = "203.0.113.9-203.0.113.14";

/// The string at `key` of a `ciao-net --json` answer (`""` if absent).
pub fn text(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or_default().to_string()
}

/// The SSH port `ciao-net ssh on|show` documents for `address` in its block of `subnet`: the
/// block's first port plus the address's offset in the subnet.
pub fn ssh_port(view: &Value, subnet: &str, address: &str) -> u16 {
    let block = view["blocks"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["subnet"] == subnet))
        .unwrap_or_else(|| panic!("no SSH block of {subnet} in {view}"));
    let first = block["first_port"].as_u64().expect("first_port");
    let parse = |ip: &str| -> std::net::Ipv4Addr { ip.parse().expect("an IPv4 address") };
    let net = parse(subnet.split('/').next().unwrap_or(subnet));
    let offset = u32::from(parse(address)) - u32::from(net);
    u16::try_from(first + u64::from(offset)).expect("port")
}

/// The controller and the network node agent, with their state directories.
pub(super) struct ControlPlane {
    state: tempfile::TempDir,
    controller: Option<Proc>,
    nn: Option<Proc>,
    /// The second network node, once [`Cluster::start_nn2`] made it.
    pub(super) nn2: Option<super::nn2::SecondNn>,
}

impl ControlPlane {
    fn controller_dir(&self) -> PathBuf {
        self.state.path().join("controller")
    }

    fn nn_dir(&self) -> PathBuf {
        self.state.path().join("nn")
    }

    pub(super) fn nn2_dir(&self) -> PathBuf {
        self.state.path().join("nn2")
    }
}

use crate::bins::workspace_tool as tool;

impl Cluster {
    /// The cluster in controller mode: scheduler, `ciao-controller`, `ciao-nn` on the network
    /// node, and both compute nodes; no CNCI yet.
    pub fn with_controller() -> Result<Cluster> {
        let mut cluster = Cluster::new()?;
        cluster.enable_controller()?;
        Ok(cluster)
    }

    /// Starts the control plane (`ciao-controller`, then `ciao-nn`) on this cluster.
    pub fn enable_controller(&mut self) -> Result<()> {
        self.control = Some(ControlPlane {
            state: tempfile::Builder::new()
                .prefix("ciao-control.")
                .tempdir()
                .context("control plane state dir")?,
            controller: None,
            nn: None,
            nn2: None,
        });
        self.start_controller()?;
        self.start_nn()
    }

    pub(super) fn control(&self) -> Result<&ControlPlane> {
        self.control
            .as_ref()
            .context("this cluster has no controller (Cluster::with_controller)")
    }

    pub(super) fn control_mut(&mut self) -> Result<&mut ControlPlane> {
        self.control
            .as_mut()
            .context("this cluster has no controller (Cluster::with_controller)")
    }

    /// The admin socket `ciao-net` talks to.
    pub fn admin_socket(&self) -> Result<PathBuf> {
        Ok(self.control()?.controller_dir().join("admin.sock"))
    }

    /// The network node agent's state directory.
    pub fn nn_state_dir(&self) -> Result<PathBuf> {
        Ok(self.control()?.nn_dir())
    }

    /// Starts (or restarts) `ciao-controller` in the underlay namespace with the same state,
    /// and waits until it is connected to the scheduler and its admin socket answers.
    pub fn start_controller(&mut self) -> Result<()> {
        self.kill_controller();
        let dir = self.control()?.controller_dir();
        std::fs::create_dir_all(&dir).context("controller state dir")?;
        let config = dir.join("controller.toml");
        let text = format!(
            "state_dir = {dir:?}\ndefault_tunnel_kind = \"vxlan\"\npublic_pools = [{PUBLIC_POOL:?}]\n\n\
             [scheduler]\naddress = {SCHEDULER_ADDR:?}\nserver_name = {SERVER_NAME:?}\n\
             cert = {cert:?}\nca = {ca:?}\n",
            dir = dir.display().to_string(),
            cert = self.certs.controller().display().to_string(),
            ca = self.certs.ca().display().to_string(),
        );
        std::fs::write(&config, text).context("write controller.toml")?;
        let log = self.log("controller");
        let from = log_len(&log);
        let config = config.display().to_string();
        let mut proc = spawn_in(
            &self.underlay.path(),
            &tool("ciao-controller"),
            &["--config", &config],
            &log,
        )?;
        let waited = wait_log(
            &log,
            from,
            "connected to the scheduler",
            &mut proc,
            AGENT_TIMEOUT,
        );
        self.control_mut()?.controller = Some(proc);
        waited.context("ciao-controller did not connect")?;
        let deadline = Instant::now() + AGENT_TIMEOUT;
        while !self.ciao_net(&["--json", "nodes"]).status.success() {
            if Instant::now() > deadline {
                bail!("ciao-controller's admin socket does not answer");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Kills `ciao-controller` (SIGKILL, by PID); its store stays.
    pub fn kill_controller(&mut self) {
        if let Some(c) = self.control.as_mut() {
            c.controller = None;
        }
    }

    /// True while `ciao-controller` runs.
    pub fn controller_running(&mut self) -> bool {
        self.control
            .as_mut()
            .is_some_and(|c| running(&mut c.controller))
    }

    /// Starts (or restarts) `ciao-nn` in the network node's namespace with the same state, and
    /// waits until the controller lists it as a connected network node.
    pub fn start_nn(&mut self) -> Result<()> {
        self.kill_nn();
        let dir = self.control()?.nn_dir().display().to_string();
        let cert = self.certs.network_node().display().to_string();
        let ca = self.certs.ca().display().to_string();
        let args = node_run_args(&dir, &cert, &ca);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let log = self.log("nn");
        let proc = spawn_in(&self.nn.path(), &tool("ciao-nn"), &args, &log)?;
        self.control_mut()?.nn = Some(proc);
        let deadline = Instant::now() + AGENT_TIMEOUT;
        loop {
            let nodes = self.ciao_net_json(&["nodes"]).unwrap_or(Value::Null);
            if network_node_connected(&nodes) {
                return Ok(());
            }
            if !self.nn_running() || Instant::now() > deadline {
                bail!(
                    "ciao-nn is not a connected network node (running: {}); nodes: {nodes}; log:\n{}",
                    self.nn_running(),
                    log_tail(&log)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills `ciao-nn` (SIGKILL, by PID); its CNCIs' kernel state stays.
    pub fn kill_nn(&mut self) {
        if let Some(c) = self.control.as_mut() {
            c.nn = None;
        }
    }

    /// True while `ciao-nn` runs.
    pub fn nn_running(&mut self) -> bool {
        self.control.as_mut().is_some_and(|c| running(&mut c.nn))
    }

    /// The PIDs of the controller and the network node agent, while they run.
    pub fn control_pids(&self) -> (Option<u32>, Option<u32>) {
        match &self.control {
            Some(c) => (
                c.controller.as_ref().map(|p| p.0.id()),
                c.nn.as_ref().map(|p| p.0.id()),
            ),
            None => (None, None),
        }
    }

    /// A tenant whose workload configs name no CNCI: the controller provisions it with the
    /// tenant's first workload. Its CNCI is filled in by [`Cluster::wait_cnci_ready`].
    pub fn controlled_tenant(&mut self, tenant: &str) -> Tenant {
        Tenant {
            tenant: tenant.to_lowercase(),
            cnci: String::new(),
            netns: String::new(),
            state_dir: PathBuf::new(),
            agent_args: Vec::new(),
            controlled: true,
        }
    }

    /// Runs `ciao-net --socket <admin socket> <args>` (no namespace needed: a unix socket).
    pub fn ciao_net(&self, args: &[&str]) -> std::process::Output {
        let socket = match self.admin_socket() {
            Ok(s) => s,
            Err(e) => {
                return std::process::Output {
                    status: std::os::unix::process::ExitStatusExt::from_raw(2 << 8),
                    stdout: Vec::new(),
                    stderr: e.to_string().into_bytes(),
                }
            }
        };
        Command::new(tool("ciao-net"))
            .arg("--socket")
            .arg(socket)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| std::process::Output {
                status: std::os::unix::process::ExitStatusExt::from_raw(127 << 8),
                stdout: Vec::new(),
                stderr: format!("spawn ciao-net: {e}").into_bytes(),
            })
    }

    /// `ciao-net --json <args>`, parsed.
    pub fn ciao_net_json(&self, args: &[&str]) -> Result<Value> {
        let mut full = vec!["--json"];
        full.extend_from_slice(args);
        let out = self.ciao_net(&full);
        if !out.status.success() {
            bail!(
                "ciao-net {}: {}{}",
                full.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        serde_json::from_slice(&out.stdout).context("ciao-net printed no JSON")
    }

    /// [`Cluster::ciao_net_json`] for a call that must succeed: panics with the command and
    /// what it printed otherwise.
    pub fn ciao_net_ok(&self, args: &[&str]) -> Value {
        self.ciao_net_json(args)
            .unwrap_or_else(|e| panic!("ciao-net {args:?}: {e:#}"))
    }

    /// `ciao-net rule add --tenant TENANT GROUP EXTRA...`, which must succeed; the new rule.
    pub fn add_rule(&self, tenant: &str, group: &str, extra: &[&str]) -> Value {
        let mut args = vec!["rule", "add", "--tenant", tenant, group];
        args.extend_from_slice(extra);
        self.ciao_net_ok(&args)
    }

    /// Waits until the controller says the tenant's CNCI is ready, then fills in its UUID,
    /// tenant namespace and state directory on the network node; returns `ciao-net tenant`.
    pub fn wait_cnci_ready(&self, t: &mut Tenant) -> Result<Value> {
        let deadline = Instant::now() + AGENT_TIMEOUT;
        loop {
            let view = self.ciao_net_json(&["tenant", &t.tenant]);
            if let Ok(v) = &view {
                let cnci = &v["cnci"];
                if cnci["state"] == "ready" {
                    let uuid = cnci["uuid"].as_str().unwrap_or_default().to_string();
                    t.state_dir = self.cnci_state_dir(&uuid)?;
                    let record: Value = serde_json::from_slice(
                        &std::fs::read(t.state_dir.join("agent.json"))
                            .context("the CNCI's agent.json on the network node")?,
                    )?;
                    t.netns = record["netns"].as_str().unwrap_or_default().to_string();
                    t.cnci = uuid;
                    return Ok(v.clone());
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "tenant {}: no ready CNCI within {AGENT_TIMEOUT:?}; last view: {view:?}; \
                     nn log:\n{}",
                    t.tenant,
                    log_tail(&self.log("nn"))
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The state directory of CNCI `uuid` on whichever network node records it (the first
    /// node's when neither does yet).
    fn cnci_state_dir(&self, uuid: &str) -> Result<PathBuf> {
        let control = self.control()?;
        let on = |node: PathBuf| node.join("cncis").join(uuid);
        let second = on(control.nn2_dir());
        if second.join("agent.json").is_file() {
            return Ok(second);
        }
        Ok(on(control.nn_dir()))
    }

    /// The namespace of the network node whose state directory holds `state_dir` (a CNCI's):
    /// where its `ciao-cnci-agent` tools must run.
    pub(super) fn network_node_ns(&self, state_dir: &Path) -> PathBuf {
        let second = self.control.as_ref().and_then(|c| {
            let ns = c.nn2.as_ref()?;
            state_dir.starts_with(c.nn2_dir()).then(|| ns.ns.path())
        });
        second.unwrap_or_else(|| self.nn.path())
    }

    /// Stops the control plane and takes down every CNCI each `ciao-nn` built (for [`Drop`]).
    pub(super) fn stop_control(&mut self) {
        let Some(control) = self.control.as_mut() else {
            return;
        };
        control.nn = None;
        if let Some(nn2) = control.nn2.as_mut() {
            nn2.kill();
        }
        control.controller = None;
        let mut nodes = vec![(control.nn_dir(), self.nn.path())];
        if let Some(nn2) = &control.nn2 {
            nodes.push((control.nn2_dir(), nn2.ns.path()));
        }
        for (dir, ns) in nodes {
            destroy_cncis(&dir, &ns);
        }
    }
}

/// Destroys every CNCI recorded under a `ciao-nn` state directory, from inside its node's
/// namespace `ns`, and deletes their tenant namespaces.
fn destroy_cncis(node_dir: &Path, ns: &Path) {
    let Ok(entries) = std::fs::read_dir(node_dir.join("cncis")) else {
        return;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let netns = std::fs::read(dir.join("agent.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .and_then(|v| v["netns"].as_str().map(str::to_string));
        let _ = Command::new("nsenter")
            .arg(format!("--net={}", ns.display()))
            .arg(crate::cnci_agent_tool())
            .arg("--state-dir")
            .arg(&dir)
            .arg("destroy")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Some(ns) = netns {
            let _ = Command::new("ip")
                .args(["netns", "delete", &ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Whether `ciao-net --json nodes` lists a connected network node.
fn network_node_connected(nodes: &Value) -> bool {
    nodes["network_nodes"]
        .as_array()
        .is_some_and(|list| list.iter().any(|n| n["state"] == "connected"))
}
