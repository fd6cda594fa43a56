//! The clients view: records grouped by the client they claim, with the fingerprint
//! combinations each group was seen with, and a `[[policy.clients]]` candidate per group, so an
//! operator can fill in the known sets (`docs/policy.md`) from evidence.
//!
//! A group is the evidence `claim` (a `[[policy.clients]]` name) when the record has one;
//! otherwise the User-Agent's product token ([`product`]), so SDKs the policy does not know yet
//! show up too. Per group it counts records, distinct accounts and mismatch layers; per
//! (JA4, header fingerprint, HTTP/2 fingerprint) combination, records, distinct accounts and
//! distinct subnets. The candidate proposes only the values of combinations seen with at least
//! `--min-accounts` distinct accounts, so one abused key cannot get its stack whitelisted.
//!
//! Like the rest of the module, memory follows distinct keys: strings are interned, combinations
//! are an `IndexSet` of id tuples, and distinct accounts and subnets are sets of packed pairs.

use std::collections::{HashMap, HashSet};
use std::fmt::Write;

use indexmap::IndexSet;

use super::aggregate::{bump, cut, pack, unpack, Interner};
use super::record::Line;
use super::report::{ClientGroup, Clients, Combination, MismatchCounts};
use super::text::clean;

/// Longest claim name or product token kept, in bytes (a policy client name is at most 64).
const MAX_NAME: usize = 64;
/// Longest header or HTTP/2 fingerprint kept, in bytes (real ones are well under 200).
const MAX_FP: usize = 512;
/// Marks a product token cut at [`MAX_NAME`]: its regex is then a plain prefix.
const CUT: char = '…';
/// An absent fingerprint in a combination.
const ABSENT: u32 = u32::MAX;
/// `claim_mismatch` layer names, in the order the evidence writes them; the index is the bit.
const LAYERS: [&str; 4] = ["ja4", "ja3", "header_fp", "h2"];

pub(crate) const GROUPING: &str = "the evidence `claim`; without one, the User-Agent product \
     token (its first word, without a trailing /VERSION)";

/// The running aggregates of the clients view.
#[derive(Default)]
pub(crate) struct ClientAgg {
    /// Group keys: `c` + claim, `u` + product token, or `n` (neither).
    groups: Interner,
    products: Interner,
    header_fps: Interner,
    h2s: Interner,
    group_records: Vec<u64>,
    /// Per group: records per mismatch layer ([`LAYERS`] order), then records with any.
    group_mismatch: Vec<[u64; 5]>,
    /// `(group, account)`.
    group_accounts: HashSet<u64>,
    /// `(group, product)` → records.
    group_products: HashMap<u64, u32>,
    /// `[group, ja4, header_fp, h2]` ids ([`ABSENT`] where missing); the index is the id.
    combos: IndexSet<[u32; 4]>,
    combo_records: Vec<u64>,
    /// Mismatch layer bits seen on the combination's records.
    combo_mismatch: Vec<u8>,
    /// `(combination, account)`.
    combo_accounts: HashSet<u64>,
    /// `(combination, subnet)`.
    combo_subnets: HashSet<u64>,
    /// Reused for the group key, so a record allocates only when its group is new.
    key: String,
}

impl ClientAgg {
    /// One matching record; `ja4`, `account` and `subnet` are the ids the aggregator gave them.
    pub(crate) fn add(
        &mut self,
        r: &Line<'_>,
        ja4: Option<u32>,
        account: Option<u32>,
        subnet: Option<u32>,
    ) {
        let product = r.user_agent.as_deref().and_then(product);
        self.key.clear();
        match (r.claim.as_deref().filter(|c| !c.is_empty()), &product) {
            (Some(c), _) => {
                self.key.push('c');
                self.key.push_str(cut(c, MAX_NAME));
            }
            (None, Some(p)) => {
                self.key.push('u');
                self.key.push_str(p);
            }
            (None, None) => self.key.push('n'),
        }
        let g = self.groups.id(&self.key);
        bump(&mut self.group_records, g);
        if let Some(a) = account {
            self.group_accounts.insert(pack(g, a));
        }
        if let Some(p) = &product {
            let p = self.products.id(p);
            *self.group_products.entry(pack(g, p)).or_default() += 1;
        }

        let mut bits = 0u8;
        for name in r.claim_mismatch.iter().flatten() {
            if let Some(i) = LAYERS.iter().position(|l| *l == name.as_ref()) {
                bits |= 1 << i;
            }
        }
        let gi = g as usize;
        if self.group_mismatch.len() <= gi {
            self.group_mismatch.resize(gi + 1, [0; 5]);
        }
        for (i, n) in self.group_mismatch[gi].iter_mut().take(4).enumerate() {
            *n += u64::from(bits >> i & 1);
        }
        self.group_mismatch[gi][4] += u64::from(bits != 0);

        let intern = |names: &mut Interner, v: &Option<std::borrow::Cow<'_, str>>| {
            v.as_deref()
                .filter(|s| !s.is_empty())
                .map_or(ABSENT, |s| names.id(cut(s, MAX_FP)))
        };
        let combo = [
            g,
            ja4.unwrap_or(ABSENT),
            intern(&mut self.header_fps, &r.header_fp),
            intern(&mut self.h2s, &r.h2_fp),
        ];
        let c = self.combos.insert_full(combo).0;
        // More than 4 billion combinations cannot fit in memory anyway.
        let c = u32::try_from(c).unwrap_or(u32::MAX);
        bump(&mut self.combo_records, c);
        let ci = c as usize;
        if self.combo_mismatch.len() <= ci {
            self.combo_mismatch.resize(ci + 1, 0);
        }
        self.combo_mismatch[ci] |= bits;
        if let Some(a) = account {
            self.combo_accounts.insert(pack(c, a));
        }
        if let Some(s) = subnet {
            self.combo_subnets.insert(pack(c, s));
        }
    }

    /// The view: the `top` groups by records, each with its `top` combinations by distinct
    /// accounts and its candidate section.
    pub(crate) fn build(&self, ja4s: &Interner, top: usize, min_accounts: u64) -> Clients {
        let distinct = |set: &HashSet<u64>, n: usize| {
            let mut d = vec![0u64; n];
            for &k in set {
                if let Some(x) = d.get_mut(unpack(k).0 as usize) {
                    *x += 1;
                }
            }
            d
        };
        let n = self.groups.len();
        let group_accounts = distinct(&self.group_accounts, n);
        let combo_accounts = distinct(&self.combo_accounts, self.combos.len());
        let combo_subnets = distinct(&self.combo_subnets, self.combos.len());

        // Most common product per group; ties by the product text, for stable output.
        let mut best: Vec<Option<(u32, &str)>> = vec![None; n];
        for (&k, &count) in &self.group_products {
            let (g, p) = unpack(k);
            let p = self.products.get(p);
            if let Some(b) = best.get_mut(g as usize) {
                let better = match *b {
                    None => true,
                    Some((c, q)) => count > c || (count == c && p < q),
                };
                if better {
                    *b = Some((count, p));
                }
            }
        }
        let mut by_group: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, c) in self.combos.iter().enumerate() {
            if let Some(v) = by_group.get_mut(c[0] as usize) {
                v.push(i);
            }
        }

        let records = |g: usize| self.group_records.get(g).copied().unwrap_or(0);
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| {
            (records(b), self.groups.get(a as u32)).cmp(&(records(a), self.groups.get(b as u32)))
        });
        let value = |names: &Interner, id: u32| (id != ABSENT).then(|| names.get(id).to_string());
        let mut items: Vec<ClientGroup> = order
            .into_iter()
            .take(top)
            .map(|g| {
                let key = self.groups.get(g as u32);
                let (kind, name) = match key.split_at(key.len().min(1)) {
                    ("c", name) => ("claim", name),
                    ("u", name) => ("user_agent", name),
                    _ => ("none", ""),
                };
                let mut combos: Vec<Combination> = by_group[g]
                    .iter()
                    .map(|&i| {
                        let [_, ja4, hfp, h2] =
                            self.combos.get_index(i).copied().unwrap_or([ABSENT; 4]);
                        let bits = self.combo_mismatch.get(i).copied().unwrap_or(0);
                        Combination {
                            ja4: value(ja4s, ja4),
                            header_fp: value(&self.header_fps, hfp),
                            h2: value(&self.h2s, h2),
                            records: self.combo_records.get(i).copied().unwrap_or(0),
                            accounts: combo_accounts[i],
                            subnets: combo_subnets[i],
                            mismatch: layer_names(bits),
                        }
                    })
                    .collect();
                combos.sort_by(|a, b| {
                    (b.accounts, b.records, &a.ja4, &a.header_fp, &a.h2).cmp(&(
                        a.accounts,
                        a.records,
                        &b.ja4,
                        &b.header_fp,
                        &b.h2,
                    ))
                });
                let combinations_total = combos.len() as u64;
                combos.truncate(top);
                let m = self.group_mismatch.get(g).copied().unwrap_or_default();
                ClientGroup {
                    kind: kind.into(),
                    name: name.into(),
                    records: records(g),
                    accounts: group_accounts[g],
                    user_agent_product: best[g].map(|(_, p)| p.to_string()),
                    mismatched: m[4],
                    mismatch: MismatchCounts {
                        ja4: m[0],
                        ja3: m[1],
                        header_fp: m[2],
                        h2: m[3],
                    },
                    combinations_total,
                    combinations: combos,
                    candidate: None,
                }
            })
            .collect();

        // Claimed names are the policy's own: they keep their name, and product groups that
        // would take the same one get a suffix, so the sections can be pasted together.
        let mut used: HashSet<String> = items
            .iter()
            .filter(|g| g.kind == "claim")
            .map(|g| slug(&g.name))
            .collect();
        for g in &mut items {
            g.candidate = candidate(g, min_accounts, &mut used);
        }
        Clients {
            grouping: GROUPING.into(),
            total: n as u64,
            min_accounts,
            items,
        }
    }
}

fn layer_names(bits: u8) -> Vec<String> {
    LAYERS
        .iter()
        .enumerate()
        .filter(|(i, _)| bits >> i & 1 == 1)
        .map(|(_, l)| l.to_string())
        .collect()
}

/// The product token of a User-Agent: its first whitespace-separated word, without a trailing
/// `/VERSION` (a last `/` part starting with a digit). `Anthropic/Python 2.12.0` →
/// `Anthropic/Python`, `anthropic-sdk-python/0.40.0 (CPython 3.12)` → `anthropic-sdk-python`,
/// `Mozilla/5.0 (…)` → `Mozilla`. At most [`MAX_NAME`] bytes; a longer token is cut and ends in
/// [`CUT`]. `None` for an empty User-Agent.
pub(crate) fn product(ua: &str) -> Option<std::borrow::Cow<'_, str>> {
    let word = ua.split_whitespace().next()?;
    let word = match word.rsplit_once('/') {
        Some((head, version))
            if !head.is_empty() && version.starts_with(|c: char| c.is_ascii_digit()) =>
        {
            head
        }
        _ => word,
    };
    if word.len() <= MAX_NAME {
        return Some(word.into());
    }
    let mut s = cut(word, MAX_NAME - CUT.len_utf8()).to_string();
    s.push(CUT);
    Some(s.into())
}

/// A policy client name from a group name: `[a-z0-9_-]`, other characters as `-`, at most 60
/// bytes (room for a `-N` suffix); `client` when nothing is left.
fn slug(name: &str) -> String {
    let mut s = String::new();
    for c in name.chars() {
        let c = c.to_ascii_lowercase();
        let c = if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '-'
        };
        if c == '-' && (s.is_empty() || s.ends_with('-')) {
            continue;
        }
        if s.len() >= 60 {
            break;
        }
        s.push(c);
    }
    while s.ends_with('-') {
        s.pop();
    }
    if s.is_empty() {
        s.push_str("client");
    }
    s
}

/// A TOML basic string. Control and bidirectional-override characters are `\u` escapes, so
/// the text is also safe to print on a terminal.
pub(crate) fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control()
                || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') =>
            {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The regex that claims a product: the token, then a separator or the end
/// (`^Anthropic/Python(?:[ /]|$)`); a token that was cut is a plain prefix.
fn user_agent_regex(product: &str) -> String {
    let (head, tail) = match product.strip_suffix(CUT) {
        Some(head) => (head, ""),
        None => (product, "(?:[ /]|$)"),
    };
    format!("^{}{tail}", escape_regex(head))
}

/// `s` as a literal outside a character class. Unlike `regex::escape`, leaves `-`, `&`, `~`
/// and `#` alone (they are special only inside a class or in verbose mode), so product names
/// stay readable: `^anthropic-sdk-python`, not `^anthropic\-sdk\-python`.
fn escape_regex(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    for c in s.chars() {
        if matches!(
            c,
            '\\' | '.' | '+' | '*' | '?' | '(' | ')' | '|' | '[' | ']' | '{' | '}' | '^' | '$'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// One layer's proposed values, each with the combinations (1-based) it came from.
struct Values<'a> {
    key: &'static str,
    valid: fn(&str) -> bool,
    items: Vec<(&'a str, Vec<usize>)>,
}

impl<'a> Values<'a> {
    fn new(key: &'static str, valid: fn(&str) -> bool) -> Self {
        Self {
            key,
            valid,
            items: Vec::new(),
        }
    }

    /// Adds `v` from combination `n`; false when the policy would not accept it.
    fn add(&mut self, v: Option<&'a str>, n: usize) -> bool {
        let Some(v) = v else { return true };
        if !(self.valid)(v) {
            return false;
        }
        match self.items.iter_mut().find(|(x, _)| *x == v) {
            Some((_, from)) => from.push(n),
            None => self.items.push((v, vec![n])),
        }
        true
    }

    fn write(&self, out: &mut String) {
        if self.items.is_empty() {
            return;
        }
        let _ = writeln!(out, "{} = [", self.key);
        for (v, from) in &self.items {
            let from: Vec<String> = from.iter().map(|n| format!("#{n}")).collect();
            let _ = writeln!(out, "    {}, # {}", toml_str(v), from.join(", "));
        }
        out.push_str("]\n");
    }
}

/// The `[[policy.clients]]` candidate of a group, or `None` when no listed combination was
/// seen by `min_accounts` accounts (or the group has nothing to be claimed by).
fn candidate(g: &ClientGroup, min_accounts: u64, used: &mut HashSet<String>) -> Option<String> {
    if g.kind == "none" {
        return None;
    }
    let mut ja4 = Values::new("ja4", crate::policy::is_ja4);
    let mut header_fp = Values::new("header_fp", crate::policy::is_header_fp);
    let mut h2 = Values::new("h2", crate::policy::is_h2);
    let mut picked = Vec::new();
    let mut rejected = 0;
    for (i, c) in g.combinations.iter().enumerate() {
        if c.accounts < min_accounts.max(1) {
            continue;
        }
        picked.push((i + 1, c));
        for ok in [
            ja4.add(c.ja4.as_deref(), i + 1),
            header_fp.add(c.header_fp.as_deref(), i + 1),
            h2.add(c.h2.as_deref(), i + 1),
        ] {
            rejected += usize::from(!ok);
        }
    }
    if [&ja4, &header_fp, &h2].iter().all(|v| v.items.is_empty()) {
        return None;
    }
    let name = if g.kind == "claim" {
        slug(&g.name)
    } else {
        let base = slug(&g.name);
        let mut name = base.clone();
        let mut n = 2;
        while used.contains(&name) {
            name = format!("{base}-{n}");
            n += 1;
        }
        used.insert(name.clone());
        name
    };

    let mut s = String::new();
    let what = if g.kind == "claim" {
        "claimed client"
    } else {
        "User-Agent product"
    };
    let _ = writeln!(
        s,
        "# CANDIDATE, review before use; do not paste blindly. {what} {}: {} records, {} accounts.",
        clean(&g.name),
        g.records,
        g.accounts
    );
    let _ = writeln!(
        s,
        "# The values of the listed combinations seen by {} or more distinct accounts. A campaign",
        min_accounts.max(1)
    );
    s.push_str(
        "# copying this client's headers claims it too: the real client is one combination with\n\
         # many accounts and many subnets, steadily. `mismatch`: the running policy does not\n\
         # know it yet (a new release, or an impostor).\n",
    );
    for (n, c) in &picked {
        let mismatch = if c.mismatch.is_empty() {
            String::new()
        } else {
            format!(", mismatch {}", c.mismatch.join(","))
        };
        let _ = writeln!(
            s,
            "#   #{n}: {} accounts, {} subnets, {} records{mismatch}",
            c.accounts, c.subnets, c.records
        );
    }
    if g.kind == "claim" {
        s.push_str("# The policy already has this client: add the values to its lists instead.\n");
    }
    if rejected > 0 {
        let _ = writeln!(
            s,
            "# {rejected} value(s) left out: not in a form the policy accepts."
        );
    }
    s.push_str("[[policy.clients]]\n");
    let _ = writeln!(s, "name = {}", toml_str(&name));
    match &g.user_agent_product {
        Some(p) => {
            let _ = writeln!(s, "user_agent = {}", toml_str(&user_agent_regex(p)));
        }
        None => s.push_str("# no User-Agent seen: claim it with `user_agent` or `headers`\n"),
    }
    ja4.write(&mut s);
    header_fp.write(&mut s);
    h2.write(&mut s);
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn product_tokens() {
        let p = |ua: &str| product(ua).map(|p| p.into_owned());
        assert_eq!(
            p("Anthropic/Python 2.12.0").as_deref(),
            Some("Anthropic/Python")
        );
        assert_eq!(
            p("anthropic-sdk-python/0.40.0 (CPython 3.12)").as_deref(),
            Some("anthropic-sdk-python")
        );
        assert_eq!(p("Mozilla/5.0 (X11)").as_deref(), Some("Mozilla"));
        assert_eq!(p("curl").as_deref(), Some("curl"));
        assert_eq!(p("  okhttp/4.9.3").as_deref(), Some("okhttp"));
        assert_eq!(p("/1.0").as_deref(), Some("/1.0"));
        assert_eq!(p("   "), None);
        let long = p(&"x".repeat(300)).unwrap_or_default();
        assert!(long.len() <= MAX_NAME && long.ends_with(CUT));
        assert_eq!(user_agent_regex(&long), format!("^{}", "x".repeat(61)));
    }

    #[test]
    fn names_and_strings() {
        assert_eq!(slug("Anthropic/Python"), "anthropic-python");
        assert_eq!(slug("anthropic-python"), "anthropic-python");
        assert_eq!(slug("<script>"), "script");
        assert_eq!(slug("…"), "client");
        assert_eq!(slug(&"A".repeat(100)).len(), 60);
        assert_eq!(toml_str("a\"b\\c\n\u{1b}"), r#""a\"b\\c\u000A\u001B""#);
        assert_eq!(user_agent_regex("Foo.Bar+"), r"^Foo\.Bar\+(?:[ /]|$)");
        // Every ASCII character, escaped, matches itself and nothing else.
        let all: String = (0x20u8..0x7f).map(char::from).collect();
        let re = regex::Regex::new(&format!("^{}$", escape_regex(&all))).expect("regex");
        assert!(re.is_match(&all));
        assert!(!re.is_match(&all.replace('.', "x")));
    }
}
