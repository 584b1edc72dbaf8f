//! The node's socket for workloads that name no subnet (`<state_dir>/node.sock`, see
//! [`netcore::auto_subnet`]): a front end asks for its tenant's subnet, the session loop asks
//! the controller (EVENT SubnetRequest, every [`ASK_EVERY`] while unanswered) and the answer
//! (COMMAND SubnetAssignment) goes to the cache file, then to every waiting front end.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context;
use netcore::auto_subnet::{self, Reply, Request};
use ssntp::frame::{command, event, kind, Frame};
use ssntp::payloads::{Payload, SubnetAssignment, SubnetRequest};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{oneshot, Notify};
use uuid::Uuid;

/// How often an unanswered SubnetRequest is sent again.
pub const ASK_EVERY: Duration = Duration::from_secs(1);
/// A front end that connects must send its line within this.
const REQUEST_WITHIN: Duration = Duration::from_secs(5);

/// The tenants front ends wait for, shared by the socket and the session loop.
pub struct Asks {
    state_dir: PathBuf,
    waiters: Mutex<HashMap<Uuid, Vec<oneshot::Sender<Reply>>>>,
    /// Woken when a tenant starts waiting, so its request goes out at once.
    pub wake: Notify,
    /// Woken when an attach made a subnet, so its TenantAdded or CnciRequest goes out at once
    /// rather than at the next poll.
    pub changed: Notify,
}

impl Asks {
    pub fn new(state_dir: &Path) -> Arc<Asks> {
        Arc::new(Asks {
            state_dir: state_dir.to_owned(),
            waiters: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            changed: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Uuid, Vec<oneshot::Sender<Reply>>>> {
        self.waiters.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The tenants someone still waits for (front ends that gave up are forgotten).
    pub fn pending(&self) -> Vec<Uuid> {
        let mut all = self.lock();
        all.retain(|_, senders| {
            senders.retain(|s| !s.is_closed());
            !senders.is_empty()
        });
        all.keys().copied().collect()
    }

    /// SubnetRequest frames for every pending tenant.
    pub fn requests(&self, agent: Uuid) -> Vec<Frame> {
        self.pending()
            .into_iter()
            .map(|t| {
                let payload = SubnetRequest::new(agent, t).to_yaml();
                Frame::new(kind::EVENT, event::SUBNET_REQUEST, agent, payload)
            })
            .collect()
    }

    fn wait(&self, tenant: Uuid) -> oneshot::Receiver<Reply> {
        let (tx, rx) = oneshot::channel();
        self.lock().entry(tenant).or_default().push(tx);
        self.wake.notify_one();
        rx
    }

    /// Applies a SubnetAssignment: cached first (a grant), then told to the waiters.
    pub fn answer(&self, agent: Uuid, frame: &Frame) {
        let parsed = SubnetAssignment::from_yaml(&frame.payload)
            .and_then(|a| Ok((a.agent()?, a.tenant()?, a.outcome()?)));
        let (to, tenant, outcome) = match parsed {
            Ok(p) => p,
            Err(e) => return tracing::warn!("ignoring an unreadable SubnetAssignment: {e}"),
        };
        if to != agent {
            return tracing::warn!("ignoring a SubnetAssignment for node {to}");
        }
        let reply = match outcome {
            Ok((subnet, start, end)) => {
                let Ok(subnet) = format!("{subnet}").parse() else {
                    return tracing::warn!("ignoring a SubnetAssignment with subnet {subnet}");
                };
                let got = auto_subnet::AutoSubnet {
                    subnet,
                    range_start: start,
                    range_end: end,
                };
                if let Err(e) = auto_subnet::remember(&self.state_dir, tenant, got) {
                    // Unanswered: the next request's answer is cached again.
                    return tracing::error!(%tenant, "cannot cache the automatic subnet: {e}");
                }
                tracing::info!(%tenant, %subnet, %start, %end, "automatic subnet");
                Reply::Ok(got)
            }
            Err(why) => {
                tracing::warn!(%tenant, "automatic subnet refused: {why}");
                Reply::Error(why)
            }
        };
        for waiter in self.lock().remove(&tenant).unwrap_or_default() {
            let _ = waiter.send(reply.clone());
        }
    }
}

/// True for a COMMAND SubnetAssignment.
pub fn is_assignment(frame: &Frame) -> bool {
    (frame.kind, frame.operand) == (kind::COMMAND, command::SUBNET_ASSIGNMENT)
}

/// Binds the socket, mode 0600 from the start, replacing a stale one (the caller holds the
/// node's delivery lock, so no other daemon uses it).
pub fn listen(state_dir: &Path) -> anyhow::Result<UnixListener> {
    let path = auto_subnet::socket_path(state_dir);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("remove the stale {}", path.display()))
        }
        _ => {}
    }
    // umask is per process: this runs before any other task of the process creates files.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let bound = std::os::unix::net::UnixListener::bind(&path);
    nix::sys::stat::umask(old);
    let listener = bound.with_context(|| format!("listen on {}", path.display()))?;
    listener.set_nonblocking(true)?;
    Ok(UnixListener::from_std(listener)?)
}

/// Serves front ends until the process ends.
pub async fn serve(listener: UnixListener, asks: Arc<Asks>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(client(stream, asks.clone()));
            }
            Err(e) => {
                tracing::warn!("node socket: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One front end: its line, then the cached answer or the controller's, unless it goes away.
async fn client(stream: UnixStream, asks: Arc<Asks>) {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read.take(4096));
    let mut line = Vec::new();
    let got = tokio::time::timeout(REQUEST_WITHIN, read.read_until(b'\n', &mut line)).await;
    let reply = match got {
        Ok(Ok(_)) if line.ends_with(b"\n") => match serde_json::from_slice::<Request>(&line) {
            Ok(Request::Changed {}) => {
                asks.changed.notify_one();
                return;
            }
            Ok(Request::AutoSubnet { tenant }) => {
                match auto_subnet::cached(&asks.state_dir, tenant) {
                    Ok(Some(found)) => Reply::Ok(found),
                    Ok(None) => {
                        let rx = asks.wait(tenant);
                        let mut rest = [0u8; 1];
                        tokio::select! {
                            r = rx => match r {
                                Ok(reply) => reply,
                                Err(_) => return,
                            },
                            // The front end gave up (its bound passed) and closed.
                            _ = read.read(&mut rest) => return,
                        }
                    }
                    Err(e) => Reply::Error(e.to_string()),
                }
            }
            Err(e) => Reply::Error(format!("bad request: {e}")),
        },
        _ => Reply::Error("bad request: no line".into()),
    };
    if let Ok(mut out) = serde_json::to_vec(&reply) {
        out.push(b'\n');
        let _ = write.write_all(&out).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An attach's poke (netcore) over the real socket wakes the session loop's delivery;
    /// a tenant's ask still gets its line answered from the cache.
    #[tokio::test]
    async fn a_poke_wakes_the_delivery_and_an_ask_is_answered_from_the_cache() {
        let dir = tempfile::tempdir().expect("dir");
        let asks = Asks::new(dir.path());
        tokio::spawn(serve(listen(dir.path()).expect("listen"), asks.clone()));
        let root = dir.path().to_owned();
        tokio::task::spawn_blocking(move || auto_subnet::poke(&root))
            .await
            .expect("poke");
        tokio::time::timeout(Duration::from_secs(30), asks.changed.notified())
            .await
            .expect("the poke woke the delivery");

        let tenant = Uuid::new_v4();
        let got = auto_subnet::AutoSubnet {
            subnet: "172.16.0.0/24".parse().expect("net"),
            range_start: "172.16.0.2".parse().expect("ip"),
            range_end: "172.16.0.31".parse().expect("ip"),
        };
        auto_subnet::remember(dir.path(), tenant, got).expect("cache");
        let root = dir.path().to_owned();
        let answer = tokio::task::spawn_blocking(move || {
            auto_subnet::ask(
                &auto_subnet::socket_path(&root),
                tenant,
                Duration::from_secs(30),
            )
        })
        .await
        .expect("ask");
        assert_eq!(answer, Ok(got));
        assert!(
            asks.pending().is_empty(),
            "a cached tenant waits for nothing"
        );
    }
}
