//! Public (floating) IPs (reference/ssntp.md §7.3–7.5): the Controller asks a CNCI to map or
//! unmap one, and the CNCI reports the outcome to all Controllers.

use std::net::Ipv4Addr;

use uuid::Uuid;

use super::{ipv4_key, uuid_key};
use super::{Payload, PayloadError};

yaml_struct! {
    /// The body of AssignPublicIP and ReleasePublicIP (Go `payloads.PublicIPCommand`).
    pub struct PublicIpCommand {
        /// Routing key: the scheduler forwards to the CNCI session with exactly this UUID text.
        pub concentrator_uuid: String,
        pub tenant_uuid: String,
        pub instance_uuid: String,
        pub public_ip: String,
        /// The instance's tenant address the public one maps to.
        pub private_ip: String,
        pub vnic_mac: String,
    }
}

yaml_struct! {
    /// The body of PublicIPAssigned and PublicIPUnassigned (Go `payloads.PublicIPEvent`).
    pub struct PublicIpEvent {
        pub concentrator_uuid: String,
        pub instance_uuid: String,
        pub public_ip: String,
        pub private_ip: String,
    }
}

string_enum! {
    /// Go `payloads.PublicIPFailureReason`.
    pub enum PublicIpFailureReason {
        NoInstance = "no_instance",
        InvalidPayload = "invalid_payload",
        InvalidData = "invalid_data",
        /// What the Go CNCI sends when mapping fails.
        AssignFailure = "assign_failure",
        /// What the Go CNCI sends when unmapping fails.
        ReleaseFailure = "release_failure",
    }
}

yaml_struct! {
    /// The flat body of the ERROR frames AssignPublicIPFailure / UnassignPublicIPFailure
    /// (Go `payloads.ErrorPublicIPFailure`).
    pub struct PublicIpFailure {
        pub concentrator_uuid: String,
        pub tenant_uuid: String,
        pub instance_uuid: String,
        pub public_ip: String,
        pub private_ip: String,
        pub vnic_mac: String,
        pub reason: PublicIpFailureReason,
    }
}

/// The CNCI's success reply carries the command's addresses back (Go `publicIPAssignedMarshal`).
impl From<&PublicIpCommand> for PublicIpEvent {
    fn from(cmd: &PublicIpCommand) -> Self {
        PublicIpEvent {
            concentrator_uuid: cmd.concentrator_uuid.clone(),
            instance_uuid: cmd.instance_uuid.clone(),
            public_ip: cmd.public_ip.clone(),
            private_ip: cmd.private_ip.clone(),
        }
    }
}

impl PublicIpFailure {
    /// The CNCI's failure reply to `cmd`.
    pub fn for_command(cmd: &PublicIpCommand, reason: PublicIpFailureReason) -> Self {
        PublicIpFailure {
            concentrator_uuid: cmd.concentrator_uuid.clone(),
            tenant_uuid: cmd.tenant_uuid.clone(),
            instance_uuid: cmd.instance_uuid.clone(),
            public_ip: cmd.public_ip.clone(),
            private_ip: cmd.private_ip.clone(),
            vnic_mac: cmd.vnic_mac.clone(),
            reason,
        }
    }
}

wrapped_payload! {
    /// COMMAND AssignPublicIP (5), master Controller → CNCI.
    AssignPublicIp(PublicIpCommand) = "assign_public_ip"
}

wrapped_payload! {
    /// COMMAND ReleasePublicIP (6), master Controller → CNCI.
    ReleasePublicIp(PublicIpCommand) = "release_public_ip"
}

wrapped_payload! {
    /// EVENT PublicIPAssigned (4), CNCI → all Controllers.
    PublicIpAssigned(PublicIpEvent) = "public_ip_assigned"
}

wrapped_payload! {
    /// EVENT PublicIPUnassigned (5), CNCI → all Controllers.
    PublicIpUnassigned(PublicIpEvent) = "public_ip_unassigned"
}

flat_payload! {
    /// ERROR AssignPublicIPFailure (7), CNCI → all Controllers. Flat: no top-level key.
    AssignPublicIpFailure(PublicIpFailure) = "AssignPublicIPFailure"
}

flat_payload! {
    /// ERROR UnassignPublicIPFailure (8), CNCI → all Controllers. Flat, same body as 7.
    UnassignPublicIpFailure(PublicIpFailure) = "UnassignPublicIPFailure"
}

macro_rules! command_checks {
    ($($name:ident),*) => {$(
        impl $name {
            /// The CNCI this command is for, in the only form the scheduler routes.
            pub fn concentrator(&self) -> Result<Uuid, PayloadError> {
                uuid_key(Self::NAME, "concentrator_uuid", &self.0.concentrator_uuid)
            }

            /// `(public, private)`: what the Go CNCI parses before touching the firewall.
            pub fn addresses(&self) -> Result<(Ipv4Addr, Ipv4Addr), PayloadError> {
                Ok((
                    ipv4_key(Self::NAME, "public_ip", &self.0.public_ip)?,
                    ipv4_key(Self::NAME, "private_ip", &self.0.private_ip)?,
                ))
            }
        }
    )*};
}

command_checks!(AssignPublicIp, ReleasePublicIp);
