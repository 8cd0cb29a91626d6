#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| millrace_log::fuzz::open_damaged_journal(data));
