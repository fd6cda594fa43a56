//! Stage one: the `[policy]` table as written, read into raw structs by the schema walk
//! ([`super::walk`]). Every field is optional and keeps its TOML path and line; nothing here
//! judges values beyond their TOML type. Unknown keys and type errors are reported as they
//! are met, and reading goes on, so one pass finds them all.

use super::walk::{Ctx, Spanned, SpannedList, TableReader};

#[derive(Debug, Default)]
pub(crate) struct RawPolicy {
    pub(crate) version: Option<Spanned<String>>,
    pub(crate) shadow: Option<Spanned<bool>>,
    pub(crate) relay_gap: Option<Spanned<String>>,
    pub(crate) identity: Option<RawIdentity>,
    pub(crate) lists: Option<RawLists>,
    pub(crate) clients: Vec<RawClient>,
    pub(crate) rules: Vec<RawRule>,
}

#[derive(Debug)]
pub(crate) struct RawClient {
    /// `policy.clients[i]`
    pub(crate) path: String,
    pub(crate) line: Option<usize>,
    pub(crate) name: Option<Spanned<String>>,
    pub(crate) user_agent: Option<Spanned<String>>,
    pub(crate) headers: Option<SpannedList<String>>,
    pub(crate) ja4: Option<SpannedList<String>>,
    pub(crate) ja3: Option<SpannedList<String>>,
    pub(crate) header_fp: Option<SpannedList<String>>,
    pub(crate) h2: Option<SpannedList<String>>,
}

#[derive(Debug)]
pub(crate) struct RawIdentity {
    pub(crate) api_key_headers: Option<SpannedList<String>>,
    pub(crate) secret_env: Option<Spanned<String>>,
    pub(crate) secret_file: Option<Spanned<String>>,
    pub(crate) subnet_v4: Option<SpannedList<i64>>,
    pub(crate) subnet_v6: Option<SpannedList<i64>>,
}

#[derive(Debug)]
pub(crate) struct RawLists {
    pub(crate) allow_accounts: Option<SpannedList<String>>,
    pub(crate) deny_accounts: Option<SpannedList<String>>,
    pub(crate) allow_ja4: Option<SpannedList<String>>,
    pub(crate) deny_ja4: Option<SpannedList<String>>,
    pub(crate) allow_ja3: Option<SpannedList<String>>,
    pub(crate) deny_ja3: Option<SpannedList<String>>,
    pub(crate) allow_cidrs: Option<SpannedList<String>>,
    pub(crate) deny_cidrs: Option<SpannedList<String>>,
    pub(crate) deny_status: Option<Spanned<i64>>,
}

#[derive(Debug)]
pub(crate) struct RawRule {
    /// `policy.rules[i]`
    pub(crate) path: String,
    /// The `[[policy.rules]]` header (or the inline table's) line.
    pub(crate) line: Option<usize>,
    pub(crate) name: Option<Spanned<String>>,
    pub(crate) key: Option<SpannedList<String>>,
    pub(crate) limit: Option<Spanned<String>>,
    pub(crate) rate: Option<SpannedList<String>>,
    pub(crate) burst: Option<Spanned<i64>>,
    pub(crate) max: Option<Spanned<i64>>,
    pub(crate) count: Option<Spanned<String>>,
    pub(crate) window: Option<Spanned<String>>,
    pub(crate) action: Option<Spanned<String>>,
    pub(crate) status: Option<Spanned<i64>>,
    pub(crate) tarpit: Option<Spanned<String>>,
    pub(crate) shadow: Option<Spanned<bool>>,
    pub(crate) hide_headers: Option<Spanned<bool>>,
    pub(crate) on_store_error: Option<Spanned<String>>,
    pub(crate) when: Option<RawWhen>,
    /// Keys present with the wrong type (already reported).
    pub(crate) ill_typed: Vec<&'static str>,
}

#[derive(Debug)]
pub(crate) struct RawWhen {
    pub(crate) routes: Option<SpannedList<String>>,
    pub(crate) ja4: Option<SpannedList<String>>,
    pub(crate) ja3: Option<SpannedList<String>>,
    pub(crate) cidrs: Option<SpannedList<String>>,
    pub(crate) user_agent: Option<Spanned<String>>,
    pub(crate) has_account: Option<Spanned<bool>>,
    pub(crate) header_fp: Option<SpannedList<String>>,
    pub(crate) h2: Option<SpannedList<String>>,
    pub(crate) relay: Option<Spanned<bool>>,
    pub(crate) claim_mismatch: Option<Spanned<bool>>,
}

/// Reads `[policy]` (the table `t`, at path `policy`).
pub(crate) fn read_policy(mut t: TableReader<'_>, ctx: &mut Ctx) -> RawPolicy {
    let raw = RawPolicy {
        version: t.string(ctx, "version"),
        shadow: t.bool(ctx, "shadow"),
        relay_gap: t.string(ctx, "relay_gap"),
        identity: t.table(ctx, "identity").map(|t| read_identity(t, ctx)),
        lists: t.table(ctx, "lists").map(|t| read_lists(t, ctx)),
        clients: t
            .tables(ctx, "clients")
            .into_iter()
            .map(|c| read_client(c, ctx))
            .collect(),
        rules: t
            .tables(ctx, "rules")
            .into_iter()
            .map(|r| read_rule(r, ctx))
            .collect(),
    };
    t.finish(ctx);
    raw
}

fn read_identity(mut t: TableReader<'_>, ctx: &mut Ctx) -> RawIdentity {
    let raw = RawIdentity {
        api_key_headers: t.strings(ctx, "api_key_headers"),
        secret_env: t.string(ctx, "secret_env"),
        secret_file: t.string(ctx, "secret_file"),
        subnet_v4: t.ints(ctx, "subnet_v4"),
        subnet_v6: t.ints(ctx, "subnet_v6"),
    };
    t.finish(ctx);
    raw
}

fn read_lists(mut t: TableReader<'_>, ctx: &mut Ctx) -> RawLists {
    let raw = RawLists {
        allow_accounts: t.strings(ctx, "allow_accounts"),
        deny_accounts: t.strings(ctx, "deny_accounts"),
        allow_ja4: t.strings(ctx, "allow_ja4"),
        deny_ja4: t.strings(ctx, "deny_ja4"),
        allow_ja3: t.strings(ctx, "allow_ja3"),
        deny_ja3: t.strings(ctx, "deny_ja3"),
        allow_cidrs: t.strings(ctx, "allow_cidrs"),
        deny_cidrs: t.strings(ctx, "deny_cidrs"),
        deny_status: t.int(ctx, "deny_status"),
    };
    t.finish(ctx);
    raw
}

fn read_client(mut t: TableReader<'_>, ctx: &mut Ctx) -> RawClient {
    let raw = RawClient {
        path: t.path.clone(),
        line: t.line,
        name: t.string(ctx, "name"),
        user_agent: t.string(ctx, "user_agent"),
        headers: t.strings(ctx, "headers"),
        ja4: t.strings(ctx, "ja4"),
        ja3: t.strings(ctx, "ja3"),
        header_fp: t.strings(ctx, "header_fp"),
        h2: t.strings(ctx, "h2"),
    };
    t.finish(ctx);
    raw
}

fn read_rule(mut t: TableReader<'_>, ctx: &mut Ctx) -> RawRule {
    let mut raw = RawRule {
        path: t.path.clone(),
        line: t.line,
        name: t.string(ctx, "name"),
        key: t.string_or_strings(ctx, "key"),
        limit: t.string(ctx, "limit"),
        rate: t.string_or_strings(ctx, "rate"),
        burst: t.int(ctx, "burst"),
        max: t.int(ctx, "max"),
        count: t.string(ctx, "count"),
        window: t.string(ctx, "window"),
        action: t.string(ctx, "action"),
        status: t.int(ctx, "status"),
        tarpit: t.string(ctx, "tarpit"),
        shadow: t.bool(ctx, "shadow"),
        hide_headers: t.bool(ctx, "hide_headers"),
        on_store_error: t.string(ctx, "on_store_error"),
        when: t.table(ctx, "when").map(|t| read_when(t, ctx)),
        ill_typed: Vec::new(),
    };
    raw.ill_typed = t.ill_typed();
    t.finish(ctx);
    raw
}

fn read_when(mut t: TableReader<'_>, ctx: &mut Ctx) -> RawWhen {
    let raw = RawWhen {
        routes: t.strings(ctx, "routes"),
        ja4: t.strings(ctx, "ja4"),
        ja3: t.strings(ctx, "ja3"),
        cidrs: t.strings(ctx, "cidrs"),
        user_agent: t.string(ctx, "user_agent"),
        has_account: t.bool(ctx, "has_account"),
        header_fp: t.strings(ctx, "header_fp"),
        h2: t.strings(ctx, "h2"),
        relay: t.bool(ctx, "relay"),
        claim_mismatch: t.bool(ctx, "claim_mismatch"),
    };
    t.finish(ctx);
    raw
}
