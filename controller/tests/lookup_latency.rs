//! A compute node's request against a store of 10,000 tenants x 5 subnets (issue 12's scale),
//! answered right for a node that hosts the subnet already, for one new to it (a synced commit)
//! and for a new tenant (placement among 10,000 CNCIs); each kind's p50 and p99 are printed.
//! The times are not asserted: a synced commit on a busy CI disk took 30 ms at p99 while the
//! same store answers in 0.4 ms idle; the goal (p50 < 5 ms, p99 < 20 ms) is measured by
//! `controller-bench` (Benchmarks), which a loaded machine cannot make fail a test run.
//!
//! The store is filled in one transaction through a second connection (50,000 requests each
//! synced to disk would take minutes); the rows are the ones `request_subnet` writes, and the
//! store then answers for them exactly as for its own (checked below).

mod common;

use std::time::{Duration, Instant};

use ciao_controller::{SqliteStore, Store};
use ciao_types::TunnelKind;
use ipnet::Ipv4Net;
use rusqlite::{params, Connection};
use uuid::Uuid;

const TENANTS: u32 = 10_000;
const SUBNETS: u32 = 5;
const SAMPLES: usize = 2_000;
const HOST: Uuid = Uuid::from_u128(0xc1);

fn tenant(t: u32) -> Uuid {
    Uuid::from_u128(0x7e00_0000_0000 + u128::from(t))
}

fn subnet(s: u32) -> Ipv4Net {
    Ipv4Net::new(std::net::Ipv4Addr::new(10, s as u8, 0, 0), 24).expect("subnet")
}

fn fill(path: &std::path::Path, nn: Uuid) {
    let mut conn = Connection::open(path).expect("bulk connection");
    let tx = conn.transaction().expect("bulk transaction");
    for t in 0..TENANTS {
        let tenant = tenant(t).to_string();
        tx.execute(
            "INSERT INTO tenants (uuid, state) VALUES (?1, 'active')",
            [&tenant],
        )
        .expect("tenant");
        tx.execute(
            "INSERT INTO cncis VALUES (?1, ?2, ?3, '192.0.2.1', 'ready')",
            params![Uuid::new_v4().to_string(), tenant, nn.to_string()],
        )
        .expect("cnci");
        for s in 0..SUBNETS {
            let cidr = subnet(s).to_string();
            let id = t * SUBNETS + s + 1;
            tx.execute(
                "INSERT INTO subnets VALUES (?1, ?2, 'vxlan', ?3)",
                params![tenant, cidr, id],
            )
            .expect("subnet");
            tx.execute(
                "INSERT INTO subnet_nodes VALUES (?1, ?2, ?3)",
                params![tenant, cidr, HOST.to_string()],
            )
            .expect("host");
        }
    }
    tx.execute(
        "INSERT INTO counters VALUES ('last_tunnel_id', ?1)",
        [TENANTS * SUBNETS],
    )
    .expect("counter");
    tx.commit().expect("bulk commit");
}

/// Deterministic spread of samples over the store (xorshift).
fn picks() -> impl Iterator<Item = (u32, u32)> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    std::iter::repeat_with(move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        ((x % u64::from(TENANTS)) as u32, (x >> 32) as u32 % SUBNETS)
    })
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

fn report(what: &str, mut times: Vec<Duration>) {
    times.sort();
    let (p50, p99) = (percentile(&times, 50), percentile(&times, 99));
    println!(
        "{what}: {} samples, p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        times.len(),
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3
    );
}

#[test]
fn a_compute_nodes_request_with_10k_tenants_x_5_subnets() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open_in(dir.path()).expect("open");
    let nn = common::network_node(&store, 1, 2 * TENANTS);
    let started = Instant::now();
    fill(store.path(), nn);
    println!(
        "filled {TENANTS} tenants x {SUBNETS} subnets in {:?}",
        started.elapsed()
    );

    // The node that hosts the subnet asks again (restart, reconnect): a read and no write.
    let mut times = Vec::with_capacity(SAMPLES);
    for (t, s) in picks().take(SAMPLES) {
        let started = Instant::now();
        let answer = store
            .request_subnet(tenant(t), subnet(s), TunnelKind::Vxlan, HOST)
            .expect("request");
        times.push(started.elapsed());
        assert_eq!(answer.subnet.tunnel_id, t * SUBNETS + s + 1);
        assert_eq!(answer.cnci.network_node, nn);
    }
    report("known host", times);

    // A node new to the subnet: the answer also records it, one synced commit each.
    let mut times = Vec::with_capacity(SAMPLES / 4);
    for (i, (t, s)) in picks().skip(SAMPLES).take(SAMPLES / 4).enumerate() {
        let node = Uuid::from_u128(0x1000 + i as u128);
        let started = Instant::now();
        store
            .request_subnet(tenant(t), subnet(s), TunnelKind::Vxlan, node)
            .expect("request");
        times.push(started.elapsed());
    }
    report("new host (synced commit)", times);

    // A new tenant: placement among 10,000 CNCIs, a new tunnel id, one synced commit.
    let mut times = Vec::with_capacity(100);
    for t in TENANTS..TENANTS + 100 {
        let started = Instant::now();
        let answer = store
            .request_subnet(tenant(t), subnet(0), TunnelKind::Vxlan, HOST)
            .expect("request");
        times.push(started.elapsed());
        assert_eq!(
            answer.subnet.tunnel_id,
            TENANTS * SUBNETS + (t - TENANTS) + 1
        );
    }
    report("new tenant (placement + id + synced commit)", times);
}
