//! Small text encoders for the fingerprint strings: fixed-table hex, decimal without `fmt`,
//! and the truncated SHA-256 / full MD5 digests, written straight into a caller's `String`.
//!
//! These sit on the per-connection hot path (JA3 and JA4 for every hello), so they avoid the
//! `core::fmt` machinery and intermediate allocations.

use md5::{Digest as _, Md5};

const HEX: &[u8; 16] = b"0123456789abcdef";

/// What JA4 prints instead of a hash when a list is empty (JA4 spec, "Cipher hash").
pub(crate) const EMPTY_HASH12: &str = "000000000000";

/// One lowercase hex digit for the low nibble of `n`.
#[inline]
pub(crate) fn hex_digit(n: u8) -> char {
    char::from(HEX[usize::from(n & 0x0f)])
}

/// `v` as exactly four lowercase hex digits, as JA4 writes cipher suites and extension types.
#[inline]
pub(crate) fn push_hex4(out: &mut String, v: u16) {
    let [hi, lo] = v.to_be_bytes();
    push_hex_bytes(out, &[hi, lo]);
}

/// Every byte of `bytes` as two lowercase hex digits.
#[inline]
pub(crate) fn push_hex_bytes(out: &mut String, bytes: &[u8]) {
    for &b in bytes {
        out.push(hex_digit(b >> 4));
        out.push(hex_digit(b));
    }
}

/// Comma-separated 4-hex-digit list (`002f,0035,...`); nothing for an empty list.
pub(crate) fn push_hex4_list(out: &mut String, values: &[u16]) {
    for (i, &v) in values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_hex4(out, v);
    }
}

/// `v` in decimal, no leading zeros, as JA3 writes every value.
#[inline]
pub(crate) fn push_dec(out: &mut String, v: u16) {
    let mut digits = [0u8; 5];
    let mut n = v;
    let mut i = digits.len();
    loop {
        i -= 1;
        // `n % 10` is below 10, so the cast cannot truncate.
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[i..] {
        out.push(char::from(d));
    }
}

/// A count as two decimal digits, capped at 99 (JA4 "Number of Ciphers").
#[inline]
pub(crate) fn push_count2(out: &mut String, n: usize) {
    let n = n.min(99);
    // `n <= 99`, so both digits are single decimal digits.
    out.push(char::from(b'0' + (n / 10) as u8));
    out.push(char::from(b'0' + (n % 10) as u8));
}

/// The first 12 lowercase hex digits of SHA-256(`input`), as JA4 parts b and c.
///
/// ring's SHA-256 (assembly, with SSSE3/AVX/SHA-NI as the CPU has them) rather than the `sha2`
/// crate's: on CPUs without SHA-NI `sha2` falls back to portable Rust, and the header
/// fingerprint hashes on every request.
pub(crate) fn push_sha256_12(out: &mut String, input: &str) {
    let digest = ring::digest::digest(&ring::digest::SHA256, input.as_bytes());
    push_hex_bytes(out, &digest.as_ref()[..6]);
}

/// MD5(`input`) as 32 lowercase hex digits, the JA3 hash.
pub(crate) fn md5_hex(input: &str) -> String {
    let digest = Md5::digest(input.as_bytes());
    let mut out = String::with_capacity(32);
    push_hex_bytes(&mut out, &digest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_and_hex() {
        let mut s = String::new();
        for v in [0u16, 7, 10, 99, 100, 4865, 65535] {
            s.clear();
            push_dec(&mut s, v);
            assert_eq!(s, v.to_string());
            s.clear();
            push_hex4(&mut s, v);
            assert_eq!(s, format!("{v:04x}"));
        }
        s.clear();
        push_hex4_list(&mut s, &[0x2f, 0xc02b]);
        assert_eq!(s, "002f,c02b");
        for (n, want) in [
            (0, "00"),
            (7, "07"),
            (16, "16"),
            (99, "99"),
            (100, "99"),
            (4000, "99"),
        ] {
            s.clear();
            push_count2(&mut s, n);
            assert_eq!(s, want);
        }
    }

    #[test]
    fn digests_match_spec_examples() {
        // JA4 spec, "Cipher hash" and "Extension hash" (technical_details/JA4.md).
        let mut s = String::new();
        push_sha256_12(
            &mut s,
            "002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9",
        );
        assert_eq!(s, "8daaf6152771");
        s.clear();
        push_sha256_12(
            &mut s,
            "0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01",
        );
        assert_eq!(s, "6d807ffa2a79");
        // JA3 README example; checked independently with `printf ... | md5sum`.
        assert_eq!(
            md5_hex("769,47-53-5-10-49161-49162-49171-49172-50-56-19-4,0-10-11,23-24-25,0"),
            "ada70206e40642a3e4461f35503241d5"
        );
    }
}
