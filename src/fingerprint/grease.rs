//! GREASE (Generate Random Extensions And Sustain Extensibility) values.
//!
//! RFC 8701 §2 reserves sixteen 16-bit values, `0x0A0A`, `0x1A1A`, ... `0xFAFA`, for cipher
//! suites, extension types, named groups, signature algorithms and versions. Clients such as
//! Chrome pick one at random per connection, so both JA3 and JA4 ignore them.

/// True for the 16 GREASE values of RFC 8701 §2: both bytes equal, each of the form `0x?A`.
#[inline]
pub fn is_grease(v: u16) -> bool {
    (v & 0x0f0f) == 0x0a0a && (v >> 8) == (v & 0x00ff)
}

#[cfg(test)]
mod tests {
    use super::is_grease;

    #[test]
    fn exactly_the_sixteen_rfc8701_values() {
        let expected: Vec<u16> = (0..16u16)
            .map(|i| (i << 12) | 0x0a00 | (i << 4) | 0x0a)
            .collect();
        assert_eq!(expected[0], 0x0a0a);
        assert_eq!(expected[15], 0xfafa);
        let found: Vec<u16> = (0..=u16::MAX).filter(|&v| is_grease(v)).collect();
        assert_eq!(found, expected);
        for v in [0x0a1a, 0x1a0a, 0xeeee, 0x0000, 0x0a0b, 0xabab] {
            assert!(!is_grease(v), "{v:#06x}");
        }
    }
}
