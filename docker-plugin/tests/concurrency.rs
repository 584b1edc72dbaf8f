//! The server answers other calls while a RequestPool of a tenant-only network waits for the
//! controller: the plugin's HTTP server on a real unix socket, the driver on the fake kernel,
//! and a stand-in for `ciao-node run`'s `node.sock` that answers only when the test lets it.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ciao_docker_plugin::server::{serve, Limits};
use netcore::fake::FakeWorld;
use serde_json::{json, Value};

const TENANT: &str = "3390740c-dce9-48d6-b83a-a717417072ce";
/// How long a client waits for an answer: a bound for a failing run, never a pause.
const ANSWER: Duration = Duration::from_secs(20);

/// One plugin call over its socket (HTTP/1.1, the connection closed after the answer): the
/// answer's JSON body.
fn post(socket: &Path, path: &str, body: &Value) -> Value {
    let mut stream = UnixStream::connect(socket).expect("connect to the plugin");
    stream.set_read_timeout(Some(ANSWER)).expect("timeout");
    let body = body.to_string();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: plugin\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .unwrap_or_else(|e| panic!("{path}: no answer within {ANSWER:?}: {e}"));
    let (head, json) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{path}: {head}");
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{path}: {e}: {json}"))
}

/// A stand-in `ciao-node run`: takes one request, reports it on `asked`, and answers with a
/// subnet only once `release` says so.
fn held_daemon(dir: &Path, asked: mpsc::Sender<Value>, release: mpsc::Receiver<()>) {
    let listener = UnixListener::bind(dir.join("node.sock")).expect("bind node.sock");
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        let mut line = String::new();
        BufReader::new(&stream).read_line(&mut line).expect("line");
        let _ = asked.send(serde_json::from_str(&line).expect("request"));
        if release.recv().is_ok() {
            let reply = json!({"ok": {"subnet": "172.19.4.0/24",
                "range_start": "172.19.4.34", "range_end": "172.19.4.63"}});
            let _ = (&stream).write_all(format!("{reply}\n").as_bytes());
        }
    });
}

fn request_pool(pool: &str, options: Value) -> Value {
    json!({"AddressSpace": "ciao-local", "Pool": pool, "SubPool": "", "Options": options, "V6": false})
}

#[test]
fn a_request_pool_waiting_for_the_controller_holds_up_no_other_call() {
    let world = FakeWorld::with_uplink();
    let dir = tempfile::tempdir().expect("dir");
    let node = world.node(dir.path()).expect("node");
    let plugin = ciao_docker_plugin::Plugin::with_node(node, dir.path()).expect("plugin");
    let (asked_tx, asked) = mpsc::channel();
    let (release, release_rx) = mpsc::channel();
    held_daemon(dir.path(), asked_tx, release_rx);

    let socket = dir.path().join("plugin.sock");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let listener = runtime
        .block_on(async { tokio::net::UnixListener::bind(&socket) })
        .expect("bind the plugin socket");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = runtime.spawn(serve(
        listener,
        Arc::new(Mutex::new(plugin)),
        false,
        Limits::default(),
        async {
            let _ = stopped.await;
        },
    ));

    // A tenant-only network: RequestPool asks the node, which holds its answer.
    let waiting = {
        let socket = socket.clone();
        std::thread::spawn(move || {
            let options = json!({"tenant": TENANT, "subnet-wait-seconds": "20"});
            post(
                &socket,
                "/IpamDriver.RequestPool",
                &request_pool("", options),
            )
        })
    };
    let request = asked.recv_timeout(ANSWER).expect("the node was asked");
    assert_eq!(request, json!({"auto_subnet": {"tenant": TENANT}}));

    // Meanwhile: an activation and a network with its own subnet are answered.
    let activate = post(&socket, "/Plugin.Activate", &json!({}));
    assert_eq!(
        activate,
        json!({"Implements": ["NetworkDriver", "IpamDriver"]})
    );
    let explicit = post(
        &socket,
        "/IpamDriver.RequestPool",
        &request_pool("10.9.0.0/24", json!({})),
    );
    assert_eq!(explicit["Pool"], "10.9.0.0/24", "{explicit}");
    assert!(
        !waiting.is_finished(),
        "the automatic RequestPool was still waiting for the node"
    );

    release.send(()).expect("release the node's answer");
    let auto = waiting.join().expect("RequestPool thread");
    assert_eq!(auto["Pool"], "172.19.4.0/24", "{auto}");
    assert_ne!(auto["PoolID"], explicit["PoolID"]);
    let pools = std::fs::read_dir(dir.path().join("docker/pools"))
        .expect("pool records")
        .count();
    assert_eq!(pools, 2, "both pools recorded");

    let _ = stop.send(());
    runtime
        .block_on(server)
        .expect("server task")
        .expect("served");
}
