//! The HTTP/2 client fingerprint in the Akamai format (Shuster, Segal, Zinar: "Passive
//! Fingerprinting of HTTP/2 Clients", Black Hat EU 2017), read from the first frames a client
//! sends.
//!
//! ```text
//! 1:65536;2:0;4:6291456;6:262144|15663105|0|m,a,s,p
//! SETTINGS id:value in order, ';' | WINDOW_UPDATE increment | PRIORITY frames | pseudo-headers
//! ```
//!
//! Where it sits in the path: after the TLS handshake chose ALPN `h2`, the server copies the
//! decrypted client→server bytes into an [`H2Tap`] as they pass to hyper, until the tap returns
//! a final state; hyper's view of the stream is not changed. Pure: bytes in, a state out.
//!
//! - The stream must start with the client connection preface (RFC 9113 §3.4), else
//!   [`H2State::NotH2`]; the first frame must be a SETTINGS frame (§3.4).
//! - Frames (§4.1): 9-byte header, then the payload. Read until the first header block is
//!   complete (HEADERS §6.2, then CONTINUATION §6.10 until END_HEADERS) or [`H2_TAP_LIMIT`]
//!   bytes, whichever comes first.
//! - SETTINGS (§6.5): the pairs of the first non-ACK frame, in order, as sent (repeats kept).
//!   Later SETTINGS frames and ACKs do not count.
//! - WINDOW_UPDATE (§6.9): the increment of the first one on stream 0; `0` if none came before
//!   the request.
//! - PRIORITY (§6.3): every PRIORITY frame before the request, in order, as
//!   `stream:exclusive:dependency:weight` with the weight as the field value plus one (1..=256),
//!   as in the paper; `0` if none. The priority fields of the HEADERS frame itself are not part
//!   of the format (Chrome sends them on every request and its published value ends `|0|m,a,s,p`).
//! - Pseudo-header order: `m` `:method`, `a` `:authority`, `s` `:scheme`, `p` `:path`, joined by
//!   `,`, read from the HPACK header block (RFC 7541) of the first HEADERS frame. Pseudo-header
//!   fields come first (RFC 9113 §8.3), so the walk stops at the first regular field, and it
//!   never decodes a value: it only needs names. At connection start the dynamic table is
//!   empty, so names come from the static table (RFC 7541 Appendix A) or from literal names;
//!   entries this same block inserts are tracked by name. A Huffman-coded literal name
//!   (§5.2) ends the walk: pseudo-header names are all in the static table and no client
//!   sends them as new names. Other pseudo-headers (`:protocol`, RFC 8441; `:status`) are
//!   skipped without a letter.
//!
//! Frames that do not matter here (RST_STREAM, PING, GOAWAY, PUSH_PROMISE, unknown types, which
//! §5.5 says to ignore) are skipped; DATA or a stray CONTINUATION before the request, and frames
//! whose length does not fit their type, are [`H2State::Malformed`]. At most
//! [`MAX_SETTINGS`] settings and [`MAX_PRIORITY_FRAMES`] PRIORITY frames are accepted (real
//! clients send fewer than ten of each), so the Akamai string stays short.

use super::encode::push_sha256_12;

/// The tap reads at most this many bytes of a connection.
pub const H2_TAP_LIMIT: usize = 16 * 1024;
/// More SETTINGS pairs than this in the first SETTINGS frame is [`H2State::Malformed`].
pub const MAX_SETTINGS: usize = 32;
/// More PRIORITY frames than this before the first request is [`H2State::Malformed`].
pub const MAX_PRIORITY_FRAMES: usize = 32;

/// The client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const FRAME_HEADER: usize = 9;
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const PRIORITY: u8 = 0x2;
const SETTINGS: u8 = 0x4;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;
const FLAG_ACK: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;

/// An HTTP/2 fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct H2Fingerprint {
    /// The Akamai-format string.
    pub akamai: String,
    /// The first 12 lowercase hex digits of SHA-256(`akamai`), for layer keys.
    pub hash: String,
}

/// [`H2Fingerprint::hash`] of an Akamai string: the first 12 lowercase hex digits of its
/// SHA-256.
pub fn akamai_hash(akamai: &str) -> String {
    let mut hash = String::with_capacity(12);
    push_sha256_12(&mut hash, akamai);
    hash
}

/// What [`H2Tap::feed`] knows so far. All but `NeedMore` are final: later calls repeat them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum H2State {
    /// Everything so far is consistent with an HTTP/2 client; feed more.
    NeedMore,
    /// The first request's header block was read.
    Done(H2Fingerprint),
    /// The bytes do not start with the HTTP/2 client preface.
    NotH2,
    /// The frames break RFC 9113 in a way that leaves no fingerprint; a short static reason.
    Malformed(&'static str),
}

/// One PRIORITY frame: stream, exclusive bit, stream dependency, weight (field value + 1).
type Priority = (u32, bool, u32, u16);

/// The incremental reader. Each byte is examined once, however the bytes are split.
#[derive(Debug, Default)]
pub struct H2Tap {
    /// Everything fed so far, at most [`H2_TAP_LIMIT`] bytes; emptied at a final state.
    buf: Vec<u8>,
    /// Start of the first frame not yet processed (0 until the preface is complete).
    pos: usize,
    settings: Option<Vec<(u16, u32)>>,
    window_update: Option<u32>,
    priorities: Vec<Priority>,
    /// The first request's header block fragments (HEADERS then CONTINUATION payloads).
    block: Vec<u8>,
    /// The stream of an unfinished header block: the next frame must continue it.
    block_stream: Option<u32>,
    outcome: Option<H2State>,
}

impl H2Tap {
    /// A tap at the start of a connection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the next client bytes and returns the state. After a final state the bytes are
    /// ignored and that state is returned again.
    pub fn feed(&mut self, bytes: &[u8]) -> H2State {
        if let Some(done) = &self.outcome {
            return done.clone();
        }
        let room = H2_TAP_LIMIT.saturating_sub(self.buf.len());
        self.buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
        let state = match self.advance() {
            H2State::NeedMore if self.buf.len() >= H2_TAP_LIMIT => self.at_limit(),
            other => other,
        };
        if state != H2State::NeedMore {
            self.outcome = Some(state.clone());
            self.buf = Vec::new();
            self.block = Vec::new();
            self.priorities = Vec::new();
        }
        state
    }

    /// Processes every complete frame in the buffer.
    fn advance(&mut self) -> H2State {
        if self.pos == 0 {
            let n = self.buf.len().min(PREFACE.len());
            if self.buf[..n] != PREFACE[..n] {
                return H2State::NotH2;
            }
            if n < PREFACE.len() {
                return H2State::NeedMore;
            }
            self.pos = PREFACE.len();
        }
        loop {
            let Some((ftype, flags, stream, len)) = frame_header(&self.buf[self.pos..]) else {
                return H2State::NeedMore;
            };
            let start = self.pos + FRAME_HEADER;
            if self.buf.len() - start < len {
                return H2State::NeedMore;
            }
            let first = self.pos == PREFACE.len();
            self.pos = start + len;
            if let Some(state) = self.frame(ftype, flags, stream, start..start + len, first) {
                return state;
            }
        }
    }

    /// Handles one whole frame; `Some` is a final state.
    fn frame(
        &mut self,
        ftype: u8,
        flags: u8,
        stream: u32,
        range: std::ops::Range<usize>,
        first: bool,
    ) -> Option<H2State> {
        let payload = &self.buf[range];
        if first && (ftype != SETTINGS || flags & FLAG_ACK != 0) {
            return Some(H2State::Malformed("first frame is not SETTINGS"));
        }
        if let Some(open) = self.block_stream {
            if ftype != CONTINUATION || stream != open {
                return Some(H2State::Malformed("header block interrupted"));
            }
            self.block.extend_from_slice(payload);
            return (flags & FLAG_END_HEADERS != 0).then(|| self.finish());
        }
        match ftype {
            DATA => Some(H2State::Malformed("DATA before HEADERS")),
            HEADERS => {
                if stream == 0 {
                    return Some(H2State::Malformed("HEADERS on stream 0"));
                }
                let fragment = match headers_fragment(payload, flags, payload.len()) {
                    Ok(f) => f,
                    Err(why) => return Some(H2State::Malformed(why)),
                };
                self.block.extend_from_slice(fragment);
                if flags & FLAG_END_HEADERS != 0 {
                    Some(self.finish())
                } else {
                    self.block_stream = Some(stream);
                    None
                }
            }
            PRIORITY => {
                let [d0, d1, d2, d3, w] = payload[..] else {
                    return Some(H2State::Malformed("PRIORITY length is not 5"));
                };
                if stream == 0 {
                    return Some(H2State::Malformed("PRIORITY on stream 0"));
                }
                if self.priorities.len() == MAX_PRIORITY_FRAMES {
                    return Some(H2State::Malformed("too many PRIORITY frames"));
                }
                let dep = u32::from_be_bytes([d0, d1, d2, d3]);
                self.priorities
                    .push((stream, dep >> 31 == 1, dep & 0x7fff_ffff, u16::from(w) + 1));
                None
            }
            SETTINGS => {
                if stream != 0 {
                    return Some(H2State::Malformed("SETTINGS on a stream"));
                }
                if flags & FLAG_ACK != 0 || self.settings.is_some() {
                    return None;
                }
                if payload.len() % 6 != 0 {
                    return Some(H2State::Malformed("SETTINGS length is not a multiple of 6"));
                }
                if payload.len() / 6 > MAX_SETTINGS {
                    return Some(H2State::Malformed("too many SETTINGS"));
                }
                let pairs = payload
                    .chunks_exact(6)
                    .map(|c| {
                        (
                            u16::from_be_bytes([c[0], c[1]]),
                            u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
                        )
                    })
                    .collect();
                self.settings = Some(pairs);
                None
            }
            WINDOW_UPDATE => {
                let [a, b, c, d] = payload[..] else {
                    return Some(H2State::Malformed("WINDOW_UPDATE length is not 4"));
                };
                if stream == 0 && self.window_update.is_none() {
                    self.window_update = Some(u32::from_be_bytes([a, b, c, d]) & 0x7fff_ffff);
                }
                None
            }
            CONTINUATION => Some(H2State::Malformed("CONTINUATION without HEADERS")),
            _ => None,
        }
    }

    /// The header block is complete: read the pseudo-header order and build the fingerprint.
    fn finish(&self) -> H2State {
        match pseudo_order(&self.block) {
            Ok(Walk::Stopped(letters) | Walk::Ended(letters)) => {
                H2State::Done(self.fingerprint(&letters))
            }
            Ok(Walk::Truncated) => H2State::Malformed("truncated header block"),
            Err(why) => H2State::Malformed(why),
        }
    }

    /// The byte limit was reached before the header block ended. The pseudo-headers come
    /// first, so they may already be readable from the part that arrived.
    fn at_limit(&self) -> H2State {
        let mut block = self.block.clone();
        let rest = &self.buf[self.pos..];
        let Some((ftype, flags, _, len)) = frame_header(rest) else {
            return H2State::Malformed("no request within the byte limit");
        };
        let avail = &rest[FRAME_HEADER..];
        match (self.block_stream, ftype) {
            (Some(_), CONTINUATION) => block.extend_from_slice(&avail[..avail.len().min(len)]),
            (None, HEADERS) => match headers_fragment(avail, flags, len) {
                Ok(f) => block.extend_from_slice(f),
                Err(_) => return H2State::Malformed("no request within the byte limit"),
            },
            (Some(_), _) => {}
            (None, _) => return H2State::Malformed("no request within the byte limit"),
        }
        // Only a regular field proves the pseudo-header section is complete: the block was cut.
        match pseudo_order(&block) {
            Ok(Walk::Stopped(letters)) => H2State::Done(self.fingerprint(&letters)),
            Ok(Walk::Ended(_) | Walk::Truncated) => {
                H2State::Malformed("header block exceeds the byte limit")
            }
            Err(why) => H2State::Malformed(why),
        }
    }

    fn fingerprint(&self, letters: &str) -> H2Fingerprint {
        let mut akamai = String::with_capacity(96);
        for (i, (id, value)) in self.settings.iter().flatten().enumerate() {
            if i > 0 {
                akamai.push(';');
            }
            push_u32(&mut akamai, u32::from(*id));
            akamai.push(':');
            push_u32(&mut akamai, *value);
        }
        akamai.push('|');
        push_u32(&mut akamai, self.window_update.unwrap_or(0));
        akamai.push('|');
        if self.priorities.is_empty() {
            akamai.push('0');
        }
        for (i, &(stream, exclusive, dep, weight)) in self.priorities.iter().enumerate() {
            if i > 0 {
                akamai.push(',');
            }
            push_u32(&mut akamai, stream);
            akamai.push_str(if exclusive { ":1:" } else { ":0:" });
            push_u32(&mut akamai, dep);
            akamai.push(':');
            push_u32(&mut akamai, u32::from(weight));
        }
        akamai.push('|');
        akamai.push_str(letters);
        let hash = akamai_hash(&akamai);
        H2Fingerprint { akamai, hash }
    }
}

/// Type, flags, stream id (reserved bit cleared) and payload length of the frame at the start
/// of `b`, or `None` if its 9-byte header (RFC 9113 §4.1) has not fully arrived.
fn frame_header(b: &[u8]) -> Option<(u8, u8, u32, usize)> {
    let h: &[u8; FRAME_HEADER] = b.get(..FRAME_HEADER)?.try_into().ok()?;
    let len = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
    let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
    Some((h[3], h[4], stream, len))
}

/// The header block fragment of a HEADERS frame (RFC 9113 §6.2): after the optional pad
/// length and priority fields, before the padding. `avail` may be a prefix of the payload,
/// whose full length is `len`; the result is then the part of the fragment that arrived.
fn headers_fragment(avail: &[u8], flags: u8, len: usize) -> Result<&[u8], &'static str> {
    let mut skip = 0;
    let mut pad = 0;
    if flags & FLAG_PADDED != 0 {
        pad = usize::from(*avail.first().ok_or("HEADERS too short for its flags")?);
        skip = 1;
    }
    if flags & FLAG_PRIORITY != 0 {
        skip += 5;
    }
    if skip + pad > len {
        return Err("HEADERS too short for its flags");
    }
    let end = (len - pad).min(avail.len());
    Ok(avail.get(skip..end).unwrap_or(&[]))
}

/// The result of walking the start of a header block.
#[derive(Debug, PartialEq, Eq)]
enum Walk {
    /// The pseudo-header section ended at a regular field or a Huffman-coded name.
    Stopped(String),
    /// The block ended after a whole representation, without a regular field.
    Ended(String),
    /// The bytes ran out inside a representation.
    Truncated,
}

/// What a header field name is, as far as the pseudo-header order is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Name {
    Pseudo(Option<char>),
    Regular,
}

/// RFC 7541 Appendix A: indexes 1–14 are the pseudo-headers, 15–61 regular names.
fn static_name(index: u64) -> Option<Name> {
    Some(match index {
        1 => Name::Pseudo(Some('a')),
        2 | 3 => Name::Pseudo(Some('m')),
        4 | 5 => Name::Pseudo(Some('p')),
        6 | 7 => Name::Pseudo(Some('s')),
        8..=14 => Name::Pseudo(None), // :status
        15..=61 => Name::Regular,
        _ => return None,
    })
}

fn literal_name(name: &[u8]) -> Name {
    match name {
        b":method" => Name::Pseudo(Some('m')),
        b":authority" => Name::Pseudo(Some('a')),
        b":scheme" => Name::Pseudo(Some('s')),
        b":path" => Name::Pseudo(Some('p')),
        [b':', ..] => Name::Pseudo(None),
        _ => Name::Regular,
    }
}

/// Walks the representations at the start of an HPACK header block (RFC 7541 §6) and returns
/// the pseudo-header letters. `Err` is a block no decoder could accept.
fn pseudo_order(block: &[u8]) -> Result<Walk, &'static str> {
    let mut r = Reader { b: block, i: 0 };
    let mut letters = String::with_capacity(8);
    // Names this block inserted into the dynamic table, newest last (§2.3.3: index 62 is the
    // newest). Only pseudo-headers are ever inserted before the walk stops.
    let mut dynamic: Vec<Name> = Vec::new();
    macro_rules! need {
        ($e:expr) => {
            match $e {
                Some(v) => v,
                None => return Ok(Walk::Truncated),
            }
        };
    }
    while let Some(&first) = r.b.get(r.i) {
        let (name, index_it) = if first & 0x80 != 0 {
            // §6.1 Indexed Header Field.
            let idx = need!(r.int(7)?);
            (lookup(idx, &dynamic)?, false)
        } else if first & 0xe0 == 0x20 {
            // §6.3 Dynamic Table Size Update: a new maximum of 0 empties the table.
            if need!(r.int(5)?) == 0 {
                dynamic.clear();
            }
            continue;
        } else {
            // §6.2.1 with incremental indexing (01), §6.2.2 without (0000), §6.2.3 never (0001).
            let (prefix, index_it) = if first & 0xc0 == 0x40 {
                (6, true)
            } else {
                (4, false)
            };
            let idx = need!(r.int(prefix)?);
            let name = if idx == 0 {
                let (huffman, bytes) = need!(r.string()?);
                if huffman {
                    return Ok(Walk::Stopped(letters));
                }
                literal_name(bytes)
            } else {
                lookup(idx, &dynamic)?
            };
            if name == Name::Regular {
                return Ok(Walk::Stopped(letters));
            }
            need!(r.string()?); // the value, skipped
            (name, index_it)
        };
        match name {
            Name::Regular => return Ok(Walk::Stopped(letters)),
            Name::Pseudo(letter) => {
                if let Some(c) = letter {
                    if !letters.is_empty() {
                        letters.push(',');
                    }
                    letters.push(c);
                }
                if index_it {
                    dynamic.push(name);
                }
            }
        }
    }
    Ok(Walk::Ended(letters))
}

fn lookup(idx: u64, dynamic: &[Name]) -> Result<Name, &'static str> {
    if idx == 0 {
        return Err("HPACK index 0");
    }
    if let Some(n) = static_name(idx) {
        return Ok(n);
    }
    let back = usize::try_from(idx - 62).map_err(|_| "HPACK index out of range")?;
    dynamic
        .len()
        .checked_sub(back + 1)
        .and_then(|i| dynamic.get(i).copied())
        .ok_or("HPACK index out of range")
}

struct Reader<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Reader<'a> {
    /// An integer with an `n`-bit prefix (RFC 7541 §5.1). `Ok(None)`: the bytes ran out.
    fn int(&mut self, n: u32) -> Result<Option<u64>, &'static str> {
        let max = (1u64 << n) - 1;
        let Some(&first) = self.b.get(self.i) else {
            return Ok(None);
        };
        let mut i = self.i + 1;
        let mut v = u64::from(first) & max;
        if v == max {
            let mut shift = 0;
            loop {
                let Some(&b) = self.b.get(i) else {
                    return Ok(None);
                };
                i += 1;
                // Four continuation bytes carry 28 bits: more than any length in 16 KiB.
                if shift > 21 {
                    return Err("HPACK integer too large");
                }
                v += u64::from(b & 0x7f) << shift;
                shift += 7;
                if b & 0x80 == 0 {
                    break;
                }
            }
        }
        self.i = i;
        Ok(Some(v))
    }

    /// A string literal (RFC 7541 §5.2): Huffman flag and the raw bytes.
    fn string(&mut self) -> Result<Option<(bool, &'a [u8])>, &'static str> {
        let Some(&first) = self.b.get(self.i) else {
            return Ok(None);
        };
        let save = self.i;
        let Some(len) = self.int(7)? else {
            return Ok(None);
        };
        let start = self.i;
        let bytes = usize::try_from(len)
            .ok()
            .and_then(|l| self.b.get(start..start.checked_add(l)?));
        match bytes {
            Some(s) => {
                self.i = start + s.len();
                Ok(Some((first & 0x80 != 0, s)))
            }
            None => {
                self.i = save;
                Ok(None)
            }
        }
    }
}

fn push_u32(out: &mut String, mut v: u32) {
    let mut digits = [0u8; 10];
    let mut i = digits.len();
    loop {
        i -= 1;
        // `v % 10` is below 10, so the cast cannot truncate.
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for &d in &digits[i..] {
        out.push(char::from(d));
    }
}

#[cfg(test)]
mod tests {
    //! The private HPACK pieces against RFC 7541 Appendix C; the frame-level tests, which need
    //! only the public API, are in `tests/http_fingerprints.rs`.
    use super::*;

    #[test]
    fn integers_rfc7541_c1() {
        // C.1.1: 10 with a 5-bit prefix; C.1.2: 1337 with a 5-bit prefix; C.1.3: 42, 8 bits.
        for (bytes, n, want) in [
            (&[0x0a_u8][..], 5, 10),
            (&[0x1f, 0x9a, 0x0a][..], 5, 1337),
            (&[0x2a][..], 8, 42),
        ] {
            let mut r = Reader { b: bytes, i: 0 };
            assert_eq!(r.int(n), Ok(Some(want)));
            assert_eq!(r.i, bytes.len());
            let mut r = Reader {
                b: &bytes[..bytes.len() - 1],
                i: 0,
            };
            assert_eq!(r.int(n), Ok(None), "a cut integer needs more");
        }
    }

    #[test]
    fn pseudo_order_rfc7541_c3_c4() {
        // C.3.1 (no Huffman) and C.4.1 (Huffman values) first requests:
        // :method GET, :scheme http, :path /, :authority www.example.com.
        let c31 = b"\x82\x86\x84\x41\x0fwww.example.com";
        let c41 = b"\x82\x86\x84\x41\x8c\xf1\xe3\xc2\xe5\xf2\x3a\x6b\xa0\xab\x90\xf4\xff";
        for block in [&c31[..], &c41[..]] {
            assert_eq!(pseudo_order(block), Ok(Walk::Ended("m,s,p,a".into())));
            // Cut after a whole representation: the letters so far; inside one: truncated.
            assert_eq!(pseudo_order(&block[..2]), Ok(Walk::Ended("m,s".into())));
            for cut in 4..block.len() {
                assert_eq!(
                    pseudo_order(&block[..cut]),
                    Ok(Walk::Truncated),
                    "cut {cut}"
                );
            }
        }
        // C.3.2: the second request references :authority by dynamic index 62 (0xbe) and adds
        // cache-control, a regular field, which ends the walk.
        assert_eq!(
            pseudo_order(b"\x82\x86\x84\xbe\x58\x08no-cache"),
            Err("HPACK index out of range"),
            "alone, index 62 does not exist"
        );
        let both = [&c31[..], b"\x82\x86\x84\xbe\x58\x08no-cache"].concat();
        assert_eq!(
            pseudo_order(&both),
            Ok(Walk::Stopped("m,s,p,a,m,s,p,a".into()))
        );
    }
}
