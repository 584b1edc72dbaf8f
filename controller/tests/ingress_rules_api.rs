//! The tenants' ingress rules and default action through the admin API on a real unix socket
//! against a real SQLite store, and through `ciao-net` as a process: order and positions,
//! persistence across a reopen of the file, and every refusal leaving the store unchanged.

mod admin;
mod common;

use std::process::Command;

use admin::{Answer, Server, T1, T2, UNKNOWN};
use ciao_controller::api::AdminEvent;
use ciao_controller::sqlite::SqliteStore;
use ciao_controller::Store;
use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

fn rules(t: Uuid) -> String {
    format!("/v1/tenants/{t}/ingress-rules")
}

fn policy(t: Uuid) -> String {
    format!("/v1/tenants/{t}/ingress-policy")
}

fn add(server: &mut Server, t: Uuid, body: Value) -> Value {
    let answer = server.call(Method::POST, &rules(t), Some(&body.to_string()));
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.json);
    assert_eq!(server.event(), Some(AdminEvent::IngressChanged(t)));
    answer.json
}

/// `(position, action, port_min)` of each rule, in the listing's order.
fn shape(server: &Server, t: Uuid) -> Vec<(u64, String, Value)> {
    let list = server.get(&rules(t));
    assert_eq!(list.status, StatusCode::OK, "{}", list.json);
    list.json["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| {
            (
                r["position"].as_u64().expect("position"),
                r["action"].as_str().expect("action").to_string(),
                r["port_min"].clone(),
            )
        })
        .collect()
}

/// Refused with `status` and `code`, the message holds `says`, nothing stored, no event.
fn refused(
    server: &mut Server,
    status: StatusCode,
    code: &str,
    says: &str,
    call: impl FnOnce(&Server) -> Answer,
) {
    let before = server.snapshot();
    let answer = call(server);
    assert_eq!(answer.status, status, "{}", answer.json);
    assert_eq!(answer.json["code"], code, "{}", answer.json);
    let message = answer.json["error"].as_str().expect("a message");
    assert!(message.contains(says), "{message:?} lacks {says:?}");
    assert_eq!(server.snapshot(), before, "a refusal changed the store");
    assert_eq!(server.event(), None, "a refusal told the daemon");
}

#[test]
fn rules_keep_their_order_positions_and_default_across_a_reopen() {
    let mut server = Server::start();
    let empty = server.get(&rules(T1));
    assert_eq!(
        empty.json["default"], "allow",
        "the default of every tenant"
    );
    assert_eq!(empty.json["rules"], json!([]));
    let a = add(
        &mut server,
        T1,
        json!({"action": "deny", "protocol": "tcp", "port_min": 8080,
        "remote_cidr": "203.0.113.101/32", "description": "no web for .101"}),
    );
    assert_eq!(a["position"], 1);
    assert_eq!(a["remote_cidr"], "203.0.113.101/32");
    add(
        &mut server,
        T1,
        json!({"action": "allow", "protocol": "udp", "port_min": 5000, "port_max": 5100}),
    );
    add(
        &mut server,
        T1,
        json!({"action": "allow", "protocol": "icmp", "position": 1}),
    );
    add(
        &mut server,
        T1,
        json!({"action": "deny", "protocol": "any", "position": 4}),
    );
    assert_eq!(
        shape(&server, T1),
        [
            (1, "allow".into(), Value::Null),
            (2, "deny".into(), json!(8080)),
            (3, "allow".into(), json!(5000)),
            (4, "deny".into(), Value::Null),
        ]
    );
    assert_eq!(shape(&server, T2), [], "another tenant's rules are its own");
    let set = server.call(Method::PUT, &policy(T1), Some(r#"{"default": "deny"}"#));
    assert_eq!(set.status, StatusCode::OK, "{}", set.json);
    assert_eq!(set.json["default"], "deny");
    assert_eq!(server.event(), Some(AdminEvent::IngressChanged(T1)));

    let gone = server.call(
        Method::DELETE,
        &format!("{}/{}", rules(T1), a["uuid"].as_str().expect("id")),
        None,
    );
    assert_eq!(gone.status, StatusCode::OK, "{}", gone.json);
    assert_eq!(gone.json["description"], "no web for .101");
    assert_eq!(server.event(), Some(AdminEvent::IngressChanged(T1)));
    let listed = server.get(&rules(T1)).json;
    assert_eq!(
        shape(&server, T1),
        [
            (1, "allow".into(), Value::Null),
            (2, "allow".into(), json!(5000)),
            (3, "deny".into(), Value::Null),
        ],
        "later rules moved up"
    );
    // Persisted before the answer: a second store on the file reads the same, ids included.
    let again = SqliteStore::open(server.store.path()).expect("reopen");
    let stored = again.ingress_rules(T1).expect("rules");
    assert_eq!(stored.rules.len(), 3);
    assert_eq!(stored.default.as_str(), "deny");
    assert_eq!(
        stored.rules[0].uuid.to_string(),
        listed["rules"][0]["uuid"].as_str().expect("id")
    );
}

#[test]
fn bad_rules_are_refused_clearly_and_store_nothing() {
    let mut server = Server::start();
    add(
        &mut server,
        T1,
        json!({"action": "allow", "protocol": "tcp"}),
    );
    let bad = StatusCode::BAD_REQUEST;
    for (body, says) in [
        (
            json!({"action": "allow", "protocol": "tcp", "port_min": 0}),
            "port_min 0 is not a port",
        ),
        (
            json!({"action": "allow", "protocol": "tcp", "port_min": 70000}),
            "port_min 70000 is not a port",
        ),
        (
            json!({"action": "allow", "protocol": "tcp", "port_min": 1, "port_max": 65536}),
            "port_max 65536",
        ),
        (
            json!({"action": "allow", "protocol": "icmp", "port_min": 80}),
            "tcp and udp only, not icmp",
        ),
        (
            json!({"action": "allow", "protocol": "any", "port_min": 80}),
            "tcp and udp only, not any",
        ),
        (
            json!({"action": "allow", "protocol": "tcp", "remote_cidr": "203.0.113.5/24"}),
            "host bits",
        ),
        (
            json!({"action": "allow", "protocol": "tcp", "remote_cidr": "nope"}),
            "not an IPv4 CIDR",
        ),
        (
            json!({"action": "allow", "protocol": "sctp"}),
            "protocol \"sctp\"",
        ),
        (
            json!({"action": "reject", "protocol": "tcp"}),
            "action \"reject\"",
        ),
        (
            json!({"action": "allow", "protocol": "tcp", "position": 3}),
            "position 3 is past the end",
        ),
        (
            json!({"action": "allow", "protocol": "tcp", "position": 0}),
            "position 0",
        ),
    ] {
        refused(&mut server, bad, "invalid_ingress_rule", says, |s| {
            s.call(Method::POST, &rules(T1), Some(&body.to_string()))
        });
    }
    refused(
        &mut server,
        bad,
        "invalid_field",
        "unknown field `port`",
        |s| {
            s.call(
                Method::POST,
                &rules(T1),
                Some(r#"{"action": "allow", "protocol": "tcp", "port": 80}"#),
            )
        },
    );
    refused(
        &mut server,
        bad,
        "invalid_ingress_rule",
        "action \"maybe\"",
        |s| s.call(Method::PUT, &policy(T1), Some(r#"{"default": "maybe"}"#)),
    );
    let nf = StatusCode::NOT_FOUND;
    let body = json!({"action": "allow", "protocol": "tcp"}).to_string();
    refused(&mut server, nf, "unknown_tenant", "unknown tenant", |s| {
        s.call(Method::POST, &rules(UNKNOWN), Some(&body))
    });
    refused(&mut server, nf, "unknown_tenant", "unknown tenant", |s| {
        s.get(&rules(UNKNOWN))
    });
    refused(&mut server, nf, "unknown_tenant", "unknown tenant", |s| {
        s.call(
            Method::PUT,
            &policy(UNKNOWN),
            Some(r#"{"default": "deny"}"#),
        )
    });
    let stranger = Uuid::from_u128(0xdead);
    refused(
        &mut server,
        nf,
        "unknown_ingress_rule",
        "no ingress rule",
        |s| s.call(Method::DELETE, &format!("{}/{stranger}", rules(T1)), None),
    );
    // A rule of T1 is not T2's to delete.
    let mine = server.get(&rules(T1)).json["rules"][0]["uuid"]
        .as_str()
        .expect("id")
        .to_string();
    refused(
        &mut server,
        nf,
        "unknown_ingress_rule",
        "no ingress rule",
        |s| s.call(Method::DELETE, &format!("{}/{mine}", rules(T2)), None),
    );
}

#[test]
fn ciao_net_adds_lists_and_deletes_rules_and_sets_the_default() {
    let server = Server::start();
    let socket = server.socket.to_str().expect("utf8").to_string();
    let t = T1.to_string();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_ciao-net"))
            .args(["--socket", &socket])
            .args(args)
            .env_remove("CIAO_NET_SOCKET")
            .output()
            .expect("ciao-net runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = run(&[
        "ingress-rule",
        "add",
        "--tenant",
        &t,
        "deny",
        "tcp",
        "--port",
        "8080",
        "--remote-cidr",
        "203.0.113.101/32",
        "--description",
        "no web",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("added:\nPOS"), "{out}");
    let (code, _, err) = run(&[
        "ingress-rule",
        "add",
        "--tenant",
        &t,
        "--position",
        "1",
        "allow",
        "udp",
        "--port",
        "5000-5100",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let (_, out, _) = run(&["ingress-policy", "--tenant", &t, "deny"]);
    assert!(out.contains("default  deny"), "{out}");
    let (_, list, _) = run(&["ingress-rule", "list", "--tenant", &t]);
    let lines: Vec<&str> = list.lines().collect();
    assert!(
        lines[4].starts_with("1    ") && lines[4].contains("allow   udp       5000-5100  anywhere"),
        "{list}"
    );
    assert!(
        lines[5].starts_with("2    ") && lines[5].contains("203.0.113.101/32  no web"),
        "{list}"
    );
    let (_, json, _) = run(&["--json", "ingress-rule", "list", "--tenant", &t]);
    let json: Value = serde_json::from_str(&json).expect("json");
    let id = json["rules"][1]["uuid"].as_str().expect("id").to_string();
    let (code, out, _) = run(&["ingress-rule", "delete", "--tenant", &t, &id]);
    assert_eq!(code, Some(0));
    assert!(out.starts_with("deleted:"), "{out}");
    let (code, out, err) = run(&[
        "ingress-rule",
        "add",
        "--tenant",
        &t,
        "allow",
        "icmp",
        "--port",
        "80",
    ]);
    assert_eq!((code, out.as_str()), (Some(1), ""));
    assert!(
        err.contains("ports apply to tcp and udp only, not icmp"),
        "{err}"
    );
    let (_, out, _) = run(&["ingress-policy", "--tenant", &t]);
    assert!(
        out.contains("default  deny") && out.contains("5000-5100") && !out.contains("8080"),
        "{out}"
    );
}
