//! The CONNECT/CONNECTED handshake of both sides, checked against the real scheduler's bytes.

use std::time::Duration;

use ssntp::conn::{
    client_handshake, server_handshake, ConnError, FrameReader, FrameWriter, ServerHello,
};
use ssntp::frame::{event, kind, role, Frame};
use uuid::Uuid;

fn vector(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../../shared/reference/ssntp-vectors/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

const LAUNCHER: &str = "a9e17000-0000-4000-8000-000000000002";
const SCHEDULER: &str = "d0f1a492-8867-4f8c-acd6-31d7d2dc5521";

fn scheduler_hello() -> ServerHello {
    ServerHello {
        uuid: SCHEDULER.parse().expect("uuid"),
        role: role::SCHEDULER,
        configuration: b"configure:\n  scheduler: {}\n".to_vec(),
    }
}

#[tokio::test]
async fn client_and_server_connect_then_exchange_frames() {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let (cr, cw) = tokio::io::split(client_io);
    let (sr, sw) = tokio::io::split(server_io);
    let server = tokio::spawn(async move {
        let (mut r, mut w) = (FrameReader::new(sr), FrameWriter::new(sw));
        let hello = server_handshake(
            &mut r,
            &mut w,
            role::AGENT | role::NETAGENT,
            &scheduler_hello(),
            Duration::from_secs(5),
        )
        .await
        .expect("server handshake");
        let frame = r.frame().await.expect("read").expect("a frame");
        w.frame(&Frame::new(
            kind::EVENT,
            event::NODE_CONNECTED,
            SCHEDULER.parse().expect("uuid"),
            b"x".to_vec(),
        ))
        .await
        .expect("write");
        (hello, frame)
    });
    let (mut r, mut w) = (FrameReader::new(cr), FrameWriter::new(cw));
    let me: Uuid = LAUNCHER.parse().expect("uuid");
    // A subset of the certificate's roles is accepted, as by the Go server.
    let hello = client_handshake(&mut r, &mut w, me, role::AGENT, role::SCHEDULER)
        .await
        .expect("client handshake");
    assert_eq!(hello.uuid.to_string(), SCHEDULER);
    assert_eq!(hello.role, role::SCHEDULER);
    assert_eq!(hello.configuration, scheduler_hello().configuration);
    w.frame(&Frame::new(
        kind::EVENT,
        event::TENANT_ADDED,
        me,
        b"tenant_added:\n".to_vec(),
    ))
    .await
    .expect("send");
    let reply = r.frame().await.expect("read").expect("frame");
    assert_eq!(reply.operand, event::NODE_CONNECTED);
    let (seen, frame) = server.await.expect("server task");
    assert_eq!(seen.uuid, me);
    assert_eq!(seen.role, role::AGENT);
    assert_eq!(frame.payload, b"tenant_added:\n");
}

#[tokio::test]
async fn our_connect_is_byte_identical_to_the_go_launcher() {
    // Replay the real scheduler's answer; what we sent must be the Go launcher's first bytes.
    let s2c = vector("02-launcher-s2c.bin");
    let mut sent = Vec::new();
    let mut r = FrameReader::new(&s2c[..]);
    let mut w = FrameWriter::new(&mut sent);
    let hello = client_handshake(
        &mut r,
        &mut w,
        LAUNCHER.parse().expect("uuid"),
        role::AGENT,
        role::SCHEDULER,
    )
    .await
    .expect("handshake with the recorded scheduler");
    assert_eq!(hello.uuid.to_string(), SCHEDULER);
    assert!(String::from_utf8_lossy(&hello.configuration).starts_with("configure:"));
    assert_eq!(sent, vector("01-launcher-c2s.bin")[..148]);
}

#[tokio::test]
async fn a_role_the_certificate_lacks_is_aborted_exactly_as_go_does() {
    let c2s = vector("09-rolemismatch-c2s.bin");
    let mut reply = Vec::new();
    let mut r = FrameReader::new(&c2s[..]);
    let mut w = FrameWriter::new(&mut reply);
    let result = server_handshake(
        &mut r,
        &mut w,
        role::CNCIAGENT,
        &scheduler_hello(),
        Duration::from_secs(5),
    )
    .await;
    assert!(matches!(result, Err(ConnError::Protocol(_))), "{result:?}");
    assert_eq!(
        reply,
        vector("10-rolemismatch-s2c.bin"),
        "ERROR ConnectionAborted as the scheduler sends it"
    );

    // And the client side sees the refusal as such.
    let mut sent = Vec::new();
    let mut r = FrameReader::new(&reply[..]);
    let mut w = FrameWriter::new(&mut sent);
    let refused = client_handshake(
        &mut r,
        &mut w,
        Uuid::new_v4(),
        role::CONTROLLER,
        role::SCHEDULER,
    )
    .await;
    assert!(matches!(refused, Err(ConnError::Refused(4))), "{refused:?}");
}

#[tokio::test]
async fn silence_gets_connection_failure_after_the_timeout() {
    let (client_io, server_io) = tokio::io::duplex(4096);
    let (sr, sw) = tokio::io::split(server_io);
    let mut captured = Vec::new();
    let (mut r, mut w) = (FrameReader::new(sr), FrameWriter::new(&mut captured));
    let started = std::time::Instant::now();
    let result = server_handshake(
        &mut r,
        &mut w,
        role::AGENT,
        &scheduler_hello(),
        Duration::from_millis(200),
    )
    .await;
    assert!(matches!(result, Err(ConnError::Timeout(_))), "{result:?}");
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(captured, vector("11-connect-timeout-s2c.bin"));
    drop((client_io, sw));
}

#[tokio::test]
async fn a_short_source_is_refused_instead_of_crashing() {
    // The Go scheduler panics on a Source shorter than 16 bytes; we answer ConnectionFailure.
    let mut stream = Vec::new();
    let mut enc = ssntp::frame::Encoder::new(ssntp::frame::FrameDefinitions::Go);
    enc.connect(
        &mut stream,
        &ssntp::frame::ConnectFrame {
            minor: 1,
            role: role::AGENT,
            source: vec![1, 2, 3],
            ..Default::default()
        },
    );
    let mut reply = Vec::new();
    let mut r = FrameReader::new(&stream[..]);
    let mut w = FrameWriter::new(&mut reply);
    assert!(server_handshake(
        &mut r,
        &mut w,
        role::AGENT,
        &scheduler_hello(),
        Duration::from_secs(1)
    )
    .await
    .is_err());
    assert_eq!(
        reply,
        vector("11-connect-timeout-s2c.bin"),
        "ConnectionFailure"
    );
}
