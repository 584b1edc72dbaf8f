//! The two-tenant reachability matrix: tenants A and B with identical subnets and addresses, three
//! containers each on the two compute nodes, and the external host; every endpoint pings every
//! other. Used by the `ciao-cluster` demo and by the attack tests ("after each attack the
//! datapath matrix is unchanged").
//!
//! Since both tenants use the same addresses, a reply alone does not say who answered: every
//! endpoint answers with its own initial TTL (`net.ipv4.ip_default_ttl`), and a cell counts as
//! reached only if the reply carries the destination's signature.

use anyhow::{Context, Result};

use crate::cluster::{ping_reply_ttl, Cluster, Cn, Tenant, Workload, EXT_IP};

/// Where each tenant's containers go: (node, subnet, address); the same for A and B.
pub const LAYOUT: [(Cn, &str, &str); 3] = [
    (Cn::Cn1, "172.16.1.0/24", "172.16.1.10"),
    (Cn::Cn2, "172.16.1.0/24", "172.16.1.11"),
    (Cn::Cn2, "172.16.2.0/24", "172.16.2.10"),
];

/// The subnets of [`LAYOUT`] and the nodes each hub must reach.
pub const HUBS: [(&str, &[Cn]); 2] = [
    ("172.16.1.0/24", &[Cn::Cn1, Cn::Cn2]),
    ("172.16.2.0/24", &[Cn::Cn2]),
];

/// The TTL the external host answers with.
pub const EXT_TTL: u32 = 200;

/// A reply whose TTL is at most this much below an endpoint's signature came from it.
const MAX_HOPS: u32 = 4;

/// One container of the layout.
pub struct Container {
    /// `A1`..`A3`, `B1`..`B3`.
    pub label: String,
    pub tenant: char,
    pub workload: Workload,
    /// Its reply signature.
    pub ttl: u8,
}

/// The six containers of tenants A and B.
pub struct TwoTenants {
    pub members: Vec<Container>,
}

impl TwoTenants {
    /// Attaches the containers of [`LAYOUT`] for `a` and `b`, taking any of `existing` that
    /// already sit at a layout position (same tenant, node, subnet and address), and gives each
    /// its TTL signature (100, 110, ... in label order).
    pub fn attach(
        cluster: &Cluster,
        a: &Tenant,
        b: &Tenant,
        mut existing: Vec<Workload>,
    ) -> Result<TwoTenants> {
        let mut members = Vec::new();
        let mut ttl = 100u8;
        for (name, t) in [('A', a), ('B', b)] {
            for (i, (cn, subnet, ip)) in LAYOUT.iter().enumerate() {
                let label = format!("{name}{}", i + 1);
                let taken = existing.iter().position(|w| {
                    w.tenant.tenant == t.tenant && w.cn == *cn && w.subnet == *subnet && w.ip == *ip
                });
                let workload = match taken {
                    Some(at) => existing.swap_remove(at),
                    None => cluster
                        .container(*cn, t, subnet, ip)
                        .with_context(|| format!("container {label}"))?,
                };
                workload.set_default_ttl(ttl);
                members.push(Container {
                    label,
                    tenant: name,
                    workload,
                    ttl,
                });
                ttl += 10;
            }
        }
        Ok(TwoTenants { members })
    }

    /// Waits until every hub of both tenants is programmed toward its nodes; returns one
    /// message per hub that was not in time (empty: all settled).
    pub fn wait_hubs(cluster: &Cluster, tenants: &[(char, &Tenant)]) -> Vec<String> {
        let mut late = Vec::new();
        for (name, t) in tenants {
            for (subnet, nodes) in HUBS {
                let nodes: Vec<&str> = nodes.iter().map(|cn| cn.ip()).collect();
                if let Err(e) = cluster.wait_programmed(t, subnet, &nodes) {
                    late.push(format!("tenant {name}: {e:#}"));
                }
            }
        }
        late
    }

    /// Pings every pair of the six containers and the external host (whose TTL signature it
    /// sets), in parallel.
    pub fn matrix(&self, cluster: &Cluster) -> Matrix {
        cluster.ext.exec(&[
            "sysctl",
            "-q",
            "-w",
            &format!("net.ipv4.ip_default_ttl={EXT_TTL}"),
        ]);
        let mut endpoints: Vec<Endpoint> = self
            .members
            .iter()
            .map(|m| Endpoint {
                label: m.label.clone(),
                ns: m.workload.ns.name.clone(),
                ip: m.workload.ip.clone(),
                tenant: Some(m.tenant),
                ttl: u32::from(m.ttl),
            })
            .collect();
        endpoints.push(Endpoint {
            label: "ext".into(),
            ns: cluster.ext.name.clone(),
            ip: EXT_IP.into(),
            tenant: None,
            ttl: EXT_TTL,
        });
        Matrix::measure(endpoints)
    }
}

/// One row/column of the matrix.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub label: String,
    /// Its network namespace.
    pub ns: String,
    pub ip: String,
    /// `None` for the external host.
    pub tenant: Option<char>,
    /// Its reply signature.
    pub ttl: u32,
}

impl Endpoint {
    fn signed(&self, reply_ttl: u32) -> bool {
        reply_ttl <= self.ttl && self.ttl - reply_ttl <= MAX_HOPS
    }
}

/// One ping of the matrix.
#[derive(Clone, Debug)]
pub struct Cell {
    pub from: usize,
    pub to: usize,
    /// The reply's TTL, if any.
    pub reply_ttl: Option<u32>,
    /// Whether the destination itself answered.
    pub reached: bool,
    /// What the design promises: same tenant yes, other tenant no, outside from containers
    /// yes, containers from outside no.
    pub expected: bool,
}

/// The measured matrix.
pub struct Matrix {
    pub endpoints: Vec<Endpoint>,
    /// Every ordered pair of distinct endpoints, row by row.
    pub cells: Vec<Cell>,
}

impl Matrix {
    /// Pings every ordered pair of `endpoints` in parallel (one ping, 1 s wait each).
    pub fn measure(endpoints: Vec<Endpoint>) -> Matrix {
        let pairs: Vec<(usize, usize)> = (0..endpoints.len())
            .flat_map(|i| (0..endpoints.len()).map(move |j| (i, j)))
            .filter(|(i, j)| i != j)
            .collect();
        let replies: Vec<Option<u32>> = std::thread::scope(|s| {
            let handles: Vec<_> = pairs
                .iter()
                .map(|&(i, j)| {
                    let (src, dst) = (&endpoints[i], &endpoints[j]);
                    s.spawn(move || ping_reply_ttl(&src.ns, &dst.ip, 1))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().ok().flatten())
                .collect()
        });
        let cells = pairs
            .into_iter()
            .zip(replies)
            .map(|((from, to), reply_ttl)| Cell {
                from,
                to,
                reply_ttl,
                reached: reply_ttl.is_some_and(|t| endpoints[to].signed(t)),
                expected: match (endpoints[from].tenant, endpoints[to].tenant) {
                    (Some(a), Some(b)) => a == b,
                    (Some(_), None) => true,
                    (None, _) => false,
                },
            })
            .collect();
        Matrix { endpoints, cells }
    }

    /// The cells that differ from the design's promise.
    pub fn mismatches(&self) -> Vec<&Cell> {
        self.cells
            .iter()
            .filter(|c| c.reached != c.expected)
            .collect()
    }

    /// Whether every cell is as expected.
    pub fn as_expected(&self) -> bool {
        self.mismatches().is_empty()
    }

    /// `"<as expected> of <cells>"`, e.g. `42 of 42`.
    pub fn score(&self) -> String {
        format!(
            "{} of {}",
            self.cells.len() - self.mismatches().len(),
            self.cells.len()
        )
    }

    /// The endpoint whose signature a reply TTL carries.
    fn answered_by(&self, reply_ttl: u32) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.signed(reply_ttl))
    }

    /// The table, the replies that came from someone other than the destination, and the score.
    pub fn render(&self) -> String {
        let mut out = String::from(
            "\n== reachability (row pings column; ✓ reached, ✗ not; ! = not as expected)\n",
        );
        out.push_str(&format!("  {:<5}", "from"));
        for e in &self.endpoints {
            out.push_str(&format!("{:>6}", e.label));
        }
        out.push('\n');
        let mut cells = self.cells.iter().peekable();
        for (i, src) in self.endpoints.iter().enumerate() {
            out.push_str(&format!("  {:<5}", src.label));
            for j in 0..self.endpoints.len() {
                match cells.next_if(|c| c.from == i && c.to == j) {
                    None => out.push_str(&format!("{:>6}", "-")),
                    Some(c) => {
                        let mark = if c.reached { "✓" } else { "✗" };
                        let flag = if c.reached == c.expected { " " } else { "!" };
                        out.push_str(&format!("{mark:>5}{flag}"));
                    }
                }
            }
            out.push('\n');
        }
        out.push_str(&self.render_answers());
        out.push_str(&format!(
            "\n  {} cells as expected (same tenant reachable across nodes and subnets, \
             other tenant not, outside reachable from containers and not the reverse)\n",
            self.score()
        ));
        out
    }

    /// Replies from someone other than the destination. A ping to the other tenant's address
    /// answered inside the sender's own tenant (which has the same addresses) is the design
    /// working: those are only counted. Anything else is listed.
    fn render_answers(&self) -> String {
        let mut own_tenant = 0;
        let mut listed = String::new();
        for c in self.cells.iter().filter(|c| !c.reached) {
            let Some(t) = c.reply_ttl else { continue };
            let (src, dst) = (&self.endpoints[c.from], &self.endpoints[c.to]);
            let by = self.answered_by(t);
            if by.is_some_and(|b| b.tenant.is_some() && b.tenant == src.tenant && b.ip == dst.ip) {
                own_tenant += 1;
                continue;
            }
            let by = match by {
                Some(b) if b.label == src.label => format!("{} itself", b.label),
                Some(b) => b.label.clone(),
                None => format!("an unknown host (TTL {t})"),
            };
            listed.push_str(&format!(
                "  {} -> {} ({}): answered by {by}, not by {}\n",
                src.label, dst.label, dst.ip, dst.label
            ));
        }
        if own_tenant > 0 {
            listed.push_str(&format!(
                "  ({own_tenant} pings to the other tenant's addresses were answered inside the \
                 sender's own tenant, which uses the same addresses: isolation, not a leak)\n"
            ));
        }
        listed
    }
}
