//! Property tests: arbitrary frames survive encode/decode; arbitrary bytes never panic the
//! decoder (the same entry point as the cargo-fuzz target in `fuzz/`).

use proptest::prelude::*;
use ssntp::frame::{
    ConnectFrame, ConnectedFrame, Encoder, Frame, FrameDecoder, FrameDefinitions, FrameTrace,
    GobTime, Incoming, TraceNode,
};

fn time() -> impl Strategy<Value = Option<GobTime>> {
    prop::option::of(prop::collection::vec(any::<u8>(), 1..16).prop_map(GobTime))
}

fn trace() -> impl Strategy<Value = FrameTrace> {
    let node = (
        prop::collection::vec(any::<u8>(), 0..20),
        any::<u32>(),
        time(),
        time(),
    )
        .prop_map(|(uuid, role, tx, rx)| TraceNode { uuid, role, tx, rx });
    (
        prop::collection::vec(any::<u8>(), 0..20),
        time(),
        time(),
        any::<u8>(),
        prop::collection::vec(node, 0..4),
    )
        .prop_map(|(label, start, end, path_length, path)| FrameTrace {
            label,
            start,
            end,
            path_length,
            path,
        })
}

fn frame() -> impl Strategy<Value = Frame> {
    (
        any::<[u8; 4]>(),
        any::<[u8; 16]>(),
        any::<u32>(),
        prop::option::of(trace()),
        prop::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(|(h, origin, payload_length, trace, payload)| Frame {
            major: h[0],
            minor: h[1],
            kind: h[2],
            operand: h[3],
            origin,
            payload_length,
            trace,
            payload,
        })
}

proptest! {
    #[test]
    fn frames_round_trip(frames in prop::collection::vec(frame(), 1..6),
                         role in any::<u32>(), source in prop::collection::vec(any::<u8>(), 0..20)) {
        let connect = ConnectFrame { major: 0, minor: 1, kind: 0, operand: 0, role, source: source.clone(), destination: vec![0; 16] };
        let mut enc = Encoder::new(FrameDefinitions::Go);
        let mut out = Vec::new();
        enc.connect(&mut out, &connect);
        for f in &frames {
            enc.frame(&mut out, f);
        }
        let decoded = FrameDecoder::new().decode_stream(&out).expect("decode");
        prop_assert_eq!(&decoded[0], &Incoming::Connect(connect));
        for (got, want) in decoded[1..].iter().zip(&frames) {
            prop_assert_eq!(got, &Incoming::Frame(want.clone()));
        }

        // The server's direction, and the minimal definitions (which drop traces).
        let connected = ConnectedFrame { minor: 1, kind: 1, role, source, payload: b"configure:\n".to_vec(), payload_length: 11, ..Default::default() };
        let mut enc = Encoder::new(FrameDefinitions::Minimal);
        let mut out = Vec::new();
        enc.connected(&mut out, &connected);
        for f in &frames {
            enc.frame(&mut out, f);
        }
        let decoded = FrameDecoder::new().decode_stream(&out).expect("decode");
        prop_assert_eq!(&decoded[0], &Incoming::Connected(connected));
        for (got, want) in decoded[1..].iter().zip(&frames) {
            let mut want = want.clone();
            want.trace = None;
            prop_assert_eq!(got, &Incoming::Frame(want));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = FrameDecoder::new().decode_stream(&bytes);
        let _ = FrameDecoder::new().decode(&bytes);
    }

    #[test]
    fn corrupted_real_streams_never_panic(pos in 0usize..1399, byte in any::<u8>(), cut in 0usize..1399) {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/reference/ssntp-vectors/01-launcher-c2s.bin");
        let mut stream = std::fs::read(path).expect("vector");
        let pos = pos % stream.len();
        stream[pos] = byte;
        stream.truncate(cut.max(1));
        let _ = FrameDecoder::new().decode_stream(&stream);
    }
}

#[test]
fn hostile_lengths_are_refused_without_allocating() {
    // A message claiming 2^60 bytes, a byte string claiming more than the message holds,
    // a self-referencing slice type.
    let huge = [0xF8, 0x10, 0, 0, 0, 0, 0, 0, 0];
    assert!(FrameDecoder::new().decode_stream(&huge).is_err());
    let mut dec = FrameDecoder::new();
    assert!(dec.decode(&[0xFF, 0x82, 0x01, 0xFE, 0xFF, 0xFF]).is_err());
    // type -65 = slice of itself, then a value nesting it forever.
    let mut def = Vec::new();
    ssntp::gob::encode_definition(
        &mut def,
        65,
        &ssntp::gob::WireType::Slice {
            name: "S".into(),
            elem: 65,
        },
    );
    let mut dec = FrameDecoder::new();
    assert!(dec.decode(&def).expect("definition").is_none());
    let nested: Vec<u8> = [0xFF, 0x82, 0x00]
        .iter()
        .copied()
        .chain(std::iter::repeat_n(1u8, 64))
        .collect();
    assert!(dec.decode(&nested).is_err());
}
