//! cargo fuzz run frame_decoder: the native protocol's framing and request
//! decoding, as the server sees a client's byte stream.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| corekv::fuzz::frame_decoder(data));
