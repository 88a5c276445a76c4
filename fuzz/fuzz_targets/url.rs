//! Endpoint URLs: never panic, and nothing printed of a parsed URL depends on its password:
//! its redacted form and its debug form are the same whatever the password is. (A password that
//! happens to equal part of the user name or host is not a leak; this property says so exactly.)
#![no_main]

use ferry_engine::{Endpoint, Role, Secret};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|url: &str| {
    match Endpoint::parse(Role::Source, url) {
        Ok(ep) => {
            let _ = ep.addr();
            if ep.password.is_some() {
                let mut other = ep.clone();
                other.password = Some(Secret::new("another password"));
                assert_eq!(ep.redacted_url(), other.redacted_url());
                assert_eq!(format!("{ep:?}"), format!("{other:?}"));
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
