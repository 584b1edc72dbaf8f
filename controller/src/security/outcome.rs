//! What a tenant's CNCI last answered to its TenantIngress, and each compute node to its
//! SecurityGroupsUpdate, kept so that the API and `ciao-net` can say whether the stored
//! forwards, SSH access, ingress rules and security groups are in force there.

use uuid::Uuid;

/// The CNCI's last answer for one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressOutcome {
    pub tenant: Uuid,
    pub cnci: Uuid,
    /// The snapshot's generation (a digest of it, see `daemon::frames::tenant_ingress_cmd`).
    pub generation: u64,
    /// `None`: applied; else why the CNCI refused it (it kept its previous snapshot).
    pub refused: Option<String>,
    /// Unix seconds, when the controller heard it.
    pub at: u64,
}

/// What the controller last sent a compute node for one tenant's groups, and the node's last
/// answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeGroupsOutcome {
    pub node: Uuid,
    pub tenant: Uuid,
    /// The generation of the last SecurityGroupsUpdate sent.
    pub sent: u64,
    /// The node's last answer: the generation it loaded (or could not load), why not, when.
    pub answered: Option<u64>,
    pub refused: Option<String>,
    pub at: Option<u64>,
}

impl NodeGroupsOutcome {
    pub fn state(&self) -> AppliedState {
        match (self.answered, &self.refused) {
            (Some(g), None) if g == self.sent => AppliedState::InForce,
            (Some(g), Some(_)) if g == self.sent => AppliedState::Refused,
            _ => AppliedState::Pending,
        }
    }
}

/// Where the tenant's ingress (or a node's groups) stands, compared with what the store says
/// it should be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppliedState {
    /// The CNCI applied the store's snapshot.
    InForce,
    /// The CNCI has not answered for the store's snapshot yet.
    Pending,
    /// The CNCI refused the store's snapshot.
    Refused,
}

impl AppliedState {
    /// `wanted`: the generation of the snapshot the store makes now for `cnci`.
    pub fn of(outcome: Option<&IngressOutcome>, cnci: Uuid, wanted: u64) -> Self {
        match outcome {
            Some(o) if o.cnci == cnci && o.generation == wanted => match o.refused {
                None => AppliedState::InForce,
                Some(_) => AppliedState::Refused,
            },
            _ => AppliedState::Pending,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AppliedState::InForce => "in_force",
            AppliedState::Pending => "pending",
            AppliedState::Refused => "refused",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_cncis_answer_for_this_snapshot_counts() {
        let cnci = Uuid::from_u128(1);
        let answer = |cnci, generation, refused: Option<&str>| IngressOutcome {
            tenant: Uuid::from_u128(9),
            cnci,
            generation,
            refused: refused.map(str::to_owned),
            at: 0,
        };
        let of = |o: Option<IngressOutcome>| AppliedState::of(o.as_ref(), cnci, 7);
        assert_eq!(of(None), AppliedState::Pending);
        assert_eq!(of(Some(answer(cnci, 7, None))), AppliedState::InForce);
        assert_eq!(of(Some(answer(cnci, 7, Some("no")))), AppliedState::Refused);
        assert_eq!(of(Some(answer(cnci, 6, None))), AppliedState::Pending);
        let other = Uuid::from_u128(2);
        assert_eq!(of(Some(answer(other, 7, None))), AppliedState::Pending);
    }
}
