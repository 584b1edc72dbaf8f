//! `ciao-docker-plugin`: serves Docker's network and IPAM plugin protocol on a unix socket.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

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
        eprintln!(
            "ciao-docker-plugin: serving {} (state {})",
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
            shutdown,
        )
        .await
        .context("serve")?;
        let _ = std::fs::remove_file(&args.socket);
        eprintln!("ciao-docker-plugin: stopped");
        anyhow::Ok(())
    })
}
