//! The subnet left out (issue 12): CNI configs that name only the tenant, in the controller-mode
//! cluster (scheduler, `ciao-controller`, `ciao-nn`, two compute nodes running `ciao-node run`).
//! The controller gives the tenant one subnet and each node a disjoint range of it; when it
//! cannot answer, the attach fails within its bound and leaves nothing behind.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::cluster::{wait_reachable, Cluster, Cn};
use testkit::{require_root, TENANT_A, TENANT_B};

const CONVERGE: Duration = Duration::from_secs(60);

/// The nets `ciao-node show --json` lists for `tenant` on `cn`.
fn nets_of(cluster: &Cluster, cn: Cn, tenant: &str) -> Vec<Value> {
    let show = cluster.cn(cn).show_json();
    show["nets"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|n| n.to_string().contains(tenant))
        .collect()
}

#[test]
fn tenant_only_configs_get_one_subnet_with_disjoint_ranges_and_fail_cleanly_without_a_controller() {
    require_root!();
    let mut cluster = Cluster::with_controller().expect("cluster in controller mode");
    let t = cluster.controlled_tenant(TENANT_A);
    testkit::plugin();

    let start = Instant::now();
    let w1 = cluster.auto_container(Cn::Cn1, &t).expect("CN1, no subnet");
    let w2 = cluster.auto_container(Cn::Cn2, &t).expect("CN2, no subnet");
    eprintln!("two tenant-only attaches: {:?}", start.elapsed());
    assert_eq!(w1.subnet, w2.subnet, "one subnet for the tenant");
    assert_eq!(
        w1.subnet, "172.16.0.0/24",
        "the default range's first block"
    );
    assert_ne!(w1.ip, w2.ip, "disjoint ranges");
    wait_reachable(&w2, &w1.ip, Instant::now(), CONVERGE).expect("CN2 reaches CN1");
    let view = cluster
        .ciao_net_json(&["tenant", &t.tenant])
        .expect("ciao-net tenant");
    let listed = view["subnets"]
        .as_array()
        .is_some_and(|s| s.iter().any(|s| s["cidr"] == w1.subnet.as_str()));
    assert!(listed, "ciao-net shows the automatic subnet: {view}");
    // ... and each node's slice, whose range holds the address that node gave out.
    for w in [&w1, &w2] {
        let node = cluster.cn(w.cn).show_json()["agent_uuid"].clone();
        let slice = view["subnets"][0]["node_slices"]
            .as_array()
            .and_then(|l| l.iter().find(|s| s["compute_node"] == node))
            .cloned()
            .unwrap_or_else(|| panic!("no slice of {node} in {view}"));
        let addr = |key: &str| -> std::net::Ipv4Addr {
            slice[key].as_str().and_then(|a| a.parse().ok()).expect(key)
        };
        let ip: std::net::Ipv4Addr = w.ip.parse().expect("address");
        assert!(
            addr("range_start") <= ip && ip <= addr("range_end"),
            "{ip} in {slice}"
        );
    }

    // The controller is gone: a cached tenant still attaches, a new one fails within its
    // bound (try again later), and leaves nothing on the node.
    cluster.kill_controller();
    let w3 = cluster
        .auto_container(Cn::Cn1, &t)
        .expect("from the node's cache");
    assert_eq!(w3.subnet, w1.subnet);
    let u = cluster.controlled_tenant(TENANT_B);
    let conf = cluster.auto_conf(Cn::Cn1, &u, json!({"subnetWaitSeconds": 2}));
    let asked = Instant::now();
    let (_ns, out) = cluster.add_in_new_ns(Cn::Cn1, &conf);
    let took = asked.elapsed();
    assert!(!out.ok, "no subnet without the controller");
    assert_eq!(out.json["code"], 11, "{}", out.stdout);
    assert_eq!(
        out.json["msg"], "the controller did not answer within 2 s",
        "{}",
        out.stdout
    );
    assert!(took < Duration::from_secs(8), "bounded: {took:?}");
    assert!(
        nets_of(&cluster, Cn::Cn1, &u.tenant).is_empty(),
        "nothing attached"
    );

    // No `ciao-node run` for this state directory: at once.
    let empty = tempfile::tempdir().expect("state dir");
    let conf = cluster.auto_conf(Cn::Cn1, &u, json!({"stateDir": empty.path()}));
    let asked = Instant::now();
    let (_ns, out) = cluster.add_in_new_ns(Cn::Cn1, &conf);
    assert_eq!(out.json["code"], 11, "{}", out.stdout);
    let want = format!(
        "ciao-node run is not running (no {})",
        empty.path().join("node.sock").display()
    );
    assert_eq!(out.json["msg"], want.as_str(), "{}", out.stdout);
    assert!(asked.elapsed() < Duration::from_secs(2), "at once");
}
