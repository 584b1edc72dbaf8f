//! `ciao-cnci-agent`: a tenant's CNCI on a network node (see the README).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use cnci_agent::cli::NodeArgs;
use cnci_agent::handlers::{Agent, Policy};
use cnci_agent::register::Limits;
use cnci_agent::{daemon, hub, names, show, state::AgentRecord, state::Store, uplink};
use uuid::Uuid;

#[derive(Parser)]
#[command(name = "ciao-cnci-agent", version, about)]
struct Cli {
    /// This CNCI's state directory (one per agent).
    #[arg(
        long,
        env = "CIAO_CNCI_STATE_DIR",
        default_value = "/var/lib/ciao-cnci"
    )]
    state_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the CNCI: build the tenant's hub, connect to the scheduler as role cnciagent, and
    /// follow TenantAdded/TenantRemoved, public IP commands and RefreshCNCI.
    Run(Box<RunArgs>),
    /// Print the recorded state and what the kernel has of it.
    Show {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Take the CNCI down: delete the tenant namespace, the uplink, the rules and the state.
    Destroy,
}

#[derive(clap::Args)]
struct RunArgs {
    #[command(flatten)]
    common: NodeArgs,
    /// The CNCI's identity: its SSNTP UUID, which CNs name as `concentrator_uuid`.
    #[arg(long)]
    uuid: Uuid,
    /// The tenant this CNCI serves; events for other tenants are refused.
    #[arg(long)]
    tenant: Uuid,
    /// Name of the tenant's network namespace; default `cnci-<first 8 hex digits of uuid>`.
    #[arg(long)]
    netns: Option<String>,
    /// DHCP lease time in seconds.
    #[arg(long, default_value_t = 3600)]
    lease_secs: u32,
    /// Most tenant subnets this CNCI carries; each costs a bridge, a tunnel device and a DHCP
    /// socket, so the default stays well inside a 1024 file-descriptor limit.
    #[arg(long, default_value_t = 512)]
    max_subnets: usize,
    /// Most compute nodes registered per subnet: a broadcast is copied to each of them.
    #[arg(long, default_value_t = 1024)]
    max_nodes_per_subnet: usize,
}

/// The daemon's log on stderr: one line per event, prefixed by its spans (the CNCI, then the
/// frame with its tenant and sending agent, then the subnet).
fn init_logging(filter: &str) -> anyhow::Result<()> {
    ciao_log::init(filter).with_context(|| format!("log filter {filter:?}"))
}

fn run(state_dir: &Path, args: RunArgs) -> anyhow::Result<()> {
    init_logging(&args.common.log_level)?;
    let span = tracing::info_span!("cnci", uuid = %args.uuid, tenant = %args.tenant);
    let _entered = span.enter();
    let store = Store::open(state_dir)?;
    let _lock = store.lock()?;
    let netns = args
        .netns
        .unwrap_or_else(|| names::default_netns(args.uuid));
    let uplink = match store.agent()? {
        Some(old) if old.uuid != args.uuid || old.tenant != args.tenant => bail!(
            "state directory {} belongs to CNCI {} of tenant {}",
            state_dir.display(),
            old.uuid,
            old.tenant
        ),
        Some(old) => old.uplink,
        None => uplink::allocate(args.uuid)?,
    };
    let record = AgentRecord {
        uuid: args.uuid,
        tenant: args.tenant,
        netns,
        underlay_ip: args.common.underlay_ip,
        external_dev: args.common.external_dev,
        uplink,
        dns: args.common.dns,
    };
    store.put_agent(&record)?;
    let tls = ssntp::tls::client_config_from_files(&args.common.cert, &args.common.ca)
        .context("TLS identity of the CNCI")?;
    let conn = daemon::Connection {
        server_name: args
            .common
            .server_name
            .unwrap_or_else(|| ssntp::client::host_of(&args.common.scheduler)),
        addr: args.common.scheduler,
        tls,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let daemon_span = span.clone();
    runtime.block_on(tracing::Instrument::instrument(
        async {
            let status = Store::open(state_dir)?;
            let policy = Policy {
                lease_secs: args.lease_secs,
                limits: Limits {
                    max_subnets: args.max_subnets,
                    max_nodes_per_subnet: args.max_nodes_per_subnet,
                },
                public_ranges: args.common.public_ranges,
            };
            let mut agent = Agent::start(store, record, policy)
                .context("bring the hub to its recorded state")?;
            daemon::run(&mut agent, &status, conn).await?;
            anyhow::Ok(())
        },
        daemon_span,
    ))
}

fn show(state_dir: &Path, json: bool) -> anyhow::Result<()> {
    let view = show::read(state_dir)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&view)?);
    } else {
        print!("{view}");
    }
    Ok(())
}

fn destroy(state_dir: &Path) -> anyhow::Result<()> {
    let Some(store) = Store::open_existing(state_dir)? else {
        return Ok(()); // nothing was ever recorded here
    };
    let _lock = store
        .lock()
        .context("stop the agent before destroying its CNCI")?;
    let Some(record) = store.agent()? else {
        return Ok(());
    };
    let desired = store.desired()?;
    // On any failure the records stay, so that a second `destroy` finds what is left.
    hub::destroy(&record, &desired.public_ips).context("destroy")?;
    drop(_lock);
    store.wipe()?;
    println!("CNCI {} destroyed", record.uuid);
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => run(&cli.state_dir, *args),
        Command::Show { json } => show(&cli.state_dir, json),
        Command::Destroy => destroy(&cli.state_dir),
    }
}
