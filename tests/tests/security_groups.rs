//! Issue 14 item 2 on compute nodes, end to end: workloads name their security groups in the
//! CNI config, the nodes report them (PortGroups), the controller answers each node with the
//! groups it needs (SecurityGroupsUpdate) and the nodes enforce them in `inet ciao_sg_v1`.
//! Real TCP and UDP between container namespaces on two compute nodes.

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::time::Duration;

use serde_json::{json, Value};
use testkit::cluster::{Cluster, Cn, Workload};
use testkit::wait;
use testkit::{require_root, TENANT_A};

const S1: &str = "172.16.1.0/24";
const WEB: &str = "172.16.1.10";
const ADMIN: &str = "172.16.1.11";
const OTHER: &str = "172.16.1.12";
/// A dropped SYN is retried after 1 s: a connect still pending after this was dropped.
const DROPPED: Duration = Duration::from_millis(400);

/// Runs `f` on a thread inside network namespace `ns`.
fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("open the namespace");
        nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
    .join()
    .expect("namespace thread")
}

/// TCP listeners on `ports` (accepting and closing forever) in `w`'s namespace.
fn serve_tcp(w: &Workload, ports: &[u16]) {
    for port in ports.iter().copied() {
        let ns = w.ns.name.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            in_ns(&ns, move || {
                let l = TcpListener::bind(("0.0.0.0", port)).expect("bind");
                tx.send(()).expect("ready");
                for conn in l.incoming() {
                    drop(conn);
                }
            })
        });
        rx.recv().expect("listener up");
    }
}

/// True if a TCP connection from `from` to `ip:port` is accepted within [`DROPPED`].
fn connects(from: &Workload, ip: &str, port: u16) -> bool {
    let addr: SocketAddr = format!("{ip}:{port}").parse().expect("address");
    in_ns(&from.ns.name, move || {
        TcpStream::connect_timeout(&addr, DROPPED).is_ok()
    })
}

/// True once `cond` holds; false if it still fails after [`wait::CONVERGE`].
fn until(cond: impl FnMut() -> bool) -> bool {
    wait::holds(wait::CONVERGE, cond)
}

/// True if a UDP datagram from `from` reaches `to:port` (a socket in `to` waits 1 s).
fn udp_arrives(from: &Workload, to: &Workload, port: u16) -> bool {
    let (tx, rx) = std::sync::mpsc::channel();
    let ns = to.ns.name.clone();
    let receiver = std::thread::spawn(move || {
        in_ns(&ns, move || {
            let s = UdpSocket::bind(("0.0.0.0", port)).expect("bind udp");
            s.set_read_timeout(Some(Duration::from_secs(1)))
                .expect("timeout");
            tx.send(()).expect("ready");
            let mut buf = [0u8; 16];
            s.recv(&mut buf).is_ok()
        })
    });
    rx.recv().expect("udp receiver up");
    let target = format!("{}:{port}", to.ip);
    in_ns(&from.ns.name, move || {
        let s = UdpSocket::bind("0.0.0.0:0").expect("bind");
        s.send_to(b"hello", &target).expect("send");
    });
    receiver.join().expect("receiver")
}

/// `nft -j list table inet ciao_sg_v1` in `cn`'s namespace, as its list of objects.
fn sg_table(cluster: &Cluster, cn: Cn) -> Vec<Value> {
    let out = cluster
        .cn(cn)
        .ns
        .exec(&["nft", "-j", "list", "table", "inet", "ciao_sg_v1"]);
    let v: Value = serde_json::from_str(&out).expect("nft JSON");
    v["nftables"].as_array().cloned().unwrap_or_default()
}

#[test]
fn groups_named_by_workloads_are_enforced_and_follow_rule_and_membership_changes() {
    require_root!();
    let mut cluster = Cluster::with_controller().expect("cluster in controller mode");
    let mut t = cluster.controlled_tenant(TENANT_A);
    let groups = |names: &[&str]| json!({ "securityGroups": names });
    let web1 = cluster
        .container_with(Cn::Cn1, &t, S1, WEB, groups(&["web"]))
        .expect("web1");
    cluster.wait_cnci_ready(&mut t).expect("CNCI ready");
    let tenant = t.tenant.clone();
    for name in ["web", "admin"] {
        cluster.ciao_net_ok(&["group", "create", "--tenant", &tenant, name]);
    }
    let rule = |group: &str, extra: &[&str]| cluster.add_rule(&tenant, group, extra);
    rule(
        "web",
        &[
            "--direction",
            "ingress",
            "--protocol",
            "tcp",
            "--port",
            "80",
        ],
    );
    let ssh = rule(
        "web",
        &[
            "--direction",
            "ingress",
            "--protocol",
            "tcp",
            "--port",
            "22",
            "--remote-group",
            "admin",
        ],
    );
    // All egress is allowed by the two rules every new group starts with.

    let admin1 = cluster
        .container_with(Cn::Cn2, &t, S1, ADMIN, groups(&["admin"]))
        .expect("admin1");
    let mut other1 = cluster.container(Cn::Cn2, &t, S1, OTHER).expect("other1");
    serve_tcp(&web1, &[22, 80, 8080]);
    serve_tcp(&other1, &[9000]);

    assert!(
        until(|| connects(&admin1, WEB, 22)),
        "admin1 reaches web1:22"
    );
    assert!(connects(&admin1, WEB, 80), "admin1 reaches web1:80");
    assert!(
        until(|| connects(&other1, WEB, 80)),
        "other1 reaches web1:80"
    );
    assert!(
        !connects(&other1, WEB, 22),
        "other1 (not in admin) must not reach web1:22"
    );
    assert!(!connects(&admin1, WEB, 8080), "no rule opens 8080");
    assert!(!udp_arrives(&other1, &web1, 5353), "no rule opens UDP");
    assert!(
        connects(&web1, OTHER, 9000),
        "web1's own egress and its replies pass"
    );
    // Both nodes answered the last groups they were sent: `ciao-net tenant` says so.
    let in_force = || {
        let view = cluster.ciao_net_ok(&["tenant", &tenant]);
        let nodes = view["security_groups"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        nodes.len() == 2 && nodes.iter().all(|n| n["state"] == "in_force")
    };
    assert!(
        until(in_force),
        "{}",
        cluster.ciao_net_ok(&["tenant", &tenant])
    );

    // web1's bridge has its own conntrack zone.
    let zones = sg_table(&cluster, Cn::Cn1)
        .into_iter()
        .find(|o| o["map"]["name"] == "zones")
        .expect("the zones map");
    assert_eq!(
        zones["map"]["elem"].as_array().map(Vec::len),
        Some(1),
        "{zones}"
    );

    // Membership: other1 comes back in group admin. On web1's node that is one element of
    // admin's member set; nothing else of the table changes.
    let before = sg_table(&cluster, Cn::Cn1);
    other1.remove();
    drop(other1);
    let other2 = cluster
        .container_with(Cn::Cn2, &t, S1, OTHER, groups(&["admin"]))
        .expect("other1 again, in admin");
    assert!(
        until(|| connects(&other2, WEB, 22)),
        "a new admin member reaches web1:22"
    );
    let after = sg_table(&cluster, Cn::Cn1);
    let gone: Vec<&Value> = before.iter().filter(|o| !after.contains(o)).collect();
    let new: Vec<&Value> = after.iter().filter(|o| !before.contains(o)).collect();
    assert_eq!(
        (gone.len(), new.len()),
        (1, 1),
        "one object differs: {gone:?} -> {new:?}"
    );
    let elems = |o: &Value| -> BTreeSet<String> {
        o["set"]["elem"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| e.as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(
        gone[0]["set"]["name"], new[0]["set"]["name"],
        "{gone:?} -> {new:?}"
    );
    let added: Vec<String> = elems(new[0]).difference(&elems(gone[0])).cloned().collect();
    assert_eq!(added, [OTHER], "{gone:?} -> {new:?}");
    assert!(elems(gone[0]).is_subset(&elems(new[0])));

    // Removing the 22 rule closes new connections to 22 at once; 80 stays open.
    let id = ssh["uuid"].as_str().expect("rule id").to_string();
    cluster.ciao_net_ok(&["rule", "delete", "--tenant", &tenant, &id]);
    assert!(
        until(|| !connects(&admin1, WEB, 22)),
        "22 closes once its rule is gone"
    );
    assert!(connects(&admin1, WEB, 80), "80 stays open");

    // A restarted node daemon rebuilds the same table (a new one: its handle changes) from
    // the port records and the snapshot it persisted.
    let listing = |c: &Cluster| c.cn(Cn::Cn1).ns.nft_table_blocks("inet", "ciao_sg_v1");
    let handle = |c: &Cluster| c.cn(Cn::Cn1).ns.nft_table_handle("inet", "ciao_sg_v1");
    let (text, old) = (listing(&cluster), handle(&cluster));
    cluster.kill_daemon(Cn::Cn1);
    cluster.start_daemon(Cn::Cn1).expect("node daemon back");
    assert!(
        until(|| handle(&cluster) != old),
        "the restarted daemon rebuilt the table"
    );
    assert_eq!(listing(&cluster), text, "the same rules after the restart");
    assert!(!connects(&admin1, WEB, 22), "22 stays closed");
    assert!(connects(&admin1, WEB, 80), "80 stays open");
}
