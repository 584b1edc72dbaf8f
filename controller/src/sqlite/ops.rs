//! [`Store`] for [`SqliteStore`]: each method is one transaction around the steps in
//! `decide` and the reads in `rows`.

use std::net::Ipv4Addr;

use ciao_types::TunnelKind;
use ipnet::Ipv4Net;
use rusqlite::params;
use uuid::Uuid;

use super::{auto, decide, forward, ingress_rule, membership, rows, security, SqliteStore};
use crate::auto_subnet::TenantSubnets;
use crate::model::{
    AutoSlice, Cnci, CnciState, ComputeNode, NetworkNode, PublicIpAssignment, SubnetAssignment,
    Tenant, TenantState, TenantSubnet,
};
use crate::pool::PublicPool;
use crate::security::forward::{Forward, ForwardSpec, SshAccess, SshPolicy};
use crate::security::ingress_rule::{
    IngressAction, IngressRule, IngressRuleSpec, TenantIngressRules,
};
use crate::security::outcome::{IngressOutcome, NodeGroupsOutcome};
use crate::security::{RuleSpec, SecurityGroup, SecurityRule};
use crate::store::{NetworkNodeReport, PortMembership, Result, Store, StoreError};

impl Store for SqliteStore {
    fn network_node_connected(&self, report: &NetworkNodeReport) -> Result<NetworkNode> {
        self.write(|tx| {
            tx.prepare_cached(
                "INSERT INTO network_nodes (uuid, underlay, external_device, capacity, connected)
                 VALUES (?1, ?2, ?3, ?4, 1)
                 ON CONFLICT (uuid) DO UPDATE SET underlay = excluded.underlay,
                     external_device = excluded.external_device,
                     capacity = excluded.capacity, connected = 1",
            )?
            .execute(params![
                report.uuid.to_string(),
                report.underlay.to_string(),
                report.external_device,
                report.capacity
            ])?;
            Ok(NetworkNode {
                uuid: report.uuid,
                underlay: report.underlay,
                external_device: report.external_device.clone(),
                capacity: report.capacity,
                connected: true,
            })
        })
    }

    fn node_disconnected(&self, node: Uuid) -> Result<()> {
        self.write(|tx| {
            for table in ["network_nodes", "compute_nodes"] {
                let sql = format!("UPDATE {table} SET connected = 0 WHERE uuid = ?1");
                tx.prepare_cached(&sql)?.execute([node.to_string()])?;
            }
            Ok(())
        })
    }

    fn compute_node_connected(&self, node: Uuid, underlay: Ipv4Addr) -> Result<ComputeNode> {
        self.write(|tx| {
            tx.prepare_cached(
                "INSERT INTO compute_nodes (uuid, underlay, connected) VALUES (?1, ?2, 1)
                 ON CONFLICT (uuid) DO UPDATE SET underlay = excluded.underlay, connected = 1",
            )?
            .execute(params![node.to_string(), underlay.to_string()])?;
            Ok(ComputeNode {
                uuid: node,
                underlay,
                connected: true,
            })
        })
    }

    fn ensure_cnci(&self, tenant: Uuid) -> Result<Cnci> {
        self.write(|tx| {
            decide::active_tenant(tx, tenant)?;
            decide::live_or_placed_cnci(tx, tenant)
        })
    }

    fn request_subnet(
        &self,
        tenant: Uuid,
        cidr: Ipv4Net,
        kind: TunnelKind,
        compute_node: Uuid,
    ) -> Result<SubnetAssignment> {
        self.write(|tx| {
            decide::active_tenant(tx, tenant)?;
            let subnet = decide::existing_or_new_subnet(tx, tenant, cidr, kind)?;
            let cnci = decide::live_or_placed_cnci(tx, tenant)?;
            decide::subnet_hosted_by(tx, tenant, cidr, compute_node)?;
            Ok(SubnetAssignment { cnci, subnet })
        })
    }

    fn auto_subnet(
        &self,
        tenant: Uuid,
        compute_node: Uuid,
        plan: &TenantSubnets,
        kind: TunnelKind,
    ) -> Result<AutoSlice> {
        self.write(|tx| auto::slice_for(tx, tenant, compute_node, plan, kind))
    }

    fn auto_slices(&self, tenant: Uuid) -> Result<Vec<AutoSlice>> {
        self.read(|tx| auto::slices(tx, tenant))
    }

    fn subnet_left(&self, tenant: Uuid, cidr: Ipv4Net, compute_node: Uuid) -> Result<()> {
        self.write(|tx| {
            tx.prepare_cached(
                "DELETE FROM subnet_nodes WHERE tenant = ?1 AND cidr = ?2 AND compute_node = ?3",
            )?
            .execute(params![
                tenant.to_string(),
                cidr.to_string(),
                compute_node.to_string()
            ])?;
            Ok(())
        })
    }

    fn set_cnci_state(
        &self,
        cnci: Uuid,
        state: CnciState,
        underlay: Option<Ipv4Addr>,
    ) -> Result<Cnci> {
        self.write(|tx| {
            let mut found = rows::find_cnci(tx, cnci)?.ok_or(StoreError::UnknownCnci(cnci))?;
            if !found.state.may_become(state) {
                return Err(StoreError::CnciTransition {
                    cnci,
                    from: found.state,
                    to: state,
                });
            }
            found.state = state;
            found.underlay = underlay.unwrap_or(found.underlay);
            tx.prepare_cached("UPDATE cncis SET state = ?2, underlay = ?3 WHERE uuid = ?1")?
                .execute(params![
                    cnci.to_string(),
                    state.as_str(),
                    found.underlay.to_string()
                ])?;
            let tenant_deleting = rows::find_tenant(tx, found.tenant)?
                .is_some_and(|t| t.state == TenantState::Deleting);
            if state == CnciState::Gone && tenant_deleting {
                decide::forget_tenant(tx, found.tenant)?;
            }
            Ok(found)
        })
    }

    fn delete_tenant(&self, tenant: Uuid) -> Result<()> {
        self.write(|tx| {
            rows::find_tenant(tx, tenant)?.ok_or(StoreError::UnknownTenant(tenant))?;
            tx.prepare_cached("UPDATE tenants SET state = 'deleting' WHERE uuid = ?1")?
                .execute([tenant.to_string()])?;
            match rows::live_cnci(tx, tenant)? {
                Some(cnci) => {
                    tx.prepare_cached("UPDATE cncis SET state = 'retiring' WHERE uuid = ?1")?
                        .execute([cnci.uuid.to_string()])?;
                }
                None => decide::forget_tenant(tx, tenant)?,
            }
            Ok(())
        })
    }

    fn set_public_pools(&self, pools: &[PublicPool]) -> Result<()> {
        for (i, a) in pools.iter().enumerate() {
            if let Some(b) = pools[i + 1..].iter().find(|b| a.overlaps(**b)) {
                return Err(StoreError::PoolsOverlap(*a, *b));
            }
        }
        self.write(|tx| {
            let assigned = rows::all(
                tx,
                "SELECT tenant, private, public FROM public_ips",
                rows::public_ip,
            )?;
            let forward_ips = rows::all(
                tx,
                "SELECT uuid, forward_ip FROM tenants WHERE forward_ip IS NOT NULL",
                |row| {
                    Ok(PublicIpAssignment {
                        tenant: rows::text(row, 0)?,
                        private: Ipv4Addr::UNSPECIFIED,
                        public: rows::text(row, 1)?,
                    })
                },
            )?;
            if let Some(orphan) = assigned
                .iter()
                .chain(&forward_ips)
                .find(|a| !pools.iter().any(|p| p.contains(a.public)))
            {
                return Err(StoreError::AssignedIpOutsidePools {
                    public: orphan.public,
                    tenant: orphan.tenant,
                });
            }
            tx.execute("DELETE FROM public_pools", [])?;
            for (position, pool) in pools.iter().enumerate() {
                tx.execute(
                    "INSERT INTO public_pools (position, pool) VALUES (?1, ?2)",
                    params![position, pool.to_string()],
                )?;
            }
            Ok(())
        })
    }

    fn assign_public_ip(&self, tenant: Uuid, private: Ipv4Addr) -> Result<PublicIpAssignment> {
        self.write(|tx| decide::public_ip_for(tx, tenant, private))
    }

    fn release_public_ip(
        &self,
        tenant: Uuid,
        public: Ipv4Addr,
    ) -> Result<Option<PublicIpAssignment>> {
        self.write(|tx| {
            rows::find_tenant(tx, tenant)?.ok_or(StoreError::UnknownTenant(tenant))?;
            let Some(assignment) = rows::public_ip_of(tx, public)? else {
                return Ok(None);
            };
            if assignment.tenant != tenant {
                return Err(StoreError::PublicIpNotOwned {
                    public,
                    owner: assignment.tenant,
                    tenant,
                });
            }
            tx.prepare_cached("DELETE FROM public_ips WHERE public = ?1")?
                .execute([public.to_string()])?;
            Ok(Some(assignment))
        })
    }

    fn network_nodes(&self) -> Result<Vec<NetworkNode>> {
        let sql = format!(
            "SELECT {} FROM network_nodes ORDER BY uuid",
            rows::NETWORK_NODE_COLUMNS
        );
        self.read(|tx| rows::all(tx, &sql, rows::network_node))
    }

    fn compute_nodes(&self) -> Result<Vec<ComputeNode>> {
        self.read(|tx| {
            rows::all(
                tx,
                "SELECT uuid, underlay, connected FROM compute_nodes ORDER BY uuid",
                rows::compute_node,
            )
        })
    }

    fn tenants(&self) -> Result<Vec<Tenant>> {
        self.read(|tx| {
            rows::all(
                tx,
                "SELECT uuid, state FROM tenants ORDER BY uuid",
                rows::tenant,
            )
        })
    }

    fn tenant(&self, tenant: Uuid) -> Result<Option<Tenant>> {
        self.read(|tx| rows::find_tenant(tx, tenant))
    }

    fn cncis(&self) -> Result<Vec<Cnci>> {
        let sql = format!(
            "SELECT {} FROM cncis ORDER BY tenant, uuid",
            rows::CNCI_COLUMNS
        );
        self.read(|tx| rows::all(tx, &sql, rows::cnci))
    }

    fn cnci(&self, cnci: Uuid) -> Result<Option<Cnci>> {
        self.read(|tx| rows::find_cnci(tx, cnci))
    }

    fn cnci_of(&self, tenant: Uuid) -> Result<Option<Cnci>> {
        self.read(|tx| rows::live_cnci(tx, tenant))
    }

    fn cncis_on(&self, network_node: Uuid) -> Result<Vec<Cnci>> {
        self.read(|tx| {
            let sql = format!(
                "SELECT {} FROM cncis WHERE network_node = ?1 ORDER BY uuid",
                rows::CNCI_COLUMNS
            );
            let mut stmt = tx.prepare_cached(&sql)?;
            let found = stmt.query_map([network_node.to_string()], rows::cnci)?;
            Ok(found.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn subnets(&self, tenant: Uuid) -> Result<Vec<TenantSubnet>> {
        self.read(|tx| rows::tenant_subnets(tx, tenant))
    }

    fn subnet_nodes(&self, tenant: Uuid, cidr: Ipv4Net) -> Result<Vec<Uuid>> {
        self.read(|tx| {
            rows::find_subnet(tx, tenant, cidr)?
                .ok_or(StoreError::UnknownSubnet { tenant, cidr })?;
            let mut stmt = tx.prepare_cached(
                "SELECT compute_node FROM subnet_nodes WHERE tenant = ?1 AND cidr = ?2
                 ORDER BY compute_node",
            )?;
            let nodes = stmt.query_map(params![tenant.to_string(), cidr.to_string()], |row| {
                rows::text(row, 0)
            })?;
            Ok(nodes.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn public_ips(&self) -> Result<Vec<PublicIpAssignment>> {
        self.read(|tx| {
            rows::all(
                tx,
                "SELECT tenant, private, public FROM public_ips ORDER BY public",
                rows::public_ip,
            )
        })
    }

    fn public_pools(&self) -> Result<Vec<PublicPool>> {
        self.read(|tx| rows::pools(tx))
    }

    fn cncis_to_stop(&self) -> Result<Vec<Cnci>> {
        let sql = format!(
            "SELECT {} FROM cncis c WHERE state = 'retiring'
             AND NOT EXISTS (SELECT 1 FROM subnet_nodes s WHERE s.tenant = c.tenant)
             ORDER BY uuid",
            rows::CNCI_COLUMNS
        );
        self.read(|tx| rows::all(tx, &sql, rows::cnci))
    }

    fn set_ssh_policy(&self, policy: SshPolicy) -> Result<()> {
        self.write(|tx| forward::set_policy(tx, policy))
    }

    fn security_groups(&self, tenant: Uuid) -> Result<Vec<SecurityGroup>> {
        self.read(|tx| {
            security::known_tenant(tx, tenant, false)?;
            security::groups(tx, tenant)
        })
    }

    fn security_group(&self, tenant: Uuid, group: &str) -> Result<SecurityGroup> {
        self.read(|tx| {
            security::known_tenant(tx, tenant, false)?;
            security::group(tx, tenant, group)
        })
    }

    fn create_security_group(
        &self,
        tenant: Uuid,
        name: &str,
        description: &str,
    ) -> Result<SecurityGroup> {
        self.write(|tx| {
            security::known_tenant(tx, tenant, true)?;
            security::create_group(tx, tenant, name, description)
        })
    }

    fn delete_security_group(&self, tenant: Uuid, group: &str) -> Result<SecurityGroup> {
        self.write(|tx| {
            security::known_tenant(tx, tenant, true)?;
            security::delete_group(tx, tenant, group)
        })
    }

    fn security_rules(&self, tenant: Uuid) -> Result<Vec<SecurityRule>> {
        self.read(|tx| {
            security::known_tenant(tx, tenant, false)?;
            security::rules(tx, tenant)
        })
    }

    fn add_security_rule(
        &self,
        tenant: Uuid,
        group: &str,
        spec: RuleSpec,
        remote_group: Option<&str>,
    ) -> Result<SecurityRule> {
        self.write(|tx| {
            security::known_tenant(tx, tenant, true)?;
            security::add_rule(tx, tenant, group, spec, remote_group)
        })
    }

    fn delete_security_rule(&self, tenant: Uuid, rule: Uuid) -> Result<SecurityRule> {
        self.write(|tx| {
            security::known_tenant(tx, tenant, true)?;
            security::delete_rule(tx, tenant, rule)
        })
    }

    fn forwards(&self, tenant: Uuid) -> Result<Vec<Forward>> {
        self.read(|tx| {
            security::known_tenant(tx, tenant, false)?;
            forward::forwards(tx, tenant)
        })
    }

    fn add_forward(&self, tenant: Uuid, spec: &ForwardSpec) -> Result<Forward> {
        self.write(|tx| {
            security::known_tenant(tx, tenant, true)?;
            forward::add(tx, tenant, spec)
        })
    }

    fn delete_forward(&self, tenant: Uuid, forward_id: Uuid) -> Result<Forward> {
        self.write(|tx| {
            security::known_tenant(tx, tenant, true)?;
            forward::delete(tx, tenant, forward_id)
        })
    }

    fn set_ssh(&self, tenant: Uuid, enabled: bool) -> Result<SshAccess> {
        self.write(|tx| {
            security::known_tenant(tx, tenant, true)?;
            forward::set_ssh(tx, tenant, enabled)
        })
    }

    fn ssh_access(&self, tenant: Uuid) -> Result<SshAccess> {
        self.read(|tx| forward::access(tx, tenant))
    }

    fn ingress_rules(&self, tenant: Uuid) -> Result<TenantIngressRules> {
        self.read(|tx| {
            security::known_tenant(tx, tenant, false)?;
            ingress_rule::rules(tx, tenant)
        })
    }

    fn add_ingress_rule(
        &self,
        tenant: Uuid,
        spec: &IngressRuleSpec,
        position: Option<u32>,
    ) -> Result<IngressRule> {
        self.write(|tx| {
            security::known_tenant(tx, tenant, true)?;
            ingress_rule::add(tx, tenant, spec, position)
        })
    }

    fn delete_ingress_rule(&self, tenant: Uuid, rule: Uuid) -> Result<IngressRule> {
        self.write(|tx| {
            security::known_tenant(tx, tenant, true)?;
            ingress_rule::delete(tx, tenant, rule)
        })
    }

    fn set_ingress_default(
        &self,
        tenant: Uuid,
        default: IngressAction,
    ) -> Result<TenantIngressRules> {
        self.write(|tx| {
            security::known_tenant(tx, tenant, true)?;
            ingress_rule::set_default(tx, tenant, default)?;
            ingress_rule::rules(tx, tenant)
        })
    }

    fn record_ingress_outcome(&self, outcome: &IngressOutcome) -> Result<()> {
        self.write(|tx| ingress_rule::record_outcome(tx, outcome))
    }

    fn ingress_outcome(&self, tenant: Uuid) -> Result<Option<IngressOutcome>> {
        self.read(|tx| ingress_rule::outcome(tx, tenant))
    }

    fn record_groups_sent(&self, node: Uuid, tenant: Uuid, generation: u64) -> Result<()> {
        self.write(|tx| membership::record_sent(tx, node, tenant, generation))
    }

    fn record_groups_answer(
        &self,
        node: Uuid,
        tenant: Uuid,
        generation: u64,
        refused: Option<&str>,
        at: u64,
    ) -> Result<()> {
        self.write(|tx| membership::record_answer(tx, node, tenant, generation, refused, at))
    }

    fn groups_outcomes(&self, tenant: Uuid) -> Result<Vec<NodeGroupsOutcome>> {
        self.read(|tx| membership::outcomes(tx, tenant))
    }

    fn set_port_groups(
        &self,
        node: Uuid,
        tenant: Uuid,
        ports: &[(Ipv4Addr, Vec<String>)],
    ) -> Result<bool> {
        self.write(|tx| membership::replace(tx, node, tenant, ports))
    }

    fn port_groups(&self, tenant: Uuid) -> Result<Vec<PortMembership>> {
        self.read(|tx| membership::of_tenant(tx, tenant))
    }

    fn next_sg_generation(&self) -> Result<u64> {
        self.write(|tx| membership::next_generation(tx))
    }
}
