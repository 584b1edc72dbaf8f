//! The driver: each libnetwork call translated into records and one core call.
//!
//! | Docker call | what happens |
//! |---|---|
//! | RequestPool | a pool record (subnet, `--ip-range`), or with `--ipam-opt tenant` alone the controller's subnet and range (see [`crate::auto`]) |
//! | RequestAddress (gateway) | recorded in the pool: the gateway is the CNCI's, never allocated |
//! | CreateNetwork | `-o` options + pool → the core's `SubnetConfig`, validated, recorded |
//! | RequestAddress | a *hold* in the core's IPAM of the tenant subnet (shared with CNI and VMs) |
//! | CreateEndpoint | the hold passes to the endpoint; `Node::attach` of a `Handoff` veth |
//! | Join | the veth end for Docker to move, the gateway; Docker sets address and routes |
//! | DeleteEndpoint | `Node::detach`; the address is held again until ReleaseAddress |
//! | ReleaseAddress | the hold is released |

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use netcore::netlink::Netlink;
use netcore::{Kernel, Node, NodeConfig, VnicId, VnicKind, VnicRequest};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::api;
use crate::error::PluginError;
use crate::options;
use crate::store::{check_id, EndpointRecord, NetworkRecord, Store};

/// The holder name of addresses Docker allocated but no endpoint uses (yet, or any more).
pub const HOLDER: &str = "docker";

pub(crate) type Reply = Result<Value, PluginError>;

/// The plugin: the node (core) and the plugin's records. Generic over the kernel so its logic
/// can run on a fake one.
pub struct Plugin<K: Kernel = Netlink> {
    pub(crate) node: Node<K>,
    pub(crate) store: Store,
    /// The node's state directory: the automatic-subnet cache and `ciao-node run`'s socket.
    pub(crate) state_dir: PathBuf,
}

impl<K: Kernel> Plugin<K> {
    /// The node's state directory (for [`prepare`]).
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, PluginError> {
    // Docker sends no Content-Type, and an empty body for parameterless calls.
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| PluginError::Malformed(e.to_string()))
}

fn vnic_id(endpoint: &str) -> VnicId {
    VnicId {
        owner: endpoint.to_string(),
        ifname: handoff_name(endpoint),
    }
}

/// The name of the veth end Docker moves into the container: unique on the node, ≤ 15 bytes,
/// from a hash of the whole endpoint id (ids may share any prefix).
fn handoff_name(endpoint: &str) -> String {
    let hash = netcore::ids::fnv64(&[b"docker-endpoint", endpoint.as_bytes()]);
    format!("cd{:012x}", hash & 0xffff_ffff_ffff)
}

/// The part of a call done before the plugin is taken: for RequestPool, the checks and the
/// wait for an automatic subnet (which reads and writes no record of the plugin).
pub struct Prepared(Option<Result<crate::ipam::PlannedPool, PluginError>>);

/// Does the part of a call that needs no record of the plugin (see [`Prepared`]), so that a
/// RequestPool waiting up to `subnet-wait-seconds` for the controller holds up no other call;
/// `state_dir` is the node's. Every other call is done whole by [`Plugin::call_prepared`].
pub fn prepare(state_dir: &Path, path: &str, body: &[u8]) -> Prepared {
    if path != "/IpamDriver.RequestPool" {
        return Prepared(None);
    }
    Prepared(Some(
        decode(body).and_then(|r| crate::ipam::plan_pool(state_dir, &r)),
    ))
}

impl Plugin {
    /// Opens the node and the records, and reconciles them with the kernel.
    pub fn open(state_dir: &Path) -> Result<Self, PluginError> {
        let node = Node::open(&NodeConfig {
            state_dir: state_dir.to_path_buf(),
        })?;
        Plugin::with_node(node, state_dir)
    }
}

impl<K: Kernel> Plugin<K> {
    /// The plugin on an opened node (whose state directory is `state_dir`), reconciled.
    pub fn with_node(node: Node<K>, state_dir: &Path) -> Result<Self, PluginError> {
        let store = Store::open(state_dir)?;
        let mut plugin = Self {
            node,
            store,
            state_dir: state_dir.to_path_buf(),
        };
        plugin.reconcile()?;
        Ok(plugin)
    }

    /// After a crash or reboot: the core drops VNICs whose container vanished and re-creates
    /// missing bridges and tunnels; here pools are re-bound to networks a kill interrupted.
    pub fn reconcile(&mut self) -> Result<(), PluginError> {
        self.node.reconcile()?;
        // An endpoint without its VNIC was cut short by a kill (or its container vanished):
        // forget it and hold its address for Docker, whose ReleaseAddress (or a retried
        // CreateEndpoint) follows either way.
        for ep in self.store.endpoints()? {
            let Some(net) = self.store.network(&ep.network)? else {
                self.store.remove_endpoint(&ep.id)?;
                continue;
            };
            let key = net.config.net_key();
            let id = vnic_id(&ep.id);
            if self.node.vnic(&key, &id)?.is_none() {
                self.restore_hold(&key, ep.ip, &id);
                self.store.remove_endpoint(&ep.id)?;
            }
        }
        for net in self.store.networks()? {
            if let Some(mut pool) = self.store.pool(&net.pool_id)? {
                if pool.network.is_none() {
                    pool.network = Some(net.id.clone());
                    self.store.put_pool(&pool)?;
                }
            }
        }
        Ok(())
    }

    /// Answers one call with what [`prepare`] did for it without the plugin; `None` for a path
    /// that is not part of the protocol.
    pub fn call_prepared(&mut self, path: &str, body: &[u8], prepared: Prepared) -> Option<Reply> {
        match prepared.0 {
            Some(planned) => Some(planned.and_then(|p| self.record_pool(p))),
            None => self.call(path, body),
        }
    }

    /// Answers one call; `None` for a path that is not part of the protocol.
    pub fn call(&mut self, path: &str, body: &[u8]) -> Option<Reply> {
        let reply = match path {
            "/Plugin.Activate" => self.activate(),
            "/NetworkDriver.GetCapabilities" => {
                Ok(json!({"Scope": "local", "ConnectivityScope": "local"}))
            }
            "/NetworkDriver.CreateNetwork" => decode(body).and_then(|r| self.create_network(r)),
            "/NetworkDriver.DeleteNetwork" => decode(body).and_then(|r| self.delete_network(r)),
            "/NetworkDriver.AllocateNetwork" => {
                decode::<api::NetworkRef>(body).map(|_| json!({"Options": {}}))
            }
            "/NetworkDriver.FreeNetwork" => decode::<api::NetworkRef>(body).map(|_| json!({})),
            "/NetworkDriver.CreateEndpoint" => decode(body).and_then(|r| self.create_endpoint(r)),
            "/NetworkDriver.DeleteEndpoint" => decode(body).and_then(|r| self.delete_endpoint(r)),
            "/NetworkDriver.EndpointOperInfo" => decode(body).and_then(|r| self.oper_info(r)),
            "/NetworkDriver.Join" => decode(body).and_then(|r| self.join(r)),
            "/NetworkDriver.Leave" => decode::<api::EndpointRef>(body).map(|_| json!({})),
            "/NetworkDriver.DiscoverNew" | "/NetworkDriver.DiscoverDelete" => {
                decode::<Value>(body).map(|_| json!({}))
            }
            // Published ports are the CNCI's business (public IPs); nothing to program here.
            "/NetworkDriver.ProgramExternalConnectivity"
            | "/NetworkDriver.RevokeExternalConnectivity" => {
                decode::<api::EndpointRef>(body).map(|_| json!({}))
            }
            "/IpamDriver.GetCapabilities" => Ok(json!({
                "RequiresMACAddress": false,
                "RequiresRequestReplay": false
            })),
            "/IpamDriver.GetDefaultAddressSpaces" => Ok(json!({
                "LocalDefaultAddressSpace": "ciao-local",
                "GlobalDefaultAddressSpace": "ciao-global"
            })),
            "/IpamDriver.RequestPool" => decode(body).and_then(|r| self.request_pool(r)),
            "/IpamDriver.ReleasePool" => decode(body).and_then(|r| self.release_pool(r)),
            "/IpamDriver.RequestAddress" => decode(body).and_then(|r| self.request_address(r)),
            "/IpamDriver.ReleaseAddress" => decode(body).and_then(|r| self.release_address(r)),
            _ => return None,
        };
        Some(reply)
    }

    /// dockerd activates the plugin at each start; its firewall may be new, so our bridges get
    /// their DOCKER-USER accept rules again (idempotent).
    fn activate(&mut self) -> Reply {
        // A firewall failure must not make the driver unusable: log it, containers still start.
        for (bridge, e) in self.node.allow_bridges()? {
            tracing::warn!("DOCKER-USER rule for {bridge}: {e}");
        }
        Ok(json!({"Implements": ["NetworkDriver", "IpamDriver"]}))
    }

    // --- networks ---

    pub(crate) fn network(&self, id: &str) -> Result<NetworkRecord, PluginError> {
        self.store
            .network(id)?
            .ok_or_else(|| PluginError::Unknown(format!("unknown network {id:?}")))
    }

    fn create_network(&mut self, r: api::CreateNetwork) -> Reply {
        check_id("network", &r.network_id)?;
        if self.store.network(&r.network_id)?.is_some() {
            return Err(PluginError::Conflict(format!(
                "network {} already exists",
                r.network_id
            )));
        }
        if r.ipv6_data.as_ref().is_some_and(|v| !v.is_empty()) {
            return Err(PluginError::Invalid(
                "ciao networks are IPv4 only: drop --ipv6".into(),
            ));
        }
        let [data] = r.ipv4_data.as_slice() else {
            return Err(PluginError::Invalid(format!(
                "a ciao network has exactly one IPv4 subnet (--subnet), got {}",
                r.ipv4_data.len()
            )));
        };
        let subnet = options::parse_subnet("subnet", &data.pool)?;
        let gateway = match data.gateway.as_str() {
            "" => None,
            gw => Some(options::parse_addr(gw)?),
        };
        let _ = &data.address_space;
        let mut opts = options::generic_options(&r.options)?;
        options::check_keys(&opts)?;
        // IPv4Data names the subnet, not the PoolID: take the newest unbound pool of that subnet
        // and gateway (Docker runs RequestPool, RequestAddress, CreateNetwork back to back).
        let mut pool = self
            .store
            .pools()?
            .into_iter()
            .filter(|p| {
                p.network.is_none()
                    && p.pool == subnet
                    && (gateway.is_none() || p.gateway.is_none() || p.gateway == gateway)
            })
            .max_by_key(|p| p.created)
            .ok_or_else(|| {
                PluginError::Invalid(format!(
                    "no ciao address pool for {subnet}: create the network with --ipam-driver ciao"
                ))
            })?;
        if let Some(tenant) = pool.tenant {
            same_tenant(&mut opts, tenant)?;
        }
        let mut config = options::subnet_config(&opts, subnet, pool.sub_pool, gateway)?;
        if pool.node_range.is_some() {
            // The controller's exact range, as the CNI plugin and the QEMU hooks use it.
            config.node_range = pool.node_range;
            config.validate()?;
        }
        let allowed = options::allowed_addresses(&opts, &config)?;
        let security_groups = options::security_groups(&opts)?;
        let key = config.net_key();
        if let Some(other) = self
            .store
            .networks()?
            .into_iter()
            .find(|n| n.config.net_key() == key)
        {
            return Err(PluginError::Conflict(format!(
                "tenant {} subnet {subnet} already has Docker network {} on this node",
                config.tenant, other.id
            )));
        }
        self.store.put_network(&NetworkRecord {
            id: r.network_id.clone(),
            pool_id: pool.id.clone(),
            config,
            allowed,
            security_groups,
        })?;
        pool.network = Some(r.network_id);
        self.store.put_pool(&pool)?;
        Ok(json!({}))
    }

    fn delete_network(&mut self, r: api::NetworkRef) -> Reply {
        let Some(net) = self.store.network(&r.network_id)? else {
            return Ok(json!({}));
        };
        let left: Vec<String> = self
            .store
            .endpoints()?
            .into_iter()
            .filter(|e| e.network == net.id)
            .map(|e| e.id)
            .collect();
        if !left.is_empty() {
            return Err(PluginError::Conflict(format!(
                "network {} still has endpoints {left:?}",
                net.id
            )));
        }
        let key = net.config.net_key();
        let ours = netcore::ipam::hold_owner(HOLDER);
        for (ip, owner) in self.node.reservations(&key)? {
            if owner == ours {
                self.node.release_hold(&key, ip, HOLDER)?;
            }
        }
        if let Some(mut pool) = self.store.pool(&net.pool_id)? {
            pool.network = None;
            self.store.put_pool(&pool)?;
        }
        self.store.remove_network(&net.id)?;
        Ok(json!({}))
    }

    // --- endpoints ---

    fn create_endpoint(&mut self, r: api::CreateEndpoint) -> Reply {
        let net = self.network(&r.network_id)?;
        check_id("endpoint", &r.endpoint_id)?;
        let iface = r.interface.ok_or_else(|| {
            PluginError::Invalid("CreateEndpoint without an Interface: no address to attach".into())
        })?;
        if let Some(old) = self.store.endpoint(&r.endpoint_id)? {
            // dockerd retries a call whose connection broke (the plugin was killed after the
            // attach but before replying): the same request gets the same answer.
            let same = old.network == net.id
                && options::parse_addr(&iface.address).ok() == Some(old.ip)
                && self
                    .node
                    .vnic(&net.config.net_key(), &vnic_id(&old.id))?
                    .is_some();
            if same {
                return Ok(if iface.mac_address.is_empty() {
                    json!({"Interface": {"MacAddress": old.mac}})
                } else {
                    json!({"Interface": {}})
                });
            }
            return Err(PluginError::Conflict(format!(
                "endpoint {} already exists",
                r.endpoint_id
            )));
        }
        if !iface.address_ipv6.is_empty() {
            return Err(PluginError::Invalid("ciao networks are IPv4 only".into()));
        }
        if iface.address.is_empty() {
            return Err(PluginError::Invalid(
                "CreateEndpoint without an address: use --ipam-driver ciao".into(),
            ));
        }
        let ip = options::parse_addr(&iface.address)?;
        let security_groups =
            options::endpoint_security_groups(&net.security_groups, r.options.as_ref())?;
        let mac = match iface.mac_address.as_str() {
            "" => None,
            text => Some(options::parse_mac(text)?),
        };
        let key = net.config.net_key();
        let id = vnic_id(&r.endpoint_id);
        // The record comes first, so a kill after the attach still knows the endpoint.
        let mut record = EndpointRecord {
            id: r.endpoint_id.clone(),
            network: net.id.clone(),
            ip,
            mac: mac.map(netcore::ids::format_mac).unwrap_or_default(),
            ifname: id.ifname.clone(),
        };
        self.store.put_endpoint(&record)?;
        let attached = self
            .node
            .rename_hold(&key, ip, HOLDER, &id.key())
            .and_then(|()| {
                self.node.attach(
                    &net.config,
                    &VnicRequest {
                        id: id.clone(),
                        kind: VnicKind::Handoff {
                            ifname: id.ifname.clone(),
                        },
                        ip: Some(ip),
                        mac,
                        default_route: false,
                        allowed: net.allowed.clone(),
                        security_groups,
                    },
                )
            });
        let att = match attached {
            Ok(att) => att,
            Err(e) => {
                self.restore_hold(&key, ip, &id);
                self.store.remove_endpoint(&record.id)?;
                return Err(e.into());
            }
        };
        record.mac = att.vnic.mac.clone();
        self.store.put_endpoint(&record)?;
        // Docker fills in only what it left empty: the MAC, when the user gave none.
        let reply = if mac.is_none() {
            json!({"Interface": {"MacAddress": att.vnic.mac}})
        } else {
            json!({"Interface": {}})
        };
        Ok(reply)
    }

    /// Gives an endpoint's address back to Docker's hold until ReleaseAddress.
    fn restore_hold(&mut self, key: &str, ip: Ipv4Addr, id: &VnicId) {
        let renamed = self.node.rename_hold(key, ip, &id.key(), HOLDER);
        if renamed.is_err() {
            // The attach's undo or the detach released it: hold it again, if still free.
            if let Some(cfg) = self.find_config(key) {
                if let Err(e) = self.node.hold_address(&cfg, HOLDER, Some(ip)) {
                    tracing::warn!("could not hold {ip} again: {e}");
                }
            }
        }
    }

    fn find_config(&self, key: &str) -> Option<netcore::SubnetConfig> {
        self.store
            .networks()
            .ok()?
            .into_iter()
            .map(|n| n.config)
            .find(|c| c.net_key() == key)
    }

    fn delete_endpoint(&mut self, r: api::EndpointRef) -> Reply {
        check_id("endpoint", &r.endpoint_id)?;
        // Deletes are idempotent: an unknown network or endpoint has nothing left to delete.
        let Some(net) = self.store.network(&r.network_id)? else {
            return Ok(json!({}));
        };
        let key = net.config.net_key();
        let id = vnic_id(&r.endpoint_id);
        let ip = match self.store.endpoint(&r.endpoint_id)? {
            Some(e) => Some(e.ip),
            None => self.node.vnic(&key, &id)?.map(|v| v.ip),
        };
        self.node.detach(&key, &id)?;
        if let Some(ip) = ip {
            self.restore_hold(&key, ip, &id);
        }
        self.store.remove_endpoint(&r.endpoint_id)?;
        Ok(json!({}))
    }

    fn endpoint(&self, network: &str, id: &str) -> Result<EndpointRecord, PluginError> {
        match self.store.endpoint(id)? {
            Some(e) if e.network == network => Ok(e),
            _ => Err(PluginError::Unknown(format!(
                "unknown endpoint {id:?} in network {network:?}"
            ))),
        }
    }

    fn join(&mut self, r: api::Join) -> Reply {
        let net = self.network(&r.network_id)?;
        let ep = self.endpoint(&net.id, &r.endpoint_id)?;
        if r.sandbox_key.is_empty() {
            return Err(PluginError::Invalid("Join without a SandboxKey".into()));
        }
        if self
            .node
            .vnic(&net.config.net_key(), &vnic_id(&ep.id))?
            .is_none()
        {
            return Err(PluginError::Unknown(format!(
                "the interface of endpoint {} is gone from this node; remove and re-create the container",
                ep.id
            )));
        }
        Ok(json!({
            "InterfaceName": {"SrcName": ep.ifname, "DstPrefix": "eth"},
            "Gateway": net.config.gateway().to_string(),
            "StaticRoutes": [],
            "DisableGatewayService": false
        }))
    }

    fn oper_info(&mut self, r: api::EndpointRef) -> Reply {
        let net = self.network(&r.network_id)?;
        let ep = self.endpoint(&net.id, &r.endpoint_id)?;
        let vnic = self.node.vnic(&net.config.net_key(), &vnic_id(&ep.id))?;
        let mut value = BTreeMap::new();
        value.insert("tenant", net.config.tenant.to_string());
        value.insert("subnet", net.config.subnet.to_string());
        value.insert("address", ep.ip.to_string());
        value.insert("mac", ep.mac.clone());
        if let Some(v) = vnic {
            value.insert("host_veth", v.host_ifname);
        }
        Ok(json!({ "Value": value }))
    }
}

/// `-o tenant` of a network whose pool came with `--ipam-opt tenant`: absent (then the pool's)
/// or the same.
fn same_tenant(opts: &mut BTreeMap<String, String>, tenant: uuid::Uuid) -> Result<(), PluginError> {
    match opts.get("tenant") {
        None => {
            opts.insert("tenant".into(), tenant.to_string());
            Ok(())
        }
        Some(given) if given.trim().parse::<uuid::Uuid>().ok() == Some(tenant) => Ok(()),
        Some(given) => Err(PluginError::Invalid(format!(
            "-o tenant={given} differs from --ipam-opt tenant={tenant}: give the tenant once \
             (--ipam-opt tenant) or the same in both"
        ))),
    }
}
