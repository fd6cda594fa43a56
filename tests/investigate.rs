//! `portcullis investigate` over known fixtures: exact counts in the JSON report, malformed and
//! truncated lines reported with file:line and skipped, gzip and directory inputs, filters, and
//! an HTML report that has its charts and escapes hostile strings.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use portcullis::investigate::sample::{generate_sample, SampleSpec};
use portcullis::investigate::{execute, run, InvestigateArgs};
use serde_json::{json, Value};

const J1: &str = "t13d1715h2_5b57614c22b0_3d5424432f57";
const J2: &str = "t13d1516h2_8daaf6152771_e5627efa2ab1";
const J3: &str = "t12d190800_d83cc789557e_7af1ed941c26";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/evidence")
        .join(name)
}

fn acct(n: u32) -> String {
    format!("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa{n:02}")
}

/// The JSON document `--json` would print.
fn report(args: &InvestigateArgs) -> Value {
    serde_json::to_value(run(args).expect("investigate")).expect("json")
}

fn matched(args: InvestigateArgs) -> u64 {
    report(&args)["totals"]["matched"]
        .as_u64()
        .unwrap_or(u64::MAX)
}

/// `[value, records]` pairs of a table.
fn pairs(v: &Value, field: &str) -> Vec<(String, u64)> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|r| {
                    (
                        r["value"].as_str().unwrap_or_default().to_string(),
                        r[field].as_u64().unwrap_or(u64::MAX),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn exact_counts() {
    let r = report(&InvestigateArgs::new(vec![fixture("basic.jsonl")]));
    assert_eq!(
        r["totals"],
        json!({"records": 10, "matched": 10, "skipped": 0, "accounts": 6,
               "fingerprints": 3, "subnets": 7, "without_account": 1})
    );
    assert_eq!(
        r["verdicts"],
        json!({"deny_list": 1, "flag": 2, "reject": 6, "tarpit": 1})
    );
    assert_eq!(
        r["span"],
        json!({"first": "2025-04-22T10:00:05Z", "last": "2025-04-22T11:05:00Z"})
    );
    assert_eq!(
        r["rules"],
        json!([
            {"rule": "ja4-budget", "action": "reject", "hits": 3, "shadow": 0, "accounts": 2},
            {"rule": "account-rate", "action": "reject", "hits": 2, "shadow": 0, "accounts": 2},
            {"rule": "ja4-distinct", "action": "flag", "hits": 2, "shadow": 0, "accounts": 2},
            {"rule": "deny-list", "action": "reject", "hits": 1, "shadow": 0, "accounts": 0},
            {"rule": "subnet-rate", "action": "reject", "hits": 1, "shadow": 0, "accounts": 2},
            {"rule": "subnet-rate", "action": "tarpit", "hits": 1, "shadow": 0, "accounts": 2},
            {"rule": "ua-mismatch", "action": "reject", "hits": 1, "shadow": 1, "accounts": 1},
        ])
    );
    assert_eq!(
        r["fingerprints_by_records"],
        json!([
            {"value": J2, "records": 4, "rejected": 2, "tarpit": 1, "flagged": 1, "accounts": 2},
            {"value": J1, "records": 4, "rejected": 3, "tarpit": 0, "flagged": 1, "accounts": 3},
            {"value": J3, "records": 2, "rejected": 2, "tarpit": 0, "flagged": 0, "accounts": 1},
        ])
    );
    assert_eq!(
        pairs(&r["fingerprints_by_accounts"], "accounts"),
        [(J1.into(), 3), (J2.into(), 2), (J3.into(), 1)]
    );
    assert_eq!(
        pairs(&r["subnets_by_records"], "records")[..2],
        [("203.0.113.0/24".into(), 3), ("100.64.1.0/24".into(), 2)]
    );
    assert_eq!(
        pairs(&r["subnets_by_accounts"], "accounts")[0],
        ("203.0.113.0/24".into(), 2)
    );
    assert_eq!(
        pairs(&r["user_agents"], "records"),
        [
            ("anthropic-sdk-python/0.40.0".into(), 9),
            ("<script>alert(1)</script>".into(), 1)
        ]
    );

    // Clusters: J1 links accounts 1-3; J2 links 4 and 6; 203.0.113.0/24 links 4 and 5.
    let c = &r["clusters"];
    assert_eq!(c["total"], 2);
    assert_eq!(c["accounts_in_clusters"], 6);
    assert_eq!(c["hubs"], json!([]));
    let first = &c["items"][0];
    assert_eq!(first["rank"], 1);
    assert_eq!(first["size"], 3);
    assert_eq!(first["records"], 5);
    assert_eq!(first["accounts"], json!([acct(4), acct(5), acct(6)]));
    assert_eq!(
        first["ja4"],
        json!([{"value": J2, "records": 4}, {"value": J3, "records": 1}])
    );
    let second = &c["items"][1];
    assert_eq!(second["accounts"], json!([acct(1), acct(2), acct(3)]));
    assert_eq!(second["records"], 4);
    assert_eq!(
        second["rules"],
        json!([{"value": "ja4-budget", "records": 3}, {"value": "ja4-distinct", "records": 2}])
    );

    // 10:00 .. 11:05 is 66 minutes: one-minute buckets, gaps filled.
    let tl = &r["timeline"];
    assert_eq!(tl["bucket_seconds"], 60);
    let buckets = tl["buckets"].as_array().expect("buckets");
    assert_eq!(buckets.len(), 66);
    assert_eq!(buckets[0]["start"], "2025-04-22T10:00:00Z");
    assert_eq!(buckets[0]["reject"], 1);
    assert_eq!(buckets[3]["total"], 1);
    assert_eq!(buckets[30]["deny_list"], 1);
    let total: u64 = buckets.iter().filter_map(|b| b["total"].as_u64()).sum();
    assert_eq!(total, 10);
    assert_eq!(r["warnings"], json!({"total": 0, "items": []}));
}

#[test]
fn link_degree_cap_makes_hubs() {
    let mut args = InvestigateArgs::new(vec![fixture("basic.jsonl")]);
    args.max_link_degree = 2;
    let r = report(&args);
    let c = &r["clusters"];
    assert_eq!(
        c["hubs"],
        json!([{"kind": "ja4", "value": J1, "accounts": 3}])
    );
    assert_eq!(c["total"], 1);
    assert_eq!(
        c["items"][0]["accounts"],
        json!([acct(4), acct(5), acct(6)])
    );
}

#[test]
fn malformed_and_truncated_lines_are_reported_and_skipped() {
    let path = fixture("malformed.jsonl");
    let r = report(&InvestigateArgs::new(vec![path.clone()]));
    assert_eq!(r["totals"]["records"], 2);
    assert_eq!(r["totals"]["skipped"], 3);
    let w = &r["warnings"];
    assert_eq!(w["total"], 3);
    let items = w["items"].as_array().expect("items");
    let at: Vec<(String, u64)> = items
        .iter()
        .map(|i| {
            (
                i["file"].as_str().unwrap_or_default().to_string(),
                i["line"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let file = path.display().to_string();
    assert_eq!(at, [(file.clone(), 2), (file.clone(), 4), (file, 5)]);
    let msg = |i: usize| items[i]["message"].as_str().unwrap_or_default().to_string();
    assert!(msg(0).starts_with("malformed record"), "{}", msg(0));
    assert!(msg(1).contains("missing field `hits`"), "{}", msg(1));
    assert!(msg(2).starts_with("truncated last line"), "{}", msg(2));
}

#[test]
fn gzip_and_directory_inputs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plain = fs::read(fixture("basic.jsonl")).expect("fixture");
    let text = String::from_utf8(plain.clone()).expect("utf8");
    let lines: Vec<&str> = text.lines().collect();
    // A rotated set: two older gzipped files, the active file last.
    let gz = |name: &str, body: &str| {
        let f = fs::File::create(dir.path().join(name)).expect("create");
        let mut enc = flate2::write::GzEncoder::new(f, flate2::Compression::default());
        enc.write_all(body.as_bytes()).expect("gzip");
        enc.finish().expect("finish");
    };
    gz(
        "evidence-20250422T100200Z-000000.jsonl.gz",
        &(lines[..3].join("\n") + "\n"),
    );
    gz(
        "evidence-20250422T103000Z-000001.jsonl.gz",
        &(lines[3..8].join("\n") + "\n"),
    );
    fs::write(
        dir.path().join("evidence.jsonl"),
        lines[8..].join("\n") + "\n",
    )
    .expect("active");
    fs::write(dir.path().join("notes.txt"), "not evidence").expect("other");

    let r = report(&InvestigateArgs::new(vec![dir.path().to_path_buf()]));
    assert_eq!(r["totals"]["records"], 10);
    assert_eq!(r["totals"]["skipped"], 0);
    let inputs: Vec<String> = r["inputs"]
        .as_array()
        .expect("inputs")
        .iter()
        .filter_map(|v| v.as_str())
        .filter_map(|s| Some(Path::new(s).file_name()?.to_str()?.to_string()))
        .collect();
    assert_eq!(
        inputs,
        [
            "evidence-20250422T100200Z-000000.jsonl.gz",
            "evidence-20250422T103000Z-000001.jsonl.gz",
            "evidence.jsonl"
        ]
    );
    // Same answer as the plain file.
    let base = report(&InvestigateArgs::new(vec![fixture("basic.jsonl")]));
    assert_eq!(r["clusters"], base["clusters"]);
    assert_eq!(r["rules"], base["rules"]);

    // A single .gz file given directly, and a gzip file cut short: reported, not fatal.
    let one = dir.path().join("evidence-20250422T100200Z-000000.jsonl.gz");
    assert_eq!(matched(InvestigateArgs::new(vec![one.clone()])), 3);
    let bytes = fs::read(&one).expect("read");
    let cut = dir.path().join("cut.jsonl.gz");
    fs::write(&cut, &bytes[..bytes.len() - 12]).expect("write");
    let r = report(&InvestigateArgs::new(vec![cut]));
    assert!(r["warnings"]["total"].as_u64().unwrap_or(0) >= 1, "{r}");
}

#[test]
fn filters() {
    let base = || InvestigateArgs::new(vec![fixture("basic.jsonl")]);
    let mut a = base();
    a.rules = vec!["subnet-rate".into()];
    assert_eq!(matched(a), 2);
    let mut a = base();
    a.rules = vec!["subnet-rate".into(), "deny-list".into()];
    assert_eq!(matched(a), 3);
    let mut a = base();
    a.fingerprint = Some(J1.into());
    assert_eq!(matched(a), 4);
    let mut a = base();
    a.fingerprint = Some("0123456789abcdef0123456789abcde5".into()); // a JA3 hash
    assert_eq!(matched(a), 1);
    let mut a = base();
    a.subnet = Some("203.0.113.0/24".parse().expect("cidr"));
    assert_eq!(matched(a), 3);
    let mut a = base();
    a.subnet = Some("2001:db8::/32".parse().expect("cidr"));
    assert_eq!(matched(a), 1);
    let mut a = base();
    a.account = Some(acct(4));
    assert_eq!(matched(a), 2);
    let mut a = base();
    a.since = humantime::parse_rfc3339("2025-04-22T10:10:00Z").ok();
    a.until = humantime::parse_rfc3339("2025-04-22T10:40:00Z").ok();
    let r = report(&a);
    assert_eq!(r["totals"]["matched"], 4);
    assert_eq!(r["totals"]["records"], 10);
    assert_eq!(r["filters"]["since"], "2025-04-22T10:10:00.000Z");
}

#[test]
fn cli_args_parse() {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: InvestigateArgs,
    }
    let cli = Cli::try_parse_from([
        "investigate",
        "a.jsonl",
        "dir/",
        "--since",
        "2025-04-22T10:00:00Z",
        "--rule",
        "x",
        "--rule",
        "y",
        "--subnet",
        "203.0.113.7",
        "--top",
        "5",
        "--json",
    ])
    .expect("parse");
    assert_eq!(cli.args.files.len(), 2);
    assert_eq!(cli.args.rules, ["x", "y"]);
    assert_eq!(
        cli.args.subnet.map(|n| n.to_string()).as_deref(),
        Some("203.0.113.7/32")
    );
    assert_eq!(cli.args.top, 5);
    assert_eq!(cli.args.max_link_degree, 1000);
    assert!(Cli::try_parse_from(["investigate", "a", "--since", "yesterday"]).is_err());
    assert!(Cli::try_parse_from(["investigate"]).is_err());
}

#[test]
fn html_report_has_charts_and_escapes_hostile_strings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("report.html");
    let mut args = InvestigateArgs::new(vec![fixture("basic.jsonl"), fixture("malformed.jsonl")]);
    args.html = Some(out.clone());
    args.json = true;
    let mut stdout = Vec::new();
    execute(&args, &mut stdout).expect("investigate");
    let doc: Value = serde_json::from_slice(&stdout).expect("--json prints one JSON document");
    assert_eq!(doc["totals"]["records"], 12);
    let html = fs::read_to_string(&out).expect("html");
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(
        html.matches("<svg").count() >= 4,
        "timeline, two fingerprint charts, clusters"
    );
    assert!(html.contains("<rect"));
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(
        !html.contains("<script"),
        "nothing from the evidence may become markup"
    );
    assert!(!html.contains("<img"));
    // Self-contained: no external resources of any kind.
    for bad in ["src=", "href=", "@import", "url(", "https://"] {
        assert!(!html.contains(bad), "found {bad}");
    }
    assert!(html.contains("Skipped lines: 3"));
    assert!(html.contains("malformed.jsonl"));
}

#[test]
fn text_output_escapes_terminal_controls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("e.jsonl");
    let line = fs::read_to_string(fixture("basic.jsonl")).expect("fixture");
    let first = line.lines().next().expect("line");
    let hostile = first.replace(
        "anthropic-sdk-python/0.40.0",
        "evil\\u001b]0;pwned\\u0007\\u001b[2J",
    );
    fs::write(&f, hostile + "\n").expect("write");
    let r = run(&InvestigateArgs::new(vec![f])).expect("run");
    let mut out = Vec::new();
    r.write_text(&mut out).expect("text");
    let text = String::from_utf8(out).expect("utf8");
    assert!(!text.contains('\u{1b}'), "raw escape in text output");
    assert!(text.contains("evil\\u{1b}]0;pwned"));
    assert!(text.contains("TOP RULES") && text.contains("ja4-budget"));
}

#[test]
fn sample_generator_feeds_a_full_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("sample.jsonl");
    let mut w = std::io::BufWriter::new(fs::File::create(&f).expect("create"));
    let stats = generate_sample(&mut w, &SampleSpec::default()).expect("generate");
    w.flush().expect("flush");
    drop(w);
    assert_eq!(stats.records, 20_000);
    let r = report(&InvestigateArgs::new(vec![f]));
    assert_eq!(r["totals"]["records"], 20_000);
    assert_eq!(r["totals"]["skipped"], 0);
    // Seven days: hourly buckets.
    assert_eq!(r["timeline"]["bucket_seconds"], 3600);
    // The official SDK's JA4 is a hub; the campaign's JA4s form the largest clusters.
    let hubs = r["clusters"]["hubs"].as_array().expect("hubs");
    assert!(hubs
        .iter()
        .any(|h| h["value"] == "t13d1516h2_8daaf6152771_e5627efa2ab1"));
    assert!(r["clusters"]["items"][0]["size"].as_u64().unwrap_or(0) >= 250);
    // The SDK users, the campaign and the relay cluster all claim the official client; its
    // own stack leads by distinct accounts, the impostors carry their mismatch layers.
    let sdk = &r["clients"]["items"][0];
    assert_eq!(sdk["name"], "anthropic-python");
    assert_eq!(sdk["combinations_total"], 4);
    let combos = sdk["combinations"].as_array().expect("combinations");
    assert_eq!(combos[0]["ja4"], "t13d1516h2_8daaf6152771_e5627efa2ab1");
    assert_eq!(combos[0]["mismatch"], json!([]));
    assert!(combos[1..].iter().all(|c| c["mismatch"][0] == "ja4"));
}

/// Writes a sample evidence log for the screenshot script and the 1 GB benchmark:
/// `PORTCULLIS_SAMPLE_OUT=/tmp/e.jsonl [PORTCULLIS_SAMPLE_BYTES=1000000000]
/// [PORTCULLIS_SAMPLE_RECORDS=N] cargo test --test investigate write_sample -- --ignored`
#[test]
#[ignore = "a generator, run by scripts/screenshot-report.sh and for the 1 GB benchmark"]
fn write_sample() {
    let Ok(out) = std::env::var("PORTCULLIS_SAMPLE_OUT") else {
        eprintln!("set PORTCULLIS_SAMPLE_OUT");
        return;
    };
    let num = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let mut spec = SampleSpec::default();
    if let Some(b) = num("PORTCULLIS_SAMPLE_BYTES") {
        spec.bytes = b;
        spec.records = u64::MAX;
        spec.span = std::time::Duration::from_secs(42 * 86_400);
    }
    if let Some(n) = num("PORTCULLIS_SAMPLE_RECORDS") {
        spec.records = n;
    }
    let mut w =
        std::io::BufWriter::with_capacity(1 << 20, fs::File::create(&out).expect("create output"));
    let stats = generate_sample(&mut w, &spec).expect("generate");
    w.flush().expect("flush");
    eprintln!("{out}: {} records, {} bytes", stats.records, stats.bytes);
}

/// Builds the text and HTML report of one file, as `portcullis investigate FILE --html OUT`
/// does (used by scripts/screenshot-report.sh before the subcommand exists in the binary):
/// `PORTCULLIS_REPORT_IN=e.jsonl PORTCULLIS_REPORT_HTML=r.html cargo test --test investigate
/// write_report -- --ignored --nocapture`
#[test]
#[ignore = "a helper for scripts/screenshot-report.sh"]
fn write_report() {
    let (Ok(input), Ok(html)) = (
        std::env::var("PORTCULLIS_REPORT_IN"),
        std::env::var("PORTCULLIS_REPORT_HTML"),
    ) else {
        eprintln!("set PORTCULLIS_REPORT_IN and PORTCULLIS_REPORT_HTML");
        return;
    };
    let mut args = InvestigateArgs::new(vec![PathBuf::from(input)]);
    args.html = Some(PathBuf::from(html));
    let mut out = Vec::new();
    execute(&args, &mut out).expect("investigate");
    print!("{}", String::from_utf8_lossy(&out));
}

// --- the clients view (`--clients`) -------------------------------------------------------

/// The official SDK's stack in the fixtures below, and two others that claim it.
const SDK_JA4: &str = "t13d1812h1_85036bcba153_d41ae481755e";
const SDK_HFP: &str = "h1_aebb60bad449";
const FEW_JA4: &str = "t13d1715h2_5b57614c22b0_3d5424432f57";
const FEW_HFP: &str = "h2_0123456789ab";
const FEW_H2: &str = "1:65536;2:0;3:1000;4:6291456|15663105|0|m,s,a,p";
const ONE_JA4: &str = "t13d1312h2_f57a46bbacb6_ab7e3b40a677";
const OTHER_JA4: &str = "t13d1516h2_8daaf6152771_02713d6af862";
const HOSTILE_UA: &str = "<script>alert(\"x\\\")</script>\u{1b}[2J\u{202e}rest 1.0";

/// One evidence line: `n` (decision id and minute), account `a` (none if 0), a /24 `net`.
fn claim_line(n: u32, a: u32, net: &str, ja4: &str) -> Value {
    json!({"v": 1, "ts": format!("2025-04-22T10:{:02}:00.000Z", n % 60),
           "decision_id": format!("{n:032x}"), "policy_version": "t", "verdict": "flag",
           "peer": format!("{net}.9"), "subnet": format!("{net}.0/24"),
           "account": (a > 0).then(|| acct(a)), "sni": null, "alpn": "h2", "ja3": null,
           "ja3_hash": null, "ja4": ja4, "ja4_r": null, "user_agent": "Anthropic/Python 2.12.0",
           "method": "POST", "path": "/v1/messages", "status": 200,
           "hits": [{"rule": "client-mismatch", "layer_key": "k", "current": 1, "limit": 0,
                     "action": "flag", "shadow": false, "retry_after_ms": 0}]})
}

/// The fixture: under the claim `anthropic-python`, the SDK's stack with six accounts on six
/// subnets (8 records), a stack copying its headers with two accounts on one subnet (6 records,
/// mismatch), and one with a single account (5 records, mismatch); without a claim, an
/// `OpenAI/Python` SDK (3 records, 2 accounts), a hostile user agent (2 records, 2 accounts),
/// and one record with neither claim nor user agent.
fn clients_fixture(dir: &Path) -> PathBuf {
    let mut lines = Vec::new();
    let mut n = 0;
    let mut push = |mut v: Value, f: &dyn Fn(&mut Value)| {
        n += 1;
        v["decision_id"] = json!(format!("{n:032x}"));
        f(&mut v);
        lines.push(v.to_string());
    };
    for i in 1..=8u32 {
        let a = (i - 1) % 6 + 1;
        push(claim_line(i, a, &format!("198.51.{a}"), SDK_JA4), &|v| {
            v["claim"] = json!("anthropic-python");
            v["header_fp"] = json!(SDK_HFP);
        });
    }
    for i in 0..6u32 {
        push(claim_line(i, 20 + i % 2, "100.64.9", FEW_JA4), &|v| {
            v["claim"] = json!("anthropic-python");
            v["header_fp"] = json!(FEW_HFP);
            v["h2_fp"] = json!(FEW_H2);
            v["claim_mismatch"] = json!(["ja4", "header_fp", "h2"]);
        });
    }
    for i in 0..5u32 {
        push(claim_line(i, 30, "100.64.10", ONE_JA4), &|v| {
            v["claim"] = json!("anthropic-python");
            v["header_fp"] = json!(SDK_HFP);
            v["claim_mismatch"] = json!(["ja4"]);
        });
    }
    for i in 0..3u32 {
        push(claim_line(i, 40 + i % 2, "203.0.113", OTHER_JA4), &|v| {
            v["user_agent"] = json!("OpenAI/Python 1.30.0")
        });
    }
    for i in 0..2u32 {
        push(claim_line(i, 50 + i, "192.0.2", J3), &|v| {
            v["user_agent"] = json!(HOSTILE_UA);
            v["header_fp"] = json!("h1_<img src=x onerror=alert(1)>");
        });
    }
    push(claim_line(1, 0, "192.0.2", J3), &|v| {
        v["user_agent"] = Value::Null;
    });
    let f = dir.join("clients.jsonl");
    fs::write(&f, lines.join("\n") + "\n").expect("write fixture");
    f
}

#[test]
fn clients_view_groups_and_counts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = report(&InvestigateArgs::new(vec![clients_fixture(dir.path())]));
    let c = &r["clients"];
    assert_eq!(c["total"], 4);
    assert_eq!(c["min_accounts"], 2);
    let items = c["items"].as_array().expect("items");
    let groups: Vec<(&str, &str, u64, u64)> = items
        .iter()
        .map(|g| {
            (
                g["kind"].as_str().unwrap_or_default(),
                g["name"].as_str().unwrap_or_default(),
                g["records"].as_u64().unwrap_or(0),
                g["accounts"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let hostile_product = HOSTILE_UA.split(' ').next().unwrap_or_default();
    assert_eq!(
        groups,
        [
            ("claim", "anthropic-python", 19, 9),
            ("user_agent", "OpenAI/Python", 3, 2),
            ("user_agent", hostile_product, 2, 2),
            ("none", "", 1, 0),
        ]
    );

    let sdk = &items[0];
    assert_eq!(sdk["user_agent_product"], "Anthropic/Python");
    assert_eq!(sdk["mismatched"], 11);
    assert_eq!(
        sdk["mismatch"],
        json!({"ja4": 11, "ja3": 0, "header_fp": 6, "h2": 6})
    );
    assert_eq!(sdk["combinations_total"], 3);
    // Most distinct accounts first, whatever the records.
    assert_eq!(
        sdk["combinations"],
        json!([
            {"ja4": SDK_JA4, "header_fp": SDK_HFP, "h2": null, "records": 8, "accounts": 6,
             "subnets": 6, "mismatch": []},
            {"ja4": FEW_JA4, "header_fp": FEW_HFP, "h2": FEW_H2, "records": 6, "accounts": 2,
             "subnets": 1, "mismatch": ["ja4", "header_fp", "h2"]},
            {"ja4": ONE_JA4, "header_fp": SDK_HFP, "h2": null, "records": 5, "accounts": 1,
             "subnets": 1, "mismatch": ["ja4"]},
        ])
    );
    // Nothing to claim the record without a user agent by: no candidate.
    assert_eq!(items[3]["candidate"], Value::Null);

    // --top bounds groups and combinations alike; the totals still count them all.
    let mut args = InvestigateArgs::new(vec![dir.path().join("clients.jsonl")]);
    args.top = 1;
    let r = report(&args);
    assert_eq!(r["clients"]["total"], 4);
    assert_eq!(r["clients"]["items"].as_array().map(Vec::len), Some(1));
    let only = &r["clients"]["items"][0];
    assert_eq!(only["combinations_total"], 3);
    assert_eq!(only["combinations"][0]["ja4"], SDK_JA4);
    assert_eq!(only["combinations"].as_array().map(Vec::len), Some(1));
}

/// The candidate is valid policy TOML; it proposes the combinations seen by at least
/// `--min-accounts` accounts and leaves the single-account one out.
#[test]
fn clients_candidates_are_valid_policy() {
    use portcullis::policy::{parse_policy, Layers, RequestFacts};
    let dir = tempfile::tempdir().expect("tempdir");
    let mut args = InvestigateArgs::new(vec![clients_fixture(dir.path())]);
    args.clients = true;
    let mut out = Vec::new();
    let r = execute(&args, &mut out).expect("investigate");
    let text = String::from_utf8(out).expect("utf8");
    let candidate = |i: usize| r.clients.items[i].candidate.clone().unwrap_or_default();

    let sdk = candidate(0);
    assert!(text.contains(&sdk), "--clients prints the candidate");
    assert!(sdk.contains("do not paste blindly"));
    assert!(sdk.contains(SDK_JA4) && sdk.contains(FEW_JA4) && sdk.contains(FEW_H2));
    assert!(
        !sdk.contains(ONE_JA4),
        "one account's stack is not proposed"
    );
    let policy = parse_policy(&format!("[policy]\n{sdk}")).expect("valid policy TOML");
    let client = &policy.clients()[0];
    assert_eq!(client.name(), "anthropic-python");
    assert!(sdk.contains("\nuser_agent = \"^Anthropic/Python(?:[ /]|$)\"\n"));
    // The parsed sets: the proposed stacks match the claim, the left-out one mismatches.
    let facts = |ja4: &'static str, hfp: &'static str| RequestFacts {
        account: None,
        ip: "192.0.2.1".parse().expect("ip"),
        ja3_hash: None,
        ja4: Some(ja4),
        method: "POST",
        path: "/v1/messages",
        user_agent: Some("Anthropic/Python 2.12.0"),
        header_fp: Some(hfp),
        h2_fp: None,
        claim: None,
        relay: None,
    };
    let mismatch = |ja4, hfp| {
        policy
            .claim(&facts(ja4, hfp), &|_| false)
            .map(|c| c.mismatch)
    };
    assert_eq!(mismatch(SDK_JA4, SDK_HFP), Some(Layers::default()));
    assert_eq!(mismatch(FEW_JA4, FEW_HFP), Some(Layers::default()));
    assert_eq!(mismatch(ONE_JA4, SDK_HFP), Some(Layers::JA4));
    assert!(policy
        .claim(
            &RequestFacts {
                user_agent: Some("Anthropic/Python3"),
                ..facts(SDK_JA4, SDK_HFP)
            },
            &|_| false
        )
        .is_none());

    // A stricter threshold leaves the two-account stack out as well.
    args.min_accounts = 3;
    let r3 = run(&args).expect("investigate");
    let strict = r3.clients.items[0].candidate.clone().unwrap_or_default();
    assert!(strict.contains(SDK_JA4) && !strict.contains(FEW_JA4) && !strict.contains(FEW_H2));
    parse_policy(&format!("[policy]\n{strict}")).expect("valid policy TOML");

    // Every candidate pasted together is one valid policy: names are unique, hostile
    // strings are escaped, values the policy would refuse are left out.
    let all: String = (0..3).map(candidate).collect::<Vec<_>>().join("\n");
    let policy = parse_policy(&format!("[policy]\n{all}")).expect("valid policy TOML");
    let names: Vec<&str> = policy.clients().iter().map(|c| c.name()).collect();
    assert_eq!(
        names,
        [
            "anthropic-python",
            "openai-python",
            "script-alert-x-script-2j-rest"
        ]
    );
    let hostile = candidate(2);
    assert!(hostile.contains("1 value(s) left out"), "{hostile}");
    assert!(!hostile.contains("<img"));
    let hostile_facts = RequestFacts {
        user_agent: Some(HOSTILE_UA),
        ..facts(J3, SDK_HFP)
    };
    let claimed = policy.claim(&hostile_facts, &|_| false).map(|c| c.client);
    assert_eq!(
        claimed,
        Some(2),
        "the escaped regex claims the hostile user agent"
    );
    // With one account per combination, nothing qualifies.
    args.min_accounts = 7;
    let r7 = run(&args).expect("investigate");
    assert!(r7.clients.items.iter().all(|g| g.candidate.is_none()));
}

#[test]
fn clients_view_escapes_hostile_strings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = clients_fixture(dir.path());
    let html_path = dir.path().join("r.html");
    let mut args = InvestigateArgs::new(vec![f]);
    args.html = Some(html_path.clone());
    for clients in [false, true] {
        args.clients = clients;
        let mut out = Vec::new();
        execute(&args, &mut out).expect("investigate");
        let text = String::from_utf8(out).expect("utf8");
        assert!(text.contains("anthropic-python (claimed)"), "{text}");
        assert!(!text.contains('\u{1b}'), "raw escape in text output");
        assert!(
            !text.contains('\u{202e}'),
            "raw bidi override in text output"
        );
        assert!(text.contains("\\u{1b}[2J") || text.contains("\\u001B[2J"));
    }
    let html = fs::read_to_string(&html_path).expect("html");
    assert!(html.contains("<h2>Clients</h2>"));
    assert!(html.contains("&lt;script&gt;alert(&quot;x"));
    assert!(html.contains("h1_&lt;img src=x onerror=alert(1)&gt;"));
    assert!(!html.contains("<script") && !html.contains("<img"));
    assert!(!html.contains('\u{1b}'));
    assert!(html.contains("[[policy.clients]]"));
}
