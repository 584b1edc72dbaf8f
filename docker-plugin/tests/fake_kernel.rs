//! The driver's logic on the recording fake kernel: no root, no dockerd. The real driver is
//! tested against a real dockerd in tests/tests/docker.rs.

use netcore::fake::{FakeKernel, FakeWorld, Fault, Trigger};
use serde_json::Value;

const TENANT: &str = "3390740c-dce9-48d6-b83a-a717417072ce";
const CNCI: &str = "6f1b7a2e-0c5d-4c49-9d55-8a1c2e3f4b5a";
/// errno 1, as nft would fail without CAP_NET_ADMIN.
const EPERM: i32 = 1;

/// A world whose host has an uplink toward the CNCI at 192.0.2.1.
fn world() -> FakeWorld {
    FakeWorld::with_uplink()
}

fn plugin(world: &FakeWorld, dir: &std::path::Path) -> ciao_docker_plugin::Plugin<FakeKernel> {
    let node = world.node(dir).expect("node");
    ciao_docker_plugin::Plugin::with_node(node, dir).expect("plugin")
}

fn ok(p: &mut ciao_docker_plugin::Plugin<FakeKernel>, path: &str, body: &str) -> Value {
    match p.call(path, body.as_bytes()) {
        Some(Ok(v)) => v,
        other => panic!("{path} {body}: {other:?}"),
    }
}

#[test]
fn a_docker_endpoint_lives_and_dies_on_the_fake_kernel_and_activation_restores_firewall_rules() {
    let world = world();
    let dir = tempfile::tempdir().expect("dir");
    let mut p = plugin(&world, dir.path());
    let pool = ok(
        &mut p,
        "/IpamDriver.RequestPool",
        r#"{"AddressSpace":"ciao-local","Pool":"10.77.0.0/24","SubPool":"","Options":{},"V6":false}"#,
    );
    let pool_id = pool["PoolID"].as_str().expect("PoolID").to_string();
    ok(
        &mut p,
        "/IpamDriver.RequestAddress",
        &format!(
            r#"{{"PoolID":"{pool_id}","Address":"","Options":{{"RequestAddressType":"com.docker.network.gateway"}}}}"#
        ),
    );
    let nid = "a".repeat(64);
    ok(
        &mut p,
        "/NetworkDriver.CreateNetwork",
        &format!(
            r#"{{"NetworkID":"{nid}","Options":{{"com.docker.network.generic":{{"tenant":"{TENANT}","cnci":"{CNCI}@192.0.2.1"}}}},"IPv4Data":[{{"AddressSpace":"ciao-local","Gateway":"10.77.0.1/24","Pool":"10.77.0.0/24"}}],"IPv6Data":[]}}"#
        ),
    );
    let addr = ok(
        &mut p,
        "/IpamDriver.RequestAddress",
        &format!(r#"{{"PoolID":"{pool_id}","Address":"","Options":null}}"#),
    );
    let address = addr["Address"].as_str().expect("Address").to_string();
    let eid = "e".repeat(64);
    ok(
        &mut p,
        "/NetworkDriver.CreateEndpoint",
        &format!(
            r#"{{"NetworkID":"{nid}","EndpointID":"{eid}","Interface":{{"Address":"{address}","AddressIPv6":"","MacAddress":""}},"Options":{{}}}}"#
        ),
    );
    let join = ok(
        &mut p,
        "/NetworkDriver.Join",
        &format!(
            r#"{{"NetworkID":"{nid}","EndpointID":"{eid}","SandboxKey":"/x","Options":{{}}}}"#
        ),
    );
    let handoff = join["InterfaceName"]["SrcName"]
        .as_str()
        .expect("SrcName")
        .to_string();
    let host = world.snapshot().ns("host");
    assert_eq!(host.links[&handoff].kind, "veth", "the end Docker moves");
    assert!(!host.links[&handoff].up, "left down for Docker");
    let bridges: Vec<_> = host
        .links
        .iter()
        .filter(|(_, l)| l.kind == "bridge" && l.alias.is_some())
        .collect();
    assert_eq!(bridges.len(), 1, "the subnet's bridge");
    let bridge = bridges[0].0.clone();
    assert!(world.firewall_rules().contains(&bridge));

    // dockerd restarts with a fresh ruleset: activation puts the rule back.
    world.flush_firewall();
    ok(&mut p, "/Plugin.Activate", "");
    assert!(world.firewall_rules().contains(&bridge));
    // A failing firewall does not fail activation (containers still start).
    world.flush_firewall();
    world.inject(Trigger::Op("allow_bridge", 3), Fault::Fail(EPERM));
    let act = ok(&mut p, "/Plugin.Activate", "");
    assert_eq!(act["Implements"][0], "NetworkDriver");
    assert!(world.firewall_rules().is_empty());

    ok(
        &mut p,
        "/NetworkDriver.DeleteEndpoint",
        &format!(r#"{{"NetworkID":"{nid}","EndpointID":"{eid}"}}"#),
    );
    let host = world.snapshot().ns("host");
    assert!(!host.links.contains_key(&handoff) && !host.links.contains_key(&bridge));
    assert_eq!(host.links.len(), 2, "lo and eth0 only");
}

/// A controller-mode network (`tenant` only) on `pool`; returns an endpoint address in it.
fn controlled_network(
    p: &mut ciao_docker_plugin::Plugin<FakeKernel>,
    nid: &str,
    pool: &str,
) -> String {
    let reply = ok(
        p,
        "/IpamDriver.RequestPool",
        &format!(
            r#"{{"AddressSpace":"ciao-local","Pool":"{pool}","SubPool":"","Options":{{}},"V6":false}}"#
        ),
    );
    let pool_id = reply["PoolID"].as_str().expect("PoolID").to_string();
    let gateway = ok(
        p,
        "/IpamDriver.RequestAddress",
        &format!(
            r#"{{"PoolID":"{pool_id}","Address":"","Options":{{"RequestAddressType":"com.docker.network.gateway"}}}}"#
        ),
    );
    let gateway = gateway["Address"].as_str().expect("gateway").to_string();
    ok(
        p,
        "/NetworkDriver.CreateNetwork",
        &format!(
            r#"{{"NetworkID":"{nid}","Options":{{"com.docker.network.generic":{{"tenant":"{TENANT}"}}}},"IPv4Data":[{{"AddressSpace":"ciao-local","Gateway":"{gateway}","Pool":"{pool}"}}],"IPv6Data":[]}}"#
        ),
    );
    let addr = ok(
        p,
        "/IpamDriver.RequestAddress",
        &format!(r#"{{"PoolID":"{pool_id}","Address":"","Options":null}}"#),
    );
    addr["Address"].as_str().expect("Address").to_string()
}

/// CreateEndpoint then Join of endpoint `eid`; the first error, if any.
fn endpoint(
    p: &mut ciao_docker_plugin::Plugin<FakeKernel>,
    nid: &str,
    eid: &str,
    address: &str,
) -> Option<String> {
    let calls = [
        (
            "/NetworkDriver.CreateEndpoint",
            format!(
                r#"{{"NetworkID":"{nid}","EndpointID":"{eid}","Interface":{{"Address":"{address}","AddressIPv6":"","MacAddress":""}},"Options":{{}}}}"#
            ),
        ),
        (
            "/NetworkDriver.Join",
            format!(
                r#"{{"NetworkID":"{nid}","EndpointID":"{eid}","SandboxKey":"/x","Options":{{}}}}"#
            ),
        ),
    ];
    for (path, body) in calls {
        match p.call(path, body.as_bytes()) {
            Some(Ok(_)) => {}
            Some(Err(e)) => return Some(e.to_string()),
            None => panic!("{path}: no reply"),
        }
    }
    None
}

#[test]
fn a_network_overlapping_another_of_the_tenants_on_this_node_gets_err() {
    let world = world();
    let dir = tempfile::tempdir().expect("dir");
    let mut p = plugin(&world, dir.path());
    let (wide, narrow) = ("a".repeat(64), "b".repeat(64));
    let address = controlled_network(&mut p, &wide, "10.78.0.0/16");
    assert_eq!(endpoint(&mut p, &wide, &"e".repeat(64), &address), None);
    let before = world.snapshot();
    let address = controlled_network(&mut p, &narrow, "10.78.1.0/24");
    let err = endpoint(&mut p, &narrow, &"f".repeat(64), &address).expect("{\"Err\"}");
    assert!(
        err.contains("subnet") && err.contains("overlaps 10.78.0.0/16"),
        "{err}"
    );
    assert_eq!(world.snapshot(), before, "nothing attached");
}
