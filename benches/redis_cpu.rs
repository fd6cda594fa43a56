//! CPU per evaluation of the Redis counter store, for the client (this process) and for
//! `redis-server`, so it can be compared with LocalStore without trusting wall time on a
//! shared machine.
//!
//! A `redis-server` is started on loopback (no persistence); the store runs on a
//! current-thread runtime, as the proxy does with `--workers 1`. Each scenario pushes
//! `EVALS` evaluations through one `RedisStore` from `tasks` concurrent tasks and reads, before
//! and after, this process's and the server's utime + stime (`/proc/<pid>/stat`) and the
//! server's `EVALSHA` count. Scenarios:
//! - `bench policy`: what the example policy asks per request from a load generator without
//!   an API key (docs/benchmarks.md section 1): 4 rate ops (one of them a shadow) and one shadow
//!   distinct op, all on the same keys for every request (one client);
//! - `bench policy, spread keys`: the same ops, each task on its own layer keys (many clients);
//! - `10 ops`: 6 rate, 2 distinct (one a 10,000-member HyperLogLog), 2 concurrency with the
//!   lease released each time (`benches/redis_store.rs`).
//!
//! Run: `cargo bench --bench redis_cpu` (env `EVALS=…` to change the count, default 20,000;
//! `ONLY="bench policy/64"` for one scenario). Clock ticks are 10 ms: keep runs above a second.
//! CPU time moves with other load on the machine (2x between runs during builds); compare two
//! builds by alternating them, several rounds, and take medians.

#[path = "../tests/support/redis.rs"]
mod redis_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis::limit::redis::{RedisConfig, RedisStore};
use portcullis::limit::{CounterStore, OpSpec};
use redis_support::{busy_rate, distinct, shadow, ten_ops, RedisServer};

fn policy_ops(client: usize) -> Vec<OpSpec> {
    let day = Duration::from_secs(86_400);
    vec![
        busy_rate(&format!("anon:{client}")),
        shadow(distinct(&format!("ja4:{client}"), 42, 2_500, day)),
        shadow(busy_rate(&format!("ja4b:{client}"))),
        busy_rate(&format!("subnet:{client}:1m")),
        busy_rate(&format!("subnet:{client}:1d")),
    ]
}

/// utime + stime of a process, in clock ticks (`/proc/<pid>/stat` fields 14 and 15).
fn cpu_ticks(pid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may hold spaces; the fields after it are plain.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // `after` starts at field 3 (state): utime is field 14, stime 15.
    field(11) + field(12)
}

fn ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

struct Scenario {
    name: &'static str,
    tasks: usize,
    ops: fn(usize) -> Vec<OpSpec>,
    /// Each task on its own layer keys (else all on task 0's).
    spread: bool,
}

fn run(
    rt: &tokio::runtime::Runtime,
    srv: &RedisServer,
    store: &Arc<RedisStore>,
    sc: &Scenario,
    evals: usize,
    hz: f64,
) {
    let server_pid = srv.pid().map(|p| p.to_string()).unwrap_or_default();
    let per_task = evals / sc.tasks;
    let calls = |s: &RedisServer| s.command_calls().get("evalsha").copied().unwrap_or(0);
    let (c0, s0, e0, t0) = (
        cpu_ticks("self"),
        cpu_ticks(&server_pid),
        calls(srv),
        Instant::now(),
    );
    let errors: usize = rt.block_on(async {
        let mut handles = Vec::new();
        for t in 0..sc.tasks {
            let store = Arc::clone(store);
            let ops = (sc.ops)(if sc.spread { t } else { 0 });
            handles.push(tokio::spawn(async move {
                let mut errors = 0;
                for _ in 0..per_task {
                    match store.evaluate(&ops).await {
                        Ok(e) => drop(std::hint::black_box(e)),
                        Err(_) => errors += 1,
                    }
                }
                errors
            }));
        }
        let mut errors = 0;
        for h in handles {
            errors += h.await.unwrap_or(per_task);
        }
        errors
    });
    // Lease releases are sent off the decision path: let them land before reading the CPU.
    std::thread::sleep(Duration::from_millis(200));
    let wall = t0.elapsed();
    let (c1, s1, e1) = (cpu_ticks("self"), cpu_ticks(&server_pid), calls(srv));
    let n = (per_task * sc.tasks) as f64;
    let us = |ticks: u64| ticks as f64 / hz * 1e6 / n;
    let (client, server) = (us(c1 - c0), us(s1 - s0));
    println!(
        "{:<28} {:>3} tasks: client {:>6.1} us/eval, redis-server {:>6.1} us/eval, total {:>6.1}; \
         {:.3} EVALSHA/eval; {} errors; {:.0} eval/s wall",
        sc.name,
        sc.tasks,
        client,
        server,
        client + server,
        (e1 - e0) as f64 / n,
        errors,
        n / wall.as_secs_f64(),
    );
}

fn main() {
    let evals: usize = std::env::var("EVALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let hz = ticks_per_second();
    let srv = RedisServer::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let cfg = RedisConfig {
        timeout: Duration::from_secs(1),
        ..srv.config()
    };
    let store = Arc::new(rt.block_on(RedisStore::connect(&cfg)).expect("connect"));
    let only = std::env::var("ONLY").ok();
    // The 10-op mix's big HyperLogLog: 10,000 members (dense).
    let fill = only.as_deref().map_or(true, |o| o.starts_with("10 ops"));
    rt.block_on(async {
        if !fill {
            return;
        }
        let w = Duration::from_secs(3_600);
        for m in 0..10_000u64 {
            let _ = store.evaluate(&[distinct("fp:hll", m, 1_000_000, w)]).await;
        }
    });
    let scenarios = [
        Scenario {
            name: "bench policy",
            tasks: 1,
            ops: policy_ops,
            spread: false,
        },
        Scenario {
            name: "bench policy",
            tasks: 64,
            ops: policy_ops,
            spread: false,
        },
        Scenario {
            name: "bench policy, spread keys",
            tasks: 64,
            ops: policy_ops,
            spread: true,
        },
        Scenario {
            name: "10 ops",
            tasks: 1,
            ops: |_| ten_ops(),
            spread: false,
        },
        Scenario {
            name: "10 ops",
            tasks: 64,
            ops: |_| ten_ops(),
            spread: false,
        },
    ];
    // `ONLY=<name>/<tasks>` (e.g. `ONLY="bench policy/64"`) runs one scenario, for profiling
    // or for alternating two builds on a busy machine.
    let chosen: Vec<&Scenario> = scenarios
        .iter()
        .filter(|sc| {
            only.as_deref()
                .map_or(true, |o| o == format!("{}/{}", sc.name, sc.tasks))
        })
        .collect();
    // A warm-up pass (connection, allocator, keys), then the measured one.
    for sc in &chosen {
        run(&rt, &srv, &store, sc, evals / 10, hz);
    }
    println!("---");
    for sc in &chosen {
        run(&rt, &srv, &store, sc, evals, hz);
    }
}
