//! Docker fixtures: a private dockerd inside a simulated compute node's namespace, the
//! `ciao-docker-plugin` daemon next to it, a busybox image made without a registry, and raw
//! plugin-protocol requests over the unix socket.
//!
//! dockerd runs with `nsenter --net` (not `ip netns exec`, which would also give it a private
//! mount namespace) and private `--data-root`, `--exec-root`, API socket and pid file, so its
//! iptables rules (FORWARD policy DROP) stay inside the node's namespace and nothing else on the
//! machine sees it. The plugin socket must be in `/run/docker/plugins` (dockerd looks there
//! only), so each plugin gets a unique name.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{cargo_build, workspace_root, ComputeNode, Proc};

/// The plugin binary, built on first use (`CIAO_BIN_DIR` overrides).
/// The CNCI UUID the single-node Docker tests and benchmark name (no agent runs there).
pub const CNCI: &str = "3390740c-dce9-48d6-b83a-a717417072ce";

/// `docker network create -d <plugin> --ipam-driver <plugin> -o tenant=… -o cnci=<uuid>@<ip>
/// <extra…> <name>`: a tenant network on the ciao plugin, as a user creates one.
pub fn tenant_network_args(
    plugin: &str,
    tenant: &str,
    cnci: &str,
    cnci_ip: &str,
    extra: &[&str],
    name: &str,
) -> Vec<String> {
    let mut args = create_on(plugin);
    args.extend([
        "-o".into(),
        format!("tenant={tenant}"),
        "-o".into(),
        format!("cnci={cnci}@{cnci_ip}"),
    ]);
    args.extend(extra.iter().map(|a| a.to_string()));
    args.push(name.to_string());
    args
}

/// `docker network create` with the plugin as driver and IPAM driver.
fn create_on(plugin: &str) -> Vec<String> {
    ["network", "create", "-d", plugin, "--ipam-driver", plugin]
        .iter()
        .map(|a| a.to_string())
        .collect()
}

/// `docker network create -d <plugin> --ipam-driver <plugin> --ipam-opt tenant=… <name>`: a
/// tenant network in controller mode (the subnet and CNCI come from the controller).
pub fn controlled_network_args(plugin: &str, tenant: &str, name: &str) -> Vec<String> {
    let mut args = create_on(plugin);
    args.extend(["--ipam-opt".into(), format!("tenant={tenant}"), name.into()]);
    args
}

pub fn plugin_bin() -> PathBuf {
    if let Some(p) = crate::bin_dir_override("ciao-docker-plugin") {
        return p;
    }
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| cargo_build("ciao-docker-plugin", &[]));
    workspace_root().join("target/debug/ciao-docker-plugin")
}

/// The plugin built with the core's crash points (`CIAO_CRASH_AFTER_STEP=N` kills it after
/// step N of an attach).
pub fn crash_plugin_bin() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = workspace_root().join("target/crash-points");
            let dir_text = dir.display().to_string();
            cargo_build(
                "ciao-docker-plugin",
                &["--features", "crash-points", "--target-dir", &dir_text],
            );
            dir.join("debug/ciao-docker-plugin")
        })
        .clone()
}

/// Why Docker tests cannot run here, if they cannot.
pub fn unavailable() -> Option<String> {
    if !crate::is_root() {
        return Some("needs root (dockerd, network namespaces)".into());
    }
    for tool in ["dockerd", "docker", "nsenter"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Some(format!(
                "{tool} is not installed (apt-get install docker.io)"
            ));
        }
    }
    if !Path::new("/bin/busybox").is_file() {
        return Some("/bin/busybox is missing (apt-get install busybox-static)".into());
    }
    None
}

/// A root file system of busybox-static as a tar, made once per process.
fn rootfs_tar() -> PathBuf {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        let tar = workspace_root().join("target/docker-test/busybox-rootfs.tar");
        if tar.is_file() {
            return tar;
        }
        // Built aside and renamed into place, so concurrent test processes never see half a tar.
        let dir = workspace_root().join(format!("target/docker-test/build-{}", std::process::id()));
        let root = dir.join("root");
        for sub in [
            "bin", "etc", "dev", "proc", "sys", "tmp", "run", "var", "root", "sbin", "usr/bin",
            "usr/sbin",
        ] {
            std::fs::create_dir_all(root.join(sub)).expect("rootfs dir");
        }
        std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("copy busybox");
        let list = crate::run(&["/bin/busybox", "--list"]);
        for applet in list.lines().filter(|a| !a.is_empty() && *a != "busybox") {
            let _ = std::os::unix::fs::symlink("/bin/busybox", root.join("bin").join(applet));
        }
        std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("passwd");
        std::fs::write(root.join("etc/group"), "root:x:0:\n").expect("group");
        let built = dir.join("busybox-rootfs.tar");
        crate::run(&[
            "tar",
            "-C",
            root.to_str().expect("utf-8"),
            "-cf",
            built.to_str().expect("utf-8"),
            ".",
        ]);
        std::fs::rename(&built, &tar).expect("rename rootfs tar");
        let _ = std::fs::remove_dir_all(&dir);
        tar
    })
    .clone()
}

/// Debian's docker.io CLI, which matches its daemon; a newer CLI elsewhere in PATH refuses
/// options (e.g. `--mac-address`) on API 1.41.
fn docker_cli() -> &'static str {
    if Path::new("/usr/bin/docker").is_file() {
        "/usr/bin/docker"
    } else {
        "docker"
    }
}

/// The image name the fixtures import.
pub const IMAGE: &str = "test/busybox";

/// A private dockerd in a node's namespace; stopped (containers removed) on drop.
pub struct Dockerd {
    pub dir: tempfile::TempDir,
    pub sock: String,
    netns: PathBuf,
    proc: Option<Proc>,
}

impl Dockerd {
    /// Starts dockerd in `node`'s namespace and imports the test image.
    pub fn start(node: &ComputeNode) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("ciao-dockerd-")
            .tempdir()
            .expect("tempdir");
        let sock = dir.path().join("docker.sock").display().to_string();
        let mut d = Dockerd {
            sock,
            netns: node.ns.path(),
            proc: None,
            dir,
        };
        d.launch();
        d.docker(&[
            "import",
            "-c",
            "CMD [\"/bin/sh\"]",
            rootfs_tar().to_str().expect("utf-8"),
            IMAGE,
        ]);
        d
    }

    fn launch(&mut self) {
        let p = |name: &str| self.dir.path().join(name).display().to_string();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p("dockerd.log"))
            .expect("log");
        let child = Command::new("nsenter")
            .arg(format!("--net={}", self.netns.display()))
            .args([
                "dockerd",
                "--data-root",
                &p("data"),
                "--exec-root",
                &p("exec"),
                "-H",
                &format!("unix://{}", self.sock),
                "--pidfile",
                &p("dockerd.pid"),
            ])
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn dockerd");
        self.proc = Some(Proc(child));
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.try_docker(&["version"]).0 {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("dockerd did not come up: {}", self.log());
    }

    /// dockerd's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }

    /// Stops dockerd with SIGTERM (containers stop as on a host shutdown) and starts it again.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    fn stop(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            let pid = nix::unistd::Pid::from_raw(proc.0.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = proc.0.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            // Proc's drop SIGKILLs it.
        }
    }

    /// Runs `docker` against this daemon; (success, stdout, stderr).
    pub fn try_docker(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(docker_cli())
            .arg("-H")
            .arg(format!("unix://{}", self.sock))
            .args(args)
            .output()
            .expect("spawn docker");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        )
    }

    /// Runs `docker`, panicking with its output (and the daemon's log tail) on failure.
    pub fn docker(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.try_docker(args);
        if !ok {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            panic!(
                "docker {args:?} failed: {out}{err}\ndockerd log (newest first):\n{}",
                tail.join("\n")
            );
        }
        out
    }

    /// The address of `container` on `network`.
    pub fn ip_of(&self, container: &str, network: &str) -> String {
        self.docker(&[
            "inspect",
            "-f",
            &format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}"),
            container,
        ])
    }

    /// True if `container` gets every reply of two pings to `ip`.
    pub fn ping(&self, container: &str, ip: &str) -> bool {
        self.try_docker(&["exec", container, "ping", "-c", "2", "-W", "1", ip])
            .0
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if self.proc.is_some() {
            let (_, ids, _) = self.try_docker(&["ps", "-aq"]);
            for id in ids.split_whitespace() {
                let _ = self.try_docker(&["rm", "-f", id]);
            }
        }
        self.stop();
    }
}

/// A running `ciao-docker-plugin` for `node`, serving `/run/docker/plugins/<name>.sock`.
pub struct PluginDaemon {
    pub name: String,
    pub socket: PathBuf,
    pub log: PathBuf,
    netns: PathBuf,
    state: PathBuf,
    bin: PathBuf,
    /// Environment of the next launch (e.g. a crash point).
    pub env: Vec<(String, String)>,
    proc: Option<Proc>,
}

impl PluginDaemon {
    /// Starts the plugin in `node`'s namespace on a uniquely named socket.
    pub fn start(node: &ComputeNode) -> Self {
        Self::start_with(node, plugin_bin(), &[])
    }

    /// Starts `bin` as the plugin with extra environment variables.
    pub fn start_with(node: &ComputeNode, bin: PathBuf, env: &[(&str, &str)]) -> Self {
        let name = crate::unique("ciaot").replace('-', "x");
        let log = node.state.path().with_extension(format!("{name}.log"));
        let mut p = PluginDaemon {
            socket: PathBuf::from(format!("/run/docker/plugins/{name}.sock")),
            name,
            log,
            netns: node.ns.path(),
            state: node.state.path().to_path_buf(),
            bin,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            proc: None,
        };
        p.launch();
        p
    }

    fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("plugin log");
        let child = Command::new("nsenter")
            .arg(format!("--net={}", self.netns.display()))
            .arg(&self.bin)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .arg("--socket")
            .arg(&self.socket)
            .arg("--state-dir")
            .arg(&self.state)
            .arg("--verbose")
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn plugin");
        self.proc = Some(Proc(child));
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("plugin did not listen: {}", self.log_text());
    }

    /// The daemon's PID (of `nsenter`, which execs the plugin: the same process).
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(|p| p.0.id())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// kill -9 (by PID), then start again on the same socket and state.
    pub fn kill9_and_restart(&mut self) {
        drop(self.proc.take());
        self.launch();
    }

    /// One raw protocol call: (HTTP status, parsed JSON body or `Null`).
    pub fn call(&self, path: &str, body: &str) -> (u16, Value) {
        raw_call(&self.socket, path, body)
    }

    /// True once the daemon process has exited (e.g. at a crash point); waits up to 5 s.
    pub fn exited(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let done = self
                .proc
                .as_mut()
                .is_none_or(|p| matches!(p.0.try_wait(), Ok(Some(_))));
            if done || Instant::now() > deadline {
                return done;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for PluginDaemon {
    fn drop(&mut self) {
        drop(self.proc.take());
        let _ = std::fs::remove_file(&self.socket);
        let _ = std::fs::remove_file(&self.log);
    }
}

/// POSTs `body` to `path` over a unix socket exactly as dockerd does (no Content-Type).
pub fn raw_call(socket: &Path, path: &str, body: &str) -> (u16, Value) {
    let mut s = UnixStream::connect(socket).expect("connect plugin");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: \r\nUser-Agent: Go-http-client/1.1\r\nAccept: application/vnd.docker.plugins.v1.2+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    // A killed plugin drops the connection: status 0, `Null`.
    if s.write_all(req.as_bytes()).is_err() {
        return (0, Value::Null);
    }
    let mut resp = String::new();
    if s.read_to_string(&mut resp).is_err() {
        return (0, Value::Null);
    }
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let json = resp
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    (status, json)
}

/// Every file under `dir` with its contents, for "nothing changed" assertions.
pub fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else if let Ok(rel) = p.strip_prefix(root) {
                let rel = rel.display().to_string();
                if rel != "lock" {
                    out.push((rel, std::fs::read(&p).unwrap_or_default()));
                }
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}
