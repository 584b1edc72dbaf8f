//! `ciao-controller`: provisions each tenant's CNCI on a network node it discovered and tells
//! compute nodes where to tunnel (see the README, section "Controller").

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use ciao_controller::api;
use ciao_controller::daemon::{self, identity, Connection, Controller};
use ciao_controller::{ControllerConfig, SqliteStore, Store};
use clap::Parser;

#[derive(Parser)]
#[command(name = "ciao-controller", version, about)]
struct Cli {
    /// The operator's config file (TOML; see the README).
    #[arg(
        long,
        env = "CIAO_CONTROLLER_CONFIG",
        default_value = "/etc/ciao/controller.toml"
    )]
    config: PathBuf,
    /// Log filter (tracing EnvFilter syntax).
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    log_level: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    ciao_log::init(&cli.log_level).context("--log-level")?;
    let cfg = ControllerConfig::load(&cli.config)?;
    // Certificates first: a bad file is refused before anything is made on disk.
    let tls = ssntp::tls::client_config_from_files(&cfg.scheduler.cert, &cfg.scheduler.ca)
        .context("config keys scheduler.cert / scheduler.ca")?;
    let store = SqliteStore::open_in(&cfg.state_dir)?;
    store
        .set_public_pools(&cfg.public_pools)
        .context("config key public_pools")?;
    store
        .set_ssh_policy(cfg.ssh)
        .context("config table [ssh]")?;
    let me = identity::load_or_create(&cfg.state_dir)?;
    let store: Arc<dyn Store> = Arc::new(store);
    // The admin API decides in the store, then tells the daemon what the nodes must follow.
    let (admin_tx, admin_rx) = tokio::sync::mpsc::channel(256);
    let socket = api::socket_path(&cfg.state_dir);
    let listener =
        api::bind(&socket).with_context(|| format!("admin socket {}", socket.display()))?;
    let api_store = store.clone();
    tokio::spawn(async move {
        if let Err(e) = api::serve(listener, api_store, admin_tx).await {
            tracing::error!("admin API stopped: {e}");
        }
    });
    let ctl =
        Controller::new(me, store, cfg.default_tunnel_kind).with_tenant_subnets(cfg.tenant_subnets);
    ctl.forget_sessions()?;
    tracing::info!(
        uuid = %me,
        state_dir = %cfg.state_dir.display(),
        scheduler = %cfg.scheduler.address,
        admin_socket = %socket.display(),
        "ciao-controller started"
    );
    let conn = Connection {
        server_name: cfg
            .scheduler
            .server_name
            .clone()
            .unwrap_or_else(|| ssntp::client::host_of(&cfg.scheduler.address)),
        addr: cfg.scheduler.address.clone(),
        tls,
    };
    daemon::run(ctl, conn, admin_rx).await?;
    Ok(())
}
