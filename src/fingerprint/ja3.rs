//! JA3: the Salesforce TLS client fingerprint (github.com/salesforce/ja3, README).
//!
//! Computed once per connection from the parsed [`ClientHello`], after the server has the whole
//! hello and before the policy layers look the fingerprint up.
//!
//! The string is five comma-separated fields, each a `-`-separated list of decimal values:
//!
//! ```text
//! SSLVersion,Cipher,SSLExtension,EllipticCurve,EllipticCurvePointFormat
//! 769,47-53-5-10-49161-49162-49171-49172-50-56-19-4,0-10-11,23-24-25,0
//! ```
//!
//! - SSLVersion is the hello's `legacy_version` (not supported_versions).
//! - Ciphers, extension types and curves (supported_groups) are in the order sent; GREASE
//!   values (RFC 8701) are left out of all of them.
//! - A missing list leaves its field empty (`769,4-5-10,,,`).
//!
//! The hash is the MD5 of the string in lowercase hex. Extension order counts, so a client that
//! shuffles its extensions (Chrome since version 110) has a new JA3 on most connections; JA4
//! (see [`super::ja4`]) sorts them instead.

use super::client_hello::ClientHello;
use super::encode::{md5_hex, push_dec};
use super::grease::is_grease;

/// The JA3 string and its MD5.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Ja3 {
    /// `SSLVersion,Cipher,SSLExtension,EllipticCurve,EllipticCurvePointFormat`.
    pub full: String,
    /// MD5 of `full`, 32 lowercase hex digits.
    pub hash: String,
}

/// Append the non-GREASE values of `values` in decimal, `-`-separated.
fn push_list(out: &mut String, values: impl IntoIterator<Item = u16>) {
    let mut first = true;
    for v in values.into_iter().filter(|&v| !is_grease(v)) {
        if !first {
            out.push('-');
        }
        first = false;
        push_dec(out, v);
    }
}

/// Compute JA3 for `hello`.
pub fn compute(hello: &ClientHello) -> Ja3 {
    // Up to 6 bytes per value ("65535-"), plus the separators: one allocation in practice.
    let values = hello.cipher_suites.len()
        + hello.extensions.len()
        + hello.supported_groups.len()
        + hello.ec_point_formats.len();
    let mut full = String::with_capacity(8 + values * 6);
    push_dec(&mut full, hello.legacy_version);
    full.push(',');
    push_list(&mut full, hello.cipher_suites.iter().copied());
    full.push(',');
    push_list(&mut full, hello.extensions.iter().copied());
    full.push(',');
    push_list(&mut full, hello.supported_groups.iter().copied());
    full.push(',');
    // Point formats are single bytes, never GREASE.
    push_list(
        &mut full,
        hello.ec_point_formats.iter().map(|&f| u16::from(f)),
    );
    let hash = md5_hex(&full);
    Ja3 { full, hash }
}
