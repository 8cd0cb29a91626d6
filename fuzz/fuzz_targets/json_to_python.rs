#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| millrace_python::fuzz::json_to_python(data));
