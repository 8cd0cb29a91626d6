#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| millrace_segments::fuzz::druid_record(data));
