//! The node's logic on the recording fake kernel: no root, no netlink socket, milliseconds.
//! The root integration tests (tests/tests/*.rs) drive the same paths on the real kernel.

mod controller;
mod crash;
mod guards;
mod instances;
mod qemu_tap;
mod reconcile;
mod refused;
mod teardown;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use uuid::Uuid;

use crate::config::{Cnci, SubnetConfig, VnicId, VnicKind, VnicRequest};
use crate::fake::{FakeKernel, FakeWorld, NsId, Snapshot};
use crate::kernel::Kernel;
use crate::netlink::{LinkKind, NewLink};
use crate::report::ReportEvent;
use crate::Node;

/// A fake node: the world (host namespace with an uplink toward the CNCI, one workload
/// namespace), and a state directory.
pub(crate) struct Bench {
    pub world: FakeWorld,
    pub dir: tempfile::TempDir,
    /// The workload's "namespace file": a plain temp file naming a fake namespace.
    pub netns: tempfile::NamedTempFile,
    pub netns_id: NsId,
}

pub(crate) const CNCI_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

impl Bench {
    pub fn new() -> Bench {
        let world = FakeWorld::with_uplink();
        let netns = tempfile::NamedTempFile::new().expect("netns file");
        let netns_id = world.add_netns(netns.path()).expect("netns");
        world.clear_calls();
        Bench {
            world,
            dir: tempfile::tempdir().expect("state dir"),
            netns,
            netns_id,
        }
    }

    /// A node on the bench's state directory and world, as a fresh process would open it.
    pub fn node(&self) -> Node<FakeKernel> {
        self.world.node(self.dir.path()).expect("node")
    }

    pub fn netns_path(&self) -> PathBuf {
        self.netns.path().into()
    }

    /// The world and the state directory. Aliases carry the node's random id; it reads
    /// `NODE` here so pictures of different benches compare.
    pub fn picture(&self) -> (Snapshot, BTreeSet<String>) {
        let mut world = self.world.snapshot();
        let tag = std::fs::read(self.dir.path().join("node.json"))
            .ok()
            .map(|_| {
                self.node()
                    .state()
                    .lock()
                    .expect("lock")
                    .node_tag()
                    .expect("tag")
            });
        if let Some(tag) = tag {
            for ns in world.namespaces.values_mut() {
                for link in ns.links.values_mut() {
                    if let Some(alias) = &mut link.alias {
                        *alias = alias.replace(&tag, "NODE");
                    }
                }
            }
        }
        (world, self.state())
    }

    /// The state directory's files (reports by their event, not their time-based names).
    pub fn state(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        walk(self.dir.path(), self.dir.path(), &mut out);
        out
    }
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).expect("read state dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            walk(root, &path, out);
            continue;
        }
        let rel = path
            .strip_prefix(root)
            .expect("inside")
            .display()
            .to_string();
        if rel.starts_with("reports/") {
            let bytes = std::fs::read(&path).expect("report");
            let report: crate::Report = serde_json::from_slice(&bytes).expect("report json");
            out.insert(format!("reports/{:?}", report.event));
        } else if rel != "lock" {
            out.insert(rel);
        }
    }
}

pub(crate) fn subnet() -> SubnetConfig {
    SubnetConfig::new(
        Uuid::from_u128(0x7e4a),
        "10.6.0.0/24".parse().expect("subnet"),
        Cnci {
            uuid: Uuid::from_u128(0xc0c1),
            ip: CNCI_IP,
        },
    )
}

pub(crate) fn veth(bench: &Bench, owner: &str) -> VnicRequest {
    veth_named(bench, owner, "eth0")
}

pub(crate) fn veth_named(bench: &Bench, owner: &str, ifname: &str) -> VnicRequest {
    VnicRequest {
        id: VnicId {
            owner: owner.into(),
            ifname: ifname.into(),
        },
        kind: VnicKind::Veth {
            netns: bench.netns_path(),
            ifname: ifname.into(),
        },
        ip: None,
        mac: None,
        default_route: true,
        allowed: Vec::new(),
        security_groups: Vec::new(),
    }
}

/// Each world and state picture of one attach, taken on a bench of its own.
pub(crate) struct CleanRun {
    pub before: (Snapshot, BTreeSet<String>),
    pub after: (Snapshot, BTreeSet<String>),
    /// The kernel calls of the attach, in order.
    pub calls: Vec<&'static str>,
}

pub(crate) fn clean_attach(owner: &str) -> CleanRun {
    let bench = Bench::new();
    let mut node = bench.node();
    // Opening makes the state directory's skeleton and the node identity.
    node.view().expect("view");
    let before = bench.picture();
    bench.world.clear_calls();
    node.attach(&subnet(), &veth(&bench, owner))
        .expect("attach");
    let calls = bench.world.calls().iter().map(|c| c.op).collect();
    CleanRun {
        before,
        after: bench.picture(),
        calls,
    }
}

pub(crate) fn events(bench: &Bench) -> Vec<ReportEvent> {
    let node = bench.node();
    let locked = node.state().lock().expect("lock");
    locked
        .reports()
        .expect("reports")
        .into_iter()
        .map(|(_, r)| r.event)
        .collect()
}
