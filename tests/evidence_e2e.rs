//! Evidence through the real proxy: N rejections under concurrent load give exactly N evidence
//! lines, across size rotations (gzip) and a graceful shutdown, and every rejection's
//! decision id (returned to the client) names its line.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::Path;

use common::*;

fn lines_in(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("dir") {
        let p = entry.expect("entry").path();
        let name = p
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string();
        let reader: Box<dyn std::io::Read> = if name.ends_with(".gz") {
            Box::new(flate2::read::GzDecoder::new(
                std::fs::File::open(&p).expect("open"),
            ))
        } else if name.ends_with(".jsonl") {
            Box::new(std::fs::File::open(&p).expect("open"))
        } else {
            continue;
        };
        for line in BufReader::new(reader).lines() {
            out.push(line.expect("line"));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rejection_is_one_evidence_line_across_rotation_and_shutdown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let up = start_mock().await;
    let mut cfg = with_policy(
        test_config(up),
        "[policy]\nversion = \"ev-1\"\n[[policy.rules]]\nname = \"one-per-hour\"\nkey = [\"account\"]\nlimit = \"rate\"\nrate = \"1/1h\"\n",
    );
    cfg.evidence.path = Some(dir.path().join("evidence.jsonl"));
    cfg.evidence.max_bytes = 16 * 1024; // a few dozen records per file: several rotations
    cfg.evidence.keep = 1000;
    let proxy = start_proxy(cfg).await;

    const CLIENTS: usize = 8;
    const PER_CLIENT: usize = 40;
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..CLIENTS {
        let addr = proxy.addr;
        tasks.spawn(async move {
            let key = format!("sk-ev-{c}");
            let mut ids = Vec::new();
            let mut allowed = 0;
            for _ in 0..PER_CLIENT {
                let (status, headers, _) =
                    https_get(addr, "/v1/echo", &[("x-api-key", key.as_str())]).await;
                match status {
                    200 => allowed += 1,
                    429 => ids.push(
                        headers["x-portcullis-decision-id"]
                            .to_str()
                            .expect("ascii")
                            .to_string(),
                    ),
                    s => panic!("unexpected status {s}"),
                }
            }
            (allowed, ids)
        });
    }
    let mut ids = Vec::new();
    while let Some(r) = tasks.join_next().await {
        let (allowed, mut got) = r.expect("task");
        assert_eq!(allowed, 1, "1/1h admits exactly one request per account");
        ids.append(&mut got);
    }
    let n = ids.len();
    assert_eq!(n, CLIENTS * (PER_CLIENT - 1));
    // Graceful shutdown flushes the queue before `run` returns.
    proxy.stop().await;

    let lines = lines_in(dir.path());
    let files = std::fs::read_dir(dir.path()).expect("dir").count();
    assert!(files > 2, "the log rotated ({files} files)");
    assert_eq!(lines.len(), n, "exactly one evidence line per rejection");
    let mut seen = HashSet::new();
    for l in &lines {
        let r: portcullis::evidence::Record = serde_json::from_str(l).expect("valid record");
        assert_eq!(r.v, portcullis::evidence::SCHEMA_VERSION);
        assert_eq!(r.verdict, "reject");
        assert_eq!(r.policy_version, "ev-1");
        assert_eq!(r.status, 429);
        assert_eq!(r.hits.len(), 1);
        assert_eq!(r.hits[0].rule, "one-per-hour");
        assert!(r.ja4.as_deref().unwrap_or("").starts_with("t13"));
        let account = r.account.expect("account id");
        assert_eq!(account.len(), 32, "a keyed hash, never the raw key");
        assert!(
            !l.contains("sk-ev-"),
            "the raw API key never reaches the evidence"
        );
        assert!(seen.insert(r.decision_id), "decision ids are unique");
    }
    for id in &ids {
        assert!(
            seen.contains(id),
            "decision id {id} returned to the client names a line"
        );
    }
}
