//! PROXY protocol v1 (text) and v2 (binary) headers, accepted only from trusted peers.
//!
//! A load balancer in front of portcullis prefixes each connection with the real client's
//! address (haproxy.org `proxy-protocol.txt`). Parsing is done by the `ppp` crate; this module
//! decides what counts as complete, what is an error and which address wins.

use std::net::SocketAddr;

use ppp::{v1, v2, HeaderResult, PartialResult};

/// Outcome of looking at the bytes read so far.
#[derive(Debug, PartialEq, Eq)]
pub enum ProxyHeader {
    /// Need more bytes.
    Incomplete,
    /// A complete header of `len` bytes; `source` is the client it names (None for
    /// `UNKNOWN`/`LOCAL`, where the TCP peer stays the client).
    Complete {
        len: usize,
        source: Option<SocketAddr>,
    },
}

/// Largest header we wait for: v1 is at most 107 bytes; v2 is 16 + a length field. Bounded so a
/// trusted-but-broken peer cannot make us buffer without limit.
pub const MAX_PROXY_HEADER: usize = 16 + 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProxyHeaderError {
    #[error("invalid PROXY protocol header")]
    Invalid,
    #[error("PROXY protocol header too large")]
    TooLarge,
}

/// Parses a PROXY v1 or v2 header at the start of `buf`.
pub fn parse(buf: &[u8]) -> Result<ProxyHeader, ProxyHeaderError> {
    let res = HeaderResult::parse(buf);
    if res.is_incomplete() {
        return if buf.len() >= MAX_PROXY_HEADER {
            Err(ProxyHeaderError::TooLarge)
        } else {
            Ok(ProxyHeader::Incomplete)
        };
    }
    match res {
        HeaderResult::V1(Ok(h)) => {
            let source = match h.addresses {
                v1::Addresses::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
                v1::Addresses::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
                v1::Addresses::Unknown => None,
            };
            Ok(ProxyHeader::Complete {
                len: h.header.len(),
                source,
            })
        }
        HeaderResult::V2(Ok(h)) => {
            if h.len() > MAX_PROXY_HEADER {
                return Err(ProxyHeaderError::TooLarge);
            }
            let source = match (h.command, h.addresses) {
                (v2::Command::Local, _) => None,
                (_, v2::Addresses::IPv4(a)) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                (_, v2::Addresses::IPv6(a)) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                _ => None,
            };
            Ok(ProxyHeader::Complete {
                len: h.len(),
                source,
            })
        }
        _ => Err(ProxyHeaderError::Invalid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_tcp4() {
        let buf = b"PROXY TCP4 203.0.113.7 127.0.0.1 5555 443\r\n\x16\x03\x01";
        let got = parse(buf).expect("valid");
        assert_eq!(
            got,
            ProxyHeader::Complete {
                len: 43,
                source: Some("203.0.113.7:5555".parse().expect("addr"))
            }
        );
    }

    #[test]
    fn v1_prefix_is_incomplete() {
        assert_eq!(parse(b"PROXY TCP4 203.0."), Ok(ProxyHeader::Incomplete));
    }

    #[test]
    fn v2_tcp6() {
        let mut b = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        b.extend_from_slice(&[0x21, 0x21, 0, 36]);
        let src: std::net::Ipv6Addr = "2001:db8::1".parse().expect("v6");
        b.extend_from_slice(&src.octets());
        b.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
        b.extend_from_slice(&[0x30, 0x39, 0x01, 0xbb]);
        let got = parse(&b).expect("valid");
        assert_eq!(
            got,
            ProxyHeader::Complete {
                len: 52,
                source: Some("[2001:db8::1]:12345".parse().expect("addr"))
            }
        );
        assert_eq!(parse(&b[..20]), Ok(ProxyHeader::Incomplete));
    }

    #[test]
    fn garbage_is_invalid() {
        assert_eq!(
            parse(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),
            Err(ProxyHeaderError::Invalid)
        );
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\n\r\n"),
            Err(ProxyHeaderError::Invalid)
        );
    }
}
