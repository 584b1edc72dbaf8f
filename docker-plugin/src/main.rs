//! `ciao-docker-plugin`: serves Docker's network and IPAM plugin protocol on a unix socket.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use tokio::net::UnixListener;
use tokio::signal::unix::{signal, SignalKind};

use ciao_docker_plugin::{server, Plugin};

/// Docker remote network + IPAM driver for ciao tenant overlay networks.
///
/// The driver's name is the socket's file name without `.sock`: with the default socket,
/// `docker network create -d ciao --ipam-driver ciao ...`.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Unix socket to serve; dockerd discovers plugins in /run/docker/plugins.
    #[arg(long, default_value = "/run/docker/plugins/ciao.sock")]
    socket: PathBuf,
    /// Node state directory, shared with the CNI plugin and the QEMU hooks of this node.
    #[arg(long, env = "CIAO_STATE_DIR", default_value = netcore::NodeConfig::DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// Log every call, not only failures.
    #[arg(long, short)]
    verbose: bool,
    /// Log filter (tracing EnvFilter syntax, e.g. `info` or `ciao_docker_plugin=debug`); each
    /// line of a call carries its `request{id call}` span.
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    log_level: String,
    /// Seconds a connection may take to send a request's headers, counted from when it starts
    /// waiting for them (so also how long an idle keep-alive connection is kept).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    header_timeout_secs: u64,
    /// Seconds from a request's headers to its answer, body included; a connection over it is
    /// closed.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    request_timeout_secs: u64,
    /// Connections served at once; more wait in the socket's listen backlog. Keep it well
    /// under the process's file descriptor limit (LimitNOFILE in the unit).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=65536))]
    max_connections: u64,
    /// Milliseconds to pause after a failed accept (e.g. out of file descriptors).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10000))]
    accept_backoff_ms: u64,
}

impl Args {
    fn limits(&self) -> server::Limits {
        server::Limits {
            header_timeout: Duration::from_secs(self.header_timeout_secs),
            request_timeout: Duration::from_secs(self.request_timeout_secs),
            max_connections: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
            accept_backoff: Duration::from_millis(self.accept_backoff_ms),
        }
    }
}

/// Removes a socket left by a killed instance; refuses if a live one still answers on it.
fn clear_stale_socket(path: &Path) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        bail!("{} is in use by a running plugin", path.display());
    }
    std::fs::remove_file(path).with_context(|| format!("remove stale {}", path.display()))
}

fn main() -> Result<()> {
    let args = Args::parse();
    ciao_log::init(&args.log_level).with_context(|| format!("log filter {:?}", args.log_level))?;
    let plugin = Plugin::open(&args.state_dir)
        .with_context(|| format!("open node state {}", args.state_dir.display()))?;
    if let Some(dir) = args.socket.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    clear_stale_socket(&args.socket)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("start tokio")?;
    runtime.block_on(async {
        let listener = UnixListener::bind(&args.socket)
            .with_context(|| format!("listen on {}", args.socket.display()))?;
        std::fs::set_permissions(&args.socket, std::fs::Permissions::from_mode(0o660))
            .with_context(|| format!("chmod {}", args.socket.display()))?;
        let limits = args.limits();
        tracing::info!(
            ?limits,
            "serving {} (state {})",
            args.socket.display(),
            args.state_dir.display()
        );
        let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        };
        server::serve(
            listener,
            Arc::new(Mutex::new(plugin)),
            args.verbose,
            limits,
            shutdown,
        )
        .await
        .context("serve")?;
        let _ = std::fs::remove_file(&args.socket);
        tracing::info!("stopped");
        anyhow::Ok(())
    })
}
