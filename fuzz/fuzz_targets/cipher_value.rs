#![no_main]
//! Fuzz target: `msakit_config_server::fuzzing::cipher_value` must never panic, whatever the bytes.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    msakit_config_server::fuzzing::cipher_value(data);
});
