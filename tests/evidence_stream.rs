//! The fleet evidence sink: every rejection also lands in a Redis Stream (a real
//! `redis-server` the test starts), and `portcullis investigate redis://…` reads it back.

mod common;
#[path = "support/redis.rs"]
mod redis_support;

use std::path::PathBuf;
use std::time::Duration;

use common::*;
use redis_support::RedisServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejections_reach_the_stream_and_investigate_reads_it() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let up = start_mock().await;
    let mut cfg = with_policy(
        test_config(up),
        "[policy]\n[[policy.rules]]\nname = \"one-per-hour\"\nkey = [\"account\"]\nlimit = \"rate\"\nrate = \"1/1h\"\n",
    );
    cfg.evidence.path = Some(dir.path().join("evidence.jsonl"));
    cfg.evidence.stream_url = Some(redis.url());
    cfg.evidence.stream_key = "test:evidence".into();
    let proxy = start_proxy(cfg).await;
    let mut rejected = 0u64;
    for i in 0..40 {
        let key = format!("sk-stream-{}", i % 4);
        if https_get(proxy.addr, "/v1/echo", &[("x-api-key", key.as_str())])
            .await
            .0
            == 429
        {
            rejected += 1;
        }
    }
    assert_eq!(rejected, 36, "4 accounts, 1 admitted each");
    proxy.stop().await;
    let landed = eventually(Duration::from_secs(10), || async {
        redis.cli(&["XLEN", "test:evidence"]).trim() == rejected.to_string()
    })
    .await;
    assert!(landed, "XLEN = {}", redis.cli(&["XLEN", "test:evidence"]));

    let url = redis.url();
    let report = tokio::task::spawn_blocking(move || {
        let mut args = portcullis::investigate::InvestigateArgs::new(vec![PathBuf::from(url)]);
        args.stream_key = "test:evidence".into();
        args.json = true;
        let mut out = Vec::new();
        portcullis::investigate::execute(&args, &mut out).expect("investigate the stream");
        String::from_utf8(out).expect("utf8")
    })
    .await
    .expect("join");
    let v: serde_json::Value = serde_json::from_str(&report).expect("json report");
    assert_eq!(v["totals"]["matched"], rejected, "{}", v["totals"]);
    assert_eq!(v["rules"][0]["rule"], "one-per-hour");
}
