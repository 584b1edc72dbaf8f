//! `ciao-node`: inspect and repair a compute node's ciao networking state.
//!
//! The CNI plugin, the Docker plugin and the QEMU hooks all keep their state in one state
//! directory per node; this tool shows it and reconciles it with the kernel (after a crash, a
//! reboot, or workloads that vanished without a DEL).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

mod announce;
mod delivery;

#[derive(Parser)]
#[command(name = "ciao-node", version, about)]
struct Cli {
    /// The node's state directory (the CNI config's `stateDir`).
    #[arg(long, env = "CIAO_STATE_DIR", default_value = netcore::NodeConfig::DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the node's tenant subnets, VNICs and undelivered reports.
    Show {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run the node's SSNTP session: deliver recorded TenantAdded/TenantRemoved reports to the
    /// scheduler, reconnecting forever. One per node.
    Run {
        /// Scheduler address, host:port.
        #[arg(long, default_value = "127.0.0.1:8888")]
        scheduler: String,
        /// Name (DNS or IP) to verify the scheduler's certificate against; default: the host part.
        #[arg(long)]
        server_name: Option<String>,
        /// This node's certificate and key (role agent), one PEM file as ciao-cert writes it.
        #[arg(long)]
        cert: PathBuf,
        /// The CA certificate.
        #[arg(long)]
        ca: PathBuf,
        /// Milliseconds between looks for new reports.
        #[arg(long, default_value_t = 200)]
        poll_ms: u64,
    },
    /// Finish or undo interrupted calls, re-create missing bridges and tunnels, drop VNICs whose
    /// workload is gone, remove stray links labelled as ours, release unowned addresses.
    Reconcile,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let open = || {
        netcore::Node::open(&netcore::NodeConfig {
            state_dir: cli.state_dir.clone(),
        })
        .with_context(|| format!("open node state at {}", cli.state_dir.display()))
    };
    match &cli.command {
        Command::Run {
            scheduler,
            server_name,
            cert,
            ca,
            poll_ms,
        } => {
            tracing_subscriber::fmt()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                )
                .init();
            let tls = ssntp::tls::client_config_from_files(cert, ca)
                .context("TLS identity of the node")?;
            let delivery = delivery::Delivery {
                state_dir: cli.state_dir.clone(),
                scheduler: scheduler.clone(),
                server_name: server_name
                    .clone()
                    .unwrap_or_else(|| ssntp::client::host_of(scheduler)),
                tls,
                poll: std::time::Duration::from_millis(*poll_ms),
            };
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(delivery.run())?;
        }
        Command::Show { json } => {
            let view = open()?.view().context("read node state")?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&view)?);
            } else {
                print_view(&view);
            }
        }
        Command::Reconcile => {
            let summary = open()?.reconcile().context("reconcile")?;
            println!("repaired subnets: {}", list(&summary.repaired_nets));
            println!("removed vnics:    {}", list(&summary.removed_vnics));
            println!("removed links:    {}", list(&summary.removed_links));
            println!("released ips:     {}", list(&summary.released_ips));
        }
    }
    Ok(())
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "-".into()
    } else {
        items.join(", ")
    }
}

fn print_view(view: &netcore::maintain::NodeView) {
    println!("node {}", view.agent_uuid);
    for n in &view.nets {
        let c = &n.net.config;
        println!(
            "tenant {} subnet {}: bridge {} tunnel {} ({} id {} {} -> {}), mtu {}, {} vnic(s)",
            c.tenant,
            c.subnet,
            n.net.bridge,
            n.net.tunnel,
            c.tunnel_kind,
            n.net.tunnel_id,
            n.net.local_ip,
            c.cnci.ip,
            n.net.mtu,
            n.vnics.len()
        );
        for v in &n.vnics {
            println!("  {} {} {} port {}", v.id.key(), v.ip, v.mac, v.host_ifname);
        }
    }
    println!("pending reports: {}", view.pending_reports.len());
    for r in &view.pending_reports {
        println!(
            "  {:?} tenant {} subnet {} -> cnci {}",
            r.event, r.tenant_uuid, r.tenant_subnet, r.concentrator_uuid
        );
    }
}
