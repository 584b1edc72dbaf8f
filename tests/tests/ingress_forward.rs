//! Issue 14, items 3-4 end to end: inbound port forwards and SSH access applied by the
//! tenant's CNCI. A controller-mode cluster; the external namespace (203.0.113.100) connects
//! to the tenant's forward IP; workloads run TCP listeners that answer with a tag.

use std::path::Path;

use testkit::cluster::{ssh_port, text, Cluster, Cn};
use testkit::tcp::{tag_at, TagListener};
use testkit::wait;
use testkit::{require_root, TENANT_A};

const S1: &str = "172.16.1.0/24";
const WEB: &str = "172.16.1.10";
const DB: &str = "172.16.1.11";

/// The tag the listener behind `ip:port` sends, seen from namespace `ns`.
fn probe(ns: &Path, ip: &str, port: u16) -> Option<String> {
    tag_at(ns, None, ip, port)
}

/// Waits until `ip:port` answers with `want` (`None`: until nothing answers).
fn wait_probe(ns: &Path, ip: &str, port: u16, want: Option<&str>) {
    let want = want.map(str::to_string);
    wait::equal(&format!("{ip}:{port} answers"), &want, || {
        probe(ns, ip, port)
    });
}

/// Waits until `ciao-net tenant` says the CNCI has the stored ingress in force; its
/// generation.
fn wait_in_force(cluster: &Cluster, tenant: &str) -> String {
    let view = || {
        cluster
            .ciao_net_json(&["tenant", tenant])
            .expect("ciao-net tenant")
    };
    wait::value(wait::CONVERGE, || {
        let ingress = view()["ingress"].clone();
        (ingress["state"] == "in_force").then(|| {
            assert_eq!(ingress["answered_generation"], ingress["generation"]);
            text(&ingress, "generation")
        })
    })
    .unwrap_or_else(|| panic!("the CNCI never confirmed the stored ingress: {}", view()))
}

#[test]
fn forwards_and_ssh_reach_the_workloads_and_nothing_else_answers_on_the_forward_ip() {
    require_root!();
    let mut cluster = Cluster::with_controller().expect("cluster in controller mode");
    let mut t = cluster.controlled_tenant(TENANT_A);
    let web = cluster.container(Cn::Cn1, &t, S1, WEB).expect("web");
    let db = cluster.container(Cn::Cn2, &t, S1, DB).expect("db");
    cluster.wait_cnci_ready(&mut t).expect("CNCI ready");
    let _web80 = TagListener::start(web.ns.path(), 80, "web");
    let _db5432 = TagListener::start(db.ns.path(), 5432, "db");
    let _web22 = TagListener::start(web.ns.path(), 22, "sshd-web");
    let _db22 = TagListener::start(db.ns.path(), 22, "sshd-db");
    let ext = cluster.ext.path();

    let add = |port: &str, to: &str| {
        cluster
            .ciao_net_json(&["forward", "add", "--tenant", &t.tenant, "tcp", port, to])
            .expect("forward add")
    };
    let to_web = add("8080", &format!("{WEB}:80"));
    let to_db = add("15432", &format!("{DB}:5432"));
    let ip = text(&to_web, "public_ip");
    assert_eq!(ip, text(&to_db, "public_ip"), "one forward IP for both");
    wait_probe(&ext, &ip, 8080, Some("web"));
    wait_probe(&ext, &ip, 15432, Some("db"));
    let two_forwards = wait_in_force(&cluster, &t.tenant);
    for port in [8081, 80, 5432, 22] {
        assert_eq!(probe(&ext, &ip, port), None, "{ip}:{port} must not answer");
    }

    let on = cluster
        .ciao_net_json(&["ssh", "on", "--tenant", &t.tenant])
        .expect("ssh on");
    assert_eq!(text(&on, "forward_ip"), ip);
    let (web_ssh, db_ssh) = (ssh_port(&on, S1, WEB), ssh_port(&on, S1, DB));
    wait_probe(&ext, &ip, web_ssh, Some("sshd-web"));
    wait_probe(&ext, &ip, db_ssh, Some("sshd-db"));
    cluster
        .ciao_net_json(&["ssh", "off", "--tenant", &t.tenant])
        .expect("ssh off");
    wait_probe(&ext, &ip, web_ssh, None);
    wait_probe(&ext, &ip, db_ssh, None);
    assert_eq!(probe(&ext, &ip, 8080).as_deref(), Some("web"));

    cluster
        .ciao_net_json(&[
            "forward",
            "delete",
            "--tenant",
            &t.tenant,
            &text(&to_db, "uuid"),
        ])
        .expect("forward delete");
    wait_probe(&ext, &ip, 15432, None);
    assert_eq!(
        probe(&ext, &ip, 8080).as_deref(),
        Some("web"),
        "the other stays"
    );
    let one_forward = wait_in_force(&cluster, &t.tenant);
    assert_ne!(
        one_forward, two_forwards,
        "a new snapshot, a new generation"
    );

    // The CNCI's process restarts with its kernel rules gone: it rebuilds the same.
    cluster.kill_nn();
    cluster
        .tenant_ns(&t)
        .exec(&["nft", "delete", "table", "ip", "ciao_tenant"]);
    assert_eq!(probe(&ext, &ip, 8080), None, "the rules are gone");
    cluster.start_nn().expect("ciao-nn restarted");
    wait_probe(&ext, &ip, 8080, Some("web"));
    assert_eq!(
        probe(&ext, &ip, 15432),
        None,
        "the deleted forward stays deleted"
    );
}
