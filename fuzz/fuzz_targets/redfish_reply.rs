#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kindling_fuzz::redfish_reply(data));
