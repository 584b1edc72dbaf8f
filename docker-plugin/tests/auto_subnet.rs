//! `docker network create --ipam-opt tenant=T` without `--subnet`, on the fake kernel: the IPAM
//! driver gets the tenant's subnet and this node's range from a stand-in for `ciao-node run`'s
//! `node.sock` (one JSON line in, one out, as the daemon answers). The real daemon and dockerd
//! are in tests/tests/docker_auto_subnet.rs.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::thread::JoinHandle;

use netcore::fake::{FakeKernel, FakeWorld};
use serde_json::{json, Value};

type Plugin = ciao_docker_plugin::Plugin<FakeKernel>;

const TENANT: &str = "3390740c-dce9-48d6-b83a-a717417072ce";
const OTHER: &str = "7a1e0c55-0000-4000-8000-000000000001";

fn plugin(world: &FakeWorld, dir: &Path) -> Plugin {
    let node = world.node(dir).expect("node");
    ciao_docker_plugin::Plugin::with_node(node, dir).expect("plugin")
}

/// A stand-in `ciao-node run` that answers one request with `reply`.
fn daemon(dir: &Path, reply: Value) -> JoinHandle<Value> {
    let listener = UnixListener::bind(dir.join("node.sock")).expect("bind");
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        let mut line = String::new();
        BufReader::new(&stream).read_line(&mut line).expect("line");
        let mut out = reply.to_string();
        out.push('\n');
        (&stream).write_all(out.as_bytes()).expect("reply");
        serde_json::from_str(&line).expect("request")
    })
}

fn granted() -> Value {
    json!({"ok": {"subnet": "172.19.4.0/24", "range_start": "172.19.4.34", "range_end": "172.19.4.63"}})
}

fn call(p: &mut Plugin, path: &str, body: Value) -> Result<Value, String> {
    match p.call(path, body.to_string().as_bytes()) {
        Some(Ok(v)) => Ok(v),
        Some(Err(e)) => Err(e.to_string()),
        None => panic!("{path}: no reply"),
    }
}

fn request_pool(p: &mut Plugin, options: Value) -> Result<Value, String> {
    let body = json!({"AddressSpace": "ciao-local", "Pool": "", "SubPool": "", "Options": options, "V6": false});
    call(p, "/IpamDriver.RequestPool", body)
}

/// Docker's calls after RequestPool: the gateway, CreateNetwork with `generic` -o options, one
/// address; the address, or the first error.
fn network(p: &mut Plugin, nid: &str, pool: &Value, generic: Value) -> Result<String, String> {
    let pool_id = pool["PoolID"].as_str().expect("PoolID");
    let subnet = pool["Pool"].as_str().expect("Pool");
    let gateway_type = json!({"RequestAddressType": "com.docker.network.gateway"});
    let gw = call(
        p,
        "/IpamDriver.RequestAddress",
        json!({"PoolID": pool_id, "Address": "", "Options": gateway_type}),
    )?;
    let ipv4 = json!([{"AddressSpace": "ciao-local", "Gateway": gw["Address"], "Pool": subnet}]);
    let options = json!({"com.docker.network.generic": generic});
    let create = json!({"NetworkID": nid, "Options": options, "IPv4Data": ipv4, "IPv6Data": []});
    call(p, "/NetworkDriver.CreateNetwork", create)?;
    let addr = call(
        p,
        "/IpamDriver.RequestAddress",
        json!({"PoolID": pool_id, "Address": "", "Options": null}),
    )?;
    Ok(addr["Address"].as_str().expect("Address").to_string())
}

fn records(dir: &Path, kind: &str) -> usize {
    std::fs::read_dir(dir.join("docker").join(kind))
        .expect("records")
        .count()
}

#[test]
fn ipam_opt_tenant_alone_gets_the_controllers_subnet_and_this_nodes_range() {
    let world = FakeWorld::with_uplink();
    let dir = tempfile::tempdir().expect("dir");
    let mut p = plugin(&world, dir.path());
    let d = daemon(dir.path(), granted());
    let pool = request_pool(&mut p, json!({"tenant": TENANT})).expect("pool");
    assert_eq!(
        d.join().expect("daemon"),
        json!({"auto_subnet": {"tenant": TENANT}})
    );
    assert_eq!(pool["Pool"], "172.19.4.0/24");
    let address = network(&mut p, &"a".repeat(64), &pool, json!({})).expect("network");
    assert_eq!(
        address, "172.19.4.34/24",
        "the first address of this node's range"
    );

    // Recorded durably: the tenant, the slice and the exact range survive a restart.
    drop(p);
    let mut p = plugin(&world, dir.path());
    let id = pool["PoolID"].as_str().expect("PoolID");
    let next = json!({"PoolID": id, "Address": "", "Options": null});
    let next = call(&mut p, "/IpamDriver.RequestAddress", next).expect("address");
    assert_eq!(
        next["Address"], "172.19.4.35/24",
        "still from this node's range"
    );
    let text = std::fs::read_to_string(dir.path().join(format!("docker/pools/{id}.json")))
        .expect("pool record");
    let rec: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(rec["tenant"], TENANT);
    assert_eq!(rec["sub_pool"], "172.19.4.32/27");
    assert_eq!(
        rec["node_range"],
        json!({"start": "172.19.4.34", "end": "172.19.4.63"})
    );
}

#[test]
fn no_subnet_and_no_ipam_tenant_gets_err_saying_how_to_fix_it() {
    let world = FakeWorld::with_uplink();
    let dir = tempfile::tempdir().expect("dir");
    let mut p = plugin(&world, dir.path());
    let err = request_pool(&mut p, json!({})).expect_err("refused");
    assert!(
        err.contains("Docker does not pass -o")
            && err.contains("--subnet")
            && err.contains("--ipam-opt tenant="),
        "{err}"
    );
    let err = request_pool(&mut p, json!({"tenant": TENANT, "cnci": "x"})).expect_err("refused");
    assert!(err.starts_with("unknown --ipam-opt cnci"), "{err}");
    assert_eq!(records(dir.path(), "pools"), 0, "nothing recorded");
}

#[test]
fn a_different_tenant_in_o_gets_err_naming_both_and_creates_nothing() {
    let world = FakeWorld::with_uplink();
    let dir = tempfile::tempdir().expect("dir");
    let mut p = plugin(&world, dir.path());
    let d = daemon(dir.path(), granted());
    let pool = request_pool(&mut p, json!({"tenant": TENANT})).expect("pool");
    d.join().expect("daemon");
    let err =
        network(&mut p, &"b".repeat(64), &pool, json!({"tenant": OTHER})).expect_err("mismatch");
    assert!(err.contains(OTHER) && err.contains(TENANT), "{err}");
    assert_eq!(records(dir.path(), "networks"), 0, "no network");
    // The same tenant named twice is accepted.
    let address = network(&mut p, &"c".repeat(64), &pool, json!({"tenant": TENANT})).expect("same");
    assert_eq!(address, "172.19.4.34/24");
}

#[test]
fn without_the_daemon_or_with_its_refusal_request_pool_gets_err_and_records_nothing() {
    let world = FakeWorld::with_uplink();
    let dir = tempfile::tempdir().expect("dir");
    let mut p = plugin(&world, dir.path());
    let opts = json!({"tenant": TENANT, "subnet-wait-seconds": "1"});
    let err = request_pool(&mut p, opts.clone()).expect_err("no daemon");
    assert!(err.contains("ciao-node run is not running"), "{err}");
    assert!(err.contains(TENANT), "{err}");
    let d = daemon(dir.path(), json!({"error": "tenant is not active"}));
    let err = request_pool(&mut p, opts).expect_err("refused");
    d.join().expect("daemon");
    assert!(err.ends_with("tenant is not active"), "{err}");
    assert_eq!(records(dir.path(), "pools"), 0, "nothing recorded");
}
