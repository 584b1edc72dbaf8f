//! The controller's snapshots on disk (`<state>/secgroups/<tenant>.json`), and a copy in
//! memory so that an apply does not read back what was just written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use uuid::Uuid;

use super::TenantGroups;
use crate::error::{Error, Result};

/// Where a node keeps the controller's last snapshots: `<state>/secgroups/<tenant>.json`.
fn snapshot_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("secgroups")
}

/// Persists one tenant's snapshot (atomically) before it is applied, for reconcile and
/// restarts.
pub fn save_snapshot(state_dir: &Path, snap: &TenantGroups) -> Result<()> {
    let dir = snapshot_dir(state_dir);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
    let bytes = serde_json::to_vec_pretty(snap)
        .map_err(|e| Error::Internal(format!("encode a security-group snapshot: {e}")))?;
    crate::state::write_atomic(&dir.join(format!("{}.json", snap.tenant)), &bytes)
}

/// Every persisted snapshot; unreadable files are skipped (their tenant then fails closed).
pub fn load_snapshots(state_dir: &Path) -> Result<BTreeMap<Uuid, TenantGroups>> {
    let dir = snapshot_dir(state_dir);
    let mut out = BTreeMap::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io(format!("read {}", dir.display()), e)),
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let parsed = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<TenantGroups>(&b).ok());
        if let Some(snap) = parsed {
            out.insert(snap.tenant, snap);
        }
    }
    Ok(out)
}

/// The persisted snapshots and the same in memory. A snapshot is written durably before it is
/// kept (and so before it is applied); the disk is read once, at the first use.
#[derive(Debug)]
pub struct Snapshots {
    state_dir: PathBuf,
    cache: Option<BTreeMap<Uuid, TenantGroups>>,
}

impl Snapshots {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            state_dir: state_dir.to_path_buf(),
            cache: None,
        }
    }

    /// Persists `snap`, then keeps it (a failed write keeps nothing: memory stays as disk).
    pub fn record(&mut self, snap: TenantGroups) -> Result<()> {
        save_snapshot(&self.state_dir, &snap)?;
        if let Some(cache) = &mut self.cache {
            cache.insert(snap.tenant, snap);
        }
        Ok(())
    }

    /// Every snapshot; read from disk the first time (an error is retried at the next call).
    pub fn all(&mut self) -> Result<&BTreeMap<Uuid, TenantGroups>> {
        if self.cache.is_none() {
            self.cache = Some(load_snapshots(&self.state_dir)?);
        }
        Ok(self.cache.get_or_insert_with(BTreeMap::new))
    }
}
