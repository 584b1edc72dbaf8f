//! Controller mode: a subnet the controller refused for good (it overlaps another of the
//! tenant's subnets elsewhere, has host bits set, no tunnel id is left, ...).
//!
//! The refusal is recorded in the subnet's record, so that `ciao-node run` stops asking for it
//! (also after a restart), `ciao-node show` says why, and a later attach into the subnet fails
//! naming the reason. The workloads already attached keep their local traffic; the record goes
//! with the subnet's last VNIC, as any subnet's does.

use ipnet::Ipv4Net;
use serde::Serialize;
use uuid::Uuid;

use crate::assign::now_unix;
use crate::attach::Node;
use crate::error::{Error, Result};
use crate::ids;
use crate::kernel::Kernel;
use crate::state::{NetRecord, Refusal};

/// What [`Node::refuse_cnci`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RefuseOutcome {
    /// The subnet awaited its CNCI: it is now refused and no longer asked for.
    Recorded,
    /// The subnet was already refused for this very reason.
    Unchanged,
    /// The subnet has its CNCI already (an assignment overtook the refusal): kept as it is.
    Assigned,
    /// The node does not host the subnet (its last workload left meanwhile).
    NotHosted,
    /// The subnet's workloads name their CNCI (static mode): the controller has no say.
    Static,
}

impl<K: Kernel> Node<K> {
    /// Records that the controller refuses `subnet` of `tenant` for `reason`.
    pub fn refuse_cnci(
        &mut self,
        tenant: Uuid,
        subnet: Ipv4Net,
        reason: &str,
    ) -> Result<RefuseOutcome> {
        let key = ids::net_key(tenant, subnet.trunc());
        let (locked, _) = self.lock_and_recover()?;
        let Some(net) = locked.net(&key)? else {
            return Ok(RefuseOutcome::NotHosted);
        };
        if !net.controlled {
            return Ok(RefuseOutcome::Static);
        }
        if net.config.cnci.is_some() {
            return Ok(RefuseOutcome::Assigned);
        }
        if net.refused.as_ref().is_some_and(|r| r.reason == reason) {
            return Ok(RefuseOutcome::Unchanged);
        }
        let mut next = net.clone();
        next.awaiting_cnci_since = None;
        next.refused = Some(Refusal {
            reason: reason.to_string(),
            since: now_unix(),
        });
        locked.write_net(&next)?;
        Ok(RefuseOutcome::Recorded)
    }
}

/// The error of an attach into a refused subnet: an invalid `subnet`, naming the reason.
pub(crate) fn check_not_refused(net: &NetRecord) -> Result<()> {
    match &net.refused {
        None => Ok(()),
        Some(r) => Err(Error::invalid(
            "subnet",
            format!(
                "{} of tenant {} was refused by the controller: {}; \
                 give the workload another subnet",
                net.config.subnet, net.config.tenant, r.reason
            ),
        )),
    }
}

/// The error of an attach whose new subnet overlaps another subnet of the same tenant on
/// this node: an invalid `subnet` (a tenant's subnets are routed by their CNCI, so no address
/// may belong to two of them).
pub(crate) fn check_no_overlap(nets: &[NetRecord], tenant: Uuid, subnet: Ipv4Net) -> Result<()> {
    let clash = nets.iter().find(|n| {
        n.config.tenant == tenant
            && n.config.subnet != subnet
            && (n.config.subnet.contains(&subnet) || subnet.contains(&n.config.subnet))
    });
    match clash {
        None => Ok(()),
        Some(n) => Err(Error::invalid(
            "subnet",
            format!(
                "{subnet} overlaps {} of tenant {tenant}, already on this node",
                n.config.subnet
            ),
        )),
    }
}
