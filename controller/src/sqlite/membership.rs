//! Security-group memberships as the compute nodes report them (EVENT PortGroups): one row per
//! (node, tenant, workload address, group name). A node's report replaces its rows for the
//! tenant, so a lost or repeated report is healed by the next one.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use rusqlite::{params, Connection};
use uuid::Uuid;

use super::rows;
use crate::security::outcome::NodeGroupsOutcome;
use crate::store::{PortMembership, Result};

const SG_GENERATION: &str = "sg_generation";

/// Replaces `node`'s rows for `tenant`; true if they changed. An address is in one place of a
/// tenant at a time, so other nodes' rows for the addresses `node` reports go: a node that
/// died with a workload (and never reports again) does not keep the address in its groups
/// once the address is in use elsewhere.
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
    let mut elsewhere = 0;
    let mut take = conn.prepare_cached(
        "DELETE FROM port_groups WHERE tenant = ?1 AND ip = ?2 AND compute_node != ?3",
    )?;
    for (ip, _) in ports {
        elsewhere += take.execute(params![
            tenant.to_string(),
            ip.to_string(),
            node.to_string()
        ])?;
    }
    let mut stmt = conn.prepare_cached(
        "SELECT ip, group_name FROM port_groups WHERE tenant = ?1 AND compute_node = ?2",
    )?;
    let had = stmt
        .query_map(params![tenant.to_string(), node.to_string()], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })?
        .collect::<rusqlite::Result<BTreeSet<_>>>()?;
    if had == wanted {
        return Ok(elsewhere > 0);
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

/// Notes the generation sent to `node` for `tenant` (its last answer stays until the next).
pub fn record_sent(conn: &Connection, node: Uuid, tenant: Uuid, generation: u64) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO sg_outcomes (tenant, compute_node, sent) VALUES (?1, ?2, ?3) \
         ON CONFLICT (tenant, compute_node) DO UPDATE SET sent = excluded.sent",
    )?
    // Generations as text: SQLite's integers are signed.
    .execute(params![
        tenant.to_string(),
        node.to_string(),
        generation.to_string()
    ])?;
    Ok(())
}

/// Keeps `node`'s answer for `tenant`; a node answering what this store never noted sending
/// (a store restored from backup) counts as having been sent it.
pub fn record_answer(
    conn: &Connection,
    node: Uuid,
    tenant: Uuid,
    generation: u64,
    refused: Option<&str>,
    at: u64,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO sg_outcomes (tenant, compute_node, sent, answered, refused, at) \
         VALUES (?1, ?2, ?3, ?3, ?4, ?5) ON CONFLICT (tenant, compute_node) DO UPDATE SET \
         answered = excluded.answered, refused = excluded.refused, at = excluded.at",
    )?
    .execute(params![
        tenant.to_string(),
        node.to_string(),
        generation.to_string(),
        refused,
        i64::try_from(at).unwrap_or(i64::MAX),
    ])?;
    Ok(())
}

pub fn outcomes(conn: &Connection, tenant: Uuid) -> Result<Vec<NodeGroupsOutcome>> {
    let mut stmt = conn.prepare_cached(
        "SELECT compute_node, tenant, sent, answered, refused, at FROM sg_outcomes \
         WHERE tenant = ?1 ORDER BY compute_node",
    )?;
    let found = stmt.query_map([tenant.to_string()], |row| {
        let answered = match row.get::<_, Option<String>>(3)? {
            Some(_) => Some(rows::text(row, 3)?),
            None => None,
        };
        let at: Option<i64> = row.get(5)?;
        Ok(NodeGroupsOutcome {
            node: rows::text(row, 0)?,
            tenant: rows::text(row, 1)?,
            sent: rows::text(row, 2)?,
            answered,
            refused: row.get(4)?,
            at: at.and_then(|t| u64::try_from(t).ok()),
        })
    })?;
    Ok(found.collect::<rusqlite::Result<_>>()?)
}
