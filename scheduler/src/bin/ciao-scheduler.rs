//! `ciao-scheduler`: the SSNTP scheduler's networking half. It forwards TenantAdded and
//! TenantRemoved to the CNCI they name, public-IP and refresh commands from the master
//! controller to CNCIs, CNCI events and errors to all controllers, and tells controllers about
//! nodes. It does not place workloads (START, DELETE, EVACUATE are dropped).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use ssntp::payloads::{Configure, Payload};
use ssntp::server::{Scheduler, SchedulerConfig};

#[derive(Parser)]
#[command(name = "ciao-scheduler", version, about)]
struct Args {
    /// Address and port to listen on.
    #[arg(long, default_value = "0.0.0.0:8888")]
    listen: String,
    /// The scheduler's certificate and key (one PEM file, as ciao-cert writes it).
    #[arg(long)]
    cert: PathBuf,
    /// The CA certificate clients must be signed by.
    #[arg(long)]
    ca: PathBuf,
    /// The scheduler's SSNTP UUID (random if not given).
    #[arg(long)]
    uuid: Option<uuid::Uuid>,
    /// The cluster configuration sent in CONNECTED: a `configure:` YAML file in the shape of
    /// ciao's `payloads.Configure`, checked at start (an unknown key or a bad value is refused,
    /// naming it). Keys left out take ciao's defaults; without the file, the defaults alone.
    #[arg(long, visible_alias = "configuration")]
    cluster_config: Option<PathBuf>,
    /// Seconds a new connection may take from TCP accept to a complete CONNECT, the TLS
    /// handshake included (`--connect-timeout` is the older name).
    #[arg(long, visible_alias = "connect-timeout", default_value_t = 10.0)]
    handshake_timeout: f64,
    /// Connections accepted but not yet through CONNECT; one more drops the oldest of them.
    #[arg(long, default_value_t = ssntp::server::MAX_PENDING)]
    max_pending: usize,
    /// Log filter (tracing EnvFilter syntax, e.g. `info` or `ssntp=debug`).
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    log_level: String,
    /// Frames queued per destination before its senders wait (backpressure).
    #[arg(long, default_value_t = 256)]
    queue_depth: usize,
    /// TenantAdded/TenantRemoved frames held per CNCI that is not connected, delivered when it
    /// connects (0 drops them, as the Go scheduler does).
    #[arg(long, default_value_t = 4096)]
    hold_depth: usize,
    /// Seconds such a frame is held.
    #[arg(long, default_value_t = 600)]
    hold_secs: u64,
}

/// Raises the soft RLIMIT_NOFILE to the hard limit: every connection is a descriptor, and the
/// usual soft limit of 1024 is far below what a cluster's nodes need. Returns (before, after).
fn raise_fd_limit() -> anyhow::Result<((u64, u64), (u64, u64))> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).context("getrlimit(RLIMIT_NOFILE)")?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).context("setrlimit(RLIMIT_NOFILE)")?;
    }
    let now = getrlimit(Resource::RLIMIT_NOFILE).context("getrlimit(RLIMIT_NOFILE)")?;
    Ok(((soft, hard), now))
}

/// The CONNECTED payload from an operator's file: read strictly, sent as Go's scheduler sends
/// its own (re-marshalled, every key present).
fn cluster_config(path: &Path) -> anyhow::Result<Vec<u8>> {
    let text = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    let conf = Configure::from_operator_yaml(&text)
        .with_context(|| format!("--cluster-config {}", path.display()))?;
    Ok(conf.to_yaml())
}

fn init_logging(filter: &str) -> anyhow::Result<()> {
    ciao_log::init(filter).with_context(|| format!("log filter {filter:?}"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_logging(&args.log_level)?;
    // Checked first: a bad file is the operator's to fix before anything else happens.
    let configuration = match &args.cluster_config {
        Some(path) => Some(cluster_config(path)?),
        None => None,
    };
    let fd_limit = raise_fd_limit();
    let cert =
        std::fs::read(&args.cert).with_context(|| format!("read {}", args.cert.display()))?;
    let ca = std::fs::read(&args.ca).with_context(|| format!("read {}", args.ca.display()))?;
    let identity = ssntp::tls::Identity::from_pem(&cert).context("scheduler certificate")?;
    let ca = ssntp::tls::ca_from_pem(&ca).context("CA certificate")?;
    let tls = ssntp::tls::server_config(&ca, identity, &ssntp::tls::ServerOptions::default())
        .context("TLS configuration")?;
    let mut cfg = SchedulerConfig::new(args.uuid.unwrap_or_else(uuid::Uuid::new_v4));
    if let Some(configuration) = configuration {
        cfg.configuration = configuration;
    }
    cfg.handshake_timeout =
        Duration::try_from_secs_f64(args.handshake_timeout).context("--handshake-timeout")?;
    // Pending connections may hold at most half the descriptors: the other half stays for
    // authenticated sessions, so a flood of idle connections alone never exhausts them.
    let fd_soft = fd_limit
        .as_ref()
        .map(|(_, (soft, _))| *soft)
        .unwrap_or(1024);
    cfg.max_pending = args
        .max_pending
        .min(usize::try_from(fd_soft / 2).unwrap_or(usize::MAX))
        .max(1);
    cfg.queue_depth = args.queue_depth;
    cfg.hold_depth = args.hold_depth;
    cfg.hold_for = Duration::from_secs(args.hold_secs);
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("listen on {}", args.listen))?;
    // The banner is the first line on stderr, whatever the log level: tests and benchmarks
    // read the address from it.
    eprintln!(
        "ciao-scheduler {} listening on {}",
        cfg.uuid,
        listener.local_addr()?
    );
    match fd_limit {
        Ok(((soft, hard), (now_soft, now_hard))) => tracing::info!(
            soft,
            hard,
            now_soft,
            now_hard,
            "RLIMIT_NOFILE raised to the hard limit"
        ),
        Err(e) => tracing::warn!(error = %e, "could not raise RLIMIT_NOFILE"),
    }
    tracing::info!(
        handshake_timeout_s = args.handshake_timeout,
        max_pending = cfg.max_pending,
        max_pending_asked = args.max_pending,
        "limits"
    );
    let scheduler = Scheduler::new(cfg);
    tokio::select! {
        never = scheduler.run_tls(listener, tls) => match never {},
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted, exiting"),
    }
    Ok(())
}
