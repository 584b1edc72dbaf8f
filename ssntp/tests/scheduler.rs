//! The scheduler's forwarding rules with real SSNTP clients (over in-memory streams; the TLS
//! listener is tested separately).

use std::time::Duration;

use ssntp::conn::{client_handshake, FrameReader, FrameWriter};
use ssntp::frame::{command, event, kind, role, Frame};
use ssntp::server::{Scheduler, SchedulerConfig};
use tokio::io::{DuplexStream, ReadHalf, WriteHalf};
use uuid::Uuid;

type Client = (
    FrameReader<ReadHalf<DuplexStream>>,
    FrameWriter<WriteHalf<DuplexStream>>,
);

async fn connect(s: &Scheduler, uuid: Uuid, role_bits: u32) -> Client {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let (sr, sw) = tokio::io::split(b);
    let sched = s.clone();
    tokio::spawn(async move {
        let _ = sched.serve(sr, sw, role_bits).await;
    });
    let (cr, cw) = tokio::io::split(a);
    let (mut r, mut w) = (FrameReader::new(cr), FrameWriter::new(cw));
    client_handshake(&mut r, &mut w, uuid, role_bits, role::SCHEDULER)
        .await
        .expect("handshake");
    (r, w)
}

async fn receive(c: &mut Client) -> Option<Frame> {
    tokio::time::timeout(Duration::from_millis(300), c.0.frame())
        .await
        .ok()
        .and_then(|r| r.ok().flatten())
}

fn tenant_added(cnci: &str) -> Vec<u8> {
    format!("tenant_added:\n  agent_uuid: a9e17000-0000-4000-8000-000000000002\n  agent_ip: 10.99.0.2\n  tenant_uuid: 2491851d-dce9-48d6-b83a-a717417072ce\n  tenant_subnet: 172.16.1.0/24\n  concentrator_uuid: {cnci}\n  concentrator_ip: 10.99.0.3\n  subnet_key: 69804\n").into_bytes()
}

fn scheduler() -> Scheduler {
    Scheduler::new(SchedulerConfig::new(Uuid::new_v4()))
}

#[tokio::test]
async fn tenant_added_reaches_exactly_the_named_cnci() {
    let s = scheduler();
    let (c1, c2, launcher) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let mut cnci1 = connect(&s, c1, role::CNCIAGENT).await;
    let mut cnci2 = connect(&s, c2, role::CNCIAGENT).await;
    let mut cn = connect(&s, launcher, role::AGENT).await;
    cn.1.frame(&Frame::new(
        kind::EVENT,
        event::TENANT_ADDED,
        launcher,
        tenant_added(&c1.to_string()),
    ))
    .await
    .expect("send");
    let got = receive(&mut cnci1).await.expect("cnci1 gets it");
    assert_eq!(got.operand, event::TENANT_ADDED);
    assert_eq!(
        got.origin,
        *launcher.as_bytes(),
        "origin stays the launcher's"
    );
    assert!(
        receive(&mut cnci2).await.is_none(),
        "the other CNCI must not get it"
    );

    // Upper-case and unknown concentrator UUIDs reach nobody (as in Go).
    for bad in [
        c1.to_string().to_uppercase(),
        Uuid::new_v4().to_string(),
        String::new(),
    ] {
        cn.1.frame(&Frame::new(
            kind::EVENT,
            event::TENANT_ADDED,
            launcher,
            tenant_added(&bad),
        ))
        .await
        .expect("send");
    }
    assert!(receive(&mut cnci1).await.is_none());
    assert!(receive(&mut cnci2).await.is_none());
}

#[tokio::test]
async fn public_ip_commands_only_from_the_master_controller() {
    let s = scheduler();
    let cnci = Uuid::new_v4();
    let mut c = connect(&s, cnci, role::CNCIAGENT).await;
    let mut master = connect(&s, Uuid::new_v4(), role::CONTROLLER).await;
    let mut backup = connect(&s, Uuid::new_v4(), role::CONTROLLER).await;
    let mut cn = connect(&s, Uuid::new_v4(), role::AGENT).await;
    let assign =
        format!("assign_public_ip:\n  concentrator_uuid: {cnci}\n  public_ip: 203.0.113.10\n")
            .into_bytes();
    let cmd = Frame::new(
        kind::COMMAND,
        command::ASSIGN_PUBLIC_IP,
        Uuid::nil(),
        assign,
    );
    backup.1.frame(&cmd).await.expect("send");
    cn.1.frame(&cmd).await.expect("send");
    assert!(
        receive(&mut c).await.is_none(),
        "backup controller and launcher are ignored"
    );
    master.1.frame(&cmd).await.expect("send");
    assert_eq!(
        receive(&mut c).await.expect("from the master").operand,
        command::ASSIGN_PUBLIC_IP
    );

    // CNCI events go to every controller.
    let added = b"concentrator_instance_added:\n  instance_uuid: x\n".to_vec();
    c.1.frame(&Frame::new(
        kind::EVENT,
        event::CONCENTRATOR_INSTANCE_ADDED,
        cnci,
        added,
    ))
    .await
    .expect("send");
    for ctl in [&mut master, &mut backup] {
        // Skip the NodeConnected the launcher's arrival produced.
        let mut seen = Vec::new();
        while let Some(f) = receive(ctl).await {
            seen.push(f.operand);
        }
        assert!(
            seen.contains(&event::CONCENTRATOR_INSTANCE_ADDED),
            "{seen:?}"
        );
        assert!(seen.contains(&event::NODE_CONNECTED), "{seen:?}");
    }
}

#[tokio::test]
async fn a_cnci_reconnecting_with_the_same_uuid_keeps_receiving() {
    let s = scheduler();
    let (cnci, launcher) = (Uuid::new_v4(), Uuid::new_v4());
    let old = connect(&s, cnci, role::CNCIAGENT).await;
    let mut new = connect(&s, cnci, role::CNCIAGENT).await;
    // The old session is closed by the scheduler; dropping it must not unregister the new one.
    drop(old);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(s.is_connected(&cnci));
    let mut cn = connect(&s, launcher, role::AGENT).await;
    cn.1.frame(&Frame::new(
        kind::EVENT,
        event::TENANT_ADDED,
        launcher,
        tenant_added(&cnci.to_string()),
    ))
    .await
    .expect("send");
    assert_eq!(
        receive(&mut new)
            .await
            .expect("the new session receives")
            .operand,
        event::TENANT_ADDED
    );
}

#[tokio::test]
async fn an_unknown_frame_type_is_answered_with_invalid_frame_type() {
    let s = scheduler();
    let me = Uuid::new_v4();
    let mut cn = connect(&s, me, role::AGENT).await;
    cn.1.frame(&Frame::new(9, 0, me, Vec::new()))
        .await
        .expect("send");
    let reply = receive(&mut cn).await.expect("reply");
    assert_eq!(
        (reply.kind, reply.operand),
        (kind::ERROR, ssntp::frame::error::INVALID_FRAME_TYPE)
    );
}

#[tokio::test]
async fn tenant_events_for_an_absent_cnci_are_held_until_it_connects() {
    let s = scheduler();
    let (cnci, launcher) = (Uuid::new_v4(), Uuid::new_v4());
    let mut cn = connect(&s, launcher, role::AGENT).await;
    for operand in [
        event::TENANT_ADDED,
        event::TENANT_REMOVED,
        event::TENANT_ADDED,
    ] {
        let mut payload = tenant_added(&cnci.to_string());
        if operand == event::TENANT_REMOVED {
            payload = String::from_utf8(payload)
                .expect("utf-8")
                .replace("tenant_added:", "tenant_removed:")
                .into_bytes();
        }
        cn.1.frame(&Frame::new(kind::EVENT, operand, launcher, payload))
            .await
            .expect("send");
    }
    // Make sure the scheduler routed them before the CNCI appears.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut c = connect(&s, cnci, role::CNCIAGENT).await;
    let got: Vec<u8> = [
        receive(&mut c).await,
        receive(&mut c).await,
        receive(&mut c).await,
    ]
    .into_iter()
    .map(|f| f.expect("held frame delivered").operand)
    .collect();
    assert_eq!(
        got,
        [
            event::TENANT_ADDED,
            event::TENANT_REMOVED,
            event::TENANT_ADDED
        ],
        "in order"
    );
    assert!(receive(&mut c).await.is_none(), "delivered once");
}

#[tokio::test]
async fn held_tenant_events_are_bounded_and_can_be_turned_off() {
    let mut cfg = SchedulerConfig::new(Uuid::new_v4());
    cfg.hold_depth = 2;
    let s = Scheduler::new(cfg.clone());
    let (cnci, launcher) = (Uuid::new_v4(), Uuid::new_v4());
    let mut cn = connect(&s, launcher, role::AGENT).await;
    for _ in 0..5 {
        cn.1.frame(&Frame::new(
            kind::EVENT,
            event::TENANT_ADDED,
            launcher,
            tenant_added(&cnci.to_string()),
        ))
        .await
        .expect("send");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut c = connect(&s, cnci, role::CNCIAGENT).await;
    assert!(receive(&mut c).await.is_some());
    assert!(receive(&mut c).await.is_some());
    assert!(
        receive(&mut c).await.is_none(),
        "only the newest two are kept"
    );

    cfg.hold_depth = 0;
    let s = Scheduler::new(cfg);
    let mut cn = connect(&s, launcher, role::AGENT).await;
    cn.1.frame(&Frame::new(
        kind::EVENT,
        event::TENANT_ADDED,
        launcher,
        tenant_added(&cnci.to_string()),
    ))
    .await
    .expect("send");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut c = connect(&s, cnci, role::CNCIAGENT).await;
    assert!(receive(&mut c).await.is_none(), "Go behaviour: dropped");
}
