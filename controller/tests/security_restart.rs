//! `ciao-controller` as a process (against a real `ciao-scheduler` over TLS): security groups,
//! rules, forwards and SSH access set through its admin socket survive a SIGKILL and restart
//! unchanged, ids included; the `[ssh]` table of its config sets where the blocks start.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ciao_controller::api::client::Client;
use ciao_controller::{NetworkNodeReport, SqliteStore, Store};
use ciao_types::TunnelKind;
use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use testkit::{ciao_certificates, start_scheduler_logged, Proc};
use uuid::Uuid;

const DEADLINE: Duration = Duration::from_secs(60);
const LEAVES: [(&str, &str); 4] = [
    ("controller", "ctl"),
    ("agent", "cn"),
    ("netagent", "nn"),
    ("cnciagent", "cnci"),
];

/// The same certificate set as `daemon.rs` (made once per checkout, renamed into place).
fn certs() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = testkit::workspace_root().join("target/test-certs");
        let dir = base.join("controller");
        let complete = |d: &Path| {
            d.join("CAcert-localhost.pem").is_file()
                && LEAVES
                    .iter()
                    .all(|(r, h)| d.join(format!("cert-{r}-{h}.pem")).is_file())
        };
        if !complete(&dir) {
            std::fs::create_dir_all(&base).expect("target/test-certs");
            let tmp = tempfile::tempdir_in(&base).expect("certificate dir");
            ciao_certificates(tmp.path(), &LEAVES);
            let made = tmp.keep();
            if std::fs::rename(&made, &dir).is_err() {
                let _ = std::fs::remove_dir_all(&made);
                assert!(complete(&dir), "{} is incomplete; remove it", dir.display());
            }
        }
        dir
    })
}

/// Starts the controller and waits until its admin socket answers (the API is served before,
/// and independently of, the scheduler session).
fn start_controller(dir: &Path, n: u32, rt: &tokio::runtime::Runtime) -> Proc {
    let log = dir.join(format!("controller-{n}.log"));
    let child = Command::new(env!("CARGO_BIN_EXE_ciao-controller"))
        .arg("--config")
        .arg(dir.join("controller.toml"))
        .env("RUST_LOG", "info")
        .stderr(Stdio::from(std::fs::File::create(&log).expect("log")))
        .spawn()
        .expect("start ciao-controller");
    // Owned at once: dropped (killed and reaped) on any failure below.
    let controller = Proc(child);
    let client = Client::new(dir.join("state").join("admin.sock"));
    let deadline = Instant::now() + DEADLINE;
    loop {
        let answered = rt.block_on(client.call(Method::GET, "/v1/tenants", None));
        if answered.is_ok_and(|a| a.status == StatusCode::OK) {
            return controller;
        }
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            Instant::now() < deadline,
            "controller did not start:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn call(
    rt: &tokio::runtime::Runtime,
    socket: &Path,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let body = body.map(|b| b.to_string().into_bytes());
    let answer = rt
        .block_on(Client::new(socket).call(method, path, body))
        .expect("the controller answers");
    let json = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
    (answer.status, json)
}

#[test]
fn rules_forwards_and_ssh_survive_a_sigkill_and_restart_with_the_same_ids() {
    let certs = certs();
    let path = |f: &Path| f.to_str().expect("utf-8").to_owned();
    let args = [
        "--listen".to_owned(),
        "127.0.0.1:0".to_owned(),
        "--cert".to_owned(),
        path(&certs.join("cert-scheduler-localhost.pem")),
        "--ca".to_owned(),
        path(&certs.join("CAcert-localhost.pem")),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let scheduler = start_scheduler_logged(&args, None);
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let config = format!(
        "state_dir = {:?}\npublic_pools = [\"203.0.113.0/30\"]\n\n[ssh]\nport_base = 40000\n\n\
         [scheduler]\naddress = {:?}\nserver_name = \"localhost\"\ncert = {:?}\nca = {:?}\n",
        state,
        scheduler.addr,
        certs.join("cert-controller-ctl.pem"),
        certs.join("CAcert-localhost.pem"),
    );
    std::fs::write(dir.path().join("controller.toml"), config).expect("config");
    // A tenant with one subnet, as a compute node's request would have made it.
    let tenant = Uuid::new_v4();
    {
        let store = SqliteStore::open_in(&state).expect("store");
        store
            .network_node_connected(&NetworkNodeReport {
                uuid: Uuid::new_v4(),
                underlay: "192.0.2.1".parse().expect("ip"),
                external_device: "ext0".into(),
                capacity: 4,
            })
            .expect("nn");
        store
            .request_subnet(
                tenant,
                "172.16.0.0/24".parse().expect("net"),
                TunnelKind::Vxlan,
                Uuid::new_v4(),
            )
            .expect("subnet");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let socket = state.join("admin.sock");
    let mut controller = start_controller(dir.path(), 1, &rt);
    let t = format!("/v1/tenants/{tenant}");
    let made = [
        (format!("{t}/security-groups"), json!({"name": "web"})),
        (
            format!("{t}/security-groups/web/rules"),
            json!({"direction": "ingress", "protocol": "tcp", "port_min": 80, "remote_group": "default"}),
        ),
        (
            format!("{t}/forwards"),
            json!({"protocol": "tcp", "public_port": 8080, "private_ip": "172.16.0.5", "private_port": 80}),
        ),
    ];
    for (path, body) in made {
        let (status, answer) = call(&rt, &socket, Method::POST, &path, Some(body));
        assert_eq!(status, StatusCode::CREATED, "{path}: {answer}");
    }
    let (status, on) = call(
        &rt,
        &socket,
        Method::PUT,
        &format!("{t}/ssh"),
        Some(json!({"enabled": true})),
    );
    assert_eq!(status, StatusCode::OK, "{on}");
    assert_eq!(
        on["blocks"],
        json!([{"subnet": "172.16.0.0/24", "first_port": 40000, "last_port": 40255}])
    );
    let views = |rt: &tokio::runtime::Runtime| {
        ["security-groups", "forwards", "ssh"]
            .map(|what| call(rt, &socket, Method::GET, &format!("{t}/{what}"), None).1)
    };
    let before = views(&rt);
    assert_eq!(before[0].as_array().expect("groups").len(), 2);

    let pid = controller.0.id();
    controller.0.kill().expect("SIGKILL");
    controller.0.wait().expect("reaped");
    drop(controller);
    let restarted = start_controller(dir.path(), 2, &rt);
    assert_ne!(restarted.0.id(), pid);
    assert_eq!(
        views(&rt),
        before,
        "the same groups, rules, forwards and SSH access, ids and all"
    );
}
