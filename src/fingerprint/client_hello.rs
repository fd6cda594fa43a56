//! The ClientHello: parse the first handshake message of a TLS connection into the facts the
//! proxy fingerprints and routes on.
//!
//! Where it sits: the server calls [`parse_client_hello`] with every byte read so far from the
//! start of the TCP stream (after any PROXY header), before rustls sees them. `record` finds
//! the message across records and reads; this module reads the message itself.
//!
//! ClientHello layout (RFC 8446 §4.1.2; RFC 5246 §7.4.1.2 for TLS 1.2 and below):
//!
//! ```text
//! ProtocolVersion legacy_version;              uint16
//! Random random;                               32 bytes
//! opaque legacy_session_id<0..32>;             uint8 length
//! CipherSuite cipher_suites<2..2^16-2>;        uint16 length, uint16 each
//! opaque legacy_compression_methods<1..2^8-1>; uint8 length
//! Extension extensions<8..2^16-1>;             uint16 length; absent allowed before TLS 1.3
//! ```
//!
//! Who reads what:
//!
//! - `record` (ours) does the record layer: it finds the message across records and reads,
//!   joins its fragments, and decides `Incomplete`, `TooLarge` and the record-level errors from
//!   the length fields as they arrive. tls-parser's record functions decode one record at a
//!   time and leave joining a handshake message fragmented over several records (RFC 8446
//!   §5.1) to the caller (its crate docs: "need additional code to handle fragmentation");
//!   clients may fragment, and the server must answer `Incomplete` until the message is whole.
//! - tls-parser decodes the message body: `parse_tls_handshake_client_hello` (the contents
//!   function, not `parse_tls_message_handshake`: `record` has already read the 4-byte header,
//!   and the message-level function drops whatever the ClientHello decoder leaves unread, which
//!   we need to see). Two checks around it keep the framing strict: the extension block is
//!   optional to tls-parser, so a block whose length runs past the message (`ext` is `None`
//!   with bytes left) is `Malformed("truncated extensions")`, and bytes left after a whole block
//!   are `Malformed("bytes after extensions")`. tls-parser's errors do not say which field
//!   failed, so `message_fault` names it for the label, on the error path only.
//! - The extension list is walked here: each frame's `uint16 type, uint16 length` header
//!   (RFC 8446 §4.2) is read by a four-byte match and the type pushed as sent, in order, GREASE
//!   and unknown types included; a frame that runs past the list is `Malformed`. This is the
//!   one piece of the message we frame ourselves, because tls-parser's list parser,
//!   `parse_tls_client_hello_extensions`, is `many0` over a decoder that also decodes each
//!   body: the first body it cannot decode (an odd-length supported_groups, a non-empty
//!   extended_master_secret, a 1-byte record_size_limit, ...) silently ends the list, so that
//!   extension and every later one would be missing from JA3 and JA4. Nor can the type come
//!   from `TlsExtensionType::from(&TlsExtension)`: a body that fails has no `TlsExtension`, and
//!   every GREASE type maps to 0xfafa. (Reading each frame with tls-parser's body-agnostic
//!   `parse_tls_extension_unknown` gives the same list but was 50–150 ns slower per Chrome
//!   hello in the parse bench: it returns the whole `TlsExtension` enum by value per frame.)
//! - tls-parser decodes the bodies of the six extensions the fingerprints read (server_name,
//!   supported_groups, ec_point_formats, signature_algorithms, ALPN, supported_versions):
//!   `parse_tls_extension` on that one frame's bytes, the first occurrence of each type only.
//!   A body it rejects leaves its field empty and the type still counts, since fingerprints
//!   describe what was sent. What it accepts: server_name, ALPN and signature_algorithms keep
//!   the entries before a broken one inside the declared list; a declared list longer than the
//!   body, or an odd-length supported_groups list, gives nothing. supported_versions is given
//!   to tls-parser only when its length byte describes the rest of the body exactly (an even
//!   count): tls-parser reads that body by its total length instead, and a 2-byte body as the
//!   ServerHello form.

use super::record::{self, Scan};
use super::{ja3, ja4};
use tls_parser::{parse_tls_extension, parse_tls_handshake_client_hello, SNIType, TlsExtension};

pub use super::grease::is_grease;

/// Most bytes of a stream the ClientHello records may take. Real hellos are 200 B–2 KiB
/// (post-quantum key shares push Chrome's to ~1.8 KiB); this leaves room while bounding memory.
pub const MAX_HELLO_BYTES: usize = 64 * 1024;

/// Most TLS records the ClientHello may be spread over. Real clients use one or two; the cap
/// bounds the work of re-scanning the buffer after every read (without it, a hello sent as
/// thousands of 1-byte records costs time quadratic in its size). A 65th record header before
/// the message is complete is `Malformed("too many records")`.
pub const MAX_HELLO_RECORDS: usize = 64;

// Extension types (IANA "TLS ExtensionType Values").
const EXT_SERVER_NAME: u16 = 0; // RFC 6066 §3
const EXT_SUPPORTED_GROUPS: u16 = 10; // RFC 8446 §4.2.7, RFC 8422 §5.1.1
const EXT_EC_POINT_FORMATS: u16 = 11; // RFC 8422 §5.1.2
const EXT_SIGNATURE_ALGORITHMS: u16 = 13; // RFC 8446 §4.2.3
const EXT_ALPN: u16 = 16; // RFC 7301 §3.1
const EXT_SUPPORTED_VERSIONS: u16 = 43; // RFC 8446 §4.2.1

/// Outcome of a parse attempt that is not an error.
// `Complete` is ~200 bytes next to an empty `Incomplete`; it is built once per connection and
// moved out at once, so boxing it would only add an allocation to the hot path.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Need more bytes (not an error).
    Incomplete,
    /// The whole ClientHello handshake message is in; `consumed` = bytes of `buf` used by the
    /// TLS records holding it (whole records).
    Complete { hello: ClientHello, consumed: usize },
}

/// Why the first bytes of a stream are not a usable ClientHello. All are client-side faults.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum HelloError {
    /// The first byte is not a TLS handshake record (0x16).
    #[error("not a TLS handshake record")]
    NotTls,
    /// Looks like a plaintext HTTP request (`GET `, `POST`, `PRI `, ...).
    #[error("plaintext HTTP on the TLS port")]
    PlainHttp,
    /// SSLv2-style record header (high bit set, message type 1).
    #[error("SSLv2 ClientHello")]
    SslV2,
    /// The first handshake message is not a ClientHello (type 1).
    #[error("first handshake message is not a ClientHello")]
    NotClientHello,
    /// The hello would need more than [`MAX_HELLO_BYTES`].
    #[error("ClientHello larger than {MAX_HELLO_BYTES} bytes")]
    TooLarge,
    /// Broken framing, with a short static reason.
    #[error("malformed ClientHello: {0}")]
    Malformed(&'static str),
}

impl HelloError {
    /// Short snake_case label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            HelloError::NotTls => "not_tls",
            HelloError::PlainHttp => "plain_http",
            HelloError::SslV2 => "sslv2",
            HelloError::NotClientHello => "not_client_hello",
            HelloError::TooLarge => "too_large",
            HelloError::Malformed(_) => "malformed",
        }
    }
}

/// The parts of a ClientHello that fingerprints and routing use. Lists keep the order and the
/// GREASE values as sent; the fingerprint functions drop GREASE.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientHello {
    pub legacy_version: u16,
    /// In order sent, GREASE included.
    pub cipher_suites: Vec<u16>,
    /// Extension types in order sent, GREASE included.
    pub extensions: Vec<u16>,
    /// First `host_name` of server_name (ext 0), lossy UTF-8.
    pub sni: Option<String>,
    /// ALPN protocol names (ext 16) in order.
    pub alpn: Vec<Vec<u8>>,
    /// From supported_versions (ext 43), GREASE included.
    pub supported_versions: Vec<u16>,
    /// signature_algorithms (ext 13), in order.
    pub signature_algorithms: Vec<u16>,
    /// supported_groups (ext 10).
    pub supported_groups: Vec<u16>,
    /// ec_point_formats (ext 11).
    pub ec_point_formats: Vec<u8>,
}

impl ClientHello {
    /// JA3 string and MD5 (see [`ja3`]).
    pub fn ja3(&self) -> ja3::Ja3 {
        ja3::compute(self)
    }

    /// JA4 and its raw and original-order forms (see [`ja4`]).
    pub fn ja4(&self) -> ja4::Ja4 {
        ja4::compute(self)
    }

    /// The first ALPN protocol name, if any.
    pub fn alpn_first(&self) -> Option<&[u8]> {
        self.alpn.first().map(Vec::as_slice)
    }

    /// The 2-character version label of JA4 part a: `"13"`, `"12"`, ..., `"00"` if unknown.
    pub fn tls_version_label(&self) -> &'static str {
        ja4::version_label(self.max_version())
    }

    /// The version JA4 reports: the highest non-GREASE supported_versions value when that
    /// extension is present (and holds one), else `legacy_version` (JA4 spec, "TLS Version").
    pub fn max_version(&self) -> u16 {
        if self.extensions.contains(&EXT_SUPPORTED_VERSIONS) {
            if let Some(v) = self
                .supported_versions
                .iter()
                .copied()
                .filter(|&v| !is_grease(v))
                .max()
            {
                return v;
            }
        }
        self.legacy_version
    }
}

/// Parse the ClientHello at the start of `buf`, the bytes read so far from the stream.
///
/// - `Ok(Parsed::Incomplete)`: every byte so far is consistent with a ClientHello; read more.
/// - `Ok(Parsed::Complete { .. })`: the hello and how many bytes its records took.
/// - `Err(_)`: not a ClientHello we accept; the reason says what it was.
///
/// Handles a hello split over several records (fragments reassembled, RFC 8446 §5.1) and over
/// any number of reads. Never panics.
pub fn parse_client_hello(buf: &[u8]) -> Result<Parsed, HelloError> {
    let at = match record::scan(buf)? {
        Scan::Incomplete => return Ok(Parsed::Incomplete),
        Scan::Complete(at) => at,
    };
    let mut scratch = Vec::new();
    let body = record::body(buf, at, &mut scratch)?;
    let hello = parse_body(body)?;
    Ok(Parsed::Complete {
        hello,
        consumed: at.consumed,
    })
}

/// Decode the ClientHello body (after the handshake header) with tls-parser, RFC 8446 §4.1.2.
fn parse_body(body: &[u8]) -> Result<ClientHello, HelloError> {
    use HelloError::Malformed;
    let (rest, ch) =
        parse_tls_handshake_client_hello(body).map_err(|_| Malformed(message_fault(body)))?;
    // tls-parser reads the extension block as optional: a block whose length runs past the
    // message comes back as `None` with the bytes left over, and bytes after a whole block are
    // left over too. Both are framing errors here, as in RFC 5246 §7.4.1.2.
    match (ch.ext, rest.is_empty()) {
        (_, true) => {}
        (None, false) => return Err(Malformed("truncated extensions")),
        (Some(_), false) => return Err(Malformed("bytes after extensions")),
    }
    let mut hello = ClientHello {
        legacy_version: ch.version.0,
        // Same layout (a u16 newtype), so this collects in place.
        cipher_suites: ch.ciphers.into_iter().map(|c| c.0).collect(),
        ..ClientHello::default()
    };
    // RFC 5246 §7.4.1.2: a hello that ends after compression_methods has no extensions.
    if let Some(exts) = ch.ext {
        read_extensions(&mut hello, exts)?;
    }
    Ok(hello)
}

/// Name the field at which a ClientHello body that tls-parser rejected goes wrong, for the
/// `Malformed` label. Error path only: it walks the same fixed fields in the same order as
/// `parse_tls_handshake_client_hello` and rejects exactly what that function rejects.
fn message_fault(body: &[u8]) -> &'static str {
    /// Split a vector with a `width`-byte length prefix off the front: (its length, the rest).
    fn vector(b: &[u8], width: usize) -> Option<(usize, &[u8])> {
        let (len, rest) = b.split_at_checked(width)?;
        let n = len.iter().fold(0, |n, &x| n << 8 | usize::from(x));
        Some((n, rest.get(n..)?))
    }
    if body.len() < 2 {
        return "truncated legacy_version";
    }
    let Some(rest) = body.get(2 + 32..) else {
        return "truncated random";
    };
    let Some((sid, rest)) = vector(rest, 1) else {
        return "truncated legacy_session_id";
    };
    if sid > 32 {
        return "legacy_session_id longer than 32";
    }
    let Some((suites, rest)) = vector(rest, 2) else {
        return "truncated cipher_suites";
    };
    if suites % 2 != 0 {
        return "odd cipher_suites length";
    }
    if vector(rest, 1).is_none() {
        return "truncated compression_methods";
    }
    "ClientHello rejected by tls-parser"
}

/// Record the extension types in order and decode the six bodies the fingerprints read.
///
/// RFC 8446 §4.2: `struct { ExtensionType extension_type; opaque extension_data<0..2^16-1>; }`.
/// The framing is read here and the bodies by tls-parser; see the module docs for why.
fn read_extensions(hello: &mut ClientHello, mut list: &[u8]) -> Result<(), HelloError> {
    // Each extension takes at least 4 bytes, which bounds the list without a second pass.
    hello.extensions.reserve_exact(list.len() / 4);
    let mut seen = 0u8; // one bit per extension read below: the first occurrence wins
    while !list.is_empty() {
        let (ty, len) = match *list {
            [t0, t1, l0, l1, ..] => (u16::from_be_bytes([t0, t1]), u16::from_be_bytes([l0, l1])),
            [_] => return Err(HelloError::Malformed("truncated extension header")),
            _ => return Err(HelloError::Malformed("truncated extension data")),
        };
        let Some((raw, rest)) = list.split_at_checked(4 + usize::from(len)) else {
            return Err(HelloError::Malformed("truncated extension data"));
        };
        list = rest;
        hello.extensions.push(ty);
        let bit = match ty {
            EXT_SERVER_NAME => 1,
            EXT_SUPPORTED_GROUPS => 2,
            EXT_EC_POINT_FORMATS => 4,
            EXT_SIGNATURE_ALGORITHMS => 8,
            EXT_ALPN => 16,
            EXT_SUPPORTED_VERSIONS => 32,
            _ => continue,
        };
        if seen & bit == 0 {
            seen |= bit;
            read_extension(hello, ty, raw);
        }
    }
    Ok(())
}

/// Decode one of the six extensions the fingerprints use with tls-parser (`raw` is the whole
/// extension, its 4-byte header included). A body tls-parser rejects leaves the field empty;
/// the type is already in the list (see the module docs).
fn read_extension(hello: &mut ClientHello, ty: u16, raw: &[u8]) {
    // RFC 8446 §4.2.1, ClientHello form: ProtocolVersion versions<2..254>, a uint8 length.
    // tls-parser reads this body by its total length (a 2-byte body as the ServerHello form,
    // otherwise every byte after the length byte, whatever that byte says), so it gets the
    // body only when the length byte describes the rest exactly, an even number of bytes.
    if ty == EXT_SUPPORTED_VERSIONS {
        let described = match raw.get(4..) {
            Some([n, list @ ..]) => usize::from(*n) == list.len() && n % 2 == 0,
            _ => false,
        };
        if !described {
            return;
        }
    }
    let Ok((_, ext)) = parse_tls_extension(raw) else {
        return;
    };
    match ext {
        // RFC 6066 §3: the first host_name entry; entries after a broken one are not read.
        TlsExtension::SNI(names) => {
            hello.sni = names
                .into_iter()
                .find(|&(t, _)| t == SNIType::HostName)
                .map(|(_, name)| String::from_utf8_lossy(name).into_owned());
        }
        // RFC 7301 §3.1. An empty name is kept: the JA4 spec defines the fingerprint for it.
        TlsExtension::ALPN(names) => hello.alpn = names.into_iter().map(<[u8]>::to_vec).collect(),
        TlsExtension::SupportedVersions(v) => {
            hello.supported_versions = v.into_iter().map(|v| v.0).collect();
        }
        TlsExtension::SignatureAlgorithms(v) => hello.signature_algorithms = v,
        TlsExtension::EllipticCurves(groups) => {
            hello.supported_groups = groups.into_iter().map(|g| g.0).collect();
        }
        TlsExtension::EcPointFormats(formats) => hello.ec_point_formats = formats.to_vec(),
        _ => {}
    }
}
