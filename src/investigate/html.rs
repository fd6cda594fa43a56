//! The self-contained HTML report: inline CSS and inline SVG charts generated here — no
//! scripts, fonts or external resources, so it opens offline and from an evidence locker.
//!
//! Every string that came from the evidence (user agents, paths, fingerprints, rule names,
//! file names) goes through [`esc`]; nothing from the input is ever written unescaped.

use std::fmt::Write;

use super::report::{Bucket, Clients, CountRow, KeyRow, Report};
use super::text::human_secs;

const REJECT: &str = "#d64545";
const DENY: &str = "#7a1f1f";
const TARPIT: &str = "#e8a33d";
const FLAG: &str = "#3d7be8";
const OTHER: &str = "#9aa0a6";
const ACCOUNTS: &str = "#6b4fbb";
const CLUSTER: &str = "#2e9e6a";

/// HTML-escapes text for element content and quoted attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => out.push_str("&#xfffd;"),
            c => out.push(c),
        }
    }
    out
}

/// At most `n` characters, with an ellipsis when cut (before escaping).
fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

const STYLE: &str = "
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;margin:24px 32px;color:#1f2328;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
.meta{color:#57606a;font-size:13px}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin:16px 0}
.card{border:1px solid #d0d7de;border-radius:6px;padding:8px 14px;min-width:110px}
.card b{display:block;font-size:20px}.card span{color:#57606a;font-size:12px}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:24px}
table{border-collapse:collapse;font-size:12.5px;margin:4px 0 8px}
th,td{border-bottom:1px solid #eaeef2;padding:3px 10px;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.n{text-align:right;font-variant-numeric:tabular-nums}
code,.mono{font-family:'DejaVu Sans Mono',Menlo,Consolas,monospace;font-size:12px;word-break:break-all}
svg{display:block;max-width:100%}svg text{font-family:'DejaVu Sans Mono',Menlo,Consolas,monospace;font-size:11px;fill:#1f2328}
.legend span{display:inline-block;margin-right:14px;font-size:12px}.legend i{display:inline-block;width:10px;height:10px;margin-right:4px}
.warn{color:#9a3412}
h3{font-size:14px;margin:18px 0 4px}pre{background:#f6f8fa;padding:8px 12px;border-radius:6px;white-space:pre-wrap}
";

/// The whole document.
pub(crate) fn render(r: &Report) -> String {
    let mut h = String::with_capacity(64 * 1024);
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    h.push_str("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">");
    h.push_str("<title>portcullis evidence report</title><style>");
    h.push_str(STYLE);
    h.push_str("</style></head><body>\n<h1>portcullis evidence report</h1>\n");
    header(&mut h, r);

    h.push_str("<h2>Timeline</h2>\n");
    h.push_str(&timeline_chart(
        &r.timeline.buckets,
        r.timeline.bucket_seconds,
    ));

    h.push_str("<div class=\"grid\"><div><h2>Top fingerprints (JA4) by records</h2>\n");
    let by_rec: Vec<(String, u64, String)> = r
        .fingerprints_by_records
        .iter()
        .map(|k| {
            (
                k.value.clone(),
                k.records,
                format!("{} · {} acct", k.records, k.accounts),
            )
        })
        .collect();
    h.push_str(&hbar_chart("Top fingerprints by records", &by_rec, REJECT));
    h.push_str("</div><div><h2>Top fingerprints (JA4) by distinct accounts</h2>\n");
    let by_acct: Vec<(String, u64, String)> = r
        .fingerprints_by_accounts
        .iter()
        .map(|k| (k.value.clone(), k.accounts, format!("{} acct", k.accounts)))
        .collect();
    h.push_str(&hbar_chart(
        "Top fingerprints by distinct accounts",
        &by_acct,
        ACCOUNTS,
    ));
    h.push_str("</div></div>\n");

    let c = &r.clusters;
    let _ = writeln!(
        h,
        "<h2>Clusters</h2><p class=\"meta\">{} clusters of two or more accounts, {} accounts in \
         them. Linked: {} (max link degree {}).</p>",
        c.total,
        c.accounts_in_clusters,
        esc(&c.link),
        c.max_link_degree
    );
    let sizes: Vec<(String, u64, String)> = c
        .items
        .iter()
        .map(|x| {
            let ja4 = x.ja4.first().map_or("", |j| j.value.as_str());
            (
                format!("#{} {}", x.rank, ja4),
                x.size,
                format!("{} acct · {} rec", x.size, x.records),
            )
        })
        .collect();
    h.push_str(&hbar_chart("Cluster sizes (accounts)", &sizes, CLUSTER));
    cluster_table(&mut h, r);

    h.push_str("<h2>Top rules</h2>\n<table><tr><th>rule</th><th>action</th><th>hits</th><th>shadow</th><th>accounts</th></tr>\n");
    for x in &r.rules {
        let _ = writeln!(
            h,
            "<tr><td><code>{}</code></td><td>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td></tr>",
            esc(&x.rule),
            esc(&x.action),
            x.hits,
            x.shadow,
            x.accounts
        );
    }
    h.push_str("</table>\n");

    h.push_str("<div class=\"grid\"><div>");
    key_table(
        &mut h,
        "Top fingerprints (JA4) by records",
        "JA4",
        &r.fingerprints_by_records,
    );
    h.push_str("</div><div>");
    key_table(
        &mut h,
        "Top fingerprints (JA4) by distinct accounts",
        "JA4",
        &r.fingerprints_by_accounts,
    );
    h.push_str("</div><div>");
    key_table(
        &mut h,
        "Top subnets by records",
        "subnet",
        &r.subnets_by_records,
    );
    h.push_str("</div><div>");
    key_table(
        &mut h,
        "Top subnets by distinct accounts",
        "subnet",
        &r.subnets_by_accounts,
    );
    h.push_str("</div></div>\n");

    h.push_str("<h2>Top user agents</h2>\n<table><tr><th>user agent</th><th>records</th></tr>\n");
    for u in &r.user_agents {
        let _ = writeln!(
            h,
            "<tr><td><code>{}</code></td><td class=n>{}</td></tr>",
            esc(&u.value),
            u.records
        );
    }
    h.push_str("</table>\n");

    if !c.hubs.is_empty() {
        h.push_str("<h2>Hubs (too many accounts to link through)</h2>\n<table><tr><th>kind</th><th>value</th><th>accounts</th></tr>\n");
        for x in &c.hubs {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td><code>{}</code></td><td class=n>{}</td></tr>",
                esc(&x.kind),
                esc(&x.value),
                x.accounts
            );
        }
        h.push_str("</table>\n");
    }

    clients(&mut h, &r.clients);

    if r.warnings.total > 0 {
        let _ = writeln!(
            h,
            "<h2 class=\"warn\">Skipped lines: {}</h2>\n<table><tr><th>file</th><th>line</th><th>reason</th></tr>",
            r.warnings.total
        );
        for w in &r.warnings.items {
            let _ = writeln!(
                h,
                "<tr><td><code>{}</code></td><td class=n>{}</td><td>{}</td></tr>",
                esc(&w.file),
                w.line,
                esc(&w.message)
            );
        }
        h.push_str("</table>\n");
    }
    h.push_str("</body></html>\n");
    h
}

fn header(h: &mut String, r: &Report) {
    let t = &r.totals;
    if let Some(s) = &r.span {
        let _ = writeln!(
            h,
            "<div class=\"meta\">{} — {} · {} file(s)</div>",
            esc(&s.first),
            esc(&s.last),
            r.inputs.len()
        );
    }
    let f = &r.filters;
    let mut filters = Vec::new();
    let mut add = |k: &str, v: &Option<String>| {
        if let Some(v) = v {
            filters.push(format!("{k} <code>{}</code>", esc(v)));
        }
    };
    add("since", &f.since);
    add("until", &f.until);
    add("fingerprint", &f.fingerprint);
    add("subnet", &f.subnet);
    add("account", &f.account);
    for rule in &f.rules {
        filters.push(format!("rule <code>{}</code>", esc(rule)));
    }
    if !filters.is_empty() {
        let _ = writeln!(
            h,
            "<div class=\"meta\">filters: {}</div>",
            filters.join(" · ")
        );
    }
    h.push_str("<div class=\"cards\">");
    let cards: [(&str, u64); 7] = [
        ("records matched", t.matched),
        ("records read", t.records),
        ("accounts", t.accounts),
        ("JA4 fingerprints", t.fingerprints),
        ("subnets", t.subnets),
        ("clusters", r.clusters.total),
        ("lines skipped", t.skipped),
    ];
    for (label, n) in cards {
        let _ = write!(
            h,
            "<div class=\"card\"><b>{n}</b><span>{label}</span></div>"
        );
    }
    h.push_str("</div>\n<div class=\"meta\">verdicts: ");
    let v: Vec<String> = r
        .verdicts
        .iter()
        .map(|(k, n)| format!("{} {n}", esc(k)))
        .collect();
    h.push_str(&v.join(" · "));
    h.push_str("</div>\n");
}

fn key_table(h: &mut String, title: &str, what: &str, rows: &[KeyRow]) {
    let _ = writeln!(
        h,
        "<h2>{title}</h2>\n<table><tr><th>{what}</th><th>records</th><th>rejected</th><th>tarpit</th><th>flagged</th><th>accounts</th></tr>"
    );
    for k in rows {
        let _ = writeln!(
            h,
            "<tr><td><code>{}</code></td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td></tr>",
            esc(&k.value), k.records, k.rejected, k.tarpit, k.flagged, k.accounts
        );
    }
    h.push_str("</table>\n");
}

/// The clients view: per group, its combinations and its `[[policy.clients]]` candidate.
fn clients(h: &mut String, c: &Clients) {
    let _ = writeln!(
        h,
        "<h2>Clients</h2><p class=\"meta\">{} groups, by {}. Combinations by distinct accounts; \
         candidates propose the values of combinations seen by {} or more accounts: review them, \
         a campaign that copies a client's headers claims it too.</p>",
        c.total,
        esc(&c.grouping),
        c.min_accounts
    );
    let opt = |v: &Option<String>| v.as_deref().map_or_else(|| "-".to_string(), esc);
    for g in &c.items {
        let who = match g.kind.as_str() {
            "none" => format!("({})", g.kind_label()),
            _ => format!("<code>{}</code> ({})", esc(&g.name), g.kind_label()),
        };
        let _ = writeln!(h, "<h3>{who}</h3><p class=\"meta\">{}</p>", g.summary());
        h.push_str("<table><tr><th>#</th><th>JA4</th><th>header_fp</th><th>h2</th><th>records</th><th>accounts</th><th>subnets</th><th>mismatch</th></tr>\n");
        for (i, x) in g.combinations.iter().enumerate() {
            let _ = writeln!(
                h,
                "<tr><td class=n>{}</td><td><code>{}</code></td><td><code>{}</code></td><td><code>{}</code></td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td>{}</td></tr>",
                i + 1,
                opt(&x.ja4),
                opt(&x.header_fp),
                opt(&x.h2),
                x.records,
                x.accounts,
                x.subnets,
                esc(&x.mismatch.join(","))
            );
        }
        h.push_str("</table>\n");
        if let Some(toml) = &g.candidate {
            let _ = writeln!(h, "<pre class=\"mono\">{}</pre>", esc(toml));
        }
    }
}

fn cells(rows: &[CountRow]) -> String {
    rows.iter()
        .map(|r| format!("<code>{}</code> ({})", esc(&short(&r.value, 48)), r.records))
        .collect::<Vec<_>>()
        .join("<br>")
}

fn cluster_table(h: &mut String, r: &Report) {
    h.push_str("<table><tr><th>#</th><th>accounts</th><th>records</th><th>top JA4</th><th>top subnets</th><th>top rules (hits)</th><th>accounts (first 5)</th></tr>\n");
    for c in &r.clusters.items {
        let sample: Vec<String> = c
            .accounts
            .iter()
            .take(5)
            .map(|a| format!("<code>{}</code>", esc(a)))
            .collect();
        let _ = writeln!(
            h,
            "<tr><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            c.rank,
            c.size,
            c.records,
            cells(&c.ja4),
            cells(&c.subnets),
            cells(&c.rules),
            sample.join("<br>")
        );
    }
    h.push_str("</table>\n");
}

/// Horizontal bars: `(label, value, annotation)` per row.
fn hbar_chart(title: &str, rows: &[(String, u64, String)], color: &str) -> String {
    let mut s = String::new();
    if rows.is_empty() {
        return "<p class=\"meta\">(no data)</p>\n".into();
    }
    let (w, label_w, row_h, top) = (640.0, 290.0, 22.0, 6.0);
    let bar_max = w - label_w - 160.0;
    let max = rows.iter().map(|r| r.1).max().unwrap_or(0).max(1) as f64;
    let height = top * 2.0 + row_h * rows.len() as f64;
    let _ = writeln!(
        s,
        "<svg class=\"chart\" viewBox=\"0 0 {w} {height}\" width=\"{w}\" height=\"{height}\" role=\"img\" xmlns=\"http://www.w3.org/2000/svg\"><title>{}</title>",
        esc(title)
    );
    for (i, (label, value, note)) in rows.iter().enumerate() {
        let y = top + row_h * i as f64;
        let len = (*value as f64 / max * bar_max).max(1.0);
        let _ = writeln!(
            s,
            "<g><title>{}: {}</title><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\
             <rect x=\"{label_w}\" y=\"{:.1}\" width=\"{len:.1}\" height=\"{:.1}\" fill=\"{color}\" rx=\"2\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{}</text></g>",
            esc(label),
            esc(note),
            label_w - 6.0,
            y + 15.0,
            esc(&short(label, 38)),
            y + 4.0,
            row_h - 8.0,
            label_w + len + 5.0,
            y + 15.0,
            esc(note)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Stacked bars per bucket (reject, deny list, tarpit, flag, other), with a y scale and a few
/// x labels.
fn timeline_chart(buckets: &[Bucket], bucket_secs: u64) -> String {
    if buckets.is_empty() {
        return "<p class=\"meta\">(no data)</p>\n".into();
    }
    let (w, hgt, left, right, top, bottom) = (1300.0, 280.0, 64.0, 16.0, 12.0, 44.0);
    let plot_w = w - left - right;
    let plot_h = hgt - top - bottom;
    let step = nice_step(
        buckets
            .iter()
            .map(|b| b.total)
            .max()
            .unwrap_or(0)
            .div_ceil(4),
    );
    let max = (step * 4) as f64;
    let bw = plot_w / buckets.len() as f64;
    let gap = if bw > 4.0 { 1.0 } else { 0.0 };
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg class=\"chart\" viewBox=\"0 0 {w} {hgt}\" width=\"{w}\" height=\"{hgt}\" role=\"img\" xmlns=\"http://www.w3.org/2000/svg\"><title>Evidence records per {}</title>",
        human_secs(bucket_secs)
    );
    for i in 0..=4 {
        let v = max * f64::from(i) / 4.0;
        let y = top + plot_h - plot_h * f64::from(i) / 4.0;
        let _ = writeln!(
            s,
            "<line x1=\"{left}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#eaeef2\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            w - right,
            left - 6.0,
            y + 4.0,
            v.round()
        );
    }
    for (i, b) in buckets.iter().enumerate() {
        let x = left + bw * i as f64;
        let mut y = top + plot_h;
        let _ = write!(
            s,
            "<g><title>{}: {} records</title>",
            esc(&b.start),
            b.total
        );
        for (n, color) in [
            (b.reject, REJECT),
            (b.deny_list, DENY),
            (b.tarpit, TARPIT),
            (b.flag, FLAG),
            (b.other, OTHER),
        ] {
            if n == 0 {
                continue;
            }
            let bh = n as f64 / max * plot_h;
            y -= bh;
            let _ = write!(
                s,
                "<rect x=\"{x:.2}\" y=\"{y:.2}\" width=\"{:.2}\" height=\"{bh:.2}\" fill=\"{color}\"/>",
                (bw - gap).max(0.5)
            );
        }
        s.push_str("</g>\n");
    }
    // About six x labels, at bucket starts.
    let every = buckets.len().div_ceil(6).max(1);
    for (i, b) in buckets.iter().enumerate().step_by(every) {
        let x = left + bw * i as f64;
        let label = b.start.get(5..16).unwrap_or(&b.start).replace('T', " ");
        let _ = writeln!(
            s,
            "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#8c959f\"/>\
             <text x=\"{x:.1}\" y=\"{:.1}\">{}</text>",
            top + plot_h,
            top + plot_h + 5.0,
            top + plot_h + 18.0,
            esc(&label)
        );
    }
    let _ = writeln!(
        s,
        "<line x1=\"{left}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#8c959f\"/>",
        w - right,
        top + plot_h,
        top + plot_h
    );
    let _ = writeln!(
        s,
        "<text x=\"{left}\" y=\"{:.1}\">UTC · bucket {}</text></svg>",
        hgt - 6.0,
        human_secs(bucket_secs)
    );
    s.push_str("<div class=\"legend\">");
    for (name, color) in [
        ("reject", REJECT),
        ("deny list", DENY),
        ("tarpit", TARPIT),
        ("flag", FLAG),
        ("other", OTHER),
    ] {
        let _ = write!(s, "<span><i style=\"background:{color}\"></i>{name}</span>");
    }
    s.push_str("</div>\n");
    s
}

/// The smallest 1, 2 or 5 × 10^k at least `n` (and at least 1), for round axis ticks.
fn nice_step(n: u64) -> u64 {
    let mut p = 1u64;
    loop {
        for m in [1, 2, 5] {
            let s = m * p;
            if s >= n {
                return s;
            }
        }
        match p.checked_mul(10) {
            Some(q) => p = q,
            None => return n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything() {
        assert_eq!(
            esc("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
        assert_eq!(esc("a\u{1b}[2Jb"), "a&#xfffd;[2Jb");
        assert_eq!(
            [0, 1, 3, 7, 46, 200, 201].map(nice_step),
            [1, 1, 5, 10, 50, 200, 500]
        );
    }
}
