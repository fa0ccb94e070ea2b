#![no_main]
//! Fuzz target: `msakit_config_server::fuzzing::spring_path` must never panic, whatever the bytes.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    msakit_config_server::fuzzing::spring_path(data);
});
