//! `ciao-node`: inspect and repair a compute node's ciao networking state.
//!
//! The CNI plugin, the Docker plugin and the QEMU hooks all keep their state in one state
//! directory per node; this tool shows it and reconciles it with the kernel (after a crash, a
//! reboot, or workloads that vanished without a DEL).

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};

mod announce;
mod cnci;
mod delivery;
mod secgroups;
mod subnets;

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
    /// Print the node's tenant subnets, VNICs and undelivered reports, marking recorded links
    /// the kernel no longer has. Read-only: writes nothing, not even a missing directory.
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
        /// Log filter (tracing EnvFilter syntax, e.g. `info` or `ciao_node=debug`).
        #[arg(long, env = "RUST_LOG", default_value = "info")]
        log_level: String,
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
            log_level,
        } => {
            ciao_log::init(log_level).with_context(|| format!("log filter {log_level:?}"))?;
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
                secgroups: Default::default(),
            };
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(delivery.run())?;
        }
        Command::Show { json } => show(&cli.state_dir, *json)?,
        Command::Reconcile => {
            let summary = open()?.reconcile().context("reconcile")?;
            let groups = netcore::secgroups::reconcile(&cli.state_dir)
                .context("rebuild the security-group table")?;
            println!("repaired subnets: {}", list(&summary.repaired_nets));
            println!("removed vnics:    {}", list(&summary.removed_vnics));
            println!("removed links:    {}", list(&summary.removed_links));
            println!("released ips:     {}", list(&summary.released_ips));
            println!("filtered ports:   {}", groups.ingress.len());
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

/// Prints what the state directory records, read-only: showing never creates the directory
/// or a node identity, and never finishes an interrupted call (the next change does).
fn show(state_dir: &Path, json: bool) -> anyhow::Result<()> {
    let view = netcore::inspect::inspect(state_dir)
        .with_context(|| format!("read node state at {}", state_dir.display()))?;
    match (view, json) {
        (Some(view), true) => emit(&serde_json::to_string_pretty(&view)?)?,
        (Some(view), false) => emit(&render(&view)?)?,
        // The same shape as a state directory that records nothing.
        (None, true) => emit(&serde_json::to_string_pretty(&serde_json::json!({
            "state_dir": state_dir,
            "agent_uuid": null,
            "nets": [],
            "pending_reports": [],
            "interrupted": null,
            "namespace_owner": null,
        }))?)?,
        (None, false) => emit(&format!(
            "no ciao state at {}: nothing is attached on this node",
            state_dir.display()
        ))?,
    }
    Ok(())
}

/// Writes `text` and a newline to stdout; a reader that went away (`show | head`) is no error.
fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{}", text.trim_end_matches('\n')).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// " (missing)" after a recorded link that the kernel no longer has.
fn mark(state: netcore::inspect::LinkState) -> &'static str {
    match state {
        netcore::inspect::LinkState::Present => "",
        netcore::inspect::LinkState::Missing => " (missing)",
    }
}

/// The text form of `show`.
fn render(view: &netcore::inspect::NodeView) -> Result<String, std::fmt::Error> {
    use std::fmt::Write;
    let mut out = String::new();
    match view.agent_uuid {
        Some(uuid) => writeln!(out, "node {uuid}")?,
        None => writeln!(out, "node (no identity yet)")?,
    }
    if let Some(owner) = &view.namespace_owner {
        writeln!(
            out,
            "warning: this network namespace is the node of {}, not of {}: link states below \
             describe it (run show in the node's namespace)",
            owner.display(),
            view.state_dir.display()
        )?;
    }
    if view.is_empty() {
        writeln!(out, "nothing is attached on this node")?;
    }
    for n in &view.nets {
        let c = &n.net.config;
        let tunnel = match (&n.awaits_cnci, c.cnci, &n.refused) {
            (_, _, Some(r)) => format!(
                "no tunnel: refused by the controller: {} (since {})",
                r.reason, r.since
            ),
            (Some(wait), _, None) => format!(
                "no tunnel: awaits CNCI since {} ({} s)",
                wait.since, wait.waited_s
            ),
            (None, Some(cnci), None) => format!(
                "tunnel {}{} ({} id {} {} -> {})",
                n.net.tunnel,
                mark(n.tunnel_state),
                c.tunnel_kind,
                n.net.tunnel_id,
                n.net.local_ip,
                cnci.ip
            ),
            (None, None, None) => "no tunnel".to_string(),
        };
        writeln!(
            out,
            "tenant {} subnet {}: bridge {}{} {tunnel}, mtu {}, {} vnic(s)",
            c.tenant,
            c.subnet,
            n.net.bridge,
            mark(n.bridge_state),
            n.net.mtu,
            n.vnics.len()
        )?;
        for v in &n.vnics {
            let r = &v.record;
            let groups = if r.security_groups.is_empty() {
                String::new()
            } else {
                format!(" groups {}", r.security_groups.join(","))
            };
            writeln!(
                out,
                "  {} {} {} port {}{}{groups}",
                r.id.key(),
                r.ip,
                r.mac,
                r.host_ifname,
                mark(v.port)
            )?;
        }
    }
    writeln!(out, "pending reports: {}", view.pending_reports.len())?;
    for r in &view.pending_reports {
        writeln!(
            out,
            "  {:?} tenant {} subnet {} -> cnci {}",
            r.event, r.tenant_uuid, r.tenant_subnet, r.concentrator_uuid
        )?;
    }
    if let Some(journal) = &view.interrupted {
        let text = serde_json::to_string(journal).unwrap_or_else(|e| e.to_string());
        writeln!(
            out,
            "interrupted call (the next call finishes or undoes it): {text}"
        )?;
    }
    if view
        .nets
        .iter()
        .flat_map(|n| &n.vnics)
        .any(|v| v.port == netcore::inspect::LinkState::Missing)
    {
        writeln!(
            out,"a port marked (missing) belongs to a workload gone without a DEL: `ciao-node reconcile` detaches it")?;
    }
    Ok(out)
}
