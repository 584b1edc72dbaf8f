//! This project's inbound port forwards and SSH access (issue 14): the master controller sends
//! the tenant's CNCI a full snapshot of what may enter on the tenant's forward IP, so applying
//! it is idempotent and a restarted CNCI rebuilds exactly the same. ciao has no such frame.

use std::net::Ipv4Addr;

use uuid::Uuid;

use super::{ipv4_key, subnet_of_key, uuid_key};
use super::{IngressRule, Ipv4Subnet, Payload, PayloadError};

yaml_struct! {
    /// One forward: `forward_ip:public_port/protocol` to `private_ip:private_port`.
    pub struct IngressForward {
        /// `tcp` or `udp`.
        pub protocol: String,
        pub public_port: u32,
        pub private_ip: String,
        pub private_port: u32,
    }
}

yaml_struct! {
    /// One SSH block: the address at offset `i` of `cidr` is reached on tcp port `base + i`.
    pub struct IngressSsh {
        pub cidr: String,
        pub base: u32,
    }
}

yaml_struct! {
    /// The body of TenantIngress.
    pub struct TenantIngressCmd {
        /// Routing key: the scheduler forwards to the CNCI session with exactly this UUID text.
        pub concentrator_uuid: String,
        pub tenant_uuid: String,
        /// Names this snapshot (the controller's digest of it); echoed in TenantIngressApplied.
        pub generation: u64,
        /// The tenant's forward IP, `""` when it has none (then nothing enters).
        pub forward_ip: String,
        pub forwards: Vec<IngressForward>,
        /// Empty when SSH access is off.
        pub ssh: Vec<IngressSsh>,
        /// The tenant's rules for what enters from outside, in order: first match wins.
        pub rules: Vec<IngressRule>,
        /// What matches no rule: dropped if true, else let through (the default).
        pub default_deny: bool,
    }
}

wrapped_payload! {
    /// COMMAND TenantIngress (70), master controller → the tenant's CNCI.
    TenantIngress(TenantIngressCmd) = "tenant_ingress"
}

yaml_struct! {
    /// The body of TenantIngressApplied and TenantIngressFailure.
    pub struct TenantIngressOutcome {
        pub concentrator_uuid: String,
        pub tenant_uuid: String,
        pub generation: u64,
        /// Why the snapshot was refused; `""` when applied.
        pub reason: String,
    }
}

wrapped_payload! {
    /// EVENT TenantIngressApplied (70), CNCI → all controllers: the kernel has this generation.
    TenantIngressApplied(TenantIngressOutcome) = "tenant_ingress_applied"
}

wrapped_payload! {
    /// ERROR TenantIngressFailure (70), CNCI → all controllers: the snapshot was refused and
    /// nothing of it applied (the previous one stays).
    TenantIngressFailure(TenantIngressOutcome) = "tenant_ingress_failure"
}

/// A forward with its values checked for shape (the CNCI checks them against its subnets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CheckedForward {
    /// `true` for tcp, `false` for udp.
    pub tcp: bool,
    pub public_port: u16,
    pub private_ip: Ipv4Addr,
    pub private_port: u16,
}

fn port(key: &'static str, value: u32) -> Result<u16, PayloadError> {
    match u16::try_from(value) {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(super::invalid(
            TenantIngress::NAME,
            key,
            &value.to_string(),
            "is not a port (1-65535)",
        )),
    }
}

impl TenantIngress {
    pub fn concentrator(&self) -> Result<Uuid, PayloadError> {
        uuid_key(Self::NAME, "concentrator_uuid", &self.0.concentrator_uuid)
    }

    pub fn tenant(&self) -> Result<Uuid, PayloadError> {
        uuid_key(Self::NAME, "tenant_uuid", &self.0.tenant_uuid)
    }

    /// The forward IP; `None` when the tenant has none.
    pub fn forward_ip(&self) -> Result<Option<Ipv4Addr>, PayloadError> {
        if self.0.forward_ip.is_empty() {
            return Ok(None);
        }
        ipv4_key(Self::NAME, "forward_ip", &self.0.forward_ip).map(Some)
    }

    pub fn forwards(&self) -> Result<Vec<CheckedForward>, PayloadError> {
        self.0
            .forwards
            .iter()
            .map(|f| {
                let tcp = match f.protocol.as_str() {
                    "tcp" => true,
                    "udp" => false,
                    other => {
                        return Err(super::invalid(
                            Self::NAME,
                            "forwards.protocol",
                            other,
                            "is not tcp or udp",
                        ))
                    }
                };
                Ok(CheckedForward {
                    tcp,
                    public_port: port("forwards.public_port", f.public_port)?,
                    private_ip: ipv4_key(Self::NAME, "forwards.private_ip", &f.private_ip)?,
                    private_port: port("forwards.private_port", f.private_port)?,
                })
            })
            .collect()
    }

    /// `(subnet, first port)` of every SSH block.
    pub fn ssh(&self) -> Result<Vec<(Ipv4Subnet, u16)>, PayloadError> {
        self.0
            .ssh
            .iter()
            .map(|b| {
                Ok((
                    subnet_of_key(Self::NAME, "ssh.cidr", &b.cidr)?,
                    port("ssh.base", b.base)?,
                ))
            })
            .collect()
    }

    /// The reply naming this snapshot, with `reason` empty when applied.
    pub fn outcome(&self, reason: &str) -> TenantIngressOutcome {
        TenantIngressOutcome {
            concentrator_uuid: self.0.concentrator_uuid.clone(),
            tenant_uuid: self.0.tenant_uuid.clone(),
            generation: self.0.generation,
            reason: reason.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> TenantIngress {
        TenantIngress(TenantIngressCmd {
            concentrator_uuid: Uuid::from_u128(7).to_string(),
            tenant_uuid: Uuid::from_u128(8).to_string(),
            generation: u64::MAX - 3,
            forward_ip: "203.0.113.9".into(),
            forwards: vec![IngressForward {
                protocol: "tcp".into(),
                public_port: 8080,
                private_ip: "172.16.1.5".into(),
                private_port: 80,
            }],
            ssh: vec![IngressSsh {
                cidr: "172.16.1.0/24".into(),
                base: 33000,
            }],
            rules: vec![IngressRule {
                action: "deny".into(),
                protocol: "tcp".into(),
                port_min: 8080,
                port_max: 8080,
                remote_cidr: "203.0.113.101/32".into(),
            }],
            default_deny: true,
        })
    }

    #[test]
    fn tenant_ingress_round_trips_and_checks() {
        let cmd = sample();
        let back = TenantIngress::from_yaml(&cmd.to_yaml()).expect("parse");
        assert_eq!(back, cmd);
        assert_eq!(back.concentrator().expect("uuid"), Uuid::from_u128(7));
        assert_eq!(
            back.forward_ip().expect("ip"),
            Some(Ipv4Addr::new(203, 0, 113, 9))
        );
        assert_eq!(back.forwards().expect("forwards")[0].public_port, 8080);
        assert_eq!(back.ssh().expect("ssh")[0].1, 33000);
        assert_eq!(back.rules().expect("rules")[0].ports, Some((8080, 8080)));
        assert!(back.0.default_deny);
        let text = String::from_utf8(cmd.to_yaml()).expect("utf8");
        assert!(
            text.starts_with("tenant_ingress:\n  concentrator_uuid:"),
            "{text}"
        );
        let empty = TenantIngress(TenantIngressCmd {
            forward_ip: String::new(),
            forwards: Vec::new(),
            ssh: Vec::new(),
            rules: Vec::new(),
            default_deny: false,
            ..cmd.0.clone()
        });
        let back = TenantIngress::from_yaml(&empty.to_yaml()).expect("parse");
        assert_eq!(back.forward_ip().expect("none"), None);
        assert!(back.forwards().expect("none").is_empty());
    }

    #[test]
    fn bad_values_are_named() {
        let mut cmd = sample();
        cmd.0.forwards[0].public_port = 70000;
        let e = cmd.forwards().expect_err("port").to_string();
        assert!(e.contains("forwards.public_port"), "{e}");
        let mut cmd = sample();
        cmd.0.forwards[0].protocol = "sctp".into();
        assert!(cmd
            .forwards()
            .expect_err("proto")
            .to_string()
            .contains("sctp"));
        let mut cmd = sample();
        cmd.0.ssh[0].base = 0;
        assert!(cmd.ssh().is_err());
        let mut cmd = sample();
        cmd.0.forward_ip = "nope".into();
        assert!(cmd.forward_ip().is_err());
    }

    #[test]
    fn outcomes_round_trip() {
        let ok = TenantIngressApplied(sample().outcome(""));
        assert_eq!(
            TenantIngressApplied::from_yaml(&ok.to_yaml()).expect("ok"),
            ok
        );
        let bad = TenantIngressFailure(sample().outcome("forwards.private_ip outside"));
        assert_eq!(
            TenantIngressFailure::from_yaml(&bad.to_yaml()).expect("bad"),
            bad
        );
    }
}
