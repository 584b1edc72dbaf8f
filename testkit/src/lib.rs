//! Every shared fixture of the tests, the benchmarks and the `ciao-cluster` demo, in one place:
//! uniquely named network namespaces that clean up after themselves, child processes killed by
//! PID, simulated compute nodes, running the built CNI plugin exactly as a runtime does (env +
//! stdin), finding or building the project's binaries ([`bins`]), certificates, the whole
//! cluster ([`cluster`], [`matrix`]), the Docker and QEMU harnesses, `/proc` meters ([`host`])
//! and latency statistics ([`stats`]).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;

pub use serde_json::json;

pub(crate) use bins::cargo_build;
pub use bins::workspace_root;
pub use bins::{
    bin_dir_override, cluster_demo, cnci_agent_tool, crash_plugin, node_tool, plugin,
    scheduler_tool, try_cnci_agent_tool, vm_hook,
};

pub mod bins;
pub mod certs;
pub mod cluster;
pub mod docker;
pub mod frames;
pub mod host;
pub mod matrix;
pub mod qemu;
pub mod stats;
pub mod tcp;
pub mod wait;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique to this process and call: `<prefix>-<pid>-<n>`.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs a command, panicking with its output if it fails.
pub fn run(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("spawn {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command; fails with its stderr if it cannot start or fails (for programs, which
/// report errors instead of panicking).
pub fn sh(args: &[&str]) -> anyhow::Result<String> {
    use anyhow::Context;
    let (prog, rest) = args
        .split_first()
        .ok_or_else(|| anyhow::anyhow!("empty command"))?;
    let out = Command::new(prog)
        .args(rest)
        .output()
        .with_context(|| format!("run {args:?}"))?;
    anyhow::ensure!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command and returns its raw output, whatever the exit status.
pub fn try_run(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("spawn {args:?}: {e}"))
}

/// The path of the calling function (`file::test_name`): what a skip line names, so that each
/// skipped test is listed and counted once (`module_path!()` names only the file).
#[macro_export]
macro_rules! test_name {
    () => {{
        fn here() {}
        fn name_of<T>(_: T) -> &'static str {
            std::any::type_name::<T>()
        }
        let name = name_of(here);
        // Inside an async test (or a closure) the path ends in `::{{closure}}`.
        name.strip_suffix("::here")
            .unwrap_or(name)
            .trim_end_matches("::{{closure}}")
    }};
}

/// Skips the calling test (printing why, by name) unless running as root.
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::is_root() {
            $crate::skip($crate::test_name!(), "needs root (network namespaces)");
            return;
        }
    };
}

/// Records that `test` could not run here: says so on stderr and appends it to the skip log
/// (`CIAO_SKIP_LOG`, default `target/test-skips.log`) that the test script prints at the end.
pub fn skip(test: &str, why: &str) {
    let line = format!("skipped: {test}: {why}");
    eprintln!("{line}");
    let path = std::env::var_os("CIAO_SKIP_LOG")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/test-skips.log"));
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(f, "{line}");
    }
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A named network namespace (`ip netns add`), deleted on drop even if the test panics.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(prefix: &str) -> Self {
        let name = unique(prefix);
        run(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// The same for programs: an error instead of a panic, and loopback left down.
    pub fn try_new(prefix: &str) -> anyhow::Result<Self> {
        let name = unique(prefix);
        sh(&["ip", "netns", "add", &name])?;
        Ok(Netns { name })
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.name))
    }

    /// Runs `ip -n <this namespace> <args>`; fails with its stderr.
    pub fn ip(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut full = vec!["ip", "-n", &self.name];
        full.extend_from_slice(args);
        sh(&full)
    }

    /// Runs a command inside this namespace, panicking on failure.
    pub fn exec(&self, args: &[&str]) -> String {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        run(&full)
    }

    /// Runs a command inside this namespace and returns its output.
    pub fn try_exec(&self, args: &[&str]) -> Output {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        try_run(&full)
    }

    /// True if `ping -c count` to `ip` gets every reply.
    pub fn ping(&self, ip: &str, count: u32) -> bool {
        let c = count.to_string();
        self.try_exec(&["ping", "-c", &c, "-i", "0.2", "-W", "1", "-q", ip])
            .status
            .success()
    }

    /// `nft list table FAMILY NAME` here as its sets, maps and chains, each as written, in name
    /// order (nft lists them in creation order, which a rebuild of the same table changes).
    pub fn nft_table_blocks(&self, family: &str, name: &str) -> Vec<String> {
        let listing = self.exec(&["nft", "list", "table", family, name]);
        let head = format!("table {family} {name} {{");
        let body = listing
            .trim()
            .strip_prefix(head.as_str())
            .and_then(|b| b.strip_suffix('}'))
            .unwrap_or(&listing);
        let mut blocks: Vec<String> = body.split("\n\n").map(|b| b.trim().to_string()).collect();
        blocks.sort();
        blocks
    }

    /// The handle of table `FAMILY NAME` here (a rebuilt table has a new one); `None` without it.
    pub fn nft_table_handle(&self, family: &str, name: &str) -> Option<u64> {
        let out = self.try_exec(&["nft", "-j", "list", "table", family, name]);
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        v["nftables"]
            .as_array()?
            .iter()
            .find_map(|o| o["table"]["handle"].as_u64())
    }

    /// Names of the links in this namespace.
    pub fn links(&self) -> Vec<String> {
        self.exec(&["ip", "-o", "link", "show"])
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_string())
            .collect()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        delete_netns(&self.name);
    }
}

/// Deletes the named network namespace (`ip netns delete`), quietly: it may be gone already.
pub fn delete_netns(name: &str) {
    let _ = Command::new("ip")
        .args(["netns", "delete", name])
        .stderr(Stdio::null())
        .status();
}

/// A simulated compute node: a namespace with an underlay link and its own state directory.
pub struct ComputeNode {
    pub ns: Netns,
    pub state: tempfile::TempDir,
    /// This node's underlay address.
    pub ip: String,
    /// An address on the underlay that stands for the CNCI.
    pub cnci_ip: String,
}

impl ComputeNode {
    /// A node whose underlay is a veth pair inside its own namespace (a stand-in wire), so
    /// tunnel traffic never leaves namespaces the test made.
    pub fn new() -> Self {
        Self::with_underlay_mtu(1500)
    }

    /// A node plugged into an existing underlay: a veth pair whose node end is `ul0` with
    /// `ip`/24 (MTU 1500) and whose other end, named `port`, is enslaved to `bridge` in `underlay`.
    /// `cnci_ip` is the CNCI's underlay address.
    pub fn on_bridge(underlay: &Netns, bridge: &str, port: &str, ip: &str, cnci_ip: &str) -> Self {
        let ns = Netns::new("cn");
        ns.exec(&[
            "ip",
            "link",
            "add",
            "ul0",
            "mtu",
            "1500",
            "type",
            "veth",
            "peer",
            "name",
            port,
            "mtu",
            "1500",
            "netns",
            &underlay.name,
        ]);
        ns.exec(&["ip", "addr", "add", &format!("{ip}/24"), "dev", "ul0"]);
        ns.exec(&["ip", "link", "set", "ul0", "up"]);
        underlay.exec(&["ip", "link", "set", port, "master", bridge, "up"]);
        let state = tempfile::tempdir().expect("state dir");
        ComputeNode {
            ns,
            state,
            ip: ip.into(),
            cnci_ip: cnci_ip.into(),
        }
    }

    pub fn with_underlay_mtu(mtu: u32) -> Self {
        let ns = Netns::new("cn");
        let mtu = mtu.to_string();
        ns.exec(&[
            "ip", "link", "add", "ul0", "mtu", &mtu, "type", "veth", "peer", "name", "ul1", "mtu",
            &mtu,
        ]);
        ns.exec(&["ip", "addr", "add", "10.250.0.2/24", "dev", "ul0"]);
        ns.exec(&["ip", "link", "set", "ul0", "up"]);
        ns.exec(&["ip", "link", "set", "ul1", "up"]);
        let state = tempfile::tempdir().expect("state dir");
        ComputeNode {
            ns,
            state,
            ip: "10.250.0.2".into(),
            cnci_ip: "10.250.0.3".into(),
        }
    }

    /// `ciao-node show --json` of this node, run in its namespace.
    pub fn show_json(&self) -> serde_json::Value {
        let tool = node_tool().display().to_string();
        let state = self.state.path().display().to_string();
        let out = self
            .ns
            .exec(&[&tool, "--state-dir", &state, "show", "--json"]);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("ciao-node show --json: {e}: {out}"))
    }

    /// Links in the node's namespace that this system created (alias `ciao:`).
    pub fn ciao_links(&self) -> Vec<String> {
        self.ns
            .exec(&["ip", "-o", "-d", "link", "show"])
            .lines()
            .filter(|l| l.contains("alias ciao:"))
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_string())
            .collect()
    }

    /// Every file under the state directory except the lock and the node identity.
    pub fn state_entries(&self) -> Vec<String> {
        let mut out = Vec::new();
        walk(self.state.path(), self.state.path(), &mut out);
        out.retain(|p| p != "lock" && p != "node.json");
        out.sort();
        out
    }

    /// Asserts that no link, address reservation or record of ours is left (reports may be).
    pub fn assert_clean(&self) {
        let links = self.ciao_links();
        assert!(links.is_empty(), "links left in the node: {links:?}");
        let left: Vec<_> = self
            .state_entries()
            .into_iter()
            .filter(|e| !e.starts_with("reports/"))
            .collect();
        assert!(left.is_empty(), "state left behind: {left:?}");
    }

    /// The events of the pending reports, oldest first.
    pub fn report_events(&self) -> Vec<String> {
        self.reports()
            .iter()
            .map(|r| r["event"].as_str().unwrap_or("?").to_string())
            .collect()
    }

    /// Pending reports, oldest first.
    pub fn reports(&self) -> Vec<Value> {
        let dir = self.state.path().join("reports");
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        names.sort();
        names
            .iter()
            .filter_map(|p| std::fs::read(p).ok())
            .filter_map(|b| serde_json::from_slice(&b).ok())
            .collect()
    }

    /// A network configuration for `tenant`/`subnet` on this node.
    pub fn conf(&self, version: &str, name: &str, tenant: &str, subnet: &str) -> Value {
        json!({
            "cniVersion": version,
            "name": name,
            "type": "ciao",
            "tenant": tenant,
            "subnet": subnet,
            "cnci": {"uuid": "3390740c-dce9-48d6-b83a-a717417072ce", "ip": self.cnci_ip},
            "stateDir": self.state.path(),
        })
    }

    /// Runs `ciao-node <args>` against this node's state, in its namespace.
    pub fn tool(&self, args: &[&str]) -> String {
        let tool = node_tool();
        let state = self.state.path().display().to_string();
        let mut full = vec![tool.to_str().expect("utf-8 path"), "--state-dir", &state];
        full.extend_from_slice(args);
        self.ns.exec(&full)
    }

    /// Runs the plugin in this node's namespace.
    pub fn cni(&self, cmd: &str, container: &str, netns: &str, conf: &Value) -> CniOutput {
        cni_call(
            &plugin(),
            Some(&self.ns.name),
            cmd,
            container,
            netns,
            "eth0",
            conf,
            &[],
        )
    }
}

impl Default for ComputeNode {
    fn default() -> Self {
        Self::new()
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(root, &path, out);
        } else if let Ok(rel) = path.strip_prefix(root) {
            out.push(rel.display().to_string());
        }
    }
}

/// What one plugin run printed and how it exited.
#[derive(Debug)]
pub struct CniOutput {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
    /// stdout parsed as JSON (`Null` when empty or not JSON).
    pub json: Value,
}

impl CniOutput {
    /// The error code of a failed run.
    pub fn code(&self) -> Option<u64> {
        self.json.get("code").and_then(Value::as_u64)
    }

    /// Panics with everything the plugin said unless it succeeded.
    pub fn expect_ok(self, what: &str) -> Value {
        assert!(
            self.ok,
            "{what}: plugin failed: {} {}",
            self.stdout, self.stderr
        );
        self.json
    }
}

/// Runs `plugin` as a runtime does: CNI_* in the environment, the configuration on stdin,
/// optionally inside the namespace `node` (the simulated compute node).
#[allow(clippy::too_many_arguments)]
pub fn cni_call(
    plugin: &Path,
    node: Option<&str>,
    cmd: &str,
    container: &str,
    netns: &str,
    ifname: &str,
    conf: &Value,
    extra_env: &[(&str, &str)],
) -> CniOutput {
    let mut command = match node {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(plugin);
            c
        }
        None => Command::new(plugin),
    };
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CNI_COMMAND", cmd)
        .env("CNI_CONTAINERID", container)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", ifname)
        .env("CNI_PATH", "/opt/cni/bin:/usr/lib/cni")
        .env("CNI_ARGS", "IgnoreUnknown=1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in extra_env {
        command.env(k, v);
    }
    let mut child = command.spawn().expect("spawn plugin");
    let input = serde_json::to_vec(conf).expect("conf");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&input)
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait plugin");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    CniOutput {
        ok: out.status.success(),
        json: serde_json::from_str(&stdout).unwrap_or(Value::Null),
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A child process a test started: SIGKILLed (by its PID) and reaped on drop.
pub struct Proc(pub std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `ciao-cert` with `args`; panics with its stderr if it fails.
pub fn cert_tool(args: &[&str]) -> String {
    let out = Command::new(scheduler_tool("ciao-cert"))
        .args(args)
        .output()
        .expect("run ciao-cert");
    assert!(
        out.status.success(),
        "ciao-cert {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Makes a ciao-shaped certificate set in `dir` with `ciao-cert`: the anchor (the scheduler's
/// certificate, `cert-scheduler-localhost.pem`, SANs localhost and 127.0.0.1),
/// `CAcert-localhost.pem`, and `cert-<role>-<host>.pem` for each (role, host).
pub fn ciao_certificates(dir: &Path, leaves: &[(&str, &str)]) {
    let d = dir.to_str().expect("utf-8 path");
    cert_tool(&[
        "anchor",
        "--ip",
        "127.0.0.1",
        "--host",
        "localhost",
        "--org",
        "Ciao Deployment",
        "--out-dir",
        d,
    ]);
    let anchor = dir.join("cert-scheduler-localhost.pem");
    let anchor = anchor.to_str().expect("utf-8 path");
    for (role, host) in leaves {
        cert_tool(&[
            "issue",
            "--anchor",
            anchor,
            "--role",
            role,
            "--host",
            host,
            "--out-dir",
            d,
        ]);
    }
}

/// A TenantAdded frame from `agent` naming the CNCI `cnci`, built as a launcher builds it.
pub fn tenant_added_frame(agent: uuid::Uuid, cnci: uuid::Uuid) -> ssntp::frame::Frame {
    use ssntp::payloads::{Payload, TenantAdded, TenantAddedEvent};
    let body = TenantAddedEvent::new(
        agent,
        std::net::Ipv4Addr::new(10, 99, 0, 2),
        TENANT_A.parse().expect("tenant uuid"),
        "172.16.1.0/24".parse().expect("subnet"),
        cnci,
        std::net::Ipv4Addr::new(10, 99, 0, 3),
    );
    ssntp::frame::Frame::new(
        ssntp::frame::kind::EVENT,
        ssntp::frame::event::TENANT_ADDED,
        agent,
        TenantAdded(body).to_yaml(),
    )
}

/// Starts `ciao-scheduler` with `args` and waits for its banner; returns it and the address it
/// listens on.
pub fn start_scheduler(args: &[&str]) -> (Proc, String) {
    use std::io::BufRead;
    let mut child = Command::new(scheduler_tool("ciao-scheduler"))
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ciao-scheduler");
    let mut banner = String::new();
    std::io::BufReader::new(child.stderr.take().expect("stderr"))
        .read_line(&mut banner)
        .expect("scheduler banner");
    (Proc(child), banner_addr(&banner))
}

/// The listening address of the scheduler's first line (`... listening on ADDR`; empty if it
/// is not that line).
fn banner_addr(banner: &str) -> String {
    host::banner_address(banner).unwrap_or_default()
}

/// A TLS client configuration presenting the certificate file `cert` and trusting the CA file
/// `ca` (as `ciao-cert` writes them).
pub fn client_tls(cert: &Path, ca: &Path) -> std::sync::Arc<rustls::ClientConfig> {
    let identity = ssntp::tls::Identity::from_pem(&std::fs::read(cert).expect("read certificate"))
        .expect("certificate and key");
    let ca = ssntp::tls::ca_from_pem(&std::fs::read(ca).expect("read CA")).expect("CA");
    ssntp::tls::client_config(&ca, identity, &ssntp::tls::ClientOptions::default())
        .expect("client TLS configuration")
}

/// Tenant UUIDs used across tests.
pub const TENANT_A: &str = "2491851d-dce9-48d6-b83a-a717417072ce";
pub const TENANT_B: &str = "5f0c2a1e-7b3d-4c8e-9a61-0d2e4f6a8b9c";

/// A `ciao-scheduler` whose stderr is kept: its log lines can be waited for.
pub struct LoggedScheduler {
    pub proc: Proc,
    pub addr: String,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl LoggedScheduler {
    pub fn pid(&self) -> u32 {
        self.proc.0.id()
    }

    /// The log lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits (polling, up to `limit`) for a log line containing every one of `needles`.
    pub fn wait_for_line(&self, needles: &[&str], limit: std::time::Duration) -> Option<String> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(l) = self
                .lines()
                .into_iter()
                .find(|l| needles.iter().all(|n| l.contains(n)))
            {
                return Some(l);
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// True while the process runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.proc.0.try_wait(), Ok(None))
    }

    /// A `kB` field of /proc/<pid>/status (e.g. `VmRSS`, `VmHWM`).
    pub fn status_kib(&self, field: &str) -> Option<u64> {
        host::status_kib(self.pid(), field).ok()
    }
}

/// Starts `ciao-scheduler` with `args` (and, if given, RLIMIT_NOFILE soft = hard = `nofile`),
/// waits for its banner and keeps reading its log in a thread.
pub fn start_scheduler_logged(args: &[&str], nofile: Option<u64>) -> LoggedScheduler {
    use std::io::BufRead;
    let mut cmd = Command::new(scheduler_tool("ciao-scheduler"));
    cmd.args(args).stderr(Stdio::piped());
    if let Some(n) = nofile {
        limit_child_nofile(&mut cmd, n);
    }
    let mut child = cmd.spawn().expect("start ciao-scheduler");
    let mut lines = std::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
    let banner = lines
        .next()
        .expect("scheduler banner")
        .expect("read banner");
    let addr = banner_addr(&banner);
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            sink.lock().unwrap_or_else(|p| p.into_inner()).push(line);
        }
    });
    LoggedScheduler {
        proc: Proc(child),
        addr,
        log,
    }
}

/// Makes the child `cmd` starts run with RLIMIT_NOFILE soft = hard = `n`.
pub fn limit_child_nofile(cmd: &mut Command, n: u64) {
    use std::os::unix::process::CommandExt;
    let limit = libc::rlimit {
        rlim_cur: n,
        rlim_max: n,
    };
    // SAFETY: runs in the child between fork and exec; setrlimit is async-signal-safe, touches
    // only the child's own limits, and `limit` is a plain value copied into the closure.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}

/// Raises this process's RLIMIT_NOFILE (soft and hard) to at least `n` (needs root for the
/// hard limit).
pub fn raise_own_fd_limit(n: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the rlimit we own.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    assert_eq!(rc, 0, "getrlimit: {}", std::io::Error::last_os_error());
    if limit.rlim_cur >= n {
        return;
    }
    limit.rlim_cur = n;
    limit.rlim_max = limit.rlim_max.max(n);
    // SAFETY: setrlimit reads the rlimit we own.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    assert_eq!(rc, 0, "setrlimit: {}", std::io::Error::last_os_error());
}
