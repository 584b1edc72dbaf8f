//! The real podman (4.3, CNI backend) on a `type: ciao` network: two containers attached by the
//! plugin ping each other across the subnet bridge, and removing them leaves the node clean.
//!
//! Everything podman touches stays inside what the test made:
//! * podman runs with `nsenter --net=<node namespace>`, so the plugin builds the bridge and the
//!   tunnel in the simulated compute node, never on the host's interfaces. (`ip netns exec` does
//!   not work for this: it remounts /sys for the namespace, which hides /sys/fs/cgroup from the
//!   OCI runtime.)
//! * podman also runs in a private mount namespace, held by a `sleep` the test starts, with
//!   tmpfs over /sys/fs/cgroup (crun refuses this machine's hybrid cgroup layout, and containers
//!   run with `cgroups = "disabled"`, so no cgroup is created on the host), tmpfs over /run
//!   (podman's netns files, crun's state and libmount's utab are not seen on the host), an
//!   overlay over /var/lib (podman writes its blob-info cache and libcni its result cache there
//!   whatever `--root` says) and a tmpfs for podman's storage, run root and temporary files.
//!   When the holder and the last container process are gone, the kernel drops all of it.
//! * podman reads only the test's own containers.conf and storage.conf (CONTAINERS_CONF,
//!   CONTAINERS_STORAGE_CONF), with the network configuration in a test-private directory.

use std::io::{BufRead, BufReader, Read};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Instant;

use serde_json::Value;
use testkit::{json, plugin, require_root, unique, ComputeNode, TENANT_A};

const SUBNET: &str = "172.16.1.0/24";
const IMAGE: &str = "localhost/ciao-test/busybox";

/// The first executable called `name` on PATH.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// A podman confined to a private configuration, a private mount namespace and a node's network
/// namespace. Dropping it removes every container (so the plugin's DEL runs while the node
/// still exists: declare it after the node) and ends the namespace holder.
struct Podman {
    dir: tempfile::TempDir,
    holder: Child,
    node_netns: PathBuf,
}

impl Podman {
    fn new(node: &ComputeNode) -> Self {
        let dir = tempfile::tempdir().expect("podman test dir");
        let base = dir.path();
        for sub in ["plugins", "net.d", "store"] {
            std::fs::create_dir(base.join(sub)).expect("create podman test dirs");
        }
        // Only our plugin is on the CNI path: the network needs nothing else.
        std::os::unix::fs::symlink(plugin(), base.join("plugins/ciao")).expect("link the plugin");
        let containers_conf = format!(
            r#"[containers]
cgroups = "disabled"
pids_limit = 0
default_ulimits = ["nofile=20000:20000", "nproc=20000:20000"]

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "crun"

[network]
network_backend = "cni"
cni_plugin_dirs = ["{plugins}"]
network_config_dir = "{netd}"
"#,
            plugins = base.join("plugins").display(),
            netd = base.join("net.d").display(),
        );
        std::fs::write(base.join("containers.conf"), containers_conf).expect("containers.conf");
        let store = base.join("store");
        let storage_conf = format!(
            "[storage]\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
            store.join("root").display(),
            store.join("runroot").display()
        );
        std::fs::write(base.join("storage.conf"), storage_conf).expect("storage.conf");

        // The mount namespace holder: the mounts exist only in its namespace (`-n`: no utab).
        let script = r#"set -e
store="$1"
mount -n -t tmpfs ciao-podman-test /run
mkdir /run/netns
mount -n -t tmpfs ciao-podman-test "$store"
mkdir "$store/root" "$store/runroot" "$store/tmp" "$store/varlib-upper" "$store/varlib-work"
mount -n -t tmpfs ciao-podman-test /sys/fs/cgroup
mount -n -t overlay ciao-podman-test -o "lowerdir=/var/lib,upperdir=$store/varlib-upper,workdir=$store/varlib-work" /var/lib
echo ready
exec sleep 1800
"#;
        let mut holder = Command::new("unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                script,
                "sh",
            ])
            .arg(&store)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the mount namespace holder (unshare, util-linux)");
        let stdout = holder.stdout.take().expect("holder stdout");
        let mut stderr = holder.stderr.take().expect("holder stderr");
        // From here on, Drop ends the holder whatever happens.
        let podman = Podman {
            dir,
            holder,
            node_netns: node.ns.path(),
        };
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the holder's output");
        if line.trim() != "ready" {
            let mut why = String::new();
            let _ = stderr.read_to_string(&mut why);
            panic!("setting up podman's private mount namespace failed: {why}");
        }
        podman
    }

    fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// Runs podman in the private mount namespace and the node's network namespace.
    fn try_podman(&self, args: &[&str]) -> Output {
        let store = self.store();
        Command::new("nsenter")
            .arg(format!("--mount=/proc/{}/ns/mnt", self.holder.id()))
            .arg(format!("--net={}", self.node_netns.display()))
            .arg("--")
            .arg("podman")
            .arg("--root")
            .arg(store.join("root"))
            .arg("--runroot")
            .arg(store.join("runroot"))
            .arg("--tmpdir")
            .arg(store.join("tmp"))
            .args(args)
            .env("CONTAINERS_CONF", self.dir.path().join("containers.conf"))
            .env(
                "CONTAINERS_STORAGE_CONF",
                self.dir.path().join("storage.conf"),
            )
            .env("TMPDIR", store.join("tmp"))
            .env_remove("CONTAINER_HOST")
            .env_remove("CONTAINER_CONNECTION")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("spawn nsenter podman {args:?}: {e}"))
    }

    /// Runs podman, panicking with its output unless it succeeds; returns stdout.
    fn podman(&self, args: &[&str]) -> String {
        let out = self.try_podman(args);
        assert!(
            out.status.success(),
            "podman {args:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Writes `<name>`'s conflist: the plugin's configuration as one entry, with the
    /// capabilities the plugin declares.
    fn add_network(&self, conf: &Value) {
        let name = conf["name"].as_str().expect("network name");
        let mut entry = conf.clone();
        let fields = entry.as_object_mut().expect("network configuration object");
        fields.remove("name");
        fields.remove("cniVersion");
        fields.insert("capabilities".into(), json!({"ips": true, "mac": true}));
        let list = json!({"cniVersion": conf["cniVersion"], "name": name, "plugins": [entry]});
        let path = self.dir.path().join(format!("net.d/50-{name}.conflist"));
        std::fs::write(path, serde_json::to_vec_pretty(&list).expect("conflist"))
            .expect("write conflist");
    }

    /// Imports a busybox image built from the host's static busybox (no registry needed).
    fn import_busybox(&self) {
        let busybox =
            on_path("busybox").expect("busybox not on PATH (Debian package busybox-static)");
        let rootfs = self.dir.path().join("rootfs");
        for sub in [
            "bin", "etc", "dev", "proc", "sys", "tmp", "run", "var", "root", "sbin", "usr/bin",
            "usr/sbin",
        ] {
            std::fs::create_dir_all(rootfs.join(sub)).expect("create rootfs dirs");
        }
        std::fs::copy(&busybox, rootfs.join("bin/busybox")).expect("copy busybox");
        let list = testkit::run(&[busybox.to_str().expect("busybox path"), "--list"]);
        for applet in list
            .lines()
            .map(str::trim)
            .filter(|a| !a.is_empty() && *a != "busybox")
        {
            std::os::unix::fs::symlink("/bin/busybox", rootfs.join("bin").join(applet))
                .unwrap_or_else(|e| panic!("link applet {applet}: {e}"));
        }
        std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")
            .expect("passwd");
        std::fs::write(rootfs.join("etc/group"), "root:x:0:\n").expect("group");
        let tar = self.dir.path().join("rootfs.tar");
        let tar_text = tar.to_str().expect("tar path");
        testkit::run(&[
            "tar",
            "-C",
            rootfs.to_str().expect("rootfs path"),
            "-cf",
            tar_text,
            ".",
        ]);
        self.podman(&[
            "import",
            "--quiet",
            "--change",
            r#"CMD ["/bin/sh"]"#,
            tar_text,
            IMAGE,
        ]);
    }

    /// Starts a long-running container on `network` (NET_RAW for ping).
    fn run_container(&self, name: &str, network: &str) {
        let out = self.try_podman(&[
            "run",
            "--detach",
            "--name",
            name,
            "--network",
            network,
            "--cap-add",
            "NET_RAW",
            IMAGE,
            "sleep",
            "600",
        ]);
        assert!(
            out.status.success(),
            "podman run {name} failed (the plugin's error, if any, is in here; the image needs a \
             static busybox): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `podman inspect` of one container.
    fn inspect(&self, name: &str) -> Value {
        let text = self.podman(&["inspect", name]);
        let all: Value = serde_json::from_str(&text).expect("podman inspect prints JSON");
        all[0].clone()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // Runs the plugin's DEL for anything still attached; every container here is ours.
        let out = self.try_podman(&["rm", "--all", "--force", "--time", "0"]);
        if !out.status.success() {
            eprintln!(
                "cleanup: podman rm --all failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // The holder is the `sleep` this test started; with it and the containers gone, the
        // private mounts (storage, caches, netns files) go too.
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// Address, prefix length, gateway and MAC that `podman inspect` shows on `network` (the
/// plugin's ADD result).
fn attachment(inspect: &Value, network: &str) -> (Ipv4Addr, u64, String, String) {
    let net = &inspect["NetworkSettings"]["Networks"][network];
    let ip = net["IPAddress"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no IPv4 address on {network} in {net}"));
    let prefix = net["IPPrefixLen"].as_u64().expect("IPPrefixLen");
    let gateway = net["Gateway"].as_str().expect("Gateway").to_string();
    let mac = net["MacAddress"].as_str().expect("MacAddress").to_string();
    (ip, prefix, gateway, mac)
}

/// `(name, alias)` of every link in `ip -o -d link show` output that has an alias.
fn aliased_links(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let name = l.split(": ").nth(1)?.split('@').next()?.to_string();
            let alias = l
                .split(" alias ")
                .nth(1)?
                .split_whitespace()
                .next()?
                .to_string();
            Some((name, alias))
        })
        .collect()
}

#[test]
fn podman_containers_ping_across_the_ciao_bridge_and_leave_the_node_clean() {
    require_root!();
    if on_path("podman").is_none() {
        testkit::skip(
            "podman_containers_ping_across_the_ciao_bridge_and_leave_the_node_clean",
            "podman not installed",
        );
        return;
    }
    for tool in ["crun", "nsenter", "unshare", "tar"] {
        assert!(
            on_path(tool).is_some(),
            "{tool} not on PATH: the podman test needs it (scripts/install-deps.sh)"
        );
    }
    let started = Instant::now();
    let node = ComputeNode::new();
    // Declared after the node so that it is dropped first: containers go while the node exists.
    let podman = Podman::new(&node);
    let network = unique("ciaopm");
    podman.add_network(&node.conf("1.0.0", &network, TENANT_A, SUBNET));
    podman.import_busybox();
    let prepared = started.elapsed();

    let (c1, c2) = (unique("pc1"), unique("pc2"));
    podman.run_container(&c1, &network);
    podman.run_container(&c2, &network);
    let (i1, i2) = (podman.inspect(&c1), podman.inspect(&c2));
    let (ip1, prefix1, gw1, mac1) = attachment(&i1, &network);
    let (ip2, prefix2, gw2, mac2) = attachment(&i2, &network);
    let in_subnet = |ip: Ipv4Addr| ip.octets()[..3] == [172, 16, 1];
    assert!(
        in_subnet(ip1) && in_subnet(ip2),
        "{ip1}, {ip2} not in {SUBNET}"
    );
    assert_ne!(ip1, ip2, "both containers got the same address");
    assert_eq!((prefix1, prefix2), (24, 24));
    assert_eq!(gw1, gw2, "one gateway per subnet");
    assert_ne!(mac1, mac2);

    // The addresses podman reports are the ones on the containers' eth0.
    for (name, ip) in [(&c1, ip1), (&c2, ip2)] {
        let addrs = podman.podman(&[
            "exec", name, "ip", "-4", "-o", "addr", "show", "dev", "eth0",
        ]);
        assert!(
            addrs.contains(&format!("inet {ip}/24")),
            "{name} eth0 lacks {ip}/24: {addrs}"
        );
    }

    // Both host ends are ports of our bridge, in the node's namespace and nowhere else.
    let id1 = i1["Id"].as_str().expect("container id").to_string();
    let id2 = i2["Id"].as_str().expect("container id").to_string();
    let node_links = aliased_links(&node.ns.exec(&["ip", "-o", "-d", "link", "show"]));
    let bridge = node_links
        .iter()
        .find(|(_, alias)| alias.starts_with("ciao:") && alias.contains(":bridge:"))
        .map(|(name, _)| name.clone())
        .unwrap_or_else(|| panic!("no ciao bridge in the node: {node_links:?}"));
    assert!(
        node_links
            .iter()
            .any(|(_, alias)| alias.starts_with("ciao:") && alias.contains(":tunnel:")),
        "no ciao tunnel in the node: {node_links:?}"
    );
    let ports = node
        .ns
        .exec(&["ip", "-o", "link", "show", "master", &bridge]);
    for id in [&id1, &id2] {
        let (vnic, _) = node_links
            .iter()
            .find(|(_, alias)| {
                alias.starts_with("ciao:")
                    && alias.contains(":vnic:")
                    && alias.contains(id.as_str())
            })
            .unwrap_or_else(|| panic!("no vnic for container {id} in the node: {node_links:?}"));
        assert!(
            ports.contains(&format!(": {vnic}@")),
            "{vnic} is not a port of {bridge}: {ports}"
        );
    }
    let host_links = testkit::run(&["ip", "-o", "-d", "link", "show"]);
    assert!(
        !host_links.contains(&id1) && !host_links.contains(&id2),
        "a link for the containers appeared on the host: {host_links}"
    );
    let sandbox = i1["NetworkSettings"]["SandboxKey"]
        .as_str()
        .expect("SandboxKey");
    assert!(
        !Path::new(sandbox).exists(),
        "podman's netns file {sandbox} is visible on the host"
    );

    // Container to container, through the bridge; every echo answered.
    for (from, to) in [(&c1, ip2), (&c2, ip1)] {
        let to = to.to_string();
        let out =
            podman.try_podman(&["exec", from, "ping", "-c", "3", "-i", "0.2", "-W", "2", &to]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains(" 0% packet loss"),
            "{from} cannot ping {to}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let attached = started.elapsed();

    podman.podman(&["rm", "--force", "--time", "0", &c1, &c2]);
    assert_eq!(
        podman.podman(&["ps", "--all", "--quiet"]).trim(),
        "",
        "containers left"
    );
    node.assert_clean();
    let events = node.report_events();
    assert_eq!(
        events,
        ["tenant_added", "tenant_removed"],
        "pending reports"
    );

    drop(podman);
    eprintln!(
        "podman test: set-up {:.1}s, two containers attached and pinging at {:.1}s, all done in {:.1}s",
        prepared.as_secs_f64(),
        attached.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
