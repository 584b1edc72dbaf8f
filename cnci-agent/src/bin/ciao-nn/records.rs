//! The node's state directory: its identity (`node.json`, made once), the daemon's lock, and one
//! cnci-agent state directory per CNCI (`cncis/<uuid>/`, the layout `ciao-cnci-agent` uses, so
//! `ciao-cnci-agent --state-dir <dir>/cncis/<uuid> show` works on each). A CNCI being deleted
//! carries a `deleting` marker, written before anything is torn down.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cnci_agent::state::{AgentRecord, Store};
use cnci_agent::{names, uplink};
use ipnet::{IpNet, Ipv4Net};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Who this network node is: generated on the first run, never changed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeRecord {
    pub uuid: Uuid,
}

/// The marker of a CNCI whose deletion has begun.
const DELETING: &str = "deleting";

/// One recorded CNCI.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub record: AgentRecord,
    pub deleting: bool,
}

/// The node's state directory.
#[derive(Debug, Clone)]
pub struct NodeDir {
    dir: PathBuf,
}

impl NodeDir {
    pub fn new(dir: &Path) -> Self {
        NodeDir {
            dir: dir.to_path_buf(),
        }
    }

    pub fn cnci_dir(&self, cnci: Uuid) -> PathBuf {
        self.dir.join("cncis").join(cnci.to_string())
    }

    /// Takes the daemon's exclusive lock (creating the directory): one `ciao-nn` per directory.
    pub fn lock(&self) -> Result<nix::fcntl::Flock<std::fs::File>> {
        std::fs::create_dir_all(self.dir.join("cncis"))
            .with_context(|| format!("create {}", self.dir.display()))?;
        let path = self.dir.join("lock");
        let file = std::fs::File::create(&path).with_context(|| path.display().to_string())?;
        nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(
            |(_, e)| anyhow::anyhow!("another ciao-nn runs on {} ({e})", self.dir.display()),
        )
    }

    /// The node's identity, `None` before the first run.
    pub fn node(&self) -> Result<Option<NodeRecord>> {
        let path = self.dir.join("node.json");
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(
                serde_json::from_slice(&bytes).with_context(|| path.display().to_string())?,
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| path.display().to_string()),
        }
    }

    /// The node's identity, made and recorded on the first call.
    pub fn node_or_create(&self) -> Result<NodeRecord> {
        if let Some(node) = self.node()? {
            return Ok(node);
        }
        let node = NodeRecord {
            uuid: Uuid::new_v4(),
        };
        let path = self.dir.join("node.json");
        netcore::state::write_atomic(&path, &serde_json::to_vec_pretty(&node)?)
            .with_context(|| path.display().to_string())?;
        Ok(node)
    }

    /// Every recorded CNCI. With `tidy`, a directory without a record (a kill between its
    /// creation and the record's write: nothing was acted on) is removed.
    pub fn scan(&self, tidy: bool) -> Result<Vec<Recorded>> {
        let root = self.dir.join("cncis");
        let entries = match std::fs::read_dir(&root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| root.display().to_string()),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.with_context(|| root.display().to_string())?;
            let Some(uuid) = entry
                .file_name()
                .to_str()
                .and_then(|n| Uuid::parse_str(n).ok())
            else {
                continue;
            };
            let dir = entry.path();
            let Some(store) = Store::open_existing(&dir)? else {
                continue;
            };
            match store.agent()? {
                Some(record) if record.uuid == uuid => out.push(Recorded {
                    record,
                    deleting: dir.join(DELETING).exists(),
                }),
                Some(record) => tracing::warn!(
                    "{} holds the record of CNCI {}: left alone",
                    dir.display(),
                    record.uuid
                ),
                None if !tidy => {}
                None => {
                    tracing::info!("removing {}: no record was written", dir.display());
                    std::fs::remove_dir_all(&dir)
                        .with_context(|| format!("remove {}", dir.display()))?;
                }
            }
        }
        out.sort_by_key(|r| r.record.uuid);
        Ok(out)
    }

    /// Records a new CNCI (before anything is built for it), its uplink chosen apart from every
    /// address of this namespace and every other CNCI's uplink.
    pub fn record(
        &self,
        template: &AgentRecord,
        others: impl Iterator<Item = Ipv4Net>,
    ) -> Result<AgentRecord> {
        let mut used: Vec<Ipv4Addr> = netcore::netlink::Netlink::open()?
            .addresses(None)?
            .into_iter()
            .filter_map(|a| match a.net {
                IpNet::V4(n) => Some(n.addr()),
                IpNet::V6(_) => None,
            })
            .collect();
        used.extend(others.flat_map(|n| n.hosts()));
        let record = AgentRecord {
            uplink: uplink::first_free(template.uuid, &used)?,
            netns: names::default_netns(template.uuid),
            ..template.clone()
        };
        let store = Store::open(&self.cnci_dir(record.uuid))?;
        store.put_agent(&record)?;
        Ok(record)
    }

    /// Marks a CNCI as being deleted (durably, before anything is torn down).
    pub fn mark_deleting(&self, cnci: Uuid) -> Result<()> {
        let path = self.cnci_dir(cnci).join(DELETING);
        netcore::state::write_atomic(&path, b"").with_context(|| path.display().to_string())
    }
}

/// Whether the daemon has its scheduler session, for `show`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NodeStatus {
    pub pid: u32,
    pub connected: bool,
}

impl NodeDir {
    pub fn status(&self) -> Option<NodeStatus> {
        let bytes = std::fs::read(self.dir.join("status.json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    pub fn put_status(&self, connected: bool) {
        let status = NodeStatus {
            pid: std::process::id(),
            connected,
        };
        let path = self.dir.join("status.json");
        let written = serde_json::to_vec_pretty(&status)
            .map_err(anyhow::Error::from)
            .and_then(|b| Ok(netcore::state::write_atomic(&path, &b)?));
        if let Err(e) = written {
            tracing::warn!("recording the session status: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(uuid: Uuid) -> AgentRecord {
        AgentRecord {
            uuid,
            tenant: Uuid::new_v4(),
            netns: String::new(),
            underlay_ip: Ipv4Addr::new(10, 0, 0, 3),
            external_dev: None,
            uplink: Ipv4Net::default(),
            dns: vec![],
        }
    }

    #[test]
    fn the_node_uuid_is_made_once_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let nd = NodeDir::new(dir.path());
        assert!(nd.node().expect("read").is_none());
        let first = nd.node_or_create().expect("create").uuid;
        assert_eq!(nd.node_or_create().expect("again").uuid, first);
        assert_eq!(
            NodeDir::new(dir.path())
                .node()
                .expect("read")
                .map(|n| n.uuid),
            Some(first)
        );
    }

    #[test]
    fn records_get_distinct_uplinks_and_the_deleting_mark_is_seen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let nd = NodeDir::new(dir.path());
        let _lock = nd.lock().expect("lock");
        assert!(nd.lock().is_err(), "a second ciao-nn on the directory");
        let a = nd.record(&template(Uuid::new_v4()), std::iter::empty());
        let Ok(a) = a else {
            // Netlink is needed to read the node's addresses; a sandbox may forbid it.
            eprintln!("skipped: records_get_distinct_uplinks: no netlink");
            return;
        };
        assert_eq!(a.netns, names::default_netns(a.uuid));
        // The same UUID hashes to the same /31: taken by `a`, the next one is chosen.
        let b = nd
            .record(&template(Uuid::new_v4()), [a.uplink].into_iter())
            .expect("b");
        let again = nd
            .record(&template(a.uuid), [a.uplink, b.uplink].into_iter())
            .expect("same uuid again");
        assert_ne!(again.uplink, a.uplink);
        nd.mark_deleting(b.uuid).expect("mark");
        let found = nd.scan(true).expect("scan");
        assert_eq!(found.len(), 2);
        for f in found {
            assert_eq!(f.deleting, f.record.uuid == b.uuid);
        }
    }

    #[test]
    fn a_directory_without_a_record_is_removed_only_when_tidying() {
        let dir = tempfile::tempdir().expect("tempdir");
        let nd = NodeDir::new(dir.path());
        let orphan = nd.cnci_dir(Uuid::new_v4());
        std::fs::create_dir_all(orphan.join("subnets")).expect("orphan");
        assert!(nd.scan(false).expect("scan").is_empty());
        assert!(orphan.exists(), "show must not change anything");
        assert!(nd.scan(true).expect("scan").is_empty());
        assert!(!orphan.exists());
    }
}
