//! The writer of the node-wide underlay table ([`nft::underlay_table`]): what this process
//! knows of the namespace's tables, and one `nft` transaction for the element changes of all
//! the CNCIs that ask at the same moment.
//!
//! Starting a CNCI used to run `nft list tables` and then an `add element` batch of its own.
//! `ciao-nn` starts many CNCIs at once in one process, so the table's existence (and which
//! earlier tables are there) is listed once per process and namespace and remembered; the
//! element changes that arrive while a transaction runs are queued and go together in the
//! next one (group commit). A failed transaction forgets what was known and runs each change
//! alone after a fresh listing, so a table deleted behind this process's back, or created by
//! another process at the same instant, costs a retry and nothing else.
//!
//! Swapping the `nft` process for a netlink writer later touches [`run`] and [`list_tables`]
//! only: the batching and the bookkeeping stay.
//!
//! [`nft::underlay_table`]: crate::nft::underlay_table

use std::collections::{BTreeSet, HashMap};
use std::os::fd::BorrowedFd;
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use ipnet::Ipv4Net;

use crate::error::{Error, Result};
use crate::nft::{self, Uplink, EARLIER};

/// One CNCI's change of the table.
#[derive(Debug, Clone)]
pub enum Change {
    /// Add its elements (and the node's underlay networks), move them out of earlier tables
    /// and delete `legacy`, its own table of a build before the node-wide one, if there.
    Add {
        uplink: Uplink,
        nets: Vec<Ipv4Net>,
        legacy: String,
    },
    /// Remove exactly its elements, from the current table and earlier ones.
    Remove { uplink: Uplink },
}

/// What this process knows of the namespace's ip tables: the last listing, kept up to date
/// with the transactions this process committed since.
#[derive(Debug, Default)]
struct Known {
    tables: BTreeSet<String>,
    /// Underlay networks already added to the current table.
    nets: BTreeSet<Ipv4Net>,
}

#[derive(Default)]
struct Queue {
    waiting: Vec<(u64, Change)>,
    results: HashMap<u64, std::result::Result<(), String>>,
    writing: bool,
    next: u64,
    known: Option<Known>,
}

/// The writers of this process, by namespace (device and inode of its nsfs file).
type Writers = HashMap<(u64, u64), Arc<Writer>>;

/// The writer of one namespace's table.
#[derive(Default)]
struct Writer {
    queue: Mutex<Queue>,
    done: Condvar,
}

/// Applies `change` in namespace `ns` (the caller's if `None`), together with the changes
/// other threads of this process ask for meanwhile.
pub fn apply(ns: Option<BorrowedFd<'_>>, change: Change) -> Result<()> {
    writer_of(ns)?.apply(ns, change)
}

/// The writer of the namespace `ns` is in, by the namespace's inode: every thread of this
/// process that writes to the same namespace shares it.
fn writer_of(ns: Option<BorrowedFd<'_>>) -> Result<Arc<Writer>> {
    static WRITERS: OnceLock<Mutex<Writers>> = OnceLock::new();
    let meta = match ns {
        Some(fd) => fd
            .try_clone_to_owned()
            .map(std::fs::File::from)
            .and_then(|f| f.metadata()),
        None => std::fs::metadata("/proc/thread-self/ns/net"),
    }
    .map_err(|e| Error::Nft(format!("identify the network namespace: {e}")))?;
    let mut all = WRITERS
        .get_or_init(Default::default)
        .lock()
        .map_err(|_| Error::Nft("writer registry poisoned".into()))?;
    Ok(all.entry((meta.dev(), meta.ino())).or_default().clone())
}

impl Writer {
    fn apply(&self, ns: Option<BorrowedFd<'_>>, change: Change) -> Result<()> {
        let poisoned = |_| Error::Nft("underlay table writer poisoned".into());
        let mut q = self.queue.lock().map_err(poisoned)?;
        let id = q.next;
        q.next += 1;
        q.waiting.push((id, change));
        loop {
            if let Some(r) = q.results.remove(&id) {
                return r.map_err(Error::Nft);
            }
            if q.writing {
                q = self.done.wait(q).map_err(poisoned)?;
                continue;
            }
            // Nobody writes: this thread commits everything queued, its own change included.
            q.writing = true;
            let batch = std::mem::take(&mut q.waiting);
            let mut known = q.known.take();
            drop(q);
            // A panic must not leave `writing` set (every other CNCI would wait forever).
            let results = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                commit(ns, &mut known, &batch)
            }))
            .unwrap_or_else(|_| {
                known = None;
                let e = || Err("the underlay table writer panicked".to_string());
                batch.iter().map(|(id, _)| (*id, e())).collect()
            });
            q = self.queue.lock().map_err(poisoned)?;
            q.known = known;
            q.writing = false;
            q.results.extend(results);
            self.done.notify_all();
        }
    }
}

/// Commits `batch` in one transaction; if that fails, each change alone after a fresh listing.
fn commit(
    ns: Option<BorrowedFd<'_>>,
    known: &mut Option<Known>,
    batch: &[(u64, Change)],
) -> Vec<(u64, std::result::Result<(), String>)> {
    let changes: Vec<&Change> = batch.iter().map(|(_, c)| c).collect();
    if transaction(ns, known, &changes).is_ok() {
        return batch.iter().map(|(id, _)| (*id, Ok(()))).collect();
    }
    batch
        .iter()
        .map(|(id, c)| {
            let r = transaction(ns, known, &[c]).map_err(|e| e.to_string());
            (*id, r)
        })
        .collect()
}

/// One `nft` transaction for `changes`, on what is known (listed first if nothing is). On
/// failure nothing is known any more: the next transaction lists again.
fn transaction(
    ns: Option<BorrowedFd<'_>>,
    known: &mut Option<Known>,
    changes: &[&Change],
) -> Result<()> {
    let k = match known.take() {
        Some(k) => k,
        None => Known {
            tables: list_tables(ns)?,
            nets: BTreeSet::new(),
        },
    };
    let (script, after) = render(&k, changes);
    if !script.is_empty() {
        run(ns, &script)?;
    }
    *known = Some(after);
    if let Some(k) = known.as_mut() {
        // The changes are committed; a table that stays only costs its rules until next time.
        if let Err(e) = drop_empty_earlier(ns, k) {
            tracing::warn!("deleting an unused underlay table of an earlier build: {e}");
        }
    }
    Ok(())
}

/// The script for `changes` on the tables `k` knows, and what is known once it is committed.
fn render(k: &Known, changes: &[&Change]) -> (String, Known) {
    let (table, ruleset) = nft::underlay_table();
    let mut tables = k.tables.clone();
    let mut nets = k.nets.clone();
    let earlier: Vec<&str> = EARLIER
        .iter()
        .copied()
        .filter(|t| k.tables.contains(*t))
        .collect();
    let mut script = String::new();
    let adds = changes.iter().any(|c| matches!(c, Change::Add { .. }));
    if adds && tables.insert(table.clone()) {
        script.push_str(&format!("create table ip {table}\n{ruleset}"));
    }
    for change in changes {
        match change {
            Change::Add {
                uplink,
                nets: wanted,
                legacy,
            } => {
                script.push_str(&uplink.add_script(&table));
                let new: Vec<Ipv4Net> = wanted
                    .iter()
                    .filter(|n| nets.insert(**n))
                    .copied()
                    .collect();
                script.push_str(&nft::underlay_nets_script(&table, &new));
                if tables.remove(legacy) {
                    script.push_str(&format!("delete table ip {legacy}\n"));
                }
                for t in &earlier {
                    script.push_str(&uplink.remove_earlier_script(t));
                }
            }
            Change::Remove { uplink } => {
                if tables.contains(&table) {
                    script.push_str(&uplink.remove_script(&table));
                }
                for t in &earlier {
                    script.push_str(&uplink.remove_earlier_script(t));
                }
            }
        }
    }
    (script, Known { tables, nets })
}

/// Deletes every earlier table that no uplink uses any more: its last CNCI moved to the
/// current table (or was destroyed), so its elements would guard nothing.
fn drop_empty_earlier(ns: Option<BorrowedFd<'_>>, k: &mut Known) -> Result<()> {
    let present: Vec<&str> = EARLIER
        .iter()
        .copied()
        .filter(|t| k.tables.contains(*t))
        .collect();
    for t in present {
        let set = nft::nft(ns, &["list", "set", "ip", t, "uplinks"], "")?;
        if !set.contains("elements") {
            run(ns, &format!("delete table ip {t}\n"))?;
            tracing::info!("deleted the underlay table {t} of an earlier build: no uplink uses it");
            k.tables.remove(t);
        }
    }
    Ok(())
}

/// Runs a script in one transaction.
fn run(ns: Option<BorrowedFd<'_>>, script: &str) -> Result<()> {
    nft::nft(ns, &["-f", "-"], script).map(|_| ())
}

/// The namespace's tables of family ip.
fn list_tables(ns: Option<BorrowedFd<'_>>) -> Result<BTreeSet<String>> {
    Ok(nft::table_names(ns)?.into_iter().collect())
}
