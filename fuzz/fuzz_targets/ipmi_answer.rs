#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kindling_fuzz::ipmi_answer(data));
