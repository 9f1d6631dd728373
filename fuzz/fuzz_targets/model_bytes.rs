#![no_main]
//! See fuzz/README.md; the function it calls says what is covered.

use libfuzzer_sys::fuzz_target;

fuzz_target!(init: cvedge::fuzzing::install_panic_hook(), |data: &[u8]| cvedge::fuzzing::model_bytes(data));
