//! The JSON documents of the tenants' ingress rules, and their readable form for `ciao-net`.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::table::render;
use crate::security::ingress_rule::{IngressRule, TenantIngressRules};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngressRuleView {
    pub uuid: Uuid,
    pub tenant: Uuid,
    /// 1 is matched first.
    pub position: u32,
    /// `allow` or `deny`.
    pub action: String,
    /// `tcp`, `udp`, `icmp` or `any`.
    pub protocol: String,
    pub port_min: Option<u16>,
    pub port_max: Option<u16>,
    pub remote_cidr: Option<String>,
    pub description: String,
}

/// `GET .../ingress-rules`, `GET/PUT .../ingress-policy`: the rules in order and the default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngressRulesView {
    pub tenant: Uuid,
    /// `allow` or `deny`: what enters when no rule matches.
    pub default: String,
    pub rules: Vec<IngressRuleView>,
}

/// The body of `PUT .../ingress-policy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngressPolicyRequest {
    pub default: String,
}

impl From<&IngressRule> for IngressRuleView {
    fn from(r: &IngressRule) -> Self {
        IngressRuleView {
            uuid: r.uuid,
            tenant: r.tenant,
            position: r.position,
            action: r.spec.action.to_string(),
            protocol: r.spec.protocol.to_string(),
            port_min: r.spec.ports.map(|p| p.0),
            port_max: r.spec.ports.map(|p| p.1),
            remote_cidr: r.spec.remote_cidr.map(|c| c.to_string()),
            description: r.spec.description.clone(),
        }
    }
}

impl From<&TenantIngressRules> for IngressRulesView {
    fn from(t: &TenantIngressRules) -> Self {
        IngressRulesView {
            tenant: t.tenant,
            default: t.default.to_string(),
            rules: t.rules.iter().map(IngressRuleView::from).collect(),
        }
    }
}

fn ports(r: &IngressRuleView) -> String {
    match (r.port_min, r.port_max) {
        (Some(a), Some(b)) if a == b => a.to_string(),
        (Some(a), Some(b)) => format!("{a}-{b}"),
        _ => "any".to_owned(),
    }
}

fn row(r: &IngressRuleView) -> Vec<String> {
    vec![
        r.position.to_string(),
        r.uuid.to_string(),
        r.action.clone(),
        r.protocol.clone(),
        ports(r),
        r.remote_cidr.clone().unwrap_or_else(|| "anywhere".into()),
        if r.description.is_empty() {
            "-".into()
        } else {
            r.description.clone()
        },
    ]
}

const HEADERS: [&str; 7] = [
    "POS",
    "RULE",
    "ACTION",
    "PROTOCOL",
    "PORTS",
    "REMOTE",
    "DESCRIPTION",
];

/// The rules in the order they are matched, then the default.
pub fn rules_text(view: &IngressRulesView) -> String {
    let mut out = format!("TENANT   {}\n", view.tenant);
    out.push_str(&format!(
        "default  {} (what matches no rule; replies always pass)\n",
        view.default
    ));
    if !view.rules.is_empty() {
        out.push('\n');
        let rows: Vec<_> = view.rules.iter().map(row).collect();
        out.push_str(&render(&HEADERS, &rows));
    }
    out
}

/// One rule, added or deleted.
pub fn rule_text(r: &IngressRuleView, what: &str) -> String {
    format!("{what}:\n{}", render(&HEADERS, &[row(r)]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_read_in_order_with_the_default() {
        let rule = IngressRuleView {
            uuid: Uuid::nil(),
            tenant: Uuid::nil(),
            position: 1,
            action: "deny".into(),
            protocol: "tcp".into(),
            port_min: Some(8080),
            port_max: Some(8080),
            remote_cidr: Some("203.0.113.101/32".into()),
            description: String::new(),
        };
        let view = IngressRulesView {
            tenant: Uuid::nil(),
            default: "allow".into(),
            rules: vec![rule.clone()],
        };
        let text = rules_text(&view);
        assert!(text.contains("default  allow"), "{text}");
        assert!(text.contains("POS  RULE"), "{text}");
        assert!(
            text.contains("1    00000000-0000-0000-0000-000000000000  deny    tcp       8080   203.0.113.101/32  -"),
            "{text}"
        );
        assert!(rule_text(&rule, "added").starts_with("added:\nPOS"));
    }
}
