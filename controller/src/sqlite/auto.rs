//! Automatic subnets: the steps of [`crate::Store::auto_subnet`] inside its write transaction.

use std::collections::HashSet;

use ciao_types::TunnelKind;
use ipnet::Ipv4Net;
use rusqlite::{params, Connection};
use uuid::Uuid;

use super::{decide, rows};
use crate::auto_subnet::{slice_range, TenantSubnets};
use crate::model::AutoSlice;
use crate::store::{Result, StoreError};

/// The node's slice: the one it has, else the first free slice of the tenant's first automatic
/// subnet with room, else slice 0 of the tenant's next automatic subnet.
pub fn slice_for(
    conn: &Connection,
    tenant: Uuid,
    node: Uuid,
    plan: &TenantSubnets,
    kind: TunnelKind,
) -> Result<AutoSlice> {
    if let Some(found) = slices(conn, tenant)?
        .into_iter()
        .find(|s| s.compute_node == node)
    {
        return Ok(found);
    }
    decide::active_tenant(conn, tenant)?;
    let taken: Vec<(Ipv4Net, Ipv4Net)> = slices(conn, tenant)?
        .into_iter()
        .map(|s| (s.subnet.cidr, s.slice))
        .collect();
    let mut autos: Vec<Ipv4Net> = taken.iter().map(|t| t.0).collect();
    autos.sort();
    autos.dedup();
    let used: HashSet<Ipv4Net> = taken.iter().map(|t| t.1).collect();
    let free = autos.iter().find_map(|&cidr| {
        let slice = plan.slices(cidr).find(|s| !used.contains(s))?;
        Some((cidr, slice))
    });
    let (cidr, slice) = match free {
        Some(found) => found,
        None => {
            let cidr = next_block(conn, tenant, plan)?;
            (cidr, plan.slices(cidr).next().unwrap_or(cidr))
        }
    };
    let subnet = decide::existing_or_new_subnet(conn, tenant, cidr, kind)?;
    conn.prepare_cached(
        "INSERT INTO auto_slices (tenant, compute_node, cidr, slice) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![
        tenant.to_string(),
        node.to_string(),
        cidr.to_string(),
        slice.to_string()
    ])?;
    Ok(AutoSlice {
        compute_node: node,
        subnet,
        slice,
        range: slice_range(cidr, slice),
    })
}

/// The first block of the range that overlaps none of the tenant's subnets.
fn next_block(conn: &Connection, tenant: Uuid, plan: &TenantSubnets) -> Result<Ipv4Net> {
    let have: Vec<Ipv4Net> = rows::tenant_subnets(conn, tenant)?
        .into_iter()
        .map(|s| s.cidr)
        .collect();
    plan.blocks()
        .find(|b| !have.iter().any(|h| h.contains(b) || b.contains(h)))
        .ok_or(StoreError::AutoRangeExhausted {
            tenant,
            range: plan.range,
            prefix: plan.prefix,
        })
}

/// Every slice of the tenant's automatic subnets, by subnet then slice.
pub fn slices(conn: &Connection, tenant: Uuid) -> Result<Vec<AutoSlice>> {
    let mut stmt =
        conn.prepare_cached("SELECT compute_node, cidr, slice FROM auto_slices WHERE tenant = ?1")?;
    let found = stmt
        .query_map([tenant.to_string()], |row| {
            Ok((
                rows::text::<Uuid>(row, 0)?,
                rows::text::<Ipv4Net>(row, 1)?,
                rows::text::<Ipv4Net>(row, 2)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut out = Vec::with_capacity(found.len());
    for (node, cidr, slice) in found {
        let subnet = rows::find_subnet(conn, tenant, cidr)?.ok_or_else(|| {
            StoreError::Corrupt(format!("auto slice {slice} of a missing subnet {cidr}"))
        })?;
        out.push(AutoSlice {
            compute_node: node,
            subnet,
            slice,
            range: slice_range(cidr, slice),
        });
    }
    out.sort_by_key(|s| (s.subnet.cidr, s.slice));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SqliteStore, Store};

    fn plan(range: &str, prefix: u8, slice: u8) -> TenantSubnets {
        TenantSubnets::new(range.parse().expect("range"), prefix, slice).expect("plan")
    }

    fn open() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open_in(dir.path()).expect("open");
        (dir, store)
    }

    const VX: TunnelKind = TunnelKind::Vxlan;

    #[test]
    fn a_node_asking_again_gets_the_same_slice_and_two_nodes_disjoint_ones() {
        let (_dir, store) = open();
        let p = plan("10.40.0.0/16", 24, 26);
        let (t, cn1, cn2) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let a = store.auto_subnet(t, cn1, &p, VX).expect("first");
        assert_eq!(store.auto_subnet(t, cn1, &p, VX).expect("again"), a);
        let b = store.auto_subnet(t, cn2, &p, VX).expect("second node");
        assert_eq!(a.subnet, b.subnet, "same subnet, same tunnel id");
        assert_eq!(a.subnet.cidr.to_string(), "10.40.0.0/24");
        assert_eq!(
            (a.slice.to_string(), b.slice.to_string()),
            ("10.40.0.0/26".into(), "10.40.0.64/26".into())
        );
        assert_eq!(a.range.0.to_string(), "10.40.0.2", "not the gateway");
        assert_eq!(
            store.subnets(t).expect("subnets"),
            std::slice::from_ref(&a.subnet)
        );
        assert_eq!(store.auto_slices(t).expect("slices"), [a, b]);
    }

    #[test]
    fn a_full_subnet_opens_the_next_skipping_the_tenants_own_and_the_range_runs_out() {
        let (_dir, store) = open();
        let p = plan("10.40.0.0/23", 24, 25);
        let (t, other) = (Uuid::new_v4(), Uuid::new_v4());
        // The tenant chose 10.40.1.0/24 itself: automatic subnets skip it.
        let own = "10.40.1.0/24".parse().expect("cidr");
        store
            .write(|tx| {
                decide::active_tenant(tx, t)?;
                decide::existing_or_new_subnet(tx, t, own, VX)
            })
            .expect("own subnet");
        let nodes: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
        let a = store.auto_subnet(t, nodes[0], &p, VX).expect("slice 0");
        let b = store.auto_subnet(t, nodes[1], &p, VX).expect("slice 1");
        assert_eq!(a.subnet.cidr, b.subnet.cidr);
        assert_eq!(a.subnet.cidr.to_string(), "10.40.0.0/24");
        let err = store
            .auto_subnet(t, nodes[2], &p, VX)
            .expect_err("exhausted");
        assert!(
            matches!(err, StoreError::AutoRangeExhausted { .. }),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("tenant_subnets.range 10.40.0.0/23"),
            "{err}"
        );
        assert_eq!(
            store.auto_slices(t).expect("slices").len(),
            2,
            "nothing half-made"
        );
        // Another tenant has the whole range to itself.
        let c = store
            .auto_subnet(other, nodes[2], &p, VX)
            .expect("other tenant");
        assert_eq!(c.subnet.cidr.to_string(), "10.40.0.0/24");
        assert_ne!(c.subnet.tunnel_id, a.subnet.tunnel_id);
    }

    #[test]
    fn when_the_first_subnet_is_full_the_next_node_gets_the_next_subnet() {
        let (_dir, store) = open();
        let p = plan("10.40.0.0/22", 24, 25);
        let t = Uuid::new_v4();
        let got: Vec<AutoSlice> = (0..3)
            .map(|_| store.auto_subnet(t, Uuid::new_v4(), &p, VX).expect("slice"))
            .collect();
        let cidrs: Vec<String> = got.iter().map(|s| s.subnet.cidr.to_string()).collect();
        assert_eq!(cidrs, ["10.40.0.0/24", "10.40.0.0/24", "10.40.1.0/24"]);
        assert_ne!(got[0].subnet.tunnel_id, got[2].subnet.tunnel_id);
        assert_eq!(store.subnets(t).expect("subnets").len(), 2);
    }
}
