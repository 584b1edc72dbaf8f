//! `ciao-scheduler`: the SSNTP scheduler's networking half. It forwards TenantAdded and
//! TenantRemoved to the CNCI they name, public-IP and refresh commands from the master
//! controller to CNCIs, CNCI events and errors to all controllers, and tells controllers about
//! nodes. It does not place workloads (START, DELETE, EVACUATE are dropped).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
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
    /// YAML sent to clients in CONNECTED (`configure:` ...).
    #[arg(long)]
    configuration: Option<PathBuf>,
    /// Seconds a new connection may take to send CONNECT.
    #[arg(long, default_value_t = 30.0)]
    connect_timeout: f64,
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let cert =
        std::fs::read(&args.cert).with_context(|| format!("read {}", args.cert.display()))?;
    let ca = std::fs::read(&args.ca).with_context(|| format!("read {}", args.ca.display()))?;
    let identity = ssntp::tls::Identity::from_pem(&cert).context("scheduler certificate")?;
    let ca = ssntp::tls::ca_from_pem(&ca).context("CA certificate")?;
    let tls = ssntp::tls::server_config(&ca, identity, &ssntp::tls::ServerOptions::default())
        .context("TLS configuration")?;
    let mut cfg = SchedulerConfig::new(args.uuid.unwrap_or_else(uuid::Uuid::new_v4));
    if let Some(path) = &args.configuration {
        cfg.configuration =
            std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    }
    cfg.connect_timeout = Duration::from_secs_f64(args.connect_timeout);
    cfg.queue_depth = args.queue_depth;
    cfg.hold_depth = args.hold_depth;
    cfg.hold_for = Duration::from_secs(args.hold_secs);
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("listen on {}", args.listen))?;
    eprintln!(
        "ciao-scheduler {} listening on {}",
        cfg.uuid,
        listener.local_addr()?
    );
    let scheduler = Scheduler::new(cfg);
    tokio::select! {
        r = scheduler.run_tls(listener, tls) => r.context("accept")?,
        _ = tokio::signal::ctrl_c() => eprintln!("ciao-scheduler: interrupted, exiting"),
    }
    Ok(())
}
