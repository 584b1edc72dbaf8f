//! A [`HubHost`] for tests on netcore's fake kernel: named namespaces are plain files in a
//! temporary directory, each a namespace of the [`FakeWorld`]; nft tables are text in memory.
//! A failure can be injected into one named operation.

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Mutex;

use netcore::fake::{FakeWorld, NsId};

use ipnet::Ipv4Net;

use super::HubHost;
use crate::error::{Error, Result};
use crate::nft;

pub struct FakeHost {
    pub world: FakeWorld,
    dir: tempfile::TempDir,
    /// (namespace, table) → ruleset.
    tables: Mutex<BTreeMap<(NsId, String), String>>,
    /// The node-wide underlay table's elements: uplink name → (uplink, underlay networks).
    pub uplinks: Mutex<BTreeMap<String, nft::Uplink>>,
    /// Operations (`delete_table`, `delete_netns`, ...) that fail once.
    failing: Mutex<BTreeSet<&'static str>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn ns_id(fd: BorrowedFd<'_>) -> Result<NsId> {
    let meta = std::fs::File::from(fd.try_clone_to_owned().map_err(io)?)
        .metadata()
        .map_err(io)?;
    Ok(NsId {
        dev: meta.dev(),
        ino: meta.ino(),
    })
}

fn io(e: std::io::Error) -> Error {
    Error::Core(netcore::Error::Io {
        op: "fake host".into(),
        source: e,
    })
}

impl FakeHost {
    pub fn new(world: FakeWorld) -> Self {
        FakeHost {
            world,
            dir: tempfile::tempdir().expect("tempdir"),
            tables: Mutex::default(),
            uplinks: Mutex::default(),
            failing: Mutex::default(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Makes the next call of `op` fail.
    pub fn fail_once(&self, op: &'static str) {
        lock(&self.failing).insert(op);
    }

    fn check(&self, op: &'static str) -> Result<()> {
        if lock(&self.failing).remove(op) {
            return Err(Error::Nft(format!("{op} (injected)")));
        }
        Ok(())
    }

    /// The namespace a name stands for, if it exists.
    pub fn netns_id(&self, name: &str) -> Option<NsId> {
        let meta = std::fs::metadata(self.path(name)).ok()?;
        Some(NsId {
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }

    /// Drops every table of a namespace, as a kernel that lost them (a restart test).
    pub fn delete_all_tables(&self, ns: Option<NsId>) {
        let ns = ns.unwrap_or(NsId::HOST);
        lock(&self.tables).retain(|(n, _), _| *n != ns);
    }

    /// The tables of a namespace (`None`: the underlay), by name.
    pub fn tables(&self, ns: Option<NsId>) -> BTreeMap<String, String> {
        let ns = ns.unwrap_or(NsId::HOST);
        lock(&self.tables)
            .iter()
            .filter(|((n, _), _)| *n == ns)
            .map(|((_, t), r)| (t.clone(), r.clone()))
            .collect()
    }

    fn key(ns: Option<BorrowedFd<'_>>, table: &str) -> Result<(NsId, String)> {
        let ns = match ns {
            Some(fd) => ns_id(fd)?,
            None => NsId::HOST,
        };
        Ok((ns, table.to_string()))
    }
}

impl HubHost for FakeHost {
    fn ensure_netns(&self, name: &str) -> Result<OwnedFd> {
        self.check("ensure_netns")?;
        let path = self.path(name);
        if !path.exists() {
            std::fs::write(&path, b"").map_err(io)?;
            self.world.add_netns(&path)?;
        }
        Ok(std::fs::File::open(&path).map_err(io)?.into())
    }

    fn open_netns(&self, name: &str) -> Result<Option<OwnedFd>> {
        match std::fs::File::open(self.path(name)) {
            Ok(f) => Ok(Some(f.into())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(e)),
        }
    }

    fn delete_netns(&self, name: &str) -> Result<()> {
        self.check("delete_netns")?;
        if let Some(id) = self.netns_id(name) {
            self.world.remove_netns(id);
            lock(&self.tables).retain(|(n, _), _| *n != id);
            std::fs::remove_file(self.path(name)).map_err(io)?;
        }
        Ok(())
    }

    fn replace_table(&self, ns: Option<BorrowedFd<'_>>, table: &str, rules: &str) -> Result<()> {
        self.check("replace_table")?;
        lock(&self.tables).insert(Self::key(ns, table)?, rules.to_string());
        Ok(())
    }

    fn add_uplink(&self, uplink: &nft::Uplink, _nets: &[Ipv4Net], legacy: &str) -> Result<()> {
        self.check("add_uplink")?;
        lock(&self.tables).remove(&(NsId::HOST, legacy.to_string()));
        lock(&self.uplinks).insert(uplink.uplink.clone(), uplink.clone());
        Ok(())
    }

    fn remove_uplink(&self, uplink: &nft::Uplink) -> Result<()> {
        self.check("remove_uplink")?;
        lock(&self.uplinks).remove(&uplink.uplink);
        Ok(())
    }

    fn delete_table(&self, ns: Option<BorrowedFd<'_>>, table: &str) -> Result<()> {
        self.check("delete_table")?;
        lock(&self.tables).remove(&Self::key(ns, table)?);
        Ok(())
    }
}
