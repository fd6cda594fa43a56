//! Unit tests of planning and deciding, written against TOML policies as operators write them:
//! [`keys`] (key parts, layer keys, conditions), [`plan`] (lists, windows → ops, distinct
//! members), [`decide`] (verdict precedence, shadow mode, RateLimit headers).

mod claims;
mod decide;
mod keys;
mod parse;
mod plan;

use std::net::IpAddr;
use std::time::Duration;

use super::identity::account_id;
use super::*;
use crate::limit::{Evaluation, Lease, Outcome};

pub(super) const JA4: &str = "t13d1516h2_8daaf6152771_e5627efa2ab1";
pub(super) const JA4_OTHER: &str = "t13d1715h2_5b57614c22b0_3d5424432f57";
pub(super) const JA3: &str = "e7d705a3286e19ea42f587b344ee6865";

pub(super) fn policy(text: &str) -> Policy {
    match parse_policy(text) {
        Ok(p) => p,
        Err(issues) => {
            let all: Vec<String> = issues.iter().map(ToString::to_string).collect();
            panic!("policy does not parse:\n{}", all.join("\n"))
        }
    }
}

pub(super) fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub(super) fn facts<'a>() -> RequestFacts<'a> {
    RequestFacts {
        account: Some(account_id(b"secret", "sk-test")),
        ip: ip("203.0.113.77"),
        ja3_hash: Some(JA3),
        ja4: Some(JA4),
        method: "POST",
        path: "/v1/messages",
        user_agent: Some("python-httpx/0.27.0"),
        header_fp: None,
        h2_fp: None,
        claim: None,
        relay: None,
    }
}

/// One rule keyed on `key` (TOML array body), rate 10/1s, plus extra lines.
pub(super) fn keyed(key: &str, extra: &str) -> Policy {
    policy(&format!(
        "[policy]\n[[policy.rules]]\nname = \"r\"\nkey = [{key}]\nlimit = \"rate\"\nrate = \"10/1s\"\n{extra}"
    ))
}

pub(super) fn keys(p: &Policy, f: &RequestFacts<'_>) -> Vec<String> {
    match p.plan(f) {
        Ok(plan) => plan.ops.iter().map(|o| o.op.key().to_string()).collect(),
        Err(e) => panic!("early decision {e:?}"),
    }
}

pub(super) fn one_key(p: &Policy, f: &RequestFacts<'_>) -> String {
    let k = keys(p, f);
    assert_eq!(k.len(), 1, "{k:?}");
    k.into_iter().next().unwrap()
}

pub(super) fn eval(outcomes: Vec<Outcome>, blocked: bool) -> Evaluation {
    Evaluation {
        outcomes,
        blocked,
        lease: Lease::none(),
    }
}

pub(super) fn allowed(remaining: u64, reset_s: u64) -> Outcome {
    Outcome::Allowed {
        remaining,
        reset: Duration::from_secs(reset_s),
    }
}

pub(super) fn denied(retry_s: u64) -> Outcome {
    Outcome::Denied {
        current: 11,
        limit: 10,
        retry_after: Duration::from_secs(retry_s),
    }
}
