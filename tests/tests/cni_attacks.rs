//! Issue 10, items 7 and 10-14: the mistakes and attacks against the CNI plugin's inputs and
//! state, each performed through the real plugin binary (and `ciao-node`, and the Docker
//! plugin's binary for the state directory rule), checking the CNI error code, the field the
//! message names, and that nothing is left behind.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::{
    cni_call, json, node_tool, plugin, require_root, CniOutput, ComputeNode, Netns, TENANT_A,
};

/// Runs the plugin in `node`'s namespace with an explicit interface name.
fn cni_if(
    node: &ComputeNode,
    cmd: &str,
    id: &str,
    netns: &str,
    ifname: &str,
    conf: &Value,
) -> CniOutput {
    cni_call(
        &plugin(),
        Some(&node.ns.name),
        cmd,
        id,
        netns,
        ifname,
        conf,
        &[],
    )
}

/// Asserts a failed run with `code` whose message names `needle`.
fn assert_refused(out: &CniOutput, code: u64, needle: &str, what: &str) {
    assert!(!out.ok, "{what}: accepted: {}", out.stdout);
    assert_eq!(out.code(), Some(code), "{what}: {}", out.stdout);
    let msg = out.json["msg"].as_str().unwrap_or_default();
    assert!(msg.contains(needle), "{what}: {needle:?} not in {msg:?}");
}

#[test]
fn stdin_over_one_mib_is_refused_without_reading_it() {
    require_root!();
    let node = ComputeNode::new();
    let ctr = Netns::new("ctr");
    let mut conf = node.conf("1.1.0", "blue", TENANT_A, "172.16.1.0/24");
    // The attack of the issue: a 50 MB `dns` value.
    conf["dns"] = json!({"search": ["x".repeat(50 * 1024 * 1024)]});
    let input = serde_json::to_vec(&conf).expect("json");
    let mut child = Command::new("ip")
        .args(["netns", "exec", &node.ns.name])
        .arg(plugin())
        .env("CNI_COMMAND", "ADD")
        .env("CNI_CONTAINERID", "big")
        .env("CNI_NETNS", ctr.path())
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/opt/cni/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn plugin");
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || {
        // The plugin stops reading after 1 MiB and exits: the rest meets a closed pipe.
        let written = stdin.write_all(&input);
        written.is_err()
    });
    let out = child.wait_with_output().expect("wait");
    assert!(writer.join().expect("writer"), "the plugin read all 50 MB");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let reply: Value = serde_json::from_str(&stdout).expect("error JSON");
    assert!(!out.status.success());
    assert_eq!(reply["code"], 6, "{stdout}");
    assert!(
        reply["msg"].as_str().expect("msg").contains("1 MiB"),
        "{stdout}"
    );
    node.assert_clean();
    assert!(!ctr.links().contains(&"eth0".to_string()));

    // Just under the limit is read and parsed as usual.
    let mut conf = node.conf("1.1.0", "blue", TENANT_A, "172.16.1.0/24");
    conf["dns"] = json!({"search": ["y".repeat(1000 * 1024)]});
    let path = ctr.path().display().to_string();
    node.cni("ADD", "ok", &path, &conf)
        .expect_ok("ADD of a 1000 KiB config");
    node.cni("DEL", "ok", &path, &conf).expect_ok("DEL");
    node.assert_clean();
}

#[test]
fn the_nodes_own_namespace_is_refused_as_a_container() {
    require_root!();
    let node = ComputeNode::new();
    let conf = node.conf("1.1.0", "blue", TENANT_A, "172.16.1.0/24");
    // A process living in the node's namespace stands for "PID 1 when PID 1 is ours".
    let mut resident = Command::new("ip")
        .args(["netns", "exec", &node.ns.name, "sleep", "120"])
        .spawn()
        .expect("spawn a process in the node");
    let resident_path = format!("/proc/{}/ns/net", resident.id());
    // `ip netns exec` execs sleep in place, so the pid's namespace is the node's once it ran.
    let deadline = Instant::now() + Duration::from_secs(10);
    let node_ns = std::fs::metadata(node.ns.path()).expect("node netns");
    loop {
        let same = std::fs::metadata(&resident_path).is_ok_and(|m| {
            use std::os::unix::fs::MetadataExt;
            m.ino() == node_ns.ino() && m.dev() == node_ns.dev()
        });
        if same {
            break;
        }
        assert!(Instant::now() < deadline, "resident never entered the node");
        std::thread::yield_now();
    }
    for netns in [
        "/proc/self/ns/net".to_string(),
        "/proc/thread-self/ns/net".to_string(),
        node.ns.path().display().to_string(),
        resident_path.clone(),
    ] {
        let out = node.cni("ADD", "self", &netns, &conf);
        assert_refused(&out, 4, "CNI_NETNS", &netns);
        assert!(!node.ns.links().contains(&"eth0".to_string()), "{netns}");
        node.assert_clean();
    }
    let _ = resident.kill();
    let _ = resident.wait();
}

#[test]
fn reserved_subnets_and_bad_cnci_addresses_are_refused_up_front() {
    require_root!();
    let node = ComputeNode::new();
    let ctr = Netns::new("ctr");
    let path = ctr.path().display().to_string();
    for subnet in [
        "0.0.0.0/0",
        "0.0.0.0/24",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "224.0.0.0/24",
        "240.0.0.0/24",
        "255.255.255.252/30",
        "100.64.0.0/10",
        "100.64.1.0/24",
    ] {
        let conf = node.conf("1.1.0", "blue", TENANT_A, subnet);
        let out = node.cni("ADD", "c1", &path, &conf);
        assert_refused(&out, 7, "field subnet", subnet);
        if subnet.starts_with("100.64") {
            assert!(out.stdout.contains("uplink"), "{}", out.stdout);
        }
        node.assert_clean();
    }
    for ip in [
        "127.0.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "255.255.255.255",
        "169.254.1.1",
        // The node's own underlay address.
        node.ip.as_str(),
    ] {
        let mut conf = node.conf("1.1.0", "blue", TENANT_A, "172.16.1.0/24");
        conf["cnci"]["ip"] = json!(ip);
        let out = node.cni("ADD", "c1", &path, &conf);
        assert_refused(&out, 7, "cnci.ip", ip);
        node.assert_clean();
        assert!(!ctr.links().contains(&"eth0".to_string()), "{ip}");
    }
}

#[test]
fn bad_interface_names_and_macs_are_refused_naming_the_input() {
    require_root!();
    let node = ComputeNode::new();
    let ctr = Netns::new("ctr");
    let path = ctr.path().display().to_string();
    let conf = node.conf("1.1.0", "blue", TENANT_A, "172.16.1.0/24");
    for ifname in [
        "eth%d",
        "all",
        "default",
        ".",
        "..",
        "a/b",
        "a b",
        "a\tb",
        "0123456789abcdef",
    ] {
        let out = cni_if(&node, "ADD", "c1", &path, ifname, &conf);
        assert_refused(&out, 4, "CNI_IFNAME", ifname);
        node.assert_clean();
    }
    // An empty CNI_IFNAME is a missing variable.
    let out = cni_if(&node, "ADD", "c1", &path, "", &conf);
    assert_refused(&out, 4, "CNI_IFNAME", "empty");

    let tenant: uuid::Uuid = TENANT_A.parse().expect("uuid");
    let bridge_mac = netcore::ids::format_mac(netcore::ids::bridge_mac(
        tenant,
        "172.16.1.0/24".parse().expect("subnet"),
    ));
    for mac in [
        "ff:ff:ff:ff:ff:ff",
        "01:00:5e:00:00:01",
        "33:33:00:00:00:01",
        "00:00:00:00:00:00",
        bridge_mac.as_str(),
    ] {
        let mut with_mac = conf.clone();
        with_mac["runtimeConfig"] = json!({"mac": mac});
        let out = node.cni("ADD", "c1", &path, &with_mac);
        assert_refused(&out, 7, "mac", mac);
        node.assert_clean();
        assert!(
            ctr.links().iter().all(|l| l == "lo"),
            "{mac}: {:?}",
            ctr.links()
        );
    }
}

#[test]
fn every_accepted_container_id_length_works_through_add_check_del() {
    require_root!();
    let node = ComputeNode::new();
    let ctr = Netns::new("ctr");
    let path = ctr.path().display().to_string();
    let conf = node.conf("1.1.0", "blue", TENANT_A, "172.16.1.0/24");
    // 188 was the last that worked, 189-245 failed at the alias, 246-256 at the file name.
    for len in [1usize, 188, 189, 200, 245, 246, 250, 256] {
        let id: String = std::iter::repeat("abcdef0123456789")
            .flat_map(|s| s.chars())
            .take(len)
            .collect();
        let result = node
            .cni("ADD", &id, &path, &conf)
            .expect_ok(&format!("ADD {len}"));
        let mut with_prev = conf.clone();
        with_prev["prevResult"] = result;
        node.cni("CHECK", &id, &path, &with_prev)
            .expect_ok(&format!("CHECK {len}"));
        let shown: Value =
            serde_json::from_str(&node.tool(&["show", "--json"])).expect("show --json");
        assert_eq!(
            shown["nets"][0]["vnics"][0]["id"]["owner"],
            id.as_str(),
            "{len}"
        );
        // A reconcile keeps it (its alias is hashed the same way).
        let summary = node.tool(&["reconcile"]);
        assert!(summary.contains("removed links:    -"), "{len}: {summary}");
        assert_eq!(node.ciao_links().len(), 3, "{len}");
        node.cni("DEL", &id, &path, &with_prev)
            .expect_ok(&format!("DEL {len}"));
        node.cni("DEL", &id, &path, &with_prev)
            .expect_ok(&format!("second DEL {len}"));
        node.assert_clean();
    }
    let too_long = "a".repeat(257);
    let out = node.cni("ADD", &too_long, &path, &conf);
    assert_refused(&out, 4, "CNI_CONTAINERID", "257");
    node.assert_clean();
}

#[test]
fn an_existing_default_route_is_not_reported_as_ours() {
    require_root!();
    let node = ComputeNode::new();
    let ctr = Netns::new("ctr");
    // The container already has a default route (another interface, another plugin).
    ctr.exec(&[
        "ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1",
    ]);
    ctr.exec(&["ip", "addr", "add", "192.168.77.2/24", "dev", "v0"]);
    ctr.exec(&["ip", "link", "set", "v0", "up"]);
    ctr.exec(&["ip", "link", "set", "v1", "up"]);
    ctr.exec(&["ip", "route", "add", "default", "via", "192.168.77.1"]);
    let conf = node.conf("1.1.0", "blue", TENANT_A, "172.16.1.0/24");
    let path = ctr.path().display().to_string();
    let result = node.cni("ADD", "c1", &path, &conf).expect_ok("ADD");
    assert_eq!(result["routes"], json!([]), "{result}");
    let routes = ctr.exec(&["ip", "route", "show", "default"]);
    assert!(
        routes.contains("via 192.168.77.1") && !routes.contains("172.16.1.1"),
        "{routes}"
    );
    let mut with_prev = conf.clone();
    with_prev["prevResult"] = result;
    node.cni("CHECK", "c1", &path, &with_prev)
        .expect_ok("CHECK");
    node.cni("DEL", "c1", &path, &with_prev).expect_ok("DEL");
    node.assert_clean();

    // Without one, the route is installed and reported.
    ctr.exec(&["ip", "route", "del", "default"]);
    let result = node.cni("ADD", "c1", &path, &conf).expect_ok("ADD");
    assert_eq!(result["routes"][0]["dst"], "0.0.0.0/0", "{result}");
    assert!(ctr
        .exec(&["ip", "route", "show", "default"])
        .contains("via 172.16.1.1"));
    node.cni("DEL", "c1", &path, &conf).expect_ok("DEL");
    node.assert_clean();
}

#[test]
fn a_second_state_directory_on_a_node_is_refused_by_every_front_end() {
    require_root!();
    let node = ComputeNode::new();
    let (a, b) = (Netns::new("ctr"), Netns::new("ctr"));
    let conf = node.conf("1.1.0", "blue", TENANT_A, "172.16.7.0/24");
    let first = node
        .cni("ADD", "a", &a.path().display().to_string(), &conf)
        .expect_ok("ADD with the node's state dir");
    let links = node.ciao_links();
    assert_eq!(links.len(), 3);
    let first_dir = std::fs::canonicalize(node.state.path()).expect("canonical");
    let first_dir = first_dir.display().to_string();

    // A CNI config with another stateDir: before, a second container got 172.16.7.2 too.
    let other = tempfile::tempdir().expect("other state dir");
    let mut second = conf.clone();
    second["stateDir"] = json!(other.path());
    let out = node.cni("ADD", "b", &b.path().display().to_string(), &second);
    assert_refused(&out, 7, &first_dir, "second CNI state dir");
    assert!(out.stdout.contains("stateDir"), "{}", out.stdout);
    assert!(!b.links().contains(&"eth0".to_string()));

    // ciao-node reconcile with an empty state dir: before, it deleted every link of the node.
    let other_text = other.path().display().to_string();
    let tool = node_tool();
    let refused = node.ns.try_exec(&[
        tool.to_str().expect("utf-8"),
        "--state-dir",
        &other_text,
        "reconcile",
    ]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains(&first_dir), "{stderr}");

    // The Docker plugin started with another --state-dir: before, it deleted them too.
    let socket = other.path().join("ciao.sock");
    let docker = node.ns.try_exec(&[
        testkit::docker::plugin_bin().to_str().expect("utf-8"),
        "--socket",
        socket.to_str().expect("utf-8"),
        "--state-dir",
        &other_text,
    ]);
    assert!(!docker.status.success());
    let stderr = String::from_utf8_lossy(&docker.stderr);
    assert!(stderr.contains(&first_dir), "{stderr}");
    assert!(!socket.exists());

    assert_eq!(node.ciao_links(), links, "the node's links survived");
    let ip = first["ips"][0]["address"].as_str().expect("ip");
    assert!(a
        .exec(&["ip", "-o", "addr", "show", "dev", "eth0"])
        .contains(ip));
    let mut other_files = Vec::new();
    for sub in ["vnics", "nets", "ips"] {
        if let Ok(dir) = std::fs::read_dir(other.path().join(sub)) {
            other_files.extend(dir.flatten().map(|e| e.path()));
        }
    }
    assert!(
        other_files.is_empty(),
        "the second state dir recorded {other_files:?}"
    );

    node.cni("DEL", "a", &a.path().display().to_string(), &conf)
        .expect_ok("DEL");
    node.assert_clean();
}

#[test]
fn state_directories_must_be_absolute_and_dedicated() {
    require_root!();
    let node = ComputeNode::new();
    let ctr = Netns::new("ctr");
    let path = ctr.path().display().to_string();
    let foreign = tempfile::tempdir().expect("foreign");
    std::fs::write(foreign.path().join("notes.txt"), "not ciao's").expect("write");
    let foreign_text = foreign.path().display().to_string();
    for dir in [
        "/",
        "/etc",
        "",
        "relative/state",
        "/tmp/../etc",
        foreign_text.as_str(),
    ] {
        let mut conf = node.conf("1.1.0", "blue", TENANT_A, "172.16.1.0/24");
        conf["stateDir"] = json!(dir);
        let out = node.cni("ADD", "c1", &path, &conf);
        assert_refused(&out, 7, "stateDir", dir);
        assert!(!ctr.links().contains(&"eth0".to_string()), "{dir}");
    }
    for written in ["/reports", "/lock", "/etc/reports", "/etc/lock"] {
        assert!(
            !std::path::Path::new(written).exists(),
            "{written} was written"
        );
    }
    let mut names: Vec<_> = std::fs::read_dir(foreign.path())
        .expect("list")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["notes.txt"],
        "nothing written into a foreign directory"
    );
    assert!(node.ciao_links().is_empty());
}

#[test]
fn a_container_id_with_tmp_in_it_is_a_record_like_any_other() {
    require_root!();
    let node = ComputeNode::new();
    let (a, b) = (Netns::new("ctr"), Netns::new("ctr"));
    let conf = node.conf("1.1.0", "blue", TENANT_A, "172.16.1.0/24");
    let id = "web.tmp42";
    let first = node
        .cni("ADD", id, &a.path().display().to_string(), &conf)
        .expect_ok("ADD");
    let ip = first["ips"][0]["address"].as_str().expect("ip").to_string();
    let veth = first["interfaces"][1]["name"]
        .as_str()
        .expect("veth")
        .to_string();

    let shown: Value = serde_json::from_str(&node.tool(&["show", "--json"])).expect("show");
    assert_eq!(shown["nets"][0]["vnics"][0]["id"]["owner"], id, "{shown}");
    assert!(node.tool(&["show"]).contains(id));

    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": id, "ifname": "eth0"}]);
    node.cni("GC", "", "", &gc).expect_ok("GC");
    let second = node
        .cni("ADD", "other", &b.path().display().to_string(), &conf)
        .expect_ok("ADD other");
    assert_ne!(
        second["ips"][0]["address"],
        ip.as_str(),
        "GC released a kept address"
    );
    assert_ne!(
        second["interfaces"][2]["mac"], first["interfaces"][2]["mac"],
        "same MAC handed out twice"
    );

    let summary = node.tool(&["reconcile"]);
    assert!(summary.contains("removed links:    -"), "{summary}");
    assert!(
        node.ciao_links().contains(&veth),
        "reconcile deleted {veth}"
    );
    assert!(
        b.ping(ip.trim_end_matches("/24"), 2),
        "{id} still reachable"
    );

    node.cni("DEL", "other", "", &conf).expect_ok("DEL other");
    node.cni("DEL", id, "", &conf).expect_ok("DEL");
    node.assert_clean();
}
