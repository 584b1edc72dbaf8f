//! The tenants' ingress rules and default action in the store: each function a step of the
//! caller's transaction. Positions stay 1..=n without gaps: an insert shifts the later rules
//! down, a delete shifts them up.

use rusqlite::{params, Connection, OptionalExtension, Row};
use uuid::Uuid;

use super::rows;
use crate::security::ingress_rule::{
    IngressAction, IngressRule, IngressRuleSpec, TenantIngressRules,
};
use crate::security::outcome::IngressOutcome;
use crate::store::{Result, StoreError};

const COLUMNS: &str =
    "uuid, tenant, position, action, protocol, port_min, port_max, remote_cidr, description";

fn rule_row(row: &Row<'_>) -> rusqlite::Result<IngressRule> {
    let min: Option<u16> = row.get(5)?;
    let max: Option<u16> = row.get(6)?;
    let remote_cidr = match row.get::<_, Option<String>>(7)? {
        Some(_) => Some(rows::text(row, 7)?),
        None => None,
    };
    Ok(IngressRule {
        uuid: rows::text(row, 0)?,
        tenant: rows::text(row, 1)?,
        position: row.get(2)?,
        spec: IngressRuleSpec {
            action: rows::text(row, 3)?,
            protocol: rows::text(row, 4)?,
            ports: min.zip(max),
            remote_cidr,
            description: row.get(8)?,
        },
    })
}

/// The tenant's rules in order and its default action.
pub fn rules(conn: &Connection, tenant: Uuid) -> Result<TenantIngressRules> {
    let default = conn
        .prepare_cached("SELECT ingress_default FROM tenants WHERE uuid = ?1")?
        .query_row([tenant.to_string()], |row| rows::text(row, 0))?;
    let sql = format!("SELECT {COLUMNS} FROM ingress_rules WHERE tenant = ?1 ORDER BY position");
    let mut stmt = conn.prepare_cached(&sql)?;
    let found = stmt.query_map([tenant.to_string()], rule_row)?;
    Ok(TenantIngressRules {
        tenant,
        default,
        rules: found.collect::<rusqlite::Result<_>>()?,
    })
}

fn count(conn: &Connection, tenant: Uuid) -> Result<u32> {
    Ok(conn
        .prepare_cached("SELECT COUNT(*) FROM ingress_rules WHERE tenant = ?1")?
        .query_row([tenant.to_string()], |row| row.get(0))?)
}

/// Insert `spec` at `position` (appended when `None`); refused past the end.
pub fn add(
    conn: &Connection,
    tenant: Uuid,
    spec: &IngressRuleSpec,
    position: Option<u32>,
) -> Result<IngressRule> {
    let n = count(conn, tenant)?;
    let position = match position {
        None => n + 1,
        Some(p) if p <= n + 1 => p,
        Some(p) => {
            return Err(StoreError::InvalidIngressRule(format!(
                "position {p} is past the end: the tenant has {n} rule(s), so 1-{}",
                n + 1
            )))
        }
    };
    conn.prepare_cached(
        "UPDATE ingress_rules SET position = position + 1 WHERE tenant = ?1 AND position >= ?2",
    )?
    .execute(params![tenant.to_string(), position])?;
    let rule = IngressRule {
        uuid: Uuid::new_v4(),
        tenant,
        position,
        spec: spec.clone(),
    };
    let sql = format!(
        "INSERT INTO ingress_rules ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
    );
    conn.prepare_cached(&sql)?.execute(params![
        rule.uuid.to_string(),
        tenant.to_string(),
        position,
        spec.action.as_str(),
        spec.protocol.as_str(),
        spec.ports.map(|p| p.0),
        spec.ports.map(|p| p.1),
        spec.remote_cidr.map(|c| c.to_string()),
        spec.description,
    ])?;
    Ok(rule)
}

/// Remove exactly one rule of the tenant; the later ones move up.
pub fn delete(conn: &Connection, tenant: Uuid, rule: Uuid) -> Result<IngressRule> {
    let sql = format!("SELECT {COLUMNS} FROM ingress_rules WHERE uuid = ?1 AND tenant = ?2");
    let gone = conn
        .prepare_cached(&sql)?
        .query_row(params![rule.to_string(), tenant.to_string()], rule_row)
        .map_err(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => StoreError::UnknownIngressRule { tenant, rule },
            other => other.into(),
        })?;
    conn.prepare_cached("DELETE FROM ingress_rules WHERE uuid = ?1")?
        .execute([rule.to_string()])?;
    conn.prepare_cached(
        "UPDATE ingress_rules SET position = position - 1 WHERE tenant = ?1 AND position > ?2",
    )?
    .execute(params![tenant.to_string(), gone.position])?;
    Ok(gone)
}

pub fn set_default(conn: &Connection, tenant: Uuid, default: IngressAction) -> Result<()> {
    conn.prepare_cached("UPDATE tenants SET ingress_default = ?2 WHERE uuid = ?1")?
        .execute(params![tenant.to_string(), default.as_str()])?;
    Ok(())
}

/// Forget a forgotten tenant's rules (its default goes with its row).
pub fn forget(conn: &Connection, tenant: Uuid) -> Result<()> {
    conn.prepare_cached("DELETE FROM ingress_rules WHERE tenant = ?1")?
        .execute([tenant.to_string()])?;
    Ok(())
}

/// Replaces the tenant's CNCI's last answer.
pub fn record_outcome(conn: &Connection, o: &IngressOutcome) -> Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO ingress_outcomes (tenant, cnci, generation, refused, at) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        o.tenant.to_string(),
        o.cnci.to_string(),
        // Text: SQLite's integers are signed, the digest uses all 64 bits.
        o.generation.to_string(),
        o.refused,
        i64::try_from(o.at).unwrap_or(i64::MAX),
    ])?;
    Ok(())
}

pub fn outcome(conn: &Connection, tenant: Uuid) -> Result<Option<IngressOutcome>> {
    Ok(conn
        .prepare_cached(
            "SELECT tenant, cnci, generation, refused, at FROM ingress_outcomes WHERE tenant = ?1",
        )?
        .query_row([tenant.to_string()], |row| {
            let at: i64 = row.get(4)?;
            Ok(IngressOutcome {
                tenant: rows::text(row, 0)?,
                cnci: rows::text(row, 1)?,
                generation: rows::text(row, 2)?,
                refused: row.get(3)?,
                at: u64::try_from(at).unwrap_or(0),
            })
        })
        .optional()?)
}
