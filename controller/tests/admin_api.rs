//! The admin API over a real unix socket against a real SQLite store: every endpoint, every
//! refusal, and the store unchanged (row for row) after each refusal.

mod admin;
mod common;

use std::os::unix::fs::PermissionsExt;

use admin::{auto_subnet_on_both_nodes, Server, CN1, CN2, T1, T2, T3, UNKNOWN};
use ciao_controller::api::{self, AdminEvent};
use ciao_controller::{CnciState, PublicIpAssignment, Store};
use common::ip;
use hyper::{Method, StatusCode};
use serde_json::json;

#[test]
fn lists_show_what_the_store_holds() {
    let server = Server::start();
    let nodes = server.get("/v1/nodes");
    assert_eq!(nodes.status, StatusCode::OK);
    assert_eq!(
        nodes.json["network_nodes"],
        json!([{"uuid": server.nn, "state": "connected", "underlay": "192.0.2.1",
                "external_device": "ext1", "capacity": 10, "cncis": 2}])
    );
    assert_eq!(
        nodes.json["compute_nodes"],
        json!([{"uuid": CN1, "state": "connected", "underlay": "192.0.2.101"},
               {"uuid": CN2, "state": "connected", "underlay": "192.0.2.102"}])
    );

    let tenants = server.get("/v1/tenants");
    assert_eq!(tenants.status, StatusCode::OK);
    let list = tenants.json.as_array().expect("a list");
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["uuid"], json!(T1));
    assert_eq!(list[0]["state"], "active");
    assert_eq!(list[0]["cnci"]["state"], "ready");
    assert_eq!(
        list[0]["subnets"],
        json!(["172.16.1.0/24", "172.16.2.0/24"])
    );
    assert_eq!(list[1]["uuid"], json!(T2));
    assert_eq!(list[1]["cnci"]["state"], "requested");

    let t1 = server.get(&format!("/v1/tenants/{T1}"));
    assert_eq!(t1.status, StatusCode::OK);
    assert_eq!(
        t1.json["cnci"],
        json!({"uuid": server.cnci, "tenant": T1, "state": "ready",
               "network_node": server.nn, "underlay": "192.0.2.1"})
    );
    let subnets = t1.json["subnets"].as_array().expect("subnets");
    assert_eq!(subnets.len(), 2);
    assert_eq!(subnets[0]["cidr"], "172.16.1.0/24");
    assert_eq!(subnets[0]["tunnel_kind"], "vxlan");
    assert_eq!(subnets[0]["compute_nodes"], json!([CN1, CN2]));
    assert_eq!(subnets[1]["compute_nodes"], json!([CN1]));
    assert_ne!(subnets[0]["tunnel_id"], subnets[1]["tunnel_id"]);
    let stored = server.store.subnets(T1).expect("subnets");
    assert_eq!(subnets[0]["tunnel_id"], json!(stored[0].tunnel_id));
    assert_eq!(t1.json["public_ips"], json!([]));

    let cncis = server.get("/v1/cncis");
    assert_eq!(cncis.status, StatusCode::OK);
    assert_eq!(cncis.json.as_array().expect("list").len(), 2);

    let ips = server.get("/v1/public-ips");
    assert_eq!(
        ips.json,
        json!({"pools": [{"pool": "203.0.113.0/30", "size": 2, "assigned": 0}],
               "assignments": []})
    );
}

#[test]
fn a_tenants_automatic_subnet_shows_each_compute_nodes_slice() {
    let server = Server::start_with(auto_subnet_on_both_nodes);
    let t3 = server.get(&format!("/v1/tenants/{T3}"));
    assert_eq!(t3.status, StatusCode::OK);
    let subnets = t3.json["subnets"].as_array().expect("subnets");
    assert_eq!(subnets.len(), 1, "{}", t3.json);
    assert_eq!(subnets[0]["cidr"], "172.16.0.0/24");
    assert_eq!(
        subnets[0]["node_slices"],
        json!([
            {"compute_node": CN1, "slice": "172.16.0.0/27",
             "range_start": "172.16.0.2", "range_end": "172.16.0.31"},
            {"compute_node": CN2, "slice": "172.16.0.32/27",
             "range_start": "172.16.0.32", "range_end": "172.16.0.63"},
        ])
    );
    // As the store has them.
    let stored = server.store.auto_slices(T3).expect("slices");
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[1].range.1, ip("172.16.0.63"));
    // A subnet the workloads named has no slices.
    let t1 = server.get(&format!("/v1/tenants/{T1}"));
    assert_eq!(t1.json["subnets"][0]["node_slices"], json!([]));
}

#[test]
fn a_public_ip_is_assigned_once_and_released_once() {
    let mut server = Server::start();
    let path = format!("/v1/tenants/{T1}/public-ips");
    let body = r#"{"private_ip": "172.16.1.5"}"#;
    let first = server.call(Method::POST, &path, Some(body));
    assert_eq!(first.status, StatusCode::CREATED);
    let expected = json!({"tenant": T1, "private_ip": "172.16.1.5", "public_ip": "203.0.113.1"});
    assert_eq!(first.json, expected);
    let assignment = PublicIpAssignment {
        tenant: T1,
        private: ip("172.16.1.5"),
        public: ip("203.0.113.1"),
    };
    assert_eq!(
        server.event(),
        Some(AdminEvent::PublicIpAssigned(assignment.clone()))
    );
    // A retry answers the same assignment (200, not a second address) and tells again.
    let again = server.call(Method::POST, &path, Some(body));
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.json, expected);
    assert_eq!(
        server.event(),
        Some(AdminEvent::PublicIpAssigned(assignment.clone()))
    );
    assert_eq!(
        server.store.public_ips().expect("read"),
        std::slice::from_ref(&assignment)
    );
    let t1 = server.get(&format!("/v1/tenants/{T1}"));
    assert_eq!(
        t1.json["public_ips"],
        json!([{"tenant": T1, "private_ip": "172.16.1.5", "public_ip": "203.0.113.1"}])
    );
    let ips = server.get("/v1/public-ips");
    assert_eq!(ips.json["pools"][0]["assigned"], 1);

    let release = format!("{path}/203.0.113.1");
    let released = server.call(Method::DELETE, &release, None);
    assert_eq!(released.status, StatusCode::OK);
    assert_eq!(released.json, expected);
    assert_eq!(
        server.event(),
        Some(AdminEvent::PublicIpReleased(assignment))
    );
    assert!(server.store.public_ips().expect("read").is_empty());
    // Releasing again is a no-op: 204, nothing sent.
    let twice = server.call(Method::DELETE, &release, None);
    assert_eq!(twice.status, StatusCode::NO_CONTENT);
    assert_eq!(twice.json, serde_json::Value::Null);
    assert_eq!(server.event(), None);
}

#[test]
fn deleting_a_tenant_retires_its_cnci_or_forgets_it() {
    let mut server = Server::start();
    let deleted = server.call(Method::DELETE, &format!("/v1/tenants/{T1}"), None);
    assert_eq!(deleted.status, StatusCode::ACCEPTED);
    assert_eq!(deleted.json, json!({"tenant": T1, "state": "deleting"}));
    assert_eq!(server.event(), Some(AdminEvent::TenantDeleted(T1)));
    let t1 = server.get(&format!("/v1/tenants/{T1}"));
    assert_eq!(t1.json["state"], "deleting");
    assert_eq!(t1.json["cnci"]["state"], "retiring");
    // Deleting again is accepted and changes nothing more.
    let before = server.snapshot();
    let again = server.call(Method::DELETE, &format!("/v1/tenants/{T1}"), None);
    assert_eq!(again.status, StatusCode::ACCEPTED);
    assert_eq!(server.snapshot(), before);
    assert_eq!(server.event(), Some(AdminEvent::TenantDeleted(T1)));

    // A tenant whose CNCI is gone has nothing to wait for: it is forgotten at once.
    let cnci = server.store.ensure_cnci(T2).expect("t2's cnci");
    server
        .store
        .set_cnci_state(cnci.uuid, CnciState::Gone, None)
        .expect("gone");
    let gone = server.call(Method::DELETE, &format!("/v1/tenants/{T2}"), None);
    assert_eq!(gone.status, StatusCode::ACCEPTED);
    assert_eq!(gone.json, json!({"tenant": T2, "state": "forgotten"}));
    assert_eq!(server.event(), Some(AdminEvent::TenantDeleted(T2)));
    assert_eq!(
        server.get(&format!("/v1/tenants/{T2}")).status,
        StatusCode::NOT_FOUND
    );
}

/// `request` is refused with `status` and `code`, nothing in the store changes, nothing is
/// sent to the daemon.
fn refused(
    server: &mut Server,
    (method, path, body): (Method, &str, Option<&str>),
    status: StatusCode,
    code: &str,
    says: &str,
) {
    let before = server.snapshot();
    let answer = server.call(method.clone(), path, body);
    let what = format!("{method} {path} {body:?}: {}", answer.json);
    assert_eq!(answer.status, status, "{what}");
    assert_eq!(answer.json["code"], code, "{what}");
    assert_eq!(
        answer
            .headers
            .get(hyper::header::CONTENT_TYPE)
            .map(|v| v.as_bytes()),
        Some(&b"application/json"[..]),
        "{what}"
    );
    let message = answer.json["error"].as_str().expect("an error message");
    assert!(message.contains(says), "{what}: expected {says:?}");
    assert_eq!(server.snapshot(), before, "{what}: the store changed");
    assert_eq!(server.event(), None, "{what}: an event was sent");
}

/// A request (method, path, body), and its refusal: status, code, part of the message.
type Case<'a> = (
    (Method, String, Option<&'a str>),
    StatusCode,
    &'a str,
    String,
);

#[test]
fn every_refusal_names_its_problem_and_changes_nothing() {
    let mut server = Server::start();
    let t1_ips = format!("/v1/tenants/{T1}/public-ips");
    let unknown_ips = format!("/v1/tenants/{UNKNOWN}/public-ips");
    let bad = StatusCode::BAD_REQUEST;
    let cases: Vec<Case> = vec![
        (
            (Method::GET, format!("/v1/tenants/{UNKNOWN}"), None),
            StatusCode::NOT_FOUND,
            "unknown_tenant",
            format!("unknown tenant {UNKNOWN}"),
        ),
        (
            (Method::DELETE, format!("/v1/tenants/{UNKNOWN}"), None),
            StatusCode::NOT_FOUND,
            "unknown_tenant",
            format!("unknown tenant {UNKNOWN}"),
        ),
        (
            (
                Method::POST,
                unknown_ips.clone(),
                Some(r#"{"private_ip":"172.16.1.5"}"#),
            ),
            StatusCode::NOT_FOUND,
            "unknown_tenant",
            format!("unknown tenant {UNKNOWN}"),
        ),
        (
            (Method::DELETE, format!("{unknown_ips}/203.0.113.1"), None),
            StatusCode::NOT_FOUND,
            "unknown_tenant",
            format!("unknown tenant {UNKNOWN}"),
        ),
        (
            (
                Method::POST,
                t1_ips.clone(),
                Some(r#"{"private_ip":"10.9.9.9"}"#),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "address_outside_subnets",
            "10.9.9.9 is in none".into(),
        ),
        (
            (Method::POST, t1_ips.clone(), Some("{\"private_ip\": ")),
            bad,
            "malformed_json",
            "EOF while parsing".into(),
        ),
        (
            (Method::POST, t1_ips.clone(), Some("<xml/>")),
            bad,
            "malformed_json",
            "expected value at line 1 column 1".into(),
        ),
        (
            (Method::POST, t1_ips.clone(), Some("")),
            bad,
            "malformed_json",
            "request body is empty".into(),
        ),
        (
            (
                Method::POST,
                t1_ips.clone(),
                Some(r#"{"private_ip":"172.16.1.5"} x"#),
            ),
            bad,
            "malformed_json",
            "trailing characters".into(),
        ),
        (
            (
                Method::POST,
                t1_ips.clone(),
                Some(r#"{"private_ip":"172.16.1"}"#),
            ),
            bad,
            "invalid_field",
            "private_ip: invalid IPv4 address syntax".into(),
        ),
        (
            (Method::POST, t1_ips.clone(), Some(r#"{"private_ip":5}"#)),
            bad,
            "invalid_field",
            "private_ip: invalid type".into(),
        ),
        (
            (Method::POST, t1_ips.clone(), Some(r#"{}"#)),
            bad,
            "invalid_field",
            "missing field `private_ip`".into(),
        ),
        (
            (
                Method::POST,
                t1_ips.clone(),
                Some(r#"{"private_ip":"172.16.1.5","public_ip":"1.2.3.4"}"#),
            ),
            bad,
            "invalid_field",
            "unknown field `public_ip`".into(),
        ),
        (
            (
                Method::POST,
                "/v1/tenants/not-a-uuid/public-ips".into(),
                Some(r#"{"private_ip":"172.16.1.5"}"#),
            ),
            bad,
            "bad_tenant_id",
            "\"not-a-uuid\" is not a UUID".into(),
        ),
        (
            (Method::GET, "/v1/tenants/42".into(), None),
            bad,
            "bad_tenant_id",
            "\"42\" is not a UUID".into(),
        ),
        (
            (Method::DELETE, format!("{t1_ips}/203.0.113"), None),
            bad,
            "bad_address",
            "\"203.0.113\" is not an IPv4 address".into(),
        ),
        (
            (Method::GET, "/v1/nope".into(), None),
            StatusCode::NOT_FOUND,
            "no_route",
            "no endpoint GET /v1/nope".into(),
        ),
        (
            (Method::GET, "/".into(), None),
            StatusCode::NOT_FOUND,
            "no_route",
            "no endpoint GET /".into(),
        ),
        (
            (Method::GET, "/v2/nodes".into(), None),
            StatusCode::NOT_FOUND,
            "no_route",
            "/v2/nodes".into(),
        ),
        (
            (Method::PUT, "/v1/tenants".into(), Some("{}")),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method PUT is not allowed on /v1/tenants".into(),
        ),
        (
            (Method::POST, "/v1/nodes".into(), None),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "POST".into(),
        ),
        (
            (Method::GET, t1_ips.clone(), None),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "GET".into(),
        ),
    ];
    for ((method, path, body), status, code, says) in cases {
        refused(&mut server, (method, &path, body), status, code, &says);
    }

    // A 405 says which methods the endpoint takes.
    for (method, path, allow) in [
        (Method::PUT, "/v1/tenants".to_owned(), "GET,HEAD"),
        (Method::POST, format!("/v1/tenants/{T1}"), "GET,HEAD,DELETE"),
        (Method::GET, t1_ips.clone(), "POST"),
    ] {
        let answer = server.call(method, &path, None);
        assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED);
        let allowed = answer.headers.get(hyper::header::ALLOW).expect("Allow");
        assert_eq!(allowed.to_str().expect("text"), allow, "{path}");
    }

    // The pool (two addresses) runs out.
    for private in ["172.16.1.5", "172.16.2.5"] {
        let body = format!(r#"{{"private_ip":"{private}"}}"#);
        let answer = server.call(Method::POST, &t1_ips, Some(&body));
        assert_eq!(answer.status, StatusCode::CREATED);
        assert!(server.event().is_some());
    }
    refused(
        &mut server,
        (
            Method::POST,
            &t1_ips,
            Some(r#"{"private_ip":"172.16.1.6"}"#),
        ),
        StatusCode::CONFLICT,
        "public_pool_exhausted",
        "every public IP pool is exhausted (203.0.113.0/30)",
    );
    // T1's address is not T2's to release.
    refused(
        &mut server,
        (
            Method::DELETE,
            &format!("/v1/tenants/{T2}/public-ips/203.0.113.1"),
            None,
        ),
        StatusCode::CONFLICT,
        "public_ip_not_owned",
        &format!("assigned to tenant {T1}, not to tenant {T2}"),
    );
    // A tenant being deleted takes no new public IP.
    let deleted = server.call(Method::DELETE, &format!("/v1/tenants/{T2}"), None);
    assert_eq!(deleted.status, StatusCode::ACCEPTED);
    assert!(server.event().is_some());
    refused(
        &mut server,
        (
            Method::POST,
            &format!("/v1/tenants/{T2}/public-ips"),
            Some(r#"{"private_ip":"172.16.1.9"}"#),
        ),
        StatusCode::CONFLICT,
        "tenant_deleting",
        "is being deleted",
    );
}

#[test]
fn without_a_pool_public_ips_are_refused() {
    let mut server = Server::start_with(|_| {});
    refused(
        &mut server,
        (
            Method::POST,
            &format!("/v1/tenants/{T1}/public-ips"),
            Some(r#"{"private_ip":"172.16.1.5"}"#),
        ),
        StatusCode::CONFLICT,
        "no_public_pool",
        "no public IP pool is configured",
    );
    assert_eq!(
        server.get("/v1/public-ips").json,
        json!({"pools": [], "assignments": []})
    );
}

#[test]
fn the_socket_is_private_and_not_taken_over() {
    let server = Server::start();
    let mode = std::fs::metadata(&server.socket)
        .expect("socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    // A second controller on the same state dir is refused while the first serves.
    let err = server
        .runtime
        .block_on(async { api::bind(&server.socket) })
        .expect_err("the socket is served");
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse, "{err}");
    assert!(
        err.to_string()
            .contains(&server.socket.display().to_string()),
        "{err}"
    );
    assert_eq!(
        server.get("/v1/nodes").status,
        StatusCode::OK,
        "still served"
    );

    // A socket left by a dead controller is replaced; a file that is not a socket is not.
    let stale = server.dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).expect("stale socket"));
    let listener = server
        .runtime
        .block_on(async { api::bind(&stale) })
        .expect("stale socket replaced");
    drop(listener);
    let file = server.dir.path().join("file.sock");
    std::fs::write(&file, "not a socket").expect("file");
    let err = server
        .runtime
        .block_on(async { api::bind(&file) })
        .expect_err("not a socket");
    assert!(err.to_string().contains("is not a socket"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&file).expect("file kept"),
        "not a socket"
    );
}

#[test]
fn serve_until_stops_when_told() {
    let dir = tempfile::tempdir().expect("dir");
    let (_store_dir, store) = common::store();
    let socket = dir.path().join("admin.sock");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (tx, _rx) = tokio::sync::mpsc::channel(1);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let listener = runtime
        .block_on(async { api::bind(&socket) })
        .expect("bind");
    let served = runtime.spawn(api::serve_until(
        listener,
        std::sync::Arc::new(store),
        tx,
        async {
            let _ = stopped.await;
        },
    ));
    let client = api::client::Client::new(&socket);
    let answer = runtime
        .block_on(client.call(Method::GET, "/v1/tenants", None))
        .expect("served");
    assert_eq!(answer.status, StatusCode::OK);
    stop.send(()).expect("server alive");
    runtime
        .block_on(served)
        .expect("task")
        .expect("serve_until returns Ok");
}

#[test]
fn concurrent_assigns_share_out_the_pool_exactly() {
    let mut server = Server::start();
    let path = format!("/v1/tenants/{T1}/public-ips");
    let client = api::client::Client::new(&server.socket);
    // Six addresses ask at once for a pool of two: two get one each, four are refused.
    let answers = server.runtime.block_on(async {
        let calls: Vec<_> = (1..=6)
            .map(|n| {
                let (client, path) = (client.clone(), path.clone());
                tokio::spawn(async move {
                    let body = format!(r#"{{"private_ip":"172.16.1.{n}"}}"#).into_bytes();
                    client.call(Method::POST, &path, Some(body)).await
                })
            })
            .collect();
        let mut answers = Vec::new();
        for call in calls {
            answers.push(call.await.expect("task").expect("answer").status);
        }
        answers
    });
    let created = answers
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    let refused = answers
        .iter()
        .filter(|s| **s == StatusCode::CONFLICT)
        .count();
    assert_eq!((created, refused), (2, 4), "{answers:?}");
    let stored = server.store.public_ips().expect("read");
    let publics: Vec<_> = stored.iter().map(|a| a.public.to_string()).collect();
    assert_eq!(publics, ["203.0.113.1", "203.0.113.2"]);
    let mut told = Vec::new();
    while let Some(AdminEvent::PublicIpAssigned(a)) = server.event() {
        told.push(a);
    }
    told.sort_by_key(|a| a.public);
    assert_eq!(told, stored);
}
