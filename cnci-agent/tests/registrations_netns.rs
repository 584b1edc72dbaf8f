//! The agent's registration handlers against the real kernel in private namespaces (no
//! scheduler): TenantSync convergence (issue 10 item 4, CNCI side), registrations keyed by
//! agent, a kernel refusal rolled back from the record, and a removal that takes the subnet out
//! of service at once while its bridge waits for deletion. Needs root (skips otherwise).

use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::process::Command;

use cnci_agent::handlers::{Agent, Policy};
use cnci_agent::register::Limits;
use cnci_agent::state::{AgentRecord, Store};
use ssntp::frame::{event, kind, Frame};
use ssntp::payloads::{
    Payload, TenantAdded, TenantAddedEvent, TenantRemoved, TenantSync, TenantSyncEvent, TunnelKind,
};
use uuid::Uuid;

const UNDERLAY: Ipv4Addr = Ipv4Addr::new(10, 252, 0, 3);

struct Ns(String);

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn must(args: &[&str]) {
    let st = Command::new(args[0])
        .args(&args[1..])
        .status()
        .expect("spawn");
    assert!(st.success(), "{args:?}");
}

struct Fixture {
    cnci: Uuid,
    tenant: Uuid,
    tenant_ns: String,
}

impl Fixture {
    fn body(&self, agent: Uuid, ip: &str, subnet: &str, vni: u32) -> TenantAddedEvent {
        TenantAddedEvent::new(
            agent,
            ip.parse().expect("ip"),
            self.tenant,
            subnet.parse().expect("subnet"),
            self.cnci,
            UNDERLAY,
        )
        .with_tunnel(TunnelKind::Vxlan, vni)
    }

    fn sync(&self, agent: Uuid, entries: Vec<TenantAddedEvent>) -> Frame {
        let body = TenantSyncEvent {
            agent_uuid: agent.to_string(),
            concentrator_uuid: self.cnci.to_string(),
            tenant_uuid: self.tenant.to_string(),
            subnets: entries,
        };
        Frame::new(
            kind::EVENT,
            event::TENANT_SYNC,
            agent,
            TenantSync(body).to_yaml(),
        )
    }

    fn added(&self, b: TenantAddedEvent) -> Frame {
        Frame::new(
            kind::EVENT,
            event::TENANT_ADDED,
            self.cnci,
            TenantAdded(b).to_yaml(),
        )
    }

    fn removed(&self, b: TenantAddedEvent) -> Frame {
        Frame::new(
            kind::EVENT,
            event::TENANT_REMOVED,
            self.cnci,
            TenantRemoved(b).to_yaml(),
        )
    }

    /// Bridges in the tenant namespace (`sb…`) with whether each is up, sorted.
    fn bridges_up(&self) -> Vec<(String, bool)> {
        let out = Command::new("ip")
            .args([
                "-n",
                &self.tenant_ns,
                "-o",
                "link",
                "show",
                "type",
                "bridge",
            ])
            .output()
            .expect("ip link");
        let mut v: Vec<(String, bool)> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let mut fields = l.split(": ").skip(1);
                let name = fields.next()?.to_string();
                let flags = fields.next()?;
                let up = flags
                    .trim_start_matches('<')
                    .split(['>', ','])
                    .any(|f| f == "UP");
                Some((name, up))
            })
            .filter(|(n, _)| n.starts_with("sb"))
            .collect();
        v.sort();
        v
    }

    /// Bridges in the tenant namespace (`sb…`), sorted.
    fn bridges(&self) -> Vec<String> {
        let out = Command::new("ip")
            .args(["-n", &self.tenant_ns, "-o", "link", "show"])
            .output()
            .expect("ip link");
        let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_string())
            .filter(|n| n.starts_with("sb"))
            .collect();
        v.sort();
        v
    }
}

fn subnets(a: &Agent) -> Vec<String> {
    a.desired().subnets.keys().map(|s| s.to_string()).collect()
}

fn bridge(subnet: &str) -> String {
    cnci_agent::names::bridge(subnet.parse().expect("subnet"))
}

#[test]
fn a_snapshot_converges_one_agents_entries_and_a_kernel_refusal_leaves_no_record() {
    if !nix::unistd::Uid::effective().is_root() {
        println!("skipped: a_snapshot_converges_one_agents_entries_and_a_kernel_refusal_leaves_no_record: needs root");
        return;
    }
    let id = std::process::id();
    let under = Ns(format!("regul-{id}"));
    let tenant_ns = Ns(format!("regt-{id}"));
    must(&["ip", "netns", "add", &under.0]);
    for cmd in [
        "link add ul0 type veth peer name ul1",
        "link set ul1 up",
        "addr add 10.252.0.3/24 dev ul0",
        "link set ul0 up",
        // A VNI taken in the underlay namespace: the kernel refuses a second device with it.
        "link add taken type vxlan id 808 local 10.252.0.3 dstport 4789 dev ul0",
    ] {
        let mut args = vec!["ip", "-n", &under.0];
        args.extend(cmd.split(' '));
        must(&args);
    }
    let f = Fixture {
        cnci: Uuid::new_v4(),
        tenant: Uuid::new_v4(),
        tenant_ns: tenant_ns.0.clone(),
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let record = agent_record(&f);
    let ns_file = std::fs::File::open(format!("/run/netns/{}", under.0)).expect("netns");
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::setns(&ns_file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let _guard = rt.enter();
            let policy = small_policy();
            let store = Store::open(dir.path()).expect("store");
            let mut a = Agent::start(store, record.clone(), policy).expect("agent");
            let (x, y) = (Uuid::new_v4(), Uuid::new_v4());
            let (s5, s6, s7) = ("172.16.5.0/24", "172.16.6.0/24", "172.16.7.0/24");
            let x_at = |s: &str, v: u32| f.body(x, "10.252.0.11", s, v);

            a.handle(&f.sync(x, vec![x_at(s5, 505), x_at(s6, 506)]));
            assert_eq!(subnets(&a), [s5, s6]);
            let invalid = x_at("127.0.0.0/8", 599);
            for _ in 0..2 {
                a.handle(&f.sync(x, vec![x_at(s6, 506), x_at(s7, 507), invalid.clone()]));
                a.wait_removed();
                assert_eq!(
                    subnets(&a),
                    [s6, s7],
                    "s5 pruned, the invalid entry refused"
                );
                assert_eq!(f.bridges(), [bridge(s6), bridge(s7)]);
            }
            // Another agent's entry survives X's snapshots; X's own go.
            a.handle(&f.added(f.body(y, "10.252.0.12", s6, 506)));
            a.handle(&f.sync(x, vec![]));
            a.wait_removed();
            assert_eq!(subnets(&a), [s6]);
            let owners = &a.desired().subnets.values().next().expect("s6").agents;
            assert_eq!(owners.len(), 1);
            assert_eq!(owners.get(&y), Some(&"10.252.0.12".parse().expect("ip")));
            assert_eq!(f.bridges(), [bridge(s6)]);

            // The kernel refuses S8 (VNI 808 taken): no record, no bridge, no tunnel left.
            a.handle(&f.added(f.body(y, "10.252.0.12", "172.16.8.0/24", 808)));
            a.wait_removed();
            assert_eq!(subnets(&a), [s6]);
            assert_eq!(f.bridges(), [bridge(s6)]);
            let on_disk = Store::open(dir.path())
                .expect("store")
                .desired()
                .expect("read");
            assert_eq!(
                on_disk
                    .subnets
                    .keys()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>(),
                [s6]
            );
            drop(a);
            cnci_agent::hub::destroy(&record, &Default::default()).expect("destroy");
        });
    });
}

/// Underlay and tenant namespaces for one test; the underlay holds 10.252.0.3 on `ul0`.
fn namespaces(tag: &str) -> (Ns, Ns) {
    let id = std::process::id();
    let under = Ns(format!("{tag}ul-{id}"));
    let tenant_ns = Ns(format!("{tag}t-{id}"));
    must(&["ip", "netns", "add", &under.0]);
    for cmd in [
        "link add ul0 type veth peer name ul1",
        "link set ul1 up",
        "addr add 10.252.0.3/24 dev ul0",
        "link set ul0 up",
    ] {
        let mut args = vec!["ip", "-n", &under.0];
        args.extend(cmd.split(' '));
        must(&args);
    }
    (under, tenant_ns)
}

#[test]
fn a_removed_subnet_can_come_back_before_its_bridge_is_gone_and_a_crash_leaves_nothing() {
    if !nix::unistd::Uid::effective().is_root() {
        println!("skipped: a_removed_subnet_can_come_back_before_its_bridge_is_gone_and_a_crash_leaves_nothing: needs root");
        return;
    }
    let (under, tenant_ns) = namespaces("regq");
    let f = Fixture {
        cnci: Uuid::new_v4(),
        tenant: Uuid::new_v4(),
        tenant_ns: tenant_ns.0.clone(),
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let record = agent_record(&f);
    let ns_file = std::fs::File::open(format!("/run/netns/{}", under.0)).expect("netns");
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::setns(&ns_file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let _guard = rt.enter();
            let policy = small_policy();
            let start = || {
                let store = Store::open(dir.path()).expect("store");
                Agent::start(store, record.clone(), policy.clone()).expect("agent")
            };
            let mut a = start();
            let x = Uuid::new_v4();
            let s5 = "172.16.5.0/24";
            let cn: Ipv4Addr = "10.252.0.11".parse().expect("ip");
            let body = || f.body(x, "10.252.0.11", s5, 505);
            a.handle(&f.added(body()));
            assert_eq!(f.bridges_up(), [(bridge(s5), true)]);
            let index = |name: &str| {
                let mut nl = netcore::netlink::Netlink::open_in(a_tenant_ns(&f.tenant_ns).as_fd())
                    .expect("netlink");
                nl.link_by_name(name).expect("get link").map(|l| l.index)
            };
            let first = index(&bridge(s5)).expect("s5 bridge");

            // Removed while frames keep coming (no idle): the record is gone at once; the
            // bridge, without its tunnel, waits for the reaper under its name.
            a.handle(&f.removed(body()));
            assert!(subnets(&a).is_empty());
            assert_eq!(f.bridges_up(), [(bridge(s5), true)]);

            // Re-added at once: the same bridge is taken back, with a new tunnel and its
            // flood entry.
            a.handle(&f.added(body()));
            assert_eq!(subnets(&a), [s5]);
            assert_eq!(f.bridges_up(), [(bridge(s5), true)]);
            assert_eq!(index(&bridge(s5)), Some(first), "the bridge was reused");
            let mut nl = netcore::netlink::Netlink::open_in(a_tenant_ns(&f.tenant_ns).as_fd())
                .expect("netlink");
            let rec = a.desired().subnets.values().next().expect("s5").clone();
            let programmed = cnci_agent::hub::programmed(&mut nl, f.cnci, &rec).expect("show");
            assert_eq!(programmed.into_iter().collect::<Vec<_>>(), [cn]);

            // Removed again and the agent idle: the reaper condemns and deletes the bridge.
            a.handle(&f.removed(body()));
            a.wait_removed();
            assert!(subnets(&a).is_empty());
            assert_eq!(f.bridges_up(), []);

            // Added and removed once more, then a crash before the reaper ran (forget: no
            // destructor runs, as when the process dies); the restart's reconcile deletes it.
            a.handle(&f.added(body()));
            a.handle(&f.removed(body()));
            assert_eq!(f.bridges_up(), [(bridge(s5), true)]);
            std::mem::forget(a);
            let mut a = start();
            a.wait_removed();
            assert!(subnets(&a).is_empty());
            assert_eq!(f.bridges_up(), []);
            drop(a);
            cnci_agent::hub::destroy(&record, &Default::default()).expect("destroy");
        });
    });
}

/// The agent record of the fixture's CNCI, on the test underlay.
fn agent_record(f: &Fixture) -> AgentRecord {
    AgentRecord {
        uuid: f.cnci,
        tenant: f.tenant,
        netns: f.tenant_ns.clone(),
        underlay_ip: UNDERLAY,
        external_dev: None,
        uplink: "100.64.0.0/31".parse().expect("uplink"),
        dns: vec![],
    }
}

/// Limits small enough for a test, no public ranges.
fn small_policy() -> Policy {
    Policy {
        lease_secs: 60,
        limits: Limits {
            max_subnets: 16,
            max_nodes_per_subnet: 16,
        },
        public_ranges: vec![],
    }
}

fn a_tenant_ns(name: &str) -> std::fs::File {
    std::fs::File::open(format!("/run/netns/{name}")).expect("tenant netns")
}
