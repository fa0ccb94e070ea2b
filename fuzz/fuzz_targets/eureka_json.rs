#![no_main]
//! Fuzz target: `msakit_registry::fuzzing::eureka_json` must never panic, whatever the bytes.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    msakit_registry::fuzzing::eureka_json(data);
});
