//! Decision-path cost of the Redis counter store against a local `redis-server` the bench
//! starts itself (loopback, no persistence).
//!
//! - criterion `redis/1_op` and `redis/10_ops` (6 rate + 2 distinct — an exact-size one and
//!   one HyperLogLog of 10,000 members — + 2 concurrency, the lease released each time), one
//!   request at a time: the round trip plus the script;
//! - then the connection strategy: 64 tasks evaluating concurrently (10 ops each) through 1, 2
//!   and 4 multiplexed connections, printing throughput and p50/p99 latency.
//!
//! Run: `cargo bench --bench redis_store -- --warm-up-time 1 --measurement-time 3`

#[path = "../tests/support/redis.rs"]
mod redis_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{black_box, Criterion};
use portcullis::limit::redis::{RedisConfig, RedisStore};
use portcullis::limit::{CounterStore, OpSpec};
use redis_support::{distinct, ten_ops, RedisServer};
use tokio::runtime::Runtime;

fn ops_1() -> Vec<OpSpec> {
    ten_ops().into_iter().take(1).collect()
}

fn cfg(srv: &RedisServer) -> RedisConfig {
    RedisConfig {
        timeout: Duration::from_secs(1),
        ..srv.config()
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

/// 64 tasks × `per_task` evaluations of 10 ops through `connections` connections.
fn concurrent(rt: &Runtime, srv: &RedisServer, connections: usize, per_task: usize) {
    let store = rt
        .block_on(RedisStore::connect_pooled(&cfg(srv), connections))
        .expect("connect");
    let store = Arc::new(store);
    let start = Instant::now();
    let mut lat: Vec<Duration> = rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let s = Arc::clone(&store);
            tasks.push(tokio::spawn(async move {
                let ops = ten_ops();
                let mut lat = Vec::with_capacity(per_task);
                for _ in 0..per_task {
                    let t = Instant::now();
                    let e = s.evaluate(&ops).await;
                    lat.push(t.elapsed());
                    drop(black_box(e));
                }
                lat
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap_or_default());
        }
        all
    });
    let elapsed = start.elapsed();
    lat.sort();
    println!(
        "64 concurrent, {connections} connection(s): {:.0} req/s, p50 {:?}, p99 {:?}",
        lat.len() as f64 / elapsed.as_secs_f64(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
    );
}

/// Sequential latency percentiles (criterion reports means and medians, not p99).
fn sequential(rt: &Runtime, store: &RedisStore, name: &str, ops: &[OpSpec]) {
    let mut lat = Vec::with_capacity(5_000);
    for _ in 0..5_000 {
        let t = Instant::now();
        let e = rt.block_on(store.evaluate(ops));
        lat.push(t.elapsed());
        drop(black_box(e));
    }
    lat.sort();
    println!(
        "{name}, one at a time: p50 {:?}, p99 {:?}",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99)
    );
}

fn main() {
    let srv = RedisServer::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let store = rt
        .block_on(RedisStore::connect(&cfg(&srv)))
        .expect("connect");
    // Warm: the HLL key holds 10,000 members (a dense HyperLogLog), the small one 32.
    rt.block_on(async {
        let w = Duration::from_secs(3_600);
        for m in 0..10_000u64 {
            let _ = store.evaluate(&[distinct("fp:hll", m, 1_000_000, w)]).await;
        }
        for m in 0..32u64 {
            let _ = store
                .evaluate(&[distinct("fp:small", m, 1_000_000, w)])
                .await;
        }
    });

    let mut c = Criterion::default().configure_from_args();
    let one = ops_1();
    let ten = ten_ops();
    c.bench_function("redis/1_op", |b| {
        b.iter(|| rt.block_on(store.evaluate(black_box(&one))))
    });
    c.bench_function("redis/10_ops", |b| {
        b.iter(|| rt.block_on(store.evaluate(black_box(&ten))))
    });
    c.final_summary();

    sequential(&rt, &store, "1 op", &one);
    sequential(&rt, &store, "10 ops", &ten);
    for connections in [1, 2, 4, 1, 2, 4] {
        concurrent(&rt, &srv, connections, 300);
    }
    let stats = srv.command_calls();
    let usec = srv.cli(&["INFO", "commandstats"]);
    let evalsha = usec
        .lines()
        .find(|l| l.starts_with("cmdstat_evalsha:"))
        .unwrap_or_default();
    println!(
        "redis-side: {evalsha} ({} EVALSHA in all)",
        stats.get("evalsha").copied().unwrap_or(0)
    );
}
