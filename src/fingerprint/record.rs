//! TLS record framing for the first flight: find the ClientHello handshake message in the bytes
//! read so far, across as many records and TCP reads as it takes.
//!
//! Called by [`super::client_hello::parse_client_hello`] on the raw stream prefix. It answers
//! "not TLS at all" (and what it looks like instead), "need more bytes", a framing error, or
//! where the complete message is; it does not look inside the message.
//!
//! Record layout (RFC 8446 §5.1, RFC 5246 §6.2.1):
//!
//! ```text
//! ContentType type (1) | ProtocolVersion legacy_record_version (2) | uint16 length | fragment
//! ```
//!
//! Handshake messages may be fragmented over several records and a record may hold the tail of
//! one message and the head of the next (RFC 8446 §5.1; RFC 5246 §6.2.1). The handshake header
//! is `HandshakeType msg_type (1) | uint24 length` (RFC 8446 §4).

use super::client_hello::{HelloError, MAX_HELLO_BYTES, MAX_HELLO_RECORDS};

/// ContentType `handshake` (RFC 8446 §5.1).
const CONTENT_HANDSHAKE: u8 = 22;
/// HandshakeType `client_hello` (RFC 8446 §4).
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const RECORD_HEADER_LEN: usize = 5;
const HANDSHAKE_HEADER_LEN: usize = 4;
/// Upper bound on a record's length field: 2^14 of plaintext plus the 2048 bytes of expansion
/// RFC 5246 §6.2.3 allows for a ciphertext. A first-flight record above it is not TLS.
pub(crate) const MAX_RECORD_LEN: usize = (1 << 14) + 2048;

/// The 4-byte starts of the request lines of plaintext HTTP/1.x methods (RFC 9110 §9) and the
/// HTTP/2 prior-knowledge preface `PRI * HTTP/2.0` (RFC 9113 §3.4).
const HTTP_STARTS: [&[u8; 4]; 10] = [
    b"GET ", b"POST", b"PUT ", b"HEAD", b"DELE", b"OPTI", b"PATC", b"CONN", b"TRAC", b"PRI ",
];

/// Where a complete ClientHello message lies in the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Located {
    /// Length of the ClientHello body (the handshake header's uint24 length).
    pub body_len: usize,
    /// Bytes of the buffer taken by the records that hold the message, whole records.
    pub consumed: usize,
}

/// Result of scanning the record layer: need more bytes, or the message is all there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scan {
    Incomplete,
    Complete(Located),
}

/// Read a big-endian uint16 at `at`; the caller has checked the length.
#[inline]
fn be16(b: &[u8], at: usize) -> Option<usize> {
    let hi = *b.get(at)?;
    let lo = *b.get(at + 1)?;
    Some(usize::from(u16::from_be_bytes([hi, lo])))
}

/// Why the first byte is not a TLS handshake record: SSLv2, plaintext HTTP, or other.
/// Answers `Incomplete` while too few bytes are in to tell.
fn classify_not_tls(buf: &[u8]) -> Result<Scan, HelloError> {
    let Some(&first) = buf.first() else {
        return Ok(Scan::Incomplete);
    };
    // SSL 2.0 CLIENT-HELLO: a 2-byte record header with the high bit set, then msg type 1
    // (SSL 2.0 draft §"Record Header"; RFC 5246 Appendix E.2 "Compatibility with SSL 2.0").
    if first & 0x80 != 0 {
        return match buf.get(2) {
            None => Ok(Scan::Incomplete),
            Some(1) => Err(HelloError::SslV2),
            Some(_) => Err(HelloError::NotTls),
        };
    }
    let n = buf.len().min(4);
    if HTTP_STARTS.iter().any(|m| m[..n] == buf[..n]) {
        return if n < 4 {
            Ok(Scan::Incomplete)
        } else {
            Err(HelloError::PlainHttp)
        };
    }
    Err(HelloError::NotTls)
}

/// Scan `buf` from its first byte for the records that carry the ClientHello message.
///
/// Every error is decided from bytes already present, so any strict prefix of a valid stream
/// answers `Incomplete`; size limits are decided from the length fields as soon as they are in.
/// At most [`MAX_HELLO_RECORDS`] records are walked, so one call costs O(that), not O(`buf`).
pub(crate) fn scan(buf: &[u8]) -> Result<Scan, HelloError> {
    match buf.first() {
        None => return Ok(Scan::Incomplete),
        Some(&CONTENT_HANDSHAKE) => {}
        Some(_) => return classify_not_tls(buf),
    }

    let mut off = 0usize; // start of the current record
    let mut records = 0usize; // records before this one
    let mut hs_seen = 0usize; // handshake-message bytes in the records before this one
    let mut hs_header = [0u8; HANDSHAKE_HEADER_LEN];
    let mut msg_total: Option<usize> = None; // header + body, once the header is in

    loop {
        let rest = buf.get(off..).unwrap_or_default();
        let Some(&content_type) = rest.first() else {
            return Ok(Scan::Incomplete);
        };
        // Bounds each scan, which the server repeats after every read (see MAX_HELLO_RECORDS).
        if records == MAX_HELLO_RECORDS {
            return Err(HelloError::Malformed("too many records"));
        }
        records += 1;
        if content_type != CONTENT_HANDSHAKE {
            // RFC 8446 §5.1: handshake messages MUST NOT be interleaved with other record types.
            return Err(HelloError::Malformed(
                "non-handshake record inside ClientHello",
            ));
        }
        // legacy_record_version is {3, x} for every SSL 3.0 / TLS version (RFC 8446 §5.1).
        if let Some(&major) = rest.get(1) {
            if major != 3 {
                return Err(HelloError::Malformed("record version major is not 3"));
            }
        }
        let Some(len) = be16(rest, 3) else {
            return Ok(Scan::Incomplete);
        };
        if len == 0 {
            // RFC 8446 §5.1: zero-length handshake fragments MUST NOT be sent.
            return Err(HelloError::Malformed("empty handshake record"));
        }
        if len > MAX_RECORD_LEN {
            return Err(HelloError::Malformed("record longer than 2^14+2048"));
        }
        let payload_start = off + RECORD_HEADER_LEN;
        let end = payload_start + len;
        if end > MAX_HELLO_BYTES {
            return Err(HelloError::TooLarge);
        }
        let avail = buf
            .get(payload_start..end.min(buf.len()))
            .unwrap_or_default();

        if hs_seen < HANDSHAKE_HEADER_LEN {
            // Collect the handshake header, which may itself straddle records.
            for (i, &b) in avail
                .iter()
                .take(HANDSHAKE_HEADER_LEN - hs_seen)
                .enumerate()
            {
                hs_header[hs_seen + i] = b;
            }
            if hs_seen == 0 && avail.first().is_some_and(|&t| t != HANDSHAKE_CLIENT_HELLO) {
                return Err(HelloError::NotClientHello);
            }
            if hs_seen + avail.len() >= HANDSHAKE_HEADER_LEN {
                let [_, a, b, c] = hs_header;
                let body_len = (usize::from(a) << 16) | (usize::from(b) << 8) | usize::from(c);
                let total = HANDSHAKE_HEADER_LEN + body_len;
                // The message cannot end before its remaining bytes, all in this record at best.
                if payload_start + (total - hs_seen) > MAX_HELLO_BYTES {
                    return Err(HelloError::TooLarge);
                }
                msg_total = Some(total);
            }
        }

        if buf.len() < end {
            return Ok(Scan::Incomplete);
        }
        hs_seen += len;
        if let Some(total) = msg_total {
            if hs_seen >= total {
                return Ok(Scan::Complete(Located {
                    body_len: total - HANDSHAKE_HEADER_LEN,
                    consumed: end,
                }));
            }
        }
        off = end;
    }
}

/// The ClientHello body (after the 4-byte handshake header) of a message `scan` located.
///
/// Borrows from `buf` when the message sits in the first record (the usual case); otherwise
/// joins the record payloads into `scratch` (RFC 8446 §5.1 fragment reassembly).
pub(crate) fn body<'a>(
    buf: &'a [u8],
    at: Located,
    scratch: &'a mut Vec<u8>,
) -> Result<&'a [u8], HelloError> {
    // `scan` validated this framing; the checks below only keep this function panic-free.
    const FRAMING: HelloError = HelloError::Malformed("record framing");
    let total = HANDSHAKE_HEADER_LEN + at.body_len;
    let records = buf.get(..at.consumed).ok_or(FRAMING)?;
    let first_len = be16(records, 3).ok_or(FRAMING)?;
    if first_len >= total {
        let start = RECORD_HEADER_LEN + HANDSHAKE_HEADER_LEN;
        return records.get(start..RECORD_HEADER_LEN + total).ok_or(FRAMING);
    }
    scratch.clear();
    scratch.reserve(total);
    let mut off = 0;
    while off < records.len() && scratch.len() < total {
        let len = be16(records, off + 3).ok_or(FRAMING)?;
        let start = off + RECORD_HEADER_LEN;
        scratch.extend_from_slice(records.get(start..start + len).ok_or(FRAMING)?);
        off = start + len;
    }
    scratch.get(HANDSHAKE_HEADER_LEN..total).ok_or(FRAMING)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(payload: &[u8]) -> Vec<u8> {
        let mut v = vec![CONTENT_HANDSHAKE, 3, 1];
        v.extend_from_slice(
            &u16::try_from(payload.len())
                .unwrap_or(u16::MAX)
                .to_be_bytes(),
        );
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn header_split_across_records_is_reassembled() {
        // A 3-byte body "abc": header split 1 + 3, then the body in a third record.
        let mut buf = record(&[1]);
        buf.extend(record(&[0, 0, 3]));
        buf.extend(record(b"abc"));
        buf.extend_from_slice(b"trailing");
        let Ok(Scan::Complete(at)) = scan(&buf) else {
            panic!("not complete: {:?}", scan(&buf));
        };
        assert_eq!(
            at,
            Located {
                body_len: 3,
                consumed: 6 + 8 + 8
            }
        );
        let mut scratch = Vec::new();
        assert_eq!(body(&buf, at, &mut scratch), Ok(&b"abc"[..]));
        for cut in 0..at.consumed {
            assert_eq!(scan(&buf[..cut]), Ok(Scan::Incomplete), "prefix {cut}");
        }
    }

    #[test]
    fn single_record_borrows() {
        let buf = record(&[1, 0, 0, 2, b'h', b'i', 0xff]);
        let Ok(Scan::Complete(at)) = scan(&buf) else {
            panic!("not complete");
        };
        assert_eq!(at.consumed, buf.len());
        let mut scratch = Vec::new();
        assert_eq!(body(&buf, at, &mut scratch), Ok(&b"hi"[..]));
        assert!(scratch.is_empty());
    }

    #[test]
    fn framing_errors() {
        let mut two = record(&[1, 0, 0, 10, 0]);
        two.extend_from_slice(&[21, 3, 3, 0, 2, 2, 40]); // an alert in the middle
        assert_eq!(
            scan(&two),
            Err(HelloError::Malformed(
                "non-handshake record inside ClientHello"
            ))
        );
        assert_eq!(
            scan(&[22, 3, 1, 0, 0]),
            Err(HelloError::Malformed("empty handshake record"))
        );
        assert_eq!(
            scan(&[22, 2, 0]),
            Err(HelloError::Malformed("record version major is not 3"))
        );
        let long = u16::try_from(MAX_RECORD_LEN + 1)
            .unwrap_or(u16::MAX)
            .to_be_bytes();
        assert_eq!(
            scan(&[22, 3, 1, long[0], long[1]]),
            Err(HelloError::Malformed("record longer than 2^14+2048"))
        );
        assert_eq!(scan(&[22, 3, 1, 0, 4, 2]), Err(HelloError::NotClientHello));
        // A 16 KiB record starting a 1 MiB message: TooLarge as soon as the header says so.
        assert_eq!(
            scan(&[22, 3, 1, 0x40, 0x00, 1, 0x10, 0, 0]),
            Err(HelloError::TooLarge)
        );
    }

    #[test]
    fn not_tls_classification() {
        assert_eq!(scan(b""), Ok(Scan::Incomplete));
        assert_eq!(scan(b"GE"), Ok(Scan::Incomplete));
        assert_eq!(scan(b"GET "), Err(HelloError::PlainHttp));
        assert_eq!(scan(b"PRI * HTTP/2.0"), Err(HelloError::PlainHttp));
        assert_eq!(scan(b"GEX "), Err(HelloError::NotTls));
        assert_eq!(scan(&[0x80, 0x2e]), Ok(Scan::Incomplete));
        assert_eq!(scan(&[0x80, 0x2e, 0x01, 0x03]), Err(HelloError::SslV2));
        assert_eq!(scan(&[0x80, 0x2e, 0x04]), Err(HelloError::NotTls));
        assert_eq!(scan(&[0x00]), Err(HelloError::NotTls));
    }
}
