//! A Docker network that names no subnet, with a real dockerd on a compute node of the
//! controller-mode cluster: `--ipam-opt tenant=T` alone, the plugin gets the tenant's subnet and
//! this node's range from `ciao-node run` (and so from the controller), and a container gets an
//! address in that range. The driver's error paths are in docker-plugin/tests/auto_subnet.rs.

use std::net::Ipv4Addr;

use testkit::cluster::{Cluster, Cn};
use testkit::docker::{controlled_network_args, unavailable, Dockerd, PluginDaemon, IMAGE};
use testkit::{skip, TENANT_A};

#[test]
fn a_network_with_only_ipam_opt_tenant_gets_the_controllers_subnet_and_this_nodes_range() {
    if let Some(why) = unavailable() {
        skip("docker_auto_subnet", &why);
        return;
    }
    let mut cluster = Cluster::with_controller().expect("cluster in controller mode");
    let t = cluster.controlled_tenant(TENANT_A);
    let cn1 = cluster.cn(Cn::Cn1);
    let d = Dockerd::start(cn1);
    let p = PluginDaemon::start(cn1);
    let create = controlled_network_args(&p.name, &t.tenant, "auto");
    d.docker(&create.iter().map(String::as_str).collect::<Vec<_>>());
    let subnet = d.docker(&[
        "network",
        "inspect",
        "-f",
        "{{(index .IPAM.Config 0).Subnet}}",
        "auto",
    ]);
    assert_eq!(subnet.trim(), "172.16.0.0/24", "the controller's subnet");
    d.docker(&[
        "run",
        "-d",
        "--name",
        "c1",
        "--network",
        "auto",
        IMAGE,
        "sleep",
        "600",
    ]);
    let ip: Ipv4Addr = d
        .ip_of("c1", "auto")
        .trim()
        .parse()
        .expect("container address");
    let tenant = t.tenant.parse().expect("tenant uuid");
    let got = netcore::auto_subnet::cached(cn1.state.path(), tenant)
        .expect("cache")
        .expect("this node's range, cached by ciao-node run");
    assert!(
        got.range_start <= ip && ip <= got.range_end,
        "{ip} in {}..{}",
        got.range_start,
        got.range_end
    );
    d.docker(&["rm", "-f", "c1"]);
    d.docker(&["network", "rm", "auto"]);
}
