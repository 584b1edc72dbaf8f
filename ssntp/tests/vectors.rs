//! The captured streams of the real Go ciao-scheduler (reference/ssntp-vectors): every one is
//! decoded into typed frames, and re-encoding those frames reproduces it byte for byte.

use std::path::PathBuf;

use ssntp::frame::{
    command, error, event, kind, role, status, Encoder, FrameDecoder, FrameDefinitions, Incoming,
};

fn vector(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/reference/ssntp-vectors")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn decode(name: &str) -> Vec<Incoming> {
    FrameDecoder::new()
        .decode_stream(&vector(name))
        .unwrap_or_else(|e| panic!("decode {name}: {e}"))
}

fn reencode(frames: &[Incoming], defs: FrameDefinitions) -> Vec<u8> {
    let mut enc = Encoder::new(defs);
    let mut out = Vec::new();
    for f in frames {
        match f {
            Incoming::Connect(c) => enc.connect(&mut out, c),
            Incoming::Connected(c) => enc.connected(&mut out, c),
            Incoming::Frame(fr) => enc.frame(&mut out, fr),
        }
    }
    out
}

/// (kind, operand) of each frame after the handshake.
fn ops(frames: &[Incoming]) -> Vec<(u8, u8)> {
    frames
        .iter()
        .filter_map(|f| match f {
            Incoming::Frame(fr) => Some((fr.kind, fr.operand)),
            _ => None,
        })
        .collect()
}

const STREAMS: &[(&str, FrameDefinitions)] = &[
    ("01-launcher-c2s.bin", FrameDefinitions::Go),
    ("02-launcher-s2c.bin", FrameDefinitions::Go),
    ("03-cnci-c2s.bin", FrameDefinitions::Go),
    ("04-cnci-s2c.bin", FrameDefinitions::Go),
    ("05-controller-c2s.bin", FrameDefinitions::Go),
    ("06-controller-s2c.bin", FrameDefinitions::Go),
    ("07-real-cnci-agent-c2s.bin", FrameDefinitions::Go),
    ("08-real-cnci-agent-s2c.bin", FrameDefinitions::Go),
    ("09-rolemismatch-c2s.bin", FrameDefinitions::Go),
    ("10-rolemismatch-s2c.bin", FrameDefinitions::Go),
    ("11-connect-timeout-s2c.bin", FrameDefinitions::Go),
    ("12-traced-launcher-c2s.bin", FrameDefinitions::Go),
    ("13-traced-cnci-s2c.bin", FrameDefinitions::Go),
    ("p01-minimal-launcher-c2s.bin", FrameDefinitions::Minimal),
    (
        "p02-go-identical-launcher-first-frame-tenant-added.bin",
        FrameDefinitions::Go,
    ),
];

#[test]
fn every_stream_is_reproduced_byte_for_byte() {
    for (name, defs) in STREAMS {
        let frames = decode(name);
        assert!(!frames.is_empty(), "{name}");
        assert_eq!(
            reencode(&frames, *defs),
            vector(name),
            "{name} re-encoded differs"
        );
    }
}

#[test]
fn streams_decode_to_the_expected_frames() {
    let launcher = decode("01-launcher-c2s.bin");
    let Incoming::Connect(c) = &launcher[0] else {
        panic!("CONNECT first")
    };
    assert_eq!(
        (c.kind, c.operand, c.role, c.minor),
        (kind::COMMAND, command::CONNECT, role::AGENT, 1)
    );
    assert_eq!(
        uuid::Uuid::from_slice(&c.source).expect("uuid").to_string(),
        "a9e17000-0000-4000-8000-000000000002"
    );
    assert_eq!(c.destination, vec![0u8; 16]);
    assert_eq!(
        ops(&launcher),
        [
            (kind::STATUS, status::READY),
            (kind::EVENT, event::TENANT_ADDED),
            (kind::EVENT, event::TENANT_REMOVED)
        ]
    );
    let Incoming::Frame(added) = &launcher[2] else {
        panic!("frame")
    };
    assert!(String::from_utf8_lossy(&added.payload).starts_with("tenant_added:\n"));
    assert_eq!(added.payload_length as usize, added.payload.len());

    let Incoming::Connected(c) = &decode("02-launcher-s2c.bin")[0] else {
        panic!("CONNECTED first")
    };
    assert_eq!(
        (c.kind, c.operand, c.role),
        (kind::STATUS, status::CONNECTED, role::SCHEDULER)
    );
    assert!(String::from_utf8_lossy(&c.payload).starts_with("configure:"));

    assert_eq!(
        ops(&decode("04-cnci-s2c.bin")),
        [
            (kind::EVENT, event::TENANT_ADDED),
            (kind::EVENT, event::TENANT_REMOVED),
            (kind::COMMAND, command::ASSIGN_PUBLIC_IP),
            (kind::COMMAND, command::RELEASE_PUBLIC_IP),
            (kind::COMMAND, command::REFRESH_CNCI),
        ]
    );
    assert_eq!(
        ops(&decode("06-controller-s2c.bin")),
        [
            (kind::EVENT, event::CONCENTRATOR_INSTANCE_ADDED),
            (kind::EVENT, event::NODE_CONNECTED),
            (kind::EVENT, event::PUBLIC_IP_ASSIGNED),
            (kind::EVENT, event::PUBLIC_IP_UNASSIGNED),
            (kind::ERROR, error::ASSIGN_PUBLIC_IP_FAILURE),
            (kind::EVENT, event::NODE_DISCONNECTED),
        ]
    );
    let Incoming::Connect(c) = &decode("09-rolemismatch-c2s.bin")[0] else {
        panic!("CONNECT")
    };
    assert_eq!(c.role, role::CONTROLLER);
    for (name, code) in [
        ("10-rolemismatch-s2c.bin", error::CONNECTION_ABORTED),
        ("11-connect-timeout-s2c.bin", error::CONNECTION_FAILURE),
    ] {
        let frames = decode(name);
        assert_eq!(ops(&frames), [(kind::ERROR, code)], "{name}");
        let Incoming::Frame(f) = &frames[0] else {
            panic!("frame")
        };
        assert_eq!(
            (f.origin, f.payload.len(), f.minor),
            ([0u8; 16], 0, 1),
            "{name}"
        );
    }
}

#[test]
fn traced_frames_carry_their_path() {
    let sent = decode("12-traced-launcher-c2s.bin");
    let traced: Vec<_> = sent
        .iter()
        .filter_map(|f| match f {
            Incoming::Frame(fr) if fr.trace.is_some() => Some(fr.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(traced.len(), 1);
    let frame = &traced[0];
    assert_eq!(frame.major, 0x80);
    assert_eq!(frame.version(), 0);
    let trace = frame.trace.as_ref().expect("trace");
    assert_eq!(trace.label, b"trace-demo");
    assert_eq!(trace.path_length, 1);
    assert_eq!(trace.path.len(), 1);
    assert_eq!(trace.path[0].role, role::AGENT);
    let start = trace.start.as_ref().expect("start time");
    assert_eq!(start.0[0], 1, "Go time binary version");

    let forwarded = decode("13-traced-cnci-s2c.bin");
    let hops = forwarded
        .iter()
        .find_map(|f| match f {
            Incoming::Frame(fr) => fr.trace.as_ref().map(|t| (t.path_length, t.path.len())),
            _ => None,
        })
        .expect("traced frame");
    assert_eq!(hops, (2, 2), "the scheduler appended its hop");
}

#[test]
fn single_messages_decode_with_their_stream_definitions() {
    let mut connect = vector("m01-connect-typedef-ConnectFrame.bin");
    connect.extend(vector("m02-connect-value-agent.bin"));
    assert!(matches!(
        FrameDecoder::new()
            .decode_stream(&connect)
            .expect("m01+m02")[..],
        [Incoming::Connect(_)]
    ));
    for value in [
        "m04-ready-value.bin",
        "m05-tenant-added-value.bin",
        "m06-tenant-removed-value.bin",
        "m08-tenant-added-forwarded-value.bin",
        "m09-assign-public-ip-forwarded-value.bin",
        "m10-refresh-cnci-forwarded-value.bin",
        "m11-real-cnci-added-value.bin",
        "m12-error-connection-aborted-value.bin",
    ] {
        let mut stream = vector("m03-frame-typedefs-go.bin");
        stream.extend(vector(value));
        let frames = FrameDecoder::new()
            .decode_stream(&stream)
            .unwrap_or_else(|e| panic!("{value}: {e}"));
        assert!(matches!(frames[..], [Incoming::Frame(_)]), "{value}");
        // And the value re-encodes to the same bytes after the same definitions.
        assert_eq!(reencode(&frames, FrameDefinitions::Go), stream, "{value}");
    }
    assert_eq!(
        vector("m05-tenant-added-value.bin"),
        vector("m08-tenant-added-forwarded-value.bin")
    );
    assert_eq!(vector("m12-error-connection-aborted-value.bin").len(), 28);
}
