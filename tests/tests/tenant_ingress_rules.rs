//! Issue 14, item 2 (last bullet) end to end: tenant-level ingress rules at the CNCI for what
//! enters from outside. A controller-mode cluster; web :80 and db :5432 behind forwards 8080
//! and 15432 on the tenant's forward IP; the external namespace connects from 203.0.113.100
//! or from a second address, 203.0.113.101. Rules are matched in order before any DNAT (the
//! port is the one the outside sees); replies of established flows always pass.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::cluster::{in_netns, text, Cluster, Cn, Tenant, EXT_IP};
use testkit::tcp::{tag_at, TagListener};
use testkit::wait;
use testkit::{require_root, TENANT_A};

const S1: &str = "172.16.1.0/24";
const WEB: &str = "172.16.1.10";
const DB: &str = "172.16.1.11";
/// The external namespace's second address (the first is [`EXT_IP`]).
const OTHER: &str = "203.0.113.101";

/// The tag the listener behind `ip:port` sends to a connection from `src` in namespace `ns`.
fn probe(ns: &Path, src: &str, ip: &str, port: u16) -> Option<String> {
    tag_at(ns, Some(src), ip, port)
}

/// Waits until every `(source, port, answer)` holds at once on `ip` (`None`: nothing answers).
fn wait_all(ns: &Path, ip: &str, want: &[(&str, u16, Option<&str>)]) {
    let wanted: Vec<Option<String>> = want.iter().map(|w| w.2.map(str::to_string)).collect();
    let sources: Vec<(&str, u16)> = want.iter().map(|w| (w.0, w.1)).collect();
    wait::equal(&format!("from (source, port) {sources:?}"), &wanted, || {
        sources
            .iter()
            .map(|(src, port)| probe(ns, src, ip, *port))
            .collect()
    });
}

/// `ciao-net --json ARGS`, which must succeed.
fn net(cluster: &Cluster, args: &[&str]) -> Value {
    cluster.ciao_net_json(args).expect("ciao-net")
}

/// `nft list table ip ciao_tenant` in the tenant's namespace on the network node.
fn tenant_table(t: &Tenant) -> String {
    let out = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &t.netns,
            "nft",
            "list",
            "table",
            "ip",
            "ciao_tenant",
        ])
        .output()
        .expect("run nft");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits until the tenant table reads `want`.
fn wait_table(t: &Tenant, want: &str) {
    wait::equal("the tenant table", &want.to_string(), || tenant_table(t));
}

#[test]
fn tenant_rules_filter_what_enters_from_outside_in_order_and_survive_a_restart() {
    require_root!();
    let mut cluster = Cluster::with_controller().expect("cluster in controller mode");
    let mut t = cluster.controlled_tenant(TENANT_A);
    let web = cluster.container(Cn::Cn1, &t, S1, WEB).expect("web");
    let db = cluster.container(Cn::Cn2, &t, S1, DB).expect("db");
    cluster.wait_cnci_ready(&mut t).expect("CNCI ready");
    let _web80 = TagListener::start(web.ns.path(), 80, "web");
    let _db5432 = TagListener::start(db.ns.path(), 5432, "db");
    let _outside = TagListener::start(cluster.ext.path(), 9000, "outside");
    cluster
        .ext
        .exec(&["ip", "addr", "add", &format!("{OTHER}/24"), "dev", "eth0"]);
    let ext = cluster.ext.path();
    let tenant = t.tenant.clone();
    let add = |port: &str, to: &str| {
        net(
            &cluster,
            &["forward", "add", "--tenant", &tenant, "tcp", port, to],
        )
    };
    let ip = text(&add("8080", &format!("{WEB}:80")), "public_ip");
    assert_eq!(ip, text(&add("15432", &format!("{DB}:5432")), "public_ip"));
    let everything = [
        (EXT_IP, 8080, Some("web")),
        (OTHER, 8080, Some("web")),
        (EXT_IP, 15432, Some("db")),
        (OTHER, 15432, Some("db")),
    ];
    wait_all(&ext, &ip, &everything);
    // db also has a 1:1 public IP: the rules guard it too.
    let public = text(
        &net(&cluster, &["public-ip", "assign", &tenant, DB]),
        "public_ip",
    );
    wait_all(&ext, &public, &[(EXT_IP, 5432, Some("db"))]);
    let plain = tenant_table(&t);
    assert!(
        !plain.contains("chain outside"),
        "no rules, no chain:\n{plain}"
    );

    // One deny rule: .101 loses 8080 only.
    let asked = Instant::now();
    let deny = net(
        &cluster,
        &[
            "ingress-rule",
            "add",
            "--tenant",
            &tenant,
            "deny",
            "tcp",
            "--port",
            "8080",
            "--remote-cidr",
            &format!("{OTHER}/32"),
            "--description",
            "no web for .101",
        ],
    );
    assert_eq!(deny["position"], 1);
    let answered = asked.elapsed();
    assert!(
        wait::holds(wait::CONVERGE, || tenant_table(&t)
            .contains("tcp dport 8080 drop")),
        "the rule never reached the tenant table"
    );
    eprintln!(
        "ingress-rule add: API answered in {answered:?}, in the CNCI's table after {:?}",
        asked.elapsed()
    );
    wait_all(
        &ext,
        &ip,
        &[
            (OTHER, 8080, None),
            (EXT_IP, 8080, Some("web")),
            (EXT_IP, 15432, Some("db")),
            (OTHER, 15432, Some("db")),
        ],
    );

    // Default deny and one allow: only .100 to 15432 enters.
    net(
        &cluster,
        &[
            "ingress-rule",
            "add",
            "--tenant",
            &tenant,
            "allow",
            "tcp",
            "--port",
            "15432",
            "--remote-cidr",
            &format!("{EXT_IP}/32"),
        ],
    );
    let policy = net(&cluster, &["ingress-policy", "--tenant", &tenant, "deny"]);
    assert_eq!(policy["default"], "deny");
    let only_db = [
        (EXT_IP, 15432, Some("db")),
        (OTHER, 15432, None),
        (EXT_IP, 8080, None),
        (OTHER, 8080, None),
    ];
    wait_all(&ext, &ip, &only_db);
    wait_all(&ext, &public, &[(EXT_IP, 5432, None), (OTHER, 5432, None)]);
    // Replies of flows the workloads open pass the default deny.
    let out = in_netns(&web.ns.path(), || {
        let stream = TcpStream::connect_timeout(
            &SocketAddr::new(EXT_IP.parse().expect("ip"), 9000),
            Duration::from_secs(2),
        )
        .ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).ok()?;
        Some(line.trim().to_string())
    });
    assert_eq!(
        out.as_deref(),
        Some("outside"),
        "a workload's own flow is answered"
    );
    // First match wins: an allow inserted before the deny opens 8080 to .101 again (and to
    // .100, also in 203.0.113.96/29).
    let first = net(
        &cluster,
        &[
            "ingress-rule",
            "add",
            "--tenant",
            &tenant,
            "--position",
            "1",
            "allow",
            "tcp",
            "--port",
            "8080-8081",
            "--remote-cidr",
            "203.0.113.96/29",
        ],
    );
    assert_eq!(first["position"], 1);
    let ordered = [
        (OTHER, 8080, Some("web")),
        (EXT_IP, 8080, Some("web")),
        (EXT_IP, 15432, Some("db")),
        (OTHER, 15432, None),
    ];
    wait_all(&ext, &ip, &ordered);
    let ruled = tenant_table(&t);
    assert!(ruled.contains("chain outside"), "{ruled}");
    eprintln!("the tenant table with rules:\n{ruled}");

    // ciao-nn killed and the tenant table deleted: the restarted CNCI rebuilds it identically.
    cluster.kill_nn();
    cluster
        .tenant_ns(&t)
        .exec(&["nft", "delete", "table", "ip", "ciao_tenant"]);
    cluster.start_nn().expect("ciao-nn restarted");
    wait_table(&t, &ruled);
    wait_all(&ext, &ip, &ordered);

    // Rules deleted and the default allow: everything as before, the table as it was.
    let list = net(&cluster, &["ingress-rule", "list", "--tenant", &tenant]);
    for rule in list["rules"].as_array().expect("rules") {
        net(
            &cluster,
            &[
                "ingress-rule",
                "delete",
                "--tenant",
                &tenant,
                &text(rule, "uuid"),
            ],
        );
    }
    net(&cluster, &["ingress-policy", "--tenant", &tenant, "allow"]);
    wait_all(&ext, &ip, &everything);
    wait_all(
        &ext,
        &public,
        &[(EXT_IP, 5432, Some("db")), (OTHER, 5432, Some("db"))],
    );
    wait_table(&t, &plain);
}
