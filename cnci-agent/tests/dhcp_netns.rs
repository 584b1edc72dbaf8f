//! The DHCP server against a real client: busybox udhcpc in a second network namespace, joined
//! to the server's namespace by a veth pair. Needs root (skips otherwise).

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

use cnci_agent::dhcp::{bind_socket, serve, DhcpSubnet};

const SERVER_IF: &str = "dhsrv0";
const CLIENT_IF: &str = "dhcli0";

/// Deletes the namespaces (and with them the veth pair) also when a test fails.
struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn run(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn must(args: &[&str]) {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs udhcpc once in namespace `ns`; the script writes what it was given to `result`.
fn udhcpc(ns: &str, script: &Path, tries: &str) -> Output {
    let script = script.to_str().expect("utf-8 path");
    #[rustfmt::skip]
    let args = [
        "ip", "netns", "exec", ns, "busybox", "udhcpc", "-i", CLIENT_IF, "-n", "-q", "-f",
        "-t", tries, "-T", "1", "-O", "mtu", "-s", script,
    ];
    run(&args)
}

#[test]
fn udhcpc_gets_a_lease_for_a_scheme_mac_only() {
    if !nix::unistd::Uid::effective().is_root() {
        println!("skipped: udhcpc_gets_a_lease_for_a_scheme_mac_only: needs root");
        return;
    }
    let applets = String::from_utf8_lossy(&run(&["busybox", "--list"]).stdout).into_owned();
    assert!(
        applets.lines().any(|a| a == "udhcpc"),
        "busybox with the udhcpc applet is required"
    );

    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .subsec_nanos();
    let pid = std::process::id();
    let srv = format!("dhcp-srv-{pid}-{nanos}");
    let cli = format!("dhcp-cli-{pid}-{nanos}");
    let mut guard = Namespaces(Vec::new());
    for ns in [&srv, &cli] {
        must(&["ip", "netns", "add", ns]);
        guard.0.push(ns.clone());
    }
    // Created inside the namespaces, so the names cannot clash with anything on the host.
    #[rustfmt::skip]
    must(&[
        "ip", "-n", &srv, "link", "add", SERVER_IF, "type", "veth", "peer", "name", CLIENT_IF,
        "netns", &cli,
    ]);
    must(&[
        "ip",
        "-n",
        &srv,
        "addr",
        "add",
        "172.16.1.1/24",
        "dev",
        SERVER_IF,
    ]);
    must(&["ip", "-n", &srv, "link", "set", SERVER_IF, "up"]);
    // First a MAC outside the scheme.
    #[rustfmt::skip]
    must(&["ip", "-n", &cli, "link", "set", CLIENT_IF, "address", "52:54:00:12:34:56", "up"]);

    let subnet = DhcpSubnet {
        subnet: "172.16.1.0/24".parse().expect("subnet"),
        gateway: Ipv4Addr::new(172, 16, 1, 1),
        mtu: 1450,
        dns: vec![Ipv4Addr::new(192, 0, 2, 53)],
        lease_secs: 3600,
    };
    let netns = File::open(format!("/run/netns/{srv}")).expect("open netns");
    let socket = bind_socket(netns.as_fd(), SERVER_IF).expect("bind_socket");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let server = {
        let _enter = rt.enter();
        let socket = tokio::net::UdpSocket::from_std(socket).expect("tokio socket");
        rt.spawn(serve(socket, subnet))
    };

    let dir = tempfile::tempdir().expect("tempdir");
    let result = dir.path().join("lease");
    let script = dir.path().join("udhcpc.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             if [ \"$1\" = bound ]; then\n\
             \tip addr add \"$ip/$mask\" dev \"$interface\" || exit 1\n\
             \techo \"$ip $mask $mtu $router $dns\" > '{}'\n\
             fi\n\
             exit 0\n",
            result.display()
        ),
    )
    .expect("write script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");

    let out = udhcpc(&cli, &script, "3");
    eprintln!(
        "udhcpc, foreign MAC: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success(),
        "a MAC outside the scheme got a lease: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !result.exists(),
        "bound was called for a MAC outside the scheme"
    );
    assert!(!server.is_finished(), "the server stopped");

    // Now the VNIC MAC of 172.16.1.7.
    #[rustfmt::skip]
    must(&["ip", "-n", &cli, "link", "set", CLIENT_IF, "address", "02:00:ac:10:01:07"]);
    let out = udhcpc(&cli, &script, "5");
    eprintln!("udhcpc, VNIC MAC: {}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "udhcpc got no lease: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let lease = std::fs::read_to_string(&result).expect("the script ran on bound");
    let fields: Vec<&str> = lease.split_whitespace().collect();
    assert_eq!(
        fields,
        ["172.16.1.7", "24", "1450", "172.16.1.1", "192.0.2.53"],
        "ip mask mtu router dns"
    );
    let addrs = run(&[
        "ip", "-n", &cli, "-4", "-o", "addr", "show", "dev", CLIENT_IF,
    ]);
    assert!(
        String::from_utf8_lossy(&addrs.stdout).contains("inet 172.16.1.7/24"),
        "address not configured: {}",
        String::from_utf8_lossy(&addrs.stdout)
    );

    server.abort();
    drop(rt);
    drop(guard);
}
