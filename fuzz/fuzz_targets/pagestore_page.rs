//! cargo fuzz run pagestore_page: the page store's meta and page decoders
//! over arbitrary bytes, as opening a damaged page file reads them.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| corekv::fuzz::pagestore_page(data));
