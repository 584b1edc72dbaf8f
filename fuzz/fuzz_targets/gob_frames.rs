//! Feeds arbitrary bytes to the SSNTP stream decoder: it must return an error, never panic,
//! hang or allocate without bound. Run: `cd fuzz && cargo +nightly fuzz run gob_frames`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ssntp::frame::FrameDecoder::new().decode_stream(data);
});
