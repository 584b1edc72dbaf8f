//! `ssntp-bench`: forwarding throughput, latency and memory of the real `ciao-scheduler` binary
//! under ciao-shaped TLS, with 1,000 clients connected. The scheduler runs as its own process
//! so its memory can be read from `/proc/<pid>/status`; the clients run in this process. Not
//! part of CI: on a shared 2-CPU VM the scheduler and the clients compete for the same cores.
//!
//! ```text
//! cargo build --release -p ciao-bench -p ciao-scheduler
//! target/release/ssntp-bench
//! ```
//!
//! See `bench/README.md` for what is measured and how.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use ciao_bench::host::{
    cpu_time, machine_busy, round3, rss_kib, scheduler_address, status_kib, wait_quiet,
};
use clap::Parser;
use serde::Serialize;
use ssntp::certs::{write_pem, Authority, Names, Secrecy, Shape, Validity};
use ssntp::client::{dial, Session};
use ssntp::frame::{event, kind, role, Frame};
use ssntp::payloads::{Payload, TenantAdded, TenantAddedEvent};
use ssntp::tls::{ca_from_pem, client_config, ClientOptions, Identity};
use tokio::sync::{oneshot, Semaphore};
use tokio::task::JoinSet;
use uuid::Uuid;

/// How long a sender waits for the CNCI to see its frame before the run is declared broken.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// RSS sampling period during the flood.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// File descriptors this process needs besides one per client.
const SPARE_FDS: u64 = 64;

#[derive(Parser)]
#[command(
    name = "ssntp-bench",
    about = "SSNTP forwarding benchmark of ciao-scheduler"
)]
struct Args {
    /// The scheduler binary (default: ciao-scheduler next to this binary).
    #[arg(long)]
    scheduler: Option<PathBuf>,
    /// Clients connected in total: 1 CNCI, the senders, and idle agents for the rest.
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Concurrent senders in the second latency phase and in the flood.
    #[arg(long, default_value_t = 100)]
    senders: usize,
    /// TLS handshakes in flight while connecting the clients.
    #[arg(long, default_value_t = 50)]
    connect_concurrency: usize,
    /// Seconds measured in each latency phase (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    latency_secs: f64,
    /// Seconds of traffic before each latency phase that are not measured.
    #[arg(long, default_value_t = 1.0)]
    warmup_secs: f64,
    /// Seconds the senders flood the CNCI.
    #[arg(long, default_value_t = 10.0)]
    flood_secs: f64,
    /// The scheduler's per-destination queue depth (its `--queue-depth`).
    #[arg(long, default_value_t = 256)]
    queue_depth: usize,
    /// Let the bench's clients resume TLS sessions. Off by default: each Go client is its own
    /// process without a session cache, so every connection pays for a full handshake.
    #[arg(long)]
    tls_resumption: bool,
    /// Seconds to wait at start for the machine to fall below 15 % busy (0: don't wait).
    #[arg(long, default_value_t = 60)]
    quiet_wait_secs: u64,
    /// JSON results.
    #[arg(long, default_value_os_t = default_out())]
    out: PathBuf,
}

fn default_out() -> PathBuf {
    workspace_dir().join("bench/results/ssntp-latest.json")
}

fn workspace_dir() -> PathBuf {
    let bench = Path::new(env!("CARGO_MANIFEST_DIR"));
    bench.parent().unwrap_or(bench).to_path_buf()
}

// ---------------------------------------------------------------------------------------------
// The scheduler process

/// The `ciao-scheduler` child; killed (by PID) when dropped, so every exit path cleans it up.
struct SchedulerProcess {
    child: Child,
    addr: String,
}

impl SchedulerProcess {
    fn start(bin: &Path, cert: &Path, ca: &Path, queue_depth: usize) -> Result<Self> {
        let mut child = Command::new(bin)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--cert")
            .arg(cert)
            .arg("--ca")
            .arg(ca)
            .arg("--queue-depth")
            .arg(queue_depth.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        let stderr = child.stderr.take();
        // From here on the guard owns the child, so an error below still kills it.
        let mut guard = SchedulerProcess {
            child,
            addr: String::new(),
        };
        let stderr = stderr.ok_or_else(|| anyhow!("no stderr pipe to the scheduler"))?;
        guard.addr = scheduler_address(stderr, true)?;
        Ok(guard)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails if the scheduler died: every number after that would be meaningless.
    fn check_alive(&mut self) -> Result<()> {
        match self.child.try_wait()? {
            Some(status) => bail!("ciao-scheduler exited: {status}"),
            None => Ok(()),
        }
    }
}

impl Drop for SchedulerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Kernel memory of all TCP sockets on the machine (`/proc/net/sockstat`, pages), in KiB:
/// where frames accepted from a flooding sender wait when the scheduler stops reading it.
fn tcp_kernel_kib() -> Result<u64> {
    let text = std::fs::read_to_string("/proc/net/sockstat").context("read /proc/net/sockstat")?;
    let pages: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("TCP:"))
        .and_then(|l| {
            let mut words = l.split_whitespace();
            while let Some(w) = words.next() {
                if w == "mem" {
                    return words.next()?.parse().ok();
                }
            }
            None
        })
        .ok_or_else(|| anyhow!("no TCP mem in /proc/net/sockstat"))?;
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(4096)
        .max(1) as u64;
    Ok(pages * page / 1024)
}

/// CPU use of the scheduler, of this process and of the machine over a phase, in % of one core.
struct CpuMeter {
    sched_pid: String,
    start: Instant,
    sched: Duration,
    bench: Duration,
    machine: Duration,
}

impl CpuMeter {
    fn start(pid: u32) -> Result<Self> {
        let sched_pid = pid.to_string();
        Ok(CpuMeter {
            sched: cpu_time(&sched_pid)?,
            bench: cpu_time("self")?,
            machine: machine_busy()?,
            sched_pid,
            start: Instant::now(),
        })
    }

    fn stop(&self) -> Result<CpuUse> {
        let wall = self.start.elapsed().as_secs_f64().max(1e-9);
        let pct = |d: Duration| (d.as_secs_f64() / wall * 1000.0).round() / 10.0;
        Ok(CpuUse {
            scheduler_pct: pct(cpu_time(&self.sched_pid)?.saturating_sub(self.sched)),
            bench_pct: pct(cpu_time("self")?.saturating_sub(self.bench)),
            machine_pct: pct(machine_busy()?.saturating_sub(self.machine)),
        })
    }
}

#[derive(Debug, Clone, Serialize)]
struct CpuUse {
    scheduler_pct: f64,
    bench_pct: f64,
    /// The whole machine, kernel softirq work included; up to 100 % per core.
    machine_pct: f64,
}

// ---------------------------------------------------------------------------------------------
// Certificates and clients

/// Client TLS configurations, one per role: RSA-2048 generation is slow, so each role's
/// certificate is made once and shared by all clients of that role.
struct Certs {
    _dir: tempfile::TempDir,
    scheduler_pem: PathBuf,
    ca_pem: PathBuf,
    agent: Arc<rustls::ClientConfig>,
    cnci: Arc<rustls::ClientConfig>,
}

fn make_certs(resumption: bool) -> Result<Certs> {
    let localhost = Names::new(&["localhost"], &[IpAddr::V4(Ipv4Addr::LOCALHOST)]);
    let authority = Authority::new(Shape::Ciao, "ssntp-bench", Validity::days(365), &localhost)
        .context("make the scheduler certificate")?;
    let dir = tempfile::tempdir().context("temporary directory")?;
    let scheduler_pem = write_pem(
        dir.path(),
        "cert-scheduler-localhost.pem",
        &authority.anchor().combined_pem(),
        Secrecy::PrivateKey,
    )?;
    let ca_pem = write_pem(
        dir.path(),
        "CAcert-localhost.pem",
        authority.cert_pem(),
        Secrecy::Public,
    )?;
    let ca = ca_from_pem(authority.cert_pem().as_bytes()).context("CA certificate")?;
    let client = |bits: u32| -> Result<Arc<rustls::ClientConfig>> {
        let issued = authority
            .issue(bits, &Names::new(&["localhost"], &[]))
            .context("issue a client certificate")?;
        let identity = Identity::from_pem(issued.combined_pem().as_bytes())?;
        let shared = client_config(&ca, identity, &ClientOptions::default())?;
        if resumption {
            return Ok(shared);
        }
        // One config serves many clients here; without this they would resume each other's
        // sessions and skip the RSA work a real client does.
        let mut own = (*shared).clone();
        own.resumption = rustls::client::Resumption::disabled();
        Ok(Arc::new(own))
    };
    Ok(Certs {
        agent: client(role::AGENT)?,
        cnci: client(role::CNCIAGENT)?,
        _dir: dir,
        scheduler_pem,
        ca_pem,
    })
}

/// One connected client.
struct Client {
    uuid: Uuid,
    session: Session,
}

/// Connects `n` clients with at most `concurrency` TLS handshakes in flight.
async fn connect_many(
    addr: &str,
    tls: &Arc<rustls::ClientConfig>,
    role_bits: u32,
    n: usize,
    concurrency: usize,
) -> Result<Vec<Client>> {
    let gate = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut set = JoinSet::new();
    for _ in 0..n {
        let (gate, addr, tls) = (gate.clone(), addr.to_string(), tls.clone());
        set.spawn(async move {
            let _permit = gate.acquire_owned().await?;
            let uuid = Uuid::new_v4();
            let session = dial(&addr, "127.0.0.1", tls, uuid, role_bits)
                .await
                .context("connect a client")?;
            anyhow::Ok(Client { uuid, session })
        });
    }
    let mut out = Vec::with_capacity(n);
    while let Some(r) = set.join_next().await {
        out.push(r??);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Frames and the CNCI

/// A TenantAdded for `cnci` whose `agent_ip` carries a sequence number, so the CNCI can tell
/// which sender's frame arrived.
fn tenant_added(sender: Uuid, cnci: Uuid, seq: u32) -> Frame {
    let body = TenantAddedEvent {
        agent_uuid: sender.to_string(),
        agent_ip: Ipv4Addr::from(seq).to_string(),
        tenant_uuid: "b0f3e5f4-6d2a-4c1e-9f0a-1c2d3e4f5a6b".to_string(),
        tenant_subnet: "172.16.0.0/24".to_string(),
        concentrator_uuid: cnci.to_string(),
        concentrator_ip: "10.250.0.3".to_string(),
        // The scheduler routes by concentrator_uuid only; the key's value does not matter.
        subnet_key: 0xac10_0000,
        ..TenantAddedEvent::default()
    };
    Frame::new(
        kind::EVENT,
        event::TENANT_ADDED,
        sender,
        TenantAdded(body).to_yaml(),
    )
}

/// The sequence number of a frame made by [`tenant_added`]; a plain scan rather than a YAML
/// parse, to keep the receiving side cheap.
fn seq_of(payload: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(payload).ok()?;
    let start = text.find("agent_ip: ")? + "agent_ip: ".len();
    let value = text[start..].lines().next()?.trim().trim_matches('"');
    value.parse::<Ipv4Addr>().ok().map(u32::from)
}

/// What the CNCI's reader shares with the senders.
#[derive(Default)]
struct CnciState {
    /// Senders waiting for their frame, by sequence number.
    waiting: Mutex<HashMap<u32, oneshot::Sender<Instant>>>,
    received: AtomicU64,
    unparsed: AtomicU64,
    /// Why the CNCI session ended, if it did.
    ended: Mutex<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Reads the CNCI session as fast as it can, waking the sender of each frame.
fn spawn_cnci_reader(mut session: Session, state: Arc<CnciState>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let reason = loop {
            match session.reader.frame().await {
                Ok(Some(frame)) => {
                    let now = Instant::now();
                    state.received.fetch_add(1, Ordering::Relaxed);
                    match seq_of(&frame.payload) {
                        Some(seq) => {
                            if let Some(tx) = lock(&state.waiting).remove(&seq) {
                                let _ = tx.send(now);
                            }
                        }
                        None => {
                            state.unparsed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                Ok(None) => break "the scheduler closed the CNCI session".to_string(),
                Err(e) => break e.to_string(),
            }
        };
        *lock(&state.ended) = Some(reason);
    })
}

// ---------------------------------------------------------------------------------------------
// Phases

#[derive(Debug, Clone, Serialize)]
struct LatencyPhase {
    senders: usize,
    seconds: f64,
    frames: usize,
    frames_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    cpu: CpuUse,
}

/// Nearest-rank percentile of sorted milliseconds.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

struct Ctx {
    cnci_uuid: Uuid,
    cnci: Arc<CnciState>,
    seq: Arc<AtomicU32>,
}

/// Each of `senders` keeps one frame in flight: send, wait until the CNCI has it, repeat.
/// Frames sent during the warm-up are not counted.
async fn latency_phase(
    ctx: &Ctx,
    senders: &mut Vec<Client>,
    n: usize,
    warmup: Duration,
    window: Duration,
    pid: u32,
) -> Result<LatencyPhase> {
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + window;
    let mut set = JoinSet::new();
    for mut client in senders.drain(..n.min(senders.len())) {
        let (cnci, cnci_uuid, seq) = (ctx.cnci.clone(), ctx.cnci_uuid, ctx.seq.clone());
        set.spawn(async move {
            let mut samples = Vec::new();
            while Instant::now() < end {
                let seq = seq.fetch_add(1, Ordering::Relaxed);
                let frame = tenant_added(client.uuid, cnci_uuid, seq);
                let (tx, rx) = oneshot::channel();
                lock(&cnci.waiting).insert(seq, tx);
                let sent = Instant::now();
                client.session.writer.frame(&frame).await?;
                let got = tokio::time::timeout(DELIVERY_TIMEOUT, rx)
                    .await
                    .map_err(|_| anyhow!("frame {seq} not delivered within {DELIVERY_TIMEOUT:?}"))?
                    .map_err(|_| anyhow!("the CNCI reader stopped"))?;
                if sent >= measure_from && sent < end {
                    samples.push(got.saturating_duration_since(sent));
                }
            }
            anyhow::Ok((client, samples))
        });
    }
    tokio::time::sleep_until(measure_from.into()).await;
    let cpu = CpuMeter::start(pid)?;
    let mut samples = Vec::new();
    while let Some(r) = set.join_next().await {
        let (client, s) = r??;
        senders.push(client);
        samples.extend(s);
    }
    let cpu = cpu.stop()?;
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    Ok(LatencyPhase {
        senders: n,
        seconds: window.as_secs_f64(),
        frames: ms.len(),
        frames_per_s: (ms.len() as f64 / window.as_secs_f64()).round(),
        p50_ms: round3(percentile(&ms, 0.50)),
        p99_ms: round3(percentile(&ms, 0.99)),
        max_ms: round3(ms.last().copied().unwrap_or(f64::NAN)),
        cpu,
    })
}

#[derive(Debug, Clone, Serialize)]
struct Sample {
    t_s: f64,
    rss_kib: u64,
    tcp_kernel_kib: u64,
    delivered: u64,
}

#[derive(Debug, Clone, Serialize)]
struct Flood {
    senders: usize,
    seconds: f64,
    sent: u64,
    delivered: u64,
    delivered_per_s: f64,
    /// Fewest frames delivered in any whole second of the flood.
    min_delivered_in_1s: u64,
    /// Time after the senders stopped until the CNCI had every frame sent.
    drain_s: f64,
    rss_start_kib: u64,
    rss_peak_kib: u64,
    rss_end_kib: u64,
    /// Peak kernel memory of all TCP sockets: the frames queued in socket buffers.
    tcp_kernel_peak_kib: u64,
    cpu: CpuUse,
    timeline: Vec<Sample>,
}

/// Every sender writes frames back to back, never waiting for delivery, for `window`; the
/// CNCI reads as fast as it can. Samples the scheduler's RSS and the deliveries every 100 ms.
async fn flood_phase(
    ctx: &Ctx,
    senders: &mut Vec<Client>,
    n: usize,
    window: Duration,
    pid: u32,
) -> Result<Flood> {
    let sent = Arc::new(AtomicU64::new(0));
    let base = ctx.cnci.received.load(Ordering::Relaxed);
    let rss_start_kib = rss_kib(pid)?;
    let cpu = CpuMeter::start(pid)?;
    let start = Instant::now();
    let end = start + window;
    let mut set = JoinSet::new();
    for mut client in senders.drain(..n.min(senders.len())) {
        let seq = ctx.seq.fetch_add(1, Ordering::Relaxed);
        // No sender waits on this number, so the CNCI only counts it.
        let frame = tenant_added(client.uuid, ctx.cnci_uuid, seq);
        let sent = sent.clone();
        set.spawn(async move {
            while Instant::now() < end {
                client.session.writer.frame(&frame).await?;
                sent.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(client)
        });
    }
    let mut timeline = Vec::new();
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    loop {
        tick.tick().await;
        let now = Instant::now();
        timeline.push(Sample {
            t_s: round3(now.duration_since(start).as_secs_f64()),
            rss_kib: rss_kib(pid)?,
            tcp_kernel_kib: tcp_kernel_kib()?,
            delivered: ctx.cnci.received.load(Ordering::Relaxed) - base,
        });
        if now >= end {
            break;
        }
    }
    let delivered = timeline.last().map_or(0, |s| s.delivered);
    let cpu = cpu.stop()?;
    // A sender blocked by backpressure finishes its write once the scheduler reads again.
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(r) = set.join_next().await {
            senders.push(r??);
        }
        anyhow::Ok(())
    })
    .await
    .map_err(|_| anyhow!("senders still blocked 30 s after the flood"))??;
    let stopped = Instant::now();
    let total = sent.load(Ordering::Relaxed);
    while ctx.cnci.received.load(Ordering::Relaxed) - base < total {
        if let Some(why) = lock(&ctx.cnci.ended).clone() {
            bail!("CNCI session ended during the flood: {why}");
        }
        ensure!(
            stopped.elapsed() < Duration::from_secs(30),
            "the CNCI is missing {} frames 30 s after the flood",
            total - (ctx.cnci.received.load(Ordering::Relaxed) - base)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let drain_s = round3(stopped.elapsed().as_secs_f64());
    let per_tick = (Duration::from_secs(1).as_millis() / SAMPLE_EVERY.as_millis()).max(1) as usize;
    let min_delivered_in_1s = timeline
        .windows(per_tick + 1)
        .map(|w| w[per_tick].delivered - w[0].delivered)
        .min()
        .unwrap_or(0);
    Ok(Flood {
        senders: n,
        seconds: window.as_secs_f64(),
        sent: total,
        delivered,
        delivered_per_s: (delivered as f64 / window.as_secs_f64()).round(),
        min_delivered_in_1s,
        drain_s,
        rss_start_kib,
        rss_peak_kib: timeline.iter().map(|s| s.rss_kib).max().unwrap_or(0),
        rss_end_kib: rss_kib(pid)?,
        tcp_kernel_peak_kib: timeline.iter().map(|s| s.tcp_kernel_kib).max().unwrap_or(0),
        cpu,
        timeline,
    })
}

// ---------------------------------------------------------------------------------------------
// Results

#[derive(Debug, Clone, Serialize)]
struct Memory {
    rss_idle_kib: u64,
    rss_connected_kib: u64,
    per_client_kib: f64,
    rss_after_latency_kib: u64,
    rss_after_flood_kib: u64,
    /// VmHWM at the end: the scheduler's peak RSS over the whole run.
    hwm_kib: u64,
}

#[derive(Debug, Clone, Serialize)]
struct Results {
    clients: usize,
    senders: usize,
    queue_depth: usize,
    tls_resumption: bool,
    cpus: usize,
    nofile_soft: u64,
    /// The machine's CPU busy share (all cores) just before the scheduler started.
    busy_at_start_pct: f64,
    cert_generation_s: f64,
    connect_s: f64,
    memory: Memory,
    latency: Vec<LatencyPhase>,
    flood: Flood,
    cnci_unparsed_frames: u64,
}

impl Results {
    fn markdown(&self) -> String {
        let mut s = String::new();
        let m = &self.memory;
        let f = &self.flood;
        let _ = writeln!(
            s,
            "## ssntp-bench: ciao-scheduler, {} clients, queue depth {}, {} CPUs\n",
            self.clients, self.queue_depth, self.cpus
        );
        let _ = writeln!(
            s,
            "Set-up: machine {:.0}% busy before the start, certificates {:.1} s, {} TLS connections {:.1} s (session resumption {})\n",
            self.busy_at_start_pct,
            self.cert_generation_s,
            self.clients,
            self.connect_s,
            if self.tls_resumption { "on" } else { "off" }
        );
        let _ = writeln!(
            s,
            "| TenantAdded launcher → CNCI, one frame in flight per sender | frames/s | p50 ms | p99 ms | max ms | CPU scheduler / bench / machine |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|");
        for l in &self.latency {
            let _ = writeln!(
                s,
                "| {} sender(s), {} frames in {:.0} s | {:.0} | {:.3} | {:.3} | {:.3} | {:.0}% / {:.0}% / {:.0}% |",
                l.senders,
                l.frames,
                l.seconds,
                l.frames_per_s,
                l.p50_ms,
                l.p99_ms,
                l.max_ms,
                l.cpu.scheduler_pct,
                l.cpu.bench_pct,
                l.cpu.machine_pct
            );
        }
        let _ = writeln!(s, "\n| Scheduler memory (VmRSS) | KiB |");
        let _ = writeln!(s, "|---|---:|");
        let _ = writeln!(s, "| before any client | {} |", m.rss_idle_kib);
        let _ = writeln!(
            s,
            "| {} clients connected | {} |",
            self.clients, m.rss_connected_kib
        );
        let _ = writeln!(s, "| per client | {:.1} |", m.per_client_kib);
        let _ = writeln!(
            s,
            "| after the latency phases | {} |",
            m.rss_after_latency_kib
        );
        let _ = writeln!(s, "| after the flood | {} |", m.rss_after_flood_kib);
        let _ = writeln!(s, "| peak over the run (VmHWM) | {} |", m.hwm_kib);
        let _ = writeln!(
            s,
            "\n| Flood: {} senders back to back → 1 CNCI for {:.0} s | |",
            f.senders, f.seconds
        );
        let _ = writeln!(s, "|---|---:|");
        let _ = writeln!(s, "| frames sent (accepted by TCP) | {} |", f.sent);
        let _ = writeln!(s, "| frames delivered during the flood | {} |", f.delivered);
        let _ = writeln!(s, "| delivered / s | {:.0} |", f.delivered_per_s);
        let _ = writeln!(
            s,
            "| fewest delivered in any 1 s | {} |",
            f.min_delivered_in_1s
        );
        let _ = writeln!(
            s,
            "| drain after the senders stopped | {:.3} s |",
            f.drain_s
        );
        let _ = writeln!(s, "| scheduler RSS at start | {} KiB |", f.rss_start_kib);
        let _ = writeln!(
            s,
            "| scheduler RSS peak (100 ms samples) | {} KiB |",
            f.rss_peak_kib
        );
        let _ = writeln!(s, "| scheduler RSS at end | {} KiB |", f.rss_end_kib);
        let _ = writeln!(
            s,
            "| kernel TCP memory peak (all sockets) | {} KiB |",
            f.tcp_kernel_peak_kib
        );
        let _ = writeln!(
            s,
            "| CPU: scheduler / bench / machine | {:.0}% / {:.0}% / {:.0}% |",
            f.cpu.scheduler_pct, f.cpu.bench_pct, f.cpu.machine_pct
        );
        s
    }
}

// ---------------------------------------------------------------------------------------------

/// Raises the soft open-files limit to the hard one: 1,000 clients need 1,000 descriptors here
/// and as many in the scheduler, which inherits the limit.
fn raise_nofile(need: u64) -> Result<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).context("getrlimit")?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).context("setrlimit")?;
    }
    ensure!(
        hard >= need,
        "{need} file descriptors needed, the hard limit is {hard}: use fewer --clients"
    );
    Ok(hard)
}

fn scheduler_binary(arg: Option<PathBuf>) -> Result<PathBuf> {
    let bin = match arg {
        Some(p) => p,
        None => std::env::current_exe()
            .context("locate this binary")?
            .with_file_name("ciao-scheduler"),
    };
    ensure!(
        bin.is_file(),
        "{} not found: build it (cargo build --release -p ciao-scheduler) or pass --scheduler",
        bin.display()
    );
    Ok(bin)
}

async fn run(args: &Args, sched: &mut SchedulerProcess, certs: &Certs) -> Result<Results> {
    let pid = sched.pid();
    ensure!(
        args.clients > args.senders,
        "--clients must exceed --senders"
    );
    ensure!(args.senders >= 1, "--senders must be at least 1");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_idle_kib = rss_kib(pid)?;

    eprintln!("ssntp-bench: connecting {} clients", args.clients);
    let t = Instant::now();
    let mut cnci = connect_many(&sched.addr, &certs.cnci, role::CNCIAGENT, 1, 1).await?;
    let cnci = cnci.pop().ok_or_else(|| anyhow!("no CNCI"))?;
    let mut senders = connect_many(
        &sched.addr,
        &certs.agent,
        role::AGENT,
        args.senders,
        args.connect_concurrency,
    )
    .await?;
    let idle = connect_many(
        &sched.addr,
        &certs.agent,
        role::AGENT,
        args.clients - args.senders - 1,
        args.connect_concurrency,
    )
    .await?;
    let connect_s = round3(t.elapsed().as_secs_f64());
    sched.check_alive()?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_connected_kib = rss_kib(pid)?;

    let ctx = Ctx {
        cnci_uuid: cnci.uuid,
        cnci: Arc::new(CnciState::default()),
        seq: Arc::new(AtomicU32::new(1)),
    };
    let cnci_reader = spawn_cnci_reader(cnci.session, ctx.cnci.clone());

    let warmup = Duration::from_secs_f64(args.warmup_secs);
    let window = Duration::from_secs_f64(args.latency_secs);
    let mut latency = Vec::new();
    for n in [1, args.senders] {
        eprintln!("ssntp-bench: latency, {n} sender(s)");
        latency.push(latency_phase(&ctx, &mut senders, n, warmup, window, pid).await?);
        sched.check_alive()?;
    }
    let rss_after_latency_kib = rss_kib(pid)?;

    eprintln!("ssntp-bench: flood, {} senders", args.senders);
    let flood = flood_phase(
        &ctx,
        &mut senders,
        args.senders,
        Duration::from_secs_f64(args.flood_secs),
        pid,
    )
    .await?;
    sched.check_alive()?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after_flood_kib = rss_kib(pid)?;
    let hwm_kib = status_kib(pid, "VmHWM")?;

    if let Some(why) = lock(&ctx.cnci.ended).clone() {
        bail!("the CNCI session ended: {why}");
    }
    cnci_reader.abort();
    drop(idle);
    let connected = (rss_connected_kib as f64 - rss_idle_kib as f64) / args.clients as f64;
    Ok(Results {
        clients: args.clients,
        senders: args.senders,
        queue_depth: args.queue_depth,
        tls_resumption: args.tls_resumption,
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        nofile_soft: 0,
        busy_at_start_pct: f64::NAN,
        cert_generation_s: 0.0,
        connect_s,
        memory: Memory {
            rss_idle_kib,
            rss_connected_kib,
            per_client_kib: (connected * 10.0).round() / 10.0,
            rss_after_latency_kib,
            rss_after_flood_kib,
            hwm_kib,
        },
        latency,
        flood,
        cnci_unparsed_frames: ctx.cnci.unparsed.load(Ordering::Relaxed),
    })
}

fn main() -> Result<()> {
    let args = Args::parse();
    let nofile = raise_nofile(args.clients as u64 + SPARE_FDS)?;
    let bin = scheduler_binary(args.scheduler.clone())?;

    eprintln!("ssntp-bench: generating certificates (RSA-2048)");
    let t = Instant::now();
    let certs = make_certs(args.tls_resumption)?;
    let cert_generation_s = round3(t.elapsed().as_secs_f64());

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let busy_at_start_pct = if args.quiet_wait_secs > 0 {
        wait_quiet(
            Duration::from_secs(args.quiet_wait_secs),
            "ssntp-bench",
            || Ok(()),
        )?
    } else {
        f64::NAN
    };
    let mut sched =
        SchedulerProcess::start(&bin, &certs.scheduler_pem, &certs.ca_pem, args.queue_depth)?;
    eprintln!(
        "ssntp-bench: ciao-scheduler pid {} on {}",
        sched.pid(),
        sched.addr
    );
    let mut results = runtime.block_on(async {
        tokio::select! {
            r = run(&args, &mut sched, &certs) => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
        }
    })?;
    drop(sched);
    results.nofile_soft = nofile;
    results.cert_generation_s = cert_generation_s;
    results.busy_at_start_pct = busy_at_start_pct;

    println!("{}", results.markdown());
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(&results).context("serialise results")?;
    std::fs::write(&args.out, text).with_context(|| format!("write {}", args.out.display()))?;
    eprintln!("ssntp-bench: results in {}", args.out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_survive_the_payload() {
        let frame = tenant_added(Uuid::new_v4(), Uuid::new_v4(), 123_456_789);
        assert_eq!(seq_of(&frame.payload), Some(123_456_789));
    }
}
