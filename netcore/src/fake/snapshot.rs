//! A comparable picture of a fake world: links by name (indexes differ when a link is
//! re-created), everything that refers to a link by its name.

use std::collections::{BTreeMap, BTreeSet};

use super::world::{Namespace, NsId};

/// One link, without its index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkView {
    pub kind: String,
    pub alias: Option<String>,
    pub master: Option<String>,
    pub up: bool,
    pub mtu: u32,
    pub mac: [u8; 6],
    /// The kind-specific attributes, as text.
    pub data: Option<String>,
    /// The far end of a veth: its namespace and name.
    pub peer: Option<(String, String)>,
    pub hairpin: bool,
    pub group: u32,
}

/// One namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NsView {
    pub links: BTreeMap<String, LinkView>,
    /// (link, address)
    pub addresses: BTreeSet<(String, String)>,
    /// (destination, gateway, link)
    pub routes: BTreeSet<(String, String, String)>,
    /// (link, mac, destination)
    pub fdb: BTreeSet<(String, String, String)>,
    pub proxy: BTreeSet<(String, String)>,
    pub sysctls: BTreeMap<String, String>,
    /// Anti-spoofing guards: port -> (MAC, IPv4 addresses), as text.
    pub guards: BTreeMap<String, String>,
}

/// Every namespace (by its label: `host`, `netns-1`, ...) and the firewall.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub namespaces: BTreeMap<String, NsView>,
    pub firewall: BTreeSet<String>,
}

impl Snapshot {
    pub(crate) fn of(namespaces: &BTreeMap<NsId, Namespace>, firewall: &BTreeSet<String>) -> Self {
        let name_in = |ns: NsId, index: u32| {
            namespaces
                .get(&ns)
                .and_then(|n| n.links.get(&index))
                .map_or_else(|| format!("#{index}"), |l| l.name.clone())
        };
        let label = |ns: NsId| {
            namespaces
                .get(&ns)
                .map_or_else(|| format!("{ns:?}"), |n| n.label.clone())
        };
        let namespaces = namespaces
            .iter()
            .map(|(id, ns)| {
                let name = |index: u32| name_in(*id, index);
                let view = NsView {
                    links: ns
                        .links
                        .values()
                        .map(|l| {
                            let view = LinkView {
                                kind: l.kind.clone(),
                                alias: l.alias.clone(),
                                master: l.master.map(name),
                                up: l.up,
                                mtu: l.mtu,
                                mac: l.mac,
                                data: l.data.as_ref().map(|d| format!("{d:?}")),
                                peer: l.peer.map(|(pns, p)| (label(pns), name_in(pns, p))),
                                hairpin: l.hairpin,
                                group: l.group,
                            };
                            (l.name.clone(), view)
                        })
                        .collect(),
                    addresses: ns
                        .addresses
                        .iter()
                        .map(|a| (name(a.index), a.net.to_string()))
                        .collect(),
                    routes: ns
                        .routes
                        .iter()
                        .map(|r| (r.dst.to_string(), format!("{:?}", r.gateway), name(r.oif)))
                        .collect(),
                    fdb: ns
                        .fdb
                        .iter()
                        .map(|e| {
                            (
                                name(e.index),
                                format!("{:02x?}", e.mac),
                                format!("{:?}", e.dst),
                            )
                        })
                        .collect(),
                    proxy: ns
                        .proxy
                        .iter()
                        .map(|(i, ip)| (name(*i), ip.to_string()))
                        .collect(),
                    sysctls: ns.sysctls.clone(),
                    guards: ns
                        .guards
                        .iter()
                        .map(|(p, g)| (p.clone(), format!("{:02x?} {:?}", g.mac, g.ipv4)))
                        .collect(),
                };
                (ns.label.clone(), view)
            })
            .collect();
        Snapshot {
            namespaces,
            firewall: firewall.clone(),
        }
    }

    /// The view of the namespace labelled `label` (empty if it does not exist).
    pub fn ns(&self, label: &str) -> NsView {
        self.namespaces.get(label).cloned().unwrap_or_default()
    }
}
