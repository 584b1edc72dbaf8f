//! Path tracing as the Go scheduler does it (reference/ssntp.md §6): the scheduler appends its
//! own node with its receive time and stamps the send time when it forwards. Checked byte for
//! byte against the capture of a traced TenantAdded before (12) and after (13) the Go scheduler.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ssntp::frame::{
    role, Encoder, Frame, FrameDecoder, FrameDefinitions, FrameTrace, GobTime, Incoming, TraceNode,
    TRACE_FLAG,
};
use uuid::Uuid;

/// The Go scheduler of the capture.
const SCHEDULER: Uuid = Uuid::from_u128(0xd0f1a492_8867_4f8c_acd6_31d7d2dc5521);

/// Where the forwarded Frame's type definitions start in 13 (after CONNECTED).
const FRAME_DEFS_AT: usize = 768;

fn vector(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/reference/ssntp-vectors")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn frames(stream: &[u8]) -> Vec<Frame> {
    FrameDecoder::new()
        .decode_stream(stream)
        .expect("decode")
        .into_iter()
        .filter_map(|m| match m {
            Incoming::Frame(f) => Some(f),
            _ => None,
        })
        .collect()
}

fn encode(frame: &Frame) -> Vec<u8> {
    let mut out = Vec::new();
    Encoder::new(FrameDefinitions::Go).frame(&mut out, frame);
    out
}

/// A Go time of the capture: seconds since year 1 and nanoseconds, as SystemTime.
fn go_time(secs: u64, nanos: u32) -> SystemTime {
    UNIX_EPOCH + Duration::new(secs - 62_135_596_800, nanos)
}

#[test]
fn the_schedulers_path_node_is_the_go_schedulers_byte_for_byte() {
    let mut frame = frames(&vector("12-traced-launcher-c2s.bin")).remove(0);
    assert!(frame.path_traced());
    // The Go scheduler's receive and send times, from 13.
    let rx = GobTime::local_utc(go_time(0x0e_e296_7c01, 0x1d99_9fff));
    let tx = GobTime::local_utc(go_time(0x0e_e296_7c01, 0x1d9c_f3fa));
    frame.record_receive(SCHEDULER, role::SCHEDULER, rx);
    frame.record_send(&SCHEDULER, tx);
    assert_eq!(
        encode(&frame),
        vector("13-traced-cnci-s2c.bin")[FRAME_DEFS_AT..].to_vec(),
        "the forwarded frame differs from the Go scheduler's"
    );
}

#[test]
fn our_path_node_decodes_back_with_its_times() {
    let mut frame = frames(&vector("12-traced-launcher-c2s.bin")).remove(0);
    let sent = frame.trace.clone().expect("trace");
    let before = SystemTime::now();
    frame.record_receive(SCHEDULER, role::SCHEDULER, GobTime::now());
    frame.record_send(&SCHEDULER, GobTime::now());
    let after = SystemTime::now();

    let back = frames(&encode(&frame)).remove(0);
    let trace = back.trace.expect("trace survives the round trip");
    assert_eq!(trace.path_length, 2);
    assert_eq!(
        trace.path[0], sent.path[0],
        "the sender's node is untouched"
    );
    assert_eq!(trace.label, sent.label);
    let node = &trace.path[1];
    assert_eq!(node.uuid, SCHEDULER.as_bytes().to_vec());
    assert_eq!(node.role, role::SCHEDULER);
    let rx = node
        .rx
        .as_ref()
        .and_then(GobTime::to_system_time)
        .expect("rx");
    let tx = node
        .tx
        .as_ref()
        .and_then(GobTime::to_system_time)
        .expect("tx");
    assert!(before <= rx && rx <= tx && tx <= after, "{rx:?} {tx:?}");
    // Go's time.Now() on a UTC host: zone offset 0 minutes, not the UTC marker.
    assert_eq!(
        node.rx.as_ref().map(|t| t.0[13..].to_vec()),
        Some(vec![0, 0])
    );
}

#[test]
fn go_time_round_trips_and_keeps_the_utc_marker_apart() {
    let t = go_time(0x0e_d0c1_f8c0, 123_456_789);
    // 12's StartTimestamp was made with time.UTC.
    assert_eq!(
        GobTime::from_system_time(t).0,
        [1, 0, 0, 0, 0x0e, 0xd0, 0xc1, 0xf8, 0xc0, 0x07, 0x5b, 0xcd, 0x15, 0xff, 0xff]
    );
    assert_eq!(GobTime::local_utc(t).to_system_time(), Some(t));
    assert_eq!(GobTime(vec![9; 15]).to_system_time(), None);
    assert_eq!(GobTime(vec![1, 0, 0]).to_system_time(), None);
}

fn traced(path: Vec<TraceNode>, path_length: u8) -> Frame {
    let mut f = Frame::new(3, 0, Uuid::from_u128(7), b"x: 1\n".to_vec());
    f.major = TRACE_FLAG;
    f.trace = Some(FrameTrace {
        label: b"l".to_vec(),
        path,
        path_length,
        ..FrameTrace::default()
    });
    f
}

fn node(n: u128) -> TraceNode {
    TraceNode {
        uuid: Uuid::from_u128(n).as_bytes().to_vec(),
        role: role::AGENT,
        tx: Some(GobTime::now()),
        rx: None,
    }
}

#[test]
fn frames_without_path_tracing_are_left_alone() {
    // A label-only trace (no flag), and the flag without a trace.
    let mut label_only = traced(vec![node(1)], 1);
    label_only.major = 0;
    let mut flag_only = Frame::new(3, 0, Uuid::from_u128(7), Vec::new());
    flag_only.major = TRACE_FLAG;
    for original in [label_only, flag_only] {
        let mut f = original.clone();
        f.record_receive(SCHEDULER, role::SCHEDULER, GobTime::now());
        f.record_send(&SCHEDULER, GobTime::now());
        assert_eq!(f, original);
    }
}

#[test]
fn the_send_time_goes_only_on_our_own_node() {
    let mut f = traced(vec![node(1)], 1);
    let original = f.clone();
    f.record_send(&SCHEDULER, GobTime::now());
    assert_eq!(f, original, "another hop's node is never stamped");
}

#[test]
fn a_wrong_path_length_is_corrected_and_a_full_one_wraps_like_go() {
    let mut f = traced(vec![node(1), node(2)], 9);
    f.record_receive(SCHEDULER, role::SCHEDULER, GobTime::now());
    assert_eq!(f.trace.as_ref().map(|t| t.path_length), Some(3));

    let mut f = traced((0..255).map(node).collect(), 255);
    f.record_receive(SCHEDULER, role::SCHEDULER, GobTime::now());
    f.record_send(&SCHEDULER, GobTime::now());
    let trace = f.trace.as_ref().expect("trace");
    // Go's uint8 PathLength++ wraps to 0; the 256th node is ours and carries both times.
    assert_eq!((trace.path.len(), trace.path_length), (256, 0));
    assert!(trace.path[255].tx.is_some() && trace.path[255].rx.is_some());
    let back = frames(&encode(&f)).remove(0);
    assert_eq!(back, f);
}
