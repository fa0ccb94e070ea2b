#![no_main]
//! Fuzz target: `msakit_registry::fuzzing::watch_request` must never panic, whatever the bytes.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    msakit_registry::fuzzing::watch_request(data);
});
