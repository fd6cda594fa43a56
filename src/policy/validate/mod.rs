//! Stage two: raw structs → a validated [`Policy`]. Every check reports into the shared
//! [`Ctx`] and carries on with a placeholder, so one pass finds every problem. The caller
//! ([`super::parse_policy`]) returns the policy only if no issue was reported.
//!
//! Split: [`values`] (durations, rates, CIDRs, fingerprints, ids), [`rule`] (rules and their
//! conditions); the policy, identity and lists sections are here.
//!
//! Values that may be secrets by mistake (anything in `[policy.identity]`, account ids that
//! could be raw API keys) are never echoed in messages.

mod rule;
mod values;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use super::raw::{RawClient, RawIdentity, RawLists, RawPolicy};
use super::types::{Identity, KnownClient, Limit, Lists, Policy, DEFAULT_VERSION};
use super::walk::{Ctx, SpannedList};
use values::{
    accounts, cidrs, duration_in, h2_set, header_fp_set, int_in, ja3_set, ja4_set, status,
};
pub(crate) use values::{is_h2, is_header_fp, is_ja4};

const DAY: Duration = Duration::from_secs(86_400);
/// Range of rate periods and distinct windows.
const MIN_PERIOD: Duration = Duration::from_secs(1);
const MAX_PERIOD: Duration = Duration::from_secs(30 * DAY.as_secs());
const MAX_TARPIT: Duration = Duration::from_secs(30);
/// Finest GCRA emission interval accepted (a million per second on one key).
const MIN_EMISSION: Duration = Duration::from_micros(1);
const MAX_WINDOWS: usize = 8;
/// Compiled size limit for `when.user_agent` (the regex crate's default is 10 MiB).
const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Rule names the lists use in evidence.
const RESERVED_NAMES: [&str; 2] = ["deny-list", "allow-list"];

pub(crate) fn validate(raw: RawPolicy, ctx: &mut Ctx) -> Policy {
    let mut p = Policy::default();
    if let Some(v) = raw.version {
        let ok = !v.value.is_empty()
            && v.value.len() <= 128
            && v.value.chars().all(|c| c.is_ascii_graphic() || c == ' ');
        if ok {
            p.version = v.value;
        } else {
            v.issue(ctx, "must be 1 to 128 printable ASCII characters", None);
        }
    }
    if p.version.is_empty() {
        p.version = DEFAULT_VERSION.to_string();
    }
    p.shadow = raw.shadow.is_some_and(|s| s.value);
    if let Some(g) = raw.relay_gap {
        let (lo, hi) = (Duration::from_millis(1), Duration::from_secs(10));
        if let Some(d) = duration_in(ctx, &g, "relay_gap", lo, hi) {
            p.relay_gap = d;
        }
    }
    if let Some(id) = raw.identity {
        p.identity = identity(id, ctx);
    }
    if let Some(l) = raw.lists {
        p.lists = lists(l, ctx);
    }
    let has_clients = !raw.clients.is_empty();
    let mut client_names: HashMap<String, Option<usize>> = HashMap::new();
    for c in raw.clients {
        if let Some(n) = &c.name {
            if let Some(first) = client_names.get(&n.value) {
                let hint = first.map(|l| format!("the first client with this name is at line {l}"));
                n.issue(ctx, format!("duplicate client name `{}`", n.value), hint);
            } else {
                client_names.insert(n.value.clone(), n.line);
            }
        }
        if let Some(client) = client(c, ctx) {
            p.clients.push(client);
        }
    }
    let scope = rule::Scope {
        identity: &p.identity,
        has_clients,
    };
    let mut names: HashMap<String, Option<usize>> = HashMap::new();
    let mut rules = Vec::with_capacity(raw.rules.len());
    for r in raw.rules {
        if let Some(n) = &r.name {
            if let Some(first) = names.get(&n.value) {
                let hint = first.map(|l| format!("the first rule with this name is at line {l}"));
                n.issue(ctx, format!("duplicate rule name `{}`", n.value), hint);
            } else {
                names.insert(n.value.clone(), n.line);
            }
        }
        if let Some(rule) = rule::rule(r, &scope, ctx) {
            rules.push(rule);
        }
    }
    p.rules = rules;
    p.max_ops = p
        .rules
        .iter()
        .map(|r| match &r.limit {
            Limit::Rate(windows) => windows.len(),
            Limit::Concurrency { .. } | Limit::Distinct { .. } => 1,
            Limit::Match => 0,
        })
        .sum();
    p
}

/// One `[[policy.clients]]` section.
fn client(c: RawClient, ctx: &mut Ctx) -> Option<KnownClient> {
    let name = match &c.name {
        None => {
            let hint = "every client needs a unique name: [a-z0-9_-], 1 to 64 long";
            ctx.push(
                &format!("{}.name", c.path),
                c.line,
                "missing `name`",
                Some(hint.into()),
            );
            None
        }
        Some(n) if !rule::is_name(&n.value) => {
            let hint = "lower-case letters, digits, `_` and `-`; 1 to 64 long";
            n.issue(
                ctx,
                format!("bad client name `{}`", n.value),
                Some(hint.into()),
            );
            None
        }
        Some(n) => Some(std::sync::Arc::<str>::from(n.value.as_str())),
    };
    let user_agent = c.user_agent.as_ref().and_then(|v| rule::regex(ctx, v));
    let mut headers = Vec::new();
    for h in c
        .headers
        .as_ref()
        .map(|l| l.value.as_slice())
        .unwrap_or_default()
    {
        match http::HeaderName::from_bytes(h.value.as_bytes()) {
            Ok(name) => headers.push(name.as_str().to_string()),
            Err(_) => h.issue(ctx, format!("bad header name `{}`", h.value), None),
        }
    }
    if c.user_agent.is_none() && c.headers.as_ref().map_or(true, |l| l.value.is_empty()) {
        let hint = "give `user_agent` (a regex) or `headers` (names the client always sends)";
        ctx.push(
            &c.path,
            c.line,
            "nothing claims this client",
            Some(hint.into()),
        );
    }
    let known = [&c.ja4, &c.ja3, &c.header_fp, &c.h2];
    if known
        .iter()
        .all(|l| l.as_ref().map_or(true, |l| l.value.is_empty()))
    {
        let hint = "give at least one of ja4, ja3, header_fp, h2 (`investigate --clients` lists candidates)";
        ctx.push(
            &c.path,
            c.line,
            "no known fingerprints to compare",
            Some(hint.into()),
        );
    }
    let set = |l: Option<SpannedList<String>>| l.filter(|l| !l.value.is_empty());
    let ja4 = set(c.ja4).map(|l| ja4_set(ctx, Some(l)));
    let ja3 = set(c.ja3).map(|l| ja3_set(ctx, Some(l)));
    let header_fp = set(c.header_fp).map(|l| header_fp_set(ctx, Some(l)));
    let h2 = set(c.h2).map(|l| h2_set(ctx, Some(l)));
    Some(KnownClient {
        name: name?,
        user_agent,
        headers,
        ja4,
        ja3,
        header_fp,
        h2,
    })
}

fn identity(raw: RawIdentity, ctx: &mut Ctx) -> Identity {
    let mut id = Identity::default();
    if let Some(list) = raw.api_key_headers {
        if list.value.is_empty() {
            list.issue(
                ctx,
                "empty list",
                Some("name at least one header, e.g. \"x-api-key\"".into()),
            );
        }
        let mut headers = Vec::new();
        for h in list.value {
            let name = h.value.to_ascii_lowercase();
            let token = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !token {
                h.issue(
                    ctx,
                    "not a valid header name",
                    Some("e.g. \"x-api-key\" or \"authorization\"".into()),
                );
            } else if headers.contains(&name) {
                h.issue(ctx, format!("header `{name}` is listed twice"), None);
            } else {
                headers.push(name);
            }
        }
        id.api_key_headers = headers;
    }
    if let (Some(_), Some(f)) = (&raw.secret_env, &raw.secret_file) {
        f.issue(ctx, "give at most one of secret_env and secret_file", None);
    }
    if let Some(env) = raw.secret_env {
        let s = &env.value;
        let ok = s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if ok {
            id.secret_env = Some(env.value);
        } else {
            // Not echoed: it may be the secret itself, pasted in the wrong place.
            let hint = "name the variable (e.g. PORTCULLIS_ACCOUNT_SECRET); the secret itself \
                        goes in the environment, never in this file";
            env.issue(ctx, "not an environment variable name", Some(hint.into()));
        }
    }
    if let Some(f) = raw.secret_file {
        if f.value.trim().is_empty() {
            f.issue(ctx, "empty path", None);
        } else {
            id.secret_file = Some(PathBuf::from(f.value));
        }
    }
    if let Some(v4) = raw.subnet_v4 {
        id.subnet_v4 = prefixes(ctx, v4, 8, 32);
    }
    if let Some(v6) = raw.subnet_v6 {
        id.subnet_v6 = prefixes(ctx, v6, 16, 128);
    }
    id
}

fn prefixes(ctx: &mut Ctx, list: SpannedList<i64>, lo: i64, hi: i64) -> Vec<u8> {
    let mut out = Vec::new();
    if list.value.is_empty() {
        list.issue(
            ctx,
            "empty list",
            Some("the first prefix length is `subnet`; give at least one".into()),
        );
    }
    for p in &list.value {
        if let Some(n) = int_in::<u8>(ctx, p, lo, hi) {
            if out.contains(&n) {
                p.issue(ctx, format!("prefix length {n} is listed twice"), None);
            } else {
                out.push(n);
            }
        }
    }
    if out.is_empty() {
        // Keeps the identity usable while other issues are collected; never returned.
        out.push(u8::try_from(hi).unwrap_or(u8::MAX));
    }
    out
}

fn lists(raw: RawLists, ctx: &mut Ctx) -> Lists {
    Lists {
        allow_accounts: accounts(ctx, raw.allow_accounts),
        deny_accounts: accounts(ctx, raw.deny_accounts),
        allow_ja4: ja4_set(ctx, raw.allow_ja4),
        deny_ja4: ja4_set(ctx, raw.deny_ja4),
        allow_ja3: ja3_set(ctx, raw.allow_ja3),
        deny_ja3: ja3_set(ctx, raw.deny_ja3),
        allow_cidrs: cidrs(ctx, raw.allow_cidrs),
        deny_cidrs: cidrs(ctx, raw.deny_cidrs),
        deny_status: raw.deny_status.and_then(|s| status(ctx, &s)).unwrap_or(403),
    }
}
