//! Pure TLS client fingerprinting: no tokio, no sockets, no clock.
//!
//! Where it sits in the path: the server reads the first bytes of each TCP stream (after any
//! PROXY header) into a buffer and calls [`parse_client_hello`] after every read. While the
//! answer is [`Parsed::Incomplete`] it reads more; once it is [`Parsed::Complete`] it has the
//! [`ClientHello`] facts (SNI, ALPN, versions, the lists JA3 and JA4 are built from) and replays
//! the recorded bytes into rustls. An `Err` is a clean, labelled rejection of the connection
//! ([`HelloError::reason`] is the metric label).
//!
//! - [`client_hello`]: the ClientHello message and its extensions (RFC 8446 §4.1.2, §4.2),
//!   decoded with tls-parser.
//! - `record` (private): TLS record framing and handshake reassembly (RFC 8446 §5.1), at most
//!   [`MAX_HELLO_RECORDS`] records.
//! - [`ja3`]: the Salesforce JA3 string and MD5.
//! - [`ja4`]: the FoxIO JA4 (TLS client) fingerprint and its raw / original-order forms.
//! - [`h2`]: the HTTP/2 fingerprint (Akamai format) from the first client frames, read by the
//!   incremental [`H2Tap`] (RFC 9113 §3.4, §6; RFC 7541).
//! - [`http`]: the portcullis header fingerprint v1 (header names in order, selected values).
//! - `ja4h` (cargo feature `ja4h`, off by default): FoxIO JA4H, under the FoxIO License 1.1.
//!
//! GREASE values (RFC 8701) are kept in the parsed lists, exactly as sent, and dropped by the
//! fingerprint functions. See `docs/fingerprints.md` for the methods and their sources.

pub mod client_hello;
mod encode;
mod grease;
pub mod h2;
pub mod http;
pub mod ja3;
pub mod ja4;
#[cfg(feature = "ja4h")]
pub mod ja4h;
mod record;

pub use client_hello::{
    parse_client_hello, ClientHello, HelloError, Parsed, MAX_HELLO_BYTES, MAX_HELLO_RECORDS,
};
pub use grease::is_grease;
pub use h2::{H2Fingerprint, H2State, H2Tap, H2_TAP_LIMIT};
pub use http::{header_fingerprint, header_fingerprint_raw, HeaderFp, HttpVersionTag};
#[cfg(feature = "ja4h")]
pub use ja4h::{ja4h, Ja4h};

#[cfg(test)]
mod tests;
