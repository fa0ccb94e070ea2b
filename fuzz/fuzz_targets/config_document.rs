#![no_main]
//! Fuzz target: `msakit_config_server::fuzzing::document` must never panic, whatever the bytes.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    msakit_config_server::fuzzing::document(data);
});
