//! Deletes the bridges of removed subnets on a thread of its own, a few per request.
//!
//! Deleting a bridge costs the kernel an RCU grace period under the global rtnl lock (the
//! bridge's VLAN group is freed after `synchronize_rcu`), in every way of deleting it, measured
//! on a busy 2-core node with 200 bridges: one RTM_DELLINK each 34 ms per bridge, one group
//! RTM_DELLINK 17 ms per bridge, deleting their namespace 16 ms per bridge; a bridge cannot move
//! to another namespace. Deleting [`CHUNK`] per group request halves the one-by-one cost and
//! holds the rtnl lock about 0.3 s at a time, so the agent's frames and other rtnl users get in
//! between.
//!
//! Even taking a bridge out of service costs: setting one down walks the namespace's routes
//! (0.12 ms with 200 subnets, 1.2 ms with 3,000, measured), so a removal frame only hands the
//! bridge over ([`Reaper::condemn`]: no request at all). While the agent is idle, this thread
//! condemns it (down, renamed [`crate::names::condemned`], so the subnet's name is free) and
//! deletes it. Until then the bridge has no tunnel and serves nobody; a re-add of its subnet
//! before then takes it back ([`Reaper::reprieve`]) instead of building a new one.

use std::collections::BTreeSet;
use std::marker::PhantomData;
use std::sync::{Arc, Condvar, Mutex};

use netcore::kernel::Kernel;

use crate::error::Result;
use crate::hub::HubKernel;

/// Bridges deleted per request (group of 8: 19 ms per bridge, 32: 17 ms, measured).
pub const CHUNK: usize = 16;

/// The link group a chunk is put in right before its one RTM_DELLINK. A crash between the two
/// leaves condemned bridges, which the restart reconcile finds by name.
pub const REAPING_GROUP: u32 = 0xc1a0_0de2;

#[derive(Default)]
struct Queue {
    /// Bridges of removed subnets, by ifindex, still under their subnet's name.
    to_condemn: BTreeSet<u32>,
    /// Condemned bridges to delete, by ifindex.
    pending: BTreeSet<u32>,
    /// Whether the agent is idle: deleting waits while frames are being handled, so that the
    /// rtnl lock each deletion holds does not slow the agent's own netlink requests.
    go: bool,
    stop: bool,
}

/// The handle the hub keeps; the thread owns a kernel handle `K` in the tenant namespace.
pub struct Reaper<K> {
    shared: Arc<(Mutex<Queue>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
    kernel: PhantomData<fn(K)>,
}

impl Queue {
    fn is_empty(&self) -> bool {
        self.pending.is_empty() && self.to_condemn.is_empty()
    }
}

fn lock(m: &Mutex<Queue>) -> std::sync::MutexGuard<'_, Queue> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Deletes the bridges `chunk` with one request: each is put in [`REAPING_GROUP`], then the
/// group is deleted. A bridge already gone is skipped.
fn delete_chunk<K: Kernel>(nl: &mut K, chunk: &[u32]) -> std::result::Result<(), netcore::Error> {
    let mut any = false;
    for index in chunk {
        match nl.set_group(*index, REAPING_GROUP) {
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
            Ok(()) => any = true,
        }
    }
    if !any {
        return Ok(());
    }
    match nl.delete_group(REAPING_GROUP) {
        Err(e) if !e.is_not_found() => Err(e),
        _ => Ok(()),
    }
}

/// Takes a bridge out of service for good: down (a bridge must be down to be renamed), then
/// renamed to [`crate::names::condemned`], which no subnet's bridge is ever called.
pub fn condemn<K: Kernel>(nl: &mut K, index: u32) -> std::result::Result<(), netcore::Error> {
    let Some(bridge) = nl.link_by_index(index)? else {
        return Ok(());
    };
    if bridge.up {
        nl.set_up(index, false)?;
    }
    let graveyard = crate::names::condemned(index);
    if bridge.name != graveyard {
        nl.set_name(index, &graveyard)?;
    }
    Ok(())
}

/// One step of the thread, with the queue locked: condemns one handed-over bridge (under the
/// lock, so [`Reaper::reprieve`] sees it either untouched or condemned, never half-way).
/// Returns false when there is none.
fn condemn_next<K: Kernel>(nl: &mut K, q: &mut Queue) -> bool {
    let Some(index) = q.to_condemn.pop_first() else {
        return false;
    };
    match condemn(nl, index) {
        Ok(()) => {
            q.pending.insert(index);
        }
        Err(e) => tracing::warn!("taking bridge #{index} out of service: {e}"),
    }
    true
}

impl<K: HubKernel> Reaper<K> {
    /// Starts the thread on `nl`, a kernel handle of its own in the tenant namespace.
    pub fn start(mut nl: K) -> Result<Reaper<K>> {
        let shared: Arc<(Mutex<Queue>, Condvar)> = Arc::default();
        let theirs = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("bridge-reaper".into())
            .spawn(move || {
                let (queue, changed) = &*theirs;
                loop {
                    let chunk: Vec<u32> = {
                        let mut q = lock(queue);
                        while (q.is_empty() || !q.go) && !q.stop {
                            q = changed.wait(q).unwrap_or_else(|p| p.into_inner());
                        }
                        if q.is_empty() {
                            return;
                        }
                        if condemn_next(&mut nl, &mut q) {
                            changed.notify_all();
                            continue;
                        }
                        q.pending.iter().take(CHUNK).copied().collect()
                    };
                    if let Err(e) = delete_chunk(&mut nl, &chunk) {
                        tracing::warn!("deleting condemned bridges {chunk:?}: {e}");
                    }
                    let mut q = lock(queue);
                    for index in &chunk {
                        q.pending.remove(index);
                    }
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
            kernel: PhantomData,
        })
    }

    /// Hands over the bridge of a removed subnet, still under its name: the thread condemns
    /// and deletes it while the agent is idle. Costs no kernel request.
    pub fn condemn(&self, index: u32) {
        let (queue, changed) = &*self.shared;
        lock(queue).to_condemn.insert(index);
        changed.notify_all();
    }

    /// Takes a handed-over bridge back for a subnet added again, if the thread has not
    /// condemned it yet (true: it is untouched, under its name, and the caller reuses it).
    pub fn reprieve(&self, index: u32) -> bool {
        lock(&self.shared.0).to_condemn.remove(&index)
    }

    /// Queues a condemned bridge for deletion.
    pub fn delete(&self, index: u32) {
        let (queue, changed) = &*self.shared;
        lock(queue).pending.insert(index);
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

    /// Blocks until every queued bridge is gone.
    pub fn wait_all(&self) {
        let (queue, changed) = &*self.shared;
        let mut q = lock(queue);
        q.go = true;
        changed.notify_all();
        while !q.is_empty() {
            q = changed.wait(q).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// How many bridges wait.
    pub fn pending(&self) -> usize {
        let q = lock(&self.shared.0);
        q.pending.len() + q.to_condemn.len()
    }
}

impl<K> Drop for Reaper<K> {
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
