//! The supervision policy's TOML parser on arbitrary text: errors, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_supervisor::policy::PolicyConfig;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = PolicyConfig::from_toml_str(text);
    }
});
