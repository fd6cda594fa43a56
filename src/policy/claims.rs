//! Claimed client against observed fingerprints (`[[policy.clients]]`), and the relay signal.
//!
//! A request *claims* a known client when its User-Agent matches the client's `user_agent`
//! regex or when it carries every header the client lists in `headers` (SDKs send their own,
//! e.g. `x-stainless-lang`). The claim is then checked layer by layer against the client's
//! known sets: a layer whose observed value is missing from its set is a *mismatch*. A layer
//! the client gives no set for, or one the request does not have (no JA4 on the plaintext
//! listener, no HTTP/2 fingerprint on HTTP/1.1), is not compared.

use std::collections::HashSet;
use std::time::Duration;

use super::decide::RequestFacts;
use super::types::{KnownClient, Policy};

/// A set of fingerprint layers (bit flags), listed in a fixed order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Layers(u8);

impl Layers {
    pub const JA4: Layers = Layers(1);
    pub const JA3: Layers = Layers(2);
    pub const HEADER_FP: Layers = Layers(4);
    pub const H2: Layers = Layers(8);
    const ALL: [(Layers, &'static str); 4] = [
        (Self::JA4, "ja4"),
        (Self::JA3, "ja3"),
        (Self::HEADER_FP, "header_fp"),
        (Self::H2, "h2"),
    ];

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn contains(self, other: Layers) -> bool {
        self.0 & other.0 == other.0
    }
    fn insert(&mut self, other: Layers) {
        self.0 |= other.0;
    }
    /// The layer names in order: `ja4`, `ja3`, `header_fp`, `h2`.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Self::ALL
            .into_iter()
            .filter(move |(l, _)| self.contains(*l))
            .map(|(_, n)| n)
    }
    /// The names joined with `,` (an upstream header value and evidence field).
    pub fn join(self) -> String {
        self.names().collect::<Vec<_>>().join(",")
    }
}

/// The known client a request claims to be, and where its fingerprints contradict that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    /// Position in [`Policy::clients`].
    pub client: usize,
    pub mismatch: Layers,
}

impl Claim {
    pub fn is_mismatch(&self) -> bool {
        !self.mismatch.is_empty()
    }
}

impl KnownClient {
    fn claimed_by(&self, user_agent: Option<&str>, has_header: &dyn Fn(&str) -> bool) -> bool {
        let by_agent = self
            .user_agent
            .as_ref()
            .is_some_and(|re| user_agent.is_some_and(|ua| re.is_match(ua)));
        let by_headers = !self.headers.is_empty() && self.headers.iter().all(|h| has_header(h));
        by_agent || by_headers
    }

    fn compare(&self, f: &RequestFacts<'_>) -> Layers {
        let mut out = Layers::default();
        let mut check = |set: &Option<HashSet<String>>, seen: Option<&str>, layer: Layers| {
            if let (Some(set), Some(v)) = (set, seen) {
                if !set.contains(v) {
                    out.insert(layer);
                }
            }
        };
        check(&self.ja4, f.ja4, Layers::JA4);
        check(&self.ja3, f.ja3_hash, Layers::JA3);
        check(&self.header_fp, f.header_fp, Layers::HEADER_FP);
        check(&self.h2, f.h2_fp, Layers::H2);
        out
    }
}

impl Policy {
    /// `[[policy.clients]]`, in file order.
    pub fn clients(&self) -> &[KnownClient] {
        &self.clients
    }

    /// `policy.relay_gap`.
    pub fn relay_gap(&self) -> Duration {
        self.relay_gap
    }

    /// Whether a connection whose TLS round trip exceeds its TCP round trip by `gap` is
    /// relayed; `None` when it was not measured.
    pub fn is_relay(&self, gap: Option<Duration>) -> Option<bool> {
        gap.map(|g| g >= self.relay_gap)
    }

    /// The first known client the request claims (by `f.user_agent` or by the headers
    /// `has_header` finds), compared on every layer it has a set for. `None`: no claim.
    pub fn claim(&self, f: &RequestFacts<'_>, has_header: &dyn Fn(&str) -> bool) -> Option<Claim> {
        let (client, c) = self
            .clients
            .iter()
            .enumerate()
            .find(|(_, c)| c.claimed_by(f.user_agent, has_header))?;
        Some(Claim {
            client,
            mismatch: c.compare(f),
        })
    }

    /// The name of the client a claim names.
    pub fn client_name(&self, claim: &Claim) -> &str {
        self.clients.get(claim.client).map_or("none", |c| c.name())
    }
}
