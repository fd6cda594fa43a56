//! The evidence log keeps every record: N submitted → N lines, concurrently, across rotations,
//! across a graceful shutdown; and when the queue overflows every drop is counted.

use std::collections::HashSet;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use portcullis::evidence::{
    timestamp, DecisionIds, EvidenceConfig, EvidenceLog, HitRecord, Record, SCHEMA_VERSION,
};

fn record(ids: &DecisionIds, n: usize) -> Record {
    Record {
        v: SCHEMA_VERSION,
        ts: timestamp(std::time::SystemTime::now()),
        decision_id: ids.next_id(),
        policy_version: "test-1".into(),
        verdict: "reject".into(),
        peer: format!("203.0.113.{}", n % 250),
        subnet: "203.0.113.0/24".into(),
        account: Some(format!("{:032x}", n % 97)),
        sni: Some("api.example.com".into()),
        alpn: Some("h2".into()),
        ja3: Some("771,4865-4866,0-11-10,29-23,0".into()),
        ja3_hash: Some("0123456789abcdef0123456789abcdef".into()),
        ja4: Some("t13d1516h2_8daaf6152771_02713d6af862".into()),
        ja4_r: None,
        header_fp: None,
        h2_fp: None,
        ja4h: None,
        // Hostile bytes must survive as data: quotes, newlines, a script tag.
        user_agent: Some(format!("evil \"agent\"\n<script>{n}</script>")),
        claim: None,
        claim_mismatch: Vec::new(),
        tcp_rtt_us: None,
        tls_rtt_us: None,
        relay: None,
        method: "POST".into(),
        path: "/v1/messages".into(),
        status: 429,
        hits: vec![HitRecord {
            rule: "per-subnet".into(),
            layer_key: "subnet:203.0.113.0/24".into(),
            current: 101,
            limit: 100,
            action: "reject".into(),
            shadow: false,
            retry_after_ms: 1500,
        }],
    }
}

fn config(dir: &Path) -> EvidenceConfig {
    EvidenceConfig {
        path: dir.join("evidence.jsonl"),
        ..EvidenceConfig::default()
    }
}

/// Every line of every evidence file in `dir` (plain and .gz), with the file list.
fn read_all(dir: &Path) -> (Vec<String>, Vec<PathBuf>) {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    let mut lines = Vec::new();
    for f in &files {
        let name = f.to_string_lossy();
        let reader: Box<dyn Read> = if name.ends_with(".gz") {
            Box::new(flate2::read::MultiGzDecoder::new(
                fs::File::open(f).expect("open"),
            ))
        } else {
            Box::new(fs::File::open(f).expect("open"))
        };
        for line in BufReader::new(reader).lines() {
            lines.push(line.expect("line"));
        }
    }
    (lines, files)
}

/// Exactly the ids in `want`, each once, every line a valid record.
fn assert_exactly(lines: &[String], want: &HashSet<String>) {
    let mut seen = HashSet::new();
    for line in lines {
        let r: Record = serde_json::from_str(line).expect("valid JSON record");
        assert_eq!(r.v, SCHEMA_VERSION);
        assert!(
            seen.insert(r.decision_id.clone()),
            "duplicate {}",
            r.decision_id
        );
        assert!(
            want.contains(&r.decision_id),
            "unexpected {}",
            r.decision_id
        );
    }
    assert_eq!(
        seen.len(),
        want.len(),
        "lines {} vs submitted {}",
        seen.len(),
        want.len()
    );
}

/// Submits `per_task` records from each of `tasks` tasks; returns the decision ids.
async fn submit(log: &EvidenceLog, tasks: usize, per_task: usize) -> HashSet<String> {
    let ids = std::sync::Arc::new(DecisionIds::new());
    let mut handles = Vec::new();
    for t in 0..tasks {
        let log = log.clone();
        let ids = ids.clone();
        handles.push(tokio::spawn(async move {
            let mut mine = Vec::with_capacity(per_task);
            for i in 0..per_task {
                let r = record(&ids, t * per_task + i);
                mine.push(r.decision_id.clone());
                log.record(r);
                if i % 64 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            mine
        }));
    }
    let mut all = HashSet::new();
    for h in handles {
        all.extend(h.await.expect("task"));
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_records_give_exactly_n_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, writer) = EvidenceLog::start(config(dir.path())).expect("start");
    let task = tokio::spawn(writer.run());
    let want = submit(&log, 16, 1_250).await;
    assert_eq!(want.len(), 20_000);
    log.shutdown().await;
    task.await.expect("writer");
    assert_eq!(log.written(), 20_000);
    assert_eq!(log.dropped(), 0);
    let (lines, files) = read_all(dir.path());
    assert_eq!(files.len(), 1, "no rotation expected: {files:?}");
    assert_exactly(&lines, &want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_rotation_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let max_bytes = 16 * 1024;
    let cfg = EvidenceConfig {
        max_bytes,
        keep: 100_000,
        compress: true,
        ..config(dir.path())
    };
    let (log, writer) = EvidenceLog::start(cfg).expect("start");
    let task = tokio::spawn(writer.run());
    let want = submit(&log, 8, 1_000).await;
    log.shutdown().await;
    task.await.expect("writer");
    assert_eq!(log.written() + log.dropped(), 8_000);
    assert_eq!(log.dropped(), 0);
    let (lines, files) = read_all(dir.path());
    assert!(
        files.len() > 100,
        "expected many rotations, got {}",
        files.len()
    );
    for f in &files {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        // Shutdown waits for compression: only the active file is plain, no temporaries.
        assert!(
            name == "evidence.jsonl"
                || (name.starts_with("evidence-") && name.ends_with(".jsonl.gz")),
            "unexpected file {name}"
        );
        if name.ends_with(".gz") {
            let mut plain = Vec::new();
            flate2::read::MultiGzDecoder::new(fs::File::open(f).expect("open"))
                .read_to_end(&mut plain)
                .expect("gunzip");
            assert!(
                plain.len() as u64 <= max_bytes,
                "{name}: {} bytes",
                plain.len()
            );
            assert_eq!(plain.last(), Some(&b'\n'), "{name} ends mid-line");
        }
    }
    assert_exactly(&lines, &want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_flushes_records_submitted_just_before() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, writer) = EvidenceLog::start(config(dir.path())).expect("start");
    let task = tokio::spawn(writer.run());
    let ids = DecisionIds::new();
    let mut want = HashSet::new();
    for n in 0..5_000 {
        let r = record(&ids, n);
        want.insert(r.decision_id.clone());
        log.record(r);
    }
    // No pause: most of these are still queued when shutdown starts.
    log.shutdown().await;
    let (lines, _) = read_all(dir.path());
    assert_exactly(&lines, &want);
    assert_eq!(log.written(), 5_000);
    // After shutdown, records are refused and counted, never silently lost.
    log.record(record(&ids, 0));
    assert_eq!(log.dropped(), 1);
    assert_eq!(read_all(dir.path()).0.len(), 5_000);
    task.await.expect("writer");
    // A second shutdown returns at once.
    log.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overflow_counts_every_drop() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = EvidenceConfig {
        queue: 100,
        ..config(dir.path())
    };
    let (log, writer) = EvidenceLog::start(cfg).expect("start");
    // The writer is stalled (not yet spawned): only `queue` records fit.
    let want = submit(&log, 10, 100).await;
    assert_eq!(log.dropped(), 900);
    let task = tokio::spawn(writer.run());
    log.shutdown().await;
    task.await.expect("writer");
    assert_eq!(log.written(), 100);
    assert_eq!(log.written() + log.dropped(), want.len() as u64);
    let (lines, _) = read_all(dir.path());
    assert_eq!(lines.len(), 100);
    for line in &lines {
        let r: Record = serde_json::from_str(line).expect("valid JSON");
        assert!(want.contains(&r.decision_id));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_the_newest_rotated_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = EvidenceConfig {
        max_bytes: 4 * 1024,
        keep: 3,
        compress: false,
        ..config(dir.path())
    };
    let (log, writer) = EvidenceLog::start(cfg).expect("start");
    let task = tokio::spawn(writer.run());
    submit(&log, 1, 500).await;
    log.shutdown().await;
    task.await.expect("writer");
    let (_, files) = read_all(dir.path());
    let rotated: Vec<_> = files
        .iter()
        .filter_map(|f| f.file_name().and_then(|n| n.to_str()))
        .filter(|n| n.starts_with("evidence-"))
        .collect();
    assert_eq!(rotated.len(), 3, "{rotated:?}");
    // The newest survive: the sequence numbers are the last three.
    let seqs: Vec<u64> = rotated
        .iter()
        .filter_map(|n| {
            n.trim_end_matches(".jsonl")
                .rsplit('-')
                .next()?
                .parse()
                .ok()
        })
        .collect();
    let max = seqs.iter().copied().max().unwrap_or(0);
    assert!(max >= 3);
    assert_eq!(seqs, vec![max - 2, max - 1, max]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn age_rotation_and_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = EvidenceConfig {
        max_age: Duration::from_millis(300),
        compress: true,
        fsync_interval: Some(Duration::from_millis(50)),
        ..config(dir.path())
    };
    let ids = DecisionIds::new();
    let mut want = HashSet::new();
    let (log, writer) = EvidenceLog::start(cfg.clone()).expect("start");
    let task = tokio::spawn(writer.run());
    for n in 0..10 {
        let r = record(&ids, n);
        want.insert(r.decision_id.clone());
        log.record(r);
    }
    // Rotation is due 300 ms after the file was opened; wait for it (bounded).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !fs::read_dir(dir.path())
        .expect("read dir")
        .any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".jsonl.gz")))
    {
        assert!(std::time::Instant::now() < deadline, "no age rotation");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    log.shutdown().await;
    task.await.expect("writer");
    let (lines, files) = read_all(dir.path());
    assert_exactly(&lines, &want);
    assert!(
        files
            .iter()
            .any(|f| f.to_string_lossy().ends_with(".jsonl.gz")),
        "no age rotation: {files:?}"
    );

    // A crash left a partial line in the active file: a restart appends on a fresh line and
    // continues the rotation sequence.
    // (No age rotation this time: the active file already counts as old.)
    fs::write(&cfg.path, b"{\"v\":1,\"ts\":\"trunc").expect("write partial");
    let cfg = EvidenceConfig {
        max_age: Duration::ZERO,
        ..cfg
    };
    let (log, writer) = EvidenceLog::start(cfg.clone()).expect("restart");
    let task = tokio::spawn(writer.run());
    let r = record(&ids, 99);
    let id = r.decision_id.clone();
    log.record(r);
    log.shutdown().await;
    task.await.expect("writer");
    let active = fs::read_to_string(&cfg.path).expect("active");
    let mut it = active.lines();
    assert_eq!(it.next(), Some("{\"v\":1,\"ts\":\"trunc"));
    let rec: Record = serde_json::from_str(it.next().expect("second line")).expect("json");
    assert_eq!(rec.decision_id, id);
    // The rotated file from before and the active file; nothing else.
    let (_, files) = read_all(dir.path());
    assert_eq!(files.len(), 2, "{files:?}");
}

#[test]
fn decision_ids_are_unique_and_hex() {
    let ids = DecisionIds::new();
    let set: HashSet<String> = (0..10_000).map(|_| ids.next_id()).collect();
    assert_eq!(set.len(), 10_000);
    assert!(set
        .iter()
        .all(|s| s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())));
    let ts = timestamp(std::time::UNIX_EPOCH + Duration::from_millis(1_745_316_900_123));
    assert_eq!(ts, "2025-04-22T10:15:00.123Z");
}
