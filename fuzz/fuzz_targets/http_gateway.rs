#![no_main]
//! See `cairn_node::fuzzing::http_gateway` for what this covers and the properties checked.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| cairn_node::fuzzing::http_gateway(data));
