//! `cnci-bench`: how fast the real `ciao-cnci-agent` absorbs registrations, and its memory.
//!
//! 200 simulated compute nodes (SSNTP sessions with role agent) each send TenantAdded for 20
//! subnets of one tenant through the real `ciao-scheduler` to the agent, all at once. The bench
//! times until the kernel holds every flood-list entry (one per CN and subnet), then restarts the
//! agent (SIGKILL, same state directory) and times its start-up reconcile, then re-sends every
//! registration (duplicates) and times until they are processed. Everything runs inside network
//! namespaces this bench creates and removes. Needs root. Not part of CI.
//!
//! ```text
//! cargo build --release -p ciao-bench -p ciao-cnci-agent -p ciao-scheduler
//! target/release/cnci-bench
//! ```
//!
//! See `bench/README.md` for what is measured and how.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use ciao_bench::host::{
    cpu_time, machine_busy, round3, scheduler_address, status_kib, utc_stamp, wait_quiet,
};
use clap::Parser;
use netcore::netlink::Netlink;
use netlink_packet_route::neighbour::{NeighbourAttribute, NeighbourMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use serde::Serialize;
use ssntp::certs::{write_pem, Authority, Names, Secrecy, Shape, Validity};
use ssntp::client::{dial, Session};
use ssntp::frame::{event, kind, role, Frame};
use ssntp::payloads::{Ipv4Subnet, Payload, TenantAdded, TenantAddedEvent, TunnelKind};
use ssntp::tls::{ca_from_pem, client_config, ClientOptions, Identity};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use uuid::Uuid;

/// The agent's address on the bench's underlay.
const UNDERLAY_IP: Ipv4Addr = Ipv4Addr::new(10, 250, 0, 3);
/// How often the kernel's flood lists are counted.
const POLL: Duration = Duration::from_millis(20);
/// The subnet of the marker registrations sent after the duplicates.
const MARKER_SUBNET: u8 = 200;
/// VNI of subnet `s` is `VNI_BASE + s`.
const VNI_BASE: u32 = 1000;

#[derive(Parser)]
#[command(
    name = "cnci-bench",
    about = "Registration throughput and memory of ciao-cnci-agent (needs root)"
)]
struct Args {
    /// Simulated compute nodes (SSNTP sessions with role agent).
    #[arg(long, default_value_t = 200)]
    cns: usize,
    /// Tenant subnets each node registers (172.16.<s>.0/24, s = 0..N; at most 200).
    #[arg(long, default_value_t = 20)]
    subnets: u8,
    /// The agent binary (default: ciao-cnci-agent next to this binary).
    #[arg(long)]
    agent: Option<PathBuf>,
    /// The scheduler binary (default: ciao-scheduler next to this binary).
    #[arg(long)]
    scheduler: Option<PathBuf>,
    /// Seconds allowed for each measured phase before the run is declared broken.
    #[arg(long, default_value_t = 300)]
    timeout_secs: u64,
    /// Seconds to wait at start for the machine to fall below 15 % busy (0: don't wait).
    #[arg(long, default_value_t = 60)]
    quiet_wait_secs: u64,
    /// Directory for `cnci-<timestamp>.json` and `.txt`.
    #[arg(long, default_value_os_t = default_out_dir())]
    out_dir: PathBuf,
}

fn default_out_dir() -> PathBuf {
    let bench = Path::new(env!("CARGO_MANIFEST_DIR"));
    bench.join("results")
}

// ---------------------------------------------------------------------------------------------
// Processes, namespaces and /proc

/// A named network namespace, deleted (with `ip netns delete`) on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn create(prefix: &str) -> Result<Netns> {
        // Short: the agent takes its tenant namespace name as an interface name (15 bytes).
        let name = format!("{prefix}{}-{}", std::process::id(), unique_suffix());
        sh(&["ip", "netns", "add", &name])?;
        Ok(Netns { name })
    }

    fn path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.name))
    }

    fn ip(&self, args: &[&str]) -> Result<()> {
        let mut full = vec!["ip", "-n", self.name.as_str()];
        full.extend_from_slice(args);
        sh(&full)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        delete_netns(&self.name);
    }
}

fn delete_netns(name: &str) {
    if Path::new("/run/netns").join(name).exists() {
        let _ = Command::new("ip")
            .args(["netns", "delete", name])
            .stderr(Stdio::null())
            .status();
    }
}

fn unique_suffix() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    nanos % 1000
}

/// Runs a command; fails with its stderr if it fails.
fn sh(args: &[&str]) -> Result<()> {
    let (prog, rest) = args.split_first().ok_or_else(|| anyhow!("empty command"))?;
    let out = Command::new(prog)
        .args(rest)
        .output()
        .with_context(|| format!("run {args:?}"))?;
    ensure!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// A child process, SIGKILLed by PID and reaped when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[derive(Debug, Clone, Copy, Serialize)]
struct Mem {
    rss_kib: u64,
    hwm_kib: u64,
}

fn mem(pid: u32) -> Result<Mem> {
    Ok(Mem {
        rss_kib: status_kib(pid, "VmRSS")?,
        hwm_kib: status_kib(pid, "VmHWM")?,
    })
}

/// CPU use of the agent, the scheduler, this bench and the machine over a phase.
struct CpuMeter {
    pids: [String; 2],
    start: Instant,
    at: [f64; 4],
}

#[derive(Debug, Clone, Serialize)]
struct CpuUse {
    /// In % of one core; the machine's maximum is 100 % per core.
    agent_pct: f64,
    scheduler_pct: f64,
    bench_pct: f64,
    machine_pct: f64,
}

impl CpuMeter {
    fn start(agent: u32, scheduler: u32) -> Result<Self> {
        let pids = [agent.to_string(), scheduler.to_string()];
        let at = [
            cpu_time(&pids[0])?.as_secs_f64(),
            cpu_time(&pids[1])?.as_secs_f64(),
            cpu_time("self")?.as_secs_f64(),
            machine_busy()?.as_secs_f64(),
        ];
        Ok(CpuMeter {
            pids,
            start: Instant::now(),
            at,
        })
    }

    fn stop(&self) -> Result<CpuUse> {
        let wall = self.start.elapsed().as_secs_f64().max(1e-9);
        let pct = |now: f64, then: f64| ((now - then).max(0.0) / wall * 1000.0).round() / 10.0;
        Ok(CpuUse {
            agent_pct: pct(cpu_time(&self.pids[0])?.as_secs_f64(), self.at[0]),
            scheduler_pct: pct(cpu_time(&self.pids[1])?.as_secs_f64(), self.at[1]),
            bench_pct: pct(cpu_time("self")?.as_secs_f64(), self.at[2]),
            machine_pct: pct(machine_busy()?.as_secs_f64(), self.at[3]),
        })
    }
}

fn binary_next_to_me(arg: Option<PathBuf>, name: &str, package: &str) -> Result<PathBuf> {
    let bin = match arg {
        Some(p) => p,
        None => std::env::current_exe()
            .context("locate this binary")?
            .with_file_name(name),
    };
    ensure!(
        bin.is_file(),
        "{} not found: build it (cargo build --release -p {package})",
        bin.display()
    );
    Ok(bin)
}

// ---------------------------------------------------------------------------------------------
// Certificates

struct Certs {
    dir: tempfile::TempDir,
    scheduler_pem: PathBuf,
    ca_pem: PathBuf,
    cnci_pem: PathBuf,
    agent: Arc<rustls::ClientConfig>,
}

fn make_certs() -> Result<Certs> {
    let localhost = Names::new(&["localhost"], &[IpAddr::V4(Ipv4Addr::LOCALHOST)]);
    let authority = Authority::new(Shape::Ciao, "cnci-bench", Validity::days(365), &localhost)
        .context("make the scheduler certificate")?;
    let dir = tempfile::tempdir().context("temporary directory")?;
    let write = |name: &str, text: &str, secrecy: Secrecy| -> Result<PathBuf> {
        Ok(write_pem(dir.path(), name, text, secrecy)?)
    };
    let scheduler_pem = write(
        "cert-scheduler-localhost.pem",
        &authority.anchor().combined_pem(),
        Secrecy::PrivateKey,
    )?;
    let ca_pem = write(
        "CAcert-localhost.pem",
        authority.cert_pem(),
        Secrecy::Public,
    )?;
    let names = Names::new(&["localhost"], &[]);
    let cnci = authority
        .issue(role::CNCIAGENT, &names)
        .context("issue the CNCI certificate")?;
    let cnci_pem = write(
        "cert-cnciagent-localhost.pem",
        &cnci.combined_pem(),
        Secrecy::PrivateKey,
    )?;
    let issued = authority
        .issue(role::AGENT, &names)
        .context("issue the agent certificate")?;
    let ca = ca_from_pem(authority.cert_pem().as_bytes()).context("CA certificate")?;
    let identity = Identity::from_pem(issued.combined_pem().as_bytes())?;
    let shared = client_config(&ca, identity, &ClientOptions::default())?;
    // Each simulated CN is its own node: no TLS session resumption between them.
    let mut own = (*shared).clone();
    own.resumption = rustls::client::Resumption::disabled();
    Ok(Certs {
        dir,
        scheduler_pem,
        ca_pem,
        cnci_pem,
        agent: Arc::new(own),
    })
}

// ---------------------------------------------------------------------------------------------
// The hub under test

/// The bench's world: the underlay namespace with the scheduler and the agent in it. Drop
/// order matters and is explicit: agent, its CNCI (`destroy`), scheduler, namespaces.
struct Hub {
    ns: Netns,
    tenant_ns: String,
    agent_bin: PathBuf,
    state: tempfile::TempDir,
    agent: Option<Proc>,
    scheduler: Option<Proc>,
    scheduler_addr: String,
    cnci: Uuid,
    tenant: Uuid,
    certs: Certs,
}

impl Hub {
    fn build(agent_bin: PathBuf, scheduler_bin: &Path, certs: Certs) -> Result<Hub> {
        let ns = Netns::create("cnb")?;
        let tenant_ns = ns.name.replacen("cnb", "cnt", 1);
        let mut hub = Hub {
            tenant_ns,
            agent_bin,
            state: tempfile::tempdir().context("agent state directory")?,
            agent: None,
            scheduler: None,
            scheduler_addr: String::new(),
            cnci: Uuid::new_v4(),
            tenant: Uuid::new_v4(),
            certs,
            ns,
        };
        hub.ns.ip(&["link", "set", "lo", "up"])?;
        hub.ns
            .ip(&["link", "add", "ul0", "type", "veth", "peer", "name", "ul1"])?;
        hub.ns.ip(&["addr", "add", "10.250.0.3/24", "dev", "ul0"])?;
        hub.ns.ip(&["link", "set", "ul0", "up"])?;
        hub.ns.ip(&["link", "set", "ul1", "up"])?;
        hub.start_scheduler(scheduler_bin)?;
        Ok(hub)
    }

    fn nsenter(&self, bin: &Path) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.ns.path().display()))
            .arg("--")
            .arg(bin);
        c
    }

    fn start_scheduler(&mut self, bin: &Path) -> Result<()> {
        let mut child = self
            .nsenter(bin)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--cert")
            .arg(&self.certs.scheduler_pem)
            .arg("--ca")
            .arg(&self.certs.ca_pem)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        let stderr = child.stderr.take();
        self.scheduler = Some(Proc(child));
        let stderr = stderr.ok_or_else(|| anyhow!("no stderr pipe to the scheduler"))?;
        self.scheduler_addr = scheduler_address(stderr, false)?;
        Ok(())
    }

    fn scheduler_pid(&self) -> u32 {
        self.scheduler.as_ref().map_or(0, |p| p.0.id())
    }

    /// Starts the agent (nsenter execs it, so the child's PID is the agent's). Its log goes to
    /// `agent.log` in the state directory's parent temp dir (appended across restarts).
    fn start_agent(&mut self) -> Result<u32> {
        ensure!(self.agent.is_none(), "the agent runs already");
        let log_path = self.certs.dir.path().join("agent.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("open {}", log_path.display()))?;
        let child = self
            .nsenter(&self.agent_bin)
            .arg("--state-dir")
            .arg(self.state.path())
            .arg("run")
            .arg("--uuid")
            .arg(self.cnci.to_string())
            .arg("--tenant")
            .arg(self.tenant.to_string())
            .arg("--scheduler")
            .arg(&self.scheduler_addr)
            .arg("--server-name")
            .arg("localhost")
            .arg("--cert")
            .arg(&self.certs.cnci_pem)
            .arg("--ca")
            .arg(&self.certs.ca_pem)
            .arg("--underlay-ip")
            .arg(UNDERLAY_IP.to_string())
            .arg("--netns")
            .arg(&self.tenant_ns)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {}", self.agent_bin.display()))?;
        let pid = child.id();
        self.agent = Some(Proc(child));
        Ok(pid)
    }

    /// SIGKILL, as a crash.
    fn kill_agent(&mut self) {
        self.agent = None;
    }

    fn check_alive(&mut self) -> Result<()> {
        if let Some(p) = self.agent.as_mut() {
            if let Some(status) = p.0.try_wait()? {
                bail!(
                    "ciao-cnci-agent exited: {status}; see its log:\n{}",
                    self.agent_log_tail()
                );
            }
        }
        if let Some(p) = self.scheduler.as_mut() {
            if let Some(status) = p.0.try_wait()? {
                bail!("ciao-scheduler exited: {status}");
            }
        }
        Ok(())
    }

    fn agent_log_tail(&self) -> String {
        let text =
            std::fs::read_to_string(self.certs.dir.path().join("agent.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// `status.json` of the agent with PID `pid` says it is connected. (A killed agent leaves
    /// its last status behind, hence the PID.)
    fn connected(&self, pid: u32) -> bool {
        let Ok(bytes) = std::fs::read(self.state.path().join("status.json")) else {
            return false;
        };
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            return false;
        };
        v["connected"] == serde_json::Value::Bool(true) && v["pid"].as_u64() == Some(u64::from(pid))
    }

    /// `ciao-cnci-agent show --json`.
    fn show(&self) -> Result<serde_json::Value> {
        let out = self
            .nsenter(&self.agent_bin)
            .arg("--state-dir")
            .arg(self.state.path())
            .args(["show", "--json"])
            .output()
            .context("run ciao-cnci-agent show")?;
        ensure!(
            out.status.success(),
            "ciao-cnci-agent show: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).context("parse show --json")
    }

    /// Deletes every bridge and VXLAN device in the tenant namespace; returns how many.
    fn delete_hub_links(&self) -> Result<usize> {
        let mut n = 0;
        for kind in ["vxlan", "bridge"] {
            let out = Command::new("ip")
                .args(["-n", &self.tenant_ns, "-o", "link", "show", "type", kind])
                .output()
                .context("list the tenant namespace's links")?;
            ensure!(out.status.success(), "ip link show failed");
            let text = String::from_utf8_lossy(&out.stdout);
            for name in text.lines().filter_map(|l| l.split(": ").nth(1)) {
                let name = name.split('@').next().unwrap_or(name);
                sh(&["ip", "-n", &self.tenant_ns, "link", "del", name])?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Flood-list entries in the tenant namespace, through a netlink socket opened there.
    fn flood_counter(&self) -> Result<FloodCounter> {
        let path = Path::new("/run/netns").join(&self.tenant_ns);
        let fd = netcore::netns::open(&path)?;
        Ok(FloodCounter {
            nl: Netlink::open_in(fd.as_fd())?,
        })
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.agent = None;
        // `destroy` removes the tenant namespace, the uplink and the agent's nft table.
        if self.state.path().join("agent.json").exists() {
            let _ = self
                .nsenter(&self.agent_bin)
                .arg("--state-dir")
                .arg(self.state.path())
                .arg("destroy")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        self.scheduler = None;
        delete_netns(&self.tenant_ns);
        // self.ns is deleted by its own Drop after this.
    }
}

/// Counts flood-list entries (MAC 00:00:00:00:00:00 with a destination) with one FDB dump.
struct FloodCounter {
    nl: Netlink,
}

impl FloodCounter {
    fn count(&mut self) -> Result<usize> {
        let mut req = NeighbourMessage::default();
        req.header.family = AddressFamily::Bridge;
        let replies = self
            .nl
            .dump("list fdb", RouteNetlinkMessage::GetNeighbour(req))?;
        Ok(replies
            .iter()
            .filter(|r| match r {
                RouteNetlinkMessage::NewNeighbour(m) => {
                    let mut zero_mac = false;
                    let mut dst = false;
                    for a in &m.attributes {
                        match a {
                            NeighbourAttribute::LinkLayerAddress(mac) => {
                                zero_mac = mac.len() == 6 && mac.iter().all(|b| *b == 0)
                            }
                            NeighbourAttribute::Destination(_) => dst = true,
                            _ => {}
                        }
                    }
                    zero_mac && dst
                }
                _ => false,
            })
            .count())
    }
}

// ---------------------------------------------------------------------------------------------
// Simulated compute nodes

struct Cn {
    uuid: Uuid,
    ip: Ipv4Addr,
    session: Session,
}

fn cn_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 251, (i / 250) as u8, (i % 250 + 1) as u8)
}

async fn connect_cns(addr: &str, tls: &Arc<rustls::ClientConfig>, n: usize) -> Result<Vec<Cn>> {
    let gate = Arc::new(Semaphore::new(20));
    let mut set = JoinSet::new();
    for i in 0..n {
        let (gate, addr, tls) = (gate.clone(), addr.to_string(), tls.clone());
        set.spawn(async move {
            let _permit = gate.acquire_owned().await?;
            let uuid = Uuid::new_v4();
            let session = dial(&addr, "localhost", tls, uuid, role::AGENT)
                .await
                .context("connect a simulated CN")?;
            anyhow::Ok((
                i,
                Cn {
                    uuid,
                    ip: cn_ip(i),
                    session,
                },
            ))
        });
    }
    let mut out = Vec::with_capacity(n);
    while let Some(r) = set.join_next().await {
        out.push(r??);
    }
    out.sort_by_key(|(i, _)| *i);
    Ok(out.into_iter().map(|(_, c)| c).collect())
}

fn registration(cn: &Cn, tenant: Uuid, cnci: Uuid, s: u8) -> Result<Frame> {
    let subnet = Ipv4Subnet::new(Ipv4Addr::new(172, 16, s, 0), 24)
        .ok_or_else(|| anyhow!("bad subnet {s}"))?;
    let body = TenantAddedEvent::new(cn.uuid, cn.ip, tenant, subnet, cnci, UNDERLAY_IP)
        .with_tunnel(TunnelKind::Vxlan, VNI_BASE + u32::from(s));
    Ok(Frame::new(
        kind::EVENT,
        event::TENANT_ADDED,
        cn.uuid,
        TenantAdded(body).to_yaml(),
    ))
}

/// Every CN writes its frames (in order, on its own session), all CNs concurrently. Returns
/// the sessions and when the last write finished.
async fn send_all(cns: Vec<Cn>, frames: Vec<Vec<Frame>>) -> Result<(Vec<Cn>, Instant)> {
    let mut set = JoinSet::new();
    for (i, (mut cn, frames)) in cns.into_iter().zip(frames).enumerate() {
        set.spawn(async move {
            for f in &frames {
                cn.session.writer.frame(f).await?;
            }
            anyhow::Ok((i, cn))
        });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        out.push(r??);
    }
    let done = Instant::now();
    out.sort_by_key(|(i, _)| *i);
    Ok((out.into_iter().map(|(_, c)| c).collect(), done))
}

// ---------------------------------------------------------------------------------------------
// Phases

#[derive(Debug, Clone, Serialize)]
struct Point {
    t_s: f64,
    entries: usize,
}

/// Polls the flood-entry count every [`POLL`] until it reaches `target`; returns the
/// timeline (kept when the count changes), the time of the first sample at or above each of
/// `marks` (counts), and the lowest count seen.
struct Watch {
    timeline: Vec<Point>,
    reached: Vec<Option<f64>>,
    min: usize,
    polls: usize,
}

async fn watch(
    hub: &mut Hub,
    counter: &mut FloodCounter,
    start: Instant,
    target: usize,
    marks: &[usize],
    timeout: Duration,
) -> Result<Watch> {
    let mut w = Watch {
        timeline: Vec::new(),
        reached: vec![None; marks.len()],
        min: usize::MAX,
        polls: 0,
    };
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let n = tokio::task::block_in_place(|| counter.count())?;
        let t = round3(start.elapsed().as_secs_f64());
        w.polls += 1;
        w.min = w.min.min(n);
        if w.timeline.last().is_none_or(|p| p.entries != n) {
            w.timeline.push(Point { t_s: t, entries: n });
        }
        for (i, m) in marks.iter().enumerate() {
            if w.reached[i].is_none() && n >= *m {
                w.reached[i] = Some(t);
            }
        }
        if n >= target {
            return Ok(w);
        }
        hub.check_alive()?;
        ensure!(
            start.elapsed() < timeout,
            "only {n} of {target} flood entries after {timeout:?}; agent log:\n{}",
            hub.agent_log_tail()
        );
    }
}

#[derive(Debug, Clone, Serialize)]
struct Burst {
    registrations: usize,
    /// From the first write to the last write accepted by TCP.
    sends_done_s: f64,
    first_entry_s: f64,
    half_s: f64,
    all_s: f64,
    registrations_per_s: f64,
    cpu: CpuUse,
    /// The agent's own view afterwards (`show --json`): connected, subnets, programmed nodes.
    show_connected: bool,
    show_subnets: usize,
    show_programmed: usize,
    timeline: Vec<Point>,
}

#[derive(Debug, Clone, Serialize)]
struct Restart {
    /// From spawning the new agent to `status.json` saying it is connected.
    connected_s: f64,
    /// From spawning it to the kernel (polled afterwards) holding every entry.
    all_programmed_s: f64,
    /// The fewest flood entries seen while the agent was down and starting (every 20 ms).
    min_entries_during_restart: usize,
    cpu: CpuUse,
}

#[derive(Debug, Clone, Serialize)]
struct Rebuild {
    /// Bridges and VXLAN devices deleted from the tenant namespace while the agent was down.
    links_deleted: usize,
    connected_s: f64,
    /// From spawning the agent to every flood entry being back in the kernel.
    all_programmed_s: f64,
    cpu: CpuUse,
}

#[derive(Debug, Clone, Serialize)]
struct Duplicates {
    duplicates: usize,
    /// New registrations sent after them (one new subnet, one per CN, each last on its session).
    markers: usize,
    sends_done_s: f64,
    /// Until the first marker entry is in the kernel (what one marker would measure).
    first_marker_s: f64,
    /// Until every marker is: every session's duplicates were handled before its marker.
    all_markers_s: f64,
    cpu: CpuUse,
}

#[derive(Debug, Clone, Serialize)]
struct Results {
    timestamp: String,
    cns: usize,
    subnets: u8,
    cpus: usize,
    busy_at_start_pct: f64,
    connect_cns_s: f64,
    agent_start_to_connected_s: f64,
    memory_before: Mem,
    burst: Burst,
    memory_after_burst: Mem,
    restart: Restart,
    memory_after_restart: Mem,
    rebuild: Rebuild,
    memory_after_rebuild: Mem,
    duplicates: Duplicates,
    memory_after_duplicates: Mem,
    scheduler_memory_end: Mem,
}

fn mib(kib: u64) -> f64 {
    (kib as f64 / 1024.0 * 10.0).round() / 10.0
}

impl Results {
    fn table(&self) -> String {
        let mut s = String::new();
        let b = &self.burst;
        let r = &self.restart;
        let d = &self.duplicates;
        let _ = writeln!(
            s,
            "## cnci-bench {}: ciao-cnci-agent, {} CNs x {} subnets = {} registrations, {} CPUs\n",
            self.timestamp, self.cns, self.subnets, b.registrations, self.cpus
        );
        let _ = writeln!(
            s,
            "Set-up: machine {:.0}% busy before the start, {} CN sessions connected in {:.1} s, agent connected {:.2} s after start\n",
            self.busy_at_start_pct, self.cns, self.connect_cns_s, self.agent_start_to_connected_s
        );
        let _ = writeln!(s, "| | |");
        let _ = writeln!(s, "|---|---:|");
        let _ = writeln!(
            s,
            "| burst: all {} TenantAdded written (TCP) | {:.3} s |",
            b.registrations, b.sends_done_s
        );
        let _ = writeln!(
            s,
            "| burst: first flood entry in the kernel | {:.3} s |",
            b.first_entry_s
        );
        let _ = writeln!(s, "| burst: half of them | {:.3} s |", b.half_s);
        let _ = writeln!(s, "| burst: all of them | {:.3} s |", b.all_s);
        let _ = writeln!(
            s,
            "| **registrations / s** | **{:.0}** |",
            b.registrations_per_s
        );
        let _ = writeln!(
            s,
            "| burst CPU: agent / scheduler / bench / machine | {:.0}% / {:.0}% / {:.0}% / {:.0}% |",
            b.cpu.agent_pct, b.cpu.scheduler_pct, b.cpu.bench_pct, b.cpu.machine_pct
        );
        let _ = writeln!(
            s,
            "| agent's own view (show --json): connected, subnets, programmed | {}, {}, {} |",
            b.show_connected, b.show_subnets, b.show_programmed
        );
        let _ = writeln!(
            s,
            "| restart (SIGKILL + start, same state): connected again | {:.3} s |",
            r.connected_s
        );
        let _ = writeln!(
            s,
            "| restart: all {} entries verified in the kernel | {:.3} s |",
            b.registrations, r.all_programmed_s
        );
        let _ = writeln!(
            s,
            "| restart: fewest entries seen during it | {} |",
            r.min_entries_during_restart
        );
        let _ = writeln!(
            s,
            "| restart CPU: agent / machine | {:.0}% / {:.0}% |",
            r.cpu.agent_pct, r.cpu.machine_pct
        );
        let rb = &self.rebuild;
        let _ = writeln!(
            s,
            "| rebuild (SIGKILL, {} bridges + VXLAN devices deleted, start): connected | {:.3} s |",
            rb.links_deleted, rb.connected_s
        );
        let _ = writeln!(
            s,
            "| rebuild: all {} entries back in the kernel | {:.3} s |",
            b.registrations, rb.all_programmed_s
        );
        let _ = writeln!(
            s,
            "| rebuild CPU: agent / machine | {:.0}% / {:.0}% |",
            rb.cpu.agent_pct, rb.cpu.machine_pct
        );
        let _ = writeln!(
            s,
            "| duplicates: {} re-sent + {} markers written | {:.3} s |",
            d.duplicates, d.markers, d.sends_done_s
        );
        let _ = writeln!(
            s,
            "| duplicates: first marker programmed | {:.3} s |",
            d.first_marker_s
        );
        let _ = writeln!(
            s,
            "| duplicates: all markers programmed | {:.3} s |",
            d.all_markers_s
        );
        let _ = writeln!(
            s,
            "| duplicates CPU: agent / machine | {:.0}% / {:.0}% |",
            d.cpu.agent_pct, d.cpu.machine_pct
        );
        let _ = writeln!(s, "\n| agent memory | VmRSS MiB | VmHWM MiB |");
        let _ = writeln!(s, "|---|---:|---:|");
        for (what, m) in [
            ("connected, nothing registered", &self.memory_before),
            ("after the burst", &self.memory_after_burst),
            (
                "after the restart (new process)",
                &self.memory_after_restart,
            ),
            (
                "after the rebuild (new process)",
                &self.memory_after_rebuild,
            ),
            ("after the duplicates", &self.memory_after_duplicates),
        ] {
            let _ = writeln!(s, "| {what} | {} | {} |", mib(m.rss_kib), mib(m.hwm_kib));
        }
        let _ = writeln!(
            s,
            "| (scheduler at the end) | {} | {} |",
            mib(self.scheduler_memory_end.rss_kib),
            mib(self.scheduler_memory_end.hwm_kib)
        );
        s
    }
}

async fn wait_connected(hub: &mut Hub, pid: u32, start: Instant, timeout: Duration) -> Result<f64> {
    loop {
        if hub.connected(pid) {
            return Ok(round3(start.elapsed().as_secs_f64()));
        }
        hub.check_alive()?;
        ensure!(
            start.elapsed() < timeout,
            "the agent is not connected after {timeout:?}; its log:\n{}",
            hub.agent_log_tail()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn run(args: &Args, hub: &mut Hub) -> Result<Results> {
    let timeout = Duration::from_secs(args.timeout_secs);
    let subnets = args.subnets;
    ensure!(
        (1..=MARKER_SUBNET).contains(&subnets) && subnets < MARKER_SUBNET,
        "--subnets must be 1..199"
    );
    let total = args.cns * usize::from(subnets);

    let t = Instant::now();
    let pid = hub.start_agent()?;
    let agent_start_to_connected_s = wait_connected(hub, pid, t, timeout).await?;
    let view = tokio::task::block_in_place(|| hub.show())?;
    ensure!(
        view["connected"] == true,
        "show --json: not connected: {view}"
    );
    eprintln!(
        "cnci-bench: agent pid {pid} connected; connecting {} CNs",
        args.cns
    );

    let t = Instant::now();
    let cns = connect_cns(&hub.scheduler_addr, &hub.certs.agent, args.cns).await?;
    let connect_cns_s = round3(t.elapsed().as_secs_f64());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let memory_before = mem(pid)?;
    let mut counter = hub.flood_counter()?;
    ensure!(
        counter.count()? == 0,
        "flood entries exist before the burst"
    );

    // Round 1: the burst.
    let frames = cns
        .iter()
        .map(|cn| {
            (0..subnets)
                .map(|s| registration(cn, hub.tenant, hub.cnci, s))
                .collect::<Result<Vec<_>>>()
        })
        .collect::<Result<Vec<_>>>()?;
    eprintln!("cnci-bench: burst of {total} registrations");
    let cpu = CpuMeter::start(pid, hub.scheduler_pid())?;
    let start = Instant::now();
    let sender = tokio::spawn(send_all(cns, frames.clone()));
    let w = watch(
        hub,
        &mut counter,
        start,
        total,
        &[1, total / 2, total],
        timeout,
    )
    .await?;
    let cpu = cpu.stop()?;
    let (cns, sends_done) = sender.await??;
    let all_s = w.reached[2].unwrap_or(f64::NAN);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let memory_after_burst = mem(pid)?;
    let view = tokio::task::block_in_place(|| hub.show())?;
    let show_subnets = view["subnets"].as_array().map_or(0, Vec::len);
    let show_programmed = view["subnets"].as_array().map_or(0, |a| {
        a.iter()
            .map(|s| s["programmed"].as_array().map_or(0, Vec::len))
            .sum()
    });
    let burst = Burst {
        registrations: total,
        sends_done_s: round3(sends_done.duration_since(start).as_secs_f64()),
        first_entry_s: w.reached[0].unwrap_or(f64::NAN),
        half_s: w.reached[1].unwrap_or(f64::NAN),
        all_s,
        registrations_per_s: (total as f64 / all_s).round(),
        cpu,
        show_connected: view["connected"] == true,
        show_subnets,
        show_programmed,
        timeline: w.timeline,
    };
    eprintln!(
        "cnci-bench: burst done in {all_s:.3} s ({:.0}/s)",
        burst.registrations_per_s
    );

    // Round 2: crash and restart with the same state directory.
    eprintln!("cnci-bench: restart");
    hub.kill_agent();
    let start = Instant::now();
    let pid = hub.start_agent()?;
    let cpu = CpuMeter::start(pid, hub.scheduler_pid())?;
    let mut min_during = usize::MAX;
    let connected_s = loop {
        min_during = min_during.min(tokio::task::block_in_place(|| counter.count())?);
        if hub.connected(pid) {
            break round3(start.elapsed().as_secs_f64());
        }
        hub.check_alive()?;
        ensure!(
            start.elapsed() < timeout,
            "the restarted agent is not connected; its log:\n{}",
            hub.agent_log_tail()
        );
        tokio::time::sleep(POLL).await;
    };
    let w = watch(hub, &mut counter, start, total, &[total], timeout).await?;
    let cpu = cpu.stop()?;
    let restart = Restart {
        connected_s,
        all_programmed_s: w.reached[0].unwrap_or(f64::NAN),
        min_entries_during_restart: min_during.min(w.min),
        cpu,
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let memory_after_restart = mem(pid)?;

    // Round 3: the kernel lost the hub's tunnels and bridges while the agent was down (as
    // after a reboot of the network node); the restarted agent rebuilds them from its records.
    eprintln!("cnci-bench: rebuild");
    hub.kill_agent();
    let links_deleted = tokio::task::block_in_place(|| hub.delete_hub_links())?;
    ensure!(
        counter.count()? == 0,
        "flood entries left after deleting the links"
    );
    let start = Instant::now();
    let pid = hub.start_agent()?;
    let cpu = CpuMeter::start(pid, hub.scheduler_pid())?;
    let connected_s = wait_connected(hub, pid, start, timeout).await?;
    let w = watch(hub, &mut counter, start, total, &[total], timeout).await?;
    let rebuild = Rebuild {
        links_deleted,
        connected_s,
        all_programmed_s: w.reached[0].unwrap_or(f64::NAN),
        cpu: cpu.stop()?,
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let memory_after_rebuild = mem(pid)?;

    // Round 4: every registration again, then one marker per CN in a new subnet. The
    // scheduler keeps each session's frames in order, so when every marker is programmed,
    // every duplicate has been handled.
    eprintln!("cnci-bench: {total} duplicates + {} markers", cns.len());
    let mut frames = frames;
    for (cn, f) in cns.iter().zip(frames.iter_mut()) {
        f.push(registration(cn, hub.tenant, hub.cnci, MARKER_SUBNET)?);
    }
    let markers = cns.len();
    let cpu = CpuMeter::start(pid, hub.scheduler_pid())?;
    let start = Instant::now();
    let sender = tokio::spawn(send_all(cns, frames));
    let w = watch(
        hub,
        &mut counter,
        start,
        total + markers,
        &[total + 1, total + markers],
        timeout,
    )
    .await?;
    let cpu = cpu.stop()?;
    let (cns, sends_done) = sender.await??;
    let duplicates = Duplicates {
        duplicates: total,
        markers,
        sends_done_s: round3(sends_done.duration_since(start).as_secs_f64()),
        first_marker_s: w.reached[0].unwrap_or(f64::NAN),
        all_markers_s: w.reached[1].unwrap_or(f64::NAN),
        cpu,
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let memory_after_duplicates = mem(pid)?;
    let scheduler_memory_end = mem(hub.scheduler_pid())?;
    hub.check_alive()?;
    drop(cns);

    Ok(Results {
        timestamp: String::new(),
        cns: args.cns,
        subnets,
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        busy_at_start_pct: f64::NAN,
        connect_cns_s,
        agent_start_to_connected_s,
        memory_before,
        burst,
        memory_after_burst,
        restart,
        memory_after_restart,
        rebuild,
        memory_after_rebuild,
        duplicates,
        memory_after_duplicates,
        scheduler_memory_end,
    })
}

fn raise_nofile() -> Result<()> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).context("getrlimit")?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).context("setrlimit")?;
    }
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(
        nix::unistd::geteuid().is_root(),
        "cnci-bench needs root (network namespaces)"
    );
    let agent_bin = binary_next_to_me(args.agent.clone(), "ciao-cnci-agent", "ciao-cnci-agent")?;
    let scheduler_bin =
        binary_next_to_me(args.scheduler.clone(), "ciao-scheduler", "ciao-scheduler")?;
    raise_nofile()?;
    eprintln!("cnci-bench: generating certificates (RSA-2048)");
    let certs = make_certs()?;
    let busy_at_start_pct = if args.quiet_wait_secs > 0 {
        wait_quiet(
            Duration::from_secs(args.quiet_wait_secs),
            "cnci-bench",
            || Ok(()),
        )?
    } else {
        f64::NAN
    };
    let mut hub = Hub::build(agent_bin, &scheduler_bin, certs)?;
    eprintln!(
        "cnci-bench: namespace {}, scheduler pid {} on {}",
        hub.ns.name,
        hub.scheduler_pid(),
        hub.scheduler_addr
    );
    // The CN sessions must come from inside the namespace: move this (main) thread there
    // before the runtime exists, so its worker threads inherit it. The host's namespace is
    // never touched.
    let ns_fd = netcore::netns::open(&hub.ns.path())?;
    nix::sched::setns(ns_fd.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
        .context("enter the bench namespace")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let outcome = runtime.block_on(async {
        tokio::select! {
            r = run(&args, &mut hub) => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
        }
    });
    drop(runtime);
    drop(hub);
    let mut results = outcome?;
    results.timestamp = utc_stamp();
    results.busy_at_start_pct = busy_at_start_pct;

    let table = results.table();
    println!("{table}");
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("create {}", args.out_dir.display()))?;
    let base = args.out_dir.join(format!("cnci-{}", results.timestamp));
    let json = base.with_extension("json");
    let txt = base.with_extension("txt");
    let text = serde_json::to_string_pretty(&results).context("serialise results")?;
    std::fs::write(&json, text).with_context(|| format!("write {}", json.display()))?;
    std::fs::write(&txt, &table).with_context(|| format!("write {}", txt.display()))?;
    eprintln!(
        "cnci-bench: results in {} and {}",
        json.display(),
        txt.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cn_addresses_are_distinct() {
        let ips: std::collections::BTreeSet<_> = (0..1000).map(cn_ip).collect();
        assert_eq!(ips.len(), 1000);
    }

    #[test]
    fn stamp_has_the_shape() {
        let s = utc_stamp();
        assert_eq!(s.len(), 15);
        assert_eq!(&s[8..9], "-");
    }
}
