//! A fleet: several real proxies sharing one real `redis-server` (started by the test), and
//! what each rule's `on_store_error` does when Redis dies in the middle of the load.

mod common;
#[path = "support/redis.rs"]
mod redis_support;

use std::time::{Duration, Instant};

use common::*;
use portcullis::config::{Config, StoreKind};
use redis_support::RedisServer;

fn fleet_config(upstream: std::net::SocketAddr, redis: &RedisServer, policy: &str) -> Config {
    let mut cfg = with_policy(test_config(upstream), policy);
    cfg.store.kind = StoreKind::Redis;
    cfg.store.redis.url = redis.url();
    // Generous for a loaded 2-core test machine; the failure test below sets its own.
    cfg.store.redis.timeout = Duration::from_millis(500);
    cfg.store.fleet_size = 3;
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_proxies_share_one_limit() {
    let redis = RedisServer::start();
    let up = start_mock().await;
    const N: usize = 150;
    let policy = format!(
        "[policy]\n[[policy.rules]]\nname = \"fleet\"\nkey = [\"account\"]\nlimit = \"rate\"\nrate = \"{N}/1h\"\n"
    );
    let mut proxies = Vec::new();
    for _ in 0..3 {
        proxies.push(start_proxy(fleet_config(up, &redis, &policy)).await);
    }
    let addrs: Vec<_> = proxies.iter().map(|p| p.addr).collect();
    let before = redis.command_calls().get("evalsha").copied().unwrap_or(0);
    let mut tasks = tokio::task::JoinSet::new();
    // 3 clients per proxy, in parallel, 2N attempts in all on one account.
    for (i, addr) in addrs.iter().cycle().take(9).enumerate() {
        let addr = *addr;
        tasks.spawn(async move {
            let mut ok = 0usize;
            let mut limited = 0usize;
            for _ in 0..(2 * N / 9 + 1) {
                match https_get(addr, "/v1/echo", &[("x-api-key", "sk-fleet")])
                    .await
                    .0
                {
                    200 => ok += 1,
                    429 => limited += 1,
                    s => panic!("client {i}: unexpected status {s}"),
                }
            }
            (ok, limited)
        });
    }
    let (mut ok, mut limited) = (0, 0);
    while let Some(r) = tasks.join_next().await {
        let (o, l) = r.expect("task");
        ok += o;
        limited += l;
    }
    println!("fleet: {ok} admitted, {limited} limited, limit {N}");
    assert!(
        ok <= N + N / 100,
        "fleet-wide limit held within N + 1%: {ok} > {}",
        N + N / 100
    );
    assert!(ok >= N - N / 100, "the limit is not under-admitting: {ok}");
    let calls = redis.command_calls().get("evalsha").copied().unwrap_or(0) - before;
    println!("evalsha calls: {calls} for {} requests", ok + limited);
    assert!(
        calls as usize <= ok + limited,
        "at most one round trip per request"
    );
    for p in proxies {
        p.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_applies_each_rules_failure_mode_then_recovers() {
    let mut redis = RedisServer::start();
    let up = start_mock().await;
    let rule = |mode: &str| {
        format!(
            "[policy]\n[[policy.rules]]\nname = \"r-{mode}\"\nkey = [\"account\"]\nlimit = \"rate\"\nrate = \"6/1h\"\non_store_error = \"{mode}\"\n"
        )
    };
    let mut cfgs = Vec::new();
    for mode in ["open", "closed", "local"] {
        let mut cfg = fleet_config(up, &redis, &rule(mode));
        cfg.store.redis.timeout = Duration::from_millis(50);
        cfgs.push(cfg);
    }
    let open = start_proxy(cfgs[0].clone()).await;
    let closed = start_proxy(cfgs[1].clone()).await;
    let local = start_proxy(cfgs[2].clone()).await;
    // Redis up: all three enforce through Redis.
    for p in [&open, &closed, &local] {
        assert_eq!(
            https_get(p.addr, "/v1/echo", &[("x-api-key", "sk-up")])
                .await
                .0,
            200
        );
    }
    redis.kill();
    let mut worst = Duration::ZERO;
    let mut timed = |started: Instant| worst = worst.max(started.elapsed());
    // open: every request forwarded.
    for _ in 0..8 {
        let t = Instant::now();
        assert_eq!(
            https_get(open.addr, "/v1/echo", &[("x-api-key", "sk-o")])
                .await
                .0,
            200
        );
        timed(t);
    }
    // closed: every request refused with 503.
    for _ in 0..3 {
        let t = Instant::now();
        assert_eq!(
            https_get(closed.addr, "/v1/echo", &[("x-api-key", "sk-c")])
                .await
                .0,
            503
        );
        timed(t);
    }
    // local: the fleet limit divided by fleet_size (6 / 3 = 2), on this proxy alone.
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        statuses.push(
            https_get(local.addr, "/v1/echo", &[("x-api-key", "sk-l")])
                .await
                .0,
        );
        timed(t);
    }
    assert_eq!(
        statuses,
        vec![200, 200, 429, 429, 429],
        "local budget = 6 / 3"
    );
    // A hang detector, not a speed assertion: no request waited on the dead Redis.
    assert!(
        worst < Duration::from_secs(2),
        "a request waited {worst:?} with Redis down"
    );

    // Redis back: limits resume through Redis (reconnection with backoff).
    redis.restart();
    let resumed = eventually(Duration::from_secs(15), || async {
        redis.command_calls().get("evalsha").copied().unwrap_or(0) > 0 || {
            let _ = https_get(closed.addr, "/v1/echo", &[("x-api-key", "sk-back")]).await;
            false
        }
    })
    .await;
    assert!(resumed, "the proxy went back to Redis after it restarted");
    assert_eq!(
        https_get(closed.addr, "/v1/echo", &[("x-api-key", "sk-back2")])
            .await
            .0,
        200
    );
    for p in [open, closed, local] {
        p.stop().await;
    }
}

/// Redis hung (SIGSTOP) under concurrent requests: they queue behind the call in flight and
/// time out together, and each proxy answers them by its rule's `on_store_error` (open:
/// forwarded; closed: 503) within about the timeout, never waiting on Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_redis_fails_a_whole_batch_by_each_rules_mode() {
    let redis = RedisServer::start();
    let up = start_mock().await;
    let rule = |mode: &str| {
        format!(
            "[policy]\n[[policy.rules]]\nname = \"r-{mode}\"\nkey = [\"account\"]\nlimit = \"rate\"\nrate = \"1000/1h\"\non_store_error = \"{mode}\"\n"
        )
    };
    let mut proxies = Vec::new();
    for mode in ["open", "closed"] {
        let mut cfg = fleet_config(up, &redis, &rule(mode));
        cfg.store.redis.timeout = Duration::from_millis(100);
        proxies.push(start_proxy(cfg).await);
    }
    for p in &proxies {
        let status = https_get(p.addr, "/v1/echo", &[("x-api-key", "sk-up")])
            .await
            .0;
        assert_eq!(status, 200);
    }
    redis.pause();
    let mut tasks = tokio::task::JoinSet::new();
    for (want, p) in [200u16, 503].into_iter().zip(&proxies) {
        for i in 0..8 {
            let addr = p.addr;
            tasks.spawn(async move {
                let t = Instant::now();
                let key = format!("sk-hung-{i}");
                let status = https_get(addr, "/v1/echo", &[("x-api-key", &key)]).await.0;
                (want, status, t.elapsed())
            });
        }
    }
    while let Some(r) = tasks.join_next().await {
        let (want, status, took) = r.expect("task");
        assert_eq!(status, want, "on_store_error");
        // A hang detector, not a speed bound: the timeout is 100 ms.
        assert!(took < Duration::from_secs(2), "a request waited {took:?}");
    }
    redis.resume();
    for p in proxies {
        p.stop().await;
    }
}
