//! Crash safety (the plugin SIGKILLed after each step of an ADD) and concurrency (50 parallel
//! ADDs and DELs on one node).

use testkit::{cni_call, crash_plugin, json, require_root, ComputeNode, Netns, TENANT_A};

/// What a node looks like from outside: all links, all addresses, state files.
fn snapshot(
    node: &ComputeNode,
    ctr: &Netns,
) -> (Vec<String>, Vec<String>, Vec<String>, Vec<String>) {
    // (interface, address) pairs; flags such as IPv6 DAD's "tentative" change on their own.
    let addrs = node
        .ns
        .exec(&["ip", "-o", "addr", "show"])
        .lines()
        .map(|l| l.split_whitespace().take(4).collect::<Vec<_>>().join(" "))
        .collect();
    (node.ns.links(), addrs, node.state_entries(), ctr.links())
}

fn crash_add(node: &ComputeNode, ctr: &Netns, step: u32) {
    let conf = node.conf("1.1.0", "blue", TENANT_A, "172.16.1.0/24");
    let step_text = step.to_string();
    let out = cni_call(
        &crash_plugin(),
        Some(&node.ns.name),
        "ADD",
        "c1",
        &ctr.path().display().to_string(),
        "eth0",
        &conf,
        &[("CIAO_CRASH_AFTER_STEP", &step_text)],
    );
    assert!(
        !out.ok && out.stdout.is_empty(),
        "step {step}: the plugin must die: {}",
        out.stdout
    );
    assert!(
        node.state_entries().contains(&"journal.json".to_string()),
        "step {step}: killed mid-operation, the journal must be there"
    );
}

#[test]
fn a_killed_add_is_undone_by_the_next_del() {
    require_root!();
    for step in 1..=netcore::ATTACH_STEPS {
        let node = ComputeNode::new();
        let ctr = Netns::new("ctr");
        let conf = node.conf("1.1.0", "blue", TENANT_A, "172.16.1.0/24");
        node.cni("STATUS", "", "", &conf)
            .expect_ok("STATUS creates the node identity");
        let before = snapshot(&node, &ctr);
        crash_add(&node, &ctr, step);
        node.cni("DEL", "c1", &ctr.path().display().to_string(), &conf)
            .expect_ok("DEL after crash");
        assert_eq!(
            snapshot(&node, &ctr),
            before,
            "step {step}: node not back to its state before"
        );
    }
}

#[test]
fn a_killed_add_is_undone_by_the_next_add_which_then_works() {
    require_root!();
    for step in 1..=netcore::ATTACH_STEPS {
        let node = ComputeNode::new();
        let ctr = Netns::new("ctr");
        let peer = Netns::new("ctr");
        let conf = node.conf("1.1.0", "blue", TENANT_A, "172.16.1.0/24");
        node.cni("STATUS", "", "", &conf).expect_ok("STATUS");
        let before = snapshot(&node, &ctr);
        crash_add(&node, &ctr, step);
        let path = ctr.path().display().to_string();
        let result = node
            .cni("ADD", "c1", &path, &conf)
            .expect_ok("ADD after crash");
        let ip = result["ips"][0]["address"]
            .as_str()
            .expect("ip")
            .trim_end_matches("/24")
            .to_string();
        node.cni("ADD", "c2", &peer.path().display().to_string(), &conf)
            .expect_ok("ADD peer");
        assert!(
            peer.ping(&ip, 2),
            "step {step}: the re-added container works"
        );
        node.cni("DEL", "c2", "", &conf).expect_ok("DEL peer");
        node.cni("DEL", "c1", &path, &conf).expect_ok("DEL");
        let after = snapshot(&node, &ctr);
        assert_eq!(
            (&after.0, &after.1, &after.3),
            (&before.0, &before.1, &before.3),
            "step {step}"
        );
        let events: Vec<_> = node.reports().iter().map(|r| r["event"].clone()).collect();
        assert_eq!(
            events,
            [json!("tenant_added"), json!("tenant_removed")],
            "step {step}"
        );
    }
}

#[test]
fn fifty_parallel_adds_then_fifty_parallel_dels() {
    require_root!();
    const N: usize = 50;
    let node = ComputeNode::new();
    let conf = node.conf("1.1.0", "blue", TENANT_A, "172.16.0.0/22");
    let ctrs: Vec<Netns> = (0..N).map(|_| Netns::new("par")).collect();
    let results: Vec<serde_json::Value> = std::thread::scope(|s| {
        let handles: Vec<_> = ctrs
            .iter()
            .enumerate()
            .map(|(i, ctr)| {
                let (node, conf) = (&node, &conf);
                s.spawn(move || {
                    node.cni(
                        "ADD",
                        &format!("p{i}"),
                        &ctr.path().display().to_string(),
                        conf,
                    )
                    .expect_ok(&format!("parallel ADD {i}"))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    let mut ips: Vec<String> = results
        .iter()
        .map(|r| r["ips"][0]["address"].as_str().expect("ip").to_string())
        .collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), N, "duplicate addresses handed out");
    assert_eq!(
        node.ciao_links().len(),
        N + 2,
        "N veths, one bridge, one tunnel"
    );
    let first = ips[0].trim_end_matches("/22").to_string();
    assert!(
        ctrs[N - 1].ping(&first, 1),
        "the parallel-added containers work"
    );

    std::thread::scope(|s| {
        for i in 0..N {
            let (node, conf) = (&node, &conf);
            s.spawn(move || {
                node.cni("DEL", &format!("p{i}"), "", conf)
                    .expect_ok("parallel DEL")
            });
        }
    });
    assert!(node.ciao_links().is_empty(), "{:?}", node.ciao_links());
    let left: Vec<_> = node
        .state_entries()
        .into_iter()
        .filter(|e| !e.starts_with("reports/"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let events: Vec<_> = node.reports().iter().map(|r| r["event"].clone()).collect();
    assert_eq!(events, [json!("tenant_added"), json!("tenant_removed")]);
    for ctr in &ctrs {
        assert!(!ctr.links().contains(&"eth0".to_string()));
    }
}
