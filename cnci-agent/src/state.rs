//! The agent's desired state on disk: written before the kernel is touched, replayed on start.
//!
//! One JSON file per object (`agent.json`, `subnets/<net>_<len>.json`, `public-ips/<ip>.json`),
//! each written to a temporary file that is fsynced and renamed, the directory fsynced after
//! ([`netcore::state::write_atomic`]), so a kill or a power cut at any moment leaves either the
//! old or the new version, never an empty file. A registration touches only its subnet's small file, which keeps
//! thousands of TenantAdded events cheap. `status.json` tells `show` whether the daemon is
//! connected. One daemon per state directory, enforced with an exclusive lock on `lock`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use netcore::TunnelKind;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, Result};

/// Who the agent is and where its tenant lives; fixed for the life of the state directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRecord {
    pub uuid: Uuid,
    pub tenant: Uuid,
    pub netns: String,
    pub underlay_ip: Ipv4Addr,
    pub external_dev: Option<String>,
    /// The uplink's transfer network: `.0` on the underlay side, `.1` in the tenant namespace.
    pub uplink: Ipv4Net,
    #[serde(default)]
    pub dns: Vec<Ipv4Addr>,
}

/// One tenant subnet and the compute nodes that registered it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetRecord {
    pub subnet: Ipv4Net,
    pub kind: TunnelKind,
    pub id: u32,
    /// Registrations by the sending agent: its UUID and its tunnel end. Only that agent's
    /// TenantRemoved (or TenantSync) takes an entry out; no two agents share a tunnel end.
    #[serde(default)]
    pub agents: BTreeMap<Uuid, Ipv4Addr>,
    /// Tunnel ends recorded before registrations had owners (the old `nodes` set). The first
    /// agent that registers, syncs or removes the same address of the subnet takes it over.
    #[serde(default, rename = "nodes", skip_serializing_if = "BTreeSet::is_empty")]
    pub legacy: BTreeSet<Ipv4Addr>,
}

impl SubnetRecord {
    /// An empty record of a subnet.
    pub fn new(subnet: Ipv4Net, kind: TunnelKind, id: u32) -> Self {
        SubnetRecord {
            subnet,
            kind,
            id,
            agents: BTreeMap::new(),
            legacy: BTreeSet::new(),
        }
    }

    /// Every tunnel end the hub must reach for this subnet.
    pub fn nodes(&self) -> BTreeSet<Ipv4Addr> {
        self.agents
            .values()
            .copied()
            .chain(self.legacy.iter().copied())
            .collect()
    }

    /// The agent that registered `ip`; `Some(None)` for a legacy entry.
    pub fn owner_of(&self, ip: Ipv4Addr) -> Option<Option<Uuid>> {
        if self.legacy.contains(&ip) {
            return Some(None);
        }
        self.agents
            .iter()
            .find(|(_, a)| **a == ip)
            .map(|(u, _)| Some(*u))
    }

    /// Whether nobody is registered any more.
    pub fn is_empty(&self) -> bool {
        self.agents.is_empty() && self.legacy.is_empty()
    }

    /// The tenant gateway: the subnet's first address, as ciao's CNCI and our CNs use it.
    pub fn gateway(&self) -> Ipv4Addr {
        gateway_of(self.subnet)
    }
}

/// The first host address of `subnet`.
pub fn gateway_of(subnet: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet.network()).saturating_add(1))
}

/// One public IP mapped to a workload address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicIpRecord {
    pub public_ip: Ipv4Addr,
    pub private_ip: Ipv4Addr,
    pub instance_uuid: String,
    pub vnic_mac: String,
}

/// Everything the kernel should look like.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    pub subnets: BTreeMap<Ipv4Net, SubnetRecord>,
    pub public_ips: BTreeMap<Ipv4Addr, PublicIpRecord>,
    /// The last TenantIngress snapshot applied (`ingress.json`); `None`: nothing enters.
    pub ingress: Option<crate::ingress::IngressRecord>,
}

/// Whether the daemon has a scheduler session, for `show`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub pid: u32,
    pub connected: bool,
}

/// The state directory.
pub struct Store {
    dir: PathBuf,
}

fn state_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::State {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Makes a removal durable: fsyncs the directory that held `path`.
fn sync_parent(path: &Path) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| state_err(dir, e))
}

fn subnet_file(subnet: Ipv4Net) -> String {
    format!("{}_{}.json", subnet.network(), subnet.prefix_len())
}

impl Store {
    /// Opens (creating) a state directory.
    pub fn open(dir: &Path) -> Result<Self> {
        for sub in ["", "subnets", "public-ips"] {
            let d = dir.join(sub);
            std::fs::create_dir_all(&d).map_err(|e| state_err(&d, e))?;
        }
        Ok(Store {
            dir: dir.to_path_buf(),
        })
    }

    /// Opens an existing state directory without creating anything (`show`, `destroy`): `None`
    /// when the directory does not exist. Missing subdirectories read as empty.
    pub fn open_existing(dir: &Path) -> Result<Option<Self>> {
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => Ok(Some(Store {
                dir: dir.to_path_buf(),
            })),
            Ok(_) => Err(state_err(dir, "is not a directory")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(state_err(dir, e)),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Takes the daemon's exclusive lock; fails at once if another daemon holds it.
    pub fn lock(&self) -> Result<nix::fcntl::Flock<File>> {
        let path = self.dir.join("lock");
        let file = File::create(&path).map_err(|e| state_err(&path, e))?;
        nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(
            |(_, e)| {
                state_err(
                    &path,
                    format!("another agent runs on this state directory ({e})"),
                )
            },
        )
    }

    fn write<T: Serialize>(&self, rel: &str, value: &T) -> Result<()> {
        let path = self.dir.join(rel);
        let bytes = serde_json::to_vec_pretty(value).map_err(|e| state_err(&path, e))?;
        netcore::state::write_atomic(&path, &bytes).map_err(|e| state_err(&path, e))
    }

    fn read<T: DeserializeOwned>(&self, rel: &str) -> Result<Option<T>> {
        let path = self.dir.join(rel);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| state_err(&path, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(state_err(&path, e)),
        }
    }

    fn remove(&self, rel: &str) -> Result<()> {
        let path = self.dir.join(rel);
        match std::fs::remove_file(&path) {
            Ok(()) => sync_parent(&path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(state_err(&path, e)),
        }
    }

    fn read_all<T: DeserializeOwned>(&self, sub: &str) -> Result<Vec<T>> {
        let dir = self.dir.join(sub);
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            // Absent in a directory `open_existing` found: nothing recorded (and `show` must not
            // create it).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(state_err(&dir, e)),
        };
        for entry in entries {
            let name = entry.map_err(|e| state_err(&dir, e))?.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".json") {
                if let Some(v) = self.read(&format!("{sub}/{name}"))? {
                    out.push(v);
                }
            }
        }
        Ok(out)
    }

    pub fn agent(&self) -> Result<Option<AgentRecord>> {
        self.read("agent.json")
    }

    pub fn put_agent(&self, agent: &AgentRecord) -> Result<()> {
        self.write("agent.json", agent)
    }

    pub fn desired(&self) -> Result<Desired> {
        let subnets = self
            .read_all::<SubnetRecord>("subnets")?
            .into_iter()
            .map(|s| (s.subnet, s))
            .collect();
        let public_ips = self
            .read_all::<PublicIpRecord>("public-ips")?
            .into_iter()
            .map(|p| (p.public_ip, p))
            .collect();
        Ok(Desired {
            subnets,
            public_ips,
            ingress: self.read("ingress.json")?,
        })
    }

    pub fn put_subnet(&self, record: &SubnetRecord) -> Result<()> {
        self.write(&format!("subnets/{}", subnet_file(record.subnet)), record)
    }

    pub fn remove_subnet(&self, subnet: Ipv4Net) -> Result<()> {
        self.remove(&format!("subnets/{}", subnet_file(subnet)))
    }

    pub fn put_public_ip(&self, record: &PublicIpRecord) -> Result<()> {
        self.write(&format!("public-ips/{}.json", record.public_ip), record)
    }

    pub fn remove_public_ip(&self, ip: Ipv4Addr) -> Result<()> {
        self.remove(&format!("public-ips/{ip}.json"))
    }

    /// Records the tenant's ingress snapshot (`None` removes it).
    pub fn put_ingress(&self, ingress: Option<&crate::ingress::IngressRecord>) -> Result<()> {
        match ingress {
            Some(rec) => self.write("ingress.json", rec),
            None => self.remove("ingress.json"),
        }
    }

    pub fn status(&self) -> Result<Option<Status>> {
        self.read("status.json")
    }

    pub fn put_status(&self, status: &Status) -> Result<()> {
        self.write("status.json", status)
    }

    /// Removes the whole state directory (`destroy`).
    pub fn wipe(self) -> Result<()> {
        std::fs::remove_dir_all(&self.dir).map_err(|e| state_err(&self.dir, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_removal_is_idempotent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let subnet: Ipv4Net = "172.16.1.0/24".parse().expect("subnet");
        let mut record = SubnetRecord::new(subnet, TunnelKind::Vxlan, 42);
        record
            .agents
            .insert(Uuid::from_u128(7), Ipv4Addr::new(10, 0, 0, 1));
        store.put_subnet(&record).expect("put");
        let public = PublicIpRecord {
            public_ip: Ipv4Addr::new(203, 0, 113, 10),
            private_ip: Ipv4Addr::new(172, 16, 1, 10),
            instance_uuid: "i".into(),
            vnic_mac: "02:00:ac:10:01:0a".into(),
        };
        store.put_public_ip(&public).expect("put public");
        let desired = store.desired().expect("desired");
        assert_eq!(desired.subnets.get(&subnet), Some(&record));
        assert_eq!(desired.public_ips.len(), 1);
        assert_eq!(record.gateway(), Ipv4Addr::new(172, 16, 1, 1));
        store.remove_subnet(subnet).expect("remove");
        store.remove_subnet(subnet).expect("remove again");
        assert!(store.desired().expect("desired").subnets.is_empty());
    }

    #[test]
    fn an_old_nodes_set_is_read_as_legacy_entries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let old = r#"{"subnet":"172.16.1.0/24","kind":"vxlan","id":42,"nodes":["10.0.0.1"]}"#;
        std::fs::write(dir.path().join("subnets/172.16.1.0_24.json"), old).expect("write");
        let desired = store.desired().expect("desired");
        let rec = desired.subnets.values().next().expect("record");
        assert!(rec.agents.is_empty());
        assert_eq!(rec.nodes(), [Ipv4Addr::new(10, 0, 0, 1)].into());
        assert_eq!(rec.owner_of(Ipv4Addr::new(10, 0, 0, 1)), Some(None));
    }

    #[test]
    fn a_write_leaves_only_its_record_and_a_temporary_left_by_a_kill_is_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let subnet: Ipv4Net = "172.16.1.0/24".parse().expect("subnet");
        store
            .put_subnet(&SubnetRecord::new(subnet, TunnelKind::Vxlan, 42))
            .expect("put");
        let names: Vec<String> = std::fs::read_dir(dir.path().join("subnets"))
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["172.16.1.0_24.json"]);
        // A kill between the temporary's write and its rename leaves it beside the records.
        std::fs::write(
            dir.path()
                .join(format!("subnets/{}tmp.1.0", netcore::state::TMP_PREFIX)),
            "{\"subnet\":",
        )
        .expect("plant");
        assert_eq!(store.desired().expect("desired").subnets.len(), 1);
    }

    #[test]
    fn opening_an_existing_directory_creates_nothing() {
        let parent = tempfile::tempdir().expect("tempdir");
        let absent = parent.path().join("absent");
        assert!(Store::open_existing(&absent).expect("absent").is_none());
        assert!(!absent.exists());
        let store = Store::open_existing(parent.path())
            .expect("empty")
            .expect("exists");
        assert!(store.agent().expect("agent").is_none());
        assert_eq!(store.desired().expect("desired"), Desired::default());
        assert_eq!(std::fs::read_dir(parent.path()).expect("list").count(), 0);
    }

    #[test]
    fn a_second_daemon_cannot_take_the_lock() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let _held = store.lock().expect("first lock");
        assert!(store.lock().is_err());
    }
}
