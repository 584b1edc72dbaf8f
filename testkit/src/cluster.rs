//! A whole local cluster in network namespaces, with the real binaries:
//!
//! ```text
//!  underlay ns: bridge ulbr 10.250.0.1/24, ciao-scheduler on 10.250.0.1:8888
//!     |-- nn   ns: ul0 10.250.0.3/24, ext0 203.0.113.1/24 (veth to ext), one ciao-cnci-agent
//!     |            per tenant, each with its tenant namespace
//!     |-- cn1  ns: ul0 10.250.0.11/24, `ciao-node run`, containers attached by the CNI plugin
//!     `-- cn2  ns: ul0 10.250.0.12/24, `ciao-node run`, containers attached by the CNI plugin
//!  ext ns: eth0 203.0.113.100/24, "the outside world"
//! ```
//!
//! Long-running processes (scheduler, node daemons, agents) are started with
//! `nsenter --net=/run/netns/<ns>` (not `ip netns exec`, whose private mount namespace would hide
//! the tenant namespaces an agent creates), in their own process group (a Ctrl-C on the terminal
//! reaches only the program that owns the cluster), with their output in log files. Everything is
//! killed by PID and every namespace removed when the [`Cluster`] is dropped, also on panic.

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

mod auto;
mod control;
mod nn2;
pub use control::{ssh_port, text, PUBLIC_POOL};
pub use nn2::{EXT2_IP, NN2_EXT_IP, NN2_IP, NN2_PUBLIC_RANGE};

use crate::{
    ciao_certificates, cnci_agent_tool, cni_call, json, node_tool, plugin, scheduler_tool, unique,
    CniOutput, ComputeNode, Netns, Proc,
};

/// The scheduler's address on the underlay.
pub const SCHEDULER_IP: &str = "10.250.0.1";
pub const SCHEDULER_ADDR: &str = "10.250.0.1:8888";
/// The network node's underlay address: every CNCI's `concentrator_ip`.
pub const NN_IP: &str = "10.250.0.3";
/// The network node's address toward the outside world (`ext0`).
pub const NN_EXT_IP: &str = "203.0.113.1";
/// The external host.
pub const EXT_IP: &str = "203.0.113.100";
/// Every CNCI's `--public-range`: 203.0.113.9 to .14 are assignable public IPs.
pub const PUBLIC_RANGE: &str = "203.0.113.8/29";
/// Name the scheduler's certificate is checked against (a SAN of the anchor).
pub const SERVER_NAME: &str = "localhost";

/// How long an agent may take to report itself connected, or its hub to be programmed.
/// A deadline, not a wait: generous, because an agent restarting with hundreds of subnets
/// reconciles them first, and every netlink request shares the kernel's global rtnl lock with
/// whatever else a busy machine is doing.
pub const AGENT_TIMEOUT: Duration = Duration::from_secs(60);

/// One of the two compute nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cn {
    Cn1,
    Cn2,
}

impl Cn {
    pub const ALL: [Cn; 2] = [Cn::Cn1, Cn::Cn2];

    /// The node's underlay address.
    pub fn ip(self) -> &'static str {
        match self {
            Cn::Cn1 => "10.250.0.11",
            Cn::Cn2 => "10.250.0.12",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Cn::Cn1 => "cn1",
            Cn::Cn2 => "cn2",
        }
    }

    fn index(self) -> usize {
        match self {
            Cn::Cn1 => 0,
            Cn::Cn2 => 1,
        }
    }
}

/// A tenant of the cluster and its CNCI (cheap to clone; the agent itself lives in the cluster).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tenant {
    /// The tenant UUID.
    pub tenant: String,
    /// The CNCI's SSNTP UUID (lower case).
    pub cnci: String,
    /// The tenant namespace the agent creates on the network node.
    pub netns: String,
    /// The agent's state directory.
    pub state_dir: PathBuf,
    /// Extra `run` flags for the agent (limits, public ranges), after the fixture's own.
    pub agent_args: Vec<String>,
    /// Its workload configs name no CNCI: the controller provisions one on `ciao-nn`
    /// ([`Cluster::controlled_tenant`]); `cnci`, `netns` and `state_dir` are known once it is
    /// ready ([`Cluster::wait_cnci_ready`]).
    pub controlled: bool,
}

struct Agent {
    tenant: Tenant,
    _state: tempfile::TempDir,
    log: PathBuf,
    proc: Option<Proc>,
}

/// The cluster's certificate set, made by `ciao_certificates`.
pub struct Certs {
    dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

const CERT_LEAVES: [(&str, &str); 6] = [
    ("agent", "cn1"),
    ("agent", "cn2"),
    ("cnciagent", "cnci"),
    ("controller", "ctl"),
    // The network node agent: its own session and each of its CNCIs' sessions.
    ("netagent,cnciagent", "nn"),
    // A second network node, which joins later (controller mode).
    ("netagent,cnciagent", "nn2"),
];

impl Certs {
    /// A new set in a temporary directory (removed on drop).
    pub fn fresh() -> Result<Certs> {
        let tmp = tempfile::tempdir().context("certificate dir")?;
        ciao_certificates(tmp.path(), &CERT_LEAVES);
        Ok(Certs {
            dir: tmp.path().to_path_buf(),
            _tmp: Some(tmp),
        })
    }

    /// One set per checkout, made once under `target/test-certs/cluster` and reused: RSA key
    /// generation in a debug build takes seconds per key. Made in a temporary directory and
    /// renamed into place, so concurrent test processes never see half a set.
    pub fn cached() -> Result<Certs> {
        let base = crate::workspace_root().join("target/test-certs");
        // Versioned: a set made before a leaf was added is never taken for complete.
        let dir = base.join("cluster-v3");
        let complete = |d: &Path| {
            d.join("CAcert-localhost.pem").is_file()
                && CERT_LEAVES
                    .iter()
                    .all(|(role, host)| d.join(leaf_file(role, host)).is_file())
        };
        if !complete(&dir) {
            std::fs::create_dir_all(&base).context("create target/test-certs")?;
            let tmp = tempfile::tempdir_in(&base).context("certificate dir")?;
            ciao_certificates(tmp.path(), &CERT_LEAVES);
            let made = tmp.keep();
            if std::fs::rename(&made, &dir).is_err() {
                // Another process won the race (or a stale partial set is in the way).
                let _ = std::fs::remove_dir_all(&made);
                if !complete(&dir) {
                    bail!("{} is incomplete; remove it", dir.display());
                }
            }
        }
        Ok(Certs { dir, _tmp: None })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// The CA every party trusts.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("CAcert-localhost.pem")
    }
    /// The scheduler's certificate (the anchor; SANs localhost and 127.0.0.1).
    pub fn scheduler(&self) -> PathBuf {
        self.dir.join("cert-scheduler-localhost.pem")
    }
    /// A compute node's certificate (role agent).
    pub fn agent(&self, cn: Cn) -> PathBuf {
        self.dir.join(format!("cert-agent-{}.pem", cn.name()))
    }
    /// The CNCI agents' certificate (role cnciagent).
    pub fn cnci(&self) -> PathBuf {
        self.dir.join("cert-cnciagent-cnci.pem")
    }
    /// A certificate of role controller, for tests that act as the controller.
    pub fn controller(&self) -> PathBuf {
        self.dir.join("cert-controller-ctl.pem")
    }
    /// The network node agent's certificate (roles netagent and cnciagent).
    pub fn network_node(&self) -> PathBuf {
        self.dir.join(leaf_file("netagent,cnciagent", "nn"))
    }
    /// The second network node's certificate (same roles, its own key).
    pub fn network_node2(&self) -> PathBuf {
        self.dir.join(leaf_file("netagent,cnciagent", "nn2"))
    }
}

/// The file `ciao-cert issue --role <roles> --host <host>` writes.
fn leaf_file(roles: &str, host: &str) -> String {
    format!("cert-{}-{host}.pem", roles.replace(',', "+"))
}

/// The whole cluster. See the module documentation for the topology.
pub struct Cluster {
    pub certs: Certs,
    /// Log files of every process the cluster started (`scheduler.log`, `cn1.log`, ...).
    pub logs: tempfile::TempDir,
    pub underlay: Netns,
    pub nn: Netns,
    pub ext: Netns,
    pub cn1: ComputeNode,
    pub cn2: ComputeNode,
    /// The scheduler's SSNTP UUID (kept across restarts).
    pub scheduler_uuid: String,
    scheduler: Option<Proc>,
    daemons: [Option<Proc>; 2],
    agents: Vec<Agent>,
    /// Controller mode: `ciao-controller` and `ciao-nn` ([`Cluster::with_controller`]).
    control: Option<control::ControlPlane>,
}

/// A container attached by the CNI plugin on one of the compute nodes.
pub struct Workload {
    /// The container's network namespace (deleted on drop, after the CNI DEL).
    pub ns: Netns,
    /// Its address (no prefix).
    pub ip: String,
    pub cn: Cn,
    pub tenant: Tenant,
    pub subnet: String,
    /// The network configuration it was attached with.
    pub conf: Value,
    /// The ADD result.
    pub result: Value,
    node_ns: String,
    removed: bool,
}

impl Workload {
    /// Detaches it (CNI DEL); the namespace stays until drop.
    pub fn remove(&mut self) -> CniOutput {
        self.removed = true;
        cni_call(
            &plugin(),
            Some(&self.node_ns),
            "DEL",
            &self.ns.name,
            &self.ns.path().display().to_string(),
            "eth0",
            &self.conf,
            &[],
        )
    }

    /// Runs a command in the container's namespace, panicking on failure.
    pub fn exec(&self, args: &[&str]) -> String {
        self.ns.exec(args)
    }

    /// True if `ping -c count` to `ip` gets every reply.
    pub fn ping(&self, ip: &str, count: u32) -> bool {
        self.ns.ping(ip, count)
    }

    /// Sets the TTL this container's replies start with (`net.ipv4.ip_default_ttl`): a
    /// signature that tells who answered a ping when two tenants use the same addresses.
    pub fn set_default_ttl(&self, ttl: u8) {
        self.ns.exec(&[
            "sysctl",
            "-q",
            "-w",
            &format!("net.ipv4.ip_default_ttl={ttl}"),
        ]);
    }
}

/// Pings `ip` from `w` (one echo with a 100 ms wait, again and again) until it answers:
/// the time from `since` to that answer, or `None` if none came before `timeout` (from now).
pub fn wait_reachable(
    w: &Workload,
    ip: &str,
    since: Instant,
    timeout: Duration,
) -> Option<Duration> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let answered = Command::new("ip")
            .args([
                "netns", "exec", &w.ns.name, "ping", "-n", "-q", "-c", "1", "-W", "0.1", ip,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if answered {
            return Some(since.elapsed());
        }
    }
    None
}

/// One `ping -c 1 -W <wait_secs>` from namespace `ns` to `ip`: the TTL of the reply, or `None`
/// without one.
pub fn ping_reply_ttl(ns: &str, ip: &str, wait_secs: u32) -> Option<u32> {
    let wait = wait_secs.to_string();
    let out = Command::new("ip")
        .args([
            "netns", "exec", ns, "ping", "-n", "-c", "1", "-W", &wait, ip,
        ])
        .stdin(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find_map(|w| w.strip_prefix("ttl=")?.parse().ok())
}

impl Drop for Workload {
    fn drop(&mut self) {
        if !self.removed {
            let _ = self.remove();
        }
    }
}

/// Starts `bin args...` inside namespace `ns` with `nsenter --net`, in its own process group,
/// stdout and stderr appended to `log`.
/// A new directory for the logs of a cluster's processes, removed on drop.
pub fn new_log_dir() -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("ciao-cluster-logs.")
        .tempdir()
        .context("log dir")
}

/// `--state-dir <dir> run` and the arguments `ciao-cnci-agent run` and `ciao-nn run` share
/// (their `NodeArgs`) in this cluster: the scheduler, the certificate, the network node's
/// underlay and its outside, with the public addresses: part of ext0's network, clear of the
/// network node's own address (203.0.113.1) and the external host's (EXT_IP).
fn node_run_args(state_dir: &str, cert: &str, ca: &str) -> Vec<String> {
    nn_run_args(state_dir, cert, ca, NN_IP, PUBLIC_RANGE)
}

/// [`node_run_args`] for a network node with underlay address `underlay_ip` and public
/// addresses `public_range` on its `ext0`.
fn nn_run_args(
    state_dir: &str,
    cert: &str,
    ca: &str,
    underlay_ip: &str,
    public_range: &str,
) -> Vec<String> {
    [
        "--state-dir",
        state_dir,
        "run",
        "--scheduler",
        SCHEDULER_ADDR,
        "--server-name",
        SERVER_NAME,
        "--cert",
        cert,
        "--ca",
        ca,
        "--underlay-ip",
        underlay_ip,
        "--external-dev",
        "ext0",
        "--public-range",
        public_range,
    ]
    .map(String::from)
    .to_vec()
}

fn spawn_in(ns: &Path, bin: &Path, args: &[&str], log: &Path) -> Result<Proc> {
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("open {}", log.display()))?;
    let err = out.try_clone().context("dup log")?;
    let child = Command::new("nsenter")
        .arg(format!("--net={}", ns.display()))
        .arg(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .with_context(|| format!("start {} in {}", bin.display(), ns.display()))?;
    Ok(Proc(child))
}

fn log_len(log: &Path) -> u64 {
    std::fs::metadata(log).map(|m| m.len()).unwrap_or(0)
}

/// The last lines of a log file, for error messages.
pub fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Waits until `log`, from byte `from` on, has a line containing `needle`; fails early if
/// `proc` exits.
fn wait_log(
    log: &Path,
    from: u64,
    needle: &str,
    proc: &mut Proc,
    timeout: Duration,
) -> Result<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let bytes = std::fs::read(log).unwrap_or_default();
        let start = (from as usize).min(bytes.len());
        let text = String::from_utf8_lossy(&bytes[start..]);
        if let Some(line) = text.lines().find(|l| l.contains(needle)) {
            return Ok(line.to_string());
        }
        if let Ok(Some(status)) = proc.0.try_wait() {
            bail!(
                "exited ({status}) before printing {needle:?}; log {}:\n{}",
                log.display(),
                log_tail(log)
            );
        }
        if Instant::now() > deadline {
            bail!(
                "no {needle:?} within {timeout:?}; log {}:\n{}",
                log.display(),
                log_tail(log)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn running(proc: &mut Option<Proc>) -> bool {
    proc.as_mut()
        .is_some_and(|p| matches!(p.0.try_wait(), Ok(None)))
}

impl Cluster {
    /// Builds the namespaces, starts the scheduler and both compute nodes' delivery daemons, with
    /// the checkout's cached certificate set ([`Certs::cached`]). No tenant yet: see
    /// [`Cluster::add_tenant`].
    pub fn new() -> Result<Cluster> {
        Self::with_certs(Certs::cached()?)
    }

    /// The same with a given certificate set (e.g. [`Certs::fresh`]).
    pub fn with_certs(certs: Certs) -> Result<Cluster> {
        Self::with_certs_and_logs(certs, new_log_dir()?)
    }

    /// The same with a given log directory: a caller that must keep the logs of a failed run
    /// (the `ciao-cluster` demo) passes one whose cleanup it disabled, and removes it itself.
    pub fn with_certs_and_logs(certs: Certs, logs: tempfile::TempDir) -> Result<Cluster> {
        let underlay = Netns::new("underlay");
        underlay.exec(&["ip", "link", "add", "ulbr", "type", "bridge"]);
        underlay.exec(&["ip", "addr", "add", "10.250.0.1/24", "dev", "ulbr"]);
        underlay.exec(&["ip", "link", "set", "ulbr", "up"]);

        let nn = Netns::new("nn");
        nn.exec(&[
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
            "nn",
            "mtu",
            "1500",
            "netns",
            &underlay.name,
        ]);
        nn.exec(&["ip", "addr", "add", &format!("{NN_IP}/24"), "dev", "ul0"]);
        nn.exec(&["ip", "link", "set", "ul0", "up"]);
        underlay.exec(&["ip", "link", "set", "nn", "master", "ulbr", "up"]);
        nn.exec(&["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);

        let ext = Netns::new("ext");
        nn.exec(&[
            "ip", "link", "add", "ext0", "type", "veth", "peer", "name", "eth0", "netns", &ext.name,
        ]);
        nn.exec(&[
            "ip",
            "addr",
            "add",
            &format!("{NN_EXT_IP}/24"),
            "dev",
            "ext0",
        ]);
        nn.exec(&["ip", "link", "set", "ext0", "up"]);
        ext.exec(&["ip", "addr", "add", &format!("{EXT_IP}/24"), "dev", "eth0"]);
        ext.exec(&["ip", "link", "set", "eth0", "up"]);
        // The outside world knows the way to the tenants' private ranges, so that "not reachable
        // from outside" is a real attempt (refused by the network node) and not a missing route.
        ext.exec(&["ip", "route", "add", "172.16.0.0/12", "via", NN_EXT_IP]);

        let cn1 = ComputeNode::on_bridge(&underlay, "ulbr", "cn1", Cn::Cn1.ip(), NN_IP);
        let cn2 = ComputeNode::on_bridge(&underlay, "ulbr", "cn2", Cn::Cn2.ip(), NN_IP);

        let mut cluster = Cluster {
            certs,
            logs,
            underlay,
            nn,
            ext,
            cn1,
            cn2,
            scheduler_uuid: uuid::Uuid::new_v4().to_string(),
            scheduler: None,
            daemons: [None, None],
            agents: Vec::new(),
            control: None,
        };
        cluster.restart_scheduler()?;
        for cn in Cn::ALL {
            cluster.start_daemon(cn)?;
        }
        Ok(cluster)
    }

    /// The compute node `cn`.
    pub fn cn(&self, cn: Cn) -> &ComputeNode {
        match cn {
            Cn::Cn1 => &self.cn1,
            Cn::Cn2 => &self.cn2,
        }
    }

    /// The log file of a process of the cluster: `scheduler`, `cn1`, `cn2`, or a CNCI UUID.
    pub fn log(&self, name: &str) -> PathBuf {
        self.logs.path().join(format!("{name}.log"))
    }

    /// Kills the scheduler (SIGKILL, by PID).
    pub fn kill_scheduler(&mut self) {
        self.scheduler = None;
    }

    /// (Re)starts the scheduler, with the same UUID and address, and waits for its banner.
    pub fn restart_scheduler(&mut self) -> Result<()> {
        self.kill_scheduler();
        let log = self.log("scheduler");
        let from = log_len(&log);
        let cert = self.certs.scheduler().display().to_string();
        let ca = self.certs.ca().display().to_string();
        let args = [
            "--listen",
            SCHEDULER_ADDR,
            "--cert",
            &cert,
            "--ca",
            &ca,
            "--uuid",
            &self.scheduler_uuid,
        ];
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut proc = spawn_in(
                &self.underlay.path(),
                &scheduler_tool("ciao-scheduler"),
                &args,
                &log,
            )?;
            match wait_log(
                &log,
                from,
                "listening on",
                &mut proc,
                Duration::from_secs(10),
            ) {
                Ok(_) => {
                    self.scheduler = Some(proc);
                    return Ok(());
                }
                // A restart right after a kill can meet the old socket for a moment.
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200))
                }
                Err(e) => return Err(e.context("ciao-scheduler did not start")),
            }
        }
    }

    /// True while the scheduler process runs.
    pub fn scheduler_running(&mut self) -> bool {
        running(&mut self.scheduler)
    }

    /// True while `cn`'s delivery daemon (`ciao-node run`) runs.
    pub fn daemon_running(&mut self, cn: Cn) -> bool {
        running(&mut self.daemons[cn.index()])
    }

    /// Kills `cn`'s delivery daemon.
    pub fn kill_daemon(&mut self, cn: Cn) {
        self.daemons[cn.index()] = None;
    }

    /// (Re)starts `cn`'s delivery daemon: `ciao-node --state-dir D run` in the node's namespace.
    pub fn start_daemon(&mut self, cn: Cn) -> Result<()> {
        self.kill_daemon(cn);
        let state = self.cn(cn).state.path().display().to_string();
        let cert = self.certs.agent(cn).display().to_string();
        let ca = self.certs.ca().display().to_string();
        let args = [
            "--state-dir",
            &state,
            "run",
            "--scheduler",
            SCHEDULER_ADDR,
            "--server-name",
            SERVER_NAME,
            "--poll-ms",
            "100",
            "--cert",
            &cert,
            "--ca",
            &ca,
        ];
        let proc = spawn_in(
            &self.cn(cn).ns.path(),
            &node_tool(),
            &args,
            &self.log(cn.name()),
        )?;
        self.daemons[cn.index()] = Some(proc);
        Ok(())
    }

    /// Waits until `cn` has no pending report left (its daemon delivered them).
    pub fn wait_reports_delivered(&self, cn: Cn, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = self.cn(cn).report_events();
            if left.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{}: reports not delivered within {timeout:?}: {left:?}; log:\n{}",
                    cn.name(),
                    log_tail(&self.log(cn.name()))
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Registers a tenant with a new CNCI identity (random UUID, unique tenant namespace name,
    /// own state dir) without starting its agent: see [`Cluster::start_agent`].
    pub fn plan_tenant(&mut self, tenant: &str) -> Result<Tenant> {
        let state = tempfile::tempdir().context("agent state dir")?;
        let t = Tenant {
            tenant: tenant.to_lowercase(),
            cnci: uuid::Uuid::new_v4().to_string(),
            netns: unique("tnt"),
            state_dir: state.path().to_path_buf(),
            agent_args: Vec::new(),
            controlled: false,
        };
        self.agents.push(Agent {
            tenant: t.clone(),
            log: self.log(&t.cnci),
            _state: state,
            proc: None,
        });
        Ok(t)
    }

    /// A tenant with its CNCI agent running and connected to the scheduler.
    pub fn add_tenant(&mut self, tenant: &str) -> Result<Tenant> {
        let t = self.plan_tenant(tenant)?;
        self.start_agent(&t)?;
        Ok(t)
    }

    fn agent_mut(&mut self, t: &Tenant) -> Result<&mut Agent> {
        self.agents
            .iter_mut()
            .find(|a| a.tenant.cnci == t.cnci)
            .ok_or_else(|| anyhow!("no CNCI {} in this cluster", t.cnci))
    }

    /// Starts (or restarts) the tenant's agent in the network node's namespace with the same
    /// UUID, state dir and tenant namespace; waits for its `ready` line and then until `show`
    /// says it is connected (up to [`AGENT_TIMEOUT`]).
    pub fn start_agent(&mut self, t: &Tenant) -> Result<()> {
        self.kill_agent(t);
        let bin = cnci_agent_tool();
        let cert = self.certs.cnci().display().to_string();
        let ca = self.certs.ca().display().to_string();
        let nn = self.nn.path();
        let state = t.state_dir.display().to_string();
        let mut args = node_run_args(&state, &cert, &ca);
        args.extend(
            [
                "--uuid", &t.cnci, "--tenant", &t.tenant, "--netns", &t.netns,
            ]
            .map(String::from),
        );
        args.extend(t.agent_args.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let log = self.agent_mut(t)?.log.clone();
        let from = log_len(&log);
        let mut proc = spawn_in(&nn, &bin, &args, &log)?;
        let ready = format!("ciao-cnci-agent {} ready", t.cnci);
        let waited = wait_log(&log, from, &ready, &mut proc, AGENT_TIMEOUT);
        self.agent_mut(t)?.proc = Some(proc);
        waited.context("ciao-cnci-agent did not get ready")?;
        self.wait_connected(t, AGENT_TIMEOUT)
    }

    /// Restarts the tenant's agent (same UUID, state dir, namespace).
    pub fn restart_agent(&mut self, t: &Tenant) -> Result<()> {
        self.start_agent(t)
    }

    /// Kills the tenant's agent (SIGKILL, by PID); the kernel state it built stays.
    pub fn kill_agent(&mut self, t: &Tenant) {
        if let Ok(agent) = self.agent_mut(t) {
            agent.proc = None;
        }
    }

    /// True while the tenant's agent process runs.
    pub fn agent_running(&mut self, t: &Tenant) -> bool {
        self.agent_mut(t).is_ok_and(|a| running(&mut a.proc))
    }

    /// Runs `ciao-cnci-agent --state-dir D <args>` in the namespace of the network node that
    /// runs the CNCI.
    pub fn agent_tool(&self, t: &Tenant, args: &[&str]) -> std::process::Output {
        let mut full = vec![
            format!("--net={}", self.network_node_ns(&t.state_dir).display()),
            cnci_agent_tool().display().to_string(),
            "--state-dir".into(),
            t.state_dir.display().to_string(),
        ];
        full.extend(args.iter().map(|a| a.to_string()));
        Command::new("nsenter")
            .args(&full)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| std::process::Output {
                status: std::os::unix::process::ExitStatusExt::from_raw(127 << 8),
                stdout: Vec::new(),
                stderr: format!("spawn nsenter: {e}").into_bytes(),
            })
    }

    /// The agent's `show --json`.
    pub fn agent_show(&self, t: &Tenant) -> Result<Value> {
        let out = self.agent_tool(t, &["show", "--json"]);
        if !out.status.success() {
            bail!(
                "ciao-cnci-agent show --json: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        serde_json::from_slice(&out.stdout).with_context(|| {
            format!(
                "ciao-cnci-agent show --json printed {:?}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// Waits until the agent's `show --json` says `"connected": true`.
    pub fn wait_connected(&mut self, t: &Tenant, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let show = self.agent_show(t);
            if let Ok(v) = &show {
                if v["connected"] == json!(true) {
                    return Ok(());
                }
            }
            if !self.agent_running(t) || Instant::now() > deadline {
                let log = self.agent_mut(t).map(|a| a.log.clone())?;
                bail!(
                    "CNCI {} not connected (running: {}); last show: {show:?}; log:\n{}",
                    t.cnci,
                    self.agent_running(t),
                    log_tail(&log)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the agent's hub for `subnet` is programmed toward exactly `expected` (CN
    /// underlay addresses, any order; empty: the subnet is gone or has no node). Returns the
    /// subnet's entry of `show --json` (`Null` when absent).
    pub fn wait_programmed(&self, t: &Tenant, subnet: &str, expected: &[&str]) -> Result<Value> {
        let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
        want.sort();
        let deadline = Instant::now() + AGENT_TIMEOUT;
        loop {
            let show = self.agent_show(t);
            if let Ok(v) = &show {
                let entry = subnet_entry(v, subnet);
                let mut got = ips(&entry["programmed"]);
                got.sort();
                if got == want {
                    return Ok(entry);
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "CNCI {} subnet {subnet}: programmed is not {want:?} after {AGENT_TIMEOUT:?}; \
                     last show: {show:?}",
                    t.cnci
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Attaches a container of `t` in `subnet` with address `ip` on `cn`: a new namespace and a
    /// CNI ADD run in the node's namespace, as a runtime runs it.
    pub fn container(&self, cn: Cn, t: &Tenant, subnet: &str, ip: &str) -> Result<Workload> {
        self.container_with(cn, t, subnet, ip, json!({}))
    }

    /// [`Cluster::container`] with extra network configuration keys (e.g. `tunnel`).
    pub fn container_with(
        &self,
        cn: Cn,
        t: &Tenant,
        subnet: &str,
        ip: &str,
        extra: Value,
    ) -> Result<Workload> {
        let prefix = subnet
            .split_once('/')
            .map(|(_, p)| p)
            .ok_or_else(|| anyhow!("subnet {subnet} has no prefix length"))?;
        let node = self.cn(cn);
        let ns = Netns::new("ctr");
        let mut conf = json!({
            "cniVersion": "1.1.0",
            "name": format!("t{}-{}", &t.tenant[..8.min(t.tenant.len())], subnet.replace(['.', '/'], "-")),
            "type": "ciao",
            "tenant": t.tenant,
            "subnet": subnet,
            "cnci": {"uuid": t.cnci, "ip": NN_IP},
            "stateDir": node.state.path(),
            "defaultRoute": true,
            "runtimeConfig": {"ips": [format!("{ip}/{prefix}")]},
        });
        if t.controlled {
            if let Some(conf) = conf.as_object_mut() {
                conf.remove("cnci");
            }
        }
        if let (Some(conf), Some(extra)) = (conf.as_object_mut(), extra.as_object()) {
            conf.extend(extra.clone());
        }
        let mut w = Workload {
            ip: ip.to_string(),
            cn,
            tenant: t.clone(),
            subnet: subnet.to_string(),
            result: Value::Null,
            node_ns: node.ns.name.clone(),
            removed: false,
            conf,
            ns,
        };
        let out = cni_call(
            &plugin(),
            Some(&w.node_ns),
            "ADD",
            &w.ns.name,
            &w.ns.path().display().to_string(),
            "eth0",
            &w.conf,
            &[],
        );
        if !out.ok {
            bail!(
                "CNI ADD {ip} on {} failed: {} {}",
                cn.name(),
                out.stdout,
                out.stderr
            );
        }
        w.result = out.json;
        Ok(w)
    }

    /// The tenants registered so far.
    pub fn tenants(&self) -> Vec<Tenant> {
        self.agents.iter().map(|a| a.tenant.clone()).collect()
    }

    /// A handle on a tenant namespace for `exec` (not deleted when dropped: the cluster owns it).
    pub fn tenant_ns(&self, t: &Tenant) -> TenantNs {
        TenantNs(Some(Netns {
            name: t.netns.clone(),
        }))
    }
}

/// A process of the cluster, for [`Cluster::signal`].
#[derive(Clone, Debug)]
pub enum Member {
    Scheduler,
    Daemon(Cn),
    Agent(Tenant),
}

impl Cluster {
    /// Sends `signal` to a running member (by PID), e.g. SIGSTOP to freeze it with frames in
    /// its socket buffers before a SIGKILL; false if it is not running.
    pub fn signal(&mut self, member: &Member, signal: nix::sys::signal::Signal) -> bool {
        let Some(pid) = self.pid(member).and_then(|p| i32::try_from(p).ok()) else {
            return false;
        };
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).is_ok()
    }

    /// The PID of a member's process (started with `nsenter --net`, which execs: the program's
    /// own PID), while it is started.
    pub fn pid(&self, member: &Member) -> Option<u32> {
        let proc = match member {
            Member::Scheduler => self.scheduler.as_ref(),
            Member::Daemon(cn) => self.daemons[cn.index()].as_ref(),
            Member::Agent(t) => self
                .agents
                .iter()
                .find(|a| a.tenant.cnci == t.cnci)
                .and_then(|a| a.proc.as_ref()),
        };
        proc.map(|p| p.0.id())
    }
}

/// Runs `f` on a thread inside the network namespace at `ns` (the calling thread stays put).
pub fn in_netns<T: Send>(ns: &Path, f: impl FnOnce() -> T + Send) -> T {
    let fd = std::fs::File::open(ns).expect("open netns");
    std::thread::scope(|s| {
        s.spawn(move || {
            nix::sched::setns(&fd, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
        .join()
        .expect("netns thread")
    })
}

/// One SSNTP session from the underlay namespace with `cert` as `me` in `role_bits`: sends
/// `frames`, then returns the first frame back for which `wanted` holds (None: the session
/// ended, or `wanted` never held within 10 s).
pub fn ssntp_exchange(
    cluster: &Cluster,
    cert: &Path,
    me: uuid::Uuid,
    role_bits: u32,
    frames: Vec<ssntp::frame::Frame>,
    wanted: impl Fn(&ssntp::frame::Frame) -> bool + Send,
) -> Option<ssntp::frame::Frame> {
    let tls = crate::client_tls(cert, &cluster.certs.ca());
    in_netns(&cluster.underlay.path(), move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let mut s = ssntp::client::dial(SCHEDULER_ADDR, "localhost", tls, me, role_bits)
                .await
                .expect("ssntp session");
            for f in &frames {
                s.writer.frame(f).await.expect("send");
            }
            tokio::time::timeout(Duration::from_secs(10), async {
                loop {
                    match s.reader.frame().await {
                        Ok(Some(f)) if wanted(&f) => return Some(f),
                        Ok(Some(_)) => continue,
                        _ => return None,
                    }
                }
            })
            .await
            .ok()
            .flatten()
        })
    })
}

/// What a process's open file descriptors point at (`/proc/<pid>/fd`, e.g. `socket:[123]`,
/// `/tmp/x.log`), sorted; `None` if the process is gone.
pub fn open_fds(pid: u32) -> Option<Vec<String>> {
    let mut targets: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|t| t.display().to_string())
        .collect();
    targets.sort();
    Some(targets)
}

/// A borrowed view of a namespace the cluster (or an agent) owns: derefs to [`Netns`] and does
/// not delete it on drop.
pub struct TenantNs(Option<Netns>);

impl std::ops::Deref for TenantNs {
    type Target = Netns;
    fn deref(&self) -> &Netns {
        match &self.0 {
            Some(ns) => ns,
            None => unreachable!("set until drop"),
        }
    }
}

impl Drop for TenantNs {
    fn drop(&mut self) {
        std::mem::forget(self.0.take());
    }
}

/// The entry for `subnet` in a `show --json` document (`Null` if absent).
pub fn subnet_entry(show: &Value, subnet: &str) -> Value {
    show["subnets"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["subnet"] == json!(subnet)))
        .cloned()
        .unwrap_or(Value::Null)
}

fn ips(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop_control();
        // Agents first (they hold the tenant namespaces), then their kernel state.
        for agent in &mut self.agents {
            agent.proc = None;
        }
        let tenants: Vec<Tenant> = self.agents.iter().map(|a| a.tenant.clone()).collect();
        if !tenants.is_empty() && crate::try_cnci_agent_tool().is_some() {
            for t in &tenants {
                let _ = self.agent_tool(t, &["destroy"]);
            }
        }
        for t in &tenants {
            let _ = Command::new("ip")
                .args(["netns", "delete", &t.netns])
                .stderr(Stdio::null())
                .status();
        }
        self.daemons = [None, None];
        self.scheduler = None;
        // The namespaces (and with them every veth and bridge) go with the fields.
    }
}
