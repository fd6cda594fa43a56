//! JA4: the FoxIO TLS client fingerprint (FoxIO-LLC/ja4, `technical_details/JA4.md`,
//! BSD-3-Clause), and its raw (`_r`), original-order (`_o`) and raw original-order (`_ro`) forms.
//!
//! Computed once per connection from the parsed [`ClientHello`], next to JA3; JA4 is the
//! fingerprint the limiter keys on because it is stable under Chrome's extension shuffle.
//!
//! ```text
//! t13d1516h2_8daaf6152771_e5627efa2ab1
//! a: t | version | d (SNI ext present) or i | #ciphers | #extensions | ALPN first+last char
//! b: sha256("002f,0035,...") of the sorted cipher list, first 12 hex digits
//! c: sha256("0005,000a,..._0403,0804,...") of the sorted extensions without SNI (0000) and
//!    ALPN (0010), then `_` and the signature algorithms in the order sent
//! ```
//!
//! GREASE values are dropped everywhere: ciphers, extensions, supported_versions and signature
//! algorithms. Counts include SNI and ALPN and are capped at 99. An empty list hashes to
//! `000000000000`; with no signature algorithms part c's input has no trailing `_`.
//!
//! The original-order forms keep ciphers and extensions as sent (less GREASE) and keep SNI and
//! ALPN in the extension list. For ALPN values whose first or last byte is not ASCII
//! alphanumeric we follow the current spec (first and last hex digit of the value), where the
//! FoxIO tool at the time of writing prints `99`; `docs/fingerprints.md` has the details.

use super::client_hello::ClientHello;
use super::encode::{hex_digit, push_count2, push_hex4_list, push_sha256_12, EMPTY_HASH12};
use super::grease::is_grease;
use std::ops::Range;

const EXT_SERVER_NAME: u16 = 0x0000;
const EXT_ALPN: u16 = 0x0010;

/// JA4 and its three companion forms.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Ja4 {
    /// `a_b_c` with sorted, hashed lists: the fingerprint.
    pub ja4: String,
    /// Sorted lists, not hashed.
    pub ja4_r: String,
    /// Original order, hashed.
    pub ja4_o: String,
    /// Original order, not hashed.
    pub ja4_ro: String,
}

/// The 2-character JA4 version label (spec, "TLS and DTLS Version"); `"00"` when unknown.
pub fn version_label(version: u16) -> &'static str {
    match version {
        0x0304 => "13",
        0x0303 => "12",
        0x0302 => "11",
        0x0301 => "10",
        0x0300 => "s3",
        0x0002 => "s2",
        0xfeff => "d1",
        0xfefd => "d2",
        0xfefc => "d3",
        _ => "00",
    }
}

/// The two ALPN characters of part a (spec, "ALPN Extension Value"):
/// `00` without a first value or when it is empty; its first and last bytes when both are
/// ASCII alphanumeric (one byte is used twice); otherwise the first and last hex digit of the
/// value's hex form, i.e. the high nibble of the first byte and the low nibble of the last.
fn push_alpn_chars(out: &mut String, first: Option<&[u8]>) {
    match first {
        Some(&[head, .., last]) | Some(&[head @ last]) => {
            if head.is_ascii_alphanumeric() && last.is_ascii_alphanumeric() {
                out.push(char::from(head));
                out.push(char::from(last));
            } else {
                out.push(hex_digit(head >> 4));
                out.push(hex_digit(last));
            }
        }
        _ => out.push_str("00"),
    }
}

/// Part a, e.g. `t13d1516h2`.
fn part_a(hello: &ClientHello, ciphers: usize, extensions: &[u16]) -> String {
    let mut a = String::with_capacity(10);
    // Always TLS over TCP here: QUIC ('q') and DTLS ('d') never reach this proxy.
    a.push('t');
    a.push_str(hello.tls_version_label());
    a.push(if extensions.contains(&EXT_SERVER_NAME) {
        'd'
    } else {
        'i'
    });
    push_count2(&mut a, ciphers);
    push_count2(&mut a, extensions.len());
    push_alpn_chars(&mut a, hello.alpn_first());
    a
}

/// A raw form `a_ciphers_extensions[_sigalgs]`, with where the hash inputs of parts b and c
/// lie in it.
struct Raw {
    text: String,
    b: Range<usize>,
    c: Range<usize>,
}

fn raw(a: &str, ciphers: &[u16], extensions: &[u16], sigalgs: &[u16]) -> Raw {
    let values = ciphers.len() + extensions.len() + sigalgs.len();
    let mut text = String::with_capacity(a.len() + 3 + values * 5);
    text.push_str(a);
    text.push('_');
    let b_start = text.len();
    push_hex4_list(&mut text, ciphers);
    let b = b_start..text.len();
    text.push('_');
    let c_start = text.len();
    push_hex4_list(&mut text, extensions);
    if !sigalgs.is_empty() {
        text.push('_');
        push_hex4_list(&mut text, sigalgs);
    }
    let c = c_start..text.len();
    Raw { text, b, c }
}

/// The hashed form `a_hash(b)_hash(c)` of a raw form; an empty list gives `000000000000`.
fn hashed(a: &str, raw: &Raw, no_ciphers: bool, no_extensions: bool) -> String {
    let mut out = String::with_capacity(a.len() + 26);
    out.push_str(a);
    out.push('_');
    match raw.text.get(raw.b.clone()) {
        Some(b) if !no_ciphers => push_sha256_12(&mut out, b),
        _ => out.push_str(EMPTY_HASH12),
    }
    out.push('_');
    match raw.text.get(raw.c.clone()) {
        Some(c) if !no_extensions => push_sha256_12(&mut out, c),
        _ => out.push_str(EMPTY_HASH12),
    }
    out
}

/// Compute JA4, JA4_r, JA4_o and JA4_ro for `hello`.
pub fn compute(hello: &ClientHello) -> Ja4 {
    let not_grease = |v: &u16| !is_grease(*v);
    let mut ciphers: Vec<u16> = hello
        .cipher_suites
        .iter()
        .copied()
        .filter(not_grease)
        .collect();
    let mut extensions: Vec<u16> = hello
        .extensions
        .iter()
        .copied()
        .filter(not_grease)
        .collect();
    let sigalgs: Vec<u16> = hello
        .signature_algorithms
        .iter()
        .copied()
        .filter(not_grease)
        .collect();

    let a = part_a(hello, ciphers.len(), &extensions);

    // Original order: SNI and ALPN stay in the extension list.
    let original = raw(&a, &ciphers, &extensions, &sigalgs);
    let ja4_o = hashed(&a, &original, ciphers.is_empty(), extensions.is_empty());

    // Sorted: SNI and ALPN leave the extension list (they are in part a already).
    ciphers.sort_unstable();
    extensions.retain(|&e| e != EXT_SERVER_NAME && e != EXT_ALPN);
    extensions.sort_unstable();
    let sorted = raw(&a, &ciphers, &extensions, &sigalgs);
    let ja4 = hashed(&a, &sorted, ciphers.is_empty(), extensions.is_empty());

    Ja4 {
        ja4,
        ja4_r: sorted.text,
        ja4_o,
        ja4_ro: original.text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alpn(value: &[u8]) -> String {
        let mut s = String::new();
        push_alpn_chars(&mut s, Some(value));
        s
    }

    #[test]
    fn alpn_chars_follow_the_spec_examples() {
        // technical_details/JA4.md, "ALPN Extension Value".
        assert_eq!(alpn(b"h2"), "h2");
        assert_eq!(alpn(b"http/1.1"), "h1");
        assert_eq!(alpn(b"x"), "xx");
        assert_eq!(alpn(&[0xab]), "ab");
        assert_eq!(alpn(&[0xab, 0xcd]), "ad");
        assert_eq!(alpn(&[0x30, 0xab]), "3b");
        assert_eq!(alpn(&[0x30, 0x31, 0xab, 0xcd]), "3d");
        assert_eq!(alpn(&[0x30, 0xab, 0xcd, 0x31]), "01");
        assert_eq!(alpn(&[0xba, 0xad]), "bd");
        assert_eq!(alpn(b""), "00");
        let mut s = String::new();
        push_alpn_chars(&mut s, None);
        assert_eq!(s, "00");
    }

    #[test]
    fn version_labels() {
        let table = [
            (0x0304, "13"),
            (0x0303, "12"),
            (0x0302, "11"),
            (0x0301, "10"),
            (0x0300, "s3"),
            (0x0002, "s2"),
            (0xfeff, "d1"),
            (0xfefd, "d2"),
            (0xfefc, "d3"),
            (0x7f1c, "00"),
            (0x0a0a, "00"),
        ];
        for (v, label) in table {
            assert_eq!(version_label(v), label, "{v:#06x}");
        }
    }
}
