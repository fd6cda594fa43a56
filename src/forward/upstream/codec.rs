//! HTTP/1.1 on the upstream hop, as pure functions over byte buffers (RFC 9112): the request
//! head portcullis writes, the response head it reads, how that response's body is framed,
//! and the chunked transfer coding. No IO here, so every rule is unit- and property-tested.

use std::mem::MaybeUninit;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};

/// Largest response head read from the upstream.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most header fields in one response head.
pub const MAX_HEADERS: usize = 128;
/// Longest chunk-size line (with extensions) or trailer line.
const MAX_LINE: usize = 4096;
/// Most trailer bytes read (and dropped) after the last chunk.
const MAX_TRAILERS: usize = 64 * 1024;

/// Why an upstream response could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("response head: {0}")]
    Head(&'static str),
    #[error("response head larger than {MAX_HEAD_BYTES} bytes")]
    HeadTooLarge,
    #[error("chunked body: {0}")]
    Chunk(&'static str),
}

/// How the request body goes upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFraming {
    /// No body bytes follow the head (a `Content-Length` the client sent stays as sent).
    None,
    /// Exactly this many bytes follow, as the client's `Content-Length` said.
    Length(u64),
    /// Length unknown (HTTP/1.1 chunked from the client, or HTTP/2 without a length):
    /// sent with the chunked coding.
    Chunked,
}

/// Headers the proxy changes on the way upstream, applied while the head is written, so the
/// client's `HeaderMap` is never edited (each insert or removal there hashes and may grow it).
pub struct HeadEdits<'a> {
    /// Header lines already encoded (`name: value\r\n` each, as [`put_header`] writes them),
    /// written after the client's headers: those that are the same for a whole connection.
    pub fixed: &'a [u8],
    /// Written after `fixed`: this request's own lines, names and values (valid as they are).
    pub fields: &'a [(&'a HeaderName, &'a [u8])],
    /// Written after `fields`.
    pub add: &'a [(HeaderName, HeaderValue)],
    /// Client headers left out.
    pub drop: &'a (dyn Fn(&HeaderName) -> bool + Sync),
}

/// Writes the request head: request line in origin form, `Host` first, the client's headers
/// less `Host` and those `edits` drop, the fixed and added ones, the framing header, the blank
/// line.
pub fn encode_head(
    out: &mut Vec<u8>,
    method: &Method,
    target: &str,
    host: &HeaderValue,
    headers: &HeaderMap,
    edits: &HeadEdits<'_>,
    framing: RequestFraming,
) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut has_length = false;
    for (name, value) in headers {
        if name == header::HOST || (edits.drop)(name) {
            continue;
        }
        if name == header::CONTENT_LENGTH {
            if framing == RequestFraming::Chunked {
                continue;
            }
            has_length = true;
        }
        put_header(out, name, value);
    }
    out.extend_from_slice(edits.fixed);
    for (name, value) in edits.fields {
        put_field(out, name, value);
    }
    for (name, value) in edits.add {
        put_header(out, name, value);
    }
    match framing {
        RequestFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        RequestFraming::Length(n) if !has_length => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(n.to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        _ => {}
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes one header line.
pub fn put_header(out: &mut Vec<u8>, name: &HeaderName, value: &HeaderValue) {
    put_field(out, name, value.as_bytes());
}

/// Writes one header line whose value the caller knows to be valid.
fn put_field(out: &mut Vec<u8>, name: &HeaderName, value: &[u8]) {
    out.extend_from_slice(name.as_str().as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Writes the framing before one chunk of `len` bytes (`len > 0`).
pub fn chunk_start(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(format!("{len:x}\r\n").as_bytes());
}

/// The end of the chunked coding: the last chunk and an empty trailer section.
pub const CHUNKED_END: &[u8] = b"0\r\n\r\n";

/// How the response body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFraming {
    /// No body: a response to HEAD, 204 or 304.
    Empty,
    Length(u64),
    Chunked,
    /// Read until the upstream closes; the connection cannot be reused.
    Close,
}

/// A final (non-1xx) response head.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub framing: ResponseFraming,
    /// The connection can carry another request once this body has been read.
    pub reusable: bool,
}

/// What [`parse_response`] found at the start of the buffer.
#[derive(Debug)]
pub enum Parsed {
    /// More bytes are needed.
    Partial,
    /// An interim (1xx) response of this many bytes, taken off the buffer: parse again.
    Interim(usize),
    /// A final response head of `len` bytes, taken off the buffer.
    Head { head: ResponseHead, len: usize },
}

/// Parses a response head at the start of `buf` and takes it off `buf` when it is whole.
/// `head_request`: the request was `HEAD`, so the response has no body whatever its headers
/// say. The header values are copied out of `buf` (see the body); the framing is read from the
/// raw fields before any `HeaderMap` exists.
pub fn parse_response(buf: &mut BytesMut, head_request: bool) -> Result<Parsed, WireError> {
    // Left uninitialised: filling 128 slots (4 KiB) cost more than parsing a small head.
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, buf, &mut slots);
    let len = match parsed {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_BYTES => {
            return Err(WireError::HeadTooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(httparse::Error::TooManyHeaders) => return Err(WireError::Head("too many headers")),
        Err(_) => return Err(WireError::Head("malformed")),
    };
    if len > MAX_HEAD_BYTES {
        return Err(WireError::HeadTooLarge);
    }
    let code = resp.code.ok_or(WireError::Head("no status"))?;
    let status = StatusCode::from_u16(code).map_err(|_| WireError::Head("bad status"))?;
    if status == StatusCode::SWITCHING_PROTOCOLS {
        // portcullis never asks for an upgrade (it strips `Upgrade`), so this is not an answer.
        return Err(WireError::Head("unrequested protocol switch"));
    }
    if status.is_informational() {
        buf.advance(len);
        return Ok(Parsed::Interim(len));
    }
    let version = match resp.version {
        Some(1) => Version::HTTP_11,
        _ => Version::HTTP_10,
    };
    let fields: &[httparse::Header<'_>] = resp.headers;
    let (framing, mut reusable) = framing_of(status, version, fields, head_request)?;
    if version == Version::HTTP_10 || has_token(fields, "connection", "close") {
        reusable = false;
    }
    // The values are copied out of the read buffer, not cut from it as shared `Bytes`: a few
    // short copies cost less than the reference counts of a shared buffer (an atomic
    // operation for every value, and again when it is dropped), and the buffer stays one
    // allocation that the next read reuses. Room for what the proxy adds on the way back
    // (RateLimit headers, a decision id): growing the map would rehash it.
    let mut headers = HeaderMap::with_capacity(fields.len() + 4);
    for f in fields {
        let name = HeaderName::from_bytes(f.name.as_bytes())
            .map_err(|_| WireError::Head("header name"))?;
        let value =
            HeaderValue::from_bytes(f.value).map_err(|_| WireError::Head("header value"))?;
        headers.append(name, value);
    }
    buf.advance(len);
    Ok(Parsed::Head {
        head: ResponseHead {
            status,
            version,
            headers,
            framing,
            reusable,
        },
        len,
    })
}

/// The values of the fields named `name` (ASCII case-insensitive), in order.
fn values<'a>(
    fields: &'a [httparse::Header<'a>],
    name: &'static str,
) -> impl Iterator<Item = &'a [u8]> + 'a {
    fields
        .iter()
        .filter(move |f| f.name.eq_ignore_ascii_case(name))
        .map(|f| f.value)
}

/// A field value as text if it is visible ASCII (what `HeaderValue::to_str` accepts).
fn text(v: &[u8]) -> Option<&str> {
    if v.iter().all(|&b| b == b'\t' || (32..127).contains(&b)) {
        std::str::from_utf8(v).ok()
    } else {
        None
    }
}

/// RFC 9112 §6.3 in order; the second value says whether the framing leaves the connection
/// reusable.
fn framing_of(
    status: StatusCode,
    version: Version,
    fields: &[httparse::Header<'_>],
    head_request: bool,
) -> Result<(ResponseFraming, bool), WireError> {
    if head_request || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return Ok((ResponseFraming::Empty, true));
    }
    if let Some(last) = values(fields, "transfer-encoding").last() {
        if version == Version::HTTP_10 {
            return Err(WireError::Head("transfer-encoding in HTTP/1.0"));
        }
        // Chunked must be the final coding; otherwise the body runs to the close. A length
        // beside it is ignored and the connection not reused (§6.3 item 3).
        let chunked_last = text(last)
            .and_then(|v| v.rsplit(',').next())
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("chunked"));
        let alone = values(fields, "content-length").next().is_none();
        return Ok(if chunked_last {
            (ResponseFraming::Chunked, alone)
        } else {
            (ResponseFraming::Close, false)
        });
    }
    match content_length(values(fields, "content-length"))? {
        Some(n) => Ok((ResponseFraming::Length(n), true)),
        None => Ok((ResponseFraming::Close, false)),
    }
}

/// The `Content-Length`: every field and list member must be the same decimal number.
fn content_length<'a>(fields: impl Iterator<Item = &'a [u8]>) -> Result<Option<u64>, WireError> {
    let mut found = None;
    for v in fields {
        let s = text(v).ok_or(WireError::Head("content-length"))?;
        for part in s.split(',') {
            let part = part.trim();
            if part.is_empty() || part.len() > 19 || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(WireError::Head("content-length"));
            }
            let n: u64 = part
                .parse()
                .map_err(|_| WireError::Head("content-length"))?;
            if found.is_some_and(|f| f != n) {
                return Err(WireError::Head("conflicting content-length"));
            }
            found = Some(n);
        }
    }
    Ok(found)
}

fn has_token(fields: &[httparse::Header<'_>], name: &'static str, token: &str) -> bool {
    values(fields, name)
        .filter_map(text)
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Data frames taken from a body and not yet handed on. The first piece is kept as it came
/// (no copy when it is the only one, as for a JSON answer); a second one starts a joined
/// buffer.
#[derive(Default, Debug)]
pub struct Gathered {
    first: Option<Bytes>,
    joined: BytesMut,
}

impl Gathered {
    pub fn push(&mut self, data: Bytes) {
        if let Some(first) = self.first.take() {
            self.joined.reserve(first.len() + data.len());
            self.joined.extend_from_slice(&first);
        }
        if self.joined.is_empty() {
            self.first = Some(data);
        } else {
            self.joined.extend_from_slice(&data);
        }
    }
    pub fn take(&mut self) -> Option<Bytes> {
        match self.first.take() {
            Some(b) => Some(b),
            None if self.joined.is_empty() => None,
            None => Some(self.joined.split().freeze()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data, this many bytes to go.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines up to the empty one; bytes of trailers seen.
    Trailers(usize),
    Done,
}

/// Decoder of the chunked transfer coding (RFC 9112 §7.1). Chunk extensions are ignored;
/// trailer fields are read and dropped (bounded). Line ends must be CRLF.
#[derive(Debug)]
pub struct ChunkedDecoder {
    state: ChunkState,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self {
            state: ChunkState::Size,
        }
    }
}

/// The next CRLF-terminated line of `buf`, without its CRLF; `None` when incomplete.
fn line(buf: &[u8]) -> Result<Option<(&[u8], usize)>, WireError> {
    match memchr_lf(buf) {
        Some(i) if i > 0 && buf[i - 1] == b'\r' => Ok(Some((&buf[..i - 1], i + 1))),
        Some(_) => Err(WireError::Chunk("line not ended by CRLF")),
        None if buf.len() > MAX_LINE => Err(WireError::Chunk("line too long")),
        None => Ok(None),
    }
}

fn memchr_lf(buf: &[u8]) -> Option<usize> {
    buf.iter().take(MAX_LINE + 2).position(|&b| b == b'\n')
}

fn chunk_size(line: &[u8]) -> Result<u64, WireError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return Err(WireError::Chunk("chunk size"));
    }
    let rest = &line[digits..];
    let rest_start = rest.iter().position(|b| *b != b' ' && *b != b'\t');
    if let Some(i) = rest_start {
        if rest[i] != b';' {
            return Err(WireError::Chunk("chunk size"));
        }
    }
    let text = std::str::from_utf8(&line[..digits]).map_err(|_| WireError::Chunk("chunk size"))?;
    u64::from_str_radix(text, 16).map_err(|_| WireError::Chunk("chunk size"))
}

impl ChunkedDecoder {
    /// The last chunk and the trailers have been read.
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Consumes from `buf` as much of the coding as it holds, handing the data to `out`
    /// (split off `buf`, not copied). Stops when `buf` runs out or the body ends.
    pub fn decode(&mut self, buf: &mut BytesMut, out: &mut Gathered) -> Result<(), WireError> {
        loop {
            match self.state {
                ChunkState::Done => return Ok(()),
                ChunkState::Size => {
                    let Some((l, used)) = line(buf)? else {
                        return Ok(());
                    };
                    let size = chunk_size(l)?;
                    buf.advance(used);
                    self.state = if size == 0 {
                        ChunkState::Trailers(0)
                    } else {
                        ChunkState::Data(size)
                    };
                }
                ChunkState::Data(left) => {
                    if buf.is_empty() {
                        return Ok(());
                    }
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    out.push(buf.split_to(n).freeze());
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left)
                    };
                }
                ChunkState::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(());
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(WireError::Chunk("chunk data not ended by CRLF"));
                    }
                    buf.advance(2);
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailers(seen) => {
                    let Some((l, used)) = line(buf)? else {
                        return Ok(());
                    };
                    let empty = l.is_empty();
                    buf.advance(used);
                    let seen = seen + used;
                    if seen > MAX_TRAILERS {
                        return Err(WireError::Chunk("trailers too large"));
                    }
                    self.state = if empty {
                        ChunkState::Done
                    } else {
                        ChunkState::Trailers(seen)
                    };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
