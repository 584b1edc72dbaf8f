//! `ciao-net ingress-rule|ingress-policy`: the tenant's rules for what enters from outside.

use ciao_controller::api::ingress_views as views;
use clap::Subcommand;
use hyper::Method;
use serde_json::json;
use uuid::Uuid;

use super::sg::{call_with, delete_call, port_range};
use super::{get, parse, Call};

#[derive(Subcommand)]
pub enum RuleAction {
    /// `add --tenant T [--position N] allow|deny tcp|udp|icmp|any [--port P[-Q]]
    /// [--remote-cidr C] [--description D]`; appended unless `--position` is given.
    Add {
        #[arg(long)]
        tenant: Uuid,
        /// Insert at this position (1 = matched first); later rules move down.
        #[arg(long)]
        position: Option<i64>,
        /// allow or deny.
        action: String,
        /// tcp, udp, icmp or any.
        protocol: String,
        /// A port (8080) or a range (8000-8080) as the outside sees it; tcp and udp only.
        #[arg(long)]
        port: Option<String>,
        /// Only traffic from this IPv4 network.
        #[arg(long)]
        remote_cidr: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// The rules in the order they are matched, and the default.
    List {
        #[arg(long)]
        tenant: Uuid,
    },
    /// Delete a rule by its id; later rules move up.
    Delete {
        #[arg(long)]
        tenant: Uuid,
        rule: Uuid,
    },
}

pub fn rule(action: RuleAction) -> anyhow::Result<Call> {
    let base = |t: Uuid| format!("/v1/tenants/{t}/ingress-rules");
    Ok(match action {
        RuleAction::List { tenant } => get(&base(tenant), |r| Ok(views::rules_text(&parse(r)?))),
        RuleAction::Add {
            tenant,
            position,
            action,
            protocol,
            port,
            remote_cidr,
            description,
        } => {
            let (port_min, port_max) = match port.as_deref().map(port_range).transpose()? {
                Some((a, b)) => (Some(a), Some(b)),
                None => (None, None),
            };
            let body = json!({
                "action": action, "protocol": protocol, "port_min": port_min,
                "port_max": port_max, "remote_cidr": remote_cidr,
                "description": description, "position": position,
            });
            call_with(Method::POST, base(tenant), body, |r| {
                Ok(views::rule_text(&parse(r)?, "added"))
            })?
        }
        RuleAction::Delete { tenant, rule } => {
            delete_call(format!("{}/{rule}", base(tenant)), |r| {
                Ok(views::rule_text(&parse(r)?, "deleted"))
            })
        }
    })
}

/// `ingress-policy --tenant T [allow|deny]`: set the default, or show it without one.
pub fn policy(tenant: Uuid, default: Option<String>) -> anyhow::Result<Call> {
    let path = format!("/v1/tenants/{tenant}/ingress-policy");
    let show: super::Show = |r| Ok(views::rules_text(&parse(r)?));
    Ok(match default {
        None => get(&path, show),
        Some(d) => call_with(Method::PUT, path, json!({ "default": d }), show)?,
    })
}
