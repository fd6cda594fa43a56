//! The validated policy: types that cannot hold an invalid state. Built only by
//! [`super::validate`] (or [`Policy::default`]); read by [`super::decide`] on every request.

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use regex::Regex;

use super::identity::{canonical_ip, AccountId};
use crate::limit;

/// `policy.version` when the file gives none.
pub const DEFAULT_VERSION: &str = "unversioned";

/// A validated policy. Cloning copies the rules; share it in an `Arc` (the gate holds one in an
/// `ArcSwap`) and call [`Policy::plan`](super::Policy::plan) and
/// [`Policy::decide`](super::Policy::decide) on the same instance for one request.
#[derive(Debug, Clone)]
pub struct Policy {
    pub(crate) version: String,
    pub(crate) shadow: bool,
    pub(crate) identity: Identity,
    pub(crate) lists: Lists,
    pub(crate) rules: Vec<Rule>,
    /// `[[policy.clients]]`: known clients, in file order (the first claim wins).
    pub(crate) clients: Vec<KnownClient>,
    /// `policy.relay_gap`: TLS round trip minus TCP round trip at or above which a connection
    /// counts as relayed.
    pub(crate) relay_gap: Duration,
    /// The most ops one request can plan: a window per rate window, one per other rule.
    pub(crate) max_ops: usize,
}

/// `policy.relay_gap` when the file gives none.
pub const DEFAULT_RELAY_GAP: Duration = Duration::from_millis(30);

impl Default for Policy {
    /// No lists, no rules: every request is allowed.
    fn default() -> Self {
        Self {
            version: DEFAULT_VERSION.to_string(),
            shadow: false,
            identity: Identity::default(),
            lists: Lists::default(),
            rules: Vec::new(),
            clients: Vec::new(),
            relay_gap: DEFAULT_RELAY_GAP,
            max_ops: 0,
        }
    }
}

/// How a request's account and network are identified (`[policy.identity]`).
///
/// At most one of `secret_env` / `secret_file` is set (validated). The policy module never
/// reads either: the caller resolves the secret and passes it to
/// [`account_id`](super::identity::account_id). With neither set, the caller chooses (portcullis
/// uses a random per-process secret, so account ids then differ across restarts and proxies).
#[derive(Debug, Clone)]
pub struct Identity {
    pub(crate) api_key_headers: Vec<String>,
    /// Name of the environment variable holding the keyed-hash secret.
    pub secret_env: Option<String>,
    /// Path of a file holding the keyed-hash secret (relative paths: the caller resolves them).
    pub secret_file: Option<PathBuf>,
    pub(crate) subnet_v4: Vec<u8>,
    pub(crate) subnet_v6: Vec<u8>,
}

impl Default for Identity {
    fn default() -> Self {
        Self {
            api_key_headers: vec!["x-api-key".into(), "authorization".into()],
            secret_env: None,
            secret_file: None,
            subnet_v4: vec![24],
            subnet_v6: vec![64, 48],
        }
    }
}

impl Identity {
    /// Lower-case header names tried in order; the first present (and, for `authorization`,
    /// well-formed `Bearer`) one carries the API key.
    pub fn api_key_headers(&self) -> &[String] {
        &self.api_key_headers
    }
    /// IPv4 prefix lengths; the first is `subnet`. Never empty.
    pub fn subnet_v4(&self) -> &[u8] {
        &self.subnet_v4
    }
    /// IPv6 prefix lengths; the first is `subnet`. Never empty.
    pub fn subnet_v6(&self) -> &[u8] {
        &self.subnet_v6
    }
    /// The prefix length `subnet` means for this address.
    pub fn default_prefix(&self, ip: IpAddr) -> u8 {
        self.prefix_for(ip, None)
    }
    /// `subnet/N`: N where N is configured for the address's family, else that family's first.
    pub(crate) fn prefix_for(&self, ip: IpAddr, wanted: Option<u8>) -> u8 {
        let list = match canonical_ip(ip) {
            IpAddr::V4(_) => &self.subnet_v4,
            IpAddr::V6(_) => &self.subnet_v6,
        };
        match wanted {
            Some(n) if list.contains(&n) => n,
            // Lists are validated non-empty; 0 (never used) would only widen the subnet.
            _ => list.first().copied().unwrap_or(0),
        }
    }
}

/// A set of networks, looked up in O(number of distinct prefix lengths), not O(networks).
#[derive(Debug, Clone, Default)]
pub struct CidrSet {
    v4: Vec<(u8, HashSet<u32>)>,
    v6: Vec<(u8, HashSet<u128>)>,
    nets: Vec<IpNet>,
}

fn mask4(bits: u32, prefix: u8) -> u32 {
    bits & u32::MAX
        .checked_shl(32 - u32::from(prefix.min(32)))
        .unwrap_or(0)
}

fn mask6(bits: u128, prefix: u8) -> u128 {
    bits & u128::MAX
        .checked_shl(128 - u32::from(prefix.min(128)))
        .unwrap_or(0)
}

impl CidrSet {
    pub(crate) fn new(nets: Vec<IpNet>) -> Self {
        let mut set = CidrSet::default();
        for net in &nets {
            match net {
                IpNet::V4(n) => {
                    let p = n.prefix_len();
                    let bits = mask4(u32::from(n.network()), p);
                    match set.v4.iter_mut().find(|(q, _)| *q == p) {
                        Some((_, s)) => {
                            s.insert(bits);
                        }
                        None => set.v4.push((p, HashSet::from([bits]))),
                    }
                }
                IpNet::V6(n) => {
                    let p = n.prefix_len();
                    let bits = mask6(u128::from(n.network()), p);
                    match set.v6.iter_mut().find(|(q, _)| *q == p) {
                        Some((_, s)) => {
                            s.insert(bits);
                        }
                        None => set.v6.push((p, HashSet::from([bits]))),
                    }
                }
            }
        }
        set.nets = nets;
        set
    }

    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// The networks as configured.
    pub fn nets(&self) -> &[IpNet] {
        &self.nets
    }

    /// The configured network containing `ip` (IPv4-mapped IPv6 counts as IPv4), if any.
    pub fn find(&self, ip: IpAddr) -> Option<IpNet> {
        let ip = canonical_ip(ip);
        match ip {
            IpAddr::V4(a) => {
                let bits = u32::from(a);
                self.v4
                    .iter()
                    .find(|(p, s)| s.contains(&mask4(bits, *p)))
                    .and_then(|(p, _)| IpNet::new(ip, *p).ok().map(|n| n.trunc()))
            }
            IpAddr::V6(a) => {
                let bits = u128::from(a);
                self.v6
                    .iter()
                    .find(|(p, s)| s.contains(&mask6(bits, *p)))
                    .and_then(|(p, _)| IpNet::new(ip, *p).ok().map(|n| n.trunc()))
            }
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.find(ip).is_some()
    }
}

/// `[policy.lists]`: checked before any rule. Deny beats allow; allow skips every rule.
#[derive(Debug, Clone)]
pub struct Lists {
    pub(crate) allow_accounts: HashSet<AccountId>,
    pub(crate) deny_accounts: HashSet<AccountId>,
    pub(crate) allow_ja4: HashSet<String>,
    pub(crate) deny_ja4: HashSet<String>,
    pub(crate) allow_ja3: HashSet<String>,
    pub(crate) deny_ja3: HashSet<String>,
    pub(crate) allow_cidrs: CidrSet,
    pub(crate) deny_cidrs: CidrSet,
    pub(crate) deny_status: u16,
}

impl Default for Lists {
    fn default() -> Self {
        Self {
            allow_accounts: HashSet::new(),
            deny_accounts: HashSet::new(),
            allow_ja4: HashSet::new(),
            deny_ja4: HashSet::new(),
            allow_ja3: HashSet::new(),
            deny_ja3: HashSet::new(),
            allow_cidrs: CidrSet::default(),
            deny_cidrs: CidrSet::default(),
            deny_status: 403,
        }
    }
}

impl Lists {
    /// No list has an entry: nothing for `plan` to check.
    pub fn is_empty(&self) -> bool {
        self.allow_accounts.is_empty()
            && self.deny_accounts.is_empty()
            && self.allow_ja4.is_empty()
            && self.deny_ja4.is_empty()
            && self.allow_ja3.is_empty()
            && self.deny_ja3.is_empty()
            && self.allow_cidrs.is_empty()
            && self.deny_cidrs.is_empty()
    }

    /// The status a deny-listed request is rejected with.
    pub fn deny_status(&self) -> u16 {
        self.deny_status
    }
}

/// One part of a rule's key: what the layer is counted per.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyPart {
    /// The account id; requests without an API key share the `anonymous` key.
    Account,
    /// The peer address (IPv4-mapped IPv6 as IPv4).
    Ip,
    /// The peer's subnet at the family's first configured prefix.
    Subnet,
    /// `subnet/N`: N for the family it is configured for, the family's first prefix otherwise.
    SubnetPrefix(u8),
    /// JA3 MD5 hash.
    Ja3,
    /// JA4.
    Ja4,
    /// The rule's `when.routes` entry the request matched (bounded: never the raw path).
    Route,
    /// The User-Agent header.
    UserAgent,
    /// The portcullis header fingerprint id (docs/fingerprints.md).
    HeaderFp,
    /// The HTTP/2 fingerprint hash ("-" on HTTP/1.1).
    H2,
    /// The `[[policy.clients]]` name the request claims to be, or `none`.
    Claim,
    /// `relay`, `direct`, or `-` when the connection was not measured (plain listener).
    Relay,
}

impl KeyPart {
    /// The part's name without any prefix length (`subnet/N` → `subnet`).
    pub fn name(self) -> &'static str {
        match self {
            KeyPart::Account => "account",
            KeyPart::Ip => "ip",
            KeyPart::Subnet | KeyPart::SubnetPrefix(_) => "subnet",
            KeyPart::Ja3 => "ja3",
            KeyPart::Ja4 => "ja4",
            KeyPart::Route => "route",
            KeyPart::UserAgent => "user_agent",
            KeyPart::HeaderFp => "header_fp",
            KeyPart::H2 => "h2",
            KeyPart::Claim => "claim",
            KeyPart::Relay => "relay",
        }
    }
}

impl fmt::Display for KeyPart {
    /// As written in a policy: `account`, `subnet/48`, ...
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyPart::SubnetPrefix(n) => write!(f, "subnet/{n}"),
            other => f.write_str(other.name()),
        }
    }
}

/// What a distinct-count rule counts per key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CountOf {
    Account,
    Subnet,
    Ip,
    Ja3,
    Ja4,
    UserAgent,
}

impl CountOf {
    pub fn name(self) -> &'static str {
        match self {
            CountOf::Account => "account",
            CountOf::Subnet => "subnet",
            CountOf::Ip => "ip",
            CountOf::Ja3 => "ja3",
            CountOf::Ja4 => "ja4",
            CountOf::UserAgent => "user_agent",
        }
    }
}

/// One window of a rate rule: `count` per `period`, GCRA with `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateWindow {
    count: NonZeroU32,
    period: Duration,
    burst: NonZeroU32,
    /// Precomputed: every request with this window needs it.
    rate: limit::Rate,
}

impl RateWindow {
    pub(crate) fn new(count: NonZeroU32, period: Duration, burst: NonZeroU32) -> Self {
        let rate = limit::Rate {
            emission: period / count.get(),
            burst: burst.get(),
        };
        Self {
            count,
            period,
            burst,
            rate,
        }
    }
    pub fn count(&self) -> NonZeroU32 {
        self.count
    }
    pub fn period(&self) -> Duration {
        self.period
    }
    pub fn burst(&self) -> NonZeroU32 {
        self.burst
    }
    /// The GCRA parameters for the store: one unit every `period / count`.
    pub fn rate(&self) -> limit::Rate {
        self.rate
    }
}

/// The kind of limit a rule applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Limit {
    /// One GCRA op per window, all on the same key (validated: 1..=8 windows, distinct periods).
    Rate(Vec<RateWindow>),
    /// At most `max` requests in flight per key.
    Concurrency { max: NonZeroU32 },
    /// At most `max` distinct `count` values per key per sliding `window`.
    Distinct {
        count: CountOf,
        max: NonZeroU32,
        window: Duration,
    },
    /// No counter: every request the rule's `when` matches is a hit.
    Match,
}

/// What a denied layer does to the request (unless in shadow mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Answer with `status` (400..=599) and `Retry-After`.
    Reject { status: u16 },
    /// Forward, marked; never blocks.
    Flag,
    /// Hold the request for the delay (≤ 30 s), then forward it.
    Tarpit(Duration),
}

/// `"[METHOD ]PATH_PREFIX"`: method (case-sensitive) if given, and a plain path prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub(crate) text: String,
    pub(crate) method: Option<String>,
    pub(crate) prefix: String,
}

impl Route {
    pub fn matches(&self, method: &str, path: &str) -> bool {
        self.method.as_deref().map_or(true, |m| m == method) && path.starts_with(&self.prefix)
    }
    /// As written in the policy; this is the `route` key part's value.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// `[policy.rules.when]`: every given condition must hold; an absent one always holds.
#[derive(Debug, Clone, Default)]
pub struct Conditions {
    pub(crate) routes: Vec<Route>,
    pub(crate) ja4: Option<HashSet<String>>,
    pub(crate) ja3: Option<HashSet<String>>,
    pub(crate) cidrs: Option<CidrSet>,
    pub(crate) user_agent: Option<Regex>,
    pub(crate) has_account: Option<bool>,
    pub(crate) header_fp: Option<HashSet<String>>,
    pub(crate) h2: Option<HashSet<String>>,
    /// `true`: the connection is relayed; `false`: it was measured and is direct.
    pub(crate) relay: Option<bool>,
    /// `true`: the request claims a known client and a fingerprint contradicts it.
    pub(crate) claim_mismatch: Option<bool>,
}

impl Conditions {
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
    pub fn user_agent(&self) -> Option<&Regex> {
        self.user_agent.as_ref()
    }
    pub fn has_account(&self) -> Option<bool> {
        self.has_account
    }
    /// No condition at all: the rule applies to every request.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
            && self.ja4.is_none()
            && self.ja3.is_none()
            && self.cidrs.is_none()
            && self.user_agent.is_none()
            && self.has_account.is_none()
            && self.header_fp.is_none()
            && self.h2.is_none()
            && self.relay.is_none()
            && self.claim_mismatch.is_none()
    }
}

/// `[[policy.clients]]`: a client the traffic may claim to be, and the fingerprints it is
/// known to have. A layer without a set is not compared.
#[derive(Debug, Clone)]
pub struct KnownClient {
    pub(crate) name: Arc<str>,
    /// A User-Agent that matches claims this client.
    pub(crate) user_agent: Option<Regex>,
    /// Lower-case header names that, all present, claim this client.
    pub(crate) headers: Vec<String>,
    pub(crate) ja4: Option<HashSet<String>>,
    pub(crate) ja3: Option<HashSet<String>>,
    pub(crate) header_fp: Option<HashSet<String>>,
    pub(crate) h2: Option<HashSet<String>>,
}

impl KnownClient {
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// One validated rule.
/// What a rule does when the counter store cannot answer (Redis down or slow).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnStoreError {
    /// Skip the rule: availability over enforcement (the default).
    #[default]
    Open,
    /// Reject the request (503): enforcement over availability.
    Closed,
    /// Enforce the rule on this proxy alone with its limits divided by `store.fleet_size`.
    Local,
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub(crate) name: Arc<str>,
    pub(crate) key: Vec<KeyPart>,
    pub(crate) limit: Limit,
    pub(crate) action: Action,
    pub(crate) shadow: bool,
    pub(crate) hide_headers: bool,
    pub(crate) on_store_error: OnStoreError,
    pub(crate) when: Conditions,
    /// The `RateLimit-Policy` value of each window of a rate rule (none for other limits),
    /// built at load: it never changes, and a request with a rate layer needs one.
    pub(crate) rate_policy: Vec<http::HeaderValue>,
}

impl Rule {
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn key(&self) -> &[KeyPart] {
        &self.key
    }
    pub fn limit(&self) -> &Limit {
        &self.limit
    }
    pub fn action(&self) -> Action {
        self.action
    }
    /// This rule only: evaluate, count, record, never block.
    pub fn shadow(&self) -> bool {
        self.shadow
    }
    pub fn hide_headers(&self) -> bool {
        self.hide_headers
    }
    pub fn on_store_error(&self) -> OnStoreError {
        self.on_store_error
    }
    pub fn when(&self) -> &Conditions {
        &self.when
    }
}
