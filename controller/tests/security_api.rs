//! Security groups, rules, port forwards and SSH access through the admin API on a real unix
//! socket against a real SQLite store, and through `ciao-net` as a process: every refusal
//! leaves the store unchanged row for row.

mod admin;
mod common;

use std::process::Command;

use admin::{Answer, Server, T1, T2, T3, UNKNOWN};
use ciao_controller::{Store, StoreError};
use common::net;
use hyper::{Method, StatusCode};
use serde_json::{json, Value};

fn post(server: &Server, path: &str, body: Value) -> Answer {
    server.call(Method::POST, path, Some(&body.to_string()))
}

fn groups(t: uuid::Uuid) -> String {
    format!("/v1/tenants/{t}/security-groups")
}

fn rules(t: uuid::Uuid, group: &str) -> String {
    format!("/v1/tenants/{t}/security-groups/{group}/rules")
}

fn forwards(t: uuid::Uuid) -> String {
    format!("/v1/tenants/{t}/forwards")
}

fn ssh(server: &Server, t: uuid::Uuid, enabled: bool) -> Answer {
    let body = json!({ "enabled": enabled }).to_string();
    server.call(Method::PUT, &format!("/v1/tenants/{t}/ssh"), Some(&body))
}

/// The call is refused with `status` and `code`, its message holds `says`, nothing stored.
fn refused(
    server: &Server,
    status: StatusCode,
    code: &str,
    says: &str,
    call: impl FnOnce() -> Answer,
) {
    let before = server.snapshot();
    let answer = call();
    assert_eq!(answer.status, status, "{}", answer.json);
    assert_eq!(answer.json["code"], code, "{}", answer.json);
    let message = answer.json["error"].as_str().expect("a message");
    assert!(message.contains(says), "{message:?} lacks {says:?}");
    assert_eq!(server.snapshot(), before, "a refusal changed the store");
}

#[test]
fn every_tenant_has_a_default_group_with_its_four_rules() {
    let server = Server::start();
    for t in [T1, T2] {
        let list = server.get(&groups(t));
        assert_eq!(list.status, StatusCode::OK);
        let all = list.json.as_array().expect("a list");
        assert_eq!(all.len(), 1);
        let default = &all[0];
        assert_eq!(default["name"], "default");
        let shape: Vec<_> = default["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .map(|r| {
                assert_eq!(r["protocol"], "any");
                let remote = if r["remote_group"] == default["uuid"] {
                    "self"
                } else {
                    "any"
                };
                assert_eq!(r["remote_cidr"], Value::Null);
                format!("{} {} {remote}", r["direction"], r["ethertype"])
            })
            .collect();
        assert_eq!(
            shape,
            [
                r#""egress" "IPv4" any"#,
                r#""egress" "IPv6" any"#,
                r#""ingress" "IPv4" self"#,
                r#""ingress" "IPv6" self"#
            ]
        );
        let by_name = server.get(&format!("{}/default", groups(t)));
        assert_eq!(by_name.json, *default);
        let by_id = server.get(&format!(
            "{}/{}",
            groups(t),
            default["uuid"].as_str().expect("id")
        ));
        assert_eq!(by_id.json, *default);
    }
    refused(
        &server,
        StatusCode::NOT_FOUND,
        "unknown_tenant",
        "unknown tenant",
        || server.get(&groups(UNKNOWN)),
    );
}

#[test]
fn bad_rules_are_refused_clearly_and_store_nothing() {
    let server = Server::start();
    let web = post(&server, &groups(T1), json!({"name": "web"}));
    assert_eq!(web.status, StatusCode::CREATED);
    let starts_with: Vec<String> = web.json["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| format!("{} {} {}", r["direction"], r["ethertype"], r["remote_cidr"]))
        .collect();
    assert_eq!(
        starts_with,
        [r#""egress" "IPv4" null"#, r#""egress" "IPv6" null"#],
        "a new group allows all egress, as in Neutron"
    );
    let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
    let cases = [
        (
            json!({"direction": "ingress", "protocol": "tcp", "port_min": 0}),
            "port_min 0 is not a port",
        ),
        (
            json!({"direction": "ingress", "protocol": "tcp", "port_min": 1, "port_max": 65536}),
            "port_max 65536 is not a port",
        ),
        (
            json!({"direction": "ingress", "protocol": "tcp", "port_min": 70000}),
            "port_min 70000",
        ),
        (
            json!({"direction": "ingress", "protocol": "sctpx"}),
            "protocol \"sctpx\" is not any, tcp",
        ),
        (
            json!({"direction": "ingress", "protocol": "300"}),
            "protocol \"300\"",
        ),
        (
            json!({"direction": "ingress", "remote_cidr": "10.0.0.0/8", "remote_group": "default"}),
            "not both",
        ),
        (
            json!({"direction": "ingress", "protocol": "udp", "icmp_type": 8}),
            "icmp and icmpv6 only",
        ),
        (json!({"direction": "inwards"}), "direction \"inwards\""),
        (
            json!({"direction": "egress", "ethertype": "IPv6", "remote_cidr": "10.0.0.0/8"}),
            "is not IPv6",
        ),
    ];
    for (body, says) in cases {
        refused(&server, unprocessable, "invalid_rule", says, || {
            post(&server, &rules(T1, "web"), body)
        });
    }
    refused(
        &server,
        StatusCode::NOT_FOUND,
        "unknown_security_group",
        "no security group \"admin\"",
        || {
            post(
                &server,
                &rules(T1, "web"),
                json!({"direction": "ingress", "remote_group": "admin"}),
            )
        },
    );
    refused(
        &server,
        StatusCode::NOT_FOUND,
        "unknown_security_group",
        "no security group \"nosuch\"",
        || {
            post(
                &server,
                &rules(T1, "nosuch"),
                json!({"direction": "ingress"}),
            )
        },
    );
    // A group of another tenant is unknown here.
    refused(
        &server,
        StatusCode::NOT_FOUND,
        "unknown_security_group",
        "no security group \"web\"",
        || {
            post(
                &server,
                &rules(T2, "default"),
                json!({"direction": "ingress", "remote_group": "web"}),
            )
        },
    );
    refused(
        &server,
        StatusCode::BAD_REQUEST,
        "invalid_field",
        "unknown field",
        || {
            post(
                &server,
                &rules(T1, "web"),
                json!({"direction": "ingress", "ports": 80}),
            )
        },
    );
    refused(
        &server,
        unprocessable,
        "invalid_group_name",
        "invalid security group name",
        || post(&server, &groups(T1), json!({"name": "has space"})),
    );
    refused(
        &server,
        StatusCode::CONFLICT,
        "security_group_exists",
        "already has a security group named \"web\"",
        || post(&server, &groups(T1), json!({"name": "web"})),
    );
}

#[test]
fn groups_rules_and_remote_groups_hold_together() {
    let server = Server::start();
    for name in ["web", "admin"] {
        assert_eq!(
            post(&server, &groups(T1), json!({"name": name})).status,
            StatusCode::CREATED
        );
    }
    let ssh_rule =
        json!({"direction": "ingress", "protocol": "tcp", "port_min": 22, "remote_group": "admin"});
    let added = post(&server, &rules(T1, "web"), ssh_rule.clone());
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.json);
    assert_eq!(added.json["remote_group_name"], "admin");
    assert_eq!(
        (
            added.json["port_min"].clone(),
            added.json["port_max"].clone()
        ),
        (json!(22), json!(22))
    );
    let http = post(
        &server,
        &rules(T1, "web"),
        json!({"direction": "ingress", "protocol": "tcp", "port_min": 80, "remote_cidr": "0.0.0.0/0"}),
    );
    assert_eq!(http.status, StatusCode::CREATED);
    let rule_id = added.json["uuid"].as_str().expect("id").to_owned();
    refused(
        &server,
        StatusCode::CONFLICT,
        "duplicate_rule",
        &rule_id,
        || post(&server, &rules(T1, "web"), ssh_rule.clone()),
    );
    refused(
        &server,
        StatusCode::CONFLICT,
        "security_group_in_use",
        &rule_id,
        || server.call(Method::DELETE, &format!("{}/admin", groups(T1)), None),
    );
    refused(
        &server,
        StatusCode::CONFLICT,
        "default_group",
        "cannot be deleted",
        || server.call(Method::DELETE, &format!("{}/default", groups(T1)), None),
    );
    let gone = server.call(
        Method::DELETE,
        &format!("/v1/tenants/{T1}/security-rules/{rule_id}"),
        None,
    );
    assert_eq!(gone.status, StatusCode::OK);
    assert_eq!(gone.json["uuid"], rule_id.as_str());
    refused(
        &server,
        StatusCode::NOT_FOUND,
        "unknown_rule",
        &rule_id,
        || {
            server.call(
                Method::DELETE,
                &format!("/v1/tenants/{T1}/security-rules/{rule_id}"),
                None,
            )
        },
    );
    let admin = server.call(Method::DELETE, &format!("{}/admin", groups(T1)), None);
    assert_eq!(admin.status, StatusCode::OK, "{}", admin.json);
    let web = server.get(&format!("{}/web", groups(T1)));
    let left: Vec<String> = web.json["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| format!("{} {} {}", r["direction"], r["protocol"], r["port_min"]))
        .collect();
    assert_eq!(
        left,
        [
            r#""egress" "any" null"#,
            r#""egress" "any" null"#,
            r#""ingress" "tcp" 80"#
        ],
        "the new group's two egress rules and tcp/80 are left"
    );
}

fn forward(
    server: &Server,
    t: uuid::Uuid,
    proto: &str,
    port: i64,
    private: &str,
    private_port: i64,
) -> Answer {
    post(
        server,
        &forwards(t),
        json!({"protocol": proto, "public_port": port, "private_ip": private, "private_port": private_port}),
    )
}

#[test]
fn forwards_share_the_tenants_forward_ip_which_returns_to_the_pool_with_the_last() {
    let server = Server::start();
    let web = forward(&server, T1, "tcp", 8080, "172.16.1.5", 80);
    assert_eq!(web.status, StatusCode::CREATED, "{}", web.json);
    assert_eq!(web.json["public_ip"], "203.0.113.1");
    let db = forward(&server, T1, "tcp", 15432, "172.16.2.9", 5432);
    assert_eq!(db.json["public_ip"], "203.0.113.1", "the same forward IP");
    let retry = forward(&server, T1, "tcp", 8080, "172.16.1.5", 80);
    assert_eq!(
        (retry.status, &retry.json),
        (StatusCode::OK, &web.json),
        "a retry is the same forward"
    );
    let dns = forward(&server, T1, "udp", 8080, "172.16.1.5", 53);
    assert_eq!(
        dns.status,
        StatusCode::CREATED,
        "udp/8080 is another forward"
    );

    let conflict = StatusCode::CONFLICT;
    let bad = StatusCode::UNPROCESSABLE_ENTITY;
    refused(
        &server,
        conflict,
        "forward_taken",
        "203.0.113.1:8080/tcp is already forwarded",
        || forward(&server, T1, "tcp", 8080, "172.16.1.6", 80),
    );
    refused(
        &server,
        bad,
        "address_outside_subnets",
        "10.9.9.9 is in none of tenant",
        || forward(&server, T1, "tcp", 9000, "10.9.9.9", 80),
    );
    refused(
        &server,
        bad,
        "address_outside_subnets",
        "172.16.2.9",
        || forward(&server, T2, "tcp", 9000, "172.16.2.9", 80),
    );
    refused(
        &server,
        bad,
        "reserved_address",
        "gateway address of subnet 172.16.1.0/24",
        || forward(&server, T1, "tcp", 9000, "172.16.1.1", 80),
    );
    refused(&server, bad, "reserved_address", "broadcast", || {
        forward(&server, T1, "tcp", 9000, "172.16.1.255", 80)
    });
    refused(
        &server,
        bad,
        "invalid_forward",
        "public_port 0 is not a port",
        || forward(&server, T1, "tcp", 0, "172.16.1.5", 80),
    );
    refused(
        &server,
        bad,
        "invalid_forward",
        "private_port 65536 is not a port",
        || forward(&server, T1, "tcp", 80, "172.16.1.5", 65536),
    );
    refused(
        &server,
        bad,
        "invalid_forward",
        "protocol \"sctp\" is not tcp or udp",
        || forward(&server, T1, "sctp", 80, "172.16.1.5", 80),
    );
    refused(
        &server,
        conflict,
        "public_ip_not_owned",
        "203.0.113.1 is assigned to tenant",
        || {
            post(
                &server,
                &forwards(T2),
                json!({"protocol": "tcp", "public_port": 80, "private_ip": "172.16.1.5", "private_port": 80, "public_ip": "203.0.113.1"}),
            )
        },
    );
    refused(
        &server,
        bad,
        "public_ip_outside_pools",
        "198.51.100.1 is in none",
        || {
            post(
                &server,
                &forwards(T2),
                json!({"protocol": "tcp", "public_port": 80, "private_ip": "172.16.1.5", "private_port": 80, "public_ip": "198.51.100.1"}),
            )
        },
    );
    // The pool's other address goes 1:1 to a T2 workload: it cannot carry forwards, and the
    // pool is then exhausted for a forward IP.
    let one_to_one = post(
        &server,
        &format!("/v1/tenants/{T2}/public-ips"),
        json!({"private_ip": "172.16.1.7"}),
    );
    assert_eq!(
        one_to_one.json["public_ip"], "203.0.113.2",
        "the forward IP is not handed out 1:1"
    );
    refused(
        &server,
        conflict,
        "public_ip_in_use",
        "assigned 1:1 to 172.16.1.7",
        || {
            post(
                &server,
                &forwards(T2),
                json!({"protocol": "tcp", "public_port": 80, "private_ip": "172.16.1.5", "private_port": 80, "public_ip": "203.0.113.2"}),
            )
        },
    );
    refused(
        &server,
        conflict,
        "public_pool_exhausted",
        "exhausted",
        || forward(&server, T2, "tcp", 80, "172.16.1.5", 80),
    );

    // Removing a forward removes exactly that one; the IP goes with the last.
    let listed = |t| {
        server
            .get(&forwards(t))
            .json
            .as_array()
            .expect("list")
            .len()
    };
    let delete = |f: &Answer| {
        server.call(
            Method::DELETE,
            &format!("{}/{}", forwards(T1), f.json["uuid"].as_str().expect("id")),
            None,
        )
    };
    assert_eq!(delete(&web).json, web.json);
    assert_eq!(listed(T1), 2);
    assert_eq!(
        server.get(&format!("/v1/tenants/{T1}/ssh")).json["forward_ip"],
        "203.0.113.1"
    );
    delete(&db);
    delete(&dns);
    assert_eq!(listed(T1), 0);
    assert_eq!(
        server.get(&format!("/v1/tenants/{T1}/ssh")).json["forward_ip"],
        Value::Null
    );
    let t2 = forward(&server, T2, "tcp", 80, "172.16.1.5", 80);
    assert_eq!(
        t2.json["public_ip"], "203.0.113.1",
        "the released IP is free again"
    );
}

#[test]
fn ssh_blocks_are_deterministic_disjoint_and_refused_when_they_do_not_fit() {
    let server = Server::start_with(|store| {
        store
            .set_public_pools(&["203.0.113.0/30".parse().expect("pool")])
            .expect("pools");
        // T3: a /17 (32768 addresses) cannot fit above 33000.
        common::network_node(store, 1, 10);
        store
            .request_subnet(T3, net("10.0.0.0/17"), Default::default(), admin::CN1)
            .expect("t3 subnet");
    });
    let off = server.get(&format!("/v1/tenants/{T1}/ssh"));
    assert_eq!(
        off.json,
        json!({"tenant": T1, "enabled": false, "source": "cluster", "forward_ip": null, "blocks": []})
    );
    let on = ssh(&server, T1, true);
    assert_eq!(on.status, StatusCode::OK, "{}", on.json);
    assert_eq!(
        on.json,
        json!({"tenant": T1, "enabled": true, "source": "tenant", "forward_ip": "203.0.113.1",
               "blocks": [{"subnet": "172.16.1.0/24", "first_port": 33000, "last_port": 33255},
                          {"subnet": "172.16.2.0/24", "first_port": 33256, "last_port": 33511}]})
    );
    refused(
        &server,
        StatusCode::CONFLICT,
        "ssh_forward_overlap",
        "tcp port 33005 of the forward IP",
        || forward(&server, T1, "tcp", 33005, "172.16.1.5", 80),
    );
    assert_eq!(
        forward(&server, T1, "udp", 33005, "172.16.1.5", 80).status,
        StatusCode::CREATED,
        "udp is not SSH"
    );
    // Off keeps the blocks (the ports of the subnets stay what they were) and, while a forward
    // uses it, the forward IP; on again gives the same answer.
    let off = ssh(&server, T1, false);
    assert_eq!(off.json["forward_ip"], "203.0.113.1");
    let tcp = forward(&server, T1, "tcp", 33300, "172.16.1.5", 80);
    assert_eq!(tcp.status, StatusCode::CREATED, "no SSH port while off");
    refused(
        &server,
        StatusCode::CONFLICT,
        "ssh_forward_overlap",
        "tcp port 33300",
        || ssh(&server, T1, true),
    );
    server.call(
        Method::DELETE,
        &format!(
            "{}/{}",
            forwards(T1),
            tcp.json["uuid"].as_str().expect("id")
        ),
        None,
    );
    assert_eq!(ssh(&server, T1, true).json, on.json);

    refused(
        &server,
        StatusCode::CONFLICT,
        "ssh_ports_exhausted",
        "subnet 10.0.0.0/17",
        || ssh(&server, T3, true),
    );
    // A new subnet of a tenant with SSH on gets the next block, or is refused naming it.
    let vxlan = Default::default();
    let third = server
        .store
        .request_subnet(T1, net("172.16.3.0/25"), vxlan, admin::CN1);
    assert!(third.is_ok(), "{third:?}");
    let blocks = server.store.ssh_access(T1).expect("ssh").blocks;
    assert_eq!((blocks[2].base, blocks[2].size), (33512, 128));
    let big = server
        .store
        .request_subnet(T1, net("10.8.0.0/17"), vxlan, admin::CN1);
    assert!(
        matches!(big, Err(StoreError::SshPortsExhausted { .. })),
        "{big:?}"
    );
    assert!(server
        .store
        .subnets(T1)
        .expect("subnets")
        .iter()
        .all(|s| s.cidr != net("10.8.0.0/17")));
}

const CIAO_NET: &str = env!("CARGO_BIN_EXE_ciao-net");

fn ciao_net(server: &Server, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(CIAO_NET)
        .arg("--socket")
        .arg(&server.socket)
        .args(args)
        .env_remove("CIAO_NET_SOCKET")
        .output()
        .expect("ciao-net runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn ciao_net_manages_groups_rules_forwards_and_ssh() {
    let server = Server::start();
    let t = T1.to_string();
    let ok = |args: &[&str]| {
        let (success, out, err) = ciao_net(&server, args);
        assert!(success, "{args:?}: {err}");
        out
    };
    assert!(ok(&[
        "group",
        "create",
        "--tenant",
        &t,
        "web",
        "--description",
        "front ends"
    ])
    .contains("created security group web"));
    let added = ok(&[
        "rule",
        "add",
        "--tenant",
        &t,
        "web",
        "--direction",
        "ingress",
        "--protocol",
        "tcp",
        "--port",
        "8000-8080",
        "--remote-cidr",
        "10.0.0.0/8",
    ]);
    assert!(
        added.contains("ingress IPv4 tcp 8000-8080 from 10.0.0.0/8"),
        "{added}"
    );
    let list = ok(&["group", "list", "--tenant", &t]);
    assert!(
        list.lines().next().expect("header").starts_with("GROUP"),
        "{list}"
    );
    assert!(
        list.contains("8000-8080") && list.contains("group default"),
        "{list}"
    );
    let forward = ok(&[
        "forward",
        "add",
        "--tenant",
        &t,
        "tcp",
        "8080",
        "172.16.1.5:80",
    ]);
    assert!(
        forward.contains("203.0.113.1:8080/tcp -> 172.16.1.5:80"),
        "{forward}"
    );
    let table = ok(&["forward", "list", "--tenant", &t]);
    assert!(table.contains("203.0.113.1:8080"), "{table}");
    let on = ok(&["ssh", "on", "--tenant", &t]);
    assert!(
        on.contains("on (tenant)") && on.contains("33000-33255"),
        "{on}"
    );
    let json = ok(&["--json", "ssh", "show", "--tenant", &t]);
    let parsed: Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(parsed["blocks"][1]["first_port"], 33256);
    let before = server.snapshot();
    for (args, says) in [
        (
            vec![
                "rule",
                "add",
                "--tenant",
                &t,
                "web",
                "--direction",
                "ingress",
                "--protocol",
                "tcp",
                "--port",
                "0",
            ],
            "port_min 0 is not a port",
        ),
        (
            vec![
                "rule",
                "add",
                "--tenant",
                &t,
                "web",
                "--direction",
                "ingress",
                "--protocol",
                "bogus",
            ],
            "protocol \"bogus\"",
        ),
        (
            vec![
                "rule",
                "add",
                "--tenant",
                &t,
                "web",
                "--direction",
                "ingress",
                "--remote-cidr",
                "10.0.0.0/8",
                "--remote-group",
                "default",
            ],
            "not both",
        ),
        (
            vec![
                "rule",
                "add",
                "--tenant",
                &t,
                "nosuch",
                "--direction",
                "ingress",
            ],
            "no security group \"nosuch\"",
        ),
        (
            vec![
                "forward",
                "add",
                "--tenant",
                &t,
                "tcp",
                "9090",
                "10.9.9.9:80",
            ],
            "in none of tenant",
        ),
    ] {
        let (success, out, err) = ciao_net(&server, &args);
        assert!(!success && out.is_empty(), "{args:?}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    assert_eq!(server.snapshot(), before);
}
