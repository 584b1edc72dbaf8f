//! Many callers at the same instant, each with its own connection to one real SQLite file (as
//! separate controller tasks or processes would be): the decisions stay single.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::thread;

use ciao_controller::{SqliteStore, Store, SubnetAssignment};
use ciao_types::TunnelKind;
use common::{net, network_node, rows};
use uuid::Uuid;

const CALLERS: usize = 24;

/// Run `call(i, store)` on `CALLERS` threads, each with its own store opened on `path`,
/// released together by a barrier once every one is open.
fn at_once<T: Send + 'static>(
    path: &Path,
    call: impl Fn(usize, &SqliteStore) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let barrier = Arc::new(Barrier::new(CALLERS));
    let call = Arc::new(call);
    let threads: Vec<_> = (0..CALLERS)
        .map(|i| {
            let (barrier, call, path) = (barrier.clone(), call.clone(), path.to_owned());
            thread::spawn(move || {
                let store = SqliteStore::open(&path).expect("own connection");
                barrier.wait();
                call(i, &store)
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().expect("caller thread"))
        .collect()
}

#[test]
fn one_cnci_and_one_tunnel_id_per_subnet_when_everyone_asks_at_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let setup = SqliteStore::open_in(dir.path()).expect("open");
    for n in 1..=3 {
        network_node(&setup, n, 100);
    }
    let tenant = Uuid::new_v4();
    // Two compute nodes, two subnets, every caller asking for a tenant nobody has seen yet.
    let answers: Vec<SubnetAssignment> = at_once(setup.path(), move |i, store| {
        let cidr = net(["172.16.1.0/24", "172.16.2.0/24"][i % 2]);
        let cn = Uuid::from_u128(1 + (i / 2 % 2) as u128);
        store
            .request_subnet(tenant, cidr, TunnelKind::Vxlan, cn)
            .expect("request")
    });
    let cncis: HashSet<_> = answers.iter().map(|a| a.cnci.uuid).collect();
    assert_eq!(cncis.len(), 1, "one CNCI for the tenant");
    let mut ids: HashMap<String, HashSet<u32>> = HashMap::new();
    for a in &answers {
        ids.entry(a.subnet.cidr.to_string())
            .or_default()
            .insert(a.subnet.tunnel_id);
    }
    assert_eq!(ids.len(), 2);
    assert!(
        ids.values().all(|set| set.len() == 1),
        "one id per subnet: {ids:?}"
    );
    assert_ne!(ids["172.16.1.0/24"], ids["172.16.2.0/24"]);
    assert_eq!(rows(&setup, "cncis"), 1);
    assert_eq!(rows(&setup, "subnets"), 2);
    assert_eq!(rows(&setup, "subnet_nodes"), 4);
}

#[test]
fn new_tenants_at_once_are_spread_evenly_with_distinct_ids() {
    let dir = tempfile::tempdir().expect("temp dir");
    let setup = SqliteStore::open_in(dir.path()).expect("open");
    let nodes: Vec<Uuid> = (1..=3).map(|n| network_node(&setup, n, 100)).collect();
    // Every caller a different tenant with the same subnet.
    let answers = at_once(setup.path(), |_, store| {
        store
            .request_subnet(
                Uuid::new_v4(),
                net("10.0.0.0/24"),
                TunnelKind::Vxlan,
                Uuid::nil(),
            )
            .expect("request")
    });
    let ids: HashSet<_> = answers.iter().map(|a| a.subnet.tunnel_id).collect();
    assert_eq!(ids.len(), CALLERS, "distinct tunnel ids");
    let mut per_node: HashMap<Uuid, usize> = HashMap::new();
    for a in &answers {
        *per_node.entry(a.cnci.network_node).or_default() += 1;
    }
    // Placement saw every earlier decision: fewest-first spreads them exactly.
    for node in nodes {
        assert_eq!(per_node[&node], CALLERS / 3, "{per_node:?}");
    }
}

#[test]
fn many_controllers_creating_the_store_at_once_all_open_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(ciao_controller::STORE_FILE);
    let barrier = Arc::new(Barrier::new(CALLERS));
    let threads: Vec<_> = (0..CALLERS)
        .map(|_| {
            let (barrier, path) = (barrier.clone(), path.clone());
            thread::spawn(move || {
                barrier.wait();
                let store = SqliteStore::open(&path).expect("open a file being created");
                store.schema_version().expect("version")
            })
        })
        .collect();
    for t in threads {
        let version = t.join().expect("opener thread");
        assert_eq!(version, ciao_controller::sqlite::schema::SCHEMA_VERSION);
    }
}
