//! `ciao-net group|rule|forward|ssh`: security groups, rules, port forwards and SSH access.

use std::net::{Ipv4Addr, SocketAddrV4};

use anyhow::anyhow;
use ciao_controller::api::security_text as text;
use clap::Subcommand;
use hyper::Method;
use serde_json::json;
use uuid::Uuid;

use super::{get, parse, Call};

#[derive(Subcommand)]
pub enum GroupAction {
    /// Every group of the tenant, then every rule.
    List {
        #[arg(long)]
        tenant: Uuid,
    },
    /// One group (by name or id) and its rules.
    Show {
        #[arg(long)]
        tenant: Uuid,
        group: String,
    },
    /// A new group, without rules.
    Create {
        #[arg(long)]
        tenant: Uuid,
        name: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Delete a group (not `default`, and not while another group's rule names it).
    Delete {
        #[arg(long)]
        tenant: Uuid,
        group: String,
    },
}

#[derive(Subcommand)]
pub enum RuleAction {
    /// Add a rule to GROUP (by name or id).
    Add {
        #[arg(long)]
        tenant: Uuid,
        group: String,
        /// ingress or egress.
        #[arg(long)]
        direction: String,
        /// IPv4 (default) or IPv6.
        #[arg(long)]
        ethertype: Option<String>,
        /// any (default), tcp, udp, icmp, icmpv6 or a number 0-255.
        #[arg(long)]
        protocol: Option<String>,
        /// A port (80) or a range (8000-8080), tcp and udp only.
        #[arg(long)]
        port: Option<String>,
        #[arg(long)]
        icmp_type: Option<i64>,
        #[arg(long)]
        icmp_code: Option<i64>,
        /// Traffic from (ingress) or to (egress) this CIDR only.
        #[arg(long)]
        remote_cidr: Option<String>,
        /// Traffic from or to members of this group (name or id) only.
        #[arg(long)]
        remote_group: Option<String>,
    },
    /// Delete a rule by its id.
    Delete {
        #[arg(long)]
        tenant: Uuid,
        rule: Uuid,
    },
}

#[derive(Subcommand)]
pub enum ForwardAction {
    List {
        #[arg(long)]
        tenant: Uuid,
    },
    /// `add --tenant T tcp 8080 172.16.0.5:80 [--public-ip X]`.
    Add {
        #[arg(long)]
        tenant: Uuid,
        /// tcp or udp.
        protocol: String,
        public_port: i64,
        /// The workload's address and port, `ip:port`.
        private: String,
        /// Default: the tenant's forward IP (taken from the pool on its first forward).
        #[arg(long)]
        public_ip: Option<Ipv4Addr>,
    },
    /// Remove exactly one forward, by its id.
    Delete {
        #[arg(long)]
        tenant: Uuid,
        forward: Uuid,
    },
}

#[derive(Subcommand)]
pub enum SshAction {
    On {
        #[arg(long)]
        tenant: Uuid,
    },
    Off {
        #[arg(long)]
        tenant: Uuid,
    },
    /// Whether it is on, the forward IP and each subnet's block of ports.
    Show {
        #[arg(long)]
        tenant: Uuid,
    },
}

pub(crate) fn call_with(
    method: Method,
    path: String,
    body: serde_json::Value,
    show: super::Show,
) -> anyhow::Result<Call> {
    Ok(Call {
        method,
        path,
        body: Some(serde_json::to_vec(&body)?),
        show,
    })
}

pub(crate) fn delete_call(path: String, show: super::Show) -> Call {
    Call {
        method: Method::DELETE,
        path,
        body: None,
        show,
    }
}

pub fn group(action: GroupAction) -> anyhow::Result<Call> {
    let base = |t: Uuid| format!("/v1/tenants/{t}/security-groups");
    Ok(match action {
        GroupAction::List { tenant } => {
            get(&base(tenant), |r| Ok(text::groups(&parse::<Vec<_>>(r)?)))
        }
        GroupAction::Show { tenant, group } => get(&format!("{}/{group}", base(tenant)), |r| {
            Ok(text::group(&parse(r)?))
        }),
        GroupAction::Create {
            tenant,
            name,
            description,
        } => call_with(
            Method::POST,
            base(tenant),
            json!({"name": name, "description": description}),
            |r| Ok(text::created_group(&parse(r)?)),
        )?,
        GroupAction::Delete { tenant, group } => {
            delete_call(format!("{}/{group}", base(tenant)), |r| {
                Ok(text::deleted_group(&parse(r)?))
            })
        }
    })
}

/// `80` or `8000-8080` as numbers; the controller checks that they are ports.
pub(crate) fn port_range(text: &str) -> anyhow::Result<(i64, i64)> {
    let number = |s: &str| {
        s.trim()
            .parse::<i64>()
            .map_err(|_| anyhow!("--port {text:?}: expected a port (80) or a range (8000-8080)"))
    };
    match text.split_once('-') {
        Some((a, b)) => Ok((number(a)?, number(b)?)),
        None => Ok((number(text)?, number(text)?)),
    }
}

pub fn rule(action: RuleAction) -> anyhow::Result<Call> {
    Ok(match action {
        RuleAction::Add {
            tenant,
            group,
            direction,
            ethertype,
            protocol,
            port,
            icmp_type,
            icmp_code,
            remote_cidr,
            remote_group,
        } => {
            let (port_min, port_max) = match port.as_deref().map(port_range).transpose()? {
                Some((a, b)) => (Some(a), Some(b)),
                None => (None, None),
            };
            let body = json!({
                "direction": direction, "ethertype": ethertype, "protocol": protocol,
                "port_min": port_min, "port_max": port_max,
                "icmp_type": icmp_type, "icmp_code": icmp_code,
                "remote_cidr": remote_cidr, "remote_group": remote_group,
            });
            call_with(
                Method::POST,
                format!("/v1/tenants/{tenant}/security-groups/{group}/rules"),
                body,
                |r| Ok(text::rule(&parse(r)?, "added")),
            )?
        }
        RuleAction::Delete { tenant, rule } => {
            delete_call(format!("/v1/tenants/{tenant}/security-rules/{rule}"), |r| {
                Ok(text::rule(&parse(r)?, "deleted"))
            })
        }
    })
}

pub fn forward(action: ForwardAction) -> anyhow::Result<Call> {
    Ok(match action {
        ForwardAction::List { tenant } => get(&format!("/v1/tenants/{tenant}/forwards"), |r| {
            Ok(text::forwards(&parse::<Vec<_>>(r)?))
        }),
        ForwardAction::Add {
            tenant,
            protocol,
            public_port,
            private,
            public_ip,
        } => {
            let private: SocketAddrV4 = private.parse().map_err(|_| {
                anyhow!(
                    "{private:?} is not ip:port (the workload's address and port, 172.16.0.5:80)"
                )
            })?;
            let body = json!({
                "protocol": protocol, "public_port": public_port,
                "private_ip": private.ip(), "private_port": private.port(),
                "public_ip": public_ip,
            });
            call_with(
                Method::POST,
                format!("/v1/tenants/{tenant}/forwards"),
                body,
                |r| Ok(text::forward(&parse(r)?, "added")),
            )?
        }
        ForwardAction::Delete { tenant, forward } => {
            delete_call(format!("/v1/tenants/{tenant}/forwards/{forward}"), |r| {
                Ok(text::forward(&parse(r)?, "deleted"))
            })
        }
    })
}

pub fn ssh(action: SshAction) -> anyhow::Result<Call> {
    let path = |t: Uuid| format!("/v1/tenants/{t}/ssh");
    let show: super::Show = |r| Ok(text::ssh(&parse(r)?));
    Ok(match action {
        SshAction::Show { tenant } => get(&path(tenant), show),
        SshAction::On { tenant } => {
            call_with(Method::PUT, path(tenant), json!({"enabled": true}), show)?
        }
        SshAction::Off { tenant } => {
            call_with(Method::PUT, path(tenant), json!({"enabled": false}), show)?
        }
    })
}
