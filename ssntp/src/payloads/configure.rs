//! The cluster configuration: the CONNECTED payload and COMMAND CONFIGURE (reference/ssntp.md
//! §7.9). Nodes take their compute and management networks from it.

use super::{subnet_of_key, Ipv4Subnet, PayloadError};

yaml_struct! {
    /// Go `payloads.ConfigureScheduler`.
    pub struct SchedulerConfig {
        pub storage_uri: String,
    }
}

yaml_struct! {
    /// Go `payloads.ConfigureStorage`.
    pub struct StorageConfig {
        pub ceph_id: String,
    }
}

yaml_struct! {
    /// Go `payloads.ConfigureController`.
    pub struct ControllerConfig {
        pub ciao_port: i64,
        pub compute_ca: String,
        pub compute_cert: String,
        pub cnci_vcpus: i64,
        pub cnci_mem: i64,
        pub cnci_disk: i64,
        pub admin_ssh_key: String,
        pub client_auth_ca_cert_path: String,
        /// Base address the Controller derives CNCI tunnel addresses from (not a CIDR).
        pub cnci_net: String,
    }
}

yaml_struct! {
    /// Go `payloads.ConfigureLauncher`.
    pub struct LauncherConfig {
        /// CIDRs; a node's tunnel end is its address in one of them. Empty: the node's only
        /// physical link.
        pub compute_net: Vec<String>,
        pub mgmt_net: Vec<String>,
        pub disk_limit: bool,
        pub mem_limit: bool,
        pub child_user: String,
    }
}

impl LauncherConfig {
    /// `compute_net`, parsed.
    pub fn compute_nets(&self) -> Result<Vec<Ipv4Subnet>, PayloadError> {
        parse_all("launcher.compute_net", &self.compute_net)
    }

    /// `mgmt_net`, parsed.
    pub fn mgmt_nets(&self) -> Result<Vec<Ipv4Subnet>, PayloadError> {
        parse_all("launcher.mgmt_net", &self.mgmt_net)
    }
}

fn parse_all(key: &'static str, cidrs: &[String]) -> Result<Vec<Ipv4Subnet>, PayloadError> {
    cidrs
        .iter()
        .map(|c| subnet_of_key("configure", key, c))
        .collect()
}

yaml_struct! {
    /// Go `payloads.ConfigurePayload` at ciao 194264ad.
    pub struct ConfigurePayload {
        pub scheduler: SchedulerConfig,
        pub storage: StorageConfig,
        pub controller: ControllerConfig,
        pub launcher: LauncherConfig,
    }
}

wrapped_payload! {
    /// The CONNECTED payload and COMMAND CONFIGURE (7).
    Configure(ConfigurePayload) = "configure"
}
