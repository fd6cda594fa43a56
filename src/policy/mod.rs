//! The policy: which limits apply to a request, and what happens when one is exceeded.
//!
//! PURE: no tokio, no IO, no clock. The caller reads the files and the secret; the counter
//! store ([`crate::limit`]) owns time. Where it sits on the request path:
//!
//! ```text
//! identify (identity::extract_api_key, identity::account_id)
//!   → Policy::plan(facts)        lists, then every matching rule → ops   (here, pure)
//!   → CounterStore::evaluate     one call, all layers, all or nothing    (crate::limit)
//!   → Policy::decide(plan, eval) hits → Verdict + RateLimit headers      (here, pure)
//! ```
//!
//! Parsing has two stages ([`parse_policy`]): a schema walk of the TOML tree into raw structs
//! (`raw.rs`, `walk.rs`), then validation into types that cannot hold invalid states (`types.rs`,
//! `validate/`). Every problem is collected, with its TOML path and line, in one pass.
//! `docs/policy.md` documents every key.

mod claims;
mod decide;
pub mod identity;
mod raw;
mod types;
mod validate;
mod walk;

#[cfg(test)]
mod tests;

use std::fmt;

use toml_edit::ImDocument;

pub use claims::{Claim, Layers};
pub use decide::{Decision, Early, FactsKey, Hit, Plan, RateLimitHeaders, RequestFacts, Verdict};
pub use identity::AccountId;
pub use types::{
    Action, CidrSet, Conditions, CountOf, Identity, KeyPart, KnownClient, Limit, Lists,
    OnStoreError, Policy, RateWindow, Route, Rule, DEFAULT_RELAY_GAP,
};
/// The syntax checks of fingerprint values, for tools that propose policy text
/// (`investigate --clients`).
pub(crate) use validate::{is_h2, is_header_fp, is_ja4};

/// One problem in a policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// TOML path, e.g. `policy.rules[2].rate[1]`; empty for a syntax error.
    pub path: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
}

impl fmt::Display for Issue {
    /// `line {line}: {path}: {message} (hint: {hint})`; the parts that are absent are left
    /// out. Stable: tests and operators match on it. Callers prefix the origin (`file: `).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

/// Parses and validates the `[policy]` table of a TOML document; other top-level tables are
/// ignored. No `[policy]` table: [`Policy::default`] (no rules, everything allowed).
///
/// Every problem is reported, sorted by line: unknown keys, wrong types, bad values, missing
/// or misplaced fields, duplicate names. Values that may be secrets are never echoed.
pub fn parse_policy(toml_text: &str) -> Result<Policy, Vec<Issue>> {
    let mut ctx = walk::Ctx::new(toml_text);
    let doc = match ImDocument::parse(toml_text) {
        Ok(doc) => doc,
        Err(e) => {
            // Only the parser's message, never its excerpt of the file (it may hold a secret).
            let message = e.message().trim().replace('\n', "; ");
            return Err(vec![Issue {
                path: String::new(),
                line: ctx.lines.line(e.span()),
                message: format!("invalid TOML: {message}"),
                hint: None,
            }]);
        }
    };
    let Some((key, item)) = doc.as_table().get_key_value("policy") else {
        return Ok(Policy::default());
    };
    let line = match item {
        toml_edit::Item::Table(t) => ctx.lines.line(t.span()),
        _ => None,
    }
    .or_else(|| ctx.lines.line(item.span()))
    .or_else(|| ctx.lines.line(key.span()));
    let Some(table) = item.as_table_like() else {
        ctx.push(
            "policy",
            line,
            "expected a table",
            Some("write a [policy] section".into()),
        );
        return Err(ctx.issues);
    };
    let raw = raw::read_policy(
        walk::TableReader::new(table, "policy".into(), line),
        &mut ctx,
    );
    let policy = validate::validate(raw, &mut ctx);
    if ctx.issues.is_empty() {
        Ok(policy)
    } else {
        let mut issues = ctx.issues;
        issues.sort_by_key(|i| i.line.unwrap_or(usize::MAX));
        Err(issues)
    }
}

impl Policy {
    /// `policy.version`, recorded in evidence; `"unversioned"` by default.
    pub fn version(&self) -> &str {
        &self.version
    }
    pub fn identity(&self) -> &Identity {
        &self.identity
    }
    pub fn lists(&self) -> &Lists {
        &self.lists
    }
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }
    /// Global shadow mode: evaluate, count, record, never block.
    pub fn shadow(&self) -> bool {
        self.shadow
    }
}
