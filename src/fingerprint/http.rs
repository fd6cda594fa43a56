//! The portcullis header fingerprint, v1: which header fields a client sends, in which order,
//! how its stack fills in `accept`, `accept-encoding` and `accept-language`, and the product
//! name its `user-agent` starts with.
//!
//! Our own method (JA4H, the FoxIO method for the same job, is under a licence that restricts
//! commercial use; see `docs/fingerprints.md`, section "portcullis header fingerprint, v1").
//! Where it sits in the path: once per request, on the header map hyper decoded, after TLS and
//! before the policy decision. Pure: names and values in, strings out.
//!
//! ```text
//! raw: h1|host,user-agent,accept|*/*|||curl
//!      version | names, first occurrence, in order | accept | accept-encoding
//!      | accept-language | user-agent product name
//! id:  h1_ + the first 12 hex digits of SHA-256(raw)
//! ```
//!
//! - Names are lowercased (HTTP field names are case-insensitive, RFC 9110 §5.1; HTTP/2 sends
//!   them lowercase, RFC 9113 §8.2.1), each distinct name once, at its first occurrence.
//!   Keeping only the first occurrence makes the list the same whether it is read from the wire
//!   or from an `http::HeaderMap`, which groups repeated names at the first one's position.
//! - Pseudo-header fields (`:method`, ..., RFC 9113 §8.3) are skipped: their order belongs to
//!   the HTTP/2 fingerprint ([`super::h2`]).
//! - [`EXCLUDED`] and [`EXCLUDED_PREFIXES`] are skipped, name and value: fields that describe a
//!   body, carry session or cache state, or are added by proxies, so they vary between requests
//!   of one client or say nothing about its stack.
//! - Values are never used except the three above (first occurrence, optional whitespace
//!   trimmed, ASCII-lowercased, at most [`MAX_VALUE_LEN`] bytes) and the user-agent's product
//!   name: the token before the first `/` of its first product (RFC 9110 §10.1.5), lowercased,
//!   at most [`MAX_PRODUCT_LEN`] bytes, without the version, so that a client upgrade or a
//!   rotated browser version keeps the id (`curl`, `python-httpx`, every browser `mozilla`).
//!   No `authorization`, `x-api-key` or `cookie` value ever reaches the raw form.
//! - Bytes outside printable ASCII, and the delimiters `%`, `|` (and `,` in names), are written
//!   as `%XX`, so the raw form is unambiguous text. At most [`MAX_NAMES`] names of at most
//!   [`MAX_NAME_LEN`] bytes are kept: the raw form is bounded whatever the client sends.

use super::encode::push_sha256_12;

/// Which HTTP version carried the request: the first field of the raw form and the id prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HttpVersionTag {
    /// HTTP/1.0 or HTTP/1.1 (RFC 9112).
    H1,
    /// HTTP/2 (RFC 9113).
    H2,
}

impl HttpVersionTag {
    /// `"h1"` or `"h2"`.
    pub fn label(self) -> &'static str {
        match self {
            HttpVersionTag::H1 => "h1",
            HttpVersionTag::H2 => "h2",
        }
    }
}

/// A header fingerprint: the short id for layer keys and its human-readable input.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HeaderFp {
    /// `h1_` or `h2_` and 12 lowercase hex digits of SHA-256(`raw`).
    pub id: String,
    /// `version|names|accept|accept-encoding|accept-language|user-agent product`.
    pub raw: String,
}

/// Fields left out of the fingerprint entirely (lowercase; compared after lowercasing).
///
/// - Body framing and description, present only on requests with a body (RFC 9110 §8.3–8.6,
///   §10.1.1; RFC 9112 §6.1): `content-length`, `content-type`, `content-encoding`,
///   `transfer-encoding`, `expect`.
/// - Session, navigation and cache state, which change between requests of one client
///   (RFC 6265 §5.4; RFC 9110 §10.1.3, §13.1, §14.2; RFC 9111 §5.2, §5.4): `cookie`,
///   `referer`, `range`, `cache-control`, `pragma` (and every `if-*`, see
///   [`EXCLUDED_PREFIXES`]).
/// - Added by proxies and CDNs in front of us (RFC 7239; RFC 9110 §7.6.3): `forwarded`, `via`,
///   `x-real-ip`, `x-client-ip`, `true-client-ip`, `cdn-loop`, `x-amzn-trace-id`.
pub const EXCLUDED: &[&str] = &[
    "content-length",
    "content-type",
    "content-encoding",
    "transfer-encoding",
    "expect",
    "cookie",
    "referer",
    "range",
    "cache-control",
    "pragma",
    "forwarded",
    "via",
    "x-real-ip",
    "x-client-ip",
    "true-client-ip",
    "cdn-loop",
    "x-amzn-trace-id",
];

/// Name prefixes left out entirely: conditional requests (`if-match`, `if-none-match`,
/// `if-modified-since`, ...), the de-facto proxy headers (`x-forwarded-for`, `-proto`, ...),
/// Cloudflare's (`cf-connecting-ip`, `cf-ray`, ...) and our own upstream headers, which a
/// client may send copies of (the proxy strips them before forwarding).
pub const EXCLUDED_PREFIXES: &[&str] = &["if-", "x-forwarded-", "cf-", "x-portcullis-"];

/// At most this many distinct names enter the raw form; later new names are ignored.
pub const MAX_NAMES: usize = 64;
/// Names are cut to this many bytes (before escaping).
pub const MAX_NAME_LEN: usize = 64;
/// Selected values are cut to this many bytes (after trimming, before escaping); browsers'
/// `accept` values are about 150 bytes.
pub const MAX_VALUE_LEN: usize = 256;
/// The user-agent product name is cut to this many bytes.
pub const MAX_PRODUCT_LEN: usize = 32;

/// The index of `user-agent` among the fields whose values are kept, in raw-form order:
/// `accept`, `accept-encoding`, `accept-language`, `user-agent` (see [`selected`]).
const USER_AGENT: usize = 3;

/// The portcullis header fingerprint v1 of one request.
///
/// `headers` yields `(name, value)` in the order received: for HTTP/1.1 the wire order, for
/// HTTP/2 the HPACK-decoded order. `req.headers().iter().map(|(n, v)| (n.as_str(),
/// v.as_bytes()))` gives that order for a map hyper built (names are already lowercase there;
/// any other case is lowercased here). Never fails: any input gives a fingerprint.
pub fn header_fingerprint<'a>(
    version: HttpVersionTag,
    headers: impl Iterator<Item = (&'a str, &'a [u8])>,
) -> HeaderFp {
    HeaderFp::from_raw(version, header_fingerprint_raw(version, headers))
}

/// The raw form alone (see [`header_fingerprint`]); with [`HeaderFp::from_raw`], lets a caller
/// that saw this raw form before reuse its id instead of hashing again.
pub fn header_fingerprint_raw<'a>(
    version: HttpVersionTag,
    headers: impl Iterator<Item = (&'a str, &'a [u8])>,
) -> String {
    // Built as bytes (every byte written is printable ASCII), turned into a String at the end.
    let mut raw: Vec<u8> = Vec::with_capacity(256);
    raw.extend_from_slice(version.label().as_bytes());
    raw.push(b'|');
    // Byte ranges of the names already written into `raw`, for the first-occurrence rule. On
    // the stack up to 24 names (a request's usual count): no allocation per request.
    let mut seen: smallvec::SmallVec<[(usize, usize); 24]> = smallvec::SmallVec::new();
    let mut values: [Option<&[u8]>; 4] = [None; 4];
    let mut lower = [0u8; MAX_NAME_LEN];

    for (name, value) in headers {
        let name = name.as_bytes();
        if name.first() == Some(&b':') {
            continue;
        }
        let len = name.len().min(MAX_NAME_LEN);
        let lname = &mut lower[..len];
        lname.copy_from_slice(&name[..len]);
        lname.make_ascii_lowercase();
        let lname = &*lname;
        if is_excluded(lname) {
            continue;
        }
        if let Some(i) = selected(lname) {
            values[i].get_or_insert(value);
        }
        if seen.len() >= MAX_NAMES {
            continue;
        }
        // Write the name tentatively, then take it back if it was seen before. Escaping is
        // one-to-one, so comparing escaped forms compares names.
        let mark = raw.len();
        if !seen.is_empty() {
            raw.push(b',');
        }
        let start = raw.len();
        push_escaped(&mut raw, lname, true);
        let end = raw.len();
        let new = &raw[start..end];
        if seen.iter().any(|&(s, e)| &raw[s..e] == new) {
            raw.truncate(mark);
        } else {
            seen.push((start, end));
        }
    }

    for (i, value) in values.into_iter().enumerate() {
        raw.push(b'|');
        if let Some(v) = value {
            let v = trim_ows(v);
            let v = if i == USER_AGENT {
                product_name(v)
            } else {
                &v[..v.len().min(MAX_VALUE_LEN)]
            };
            push_escaped_lower(&mut raw, v);
        }
    }

    // `push_escaped` writes printable ASCII only, so the conversion cannot fail; the fallback
    // keeps this free of a panic path anyway.
    String::from_utf8(raw).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

impl HeaderFp {
    /// The fingerprint of a raw form built by [`header_fingerprint_raw`] for `version`.
    pub fn from_raw(version: HttpVersionTag, raw: String) -> Self {
        let mut id = String::with_capacity(15);
        id.push_str(version.label());
        id.push('_');
        push_sha256_12(&mut id, &raw);
        HeaderFp { id, raw }
    }
}

/// Whether a lowercased name is in [`EXCLUDED`] or starts with one of [`EXCLUDED_PREFIXES`]
/// (a `match`, which compiles to a length switch; a test keeps it equal to the lists).
fn is_excluded(lname: &[u8]) -> bool {
    match lname {
        b"content-length" | b"content-type" | b"content-encoding" | b"transfer-encoding"
        | b"expect" | b"cookie" | b"referer" | b"range" | b"cache-control" | b"pragma"
        | b"forwarded" | b"via" | b"x-real-ip" | b"x-client-ip" | b"true-client-ip"
        | b"cdn-loop" | b"x-amzn-trace-id" => true,
        [b'i', b'f', b'-', ..] | [b'c', b'f', b'-', ..] => true,
        _ => lname.starts_with(b"x-forwarded-") || lname.starts_with(b"x-portcullis-"),
    }
}

/// The raw-form position of a field whose value is kept (lowercased name).
fn selected(lname: &[u8]) -> Option<usize> {
    match lname {
        b"accept" => Some(0),
        b"accept-encoding" => Some(1),
        b"accept-language" => Some(2),
        b"user-agent" => Some(USER_AGENT),
        _ => None,
    }
}

/// The leading token of a user-agent value (RFC 9110 §5.6.2 `tchar`s), which ends at the `/`
/// before the product version, cut to [`MAX_PRODUCT_LEN`] bytes.
fn product_name(v: &[u8]) -> &[u8] {
    let tchar = |b: &u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b);
    let end = v.iter().position(|b| !tchar(b)).unwrap_or(v.len());
    &v[..end.min(MAX_PRODUCT_LEN)]
}

/// Strips optional whitespace (SP and HTAB, RFC 9110 §5.6.3) from both ends.
fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// Appends `bytes`, each byte as itself if it is printable ASCII (space too, unless
/// `name`) and not a delimiter, else as `%XX`.
fn push_escaped(out: &mut Vec<u8>, bytes: &[u8], name: bool) {
    let plain = |b: u8| match b {
        b'%' | b'|' => false,
        b',' | b' ' => !name,
        0x21..=0x7e => true,
        _ => false,
    };
    // Almost every name and value is plain: copy it in one go.
    if bytes.iter().all(|&b| plain(b)) {
        out.extend_from_slice(bytes);
        return;
    }
    for &b in bytes {
        if plain(b) {
            out.push(b);
        } else {
            out.extend_from_slice(&[
                b'%',
                HEX_UPPER[usize::from(b >> 4)],
                HEX_UPPER[usize::from(b & 0xf)],
            ]);
        }
    }
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

fn push_escaped_lower(out: &mut Vec<u8>, bytes: &[u8]) {
    // Values are at most MAX_VALUE_LEN bytes: lowercase through a stack buffer.
    let mut buf = [0u8; MAX_VALUE_LEN];
    let n = bytes.len().min(MAX_VALUE_LEN);
    let v = &mut buf[..n];
    v.copy_from_slice(&bytes[..n]);
    v.make_ascii_lowercase();
    push_escaped(out, v, false);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(version: HttpVersionTag, h: &[(&str, &str)]) -> HeaderFp {
        header_fingerprint(version, h.iter().map(|(n, v)| (*n, v.as_bytes())))
    }

    #[test]
    fn raw_form_and_id() {
        let f = fp(
            HttpVersionTag::H1,
            &[
                ("Host", "localhost:1"),
                ("User-Agent", "curl/7.88.1"),
                ("Accept", "*/*"),
            ],
        );
        assert_eq!(f.raw, "h1|host,user-agent,accept|*/*|||curl");
        // printf 'h1|host,user-agent,accept|*/*|||curl' | sha256sum
        assert_eq!(f.id, "h1_c481056c28cf");
    }

    #[test]
    fn selected_values_are_normalized_and_others_never_appear() {
        let f = fp(
            HttpVersionTag::H2,
            &[
                (":method", "POST"),
                (":authority", "api.example"),
                ("x-api-key", "sk-secret"),
                ("authorization", "Bearer secret"),
                ("cookie", "session=secret"),
                ("accept-encoding", "  GZIP, Deflate\t"),
                ("accept-language", "en-US,en;q=0.9"),
                ("accept", "application/json"),
                ("accept", "text/plain"),
                ("user-agent", " Anthropic/Python 0.40.0"),
                ("content-type", "application/json"),
                ("content-length", "12"),
                ("x-forwarded-for", "10.0.0.1"),
                ("X-Portcullis-Ja4", "spoofed"),
                ("if-none-match", "\"abc\""),
            ],
        );
        assert_eq!(
            f.raw,
            "h2|x-api-key,authorization,accept-encoding,accept-language,accept,user-agent\
             |application/json|gzip, deflate|en-us,en;q=0.9|anthropic"
        );
        assert!(f.id.starts_with("h2_") && f.id.len() == 15);
        assert!(!f.raw.contains("secret"));
    }

    #[test]
    fn first_occurrence_order_matches_a_grouped_map() {
        // Wire order with a repeated name vs. the grouping an http::HeaderMap iterates in.
        let wire = [("a", "1"), ("b", "2"), ("a", "3"), ("c", "4")];
        let grouped = [("a", "1"), ("a", "3"), ("b", "2"), ("c", "4")];
        assert_eq!(
            fp(HttpVersionTag::H1, &wire),
            fp(HttpVersionTag::H1, &grouped)
        );
        assert_eq!(fp(HttpVersionTag::H1, &wire).raw, "h1|a,b,c||||");
        // Case differences are one name.
        assert_eq!(
            fp(HttpVersionTag::H1, &[("X-A", ""), ("x-a", "")]).raw,
            "h1|x-a||||"
        );
    }

    #[test]
    fn order_and_version_change_the_id() {
        let ab = fp(HttpVersionTag::H1, &[("a", ""), ("b", "")]);
        let ba = fp(HttpVersionTag::H1, &[("b", ""), ("a", "")]);
        let ab2 = fp(HttpVersionTag::H2, &[("a", ""), ("b", "")]);
        assert_ne!(ab.id, ba.id);
        assert_ne!(ab.id[3..], ab2.id[3..]);
    }

    #[test]
    fn hostile_input_is_escaped_and_bounded() {
        let long = "x".repeat(1000);
        let mut h: Vec<(String, Vec<u8>)> =
            (0..500).map(|i| (format!("n{i}"), b"v".to_vec())).collect();
        h.insert(0, ("a|b,c%".into(), b"".to_vec()));
        h.insert(1, (long.clone(), b"".to_vec()));
        h.push((
            "accept".into(),
            [b"|%\xff\x01".as_slice(), long.as_bytes()].concat(),
        ));
        let f = header_fingerprint(
            HttpVersionTag::H1,
            h.iter().map(|(n, v)| (n.as_str(), v.as_slice())),
        );
        let (names, rest) = f.raw[3..].split_once('|').expect("raw has fields");
        let names: Vec<&str> = names.split(',').collect();
        assert_eq!(names.len(), MAX_NAMES);
        assert_eq!(names[0], "a%7Cb%2Cc%25");
        assert_eq!(names[1].len(), MAX_NAME_LEN);
        // The accept value is still read after the name cap, escaped and cut.
        let accept = rest.split('|').next().expect("accept field");
        assert!(accept.starts_with("%7C%25%FF%01xxx"));
        assert_eq!(accept.len(), 4 * 3 + MAX_VALUE_LEN - 4);
        assert!(f.raw.len() < 64 * (3 * MAX_NAME_LEN + 1) + 3 * 3 * MAX_VALUE_LEN + 8);
    }

    #[test]
    fn user_agent_product_name() {
        let ua = |v: &str| {
            let f = fp(HttpVersionTag::H1, &[("user-agent", v)]);
            f.raw.rsplit('|').next().unwrap_or_default().to_owned()
        };
        assert_eq!(
            ua("Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/156.0.0.0"),
            "mozilla"
        );
        assert_eq!(ua("curl/7.88.1"), "curl");
        assert_eq!(ua("Go-http-client/2.0"), "go-http-client");
        assert_eq!(ua("OpenAI/Python 1.54.0"), "openai");
        assert_eq!(ua("(compatible)"), "");
        assert_eq!(ua("a|b%/1"), "a%7Cb%25");
        assert_eq!(ua(&"x".repeat(100)).len(), MAX_PRODUCT_LEN);
    }

    #[test]
    fn exclusion_match_equals_the_documented_lists() {
        for name in EXCLUDED {
            assert!(is_excluded(name.as_bytes()), "{name}");
        }
        for p in EXCLUDED_PREFIXES {
            assert!(is_excluded(format!("{p}x").as_bytes()), "{p}");
            assert!(!is_excluded(&p.as_bytes()[1..]), "{p}");
        }
        for kept in [
            "host",
            "if",
            "cf",
            "x-forwarded",
            "accept",
            "authorization",
            "connection",
        ] {
            assert!(!is_excluded(kept.as_bytes()), "{kept}");
        }
        let kept = ["accept", "accept-encoding", "accept-language", "user-agent"];
        for (i, name) in kept.iter().enumerate() {
            assert_eq!(selected(name.as_bytes()), Some(i));
        }
    }

    #[test]
    fn empty_input() {
        let f = fp(HttpVersionTag::H2, &[]);
        assert_eq!(f.raw, "h2|||||");
        assert_eq!(f.id.len(), 15);
    }
}
