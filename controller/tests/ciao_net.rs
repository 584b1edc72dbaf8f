//! `ciao-net` run as a process against a real admin API server: tables, `--json`, and the
//! exit code and message of each error.

mod admin;
mod common;

use std::path::Path;
use std::process::{Command, Output};

use admin::{auto_subnet_on_both_nodes, Server, CN1, CN2, T1, T2, T3, UNKNOWN};
use ciao_controller::Store;
use hyper::Method;

const CIAO_NET: &str = env!("CARGO_BIN_EXE_ciao-net");

fn ciao_net(socket: &Path, args: &[&str]) -> Output {
    Command::new(CIAO_NET)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .env_remove("CIAO_NET_SOCKET")
        .output()
        .expect("ciao-net runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs and succeeds; its standard output.
fn ok(server: &Server, args: &[&str]) -> String {
    let out = ciao_net(&server.socket, args);
    assert!(
        out.status.success(),
        "{args:?}: {:?} {}",
        out.status,
        stderr(&out)
    );
    stdout(&out)
}

/// Runs and fails with exit 1; its standard error (standard output stays empty).
fn fails(socket: &Path, args: &[&str]) -> String {
    let out = ciao_net(socket, args);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
    assert_eq!(stdout(&out), "", "{args:?}");
    stderr(&out)
}

/// Every cell of column `name` starts where its header does.
fn column(table: &str, name: &str) -> Vec<String> {
    let mut lines = table.lines();
    let header = lines.next().expect("a header");
    let start = header
        .find(name)
        .unwrap_or_else(|| panic!("{name} in {header}"));
    lines
        .take_while(|line| !line.is_empty())
        .map(|line| {
            assert!(
                start == 0 || line.as_bytes().get(start - 1) == Some(&b' '),
                "{name} misaligned in {line:?}"
            );
            line[start..]
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

#[test]
fn tables_list_nodes_tenants_and_cncis() {
    let server = Server::start();
    let nodes = ok(&server, &["nodes"]);
    assert!(nodes.starts_with("ROLE     UUID"), "{nodes}");
    assert_eq!(column(&nodes, "ROLE"), ["network", "compute", "compute"]);
    assert_eq!(
        column(&nodes, "UUID"),
        [server.nn.to_string(), CN1.to_string(), CN2.to_string()]
    );
    assert_eq!(column(&nodes, "STATE"), ["connected"; 3]);
    assert_eq!(column(&nodes, "UNDERLAY")[0], "192.0.2.1");
    assert_eq!(column(&nodes, "CNCIS"), ["2/10", "-", "-"]);

    let tenants = ok(&server, &["tenants"]);
    assert_eq!(column(&tenants, "TENANT"), [T1.to_string(), T2.to_string()]);
    assert_eq!(column(&tenants, "CNCI-STATE"), ["ready", "requested"]);
    assert_eq!(
        column(&tenants, "SUBNETS"),
        ["172.16.1.0/24,172.16.2.0/24", "172.16.1.0/24"]
    );

    let tenant = ok(&server, &["tenant", &T1.to_string()]);
    assert!(
        tenant.starts_with(&format!("TENANT   {T1}\nstate    active\n")),
        "{tenant}"
    );
    assert!(
        tenant.contains(&format!(
            "cnci     {} (ready) on network node {} at 192.0.2.1",
            server.cnci, server.nn
        )),
        "{tenant}"
    );
    // The CNCI here never answers its TenantIngress.
    assert!(
        tenant.contains("ingress  pending: generation ")
            && tenant.contains("no answer from the CNCI yet"),
        "{tenant}"
    );
    let subnets = tenant.split("\n\n").nth(1).expect("a subnet table");
    assert_eq!(
        column(subnets, "SUBNET"),
        ["172.16.1.0/24", "172.16.2.0/24"]
    );
    assert_eq!(column(subnets, "TUNNEL"), ["vxlan", "vxlan"]);
    let ids: Vec<String> = server
        .store
        .subnets(T1)
        .expect("subnets")
        .iter()
        .map(|s| s.tunnel_id.to_string())
        .collect();
    assert_eq!(column(subnets, "TUNNEL-ID"), ids);
    assert_eq!(
        column(subnets, "COMPUTE-NODES"),
        [format!("{CN1},{CN2}"), CN1.to_string()]
    );

    // The CNCI confirms the snapshot; CN1 loaded its groups, CN2 not yet.
    let view = server.get(&format!("/v1/tenants/{T1}")).json;
    let wanted = view["ingress"]["generation"].as_str().expect("generation");
    let outcome = ciao_controller::security::outcome::IngressOutcome {
        tenant: T1,
        cnci: server.cnci,
        generation: u64::from_str_radix(wanted, 16).expect("hex"),
        refused: None,
        at: 1,
    };
    server
        .store
        .record_ingress_outcome(&outcome)
        .expect("answer");
    for (node, ip) in [(CN1, [172, 16, 1, 10]), (CN2, [172, 16, 1, 11])] {
        let ports = [(std::net::Ipv4Addr::from(ip), vec!["web".to_string()])];
        server
            .store
            .set_port_groups(node, T1, &ports)
            .expect("ports");
        server.store.record_groups_sent(node, T1, 4).expect("sent");
    }
    server
        .store
        .record_groups_answer(CN1, T1, 4, None, 2)
        .expect("cn1 answered");
    let tenant = ok(&server, &["tenant", &T1.to_string()]);
    assert!(
        tenant.contains(&format!("ingress  in force (generation {wanted})")),
        "{tenant}"
    );
    let groups = tenant
        .split("\n\n")
        .find(|t| t.starts_with("GROUPS-ON-NODE"))
        .unwrap_or_else(|| panic!("a groups table: {tenant}"));
    assert_eq!(
        column(groups, "GROUPS-ON-NODE"),
        [CN1.to_string(), CN2.to_string()]
    );
    assert_eq!(column(groups, "STATE"), ["in_force", "pending"]);
    assert_eq!(column(groups, "ANSWERED"), ["4", "-"]);

    let cncis = ok(&server, &["cncis"]);
    assert_eq!(column(&cncis, "TENANT"), [T1.to_string(), T2.to_string()]);
    assert_eq!(column(&cncis, "CNCI")[0], server.cnci.to_string());
}

#[test]
fn a_tenant_with_an_automatic_subnet_lists_each_compute_nodes_slice() {
    let server = Server::start_with(auto_subnet_on_both_nodes);
    let tenant = ok(&server, &["tenant", &T3.to_string()]);
    let slices = tenant
        .split("\n\n")
        .find(|t| t.starts_with("AUTO-SUBNET"))
        .unwrap_or_else(|| panic!("a slice table in {tenant}"));
    assert_eq!(column(slices, "AUTO-SUBNET"), ["172.16.0.0/24"; 2]);
    assert_eq!(
        column(slices, "COMPUTE-NODE"),
        [CN1.to_string(), CN2.to_string()]
    );
    assert_eq!(column(slices, "SLICE"), ["172.16.0.0/27", "172.16.0.32/27"]);
    assert_eq!(
        column(slices, "RANGE"),
        ["172.16.0.2-172.16.0.31", "172.16.0.32-172.16.0.63"]
    );
    let printed: serde_json::Value =
        serde_json::from_str(&ok(&server, &["--json", "tenant", &T3.to_string()])).expect("JSON");
    assert_eq!(printed, server.get(&format!("/v1/tenants/{T3}")).json);
    assert_eq!(
        printed["subnets"][0]["node_slices"][1]["compute_node"],
        CN2.to_string()
    );
    // A tenant without automatic subnets has no slice table.
    let t1 = ok(&server, &["tenant", &T1.to_string()]);
    assert!(!t1.contains("AUTO-SUBNET"), "{t1}");
}

#[test]
fn json_prints_the_apis_own_document() {
    let server = Server::start();
    for (args, path) in [
        (vec!["nodes"], "/v1/nodes".to_owned()),
        (vec!["tenants"], "/v1/tenants".to_owned()),
        (vec!["tenant", &T1.to_string()], format!("/v1/tenants/{T1}")),
        (vec!["cncis"], "/v1/cncis".to_owned()),
        (vec!["public-ips"], "/v1/public-ips".to_owned()),
    ] {
        let mut with_json = vec!["--json"];
        with_json.extend(args.iter().copied());
        let printed: serde_json::Value =
            serde_json::from_str(&ok(&server, &with_json)).expect("JSON");
        assert_eq!(printed, server.get(&path).json, "{args:?}");
    }
}

#[test]
fn public_ips_are_assigned_listed_released_and_run_out() {
    let server = Server::start();
    let t1 = T1.to_string();
    let assigned = ok(&server, &["public-ip", "assign", &t1, "172.16.1.5"]);
    assert_eq!(
        assigned,
        format!("public IP 203.0.113.1 is assigned to 172.16.1.5 of tenant {T1}\n")
    );
    let json = ok(
        &server,
        &["--json", "public-ip", "assign", &t1, "172.16.2.5"],
    );
    let json: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(json["public_ip"], "203.0.113.2");

    let list = ok(&server, &["public-ips"]);
    assert_eq!(column(&list, "POOL"), ["203.0.113.0/30"]);
    assert_eq!(column(&list, "ASSIGNED"), ["2"]);
    let assignments = list.split("\n\n").nth(1).expect("assignments");
    assert_eq!(
        column(assignments, "PUBLIC-IP"),
        ["203.0.113.1", "203.0.113.2"]
    );
    assert_eq!(
        column(assignments, "PRIVATE-IP"),
        ["172.16.1.5", "172.16.2.5"]
    );

    let tenant = ok(&server, &["tenant", &t1]);
    let mine = tenant
        .split("\n\n")
        .nth(2)
        .expect("the tenant's public IPs");
    assert_eq!(column(mine, "PUBLIC-IP"), ["203.0.113.1", "203.0.113.2"]);
    assert_eq!(column(mine, "PRIVATE-IP"), ["172.16.1.5", "172.16.2.5"]);

    let err = fails(&server.socket, &["public-ip", "assign", &t1, "172.16.1.6"]);
    assert_eq!(
        err,
        "ciao-net: every public IP pool is exhausted (203.0.113.0/30)\n"
    );
    let err = fails(&server.socket, &["public-ip", "assign", &t1, "10.0.0.1"]);
    assert!(err.contains("10.0.0.1 is in none of tenant"), "{err}");

    let released = ok(&server, &["public-ip", "release", &t1, "203.0.113.1"]);
    assert_eq!(
        released,
        format!("released public IP 203.0.113.1 (was 172.16.1.5 of tenant {T1})\n")
    );
    let again = ok(&server, &["public-ip", "release", &t1, "203.0.113.1"]);
    assert!(again.contains("was not assigned"), "{again}");
    assert_eq!(
        ok(
            &server,
            &["--json", "public-ip", "release", &t1, "203.0.113.1"]
        ),
        ""
    );
}

#[test]
fn unknown_tenants_and_a_missing_controller_are_clear_errors() {
    let server = Server::start();
    let unknown = UNKNOWN.to_string();
    let want = format!("ciao-net: unknown tenant {UNKNOWN}\n");
    assert_eq!(fails(&server.socket, &["tenant", &unknown]), want);
    assert_eq!(fails(&server.socket, &["--json", "tenant", &unknown]), want);
    assert_eq!(fails(&server.socket, &["tenant", "delete", &unknown]), want);
    assert_eq!(
        fails(
            &server.socket,
            &["public-ip", "assign", &unknown, "172.16.1.5"]
        ),
        want
    );

    let missing = server.dir.path().join("nowhere").join("admin.sock");
    let err = fails(&missing, &["nodes"]);
    assert!(err.contains(&missing.display().to_string()), "{err}");
    assert!(err.contains("the controller is not running"), "{err}");

    // A socket left by a dead controller: nothing answers.
    let stale = server.dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).expect("bind"));
    let err = fails(&stale, &["tenants"]);
    assert!(err.contains("nothing answers on"), "{err}");
    assert!(err.contains("not running"), "{err}");

    // A path that is not a socket is named as such.
    let dir = server.dir.path().to_owned();
    let err = fails(&dir, &["tenants"]);
    assert!(
        err.contains(&format!("{} is not a socket", dir.display())),
        "{err}"
    );

    // A malformed UUID is refused before any call: a usage error (exit 2).
    let out = ciao_net(&server.socket, &["tenant", "not-a-uuid"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not-a-uuid"), "{}", stderr(&out));
}

#[test]
fn the_socket_comes_from_the_environment_and_a_tenant_is_deleted() {
    let server = Server::start();
    let out = Command::new(CIAO_NET)
        .args(["tenant", "delete", &T1.to_string()])
        .env("CIAO_NET_SOCKET", &server.socket)
        .output()
        .expect("ciao-net runs");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!(
            "tenant {T1} is being deleted: it takes no new workload, and its CNCI stops once its last workload is gone\n"
        )
    );
    // --socket wins over the environment; an empty variable counts as unset.
    let out = Command::new(CIAO_NET)
        .args(["--socket"])
        .arg(&server.socket)
        .arg("nodes")
        .env("CIAO_NET_SOCKET", "/nonexistent/admin.sock")
        .output()
        .expect("ciao-net runs");
    assert!(out.status.success(), "{}", stderr(&out));
    let default = ciao_controller::api::default_socket_path();
    if default.exists() {
        eprintln!(
            "skipped: empty CIAO_NET_SOCKET: {} exists here",
            default.display()
        );
    } else {
        let out = Command::new(CIAO_NET)
            .arg("nodes")
            .env("CIAO_NET_SOCKET", "")
            .output()
            .expect("ciao-net runs");
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        assert!(err.contains(&default.display().to_string()), "{err}");
    }
    let view = server.call(Method::GET, &format!("/v1/tenants/{T1}"), None);
    assert_eq!(view.json["state"], "deleting");
    let tenants = ok(&server, &["tenants"]);
    assert_eq!(column(&tenants, "STATE"), ["deleting", "active"]);
}
