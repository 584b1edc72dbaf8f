//! The readable form of security groups, forwards and SSH access, as `ciao-net` prints them.

use super::security_views::{ForwardView, GroupView, RuleView, SshView};
use super::table::render;

const NONE: &str = "-";

fn or_none<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| NONE.to_owned(), |v| v.to_string())
}

fn ports(r: &RuleView) -> String {
    match (r.port_min, r.port_max, r.icmp_type, r.icmp_code) {
        (Some(a), Some(b), _, _) if a == b => a.to_string(),
        (Some(a), Some(b), _, _) => format!("{a}-{b}"),
        (_, _, Some(t), Some(c)) => format!("type {t} code {c}"),
        (_, _, Some(t), None) => format!("type {t}"),
        _ => "any".to_owned(),
    }
}

fn remote(r: &RuleView) -> String {
    match (&r.remote_cidr, &r.remote_group_name, r.remote_group) {
        (Some(cidr), _, _) => cidr.clone(),
        (None, Some(name), _) => format!("group {name}"),
        (None, None, Some(id)) => format!("group {id}"),
        _ => "anywhere".to_owned(),
    }
}

fn rule_rows<'a>(group: &'a GroupView) -> impl Iterator<Item = Vec<String>> + 'a {
    group.rules.iter().map(move |r| {
        vec![
            group.name.clone(),
            r.uuid.to_string(),
            r.direction.clone(),
            r.ethertype.clone(),
            r.protocol.clone(),
            ports(r),
            remote(r),
        ]
    })
}

const RULE_HEADERS: [&str; 7] = [
    "GROUP",
    "RULE",
    "DIRECTION",
    "ETHERTYPE",
    "PROTOCOL",
    "PORTS",
    "REMOTE",
];

/// The groups, then every rule of each.
pub fn groups(view: &[GroupView]) -> String {
    let rows: Vec<_> = view
        .iter()
        .map(|g| {
            vec![
                g.name.clone(),
                g.uuid.to_string(),
                g.rules.len().to_string(),
                if g.description.is_empty() {
                    NONE.to_owned()
                } else {
                    g.description.clone()
                },
            ]
        })
        .collect();
    let mut out = render(&["GROUP", "UUID", "RULES", "DESCRIPTION"], &rows);
    let rules: Vec<_> = view.iter().flat_map(rule_rows).collect();
    out.push('\n');
    out.push_str(&render(&RULE_HEADERS, &rules));
    out
}

pub fn group(view: &GroupView) -> String {
    groups(std::slice::from_ref(view))
}

pub fn created_group(view: &GroupView) -> String {
    format!("created security group {} ({})\n", view.name, view.uuid)
}

pub fn deleted_group(view: &GroupView) -> String {
    format!(
        "deleted security group {} ({}) and its {} rules\n",
        view.name,
        view.uuid,
        view.rules.len()
    )
}

pub fn rule(view: &RuleView, verb: &str) -> String {
    let what = if view.port_min.is_some() || view.icmp_type.is_some() {
        format!("{} {}", view.protocol, ports(view))
    } else {
        view.protocol.clone()
    };
    let way = if view.direction == "egress" {
        "to"
    } else {
        "from"
    };
    format!(
        "{verb} rule {}: {} {} {what} {way} {}\n",
        view.uuid,
        view.direction,
        view.ethertype,
        remote(view)
    )
}

pub fn forwards(view: &[ForwardView]) -> String {
    let rows: Vec<_> = view
        .iter()
        .map(|f| {
            vec![
                f.uuid.to_string(),
                f.protocol.clone(),
                format!("{}:{}", f.public_ip, f.public_port),
                format!("{}:{}", f.private_ip, f.private_port),
            ]
        })
        .collect();
    render(&["FORWARD", "PROTOCOL", "PUBLIC", "PRIVATE"], &rows)
}

pub fn forward(f: &ForwardView, verb: &str) -> String {
    format!(
        "{verb} forward {}: {}:{}/{} -> {}:{}\n",
        f.uuid, f.public_ip, f.public_port, f.protocol, f.private_ip, f.private_port
    )
}

pub fn ssh(view: &SshView) -> String {
    let state = if view.enabled { "on" } else { "off" };
    let mut out = render(
        &["TENANT", &view.tenant.to_string()],
        &[
            vec!["ssh".to_owned(), format!("{state} ({})", view.source)],
            vec!["forward-ip".to_owned(), or_none(view.forward_ip)],
        ],
    );
    let rows: Vec<_> = view
        .blocks
        .iter()
        .map(|b| {
            vec![
                b.subnet.to_string(),
                format!("{}-{}", b.first_port, b.last_port),
                format!("{} + (address - {})", b.first_port, b.subnet.network()),
            ]
        })
        .collect();
    out.push('\n');
    out.push_str(&render(&["SUBNET", "SSH-PORTS", "PORT-OF-ADDRESS"], &rows));
    out
}
