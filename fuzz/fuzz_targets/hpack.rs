//! Fuzz the HPACK decoder (src/http2/hpack.rs) with arbitrary header blocks on one connection.
//!
//! Beyond "never panics": the input is cut into several blocks decoded by one decoder (the
//! dynamic table carries over, as on a connection), the table size the decoder allows comes
//! from the first byte, and every field a block yields is re-encoded with the stateless
//! encoder and must decode to the same fields with a fresh decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::http2::hpack::{Decoder, Encoder};

fuzz_target!(|data: &[u8]| {
    let Some((&seed, rest)) = data.split_first() else {
        return;
    };
    let mut dec = Decoder::new(usize::from(seed) * 32);
    // Blocks separated by 0xff 0x00 (rare in real blocks), so inputs can hold several.
    for block in rest.split(|&b| b == 0xff).map(|b| b.strip_prefix(&[0][..]).unwrap_or(b)) {
        let mut fields: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        if dec.decode(block, |n, v| fields.push((n.to_vec(), v.to_vec()))).is_err() {
            return; // a connection error: the connection would end here
        }
        let mut enc = Encoder::new();
        let mut out = Vec::new();
        enc.begin_block(&mut out);
        for (n, v) in &fields {
            enc.field(n, v, &mut out);
        }
        let mut again = Vec::new();
        Decoder::new(4096)
            .decode(&out, |n, v| again.push((n.to_vec(), v.to_vec())))
            .expect("what the encoder writes decodes");
        assert_eq!(again, fields);
    }
});
