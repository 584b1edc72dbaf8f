//! Taking a CNCI down (`destroy`) and reading what it programmed (`show`), without a [`Hub`]:
//! neither may create the tenant namespace.
//!
//! [`Hub`]: super::Hub

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::os::fd::AsFd;

use ipnet::Ipv4Net;
use netcore::kernel::Kernel;
use netcore::netlink::Netlink;

use super::{alias, tunnel, HubHost, HubKernel, System};
use crate::error::{Error, ErrorList, Result};
use crate::names;
use crate::state::{AgentRecord, Desired, PublicIpRecord, SubnetRecord};

/// Removes everything an agent made: public IP proxy entries, its underlay rules, the uplink,
/// leftovers in the underlay namespace, and the tenant namespace with all its links. Every
/// step is attempted whatever failed before it (a refused nft deletion must not keep the
/// namespace alive), and every failure is returned.
pub fn destroy(
    agent: &AgentRecord,
    public: &BTreeMap<Ipv4Addr, PublicIpRecord>,
) -> std::result::Result<(), ErrorList> {
    destroy_with(Netlink::open().map_err(Error::from), &System, agent, public)
}

/// [`destroy`] with a given underlay handle (or the failure to open one) and host.
pub fn destroy_with<K: Kernel>(
    underlay: Result<K>,
    host: &dyn HubHost,
    agent: &AgentRecord,
    public: &BTreeMap<Ipv4Addr, PublicIpRecord>,
) -> std::result::Result<(), ErrorList> {
    let mut failed = ErrorList::default();
    let mut underlay = failed.attempt(underlay);
    if let Some(underlay) = underlay.as_mut() {
        remove_proxy_entries(underlay, agent, public, &mut failed);
    }
    failed.attempt(host.remove_uplink(&super::base::uplink_of(agent)));
    failed.attempt(host.delete_table(None, &names::legacy_underlay_table(agent.uuid)));
    if let Some(underlay) = underlay.as_mut() {
        remove_labelled_links(underlay, agent, &mut failed);
    }
    failed.attempt(host.delete_netns(&agent.netns));
    failed.into_result()
}

fn remove_proxy_entries<K: Kernel>(
    underlay: &mut K,
    agent: &AgentRecord,
    public: &BTreeMap<Ipv4Addr, PublicIpRecord>,
    failed: &mut ErrorList,
) {
    let Some(ext) = &agent.external_dev else {
        return;
    };
    let Some(Some(ext)) = failed.attempt(underlay.link_by_name(ext).map_err(Error::from)) else {
        return;
    };
    for ip in public.keys() {
        failed.attempt(
            underlay
                .delete_proxy_neighbour(ext.index, *ip)
                .map_err(Error::from),
        );
    }
}

/// Deletes every underlay link whose alias marks it as this agent's (the uplink, tunnel
/// devices interrupted before their move).
fn remove_labelled_links<K: Kernel>(underlay: &mut K, agent: &AgentRecord, failed: &mut ErrorList) {
    let prefix = alias(agent, "");
    let Some(links) = failed.attempt(underlay.links().map_err(Error::from)) else {
        return;
    };
    for link in links {
        if link
            .alias
            .as_deref()
            .is_some_and(|a| a.starts_with(&prefix))
        {
            failed.attempt(underlay.delete_link(link.index).map_err(Error::from));
        }
    }
}

/// What the kernel reaches per recorded subnet, read without creating anything: an absent
/// tenant namespace reaches nothing (`show`).
pub fn programmed_now(
    agent: &AgentRecord,
    desired: &Desired,
) -> Result<BTreeMap<Ipv4Net, BTreeSet<Ipv4Addr>>> {
    let Some(ns) = System.open_netns(&agent.netns)? else {
        return Ok(BTreeMap::new());
    };
    match Netlink::open_in(ns.as_fd()) {
        Ok(mut tenant) => programmed_in(&mut tenant, agent, desired),
        Err(_) => Ok(BTreeMap::new()),
    }
}

/// What the kernel reaches per recorded subnet through `tenant`, a handle in the tenant
/// namespace.
pub fn programmed_in<K: HubKernel>(
    tenant: &mut K,
    agent: &AgentRecord,
    desired: &Desired,
) -> Result<BTreeMap<Ipv4Net, BTreeSet<Ipv4Addr>>> {
    let mut out = BTreeMap::new();
    for rec in desired.subnets.values() {
        out.insert(rec.subnet, programmed(tenant, agent.uuid, rec)?);
    }
    Ok(out)
}

/// The compute nodes whose tunnel end the kernel has for `rec`, read through `tenant`, a
/// handle in the tenant namespace of CNCI `cnci`.
pub fn programmed<K: HubKernel>(
    tenant: &mut K,
    cnci: uuid::Uuid,
    rec: &SubnetRecord,
) -> Result<BTreeSet<Ipv4Addr>> {
    tunnel::of::<K>(rec).programmed(tenant, cnci, rec)
}
