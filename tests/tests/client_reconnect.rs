//! The long-lived SSNTP client: it reconnects after the scheduler is killed and restarted, tells
//! its owner each time (so a CNCI can re-announce itself), and keeps receiving.

use std::time::Duration;

use ssntp::client::{Client, ClientConfig, ClientEvent};
use ssntp::frame::{event, role};
use testkit::{ciao_certificates, client_tls, start_scheduler, tenant_added_frame, Proc};
use uuid::Uuid;

fn start(dir: &str, port: u16) -> Proc {
    let listen = format!("127.0.0.1:{port}");
    let cert = format!("{dir}/cert-scheduler-localhost.pem");
    let ca = format!("{dir}/CAcert-localhost.pem");
    start_scheduler(&["--listen", &listen, "--cert", &cert, "--ca", &ca]).0
}

fn tls(dir: &str, cert: &str) -> std::sync::Arc<rustls::ClientConfig> {
    let dir = std::path::Path::new(dir);
    client_tls(&dir.join(cert), &dir.join("CAcert-localhost.pem"))
}

async fn next_event(
    rx: &mut tokio::sync::mpsc::Receiver<ClientEvent>,
    want: fn(&ClientEvent) -> bool,
) -> ClientEvent {
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(15), rx.recv())
            .await
            .expect("event in time")
            .expect("client alive");
        if want(&ev) {
            return ev;
        }
    }
}

#[tokio::test]
async fn the_client_reconnects_after_the_scheduler_restarts_and_keeps_receiving() {
    let certs = tempfile::tempdir().expect("tempdir");
    let dir = certs.path().to_str().expect("utf-8").to_string();
    ciao_certificates(certs.path(), &[("cnciagent", "cnci"), ("agent", "cn1")]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let cnci = Uuid::new_v4();
    let first = start(&dir, port);
    let (_handle, mut events) = Client::spawn(ClientConfig {
        addr: addr.clone(),
        server_name: "127.0.0.1".into(),
        tls: tls(&dir, "cert-cnciagent-cnci.pem"),
        uuid: cnci,
        role: role::CNCIAGENT,
        max_backoff: Duration::from_secs(1),
    });
    next_event(&mut events, |e| matches!(e, ClientEvent::Connected(_))).await;

    drop(first); // kill -9 the scheduler
    next_event(&mut events, |e| matches!(e, ClientEvent::Disconnected(_))).await;
    let _second = start(&dir, port);
    next_event(&mut events, |e| matches!(e, ClientEvent::Connected(_))).await;

    let launcher = Uuid::new_v4();
    let mut cn = ssntp::client::dial(
        &addr,
        "127.0.0.1",
        tls(&dir, "cert-agent-cn1.pem"),
        launcher,
        role::AGENT,
    )
    .await
    .expect("launcher");
    cn.writer
        .frame(&tenant_added_frame(launcher, cnci))
        .await
        .expect("send");
    let ClientEvent::Frame(f) =
        next_event(&mut events, |e| matches!(e, ClientEvent::Frame(_))).await
    else {
        panic!("expected a frame")
    };
    assert_eq!(f.operand, event::TENANT_ADDED);
}
