//! The decision, in two pure steps around one counter-store call:
//!
//! 1. [`Policy::plan`]: request facts → the lists (deny, then allow) → every matching rule's
//!    ops: one per rate window, one per concurrency or distinct rule.
//! 2. The caller runs the ops in the store ([`crate::limit::CounterStore::evaluate`]).
//! 3. [`Policy::decide`]: the outcomes → the hits, the verdict and the RateLimit headers.
//!
//! Call both steps on the same `Policy` instance: the plan refers to rules by position.
//!
//! Layer keys are `{rule}|{part}={value}|...`, plus `|w{i}` for rate window `i`. A missing value
//! is `-`, a missing account `anonymous` (requests without a key are their own class). Values
//! the client controls (user agent) are kept verbatim only when short and free of `|`, `{`, `}`
//! and control characters; otherwise they become `#` + 16 hex digits of their SHA-256, so a key
//! stays bounded and a Redis Cluster hash tag in the store's key cannot be forged.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use ipnet::IpNet;

use super::identity::{canonical_ip, subnet, AccountId};
use super::types::{Action, Conditions, CountOf, KeyPart, Limit, Policy, RateWindow, Route};
use crate::limit::{Evaluation, Op, OpSpec, Outcome};

/// What the proxy knows about a request, borrowed for the call.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    /// The keyed hash of the API key ([`super::identity::account_id`]); `None`: no key.
    pub account: Option<AccountId>,
    /// The client's address (after a trusted PROXY header).
    pub ip: IpAddr,
    /// JA3 MD5, lowercase hex.
    pub ja3_hash: Option<&'a str>,
    pub ja4: Option<&'a str>,
    pub method: &'a str,
    /// The path without the query. Routes match it as a plain prefix, unnormalised.
    pub path: &'a str,
    pub user_agent: Option<&'a str>,
    /// portcullis header fingerprint id (`fingerprint::http`).
    pub header_fp: Option<&'a str>,
    /// HTTP/2 fingerprint hash (`fingerprint::h2`); `None` on HTTP/1.1.
    pub h2_fp: Option<&'a str>,
    /// The known client the request claims ([`Policy::claim`](super::Policy::claim)); `None`:
    /// no claim, or the policy lists no clients.
    pub claim: Option<super::Claim>,
    /// Whether the connection is relayed ([`Policy::is_relay`](super::Policy::is_relay));
    /// `None`: not measured.
    pub relay: Option<bool>,
}

/// An owned copy of [`RequestFacts`]: kept beside a plan made from them (the gate's
/// per-connection plan cache), it tells whether the next request's facts are the same, and so
/// whether that plan is its plan too ([`Policy::plan`] depends on the policy and the facts
/// alone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactsKey {
    account: Option<AccountId>,
    ip: IpAddr,
    /// JA3 hash, JA4.
    tls: [Option<Box<str>>; 2],
    /// Method, path.
    request: [Box<str>; 2],
    /// User agent, header fingerprint, HTTP/2 fingerprint.
    client: [Option<Box<str>>; 3],
    claim: Option<super::Claim>,
    relay: Option<bool>,
}

/// Every fact of a request, borrowed, grouped as in [`FactsKey`].
type FactParts<'a> = (
    Option<AccountId>,
    IpAddr,
    [Option<&'a str>; 2],
    [&'a str; 2],
    [Option<&'a str>; 3],
    Option<super::Claim>,
    Option<bool>,
);

fn parts<'a>(f: &RequestFacts<'a>) -> FactParts<'a> {
    // Destructured, so that a new field of `RequestFacts` cannot be forgotten here.
    let RequestFacts {
        account,
        ip,
        ja3_hash,
        ja4,
        method,
        path,
        user_agent,
        header_fp,
        h2_fp,
        claim,
        relay,
    } = *f;
    let tls = [ja3_hash, ja4];
    let client = [user_agent, header_fp, h2_fp];
    (account, ip, tls, [method, path], client, claim, relay)
}

impl FactsKey {
    pub fn new(f: &RequestFacts<'_>) -> Self {
        let p = parts(f);
        Self {
            account: p.0,
            ip: p.1,
            tls: p.2.map(|v| v.map(Box::from)),
            request: p.3.map(Box::from),
            client: p.4.map(|v| v.map(Box::from)),
            claim: p.5,
            relay: p.6,
        }
    }

    /// Whether `f` holds the same facts.
    pub fn matches(&self, f: &RequestFacts<'_>) -> bool {
        let mine: FactParts<'_> = (
            self.account,
            self.ip,
            self.tls.each_ref().map(|v| v.as_deref()),
            self.request.each_ref().map(|v| &**v),
            self.client.each_ref().map(|v| v.as_deref()),
            self.claim,
            self.relay,
        );
        mine == parts(f)
    }
}

/// The ops to evaluate for one request, and (privately) where each came from.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub ops: Vec<OpSpec>,
    origins: Vec<Origin>,
    /// Hits decided without a counter: `match` rules, and deny-list hits in global shadow mode
    /// (not enforced, so planning went on).
    pre_hits: Vec<Hit>,
    /// For the counter store, when the plan is evaluated again (a cached plan).
    pub memo: crate::limit::OpsMemo,
}

#[derive(Debug, Clone, Copy)]
struct Origin {
    rule: u32,
    window: u8,
}

impl Plan {
    /// The rule each op came from (same order as `ops`).
    pub fn rule_indices(&self) -> impl Iterator<Item = usize> + '_ {
        self.origins.iter().map(|o| o.rule as usize)
    }
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.pre_hits.is_empty()
    }
}

/// A decision made from the lists alone, before any counter is touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Early {
    /// Allow-listed: no rule applies.
    Allow,
    /// Deny-listed: reject with the hit's status (`[policy.lists] deny_status`).
    Deny(Hit),
}

impl Early {
    /// The same decision in the shape [`Policy::decide`] returns.
    pub fn into_decision(self) -> Decision {
        match self {
            Early::Allow => Decision {
                verdict: Verdict::Allow,
                hits: Vec::new(),
                ratelimit: None,
            },
            Early::Deny(hit) => {
                let status = match hit.action {
                    Action::Reject { status } => status,
                    Action::Flag | Action::Tarpit(_) => 403,
                };
                Decision {
                    verdict: Verdict::Reject {
                        status,
                        retry_after: hit.retry_after,
                    },
                    hits: vec![hit],
                    ratelimit: None,
                }
            }
        }
    }
}

/// One denied layer: what evidence records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// The rule name (`deny-list` for the deny lists).
    pub rule: Arc<str>,
    pub layer_key: String,
    pub current: u64,
    pub limit: u64,
    pub retry_after: Duration,
    pub action: Action,
    /// Not enforced: global or per-rule shadow mode.
    pub shadow: bool,
}

/// What to do with the request. A rejection is a value, not an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Reject {
        status: u16,
        retry_after: Duration,
    },
    /// Forward, marked (flag rules, shadow mode).
    Flag,
    /// Hold the request this long, then forward it.
    Tarpit(Duration),
}

/// The verdict, every denied layer (shadow ones included) and the RateLimit header values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    pub hits: Vec<Hit>,
    pub ratelimit: Option<RateLimitHeaders>,
}

/// Values for `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers,
/// structured-field form): `"name";q=60;w=60` and `"name";r=12;t=30`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitHeaders {
    /// Made once per rule and window when the policy was loaded.
    pub policy: HeaderValue,
    pub ratelimit: String,
}

/// The `RateLimit-Policy` value of one window of a rate rule: `"name";q=60;w=60`.
pub(crate) fn rate_policy_value(name: &str, win: &RateWindow) -> HeaderValue {
    let q = u64::from(win.count().get());
    let out = ratelimit_item(name, ("q", q), ("w", ceil_secs(win.period())));
    // Rule names are `[a-z0-9_-]`: the value is always valid.
    HeaderValue::try_from(out).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// One structured-field item of the RateLimit headers: `"name";a=1;b=2`. Built by hand, not
/// with `format!`: `RateLimit` is built on every request with a rate layer.
fn ratelimit_item(name: &str, a: (&str, u64), b: (&str, u64)) -> String {
    let mut out = String::with_capacity(name.len() + 32);
    out.push('"');
    out.push_str(name);
    out.push('"');
    for (key, n) in [a, b] {
        out.push(';');
        out.push_str(key);
        out.push('=');
        push_u64(&mut out, n);
    }
    out
}

const DENY_LIST: &str = "deny-list";

impl Policy {
    /// Lists first (deny beats allow; allow skips every rule), then every matching rule.
    ///
    /// In global shadow mode a deny-listed request is not rejected here: the hit goes into the
    /// plan, the allow list is not consulted, and the rules are planned as usual, so
    /// [`decide`](Self::decide) reports it (verdict `Flag`).
    pub fn plan(&self, f: &RequestFacts<'_>) -> Result<Plan, Early> {
        let mut plan = Plan::default();
        if let Some(hit) = self.deny_listed(f) {
            if !self.shadow {
                return Err(Early::Deny(hit));
            }
            plan.pre_hits.push(hit);
        } else if self.allow_listed(f) {
            return Err(Early::Allow);
        }
        // Sized once for the most ops any request can have (0 with no rules: no allocation).
        plan.ops.reserve_exact(self.max_ops);
        plan.origins.reserve_exact(self.max_ops);
        for (i, rule) in self.rules.iter().enumerate() {
            let Some(route) = rule.when.applies(f) else {
                continue;
            };
            // A distinct rule with nothing to count (e.g. no account) adds no member: no op.
            let member = match &rule.limit {
                Limit::Distinct { count, .. } => match self.member(*count, f) {
                    Some(m) => m,
                    None => continue,
                },
                Limit::Rate(_) | Limit::Concurrency { .. } | Limit::Match => 0,
            };
            let enforce = !(self.shadow || rule.shadow) && rule.action != Action::Flag;
            let mut key = String::with_capacity(rule.name.len() + 48 * rule.key.len() + 4);
            key.push_str(&rule.name);
            for part in &rule.key {
                key.push('|');
                self.write_part(&mut key, *part, f, route);
            }
            // Rule positions fit in u32 and windows in u8 (validated: at most 8 per rule).
            let rule_ix = u32::try_from(i).unwrap_or(u32::MAX);
            match &rule.limit {
                Limit::Rate(windows) => {
                    let n = windows.len();
                    for (w, win) in windows.iter().enumerate() {
                        // The last window takes the base key itself: one allocation fewer.
                        let mut k = if w + 1 == n {
                            std::mem::take(&mut key)
                        } else {
                            let mut k = String::with_capacity(key.len() + 3);
                            k.push_str(&key);
                            k
                        };
                        // At most 8 windows (validated): `w` is one digit and fits in u8.
                        let w8 = u8::try_from(w).unwrap_or(u8::MAX);
                        k.push_str("|w");
                        push_u8(&mut k, w8);
                        let op = Op::Rate {
                            key: k,
                            rate: win.rate(),
                            cost: 1,
                        };
                        plan.push(op, enforce, rule_ix, w8);
                    }
                }
                Limit::Concurrency { max } => {
                    let op = Op::Concurrency {
                        key,
                        max: max.get(),
                    };
                    plan.push(op, enforce, rule_ix, 0);
                }
                Limit::Distinct { max, window, .. } => {
                    let op = Op::Distinct {
                        key,
                        member,
                        max: max.get(),
                        window: *window,
                    };
                    plan.push(op, enforce, rule_ix, 0);
                }
                Limit::Match => plan.pre_hits.push(Hit {
                    rule: Arc::clone(&rule.name),
                    layer_key: key,
                    current: 1,
                    limit: 0,
                    retry_after: Duration::ZERO,
                    action: rule.action,
                    shadow: self.shadow || rule.shadow,
                }),
            }
        }
        Ok(plan)
    }

    /// Outcomes (same order as `plan.ops`) → hits, verdict and RateLimit headers.
    ///
    /// Verdict precedence: an enforced reject (status of the first such layer, `retry_after`
    /// the longest) → an enforced tarpit (the longest delay) → any hit at all (flag or shadow)
    /// → allow.
    pub fn decide(&self, plan: &Plan, eval: &Evaluation) -> Decision {
        debug_assert_eq!(eval.outcomes.len(), plan.ops.len(), "one outcome per op");
        let mut hits = plan.pre_hits.clone();
        // (remaining, time to reset, rule, window) of the most restrictive visible rate layer.
        let mut tightest: Option<(u64, Duration, usize, usize)> = None;
        for ((spec, outcome), origin) in plan.ops.iter().zip(&eval.outcomes).zip(&plan.origins) {
            let ix = origin.rule as usize;
            let Some(rule) = self.rules.get(ix) else {
                continue;
            };
            if let Outcome::Denied {
                current,
                limit,
                retry_after,
            } = *outcome
            {
                hits.push(Hit {
                    rule: Arc::clone(&rule.name),
                    layer_key: spec.op.key().to_string(),
                    current,
                    limit,
                    retry_after,
                    action: rule.action,
                    shadow: self.shadow || rule.shadow,
                });
            }
            // Headers describe only limits that are enforced: advertising a shadow or flag
            // rule would tell a campaign what is being watched.
            let visible = spec.enforce && !rule.hide_headers;
            if visible && matches!(rule.limit, Limit::Rate(_)) {
                let (remaining, reset) = match *outcome {
                    Outcome::Allowed { remaining, reset } => (remaining, reset),
                    Outcome::Denied { retry_after, .. } => (0, retry_after),
                };
                let tighter = tightest.map_or(true, |(r, t, _, _)| {
                    remaining < r || (remaining == r && reset > t)
                });
                if tighter {
                    tightest = Some((remaining, reset, ix, usize::from(origin.window)));
                }
            }
        }
        let ratelimit = tightest.and_then(|(remaining, reset, ix, w)| {
            let rule = self.rules.get(ix)?;
            // Only a rate rule has these values, one per window.
            Some(RateLimitHeaders {
                policy: rule.rate_policy.get(w)?.clone(),
                ratelimit: ratelimit_item(&rule.name, ("r", remaining), ("t", ceil_secs(reset))),
            })
        });
        Decision {
            verdict: verdict(&hits),
            hits,
            ratelimit,
        }
    }

    fn deny_listed(&self, f: &RequestFacts<'_>) -> Option<Hit> {
        let l = &self.lists;
        let key = if let Some(a) = f.account.filter(|a| l.deny_accounts.contains(a)) {
            format!("{DENY_LIST}|account={a}")
        } else if let Some(j) = f.ja4.filter(|j| l.deny_ja4.contains(*j)) {
            let mut k = format!("{DENY_LIST}|ja4=");
            push_value(&mut k, Some(j));
            k
        } else if let Some(j) = f.ja3_hash.filter(|j| l.deny_ja3.contains(*j)) {
            let mut k = format!("{DENY_LIST}|ja3=");
            push_value(&mut k, Some(j));
            k
        } else if let Some(net) = l.deny_cidrs.find(f.ip) {
            format!("{DENY_LIST}|cidr={net}")
        } else {
            return None;
        };
        Some(Hit {
            rule: Arc::from(DENY_LIST),
            layer_key: key,
            current: 1,
            limit: 0,
            retry_after: Duration::ZERO,
            action: Action::Reject {
                status: l.deny_status,
            },
            shadow: self.shadow,
        })
    }

    fn allow_listed(&self, f: &RequestFacts<'_>) -> bool {
        let l = &self.lists;
        f.account.is_some_and(|a| l.allow_accounts.contains(&a))
            || f.ja4.is_some_and(|j| l.allow_ja4.contains(j))
            || f.ja3_hash.is_some_and(|j| l.allow_ja3.contains(j))
            || (!l.allow_cidrs.is_empty() && l.allow_cidrs.contains(f.ip))
    }

    fn write_part(
        &self,
        key: &mut String,
        part: KeyPart,
        f: &RequestFacts<'_>,
        route: Option<&Route>,
    ) {
        match part {
            KeyPart::SubnetPrefix(n) => {
                key.push_str("subnet/");
                push_u8(key, n);
                key.push('=');
            }
            _ => {
                key.push_str(part.name());
                key.push('=');
            }
        }
        match part {
            KeyPart::Account => match f.account {
                Some(a) => a.push_hex(key),
                None => key.push_str("anonymous"),
            },
            KeyPart::Ip => push_ip(key, f.ip),
            KeyPart::Subnet => push_subnet(key, f.ip, self.identity.prefix_for(f.ip, None)),
            KeyPart::SubnetPrefix(n) => {
                push_subnet(key, f.ip, self.identity.prefix_for(f.ip, Some(n)))
            }
            KeyPart::Ja3 => push_value(key, f.ja3_hash),
            KeyPart::Ja4 => push_value(key, f.ja4),
            KeyPart::Route => push_value(key, route.map(Route::as_str)),
            KeyPart::UserAgent => push_value(key, f.user_agent),
            KeyPart::HeaderFp => push_value(key, f.header_fp),
            KeyPart::H2 => push_value(key, f.h2_fp),
            KeyPart::Claim => {
                key.push_str(f.claim.as_ref().map_or("none", |c| self.client_name(c)));
            }
            KeyPart::Relay => key.push_str(match f.relay {
                Some(true) => "relay",
                Some(false) => "direct",
                None => "-",
            }),
        }
    }

    /// The distinct-count member: account ids as they are (already uniform), anything else the
    /// first 8 bytes of its SHA-256 (stable across builds and proxies, unlike `DefaultHasher`).
    fn member(&self, count: CountOf, f: &RequestFacts<'_>) -> Option<u64> {
        match count {
            CountOf::Account => f.account.map(|a| a.as_u64()),
            CountOf::Ip => Some(match canonical_ip(f.ip) {
                IpAddr::V4(a) => hash64(&a.octets()),
                IpAddr::V6(a) => hash64(&a.octets()),
            }),
            CountOf::Subnet => {
                // Network octets then prefix length: no allocation on the hot path.
                let mut buf = [0u8; 17];
                let len = match subnet(f.ip, self.identity.prefix_for(f.ip, None)) {
                    IpNet::V4(n) => {
                        buf[..4].copy_from_slice(&n.network().octets());
                        buf[4] = n.prefix_len();
                        5
                    }
                    IpNet::V6(n) => {
                        buf[..16].copy_from_slice(&n.network().octets());
                        buf[16] = n.prefix_len();
                        17
                    }
                };
                Some(hash64(&buf[..len]))
            }
            CountOf::Ja3 => f.ja3_hash.map(|s| hash64(s.as_bytes())),
            CountOf::Ja4 => f.ja4.map(|s| hash64(s.as_bytes())),
            CountOf::UserAgent => f.user_agent.map(|s| hash64(s.as_bytes())),
        }
    }
}

impl Plan {
    #[inline]
    fn push(&mut self, op: Op, enforce: bool, rule: u32, window: u8) {
        self.ops.push(OpSpec { op, enforce });
        self.origins.push(Origin { rule, window });
    }
}

impl Conditions {
    /// `None`: the rule does not apply. `Some(route)`: it does; `route` is the `when.routes`
    /// entry that matched (`None` when the rule has no routes). Cheap checks come first.
    pub(crate) fn applies(&self, f: &RequestFacts<'_>) -> Option<Option<&Route>> {
        if self
            .has_account
            .is_some_and(|want| want != f.account.is_some())
        {
            return None;
        }
        if let Some(set) = &self.ja4 {
            if !f.ja4.is_some_and(|j| set.contains(j)) {
                return None;
            }
        }
        if let Some(set) = &self.ja3 {
            if !f.ja3_hash.is_some_and(|j| set.contains(j)) {
                return None;
            }
        }
        if let Some(nets) = &self.cidrs {
            if !nets.contains(f.ip) {
                return None;
            }
        }
        if let Some(set) = &self.header_fp {
            if !f.header_fp.is_some_and(|h| set.contains(h)) {
                return None;
            }
        }
        if let Some(set) = &self.h2 {
            if !f.h2_fp.is_some_and(|h| set.contains(h)) {
                return None;
            }
        }
        // An unmeasured connection matches neither `relay = true` nor `relay = false`.
        if self.relay.is_some_and(|want| f.relay != Some(want)) {
            return None;
        }
        if self
            .claim_mismatch
            .is_some_and(|want| want != f.claim.is_some_and(|c| c.is_mismatch()))
        {
            return None;
        }
        let route = if self.routes.is_empty() {
            None
        } else {
            Some(self.routes.iter().find(|r| r.matches(f.method, f.path))?)
        };
        // A request without a User-Agent is matched as the empty string (so `^$` finds it).
        if let Some(re) = &self.user_agent {
            if !re.is_match(f.user_agent.unwrap_or("")) {
                return None;
            }
        }
        Some(route)
    }
}

/// Appends an address (IPv4-mapped as IPv4). IPv4, the common case, skips the formatter.
fn push_ip(out: &mut String, ip: IpAddr) {
    match canonical_ip(ip) {
        IpAddr::V4(a) => {
            let [x, y, z, w] = a.octets();
            for (i, o) in [x, y, z, w].into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                push_u8(out, o);
            }
        }
        IpAddr::V6(a) => {
            let _ = write!(out, "{a}");
        }
    }
}

/// Appends the `prefix`-bit network around `ip`, e.g. `203.0.113.0/24`.
fn push_subnet(out: &mut String, ip: IpAddr, prefix: u8) {
    let net = subnet(ip, prefix);
    push_ip(out, net.network());
    out.push('/');
    push_u8(out, net.prefix_len());
}

/// Appends a client-controlled value made safe for a layer key (see the module docs); `-`
/// when missing.
fn push_value(key: &mut String, value: Option<&str>) {
    let Some(s) = value else {
        key.push('-');
        return;
    };
    let plain = s.len() <= 128
        && s.bytes()
            .all(|b| (0x20..0x7f).contains(&b) && !matches!(b, b'|' | b'{' | b'}'));
    if plain {
        key.push_str(s);
    } else {
        let _ = write!(key, "#{:016x}", hash64(s.as_bytes()));
    }
}

/// Octets, prefix lengths and window numbers: at most three digits, pushed directly.
fn push_u8(out: &mut String, n: u8) {
    if n >= 100 {
        out.push(char::from(b'0' + n / 100));
    }
    if n >= 10 {
        out.push(char::from(b'0' + n / 10 % 10));
    }
    out.push(char::from(b'0' + n % 10));
}

/// Decimal digits without the formatting machinery.
fn push_u64(out: &mut String, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        // `n % 10` < 10, so the cast cannot truncate.
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // ASCII digits are always UTF-8; the check is a few compares on at most 20 bytes.
    if let Ok(digits) = std::str::from_utf8(&buf[i..]) {
        out.push_str(digits);
    }
}

/// A stable 64-bit hash for distinct-count members and over-long key values: SipHash-2-4
/// (the `siphasher` crate, as in the local store) under a fixed, published key, so every proxy
/// of every version hashes a value the same way and a shared HyperLogLog counts it once. It
/// replaced the first 8 bytes of SHA-256, which cost ~2,500 instructions per hash on this
/// machine (two per request with the example policy); SipHash costs ~150. Members need
/// uniformity, not secrecy: a client who could aim collisions only lowers its own counts by
/// as much as it could by reusing one value.
fn hash64(bytes: &[u8]) -> u64 {
    // "portcull" and "is-memb1" as little-endian u64s: the key is part of the wire format.
    siphash24(0x6c6c_7563_7472_6f70, 0x3162_6d65_6d2d_7369, bytes)
}

pub(crate) fn siphash24(k0: u64, k1: u64, bytes: &[u8]) -> u64 {
    use std::hash::Hasher as _;
    let mut h = siphasher::sip::SipHasher24::new_with_keys(k0, k1);
    h.write(bytes);
    h.finish()
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

fn verdict(hits: &[Hit]) -> Verdict {
    let mut reject: Option<(u16, Duration)> = None;
    let mut tarpit: Option<Duration> = None;
    for h in hits.iter().filter(|h| !h.shadow) {
        match h.action {
            Action::Reject { status } => {
                reject = Some(match reject {
                    None => (status, h.retry_after),
                    Some((s, ra)) => (s, ra.max(h.retry_after)),
                });
            }
            Action::Tarpit(d) => tarpit = Some(tarpit.map_or(d, |t| t.max(d))),
            Action::Flag => {}
        }
    }
    match (reject, tarpit) {
        (Some((status, retry_after)), _) => Verdict::Reject {
            status,
            retry_after,
        },
        (None, Some(d)) => Verdict::Tarpit(d),
        (None, None) if !hits.is_empty() => Verdict::Flag,
        (None, None) => Verdict::Allow,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_digits() {
        for n in [0, 7, 10, 255, 86_400, u64::MAX] {
            let mut s = String::new();
            push_u64(&mut s, n);
            assert_eq!(s, n.to_string());
        }
        let mut s = String::new();
        push_u8(&mut s, 128);
        assert_eq!(s, "128");
    }
}
