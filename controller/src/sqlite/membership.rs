//! Security-group memberships as the compute nodes report them (EVENT PortGroups): one row per
//! (node, tenant, workload address, group name). A node's report replaces its rows for the
//! tenant, so a lost or repeated report is healed by the next one.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use rusqlite::{params, Connection};
use uuid::Uuid;

use super::rows;
use crate::store::{PortMembership, Result};

const SG_GENERATION: &str = "sg_generation";

/// Replaces `node`'s rows for `tenant`; true if they changed.
pub fn replace(
    conn: &Connection,
    node: Uuid,
    tenant: Uuid,
    ports: &[(Ipv4Addr, Vec<String>)],
) -> Result<bool> {
    let wanted: BTreeSet<(String, String)> = ports
        .iter()
        .flat_map(|(ip, groups)| groups.iter().map(move |g| (ip.to_string(), g.clone())))
        .collect();
    let mut stmt = conn.prepare_cached(
        "SELECT ip, group_name FROM port_groups WHERE tenant = ?1 AND compute_node = ?2",
    )?;
    let had = stmt
        .query_map(params![tenant.to_string(), node.to_string()], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })?
        .collect::<rusqlite::Result<BTreeSet<_>>>()?;
    if had == wanted {
        return Ok(false);
    }
    conn.prepare_cached("DELETE FROM port_groups WHERE tenant = ?1 AND compute_node = ?2")?
        .execute(params![tenant.to_string(), node.to_string()])?;
    let mut insert = conn.prepare_cached(
        "INSERT INTO port_groups (compute_node, tenant, ip, group_name) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for (ip, group) in &wanted {
        insert.execute(params![node.to_string(), tenant.to_string(), ip, group])?;
    }
    Ok(true)
}

/// Every membership of `tenant`, cluster-wide.
pub fn of_tenant(conn: &Connection, tenant: Uuid) -> Result<Vec<PortMembership>> {
    let mut stmt = conn.prepare_cached(
        "SELECT compute_node, ip, group_name FROM port_groups WHERE tenant = ?1
         ORDER BY compute_node, ip, group_name",
    )?;
    let found = stmt
        .query_map([tenant.to_string()], |row| {
            Ok(PortMembership {
                node: rows::text(row, 0)?,
                ip: rows::text(row, 1)?,
                group: row.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(found)
}

/// The next snapshot generation (persisted, so it only grows for this store).
pub fn next_generation(conn: &Connection) -> Result<u64> {
    let value: i64 = conn
        .prepare_cached(
            "INSERT INTO counters (name, value) VALUES (?1, 1)
             ON CONFLICT (name) DO UPDATE SET value = value + 1 RETURNING value",
        )?
        .query_row([SG_GENERATION], |row| row.get(0))?;
    Ok(u64::try_from(value).unwrap_or(0))
}
