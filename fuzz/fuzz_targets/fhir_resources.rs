#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| coresponse_gateway_fuzz::fhir_resources(data));
