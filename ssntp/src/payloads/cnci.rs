//! CNCI registration and the CNCI mesh refresh (reference/ssntp.md §7.2, §7.6).

use std::net::Ipv4Addr;

use uuid::Uuid;

use super::{ipv4_key, subnet_of_key, uuid_key};
use super::{Ipv4Subnet, Payload, PayloadError};

yaml_struct! {
    /// Go `payloads.ConcentratorInstanceAddedEvent`: a CNCI announcing itself after every
    /// (re)connect, so the Controller can mark it active.
    pub struct ConcentratorInstanceAddedEvent {
        /// The CNCI's SSNTP UUID, which is also its instance UUID.
        pub instance_uuid: String,
        /// The real Go CNCI always sends `""`.
        pub tenant_uuid: String,
        /// Address of its compute-network link: where nodes point their tunnels.
        pub concentrator_ip: String,
        pub concentrator_mac: String,
    }
}

wrapped_payload! {
    /// EVENT ConcentratorInstanceAdded (3), CNCI → all Controllers.
    ConcentratorInstanceAdded(ConcentratorInstanceAddedEvent) = "concentrator_instance_added"
}

yaml_struct! {
    /// Go `payloads.CNCINet`: one CNCI of the mesh.
    pub struct CnciNet {
        /// The CNCI's compute-network address.
        pub physical_ip: String,
        /// The tenant subnet it serves, routed through its tunnel address.
        pub subnet: String,
        pub tunnel_ip: String,
        /// Key of the point-to-multipoint `cncitun` (Go `uint32`).
        pub tunnel_id: u32,
    }
}

impl CnciNet {
    pub fn physical_addr(&self) -> Result<Ipv4Addr, PayloadError> {
        ipv4_key(RefreshCnci::NAME, "cncis.physical_ip", &self.physical_ip)
    }

    pub fn tunnel_addr(&self) -> Result<Ipv4Addr, PayloadError> {
        ipv4_key(RefreshCnci::NAME, "cncis.tunnel_ip", &self.tunnel_ip)
    }

    pub fn subnet(&self) -> Result<Ipv4Subnet, PayloadError> {
        subnet_of_key(RefreshCnci::NAME, "cncis.subnet", &self.subnet)
    }
}

yaml_struct! {
    /// Go `payloads.CNCIRefreshCommand`: the whole mesh, sent to each CNCI.
    pub struct CnciRefreshCommand {
        /// Routing key: the CNCI session with exactly this UUID text gets the command.
        pub cnci_uuid: String,
        pub cncis: Vec<CnciNet>,
    }
}

wrapped_payload! {
    /// COMMAND RefreshCNCI (10), master Controller → CNCI.
    RefreshCnci(CnciRefreshCommand) = "cnci_refresh"
}

impl RefreshCnci {
    /// The CNCI this command is for, in the only form the scheduler routes.
    pub fn cnci(&self) -> Result<Uuid, PayloadError> {
        uuid_key(Self::NAME, "cnci_uuid", &self.0.cnci_uuid)
    }
}
