//! config.json bytes into amber's config entry point: decoding and every validation rule must
//! return `Ok` or `Err`, never panic, overflow or hang, whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let _ = amber::spec::parse_config(data, Path::new("/fuzz/bundle/config.json"));
});
