//! Inbound port forwards and SSH access (issue 14): the controller's TenantIngress snapshot,
//! checked, recorded and rendered into the tenant namespace's table.
//!
//! Everything enters on one address, the tenant's *forward IP*, routed to the uplink and
//! proxy-ARPed on the external device like a public IP. In the tenant namespace each forward
//! is one DNAT rule, and all SSH blocks are one map from port to `address . 22` used by one
//! rule: the address at offset `i` of a block's subnet is reached on `base + i`. What matches
//! neither is not translated and dies in the tenant table's forward chain (nothing else on the
//! forward IP answers). Replies go back out through the same address by conntrack.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use ssntp::payloads::TenantIngress;

use crate::ingress_rules::TenantRule;
use crate::state::PublicIpRecord;
use crate::validate::Fences;

/// One forward: `forward_ip:public_port/protocol` to `private_ip:private_port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ForwardRule {
    pub tcp: bool,
    pub public_port: u16,
    pub private_ip: Ipv4Addr,
    pub private_port: u16,
}

/// One block of SSH ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SshRule {
    pub cidr: Ipv4Net,
    pub base: u16,
}

impl SshRule {
    /// `(port, address)` of every workload address of the block (not the network, gateway
    /// or broadcast address).
    pub fn ports(&self) -> impl Iterator<Item = (u16, Ipv4Addr)> + '_ {
        let net = u32::from(self.cidr.network());
        let size = 1u32 << (32 - u32::from(self.cidr.prefix_len()));
        let skip = if size >= 4 { 2 } else { 0 };
        let end = if size >= 4 { size - 1 } else { size };
        (skip..end).map(move |off| {
            let port = u16::try_from(u32::from(self.base) + off).unwrap_or(u16::MAX);
            (port, Ipv4Addr::from(net + off))
        })
    }

    fn last_port(&self) -> u32 {
        u32::from(self.base) + (1u32 << (32 - u32::from(self.cidr.prefix_len()))) - 1
    }
}

/// The tenant's ingress as applied, persisted in `ingress.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngressRecord {
    pub generation: u64,
    /// `None`: the tenant has rules but no forward IP (they guard its public IPs).
    pub forward_ip: Option<Ipv4Addr>,
    pub forwards: Vec<ForwardRule>,
    pub ssh: Vec<SshRule>,
    /// The tenant's ingress rules in order (absent from records of older agents).
    #[serde(default)]
    pub rules: Vec<TenantRule>,
    #[serde(default)]
    pub default_deny: bool,
}

/// What the CNCI knows when it checks a snapshot.
pub struct Context<'a> {
    pub subnets: &'a BTreeSet<Ipv4Net>,
    pub fences: &'a Fences,
    pub public_ips: &'a BTreeMap<Ipv4Addr, PublicIpRecord>,
    /// Tunnel ends of the compute nodes (never a public address).
    pub cns: &'a BTreeSet<Ipv4Addr>,
}

/// The snapshot as a record (`None`: no forward IP and no rule), or why it is refused.
pub fn check(cmd: &TenantIngress, ctx: &Context<'_>) -> Result<Option<IngressRecord>, String> {
    let err = |e: ssntp::payloads::PayloadError| e.to_string();
    let forwards = cmd.forwards().map_err(err)?;
    let ssh = cmd.ssh().map_err(err)?;
    let rules = cmd
        .rules()
        .map_err(err)?
        .iter()
        .map(TenantRule::from_checked)
        .collect::<Result<Vec<_>, _>>()?;
    let default_deny = cmd.0.default_deny;
    let Some(forward_ip) = cmd.forward_ip().map_err(err)? else {
        if !forwards.is_empty() || !ssh.is_empty() {
            return Err("tenant_ingress has forwards or SSH blocks but no forward_ip".into());
        }
        if rules.is_empty() && !default_deny {
            return Ok(None);
        }
        return Ok(Some(IngressRecord {
            generation: cmd.0.generation,
            forward_ip: None,
            forwards: Vec::new(),
            ssh: Vec::new(),
            rules,
            default_deny,
        }));
    };
    crate::validate::public_ip(forward_ip, ctx.fences, ctx.cns)
        .map_err(|e| e.replace("public_ip", "forward_ip"))?;
    if ctx.public_ips.contains_key(&forward_ip) {
        return Err(format!(
            "forward_ip {forward_ip} is mapped 1:1 to a workload here"
        ));
    }
    let mut seen = BTreeSet::new();
    let mut dnats = Vec::new();
    for f in forwards {
        if !seen.insert((f.tcp, f.public_port)) {
            return Err(format!(
                "port {}/{} is forwarded twice",
                f.public_port,
                proto(f.tcp)
            ));
        }
        crate::validate::private_ip(f.private_ip, ctx.subnets.iter().copied())
            .map_err(|e| format!("forward of port {}: {e}", f.public_port))?;
        dnats.push(ForwardRule {
            tcp: f.tcp,
            public_port: f.public_port,
            private_ip: f.private_ip,
            private_port: f.private_port,
        });
    }
    let mut blocks: Vec<SshRule> = Vec::new();
    for (subnet, base) in ssh {
        let cidr = Ipv4Net::new(subnet.network(), subnet.prefix_len())
            .map_err(|e| format!("ssh block {subnet}: {e}"))?;
        let block = SshRule { cidr, base };
        if block.last_port() > 65535 {
            return Err(format!(
                "the SSH ports of {cidr} from {base} do not fit below 65536"
            ));
        }
        if let Some(other) = blocks.iter().find(|b| {
            u32::from(b.base) <= block.last_port() && u32::from(block.base) <= b.last_port()
        }) {
            return Err(format!(
                "the SSH ports of {cidr} overlap those of {}",
                other.cidr
            ));
        }
        if let Some(f) = dnats.iter().find(|f| {
            f.tcp && (u32::from(base)..=block.last_port()).contains(&u32::from(f.public_port))
        }) {
            return Err(format!(
                "tcp port {} is both a forward and an SSH port of {cidr}",
                f.public_port
            ));
        }
        blocks.push(block);
    }
    dnats.sort();
    blocks.sort();
    Ok(Some(IngressRecord {
        generation: cmd.0.generation,
        forward_ip: Some(forward_ip),
        forwards: dnats,
        ssh: blocks,
        rules,
        default_deny,
    }))
}

fn proto(tcp: bool) -> &'static str {
    if tcp {
        "tcp"
    } else {
        "udp"
    }
}

/// The `ssh` map's definition (empty when SSH is off) and the prerouting rules, for
/// [`crate::nft::tenant_rules`].
pub fn render(ingress: Option<&IngressRecord>, uplink: &str) -> (String, String) {
    let Some((ing, ip)) = ingress.and_then(|i| Some((i, i.forward_ip?))) else {
        return (String::new(), String::new());
    };
    let mut rules = String::new();
    for f in &ing.forwards {
        let _ = writeln!(
            rules,
            "    iifname \"{uplink}\" ip daddr {ip} {} dport {} dnat to {}:{}",
            proto(f.tcp),
            f.public_port,
            f.private_ip,
            f.private_port
        );
    }
    let elements: Vec<String> = ing
        .ssh
        .iter()
        .flat_map(|b| b.ports())
        .map(|(port, addr)| format!("{port} : {addr} . 22"))
        .collect();
    if elements.is_empty() {
        return (String::new(), rules);
    }
    let map = format!(
        "  map ssh {{\n    type inet_service : ipv4_addr . inet_service\n    elements = {{ {} }}\n  }}\n",
        elements.join(", ")
    );
    let _ = writeln!(
        rules,
        "    iifname \"{uplink}\" ip daddr {ip} dnat ip to tcp dport map @ssh"
    );
    (map, rules)
}

impl<K: crate::hub::HubKernel> crate::handlers::Agent<K> {
    /// TenantIngress: the EVENT TenantIngressApplied, or the ERROR TenantIngressFailure with
    /// nothing of the snapshot applied (the previous one stays).
    pub(crate) fn tenant_ingress(&mut self, payload: &[u8]) -> ssntp::frame::Frame {
        use ssntp::payloads::Payload;
        let outcome = match TenantIngress::from_yaml(payload) {
            Ok(cmd) => self.try_ingress(cmd),
            Err(e) => Err(TenantIngress::default().outcome(&e.to_string())),
        };
        self.ingress_reply(outcome)
    }

    /// The pending snapshot again, after a subnet was registered; its reply.
    pub(crate) fn retry_ingress(&mut self) -> Option<ssntp::frame::Frame> {
        let cmd = self.pending_ingress.take()?;
        let outcome = self.try_ingress(cmd);
        Some(self.ingress_reply(outcome))
    }

    /// Applies `cmd`, or keeps it pending when refused.
    fn try_ingress(
        &mut self,
        cmd: TenantIngress,
    ) -> Result<ssntp::payloads::TenantIngressOutcome, ssntp::payloads::TenantIngressOutcome> {
        match self.apply_ingress(&cmd) {
            Ok(()) => {
                self.pending_ingress = None;
                Ok(cmd.outcome(""))
            }
            Err(why) => {
                let outcome = cmd.outcome(&why);
                self.pending_ingress = Some(cmd);
                Err(outcome)
            }
        }
    }

    fn ingress_reply(
        &self,
        outcome: Result<
            ssntp::payloads::TenantIngressOutcome,
            ssntp::payloads::TenantIngressOutcome,
        >,
    ) -> ssntp::frame::Frame {
        use ssntp::frame::{error, event, kind, Frame};
        use ssntp::payloads::{Payload, TenantIngressApplied, TenantIngressFailure};
        match outcome {
            Ok(body) => {
                let yaml = TenantIngressApplied(body).to_yaml();
                Frame::new(
                    kind::EVENT,
                    event::TENANT_INGRESS_APPLIED,
                    self.record.uuid,
                    yaml,
                )
            }
            Err(body) => {
                tracing::warn!(
                    generation = body.generation,
                    "tenant_ingress refused: {}",
                    body.reason
                );
                let yaml = TenantIngressFailure(body).to_yaml();
                Frame::new(
                    kind::ERROR,
                    error::TENANT_INGRESS_FAILURE,
                    self.record.uuid,
                    yaml,
                )
            }
        }
    }

    fn apply_ingress(&mut self, cmd: &TenantIngress) -> Result<(), String> {
        let cnci = cmd.concentrator().map_err(|e| e.to_string())?;
        if cnci != self.record.uuid {
            return Err(format!(
                "tenant_ingress is for CNCI {cnci}, this is {}",
                self.record.uuid
            ));
        }
        let tenant = cmd.tenant().map_err(|e| e.to_string())?;
        if tenant != self.record.tenant {
            return Err(format!(
                "tenant_ingress is for tenant {tenant}, this CNCI serves {}",
                self.record.tenant
            ));
        }
        match self.hub.fences(&self.public_ranges) {
            Ok(f) => self.fences = f,
            Err(e) => {
                tracing::warn!("re-reading the node's addresses: {e}; using those from start")
            }
        }
        let subnets: BTreeSet<Ipv4Net> = self.desired.subnets.keys().copied().collect();
        let cns: BTreeSet<Ipv4Addr> = self
            .desired
            .subnets
            .values()
            .flat_map(|r| r.nodes())
            .collect();
        let ctx = Context {
            subnets: &subnets,
            fences: &self.fences,
            public_ips: &self.desired.public_ips,
            cns: &cns,
        };
        let record = check(cmd, &ctx)?;
        if record == self.desired.ingress {
            return Ok(()); // the same snapshot again: the kernel has it
        }
        if let Some(ip) = record.as_ref().and_then(|r| r.forward_ip) {
            if let Some(route) = self.hub.public_ip_in_use(ip).map_err(|e| e.to_string())? {
                return Err(format!("forward_ip {ip} is in use on this node ({route})"));
            }
        }
        self.store
            .put_ingress(record.as_ref())
            .map_err(|e| e.to_string())?;
        let before = std::mem::replace(&mut self.desired.ingress, record);
        if let Err(e) = self
            .hub
            .apply_public_ips(&self.desired.public_ips, self.desired.ingress.as_ref())
        {
            self.desired.ingress = before;
            let _ = self.store.put_ingress(self.desired.ingress.as_ref());
            let _ = self
                .hub
                .apply_public_ips(&self.desired.public_ips, self.desired.ingress.as_ref());
            return Err(e.to_string());
        }
        tracing::info!(generation = cmd.0.generation, "tenant ingress applied");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ssntp::payloads::{IngressForward, IngressSsh, TenantIngressCmd};

    fn cmd(forward_ip: &str, private: &str, ssh: bool) -> TenantIngress {
        TenantIngress(TenantIngressCmd {
            concentrator_uuid: uuid::Uuid::from_u128(1).to_string(),
            tenant_uuid: uuid::Uuid::from_u128(2).to_string(),
            generation: 9,
            forward_ip: forward_ip.into(),
            forwards: vec![IngressForward {
                protocol: "tcp".into(),
                public_port: 8080,
                private_ip: private.into(),
                private_port: 80,
            }],
            ssh: if ssh {
                vec![IngressSsh {
                    cidr: "172.16.1.0/24".into(),
                    base: 33000,
                }]
            } else {
                Vec::new()
            },
            ..TenantIngressCmd::default()
        })
    }

    fn with_ctx<T>(f: impl FnOnce(&Context<'_>) -> T) -> T {
        let subnets: BTreeSet<Ipv4Net> = ["172.16.1.0/24".parse().expect("net")].into();
        let fences = Fences {
            public_ranges: vec!["203.0.113.0/24".parse().expect("net")],
            ..Fences::default()
        };
        let public = BTreeMap::new();
        let cns = BTreeSet::new();
        f(&Context {
            subnets: &subnets,
            fences: &fences,
            public_ips: &public,
            cns: &cns,
        })
    }

    #[test]
    fn a_snapshot_renders_one_rule_per_forward_and_one_map_for_ssh() {
        let rec = with_ctx(|c| check(&cmd("203.0.113.9", "172.16.1.5", true), c))
            .expect("valid")
            .expect("some");
        let (map, rules) = render(Some(&rec), "up");
        assert!(rules
            .contains("iifname \"up\" ip daddr 203.0.113.9 tcp dport 8080 dnat to 172.16.1.5:80"));
        assert!(rules.contains("dnat ip to tcp dport map @ssh"));
        assert_eq!(rules.lines().count(), 2, "{rules}");
        assert!(map.contains("33002 : 172.16.1.2 . 22"), "{map}");
        assert!(map.contains("33254 : 172.16.1.254 . 22"));
        assert!(!map.contains("33001 :") && !map.contains("33255 :"));
        let off = with_ctx(|c| check(&cmd("203.0.113.9", "172.16.1.5", false), c)).expect("valid");
        let (map, rules) = render(off.as_ref(), "up");
        assert!(map.is_empty() && !rules.contains("@ssh"));
        assert_eq!(render(None, "up"), (String::new(), String::new()));
    }

    #[test]
    fn bad_snapshots_are_refused_with_the_reason() {
        let e = with_ctx(|c| check(&cmd("198.51.100.1", "172.16.1.5", false), c))
            .expect_err("outside the range");
        assert!(e.contains("forward_ip 198.51.100.1 is outside"), "{e}");
        let e = with_ctx(|c| check(&cmd("203.0.113.9", "10.9.9.9", false), c))
            .expect_err("outside the tenant");
        assert!(e.contains("10.9.9.9"), "{e}");
        let e =
            with_ctx(|c| check(&cmd("203.0.113.9", "172.16.1.1", false), c)).expect_err("gateway");
        assert!(e.contains("gateway"), "{e}");
        let mut overlap = cmd("203.0.113.9", "172.16.1.5", true);
        overlap.0.forwards[0].public_port = 33005;
        let e = with_ctx(|c| check(&overlap, c)).expect_err("overlap");
        assert!(e.contains("33005"), "{e}");
        let mut high = cmd("203.0.113.9", "172.16.1.5", true);
        high.0.ssh[0].base = 65400;
        assert!(with_ctx(|c| check(&high, c)).is_err());
        let mut none = cmd("", "172.16.1.5", false);
        assert!(with_ctx(|c| check(&none, c)).is_err());
        none.0.forwards.clear();
        assert_eq!(with_ctx(|c| check(&none, c)), Ok(None));
        // Rules without a forward IP guard the public IPs: a record without DNAT.
        none.0.default_deny = true;
        let rec = with_ctx(|c| check(&none, c)).expect("valid").expect("some");
        assert_eq!((rec.forward_ip, rec.default_deny), (None, true));
        assert_eq!(render(Some(&rec), "up"), (String::new(), String::new()));
        let mut bad = cmd("203.0.113.9", "172.16.1.5", false);
        bad.0.rules = vec![ssntp::payloads::IngressRule {
            action: "deny".into(),
            protocol: "icmp".into(),
            port_min: 80,
            port_max: 80,
            remote_cidr: String::new(),
        }];
        let e = with_ctx(|c| check(&bad, c)).expect_err("ports with icmp");
        assert!(e.contains("rules.port_min"), "{e}");
    }
}
