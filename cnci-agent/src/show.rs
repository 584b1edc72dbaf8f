//! `ciao-cnci-agent show`: the recorded state beside what the kernel has of it.
//!
//! Read-only by construction: the state directory is opened with [`Store::open_existing`]
//! (nothing is created) and the tenant namespace only if it exists, so showing a CNCI that is
//! absent, half-made or destroyed changes nothing on disk or in the kernel.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;
use std::path::Path;

use serde::Serialize;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::state::{AgentRecord, Desired, Status, Store};

/// What `show` prints: the JSON form's field names are the interface tests and tools read.
#[derive(Debug, Serialize)]
pub struct View {
    pub uuid: Uuid,
    pub tenant: Uuid,
    pub netns: String,
    pub underlay_ip: Ipv4Addr,
    pub external_dev: Option<String>,
    pub uplink: String,
    pub connected: bool,
    pub subnets: Vec<SubnetView>,
    pub public_ips: Vec<PublicIpView>,
    /// The last TenantIngress applied (forward IP, forwards, SSH blocks); `null`: none.
    pub ingress: Option<crate::ingress::IngressRecord>,
}

/// One tenant subnet: its record and the compute nodes the kernel reaches.
#[derive(Debug, Serialize)]
pub struct SubnetView {
    pub subnet: String,
    pub kind: String,
    pub id: u32,
    pub gateway: Ipv4Addr,
    pub nodes: BTreeSet<Ipv4Addr>,
    pub agents: BTreeMap<Uuid, Ipv4Addr>,
    pub programmed: BTreeSet<Ipv4Addr>,
}

/// One public IP mapping.
#[derive(Debug, Serialize)]
pub struct PublicIpView {
    pub public_ip: Ipv4Addr,
    pub private_ip: Ipv4Addr,
    pub instance_uuid: String,
}

/// Reads the view of the CNCI recorded in `state_dir`; an error naming the directory when no
/// CNCI is recorded there (absent or empty directory), having written nothing.
pub fn read(state_dir: &Path) -> Result<View> {
    let nothing = || Error::Invalid(format!("no CNCI recorded in {}", state_dir.display()));
    let store = Store::open_existing(state_dir)?.ok_or_else(nothing)?;
    let record = store.agent()?.ok_or_else(nothing)?;
    let desired = store.desired()?;
    let status = store.status()?.unwrap_or_default();
    let programmed = crate::hub::programmed_now(&record, &desired)?;
    Ok(assemble(&record, &desired, &status, programmed))
}

/// The view from the records and what the kernel reaches per subnet (absent: nothing).
pub fn assemble(
    record: &AgentRecord,
    desired: &Desired,
    status: &Status,
    mut programmed: BTreeMap<ipnet::Ipv4Net, BTreeSet<Ipv4Addr>>,
) -> View {
    let subnets = desired
        .subnets
        .values()
        .map(|rec| SubnetView {
            subnet: rec.subnet.to_string(),
            kind: rec.kind.as_str().to_string(),
            id: rec.id,
            gateway: rec.gateway(),
            nodes: rec.nodes(),
            agents: rec.agents.clone(),
            programmed: programmed.remove(&rec.subnet).unwrap_or_default(),
        })
        .collect();
    let public_ips = desired
        .public_ips
        .values()
        .map(|p| PublicIpView {
            public_ip: p.public_ip,
            private_ip: p.private_ip,
            instance_uuid: p.instance_uuid.clone(),
        })
        .collect();
    View {
        uuid: record.uuid,
        tenant: record.tenant,
        netns: record.netns.clone(),
        underlay_ip: record.underlay_ip,
        external_dev: record.external_dev.clone(),
        uplink: record.uplink.to_string(),
        connected: status.connected,
        subnets,
        public_ips,
        ingress: desired.ingress.clone(),
    }
}

fn comma_list<T: fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    items
        .into_iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

impl fmt::Display for View {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "CNCI {} (tenant {})", self.uuid, self.tenant)?;
        writeln!(
            f,
            "  namespace {}, underlay {}, uplink {}, connected: {}",
            self.netns, self.underlay_ip, self.uplink, self.connected
        )?;
        for s in &self.subnets {
            writeln!(
                f,
                "  subnet {} {} {} gateway {} nodes [{}] programmed [{}]",
                s.subnet,
                s.kind,
                s.id,
                s.gateway,
                comma_list(&s.nodes),
                comma_list(&s.programmed)
            )?;
        }
        for p in &self.public_ips {
            writeln!(f, "  public {} -> {}", p.public_ip, p.private_ip)?;
        }
        if let Some(i) = &self.ingress {
            match i.forward_ip {
                Some(ip) => writeln!(f, "  forward IP {ip} (generation {})", i.generation)?,
                None => writeln!(f, "  no forward IP (generation {})", i.generation)?,
            }
            for r in &i.forwards {
                let proto = if r.tcp { "tcp" } else { "udp" };
                writeln!(
                    f,
                    "  forward {proto} {} -> {}:{}",
                    r.public_port, r.private_ip, r.private_port
                )?;
            }
            for b in &i.ssh {
                writeln!(f, "  ssh {} from port {}", b.cidr, b.base)?;
            }
            for (n, r) in i.rules.iter().enumerate() {
                writeln!(f, "  ingress rule {}: {}", n + 1, r.describe())?;
            }
            if !i.rules.is_empty() || i.default_deny {
                let default = if i.default_deny { "deny" } else { "allow" };
                writeln!(f, "  ingress default {default}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{PublicIpRecord, SubnetRecord};
    use netcore::TunnelKind;

    fn record() -> AgentRecord {
        AgentRecord {
            uuid: Uuid::from_u128(1),
            tenant: Uuid::from_u128(2),
            netns: "cnci-test".into(),
            underlay_ip: Ipv4Addr::new(10, 0, 0, 3),
            external_dev: None,
            uplink: "100.64.0.0/31".parse().expect("uplink"),
            dns: vec![],
        }
    }

    #[test]
    fn the_json_and_text_forms_name_every_subnet_and_public_ip() {
        let net: ipnet::Ipv4Net = "172.16.1.0/24".parse().expect("net");
        let mut rec = SubnetRecord::new(net, TunnelKind::Vxlan, 42);
        let (a, b) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        rec.agents.insert(Uuid::from_u128(7), a);
        rec.agents.insert(Uuid::from_u128(8), b);
        let mut desired = Desired::default();
        desired.subnets.insert(net, rec);
        let public = PublicIpRecord {
            public_ip: Ipv4Addr::new(203, 0, 113, 10),
            private_ip: Ipv4Addr::new(172, 16, 1, 10),
            instance_uuid: "i".into(),
            vnic_mac: "02:00:ac:10:01:0a".into(),
        };
        desired.public_ips.insert(public.public_ip, public);
        let status = Status {
            pid: 1,
            connected: true,
        };
        let view = assemble(&record(), &desired, &status, [(net, [a].into())].into());
        let json = serde_json::to_value(&view).expect("json");
        assert_eq!(json["subnets"][0]["subnet"], "172.16.1.0/24");
        assert_eq!(json["subnets"][0]["kind"], "vxlan");
        assert_eq!(json["subnets"][0]["gateway"], "172.16.1.1");
        assert_eq!(
            json["subnets"][0]["nodes"],
            serde_json::json!(["10.0.0.1", "10.0.0.2"])
        );
        assert_eq!(
            json["subnets"][0]["programmed"],
            serde_json::json!(["10.0.0.1"])
        );
        assert_eq!(json["connected"], true);
        assert_eq!(json["public_ips"][0]["private_ip"], "172.16.1.10");
        let text = view.to_string();
        assert!(
            text.contains(
                "subnet 172.16.1.0/24 vxlan 42 gateway 172.16.1.1 nodes [10.0.0.1,10.0.0.2] programmed [10.0.0.1]"
            ),
            "{text}"
        );
        assert!(
            text.contains("public 203.0.113.10 -> 172.16.1.10"),
            "{text}"
        );
    }
}
