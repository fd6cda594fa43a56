//! Folding records into aggregates as they stream past.
//!
//! Strings are interned once (`Interner`: the index in an `IndexSet` is the id), and every
//! per-key table is a `Vec` indexed by id or a map from a packed `(key id, account id)` pair to a
//! count. Memory is proportional to the distinct keys and distinct (key, account) pairs, not to
//! the number of records.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;

use indexmap::IndexSet;

use super::input::Warning;
use super::record::{format_ms, parse_ts_ms, Line};
use super::report::{
    Bucket, CountRow, Filters, KeyRow, Report, RuleRow, Span, Timeline, Totals, Warnings,
    REPORT_VERSION,
};
use super::InvestigateArgs;

/// Warnings kept in the report (all are counted).
pub const MAX_WARNINGS: usize = 100;
/// User agents longer than this are cut (they are attacker-chosen and only displayed).
const MAX_UA: usize = 256;

/// Verdict classes, the index into the per-key counters.
const REJECT: usize = 0;
const DENY: usize = 1;
const TARPIT: usize = 2;
const FLAG: usize = 3;
const OTHER: usize = 4;
pub(crate) type ByVerdict = [u64; 5];

fn verdict_class(v: &str) -> usize {
    match v {
        "reject" => REJECT,
        "deny_list" => DENY,
        "tarpit" => TARPIT,
        "flag" => FLAG,
        _ => OTHER,
    }
}

/// Distinct strings, each stored once; the id is the insertion index.
#[derive(Default)]
pub(crate) struct Interner(IndexSet<Box<str>>);

impl Interner {
    pub(crate) fn id(&mut self, s: &str) -> u32 {
        let i = match self.0.get_index_of(s) {
            Some(i) => i,
            None => self.0.insert_full(s.into()).0,
        };
        // More than 4 billion distinct keys cannot fit in memory anyway.
        u32::try_from(i).unwrap_or(u32::MAX)
    }
    pub(crate) fn get(&self, id: u32) -> &str {
        self.0.get_index(id as usize).map_or("", |s| s)
    }
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

/// `(key, account)` packed into one map key.
pub(crate) fn pack(key: u32, account: u32) -> u64 {
    (u64::from(key) << 32) | u64::from(account)
}
pub(crate) fn unpack(k: u64) -> (u32, u32) {
    ((k >> 32) as u32, k as u32)
}

/// Which records count.
pub struct Filter {
    since_ms: Option<i64>,
    until_ms: Option<i64>,
    rules: Vec<String>,
    fingerprint: Option<String>,
    subnet: Option<ipnet::IpNet>,
    account: Option<String>,
    echo: Filters,
}

impl Filter {
    pub fn from_args(a: &InvestigateArgs) -> Self {
        let ms = |t: std::time::SystemTime| {
            let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
        };
        let rfc = |t: std::time::SystemTime| humantime::format_rfc3339_millis(t).to_string();
        Self {
            since_ms: a.since.map(ms),
            until_ms: a.until.map(ms),
            rules: a.rules.clone(),
            fingerprint: a.fingerprint.clone(),
            subnet: a.subnet,
            account: a.account.clone(),
            echo: Filters {
                since: a.since.map(rfc),
                until: a.until.map(rfc),
                rules: a.rules.clone(),
                fingerprint: a.fingerprint.clone(),
                subnet: a.subnet.map(|n| n.to_string()),
                account: a.account.clone(),
            },
        }
    }

    fn matches(&self, r: &Line<'_>, ts: i64) -> bool {
        if self.since_ms.is_some_and(|s| ts < s) || self.until_ms.is_some_and(|u| ts >= u) {
            return false;
        }
        if !self.rules.is_empty()
            && !r
                .hits
                .iter()
                .any(|h| self.rules.iter().any(|x| *x == h.rule))
        {
            return false;
        }
        if let Some(f) = &self.fingerprint {
            let eq = |o: &Option<std::borrow::Cow<'_, str>>| o.as_deref() == Some(f.as_str());
            if !(eq(&r.ja4) || eq(&r.ja4_r) || eq(&r.ja3) || eq(&r.ja3_hash)) {
                return false;
            }
        }
        if let Some(net) = &self.subnet {
            let inside = match r.peer.parse::<IpAddr>() {
                Ok(ip) => net.contains(&ip),
                Err(_) => r
                    .subnet
                    .parse::<ipnet::IpNet>()
                    .is_ok_and(|s| net.contains(&s)),
            };
            if !inside {
                return false;
            }
        }
        if let Some(a) = &self.account {
            if r.account.as_deref() != Some(a.as_str()) {
                return false;
            }
        }
        true
    }
}

#[derive(Default, Clone, Copy)]
pub(crate) struct RuleStat {
    hits: u64,
    shadow: u64,
}

/// The running aggregates.
pub struct Aggregator {
    filter: Filter,
    pub(crate) records: u64,
    pub(crate) matched: u64,
    without_account: u64,
    pub(crate) ja4s: Interner,
    pub(crate) subnets: Interner,
    pub(crate) accounts: Interner,
    pub(crate) rules: Interner,
    actions: Interner,
    uas: Interner,
    pub(crate) ja4_stats: Vec<ByVerdict>,
    pub(crate) subnet_stats: Vec<ByVerdict>,
    ua_counts: Vec<u64>,
    /// Records per account.
    pub(crate) account_records: Vec<u64>,
    /// `(ja4, account)` → records.
    pub(crate) ja4_acct: HashMap<u64, u32>,
    /// `(subnet, account)` → records.
    pub(crate) subnet_acct: HashMap<u64, u32>,
    /// `(rule, account)` → hits.
    pub(crate) rule_acct: HashMap<u64, u32>,
    rule_stats: HashMap<(u32, u32), RuleStat>,
    /// The clients view (claims, User-Agent products, fingerprint combinations).
    clients: super::clients::ClientAgg,
    verdicts: BTreeMap<String, u64>,
    /// Epoch minute → records by verdict class.
    minutes: BTreeMap<i64, ByVerdict>,
    first_ms: i64,
    last_ms: i64,
    warnings: Warnings,
}

impl Aggregator {
    pub fn new(filter: Filter) -> Self {
        Self {
            filter,
            records: 0,
            matched: 0,
            without_account: 0,
            ja4s: Interner::default(),
            subnets: Interner::default(),
            accounts: Interner::default(),
            rules: Interner::default(),
            actions: Interner::default(),
            uas: Interner::default(),
            ja4_stats: Vec::new(),
            subnet_stats: Vec::new(),
            ua_counts: Vec::new(),
            account_records: Vec::new(),
            ja4_acct: HashMap::new(),
            subnet_acct: HashMap::new(),
            rule_acct: HashMap::new(),
            rule_stats: HashMap::new(),
            clients: super::clients::ClientAgg::default(),
            verdicts: BTreeMap::new(),
            minutes: BTreeMap::new(),
            first_ms: i64::MAX,
            last_ms: i64::MIN,
            warnings: Warnings::default(),
        }
    }

    /// One line of input; `Err` (the reason) when it is not a valid record.
    pub fn line(&mut self, bytes: &[u8]) -> Result<(), String> {
        let r: Line<'_> =
            serde_json::from_slice(bytes).map_err(|e| format!("malformed record: {e}"))?;
        let ts = parse_ts_ms(&r.ts).ok_or("malformed record: bad `ts` timestamp")?;
        self.records += 1;
        if self.filter.matches(&r, ts) {
            self.add(&r, ts);
        }
        Ok(())
    }

    fn add(&mut self, r: &Line<'_>, ts: i64) {
        self.matched += 1;
        let class = verdict_class(&r.verdict);
        match self.verdicts.get_mut(r.verdict.as_ref()) {
            Some(n) => *n += 1,
            None => {
                self.verdicts.insert(r.verdict.to_string(), 1);
            }
        }
        let account = r.account.as_deref().map(|a| self.accounts.id(a));
        match account {
            Some(a) => bump(&mut self.account_records, a),
            None => self.without_account += 1,
        }
        let ja4 = r.ja4.as_deref().filter(|s| !s.is_empty()).map(|j| {
            let id = self.ja4s.id(j);
            bump_class(&mut self.ja4_stats, id, class);
            if let Some(a) = account {
                *self.ja4_acct.entry(pack(id, a)).or_default() += 1;
            }
            id
        });
        let subnet = (!r.subnet.is_empty()).then(|| {
            let id = self.subnets.id(&r.subnet);
            bump_class(&mut self.subnet_stats, id, class);
            if let Some(a) = account {
                *self.subnet_acct.entry(pack(id, a)).or_default() += 1;
            }
            id
        });
        self.clients.add(r, ja4, account, subnet);
        for h in &r.hits {
            let rule = self.rules.id(&h.rule);
            let action = self.actions.id(&h.action);
            let s = self.rule_stats.entry((rule, action)).or_default();
            s.hits += 1;
            s.shadow += u64::from(h.shadow);
            if let Some(a) = account {
                *self.rule_acct.entry(pack(rule, a)).or_default() += 1;
            }
        }
        if let Some(ua) = r.user_agent.as_deref() {
            let id = self.uas.id(cut(ua, MAX_UA));
            bump(&mut self.ua_counts, id);
        }
        self.minutes.entry(ts.div_euclid(60_000)).or_default()[class] += 1;
        self.first_ms = self.first_ms.min(ts);
        self.last_ms = self.last_ms.max(ts);
    }

    /// Records a skipped line: printed to `err` and kept while under [`MAX_WARNINGS`].
    pub fn warn(&mut self, w: Warning, err: &mut dyn std::io::Write) {
        self.warnings.total += 1;
        if self.warnings.items.len() < MAX_WARNINGS {
            let _ = writeln!(err, "{}:{}: {}", w.file, w.line, w.message);
            self.warnings.items.push(w);
        }
    }

    /// Prints how many warnings were not printed one by one.
    pub fn finish_warnings(&self, err: &mut dyn std::io::Write) {
        let more = self.warnings.total - self.warnings.items.len() as u64;
        if more > 0 {
            let _ = writeln!(err, "... and {more} more skipped lines");
        }
    }

    pub fn into_report(self, args: &InvestigateArgs, files: &[PathBuf]) -> Report {
        let top = args.top;
        let distinct = |pairs: &HashMap<u64, u32>, n: usize| {
            let mut d = vec![0u64; n];
            for &k in pairs.keys() {
                d[unpack(k).0 as usize] += 1;
            }
            d
        };
        let ja4_accounts = distinct(&self.ja4_acct, self.ja4s.len());
        let subnet_accounts = distinct(&self.subnet_acct, self.subnets.len());
        let rule_accounts = distinct(&self.rule_acct, self.rules.len());

        let key_rows = |names: &Interner, stats: &[ByVerdict], accts: &[u64]| {
            (0..names.len())
                .map(|i| {
                    let s = stats.get(i).copied().unwrap_or_default();
                    KeyRow {
                        value: names.get(i as u32).to_string(),
                        records: s.iter().sum(),
                        rejected: s[REJECT] + s[DENY],
                        tarpit: s[TARPIT],
                        flagged: s[FLAG],
                        accounts: accts.get(i).copied().unwrap_or(0),
                    }
                })
                .collect::<Vec<_>>()
        };
        let ja4_rows = key_rows(&self.ja4s, &self.ja4_stats, &ja4_accounts);
        let subnet_rows = key_rows(&self.subnets, &self.subnet_stats, &subnet_accounts);

        let mut rules: Vec<RuleRow> = self
            .rule_stats
            .iter()
            .map(|(&(rule, action), s)| RuleRow {
                rule: self.rules.get(rule).to_string(),
                action: self.actions.get(action).to_string(),
                hits: s.hits,
                shadow: s.shadow,
                accounts: rule_accounts.get(rule as usize).copied().unwrap_or(0),
            })
            .collect();
        rules.sort_by(|a, b| (b.hits, &a.rule, &a.action).cmp(&(a.hits, &b.rule, &b.action)));
        rules.truncate(top);

        let mut user_agents: Vec<CountRow> = self
            .ua_counts
            .iter()
            .enumerate()
            .map(|(i, &n)| CountRow {
                value: self.uas.get(i as u32).to_string(),
                records: n,
            })
            .collect();
        sort_counts(&mut user_agents);
        user_agents.truncate(top);

        let clusters = super::cluster::build(&self, args.max_link_degree, top);
        let span = (self.matched > 0).then(|| Span {
            first: format_ms(self.first_ms),
            last: format_ms(self.last_ms),
        });
        let timeline = timeline(&self.minutes);
        Report {
            report_version: REPORT_VERSION,
            inputs: files.iter().map(|f| f.display().to_string()).collect(),
            filters: self.filter.echo.clone(),
            totals: Totals {
                records: self.records,
                matched: self.matched,
                skipped: self.warnings.total,
                accounts: self.accounts.len() as u64,
                fingerprints: self.ja4s.len() as u64,
                subnets: self.subnets.len() as u64,
                without_account: self.without_account,
            },
            span,
            verdicts: self.verdicts.clone(),
            rules,
            fingerprints_by_records: top_by(&ja4_rows, top, |r| r.records),
            fingerprints_by_accounts: top_by(&ja4_rows, top, |r| r.accounts),
            subnets_by_records: top_by(&subnet_rows, top, |r| r.records),
            subnets_by_accounts: top_by(&subnet_rows, top, |r| r.accounts),
            user_agents,
            clusters,
            clients: self.clients.build(&self.ja4s, top, args.min_accounts),
            timeline,
            warnings: self.warnings,
        }
    }
}

pub(crate) fn bump(v: &mut Vec<u64>, id: u32) {
    let i = id as usize;
    if v.len() <= i {
        v.resize(i + 1, 0);
    }
    v[i] += 1;
}

fn bump_class(v: &mut Vec<ByVerdict>, id: u32, class: usize) {
    let i = id as usize;
    if v.len() <= i {
        v.resize(i + 1, ByVerdict::default());
    }
    v[i][class] += 1;
}

/// At most `max` bytes of `s`, cut on a character boundary.
pub(crate) fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Most first; ties by value, so output is deterministic.
pub(crate) fn sort_counts(v: &mut [CountRow]) {
    v.sort_by(|a, b| (b.records, &a.value).cmp(&(a.records, &b.value)));
}

fn top_by(rows: &[KeyRow], top: usize, key: impl Fn(&KeyRow) -> u64) -> Vec<KeyRow> {
    let mut idx: Vec<&KeyRow> = rows.iter().collect();
    idx.sort_by(|a, b| (key(b), &a.value).cmp(&(key(a), &b.value)));
    idx.into_iter().take(top).cloned().collect()
}

/// Bucket widths to choose from, smallest first.
const WIDTHS_MIN: [i64; 10] = [1, 5, 15, 60, 180, 360, 720, 1440, 10_080, 43_200];
/// Aim for at most this many buckets.
const MAX_BUCKETS: i64 = 300;

/// Per-minute counts regrouped into buckets sized for the span, gaps filled with zeros.
fn timeline(minutes: &BTreeMap<i64, ByVerdict>) -> Timeline {
    let (Some((&first, _)), Some((&last, _))) =
        (minutes.first_key_value(), minutes.last_key_value())
    else {
        return Timeline {
            bucket_seconds: 60,
            buckets: Vec::new(),
        };
    };
    let span = last - first + 1;
    let width = WIDTHS_MIN
        .iter()
        .copied()
        .find(|w| (span + w - 1) / w <= MAX_BUCKETS)
        // A span of centuries (bogus timestamps): wider buckets still, bounded count.
        .unwrap_or_else(|| ((span + MAX_BUCKETS - 1) / MAX_BUCKETS).max(1));
    let start = first.div_euclid(width);
    let end = last.div_euclid(width);
    let mut buckets: Vec<ByVerdict> = vec![ByVerdict::default(); (end - start + 1) as usize];
    for (&m, c) in minutes {
        let b = &mut buckets[(m.div_euclid(width) - start) as usize];
        for (x, y) in b.iter_mut().zip(c) {
            *x += y;
        }
    }
    Timeline {
        bucket_seconds: (width * 60) as u64,
        buckets: buckets
            .into_iter()
            .enumerate()
            .map(|(i, c)| Bucket {
                start: format_ms((start + i as i64) * width * 60_000),
                total: c.iter().sum(),
                reject: c[REJECT],
                deny_list: c[DENY],
                tarpit: c[TARPIT],
                flag: c[FLAG],
                other: c[OTHER],
            })
            .collect(),
    }
}
