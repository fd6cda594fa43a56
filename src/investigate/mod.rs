//! `portcullis investigate`: reads evidence logs ([`crate::evidence`]) and turns them into
//! answers — top rules, top fingerprints and subnets by records and by distinct accounts,
//! clusters of accounts linked through shared fingerprints and subnets, a timeline — as aligned
//! text tables, one JSON document (`--json`) or one self-contained HTML report (`--html FILE`).
//!
//! It streams: files are read line by line ([`input`]) and every matching record is folded into
//! compact aggregates ([`aggregate`]) whose size grows with the number of distinct keys
//! (accounts, fingerprints, subnets, rules), never with the number of records. A malformed or
//! truncated line is reported with its file and line number and skipped.
//!
//! Clusters ([`cluster`]) link two accounts when they share a JA4 or a subnet, except through a
//! JA4 or subnet seen with more than `--max-link-degree` distinct accounts (default 1000): such a
//! "hub" (an official SDK's JA4, a big NAT or carrier range) would merge unrelated customers into
//! one cluster. Hubs are listed in the report, and still appear in the fingerprint and subnet
//! tables. The alternative — linking only through a shared (JA4, subnet) pair — would miss the
//! reported campaign shape, one residential proxy exit per account. See `docs/investigate.md`.
//!
//! The clients view (`clients.rs`) groups records by the client they claim (or, without a claim,
//! by the User-Agent's product token) and lists the (JA4, header, HTTP/2) fingerprint
//! combinations of each group with their distinct accounts and subnets; `--clients` prints it
//! with a `[[policy.clients]]` candidate per group.
//!
//! Everything read from the evidence is attacker-influenced (user agents, paths, fingerprint
//! strings): the text output escapes control characters, the HTML output escapes everything.

pub mod aggregate;
mod clients;
pub mod cluster;
mod html;
pub mod input;
mod record;
pub mod report;
#[doc(hidden)]
pub mod sample;
mod text;

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::SystemTime;

pub use report::Report;

/// Arguments of `portcullis investigate`.
#[derive(clap::Args, Debug, Clone)]
pub struct InvestigateArgs {
    /// Evidence files (plain or gzip) or directories; a directory means every *.jsonl and
    /// *.jsonl.gz in it, rotated files oldest first, the active file last.
    /// A `redis://host:port/db` URL reads the fleet's evidence stream instead (see --stream-key).
    #[arg(required = true, value_name = "FILES")]
    pub files: Vec<PathBuf>,
    /// The Redis Stream key read for a `redis://` input.
    #[arg(long, value_name = "KEY", default_value = "portcullis:evidence")]
    pub stream_key: String,
    /// Only records at or after this time (RFC 3339, e.g. 2025-04-22T10:00:00Z).
    #[arg(long, value_name = "RFC3339", value_parser = parse_time)]
    pub since: Option<SystemTime>,
    /// Only records before this time (RFC 3339).
    #[arg(long, value_name = "RFC3339", value_parser = parse_time)]
    pub until: Option<SystemTime>,
    /// Only records with a hit on this rule; repeat for any of several.
    #[arg(long = "rule", value_name = "RULE")]
    pub rules: Vec<String>,
    /// Only records with this JA4 (or JA4_r, JA3 string, JA3 hash).
    #[arg(long, value_name = "JA4_OR_JA3")]
    pub fingerprint: Option<String>,
    /// Only records whose client IP is in this CIDR (or an IP address).
    #[arg(long, value_name = "CIDR", value_parser = parse_net)]
    pub subnet: Option<ipnet::IpNet>,
    /// Only records of this account id (the 32-hex keyed hash).
    #[arg(long, value_name = "ID")]
    pub account: Option<String>,
    /// Print one JSON document instead of text tables.
    #[arg(long)]
    pub json: bool,
    /// Also write a self-contained HTML report (charts and tables) to FILE.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Rows per table (and clusters listed).
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub top: usize,
    /// Do not link accounts through a JA4 or subnet seen with more distinct accounts than this
    /// (0: no limit).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub max_link_degree: usize,
    /// Print only the clients view (records grouped by claimed client or User-Agent product,
    /// with the fingerprint combinations seen) and a `[[policy.clients]]` candidate per group.
    #[arg(long)]
    pub clients: bool,
    /// A combination's fingerprints are proposed in a candidate only when this many distinct
    /// accounts used it.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub min_accounts: u64,
}

impl InvestigateArgs {
    /// The command-line defaults over `files` (for programmatic use and tests).
    pub fn new(files: Vec<PathBuf>) -> Self {
        Self {
            files,
            stream_key: "portcullis:evidence".into(),
            since: None,
            until: None,
            rules: Vec::new(),
            fingerprint: None,
            subnet: None,
            account: None,
            json: false,
            html: None,
            top: 10,
            max_link_degree: 1000,
            clients: false,
            min_accounts: 2,
        }
    }
}

fn parse_time(s: &str) -> Result<SystemTime, String> {
    humantime::parse_rfc3339_weak(s)
        .map_err(|e| format!("{e} (expected e.g. 2025-04-22T10:00:00Z)"))
}

fn parse_net(s: &str) -> Result<ipnet::IpNet, String> {
    if let Ok(n) = s.parse::<ipnet::IpNet>() {
        return Ok(n.trunc());
    }
    s.parse::<IpAddr>()
        .map(ipnet::IpNet::from)
        .map_err(|_| "expected a CIDR like 203.0.113.0/24 or an IP address".to_string())
}

/// What can stop an investigation (a bad line never does: it becomes a warning).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Input {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no evidence files found in the given paths")]
    NoInput,
    #[error("writing {}: {source}", path.display())]
    Output {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Reads every input and builds the report. Warnings (bad lines) go to stderr as they are found
/// and into the report.
pub fn run(args: &InvestigateArgs) -> Result<Report, Error> {
    let files = input::expand(&args.files)?;
    let filter = aggregate::Filter::from_args(args);
    let mut sink = ToAggregator {
        agg: aggregate::Aggregator::new(filter),
        stderr: std::io::stderr(),
    };
    for file in &files {
        match file
            .to_str()
            .filter(|f| f.starts_with("redis://") || f.starts_with("rediss://"))
        {
            Some(url) => input::read_stream(url, &args.stream_key, &mut sink)?,
            None => input::read_file(file, &mut sink)?,
        }
    }
    sink.agg.finish_warnings(&mut sink.stderr);
    Ok(sink.agg.into_report(args, &files))
}

/// Lines into the aggregates, warnings to stderr and into the report.
struct ToAggregator {
    agg: aggregate::Aggregator,
    stderr: std::io::Stderr,
}

impl input::LineSink for ToAggregator {
    fn line(&mut self, line: &[u8]) -> Result<(), String> {
        self.agg.line(line)
    }
    fn warn(&mut self, w: input::Warning) {
        self.agg.warn(w, &mut self.stderr);
    }
}

/// The `investigate` subcommand: text tables (or `--json`) on stdout, `--html FILE` beside.
pub fn cli_main(args: InvestigateArgs) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    execute(&args, &mut out)?;
    out.flush()?;
    Ok(())
}

/// [`cli_main`] with the output stream given: runs the investigation, writes `--html` if asked,
/// then the text tables or the JSON document to `out`.
pub fn execute(args: &InvestigateArgs, out: &mut dyn Write) -> Result<Report, Error> {
    let report = run(args)?;
    if let Some(path) = &args.html {
        std::fs::write(path, html::render(&report)).map_err(|source| Error::Output {
            path: path.clone(),
            source,
        })?;
    }
    let stdout_err = |source| Error::Output {
        path: PathBuf::from("-"),
        source,
    };
    if args.json {
        serde_json::to_writer_pretty(&mut *out, &report)
            .map_err(|e| stdout_err(std::io::Error::other(e)))?;
        writeln!(out).map_err(stdout_err)?;
    } else if args.clients {
        text::render_clients(&report, out).map_err(stdout_err)?;
    } else {
        text::render(&report, out).map_err(stdout_err)?;
    }
    Ok(report)
}

impl Report {
    /// The self-contained HTML report (what `--html` writes).
    pub fn to_html(&self) -> String {
        html::render(self)
    }

    /// The text tables (what the command prints without `--json`).
    pub fn write_text(&self, out: &mut dyn Write) -> std::io::Result<()> {
        text::render(self, out)
    }

    /// The clients view and the `[[policy.clients]]` candidates (what `--clients` prints).
    pub fn write_clients_text(&self, out: &mut dyn Write) -> std::io::Result<()> {
        text::render_clients(self, out)
    }
}
