#![no_main]
//! See `cairn_node::fuzzing::snapshot_stream` for what this covers and the properties checked.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| cairn_node::fuzzing::snapshot_stream(data));
