//! Every store operation on a real SQLite file: what it decides, that asking again gives the
//! same answer, and that a refused operation leaves nothing behind.

mod common;

use std::collections::{HashMap, HashSet};

use ciao_controller::{CnciState, PublicPool, Store, StoreError, TenantState};
use ciao_types::TunnelKind;
use common::{ip, net, network_node, rows, store};
use uuid::Uuid;

const CN1: Uuid = Uuid::from_u128(0xc1);
const CN2: Uuid = Uuid::from_u128(0xc2);

fn tenant(n: u128) -> Uuid {
    Uuid::from_u128(0x7e00_0000 + n)
}

#[test]
fn nodes_are_learnt_updated_and_disconnected() {
    let (_dir, store) = store();
    let nn = network_node(&store, 1, 10);
    let cn = store
        .compute_node_connected(CN1, ip("192.0.2.101"))
        .expect("cn");
    assert!(cn.connected);
    // The same node reconnecting with a new address and capacity updates its row.
    let again = store
        .network_node_connected(&ciao_controller::NetworkNodeReport {
            uuid: nn,
            underlay: ip("192.0.2.50"),
            external_device: "eth9".into(),
            capacity: 3,
        })
        .expect("reconnect");
    assert_eq!(store.network_nodes().expect("list"), [again]);
    store.node_disconnected(nn).expect("nn down");
    store.node_disconnected(CN1).expect("cn down");
    store
        .node_disconnected(Uuid::from_u128(0xdead))
        .expect("unknown node is ignored");
    let nodes = store.network_nodes().expect("list");
    assert_eq!(nodes.len(), 1);
    assert!(!nodes[0].connected);
    assert_eq!(nodes[0].underlay, ip("192.0.2.50"));
    assert_eq!(nodes[0].external_device, "eth9");
    assert_eq!(nodes[0].capacity, 3);
    assert!(!store.compute_nodes().expect("list")[0].connected);
}

#[test]
fn placement_picks_the_connected_node_with_fewest_cncis_and_room() {
    let (_dir, store) = store();
    let nn1 = network_node(&store, 1, 3);
    let nn2 = network_node(&store, 2, 3);
    let mut per_node: HashMap<Uuid, usize> = HashMap::new();
    for t in 0..4 {
        let cnci = store.ensure_cnci(tenant(t)).expect("placed");
        assert_eq!(cnci.state, CnciState::Requested);
        assert_eq!(cnci.tenant, tenant(t));
        *per_node.entry(cnci.network_node).or_default() += 1;
    }
    assert_eq!(per_node[&nn1], 2);
    assert_eq!(per_node[&nn2], 2);
    // A disconnected node takes no new CNCI; a full one neither.
    store.node_disconnected(nn1).expect("nn1 down");
    let cnci = store.ensure_cnci(tenant(4)).expect("placed on nn2");
    assert_eq!(cnci.network_node, nn2);
    assert_eq!(cnci.underlay, ip("192.0.2.2"));
    let err = store.ensure_cnci(tenant(5)).expect_err("nn2 is full");
    assert!(matches!(err, StoreError::NoNetworkNode), "{err}");
    assert_eq!(
        store.tenant(tenant(5)).expect("read"),
        None,
        "nothing half-made"
    );
    // A node that comes back is used again.
    network_node(&store, 1, 3);
    assert_eq!(
        store.ensure_cnci(tenant(5)).expect("placed").network_node,
        nn1
    );
}

#[test]
fn a_tenant_has_one_cnci_however_often_it_is_asked() {
    let (_dir, store) = store();
    network_node(&store, 1, 10);
    network_node(&store, 2, 10);
    let first = store.ensure_cnci(tenant(1)).expect("placed");
    for _ in 0..5 {
        assert_eq!(store.ensure_cnci(tenant(1)).expect("again"), first);
        let assignment = store
            .request_subnet(tenant(1), net("10.0.0.0/24"), TunnelKind::Vxlan, CN1)
            .expect("subnet");
        assert_eq!(assignment.cnci, first);
    }
    assert_eq!(rows(&store, "cncis"), 1);
}

#[test]
fn one_cnci_is_found_by_uuid_by_tenant_and_by_network_node() {
    let (_dir, store) = store();
    let nn1 = network_node(&store, 1, 10);
    let first = store.ensure_cnci(tenant(1)).expect("placed");
    let nn2 = network_node(&store, 2, 10);
    let second = store.ensure_cnci(tenant(2)).expect("placed");
    assert_eq!(second.network_node, nn2, "the emptier node");
    assert_eq!(
        store.cnci(first.uuid).expect("by uuid"),
        Some(first.clone())
    );
    assert_eq!(store.cnci(Uuid::from_u128(9)).expect("unknown"), None);
    assert_eq!(
        store.cnci_of(tenant(2)).expect("live"),
        Some(second.clone())
    );
    assert_eq!(
        store.cncis_on(nn1).expect("on nn1"),
        std::slice::from_ref(&first)
    );
    assert_eq!(store.cncis_on(nn2).expect("on nn2"), [second]);
    // A gone CNCI is still found by its UUID and its node, but is no tenant's live one.
    store
        .set_cnci_state(first.uuid, CnciState::Gone, None)
        .expect("gone");
    assert_eq!(store.cnci_of(tenant(1)).expect("none live"), None);
    let gone = store.cnci(first.uuid).expect("by uuid").expect("kept");
    assert_eq!(gone.state, CnciState::Gone);
    assert_eq!(store.cncis_on(nn1).expect("on nn1"), [gone]);
}

#[test]
fn no_network_node_refuses_a_new_tenant_and_leaves_nothing() {
    let (_dir, store) = store();
    let err = store
        .request_subnet(tenant(1), net("10.0.0.0/24"), TunnelKind::Vxlan, CN1)
        .expect_err("no network node");
    assert_eq!(
        err.to_string(),
        "no connected network node with room for another CNCI"
    );
    for table in ["tenants", "cncis", "subnets", "subnet_nodes", "counters"] {
        assert_eq!(rows(&store, table), 0, "{table}");
    }
}

#[test]
fn tunnel_ids_are_unique_stable_and_in_range() {
    let (_dir, store) = store();
    network_node(&store, 1, 100);
    let mut seen = HashSet::new();
    // Two tenants with identical subnets: distinct ids (they share VNI space on a CN).
    for t in 0..2 {
        for (cidr, kind) in [
            ("10.0.0.0/24", TunnelKind::Vxlan),
            ("10.0.1.0/24", TunnelKind::Gretap),
            ("10.1.0.0/16", TunnelKind::Geneve),
        ] {
            let a = store
                .request_subnet(tenant(t), net(cidr), kind, CN1)
                .expect("subnet");
            assert!(seen.insert(a.subnet.tunnel_id), "id reused");
            assert!((1..=kind.max_id()).contains(&a.subnet.tunnel_id));
            assert_eq!(a.subnet.tunnel_kind, kind);
            // Asked again, from another node and with another default kind: same decision.
            let again = store
                .request_subnet(tenant(t), net(cidr), TunnelKind::Vxlan, CN2)
                .expect("again");
            assert_eq!(again.subnet, a.subnet);
        }
    }
    assert_eq!(seen.len(), 6);
    let subnets = store.subnets(tenant(1)).expect("list");
    assert_eq!(subnets.len(), 3);
    assert_eq!(
        store
            .subnet_nodes(tenant(1), net("10.0.0.0/24"))
            .expect("hosts"),
        [CN1, CN2]
    );
}

#[test]
fn an_overlapping_subnet_is_refused_naming_the_other() {
    let (_dir, store) = store();
    network_node(&store, 1, 10);
    store
        .request_subnet(tenant(1), net("10.0.0.0/16"), TunnelKind::Vxlan, CN1)
        .expect("first subnet");
    let before = (rows(&store, "subnets"), rows(&store, "counters"));
    for overlapping in ["10.0.4.0/24", "10.0.0.0/8"] {
        let err = store
            .request_subnet(tenant(1), net(overlapping), TunnelKind::Vxlan, CN2)
            .expect_err(overlapping);
        assert_eq!(
            err.to_string(),
            format!("subnet {overlapping} overlaps the tenant's subnet 10.0.0.0/16")
        );
    }
    let err = store
        .request_subnet(tenant(1), net("10.2.0.1/24"), TunnelKind::Vxlan, CN2)
        .expect_err("host bits");
    assert!(
        err.to_string().contains("its network is 10.2.0.0/24"),
        "{err}"
    );
    assert_eq!((rows(&store, "subnets"), rows(&store, "counters")), before);
    assert_eq!(
        store
            .subnet_nodes(tenant(1), net("10.0.0.0/16"))
            .expect("hosts"),
        [CN1],
        "a refused request records no host"
    );
    // Another tenant may use the same block.
    store
        .request_subnet(tenant(2), net("10.0.4.0/24"), TunnelKind::Vxlan, CN1)
        .expect("other tenant");
}

#[test]
fn cnci_states_move_forward_only() {
    let (_dir, store) = store();
    network_node(&store, 1, 10);
    let cnci = store.ensure_cnci(tenant(1)).expect("placed");
    let starting = store
        .set_cnci_state(cnci.uuid, CnciState::Starting, None)
        .expect("starting");
    assert_eq!(starting.underlay, ip("192.0.2.1"));
    let ready = store
        .set_cnci_state(cnci.uuid, CnciState::Ready, Some(ip("192.0.2.77")))
        .expect("ready");
    assert_eq!(ready.underlay, ip("192.0.2.77"));
    assert_eq!(store.ensure_cnci(tenant(1)).expect("same"), ready);
    store
        .set_cnci_state(cnci.uuid, CnciState::Ready, None)
        .expect("idempotent");
    let err = store
        .set_cnci_state(cnci.uuid, CnciState::Requested, None)
        .expect_err("backwards");
    assert!(
        err.to_string()
            .contains("cannot go from ready to requested"),
        "{err}"
    );
    let err = store
        .set_cnci_state(cnci.uuid, CnciState::Retiring, None)
        .expect_err("only deletion retires");
    assert!(matches!(err, StoreError::CnciTransition { .. }), "{err}");
    store
        .set_cnci_state(cnci.uuid, CnciState::Gone, None)
        .expect("lost");
    assert!(store
        .set_cnci_state(cnci.uuid, CnciState::Ready, None)
        .is_err());
    // A tenant whose CNCI is gone gets a new one on its next request; the old row stays.
    let replacement = store.ensure_cnci(tenant(1)).expect("replaced");
    assert_ne!(replacement.uuid, cnci.uuid);
    assert_eq!(store.cncis().expect("list").len(), 2);
    let err = store
        .set_cnci_state(Uuid::from_u128(9), CnciState::Ready, None)
        .expect_err("unknown");
    assert_eq!(
        err.to_string(),
        format!("unknown CNCI {}", Uuid::from_u128(9))
    );
}

#[test]
fn a_deleted_tenant_retires_its_cnci_once_no_workload_remains() {
    let (_dir, store) = store();
    network_node(&store, 1, 10);
    store
        .set_public_pools(&["203.0.113.0/29".parse().expect("pool")])
        .expect("pools");
    let t = tenant(1);
    let a = store
        .request_subnet(t, net("10.0.0.0/24"), TunnelKind::Vxlan, CN1)
        .expect("cn1");
    store
        .request_subnet(t, net("10.0.0.0/24"), TunnelKind::Vxlan, CN2)
        .expect("cn2");
    store
        .assign_public_ip(t, ip("10.0.0.5"))
        .expect("public ip");
    let err = store.delete_tenant(tenant(9)).expect_err("unknown");
    assert_eq!(err.to_string(), format!("unknown tenant {}", tenant(9)));

    store.delete_tenant(t).expect("delete");
    store.delete_tenant(t).expect("delete again");
    assert_eq!(
        store.tenant(t).expect("read").map(|t| t.state),
        Some(TenantState::Deleting)
    );
    let cnci = &store.cncis().expect("list")[0];
    assert_eq!(cnci.state, CnciState::Retiring);
    assert!(
        store.cncis_to_stop().expect("list").is_empty(),
        "workloads remain"
    );
    let err = store
        .request_subnet(t, net("10.0.0.0/24"), TunnelKind::Vxlan, CN1)
        .expect_err("deleting");
    assert_eq!(err.to_string(), format!("tenant {t} is being deleted"));
    assert!(matches!(
        store.assign_public_ip(t, ip("10.0.0.6")),
        Err(StoreError::TenantDeleting(_))
    ));

    store
        .subnet_left(t, net("10.0.0.0/24"), CN1)
        .expect("cn1 left");
    assert!(
        store.cncis_to_stop().expect("list").is_empty(),
        "cn2 still hosts it"
    );
    store
        .subnet_left(t, net("10.0.0.0/24"), CN2)
        .expect("cn2 left");
    store
        .subnet_left(t, net("10.0.0.0/24"), CN2)
        .expect("again");
    let to_stop = store.cncis_to_stop().expect("list");
    assert_eq!(to_stop.len(), 1);
    assert_eq!(to_stop[0].uuid, a.cnci.uuid);

    store
        .set_cnci_state(a.cnci.uuid, CnciState::Gone, None)
        .expect("stopped");
    assert_eq!(store.tenant(t).expect("read"), None, "tenant forgotten");
    for table in ["cncis", "subnets", "subnet_nodes", "public_ips", "tenants"] {
        assert_eq!(rows(&store, table), 0, "{table}");
    }
}

#[test]
fn public_ips_are_assigned_from_the_pools_and_released_exactly() {
    let (_dir, store) = store();
    network_node(&store, 1, 10);
    let (t1, t2) = (tenant(1), tenant(2));
    for t in [t1, t2] {
        store
            .request_subnet(t, net("10.0.0.0/24"), TunnelKind::Vxlan, CN1)
            .expect("subnet");
    }
    let err = store
        .assign_public_ip(t1, ip("10.0.0.2"))
        .expect_err("no pool");
    assert_eq!(err.to_string(), "no public IP pool is configured");
    let pools: Vec<PublicPool> = ["203.0.113.0/31", "198.51.100.7-198.51.100.7"]
        .iter()
        .map(|p| p.parse().expect("pool"))
        .collect();
    store.set_public_pools(&pools).expect("pools");
    assert_eq!(store.public_pools().expect("pools"), pools);

    let first = store.assign_public_ip(t1, ip("10.0.0.2")).expect("first");
    assert_eq!(first.public, ip("203.0.113.0"));
    assert_eq!(
        store.assign_public_ip(t1, ip("10.0.0.2")).expect("again"),
        first
    );
    let second = store
        .assign_public_ip(t2, ip("10.0.0.2"))
        .expect("same private, t2");
    assert_eq!(second.public, ip("203.0.113.1"));
    let third = store.assign_public_ip(t1, ip("10.0.0.3")).expect("third");
    assert_eq!(third.public, ip("198.51.100.7"));

    let err = store
        .assign_public_ip(t1, ip("10.0.0.4"))
        .expect_err("exhausted");
    assert_eq!(
        err.to_string(),
        "every public IP pool is exhausted (203.0.113.0/31, 198.51.100.7-198.51.100.7)"
    );
    let err = store
        .assign_public_ip(t1, ip("10.9.0.1"))
        .expect_err("outside");
    assert_eq!(
        err.to_string(),
        format!("address 10.9.0.1 is in none of tenant {t1}'s subnets")
    );
    let err = store
        .assign_public_ip(tenant(7), ip("10.0.0.1"))
        .expect_err("unknown");
    assert!(matches!(err, StoreError::UnknownTenant(_)), "{err}");
    assert_eq!(rows(&store, "public_ips"), 3, "refusals made nothing");

    // A tenant cannot release another's address; release takes back exactly that one.
    let err = store
        .release_public_ip(t2, first.public)
        .expect_err("not t2's");
    assert!(
        err.to_string()
            .contains(&format!("assigned to tenant {t1}")),
        "{err}"
    );
    assert_eq!(
        store.release_public_ip(t1, first.public).expect("release"),
        Some(first.clone())
    );
    assert_eq!(
        store.release_public_ip(t1, first.public).expect("retried"),
        None
    );
    let left: Vec<_> = store
        .public_ips()
        .expect("list")
        .iter()
        .map(|a| a.public)
        .collect();
    assert_eq!(left, [ip("198.51.100.7"), ip("203.0.113.1")]);
    // The freed address is handed out again.
    let reused = store.assign_public_ip(t1, ip("10.0.0.9")).expect("reuse");
    assert_eq!(reused.public, first.public);

    // Pools that would orphan an assignment, or overlap, are refused and change nothing.
    let err = store
        .set_public_pools(&["203.0.113.0/31".parse().expect("pool")])
        .expect_err("orphan");
    assert!(err.to_string().contains("public IP 198.51.100.7"), "{err}");
    let overlapping: Vec<PublicPool> = ["203.0.113.0/24", "203.0.113.9-203.0.113.10"]
        .iter()
        .map(|p| p.parse().expect("pool"))
        .collect();
    let err = store.set_public_pools(&overlapping).expect_err("overlap");
    assert!(err.to_string().contains("overlap"), "{err}");
    assert_eq!(store.public_pools().expect("pools"), pools);
}

#[test]
fn lists_show_what_was_decided() {
    let (_dir, store) = store();
    network_node(&store, 1, 10);
    store
        .compute_node_connected(CN1, ip("192.0.2.101"))
        .expect("cn");
    store
        .request_subnet(tenant(1), net("10.0.0.0/24"), TunnelKind::Vxlan, CN1)
        .expect("subnet");
    assert_eq!(store.tenants().expect("tenants").len(), 1);
    assert_eq!(store.cncis().expect("cncis").len(), 1);
    assert_eq!(store.compute_nodes().expect("cns").len(), 1);
    let err = store
        .subnet_nodes(tenant(1), net("10.9.0.0/24"))
        .expect_err("unknown subnet");
    assert!(
        err.to_string().contains("unknown subnet 10.9.0.0/24"),
        "{err}"
    );
}

#[test]
fn a_tenant_without_a_live_cnci_is_forgotten_at_once() {
    let (_dir, store) = store();
    network_node(&store, 1, 10);
    let t = tenant(1);
    let a = store
        .request_subnet(t, net("10.0.0.0/24"), TunnelKind::Vxlan, CN1)
        .expect("subnet");
    store
        .set_cnci_state(a.cnci.uuid, CnciState::Gone, None)
        .expect("lost");
    store.delete_tenant(t).expect("delete");
    assert_eq!(store.tenant(t).expect("read"), None);
    for table in ["cncis", "subnets", "subnet_nodes", "tenants"] {
        assert_eq!(rows(&store, table), 0, "{table}");
    }
    // Its tunnel id is free again, but the next subnet still gets a new one.
    let b = store
        .request_subnet(tenant(2), net("10.0.0.0/24"), TunnelKind::Vxlan, CN1)
        .expect("next tenant");
    assert_eq!(b.subnet.tunnel_id, a.subnet.tunnel_id + 1);
}
