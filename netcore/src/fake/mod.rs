//! A recording fake of [`Kernel`] (cargo feature `fake`), for tests that need no root.
//!
//! A [`FakeWorld`] is an in-memory model of the kernels of several network namespaces and of
//! the host firewall; each [`FakeKernel`] is a handle on one namespace of it, as a `Netlink` is.
//! Every call is recorded in order ([`FakeWorld::calls`]), and a failure or a panic can be
//! injected at the Nth call or at the Nth call of a named operation ([`FakeWorld::inject`]). An
//! injected panic stands for the process being killed there: the caller's stack unwinds (its
//! locks are released as a dead process's would be) and the world keeps what was done so far.
//! [`FakeWorld::snapshot`] gives a comparable picture of the whole world.

mod kernel;
mod snapshot;
mod world;

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

pub use snapshot::{LinkView, NsView, Snapshot};
use world::Namespace;
pub use world::NsId;

use crate::config::NodeConfig;
use crate::error::{Error, Result};
use crate::kernel::Kernel;
use crate::netlink::{LinkKind, NewLink};
use crate::Node;

/// The host address of the uplink of [`FakeWorld::with_uplink`].
pub const UPLINK_ADDR: ipnet::IpNet = ipnet::IpNet::V4(ipnet::Ipv4Net::new_assert(
    std::net::Ipv4Addr::new(192, 0, 2, 10),
    24,
));

/// One kernel call as the fake saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// 1-based position among all calls since the world was made (or [`FakeWorld::clear_calls`]).
    pub seq: usize,
    pub ns: NsId,
    /// The [`Kernel`] method's name, e.g. `create_link`.
    pub op: &'static str,
    /// Its arguments, for reading.
    pub detail: String,
}

/// What an injected fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The call fails with this errno (as `Error::Netlink`) and changes nothing.
    Fail(i32),
    /// The process is killed at the call, before it takes effect.
    Panic,
}

/// Where a fault fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// At the Nth call (1-based) counted from the last [`FakeWorld::clear_calls`].
    Nth(usize),
    /// At the Nth call (1-based) of this operation.
    Op(&'static str, usize),
}

/// The payload of an injected panic, so a test can tell it from a real one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectedCrash {
    pub seq: usize,
    pub op: &'static str,
}

#[derive(Debug)]
struct Injection {
    trigger: Trigger,
    fault: Fault,
}

#[derive(Debug)]
struct State {
    namespaces: BTreeMap<NsId, Namespace>,
    next_index: u32,
    calls: Vec<Call>,
    injections: Vec<Injection>,
    /// Whether docker's DOCKER-USER chain exists (else `allow_bridge` has nothing to do).
    docker_chain: bool,
    firewall: BTreeSet<String>,
}

/// The shared model; cheap to clone (all clones are the same world).
#[derive(Debug, Clone)]
pub struct FakeWorld {
    state: Arc<Mutex<State>>,
}

/// A [`Kernel`] handle on one namespace of a [`FakeWorld`].
#[derive(Debug, Clone)]
pub struct FakeKernel {
    world: FakeWorld,
    ns: NsId,
}

impl Default for FakeWorld {
    fn default() -> Self {
        Self::new()
    }
}

fn ns_of(fd: BorrowedFd<'_>) -> Result<NsId> {
    let st =
        nix::sys::stat::fstat(fd.as_raw_fd()).map_err(|e| Error::io("stat netns", e.into()))?;
    Ok(NsId {
        dev: st.st_dev,
        ino: st.st_ino,
    })
}

impl FakeWorld {
    /// A world with only the host namespace and its loopback; docker's chain present.
    pub fn new() -> Self {
        let mut namespaces = BTreeMap::new();
        namespaces.insert(NsId::HOST, Namespace::with_loopback(1, "host".into()));
        FakeWorld {
            state: Arc::new(Mutex::new(State {
                namespaces,
                next_index: 2,
                calls: Vec::new(),
                injections: Vec::new(),
                docker_chain: true,
                firewall: BTreeSet::new(),
            })),
        }
    }

    /// The usual compute node of the fake tests: a world whose host has an up uplink `eth0`
    /// at [`UPLINK_ADDR`], the route toward CNCIs at 192.0.2.x. No call is left recorded.
    pub fn with_uplink() -> Self {
        let world = FakeWorld::new();
        let mut host = world.kernel();
        let mut uplink = NewLink::new("eth0", LinkKind::Bridge);
        uplink.up = true;
        let made = host
            .create_link(&uplink)
            .and_then(|eth0| host.add_address(eth0.index, UPLINK_ADDR));
        // The world is new and in memory: nothing can refuse these two calls.
        if let Err(e) = made {
            panic!("the fake uplink: {e}");
        }
        world.clear_calls();
        world
    }

    /// A node on the state directory `dir` whose kernel is this world's host, as a fresh
    /// process would open it.
    pub fn node(&self, dir: &Path) -> Result<Node<FakeKernel>> {
        let cfg = NodeConfig {
            state_dir: dir.into(),
        };
        Node::with_kernel(&cfg, self.kernel())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic injected by this fake never holds the lock; recover from any other anyway.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A handle on the host namespace (the node's own).
    pub fn kernel(&self) -> FakeKernel {
        FakeKernel {
            world: self.clone(),
            ns: NsId::HOST,
        }
    }

    /// Makes a namespace named by the file at `path` (a plain temp file is enough) and returns
    /// its id; opening that file and passing it to [`Kernel::open_in`] reaches it.
    pub fn add_netns(&self, path: &Path) -> Result<NsId> {
        let file = std::fs::File::open(path)
            .map_err(|e| Error::io(format!("open {}", path.display()), e))?;
        let id = ns_of(std::os::fd::AsFd::as_fd(&file))?;
        let mut s = self.lock();
        let lo = s.next_index;
        s.next_index += 1;
        let label = format!("netns-{}", s.namespaces.len());
        s.namespaces.insert(id, Namespace::with_loopback(lo, label));
        Ok(id)
    }

    /// Deletes a namespace as its last process going away does: its links go, and the host
    /// ends of veths whose other end was in it.
    pub fn remove_netns(&self, id: NsId) {
        let mut s = self.lock();
        let Some(ns) = s.namespaces.remove(&id) else {
            return;
        };
        for (peer_ns, peer) in ns.links.values().filter_map(|l| l.peer) {
            if let Some(other) = s.namespaces.get_mut(&peer_ns) {
                other.remove(peer);
            }
        }
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// Forgets the recorded calls (and restarts their numbering).
    pub fn clear_calls(&self) {
        self.lock().calls.clear();
    }

    /// Injects `fault` where `trigger` says; each injection fires once.
    pub fn inject(&self, trigger: Trigger, fault: Fault) {
        self.lock().injections.push(Injection { trigger, fault });
    }

    /// Removes injections that have not fired.
    pub fn clear_injections(&self) {
        self.lock().injections.clear();
    }

    /// Whether docker's DOCKER-USER chain exists.
    pub fn set_docker_chain(&self, present: bool) {
        self.lock().docker_chain = present;
    }

    /// Empties the firewall, as a reload of the host's ruleset (a dockerd start) does.
    pub fn flush_firewall(&self) {
        self.lock().firewall.clear();
    }

    /// The bridges whose traffic the firewall lets through.
    pub fn firewall_rules(&self) -> BTreeSet<String> {
        self.lock().firewall.clone()
    }

    /// The anti-spoofing guards of the host namespace, by port.
    pub fn guards(&self) -> BTreeMap<String, crate::antispoof::PortGuard> {
        self.lock()
            .namespaces
            .get(&NsId::HOST)
            .map(|ns| ns.guards.clone())
            .unwrap_or_default()
    }

    /// A comparable picture of every namespace and the firewall.
    pub fn snapshot(&self) -> Snapshot {
        let s = self.lock();
        Snapshot::of(&s.namespaces, &s.firewall)
    }

    /// Records a call, fires a matching injection, else runs `f` on the namespace's tables.
    fn call<T>(
        &self,
        ns: NsId,
        op: &'static str,
        detail: String,
        f: impl FnOnce(&mut State) -> Result<T>,
    ) -> Result<T> {
        let mut s = self.lock();
        let seq = s.calls.len() + 1;
        let nth_of_op = s.calls.iter().filter(|c| c.op == op).count() + 1;
        s.calls.push(Call {
            seq,
            ns,
            op,
            detail,
        });
        let fired = s.injections.iter().position(|i| match i.trigger {
            Trigger::Nth(n) => n == seq,
            Trigger::Op(o, n) => o == op && n == nth_of_op,
        });
        if let Some(pos) = fired {
            let injection = s.injections.remove(pos);
            match injection.fault {
                Fault::Fail(e) => return Err(world::errno(&format!("{op} (injected)"), e)),
                Fault::Panic => {
                    drop(s);
                    std::panic::resume_unwind(Box::new(InjectedCrash { seq, op }));
                }
            }
        }
        f(&mut s)
    }
}

#[cfg(test)]
mod tests;
