//! The decisions, each a step inside the caller's write transaction: an error anywhere rolls
//! back every step before it, so a refused operation leaves nothing half-made.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use ciao_types::TunnelKind;
use ipnet::Ipv4Net;
use rusqlite::{params, Connection, OptionalExtension};
use uuid::Uuid;

use super::rows;
use crate::model::{Cnci, CnciState, PublicIpAssignment, Tenant, TenantState, TenantSubnet};
use crate::store::{Result, StoreError};

/// The tenant, created if new; refused if it is being deleted.
pub fn active_tenant(conn: &Connection, tenant: Uuid) -> Result<Tenant> {
    match rows::find_tenant(conn, tenant)? {
        Some(found) if found.state == TenantState::Deleting => {
            Err(StoreError::TenantDeleting(tenant))
        }
        Some(found) => Ok(found),
        None => {
            conn.prepare_cached("INSERT INTO tenants (uuid, state) VALUES (?1, 'active')")?
                .execute([tenant.to_string()])?;
            super::security::create_default_group(conn, tenant)?;
            Ok(Tenant {
                uuid: tenant,
                state: TenantState::Active,
            })
        }
    }
}

/// The tenant's live CNCI, or a new one placed on the connected network node with the fewest
/// live CNCIs and room for one more (ties broken by uuid, so the choice is reproducible).
pub fn live_or_placed_cnci(conn: &Connection, tenant: Uuid) -> Result<Cnci> {
    if let Some(cnci) = rows::live_cnci(conn, tenant)? {
        return Ok(cnci);
    }
    let placement = conn
        .prepare_cached(
            "SELECT uuid, underlay FROM (
                 SELECT n.uuid, n.underlay, n.capacity,
                     (SELECT COUNT(*) FROM cncis c
                      WHERE c.network_node = n.uuid AND c.state != 'gone') AS live
                 FROM network_nodes n WHERE n.connected = 1)
             WHERE live < capacity ORDER BY live, uuid LIMIT 1",
        )?
        .query_row([], |row| {
            Ok((rows::text::<Uuid>(row, 0)?, rows::text::<Ipv4Addr>(row, 1)?))
        })
        .optional()?;
    let (network_node, underlay) = placement.ok_or(StoreError::NoNetworkNode)?;
    let cnci = Cnci {
        uuid: Uuid::new_v4(),
        tenant,
        network_node,
        underlay,
        state: CnciState::Requested,
    };
    conn.prepare_cached(
        "INSERT INTO cncis (uuid, tenant, network_node, underlay, state) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        cnci.uuid.to_string(),
        tenant.to_string(),
        network_node.to_string(),
        underlay.to_string(),
        cnci.state.as_str()
    ])?;
    Ok(cnci)
}

/// The tenant subnet, or a new one with the next free tunnel id; refused if it overlaps
/// another of the tenant's subnets.
pub fn existing_or_new_subnet(
    conn: &Connection,
    tenant: Uuid,
    cidr: Ipv4Net,
    kind: TunnelKind,
) -> Result<TenantSubnet> {
    if cidr.trunc() != cidr {
        return Err(StoreError::SubnetNotNetwork(cidr));
    }
    if let Some(subnet) = rows::find_subnet(conn, tenant, cidr)? {
        return Ok(subnet);
    }
    if let Some(existing) = rows::tenant_subnets(conn, tenant)?
        .into_iter()
        .find(|s| s.cidr.contains(&cidr) || cidr.contains(&s.cidr))
    {
        return Err(StoreError::SubnetOverlap {
            new: cidr,
            existing: existing.cidr,
        });
    }
    let subnet = TenantSubnet {
        tenant,
        cidr,
        tunnel_kind: kind,
        tunnel_id: next_tunnel_id(conn, kind, kind.max_id())?,
    };
    conn.prepare_cached(
        "INSERT INTO subnets (tenant, cidr, tunnel_kind, tunnel_id) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![
        tenant.to_string(),
        cidr.to_string(),
        kind.as_str(),
        subnet.tunnel_id
    ])?;
    super::forward::subnet_added(conn, tenant)?;
    Ok(subnet)
}

const LAST_TUNNEL_ID: &str = "last_tunnel_id";

/// The next tunnel id in `1..=max`, unique across every tenant subnet of the cluster (of every
/// kind: a compute node's VNIs share one space per local address and port). Ids go up from the
/// last one given, so a freed id is not handed out again until the range wraps; after that,
/// the lowest free id.
pub fn next_tunnel_id(conn: &Connection, kind: TunnelKind, max: u32) -> Result<u32> {
    let last: u32 = conn
        .prepare_cached("SELECT value FROM counters WHERE name = ?1")?
        .query_row([LAST_TUNNEL_ID], |row| row.get(0))
        .optional()?
        .unwrap_or(0);
    let taken = |id: u32| -> Result<bool> {
        Ok(conn
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM subnets WHERE tunnel_id = ?1)")?
            .query_row([id], |row| row.get(0))?)
    };
    let next = match last.checked_add(1) {
        Some(next) if next <= max && !taken(next)? => next,
        _ => lowest_free_tunnel_id(conn, max)?.ok_or(StoreError::TunnelIdsExhausted(kind))?,
    };
    conn.prepare_cached(
        "INSERT INTO counters (name, value) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![LAST_TUNNEL_ID, next])?;
    Ok(next)
}

fn lowest_free_tunnel_id(conn: &Connection, max: u32) -> Result<Option<u32>> {
    Ok(conn
        .prepare_cached(
            "SELECT id FROM (
                 SELECT 1 AS id WHERE NOT EXISTS (SELECT 1 FROM subnets WHERE tunnel_id = 1)
                 UNION ALL
                 SELECT s.tunnel_id + 1 FROM subnets s
                 WHERE NOT EXISTS (SELECT 1 FROM subnets t WHERE t.tunnel_id = s.tunnel_id + 1)
             ) WHERE id <= ?1 ORDER BY id LIMIT 1",
        )?
        .query_row([max], |row| row.get(0))
        .optional()?)
}

/// Record that `compute_node` hosts the subnet (idempotent).
pub fn subnet_hosted_by(
    conn: &Connection,
    tenant: Uuid,
    cidr: Ipv4Net,
    compute_node: Uuid,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO subnet_nodes (tenant, cidr, compute_node) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![
        tenant.to_string(),
        cidr.to_string(),
        compute_node.to_string()
    ])?;
    Ok(())
}

/// Forget a tenant whose CNCI is gone: its public IPs, subnets (their tunnel ids become free),
/// CNCIs and itself.
pub fn forget_tenant(conn: &Connection, tenant: Uuid) -> Result<()> {
    super::security::forget(conn, tenant)?;
    super::forward::forget(conn, tenant)?;
    super::ingress_rule::forget(conn, tenant)?;
    for sql in [
        "DELETE FROM public_ips WHERE tenant = ?1",
        "DELETE FROM subnet_nodes WHERE tenant = ?1",
        "DELETE FROM auto_slices WHERE tenant = ?1",
        "DELETE FROM subnets WHERE tenant = ?1",
        "DELETE FROM cncis WHERE tenant = ?1",
        "DELETE FROM tenants WHERE uuid = ?1",
    ] {
        conn.prepare_cached(sql)?.execute([tenant.to_string()])?;
    }
    Ok(())
}

/// A public address for `private`, which must be in one of the tenant's subnets: the one it
/// already has, or the first free address of the first pool that has one.
pub fn public_ip_for(
    conn: &Connection,
    tenant: Uuid,
    private: Ipv4Addr,
) -> Result<PublicIpAssignment> {
    match rows::find_tenant(conn, tenant)? {
        None => return Err(StoreError::UnknownTenant(tenant)),
        Some(t) if t.state == TenantState::Deleting => {
            return Err(StoreError::TenantDeleting(tenant))
        }
        Some(_) => {}
    }
    if !rows::tenant_subnets(conn, tenant)?
        .iter()
        .any(|s| s.cidr.contains(&private))
    {
        return Err(StoreError::AddressOutsideSubnets {
            tenant,
            address: private,
        });
    }
    let existing = conn
        .prepare_cached(
            "SELECT tenant, private, public FROM public_ips WHERE tenant = ?1 AND private = ?2",
        )?
        .query_row(
            params![tenant.to_string(), private.to_string()],
            rows::public_ip,
        )
        .optional()?;
    if let Some(assignment) = existing {
        return Ok(assignment);
    }
    let public = first_free_public_ip(conn)?;
    conn.prepare_cached("INSERT INTO public_ips (public, tenant, private) VALUES (?1, ?2, ?3)")?
        .execute(params![
            public.to_string(),
            tenant.to_string(),
            private.to_string()
        ])?;
    Ok(PublicIpAssignment {
        tenant,
        private,
        public,
    })
}

/// The first address of the pools that is neither assigned 1:1 nor a tenant's forward IP.
pub fn first_free_public_ip(conn: &Connection) -> Result<Ipv4Addr> {
    let pools = rows::pools(conn)?;
    if pools.is_empty() {
        return Err(StoreError::NoPublicPool);
    }
    let assigned: HashSet<Ipv4Addr> = rows::all(
        conn,
        "SELECT public FROM public_ips
         UNION SELECT forward_ip FROM tenants WHERE forward_ip IS NOT NULL",
        |row| rows::text(row, 0),
    )?
    .into_iter()
    .collect();
    pools
        .iter()
        .flat_map(|pool| pool.addresses())
        .find(|addr| !assigned.contains(addr))
        .ok_or_else(|| StoreError::PublicPoolExhausted {
            pools: pools
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        })
}
