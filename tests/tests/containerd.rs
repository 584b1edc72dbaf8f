//! The real containerd (Debian's 1.6, installed with docker.io) and `ctr run --cni` on a
//! `type: ciao` conflist: a container gets its address from ciao and pings a peer container
//! across the tenant subnet's bridge; containerd's CNI library refuses a 1.1.0 result (so the
//! README's conflists for containerd say 1.0.0); and `ctr run -d` then `ctr task delete`, which
//! never calls DEL, leaves a VNIC that `ciao-node show` marks missing and `reconcile` detaches.
//!
//! Everything containerd touches stays inside what the test made:
//! * a private mount namespace, held by a `sleep` the test starts, with a tmpfs over /run (the
//!   shims' sockets under /run/containerd), an overlay over /var/lib (libcni's result cache),
//!   an overlay over /opt whose only addition is `cni/bin/ciao` (ctr looks for plugins in
//!   /opt/cni/bin and configurations in /etc/cni/net.d, and has no flag for either), a bind
//!   mount of a test directory over /etc/cni/net.d, and a tmpfs for containerd's root, state and
//!   socket. When the holder and the last process in it are gone, the kernel drops all of it.
//! * containerd and ctr run with `nsenter --mount=<holder> --net=<node namespace>`, not
//!   `ip netns exec`, which remounts /sys and hides the cgroup mounts from runc; the plugin so
//!   builds its bridge in the simulated compute node.
//! * a containerd namespace unique to the test; runc's cgroups (`/<namespace>/<id>` under
//!   each controller) are removed with their tasks, and the empty parents at the end.
//! * the image is an OCI archive built here from the host's static busybox (no registry).

use std::io::{BufRead, BufReader, Read};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::{json, node_tool, plugin, require_root, unique, ComputeNode, TENANT_A};

const SUBNET: &str = "172.16.1.0/24";
const IMAGE: &str = "localhost/ciao-test/busybox:latest";
const TEST: &str = "containerd::ctr_run_cni_attaches_through_ciao_and_a_deleted_task_shows_missing";

/// The first executable called `name` on PATH (with the sbin directories runc lives in).
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Why this test cannot run here, if it cannot.
fn missing_tools() -> Option<String> {
    let tools = [
        "containerd",
        "containerd-shim-runc-v2",
        "ctr",
        "runc",
        "busybox",
        "sha256sum",
        "tar",
        "unshare",
        "nsenter",
    ];
    let missing: Vec<&str> = tools.into_iter().filter(|t| on_path(t).is_none()).collect();
    (!missing.is_empty()).then(|| {
        format!(
            "{} not installed (scripts/install-deps.sh installs them)",
            missing.join(", ")
        )
    })
}

/// Runs `what` until it returns `Some`, or panics with `failure()` after `limit`.
fn wait_for<T>(
    limit: Duration,
    mut what: impl FnMut() -> Option<T>,
    failure: impl Fn() -> String,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = what() {
            return v;
        }
        assert!(Instant::now() < deadline, "{}", failure());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn text(out: &Output) -> String {
    format!(
        "status {}; stdout: {}; stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A private containerd in a private mount namespace, in a node's network namespace. Dropping
/// it deletes every task and container of its namespace (their shims exit), stops containerd
/// by PID, ends the namespace holder and removes the empty cgroup parents.
struct Containerd {
    /// Host-visible: the conflist directory (bound over /etc/cni/net.d), logs, the image.
    dir: tempfile::TempDir,
    holder: Child,
    daemon: Option<Child>,
    node_netns: PathBuf,
    /// The containerd namespace of this test's containers.
    namespace: String,
}

impl Containerd {
    fn start(node: &ComputeNode) -> Self {
        let dir = tempfile::tempdir().expect("containerd test dir");
        std::fs::create_dir(dir.path().join("net.d")).expect("net.d");
        let script = r#"set -e
store="$1"; plugin="$2"; netd="$3"
mount -n -t tmpfs ciao-ctr-test "$store"
mkdir -p "$store/opt-upper/cni/bin" "$store/opt-work" "$store/varlib-upper" "$store/varlib-work" "$store/containerd"
ln -s "$plugin" "$store/opt-upper/cni/bin/ciao"
mount -n -t tmpfs ciao-ctr-test /run
mount -n -t overlay ciao-ctr-test -o "lowerdir=/var/lib,upperdir=$store/varlib-upper,workdir=$store/varlib-work" /var/lib
mount -n -t overlay ciao-ctr-test -o "lowerdir=/opt,upperdir=$store/opt-upper,workdir=$store/opt-work" /opt
mount -n --bind "$netd" /etc/cni/net.d
echo ready
exec sleep 1800
"#;
        let store = dir.path().join("store");
        std::fs::create_dir(&store).expect("store dir");
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
            .arg(plugin())
            .arg(dir.path().join("net.d"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the mount namespace holder (unshare, util-linux)");
        let stdout = holder.stdout.take().expect("holder stdout");
        let mut stderr = holder.stderr.take().expect("holder stderr");
        let mut ctrd = Containerd {
            dir,
            holder,
            daemon: None,
            node_netns: node.ns.path(),
            namespace: unique("ciaoctr"),
        };
        // read_line returns once the newline arrived (or at EOF, if the script failed).
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the holder's output");
        if line.trim() != "ready" {
            let mut why = String::new();
            let _ = stderr.read_to_string(&mut why);
            panic!("setting up containerd's private mount namespace failed: {why}");
        }
        let root = store.join("containerd");
        let config = format!(
            "version = 2\nroot = \"{root}/root\"\nstate = \"{root}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{root}/containerd.sock\"\n",
            root = root.display()
        );
        std::fs::write(ctrd.dir.path().join("config.toml"), config).expect("config.toml");
        let log = std::fs::File::create(ctrd.log_path()).expect("containerd log");
        let daemon = Command::new("nsenter")
            .arg(format!("--mount=/proc/{}/ns/mnt", ctrd.holder.id()))
            .arg(format!("--net={}", ctrd.node_netns.display()))
            .arg("--")
            .arg("containerd")
            .arg("--config")
            .arg(ctrd.dir.path().join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("spawn containerd");
        ctrd.daemon = Some(daemon);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ctrd.try_ctr(&["version"]).status.success() {
            assert!(
                ctrd.daemon_alive(),
                "containerd exited: {}",
                ctrd.log_tail()
            );
            assert!(
                Instant::now() < deadline,
                "containerd did not answer within 30 s: {}",
                ctrd.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        ctrd
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("containerd.log")
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn daemon_alive(&mut self) -> bool {
        self.daemon
            .as_mut()
            .is_some_and(|d| matches!(d.try_wait(), Ok(None)))
    }

    fn socket(&self) -> String {
        // The same path inside the holder's namespace: its tmpfs is mounted over `store`.
        format!(
            "{}/store/containerd/containerd.sock",
            self.dir.path().display()
        )
    }

    /// Runs `ctr <args>` in the holder's mount namespace and the node's network namespace.
    fn try_ctr(&self, args: &[&str]) -> Output {
        Command::new("nsenter")
            .arg(format!("--mount=/proc/{}/ns/mnt", self.holder.id()))
            .arg(format!("--net={}", self.node_netns.display()))
            .arg("--")
            .arg("ctr")
            .arg("--address")
            .arg(self.socket())
            .arg("--namespace")
            .arg(&self.namespace)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("spawn nsenter ctr {args:?}: {e}"))
    }

    fn ctr(&self, args: &[&str]) -> String {
        let out = self.try_ctr(args);
        assert!(
            out.status.success(),
            "ctr {args:?}: {}; containerd log:\n{}",
            text(&out),
            self.log_tail()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Writes the one conflist ctr uses: the node's ciao configuration at `version`.
    fn set_network(&self, node: &ComputeNode, version: &str) {
        let mut entry = node.conf(version, "ciao-ctr", TENANT_A, SUBNET);
        let fields = entry.as_object_mut().expect("configuration object");
        fields.remove("name");
        fields.remove("cniVersion");
        let list = json!({"cniVersion": version, "name": "ciao-ctr", "plugins": [entry]});
        std::fs::write(
            self.dir.path().join("net.d/10-ciao.conflist"),
            serde_json::to_vec_pretty(&list).expect("conflist"),
        )
        .expect("write conflist");
    }

    /// Builds an OCI image archive of the host's static busybox and imports it.
    fn import_busybox(&self) {
        let base = self.dir.path().join("image");
        let rootfs = base.join("rootfs");
        for sub in ["bin", "etc", "dev", "proc", "sys", "tmp", "run", "root"] {
            std::fs::create_dir_all(rootfs.join(sub)).expect("rootfs dirs");
        }
        let busybox = on_path("busybox").expect("busybox");
        std::fs::copy(&busybox, rootfs.join("bin/busybox")).expect("copy busybox");
        for applet in ["sh", "ip", "ping", "sleep", "true"] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet))
                .expect("link applet");
        }
        std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")
            .expect("passwd");
        let layout = base.join("oci");
        let blobs = layout.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).expect("blobs dir");
        let layer = base.join("layer.tar");
        testkit::run(&[
            "tar",
            "--numeric-owner",
            "-C",
            rootfs.to_str().expect("utf-8"),
            "-cf",
            layer.to_str().expect("utf-8"),
            ".",
        ]);
        let blob = |bytes: &[u8]| -> (String, usize) {
            let tmp = base.join("blob");
            std::fs::write(&tmp, bytes).expect("write blob");
            let digest = sha256(&tmp);
            std::fs::rename(&tmp, blobs.join(&digest)).expect("store blob");
            (digest, bytes.len())
        };
        let (layer_digest, layer_size) = blob(&std::fs::read(&layer).expect("read layer"));
        let config = json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{layer_digest}")]},
        });
        let (config_digest, config_size) = blob(config.to_string().as_bytes());
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": format!("sha256:{config_digest}"), "size": config_size},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": format!("sha256:{layer_digest}"), "size": layer_size}],
        });
        let (manifest_digest, manifest_size) = blob(manifest.to_string().as_bytes());
        let index = json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": format!("sha256:{manifest_digest}"), "size": manifest_size,
                "annotations": {"io.containerd.image.name": IMAGE},
                "platform": {"architecture": "amd64", "os": "linux"},
            }],
        });
        std::fs::write(layout.join("index.json"), index.to_string()).expect("index.json");
        std::fs::write(
            layout.join("oci-layout"),
            r#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .expect("oci-layout");
        let archive = base.join("busybox.oci.tar");
        testkit::run(&[
            "tar",
            "-C",
            layout.to_str().expect("utf-8"),
            "-cf",
            archive.to_str().expect("utf-8"),
            ".",
        ]);
        self.ctr(&[
            "images",
            "import",
            "--snapshotter",
            "native",
            archive.to_str().expect("utf-8"),
        ]);
    }

    /// `ctr run --cni` of the busybox image as container `id`, with `extra` options first.
    fn run(&self, extra: &[&str], id: &str, command: &[&str]) -> Output {
        let mut args = vec!["run", "--cni", "--snapshotter", "native"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[IMAGE, id]);
        args.extend_from_slice(command);
        self.try_ctr(&args)
    }

    /// Waits until task `id` is STOPPED, then deletes it (as a user would: no DEL).
    fn kill_and_delete_task(&self, id: &str) {
        self.ctr(&["task", "kill", "--signal", "SIGKILL", id]);
        wait_for(
            Duration::from_secs(20),
            || {
                let tasks = self.ctr(&["task", "ls"]);
                tasks
                    .lines()
                    .any(|l| l.split_whitespace().next() == Some(id) && l.contains("STOPPED"))
                    .then_some(())
            },
            || format!("task {id} not stopped: {}", self.ctr(&["task", "ls"])),
        );
        self.ctr(&["task", "delete", id]);
    }

    /// The CNI_CONTAINERID ctr gives container `id`.
    fn cni_id(&self, id: &str) -> String {
        format!("{}-{id}", self.namespace)
    }
}

fn sha256(path: &Path) -> String {
    let out = testkit::run(&["sha256sum", path.to_str().expect("utf-8")]);
    out.split_whitespace()
        .next()
        .expect("sha256sum output")
        .to_string()
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if self.daemon_alive() {
            // Every task and container of the test's namespace; their shims exit with them.
            let tasks = self.try_ctr(&["task", "ls", "--quiet"]);
            for id in String::from_utf8_lossy(&tasks.stdout).split_whitespace() {
                let out = self.try_ctr(&["task", "delete", "--force", id]);
                if !out.status.success() {
                    eprintln!("cleanup: ctr task delete {id}: {}", text(&out));
                }
            }
            let containers = self.try_ctr(&["containers", "ls", "--quiet"]);
            for id in String::from_utf8_lossy(&containers.stdout).split_whitespace() {
                let _ = self.try_ctr(&["containers", "delete", id]);
            }
        }
        if let Some(mut daemon) = self.daemon.take() {
            if let Ok(pid) = i32::try_from(daemon.id()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(daemon.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = daemon.kill();
            let _ = daemon.wait();
        }
        let _ = self.holder.kill();
        let _ = self.holder.wait();
        // runc's per-namespace cgroup parents, empty once their tasks are gone.
        if let Ok(controllers) = std::fs::read_dir("/sys/fs/cgroup") {
            for c in controllers.flatten() {
                let _ = std::fs::remove_dir(c.path().join(&self.namespace));
            }
        }
    }
}

/// The VNICs `ciao-node show --json` lists, as (CNI container id, address, port state).
fn shown_vnics(node: &ComputeNode) -> Vec<(String, Ipv4Addr, String)> {
    let shown: Value = serde_json::from_str(&node.tool(&["show", "--json"])).expect("show --json");
    shown["nets"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|n| n["vnics"].as_array().cloned().unwrap_or_default())
        .map(|v| {
            (
                v["id"]["owner"].as_str().unwrap_or_default().to_string(),
                v["ip"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(Ipv4Addr::UNSPECIFIED),
                v["port"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn ctr_run_cni_attaches_through_ciao_and_a_deleted_task_shows_missing() {
    require_root!();
    if let Some(why) = missing_tools() {
        testkit::skip(TEST, &why);
        return;
    }
    // Built before containerd starts, so nothing builds while it runs.
    let (_plugin, _tool) = (plugin(), node_tool());
    let node = ComputeNode::new();
    let ctrd = Containerd::start(&node);
    ctrd.import_busybox();

    // containerd 1.6's CNI library stops at result version 1.0.0.
    ctrd.set_network(&node, "1.1.0");
    let refused = ctrd.run(&["--rm"], "v110", &["true"]);
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains("unsupported CNI result version \"1.1.0\""),
        "{}",
        text(&refused)
    );
    ctrd.ctr(&["task", "delete", "--force", "v110"]);
    ctrd.ctr(&["containers", "delete", "v110"]);
    assert!(
        shown_vnics(&node).is_empty(),
        "ctr removed its failed attachment"
    );

    ctrd.set_network(&node, "1.0.0");
    let peer = ctrd.run(&["--detach"], "peer", &["sleep", "600"]);
    assert!(peer.status.success(), "{}", text(&peer));
    let peer_ip = shown_vnics(&node)
        .into_iter()
        .find(|(owner, _, _)| *owner == ctrd.cni_id("peer"))
        .map(|(_, ip, _)| ip)
        .expect("the peer's VNIC is recorded");
    let in_subnet = |ip: &Ipv4Addr| ip.octets()[..3] == [172, 16, 1];
    assert!(in_subnet(&peer_ip), "{peer_ip} is not in {SUBNET}");

    // Attached (--rm: ctr calls DEL when the task exits): an address from ciao, and the peer
    // answers across the subnet bridge.
    let pinger = ctrd.run(
        &["--rm"],
        "pinger",
        &[
            "sh",
            "-c",
            &format!("ip -4 -o addr show dev eth0 && ping -c 3 -W 2 {peer_ip}"),
        ],
    );
    assert!(pinger.status.success(), "{}", text(&pinger));
    let out = String::from_utf8_lossy(&pinger.stdout);
    let addr = out
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .and_then(|a| a.parse::<Ipv4Addr>().ok())
        .unwrap_or_else(|| panic!("no address on eth0: {out}"));
    assert!(in_subnet(&addr) && addr != peer_ip, "{addr}: {out}");
    assert!(out.contains("3 packets received"), "{out}");
    let owners: Vec<String> = shown_vnics(&node).into_iter().map(|v| v.0).collect();
    assert_eq!(
        owners,
        [ctrd.cni_id("peer")],
        "DEL ran for the --rm container"
    );

    // `ctr run -d` then `ctr task delete`: no DEL; the port went with the container's
    // namespace, and show says so without changing anything.
    let detached = ctrd.run(&["--detach"], "gone", &["sleep", "600"]);
    assert!(detached.status.success(), "{}", text(&detached));
    let gone = ctrd.cni_id("gone");
    let port_of = |node: &ComputeNode, owner: &str| {
        shown_vnics(node)
            .into_iter()
            .find(|v| v.0 == owner)
            .map(|v| v.2)
    };
    assert_eq!(port_of(&node, &gone).as_deref(), Some("present"));
    ctrd.kill_and_delete_task("gone");
    ctrd.ctr(&["containers", "delete", "gone"]);
    let before = node.state_entries();
    assert_eq!(port_of(&node, &gone).as_deref(), Some("missing"));
    let text_view = node.tool(&["show"]);
    assert!(
        text_view.contains(" (missing)") && text_view.contains(&gone),
        "{text_view}"
    );
    assert_eq!(node.state_entries(), before, "show changed the state");
    assert_eq!(
        port_of(&node, &ctrd.cni_id("peer")).as_deref(),
        Some("present")
    );

    // reconcile detaches what was left; the peer, deleted the same way, goes at the next one.
    let summary = node.tool(&["reconcile"]);
    assert!(summary.contains(&gone), "{summary}");
    assert_eq!(port_of(&node, &gone), None);
    ctrd.kill_and_delete_task("peer");
    ctrd.ctr(&["containers", "delete", "peer"]);
    node.tool(&["reconcile"]);
    drop(ctrd);
    node.assert_clean();
}
