//! Host firewall integration: keep dockerd's `FORWARD` policy DROP from breaking our bridges.
//!
//! With br_netfilter on (the default here) frames bridged between two ports of *any* bridge pass
//! the IPv4 FORWARD hook, where dockerd's `policy drop` discards them. An accept in a table of our
//! own cannot override a drop in docker's (every base chain must accept), so, as docker documents,
//! we add `iifname BR oifname BR accept` to its `DOCKER-USER` chain, which docker never rewrites.
//! Without docker there is no such chain and nothing to do. Rules carry a comment naming the
//! bridge so they can be found and removed again.

use std::borrow::Cow;

use nftables::batch::Batch;
use nftables::expr::{Expression, Meta, MetaKey, NamedExpression};
use nftables::helper::{self, NftablesError};
use nftables::schema::{NfListObject, NfObject, Rule};
use nftables::stmt::{Match, Operator, Statement};
use nftables::types::NfFamily;

use crate::error::{Error, Result};

const TABLE: &str = "filter";
const CHAIN: &str = "DOCKER-USER";

fn comment(bridge: &str) -> String {
    format!("ciao bridge {bridge}")
}

/// Handles of our rules for `bridge` in DOCKER-USER; `None` if the chain (or nft) is absent.
fn our_rules(bridge: &str) -> Result<Option<Vec<u32>>> {
    let listed = helper::get_current_ruleset_with_args(
        helper::DEFAULT_NFT,
        &["list", "chain", "ip", TABLE, CHAIN],
    );
    let ruleset = match listed {
        Ok(r) => r,
        // No nft binary, or no such chain: docker's ruleset is not loaded.
        Err(NftablesError::NftExecution { .. }) | Err(NftablesError::NftFailed { .. }) => {
            return Ok(None)
        }
        Err(e) => return Err(Error::Internal(format!("read nftables ruleset: {e}"))),
    };
    let wanted = comment(bridge);
    let handles = ruleset
        .objects
        .iter()
        .filter_map(|o| match o {
            NfObject::ListObject(NfListObject::Rule(r))
                if r.comment.as_deref() == Some(wanted.as_str()) =>
            {
                r.handle
            }
            _ => None,
        })
        .collect();
    Ok(Some(handles))
}

fn rule<'a>(bridge: &'a str, comment: Option<String>) -> Rule<'a> {
    let name_match = |key| {
        Statement::Match(Match {
            left: Expression::Named(NamedExpression::Meta(Meta { key })),
            right: Expression::String(Cow::Borrowed(bridge)),
            op: Operator::EQ,
        })
    };
    Rule {
        family: NfFamily::IP,
        table: Cow::Borrowed(TABLE),
        chain: Cow::Borrowed(CHAIN),
        expr: Cow::Owned(vec![
            name_match(MetaKey::Iifname),
            name_match(MetaKey::Oifname),
            Statement::Accept(None),
        ]),
        handle: None,
        index: None,
        comment: comment.map(Cow::Owned),
    }
}

fn apply(batch: Batch<'_>) -> Result<()> {
    helper::apply_ruleset(&batch.to_nftables())
        .map_err(|e| Error::Internal(format!("update nftables: {e}")))
}

/// Lets traffic between ports of `bridge` through docker's FORWARD policy, if docker's chain exists.
/// Returns whether a rule is in place.
pub fn allow_bridge(bridge: &str) -> Result<bool> {
    match our_rules(bridge)? {
        None => Ok(false),
        Some(handles) if !handles.is_empty() => Ok(true),
        Some(_) => {
            let mut batch = Batch::new();
            batch.add_cmd(nftables::schema::NfCmd::Insert(NfListObject::Rule(rule(
                bridge,
                Some(comment(bridge)),
            ))));
            apply(batch)?;
            Ok(true)
        }
    }
}

/// Removes what [`allow_bridge`] added; nothing to do is not an error.
pub fn revoke_bridge(bridge: &str) -> Result<()> {
    let Some(handles) = our_rules(bridge)? else {
        return Ok(());
    };
    if handles.is_empty() {
        return Ok(());
    }
    let mut batch = Batch::new();
    for handle in handles {
        let mut r = rule(bridge, None);
        r.expr = Cow::Owned(Vec::new());
        r.handle = Some(handle);
        batch.delete(NfListObject::Rule(r));
    }
    apply(batch)
}
