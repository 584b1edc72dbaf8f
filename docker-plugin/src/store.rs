//! The plugin's own records, beside the node state (`<state dir>/docker/`): Docker never replays
//! CreateNetwork or RequestPool (not after a plugin restart, not after a dockerd restart), so
//! pools, networks and endpoints must outlive both. One JSON file per object, written atomically
//! and durably with the core's `write_atomic` (temporary file fsynced, renamed, directory
//! fsynced): a kill -9 or a power cut leaves the old or the new record, never a torn or empty
//! one. A removal fsyncs the directory too, so a deleted endpoint does not come back after a
//! power cut holding its address.
//!
//! ```text
//! docker/pools/<PoolID>.json         subnet, --ip-range, gateway, the network bound to it
//! docker/networks/<NetworkID>.json   the tenant subnet configuration from CreateNetwork
//! docker/endpoints/<EndpointID>.json address, MAC, network, interface handed to Docker
//! ```
//! Addresses themselves live in the core's IPAM (as holds or VNIC reservations), so Docker, CNI
//! and VM workloads of one tenant subnet share them.

use std::fs;
use std::io::ErrorKind;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use netcore::{AddrRange, SubnetConfig};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::PluginError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolRecord {
    pub id: String,
    pub pool: Ipv4Net,
    pub sub_pool: Option<Ipv4Net>,
    /// The gateway Docker asked for (or was given) at network creation.
    pub gateway: Option<Ipv4Addr>,
    /// The network created on this pool, once CreateNetwork came.
    pub network: Option<String>,
    /// When RequestPool made it (ns since the epoch): CreateNetwork binds the newest.
    #[serde(default)]
    pub created: u128,
    /// `--ipam-opt tenant=T`: CreateNetwork's `-o tenant` must be absent or the same.
    #[serde(default)]
    pub tenant: Option<Uuid>,
    /// The controller's exact range for this node, when RequestPool got an automatic subnet
    /// (`sub_pool` is the slice's CIDR, which may also cover the gateway).
    #[serde(default)]
    pub node_range: Option<AddrRange>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRecord {
    pub id: String,
    pub pool_id: String,
    pub config: SubnetConfig,
    /// `-o allowed_addresses=`: extra source addresses every endpoint may send from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed: Vec<Ipv4Addr>,
    /// `-o security_groups=`: the security groups every endpoint joins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_groups: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRecord {
    pub id: String,
    pub network: String,
    pub ip: Ipv4Addr,
    /// The MAC the container interface gets (Docker's, or ciao's derived one).
    pub mac: String,
    /// Name of the veth end Docker moves into the container (the core's VNIC ifname).
    pub ifname: String,
}

/// The record directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// Docker's ids are hex; pool ids are ours. Anything else could escape the directory.
pub fn check_id(what: &str, id: &str) -> Result<(), PluginError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !id.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(PluginError::Invalid(format!(
            "{what} {id:?} is not a valid id (1-128 characters of [A-Za-z0-9_.-])"
        )))
    }
}

fn io(op: &str, path: &Path, e: std::io::Error) -> PluginError {
    PluginError::Core(netcore::Error::Internal(format!(
        "{op} {}: {e}",
        path.display()
    )))
}

impl Store {
    pub fn open(state_dir: &Path) -> Result<Self, PluginError> {
        let root = state_dir.join("docker");
        for sub in ["pools", "networks", "endpoints"] {
            let dir = root.join(sub);
            fs::create_dir_all(&dir).map_err(|e| io("create", &dir, e))?;
        }
        Ok(Self { root })
    }

    fn path(&self, kind: &str, id: &str) -> PathBuf {
        self.root.join(kind).join(format!("{id}.json"))
    }

    fn get<T: DeserializeOwned>(&self, kind: &str, id: &str) -> Result<Option<T>, PluginError> {
        let path = self.path(kind, id);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| io("parse", &path, std::io::Error::other(e))),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("read", &path, e)),
        }
    }

    fn put<T: Serialize>(&self, kind: &str, id: &str, value: &T) -> Result<(), PluginError> {
        let bytes = serde_json::to_vec_pretty(value)
            .map_err(|e| PluginError::Core(netcore::Error::Internal(e.to_string())))?;
        netcore::state::write_atomic(&self.path(kind, id), &bytes)?;
        Ok(())
    }

    fn remove(&self, kind: &str, id: &str) -> Result<(), PluginError> {
        let path = self.path(kind, id);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io("remove", &path, e)),
        }
        let dir = self.root.join(kind);
        fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("sync", &dir, e))
    }

    fn list<T: DeserializeOwned>(&self, kind: &str) -> Result<Vec<T>, PluginError> {
        let dir = self.root.join(kind);
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(|e| io("list", &dir, e))? {
            let entry = entry.map_err(|e| io("list", &dir, e))?;
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if let Some(v) = self.get(kind, id)? {
                out.push(v);
            }
        }
        Ok(out)
    }

    pub fn pool(&self, id: &str) -> Result<Option<PoolRecord>, PluginError> {
        check_id("pool", id)?;
        self.get("pools", id)
    }
    pub fn put_pool(&self, p: &PoolRecord) -> Result<(), PluginError> {
        self.put("pools", &p.id, p)
    }
    pub fn remove_pool(&self, id: &str) -> Result<(), PluginError> {
        self.remove("pools", id)
    }
    pub fn pools(&self) -> Result<Vec<PoolRecord>, PluginError> {
        self.list("pools")
    }

    pub fn network(&self, id: &str) -> Result<Option<NetworkRecord>, PluginError> {
        check_id("network", id)?;
        self.get("networks", id)
    }
    pub fn put_network(&self, n: &NetworkRecord) -> Result<(), PluginError> {
        self.put("networks", &n.id, n)
    }
    pub fn remove_network(&self, id: &str) -> Result<(), PluginError> {
        self.remove("networks", id)
    }
    pub fn networks(&self) -> Result<Vec<NetworkRecord>, PluginError> {
        self.list("networks")
    }

    pub fn endpoint(&self, id: &str) -> Result<Option<EndpointRecord>, PluginError> {
        check_id("endpoint", id)?;
        self.get("endpoints", id)
    }
    pub fn put_endpoint(&self, e: &EndpointRecord) -> Result<(), PluginError> {
        self.put("endpoints", &e.id, e)
    }
    pub fn remove_endpoint(&self, id: &str) -> Result<(), PluginError> {
        self.remove("endpoints", id)
    }
    pub fn endpoints(&self) -> Result<Vec<EndpointRecord>, PluginError> {
        self.list("endpoints")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(id: &str) -> EndpointRecord {
        EndpointRecord {
            id: id.into(),
            network: "n1".into(),
            ip: Ipv4Addr::new(172, 16, 1, 2),
            mac: "02:00:ac:10:01:02".into(),
            ifname: "eth0".into(),
        }
    }

    #[test]
    fn records_replace_atomically_and_removals_stick() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = Store::open(tmp.path()).expect("open");
        store.put_endpoint(&endpoint("e1")).expect("put");
        let mut moved = endpoint("e1");
        moved.ip = Ipv4Addr::new(172, 16, 1, 3);
        store.put_endpoint(&moved).expect("replace");
        assert_eq!(store.endpoint("e1").expect("get"), Some(moved.clone()));
        // Only the record: no temporary file is left beside it.
        let names: Vec<String> = fs::read_dir(tmp.path().join("docker/endpoints"))
            .expect("list")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["e1.json"]);
        store.remove_endpoint("e1").expect("remove");
        store.remove_endpoint("e1").expect("remove again");
        assert_eq!(store.endpoints().expect("list"), vec![]);
    }

    #[test]
    fn a_killed_writes_temporary_file_is_ignored_and_a_torn_record_is_an_error() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = Store::open(tmp.path()).expect("open");
        store.put_endpoint(&endpoint("e1")).expect("put");
        let dir = tmp.path().join("docker/endpoints");
        // What a writer killed before its rename leaves.
        fs::write(dir.join("~tmp.123.0"), b"{\"id\": \"e2\", ").expect("write");
        assert_eq!(store.endpoints().expect("list"), vec![endpoint("e1")]);
        // A torn record (only possible from outside: ours are renamed in whole).
        fs::write(dir.join("e3.json"), b"{\"id\": \"e3\", ").expect("write");
        let err = store.endpoint("e3").expect_err("torn").to_string();
        assert!(err.contains("e3.json"), "{err}");
        assert_eq!(store.endpoint("e1").expect("get"), Some(endpoint("e1")));
    }
}
