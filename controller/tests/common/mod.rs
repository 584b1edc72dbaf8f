//! Fixtures shared by the store tests: a real SQLite file in a fresh temporary directory.

#![allow(dead_code)]

use std::net::Ipv4Addr;

use ciao_controller::{NetworkNodeReport, SqliteStore, Store};
use ipnet::Ipv4Net;
use tempfile::TempDir;
use uuid::Uuid;

/// A store in its own state directory (removed when the `TempDir` drops).
pub fn store() -> (TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open_in(dir.path()).expect("open store");
    (dir, store)
}

/// A connected network node numbered `n` (underlay 192.0.2.n) with room for `capacity` CNCIs.
pub fn network_node(store: &dyn Store, n: u8, capacity: u32) -> Uuid {
    let uuid = Uuid::from_u128(0x4e4e_0000 + u128::from(n));
    store
        .network_node_connected(&NetworkNodeReport {
            uuid,
            underlay: Ipv4Addr::new(192, 0, 2, n),
            external_device: format!("ext{n}"),
            capacity,
        })
        .expect("network node connects");
    uuid
}

pub fn net(text: &str) -> Ipv4Net {
    text.parse().expect(text)
}

pub fn ip(text: &str) -> Ipv4Addr {
    text.parse().expect(text)
}

/// The number of rows of `table` in the store file, read through a separate connection.
pub fn rows(store: &SqliteStore, table: &str) -> i64 {
    let conn = rusqlite::Connection::open(store.path()).expect("second connection");
    conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |row| {
        row.get(0)
    })
    .expect("count rows")
}
