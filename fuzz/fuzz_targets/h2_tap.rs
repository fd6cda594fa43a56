//! Fuzz `H2Tap::feed` with arbitrary client byte streams, delivered in arbitrary pieces.
//!
//! Beyond "never panics", it checks the property the server relies on when it copies reads
//! into the tap: the state depends only on the bytes, not on how they were split; and a final
//! state is repeated by later calls. The first input byte picks the piece sizes; the rest is
//! the stream, prefixed with the client preface half of the time so that the frame and HPACK
//! code is reached. Seed corpus: `tests/fixtures/http/*.bin` (the HTTP/2 captures).
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::fingerprint::h2::PREFACE;
use portcullis::fingerprint::{H2State, H2Tap};

fuzz_target!(|data: &[u8]| {
    let Some((&seed, rest)) = data.split_first() else {
        return;
    };
    let stream: Vec<u8> = if seed & 1 == 1 && !rest.starts_with(PREFACE) {
        [PREFACE.as_slice(), rest].concat()
    } else {
        rest.to_vec()
    };

    let whole = H2Tap::new().feed(&stream);
    if let H2State::Done(fp) = &whole {
        assert_eq!(fp.akamai.matches('|').count(), 3, "{}", fp.akamai);
        assert_eq!(fp.hash.len(), 12);
    }

    // The same bytes in pieces of 1..=16 bytes (sizes cycle from the seed).
    let mut tap = H2Tap::new();
    let mut state = H2State::NeedMore;
    let mut at = 0;
    let mut size = usize::from(seed >> 4) + 1;
    while at < stream.len() {
        let end = (at + size).min(stream.len());
        state = tap.feed(&stream[at..end]);
        at = end;
        size = size % 16 + 1;
    }
    assert_eq!(state, whole);
    if whole != H2State::NeedMore {
        assert_eq!(tap.feed(b"more"), whole);
    }
});
