//! Issue 12, benchmark 1: a new tenant's first cross-node ping does not wait for the kernel's
//! ARP retransmit. ARP sent before a compute node's tunnel existed is lost; when the tunnel
//! comes up, `ciao-node run` nudges the waiting entries (`netcore::arp_nudge`): a gratuitous ARP
//! for each local workload, and an ARP request on each container's behalf for each of its
//! unresolved neighbours. Here the workloads' retransmit time is 60 s, so only the nudge can
//! resolve the entries before that: the test waits for the replies with a shorter deadline.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::cluster::{Cluster, Cn, Workload};
use testkit::{require_root, Proc, TENANT_A};

const S1: &str = "172.16.1.0/24";
/// The workloads' ARP retransmit time: without the nudge no entry resolves before it.
const RETRANS_MS: u32 = 60_000;
/// Well below [`RETRANS_MS`]; the waits end as soon as their condition holds.
const WITHIN: Duration = Duration::from_secs(40);

/// Makes `w`'s unanswered ARP wait [`RETRANS_MS`] before asking again.
fn slow_arp(w: &Workload) {
    w.exec(&[
        "sysctl",
        "-q",
        "-w",
        &format!("net.ipv4.neigh.eth0.retrans_time_ms={RETRANS_MS}"),
    ]);
}

/// The state of `w`'s neighbour entry for `ip` on eth0 (`INCOMPLETE`, `REACHABLE`, ...).
fn neigh_state(w: &Workload, ip: &str) -> Option<String> {
    let out = w.exec(&["ip", "-j", "-4", "neigh", "show", "dev", "eth0", "to", ip]);
    let entries: Value = serde_json::from_str(&out).ok()?;
    let state = entries.as_array()?.first()?["state"]
        .as_array()?
        .first()?
        .clone();
    state.as_str().map(str::to_string)
}

/// Waits until `w`'s entry for `ip` is in one of `states`; panics after [`WITHIN`].
fn wait_neigh(w: &Workload, ip: &str, states: &[&str]) {
    let deadline = Instant::now() + WITHIN;
    loop {
        let state = neigh_state(w, ip);
        if state.as_deref().is_some_and(|s| states.contains(&s)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} -> {ip}: neighbour {state:?}, not one of {states:?} within {WITHIN:?}",
            w.ip
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `ping` from `w` to `ip` running in the background (killed on drop), and its output lines.
struct Pinger {
    _proc: Proc,
    lines: mpsc::Receiver<String>,
    what: String,
}

impl Pinger {
    fn start(w: &Workload, ip: &str) -> Pinger {
        let mut child = Command::new("ip")
            .args([
                "netns", "exec", &w.ns.name, "ping", "-n", "-i", "0.2", "-w", "55", ip,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ping");
        let stdout = child.stdout.take().expect("ping stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Pinger {
            _proc: Proc(child),
            lines,
            what: format!("{} -> {ip}", w.ip),
        }
    }

    /// Waits for the first echo reply line; panics after [`WITHIN`].
    fn wait_reply(&self) {
        let deadline = Instant::now() + WITHIN;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains("bytes from") => return,
                Ok(_) => {}
                Err(e) => panic!("{}: no reply within {WITHIN:?} ({e})", self.what),
            }
        }
    }
}

/// CN2's record of subnet S1 in `ciao-node show --json`.
fn net_view(cluster: &Cluster, cn: Cn) -> Value {
    let show = cluster.cn(cn).show_json();
    show["nets"]
        .as_array()
        .and_then(|nets| nets.iter().find(|n| n["net"]["config"]["subnet"] == S1))
        .cloned()
        .unwrap_or(Value::Null)
}

#[test]
fn waiting_arp_entries_resolve_when_the_tunnel_comes_up() {
    require_root!();
    let mut cluster = Cluster::with_controller().expect("cluster in controller mode");
    let mut t = cluster.controlled_tenant(TENANT_A);
    let a = cluster
        .container(Cn::Cn1, &t, S1, "172.16.1.10")
        .expect("a on CN1");
    cluster.wait_cnci_ready(&mut t).expect("CNCI ready");
    cluster
        .wait_programmed(&t, S1, &[Cn::Cn1.ip()])
        .expect("hub programmed toward CN1");

    // CN2's daemon is down: its containers attach, but its tunnel waits for the daemon.
    cluster.kill_daemon(Cn::Cn2);
    let b = cluster
        .container(Cn::Cn2, &t, S1, "172.16.1.11")
        .expect("b on CN2");
    let c = cluster
        .container(Cn::Cn2, &t, S1, "172.16.1.12")
        .expect("c on CN2, silent");
    for w in [&a, &b, &c] {
        slow_arp(w);
    }
    // b asks for a (a request on b's behalf resolves it); a asks for c, which sends nothing
    // itself (only c's gratuitous ARP resolves it).
    let b_to_a = Pinger::start(&b, &a.ip);
    let a_to_c = Pinger::start(&a, &c.ip);
    wait_neigh(&b, &a.ip, &["INCOMPLETE", "FAILED"]);
    wait_neigh(&a, &c.ip, &["INCOMPLETE", "FAILED"]);
    let waiting = net_view(&cluster, Cn::Cn2);
    assert!(
        !waiting["awaits_cnci"].is_null(),
        "CN2's subnet awaits its CNCI: {waiting}"
    );

    let started = Instant::now();
    cluster.start_daemon(Cn::Cn2).expect("CN2's daemon");
    b_to_a.wait_reply();
    a_to_c.wait_reply();
    eprintln!(
        "CN2's daemon started -> both replies: {:?} (retransmit {RETRANS_MS} ms)",
        started.elapsed()
    );
    wait_neigh(&b, &a.ip, &["REACHABLE", "STALE", "DELAY", "PROBE"]);
    wait_neigh(&a, &c.ip, &["REACHABLE", "STALE", "DELAY", "PROBE"]);

    // The frames left through CN2's bridge, which did not learn b's MAC on itself.
    let net = net_view(&cluster, Cn::Cn2);
    let bridge = net["net"]["bridge"].as_str().expect("bridge").to_string();
    let mac = net["vnics"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["ip"] == b.ip.as_str()))
        .and_then(|v| v["mac"].as_str())
        .expect("b's MAC")
        .to_string();
    let fdb = cluster
        .cn(Cn::Cn2)
        .ns
        .exec(&["bridge", "-j", "fdb", "show", "br", &bridge]);
    let fdb: Value = serde_json::from_str(&fdb).expect("fdb json");
    let on_bridge: Vec<&Value> = fdb
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|e| e["mac"] == mac.as_str() && e["ifname"] == bridge.as_str())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        on_bridge.is_empty(),
        "b's MAC learnt on the bridge itself: {on_bridge:?}"
    );
    // The daemon logs what its nudge did once its rounds are over.
    let deadline = Instant::now() + WITHIN;
    loop {
        let log = std::fs::read_to_string(cluster.log(Cn::Cn2.name())).unwrap_or_default();
        if log.contains("ARP nudge after the tunnel came up") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "CN2's daemon logged no nudge:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
