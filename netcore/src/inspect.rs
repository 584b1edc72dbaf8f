//! A read-only look at a node: what its state directory records, and whether the recorded
//! links still exist. Nothing here creates, locks for writing, or changes anything, so an
//! operator's `show` can never make a state directory or a node identity, nor finish a journal.
//!
//! Links are looked up by name in the calling process's network namespace (the node's, when
//! run as the front ends run). A recorded port that is gone is what a runtime leaves when it
//! deletes a container without calling DEL (containerd's `ctr run -d` then `ctr task delete`):
//! `ciao-node reconcile` detaches such VNICs.

use std::path::{Path, PathBuf};

use serde::Serialize;
use uuid::Uuid;

use crate::error::Result;
use crate::report::Report;
use crate::state::{Journal, NetRecord, StateDir, VnicRecord};

/// Whether a recorded link exists in the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkState {
    Present,
    Missing,
}

impl LinkState {
    /// Looks `ifname` up in the calling thread's network namespace.
    pub fn of(ifname: &str) -> Self {
        match nix::net::if_::if_nametoindex(ifname) {
            Ok(_) => LinkState::Present,
            Err(_) => LinkState::Missing,
        }
    }
}

/// One recorded VNIC and whether its bridge port (veth host end or tap) still exists.
#[derive(Debug, Clone, Serialize)]
pub struct VnicView {
    #[serde(flatten)]
    pub record: VnicRecord,
    pub port: LinkState,
}

/// One recorded tenant subnet, the state of its bridge and tunnel, and its VNICs.
#[derive(Debug, Clone, Serialize)]
pub struct NetView {
    pub net: NetRecord,
    pub bridge_state: LinkState,
    pub tunnel_state: LinkState,
    /// Set while the subnet awaits its CNCI from the controller (it has no tunnel yet).
    pub awaits_cnci: Option<AwaitsCnci>,
    /// Set when the controller refused the subnet (it awaits nothing, new attaches fail).
    pub refused: Option<RefusedView>,
    pub vnics: Vec<VnicView>,
}

/// Why and since when the controller refuses a subnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefusedView {
    pub reason: String,
    /// RFC 3339, UTC.
    pub since: String,
    pub since_unix: u64,
}

/// Since when a subnet awaits its CNCI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AwaitsCnci {
    /// RFC 3339, UTC, e.g. `2026-12-02T11:00:00Z`.
    pub since: String,
    pub since_unix: u64,
    /// Seconds waited so far, when inspected.
    pub waited_s: u64,
}

impl AwaitsCnci {
    /// The wait of a subnet awaiting since `since_unix`, seen at `now_unix`.
    pub fn new(since_unix: u64, now_unix: u64) -> Self {
        AwaitsCnci {
            since: rfc3339(since_unix),
            since_unix,
            waited_s: now_unix.saturating_sub(since_unix),
        }
    }
}

/// Unix seconds as RFC 3339 UTC (`@<seconds>` if out of range).
fn rfc3339(unix: u64) -> String {
    i64::try_from(unix)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("@{unix}"))
}

/// Everything a state directory records, as found (nothing recovered or repaired).
#[derive(Debug, Clone, Serialize)]
pub struct NodeView {
    pub state_dir: PathBuf,
    /// The node's SSNTP identity; `None` until a call made one.
    pub agent_uuid: Option<Uuid>,
    pub nets: Vec<NetView>,
    pub pending_reports: Vec<Report>,
    /// A call that was killed mid-way; the next call that changes the node finishes or undoes
    /// it.
    pub interrupted: Option<Journal>,
    /// Another state directory that owns the namespace the links were looked up in: then the
    /// link states describe that node, not this one (`show` run in the wrong namespace).
    pub namespace_owner: Option<PathBuf>,
}

impl NodeView {
    /// True if the directory records nothing at all.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty() && self.pending_reports.is_empty() && self.interrupted.is_none()
    }
}

/// Reads the node state at `root` without writing anything; `None` if there is no state
/// there (the directory is missing or empty).
pub fn inspect(root: &Path) -> Result<Option<NodeView>> {
    let Some(dir) = StateDir::existing(root)? else {
        return Ok(None);
    };
    let reader = dir.read()?;
    let mut nets = Vec::new();
    for net in reader.nets()? {
        let vnics = reader
            .vnics(&net.key)?
            .into_iter()
            .map(|record| VnicView {
                port: LinkState::of(&record.host_ifname),
                record,
            })
            .collect();
        nets.push(NetView {
            bridge_state: LinkState::of(&net.bridge),
            tunnel_state: LinkState::of(&net.tunnel),
            awaits_cnci: net
                .awaiting_cnci_since
                .map(|since| AwaitsCnci::new(since, crate::assign::now_unix())),
            refused: net.refused.as_ref().map(|r| RefusedView {
                reason: r.reason.clone(),
                since: rfc3339(r.since),
                since_unix: r.since,
            }),
            net,
            vnics,
        });
    }
    Ok(Some(NodeView {
        state_dir: root.to_path_buf(),
        agent_uuid: reader.node_identity()?.map(|id| id.uuid),
        nets,
        pending_reports: reader.reports()?.into_iter().map(|(_, r)| r).collect(),
        interrupted: reader.journal()?,
        namespace_owner: other_owner(root),
    }))
}

/// The state directory that claimed this namespace, if it is not `root`. A claim that cannot
/// be read is no reason to refuse a look: `None`.
fn other_owner(root: &Path) -> Option<PathBuf> {
    let owner = crate::claim::owner_of_namespace().ok().flatten()?;
    let ours = std::fs::canonicalize(root).ok()?;
    (owner != ours).then_some(owner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Every path under `root` with its metadata that a write would change.
    fn tree(root: &Path) -> BTreeMap<PathBuf, (u64, i64, i64)> {
        use std::os::unix::fs::MetadataExt;
        let mut out = BTreeMap::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(p) = stack.pop() {
            let Ok(m) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            out.insert(p.clone(), (m.len(), m.mtime(), m.mtime_nsec()));
            if m.is_dir() {
                for e in std::fs::read_dir(&p).expect("list").flatten() {
                    stack.push(e.path());
                }
            }
        }
        out
    }

    #[test]
    fn an_absent_or_empty_directory_is_nothing_and_stays_as_it_was() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let absent = tmp.path().join("absent");
        assert!(inspect(&absent).expect("absent").is_none());
        assert!(!absent.exists(), "inspect created {}", absent.display());
        let empty = tmp.path().join("empty");
        std::fs::create_dir(&empty).expect("mkdir");
        let before = tree(tmp.path());
        assert!(inspect(&empty).expect("empty").is_none());
        assert_eq!(tree(tmp.path()), before);
    }

    #[test]
    fn a_recorded_directory_is_read_without_a_write() {
        let tmp = tempfile::tempdir().expect("tempdir");
        {
            // A directory some call made: records, but no identity and no lock file yet.
            let state = StateDir::open(tmp.path()).expect("open");
            assert!(!tmp.path().join("lock").exists());
            let _ = state;
        }
        let before = tree(tmp.path());
        let view = inspect(tmp.path())
            .expect("inspect")
            .expect("a state directory");
        assert!(view.is_empty() && view.agent_uuid.is_none(), "{view:?}");
        assert_eq!(tree(tmp.path()), before, "inspect wrote");
        // With a lock file (taken shared) and an identity.
        {
            let state = StateDir::open(tmp.path()).expect("open");
            let locked = state.lock().expect("lock");
            locked.node_identity().expect("identity");
        }
        let before = tree(tmp.path());
        let view = inspect(tmp.path())
            .expect("inspect")
            .expect("a state directory");
        assert!(view.agent_uuid.is_some());
        assert_eq!(tree(tmp.path()), before, "inspect wrote");
    }

    #[test]
    fn a_foreign_directory_is_refused_unwritten() {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::write(tmp.path().join("notes.txt"), "mine").expect("write");
        let before = tree(tmp.path());
        let err = inspect(tmp.path()).expect_err("foreign");
        assert!(
            err.to_string().contains("not a ciao state directory"),
            "{err}"
        );
        assert_eq!(tree(tmp.path()), before);
        assert!(inspect(Path::new("relative")).is_err());
    }

    #[test]
    fn a_wait_is_shown_in_utc() {
        let wait = AwaitsCnci::new(1_796_209_200, 1_796_209_242);
        assert_eq!(wait.since, "2026-12-02T11:00:00Z");
        assert_eq!(wait.waited_s, 42);
    }

    #[test]
    fn a_link_that_does_not_exist_is_missing() {
        assert_eq!(LinkState::of("lo"), LinkState::Present);
        assert_eq!(LinkState::of("cv-no-such-0"), LinkState::Missing);
    }
}
