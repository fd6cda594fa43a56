//! Small value parsers of stage two: durations, rates, CIDRs, fingerprints, account ids,
//! statuses. Each reports its own issue (path, line, hint) and returns `None` on failure.

use std::collections::HashSet;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use ipnet::IpNet;

use super::{MAX_PERIOD, MIN_EMISSION, MIN_PERIOD};
use crate::policy::identity::AccountId;
use crate::policy::types::CidrSet;
use crate::policy::walk::{Ctx, Spanned, SpannedList};

/// A humantime duration; a bare unit (`"m"`, `"hour"`) means one of it.
pub(super) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let owned;
    let text = if s.starts_with(|c: char| c.is_ascii_alphabetic()) {
        owned = format!("1{s}");
        &owned
    } else {
        s
    };
    humantime::parse_duration(text).map_err(|e| e.to_string())
}

pub(super) fn duration_in(
    ctx: &mut Ctx,
    v: &Spanned<String>,
    what: &str,
    lo: Duration,
    hi: Duration,
) -> Option<Duration> {
    match parse_duration(&v.value) {
        Ok(d) if d >= lo && d <= hi => Some(d),
        Ok(_) => {
            let msg = format!("{what} `{}` is out of range", v.value);
            let hint = format!("between {} and {}", fmt_dur(lo), fmt_dur(hi));
            v.issue(ctx, msg, Some(hint));
            None
        }
        Err(e) => {
            let msg = format!("bad duration `{}`: {e}", v.value);
            v.issue(
                ctx,
                msg,
                Some("write e.g. \"500ms\", \"30s\", \"1m\", \"12h\", \"1d\"".into()),
            );
            None
        }
    }
}

/// `30d`, `1h`, `1m`, `1s` as written in policies; humantime's form otherwise.
pub(super) fn fmt_dur(d: Duration) -> String {
    let s = d.as_secs();
    if d.subsec_nanos() != 0 || s == 0 {
        return humantime::format_duration(d).to_string();
    }
    match s {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// An integer in `lo..=hi`.
pub(super) fn int_in<T: TryFrom<i64>>(
    ctx: &mut Ctx,
    v: &Spanned<i64>,
    lo: i64,
    hi: i64,
) -> Option<T> {
    if v.value < lo || v.value > hi {
        let msg = format!("{} is out of range", v.value);
        v.issue(ctx, msg, Some(format!("between {lo} and {hi}")));
        return None;
    }
    T::try_from(v.value).ok()
}

pub(super) fn nonzero_u32(ctx: &mut Ctx, v: &Spanned<i64>) -> Option<NonZeroU32> {
    int_in::<u32>(ctx, v, 1, i64::from(u32::MAX)).and_then(NonZeroU32::new)
}

/// `COUNT/PERIOD` → (count, period).
pub(super) fn parse_rate(ctx: &mut Ctx, v: &Spanned<String>) -> Option<(NonZeroU32, Duration)> {
    let hint = || Some("write COUNT/PERIOD, e.g. \"60/1m\", \"2000/1d\" or \"10/s\"".to_string());
    let Some((count, period)) = v.value.split_once('/') else {
        v.issue(ctx, format!("bad rate `{}`: no `/`", v.value), hint());
        return None;
    };
    let count = match count.trim().parse::<u64>() {
        Ok(0) => {
            v.issue(
                ctx,
                format!("bad rate `{}`: count must be at least 1", v.value),
                hint(),
            );
            None
        }
        Ok(n) => match u32::try_from(n).ok().and_then(NonZeroU32::new) {
            Some(n) => Some(n),
            None => {
                v.issue(
                    ctx,
                    format!("bad rate `{}`: count is too large", v.value),
                    hint(),
                );
                None
            }
        },
        Err(_) => {
            v.issue(
                ctx,
                format!("bad rate `{}`: count is not a whole number", v.value),
                hint(),
            );
            None
        }
    };
    let period = Spanned {
        value: period.to_string(),
        path: v.path.clone(),
        line: v.line,
    };
    let period = duration_in(ctx, &period, "rate period", MIN_PERIOD, MAX_PERIOD);
    let (count, period) = (count?, period?);
    if period / count.get() < MIN_EMISSION {
        let msg = format!("rate `{}` is finer than one per microsecond", v.value);
        v.issue(
            ctx,
            msg,
            Some("use a longer period or a smaller count".into()),
        );
        return None;
    }
    Some((count, period))
}

pub(super) fn cidr(ctx: &mut Ctx, v: &Spanned<String>) -> Option<IpNet> {
    let s = v.value.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(IpNet::from(ip));
    }
    match s.parse::<IpNet>() {
        Ok(net) if net.trunc() == net => Some(net),
        Ok(net) => {
            let msg = format!("`{s}` has host bits set");
            v.issue(ctx, msg, Some(format!("did you mean \"{}\"?", net.trunc())));
            None
        }
        Err(_) => {
            let msg = format!("bad CIDR `{s}`");
            v.issue(
                ctx,
                msg,
                Some("write e.g. \"203.0.113.0/24\", \"2001:db8::/48\" or an address".into()),
            );
            None
        }
    }
}

pub(super) fn cidrs(ctx: &mut Ctx, list: Option<SpannedList<String>>) -> CidrSet {
    let nets = list
        .map(|l| l.value.iter().filter_map(|v| cidr(ctx, v)).collect())
        .unwrap_or_default();
    CidrSet::new(nets)
}

/// `a_b_c`: a is 10 alphanumerics (`t13d1516h2`), b and c 12 lowercase hex digits.
pub(crate) fn is_ja4(s: &str) -> bool {
    let mut parts = s.split('_');
    let (Some(a), Some(b), Some(c), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let hex12 =
        |p: &str| p.len() == 12 && p.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    a.len() == 10 && a.bytes().all(|b| b.is_ascii_alphanumeric()) && hex12(b) && hex12(c)
}

pub(super) fn ja4_set(ctx: &mut Ctx, list: Option<SpannedList<String>>) -> HashSet<String> {
    let mut out = HashSet::new();
    for v in list.map(|l| l.value).unwrap_or_default() {
        if is_ja4(&v.value) {
            out.insert(v.value);
        } else {
            let hint = "a JA4 looks like \"t13d1516h2_8daaf6152771_e5627efa2ab1\"".to_string();
            v.issue(ctx, format!("bad JA4 `{}`", v.value), Some(hint));
        }
    }
    out
}

pub(super) fn ja3_set(ctx: &mut Ctx, list: Option<SpannedList<String>>) -> HashSet<String> {
    let mut out = HashSet::new();
    for v in list.map(|l| l.value).unwrap_or_default() {
        if v.value.len() == 32 && v.value.bytes().all(|b| b.is_ascii_hexdigit()) {
            out.insert(v.value.to_ascii_lowercase());
        } else {
            let hint = "a JA3 hash is the 32-hex-digit MD5, not the JA3 string".to_string();
            v.issue(ctx, format!("bad JA3 hash `{}`", v.value), Some(hint));
        }
    }
    out
}

/// Prefixes of a header fingerprint id (`fingerprint::http`).
const HEADER_FP_PREFIXES: [&str; 2] = ["h1_", "h2_"];

/// Whether `s` is a header fingerprint id the policy accepts (`h1_` or `h2_`, 12 hex digits).
pub(crate) fn is_header_fp(s: &str) -> bool {
    is_hex_id(s, &HEADER_FP_PREFIXES)
}

/// Whether `s` is an HTTP/2 fingerprint the policy accepts: an Akamai string or its hash.
pub(crate) fn is_h2(s: &str) -> bool {
    is_akamai(s) || is_hex_id(s, &[""])
}

/// `when.header_fp` and `[[policy.clients]] header_fp`: ids as `fingerprint::http` prints them.
pub(super) fn header_fp_set(ctx: &mut Ctx, list: Option<SpannedList<String>>) -> HashSet<String> {
    hex_ids(
        ctx,
        list,
        &HEADER_FP_PREFIXES,
        "header fingerprint",
        "\"h2_3f9a0c1d2e4b\"",
    )
}

/// `when.h2` and `[[policy.clients]] h2`: the Akamai string (as evidence and the upstream
/// header show it), kept as its 12-hex-digit hash, or that hash itself (as layer keys show it).
pub(super) fn h2_set(ctx: &mut Ctx, list: Option<SpannedList<String>>) -> HashSet<String> {
    let Some(mut list) = list else {
        return HashSet::new();
    };
    for v in &mut list.value {
        if is_akamai(&v.value) {
            v.value = crate::fingerprint::h2::akamai_hash(&v.value);
        }
    }
    let example =
        "\"1:65536;2:0;4:6291456;6:262144|15663105|0|m,a,s,p\" or its hash \"52d84b11737d\"";
    hex_ids(ctx, Some(list), &[""], "HTTP/2 fingerprint", example)
}

/// Four `|`-separated parts, the last a comma-separated pseudo-header order (`m,a,s,p`).
fn is_akamai(s: &str) -> bool {
    let parts: Vec<&str> = s.split('|').collect();
    parts.len() == 4
        && parts
            .last()
            .is_some_and(|p| p.split(',').all(|x| matches!(x, "m" | "a" | "s" | "p")))
}

/// One of `prefixes` and 12 lowercase hex digits.
fn is_hex_id(s: &str, prefixes: &[&str]) -> bool {
    prefixes.iter().any(|p| {
        s.strip_prefix(p).is_some_and(|hex| {
            hex.len() == 12 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        })
    })
}

/// Ids made of one of `prefixes` and 12 lowercase hex digits.
fn hex_ids(
    ctx: &mut Ctx,
    list: Option<SpannedList<String>>,
    prefixes: &[&str],
    what: &str,
    example: &str,
) -> HashSet<String> {
    let mut out = HashSet::new();
    for v in list.map(|l| l.value).unwrap_or_default() {
        if is_hex_id(&v.value, prefixes) {
            out.insert(v.value);
        } else {
            let hint = format!("as evidence records it, e.g. {example}");
            v.issue(ctx, format!("bad {what} `{}`", v.value), Some(hint));
        }
    }
    out
}

pub(super) fn accounts(ctx: &mut Ctx, list: Option<SpannedList<String>>) -> HashSet<AccountId> {
    let mut out = HashSet::new();
    for v in list.map(|l| l.value).unwrap_or_default() {
        match v.value.trim().parse::<AccountId>() {
            Ok(id) => {
                out.insert(id);
            }
            // Not echoed: a raw API key pasted here by mistake must not reach the logs.
            Err(_) => v.issue(
                ctx,
                "not an account id",
                Some("use the 32-hex-digit id from evidence records, never a raw API key".into()),
            ),
        }
    }
    out
}

pub(super) fn status(ctx: &mut Ctx, v: &Spanned<i64>) -> Option<u16> {
    int_in::<u16>(ctx, v, 400, 599)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::validate::DAY;

    #[test]
    fn durations_accept_bare_units() {
        assert_eq!(parse_duration("m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("d"), Ok(DAY));
        assert_eq!(parse_duration("hour"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("1x").is_err());
    }

    #[test]
    fn ja4_shape() {
        assert!(is_ja4("t13d1516h2_8daaf6152771_e5627efa2ab1"));
        assert!(!is_ja4("t13d1516h2_8daaf6152771"));
        assert!(!is_ja4("t13d1516h2_8DAAF6152771_e5627efa2ab1"));
        assert!(!is_ja4("t13d1516h2_8daaf6152771_e5627efa2ab1_x"));
    }
}
