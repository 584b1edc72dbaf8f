//! Security groups and rules in the store: each function a step of the caller's transaction.

use ipnet::IpNet;
use rusqlite::{params, Connection, OptionalExtension, Row};
use uuid::Uuid;

use super::rows;
use crate::model::TenantState;
use crate::security::{
    default_rules, new_group_rules, Remote, RuleSpec, SecurityGroup, SecurityRule, DEFAULT_GROUP,
};
use crate::store::{Result, StoreError};

const GROUP_COLUMNS: &str = "uuid, tenant, name, description";
const RULE_COLUMNS: &str = "uuid, security_group, direction, ethertype, protocol, port_min, \
    port_max, icmp_type, icmp_code, remote_cidr, remote_group";

fn group_row(row: &Row<'_>) -> rusqlite::Result<SecurityGroup> {
    Ok(SecurityGroup {
        uuid: rows::text(row, 0)?,
        tenant: rows::text(row, 1)?,
        name: row.get(2)?,
        description: row.get(3)?,
    })
}

fn rule_row(row: &Row<'_>) -> rusqlite::Result<SecurityRule> {
    let ports = match (row.get::<_, Option<u16>>(5)?, row.get::<_, Option<u16>>(6)?) {
        (Some(min), Some(max)) => Some((min, max)),
        _ => None,
    };
    let remote = match (
        row.get::<_, Option<String>>(9)?,
        row.get::<_, Option<String>>(10)?,
    ) {
        (Some(_), _) => Remote::Cidr(rows::text::<IpNet>(row, 9)?),
        (None, Some(_)) => Remote::Group(rows::text(row, 10)?),
        (None, None) => Remote::Anywhere,
    };
    Ok(SecurityRule {
        uuid: rows::text(row, 0)?,
        group: rows::text(row, 1)?,
        spec: RuleSpec {
            direction: rows::text(row, 2)?,
            ethertype: rows::text(row, 3)?,
            protocol: rows::text(row, 4)?,
            ports,
            icmp_type: row.get(7)?,
            icmp_code: row.get(8)?,
            remote,
        },
    })
}

/// The tenant, which must exist; refused if it is being deleted and `writing`.
pub fn known_tenant(conn: &Connection, tenant: Uuid, writing: bool) -> Result<()> {
    match rows::find_tenant(conn, tenant)? {
        None => Err(StoreError::UnknownTenant(tenant)),
        Some(t) if writing && t.state == TenantState::Deleting => {
            Err(StoreError::TenantDeleting(tenant))
        }
        Some(_) => Ok(()),
    }
}

/// A new tenant's `default` group with its four rules (idempotent: a tenant that has one
/// keeps it).
pub fn create_default_group(conn: &Connection, tenant: Uuid) -> Result<()> {
    if find_group(conn, tenant, DEFAULT_GROUP)?.is_some() {
        return Ok(());
    }
    let group = insert_group(conn, tenant, DEFAULT_GROUP, "every workload of the tenant")?;
    for spec in default_rules(group.uuid) {
        insert_rule(conn, group.uuid, &spec)?;
    }
    Ok(())
}

/// A group made through the API, with the rules every new group starts with.
pub fn create_group(
    conn: &Connection,
    tenant: Uuid,
    name: &str,
    description: &str,
) -> Result<SecurityGroup> {
    let group = insert_group(conn, tenant, name, description)?;
    for spec in new_group_rules() {
        insert_rule(conn, group.uuid, &spec)?;
    }
    Ok(group)
}

pub fn groups(conn: &Connection, tenant: Uuid) -> Result<Vec<SecurityGroup>> {
    let sql =
        format!("SELECT {GROUP_COLUMNS} FROM security_groups WHERE tenant = ?1 ORDER BY name");
    let mut stmt = conn.prepare_cached(&sql)?;
    let found = stmt.query_map([tenant.to_string()], group_row)?;
    Ok(found.collect::<rusqlite::Result<_>>()?)
}

/// A group of the tenant by id or name.
pub fn find_group(conn: &Connection, tenant: Uuid, group: &str) -> Result<Option<SecurityGroup>> {
    let column = if group.parse::<Uuid>().is_ok() {
        "uuid"
    } else {
        "name"
    };
    let sql =
        format!("SELECT {GROUP_COLUMNS} FROM security_groups WHERE tenant = ?1 AND {column} = ?2");
    let key = match group.parse::<Uuid>() {
        Ok(id) => id.to_string(),
        Err(_) => group.to_owned(),
    };
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(params![tenant.to_string(), key], group_row)
        .optional()?)
}

pub fn group(conn: &Connection, tenant: Uuid, group: &str) -> Result<SecurityGroup> {
    find_group(conn, tenant, group)?.ok_or_else(|| StoreError::UnknownGroup {
        tenant,
        group: group.to_owned(),
    })
}

/// Letters, digits, `.`, `_`, `-`; 1-64 of them; not a UUID (ids and names share the path).
pub fn check_name(name: &str) -> Result<()> {
    let fine = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && name.parse::<Uuid>().is_err();
    if fine {
        Ok(())
    } else {
        Err(StoreError::InvalidGroupName(name.to_owned()))
    }
}

pub fn insert_group(
    conn: &Connection,
    tenant: Uuid,
    name: &str,
    description: &str,
) -> Result<SecurityGroup> {
    check_name(name)?;
    if find_group(conn, tenant, name)?.is_some() {
        return Err(StoreError::GroupExists {
            tenant,
            name: name.to_owned(),
        });
    }
    let group = SecurityGroup {
        uuid: Uuid::new_v4(),
        tenant,
        name: name.to_owned(),
        description: description.to_owned(),
    };
    conn.prepare_cached(
        "INSERT INTO security_groups (uuid, tenant, name, description) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![
        group.uuid.to_string(),
        tenant.to_string(),
        name,
        description
    ])?;
    Ok(group)
}

/// Delete the group and its rules, if no rule of another group names it.
pub fn delete_group(conn: &Connection, tenant: Uuid, name: &str) -> Result<SecurityGroup> {
    let found = group(conn, tenant, name)?;
    if found.name == DEFAULT_GROUP {
        return Err(StoreError::DefaultGroup(tenant));
    }
    let user = conn
        .prepare_cached(
            "SELECT r.uuid, g.name FROM security_rules r
             JOIN security_groups g ON g.uuid = r.security_group
             WHERE r.remote_group = ?1 AND r.security_group != ?1 ORDER BY g.name, r.uuid",
        )?
        .query_row([found.uuid.to_string()], |row| {
            Ok((rows::text::<Uuid>(row, 0)?, row.get::<_, String>(1)?))
        })
        .optional()?;
    if let Some((rule, by)) = user {
        return Err(StoreError::GroupInUse {
            group: found.name,
            rule,
            by,
        });
    }
    let id = found.uuid.to_string();
    conn.prepare_cached("DELETE FROM security_rules WHERE security_group = ?1")?
        .execute([&id])?;
    conn.prepare_cached("DELETE FROM security_groups WHERE uuid = ?1")?
        .execute([&id])?;
    Ok(found)
}

/// Every rule of the tenant's groups, by group then id.
pub fn rules(conn: &Connection, tenant: Uuid) -> Result<Vec<SecurityRule>> {
    let sql = format!(
        "SELECT {} FROM security_rules r JOIN security_groups g ON g.uuid = r.security_group
         WHERE g.tenant = ?1 ORDER BY g.name, r.rowid",
        RULE_COLUMNS
            .split(", ")
            .map(|c| format!("r.{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let found = stmt.query_map([tenant.to_string()], rule_row)?;
    Ok(found.collect::<rusqlite::Result<_>>()?)
}

/// Add `spec` to the group, its remote group resolved in the tenant; an equal rule is refused.
pub fn add_rule(
    conn: &Connection,
    tenant: Uuid,
    group_name: &str,
    mut spec: RuleSpec,
    remote_group: Option<&str>,
) -> Result<SecurityRule> {
    let owner = group(conn, tenant, group_name)?;
    if let Some(remote) = remote_group {
        spec.remote = Remote::Group(group(conn, tenant, remote)?.uuid);
    }
    if let Some(same) = rules(conn, tenant)?
        .into_iter()
        .find(|r| r.group == owner.uuid && r.spec == spec)
    {
        return Err(StoreError::DuplicateRule {
            group: owner.name,
            existing: same.uuid,
        });
    }
    insert_rule(conn, owner.uuid, &spec)
}

fn insert_rule(conn: &Connection, group: Uuid, spec: &RuleSpec) -> Result<SecurityRule> {
    let rule = SecurityRule {
        uuid: Uuid::new_v4(),
        group,
        spec: spec.clone(),
    };
    let (cidr, remote_group) = match &spec.remote {
        Remote::Anywhere => (None, None),
        Remote::Cidr(net) => (Some(net.to_string()), None),
        Remote::Group(g) => (None, Some(g.to_string())),
    };
    let sql = format!(
        "INSERT INTO security_rules ({RULE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
    );
    conn.prepare_cached(&sql)?.execute(params![
        rule.uuid.to_string(),
        group.to_string(),
        spec.direction.to_string(),
        spec.ethertype.to_string(),
        spec.protocol.to_string(),
        spec.ports.map(|p| p.0),
        spec.ports.map(|p| p.1),
        spec.icmp_type,
        spec.icmp_code,
        cidr,
        remote_group,
    ])?;
    Ok(rule)
}

pub fn delete_rule(conn: &Connection, tenant: Uuid, rule: Uuid) -> Result<SecurityRule> {
    let found = rules(conn, tenant)?
        .into_iter()
        .find(|r| r.uuid == rule)
        .ok_or(StoreError::UnknownRule { tenant, rule })?;
    conn.prepare_cached("DELETE FROM security_rules WHERE uuid = ?1")?
        .execute([rule.to_string()])?;
    Ok(found)
}

/// Forget every group and rule of a tenant that is forgotten.
pub fn forget(conn: &Connection, tenant: Uuid) -> Result<()> {
    conn.prepare_cached(
        "DELETE FROM security_rules WHERE security_group IN
         (SELECT uuid FROM security_groups WHERE tenant = ?1)",
    )?
    .execute([tenant.to_string()])?;
    conn.prepare_cached("DELETE FROM security_groups WHERE tenant = ?1")?
        .execute([tenant.to_string()])?;
    Ok(())
}
