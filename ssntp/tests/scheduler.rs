//! The scheduler's forwarding rules with real SSNTP clients (over in-memory streams; the TLS
//! listener is tested separately).

use std::time::Duration;

use ssntp::certs::PeerIdentity;
use ssntp::conn::{client_handshake, ConnError, FrameReader, FrameWriter};
use ssntp::frame::{command, error, event, kind, role, Frame};
use ssntp::server::{Scheduler, SchedulerConfig};
use tokio::io::{DuplexStream, ReadHalf, WriteHalf};
use uuid::Uuid;

type Client = (
    FrameReader<ReadHalf<DuplexStream>>,
    FrameWriter<WriteHalf<DuplexStream>>,
);

/// A certificate identity with the given roles and a key named `key` (what the TLS listener
/// would read from a real certificate).
fn identity(role_bits: u32, key: &str) -> PeerIdentity {
    PeerIdentity {
        roles: role_bits,
        uuids: Vec::new(),
        public_key: key.as_bytes().to_vec(),
    }
}

async fn try_connect(s: &Scheduler, uuid: Uuid, peer: PeerIdentity) -> Result<Client, ConnError> {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let (sr, sw) = tokio::io::split(b);
    let sched = s.clone();
    let role_bits = peer.roles;
    tokio::spawn(async move {
        let _ = sched.serve(sr, sw, peer).await;
    });
    let (cr, cw) = tokio::io::split(a);
    let (mut r, mut w) = (FrameReader::new(cr), FrameWriter::new(cw));
    client_handshake(&mut r, &mut w, uuid, role_bits, role::SCHEDULER).await?;
    Ok((r, w))
}

/// Connects as `uuid` with a certificate of its own (the same one on every reconnect).
async fn connect(s: &Scheduler, uuid: Uuid, role_bits: u32) -> Client {
    try_connect(s, uuid, identity(role_bits, &format!("key of {uuid}")))
        .await
        .expect("handshake")
}

/// Waits until the scheduler has routed everything `c` sent before: it answers an unknown frame
/// type in order, after the frames before it (frames other than that reply are returned).
async fn barrier(c: &mut Client, me: Uuid) -> Vec<Frame> {
    c.1.frame(&Frame::new(9, 0, me, Vec::new()))
        .await
        .expect("send");
    let mut other = Vec::new();
    loop {
        let f = tokio::time::timeout(Duration::from_secs(10), c.0.frame())
            .await
            .expect("barrier reply in time")
            .expect("read")
            .expect("frame");
        if (f.kind, f.operand) == (kind::ERROR, error::INVALID_FRAME_TYPE) {
            return other;
        }
        other.push(f);
    }
}

async fn receive(c: &mut Client) -> Option<Frame> {
    tokio::time::timeout(Duration::from_millis(300), c.0.frame())
        .await
        .ok()
        .and_then(|r| r.ok().flatten())
}

fn tenant_added(agent: Uuid, cnci: &str) -> Vec<u8> {
    format!("tenant_added:\n  agent_uuid: {agent}\n  agent_ip: 10.99.0.2\n  tenant_uuid: 2491851d-dce9-48d6-b83a-a717417072ce\n  tenant_subnet: 172.16.1.0/24\n  concentrator_uuid: {cnci}\n  concentrator_ip: 10.99.0.3\n  subnet_key: 69804\n").into_bytes()
}

fn scheduler() -> Scheduler {
    Scheduler::new(SchedulerConfig::new(Uuid::new_v4()))
}

/// Sends an event from `c` with `origin` in its header.
async fn send_event(c: &mut Client, operand: u8, origin: Uuid, payload: Vec<u8>) {
    c.1.frame(&Frame::new(kind::EVENT, operand, origin, payload))
        .await
        .expect("send");
}

/// Sends, as `agent`, a TenantAdded naming `agent` and the concentrator `cnci`.
async fn send_tenant_added(c: &mut Client, agent: Uuid, cnci: &str) {
    send_event(c, event::TENANT_ADDED, agent, tenant_added(agent, cnci)).await;
}

/// A TenantRemoved payload: the TenantAdded one under the other name.
fn tenant_removed(agent: Uuid, cnci: &str) -> Vec<u8> {
    String::from_utf8(tenant_added(agent, cnci))
        .expect("utf-8")
        .replace("tenant_added:", "tenant_removed:")
        .into_bytes()
}

#[tokio::test]
async fn tenant_added_reaches_exactly_the_named_cnci() {
    let s = scheduler();
    let (c1, c2, launcher) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let mut cnci1 = connect(&s, c1, role::CNCIAGENT).await;
    let mut cnci2 = connect(&s, c2, role::CNCIAGENT).await;
    let mut cn = connect(&s, launcher, role::AGENT).await;
    send_tenant_added(&mut cn, launcher, &c1.to_string()).await;
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
        send_tenant_added(&mut cn, launcher, &bad).await;
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
    let added = format!("concentrator_instance_added:\n  instance_uuid: {cnci}\n").into_bytes();
    send_event(&mut c, event::CONCENTRATOR_INSTANCE_ADDED, cnci, added).await;
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
    send_tenant_added(&mut cn, launcher, &cnci.to_string()).await;
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
        let payload = if operand == event::TENANT_REMOVED {
            tenant_removed(launcher, &cnci.to_string())
        } else {
            tenant_added(launcher, &cnci.to_string())
        };
        send_event(&mut cn, operand, launcher, payload).await;
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
        send_tenant_added(&mut cn, launcher, &cnci.to_string()).await;
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
    send_tenant_added(&mut cn, launcher, &cnci.to_string()).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut c = connect(&s, cnci, role::CNCIAGENT).await;
    assert!(receive(&mut c).await.is_none(), "Go behaviour: dropped");
}

fn tenant_sync(agent: Uuid, cnci: Uuid, subnets: &[&str]) -> Vec<u8> {
    let mut text = format!(
        "tenant_sync:\n  agent_uuid: {agent}\n  concentrator_uuid: {cnci}\n  tenant_uuid: 2491851d-dce9-48d6-b83a-a717417072ce\n  subnets:\n"
    );
    for s in subnets {
        text.push_str(&format!("  - agent_uuid: {agent}\n    agent_ip: 10.99.0.2\n    tenant_uuid: 2491851d-dce9-48d6-b83a-a717417072ce\n    tenant_subnet: {s}\n    concentrator_uuid: {cnci}\n    concentrator_ip: 10.99.0.3\n    subnet_key: 1\n"));
    }
    text.into_bytes()
}

fn instance_added(cnci: Uuid) -> Frame {
    Frame::new(
        kind::EVENT,
        event::CONCENTRATOR_INSTANCE_ADDED,
        cnci,
        format!("concentrator_instance_added:\n  instance_uuid: {cnci}\n  tenant_uuid: \"\"\n  concentrator_ip: 10.99.0.3\n  concentrator_mac: 02:00:0a:63:00:03\n").into_bytes(),
    )
}

async fn next_frame(c: &mut Client) -> Frame {
    tokio::time::timeout(Duration::from_secs(10), c.0.frame())
        .await
        .expect("a frame in time")
        .expect("read")
        .expect("frame")
}

#[tokio::test]
async fn tenant_events_only_from_the_agent_they_name() {
    let s = scheduler();
    let (cnci, cn, other_cn, ctl) = (
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
    );
    let mut c = connect(&s, cnci, role::CNCIAGENT).await;
    let mut agent = connect(&s, cn, role::AGENT).await;
    let mut controller = connect(&s, ctl, role::CONTROLLER).await;
    let fake = Uuid::new_v4();
    let mut fake_cnci = connect(&s, fake, role::CNCIAGENT).await;
    // The attacks: another node's agent_uuid, and tenant events from roles other than AGENT.
    for (operand, body) in [
        (
            event::TENANT_ADDED,
            tenant_added(other_cn, &cnci.to_string()),
        ),
        (
            event::TENANT_REMOVED,
            tenant_removed(other_cn, &cnci.to_string()),
        ),
        (
            event::TENANT_SYNC,
            tenant_sync(other_cn, cnci, &["172.16.9.0/24"]),
        ),
    ] {
        send_event(&mut agent, operand, cn, body).await;
    }
    let from_controller = tenant_added(ctl, &cnci.to_string());
    send_event(&mut controller, event::TENANT_ADDED, ctl, from_controller).await;
    send_tenant_added(&mut fake_cnci, fake, &cnci.to_string()).await;
    barrier(&mut agent, cn).await;
    barrier(&mut controller, ctl).await;
    barrier(&mut fake_cnci, fake).await;
    // The real one, sent after the forgeries were routed, is the first the CNCI gets.
    send_tenant_added(&mut agent, cn, &cnci.to_string()).await;
    let got = next_frame(&mut c).await;
    assert_eq!(got.operand, event::TENANT_ADDED);
    assert!(
        String::from_utf8_lossy(&got.payload).contains(&format!("agent_uuid: {cn}")),
        "forged frames were dropped, the genuine one arrived first"
    );
}

#[tokio::test]
async fn a_tenant_sync_is_held_newest_first_and_delivered_when_the_cnci_connects() {
    let s = scheduler();
    let (cnci, cn) = (Uuid::new_v4(), Uuid::new_v4());
    let mut agent = connect(&s, cn, role::AGENT).await;
    for subnets in [&["172.16.1.0/24"][..], &["172.16.1.0/24", "172.16.2.0/24"]] {
        send_event(
            &mut agent,
            event::TENANT_SYNC,
            cn,
            tenant_sync(cn, cnci, subnets),
        )
        .await;
    }
    barrier(&mut agent, cn).await;
    let mut c = connect(&s, cnci, role::CNCIAGENT).await;
    let got = next_frame(&mut c).await;
    assert_eq!(got.operand, event::TENANT_SYNC);
    assert!(
        String::from_utf8_lossy(&got.payload).contains("172.16.2.0/24"),
        "the newer snapshot replaced the older one"
    );
    // Only one held: the CNCI's next frame is what the agent sends now.
    send_tenant_added(&mut agent, cn, &cnci.to_string()).await;
    assert_eq!(next_frame(&mut c).await.operand, event::TENANT_ADDED);
}

#[tokio::test]
async fn a_cnci_announcing_itself_is_told_to_the_agents_that_use_it() {
    let s = scheduler();
    let (c1, c2, user, stranger, ctl) = (
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
    );
    let mut controller = connect(&s, ctl, role::CONTROLLER).await;
    let mut a = connect(&s, user, role::AGENT).await;
    let mut b = connect(&s, stranger, role::AGENT).await;
    send_tenant_added(&mut a, user, &c1.to_string()).await;
    send_event(
        &mut b,
        event::TENANT_SYNC,
        stranger,
        tenant_sync(stranger, c2, &[]),
    )
    .await;
    barrier(&mut a, user).await;
    barrier(&mut b, stranger).await;

    // C1 (re)connects: it gets what was held, and its announcement reaches A and the controller.
    let mut cnci1 = connect(&s, c1, role::CNCIAGENT).await;
    assert_eq!(next_frame(&mut cnci1).await.operand, event::TENANT_ADDED);
    // A forged announcement (another CNCI's UUID) is dropped.
    cnci1.1.frame(&instance_added(c2)).await.expect("send");
    cnci1.1.frame(&instance_added(c1)).await.expect("send");
    barrier(&mut cnci1, c1).await;
    let got = next_frame(&mut a).await;
    assert_eq!(got.operand, event::CONCENTRATOR_INSTANCE_ADDED);
    assert!(String::from_utf8_lossy(&got.payload).contains(&c1.to_string()));
    let seen: Vec<Frame> = barrier(&mut controller, ctl).await;
    let announced: Vec<String> = seen
        .iter()
        .filter(|f| f.operand == event::CONCENTRATOR_INSTANCE_ADDED && f.kind == kind::EVENT)
        .map(|f| String::from_utf8_lossy(&f.payload).into_owned())
        .collect();
    assert_eq!(announced.len(), 1, "{announced:?}");
    assert!(announced[0].contains(&c1.to_string()));

    // B never named C1: the first frame it gets is C2's announcement, not C1's.
    let mut cnci2 = connect(&s, c2, role::CNCIAGENT).await;
    assert_eq!(next_frame(&mut cnci2).await.operand, event::TENANT_SYNC);
    cnci2.1.frame(&instance_added(c2)).await.expect("send");
    let got = next_frame(&mut b).await;
    assert_eq!(got.operand, event::CONCENTRATOR_INSTANCE_ADDED);
    assert!(String::from_utf8_lossy(&got.payload).contains(&c2.to_string()));

    // A session that ended is forgotten: A reconnects, C1 announces, only the new A gets it
    // because it registered again.
    drop(a);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while s.is_connected(&user) {
        assert!(
            std::time::Instant::now() < deadline,
            "A's session never ended"
        );
        tokio::task::yield_now().await;
    }
    let mut a = connect(&s, user, role::AGENT).await;
    cnci1.1.frame(&instance_added(c1)).await.expect("send");
    barrier(&mut cnci1, c1).await;
    assert!(
        barrier(&mut a, user).await.is_empty(),
        "forgotten with the old session"
    );
}

#[tokio::test]
async fn a_uuid_in_use_is_only_taken_over_with_the_same_key() {
    let s = scheduler();
    let cnci = Uuid::new_v4();
    let mut first = try_connect(&s, cnci, identity(role::CNCIAGENT, "key one"))
        .await
        .expect("first");
    let refused = try_connect(&s, cnci, identity(role::CNCIAGENT | role::AGENT, "key two")).await;
    assert!(
        matches!(refused, Err(ConnError::Refused(e)) if e == error::CONNECTION_ABORTED),
        "{:?}",
        refused.err()
    );
    assert!(barrier(&mut first, cnci).await.is_empty(), "untouched");
    let mut bound = identity(role::CNCIAGENT, "key three");
    bound.uuids = vec![cnci];
    let _third = try_connect(&s, cnci, bound)
        .await
        .expect("a certificate naming the UUID");
    assert!(
        first.0.frame().await.map(|f| f.is_none()).unwrap_or(true),
        "replaced: closed"
    );
}

/// Connects a compute node and returns the configuration its CONNECTED carried.
async fn connected_configuration(s: &Scheduler) -> Vec<u8> {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let (sr, sw) = tokio::io::split(b);
    let sched = s.clone();
    tokio::spawn(async move {
        let _ = sched.serve(sr, sw, identity(role::AGENT, "cn")).await;
    });
    let (cr, cw) = tokio::io::split(a);
    let (mut r, mut w) = (FrameReader::new(cr), FrameWriter::new(cw));
    client_handshake(&mut r, &mut w, Uuid::new_v4(), role::AGENT, role::SCHEDULER)
        .await
        .expect("handshake")
        .configuration
}

#[tokio::test]
async fn connected_carries_the_default_and_only_a_valid_configure_replaces_it() {
    use ssntp::payloads::{Configure, Payload};
    let s = scheduler();
    let default = Configure::cluster_default().to_yaml();
    assert_eq!(connected_configuration(&s).await, default);

    let me = Uuid::new_v4();
    let mut controller = connect(&s, me, role::CONTROLLER).await;
    let bad = b"configure:\n  launcher:\n    compute_net: [10.1.0.0/99]\n".to_vec();
    controller
        .1
        .frame(&Frame::new(kind::COMMAND, command::CONFIGURE, me, bad))
        .await
        .expect("send");
    // (Node events about the compute nodes connected meanwhile are not the point here.)
    let errors = |frames: Vec<Frame>| -> Vec<Frame> {
        frames
            .into_iter()
            .filter(|f| f.kind == kind::ERROR)
            .collect()
    };
    let reply = errors(barrier(&mut controller, me).await);
    assert_eq!(reply.len(), 1, "{reply:?}");
    assert_eq!(
        (reply[0].kind, reply[0].operand),
        (kind::ERROR, error::INVALID_CONFIGURATION)
    );
    let reason = String::from_utf8_lossy(&reply[0].payload).into_owned();
    assert!(
        reason.starts_with("reason: ") && reason.contains("launcher.compute_net"),
        "{reason}"
    );
    assert_eq!(connected_configuration(&s).await, default, "unchanged");

    let good = b"configure:\n  controller:\n    ciao_port: 8889\n  launcher:\n    compute_net: [10.1.0.0/16]\n".to_vec();
    controller
        .1
        .frame(&Frame::new(
            kind::COMMAND,
            command::CONFIGURE,
            me,
            good.clone(),
        ))
        .await
        .expect("send");
    assert!(errors(barrier(&mut controller, me).await).is_empty());
    assert_eq!(
        connected_configuration(&s).await,
        good,
        "kept as sent, as Go does"
    );
}
