//! Issue 12 end to end: the whole cluster in controller mode (scheduler, `ciao-controller`,
//! `ciao-nn`, two compute nodes), real processes in namespaces, a real SQLite store. Workload
//! configs name only tenant and subnet; each tenant's CNCI appears with its first workload.

use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::cluster::{wait_reachable, Cluster, Cn, EXT_IP, NN2_IP, NN_IP};
use testkit::matrix::TwoTenants;
use testkit::{require_root, TENANT_A, TENANT_B};

const S1: &str = "172.16.1.0/24";
const S2: &str = "172.16.2.0/24";
/// Long enough for a loaded CI machine; the loop ends as soon as the ping answers.
const CONVERGE: Duration = Duration::from_secs(60);

/// Pings `ip` from `w` once a second until it answers; the time it took.
fn ping_until(w: &testkit::cluster::Workload, ip: &str) -> Duration {
    let start = Instant::now();
    while !w.ping(ip, 1) {
        assert!(
            start.elapsed() < CONVERGE,
            "{ip} unreachable from {} after {CONVERGE:?}",
            w.ip
        );
    }
    start.elapsed()
}

/// True once `cond` holds, false if it still fails after [`CONVERGE`].
fn until(mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < CONVERGE {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// The tenant's subnet `cidr` in `ciao-net --json tenant`.
fn subnet_view(tenant: &Value, cidr: &str) -> Value {
    tenant["subnets"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["cidr"] == cidr))
        .cloned()
        .unwrap_or(Value::Null)
}

/// The compute node UUID that `ciao-node show` names for `cn`.
fn node_uuid(cluster: &Cluster, cn: Cn) -> String {
    let show = cluster.cn(cn).show_json();
    show["agent_uuid"].as_str().unwrap_or_default().to_string()
}

/// The compute nodes a subnet of `ciao-net --json tenant` names as its hosts, sorted.
fn hosts_of(subnet: &Value) -> Vec<String> {
    let mut hosts: Vec<String> = subnet["compute_nodes"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    hosts.sort();
    hosts
}

/// Both compute nodes' UUIDs, sorted as [`hosts_of`] returns them.
fn both_nodes(cluster: &Cluster) -> Vec<String> {
    let mut both = vec![node_uuid(cluster, Cn::Cn1), node_uuid(cluster, Cn::Cn2)];
    both.sort();
    both
}

/// The subnet `cidr` of `tenant` in `ciao-node show --json` of `cn` (null if absent).
fn node_net(cluster: &Cluster, cn: Cn, tenant: &str, cidr: &str) -> Value {
    let show = cluster.cn(cn).show_json();
    show["nets"]
        .as_array()
        .and_then(|nets| {
            nets.iter().find(|n| {
                n["net"]["config"]["tenant"] == tenant && n["net"]["config"]["subnet"] == cidr
            })
        })
        .cloned()
        .unwrap_or(Value::Null)
}

/// CNCIs of `tenant` in `ciao-net --json cncis` that are not gone.
fn live_cncis(cluster: &Cluster, tenant: &str) -> Vec<Value> {
    let cncis = cluster.ciao_net_json(&["cncis"]).expect("ciao-net cncis");
    cncis
        .as_array()
        .or_else(|| cncis["cncis"].as_array())
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c["tenant"] == tenant && c["state"] != "gone")
        .collect()
}

#[test]
fn a_new_tenants_first_container_provisions_one_cnci_and_a_second_node_reaches_it() {
    require_root!();
    let mut cluster = Cluster::with_controller().expect("cluster in controller mode");
    let mut t = cluster.controlled_tenant(TENANT_A);
    testkit::plugin(); // built on first use: not part of the measurement

    let start = Instant::now();
    let a1 = cluster
        .container(Cn::Cn1, &t, S1, "172.16.1.10")
        .expect("first container, no CNCI named");
    let attach = start.elapsed();
    let a2 = cluster
        .container(Cn::Cn2, &t, S1, "172.16.1.11")
        .expect("second container on the other node");
    let first_ping = wait_reachable(&a2, &a1.ip, start, CONVERGE).expect("a1 reachable from a2");
    eprintln!(
        "controller mode: first attach {attach:?}; first attach to first cross-node ping {first_ping:?}"
    );

    let view = cluster.wait_cnci_ready(&mut t).expect("CNCI ready");
    assert_eq!(live_cncis(&cluster, &t.tenant).len(), 1, "one CNCI: {view}");
    assert_eq!(view["cnci"]["underlay"], NN_IP, "{view}");
    let subnet = subnet_view(&view, S1);
    let id = subnet["tunnel_id"].as_u64().expect("tunnel id");
    assert!(id > 0, "{subnet}");
    assert_eq!(
        hosts_of(&subnet),
        both_nodes(&cluster),
        "both compute nodes host the subnet: {subnet}"
    );
    // The readable view names the same.
    let text = cluster.ciao_net(&["tenant", &t.tenant]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains(&t.cnci) && text.contains(S1), "{text}");
    // The hub is the CNCI ciao-nn runs, programmed toward both nodes with that id.
    let hub = cluster
        .wait_programmed(&t, S1, &[Cn::Cn1.ip(), Cn::Cn2.ip()])
        .expect("hub programmed");
    assert_eq!(hub["id"].as_u64(), Some(id), "{hub}");
}

#[test]
fn two_tenants_with_identical_subnets_stay_isolated_without_cnci_config() {
    require_root!();
    let mut cluster = Cluster::with_controller().expect("cluster in controller mode");
    let mut a = cluster.controlled_tenant(TENANT_A);
    let mut b = cluster.controlled_tenant(TENANT_B);
    let two = TwoTenants::attach(&cluster, &a, &b, Vec::new()).expect("six containers");
    cluster.wait_cnci_ready(&mut a).expect("CNCI of A");
    cluster.wait_cnci_ready(&mut b).expect("CNCI of B");
    assert_ne!(a.cnci, b.cnci);
    let late = TwoTenants::wait_hubs(&cluster, &[('A', &a), ('B', &b)]);
    assert!(late.is_empty(), "{late:?}");
    let matrix = two.matrix(&cluster);
    assert!(
        matrix.as_expected(),
        "{}\n{:?}",
        matrix.render(),
        matrix.mismatches()
    );
    // Identical subnets of two tenants: two distinct tunnel ids.
    let ids: Vec<u64> = [&a, &b]
        .iter()
        .map(|t| {
            let view = cluster.ciao_net_json(&["tenant", &t.tenant]).expect("view");
            subnet_view(&view, S1)["tunnel_id"].as_u64().expect("id")
        })
        .collect();
    assert_ne!(ids[0], ids[1]);
}

#[test]
fn a_restarted_controller_keeps_its_state_and_answers_attaches_made_while_it_was_down() {
    require_root!();
    let mut cluster = Cluster::with_controller().expect("cluster in controller mode");
    let mut t = cluster.controlled_tenant(TENANT_A);
    let a1 = cluster
        .container(Cn::Cn1, &t, S1, "172.16.1.10")
        .expect("a1");
    let before = cluster.wait_cnci_ready(&mut t).expect("CNCI ready");

    cluster.kill_controller();
    // Attaches while the controller is down succeed at once and reach local neighbours.
    let a2 = cluster
        .container(Cn::Cn2, &t, S1, "172.16.1.11")
        .expect("a2");
    let b1 = cluster
        .container(Cn::Cn2, &t, S2, "172.16.2.10")
        .expect("b1");
    for cidr in [S1, S2] {
        let net = node_net(&cluster, Cn::Cn2, &t.tenant, cidr);
        assert!(
            net["awaits_cnci"]["since"].is_string(),
            "cn2 shows {cidr} awaiting a CNCI: {net}"
        );
    }

    cluster.start_controller().expect("controller restarted");
    ping_until(&a2, &a1.ip);
    ping_until(&b1, &a1.ip);
    let after = cluster.wait_cnci_ready(&mut t).expect("CNCI still ready");
    assert_eq!(
        before["cnci"]["uuid"], after["cnci"]["uuid"],
        "nothing re-provisioned"
    );
    assert_eq!(live_cncis(&cluster, &t.tenant).len(), 1);
    assert_eq!(
        subnet_view(&before, S1)["tunnel_id"],
        subnet_view(&after, S1)["tunnel_id"]
    );
    assert!(subnet_view(&after, S2)["tunnel_id"].as_u64().is_some());
}

#[test]
fn a_killed_network_node_agent_leaves_traffic_flowing_and_adopts_its_cnci() {
    require_root!();
    let mut cluster = Cluster::with_controller().expect("cluster in controller mode");
    let mut t = cluster.controlled_tenant(TENANT_A);
    let a1 = cluster
        .container(Cn::Cn1, &t, S1, "172.16.1.10")
        .expect("a1");
    let a2 = cluster
        .container(Cn::Cn2, &t, S1, "172.16.1.11")
        .expect("a2");
    ping_until(&a2, &a1.ip);
    let before = cluster.wait_cnci_ready(&mut t).expect("CNCI ready");
    let netns_inode = |t: &testkit::cluster::Tenant| {
        std::fs::metadata(format!("/run/netns/{}", t.netns))
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            .expect("tenant namespace")
    };
    let inode = netns_inode(&t);

    cluster.kill_nn();
    assert!(a2.ping(&a1.ip, 3), "traffic flows while ciao-nn is down");
    cluster.start_nn().expect("ciao-nn restarted");
    let after = cluster.wait_cnci_ready(&mut t).expect("CNCI ready again");
    assert_eq!(before["cnci"]["uuid"], after["cnci"]["uuid"]);
    assert_eq!(netns_inode(&t), inode, "the tenant namespace was adopted");
    assert!(a2.ping(&a1.ip, 3), "traffic after the restart");
}

#[test]
fn a_public_ip_from_the_pool_reaches_the_workload_and_goes_back_on_release() {
    require_root!();
    let mut cluster = Cluster::with_controller().expect("cluster in controller mode");
    let mut t = cluster.controlled_tenant(TENANT_A);
    let a1 = cluster
        .container(Cn::Cn1, &t, S1, "172.16.1.10")
        .expect("a1");
    cluster.wait_cnci_ready(&mut t).expect("CNCI ready");

    let assigned = cluster
        .ciao_net_json(&["public-ip", "assign", &t.tenant, &a1.ip])
        .expect("assign");
    let public = assigned["public_ip"]
        .as_str()
        .expect("public ip")
        .to_string();
    // The store commits before the CNCI has programmed the address: wait for the condition
    // (a ping can fail at once, e.g. before the route exists, so count time, not tries).
    let reached = until(|| cluster.ext.ping(&public, 1));
    assert!(reached, "{EXT_IP} reaches {public} ({assigned})");

    cluster
        .ciao_net_json(&["public-ip", "release", &t.tenant, &public])
        .expect("release");
    let gone = until(|| !cluster.ext.ping(&public, 1));
    assert!(gone, "{public} still answers after its release");

    // Six addresses in the pool: the seventh assignment is a clear error.
    let mut workloads = Vec::new();
    for i in 0..6 {
        let ip = format!("172.16.1.{}", 20 + i);
        workloads.push(cluster.container(Cn::Cn1, &t, S1, &ip).expect("workload"));
        let out = cluster.ciao_net(&["public-ip", "assign", &t.tenant, &ip]);
        assert!(out.status.success(), "{out:?}");
    }
    let out = cluster.ciao_net(&["public-ip", "assign", &t.tenant, &a1.ip]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("exhausted"), "{err}");
}

#[test]
fn a_subnet_overlapping_the_tenants_subnet_on_another_node_is_refused_with_its_reason() {
    require_root!();
    let mut cluster = Cluster::with_controller().expect("cluster in controller mode");
    let mut t = cluster.controlled_tenant(TENANT_A);
    let (wide, narrow) = ("10.1.0.0/16", "10.1.2.0/24");
    let _a1 = cluster
        .container(Cn::Cn1, &t, wide, "10.1.0.10")
        .expect("a1");
    cluster.wait_cnci_ready(&mut t).expect("CNCI ready");
    let _b1 = cluster
        .container(Cn::Cn2, &t, narrow, "10.1.2.10")
        .expect("the attach itself is local and succeeds");
    let start = Instant::now();
    let reason = loop {
        let net = node_net(&cluster, Cn::Cn2, &t.tenant, narrow);
        if let Some(reason) = net["refused"]["reason"].as_str() {
            assert!(net["awaits_cnci"].is_null(), "{net}");
            break reason.to_string();
        }
        assert!(
            start.elapsed() < CONVERGE,
            "cn2 never shows {narrow} refused: {net}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        reason.contains("overlaps") && reason.contains(wide),
        "{reason}"
    );
    let text = cluster.cn(Cn::Cn2).ns.exec(&[
        &testkit::node_tool().display().to_string(),
        "--state-dir",
        &cluster.cn(Cn::Cn2).state.path().display().to_string(),
        "show",
    ]);
    assert!(
        text.contains(&format!("refused by the controller: {reason}")),
        "{text}"
    );
    let Err(err) = cluster.container(Cn::Cn2, &t, narrow, "10.1.2.11") else {
        panic!("a second attach into the refused subnet succeeded");
    };
    let err = format!("{err:#}");
    assert!(
        err.contains("\"code\":7") || err.contains("\"code\": 7"),
        "CNI code 7: {err}"
    );
    assert!(err.contains(narrow) && err.contains(&reason), "{err}");
    let net = node_net(&cluster, Cn::Cn2, &t.tenant, narrow);
    assert_eq!(
        net["vnics"].as_array().map(Vec::len),
        Some(1),
        "nothing attached: {net}"
    );
    // On the node that hosts the wide subnet, the overlap is refused locally at attach.
    let Err(err) = cluster.container(Cn::Cn1, &t, "10.1.3.0/24", "10.1.3.10") else {
        panic!("an attach overlapping the tenant's subnet on the same node succeeded");
    };
    let err = format!("{err:#}");
    assert!(
        (err.contains("\"code\":7") || err.contains("\"code\": 7"))
            && err.contains("subnet")
            && err.contains("overlaps 10.1.0.0/16"),
        "{err}"
    );
    assert!(node_net(&cluster, Cn::Cn1, &t.tenant, "10.1.3.0/24").is_null());
}

#[test]
fn twenty_simultaneous_attaches_of_a_new_tenant_on_two_nodes_give_one_cnci_and_one_id_per_subnet() {
    require_root!();
    let mut cluster = Cluster::with_controller().expect("cluster in controller mode");
    let mut t = cluster.controlled_tenant(TENANT_B);
    testkit::plugin(); // built before the threads start, so they start together
                       // 20 containers: 5 per (node, subnet), all released at once by one barrier.
    let plan: Vec<(Cn, &str, String)> = (0..20u8)
        .map(|i| {
            let cn = if i % 2 == 0 { Cn::Cn1 } else { Cn::Cn2 };
            let (subnet, prefix) = if i % 4 < 2 {
                (S1, "172.16.1")
            } else {
                (S2, "172.16.2")
            };
            (cn, subnet, format!("{prefix}.{}", 20 + i))
        })
        .collect();
    let barrier = std::sync::Barrier::new(plan.len());
    let workloads: Vec<testkit::cluster::Workload> = std::thread::scope(|s| {
        let handles: Vec<_> = plan
            .iter()
            .map(|(cn, subnet, ip)| {
                let (cluster, t, barrier) = (&cluster, &t, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    cluster.container(*cn, t, subnet, ip)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("attach thread").expect("attach"))
            .collect()
    });

    let view = cluster.wait_cnci_ready(&mut t).expect("CNCI ready");
    assert_eq!(live_cncis(&cluster, &t.tenant).len(), 1, "one CNCI: {view}");
    let want = both_nodes(&cluster);
    let mut ids = Vec::new();
    for subnet in [S1, S2] {
        // Both nodes' tunnels of the subnet carry the one id the controller gave it.
        let hub = cluster
            .wait_programmed(&t, subnet, &[Cn::Cn1.ip(), Cn::Cn2.ip()])
            .expect("hub programmed toward both nodes");
        let view = cluster
            .ciao_net_json(&["tenant", &t.tenant])
            .expect("ciao-net tenant");
        let entry = subnet_view(&view, subnet);
        let id = entry["tunnel_id"].as_u64().expect("tunnel id");
        assert_eq!(hub["id"].as_u64(), Some(id), "{hub} {entry}");
        for cn in [Cn::Cn1, Cn::Cn2] {
            let net = node_net(&cluster, cn, &t.tenant, subnet);
            assert_eq!(net["net"]["tunnel_id"].as_u64(), Some(id), "{net}");
        }
        assert_eq!(hosts_of(&entry), want, "{entry}");
        ids.push(id);
    }
    assert_ne!(ids[0], ids[1], "one id per subnet");
    // A cross-node ping in each subnet: workloads 0 (CN1, S1) -> 1 (CN2, S1), 2 (CN1, S2) -> 3.
    ping_until(&workloads[0], &workloads[1].ip);
    ping_until(&workloads[2], &workloads[3].ip);
}

/// The network node `ciao-net --json tenant` places the tenant's CNCI on, and its address.
fn placed_on(view: &Value) -> (String, String) {
    let cnci = &view["cnci"];
    let node = cnci["network_node"].as_str().unwrap_or_default();
    let underlay = cnci["underlay"].as_str().unwrap_or_default();
    (node.to_string(), underlay.to_string())
}

/// The IPv4 addresses of the network namespace at `ns`.
fn addresses_in(ns: &std::path::Path) -> Vec<std::net::Ipv4Addr> {
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net={}", ns.display()))
        .args(["ip", "-j", "-4", "addr", "show"])
        .output()
        .expect("ip addr");
    let links: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    links
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a["local"].as_str()?.parse().ok())
        .collect()
}

/// Whether the uplink of the CNCI recorded in `t.state_dir` has its underlay end in `ns`.
fn uplink_in(t: &testkit::cluster::Tenant, ns: &std::path::Path) -> bool {
    let record: Value = serde_json::from_slice(
        &std::fs::read(t.state_dir.join("agent.json")).expect("the CNCI's agent.json"),
    )
    .expect("agent.json");
    let uplink: ipnet::Ipv4Net = record["uplink"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("uplink in agent.json");
    addresses_in(ns).iter().any(|a| uplink.contains(a))
}

const TENANT_C: &str = "c0c0c0c0-1111-4222-8333-444455556666";
const TENANT_D: &str = "d0d0d0d0-1111-4222-8333-444455556666";

#[test]
fn a_second_network_node_joins_and_the_next_new_tenants_are_placed_on_it() {
    require_root!();
    let mut cluster = Cluster::with_controller().expect("cluster in controller mode");
    let nodes = cluster.ciao_net_json(&["nodes"]).expect("nodes");
    let nn1 = nodes["network_nodes"][0]["uuid"]
        .as_str()
        .expect("the first network node")
        .to_string();

    // Tenants A and B: the only network node takes both CNCIs.
    let mut a = cluster.controlled_tenant(TENANT_A);
    let mut b = cluster.controlled_tenant(TENANT_B);
    let a1 = cluster
        .container(Cn::Cn1, &a, S1, "172.16.1.10")
        .expect("a1");
    let a2 = cluster
        .container(Cn::Cn2, &a, S1, "172.16.1.11")
        .expect("a2");
    let _b1 = cluster
        .container(Cn::Cn1, &b, S1, "172.16.1.10")
        .expect("b1");
    for t in [&mut a, &mut b] {
        let view = cluster.wait_cnci_ready(t).expect("CNCI on the first node");
        assert_eq!(placed_on(&view), (nn1.clone(), NN_IP.to_string()), "{view}");
    }
    ping_until(&a2, &a1.ip);

    // The second network node joins with only its certificate and the scheduler's address.
    let nn2 = cluster.start_nn2().expect("second ciao-nn connected");
    assert_ne!(nn2, nn1);
    let nodes = cluster.ciao_net_json(&["nodes"]).expect("nodes");
    let second = nodes["network_nodes"]
        .as_array()
        .and_then(|l| l.iter().find(|n| n["uuid"] == nn2.as_str()))
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(second["underlay"], NN2_IP, "{nodes}");
    assert_eq!(second["external_device"], "ext0", "{nodes}");
    assert_eq!(second["cncis"], 0, "{nodes}");

    // The next new tenants go to the node with the fewest CNCIs: the new one (0, then 1 < 2).
    let mut c = cluster.controlled_tenant(TENANT_C);
    let mut d = cluster.controlled_tenant(TENANT_D);
    let c1 = cluster
        .container(Cn::Cn1, &c, S1, "172.16.1.10")
        .expect("c1");
    let c2 = cluster
        .container(Cn::Cn2, &c, S1, "172.16.1.11")
        .expect("c2");
    let cv = cluster.wait_cnci_ready(&mut c).expect("CNCI of C");
    let _d1 = cluster
        .container(Cn::Cn2, &d, S2, "172.16.2.10")
        .expect("d1");
    let dv = cluster.wait_cnci_ready(&mut d).expect("CNCI of D");
    let nn2_ns = cluster.nn2_ns().expect("second node's namespace").path();
    for (t, view) in [(&c, &cv), (&d, &dv)] {
        assert_eq!(placed_on(view), (nn2.clone(), NN2_IP.to_string()), "{view}");
        // It really runs there: recorded by the second ciao-nn, its uplink in that namespace.
        let dir = cluster.nn2_state_dir().expect("nn2 state");
        assert!(t.state_dir.starts_with(&dir), "{}", t.state_dir.display());
        assert!(uplink_in(t, &nn2_ns), "{} uplink on nn2", t.cnci);
        assert!(
            !uplink_in(t, &cluster.nn.path()),
            "{} uplink on nn1",
            t.cnci
        );
        assert!(std::path::Path::new("/run/netns").join(&t.netns).exists());
    }
    // A cross-node ping through the new node's CNCI, whose hub serves both compute nodes.
    ping_until(&c2, &c1.ip);
    cluster
        .wait_programmed(&c, S1, &[Cn::Cn1.ip(), Cn::Cn2.ip()])
        .expect("C's hub on nn2 programmed toward both nodes");

    // The old tenants stay where they were and keep working.
    for t in [&a, &b] {
        let view = cluster.ciao_net_json(&["tenant", &t.tenant]).expect("view");
        assert_eq!(placed_on(&view), (nn1.clone(), NN_IP.to_string()), "{view}");
        assert!(uplink_in(t, &cluster.nn.path()), "{} uplink on nn1", t.cnci);
    }
    assert!(a2.ping(&a1.ip, 2), "tenant A across nodes through nn1");
    let nodes = cluster.ciao_net_json(&["nodes"]).expect("nodes");
    let counts: Vec<(String, u64)> = nodes["network_nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            (
                n["uuid"].as_str().unwrap_or_default().to_string(),
                n["cncis"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert!(
        counts.contains(&(nn1, 2)) && counts.contains(&(nn2, 2)),
        "{nodes}"
    );
}
