//! cargo fuzz run wal_record: WAL segment header and record decoding at every
//! offset, as recovery reads a damaged segment.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| corekv::fuzz::wal_record(data));
