//! Deletes the bridges of removed subnets on a thread of its own.
//!
//! Deleting a bridge costs the kernel an RCU grace period under the global rtnl lock (the
//! bridge's VLAN group is freed after `synchronize_net`): about 16 ms each on a busy 2-core
//! node, measured, batched or not. Deleting them one per request on this thread keeps the
//! agent's frames flowing and lets other rtnl users in between. A bridge waiting here has
//! already lost its tunnel ports, so it serves nobody; a name that waits here is not reused
//! until it is gone ([`Reaper::wait_gone`]).

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Condvar, Mutex};

use netcore::netlink::Netlink;

use crate::error::Result;

#[derive(Default)]
struct Queue {
    /// Bridges to delete: ifindex -> name.
    pending: BTreeMap<u32, String>,
    /// Whether the agent is idle: deleting waits while frames are being handled, so that the
    /// rtnl lock each deletion holds does not slow the agent's own netlink requests.
    go: bool,
    stop: bool,
}

/// The handle the hub keeps.
pub struct Reaper {
    shared: Arc<(Mutex<Queue>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn lock(m: &Mutex<Queue>) -> std::sync::MutexGuard<'_, Queue> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Reaper {
    /// Starts the thread with its own netlink socket in the tenant namespace.
    pub fn start(tenant_ns: OwnedFd) -> Result<Reaper> {
        let mut nl = Netlink::open_in(std::os::fd::AsFd::as_fd(&tenant_ns))?;
        let shared: Arc<(Mutex<Queue>, Condvar)> = Arc::default();
        let theirs = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("bridge-reaper".into())
            .spawn(move || {
                let (queue, changed) = &*theirs;
                loop {
                    let next = {
                        let mut q = lock(queue);
                        while (q.pending.is_empty() || !q.go) && !q.stop {
                            q = changed.wait(q).unwrap_or_else(|p| p.into_inner());
                        }
                        match q.pending.iter().next() {
                            Some((index, name)) => (*index, name.clone()),
                            None => return,
                        }
                    };
                    if let Err(e) = nl.delete_link(next.0) {
                        if !e.is_not_found() {
                            eprintln!("deleting bridge {}: {e}", next.1);
                        }
                    }
                    lock(queue).pending.remove(&next.0);
                    changed.notify_all();
                }
            })
            .map_err(|e| netcore::Error::Io {
                op: "start the bridge reaper".into(),
                source: e,
            })?;
        Ok(Reaper {
            shared,
            thread: Some(thread),
        })
    }

    /// Queues a bridge for deletion.
    pub fn delete(&self, index: u32, name: String) {
        let (queue, changed) = &*self.shared;
        lock(queue).pending.insert(index, name);
        changed.notify_all();
    }

    /// Holds deletions back while the agent is busy.
    pub fn pause(&self) {
        lock(&self.shared.0).go = false;
    }

    /// Lets deletions proceed.
    pub fn resume(&self) {
        let (queue, changed) = &*self.shared;
        lock(queue).go = true;
        changed.notify_all();
    }

    /// Blocks until no bridge named `name` waits for deletion.
    pub fn wait_gone(&self, name: &str) {
        let (queue, changed) = &*self.shared;
        let mut q = lock(queue);
        q.go = true;
        changed.notify_all();
        while q.pending.values().any(|n| n == name) {
            q = changed.wait(q).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Blocks until every queued bridge is gone.
    pub fn wait_all(&self) {
        let (queue, changed) = &*self.shared;
        let mut q = lock(queue);
        q.go = true;
        changed.notify_all();
        while !q.pending.is_empty() {
            q = changed.wait(q).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// How many bridges wait.
    pub fn pending(&self) -> usize {
        lock(&self.shared.0).pending.len()
    }
}

impl Drop for Reaper {
    /// Finishes the queue, so a stopping agent leaves no bridge its records do not want.
    fn drop(&mut self) {
        {
            let (queue, changed) = &*self.shared;
            lock(queue).stop = true;
            changed.notify_all();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
