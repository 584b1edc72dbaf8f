//! Issue 14's restart test: the controller, a compute node's daemon and the CNCIs' process
//! (`ciao-nn`) are each SIGKILLed and restarted while a probe runs. Throughout, nothing the
//! rules forbid gets through (a removed rule, a non-member, a deleted forward, revoked SSH
//! access), what they allow comes back after each restart, and afterwards the kernel holds
//! the same rules as before (the compute nodes' `inet ciao_sg_v1`, the CNCI's
//! `ip ciao_tenant`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use testkit::cluster::{ssh_port, text, Cluster, Cn, Tenant};
use testkit::tcp::{tag_at, TagListener};
use testkit::{require_root, TENANT_A};

const S1: &str = "172.16.1.0/24";
const WEB: &str = "172.16.1.10";
const ADMIN: &str = "172.16.1.11";
const OTHER: &str = "172.16.1.12";
const DB: &str = "172.16.1.13";
/// Long enough for a loaded CI machine; every wait ends as soon as its condition holds.
const CONVERGE: Duration = Duration::from_secs(90);

/// TCP listeners on `ports` in namespace `ns` that answer with `tag`.
fn serve(ns: PathBuf, ports: &[u16], tag: &'static str) -> Vec<TagListener> {
    ports
        .iter()
        .map(|port| TagListener::start(ns.clone(), *port, tag))
        .collect()
}

/// The tag a listener behind `ip:port` sends, seen from namespace `ns`.
fn probe(ns: &std::path::Path, ip: &str, port: u16) -> Option<String> {
    tag_at(ns, None, ip, port)
}

/// One connection the probe tries: from a namespace to `ip:port`.
struct Conn {
    what: &'static str,
    from: PathBuf,
    ip: String,
    port: u16,
    /// Successful connections so far (allowed paths only).
    passed: AtomicU64,
}

impl Conn {
    fn new(what: &'static str, from: PathBuf, ip: &str, port: u16) -> Arc<Conn> {
        Arc::new(Conn {
            what,
            from,
            ip: ip.to_string(),
            port,
            passed: AtomicU64::new(0),
        })
    }
}

/// Tries the allowed and the forbidden paths in turn until stopped; a forbidden path that
/// answers is recorded with the phase it happened in.
struct Probe {
    stop: Arc<AtomicBool>,
    phase: Arc<Mutex<String>>,
    breaches: Arc<Mutex<Vec<String>>>,
    allowed: Vec<Arc<Conn>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Probe {
    fn start(allowed: Vec<Arc<Conn>>, forbidden: Vec<Arc<Conn>>) -> Probe {
        let stop = Arc::new(AtomicBool::new(false));
        let phase = Arc::new(Mutex::new("before the restarts".to_string()));
        let breaches = Arc::new(Mutex::new(Vec::new()));
        let (flag, now, seen, paths) = (
            stop.clone(),
            phase.clone(),
            breaches.clone(),
            allowed.clone(),
        );
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                for p in &paths {
                    if probe(&p.from, &p.ip, p.port).is_some() {
                        p.passed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                for p in &forbidden {
                    if let Some(tag) = probe(&p.from, &p.ip, p.port) {
                        let phase = now.lock().map(|s| s.clone()).unwrap_or_default();
                        let mut list = seen.lock().unwrap_or_else(|e| e.into_inner());
                        list.push(format!("{} answered {tag:?} ({phase})", p.what));
                    }
                }
            }
        });
        Probe {
            stop,
            phase,
            breaches,
            allowed,
            thread: Some(thread),
        }
    }

    fn set_phase(&self, phase: &str) {
        if let Ok(mut p) = self.phase.lock() {
            *p = phase.to_string();
        }
    }

    /// Waits until every allowed path has answered again since now.
    fn wait_allowed_again(&self, after: &str) {
        let counts: Vec<u64> = self
            .allowed
            .iter()
            .map(|p| p.passed.load(Ordering::Relaxed))
            .collect();
        let start = Instant::now();
        for (p, before) in self.allowed.iter().zip(counts) {
            while p.passed.load(Ordering::Relaxed) <= before {
                assert!(
                    start.elapsed() < CONVERGE,
                    "{} does not answer after {after}",
                    p.what
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    fn breaches(&self) -> Vec<String> {
        self.breaches.lock().map(|b| b.clone()).unwrap_or_default()
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What the rules of the tenant look like in every kernel that holds some of them.
fn rules(cluster: &Cluster, t: &Tenant) -> Vec<Vec<String>> {
    vec![
        cluster
            .cn(Cn::Cn1)
            .ns
            .nft_table_blocks("inet", "ciao_sg_v1"),
        cluster
            .cn(Cn::Cn2)
            .ns
            .nft_table_blocks("inet", "ciao_sg_v1"),
        cluster.tenant_ns(t).nft_table_blocks("ip", "ciao_tenant"),
    ]
}

/// Polls `cond` until it holds, at most [`CONVERGE`].
fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < CONVERGE, "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn no_forbidden_traffic_passes_while_any_daemon_restarts_and_the_rules_come_back_the_same() {
    require_root!();
    let mut cluster = Cluster::with_controller().expect("cluster in controller mode");
    let mut t = cluster.controlled_tenant(TENANT_A);
    let groups = |names: &[&str]| json!({ "securityGroups": names });
    let web = cluster
        .container_with(Cn::Cn1, &t, S1, WEB, groups(&["web"]))
        .expect("web");
    cluster.wait_cnci_ready(&mut t).expect("CNCI ready");
    let tenant = t.tenant.clone();
    for name in ["web", "admin"] {
        cluster.ciao_net_ok(&["group", "create", "--tenant", &tenant, name]);
    }
    let rule = |group: &str, extra: &[&str]| cluster.add_rule(&tenant, group, extra);
    let tcp_in = |port: &'static str| {
        vec![
            "--direction",
            "ingress",
            "--protocol",
            "tcp",
            "--port",
            port,
        ]
    };
    rule("web", &tcp_in("80"));
    let mut ssh_rule = tcp_in("22");
    ssh_rule.extend(["--remote-group", "admin"]);
    rule("web", &ssh_rule);
    // All egress is allowed by the two rules every new group starts with.
    // Opened, then closed again: the removal must survive every restart.
    let removed = rule("web", &tcp_in("8080"));
    cluster.ciao_net_ok(&[
        "rule",
        "delete",
        "--tenant",
        &tenant,
        &text(&removed, "uuid"),
    ]);

    let admin = cluster
        .container_with(Cn::Cn2, &t, S1, ADMIN, groups(&["admin"]))
        .expect("admin");
    let other = cluster.container(Cn::Cn2, &t, S1, OTHER).expect("other");
    let db = cluster.container(Cn::Cn2, &t, S1, DB).expect("db");
    let _web = serve(web.ns.path(), &[22, 80, 8080], "web");
    let _db = serve(db.ns.path(), &[5432, 22], "db");

    let forward = |port: &str, to: &str| {
        cluster.ciao_net_ok(&["forward", "add", "--tenant", &tenant, "tcp", port, to])
    };
    let to_web = forward("8080", &format!("{WEB}:80"));
    let fip = text(&to_web, "public_ip");
    let to_db = forward("15432", &format!("{DB}:5432"));
    let on = cluster.ciao_net_ok(&["ssh", "on", "--tenant", &tenant]);
    let db_ssh = ssh_port(&on, S1, DB);
    let ext = cluster.ext.path();
    until("the forwards and SSH answer", || {
        probe(&ext, &fip, 15432).is_some() && probe(&ext, &fip, db_ssh).is_some()
    });
    // Taken back: neither may answer again, whatever restarts.
    cluster.ciao_net_ok(&[
        "forward",
        "delete",
        "--tenant",
        &tenant,
        &text(&to_db, "uuid"),
    ]);
    cluster.ciao_net_ok(&["ssh", "off", "--tenant", &tenant]);
    until("the deleted forward and SSH stop answering", || {
        probe(&ext, &fip, 15432).is_none() && probe(&ext, &fip, db_ssh).is_none()
    });
    until("the groups are enforced", || {
        probe(&admin.ns.path(), WEB, 22).is_some()
            && probe(&other.ns.path(), WEB, 22).is_none()
            && probe(&admin.ns.path(), WEB, 8080).is_none()
    });

    let probe_run = Probe::start(
        vec![
            Conn::new("admin -> web:22", admin.ns.path(), WEB, 22),
            Conn::new("other -> web:80", other.ns.path(), WEB, 80),
            Conn::new("external -> forward:8080", ext.clone(), &fip, 8080),
        ],
        vec![
            Conn::new("other (no group) -> web:22", other.ns.path(), WEB, 22),
            Conn::new(
                "admin -> web:8080 (rule removed)",
                admin.ns.path(),
                WEB,
                8080,
            ),
            Conn::new(
                "external -> forward:15432 (deleted)",
                ext.clone(),
                &fip,
                15432,
            ),
            Conn::new(
                "external -> db's SSH port (SSH off)",
                ext.clone(),
                &fip,
                db_ssh,
            ),
        ],
    );
    probe_run.wait_allowed_again("the start");
    let before = rules(&cluster, &t);

    probe_run.set_phase("controller restart");
    cluster.kill_controller();
    cluster.start_controller().expect("controller back");
    probe_run.wait_allowed_again("the controller's restart");
    assert_eq!(
        rules(&cluster, &t),
        before,
        "after the controller's restart"
    );

    for cn in [Cn::Cn1, Cn::Cn2] {
        probe_run.set_phase(&format!("{} daemon restart", cn.name()));
        let ns = cluster.cn(cn).ns.name.clone();
        let handle = |c: &Cluster| c.cn(cn).ns.nft_table_handle("inet", "ciao_sg_v1");
        let old = handle(&cluster);
        cluster.kill_daemon(cn);
        cluster.start_daemon(cn).expect("node daemon back");
        until("the restarted daemon rebuilds its table", || {
            handle(&cluster) != old
        });
        probe_run.wait_allowed_again("a node daemon's restart");
        assert_eq!(rules(&cluster, &t), before, "after {ns}'s restart");
    }

    probe_run.set_phase("ciao-nn (the CNCIs' process) restart");
    cluster.kill_nn();
    cluster.start_nn().expect("ciao-nn back");
    probe_run.wait_allowed_again("ciao-nn's restart");
    assert_eq!(rules(&cluster, &t), before, "after ciao-nn's restart");

    // One more round of every probe after the last restart, then the verdict.
    probe_run.set_phase("after the restarts");
    probe_run.wait_allowed_again("the restarts");
    let breaches = probe_run.breaches();
    drop(probe_run);
    assert!(
        breaches.is_empty(),
        "forbidden traffic passed: {breaches:#?}"
    );
}
