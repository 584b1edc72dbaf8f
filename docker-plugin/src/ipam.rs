//! The IpamDriver half: pools and addresses, on top of the core's IPAM of the tenant subnet.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde_json::json;

use netcore::auto_subnet;

use crate::api;
use crate::auto;
use crate::error::PluginError;
use crate::options;
use crate::plugin::{Plugin, Reply, HOLDER};
use crate::store::{check_id, NetworkRecord, PoolRecord};

/// What the gateway RequestAddress carries in its options.
const GATEWAY_TYPE: &str = "com.docker.network.gateway";

impl<K: netcore::Kernel> Plugin<K> {
    pub(crate) fn request_pool(&mut self, r: api::RequestPool) -> Reply {
        let planned = plan_pool(&self.state_dir, &r)?;
        self.record_pool(planned)
    }

    /// Records the pool [`plan_pool`] chose, under a new id (no other record is touched, so
    /// no other call's state can be in the way).
    pub(crate) fn record_pool(&mut self, planned: PlannedPool) -> Reply {
        let PlannedPool {
            pool,
            sub_pool,
            node_range,
            tenant,
        } = planned;
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let id = format!(
            "ciao-{}-{}-{}",
            pool.network(),
            pool.prefix_len(),
            &suffix[..8]
        );
        self.store.put_pool(&PoolRecord {
            id: id.clone(),
            pool,
            sub_pool,
            gateway: None,
            network: None,
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
            tenant,
            node_range,
        })?;
        Ok(json!({"PoolID": id, "Pool": pool.to_string(), "Data": {}}))
    }

    fn pool(&self, id: &str) -> Result<PoolRecord, PluginError> {
        self.store.pool(id)?.ok_or_else(|| {
            PluginError::Unknown(format!(
                "unknown pool {id:?}: it was not requested from this ciao IPAM driver"
            ))
        })
    }

    pub(crate) fn release_pool(&mut self, r: api::PoolRef) -> Reply {
        check_id("pool", &r.pool_id)?;
        self.store.remove_pool(&r.pool_id)?;
        Ok(json!({}))
    }

    pub(crate) fn request_address(&mut self, r: api::RequestAddress) -> Reply {
        let mut pool = self.pool(&r.pool_id)?;
        let requested = match r.address.as_str() {
            "" => None,
            text => {
                let ip = options::parse_addr(text)?;
                if !pool.pool.contains(&ip) {
                    return Err(PluginError::Invalid(format!(
                        "address {ip} is outside the network's subnet {}",
                        pool.pool
                    )));
                }
                Some(ip)
            }
        };
        let is_gateway = r
            .options
            .as_ref()
            .and_then(|o| o.get("RequestAddressType"))
            .is_some_and(|t| t == GATEWAY_TYPE);
        let prefix = pool.pool.prefix_len();
        if is_gateway {
            // The gateway is the CNCI's address in the subnet: recorded, never allocated.
            let gw =
                requested.unwrap_or_else(|| Ipv4Addr::from(u32::from(pool.pool.network()) + 1));
            if gw == pool.pool.network() || gw == pool.pool.broadcast() {
                return Err(PluginError::Invalid(format!(
                    "--gateway {gw} is not a host address of {}",
                    pool.pool
                )));
            }
            pool.gateway = Some(gw);
            self.store.put_pool(&pool)?;
            return Ok(json!({"Address": format!("{gw}/{prefix}"), "Data": {}}));
        }
        let net = self.pool_network(&pool)?;
        let ip = self.node.hold_address(&net.config, HOLDER, requested)?;
        Ok(json!({"Address": format!("{ip}/{prefix}"), "Data": {}}))
    }

    fn pool_network(&self, pool: &PoolRecord) -> Result<NetworkRecord, PluginError> {
        let id = pool.network.as_deref().ok_or_else(|| {
            PluginError::Unknown(format!("pool {} has no network (yet)", pool.id))
        })?;
        self.network(id)
    }

    pub(crate) fn release_address(&mut self, r: api::ReleaseAddress) -> Reply {
        // Releases are idempotent: an unknown pool or address has nothing left to release.
        let Some(pool) = self.store.pool(&r.pool_id)? else {
            return Ok(json!({}));
        };
        let ip = options::parse_addr(&r.address)?;
        if pool.gateway == Some(ip) {
            return Ok(json!({}));
        }
        if let Some(net_id) = &pool.network {
            if let Some(net) = self.store.network(net_id)? {
                self.node.release_hold(&net.config.net_key(), ip, HOLDER)?;
            }
        }
        Ok(json!({}))
    }
}

/// What a RequestPool will record, decided before the plugin's records are touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PlannedPool {
    pool: Ipv4Net,
    sub_pool: Option<Ipv4Net>,
    node_range: Option<netcore::AddrRange>,
    tenant: Option<uuid::Uuid>,
}

/// Checks a RequestPool and, for a tenant-only network, asks `ciao-node run` (under
/// `state_dir`) for the subnet, waiting up to `subnet-wait-seconds`. It reads no record of the
/// plugin and writes nothing, so the server runs it without holding the plugin: the wait holds
/// up no other call.
pub(crate) fn plan_pool(
    state_dir: &std::path::Path,
    r: &api::RequestPool,
) -> Result<PlannedPool, PluginError> {
    if r.v6 {
        return Err(PluginError::Invalid(
            "ciao networks are IPv4 only: drop --ipv6".into(),
        ));
    }
    let ipam = auto::ipam_opts(r.options.as_ref())?;
    let (pool, sub_pool, node_range) = if r.pool.is_empty() {
        let tenant = ipam.tenant.ok_or_else(auto::no_subnet)?;
        if !r.sub_pool.is_empty() {
            return Err(PluginError::Invalid(format!(
                "--ip-range {} needs --subnet: an automatic subnet comes with this node's range",
                r.sub_pool
            )));
        }
        let wait = ipam.wait.unwrap_or(auto_subnet::DEFAULT_WAIT);
        let got = auto::resolve(state_dir, tenant, wait)?;
        (got.subnet, Some(got.slice), Some(got.range))
    } else {
        if ipam.wait.is_some() {
            return Err(PluginError::Invalid(
                "--ipam-opt subnet-wait-seconds is for networks without --subnet".into(),
            ));
        }
        let (pool, sub_pool) = given_pool(r)?;
        (pool, sub_pool, None)
    };
    let _ = &r.address_space;
    Ok(PlannedPool {
        pool,
        sub_pool,
        node_range,
        tenant: ipam.tenant,
    })
}

/// `--subnet` and `--ip-range`, checked.
fn given_pool(r: &api::RequestPool) -> Result<(Ipv4Net, Option<Ipv4Net>), PluginError> {
    let pool = options::parse_subnet("--subnet", &r.pool)?;
    if pool.prefix_len() > 30 {
        return Err(PluginError::Invalid(format!(
            "--subnet {pool} is too small: a tenant subnet needs at least a /30"
        )));
    }
    let sub_pool = match r.sub_pool.as_str() {
        "" => None,
        text => {
            let sub: Ipv4Net = text.parse().map_err(|_| {
                PluginError::Invalid(format!("--ip-range {text:?} is not an IPv4 CIDR"))
            })?;
            if !pool.contains(&sub) {
                return Err(PluginError::Invalid(format!(
                    "--ip-range {sub} is outside --subnet {pool}"
                )));
            }
            Some(sub)
        }
    };
    Ok((pool, sub_pool))
}
