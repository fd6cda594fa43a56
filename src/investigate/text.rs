//! Plain-text rendering: aligned tables. Values from the evidence are attacker-influenced, so
//! control characters (terminal escape sequences!) are shown escaped and long values are cut.

use std::io::{self, Write};

use super::report::{ClientGroup, Clients, CountRow, KeyRow, Report};

/// Longest value shown in a cell.
const CELL: usize = 60;

/// A value safe to print on a terminal: control characters escaped, at most `CELL` characters.
pub(crate) fn clean(s: &str) -> String {
    clean_n(s, CELL)
}

/// [`clean`] with another length limit.
pub(crate) fn clean_n(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max + 8));
    for (n, c) in s.chars().enumerate() {
        if n >= max {
            out.push('…');
            break;
        }
        if c.is_control() || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}') {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

struct Table {
    head: Vec<&'static str>,
    /// Right-aligned (numeric) columns.
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(head: &[&'static str], right: &[bool]) -> Self {
        Self {
            head: head.to_vec(),
            right: right.to_vec(),
            rows: Vec::new(),
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn write(&self, title: &str, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "\n{title}")?;
        if self.rows.is_empty() {
            return writeln!(out, "  (none)");
        }
        let mut width: Vec<usize> = self.head.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (w, c) in width.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut s = String::from(" ");
            for (i, c) in cells.iter().enumerate() {
                let w = width.get(i).copied().unwrap_or(0);
                let pad = w.saturating_sub(c.chars().count());
                s.push(' ');
                if self.right.get(i).copied().unwrap_or(false) {
                    s.push_str(&" ".repeat(pad));
                    s.push_str(c);
                } else {
                    s.push_str(c);
                    s.push_str(&" ".repeat(pad));
                }
                s.push(' ');
            }
            s.trim_end().to_string()
        };
        let head: Vec<String> = self.head.iter().map(|h| h.to_string()).collect();
        writeln!(out, "{}", line(&head))?;
        for r in &self.rows {
            writeln!(out, "{}", line(r))?;
        }
        Ok(())
    }
}

fn key_table(rows: &[KeyRow], what: &'static str) -> Table {
    let mut t = Table::new(
        &[what, "records", "rejected", "tarpit", "flagged", "accounts"],
        &[false, true, true, true, true, true],
    );
    for r in rows {
        t.row(vec![
            clean(&r.value),
            r.records.to_string(),
            r.rejected.to_string(),
            r.tarpit.to_string(),
            r.flagged.to_string(),
            r.accounts.to_string(),
        ]);
    }
    t
}

fn joined(rows: &[CountRow], n: usize) -> String {
    rows.iter()
        .take(n)
        .map(|r| format!("{} ({})", clean(&r.value), r.records))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The first lines of every text output: what was read and when it happened.
fn summary(r: &Report, out: &mut dyn Write) -> io::Result<()> {
    let t = &r.totals;
    writeln!(
        out,
        "portcullis investigate: {} of {} records matched; {} lines skipped; {} file(s)",
        t.matched,
        t.records,
        t.skipped,
        r.inputs.len()
    )?;
    if let Some(s) = &r.span {
        writeln!(out, "span: {} .. {}", s.first, s.last)?;
    }
    Ok(())
}

fn group_title(g: &ClientGroup) -> String {
    match g.kind.as_str() {
        "none" => format!("({}): {}", g.kind_label(), g.summary()),
        _ => format!("{} ({}): {}", clean(&g.name), g.kind_label(), g.summary()),
    }
}

fn clients_view(c: &Clients, out: &mut dyn Write) -> io::Result<()> {
    writeln!(
        out,
        "\nCLIENTS: {} groups, by {}; combinations by distinct accounts",
        c.total, c.grouping
    )?;
    if c.items.is_empty() {
        return writeln!(out, "  (none)");
    }
    let opt = |v: &Option<String>| v.as_deref().map_or_else(|| "-".to_string(), clean);
    for g in &c.items {
        let mut t = Table::new(
            &[
                "#",
                "ja4",
                "header_fp",
                "h2",
                "records",
                "accounts",
                "subnets",
                "mismatch",
            ],
            &[true, false, false, false, true, true, true, false],
        );
        for (i, x) in g.combinations.iter().enumerate() {
            t.row(vec![
                format!("#{}", i + 1),
                opt(&x.ja4),
                opt(&x.header_fp),
                opt(&x.h2),
                x.records.to_string(),
                x.accounts.to_string(),
                x.subnets.to_string(),
                x.mismatch.join(","),
            ]);
        }
        t.write(&group_title(g), out)?;
    }
    Ok(())
}

/// What `--clients` prints: the clients view, then a `[[policy.clients]]` candidate per group.
pub(crate) fn render_clients(r: &Report, out: &mut dyn Write) -> io::Result<()> {
    summary(r, out)?;
    let c = &r.clients;
    clients_view(c, out)?;
    writeln!(
        out,
        "\nCANDIDATES for [[policy.clients]]: values of combinations seen by {} or more distinct \
         accounts. Review them; do not paste blindly.",
        c.min_accounts
    )?;
    for g in &c.items {
        match &g.candidate {
            Some(toml) => write!(out, "\n{toml}")?,
            None if g.kind == "none" => {}
            None => writeln!(
                out,
                "\n# {}: no listed combination was seen by {} or more accounts",
                clean(&g.name),
                c.min_accounts
            )?,
        }
    }
    Ok(())
}

pub(crate) fn render(r: &Report, out: &mut dyn Write) -> io::Result<()> {
    let t = &r.totals;
    summary(r, out)?;
    writeln!(
        out,
        "distinct: {} accounts, {} JA4 fingerprints, {} subnets; {} records without account",
        t.accounts, t.fingerprints, t.subnets, t.without_account
    )?;
    let verdicts: Vec<String> = r
        .verdicts
        .iter()
        .map(|(k, v)| format!("{} {v}", clean(k)))
        .collect();
    writeln!(out, "verdicts: {}", verdicts.join(", "))?;

    let mut rules = Table::new(
        &["rule", "action", "hits", "shadow", "accounts"],
        &[false, false, true, true, true],
    );
    for x in &r.rules {
        rules.row(vec![
            clean(&x.rule),
            clean(&x.action),
            x.hits.to_string(),
            x.shadow.to_string(),
            x.accounts.to_string(),
        ]);
    }
    rules.write("TOP RULES", out)?;
    key_table(&r.fingerprints_by_records, "ja4").write("TOP FINGERPRINTS (JA4) BY RECORDS", out)?;
    key_table(&r.fingerprints_by_accounts, "ja4")
        .write("TOP FINGERPRINTS (JA4) BY DISTINCT ACCOUNTS", out)?;
    key_table(&r.subnets_by_records, "subnet").write("TOP SUBNETS BY RECORDS", out)?;
    key_table(&r.subnets_by_accounts, "subnet").write("TOP SUBNETS BY DISTINCT ACCOUNTS", out)?;

    let mut uas = Table::new(&["user agent", "records"], &[false, true]);
    for u in &r.user_agents {
        uas.row(vec![clean(&u.value), u.records.to_string()]);
    }
    uas.write("TOP USER AGENTS", out)?;

    let c = &r.clusters;
    let mut clusters = Table::new(
        &[
            "#",
            "accounts",
            "records",
            "top JA4",
            "top subnets",
            "top rules (hits)",
        ],
        &[true, true, true, false, false, false],
    );
    for x in &c.items {
        clusters.row(vec![
            x.rank.to_string(),
            x.size.to_string(),
            x.records.to_string(),
            joined(&x.ja4, 2),
            joined(&x.subnets, 2),
            joined(&x.rules, 2),
        ]);
    }
    clusters.write(
        &format!(
            "CLUSTERS: {} of 2+ accounts, {} accounts in them (linked by a shared JA4 or subnet \
             with at most {} accounts)",
            c.total, c.accounts_in_clusters, c.max_link_degree
        ),
        out,
    )?;
    if !c.hubs.is_empty() {
        let mut hubs = Table::new(&["kind", "value", "accounts"], &[false, false, true]);
        for h in &c.hubs {
            hubs.row(vec![
                h.kind.clone(),
                clean(&h.value),
                h.accounts.to_string(),
            ]);
        }
        hubs.write("HUBS (too many accounts to link through)", out)?;
    }

    clients_view(&r.clients, out)?;

    let tl = &r.timeline;
    let max = tl.buckets.iter().map(|b| b.total).max().unwrap_or(0).max(1);
    let mut timeline = Table::new(
        &["start", "total", "reject", "deny", "tarpit", "flag", ""],
        &[false, true, true, true, true, true, false],
    );
    for b in &tl.buckets {
        let bar = "#".repeat(((b.total * 40).div_ceil(max)) as usize);
        timeline.row(vec![
            b.start.clone(),
            b.total.to_string(),
            b.reject.to_string(),
            b.deny_list.to_string(),
            b.tarpit.to_string(),
            b.flag.to_string(),
            bar,
        ]);
    }
    timeline.write(
        &format!("TIMELINE (bucket {})", human_secs(tl.bucket_seconds)),
        out,
    )?;

    if r.warnings.total > 0 {
        writeln!(out, "\nSKIPPED LINES: {}", r.warnings.total)?;
        for w in &r.warnings.items {
            writeln!(
                out,
                "  {}:{}: {}",
                clean_n(&w.file, 300),
                w.line,
                clean_n(&w.message, 300)
            )?;
        }
    }
    Ok(())
}

/// `3600` → `1h`.
pub(crate) fn human_secs(s: u64) -> String {
    match s {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}
