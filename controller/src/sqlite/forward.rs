//! Port forwards, the tenant's forward IP and SSH access in the store: each function a step of
//! the caller's transaction.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use rusqlite::{params, Connection, OptionalExtension, Row};
use uuid::Uuid;

use super::{decide, rows};
use crate::security::forward::{
    reserved_in, Forward, ForwardProtocol, ForwardSpec, SshAccess, SshBlock, SshPolicy,
};
use crate::store::{Result, StoreError};

const FORWARD_COLUMNS: &str = "uuid, tenant, public, protocol, public_port, private, private_port";

fn forward_row(row: &Row<'_>) -> rusqlite::Result<Forward> {
    Ok(Forward {
        uuid: rows::text(row, 0)?,
        tenant: rows::text(row, 1)?,
        public: rows::text(row, 2)?,
        protocol: rows::text(row, 3)?,
        public_port: row.get(4)?,
        private: rows::text(row, 5)?,
        private_port: row.get(6)?,
    })
}

pub fn forwards(conn: &Connection, tenant: Uuid) -> Result<Vec<Forward>> {
    let sql = format!(
        "SELECT {FORWARD_COLUMNS} FROM forwards WHERE tenant = ?1 ORDER BY protocol, public_port"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let found = stmt.query_map([tenant.to_string()], forward_row)?;
    Ok(found.collect::<rusqlite::Result<_>>()?)
}

const SSH_DEFAULT: &str = "ssh_default";
const SSH_PORT_BASE: &str = "ssh_port_base";

/// Store the policy, then give every tenant with SSH access its blocks and forward IP. A tenant
/// whose blocks do not fit is left as it was (logged): the controller still starts, and
/// `ssh on` for it says why.
pub fn set_policy(conn: &Connection, policy: SshPolicy) -> Result<()> {
    store_policy(conn, policy)?;
    let tenants = rows::all(
        conn,
        "SELECT uuid FROM tenants WHERE state = 'active' ORDER BY uuid",
        |row| rows::text::<Uuid>(row, 0),
    )?;
    for tenant in tenants {
        conn.execute_batch("SAVEPOINT ssh_tenant")?;
        match subnet_added(conn, tenant) {
            Ok(()) => conn.execute_batch("RELEASE ssh_tenant")?,
            Err(e) => {
                tracing::warn!("tenant {tenant}: SSH access not set up: {e}");
                conn.execute_batch("ROLLBACK TO ssh_tenant; RELEASE ssh_tenant")?;
            }
        }
    }
    Ok(())
}

fn store_policy(conn: &Connection, policy: SshPolicy) -> Result<()> {
    for (name, value) in [
        (SSH_DEFAULT, u8::from(policy.default).to_string()),
        (SSH_PORT_BASE, policy.port_base.to_string()),
    ] {
        conn.prepare_cached(
            "INSERT INTO settings (name, value) VALUES (?1, ?2)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        )?
        .execute(params![name, value])?;
    }
    Ok(())
}

fn policy(conn: &Connection) -> Result<SshPolicy> {
    let setting = |name: &str| -> Result<Option<String>> {
        Ok(conn
            .prepare_cached("SELECT value FROM settings WHERE name = ?1")?
            .query_row([name], |row| row.get(0))
            .optional()?)
    };
    let corrupt = |name: &str, v: &str| StoreError::Corrupt(format!("setting {name}: {v:?}"));
    let mut policy = SshPolicy::default();
    if let Some(v) = setting(SSH_DEFAULT)? {
        policy.default = v == "1";
    }
    if let Some(v) = setting(SSH_PORT_BASE)? {
        policy.port_base = v.parse().map_err(|_| corrupt(SSH_PORT_BASE, &v))?;
    }
    Ok(policy)
}

/// The tenant's forward IP and own SSH choice.
fn tenant_row(conn: &Connection, tenant: Uuid) -> Result<(Option<Ipv4Addr>, Option<bool>)> {
    let row = conn
        .prepare_cached("SELECT forward_ip, ssh FROM tenants WHERE uuid = ?1")?
        .query_row([tenant.to_string()], |row| {
            let ip = match row.get::<_, Option<String>>(0)? {
                Some(_) => Some(rows::text::<Ipv4Addr>(row, 0)?),
                None => None,
            };
            Ok((ip, row.get::<_, Option<bool>>(1)?))
        })
        .optional()?;
    row.ok_or(StoreError::UnknownTenant(tenant))
}

fn set_forward_ip(conn: &Connection, tenant: Uuid, ip: Option<Ipv4Addr>) -> Result<()> {
    conn.prepare_cached("UPDATE tenants SET forward_ip = ?2 WHERE uuid = ?1")?
        .execute(params![tenant.to_string(), ip.map(|i| i.to_string())])?;
    Ok(())
}

pub fn access(conn: &Connection, tenant: Uuid) -> Result<SshAccess> {
    let (forward_ip, chosen) = tenant_row(conn, tenant)?;
    let blocks = rows_of(
        conn,
        "SELECT cidr, base, size FROM ssh_blocks WHERE tenant = ?1 ORDER BY base",
        tenant,
    )?;
    Ok(SshAccess {
        tenant,
        enabled: chosen.unwrap_or(policy(conn)?.default),
        chosen: chosen.is_some(),
        forward_ip,
        blocks,
    })
}

fn rows_of(conn: &Connection, sql: &str, tenant: Uuid) -> Result<Vec<SshBlock>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let found = stmt.query_map([tenant.to_string()], |row| {
        Ok(SshBlock {
            cidr: rows::text(row, 0)?,
            base: row.get(1)?,
            size: row.get(2)?,
        })
    })?;
    Ok(found.collect::<rusqlite::Result<_>>()?)
}

/// The tenant's forward IP: `wanted` if given (in a pool, and free or already the tenant's),
/// else the one it has, else the first free address of the pools.
fn forward_ip(conn: &Connection, tenant: Uuid, wanted: Option<Ipv4Addr>) -> Result<Ipv4Addr> {
    let (current, _) = tenant_row(conn, tenant)?;
    let Some(public) = wanted else {
        if let Some(ip) = current {
            return Ok(ip);
        }
        let ip = decide::first_free_public_ip(conn)?;
        set_forward_ip(conn, tenant, Some(ip))?;
        return Ok(ip);
    };
    if current == Some(public) {
        return Ok(public);
    }
    if let Some(ip) = current {
        let why = format!("tenant {tenant} forwards on {ip} (a tenant has one forward IP)");
        return Err(StoreError::PublicIpInUse { public, why });
    }
    if !rows::pools(conn)?.iter().any(|p| p.contains(public)) {
        return Err(StoreError::PublicIpOutsidePools { public });
    }
    if let Some(a) = rows::public_ip_of(conn, public)? {
        let why = format!("it is assigned 1:1 to {} of tenant {}", a.private, a.tenant);
        return Err(StoreError::PublicIpInUse { public, why });
    }
    if let Some(owner) = forward_ip_owner(conn, public)? {
        return Err(StoreError::PublicIpNotOwned {
            public,
            owner,
            tenant,
        });
    }
    set_forward_ip(conn, tenant, Some(public))?;
    Ok(public)
}

fn forward_ip_owner(conn: &Connection, public: Ipv4Addr) -> Result<Option<Uuid>> {
    Ok(conn
        .prepare_cached("SELECT uuid FROM tenants WHERE forward_ip = ?1")?
        .query_row([public.to_string()], |row| rows::text(row, 0))
        .optional()?)
}

/// The tenant subnet holding `private`, refused if none does or the address is reserved.
fn target_subnet(conn: &Connection, tenant: Uuid, private: Ipv4Addr) -> Result<Ipv4Net> {
    let subnet = rows::tenant_subnets(conn, tenant)?
        .into_iter()
        .find(|s| s.cidr.contains(&private))
        .ok_or(StoreError::AddressOutsideSubnets {
            tenant,
            address: private,
        })?;
    if let Some(what) = reserved_in(subnet.cidr, private) {
        return Err(StoreError::ReservedAddress {
            address: private,
            cidr: subnet.cidr,
            what,
        });
    }
    Ok(subnet.cidr)
}

pub fn add(conn: &Connection, tenant: Uuid, spec: &ForwardSpec) -> Result<Forward> {
    target_subnet(conn, tenant, spec.private)?;
    let public = forward_ip(conn, tenant, spec.public)?;
    let taken = conn
        .prepare_cached(&format!(
            "SELECT {FORWARD_COLUMNS} FROM forwards
             WHERE public = ?1 AND protocol = ?2 AND public_port = ?3"
        ))?
        .query_row(
            params![public.to_string(), spec.protocol.as_str(), spec.public_port],
            forward_row,
        )
        .optional()?;
    if let Some(existing) = taken {
        if existing.tenant == tenant
            && existing.private == spec.private
            && existing.private_port == spec.private_port
        {
            return Ok(existing);
        }
        return Err(StoreError::ForwardTaken {
            public,
            protocol: spec.protocol,
            port: spec.public_port,
        });
    }
    let ssh = access(conn, tenant)?;
    if ssh.enabled && spec.protocol == ForwardProtocol::Tcp {
        if let Some(block) = ssh.blocks.iter().find(|b| b.holds(spec.public_port)) {
            return Err(StoreError::SshForwardOverlap {
                port: spec.public_port,
                cidr: block.cidr,
            });
        }
    }
    let forward = Forward {
        uuid: Uuid::new_v4(),
        tenant,
        public,
        protocol: spec.protocol,
        public_port: spec.public_port,
        private: spec.private,
        private_port: spec.private_port,
    };
    conn.prepare_cached(&format!(
        "INSERT INTO forwards ({FORWARD_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
    ))?
    .execute(params![
        forward.uuid.to_string(),
        tenant.to_string(),
        public.to_string(),
        spec.protocol.as_str(),
        spec.public_port,
        spec.private.to_string(),
        spec.private_port
    ])?;
    Ok(forward)
}

pub fn delete(conn: &Connection, tenant: Uuid, forward: Uuid) -> Result<Forward> {
    let found = forwards(conn, tenant)?
        .into_iter()
        .find(|f| f.uuid == forward)
        .ok_or(StoreError::UnknownForward { tenant, forward })?;
    conn.prepare_cached("DELETE FROM forwards WHERE uuid = ?1")?
        .execute([forward.to_string()])?;
    release_if_unused(conn, tenant)?;
    Ok(found)
}

/// Give the forward IP back to the pool when no forward and no SSH access use it.
fn release_if_unused(conn: &Connection, tenant: Uuid) -> Result<()> {
    if forwards(conn, tenant)?.is_empty() && !access(conn, tenant)?.enabled {
        set_forward_ip(conn, tenant, None)?;
    }
    Ok(())
}

pub fn set_ssh(conn: &Connection, tenant: Uuid, enabled: bool) -> Result<SshAccess> {
    conn.prepare_cached("UPDATE tenants SET ssh = ?2 WHERE uuid = ?1")?
        .execute(params![tenant.to_string(), enabled])?;
    if enabled {
        ensure_blocks(conn, tenant)?;
        forward_ip(conn, tenant, None)?;
    } else {
        release_if_unused(conn, tenant)?;
    }
    access(conn, tenant)
}

/// A new subnet of a tenant with SSH access (or, at start, every subnet) gets its block now (refused if it does not fit),
/// and the tenant its forward IP if the pools have one (the workload is not refused for it).
pub fn subnet_added(conn: &Connection, tenant: Uuid) -> Result<()> {
    if !access(conn, tenant)?.enabled {
        return Ok(());
    }
    ensure_blocks(conn, tenant)?;
    match forward_ip(conn, tenant, None) {
        Err(e @ (StoreError::NoPublicPool | StoreError::PublicPoolExhausted { .. })) => {
            tracing::warn!("tenant {tenant} has SSH access but no forward IP yet: {e}");
            Ok(())
        }
        other => other.map(|_| ()),
    }
}

/// A block for every subnet of the tenant that has none, in the order the subnets appeared,
/// each after the highest block; then no tcp forward may sit on an SSH port.
fn ensure_blocks(conn: &Connection, tenant: Uuid) -> Result<()> {
    let mut next = conn
        .prepare_cached("SELECT MAX(base + size) FROM ssh_blocks WHERE tenant = ?1")?
        .query_row([tenant.to_string()], |row| row.get::<_, Option<u32>>(0))?
        .unwrap_or(u32::from(policy(conn)?.port_base));
    let missing = {
        let mut stmt = conn.prepare_cached(
            "SELECT cidr FROM subnets s WHERE tenant = ?1 AND NOT EXISTS
             (SELECT 1 FROM ssh_blocks b WHERE b.tenant = s.tenant AND b.cidr = s.cidr)
             ORDER BY rowid",
        )?;
        let found = stmt.query_map([tenant.to_string()], |row| rows::text::<Ipv4Net>(row, 0))?;
        found.collect::<rusqlite::Result<Vec<_>>>()?
    };
    for cidr in missing {
        let size = 1u32 << (32 - u32::from(cidr.prefix_len()));
        if next + size > 65536 {
            return Err(StoreError::SshPortsExhausted {
                tenant,
                cidr,
                base: next,
                size,
            });
        }
        conn.prepare_cached(
            "INSERT INTO ssh_blocks (tenant, cidr, base, size) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![tenant.to_string(), cidr.to_string(), next, size])?;
        next += size;
    }
    let ssh = access(conn, tenant)?;
    for f in forwards(conn, tenant)? {
        if f.protocol != ForwardProtocol::Tcp {
            continue;
        }
        if let Some(block) = ssh.blocks.iter().find(|b| b.holds(f.public_port)) {
            return Err(StoreError::SshForwardOverlap {
                port: f.public_port,
                cidr: block.cidr,
            });
        }
    }
    Ok(())
}

/// Forget a forgotten tenant's forwards and blocks (its forward IP goes with its row).
pub fn forget(conn: &Connection, tenant: Uuid) -> Result<()> {
    for sql in [
        "DELETE FROM forwards WHERE tenant = ?1",
        "DELETE FROM ssh_blocks WHERE tenant = ?1",
    ] {
        conn.prepare_cached(sql)?.execute([tenant.to_string()])?;
    }
    Ok(())
}
