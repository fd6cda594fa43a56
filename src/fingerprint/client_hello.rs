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
//! The message framing and the extension framing (`uint16 type, opaque data<0..2^16-1>`,
//! RFC 8446 §4.2) are checked strictly: extension types come out exactly as sent, in order,
//! GREASE and unknown types included. The bodies of the six extensions read here are read
//! leniently: a body that does not parse leaves its field empty (or holding what parsed before
//! the fault) but the extension still counts, since fingerprints describe what was sent.

use super::record::{self, Scan};
use super::{grease::is_grease, ja3, ja4};

/// Most bytes of a stream the ClientHello records may take. Real hellos are 200 B–2 KiB
/// (post-quantum key shares push Chrome's to ~1.8 KiB); this leaves room while bounding memory.
pub const MAX_HELLO_BYTES: usize = 64 * 1024;

// Extension types (IANA "TLS ExtensionType Values").
const EXT_SERVER_NAME: u16 = 0; // RFC 6066 §3
const EXT_SUPPORTED_GROUPS: u16 = 10; // RFC 8446 §4.2.7, RFC 8422 §5.1.1
const EXT_EC_POINT_FORMATS: u16 = 11; // RFC 8422 §5.1.2
const EXT_SIGNATURE_ALGORITHMS: u16 = 13; // RFC 8446 §4.2.3
const EXT_ALPN: u16 = 16; // RFC 7301 §3.1
const EXT_SUPPORTED_VERSIONS: u16 = 43; // RFC 8446 §4.2.1

/// Outcome of a parse attempt that is not an error.
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

/// A bounds-checked cursor over big-endian TLS vectors (RFC 8446 §3.3–3.4). Every read returns
/// `None` past the end instead of panicking.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.buf.len() {
            return None;
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        let (&b, tail) = self.buf.split_first()?;
        self.buf = tail;
        Some(b)
    }

    fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([*b.first()?, *b.get(1)?]))
    }

    /// `opaque x<0..2^8-1>`: a uint8 length, then that many bytes.
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }

    /// `opaque x<0..2^16-1>`: a uint16 length, then that many bytes.
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
}

/// Big-endian uint16 values of `bytes`; an odd trailing byte is ignored.
fn u16s(bytes: &[u8]) -> impl Iterator<Item = u16> + '_ {
    // `chunks_exact(2)` yields only 2-byte chunks, so both indexes are in bounds.
    bytes
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
}

/// Parse the ClientHello body (after the handshake header), RFC 8446 §4.1.2.
fn parse_body(body: &[u8]) -> Result<ClientHello, HelloError> {
    use HelloError::Malformed;
    let mut r = Reader::new(body);
    let legacy_version = r.u16().ok_or(Malformed("truncated legacy_version"))?;
    r.take(32).ok_or(Malformed("truncated random"))?;
    let session_id = r.vec8().ok_or(Malformed("truncated legacy_session_id"))?;
    if session_id.len() > 32 {
        return Err(Malformed("legacy_session_id longer than 32"));
    }
    let suites = r.vec16().ok_or(Malformed("truncated cipher_suites"))?;
    if suites.len() % 2 != 0 {
        return Err(Malformed("odd cipher_suites length"));
    }
    r.vec8().ok_or(Malformed("truncated compression_methods"))?;

    let mut hello = ClientHello {
        legacy_version,
        cipher_suites: u16s(suites).collect(),
        ..ClientHello::default()
    };
    // RFC 5246 §7.4.1.2: a hello that ends after compression_methods has no extensions.
    if r.is_empty() {
        return Ok(hello);
    }
    let exts = r.vec16().ok_or(Malformed("truncated extensions"))?;
    if !r.is_empty() {
        return Err(Malformed("bytes after extensions"));
    }

    // RFC 8446 §4.2: struct { ExtensionType extension_type; opaque extension_data<0..2^16-1>; }
    // Each extension takes at least 4 bytes, which bounds the list without a second pass.
    hello.extensions.reserve_exact(exts.len() / 4);
    let mut seen = 0u8; // one bit per extension read below: the first occurrence wins
    let mut er = Reader::new(exts);
    while !er.is_empty() {
        let ty = er.u16().ok_or(Malformed("truncated extension header"))?;
        let data = er.vec16().ok_or(Malformed("truncated extension data"))?;
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
            read_extension(&mut hello, ty, data);
        }
    }
    Ok(hello)
}

/// Read the body of one of the extensions the fingerprints use. Lenient: see the module docs.
fn read_extension(hello: &mut ClientHello, ty: u16, data: &[u8]) {
    let mut r = Reader::new(data);
    match ty {
        // RFC 6066 §3: ServerName server_name_list<1..2^16-1>;
        // ServerName = NameType name_type (uint8, host_name = 0) + HostName<1..2^16-1>.
        EXT_SERVER_NAME => {
            let mut list = Reader::new(r.vec16().unwrap_or_default());
            while let (Some(name_type), Some(name)) = (list.u8(), list.vec16()) {
                if name_type == 0 {
                    hello.sni = Some(String::from_utf8_lossy(name).into_owned());
                    break;
                }
            }
        }
        // RFC 7301 §3.1: ProtocolName protocol_name_list<2..2^16-1>; ProtocolName<1..2^8-1>.
        // An empty name is kept: the JA4 spec defines the fingerprint for it ("00").
        EXT_ALPN => {
            let mut list = Reader::new(r.vec16().unwrap_or_default());
            while let Some(name) = list.vec8() {
                hello.alpn.push(name.to_vec());
            }
        }
        // RFC 8446 §4.2.1, ClientHello form: ProtocolVersion versions<2..254> (uint8 length).
        EXT_SUPPORTED_VERSIONS => {
            hello
                .supported_versions
                .extend(u16s(r.vec8().unwrap_or_default()));
        }
        // RFC 8446 §4.2.3: SignatureScheme supported_signature_algorithms<2..2^16-2>.
        EXT_SIGNATURE_ALGORITHMS => {
            hello
                .signature_algorithms
                .extend(u16s(r.vec16().unwrap_or_default()));
        }
        // RFC 8446 §4.2.7: NamedGroup named_group_list<2..2^16-1>.
        EXT_SUPPORTED_GROUPS => {
            hello
                .supported_groups
                .extend(u16s(r.vec16().unwrap_or_default()));
        }
        // RFC 8422 §5.1.2: ECPointFormat ec_point_format_list<1..2^8-1>.
        EXT_EC_POINT_FORMATS => {
            hello
                .ec_point_formats
                .extend_from_slice(r.vec8().unwrap_or_default());
        }
        _ => {}
    }
}
