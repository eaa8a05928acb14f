//! cargo fuzz run snapshot_file: the snapshot reader over arbitrary bytes, as
//! a file from disk and as the records inside a well-formed file.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| corekv::fuzz::snapshot_file(data));
