//! The SQLite schema and its history. A released migration is never edited: a change is a new
//! migration appended to [`MIGRATIONS`], and opening an older file applies the missing ones.

use rusqlite::{OptionalExtension, Transaction};

use crate::store::{Result, StoreError};

/// Migration `i` takes a store from version `i` to version `i + 1`.
///
/// Version 1 holds nodes, tenants, CNCIs and subnets with their tunnel ids. Version 2 adds the
/// compute nodes hosting each subnet (so a deleted tenant's CNCI knows when to stop) and the
/// public IP pools and assignments. Version 3 adds the compute nodes' slices of the tenants'
/// automatic subnets (a workload that named no subnet). Version 4 adds security groups and
/// their rules (every tenant gets its `default` group: [`after_migrations`]), port forwards,
/// the tenant's forward IP and SSH choice, the SSH port blocks and the cluster settings.
/// Version 5 adds the compute nodes' security-group memberships (each node's PortGroups).
/// Version 6 adds the tenants' ingress rules (ordered by `position`) and each tenant's default
/// ingress action (`allow` for every tenant already stored: nothing changes for them).
pub const MIGRATIONS: &[&str] = &[
    r#"
    CREATE TABLE network_nodes (
        uuid TEXT PRIMARY KEY NOT NULL,
        underlay TEXT NOT NULL,
        external_device TEXT NOT NULL,
        capacity INTEGER NOT NULL,
        connected INTEGER NOT NULL
    );
    CREATE TABLE compute_nodes (
        uuid TEXT PRIMARY KEY NOT NULL,
        underlay TEXT NOT NULL,
        connected INTEGER NOT NULL
    );
    CREATE TABLE tenants (
        uuid TEXT PRIMARY KEY NOT NULL,
        state TEXT NOT NULL
    );
    CREATE TABLE cncis (
        uuid TEXT PRIMARY KEY NOT NULL,
        tenant TEXT NOT NULL REFERENCES tenants(uuid),
        network_node TEXT NOT NULL REFERENCES network_nodes(uuid),
        underlay TEXT NOT NULL,
        state TEXT NOT NULL
    );
    CREATE UNIQUE INDEX one_live_cnci_per_tenant ON cncis(tenant) WHERE state != 'gone';
    CREATE INDEX cncis_by_network_node ON cncis(network_node, state);
    CREATE TABLE subnets (
        tenant TEXT NOT NULL REFERENCES tenants(uuid),
        cidr TEXT NOT NULL,
        tunnel_kind TEXT NOT NULL,
        tunnel_id INTEGER NOT NULL UNIQUE,
        PRIMARY KEY (tenant, cidr)
    );
    CREATE TABLE counters (
        name TEXT PRIMARY KEY NOT NULL,
        value INTEGER NOT NULL
    );
    "#,
    r#"
    CREATE TABLE subnet_nodes (
        tenant TEXT NOT NULL,
        cidr TEXT NOT NULL,
        compute_node TEXT NOT NULL,
        PRIMARY KEY (tenant, cidr, compute_node),
        FOREIGN KEY (tenant, cidr) REFERENCES subnets(tenant, cidr)
    );
    CREATE TABLE public_pools (
        position INTEGER PRIMARY KEY NOT NULL,
        pool TEXT NOT NULL
    );
    CREATE TABLE public_ips (
        public TEXT PRIMARY KEY NOT NULL,
        tenant TEXT NOT NULL REFERENCES tenants(uuid),
        private TEXT NOT NULL,
        UNIQUE (tenant, private)
    );
    "#,
    r#"
    CREATE TABLE auto_slices (
        tenant TEXT NOT NULL,
        compute_node TEXT NOT NULL,
        cidr TEXT NOT NULL,
        slice TEXT NOT NULL,
        PRIMARY KEY (tenant, compute_node),
        UNIQUE (tenant, slice),
        FOREIGN KEY (tenant, cidr) REFERENCES subnets(tenant, cidr)
    );
    "#,
    r#"
    CREATE TABLE security_groups (
        uuid TEXT PRIMARY KEY NOT NULL,
        tenant TEXT NOT NULL REFERENCES tenants(uuid),
        name TEXT NOT NULL,
        description TEXT NOT NULL,
        UNIQUE (tenant, name)
    );
    CREATE TABLE security_rules (
        uuid TEXT PRIMARY KEY NOT NULL,
        security_group TEXT NOT NULL REFERENCES security_groups(uuid),
        direction TEXT NOT NULL,
        ethertype TEXT NOT NULL,
        protocol TEXT NOT NULL,
        port_min INTEGER,
        port_max INTEGER,
        icmp_type INTEGER,
        icmp_code INTEGER,
        remote_cidr TEXT,
        remote_group TEXT REFERENCES security_groups(uuid)
    );
    CREATE INDEX security_rules_by_group ON security_rules(security_group);
    CREATE INDEX security_rules_by_remote ON security_rules(remote_group);
    ALTER TABLE tenants ADD COLUMN forward_ip TEXT;
    ALTER TABLE tenants ADD COLUMN ssh INTEGER;
    CREATE UNIQUE INDEX one_tenant_per_forward_ip ON tenants(forward_ip)
        WHERE forward_ip IS NOT NULL;
    CREATE TABLE forwards (
        uuid TEXT PRIMARY KEY NOT NULL,
        tenant TEXT NOT NULL REFERENCES tenants(uuid),
        public TEXT NOT NULL,
        protocol TEXT NOT NULL,
        public_port INTEGER NOT NULL,
        private TEXT NOT NULL,
        private_port INTEGER NOT NULL,
        UNIQUE (public, protocol, public_port)
    );
    CREATE TABLE ssh_blocks (
        tenant TEXT NOT NULL,
        cidr TEXT NOT NULL,
        base INTEGER NOT NULL,
        size INTEGER NOT NULL,
        PRIMARY KEY (tenant, cidr),
        FOREIGN KEY (tenant, cidr) REFERENCES subnets(tenant, cidr)
    );
    CREATE TABLE settings (
        name TEXT PRIMARY KEY NOT NULL,
        value TEXT NOT NULL
    );
    "#,
    r#"
    CREATE TABLE port_groups (
        compute_node TEXT NOT NULL,
        tenant TEXT NOT NULL,
        ip TEXT NOT NULL,
        group_name TEXT NOT NULL,
        PRIMARY KEY (tenant, compute_node, ip, group_name)
    );
    "#,
    r#"
    CREATE TABLE ingress_rules (
        uuid TEXT PRIMARY KEY NOT NULL,
        tenant TEXT NOT NULL REFERENCES tenants(uuid),
        position INTEGER NOT NULL,
        action TEXT NOT NULL,
        protocol TEXT NOT NULL,
        port_min INTEGER,
        port_max INTEGER,
        remote_cidr TEXT,
        description TEXT NOT NULL
    );
    CREATE INDEX ingress_rules_by_tenant ON ingress_rules(tenant, position);
    ALTER TABLE tenants ADD COLUMN ingress_default TEXT NOT NULL DEFAULT 'allow';
    "#,
    r#"
    CREATE TABLE ingress_outcomes (
        tenant TEXT PRIMARY KEY NOT NULL,
        cnci TEXT NOT NULL,
        generation TEXT NOT NULL,
        refused TEXT,
        at INTEGER NOT NULL
    );
    CREATE TABLE sg_outcomes (
        tenant TEXT NOT NULL,
        compute_node TEXT NOT NULL,
        sent TEXT NOT NULL,
        answered TEXT,
        refused TEXT,
        at INTEGER,
        PRIMARY KEY (tenant, compute_node)
    );
    "#,
];

/// The version this code writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Bring the store inside `tx` to [`SCHEMA_VERSION`]: create it if empty, migrate it if older,
/// refuse it if newer or if it is some other database. `path` is for messages.
pub fn migrate(tx: &Transaction<'_>, path: &str) -> Result<u32> {
    let found = match stored_version(tx, path)? {
        Some(version) => version,
        None => {
            tx.execute_batch("CREATE TABLE schema_version (version INTEGER NOT NULL);")?;
            tx.execute("INSERT INTO schema_version (version) VALUES (0)", [])?;
            0
        }
    };
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            path: path.to_owned(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for migration in &MIGRATIONS[found as usize..] {
        tx.execute_batch(migration)?;
    }
    after_migrations(tx, found)?;
    tx.execute("UPDATE schema_version SET version = ?1", [SCHEMA_VERSION])?;
    Ok(found)
}

/// The data steps of migrations that SQL alone cannot take: from a version below 4, every
/// tenant gets its `default` security group (its ids are made here, as for a new tenant).
fn after_migrations(tx: &Transaction<'_>, found: u32) -> Result<()> {
    if found < 4 {
        let tenants = super::rows::all(tx, "SELECT uuid FROM tenants ORDER BY uuid", |row| {
            super::rows::text::<uuid::Uuid>(row, 0)
        })?;
        for tenant in tenants {
            super::security::create_default_group(tx, tenant)?;
        }
    }
    Ok(())
}

/// The stored version, `None` for an empty database; an error for a database with tables but
/// no (or a broken) version table, which is not ours to change.
fn stored_version(tx: &Transaction<'_>, path: &str) -> Result<Option<u32>> {
    let not_ours = |why: String| StoreError::NotAStore {
        path: path.to_owned(),
        why,
    };
    let has_version_table: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version')",
        [],
        |row| row.get(0),
    )?;
    if !has_version_table {
        let tables: i64 =
            tx.query_row("SELECT COUNT(*) FROM sqlite_master", [], |row| row.get(0))?;
        return match tables {
            0 => Ok(None),
            _ => Err(not_ours("it has tables but no schema_version".into())),
        };
    }
    let rows: i64 = tx.query_row("SELECT COUNT(*) FROM schema_version", [], |row| row.get(0))?;
    if rows != 1 {
        return Err(not_ours(format!("schema_version has {rows} rows, not 1")));
    }
    let version: Option<i64> = tx
        .query_row("SELECT version FROM schema_version", [], |row| row.get(0))
        .optional()?;
    match version.map(u32::try_from) {
        Some(Ok(version)) => Ok(Some(version)),
        _ => Err(not_ours(format!("schema_version holds {version:?}"))),
    }
}
