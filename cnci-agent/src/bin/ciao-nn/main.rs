//! `ciao-nn`: the network node agent. It runs the CNCIs the controller places on this node,
//! one task each in this process (see the README, "Network node agent").

mod cncis;
mod node;
mod records;
mod show;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use cnci_agent::cli::NodeArgs;
use cnci_agent::handlers::Policy;
use cnci_agent::register::Limits;
use ssntp::client::{Client, ClientConfig, ClientEvent};
use ssntp::frame::role;

use crate::cncis::Shared;
use crate::node::{Identity, Node};
use crate::records::NodeDir;

#[derive(Parser)]
#[command(name = "ciao-nn", version, about)]
struct Cli {
    /// The node's state directory: its UUID and one directory per CNCI.
    #[arg(long, env = "CIAO_NN_STATE_DIR", default_value = "/var/lib/ciao-nn")]
    state_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the node: adopt the recorded CNCIs, connect to the scheduler as role netagent and
    /// follow the controller's START and DELETE.
    Run(Box<RunArgs>),
    /// Print the node and its CNCIs as recorded.
    Show {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    #[command(flatten)]
    common: NodeArgs,
    /// Most CNCIs on this node; a START beyond it is refused (0: no limit).
    #[arg(long, default_value_t = 0)]
    capacity: u32,
    /// Hubs built at once (at start, every recorded CNCI is adopted).
    #[arg(long, env = "CIAO_NN_PARALLEL", default_value_t = 4)]
    parallel: usize,
}

/// Raises the soft RLIMIT_NOFILE to the hard limit: every CNCI of the node takes descriptors
/// from this one process (netlink sockets, its namespace, its session, one per DHCP server).
fn raise_fd_limit() -> anyhow::Result<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).context("getrlimit(RLIMIT_NOFILE)")?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).context("setrlimit(RLIMIT_NOFILE)")?;
    }
    Ok(hard)
}

fn run(state_dir: &Path, args: RunArgs) -> anyhow::Result<()> {
    ciao_log::init(&args.common.log_level)
        .with_context(|| format!("log filter {:?}", args.common.log_level))?;
    match raise_fd_limit() {
        Ok(n) => tracing::info!("RLIMIT_NOFILE {n}"),
        Err(e) => tracing::warn!("could not raise RLIMIT_NOFILE: {e:#}"),
    }
    let dir = NodeDir::new(state_dir);
    let _lock = dir.lock()?;
    let me = dir.node_or_create()?;
    let tls = ssntp::tls::client_config_from_files(&args.common.cert, &args.common.ca)
        .context("TLS identity of the node")?;
    let shared = Arc::new(Shared {
        dir,
        policy: Policy {
            lease_secs: 3600,
            limits: Limits {
                max_subnets: 512,
                max_nodes_per_subnet: 1024,
            },
            public_ranges: args.common.public_ranges,
        },
        server_name: args
            .common
            .server_name
            .unwrap_or_else(|| ssntp::client::host_of(&args.common.scheduler)),
        addr: args.common.scheduler,
        tls,
        building: tokio::sync::Semaphore::new(args.parallel.max(1)),
    });
    let identity = Identity {
        uuid: me.uuid,
        underlay_ip: args.common.underlay_ip,
        external_dev: args.common.external_dev,
        dns: args.common.dns,
        capacity: args.capacity,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let span = tracing::info_span!("nn", node = %me.uuid);
    runtime.block_on(tracing::Instrument::instrument(
        serve(Node::new(identity, shared.clone()), shared),
        span,
    ))
}

/// The node's session until SIGINT or SIGTERM; the CNCIs' kernel objects stay behind.
async fn serve(
    (mut node, mut failed): (Node, tokio::sync::mpsc::UnboundedReceiver<uuid::Uuid>),
    shared: Arc<Shared>,
) -> anyhow::Result<()> {
    shared.dir.put_status(false);
    let pending = node.adopt().await?;
    tracing::info!(
        "ciao-nn {} ready: underlay {}",
        node.me.uuid,
        node.me.underlay_ip
    );
    let (client, mut events) = Client::spawn(ClientConfig {
        addr: shared.addr.clone(),
        server_name: shared.server_name.clone(),
        tls: shared.tls.clone(),
        uuid: node.me.uuid,
        role: role::NETAGENT,
        max_backoff: Duration::from_secs(5),
    });
    for frame in pending {
        client.send(frame).await?;
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    // Also every REPORT_EVERY while connected: a controller that connected after this node (or
    // lost its store) learns of it without a frame to ask with.
    let mut report = tokio::time::interval(REPORT_EVERY);
    report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut connected = false;
    loop {
        let event = tokio::select! {
            e = events.recv() => e,
            _ = report.tick() => {
                if connected {
                    client.send(node.report()).await?;
                }
                continue;
            }
            Some(cnci) = failed.recv() => {
                if let Some(frame) = node.start_failed(cnci) {
                    client.send(frame).await?;
                }
                continue;
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        };
        let Some(event) = event else { break };
        let reply = match event {
            ClientEvent::Connected(hello) => {
                tracing::info!("connected to scheduler {}", hello.uuid);
                shared.dir.put_status(true);
                connected = true;
                report.reset();
                Some(node.report())
            }
            ClientEvent::Frame(frame) => node.handle(&frame).await,
            ClientEvent::Disconnected(reason) => {
                tracing::warn!("scheduler session: {reason}; reconnecting");
                shared.dir.put_status(false);
                connected = false;
                None
            }
        };
        if let Some(frame) = reply {
            client.send(frame).await?;
        }
    }
    tracing::info!("stopping; the CNCIs' namespaces, links and rules stay");
    node.stop_all().await;
    shared.dir.put_status(false);
    Ok(())
}

/// How often a connected node repeats its NodeReport.
const REPORT_EVERY: Duration = Duration::from_secs(30);

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => run(&cli.state_dir, *args),
        Command::Show { json } => show::print(&cli.state_dir, json),
    }
}
