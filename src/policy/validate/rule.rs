//! Stage two for `[[policy.rules]]`: name, key, limit kind and its fields, action, and the
//! `when` conditions. Fields of another kind are reported, not ignored.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use regex::{Regex, RegexBuilder};

use super::values::{
    cidrs, duration_in, fmt_dur, h2_set, header_fp_set, ja3_set, ja4_set, nonzero_u32, parse_rate,
    status,
};
use super::{MAX_PERIOD, MAX_TARPIT, MAX_WINDOWS, MIN_PERIOD, REGEX_SIZE_LIMIT, RESERVED_NAMES};
use crate::policy::raw::{RawRule, RawWhen};
use crate::policy::types::OnStoreError;
use crate::policy::types::{
    Action, Conditions, CountOf, Identity, KeyPart, Limit, RateWindow, Route, Rule,
};
use crate::policy::walk::{Ctx, Spanned, SpannedList};

fn missing(ctx: &mut Ctx, r: &RawRule, key: &str, hint: &str) {
    if r.ill_typed.contains(&key) {
        return; // present, with a type error already reported
    }
    let path = format!("{}.{key}", r.path);
    ctx.push(
        &path,
        r.line,
        format!("missing `{key}`"),
        Some(hint.to_string()),
    );
}

fn not_for<T>(ctx: &mut Ctx, field: &Option<Spanned<T>>, name: &str, kind: &str, belongs: &str) {
    if let Some(f) = field {
        let msg = format!("`{name}` does not apply to {kind}");
        f.issue(
            ctx,
            msg,
            Some(format!("remove it; it belongs to {belongs}")),
        );
    }
}

fn key_part(ctx: &mut Ctx, v: &Spanned<String>, id: &Identity) -> Option<KeyPart> {
    let part = match v.value.as_str() {
        "account" => KeyPart::Account,
        "ip" => KeyPart::Ip,
        "subnet" => KeyPart::Subnet,
        "ja3" => KeyPart::Ja3,
        "ja4" => KeyPart::Ja4,
        "route" => KeyPart::Route,
        "user_agent" => KeyPart::UserAgent,
        "header_fp" => KeyPart::HeaderFp,
        "h2" => KeyPart::H2,
        "claim" => KeyPart::Claim,
        "relay" => KeyPart::Relay,
        s => {
            let configured = || {
                format!(
                    "configured prefixes: subnet_v4 {:?}, subnet_v6 {:?}",
                    id.subnet_v4, id.subnet_v6
                )
            };
            if let Some(n) = s.strip_prefix("subnet/") {
                match n.parse::<u8>() {
                    Ok(n) if id.subnet_v4.contains(&n) || id.subnet_v6.contains(&n) => {
                        KeyPart::SubnetPrefix(n)
                    }
                    _ => {
                        let msg = format!("`{s}` is not a configured subnet prefix");
                        v.issue(ctx, msg, Some(configured()));
                        return None;
                    }
                }
            } else {
                let hint = "one of: account, ip, subnet, subnet/N, ja3, ja4, route, user_agent, header_fp, h2, claim, relay";
                v.issue(ctx, format!("unknown key part `{s}`"), Some(hint.into()));
                return None;
            }
        }
    };
    Some(part)
}

fn count_of(ctx: &mut Ctx, v: &Spanned<String>) -> Option<CountOf> {
    Some(match v.value.as_str() {
        "account" => CountOf::Account,
        "subnet" => CountOf::Subnet,
        "ip" => CountOf::Ip,
        "ja3" => CountOf::Ja3,
        "ja4" => CountOf::Ja4,
        "user_agent" => CountOf::UserAgent,
        s => {
            let hint = "one of: account, subnet, ip, ja3, ja4, user_agent";
            v.issue(ctx, format!("unknown count `{s}`"), Some(hint.into()));
            return None;
        }
    })
}

/// Whether keying on `part` already fixes the counted value (the count would always be 1).
fn fixes(part: KeyPart, count: CountOf) -> bool {
    use CountOf as C;
    use KeyPart as K;
    matches!(
        (part, count),
        (K::Account, C::Account)
            | (K::Ip, C::Ip | C::Subnet)
            | (K::Subnet | K::SubnetPrefix(_), C::Subnet)
            | (K::Ja3, C::Ja3)
            | (K::Ja4, C::Ja4)
            | (K::UserAgent, C::UserAgent)
    )
}

/// Rule and client names: `[a-z0-9_-]`, 1 to 64 long (they appear in layer keys and headers).
pub(super) fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'))
}

/// What rules may refer to from the rest of the policy.
pub(super) struct Scope<'a> {
    pub(super) identity: &'a Identity,
    /// `[[policy.clients]]` is not empty.
    pub(super) has_clients: bool,
}

pub(super) fn rule(mut r: RawRule, scope: &Scope<'_>, ctx: &mut Ctx) -> Option<Rule> {
    let id = scope.identity;
    let name = match &r.name {
        None => {
            missing(
                ctx,
                &r,
                "name",
                "every rule needs a unique name: [a-z0-9_-], 1 to 64 long",
            );
            None
        }
        Some(n) => {
            let s = &n.value;
            if !is_name(s) {
                let hint = "lower-case letters, digits, `_` and `-`; 1 to 64 long";
                n.issue(ctx, format!("bad rule name `{s}`"), Some(hint.into()));
                None
            } else if RESERVED_NAMES.contains(&s.as_str()) {
                n.issue(
                    ctx,
                    format!("rule name `{s}` is reserved for [policy.lists]"),
                    None,
                );
                None
            } else {
                Some(Arc::<str>::from(s.as_str()))
            }
        }
    };

    // Given but all entries bad still counts as given: no second, cascading message.
    let has_routes = r.when.as_ref().is_some_and(|w| w.routes.is_some());
    if !scope.has_clients {
        if let Some(c) = r.when.as_ref().and_then(|w| w.claim_mismatch.as_ref()) {
            let hint = "list the clients with [[policy.clients]] sections";
            c.issue(ctx, "no known clients to claim", Some(hint.into()));
        }
    }
    let when = r
        .when
        .take()
        .map(|w| conditions(w, ctx))
        .unwrap_or_default();

    let mut key = Vec::new();
    match &r.key {
        None => missing(
            ctx,
            &r,
            "key",
            "e.g. key = [\"account\"] or [\"ja4\"] or [\"subnet\"]",
        ),
        Some(list) if list.value.is_empty() => list.issue(
            ctx,
            "empty key",
            Some("give at least one key part, e.g. [\"account\"]".into()),
        ),
        Some(list) => {
            for v in &list.value {
                if let Some(p) = key_part(ctx, v, id) {
                    if key.contains(&p) {
                        v.issue(ctx, format!("key part `{p}` is listed twice"), None);
                    } else if p == KeyPart::Claim && !scope.has_clients {
                        let hint = "list the clients with [[policy.clients]] sections";
                        v.issue(
                            ctx,
                            "key part `claim` needs known clients",
                            Some(hint.into()),
                        );
                    } else if p == KeyPart::Route && !has_routes {
                        let hint = "add when.routes; the route part is the entry that matched";
                        v.issue(
                            ctx,
                            "key part `route` needs `when.routes`",
                            Some(hint.into()),
                        );
                    } else {
                        key.push(p);
                    }
                }
            }
        }
    }

    let limit = limit(&r, &key, ctx);
    if matches!(limit, Some(Limit::Match)) && when.is_empty() {
        if let Some(l) = &r.limit {
            let hint =
                "add [policy.rules.when] conditions; a match rule hits every request they match";
            l.issue(
                ctx,
                "a `match` rule needs a `when` condition",
                Some(hint.into()),
            );
        }
        return None;
    }
    let action = action(&r, ctx);
    let on_store_error = match r.on_store_error.as_ref().map(|s| (s, s.value.as_str())) {
        None | Some((_, "open")) => OnStoreError::Open,
        Some((_, "closed")) => OnStoreError::Closed,
        Some((_, "local")) => OnStoreError::Local,
        Some((s, other)) => {
            let hint = "one of \"open\" (default), \"closed\", \"local\"".to_string();
            s.issue(ctx, format!("unknown on_store_error `{other}`"), Some(hint));
            OnStoreError::Open
        }
    };
    let (name, limit, action) = (name?, limit?, action?);
    if key.is_empty() {
        return None;
    }
    let rate_policy = match &limit {
        Limit::Rate(windows) => windows
            .iter()
            .map(|w| crate::policy::decide::rate_policy_value(&name, w))
            .collect(),
        _ => Vec::new(),
    };
    Some(Rule {
        rate_policy,
        name,
        key,
        limit,
        action,
        shadow: r.shadow.is_some_and(|s| s.value),
        hide_headers: r.hide_headers.is_some_and(|s| s.value),
        on_store_error,
        when,
    })
}

fn limit(r: &RawRule, key: &[KeyPart], ctx: &mut Ctx) -> Option<Limit> {
    let kind = match &r.limit {
        None => {
            missing(
                ctx,
                r,
                "limit",
                "one of \"rate\", \"concurrency\", \"distinct\", \"match\"",
            );
            None
        }
        Some(l) => match l.value.as_str() {
            k @ ("rate" | "concurrency" | "distinct" | "match") => Some(k),
            other => {
                let hint = "one of \"rate\", \"concurrency\", \"distinct\", \"match\"".to_string();
                l.issue(ctx, format!("unknown limit `{other}`"), Some(hint));
                None
            }
        },
    };
    // Values are checked whatever the kind, so a bad one is reported even when the kind is.
    let windows: Option<Vec<(NonZeroU32, Duration, &Spanned<String>)>> = r.rate.as_ref().map(|l| {
        l.value
            .iter()
            .filter_map(|v| parse_rate(ctx, v).map(|(c, p)| (c, p, v)))
            .collect()
    });
    let burst = r.burst.as_ref().and_then(|b| nonzero_u32(ctx, b));
    let max = r.max.as_ref().and_then(|m| nonzero_u32(ctx, m));
    let count = r.count.as_ref().and_then(|c| count_of(ctx, c));
    let window = r
        .window
        .as_ref()
        .and_then(|w| duration_in(ctx, w, "window", MIN_PERIOD, MAX_PERIOD));

    let kind = kind?;
    let described = format!("limit = \"{kind}\"");
    let k = described.as_str();
    match kind {
        "rate" => {
            not_for(
                ctx,
                &r.max,
                "max",
                k,
                "limit = \"concurrency\" or \"distinct\"",
            );
            not_for(ctx, &r.count, "count", k, "limit = \"distinct\"");
            not_for(
                ctx,
                &r.window,
                "window",
                k,
                "limit = \"distinct\" (a rate's period is in `rate`)",
            );
            let Some(list) = &r.rate else {
                missing(
                    ctx,
                    r,
                    "rate",
                    "e.g. rate = \"60/1m\" or [\"60/1m\", \"2000/1d\"]",
                );
                return None;
            };
            if list.value.is_empty() {
                list.issue(
                    ctx,
                    "empty list",
                    Some("give at least one COUNT/PERIOD".into()),
                );
                return None;
            }
            if list.value.len() > MAX_WINDOWS {
                let msg = format!("{} windows; at most {MAX_WINDOWS}", list.value.len());
                list.issue(ctx, msg, Some("split the rule".into()));
                return None;
            }
            let windows = windows?;
            let mut out: Vec<RateWindow> = Vec::with_capacity(windows.len());
            for (i, (count, period, v)) in windows.into_iter().enumerate() {
                if out.iter().any(|w| w.period() == period) {
                    let msg = format!("two windows of {} on one rule", fmt_dur(period));
                    v.issue(ctx, msg, Some("give each window its own period".into()));
                    continue;
                }
                let burst = if i == 0 {
                    burst.unwrap_or(count)
                } else {
                    count
                };
                out.push(RateWindow::new(count, period, burst));
            }
            if r.burst.is_some() && burst.is_none() {
                return None;
            }
            (out.len() == list.value.len()).then_some(Limit::Rate(out))
        }
        "concurrency" => {
            not_rate(ctx, r, k);
            not_distinct(ctx, r, k);
            if r.max.is_none() {
                missing(
                    ctx,
                    r,
                    "max",
                    "the most requests in flight per key, e.g. max = 4",
                );
            }
            Some(Limit::Concurrency { max: max? })
        }
        "match" => {
            not_rate(ctx, r, k);
            not_distinct(ctx, r, k);
            not_for(
                ctx,
                &r.max,
                "max",
                k,
                "limit = \"concurrency\" or \"distinct\"",
            );
            not_for(
                ctx,
                &r.on_store_error,
                "on_store_error",
                k,
                "rules with a counter; a match rule never asks the store",
            );
            Some(Limit::Match)
        }
        _ => {
            not_rate(ctx, r, k);
            if r.count.is_none() {
                missing(
                    ctx,
                    r,
                    "count",
                    "what is counted per key, e.g. count = \"account\"",
                );
            }
            if r.max.is_none() {
                missing(ctx, r, "max", "the most distinct values per key per window");
            }
            if r.window.is_none() {
                missing(ctx, r, "window", "the sliding window, e.g. window = \"1h\"");
            }
            let count_v = r.count.as_ref()?;
            let count = count?;
            if let Some(p) = key.iter().find(|p| fixes(**p, count)) {
                let msg = format!(
                    "counting distinct `{}` per key part `{p}` always gives 1",
                    count.name()
                );
                count_v.issue(
                    ctx,
                    msg,
                    Some("count something the key does not fix".into()),
                );
                return None;
            }
            Some(Limit::Distinct {
                count,
                max: max?,
                window: window?,
            })
        }
    }
}

/// Fields only a rate rule has, reported on a rule of kind `k`.
fn not_rate(ctx: &mut Ctx, r: &RawRule, k: &str) {
    not_for(ctx, &r.rate, "rate", k, "limit = \"rate\"");
    not_for(ctx, &r.burst, "burst", k, "limit = \"rate\"");
    let hint = "limit = \"rate\", the only kind with RateLimit headers";
    not_for(ctx, &r.hide_headers, "hide_headers", k, hint);
}

/// Fields only a distinct-count rule has, reported on a rule of kind `k`.
fn not_distinct(ctx: &mut Ctx, r: &RawRule, k: &str) {
    not_for(ctx, &r.count, "count", k, "limit = \"distinct\"");
    not_for(ctx, &r.window, "window", k, "limit = \"distinct\"");
}

fn action(r: &RawRule, ctx: &mut Ctx) -> Option<Action> {
    let kind = r.action.as_ref().map_or("reject", |a| a.value.as_str());
    let st = r.status.as_ref().map(|s| status(ctx, s));
    let tarpit = r
        .tarpit
        .as_ref()
        .map(|t| duration_in(ctx, t, "tarpit delay", Duration::from_millis(1), MAX_TARPIT));
    match kind {
        "reject" => {
            not_for(
                ctx,
                &r.tarpit,
                "tarpit",
                "action = \"reject\"",
                "action = \"tarpit\"",
            );
            match st {
                None => Some(Action::Reject { status: 429 }),
                Some(s) => s.map(|status| Action::Reject { status }),
            }
        }
        "flag" | "tarpit" => {
            let k = format!("action = \"{kind}\"");
            not_for(ctx, &r.status, "status", &k, "action = \"reject\"");
            if kind == "flag" {
                not_for(ctx, &r.tarpit, "tarpit", &k, "action = \"tarpit\"");
                return Some(Action::Flag);
            }
            match tarpit {
                None => {
                    missing(
                        ctx,
                        r,
                        "tarpit",
                        "the delay, e.g. tarpit = \"2s\"; at most 30s",
                    );
                    None
                }
                Some(d) => d.map(Action::Tarpit),
            }
        }
        other => {
            let hint = "one of \"reject\" (default), \"flag\", \"tarpit\"".to_string();
            if let Some(a) = &r.action {
                a.issue(ctx, format!("unknown action `{other}`"), Some(hint));
            }
            None
        }
    }
}

fn non_empty<T>(ctx: &mut Ctx, list: Option<SpannedList<T>>) -> Option<SpannedList<T>> {
    let list = list?;
    if list.value.is_empty() {
        let hint = "an empty list never matches; remove the key to match every request";
        list.issue(ctx, "empty list", Some(hint.into()));
        return None;
    }
    Some(list)
}

fn route(ctx: &mut Ctx, v: &Spanned<String>) -> Option<Route> {
    let text = v.value.trim();
    let (method, prefix) = match text.split_once(' ') {
        Some((m, p)) => (Some(m), p),
        None => (None, text),
    };
    let hint =
        || Some("write \"[METHOD ]PATH_PREFIX\", e.g. \"POST /v1/messages\" or \"/v1/\"".into());
    if let Some(m) = method {
        if m.is_empty() || m.len() > 16 || !m.bytes().all(|b| b.is_ascii_uppercase()) {
            let msg = format!("bad method `{m}` in route `{text}`");
            v.issue(
                ctx,
                msg,
                Some("methods are upper-case and case-sensitive, e.g. POST".into()),
            );
            return None;
        }
    }
    if !prefix.starts_with('/') || prefix.contains(char::is_whitespace) {
        v.issue(
            ctx,
            format!("bad route `{text}`: the path prefix must start with `/`"),
            hint(),
        );
        return None;
    }
    Some(Route {
        text: text.to_string(),
        method: method.map(str::to_string),
        prefix: prefix.to_string(),
    })
}

fn conditions(w: RawWhen, ctx: &mut Ctx) -> Conditions {
    let routes = non_empty(ctx, w.routes)
        .map(|l| l.value.iter().filter_map(|v| route(ctx, v)).collect())
        .unwrap_or_default();
    let ja4 = non_empty(ctx, w.ja4).map(|l| ja4_set(ctx, Some(l)));
    let ja3 = non_empty(ctx, w.ja3).map(|l| ja3_set(ctx, Some(l)));
    let cidrs = non_empty(ctx, w.cidrs).map(|l| cidrs(ctx, Some(l)));
    let header_fp = non_empty(ctx, w.header_fp).map(|l| header_fp_set(ctx, Some(l)));
    let h2 = non_empty(ctx, w.h2).map(|l| h2_set(ctx, Some(l)));
    let user_agent = w.user_agent.and_then(|v| regex(ctx, &v));
    Conditions {
        routes,
        ja4,
        ja3,
        cidrs,
        user_agent,
        has_account: w.has_account.map(|b| b.value),
        header_fp,
        h2,
        relay: w.relay.map(|b| b.value),
        claim_mismatch: w.claim_mismatch.map(|b| b.value),
    }
}

/// A User-Agent pattern (regex crate syntax, size-limited).
pub(super) fn regex(ctx: &mut Ctx, v: &Spanned<String>) -> Option<Regex> {
    match RegexBuilder::new(&v.value)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
    {
        Ok(re) => Some(re),
        Err(e) => {
            // The regex crate's message spans lines (pattern, caret, error): keep the last.
            let text = e.to_string();
            let last = text
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            let msg = format!("bad regex: {}", last.trim().trim_start_matches("error: "));
            v.issue(
                ctx,
                msg,
                Some("regex crate syntax; no look-around or backreferences".into()),
            );
            None
        }
    }
}
