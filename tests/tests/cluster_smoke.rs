//! The multi-node cluster fixture (`testkit::cluster`) and the `ciao-cluster` demo: scheduler
//! on a shared underlay, two compute nodes delivering their reports, CNCI agents on the network
//! node. The parts that need the CNCI agent skip (by name) if `ciao-cnci-agent` does not build.

use std::process::Command;
use std::time::Duration;

use testkit::cluster::{Cluster, Cn};
use testkit::{
    cnci_agent_tool, node_tool, plugin, require_root, scheduler_tool, skip, try_cnci_agent_tool,
    TENANT_A,
};

const S1: &str = "172.16.1.0/24";

fn netns_list() -> String {
    testkit::run(&["ip", "netns", "list"])
}

fn has_agent(test: &str) -> bool {
    if try_cnci_agent_tool().is_none() {
        skip(test, "ciao-cnci-agent does not build");
        return false;
    }
    true
}

#[test]
fn scheduler_and_node_daemons_deliver_and_local_containers_talk() {
    require_root!();
    let mut cluster = Cluster::new().expect("cluster");
    assert!(cluster.scheduler_running(), "scheduler exited");
    let listening = cluster.underlay.exec(&["ss", "-ltnH"]);
    assert!(
        listening.contains("10.250.0.1:8888"),
        "scheduler not listening: {listening}"
    );
    // No agent: the tenant's CNCI identity only (the scheduler has nobody to forward to).
    let t = cluster.plan_tenant(TENANT_A).expect("tenant");
    let a1 = cluster
        .container(Cn::Cn1, &t, S1, "172.16.1.10")
        .expect("a1");
    let a2 = cluster
        .container(Cn::Cn1, &t, S1, "172.16.1.11")
        .expect("a2");
    let a3 = cluster
        .container(Cn::Cn2, &t, S1, "172.16.1.12")
        .expect("a3");
    let addrs = a1.exec(&["ip", "-4", "-o", "addr", "show", "eth0"]);
    assert!(addrs.contains("172.16.1.10/24"), "{addrs}");
    // Each node recorded a TenantAdded; its daemon delivered it to the scheduler.
    for cn in Cn::ALL {
        cluster
            .wait_reports_delivered(cn, Duration::from_secs(10))
            .expect("delivered");
        assert!(cluster.daemon_running(cn), "{} daemon exited", cn.name());
    }
    assert!(a1.ping(&a2.ip, 3), "same node, same subnet");
    drop((a1, a2, a3));
    // Detaching records TenantRemoved, delivered as well.
    for cn in Cn::ALL {
        cluster
            .wait_reports_delivered(cn, Duration::from_secs(10))
            .expect("delivered");
        let node = cluster.cn(cn);
        assert!(node.ciao_links().is_empty(), "{:?}", node.ciao_links());
        let left: Vec<_> = node
            .state_entries()
            .into_iter()
            // The running daemon's lock and socket stay; nothing else may.
            .filter(|e| e != "delivery.lock" && e != "node.sock")
            .collect();
        assert!(left.is_empty(), "state left behind: {left:?}");
    }

    let names = [
        cluster.underlay.name.clone(),
        cluster.nn.name.clone(),
        cluster.ext.name.clone(),
        cluster.cn1.ns.name.clone(),
        cluster.cn2.ns.name.clone(),
    ];
    drop(cluster);
    let left = netns_list();
    for n in names {
        assert!(
            !left
                .lines()
                .any(|l| l.split_whitespace().next() == Some(&n)),
            "{n} left behind"
        );
    }
}

#[test]
fn the_demo_prints_a_matrix_as_expected_and_cleans_up() {
    require_root!();
    if !has_agent(testkit::test_name!()) {
        return;
    }
    // Fresh debug builds of the siblings it takes from its own directory.
    let _ = (
        plugin(),
        node_tool(),
        scheduler_tool("ciao-scheduler"),
        cnci_agent_tool(),
        testkit::bins::workspace_tool("ciao-controller"),
    );
    let before = netns_list();
    let out = Command::new(testkit::cluster_demo())
        .arg("--exit")
        .output()
        .expect("run ciao-cluster");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ciao-cluster --exit: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("== reachability"), "{stdout}");
    assert!(stdout.contains("42 of 42 cells as expected"), "{stdout}");
    assert!(
        stdout.contains("first attach to its first cross-node ping"),
        "{stdout}"
    );
    // A run as expected removes its logs.
    let logs = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("logs: "))
        .unwrap_or_else(|| panic!("no `logs:` line: {stdout}"));
    assert!(!std::path::Path::new(logs).exists(), "{logs} left behind");
    // Whatever it created is gone (other tests may run beside it: compare its names only).
    let after = netns_list();
    for line in after.lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        assert!(
            before.contains(name) || !stdout.contains(name),
            "{name} left behind by the demo"
        );
    }
}
