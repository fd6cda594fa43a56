//! The report: what `--json` prints and what the text and HTML renderings show. Field names
//! are part of the `--json` interface (documented in `docs/investigate.md`); add, don't rename.

use std::collections::BTreeMap;

use serde::Serialize;

use super::input::Warning;

/// Bumped when a field of the JSON document changes meaning or goes away.
pub const REPORT_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub report_version: u32,
    /// The files read, in order.
    pub inputs: Vec<String>,
    pub filters: Filters,
    pub totals: Totals,
    /// First and last record time among the matching records.
    pub span: Option<Span>,
    /// Matching records by verdict.
    pub verdicts: BTreeMap<String, u64>,
    /// Hits by rule and action, most first.
    pub rules: Vec<RuleRow>,
    pub fingerprints_by_records: Vec<KeyRow>,
    pub fingerprints_by_accounts: Vec<KeyRow>,
    pub subnets_by_records: Vec<KeyRow>,
    pub subnets_by_accounts: Vec<KeyRow>,
    pub user_agents: Vec<CountRow>,
    pub clusters: Clusters,
    /// Records grouped by the client they claim, with the fingerprint combinations seen.
    pub clients: Clients,
    pub timeline: Timeline,
    pub warnings: Warnings,
}

/// The filters applied (echoed so a saved report says what it covers).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Filters {
    pub since: Option<String>,
    pub until: Option<String>,
    pub rules: Vec<String>,
    pub fingerprint: Option<String>,
    pub subnet: Option<String>,
    pub account: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    /// Valid records read (matching or not).
    pub records: u64,
    /// Records that passed the filters; every table counts only these.
    pub matched: u64,
    /// Lines skipped (see `warnings`).
    pub skipped: u64,
    pub accounts: u64,
    pub fingerprints: u64,
    pub subnets: u64,
    /// Matching records without an account (no or unknown API key).
    pub without_account: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Span {
    pub first: String,
    pub last: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RuleRow {
    pub rule: String,
    pub action: String,
    pub hits: u64,
    /// Of `hits`, how many were not enforced (shadow mode).
    pub shadow: u64,
    /// Distinct accounts with a hit on this rule (any action).
    pub accounts: u64,
}

/// One fingerprint or subnet.
#[derive(Debug, Clone, Serialize)]
pub struct KeyRow {
    pub value: String,
    pub records: u64,
    /// Verdict `reject` or `deny_list`.
    pub rejected: u64,
    pub tarpit: u64,
    pub flagged: u64,
    /// Distinct accounts.
    pub accounts: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CountRow {
    pub value: String,
    pub records: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Clusters {
    /// How accounts were linked.
    pub link: String,
    pub max_link_degree: u64,
    /// Clusters of two or more accounts.
    pub total: u64,
    pub accounts_in_clusters: u64,
    /// JA4s and subnets with more than `max_link_degree` accounts, not used as links.
    pub hubs: Vec<Hub>,
    /// The largest clusters, largest first.
    pub items: Vec<Cluster>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Hub {
    /// `ja4` or `subnet`.
    pub kind: String,
    pub value: String,
    pub accounts: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Cluster {
    /// 1 = largest.
    pub rank: u64,
    /// Accounts.
    pub size: u64,
    pub records: u64,
    pub ja4: Vec<CountRow>,
    pub subnets: Vec<CountRow>,
    pub rules: Vec<CountRow>,
    /// Every account in the cluster, sorted.
    pub accounts: Vec<String>,
}

/// The clients view: candidates for the known sets of `[[policy.clients]]`.
#[derive(Debug, Clone, Serialize)]
pub struct Clients {
    /// How records were grouped.
    pub grouping: String,
    /// Groups seen (all of them; `items` lists the largest).
    pub total: u64,
    /// A combination's values are proposed in `candidate` only when this many distinct
    /// accounts used it (`--min-accounts`).
    pub min_accounts: u64,
    /// The groups with the most records, most first.
    pub items: Vec<ClientGroup>,
}

/// The records that claim one client, or share one User-Agent product.
#[derive(Debug, Clone, Serialize)]
pub struct ClientGroup {
    /// `claim` (the evidence `claim` field), `user_agent` (no claim: the User-Agent's product
    /// token) or `none` (neither).
    pub kind: String,
    /// The claimed client's name or the product token; empty for `none`.
    pub name: String,
    pub records: u64,
    /// Distinct accounts.
    pub accounts: u64,
    /// The most common User-Agent product token among the group's records.
    pub user_agent_product: Option<String>,
    /// Records with at least one `claim_mismatch` layer.
    pub mismatched: u64,
    /// Records per mismatch layer.
    pub mismatch: MismatchCounts,
    /// Distinct (JA4, header fingerprint, HTTP/2 fingerprint) combinations in the group.
    pub combinations_total: u64,
    /// The combinations used by the most distinct accounts, most first.
    pub combinations: Vec<Combination>,
    /// A `[[policy.clients]]` section proposing the values of the listed combinations seen by
    /// at least `min_accounts` accounts, as TOML; `None` when no value qualifies.
    pub candidate: Option<String>,
}

impl ClientGroup {
    /// How the group was formed, for headings: `claimed`, `user agent product, no claim`, or
    /// `no claim, no user agent`.
    pub(crate) fn kind_label(&self) -> &'static str {
        match self.kind.as_str() {
            "claim" => "claimed",
            "user_agent" => "user agent product, no claim",
            _ => "no claim, no user agent",
        }
    }

    /// The group's counts in one line; numbers only, so nothing to escape.
    pub(crate) fn summary(&self) -> String {
        let m = &self.mismatch;
        format!(
            "{} records, {} accounts; {} with a claim mismatch (ja4 {}, ja3 {}, header_fp {}, \
             h2 {}); {} of {} combinations",
            self.records,
            self.accounts,
            self.mismatched,
            m.ja4,
            m.ja3,
            m.header_fp,
            m.h2,
            self.combinations.len(),
            self.combinations_total
        )
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct MismatchCounts {
    pub ja4: u64,
    pub ja3: u64,
    pub header_fp: u64,
    pub h2: u64,
}

/// One client stack as seen: JA4, header fingerprint id, HTTP/2 (Akamai) fingerprint.
#[derive(Debug, Clone, Serialize)]
pub struct Combination {
    pub ja4: Option<String>,
    pub header_fp: Option<String>,
    pub h2: Option<String>,
    pub records: u64,
    /// Distinct accounts.
    pub accounts: u64,
    /// Distinct subnets.
    pub subnets: u64,
    /// Mismatch layers any of its records carried (`ja4`, `ja3`, `header_fp`, `h2`).
    pub mismatch: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Timeline {
    /// Bucket width, chosen from the span (1 min … 30 days; at most ~300 buckets).
    pub bucket_seconds: u64,
    pub buckets: Vec<Bucket>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Bucket {
    /// Bucket start, RFC 3339 UTC.
    pub start: String,
    pub total: u64,
    pub reject: u64,
    pub deny_list: u64,
    pub tarpit: u64,
    pub flag: u64,
    pub other: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Warnings {
    pub total: u64,
    /// The first ones (at most [`super::aggregate::MAX_WARNINGS`]).
    pub items: Vec<Warning>,
}
