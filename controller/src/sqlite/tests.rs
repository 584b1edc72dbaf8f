//! Tunnel id allocation at the edge of a range, with a range small enough to fill.

use ciao_types::TunnelKind;
use rusqlite::params;

use super::{decide, SqliteStore};
use crate::store::StoreError;

/// Insert a subnet row holding `id` for tenant `t`, as `existing_or_new_subnet` would.
fn hold(store: &SqliteStore, t: u128, id: u32) {
    store
        .lock()
        .execute(
            "INSERT INTO tenants (uuid, state) VALUES (?1, 'active') ON CONFLICT DO NOTHING",
            [uuid::Uuid::from_u128(t).to_string()],
        )
        .expect("tenant");
    store
        .lock()
        .execute(
            "INSERT INTO subnets VALUES (?1, ?2, 'vxlan', ?3)",
            params![
                uuid::Uuid::from_u128(t).to_string(),
                format!("10.0.{id}.0/24"),
                id
            ],
        )
        .expect("subnet");
}

fn next(store: &SqliteStore, max: u32) -> Result<u32, StoreError> {
    store.write(|tx| decide::next_tunnel_id(tx, TunnelKind::Vxlan, max))
}

fn free(store: &SqliteStore, id: u32) {
    store
        .lock()
        .execute("DELETE FROM subnets WHERE tunnel_id = ?1", [id])
        .expect("free");
}

#[test]
fn ids_climb_past_freed_ones_then_wrap_to_the_lowest_free_then_run_out() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open_in(dir.path()).expect("open");
    for expected in 1..=3 {
        let id = next(&store, 4).expect("free id");
        assert_eq!(id, expected);
        hold(&store, 1, id);
    }
    // Id 1 is freed (its tenant forgotten): the next id still climbs, so a node that has not
    // yet torn down the old tunnel cannot meet its id on a new subnet.
    free(&store, 1);
    assert_eq!(next(&store, 4).expect("climbs"), 4);
    hold(&store, 1, 4);
    // At the top of the range, the lowest free id.
    assert_eq!(next(&store, 4).expect("wraps"), 1);
    hold(&store, 1, 1);
    let err = next(&store, 4).expect_err("range full");
    assert_eq!(err.to_string(), "no free vxlan tunnel id left");
    // Nothing was consumed by the refusal: freeing one makes exactly that one available.
    free(&store, 3);
    assert_eq!(next(&store, 4).expect("the freed one"), 3);
}
