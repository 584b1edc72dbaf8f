//! At-least-once delivery of registrations (issue 10, item 4): the CNCI agent, the scheduler and
//! a compute node's daemon are each killed with SIGKILL in the middle of a burst of attaches and
//! detaches; after they restart, the hub holds exactly the compute nodes' current set, neither a
//! registration lost in flight nor one whose TenantRemoved was lost. Real processes, real TLS,
//! real namespaces.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use nix::sys::signal::Signal;
use serde_json::{json, Value};
use testkit::cluster::{Cluster, Cn, Member, Tenant, NN_IP};
use testkit::{cni_call, plugin, require_root, Netns, TENANT_A};

/// Registrations in the whole test: three phases, one per process killed.
const BURST: usize = 500;
/// Subnets detached again during each phase (their TenantRemoved may be lost with the victim).
const DETACH_PER_PHASE: usize = 10;
/// How long the hub may take to converge after the last restart (a bound, not a wait).
const CONVERGE: Duration = Duration::from_secs(90);

/// The i-th burst subnet: 172.20.0.0/24, 172.20.1.0/24, ... (inside 172.16.0.0/12).
fn subnet(i: usize) -> String {
    format!("172.{}.{}.0/24", 20 + i / 256, i % 256)
}

/// Attaches through the real CNI plugin in CN1's namespace: one container namespace holding an
/// interface per subnet (`e<i>`). Owns only names, so it can run on its own thread while the
/// test kills and restarts processes of the cluster.
#[derive(Clone)]
struct Burst {
    node_ns: String,
    state_dir: String,
    tenant: Tenant,
    ctr_name: String,
    ctr_path: String,
}

impl Burst {
    fn conf(&self, i: usize) -> Value {
        let s = subnet(i);
        let ip = s.replace(".0/24", ".10/24");
        json!({
            "cniVersion": "1.1.0",
            "name": format!("burst{i}"),
            "type": "ciao",
            "tenant": self.tenant.tenant,
            "subnet": s,
            "cnci": {"uuid": self.tenant.cnci, "ip": NN_IP},
            "stateDir": self.state_dir,
            "defaultRoute": false,
            "runtimeConfig": {"ips": [ip]},
        })
    }

    fn call(&self, cmd: &str, i: usize) -> Result<()> {
        let out = cni_call(
            &plugin(),
            Some(&self.node_ns),
            cmd,
            &self.ctr_name,
            &self.ctr_path,
            &format!("e{i}"),
            &self.conf(i),
            &[],
        );
        if !out.ok {
            bail!("CNI {cmd} e{i}: {} {}", out.stdout, out.stderr);
        }
        Ok(())
    }
}

/// Which process a phase kills.
#[derive(Clone, Copy, Debug)]
enum Victim {
    CnciAgent,
    Scheduler,
    NodeDaemon,
}

impl Victim {
    fn member(self, t: &Tenant) -> Member {
        match self {
            Victim::CnciAgent => Member::Agent(t.clone()),
            Victim::Scheduler => Member::Scheduler,
            Victim::NodeDaemon => Member::Daemon(Cn::Cn1),
        }
    }

    /// The first blow. The CNCI agent and the scheduler are frozen (SIGSTOP), so frames pile up
    /// in their socket buffers and are surely lost by the SIGKILL that follows; the node daemon
    /// is killed at once (it deletes a report only after writing it, so its death loses frames
    /// only in flight).
    fn strike(self, c: &mut Cluster, t: &Tenant) {
        match self {
            Victim::CnciAgent | Victim::Scheduler => {
                assert!(c.signal(&self.member(t), Signal::SIGSTOP), "{self:?} runs");
            }
            Victim::NodeDaemon => c.kill_daemon(Cn::Cn1),
        }
    }

    /// SIGKILL (if still alive) and a restart with the same identity and state.
    fn kill_and_restart(self, c: &mut Cluster, t: &Tenant) -> Result<()> {
        match self {
            Victim::CnciAgent => {
                c.kill_agent(t);
                c.start_agent(t)
            }
            Victim::Scheduler => {
                c.kill_scheduler();
                c.restart_scheduler()
            }
            Victim::NodeDaemon => c.start_daemon(Cn::Cn1),
        }
    }
}

/// The hub's programmed flood targets per subnet, from `show --json`.
fn hub_view(c: &Cluster, t: &Tenant) -> Result<BTreeMap<String, BTreeSet<String>>> {
    let show = c.agent_show(t)?;
    let mut out = BTreeMap::new();
    for s in show["subnets"].as_array().cloned().unwrap_or_default() {
        let programmed = s["programmed"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        out.insert(s["subnet"].as_str().unwrap_or("?").to_string(), programmed);
    }
    Ok(out)
}

/// Waits until the hub holds exactly `want`.
fn wait_exactly(c: &Cluster, t: &Tenant, want: &BTreeMap<String, BTreeSet<String>>) {
    let deadline = Instant::now() + CONVERGE;
    loop {
        let got = hub_view(c, t);
        if let Ok(got) = &got {
            if got == want {
                return;
            }
        }
        if Instant::now() > deadline {
            let diff = got.map(|got| {
                let missing: Vec<_> = want
                    .iter()
                    .filter(|(k, v)| got.get(*k) != Some(v))
                    .collect();
                let extra: Vec<_> = got
                    .iter()
                    .filter(|(k, v)| want.get(*k) != Some(v))
                    .collect();
                format!("missing or wrong: {missing:?}\nextra or wrong: {extra:?}")
            });
            panic!(
                "the hub did not converge to the nodes' set within {CONVERGE:?}: {diff:?}\n\
                 cn1 log:\n{}\nscheduler log:\n{}",
                testkit::cluster::log_tail(&c.log("cn1")),
                testkit::cluster::log_tail(&c.log("scheduler")),
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn killing_any_daemon_mid_burst_loses_no_registration_and_keeps_no_stale_one() {
    require_root!();
    let mut cluster = Cluster::new().expect("cluster");
    let t = cluster.add_tenant(TENANT_A).expect("tenant");
    // CN2 holds a registration of its own that CN1's snapshots must never prune.
    let _w2 = cluster
        .container(Cn::Cn2, &t, "172.16.1.0/24", "172.16.1.11")
        .expect("cn2 container");
    cluster
        .wait_programmed(&t, "172.16.1.0/24", &[Cn::Cn2.ip()])
        .expect("cn2 registered");

    let ctr = Netns::new("burst");
    let burst = Burst {
        node_ns: cluster.cn(Cn::Cn1).ns.name.clone(),
        state_dir: cluster.cn(Cn::Cn1).state.path().display().to_string(),
        tenant: t.clone(),
        ctr_name: ctr.name.clone(),
        ctr_path: ctr.path().display().to_string(),
    };

    let mut attached: BTreeSet<usize> = BTreeSet::new();
    // The CNCI last: its phase detaches subnets of earlier phases while it is frozen, so a
    // TenantRemoved dies with it and only the node's snapshot (TenantSync) can prune the entry.
    let phases = [Victim::NodeDaemon, Victim::Scheduler, Victim::CnciAgent];
    let per_phase = BURST.div_ceil(phases.len());
    for (phase, victim) in phases.into_iter().enumerate() {
        let range = phase * per_phase..((phase + 1) * per_phase).min(BURST);
        let total = range.len();
        // Detach a few subnets of earlier phases during this one: their TenantRemoved may die
        // with the victim, and only the node's snapshot can prune them then.
        let detach: Vec<usize> = attached.iter().copied().take(DETACH_PER_PHASE).collect();
        let done = std::sync::Arc::new(AtomicUsize::new(0));
        let worker = {
            let (b, done, range, detach) =
                (burst.clone(), done.clone(), range.clone(), detach.clone());
            std::thread::spawn(move || -> Result<()> {
                for (k, i) in range.enumerate() {
                    b.call("ADD", i)?;
                    if let Some(j) = detach.get(k) {
                        b.call("DEL", *j)?;
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                }
                Ok(())
            })
        };
        // Struck a third of the way in, killed and restarted two thirds in: frames are in
        // flight, queued on the node and held by the scheduler across the kill.
        let reached = |n: usize| {
            while done.load(Ordering::SeqCst) < n && !worker.is_finished() {
                std::thread::sleep(Duration::from_millis(2));
            }
        };
        let started = Instant::now();
        reached(total / 3);
        victim.strike(&mut cluster, &t);
        eprintln!("{:?}: struck the {victim:?}", started.elapsed());
        reached(2 * total / 3);
        victim
            .kill_and_restart(&mut cluster, &t)
            .unwrap_or_else(|e| panic!("restart {victim:?}: {e:#}"));
        eprintln!(
            "{:?}: killed and restarted the {victim:?}",
            started.elapsed()
        );
        worker
            .join()
            .expect("burst thread")
            .unwrap_or_else(|e| panic!("phase {victim:?}: {e:#}"));
        attached.extend(range);
        for j in &detach {
            attached.remove(j);
        }

        let mut want: BTreeMap<String, BTreeSet<String>> = attached
            .iter()
            .map(|i| (subnet(*i), BTreeSet::from([Cn::Cn1.ip().to_string()])))
            .collect();
        want.insert(
            "172.16.1.0/24".into(),
            BTreeSet::from([Cn::Cn2.ip().to_string()]),
        );
        eprintln!("{:?}: burst done", started.elapsed());
        wait_exactly(&cluster, &t, &want);
        eprintln!(
            "{:?}: after killing the {victim:?}, the hub holds exactly the {} registrations of \
             the nodes",
            started.elapsed(),
            want.len()
        );
    }
    drop(ctr);
}
