//! Fuzz `parse_client_hello` with arbitrary stream prefixes.
//!
//! Beyond "never panics", it checks the properties the server relies on: a complete hello
//! takes no more bytes than were given, re-parses the same from exactly those bytes, and
//! fingerprints without panicking; and an input cut short of `consumed` is never complete.
//! Seed corpus: `tests/fixtures/clienthello/*.bin`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::fingerprint::{parse_client_hello, Parsed};

fuzz_target!(|data: &[u8]| {
    let Ok(Parsed::Complete { hello, consumed }) = parse_client_hello(data) else {
        return;
    };
    assert!(consumed <= data.len());
    let _ = (
        hello.ja3(),
        hello.ja4(),
        hello.tls_version_label(),
        hello.alpn_first(),
    );
    match parse_client_hello(&data[..consumed]) {
        Ok(Parsed::Complete {
            hello: again,
            consumed: c,
        }) => {
            assert_eq!(c, consumed);
            assert_eq!(again, hello);
        }
        other => panic!("the consumed bytes alone gave {other:?}"),
    }
    if consumed > 0 {
        assert_eq!(
            parse_client_hello(&data[..consumed - 1]),
            Ok(Parsed::Incomplete)
        );
    }
});
