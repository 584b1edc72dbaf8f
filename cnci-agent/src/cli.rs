//! The command-line arguments `ciao-cnci-agent run` and `ciao-nn run` share: the way to the
//! scheduler, the TLS identity, the underlay and the outside (one struct, flattened into each).

use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnet::Ipv4Net;

#[derive(clap::Args, Debug, Clone)]
pub struct NodeArgs {
    /// Scheduler address, host:port.
    #[arg(long, default_value = "127.0.0.1:8888")]
    pub scheduler: String,
    /// Name to verify the scheduler's certificate against; default: the host part.
    #[arg(long)]
    pub server_name: Option<String>,
    /// This process's certificate and key, one PEM file as ciao-cert writes it (role
    /// cnciagent for ciao-cnci-agent; roles netagent and cnciagent for ciao-nn).
    #[arg(long)]
    pub cert: PathBuf,
    /// The CA certificate.
    #[arg(long)]
    pub ca: PathBuf,
    /// The address compute nodes tunnel to (`concentrator_ip`); must be on an interface here.
    #[arg(long)]
    pub underlay_ip: Ipv4Addr,
    /// The interface toward the outside: outbound NAT and public IPs go through it.
    #[arg(long)]
    pub external_dev: Option<String>,
    /// Where public IPs may come from (repeatable CIDR, e.g. the part of the external network
    /// set aside for them). None: every AssignPublicIP is refused.
    #[arg(long = "public-range")]
    pub public_ranges: Vec<Ipv4Net>,
    /// DNS server handed out by DHCP (repeatable).
    #[arg(long)]
    pub dns: Vec<Ipv4Addr>,
    /// Log filter (tracing EnvFilter syntax, e.g. `info` or `cnci_agent=debug`).
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    pub log_level: String,
}
