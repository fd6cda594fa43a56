//! `portcullis investigate` throughput, and the tool for the 1 GB measurement.
//!
//! - `cargo bench --bench investigate`: criterion, one investigation of a 20,000-record sample
//!   (~15 MB) from a file, as the command does it.
//! - The 1 GB run (docs/investigate.md): build once, generate, then time the real code path
//!   under `/usr/bin/time -v` (this binary's `run` mode calls the same function as
//!   `portcullis investigate`):
//!
//! ```text
//! cargo bench --bench investigate --no-run          # prints the binary path, BIN below
//! BIN gen /tmp/evidence-1g.jsonl 1000000000        # ~3,800 accounts
//! BIN gen /tmp/evidence-1g-wide.jsonl 1000000000 300  # ~1.1 M accounts
//! /usr/bin/time -v BIN run /tmp/evidence-1g.jsonl --json > /tmp/report.json
//! ```

use std::io::Write;
use std::path::PathBuf;

use clap::Parser;
use criterion::{black_box, Criterion};
use portcullis::investigate::sample::{generate_sample, SampleSpec};
use portcullis::investigate::{cli_main, run, InvestigateArgs};

#[derive(Parser)]
struct Run {
    #[command(flatten)]
    args: InvestigateArgs,
}

fn generate(path: &str, bytes: u64, scale: u64) -> std::io::Result<()> {
    let spec = SampleSpec {
        scale,
        records: u64::MAX,
        bytes,
        span: std::time::Duration::from_secs(42 * 86_400),
        ..SampleSpec::default()
    };
    let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let stats = generate_sample(&mut w, &spec)?;
    w.flush()?;
    eprintln!("{path}: {} records, {} bytes", stats.records, stats.bytes);
    Ok(())
}

fn criterion_bench() {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => return eprintln!("investigate bench: {e}"),
    };
    let file: PathBuf = dir.path().join("sample.jsonl");
    let made = std::fs::File::create(&file).and_then(|f| {
        let mut w = std::io::BufWriter::new(f);
        generate_sample(&mut w, &SampleSpec::default())?;
        w.flush()
    });
    if let Err(e) = made {
        return eprintln!("investigate bench: {e}");
    }
    let args = InvestigateArgs::new(vec![file]);
    let mut c = Criterion::default().sample_size(10).configure_from_args();
    c.bench_function("investigate/20k_records", |b| {
        b.iter(|| black_box(run(&args).map(|r| r.totals.matched).ok()))
    });
    c.final_summary();
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    match argv.get(1).map(String::as_str) {
        Some("gen") => {
            let (Some(path), Some(bytes)) = (argv.get(2), argv.get(3).and_then(|b| b.parse().ok()))
            else {
                eprintln!("usage: gen PATH BYTES [SCALE]");
                std::process::exit(2);
            };
            let scale = argv.get(4).and_then(|s| s.parse().ok()).unwrap_or(1);
            if let Err(e) = generate(path, bytes, scale) {
                eprintln!("{path}: {e}");
                std::process::exit(1);
            }
        }
        Some("run") => {
            let cli = Run::parse_from(argv.iter().skip(1));
            if let Err(e) = cli_main(cli.args) {
                eprintln!("investigate: {e:#}");
                std::process::exit(1);
            }
        }
        _ => criterion_bench(),
    }
}
