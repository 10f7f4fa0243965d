//! state.json bytes into amber's strict state parser: `Ok` or `Err`, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = amber::container::state::parse_state(data);
});
