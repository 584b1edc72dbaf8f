//! Reading rows into the model's values. Every column is stored as its text form; a value that
//! does not parse back is reported as a corrupt store rather than guessed at.

use std::net::Ipv4Addr;
use std::str::FromStr;

use ciao_types::TunnelKind;
use ipnet::Ipv4Net;
use rusqlite::types::Type;
use rusqlite::{params, Connection, OptionalExtension, Row};
use uuid::Uuid;

use crate::model::{
    Cnci, CnciState, ComputeNode, NetworkNode, PublicIpAssignment, Tenant, TenantState,
    TenantSubnet,
};
use crate::pool::PublicPool;
use crate::store::Result;

/// Column `idx` parsed from its text form.
pub fn text<T>(row: &Row<'_>, idx: usize) -> rusqlite::Result<T>
where
    T: FromStr,
    T::Err: ToString,
{
    let raw: String = row.get(idx)?;
    raw.parse().map_err(|e: T::Err| {
        let why = format!("column {idx}: {raw:?}: {}", e.to_string());
        rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, why.into())
    })
}

pub const NETWORK_NODE_COLUMNS: &str = "uuid, underlay, external_device, capacity, connected";

pub fn network_node(row: &Row<'_>) -> rusqlite::Result<NetworkNode> {
    Ok(NetworkNode {
        uuid: text(row, 0)?,
        underlay: text(row, 1)?,
        external_device: row.get(2)?,
        capacity: row.get(3)?,
        connected: row.get(4)?,
    })
}

pub fn compute_node(row: &Row<'_>) -> rusqlite::Result<ComputeNode> {
    Ok(ComputeNode {
        uuid: text(row, 0)?,
        underlay: text(row, 1)?,
        connected: row.get(2)?,
    })
}

pub fn tenant(row: &Row<'_>) -> rusqlite::Result<Tenant> {
    Ok(Tenant {
        uuid: text(row, 0)?,
        state: text::<TenantState>(row, 1)?,
    })
}

pub const CNCI_COLUMNS: &str = "uuid, tenant, network_node, underlay, state";

pub fn cnci(row: &Row<'_>) -> rusqlite::Result<Cnci> {
    Ok(Cnci {
        uuid: text(row, 0)?,
        tenant: text(row, 1)?,
        network_node: text(row, 2)?,
        underlay: text(row, 3)?,
        state: text::<CnciState>(row, 4)?,
    })
}

pub const SUBNET_COLUMNS: &str = "tenant, cidr, tunnel_kind, tunnel_id";

pub fn subnet(row: &Row<'_>) -> rusqlite::Result<TenantSubnet> {
    Ok(TenantSubnet {
        tenant: text(row, 0)?,
        cidr: text(row, 1)?,
        tunnel_kind: text::<TunnelKind>(row, 2)?,
        tunnel_id: row.get(3)?,
    })
}

pub fn public_ip(row: &Row<'_>) -> rusqlite::Result<PublicIpAssignment> {
    Ok(PublicIpAssignment {
        tenant: text(row, 0)?,
        private: text(row, 1)?,
        public: text(row, 2)?,
    })
}

/// Every row of `sql` (without parameters) mapped by `map`.
pub fn all<T>(
    conn: &Connection,
    sql: &str,
    map: fn(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map([], map)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn find_tenant(conn: &Connection, tenant: Uuid) -> Result<Option<Tenant>> {
    let mut stmt = conn.prepare_cached("SELECT uuid, state FROM tenants WHERE uuid = ?1")?;
    Ok(stmt
        .query_row([tenant.to_string()], self::tenant)
        .optional()?)
}

/// The tenant's CNCI that is not gone (at most one: a unique index keeps it so).
pub fn live_cnci(conn: &Connection, tenant: Uuid) -> Result<Option<Cnci>> {
    let sql = format!("SELECT {CNCI_COLUMNS} FROM cncis WHERE tenant = ?1 AND state != 'gone'");
    let mut stmt = conn.prepare_cached(&sql)?;
    Ok(stmt.query_row([tenant.to_string()], cnci).optional()?)
}

pub fn find_cnci(conn: &Connection, uuid: Uuid) -> Result<Option<Cnci>> {
    let sql = format!("SELECT {CNCI_COLUMNS} FROM cncis WHERE uuid = ?1");
    let mut stmt = conn.prepare_cached(&sql)?;
    Ok(stmt.query_row([uuid.to_string()], cnci).optional()?)
}

pub fn tenant_subnets(conn: &Connection, tenant: Uuid) -> Result<Vec<TenantSubnet>> {
    let sql = format!("SELECT {SUBNET_COLUMNS} FROM subnets WHERE tenant = ?1 ORDER BY cidr");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map([tenant.to_string()], subnet)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn find_subnet(conn: &Connection, tenant: Uuid, cidr: Ipv4Net) -> Result<Option<TenantSubnet>> {
    let sql = format!("SELECT {SUBNET_COLUMNS} FROM subnets WHERE tenant = ?1 AND cidr = ?2");
    let mut stmt = conn.prepare_cached(&sql)?;
    Ok(stmt
        .query_row(params![tenant.to_string(), cidr.to_string()], subnet)
        .optional()?)
}

pub fn pools(conn: &Connection) -> Result<Vec<PublicPool>> {
    let mut stmt = conn.prepare_cached("SELECT pool FROM public_pools ORDER BY position")?;
    let rows = stmt.query_map([], |row| text::<PublicPool>(row, 0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn public_ip_of(conn: &Connection, public: Ipv4Addr) -> Result<Option<PublicIpAssignment>> {
    let mut stmt =
        conn.prepare_cached("SELECT tenant, private, public FROM public_ips WHERE public = ?1")?;
    Ok(stmt.query_row([public.to_string()], public_ip).optional()?)
}
