//! The store file itself: state survives reopening, an older schema is migrated, and a file
//! that is newer, corrupt or someone else's is refused clearly and left as it was.

mod common;

use ciao_controller::sqlite::schema::{MIGRATIONS, SCHEMA_VERSION};
use ciao_controller::{CnciState, SqliteStore, Store, StoreError, STORE_FILE};
use ciao_types::TunnelKind;
use common::{ip, net, network_node, store};
use rusqlite::Connection;
use uuid::Uuid;

const CN: Uuid = Uuid::from_u128(0xc1);

#[test]
fn reopening_gives_the_same_state() {
    let (dir, store) = store();
    network_node(&store, 1, 10);
    store
        .set_public_pools(&["203.0.113.0/29".parse().expect("pool")])
        .expect("pools");
    let tenant = Uuid::new_v4();
    let a = store
        .request_subnet(tenant, net("10.0.0.0/24"), TunnelKind::Gretap, CN)
        .expect("subnet");
    store
        .set_cnci_state(a.cnci.uuid, CnciState::Ready, None)
        .expect("ready");
    let public = store.assign_public_ip(tenant, ip("10.0.0.2")).expect("ip");
    let before = (
        store.network_nodes().expect("nodes"),
        store.cncis().expect("cncis"),
        store.subnets(tenant).expect("subnets"),
        store.public_ips().expect("ips"),
        store.public_pools().expect("pools"),
    );
    drop(store);

    let store = SqliteStore::open_in(dir.path()).expect("reopen");
    let after = (
        store.network_nodes().expect("nodes"),
        store.cncis().expect("cncis"),
        store.subnets(tenant).expect("subnets"),
        store.public_ips().expect("ips"),
        store.public_pools().expect("pools"),
    );
    assert_eq!(before, after);
    // Decisions taken before are returned, not taken again.
    let again = store
        .request_subnet(tenant, net("10.0.0.0/24"), TunnelKind::Vxlan, CN)
        .expect("again");
    assert_eq!(again.subnet, a.subnet);
    assert_eq!(again.cnci.uuid, a.cnci.uuid);
    assert_eq!(
        store.assign_public_ip(tenant, ip("10.0.0.2")).expect("ip"),
        public
    );
    // The counter survived too: the next subnet gets a new id.
    let next = store
        .request_subnet(tenant, net("10.0.1.0/24"), TunnelKind::Vxlan, CN)
        .expect("next");
    assert_eq!(next.subnet.tunnel_id, a.subnet.tunnel_id + 1);
}

#[test]
fn the_file_is_in_wal_mode_at_the_current_version() {
    let (dir, store) = store();
    assert_eq!(store.path(), dir.path().join(STORE_FILE));
    assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
    let conn = Connection::open(store.path()).expect("second connection");
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("mode");
    assert_eq!(mode, "wal");
}

#[test]
fn a_version_1_file_is_migrated_and_keeps_its_decisions() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(STORE_FILE);
    let (tenant, cnci, nn) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    {
        // A store as version 1 of the controller wrote it.
        let conn = Connection::open(&path).expect("create v1");
        conn.execute_batch("CREATE TABLE schema_version (version INTEGER NOT NULL);")
            .expect("version table");
        conn.execute("INSERT INTO schema_version VALUES (1)", [])
            .expect("v1");
        conn.execute_batch(MIGRATIONS[0]).expect("v1 schema");
        conn.execute(
            "INSERT INTO network_nodes VALUES (?1, '192.0.2.1', 'eth1', 10, 1)",
            [nn.to_string()],
        )
        .expect("nn");
        conn.execute(
            "INSERT INTO tenants VALUES (?1, 'active')",
            [tenant.to_string()],
        )
        .expect("tenant");
        conn.execute(
            "INSERT INTO cncis VALUES (?1, ?2, ?3, '192.0.2.1', 'ready')",
            [cnci.to_string(), tenant.to_string(), nn.to_string()],
        )
        .expect("cnci");
        conn.execute(
            "INSERT INTO subnets VALUES (?1, '10.0.0.0/24', 'vxlan', 7)",
            [tenant.to_string()],
        )
        .expect("subnet");
        conn.execute("INSERT INTO counters VALUES ('last_tunnel_id', 7)", [])
            .expect("counter");
    }
    let store = SqliteStore::open(&path).expect("migrate");
    assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
    let a = store
        .request_subnet(tenant, net("10.0.0.0/24"), TunnelKind::Vxlan, CN)
        .expect("existing subnet");
    assert_eq!((a.cnci.uuid, a.subnet.tunnel_id), (cnci, 7));
    // Version 2's tables work on the migrated file.
    assert_eq!(
        store
            .subnet_nodes(tenant, net("10.0.0.0/24"))
            .expect("hosts"),
        [CN]
    );
    store
        .set_public_pools(&["203.0.113.0/30".parse().expect("pool")])
        .expect("pools");
    let public = store.assign_public_ip(tenant, ip("10.0.0.9")).expect("ip");
    assert_eq!(public.public, ip("203.0.113.1"));
    drop(store);
    SqliteStore::open(&path).expect("a migrated file opens as current");
}

#[test]
fn a_newer_file_is_refused_and_left_untouched() {
    let (dir, store) = store();
    drop(store);
    let path = dir.path().join(STORE_FILE);
    let newer = SCHEMA_VERSION + 7;
    let conn = Connection::open(&path).expect("raw");
    conn.execute("UPDATE schema_version SET version = ?1", [newer])
        .expect("bump");
    let err = match SqliteStore::open(&path) {
        Err(err) => err,
        Ok(_) => panic!("a newer schema must be refused"),
    };
    assert!(matches!(err, StoreError::SchemaTooNew { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "store {}: schema version {newer} is newer than this controller's {SCHEMA_VERSION}; use a newer controller",
            path.display()
        )
    );
    let kept: u32 = conn
        .query_row("SELECT version FROM schema_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(kept, newer);
}

#[test]
fn a_corrupt_file_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(STORE_FILE);
    let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&path, &garbage).expect("write garbage");
    let err = match SqliteStore::open(&path) {
        Err(err) => err,
        Ok(_) => panic!("garbage must be refused"),
    };
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "store {} is not a ciao controller store:",
            path.display()
        )),
        "{text}"
    );
    assert_eq!(std::fs::read(&path).expect("read back"), garbage);
}

#[test]
fn another_programs_database_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(STORE_FILE);
    Connection::open(&path)
        .and_then(|c| c.execute_batch("CREATE TABLE photos (id INTEGER);"))
        .expect("foreign db");
    let err = match SqliteStore::open(&path) {
        Err(err) => err,
        Ok(_) => panic!("a foreign database must be refused"),
    };
    assert!(
        err.to_string()
            .contains("it has tables but no schema_version"),
        "{err}"
    );
    let conn = Connection::open(&path).expect("raw");
    let tables: i64 = conn
        .query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| r.get(0))
        .expect("count");
    assert_eq!(tables, 1, "nothing added to it");
}
