//! The readable form of each API answer, as `ciao-net` prints it without `--json`.

use std::fmt::Display;

use super::table::render;
use super::views::{
    CnciView, IngressView, NodesView, PublicIpView, PublicIpsView, TenantDeleted, TenantSummary,
    TenantView,
};

const NONE: &str = "-";

fn list<T: Display>(items: &[T]) -> String {
    if items.is_empty() {
        return NONE.to_owned();
    }
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

pub fn nodes(view: &NodesView) -> String {
    let network = view.network_nodes.iter().map(|n| {
        vec![
            "network".to_owned(),
            n.uuid.to_string(),
            n.state.clone(),
            n.underlay.to_string(),
            n.external_device.clone(),
            format!("{}/{}", n.cncis, n.capacity),
        ]
    });
    let compute = view.compute_nodes.iter().map(|n| {
        vec![
            "compute".to_owned(),
            n.uuid.to_string(),
            n.state.clone(),
            n.underlay.to_string(),
            NONE.to_owned(),
            NONE.to_owned(),
        ]
    });
    let rows: Vec<_> = network.chain(compute).collect();
    render(
        &["ROLE", "UUID", "STATE", "UNDERLAY", "EXTERNAL", "CNCIS"],
        &rows,
    )
}

pub fn tenants(view: &[TenantSummary]) -> String {
    let rows: Vec<_> = view
        .iter()
        .map(|t| {
            let (cnci, state, node) = cnci_cells(t.cnci.as_ref());
            vec![
                t.uuid.to_string(),
                t.state.clone(),
                cnci,
                state,
                node,
                list(&t.subnets),
                t.public_ips.to_string(),
            ]
        })
        .collect();
    render(
        &[
            "TENANT",
            "STATE",
            "CNCI",
            "CNCI-STATE",
            "NETWORK-NODE",
            "SUBNETS",
            "PUBLIC-IPS",
        ],
        &rows,
    )
}

fn cnci_cells(cnci: Option<&CnciView>) -> (String, String, String) {
    match cnci {
        Some(c) => (
            c.uuid.to_string(),
            c.state.clone(),
            c.network_node.to_string(),
        ),
        None => (NONE.to_owned(), NONE.to_owned(), NONE.to_owned()),
    }
}

pub fn tenant(view: &TenantView) -> String {
    let cnci = match &view.cnci {
        Some(c) => format!(
            "{} ({}) on network node {} at {}",
            c.uuid, c.state, c.network_node, c.underlay
        ),
        None => "none".to_owned(),
    };
    let mut rows = vec![
        vec!["state".to_owned(), view.state.clone()],
        vec!["cnci".to_owned(), cnci],
    ];
    if let Some(ingress) = &view.ingress {
        rows.push(vec!["ingress".to_owned(), ingress_text(ingress)]);
    }
    let mut out = render(&["TENANT", &view.uuid.to_string()], &rows);
    let subnets: Vec<_> = view
        .subnets
        .iter()
        .map(|s| {
            vec![
                s.cidr.to_string(),
                s.tunnel_kind.to_string(),
                s.tunnel_id.to_string(),
                list(&s.compute_nodes),
            ]
        })
        .collect();
    out.push('\n');
    out.push_str(&render(
        &["SUBNET", "TUNNEL", "TUNNEL-ID", "COMPUTE-NODES"],
        &subnets,
    ));
    let slices = node_slices(view);
    if !slices.is_empty() {
        out.push('\n');
        out.push_str(&slices);
    }
    if !view.security_groups.is_empty() {
        let rows: Vec<_> = view
            .security_groups
            .iter()
            .map(|g| {
                let answered = g
                    .answered_generation
                    .map_or(NONE.to_owned(), |a| a.to_string());
                vec![
                    g.compute_node.to_string(),
                    g.state.clone(),
                    g.generation.to_string(),
                    answered,
                    g.reason.clone().unwrap_or_else(|| NONE.to_owned()),
                ]
            })
            .collect();
        out.push('\n');
        out.push_str(&render(
            &["GROUPS-ON-NODE", "STATE", "SENT", "ANSWERED", "REASON"],
            &rows,
        ));
    }
    let public_ips: Vec<_> = view
        .public_ips
        .iter()
        .map(|a| vec![a.public_ip.to_string(), a.private_ip.to_string()])
        .collect();
    out.push('\n');
    out.push_str(&render(&["PUBLIC-IP", "PRIVATE-IP"], &public_ips));
    out
}

/// Whether the CNCI has the stored forwards, SSH access and ingress rules in force.
fn ingress_text(i: &IngressView) -> String {
    match (i.state.as_str(), &i.answered_generation) {
        ("in_force", _) => format!("in force (generation {})", i.generation),
        ("refused", _) => format!(
            "refused by the CNCI, which keeps its previous rules: {} (generation {})",
            i.reason.as_deref().unwrap_or("no reason given"),
            i.generation
        ),
        (_, Some(last)) => format!(
            "pending: generation {} sent, the CNCI last answered for {last}",
            i.generation
        ),
        (_, None) => format!(
            "pending: generation {} sent, no answer from the CNCI yet",
            i.generation
        ),
    }
}

/// Each compute node's slice of the tenant's automatic subnets; empty if it has none.
fn node_slices(view: &TenantView) -> String {
    let rows: Vec<_> = view
        .subnets
        .iter()
        .flat_map(|s| {
            s.node_slices.iter().map(move |n| {
                vec![
                    s.cidr.to_string(),
                    n.compute_node.to_string(),
                    n.slice.to_string(),
                    format!("{}-{}", n.range_start, n.range_end),
                ]
            })
        })
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    render(&["AUTO-SUBNET", "COMPUTE-NODE", "SLICE", "RANGE"], &rows)
}

pub fn cncis(view: &[CnciView]) -> String {
    let rows: Vec<_> = view
        .iter()
        .map(|c| {
            vec![
                c.uuid.to_string(),
                c.tenant.to_string(),
                c.state.clone(),
                c.network_node.to_string(),
                c.underlay.to_string(),
            ]
        })
        .collect();
    render(
        &["CNCI", "TENANT", "STATE", "NETWORK-NODE", "UNDERLAY"],
        &rows,
    )
}

fn assignments(view: &[PublicIpView]) -> String {
    let rows: Vec<_> = view
        .iter()
        .map(|a| {
            vec![
                a.public_ip.to_string(),
                a.private_ip.to_string(),
                a.tenant.to_string(),
            ]
        })
        .collect();
    render(&["PUBLIC-IP", "PRIVATE-IP", "TENANT"], &rows)
}

pub fn public_ips(view: &PublicIpsView) -> String {
    let pools: Vec<_> = view
        .pools
        .iter()
        .map(|p| vec![p.pool.clone(), p.size.to_string(), p.assigned.to_string()])
        .collect();
    let mut out = render(&["POOL", "SIZE", "ASSIGNED"], &pools);
    out.push('\n');
    out.push_str(&assignments(&view.assignments));
    out
}

pub fn assigned(a: &PublicIpView) -> String {
    format!(
        "public IP {} is assigned to {} of tenant {}\n",
        a.public_ip, a.private_ip, a.tenant
    )
}

pub fn released(a: &PublicIpView) -> String {
    format!(
        "released public IP {} (was {} of tenant {})\n",
        a.public_ip, a.private_ip, a.tenant
    )
}

pub fn deleted(d: &TenantDeleted) -> String {
    if d.state == "forgotten" {
        format!("tenant {} deleted (it had no running CNCI)\n", d.tenant)
    } else {
        format!(
            "tenant {} is being deleted: it takes no new workload, and its CNCI stops once its last workload is gone\n",
            d.tenant
        )
    }
}
