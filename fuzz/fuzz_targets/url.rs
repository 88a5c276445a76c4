//! Endpoint URLs: never panic, and a parsed URL's redacted form never shows its password.
#![no_main]

use ferry_engine::{Endpoint, Role};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|url: &str| {
    if let Ok(ep) = Endpoint::parse(Role::Source, url) {
        let redacted = ep.redacted_url();
        let _ = ep.addr();
        if let Some(pw) = ep.password.as_ref().map(|p| p.expose()) {
            // A password of asterisks looks like the mask itself: nothing to learn there.
            if pw.chars().any(|c| c != '*') {
                assert!(!redacted.contains(&format!(":{pw}@")), "{redacted}");
            }
        }
    }
});
