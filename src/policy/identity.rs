//! Who is asking: the account (a keyed hash of the API key, never the key itself) and the
//! network (the peer's subnet). Pure: the caller reads the secret and the headers.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::Identity;

/// An account id: HMAC-SHA256(secret, API key) truncated to 16 bytes. Shown as 32 lowercase
/// hex characters in evidence, layer keys and `[policy.lists]`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountId([u8; 16]);

impl AccountId {
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
    /// The first 8 bytes, big-endian: the member a distinct-count layer counts. The bytes are
    /// an HMAC output, so they are already uniform (what HyperLogLog needs).
    pub fn as_u64(&self) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[..8]);
        u64::from_be_bytes(b)
    }
}

impl AccountId {
    /// Appends the 32 lowercase hex digits (the hot path: layer keys; no formatter).
    pub fn push_hex(&self, out: &mut String) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut buf = [0u8; 32];
        for (pair, b) in buf.chunks_exact_mut(2).zip(self.0) {
            pair[0] = HEX[usize::from(b >> 4)];
            pair[1] = HEX[usize::from(b & 0xf)];
        }
        // Hex digits are ASCII, so this never fails.
        if let Ok(hex) = std::str::from_utf8(&buf) {
            out.push_str(hex);
        }
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::with_capacity(32);
        self.push_hex(&mut s);
        f.write_str(&s)
    }
}

impl fmt::Debug for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccountId({self})")
    }
}

/// Not 32 hex characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an account id is 32 hex characters")]
pub struct BadAccountId;

impl FromStr for AccountId {
    type Err = BadAccountId;
    /// 32 hex characters, either case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.as_bytes();
        if s.len() != 32 {
            return Err(BadAccountId);
        }
        let mut out = [0u8; 16];
        for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
            let hi = hex_val(pair[0]).ok_or(BadAccountId)?;
            let lo = hex_val(pair[1]).ok_or(BadAccountId)?;
            *o = hi << 4 | lo;
        }
        Ok(Self(out))
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// The account id of an API key: HMAC-SHA256 keyed with `secret`, first 16 bytes. Without the
/// secret the id cannot be linked back to a key (nor a key guessed from evidence).
pub fn account_id(secret: &[u8], api_key: &str) -> AccountId {
    // ring's HMAC (assembly SHA-256; any key length, RFC 2104 §2).
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let tag = ring::hmac::sign(&key, api_key.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(tag.as_ref().get(..16).unwrap_or(&[0; 16]));
    AccountId(out)
}

/// The API key of a request: the first of `identity`'s headers that is present and non-empty.
/// An `authorization` header counts only as `Bearer <key>` (scheme case-insensitive, RFC 9110
/// §11.1); any other scheme is skipped as if absent. Surrounding whitespace is trimmed.
pub fn extract_api_key<'a>(
    identity: &Identity,
    get: impl Fn(&str) -> Option<&'a str>,
) -> Option<&'a str> {
    identity.api_key_headers().iter().find_map(|name| {
        let v = get(name)?.trim();
        let key = if name == "authorization" {
            let (scheme, rest) = v.split_once(' ')?;
            if !scheme.eq_ignore_ascii_case("bearer") {
                return None;
            }
            rest.trim()
        } else {
            v
        };
        (!key.is_empty()).then_some(key)
    })
}

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) as the IPv4 address it is; others unchanged.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The network of `prefix` bits around `ip` (host bits cleared). IPv4-mapped IPv6 is treated
/// as IPv4; the prefix is capped at the family's width (32 or 128).
pub fn subnet(ip: IpAddr, prefix: u8) -> IpNet {
    match canonical_ip(ip) {
        // The prefix is capped at the width, so `new` cannot fail; the fallback is the host.
        IpAddr::V4(a) => Ipv4Net::new(a, prefix.min(32))
            .map(|n| IpNet::V4(n.trunc()))
            .unwrap_or_else(|_| IpNet::from(IpAddr::V4(a))),
        IpAddr::V6(a) => Ipv6Net::new(a, prefix.min(128))
            .map(|n| IpNet::V6(n.trunc()))
            .unwrap_or_else(|_| IpNet::from(IpAddr::V6(a))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_id_is_hmac_sha256_truncated() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let id = account_id(b"Jefe", "what do ya want for nothing?");
        assert_eq!(id.to_string(), "5bdcc146bf60754e6a042426089575c7");
        assert_eq!(id.as_u64(), 0x5bdcc146bf60754e);
        assert_eq!(
            "5BDCC146BF60754E6A042426089575C7".parse::<AccountId>(),
            Ok(id)
        );
        assert_ne!(account_id(b"other", "what do ya want for nothing?"), id);
    }

    #[test]
    fn account_id_parse_rejects_bad_text() {
        assert_eq!("abc".parse::<AccountId>(), Err(BadAccountId));
        assert_eq!("g".repeat(32).parse::<AccountId>(), Err(BadAccountId));
        assert_eq!("é".repeat(16).parse::<AccountId>(), Err(BadAccountId));
    }

    #[test]
    fn api_key_first_present_header_wins() {
        let id = Identity::default();
        let h = |pairs: &'static [(&'static str, &'static str)]| {
            move |n: &str| pairs.iter().find(|(k, _)| *k == n).map(|(_, v)| *v)
        };
        assert_eq!(
            extract_api_key(
                &id,
                h(&[("x-api-key", "k1"), ("authorization", "Bearer k2")])
            ),
            Some("k1")
        );
        assert_eq!(
            extract_api_key(&id, h(&[("authorization", "Bearer k2")])),
            Some("k2")
        );
        assert_eq!(
            extract_api_key(&id, h(&[("authorization", "bearer  k2 ")])),
            Some("k2")
        );
        assert_eq!(
            extract_api_key(&id, h(&[("authorization", "Basic abc")])),
            None
        );
        assert_eq!(
            extract_api_key(&id, h(&[("authorization", "Bearer")])),
            None
        );
        assert_eq!(
            extract_api_key(&id, h(&[("x-api-key", " "), ("authorization", "Bearer k")])),
            Some("k")
        );
        assert_eq!(extract_api_key(&id, h(&[])), None);
    }

    #[test]
    fn subnets_of_v4_v6_and_mapped() {
        let v4: IpAddr = "203.0.113.77".parse().unwrap();
        assert_eq!(subnet(v4, 24).to_string(), "203.0.113.0/24");
        assert_eq!(subnet(v4, 16).to_string(), "203.0.0.0/16");
        assert_eq!(subnet(v4, 64).to_string(), "203.0.113.77/32");
        let v6: IpAddr = "2001:db8:1:2:3:4:5:6".parse().unwrap();
        assert_eq!(subnet(v6, 64).to_string(), "2001:db8:1:2::/64");
        assert_eq!(subnet(v6, 48).to_string(), "2001:db8:1::/48");
        let mapped: IpAddr = "::ffff:203.0.113.77".parse().unwrap();
        assert_eq!(subnet(mapped, 24).to_string(), "203.0.113.0/24");
        assert_eq!(canonical_ip(mapped), v4);
        let plain6: IpAddr = "::1".parse().unwrap();
        assert_eq!(canonical_ip(plain6), plain6);
    }
}
