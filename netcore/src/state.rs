//! Node state on disk: one small JSON file per object, written atomically, under one file lock.
//!
//! Layout of the state directory:
//! ```text
//! lock                     flock(2) target: every mutation holds it
//! node.json                this node's identity (SSNTP agent UUID)
//! journal.json             the operation in flight; present only if a call died mid-way
//! nets/<net>.json          one tenant subnet present on this node (bridge, tunnel, MTU)
//! vnics/<net>/<vnic>.json  one attached VNIC
//! ips/<net>/<ip>           IPAM reservation: the owning VNIC's key, or `hold:<holder>` (see hold.rs)
//! tunnels/<kind>-<id>      which tenant subnet owns a tunnel id on this node
//! reports/<seq>.json       TenantAdded / TenantRemoved waiting for delivery
//! ```
//! Per-object files keep the cost of one call independent of how many VNICs the node has.
//! Writes go to a temporary file that is fsynced and renamed over the target (and the directory
//! fsynced), so a killed process or a power cut leaves either the old or the new content, never
//! a torn file. Temporary names start with `~`, which no record name can (ids are
//! `[A-Za-z0-9_.-]`), so a record never hides behind the temporary-file filter.
//!
//! A directory is a state directory only if its path is absolute and it is empty or already a
//! ciao state directory (has `reports/` or `node.json`) when first opened: `/`, `/etc` or a
//! relative path are refused before anything is written.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::{SubnetConfig, VnicId, VnicKind};
use crate::error::{Error, Result};
use crate::report::Report;

/// A tenant subnet present on this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetRecord {
    pub key: String,
    pub config: SubnetConfig,
    pub bridge: String,
    pub tunnel: String,
    pub tunnel_id: u32,
    /// Underlay device and the local end of the tunnel.
    pub underlay: String,
    pub local_ip: Ipv4Addr,
    pub mtu: u32,
    /// Changes each time the subnet is (re)created on this node; ties reports to one lifetime.
    pub generation: Uuid,
    /// True once TenantAdded for this generation was queued.
    #[serde(default)]
    pub added_queued: bool,
    /// Controller mode: the workloads named no CNCI. `config.cnci`, `config.tunnel_kind` and
    /// `tunnel_id` are then the controller's assignment, once one came.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub controlled: bool,
    /// Unix seconds since when a controller-mode subnet waits for its CNCI (no tunnel yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub awaiting_cnci_since: Option<u64>,
    /// Controller mode: the controller refused the subnet for good (it no longer awaits a
    /// CNCI, nothing asks again, new attaches are refused). Goes with the subnet's last VNIC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<Refusal>,
    /// The bridge's conntrack zone for security groups, chosen free among the node's subnets
    /// when the subnet is created here (see [`NetRecord::ct_zone`]); 0 in records written
    /// before zones were allocated.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ct_zone: u16,
}

fn is_zero(zone: &u16) -> bool {
    *zone == 0
}

/// Why and since when the controller refuses a subnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub reason: String,
    /// Unix seconds.
    pub since: u64,
}

impl NetRecord {
    /// The bridge's conntrack zone: the allocated one, or for an older record the zone of its
    /// bridge's name that the node used before (a live flow must not change zone).
    pub fn ct_zone(&self) -> u16 {
        match self.ct_zone {
            0 => crate::secgroups::zone_of(&self.bridge),
            zone => zone,
        }
    }

    /// The tunnel-id slot this subnet holds on the node, if it has a tunnel.
    pub fn tunnel_slot(&self) -> Option<String> {
        let cnci = self.config.cnci?;
        Some(crate::tunnel::driver(self.config.tunnel_kind).slot(self.tunnel_id, cnci.ip))
    }
}

/// One VNIC attached to a subnet bridge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VnicRecord {
    pub net: String,
    pub id: VnicId,
    pub kind: VnicKind,
    /// The bridge port: host end of the veth, or the tap itself.
    pub host_ifname: String,
    pub ip: Ipv4Addr,
    pub mac: String,
    pub mtu: u32,
    /// True if this system created the tap (and so removes it); QEMU's own taps are left alone.
    #[serde(default)]
    pub created_tap: bool,
    /// Extra addresses the workload may send from (see [`crate::VnicRequest::allowed`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed: Vec<Ipv4Addr>,
    /// Security groups the workload named (see [`crate::VnicRequest::security_groups`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_groups: Vec<String>,
}

impl VnicRecord {
    /// The anti-spoofing guard of this VNIC's port; `None` before it has an address and MAC.
    pub fn guard(&self) -> Option<crate::antispoof::PortGuard> {
        let mac = crate::ids::parse_mac(&self.mac)?;
        if self.ip.is_unspecified() {
            return None;
        }
        let ips = std::iter::once(self.ip).chain(self.allowed.iter().copied());
        Some(
            crate::antispoof::PortGuard::new(&self.host_ifname, mac, ips)
                .with_closed_v6(!self.security_groups.is_empty()),
        )
    }
}

/// The operation in flight. If a process dies holding the lock, the next one finds this and
/// finishes (detach) or undoes (attach) the operation before doing its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Journal {
    Attach {
        vnic: VnicRecord,
    },
    Detach {
        net: String,
        vnic: VnicId,
    },
    /// A CNCI assignment of a controller-mode subnet; undone (back to awaiting, since `since`)
    /// if the call died.
    Assign {
        net: String,
        since: Option<u64>,
    },
}

/// This node's identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeIdentity {
    /// The SSNTP UUID reports are sent under (`agent_uuid`).
    pub uuid: Uuid,
}

/// A node's state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// Opens (creating if needed) a state directory; see the module doc for what is accepted.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        check_path(&root)?;
        // The last directory made exists only if all were made: one stat on the hot path.
        if root.join("reports").is_dir() {
            return Ok(Self { root });
        }
        check_dedicated(&root)?;
        for sub in [
            "", SUBDIRS[0], SUBDIRS[1], SUBDIRS[2], SUBDIRS[3], SUBDIRS[4],
        ] {
            let dir = root.join(sub);
            fs::create_dir_all(&dir)
                .map_err(|e| Error::io(format!("create state directory {}", dir.display()), e))?;
        }
        Ok(Self { root })
    }

    /// An existing state directory, for reading only: nothing is created, locked for writing
    /// or written. `None` if `root` does not exist or holds no ciao state yet; an error if it is
    /// not a state directory (see the module doc).
    pub fn existing(root: impl Into<PathBuf>) -> Result<Option<Self>> {
        let root = root.into();
        check_path(&root)?;
        match fs::metadata(&root) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(Error::invalid(
                    "stateDir",
                    format!("{} is not a directory", root.display()),
                ))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("stat {}", root.display()), e)),
        }
        if root.join("reports").is_dir() || root.join("node.json").is_file() {
            return Ok(Some(Self { root }));
        }
        // Empty, or still being made by a first call: nothing recorded yet.
        check_dedicated(&root)?;
        Ok(None)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Takes the node lock shared, for reading: writers wait until the reader is done, so the
    /// reader sees no call half-way. The lock file is opened read-only and never created (a
    /// directory no call has locked yet is read unlocked).
    pub fn read(&self) -> Result<Reader<'_>> {
        let path = self.root.join("lock");
        let lock =
            match File::open(&path) {
                Ok(file) => Some(Flock::lock(file, FlockArg::LockShared).map_err(
                    |(_, errno)| Error::io(format!("lock {} shared", path.display()), errno.into()),
                )?),
                Err(e) if e.kind() == ErrorKind::NotFound => None,
                Err(e) => return Err(Error::io(format!("open {}", path.display()), e)),
            };
        Ok(Reader(Locked {
            dir: self,
            _lock: lock,
        }))
    }

    /// Takes the node lock; blocks while another call holds it.
    pub fn lock(&self) -> Result<Locked<'_>> {
        let path = self.root.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(format!("open {}", path.display()), e))?;
        let lock = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, errno)| Error::io(format!("lock {}", path.display()), errno.into()))?;
        Ok(Locked {
            dir: self,
            _lock: Some(lock),
        })
    }
}

/// The state directory with the node lock held; all reads and writes go through it.
pub struct Locked<'a> {
    dir: &'a StateDir,
    /// Exclusive, except inside a [`Reader`] (shared, or none if no lock file exists yet).
    _lock: Option<Flock<File>>,
}

/// The state directory opened by [`StateDir::read`]: the reads of [`Locked`], no writes.
pub struct Reader<'a>(Locked<'a>);

impl Reader<'_> {
    /// This node's identity, if one was ever made (never creates it).
    pub fn node_identity(&self) -> Result<Option<NodeIdentity>> {
        read_json(&self.0.path("node.json"))
    }

    /// The operation a killed call left behind, if any (a reader neither finishes nor undoes
    /// it: the next call that changes the node does).
    pub fn journal(&self) -> Result<Option<Journal>> {
        self.0.journal()
    }

    pub fn nets(&self) -> Result<Vec<NetRecord>> {
        self.0.nets()
    }

    pub fn vnics(&self, net: &str) -> Result<Vec<VnicRecord>> {
        self.0.vnics(net)
    }

    pub fn reports(&self) -> Result<Vec<(String, Report)>> {
        self.0.reports()
    }
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("read {}", path.display()), e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| Error::State {
            path: path.display().to_string(),
            message: e.to_string(),
        })
}

/// First character of every temporary file name; never the first of a record's name.
pub const TMP_PREFIX: char = '~';

/// Writes `bytes` to `path` atomically and durably: a temporary file in the same directory
/// (named with [`TMP_PREFIX`]), fsynced, renamed over `path`, then the directory fsynced.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = path.parent().unwrap_or(Path::new("."));
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!("{TMP_PREFIX}tmp.{}.{seq}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io(format!("write {}", path.display()), e)
    })
}

/// Refuses state directory paths that cannot be a dedicated directory.
fn check_path(root: &Path) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::invalid(
            "stateDir",
            format!("{:?} {why}", root.display().to_string()),
        ))
    };
    if !root.is_absolute() {
        return bad("is not an absolute path");
    }
    if root
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return bad("contains '..'");
    }
    if root.parent().is_none() {
        return bad("is the root directory");
    }
    Ok(())
}

/// The subdirectories of a state directory, in the order [`StateDir::open`] makes them: the
/// last one marks a complete directory.
const SUBDIRS: [&str; 5] = ["nets", "vnics", "ips", "tunnels", "reports"];

/// A directory that is neither empty nor a ciao state directory belongs to something else.
/// One that holds only some of [`SUBDIRS`] is one that a concurrent first call is making (a
/// runtime starting many containers at once on a new node).
fn check_dedicated(root: &Path) -> Result<()> {
    let entries = match fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(format!("list {}", root.display()), e)),
    };
    let mut being_made = true;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("list {}", root.display()), e))?;
        let name = entry.file_name();
        if !SUBDIRS.iter().any(|s| name == *s) {
            being_made = false;
            break;
        }
    }
    // Checked after the listing: a concurrent first call makes `reports` before anything
    // else (the lock, node.json), so whatever the listing saw beyond SUBDIRS, `reports` is
    // there by now if that call made it.
    if being_made || root.join("reports").is_dir() || root.join("node.json").is_file() {
        return Ok(());
    }
    Err(Error::invalid(
        "stateDir",
        format!(
            "{} is not empty and is not a ciao state directory (no reports/ or node.json): \
             give the node a dedicated directory",
            root.display()
        ),
    ))
}

/// File name of a VNIC record: its key, or for keys too long for a file name (container ids
/// may have 256 characters) a prefix of it, `#` and a hash of the whole key.
fn vnic_file(key: &str) -> String {
    const MAX: usize = 255 - ".json".len();
    if key.len() <= MAX {
        return format!("{key}.json");
    }
    let head: String = key.chars().take(150).collect();
    format!("{head}#{:016x}.json", crate::ids::fnv64(&[key.as_bytes()]))
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| Error::Internal(format!("serialise {}: {e}", path.display())))?;
    write_atomic(path, &bytes)
}

fn remove(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("remove {}", path.display()), e)),
    }
}

fn list_dir(dir: &Path) -> Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("list {}", dir.display()), e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("list {}", dir.display()), e))?;
        if let Some(name) = entry.file_name().to_str() {
            if !name.starts_with(TMP_PREFIX) {
                names.push(name.to_string());
            }
        }
    }
    names.sort();
    Ok(names)
}

impl Locked<'_> {
    fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.dir.root.join(rel)
    }

    /// The short node id carried in this node's link aliases.
    pub fn node_tag(&self) -> Result<String> {
        Ok(crate::ids::node_tag(self.node_identity()?.uuid))
    }

    /// This node's identity, created on first use.
    pub fn node_identity(&self) -> Result<NodeIdentity> {
        let path = self.path("node.json");
        if let Some(id) = read_json(&path)? {
            return Ok(id);
        }
        let id = NodeIdentity {
            uuid: Uuid::new_v4(),
        };
        write_json(&path, &id)?;
        Ok(id)
    }

    // --- journal ---

    /// The operation in flight. A torn journal (its writes are atomic, so only something
    /// outside ciao can tear it) is an error that says what to do: it can be neither finished
    /// nor undone, and every call that changes the node refuses to go on past it.
    pub fn journal(&self) -> Result<Option<Journal>> {
        read_json(&self.path("journal.json")).map_err(|e| match e {
            Error::State { path, message } => Error::State {
                path,
                message: format!(
                    "{message}: the record of an interrupted call is unreadable, so the call \
                     can be neither finished nor undone and nothing was changed; move the file \
                     aside and run `ciao-node reconcile`, which repairs the node from the \
                     kernel and the other records"
                ),
            },
            other => other,
        })
    }

    pub fn write_journal(&self, journal: &Journal) -> Result<()> {
        write_json(&self.path("journal.json"), journal)
    }

    pub fn clear_journal(&self) -> Result<()> {
        remove(&self.path("journal.json"))
    }

    // --- nets ---

    pub fn net(&self, key: &str) -> Result<Option<NetRecord>> {
        read_json(&self.path(format!("nets/{key}.json")))
    }

    pub fn write_net(&self, net: &NetRecord) -> Result<()> {
        write_json(&self.path(format!("nets/{}.json", net.key)), net)
    }

    pub fn remove_net(&self, key: &str) -> Result<()> {
        remove(&self.path(format!("nets/{key}.json")))?;
        for dir in [format!("vnics/{key}"), format!("ips/{key}")] {
            match fs::remove_dir(self.path(&dir)) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                // Held addresses (see `ipam::hold`) keep their directory.
                Err(e) if e.kind() == ErrorKind::DirectoryNotEmpty => {}
                Err(e) => return Err(Error::io(format!("remove {dir}"), e)),
            }
        }
        Ok(())
    }

    pub fn nets(&self) -> Result<Vec<NetRecord>> {
        let mut out = Vec::new();
        for name in list_dir(&self.path("nets"))? {
            if let Some(key) = name.strip_suffix(".json") {
                if let Some(net) = self.net(key)? {
                    out.push(net);
                }
            }
        }
        Ok(out)
    }

    // --- vnics ---

    pub fn vnic(&self, net: &str, id: &VnicId) -> Result<Option<VnicRecord>> {
        let path = self.path(format!("vnics/{net}/{}", vnic_file(&id.key())));
        let record: Option<VnicRecord> = read_json(&path)?;
        match record {
            // Only a hashed name can hold another id (a hash collision): not this VNIC's.
            Some(r) if r.id != *id => Err(Error::Conflict(format!(
                "record {} holds {}, not {}",
                path.display(),
                r.id.key(),
                id.key()
            ))),
            other => Ok(other),
        }
    }

    pub fn write_vnic(&self, vnic: &VnicRecord) -> Result<()> {
        let dir = self.path(format!("vnics/{}", vnic.net));
        fs::create_dir_all(&dir).map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        write_json(&dir.join(vnic_file(&vnic.id.key())), vnic)
    }

    pub fn remove_vnic(&self, net: &str, id: &VnicId) -> Result<()> {
        remove(&self.path(format!("vnics/{net}/{}", vnic_file(&id.key()))))
    }

    pub fn vnics(&self, net: &str) -> Result<Vec<VnicRecord>> {
        let mut out = Vec::new();
        for name in list_dir(&self.path(format!("vnics/{net}")))? {
            if !name.ends_with(".json") {
                continue;
            }
            let path = self.path(format!("vnics/{net}/{name}"));
            if let Some(v) = read_json(&path)? {
                out.push(v);
            }
        }
        Ok(out)
    }

    /// True if the subnet still has a VNIC; stops at the first entry, so it stays O(1).
    pub fn has_vnics(&self, net: &str) -> Result<bool> {
        let dir = self.path(format!("vnics/{net}"));
        match fs::read_dir(&dir) {
            Ok(mut entries) => Ok(entries.any(|e| {
                e.ok()
                    .and_then(|e| e.file_name().to_str().map(|n| n.ends_with(".json")))
                    .unwrap_or(false)
            })),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io(format!("list {}", dir.display()), e)),
        }
    }

    // --- IPAM reservations ---

    /// Makes sure the reservation directory of `net` exists.
    pub fn ensure_ip_dir(&self, net: &str) -> Result<()> {
        let dir = self.path(format!("ips/{net}"));
        fs::create_dir_all(&dir).map_err(|e| Error::io(format!("create {}", dir.display()), e))
    }

    /// Reserves `ip` for `owner` if nobody holds it; `Ok(false)` if somebody does.
    /// Call [`Locked::ensure_ip_dir`] first.
    pub fn try_reserve_ip(&self, net: &str, ip: Ipv4Addr, owner: &str) -> Result<bool> {
        let path = self.path(format!("ips/{net}/{ip}"));
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(mut f) => {
                f.write_all(owner.as_bytes())
                    .map_err(|e| Error::io(format!("write {}", path.display()), e))?;
                Ok(true)
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(Error::io(format!("reserve {}", path.display()), e)),
        }
    }

    /// Reserves `ip` for `owner`; `Ok(true)` also if `owner` already holds it.
    pub fn reserve_ip(&self, net: &str, ip: Ipv4Addr, owner: &str) -> Result<bool> {
        self.ensure_ip_dir(net)?;
        if self.try_reserve_ip(net, ip, owner)? {
            return Ok(true);
        }
        Ok(self.ip_owner(net, ip)?.as_deref() == Some(owner))
    }

    /// The reserved addresses of `net` (one directory read, owners not read).
    pub fn reserved_ips(&self, net: &str) -> Result<std::collections::HashSet<Ipv4Addr>> {
        Ok(list_dir(&self.path(format!("ips/{net}")))?
            .iter()
            .filter_map(|n| n.parse().ok())
            .collect())
    }

    /// Who holds `ip`, if anyone.
    pub fn ip_owner(&self, net: &str, ip: Ipv4Addr) -> Result<Option<String>> {
        let path = self.path(format!("ips/{net}/{ip}"));
        match fs::read_to_string(&path) {
            Ok(owner) => Ok(Some(owner)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("read {}", path.display()), e)),
        }
    }

    /// Releases every address `owner` holds in `net` (normally one).
    pub fn release_ips_of(&self, net: &str, owner: &str, hint: Option<Ipv4Addr>) -> Result<()> {
        if let Some(ip) = hint {
            if self.ip_owner(net, ip)?.as_deref() == Some(owner) {
                return remove(&self.path(format!("ips/{net}/{ip}")));
            }
        }
        // No hint, or the hint was wrong (a crash between reserve and record): scan.
        for (ip, holder) in self.reservations(net)? {
            if holder == owner {
                remove(&self.path(format!("ips/{net}/{ip}")))?;
            }
        }
        Ok(())
    }

    /// Gives a reservation to a new owner (atomically).
    pub fn set_ip_owner(&self, net: &str, ip: Ipv4Addr, owner: &str) -> Result<()> {
        write_atomic(&self.path(format!("ips/{net}/{ip}")), owner.as_bytes())
    }

    /// Releases one address regardless of owner.
    pub fn release_ip(&self, net: &str, ip: Ipv4Addr) -> Result<()> {
        remove(&self.path(format!("ips/{net}/{ip}")))
    }

    /// Every reservation of `net` as (address, owner).
    pub fn reservations(&self, net: &str) -> Result<Vec<(Ipv4Addr, String)>> {
        let mut out = Vec::new();
        for name in list_dir(&self.path(format!("ips/{net}")))? {
            if let Ok(ip) = name.parse::<Ipv4Addr>() {
                if let Some(owner) = self.ip_owner(net, ip)? {
                    out.push((ip, owner));
                }
            }
        }
        Ok(out)
    }

    /// Where the round-robin allocator continues from.
    pub fn ipam_cursor(&self, net: &str) -> Result<Option<Ipv4Addr>> {
        let path = self.path(format!("ips/{net}.last"));
        match fs::read_to_string(&path) {
            Ok(s) => Ok(s.trim().parse().ok()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("read {}", path.display()), e)),
        }
    }

    /// Records where allocation continues. A plain write: the cursor is only a hint, and a torn
    /// one just restarts the search at the range start.
    pub fn set_ipam_cursor(&self, net: &str, ip: Ipv4Addr) -> Result<()> {
        let path = self.path(format!("ips/{net}.last"));
        fs::write(&path, ip.to_string())
            .map_err(|e| Error::io(format!("write {}", path.display()), e))
    }

    pub fn remove_ipam_cursor(&self, net: &str) -> Result<()> {
        remove(&self.path(format!("ips/{net}.last")))
    }

    // --- tunnel id index ---

    /// Claims a tunnel id for `net`; on a conflict returns the current owner.
    pub fn claim_tunnel_id(&self, slot: &str, net: &str) -> Result<Result<(), String>> {
        let path = self.path(format!("tunnels/{slot}"));
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(mut f) => {
                f.write_all(net.as_bytes())
                    .map_err(|e| Error::io(format!("write {}", path.display()), e))?;
                Ok(Ok(()))
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                let owner = fs::read_to_string(&path)
                    .map_err(|e| Error::io(format!("read {}", path.display()), e))?;
                Ok(if owner == net { Ok(()) } else { Err(owner) })
            }
            Err(e) => Err(Error::io(format!("claim {}", path.display()), e)),
        }
    }

    /// Who holds a tunnel-id slot, if anyone.
    pub fn tunnel_id_owner(&self, slot: &str) -> Result<Option<String>> {
        let path = self.path(format!("tunnels/{slot}"));
        match fs::read_to_string(&path) {
            Ok(owner) => Ok(Some(owner)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("read {}", path.display()), e)),
        }
    }

    /// Releases a tunnel id if `net` holds it.
    pub fn release_tunnel_id(&self, slot: &str, net: &str) -> Result<()> {
        let path = self.path(format!("tunnels/{slot}"));
        match fs::read_to_string(&path) {
            Ok(owner) if owner == net => remove(&path),
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("read {}", path.display()), e)),
        }
    }

    /// Removes tunnel-id claims whose subnet is not in `live`.
    pub fn prune_tunnel_slots(&self, live: &std::collections::HashSet<String>) -> Result<()> {
        for slot in list_dir(&self.path("tunnels"))? {
            let path = self.path(format!("tunnels/{slot}"));
            let owner = fs::read_to_string(&path).unwrap_or_default();
            if !live.contains(&owner) {
                remove(&path)?;
            }
        }
        Ok(())
    }

    // --- reports ---

    /// Queues a report for delivery, after every report queued before it.
    pub fn queue_report(&self, report: &Report) -> Result<String> {
        let seq = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        // Keep order even if the clock stepped back: never go below the newest queued name.
        let newest = list_dir(&self.path("reports"))?
            .last()
            .and_then(|n| n.split('.').next().and_then(|s| s.parse::<u128>().ok()))
            .unwrap_or(0);
        let name = format!("{:039}.json", seq.max(newest + 1));
        write_json(&self.path(format!("reports/{name}")), report)?;
        Ok(name)
    }

    /// Pending reports, oldest first, with their file names.
    pub fn reports(&self) -> Result<Vec<(String, Report)>> {
        let mut out = Vec::new();
        for name in list_dir(&self.path("reports"))? {
            if let Some(r) = read_json(&self.path(format!("reports/{name}")))? {
                out.push((name, r));
            }
        }
        Ok(out)
    }

    /// Drops a report (delivered, or cancelled before delivery).
    pub fn remove_report(&self, name: &str) -> Result<()> {
        remove(&self.path(format!("reports/{name}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Cnci, VnicKind};
    use crate::report::{Report, ReportEvent};
    use crate::tunnel::TunnelKind;
    use proptest::prelude::*;

    fn net(key: &str, tunnel_id: u32, mtu: u32) -> NetRecord {
        NetRecord {
            key: key.into(),
            config: SubnetConfig {
                tenant: Uuid::from_u128(9),
                subnet: "10.3.0.0/24".parse().expect("subnet"),
                cnci: Some(Cnci {
                    uuid: Uuid::from_u128(10),
                    ip: Ipv4Addr::new(192, 0, 2, 1),
                }),
                tunnel_kind: TunnelKind::Geneve,
                tunnel_id: Some(tunnel_id),
                node_range: None,
                gateway: None,
                mtu: Some(mtu),
                underlay_device: Some("eth0".into()),
            },
            bridge: "cb0".into(),
            tunnel: "ct0".into(),
            tunnel_id,
            underlay: "eth0".into(),
            local_ip: Ipv4Addr::new(192, 0, 2, 2),
            mtu,
            generation: Uuid::from_u128(11),
            added_queued: true,
            controlled: false,
            awaiting_cnci_since: None,
            refused: None,
            ct_zone: 0,
        }
    }

    fn on_bridge(bridge: &str, ct_zone: u16) -> NetRecord {
        NetRecord {
            bridge: bridge.into(),
            ct_zone,
            ..net(bridge, 1, 1450)
        }
    }

    #[test]
    fn a_new_bridge_gets_a_conntrack_zone_no_other_bridge_has() {
        use crate::secgroups::{free_zone, zone_of};
        let start = zone_of("cb-new");
        assert_eq!(free_zone(&[], "cb-new"), start);
        // Its name's zone taken (an allocated one, then also an older record's hashed one).
        let taken = [on_bridge("cb-a", start)];
        let next = free_zone(&taken, "cb-new");
        assert_ne!(next, start);
        assert_eq!(next, start % 65535 + 1);
        let legacy = on_bridge("cb-old", 0);
        assert_eq!(legacy.ct_zone(), zone_of("cb-old"));
        let taken = [on_bridge("cb-a", start), on_bridge("cb-b", next), legacy];
        let third = free_zone(&taken, "cb-new");
        assert!(taken.iter().all(|n| n.ct_zone() != third), "{third}");
        assert_ne!(free_zone(&[on_bridge("cb-z", 0)], "cb-z"), zone_of("cb-z"));
        // The search wraps past 65535 and never yields zone 0.
        let top: Vec<NetRecord> = (1..=65535u16)
            .filter(|z| *z != 3)
            .map(|z| on_bridge(&format!("b{z}"), z))
            .collect();
        assert_eq!(free_zone(&top, "cb-new"), 3);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn records_round_trip(key in "[a-z0-9][a-z0-9_.]{0,39}", id in 1u32..16_777_215, mtu in 576u32..9000,
                              owner in "[A-Za-z0-9_.-]{1,64}", ifname in "[a-z0-9]{1,15}", ip in any::<u32>()) {
            let dir = tempfile::tempdir().expect("tempdir");
            let state = StateDir::open(dir.path()).expect("state");
            let locked = state.lock().expect("lock");
            let n = net(&key, id, mtu);
            locked.write_net(&n).expect("write net");
            prop_assert_eq!(locked.net(&key).expect("read"), Some(n.clone()));
            let vnic = VnicRecord {
                net: key.clone(),
                id: VnicId { owner, ifname: ifname.clone() },
                kind: VnicKind::Veth { netns: "/run/netns/x".into(), ifname },
                host_ifname: "cv0".into(),
                ip: Ipv4Addr::from(ip),
                mac: "02:00:0a:00:00:01".into(),
                mtu,
                created_tap: false,
                allowed: Vec::new(),
                security_groups: Vec::new(),
            };
            locked.write_vnic(&vnic).expect("write vnic");
            prop_assert_eq!(locked.vnic(&key, &vnic.id).expect("read"), Some(vnic.clone()));
            prop_assert!(locked.has_vnics(&key).expect("has"));
            let journal = Journal::Attach { vnic: vnic.clone() };
            locked.write_journal(&journal).expect("journal");
            prop_assert_eq!(locked.journal().expect("read"), Some(journal));
            let report = Report::for_net(ReportEvent::TenantAdded, Uuid::from_u128(1), &n);
            locked.queue_report(&report).expect("queue");
            prop_assert_eq!(locked.reports().expect("list")[0].1.clone(), report);
            locked.remove_vnic(&key, &vnic.id).expect("remove");
            prop_assert!(!locked.has_vnics(&key).expect("has"));
        }
    }

    #[test]
    fn reports_keep_their_order_and_a_torn_file_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::open(dir.path()).expect("state");
        let locked = state.lock().expect("lock");
        let n = net("k", 7, 1450);
        for event in [
            ReportEvent::TenantAdded,
            ReportEvent::TenantRemoved,
            ReportEvent::TenantAdded,
        ] {
            locked
                .queue_report(&Report::for_net(event, Uuid::from_u128(1), &n))
                .expect("queue");
        }
        let events: Vec<_> = locked
            .reports()
            .expect("list")
            .into_iter()
            .map(|(_, r)| r.event)
            .collect();
        assert_eq!(
            events,
            [
                ReportEvent::TenantAdded,
                ReportEvent::TenantRemoved,
                ReportEvent::TenantAdded
            ]
        );
        std::fs::write(dir.path().join("nets/bad.json"), b"{\"key\": ").expect("write");
        assert!(matches!(locked.net("bad"), Err(Error::State { .. })));
    }

    /// What a power cut could leave if the journal were written in place: a record cut in the
    /// middle. Every call that changes the node stops at it with an error naming the file and
    /// the way out, and nothing in the directory changes, however often it is tried.
    #[test]
    fn a_torn_journal_is_a_clear_error_and_changes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::open(dir.path()).expect("state");
        let locked = state.lock().expect("lock");
        let n = net("k", 7, 1450);
        locked.write_net(&n).expect("write net");
        let vnic = VnicRecord {
            net: "k".into(),
            id: VnicId {
                owner: "c1".into(),
                ifname: "eth0".into(),
            },
            kind: VnicKind::Veth {
                netns: "/run/netns/x".into(),
                ifname: "eth0".into(),
            },
            host_ifname: "cv0".into(),
            ip: Ipv4Addr::new(10, 3, 0, 2),
            mac: "02:00:0a:03:00:02".into(),
            mtu: 1450,
            created_tap: false,
            allowed: Vec::new(),
            security_groups: Vec::new(),
        };
        locked
            .write_journal(&Journal::Attach { vnic: vnic.clone() })
            .expect("journal");
        let journal = dir.path().join("journal.json");
        let whole = fs::read(&journal).expect("read journal");
        fs::write(&journal, &whole[..whole.len() / 2]).expect("tear the journal");
        let files = |root: &Path| -> Vec<(PathBuf, Vec<u8>)> {
            let mut out = Vec::new();
            let mut stack = vec![root.to_path_buf()];
            while let Some(p) = stack.pop() {
                if p.is_dir() {
                    out.push((p.clone(), Vec::new()));
                    stack.extend(fs::read_dir(&p).expect("list").flatten().map(|e| e.path()));
                } else {
                    out.push((p.clone(), fs::read(&p).expect("read")));
                }
            }
            out.sort();
            out
        };
        let before = files(dir.path());
        for _ in 0..2 {
            let err = locked.journal().expect_err("a torn journal is an error");
            let text = err.to_string();
            assert!(matches!(err, Error::State { .. }), "{text}");
            assert!(text.contains("journal.json"), "{text}");
            assert!(text.contains("ciao-node reconcile"), "{text}");
        }
        drop(locked);
        let reader = state.read().expect("read");
        assert!(reader.journal().is_err());
        assert_eq!(reader.nets().expect("nets"), vec![n]);
        drop(reader);
        assert_eq!(files(dir.path()), before, "the directory changed");
        // Moved aside, the node is usable again and its other records are intact.
        fs::rename(&journal, dir.path().join("journal.json.torn")).expect("move aside");
        let locked = state.lock().expect("lock");
        assert_eq!(locked.journal().expect("no journal"), None);
        assert_eq!(locked.net("k").expect("net").map(|r| r.tunnel_id), Some(7));
    }

    #[test]
    fn the_lock_serialises_holders() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::open(dir.path()).expect("state");
        let held = state.lock().expect("lock");
        let other = state.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let _second = other.lock().expect("second lock");
            tx.send(()).expect("send");
        });
        assert!(
            rx.recv_timeout(std::time::Duration::from_millis(200))
                .is_err(),
            "second holder got in"
        );
        drop(held);
        rx.recv_timeout(std::time::Duration::from_secs(5))
            .expect("second holder proceeds");
        waiter.join().expect("join");
    }

    #[test]
    fn a_directory_half_made_by_a_concurrent_first_call_is_ours_and_a_foreign_one_is_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        // What a concurrent first `open` has made so far: some subdirectories, not `reports`.
        for sub in ["nets", "vnics"] {
            fs::create_dir(dir.path().join(sub)).expect("mkdir");
        }
        StateDir::open(dir.path()).expect("a half-made state directory is ours");
        // Listed a moment later: the other call made `reports`, then its lock file.
        let later = tempfile::tempdir().expect("tempdir");
        fs::create_dir(later.path().join("nets")).expect("mkdir");
        fs::write(later.path().join("lock"), "").expect("lock file");
        fs::create_dir(later.path().join("reports")).expect("mkdir");
        check_dedicated(later.path()).expect("reports/ marks a ciao state directory");
        let foreign = tempfile::tempdir().expect("tempdir");
        fs::create_dir(foreign.path().join("nets")).expect("mkdir");
        fs::write(foreign.path().join("notes.txt"), "mine").expect("write");
        let err = StateDir::open(foreign.path()).expect_err("foreign");
        assert!(
            err.to_string().contains("not a ciao state directory"),
            "{err}"
        );
    }

    #[test]
    fn many_first_calls_at_once_all_open_the_new_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("node");
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..16)
                .map(|_| s.spawn(|| StateDir::open(&root).map(|_| ())))
                .collect();
            for h in handles {
                h.join().expect("thread").expect("open");
            }
        });
    }
}
