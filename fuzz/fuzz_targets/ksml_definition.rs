#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| millrace_stream::fuzz::ksml_definition(data));
